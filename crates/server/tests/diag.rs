//! Diagnosis through the center's API: rules loaded (and refused), troubles judged from error
//! batches with their lifecycle, fleet-wide rules and the fix loop (jobs for exactly the
//! affected devices whose plan allows the fix, a setting pushed), abnormal units from
//! operating info, what a device can ask, and the engines rebuilt after a restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::{Fixture, call, enroll_as, fixture, json_body};
use fleetcare_server::{AppState, ServerConfig, app};
use fleetcare_testkit::eventually;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(10);

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("an example file")
}

fn unit(slot: &str, kind: &str, model: &str, rev: &str, software: Value) -> Value {
    json!({"slot": slot, "kind": kind, "model": model, "serial": format!("{slot}-1"),
           "hw_revision": rev, "software": software})
}

fn sw(product: &str, version: &str) -> Value {
    json!({"product": product, "maker": "acme", "version": version})
}

/// An acme-mfp-9000 whose controller runs `ctl` and engine runs `eng`.
fn mfp9000(ctl: &str, eng: &str) -> Vec<Value> {
    vec![
        unit(
            "controller",
            "controller",
            "ctl-x2",
            "B",
            json!([sw("ctl-firmware", ctl), sw("pdl-interpreter", "3.4")]),
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

async fn report(f: &Fixture, token: &str, id: &str, seq: u64, units: Vec<Value>, operating: Value) {
    let body = json!({"device_id": id, "model": "acme-mfp-9000", "seq": seq, "trigger": "change",
                      "observed_at_ms": common::NOW, "units": units, "operating": operating});
    post_report(f, token, &body).await;
}

/// Post a structure report; it must be accepted.
async fn post_report(f: &Fixture, token: &str, body: &Value) {
    let (status, ack) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(token),
        json_body(body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
}

async fn device(f: &Fixture, id: &str, ctl: &str, eng: &str) -> String {
    let token = enroll_as(f, id, "acme-mfp-9000").await;
    report(f, &token, id, 1, mfp9000(ctl, eng), json!({})).await;
    token
}

/// Send events `(seq, slot, code, severity)` of boot epoch 1; the acknowledgement.
async fn send(f: &Fixture, token: &str, id: &str, events: &[(u64, &str, &str, &str)]) -> Value {
    let events: Vec<Value> = events
        .iter()
        .map(|(seq, slot, code, sev)| {
            json!({"seq": seq, "at_ms": common::NOW + *seq as i64 * 1000, "slot": slot,
                   "code": code, "severity": sev, "counters": {"pages_total": 1000 + seq}})
        })
        .collect();
    let (status, ack) = call(
        &f.app,
        "POST",
        "/device/v1/errors",
        Some(token),
        json_body(
            &json!({"device_id": id, "boot_epoch": 1, "trigger": "immediate", "events": events}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    ack
}

/// The example catalog loaded for the tenant.
async fn load_example_catalog(f: &Fixture) {
    let (status, v) = call(
        &f.app,
        "POST",
        "/api/v1/catalog",
        Some(&f.admin),
        Some(Body::from(example("catalog.toml"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

async fn load_rules(f: &Fixture, text: &str) -> (StatusCode, Value) {
    call(
        &f.app,
        "PUT",
        "/api/v1/rules",
        Some(&f.admin),
        Some(Body::from(text.to_owned())),
    )
    .await
}

async fn troubles(f: &Fixture, query: &str) -> Vec<Value> {
    let (status, v) = call(
        &f.app,
        "GET",
        &format!("/api/v1/troubles?{query}"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["troubles"].as_array().cloned().unwrap_or_default()
}

async fn one_trouble(f: &Fixture, query: &str, what: &str) -> Value {
    eventually(what, PATIENCE, || async {
        let t = troubles(f, query).await;
        (t.len() == 1).then(|| t[0].clone())
    })
    .await
}

#[tokio::test]
async fn rules_that_contradict_themselves_are_refused_and_change_nothing() {
    let f = fixture().await;
    let (status, v) = load_rules(
        &f,
        r#"
[[rule]]
id = "x"
title = "X"
severity = "dire"
action = "Do."
match = { code = "E1" }
count = 3
"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let problems = v["problems"].to_string();
    assert!(problems.contains("severity: \\\"dire\\\""), "{v}");
    assert!(problems.contains("count needs within"), "{v}");
    let (_, shown) = call(&f.app, "GET", "/api/v1/rules", Some(&f.admin), None).await;
    assert_eq!(
        shown["revision"],
        Value::Null,
        "a refused file stores nothing: {shown}"
    );

    let (status, v) = load_rules(&f, &example("rules.toml")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["revision"].as_u64(), v["rules"].as_u64()),
        (Some(1), Some(5))
    );
    let (_, shown) = call(&f.app, "GET", "/api/v1/rules", Some(&f.admin), None).await;
    assert_eq!(shown["revision"], 1);
    let overheat = shown["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == "fuser-overheat"))
        .cloned()
        .expect("the overheat rule");
    assert_eq!(
        overheat["condition"],
        "3 events (code SC54*, on a fuser, error or worse) within 1 hour"
    );
}

#[tokio::test]
async fn a_trouble_opens_recurs_is_acknowledged_and_resolves_when_quiet() {
    let f = fixture().await;
    assert_eq!(
        load_rules(&f, &example("rules.toml")).await.0,
        StatusCode::OK
    );
    let token = device(&f, "D-1", "5.2.1", "2.8.1").await;

    // Two overheats, a warning and an event on another unit: nothing yet.
    send(
        &f,
        &token,
        "D-1",
        &[
            (1, "fuser", "SC541", "error"),
            (2, "fuser", "SC542", "warning"),
            (3, "engine", "SC541", "error"),
            (4, "fuser", "SC541", "critical"),
        ],
    )
    .await;
    // The third opens it; sending the same batch again (a retry) counts nothing twice.
    let batch = [(5, "fuser", "SC549", "error")];
    send(&f, &token, "D-1", &batch).await;
    let t = one_trouble(&f, "device=D-1", "a trouble opens").await;
    assert_eq!(
        (
            t["rule_id"].as_str(),
            t["state"].as_str(),
            t["severity"].as_str()
        ),
        (Some("fuser-overheat"), Some("open"), Some("major"))
    );
    let evidence: Vec<u64> = t["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(evidence, vec![1, 4, 5]);
    assert!(
        t["action"]
            .as_str()
            .is_some_and(|a| a.contains("thermistor")),
        "{t}"
    );
    let ack = send(&f, &token, "D-1", &batch).await;
    assert_eq!(ack["duplicates"], 1);
    send(&f, &token, "D-1", &[(6, "fuser", "SC541", "error")]).await;
    let id = t["id"].as_u64().expect("id");
    let t = eventually("the recurrence is counted", PATIENCE, || async {
        let t = troubles(&f, "device=D-1").await;
        t.first().filter(|t| t["occurrences"] == 4).cloned()
    })
    .await;
    assert_eq!(t["id"], id, "a recurrence is the same trouble");

    let (status, acked) = call(
        &f.app,
        "POST",
        &format!("/api/v1/troubles/{id}/ack"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(
        (
            status,
            acked["state"].as_str(),
            acked["acknowledged_by"].as_str()
        ),
        (StatusCode::OK, Some("acknowledged"), Some("admin"))
    );
    let (status, again) = call(
        &f.app,
        "POST",
        &format!("/api/v1/troubles/{id}/ack"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_open"))
    );

    // Quiet for the rule's two days: it resolves itself, and the count starts afresh.
    f.clock.advance(Duration::from_secs(2 * 86_400 + 1));
    f.state.diag.resolve_quiet(&f.state).await;
    let (_, t) = call(
        &f.app,
        "GET",
        &format!("/api/v1/troubles/{id}"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(
        (t["state"].as_str(), t["resolved_by"].as_str()),
        (Some("resolved"), Some("center (quiet period)"))
    );
    send(
        &f,
        &token,
        "D-1",
        &[
            (7, "fuser", "SC541", "error"),
            (8, "fuser", "SC541", "error"),
        ],
    )
    .await;
    assert!(
        troubles(&f, "device=D-1").await.is_empty(),
        "two events are not three"
    );
    send(&f, &token, "D-1", &[(9, "fuser", "SC541", "error")]).await;
    let t2 = one_trouble(&f, "device=D-1", "a new trouble opens").await;
    assert_ne!(t2["id"], id);
    let id2 = t2["id"].as_u64().expect("id");
    let (status, r) = call(
        &f.app,
        "POST",
        &format!("/api/v1/troubles/{id2}/resolve"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(
        (status, r["state"].as_str(), r["resolved_by"].as_str()),
        (StatusCode::OK, Some("resolved"), Some("admin"))
    );
    assert_eq!(troubles(&f, "state=resolved&device=D-1").await.len(), 2);
    let (status, _) = call(
        &f.app,
        "GET",
        "/api/v1/troubles?state=later",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&f.app, "GET", "/api/v1/troubles/999", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_fleet_wide_defect_gets_its_fix_on_exactly_the_affected_devices() {
    let f = fixture().await;
    load_example_catalog(&f).await;
    assert_eq!(
        load_rules(&f, &example("rules.toml")).await.0,
        StatusCode::OK
    );
    // Four devices on ctl-firmware 5.2.1 with a 2.8 engine (5.3.0 fits them), one whose
    // engine firmware 5.3.0 does not accept, one already on 5.3.0, one that logs nothing.
    let mut tokens = Vec::new();
    for (id, ctl, eng) in [
        ("F-1", "5.2.1", "2.8.1"),
        ("F-2", "5.2.1", "2.8.1"),
        ("F-3", "5.2.1", "2.8.1"),
        ("F-4", "5.2.1", "2.7.4"),
        ("F-5", "5.3.0", "2.8.1"),
        ("F-6", "5.2.1", "2.8.1"),
    ] {
        tokens.push(device(&f, id, ctl, eng).await);
    }
    // F-5's watchdog resets are another signature (other firmware): not counted with the others.
    send(
        &f,
        &tokens[4],
        "F-5",
        &[(1, "controller", "SC899", "error")],
    )
    .await;
    send(
        &f,
        &tokens[0],
        "F-1",
        &[(1, "controller", "SC899", "error")],
    )
    .await;
    send(
        &f,
        &tokens[3],
        "F-4",
        &[(1, "controller", "SC899", "error")],
    )
    .await;
    assert!(
        troubles(&f, "").await.is_empty(),
        "two devices are not three"
    );
    send(
        &f,
        &tokens[1],
        "F-2",
        &[(1, "controller", "SC899", "error")],
    )
    .await;
    let opened = eventually("three devices get the trouble", PATIENCE, || async {
        let t = troubles(&f, "rule=ctl-521-watchdog").await;
        (t.len() == 3 && t.iter().all(|t| t["fix_outcome"].is_string())).then_some(t)
    })
    .await;
    let mut ids: Vec<&str> = opened
        .iter()
        .filter_map(|t| t["device_id"].as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["F-1", "F-2", "F-4"]);
    assert!(
        opened[0]["note"]
            .as_str()
            .is_some_and(|n| n.contains("ctl-firmware 5.2.1")),
        "{}",
        opened[0]
    );
    let outcome = |id: &str| {
        opened
            .iter()
            .find(|t| t["device_id"] == id)
            .and_then(|t| t["fix_outcome"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        outcome("F-1").starts_with("job ") && outcome("F-1").contains("ctl-firmware 5.3.0"),
        "{}",
        outcome("F-1")
    );
    assert!(
        outcome("F-4").contains("would make the device incompatible"),
        "{}",
        outcome("F-4")
    );

    let (_, jobs) = call(&f.app, "GET", "/api/v1/jobs", Some(&f.admin), None).await;
    let mut fixes: Vec<(String, String)> = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["origin"] == "diagnosis")
        .map(|j| {
            (
                j["device_id"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{} {} {}",
                    j["state"].as_str().unwrap_or_default(),
                    j["steps"][0]["product"].as_str().unwrap_or_default(),
                    j["steps"][0]["to"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect();
    fixes.sort();
    assert_eq!(
        fixes,
        [
            (
                "F-1".to_owned(),
                "awaiting_approval ctl-firmware 5.3.0".to_owned()
            ),
            (
                "F-2".to_owned(),
                "awaiting_approval ctl-firmware 5.3.0".to_owned()
            ),
        ]
    );

    // A fourth device with the signature gets the trouble (and its fix) at once.
    send(
        &f,
        &tokens[2],
        "F-3",
        &[(1, "controller", "SC899", "error")],
    )
    .await;
    one_trouble(
        &f,
        "rule=ctl-521-watchdog&device=F-3",
        "the fourth device's trouble",
    )
    .await;
    assert!(troubles(&f, "device=F-6").await.is_empty());
    assert!(troubles(&f, "device=F-5").await.is_empty());

    // Every trouble names its fix job as it is now; the fix succeeding marks the trouble
    // fixed (no longer keeping the device out of rollouts), a matching event after it opens
    // it again, and quiet until the rule's period passes resolves it.
    let fix_of = |id: &str| {
        let t = opened
            .iter()
            .find(|t| t["device_id"] == id)
            .expect("trouble")
            .clone();
        (
            t["id"].as_u64().expect("id"),
            t["fix_job"]["id"].as_u64().expect("a fix job"),
        )
    };
    let (t1, job1) = fix_of("F-1");
    let (t2, job2) = fix_of("F-2");
    let shown = |t: u64| {
        let f = &f;
        async move {
            call(
                &f.app,
                "GET",
                &format!("/api/v1/troubles/{t}"),
                Some(&f.admin),
                None,
            )
            .await
            .1
        }
    };
    assert_eq!(shown(t1).await["fix_job"]["state"], "awaiting_approval");
    let (_, about) = call(
        &f.app,
        "GET",
        "/api/v1/devices/F-1/about",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(about["rollout_eligible"], false, "{about}");
    for (job, token) in [(job1, &tokens[0]), (job2, &tokens[1])] {
        let (s, v) = call(
            &f.app,
            "POST",
            &format!("/api/v1/jobs/{job}/approve"),
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
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
    let fixed = shown(t1).await;
    assert_eq!(
        (fixed["state"].as_str(), fixed["fix_job"]["state"].as_str()),
        (Some("fixed"), Some("succeeded")),
        "{fixed}"
    );
    assert!(fixed["fixed_at"].is_string(), "{fixed}");
    let (_, about) = call(
        &f.app,
        "GET",
        "/api/v1/devices/F-1/about",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(about["rollout_eligible"], true, "{about}");
    assert_eq!(about["troubles"][0]["state"], "fixed", "{about}");

    // F-1 resets again: the fix did not help, and the trouble says so.
    send(
        &f,
        &tokens[0],
        "F-1",
        &[(2, "controller", "SC899", "error")],
    )
    .await;
    let again = eventually("F-1's trouble opens again", PATIENCE, || async {
        let t = shown(t1).await;
        (t["state"] == "open").then_some(t)
    })
    .await;
    assert!(
        again["fix_outcome"].as_str().is_some_and(
            |o| o.contains(&format!("job {job1}")) && o.contains("matching events followed")
        ),
        "{again}"
    );
    let (_, about) = call(
        &f.app,
        "GET",
        "/api/v1/devices/F-1/about",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(about["rollout_eligible"], false, "{about}");

    // F-2 stays quiet for the rule's period after its fix: resolved.
    f.clock.advance(Duration::from_secs(86_400 + 1));
    f.state.diag.resolve_quiet(&f.state).await;
    let done = shown(t2).await;
    assert_eq!(done["state"], "resolved", "{done}");
}

#[tokio::test]
async fn a_setting_fix_abnormal_units_and_what_a_device_can_ask() {
    let f = fixture().await;
    assert_eq!(
        load_rules(&f, &example("rules.toml")).await.0,
        StatusCode::OK
    );
    let token = enroll_as(&f, "S-1", "acme-mfp-9000").await;
    report(&f, &token, "S-1", 1, mfp9000("5.2.1", "2.8.1"),
        json!({"fuser.life_pages": 412_000, "fuser_temp_c": 182, "jams_total": 10, "pages_total": 30_000})).await;
    let other = device(&f, "S-2", "5.2.1", "2.8.1").await;
    send(&f, &other, "S-2", &[(1, "engine", "J101", "warning")]).await;

    let (status, about) = call(&f.app, "GET", "/device/v1/about", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{about}");
    assert_eq!(about["rollout_eligible"], false, "{about}");
    assert_eq!(about["abnormal_units"][0]["slot"], "fuser");
    assert_eq!(about["abnormal_units"][0]["rule_id"], "fuser-beyond-life");

    // Two temperature drifts: a trouble whose known fix is a setting.
    send(
        &f,
        &token,
        "S-1",
        &[
            (1, "fuser", "SC543", "warning"),
            (2, "fuser", "SC543", "warning"),
            (3, "fuser", "SC543", "warning"),
        ],
    )
    .await;
    let t = one_trouble(
        &f,
        "device=S-1&rule=fuser-temperature-drift",
        "the drift trouble",
    )
    .await;
    eventually("the setting is pushed", PATIENCE, || async {
        let (_, s) = call(&f.app, "GET", "/device/v1/settings", Some(&token), None).await;
        (s["settings"][0]["name"] == "fuser.temp_offset_c" && s["settings"][0]["value"] == "-5")
            .then_some(())
    })
    .await;
    let (_, shown) = call(
        &f.app,
        "GET",
        &format!("/api/v1/troubles/{}", t["id"]),
        Some(&f.admin),
        None,
    )
    .await;
    assert!(
        shown["fix_outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("setting fuser.temp_offset_c = -5 set")),
        "{shown}"
    );

    let (_, about) = call(&f.app, "GET", "/device/v1/about", Some(&token), None).await;
    assert_eq!(about["troubles"][0]["rule_id"], "fuser-temperature-drift");
    let actions = about["recommended_actions"].to_string();
    assert!(
        actions.contains("fuser target temperature") && actions.contains("abnormal"),
        "{actions}"
    );
    assert_eq!(about["settings"][0]["value"], "-5");
    // Three events against one on the other device: 1.5 times the model's average.
    let rate = &about["error_rate"];
    assert_eq!(rate["model_devices"], 2, "{rate}");
    assert!(
        (rate["ratio"].as_f64().expect("ratio") - 1.5).abs() < 1e-9,
        "{rate}"
    );

    // The fuser is replaced: back in range, the mark is cleared.
    report(&f, &token, "S-1", 2, mfp9000("5.2.1", "2.8.1"),
        json!({"fuser.life_pages": 1_000, "fuser_temp_c": 182, "jams_total": 10, "pages_total": 30_100})).await;
    let (_, about) = call(
        &f.app,
        "GET",
        "/api/v1/devices/S-1/about",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(
        (
            about["rollout_eligible"].as_bool(),
            about["abnormal_units"].as_array().map(Vec::len)
        ),
        (Some(true), Some(0)),
        "{about}"
    );
}

#[tokio::test]
async fn a_restart_keeps_partly_filled_windows_and_open_troubles() {
    let f = fixture().await;
    assert_eq!(
        load_rules(&f, &example("rules.toml")).await.0,
        StatusCode::OK
    );
    let token = device(&f, "R-1", "5.2.1", "2.8.1").await;
    send(
        &f,
        &token,
        "R-1",
        &[
            (1, "fuser", "SC541", "error"),
            (2, "fuser", "SC541", "error"),
        ],
    )
    .await;
    let token2 = device(&f, "R-2", "5.2.1", "2.8.1").await;
    send(
        &f,
        &token2,
        "R-2",
        &[
            (1, "fuser", "SC541", "error"),
            (2, "fuser", "SC541", "error"),
            (3, "fuser", "SC541", "error"),
        ],
    )
    .await;
    let before = one_trouble(&f, "device=R-2", "R-2's trouble").await;

    // A new center over the same store: engines rebuilt from the store.
    let (state, _stop) = AppState::new(
        f.store.clone(),
        &ServerConfig::default(),
        Arc::new(f.clock.clone()),
    );
    tokio::spawn(state.compat.clone().start(state.ctx.clone()));
    tokio::spawn(state.diag.clone().run_worker(state.ctx.clone()));
    state.diag.clone().start(state.ctx.clone()).await;
    let router = app(state.clone());
    let f2 = Fixture {
        app: router,
        state,
        ..f
    };
    send(&f2, &token, "R-1", &[(3, "fuser", "SC541", "error")]).await;
    let t = one_trouble(&f2, "device=R-1", "R-1's third event opens the trouble").await;
    let evidence: Vec<u64> = t["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect();
    assert_eq!(evidence, vec![1, 2, 3]);
    send(&f2, &token2, "R-2", &[(4, "fuser", "SC541", "error")]).await;
    let after = eventually("R-2's trouble recurs, not reopened", PATIENCE, || async {
        let t = troubles(&f2, "device=R-2").await;
        t.first().filter(|t| t["occurrences"] == 4).cloned()
    })
    .await;
    assert_eq!(after["id"], before["id"]);
}

/// Rules that name what the tenant's catalog does not define are refused, each problem with
/// its line and the nearest defined name; nothing is loaded.
#[tokio::test]
async fn rules_naming_what_the_catalog_lacks_are_refused_with_lines() {
    let f = fixture().await;
    load_example_catalog(&f).await;
    let rules = r#"
[[rule]]
id = "watchdog"
title = "Watchdog resets"
severity = "critical"
action = "Install the fixed firmware."
match = { code = "SC899" }
count = 2
within = "1h"
fix = { release = "ctl-firmwar", version = "5.3.0" }

[[rule]]
id = "watchdog-2"
title = "Watchdog resets again"
severity = "major"
action = "Install the fixed firmware."
match = { code = "SC898" }
count = 2
within = "1h"
fix = { release = "ctl-firmware", version = "5.3" }
"#;
    let (s, v) = load_rules(&f, rules).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let problems: Vec<&str> = v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        problems,
        [
            "line 3, rule[0] (watchdog).fix.release: the catalog has no product \"ctl-firmwar\" (did you mean \"ctl-firmware\"?)",
            "line 13, rule[1] (watchdog-2).fix.version: the catalog has no release ctl-firmware 5.3 (did you mean \"5.3.0\"?)",
        ],
        "{v}"
    );
    let (_, shown) = call(&f.app, "GET", "/api/v1/rules", Some(&f.admin), None).await;
    assert!(shown["revision"].is_null(), "nothing was loaded: {shown}");
}

#[tokio::test]
async fn units_are_judged_from_their_history_rate_trend_and_life_since_they_went_in() {
    let f = fixture().await;
    let rules = r#"
[[abnormal]]
id = "jam-rate-7d"
title = "Jams per page over the last week"
unit_kind = "engine"
counter = "jams_total"
per = "pages_total"
measure = "rate"
window = "7d"
above = 0.002

[[abnormal]]
id = "fuser-heating"
title = "Fuser temperature climbing"
unit_kind = "fuser"
counter = "fuser_temp_c"
measure = "trend"
window = "7d"
above = 2

[[abnormal]]
id = "fuser-hot"
title = "Fuser too hot now"
unit_kind = "fuser"
counter = "fuser_temp_c"
above = 199

[[abnormal]]
id = "fuser-life"
title = "Fuser past its life since it went in"
unit_kind = "fuser"
counter = "pages_total"
measure = "since_install"
expected_life = { "fus-7" = 5000 }
"#;
    let (status, v) = load_rules(&f, rules).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = load_rules(
        &f,
        &rules.replace("window = \"7d\"\nabove = 2", "above = 2"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a trend needs a window: {v}"
    );
    let token = enroll_as(&f, "H-1", "acme-mfp-9000").await;
    // A report a day for a week (each the first of its day): 1,000 pages and 5 jams a day,
    // the fuser 3 degrees hotter each day.
    for d in 0..7u64 {
        let body = json!({"device_id": "H-1", "model": "acme-mfp-9000", "seq": d + 1,
            "trigger": "periodic", "observed_at_ms": common::NOW - (6 - d as i64) * 86_400_000,
            "units": mfp9000("5.2.1", "2.8.1"),
            "operating": {"pages_total": 10_000 + 1000 * d, "jams_total": 5 * d,
                          "fuser_temp_c": 180 + 3 * d}});
        post_report(&f, &token, &body).await;
    }
    let marks = |about: &Value| -> Vec<(String, String)> {
        about["abnormal_units"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["rule_id"].as_str().unwrap_or_default().to_owned(),
                            m["slot"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let about = fleetcare_testkit::eventually(
        "the history judged",
        std::time::Duration::from_secs(10),
        || async {
            let (_, about) = call(&f.app, "GET", "/device/v1/about", Some(&token), None).await;
            (marks(&about).len() == 3).then_some(about)
        },
    )
    .await;
    let mut got = marks(&about);
    got.sort();
    assert_eq!(
        got,
        [
            ("fuser-heating".to_owned(), "fuser".to_owned()),
            ("fuser-life".to_owned(), "fuser".to_owned()),
            ("jam-rate-7d".to_owned(), "engine".to_owned()),
        ],
        "{about}"
    );
    assert!(
        about.to_string().contains("since this fuser went in"),
        "{about}"
    );
    assert_eq!(about["rollout_eligible"], false, "{about}");
    // The fuser past its expected life is a trouble with the part to order.
    let part = troubles(&f, "device=H-1")
        .await
        .into_iter()
        .find(|t| t["rule_id"] == "part-end-of-life:fuser")
        .expect("a part trouble");
    assert_eq!(part["severity"], "major", "{part}");
    assert!(
        part["title"]
            .as_str()
            .is_some_and(|t| t.contains("past its expected life") && t.contains("of 5000 pages")),
        "{part}"
    );
    assert!(
        part["action"]
            .as_str()
            .is_some_and(|a| a.contains("Order a fus-7")),
        "{part}"
    );
    // A later report of the same day (judged at every report, not from history) leaves the
    // marks of history alone.
    let body = json!({"device_id": "H-1", "model": "acme-mfp-9000", "seq": 9,
        "trigger": "periodic", "observed_at_ms": common::NOW + 60_000,
        "units": mfp9000("5.2.1", "2.8.1"),
        "operating": {"pages_total": 16_100, "jams_total": 30, "fuser_temp_c": 200}});
    post_report(&f, &token, &body).await;
    let about = fleetcare_testkit::eventually(
        "the report judged",
        std::time::Duration::from_secs(10),
        || async {
            let (_, about) = call(&f.app, "GET", "/device/v1/about", Some(&token), None).await;
            marks(&about)
                .iter()
                .any(|m| m.0 == "fuser-hot")
                .then_some(about)
        },
    )
    .await;
    assert_eq!(marks(&about).len(), 4, "the history's marks stay: {about}");
}
