//! Operating history, pure: what a report adds to a device's series (only what changed, or
//! everything on the day's keyframe), how stored rows replay into values over time, and how
//! those values are rolled up by hour or day. The store keeps the rows; the center replays
//! them the same way everywhere (API, CLI, pages, rollups).

use std::collections::BTreeMap;

/// Milliseconds in a (UTC) day.
pub const DAY_MS: i64 = 86_400_000;
/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;

/// The UTC day (days since the Unix epoch) a time falls on.
pub fn day_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(DAY_MS)
}

/// One stored row of a device's series: at `at_ms`, the values that changed (`None`: the
/// name vanished), or every value when it is a keyframe.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at_ms: i64,
    pub keyframe: bool,
    pub vals: BTreeMap<String, Option<f64>>,
}

/// What a report at `at_ms` with values `now` adds to the series whose last values were
/// `prev` (observed at `prev_at_ms`): a keyframe with every value when it is the first report
/// of its UTC day (or the first ever), else only the changed values; `None` when nothing
/// changed (or there is nothing to keep).
pub fn point(
    prev: Option<(&BTreeMap<String, f64>, i64)>,
    at_ms: i64,
    now: &BTreeMap<String, f64>,
) -> Option<Point> {
    match prev {
        Some((prev, prev_at)) if !prev.is_empty() && day_of(prev_at) == day_of(at_ms) => {
            let mut vals: BTreeMap<String, Option<f64>> = now
                .iter()
                .filter(|(k, v)| prev.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), Some(*v)))
                .collect();
            vals.extend(
                prev.keys()
                    .filter(|k| !now.contains_key(*k))
                    .map(|k| (k.clone(), None)),
            );
            (!vals.is_empty()).then_some(Point {
                at_ms,
                keyframe: false,
                vals,
            })
        }
        _ => (!now.is_empty()).then(|| Point {
            at_ms,
            keyframe: true,
            vals: now.iter().map(|(k, v)| (k.clone(), Some(*v))).collect(),
        }),
    }
}

/// Replay rows (in time order) into the values in force after each: a keyframe starts
/// afresh, a delta changes what it names. Rows before the first keyframe are skipped (their
/// unchanged values are unknown).
pub fn replay(points: &[Point]) -> Vec<(i64, BTreeMap<String, f64>)> {
    let mut out = Vec::with_capacity(points.len());
    let mut cur: Option<BTreeMap<String, f64>> = None;
    for p in points {
        if p.keyframe {
            cur = Some(BTreeMap::new());
        }
        let Some(c) = cur.as_mut() else { continue };
        for (k, v) in &p.vals {
            match v {
                Some(v) => {
                    c.insert(k.clone(), *v);
                }
                None => {
                    c.remove(k);
                }
            }
        }
        out.push((p.at_ms, c.clone()));
    }
    out
}

/// First, last, lowest and highest value of a name over a span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
}

impl Span {
    fn new(v: f64) -> Span {
        Span {
            first: v,
            last: v,
            min: v,
            max: v,
        }
    }

    fn add(&mut self, v: f64) {
        self.last = v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Join a later span to this one.
    fn join(&mut self, later: &Span) {
        self.last = later.last;
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
    }

    /// As stored: `[first, last, min, max]`.
    pub fn to_array(self) -> [f64; 4] {
        [self.first, self.last, self.min, self.max]
    }

    pub fn from_array(a: [f64; 4]) -> Span {
        Span {
            first: a[0],
            last: a[1],
            min: a[2],
            max: a[3],
        }
    }
}

/// Per name, the span of values over a run of snapshots (a device-day's rollup).
pub fn roll_up<'a>(
    snapshots: impl IntoIterator<Item = &'a BTreeMap<String, f64>>,
) -> BTreeMap<String, Span> {
    let mut out: BTreeMap<String, Span> = BTreeMap::new();
    for s in snapshots {
        for (k, v) in s {
            match out.get_mut(k) {
                Some(span) => span.add(*v),
                None => {
                    out.insert(k.clone(), Span::new(*v));
                }
            }
        }
    }
    out
}

