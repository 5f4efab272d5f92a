//! Compatibility through the center's API: catalog loads (and refusals), judgement of reports,
//! plans becoming version-change jobs under the tenant's policy, advice notifications, and the
//! fleet re-judged after a catalog change.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::{Fixture, call, enroll_as, fixture, json_body};
use fleetcare_testkit::eventually;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(10);

fn sample_catalog() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/catalog.toml"
    ))
    .expect("examples/catalog.toml")
}

fn unit(slot: &str, kind: &str, model: &str, rev: &str, software: Value) -> Value {
    json!({"slot": slot, "kind": kind, "model": model, "serial": format!("{slot}-1"),
           "hw_revision": rev, "software": software})
}

fn sw(product: &str, maker: &str, version: &str) -> Value {
    json!({"product": product, "maker": maker, "version": version})
}

/// An acme-mfp-9000 whose controller runs `ctl` and engine runs `eng`.
fn mfp9000(ctl: &str, eng: &str) -> Vec<Value> {
    vec![
        unit(
            "controller",
            "controller",
            "ctl-x2",
            "B",
            json!([
                sw("ctl-firmware", "acme", ctl),
                sw("pdl-interpreter", "acme", "3.4")
            ]),
        ),
        unit(
            "engine",
            "engine",
            "eng-45c",
            "C",
            json!([sw("engine-firmware", "acme", eng)]),
        ),
        unit("fuser", "fuser", "fus-7", "A", json!([])),
    ]
}

