//! B1 (first cut): durable structure-report ingest through the real `fleetcare serve`.
//!
//! Starts the center binary on a temporary embedded store (or PostgreSQL with
//! `FLEETCARE_BENCH_DATABASE_URL`), enrolls `DEVICES` devices, and has `CONCURRENCY` of them
//! send 10-unit reports back to back for `SECONDS` (after a warm-up). Every report is
//! acknowledged only once durable. Prints throughput, acknowledgement latency percentiles,
//! and the center's own CPU time (from /proc/PID/stat), so the figure per server core does
//! not count the load generator sharing the machine; on PostgreSQL (on this machine), also
//! the database's CPU per report.
//!
//! `cargo bench -p fleetcare --bench ingest` (settings by environment: BENCH_SECONDS,
//! BENCH_CONCURRENCY, BENCH_DEVICES). `BENCH_TRANSPORT=mqtt`: the same reports through a
//! Mosquitto started with the shipped `deploy/mosquitto` config, one MQTT session per
//! device, BENCH_CONCURRENCY reports in flight; the broker's CPU is printed too.
//! `BENCH_PRUNE_BACKLOG=N`: before the center starts, N other devices get 100 reports each
//! received 40 days ago (past the default 30 days), so the pruner deletes while the bench
//! measures; the rows it pruned are printed.

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
        operating: operating(seq),
        supplies: Vec::new(),
        install_blocked: None,
    }
}

/// The report's operating info: `pages_total` alone, or with `BENCH_OPERATING=28` twenty
/// counters (half of them moving with every report) and eight supply levels (moving every
/// 50th report), as a colour MFP reports them.
fn operating(seq: u64) -> BTreeMap<String, f64> {
    if env_or("BENCH_OPERATING", 1) < 28 {
        return BTreeMap::from([("pages_total".to_owned(), seq as f64)]);
    }
    let mut m = BTreeMap::new();
    for i in 0..20u64 {
        let v = if i < 10 { seq * (i + 1) } else { 1000 * i };
        m.insert(format!("counter.{i}"), v as f64);
    }
    for i in 0..8u64 {
        m.insert(
            format!("supply.{i}.level_pct"),
            (100 - (seq / 50 + i) % 100) as f64,
        );
    }
    m
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    process_cpu_seconds(pid).expect("/proc/PID/stat")
}

/// A process's CPU seconds (user and system), if it is there.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ: 100 on Linux.
    Some(ticks / 100.0)
}

/// CPU seconds of every PostgreSQL process of this machine (postmaster, backends, writers):
/// the database's share when it runs beside the center, as in these benchmarks.
fn database_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        // A process that ended meanwhile is not counted.
        .filter_map(process_cpu_seconds)
        .sum()
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Duration::from_micros(sorted[i])
}

/// Measure `seconds` after a 2 s warm-up while `workers` run; (reports/s, the center's cores,
/// the broker's cores, sorted latencies in µs).
async fn measure(
    seconds: u64,
    pids: (u32, Option<u32>),
    measuring: &AtomicBool,
    stop: &AtomicBool,
    next: &AtomicU64,
    workers: Vec<tokio::task::JoinHandle<Vec<u64>>>,
) -> (f64, f64, f64, Vec<u64>) {
    tokio::time::sleep(Duration::from_secs(2)).await; // warm-up
    let cpu0 = cpu_seconds(pids.0);
    let b0 = pids.1.map_or(0.0, cpu_seconds);
    let db0 = database_cpu_seconds();
    let t0 = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pids.0) - cpu0;
    let broker = pids.1.map_or(0.0, cpu_seconds) - b0;
    let db = database_cpu_seconds() - db0;
    let n = next.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.expect("worker"));
    }
    lat.sort_unstable();
    DB_CORES.store((db / elapsed * 1e6) as u64, Ordering::Relaxed);
    (n as f64 / elapsed, cpu / elapsed, broker / elapsed, lat)
}

/// The database's CPU during the last measurement, in millionths of a core.
static DB_CORES: AtomicU64 = AtomicU64::new(0);

