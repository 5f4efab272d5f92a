//! Operating history: each device's counters and gauges over time (columns `op_keyframe` and
//! `op_vals` of `reports`, tables `operating_days` and `operating_daily`; see ARCHITECTURE.md,
//! "Operating life"). Ingest writes the points with the report's own row (`sqlite.rs`,
//! `postgres.rs`); this module reads them back and rolls old days up.

use std::collections::BTreeMap;

use fleetcare_core::meters::{self, DAY_MS, Point, Span};

use crate::exec::{Group, Guard, Stmt, Ty, Val, sql};
use crate::{DeviceKey, Result, Store, StoreError};

/// Raw points one read returns at most (a device reporting every minute for 35 days is
/// about 50,000).
pub const MAX_POINTS_PER_READ: i64 = 200_000;

/// A device's operating history over a span: the raw points from the keyframe of the first
/// day asked for, and the daily rollups of days whose raw points are gone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatingHistory {
    pub points: Vec<Point>,
    pub daily: Vec<(i64, BTreeMap<String, Span>)>,
    /// More raw points than [`MAX_POINTS_PER_READ`] fell in the span: the newest are missing.
    pub truncated: bool,
}

/// What one round of the pruner did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Device-days rolled up (their raw points deleted).
    pub rolled: u64,
    /// Raw points deleted.
    pub points: u64,
    /// Device-days whose rollup passed the keep limit and was deleted.
    pub dropped: u64,
}

fn point_of(r: &[Val]) -> Result<Point> {
    let vals: BTreeMap<String, Option<f64>> = serde_json::from_str(&r[2].text()?)
        .map_err(|e| StoreError::Corrupt(format!("operating point: {e}")))?;
    Ok(Point {
        at_ms: r[0].int()?,
        keyframe: r[1].int()? != 0,
        vals,
    })
}

fn spans_of(json: &str) -> Result<BTreeMap<String, Span>> {
    let raw: BTreeMap<String, [f64; 4]> = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("operating rollup: {e}")))?;
    Ok(raw
        .into_iter()
        .map(|(k, a)| (k, Span::from_array(a)))
        .collect())
}

fn spans_json(spans: &BTreeMap<String, Span>) -> String {
    let raw: BTreeMap<&str, [f64; 4]> = spans
        .iter()
        .map(|(k, s)| (k.as_str(), s.to_array()))
        .collect();
    serde_json::to_string(&raw).expect("numbers serialize")
}

/// A device's points in a span: its reports' history columns (by the reports' key, the
/// device's own rows only).
const POINTS: &str = "SELECT observed_at, op_keyframe, op_vals FROM reports \
    WHERE tenant_id = $1 AND device_id = $2 AND observed_at >= $3 AND observed_at < $4 \
    AND op_vals IS NOT NULL ORDER BY observed_at, generation, seq LIMIT $5";

