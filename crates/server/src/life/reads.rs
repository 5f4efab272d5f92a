//! Meter reads for billing: each device's billing meters at the edges of a calendar month
//! in its site's time zone, and the schedule that asks devices for a report at those edges.
//! See ARCHITECTURE.md, "Meter reads for billing".

use std::collections::{BTreeSet, HashMap, HashSet};

use fleetcare_core::clock::rfc3339;
use fleetcare_core::meters::{self, EdgeHow, EdgeValue};
use fleetcare_store::billing::{EdgeNeighbours, MeterReset, ReadDevice, Reading};
use fleetcare_store::{DeviceKey, StoreError, TenantId};
use fleetcare_wire::device::Command;
use fleetcare_wire::life::{DeviceMeterRead, EdgeRead, MeterRead};
use futures_util::StreamExt;
use jiff::tz::TimeZone;

use crate::ctx::Ctx;

/// Devices read at once (each is a few indexed lookups).
const CONCURRENCY: usize = 8;
/// How long after a month's edge the schedule still asks (a center that was down at the edge
/// asks when it is back within this).
const ASK_WITHIN_MS: i64 = 15 * 60_000;

/// A month, `YYYY-MM`.
pub fn parse_period(s: &str) -> Result<(i16, i8), String> {
    let bad = || format!("period {s:?}: a month such as 2026-11");
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let (y, m): (i16, i8) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(1970..=9998).contains(&y) || !(1..=12).contains(&m) {
        return Err(bad());
    }
    Ok((y, m))
}

/// The start of a month in a time zone, as a Unix time in milliseconds.
fn month_start(y: i16, m: i8, tz: &TimeZone) -> i64 {
    tz.to_ambiguous_timestamp(jiff::civil::date(y, m, 1).at(0, 0, 0, 0))
        .compatible()
        .map_or_else(
            |_| meters::month_start_ms(i64::from(y), m as u32),
            |t| t.as_millisecond(),
        )
}

/// A month's edges `[start, end)` in a time zone.
pub fn period_edges((y, m): (i16, i8), tz: &TimeZone) -> (i64, i64) {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (month_start(y, m, tz), month_start(ny, nm, tz))
}

/// The tenant's sites' time zones by name (a site whose zone is unknown reads in UTC).
pub async fn site_zones(
    st: &Ctx,
    tenant: TenantId,
) -> Result<HashMap<String, TimeZone>, StoreError> {
    Ok(st
        .store
        .sites(tenant)
        .await?
        .into_iter()
        .map(|s| {
            let tz = fleetcare_rollout::window::zone(&s.timezone).unwrap_or(TimeZone::UTC);
            (s.name, tz)
        })
        .collect())
}

/// One device's meter read over the period.
pub async fn read_device(
    st: &Ctx,
    tenant: TenantId,
    d: ReadDevice,
    period: (i16, i8),
    zones: &HashMap<String, TimeZone>,
) -> Result<DeviceMeterRead, StoreError> {
    let tz = d
        .site
        .as_ref()
        .and_then(|s| zones.get(s))
        .cloned()
        .unwrap_or(TimeZone::UTC);
    let (since, until) = period_edges(period, &tz);
    let mut out = DeviceMeterRead {
        device_id: d.device_id.clone(),
        model: d.model.clone(),
        site: d.site.clone(),
        since: rfc3339(since),
        until: rfc3339(until),
        meters: Vec::new(),
    };
    let Ok(device_id) = fleetcare_core::DeviceId::parse(&d.device_id) else {
        return Ok(out);
    };
    if d.newest.is_none() {
        return Ok(out);
    }
    let key = DeviceKey { tenant, device_id };
    let start = st
        .store
        .edge_neighbours(&key, since, d.newest.as_ref())
        .await?;
    let end = st
        .store
        .edge_neighbours(&key, until, d.newest.as_ref())
        .await?;
    let earliest = start
        .before
        .as_ref()
        .or(start.after.as_ref())
        .map_or(since, |r| r.0.min(since));
    let latest = end
        .after
        .as_ref()
        .or(end.before.as_ref())
        .map_or(until, |r| r.0.max(until));
    let resets = st.store.meter_resets(&key, earliest, latest).await?;
    out.meters = compute(since, until, &start, &end, &resets);
    Ok(out)
}

