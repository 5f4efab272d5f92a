//! Three `fleetcare serve` processes on one PostgreSQL database, devices spread across them
//! (each with a push channel and a stream of reports). A command asked of one instance reaches
//! a device connected to another within a second; exactly one instance runs the background
//! engines; when an instance is killed (SIGKILL) its devices move to the others, commands
//! follow them there, another instance takes the engines over, and no acknowledged report is
//! lost. The devices move as a load balancer in front of the instances would move them: a
//! device whose instance stops answering goes to the next one.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PATIENCE, read_secret, serve, small_report};
use fleetcare_core::DeviceId;
use fleetcare_store::testing::{TempPostgres, postgres_url};
use fleetcare_store::{DeviceKey, Store};
use fleetcare_testkit::{eventually, patience_factor};
use fleetcare_wire::device::{Command, ReportAck};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const INSTANCES: usize = 3;
const DEVICES: usize = 24;

#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, BTreeSet<u64>>,
    acks: usize,
}

/// What each device saw: the instance its push channel is on, and the commands it got.
#[derive(Default)]
struct Seen {
    on: BTreeMap<String, usize>,
    commands: Vec<(String, Command, Instant)>,
}

/// The instances a device tries, in order, starting with its own.
fn order(first: usize) -> impl Iterator<Item = usize> {
    (0..INSTANCES).map(move |i| (first + i) % INSTANCES)
}

/// A device's reports: each retried on the next instance until one acknowledges it.
async fn reports(
    urls: Arc<Vec<String>>,
    home: usize,
    id: String,
    token: String,
    ledger: Arc<Mutex<Ledger>>,
    mut stop: watch::Receiver<bool>,
) {
    let http = reqwest::Client::new();
    let mut seq = 1u64;
    let mut at = home;
    while !*stop.borrow() {
        let mut acked = false;
        for i in order(at).take(INSTANCES * 4) {
            let sent = http
                .post(format!("{}/device/v1/reports", urls[i]))
                .bearer_auth(&token)
                .json(&small_report(&id, seq))
                .timeout(Duration::from_secs(3))
                .send()
                .await;
            if let Ok(r) = sent {
                assert!(r.status().is_success(), "{id} #{seq}: {}", r.status());
                let ack: ReportAck = r.json().await.expect("an acknowledgement");
                assert_eq!(ack.seq, seq);
                let mut l = ledger.lock().expect("ledger");
                l.acked.entry(id.clone()).or_default().insert(seq);
                l.acks += 1;
                at = i;
                acked = true;
                break;
            }
        }
        assert!(acked, "{id} #{seq}: no instance took the report");
        seq += 1;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {} // pacing: a device's report rate
            _ = stop.changed() => {}
        }
    }
}