impl Store {
    /// The device's operating history in `[since_ms, until_ms)`: raw points from the start of
    /// the day `since_ms` falls on (so its keyframe is there to replay from), rollups of the
    /// days in the span.
    pub async fn operating_history(
        &self,
        key: &DeviceKey,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<OperatingHistory> {
        let from = meters::day_of(since_ms) * DAY_MS;
        let mut points = self
            .points(
                key.tenant,
                key.device_id.as_str(),
                (from, until_ms),
                MAX_POINTS_PER_READ + 1,
            )
            .await?;
        let truncated = points.len() as i64 > MAX_POINTS_PER_READ;
        points.truncate(MAX_POINTS_PER_READ as usize);
        let daily = self
            .select(
                sql(
                    "SELECT day, vals FROM operating_daily WHERE tenant_id = $1 AND \
                     device_id = $2 AND day >= $3 AND day <= $4 ORDER BY day",
                ),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    meters::day_of(since_ms).into(),
                    meters::day_of(until_ms).into(),
                ],
                &[Ty::Int, Ty::Text],
            )
            .await?
            .iter()
            .map(|r| Ok((r[0].int()?, spans_of(&r[1].text()?)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(OperatingHistory {
            points,
            daily,
            truncated,
        })
    }

    /// One round of the pruner, at most `batch` device-days of each kind: days before
    /// `raw_before_day` are rolled up (one `operating_daily` row each, their raw points
    /// deleted), rollups of days before `keep_from_day` are deleted. Reads the work list by
    /// its key, never the whole history.
    pub async fn prune_operating(
        &self,
        raw_before_day: i64,
        keep_from_day: i64,
        batch: i64,
    ) -> Result<Pruned> {
        let mut out = Pruned::default();
        let due = self.work_list(false, raw_before_day, batch).await?;
        let mut groups: Vec<Group> = Vec::with_capacity(due.len());
        for r in &due {
            let (day, tenant, device) = (r[0].int()?, r[1].int()?, r[2].text()?);
            groups.push(self.roll_up_day(day, tenant, &device).await?);
        }
        if !groups.is_empty() {
            let done = self.run_groups(groups).await?;
            out.rolled = done.len() as u64;
            out.points = done.iter().map(|g| g.get(1).copied().unwrap_or(0)).sum();
        }
        let old = self.work_list(true, keep_from_day, batch).await?;
        let mut drops: Vec<Group> = Vec::with_capacity(old.len());
        for r in &old {
            let p = vec![r[1].clone(), r[2].clone(), r[0].clone()];
            let day = r[0].int()?;
            let span = vec![
                r[1].clone(),
                r[2].clone(),
                Val::Int(day * DAY_MS),
                Val::Int((day + 1) * DAY_MS),
            ];
            drops.push((
                vec![
                    Stmt::new(
                        "DELETE FROM operating_days WHERE rolled = 1 AND tenant_id = $1 AND \
                         device_id = $2 AND day = $3",
                        p.clone(),
                    ),
                    Stmt::new(
                        "DELETE FROM operating_daily WHERE tenant_id = $1 AND device_id = $2 \
                         AND day = $3",
                        p,
                    ),
                    // What meter reads kept of the day goes with it.
                    Stmt::new(
                        "DELETE FROM meter_edge_reads WHERE tenant_id = $1 AND device_id = $2 \
                         AND at >= $3 AND at < $4",
                        span.clone(),
                    ),
                    Stmt::new(
                        "DELETE FROM meter_resets WHERE tenant_id = $1 AND device_id = $2 \
                         AND at >= $3 AND at < $4",
                        span,
                    ),
                ],
                Guard::First,
            ));
        }
        if !drops.is_empty() {
            out.dropped = self.run_groups(drops).await?.len() as u64;
        }
        Ok(out)
    }

    /// A device's points in `[from, to)`, in time order, at most `limit`.
    async fn points(
        &self,
        tenant: i64,
        device: &str,
        (from, to): (i64, i64),
        limit: i64,
    ) -> Result<Vec<Point>> {
        self.select(
            sql(POINTS),
            vec![
                tenant.into(),
                device.into(),
                from.into(),
                to.into(),
                limit.into(),
            ],
            &[Ty::Int, Ty::Int, Ty::Text],
        )
        .await?
        .iter()
        .map(|r| point_of(r))
        .collect()
    }

    /// The oldest device-days of the work list before `before_day`, at most `batch`: those
    /// with raw points, or (`rolled`) those with a rollup only. `(day, tenant, device)` rows.
    async fn work_list(&self, rolled: bool, before_day: i64, batch: i64) -> Result<Vec<Vec<Val>>> {
        self.select(
            sql(
                "SELECT day, tenant_id, device_id FROM operating_days WHERE rolled = $1 \
                 AND day < $2 ORDER BY day LIMIT $3",
            ),
            vec![rolled.into(), before_day.into(), batch.into()],
            &[Ty::Int, Ty::Int, Ty::Text],
        )
        .await
    }

    /// The statements that roll one device-day up: the rollup (joined to one made before, if
    /// late points for the day arrived after it), the raw points deleted, the work row moved.
    async fn roll_up_day(&self, day: i64, tenant: i64, device: &str) -> Result<Group> {
        let (from, to) = (day * DAY_MS, (day + 1) * DAY_MS);
        let points = self.points(tenant, device, (from, to), i64::MAX).await?;
        let states = meters::replay(&points);
        let mut spans = meters::roll_up(states.iter().map(|(_, s)| s));
        let before = self
            .select(
                sql(
                    "SELECT vals FROM operating_daily WHERE tenant_id = $1 AND device_id = $2 \
                     AND day = $3",
                ),
                vec![tenant.into(), device.into(), day.into()],
                &[Ty::Text],
            )
            .await?;
        if let Some(r) = before.first() {
            spans = meters::join_rollups(spans_of(&r[0].text()?)?, spans);
        }
        let key = vec![Val::Int(tenant), Val::from(device), Val::Int(day)];
        Ok((
            vec![
                Stmt::new(
                    "DELETE FROM operating_days WHERE rolled = 0 AND tenant_id = $1 AND \
                     device_id = $2 AND day = $3",
                    key.clone(),
                ),
                Stmt::new(
                    "UPDATE reports SET op_keyframe = NULL, op_vals = NULL WHERE \
                     tenant_id = $1 AND device_id = $2 AND observed_at >= $3 AND \
                     observed_at < $4 AND op_vals IS NOT NULL",
                    vec![tenant.into(), device.into(), from.into(), to.into()],
                ),
                Stmt::new(
                    "INSERT INTO operating_days (rolled, day, tenant_id, device_id) \
                     VALUES (1, $3, $1, $2) ON CONFLICT (rolled, day, tenant_id, device_id) \
                     DO NOTHING",
                    key.clone(),
                ),
                Stmt::new(
                    "INSERT INTO operating_daily (tenant_id, device_id, day, vals) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, device_id, day) \
                     DO UPDATE SET vals = excluded.vals",
                    vec![
                        tenant.into(),
                        device.into(),
                        day.into(),
                        spans_json(&spans).into(),
                    ],
                ),
            ],
            Guard::First,
        ))
    }
}
