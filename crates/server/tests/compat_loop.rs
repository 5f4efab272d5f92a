//! The compatibility loop against a catalog and devices no other test uses ("zeta" devices):
//! every catalog revision judges the whole fleet against itself, including names the
//! devices reported before a catalog knew them; states that say what can fix a device.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::{Fixture, call, enroll_as, fixtures, json_body};
use fleetcare_testkit::eventually;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(10);

/// The catalog, built from parts so that each revision adds or drops one thing.
struct Zeta {
    finisher: bool,
    revision_r2: bool,
    app: bool,
    /// zy-lib 1.0 requires zc-fw 2.0 on its unit, which is made for revision R2 only…
    lib: bool,
    /// …or for revision A too.
    lib_for_a: bool,
}

impl Zeta {
    fn everything() -> Zeta {
        Zeta {
            finisher: true,
            revision_r2: true,
            app: true,
            lib: true,
            lib_for_a: false,
        }
    }
}

impl Zeta {
    fn text(&self) -> String {
        let mut t = String::from(
            r#"
[[device_model]]
name = "zeta-mfp-1"
maker = "zeta"
optional_kinds = ["finisher", "paper-feeder"]

[[product]]
name = "zc-fw"
maker = "zeta"
runs_on = [{ unit_model = "zc-1" }]

[[release]]
product = "zc-fw"
version = "1.0"
counter = 10

[[unit_model]]
name = "zf-1"
kind = "finisher"
accepted_by = ["zeta-mfp-1"]

[[unit_model]]
name = "zp-1"
kind = "paper-feeder"
accepted_by = ["zeta-mfp-1"]
"#,
        );
        let revs = if self.revision_r2 {
            r#"["A", "R2"]"#
        } else {
            r#"["A"]"#
        };
        t.push_str(&format!(
            "\n[[unit_model]]\nname = \"zc-1\"\nkind = \"controller\"\nhw_revisions = {revs}\naccepted_by = [\"zeta-mfp-1\"]\nsoftware = [\"zc-fw\"]\n"
        ));
        if self.finisher {
            t.push_str("\n[[unit_model]]\nname = \"zf-9\"\nkind = \"finisher\"\naccepted_by = [\"zeta-mfp-1\"]\n");
        }
        if self.lib {
            let revs = if self.lib_for_a {
                "\"A\", \"R2\""
            } else {
                "\"R2\""
            };
            t.push_str(&format!("\n[[release]]\nproduct = \"zc-fw\"\nversion = \"2.0\"\ncounter = 20\ntargets = [{{ unit_model = \"zc-1\", hw_revisions = [{revs}] }}]\n\n[[product]]\nname = \"zy-lib\"\nmaker = \"zeta\"\nruns_on = [{{ unit_model = \"zc-1\" }}]\n\n[[release]]\nproduct = \"zy-lib\"\nversion = \"1.0\"\ncounter = 10\nrequires = [{{ product = \"zc-fw\", versions = \">= 2.0\", unit = \"same\" }}]\n"));
        }
        if self.app {
            t.push_str("\n[[product]]\nname = \"zx-app\"\nmaker = \"zeta\"\nruns_on = [{ unit_model = \"zc-1\" }]\n\n[[release]]\nproduct = \"zx-app\"\nversion = \"2.0\"\ncounter = 20\n");
        }
        t
    }
}

fn unit(slot: &str, kind: &str, model: &str, rev: &str, software: Value) -> Value {
    json!({"slot": slot, "kind": kind, "model": model, "serial": format!("{slot}-1"),
           "hw_revision": rev, "software": software})
}

fn sw(product: &str, version: &str) -> Value {
    json!({"product": product, "maker": "zeta", "version": version})
}

