//! What the center tells a device reaches it wherever the device is: advice and a unit taken
//! out of service while the device is offline arrive once it connects, exactly once; and
//! when the device is connected to another center instance than the one that judged it,
//! they arrive at once through that instance.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetcare_agent::source::InventoryFile;
use fleetcare_agent::{Agent, AgentConfig, AgentError, local};
use fleetcare_server::{Center, ServerConfig};
use fleetcare_testkit::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(15);

/// A catalog where the paper feeder zp-2 fits the zeta-mfp-1 or not (`fits`); a feeder is
/// optional, so one that does not fit may be taken out of service.
fn catalog(fits: bool) -> String {
    let zp2 = if fits {
        r#"["zeta-mfp-1", "zeta-other"]"#
    } else {
        r#"["zeta-other"]"#
    };
    format!(
        r#"
[[device_model]]
name = "zeta-mfp-1"
maker = "zeta"
optional_kinds = ["paper-feeder"]

[[device_model]]
name = "zeta-other"
maker = "zeta"
optional_kinds = ["paper-feeder"]

[[unit_model]]
name = "zc-1"
kind = "controller"
accepted_by = ["zeta-mfp-1", "zeta-other"]

[[unit_model]]
name = "zp-1"
kind = "paper-feeder"
accepted_by = ["zeta-mfp-1", "zeta-other"]

[[unit_model]]
name = "zp-2"
kind = "paper-feeder"
accepted_by = {zp2}
"#
    )
}

fn inventory(id: &str) -> String {
    format!(
        r#"[device]
id = "{id}"
model = "zeta-mfp-1"

[[unit]]
slot = "controller"
kind = "controller"
model = "zc-1"
serial = "C-{id}"

[[unit]]
slot = "tray-1"
kind = "paper-feeder"
model = "zp-2"
serial = "T1-{id}"

[[unit]]
slot = "tray-2"
kind = "paper-feeder"
model = "zp-1"
serial = "T2-{id}"
"#
    )
}

struct Api {
    url: String,
    admin: String,
    http: reqwest::Client,
}

