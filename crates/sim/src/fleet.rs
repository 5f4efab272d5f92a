//! The simulated fleet: devices made from the sample inventories in `examples/inventories/`
//! (embedded, so the simulator runs from anywhere), each with its own identity and serials, a
//! little variety, and — in a few of every hundred — the sample scenarios: every kind of
//! compatibility finding, and units that run hot.

use std::path::Path;

use fleetcare_agent::source::{Snapshot, parse_inventory};

/// Scenarios repeat every this many devices of a model.
pub const SCENARIO_CYCLE: usize = 25;

/// The sample device whose fuser runs too hot (template, number in the cycle): an abnormal unit.
pub const HOT_FUSER: (usize, usize) = (0, 8);

/// The sample inventories: `(file name, text)`.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "acme-mfp-9000.toml",
        include_str!("../../../examples/inventories/acme-mfp-9000.toml"),
    ),
    (
        "acme-mfp-7000.toml",
        include_str!("../../../examples/inventories/acme-mfp-7000.toml"),
    ),
    (
        "acme-printer-p500.toml",
        include_str!("../../../examples/inventories/acme-printer-p500.toml"),
    ),
    (
        "bolt-copier-c30.toml",
        include_str!("../../../examples/inventories/bolt-copier-c30.toml"),
    ),
];

/// The device models of the sample inventories, in template order.
pub fn template_models() -> Vec<String> {
    TEMPLATES
        .iter()
        .map(|(name, text)| {
            parse_inventory(Path::new(name), text)
                .map(|s| s.model)
                .unwrap_or_default()
        })
        .collect()
}

/// Every unit kind of the sample inventories.
pub fn template_unit_kinds() -> Vec<String> {
    let mut kinds: Vec<String> = TEMPLATES
        .iter()
        .filter_map(|(name, text)| parse_inventory(Path::new(name), text).ok())
        .flat_map(|s| s.units.into_iter().map(|u| u.kind))
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// How device numbers map to templates: a repeating pattern by weight, so that device `n`
/// is always the same device, whichever process simulates it.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Template of each position of the pattern, and its rank among that template's.
    pattern: Vec<(usize, usize)>,
    weights: Vec<u32>,
    scenarios: bool,
}

impl Mix {
    /// `weights`: (template, weight); `scenarios`: include the sample scenarios.
    pub fn new(weights: &[(usize, u32)], scenarios: bool) -> Mix {
        let mut pattern = Vec::new();
        let mut w = vec![0u32; TEMPLATES.len()];
        for &(t, weight) in weights {
            for rank in 0..weight as usize {
                pattern.push((t, rank));
            }
            w[t] = weight;
        }
        if pattern.is_empty() {
            pattern = (0..TEMPLATES.len()).map(|t| (t, 0)).collect();
            w = vec![1; TEMPLATES.len()];
        }
        Mix {
            pattern,
            weights: w,
            scenarios,
        }
    }

    /// The sample fleet: one of each model in turn, with the scenarios.
    pub fn sample() -> Mix {
        Mix::new(&[], true)
    }

    /// Device `n`'s template and its number among the devices of that template.
    pub fn place(&self, n: usize) -> (usize, usize) {
        let (t, rank) = self.pattern[n % self.pattern.len()];
        (
            t,
            (n / self.pattern.len()) * self.weights[t] as usize + rank,
        )
    }

    /// Device `n` (from 0): a template with its own identity, serials and some variety.
    pub fn device(&self, n: usize) -> Result<Snapshot, String> {
        let (template, k) = self.place(n);
        let (name, text) = TEMPLATES[template];
        let mut s = parse_inventory(Path::new(name), text).map_err(|e| e.to_string())?;
        let prefix = s
            .device_id
            .rsplit_once('-')
            .map_or(s.device_id.as_str(), |(p, _)| p)
            .to_owned();
        let number = n + 1;
        s.device_id = format!("{prefix}-{number:06}");
        for u in &mut s.units {
            u.serial = format!("{}-{number:05}", u.serial);
        }
        // Variety: every third device of a model lacks its optional units.
        if k % 3 == 2 {
            s.units
                .retain(|u| !matches!(u.kind.as_str(), "fax" | "finisher" | "duplexer"));
        }
        if self.scenarios {
            let c = k % SCENARIO_CYCLE;
            scenario(&mut s, template, c);
            if (template, c) == HOT_FUSER {
                s.operating.insert("fuser_temp_c".into(), 224.0);
            }
        }
        for (k, v) in &mut s.operating {
            if k.starts_with("pages") || k.starts_with("jams") {
                *v = (*v * (1.0 + (n % 17) as f64 / 10.0)).round();
            }
        }
        Ok(s)
    }
}

/// Device `n` of the sample fleet.
pub fn sample_device(n: usize) -> Result<Snapshot, String> {
    Mix::sample().device(n)
}

