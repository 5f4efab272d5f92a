//! Devices through an MQTT broker, end to end: a real Mosquitto started with the shipped
//! `deploy/mosquitto` config and ACL, two `fleetcare serve` instances on one PostgreSQL taking
//! the devices' messages through a shared subscription, and devices speaking the MQTT device
//! protocol (`fleetcare_wire::mqtt`). Reports and error batches are acknowledged once stored,
//! both instances take a share, commands asked of either instance reach the devices, the
//! broker keeps each device to its own topics, the center refuses another device's
//! credential and a revoked one, a device's last will marks it offline, and when one instance
//! is killed the other takes every message and no acknowledged report is lost.
//!
//! A second test runs the real agent (`transport = "mqtt"`) against one instance: it
//! enrolls over HTTP, reports over the broker, and answers a command that came that way.
//!
//! Needs `FLEETCARE_TEST_MQTT_URL` (CI sets it; the test starts its own broker, since the
//! shipped ACL must be the one enforced) and `FLEETCARE_TEST_DATABASE_URL`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::broker::{Broker, CENTER_PASSWORD, center_on_broker, free_port};
use common::{PATIENCE, read_secret, small_report};
use fleetcare_store::testing::{TempPostgres, postgres_url};
use fleetcare_testkit::eventually;
use fleetcare_wire::device::{Command, ReportAck};
use fleetcare_wire::errors::{ErrorAck, ErrorBatch, ErrorEvent, ErrorTrigger};
use fleetcare_wire::mqtt::{self as w, Ack, Status, Up};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const DEVICES: usize = 6;
const REPORTS: u64 = 20;
/// A device publishes again when no answer came within this (at least once, as the agent).
const ANSWER_WAIT: Duration = Duration::from_secs(3);

fn mqtt_gate(test: &str) -> bool {
    match std::env::var("FLEETCARE_TEST_MQTT_URL") {
        Ok(u) if !u.is_empty() => true,
        _ => {
            eprintln!(
                "SKIPPED {test}: FLEETCARE_TEST_MQTT_URL is not set; this MQTT test did not run \
                 (.ci/run sets it)"
            );
            false
        }
    }
}

/// A device on the broker: its client, and what arrives on its down topics.
struct Device {
    id: String,
    tenant: i64,
    token: String,
    client: AsyncClient,
    acks: mpsc::UnboundedReceiver<Ack>,
    commands: mpsc::UnboundedReceiver<(String, Command)>,
    task: tokio::task::JoinHandle<()>,
    next: u64,
}

