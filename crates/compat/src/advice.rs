//! Advice when software cannot fix it: ranked hardware configurations that would make the
//! device compatible, each checked by judging it and planning its software.
//!
//! The units to change are those of hardware findings (not accepted by the device model, not
//! working with another unit, unknown model or revision) and, when no software plan exists,
//! those of the software findings. For each, the alternatives are: another hardware revision
//! of the same model, another unit model of the same kind that the device model accepts, and —
//! when the device model lists the unit's kind as optional — taking it out of service. A
//! replacement unit's software (the products its model carries, or the old unit's products
//! that run on it) gets versions from the plan. Single changes are tried first, pairs only if
//! no single change works; everything stops at the deadline.

use std::time::{Duration, Instant};

use crate::catalog::Catalog;
use crate::facts::{DeviceFacts, SoftwareFacts};
use crate::judge::FindingKind;
use crate::plan::{PlanOutcome, Policy, Step};
use crate::vocab::{Name, Sym};

/// One hardware change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HardwareChange {
    /// Put a unit of this model and revision in the unit's slot.
    Replace {
        unit: u16,
        model: Sym,
        hw_revision: Option<Sym>,
    },
    /// Keep the unit but stop using it; the device works without it.
    OutOfService { unit: u16 },
}

impl HardwareChange {
    pub fn unit(&self) -> u16 {
        match self {
            HardwareChange::Replace { unit, .. } | HardwareChange::OutOfService { unit } => *unit,
        }
    }

    /// 0: another revision of the same model, 1: another model, 2: out of service.
    fn weight(&self, facts: &DeviceFacts) -> u32 {
        match self {
            HardwareChange::Replace { unit, model, .. } => {
                u32::from(facts.units[*unit as usize].model.sym() != Some(*model))
            }
            HardwareChange::OutOfService { .. } => 2,
        }
    }
}

/// A configuration that works: the hardware changes, then the software plan for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    pub changes: Vec<HardwareChange>,
    /// Software changes after the hardware changes (indices into `after`).
    pub steps: Vec<Step>,
    /// The device's facts after the hardware changes, before the software steps.
    pub after: DeviceFacts,
}

/// Replacement configurations shown at most (an out-of-service stopgap comes on top).
pub const MAX_RECOMMENDATIONS: usize = 3;

impl Catalog {
    fn hardware_ok(&self, facts: &DeviceFacts) -> bool {
        !self.judge(facts).iter().any(|f| {
            f.kind.hardware()
                || f.kind == FindingKind::UnknownUnitModel
                || f.kind == FindingKind::UnknownDeviceModel
        })
    }

    fn alternatives(&self, facts: &DeviceFacts, unit: u16) -> Vec<HardwareChange> {
        let u = &facts.units[unit as usize];
        let mut out = Vec::new();
        let current = u.model.sym().and_then(|m| self.unit_model(m));
        if let Some(um) = current {
            for r in &um.hw_revisions {
                if u.hw_revision.as_ref().and_then(|n| n.sym()) != Some(*r) {
                    out.push(HardwareChange::Replace {
                        unit,
                        model: um.name,
                        hw_revision: Some(*r),
                    });
                }
            }
        }
        let device_model = facts.model.sym().and_then(|m| self.device_model(m));
        let kind = current.map(|um| um.kind).or_else(|| u.kind.sym());
        if let (Some(dm), Some(kind)) = (device_model, kind) {
            for m in self.unit_models_for(dm.name, kind) {
                if Some(m.name) == u.model.sym() {
                    continue;
                }
                if m.hw_revisions.is_empty() {
                    out.push(HardwareChange::Replace {
                        unit,
                        model: m.name,
                        hw_revision: None,
                    });
                }
                for r in &m.hw_revisions {
                    out.push(HardwareChange::Replace {
                        unit,
                        model: m.name,
                        hw_revision: Some(*r),
                    });
                }
            }
            if dm.optional_kinds.contains(&kind) {
                out.push(HardwareChange::OutOfService { unit });
            }
        }
        out
    }

