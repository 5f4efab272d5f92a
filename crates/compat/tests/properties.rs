//! Property tests over random catalogs and devices:
//! - every plan the solver returns satisfies every catalog constraint (judged again);
//! - whenever an exhaustive search finds a compatible software set, the solver finds one too,
//!   and when the solver finds none, neither does the exhaustive search.

use std::fmt::Write;
use std::time::Duration;

use fleetcare_compat::{Catalog, DeviceFacts, PlanOutcome, Policy, Version, Vocab};
use fleetcare_wire::{Software, Unit};
use proptest::prelude::*;

const VERSIONS: [&str; 4] = ["1.0", "1.5", "2.0", "3.0-b2"];

#[derive(Debug, Clone)]
struct Rel {
    version: usize,
    /// Revisions it targets: bit 0 = A, bit 1 = B (0 means all).
    revs: u8,
    /// (other product, version index, at least?, scope) — `>= v` when true, `< v` when false;
    /// scope 0: any unit, 1: the same unit, 2: units of the other product's unit kind.
    requires: Vec<(usize, usize, bool, u8)>,
    conflicts: Vec<(usize, usize, bool, u8)>,
}

#[derive(Debug, Clone)]
struct World {
    units: usize,
    /// Per unit: revision A (false) or B (true).
    unit_rev: Vec<bool>,
    /// Per product: the unit it runs on, its releases, the installed version index (4 = unknown
    /// version), and the version in the inactive slot, if any.
    products: Vec<(usize, Vec<Rel>, usize, Option<usize>)>,
}

fn range(v: usize, at_least: bool) -> String {
    if at_least {
        format!(">= {}", VERSIONS[v])
    } else {
        format!("< {}", VERSIONS[v])
    }
}

fn world() -> impl Strategy<Value = World> {
    (1usize..=3, 1usize..=4).prop_flat_map(|(units, products)| {
        let rel = (
            0usize..VERSIONS.len(),
            0u8..4,
            proptest::collection::vec(
                (0..products, 0usize..VERSIONS.len(), any::<bool>(), 0u8..3),
                0..2,
            ),
            proptest::collection::vec(
                (0..products, 0usize..VERSIONS.len(), any::<bool>(), 0u8..3),
                0..2,
            ),
        )
            .prop_map(|(version, revs, requires, conflicts)| Rel {
                version,
                revs,
                requires,
                conflicts,
            });
        let product = (
            0..units,
            proptest::collection::vec(rel, 1..4),
            0usize..=VERSIONS.len(),
            proptest::option::of(0usize..VERSIONS.len()),
        );
        (
            Just(units),
            proptest::collection::vec(any::<bool>(), units),
            proptest::collection::vec(product, products),
        )
            .prop_map(|(units, unit_rev, products)| World {
                units,
                unit_rev,
                products,
            })
    })
}

