//! Data-driven tests: each file under `tests/data/<suite>/` holds an input and the expected
//! text, separated by `--- <section>` lines. `check` compares; with `UPDATE_EXPECT=1` it
//! rewrites the expected section instead (review the diff before committing).

use std::collections::BTreeMap;
use std::path::Path;

use fleetcare_core::structure::{self, Structure};
use fleetcare_wire::{Supply, Unit};

#[derive(serde::Deserialize)]
struct Units {
    #[serde(default)]
    unit: Vec<Unit>,
    #[serde(default)]
    supply: Vec<Supply>,
}

fn check(suite: &str, run: impl Fn(&BTreeMap<String, String>) -> String) {
    fleetcare_testkit::check(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(suite),
        run,
    );
}

fn structure(toml_text: &str) -> Result<Structure, String> {
    let units: Units = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    Structure::new("acme-mfp-9000", units.unit)
        .and_then(|s| s.with_supplies(&units.supply))
        .map_err(|e| e.problems.join("\n"))
}

#[test]
fn diff_cases() {
    check("diff", |s| {
        let old = match s.get("old").map(|t| t.trim()) {
            None | Some("none") => None,
            Some(t) => Some(structure(t).expect("old is valid")),
        };
        let new = structure(&s["new"]).expect("new is valid");
        let changes = structure::diff(old.as_ref(), &new);
        if changes.is_empty() {
            return "no changes".to_owned();
        }
        changes
            .iter()
            .map(structure::describe)
            .collect::<Vec<_>>()
            .join("\n")
    });
}

#[test]
fn validation_cases() {
    check("validate", |s| match structure(&s["input"]) {
        Ok(st) => format!(
            "ok: {} units, fingerprint stable: {}",
            st.units().len(),
            st.fingerprint() == st.clone().fingerprint()
        ),
        Err(problems) => problems,
    });
}

#[test]
fn structure_round_trips_through_its_stored_form() {
    let s = structure(
        r#"
[[unit]]
slot = "engine"
kind = "engine"
model = "eng-40"
serial = "E1"
  [[unit.software]]
  product = "eng-fw"
  maker = "acme"
  version = "3.1"
  [[unit.software]]
  product = "eng-fw"
  maker = "acme"
  version = "3.0"
  active = false
"#,
    )
    .expect("valid");
    let back = Structure::from_json(s.model(), &s.to_json()).expect("round trip");
    assert_eq!(back, s);
    assert_eq!(back.fingerprint(), s.fingerprint());
}

#[test]
fn a_supply_level_is_not_structure_but_a_new_cartridge_is() {
    let with = |level: f64, serial: &str| {
        let text = format!(
            "[[unit]]\nslot = \"engine\"\nkind = \"engine\"\nmodel = \"eng-1\"\nserial = \"E1\"\n\
             [[supply]]\nslot = \"toner.black\"\nkind = \"toner\"\nlevel_pct = {level}\nserial = \"{serial}\"\n"
        );
        structure(&text).expect("valid")
    };
    let bare = structure(
        "[[unit]]\nslot = \"engine\"\nkind = \"engine\"\nmodel = \"eng-1\"\nserial = \"E1\"\n",
    )
    .expect("valid");
    assert_eq!(
        with(40.0, "K1").fingerprint(),
        with(39.0, "K1").fingerprint()
    );
    assert_ne!(
        with(40.0, "K1").fingerprint(),
        with(40.0, "K2").fingerprint()
    );
    assert_ne!(bare.fingerprint(), with(40.0, "K1").fingerprint());
}
