//! Operating life: each device's meters, supplies and parts over time. The history itself is
//! written with each report (by the store, in the report's transaction); this engine reads it
//! back as series and keeps it within its limits (the pruner). See ARCHITECTURE.md,
//! "Operating life".

pub mod api;

use fleetcare_core::meters::{self, Bucket};
use fleetcare_store::{DeviceKey, StoreError};

use crate::ctx::Ctx;

/// Device-days the pruner takes per store round, and rounds per sweep (so one sweep does a
/// bounded amount of work and ingest is never stalled behind it).
const PRUNE_BATCH: i64 = 500;
const PRUNE_ROUNDS: usize = 20;

/// A device's meters in `[since_ms, until_ms)` as buckets of `every_ms`, for the names `keep`
/// accepts; whether the read was cut short.
pub async fn series(
    st: &Ctx,
    key: &DeviceKey,
    since_ms: i64,
    until_ms: i64,
    every_ms: i64,
    keep: impl Fn(&str) -> bool,
) -> Result<(Vec<Bucket>, bool), StoreError> {
    let h = st.store.operating_history(key, since_ms, until_ms).await?;
    let states = meters::replay(&h.points);
    Ok((
        meters::buckets(&states, &h.daily, every_ms, since_ms, until_ms, keep),
        h.truncated,
    ))
}

/// Days of readings a supply forecast looks at.
pub const FORECAST_DAYS: i64 = 30;

/// Each of the device's supplies (as its newest report says) with when it runs out, fitted
/// over the last [`FORECAST_DAYS`] of its levels.
pub async fn supply_status(
    st: &Ctx,
    key: &DeviceKey,
    supplies: Vec<fleetcare_wire::Supply>,
) -> Result<Vec<fleetcare_wire::life::SupplyStatus>, StoreError> {
    if supplies.is_empty() {
        return Ok(Vec::new());
    }
    let now = st.clock.now_ms();
    let h = st
        .store
        .operating_history(
            key,
            now - FORECAST_DAYS * meters::DAY_MS,
            now + meters::DAY_MS,
        )
        .await?;
    let states = meters::replay(&h.points);
    Ok(supplies
        .into_iter()
        .map(|supply| {
            let name = format!("supply.{}.level_pct", supply.slot);
            let readings: Vec<(i64, f64)> = states
                .iter()
                .filter_map(|(at, v)| v.get(&name).map(|l| (*at, *l)))
                .collect();
            let filled = supply.kind == fleetcare_wire::SupplyKind::Waste;
            let f = meters::forecast(&readings, filled);
            let last_at = readings.last().map_or(now, |r| r.0);
            fleetcare_wire::life::SupplyStatus {
                per_day: f.map(|f| (f.per_day * 100.0).round() / 100.0),
                days_left: f.map(|f| (f.days_left * 10.0).round() / 10.0),
                empty_at: f.map(|f| {
                    fleetcare_core::clock::rfc3339(
                        last_at + (f.days_left * meters::DAY_MS as f64) as i64,
                    )
                }),
                supply,
            }
        })
        .collect())
}

/// Roll up days of raw points older than `raw_days` and drop rollups older than `keep_days`,
/// a bounded number of device-days at a time; counted in `/metrics`.
pub async fn prune(st: &Ctx, raw_days: u64, keep_days: u64) {
    let today = meters::day_of(st.clock.now_ms());
    let days = |d: u64| i64::try_from(d).unwrap_or(i64::MAX);
    let (raw_before, keep_from) = (
        today.saturating_sub(days(raw_days)),
        today.saturating_sub(days(keep_days)),
    );
    for _ in 0..PRUNE_ROUNDS {
        match st
            .store
            .prune_operating(raw_before, keep_from, PRUNE_BATCH)
            .await
        {
            Ok(p) => {
                st.metrics.operating_days_rolled.inc_by(p.rolled);
                st.metrics.operating_points_pruned.inc_by(p.points);
                st.metrics.operating_days_dropped.inc_by(p.dropped);
                if p.rolled < PRUNE_BATCH as u64 && p.dropped < PRUNE_BATCH as u64 {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning operating history failed");
                return;
            }
        }
    }
}