fn catalog_toml(w: &World) -> String {
    let mut s = String::from("[[device_model]]\nname = \"dm\"\n");
    for u in 0..w.units {
        let _ = write!(
            s,
            "[[unit_model]]\nname = \"u{u}\"\nkind = \"k{u}\"\nhw_revisions = [\"A\", \"B\"]\naccepted_by = [\"dm\"]\n"
        );
    }
    for (p, (unit, _, _, _)) in w.products.iter().enumerate() {
        let _ = write!(
            s,
            "[[product]]\nname = \"p{p}\"\nmaker = \"m\"\nruns_on = [{{ unit_model = \"u{unit}\" }}]\n"
        );
    }
    for (p, (unit, rels, _, _)) in w.products.iter().enumerate() {
        let mut seen = Vec::new();
        for r in rels {
            if seen.contains(&r.version) {
                continue;
            }
            seen.push(r.version);
            let _ = write!(
                s,
                "[[release]]\nproduct = \"p{p}\"\nversion = \"{}\"\n",
                VERSIONS[r.version]
            );
            if r.revs != 0 {
                let revs: Vec<&str> = [(1, "A"), (2, "B")]
                    .iter()
                    .filter(|(bit, _)| r.revs & bit != 0)
                    .map(|(_, n)| *n)
                    .collect();
                let _ = writeln!(
                    s,
                    "targets = [{{ unit_model = \"u{unit}\", hw_revisions = [{}] }}]",
                    revs.iter()
                        .map(|r| format!("\"{r}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let list = |v: &[(usize, usize, bool, u8)]| -> String {
                v.iter()
                    .filter(|(q, _, _, _)| *q != p)
                    .map(|(q, v, at_least, scope)| {
                        let unit = match scope {
                            1 => ", unit = \"same\"".to_owned(),
                            2 => format!(", unit = \"k{}\"", w.products[*q].0),
                            _ => String::new(),
                        };
                        format!(
                            "{{ product = \"p{q}\", versions = \"{}\"{unit} }}",
                            range(*v, *at_least)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = write!(
                s,
                "requires = [{}]\nconflicts = [{}]\n",
                list(&r.requires),
                list(&r.conflicts)
            );
        }
    }
    s
}

fn units(w: &World) -> Vec<Unit> {
    (0..w.units)
        .map(|u| Unit {
            slot: format!("s{u}"),
            kind: format!("k{u}"),
            model: format!("u{u}"),
            serial: format!("S{u}"),
            hw_revision: if w.unit_rev[u] { "B" } else { "A" }.into(),
            software: w
                .products
                .iter()
                .enumerate()
                .filter(|(_, (unit, _, _, _))| *unit == u)
                .flat_map(|(p, (_, _, installed, inactive))| {
                    let mut v = vec![Software {
                        product: format!("p{p}"),
                        maker: "m".into(),
                        version: VERSIONS
                            .get(*installed)
                            .copied()
                            .unwrap_or("0.9-unknown")
                            .into(),
                        active: true,
                    }];
                    if let Some(i) = inactive {
                        v.push(Software {
                            product: format!("p{p}"),
                            maker: "m".into(),
                            version: VERSIONS[*i].into(),
                            active: false,
                        });
                    }
                    v
                })
                .collect(),
            in_service: true,
        })
        .collect()
}

/// Try every combination of candidate versions (what each unit can run, plus the unknown
/// installed version); `true` if one has no software finding.
fn exhaustive(cat: &Catalog, vocab: &Vocab, w: &World, base: &[Unit]) -> bool {
    let mut choices: Vec<Vec<String>> = Vec::new();
    for (p, (unit, _, installed, _)) in w.products.iter().enumerate() {
        let rev = if w.unit_rev[*unit] { "B" } else { "A" };
        let mut c: Vec<String> = VERSIONS
            .iter()
            .filter(|v| {
                let t = format!("p{p}");
                let (Some(ps), Some(vs)) = (vocab.get(&t), vocab.get(v)) else {
                    return false;
                };
                cat.find_release(ps, vs).is_some_and(|r| {
                    cat.release(r).runs_on(
                        vocab.get(&format!("u{unit}")).expect("unit model"),
                        vocab.get(rev),
                    )
                })
            })
            .map(|v| (*v).to_owned())
            .collect();
        // An installed version that is not a release may stay (nothing is known against it).
        let now = VERSIONS.get(*installed).copied().unwrap_or("0.9-unknown");
        let released = vocab
            .get(&format!("p{p}"))
            .zip(vocab.get(now))
            .is_some_and(|(ps, vs)| cat.find_release(ps, vs).is_some());
        if !released {
            c.push(now.into());
        }
        choices.push(c);
    }
    let n: usize = choices.iter().map(Vec::len).product();
    for mut k in 0..n {
        let mut u = base.to_vec();
        for (p, c) in choices.iter().enumerate() {
            let pick = &c[k % c.len()];
            k /= c.len();
            for unit in &mut u {
                for s in unit
                    .software
                    .iter_mut()
                    .filter(|s| s.active && s.product == format!("p{p}"))
                {
                    s.version = pick.clone();
                }
            }
        }
        if cat.software_compatible(&DeviceFacts::new(vocab, "dm", &u)) {
            return true;
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn plans_are_sound_and_complete(w in world(), latest in any::<bool>()) {
        let vocab = Vocab::new();
        let text = catalog_toml(&w);
        // Random catalogs may contradict themselves (a requirement no release meets); those are
        // refused, which another test covers.
        let Ok(cat) = Catalog::parse(&text, &vocab) else { return Ok(()); };
        let base = units(&w);
        let facts = DeviceFacts::new(&vocab, "dm", &base);
        let policy = if latest { Policy::Latest } else { Policy::MinimalChange };
        let outcome = cat.plan(&facts, policy, Duration::from_secs(10));
        let solvable = exhaustive(&cat, &vocab, &w, &base);
        match &outcome {
            PlanOutcome::Keep => {
                prop_assert!(cat.software_compatible(&facts), "kept an incompatible device\n{text}");
            }
            PlanOutcome::Change(steps) => {
                let after = cat.apply(&facts, steps);
                prop_assert!(cat.software_compatible(&after), "a plan breaks the catalog\n{text}\n{steps:?}");
                for s in steps {
                    prop_assert!(Version::parse(s.to.as_str()).is_ok());
                }
            }
            PlanOutcome::NoSolution(why) => {
                prop_assert!(!solvable, "exhaustive search found a solution the solver missed\n{text}\n{why}");
                prop_assert!(!why.contains("defect"), "{why}");
            }
            PlanOutcome::OutOfTime => prop_assert!(false, "out of time on a tiny problem"),
        }
        prop_assert_eq!(solvable, !matches!(outcome, PlanOutcome::NoSolution(_)), "{}", text);
        // Minimal change keeps a compatible device as it is.
        if policy == Policy::MinimalChange && cat.software_compatible(&facts) {
            prop_assert_eq!(outcome, PlanOutcome::Keep);
        }
    }
}
