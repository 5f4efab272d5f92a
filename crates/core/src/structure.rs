//! Device identities and structures, validated; and the diff of two structures.
//!
//! A [`Structure`] is what a device is made of: units by slot, each with its software. It is
//! built only from a validated wire report, so everything downstream (store, judgement,
//! history) can rely on: slots unique, serials unique within the device, one active and at
//! most one inactive copy of a (product, maker) per unit, every name within
//! [`limits`](crate::limits), operating values finite.

use std::collections::BTreeMap;
use std::fmt;

use fleetcare_wire::operator::{Change, SupplyRef, UnitRef};
use fleetcare_wire::{Software, Supply, Unit};
use sha2::{Digest, Sha256};

use crate::limits::{
    MAX_NAME_LEN, MAX_OPERATING_ENTRIES, MAX_SOFTWARE_PER_UNIT, MAX_SUPPLIES, MAX_UNITS,
};

/// Every problem found in one input, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct ValidationError {
    pub problems: Vec<String>,
}

impl ValidationError {
    pub fn one(problem: impl Into<String>) -> Self {
        ValidationError {
            problems: vec![problem.into()],
        }
    }
}

/// A device id (body serial): 1–64 of `A-Z a-z 0-9 . _ : -`, starting with a letter or digit.
/// It appears in URLs and file names, so nothing else is allowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(s: &str) -> Result<DeviceId, ValidationError> {
        let mut problems = Vec::new();
        check_device_id(s, "device_id", &mut problems);
        if problems.is_empty() {
            Ok(DeviceId(s.to_owned()))
        } else {
            Err(ValidationError { problems })
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_device_id(s: &str, field: &str, problems: &mut Vec<String>) {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        problems.push(format!(
            "{field}: must be 1 to {MAX_NAME_LEN} characters, got {}",
            s.chars().count()
        ));
    } else if !s.chars().all(ok_char) || !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        problems.push(format!(
            "{field}: {s:?} may hold only letters, digits and . _ : - and must start with a letter or digit"
        ));
    }
}

/// A name (model, slot, serial, version, …): 1–64 characters (0 allowed where `may_be_empty`),
/// no control characters, no surrounding whitespace.
/// (`field` is only formatted when there is a problem: this runs for every name of every
/// report.)
fn check_name(
    s: &str,
    field: impl FnOnce() -> String,
    may_be_empty: bool,
    problems: &mut Vec<String>,
) {
    let n = s.chars().count();
    if n > MAX_NAME_LEN {
        problems.push(format!(
            "{}: longer than {MAX_NAME_LEN} characters ({n})",
            field()
        ));
    } else if n == 0 && !may_be_empty {
        problems.push(format!("{}: must not be empty", field()));
    } else if s.chars().any(char::is_control) {
        problems.push(format!("{}: contains control characters", field()));
    } else if s.trim() != s {
        problems.push(format!(
            "{}: {s:?} has leading or trailing whitespace",
            field()
        ));
    }
}

/// What a device is made of: its model and its units by slot; software sorted within each unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure {
    model: String,
    units: BTreeMap<String, Unit>,
    /// The supplies by slot, as what they are (a cartridge's serial and part number), not
    /// how full: a level is operating info.
    supplies: BTreeMap<String, SupplyRef>,
}

