//! B1 (first cut): durable structure-report ingest through the real `fleetcare serve`.
//!
//! Starts the center binary on a temporary embedded store (or PostgreSQL with
//! `FLEETCARE_BENCH_DATABASE_URL`), enrolls `DEVICES` devices, and has `CONCURRENCY` of them
//! send 10-unit reports back to back for `SECONDS` (after a warm-up). Every report is
//! acknowledged only once durable. Prints throughput, acknowledgement latency percentiles,
//! and the center's own CPU time (from /proc/PID/stat), so the figure per server core does
//! not count the load generator sharing the machine.
//!
//! `cargo bench -p fleetcare --bench ingest` (settings by environment: BENCH_SECONDS,
//! BENCH_CONCURRENCY, BENCH_DEVICES).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleetcare_wire::device::StructureReport;
use fleetcare_wire::{Software, Trigger, Unit};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(id: &str, seq: u64) -> StructureReport {
    let kinds = [
        "controller",
        "engine",
        "fuser",
        "finisher",
        "adf",
        "tray-1",
        "tray-2",
        "duplexer",
        "fax",
        "scanner",
    ];
    let units = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| Unit {
            slot: (*k).to_owned(),
            kind: (*k).to_owned(),
            model: format!("{k}-m{}", i % 3),
            // One report in 50 replaces the fuser: some reports write history.
            serial: if *k == "fuser" {
                format!("{k}-{id}-{}", seq / 50)
            } else {
                format!("{k}-{id}")
            },
            hw_revision: "A".into(),
            software: if i % 2 == 0 {
                vec![Software {
                    product: format!("{k}-fw"),
                    maker: "acme".into(),
                    version: "5.2.1".into(),
                    active: true,
                }]
            } else {
                vec![]
            },
            in_service: true,
        })
        .collect();
    StructureReport {
        device_id: id.to_owned(),
        model: "acme-mfp-9000".into(),
        seq,
        trigger: Trigger::Periodic,
        observed_at_ms: 1_790_000_000_000,
        units,
        operating: BTreeMap::from([("pages_total".to_owned(), seq as f64)]),
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // USER_HZ: 100 on Linux.
    ticks / 100.0
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_micros(sorted[i])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 256) as usize;
    let devices = (env_or("BENCH_DEVICES", 2000) as usize).max(concurrency);
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = std::env::var("FLEETCARE_BENCH_DATABASE_URL").ok();
    let (store, extra): (&str, Vec<&str>) = match &db_url {
        Some(url) => ("postgres", vec!["--database-url", url.as_str()]),
        None => ("sqlite", vec![]),
    };
    let served = common::serve(dir.path(), &extra).await;
    let (url, pid) = (served.url.clone(), served.pid());
    let key = common::read_secret(&dir.path().join("enrollment-key"));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let run = format!("{:x}", std::process::id());
    let mut tokens = Vec::with_capacity(devices);
    for i in 0..devices {
        let id = format!("B{run}-{i:06}");
        let token = common::enroll(&http, &url, &key, &id).await;
        tokens.push((id, token));
    }
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (http, url, tokens, next, measuring, stop) = (
            http.clone(),
            url.clone(),
            tokens.clone(),
            next.clone(),
            measuring.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut seqs = vec![0u64; tokens.len()];
            let mut d = w;
            while !stop.load(Ordering::Relaxed) {
                // Each worker owns devices w, w+C, w+2C, … so a device's reports stay in order.
                let (id, token) = &tokens[d];
                seqs[d] += 1;
                let body = report(id, seqs[d]);
                let t = Instant::now();
                let resp = http
                    .post(format!("{url}/device/v1/reports"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .expect("report sent");
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.bytes().await;
                if measuring.load(Ordering::Relaxed) {
                    lat.push(t.elapsed().as_micros() as u64);
                    next.fetch_add(1, Ordering::Relaxed);
                }
                d += concurrency;
                if d >= tokens.len() {
                    d = w;
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // warm-up
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let n = next.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.expect("worker"));
    }
    lat.sort_unstable();
    println!(
        "ingest {store}: {devices} devices, {concurrency} in flight, {seconds} s: \
         {:.0} reports/s; center CPU {:.2} core(s) = {:.0} reports/s per server core; \
         ack p50 {:?} p99 {:?} max {:?}",
        n as f64 / elapsed,
        cpu / elapsed,
        n as f64 / cpu.max(1e-9),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    served.kill9().await;
}
