//! Rollouts through the router, with an injected clock and the engine run by hand (one
//! `work()` a round, so every step is deterministic): proper-state checks and maintenance
//! windows, approval by someone other than the creator, each device's own plan (never an
//! incompatible assignment), gates, and progress from counters.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::{Fixture, call, enroll, enroll_as, fixture, json_body};
use serde_json::{Value, json};

fn unit(slot: &str, kind: &str, model: &str, rev: &str, software: Value) -> Value {
    json!({"slot": slot, "kind": kind, "model": model, "serial": format!("{slot}-1"),
           "hw_revision": rev, "software": software})
}

fn sw(product: &str, version: &str) -> Value {
    json!({"product": product, "maker": "acme", "version": version})
}

/// An acme-mfp-9000: controller (revision `rev`) runs `ctl`, engine runs `eng`.
fn mfp(rev: &str, ctl: &str, eng: &str) -> Vec<Value> {
    // pdl-interpreter 3.4 conflicts with ctl-firmware before 5.2.
    let pdl = if ctl.starts_with("5.1") { "3.3" } else { "3.4" };
    vec![
        unit(
            "controller",
            "controller",
            "ctl-x2",
            rev,
            json!([sw("ctl-firmware", ctl), sw("pdl-interpreter", pdl)]),
        ),
        unit(
            "engine",
            "engine",
            "eng-45c",
            "C",
            json!([sw("engine-firmware", eng)]),
        ),
        unit("fuser", "fuser", "fus-7", "A", json!([])),
    ]
}

async fn device(f: &Fixture, id: &str, model: &str, units: Vec<Value>) -> String {
    let token = enroll_as(f, id, model).await;
    let body = json!({"device_id": id, "model": model, "seq": 1, "trigger": "connect",
                      "observed_at_ms": common::NOW, "units": units});
    let (s, v) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&body),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    token
}

