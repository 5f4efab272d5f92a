//! Judgement: the findings of one device against a catalog, by indexed rule evaluation.
//!
//! Per unit: is its model known (and its revision), does the device model accept it, is another
//! unit present that it does not work with. Per active software on a unit in service: is the
//! product known, is the version a release, is the release made for this unit's model and
//! revision, are its requirements met and its conflicts absent among the other software. Every
//! lookup is by symbol in a hash map built when the catalog was compiled; no solving, no
//! allocation unless there are findings.

use std::borrow::Cow;

use crate::catalog::{Catalog, ReleaseId, Scope};
use crate::facts::{DeviceFacts, SoftwareFacts};
use crate::version::Version;
use crate::vocab::Sym;

/// What kind of incompatibility a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    DeviceUnit,
    UnitUnit,
    UnitSoftware,
    SoftwareSoftware,
    UnknownDeviceModel,
    UnknownUnitModel,
    UnknownSoftware,
}

impl FindingKind {
    pub const ALL: [FindingKind; 7] = [
        FindingKind::DeviceUnit,
        FindingKind::UnitUnit,
        FindingKind::UnitSoftware,
        FindingKind::SoftwareSoftware,
        FindingKind::UnknownDeviceModel,
        FindingKind::UnknownUnitModel,
        FindingKind::UnknownSoftware,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::DeviceUnit => "device_unit",
            FindingKind::UnitUnit => "unit_unit",
            FindingKind::UnitSoftware => "unit_software",
            FindingKind::SoftwareSoftware => "software_software",
            FindingKind::UnknownDeviceModel => "unknown_device_model",
            FindingKind::UnknownUnitModel => "unknown_unit_model",
            FindingKind::UnknownSoftware => "unknown_software",
        }
    }

    pub fn parse(s: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Software can fix it (a plan of versions), as opposed to hardware or the catalog.
    pub fn software_fixable(self) -> bool {
        matches!(
            self,
            FindingKind::UnitSoftware | FindingKind::SoftwareSoftware
        )
    }

    /// The catalog does not know something the device has.
    pub fn unknown(self) -> bool {
        matches!(
            self,
            FindingKind::UnknownDeviceModel
                | FindingKind::UnknownUnitModel
                | FindingKind::UnknownSoftware
        )
    }

    /// Only hardware can fix it (another unit model or revision).
    pub fn hardware(self) -> bool {
        matches!(self, FindingKind::DeviceUnit | FindingKind::UnitUnit)
    }
}

/// The catalog rule a finding breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    UnknownDeviceModel,
    UnknownUnitModel,
    UnknownRevision,
    /// The device model does not accept the unit model.
    NotAccepted,
    /// `units[0]`'s model does not work with `units[1]`'s.
    NotWith,
    UnknownProduct,
    /// The product is known, but from another maker.
    OtherMaker,
    UnknownRelease,
    /// The release is not made for the unit's model and revision.
    NotForUnit(ReleaseId),
    /// The release requires (constraint index) a product no unit in scope carries.
    Missing(ReleaseId, u16),
    /// The release requires (constraint index) a version range `software[1]` is outside of.
    Requires(ReleaseId, u16),
    /// The release conflicts with (constraint index) `software[1]`.
    Conflicts(ReleaseId, u16),
}

/// One incompatibility: indices into the device facts' units and software.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Finding {
    pub kind: FindingKind,
    pub rule: Rule,
    pub units: Vec<u16>,
    pub software: Vec<u16>,
}

