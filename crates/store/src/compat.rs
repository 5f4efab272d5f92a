//! Compatibility in the store: catalog revisions, findings, tenant policies, notifications and
//! jobs. Written once over the statement executor (`exec.rs`), so both backends run the same
//! code and SQL.

use crate::exec::{Guard, Stmt, Ty, Val, sql};
use crate::{DeviceKey, Result, Store, StoreError, TenantId, device_id, to_i64, to_u64};

/// One revision of a tenant's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRevision {
    pub revision: u64,
    pub loaded_at_ms: i64,
    pub loaded_by: String,
    /// SHA-256 of the source.
    pub digest: String,
    /// What the catalog holds, as JSON.
    pub stats_json: String,
    /// The TOML source, when asked for.
    pub source: Option<String>,
}

/// A finding as judgement produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    pub key: String,
    pub kind: String,
    pub rule: String,
    /// The units and software involved, as JSON.
    pub subject_json: String,
    pub explanation: String,
}

/// The judgement of a device against a catalog revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub revision: u64,
    /// Identifies the set of findings: equal sets, equal hashes; `""` for none.
    pub hash: String,
    /// `compatible`, `software` (software can fix it), `hardware`, `unknown`.
    pub state: String,
    pub findings: Vec<FindingRow>,
}

/// An open (or closed) finding as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRecord {
    pub id: u64,
    pub key: String,
    pub kind: String,
    pub rule: String,
    pub subject_json: String,
    pub explanation: String,
    pub catalog_revision: u64,
    pub opened_at_ms: i64,
    pub closed_at_ms: Option<i64>,
}

/// A tenant's compatibility policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    /// `minimal` or `latest`.
    pub plan: String,
    /// `automatic`, `approval` or `off`.
    pub fix: String,
    /// May an optional incompatible unit be taken out of service?
    pub out_of_service: bool,
    /// Jobs for offline devices expire after this long.
    pub job_ttl_s: u64,
}

