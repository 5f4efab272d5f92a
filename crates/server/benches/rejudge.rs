//! B5: re-judging the whole stored fleet after a catalog change.
//!
//! `cargo bench -p fleetcare-server --bench rejudge` (BENCH_DEVICES, default 1 000 000).
//! Builds a fleet of 10-unit devices in a fresh embedded store through the real ingest path
//! (each report judged and stored with its findings), then loads two catalog changes and
//! measures the time until the whole fleet is re-judged and every changed judgement stored:
//! one that changes no device's findings (a release added everywhere); one that defines what
//! 4 % of the devices reported before the catalog knew it (their device model and a hardware
//! revision: judged by the new definitions without reporting again); and one that changes a
//! few percent (a release withdrawn). Also prints the fleet index's memory.

#[path = "support/fleet.rs"]
mod fleet;
#[path = "../../compat/benches/support/synth.rs"]
mod synth;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fleetcare_core::clock::SystemClock;
use fleetcare_server::{AppState, ServerConfig};
use fleetcare_store::Store;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

async fn load_and_wait(st: &AppState, tenant: i64, text: &str, devices: u64) -> Duration {
    let before = st.compat.rejudged.load(Ordering::Relaxed);
    let t = Instant::now();
    st.compat
        .load_catalog(st, tenant, text, "bench")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    while st.compat.rejudged.load(Ordering::Relaxed) < before + devices {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The re-judgement logs its own breakdown (judging, writing) at info.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("BENCH_LOG").unwrap_or_else(|_| "fleetcare_server=info".into()),
        ))
        .with_writer(std::io::stderr)
        .init();
    let n: u64 = std::env::var("BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    let tenant = store.ensure_tenant("default", 0).await.expect("tenant");
    let (st, _stop) = AppState::new(
        store.clone(),
        &ServerConfig::default(),
        Arc::new(SystemClock),
    );
    load_and_wait(&st, tenant, &synth::catalog(synth::Change::None), 0).await;
    let rss0 = rss_mb();

    // The fleet, through the real ingest path: enroll, judge, store with findings.
    let t = Instant::now();
    fleet::build(&st, tenant, n, synth::late_device).await;
    let built = t.elapsed();
    let rss1 = rss_mb();
    let states = store.compat_states(tenant).await.expect("states");
    let incompatible: u64 = states
        .iter()
        .filter(|(_, s, _)| s != "compatible")
        .map(|(_, _, c)| c)
        .sum();
    println!(
        "fleet: {n} devices enrolled, reported, judged and stored in {built:.1?} ({:.0}/s); {incompatible} with findings; process grew {:.0} MB (fleet index and the store's page caches)",
        n as f64 / built.as_secs_f64(),
        rss1 - rss0
    );

    let wal = std::fs::metadata(dir.path().join("fleetcare.db-wal")).map_or(0, |m| m.len());
    let db = std::fs::metadata(dir.path().join("fleetcare.db")).map_or(0, |m| m.len());
    println!(
        "store: database {} MB, write-ahead log {} MB",
        db >> 20,
        wal >> 20
    );
    let none = load_and_wait(&st, tenant, &synth::catalog(synth::Change::AddRelease), n).await;
    println!(
        "re-judge after a change that alters no device's findings: {none:.2?} for {n} devices"
    );
    let unknown = |states: &[(String, String, u64)]| -> u64 {
        states
            .iter()
            .filter(|(_, s, _)| s == "unknown")
            .map(|(_, _, c)| c)
            .sum()
    };
    let before = unknown(&store.compat_states(tenant).await.expect("states"));
    let learned = load_and_wait(
        &st,
        tenant,
        &synth::catalog_with(synth::Change::AddRelease, true),
        n,
    )
    .await;
    let after = unknown(&store.compat_states(tenant).await.expect("states"));
    println!(
        "re-judge after a revision defines the names {} late devices reported before it: {learned:.2?} for {n} devices; devices in state unknown went from {before} to {after}",
        n.div_ceil(synth::LATE_EVERY)
    );
    assert!(
        after < before,
        "the late devices are judged by the revision that defines their names"
    );
    let w = synth::Change::Withdraw {
        kind: 0,
        family: 0,
        release: synth::RELEASES - 1,
    };
    let before: u64 = store
        .finding_counts(tenant)
        .await
        .expect("counts")
        .iter()
        .map(|(_, _, c)| c)
        .sum();
    let some = load_and_wait(&st, tenant, &synth::catalog_with(w, true), n).await;
    let after: u64 = store
        .finding_counts(tenant)
        .await
        .expect("counts")
        .iter()
        .map(|(_, _, c)| c)
        .sum();
    println!(
        "re-judge after withdrawing one release: {some:.2?} for {n} devices; devices with open findings by kind went from {before} to {after}"
    );
    store.close().await.expect("close");
}
