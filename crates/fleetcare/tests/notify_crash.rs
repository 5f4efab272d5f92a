//! Notifications survive a center killed with SIGKILL while events are made and sent, on both
//! stores: every event the center acknowledged reaches the webhook receiver, none arrives that
//! was not made, and the only repeats are sends in flight at a kill (the receiver had answered,
//! the center died before recording it); they carry the same event id, which is what
//! receivers de-duplicate by. Several instances on one PostgreSQL send each event once.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PATIENCE, read_secret, serve};
use fleetcare_store::testing::{TempPostgres, postgres_url};
use fleetcare_testkit::eventually;
use fleetcare_testkit::receivers::{Mode, WebhookReceiver};
use serde_json::{Value, json};
use tokio::sync::watch;

const ROUNDS: usize = 3;
/// Events to make in each round before the kill.
const EVENTS_PER_ROUND: usize = 300;
const MAKERS: usize = 6;
/// Sends in flight at once (the center's default `notify_concurrency`).
const IN_FLIGHT: usize = 32;

/// Make test events through the API until told to stop; each acknowledged event's id.
async fn maker(
    url: String,
    admin: String,
    made: Arc<Mutex<BTreeSet<String>>>,
    stop: watch::Receiver<bool>,
) {
    let http = reqwest::Client::new();
    while !*stop.borrow() {
        let r = http
            .post(format!("{url}/api/v1/notify/hook/test"))
            .bearer_auth(&admin)
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        let Ok(r) = r else { break };
        if !r.status().is_success() {
            break;
        }
        let Ok(v) = r.json::<Value>().await else {
            break;
        };
        let id = v["event_id"].as_str().expect("an event id").to_owned();
        made.lock().expect("made").insert(id);
    }
}

async fn add_hook(url: &str, admin: &str, hook: &WebhookReceiver) {
    let v: Value = reqwest::Client::new()
        .post(format!("{url}/api/v1/notify"))
        .bearer_auth(admin)
        .json(&json!({"name": "hook", "webhook": hook.url}))
        .send()
        .await
        .expect("add")
        .json()
        .await
        .expect("an answer");
    hook.set_secret(
        v["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("a secret: {v}")),
    );
}

async fn kill_while_notifying(data_dir: &Path, extra: &[&str]) {
    let hook = WebhookReceiver::start().await;
    // Each answer takes a moment, so kills land while sends are in flight.
    hook.set_mode(Mode::Slow(Duration::from_millis(5)));
    let made = Arc::new(Mutex::new(BTreeSet::new()));
    let mut listen: Option<String> = None;
    for round in 0..ROUNDS {
        let mut args: Vec<&str> = extra.to_vec();
        if let Some(l) = &listen {
            args.extend(["--listen", l.as_str()]);
        }
        let served = serve(data_dir, &args).await;
        listen.get_or_insert_with(|| served.url.trim_start_matches("http://").to_owned());
        let admin = read_secret(&data_dir.join("admin-token"));
        if round == 0 {
            add_hook(&served.url, &admin, &hook).await;
        }
        let target = made.lock().expect("made").len() + EVENTS_PER_ROUND;
        let (stop_tx, stop) = watch::channel(false);
        let makers: Vec<_> = (0..MAKERS)
            .map(|_| {
                tokio::spawn(maker(
                    served.url.clone(),
                    admin.clone(),
                    made.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        eventually("events are made", PATIENCE, || {
            let n = made.lock().expect("made").len();
            async move { (n >= target).then_some(()) }
        })
        .await;
        served.kill9().await;
        let _ = stop_tx.send(true);
        for m in makers {
            tokio::time::timeout(PATIENCE, m)
                .await
                .expect("a maker ends")
                .expect("maker");
        }
        eprintln!(
            "round {round}: {} events made, {} calls received",
            made.lock().expect("made").len(),
            hook.received().len()
        );
    }
    let args: Vec<&str> = extra
        .iter()
        .copied()
        .chain(["--listen", listen.as_deref().expect("listened")])
        .collect();
    let served = serve(data_dir, &args).await;
    let made = made.lock().expect("made").clone();
    eventually("every acknowledged event delivered", PATIENCE * 3, || {
        let acked = hook.acked_by_event();
        let missing = made.iter().filter(|id| !acked.contains_key(*id)).count();
        async move { (missing == 0).then_some(()) }
    })
    .await;
    assert!(served.terminate().await.success());
    let received = hook.received();
    assert!(
        received.iter().all(|r| r.signature_ok),
        "every call is signed"
    );
    let acked = hook.acked_by_event();
    let phantom: Vec<&String> = acked.keys().filter(|id| !made.contains(*id)).collect();
    // Events made but whose acknowledgement the kill cut off may arrive too: they were
    // committed. Anything else is a phantom.
    assert!(
        phantom.len() <= ROUNDS * MAKERS,
        "events delivered that were never made: {phantom:?}"
    );
    let repeats: usize = acked.values().map(|n| n - 1).sum();
    eprintln!(
        "{} events made, {} delivered, {} repeats of sends in flight at {ROUNDS} kills",
        made.len(),
        acked.len(),
        repeats
    );
    assert!(
        repeats <= ROUNDS * IN_FLIGHT,
        "{repeats} events delivered twice: more than the sends in flight at the kills"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_notifying_loses_none_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    kill_while_notifying(dir.path(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_notifying_loses_none_postgres() {
    let Some(url) = postgres_url("sigkill_while_notifying_loses_none_postgres") else {
        return;
    };
    let db = TempPostgres::create(&url).await.expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    kill_while_notifying(dir.path(), &["--database-url", &db.url]).await;
    db.drop_database().await.expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_instances_send_each_event_once() {
    let Some(url) = postgres_url("several_instances_send_each_event_once") else {
        return;
    };
    let db = TempPostgres::create(&url).await.expect("database");
    let dirs: Vec<tempfile::TempDir> = (0..2)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut served = Vec::new();
    for d in &dirs {
        served.push(serve(d.path(), &["--database-url", &db.url]).await);
    }
    let admin = read_secret(&dirs[0].path().join("admin-token"));
    let hook = WebhookReceiver::start().await;
    add_hook(&served[0].url, &admin, &hook).await;
    let made = Arc::new(Mutex::new(BTreeSet::new()));
    let (stop_tx, stop) = watch::channel(false);
    let makers: Vec<_> = (0..MAKERS)
        .map(|i| {
            tokio::spawn(maker(
                served[i % 2].url.clone(),
                admin.clone(),
                made.clone(),
                stop.clone(),
            ))
        })
        .collect();
    eventually("events are made", PATIENCE, || {
        let n = made.lock().expect("made").len();
        async move { (n >= 600).then_some(()) }
    })
    .await;
    let _ = stop_tx.send(true);
    for m in makers {
        m.await.expect("maker");
    }
    let made = made.lock().expect("made").clone();
    eventually("every event delivered", PATIENCE, || {
        let acked = hook.acked_by_event();
        let done = made.iter().all(|id| acked.contains_key(id));
        async move { done.then_some(()) }
    })
    .await;
    let twice: Vec<(String, usize)> = hook
        .acked_by_event()
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    for s in served {
        assert!(s.terminate().await.success());
    }
    db.drop_database().await.expect("drop");
}
