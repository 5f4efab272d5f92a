//! Notifications through the center's API, on both stores, to real receivers on 127.0.0.1: a
//! fuser trouble opened by a device's error log reaches a signed webhook (after the receiver
//! failed twice) and a mailbox behind a real SMTP server, with its recommended action; the
//! delivery log and redelivery; a receiver that keeps failing gets its subscription disabled
//! after a day; a silent device goes offline and comes back; bad subscriptions and hostile
//! receivers are refused or bounded.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::{Fixture, call, enroll_as, fixture_config, fixtures_config, json_body};
use fleetcare_server::ServerConfig;
use fleetcare_server::config::SmtpSettings;
use fleetcare_testkit::eventually;
use fleetcare_testkit::receivers::{Mailbox, Mode, WebhookReceiver};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(20);

fn config(smtp_port: Option<u16>) -> ServerConfig {
    let mut c = ServerConfig {
        public_url: Some("https://fleet.example.test".into()),
        ..ServerConfig::default()
    };
    c.notify.timeout = Duration::from_secs(2);
    c.notify.smtp = smtp_port.map(|port| SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        tls: "none".into(),
        user: None,
        password_file: None,
        from: "Fleetcare <fleetcare@example.test>".into(),
    });
    c
}

/// Start what `Center::start` runs beside the router for notifications (on PostgreSQL the
/// instance joins the cluster, to hold the engines' lease that fans events out).
async fn start_notify(f: &Fixture, config: &ServerConfig) {
    f.state.notify.configure_mail(config).expect("the relay");
    fleetcare_server::cluster::listen::start(&f.state, "test".into()).await;
    tokio::spawn(fleetcare_server::notify::run(
        f.state.ctx.clone(),
        f.state.notify.clone(),
        f.state.rollouts.clone(),
    ));
}

async fn add(f: &Fixture, body: Value) -> (StatusCode, Value) {
    call(
        &f.app,
        "POST",
        "/api/v1/notify",
        Some(&f.admin),
        json_body(&body),
    )
    .await
}

