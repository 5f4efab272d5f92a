//! Compatibility decisions, free of IO: the judgement of one device's facts against the
//! current catalog, the software steps that fix it, the hardware advice where only a unit
//! change can, and the parallel re-judgement of a tenant's fleet.

use fleetcare_compat::advice::HardwareChange;
use fleetcare_compat::render::Rendered;
use fleetcare_compat::{
    Catalog, DeviceFacts, FindingKind, Name, PlanOutcome, Policy, Recommendation, State, Step,
};
use fleetcare_core::Structure;
use fleetcare_core::secret;
use fleetcare_store::{FindingRow, Judgement};
use fleetcare_wire::compat::{self as w, FindingSubject};
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Longest a plan search may take in the worker.
pub const PLAN_BUDGET: Duration = Duration::from_millis(200);

/// Longest the search for advice may take.
pub const ADVICE_BUDGET: Duration = Duration::from_millis(500);

/// A tenant's catalog as the center uses it.
#[derive(Debug)]
pub struct Current {
    pub revision: u64,
    pub catalog: Catalog,
}

/// What the fleet index keeps of a device.
#[derive(Debug)]
pub struct Entry {
    pub facts: DeviceFacts,
    /// The structure's fingerprint (the store keeps it as 32 hex digits).
    pub structure_hash: u128,
    /// The stored findings' hash (see [`hash_bits`]), low 64 bits: enough to tell a change.
    pub(crate) findings_hash: AtomicU64,
    /// The stored findings call for the worker (see [`actionable`]).
    pub(crate) actionable: AtomicBool,
}

impl Entry {
    pub(crate) fn new(
        facts: DeviceFacts,
        structure_hash: u128,
        findings_hash: u128,
        actionable: bool,
    ) -> Entry {
        Entry {
            facts,
            structure_hash,
            findings_hash: AtomicU64::new(findings_hash as u64),
            actionable: AtomicBool::new(actionable),
        }
    }

    pub(crate) fn findings_hash(&self) -> u64 {
        self.findings_hash.load(Ordering::Relaxed)
    }
}

/// Findings the worker acts on: a software plan or hardware advice may follow.
pub fn actionable(j: &Judgement) -> bool {
    j.findings.iter().any(|f| {
        FindingKind::parse(&f.kind).is_some_and(|k| {
            k.software_fixable() || k.hardware() || k == FindingKind::UnknownUnitModel
        })
    })
}

/// A stored hash (hex) as bits: `""` (no findings) is 0, anything unreadable (`"unjudged"`)
/// is `u128::MAX`, which no judgement produces.
pub fn hash_bits(hex: &str) -> u128 {
    if hex.is_empty() {
        return 0;
    }
    u128::from_str_radix(hex, 16).unwrap_or(u128::MAX)
}

/// The stored form of a structure fingerprint.
pub fn hash_hex(bits: u128) -> String {
    format!("{bits:032x}")
}

/// A judgement for the store: rendered findings, their hash, the device's state.
pub fn judgement_of(cur: &Current, facts: &DeviceFacts) -> Judgement {
    let (hash, rendered) = findings_of(cur, facts);
    judgement(cur, hash, rendered)
}

/// A device's findings, rendered, and their hash (`""` when there are none).
pub(crate) fn findings_of(cur: &Current, facts: &DeviceFacts) -> (String, Vec<Rendered>) {
    let findings = cur.catalog.judge(facts);
    if findings.is_empty() {
        return (String::new(), Vec::new());
    }
    let rendered: Vec<Rendered> = findings
        .iter()
        .map(|f| cur.catalog.render(facts, f))
        .collect();
    let keys: Vec<&str> = rendered.iter().map(|r| r.key.as_str()).collect();
    (secret::hash(&keys.join("\n"))[..32].to_owned(), rendered)
}

/// The judgement to store for rendered findings.
pub(crate) fn judgement(cur: &Current, hash: String, rendered: Vec<Rendered>) -> Judgement {
    Judgement {
        revision: cur.revision,
        hash,
        state: State::judged(rendered.iter().map(|r| r.kind))
            .as_str()
            .into(),
        findings: rendered.into_iter().map(finding_row).collect(),
    }
}

pub(crate) fn finding_row(r: Rendered) -> FindingRow {
    let subject = FindingSubject {
        units: r
            .units
            .into_iter()
            .map(|u| w::FindingUnit {
                slot: u.slot,
                kind: u.kind,
                model: u.model,
                hw_revision: u.hw_revision,
            })
            .collect(),
        software: r
            .software
            .into_iter()
            .map(|s| w::FindingSoftware {
                slot: s.slot,
                product: s.product,
                maker: s.maker,
                version: s.version,
            })
            .collect(),
    };
    FindingRow {
        key: r.key,
        kind: r.kind.as_str().into(),
        rule: r.rule,
        subject_json: serde_json::to_string(&subject).expect("subjects serialize"),
        explanation: r.explanation,
    }
}

