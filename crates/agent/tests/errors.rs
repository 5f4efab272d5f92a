//! The error log end to end on 127.0.0.1: events written with `fleetcare-agent log` (the real
//! binary) reach a real center by each sending trigger on its own, and the center stores each
//! event once and acknowledges by watermark, over gaps and retries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetcare_agent::journal::{Journal, JournalLimits, NewEvent};
use fleetcare_agent::source::InventoryFile;
use fleetcare_agent::{Agent, AgentConfig};
use fleetcare_server::{Center, ServerConfig};
use fleetcare_testkit::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(20);

struct Lab {
    center: Center,
    admin: String,
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
        let center = Center::start(&config).await.expect("center");
        Lab {
            admin: center.boot.admin_token.clone(),
            center,
            http: reqwest::Client::new(),
            dir,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.center.url()))
            .bearer_auth(&self.admin)
            .send()
            .await
            .expect("answer");
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// A device whose agent runs in this process; its config file (for `fleetcare-agent log`)
    /// and the running agent.
    async fn device(
        &self,
        id: &str,
        tune: impl FnOnce(&mut String),
    ) -> (PathBuf, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let base = self.dir.path().join(id);
        std::fs::create_dir_all(&base).expect("mkdir");
        std::fs::write(
            base.join("inventory.toml"),
            format!(
                "[device]\nid = \"{id}\"\nmodel = \"acme-mfp-9000\"\n[[unit]]\nslot = \"fuser\"\nkind = \"fuser\"\nmodel = \"fus-7\"\nserial = \"F-{id}\"\n\
                 [operating]\npages_total = 4000\n\
                 [[supply]]\nslot = \"toner.black\"\nkind = \"toner\"\nlevel_pct = 64\nstate = \"ok\"\npart_number = \"TN-45K\"\n"
            ),
        )
        .expect("inventory");
        let mut toml = format!(
            "center_url = \"{}\"\nenrollment_key = \"{}\"\ndata_dir = \"data\"\ninventory = \"inventory.toml\"\n\
             backoff_initial_ms = 20\nbackoff_max_s = 1\nwatch_interval_ms = 50\nerrors_interval_s = 3600\n\
             errors_immediate_severity = \"error\"\nerrors_batch_events = 5\n",
            self.center.url(),
            self.center.boot.enrollment_key
        );
        tune(&mut toml);
        let config = base.join("agent.toml");
        std::fs::write(&config, &toml).expect("config");
        let cfg = AgentConfig::load(Some(&config), &|_| None).expect("a valid config");
        let (stop, shutdown) = watch::channel(false);
        let inv = base.join("inventory.toml");
        let task = tokio::spawn(async move {
            Agent::new(cfg, InventoryFile::new(inv))
                .run(shutdown)
                .await
                .expect("the agent runs");
        });
        eventually(&format!("{id} online"), PATIENCE, || async {
            let (s, d) = self.get(&format!("/api/v1/devices/{id}")).await;
            (s == StatusCode::OK && d["online"] == true).then_some(())
        })
        .await;
        (config, stop, task)
    }

    async fn errors(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/devices/{id}/errors")).await.1
    }
}

