//! Incremental evaluation of error events against a tenant's rules.
//!
//! The engine is fed each newly stored event once ([`Engine::ingest`]). Per device and rule it
//! keeps only what the rule's condition needs — the last `count` matching events, or the last
//! event that may start a sequence — and per fleet rule and signature (device model, the
//! software on the event's unit, the code) the devices seen within the window. A condition
//! that holds for a device without an open trouble of that rule opens one; a matching event
//! of a device whose trouble is open is a recurrence (it keeps the trouble from resolving
//! itself). Resolving a trouble forgets the rule's state for that device, so the next trouble
//! needs the condition to hold again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::rules::{Condition, Rule, RuleSet};

/// Identifies an event of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventRef {
    pub boot_epoch: u64,
    pub seq: u64,
}

/// An event, as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub r: EventRef,
    /// Device time.
    pub at_ms: i64,
    /// Center time (when it was received).
    pub received_ms: i64,
    pub slot: &'a str,
    pub code: &'a str,
    /// The event severity's rank ([`crate::rules::event_rank`]).
    pub severity: u8,
    pub counters: &'a BTreeMap<String, f64>,
}

/// A unit of the device, as rules look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCtx {
    pub slot: String,
    pub kind: String,
    pub model: String,
    /// The unit's active software, `product version` joined by `, ` (the fleet signature).
    pub software: String,
}

/// What the engine needs to know of the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCtx {
    pub model: String,
    pub units: Vec<UnitCtx>,
}

impl DeviceCtx {
    fn unit(&self, slot: &str) -> Option<&UnitCtx> {
        self.units.iter().find(|u| u.slot == slot)
    }
}

/// A rule's condition held (`opens`) or a matching event recurred for a device with an open
/// trouble of the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub rule: usize,
    pub device: Arc<str>,
    pub opens: bool,
    /// The events that made it, oldest first.
    pub evidence: Vec<EventRef>,
    /// Device time of the newest of them.
    pub at_ms: i64,
    /// Center time of the newest of them.
    pub received_ms: i64,
    /// For fleet rules: what the devices share, in words.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    r: EventRef,
    at_ms: i64,
    received_ms: i64,
    /// The pages counter (per-pages rules).
    pages: f64,
}

#[derive(Debug, Default)]
struct DeviceState {
    /// Per rule: the last matching events (count and per-pages rules) or the last "A" event
    /// (sequences; one entry).
    recent: FxHashMap<u32, VecDeque<Seen>>,
    open: FxHashSet<u32>,
}

#[derive(Debug, Default)]
struct FleetState {
    /// Each device's newest matching event.
    latest: FxHashMap<Arc<str>, Seen>,
    /// (center time, device) in arrival order; stale entries are skipped when pruning.
    order: VecDeque<(i64, Arc<str>)>,
}

