//! The software plan: a version for every installed product on every unit such that the
//! device satisfies the catalog, found by pubgrub.
//!
//! Packages are `(unit, product)` for the active software on units in service; the root (this
//! device) depends on all of them. A package's candidate versions are the releases made for its
//! unit's model and revision (on a unit of unknown model: only what it runs now), in the
//! order the policy prefers:
//! - minimal change: the installed version, the copy in the unit's inactive slot (a switch,
//!   no download), newer versions nearest first, then older ones nearest first;
//! - latest: newest first.
//!
//! A release's requirements become dependencies on the packages of the required product in
//! scope (or on an "absent" package with no versions when no unit carries it); its conflicts
//! become dependencies on the complement. The search stops at a deadline. A failure's
//! derivation tree is explained in words by [`Words`]. Every plan found is applied to the facts
//! and judged again before it is returned.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubgrub::{
    DefaultStringReporter, Dependencies, DependencyConstraints, DependencyProvider, Derived,
    External, Map, PackageResolutionStatistics, PubGrubError, ReportFormatter, Reporter, Term,
    resolve,
};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::catalog::{Catalog, ReleaseId, Scope};
use crate::facts::DeviceFacts;
use crate::judge::FindingKind;
use crate::version::{Ranges, Version, VersionRange, describe_range};
use crate::vocab::{Name, Sym};

/// Which versions a plan prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Keep installed versions where possible; switch to the inactive copy before downloading;
    /// then the nearest newer version.
    #[default]
    MinimalChange,
    /// The newest compatible version of everything.
    Latest,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::MinimalChange => "minimal",
            Policy::Latest => "latest",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "minimal" => Some(Policy::MinimalChange),
            "latest" => Some(Policy::Latest),
            _ => None,
        }
    }
}

/// How a unit gets the planned version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The version is the copy in the unit's inactive slot: activate it, no download.
    Switch,
    /// Download and install it.
    Install,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Switch => "switch",
            Action::Install => "install",
        }
    }
}

/// One change of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub unit: u16,
    pub product: Sym,
    /// The active version now (`None` on a replacement unit).
    pub from: Option<Version>,
    pub to: Version,
    pub release: ReleaseId,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanOutcome {
    /// The installed software already satisfies the catalog.
    Keep,
    /// Change these, and the device's software satisfies the catalog.
    Change(Vec<Step>),
    /// No software set works; why, in words.
    NoSolution(String),
    /// The search ran out of its time budget.
    OutOfTime,
}

/// A derivation of why no software set works, in one line: the releases that are missing
/// for the device's units (the crux of most derivations), or its conclusion. The whole chain
/// stays where there is room for it.
pub fn summarize(derivation: &str) -> String {
    const MARK: &str = "no release of ";
    let mut clauses: Vec<&str> = Vec::new();
    let mut rest = derivation;
    while let Some(i) = rest.find(MARK) {
        let from = &rest[i..];
        let Some(made) = from.find(" is made for ") else {
            break;
        };
        let end = from[made..].find(')').map_or(from.len(), |e| made + e + 1);
        let clause = &from[..end];
        if !clauses.contains(&clause) {
            clauses.push(clause);
        }
        rest = &from[end..];
    }
    if !clauses.is_empty() {
        return format!("no software set works: {}", clauses.join("; "));
    }
    let last = derivation
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(derivation);
    let mut one: String = last.chars().take(240).collect();
    if one.len() < last.len() {
        one.push('…');
    }
    one
}

/// Longest a plan search may take unless the caller says otherwise.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Pkg {
    Device,
    Sw {
        unit: u16,
        product: Sym,
        /// "ctl-firmware", "controller", "the controller (ctl-x2 rev B)"
        name: Arc<str>,
        slot: Arc<str>,
        unit_words: Arc<str>,
    },
    Absent {
        product: Sym,
        name: Arc<str>,
    },
}