impl Device {
    async fn connect(port: u16, tenant: i64, id: &str, token: &str, password: &str) -> Device {
        let user = format!("{tenant}/{id}");
        // As the agent's: a will carries no credential.
        let will = Up {
            id: "will".into(),
            credential: String::new(),
            body: Status { online: false },
        };
        let mut o = MqttOptions::new(format!("dev-{id}"), "127.0.0.1", port);
        o.set_credentials(&user, password)
            .set_keep_alive(Duration::from_secs(5))
            .set_last_will(LastWill::new(
                w::up_topic(tenant, id, w::STATUS),
                serde_json::to_vec(&will).expect("will"),
                QoS::AtLeastOnce,
                false,
            ));
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (up_tx, mut up) = mpsc::unbounded_channel();
        let (client, mut events) = AsyncClient::new(o, 64);
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = up_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic.ends_with("/down/ack") {
                            let _ =
                                acks_tx.send(serde_json::from_slice(&p.payload).expect("an ack"));
                        } else if p.topic.ends_with("/down/command") {
                            let c = serde_json::from_slice(&p.payload).expect("a command");
                            let _ = commands_tx.send((p.topic.clone(), c));
                        }
                    }
                    Ok(_) => {}
                    // Refused until the broker has read the new accounts; gone when killed.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await, // pacing: reconnect backoff
                }
            }
        });
        tokio::time::timeout(PATIENCE, up.recv())
            .await
            .expect("the device connects to the broker")
            .expect("connected");
        client
            .subscribe(
                format!("{}/{tenant}/{id}/down/#", w::ROOT),
                QoS::AtLeastOnce,
            )
            .await
            .expect("subscribe");
        let mut d = Device {
            id: id.to_owned(),
            tenant,
            token: token.to_owned(),
            client,
            acks,
            commands,
            task,
            next: 0,
        };
        let ack = d.send(w::STATUS, &Status { online: true }).await;
        assert_eq!(ack.status, 200, "{ack:?}");
        d
    }

    /// Publish `body` as `kind` on the device's own topic, with its own credential; the answer.
    async fn send<B: serde::Serialize>(&mut self, kind: &str, body: &B) -> Ack {
        let (tenant, id, token) = (self.tenant, self.id.clone(), self.token.clone());
        self.send_as(&w::up_topic(tenant, &id, kind), &token, body)
            .await
    }

    /// Publish on `topic` with `credential`, again until answered; the answer.
    async fn send_as<B: serde::Serialize>(
        &mut self,
        topic: &str,
        credential: &str,
        body: &B,
    ) -> Ack {
        self.next += 1;
        let id = format!("m{}", self.next);
        let payload = serde_json::to_vec(&Up {
            id: id.clone(),
            credential: credential.to_owned(),
            body,
        })
        .expect("envelope");
        let deadline = tokio::time::Instant::now() + PATIENCE * 2;
        loop {
            self.client
                .publish(topic, QoS::AtLeastOnce, false, payload.clone())
                .await
                .expect("publish");
            let wait = tokio::time::Instant::now() + ANSWER_WAIT;
            while let Ok(Some(ack)) = tokio::time::timeout_at(wait, self.acks.recv()).await {
                if ack.id == id {
                    return ack;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: no answer to {topic}",
                self.id
            );
        }
    }

    async fn report(&mut self, seq: u64) -> ReportAck {
        let ack = self
            .send(w::REPORT, &small_report(&self.id.clone(), seq))
            .await;
        assert_eq!(ack.status, 200, "report {seq} of {}: {ack:?}", self.id);
        serde_json::from_value(ack.body.expect("a body")).expect("a report ack")
    }

    async fn command(&mut self) -> (String, Command) {
        tokio::time::timeout(PATIENCE, self.commands.recv())
            .await
            .expect("a command arrives")
            .expect("a command")
    }
}

fn batch(id: &str) -> ErrorBatch {
    ErrorBatch {
        device_id: id.to_owned(),
        boot_epoch: 1,
        trigger: ErrorTrigger::Periodic,
        events: (1..=3)
            .map(|seq| ErrorEvent {
                seq,
                at_ms: 1_790_000_000_000 + i64::try_from(seq).unwrap_or(0),
                slot: "fuser".into(),
                code: "E-101".into(),
                severity: "warning".into(),
                counters: BTreeMap::new(),
                detail: None,
                alert: None,
                dropped: false,
            })
            .collect(),
    }
}

