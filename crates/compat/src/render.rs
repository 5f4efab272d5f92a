//! Findings in words: the units and software involved, the catalog rule, a plain-language
//! explanation, and a stable key (a finding that still holds keeps its key).

use std::fmt::Write;

use crate::catalog::{Catalog, Constraint, Scope};
use crate::facts::DeviceFacts;
use crate::judge::{Finding, FindingKind, Rule};
use crate::version::describe_range;
use crate::vocab::Name;

/// A unit as a finding names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitLabel {
    pub slot: String,
    pub kind: String,
    pub model: String,
    pub hw_revision: String,
}

/// Software as a finding names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareLabel {
    pub slot: String,
    pub product: String,
    pub maker: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub kind: FindingKind,
    /// Stable identity: kind, rule and what is involved.
    pub key: String,
    /// The catalog rule, as the catalog states it.
    pub rule: String,
    pub units: Vec<UnitLabel>,
    pub software: Vec<SoftwareLabel>,
    pub explanation: String,
}

fn join(items: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = items.into_iter().collect();
    match v.len() {
        0 => "nothing".into(),
        1 => v[0].clone(),
        _ => format!("{} and {}", v[..v.len() - 1].join(", "), v[v.len() - 1]),
    }
}

impl Catalog {
    fn t(&self, d: &DeviceFacts, n: &Name) -> String {
        d.text(&self.vocab, n).to_string()
    }

    fn unit_label(&self, d: &DeviceFacts, i: u16) -> UnitLabel {
        let u = &d.units[i as usize];
        UnitLabel {
            slot: self.t(d, &u.slot),
            kind: self.t(d, &u.kind),
            model: self.t(d, &u.model),
            hw_revision: u
                .hw_revision
                .as_ref()
                .map(|r| self.t(d, r))
                .unwrap_or_default(),
        }
    }

    fn sw_label(&self, d: &DeviceFacts, i: u16) -> SoftwareLabel {
        let s = &d.software[i as usize];
        SoftwareLabel {
            slot: self.t(d, &d.units[s.unit as usize].slot),
            product: self.t(d, &s.product),
            maker: self.t(d, &s.maker),
            version: s.version.as_ref().map(|v| self.t(d, v)).unwrap_or_default(),
        }
    }

    fn scope_words(&self, k: &Constraint) -> String {
        match k.scope {
            Scope::AnyUnit => String::new(),
            Scope::SameUnit => " on the same unit".into(),
            Scope::Kind(kind) => format!(" on the {}", self.text(kind)),
        }
    }

