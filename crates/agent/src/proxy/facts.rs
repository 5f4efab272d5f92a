//! What a poll read from a printer, and what the agent makes of it: the device (identity,
//! units from firmware components and the host-resources table, operating info from supplies
//! and counters), and the error events for state reasons and alerts that appeared since the
//! last poll. Pure functions; everything here is untrusted input, cut to the wire's limits.

use std::collections::{BTreeMap, BTreeSet};

use fleetcare_core::limits::MAX_NAME_LEN;
use fleetcare_wire::errors::PrinterAlert;
use fleetcare_wire::{Software, Unit};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::journal::NewEvent;
use crate::source::Snapshot;

/// One firmware component (`printer-firmware-name` and its parallel attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firmware {
    pub name: String,
    pub string_version: Option<String>,
    pub version: Option<String>,
    pub patches: Option<String>,
}

/// A row of `hrDeviceTable` (HOST-RESOURCES-MIB).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HrDevice {
    pub index: i64,
    /// The last arc of `hrDeviceType` (1 other, 3 processor, 4 network, 5 printer, 6 disk, …).
    pub kind: i64,
    pub descr: String,
    pub status: Option<i64>,
    /// The unit kind a printer profile gives the row (else from its type).
    pub unit_kind: Option<String>,
}

/// A row of `prtAlertTable` (Printer MIB), or a `printer-alert` value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alert {
    /// What tells one alert from another between polls (the IPP value, or the SNMP row).
    pub key: String,
    pub alert: PrinterAlert,
    pub description: Option<String>,
}

/// Everything one poll of a printer read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrinterFacts {
    pub uuid: Option<String>,
    /// IEEE 1284 device id (`MFG:…;MDL:…;SN:…;`).
    pub device_id_1284: Option<String>,
    /// `prtGeneralSerialNumber`.
    pub serial: Option<String>,
    pub make_and_model: Option<String>,
    pub firmware: Vec<Firmware>,
    /// Firmware component name → unit kind, as a printer profile says.
    pub firmware_kinds: BTreeMap<String, String>,
    pub hr_devices: Vec<HrDevice>,
    /// `printer-state` (3 idle, 4 processing, 5 stopped).
    pub state: Option<i64>,
    pub state_reasons: Vec<String>,
    pub alerts: Vec<Alert>,
    /// `printer-supply` values, with `printer-supply-description` where given.
    pub supplies: Vec<(String, Option<String>)>,
    /// `prtMarkerSuppliesTable` rows (SNMP), preferred to `supplies` where both were read.
    pub supply_rows: Vec<super::supplies::SupplyRow>,
    /// Counters by operating-info name (`pages_total`, …).
    pub counters: BTreeMap<String, f64>,
}

/// What the last poll showed, kept between polls (and restarts) to tell what appeared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub reasons: BTreeSet<String>,
    pub alerts: BTreeSet<String>,
}

/// How units are named where the config says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Naming {
    /// Firmware component name → unit kind (else guessed from the name).
    pub kinds: BTreeMap<String, String>,
    /// The device id the config gives the printer (else its serial number or UUID).
    pub device_id: Option<String>,
    /// The model the config gives the printer (else from what it tells).
    pub model: Option<String>,
}

/// A name cut to the wire's rules: no control characters, trimmed, at most 64 characters.
pub fn clean(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    let s: String = s.trim().chars().take(MAX_NAME_LEN).collect();
    s.trim().to_owned()
}

/// A slug for ids, slots and models: lower case, `-` between words, `[a-z0-9._:-]` only.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':') {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(MAX_NAME_LEN).collect();
    out.trim_matches('-').to_owned()
}

/// A device id from a serial or uuid: `[A-Za-z0-9._:-]`, starting with a letter or digit.
fn device_id(s: &str) -> Option<String> {
    let id: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
        .take(MAX_NAME_LEN)
        .collect();
    let id = id.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    (!id.is_empty()).then(|| id.to_owned())
}

/// The fields of an IEEE 1284 device id.
pub fn fields_1284(s: &str) -> BTreeMap<String, String> {
    s.split(';')
        .filter_map(|f| {
            let (k, v) = f.split_once(':')?;
            Some((k.trim().to_ascii_uppercase(), v.trim().to_owned()))
        })
        .collect()
}