impl Structure {
    /// Validate a device model and its units. Every problem is reported, not just the first.
    pub fn new(model: &str, units: Vec<Unit>) -> Result<Structure, ValidationError> {
        let mut problems = Vec::new();
        check_name(model, || "model".into(), false, &mut problems);
        if units.len() > MAX_UNITS {
            problems.push(format!(
                "units: {} units, at most {MAX_UNITS} allowed",
                units.len()
            ));
            return Err(ValidationError { problems });
        }
        let mut by_slot = BTreeMap::new();
        let mut serials = BTreeMap::new();
        for (i, mut unit) in units.into_iter().enumerate() {
            let at = || format!("units[{i}]");
            check_name(
                &unit.slot,
                || format!("{}.slot", at()),
                false,
                &mut problems,
            );
            check_name(
                &unit.kind,
                || format!("{}.kind", at()),
                false,
                &mut problems,
            );
            check_name(
                &unit.model,
                || format!("{}.model", at()),
                false,
                &mut problems,
            );
            check_name(
                &unit.serial,
                || format!("{}.serial", at()),
                false,
                &mut problems,
            );
            check_name(
                &unit.hw_revision,
                || format!("{}.hw_revision", at()),
                true,
                &mut problems,
            );
            if unit.software.len() > MAX_SOFTWARE_PER_UNIT {
                problems.push(format!(
                    "{}.software: {} entries, at most {MAX_SOFTWARE_PER_UNIT} allowed",
                    at(),
                    unit.software.len()
                ));
                continue;
            }
            let mut seen = BTreeMap::new();
            for (j, sw) in unit.software.iter().enumerate() {
                let sat = || format!("{}.software[{j}]", at());
                check_name(
                    &sw.product,
                    || format!("{}.product", sat()),
                    false,
                    &mut problems,
                );
                check_name(
                    &sw.maker,
                    || format!("{}.maker", sat()),
                    false,
                    &mut problems,
                );
                check_name(
                    &sw.version,
                    || format!("{}.version", sat()),
                    false,
                    &mut problems,
                );
                if seen
                    .insert((&sw.product, &sw.maker, sw.active), j)
                    .is_some()
                {
                    problems.push(format!(
                        "{}: a second {} copy of {}/{} on slot {:?}",
                        sat(),
                        if sw.active { "active" } else { "inactive" },
                        sw.maker,
                        sw.product,
                        unit.slot
                    ));
                }
            }
            if let Some(prev) = serials.insert(unit.serial.clone(), unit.slot.clone()) {
                problems.push(format!(
                    "{}.serial: {:?} is also the serial of slot {prev:?}; serials identify units",
                    at(),
                    unit.serial
                ));
            }
            unit.software.sort_by(|a, b| {
                (&a.product, &a.maker, !a.active).cmp(&(&b.product, &b.maker, !b.active))
            });
            if by_slot.contains_key(&unit.slot) {
                problems.push(format!(
                    "{}.slot: {:?} appears twice; slots identify units",
                    at(),
                    unit.slot
                ));
            } else {
                by_slot.insert(unit.slot.clone(), unit);
            }
        }
        if problems.is_empty() {
            Ok(Structure {
                model: model.to_owned(),
                units: by_slot,
                supplies: BTreeMap::new(),
            })
        } else {
            Err(ValidationError { problems })
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// The structure with these supplies (validated: see [`check_supplies`]).
    pub fn with_supplies(mut self, supplies: &[Supply]) -> Result<Structure, ValidationError> {
        check_supplies(supplies)?;
        self.supplies = supplies
            .iter()
            .map(|s| (s.slot.clone(), supply_ref(s)))
            .collect();
        Ok(self)
    }

    /// The supplies by slot, as what they are.
    pub fn supplies(&self) -> &BTreeMap<String, SupplyRef> {
        &self.supplies
    }

    /// The units, by slot (their software sorted), taken out of the structure.
    pub fn into_units(self) -> Vec<Unit> {
        self.units.into_values().collect()
    }

    pub fn units(&self) -> impl ExactSizeIterator<Item = &Unit> {
        self.units.values()
    }

    pub fn unit(&self, slot: &str) -> Option<&Unit> {
        self.units.get(slot)
    }

    /// The stored form: JSON of the units, ordered by slot.
    pub fn to_json(&self) -> String {
        let units: Vec<&Unit> = self.units.values().collect();
        serde_json::to_string(&units).expect("units always serialize")
    }

    /// Read back what [`Structure::to_json`] wrote (validated again).
    pub fn from_json(model: &str, json: &str) -> Result<Structure, ValidationError> {
        let units: Vec<Unit> = serde_json::from_str(json)
            .map_err(|e| ValidationError::one(format!("stored structure: {e}")))?;
        Structure::new(model, units)
    }

    /// A fingerprint of model and units: equal structures, equal fingerprints.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.model.as_bytes());
        h.update([0]);
        h.update(self.to_json().as_bytes());
        // Supplies count only where there are any (a structure without stays what it was).
        if !self.supplies.is_empty() {
            h.update([0]);
            h.update(
                serde_json::to_string(&self.supplies)
                    .expect("supplies serialize")
                    .as_bytes(),
            );
        }
        crate::secret::hex(&h.finalize()[..16])
    }
}

/// The largest magnitude an operating value may have: 2^53, beyond which a counter is no
/// longer exact as a JSON number (and as an `f64`).
pub const MAX_OPERATING_VALUE: f64 = 9_007_199_254_740_992.0;

/// Validate operating info: at most [`MAX_OPERATING_ENTRIES`] names, each a valid name, values
/// finite and at most [`MAX_OPERATING_VALUE`] in magnitude.
pub fn check_operating(operating: &BTreeMap<String, f64>) -> Result<(), ValidationError> {
    let mut problems = Vec::new();
    if operating.len() > MAX_OPERATING_ENTRIES {
        problems.push(format!(
            "operating: {} entries, at most {MAX_OPERATING_ENTRIES} allowed",
            operating.len()
        ));
    } else {
        for (k, v) in operating {
            check_name(k, || "operating key".into(), false, &mut problems);
            if !v.is_finite() {
                problems.push(format!("operating.{k}: must be a finite number"));
            } else if v.abs() > MAX_OPERATING_VALUE {
                problems.push(format!(
                    "operating.{k}: {v} is beyond 2^53, where counters stop being exact"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { problems })
    }
}

/// Validate a device's identity (id and model), reporting both problems at once.
pub fn validate_identity(device_id: &str, model: &str) -> Result<DeviceId, ValidationError> {
    let mut problems = Vec::new();
    check_device_id(device_id, "device_id", &mut problems);
    check_name(model, || "model".into(), false, &mut problems);
    if problems.is_empty() {
        Ok(DeviceId(device_id.to_owned()))
    } else {
        Err(ValidationError { problems })
    }
}

/// Validate supplies: at most [`MAX_SUPPLIES`], each slot once and a valid name (as are a
/// color, part number and serial), `level_pct` from 0 to 100, `max` above 0 and `level` from 0
/// to `max`. Every problem is reported.
pub fn check_supplies(supplies: &[Supply]) -> Result<(), ValidationError> {
    let mut problems = Vec::new();
    if supplies.len() > MAX_SUPPLIES {
        problems.push(format!(
            "supplies: {} entries, at most {MAX_SUPPLIES} allowed",
            supplies.len()
        ));
        return Err(ValidationError { problems });
    }
    let mut slots = std::collections::BTreeSet::new();
    for (i, s) in supplies.iter().enumerate() {
        let at = |f: &str| format!("supplies[{i}].{f}");
        check_name(&s.slot, || at("slot"), false, &mut problems);
        if !slots.insert(&s.slot) {
            problems.push(format!("{}: {:?} appears twice", at("slot"), s.slot));
        }
        for (f, v) in [
            ("color", &s.color),
            ("part_number", &s.part_number),
            ("serial", &s.serial),
        ] {
            if let Some(v) = v {
                check_name(v, || at(f), false, &mut problems);
            }
        }
        if let Some(p) = s.level_pct
            && !(p.is_finite() && (0.0..=100.0).contains(&p))
        {
            problems.push(format!("{}: {p} is not from 0 to 100", at("level_pct")));
        }
        if s.max.is_some_and(|m| m <= 0) {
            problems.push(format!("{}: must be above 0", at("max")));
        }
        if let Some(l) = s.level
            && (l < 0 || s.max.is_some_and(|m| m > 0 && l > m))
        {
            problems.push(format!(
                "{}: {l} is not from 0 to max ({})",
                at("level"),
                s.max.map_or("none".into(), |m| m.to_string())
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { problems })
    }
}

fn supply_ref(s: &Supply) -> SupplyRef {
    SupplyRef {
        kind: s.kind,
        color: s.color.clone(),
        part_number: s.part_number.clone(),
        serial: s.serial.clone(),
    }
}

/// Validate a device id, model and units together, reporting every problem at once.
pub fn validate_report(
    device_id: &str,
    model: &str,
    units: Vec<Unit>,
    operating: &BTreeMap<String, f64>,
) -> Result<(DeviceId, Structure), ValidationError> {
    let mut problems = Vec::new();
    check_device_id(device_id, "device_id", &mut problems);
    let structure = Structure::new(model, units).map_err(|e| problems.extend(e.problems));
    if let Err(e) = check_operating(operating) {
        problems.extend(e.problems);
    }
    match structure {
        Ok(s) if problems.is_empty() => Ok((DeviceId(device_id.to_owned()), s)),
        _ => Err(ValidationError { problems }),
    }
}

fn unit_ref(u: &Unit) -> UnitRef {
    UnitRef {
        kind: u.kind.clone(),
        model: u.model.clone(),
        serial: u.serial.clone(),
        hw_revision: u.hw_revision.clone(),
        software: u.software.clone(),
    }
}

/// The changes from `old` (none: the device's first report) to `new`, ordered by slot:
/// units added, removed, replaced (same slot, new serial) or changed (same serial, other
/// kind/model/revision), and per kept unit the software added, removed or changed version.
pub fn diff(old: Option<&Structure>, new: &Structure) -> Vec<Change> {
    let empty = BTreeMap::new();
    let old_units = old.map_or(&empty, |s| &s.units);
    let mut out = Vec::new();
    let slots: std::collections::BTreeSet<&String> =
        old_units.keys().chain(new.units.keys()).collect();
    for slot in slots {
        match (old_units.get(slot), new.units.get(slot)) {
            (None, Some(n)) => out.push(Change::UnitAdded {
                slot: slot.clone(),
                unit: unit_ref(n),
            }),
            (Some(o), None) => out.push(Change::UnitRemoved {
                slot: slot.clone(),
                unit: unit_ref(o),
            }),
            (Some(o), Some(n)) if o.serial != n.serial => out.push(Change::UnitReplaced {
                slot: slot.clone(),
                old: unit_ref(o),
                new: unit_ref(n),
            }),
            (Some(o), Some(n)) => {
                if (&o.kind, &o.model, &o.hw_revision) != (&n.kind, &n.model, &n.hw_revision) {
                    out.push(Change::UnitChanged {
                        slot: slot.clone(),
                        old: unit_ref(o),
                        new: unit_ref(n),
                    });
                }
                if o.in_service != n.in_service {
                    out.push(Change::UnitServiceChanged {
                        slot: slot.clone(),
                        serial: n.serial.clone(),
                        in_service: n.in_service,
                    });
                }
                diff_software(slot, &o.software, &n.software, &mut out);
            }
            (None, None) => {}
        }
    }
    let empty = BTreeMap::new();
    let old_supplies = old.map_or(&empty, |s| &s.supplies);
    let slots: std::collections::BTreeSet<&String> =
        old_supplies.keys().chain(new.supplies.keys()).collect();
    for slot in slots {
        let slot = slot.clone();
        match (old_supplies.get(&slot), new.supplies.get(&slot)) {
            (None, Some(n)) => out.push(Change::SupplyAdded {
                slot,
                supply: n.clone(),
            }),
            (Some(o), None) => out.push(Change::SupplyRemoved {
                slot,
                supply: o.clone(),
            }),
            (Some(o), Some(n)) if o != n => out.push(Change::SupplyReplaced {
                slot,
                old: o.clone(),
                new: n.clone(),
            }),
            _ => {}
        }
    }
    out
}

fn diff_software(slot: &str, old: &[Software], new: &[Software], out: &mut Vec<Change>) {
    let key = |s: &Software| (s.product.clone(), s.maker.clone(), !s.active);
    let old: BTreeMap<_, &Software> = old.iter().map(|s| (key(s), s)).collect();
    let new: BTreeMap<_, &Software> = new.iter().map(|s| (key(s), s)).collect();
    let keys: std::collections::BTreeSet<_> = old.keys().chain(new.keys()).collect();
    for k in keys {
        match (old.get(k), new.get(k)) {
            (None, Some(n)) => out.push(Change::SoftwareAdded {
                slot: slot.to_owned(),
                software: (*n).clone(),
            }),
            (Some(o), None) => out.push(Change::SoftwareRemoved {
                slot: slot.to_owned(),
                software: (*o).clone(),
            }),
            (Some(o), Some(n)) if o.version != n.version => out.push(Change::SoftwareChanged {
                slot: slot.to_owned(),
                product: n.product.clone(),
                maker: n.maker.clone(),
                active: n.active,
                old_version: o.version.clone(),
                new_version: n.version.clone(),
            }),
            _ => {}
        }
    }
}

/// `maker/product version`, marked `(inactive)` for the inactive copy of an A/B unit.
pub fn software_label(s: &Software) -> String {
    format!(
        "{}/{} {}{}",
        s.maker,
        s.product,
        s.version,
        if s.active { "" } else { " (inactive)" }
    )
}

/// One line per change, for people and for snapshot tests.
pub fn describe(change: &Change) -> String {
    let unit = |u: &UnitRef| {
        format!(
            "{} {} #{} rev {:?}",
            u.kind, u.model, u.serial, u.hw_revision
        )
    };
    let sw = software_label;
    let supply = |s: &SupplyRef| {
        let mut t = s.kind.as_str().to_owned();
        if let Some(c) = &s.color {
            t.push_str(&format!(" {c}"));
        }
        if let Some(p) = &s.part_number {
            t.push_str(&format!(" part {p}"));
        }
        if let Some(n) = &s.serial {
            t.push_str(&format!(" #{n}"));
        }
        t
    };
    match change {
        Change::SupplyAdded { slot, supply: s } => format!("{slot}: supply added: {}", supply(s)),
        Change::SupplyRemoved { slot, supply: s } => {
            format!("{slot}: supply removed: {}", supply(s))
        }
        Change::SupplyReplaced { slot, old, new } => {
            format!(
                "{slot}: supply replaced: {} -> {}",
                supply(old),
                supply(new)
            )
        }
        Change::UnitAdded { slot, unit: u } => format!("{slot}: unit added: {}", unit(u)),
        Change::UnitRemoved { slot, unit: u } => format!("{slot}: unit removed: {}", unit(u)),
        Change::UnitReplaced { slot, old, new } => {
            format!("{slot}: unit replaced: {} -> {}", unit(old), unit(new))
        }
        Change::UnitChanged { slot, old, new } => {
            format!("{slot}: unit changed: {} -> {}", unit(old), unit(new))
        }
        Change::UnitServiceChanged {
            slot,
            serial,
            in_service,
        } => format!(
            "{slot}: unit #{serial} {}",
            if *in_service {
                "put back in service"
            } else {
                "taken out of service"
            }
        ),
        Change::SoftwareAdded { slot, software } => {
            format!("{slot}: software added: {}", sw(software))
        }
        Change::SoftwareRemoved { slot, software } => {
            format!("{slot}: software removed: {}", sw(software))
        }
        Change::SoftwareChanged {
            slot,
            product,
            maker,
            active,
            old_version,
            new_version,
        } => format!(
            "{slot}: software changed: {maker}/{product}{} {old_version} -> {new_version}",
            if *active { "" } else { " (inactive)" }
        ),
    }
}
