//! The center killed with SIGKILL during a burst of reports, several times, on both stores:
//! every acknowledged report is stored, nothing is stored that was not sent, retries of
//! unacknowledged reports are stored once, and the store's own check is clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PATIENCE, read_secret, serve};
use fleetcare_core::DeviceId;
use fleetcare_store::testing::{TempPostgres, postgres_url};
use fleetcare_store::{DeviceKey, Store};
use fleetcare_wire::device::{ReportAck, StructureReport};
use fleetcare_wire::{Software, Trigger, Unit};

const DEVICES: usize = 40;
const ROUNDS: usize = 3;
/// Acknowledgements to wait for in each round before the kill.
const ACKS_PER_ROUND: usize = 400;

#[derive(Default)]
struct Ledger {
    /// Every report sent at least once, by device.
    sent: BTreeMap<String, BTreeSet<u64>>,
    /// Every report the center acknowledged, by device.
    acked: BTreeMap<String, BTreeSet<u64>>,
    /// Sent but not acknowledged (the center died): resent after the restart.
    pending: BTreeMap<String, u64>,
    next_seq: BTreeMap<String, u64>,
    acks: usize,
    duplicates_on_retry: usize,
}

fn report(id: &str, seq: u64) -> StructureReport {
    StructureReport {
        device_id: id.to_owned(),
        model: "acme-mfp-9000".into(),
        seq,
        trigger: if seq == 1 {
            Trigger::Connect
        } else {
            Trigger::Periodic
        },
        observed_at_ms: 1_790_000_000_000 + i64::try_from(seq).unwrap_or(0),
        units: vec![
            Unit {
                slot: "controller".into(),
                kind: "controller".into(),
                model: "ctl-x2".into(),
                serial: format!("C-{id}"),
                hw_revision: "B".into(),
                software: vec![Software {
                    product: "ctl-firmware".into(),
                    maker: "acme".into(),
                    version: format!("5.{}", seq / 7),
                    active: true,
                }],
                in_service: true,
            },
            Unit {
                slot: "fuser".into(),
                kind: "fuser".into(),
                model: "fus-7".into(),
                serial: format!("F-{}", seq / 5),
                hw_revision: "A".into(),
                software: vec![],
                in_service: true,
            },
        ],
        operating: BTreeMap::from([("pages_total".to_owned(), seq as f64 * 10.0)]),
        supplies: Vec::new(),
        install_blocked: None,
    }
}

/// One device sending reports one after another until the center stops answering.
async fn device_loop(
    http: reqwest::Client,
    url: String,
    id: String,
    token: String,
    ledger: Arc<Mutex<Ledger>>,
) {
    loop {
        let (seq, retry) = {
            let mut l = ledger.lock().expect("ledger");
            match l.pending.get(&id) {
                Some(&s) => (s, true),
                None => {
                    let s = l.next_seq.get(&id).copied().unwrap_or(1);
                    l.next_seq.insert(id.clone(), s + 1);
                    l.sent.entry(id.clone()).or_default().insert(s);
                    l.pending.insert(id.clone(), s);
                    (s, false)
                }
            }
        };
        let sent = http
            .post(format!("{url}/device/v1/reports"))
            .bearer_auth(&token)
            .json(&report(&id, seq))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let ack: Option<ReportAck> = match sent {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            Ok(r) => panic!(
                "{id} #{seq}: the center refused a valid report: {}",
                r.status()
            ),
            Err(_) => None,
        };
        let Some(ack) = ack else {
            return; // the center is gone; the report stays pending
        };
        let mut l = ledger.lock().expect("ledger");
        assert_eq!(ack.seq, seq);
        if retry && ack.duplicate {
            l.duplicates_on_retry += 1;
        }
        assert!(
            !ack.duplicate || retry,
            "{id} #{seq}: a first send acknowledged as a duplicate"
        );
        l.acked.entry(id.clone()).or_default().insert(seq);
        l.pending.remove(&id);
        l.acks += 1;
    }
}

async fn enroll_all(url: &str, key: &str) -> Vec<(String, String)> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for i in 0..DEVICES {
        let id = format!("CRASH-{i:03}");
        let token = common::enroll(&http, url, key, &id).await;
        out.push((id, token));
    }
    out
}