impl Catalog {
    /// The findings of a device, in a stable order.
    pub fn judge(&self, d: &DeviceFacts) -> Vec<Finding> {
        let mut out = Vec::new();
        let device_model = match d.model.sym().and_then(|m| self.device_model(m)) {
            Some(dm) => Some(dm.name),
            None => {
                out.push(Finding {
                    kind: FindingKind::UnknownDeviceModel,
                    rule: Rule::UnknownDeviceModel,
                    units: vec![],
                    software: vec![],
                });
                None
            }
        };
        for (i, u) in d.units.iter().enumerate() {
            if !u.in_service {
                continue;
            }
            let i = i as u16;
            let Some(um) = u.model.sym().and_then(|m| self.unit_model(m)) else {
                out.push(unit_finding(
                    FindingKind::UnknownUnitModel,
                    Rule::UnknownUnitModel,
                    i,
                ));
                continue;
            };
            let rev_known = match &u.hw_revision {
                None => true,
                Some(r) => {
                    um.hw_revisions.is_empty()
                        || r.sym().is_some_and(|s| um.hw_revisions.contains(&s))
                }
            };
            if !rev_known {
                out.push(unit_finding(
                    FindingKind::UnknownUnitModel,
                    Rule::UnknownRevision,
                    i,
                ));
            }
            if let Some(dm) = device_model
                && !um.accepted_by.contains(&dm)
            {
                out.push(unit_finding(FindingKind::DeviceUnit, Rule::NotAccepted, i));
            }
            // Each pair once: only against units after this one.
            for (j, v) in d.units.iter().enumerate().skip(i as usize + 1) {
                if v.in_service && v.model.sym().is_some_and(|m| um.not_with.contains(&m)) {
                    out.push(Finding {
                        kind: FindingKind::UnitUnit,
                        rule: Rule::NotWith,
                        units: vec![i, j as u16],
                        software: vec![],
                    });
                }
            }
        }
        for (si, s) in d.live_software() {
            let si = si as u16;
            let Some(version) = &s.version else { continue };
            let unit = &d.units[s.unit as usize];
            let Some(product) = s.product.sym().and_then(|p| self.product(p)) else {
                out.push(sw_finding(
                    FindingKind::UnknownSoftware,
                    Rule::UnknownProduct,
                    s.unit,
                    si,
                ));
                continue;
            };
            if s.maker.sym() != Some(product.maker) {
                out.push(sw_finding(
                    FindingKind::UnknownSoftware,
                    Rule::OtherMaker,
                    s.unit,
                    si,
                ));
                continue;
            }
            let Some(rid) = version
                .sym()
                .and_then(|v| self.find_release(product.name, v))
            else {
                out.push(sw_finding(
                    FindingKind::UnknownSoftware,
                    Rule::UnknownRelease,
                    s.unit,
                    si,
                ));
                continue;
            };
            let release = self.release(rid);
            if let Some(model) = unit.model.sym()
                && self.unit_model(model).is_some()
                && !release.runs_on(model, unit.hw_revision.as_ref().and_then(|n| n.sym()))
            {
                out.push(sw_finding(
                    FindingKind::UnitSoftware,
                    Rule::NotForUnit(rid),
                    s.unit,
                    si,
                ));
            }
            for (ci, k) in release.requires.iter().enumerate() {
                let mut any = false;
                for (oi, other) in in_scope(d, s, self.maker_of(k.product), k.product, k.scope) {
                    any = true;
                    if let Some(v) = self.version_of(d, other)
                        && !k.range.contains(&*v)
                    {
                        out.push(pair_finding(
                            Rule::Requires(rid, ci as u16),
                            s,
                            si,
                            other,
                            oi,
                        ));
                    }
                }
                if !any {
                    out.push(sw_finding(
                        FindingKind::SoftwareSoftware,
                        Rule::Missing(rid, ci as u16),
                        s.unit,
                        si,
                    ));
                }
            }
            for (ci, k) in release.conflicts.iter().enumerate() {
                for (oi, other) in in_scope(d, s, self.maker_of(k.product), k.product, k.scope) {
                    if let Some(v) = self.version_of(d, other)
                        && k.range.contains(&*v)
                    {
                        out.push(pair_finding(
                            Rule::Conflicts(rid, ci as u16),
                            s,
                            si,
                            other,
                            oi,
                        ));
                    }
                }
            }
        }
        out.sort();
        out
    }

    fn maker_of(&self, product: Sym) -> Option<Sym> {
        self.product(product).map(|p| p.maker)
    }

    /// The version of installed software: the release's parsed version, or parsed now.
    pub(crate) fn version_of<'a>(
        &'a self,
        d: &DeviceFacts,
        s: &SoftwareFacts,
    ) -> Option<Cow<'a, Version>> {
        let version = s.version.as_ref()?;
        if let (Some(p), Some(v)) = (s.product.sym(), version.sym())
            && let Some(rid) = self.find_release(p, v)
        {
            return Some(Cow::Borrowed(&self.release(rid).version));
        }
        Version::parse(&d.text(&self.vocab, version))
            .ok()
            .map(Cow::Owned)
    }
}

/// Active software of `product` (from `maker`) on units in service within `scope` of `s`'s
/// unit.
fn in_scope<'d>(
    d: &'d DeviceFacts,
    s: &'d SoftwareFacts,
    maker: Option<Sym>,
    product: Sym,
    scope: Scope,
) -> impl Iterator<Item = (u16, &'d SoftwareFacts)> {
    d.live_software()
        .filter(move |(_, o)| {
            o.product.sym() == Some(product) && o.maker.sym() == maker && o.version.is_some()
        })
        .filter(move |(_, o)| match scope {
            Scope::AnyUnit => true,
            Scope::SameUnit => o.unit == s.unit,
            Scope::Kind(kind) => d.units[o.unit as usize].kind.sym() == Some(kind),
        })
        .map(|(i, o)| (i as u16, o))
}

fn unit_finding(kind: FindingKind, rule: Rule, unit: u16) -> Finding {
    Finding {
        kind,
        rule,
        units: vec![unit],
        software: vec![],
    }
}

fn sw_finding(kind: FindingKind, rule: Rule, unit: u16, software: u16) -> Finding {
    Finding {
        kind,
        rule,
        units: vec![unit],
        software: vec![software],
    }
}

fn pair_finding(rule: Rule, s: &SoftwareFacts, si: u16, other: &SoftwareFacts, oi: u16) -> Finding {
    let mut units = vec![s.unit];
    if other.unit != s.unit {
        units.push(other.unit);
    }
    Finding {
        kind: FindingKind::SoftwareSoftware,
        rule,
        units,
        software: vec![si, oi],
    }
}

#[cfg(test)]
mod kind_names {
    use super::FindingKind;

    #[test]
    fn the_wire_lists_every_finding_kind_by_its_name() {
        let names: Vec<&str> = FindingKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, fleetcare_wire::compat::FINDING_KINDS);
    }
}