impl PolicyRecord {
    /// The state a job the center creates by itself starts in: queued when fixes are
    /// automatic, else awaiting an operator's approval.
    pub fn fix_job_state(&self) -> &'static str {
        if self.fix == "automatic" {
            "queued"
        } else {
            "awaiting_approval"
        }
    }

    /// How long a job lives, in milliseconds.
    pub fn job_ttl_ms(&self) -> i64 {
        i64::try_from(self.job_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

impl Default for PolicyRecord {
    fn default() -> Self {
        PolicyRecord {
            plan: "minimal".into(),
            fix: "approval".into(),
            out_of_service: false,
            job_ttl_s: 7 * 24 * 3600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// One open notification per device and key.
    pub key: String,
    pub kind: String,
    pub title: String,
    pub body_json: String,
    pub catalog_revision: Option<u64>,
    /// It supersedes the device's other open notifications of its kind (advice for the
    /// device's findings now); otherwise they stay open beside it (one per unit).
    pub replaces: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub id: u64,
    pub device_id: String,
    pub key: String,
    pub kind: String,
    pub title: String,
    pub body_json: String,
    pub catalog_revision: Option<u64>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
}

/// A job to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// `compat`, `operator`, `rollout`, `fix`.
    pub origin: String,
    /// `awaiting_approval` or `queued`.
    pub state: String,
    /// What to do, as JSON (the wire's job steps).
    pub steps_json: String,
    pub catalog_revision: Option<u64>,
    pub created_by: String,
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: u64,
    pub device_id: String,
    pub origin: String,
    pub state: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub steps_json: String,
    pub catalog_revision: Option<u64>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: i64,
    pub approved_by: Option<String>,
    pub approved_at_ms: Option<i64>,
    pub progress_json: Option<String>,
}

/// Job states that are over.
pub const TERMINAL_JOB_STATES: &[&str] = &["succeeded", "failed", "rolled_back"];

/// A device's current structure, for loading the fleet index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureRow {
    pub key: DeviceKey,
    pub model: String,
    pub structure_json: Option<String>,
    pub structure_hash: Option<String>,
    pub findings_hash: Option<String>,
    pub judged_revision: Option<u64>,
}

/// A device judged again (after a catalog change), to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejudged {
    pub key: DeviceKey,
    /// The structure judged: the judgement is stored only if it is still the device's.
    pub structure_hash: String,
    pub judgement: Judgement,
    /// The device may have open findings (`false` only when it surely has none).
    pub had_findings: bool,
}

/// The statements that make a device's stored findings what `j` says: new ones opened, ones
/// that no longer hold closed, the device's summary updated. With `structure_hash`, nothing
/// happens unless the device's structure is still that one (a re-judgement computed from an
/// older structure must not overwrite a newer one). `had_findings: false` says the device had
/// no open finding, so there is nothing to close.
pub(crate) fn judgement_stmts(
    key: &DeviceKey,
    structure_hash: Option<&str>,
    j: &Judgement,
    had_findings: bool,
    now_ms: i64,
) -> (Vec<Stmt>, Guard) {
    let (tenant, id) = (key.tenant, key.device_id.as_str());
    let mut stmts = Vec::with_capacity(j.findings.len() + 2);
    let rev = to_i64(j.revision);
    stmts.push(match structure_hash {
        Some(h) => Stmt::new(
            "UPDATE device_compat SET findings_hash = $3, judged_revision = $4, compat_state = $5 \
             WHERE tenant_id = $1 AND device_id = $2 AND structure_hash = $6",
            vec![
                tenant.into(),
                id.into(),
                (&j.hash).into(),
                rev.into(),
                (&j.state).into(),
                h.into(),
            ],
        ),
        None => Stmt::new(
            "INSERT INTO device_compat (tenant_id, device_id, findings_hash, judged_revision, \
             compat_state) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, device_id) DO UPDATE \
             SET findings_hash = excluded.findings_hash, judged_revision = excluded.judged_revision, \
             compat_state = excluded.compat_state",
            vec![
                tenant.into(),
                id.into(),
                (&j.hash).into(),
                rev.into(),
                (&j.state).into(),
            ],
        ),
    });
    for f in &j.findings {
        stmts.push(Stmt::new(
            "INSERT INTO findings (tenant_id, device_id, finding_key, kind, rule, subject, \
             explanation, catalog_revision, opened_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT DO NOTHING",
            vec![
                tenant.into(),
                id.into(),
                (&f.key).into(),
                (&f.kind).into(),
                (&f.rule).into(),
                (&f.subject_json).into(),
                (&f.explanation).into(),
                rev.into(),
                now_ms.into(),
            ],
        ));
    }
    if had_findings && j.findings.is_empty() {
        stmts.push(Stmt::new(
            "UPDATE findings SET closed_at = $3 WHERE tenant_id = $1 AND device_id = $2 \
             AND closed_at IS NULL",
            vec![tenant.into(), id.into(), now_ms.into()],
        ));
    } else if had_findings {
        let keys = serde_json::to_string(&j.findings.iter().map(|f| &f.key).collect::<Vec<_>>())
            .expect("strings serialize");
        stmts.push(Stmt::each(
            "UPDATE findings SET closed_at = $3 WHERE tenant_id = $1 AND device_id = $2 \
             AND closed_at IS NULL AND finding_key NOT IN (SELECT value FROM json_each($4))",
            "UPDATE findings SET closed_at = $3 WHERE tenant_id = $1 AND device_id = $2 \
             AND closed_at IS NULL AND finding_key NOT IN \
             (SELECT jsonb_array_elements_text($4::jsonb))",
            vec![tenant.into(), id.into(), now_ms.into(), keys.into()],
        ));
    }
    let guard = if structure_hash.is_some() {
        Guard::First
    } else {
        Guard::None
    };
    (stmts, guard)
}

const FINDING_COLUMNS: &[Ty] = &[
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Int,
    Ty::Int,
];

fn finding_record(r: &[Val]) -> Result<FindingRecord> {
    Ok(FindingRecord {
        id: to_u64(r[0].int()?),
        key: r[1].text()?,
        kind: r[2].text()?,
        rule: r[3].text()?,
        subject_json: r[4].text()?,
        explanation: r[5].text()?,
        catalog_revision: to_u64(r[6].int()?),
        opened_at_ms: r[7].int()?,
        closed_at_ms: r[8].opt_int()?,
    })
}

const NOTIFICATION_COLUMNS: &[Ty] = &[
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Int,
    Ty::Int,
    Ty::Int,
];
const NOTIFICATION_SELECT: &str = "SELECT id, device_id, notice_key, kind, title, body, \
    catalog_revision, created_at, delivered_at, closed_at FROM notifications";

fn notification_record(r: &[Val]) -> Result<NotificationRecord> {
    Ok(NotificationRecord {
        id: to_u64(r[0].int()?),
        device_id: r[1].text()?,
        key: r[2].text()?,
        kind: r[3].text()?,
        title: r[4].text()?,
        body_json: r[5].text()?,
        catalog_revision: r[6].opt_int()?.map(to_u64),
        created_at_ms: r[7].int()?,
        delivered_at_ms: r[8].opt_int()?,
        closed_at_ms: r[9].opt_int()?,
    })
}

const JOB_COLUMNS: &[Ty] = &[
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Text,
    Ty::Int,
    Ty::Int,
    Ty::Int,
    Ty::Text,
    Ty::Int,
    Ty::Text,
];
const JOB_SELECT: &str = "SELECT id, device_id, origin, state, reason, detail, steps, \
    catalog_revision, created_by, created_at, updated_at, expires_at, approved_by, approved_at, \
    progress FROM jobs";

fn job_record(r: &[Val]) -> Result<JobRecord> {
    Ok(JobRecord {
        id: to_u64(r[0].int()?),
        device_id: r[1].text()?,
        origin: r[2].text()?,
        state: r[3].text()?,
        reason: r[4].opt_text()?,
        detail: r[5].opt_text()?,
        steps_json: r[6].text()?,
        catalog_revision: r[7].opt_int()?.map(to_u64),
        created_by: r[8].text()?,
        created_at_ms: r[9].int()?,
        updated_at_ms: r[10].int()?,
        expires_at_ms: r[11].int()?,
        approved_by: r[12].opt_text()?,
        approved_at_ms: r[13].opt_int()?,
        progress_json: r[14].opt_text()?,
    })
}

/// A change of a job's state, allowed only from the states listed.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    pub from: &'a [&'a str],
    pub to: &'a str,
    /// A reason code, when it failed.
    pub reason: Option<&'a str>,
    pub detail: Option<&'a str>,
    /// Progress as JSON (bytes downloaded, …).
    pub progress_json: Option<&'a str>,
    /// Record the new state in the job's events (not for a progress-only update).
    pub event: bool,
}