impl fmt::Debug for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkg::Device => f.write_str("this device"),
            Pkg::Sw { name, slot, .. } => write!(f, "{name} on the {slot}"),
            Pkg::Absent { name, .. } => write!(f, "{name}"),
        }
    }
}

/// `ctl-firmware 5.3.0 on the controller`, `ctl-firmware >= 5.3 on the controller`.
fn at(p: &Pkg, r: &VersionRange) -> String {
    match p {
        Pkg::Sw { name, slot, .. } => {
            if r == &Ranges::full() {
                format!("{name} on the {slot}")
            } else {
                format!("{name} {} on the {slot}", describe_range(r))
            }
        }
        other => other.to_string(),
    }
}

struct Info {
    candidates: Vec<Version>,
}

#[derive(Debug, thiserror::Error)]
#[error("the plan search ran out of its time budget")]
pub struct OutOfTime;

struct Provider<'a> {
    catalog: &'a Catalog,
    facts: &'a DeviceFacts,
    info: FxHashMap<Pkg, Info>,
    /// Packages in a stable order (the root's dependencies).
    order: Vec<Pkg>,
    /// (package, depended-on package) pairs that come from a conflict, for the words.
    conflicts: RefCell<FxHashSet<(Pkg, Pkg)>>,
    deadline: Instant,
    /// The root's one version.
    root: Version,
}

impl Provider<'_> {
    fn packages_in_scope(&self, unit: u16, product: Sym, scope: Scope) -> Vec<&Pkg> {
        self.order
            .iter()
            .filter(|p| match p {
                Pkg::Sw {
                    unit: u,
                    product: q,
                    ..
                } => {
                    *q == product
                        && match scope {
                            Scope::AnyUnit => true,
                            Scope::SameUnit => *u == unit,
                            Scope::Kind(k) => self.facts.units[*u as usize].kind.sym() == Some(k),
                        }
                }
                _ => false,
            })
            .collect()
    }
}

impl DependencyProvider for Provider<'_> {
    type P = Pkg;
    type V = Version;
    type VS = VersionRange;
    type Priority = (u32, Reverse<usize>);
    type M = String;
    type Err = OutOfTime;

    fn prioritize(
        &self,
        package: &Pkg,
        range: &VersionRange,
        stats: &PackageResolutionStatistics,
    ) -> Self::Priority {
        let n = self.info.get(package).map_or(0, |i| {
            i.candidates.iter().filter(|v| range.contains(*v)).count()
        });
        (stats.conflict_count(), Reverse(n))
    }

    fn choose_version(
        &self,
        package: &Pkg,
        range: &VersionRange,
    ) -> Result<Option<Version>, OutOfTime> {
        if *package == Pkg::Device {
            return Ok(Some(self.root.clone()).filter(|v| range.contains(v)));
        }
        Ok(self
            .info
            .get(package)
            .and_then(|i| i.candidates.iter().find(|v| range.contains(*v)).cloned()))
    }

    fn get_dependencies(
        &self,
        package: &Pkg,
        version: &Version,
    ) -> Result<Dependencies<Pkg, VersionRange, String>, OutOfTime> {
        let deps: Vec<(Pkg, VersionRange)> = match package {
            Pkg::Device => self
                .order
                .iter()
                .map(|p| (p.clone(), Ranges::full()))
                .collect(),
            Pkg::Absent { .. } => Vec::new(),
            Pkg::Sw { unit, product, .. } => {
                let release = self
                    .catalog
                    .vocab
                    .get(version.as_str())
                    .and_then(|v| self.catalog.find_release(*product, v));
                let Some(rid) = release else {
                    // A version the catalog does not know: nothing is known of its needs.
                    return Ok(Dependencies::Available(DependencyConstraints::default()));
                };
                let r = self.catalog.release(rid);
                let mut merged: Vec<(Pkg, VersionRange)> = Vec::new();
                let mut add =
                    |p: Pkg, range: VersionRange| match merged.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, existing)) => *existing = existing.intersection(&range),
                        None => merged.push((p, range)),
                    };
                for k in &r.requires {
                    let targets = self.packages_in_scope(*unit, k.product, k.scope);
                    if targets.is_empty() {
                        add(
                            Pkg::Absent {
                                product: k.product,
                                name: self.catalog.text(k.product),
                            },
                            k.range.clone(),
                        );
                    }
                    for t in targets {
                        add(t.clone(), k.range.clone());
                    }
                }
                for k in &r.conflicts {
                    for t in self.packages_in_scope(*unit, k.product, k.scope) {
                        self.conflicts
                            .borrow_mut()
                            .insert((package.clone(), t.clone()));
                        add(t.clone(), k.range.complement());
                    }
                }
                merged
            }
        };
        Ok(Dependencies::Available(deps.into_iter().collect()))
    }

    fn should_cancel(&self) -> Result<(), OutOfTime> {
        if Instant::now() >= self.deadline {
            Err(OutOfTime)
        } else {
            Ok(())
        }
    }
}

