//! B6: a rollout over a million devices — selected by its filter from the fleet index,
//! placed in waves and stored, through the real API.
//!
//! `cargo bench -p fleetcare-server --bench rollout` (BENCH_DEVICES, default 1 000 000).
//! Builds the fleet through the real ingest path first (minutes), then creates a rollout
//! (`model ~ "*"`, waves `1%,10%,50%,100%`) with the router and times the request; then reads
//! its progress (counters, no scan of jobs) and times that.

#[path = "support/fleet.rs"]
mod fleet;
#[path = "../../compat/benches/support/synth.rs"]
mod synth;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use fleetcare_core::clock::SystemClock;
use fleetcare_server::{AppState, ServerConfig, app, bootstrap};
use fleetcare_store::Store;
use tower::ServiceExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    let boot = bootstrap::run(&store, dir.path(), "default", 0)
        .await
        .expect("bootstrap");
    let tenant = boot.tenant;
    let (st, _stop) = AppState::new(
        store.clone(),
        &ServerConfig::default(),
        Arc::new(SystemClock),
    );
    st.compat
        .load_catalog(&st, tenant, &synth::catalog(synth::Change::None), "bench")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    fleet::build(&st, tenant, n, synth::device).await;
    println!("fleet: {n} devices built in {:.1?}", t.elapsed());
    st.rollouts.ready.store(true, Ordering::SeqCst);
    let router = app(st.clone());
    let call = |method: &str, uri: &str, body: Option<String>| {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", boot.admin_token),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, Body::from))
            .expect("request");
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await.expect("infallible");
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
                .await
                .expect("body");
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default(),
            )
        }
    };
    let body = serde_json::json!({"name": "bench", "filter": "model ~ \"*\"",
        "waves": "1%,10%,50%,100%"})
    .to_string();
    let t = Instant::now();
    let (status, r) = call("POST", "/api/v1/rollouts", Some(body)).await;
    let took = t.elapsed();
    assert!(status.is_success(), "{status}: {r}");
    let id = r["id"].as_u64().expect("id");
    let t = Instant::now();
    let mut reads = 0u32;
    while t.elapsed() < Duration::from_secs(2) {
        let (s, _) = call("GET", &format!("/api/v1/rollouts/{id}"), None).await;
        assert!(s.is_success());
        reads += 1;
    }
    let per_read = t.elapsed() / reads.max(1);
    let waves: Vec<u64> = r["waves"]
        .as_array()
        .expect("waves")
        .iter()
        .map(|w| w["devices"].as_u64().unwrap_or(0))
        .collect();
    println!(
        "B6 rollout over {n} devices: {} selected, split into waves {waves:?} and stored in {took:.2?} (target ≤ 10 s); progress read in {per_read:.2?} (counters, no scan)",
        r["total"]["devices"]
    );
    store.close().await.expect("close");
}
