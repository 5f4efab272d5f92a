//! Data-driven filter tests: each file under `tests/data/` holds devices and filters; the
//! expected text says, per filter, the devices it selects or why it was refused.
//!
//! Lines of `--- devices`: `ID MODEL SITE|- TAG,TAG|- SLOT:KIND:MODEL:REV[:PRODUCT@VERSION+…] …`.
//! Lines of `--- filters`: one filter each (an empty line is the empty filter, `<empty>`).

use std::collections::BTreeMap;
use std::path::Path;

use fleetcare_rollout::{Filter, Subject};

/// (slot, kind, model, revision, [(product, version)])
type UnitRow = (String, String, String, String, Vec<(String, String)>);

struct Dev {
    id: String,
    model: String,
    site: Option<String>,
    tags: Vec<String>,
    units: Vec<UnitRow>,
}

impl Subject for Dev {
    fn id(&self) -> &str {
        &self.id
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn site(&self) -> Option<&str> {
        self.site.as_deref()
    }
    fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
    fn any_unit(&self, name: &str, f: &mut dyn FnMut(&str, &str, &str) -> bool) -> bool {
        self.units
            .iter()
            .filter(|u| u.0 == name || u.1 == name)
            .any(|u| f(&u.1, &u.2, &u.3))
    }
    fn any_software(&self, product: &str, f: &mut dyn FnMut(&str) -> bool) -> bool {
        self.units
            .iter()
            .flat_map(|u| u.4.iter())
            .filter(|(p, _)| p == product)
            .any(|(_, v)| f(v))
    }
}

fn devices(text: &str) -> Vec<Dev> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut w = l.split_whitespace();
            let id = w.next().expect("id").to_owned();
            let model = w.next().expect("model").to_owned();
            let site = Some(w.next().expect("site").to_owned()).filter(|s| s != "-");
            let tags = w.next().expect("tags");
            let tags = if tags == "-" {
                Vec::new()
            } else {
                tags.split(',').map(str::to_owned).collect()
            };
            let units = w
                .map(|u| {
                    let p: Vec<&str> = u.split(':').collect();
                    let sw = p
                        .get(4)
                        .map(|s| {
                            s.split('+')
                                .map(|x| {
                                    let (a, b) = x.split_once('@').expect("product@version");
                                    (a.to_owned(), b.to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (p[0].into(), p[1].into(), p[2].into(), p[3].into(), sw)
                })
                .collect();
            Dev {
                id,
                model,
                site,
                tags,
                units,
            }
        })
        .collect()
}

fn run(s: &BTreeMap<String, String>) -> String {
    let devs = devices(s.get("devices").map_or("", String::as_str));
    let mut out = Vec::new();
    for line in s.get("filters").map_or("", String::as_str).lines() {
        if line.starts_with('#') {
            continue;
        }
        let shown = if line.trim().is_empty() {
            "<empty>"
        } else {
            line
        };
        match Filter::parse(line) {
            Ok(f) => {
                let ids: Vec<&str> = devs
                    .iter()
                    .filter(|d| f.matches(*d))
                    .map(|d| d.id.as_str())
                    .collect();
                out.push(format!("{shown}\n  => {}", ids.join(" ")));
            }
            Err(e) => out.push(format!("{shown}\n  => refused: {e}")),
        }
    }
    out.join("\n")
}

#[test]
fn filters() {
    fleetcare_testkit::check(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"),
        run,
    );
}
