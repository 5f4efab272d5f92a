//! Retention on both stores: the settings (defaults, bounds, who may change them) and the
//! pruner — reports and error events past their tenant's days go, a device's newest report
//! and reports whose operating values wait for their rollup stay, another tenant's days are
//! its own, and `/metrics` counts what went.

mod common;

use axum::http::StatusCode;
use common::{Fixture, call, enroll_as, fixtures, json_body};
use fleetcare_core::clock::Clock;
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

async fn report(f: &Fixture, token: &str, id: &str, seq: u64, operating: bool) {
    let mut body = json!({"device_id": id, "model": "acme-printer-p500", "seq": seq,
        "trigger": "periodic", "observed_at_ms": f.clock.now_ms(),
        "units": [{"slot": "controller", "kind": "controller", "model": "ctl-lite",
                   "serial": format!("C-{id}"), "hw_revision": "C",
                   "software": [{"product": "ctl-lite-firmware", "maker": "acme", "version": "1.9.12"}]}]});
    if operating {
        body["operating"] = json!({"pages_total": 1000 + seq});
    }
    let (s, v) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(token),
        json_body(&body),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn errors(f: &Fixture, token: &str, id: &str, seqs: std::ops::Range<u64>, at: i64) {
    let events: Vec<Value> = seqs
        .map(|seq| json!({"seq": seq, "at_ms": at, "slot": "fuser", "code": "F-101", "severity": "info"}))
        .collect();
    let (s, v) = call(
        &f.app,
        "POST",
        "/device/v1/errors",
        Some(token),
        json_body(
            &json!({"device_id": id, "boot_epoch": 1, "trigger": "periodic", "events": events}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn set(f: &Fixture, token: &str, kind: &str, days: u64) -> (StatusCode, Value) {
    call(
        &f.app,
        "PUT",
        "/api/v1/retention",
        Some(token),
        json_body(&json!({"kind": kind, "days": days})),
    )
    .await
}

fn key(f: &Fixture, id: &str) -> fleetcare_store::DeviceKey {
    fleetcare_store::DeviceKey {
        tenant: f.tenant,
        device_id: fleetcare_core::DeviceId::parse(id).expect("id"),
    }
}

async fn event_count(f: &Fixture, id: &str) -> usize {
    let (s, v) = call(
        &f.app,
        "GET",
        &format!("/api/v1/devices/{id}/errors?limit=1000"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["events"].as_array().map_or(0, Vec::len)
}

async fn pruned(f: &Fixture, kind: &str) -> f64 {
    let (_, v) = call(&f.app, "GET", "/metrics", None, None).await;
    let text = v.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find(|l| l.starts_with(&format!("fleetcare_pruned_rows_total{{kind=\"{kind}\"}}")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn settings_have_defaults_bounds_and_an_admin() {
    for (store, f) in fixtures("retention settings").await {
        let (s, v) = call(&f.app, "GET", "/api/v1/retention", Some(&f.admin), None).await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        let days: Vec<(String, u64)> = v["kinds"]
            .as_array()
            .expect("kinds")
            .iter()
            .map(|k| {
                (
                    k["kind"].as_str().unwrap_or_default().to_owned(),
                    k["days"].as_u64().unwrap_or(99),
                )
            })
            .collect();
        assert_eq!(
            days,
            vec![
                ("reports".to_owned(), 30),
                ("error_events".to_owned(), 180),
                ("history".to_owned(), 0),
                ("audit".to_owned(), 0)
            ],
            "{store}"
        );
        for (kind, d) in [
            ("telemetry", 5),
            ("history", 5),
            ("audit", 30),
            ("reports", 36_501),
        ] {
            let (s, v) = set(&f, &f.admin, kind, d).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{store}: {kind} {d}: {v}");
        }
        let (s, v) = call(
            &f.app,
            "POST",
            "/api/v1/tokens",
            Some(&f.admin),
            json_body(&json!({"name": "v", "role": "viewer"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let viewer = v["token"].as_str().expect("token").to_owned();
        assert_eq!(
            set(&f, &viewer, "reports", 7).await.0,
            StatusCode::FORBIDDEN,
            "{store}"
        );
        let (s, v) = set(&f, &f.admin, "reports", 7).await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        assert_eq!(v["kinds"][0]["days"], 7, "{store}: {v}");
        assert_eq!(v["kinds"][0]["default_days"], 30, "{store}: {v}");
        f.finish().await;
    }
}

#[tokio::test]
async fn the_pruner_deletes_what_is_past_its_days_and_keeps_what_must_stay() {
    for (store, f) in fixtures("retention pruner").await {
        let a = enroll_as(&f, "keep-newest", "acme-printer-p500").await;
        let b = enroll_as(&f, "with-meters", "acme-printer-p500").await;
        // Five reports and 250 error events a few days old, then a fresh report each.
        for seq in 1..=5 {
            report(&f, &a, "keep-newest", seq, false).await;
        }
        errors(&f, &a, "keep-newest", 1..251, f.clock.now_ms()).await;
        report(&f, &b, "with-meters", 1, true).await;
        f.clock
            .advance(std::time::Duration::from_millis(3 * DAY as u64));
        report(&f, &b, "with-meters", 2, true).await;
        // The defaults keep all of it (30 and 180 days): a round deletes nothing.
        f.state.pruner.round(&f.state.ctx).await;
        assert_eq!(
            f.store
                .stored_seqs(&key(&f, "keep-newest"))
                .await
                .expect("seqs"),
            vec![1, 2, 3, 4, 5],
            "{store}"
        );
        assert_eq!(set(&f, &f.admin, "reports", 1).await.0, StatusCode::OK);
        assert_eq!(set(&f, &f.admin, "error_events", 2).await.0, StatusCode::OK);
        // Rounds until nothing more goes (each deletes at most 100 rows of a kind per device).
        for _ in 0..5 {
            f.state.pruner.round(&f.state.ctx).await;
        }
        assert_eq!(
            f.store
                .stored_seqs(&key(&f, "keep-newest"))
                .await
                .expect("seqs"),
            vec![5],
            "{store}: the newest report stays"
        );
        assert_eq!(event_count(&f, "keep-newest").await, 0, "{store}");
        assert_eq!(
            f.store
                .stored_seqs(&key(&f, "with-meters"))
                .await
                .expect("seqs"),
            vec![1, 2],
            "{store}: operating values not yet rolled up keep their report"
        );
        assert_eq!(pruned(&f, "reports").await, 4.0, "{store}");
        assert_eq!(pruned(&f, "error_events").await, 250.0, "{store}");
        // The device and its history are untouched.
        let (s, d) = call(
            &f.app,
            "GET",
            "/api/v1/devices/keep-newest",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{d}");
        assert_eq!(d["last_report"]["seq"], 5, "{store}: {d}");
        f.finish().await;
    }
}