async fn report(f: &Fixture, token: &str, id: &str, model: &str, seq: u64, units: Vec<Value>) {
    let body = json!({"device_id": id, "model": model, "seq": seq, "trigger": "change",
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

async fn load(f: &Fixture, text: &str) -> (StatusCode, Value) {
    call(
        &f.app,
        "POST",
        "/api/v1/catalog",
        Some(&f.admin),
        Some(Body::from(text.to_owned())),
    )
    .await
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

async fn jobs_of(f: &Fixture, id: &str) -> Vec<Value> {
    let (_, v) = call(
        &f.app,
        "GET",
        &format!("/api/v1/jobs?device={id}"),
        Some(&f.admin),
        None,
    )
    .await;
    v["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_catalog_that_contradicts_itself_is_refused_with_every_problem() {
    let f = fixture().await;
    let broken = "[[unit_model]]\nname = \"u\"\nkind = \"k\"\naccepted_by = [\"nowhere\"]\nsoftware = [\"ghost\"]\n";
    let (status, body) = load(&f, broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid");
    let problems: Vec<&str> = body["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("unknown device model \"nowhere\""))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("unknown product \"ghost\""))
    );
    let (status, _) = call(&f.app, "GET", "/api/v1/catalog", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    let (status, _) = load(&f, "not = [toml").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn software_findings_become_a_plan_and_a_job_under_the_policy() {
    let f = fixture().await;
    let (status, loaded) = load(&f, &sample_catalog()).await;
    assert_eq!(status, StatusCode::OK, "{loaded}");
    assert_eq!(loaded["revision"], 1);
    assert!(loaded["stats"]["rules"].as_u64() > Some(50));
    let (_, info) = call(
        &f.app,
        "GET",
        "/api/v1/catalog?source=true",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(info["revision"], 1);
    assert!(
        info["source"]
            .as_str()
            .is_some_and(|s| s.contains("acme-mfp-9000"))
    );

    // ctl-firmware 5.3.0 needs engine firmware >= 2.8.0-b45; the engine runs 2.7.4.
    let token = enroll_as(&f, "SW-1", "acme-mfp-9000").await;
    report(
        &f,
        &token,
        "SW-1",
        "acme-mfp-9000",
        1,
        mfp9000("5.3.0", "2.7.4"),
    )
    .await;
    let c = compat(&f, "SW-1").await;
    assert_eq!(c["state"], "software");
    assert_eq!(c["catalog_revision"], 1);
    let finding = &c["findings"][0];
    assert_eq!(finding["kind"], "software_software");
    assert!(
        finding["explanation"]
            .as_str()
            .is_some_and(|e| e.contains("requires engine-firmware >= 2.8.0-b45")),
        "{finding}"
    );
    assert_eq!(
        finding["rule"],
        "release ctl-firmware 5.3.0 requires engine-firmware >= 2.8.0-b45 on the engine"
    );
    assert_eq!(finding["units"][0]["slot"], "controller");
    let step = &c["plan"]["steps"][0];
    assert_eq!(
        (
            step["slot"].as_str(),
            step["product"].as_str(),
            step["to"].as_str(),
            step["action"].as_str()
        ),
        (
            Some("engine"),
            Some("engine-firmware"),
            Some("2.8.0-b45"),
            Some("install")
        ),
        "{c}"
    );

    // The default policy waits for approval.
    let job = eventually("a version-change job awaits approval", PATIENCE, || async {
        jobs_of(&f, "SW-1")
            .await
            .into_iter()
            .find(|j| j["state"] == "awaiting_approval")
    })
    .await;
    assert_eq!(job["origin"], "compat");
    assert_eq!(job["steps"][0]["to"], "2.8.0-b45");
    let id = job["id"].as_u64().expect("id");
    let (status, approved) = call(
        &f.app,
        "POST",
        &format!("/api/v1/jobs/{id}/approve"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["state"], "queued");
    assert_eq!(approved["approved_by"], "admin");
    let (status, again) = call(
        &f.app,
        "POST",
        &format!("/api/v1/jobs/{id}/approve"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_awaiting_approval"))
    );

    // With fix = automatic, jobs are queued at once.
    let (status, p) = call(&f.app, "PUT", "/api/v1/compat/policy", Some(&f.admin),
        json_body(&json!({"plan": "latest", "fix": "automatic", "out_of_service": true, "job_ttl_s": 3600}))).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    let token2 = enroll_as(&f, "SW-2", "acme-mfp-9000").await;
    report(
        &f,
        &token2,
        "SW-2",
        "acme-mfp-9000",
        1,
        mfp9000("5.3.0", "2.7.4"),
    )
    .await;
    let job = eventually("a queued job", PATIENCE, || async {
        jobs_of(&f, "SW-2")
            .await
            .into_iter()
            .find(|j| j["state"] == "queued")
    })
    .await;
    assert_eq!(
        job["steps"][0]["to"], "2.8.1",
        "latest policy: the newest compatible version"
    );

    // Fixed by the device: the finding closes, the device is compatible.
    report(
        &f,
        &token2,
        "SW-2",
        "acme-mfp-9000",
        2,
        mfp9000("5.3.0", "2.8.1"),
    )
    .await;
    let c = compat(&f, "SW-2").await;
    assert_eq!(c["state"], "compatible");
    assert_eq!(c["findings"].as_array().map(Vec::len), Some(0));
    assert!(c["plan"].is_null());

    let (status, bad) = call(
        &f.app,
        "PUT",
        "/api/v1/compat/policy",
        Some(&f.admin),
        json_body(
            &json!({"plan": "fastest", "fix": "sometimes", "out_of_service": true, "job_ttl_s": 1}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["problems"].as_array().map(Vec::len), Some(3), "{bad}");
}

#[tokio::test]
async fn hardware_findings_become_advice_notifications() {
    let f = fixture().await;
    load(&f, &sample_catalog()).await;
    // An mfp-7000 with the mfp-9000's fuser.
    let token = enroll_as(&f, "HW-1", "acme-mfp-7000").await;
    let units = vec![
        unit(
            "controller",
            "controller",
            "ctl-x2",
            "A",
            json!([
                sw("ctl-firmware", "acme", "5.1.9"),
                sw("pdl-interpreter", "acme", "3.3")
            ]),
        ),
        unit(
            "engine",
            "engine",
            "eng-35m",
            "B",
            json!([sw("engine-firmware", "acme", "2.7.4")]),
        ),
        unit("fuser", "fuser", "fus-7", "A", json!([])),
    ];
    report(&f, &token, "HW-1", "acme-mfp-7000", 1, units).await;
    let c = compat(&f, "HW-1").await;
    assert_eq!(c["state"], "hardware");
    assert_eq!(c["findings"][0]["kind"], "device_unit");
    let best = &c["advice"][0];
    assert_eq!(best["rank"], 1);
    assert_eq!(best["hardware"][0]["action"], "replace");
    assert_eq!(best["hardware"][0]["to_model"], "fus-5");
    let notice = eventually("an advice notification", PATIENCE, || async {
        compat(&f, "HW-1").await["notifications"]
            .as_array()
            .and_then(|n| n.first().cloned())
    })
    .await;
    assert_eq!(notice["kind"], "compat_advice");
    assert!(
        notice["summary"]
            .as_str()
            .is_some_and(|s| s.contains("fus-5")),
        "{notice}"
    );
    assert_eq!(
        notice["recommendations"][0]["hardware"][0]["to_model"],
        "fus-5"
    );

    // The device can ask for the same, with its own credential.
    let (status, own) = call(&f.app, "GET", "/device/v1/compat", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["findings"], c["findings"]);

    let (_, fleet) = call(&f.app, "GET", "/api/v1/compat/fleet", Some(&f.admin), None).await;
    assert_eq!(fleet["catalog_revision"], 1);
    assert_eq!(fleet["by_kind"]["device_unit"], 1);
    assert_eq!(fleet["by_state"]["hardware"], 1);
    assert_eq!(fleet["by_model"][0]["model"], "acme-mfp-7000");
}

#[tokio::test]
async fn a_new_catalog_revision_rejudges_the_fleet_without_new_reports() {
    let f = fixture().await;
    let catalog = sample_catalog();
    load(&f, &catalog).await;
    let token = enroll_as(&f, "OK-1", "acme-mfp-9000").await;
    report(
        &f,
        &token,
        "OK-1",
        "acme-mfp-9000",
        1,
        mfp9000("5.2.1", "2.8.0-b45"),
    )
    .await;
    assert_eq!(compat(&f, "OK-1").await["state"], "compatible");
    // Revision 2 withdraws engine-firmware 2.8.0-b45.
    let withdrawn = catalog.replace(
        "[[release]]\nproduct = \"engine-firmware\"\nversion = \"2.8.0-b45\"\ntargets = [{ unit_model = \"eng-45c\" }]\n",
        "",
    );
    assert_ne!(withdrawn, catalog, "the release was found and removed");
    let (status, loaded) = load(&f, &withdrawn).await;
    assert_eq!(status, StatusCode::OK, "{loaded}");
    assert_eq!(loaded["revision"], 2);
    let c = eventually(
        "the device re-judged against revision 2",
        PATIENCE,
        || async {
            let c = compat(&f, "OK-1").await;
            (c["state"] == "unknown").then_some(c)
        },
    )
    .await;
    let f0 = &c["findings"][0];
    assert_eq!(f0["kind"], "unknown_software");
    assert_eq!(f0["catalog_revision"], 2);
    let (_, revisions) = call(
        &f.app,
        "GET",
        "/api/v1/catalog/revisions",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(revisions.as_array().map(Vec::len), Some(2));
    // The pass counts its devices once all of its writes are done (after the device's).
    eventually("the re-judgement pass counted", PATIENCE, || async {
        (f.state
            .compat
            .rejudged
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1)
            .then_some(())
    })
    .await;
}
