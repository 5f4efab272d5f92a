//! The agent against a real center on 127.0.0.1: every report trigger, the push channel and
//! its long-poll fallback, offline catch-up, credential loss, and the binary itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetcare_agent::source::InventoryFile;
use fleetcare_agent::{Agent, AgentConfig, AgentError, Transport, local};
use fleetcare_server::{Center, ServerConfig};
use fleetcare_testkit::{eventually, within};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(10);

struct Lab {
    center: Option<Center>,
    config: ServerConfig,
    admin: String,
    key: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("center"),
            ..ServerConfig::default()
        };
        Lab::start_with(config, dir).await
    }

    async fn start_with(mut config: ServerConfig, dir: tempfile::TempDir) -> Lab {
        let center = Center::start(&config).await.expect("center starts");
        config.listen = center.addr;
        Lab {
            admin: center.boot.admin_token.clone(),
            key: center.boot.enrollment_key.clone(),
            center: Some(center),
            config,
            http: reqwest::Client::new(),
            dir,
        }
    }

    fn center(&self) -> &Center {
        self.center.as_ref().expect("center running")
    }

    fn url(&self) -> String {
        format!("http://{}", self.config.listen)
    }

    async fn stop_center(&mut self) {
        self.center
            .take()
            .expect("running")
            .stop()
            .await
            .expect("clean stop");
    }

    async fn start_center(&mut self) {
        self.center = Some(Center::start(&self.config).await.expect("restart"));
    }

    /// An agent config and its inventory file, in a directory of their own.
    fn agent(&self, name: &str, device_id: &str) -> (AgentConfig, PathBuf) {
        let base = self.dir.path().join(name);
        std::fs::create_dir_all(&base).expect("mkdir");
        let inventory = base.join("inventory.toml");
        std::fs::write(&inventory, inventory_text(device_id, "F-1", "5.2.1")).expect("write");
        let mut cfg = AgentConfig::new(&self.url(), base.join("data"));
        cfg.enrollment_key = Some(self.key.clone());
        cfg.inventory = Some(inventory.clone());
        cfg.backoff_initial = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(500);
        cfg.request_timeout = Duration::from_secs(5);
        (cfg, inventory)
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.url()))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("center answers");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn device(&self, id: &str) -> Option<Value> {
        let (status, v) = self
            .api("GET", &format!("/api/v1/devices/{id}"), None)
            .await;
        (status == StatusCode::OK).then_some(v)
    }

    async fn history(&self, id: &str) -> Vec<Value> {
        let (_, v) = self
            .api("GET", &format!("/api/v1/devices/{id}/history"), None)
            .await;
        v["events"].as_array().cloned().unwrap_or_default()
    }
}

fn inventory_text(id: &str, fuser_serial: &str, fw: &str) -> String {
    format!(
        r#"[device]
id = "{id}"
model = "acme-mfp-9000"

[operating]
pages_total = 1200

[[unit]]
slot = "controller"
kind = "controller"
model = "ctl-x2"
serial = "CTL-{id}"
hw_revision = "B"
  [[unit.software]]
  product = "ctl-firmware"
  maker = "acme"
  version = "{fw}"

[[unit]]
slot = "fuser"
kind = "fuser"
model = "fus-7"
serial = "{fuser_serial}"
hw_revision = "A"
"#
    )
}

/// Replace a file the way editors do: write another file, rename it over.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the agent stops promptly")
            .expect("agent task")
            .expect("agent ends cleanly");
    }
}

fn spawn(cfg: AgentConfig, inventory: &Path) -> Running {
    let (stop, shutdown) = watch::channel(false);
    let agent = Agent::new(cfg, InventoryFile::new(inventory));
    Running {
        stop,
        task: tokio::spawn(agent.run(shutdown)),
    }
}

async fn online_with(lab: &Lab, id: &str, trigger: &str) -> Value {
    eventually(
        &format!("{id} online with a {trigger} report"),
        PATIENCE,
        || async {
            lab.device(id)
                .await
                .filter(|d| d["online"] == true && d["last_report"]["trigger"] == trigger)
        },
    )
    .await
}

