//! Software delivery end to end on 127.0.0.1: a real center and a real agent. Keys, a signed
//! release and its artifact are published; an operator job installs it on the device's
//! controller (A/B, trial, health check, confirm); the device's next report shows the new
//! version. The center's side is checked on its own too: uploads that are not what was
//! signed, Range/ETag downloads, tenant scoping, and jobs that expire.

mod common;

use std::time::{Duration, SystemTime};

use fleetcare_agent::source::InventoryFile;
use fleetcare_agent::{Agent, AgentConfig};
use fleetcare_server::{Center, ServerConfig};
use fleetcare_testkit::eventually;
use fleetcare_trust::{
    Artifact, ArtifactName, Envelope, KEYS_TYPE, KeyList, KeyPair, RELEASE_TYPE, ReleaseManifest,
    Root, Target, format_time,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(20);

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn in_days(d: u64) -> String {
    format_time(SystemTime::now() + Duration::from_secs(d * 86_400))
}

struct Lab {
    center: Center,
    admin: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    root: KeyPair,
    release: KeyPair,
}

impl Lab {
    async fn start() -> Lab {
        Lab::start_with_cache(ServerConfig::default().artifact_cache_bytes).await
    }

    async fn start_with_cache(artifact_cache_bytes: u64) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("center"),
            artifact_cache_bytes,
            ..ServerConfig::default()
        };
        let center = Center::start(&config).await.expect("center starts");
        Lab {
            admin: center.boot.admin_token.clone(),
            center,
            http: reqwest::Client::new(),
            dir,
            root: KeyPair::from_seed(&[1; 32]),
            release: KeyPair::from_seed(&[2; 32]),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req.send().await.expect("center answers");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn op(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.center.url()))
            .bearer_auth(&self.admin)
    }

    fn key_list(&self) -> String {
        let list = KeyList {
            version: 1,
            expires: in_days(30),
            threshold: 1,
            keys: vec![self.release.public().clone()],
        };
        Envelope::sign(KEYS_TYPE, &list.to_json(), &[&self.root]).to_json()
    }

    fn manifest(&self, version: &str, bytes: &[u8]) -> ReleaseManifest {
        ReleaseManifest {
            product: "ctl-firmware".into(),
            maker: "acme".into(),
            version: version.into(),
            counter: 2,
            targets: vec![Target {
                unit_model: "ctl-x2".into(),
                hw_revisions: vec!["B".into()],
            }],
            artifacts: vec![Artifact {
                name: ArtifactName::new("ctl.bin").expect("name"),
                size: bytes.len() as u64,
                sha256: sha(bytes),
            }],
            expires: in_days(30),
        }
    }

    async fn publish(&self, m: &ReleaseManifest, signer: &KeyPair) -> (StatusCode, Value) {
        let env = Envelope::sign(RELEASE_TYPE, &m.to_json(), &[signer]).to_json();
        self.send(self.op(reqwest::Method::POST, "/api/v1/releases").body(env))
            .await
    }

    async fn upload(&self, hash: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        self.send(
            self.op(reqwest::Method::PUT, &format!("/api/v1/artifacts/{hash}"))
                .body(bytes),
        )
        .await
    }

    /// An agent config for a device of this lab with this inventory, in a directory of its
    /// own; with `installs`, the provisioned root and A/B units.
    fn device(
        &self,
        name: &str,
        inventory: &str,
        installs: bool,
    ) -> (AgentConfig, std::path::PathBuf) {
        let base = self.dir.path().join(name);
        std::fs::create_dir_all(&base).expect("mkdir");
        let inv = base.join("inventory.toml");
        std::fs::write(&inv, inventory).expect("write");
        let mut cfg = AgentConfig::new(&self.center.url(), base.join("data"));
        cfg.enrollment_key = Some(self.center.boot.enrollment_key.clone());
        cfg.inventory = Some(inv.clone());
        if installs {
            let root = base.join("root.json");
            std::fs::write(
                &root,
                Root {
                    threshold: 1,
                    keys: vec![self.root.public().clone()],
                }
                .to_json(),
            )
            .expect("write");
            cfg.trust_root = Some(root);
            cfg.units_dir = Some(base.join("units"));
        }
        cfg.backoff_initial = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(500);
        (cfg, inv)
    }

    async fn job(&self, id: u64) -> Value {
        self.send(self.op(reqwest::Method::GET, &format!("/api/v1/jobs/{id}")))
            .await
            .1
    }
}