/// The billing meters' reads from the readings either side of both edges and the resets.
pub fn compute(
    since: i64,
    until: i64,
    start: &EdgeNeighbours,
    end: &EdgeNeighbours,
    resets: &[MeterReset],
) -> Vec<MeterRead> {
    let names: BTreeSet<&String> = [&start.before, &start.after, &end.before, &end.after]
        .into_iter()
        .flatten()
        .flat_map(|(_, v)| v.keys())
        .collect();
    let mut out = Vec::new();
    for name in names {
        let Some(meter) = meters::billing_meter(name) else {
            continue;
        };
        let val = |r: &Option<Reading>| r.as_ref().and_then(|(at, v)| Some((*at, *v.get(name)?)));
        let crossed = |n: &EdgeNeighbours| {
            let (from, to) = (
                n.before.as_ref().map_or(i64::MIN, |r| r.0),
                n.after.as_ref().map_or(i64::MAX, |r| r.0),
            );
            resets
                .iter()
                .any(|r| &r.name == name && r.at_ms > from && r.at_ms <= to)
        };
        let (Some(s), Some(e)) = (
            meters::edge_value(since, val(&start.before), val(&start.after), crossed(start)),
            meters::edge_value(until, val(&end.before), val(&end.after), crossed(end)),
        ) else {
            continue;
        };
        let between: Vec<(f64, f64)> = resets
            .iter()
            .filter(|r| &r.name == name && r.at_ms > s.at_ms && r.at_ms <= e.at_ms)
            .map(|r| (r.before as f64, r.after as f64))
            .collect();
        let (usage, reset) = meters::usage(s.value, e.value, &between);
        out.push(MeterRead {
            meter: meter.to_owned(),
            start: edge_read(s),
            end: edge_read(e),
            usage,
            reset,
        });
    }
    out.sort_by(|a, b| meter_order(&a.meter).cmp(&meter_order(&b.meter)));
    out
}

/// Standard meters first, in their usual order, then the others by name.
fn meter_order(m: &str) -> (usize, &str) {
    let i = meters::BILLING_METERS
        .iter()
        .position(|(_, n)| *n == m)
        .unwrap_or(usize::MAX);
    (i, m)
}

fn edge_read(v: EdgeValue) -> EdgeRead {
    EdgeRead {
        value: v.value,
        at: rfc3339(v.at_ms),
        how: v.how.as_str().to_owned(),
        estimated: v.how != EdgeHow::Read,
    }
}

/// A page of a period's reads: up to `limit` devices after `after`, read `CONCURRENCY` at a
/// time; the id to continue after, when there may be more.
pub async fn read_page(
    st: &Ctx,
    tenant: TenantId,
    period: (i16, i8),
    model: Option<&str>,
    after: &str,
    limit: i64,
) -> Result<(Vec<DeviceMeterRead>, Option<String>), StoreError> {
    let zones = site_zones(st, tenant).await?;
    let devices = st
        .store
        .meter_read_devices(tenant, model, after, limit)
        .await?;
    let next = (devices.len() as i64 == limit)
        .then(|| devices.last().map(|d| d.device_id.clone()))
        .flatten();
    let reads: Vec<Result<DeviceMeterRead, StoreError>> = futures_util::stream::iter(devices)
        .map(|d| read_device(st, tenant, d, period, &zones))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    Ok((reads.into_iter().collect::<Result<_, _>>()?, next))
}