/// A unit's serial: the device's and the slot's, or (too long for the wire) a digest of the
/// slot, so that serials stay unique within the device.
fn unit_serial(device: &str, slot: &str) -> String {
    let s = format!("{device}-{slot}");
    if s.chars().count() <= MAX_NAME_LEN {
        return s;
    }
    let digest: String = sha2::Sha256::digest(slot.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let head: String = device.chars().take(MAX_NAME_LEN - 17).collect();
    format!("{head}-{digest}")
}

/// The unit kind of a firmware component, from its name.
pub fn guess_kind(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    let has = |w: &[&str]| w.iter().any(|w| n.contains(w));
    if has(&["fuser"]) {
        "fuser"
    } else if has(&["finisher", "stapler", "booklet"]) {
        "finisher"
    } else if has(&["adf", "document feeder", "document-feeder"]) {
        "document-feeder"
    } else if has(&["tray", "feeder", "paper"]) {
        "paper-feeder"
    } else if has(&["duplex"]) {
        "duplexer"
    } else if has(&["fax"]) {
        "fax"
    } else if has(&["scan"]) {
        "scanner"
    } else if has(&["engine", "marker", "print mechanism"]) {
        "engine"
    } else if has(&["controller", "main", "system", "firmware", "boot"]) {
        "controller"
    } else {
        "component"
    }
}

fn hr_kind(kind: i64) -> &'static str {
    match kind {
        3 => "processor",
        4 => "network",
        5 => "printer",
        6 | 8 | 9 | 10 => "storage",
        12 => "audio",
        13 => "coprocessor",
        14 => "keyboard",
        16 => "pointing",
        _ => "component",
    }
}

/// The device a poll shows: `Err` when the printer says nothing to tell it apart by.
pub fn snapshot(f: &PrinterFacts, naming: &Naming) -> Result<Snapshot, String> {
    let d1284 = f
        .device_id_1284
        .as_deref()
        .map(fields_1284)
        .unwrap_or_default();
    let serial = d1284
        .get("SN")
        .or_else(|| d1284.get("SERN"))
        .or_else(|| d1284.get("SERIALNUMBER"))
        .cloned()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| f.serial.clone().filter(|s| !s.trim().is_empty()));
    let uuid = f
        .uuid
        .as_deref()
        .map(|u| u.trim_start_matches("urn:uuid:").to_owned());
    let device = naming
        .device_id
        .clone()
        .or_else(|| serial.as_deref().and_then(device_id))
        .or_else(|| uuid.as_deref().and_then(device_id))
        .ok_or("the printer tells no serial number (printer-device-id SN:, prtGeneralSerialNumber) and no printer-uuid: name it in the config (printers = [{ url = \"…\", device_id = \"…\", model = \"…\" }])")?;
    let maker = d1284
        .get("MFG")
        .or_else(|| d1284.get("MANUFACTURER"))
        .cloned()
        .or_else(|| {
            f.make_and_model
                .as_deref()
                .and_then(|m| m.split_whitespace().next())
                .map(str::to_owned)
        })
        .map(|m| slug(&m))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let model = naming
        .model
        .clone()
        .or_else(|| f.make_and_model.clone())
        .or_else(|| {
            let mdl = d1284.get("MDL").or_else(|| d1284.get("MODEL"))?;
            Some(format!("{maker} {mdl}"))
        })
        .or_else(|| {
            f.hr_devices
                .iter()
                .find(|h| h.kind == 5)
                .map(|h| h.descr.clone())
        })
        .map(|m| slug(&m))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown-printer".into());
    let mut units: Vec<Unit> = Vec::new();
    let mut slots = BTreeSet::new();
    let mut unique = |base: String| {
        let base = if base.is_empty() { "unit".into() } else { base };
        let mut slot = base.clone();
        let mut i = 2;
        while !slots.insert(slot.clone()) {
            slot = format!(
                "{}-{i}",
                base.chars().take(MAX_NAME_LEN - 4).collect::<String>()
            );
            i += 1;
        }
        slot
    };
    for fw in f.firmware.iter().take(fleetcare_core::limits::MAX_UNITS) {
        let slot = unique(slug(&fw.name));
        let kind = naming
            .kinds
            .get(&fw.name)
            .or_else(|| f.firmware_kinds.get(&fw.name))
            .map(|k| clean(k))
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| guess_kind(&fw.name).to_owned());
        let version = fw
            .string_version
            .as_deref()
            .or(fw.version.as_deref())
            .map(clean)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let mut software = vec![Software {
            product: clean(&format!("{slot}-firmware")),
            maker: maker.clone(),
            version,
            active: true,
        }];
        if let Some(p) = fw.patches.as_deref().map(clean).filter(|p| !p.is_empty()) {
            software.push(Software {
                product: clean(&format!("{slot}-patches")),
                maker: maker.clone(),
                version: p,
                active: true,
            });
        }
        units.push(Unit {
            serial: unit_serial(&device, &slot),
            kind,
            model: clean(&format!("{model}-{slot}")),
            slot,
            hw_revision: String::new(),
            software,
            in_service: true,
        });
    }
    for h in &f.hr_devices {
        if units.len() >= fleetcare_core::limits::MAX_UNITS {
            break;
        }
        let slot = unique(format!("hr-{}", h.index));
        let descr = clean(&h.descr);
        units.push(Unit {
            serial: unit_serial(&device, &slot),
            kind: h
                .unit_kind
                .as_deref()
                .map(clean)
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| hr_kind(h.kind).into()),
            model: if descr.is_empty() {
                "unknown".into()
            } else {
                descr
            },
            slot,
            hw_revision: String::new(),
            software: Vec::new(),
            in_service: true,
        });
    }
    let mut operating = BTreeMap::new();
    for (k, v) in &f.counters {
        if v.is_finite() {
            operating.insert(k.clone(), *v);
        }
    }
    if let Some(s) = f.state {
        operating.insert("printer_state".into(), s as f64);
    }
    for (i, (supply, descr)) in f.supplies.iter().enumerate() {
        let fields: BTreeMap<String, String> = supply
            .split(';')
            .filter_map(|f| {
                let (k, v) = f.split_once('=')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect();
        let level = fields.get("level").and_then(|l| l.parse::<f64>().ok());
        let max = fields
            .get("maxcapacity")
            .and_then(|l| l.parse::<f64>().ok())
            .filter(|m| *m > 0.0);
        let Some(level) = level.filter(|l| *l >= 0.0) else {
            continue; // unknown levels are -2 or -3 in the Printer MIB
        };
        let name = descr
            .as_deref()
            .or(fields.get("colorantname").map(String::as_str))
            .or(fields.get("type").map(String::as_str))
            .map(slug)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("supply-{}", i + 1));
        let key: String = format!("supply.{name}_pct")
            .chars()
            .take(MAX_NAME_LEN)
            .collect();
        let pct = match max {
            Some(m) => (level * 100.0 / m).clamp(0.0, 100.0),
            None => level.clamp(0.0, 100.0),
        };
        operating.insert(key, (pct * 10.0).round() / 10.0);
    }
    while operating.len() > fleetcare_core::limits::MAX_OPERATING_ENTRIES {
        let last = operating.keys().next_back().cloned().unwrap_or_default();
        operating.remove(&last);
    }
    Ok(Snapshot {
        device_id: device,
        model,
        units,
        operating,
        supplies: super::supplies::supplies(&if f.supply_rows.is_empty() {
            f.supplies
                .iter()
                .enumerate()
                .map(|(i, (v, d))| super::supplies::ipp_row(i, v, d.as_deref()))
                .collect()
        } else {
            f.supply_rows.clone()
        }),
    })
}

