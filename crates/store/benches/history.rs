//! What operating history costs on disk (BENCHMARKS.md, "Operating history"): the same fleet
//! of devices reporting hourly for days, once with a colour MFP's operating info (20 counters,
//! half of them moving with every report, and 8 supplies whose levels fall slowly) and once
//! with none, on the embedded store; prints the history's bytes per report (its JSON, and the
//! database file's growth against the run without it) and per device-day.
//!
//! `cargo bench -p fleetcare-store --bench history` (BENCH_DEVICES, BENCH_DAYS).

use std::collections::BTreeMap;
use std::time::Instant;

use fleetcare_core::{DeviceId, Structure};
use fleetcare_store::{DeviceKey, NewReport, Store};
use fleetcare_wire::{Supply, SupplyKind, SupplyState, Trigger, Unit};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const DAY_MS: i64 = 86_400_000;
const START: i64 = 1_790_000_000_000 / DAY_MS * DAY_MS;

fn units(d: u64) -> Vec<Unit> {
    ["controller", "engine", "fuser", "finisher"]
        .iter()
        .map(|k| Unit {
            slot: (*k).into(),
            kind: (*k).into(),
            model: format!("{k}-m"),
            serial: format!("{k}-{d}"),
            hw_revision: "A".into(),
            software: vec![],
            in_service: true,
        })
        .collect()
}

/// The `n`-th hourly reading of device `d`: 20 counters, the first ten moving.
fn operating(d: u64, n: u64) -> BTreeMap<String, f64> {
    (0..20u64)
        .map(|i| {
            let v = if i < 10 {
                d * 1000 + n * (i + 1) * 37
            } else {
                1000 * i
            };
            (format!("counter.{i}"), v as f64)
        })
        .collect()
}

/// 8 supplies whose levels fall by one point every few hours.
fn supplies(n: u64) -> Vec<Supply> {
    (0..8u64)
        .map(|i| Supply {
            slot: format!("supply.{i}"),
            kind: if i < 4 {
                SupplyKind::Toner
            } else {
                SupplyKind::Drum
            },
            color: None,
            level_pct: Some(100.0 - ((n / (3 + i)) % 100) as f64),
            level: None,
            max: None,
            part_number: Some(format!("PN-{i}")),
            serial: Some(format!("SN-{i}")),
            state: SupplyState::Ok,
        })
        .collect()
}

async fn run(devices: u64, days: u64, with_history: bool) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    let t = store.ensure_tenant("default", START).await.expect("tenant");
    let mut keys = Vec::new();
    for d in 0..devices {
        let key = DeviceKey {
            tenant: t,
            device_id: DeviceId::parse(&format!("DEV-{d}")).expect("id"),
        };
        store
            .enroll_device(&key, "mfp", &format!("cred-{d}"), None, START)
            .await
            .expect("enroll");
        keys.push(key);
    }
    let mut reports = 0u64;
    for n in 0..days * 24 {
        let mut tasks = tokio::task::JoinSet::new();
        for (d, key) in keys.iter().enumerate() {
            let d = d as u64;
            let sup = if with_history { supplies(n) } else { vec![] };
            let structure = Structure::new("mfp", units(d))
                .expect("valid")
                .with_supplies(&sup)
                .expect("valid");
            let r = NewReport {
                key: key.clone(),
                seq: n + 1,
                trigger: Trigger::Periodic,
                observed_at_ms: START + n as i64 * 3_600_000,
                received_at_ms: START + n as i64 * 3_600_000,
                structure,
                operating: if with_history {
                    operating(d, n)
                } else {
                    BTreeMap::new()
                },
                supplies: sup,
                judgement: None,
                install_blocked: None,
            };
            let store = store.clone();
            tasks.spawn(async move { store.ingest_report(r).await.expect("ingest") });
        }
        while tasks.join_next().await.is_some() {
            reports += 1;
        }
    }
    store.close().await.expect("close");
    let db = dir.path().join(fleetcare_store::sqlite::DB_FILE);
    let file = std::fs::metadata(&db).expect("db").len();
    let json: i64 = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row(
            "SELECT COALESCE(SUM(LENGTH(op_vals)), 0) FROM reports",
            [],
            |r| r.get(0),
        )
        .expect("sum");
    (reports, file, u64::try_from(json).unwrap_or(0))
}

fn main() {
    let devices = env_or("BENCH_DEVICES", 200);
    let days = env_or("BENCH_DAYS", 3);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let (reports, with_file, json) = rt.block_on(run(devices, days, true));
    let (_, without_file, _) = rt.block_on(run(devices, days, false));
    let per_report = (with_file.saturating_sub(without_file)) as f64 / reports as f64;
    println!(
        "history: {devices} devices × {days} days hourly = {reports} reports with 20 counters and \
         8 supplies: {:.0} bytes of history JSON per report, {per_report:.0} bytes of database \
         per report ({:.1} KB per device-day) against the same reports without operating info \
         ({:.1} s)",
        json as f64 / reports as f64,
        per_report * 24.0 / 1024.0,
        started.elapsed().as_secs_f64()
    );
}