/// The meter-read schedule, run by the engines' leader every sweep: when a month has just
/// started in a site's time zone (or UTC, for devices without a site), ask that site's
/// connected devices of every tenant whose schedule is on for a report, once. `asked`
/// remembers what was asked (tenant, site, edge).
pub async fn run_schedule(st: &Ctx, asked: &mut HashSet<(TenantId, Option<String>, i64)>) {
    let now = st.clock.now_ms();
    // Every time zone's month starts within 14 hours of midnight UTC of a 1st: outside that,
    // there is nothing to do and nothing is read.
    if !meters::near_billing_edge(None, now - ASK_WITHIN_MS)
        && !meters::near_billing_edge(None, now)
    {
        asked.clear();
        return;
    }
    let (y, m) = {
        let (y, m) = meters::civil_month(now + meters::BILLING_WINDOW_MS);
        (i16::try_from(y).unwrap_or(9998), m as i8)
    };
    let due_now = |edge: i64| (edge..edge + ASK_WITHIN_MS).contains(&now);
    // The devices are listed only when some edge is due: UTC's, or a site's (the sites are
    // few; the devices many).
    // (`UTC_DONE`, None, edge) in `asked`: the UTC edge was handled for every tenant.
    const UTC_DONE: TenantId = -1;
    let utc_edge = month_start(y, m, &TimeZone::UTC);
    let mut due_groups: Vec<(TenantId, Option<String>, i64)> = Vec::new();
    if due_now(utc_edge) && !asked.contains(&(UTC_DONE, None, utc_edge)) {
        due_groups.push((UTC_DONE, None, utc_edge));
    }
    match st.store.all_sites().await {
        Ok(sites) => {
            for (tenant, site) in sites {
                let tz = fleetcare_rollout::window::zone(&site.timezone).unwrap_or(TimeZone::UTC);
                let group = (tenant, Some(site.name), month_start(y, m, &tz));
                if due_now(group.2) && !asked.contains(&group) {
                    due_groups.push(group);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the sites for the meter-read schedule"),
    }
    if due_groups.is_empty() {
        return;
    }
    let targets = match st.store.meter_read_targets().await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "reading the meter-read schedules");
            return;
        }
    };
    let mut zones: HashMap<TenantId, HashMap<String, TimeZone>> = HashMap::new();
    let mut due: HashMap<(TenantId, Option<String>, i64), Vec<DeviceKey>> = HashMap::new();
    for (tenant, device, site) in targets {
        if let std::collections::hash_map::Entry::Vacant(e) = zones.entry(tenant) {
            e.insert(site_zones(st, tenant).await.unwrap_or_default());
        }
        let tz = site
            .as_ref()
            .and_then(|s| zones[&tenant].get(s))
            .cloned()
            .unwrap_or(TimeZone::UTC);
        let edge = month_start(y, m, &tz);
        let group = (tenant, site, edge);
        if !due_now(edge) || asked.contains(&group) {
            continue;
        }
        if let Ok(device_id) = fleetcare_core::DeviceId::parse(&device) {
            due.entry(group)
                .or_default()
                .push(DeviceKey { tenant, device_id });
        }
    }
    for (group, keys) in due {
        let n = st.devices.send_many(&keys, &Command::RequestReport).await;
        tracing::info!(tenant = group.0, site = ?group.1, asked = n, devices = keys.len(), "meter read: asked the connected devices for a report at the month's edge");
        st.metrics.meter_read_requests.inc_by(n as u64);
        asked.insert(group);
    }
    // Handled, devices or not: the fleet is listed again only at the next edge.
    asked.extend(due_groups);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_months_in_the_site_time_zone() {
        assert_eq!(parse_period("2026-11"), Ok((2026, 11)));
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "1969-12"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
        let utc = period_edges((2026, 12), &TimeZone::UTC);
        assert_eq!(utc.0, meters::month_start_ms(2026, 12));
        assert_eq!(utc.1, meters::month_start_ms(2027, 1));
        let berlin = TimeZone::get("Europe/Berlin").expect("a zone");
        let b = period_edges((2026, 11), &berlin);
        assert_eq!(b.0, meters::month_start_ms(2026, 11) - meters::HOUR_MS);
    }

    #[test]
    fn a_controller_replaced_mid_period_is_flagged_and_never_negative() {
        let (s, e) = (
            meters::month_start_ms(2026, 11),
            meters::month_start_ms(2026, 12),
        );
        let r = |at: i64, v: f64| Some((at, [("pages_total".to_owned(), v)].into()));
        let start = EdgeNeighbours {
            before: r(s - 60_000, 1000.0),
            after: r(s + meters::DAY_MS, 1100.0),
        };
        let end = EdgeNeighbours {
            before: r(e - meters::DAY_MS, 40.0),
            after: r(e + meters::DAY_MS, 60.0),
        };
        let resets = [MeterReset {
            at_ms: s + 10 * meters::DAY_MS,
            name: "pages_total".into(),
            before: 1500,
            after: 0,
        }];
        let reads = compute(s, e, &start, &end, &resets);
        assert_eq!(reads.len(), 1);
        let t = &reads[0];
        assert_eq!((t.meter.as_str(), t.start.how.as_str()), ("total", "read"));
        assert_eq!(t.start.value, 1000.0);
        assert_eq!(
            (t.end.value, t.end.how.as_str(), t.end.estimated),
            (50.0, "interpolated", true)
        );
        assert_eq!((t.usage, t.reset), (500.0 + 50.0, true));
    }
}
