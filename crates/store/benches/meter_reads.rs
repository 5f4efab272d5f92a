//! A month's meter reads for a large fleet (BENCHMARKS.md, "Meter reads"): devices whose
//! reports straddle both edges of November (one at 18:00 the day before each edge, one at
//! 06:00 after it, each with a colour MFP's seven billing meters among 20 counters), read
//! back the way the center does — pages of devices, the readings either side of each edge
//! (two indexed lookups each), the resets — and the values at the edges computed. Also times
//! the supply forecast (a robust fit over 120 readings) for as many devices.
//!
//! `cargo bench -p fleetcare-store --bench meter_reads` (BENCH_DEVICES, default 100,000).

use std::collections::BTreeMap;
use std::time::Instant;

use fleetcare_core::meters;
use fleetcare_core::{DeviceId, Structure};
use fleetcare_store::{DeviceKey, NewReport, Store};
use fleetcare_wire::{Trigger, Unit};

const HOUR_MS: i64 = 3_600_000;

fn operating(d: u64, n: u64) -> BTreeMap<String, f64> {
    let mut o: BTreeMap<String, f64> = (0..13u64)
        .map(|i| (format!("counter.{i}"), (1000 * i + n) as f64))
        .collect();
    for (i, (k, _)) in meters::BILLING_METERS.iter().enumerate() {
        o.insert((*k).to_owned(), (d * 10 + n * 1000 * (i as u64 + 1)) as f64);
    }
    o
}

async fn fill(store: &Store, devices: u64) -> Vec<DeviceKey> {
    let t = store.ensure_tenant("default", 0).await.expect("tenant");
    let mut keys = Vec::with_capacity(devices as usize);
    let mut tasks = tokio::task::JoinSet::new();
    for d in 0..devices {
        let key = DeviceKey {
            tenant: t,
            device_id: DeviceId::parse(&format!("DEV-{d:06}")).expect("id"),
        };
        keys.push(key.clone());
        let store = store.clone();
        tasks.spawn(async move {
            store
                .enroll_device(&key, "mfp", &format!("cred-{d}"), None, 0)
                .await
                .expect("enroll");
        });
        if tasks.len() >= 256 {
            tasks.join_next().await;
        }
    }
    while tasks.join_next().await.is_some() {}
    let times = [
        meters::month_start_ms(2026, 11) - 6 * HOUR_MS,
        meters::month_start_ms(2026, 11) + 6 * HOUR_MS,
        meters::month_start_ms(2026, 12) - 6 * HOUR_MS,
        meters::month_start_ms(2026, 12) + 6 * HOUR_MS,
    ];
    for (n, at) in times.iter().enumerate() {
        for (d, key) in keys.iter().enumerate() {
            let r = NewReport {
                key: key.clone(),
                seq: n as u64 + 1,
                trigger: Trigger::Periodic,
                observed_at_ms: *at,
                received_at_ms: *at,
                structure: Structure::new(
                    "mfp",
                    vec![Unit {
                        slot: "engine".into(),
                        kind: "engine".into(),
                        model: "e".into(),
                        serial: format!("E-{d}"),
                        hw_revision: "A".into(),
                        software: vec![],
                        in_service: true,
                    }],
                )
                .expect("valid"),
                operating: operating(d as u64, n as u64),
                supplies: vec![],
                judgement: None,
                install_blocked: None,
            };
            let store = store.clone();
            tasks.spawn(async move {
                store.ingest_report(r).await.expect("ingest");
            });
            if tasks.len() >= 512 {
                tasks.join_next().await;
            }
        }
        while tasks.join_next().await.is_some() {}
    }
    keys
}

fn main() {
    let devices: u64 = std::env::var("BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        let store = Store::open_sqlite(dir.path()).await.expect("store");
        let filled = Instant::now();
        let keys = fill(&store, devices).await;
        let fill_s = filled.elapsed().as_secs_f64();
        let tenant = keys[0].tenant;
        let (since, until) = (meters::month_start_ms(2026, 11), meters::month_start_ms(2026, 12));
        let started = Instant::now();
        let (mut after, mut read, mut pages) = (String::new(), 0u64, 0u64);
        loop {
            let page = store
                .meter_read_devices(tenant, None, &after, 2000)
                .await
                .expect("page");
            let Some(last) = page.last() else { break };
            after = last.device_id.clone();
            let mut tasks = tokio::task::JoinSet::new();
            for d in page {
                let store = store.clone();
                let key = DeviceKey {
                    tenant,
                    device_id: DeviceId::parse(&d.device_id).expect("id"),
                };
                tasks.spawn(async move {
                    let s = store.edge_neighbours(&key, since, d.newest.as_ref()).await.expect("s");
                    let e = store.edge_neighbours(&key, until, d.newest.as_ref()).await.expect("e");
                    let resets = store.meter_resets(&key, since, until).await.expect("resets");
                    let val = |r: &Option<(i64, BTreeMap<String, f64>)>| {
                        r.as_ref().and_then(|(at, v)| Some((*at, *v.get("pages_total")?)))
                    };
                    let a = meters::edge_value(since, val(&s.before), val(&s.after), !resets.is_empty());
                    let b = meters::edge_value(until, val(&e.before), val(&e.after), false);
                    matches!((a, b), (Some(_), Some(_)))
                });
                if tasks.len() >= 8 {
                    read += u64::from(tasks.join_next().await.expect("task").expect("read"));
                }
            }
            while let Some(r) = tasks.join_next().await {
                read += u64::from(r.expect("read"));
            }
            pages += 1;
        }
        let read_s = started.elapsed().as_secs_f64();
        assert_eq!(read, devices, "every device read");
        // The forecast of one supply per device over 120 readings (a month at 6 a day).
        let readings: Vec<(i64, f64)> = (0..120)
            .map(|i| (i * 4 * HOUR_MS, 90.0 - i as f64 * 0.5 + (i % 7) as f64 * 0.3))
            .collect();
        let f0 = Instant::now();
        let mut fitted = 0u64;
        for _ in 0..devices {
            fitted += u64::from(meters::forecast(std::hint::black_box(&readings), false).is_some());
        }
        let forecast_s = f0.elapsed().as_secs_f64();
        println!(
            "meter reads: {devices} devices ({fill_s:.0} s to fill), November read in {read_s:.1} s \
             ({:.0} devices/s, {pages} pages); forecasts of one supply over 120 readings for \
             {fitted} devices in {forecast_s:.2} s ({:.1} µs each)",
            devices as f64 / read_s,
            forecast_s * 1e6 / devices as f64
        );
        store.close().await.expect("close");
    });
}