#[tokio::test]
async fn an_operator_job_installs_a_signed_release_on_a_real_device() {
    let lab = Lab::start().await;
    let (s, _) = lab
        .send(
            lab.op(reqwest::Method::POST, "/api/v1/keys")
                .body(lab.key_list()),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let m = lab.manifest("5.3.0", &bytes);
    let (s, r) = lab.publish(&m, &lab.release).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["complete"], false, "the artifact is not uploaded yet");
    let (s, a) = lab.upload(&sha(&bytes), bytes.clone()).await;
    assert_eq!(
        (s, a["created"].clone()),
        (StatusCode::OK, json!(true)),
        "{a}"
    );

    // The device: an inventory, A/B units, the provisioned root.
    let base = lab.dir.path().join("device");
    let (cfg, inv) = lab.device("device", &common::inventory("DEV-9"), true);
    let (stop, shutdown) = watch::channel(false);
    let agent = tokio::spawn(Agent::new(cfg, InventoryFile::new(&inv)).run(shutdown));

    eventually(
        "the device online, its structure reported",
        PATIENCE,
        || async {
            let (s, d) = lab
                .send(lab.op(reqwest::Method::GET, "/api/v1/devices/DEV-9"))
                .await;
            (s == StatusCode::OK
                && d["online"] == true
                && d["units"].as_array().is_some_and(|u| !u.is_empty()))
            .then_some(())
        },
    )
    .await;

    // A job naming an unpublished release, or other hardware, is refused at once.
    let (s, e) = lab
        .send(lab.op(reqwest::Method::POST, "/api/v1/jobs").json(&json!({
            "device_id": "DEV-9",
            "steps": [{"slot": "controller", "product": "ctl-firmware", "version": "9.9", "action": "install"},
                      {"slot": "nowhere", "product": "x", "version": "1", "action": "switch"}]
        })))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["problems"].as_array().map(Vec::len), Some(2), "{e}");

    let (s, job) = lab
        .send(lab.op(reqwest::Method::POST, "/api/v1/jobs").json(&json!({
            "device_id": "DEV-9",
            "steps": [{"slot": "controller", "product": "ctl-firmware", "version": "5.3.0", "action": "install"}]
        })))
        .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    assert_eq!(job["steps"][0]["from"], "5.2.1");
    let id = job["id"].as_u64().expect("id");

    let done = eventually("the job over", PATIENCE, || async {
        let j = lab.job(id).await;
        matches!(
            j["state"].as_str(),
            Some("succeeded" | "failed" | "rolled_back")
        )
        .then_some(j)
    })
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let states: Vec<&str> = done["events"]
        .as_array()
        .expect("the job's history")
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(
        states,
        vec![
            "downloading",
            "downloaded",
            "verifying",
            "installing",
            "activating",
            "health_check",
            "succeeded"
        ],
        "{done}"
    );
    assert_eq!(done["bytes_done"], 200_000, "{done}");

    // The device's structure report shows the new version active and the old one inactive.
    let d = eventually("the new version reported", PATIENCE, || async {
        let (_, d) = lab
            .send(lab.op(reqwest::Method::GET, "/api/v1/devices/DEV-9"))
            .await;
        (d["units"][0]["software"][0]["version"] == "5.3.0").then_some(d)
    })
    .await;
    let sw = &d["units"][0]["software"];
    assert_eq!(sw[1]["version"], "5.2.1");
    assert_eq!(sw[1]["active"], false);
    assert_eq!(
        std::fs::read(base.join("units/controller/b/ctl-firmware/ctl.bin")).expect("installed"),
        bytes
    );

    let _ = stop.send(true);
    agent.await.expect("task").expect("agent ends cleanly");
}