/// A plan's steps for the wire (slot and maker names from the facts and the catalog).
pub fn software_steps(
    catalog: &Catalog,
    facts: &DeviceFacts,
    steps: &[Step],
) -> Vec<w::SoftwareStep> {
    steps
        .iter()
        .map(|s| w::SoftwareStep {
            slot: facts_text(catalog, facts, &facts.units[s.unit as usize].slot),
            product: catalog.text(s.product).to_string(),
            maker: catalog
                .product(s.product)
                .map(|p| catalog.text(p.maker).to_string())
                .unwrap_or_default(),
            from: s.from.as_ref().map(ToString::to_string),
            to: s.to.to_string(),
            action: s.action.as_str().into(),
        })
        .collect()
}

pub(crate) fn facts_text(catalog: &Catalog, facts: &DeviceFacts, n: &Name) -> String {
    facts.text(&catalog.vocab, n).to_string()
}

/// Recommendations for the wire.
pub fn recommendations(
    catalog: &Catalog,
    facts: &DeviceFacts,
    recs: &[Recommendation],
) -> Vec<w::Recommendation> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| w::Recommendation {
            rank: u32::try_from(i + 1).unwrap_or(u32::MAX),
            hardware: r
                .changes
                .iter()
                .map(|c| {
                    let u = &facts.units[c.unit() as usize];
                    let (action, to_model, to_rev) = match c {
                        HardwareChange::Replace {
                            model, hw_revision, ..
                        } => (
                            "replace",
                            Some(catalog.text(*model).to_string()),
                            hw_revision.map(|r| catalog.text(r).to_string()),
                        ),
                        HardwareChange::OutOfService { .. } => ("out_of_service", None, None),
                    };
                    w::HardwareStep {
                        slot: facts_text(catalog, facts, &u.slot),
                        action: action.into(),
                        from_model: facts_text(catalog, facts, &u.model),
                        from_hw_revision: u
                            .hw_revision
                            .as_ref()
                            .map(|r| facts_text(catalog, facts, r))
                            .unwrap_or_default(),
                        to_model,
                        to_hw_revision: to_rev,
                    }
                })
                .collect(),
            software: software_steps(catalog, &r.after, &r.steps),
            summary: catalog.describe_recommendation(facts, r),
        })
        .collect()
}

/// What the worker decided for a device (computed off the async runtime).
pub(crate) struct Decision {
    /// A software plan with changes: the job to have.
    pub(crate) job_steps: Option<Vec<w::SoftwareStep>>,
    /// Hardware advice to notify.
    pub(crate) advice: Option<Advice>,
    /// The device's state now that its plan is known.
    pub(crate) state: &'static str,
    /// The findings' hash as the store keeps it (`""`: none).
    pub(crate) findings_hash: String,
}

pub(crate) struct Advice {
    pub(crate) summary: String,
    pub(crate) recommendations: Vec<w::Recommendation>,
    /// One open notification per set of findings.
    pub(crate) key: String,
    /// `(slot, serial, slot that takes over)` of an optional unit that does not work here and
    /// can be taken out of service (if the policy allows).
    pub(crate) out_of_service: Option<(String, String, Option<String>)>,
}

/// What software or hardware can do for a device, judged now against a catalog: the CPU
/// part that the worker and the device's compatibility report share.
pub struct Assessment {
    pub findings: Vec<fleetcare_compat::Finding>,
    /// The plan search's outcome, when a finding software could fix asked for one.
    pub plan: Option<PlanOutcome>,
    /// Ranked configurations, when only hardware can fix it (or the catalog does not know a
    /// unit, or no software set fixes it).
    pub advice: Option<Vec<Recommendation>>,
    /// `compatible`, `software` (a plan fixes it), `hardware` or `unknown`.
    pub state: &'static str,
}

/// Judge a device, search its plan where software might fix it, and its advice where it
/// cannot.
pub fn assess(cur: &Current, facts: &DeviceFacts, policy: Policy) -> Assessment {
    let findings = cur.catalog.judge(facts);
    let mut advise = findings
        .iter()
        .any(|f| f.kind.hardware() || f.kind == FindingKind::UnknownUnitModel);
    let plan = findings
        .iter()
        .any(|f| f.kind.software_fixable())
        .then(|| cur.catalog.plan(facts, policy, PLAN_BUDGET));
    if matches!(
        plan,
        Some(PlanOutcome::NoSolution(_) | PlanOutcome::OutOfTime)
    ) {
        advise = true;
    }
    let advice = advise.then(|| cur.catalog.advise(facts, policy, ADVICE_BUDGET));
    let state = State::settled(&findings, plan.as_ref()).as_str();
    Assessment {
        findings,
        plan,
        advice,
        state,
    }
}

