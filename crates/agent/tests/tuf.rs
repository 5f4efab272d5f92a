//! The agent as a TUF client, with a real center on 127.0.0.1: a device provisioned with
//! today's unsigned root takes the one signed step onto the chain and installs a release a
//! maker signed; a root rotation reaches it through the next job; and the agent's own client
//! refuses what a mirror in front of the center tampers with (a freeze, a snapshot rollback,
//! a maker's role signed by another maker's key).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use fleetcare_agent::client::CenterClient;
use fleetcare_agent::source::InventoryFile;
use fleetcare_agent::update::tuf::{Anchor, refresh};
use fleetcare_agent::{Agent, AgentConfig};
use fleetcare_server::{Center, ServerConfig};
use fleetcare_testkit::eventually;
use fleetcare_testkit::mirror::Mirror;
use fleetcare_trust::tuf::{
    self, Common, DelegatedRole, Delegations, MetaFile, ReleaseCustom, RoleKeys, RootRole,
    TargetFile, TargetsRole, TimestampRole, TufKey,
};
use fleetcare_trust::{KeyPair, Root, SecretKeyFile, Target};
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

fn key(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32])
}

fn in_days(d: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(d * 86_400)
}

struct Lab {
    center: Center,
    admin: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    online: (TufKey, TufKey),
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("center"),
            ..ServerConfig::default()
        };
        let center = Center::start(&config).await.expect("center starts");
        let http = reqwest::Client::new();
        let admin = center.boot.admin_token.clone();
        let online: Value = http
            .get(format!("{}/api/v1/tuf/online-keys", center.url()))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("online keys")
            .json()
            .await
            .expect("json");
        let k = |r: &str| serde_json::from_value(online[r]["key"].clone()).expect("a key");
        Lab {
            online: (k("snapshot"), k("timestamp")),
            center,
            admin,
            http,
            dir,
        }
    }

    /// Upload a release's file (the release is published already).
    async fn upload(&self, bytes: &[u8]) {
        let put = self
            .http
            .put(format!(
                "{}/api/v1/artifacts/{}",
                self.center.url(),
                sha(bytes)
            ))
            .bearer_auth(&self.admin)
            .body(bytes.to_vec())
            .send()
            .await
            .expect("upload");
        assert!(put.status().is_success(), "{}", put.status());
    }

    /// An operator GET's JSON, if it answered with some.
    async fn get(&self, path: &str) -> Option<Value> {
        self.http
            .get(format!("{}{path}", self.center.url()))
            .bearer_auth(&self.admin)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }

    async fn post(&self, path: &str, body: String) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.center.url()))
            .bearer_auth(&self.admin)
            .body(body)
            .send()
            .await
            .expect("center answers");
        let s = resp.status();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    /// Root `version` with root keys `roots` (threshold 1), targets key 3, the center's
    /// online keys; signed by `signers`.
    fn root(&self, version: u64, roots: &[&KeyPair], signers: &[&KeyPair]) -> String {
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        let mut role = |name: &str, ks: Vec<TufKey>| {
            roles.insert(
                name.to_owned(),
                RoleKeys {
                    keyids: ks.iter().map(TufKey::keyid).collect(),
                    threshold: 1,
                },
            );
            for k in ks {
                keys.insert(k.keyid(), k);
            }
        };
        role("root", roots.iter().map(|k| k.public().to_tuf()).collect());
        role("targets", vec![key(3).public().to_tuf()]);
        role("snapshot", vec![self.online.0.clone()]);
        role("timestamp", vec![self.online.1.clone()]);
        tuf::sign(
            &RootRole {
                common: Common::new("root", version, in_days(365)),
                consistent_snapshot: true,
                keys,
                roles,
            },
            signers,
        )
        .to_json()
    }

    /// Targets version 1: acme to key 6, zenith to key 7.
    fn targets(&self) -> String {
        let d = |name: &str, k: &KeyPair| DelegatedRole {
            name: name.into(),
            keyids: vec![k.public().to_tuf().keyid()],
            threshold: 1,
            terminating: true,
            paths: Some(tuf::maker_paths(name)),
            path_hash_prefixes: None,
        };
        tuf::sign(
            &TargetsRole {
                common: Common::new("targets", 1, in_days(365)),
                targets: BTreeMap::new(),
                delegations: Some(Delegations {
                    keys: [key(6), key(7)]
                        .iter()
                        .map(|k| (k.public().to_tuf().keyid(), k.public().to_tuf()))
                        .collect(),
                    roles: vec![d("acme", &key(6)), d("zenith", &key(7))],
                }),
            },
            &[&key(3)],
        )
        .to_json()
    }
}