async fn kill_during_bursts<F, Fut>(data_dir: &Path, extra: &[&str], open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Store>,
{
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut devices = Vec::new();
    let mut listen: Option<String> = None;
    for round in 0..ROUNDS {
        let mut args: Vec<&str> = extra.to_vec();
        if let Some(l) = &listen {
            args.extend(["--listen", l.as_str()]);
        }
        let started = Instant::now();
        let served = serve(data_dir, &args).await;
        eprintln!("round {round}: serving after {:?}", started.elapsed());
        listen.get_or_insert_with(|| served.url.trim_start_matches("http://").to_owned());
        if devices.is_empty() {
            devices = enroll_all(&served.url, &read_secret(&data_dir.join("enrollment-key"))).await;
        }
        let target = ledger.lock().expect("ledger").acks + ACKS_PER_ROUND;
        let http = reqwest::Client::new();
        let tasks: Vec<_> = devices
            .iter()
            .map(|(id, token)| {
                tokio::spawn(device_loop(
                    http.clone(),
                    served.url.clone(),
                    id.clone(),
                    token.clone(),
                    ledger.clone(),
                ))
            })
            .collect();
        fleetcare_testkit::eventually("acknowledgements flow", PATIENCE, || {
            let n = ledger.lock().expect("ledger").acks;
            async move { (n >= target).then_some(()) }
        })
        .await;
        served.kill9().await;
        for t in tasks {
            tokio::time::timeout(PATIENCE, t)
                .await
                .expect("a device notices the center is gone")
                .expect("device task");
        }
    }
    // Once more, to let the retries of what was in flight at the last kill through.
    let args: Vec<&str> = extra
        .iter()
        .copied()
        .chain(["--listen", listen.as_deref().expect("listened")])
        .collect();
    let served = serve(data_dir, &args).await;
    let http = reqwest::Client::new();
    let pending: Vec<(String, u64)> = ledger
        .lock()
        .expect("ledger")
        .pending
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    for (id, seq) in &pending {
        let token = &devices.iter().find(|(d, _)| d == id).expect("device").1;
        let ack: ReportAck = http
            .post(format!("{}/device/v1/reports", served.url))
            .bearer_auth(token)
            .json(&report(id, *seq))
            .send()
            .await
            .expect("retry")
            .json()
            .await
            .expect("ack");
        let mut l = ledger.lock().expect("ledger");
        if ack.duplicate {
            l.duplicates_on_retry += 1;
        }
        l.acked.entry(id.clone()).or_default().insert(*seq);
    }
    assert!(served.terminate().await.success());

    let store = open().await;
    assert_eq!(store.integrity_check().await.expect("check"), "ok");
    // Every task has ended: the ledger is final; take it out of its lock.
    let l = std::mem::take(&mut *ledger.lock().expect("ledger"));
    let tenant = store.ensure_tenant("default", 0).await.expect("tenant");
    let mut stored_total = 0;
    for (id, _) in &devices {
        let key = DeviceKey {
            tenant,
            device_id: DeviceId::parse(id).expect("id"),
        };
        let stored: BTreeSet<u64> = store
            .stored_seqs(&key)
            .await
            .expect("seqs")
            .into_iter()
            .collect();
        let acked = l.acked.get(id).cloned().unwrap_or_default();
        let sent = l.sent.get(id).cloned().unwrap_or_default();
        let lost: Vec<_> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "{id}: acknowledged but not stored: {lost:?}"
        );
        let unexpected: Vec<_> = stored.difference(&sent).collect();
        assert!(
            unexpected.is_empty(),
            "{id}: stored but never sent: {unexpected:?}"
        );
        stored_total += stored.len();
        // The current structure is the newest report's.
        let rec = store.device(&key).await.expect("device").expect("known");
        assert_eq!(
            rec.last_report.expect("reported").seq,
            *stored.iter().next_back().expect("some")
        );
    }
    eprintln!(
        "{} reports acknowledged over {ROUNDS} kills, {stored_total} stored, {} in flight at the \
         last kill; {} retries of unacknowledged reports found them stored already",
        l.acks,
        pending.len(),
        l.duplicates_on_retry
    );
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_report_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    kill_during_bursts(dir.path(), &[], || {
        let p = path.clone();
        async move { Store::open_sqlite(&p).await.expect("reopen") }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_report_postgres() {
    let Some(url) = postgres_url("sigkill_during_ingest_loses_no_acknowledged_report_postgres")
    else {
        return;
    };
    let db = TempPostgres::create(&url).await.expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = db.url.clone();
    kill_during_bursts(dir.path(), &["--database-url", &db.url], || {
        let u = db_url.clone();
        async move { Store::open_postgres(&u).await.expect("reopen") }
    })
    .await;
    db.drop_database().await.expect("drop");
}