async fn report(f: &Fixture, token: &str, id: &str, seq: u64, units: Vec<Value>) {
    let body = json!({"device_id": id, "model": "zeta-mfp-1", "seq": seq, "trigger": "connect",
                      "observed_at_ms": common::NOW, "units": units});
    let (status, ack) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(token),
        json_body(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
}

async fn load(f: &Fixture, text: &str) -> u64 {
    let (status, v) = call(
        &f.app,
        "POST",
        "/api/v1/catalog",
        Some(&f.admin),
        Some(Body::from(text.to_owned())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["revision"].as_u64().expect("revision")
}

async fn compat(f: &Fixture, id: &str) -> Value {
    let (status, v) = call(
        &f.app,
        "GET",
        &format!("/api/v1/devices/{id}/compat"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

fn kinds(c: &Value) -> BTreeSet<String> {
    c["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["kind"].as_str().map(str::to_owned))
        .collect()
}

/// Wait until the device's stored findings are of exactly these kinds, judged by `revision`
/// or later (a device whose findings did not change keeps the revision that opened them).
async fn judged(f: &Fixture, store: &str, id: &str, want: &[&str], state: &str) -> Value {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    let what = format!("{store}: {id} has findings {want:?} and state {state}");
    eventually(&what, PATIENCE, || async {
        let c = compat(f, id).await;
        (kinds(&c) == want && c["state"] == state).then_some(c)
    })
    .await
}

async fn fleet_states(f: &Fixture) -> Value {
    let (status, v) = call(&f.app, "GET", "/api/v1/compat/fleet", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["by_state"].clone()
}

#[tokio::test]
async fn every_catalog_revision_judges_the_whole_fleet_against_itself() {
    for (store, f) in fixtures("every_catalog_revision_judges_the_whole_fleet_against_itself").await
    {
        // Two devices report before the center has any catalog.
        let t1 = enroll_as(&f, "ZETA-1", "zeta-mfp-1").await;
        let t2 = enroll_as(&f, "ZETA-2", "zeta-mfp-1").await;
        report(
            &f,
            &t1,
            "ZETA-1",
            1,
            vec![
                unit(
                    "controller",
                    "controller",
                    "zc-1",
                    "A",
                    json!([sw("zc-fw", "1.0"), sw("zx-app", "2.0")]),
                ),
                unit("finisher", "finisher", "zf-9", "", json!([])),
            ],
        )
        .await;
        report(
            &f,
            &t2,
            "ZETA-2",
            1,
            vec![unit(
                "controller",
                "controller",
                "zc-1",
                "R2",
                json!([sw("zc-fw", "1.0")]),
            )],
        )
        .await;
        assert_eq!(compat(&f, "ZETA-1").await["state"], "no_catalog");

        // The first catalog: the device model, the controller and its firmware are known
        // now; the finisher, the revision R2 and the product zx-app are not yet.
        let mut cat = Zeta {
            finisher: false,
            revision_r2: false,
            app: false,
            lib: false,
            lib_for_a: false,
        };
        assert_eq!(load(&f, &cat.text()).await, 1);
        let c = judged(
            &f,
            store,
            "ZETA-1",
            &["unknown_unit_model", "unknown_software"],
            "unknown",
        )
        .await;
        assert!(
            c["findings"]
                .as_array()
                .expect("findings")
                .iter()
                .any(|x| x["units"][0]["model"] == "zf-9"),
            "{c}"
        );
        let c = judged(&f, store, "ZETA-2", &["unknown_unit_model"], "unknown").await;
        assert!(
            c["findings"][0]["explanation"]
                .as_str()
                .is_some_and(|e| e.contains("R2")),
            "the revision is what is unknown: {c}"
        );

        // A revision that adds the finisher's unit model.
        cat.finisher = true;
        assert_eq!(load(&f, &cat.text()).await, 2);
        judged(&f, store, "ZETA-1", &["unknown_software"], "unknown").await;

        // A revision that adds the hardware revision R2.
        cat.revision_r2 = true;
        assert_eq!(load(&f, &cat.text()).await, 3);
        judged(&f, store, "ZETA-2", &[], "compatible").await;

        // A revision that adds the product zx-app and its release.
        cat.app = true;
        assert_eq!(load(&f, &cat.text()).await, 4);
        judged(&f, store, "ZETA-1", &[], "compatible").await;
        let states = eventually(
            &format!("{store}: the fleet counts agree"),
            PATIENCE,
            || async {
                let s = fleet_states(&f).await;
                (s["compatible"] == 2).then_some(s)
            },
        )
        .await;
        assert_eq!(states.as_object().map(|o| o.len()), Some(1), "{states}");

        // A revision that removes the finisher's unit model again.
        cat.finisher = false;
        assert_eq!(load(&f, &cat.text()).await, 5);
        let c = judged(&f, store, "ZETA-1", &["unknown_unit_model"], "unknown").await;
        assert_eq!(c["findings"][0]["catalog_revision"], 5);
        judged(&f, store, "ZETA-2", &[], "compatible").await;

        f.finish().await;
    }
}

#[tokio::test]
async fn a_device_no_software_set_can_fix_is_in_state_hardware_everywhere() {
    for (store, f) in
        fixtures("a_device_no_software_set_can_fix_is_in_state_hardware_everywhere").await
    {
        load(&f, &Zeta::everything().text()).await;
        // Its only finding is software ↔ software: zy-lib needs zc-fw 2.0, which no release
        // makes for its controller's revision A. Only another controller can fix it.
        let token = enroll_as(&f, "ZETA-HW", "zeta-mfp-1").await;
        report(
            &f,
            &token,
            "ZETA-HW",
            1,
            vec![unit(
                "controller",
                "controller",
                "zc-1",
                "A",
                json!([sw("zc-fw", "1.0"), sw("zy-lib", "1.0")]),
            )],
        )
        .await;
        let c = judged(&f, store, "ZETA-HW", &["software_software"], "hardware").await;
        assert!(c["plan"].is_null(), "{c}");
        assert!(
            c["no_plan"].as_str().is_some_and(|w| w.contains("zc-fw")),
            "no_plan says why: {c}"
        );
        let one = c["no_plan_summary"].as_str().unwrap_or_default();
        assert!(
            one.starts_with("no software set works: no release of")
                && one.contains("zc-1 rev A")
                && !one.contains('\n'),
            "the reasoning in one line: {c}"
        );
        assert_eq!(c["advice"][0]["hardware"][0]["to_hw_revision"], "R2", "{c}");
        // The fleet's counts (which the dashboard shows) agree, once the worker planned.
        let states = eventually(
            &format!("{store}: the fleet counts say hardware"),
            PATIENCE,
            || async {
                let s = fleet_states(&f).await;
                (s["hardware"] == 1).then_some(s)
            },
        )
        .await;
        assert!(states.get("software").is_none(), "{states}");
        // And a rollout bringing devices to their plans finds none for it.
        let (status, r) = call(
            &f.app,
            "POST",
            "/api/v1/rollouts",
            Some(&f.admin),
            json_body(&json!({"name": "fix", "filter": "", "waves": "100%",
                "requirements": {"online_within_s": 2_592_000, "trouble_severity": "major"}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{r}");
        let id = r["id"].as_u64().expect("id");
        f.state
            .rollouts
            .work(&f.state)
            .await
            .expect("the engine works");
        let (_, d) = call(
            &f.app,
            "GET",
            &format!("/api/v1/rollouts/{id}/devices"),
            Some(&f.admin),
            None,
        )
        .await;
        let dev = &d["devices"][0];
        assert_eq!(dev["state"], "ineligible", "{d}");
        assert!(
            dev["reason"]
                .as_str()
                .is_some_and(|r| r.contains("no plan")),
            "{d}"
        );

        // A revision makes zc-fw 2.0 for revision A too: the same finding, but now software
        // fixes it — the state says so and a version-change job waits for approval, without
        // a new report.
        load(
            &f,
            &Zeta {
                lib_for_a: true,
                ..Zeta::everything()
            }
            .text(),
        )
        .await;
        let c = judged(&f, store, "ZETA-HW", &["software_software"], "software").await;
        assert_eq!(c["plan"]["steps"][0]["to"], "2.0", "{c}");
        let job = eventually(
            &format!("{store}: a job for the plan"),
            PATIENCE,
            || async {
                let (_, v) = call(
                    &f.app,
                    "GET",
                    "/api/v1/jobs?device=ZETA-HW",
                    Some(&f.admin),
                    None,
                )
                .await;
                v["jobs"].as_array().and_then(|j| j.first().cloned())
            },
        )
        .await;
        assert_eq!(job["state"], "awaiting_approval", "{job}");
        eventually(
            &format!("{store}: the fleet counts say software"),
            PATIENCE,
            || async { (fleet_states(&f).await["software"] == 1).then_some(()) },
        )
        .await;
        f.finish().await;
    }
}
