//! Operating life: each device's meters, supplies and parts over time. The history itself is
//! written with each report (by the store, in the report's transaction); this engine reads it
//! back as series and keeps it within its limits (the pruner). See ARCHITECTURE.md,
//! "Operating life".

pub mod api;
pub mod reads;

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

/// The report subscriber of operating life: a supply that runs low or empty opens a trouble
/// (`supply-low:<slot>`, minor; `supply-empty:<slot>`, major, which the rollout gates see)
/// whose action names the part to order; a new cartridge, or a level back to ok, resolves
/// them. Only reports that change a supply's state do any work.
pub struct SupplyWatch {
    pub ctx: Ctx,
}

impl crate::devices::report::AfterReport for SupplyWatch {
    fn stored<'a>(
        &'a self,
        r: &'a crate::devices::report::Stored<'a>,
    ) -> crate::devices::report::Work<'a> {
        if !r.current || r.duplicate || r.supply_changes.is_empty() {
            return crate::devices::report::done();
        }
        Box::pin(async move {
            for c in r.supply_changes {
                if let Err(e) = supply_trouble(&self.ctx, r.key, c).await {
                    tracing::warn!(device = %r.key.device_id, slot = %c.slot, error = %e, "a supply's trouble could not be kept");
                }
            }
        })
    }
}

/// Open a trouble that the device's reports (or its history) resolve, never a quiet period:
/// a supply running out, a part near its end of life. Its id, if it was not open already.
async fn open_kept(
    st: &Ctx,
    key: &DeviceKey,
    rule: &str,
    severity: &str,
    title: String,
    action: String,
) -> Result<Option<u64>, StoreError> {
    let now = st.clock.now_ms();
    st.store
        .open_trouble(
            key,
            &fleetcare_store::NewTrouble {
                rule_id: rule.to_owned(),
                severity: severity.into(),
                title,
                action,
                note: None,
                evidence_json: "[]".into(),
                occurrences: 1,
                last_event_at_ms: now,
                quiet_until_ms: fleetcare_store::troubles::NO_QUIET_PERIOD,
                fix_json: None,
            },
            now,
        )
        .await
}

/// Tell the live pages that the device's troubles changed.
fn tell(st: &Ctx, key: &DeviceKey) {
    st.events.device(key.tenant, key.device_id.as_str());
    st.events
        .notify(key.tenant, crate::cluster::events::Topic::Troubles);
}

/// The device's live troubles of one rule (at most a few: one is open at a time).
async fn live_troubles(
    st: &Ctx,
    key: &DeviceKey,
    rule: &str,
) -> Result<Vec<fleetcare_store::TroubleRecord>, StoreError> {
    st.store
        .troubles(
            key.tenant,
            &fleetcare_store::TroubleFilter {
                state: Some("live".into()),
                device_id: Some(key.device_id.to_string()),
                rule_id: Some(rule.to_owned()),
            },
            10,
        )
        .await
}

/// Open or resolve the troubles of one supply whose state changed.
async fn supply_trouble(
    st: &Ctx,
    key: &DeviceKey,
    c: &fleetcare_store::SupplyChange,
) -> Result<(), StoreError> {
    use fleetcare_wire::SupplyState::{Empty, Low};
    let now = st.clock.now_ms();
    let (low, empty) = (
        format!("supply-low:{}", c.slot),
        format!("supply-empty:{}", c.slot),
    );
    // What no longer holds is resolved: both when the supply is fine again (or new), the
    // low one when it is empty now.
    let gone: Vec<&String> = match c.now {
        Empty => vec![&low],
        Low if !c.replaced => vec![&empty],
        _ => vec![&low, &empty],
    };
    let why = if c.replaced {
        "center (a new cartridge was put in)"
    } else {
        "center (the supply's level is back)"
    };
    let mut changed = false;
    for rule in gone {
        for t in live_troubles(st, key, rule).await? {
            changed |= st.store.resolve_trouble(key.tenant, t.id, why, now).await?;
        }
    }
    let (rule, severity, state) = match c.now {
        Low => (&low, "minor", "running low"),
        Empty => (&empty, "major", "empty"),
        _ => {
            if changed {
                tell(st, key);
            }
            return Ok(());
        }
    };
    let what = match &c.color {
        Some(color) => format!("{} {color}", c.kind.as_str()),
        None => c.kind.as_str().to_owned(),
    };
    let level = c.level_pct.map_or(String::new(), |p| format!(" ({p} %)"));
    // Days left, where the consumption since the cartridge went in tells.
    let left = if c.now == Low {
        let states = recent_levels(st, key).await?;
        match forecast_of(&states, &c.slot, c.kind) {
            Some((f, _)) => format!(", about {:.1} days left", f.days_left),
            None => ", days left not known yet".to_owned(),
        }
    } else {
        String::new()
    };
    let action = match &c.part_number {
        Some(part) => format!(
            "Order part {part} and replace the {what} in slot {}.",
            c.slot
        ),
        None => format!("Replace the {what} in slot {}.", c.slot),
    };
    let opened = open_kept(
        st,
        key,
        rule,
        severity,
        format!("The {what} is {state}{level}{left}"),
        action,
    )
    .await?;
    if opened.is_some() || changed {
        tell(st, key);
    }
    if let Some(id) = opened {
        tracing::info!(device = %key.device_id, slot = %c.slot, trouble = id, "a supply trouble opened");
    }
    Ok(())
}