/// The failure's derivation, in words a service engineer reads.
pub(crate) struct Words<'a> {
    conflicts: &'a FxHashSet<(Pkg, Pkg)>,
}

impl ReportFormatter<Pkg, VersionRange, String> for Words<'_> {
    type Output = String;

    fn format_external(&self, e: &External<Pkg, VersionRange, String>) -> String {
        match e {
            External::NotRoot(p, _) => format!("the plan is for {p}"),
            External::NoVersions(Pkg::Absent { name, .. }, _) => {
                format!("no unit of this device carries {name}")
            }
            External::NoVersions(
                Pkg::Sw {
                    name, unit_words, ..
                },
                r,
            ) => {
                if r == &Ranges::full() {
                    format!("no release of {name} is made for {unit_words}")
                } else if let Some(only) = r.complement().as_singleton() {
                    format!("no release of {name} other than {only} is made for {unit_words}")
                } else {
                    format!(
                        "no release of {name} {} is made for {unit_words}",
                        describe_range(r)
                    )
                }
            }
            External::NoVersions(p, r) => format!("{} is not available", at(p, r)),
            External::FromDependencyOf(Pkg::Device, _, q, _) => {
                format!("this device carries {q}")
            }
            External::FromDependencyOf(p, r1, q, r2) => {
                if self.conflicts.contains(&(p.clone(), q.clone())) {
                    format!(
                        "{} does not work with {}",
                        at(p, r1),
                        at(q, &r2.complement())
                    )
                } else if let Pkg::Absent { name, .. } = q {
                    format!("{} requires {name} {}", at(p, r1), describe_range(r2))
                } else {
                    format!("{} requires {}", at(p, r1), at(q, r2))
                }
            }
            External::Custom(p, r, m) => format!("{}: {m}", at(p, r)),
        }
    }

    fn format_terms(&self, terms: &Map<Pkg, Term<VersionRange>>) -> String {
        let v: Vec<(&Pkg, &Term<VersionRange>)> = terms.iter().collect();
        match v.as_slice() {
            [] => "no set of software versions works for this device".into(),
            [(Pkg::Device, Term::Positive(_))] => {
                "no set of software versions works for this device".into()
            }
            [(p, Term::Positive(r))] => format!("{} cannot be used", at(p, r)),
            [(p, Term::Negative(r))] => format!("{p} must be {}", describe_range(r)),
            [(p1, Term::Positive(r1)), (p2, Term::Negative(r2))]
            | [(p2, Term::Negative(r2)), (p1, Term::Positive(r1))] => self.format_external(
                &External::FromDependencyOf((*p1).clone(), r1.clone(), (*p2).clone(), r2.clone()),
            ),
            slice => {
                let parts: Vec<String> = slice
                    .iter()
                    .map(|(p, t)| match t {
                        Term::Positive(r) => at(p, r),
                        Term::Negative(r) => format!("{p} outside {}", describe_range(r)),
                    })
                    .collect();
                format!("{} cannot be used together", parts.join(" and "))
            }
        }
    }

    fn explain_both_external(
        &self,
        e1: &External<Pkg, VersionRange, String>,
        e2: &External<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!(
            "Because {} and {}, {}.",
            self.format_external(e1),
            self.format_external(e2),
            self.format_terms(terms)
        )
    }

    fn explain_both_ref(
        &self,
        id1: usize,
        d1: &Derived<Pkg, VersionRange, String>,
        id2: usize,
        d2: &Derived<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!(
            "Because {} ({id1}) and {} ({id2}), {}.",
            self.format_terms(&d1.terms),
            self.format_terms(&d2.terms),
            self.format_terms(terms)
        )
    }

    fn explain_ref_and_external(
        &self,
        id: usize,
        d: &Derived<Pkg, VersionRange, String>,
        e: &External<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!(
            "Because {} ({id}) and {}, {}.",
            self.format_terms(&d.terms),
            self.format_external(e),
            self.format_terms(terms)
        )
    }

    fn and_explain_external(
        &self,
        e: &External<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!(
            "And because {}, {}.",
            self.format_external(e),
            self.format_terms(terms)
        )
    }

    fn and_explain_ref(
        &self,
        id: usize,
        d: &Derived<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!(
            "And because {} ({id}), {}.",
            self.format_terms(&d.terms),
            self.format_terms(terms)
        )
    }

    fn and_explain_prior_and_external(
        &self,
        prior: &External<Pkg, VersionRange, String>,
        e: &External<Pkg, VersionRange, String>,
        terms: &Map<Pkg, Term<VersionRange>>,
    ) -> String {
        format!(
            "And because {} and {}, {}.",
            self.format_external(prior),
            self.format_external(e),
            self.format_terms(terms)
        )
    }
}