/// Two rollups of the same span joined (`earlier`'s firsts, `later`'s lasts).
pub fn join_rollups(
    earlier: BTreeMap<String, Span>,
    later: BTreeMap<String, Span>,
) -> BTreeMap<String, Span> {
    let mut out = earlier;
    for (k, s) in later {
        match out.get_mut(&k) {
            Some(e) => e.join(&s),
            None => {
                out.insert(k, s);
            }
        }
    }
    out
}

/// One bucket of a series: the span of `name` in `[start_ms, start_ms + every)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start_ms: i64,
    pub name: String,
    pub span: Span,
}

/// Snapshots (in time order) and daily rollups (by day) as buckets of `every_ms` (an hour or
/// a day) from `since_ms` to before `until_ms`, for the names `keep` accepts; by name, then
/// time. A daily rollup fills a day bucket (an hourly series shows a rolled-up day as one
/// bucket at its start: its hours are no longer known).
pub fn buckets(
    snapshots: &[(i64, BTreeMap<String, f64>)],
    daily: &[(i64, BTreeMap<String, Span>)],
    every_ms: i64,
    since_ms: i64,
    until_ms: i64,
    keep: impl Fn(&str) -> bool,
) -> Vec<Bucket> {
    let mut by: BTreeMap<(String, i64), Span> = BTreeMap::new();
    let mut put = |name: &str, start: i64, span: Span| {
        by.entry((name.to_owned(), start))
            .and_modify(|s| s.join(&span))
            .or_insert(span);
    };
    for (day, spans) in daily {
        let start = day * DAY_MS;
        if start + DAY_MS <= since_ms || start >= until_ms {
            continue;
        }
        for (k, s) in spans.iter().filter(|(k, _)| keep(k)) {
            put(k, start.max(since_ms - since_ms.rem_euclid(every_ms)), *s);
        }
    }
    for (at, vals) in snapshots
        .iter()
        .filter(|(at, _)| *at >= since_ms && *at < until_ms)
    {
        let start = at - at.rem_euclid(every_ms);
        for (k, v) in vals.iter().filter(|(k, _)| keep(k)) {
            put(k, start, Span::new(*v));
        }
    }
    by.into_iter()
        .map(|((name, start_ms), span)| Bucket {
            start_ms,
            name,
            span,
        })
        .collect()
}

/// The Theil–Sen slope of points `(x, y)`: the median of the slopes between every two (a few
/// odd points do not move it). `None` without two points at different `x`.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if b.0 > a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let mid = slopes.len() / 2;
    Some(if slopes.len() % 2 == 0 {
        (slopes[mid - 1] + slopes[mid]) / 2.0
    } else {
        slopes[mid]
    })
}

/// A name's slope per day over readings (time in ms), evenly thinned to at most 200 points.
pub fn slope_per_day(readings: &[(i64, f64)]) -> Option<f64> {
    let step = readings.len().div_ceil(FORECAST_READINGS).max(1);
    let picked: Vec<(f64, f64)> = readings
        .iter()
        .step_by(step)
        .map(|(t, v)| (*t as f64 / DAY_MS as f64, *v))
        .collect();
    theil_sen(&picked)
}

/// How fast a level moves and when it reaches its end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Points per day towards the end (consumed, or filled for a receptacle).
    pub per_day: f64,
    /// Days from the newest reading until the level reaches its end (0 % consumed, 100 %
    /// filled).
    pub days_left: f64,
    /// Readings the fit used (those since the last refill).
    pub readings: usize,
}

/// Readings a forecast fits at most (evenly picked from the current cartridge's): 64 give
/// 2,016 slopes, enough for a robust median, at a few tens of microseconds.
const FORECAST_READINGS: usize = 64;
/// A level rising by more than this many points is a new cartridge (for a receptacle:
/// falling, an emptied one): the fit starts after it.
const REFILL_POINTS: f64 = 5.0;

