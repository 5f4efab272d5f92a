//! Printer profiles: what the standard MIBs do not say about a maker's printers, in commented
//! TOML files the proxy loads at start (`printer_profiles = "DIR"`), no rebuild needed. A
//! profile is matched by `sysObjectID` prefix or by make-and-model text and names:
//! - vendor meter OIDs and the operating counter each is (`pages_total`, `pages_color`, …,
//!   or `meter_<name>` for a billing meter of the maker's own);
//! - where firmware components are listed in text (`sysDescr`: "System Software 073.040, IOT
//!   92.25.0, …" becomes one unit with its software per component) and which unit kind each
//!   component's name is;
//! - which `hrDeviceTable` rows are units of which kind, and which are noise (network ports,
//!   memory).
//!
//! See `examples/profiles/` for shipped profiles.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::facts::{Firmware, PrinterFacts};

/// Profiles one directory holds at most, and the size of one.
pub const MAX_PROFILES: usize = 256;
pub const MAX_PROFILE_BYTES: u64 = 64 * 1024;
/// Vendor meters one profile reads at most (one SNMP request each batch of 16).
pub const MAX_METERS: usize = 64;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The profile's name (shown in logs).
    pub name: String,
    /// The maker's name for software entries (`xerox`, …).
    pub maker: String,
    #[serde(rename = "match")]
    pub matches: Match,
    #[serde(default, rename = "meter")]
    pub meters: Vec<MeterOid>,
    #[serde(default)]
    pub firmware: Option<FirmwareText>,
    #[serde(default)]
    pub hr_devices: HrRules,
}

/// How a printer is recognised: any `sys_object_id` prefix, or any `make_and_model` text
/// (case-insensitive substring of what the printer calls itself).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub sys_object_id: Vec<String>,
    #[serde(default)]
    pub make_and_model: Vec<String>,
}

/// A vendor meter: its OID and the operating counter it is.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MeterOid {
    pub oid: String,
    pub name: String,
}

/// Firmware components listed in text.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FirmwareText {
    /// Only `sys_descr` for now.
    pub source: String,
    /// The list starts after the first occurrence of this text (absent: the whole text).
    #[serde(default)]
    pub after: Option<String>,
    /// What separates components (default `,`). Each is `NAME VERSION`: the version is the
    /// last word.
    #[serde(default = "comma")]
    pub separator: String,
    /// Component name → unit kind (`controller`, `engine`, `finisher`, …); components not
    /// named are guessed from their name.
    #[serde(default)]
    pub kinds: BTreeMap<String, String>,
}

fn comma() -> String {
    ",".into()
}

/// Rules for `hrDeviceTable` rows, applied in order.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HrRules {
    /// `hrDeviceType` last arcs that are never units (4 network, 9 … by HOST-RESOURCES-MIB).
    #[serde(default)]
    pub ignore_types: Vec<i64>,
    /// Descriptions containing any of these (case-insensitive) are never units.
    #[serde(default)]
    pub ignore_descr: Vec<String>,
    /// Descriptions containing `descr` are units of `kind`.
    #[serde(default, rename = "unit")]
    pub units: Vec<HrUnit>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HrUnit {
    pub descr: String,
    pub kind: String,
}

/// An OID in dotted form (`1.3.6.1.4.1.253.…`): at least two arcs, each a number.
pub fn parse_oid(s: &str) -> Result<Vec<u64>, String> {
    let arcs: Result<Vec<u64>, _> = s
        .trim_start_matches('.')
        .split('.')
        .map(str::parse)
        .collect();
    match arcs {
        Ok(a) if a.len() >= 2 && a.len() <= 128 && a[0] <= 2 => Ok(a),
        _ => Err(format!(
            "{s:?} is not an OID (dotted numbers such as 1.3.6.1.4.1.253)"
        )),
    }
}

