//! The center's HTTP surface, driven through `app()` without sockets: every bad input gets
//! its status and a message that names the problem, and a rejected request changes nothing.

use axum::body::Body;
use axum::http::StatusCode;
use fleetcare_core::DeviceId;
use fleetcare_core::limits::{MAX_DEVICE_BODY, MAX_NAME_LEN, MAX_UNITS};
use fleetcare_store::DeviceKey;
use serde_json::{Value, json};

mod common;

use common::{Fixture, call, enroll, enroll_as, fixture, json_body};

fn report(id: &str, seq: u64, fuser_serial: &str) -> Value {
    json!({
        "device_id": id, "model": "acme-mfp-9000", "seq": seq, "trigger": "connect",
        "observed_at_ms": 1_790_000_000_000i64,
        "units": [
            {"slot": "controller", "kind": "controller", "model": "ctl-x2", "serial": "C1", "hw_revision": "B",
             "software": [{"product": "ctl-firmware", "maker": "acme", "version": "5.2.1"}]},
            {"slot": "fuser", "kind": "fuser", "model": "fus-7", "serial": fuser_serial}
        ],
        "operating": {"pages_total": 1000.0}
    })
}

fn key(f: &Fixture, id: &str) -> DeviceKey {
    DeviceKey {
        tenant: f.tenant,
        device_id: DeviceId::parse(id).expect("id"),
    }
}

/// What the store holds of a device, to prove a rejected request changed nothing.
async fn snapshot(f: &Fixture, id: &str) -> (Vec<u64>, usize, Option<String>) {
    let k = key(f, id);
    let seqs = f.store.stored_seqs(&k).await.expect("seqs");
    let history = f.store.history(&k, 1000).await.expect("history").len();
    let structure = f
        .store
        .device(&k)
        .await
        .expect("device")
        .and_then(|d| d.structure)
        .map(|s| s.to_json());
    (seqs, history, structure)
}