/// The same reports through the broker: one session per device.
async fn over_mqtt(seconds: u64, concurrency: usize, devices: usize, db_url: Option<String>) {
    use common::broker::{Broker, center_on_broker, free_port};
    use fleetcare_wire::mqtt::{self as w, Ack, Up};
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    let dir = tempfile::tempdir().expect("tempdir");
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let broker = Broker::start(broker_dir.path(), port);
    let extra: Vec<&str> = match &db_url {
        Some(url) => vec!["--database-url", url.as_str()],
        None => vec![],
    };
    let store = if db_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let served = center_on_broker(dir.path(), port, &extra).await;
    let (url, pid) = (served.url.clone(), served.pid());
    let key = common::read_secret(&dir.path().join("enrollment-key"));
    let http = reqwest::Client::new();
    let run = format!("{:x}", std::process::id());
    let mut enrolled = Vec::with_capacity(devices);
    for i in 0..devices {
        let id = format!("M{run}-{i:06}");
        let answer = common::enroll_answer(&http, &url, &key, &id).await;
        let tenant = answer.tenant.expect("tenant");
        broker.add(&format!("{tenant}/{id}"), "bench-pw");
        enrolled.push((tenant, id, answer.device_token));
    }
    broker.reload();
    let next = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // One session per device; each worker owns devices w, w+C, w+2C, … (one report in
    // flight per worker, as the HTTP run), so each device reports well under its rate limit.
    struct Session {
        client: AsyncClient,
        acks: tokio::sync::mpsc::UnboundedReceiver<Ack>,
        ready: tokio::sync::oneshot::Receiver<()>,
        topic: String,
        id: String,
        token: String,
        seq: u64,
    }
    let mut sessions: Vec<Vec<Session>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (n, (tenant, id, token)) in enrolled.into_iter().enumerate() {
        let mut o = MqttOptions::new(format!("bench-{id}"), "127.0.0.1", port);
        o.set_credentials(format!("{tenant}/{id}"), "bench-pw")
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(64 * 1024, 300 * 1024);
        let (client, mut session) = AsyncClient::new(o, 16);
        session.set_network_options(fleetcare_server::devices::mqtt::no_delay());
        let (acks_tx, acks) = tokio::sync::mpsc::unbounded_channel::<Ack>();
        let (ready_tx, ready) = tokio::sync::oneshot::channel::<()>();
        let down = format!("{}/{tenant}/{id}/down/ack", w::ROOT);
        let sub = client.clone();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match session.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.subscribe(&down, QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if acks_tx
                            .send(serde_json::from_slice(&p.payload).expect("an ack"))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Refused until the broker has read the accounts.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        sessions[n % concurrency].push(Session {
            client,
            acks,
            ready,
            topic: w::up_topic(tenant, &id, w::REPORT),
            id,
            token,
            seq: 0,
        });
    }
    let mut workers = Vec::new();
    for mut mine in sessions {
        let (next, measuring, stop) = (next.clone(), measuring.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            for s in &mut mine {
                tokio::time::timeout(Duration::from_secs(60), &mut s.ready)
                    .await
                    .expect("the device is on the broker")
                    .expect("ready");
            }
            let mut lat = Vec::new();
            let mut d = 0;
            while !stop.load(Ordering::Relaxed) {
                let n = mine.len();
                let s = &mut mine[d];
                d = (d + 1) % n;
                s.seq += 1;
                let payload = serde_json::to_vec(&Up {
                    id: s.seq.to_string(),
                    credential: s.token.clone(),
                    body: report(&s.id, s.seq),
                })
                .expect("envelope");
                let t = Instant::now();
                s.client
                    .publish(&s.topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .expect("publish");
                let ack = tokio::time::timeout(Duration::from_secs(30), s.acks.recv())
                    .await
                    .expect("an answer within 30 s")
                    .expect("answer");
                assert_eq!((ack.status, ack.id), (200, s.seq.to_string()));
                if measuring.load(Ordering::Relaxed) {
                    lat.push(t.elapsed().as_micros() as u64);
                    next.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let (rate, cores, broker_cores, lat) = measure(
        seconds,
        (pid, Some(broker.pid())),
        &measuring,
        &stop,
        &next,
        workers,
    )
    .await;
    println!(
        "ingest {store} over MQTT: {devices} devices (a session each), {concurrency} in flight, {seconds} s: \
         {rate:.0} reports/s; center CPU {cores:.2} core(s) = {:.0} reports/s per server core; \
         broker CPU {broker_cores:.2} core(s); ack p50 {:?} p99 {:?} max {:?}",
        rate / cores.max(1e-9),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    served.kill9().await;
    drop(broker);
}

/// `devices` devices of the default tenant with 100 reports each, received 40 days ago.
async fn backlog(dir: &std::path::Path, db_url: Option<&str>, devices: u64) {
    use fleetcare_store::{DeviceKey, NewReport, Store};
    const DAY_MS: i64 = 86_400_000;
    let store = match db_url {
        Some(u) => Store::open_postgres(u).await,
        None => Store::open_sqlite(dir).await,
    }
    .expect("the store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let old = now - 40 * DAY_MS;
    let tenant = store.ensure_tenant("default", old).await.expect("tenant");
    let t = Instant::now();
    let ids: Vec<u64> = (0..devices).collect();
    for chunk in ids.chunks(256) {
        let mut set = tokio::task::JoinSet::new();
        for d in chunk {
            let store = store.clone();
            let id = format!("OLD-{d:06}");
            set.spawn(async move {
                let key = DeviceKey {
                    tenant,
                    device_id: fleetcare_core::DeviceId::parse(&id).expect("id"),
                };
                store
                    .enroll_device(&key, "acme-mfp-9000", &format!("unused-{id}"), None, old)
                    .await
                    .expect("enroll");
                for seq in 1..=100u64 {
                    let r = report(&id, seq);
                    let at = old + seq as i64 * 1000;
                    store
                        .ingest_report(NewReport {
                            key: key.clone(),
                            seq,
                            trigger: Trigger::Periodic,
                            observed_at_ms: at,
                            received_at_ms: at,
                            structure: fleetcare_core::Structure::new(&r.model, r.units)
                                .expect("structure"),
                            operating: r.operating,
                            supplies: Vec::new(),
                            judgement: None,
                            install_blocked: None,
                        })
                        .await
                        .expect("old report");
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("backlog task");
        }
    }
    store.close().await.expect("close");
    println!(
        "backlog: {} reports of {devices} devices, received 40 days ago, written in {:.1?}",
        devices * 100,
        t.elapsed()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 256) as usize;
    if std::env::var("BENCH_TRANSPORT").is_ok_and(|t| t == "mqtt") {
        over_mqtt(
            seconds,
            concurrency,
            (env_or("BENCH_DEVICES", 2000) as usize).max(concurrency),
            std::env::var("FLEETCARE_BENCH_DATABASE_URL").ok(),
        )
        .await;
        return;
    }
    let devices = (env_or("BENCH_DEVICES", 2000) as usize).max(concurrency);
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = std::env::var("FLEETCARE_BENCH_DATABASE_URL").ok();
    let (store, extra): (&str, Vec<&str>) = match &db_url {
        Some(url) => ("postgres", vec!["--database-url", url.as_str()]),
        None => ("sqlite", vec![]),
    };
    let prune_backlog = env_or("BENCH_PRUNE_BACKLOG", 0);
    if prune_backlog > 0 {
        backlog(dir.path(), db_url.as_deref(), prune_backlog).await;
    }
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
    let pruned = r#"fleetcare_pruned_rows_total{kind="reports"} "#;
    let pruned_before = common::metric(&http, &url, pruned).await;
    let (rate, cores, _, lat) =
        measure(seconds, (pid, None), &measuring, &stop, &next, workers).await;
    if prune_backlog > 0 {
        println!(
            "pruned meanwhile (warm-up and measurement): {:.0} reports",
            common::metric(&http, &url, pruned).await - pruned_before
        );
    }
    println!(
        "ingest {store}: {devices} devices, {concurrency} in flight, {seconds} s: \
         {rate:.0} reports/s; center CPU {cores:.2} core(s) = {:.0} reports/s per server core; \
         ack p50 {:?} p99 {:?} max {:?}",
        rate / cores.max(1e-9),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    if db_url.is_some() {
        let db = DB_CORES.load(Ordering::Relaxed) as f64 / 1e6;
        println!(
            "database CPU {db:.2} core(s) = {:.0} µs per report",
            db / rate.max(1e-9) * 1e6
        );
    }
    served.kill9().await;
}