/// Neutral sub-states that carry no severity suffix and are not faults.
const NEUTRAL: &[&str] = &[
    "none",
    "paused",
    "moving-to-paused",
    "shutdown",
    "connecting-to-device",
    "identify-printer-requested",
    "deactivated",
    "hold-new-jobs",
    "printer-restarted",
    "printer-shutdown",
    "timed-out",
    "stopping",
];

/// A state reason's code and severity: the keyword without its suffix, and the suffix's
/// level (`-error`, `-warning`, `-report` → info); without one, an error (RFC 8011), unless it
/// is a neutral sub-state.
pub fn reason_severity(reason: &str) -> (String, &'static str) {
    for (suffix, sev) in [
        ("-error", "error"),
        ("-warning", "warning"),
        ("-report", "info"),
    ] {
        if let Some(code) = reason.strip_suffix(suffix) {
            return (code.to_owned(), sev);
        }
    }
    if NEUTRAL.contains(&reason) {
        (reason.to_owned(), "info")
    } else {
        (reason.to_owned(), "error")
    }
}

/// The unit a state reason or alert is about, by its words.
fn slot_for(code: &str, snap: &Snapshot) -> String {
    let c = code.to_ascii_lowercase();
    let kind = if c.contains("fuser") {
        "fuser"
    } else if c.contains("toner")
        || c.contains("marker")
        || c.contains("developer")
        || c.contains("opc")
    {
        "engine"
    } else if c.contains("input")
        || c.contains("tray")
        || c.contains("media-empty")
        || c.contains("media-needed")
    {
        "paper-feeder"
    } else if c.contains("finisher") || c.contains("staple") || c.contains("output-area") {
        "finisher"
    } else if c.contains("jam") || c.contains("media") {
        "engine"
    } else {
        "controller"
    };
    snap.units
        .iter()
        .find(|u| u.kind == kind)
        .or_else(|| snap.units.iter().find(|u| u.kind == "controller"))
        .map_or_else(|| "printer".into(), |u| u.slot.clone())
}