impl<'a> Transition<'a> {
    pub fn new(from: &'a [&'a str], to: &'a str) -> Transition<'a> {
        Transition {
            from,
            to,
            reason: None,
            detail: None,
            progress_json: None,
            event: true,
        }
    }
}

/// A state a job went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEventRecord {
    pub at_ms: i64,
    pub state: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

/// A job's events, oldest first; ties within one millisecond in the order of
/// [`fleetcare_wire::delivery::JOB_STATES`].
static JOB_EVENTS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let states = fleetcare_wire::delivery::JOB_STATES;
    let rank: String = states
        .iter()
        .enumerate()
        .map(|(i, s)| format!(" WHEN '{s}' THEN {i}"))
        .collect();
    format!(
        "SELECT at, state, reason, detail FROM job_events WHERE tenant_id = $1 AND job_id = $2 \
         ORDER BY at, CASE state{rank} ELSE {} END LIMIT 1000",
        states.len()
    )
});
/// Records the state a statement just gave a job (the job's row says it, with this `at`).
pub(crate) const JOB_EVENT: &str = "INSERT INTO job_events (tenant_id, job_id, at, state, reason, detail) \
     SELECT tenant_id, id, updated_at, state, reason, detail FROM jobs \
     WHERE tenant_id = $1 AND id = $2 AND updated_at = $3 AND state = $4";

/// A job query's filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub device_id: Option<String>,
    pub state: Option<String>,
    /// Only jobs with an id lower than this (paging newest first).
    pub before_id: Option<u64>,
}

impl Store {
    // ---- catalogs ------------------------------------------------------------------------

