//! Diagnosis in the store: rule revisions, troubles (at most one live per device and rule;
//! open → acknowledged → resolved), abnormal units and device settings.

use crate::exec::{Guard, Stmt, Ty, Val, sql};
use crate::{DeviceKey, Result, Store, StoreError, TenantId, to_i64, to_u64};

/// A tenant's rules as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSetRecord {
    pub tenant: TenantId,
    pub revision: u64,
    pub source: String,
    pub loaded_at_ms: i64,
    pub loaded_by: String,
}

/// The `quiet_until_ms` of a trouble that no quiet period resolves (only the device's reports
/// or its history do: a supply running out, a part near its end of life).
pub const NO_QUIET_PERIOD: i64 = i64::MAX;

/// A trouble to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTrouble {
    pub rule_id: String,
    pub severity: String,
    pub title: String,
    pub action: String,
    pub note: Option<String>,
    /// JSON: the evidence events.
    pub evidence_json: String,
    pub occurrences: u64,
    pub last_event_at_ms: i64,
    pub quiet_until_ms: i64,
    /// JSON: the known fix, if the rule has one.
    pub fix_json: Option<String>,
}

/// A trouble as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TroubleRecord {
    pub id: u64,
    pub device_id: String,
    pub rule_id: String,
    pub severity: String,
    pub title: String,
    pub action: String,
    pub state: String,
    pub note: Option<String>,
    pub evidence_json: String,
    pub occurrences: u64,
    pub opened_at_ms: i64,
    pub last_event_at_ms: i64,
    pub quiet_until_ms: i64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at_ms: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolved_at_ms: Option<i64>,
    pub fix_json: Option<String>,
    pub fix_outcome: Option<String>,
    /// The job the center made to fix it.
    pub fix_job: Option<u64>,
    /// When its fix job succeeded (state `fixed`, or resolved since).
    pub fixed_at_ms: Option<i64>,
}

/// Which troubles to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TroubleFilter {
    /// `live` (open, acknowledged or fixed and watched), or one state; all when `None`.
    pub state: Option<String>,
    pub device_id: Option<String>,
    pub rule_id: Option<String>,
}

/// A recurrence of a live trouble: more matching events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TroubleRecurrence {
    pub device_id: String,
    pub rule_id: String,
    pub events: u64,
    pub last_event_at_ms: i64,
    pub quiet_until_ms: i64,
}

/// A unit marked abnormal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbnormalRecord {
    pub slot: String,
    pub rule_id: String,
    pub reason: String,
    pub since_ms: i64,
}

/// A setting the center set on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingRecord {
    pub name: String,
    pub value: String,
    pub set_by: String,
    pub set_at_ms: i64,
}

const TROUBLE_SELECT: &str = "SELECT id, device_id, rule_id, severity, title, action, state, note, \
    evidence, occurrences, opened_at, last_event_at, quiet_until, acknowledged_by, \
    acknowledged_at, resolved_by, resolved_at, fix, fix_outcome, fix_job_id, fixed_at FROM troubles";

const TROUBLE_COLUMNS: &[Ty] = &[
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Int,
    Ty::Int,
    Ty::Int,
    Ty::Text,
    Ty::Int,
    Ty::Text,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Int,
];

fn trouble(r: &[Val]) -> Result<TroubleRecord> {
    Ok(TroubleRecord {
        id: to_u64(r[0].int()?),
        device_id: r[1].text()?,
        rule_id: r[2].text()?,
        severity: r[3].text()?,
        title: r[4].text()?,
        action: r[5].text()?,
        state: r[6].text()?,
        note: r[7].opt_text()?,
        evidence_json: r[8].text()?,
        occurrences: to_u64(r[9].int()?),
        opened_at_ms: r[10].int()?,
        last_event_at_ms: r[11].int()?,
        quiet_until_ms: r[12].int()?,
        acknowledged_by: r[13].opt_text()?,
        acknowledged_at_ms: r[14].opt_int()?,
        resolved_by: r[15].opt_text()?,
        resolved_at_ms: r[16].opt_int()?,
        fix_json: r[17].opt_text()?,
        fix_outcome: r[18].opt_text()?,
        fix_job: r[19].opt_int()?.map(to_u64),
        fixed_at_ms: r[20].opt_int()?,
    })
}

