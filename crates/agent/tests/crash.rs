//! The crash-safety harness: the real `fleetcare-agent` binary installs a two-unit job from a
//! real center and is killed at every durable step of install, revert and confirm (including
//! between the units of one activation), during boots of a trial, and at random moments
//! (SIGKILL). After each kill it is started again and must finish the job; every end state
//! must be acceptable: both units on the old version, or both on the new one confirmed, and
//! the center told the same. A bricked device (a unit without a usable active bank, units
//! that disagree, a trial left behind) fails the test.
//!
//! `FLEETCARE_CRASH_RANDOM` sets the number of random kills (default 12);
//! `FLEETCARE_CRASH_SEED` fixes their moments.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use fleetcare_agent::update::AbDriver;
use fleetcare_agent::update::crash::ENV;
use fleetcare_server::{Center, ServerConfig};
use fleetcare_testkit::eventually;
use fleetcare_trust::{
    Artifact, ArtifactName, Envelope, KEYS_TYPE, KeyList, KeyPair, RELEASE_TYPE, ReleaseManifest,
    Root, Target, format_time,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

const PATIENCE: Duration = Duration::from_secs(30);
const SLOTS: [&str; 2] = ["controller", "engine"];

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Lab {
    center: Center,
    admin: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    root: KeyPair,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("center"),
            ..ServerConfig::default()
        };
        let center = Center::start(&config).await.expect("center");
        let lab = Lab {
            admin: center.boot.admin_token.clone(),
            center,
            http: reqwest::Client::new(),
            dir,
            root: KeyPair::from_seed(&[1; 32]),
        };
        let release = KeyPair::from_seed(&[2; 32]);
        let expires = format_time(SystemTime::now() + Duration::from_secs(86_400));
        let list = KeyList {
            version: 1,
            expires: expires.clone(),
            threshold: 1,
            keys: vec![release.public().clone()],
        };
        lab.post(
            "/api/v1/keys",
            Envelope::sign(KEYS_TYPE, &list.to_json(), &[&lab.root]).to_json(),
        )
        .await;
        // One release per unit, each with a file large enough to take several chunks.
        for (slot, model) in [("controller", "ctl-x2"), ("engine", "eng-5")] {
            let bytes: Vec<u8> = (0..1_500_000u32)
                .map(|i| (i % 249) as u8 ^ slot.len() as u8)
                .collect();
            let m = ReleaseManifest {
                product: format!("{slot}-fw"),
                maker: "acme".into(),
                version: "2.0".into(),
                counter: 2,
                targets: vec![Target {
                    unit_model: model.into(),
                    hw_revisions: vec!["A".into()],
                }],
                artifacts: vec![Artifact {
                    name: ArtifactName::new("fw.bin").expect("name"),
                    size: bytes.len() as u64,
                    sha256: sha(&bytes),
                }],
                expires: expires.clone(),
            };
            lab.post(
                "/api/v1/releases",
                Envelope::sign(RELEASE_TYPE, &m.to_json(), &[&release]).to_json(),
            )
            .await;
            let r = lab
                .http
                .put(format!(
                    "{}/api/v1/artifacts/{}",
                    lab.center.url(),
                    sha(&bytes)
                ))
                .bearer_auth(&lab.admin)
                .body(bytes)
                .send()
                .await
                .expect("upload");
            assert!(r.status().is_success());
        }
        lab
    }

    async fn post(&self, path: &str, body: String) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.center.url()))
            .bearer_auth(&self.admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("answer");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("json")
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.center.url()))
            .bearer_auth(&self.admin)
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json")
    }

    /// A fresh device (its own dirs and config); its config file.
    fn device(&self, n: usize, healthy: bool) -> (String, PathBuf) {
        let id = format!("CRASH-{n}");
        let base = self.dir.path().join(&id);
        std::fs::create_dir_all(&base).expect("mkdir");
        let inv = format!(
            "[device]\nid = \"{id}\"\nmodel = \"acme-mfp-9000\"\n\n\
             [[unit]]\nslot = \"controller\"\nkind = \"controller\"\nmodel = \"ctl-x2\"\nserial = \"C-{n}\"\nhw_revision = \"A\"\n  [[unit.software]]\n  product = \"controller-fw\"\n  maker = \"acme\"\n  version = \"1.0\"\n\n\
             [[unit]]\nslot = \"engine\"\nkind = \"engine\"\nmodel = \"eng-5\"\nserial = \"E-{n}\"\nhw_revision = \"A\"\n  [[unit.software]]\n  product = \"engine-fw\"\n  maker = \"acme\"\n  version = \"1.0\"\n"
        );
        std::fs::write(base.join("inventory.toml"), inv).expect("inventory");
        std::fs::write(
            base.join("root.json"),
            Root {
                threshold: 1,
                keys: vec![self.root.public().clone()],
            }
            .to_json(),
        )
        .expect("root");
        let health = if healthy { "true" } else { "false" };
        let cfg = format!(
            "center_url = \"{}\"\nenrollment_key = \"{}\"\ndata_dir = \"data\"\ninventory = \"inventory.toml\"\n\
             trust_root = \"root.json\"\nunits_dir = \"units\"\nhealth_command = [\"{health}\"]\n\
             backoff_initial_ms = 20\nbackoff_max_s = 1\ntransport = \"poll\"\npoll_wait_s = 1\n",
            self.center.url(),
            self.center.boot.enrollment_key
        );
        let path = base.join("agent.toml");
        std::fs::write(&path, cfg).expect("config");
        (id, path)
    }

    async fn job(&self, device: &str) -> u64 {
        let j = self
            .post(
                "/api/v1/jobs",
                json!({
                    "device_id": device,
                    "steps": [
                        {"slot": "controller", "product": "controller-fw", "version": "2.0", "action": "install"},
                        {"slot": "engine", "product": "engine-fw", "version": "2.0", "action": "install"}
                    ]
                })
                .to_string(),
            )
            .await;
        j["id"].as_u64().expect("id")
    }
}