/// Days of readings a supply forecast looks at.
pub const FORECAST_DAYS: i64 = 30;

/// Each of the device's supplies (as its newest report says) with when it runs out, fitted
/// over the last [`FORECAST_DAYS`] of its levels, and the pages printed since the cartridge
/// went in (its serial first seen).
pub async fn supply_status(
    st: &Ctx,
    key: &DeviceKey,
    supplies: Vec<fleetcare_wire::Supply>,
) -> Result<Vec<fleetcare_wire::life::SupplyStatus>, StoreError> {
    if supplies.is_empty() {
        return Ok(Vec::new());
    }
    let now = st.clock.now_ms();
    let states = recent_levels(st, key).await?;
    let installed = st.store.supplies_installed_at(key).await?;
    let pages_now = states
        .iter()
        .rev()
        .find_map(|(_, v)| v.get("pages_total").copied());
    let mut out = Vec::with_capacity(supplies.len());
    for supply in supplies {
        let at = installed.get(&supply.slot).copied();
        let pages_then = match (at, pages_now) {
            (Some(at), Some(_)) => pages_at(st, key, at).await?,
            _ => None,
        };
        let mut s = status(&states, supply, now);
        s.installed_at = at.map(fleetcare_core::clock::rfc3339);
        s.pages_since_installed = pages_now
            .zip(pages_then)
            .map(|(now, then)| (now - then).max(0.0));
        out.push(s);
    }
    Ok(out)
}

/// The device's `pages_total` at its first reading at or after `at_ms` (that day's raw
/// points, or its rollup's first value once rolled up).
async fn pages_at(st: &Ctx, key: &DeviceKey, at_ms: i64) -> Result<Option<f64>, StoreError> {
    let h = st
        .store
        .operating_history(key, at_ms, at_ms + meters::DAY_MS)
        .await?;
    let raw = meters::replay(&h.points)
        .into_iter()
        .find(|(t, v)| *t >= at_ms && v.contains_key("pages_total"))
        .and_then(|(_, v)| v.get("pages_total").copied());
    Ok(raw.or_else(|| {
        h.daily
            .first()
            .and_then(|(_, spans)| spans.get("pages_total").map(|s| s.first))
    }))
}

/// A supply's status from the replayed history: its forecast.
fn status(
    states: &[(i64, std::collections::BTreeMap<String, f64>)],
    supply: fleetcare_wire::Supply,
    now: i64,
) -> fleetcare_wire::life::SupplyStatus {
    let f = forecast_of(states, &supply.slot, supply.kind);
    let last_at = f.map_or(now, |(_, at)| at);
    let f = f.map(|(f, _)| f);
    fleetcare_wire::life::SupplyStatus {
        per_day: f.map(|f| (f.per_day * 100.0).round() / 100.0),
        days_left: f.map(|f| (f.days_left * 10.0).round() / 10.0),
        empty_at: f.map(|f| {
            fleetcare_core::clock::rfc3339(last_at + (f.days_left * meters::DAY_MS as f64) as i64)
        }),
        installed_at: None,
        pages_since_installed: None,
        supply,
    }
}

/// The device's operating history over the last [`FORECAST_DAYS`], replayed.
async fn recent_levels(
    st: &Ctx,
    key: &DeviceKey,
) -> Result<Vec<(i64, std::collections::BTreeMap<String, f64>)>, StoreError> {
    let now = st.clock.now_ms();
    let h = st
        .store
        .operating_history(
            key,
            now - FORECAST_DAYS * meters::DAY_MS,
            now + meters::DAY_MS,
        )
        .await?;
    Ok(meters::replay(&h.points))
}

/// A supply's forecast from replayed history, with the time of its newest reading.
fn forecast_of(
    states: &[(i64, std::collections::BTreeMap<String, f64>)],
    slot: &str,
    kind: fleetcare_wire::SupplyKind,
) -> Option<(meters::Forecast, i64)> {
    let name = format!("supply.{slot}.level_pct");
    let readings: Vec<(i64, f64)> = states
        .iter()
        .filter_map(|(at, v)| v.get(&name).map(|l| (*at, *l)))
        .collect();
    let f = meters::forecast(&readings, kind == fleetcare_wire::SupplyKind::Waste)?;
    Some((f, readings.last()?.0))
}