impl Store {
    /// Store a tenant's rules as its next revision; the revision.
    pub async fn load_rules(
        &self,
        tenant: TenantId,
        source: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<u64> {
        let out = self
            .run(
                vec![Stmt::returning(
                    "INSERT INTO rule_sets (tenant_id, revision, source, loaded_at, loaded_by) \
                     SELECT $1, COALESCE(MAX(revision), 0) + 1, $2, $3, $4 FROM rule_sets \
                     WHERE tenant_id = $1 RETURNING revision",
                    vec![tenant.into(), source.into(), now_ms.into(), by.into()],
                )],
                Guard::None,
            )
            .await?;
        out.first()
            .copied()
            .filter(|&r| r > 0)
            .ok_or_else(|| StoreError::Db("the rules got no revision".into()))
    }

    /// Every tenant's newest rules.
    pub async fn current_rules(&self) -> Result<Vec<RuleSetRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT r.tenant_id, r.revision, r.source, r.loaded_at, r.loaded_by \
                     FROM rule_sets r WHERE r.revision = (SELECT MAX(revision) FROM rule_sets \
                     s WHERE s.tenant_id = r.tenant_id) ORDER BY r.tenant_id",
                ),
                vec![],
                &[Ty::Int, Ty::Int, Ty::Text, Ty::Int, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RuleSetRecord {
                    tenant: r[0].int()?,
                    revision: to_u64(r[1].int()?),
                    source: r[2].text()?,
                    loaded_at_ms: r[3].int()?,
                    loaded_by: r[4].text()?,
                })
            })
            .collect()
    }

    /// Open a trouble unless the device has a live one of the rule; its id (`None`: one is
    /// live already).
    pub async fn open_trouble(
        &self,
        key: &DeviceKey,
        t: &NewTrouble,
        now_ms: i64,
    ) -> Result<Option<u64>> {
        let out = self
            .run(
                vec![Stmt::returning(
                    "INSERT INTO troubles (tenant_id, device_id, rule_id, severity, title, action, \
                     state, note, evidence, occurrences, opened_at, last_event_at, quiet_until, \
                     fix) VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10, $11, $12, $13) \
                     ON CONFLICT (tenant_id, device_id, rule_id) WHERE state <> 'resolved' \
                     DO NOTHING RETURNING id",
                    vec![
                        key.tenant.into(),
                        key.device_id.as_str().into(),
                        (&t.rule_id).into(),
                        (&t.severity).into(),
                        (&t.title).into(),
                        (&t.action).into(),
                        t.note.clone().into(),
                        (&t.evidence_json).into(),
                        to_i64(t.occurrences).into(),
                        now_ms.into(),
                        t.last_event_at_ms.into(),
                        t.quiet_until_ms.into(),
                        t.fix_json.clone().into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().filter(|&id| id > 0))
    }

    /// Count more events on live troubles (they stay live for another quiet period).
    pub async fn recur_troubles(
        &self,
        tenant: TenantId,
        recurrences: &[TroubleRecurrence],
    ) -> Result<()> {
        if recurrences.is_empty() {
            return Ok(());
        }
        let stmts = recurrences
            .iter()
            .map(|r| {
                Stmt::new(
                    "UPDATE troubles SET occurrences = occurrences + $4, \
                     fix_outcome = CASE WHEN state = 'fixed' THEN \
                       'its fix (job ' || fix_job_id || ') succeeded, but matching events followed' \
                       ELSE fix_outcome END, \
                     state = CASE WHEN state = 'fixed' THEN 'open' ELSE state END, \
                     last_event_at = CASE WHEN last_event_at > $5 THEN last_event_at ELSE $5 END, \
                     quiet_until = CASE WHEN quiet_until > $6 THEN quiet_until ELSE $6 END \
                     WHERE tenant_id = $1 AND device_id = $2 AND rule_id = $3 \
                     AND state <> 'resolved'",
                    vec![
                        tenant.into(),
                        r.device_id.as_str().into(),
                        r.rule_id.as_str().into(),
                        to_i64(r.events).into(),
                        r.last_event_at_ms.into(),
                        r.quiet_until_ms.into(),
                    ],
                )
            })
            .collect();
        self.run(stmts, Guard::None).await?;
        Ok(())
    }

    pub async fn trouble(&self, tenant: TenantId, id: u64) -> Result<Option<TroubleRecord>> {
        const ONE: &str = "SELECT id, device_id, rule_id, severity, title, action, state, note, \
            evidence, occurrences, opened_at, last_event_at, quiet_until, acknowledged_by, \
            acknowledged_at, resolved_by, resolved_at, fix, fix_outcome, fix_job_id, fixed_at FROM troubles \
            WHERE tenant_id = $1 AND id = $2";
        debug_assert!(ONE.starts_with(TROUBLE_SELECT));
        let rows = self
            .select(
                sql(ONE),
                vec![tenant.into(), to_i64(id).into()],
                TROUBLE_COLUMNS,
            )
            .await?;
        rows.first().map(|r| trouble(r)).transpose()
    }

    /// A tenant's troubles, newest first, filtered, at most `limit`.
    pub async fn troubles(
        &self,
        tenant: TenantId,
        f: &TroubleFilter,
        limit: u32,
    ) -> Result<Vec<TroubleRecord>> {
        const MANY: &str = "SELECT id, device_id, rule_id, severity, title, action, state, note, \
            evidence, occurrences, opened_at, last_event_at, quiet_until, acknowledged_by, \
            acknowledged_at, resolved_by, resolved_at, fix, fix_outcome, fix_job_id, fixed_at FROM troubles \
            WHERE tenant_id = $1 AND ($2 = '' OR device_id = $2) AND ($3 = '' OR rule_id = $3) \
            AND ($4 = '' OR state = $4 OR ($4 = 'live' AND state <> 'resolved')) \
            ORDER BY id DESC LIMIT $5";
        debug_assert!(MANY.starts_with(TROUBLE_SELECT));
        let rows = self
            .select(
                sql(MANY),
                vec![
                    tenant.into(),
                    f.device_id.clone().unwrap_or_default().into(),
                    f.rule_id.clone().unwrap_or_default().into(),
                    f.state.clone().unwrap_or_default().into(),
                    i64::from(limit).into(),
                ],
                TROUBLE_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| trouble(r)).collect()
    }

    /// When the unit now in each slot appeared (its newest `unit_added` or `unit_replaced`
    /// event, by the device's clock); a slot without one has had its unit since the device's
    /// first report.
    pub async fn units_installed_at(
        &self,
        key: &DeviceKey,
    ) -> Result<std::collections::BTreeMap<String, i64>> {
        self.installed_at(key, "unit_added", "unit_replaced").await
    }

    /// When the cartridge now in each supply slot went in (its newest `supply_added` or
    /// `supply_replaced` event, by the device's clock).
    pub async fn supplies_installed_at(
        &self,
        key: &DeviceKey,
    ) -> Result<std::collections::BTreeMap<String, i64>> {
        self.installed_at(key, "supply_added", "supply_replaced")
            .await
    }

    async fn installed_at(
        &self,
        key: &DeviceKey,
        added: &str,
        replaced: &str,
    ) -> Result<std::collections::BTreeMap<String, i64>> {
        self.select(
            sql(
                "SELECT slot, MAX(observed_at) FROM structure_events WHERE tenant_id = $1 \
                 AND device_id = $2 AND kind IN ($3, $4) GROUP BY slot",
            ),
            vec![
                key.tenant.into(),
                key.device_id.as_str().into(),
                added.into(),
                replaced.into(),
            ],
            &[Ty::Text, Ty::Int],
        )
        .await?
        .iter()
        .map(|r| Ok((r[0].text()?, r[1].int()?)))
        .collect()
    }

    /// The live troubles of supplies running out (`supply-low:…`, `supply-empty:…`) and of
    /// parts near their end of life (`part-end-of-life:…`), newest first, at most `limit`.
    pub async fn live_supply_troubles(
        &self,
        tenant: TenantId,
        limit: u32,
    ) -> Result<Vec<TroubleRecord>> {
        const SUPPLY: &str = "SELECT id, device_id, rule_id, severity, title, action, state, note, \
            evidence, occurrences, opened_at, last_event_at, quiet_until, acknowledged_by, \
            acknowledged_at, resolved_by, resolved_at, fix, fix_outcome, fix_job_id, fixed_at FROM troubles \
            WHERE tenant_id = $1 AND state <> 'resolved' \
            AND (rule_id LIKE 'supply-%' OR rule_id LIKE 'part-end-of-life:%') \
            ORDER BY id DESC LIMIT $2";
        debug_assert!(SUPPLY.starts_with(TROUBLE_SELECT));
        let rows = self
            .select(
                sql(SUPPLY),
                vec![tenant.into(), i64::from(limit).into()],
                TROUBLE_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| trouble(r)).collect()
    }

    /// Acknowledge an open trouble; whether it was open.
    pub async fn acknowledge_trouble(
        &self,
        tenant: TenantId,
        id: u64,
        by: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE troubles SET state = 'acknowledged', acknowledged_by = $3, \
                     acknowledged_at = $4 WHERE tenant_id = $1 AND id = $2 AND state = 'open'",
                    vec![tenant.into(), to_i64(id).into(), by.into(), now_ms.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }

    /// Resolve a live trouble; whether it was live.
    pub async fn resolve_trouble(
        &self,
        tenant: TenantId,
        id: u64,
        by: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE troubles SET state = 'resolved', resolved_by = $3, resolved_at = $4 \
                     WHERE tenant_id = $1 AND id = $2 AND state <> 'resolved'",
                    vec![tenant.into(), to_i64(id).into(), by.into(), now_ms.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }

    /// Resolve the live troubles whose quiet period ended (at most 1000 per call); the ones
    /// this call resolved as `(tenant, trouble)`.
    pub async fn resolve_quiet_troubles(
        &self,
        now_ms: i64,
    ) -> Result<Vec<(TenantId, TroubleRecord)>> {
        let rows = self
            .select(
                sql(
                    "SELECT tenant_id, id FROM troubles WHERE quiet_until <= $1 \
                     AND state <> 'resolved' ORDER BY quiet_until LIMIT 1000",
                ),
                vec![now_ms.into()],
                &[Ty::Int, Ty::Int],
            )
            .await?;
        let due: Vec<(TenantId, i64)> = rows
            .iter()
            .map(|r| Ok((r[0].int()?, r[1].int()?)))
            .collect::<Result<_>>()?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let stmts = due
            .iter()
            .map(|(t, id)| {
                Stmt::new(
                    "UPDATE troubles SET state = 'resolved', resolved_by = 'center (quiet period)', \
                     resolved_at = $3 WHERE tenant_id = $1 AND id = $2 AND state <> 'resolved' \
                     AND quiet_until <= $3",
                    vec![(*t).into(), (*id).into(), now_ms.into()],
                )
            })
            .collect();
        let out = self.run(stmts, Guard::None).await?;
        let mut resolved = Vec::new();
        for ((t, id), n) in due.into_iter().zip(out) {
            if n == 1
                && let Some(rec) = self.trouble(t, to_u64(id)).await?
            {
                resolved.push((t, rec));
            }
        }
        Ok(resolved)
    }

    /// Every live trouble, as `(tenant, device, rule)` (the engines' state at start).
    pub async fn live_troubles(&self) -> Result<Vec<(TenantId, String, String)>> {
        let rows = self
            .select(
                sql("SELECT tenant_id, device_id, rule_id FROM troubles WHERE state <> 'resolved'"),
                vec![],
                &[Ty::Int, Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r[0].int()?, r[1].text()?, r[2].text()?)))
            .collect()
    }

    /// When the device's trouble of the rule was last resolved, if ever.
    pub async fn last_resolved(&self, key: &DeviceKey, rule_id: &str) -> Result<Option<i64>> {
        let rows = self
            .select(
                sql(
                    "SELECT MAX(resolved_at) FROM troubles WHERE tenant_id = $1 AND device_id = $2 \
                     AND rule_id = $3 AND state = 'resolved'",
                ),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    rule_id.into(),
                ],
                &[Ty::Int],
            )
            .await?;
        rows.first().map_or(Ok(None), |r| r[0].opt_int())
    }

    /// Record what the fix loop did for a trouble, and the job it made.
    pub async fn set_fix_outcome(
        &self,
        tenant: TenantId,
        id: u64,
        outcome: &str,
        job: Option<u64>,
    ) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "UPDATE troubles SET fix_outcome = $3, \
                 fix_job_id = CASE WHEN $4 > 0 THEN $4 ELSE fix_job_id END \
                 WHERE tenant_id = $1 AND id = $2",
                vec![
                    tenant.into(),
                    to_i64(id).into(),
                    outcome.into(),
                    job.map_or(0, to_i64).into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// The live troubles whose fix is job `job`.
    pub async fn troubles_fixed_by(
        &self,
        tenant: TenantId,
        job: u64,
    ) -> Result<Vec<TroubleRecord>> {
        const BY_JOB: &str = "SELECT id, device_id, rule_id, severity, title, action, state, note, \
            evidence, occurrences, opened_at, last_event_at, quiet_until, acknowledged_by, \
            acknowledged_at, resolved_by, resolved_at, fix, fix_outcome, fix_job_id, fixed_at FROM troubles \
            WHERE tenant_id = $1 AND fix_job_id = $2 AND state <> 'resolved'";
        debug_assert!(BY_JOB.starts_with(TROUBLE_SELECT));
        let rows = self
            .select(
                sql(BY_JOB),
                vec![tenant.into(), to_i64(job).into()],
                TROUBLE_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| trouble(r)).collect()
    }

    /// The trouble's fix succeeded: it is `fixed` and resolves at `quiet_until_ms` unless a
    /// matching event follows (which opens it again). Whether it was live.
    pub async fn mark_trouble_fixed(
        &self,
        tenant: TenantId,
        id: u64,
        now_ms: i64,
        quiet_until_ms: i64,
        outcome: &str,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE troubles SET state = 'fixed', fixed_at = $3, quiet_until = $4, \
                     fix_outcome = $5 WHERE tenant_id = $1 AND id = $2 AND state <> 'resolved'",
                    vec![
                        tenant.into(),
                        to_i64(id).into(),
                        now_ms.into(),
                        quiet_until_ms.into(),
                        outcome.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first() == Some(&1))
    }

    /// The device's abnormal units.
    pub async fn abnormal_units(&self, key: &DeviceKey) -> Result<Vec<AbnormalRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT slot, rule_id, reason, since FROM abnormal_units WHERE tenant_id = $1 \
                     AND device_id = $2 ORDER BY slot, rule_id",
                ),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[Ty::Text, Ty::Text, Ty::Text, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AbnormalRecord {
                    slot: r[0].text()?,
                    rule_id: r[1].text()?,
                    reason: r[2].text()?,
                    since_ms: r[3].int()?,
                })
            })
            .collect()
    }

    /// Make the device's abnormal units exactly `marks` (`(slot, rule, reason)`): new marks
    /// since now, kept ones keep their time, others are cleared. Whether anything changed.
    pub async fn set_abnormal_units(
        &self,
        key: &DeviceKey,
        marks: &[(String, String, String)],
        now_ms: i64,
    ) -> Result<bool> {
        self.set_abnormal_units_of(key, marks, &|_| true, now_ms)
            .await
    }

    /// As [`Store::set_abnormal_units`], for the rules `covers` accepts only: marks of other
    /// rules stay (those judged at every report and those judged from history once a day
    /// are set apart).
    pub async fn set_abnormal_units_of(
        &self,
        key: &DeviceKey,
        marks: &[(String, String, String)],
        covers: &(dyn Fn(&str) -> bool + Sync),
        now_ms: i64,
    ) -> Result<bool> {
        let current = self.abnormal_units(key).await?;
        let mut stmts = Vec::new();
        for c in current.iter().filter(|c| covers(&c.rule_id)) {
            if !marks
                .iter()
                .any(|(s, r, _)| *s == c.slot && *r == c.rule_id)
            {
                stmts.push(Stmt::new(
                    "DELETE FROM abnormal_units WHERE tenant_id = $1 AND device_id = $2 \
                     AND slot = $3 AND rule_id = $4",
                    vec![
                        key.tenant.into(),
                        key.device_id.as_str().into(),
                        c.slot.as_str().into(),
                        c.rule_id.as_str().into(),
                    ],
                ));
            }
        }
        for (slot, rule, reason) in marks {
            if current
                .iter()
                .any(|c| c.slot == *slot && c.rule_id == *rule && c.reason == *reason)
            {
                continue;
            }
            stmts.push(Stmt::new(
                "INSERT INTO abnormal_units (tenant_id, device_id, slot, rule_id, reason, since) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, device_id, slot, rule_id) \
                 DO UPDATE SET reason = excluded.reason",
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    slot.as_str().into(),
                    rule.as_str().into(),
                    reason.as_str().into(),
                    now_ms.into(),
                ],
            ));
        }
        if stmts.is_empty() {
            return Ok(false);
        }
        self.run(stmts, Guard::None).await?;
        Ok(true)
    }

    /// Set a device setting (replacing its value).
    pub async fn set_device_setting(
        &self,
        key: &DeviceKey,
        name: &str,
        value: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO device_settings (tenant_id, device_id, name, value, set_by, set_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, device_id, name) \
                 DO UPDATE SET value = excluded.value, set_by = excluded.set_by, \
                 set_at = excluded.set_at",
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    name.into(),
                    value.into(),
                    by.into(),
                    now_ms.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// The settings the center set on the device.
    pub async fn device_settings(&self, key: &DeviceKey) -> Result<Vec<SettingRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT name, value, set_by, set_at FROM device_settings WHERE tenant_id = $1 \
                     AND device_id = $2 ORDER BY name",
                ),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[Ty::Text, Ty::Text, Ty::Text, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SettingRecord {
                    name: r[0].text()?,
                    value: r[1].text()?,
                    set_by: r[2].text()?,
                    set_at_ms: r[3].int()?,
                })
            })
            .collect()
    }

    /// Events (not tombstones) received at or after `since_ms`, in receiving order, after the
    /// cursor `(received_at, tenant, device, epoch, seq)`, at most `limit`: the replay at start.
    pub async fn error_events_received_since(
        &self,
        since_ms: i64,
        after: Option<(i64, TenantId, String, u64, u64)>,
        limit: u32,
    ) -> Result<Vec<(TenantId, String, crate::ErrorEventRecord)>> {
        let (ra, t, d, e, s) = after.unwrap_or((since_ms, -1, String::new(), 0, 0));
        let rows = self
            .select(
                sql(
                    "SELECT tenant_id, device_id, boot_epoch, seq, at, slot, code, severity, \
                     counters, upload_trigger, received_at FROM error_events \
                     WHERE received_at >= $1 AND dropped = 0 AND (received_at > $2 OR \
                     (received_at = $2 AND (tenant_id > $3 OR (tenant_id = $3 AND (device_id > $4 \
                     OR (device_id = $4 AND (boot_epoch > $5 OR (boot_epoch = $5 AND seq > $6)))))))) \
                     ORDER BY received_at, tenant_id, device_id, boot_epoch, seq LIMIT $7",
                ),
                vec![
                    since_ms.into(),
                    ra.into(),
                    t.into(),
                    d.into(),
                    to_i64(e).into(),
                    to_i64(s).into(),
                    i64::from(limit).into(),
                ],
                &[
                    Ty::Int,
                    Ty::Text,
                    Ty::Int,
                    Ty::Int,
                    Ty::Int,
                    Ty::Text,
                    Ty::Text,
                    Ty::Text,
                    Ty::Text,
                    Ty::Text,
                    Ty::Int,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r[0].int()?,
                    r[1].text()?,
                    crate::ErrorEventRecord {
                        boot_epoch: to_u64(r[2].int()?),
                        seq: to_u64(r[3].int()?),
                        at_ms: r[4].int()?,
                        slot: r[5].text()?,
                        code: r[6].text()?,
                        severity: r[7].text()?,
                        counters_json: r[8].opt_text()?,
                        detail: None,
                        alert_json: None,
                        trigger: r[9].text()?,
                        received_at_ms: r[10].int()?,
                    },
                ))
            })
            .collect()
    }

    /// The device's events per day over the last `days` days, and its model fleet's (events
    /// of every device of the model, per device and day): `(device, fleet)`.
    pub async fn error_rates(
        &self,
        key: &DeviceKey,
        model: &str,
        since_ms: i64,
    ) -> Result<(u64, u64, u64)> {
        let own = self
            .select(
                sql(
                    "SELECT COUNT(*) FROM error_events WHERE tenant_id = $1 AND device_id = $2 \
                     AND at >= $3 AND dropped = 0",
                ),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    since_ms.into(),
                ],
                &[Ty::Int],
            )
            .await?;
        let fleet = self
            .select(
                sql(
                    "SELECT COUNT(*), (SELECT COUNT(*) FROM devices WHERE tenant_id = $1 \
                     AND model = $2) FROM error_events e JOIN devices d ON d.tenant_id = \
                     e.tenant_id AND d.device_id = e.device_id WHERE d.tenant_id = $1 \
                     AND d.model = $2 AND e.at >= $3 AND e.dropped = 0",
                ),
                vec![key.tenant.into(), model.into(), since_ms.into()],
                &[Ty::Int, Ty::Int],
            )
            .await?;
        let one = |rows: &[Vec<Val>], i: usize| -> Result<u64> {
            rows.first().map_or(Ok(0), |r| r[i].int().map(to_u64))
        };
        Ok((one(&own, 0)?, one(&fleet, 0)?, one(&fleet, 1)?))
    }
}
