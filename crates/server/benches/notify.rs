//! Notifications: how fast the worker delivers webhooks, how long from an event's commit to
//! its arrival, and a burst to a receiver that is down for a while.
//!
//! `cargo bench -p fleetcare-server --bench notify` (BENCH_EVENTS, default 20 000;
//! BENCH_DOWN_S, default 60). Embedded store in a temporary directory, the real worker, a
//! real HTTP receiver on 127.0.0.1 that checks every signature:
//!
//! 1. throughput: BENCH_EVENTS events waiting in the outbox when the worker starts; deliveries
//!    per second until the receiver has acknowledged every one;
//! 2. latency: 2 000 events committed one at a time, 100 per second (the worker woken by the
//!    store's commit, as for an event a trigger writes); commit → arrival p50/p99;
//! 3. burst: 10 000 events while the receiver answers 503 for BENCH_DOWN_S; all delivered,
//!    none twice, and how long after the receiver came back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetcare_core::clock::{Clock, SystemClock};
use fleetcare_server::{AppState, ServerConfig, bootstrap};
use fleetcare_store::Store;
use fleetcare_store::notify::{NewSubscription, OutboxEvent};
use fleetcare_testkit::receivers::WebhookReceiver;

fn event(tenant: i64) -> OutboxEvent {
    OutboxEvent {
        id: 0,
        tenant,
        kind: "test".into(),
        device_id: None,
        subject_id: None,
        severity: Some("info".into()),
        at_ms: SystemClock.now_ms(),
        detail: Some("bench".into()),
    }
}

/// Commit `n` events, many at a time (the store groups their commits); their ids.
async fn make(store: &Store, tenant: i64, n: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let events: Vec<OutboxEvent> = chunk.iter().map(|_| event(tenant)).collect();
        let batch =
            futures_util::future::join_all(events.iter().map(|e| store.add_outbox_event(e))).await;
        ids.extend(batch.into_iter().map(|r| r.expect("an event")));
    }
    ids
}

async fn wait_acked(hook: &WebhookReceiver, n: usize, patience: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let acked = hook.acked_by_event().len();
        if acked >= n {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < patience,
            "only {acked} of {n} delivered after {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let down_s: u64 = std::env::var("BENCH_DOWN_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    let boot = bootstrap::run(&store, dir.path(), "default", SystemClock.now_ms())
        .await
        .expect("bootstrap");
    let config = ServerConfig::default();
    let (state, _stop) = AppState::new(store.clone(), &config, Arc::new(SystemClock));
    let hook = WebhookReceiver::start().await;
    hook.set_secret("bench-secret");
    store
        .add_subscription(
            boot.tenant,
            &NewSubscription {
                name: "bench".into(),
                channel: "webhook".into(),
                target: hook.url.clone(),
                events: "test".into(),
                filter: String::new(),
                min_severity: "info".into(),
                digest_minutes: 0,
                secret: "bench-secret".into(),
            },
            "bench",
            SystemClock.now_ms(),
        )
        .await
        .expect("subscription");

    // 1. Throughput.
    make(&store, boot.tenant, n).await;
    tokio::spawn(fleetcare_server::notify::run(
        state.ctx.clone(),
        state.notify.clone(),
        state.rollouts.clone(),
    ));
    let took = wait_acked(&hook, n, Duration::from_secs(600)).await;
    println!(
        "throughput: {n} webhooks delivered in {:.2} s: {:.0} /s (signatures all valid: {})",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        hook.received().iter().all(|r| r.signature_ok)
    );

    // 2. Latency from commit to arrival.
    let before = hook.received().len();
    let mut committed: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..2000 {
        tick.tick().await;
        let id = store
            .add_outbox_event(&event(boot.tenant))
            .await
            .expect("an event");
        committed.insert(format!("evt_{id}"), Instant::now());
    }
    wait_acked(&hook, n + 2000, Duration::from_secs(120)).await;
    let mut lat: Vec<f64> = hook.received()[before..]
        .iter()
        .filter_map(|r| {
            committed
                .get(&r.event_id)
                .map(|c| r.at.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "latency, commit to arrival, 100 events/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(0.0),
        lat.len()
    );

    // 3. A burst while the receiver is down.
    hook.down_for(Duration::from_secs(down_s));
    let down_since = Instant::now();
    make(&store, boot.tenant, 10_000).await;
    let total = n + 2000 + 10_000;
    wait_acked(&hook, total, Duration::from_secs(down_s + 3600)).await;
    let back_after = down_since
        .elapsed()
        .saturating_sub(Duration::from_secs(down_s));
    let acked = hook.acked_by_event();
    let twice = acked.values().filter(|c| **c > 1).count();
    let refused = hook.received().iter().filter(|r| !r.acked).count();
    println!(
        "burst: 10000 events while the receiver was down {down_s} s ({refused} attempts refused): \
         all {} delivered {:.1} s after it came back, {twice} delivered twice",
        acked.len(),
        back_after.as_secs_f64()
    );
}
