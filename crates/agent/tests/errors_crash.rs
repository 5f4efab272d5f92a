//! The error log survives an agent killed during uploads, many times: the real
//! `fleetcare-agent` binary sends tens of thousands of events to a real center and is aborted
//! right after the center acknowledged a batch (before the journal forgot it: the retry path)
//! and killed with SIGKILL at random moments, while the device keeps logging. In the end the
//! center holds every event exactly once, and retries were seen.
//!
//! `FLEETCARE_ERRORS_CRASH_EVENTS` (default 20000) and `FLEETCARE_ERRORS_CRASH_KILLS` (default
//! 30) size it; `FLEETCARE_CRASH_SEED` fixes the random moments.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use fleetcare_agent::journal::{Journal, JournalLimits, NewEvent};
use fleetcare_agent::update::crash::ENV;
use fleetcare_server::{Center, ServerConfig};
use fleetcare_testkit::eventually;
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(60);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn spawn(config: &Path, crash: Option<String>) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"));
    c.arg("run")
        .arg("--config")
        .arg(config)
        .env("FLEETCARE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(config.with_file_name("agent.log"))
                .map_or(Stdio::null(), Stdio::from),
        )
        .kill_on_drop(true);
    match crash {
        Some(p) => c.env(ENV, p),
        None => c.env_remove(ENV),
    };
    c.spawn().expect("the agent binary starts")
}

/// Append `n` events (the device's software logging), in batches.
fn log_events(data: &Path, n: u64, next: &mut u64) {
    let j = Journal::open(data, JournalLimits::default(), false).expect("journal");
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let batch: Vec<NewEvent> = (0..k)
            .map(|i| NewEvent {
                slot: "engine".into(),
                code: format!("E-{}", (*next + i) % 97),
                severity: ["info", "warning", "error"][((*next + i) % 3) as usize].into(),
                detail: Some(format!("event {}", *next + i)),
                ..NewEvent::default()
            })
            .collect();
        j.append_batch(&batch, 1_790_000_000_000).expect("append");
        *next += k;
        left -= k;
    }
}

async fn stored(center: &Center) -> u64 {
    center
        .state
        .store
        .count_error_events(center.boot.tenant)
        .await
        .expect("count")
}

async fn metric(url: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_total ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_uploads_nothing_is_lost_or_stored_twice() {
    let total = env_or("FLEETCARE_ERRORS_CRASH_EVENTS", 20_000);
    let kills = env_or("FLEETCARE_ERRORS_CRASH_KILLS", 30);
    let dir = tempfile::tempdir().expect("tempdir");
    let center = Center::start(&ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("center"),
        ..ServerConfig::default()
    })
    .await
    .expect("center");
    let base: PathBuf = dir.path().join("device");
    std::fs::create_dir_all(&base).expect("mkdir");
    std::fs::write(
        base.join("inventory.toml"),
        "[device]\nid = \"CRASH-LOG-1\"\nmodel = \"acme-mfp-9000\"\n[[unit]]\nslot = \"engine\"\nkind = \"engine\"\nmodel = \"eng-45c\"\nserial = \"E-1\"\n",
    )
    .expect("inventory");
    let config = base.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "center_url = \"{}\"\nenrollment_key = \"{}\"\ndata_dir = \"data\"\ninventory = \"inventory.toml\"\n\
             backoff_initial_ms = 20\nbackoff_max_s = 1\nwatch_interval_ms = 50\ntransport = \"poll\"\npoll_wait_s = 1\n\
             errors_batch_events = 1\n",
            center.url(),
            center.boot.enrollment_key
        ),
    )
    .expect("config");
    let data = base.join("data");
    let mut next = 0u64;
    let per_round = total / (kills + 1);
    let mut seed: u64 = env_or(
        "FLEETCARE_CRASH_SEED",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    );
    eprintln!("FLEETCARE_CRASH_SEED={seed}");
    let (mut aborted, mut killed) = (0u64, 0u64);
    for round in 0..kills {
        log_events(&data, per_round, &mut next);
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        if round % 2 == 0 {
            // Abort right after the center acknowledged a batch: the journal still holds it, so
            // the next run sends it again.
            let mut agent = spawn(&config, Some("errors.acked".to_owned()));
            let status = tokio::time::timeout(PATIENCE, agent.wait())
                .await
                .expect("the agent reaches the crash point")
                .expect("wait");
            assert_eq!(
                status.signal(),
                Some(6),
                "aborted at the crash point: {status:?}"
            );
            aborted += 1;
        } else {
            let mut agent = spawn(&config, None);
            let delay = Duration::from_millis(50 + (seed >> 33) % 400);
            tokio::time::sleep(delay).await; // pacing: a random moment of the uploads
            agent.start_kill().expect("SIGKILL");
            agent.wait().await.expect("reaped");
            killed += 1;
        }
    }
    log_events(&data, total - next, &mut next);
    let mut agent = spawn(&config, None);
    let held = eventually("every event at the center", PATIENCE * 2, || async {
        let n = stored(&center).await;
        (n >= next).then_some(n)
    })
    .await;
    assert_eq!(held, next, "0 lost, 0 stored twice");
    let j = Journal::open(&data, JournalLimits::default(), false).expect("journal");
    eventually(
        "the journal emptied by the acknowledgements",
        PATIENCE,
        || async { (j.stats().expect("stats").pending == 0).then_some(()) },
    )
    .await;
    agent.kill().await.expect("kill");
    assert_eq!(stored(&center).await, next, "nothing more arrived");
    let retried = metric(&center.url(), "fleetcare_error_event_duplicates").await;
    assert!(retried > 0, "the retry path ran");
    eprintln!(
        "error log: {next} events, {aborted} aborts after an acknowledgement, {killed} random kills; \
         {held} stored, 0 lost, 0 stored twice, {retried} received again and not stored"
    );
}
