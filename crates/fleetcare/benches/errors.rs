//! B2: durable error-event ingest with diagnosis rules evaluated, through the real
//! `fleetcare serve`, and the time from a triggering batch to its trouble.
//!
//! Starts the center binary on a temporary embedded store (or PostgreSQL with
//! `FLEETCARE_BENCH_DATABASE_URL`), loads `examples/rules.toml` (unless `BENCH_RULES=0`),
//! enrolls `BENCH_DEVICES` devices, and has them send batches of `BENCH_BATCH` events back to
//! back for `BENCH_SECONDS` (after a warm-up), each batch acknowledged only once durable. Every
//! event matches a rule (jams counted per printed pages), so each device opens a trouble and
//! then counts recurrences. Meanwhile a probe device sends three fuser overheats at a time and
//! polls the operator API until the trouble is there (then resolves it and starts again).
//! Prints events/s, batch acknowledgement latency, the center's CPU time, and the probe's
//! batch-to-trouble latency.
//!
//! `cargo bench -p fleetcare --bench errors`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleetcare_wire::errors::{ErrorBatch, ErrorEvent, ErrorTrigger};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_micros(sorted[i])
}

fn event(seq: u64) -> ErrorEvent {
    let mut counters = std::collections::BTreeMap::new();
    counters.insert("pages_total".to_owned(), 184_220.0 + seq as f64);
    ErrorEvent {
        seq,
        at_ms: 1_790_000_000_000 + seq as i64,
        slot: "fuser".into(),
        code: format!("J-{}", 100 + seq % 37),
        severity: ["info", "warning", "error"][(seq % 3) as usize].into(),
        counters,
        detail: Some("paper jam at the fuser exit".into()),
        alert: None,
        dropped: false,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let devices = env_or("BENCH_DEVICES", 32) as usize;
    let batch = env_or("BENCH_BATCH", 50);
    let with_rules = env_or("BENCH_RULES", 1) == 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = std::env::var("FLEETCARE_BENCH_DATABASE_URL").ok();
    // 32 devices stand for a fleet's many: each sends far more than a device's request
    // budget allows (10 a second), so the budget is off here.
    let conf = dir.path().join("center.toml");
    std::fs::write(&conf, "device_rate_per_s = 0\n").expect("config");
    let conf = conf.to_str().expect("utf-8").to_owned();
    let (store, extra): (&str, Vec<&str>) = match &db_url {
        Some(url) => (
            "postgres",
            vec!["--database-url", url.as_str(), "--config", &conf],
        ),
        None => ("sqlite", vec!["--config", &conf]),
    };
    let served = common::serve(dir.path(), &extra).await;
    let (url, pid) = (served.url.clone(), served.pid());
    let key = common::read_secret(&dir.path().join("enrollment-key"));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(devices)
        .build()
        .expect("client");
    let admin = common::read_secret(&dir.path().join("admin-token"));
    if with_rules {
        let rules = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/rules.toml"
        ))
        .expect("examples/rules.toml");
        let r = http
            .put(format!("{url}/api/v1/rules"))
            .bearer_auth(&admin)
            .body(rules)
            .send()
            .await
            .expect("rules loaded");
        assert!(r.status().is_success(), "{}", r.status());
    }
    let run = format!("{:x}", std::process::id());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for d in 0..devices {
        let id = format!("E{run}-{d:04}");
        let token = common::enroll(&http, &url, &key, &id).await;
        let (http, url, measuring, stop, events) = (
            http.clone(),
            url.clone(),
            measuring.clone(),
            stop.clone(),
            events.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = ErrorBatch {
                    device_id: id.clone(),
                    boot_epoch: 1,
                    trigger: ErrorTrigger::Accumulation,
                    events: (seq + 1..=seq + batch).map(event).collect(),
                };
                seq += batch;
                let t = Instant::now();
                let resp = http
                    .post(format!("{url}/device/v1/errors"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .expect("batch sent");
                assert!(resp.status().is_success(), "{}", resp.status());
                let ack: fleetcare_wire::errors::ErrorAck = resp.json().await.expect("ack");
                assert_eq!(ack.acked_seq, seq, "acknowledged up to the batch's end");
                if measuring.load(Ordering::Relaxed) {
                    lat.push(t.elapsed().as_micros() as u64);
                    events.fetch_add(batch, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let probe = with_rules.then(|| {
        let (http, url, admin, key, stop) = (
            http.clone(),
            url.clone(),
            admin.clone(),
            key.clone(),
            stop.clone(),
        );
        let id = format!("P{run}");
        tokio::spawn(async move { probe(&http, &url, &admin, &key, &id, &stop).await })
    });
    tokio::time::sleep(Duration::from_secs(2)).await; // warm-up
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let n = events.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.expect("worker"));
    }
    lat.sort_unstable();
    let opened = match probe {
        Some(p) => p.await.expect("probe"),
        None => Vec::new(),
    };
    let mut from_ack: Vec<u64> = opened.iter().map(|o| o.1).collect();
    let mut opened: Vec<u64> = opened.iter().map(|o| o.0).collect();
    opened.sort_unstable();
    from_ack.sort_unstable();
    println!(
        "B2 error ingest {store}: {devices} devices, batches of {batch}, {seconds} s: \
         {:.0} events/s; center CPU {:.2} core(s) = {:.0} events/s per server core; \
         batch ack p50 {:?} p99 {:?}",
        n as f64 / elapsed,
        cpu / elapsed,
        n as f64 / cpu.max(1e-9),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
    );
    if !opened.is_empty() {
        println!(
            "B2 batch to trouble (probe, {} troubles): from the batch's acknowledgement \
             p50 {:?} p99 {:?} max {:?}; from sending it p50 {:?} p99 {:?}",
            opened.len(),
            percentile(&from_ack, 0.50),
            percentile(&from_ack, 0.99),
            percentile(&from_ack, 1.0),
            percentile(&opened, 0.50),
            percentile(&opened, 0.99),
        );
    }
    served.kill9().await;
}

/// A device that overheats its fuser three times, and the time until the center shows the
/// trouble (polled every millisecond through the operator API); then resolved, and again.
async fn probe(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    key: &str,
    id: &str,
    stop: &AtomicBool,
) -> Vec<(u64, u64)> {
    let token = common::enroll(http, url, key, id).await;
    let report = serde_json::json!({"device_id": id, "model": "acme-mfp-9000", "seq": 1,
        "trigger": "connect", "observed_at_ms": 1_790_000_000_000i64,
        "units": [{"slot": "fuser", "kind": "fuser", "model": "fus-7", "serial": "F-1",
                   "hw_revision": "A", "software": []}]});
    let r = http
        .post(format!("{url}/device/v1/reports"))
        .bearer_auth(&token)
        .json(&report)
        .send()
        .await
        .expect("report");
    assert!(r.status().is_success(), "{}", r.status());
    let mut seq = 0u64;
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) && out.len() < 200 {
        let events = (1..=3)
            .map(|i| ErrorEvent {
                seq: seq + i,
                at_ms: 1_790_000_000_000 + (seq + i) as i64,
                slot: "fuser".into(),
                code: "SC541".into(),
                severity: "error".into(),
                counters: Default::default(),
                detail: None,
                alert: None,
                dropped: false,
            })
            .collect();
        seq += 3;
        let t = Instant::now();
        let r = http
            .post(format!("{url}/device/v1/errors"))
            .bearer_auth(&token)
            .json(&ErrorBatch {
                device_id: id.into(),
                boot_epoch: 1,
                trigger: ErrorTrigger::Immediate,
                events,
            })
            .send()
            .await
            .expect("batch");
        assert!(r.status().is_success(), "{}", r.status());
        let acked = Instant::now();
        let mut found = None;
        for _ in 0..10_000 {
            let v: serde_json::Value = http
                .get(format!("{url}/api/v1/troubles?device={id}"))
                .bearer_auth(admin)
                .send()
                .await
                .expect("troubles")
                .json()
                .await
                .expect("json");
            if let Some(t) = v["troubles"][0]["id"].as_u64() {
                found = Some(t);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let Some(trouble) = found else {
            panic!("no trouble 10,000 polls after the batch");
        };
        out.push((
            t.elapsed().as_micros() as u64,
            acked.elapsed().as_micros() as u64,
        ));
        let r = http
            .post(format!("{url}/api/v1/troubles/{trouble}/resolve"))
            .bearer_auth(admin)
            .send()
            .await
            .expect("resolve");
        assert!(r.status().is_success(), "{}", r.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out
}