/// A maker's role listing `releases` of `(product, version, counter, bytes)`, one file each.
fn maker_role(
    maker: &str,
    version: u64,
    releases: &[(&str, &str, u64, &[u8])],
    signer: &KeyPair,
) -> String {
    let targets = releases
        .iter()
        .map(|(product, v, counter, bytes)| {
            (
                format!("{maker}/{product}/{v}/ctl.bin"),
                TargetFile {
                    length: bytes.len() as u64,
                    hashes: BTreeMap::from([("sha256".to_owned(), sha(bytes))]),
                    custom: Some(
                        serde_json::to_value(ReleaseCustom {
                            product: (*product).into(),
                            maker: maker.into(),
                            version: (*v).into(),
                            counter: *counter,
                            targets: vec![Target {
                                unit_model: "ctl-x2".into(),
                                hw_revisions: vec!["B".into()],
                            }],
                        })
                        .expect("json"),
                    ),
                },
            )
        })
        .collect();
    tuf::sign(
        &TargetsRole {
            common: Common::new("targets", version, in_days(90)),
            targets,
            delegations: None,
        },
        &[signer],
    )
    .to_json()
}

async fn job(lab: &Lab, device: &str, version: &str) -> Value {
    let (s, job) = lab
        .post(
            "/api/v1/jobs",
            json!({"device_id": device, "steps": [{"slot": "controller",
                "product": "ctl-firmware", "version": version, "action": "install"}]})
            .to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{job}");
    let id = job["id"].as_u64().expect("id");
    eventually("the job over", PATIENCE, || async {
        let j = lab.get(&format!("/api/v1/jobs/{id}")).await?;
        matches!(
            j["state"].as_str(),
            Some("succeeded" | "failed" | "rolled_back")
        )
        .then_some(j)
    })
    .await
}

/// Start a device `id` with A/B units, provisioned with `trust_root`; wait for its report.
async fn device(
    lab: &Lab,
    id: &str,
    trust_root: &[u8],
) -> (
    std::path::PathBuf,
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), fleetcare_agent::AgentError>>,
) {
    let base = lab.dir.path().join(id);
    std::fs::create_dir_all(&base).expect("mkdir");
    let inv = base.join("inventory.toml");
    std::fs::write(&inv, common::inventory(id)).expect("write");
    let root = base.join("root.json");
    std::fs::write(&root, trust_root).expect("write");
    let mut cfg = AgentConfig::new(&lab.center.url(), base.join("data"));
    cfg.enrollment_key = Some(lab.center.boot.enrollment_key.clone());
    cfg.inventory = Some(inv.clone());
    cfg.trust_root = Some(root);
    cfg.units_dir = Some(base.join("units"));
    cfg.backoff_initial = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(500);
    let (stop, shutdown) = watch::channel(false);
    let agent = tokio::spawn(Agent::new(cfg, InventoryFile::new(&inv)).run(shutdown));
    eventually("the device reported", PATIENCE, || async {
        let d = lab.get(&format!("/api/v1/devices/{id}")).await?;
        (d["online"] == true && d["units"].as_array().is_some_and(|u| !u.is_empty())).then_some(())
    })
    .await;
    (base, stop, agent)
}

fn root_version(path: &std::path::Path) -> u64 {
    let env = tuf::parse_envelope(&std::fs::read(path).expect("the trusted root")).expect("env");
    tuf::unverified::<RootRole>(&env)
        .expect("root")
        .common
        .version
}