async fn catalog(f: &Fixture) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/catalog.toml"
    ))
    .expect("catalog");
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/catalog",
        Some(&f.admin),
        Some(Body::from(text)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn api(
    f: &Fixture,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call(
        &f.app,
        method,
        path,
        Some(token),
        body.as_ref().and_then(json_body),
    )
    .await
}

async fn work(f: &Fixture) {
    f.state
        .rollouts
        .work(&f.state)
        .await
        .expect("the engine works");
}

async fn rollout_devices(f: &Fixture, id: u64) -> Vec<Value> {
    let (s, v) = api(
        f,
        "GET",
        &format!("/api/v1/rollouts/{id}/devices"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["devices"].as_array().cloned().expect("devices")
}

fn state_of<'a>(devices: &'a [Value], id: &str) -> &'a Value {
    devices
        .iter()
        .find(|d| d["device_id"] == id)
        .unwrap_or_else(|| panic!("{id} in {devices:?}"))
}

async fn jobs_of(f: &Fixture, id: &str) -> Vec<Value> {
    let (_, v) = api(
        f,
        "GET",
        &format!("/api/v1/jobs?device={id}"),
        &f.admin,
        None,
    )
    .await;
    v["jobs"].as_array().cloned().unwrap_or_default()
}

/// A second operator of the tenant (approvals need someone other than the creator).
async fn operator(f: &Fixture, name: &str) -> String {
    let token = format!("fco_{name}_token");
    f.store
        .add_operator_token(
            f.tenant,
            name,
            "admin",
            &fleetcare_core::secret::hash(&token),
            common::NOW,
        )
        .await
        .expect("token");
    token
}

fn create(release: Option<(&str, &str)>, filter: &str, waves: &str, extra: Value) -> Value {
    // The jobs' states are moved by hand here: the release need not be on the center.
    let mut v = json!({"name": "test", "filter": filter, "waves": waves, "allow_unpublished": true,
        "requirements": {"online_within_s": 2_592_000, "trouble_severity": "major"}});
    if let Some((p, ver)) = release {
        v["release"] = json!({"product": p, "version": ver});
    }
    if let Value::Object(m) = extra {
        for (k, x) in m {
            v[k] = x;
        }
    }
    v
}

/// Move the clock to an RFC 3339 instant (forward only).
fn set_clock(f: &Fixture, at: &str) {
    let target = at
        .parse::<jiff::Timestamp>()
        .expect("instant")
        .as_millisecond();
    let now = fleetcare_core::clock::Clock::now_ms(&f.clock);
    assert!(target >= now, "the clock only moves forward");
    f.clock.advance(Duration::from_millis(
        u64::try_from(target - now).expect("forward"),
    ));
}

#[tokio::test]
async fn each_device_gets_its_own_plan_and_never_an_incompatible_one() {
    let f = fixture().await;
    catalog(&f).await;
    // Ready as it is; needs newer engine firmware for 5.3.0; a revision-A controller 5.3.0
    // is not made for; a printer that runs no ctl-firmware.
    let ready_token = device(&f, "MIX-READY", "acme-mfp-9000", mfp("B", "5.2.1", "2.8.1")).await;
    let engine_token = device(
        &f,
        "MIX-ENGINE",
        "acme-mfp-9000",
        mfp("B", "5.2.1", "2.7.4"),
    )
    .await;
    device(&f, "MIX-REVA", "acme-mfp-9000", mfp("A", "5.1.9", "2.8.1")).await;
    device(&f, "MIX-DONE", "acme-mfp-9000", mfp("B", "5.3.0", "2.8.1")).await;
    device(
        &f,
        "MIX-P500",
        "acme-printer-p500",
        vec![unit(
            "controller",
            "controller",
            "ctl-lite",
            "C",
            json!([sw("ctl-lite-firmware", "1.9.12")]),
        )],
    )
    .await;
    let (s, r) = api(
        &f,
        "POST",
        "/api/v1/rollouts",
        &f.admin,
        Some(create(
            Some(("ctl-firmware", "5.3.0")),
            "",
            "100%",
            json!({}),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["id"].as_u64().expect("id");
    assert_eq!(r["total"]["devices"], 5, "{r}");
    work(&f).await;
    let d = rollout_devices(&f, id).await;
    assert_eq!(state_of(&d, "MIX-P500")["state"], "skipped");
    assert_eq!(
        state_of(&d, "MIX-DONE")["state"],
        "succeeded",
        "already on it"
    );
    let reva = state_of(&d, "MIX-REVA");
    assert_eq!(reva["state"], "ineligible", "{reva}");
    assert!(
        reva["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no plan")),
        "{reva}"
    );
    assert!(
        jobs_of(&f, "MIX-REVA").await.is_empty(),
        "never given a release it cannot run"
    );
    // The device's own plan: the engine firmware 5.3.0 needs comes with it, in one job.
    let jobs = jobs_of(&f, "MIX-ENGINE").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let steps: Vec<(String, String)> = jobs[0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["product"].as_str().unwrap_or("").to_owned(),
                s["to"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        steps.contains(&("ctl-firmware".into(), "5.3.0".into())),
        "{steps:?}"
    );
    assert!(
        steps.iter().any(|(p, _)| p == "engine-firmware"),
        "{steps:?}"
    );
    let ready = jobs_of(&f, "MIX-READY").await;
    assert_eq!(ready.len(), 1);
    assert_eq!(
        ready[0]["steps"].as_array().map(Vec::len),
        Some(1),
        "{ready:?}"
    );
    // Progress comes from the counters.
    let (_, r) = api(&f, "GET", &format!("/api/v1/rollouts/{id}"), &f.admin, None).await;
    assert_eq!(
        (
            r["total"]["running"].as_u64(),
            r["total"]["ineligible"].as_u64(),
            r["total"]["skipped"].as_u64(),
            r["total"]["succeeded"].as_u64()
        ),
        (Some(2), Some(1), Some(1), Some(1)),
        "{r}"
    );
    assert!(
        r["waves"][0]["started_at"].is_string(),
        "the first wave says when it started: {r}"
    );
    assert_eq!(r["state"], "running");

    // Both installs succeed: nothing is left to do, and the rollout ends, saying how.
    for (id, token) in [("MIX-READY", &ready_token), ("MIX-ENGINE", &engine_token)] {
        let job = jobs_of(&f, id).await[0]["id"].as_u64().expect("job");
        let (s, v) = call(
            &f.app,
            "POST",
            &format!("/device/v1/jobs/{job}/status"),
            Some(token),
            json_body(&json!({"state": "succeeded"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    work(&f).await;
    let (_, r) = api(&f, "GET", &format!("/api/v1/rollouts/{id}"), &f.admin, None).await;
    assert_eq!(r["state"], "done", "{r}");
    assert!(
        r["state_reason"]
            .as_str()
            .is_some_and(|s| s.starts_with("done with 1 ineligible: 3 succeeded")),
        "{r}"
    );
}

#[tokio::test]
async fn maintenance_windows_are_kept_in_the_sites_own_time() {
    let f = fixture().await;
    catalog(&f).await;
    // Tuesday 2026-12-01 12:00 UTC: 13:00 in Berlin, outside the window.
    set_clock(&f, "2026-12-01T12:00:00Z");
    device(&f, "WIN-1", "acme-mfp-9000", mfp("B", "5.2.1", "2.8.1")).await;
    device(&f, "WIN-2", "acme-mfp-9000", mfp("B", "5.2.1", "2.8.1")).await;
    let (s, v) = api(
        &f,
        "PUT",
        "/api/v1/sites/berlin",
        &f.admin,
        Some(json!({"timezone": "Europe/Berlin", "windows": ["mon-fri 22:00-06:00"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api(
        &f,
        "PUT",
        "/api/v1/sites/moon",
        &f.admin,
        Some(json!({"timezone": "Moon/Tranquility", "windows": ["mon 25:00-26:00"]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(2), "{v}");
    let (s, _) = api(
        &f,
        "PUT",
        "/api/v1/devices/WIN-1/labels",
        &f.admin,
        Some(json!({"site": "berlin", "tags": ["pilot"]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = api(
        &f,
        "POST",
        "/api/v1/rollouts",
        &f.admin,
        Some(create(
            Some(("ctl-firmware", "5.3.0")),
            "",
            "100%",
            json!({}),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["id"].as_u64().expect("id");
    work(&f).await;
    let d = rollout_devices(&f, id).await;
    assert_eq!(
        state_of(&d, "WIN-2")["state"],
        "running",
        "no site: no window"
    );
    let w1 = state_of(&d, "WIN-1");
    assert_eq!(w1["state"], "ineligible");
    assert!(
        w1["reason"]
            .as_str()
            .is_some_and(|r| r.contains("maintenance window")),
        "{w1}"
    );
    assert!(jobs_of(&f, "WIN-1").await.is_empty());
    // 21:30 UTC is 22:30 in Berlin (CET): the window is open, and the device is dispatched
    // when it is looked at again.
    set_clock(&f, "2026-12-01T21:30:00Z");
    work(&f).await;
    let d = rollout_devices(&f, id).await;
    assert_eq!(state_of(&d, "WIN-1")["state"], "running", "{d:?}");
    assert_eq!(jobs_of(&f, "WIN-1").await.len(), 1);
    // The filter language selects by site and tag.
    let (s, r) = api(
        &f,
        "POST",
        "/api/v1/rollouts",
        &f.admin,
        Some(create(
            None,
            "site = \"berlin\" and tag = \"pilot\"",
            "100%",
            json!({}),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["total"]["devices"], 1, "{r}");
    let (s, v) = api(
        &f,
        "POST",
        "/api/v1/rollouts",
        &f.admin,
        Some(create(
            None,
            "site = berlin'; DROP TABLE devices",
            "100%",
            json!({}),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("character")),
        "{v}"
    );
}

#[tokio::test]
async fn no_one_approves_their_own_rollout_or_its_waves() {
    let f = fixture().await;
    catalog(&f).await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(
            device(
                &f,
                &format!("APR-{i}"),
                "acme-mfp-9000",
                mfp("B", "5.2.1", "2.8.1"),
            )
            .await,
        );
    }
    let bob = operator(&f, "bob").await;
    let (s, r) = api(&f, "POST", "/api/v1/rollouts", &f.admin,
        Some(create(Some(("ctl-firmware", "5.3.0")), "", "1,100%",
            json!({"require_approval": true, "gates": {"advance": "approval", "min_finished": 1}, "seed": 7})))).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["id"].as_u64().expect("id");
    assert_eq!(r["state"], "awaiting_approval");
    work(&f).await;
    assert!(
        rollout_devices(&f, id)
            .await
            .iter()
            .all(|d| d["state"] == "pending"),
        "nothing before approval"
    );
    let (s, v) = api(
        &f,
        "POST",
        &format!("/api/v1/rollouts/{id}/approve"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("their own")),
        "{v}"
    );
    let (s, v) = api(
        &f,
        "POST",
        &format!("/api/v1/rollouts/{id}/approve"),
        &bob,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "running");
    assert_eq!(v["approved_by"], "bob");
    work(&f).await;
    let d = rollout_devices(&f, id).await;
    let canary: Vec<&Value> = d.iter().filter(|d| d["wave"] == 1).collect();
    assert_eq!(canary.len(), 1, "a canary of one: {d:?}");
    assert_eq!(canary[0]["state"], "running");
    assert!(
        d.iter()
            .filter(|d| d["wave"] == 2)
            .all(|d| d["state"] == "pending")
    );
    // The canary succeeds: the next wave waits for approval, again not by the creator.
    let cid = canary[0]["device_id"].as_str().expect("id").to_owned();
    let job = canary[0]["job_id"].as_u64().expect("job");
    let n: usize = cid.trim_start_matches("APR-").parse().expect("n");
    let (s, v) = call(
        &f.app,
        "POST",
        &format!("/device/v1/jobs/{job}/status"),
        Some(&tokens[n]),
        json_body(&json!({"state": "succeeded"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    work(&f).await;
    let (_, r) = api(&f, "GET", &format!("/api/v1/rollouts/{id}"), &f.admin, None).await;
    assert_eq!(r["state_reason"], "wave 2 waits for approval", "{r}");
    assert_eq!(r["awaiting_wave"], 2, "{r}");
    assert_eq!(r["current_wave"], 1);
    let (s, _) = api(
        &f,
        "POST",
        &format!("/api/v1/rollouts/{id}/approve"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api(
        &f,
        "POST",
        &format!("/api/v1/rollouts/{id}/approve"),
        &bob,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    work(&f).await;
    let d = rollout_devices(&f, id).await;
    assert!(
        d.iter()
            .filter(|d| d["wave"] == 2)
            .all(|d| d["state"] == "running"),
        "{d:?}"
    );
    // Pause, resume, abort: jobs not started are cancelled.
    let (s, v) = api(
        &f,
        "POST",
        &format!("/api/v1/rollouts/{id}/pause"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("paused")));
    let (s, _) = api(
        &f,
        "POST",
        &format!("/api/v1/rollouts/{id}/pause"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = api(
        &f,
        "POST",
        &format!("/api/v1/rollouts/{id}/resume"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("running")));
    let (s, v) = api(
        &f,
        "POST",
        &format!("/api/v1/rollouts/{id}/abort"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("aborted")),
        "{v}"
    );
    assert_eq!(v["total"]["running"], 0, "{v}");
    assert_eq!(v["total"]["skipped"], 3, "cancelled: {v}");
    for i in 0..4 {
        for j in jobs_of(&f, &format!("APR-{i}")).await {
            assert!(
                matches!(j["state"].as_str(), Some("succeeded") | Some("failed")),
                "{j}"
            );
        }
    }
}

#[tokio::test]
async fn failures_pause_the_rollout_before_its_next_wave() {
    let f = fixture().await;
    catalog(&f).await;
    let mut tokens = std::collections::BTreeMap::new();
    for i in 0..20 {
        let id = format!("GATE-{i:02}");
        tokens.insert(
            id.clone(),
            device(&f, &id, "acme-mfp-9000", mfp("B", "5.2.1", "2.8.1")).await,
        );
    }
    let (s, r) = api(
        &f,
        "POST",
        "/api/v1/rollouts",
        &f.admin,
        Some(create(
            Some(("ctl-firmware", "5.3.0")),
            "",
            "5,100%",
            json!({"gates": {"failure_count": 2, "failure_ratio": null}, "seed": 3}),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["id"].as_u64().expect("id");
    work(&f).await;
    let d = rollout_devices(&f, id).await;
    let canary: Vec<&Value> = d.iter().filter(|d| d["wave"] == 1).collect();
    assert_eq!(canary.len(), 5);
    // Two of the canary fail their health check.
    for (i, c) in canary.iter().enumerate() {
        let job = c["job_id"].as_u64().expect("dispatched");
        let token = &tokens[c["device_id"].as_str().expect("id")];
        let body = if i < 2 {
            json!({"state": "rolled_back", "reason": "health_check"})
        } else {
            json!({"state": "succeeded"})
        };
        let (s, v) = call(
            &f.app,
            "POST",
            &format!("/device/v1/jobs/{job}/status"),
            Some(token),
            json_body(&body),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    work(&f).await;
    work(&f).await;
    let (_, r) = api(&f, "GET", &format!("/api/v1/rollouts/{id}"), &f.admin, None).await;
    assert_eq!(r["state"], "paused", "{r}");
    assert!(
        r["state_reason"]
            .as_str()
            .is_some_and(|s| s.contains("2 installs failed")),
        "{r}"
    );
    assert_eq!(r["waves"][0]["failed"], 2, "{r}");
    assert_eq!(r["waves"][0]["succeeded"], 3, "{r}");
    let d = rollout_devices(&f, id).await;
    for x in d.iter().filter(|x| x["wave"] == 2) {
        assert_eq!(x["state"], "pending", "no device of a later wave: {x}");
        assert!(
            jobs_of(&f, x["device_id"].as_str().expect("id"))
                .await
                .is_empty()
        );
    }
    // A device outside any rollout that reports later is not touched; a newcomer matching
    // the filter joins in its wave.
    let _ = enroll(&f, "UNRELATED").await;
    device(&f, "GATE-NEW", "acme-mfp-9000", mfp("B", "5.2.1", "2.8.1")).await;
    let (s, _) = api(
        &f,
        "POST",
        &format!("/api/v1/rollouts/{id}/resume"),
        &f.admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    work(&f).await;
    let d = rollout_devices(&f, id).await;
    assert!(
        d.iter().any(|x| x["device_id"] == "GATE-NEW"),
        "the newcomer joined: {d:?}"
    );
}

/// Rules with one trouble of each severity that matters, and the fuser's life.
const GATE_RULES: &str = r#"
[[rule]]
id = "crit"
title = "A critical fault"
severity = "critical"
action = "Call the service."
match = { code = "E-CRIT" }
count = 1
within = "1h"

[[rule]]
id = "maj"
title = "A major fault"
severity = "major"
action = "Look at it."
match = { code = "E-MAJ" }
count = 1
within = "1h"

[[rule]]
id = "min"
title = "A minor fault"
severity = "minor"
action = "Watch it."
match = { code = "E-MIN" }
count = 1
within = "1h"

[[abnormal]]
id = "fuser-beyond-life"
title = "Fuser beyond its expected life"
unit_kind = "fuser"
counter = "{slot}.life_pages"
expected_life = { "fus-7" = 300_000 }
"#;

#[tokio::test]
async fn a_live_trouble_at_the_threshold_or_an_abnormal_unit_keeps_a_device_out_of_a_rollout() {
    let f = fixture().await;
    catalog(&f).await;
    let (s, v) = call(
        &f.app,
        "PUT",
        "/api/v1/rules",
        Some(&f.admin),
        Some(Body::from(GATE_RULES)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut tokens = std::collections::BTreeMap::new();
    for id in ["GATE-OK", "GATE-MIN", "GATE-MAJ", "GATE-CRIT", "GATE-ABN"] {
        tokens.insert(
            id,
            device(&f, id, "acme-mfp-9000", mfp("B", "5.2.1", "2.8.1")).await,
        );
    }
    // Troubles from the devices' error logs.
    for (id, code) in [
        ("GATE-MIN", "E-MIN"),
        ("GATE-MAJ", "E-MAJ"),
        ("GATE-CRIT", "E-CRIT"),
    ] {
        let body = json!({"device_id": id, "boot_epoch": 1, "trigger": "immediate", "events": [
            {"seq": 1, "at_ms": common::NOW, "slot": "fuser", "code": code, "severity": "error"}]});
        let (s, v) = call(
            &f.app,
            "POST",
            "/device/v1/errors",
            Some(&tokens[id]),
            json_body(&body),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // An abnormal fuser, from the device's operating info.
    let body = json!({"device_id": "GATE-ABN", "model": "acme-mfp-9000", "seq": 2, "trigger": "periodic",
        "observed_at_ms": common::NOW, "units": mfp("B", "5.2.1", "2.8.1"),
        "operating": {"fuser.life_pages": 412_000}});
    let (s, v) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&tokens["GATE-ABN"]),
        json_body(&body),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    fleetcare_testkit::eventually("three live troubles", Duration::from_secs(10), || async {
        let (_, v) = call(&f.app, "GET", "/api/v1/troubles", Some(&f.admin), None).await;
        (v["troubles"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;

    // What each device is told of its own proper state is what the rollout decides below.
    let mut told = std::collections::BTreeMap::new();
    for (id, token) in &tokens {
        let (s, about) = call(&f.app, "GET", "/device/v1/about", Some(token), None).await;
        assert_eq!(s, StatusCode::OK, "{about}");
        told.insert(*id, about["rollout_eligible"].as_bool().expect("a verdict"));
    }

    let (s, r) = api(
        &f,
        "POST",
        "/api/v1/rollouts",
        &f.admin,
        Some(create(
            Some(("ctl-firmware", "5.3.0")),
            "",
            "100%",
            json!({}),
        )),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["id"].as_u64().expect("id");
    work(&f).await;
    let devices = rollout_devices(&f, id).await;
    for (dev, state, reason) in [
        ("GATE-OK", "running", ""),
        ("GATE-MIN", "running", ""),
        ("GATE-MAJ", "ineligible", "a major trouble is open"),
        ("GATE-CRIT", "ineligible", "a critical trouble is open"),
        ("GATE-ABN", "ineligible", "abnormal unit: fuser"),
    ] {
        let d = state_of(&devices, dev);
        assert_eq!(d["state"], state, "{dev}: {d}");
        assert!(
            d["reason"].as_str().unwrap_or("").contains(reason),
            "{dev}: {d}"
        );
        assert_eq!(
            told[dev],
            state == "running",
            "{dev}: /device/v1/about says what the rollout decided"
        );
    }
}