/// Forecast a level (percent, oldest reading first) from the readings since the last refill:
/// the Theil–Sen slope (the median of the slopes between every two readings, which a few
/// odd readings do not move), towards 0 % (`filled`: towards 100 %). `None` with fewer than
/// three readings over less than six hours, or when the level does not move towards its end.
pub fn forecast(readings: &[(i64, f64)], filled: bool) -> Option<Forecast> {
    let dir = if filled { -1.0 } else { 1.0 };
    // The current cartridge: after the last jump the wrong way.
    let start = readings
        .windows(2)
        .rposition(|w| (w[1].1 - w[0].1) * dir > REFILL_POINTS)
        .map_or(0, |i| i + 1);
    let cur = &readings[start..];
    let (first, last) = (cur.first()?, cur.last()?);
    if cur.len() < 3 || last.0 - first.0 < 6 * HOUR_MS {
        return None;
    }
    let step = cur.len().div_ceil(FORECAST_READINGS);
    let picked: Vec<(f64, f64)> = cur
        .iter()
        .step_by(step.max(1))
        .map(|(t, v)| (*t as f64 / DAY_MS as f64, *v))
        .collect();
    let slope = theil_sen(&picked)?;
    let per_day = -slope * dir;
    if per_day < 0.01 {
        return None;
    }
    let left = if filled { 100.0 - last.1 } else { last.1 };
    Some(Forecast {
        per_day,
        days_left: (left.max(0.0) / per_day),
        readings: cur.len(),
    })
}

/// The billing meters by convention: which operating counter each is.
pub const BILLING_METERS: &[(&str, &str)] = &[
    ("pages_total", "total"),
    ("pages_black", "black"),
    ("pages_color", "color"),
    ("pages_print", "print"),
    ("pages_copy", "copy"),
    ("scans_total", "scan"),
    ("pages_duplex", "duplex"),
];

/// Operating counters named `meter_<name>` are billing meters `<name>` too (what a printer
/// profile names: `meter_a3_color`, …).
pub const METER_PREFIX: &str = "meter_";

/// The billing meter an operating counter is, if it is one.
pub fn billing_meter(key: &str) -> Option<&str> {
    BILLING_METERS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, m)| *m)
        .or_else(|| key.strip_prefix(METER_PREFIX).filter(|m| !m.is_empty()))
}

/// Days since the Unix epoch of a (proleptic Gregorian) date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month) a UTC time falls in.
pub fn civil_month(at_ms: i64) -> (i64, u32) {
    let (y, m, _) = civil_date(at_ms);
    (y, m)
}

/// The (year, month, day) a UTC time falls on.
pub fn civil_date(at_ms: i64) -> (i64, u32, u32) {
    let z = day_of(at_ms) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let d = doy - (153 * mp + 2) / 5 + 1;
    (yoe + era * 400 + i64::from(m <= 2), m as u32, d as u32)
}

/// Midnight UTC of the 1st of a month.
pub fn month_start_ms(year: i64, month: u32) -> i64 {
    days_from_civil(year, month, 1) * DAY_MS
}

/// How far from midnight UTC of a month's 1st its edge may lie in some time zone (UTC−12 to
/// UTC+14): readings this close are kept for meter reads.
pub const BILLING_WINDOW_MS: i64 = 14 * HOUR_MS;

/// Whether the readings at `prev_at` (the device's previous one) and `at_ms` are the
/// neighbours of a month's edge in some time zone: the span between them touches the window
/// around a month's start. Both are then kept for meter reads.
pub fn near_billing_edge(prev_at: Option<i64>, at_ms: i64) -> bool {
    let (y, m) = civil_month(at_ms.saturating_add(BILLING_WINDOW_MS));
    let newest_edge = month_start_ms(y, m);
    newest_edge + BILLING_WINDOW_MS >= prev_at.unwrap_or(at_ms).min(at_ms)
}