fn spawn(config: &Path, crash: Option<&str>) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"));
    c.arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match crash {
        Some(p) => c.env(ENV, p),
        None => c.env_remove(ENV),
    };
    c.spawn().expect("the agent binary starts")
}

/// The job's state at the center once it is over.
async fn over(lab: &Lab, job: u64) -> Option<String> {
    let j = lab.get(&format!("/api/v1/jobs/{job}")).await;
    let s = j["state"].as_str()?.to_owned();
    matches!(s.as_str(), "succeeded" | "failed" | "rolled_back").then_some(s)
}

/// Check the device's end state; the version every unit runs.
fn check_end_state(config: &Path, center_state: &str, label: &str) -> &'static str {
    let units = config.parent().expect("base").join("units");
    let mut versions = Vec::new();
    for slot in SLOTS {
        let d = AbDriver::new(&units, slot).expect("driver");
        let rec = d
            .load()
            .expect("a readable boot record")
            .unwrap_or_else(|| panic!("{label}: {slot} has no boot record"));
        assert!(
            rec.trial.is_none(),
            "{label}: {slot} left on trial: {rec:?}"
        );
        let active = rec.banks.get(&rec.active).cloned().unwrap_or_default();
        assert_eq!(
            active.len(),
            1,
            "{label}: {slot} active bank holds its product: {rec:?}"
        );
        let v = active[0].version.clone();
        if v == "2.0" {
            let f = units
                .join(slot)
                .join(&rec.active)
                .join(format!("{slot}-fw"))
                .join("fw.bin");
            let bytes =
                std::fs::read(&f).unwrap_or_else(|e| panic!("{label}: {}: {e}", f.display()));
            assert_eq!(bytes.len(), 1_500_000, "{label}: {slot} file complete");
        }
        versions.push(v);
    }
    assert_eq!(
        versions[0], versions[1],
        "{label}: all units switch or none: {versions:?}"
    );
    let expected = if center_state == "succeeded" {
        "2.0"
    } else {
        "1.0"
    };
    assert_eq!(
        versions[0], expected,
        "{label}: the center says {center_state}"
    );
    if versions[0] == "2.0" { "new" } else { "old" }
}

/// Run one device through `crashes` (each a crash point the agent must reach, in order), then
/// a clean run to the end. The end state.
async fn scenario(lab: &Lab, n: usize, healthy: bool, crashes: &[&str]) -> &'static str {
    let (id, config) = lab.device(n, healthy);
    // Enroll and report first, so the job can be created.
    let mut first = spawn(&config, None);
    eventually(&format!("{id} reported"), PATIENCE, || async {
        let d = lab.get(&format!("/api/v1/devices/{id}")).await;
        d["units"]
            .as_array()
            .is_some_and(|u| u.len() == 2)
            .then_some(())
    })
    .await;
    first.kill().await.expect("kill");
    let job = lab.job(&id).await;
    let label = format!("{id} {crashes:?}");
    for point in crashes {
        let mut agent = spawn(&config, Some(point));
        let status = tokio::time::timeout(PATIENCE, agent.wait())
            .await
            .unwrap_or_else(|_| panic!("{label}: the agent never reached {point}"))
            .expect("wait");
        assert_eq!(
            status.signal(),
            Some(6),
            "{label}: aborted at {point}: {status:?}"
        );
    }
    let mut agent = spawn(&config, None);
    let state = eventually(&format!("{label}: job over"), PATIENCE, || over(lab, job)).await;
    // The report arrives once the device is done; stop it there.
    agent.kill().await.expect("kill");
    check_end_state(&config, &state, &label)
}