/// Judge, plan and advise one device: the CPU part of acting.
pub(crate) fn decide(
    cur: &Current,
    facts: &DeviceFacts,
    structure: &Structure,
    policy: Policy,
) -> Decision {
    let a = assess(cur, facts, policy);
    let rendered: Vec<Rendered> = a
        .findings
        .iter()
        .map(|f| cur.catalog.render(facts, f))
        .collect();
    let keys: Vec<&str> = rendered.iter().map(|r| r.key.as_str()).collect();
    let findings_hash = if keys.is_empty() {
        String::new()
    } else {
        secret::hash(&keys.join("\n"))[..32].to_owned()
    };
    let job_steps = match &a.plan {
        Some(PlanOutcome::Change(steps)) => Some(software_steps(&cur.catalog, facts, steps)),
        _ => None,
    };
    let Some(recs) = a.advice else {
        return Decision {
            job_steps,
            advice: None,
            state: a.state,
            findings_hash,
        };
    };
    let problem = rendered
        .iter()
        .filter(|r| {
            r.kind.hardware()
                || r.kind.software_fixable()
                || r.kind == FindingKind::UnknownUnitModel
        })
        .map(|r| r.explanation.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let wire_recs = recommendations(&cur.catalog, facts, &recs);
    let summary = match wire_recs.first() {
        Some(best) => format!("{problem} Recommended: {}", best.summary),
        None => format!("{problem} No configuration in the catalog makes this device compatible."),
    };
    // Only a unit that does not work here (not one the catalog merely does not know).
    let hardware_units: Vec<u16> = a
        .findings
        .iter()
        .filter(|f| f.kind.hardware())
        .flat_map(|f| f.units.iter().copied())
        .collect();
    let out_of_service = recs
        .iter()
        .find_map(|r| match r.changes.as_slice() {
            [HardwareChange::OutOfService { unit }] if hardware_units.contains(unit) => Some(*unit),
            _ => None,
        })
        .and_then(|unit| {
            let slot = facts_text(&cur.catalog, facts, &facts.units[unit as usize].slot);
            let serial = structure.unit(&slot)?.serial.clone();
            let switched_to = takes_over(structure, &slot);
            Some((slot, serial, switched_to))
        });
    Decision {
        job_steps,
        advice: Some(Advice {
            summary,
            recommendations: wire_recs,
            key: format!("advice:{}", &secret::hash(&keys.join("\n"))[..32]),
            out_of_service,
        }),
        state: a.state,
        findings_hash,
    }
}

/// A device whose judgement changed under a new catalog.
pub struct Changed {
    pub id: Arc<str>,
    pub structure_hash: String,
    pub judgement: Judgement,
    /// The device may have open findings (its stored findings hash is not the empty one).
    pub had_findings: bool,
}

/// The worker looks at a device after every catalog change even when its findings stay the
/// same: they call for a plan or advice (which the new revision may change), or a unit is out
/// of service (which the new revision may let back in).
pub(crate) fn act_again(e: &Entry) -> bool {
    e.actionable.load(Ordering::Relaxed) || e.facts.units.iter().any(|u| !u.in_service)
}

/// Judge every entry and send those whose findings hash changed; hand `again` (when the
/// revision is new) the devices whose findings stay the same but that the worker must look at
/// again ([`act_again`]). Stops early when the receiver is gone. Runs on as many threads as
/// the machine has cores.
pub fn rejudge_all(
    cur: &Current,
    entries: Vec<(Arc<str>, Arc<Entry>)>,
    again: Option<&(dyn Fn(&str) + Sync)>,
    tx: &tokio::sync::mpsc::Sender<Changed>,
) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = entries.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for part in entries.chunks(chunk) {
            s.spawn(move || {
                for (id, e) in part {
                    let (hash, rendered) = findings_of(cur, &e.facts);
                    if hash_bits(&hash) as u64 == e.findings_hash() {
                        if let Some(again) = again
                            && act_again(e)
                        {
                            again(id);
                        }
                        continue;
                    }
                    // Rows (explanations, subjects as JSON) only for what changed.
                    let changed = Changed {
                        id: id.clone(),
                        structure_hash: hash_hex(e.structure_hash),
                        judgement: judgement(cur, hash, rendered),
                        had_findings: e.findings_hash() != 0,
                    };
                    if tx.blocking_send(changed).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// Another unit of the same kind, in service, that can take over the work of the unit in
/// `slot` (a second paper feeder): its slot.
pub fn takes_over(structure: &Structure, slot: &str) -> Option<String> {
    let kind = &structure.unit(slot)?.kind;
    structure
        .units()
        .find(|u| u.slot != slot && u.in_service && &u.kind == kind)
        .map(|u| u.slot.clone())
}