fn alert_severity(a: &PrinterAlert) -> &'static str {
    match a.severity_level.as_deref() {
        Some("critical") => "critical",
        Some("warning") | Some("warningBinaryChangeEvent") => "warning",
        _ => "info",
    }
}

/// What appeared since `seen` (events), and what is seen now.
pub fn events(f: &PrinterFacts, snap: &Snapshot, seen: &Seen) -> (Vec<NewEvent>, Seen) {
    let mut out = Vec::new();
    let now = Seen {
        reasons: f
            .state_reasons
            .iter()
            .map(|r| clean(r))
            .filter(|r| !r.is_empty() && r != "none")
            .take(64)
            .collect(),
        alerts: f.alerts.iter().map(|a| a.key.clone()).take(64).collect(),
    };
    for r in now.reasons.difference(&seen.reasons) {
        let (code, severity) = reason_severity(r);
        let code: String = code.chars().take(64).collect();
        out.push(NewEvent {
            slot: slot_for(&code, snap),
            code,
            severity: severity.into(),
            counters: snap.operating.clone(),
            detail: Some(format!("printer-state-reasons: {r}")),
            alert: None,
        });
    }
    for a in f.alerts.iter().filter(|a| !seen.alerts.contains(&a.key)) {
        if !now.alerts.contains(&a.key) {
            continue;
        }
        let code: String = a
            .alert
            .code
            .clone()
            .unwrap_or_else(|| "alert".into())
            .chars()
            .take(64)
            .collect();
        out.push(NewEvent {
            slot: slot_for(&code, snap),
            severity: alert_severity(&a.alert).into(),
            code,
            counters: snap.operating.clone(),
            detail: a
                .description
                .clone()
                .map(|d| d.chars().take(4096).collect()),
            alert: Some(a.alert.clone()),
        });
    }
    (out, now)
}

