//! The device side of the authorization matrix: every device route × (own device / another
//! device of the same tenant / a device of another tenant), plus the wrong kind of secret.
//! A device acts only as itself: what names another device is 403 (a body naming it) or 404
//! (its job), and changes nothing; routes that name no device answer about the caller only.

mod common;

use axum::http::StatusCode;
use common::{NOW, call, fixture, json_body};
use fleetcare_core::DeviceId;
use fleetcare_store::{DeviceKey, NewJob};
use serde_json::{Value, json};

fn report(device: &str, seq: u64) -> Value {
    json!({"device_id": device, "model": "acme-mfp-9000", "seq": seq, "trigger": "connect",
           "observed_at_ms": NOW, "operating": {},
           "units": [{"slot": "controller", "kind": "controller", "model": "ctl-x2",
                      "serial": format!("CTL-{device}"), "hw_revision": "B", "software": []}]})
}

fn errors(device: &str) -> Value {
    json!({"device_id": device, "boot_epoch": 1, "trigger": "immediate",
           "events": [{"seq": 1, "at_ms": NOW, "slot": "fuser", "code": "E-1", "severity": "error", "counters": {}}]})
}

/// (route, whose, method, path, body, expected status)
type Cell = (
    &'static str,
    &'static str,
    &'static str,
    String,
    Option<Value>,
    StatusCode,
);

#[tokio::test]
async fn every_device_route_own_other_device_and_other_tenant() {
    let f = fixture().await;
    let d1 = common::enroll(&f, "D-1").await;
    common::enroll(&f, "D-2").await;
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = fleetcare_server::bootstrap::run(&f.store, other_dir.path(), "other", NOW)
        .await
        .expect("other tenant");
    let (s, _) = call(&f.app, "POST", "/device/v1/enroll", None,
        json_body(&json!({"enrollment_key": other.enrollment_key, "device_id": "X-1", "model": "acme-mfp-9000"}))).await;
    assert_eq!(s, StatusCode::OK);
    let job = |tenant, id: &str| {
        let store = f.store.clone();
        let key = DeviceKey {
            tenant,
            device_id: DeviceId::parse(id).expect("id"),
        };
        async move {
            store
                .create_job(
                    &key,
                    &NewJob {
                        origin: "operator".into(),
                        state: "queued".into(),
                        steps_json: "[]".into(),
                        catalog_revision: None,
                        created_by: "test".into(),
                        expires_at_ms: NOW + 3_600_000,
                    },
                    NOW,
                )
                .await
                .expect("job")
        }
    };
    let (own_job, sibling_job, foreign_job) = (
        job(f.tenant, "D-1").await,
        job(f.tenant, "D-2").await,
        job(other.tenant, "X-1").await,
    );
    let status = json!({"state": "downloading"});

    let cells: Vec<Cell> = vec![
        (
            "reports",
            "own",
            "POST",
            "/device/v1/reports".into(),
            Some(report("D-1", 1)),
            StatusCode::OK,
        ),
        (
            "reports",
            "other device",
            "POST",
            "/device/v1/reports".into(),
            Some(report("D-2", 1)),
            StatusCode::FORBIDDEN,
        ),
        (
            "reports",
            "other tenant",
            "POST",
            "/device/v1/reports".into(),
            Some(report("X-1", 1)),
            StatusCode::FORBIDDEN,
        ),
        (
            "errors",
            "own",
            "POST",
            "/device/v1/errors".into(),
            Some(errors("D-1")),
            StatusCode::OK,
        ),
        (
            "errors",
            "other device",
            "POST",
            "/device/v1/errors".into(),
            Some(errors("D-2")),
            StatusCode::FORBIDDEN,
        ),
        (
            "errors",
            "other tenant",
            "POST",
            "/device/v1/errors".into(),
            Some(errors("X-1")),
            StatusCode::FORBIDDEN,
        ),
        (
            "job status",
            "own",
            "POST",
            format!("/device/v1/jobs/{own_job}/status"),
            Some(status.clone()),
            StatusCode::OK,
        ),
        (
            "job status",
            "other device",
            "POST",
            format!("/device/v1/jobs/{sibling_job}/status"),
            Some(status.clone()),
            StatusCode::NOT_FOUND,
        ),
        (
            "job status",
            "other tenant",
            "POST",
            format!("/device/v1/jobs/{foreign_job}/status"),
            Some(status),
            StatusCode::NOT_FOUND,
        ),
        (
            "artifacts",
            "unknown",
            "GET",
            format!("/device/v1/artifacts/{}", "ab".repeat(32)),
            None,
            StatusCode::NOT_FOUND,
        ),
    ];
    let mut failures = Vec::new();
    for (route, whose, method, path, body, want) in cells {
        let before = f.store.content_digest().await.expect("digest");
        let (s, v) = call(
            &f.app,
            method,
            &path,
            Some(&d1),
            body.as_ref().and_then(json_body),
        )
        .await;
        if s != want {
            failures.push(format!("{route} × {whose}: {s}, want {want}: {v}"));
        }
        if !s.is_success() && f.store.content_digest().await.expect("digest") != before {
            failures.push(format!("{route} × {whose}: a refusal changed the store"));
        }
    }
    // Routes that name no device answer about the caller only.
    for path in [
        "/device/v1/self",
        "/device/v1/compat",
        "/device/v1/about",
        "/device/v1/settings",
        "/device/v1/jobs",
    ] {
        let (s, v) = call(&f.app, "GET", path, Some(&d1), None).await;
        if s != StatusCode::OK {
            failures.push(format!("{path} × own: {s}: {v}"));
        }
        let text = v.to_string();
        if text.contains("D-2") || text.contains("X-1") {
            failures.push(format!("{path}: answered about another device: {text}"));
        }
    }
    // The wrong kind of secret: an operator token is no device credential, and back.
    let (s, _) = call(&f.app, "GET", "/device/v1/self", Some(&f.admin), None).await;
    if s != StatusCode::UNAUTHORIZED {
        failures.push(format!("operator token on a device route: {s}"));
    }
    let (s, _) = call(&f.app, "GET", "/api/v1/devices", Some(&d1), None).await;
    if s != StatusCode::UNAUTHORIZED {
        failures.push(format!("device credential on an operator route: {s}"));
    }
    let (s, v) = call(
        &f.app,
        "GET",
        &format!("/api/v1/jobs/{foreign_job}"),
        Some(&f.admin),
        None,
    )
    .await;
    if s != StatusCode::NOT_FOUND {
        failures.push(format!("another tenant's job to an admin: {s}: {v}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