/// `fleetcare-agent log …`, the real binary, as the device's own software runs it.
fn log(config: &Path, code: &str, severity: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
        .args(["log", "--config"])
        .arg(config)
        .args(["--code", code, "--unit", "fuser", "--severity", severity])
        .args([
            "--detail",
            "paper jam at the fuser exit",
            "--counter",
            "pages_total=1200",
            "--alert-group",
            "mediaPath",
            "--alert-code",
            "jam",
            "--alert-location",
            "3",
        ])
        .output()
        .expect("fleetcare-agent log runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("logged as event"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn events_with(lab: &Lab, id: &str, n: usize) -> Vec<Value> {
    eventually(
        &format!("{n} event(s) of {id} at the center"),
        PATIENCE,
        || async {
            let v = lab.errors(id).await;
            let e = v["events"].as_array()?.clone();
            (e.len() >= n).then_some(e)
        },
    )
    .await
}

#[tokio::test]
async fn an_event_at_or_above_the_immediate_severity_goes_at_once() {
    let lab = Lab::start().await;
    let (config, stop, task) = lab.device("ERR-1", |_| {}).await;
    log(&config, "J-100", "error");
    let e = events_with(&lab, "ERR-1", 1).await;
    assert_eq!(e[0]["trigger"], "immediate");
    assert_eq!(e[0]["code"], "J-100");
    assert_eq!(e[0]["slot"], "fuser");
    assert_eq!(e[0]["severity"], "error");
    assert_eq!(e[0]["counters"]["pages_total"], 1200.0);
    assert_eq!(e[0]["detail"], "paper jam at the fuser exit");
    assert_eq!(e[0]["alert"]["group"], "mediaPath");
    assert_eq!(e[0]["alert"]["code"], "jam");
    assert_eq!(e[0]["alert"]["location"], 3);
    let _ = stop.send(true);
    task.await.expect("agent");
}

#[tokio::test]
async fn warnings_accumulate_until_the_batch_is_full() {
    let lab = Lab::start().await;
    let (config, stop, task) = lab.device("ERR-2", |_| {}).await;
    for i in 0..5 {
        log(&config, &format!("W-{i}"), "warning");
    }
    let e = events_with(&lab, "ERR-2", 5).await;
    assert!(
        e.iter().all(|e| e["trigger"] == "accumulation"),
        "all five went together when the fifth arrived: {e:?}"
    );
    let _ = stop.send(true);
    task.await.expect("agent");
}

/// Only `key = value` of the tuned config is `value` (a threshold the others cannot reach).
fn only(toml: &mut String, set: &[(&str, &str)]) {
    for (k, v) in set {
        if let Some(i) = toml.find(&format!("{k} = ")) {
            let end = toml[i..].find('\n').map_or(toml.len(), |e| i + e);
            toml.replace_range(i..end, &format!("{k} = {v}"));
        } else {
            toml.push_str(&format!("{k} = {v}\n"));
        }
    }
}

#[tokio::test]
async fn the_pending_bytes_alone_send_the_log() {
    let lab = Lab::start().await;
    // The count (1000), the weight (100000), the schedule (an hour) and the severity at once
    // (never) cannot fire; 3000 bytes can: each event carries about 1 KB of detail.
    let (config, stop, task) = lab
        .device("ERR-B", |t| {
            only(
                t,
                &[
                    ("errors_batch_events", "1000"),
                    ("errors_batch_weight", "100000"),
                    ("errors_batch_bytes", "3000"),
                    ("errors_immediate_severity", "\"never\""),
                ],
            )
        })
        .await;
    for i in 0..3 {
        let detail: String = std::iter::repeat_n('x', 1000).collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
            .args(["log", "--config"])
            .arg(&config)
            .args([
                "--code",
                &format!("B-{i}"),
                "--unit",
                "fuser",
                "--severity",
                "info",
            ])
            .args(["--detail", &detail])
            .output()
            .expect("fleetcare-agent log runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let e = events_with(&lab, "ERR-B", 3).await;
    assert!(
        e.iter().all(|e| e["trigger"] == "accumulation"),
        "sent for their bytes: {e:?}"
    );
    let _ = stop.send(true);
    task.await.expect("agent");
}

#[tokio::test]
async fn the_weighted_severities_alone_send_the_log() {
    let lab = Lab::start().await;
    // The count, bytes, schedule and severity at once cannot fire; four warnings weigh 12.
    let (config, stop, task) = lab
        .device("ERR-W", |t| {
            only(
                t,
                &[
                    ("errors_batch_events", "1000"),
                    ("errors_batch_bytes", "1000000"),
                    ("errors_batch_weight", "12"),
                    ("errors_immediate_severity", "\"never\""),
                ],
            )
        })
        .await;
    for i in 0..4 {
        log(&config, &format!("W-{i}"), "warning");
    }
    let e = events_with(&lab, "ERR-W", 4).await;
    assert!(
        e.iter().all(|e| e["trigger"] == "accumulation"),
        "sent for their weight: {e:?}"
    );
    let _ = stop.send(true);
    task.await.expect("agent");
}

#[tokio::test]
async fn the_center_asks_and_the_log_comes() {
    let lab = Lab::start().await;
    let (config, stop, task) = lab.device("ERR-3", |_| {}).await;
    log(&config, "I-1", "info");
    let r = lab
        .http
        .post(format!(
            "{}/api/v1/devices/ERR-3/request-errors",
            lab.center.url()
        ))
        .bearer_auth(&lab.admin)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::OK);
    let e = events_with(&lab, "ERR-3", 1).await;
    assert_eq!(e[0]["trigger"], "request");
    let _ = stop.send(true);
    task.await.expect("agent");
}

#[tokio::test]
async fn the_agents_schedule_sends_what_is_pending() {
    let lab = Lab::start().await;
    let (config, stop, task) = lab
        .device("ERR-4", |t| {
            *t = t.replace("errors_interval_s = 3600", "errors_interval_s = 1");
        })
        .await;
    log(&config, "I-2", "info");
    let e = events_with(&lab, "ERR-4", 1).await;
    assert_eq!(e[0]["trigger"], "periodic");
    let _ = stop.send(true);
    task.await.expect("agent");
}

#[tokio::test]
async fn each_event_is_stored_once_and_acknowledged_by_watermark() {
    let lab = Lab::start().await;
    let url = lab.center.url();
    let enrolled: Value = lab
        .http
        .post(format!("{url}/device/v1/enroll"))
        .json(&json!({"enrollment_key": lab.center.boot.enrollment_key, "device_id": "ERR-5", "model": "m"}))
        .send()
        .await
        .expect("enroll")
        .json()
        .await
        .expect("json");
    let token = enrolled["device_token"].as_str().expect("token").to_owned();
    let ev = |seq: u64| json!({"seq": seq, "at_ms": 1_790_000_000_000u64 + seq, "slot": "engine", "code": "E-7", "severity": "warning"});
    let post = |body: Value| {
        let req = lab
            .http
            .post(format!("{url}/device/v1/errors"))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let r = req.send().await.expect("answer");
            let s = r.status();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let batch = |events: Vec<Value>| json!({"device_id": "ERR-5", "boot_epoch": 3, "trigger": "periodic", "events": events});
    let (s, a) = post(batch(vec![ev(1), ev(2), ev(4)])).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(
        (a["stored"].as_u64(), a["acked_seq"].as_u64()),
        (Some(3), Some(2)),
        "4 waits for 3"
    );
    // A retry stores nothing twice.
    let (_, a) = post(batch(vec![ev(1), ev(2), ev(4)])).await;
    assert_eq!(
        (
            a["stored"].as_u64(),
            a["duplicates"].as_u64(),
            a["acked_seq"].as_u64()
        ),
        (Some(0), Some(3), Some(2))
    );
    // 3 arrives as a tombstone (the device dropped it): the watermark passes it.
    let (_, a) = post(batch(vec![json!({"seq": 3, "at_ms": 0, "dropped": true})])).await;
    assert_eq!(a["acked_seq"], 4);
    let list = lab.errors("ERR-5").await;
    assert_eq!(list["events"].as_array().map(Vec::len), Some(3), "{list}");
    assert_eq!(list["dropped"], 1);
    // Refusals change nothing.
    let (s, e) = post(json!({"device_id": "ERR-5", "boot_epoch": 3, "trigger": "periodic",
        "events": [{"seq": 9, "at_ms": 1, "code": "X", "severity": "loud"}, {"seq": 8, "at_ms": 1, "code": "", "severity": "info"}]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["problems"].as_array().map(Vec::len), Some(3), "{e}");
    let (s, _) = post(json!({"device_id": "SOMEONE-ELSE", "boot_epoch": 3, "trigger": "periodic", "events": [ev(5)]})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        lab.errors("ERR-5").await["events"].as_array().map(Vec::len),
        Some(3)
    );
    // The operator's filters.
    let (_, v) = lab.get("/api/v1/devices/ERR-5/errors?code=NOPE").await;
    assert_eq!(v["events"].as_array().map(Vec::len), Some(0));
    let (s, _) = lab
        .get("/api/v1/devices/ERR-5/errors?since=yesterday")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_journal_the_agent_could_not_send_is_sent_after_a_restart() {
    // Events written while no agent runs (the device's software keeps logging) are numbered
    // in the last boot epoch and go out when the agent is back.
    let lab = Lab::start().await;
    let (config, stop, task) = lab.device("ERR-6", |_| {}).await;
    let _ = stop.send(true);
    task.await.expect("agent");
    let data = config.parent().expect("base").join("data");
    let j = Journal::open(&data, JournalLimits::default(), false).expect("journal");
    for i in 0..3 {
        j.append(
            &NewEvent {
                code: format!("C-{i}"),
                severity: "info".into(),
                ..NewEvent::default()
            },
            1_790_000_000_000 + i,
        )
        .expect("append");
    }
    drop(j);
    let (_, stop, task) = lab
        .device("ERR-6", |t| {
            *t = t.replace("errors_batch_events = 5", "errors_batch_events = 3");
        })
        .await;
    let e = events_with(&lab, "ERR-6", 3).await;
    assert!(e.iter().all(|e| e["boot_epoch"] == 1), "{e:?}");
    let _ = stop.send(true);
    task.await.expect("agent");
    let j = Journal::open(&data, JournalLimits::default(), false).expect("journal");
    assert_eq!(
        j.stats().expect("stats").pending,
        0,
        "acknowledged events are deleted"
    );
}

#[tokio::test]
async fn the_centers_schedule_asks_every_device_of_a_model() {
    let lab = Lab::start().await;
    let (config, stop, task) = lab.device("ERR-7", |_| {}).await;
    log(&config, "I-7", "info");
    // The operator's API: validated, listed, removable.
    let put = |body: Value| {
        let req = lab
            .http
            .put(format!("{}/api/v1/error-schedules", lab.center.url()))
            .bearer_auth(&lab.admin)
            .json(&body);
        async move {
            let r = req.send().await.expect("answer");
            let s = r.status();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, _) = put(json!({"model": "acme-mfp-9000", "interval_s": 5})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "too often");
    let (s, _) =
        put(json!({"model": "acme-mfp-9000", "device_id": "ERR-7", "interval_s": 600})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "one target");
    let (s, v) = put(json!({"model": "acme-mfp-9000", "interval_s": 600})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["schedules"][0]["scope"], "model");
    // Make it due now (as if ten minutes had passed): the center's sweep asks the device.
    let st = &lab.center.state;
    st.store
        .set_error_schedule(
            lab.center.boot.tenant,
            "model",
            "acme-mfp-9000",
            600,
            st.clock.now_ms() - 600_000,
        )
        .await
        .expect("due");
    let e = events_with(&lab, "ERR-7", 1).await;
    assert_eq!(e[0]["trigger"], "scheduled");
    let r = lab
        .http
        .delete(format!("{}/api/v1/error-schedules", lab.center.url()))
        .bearer_auth(&lab.admin)
        .json(&json!({"model": "acme-mfp-9000"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::OK);
    let (_, v) = lab.get("/api/v1/error-schedules").await;
    assert_eq!(v["schedules"].as_array().map(Vec::len), Some(0));
    let _ = stop.send(true);
    task.await.expect("agent");
}

#[tokio::test]
async fn the_devices_software_logs_through_the_local_socket() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let lab = Lab::start().await;
    let (config, stop, task) = lab.device("ERR-8", |_| {}).await;
    let socket = config.parent().expect("base").join("data/agent.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket)
            .expect("the socket exists")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o660);
    let stream = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut ask = async |req: &str| -> Value {
        write
            .write_all(format!("{req}\n").as_bytes())
            .await
            .expect("write");
        serde_json::from_str(&lines.next_line().await.expect("read").expect("a line"))
            .expect("JSON")
    };
    let a = ask(r#"{"op":"log","code":"C-42","unit":"fuser","severity":"critical","detail":"overheat","counters":{"fuser_temp_c":231},"alert":{"group":"marker","code":"other"}}"#).await;
    assert_eq!(a["ok"], true, "{a}");
    assert!(a["seq"].as_u64() >= Some(1), "{a}");
    let a = ask(r#"{"op":"log","code":"C-43","severity":"loud"}"#).await;
    assert_eq!(a["ok"], false);
    assert!(
        a["error"].as_str().expect("why").contains("severity"),
        "{a}"
    );
    let a = ask("this is not JSON").await;
    assert_eq!(a["ok"], false);
    let a = ask(r#"{"op":"status"}"#).await;
    assert_eq!(a["ok"], true, "{a}");
    // Operating info: durable, in the next report, and the counters of events logged without.
    let a = ask(r#"{"op":"operating","values":{"pages_total":5000,"fuser_temp_c":181.5}}"#).await;
    assert_eq!(a["ok"], true, "{a}");
    let a = ask(r#"{"op":"operating","values":{"bad":1e999}}"#).await;
    assert_eq!(a["ok"], false, "not a finite number: {a}");
    let r = lab
        .http
        .post(format!(
            "{}/api/v1/devices/ERR-8/request-report?wait_s=10",
            lab.center.url()
        ))
        .bearer_auth(&lab.admin)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::OK);
    let (_, d) = lab.get("/api/v1/devices/ERR-8").await;
    assert_eq!(d["operating"]["pages_total"], 5000.0, "{d}");
    let a = ask(r#"{"op":"log","code":"C-44","severity":"info"}"#).await;
    assert_eq!(a["ok"], true, "{a}");
    let r = lab
        .http
        .post(format!(
            "{}/api/v1/devices/ERR-8/request-errors",
            lab.center.url()
        ))
        .bearer_auth(&lab.admin)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::OK);
    let e = events_with(&lab, "ERR-8", 2).await;
    let by_code = |c: &str| {
        e.iter()
            .find(|x| x["code"] == c)
            .cloned()
            .unwrap_or_else(|| panic!("{c} at the center: {e:?}"))
    };
    // (Sent at once or with the request, whichever came first.)
    assert!(matches!(
        by_code("C-42")["trigger"].as_str(),
        Some("immediate" | "request")
    ));
    assert_eq!(by_code("C-42")["alert"]["group"], "marker");
    assert_eq!(by_code("C-42")["counters"]["fuser_temp_c"], 231.0);
    assert_eq!(
        by_code("C-44")["counters"]["pages_total"],
        5000.0,
        "an event without counters carries the device's current ones"
    );
    // An endless line is cut off.
    let a = ask(&"x".repeat(20_000)).await;
    assert_eq!(a["ok"], false);
    assert!(a["error"].as_str().expect("why").contains("at most"), "{a}");
    let _ = stop.send(true);
    task.await.expect("agent");
    assert!(
        !socket.exists(),
        "the socket is removed when the agent stops"
    );
}

/// `fleetcare-agent status --json`, the real binary.
fn status(config: &Path) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare-agent"))
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .expect("fleetcare-agent status runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test]
async fn a_trouble_judged_from_the_log_reaches_the_device_with_its_fix() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let lab = Lab::start().await;
    let rules = r#"
[[rule]]
id = "fuser-drift"
title = "Fuser temperature control drifts"
severity = "minor"
action = "The center lowers the fuser's target temperature."
match = { code = "SC543", unit_kind = "fuser" }
count = 2
within = "1h"
fix = { setting = "fuser.temp_offset_c", value = "-5" }
"#;
    let r = lab
        .http
        .put(format!("{}/api/v1/rules", lab.center.url()))
        .bearer_auth(&lab.admin)
        .body(rules)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::OK);
    let (config, stop, task) = lab.device("ERR-9", |_| {}).await;
    log(&config, "SC543", "error");
    log(&config, "SC543", "error");
    let t = eventually("the trouble opens", PATIENCE, || async {
        let (_, v) = lab.get("/api/v1/troubles?device=ERR-9").await;
        v["troubles"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(t["rule_id"], "fuser-drift");
    // The setting reaches the agent (told over the push channel) and the device's software.
    let socket = config.parent().expect("base").join("data/agent.sock");
    let settings = eventually("the setting reaches the device", PATIENCE, || {
        let socket = socket.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(&socket).await.ok()?;
            let (read, mut write) = stream.into_split();
            write.write_all(b"{\"op\":\"settings\"}\n").await.ok()?;
            let line = BufReader::new(read).lines().next_line().await.ok()??;
            let a: Value = serde_json::from_str(&line).ok()?;
            (a["settings"]["fuser.temp_offset_c"] == "-5").then_some(a)
        }
    })
    .await;
    assert_eq!(settings["ok"], true);
    // (Off the runtime: the center answers on this test's runtime.)
    let c = config.clone();
    let s = tokio::task::spawn_blocking(move || status(&c))
        .await
        .expect("status");
    assert_eq!(s["troubles"][0]["rule_id"], "fuser-drift", "{s}");
    assert_eq!(s["settings"]["fuser.temp_offset_c"], "-5", "{s}");
    assert!(
        s["recommended_actions"][0]
            .as_str()
            .is_some_and(|a| a.contains("lowers the fuser")),
        "{s}"
    );
    assert_eq!(s["error_rate"]["model_devices"], 1, "{s}");
    // What the center holds of the device's operating life comes back too.
    assert_eq!(s["supplies"][0]["supply"]["part_number"], "TN-45K", "{s}");
    assert_eq!(s["supplies"][0]["supply"]["state"], "ok", "{s}");
    assert_eq!(s["meters"]["pages_total"], 4000.0, "{s}");
    let _ = stop.send(true);
    task.await.expect("agent");
}