async fn device_view(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    id: &str,
) -> serde_json::Value {
    http.get(format!("{url}/api/v1/devices/{id}"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("device")
        .json()
        .await
        .expect("device json")
}

async fn request_report(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    id: &str,
) -> serde_json::Value {
    let r = http
        .post(format!("{url}/api/v1/devices/{id}/request-report"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("request-report");
    assert!(
        r.status().is_success(),
        "request-report {id}: {}",
        r.status()
    );
    r.json().await.expect("answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_over_mqtt_reach_two_instances_through_a_shared_subscription() {
    let test = "devices_over_mqtt_reach_two_instances_through_a_shared_subscription";
    if !mqtt_gate(test) {
        return;
    }
    let Some(url) = postgres_url(test) else {
        return;
    };
    let db = TempPostgres::create(&url).await.expect("database");
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let broker = Broker::start(broker_dir.path(), port);

    // Two instances linked to the broker (the password from a file, as in production).
    let dirs: Vec<tempfile::TempDir> = (0..2)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut served = Vec::new();
    for d in &dirs {
        served.push(Some(
            center_on_broker(d.path(), port, &["--database-url", &db.url]).await,
        ));
    }
    let urls: Vec<String> = served
        .iter()
        .map(|s| s.as_ref().expect("served").url.clone())
        .collect();
    let admin = read_secret(&dirs[0].path().join("admin-token"));
    let key = read_secret(&dirs[0].path().join("enrollment-key"));
    let http = reqwest::Client::new();
    for u in &urls {
        eventually("the instance is connected to the broker", PATIENCE, || {
            let (http, u) = (http.clone(), u.clone());
            async move {
                (common::metric(&http, &u, "fleetcare_mqtt_connected").await == 1.0).then_some(())
            }
        })
        .await;
    }

    // Devices enroll over HTTP (the answer names their tenant), get broker accounts, connect.
    let mut enrolled = Vec::new();
    for i in 0..DEVICES {
        let id = format!("MQ-{i:02}");
        let answer = common::enroll_answer(&http, &urls[i % 2], &key, &id).await;
        let tenant = answer
            .tenant
            .expect("the enrollment answer names the tenant");
        let password = format!("broker-pw-{i}");
        broker.add(&format!("{tenant}/{id}"), &password);
        enrolled.push((id, tenant, answer.device_token, password));
    }
    broker.reload();
    let mut devices = Vec::new();
    for (id, tenant, token, password) in &enrolled {
        devices.push(Device::connect(port, *tenant, id, token, password).await);
    }

    // Reports and error batches, acknowledged once stored; a repeat is a duplicate.
    for d in devices.iter_mut() {
        for seq in 1..=REPORTS {
            let a = d.report(seq).await;
            assert_eq!((a.seq, a.duplicate), (seq, false), "{}", d.id);
        }
        assert!(d.report(REPORTS).await.duplicate, "the same report again");
        let id = d.id.clone();
        let ack = d.send(w::ERRORS, &batch(&id)).await;
        assert_eq!(ack.status, 200, "{ack:?}");
        let e: ErrorAck = serde_json::from_value(ack.body.expect("body")).expect("error ack");
        assert_eq!((e.acked_seq, e.stored), (3, 3));
    }
    for d in &devices {
        let v = device_view(&http, &urls[1], &admin, &d.id).await;
        assert_eq!(v["last_report"]["seq"], REPORTS, "{v}");
        assert_eq!(v["online"], true, "connected over MQTT: {v}");
    }
    // The shared subscription split the messages between the instances.
    let shares = [
        common::metric(&http, &urls[0], "fleetcare_mqtt_answers_total").await,
        common::metric(&http, &urls[1], "fleetcare_mqtt_answers_total").await,
    ];
    eprintln!("answers per instance: {shares:?}");
    assert!(
        shares.iter().all(|n| *n > 0.0),
        "both instances took messages: {shares:?}"
    );
    let per_device = (REPORTS + 3) as f64;
    assert!(
        shares.iter().sum::<f64>() >= per_device * DEVICES as f64,
        "every message answered: {shares:?}"
    );

    // A command asked of either instance reaches the device on its command topic.
    for (n, u) in urls.iter().enumerate() {
        let d = &mut devices[n];
        let answer = request_report(&http, u, &admin, &d.id).await;
        assert_eq!(answer["via"], "mqtt", "{answer}");
        let (topic, c) = d.command().await;
        assert_eq!(c, Command::RequestReport);
        assert_eq!(topic, w::command_topic(d.tenant, &d.id));
    }

    // The broker keeps a device to its own topics: a report published on another device's
    // topic never reaches a center (an observer with the center's account sees every up
    // message in order: it sees the device's next message, not the forged one), and a
    // subscription to another device's commands delivers none of them.
    let (other_id, other_tenant) = (devices[1].id.clone(), devices[1].tenant);
    let (obs_tx, mut observed) = mpsc::unbounded_channel();
    let mut o = MqttOptions::new("observer", "127.0.0.1", port);
    o.set_credentials("center", CENTER_PASSWORD);
    let (observer, mut obs_events) = AsyncClient::new(o, 64);
    observer
        .subscribe(format!("{}/+/+/up/+", w::ROOT), QoS::AtLeastOnce)
        .await
        .expect("observer subscribes");
    let obs_task = tokio::spawn(async move {
        loop {
            match obs_events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = obs_tx.send(String::new());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = obs_tx.send(p.topic.clone());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await, // pacing: reconnect backoff
            }
        }
    });
    assert_eq!(
        tokio::time::timeout(PATIENCE, observed.recv())
            .await
            .expect("suback"),
        Some(String::new())
    );
    let forger = &mut devices[0];
    let forged_topic = w::up_topic(other_tenant, &other_id, w::REPORT);
    let payload = serde_json::to_vec(&Up {
        id: "forged".into(),
        credential: forger.token.clone(),
        body: small_report(&other_id, 1000),
    })
    .expect("envelope");
    forger
        .client
        .publish(&forged_topic, QoS::AtLeastOnce, false, payload)
        .await
        .expect("publish");
    forger
        .client
        .subscribe(
            format!("{}/{other_tenant}/{other_id}/down/#", w::ROOT),
            QoS::AtLeastOnce,
        )
        .await
        .expect("subscribe");
    forger.report(REPORTS + 1).await;
    let own_topic = w::up_topic(forger.tenant, &forger.id, w::REPORT);
    loop {
        let t = tokio::time::timeout(PATIENCE, observed.recv())
            .await
            .expect("the observer sees the device's next message")
            .expect("topic");
        assert_ne!(
            t, forged_topic,
            "the broker passed a message on another device's topic"
        );
        if t == own_topic {
            break;
        }
    }
    obs_task.abort();
    // Commands for the other device, then one for the forger, from one instance: the
    // forger's own command is the first it gets.
    request_report(&http, &urls[0], &admin, &other_id).await;
    let forger_id = devices[0].id.clone();
    request_report(&http, &urls[0], &admin, &forger_id).await;
    assert_eq!(
        devices[1].command().await.0,
        w::command_topic(other_tenant, &other_id)
    );
    let (topic, _) = devices[0].command().await;
    assert_eq!(
        topic,
        w::command_topic(devices[0].tenant, &forger_id),
        "another device's command"
    );

    // The center checks the credential inside each message: another device's is refused,
    // and so is a malformed body, with nothing stored.
    let other_token = devices[1].token.clone();
    let d0 = &mut devices[0];
    let topic = w::up_topic(d0.tenant, &d0.id, w::REPORT);
    let id0 = d0.id.clone();
    let ack = d0
        .send_as(&topic, &other_token, &small_report(&id0, 5000))
        .await;
    assert_eq!(
        (ack.status, ack.error.as_ref().map(|e| e.code.as_str())),
        (403, Some("forbidden")),
        "{ack:?}"
    );
    let mut bad = small_report(&id0, 0);
    bad.seq = 0;
    let ack = d0.send(w::REPORT, &bad).await;
    assert_eq!(ack.status, 400, "{ack:?}");
    let v = device_view(&http, &urls[0], &admin, &id0).await;
    assert_eq!(v["last_report"]["seq"], REPORTS + 1, "nothing stored: {v}");
    let v = device_view(&http, &urls[0], &admin, &other_id).await;
    assert_eq!(v["last_report"]["seq"], REPORTS, "nothing stored: {v}");

    // A revoked device's messages are refused at once.
    let revoked = devices[2].id.clone();
    let r = http
        .post(format!("{}/api/v1/devices/{revoked}/revoke", urls[1]))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("revoke");
    assert!(r.status().is_success(), "revoke: {}", r.status());
    let ack = devices[2]
        .send(w::REPORT, &small_report(&revoked, REPORTS + 1))
        .await;
    assert_eq!(ack.status, 401, "{ack:?}");

    // A device that drops off without saying goodbye: its last will marks it offline.
    let gone = devices.remove(3);
    gone.task.abort();
    let gone_id = gone.id.clone();
    drop(gone);
    eventually("the last will marks the device offline", PATIENCE, || {
        let (http, u, admin, id) = (
            http.clone(),
            urls[0].clone(),
            admin.clone(),
            gone_id.clone(),
        );
        async move { (device_view(&http, &u, &admin, &id).await["online"] == false).then_some(()) }
    })
    .await;

    // Kill one instance: the other takes every message; every acknowledged report is stored.
    served[0].take().expect("served").kill9().await;
    let live: Vec<usize> = vec![0, 1, 3, 4];
    for &n in &live {
        let d = &mut devices[n];
        let first = if n == 0 { REPORTS + 2 } else { REPORTS + 1 };
        for seq in first..first + 10 {
            let a = d.report(seq).await;
            assert_eq!(a.seq, seq);
        }
    }
    for &n in &live {
        let d = &devices[n];
        let v = device_view(&http, &urls[1], &admin, &d.id).await;
        let want = if n == 0 { REPORTS + 11 } else { REPORTS + 10 };
        assert_eq!(v["last_report"]["seq"], want, "{}: {v}", d.id);
    }
    let answer = request_report(&http, &urls[1], &admin, &devices[4].id.clone()).await;
    assert_eq!(answer["via"], "mqtt", "{answer}");
    assert_eq!(devices[4].command().await.1, Command::RequestReport);

    for d in devices {
        d.task.abort();
    }
    if let Some(s) = served[1].take() {
        s.terminate().await;
    }
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reports_and_takes_commands_over_mqtt() {
    if !mqtt_gate("the_agent_reports_and_takes_commands_over_mqtt") {
        return;
    }
    let broker_dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let broker = Broker::start(broker_dir.path(), port);
    let dir = tempfile::tempdir().expect("tempdir");
    let served = center_on_broker(dir.path(), port, &[]).await;
    let url = served.url.clone();
    let admin = read_secret(&dir.path().join("admin-token"));
    let key = read_secret(&dir.path().join("enrollment-key"));
    let http = reqwest::Client::new();
    eventually("the center is connected to the broker", PATIENCE, || {
        let (http, u) = (http.clone(), url.clone());
        async move { (common::metric(&http, &u, "fleetcare_mqtt_connected").await == 1.0).then_some(()) }
    })
    .await;

    // The first tenant of a fresh center is number 1; the reports below arriving at all
    // shows the topics and the credential agree on it.
    let id = "AGENT-MQ-1";
    let username = format!("1/{id}");
    broker.add(&username, "agent-broker-pw");
    broker.reload();
    let agent_dir = tempfile::tempdir().expect("tempdir");
    let inventory = agent_dir.path().join("inventory.toml");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/inventories/acme-mfp-9000.toml"),
    )
    .expect("sample inventory")
    .replace("ACM9K-000123", id);
    std::fs::write(&inventory, text).expect("inventory");
    let pw = agent_dir.path().join("mqtt-password");
    std::fs::write(&pw, "agent-broker-pw\n").expect("password");
    let data_dir = agent_dir.path().join("data");
    let mut cfg = fleetcare_agent::AgentConfig::new(&url, data_dir.clone());
    cfg.enrollment_key = Some(key);
    cfg.inventory = Some(inventory.clone());
    cfg.transport = fleetcare_agent::Transport::Mqtt;
    cfg.mqtt = Some(fleetcare_agent::config::MqttSettings {
        url: format!("mqtt://127.0.0.1:{port}"),
        username,
        password_file: Some(pw),
        ca_file: None,
    });
    cfg.backoff_initial = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(500);
    cfg.request_timeout = Duration::from_secs(5);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let agent =
        fleetcare_agent::Agent::new(cfg, fleetcare_agent::source::InventoryFile::new(&inventory));
    let task = tokio::spawn(agent.run(shutdown));

    // Its connect report came over the broker, and it is online over MQTT.
    let v = eventually("the agent's connect report over MQTT", PATIENCE, || {
        let (http, u, admin) = (http.clone(), url.clone(), admin.clone());
        async move {
            let v = device_view(&http, &u, &admin, id).await;
            (v["online"] == true && v["last_report"]["trigger"] == "connect").then_some(v)
        }
    })
    .await;
    assert_eq!(v["units"].as_array().map(Vec::len), Some(10), "{v}");
    // The answer is published just after the report is stored (and visible): awaited.
    eventually("answered over MQTT", PATIENCE, || {
        let (http, u) = (http.clone(), url.clone());
        async move {
            (common::metric(&http, &u, "fleetcare_mqtt_answers_total").await >= 2.0).then_some(())
        }
    })
    .await;

    // A command over the broker: the agent answers with a report (and the center says how
    // it reached the device).
    let r = http
        .post(format!(
            "{url}/api/v1/devices/{id}/request-report?wait_s=10"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("request-report");
    assert!(r.status().is_success(), "{}", r.status());
    let answer: serde_json::Value = r.json().await.expect("answer");
    assert_eq!(answer["via"], "mqtt", "{answer}");
    assert_eq!(answer["report"]["trigger"], "request", "{answer}");

    // A catalog by which its fax unit does not fit: the advice, and the fax taken out of
    // service (the policy allows it), reach the agent over the broker.
    let r = http
        .put(format!("{url}/api/v1/compat/policy"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"plan": "minimal", "fix": "off", "out_of_service": true, "job_ttl_s": 3600}))
        .send()
        .await
        .expect("policy");
    assert!(r.status().is_success(), "{}", r.status());
    let catalog = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/catalog.toml"),
    )
    .expect("sample catalog");
    let unfit = catalog.replace(
        "name = \"fax-g3\"\nkind = \"fax\"\nhw_revisions = [\"A\", \"B\"]\naccepted_by = [\"acme-mfp-9000\", \"acme-mfp-7000\"]",
        "name = \"fax-g3\"\nkind = \"fax\"\nhw_revisions = [\"A\", \"B\"]\naccepted_by = [\"acme-mfp-7000\"]",
    );
    assert_ne!(unfit, catalog, "the fax's model was found");
    let r = http
        .post(format!("{url}/api/v1/catalog"))
        .bearer_auth(&admin)
        .body(unfit)
        .send()
        .await
        .expect("catalog");
    assert!(r.status().is_success(), "{}", r.status());
    let view = eventually(
        "advice and the fax out of service over MQTT",
        PATIENCE,
        || {
            let d = data_dir.clone();
            async move {
                fleetcare_agent::local::view(&d).ok().filter(|v| {
                    !v.state.out_of_service.is_empty()
                        && v.notifications.iter().any(|n| n.kind == "compat_advice")
                        && v.notifications
                            .iter()
                            .any(|n| n.kind == "unit_out_of_service")
                })
            }
        },
    )
    .await;
    assert_eq!(
        view.state
            .out_of_service
            .iter()
            .map(|(slot, _)| slot.as_str())
            .collect::<Vec<_>>(),
        ["fax"]
    );

    // Stopping the agent ends its session; the center sees it go.
    let _ = stop.send(true);
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the agent stops promptly")
        .expect("agent task")
        .expect("agent ends cleanly");
    eventually("the stopped agent is offline", PATIENCE, || {
        let (http, u, admin) = (http.clone(), url.clone(), admin.clone());
        async move { (device_view(&http, &u, &admin, id).await["online"] == false).then_some(()) }
    })
    .await;
    served.terminate().await;
    drop(broker);
}
