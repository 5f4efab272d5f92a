//! Installing software on the device, against a scripted center on 127.0.0.1: the happy path
//! (download, A/B stage, activate, health check, confirm; switch back), resumed downloads, and
//! every refusal on its own — each ends the job with its reason code and leaves the active
//! bank as it was, and nothing is ever written outside the agent's directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleetcare_agent::client::CenterClient;
use fleetcare_agent::source::Snapshot;
use fleetcare_agent::update::command::{CommandDriver, Commands};
use fleetcare_agent::update::download::Limits;
use fleetcare_agent::update::flow::{JobJournal, Phase, Updater};
use fleetcare_agent::update::{AbDriver, Change, StageItem, StagedFile, UnitInstaller};
use fleetcare_trust::{
    Artifact, ArtifactName, Envelope, KEYS_TYPE, KeyList, KeyPair, RELEASE_TYPE, ReleaseManifest,
    Root, Target, format_time,
};
use fleetcare_wire::compat::SoftwareStep;
use fleetcare_wire::delivery::{DeviceJob, JobStatus};
use fleetcare_wire::{Software, Unit};
use sha2::{Digest, Sha256};

/// How the scripted center serves an artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serve {
    Normal,
    /// The first answer breaks off after this many bytes; the next ones are normal.
    CutOnceAfter(usize),
    /// Bytes without end.
    Endless,
    /// One byte every 100 ms.
    Trickle,
}

#[derive(Default)]
struct Script {
    files: BTreeMap<String, (Vec<u8>, Serve)>,
    statuses: Vec<JobStatus>,
    ranges: Vec<String>,
    cut_done: bool,
}

type Shared = Arc<Mutex<Script>>;

