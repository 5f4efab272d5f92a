//! Abnormal units: a device's operating info (counters and gauges) judged against the
//! abnormal-unit rules. A unit is abnormal while a rule's value is out of range; the center
//! keeps the marks and clears them when a later report is back in range.

use std::collections::BTreeMap;

use crate::engine::DeviceCtx;
use crate::rules::{AbnormalRule, RuleSet};

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

/// The device's abnormal units by the rules, in rule then slot order.
pub fn abnormal_units(
    rules: &RuleSet,
    ctx: &DeviceCtx,
    operating: &BTreeMap<String, f64>,
) -> Vec<AbnormalMark> {
    let mut out = Vec::new();
    for rule in &rules.abnormal {
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
            if let Some(reason) = check(rule, &unit.model, value, &name) {
                out.push(AbnormalMark {
                    rule: rule.id.clone(),
                    slot: unit.slot.clone(),
                    value,
                    reason: format!("{}: {reason}", rule.title),
                });
            }
        }
    }
    out
}