#[tokio::test]
async fn the_center_keeps_only_what_was_signed_and_serves_it_by_range_from_memory() {
    keeps_and_serves(Lab::start().await).await;
}

#[tokio::test]
async fn the_center_keeps_only_what_was_signed_and_serves_it_by_range_from_its_file() {
    keeps_and_serves(Lab::start_with_cache(0).await).await;
}

async fn keeps_and_serves(lab: Lab) {
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
    let hash = sha(&bytes);
    // No key list yet: a release cannot be checked, so it is refused.
    let (s, e) = lab
        .publish(&lab.manifest("1.0", &bytes), &lab.release)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    lab.send(
        lab.op(reqwest::Method::POST, "/api/v1/keys")
            .body(lab.key_list()),
    )
    .await;
    // Signed by a stranger: refused.
    let stranger = KeyPair::from_seed(&[7; 32]);
    let (s, e) = lab.publish(&lab.manifest("1.0", &bytes), &stranger).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"].as_str().expect("msg").contains("signature"),
        "{e}"
    );
    // An artifact no release names: nowhere to put it.
    let (s, _) = lab.upload(&hash, bytes.clone()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = lab
        .publish(&lab.manifest("1.0", &bytes), &lab.release)
        .await;
    assert_eq!(s, StatusCode::OK);
    // The same version again with other content: refused (a version means one thing).
    let (s, e) = lab
        .publish(&lab.manifest("1.0", b"other"), &lab.release)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    // Wrong bytes, too few, too many: refused, nothing kept.
    let mut wrong = bytes.clone();
    wrong[5] ^= 1;
    for body in [
        wrong,
        bytes[..9_999].to_vec(),
        [bytes.clone(), vec![0]].concat(),
    ] {
        let (s, e) = lab.upload(&hash, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
        assert!(
            e["error"].as_str().expect("msg").contains("integrity"),
            "{e}"
        );
    }
    let store = lab.dir.path().join("center/artifacts");
    assert!(!store.join(format!("sha256/{}/{hash}", &hash[..2])).exists());
    let (s, _) = lab.upload("../../etc/passwd", bytes.clone()).await;
    assert!(
        s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND,
        "{s}"
    );
    let (s, a) = lab.upload(&hash, bytes.clone()).await;
    assert_eq!((s, a["created"].clone()), (StatusCode::OK, json!(true)));
    let (_, a) = lab.upload(&hash, bytes.clone()).await;
    assert_eq!(a["created"], false, "uploading again is harmless");
    assert!(
        std::fs::read_dir(store.join("tmp"))
            .expect("tmp")
            .next()
            .is_none(),
        "no partial upload is left behind"
    );

    // A device of the tenant downloads it, whole or by range.
    let (_, enrolled) = lab
        .send(
            lab.http
                .post(format!("{}/device/v1/enroll", lab.center.url()))
                .json(&json!({"enrollment_key": lab.center.boot.enrollment_key, "device_id": "DEV-1", "model": "m"})),
        )
        .await;
    let token = enrolled["device_token"].as_str().expect("token").to_owned();
    let get = |range: Option<&str>, if_range: Option<&str>, inm: Option<&str>| {
        let mut r = lab
            .http
            .get(format!("{}/device/v1/artifacts/{hash}", lab.center.url()))
            .bearer_auth(&token);
        if let Some(v) = range {
            r = r.header("range", v);
        }
        if let Some(v) = if_range {
            r = r.header("if-range", v);
        }
        if let Some(v) = inm {
            r = r.header("if-none-match", v);
        }
        async move { r.send().await.expect("answer") }
    };
    let etag = format!("\"{hash}\"");
    let whole = get(None, None, None).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["etag"], etag.as_str());
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.bytes().await.expect("body").to_vec(), bytes);
    let part = get(Some("bytes=9000-"), Some(&etag), None).await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 9000-9999/10000");
    assert_eq!(part.bytes().await.expect("body").to_vec(), bytes[9000..]);
    let stale = get(Some("bytes=9000-"), Some("\"something-else\""), None).await;
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "If-Range with another tag: whole file"
    );
    let past = get(Some("bytes=10000-"), None, None).await;
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past.headers()["content-range"], "bytes */10000");
    let same = get(None, None, Some(&etag)).await;
    assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
    let unknown = lab
        .http
        .get(format!(
            "{}/device/v1/artifacts/{}",
            lab.center.url(),
            "0".repeat(64)
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let anonymous = lab
        .http
        .get(format!("{}/device/v1/artifacts/{hash}", lab.center.url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_job_for_a_device_that_stays_away_expires_and_says_so() {
    let lab = Lab::start().await;
    lab.send(
        lab.op(reqwest::Method::POST, "/api/v1/keys")
            .body(lab.key_list()),
    )
    .await;
    // A device that reported once and went away.
    let (_, enrolled) = lab
        .send(
            lab.http
                .post(format!("{}/device/v1/enroll", lab.center.url()))
                .json(&json!({"enrollment_key": lab.center.boot.enrollment_key, "device_id": "DEV-2", "model": "acme-mfp-9000"})),
        )
        .await;
    let token = enrolled["device_token"].as_str().expect("token").to_owned();
    let report = json!({
        "device_id": "DEV-2", "model": "acme-mfp-9000", "seq": 1, "trigger": "connect",
        "observed_at_ms": 1, "units": [{"slot": "controller", "kind": "controller", "model": "ctl-x2",
        "serial": "C-2", "hw_revision": "B", "software": [
            {"product": "ctl-firmware", "maker": "acme", "version": "5.2.1"},
            {"product": "ctl-firmware", "maker": "acme", "version": "5.1.0", "active": false}]}]
    });
    let (s, e) = lab
        .send(
            lab.http
                .post(format!("{}/device/v1/reports", lab.center.url()))
                .bearer_auth(&token)
                .json(&report),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    let (s, job) = lab
        .send(lab.op(reqwest::Method::POST, "/api/v1/jobs").json(&json!({
            "device_id": "DEV-2", "ttl_s": 60,
            "steps": [{"slot": "controller", "product": "ctl-firmware", "version": "5.1.0", "action": "switch"}]
        })))
        .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    let id = job["id"].as_u64().expect("id");
    // The device would see it…
    let (_, offers) = lab
        .send(
            lab.http
                .get(format!("{}/device/v1/jobs", lab.center.url()))
                .bearer_auth(&token),
        )
        .await;
    assert_eq!(offers["jobs"][0]["id"], id, "{offers}");
    assert!(offers["key_list"].is_object());
    // …but never comes back; a minute later the sweeper ends it.
    let expired = lab
        .center
        .state
        .store
        .expire_jobs(lab.center.state.clock.now_ms() + 61_000)
        .await
        .expect("expire");
    assert_eq!(expired, 1);
    let j = lab.job(id).await;
    assert_eq!(
        (j["state"].as_str(), j["reason"].as_str()),
        (Some("failed"), Some("expired")),
        "{j}"
    );
    assert!(j["detail"].as_str().expect("detail").contains("expired"));
    // A late status cannot revive it; the answer says it is over.
    let (s, ack) = lab
        .send(
            lab.http
                .post(format!("{}/device/v1/jobs/{id}/status", lab.center.url()))
                .bearer_auth(&token)
                .json(&json!({"state": "downloading"})),
        )
        .await;
    assert_eq!((s, ack["state"].as_str()), (StatusCode::OK, Some("failed")));
    // Another device cannot touch this device's job.
    let (_, other) = lab
        .send(
            lab.http
                .post(format!("{}/device/v1/enroll", lab.center.url()))
                .json(&json!({"enrollment_key": lab.center.boot.enrollment_key, "device_id": "DEV-3", "model": "acme-mfp-9000"})),
        )
        .await;
    let (s, _) = lab
        .send(
            lab.http
                .post(format!("{}/device/v1/jobs/{id}/status", lab.center.url()))
                .bearer_auth(other["device_token"].as_str().expect("token"))
                .json(&json!({"state": "downloading"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A reason outside the uniform codes is refused.
    let (s, _) = lab
        .send(
            lab.http
                .post(format!("{}/device/v1/jobs/{id}/status", lab.center.url()))
                .bearer_auth(&token)
                .json(&json!({"state": "failed", "reason": "gremlins"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// An acme-mfp-9000 whose controller runs `ctl` and engine runs `eng`.
fn mfp_inventory(id: &str, ctl: &str, eng: &str) -> String {
    format!(
        r#"[device]
id = "{id}"
model = "acme-mfp-9000"

[[unit]]
slot = "controller"
kind = "controller"
model = "ctl-x2"
serial = "CTL-{id}"
hw_revision = "B"
  [[unit.software]]
  product = "ctl-firmware"
  maker = "acme"
  version = "{ctl}"
  [[unit.software]]
  product = "pdl-interpreter"
  maker = "acme"
  version = "3.4"

[[unit]]
slot = "engine"
kind = "engine"
model = "eng-45c"
serial = "ENG-{id}"
hw_revision = "C"
  [[unit.software]]
  product = "engine-firmware"
  maker = "acme"
  version = "{eng}"

[[unit]]
slot = "fuser"
kind = "fuser"
model = "fus-7"
serial = "FUS-{id}"
hw_revision = "A"
"#
    )
}

#[tokio::test]
async fn jobs_say_why_they_wait_and_a_device_that_cannot_install_gets_none() {
    let lab = Lab::start().await;
    let (s, _) = lab
        .send(
            lab.op(reqwest::Method::POST, "/api/v1/keys")
                .body(lab.key_list()),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let catalog = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/catalog.toml"
    ))
    .expect("catalog");
    let (s, v) = lab
        .send(
            lab.op(reqwest::Method::POST, "/api/v1/catalog")
                .body(catalog),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = lab
        .send(lab.op(reqwest::Method::PUT, "/api/v1/compat/policy").json(
            &json!({"plan": "minimal", "fix": "automatic", "out_of_service": false, "job_ttl_s": 3600}),
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Three devices: one that installs (a root of trust, A/B units), and two without a root
    // of trust: one needs a newer engine firmware, one would need it for 5.3.0.
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for (id, ctl, eng, installs) in [
        ("WAIT-1", "5.2.1", "2.8.1", true),
        ("NOINST-1", "5.3.0", "2.7.4", false),
        ("NOINST-2", "5.2.1", "2.7.4", false),
    ] {
        let (cfg, inv) = lab.device(id, &mfp_inventory(id, ctl, eng), installs);
        let (stop, shutdown) = watch::channel(false);
        tasks.push(tokio::spawn(
            Agent::new(cfg, InventoryFile::new(&inv)).run(shutdown),
        ));
        stops.push(stop);
    }
    for id in ["WAIT-1", "NOINST-1", "NOINST-2"] {
        eventually(&format!("{id} online"), PATIENCE, || async {
            let (s, d) = lab
                .send(lab.op(reqwest::Method::GET, &format!("/api/v1/devices/{id}")))
                .await;
            (s == StatusCode::OK && d["online"] == true && d["last_report"].is_object())
                .then_some(())
        })
        .await;
    }

    // The device that cannot install: its plan says why, and no job is made for it.
    let (_, d) = lab
        .send(lab.op(reqwest::Method::GET, "/api/v1/devices/NOINST-1"))
        .await;
    assert!(
        d["install_blocked"]
            .as_str()
            .is_some_and(|w| w.contains("root of trust")),
        "{d}"
    );
    let (_, c) = lab
        .send(lab.op(reqwest::Method::GET, "/api/v1/devices/NOINST-1/compat"))
        .await;
    assert_eq!(c["state"], "software", "{c}");
    assert_eq!(c["plan"]["steps"][0]["product"], "engine-firmware", "{c}");
    assert!(
        c["plan"]["blocked"]
            .as_str()
            .is_some_and(|w| w.contains("cannot install software")),
        "{c}"
    );
    let (s, e) = lab
        .send(lab.op(reqwest::Method::POST, "/api/v1/jobs").json(&json!({
            "device_id": "NOINST-1",
            "steps": [{"slot": "engine", "product": "engine-firmware", "version": "2.8.1", "action": "install"}]
        })))
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("cannot_install")),
        "{e}"
    );

    // A rollout of a release the center does not hold yet is refused, unless allowed.
    let rollout = |allow: bool| {
        json!({"name": "5.3.0", "release": {"product": "ctl-firmware", "version": "5.3.0"},
               "filter": "", "waves": "100%", "allow_unpublished": allow})
    };
    let (s, e) = lab
        .send(
            lab.op(reqwest::Method::POST, "/api/v1/rollouts")
                .json(&rollout(false)),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("ctl-firmware 5.3.0 is not published")
                && p.contains("--allow-unpublished")),
        "{e}"
    );
    let (s, r) = lab
        .send(
            lab.op(reqwest::Method::POST, "/api/v1/rollouts")
                .json(&rollout(true)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let rid = r["id"].as_u64().expect("id");
    let devices = || async {
        lab.send(lab.op(
            reqwest::Method::GET,
            &format!("/api/v1/rollouts/{rid}/devices"),
        ))
        .await
        .1["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let of = |all: &[Value], id: &str| {
        all.iter()
            .find(|d| d["device_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let all = eventually(
        "the rollout dispatched and judged both",
        PATIENCE,
        || async {
            let all = devices().await;
            (of(&all, "WAIT-1")["state"] == "running"
                && of(&all, "NOINST-2")["state"] == "ineligible")
                .then_some(all)
        },
    )
    .await;
    assert!(
        of(&all, "WAIT-1")["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("ctl-firmware 5.3.0 is not published")),
        "{all:?}"
    );
    assert!(
        of(&all, "NOINST-2")["reason"]
            .as_str()
            .is_some_and(|w| w.contains("cannot install software")),
        "{all:?}"
    );
    let lab = &lab;
    let jobs = |id: &'static str| async move {
        lab.send(lab.op(reqwest::Method::GET, &format!("/api/v1/jobs?device={id}")))
            .await
            .1["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let job = jobs("WAIT-1").await[0].clone();
    assert_eq!(job["state"], "queued", "{job}");
    assert!(
        job["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("is not published")),
        "{job}"
    );
    let (_, c) = lab
        .send(lab.op(reqwest::Method::GET, "/api/v1/devices/WAIT-1/compat"))
        .await;
    assert_eq!(c["jobs"][0]["waiting"], job["waiting"], "{c}");

    // Published without its file: the wait says which file.
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let (s, v) = lab
        .publish(&lab.manifest("5.3.0", &bytes), &lab.release)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let job = lab.job(job["id"].as_u64().expect("id")).await;
    assert!(
        job["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("ctl.bin is not on the center")),
        "{job}"
    );

    // The file arrives: the device is told at once, and installs.
    let (s, v) = lab.upload(&sha(&bytes), bytes).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let done = eventually("the waiting job ran", PATIENCE, || async {
        let j = lab.job(job["id"].as_u64().expect("id")).await;
        (j["state"] == "succeeded").then_some(j)
    })
    .await;
    assert!(done["waiting"].is_null(), "{done}");
    for id in ["NOINST-1", "NOINST-2"] {
        assert!(
            jobs(id).await.is_empty(),
            "no job was made for {id}, which cannot install"
        );
    }
    for s in stops {
        let _ = s.send(true);
    }
    for t in tasks {
        t.await.expect("task").expect("agent ends cleanly");
    }
}