    /// The facts after a hardware change.
    pub fn apply_hardware(&self, facts: &DeviceFacts, change: &HardwareChange) -> DeviceFacts {
        let mut after = facts.clone();
        match change {
            HardwareChange::OutOfService { unit } => {
                after.units[*unit as usize].in_service = false;
            }
            HardwareChange::Replace {
                unit,
                model,
                hw_revision,
            } => {
                let um = self.unit_model(*model);
                let old_products: Vec<(Name, Name)> = after
                    .software
                    .iter()
                    .filter(|s| s.unit == *unit && s.active)
                    .map(|s| (s.product, s.maker))
                    .collect();
                // What the new unit's model carries, and what the old unit ran that runs on it.
                let mut products: Vec<(Name, Name)> = um
                    .map(|um| {
                        um.software
                            .iter()
                            .filter_map(|p| {
                                self.product(*p)
                                    .map(|pr| (Name::of(*p), Name::of(pr.maker)))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for (p, maker) in old_products {
                    let runs = p
                        .sym()
                        .and_then(|p| self.product(p))
                        .is_some_and(|pr| pr.runs_on.iter().any(|t| t.unit_model == *model));
                    if runs && !products.iter().any(|(q, _)| *q == p) {
                        products.push((p, maker));
                    }
                }
                let slot = &mut after.units[*unit as usize];
                slot.model = Name::of(*model);
                if let Some(um) = um {
                    slot.kind = Name::of(um.kind);
                }
                slot.hw_revision = hw_revision.map(Name::of);
                slot.in_service = true;
                after.software.retain(|s| s.unit != *unit);
                for (product, maker) in products {
                    after.software.push(SoftwareFacts {
                        unit: *unit,
                        product,
                        maker,
                        version: None,
                        active: true,
                    });
                }
            }
        }
        after
    }

    fn try_config(
        &self,
        facts: &DeviceFacts,
        changes: Vec<HardwareChange>,
        policy: Policy,
        deadline: Instant,
    ) -> Option<Recommendation> {
        let mut after = facts.clone();
        for c in &changes {
            after = self.apply_hardware(&after, c);
        }
        if !self.hardware_ok(&after) {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.plan(&after, policy, left) {
            PlanOutcome::Keep => Some(Recommendation {
                changes,
                steps: Vec::new(),
                after,
            }),
            PlanOutcome::Change(steps) => Some(Recommendation {
                changes,
                steps,
                after,
            }),
            PlanOutcome::NoSolution(_) | PlanOutcome::OutOfTime => None,
        }
    }

    /// Ranked configurations that would make the device compatible (see the module docs).
    pub fn advise(
        &self,
        facts: &DeviceFacts,
        policy: Policy,
        budget: Duration,
    ) -> Vec<Recommendation> {
        let deadline = Instant::now() + budget;
        let findings = self.judge(facts);
        let mut units: Vec<u16> = findings
            .iter()
            .filter(|f| f.kind.hardware() || f.kind == FindingKind::UnknownUnitModel)
            .flat_map(|f| f.units.iter().copied())
            .collect();
        let software_ok = matches!(
            self.plan(facts, policy, budget),
            PlanOutcome::Keep | PlanOutcome::Change(_)
        );
        if !software_ok {
            units.extend(
                findings
                    .iter()
                    .filter(|f| f.kind.software_fixable())
                    .flat_map(|f| f.units.iter().copied()),
            );
        }
        units.sort_unstable();
        units.dedup();
        let mut found: Vec<Recommendation> = Vec::new();
        for &u in &units {
            for alt in self.alternatives(facts, u) {
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(r) = self.try_config(facts, vec![alt], policy, deadline) {
                    found.push(r);
                }
            }
        }
        if found.is_empty() && units.len() >= 2 {
            'pairs: for (i, &a) in units.iter().enumerate() {
                for &b in &units[i + 1..] {
                    for x in self.alternatives(facts, a) {
                        for y in self.alternatives(facts, b) {
                            if Instant::now() >= deadline {
                                break 'pairs;
                            }
                            if let Some(r) =
                                self.try_config(facts, vec![x.clone(), y], policy, deadline)
                            {
                                found.push(r);
                            }
                        }
                    }
                }
            }
        }
        found.sort_by_key(|r| {
            (
                r.changes.len(),
                r.changes.iter().map(|c| c.weight(facts)).sum::<u32>(),
                r.steps.len(),
                r.changes
                    .iter()
                    .map(|c| match c {
                        HardwareChange::Replace {
                            model, hw_revision, ..
                        } => (
                            self.text(*model).to_string(),
                            hw_revision
                                .map(|r| self.text(r).to_string())
                                .unwrap_or_default(),
                        ),
                        HardwareChange::OutOfService { .. } => (String::new(), String::new()),
                    })
                    .collect::<Vec<_>>(),
            )
        });
        // The best replacements, then (where the device model allows it) taking a unit out of
        // service: a stopgap that keeps the device working, always worth showing.
        let (mut out, stopgaps): (Vec<Recommendation>, Vec<Recommendation>) =
            found.into_iter().partition(|r| {
                !r.changes
                    .iter()
                    .any(|c| matches!(c, HardwareChange::OutOfService { .. }))
            });
        out.truncate(MAX_RECOMMENDATIONS);
        out.extend(stopgaps.into_iter().take(1));
        out
    }
}