impl Api {
    fn of(center: &Center) -> Api {
        Api {
            url: format!("http://{}", center.addr),
            admin: center.boot.admin_token.clone(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.url))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("center answers");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn load(&self, text: String) {
        let resp = self
            .http
            .post(format!("{}/api/v1/catalog", self.url))
            .bearer_auth(&self.admin)
            .body(text)
            .send()
            .await
            .expect("catalog load");
        assert_eq!(resp.status(), StatusCode::OK);
    }

    async fn out_of_service_policy(&self) {
        let (status, v) = self
            .call(
                "PUT",
                "/api/v1/compat/policy",
                Some(json!({"plan": "minimal", "fix": "automatic", "out_of_service": true, "job_ttl_s": 3600})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    async fn compat(&self, id: &str) -> Value {
        self.call("GET", &format!("/api/v1/devices/{id}/compat"), None)
            .await
            .1
    }

    async fn online(&self, id: &str) -> bool {
        let (status, v) = self
            .call("GET", &format!("/api/v1/devices/{id}"), None)
            .await;
        status == StatusCode::OK && v["online"] == true
    }
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

fn agent_config(dir: &Path, url: &str, key: &str, id: &str) -> (AgentConfig, PathBuf) {
    let base = dir.join(id);
    std::fs::create_dir_all(&base).expect("mkdir");
    let inv = base.join("inventory.toml");
    std::fs::write(&inv, inventory(id)).expect("write");
    let mut cfg = AgentConfig::new(url, base.join("data"));
    cfg.enrollment_key = Some(key.to_owned());
    cfg.inventory = Some(inv.clone());
    cfg.backoff_initial = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(500);
    cfg.request_timeout = Duration::from_secs(5);
    (cfg, inv)
}

/// A center on the embedded store in `dir`.
async fn one_center(dir: &Path) -> Center {
    Center::start(&ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.join("center"),
        ..ServerConfig::default()
    })
    .await
    .expect("center starts")
}

fn spawn(cfg: AgentConfig, inv: &Path) -> Running {
    let (stop, shutdown) = watch::channel(false);
    Running {
        stop,
        task: tokio::spawn(Agent::new(cfg, InventoryFile::new(inv)).run(shutdown)),
    }
}

/// The agent holds tray-1 out of service, with tray-2 taking over its work, and the notice
/// that says so exactly once.
async fn holds_tray_1_out(data_dir: &Path, what: &str) -> local::LocalView {
    let view = eventually(what, PATIENCE, || async {
        local::view(data_dir).ok().filter(|v| {
            v.state.out_of_service.iter().any(|(s, _)| s == "tray-1")
                && v.notifications
                    .iter()
                    .any(|n| n.kind == "unit_out_of_service")
        })
    })
    .await;
    assert_eq!(
        view.state.switched,
        vec![("tray-1".to_owned(), "tray-2".to_owned())]
    );
    let notices: Vec<_> = view
        .notifications
        .iter()
        .filter(|n| n.kind == "unit_out_of_service")
        .collect();
    assert_eq!(notices.len(), 1, "{:?}", view.notifications);
    assert_eq!(notices[0].switched_to.as_deref(), Some("tray-2"));
    assert!(
        notices[0].summary.contains("tray-2 takes over"),
        "{}",
        notices[0].summary
    );
    let mut ids: Vec<u64> = view.notifications.iter().map(|n| n.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), view.notifications.len(), "each notice once");
    view
}

#[tokio::test]
async fn advice_and_a_unit_out_of_service_made_while_offline_arrive_once_on_connect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let center = one_center(dir.path()).await;
    let api = Api::of(&center);
    api.out_of_service_policy().await;
    api.load(catalog(true)).await;

    let (cfg, inv) = agent_config(dir.path(), &api.url, &center.boot.enrollment_key, "OFF-1");
    let data_dir = cfg.data_dir.clone();
    let agent = spawn(cfg.clone(), &inv);
    eventually("OFF-1 compatible and online", PATIENCE, || async {
        (api.online("OFF-1").await && api.compat("OFF-1").await["state"] == "compatible")
            .then_some(())
    })
    .await;
    agent.stop().await;
    eventually("OFF-1 offline", PATIENCE, || async {
        (!api.online("OFF-1").await).then_some(())
    })
    .await;

    // Offline, the device is judged again: tray-1 does not fit any more. The center advises
    // and (its policy allows it) takes tray-1 out of service; nothing can be delivered now.
    api.load(catalog(false)).await;
    let c = eventually("advice and a notice for OFF-1", PATIENCE, || async {
        let c = api.compat("OFF-1").await;
        let kinds: Vec<String> = c["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["kind"].as_str().map(str::to_owned))
            .collect();
        (kinds.iter().any(|k| k == "compat_advice")
            && kinds.iter().any(|k| k == "unit_out_of_service"))
        .then_some(c)
    })
    .await;
    assert!(
        c["notifications"]
            .as_array()
            .expect("notifications")
            .iter()
            .all(|n| n["delivered_at"].is_null()),
        "offline: nothing delivered yet: {c}"
    );
    let (_, units) = api.call("GET", "/api/v1/devices/OFF-1/units", None).await;
    assert_eq!(units[0]["slot"], "tray-1", "{units}");
    assert_eq!(units[0]["origin"], "policy", "{units}");
    assert_eq!(units[0]["switched_to"], "tray-2", "{units}");

    // It connects: it takes tray-1 out, says so in its next report, and keeps the notice.
    let agent = spawn(cfg, &inv);
    holds_tray_1_out(&data_dir, "OFF-1 takes tray-1 out once it connects").await;
    let unit = eventually(
        "the center sees tray-1 out of service",
        PATIENCE,
        || async {
            let (_, d) = api.call("GET", "/api/v1/devices/OFF-1", None).await;
            d["units"]
                .as_array()
                .and_then(|u| u.iter().find(|u| u["slot"] == "tray-1").cloned())
                .filter(|u| u["in_service"] == false)
        },
    )
    .await;
    assert_eq!(unit["serial"], "T1-OFF-1");
    // The state is judged with the report; the advice is closed by the compatibility worker
    // right after: both are awaited.
    let closed = |c: &serde_json::Value| {
        c["notifications"]
            .as_array()
            .is_some_and(|ns| ns.iter().all(|n| n["kind"] != "compat_advice"))
    };
    let c = eventually("OFF-1 compatible without tray-1", PATIENCE, || async {
        Some(api.compat("OFF-1").await).filter(|c| c["state"] == "compatible" && closed(c))
    })
    .await;
    assert!(
        c["notifications"]
            .as_array()
            .expect("notifications")
            .iter()
            .all(|n| n["kind"] != "compat_advice"),
        "the advice closed once the device works without the unit: {c}"
    );

    // `fleetcare-agent status` shows the notice once, and the unit that took over.
    let config = dir.path().join("OFF-1").join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "center_url = \"{}\"\nenrollment_key = \"{}\"\ndata_dir = \"{}\"\ninventory = \"{}\"\n",
            api.url,
            center.boot.enrollment_key,
            data_dir.display(),
            inv.display()
        ),
    )
    .expect("write");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .await
        .expect("status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let notice_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("notification  #"))
        .collect();
    assert_eq!(notice_lines.len(), 1, "{text}");
    assert!(
        notice_lines[0].contains("the tray-1 was taken out of service"),
        "{text}"
    );
    assert!(
        text.contains("out of service  tray-1 (#T1-OFF-1), as the center asked; the tray-2 takes over its work"),
        "{text}"
    );

    // An operator puts it back: the device is told at once and reports it in service.
    let (status, v) = api
        .call("POST", "/api/v1/devices/OFF-1/units/tray-1/enable", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["told_via"], "push", "{v}");
    eventually("tray-1 back in service at the agent", PATIENCE, || async {
        local::view(&data_dir)
            .ok()
            .filter(|v| v.state.out_of_service.is_empty() && v.state.switched.is_empty())
    })
    .await;
    agent.stop().await;
    center.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_instance_decides_reaches_a_device_connected_to_another() {
    let Some(url) = fleetcare_store::testing::postgres_url(
        "what_one_instance_decides_reaches_a_device_connected_to_another",
    ) else {
        return;
    };
    let db = fleetcare_store::testing::TempPostgres::create(&url)
        .await
        .expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |name: &str| ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join(name),
        database_url: Some(db.url.clone()),
        ..ServerConfig::default()
    };
    let a = Center::start(&config("a"))
        .await
        .expect("instance A starts");
    let b = Center::start(&config("b"))
        .await
        .expect("instance B starts");
    let (api_a, api_b) = (Api::of(&a), Api::of(&b));
    api_a.out_of_service_policy().await;
    api_a.load(catalog(true)).await;

    // The device connects to B.
    let (cfg, inv) = agent_config(dir.path(), &api_b.url, &a.boot.enrollment_key, "INST-1");
    let data_dir = cfg.data_dir.clone();
    let agent = spawn(cfg, &inv);
    eventually("INST-1 compatible and online", PATIENCE, || async {
        (api_a.online("INST-1").await && api_a.compat("INST-1").await["state"] == "compatible")
            .then_some(())
    })
    .await;

    // A judges it again and acts; B hands the commands to the device at once.
    api_a.load(catalog(false)).await;
    let view = holds_tray_1_out(&data_dir, "INST-1 takes tray-1 out, told through B").await;
    assert!(
        view.notifications.iter().any(|n| n.kind == "compat_advice"),
        "{:?}",
        view.notifications
    );

    // An operator of A takes tray-2 out by hand: no unit of its kind is left in service to
    // take over, and B tells the device.
    let (status, v) = api_a
        .call(
            "POST",
            "/api/v1/devices/INST-1/units/tray-2/disable",
            Some(json!({"reason": "feed rollers worn"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["switched_to"].is_null(), "{v}");
    assert_eq!(v["out_of_service"].as_array().map(Vec::len), Some(2), "{v}");
    eventually("INST-1 holds both trays out", PATIENCE, || async {
        local::view(&data_dir)
            .ok()
            .filter(|v| v.state.out_of_service.len() == 2)
    })
    .await;
    agent.stop().await;
    b.stop().await.expect("B stops");
    a.stop().await.expect("A stops");
    db.drop_database().await.expect("drop");
}

#[tokio::test]
async fn a_unit_out_of_service_goes_back_when_a_compatible_unit_is_in_its_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let center = one_center(dir.path()).await;
    let api = Api::of(&center);
    api.out_of_service_policy().await;
    api.load(catalog(false)).await;
    let (cfg, inv) = agent_config(dir.path(), &api.url, &center.boot.enrollment_key, "BACK-1");
    let data_dir = cfg.data_dir.clone();
    let agent = spawn(cfg, &inv);
    holds_tray_1_out(&data_dir, "BACK-1 takes tray-1 out").await;
    let units_out = || async {
        api.call("GET", "/api/v1/devices/BACK-1/units", None)
            .await
            .1
            .as_array()
            .map_or(0, Vec::len)
    };

    // A catalog revision by which the same tray-1 fits again: it goes back in service, and
    // the device is told (it reports it in service).
    api.load(catalog(true)).await;
    eventually("tray-1 back in service by itself", PATIENCE, || async {
        local::view(&data_dir)
            .ok()
            .filter(|v| v.state.out_of_service.is_empty())
    })
    .await;
    eventually(
        "the center's record is gone and the device compatible",
        PATIENCE,
        || async {
            (units_out().await == 0 && api.compat("BACK-1").await["state"] == "compatible")
                .then_some(())
        },
    )
    .await;

    // It does not fit again: out again. Then the tray is replaced by a model that fits (a new
    // serial in the slot): the record goes, and the device is told to forget the old one.
    api.load(catalog(false)).await;
    eventually("tray-1 out again", PATIENCE, || async {
        local::view(&data_dir)
            .ok()
            .filter(|v| !v.state.out_of_service.is_empty())
    })
    .await;
    let replaced = inventory("BACK-1").replace(
        "model = \"zp-2\"\nserial = \"T1-BACK-1\"",
        "model = \"zp-1\"\nserial = \"T1-NEW\"",
    );
    assert_ne!(replaced, inventory("BACK-1"));
    let tmp = inv.with_extension("swp");
    std::fs::write(&tmp, replaced).expect("write");
    std::fs::rename(&tmp, &inv).expect("rename");
    eventually(
        "the replaced tray: nothing out of service anywhere",
        PATIENCE,
        || async {
            let agent_clear = local::view(&data_dir)
                .ok()
                .is_some_and(|v| v.state.out_of_service.is_empty() && v.state.switched.is_empty());
            (agent_clear
                && units_out().await == 0
                && api.compat("BACK-1").await["state"] == "compatible")
                .then_some(())
        },
    )
    .await;
    agent.stop().await;
    center.stop().await.expect("clean stop");
}