#[tokio::test]
async fn an_unsigned_root_steps_onto_the_chain_a_maker_signed_release_installs_and_a_rotation_follows()
 {
    let lab = Lab::start().await;
    let root1 = lab.root(1, &[&key(1)], &[&key(1)]);
    assert_eq!(lab.post("/api/v1/tuf/root", root1).await.0, StatusCode::OK);
    let (s, r) = lab.post("/api/v1/tuf/targets", lab.targets()).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let v1: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (s, r) = lab
        .post(
            "/api/v1/tuf/makers/acme",
            maker_role("acme", 1, &[("ctl-firmware", "5.3.0", 3, &v1)], &key(6)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["releases"], json!(["ctl-firmware 5.3.0"]), "{r}");
    lab.upload(&v1).await;

    // The device was provisioned in the key-list era: an unsigned root with key 1.
    let unsigned = Root {
        threshold: 1,
        keys: vec![key(1).public().clone()],
    }
    .to_json();
    let (base, stop, agent) = device(&lab, "TUF-9", unsigned.as_bytes()).await;

    let done = job(&lab, "TUF-9", "5.3.0").await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        std::fs::read(base.join("units/controller/b/ctl-firmware/ctl.bin")).expect("installed"),
        v1
    );
    let trusted = base.join("data/update/tuf/root.json");
    assert_eq!(root_version(&trusted), 1, "the one signed step");

    // Root 2 replaces root key 1 with key 8 (signed by both); the next job brings it.
    let root2 = lab.root(2, &[&key(8)], &[&key(1), &key(8)]);
    let (s, r) = lab.post("/api/v1/tuf/root", root2.clone()).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // A root signed by the new key alone is refused at the desk.
    let bad3 = lab.root(3, &[&key(9)], &[&key(9)]);
    assert_eq!(
        lab.post("/api/v1/tuf/root", bad3).await.0,
        StatusCode::BAD_REQUEST
    );
    let v2: Vec<u8> = vec![5u8; 30_000];
    let (s, r) = lab
        .post(
            "/api/v1/tuf/makers/acme",
            maker_role(
                "acme",
                2,
                &[
                    ("ctl-firmware", "5.3.0", 3, &v1),
                    ("ctl-firmware", "5.4.0", 4, &v2),
                ],
                &key(6),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    lab.upload(&v2).await;
    let done = job(&lab, "TUF-9", "5.4.0").await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(root_version(&trusted), 2, "the rotation reached the device");
    let _ = stop.send(true);
    agent.await.expect("task").expect("agent ends cleanly");

    // A device provisioned with a signed root (version 2) installs through TUF too.
    let (base, stop, agent) = device(&lab, "TUF-10", root2.as_bytes()).await;
    let done = job(&lab, "TUF-10", "5.4.0").await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        std::fs::read(base.join("units/controller/b/ctl-firmware/ctl.bin")).expect("installed"),
        v2
    );
    let _ = stop.send(true);
    agent.await.expect("task").expect("agent ends cleanly");
}

/// The agent's TUF client as one device runs it: its connection (through the mirror), its
/// credential and its provisioned root.
struct Client {
    http: CenterClient,
    token: String,
    anchor: Anchor,
}

impl Client {
    /// One refresh for one file, with the device's metadata kept in `state`.
    async fn refresh(
        &self,
        state: &std::path::Path,
        path: &str,
    ) -> Result<fleetcare_agent::update::tuf::Refreshed, fleetcare_agent::update::InstallError>
    {
        refresh(
            &self.http,
            &self.token,
            state,
            &self.anchor,
            &[path.to_owned()],
            SystemTime::now(),
        )
        .await
    }
}

#[tokio::test]
async fn the_agents_client_refuses_a_freeze_a_snapshot_rollback_and_a_cross_maker_signature() {
    let lab = Lab::start().await;
    let root1 = lab.root(1, &[&key(1)], &[&key(1)]);
    assert_eq!(
        lab.post("/api/v1/tuf/root", root1.clone()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        lab.post("/api/v1/tuf/targets", lab.targets()).await.0,
        StatusCode::OK
    );
    let fw = b"acme firmware".as_slice();
    let fin = b"zenith firmware".as_slice();
    for (maker, k, product, bytes) in [
        ("acme", key(6), "ctl-firmware", fw),
        ("zenith", key(7), "fin-firmware", fin),
    ] {
        let (s, r) = lab
            .post(
                &format!("/api/v1/tuf/makers/{maker}"),
                maker_role(maker, 1, &[(product, "1.0.0", 1, bytes)], &k),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    let token = fleetcare_agent::client::CenterClient::new(&lab.center.url(), PATIENCE)
        .enroll(&fleetcare_wire::device::EnrollRequest {
            enrollment_key: lab.center.boot.enrollment_key.clone(),
            device_id: "TUF-M".into(),
            model: "acme-mfp-9000".into(),
            current_credential: None,
        })
        .await
        .expect("enrolled")
        .device_token;
    let mirror = Mirror::start(lab.center.url()).await;
    let device = Client {
        http: CenterClient::new(&mirror.url, PATIENCE),
        token,
        anchor: Anchor::Signed(root1.into_bytes()),
    };
    let path = "acme/ctl-firmware/1.0.0/ctl.bin".to_owned();
    let state = lab.dir.path().join("state");
    let now = SystemTime::now();
    let r = device
        .refresh(&state, &path)
        .await
        .expect("a clean refresh");
    assert_eq!(r.files[&path].role, "acme");

    let store = &lab.center.state.store;
    let tenant = store.ensure_tenant("default", 0).await.expect("tenant");
    let ts_key = SecretKeyFile::parse(
        store
            .tuf_online_key(tenant, "timestamp", "unused", 0)
            .await
            .expect("key")
            .as_bytes(),
        "timestamp",
    )
    .expect("the online timestamp key");
    let timestamp = |version: u64, snapshot: u64, expires: SystemTime| {
        tuf::sign(
            &TimestampRole {
                common: Common::new("timestamp", version, expires),
                meta: BTreeMap::from([("snapshot.json".to_owned(), MetaFile::version(snapshot))]),
            },
            &[&ts_key],
        )
        .to_json()
        .into_bytes()
    };
    let serve = |file: &str, bytes: Vec<u8>| {
        mirror.clear();
        mirror.serve(&format!("/device/v1/tuf/metadata/{file}"), bytes);
    };

    // Mix-and-match: acme's role of another moment (version 1, validly signed by acme) where
    // the snapshot names version 2.
    let two = b"acme firmware 2".as_slice();
    let (s, r) = lab
        .post(
            "/api/v1/tuf/makers/acme",
            maker_role(
                "acme",
                2,
                &[
                    ("ctl-firmware", "1.0.0", 1, fw),
                    ("ctl-firmware", "2.0.0", 2, two),
                ],
                &key(6),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    // The device refreshes cleanly (and trusts the newest snapshot from now on).
    device
        .refresh(&state, &path)
        .await
        .expect("a clean refresh after acme's second version");
    let ts = store
        .tuf(tenant, "timestamp", None)
        .await
        .expect("ts")
        .expect("ts");
    let snap = store
        .tuf(tenant, "snapshot", None)
        .await
        .expect("s")
        .expect("s");
    let acme_v1 = store
        .tuf(tenant, "acme", Some(1))
        .await
        .expect("read")
        .expect("acme 1");
    serve("2.acme.json", acme_v1.envelope.into_bytes());
    let e = device
        .refresh(&lab.dir.path().join("mixed"), &path)
        .await
        .expect_err("mix-and-match");
    assert!(
        e.reason == "signature" && e.detail.contains("mix-and-match"),
        "{e:?}"
    );

    // A freeze, to a device that never saw a newer timestamp.
    serve(
        "timestamp.json",
        timestamp(
            ts.version + 1,
            snap.version,
            now - Duration::from_secs(3600),
        ),
    );
    let e = device
        .refresh(&lab.dir.path().join("fresh"), &path)
        .await
        .expect_err("a freeze");
    assert_eq!(e.reason, "expired", "{e:?}");

    // A newer timestamp naming an older snapshot than the device trusts.
    serve(
        "timestamp.json",
        timestamp(ts.version + 1, snap.version - 1, in_days(1)),
    );
    let e = device.refresh(&state, &path).await.expect_err("a rollback");
    assert_eq!(e.reason, "rollback", "{e:?}");

    // zenith's role, the version the snapshot names, signed by acme's key.
    let version = store
        .tuf(tenant, "zenith", None)
        .await
        .expect("read")
        .expect("zenith's role")
        .version;
    let zpath = "zenith/fin-firmware/1.0.0/ctl.bin".to_owned();
    serve(
        &format!("{version}.zenith.json"),
        maker_role(
            "zenith",
            version,
            &[("fin-firmware", "1.0.0", 1, fin)],
            &key(6),
        )
        .into_bytes(),
    );
    let e = device
        .refresh(&state, &zpath)
        .await
        .expect_err("cross-maker");
    assert_eq!(e.reason, "signature", "{e:?}");
    // And with nothing tampered, the same device refreshes fine.
    mirror.clear();
    device.refresh(&state, &path).await.expect("clean again");
}