impl Catalog {
    /// The candidate versions of one product on one unit, in the policy's order.
    fn candidates(
        &self,
        facts: &DeviceFacts,
        unit: u16,
        product: Sym,
        installed: Option<&Version>,
        policy: Policy,
    ) -> Vec<Version> {
        let u = &facts.units[unit as usize];
        let model = u.model.sym().filter(|m| self.unit_model(*m).is_some());
        let Some(model) = model else {
            // A unit the catalog does not know keeps what it runs.
            return installed.cloned().into_iter().collect();
        };
        let revision = u.hw_revision.as_ref().and_then(|n| n.sym());
        let mut known: Vec<Version> = self
            .product(product)
            .map(|p| {
                p.releases
                    .iter()
                    .map(|r| self.release(*r))
                    .filter(|r| r.runs_on(model, revision))
                    .map(|r| r.version.clone())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(v) = installed
            && !known.contains(v)
            && self
                .vocab
                .get(v.as_str())
                .and_then(|s| self.find_release(product, s))
                .is_none()
        {
            // Installed, but not a release the catalog knows: may stay if nothing forbids it.
            known.push(v.clone());
        }
        known.sort();
        let inactive = facts
            .inactive_copy(unit, &Name::of(product))
            .and_then(|s| self.version_of(facts, s))
            .map(|v| v.into_owned())
            .filter(|v| {
                self.vocab
                    .get(v.as_str())
                    .and_then(|s| self.find_release(product, s))
                    .is_some_and(|r| self.release(r).switchable)
            });
        match (policy, installed) {
            (Policy::MinimalChange, Some(now)) => {
                let mut order = Vec::with_capacity(known.len());
                if known.contains(now) {
                    order.push(now.clone());
                }
                if let Some(i) = inactive.filter(|i| known.contains(i) && i != now) {
                    order.push(i);
                }
                let first = order.clone();
                order.extend(
                    known
                        .iter()
                        .filter(|v| *v > now && !first.contains(v))
                        .cloned(),
                );
                order.extend(
                    known
                        .iter()
                        .rev()
                        .filter(|v| *v < now && !first.contains(v))
                        .cloned(),
                );
                order
            }
            _ => {
                known.reverse();
                known
            }
        }
    }

    /// Plan the software of a device (see the module documentation).
    pub fn plan(&self, facts: &DeviceFacts, policy: Policy, budget: Duration) -> PlanOutcome {
        self.plan_pinned(facts, policy, budget, &[])
    }

    /// Plan with some products held to one version each (a rollout's release): the plan then
    /// carries whatever else the device needs for them, or says why they cannot be had.
    pub fn plan_pinned(
        &self,
        facts: &DeviceFacts,
        policy: Policy,
        budget: Duration,
        pins: &[(Sym, Version)],
    ) -> PlanOutcome {
        let deadline = Instant::now() + budget;
        let mut info = FxHashMap::default();
        let mut order = Vec::new();
        for (_, s) in facts.live_software() {
            let Some(product) = s.product.sym().filter(|p| {
                self.product(*p)
                    .is_some_and(|pr| s.maker.sym() == Some(pr.maker))
            }) else {
                continue; // unknown to the catalog: nothing constrains it
            };
            let u = &facts.units[s.unit as usize];
            let installed = self.version_of(facts, s).map(|v| v.into_owned());
            let mut candidates =
                self.candidates(facts, s.unit, product, installed.as_ref(), policy);
            if let Some((_, pin)) = pins.iter().find(|(p, _)| *p == product) {
                if !candidates.contains(pin) {
                    return PlanOutcome::NoSolution(format!(
                        "{} {pin} is not a release the catalog knows for the {} ({})",
                        self.text(product),
                        facts.text(&self.vocab, &u.slot),
                        facts.text(&self.vocab, &u.model),
                    ));
                }
                candidates.retain(|c| c == pin);
            }
            let unit_words = match &u.hw_revision {
                Some(r) => format!(
                    "the {} ({} rev {})",
                    facts.text(&self.vocab, &u.slot),
                    facts.text(&self.vocab, &u.model),
                    facts.text(&self.vocab, r)
                ),
                None => format!(
                    "the {} ({})",
                    facts.text(&self.vocab, &u.slot),
                    facts.text(&self.vocab, &u.model)
                ),
            };
            let pkg = Pkg::Sw {
                unit: s.unit,
                product,
                name: self.text(product),
                slot: facts.text(&self.vocab, &u.slot),
                unit_words: unit_words.into(),
            };
            if info.insert(pkg.clone(), Info { candidates }).is_none() {
                order.push(pkg);
            }
        }
        let root = Version::parse("1").expect("a valid version");
        let provider = Provider {
            catalog: self,
            facts,
            info,
            order,
            conflicts: RefCell::new(FxHashSet::default()),
            deadline,
            root: root.clone(),
        };
        let solution = match resolve(&provider, Pkg::Device, root) {
            Ok(s) => s,
            Err(PubGrubError::NoSolution(tree)) => {
                // Not collapsed: "no release … is made for this unit" is often the crux.
                let conflicts = provider.conflicts.borrow();
                let words = Words {
                    conflicts: &conflicts,
                };
                return PlanOutcome::NoSolution(DefaultStringReporter::report_with_formatter(
                    &tree, &words,
                ));
            }
            Err(_) => return PlanOutcome::OutOfTime,
        };
        let mut steps = Vec::new();
        for (pkg, to) in solution.iter() {
            let Pkg::Sw { unit, product, .. } = pkg else {
                continue;
            };
            let sw = facts
                .live_software()
                .find(|(_, s)| s.unit == *unit && s.product.sym() == Some(*product))
                .map(|(_, s)| s);
            let from = sw
                .and_then(|s| self.version_of(facts, s))
                .map(|v| v.into_owned());
            if from.as_ref() == Some(to) {
                continue;
            }
            let Some(release) = self
                .vocab
                .get(to.as_str())
                .and_then(|v| self.find_release(*product, v))
            else {
                continue;
            };
            let switch = facts
                .inactive_copy(*unit, &Name::of(*product))
                .and_then(|s| self.version_of(facts, s))
                .is_some_and(|v| &*v == to)
                && self.release(release).switchable;
            steps.push(Step {
                unit: *unit,
                product: *product,
                from,
                to: to.clone(),
                release,
                action: if switch {
                    Action::Switch
                } else {
                    Action::Install
                },
            });
        }
        steps.sort_by_key(|s| (s.unit, self.text(s.product)));
        // The solver's model and the judge's rules are the same constraints; check it anyway,
        // so that a plan never violates the catalog.
        if !self.software_compatible(&self.apply(facts, &steps)) {
            return PlanOutcome::NoSolution(
                "the planner found versions the judgement refuses; this is a defect, please \
                 report it with the catalog and the device's structure"
                    .into(),
            );
        }
        if steps.is_empty() {
            return PlanOutcome::Keep;
        }
        PlanOutcome::Change(steps)
    }

    /// The facts after a plan: planned versions active; a switched or replaced version moves to
    /// the inactive slot where the unit has one.
    pub fn apply(&self, facts: &DeviceFacts, steps: &[Step]) -> DeviceFacts {
        let mut after = facts.clone();
        for step in steps {
            let to = Name::of(self.vocab.intern(step.to.as_str()));
            let product = Name::of(step.product);
            let active = after
                .software
                .iter()
                .position(|s| s.unit == step.unit && s.active && s.product == product);
            let inactive = after
                .software
                .iter()
                .position(|s| s.unit == step.unit && !s.active && s.product == product);
            let old = active.and_then(|i| after.software[i].version);
            if let Some(i) = active {
                after.software[i].version = Some(to);
            }
            if let (Some(i), Some(old)) = (inactive, old) {
                after.software[i].version = Some(old);
            }
        }
        after
    }

    /// `true` when the facts have no finding software could fix.
    pub fn software_compatible(&self, facts: &DeviceFacts) -> bool {
        !self.judge(facts).iter().any(|f| f.kind.software_fixable())
    }
}

/// Findings software could fix, among these.
pub fn has_software_findings(kinds: impl IntoIterator<Item = FindingKind>) -> bool {
    kinds.into_iter().any(FindingKind::software_fixable)
}

#[cfg(test)]
mod summary_tests {
    use super::summarize;

    #[test]
    fn a_derivation_in_one_line_names_the_missing_releases() {
        let chain = "Because no release of bolt-os > 11.1.0 is made for the controller (bolt-ctl-9 rev D) and bolt-os 11.1.0 on the controller requires bolt-engine-fw >= 6.3 on the engine, bolt-os >= 11.1.0 on the controller requires bolt-engine-fw >= 6.3 on the engine.\nAnd because no release of bolt-engine-fw >= 6.3 is made for the engine (bolt-eng-c30 rev A) and x, y.\nAnd because no release of bolt-os > 11.1.0 is made for the controller (bolt-ctl-9 rev D), no set of software versions works for this device.";
        assert_eq!(
            summarize(chain),
            "no software set works: no release of bolt-os > 11.1.0 is made for the controller \
             (bolt-ctl-9 rev D); no release of bolt-engine-fw >= 6.3 is made for the engine \
             (bolt-eng-c30 rev A)"
        );
        assert_eq!(
            summarize(
                "ctl-firmware 9.9 is not a release the catalog knows for the controller (ctl-x2)"
            ),
            "ctl-firmware 9.9 is not a release the catalog knows for the controller (ctl-x2)"
        );
        let long = "x".repeat(300);
        assert_eq!(summarize(&long).chars().count(), 241);
        assert!(!summarize(&long).contains('\n'));
    }
}