const INSTALL: &[&str] = &[
    "flow.accepted",
    "download.chunk:3",
    "flow.downloaded",
    "ab.stage.begin",
    "ab.stage.file",
    "ab.stage.files",
    "ab.stage.done",
    "ab.stage.done:2",
    "flow.staged",
    "flow.activating",
    "ab.activate",
    "ab.activate:2",
    "flow.activated",
    "flow.healthy",
    "ab.confirm",
    "ab.confirm:2",
    "flow.confirmed",
    "flow.reported",
];

const REVERT: &[&str] = &[
    "flow.activated",
    "flow.reverting",
    "ab.revert",
    "ab.revert:2",
    "flow.reverted",
    "flow.reported",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_durable_step_and_random_kills_leave_an_acceptable_state() {
    let lab = Lab::start().await;
    let mut n = 0;
    let mut tally = std::collections::BTreeMap::<&str, usize>::new();
    for p in INSTALL {
        n += 1;
        let end = scenario(&lab, n, true, &[p]).await;
        *tally.entry(end).or_default() += 1;
    }
    // `fleetcare-agent status` shows each unit's banks once the job is over.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
        .args(["status", "--json", "--config"])
        .arg(lab.dir.path().join("CRASH-1/agent.toml"))
        .output()
        .expect("status runs");
    let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    // The last scenario's agent was killed once the center had the outcome, which may be
    // before it removed its journal: then the journal is over, waiting to be reported again.
    assert!(
        v["install"]["job"].is_null() || v["install"]["job"]["phase"] == "over",
        "no job in progress: {v}"
    );
    let units = v["install"]["units"].as_array().expect("units");
    assert_eq!(units.len(), 2, "{v}");
    assert!(units.iter().all(|u| u["trial"].is_null()), "{v}");
    for p in REVERT {
        n += 1;
        assert_eq!(
            scenario(&lab, n, false, &[p]).await,
            "old",
            "a failed health check reverts"
        );
        *tally.entry("old").or_default() += 1;
    }
    // A trial whose boots crash: the third boot may still confirm it; a fourth reverts it.
    n += 1;
    assert_eq!(
        scenario(&lab, n, true, &["flow.activated", "ab.boot", "ab.boot"]).await,
        "new"
    );
    *tally.entry("new").or_default() += 1;
    n += 1;
    assert_eq!(
        scenario(
            &lab,
            n,
            true,
            &["flow.activated", "ab.boot", "ab.boot", "ab.boot"]
        )
        .await,
        "old",
        "a trial not confirmed within 3 boots reverts"
    );
    *tally.entry("old").or_default() += 1;
    let points = n;

    // Random moments: SIGKILL a running install.
    let kills: usize = std::env::var("FLEETCARE_CRASH_RANDOM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut seed: u64 = std::env::var("FLEETCARE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("random kills: {kills}, FLEETCARE_CRASH_SEED={seed}");
    for _ in 0..kills {
        n += 1;
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_millis((seed >> 33) % 400);
        let healthy = !(seed >> 20).is_multiple_of(4);
        let (id, config) = lab.device(n, healthy);
        let mut first = spawn(&config, None);
        eventually(&format!("{id} reported"), PATIENCE, || async {
            let d = lab.get(&format!("/api/v1/devices/{id}")).await;
            d["units"]
                .as_array()
                .is_some_and(|u| u.len() == 2)
                .then_some(())
        })
        .await;
        let job = lab.job(&id).await;
        tokio::time::sleep(delay).await; // pacing: a random moment of the install
        first.start_kill().expect("SIGKILL");
        first.wait().await.expect("reaped");
        let mut agent = spawn(&config, None);
        let state = eventually(&format!("{id}: job over"), PATIENCE, || over(&lab, job)).await;
        agent.kill().await.expect("kill");
        let end = check_end_state(&config, &state, &format!("{id} killed after {delay:?}"));
        if !healthy {
            assert_eq!(end, "old", "{id}: an unhealthy install never stays");
        }
        *tally.entry(end).or_default() += 1;
    }
    eprintln!(
        "crash harness: {points} crash-point runs, {kills} random kills, end states {tally:?}, 0 bricked"
    );
}