async fn artifact(
    State(s): State<Shared>,
    UrlPath(sha): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut script = s.lock().expect("script");
    let Some((bytes, serve)) = script.files.get(&sha).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(r) = &range {
        script.ranges.push(r.clone());
    }
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let body = bytes[start.min(bytes.len())..].to_vec();
    let status = if start > 0 {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let content_range = format!(
        "bytes {start}-{}/{}",
        bytes.len().saturating_sub(1),
        bytes.len()
    );
    match serve {
        Serve::CutOnceAfter(n) if !script.cut_done => {
            script.cut_done = true;
            let first = Bytes::from(body[..n.min(body.len())].to_vec());
            // The first part, then (once it has surely left) a broken connection.
            let stream = futures_util::stream::unfold(Some(first), |first| async move {
                match first {
                    Some(b) => Some((Ok::<Bytes, std::io::Error>(b), None)),
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await; // pacing: the cut comes after the bytes
                        Some((Err(std::io::Error::other("cut")), None))
                    }
                }
            });
            (
                status,
                [(header::CONTENT_RANGE, content_range)],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Serve::Endless => {
            let stream = futures_util::stream::repeat_with(|| {
                Ok::<Bytes, std::io::Error>(Bytes::from(vec![7u8; 64 * 1024]))
            });
            (StatusCode::OK, Body::from_stream(stream)).into_response()
        }
        Serve::Trickle => {
            let stream = futures_util::stream::unfold(0usize, |i| async move {
                tokio::time::sleep(Duration::from_millis(100)).await; // pacing: a slow server
                Some((Ok::<Bytes, std::io::Error>(Bytes::from_static(b"x")), i + 1))
            });
            (StatusCode::OK, Body::from_stream(stream)).into_response()
        }
        _ => (status, [(header::CONTENT_RANGE, content_range)], body).into_response(),
    }
}

async fn status(
    State(s): State<Shared>,
    UrlPath(_id): UrlPath<u64>,
    axum::Json(st): axum::Json<JobStatus>,
) -> axum::Json<serde_json::Value> {
    s.lock().expect("script").statuses.push(st.clone());
    axum::Json(serde_json::json!({ "state": st.state }))
}

struct Lab {
    dir: tempfile::TempDir,
    script: Shared,
    url: String,
    root_key: KeyPair,
    release_key: KeyPair,
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn days(d: i64) -> String {
    let now = SystemTime::now();
    let t = if d >= 0 {
        now + Duration::from_secs(d.unsigned_abs() * 86_400)
    } else {
        now - Duration::from_secs(d.unsigned_abs() * 86_400)
    };
    format_time(t)
}

impl Lab {
    async fn start() -> Lab {
        let script: Shared = Arc::default();
        let app = Router::new()
            .route("/device/v1/artifacts/{sha}", get(artifact))
            .route("/device/v1/jobs/{id}/status", post(status))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Lab {
            dir: tempfile::tempdir().expect("tempdir"),
            script,
            url,
            root_key: KeyPair::from_seed(&[1; 32]),
            release_key: KeyPair::from_seed(&[2; 32]),
        }
    }

    fn root(&self) -> Root {
        Root {
            threshold: 1,
            keys: vec![self.root_key.public().clone()],
        }
    }

    fn key_list(
        &self,
        version: u64,
        threshold: usize,
        keys: &[&KeyPair],
        expires: String,
    ) -> serde_json::Value {
        let list = KeyList {
            version,
            expires,
            threshold,
            keys: keys.iter().map(|k| k.public().clone()).collect(),
        };
        let env = Envelope::sign(KEYS_TYPE, &list.to_json(), &[&self.root_key]);
        serde_json::to_value(env).expect("json")
    }

    fn units_dir(&self) -> PathBuf {
        self.dir.path().join("units")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn driver(&self, health: Option<Vec<String>>) -> AbDriver {
        AbDriver::new(&self.units_dir(), "controller")
            .expect("driver")
            .with_health_command(health)
    }

    fn updater(&self, health: Option<Vec<String>>, limits: Limits) -> Updater {
        Updater::new(
            &self.data_dir(),
            Some(self.root()),
            vec![Arc::new(self.driver(health))],
            CenterClient::new(&self.url, Duration::from_secs(5)),
            limits,
        )
    }

    fn serve(&self, bytes: &[u8], how: Serve) -> String {
        let h = sha(bytes);
        self.script
            .lock()
            .expect("script")
            .files
            .insert(h.clone(), (bytes.to_vec(), how));
        h
    }
}

fn snapshot(hw: &str) -> Snapshot {
    Snapshot {
        device_id: "DEV-1".into(),
        model: "acme-mfp-9000".into(),
        units: vec![Unit {
            slot: "controller".into(),
            kind: "controller".into(),
            model: "ctl-x2".into(),
            serial: "CTL-1".into(),
            hw_revision: hw.into(),
            software: vec![Software {
                product: "ctl-firmware".into(),
                maker: "acme".into(),
                version: "5.2.1".into(),
                active: true,
            }],
            in_service: true,
        }],
        operating: BTreeMap::new(),
        supplies: Vec::new(),
    }
}

fn manifest(version: &str, counter: u64, bytes: &[u8]) -> ReleaseManifest {
    ReleaseManifest {
        product: "ctl-firmware".into(),
        maker: "acme".into(),
        version: version.into(),
        counter,
        targets: vec![Target {
            unit_model: "ctl-x2".into(),
            hw_revisions: vec!["B".into()],
        }],
        artifacts: vec![Artifact {
            name: ArtifactName::new("ctl.bin").expect("name"),
            size: bytes.len() as u64,
            sha256: sha(bytes),
        }],
        expires: days(30),
    }
}

fn signed(m: &ReleaseManifest, keys: &[&KeyPair]) -> serde_json::Value {
    serde_json::to_value(Envelope::sign(RELEASE_TYPE, &m.to_json(), keys)).expect("json")
}

fn install_offer(id: u64, version: &str, release: serde_json::Value) -> DeviceJob {
    DeviceJob {
        id,
        state: "queued".into(),
        steps: vec![SoftwareStep {
            slot: "controller".into(),
            product: "ctl-firmware".into(),
            maker: "acme".into(),
            from: Some("5.2.1".into()),
            to: version.into(),
            action: "install".into(),
        }],
        releases: vec![release],
        expires_at: days(1),
    }
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

/// Offer, drive to the end, report: the journal's end.
async fn run(
    u: &Updater,
    offer: &DeviceJob,
    key_list: Option<&serde_json::Value>,
    hw: &str,
) -> JobJournal {
    let j = u.accept(offer, key_list, &snapshot(hw), SystemTime::now(), None);
    u.begin(&j).expect("journal written");
    let j = u.drive(j, "token", false).await;
    assert_eq!(j.phase, Phase::Over, "the job ends");
    u.report(&j, "token").await.expect("reported");
    assert!(
        u.journal().expect("readable").is_none(),
        "the journal is gone once reported"
    );
    j
}

fn outcome(j: &JobJournal) -> (String, Option<String>) {
    let o = j.outcome.clone().expect("an outcome");
    (o.state, o.reason)
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("under").display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The active version of the controller's ctl-firmware.
fn active_version(lab: &Lab) -> String {
    let (active, _) = lab
        .driver(None)
        .software(&snapshot("B").units[0])
        .expect("software");
    active
        .iter()
        .find(|p| p.product == "ctl-firmware")
        .map(|p| p.version.clone())
        .expect("ctl-firmware is installed")
}

#[tokio::test]
async fn a_signed_release_installs_on_trial_and_is_confirmed_then_switched_back() {
    let lab = Lab::start().await;
    let bytes = payload(300_000);
    lab.serve(&bytes, Serve::CutOnceAfter(100_000));
    let u = lab.updater(None, Limits::default());
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let offer = install_offer(
        1,
        "5.3.0",
        signed(&manifest("5.3.0", 3, &bytes), &[&lab.release_key]),
    );
    let j = run(&u, &offer, Some(&kl), "B").await;
    assert_eq!(outcome(&j), ("succeeded".into(), None), "{j:?}");

    // The resumed download asked for the rest only.
    let (ranges, statuses) = {
        let script = lab.script.lock().expect("script");
        (script.ranges.clone(), script.statuses.clone())
    };
    assert_eq!(ranges, vec!["bytes=100000-".to_owned()]);
    let states: Vec<&str> = statuses.iter().map(|s| s.state.as_str()).collect();
    for s in [
        "downloading",
        "downloaded",
        "verifying",
        "installing",
        "activating",
        "health_check",
        "succeeded",
    ] {
        assert!(states.contains(&s), "{s} reported: {states:?}");
    }

    // Bank b holds exactly the signed bytes and is active, confirmed; a keeps the old version.
    let rec = lab.driver(None).load().expect("record").expect("exists");
    assert_eq!(rec.active, "b");
    assert_eq!(rec.trial, None);
    assert_eq!(
        std::fs::read(lab.units_dir().join("controller/b/ctl-firmware/ctl.bin"))
            .expect("installed"),
        bytes
    );
    let (active, inactive) = lab
        .driver(None)
        .software(&snapshot("B").units[0])
        .expect("sw");
    assert_eq!(
        (active[0].version.as_str(), active[0].counter),
        ("5.3.0", 3)
    );
    assert_eq!(inactive[0].version, "5.2.1");

    // Switching back needs no download.
    let back = DeviceJob {
        id: 2,
        state: "queued".into(),
        steps: vec![SoftwareStep {
            slot: "controller".into(),
            product: "ctl-firmware".into(),
            maker: "acme".into(),
            from: Some("5.3.0".into()),
            to: "5.2.1".into(),
            action: "switch".into(),
        }],
        releases: vec![],
        expires_at: days(1),
    };
    let j = run(&u, &back, None, "B").await;
    assert_eq!(outcome(&j), ("succeeded".into(), None), "{j:?}");
    assert_eq!(active_version(&lab), "5.2.1");
}

async fn refused(
    lab: &Lab,
    u: &Updater,
    offer: &DeviceJob,
    kl: Option<&serde_json::Value>,
    hw: &str,
    reason: &str,
) -> JobJournal {
    let j = run(u, offer, kl, hw).await;
    assert_eq!(outcome(&j).1.as_deref(), Some(reason), "{j:?}");
    assert_eq!(outcome(&j).0, "failed");
    assert_eq!(active_version(lab), "5.2.1", "the active bank is untouched");
    let last = lab
        .script
        .lock()
        .expect("script")
        .statuses
        .last()
        .cloned()
        .expect("reported");
    assert_eq!(
        last.reason.as_deref(),
        Some(reason),
        "the center hears the reason"
    );
    j
}

#[tokio::test]
async fn a_hash_mismatch_is_refused_and_nothing_is_installed() {
    let lab = Lab::start().await;
    let bytes = payload(50_000);
    let h = sha(&bytes);
    let mut other = bytes.clone();
    other[10] ^= 1;
    lab.script
        .lock()
        .expect("script")
        .files
        .insert(h, (other, Serve::Normal));
    let u = lab.updater(None, Limits::default());
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let offer = install_offer(
        1,
        "5.3.0",
        signed(&manifest("5.3.0", 3, &bytes), &[&lab.release_key]),
    );
    refused(&lab, &u, &offer, Some(&kl), "B", "integrity").await;
    assert!(!lab.units_dir().join("controller/b/ctl-firmware").exists());
}

#[tokio::test]
async fn more_bytes_than_signed_stop_the_download() {
    let lab = Lab::start().await;
    let bytes = payload(50_000);
    let h = sha(&bytes);
    lab.script
        .lock()
        .expect("script")
        .files
        .insert(h, (bytes.clone(), Serve::Endless));
    let u = lab.updater(None, Limits::default());
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let offer = install_offer(
        1,
        "5.3.0",
        signed(&manifest("5.3.0", 3, &bytes), &[&lab.release_key]),
    );
    let j = refused(&lab, &u, &offer, Some(&kl), "B", "integrity").await;
    assert!(
        j.outcome
            .expect("o")
            .detail
            .expect("d")
            .contains("more than")
    );
    assert!(files_under(&lab.data_dir().join("update/staging")).is_empty());
}

#[tokio::test]
async fn a_server_that_sends_too_slowly_is_left() {
    let lab = Lab::start().await;
    let bytes = payload(50_000);
    lab.serve(&bytes, Serve::Trickle);
    let limits = Limits {
        min_rate: 1000,
        window: Duration::from_millis(500),
        ..Limits::default()
    };
    let u = lab.updater(None, limits);
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let offer = install_offer(
        1,
        "5.3.0",
        signed(&manifest("5.3.0", 3, &bytes), &[&lab.release_key]),
    );
    let j = refused(&lab, &u, &offer, Some(&kl), "B", "timeout").await;
    assert!(
        j.outcome
            .expect("o")
            .detail
            .expect("d")
            .contains("slow retrieval")
    );
}

#[tokio::test]
async fn unknown_keys_and_repeated_signatures_do_not_count() {
    let lab = Lab::start().await;
    let bytes = payload(1000);
    lab.serve(&bytes, Serve::Normal);
    let u = lab.updater(None, Limits::default());
    let m = manifest("5.3.0", 3, &bytes);
    // A stranger's key.
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let stranger = KeyPair::from_seed(&[9; 32]);
    refused(
        &lab,
        &u,
        &install_offer(1, "5.3.0", signed(&m, &[&stranger])),
        Some(&kl),
        "B",
        "signature",
    )
    .await;
    // Two signatures needed; one key signing twice is one.
    let second = KeyPair::from_seed(&[3; 32]);
    let kl2 = lab.key_list(2, 2, &[&lab.release_key, &second], days(30));
    let twice = signed(&m, &[&lab.release_key, &lab.release_key]);
    refused(
        &lab,
        &u,
        &install_offer(2, "5.3.0", twice),
        Some(&kl2),
        "B",
        "signature",
    )
    .await;
    let both = signed(&m, &[&lab.release_key, &second]);
    let j = run(&u, &install_offer(3, "5.3.0", both), Some(&kl2), "B").await;
    assert_eq!(outcome(&j).0, "succeeded", "{j:?}");
}

#[tokio::test]
async fn a_revoked_key_and_an_older_key_list_are_refused() {
    let lab = Lab::start().await;
    let bytes = payload(1000);
    lab.serve(&bytes, Serve::Normal);
    let u = lab.updater(None, Limits::default());
    let m = manifest("5.3.0", 3, &bytes);
    let new_key = KeyPair::from_seed(&[4; 32]);
    // Version 2 rotates the release key: the old one is revoked, with no re-provisioning.
    let v2 = lab.key_list(2, 1, &[&new_key], days(30));
    refused(
        &lab,
        &u,
        &install_offer(1, "5.3.0", signed(&m, &[&lab.release_key])),
        Some(&v2),
        "B",
        "signature",
    )
    .await;
    // The center cannot take the device back to version 1.
    let v1 = lab.key_list(1, 1, &[&lab.release_key], days(30));
    refused(
        &lab,
        &u,
        &install_offer(2, "5.3.0", signed(&m, &[&lab.release_key])),
        Some(&v1),
        "B",
        "rollback",
    )
    .await;
    let j = run(
        &u,
        &install_offer(3, "5.3.0", signed(&m, &[&new_key])),
        Some(&v2),
        "B",
    )
    .await;
    assert_eq!(outcome(&j).0, "succeeded", "{j:?}");
}

#[tokio::test]
async fn a_lower_release_counter_is_a_rollback() {
    let lab = Lab::start().await;
    let new = payload(1000);
    let old = payload(900);
    lab.serve(&new, Serve::Normal);
    lab.serve(&old, Serve::Normal);
    let u = lab.updater(None, Limits::default());
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let j = run(
        &u,
        &install_offer(
            1,
            "5.4.0",
            signed(&manifest("5.4.0", 7, &new), &[&lab.release_key]),
        ),
        Some(&kl),
        "B",
    )
    .await;
    assert_eq!(outcome(&j).0, "succeeded", "{j:?}");
    let j = run(
        &u,
        &install_offer(
            2,
            "5.3.0",
            signed(&manifest("5.3.0", 6, &old), &[&lab.release_key]),
        ),
        Some(&kl),
        "B",
    )
    .await;
    assert_eq!(
        outcome(&j),
        ("failed".into(), Some("rollback".into())),
        "{j:?}"
    );
    assert_eq!(active_version(&lab), "5.4.0");
}

#[tokio::test]
async fn expired_metadata_is_refused() {
    let lab = Lab::start().await;
    let bytes = payload(1000);
    lab.serve(&bytes, Serve::Normal);
    let u = lab.updater(None, Limits::default());
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let mut m = manifest("5.3.0", 3, &bytes);
    m.expires = days(-1);
    refused(
        &lab,
        &u,
        &install_offer(1, "5.3.0", signed(&m, &[&lab.release_key])),
        Some(&kl),
        "B",
        "expired",
    )
    .await;
    // A frozen key list.
    let stale = lab.key_list(2, 1, &[&lab.release_key], days(-1));
    let m = manifest("5.3.0", 3, &bytes);
    refused(
        &lab,
        &u,
        &install_offer(2, "5.3.0", signed(&m, &[&lab.release_key])),
        Some(&stale),
        "B",
        "expired",
    )
    .await;
}

#[tokio::test]
async fn an_image_for_other_hardware_is_refused() {
    let lab = Lab::start().await;
    let bytes = payload(1000);
    lab.serve(&bytes, Serve::Normal);
    let u = lab.updater(None, Limits::default());
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let offer = install_offer(
        1,
        "5.3.0",
        signed(&manifest("5.3.0", 3, &bytes), &[&lab.release_key]),
    );
    // Made for revision B; this controller is revision C.
    refused(&lab, &u, &offer, Some(&kl), "C", "incompatible_hardware").await;
}

#[tokio::test]
async fn a_file_changed_after_verification_is_never_installed() {
    let lab = Lab::start().await;
    let bytes = payload(20_000);
    let driver = lab.driver(None);
    driver.software(&snapshot("B").units[0]).expect("seeded");
    let staged = lab.dir.path().join("verified.bin");
    std::fs::write(&staged, &bytes).expect("write");
    // Verified … then swapped before it is installed.
    let mut evil = bytes.clone();
    evil[0] ^= 0xff;
    std::fs::write(&staged, &evil).expect("swap");
    let change = Change::Install(StageItem {
        product: "ctl-firmware".into(),
        maker: "acme".into(),
        version: "5.3.0".into(),
        counter: 3,
        files: vec![StagedFile {
            name: ArtifactName::new("ctl.bin").expect("name"),
            path: staged,
            size: bytes.len() as u64,
            sha256: sha(&bytes),
        }],
    });
    let err = driver.stage(1, &[change]).expect_err("refused");
    assert_eq!(err.reason, "integrity", "{err}");
    assert!(
        !lab.units_dir()
            .join("controller/b/ctl-firmware/ctl.bin")
            .exists()
    );
    assert!(
        driver.activate(1).is_err(),
        "nothing staged can be activated"
    );
    assert_eq!(active_version(&lab), "5.2.1");
}

#[tokio::test]
async fn names_that_would_leave_the_staging_directory_write_nothing_outside() {
    let lab = Lab::start().await;
    let bytes = payload(1000);
    lab.serve(&bytes, Serve::Normal);
    let u = lab.updater(None, Limits::default());
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let before = files_under(lab.dir.path());

    // An artifact name with a path in it, validly signed: the manifest does not even parse.
    let m = manifest("5.3.0", 3, &bytes);
    let text = String::from_utf8(m.to_json())
        .expect("utf8")
        .replace("ctl.bin", "../../../escaped.bin");
    let env = Envelope::sign(RELEASE_TYPE, text.as_bytes(), &[&lab.release_key]);
    let offer = install_offer(1, "5.3.0", serde_json::to_value(env).expect("json"));
    refused(&lab, &u, &offer, Some(&kl), "B", "signature").await;

    // A product or slot name with a path in it becomes a hashed directory name inside its
    // unit: it installs, but nowhere else.
    let mut m = manifest("5.3.0", 3, &bytes);
    m.product = "../../escaped".into();
    let mut offer = install_offer(2, "5.3.0", signed(&m, &[&lab.release_key]));
    offer.steps[0].product = "../../escaped".into();
    let j = run(&u, &offer, Some(&kl), "B").await;
    assert_eq!(outcome(&j).0, "succeeded", "{j:?}");
    let hashed = fleetcare_agent::update::ab::dir_name("../../escaped");
    assert!(hashed.starts_with('~') && !hashed.contains('/'), "{hashed}");
    let rec = lab.driver(None).load().expect("rec").expect("some");
    assert!(
        lab.units_dir()
            .join("controller")
            .join(&rec.active)
            .join(&hashed)
            .join("ctl.bin")
            .exists()
    );
    let slot = AbDriver::new(&lab.units_dir(), "../escaped").expect("driver");
    assert_eq!(slot.dir().parent(), Some(lab.units_dir().as_path()));

    let after = files_under(lab.dir.path());
    let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
    for f in &new {
        assert!(
            f.starts_with("data/") || f.starts_with("units/controller/"),
            "{f} was written outside the agent's directories"
        );
        assert!(!f.contains("escaped"), "{f}");
    }
    assert!(
        !lab.dir
            .path()
            .parent()
            .expect("parent")
            .join("escaped.bin")
            .exists()
    );
    assert_eq!(active_version(&lab), "5.2.1");
}

#[tokio::test]
async fn a_failed_health_check_rolls_back() {
    let lab = Lab::start().await;
    let bytes = payload(1000);
    lab.serve(&bytes, Serve::Normal);
    let u = lab.updater(Some(vec!["false".into()]), Limits::default());
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let offer = install_offer(
        1,
        "5.3.0",
        signed(&manifest("5.3.0", 3, &bytes), &[&lab.release_key]),
    );
    let j = run(&u, &offer, Some(&kl), "B").await;
    assert_eq!(
        outcome(&j),
        ("rolled_back".into(), Some("health_check".into())),
        "{j:?}"
    );
    let rec = lab.driver(None).load().expect("record").expect("exists");
    assert_eq!((rec.active.as_str(), rec.trial.is_none()), ("a", true));
    assert_eq!(active_version(&lab), "5.2.1");
}

#[tokio::test]
async fn a_trial_not_confirmed_within_three_boots_reverts() {
    let lab = Lab::start().await;
    let bytes = payload(1000);
    lab.serve(&bytes, Serve::Normal);
    let u = lab.updater(None, Limits::default());
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let offer = install_offer(
        1,
        "5.3.0",
        signed(&manifest("5.3.0", 3, &bytes), &[&lab.release_key]),
    );
    let mut j = u.accept(&offer, Some(&kl), &snapshot("B"), SystemTime::now(), None);
    assert_eq!(j.phase, Phase::Accepted, "{j:?}");
    // Staged and activated (by hand here), then the agent died twice in the health check.
    let driver = lab.driver(None);
    let path = lab.dir.path().join("f.bin");
    std::fs::write(&path, &bytes).expect("write");
    driver
        .stage(
            1,
            &[Change::Install(StageItem {
                product: "ctl-firmware".into(),
                maker: "acme".into(),
                version: "5.3.0".into(),
                counter: 3,
                files: vec![StagedFile {
                    name: ArtifactName::new("ctl.bin").expect("name"),
                    path,
                    size: bytes.len() as u64,
                    sha256: sha(&bytes),
                }],
            })],
        )
        .expect("staged");
    driver.activate(1).expect("activated");
    assert_eq!(active_version(&lab), "5.3.0");
    // Three boots, each dying before the trial was confirmed…
    for _ in 0..3 {
        assert_eq!(driver.boot(1).expect("boot"), Some(true));
    }
    assert_eq!(
        driver
            .load()
            .expect("rec")
            .expect("some")
            .trial
            .expect("trial")
            .boots_left,
        0
    );
    // … and the fourth finds the trial run out: the agent resumes the journal and reverts.
    j.phase = Phase::Activated;
    let j = u.drive(j, "token", true).await;
    assert_eq!(j.phase, Phase::Over);
    assert_eq!(
        outcome(&j),
        ("rolled_back".into(), Some("health_check".into())),
        "{j:?}"
    );
    assert!(j.outcome.expect("o").detail.expect("d").contains("3 boots"));
    assert_eq!(active_version(&lab), "5.2.1");
}

fn command_updater(lab: &Lab, health_ok: bool) -> (Updater, PathBuf) {
    let log = lab.dir.path().join("steps.log");
    let step = |name: &str| {
        vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!(
                "echo \"{name} $FLEETCARE_SLOT $FLEETCARE_JOB $(ls \"$FLEETCARE_BANK_DIR\"/ctl-firmware 2>/dev/null)\" >> '{}'",
                log.display()
            ),
        ]
    };
    let mut health = step("health");
    if !health_ok {
        health[2].push_str(" && exit 3");
    }
    let commands = Commands {
        stage: step("stage"),
        activate: step("activate"),
        health,
        confirm: step("confirm"),
        revert: step("revert"),
        timeout: Some(Duration::from_secs(10)),
    };
    let driver = CommandDriver::new(&lab.data_dir().join("update/units"), "controller", commands)
        .expect("driver");
    let u = Updater::new(
        &lab.data_dir(),
        Some(lab.root()),
        vec![Arc::new(driver)],
        CenterClient::new(&lab.url, Duration::from_secs(5)),
        Limits::default(),
    );
    (u, log)
}

#[tokio::test]
async fn the_command_driver_runs_the_integrators_scripts_in_order() {
    let lab = Lab::start().await;
    let bytes = payload(4000);
    lab.serve(&bytes, Serve::Normal);
    let (u, log) = command_updater(&lab, true);
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let offer = install_offer(
        5,
        "5.3.0",
        signed(&manifest("5.3.0", 3, &bytes), &[&lab.release_key]),
    );
    let j = run(&u, &offer, Some(&kl), "B").await;
    assert_eq!(outcome(&j), ("succeeded".into(), None), "{j:?}");
    let steps = std::fs::read_to_string(&log).expect("the scripts ran");
    // Each script saw the slot, the job and the verified file in the bank it works on.
    assert_eq!(
        steps.lines().collect::<Vec<_>>(),
        vec![
            "stage controller 5 ctl.bin",
            "activate controller 5 ctl.bin",
            "health controller 5 ctl.bin",
            "confirm controller 5 ctl.bin",
        ]
    );
}

#[tokio::test]
async fn the_command_driver_reverts_when_the_integrators_health_check_fails() {
    let lab = Lab::start().await;
    let bytes = payload(4000);
    lab.serve(&bytes, Serve::Normal);
    let (u, log) = command_updater(&lab, false);
    let kl = lab.key_list(1, 1, &[&lab.release_key], days(30));
    let offer = install_offer(
        6,
        "5.3.0",
        signed(&manifest("5.3.0", 3, &bytes), &[&lab.release_key]),
    );
    let j = run(&u, &offer, Some(&kl), "B").await;
    assert_eq!(
        outcome(&j),
        ("rolled_back".into(), Some("health_check".into())),
        "{j:?}"
    );
    let steps = std::fs::read_to_string(&log).expect("the scripts ran");
    let names: Vec<&str> = steps.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(names, vec!["stage", "activate", "health", "revert"]);
    let books = AbDriver::new(&lab.data_dir().join("update/units"), "controller").expect("books");
    let (active, _) = books.software(&snapshot("B").units[0]).expect("software");
    assert_eq!(active[0].version, "5.2.1", "the books went back too");
}