impl Profile {
    /// Parse and check a profile: every OID well formed, every name a valid operating name.
    pub fn parse(text: &str) -> Result<Profile, String> {
        let p: Profile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        if p.matches.sys_object_id.is_empty() && p.matches.make_and_model.is_empty() {
            problems.push("match: give sys_object_id prefixes or make_and_model texts".into());
        }
        for o in &p.matches.sys_object_id {
            if let Err(e) = parse_oid(o) {
                problems.push(format!("match.sys_object_id: {e}"));
            }
        }
        if p.meters.len() > MAX_METERS {
            problems.push(format!("{} meters, at most {MAX_METERS}", p.meters.len()));
        }
        for m in &p.meters {
            if let Err(e) = parse_oid(&m.oid) {
                problems.push(format!("meter {}: {e}", m.name));
            }
            if let Err(e) = fleetcare_core::structure::check_operating(
                &[(m.name.clone(), 0.0)].into_iter().collect(),
            ) {
                problems.push(format!("meter {:?}: {e}", m.name));
            }
        }
        if let Some(f) = &p.firmware {
            if f.source != "sys_descr" {
                problems.push(format!("firmware.source {:?}: only sys_descr", f.source));
            }
            if f.separator.is_empty() {
                problems.push("firmware.separator: empty".into());
            }
        }
        if problems.is_empty() {
            Ok(p)
        } else {
            Err(problems.join("; "))
        }
    }

    /// Whether the printer is one of this profile's.
    pub fn applies(&self, sys_object_id: Option<&[u64]>, make_and_model: Option<&str>) -> bool {
        let by_oid = sys_object_id.is_some_and(|id| {
            self.matches
                .sys_object_id
                .iter()
                .filter_map(|p| parse_oid(p).ok())
                .any(|p| id.starts_with(&p))
        });
        let by_name = make_and_model.is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            self.matches
                .make_and_model
                .iter()
                .any(|t| m.contains(&t.to_ascii_lowercase()))
        });
        by_oid || by_name
    }

    /// The vendor meters' OIDs, with their operating names.
    pub fn meter_oids(&self) -> Vec<(Vec<u64>, String)> {
        self.meters
            .iter()
            .filter_map(|m| Some((parse_oid(&m.oid).ok()?, m.name.clone())))
            .collect()
    }

    /// What the profile adds to a poll's facts: the vendor meters read (by OID), the firmware
    /// components its text lists, the kinds and noise of its host-resources rows.
    pub fn apply(
        &self,
        f: &mut PrinterFacts,
        sys_descr: Option<&str>,
        meters: &BTreeMap<Vec<u64>, i64>,
    ) {
        for (oid, name) in self.meter_oids() {
            if let Some(v) = meters.get(&oid) {
                f.counters.insert(name, *v as f64);
            }
        }
        if let (Some(fw), Some(text)) = (&self.firmware, sys_descr) {
            let list = match &fw.after {
                Some(a) => text.split_once(a.as_str()).map_or("", |(_, rest)| rest),
                None => text,
            };
            for part in list
                .split(fw.separator.as_str())
                .take(fleetcare_core::limits::MAX_UNITS)
            {
                let part = part.trim();
                let Some((name, version)) = part.rsplit_once(char::is_whitespace) else {
                    continue;
                };
                let name = name.trim();
                if name.is_empty() || !version.chars().any(|c| c.is_ascii_digit()) {
                    continue;
                }
                f.firmware.push(Firmware {
                    name: name.to_owned(),
                    string_version: Some(version.to_owned()),
                    version: None,
                    patches: None,
                });
                if let Some(kind) = fw.kinds.get(name) {
                    f.firmware_kinds.insert(name.to_owned(), kind.clone());
                }
            }
        }
        let rules = &self.hr_devices;
        f.hr_devices.retain(|h| {
            let d = h.descr.to_ascii_lowercase();
            !rules.ignore_types.contains(&h.kind)
                && !rules
                    .ignore_descr
                    .iter()
                    .any(|n| d.contains(&n.to_ascii_lowercase()))
        });
        for h in &mut f.hr_devices {
            let d = h.descr.to_ascii_lowercase();
            if let Some(u) = rules
                .units
                .iter()
                .find(|u| d.contains(&u.descr.to_ascii_lowercase()))
            {
                h.unit_kind = Some(u.kind.clone());
            }
        }
    }
}