/// What the sample fleet's incompatible devices show, by (template, number of the device of that
/// template): every finding kind, fixed by software or advised.
pub const SCENARIOS: &[(usize, usize, &str)] = &[
    (
        0,
        1,
        "software_software: ctl-firmware 5.3.0 needs newer engine firmware (a job installs it)",
    ),
    (
        0,
        4,
        "unit_software: a revision-A controller runs 5.2.1 (a job switches to the 5.1.9 in its inactive slot)",
    ),
    (
        0,
        7,
        "unit_unit: a booklet finisher beside a dup-3 duplexer (advice; the duplexer goes out of service)",
    ),
    (0, 10, "unknown_device_model: an acme-mfp-9500"),
    (
        1,
        1,
        "device_unit: an mfp-9000 fuser in an mfp-7000 (advice: a fus-5)",
    ),
    (1, 4, "unknown_unit_model: a pf-999 paper feeder"),
    (2, 1, "unknown_software: engine firmware 1.4.1-dev"),
    (
        3,
        1,
        "no software plan: a revision-A engine cannot run bolt-os 11.1 (advice: a revision-B engine)",
    ),
];

fn set_software(s: &mut Snapshot, slot: &str, product: &str, version: &str, active: bool) {
    if let Some(u) = s.units.iter_mut().find(|u| u.slot == slot) {
        match u
            .software
            .iter_mut()
            .find(|w| w.product == product && w.active == active)
        {
            Some(w) => w.version = version.into(),
            None => u.software.push(fleetcare_wire::Software {
                product: product.into(),
                maker: "acme".into(),
                version: version.into(),
                active,
            }),
        }
    }
}

fn scenario(s: &mut Snapshot, template: usize, k: usize) {
    // A unit's serial, or a new one for a unit the device did not have.
    let serial = |s: &Snapshot, slot: &str| {
        s.units
            .iter()
            .find(|u| u.slot == slot)
            .map(|u| u.serial.clone())
            .unwrap_or_else(|| format!("{}-{}", slot.to_uppercase(), s.device_id))
    };
    let unit =
        |slot: &str, kind: &str, model: &str, serial: String, sw: Vec<(&str, &str, &str)>| {
            fleetcare_wire::Unit {
                slot: slot.into(),
                kind: kind.into(),
                model: model.into(),
                serial,
                hw_revision: "A".into(),
                software: sw
                    .into_iter()
                    .map(|(p, m, v)| fleetcare_wire::Software {
                        product: p.into(),
                        maker: m.into(),
                        version: v.into(),
                        active: true,
                    })
                    .collect(),
                in_service: true,
            }
        };
    match (template, k) {
        (0, 1) => {
            set_software(s, "controller", "ctl-firmware", "5.3.0", true);
            set_software(s, "engine", "engine-firmware", "2.7.4", true);
        }
        (0, 4) => {
            if let Some(c) = s.units.iter_mut().find(|u| u.slot == "controller") {
                c.hw_revision = "A".into();
            }
            set_software(s, "controller", "pdl-interpreter", "3.3", true);
        }
        (0, 7) => {
            let (fin, dup) = (serial(s, "finisher"), serial(s, "duplexer"));
            s.units
                .retain(|u| u.slot != "finisher" && u.slot != "duplexer");
            s.units.push(unit(
                "finisher",
                "finisher",
                "fin-booklet-5",
                format!("{fin}-B"),
                vec![("finisher-firmware", "nordfin", "2.0.1")],
            ));
            s.units
                .push(unit("duplexer", "duplexer", "dup-3", dup, vec![]));
        }
        (0, 10) => s.model = "acme-mfp-9500".into(),
        (1, 1) => {
            if let Some(f) = s.units.iter_mut().find(|u| u.slot == "fuser") {
                f.model = "fus-7".into();
                f.hw_revision = "A".into();
            }
        }
        (1, 4) => {
            if let Some(f) = s.units.iter_mut().find(|u| u.slot == "tray-1") {
                f.model = "pf-999".into();
            }
        }
        (2, 1) => set_software(s, "engine", "engine-firmware", "1.4.1-dev", true),
        (3, 1) => {
            if let Some(e) = s.units.iter_mut().find(|u| u.slot == "engine") {
                e.hw_revision = "A".into();
                for w in &mut e.software {
                    w.version = "6.2-r3".into();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_is_varied_and_valid() {
        let mut ids = std::collections::BTreeSet::new();
        let mut models = std::collections::BTreeSet::new();
        let mut unit_counts = std::collections::BTreeSet::new();
        for n in 0..200 {
            let s = sample_device(n).expect("template parses");
            fleetcare_core::structure::validate_report(
                &s.device_id,
                &s.model,
                s.units.clone(),
                &s.operating,
            )
            .expect("every sample device is valid");
            assert!(ids.insert(s.device_id.clone()), "unique ids");
            models.insert(s.model.clone());
            unit_counts.insert((s.model.clone(), s.units.len()));
        }
        assert_eq!(
            models.len(),
            TEMPLATES.len() + 1,
            "the four samples and one unknown model"
        );
        assert!(
            unit_counts.len() > TEMPLATES.len(),
            "unit mixes vary within a model"
        );
    }

    #[test]
    fn weights_shape_the_mix_and_numbers_stay_put() {
        let mix = Mix::new(&[(0, 3), (2, 1)], false);
        let models: Vec<String> = (0..8)
            .map(|n| mix.device(n).expect("valid").model)
            .collect();
        assert_eq!(
            models.iter().filter(|m| *m == "acme-mfp-9000").count(),
            6,
            "{models:?}"
        );
        assert_eq!(mix.place(5), (0, 4));
        assert_eq!(mix.place(7), (2, 1));
        assert_eq!(
            mix.device(5).expect("valid"),
            mix.device(5).expect("valid"),
            "the same device every time"
        );
        let sample = Mix::sample();
        assert_eq!(sample.place(9), (1, 2), "one of each model in turn");
    }
}
