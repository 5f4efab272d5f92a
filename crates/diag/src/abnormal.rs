//! Abnormal units: a device's operating info (counters and gauges) judged against the
//! abnormal-unit rules. A unit is abnormal while a rule's value is out of range; the center
//! keeps the marks and clears them when a later report is back in range.

use std::collections::BTreeMap;

use crate::engine::{DeviceCtx, UnitCtx};
use crate::rules::{AbnormalRule, Measure, RuleSet};
use fleetcare_core::meters;

/// A unit out of range by a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AbnormalMark {
    pub rule: String,
    pub slot: String,
    pub value: f64,
    /// Why, in words ("fuser.life_pages 412000 beyond the expected life 300000 of fus-200").
    pub reason: String,
}

fn check(rule: &AbnormalRule, model: &str, value: f64, name: &str) -> Option<String> {
    if let Some(&life) = rule.expected_life.get(model) {
        return (value > life)
            .then(|| format!("{name} {value} beyond the expected life {life} of {model}"));
    }
    if let Some(hi) = rule.above
        && value > hi
    {
        return Some(format!("{name} {value} above {hi}"));
    }
    if let Some(lo) = rule.below
        && value < lo
    {
        return Some(format!("{name} {value} below {lo}"));
    }
    None
}

/// The mark a rule gives a unit for a value, if it is out of range.
fn mark(rule: &AbnormalRule, unit: &UnitCtx, value: f64, name: &str) -> Option<AbnormalMark> {
    check(rule, &unit.model, value, name).map(|reason| AbnormalMark {
        rule: rule.id.clone(),
        slot: unit.slot.clone(),
        value,
        reason: format!("{}: {reason}", rule.title),
    })
}

/// The device's abnormal units by the rules, in rule then slot order.
pub fn abnormal_units(
    rules: &RuleSet,
    ctx: &DeviceCtx,
    operating: &BTreeMap<String, f64>,
) -> Vec<AbnormalMark> {
    let mut out = Vec::new();
    for rule in rules.abnormal.iter().filter(|r| !r.measure.from_history()) {
        for unit in ctx.units.iter().filter(|u| u.kind == rule.unit_kind) {
            if !rule.expected_life.is_empty() && !rule.expected_life.contains_key(&unit.model) {
                continue; // no expected life known for this unit model
            }
            let counter = rule.counter.replace("{slot}", &unit.slot);
            let Some(&raw) = operating.get(&counter) else {
                continue;
            };
            let (value, name) = match &rule.per {
                None => (raw, counter),
                Some(per) => {
                    let per = per.replace("{slot}", &unit.slot);
                    match operating.get(&per) {
                        Some(&d) if d > 0.0 => (raw / d, format!("{counter}/{per}")),
                        _ => continue,
                    }
                }
            };
            out.extend(mark(rule, unit, value, &name));
        }
    }
    out
}

/// A device's readings over time (its history replayed, daily rollups as their first and
/// last readings), oldest first.
pub type Readings = [(i64, BTreeMap<String, f64>)];