    fn targets_words(&self, targets: &[crate::catalog::Target]) -> String {
        join(targets.iter().map(|t| {
            if t.hw_revisions.is_empty() {
                self.text(t.unit_model).to_string()
            } else {
                format!(
                    "{} rev {}",
                    self.text(t.unit_model),
                    t.hw_revisions
                        .iter()
                        .map(|r| self.text(*r).to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                )
            }
        }))
    }

    /// A finding in words.
    pub fn render(&self, d: &DeviceFacts, f: &Finding) -> Rendered {
        let units: Vec<UnitLabel> = f.units.iter().map(|&i| self.unit_label(d, i)).collect();
        let software: Vec<SoftwareLabel> =
            f.software.iter().map(|&i| self.sw_label(d, i)).collect();
        let device_model = self.t(d, &d.model);
        let unit = units.first();
        let sw = software.first();
        let unit_words = |u: &UnitLabel| {
            if u.hw_revision.is_empty() {
                format!("the {} {} in slot {}", u.kind, u.model, u.slot)
            } else {
                format!(
                    "the {} {} rev {} in slot {}",
                    u.kind, u.model, u.hw_revision, u.slot
                )
            }
        };
        let sw_words = |s: &SoftwareLabel| format!("{} {} on the {}", s.product, s.version, s.slot);
        let (rule, explanation) = match f.rule {
            Rule::UnknownDeviceModel => (
                format!("device_model {device_model} is not in the catalog"),
                format!(
                    "The device model {device_model} is not in the catalog, so its units cannot be checked against it."
                ),
            ),
            Rule::UnknownUnitModel => {
                let u = unit.expect("a unit finding names its unit");
                (
                    format!("unit_model {} is not in the catalog", u.model),
                    format!(
                        "{} is of a model the catalog does not know.",
                        cap(&unit_words(u))
                    ),
                )
            }
            Rule::UnknownRevision => {
                let u = unit.expect("a unit finding names its unit");
                let known = d.units[f.units[0] as usize]
                    .model
                    .sym()
                    .and_then(|m| self.unit_model(m))
                    .map(|um| join(um.hw_revisions.iter().map(|r| self.text(*r).to_string())))
                    .unwrap_or_default();
                (
                    format!(
                        "unit_model {} hw_revisions = [{}]",
                        u.model,
                        known.replace(" and ", ", ")
                    ),
                    format!(
                        "{} is of hardware revision {}, which the catalog does not list for {} (it lists {known}).",
                        cap(&unit_words(u)),
                        u.hw_revision,
                        u.model
                    ),
                )
            }
            Rule::NotAccepted => {
                let u = unit.expect("a unit finding names its unit");
                let accepted = d.units[f.units[0] as usize]
                    .model
                    .sym()
                    .and_then(|m| self.unit_model(m))
                    .map(|um| {
                        let mut v: Vec<String> = um
                            .accepted_by
                            .iter()
                            .map(|m| self.text(*m).to_string())
                            .collect();
                        v.sort();
                        v
                    })
                    .unwrap_or_default();
                (
                    format!(
                        "unit_model {} accepted_by = [{}]",
                        u.model,
                        accepted.join(", ")
                    ),
                    format!(
                        "{} does not fit device model {device_model}: the catalog lists the {} for {} only.",
                        cap(&unit_words(u)),
                        u.model,
                        join(accepted)
                    ),
                )
            }
            Rule::NotWith => {
                let (a, b) = (&units[0], &units[1]);
                (
                    format!("unit_model {} not_with {}", a.model, b.model),
                    format!(
                        "{} does not work with {} in the same device.",
                        cap(&unit_words(a)),
                        unit_words(b)
                    ),
                )
            }
            Rule::UnknownProduct => {
                let s = sw.expect("a software finding names its software");
                (
                    format!("product {} is not in the catalog", s.product),
                    format!(
                        "{} (by {}) is a product the catalog does not know.",
                        sw_words(s),
                        s.maker
                    ),
                )
            }
            Rule::OtherMaker => {
                let s = sw.expect("a software finding names its software");
                let maker = d.software[f.software[0] as usize]
                    .product
                    .sym()
                    .and_then(|p| self.product(p))
                    .map(|p| self.text(p.maker).to_string())
                    .unwrap_or_default();
                (
                    format!("product {} maker = {maker}", s.product),
                    format!(
                        "{} comes from {}, but the catalog knows {} from {maker} only.",
                        sw_words(s),
                        s.maker,
                        s.product
                    ),
                )
            }
            Rule::UnknownRelease => {
                let s = sw.expect("a software finding names its software");
                let known = d.software[f.software[0] as usize]
                    .product
                    .sym()
                    .and_then(|p| self.product(p))
                    .map(|p| {
                        let n = p.releases.len();
                        join(
                            p.releases[n.saturating_sub(3)..]
                                .iter()
                                .map(|r| self.release(*r).version.to_string()),
                        )
                    })
                    .unwrap_or_default();
                (
                    format!("release {} {} is not in the catalog", s.product, s.version),
                    format!(
                        "{} is not a release the catalog knows (the newest known: {known}).",
                        sw_words(s)
                    ),
                )
            }
            Rule::NotForUnit(rid) => {
                let r = self.release(rid);
                let (s, u) = (sw.expect("software"), unit.expect("unit"));
                (
                    format!(
                        "release {} {} targets {}",
                        s.product,
                        s.version,
                        self.targets_words(&r.targets)
                    ),
                    format!(
                        "{} is not made for {}: it runs on {} only.",
                        sw_words(s),
                        unit_words(u),
                        self.targets_words(&r.targets)
                    ),
                )
            }
            Rule::Missing(rid, ci) => {
                let k = &self.release(rid).requires[ci as usize];
                let s = sw.expect("software");
                let q = self.text(k.product);
                (
                    format!(
                        "release {} {} requires {q} {}{}",
                        s.product,
                        s.version,
                        describe_range(&k.range),
                        self.scope_words(k)
                    ),
                    format!(
                        "{} requires {q} {}{}, but no unit of this device carries {q}.",
                        sw_words(s),
                        describe_range(&k.range),
                        self.scope_words(k)
                    ),
                )
            }
            Rule::Requires(rid, ci) => {
                let k = &self.release(rid).requires[ci as usize];
                let (s, o) = (&software[0], &software[1]);
                (
                    format!(
                        "release {} {} requires {} {}{}",
                        s.product,
                        s.version,
                        o.product,
                        describe_range(&k.range),
                        self.scope_words(k)
                    ),
                    format!(
                        "{} requires {} {}{}, but the {} has {} {}.",
                        sw_words(s),
                        o.product,
                        describe_range(&k.range),
                        self.scope_words(k),
                        o.slot,
                        o.product,
                        o.version
                    ),
                )
            }
            Rule::Conflicts(rid, ci) => {
                let k = &self.release(rid).conflicts[ci as usize];
                let (s, o) = (&software[0], &software[1]);
                (
                    format!(
                        "release {} {} conflicts with {} {}{}",
                        s.product,
                        s.version,
                        o.product,
                        describe_range(&k.range),
                        self.scope_words(k)
                    ),
                    format!(
                        "{} does not work with {} {}, which the {} has ({}).",
                        sw_words(s),
                        o.product,
                        describe_range(&k.range),
                        o.slot,
                        o.version
                    ),
                )
            }
        };
        let mut key = format!("{}|{rule}|", f.kind.as_str());
        for u in &units {
            let _ = write!(key, "{}={}/{};", u.slot, u.model, u.hw_revision);
        }
        for s in &software {
            let _ = write!(key, "{}:{}={};", s.slot, s.product, s.version);
        }
        Rendered {
            kind: f.kind,
            key,
            rule,
            units,
            software,
            explanation,
        }
    }
}

impl Catalog {
    /// `switch ctl-firmware on the controller from 5.3.0 to 5.1.9 (the copy in its inactive slot)`.
    pub fn describe_step(&self, facts: &DeviceFacts, step: &crate::plan::Step) -> String {
        let slot = facts.text(&self.vocab, &facts.units[step.unit as usize].slot);
        let product = self.text(step.product);
        match (step.action, &step.from) {
            (crate::plan::Action::Switch, Some(from)) => format!(
                "switch {product} on the {slot} from {from} to {} (the copy in its inactive slot, no download)",
                step.to
            ),
            (_, Some(from)) => format!("install {product} {} on the {slot} (now {from})", step.to),
            (_, None) => format!("install {product} {} on the {slot}", step.to),
        }
    }