#[tokio::test]
async fn connect_change_and_request_reports() {
    let lab = Lab::start().await;
    let (cfg, inventory) = lab.agent("a", "DEV-1");
    let data_dir = cfg.data_dir.clone();
    let agent = spawn(cfg, &inventory);

    let d = online_with(&lab, "DEV-1", "connect").await;
    assert_eq!(d["units"].as_array().map(Vec::len), Some(2));
    assert_eq!(d["operating"]["pages_total"], 1200.0);

    // A unit replaced in the inventory reaches the center's history within 2 seconds.
    let edited = Instant::now();
    rewrite(&inventory, &inventory_text("DEV-1", "F-2", "5.2.1"));
    let replaced = within(
        "fuser replacement in history",
        Duration::from_secs(2),
        || async {
            lab.history("DEV-1")
                .await
                .into_iter()
                .find(|e| e["change"]["kind"] == "unit_replaced")
        },
    )
    .await;
    eprintln!("inventory edit to history: {:?}", edited.elapsed());
    assert_eq!(replaced["trigger"], "change");
    assert_eq!(replaced["change"]["slot"], "fuser");
    assert_eq!(replaced["change"]["old"]["serial"], "F-1");
    assert_eq!(replaced["change"]["new"]["serial"], "F-2");

    // A requested report is stored within a second; the center waits for it.
    let asked = Instant::now();
    let (status, answer) = lab
        .api(
            "POST",
            "/api/v1/devices/DEV-1/request-report?wait_s=5",
            None,
        )
        .await;
    let took = asked.elapsed();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["via"], "push");
    assert_eq!(answer["report"]["trigger"], "request", "{answer}");
    assert!(
        took < Duration::from_secs(1),
        "request-report took {took:?}"
    );
    eprintln!("request-report round trip: {took:?}");

    // The center's interval reaches the agent over the push channel and is kept.
    let (status, _) = lab
        .api(
            "PUT",
            "/api/v1/devices/DEV-1/report-interval",
            Some(json!({"seconds": 600})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually(
        "the agent keeps the center's interval",
        PATIENCE,
        || async {
            local::view(&data_dir)
                .ok()
                .filter(|v| v.state.center_interval_s == Some(600))
        },
    )
    .await;

    agent.stop().await;
    eventually("offline once the agent stopped", PATIENCE, || async {
        lab.device("DEV-1").await.filter(|d| d["online"] == false)
    })
    .await;
}

#[tokio::test]
async fn periodic_reports_follow_the_interval() {
    let lab = Lab::start().await;
    let (mut cfg, inventory) = lab.agent("a", "PER-1");
    cfg.report_interval = Duration::from_secs(1);
    let agent = spawn(cfg, &inventory);
    let d = eventually("a periodic report", PATIENCE, || async {
        lab.device("PER-1")
            .await
            .filter(|d| d["last_report"]["trigger"] == "periodic")
    })
    .await;
    assert!(
        d["last_report"]["seq"].as_u64().expect("seq") >= 2,
        "after the connect report"
    );
    assert!(
        lab.history("PER-1").await.len() == 2,
        "no change, no history beyond the first report"
    );
    agent.stop().await;
}

#[tokio::test]
async fn offline_agent_catches_up_in_order() {
    let mut lab = Lab::start().await;
    let (cfg, inventory) = lab.agent("a", "OFF-1");
    let data_dir = cfg.data_dir.clone();
    let agent = spawn(cfg, &inventory);
    online_with(&lab, "OFF-1", "connect").await;

    lab.stop_center().await;
    for (n, serial) in ["F-2", "F-3"].into_iter().enumerate() {
        rewrite(&inventory, &inventory_text("OFF-1", serial, "5.2.1"));
        eventually("the change is queued while offline", PATIENCE, || async {
            local::view(&data_dir).ok().filter(|v| v.outbox == n + 1)
        })
        .await;
    }
    lab.start_center().await;
    eventually("the outbox drains", PATIENCE, || async {
        local::view(&data_dir).ok().filter(|v| v.outbox == 0)
    })
    .await;
    let replaced: Vec<(String, String, String)> = lab
        .history("OFF-1")
        .await
        .into_iter()
        .filter(|e| e["change"]["kind"] == "unit_replaced")
        .map(|e| {
            (
                e["trigger"].as_str().unwrap_or_default().to_owned(),
                e["change"]["old"]["serial"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                e["change"]["new"]["serial"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        replaced,
        vec![
            ("change".to_owned(), "F-1".to_owned(), "F-2".to_owned()),
            ("change".to_owned(), "F-2".to_owned(), "F-3".to_owned()),
        ],
        "both offline changes, in order, with their trigger"
    );
    online_with(&lab, "OFF-1", "connect").await;
    agent.stop().await;
}

#[tokio::test]
async fn long_poll_transport_carries_commands() {
    let lab = Lab::start().await;
    let (mut cfg, inventory) = lab.agent("a", "POLL-1");
    cfg.transport = Transport::Poll;
    cfg.poll_wait = Duration::from_secs(5);
    let agent = spawn(cfg, &inventory);
    online_with(&lab, "POLL-1", "connect").await;
    let (status, answer) = lab
        .api(
            "POST",
            "/api/v1/devices/POLL-1/request-report?wait_s=10",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["via"], "poll");
    assert_eq!(answer["report"]["trigger"], "request");
    agent.stop().await;
}

#[tokio::test]
async fn auto_transport_falls_back_to_long_polling_behind_a_proxy_without_upgrades() {
    // A center whose push endpoint is hidden, as behind a proxy that does not pass upgrades.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fleetcare_store::Store::open_sqlite(dir.path())
        .await
        .expect("store");
    let boot = fleetcare_server::bootstrap::run(&store, dir.path(), "default", 1)
        .await
        .expect("bootstrap");
    let (state, _stop) = fleetcare_server::AppState::new(
        store,
        &ServerConfig::default(),
        Arc::new(fleetcare_core::clock::SystemClock),
    );
    let app = fleetcare_server::app(state).layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            if req.uri().path() == "/device/v1/push" {
                return axum::response::IntoResponse::into_response(StatusCode::NOT_FOUND);
            }
            next.run(req).await
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let base = dir.path().join("agent");
    std::fs::create_dir_all(&base).expect("mkdir");
    let inventory = base.join("inventory.toml");
    std::fs::write(&inventory, inventory_text("AUTO-1", "F-1", "1.0")).expect("write");
    let mut cfg = AgentConfig::new(&url, base.join("data"));
    cfg.enrollment_key = Some(boot.enrollment_key.clone());
    cfg.backoff_initial = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.poll_wait = Duration::from_secs(5);
    assert_eq!(cfg.transport, Transport::Auto);
    let agent = spawn(cfg, &inventory);
    let http = reqwest::Client::new();
    let answer: Value = eventually("a report requested over long polling", PATIENCE, || {
        let (http, url, token) = (http.clone(), url.clone(), boot.admin_token.clone());
        async move {
            let resp = http
                .post(format!(
                    "{url}/api/v1/devices/AUTO-1/request-report?wait_s=5"
                ))
                .bearer_auth(token)
                .send()
                .await
                .ok()?;
            let v: Value = resp.json().await.ok()?;
            (v["via"] == "poll" && v["report"]["trigger"] == "request").then_some(v)
        }
    })
    .await;
    assert_eq!(answer["via"], "poll");
    agent.stop().await;
}

#[tokio::test]
async fn a_revoked_device_enrolls_again_only_when_an_operator_allows_it() {
    let lab = Lab::start().await;
    let (cfg, inventory) = lab.agent("a", "REV-1");
    let data_dir = cfg.data_dir.clone();
    let agent = spawn(cfg, &inventory);
    online_with(&lab, "REV-1", "connect").await;
    let first = local::view(&data_dir)
        .expect("view")
        .credential
        .expect("enrolled");

    let (status, _) = lab.api("POST", "/api/v1/devices/REV-1/revoke", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually(
        "a revoked device's push channel is closed",
        PATIENCE,
        || async { lab.device("REV-1").await.filter(|d| d["online"] == false) },
    )
    .await;
    rewrite(&inventory, &inventory_text("REV-1", "F-2", "5.2.1"));
    eventually("the agent hears that it is refused", PATIENCE, || async {
        local::view(&data_dir)
            .ok()
            .and_then(|v| v.status)
            .filter(|s| {
                s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("already_enrolled") || e.contains("401"))
            })
    })
    .await;
    assert!(
        lab.history("REV-1")
            .await
            .iter()
            .all(|e| e["change"]["kind"] != "unit_replaced"),
        "nothing from a revoked credential is stored"
    );

    let (status, _) = lab
        .api(
            "POST",
            "/api/v1/devices/REV-1/allow-reenroll",
            Some(json!({"valid_s": 600})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually(
        "the queued change arrives after re-enrollment",
        PATIENCE,
        || async {
            lab.history("REV-1")
                .await
                .into_iter()
                .find(|e| e["change"]["kind"] == "unit_replaced")
        },
    )
    .await;
    let second = local::view(&data_dir)
        .expect("view")
        .credential
        .expect("enrolled");
    assert_ne!(first.device_token, second.device_token, "a new credential");
    agent.stop().await;
}

#[tokio::test]
async fn restarts_continue_the_sequence_and_store_each_report_once() {
    let lab = Lab::start().await;
    let (cfg, inventory) = lab.agent("a", "RST-1");
    let mut last = 0u64;
    for _ in 1..=3u64 {
        let agent = spawn(cfg.clone(), &inventory);
        let d = eventually("connected again", PATIENCE, || async {
            lab.device("RST-1")
                .await
                .filter(|d| d["online"] == true && d["last_report"]["seq"].as_u64() > Some(last))
        })
        .await;
        last = d["last_report"]["seq"].as_u64().expect("seq");
        agent.stop().await;
    }
    let key = fleetcare_store::DeviceKey {
        tenant: lab.center().boot.tenant,
        device_id: fleetcare_core::DeviceId::parse("RST-1").expect("id"),
    };
    let seqs = lab
        .center()
        .state
        .store
        .stored_seqs(&key)
        .await
        .expect("seqs");
    // Numbers are reserved a block at a time, so a restart may skip some: never one twice.
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]) && seqs.first() == Some(&1),
        "increasing from 1, no repeats: {seqs:?}"
    );
    assert!(seqs.len() >= 3);
    assert_eq!(
        lab.history("RST-1").await.len(),
        2,
        "restarts change no structure"
    );
}

#[tokio::test]
async fn a_data_dir_belongs_to_one_device() {
    let lab = Lab::start().await;
    let (cfg, inventory) = lab.agent("a", "ONE-1");
    let agent = spawn(cfg.clone(), &inventory);
    online_with(&lab, "ONE-1", "connect").await;
    agent.stop().await;
    std::fs::write(&inventory, inventory_text("ANOTHER-2", "F-1", "1")).expect("write");
    let (_stop, shutdown) = watch::channel(false);
    let err = Agent::new(cfg, InventoryFile::new(&inventory))
        .run(shutdown)
        .await
        .expect_err("refused");
    assert!(matches!(err, AgentError::IdentityChanged { .. }), "{err}");
    assert!(lab.device("ANOTHER-2").await.is_none());
}

#[tokio::test]
async fn the_agent_binary_runs_reports_and_shows_its_status() {
    let lab = Lab::start().await;
    let base = lab.dir.path().join("bin");
    std::fs::create_dir_all(&base).expect("mkdir");
    std::fs::write(
        base.join("inventory.toml"),
        inventory_text("BIN-1", "F-1", "5.2.1"),
    )
    .expect("write");
    std::fs::write(base.join("enrollment-key"), &lab.key).expect("write");
    let config = base.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "center_url = \"{}\"\nenrollment_key_file = \"enrollment-key\"\ndata_dir = \"data\"\ninventory = \"inventory.toml\"\n",
            lab.url()
        ),
    )
    .expect("write");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .env("FLEETCARE_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("agent binary starts");
    online_with(&lab, "BIN-1", "connect").await;

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["device_id"], "BIN-1");
    let pid = child.id().expect("pid");
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"], pid);
    assert_eq!(status["last_run"]["channel"], "push");
    assert_eq!(status["center"]["units"].as_array().map(Vec::len), Some(2));
    assert_eq!(status["center"]["online"], true);

    // SIGTERM: a clean, prompt exit.
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let exit = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");

    // Gone: `status` says so, and that what it shows is from then.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("status runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("not running (it was pid {pid}")),
        "{text}"
    );
    assert!(!text.contains("channel "), "{text}");
}

/// An agent that cannot reach its center says why in its log at the default level, with
/// the next try, and hints when the configured address has a path.
#[tokio::test]
async fn an_agent_that_cannot_reach_its_center_says_why() {
    let lab = Lab::start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    for (url, expect) in [
        (format!("http://127.0.0.1:{closed}"), "refused"),
        (format!("{}/ui/", lab.url()), "center_url has a path, /ui"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        std::fs::write(
            base.join("inventory.toml"),
            inventory_text("LOST-1", "F-1", "5.2.1"),
        )
        .expect("write");
        std::fs::write(base.join("enrollment-key"), &lab.key).expect("write");
        let config = base.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "center_url = \"{url}\"\nenrollment_key_file = \"enrollment-key\"\ndata_dir = \"data\"\ninventory = \"inventory.toml\"\n"
            ),
        )
        .expect("write");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("FLEETCARE_LOG")
            .env_remove("RUST_LOG")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("agent binary starts");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let said = tokio::time::timeout(PATIENCE, async {
            let mut seen = String::new();
            while let Ok(Some(l)) = lines.next_line().await {
                seen.push_str(&l);
                seen.push('\n');
                let failure =
                    l.contains("failed; trying again") || l.contains("enrollment refused");
                if (l.contains("WARN") || l.contains("ERROR")) && failure {
                    return seen;
                }
            }
            panic!("the agent ended without saying why: {seen}");
        })
        .await
        .unwrap_or_else(|_| panic!("{url}: no warning with the cause"));
        assert!(said.to_lowercase().contains(expect), "{url}: {said}");
        assert!(
            !said.contains('\u{1b}'),
            "no colour codes in a pipe: {said}"
        );
    }
}