/// A device's push channel: open on its instance; when that one goes, on the next.
async fn push(
    urls: Arc<Vec<String>>,
    home: usize,
    id: String,
    token: String,
    seen: Arc<Mutex<Seen>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut at = home;
    for _attempt in 0..50 {
        if *stop.borrow() {
            return;
        }
        let ws_url = format!("{}/device/v1/push", urls[at].replacen("http", "ws", 1));
        let mut req = ws_url.into_client_request().expect("a request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("a header"),
        );
        if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(req).await {
            seen.lock().expect("seen").on.insert(id.clone(), at);
            loop {
                let msg = tokio::select! {
                    m = socket.next() => m,
                    _ = stop.changed() => return,
                };
                match msg {
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                        let c: Command = serde_json::from_str(&t).expect("a command");
                        seen.lock()
                            .expect("seen")
                            .commands
                            .push((id.clone(), c, Instant::now()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
            seen.lock().expect("seen").on.remove(&id);
        }
        at = (at + 1) % INSTANCES;
        tokio::time::sleep(Duration::from_millis(100)).await; // pacing: an agent's reconnect backoff
    }
}

/// Whether instance `url` shows the device online.
async fn shown_online(http: &reqwest::Client, url: &str, admin: &str, id: &str) -> bool {
    let Ok(r) = http
        .get(format!("{url}/api/v1/devices/{id}"))
        .bearer_auth(admin)
        .send()
        .await
    else {
        return false;
    };
    r.json::<serde_json::Value>()
        .await
        .is_ok_and(|v| v["online"] == true)
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// The instances (of those alive) that say they run the background engines.
async fn leaders(http: &reqwest::Client, urls: &[String], alive: &[bool]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        if alive[i] && metric(http, url, "fleetcare_engines_leader").await == Some(1.0) {
            out.push(i);
        }
    }
    out
}

/// Ask instance `via` for a report from `id`, and time how long until the device has the
/// command.
async fn command_latency(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
    seen: &Mutex<Seen>,
) -> Duration {
    let before = seen.lock().expect("seen").commands.len();
    let asked = Instant::now();
    let r = http
        .post(format!("{url}/api/v1/devices/{id}/request-report"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request-report");
    assert!(r.status().is_success(), "request-report: {}", r.status());
    let got = eventually("the device gets the command", PATIENCE, || {
        let s = seen.lock().expect("seen");
        let hit = s.commands[before..]
            .iter()
            .find(|(d, c, _)| d == id && *c == Command::RequestReport)
            .map(|(_, _, at)| *at);
        async move { hit }
    })
    .await;
    got.duration_since(asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_devices_commands_and_engines_and_survive_a_kill() {
    let Some(url) = postgres_url("instances_share_devices_commands_and_engines_and_survive_a_kill")
    else {
        return;
    };
    let db = TempPostgres::create(&url).await.expect("database");
    let dirs: Vec<tempfile::TempDir> = (0..INSTANCES)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut served = Vec::new();
    for d in &dirs {
        served.push(Some(serve(d.path(), &["--database-url", &db.url]).await));
    }
    let urls: Arc<Vec<String>> = Arc::new(
        served
            .iter()
            .map(|s| s.as_ref().expect("served").url.clone())
            .collect(),
    );
    // The first instance's token and key work on every instance (they are in the database).
    let admin = read_secret(&dirs[0].path().join("admin-token"));
    let key = read_secret(&dirs[0].path().join("enrollment-key"));
    let http = reqwest::Client::new();

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop_tx, stop) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut ids = Vec::new();
    for i in 0..DEVICES {
        let id = format!("SCALE-{i:03}");
        let home = i % INSTANCES;
        let token = common::enroll(&http, &urls[home], &key, &id).await;
        tasks.push(tokio::spawn(push(
            urls.clone(),
            home,
            id.clone(),
            token.clone(),
            seen.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(reports(
            urls.clone(),
            home,
            id.clone(),
            token,
            ledger.clone(),
            stop.clone(),
        )));
        ids.push(id);
    }
    let all_on = |want: usize| {
        let seen = seen.clone();
        move || {
            let n = seen.lock().expect("seen").on.len();
            async move { (n == want).then_some(()) }
        }
    };
    eventually("every device has a push channel", PATIENCE, all_on(DEVICES)).await;

    // Every instance sees every device online, wherever it is connected.
    for u in urls.iter() {
        let listed = eventually("an instance sees every device online", PATIENCE, || {
            let (http, u, admin) = (http.clone(), u.clone(), admin.clone());
            let ids = ids.clone();
            async move {
                for id in &ids {
                    if !shown_online(&http, &u, &admin, id).await {
                        return None;
                    }
                }
                Some(ids.len())
            }
        })
        .await;
        assert_eq!(listed, DEVICES);
    }

    // A command asked of each instance reaches a device on each other instance.
    let mut latencies = Vec::new();
    for via in 0..INSTANCES {
        for target in 0..INSTANCES {
            if via == target {
                continue;
            }
            let id = {
                let s = seen.lock().expect("seen");
                s.on.iter()
                    .find(|(_, at)| **at == target)
                    .map(|(d, _)| d.clone())
                    .expect("a device on the target instance")
            };
            latencies.push(command_latency(&http, &urls[via], &admin, &id, &seen).await);
        }
    }
    let worst = latencies.iter().max().copied().unwrap_or_default();
    eprintln!("cross-instance command latencies: {latencies:?}");
    assert!(
        worst < Duration::from_secs(1) * patience_factor(),
        "a command took {worst:?} to reach a device on another instance"
    );

    // Exactly one instance runs the engines.
    let mut alive = vec![true; INSTANCES];
    let one = eventually("one instance runs the engines", PATIENCE, || {
        let (http, urls, alive) = (http.clone(), urls.clone(), alive.clone());
        async move {
            let l = leaders(&http, &urls, &alive).await;
            (l.len() == 1).then(|| l[0])
        }
    })
    .await;

    // Kill the instance that runs the engines, while every device reports.
    let acks_before = ledger.lock().expect("ledger").acks;
    eventually("reports flowing", PATIENCE, || {
        let n = ledger.lock().expect("ledger").acks;
        async move { (n > acks_before + DEVICES).then_some(()) }
    })
    .await;
    served[one].take().expect("running").kill9().await;
    alive[one] = false;

    // Its devices move to the others, and every device is online again.
    eventually("the killed instance's devices moved", PATIENCE * 2, || {
        let s = seen.lock().expect("seen");
        let moved = s.on.len() == DEVICES && s.on.values().all(|at| *at != one);
        async move { moved.then_some(()) }
    })
    .await;
    // Another instance takes the engines over (within the lease's life), and only one.
    let next = eventually("another instance runs the engines", PATIENCE * 2, || {
        let (http, urls, alive) = (http.clone(), urls.clone(), alive.clone());
        async move {
            let l = leaders(&http, &urls, &alive).await;
            (l.len() == 1).then(|| l[0])
        }
    })
    .await;
    assert_ne!(next, one);

    // A device that moved gets commands asked of any surviving instance.
    let moved = ids
        .iter()
        .enumerate()
        .find(|(i, _)| i % INSTANCES == one)
        .map(|(_, id)| id.clone())
        .expect("a device of the killed instance");
    for via in (0..INSTANCES).filter(|i| alive[*i]) {
        command_latency(&http, &urls[via], &admin, &moved, &seen).await;
    }

    // A credential revoked on one instance closes the device's channel on another at once.
    let (a, b) = {
        let live: Vec<usize> = (0..INSTANCES).filter(|i| alive[*i]).collect();
        (live[0], live[1])
    };
    let token = common::enroll(&http, &urls[a], &key, "SCALE-REVOKED").await;
    let mut req = format!("{}/device/v1/push", urls[a].replacen("http", "ws", 1))
        .into_client_request()
        .expect("a request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("a push channel");
    eventually("the device is online on every instance", PATIENCE, || {
        let (http, u, admin) = (http.clone(), urls[b].clone(), admin.clone());
        async move {
            shown_online(&http, &u, &admin, "SCALE-REVOKED")
                .await
                .then_some(())
        }
    })
    .await;
    let r = http
        .post(format!("{}/api/v1/devices/SCALE-REVOKED/revoke", urls[b]))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("revoke");
    assert!(r.status().is_success(), "revoke: {}", r.status());
    let closed = tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                    return f.map(|f| u16::from(f.code));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the channel on the other instance closes");
    assert_eq!(closed, Some(1008), "closed as revoked");
    let refused = http
        .get(format!("{}/device/v1/self", urls[a]))
        .bearer_auth(&token)
        .send()
        .await
        .expect("self");
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    // Reports go on; then stop, and check that every acknowledged report is stored.
    let acks_after_kill = ledger.lock().expect("ledger").acks;
    eventually("reports flow after the kill", PATIENCE, || {
        let n = ledger.lock().expect("ledger").acks;
        async move { (n > acks_after_kill + DEVICES * 2).then_some(()) }
    })
    .await;
    stop_tx.send(true).expect("stop");
    for t in tasks {
        tokio::time::timeout(PATIENCE, t)
            .await
            .expect("device tasks stop")
            .expect("a device task panicked");
    }
    let store = Store::open_postgres(&db.url).await.expect("open");
    let (acked_all, acks) = {
        let l = ledger.lock().expect("ledger");
        (l.acked.clone(), l.acks)
    };
    let mut checked = 0;
    for (id, acked) in &acked_all {
        let k = DeviceKey {
            tenant: 1,
            device_id: DeviceId::parse(id).expect("id"),
        };
        let stored: BTreeSet<u64> = store
            .stored_seqs(&k)
            .await
            .expect("stored")
            .into_iter()
            .collect();
        let lost: Vec<_> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "{id}: acknowledged but not stored: {lost:?}"
        );
        checked += acked.len();
    }
    assert_eq!(checked, acks);
    eprintln!("{checked} acknowledged reports, all stored");
    store.close().await.expect("close");
    for s in served.into_iter().flatten() {
        s.terminate().await;
    }
    db.drop_database().await.expect("drop");
}
