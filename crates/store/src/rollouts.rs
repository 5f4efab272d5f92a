//! Rollouts in the store: sites and device labels, rollouts, each wave's counters, and each
//! selected device's state. Every change of a device's state changes its wave's counters in
//! the same transaction, so progress is read from the counters, never by scanning jobs.

use crate::exec::{Guard, Sql, Stmt, Ty, Val, sql};
use crate::{DeviceKey, Result, Store, TenantId, to_i64, to_u64};

/// States of a device in a rollout (each has a counter column of the same name, but
/// `cancelled`, counted as skipped).
pub const ROLLOUT_DEVICE_STATES: &[&str] = &[
    "pending",
    "ineligible",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    pub name: String,
    pub timezone: String,
    /// JSON: the windows as written (`["mon-fri 22:00-06:00"]`).
    pub windows_json: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelRecord {
    pub device_id: String,
    pub site: Option<String>,
    /// JSON array of tags.
    pub tags_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRollout {
    pub name: String,
    /// JSON: what to deliver, to whom, the gates (the server's own shape).
    pub spec_json: String,
    /// JSON: the waves' cumulative thresholds.
    pub thresholds_json: String,
    pub waves: u32,
    /// `awaiting_approval` or `running`.
    pub state: String,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRecord {
    pub tenant: TenantId,
    pub id: u64,
    pub name: String,
    pub spec_json: String,
    pub thresholds_json: String,
    /// `awaiting_approval`, `running`, `paused`, `aborted`.
    pub state: String,
    pub state_reason: Option<String>,
    pub current_wave: u32,
    /// The highest wave approved to start (for rollouts that advance by approval).
    pub wave_approved: u32,
    pub created_by: String,
    pub created_at_ms: i64,
    pub approved_by: Option<String>,
    pub approved_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaveRecord {
    pub wave: u32,
    pub devices: u64,
    pub pending: u64,
    pub ineligible: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    pub started_at_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutDeviceRecord {
    pub device_id: String,
    pub wave: u32,
    pub state: String,
    pub reason: Option<String>,
    pub job_id: Option<u64>,
    pub updated_at_ms: i64,
}

/// A selected device to add: its wave and first state (`pending` or `skipped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRolloutDevice {
    pub device_id: String,
    pub wave: u32,
    pub state: String,
    pub reason: Option<String>,
}

/// What the engine needs to know of a device to judge its state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCondition {
    pub last_report_at_ms: Option<i64>,
    pub worst_trouble: Option<String>,
    pub abnormal_slots: Vec<String>,
    pub open_job: Option<u64>,
    /// Why the device cannot install software (`None`: it can).
    pub install_blocked: Option<String>,
}

/// A running device whose job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedJob {
    pub device_id: String,
    pub wave: u32,
    pub job_id: u64,
    pub job_state: String,
    pub reason: Option<String>,
    pub steps_json: String,
}

const ROLLOUT_COLUMNS: &[Ty] = &[
    Ty::Int,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Int,
    Ty::Text,
    Ty::Int,
    Ty::Text,
    Ty::Int,
    Ty::Int,
];
const ROLLOUT_SELECT: &str = "SELECT tenant_id, id, name, spec, thresholds, state, state_reason, \
    current_wave, wave_approved, created_by, created_at, approved_by, approved_at, updated_at \
    FROM rollouts";

fn rollout(r: &[Val]) -> Result<RolloutRecord> {
    Ok(RolloutRecord {
        tenant: r[0].int()?,
        id: to_u64(r[1].int()?),
        name: r[2].text()?,
        spec_json: r[3].text()?,
        thresholds_json: r[4].text()?,
        state: r[5].text()?,
        state_reason: r[6].opt_text()?,
        current_wave: u32::try_from(r[7].int()?).unwrap_or(0),
        wave_approved: u32::try_from(r[8].int()?).unwrap_or(0),
        created_by: r[9].text()?,
        created_at_ms: r[10].int()?,
        approved_by: r[11].opt_text()?,
        approved_at_ms: r[12].opt_int()?,
        updated_at_ms: r[13].int()?,
    })
}

/// The counter columns, each moved by `-(from = col) + (to = col)` ($4 from, $5 to).
const MOVE_COUNTERS: &str = "UPDATE rollout_waves SET \
    pending = pending - (CASE WHEN $4 = 'pending' THEN 1 ELSE 0 END) + (CASE WHEN $5 = 'pending' THEN 1 ELSE 0 END), \
    ineligible = ineligible - (CASE WHEN $4 = 'ineligible' THEN 1 ELSE 0 END) + (CASE WHEN $5 = 'ineligible' THEN 1 ELSE 0 END), \
    running = running - (CASE WHEN $4 = 'running' THEN 1 ELSE 0 END) + (CASE WHEN $5 = 'running' THEN 1 ELSE 0 END), \
    succeeded = succeeded - (CASE WHEN $4 = 'succeeded' THEN 1 ELSE 0 END) + (CASE WHEN $5 = 'succeeded' THEN 1 ELSE 0 END), \
    failed = failed - (CASE WHEN $4 = 'failed' THEN 1 ELSE 0 END) + (CASE WHEN $5 = 'failed' THEN 1 ELSE 0 END), \
    skipped = skipped - (CASE WHEN $4 IN ('skipped', 'cancelled') THEN 1 ELSE 0 END) + (CASE WHEN $5 IN ('skipped', 'cancelled') THEN 1 ELSE 0 END) \
    WHERE tenant_id = $1 AND rollout_id = $2 AND wave = $3";

impl Store {
    pub async fn set_site(&self, tenant: TenantId, s: &SiteRecord) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO sites (tenant_id, name, timezone, windows) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET timezone = excluded.timezone, \
                 windows = excluded.windows",
                vec![
                    tenant.into(),
                    (&s.name).into(),
                    (&s.timezone).into(),
                    (&s.windows_json).into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    pub async fn sites(&self, tenant: TenantId) -> Result<Vec<SiteRecord>> {
        let rows = self
            .select(
                sql("SELECT name, timezone, windows FROM sites WHERE tenant_id = $1 ORDER BY name"),
                vec![tenant.into()],
                &[Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SiteRecord {
                    name: r[0].text()?,
                    timezone: r[1].text()?,
                    windows_json: r[2].text()?,
                })
            })
            .collect()
    }

    /// Every tenant's sites (the engine keeps them in memory).
    pub async fn all_sites(&self) -> Result<Vec<(TenantId, SiteRecord)>> {
        let rows = self
            .select(
                sql("SELECT tenant_id, name, timezone, windows FROM sites"),
                vec![],
                &[Ty::Int, Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r[0].int()?,
                    SiteRecord {
                        name: r[1].text()?,
                        timezone: r[2].text()?,
                        windows_json: r[3].text()?,
                    },
                ))
            })
            .collect()
    }

    pub async fn set_labels(&self, key: &DeviceKey, l: &LabelRecord) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO device_labels (tenant_id, device_id, site, tags) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, device_id) DO UPDATE SET site = excluded.site, \
                 tags = excluded.tags",
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    l.site.clone().into(),
                    (&l.tags_json).into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// One device's labels, if it has any.
    pub async fn label_of(&self, key: &DeviceKey) -> Result<Option<LabelRecord>> {
        let rows = self
            .select(
                sql("SELECT device_id, site, tags FROM device_labels WHERE tenant_id = $1 AND device_id = $2"),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(LabelRecord {
                    device_id: r[0].text()?,
                    site: r[1].opt_text()?,
                    tags_json: r[2].text()?,
                })
            })
            .transpose()
    }

    /// Every tenant's device labels (the engine keeps them in memory).
    pub async fn all_labels(&self) -> Result<Vec<(TenantId, LabelRecord)>> {
        let rows = self
            .select(
                sql("SELECT tenant_id, device_id, site, tags FROM device_labels"),
                vec![],
                &[Ty::Int, Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r[0].int()?,
                    LabelRecord {
                        device_id: r[1].text()?,
                        site: r[2].opt_text()?,
                        tags_json: r[3].text()?,
                    },
                ))
            })
            .collect()
    }

    /// A new rollout and its (empty) waves; its id.
    pub async fn create_rollout(
        &self,
        tenant: TenantId,
        r: &NewRollout,
        now_ms: i64,
    ) -> Result<u64> {
        let out = self
            .run(
                vec![Stmt::returning(
                    "INSERT INTO rollouts (tenant_id, name, spec, thresholds, state, current_wave, \
                     wave_approved, created_by, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $7, $7) RETURNING id",
                    vec![
                        tenant.into(),
                        (&r.name).into(),
                        (&r.spec_json).into(),
                        (&r.thresholds_json).into(),
                        (&r.state).into(),
                        (&r.created_by).into(),
                        now_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        let id = out.first().copied().unwrap_or(0);
        let waves = (0..r.waves)
            .map(|w| {
                Stmt::new(
                    "INSERT INTO rollout_waves (tenant_id, rollout_id, wave) VALUES ($1, $2, $3)",
                    vec![tenant.into(), to_i64(id).into(), i64::from(w).into()],
                )
            })
            .collect();
        self.run(waves, Guard::None).await?;
        Ok(id)
    }

    /// Add selected devices (new to the rollout) in one transaction; their waves' counters
    /// follow. Devices already in the rollout are left as they are.
    pub async fn add_rollout_devices(
        &self,
        tenant: TenantId,
        rollout: u64,
        devices: &[NewRolloutDevice],
        now_ms: i64,
    ) -> Result<u64> {
        let mut groups = Vec::with_capacity(devices.len());
        for d in devices {
            groups.push((
                vec![
                    Stmt::new(
                        "INSERT INTO rollout_devices (tenant_id, rollout_id, device_id, wave, state, \
                         reason, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (tenant_id, rollout_id, device_id) DO NOTHING",
                        vec![
                            tenant.into(),
                            to_i64(rollout).into(),
                            d.device_id.as_str().into(),
                            i64::from(d.wave).into(),
                            d.state.as_str().into(),
                            d.reason.clone().into(),
                            now_ms.into(),
                        ],
                    ),
                    Stmt::new(
                        "UPDATE rollout_waves SET devices = devices + 1, \
                         pending = pending + (CASE WHEN $4 = 'pending' THEN 1 ELSE 0 END), \
                         skipped = skipped + (CASE WHEN $4 = 'skipped' THEN 1 ELSE 0 END), \
                         succeeded = succeeded + (CASE WHEN $4 = 'succeeded' THEN 1 ELSE 0 END) \
                         WHERE tenant_id = $1 AND rollout_id = $2 AND wave = $3",
                        vec![
                            tenant.into(),
                            to_i64(rollout).into(),
                            i64::from(d.wave).into(),
                            d.state.as_str().into(),
                        ],
                    ),
                ],
                Guard::First,
            ));
        }
        let out = self.run_groups(groups).await?;
        Ok(out.iter().filter(|g| g.first().copied() == Some(1)).count() as u64)
    }

    pub async fn rollout(&self, tenant: TenantId, id: u64) -> Result<Option<RolloutRecord>> {
        const ONE: &str = "SELECT tenant_id, id, name, spec, thresholds, state, state_reason, \
            current_wave, wave_approved, created_by, created_at, approved_by, approved_at, \
            updated_at FROM rollouts WHERE tenant_id = $1 AND id = $2";
        debug_assert!(ONE.starts_with(ROLLOUT_SELECT));
        let rows = self
            .select(
                sql(ONE),
                vec![tenant.into(), to_i64(id).into()],
                ROLLOUT_COLUMNS,
            )
            .await?;
        rows.first().map(|r| rollout(r)).transpose()
    }

    /// A tenant's rollouts, newest first.
    pub async fn rollouts(&self, tenant: TenantId, limit: u32) -> Result<Vec<RolloutRecord>> {
        const MANY: &str = "SELECT tenant_id, id, name, spec, thresholds, state, state_reason, \
            current_wave, wave_approved, created_by, created_at, approved_by, approved_at, \
            updated_at FROM rollouts WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2";
        let rows = self
            .select(
                sql(MANY),
                vec![tenant.into(), i64::from(limit).into()],
                ROLLOUT_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| rollout(r)).collect()
    }

    /// Rollouts the engine works on (every tenant): running, paused or aborted with devices
    /// still running.
    pub async fn active_rollouts(&self) -> Result<Vec<RolloutRecord>> {
        const LIVE: &str = "SELECT tenant_id, id, name, spec, thresholds, state, state_reason, \
            current_wave, wave_approved, created_by, created_at, approved_by, approved_at, \
            updated_at FROM rollouts WHERE state IN ('running', 'paused') \
            OR (state = 'aborted' AND EXISTS (SELECT 1 FROM rollout_waves w WHERE \
            w.tenant_id = rollouts.tenant_id AND w.rollout_id = rollouts.id AND w.running > 0)) \
            ORDER BY id";
        let rows = self.select(sql(LIVE), vec![], ROLLOUT_COLUMNS).await?;
        rows.iter().map(|r| rollout(r)).collect()
    }

    /// Move a rollout between states (`from` guards it); `false` if it was in none of them.
    pub async fn set_rollout_state(
        &self,
        tenant: TenantId,
        id: u64,
        from: &[&str],
        to: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<bool> {
        let from = serde_json::to_string(from).expect("strings serialize");
        let out = self
            .run(
                vec![Stmt::each(
                    "UPDATE rollouts SET state = $4, state_reason = $5, updated_at = $6 \
                     WHERE tenant_id = $1 AND id = $2 AND state IN (SELECT value FROM json_each($3))",
                    "UPDATE rollouts SET state = $4, state_reason = $5, updated_at = $6 \
                     WHERE tenant_id = $1 AND id = $2 AND state IN (SELECT jsonb_array_elements_text($3::jsonb))",
                    vec![
                        tenant.into(),
                        to_i64(id).into(),
                        from.into(),
                        to.into(),
                        reason.into(),
                        now_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }

    /// Approve a rollout awaiting approval (it starts); `false` if it was not waiting.
    pub async fn approve_rollout(
        &self,
        tenant: TenantId,
        id: u64,
        by: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE rollouts SET state = 'running', state_reason = NULL, approved_by = $3, \
                     approved_at = $4, updated_at = $4 WHERE tenant_id = $1 AND id = $2 \
                     AND state = 'awaiting_approval'",
                    vec![tenant.into(), to_i64(id).into(), by.into(), now_ms.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }

    /// Let wave `wave` start (for rollouts that advance by approval).
    pub async fn approve_wave(
        &self,
        tenant: TenantId,
        id: u64,
        wave: u32,
        now_ms: i64,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE rollouts SET wave_approved = $3, updated_at = $4 WHERE tenant_id = $1 \
                     AND id = $2 AND wave_approved < $3",
                    vec![
                        tenant.into(),
                        to_i64(id).into(),
                        i64::from(wave).into(),
                        now_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }

    /// Start wave `wave` (it becomes the current one).
    pub async fn start_wave(
        &self,
        tenant: TenantId,
        id: u64,
        wave: u32,
        now_ms: i64,
    ) -> Result<()> {
        self.run(
            vec![
                Stmt::new(
                    "UPDATE rollouts SET current_wave = $3, state_reason = NULL, updated_at = $4 \
                     WHERE tenant_id = $1 AND id = $2 \
                     AND (current_wave < $3 OR (current_wave = 0 AND $3 = 0))",
                    vec![tenant.into(), to_i64(id).into(), i64::from(wave).into(), now_ms.into()],
                ),
                Stmt::new(
                    "UPDATE rollout_waves SET started_at = $4 WHERE tenant_id = $1 AND rollout_id = $2 \
                     AND wave = $3 AND started_at IS NULL",
                    vec![tenant.into(), to_i64(id).into(), i64::from(wave).into(), now_ms.into()],
                ),
            ],
            Guard::First,
        )
        .await?;
        Ok(())
    }

    /// Rollouts whose creation never finished (their center stopped between the rollout and
    /// its devices) and that were last touched before `before_ms`: aborted, with the reason.
    /// How many.
    pub async fn abandon_unfinished_rollouts(&self, before_ms: i64, now_ms: i64) -> Result<u64> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE rollouts SET state = 'aborted', state_reason = \
                     'its creation did not finish (the center stopped); create it again', \
                     updated_at = $2 WHERE state = 'creating' AND updated_at < $1",
                    vec![before_ms.into(), now_ms.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0))
    }

    /// Note why the rollout is where it is (without moving it).
    pub async fn set_rollout_reason(
        &self,
        tenant: TenantId,
        id: u64,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "UPDATE rollouts SET state_reason = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2",
                vec![tenant.into(), to_i64(id).into(), reason.into(), now_ms.into()],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    pub async fn rollout_waves(&self, tenant: TenantId, id: u64) -> Result<Vec<WaveRecord>> {
        let rows = self
            .select(
                sql("SELECT wave, devices, pending, ineligible, running, succeeded, failed, skipped, \
                     started_at FROM rollout_waves WHERE tenant_id = $1 AND rollout_id = $2 ORDER BY wave"),
                vec![tenant.into(), to_i64(id).into()],
                &[Ty::Int, Ty::Int, Ty::Int, Ty::Int, Ty::Int, Ty::Int, Ty::Int, Ty::Int, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WaveRecord {
                    wave: u32::try_from(r[0].int()?).unwrap_or(0),
                    devices: to_u64(r[1].int()?),
                    pending: to_u64(r[2].int()?),
                    ineligible: to_u64(r[3].int()?),
                    running: to_u64(r[4].int()?),
                    succeeded: to_u64(r[5].int()?),
                    failed: to_u64(r[6].int()?),
                    skipped: to_u64(r[7].int()?),
                    started_at_ms: r[8].opt_int()?,
                })
            })
            .collect()
    }

    /// A rollout's devices in a state (`""`: any), by device id after `after`.
    pub async fn rollout_devices(
        &self,
        tenant: TenantId,
        id: u64,
        state: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RolloutDeviceRecord>> {
        let rows = self
            .select(
                sql("SELECT device_id, wave, state, reason, job_id, updated_at FROM rollout_devices \
                     WHERE tenant_id = $1 AND rollout_id = $2 AND ($3 = '' OR state = $3) \
                     AND device_id > $4 ORDER BY device_id LIMIT $5"),
                vec![
                    tenant.into(),
                    to_i64(id).into(),
                    state.into(),
                    after.into(),
                    i64::from(limit).into(),
                ],
                DEVICE_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| device_record(r)).collect()
    }

    /// Devices to look at next: pending ones of started waves, then ineligible ones not looked
    /// at since `recheck_before`, lowest waves first.
    pub async fn rollout_candidates(
        &self,
        tenant: TenantId,
        id: u64,
        max_wave: u32,
        recheck_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<RolloutDeviceRecord>> {
        let rows = self
            .select(
                sql("SELECT device_id, wave, state, reason, job_id, updated_at FROM rollout_devices \
                     WHERE tenant_id = $1 AND rollout_id = $2 AND wave <= $3 AND \
                     (state = 'pending' OR (state = 'ineligible' AND updated_at < $4)) \
                     ORDER BY wave, state DESC, updated_at LIMIT $5"),
                vec![
                    tenant.into(),
                    to_i64(id).into(),
                    i64::from(max_wave).into(),
                    recheck_before_ms.into(),
                    i64::from(limit).into(),
                ],
                DEVICE_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| device_record(r)).collect()
    }

    /// Move devices of a rollout between states, each its own guarded group, in one
    /// transaction; for each, whether it moved.
    pub async fn move_rollout_devices(
        &self,
        tenant: TenantId,
        id: u64,
        moves: &[RolloutMove],
        now_ms: i64,
    ) -> Result<Vec<bool>> {
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        let groups = moves
            .iter()
            .map(|m| {
                (
                    move_stmts(
                        tenant,
                        id,
                        &m.device_id,
                        m.wave,
                        &m.from,
                        &m.to,
                        m.reason.as_deref(),
                        now_ms,
                    ),
                    Guard::First,
                )
            })
            .collect();
        let out = self.run_groups(groups).await?;
        Ok(out.iter().map(|g| g.first().copied() == Some(1)).collect())
    }

    /// Dispatch devices, each with its job, in one transaction; each job's id (`None`: the
    /// device was no longer in its `from` state).
    pub async fn dispatch_rollout_jobs(
        &self,
        id: u64,
        items: &[(DeviceKey, u32, String, crate::NewJob)],
        now_ms: i64,
    ) -> Result<Vec<Option<u64>>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let groups = items
            .iter()
            .map(|(key, wave, from, job)| {
                (
                    dispatch_stmts(key, id, *wave, from, job, now_ms),
                    Guard::First,
                )
            })
            .collect();
        let out = self.run_groups(groups).await?;
        Ok(out
            .iter()
            .map(|g| g.get(2).copied().filter(|&j| j > 0))
            .collect())
    }

    /// Add the selection of a new rollout (no device of it is stored yet): the rows, then
    /// each wave's counters once per chunk.
    pub async fn add_fresh_rollout_devices(
        &self,
        tenant: TenantId,
        rollout: u64,
        devices: &[NewRolloutDevice],
        now_ms: i64,
    ) -> Result<()> {
        let mut stmts = Vec::with_capacity(devices.len() + 8);
        let mut per_wave: std::collections::BTreeMap<u32, [i64; 4]> = Default::default();
        for d in devices {
            stmts.push(Stmt::new(
                "INSERT INTO rollout_devices (tenant_id, rollout_id, device_id, wave, state, \
                 reason, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![
                    tenant.into(),
                    to_i64(rollout).into(),
                    d.device_id.as_str().into(),
                    i64::from(d.wave).into(),
                    d.state.as_str().into(),
                    d.reason.clone().into(),
                    now_ms.into(),
                ],
            ));
            let c = per_wave.entry(d.wave).or_default();
            c[0] += 1;
            match d.state.as_str() {
                "pending" => c[1] += 1,
                "skipped" => c[2] += 1,
                "succeeded" => c[3] += 1,
                _ => {}
            }
        }
        for (wave, c) in per_wave {
            stmts.push(Stmt::new(
                "UPDATE rollout_waves SET devices = devices + $4, pending = pending + $5, \
                 skipped = skipped + $6, succeeded = succeeded + $7 \
                 WHERE tenant_id = $1 AND rollout_id = $2 AND wave = $3",
                vec![
                    tenant.into(),
                    to_i64(rollout).into(),
                    i64::from(wave).into(),
                    c[0].into(),
                    c[1].into(),
                    c[2].into(),
                    c[3].into(),
                ],
            ));
        }
        self.run(stmts, Guard::None).await?;
        Ok(())
    }

    /// Move a device of a rollout from one state to another (its wave's counters follow);
    /// `false` if it was not in `from`.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_rollout_device(
        &self,
        tenant: TenantId,
        id: u64,
        device: &str,
        wave: u32,
        from: &str,
        to: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<bool> {
        let out = self
            .run(
                move_stmts(tenant, id, device, wave, from, to, reason, now_ms),
                Guard::First,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }

    /// Running devices of a rollout whose jobs have ended.
    pub async fn finished_rollout_jobs(
        &self,
        tenant: TenantId,
        id: u64,
        limit: u32,
    ) -> Result<Vec<FinishedJob>> {
        let rows = self
            .select(
                sql("SELECT rd.device_id, rd.wave, j.id, j.state, j.reason, j.steps FROM rollout_devices rd \
                     JOIN jobs j ON j.tenant_id = rd.tenant_id AND j.id = rd.job_id \
                     WHERE rd.tenant_id = $1 AND rd.rollout_id = $2 AND rd.state = 'running' \
                     AND j.state IN ('succeeded', 'failed', 'rolled_back') LIMIT $3"),
                vec![tenant.into(), to_i64(id).into(), i64::from(limit).into()],
                &[Ty::Text, Ty::Int, Ty::Int, Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(FinishedJob {
                    device_id: r[0].text()?,
                    wave: u32::try_from(r[1].int()?).unwrap_or(0),
                    job_id: to_u64(r[2].int()?),
                    job_state: r[3].text()?,
                    reason: r[4].opt_text()?,
                    steps_json: r[5].text()?,
                })
            })
            .collect()
    }

    /// Jobs of a rollout's running devices that have not started (for an abort).
    pub async fn unstarted_rollout_jobs(
        &self,
        tenant: TenantId,
        id: u64,
    ) -> Result<Vec<(String, u32, u64)>> {
        let rows = self
            .select(
                sql(
                    "SELECT rd.device_id, rd.wave, j.id FROM rollout_devices rd \
                     JOIN jobs j ON j.tenant_id = rd.tenant_id AND j.id = rd.job_id \
                     WHERE rd.tenant_id = $1 AND rd.rollout_id = $2 AND rd.state = 'running' \
                     AND j.state IN ('awaiting_approval', 'queued')",
                ),
                vec![tenant.into(), to_i64(id).into()],
                &[Ty::Text, Ty::Int, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r[0].text()?,
                    u32::try_from(r[1].int()?).unwrap_or(0),
                    to_u64(r[2].int()?),
                ))
            })
            .collect()
    }

    /// Cancel the rollout's devices that have not started (pending, ineligible): how many.
    pub async fn cancel_rollout_devices(
        &self,
        tenant: TenantId,
        id: u64,
        now_ms: i64,
    ) -> Result<u64> {
        let waves = self.rollout_waves(tenant, id).await?;
        let mut stmts = Vec::new();
        for w in &waves {
            stmts.push(Stmt::new(
                "UPDATE rollout_waves SET skipped = skipped + pending + ineligible, pending = 0, \
                 ineligible = 0 WHERE tenant_id = $1 AND rollout_id = $2 AND wave = $3",
                vec![tenant.into(), to_i64(id).into(), i64::from(w.wave).into()],
            ));
        }
        stmts.push(Stmt::new(
            "UPDATE rollout_devices SET state = 'cancelled', reason = 'the rollout was aborted', \
             updated_at = $3 WHERE tenant_id = $1 AND rollout_id = $2 AND state IN ('pending', 'ineligible')",
            vec![tenant.into(), to_i64(id).into(), now_ms.into()],
        ));
        let out = self.run(stmts, Guard::None).await?;
        Ok(out.last().copied().unwrap_or(0))
    }

    /// One device's place in a rollout.
    pub async fn rollout_device(
        &self,
        tenant: TenantId,
        id: u64,
        device: &str,
    ) -> Result<Option<RolloutDeviceRecord>> {
        let rows = self
            .select(
                sql("SELECT device_id, wave, state, reason, job_id, updated_at FROM rollout_devices \
                     WHERE tenant_id = $1 AND rollout_id = $2 AND device_id = $3"),
                vec![tenant.into(), to_i64(id).into(), device.into()],
                DEVICE_COLUMNS,
            )
            .await?;
        rows.first().map(|r| device_record(r)).transpose()
    }

    /// What the engine needs to judge a device's state.
    pub async fn device_condition(&self, key: &DeviceKey) -> Result<DeviceCondition> {
        let rows = self
            .select(
                Sql::Each {
                    sqlite: "SELECT d.last_report_at, \
                        (SELECT severity FROM troubles t WHERE t.tenant_id = d.tenant_id AND \
                         t.device_id = d.device_id AND t.state NOT IN ('resolved', 'fixed') ORDER BY CASE severity \
                         WHEN 'critical' THEN 4 WHEN 'major' THEN 3 WHEN 'minor' THEN 2 ELSE 1 END DESC LIMIT 1), \
                        (SELECT group_concat(slot, ',') FROM abnormal_units a WHERE a.tenant_id = d.tenant_id \
                         AND a.device_id = d.device_id), \
                        (SELECT MIN(id) FROM jobs j WHERE j.tenant_id = d.tenant_id AND j.device_id = d.device_id \
                         AND j.state NOT IN ('succeeded', 'failed', 'rolled_back')), d.install_blocked \
                        FROM devices d WHERE d.tenant_id = $1 AND d.device_id = $2",
                    postgres: "SELECT d.last_report_at, \
                        (SELECT severity FROM troubles t WHERE t.tenant_id = d.tenant_id AND \
                         t.device_id = d.device_id AND t.state NOT IN ('resolved', 'fixed') ORDER BY CASE severity \
                         WHEN 'critical' THEN 4 WHEN 'major' THEN 3 WHEN 'minor' THEN 2 ELSE 1 END DESC LIMIT 1), \
                        (SELECT string_agg(slot, ',') FROM abnormal_units a WHERE a.tenant_id = d.tenant_id \
                         AND a.device_id = d.device_id), \
                        (SELECT MIN(id) FROM jobs j WHERE j.tenant_id = d.tenant_id AND j.device_id = d.device_id \
                         AND j.state NOT IN ('succeeded', 'failed', 'rolled_back')), d.install_blocked \
                        FROM devices d WHERE d.tenant_id = $1 AND d.device_id = $2",
                },
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[Ty::Int, Ty::Text, Ty::Text, Ty::Int, Ty::Text],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Ok(DeviceCondition::default());
        };
        Ok(DeviceCondition {
            last_report_at_ms: r[0].opt_int()?,
            worst_trouble: r[1].opt_text()?,
            abnormal_slots: r[2]
                .opt_text()?
                .map(|s| {
                    s.split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            open_job: r[3].opt_int()?.map(to_u64),
            install_blocked: r[4].opt_text()?,
        })
    }
}

/// A device of a rollout to move between states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutMove {
    pub device_id: String,
    pub wave: u32,
    pub from: String,
    pub to: String,
    pub reason: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn move_stmts(
    tenant: TenantId,
    id: u64,
    device: &str,
    wave: u32,
    from: &str,
    to: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> Vec<Stmt> {
    vec![
        Stmt::new(
            "UPDATE rollout_devices SET state = $5, reason = $6, updated_at = $7 \
             WHERE tenant_id = $1 AND rollout_id = $2 AND device_id = $3 AND wave = $8 \
             AND state = $4",
            vec![
                tenant.into(),
                to_i64(id).into(),
                device.into(),
                from.into(),
                to.into(),
                reason.into(),
                now_ms.into(),
                i64::from(wave).into(),
            ],
        ),
        Stmt::new(
            MOVE_COUNTERS,
            vec![
                tenant.into(),
                to_i64(id).into(),
                i64::from(wave).into(),
                from.into(),
                to.into(),
            ],
        ),
    ]
}

/// Claim the device (guard), move its counters, create its job, record the job's id.
fn dispatch_stmts(
    key: &DeviceKey,
    id: u64,
    wave: u32,
    from: &str,
    job: &crate::NewJob,
    now_ms: i64,
) -> Vec<Stmt> {
    let (t, d) = (key.tenant, key.device_id.as_str());
    vec![
        Stmt::new(
            "UPDATE rollout_devices SET state = 'running', reason = NULL, updated_at = $5 \
             WHERE tenant_id = $1 AND rollout_id = $2 AND device_id = $3 AND state = $4",
            vec![
                t.into(),
                to_i64(id).into(),
                d.into(),
                from.into(),
                now_ms.into(),
            ],
        ),
        Stmt::new(
            MOVE_COUNTERS,
            vec![
                t.into(),
                to_i64(id).into(),
                i64::from(wave).into(),
                from.into(),
                "running".into(),
            ],
        ),
        Stmt::returning(
            "INSERT INTO jobs (tenant_id, device_id, origin, state, steps, catalog_revision, \
             created_by, created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9) RETURNING id",
            vec![
                t.into(),
                d.into(),
                (&job.origin).into(),
                (&job.state).into(),
                (&job.steps_json).into(),
                job.catalog_revision.map(to_i64).into(),
                (&job.created_by).into(),
                now_ms.into(),
                job.expires_at_ms.into(),
            ],
        ),
        Stmt::new(
            "UPDATE rollout_devices SET job_id = (SELECT MAX(id) FROM jobs WHERE \
             tenant_id = $1 AND device_id = $3) WHERE tenant_id = $1 AND \
             rollout_id = $2 AND device_id = $3",
            vec![t.into(), to_i64(id).into(), d.into()],
        ),
    ]
}

const DEVICE_COLUMNS: &[Ty] = &[Ty::Text, Ty::Int, Ty::Text, Ty::Text, Ty::Int, Ty::Int];

fn device_record(r: &[Val]) -> Result<RolloutDeviceRecord> {
    Ok(RolloutDeviceRecord {
        device_id: r[0].text()?,
        wave: u32::try_from(r[1].int()?).unwrap_or(0),
        state: r[2].text()?,
        reason: r[3].opt_text()?,
        job_id: r[4].opt_int()?.map(to_u64),
        updated_at_ms: r[5].int()?,
    })
}
