//! The center's router with a fresh embedded store, and helpers to call it without sockets.

#![allow(dead_code)] // each test file uses a part

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fleetcare_core::clock::ManualClock;
use fleetcare_server::{AppState, ServerConfig, app, bootstrap};
use fleetcare_store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const NOW: i64 = 1_790_000_000_000;

pub struct Fixture {
    pub app: Router,
    pub store: Store,
    pub admin: String,
    pub enrollment_key: String,
    pub tenant: i64,
    pub state: AppState,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    /// Held, so the center is running (dropping it is a shutdown: streams and polls end).
    pub stop: tokio::sync::watch::Sender<bool>,
    /// The database of a fixture on PostgreSQL ([`Fixture::finish`] drops it).
    pub pg: Option<fleetcare_store::testing::TempPostgres>,
}

pub async fn fixture() -> Fixture {
    fixture_config(ServerConfig::default()).await
}

/// The embedded-store fixture with a config of the test's own.
pub async fn fixture_config(config: ServerConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    fixture_on(store, dir, None, &config).await
}

/// Both stores with a config of the test's own.
pub async fn fixtures_config(test: &str, config: &ServerConfig) -> Vec<(&'static str, Fixture)> {
    let mut out = vec![("sqlite", fixture_config(config.clone()).await)];
    if let Some(url) = fleetcare_store::testing::postgres_url(test) {
        let (store, db) = fleetcare_store::testing::fresh_postgres(&url)
            .await
            .expect("a fresh PostgreSQL database");
        let dir = tempfile::tempdir().expect("tempdir");
        out.push(("postgres", fixture_on(store, dir, Some(db), config).await));
    }
    out
}

/// The same center on a fresh PostgreSQL database, or `None` (said loudly) when
/// `FLEETCARE_TEST_DATABASE_URL` is unset.
pub async fn fixture_postgres(test: &str) -> Option<Fixture> {
    let url = fleetcare_store::testing::postgres_url(test)?;
    let (store, db) = fleetcare_store::testing::fresh_postgres(&url)
        .await
        .expect("a fresh PostgreSQL database");
    let dir = tempfile::tempdir().expect("tempdir");
    Some(fixture_on(store, dir, Some(db), &ServerConfig::default()).await)
}

/// Both stores a test runs on: the embedded one, and PostgreSQL when the tests have one.
pub async fn fixtures(test: &str) -> Vec<(&'static str, Fixture)> {
    let mut out = vec![("sqlite", fixture().await)];
    if let Some(f) = fixture_postgres(test).await {
        out.push(("postgres", f));
    }
    out
}

async fn fixture_on(
    store: Store,
    dir: tempfile::TempDir,
    pg: Option<fleetcare_store::testing::TempPostgres>,
    config: &ServerConfig,
) -> Fixture {
    let clock = ManualClock::new(NOW);
    let boot = bootstrap::run(&store, dir.path(), "default", NOW)
        .await
        .expect("bootstrap");
    let (state, stop) = AppState::new(store.clone(), config, Arc::new(clock.clone()));
    // What Center::start runs beside the router: the compatibility and diagnosis workers.
    tokio::spawn(state.compat.clone().run_worker(state.ctx.clone()));
    tokio::spawn(state.diag.clone().run_worker(state.ctx.clone()));
    Fixture {
        app: app(state.clone()),
        state,
        store,
        admin: boot.admin_token,
        enrollment_key: boot.enrollment_key,
        tenant: boot.tenant,
        clock,
        dir,
        stop,
        pg,
    }
}

impl Fixture {
    /// End the test: on PostgreSQL, drop its database.
    pub async fn finish(self) {
        if let Some(db) = self.pg {
            drop(self.app);
            db.drop_database().await.expect("drop the test database");
        }
    }
}

pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Body>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(body.unwrap_or_else(Body::empty)).expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024)
        .await
        .expect("body");
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, value)
}

pub fn json_body(v: &Value) -> Option<Body> {
    Some(Body::from(serde_json::to_vec(v).expect("json")))
}

pub async fn enroll(f: &Fixture, id: &str) -> String {
    enroll_as(f, id, "acme-mfp-9000").await
}

pub async fn enroll_as(f: &Fixture, id: &str, model: &str) -> String {
    let (status, body) = call(
        &f.app,
        "POST",
        "/device/v1/enroll",
        None,
        json_body(&json!({"enrollment_key": f.enrollment_key, "device_id": id, "model": model})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["device_token"].as_str().expect("token").to_owned()
}

/// Enroll a device over HTTP with a center serving on a socket; its token.
pub async fn enroll_over_http(center: &fleetcare_server::Center, id: &str) -> String {
    let enrolled: Value = reqwest::Client::new()
        .post(format!("http://{}/device/v1/enroll", center.addr))
        .json(&json!({"enrollment_key": center.boot.enrollment_key, "device_id": id, "model": "acme-mfp-9000"}))
        .send()
        .await
        .expect("enroll")
        .json()
        .await
        .expect("json");
    enrolled["device_token"].as_str().expect("token").to_owned()
}

/// An answer with the headers a test looks at.
pub struct Answer {
    pub status: StatusCode,
    /// `Set-Cookie`, if any.
    pub cookie: Option<String>,
    pub body: Value,
}

/// A request with any headers (a `Host` of `center:8470` unless given) and a JSON body.
pub async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header(header::HOST, "center:8470");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let body = body
        .as_ref()
        .and_then(json_body)
        .unwrap_or_else(Body::empty);
    let resp = app
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024)
        .await
        .expect("body");
    Answer {
        status,
        cookie,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}