#[tokio::test]
async fn enrollment_and_reports_round_trip() {
    let f = fixture().await;
    let token = enroll(&f, "DEV-1").await;
    let (status, ack) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&report("DEV-1", 1, "F1")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["seq"], 1);
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["changes"], 2);
    let (_, again) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&report("DEV-1", 1, "F1")),
    )
    .await;
    assert_eq!(again["duplicate"], true);

    let (status, view) = call(&f.app, "GET", "/api/v1/devices/DEV-1", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["device_id"], "DEV-1");
    assert_eq!(view["model"], "acme-mfp-9000");
    assert_eq!(view["online"], false);
    assert_eq!(view["last_report"]["trigger"], "connect");
    assert!(view["last_report"]["received_at"].as_str().is_some());
    let units = view["units"].as_array().expect("units");
    assert_eq!(units.len(), 2);
    assert_eq!(units[0]["slot"], "controller");
    assert_eq!(units[0]["hw_revision"], "B");
    assert_eq!(units[0]["software"][0]["product"], "ctl-firmware");
    assert_eq!(units[0]["software"][0]["maker"], "acme");
    assert_eq!(units[0]["software"][0]["version"], "5.2.1");

    // The device sees the same through /self.
    let (status, me) = call(&f.app, "GET", "/device/v1/self", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["units"], view["units"]);

    let mut swapped = report("DEV-1", 2, "F2");
    swapped["trigger"] = json!("change");
    call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&swapped),
    )
    .await;
    let (status, history) = call(
        &f.app,
        "GET",
        "/api/v1/devices/DEV-1/history",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let events = history["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    let last = &events[2];
    assert_eq!(last["trigger"], "change");
    assert_eq!(last["change"]["kind"], "unit_replaced");
    assert_eq!(last["change"]["old"]["serial"], "F1");
    assert_eq!(last["change"]["new"]["serial"], "F2");

    let (status, list) = call(&f.app, "GET", "/api/v1/devices", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["devices"][0]["device_id"], "DEV-1");
    assert_eq!(list["devices"][0]["units"], 2);
}

#[tokio::test]
async fn enrollment_refusals() {
    let f = fixture().await;
    let ok = |id: &str| json!({"enrollment_key": f.enrollment_key, "device_id": id, "model": "m"});
    let (status, body) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&json!({"enrollment_key": "fce_wrong", "device_id": "D", "model": "m"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, body) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&ok("../etc")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().expect("msg").contains("device_id"),
        "{body}"
    );
    let mut bad_model = ok("D-2");
    bad_model["model"] = json!("mfp\u{7}");
    let (status, body) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&bad_model),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().expect("msg").contains("model"),
        "{body}"
    );
    assert_eq!(f.store.count_devices(f.tenant).await.expect("count"), 0);

    let token = enroll(&f, "D-1").await;
    // Someone else with the fleet's enrollment key cannot take over an enrolled id.
    let (status, body) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&ok("D-1")),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_enrolled")),
        "{body}"
    );
    let (status, _) = call(&f.app, "GET", "/device/v1/self", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "the first credential still works");
    // The device itself rotates its credential by presenting it.
    let mut rotate = ok("D-1");
    rotate["current_credential"] = json!(token);
    let (status, body) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&rotate),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = call(&f.app, "GET", "/device/v1/self", Some(&token), None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old credential is dead"
    );
    let new = body["device_token"].as_str().expect("token");

    // Revocation: 401 at once; enrollment refused until an operator allows it.
    let (status, _) = call(
        &f.app,
        "POST",
        "/api/v1/devices/D-1/revoke",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(new),
        json_body(&report("D-1", 1, "F")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&ok("D-1")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = call(
        &f.app,
        "POST",
        "/api/v1/devices/D-1/allow-reenroll",
        Some(&f.admin),
        json_body(&json!({"valid_s": 3600})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&ok("D-1")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_reports_are_refused_and_change_nothing() {
    let f = fixture().await;
    let token = enroll(&f, "DEV-1").await;
    let other = enroll(&f, "DEV-2").await;
    call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&report("DEV-1", 1, "F1")),
    )
    .await;
    let before = snapshot(&f, "DEV-1").await;
    let before_other = snapshot(&f, "DEV-2").await;

    let mut too_many = report("DEV-1", 2, "F9");
    too_many["units"] = Value::Array((0..=MAX_UNITS).map(|i| json!({"slot": format!("s{i}"), "kind": "k", "model": "m", "serial": format!("S{i}")})).collect());
    let mut long_name = report("DEV-1", 2, "F9");
    long_name["units"][0]["model"] = json!("x".repeat(MAX_NAME_LEN + 1));
    let mut dup_slots = report("DEV-1", 2, "F9");
    dup_slots["units"][1]["slot"] = json!("controller");
    let mut bad_type = report("DEV-1", 2, "F9");
    bad_type["units"][0]["serial"] = json!(12);
    let mut zero = report("DEV-1", 0, "F9");
    zero["seq"] = json!(0);
    let huge = format!(
        "{{\"device_id\":\"DEV-1\",\"pad\":\"{}\"}}",
        "x".repeat(MAX_DEVICE_BODY)
    );

    let cases: Vec<(&str, Option<&str>, Body, StatusCode, &str)> = vec![
        (
            "no credential",
            None,
            Body::from(report("DEV-1", 2, "F9").to_string()),
            StatusCode::UNAUTHORIZED,
            "missing device credential",
        ),
        (
            "unknown credential",
            Some("fcd_nope"),
            Body::from(report("DEV-1", 2, "F9").to_string()),
            StatusCode::UNAUTHORIZED,
            "unknown or revoked",
        ),
        (
            "operator token as device",
            Some(&f.admin),
            Body::from(report("DEV-1", 2, "F9").to_string()),
            StatusCode::UNAUTHORIZED,
            "unknown or revoked",
        ),
        (
            "as another device",
            Some(&other),
            Body::from(report("DEV-1", 2, "F9").to_string()),
            StatusCode::FORBIDDEN,
            "can only report as itself",
        ),
        (
            "malformed JSON",
            Some(&token),
            Body::from("{\"device_id\": \"DEV-1\", "),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            "wrong type",
            Some(&token),
            Body::from(bad_type.to_string()),
            StatusCode::BAD_REQUEST,
            "units[0].serial",
        ),
        (
            "too many units",
            Some(&token),
            Body::from(too_many.to_string()),
            StatusCode::BAD_REQUEST,
            "at most 64 allowed",
        ),
        (
            "over-long string",
            Some(&token),
            Body::from(long_name.to_string()),
            StatusCode::BAD_REQUEST,
            "longer than 64",
        ),
        (
            "duplicate slots",
            Some(&token),
            Body::from(dup_slots.to_string()),
            StatusCode::BAD_REQUEST,
            "appears twice",
        ),
        (
            "seq zero",
            Some(&token),
            Body::from(zero.to_string()),
            StatusCode::BAD_REQUEST,
            "seq",
        ),
        (
            "body over the limit",
            Some(&token),
            Body::from(huge),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
    ];
    for (name, tok, body, want, needle) in cases {
        let (status, answer) = call(&f.app, "POST", "/device/v1/reports", tok, Some(body)).await;
        assert_eq!(status, want, "{name}: {answer}");
        let msg = answer["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{name}: {msg:?} should mention {needle:?}"
        );
        assert!(answer["code"].as_str().is_some(), "{name}: error code");
        assert_eq!(
            snapshot(&f, "DEV-1").await,
            before,
            "{name} changed the store"
        );
        assert_eq!(
            snapshot(&f, "DEV-2").await,
            before_other,
            "{name} changed the other device"
        );
    }
}

#[tokio::test]
async fn operator_api_scopes_and_refusals() {
    let f = fixture().await;
    enroll(&f, "DEV-1").await;
    let other_tenant = f.store.ensure_tenant("other", 1).await.expect("tenant");
    f.store
        .add_operator_token(
            other_tenant,
            "eve",
            "admin",
            &fleetcare_core::secret::hash("fco_eve"),
            1,
        )
        .await
        .expect("token");
    let (status, _) = call(&f.app, "GET", "/api/v1/devices", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&f.app, "GET", "/api/v1/devices", Some("fco_unknown"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Another tenant's operator sees nothing, and 404 rather than 403.
    let (status, list) = call(&f.app, "GET", "/api/v1/devices", Some("fco_eve"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["devices"].as_array().map(Vec::len), Some(0));
    for (method, uri) in [
        ("GET", "/api/v1/devices/DEV-1"),
        ("GET", "/api/v1/devices/DEV-1/history"),
        ("POST", "/api/v1/devices/DEV-1/request-report"),
        ("POST", "/api/v1/devices/DEV-1/revoke"),
    ] {
        let (status, body) = call(&f.app, method, uri, Some("fco_eve"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {body}");
    }
    let (status, _) = call(&f.app, "GET", "/api/v1/devices/DEV-1", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::OK, "the revoke above did not happen");

    let (status, body) = call(
        &f.app,
        "POST",
        "/api/v1/devices/DEV-1/request-report",
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("offline"))
    );
    let (status, body) = call(
        &f.app,
        "PUT",
        "/api/v1/devices/DEV-1/report-interval",
        Some(&f.admin),
        json_body(&json!({"seconds": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &f.app,
        "PUT",
        "/api/v1/devices/DEV-1/report-interval",
        Some(&f.admin),
        json_body(&json!({"seconds": 600})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, view) = call(&f.app, "GET", "/api/v1/devices/DEV-1", Some(&f.admin), None).await;
    assert_eq!(view["report_interval_s"], 600);
    let (status, _) = call(&f.app, "GET", "/api/v1/devices/NOPE", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&f.app, "GET", "/api/v1/nothing-here", Some(&f.admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let f = fixture().await;
    let (status, health) = call(&f.app, "GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["store"], "sqlite");
    let token = enroll(&f, "M-1").await;
    call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(&token),
        json_body(&report("M-1", 1, "F1")),
    )
    .await;
    let (status, text) = call(&f.app, "GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().expect("text exposition");
    assert!(
        text.contains("fleetcare_reports_stored_total{trigger=\"connect\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("fleetcare_report_ingest_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains("M-1"), "no device id in metrics");

    let (status, doc) = call(&f.app, "GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/devices",
        "/api/v1/devices/{id}",
        "/api/v1/devices/{id}/history",
        "/api/v1/devices/{id}/request-report",
        "/api/v1/devices/{id}/report-interval",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["DeviceView"].is_object());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("write");
    e.finish().expect("finish")
}

/// A gzipped body (what agents send for larger reports) is taken; the size limit applies to
/// what it inflates to, so a compression bomb is refused with 413 and changes nothing, as is
/// a body that is not the gzip it says it is.
#[tokio::test]
async fn gzipped_reports_are_taken_and_bombs_refused() {
    let f = fixture().await;
    let token = enroll(&f, "DEV-1").await;
    let send = |body: Vec<u8>, encoding: &'static str| {
        let app = f.app.clone();
        let token = token.clone();
        async move {
            use tower::ServiceExt;
            let req = axum::http::Request::builder()
                .method("POST")
                .uri("/device/v1/reports")
                .header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"))
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .header(axum::http::header::CONTENT_ENCODING, encoding)
                .body(Body::from(body))
                .expect("request");
            let resp = app.oneshot(req).await.expect("infallible");
            resp.status()
        }
    };
    let plain = serde_json::to_vec(&report("DEV-1", 1, "F-1")).expect("json");
    let gz = gzip(&plain);
    assert!(gz.len() < plain.len());
    assert_eq!(send(gz, "gzip").await, StatusCode::OK);
    let before = snapshot(&f, "DEV-1").await;
    // 64 MiB of spaces inside a valid report shape: a few hundred KiB gzipped.
    let mut bomb = b"{\"device_id\":\"DEV-1\",\"pad\":\"".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 64 << 20));
    bomb.extend_from_slice(b"\"}");
    let bomb = gzip(&bomb);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    assert_eq!(send(bomb, "gzip").await, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        send(b"not gzip at all".to_vec(), "gzip").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(send(plain, "br").await, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(snapshot(&f, "DEV-1").await, before, "nothing changed");
}

/// An unknown device id is said to be unknown, with the tenant's nearest ids, also where it
/// filters a list (not an empty table).
#[tokio::test]
async fn an_unknown_device_names_the_nearest_ids() {
    let f = fixture().await;
    enroll_as(&f, "ACM9K-000123", "acme-mfp-9000").await;
    enroll_as(&f, "P500-000007", "acme-printer-p500").await;
    for path in [
        "/api/v1/devices/ACM9K-000132",
        "/api/v1/devices/ACM9K-000132/about",
        "/api/v1/jobs?device=ACM9K-000132",
        "/api/v1/troubles?device=ACM9K-000132",
    ] {
        let (s, v) = call(&f.app, "GET", path, Some(&f.admin), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {v}");
        let said = v["error"].as_str().unwrap_or_default();
        assert!(
            said.contains("did you mean ACM9K-000123?"),
            "{path}: {said}"
        );
        assert!(!said.contains("P500"), "{said}");
    }
    let (s, v) = call(&f.app, "GET", "/api/v1/devices/ZZZ-1", Some(&f.admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        !v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("did you mean"),
        "{v}"
    );
}