/// The device's abnormal units by the rules that judge its history (rate in a window, trend,
/// growth since a unit went in), as of `now_ms`. `installed_at(slot)`: when the unit now in
/// the slot appeared (`None`: before the history begins, which then counts from its start).
pub fn history_marks(
    rules: &RuleSet,
    ctx: &DeviceCtx,
    readings: &Readings,
    now_ms: i64,
    installed_at: &dyn Fn(&str) -> Option<i64>,
) -> Vec<AbnormalMark> {
    let series = |name: &str, from: i64| -> Vec<(i64, f64)> {
        readings
            .iter()
            .filter(|(at, _)| *at >= from && *at <= now_ms)
            .filter_map(|(at, v)| Some((*at, *v.get(name)?)))
            .collect()
    };
    let mut out = Vec::new();
    for rule in rules.abnormal.iter().filter(|r| r.measure.from_history()) {
        for unit in ctx.units.iter().filter(|u| u.kind == rule.unit_kind) {
            if !rule.expected_life.is_empty() && !rule.expected_life.contains_key(&unit.model) {
                continue;
            }
            let counter = rule.counter.replace("{slot}", &unit.slot);
            let judged = match rule.measure {
                Measure::Value => None::<(f64, String)>,
                Measure::Rate { window_ms } => {
                    let per = rule
                        .per
                        .as_deref()
                        .unwrap_or("")
                        .replace("{slot}", &unit.slot);
                    let both: Vec<(f64, f64)> = readings
                        .iter()
                        .filter(|(at, _)| *at >= now_ms - window_ms && *at <= now_ms)
                        .filter_map(|(_, v)| Some((*v.get(&counter)?, *v.get(&per)?)))
                        .collect();
                    match (both.first(), both.last()) {
                        (Some(a), Some(b)) if b.1 > a.1 && b.0 >= a.0 => Some((
                            (b.0 - a.0) / (b.1 - a.1),
                            format!(
                                "{counter} per {per} over the last {}",
                                crate::rules::duration_words(window_ms)
                            ),
                        )),
                        _ => None,
                    }
                }
                Measure::Trend { window_ms } => {
                    let pts = series(&counter, now_ms - window_ms);
                    let span = pts.last().zip(pts.first()).map_or(0, |(l, f)| l.0 - f.0);
                    (pts.len() >= 3 && span >= window_ms / 4)
                        .then(|| meters::slope_per_day(&pts))
                        .flatten()
                        .map(|slope| {
                            (
                                (slope * 100.0).round() / 100.0,
                                format!(
                                    "{counter} trend per day over the last {}",
                                    crate::rules::duration_words(window_ms)
                                ),
                            )
                        })
                }
                Measure::SinceInstall => {
                    let since = installed_at(&unit.slot).unwrap_or(i64::MIN);
                    let pts = series(&counter, since);
                    match (pts.first(), pts.last()) {
                        (Some(a), Some(b)) if b.1 >= a.1 => Some((
                            b.1 - a.1,
                            format!("{counter} since this {} went in", unit.kind),
                        )),
                        _ => None,
                    }
                }
            };
            let Some((value, name)) = judged else {
                continue;
            };
            out.extend(mark(rule, unit, value, &name));
        }
    }
    out
}

/// A part (a unit judged by a `since_install` rule with an expected life) and how much of its
/// life it has used.
#[derive(Debug, Clone, PartialEq)]
pub struct PartLife {
    pub rule: String,
    pub slot: String,
    pub kind: String,
    pub model: String,
    /// Growth of the rule's counter since the unit went in (pages).
    pub used: f64,
    pub life: f64,
}

/// Every part with an expected life by the `since_install` rules, with what it has used
/// since it went in (from the readings, as [`history_marks`] counts it).
pub fn part_lives(
    rules: &RuleSet,
    ctx: &DeviceCtx,
    readings: &Readings,
    now_ms: i64,
    installed_at: &dyn Fn(&str) -> Option<i64>,
) -> Vec<PartLife> {
    let mut out = Vec::new();
    for rule in rules
        .abnormal
        .iter()
        .filter(|r| r.measure == Measure::SinceInstall)
    {
        for unit in ctx.units.iter().filter(|u| u.kind == rule.unit_kind) {
            let Some(&life) = rule.expected_life.get(&unit.model) else {
                continue;
            };
            let counter = rule.counter.replace("{slot}", &unit.slot);
            let since = installed_at(&unit.slot).unwrap_or(i64::MIN);
            let mut pts = readings
                .iter()
                .filter(|(at, _)| *at >= since && *at <= now_ms)
                .filter_map(|(_, v)| v.get(&counter).copied());
            let Some(first) = pts.next() else { continue };
            let last = pts.next_back().unwrap_or(first);
            if last >= first {
                out.push(PartLife {
                    rule: rule.id.clone(),
                    slot: unit.slot.clone(),
                    kind: unit.kind.clone(),
                    model: unit.model.clone(),
                    used: last - first,
                    life,
                });
            }
        }
    }
    out
}