/// A device's readings from `since_ms` to now: raw points replayed, and each rolled-up day as
/// two readings (its first value at its start, its last at its end); oldest first.
pub async fn readings(
    st: &Ctx,
    key: &DeviceKey,
    since_ms: i64,
) -> Result<Vec<(i64, std::collections::BTreeMap<String, f64>)>, StoreError> {
    let now = st.clock.now_ms();
    let h = st
        .store
        .operating_history(key, since_ms, now + meters::DAY_MS)
        .await?;
    let mut out = Vec::with_capacity(h.points.len() + 2 * h.daily.len());
    for (day, spans) in &h.daily {
        let pick =
            |f: fn(&meters::Span) -> f64| spans.iter().map(|(k, s)| (k.clone(), f(s))).collect();
        out.push((day * meters::DAY_MS, pick(|s| s.first)));
        out.push(((day + 1) * meters::DAY_MS - 1, pick(|s| s.last)));
    }
    out.extend(meters::replay(&h.points));
    out.sort_by_key(|(at, _)| *at);
    Ok(out)
}

/// A part is near the end of its life at this share of its expected life.
pub const PART_NEAR_END: f64 = 0.9;

/// Open a `part-end-of-life:<slot>` trouble for each part past [`PART_NEAR_END`] of its
/// expected life (minor while near, major past it: the rollout gates see it), with the part to
/// order and the pages left; resolve it once the part in the slot is new.
pub async fn part_troubles(
    st: &Ctx,
    key: &DeviceKey,
    lives: &[fleetcare_diag::abnormal::PartLife],
) -> Result<(), StoreError> {
    let now = st.clock.now_ms();
    let mut changed = false;
    for p in lives {
        let rule = format!("part-end-of-life:{}", p.slot);
        let live = live_troubles(st, key, &rule).await?;
        if p.used < PART_NEAR_END * p.life {
            for t in live {
                changed |= st
                    .store
                    .resolve_trouble(key.tenant, t.id, "center (a new part is in)", now)
                    .await?;
            }
            continue;
        }
        if !live.is_empty() {
            continue;
        }
        let (severity, state) = if p.used >= p.life {
            ("major", "past its expected life".to_owned())
        } else {
            (
                "minor",
                format!("near its end of life, {:.0} pages left", p.life - p.used),
            )
        };
        let opened = open_kept(
            st,
            key,
            &rule,
            severity,
            format!(
                "The {} ({}) in slot {} is {state}: {:.0} of {:.0} pages since it went in",
                p.kind, p.model, p.slot, p.used, p.life
            ),
            format!(
                "Order a {} and replace the {} in slot {}.",
                p.model, p.kind, p.slot
            ),
        )
        .await?;
        changed |= opened.is_some();
    }
    if changed {
        tell(st, key);
    }
    Ok(())
}

/// Supplies shown on one "running out" answer at most.
pub const RUNNING_OUT_LIMIT: u32 = 500;

/// The fleet's supplies running out: those with a live `supply-low`/`supply-empty` trouble
/// (found by the troubles' index, never by reading every device), each with its forecast;
/// soonest empty first, then by level.
pub async fn running_out(
    st: &Ctx,
    tenant: fleetcare_store::TenantId,
) -> Result<fleetcare_wire::life::RunningOut, StoreError> {
    let troubles = st
        .store
        .live_supply_troubles(tenant, RUNNING_OUT_LIMIT)
        .await?;
    let mut out = Vec::with_capacity(troubles.len());
    let mut parts = Vec::new();
    for t in troubles {
        let Some((kind, slot)) = t
            .rule_id
            .split_once(':')
            .map(|(k, s)| (k.to_owned(), s.to_owned()))
        else {
            continue;
        };
        if kind == "part-end-of-life" {
            parts.push(fleetcare_wire::life::FleetPart {
                device_id: t.device_id.clone(),
                slot,
                trouble_id: t.id,
                severity: t.severity.clone(),
                title: t.title.clone(),
                action: t.action.clone(),
            });
            continue;
        }
        let Ok(device_id) = fleetcare_core::DeviceId::parse(&t.device_id) else {
            continue;
        };
        let key = DeviceKey { tenant, device_id };
        let Some(rec) = st.store.device(&key).await? else {
            continue;
        };
        let supplies: Vec<fleetcare_wire::Supply> = rec
            .supplies
            .into_iter()
            .filter(|s| s.slot == slot)
            .collect();
        for status in supply_status(st, &key, supplies).await? {
            out.push(fleetcare_wire::life::FleetSupply {
                device_id: rec.device_id.clone(),
                model: rec.model.clone(),
                trouble_id: t.id,
                status,
            });
        }
    }
    out.sort_by(|a, b| {
        let days = |s: &fleetcare_wire::life::FleetSupply| s.status.days_left.unwrap_or(f64::MAX);
        let level =
            |s: &fleetcare_wire::life::FleetSupply| s.status.supply.level_pct.unwrap_or(0.0);
        days(a)
            .total_cmp(&days(b))
            .then(level(a).total_cmp(&level(b)))
            .then(a.device_id.cmp(&b.device_id))
    });
    // Past their life first, then by device.
    parts.sort_by(|a, b| {
        (b.severity == "major", &a.device_id, &a.slot).cmp(&(
            a.severity == "major",
            &b.device_id,
            &b.slot,
        ))
    });
    Ok(fleetcare_wire::life::RunningOut {
        supplies: out,
        parts,
    })
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
