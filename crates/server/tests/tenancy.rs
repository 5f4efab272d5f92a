//! A service provider and its customer organizations: each customer's devices, tokens and
//! audit log are its own; the provider acts within a customer by naming it
//! (`Fleetcare-Tenant`); a customer that is not the caller's — another provider's, or a
//! sibling's — is "not found", never "forbidden".

mod common;

use axum::http::StatusCode;
use common::{NOW, fixture, json_body};
use serde_json::{Value, json};

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    scope: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    if let Some(s) = scope {
        headers.push(("fleetcare-tenant", s));
    }
    let a = common::send(app, method, uri, &headers, body).await;
    (a.status, a.body)
}

async fn enroll(app: &axum::Router, key: &str, id: &str) {
    let (s, v) = common::call(
        app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&json!({"enrollment_key": key, "device_id": id, "model": "acme-mfp-9000"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn customers_see_only_their_own_and_the_provider_acts_within_them_by_name() {
    let f = fixture().await;
    let app = &f.app;
    let admin = f.admin.as_str();

    // The provider creates two customer organizations; each gets its own enrollment key.
    let mut keys = Vec::new();
    for name in ["acme", "globex"] {
        let (s, v) = call(
            app,
            "POST",
            "/api/v1/customers",
            admin,
            None,
            Some(json!({"name": name})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        keys.push(v["enrollment_key"].as_str().expect("key").to_owned());
    }
    let (s, _) = call(
        app,
        "POST",
        "/api/v1/customers",
        admin,
        None,
        Some(json!({"name": "acme"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "a name is taken once");
    let (s, _) = call(
        app,
        "POST",
        "/api/v1/customers",
        admin,
        None,
        Some(json!({"name": "a/b"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    enroll(app, &keys[0], "A-1").await;
    enroll(app, &keys[1], "G-1").await;

    // The provider's own tenant holds neither device; within a customer, only its own.
    let (s, _) = call(app, "GET", "/api/v1/devices/A-1", admin, None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = call(app, "GET", "/api/v1/devices/A-1", admin, Some("acme"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = call(app, "GET", "/api/v1/devices/G-1", admin, Some("acme"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a sibling's device is not found");
    let (s, _) = call(app, "GET", "/api/v1/devices", admin, Some("nope"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "an unknown customer is not found");
    let (_, log) = call(app, "GET", "/api/v1/audit?limit=1", admin, None, None).await;
    assert_eq!(log["entries"][0]["outcome"], "denied", "{log}");
    assert_eq!(log["entries"][0]["status"], 404);

    // Tokens made within a customer belong to it, and cannot leave it.
    let mut tokens = Vec::new();
    for role in ["viewer", "auditor"] {
        let (s, v) = call(
            app,
            "POST",
            "/api/v1/tokens",
            admin,
            Some("acme"),
            Some(json!({"name": format!("acme-{role}"), "role": role})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        tokens.push(v["token"].as_str().expect("token").to_owned());
    }
    let (viewer, auditor) = (tokens[0].as_str(), tokens[1].as_str());
    let (s, v) = call(app, "GET", "/api/v1/devices", viewer, None, None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = v["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["device_id"].as_str())
        .collect();
    assert_eq!(ids, ["A-1"]);
    let (s, _) = call(app, "GET", "/api/v1/devices/G-1", viewer, None, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        app,
        "GET",
        "/api/v1/devices/G-1",
        viewer,
        Some("globex"),
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "a customer cannot step into its sibling"
    );
    let (s, v) = call(app, "GET", "/api/v1/customers", viewer, None, None).await;
    assert_eq!(
        (s, v["customers"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let (s, _) = call(
        app,
        "POST",
        "/api/v1/customers",
        viewer,
        None,
        Some(json!({"name": "sub"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a viewer creates nothing");

    // The customer's auditor sees what the provider did within it, and who.
    let (s, log) = call(app, "GET", "/api/v1/audit", auditor, None, None).await;
    assert_eq!(s, StatusCode::OK);
    let created: Vec<&Value> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "token.create")
        .collect();
    assert_eq!(created.len(), 2, "{log}");
    assert!(
        created.iter().all(|e| e["actor"] == "admin (provider)"),
        "{log}"
    );
    assert!(
        log["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["actor"] != "admin"),
        "the provider's own actions stay in the provider's log"
    );

    // Another provider on the same center: its own customer names, none of the first's.
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = fleetcare_server::bootstrap::run(&f.store, other_dir.path(), "other-provider", NOW)
        .await
        .expect("bootstrap");
    let (s, _) = call(
        app,
        "GET",
        "/api/v1/devices/A-1",
        &other.admin_token,
        Some("acme"),
        None,
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another provider's customer is not found"
    );
    let (s, v) = call(
        app,
        "POST",
        "/api/v1/customers",
        &other.admin_token,
        None,
        Some(json!({"name": "acme"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "names are per provider: {v}");
    let (_, v) = call(app, "GET", "/api/v1/customers", admin, None, None).await;
    let listed: Vec<(String, u64)> = v["customers"]
        .as_array()
        .expect("customers")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_owned(),
                c["devices"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(listed, [("acme".to_owned(), 1), ("globex".to_owned(), 1)]);
}