/// A reading this close to a period's edge (before or after) is the edge's value.
pub const EDGE_TOLERANCE_MS: i64 = 15 * 60_000;

/// How a meter's value at a period's edge was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeHow {
    /// A reading within [`EDGE_TOLERANCE_MS`] of the edge.
    Read,
    /// Interpolated in time between the readings on either side.
    Interpolated,
    /// The nearest reading on the one side there is (or after a reset between the two).
    Nearest,
}

impl EdgeHow {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeHow::Read => "read",
            EdgeHow::Interpolated => "interpolated",
            EdgeHow::Nearest => "nearest",
        }
    }
}

/// A meter's value at a period's edge: when it was read (the edge itself when interpolated).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeValue {
    pub at_ms: i64,
    pub value: f64,
    pub how: EdgeHow,
}

/// A meter's value at `edge_ms` from the newest reading at or before it and the first after
/// it; `reset_between`: the counter went backwards between the two (then only the reading
/// after counts). `None` with no reading at all.
pub fn edge_value(
    edge_ms: i64,
    before: Option<(i64, f64)>,
    after: Option<(i64, f64)>,
    reset_between: bool,
) -> Option<EdgeValue> {
    let read = |(at_ms, value): (i64, f64), how| EdgeValue { at_ms, value, how };
    let near_b = before.filter(|b| edge_ms - b.0 <= EDGE_TOLERANCE_MS);
    let near_a = after.filter(|a| a.0 - edge_ms <= EDGE_TOLERANCE_MS);
    match (near_b, near_a) {
        (Some(b), Some(a)) if reset_between || a.0 - edge_ms < edge_ms - b.0 => {
            return Some(read(a, EdgeHow::Read));
        }
        (Some(b), _) if !reset_between || near_a.is_none() => return Some(read(b, EdgeHow::Read)),
        (_, Some(a)) => return Some(read(a, EdgeHow::Read)),
        _ => {}
    }
    match (before, after) {
        (Some(b), Some(a)) if !reset_between && a.1 >= b.1 && a.0 > b.0 => {
            let f = (edge_ms - b.0) as f64 / (a.0 - b.0) as f64;
            Some(EdgeValue {
                at_ms: edge_ms,
                value: (b.1 + (a.1 - b.1) * f).round(),
                how: EdgeHow::Interpolated,
            })
        }
        (_, Some(a)) => Some(read(a, EdgeHow::Nearest)),
        (Some(b), None) => Some(read(b, EdgeHow::Nearest)),
        (None, None) => None,
    }
}