    /// A hardware change in words.
    pub fn describe_change(
        &self,
        facts: &DeviceFacts,
        change: &crate::advice::HardwareChange,
    ) -> String {
        let u = &facts.units[change.unit() as usize];
        let now = match &u.hw_revision {
            Some(r) => format!(
                "{} rev {}",
                facts.text(&self.vocab, &u.model),
                facts.text(&self.vocab, r)
            ),
            None => facts.text(&self.vocab, &u.model).to_string(),
        };
        match change {
            crate::advice::HardwareChange::OutOfService { .. } => format!(
                "take the {} ({now}) in slot {} out of service; the device works without it",
                facts.text(&self.vocab, &u.kind),
                facts.text(&self.vocab, &u.slot)
            ),
            crate::advice::HardwareChange::Replace {
                model, hw_revision, ..
            } => {
                let to = match hw_revision {
                    Some(r) => format!("{} rev {}", self.text(*model), self.text(*r)),
                    None => self.text(*model).to_string(),
                };
                format!(
                    "replace the {} in slot {} ({now}) with {to}",
                    facts.text(&self.vocab, &u.kind),
                    facts.text(&self.vocab, &u.slot)
                )
            }
        }
    }

    /// A recommendation in one paragraph: the hardware changes, then the software plan.
    pub fn describe_recommendation(
        &self,
        facts: &DeviceFacts,
        r: &crate::advice::Recommendation,
    ) -> String {
        let hw: Vec<String> = r
            .changes
            .iter()
            .map(|c| self.describe_change(facts, c))
            .collect();
        let mut s = cap(&join(hw));
        if r.steps.is_empty() {
            s.push_str("; no software change is needed.");
        } else {
            let sw: Vec<String> = r
                .steps
                .iter()
                .map(|st| self.describe_step(&r.after, st))
                .collect();
            s.push_str("; then ");
            s.push_str(&join(sw));
            s.push('.');
        }
        s
    }
}

/// Upper-case the first letter.
fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
