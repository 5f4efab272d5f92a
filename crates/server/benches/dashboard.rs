//! The dashboard's pages over a large fleet: how long the center takes to render each one.
//!
//! `cargo bench -p fleetcare-server --bench dashboard` (BENCH_DEVICES, default 100 000).
//! Builds the fleet through the real ingest path, stores error events for one device in ten
//! (20 each, spread over the last day), then renders every page through the router with a
//! session cookie: 3 warm-up renders, then the median and the slowest of 20.

#[path = "support/fleet.rs"]
mod fleet;
#[path = "../../compat/benches/support/synth.rs"]
mod synth;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fleetcare_core::DeviceId;
use fleetcare_core::clock::{Clock, SystemClock};
use fleetcare_core::secret;
use fleetcare_server::{AppState, ServerConfig, app, bootstrap};
use fleetcare_store::{DeviceKey, NewErrorEvent, Store};
use tower::ServiceExt;

const RUNS: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
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
    let now = SystemClock.now_ms();
    let t = Instant::now();
    let mut events = 0u64;
    for i in (0..n).step_by(10) {
        let key = DeviceKey {
            tenant,
            device_id: DeviceId::parse(&format!("D{i:08}")).expect("id"),
        };
        let batch: Vec<NewErrorEvent> = (1..=20u64)
            .map(|seq| NewErrorEvent {
                seq,
                at_ms: now - i64::try_from((i * 7919 + seq * 4_000_000) % 86_000_000).unwrap_or(0),
                slot: "fuser".into(),
                code: format!("J-{}", seq % 4),
                severity: "error".into(),
                counters_json: None,
                detail: None,
                alert_json: None,
                dropped: false,
            })
            .collect();
        events += store
            .store_error_batch(&key, 1, "periodic", &batch, now)
            .await
            .expect("errors")
            .stored;
    }
    println!("errors: {events} events stored in {:.1?}", t.elapsed());
    st.rollouts.ready.store(true, Ordering::SeqCst);
    let session = "bench-session-secret";
    store
        .create_session(
            tenant,
            "bench",
            "admin",
            &secret::hash(session),
            now,
            now + 3_600_000,
        )
        .await
        .expect("session");
    let router = app(st.clone());
    let get = |uri: String| {
        let req = Request::builder()
            .uri(&uri)
            .header(header::COOKIE, format!("fleetcare_session={session}"))
            .body(Body::empty())
            .expect("request");
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await.expect("infallible");
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
                .await
                .expect("body");
            assert_eq!(
                status,
                StatusCode::OK,
                "{uri}: {}",
                String::from_utf8_lossy(&bytes)
            );
            bytes.len()
        }
    };
    // A rollout, so its pages have something to show.
    let rollout = {
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/rollouts")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", boot.admin_token),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"name":"bench","filter":"model ~ \"*\"","waves":"1%,10%,50%,100%"}"#,
            ))
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        v["id"].as_u64().expect("rollout id")
    };
    let (model, _) = synth::device(0);
    let pages = [
        ("overview (numbers cached)", "/ui/".to_owned()),
        ("devices (all)", "/ui/devices".to_owned()),
        ("devices of one model", format!("/ui/devices?model={model}")),
        (
            "devices by rollout filter",
            "/ui/devices?filter=unit.fuser.hw_revision+%3D+%22B%22+and+id+~+%22D0000*%22"
                .to_owned(),
        ),
        (
            "devices with a finding kind",
            "/ui/devices?finding=unit_software".to_owned(),
        ),
        ("one device", "/ui/devices/D00000010".to_owned()),
        ("rollouts", "/ui/rollouts".to_owned()),
        ("one rollout", format!("/ui/rollouts/{rollout}")),
        ("catalog", "/ui/catalog".to_owned()),
        ("audit", "/ui/audit".to_owned()),
    ];
    println!("dashboard pages over {n} devices ({RUNS} renders each, after 3 warm-ups):");
    for (name, uri) in pages {
        for _ in 0..3 {
            get(uri.clone()).await;
        }
        let mut took: Vec<Duration> = Vec::with_capacity(RUNS);
        let mut bytes = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            bytes = get(uri.clone()).await;
            took.push(t.elapsed());
        }
        took.sort();
        println!(
            "  {name:<30} median {:>9.2?}  slowest {:>9.2?}  {:>7} bytes",
            took[RUNS / 2],
            took[RUNS - 1],
            bytes
        );
    }
    // The overview after its fleet-wide numbers expired: what one render in SUMMARY_TTL costs.
    let mut took = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(fleetcare_server::ui::SUMMARY_TTL + Duration::from_millis(50)).await;
        let t = Instant::now();
        get("/ui/".to_owned()).await;
        took.push(t.elapsed());
    }
    took.sort();
    println!(
        "  {:<30} median {:>9.2?}  slowest {:>9.2?}  (once per {:?} per tenant and instance)",
        "overview, numbers recomputed",
        took[2],
        took[4],
        fleetcare_server::ui::SUMMARY_TTL
    );
    // Where a page's time goes: the API reads and store queries it is made of.
    println!("what the pages are made of:");
    let api = |uri: String| {
        let req = Request::builder()
            .uri(&uri)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", boot.admin_token),
            )
            .body(Body::empty())
            .expect("request");
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await.expect("infallible");
            assert_eq!(resp.status(), StatusCode::OK, "{uri}");
            axum::body::to_bytes(resp.into_body(), 1 << 24)
                .await
                .expect("body")
                .len()
        }
    };
    for uri in [
        "/api/v1/compat/fleet",
        "/api/v1/devices/D00000010",
        "/api/v1/devices/D00000010/compat",
        "/api/v1/devices/D00000010/history",
        "/api/v1/devices/D00000010/errors?limit=20",
        "/api/v1/troubles?device=D00000010&state=all&limit=20",
        "/api/v1/jobs?device=D00000010&limit=20",
        "/api/v1/rollouts?limit=100",
    ] {
        let mut took = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            api(uri.to_owned()).await;
            took.push(t.elapsed());
        }
        took.sort();
        println!("  {uri:<55} median {:>9.2?}", took[RUNS / 2]);
    }
    let since = now - 86_400_000;
    let mut took = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        store
            .error_counts(tenant, None, since, 3_600_000)
            .await
            .expect("counts");
        took.push(t.elapsed());
    }
    took.sort();
    println!(
        "  {:<55} median {:>9.2?}",
        "store: the fleet's error events per hour, 24 h",
        took[RUNS / 2]
    );
    let mut took = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        store.count_devices(tenant).await.expect("count");
        took.push(t.elapsed());
    }
    took.sort();
    println!(
        "  {:<55} median {:>9.2?}",
        "store: count devices",
        took[RUNS / 2]
    );
    store.close().await.expect("close");
}