/// One tenant's evaluation state.
#[derive(Debug)]
pub struct Engine {
    rules: Arc<RuleSet>,
    devices: FxHashMap<Arc<str>, DeviceState>,
    fleet: FxHashMap<(u32, String), FleetState>,
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>) -> Engine {
        Engine {
            rules,
            devices: FxHashMap::default(),
            fleet: FxHashMap::default(),
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Record that the device has an open trouble of the rule (at start, from the store).
    pub fn mark_open(&mut self, device: &str, rule_id: &str) {
        if let Some((i, _)) = self.rules.rule(rule_id) {
            self.devices
                .entry(Arc::from(device))
                .or_default()
                .open
                .insert(idx(i));
        }
    }

    /// Is a trouble of the rule open for the device (as far as this engine knows)?
    pub fn is_open(&self, device: &str, rule: usize) -> bool {
        self.devices
            .get(device)
            .is_some_and(|d| d.open.contains(&idx(rule)))
    }

    /// The device's trouble of the rule was resolved (or its opening failed): forget the
    /// rule's state for the device.
    pub fn resolved(&mut self, device: &str, rule_id: &str) {
        let Some((i, _)) = self.rules.rule(rule_id) else {
            return;
        };
        if let Some(d) = self.devices.get_mut(device) {
            d.open.remove(&idx(i));
            d.recent.remove(&idx(i));
        }
        for ((r, _), f) in self.fleet.iter_mut() {
            if *r == idx(i)
                && let Some((key, _)) = f.latest.remove_entry(device)
            {
                f.order.retain(|(_, d)| *d != key);
            }
        }
    }

    /// Evaluate a device's newly stored events (each once), in order; what fired.
    pub fn ingest(&mut self, device: &str, ctx: &DeviceCtx, events: &[Event<'_>]) -> Vec<Firing> {
        let mut out = Vec::new();
        let rules = self.rules.clone();
        let dev: Arc<str> = match self.devices.get_key_value(device) {
            Some((k, _)) => k.clone(),
            None => Arc::from(device),
        };
        for e in events {
            let unit = ctx.unit(e.slot);
            let kind = unit.map(|u| u.kind.as_str());
            for (i, rule) in rules.rules.iter().enumerate() {
                let starts = rule.matcher.matches(e.code, kind, e.severity);
                let ends = match &rule.condition {
                    Condition::Sequence { then, .. } => then.matches(e.code, kind, e.severity),
                    _ => false,
                };
                if !starts && !ends {
                    continue;
                }
                let seen = Seen {
                    r: e.r,
                    at_ms: e.at_ms,
                    received_ms: e.received_ms,
                    pages: 0.0,
                };
                if self.is_open(device, i) {
                    out.push(firing(i, &dev, false, vec![seen], None));
                    continue;
                }
                match &rule.condition {
                    Condition::Fleet { .. } => {
                        let signature = format!(
                            "{}\u{1f}{}\u{1f}{}",
                            ctx.model,
                            unit.map_or("", |u| u.software.as_str()),
                            e.code
                        );
                        self.fleet_event(i, rule, signature, &dev, ctx, unit, seen, &mut out);
                    }
                    _ => {
                        if let Some(f) = self.device_event(i, rule, &dev, e, seen, starts, ends) {
                            out.push(f);
                        }
                    }
                }
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn device_event(
        &mut self,
        i: usize,
        rule: &Rule,
        dev: &Arc<str>,
        e: &Event<'_>,
        mut seen: Seen,
        starts: bool,
        ends: bool,
    ) -> Option<Firing> {
        let state = self.devices.entry(dev.clone()).or_default();
        let recent = state.recent.entry(idx(i)).or_default();
        let held = match &rule.condition {
            Condition::Count { n, window_ms } => {
                push_last(recent, seen, *n);
                recent.len() == *n as usize && spread(recent.iter().map(|s| s.at_ms)) <= *window_ms
            }
            Condition::PerPages { n, pages, counter } => {
                let Some(&p) = e.counters.get(counter) else {
                    return None; // the event does not say how many pages: it cannot count
                };
                seen.pages = p;
                push_last(recent, seen, *n);
                recent.len() == *n as usize
                    && recent.iter().map(|s| s.pages).fold(f64::MIN, f64::max)
                        - recent.iter().map(|s| s.pages).fold(f64::MAX, f64::min)
                        <= *pages
            }
            Condition::Sequence { window_ms, .. } => {
                let mut held = false;
                if ends
                    && let Some(a) = recent.front()
                    && a.r != seen.r
                    && (0..=*window_ms).contains(&(seen.at_ms - a.at_ms))
                {
                    recent.push_back(seen);
                    held = true;
                }
                if !held && starts {
                    recent.clear();
                    recent.push_back(seen);
                }
                held
            }
            Condition::Fleet { .. } => false,
        };
        if !held {
            return None;
        }
        let evidence: Vec<Seen> = recent.drain(..).collect();
        state.open.insert(idx(i));
        Some(firing(i, dev, true, evidence, None))
    }

    #[allow(clippy::too_many_arguments)]
    fn fleet_event(
        &mut self,
        i: usize,
        rule: &Rule,
        signature: String,
        dev: &Arc<str>,
        ctx: &DeviceCtx,
        unit: Option<&UnitCtx>,
        seen: Seen,
        out: &mut Vec<Firing>,
    ) {
        let Condition::Fleet { devices, window_ms } = rule.condition else {
            return;
        };
        let f = self.fleet.entry((idx(i), signature)).or_default();
        let now = seen.received_ms;
        f.latest.insert(dev.clone(), seen);
        f.order.push_back((now, dev.clone()));
        while let Some((t, d)) = f.order.front() {
            if now - *t <= window_ms {
                break;
            }
            if f.latest.get(d).is_some_and(|s| s.received_ms == *t) {
                f.latest.remove(d);
            }
            f.order.pop_front();
        }
        if f.order.len() > 4 * f.latest.len() + 64 {
            // Many events of few devices: drop the stale entries.
            let latest = &f.latest;
            f.order
                .retain(|(t, d)| latest.get(d).is_some_and(|s| s.received_ms == *t));
        }
        if f.latest.len() < devices as usize {
            return;
        }
        let note = format!(
            "seen on {} devices of model {}{} within {}",
            f.latest.len(),
            ctx.model,
            unit.map_or(String::new(), |u| format!(
                " with {} on the {}",
                if u.software.is_empty() {
                    "no software"
                } else {
                    &u.software
                },
                u.kind
            )),
            crate::rules::duration_words(window_ms)
        );
        let mut affected: Vec<(Arc<str>, Seen)> =
            f.latest.iter().map(|(d, s)| (d.clone(), *s)).collect();
        affected.sort_by(|a, b| a.0.cmp(&b.0));
        for (d, s) in affected {
            let state = self.devices.entry(d.clone()).or_default();
            if state.open.insert(idx(i)) {
                out.push(firing(i, &d, true, vec![s], Some(note.clone())));
            }
        }
    }
}

fn idx(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn push_last(q: &mut VecDeque<Seen>, s: Seen, n: u32) {
    q.push_back(s);
    while q.len() > n as usize {
        q.pop_front();
    }
}

fn spread(at: impl Iterator<Item = i64> + Clone) -> i64 {
    at.clone().max().unwrap_or(0) - at.min().unwrap_or(0)
}

fn firing(i: usize, dev: &Arc<str>, opens: bool, ev: Vec<Seen>, note: Option<String>) -> Firing {
    let newest = ev.iter().max_by_key(|s| s.at_ms).copied();
    Firing {
        rule: i,
        device: dev.clone(),
        opens,
        evidence: ev.iter().map(|s| s.r).collect(),
        at_ms: newest.map_or(0, |s| s.at_ms),
        received_ms: ev.iter().map(|s| s.received_ms).max().unwrap_or(0),
        note,
    }
}