async fn deliveries(f: &Fixture, name: &str) -> Vec<Value> {
    let (s, v) = call(
        &f.app,
        "GET",
        &format!("/api/v1/notify/{name}/deliveries"),
        Some(&f.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["deliveries"].as_array().cloned().unwrap_or_default()
}

async fn report(f: &Fixture, token: &str, id: &str, seq: u64) {
    let body = json!({"device_id": id, "model": "acme-mfp-9000", "seq": seq, "trigger": "periodic",
        "observed_at_ms": fleetcare_core::clock::Clock::now_ms(&f.clock), "units": [
            {"slot": "controller", "kind": "controller", "model": "ctl-x2", "serial": "C-1",
             "hw_revision": "B", "software": [{"product": "ctl-firmware", "maker": "acme", "version": "5.2.1"}]},
            {"slot": "fuser", "kind": "fuser", "model": "fus-7", "serial": "F-1", "hw_revision": "A", "software": []}],
        "operating": {}});
    let (s, v) = call(
        &f.app,
        "POST",
        "/device/v1/reports",
        Some(token),
        json_body(&body),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

async fn fuser_errors(f: &Fixture, token: &str, id: &str) {
    let events: Vec<Value> = (1..=3)
        .map(|seq| {
            json!({"seq": seq, "at_ms": common::NOW + seq * 1000, "slot": "fuser",
                   "code": format!("SC54{seq}"), "severity": "error", "counters": {"pages_total": 1000 + seq}})
        })
        .collect();
    let (s, v) = call(
        &f.app,
        "POST",
        "/device/v1/errors",
        Some(token),
        json_body(
            &json!({"device_id": id, "boot_epoch": 1, "trigger": "immediate", "events": events}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../examples/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("an example file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuser_trouble_reaches_a_signed_webhook_and_a_mailbox() {
    let maildir = tempfile::tempdir().expect("tempdir");
    let mailbox = Mailbox::start(maildir.path().join("mail")).await;
    let cfg = config(mailbox.as_ref().map(|m| m.port));
    for (store, f) in fixtures_config("notify_fuser", &cfg).await {
        start_notify(&f, &cfg).await;
        let hook = WebhookReceiver::start().await;
        let (s, v) = add(
            &f,
            json!({"name": "dispatch", "webhook": hook.url, "events": ["trouble.opened"],
                   "filter": "model = \"acme-mfp-9000\"", "min_severity": "major"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        let secret = v["secret"].as_str().expect("the secret, shown once");
        assert!(secret.starts_with("fcw_"), "{store}: {secret}");
        hook.set_secret(secret);
        // The secret is never shown again, not even to an admin.
        let (_, shown) = call(
            &f.app,
            "GET",
            "/api/v1/notify/dispatch",
            Some(&f.admin),
            None,
        )
        .await;
        assert!(!shown.to_string().contains(secret), "{store}: {shown}");
        if mailbox.is_some() {
            let (s, v) = add(
                &f,
                json!({"name": "engineers", "email": ["Service <service@example.test>"],
                       "events": ["trouble.opened", "supply.low"]}),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{store}: {v}");
            assert!(v.get("secret").is_none(), "{store}: {v}");
        }
        let (s, v) = call(
            &f.app,
            "PUT",
            "/api/v1/rules",
            Some(&f.admin),
            Some(Body::from(example("rules.toml"))),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        let token = enroll_as(&f, "FUS-1", "acme-mfp-9000").await;
        report(&f, &token, "FUS-1", 1).await;
        // The receiver fails twice: the worker retries (after 1 s, then 2 s of the center's
        // clock) and the third attempt arrives.
        hook.fail_next(2);
        fuser_errors(&f, &token, "FUS-1").await;
        let got = eventually("the webhook acknowledged", PATIENCE, || {
            f.clock.advance(Duration::from_millis(500));
            let hook = hook.clone();
            async move { hook.received().into_iter().find(|r| r.acked) }
        })
        .await;
        assert!(got.signature_ok, "{store}: the signature checks out");
        assert_eq!(got.event_type, "trouble.opened", "{store}");
        let body = &got.body;
        assert_eq!(body["id"], got.event_id, "{store}: {body}");
        assert_eq!(body["type"], "trouble.opened");
        assert_eq!(body["tenant"], "default");
        assert_eq!(body["severity"], "major");
        assert_eq!(body["device"]["device_id"], "FUS-1");
        assert_eq!(body["device"]["model"], "acme-mfp-9000");
        assert_eq!(
            body["device"]["url"],
            "https://fleet.example.test/ui/devices/FUS-1"
        );
        let trouble = &body["data"]["trouble"];
        assert_eq!(trouble["rule_id"], "fuser-overheat", "{store}: {body}");
        assert!(
            trouble["action"]
                .as_str()
                .unwrap_or("")
                .contains("replace the fuser unit"),
            "{store}: the recommended action: {body}"
        );
        assert_eq!(
            trouble["evidence"].as_array().map(Vec::len),
            Some(3),
            "{store}: {body}"
        );
        let all = hook.received();
        assert_eq!(all.len(), 3, "{store}: two refusals and the success");
        assert!(
            all.iter().all(|r| r.event_id == got.event_id),
            "{store}: one event id throughout"
        );
        // The receiver answered; the center records it a moment later.
        let ds = eventually("the delivery recorded", PATIENCE, || async {
            let ds = deliveries(&f, "dispatch").await;
            (ds.first().is_some_and(|d| d["state"] == "delivered")).then_some(ds)
        })
        .await;
        assert_eq!(ds.len(), 1, "{store}: {ds:?}");
        assert_eq!(ds[0]["attempts"], 3);
        assert_eq!(ds[0]["last_status"], 200);
        // Redelivery by id: the same event again.
        let id = ds[0]["id"].as_u64().expect("id");
        let (s, v) = call(
            &f.app,
            "POST",
            &format!("/api/v1/notify/dispatch/deliveries/{id}/redeliver"),
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        eventually("the redelivery", PATIENCE, || {
            let hook = hook.clone();
            async move { (hook.received().iter().filter(|r| r.acked).count() == 2).then_some(()) }
        })
        .await;
        assert_eq!(
            hook.acked_by_event().get(&got.event_id),
            Some(&2),
            "{store}"
        );
        if let Some(mb) = &mailbox {
            let mail = eventually("the mail", PATIENCE, || {
                let mails = mb.mails();
                async move { mails.into_iter().find(|m| m.contains("FUS-1")) }
            })
            .await;
            assert!(
                mail.contains("Subject: [Fleetcare] major: Fuser overheats repeatedly on FUS-1"),
                "{store}: {mail}"
            );
            assert!(
                mail.contains("replace the fuser unit"),
                "{store}: the action: {mail}"
            );
            assert!(
                mail.contains("https://fleet.example.test/ui/devices/FUS-1"),
                "{store}: the link"
            );
            assert!(mail.contains("text/html"), "{store}: an HTML part too");
            assert!(mail.contains("service@example.test"), "{store}: {mail}");
        }
        f.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_for_a_day_gets_its_subscription_disabled() {
    let cfg = config(None);
    for (store, f) in fixtures_config("notify_disable", &cfg).await {
        start_notify(&f, &cfg).await;
        let hook = WebhookReceiver::start().await;
        hook.set_mode(Mode::Fail);
        let (s, v) = add(&f, json!({"name": "flaky", "webhook": hook.url})).await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        let (s, v) = call(
            &f.app,
            "POST",
            "/api/v1/notify/flaky/test",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        // The receiver refused; the center records the failure a moment later.
        let ds = eventually("a failed attempt recorded", PATIENCE, || async {
            let ds = deliveries(&f, "flaky").await;
            ds.first()
                .is_some_and(|d| d["last_error"].is_string())
                .then_some(ds)
        })
        .await;
        assert!(
            !hook.received().is_empty(),
            "{store}: the receiver was called"
        );
        assert_eq!(ds[0]["state"], "pending", "{store}: {ds:?}");
        assert!(
            ds[0]["last_error"].as_str().unwrap_or("").contains("500"),
            "{store}: {ds:?}"
        );
        // A day later the next attempt fails too: it is given up and the subscription disabled.
        f.clock.advance(Duration::from_secs(24 * 3600 + 60));
        let sub = eventually("the subscription disabled", PATIENCE, || async {
            let (_, v) = call(&f.app, "GET", "/api/v1/notify/flaky", Some(&f.admin), None).await;
            (v["state"] == "disabled").then_some(v)
        })
        .await;
        assert!(
            sub["state_reason"]
                .as_str()
                .unwrap_or("")
                .contains("no delivery succeeded for 24 h"),
            "{store}: {sub}"
        );
        assert_eq!(
            deliveries(&f, "flaky").await[0]["state"],
            "failed",
            "{store}"
        );
        // Audited just after the state changed.
        let audit = eventually("the audit line", PATIENCE, || async {
            let (_, audit) = call(
                &f.app,
                "GET",
                "/api/v1/audit?limit=20",
                Some(&f.admin),
                None,
            )
            .await;
            audit
                .to_string()
                .contains("notify.disabled")
                .then_some(audit)
        })
        .await;
        assert!(
            audit.to_string().contains("no delivery succeeded"),
            "{store}: {audit}"
        );
        // Enabled again, with the receiver fixed: a redelivery goes through.
        hook.set_mode(Mode::Ok);
        let (s, v) = call(
            &f.app,
            "POST",
            "/api/v1/notify/flaky/enable",
            Some(&f.admin),
            None,
        )
        .await;
        assert_eq!(
            (s, v["state"].as_str()),
            (StatusCode::OK, Some("active")),
            "{store}: {v}"
        );
        let id = deliveries(&f, "flaky").await[0]["id"].as_u64().expect("id");
        call(
            &f.app,
            "POST",
            &format!("/api/v1/notify/flaky/deliveries/{id}/redeliver"),
            Some(&f.admin),
            None,
        )
        .await;
        eventually("delivered after all", PATIENCE, || async {
            (deliveries(&f, "flaky").await[0]["state"] == "delivered").then_some(())
        })
        .await;
        f.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_goes_offline_once_and_comes_back_online() {
    let cfg = config(None);
    for (store, f) in fixtures_config("notify_offline", &cfg).await {
        start_notify(&f, &cfg).await;
        let hook = WebhookReceiver::start().await;
        // By name: each send goes through the client's guarded resolver.
        let by_name = hook.url.replace("127.0.0.1", "localhost");
        let (s, v) = add(
            &f,
            json!({"name": "noc", "webhook": by_name,
            "events": ["device.offline", "device.online"]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        hook.set_secret(v["secret"].as_str().expect("secret"));
        let (s, v) = call(
            &f.app,
            "PUT",
            "/api/v1/notify-settings",
            Some(&f.admin),
            json_body(&json!({"offline_after_s": 600})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        let token = enroll_as(&f, "OFF-1", "acme-mfp-9000").await;
        report(&f, &token, "OFF-1", 1).await;
        f.clock.advance(Duration::from_secs(599));
        fleetcare_server::notify::sweep(&f.state.ctx, &f.state.notify, false).await;
        f.clock.advance(Duration::from_secs(2));
        fleetcare_server::notify::sweep(&f.state.ctx, &f.state.notify, false).await;
        fleetcare_server::notify::sweep(&f.state.ctx, &f.state.notify, false).await;
        let off = eventually("device.offline", PATIENCE, || {
            let hook = hook.clone();
            async move {
                hook.received()
                    .into_iter()
                    .find(|r| r.event_type == "device.offline")
            }
        })
        .await;
        assert!(off.signature_ok, "{store}");
        assert_eq!(off.body["device"]["device_id"], "OFF-1");
        assert_eq!(
            off.body["data"]["offline"]["silent_s"], 601,
            "{store}: {}",
            off.body
        );
        report(&f, &token, "OFF-1", 2).await;
        eventually("device.online", PATIENCE, || {
            let hook = hook.clone();
            async move {
                hook.received()
                    .into_iter()
                    .find(|r| r.event_type == "device.online")
            }
        })
        .await;
        // Once each: more sweeps while it reports raise nothing.
        fleetcare_server::notify::sweep(&f.state.ctx, &f.state.notify, false).await;
        let kinds: Vec<String> = hook.received().into_iter().map(|r| r.event_type).collect();
        assert_eq!(kinds, ["device.offline", "device.online"], "{store}");
        f.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_and_hostile_receivers_bounded() {
    let cfg = config(None);
    let f = fixture_config(cfg.clone()).await;
    start_notify(&f, &cfg).await;
    for (body, says) in [
        (
            json!({"name": "a", "webhook": "ftp://127.0.0.1/x"}),
            "http:// or https://",
        ),
        (
            json!({"name": "a", "webhook": "http://169.254.169.254/latest/meta-data"}),
            "link-local",
        ),
        (
            json!({"name": "a", "webhook": "http://[fd00:ec2::254]/"}),
            "metadata",
        ),
        (
            json!({"name": "a", "webhook": "http://user:pw@127.0.0.1/"}),
            "no credentials",
        ),
        (
            json!({"name": "a", "email": ["not an address"]}),
            "not an e-mail address",
        ),
        (
            json!({"name": "a", "webhook": "http://127.0.0.1:1/", "email": ["x@example.test"]}),
            "one of the two",
        ),
        (
            json!({"name": "a", "webhook": "http://127.0.0.1:1/", "events": ["trouble.exploded"]}),
            "not an event type",
        ),
        (
            json!({"name": "a", "webhook": "http://127.0.0.1:1/", "filter": "model = "}),
            "filter",
        ),
        (
            json!({"name": "a", "webhook": "http://127.0.0.1:1/", "min_severity": "loud"}),
            "min_severity",
        ),
        (
            json!({"name": "a", "webhook": "http://127.0.0.1:1/", "digest_minutes": 5}),
            "only for e-mail",
        ),
        (
            json!({"name": "bad name!", "webhook": "http://127.0.0.1:1/"}),
            "letters, digits",
        ),
    ] {
        let (s, v) = add(&f, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v.to_string().contains(says), "{body}: {v}");
    }
    let (_, list) = call(&f.app, "GET", "/api/v1/notify", Some(&f.admin), None).await;
    assert_eq!(list["subscriptions"], json!([]), "nothing was added");
    // Receivers that redirect, stall or answer at length.
    let hook = WebhookReceiver::start().await;
    for (name, mode, says) in [
        ("redirects", Mode::Redirect, "redirects are not followed"),
        ("stalls", Mode::Slow(Duration::from_secs(5)), "time limit"),
        ("talks", Mode::Huge(1 << 20), "answered 500"),
    ] {
        hook.set_mode(mode);
        let (s, v) = add(&f, json!({"name": name, "webhook": hook.url})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        call(
            &f.app,
            "POST",
            &format!("/api/v1/notify/{name}/test"),
            Some(&f.admin),
            None,
        )
        .await;
        let d = eventually("a failed attempt", PATIENCE, || async {
            deliveries(&f, name)
                .await
                .into_iter()
                .find(|d| d["last_error"].is_string())
        })
        .await;
        let err = d["last_error"].as_str().unwrap_or("");
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            err.len() < 4200,
            "{name}: the answer read is bounded ({} bytes)",
            err.len()
        );
        call(
            &f.app,
            "DELETE",
            &format!("/api/v1/notify/{name}"),
            Some(&f.admin),
            None,
        )
        .await;
    }
    // A viewer lists subscriptions but may not add one.
    let (s, v) = call(
        &f.app,
        "POST",
        "/api/v1/tokens",
        Some(&f.admin),
        json_body(&json!({"name": "watcher", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let viewer = v["token"].as_str().expect("token").to_owned();
    let (_, mine) = add(
        &f,
        json!({"name": "chat", "webhook": format!("{}?token=sekrit", hook.url)}),
    )
    .await;
    assert!(
        mine["subscription"]["target"][0]
            .as_str()
            .unwrap_or("")
            .contains("sekrit"),
        "the admin sees it: {mine}"
    );
    let (s, v) = call(&f.app, "GET", "/api/v1/notify", Some(&viewer), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["subscriptions"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, v2) = call(&f.app, "GET", "/api/v1/notify/chat", Some(&viewer), None).await;
    assert!(
        !v2.to_string().contains("sekrit") && !v.to_string().contains("sekrit"),
        "a viewer sees the origin only: {v} {v2}"
    );
    assert!(
        v2["target"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("http://127.0.0.1:"),
        "{v2}"
    );
    let (s, _) = call(
        &f.app,
        "POST",
        "/api/v1/notify",
        Some(&viewer),
        json_body(&json!({"name": "mine", "webhook": hook.url})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_events_make_one_digest_per_window() {
    let maildir = tempfile::tempdir().expect("tempdir");
    let Some(mailbox) = Mailbox::start(maildir.path().join("mail")).await else {
        return;
    };
    let cfg = config(Some(mailbox.port));
    let f = fixture_config(cfg.clone()).await;
    start_notify(&f, &cfg).await;
    let (s, v) = add(
        &f,
        json!({"name": "desk", "email": ["desk@example.test"], "digest_minutes": 10}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let test = || {
        call(
            &f.app,
            "POST",
            "/api/v1/notify/desk/test",
            Some(&f.admin),
            None,
        )
    };
    test().await;
    eventually("the first mail", PATIENCE, || {
        let n = mailbox.mails().len();
        async move { (n == 1).then_some(()) }
    })
    .await;
    test().await;
    test().await;
    // Within the window the two wait for its end.
    let waiting = eventually("two deliveries wait for the window", PATIENCE, || async {
        let ds = deliveries(&f, "desk").await;
        let waiting: Vec<Value> = ds
            .into_iter()
            .filter(|d| d["state"] == "pending" && d["next_attempt_at"].is_string())
            .collect();
        (waiting.len() == 2).then_some(waiting)
    })
    .await;
    assert!(waiting.iter().all(|d| d["attempts"] == 0), "{waiting:?}");
    assert_eq!(
        mailbox.mails().len(),
        1,
        "nothing more mailed within the window"
    );
    f.clock.advance(Duration::from_secs(600));
    let digest = eventually("the digest", PATIENCE, || {
        let mails = mailbox.mails();
        async move { (mails.len() == 2).then(|| mails[1].clone()) }
    })
    .await;
    assert!(
        digest.contains("Subject: [Fleetcare] 2 notifications: 2 test"),
        "{digest}"
    );
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advice_a_paused_rollout_and_a_failed_job_arrive_with_their_objects() {
    use fleetcare_store::{NewJob, NewNotification, NewRollout, Transition};
    let cfg = config(None);
    for (store, f) in fixtures_config("notify_objects", &cfg).await {
        start_notify(&f, &cfg).await;
        let hook = WebhookReceiver::start().await;
        let (s, v) = add(
            &f,
            json!({"name": "ops", "webhook": hook.url,
                   "events": ["advice.created", "rollout.paused", "job.failed"]}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{store}: {v}");
        let token = enroll_as(&f, "OBJ-1", "acme-mfp-9000").await;
        report(&f, &token, "OBJ-1", 1).await;
        let key = fleetcare_store::DeviceKey {
            tenant: f.tenant,
            device_id: fleetcare_core::DeviceId::parse("OBJ-1").expect("id"),
        };
        let body = json!({"summary": "the fuser needs revision B",
            "recommendations": [{"rank": 1, "hardware": [], "software": [], "summary": "fit fus-7 rev B"}]});
        f.store
            .notify(
                &key,
                &NewNotification {
                    key: "k".into(),
                    kind: "compat_advice".into(),
                    title: "Hardware advice".into(),
                    body_json: body.to_string(),
                    catalog_revision: None,
                    replaces: true,
                },
                common::NOW,
            )
            .await
            .expect("advice");
        let rollout = f
            .store
            .create_rollout(
                f.tenant,
                &NewRollout {
                    name: "fw-5.3".into(),
                    spec_json: "{}".into(),
                    thresholds_json: "{}".into(),
                    waves: 1,
                    state: "running".into(),
                    created_by: "alice".into(),
                },
                common::NOW,
            )
            .await
            .expect("rollout");
        f.store
            .set_rollout_state(
                f.tenant,
                rollout,
                &["running"],
                "paused",
                Some("3 of 10 failed"),
                common::NOW,
            )
            .await
            .expect("pause");
        let job = f
            .store
            .create_job(
                &key,
                &NewJob {
                    origin: "operator".into(),
                    state: "queued".into(),
                    steps_json: "[]".into(),
                    catalog_revision: None,
                    created_by: "op".into(),
                    expires_at_ms: common::NOW + 100_000,
                },
                common::NOW,
            )
            .await
            .expect("job");
        let mut tr = Transition::new(&["queued"], "failed");
        tr.reason = Some("hash_mismatch");
        f.store
            .transition_job(f.tenant, job, &tr, common::NOW)
            .await
            .expect("fail");
        let got = eventually("three events", PATIENCE, || {
            let hook = hook.clone();
            async move {
                let r = hook.received();
                (r.len() == 3).then_some(r)
            }
        })
        .await;
        let by = |t: &str| {
            got.iter()
                .find(|r| r.event_type == t)
                .map(|r| r.body.clone())
                .expect(t)
        };
        let advice = by("advice.created");
        assert_eq!(
            advice["data"]["advice"]["recommendations"][0]["summary"], "fit fus-7 rev B",
            "{store}: {advice}"
        );
        assert_eq!(advice["device"]["device_id"], "OBJ-1");
        let paused = by("rollout.paused");
        assert_eq!(
            paused["summary"], "Rollout fw-5.3 paused: 3 of 10 failed",
            "{store}: {paused}"
        );
        assert!(paused.get("device").is_none(), "{store}: about no device");
        let failed = by("job.failed");
        assert_eq!(failed["data"]["job"]["id"], job, "{store}: {failed}");
        assert_eq!(
            failed["data"]["job"]["reason"], "hash_mismatch",
            "{store}: {failed}"
        );
        f.finish().await;
    }
}