/// A `printer-alert` value (`code=jam;severity=critical;group=mediaPath;…`, PWG 5100.9).
pub fn parse_ipp_alert(s: &str) -> PrinterAlert {
    let mut a = PrinterAlert::default();
    for f in s.split(';') {
        let Some((k, v)) = f.split_once('=') else {
            continue;
        };
        let v = clean(v);
        match k.trim().to_ascii_lowercase().as_str() {
            "code" => a.code = Some(v),
            "severity" => a.severity_level = Some(v),
            "traininglevel" | "training" => a.training_level = Some(v),
            "group" => a.group = Some(v),
            "groupindex" => a.group_index = v.parse().ok(),
            "location" => a.location = v.parse().ok(),
            _ => {}
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> PrinterFacts {
        PrinterFacts {
            uuid: Some("urn:uuid:6f1c3a52-0000-4000-8000-000000000777".into()),
            device_id_1284: Some("MFG:Acme;MDL:MFP 9000;CMD:PWGRaster;SN:ACM9K-000777;".into()),
            make_and_model: Some("Acme MFP 9000".into()),
            firmware: vec![
                Firmware {
                    name: "Main Controller".into(),
                    string_version: Some("G1.23".into()),
                    version: Some("G1.23".into()),
                    patches: None,
                },
                Firmware {
                    name: "Print Engine".into(),
                    string_version: Some("3.01.04".into()),
                    ..Firmware::default()
                },
            ],
            state: Some(3),
            state_reasons: vec!["media-jam-error".into(), "toner-low-warning".into()],
            supplies: vec![(
                "index=1;class=supplyThatIsConsumed;type=toner;unit=percent;maxcapacity=100;level=12;colorantname=black;".into(),
                Some("Black Toner".into()),
            )],
            counters: [("pages_total".to_owned(), 184_220.0)].into(),
            ..PrinterFacts::default()
        }
    }

    #[test]
    fn a_printer_becomes_a_device_with_a_unit_per_firmware_component() {
        let s = snapshot(&facts(), &Naming::default()).expect("valid");
        assert_eq!(s.device_id, "ACM9K-000777");
        assert_eq!(s.model, "acme-mfp-9000");
        let units: Vec<(&str, &str, &str)> = s
            .units
            .iter()
            .map(|u| {
                (
                    u.slot.as_str(),
                    u.kind.as_str(),
                    u.software[0].version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            units,
            [
                ("main-controller", "controller", "G1.23"),
                ("print-engine", "engine", "3.01.04")
            ]
        );
        assert_eq!(s.units[0].software[0].product, "main-controller-firmware");
        assert_eq!(s.units[0].software[0].maker, "acme");
        assert_eq!(s.operating["supply.black-toner_pct"], 12.0);
        assert_eq!(s.operating["pages_total"], 184_220.0);
        fleetcare_core::structure::validate_report(
            &s.device_id,
            &s.model,
            s.units.clone(),
            &s.operating,
        )
        .expect("the wire accepts it");
    }

    #[test]
    fn without_a_serial_the_uuid_names_the_device_and_without_either_it_is_refused() {
        let mut f = facts();
        f.device_id_1284 = Some("MFG:Acme;MDL:X;".into());
        assert_eq!(
            snapshot(&f, &Naming::default()).expect("valid").device_id,
            "6f1c3a52-0000-4000-8000-000000000777"
        );
        f.uuid = None;
        let err = snapshot(&f, &Naming::default()).expect_err("nameless");
        assert!(err.contains("name it in the config"), "{err}");
        // The config names it.
        let named = Naming {
            device_id: Some("FRONT-DESK-1".into()),
            model: Some("acme-laser-5".into()),
            ..Naming::default()
        };
        let s = snapshot(&f, &named).expect("named");
        assert_eq!(
            (s.device_id.as_str(), s.model.as_str()),
            ("FRONT-DESK-1", "acme-laser-5")
        );
    }

    #[test]
    fn hostile_names_are_cut_to_the_wires_rules() {
        let mut f = facts();
        f.firmware = vec![
            Firmware {
                name: format!("\u{7}{}", "x".repeat(300)),
                string_version: Some(format!(" {} \n", "9".repeat(200))),
                ..Firmware::default()
            },
            Firmware {
                name: "x".repeat(300),
                ..Firmware::default()
            },
        ];
        f.device_id_1284 = Some("SN:../../etc/passwd;".into());
        let s = snapshot(&f, &Naming::default()).expect("valid");
        assert_eq!(s.device_id, "etcpasswd", "no path survives into the id");
        fleetcare_core::structure::validate_report(
            &s.device_id,
            &s.model,
            s.units.clone(),
            &s.operating,
        )
        .expect("the wire accepts it");
        assert_ne!(s.units[0].slot, s.units[1].slot, "slots stay unique");
    }

    #[test]
    fn a_reason_that_appears_is_one_event_with_its_suffixs_severity() {
        let f = facts();
        let s = snapshot(&f, &Naming::default()).expect("valid");
        let (ev, seen) = events(&f, &s, &Seen::default());
        let got: Vec<(&str, &str, &str)> = ev
            .iter()
            .map(|e| (e.code.as_str(), e.severity.as_str(), e.slot.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("media-jam", "error", "print-engine"),
                ("toner-low", "warning", "print-engine")
            ]
        );
        // The same reasons again: nothing new. One goes, another comes: one event.
        assert!(events(&f, &s, &seen).0.is_empty());
        let mut g = f.clone();
        g.state_reasons = vec!["toner-low-warning".into(), "cover-open".into()];
        let (ev, _) = events(&g, &s, &seen);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].code.as_str(), ev[0].severity.as_str()),
            ("cover-open", "error")
        );
        assert_eq!(reason_severity("paused"), ("paused".into(), "info"));
        assert_eq!(
            reason_severity("media-jam-report"),
            ("media-jam".into(), "info")
        );
    }

    #[test]
    fn alerts_carry_their_printer_mib_fields() {
        let a =
            parse_ipp_alert("code=jam;severity=critical;group=mediaPath;groupindex=1;location=3");
        assert_eq!(a.code.as_deref(), Some("jam"));
        assert_eq!(a.group_index, Some(1));
        assert_eq!(a.location, Some(3));
        let mut f = facts();
        f.state_reasons.clear();
        f.alerts = vec![Alert {
            key: "code=jam;severity=critical".into(),
            alert: a,
            description: Some("Paper jam in tray 1".into()),
        }];
        let s = snapshot(&f, &Naming::default()).expect("valid");
        let (ev, _) = events(&f, &s, &Seen::default());
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].severity, "critical");
        assert_eq!(
            ev[0].alert.as_ref().and_then(|a| a.group.as_deref()),
            Some("mediaPath")
        );
    }
}
