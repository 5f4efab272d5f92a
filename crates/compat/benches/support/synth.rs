//! A synthetic catalog of about ten thousand rules and a fleet of 10-unit devices for the
//! compatibility benchmarks (included by path by the benches that need it).
//!
//! Ten unit kinds; 15 unit models per kind with revisions A–C, each accepted by 14 of 16
//! device models a fifth of them not working with one model of another kind; three product families per
//! kind, each running on the kind's models of its family; 50 releases per product, some made
//! for revision B and C only, most requiring the same family on the next kind (`>= 1.0`, a
//! tenth `>= 20.0`), some conflicting with old versions of another kind's family. A device
//! belongs to one family and carries one unit of each kind with that family's software.

#![allow(dead_code)]

use std::fmt::Write;

pub const KINDS: usize = 10;
pub const MODELS_PER_KIND: usize = 15;
pub const FAMILIES: usize = 3;
pub const RELEASES: usize = 50;
pub const DEVICE_MODELS: usize = 16;

/// A small deterministic generator (xorshift64*), so runs are comparable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn product(kind: usize, family: usize) -> String {
    format!("k{kind}-fw{family}")
}

fn unit_model(kind: usize, m: usize) -> String {
    format!("k{kind}-m{m}")
}

/// A change to the catalog, for re-judgement benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// One more release of every product (judgement changes for no device).
    AddRelease,
    /// Release `release` of one product withdrawn (the devices running it now run unknown
    /// software).
    Withdraw {
        kind: usize,
        family: usize,
        release: usize,
    },
}

/// The catalog's TOML, changed as `change` says.
pub fn catalog(change: Change) -> String {
    catalog_with(change, false)
}

/// The catalog's TOML; with `late`, it also knows what [`late_device`]s carry that the
/// catalog without it does not (the `-late` device models, hardware revision D).
pub fn catalog_with(change: Change, late: bool) -> String {
    let mut rng = Rng::new(42);
    let mut s = String::with_capacity(4 << 20);
    let names = |d: usize| {
        if late {
            vec![format!("dm{d}"), format!("dm{d}-late")]
        } else {
            vec![format!("dm{d}")]
        }
    };
    for d in 0..DEVICE_MODELS {
        for name in names(d) {
            let _ = writeln!(
                s,
                "[[device_model]]\nname = \"{name}\"\noptional_kinds = [\"k9\"]"
            );
        }
    }
    let revisions = if late {
        r#"["A", "B", "C", "D"]"#
    } else {
        r#"["A", "B", "C"]"#
    };
    for k in 0..KINDS {
        for m in 0..MODELS_PER_KIND {
            let accepted: Vec<String> = (0..DEVICE_MODELS)
                .filter(|d| (d + m + k) % 8 != 0)
                .flat_map(names)
                .map(|d| format!("\"{d}\""))
                .collect();
            let not_with: Vec<String> = (0..usize::from(m % 5 == 0))
                .map(|_| {
                    let other = (k + 1 + rng.below(KINDS - 1)) % KINDS;
                    format!("\"{}\"", unit_model(other, rng.below(MODELS_PER_KIND)))
                })
                .collect();
            let _ = writeln!(
                s,
                "[[unit_model]]\nname = \"{}\"\nkind = \"k{k}\"\nhw_revisions = {revisions}\naccepted_by = [{}]\nnot_with = [{}]\nsoftware = [\"{}\"]",
                unit_model(k, m),
                accepted.join(", "),
                not_with.join(", "),
                product(k, m % FAMILIES)
            );
        }
    }
    for k in 0..KINDS {
        for f in 0..FAMILIES {
            let runs: Vec<String> = (0..MODELS_PER_KIND)
                .filter(|m| m % FAMILIES == f)
                .map(|m| format!("{{ unit_model = \"{}\" }}", unit_model(k, m)))
                .collect();
            let _ = writeln!(
                s,
                "[[product]]\nname = \"{}\"\nmaker = \"acme\"\nruns_on = [{}]",
                product(k, f),
                runs.join(", ")
            );
        }
    }
    for k in 0..KINDS {
        for f in 0..FAMILIES {
            let releases = RELEASES + usize::from(change == Change::AddRelease);
            for r in 0..releases {
                if change
                    == (Change::Withdraw {
                        kind: k,
                        family: f,
                        release: r,
                    })
                {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "[[release]]\nproduct = \"{}\"\nversion = \"{}.0\"\ncounter = {}",
                    product(k, f),
                    r + 1,
                    r + 1
                );
                if r % 17 == 16 {
                    let t: Vec<String> = (0..MODELS_PER_KIND)
                        .filter(|m| m % FAMILIES == f)
                        .map(|m| {
                            format!(
                                "{{ unit_model = \"{}\", hw_revisions = [\"B\", \"C\"] }}",
                                unit_model(k, m)
                            )
                        })
                        .collect();
                    let _ = writeln!(s, "targets = [{}]", t.join(", "));
                }
                if k + 1 < KINDS && r % 4 != 3 {
                    let at_least = if r % 10 == 9 { 20 } else { 1 };
                    let _ = writeln!(
                        s,
                        "requires = [{{ product = \"{}\", versions = \">= {at_least}.0\" }}]",
                        product(k + 1, f)
                    );
                }
                if r % 5 == 4 {
                    let other = (k + 2) % KINDS;
                    let _ = writeln!(
                        s,
                        "conflicts = [{{ product = \"{}\", versions = \"< 3.0\" }}]",
                        product(other, f)
                    );
                }
            }
        }
    }
    s
}

/// Device `n` of the synthetic fleet: `(model, units)`.
pub fn device(n: u64) -> (String, Vec<fleetcare_wire::Unit>) {
    let mut rng = Rng::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 7);
    let family = rng.below(FAMILIES);
    let dm = rng.below(DEVICE_MODELS);
    let units = (0..KINDS)
        .map(|k| {
            // Models of the device's family that its model accepts.
            let models: Vec<usize> = (0..MODELS_PER_KIND)
                .filter(|m| m % FAMILIES == family && !(dm + m + k).is_multiple_of(8))
                .collect();
            let m = models[rng.below(models.len())];
            let rev = ["A", "B", "C"][rng.below(3)];
            // Mostly recent releases; a few old ones.
            let spread = if rng.below(10) == 0 { RELEASES } else { 8 };
            let version = RELEASES - rng.below(spread);
            fleetcare_wire::Unit {
                slot: format!("slot-k{k}"),
                kind: format!("k{k}"),
                model: unit_model(k, m),
                serial: format!("S{n}-{k}"),
                hw_revision: rev.into(),
                software: vec![fleetcare_wire::Software {
                    product: product(k, family),
                    maker: "acme".into(),
                    version: format!("{version}.0"),
                    active: true,
                }],
                in_service: true,
            }
        })
        .collect();
    (format!("dm{dm}"), units)
}

/// Every this many devices of [`late_device`] is a late one.
pub const LATE_EVERY: u64 = 25;

/// Device `n` of a fleet where every [`LATE_EVERY`]th device carries names the catalog
/// without `late` does not know: a `-late` device model and hardware revision D on its first
/// unit (what devices report before a catalog revision adds their new model).
pub fn late_device(n: u64) -> (String, Vec<fleetcare_wire::Unit>) {
    let (model, mut units) = device(n);
    if !n.is_multiple_of(LATE_EVERY) {
        return (model, units);
    }
    units[0].hw_revision = "D".into();
    (format!("{model}-late"), units)
}