fn sample_catalog() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/catalog.toml"
    ))
    .expect("examples/catalog.toml")
}

/// An acme-mfp-9000 with a booklet finisher beside a dup-3 duplexer (they do not work
/// together), and firmware that needs a newer engine firmware.
fn incompatible_inventory(id: &str) -> String {
    format!(
        r#"[device]
id = "{id}"
model = "acme-mfp-9000"

[[unit]]
slot = "controller"
kind = "controller"
model = "ctl-x2"
serial = "C-{id}"
hw_revision = "B"
  [[unit.software]]
  product = "ctl-firmware"
  maker = "acme"
  version = "5.3.0"
  [[unit.software]]
  product = "pdl-interpreter"
  maker = "acme"
  version = "3.4"

[[unit]]
slot = "engine"
kind = "engine"
model = "eng-45c"
serial = "E-{id}"
hw_revision = "C"
  [[unit.software]]
  product = "engine-firmware"
  maker = "acme"
  version = "2.7.4"

[[unit]]
slot = "finisher"
kind = "finisher"
model = "fin-booklet-5"
serial = "FB-{id}"
hw_revision = "A"
  [[unit.software]]
  product = "finisher-firmware"
  maker = "nordfin"
  version = "2.0.1"

[[unit]]
slot = "duplexer"
kind = "duplexer"
model = "dup-3"
serial = "D-{id}"
hw_revision = "A"
"#
    )
}