    /// Store a new catalog revision for the tenant; its number.
    pub async fn add_catalog_revision(
        &self,
        tenant: TenantId,
        loaded_by: &str,
        digest: &str,
        stats_json: &str,
        source: &str,
        now_ms: i64,
    ) -> Result<u64> {
        let latest = self.catalog_revision(tenant, None, false).await?;
        let revision = latest.map_or(1, |r| r.revision + 1);
        self.run(
            vec![Stmt::new(
                "INSERT INTO catalog_revisions (tenant_id, revision, loaded_at, loaded_by, digest, \
                 stats, source) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    tenant.into(),
                    to_i64(revision).into(),
                    now_ms.into(),
                    loaded_by.into(),
                    digest.into(),
                    stats_json.into(),
                    source.into(),
                ],
            )],
            Guard::None,
        )
        .await
        .map_err(|e| match e {
            StoreError::Db(m) if m.contains("UNIQUE") || m.contains("duplicate key") => {
                StoreError::Db("another catalog was loaded at the same moment; load again".into())
            }
            other => other,
        })?;
        Ok(revision)
    }

    /// A catalog revision (the newest when `revision` is `None`).
    pub async fn catalog_revision(
        &self,
        tenant: TenantId,
        revision: Option<u64>,
        with_source: bool,
    ) -> Result<Option<CatalogRevision>> {
        let rows = self
            .select(
                sql("SELECT revision, loaded_at, loaded_by, digest, stats, \
                     CASE WHEN $3 = 1 THEN source ELSE NULL END FROM catalog_revisions \
                     WHERE tenant_id = $1 AND ($2 = 0 OR revision = $2) \
                     ORDER BY revision DESC LIMIT 1"),
                vec![
                    tenant.into(),
                    to_i64(revision.unwrap_or(0)).into(),
                    with_source.into(),
                ],
                &[Ty::Int, Ty::Int, Ty::Text, Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(CatalogRevision {
                    revision: to_u64(r[0].int()?),
                    loaded_at_ms: r[1].int()?,
                    loaded_by: r[2].text()?,
                    digest: r[3].text()?,
                    stats_json: r[4].text()?,
                    source: r[5].opt_text()?,
                })
            })
            .transpose()
    }

    /// Every revision of a tenant's catalog, newest first, without their sources.
    pub async fn catalog_revisions(&self, tenant: TenantId) -> Result<Vec<CatalogRevision>> {
        let rows = self
            .select(
                sql(
                    "SELECT revision, loaded_at, loaded_by, digest, stats FROM catalog_revisions \
                     WHERE tenant_id = $1 ORDER BY revision DESC",
                ),
                vec![tenant.into()],
                &[Ty::Int, Ty::Int, Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CatalogRevision {
                    revision: to_u64(r[0].int()?),
                    loaded_at_ms: r[1].int()?,
                    loaded_by: r[2].text()?,
                    digest: r[3].text()?,
                    stats_json: r[4].text()?,
                    source: None,
                })
            })
            .collect()
    }

    /// Every tenant's newest catalog revision, with its source (for starting up).
    pub async fn current_catalogs(&self) -> Result<Vec<(TenantId, CatalogRevision)>> {
        let rows = self
            .select(
                sql("SELECT c.tenant_id, c.revision, c.loaded_at, c.loaded_by, c.digest, c.stats, \
                     c.source FROM catalog_revisions c WHERE c.revision = \
                     (SELECT MAX(revision) FROM catalog_revisions m WHERE m.tenant_id = c.tenant_id)"),
                vec![],
                &[Ty::Int, Ty::Int, Ty::Int, Ty::Text, Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r[0].int()?,
                    CatalogRevision {
                        revision: to_u64(r[1].int()?),
                        loaded_at_ms: r[2].int()?,
                        loaded_by: r[3].text()?,
                        digest: r[4].text()?,
                        stats_json: r[5].text()?,
                        source: r[6].opt_text()?,
                    },
                ))
            })
            .collect()
    }

    // ---- findings ----------------------------------------------------------------------

    /// Store judgements of many devices in one transaction; for each, whether it was applied
    /// (it is not when the device's structure is no longer the one judged).
    pub async fn apply_judgements(&self, items: &[Rejudged], now_ms: i64) -> Result<Vec<bool>> {
        let groups = items
            .iter()
            .map(|r| {
                judgement_stmts(
                    &r.key,
                    Some(&r.structure_hash),
                    &r.judgement,
                    r.had_findings,
                    now_ms,
                )
            })
            .collect();
        let out = self.run_groups(groups).await?;
        Ok(out.iter().map(|g| g.first().copied() == Some(1)).collect())
    }

    /// A device's open findings, oldest first.
    pub async fn open_findings(&self, key: &DeviceKey) -> Result<Vec<FindingRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT id, finding_key, kind, rule, subject, explanation, catalog_revision, \
                     opened_at, closed_at FROM findings WHERE tenant_id = $1 AND device_id = $2 \
                     AND closed_at IS NULL ORDER BY id",
                ),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                FINDING_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| finding_record(r)).collect()
    }

    /// A device's findings closed most recently, newest first.
    pub async fn closed_findings(&self, key: &DeviceKey, limit: u32) -> Result<Vec<FindingRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT id, finding_key, kind, rule, subject, explanation, catalog_revision, \
                     opened_at, closed_at FROM findings WHERE tenant_id = $1 AND device_id = $2 \
                     AND closed_at IS NOT NULL ORDER BY closed_at DESC, id DESC LIMIT $3",
                ),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    i64::from(limit).into(),
                ],
                FINDING_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| finding_record(r)).collect()
    }

    /// Devices with open findings, by device model and finding kind.
    pub async fn finding_counts(&self, tenant: TenantId) -> Result<Vec<(String, String, u64)>> {
        let rows = self
            .select(
                sql(
                    "SELECT d.model, f.kind, COUNT(DISTINCT f.device_id) FROM findings f \
                     JOIN devices d ON d.tenant_id = f.tenant_id AND d.device_id = f.device_id \
                     WHERE f.tenant_id = $1 AND f.closed_at IS NULL \
                     GROUP BY d.model, f.kind ORDER BY d.model, f.kind",
                ),
                vec![tenant.into()],
                &[Ty::Text, Ty::Text, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r[0].text()?, r[1].text()?, to_u64(r[2].int()?))))
            .collect()
    }

    /// Devices by model and compatibility state (`unjudged` when never judged).
    pub async fn compat_states(&self, tenant: TenantId) -> Result<Vec<(String, String, u64)>> {
        let rows = self
            .select(
                sql(
                    "SELECT d.model, COALESCE(c.compat_state, 'unjudged'), COUNT(*) FROM devices d \
                     LEFT JOIN device_compat c ON c.tenant_id = d.tenant_id AND \
                     c.device_id = d.device_id WHERE d.tenant_id = $1 \
                     GROUP BY d.model, COALESCE(c.compat_state, 'unjudged') ORDER BY d.model",
                ),
                vec![tenant.into()],
                &[Ty::Text, Ty::Text, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r[0].text()?, r[1].text()?, to_u64(r[2].int()?))))
            .collect()
    }

    /// One device's current structure (as [`Store::structures`] gives them).
    pub async fn structure_of(&self, key: &DeviceKey) -> Result<Option<StructureRow>> {
        let rows = self
            .select(
                sql(
                    "SELECT d.tenant_id, d.device_id, d.model, d.structure, d.structure_hash, \
                     c.findings_hash, c.judged_revision FROM devices d LEFT JOIN device_compat c \
                     ON c.tenant_id = d.tenant_id AND c.device_id = d.device_id \
                     WHERE d.tenant_id = $1 AND d.device_id = $2",
                ),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                STRUCTURE_ROW,
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| structure_row(r))
            .collect::<Result<Vec<_>>>()?
            .pop())
    }

    /// Devices' current structures, every tenant, ordered by (tenant, device id), after
    /// `after`, at most `limit`.
    pub async fn structures(
        &self,
        after: Option<&DeviceKey>,
        limit: u32,
    ) -> Result<Vec<StructureRow>> {
        let (t, d) = after.map_or((i64::MIN, String::new()), |k| {
            (k.tenant, k.device_id.as_str().to_owned())
        });
        let rows = self
            .select(
                sql(
                    "SELECT d.tenant_id, d.device_id, d.model, d.structure, d.structure_hash, \
                     c.findings_hash, c.judged_revision FROM devices d LEFT JOIN device_compat c \
                     ON c.tenant_id = d.tenant_id AND c.device_id = d.device_id \
                     WHERE d.tenant_id > $1 OR (d.tenant_id = $1 AND d.device_id > $2) \
                     ORDER BY d.tenant_id, d.device_id LIMIT $3",
                ),
                vec![t.into(), d.into(), i64::from(limit).into()],
                STRUCTURE_ROW,
            )
            .await?;
        rows.iter().map(|r| structure_row(r)).collect()
    }

    // ---- policy --------------------------------------------------------------------------

    pub async fn policy(&self, tenant: TenantId) -> Result<PolicyRecord> {
        let rows = self
            .select(
                sql("SELECT plan_policy, fix_policy, out_of_service, job_ttl_s FROM tenant_policies \
                     WHERE tenant_id = $1"),
                vec![tenant.into()],
                &[Ty::Text, Ty::Text, Ty::Int, Ty::Int],
            )
            .await?;
        match rows.first() {
            None => Ok(PolicyRecord::default()),
            Some(r) => Ok(PolicyRecord {
                plan: r[0].text()?,
                fix: r[1].text()?,
                out_of_service: r[2].int()? != 0,
                job_ttl_s: to_u64(r[3].int()?),
            }),
        }
    }

    pub async fn set_policy(&self, tenant: TenantId, p: &PolicyRecord) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO tenant_policies (tenant_id, plan_policy, fix_policy, out_of_service, \
                 job_ttl_s) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET \
                 plan_policy = excluded.plan_policy, fix_policy = excluded.fix_policy, \
                 out_of_service = excluded.out_of_service, job_ttl_s = excluded.job_ttl_s",
                vec![
                    tenant.into(),
                    (&p.plan).into(),
                    (&p.fix).into(),
                    p.out_of_service.into(),
                    to_i64(p.job_ttl_s).into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    // ---- notifications -------------------------------------------------------------------

    /// Open a notification unless one with the same key is open; its id when new. Open
    /// notifications of the same kind with other keys are closed (superseded).
    pub async fn notify(
        &self,
        key: &DeviceKey,
        n: &NewNotification,
        now_ms: i64,
    ) -> Result<Option<u64>> {
        let (tenant, id) = (key.tenant, key.device_id.as_str());
        let mut stmts = vec![Stmt::returning(
            "INSERT INTO notifications (tenant_id, device_id, notice_key, kind, title, \
             body, catalog_revision, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT DO NOTHING RETURNING id",
            vec![
                tenant.into(),
                id.into(),
                (&n.key).into(),
                (&n.kind).into(),
                (&n.title).into(),
                (&n.body_json).into(),
                n.catalog_revision.map(to_i64).into(),
                now_ms.into(),
            ],
        )];
        if n.replaces {
            stmts.push(Stmt::new(
                "UPDATE notifications SET closed_at = $5 WHERE tenant_id = $1 AND \
                 device_id = $2 AND kind = $3 AND notice_key <> $4 AND closed_at IS NULL",
                vec![
                    tenant.into(),
                    id.into(),
                    (&n.kind).into(),
                    (&n.key).into(),
                    now_ms.into(),
                ],
            ));
        }
        let out = self.run(stmts, Guard::First).await?;
        Ok(out.first().copied().filter(|&i| i > 0))
    }

    /// Close a device's open notification with this key (what it said no longer holds);
    /// whether one was open.
    pub async fn close_notification(
        &self,
        key: &DeviceKey,
        notice_key: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE notifications SET closed_at = $4 WHERE tenant_id = $1 AND device_id = $2 \
                     AND notice_key = $3 AND closed_at IS NULL",
                    vec![
                        key.tenant.into(),
                        key.device_id.as_str().into(),
                        notice_key.into(),
                        now_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0) > 0)
    }

    /// Close a device's open notifications of a kind (what they said no longer holds).
    pub async fn close_notifications(
        &self,
        key: &DeviceKey,
        kind: &str,
        now_ms: i64,
    ) -> Result<u64> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE notifications SET closed_at = $4 WHERE tenant_id = $1 AND device_id = $2 \
                     AND kind = $3 AND closed_at IS NULL",
                    vec![key.tenant.into(), key.device_id.as_str().into(), kind.into(), now_ms.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0))
    }

    /// Settle a device's compatibility state once its plan is known (`software` only where a
    /// software set fixes it), if its stored findings are still the ones with
    /// `findings_hash`; whether it changed.
    pub async fn settle_compat_state(
        &self,
        key: &DeviceKey,
        findings_hash: &str,
        state: &str,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE device_compat SET compat_state = $4 WHERE tenant_id = $1 \
                     AND device_id = $2 AND findings_hash = $3 AND compat_state <> $4",
                    vec![
                        key.tenant.into(),
                        key.device_id.as_str().into(),
                        findings_hash.into(),
                        state.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0) > 0)
    }

    /// A device's notifications, newest first: the open ones, and closed ones too if asked.
    pub async fn notifications(
        &self,
        key: &DeviceKey,
        include_closed: bool,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        const OPEN: &str = "SELECT id, device_id, notice_key, kind, title, body, catalog_revision, \
            created_at, delivered_at, closed_at FROM notifications WHERE tenant_id = $1 AND \
            device_id = $2 AND ($3 = 1 OR closed_at IS NULL) ORDER BY id DESC LIMIT $4";
        debug_assert!(OPEN.starts_with(NOTIFICATION_SELECT));
        let rows = self
            .select(
                sql(OPEN),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    include_closed.into(),
                    i64::from(limit).into(),
                ],
                NOTIFICATION_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| notification_record(r)).collect()
    }

    /// One notification by id.
    pub async fn notification(
        &self,
        tenant: TenantId,
        id: u64,
    ) -> Result<Option<NotificationRecord>> {
        const ONE: &str = "SELECT id, device_id, notice_key, kind, title, body, catalog_revision, \
            created_at, delivered_at, closed_at FROM notifications WHERE tenant_id = $1 AND id = $2";
        debug_assert!(ONE.starts_with(NOTIFICATION_SELECT));
        let rows = self
            .select(
                sql(ONE),
                vec![tenant.into(), to_i64(id).into()],
                NOTIFICATION_COLUMNS,
            )
            .await?;
        rows.first().map(|r| notification_record(r)).transpose()
    }

    /// Note that notifications reached the device.
    pub async fn mark_delivered(&self, tenant: TenantId, ids: &[u64], now_ms: i64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let stmts = ids
            .iter()
            .map(|id| {
                Stmt::new(
                    "UPDATE notifications SET delivered_at = $3 WHERE tenant_id = $1 AND id = $2 \
                     AND delivered_at IS NULL",
                    vec![tenant.into(), to_i64(*id).into(), now_ms.into()],
                )
            })
            .collect();
        self.run(stmts, Guard::None).await?;
        Ok(())
    }

    // ---- jobs ----------------------------------------------------------------------------

    /// Create a job; its id.
    pub async fn create_job(&self, key: &DeviceKey, job: &NewJob, now_ms: i64) -> Result<u64> {
        let out = self
            .run(
                vec![Stmt::returning(
                    "INSERT INTO jobs (tenant_id, device_id, origin, state, steps, catalog_revision, \
                     created_by, created_at, updated_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING id",
                    vec![
                        key.tenant.into(),
                        key.device_id.as_str().into(),
                        (&job.origin).into(),
                        (&job.state).into(),
                        (&job.steps_json).into(),
                        job.catalog_revision.map(to_i64).into(),
                        (&job.created_by).into(),
                        now_ms.into(),
                        job.expires_at_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        out.first()
            .copied()
            .filter(|&id| id > 0)
            .ok_or_else(|| StoreError::Db("the new job got no id".into()))
    }

    pub async fn job(&self, tenant: TenantId, id: u64) -> Result<Option<JobRecord>> {
        const ONE: &str = "SELECT id, device_id, origin, state, reason, detail, steps, \
            catalog_revision, created_by, created_at, updated_at, expires_at, approved_by, \
            approved_at, progress FROM jobs WHERE tenant_id = $1 AND id = $2";
        debug_assert!(ONE.starts_with(JOB_SELECT));
        let rows = self
            .select(
                sql(ONE),
                vec![tenant.into(), to_i64(id).into()],
                JOB_COLUMNS,
            )
            .await?;
        rows.first().map(|r| job_record(r)).transpose()
    }

    /// Jobs of a tenant, newest first, filtered, at most `limit`.
    pub async fn jobs(
        &self,
        tenant: TenantId,
        f: &JobFilter,
        limit: u32,
    ) -> Result<Vec<JobRecord>> {
        const MANY: &str = "SELECT id, device_id, origin, state, reason, detail, steps, \
            catalog_revision, created_by, created_at, updated_at, expires_at, approved_by, \
            approved_at, progress FROM jobs WHERE tenant_id = $1 AND ($2 = '' OR device_id = $2) \
            AND ($3 = '' OR state = $3) AND id < $4 ORDER BY id DESC LIMIT $5";
        let rows = self
            .select(
                sql(MANY),
                vec![
                    tenant.into(),
                    f.device_id.clone().unwrap_or_default().into(),
                    f.state.clone().unwrap_or_default().into(),
                    to_i64(f.before_id.unwrap_or(u64::MAX >> 1)).into(),
                    i64::from(limit).into(),
                ],
                JOB_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| job_record(r)).collect()
    }

    /// A device's jobs that are not over, oldest first.
    pub async fn open_jobs(&self, key: &DeviceKey) -> Result<Vec<JobRecord>> {
        const OPEN: &str = "SELECT id, device_id, origin, state, reason, detail, steps, \
            catalog_revision, created_by, created_at, updated_at, expires_at, approved_by, \
            approved_at, progress FROM jobs WHERE tenant_id = $1 AND device_id = $2 AND state NOT IN \
            ('succeeded', 'failed', 'rolled_back') ORDER BY id";
        let rows = self
            .select(
                sql(OPEN),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                JOB_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| job_record(r)).collect()
    }

    /// Apply a transition to a job; `false` if the job was in none of its `from` states.
    pub async fn transition_job(
        &self,
        tenant: TenantId,
        id: u64,
        t: &Transition<'_>,
        now_ms: i64,
    ) -> Result<bool> {
        let from = serde_json::to_string(t.from).expect("strings serialize");
        let mut stmts = vec![Stmt::each(
            "UPDATE jobs SET state = $4, reason = COALESCE($5, reason), \
                     detail = COALESCE($6, detail), progress = COALESCE($7, progress), \
                     updated_at = $8 WHERE tenant_id = $1 AND id = $2 \
                     AND state IN (SELECT value FROM json_each($3))",
            "UPDATE jobs SET state = $4, reason = COALESCE($5, reason), \
                     detail = COALESCE($6, detail), progress = COALESCE($7, progress), \
                     updated_at = $8 WHERE tenant_id = $1 AND id = $2 \
                     AND state IN (SELECT jsonb_array_elements_text($3::jsonb))",
            vec![
                tenant.into(),
                to_i64(id).into(),
                from.into(),
                t.to.into(),
                t.reason.into(),
                t.detail.into(),
                t.progress_json.into(),
                now_ms.into(),
            ],
        )];
        if t.event {
            stmts.push(Stmt::new(
                JOB_EVENT,
                vec![tenant.into(), to_i64(id).into(), now_ms.into(), t.to.into()],
            ));
        }
        let out = self.run(stmts, Guard::None).await?;
        Ok(out.first().copied() == Some(1))
    }

    /// Record something a device said of a job without changing its state (`busy`).
    pub async fn note_job(
        &self,
        tenant: TenantId,
        id: u64,
        state: &str,
        detail: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO job_events (tenant_id, job_id, at, state, reason, detail) \
                 VALUES ($1, $2, $3, $4, NULL, $5)",
                vec![
                    tenant.into(),
                    to_i64(id).into(),
                    now_ms.into(),
                    state.into(),
                    detail.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// The states a job went through after its creation, oldest first; states recorded in
    /// the same millisecond in the order a job goes through them.
    pub async fn job_events(&self, tenant: TenantId, id: u64) -> Result<Vec<JobEventRecord>> {
        let rows = self
            .select(
                crate::exec::Sql::Both(std::borrow::Cow::Borrowed(JOB_EVENTS.as_str())),
                vec![tenant.into(), to_i64(id).into()],
                &[Ty::Int, Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(JobEventRecord {
                    at_ms: r[0].int()?,
                    state: r[1].text()?,
                    reason: r[2].opt_text()?,
                    detail: r[3].opt_text()?,
                })
            })
            .collect()
    }

    /// Approve a job awaiting approval (it becomes queued); `false` if it was not awaiting.
    pub async fn approve_job(
        &self,
        tenant: TenantId,
        id: u64,
        by: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![
                    Stmt::new(
                        "UPDATE jobs SET state = 'queued', approved_by = $3, approved_at = $4, \
                         updated_at = $4 WHERE tenant_id = $1 AND id = $2 \
                         AND state = 'awaiting_approval'",
                        vec![tenant.into(), to_i64(id).into(), by.into(), now_ms.into()],
                    ),
                    Stmt::new(
                        JOB_EVENT,
                        vec![
                            tenant.into(),
                            to_i64(id).into(),
                            now_ms.into(),
                            "queued".into(),
                        ],
                    ),
                ],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }

    /// Cancel a device's jobs of an origin that have not started (awaiting approval or
    /// queued); how many.
    pub async fn cancel_pending_jobs(
        &self,
        key: &DeviceKey,
        origin: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<u64> {
        let out = self
            .run(
                vec![
                    Stmt::new(
                        "UPDATE jobs SET state = 'failed', reason = 'cancelled', detail = $4, \
                         updated_at = $5 WHERE tenant_id = $1 AND device_id = $2 AND origin = $3 \
                         AND state IN ('awaiting_approval', 'queued')",
                        vec![
                            key.tenant.into(),
                            key.device_id.as_str().into(),
                            origin.into(),
                            detail.into(),
                            now_ms.into(),
                        ],
                    ),
                    Stmt::new(
                        "INSERT INTO job_events (tenant_id, job_id, at, state, reason, detail) \
                         SELECT tenant_id, id, updated_at, state, reason, detail FROM jobs \
                         WHERE tenant_id = $1 AND device_id = $2 AND origin = $3 \
                         AND state = 'failed' AND reason = 'cancelled' AND updated_at = $4",
                        vec![
                            key.tenant.into(),
                            key.device_id.as_str().into(),
                            origin.into(),
                            now_ms.into(),
                        ],
                    ),
                ],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0))
    }
}

const STRUCTURE_ROW: &[Ty] = &[
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
];

fn structure_row(r: &[crate::exec::Val]) -> Result<StructureRow> {
    Ok(StructureRow {
        key: DeviceKey {
            tenant: r[0].int()?,
            device_id: device_id(r[1].text()?)?,
        },
        model: r[2].text()?,
        structure_json: r[3].opt_text()?,
        structure_hash: r[4].opt_text()?,
        findings_hash: r[5].opt_text()?,
        judged_revision: r[6].opt_int()?.map(to_u64),
    })
}