/// The usage between two edge values of a counter, given the resets between them (`before`,
/// `after` each, in time order): the sum of the runs between resets, none negative. `true`
/// when the counter went backwards somewhere (the usage is then what the known runs add up
/// to: pages between the last reading before a reset and the reset are not known).
pub fn usage(start: f64, end: f64, resets: &[(f64, f64)]) -> (f64, bool) {
    let mut from = start;
    let mut total = 0.0;
    for (before, after) in resets {
        total += (before - from).max(0.0);
        from = *after;
    }
    let last = end - from;
    (total + last.max(0.0), !resets.is_empty() || last < 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn a_day_starts_with_a_keyframe_and_then_only_changes_are_kept() {
        let t0 = 10 * DAY_MS + 5 * HOUR_MS;
        let a = m(&[("pages", 100.0), ("toner.k", 80.0), ("temp", 180.0)]);
        let first = point(None, t0, &a).expect("a first report is kept");
        assert!(first.keyframe);
        assert_eq!(first.vals.len(), 3);
        let b = m(&[("pages", 120.0), ("toner.k", 80.0)]);
        let second = point(Some((&a, t0)), t0 + HOUR_MS, &b).expect("changes are kept");
        assert!(!second.keyframe);
        assert_eq!(
            second.vals,
            [("pages".to_owned(), Some(120.0)), ("temp".to_owned(), None)]
                .into_iter()
                .collect()
        );
        assert_eq!(point(Some((&b, t0)), t0 + 2 * HOUR_MS, &b), None);
        let next_day = point(Some((&b, t0)), t0 + DAY_MS, &b).expect("a new day");
        assert!(next_day.keyframe);
        let states = replay(&[first, second, next_day]);
        assert_eq!(states[0].1, a);
        assert_eq!(states[1].1, b);
        assert_eq!(states[2].1, b);
    }

    #[test]
    fn a_forecast_fits_the_current_cartridge_and_ignores_odd_readings() {
        // Two points a day for ten days: 2 points a day consumed, one reading way off.
        let mut r: Vec<(i64, f64)> = (0..20)
            .map(|i| (i * DAY_MS / 2, 60.0 - f64::from(i as i32)))
            .collect();
        r[7].1 = 5.0;
        let f = forecast(&r, false).expect("a forecast");
        assert!((f.per_day - 2.0).abs() < 0.05, "{f:?}");
        assert!((f.days_left - 41.0 / 2.0).abs() < 0.5, "{f:?}");
        // A new cartridge: only what follows it counts.
        let mut swapped = r.clone();
        swapped.extend((0..6).map(|i| (10 * DAY_MS + i * DAY_MS, 100.0 - 4.0 * i as f64)));
        let f = forecast(&swapped, false).expect("a forecast");
        assert_eq!(f.readings, 6);
        assert!((f.per_day - 4.0).abs() < 0.05, "{f:?}");
        // A waste box fills up.
        let w: Vec<(i64, f64)> = (0..5)
            .map(|i| (i * DAY_MS, 50.0 + 5.0 * i as f64))
            .collect();
        assert!((forecast(&w, true).expect("fills").days_left - 6.0).abs() < 0.01);
        // Too few readings, too short a span, or nothing used: no forecast.
        assert_eq!(forecast(&r[..2], false), None);
        assert_eq!(
            forecast(&[(0, 50.0), (HOUR_MS, 49.0), (2 * HOUR_MS, 48.0)], false),
            None
        );
        let flat: Vec<(i64, f64)> = (0..5).map(|i| (i * DAY_MS, 70.0)).collect();
        assert_eq!(forecast(&flat, false), None);
    }

    #[test]
    fn billing_meters_are_named_by_convention_or_by_a_profile() {
        assert_eq!(billing_meter("pages_total"), Some("total"));
        assert_eq!(billing_meter("scans_total"), Some("scan"));
        assert_eq!(billing_meter("meter_a3_color"), Some("a3_color"));
        assert_eq!(billing_meter("meter_"), None);
        assert_eq!(billing_meter("fuser_temp_c"), None);
    }

    #[test]
    fn an_edge_is_read_interpolated_or_the_nearest_reading() {
        let e = 100 * DAY_MS;
        let near = EDGE_TOLERANCE_MS / 3;
        // A reading just after the edge is the edge's value.
        let v = edge_value(e, Some((e - DAY_MS, 10.0)), Some((e + near, 30.0)), false);
        assert_eq!(v.map(|v| (v.value, v.how)), Some((30.0, EdgeHow::Read)));
        // Readings a day on each side: the edge lies halfway.
        let v = edge_value(e, Some((e - DAY_MS, 10.0)), Some((e + DAY_MS, 30.0)), false)
            .expect("a value");
        assert_eq!((v.at_ms, v.value, v.how), (e, 20.0, EdgeHow::Interpolated));
        // A reset between them: the reading after it, never a value in between.
        let v = edge_value(e, Some((e - DAY_MS, 900.0)), Some((e + DAY_MS, 30.0)), true);
        assert_eq!(v.map(|v| (v.value, v.how)), Some((30.0, EdgeHow::Nearest)));
        // A new device: its first reading.
        let v = edge_value(e, None, Some((e + 3 * DAY_MS, 5.0)), false);
        assert_eq!(v.map(|v| (v.value, v.how)), Some((5.0, EdgeHow::Nearest)));
        assert_eq!(edge_value(e, None, None, false), None);
    }

    #[test]
    fn months_and_the_windows_around_their_edges() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(month_start_ms(2026, 11), 1_793_491_200_000);
        assert_eq!(civil_month(month_start_ms(2026, 11)), (2026, 11));
        assert_eq!(civil_month(month_start_ms(2026, 11) - 1), (2026, 10));
        assert_eq!(civil_month(month_start_ms(2024, 3) - 1), (2024, 2));
        assert_eq!(civil_date(month_start_ms(2024, 3) - 1), (2024, 2, 29));
        assert_eq!(
            civil_date(days_from_civil(2026, 12, 4) * DAY_MS + 5),
            (2026, 12, 4)
        );
        assert_eq!(civil_date(-1), (1969, 12, 31));
        let edge = month_start_ms(2026, 12);
        // Within 14 hours of a 1st: kept, in any time zone's favour.
        assert!(near_billing_edge(None, edge - 13 * HOUR_MS));
        assert!(near_billing_edge(None, edge + 13 * HOUR_MS));
        assert!(!near_billing_edge(None, edge + 15 * HOUR_MS));
        assert!(!near_billing_edge(
            Some(edge - 20 * DAY_MS),
            edge - 16 * HOUR_MS
        ));
        // Neighbours on either side of the window, far apart: kept.
        assert!(near_billing_edge(
            Some(edge - 2 * DAY_MS),
            edge + 2 * DAY_MS
        ));
        assert!(!near_billing_edge(Some(edge + DAY_MS), edge + 2 * DAY_MS));
    }

    #[test]
    fn usage_is_never_negative_and_a_reset_is_flagged() {
        assert_eq!(usage(100.0, 250.0, &[]), (150.0, false));
        // A controller replaced at 400 pages; the new one starts at 10 and ends at 60.
        assert_eq!(usage(100.0, 60.0, &[(400.0, 10.0)]), (350.0, true));
        // Gone backwards with no reset seen: flagged, no negative usage.
        assert_eq!(usage(100.0, 60.0, &[]), (0.0, true));
    }

    #[test]
    fn replay_skips_what_comes_before_a_keyframe() {
        let delta = Point {
            at_ms: 1,
            keyframe: false,
            vals: [("x".to_owned(), Some(1.0))].into_iter().collect(),
        };
        assert!(replay(&[delta]).is_empty());
    }

    #[test]
    fn buckets_span_each_hour_and_days_join_rollups() {
        let base = 3 * DAY_MS;
        let snaps = vec![
            (base + 10, m(&[("pages", 10.0)])),
            (base + 20, m(&[("pages", 14.0)])),
            (base + HOUR_MS + 5, m(&[("pages", 15.0), ("other", 1.0)])),
        ];
        let hourly = buckets(&snaps, &[], HOUR_MS, base, base + DAY_MS, |k| k == "pages");
        assert_eq!(hourly.len(), 2);
        assert_eq!(hourly[0].span.to_array(), [10.0, 14.0, 10.0, 14.0]);
        assert_eq!(hourly[1].start_ms, base + HOUR_MS);
        let older = vec![(
            2,
            [("pages".to_owned(), Span::from_array([1.0, 9.0, 1.0, 9.0]))]
                .into_iter()
                .collect(),
        )];
        let daily = buckets(&snaps, &older, DAY_MS, 2 * DAY_MS, base + DAY_MS, |_| true);
        let pages: Vec<_> = daily.iter().filter(|b| b.name == "pages").collect();
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].span.to_array(), [1.0, 9.0, 1.0, 9.0]);
        assert_eq!(pages[1].span.to_array(), [10.0, 15.0, 10.0, 15.0]);
        let rolled = roll_up(snaps.iter().map(|(_, s)| s));
        assert_eq!(rolled["pages"].to_array(), [10.0, 15.0, 10.0, 15.0]);
        assert_eq!(rolled["other"].to_array(), [1.0, 1.0, 1.0, 1.0]);
    }
}