/// Every `*.toml` profile in a directory, by file name; a file that does not parse or check is
/// an error naming it (the agent refuses to start, rather than read printers wrongly).
pub fn load_dir(dir: &Path) -> Result<Vec<Profile>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("printer_profiles {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.len() > MAX_PROFILES {
        return Err(format!(
            "printer_profiles {}: {} profiles, at most {MAX_PROFILES}",
            dir.display(),
            files.len()
        ));
    }
    files
        .iter()
        .map(|p| {
            let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX);
            if size > MAX_PROFILE_BYTES {
                return Err(format!(
                    "profile {}: {size} bytes, at most {MAX_PROFILE_BYTES}",
                    p.display()
                ));
            }
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("profile {}: {e}", p.display()))?;
            Profile::parse(&text).map_err(|e| format!("profile {}: {e}", p.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::facts::HrDevice;

    fn shipped() -> Vec<Profile> {
        load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/profiles"))
            .expect("the shipped profiles load")
    }

    #[test]
    fn the_shipped_profiles_load_and_match_their_makers() {
        let all = shipped();
        assert!(all.len() >= 2, "{all:?}");
        let xerox: Vec<u64> = parse_oid("1.3.6.1.4.1.253.8.62.1.20.1").expect("oid");
        assert_eq!(
            all.iter()
                .filter(|p| p.applies(Some(&xerox), None))
                .map(|p| p.maker.as_str())
                .collect::<Vec<_>>(),
            ["xerox"]
        );
        assert!(
            all.iter()
                .any(|p| p.applies(None, Some("KONICA MINOLTA bizhub C458")))
        );
        assert!(
            !all.iter()
                .any(|p| p.applies(Some(&[1, 3, 6, 1, 4, 1, 9]), Some("Acme")))
        );
    }

    #[test]
    fn a_profile_reads_vendor_meters_firmware_in_text_and_hr_rules() {
        let xerox = shipped()
            .into_iter()
            .find(|p| p.maker == "xerox")
            .expect("a xerox profile");
        let mut f = PrinterFacts {
            hr_devices: vec![
                HrDevice {
                    index: 1,
                    kind: 5,
                    descr: "Xerox WorkCentre 7845".into(),
                    status: Some(2),
                    unit_kind: None,
                },
                HrDevice {
                    index: 2,
                    kind: 4,
                    descr: "Ethernet 10/100/1000".into(),
                    status: None,
                    unit_kind: None,
                },
            ],
            ..PrinterFacts::default()
        };
        let meters: BTreeMap<Vec<u64>, i64> = [(
            parse_oid("1.3.6.1.4.1.253.8.53.13.2.1.6.1.20.33").expect("oid"),
            4_321,
        )]
        .into();
        xerox.apply(
            &mut f,
            Some("Xerox WorkCentre 7845 v1 Multifunction System; System Software 073.040.075.34540, ESS 073.045.34540.LL, IOT 92.25.0, Finisher 21.2.0"),
            &meters,
        );
        assert_eq!(f.counters["pages_color"], 4_321.0);
        let names: Vec<&str> = f.firmware.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["System Software", "ESS", "IOT", "Finisher"]);
        assert_eq!(f.firmware[2].string_version.as_deref(), Some("92.25.0"));
        assert_eq!(f.firmware_kinds["IOT"], "engine");
        assert_eq!(f.hr_devices.len(), 1, "the network port is noise");
        assert_eq!(f.hr_devices[0].unit_kind.as_deref(), Some("engine"));
    }

    #[test]
    fn a_bad_profile_is_refused_with_every_problem() {
        let e = Profile::parse(
            "name = \"x\"\nmaker = \"x\"\n[match]\nsys_object_id = [\"1.3.six\"]\n\
             [[meter]]\noid = \"9\"\nname = \"pages total\"\n",
        )
        .expect_err("refused");
        assert!(
            e.contains("1.3.six") && e.contains("\"9\"") && e.contains("pages total"),
            "{e}"
        );
        let e = Profile::parse("name = 1").expect_err("refused");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn a_directory_with_a_bad_profile_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("good.toml"),
            "name = \"g\"\nmaker = \"g\"\n[match]\nmake_and_model = [\"G\"]\n",
        )
        .expect("write");
        assert_eq!(load_dir(dir.path()).expect("loads").len(), 1);
        std::fs::write(dir.path().join("bad.toml"), "name = \"b\"\n[match\n").expect("write");
        let e = load_dir(dir.path()).expect_err("refused");
        assert!(e.contains("bad.toml"), "{e}");
    }
}