#[tokio::test]
async fn an_incompatible_device_receives_its_job_its_advice_and_a_unit_out_of_service() {
    let lab = Lab::start().await;
    let resp = lab
        .http
        .post(format!("{}/api/v1/catalog", lab.url()))
        .bearer_auth(&lab.admin)
        .body(sample_catalog())
        .send()
        .await
        .expect("catalog load");
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _) = lab
        .api(
            "PUT",
            "/api/v1/compat/policy",
            Some(json!({"plan": "minimal", "fix": "automatic", "out_of_service": true, "job_ttl_s": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (mut cfg, inventory) = lab.agent("x", "INC-1");
    std::fs::write(&inventory, incompatible_inventory("INC-1")).expect("write");
    // A device that can install: a root of trust and A/B units.
    let root = lab.dir.path().join("x").join("root.json");
    std::fs::write(
        &root,
        fleetcare_trust::Root {
            threshold: 1,
            keys: vec![
                fleetcare_trust::KeyPair::from_seed(&[1; 32])
                    .public()
                    .clone(),
            ],
        }
        .to_json(),
    )
    .expect("write");
    cfg.trust_root = Some(root);
    cfg.units_dir = Some(lab.dir.path().join("x").join("units"));
    let data_dir = cfg.data_dir.clone();
    let agent = spawn(cfg, &inventory);

    // The software finding becomes a queued version-change job.
    let job = eventually("a queued job for the device", PATIENCE, || async {
        let (_, v) = lab.api("GET", "/api/v1/jobs?device=INC-1", None).await;
        v["jobs"]
            .as_array()
            .and_then(|j| j.first().cloned())
            .filter(|j| j["state"] == "queued")
    })
    .await;
    assert_eq!(job["steps"][0]["product"], "engine-firmware");
    assert_eq!(job["steps"][0]["to"], "2.8.0-b45");

    // The hardware finding becomes advice, pushed to the device and kept there.
    let notices = eventually("advice reaches the agent", PATIENCE, || async {
        local::view(&data_dir)
            .ok()
            .map(|v| v.notifications)
            .filter(|n| n.iter().any(|n| n.kind == "compat_advice"))
    })
    .await;
    let advice = notices
        .iter()
        .find(|n| n.kind == "compat_advice")
        .expect("advice");
    assert!(
        advice.summary.contains("does not work with"),
        "{}",
        advice.summary
    );
    assert!(!advice.recommendations.is_empty());

    // Policy allows it: an optional unit of the pair is taken out of service, the device
    // reports it so, and the hardware finding closes.
    let taken = eventually("a unit out of service in the history", PATIENCE, || async {
        lab.history("INC-1")
            .await
            .into_iter()
            .find(|e| e["change"]["kind"] == "unit_service_changed")
    })
    .await;
    assert_eq!(taken["change"]["in_service"], false);
    assert_eq!(taken["trigger"], "change");
    let report = eventually("the unit_unit finding closed", PATIENCE, || async {
        let (_, c) = lab.api("GET", "/api/v1/devices/INC-1/compat", None).await;
        c["findings"]
            .as_array()
            .filter(|f| f.iter().all(|f| f["kind"] != "unit_unit"))
            .map(|_| c.clone())
    })
    .await;
    assert_eq!(
        report["state"], "software",
        "the software finding remains until the job runs"
    );
    let view = local::view(&data_dir).expect("view");
    assert_eq!(view.state.out_of_service.len(), 1);

    // The status command shows what the center said.
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
        .args(["status", "--config"])
        .arg(write_config(&lab, "x", &data_dir, &inventory))
        .output()
        .await
        .expect("status runs");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(text.contains("out of service  "), "{text}");
    assert!(text.contains("compatibility software"), "{text}");
    assert!(text.contains("notification  #"), "{text}");
    agent.stop().await;
}

/// A config file for the agent binary over an existing data dir and inventory.
fn write_config(lab: &Lab, name: &str, data_dir: &Path, inventory: &Path) -> PathBuf {
    let path = lab.dir.path().join(name).join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "center_url = \"{}\"\nenrollment_key = \"{}\"\ndata_dir = \"{}\"\ninventory = \"{}\"\n",
            lab.url(),
            lab.key,
            data_dir.display(),
            inventory.display()
        ),
    )
    .expect("write");
    path
}

#[tokio::test]
async fn a_command_this_agent_does_not_know_is_skipped_not_the_whole_poll_answer() {
    let app = axum::Router::new().route(
        "/device/v1/poll",
        axum::routing::get(|| async {
            axum::Json(json!({"commands": [
                {"type": "something_from_the_future", "x": 1},
                {"type": "request_report"}
            ]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = fleetcare_agent::client::CenterClient::new(&url, Duration::from_secs(5));
    let got = client
        .poll("token", Duration::ZERO)
        .await
        .expect("the answer is usable");
    assert_eq!(got, vec![fleetcare_wire::device::Command::RequestReport]);
}

#[tokio::test]
async fn report_and_send_errors_on_the_device_return_once_the_center_acknowledged() {
    let mut lab = Lab::start().await;
    let base = lab.dir.path().join("now");
    std::fs::create_dir_all(&base).expect("mkdir");
    std::fs::write(
        base.join("inventory.toml"),
        inventory_text("NOW-1", "F-1", "5.2.1"),
    )
    .expect("write");
    let config = base.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "center_url = \"{}\"\nenrollment_key = \"{}\"\ndata_dir = \"data\"\ninventory = \"inventory.toml\"\n\
             errors_interval_s = 86400\nerrors_batch_events = 1000\nerrors_immediate_severity = \"never\"\n\
             backoff_initial_ms = 50\nbackoff_max_s = 1\nrequest_timeout_s = 2\n",
            lab.url(),
            lab.key
        ),
    )
    .expect("write");
    let agent_bin = || tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"));
    let run = |args: &'static [&'static str]| {
        let config = config.clone();
        async move {
            agent_bin()
                .args(args)
                .arg("--config")
                .arg(&config)
                .output()
                .await
                .expect("the command runs")
        }
    };

    // Not running: the command says so.
    let out = run(&["report"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the agent is not running"), "{err}");

    let mut child = agent_bin()
        .args(["run", "--config"])
        .arg(&config)
        .env("FLEETCARE_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("agent binary starts");
    online_with(&lab, "NOW-1", "connect").await;

    // A report now: acknowledged, and the center's last report is it.
    let out = run(&["report"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("(manual) acknowledged by the center"),
        "{text}"
    );
    let d = lab.device("NOW-1").await.expect("device");
    assert_eq!(d["last_report"]["trigger"], "manual", "{d}");
    let seq = text
        .split('#')
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the report's number");
    assert_eq!(d["last_report"]["seq"], seq, "{d}");

    // Two events logged (no trigger of the agent's own would send them for a day), then the
    // error log now: both acknowledged, stored with trigger `manual`.
    for code in ["J-100", "J-101"] {
        let out = agent_bin()
            .args([
                "log",
                "--code",
                code,
                "--unit",
                "fuser",
                "--severity",
                "warning",
                "--config",
            ])
            .arg(&config)
            .output()
            .await
            .expect("log runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&["send-errors", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("the local API's answer");
    assert_eq!(answer, json!({"ok": true, "sent": 2}));
    let (_, errs) = lab.api("GET", "/api/v1/devices/NOW-1/errors", None).await;
    let events = errs["events"].as_array().expect("events");
    assert_eq!(events.len(), 2, "{errs}");
    assert!(events.iter().all(|e| e["trigger"] == "manual"), "{errs}");

    // The center is down: the report is kept, and the command says it was not acknowledged.
    lab.stop_center().await;
    let out = run(&["report"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not sent") && err.contains("queued, not yet acknowledged"),
        "{err}"
    );
    lab.start_center().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
}
