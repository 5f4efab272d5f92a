//! `fleetcare serve` and the operator commands, as a user runs them, on both stores.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{PATIENCE, cli, read_secret, serve};
use fleetcare_agent::source::InventoryFile;
use fleetcare_agent::{Agent, AgentConfig};
use fleetcare_store::testing::{TempPostgres, postgres_url};
use fleetcare_testkit::{eventually, within};
use serde_json::Value;

fn inventory(id: &str, fuser: &str) -> String {
    format!(
        "[device]\nid = \"{id}\"\nmodel = \"acme-printer-p500\"\n\
         [[unit]]\nslot = \"controller\"\nkind = \"controller\"\nmodel = \"ctl-lite\"\nserial = \"C-{id}\"\nhw_revision = \"C\"\n\
         [[unit.software]]\nproduct = \"ctl-lite-firmware\"\nmaker = \"acme\"\nversion = \"1.9.12\"\n\
         [[unit]]\nslot = \"fuser\"\nkind = \"fuser\"\nmodel = \"fus-2\"\nserial = \"{fuser}\"\n"
    )
}

/// The whole operator story against a running `fleetcare serve`.
async fn operator_story(data_dir: &Path, extra: &[&str]) {
    let served = serve(data_dir, extra).await;
    let url = served.url.clone();
    let token_path = data_dir.join("admin-token");
    let key_path = data_dir.join("enrollment-key");
    for p in [&token_path, &key_path] {
        let mode = std::fs::metadata(p)
            .expect("written on first start")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{} is private", p.display());
    }
    let token = read_secret(&token_path);

    // A real agent, in process.
    let inv = data_dir.join("inventory.toml");
    std::fs::write(&inv, inventory("CLI-1", "F-1")).expect("write");
    let mut cfg = AgentConfig::new(&url, data_dir.join("agent"));
    cfg.enrollment_key = Some(read_secret(&key_path));
    cfg.backoff_max = Duration::from_millis(500);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(Agent::new(cfg, InventoryFile::new(&inv)).run(shutdown));

    let listed: Value = eventually("the device is listed with its report", PATIENCE, || async {
        let (ok, out, _) = cli(&url, &token, &["devices", "list", "--json"]).await;
        let v: Value = serde_json::from_str(&out).ok()?;
        (ok && v[0]["device_id"] == "CLI-1"
            && v[0]["online"] == true
            && v[0]["last_report"]["trigger"] == "connect")
            .then_some(v)
    })
    .await;
    assert_eq!(listed[0]["units"], 2);

    // `devices show ID --json` has the fields of the contract.
    let (ok, out, err) = cli(&url, &token, &["devices", "show", "CLI-1", "--json"]).await;
    assert!(ok, "{err}");
    let d: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(d["device_id"], "CLI-1");
    assert_eq!(d["model"], "acme-printer-p500");
    assert_eq!(d["online"], true);
    assert_eq!(d["last_report"]["trigger"], "connect");
    assert!(d["last_report"]["received_at"].is_string());
    let ctl = &d["units"][0];
    for field in ["slot", "kind", "model", "serial", "hw_revision"] {
        assert!(ctl[field].is_string(), "units[0].{field}");
    }
    assert_eq!(ctl["software"][0]["product"], "ctl-lite-firmware");
    assert_eq!(ctl["software"][0]["maker"], "acme");
    assert_eq!(ctl["software"][0]["version"], "1.9.12");

    // Human output: aligned tables.
    let (ok, out, _) = cli(&url, &token, &["devices", "show", "CLI-1"]).await;
    assert!(ok);
    assert!(
        out.contains("SLOT        KIND        MODEL     SERIAL   REV  SOFTWARE"),
        "{out}"
    );
    assert!(out.contains("acme/ctl-lite-firmware 1.9.12"), "{out}");

    // A unit replaced shows up in `devices history` within 2 seconds.
    std::fs::write(&inv, inventory("CLI-1", "F-2")).expect("write");
    within(
        "the replacement in `devices history`",
        Duration::from_secs(2),
        || async {
            let (_, out, _) = cli(&url, &token, &["devices", "history", "CLI-1"]).await;
            out.contains(
                "fuser: unit replaced: fuser fus-2 #F-1 rev \"\" -> fuser fus-2 #F-2 rev \"\"",
            )
            .then_some(())
        },
    )
    .await;
    let (_, out, _) = cli(&url, &token, &["devices", "history", "CLI-1"]).await;
    assert!(out.starts_with("OBSERVED"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" change ") && l.contains("unit replaced")),
        "{out}"
    );

    // `devices request-report`: the fresh report is stored within a second.
    let (ok, out, err) = cli(
        &url,
        &token,
        &["devices", "request-report", "CLI-1", "--json"],
    )
    .await;
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["via"], "push");
    assert_eq!(r["report"]["trigger"], "request");
    let (ok, out, _) = cli(&url, &token, &["devices", "request-report", "CLI-1"]).await;
    assert!(ok && out.contains("stored at"), "{out}");
    let ms: u64 = out
        .split(" ms after")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.parse().ok())
        .expect("the command says how long it took");
    assert!(ms < 1000, "request-report took {ms} ms");

    let (ok, out, _) = cli(&url, &token, &["devices", "set-interval", "CLI-1", "600"]).await;
    assert!(ok, "{out}");
    let (_, out, _) = cli(&url, &token, &["devices", "show", "CLI-1", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["report_interval_s"],
        600
    );

    // Errors are clear and exit non-zero.
    let (ok, _, err) = cli(&url, &token, &["devices", "show", "NOPE"]).await;
    assert!(!ok);
    assert!(err.contains("device NOPE not found (404"), "{err}");
    let (ok, _, err) = cli(&url, "fco_wrong", &["devices", "list"]).await;
    assert!(!ok);
    assert!(
        err.contains("unknown, revoked or expired operator token or session (401"),
        "{err}"
    );
    let (ok, _, err) = cli(&url, &token, &["devices", "show", "../x"]).await;
    assert!(!ok && err.contains("not a device id"), "{err}");

    let _ = stop.send(true);
    agent
        .await
        .expect("agent task")
        .expect("agent ends cleanly");
    let status = served.terminate().await;
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
}

#[tokio::test]
async fn operator_commands_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    operator_story(dir.path(), &[]).await;
    // The store was left tidy and whole.
    let store = fleetcare_store::Store::open_sqlite(dir.path())
        .await
        .expect("reopen");
    assert_eq!(store.integrity_check().await.expect("check"), "ok");
    store.close().await.expect("close");
}

#[tokio::test]
async fn operator_commands_on_postgresql() {
    let Some(url) = postgres_url("operator_commands_on_postgresql") else {
        return;
    };
    let db = TempPostgres::create(&url).await.expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    operator_story(dir.path(), &["--database-url", &db.url]).await;
    db.drop_database().await.expect("drop");
}

#[tokio::test]
async fn a_second_start_keeps_the_secrets_and_bad_configs_are_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = serve(dir.path(), &[]).await;
    let token = read_secret(&dir.path().join("admin-token"));
    assert!(first.terminate().await.success());
    let again = serve(dir.path(), &[]).await;
    assert_eq!(read_secret(&dir.path().join("admin-token")), token, "kept");
    let (ok, _, err) = cli(&again.url, &token, &["devices", "list"]).await;
    assert!(ok, "the kept token still works: {err}");
    assert!(again.terminate().await.success());

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"nowhere\"\npoll_grace_s = 0\ncolour = \"blue\"\n",
    )
    .expect("write");
    let out = common::fleetcare()
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["`listen`", "`poll_grace_s`", "unknown key `colour`"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

/// Signing offline, publishing, and a job, as an operator runs them.
#[tokio::test]
async fn keys_releases_and_jobs_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &[]).await;
    let url = served.url.clone();
    let token = read_secret(&data.join("admin-token"));
    let keys = dir.path().join("keys");
    let k = keys.display().to_string();
    let run = |args: Vec<String>| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&url, &token, &a).await
        }
    };
    let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();

    let (ok, out, err) = run(args(&format!("keys generate --out {k}"))).await;
    assert!(ok, "{err}");
    assert!(out.contains("root.json"), "{out}");
    for f in ["root-1.key.json", "release-1.key.json"] {
        let mode = std::fs::metadata(keys.join(f))
            .expect(f)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} is private");
    }
    let (ok, _, err) = run(args(&format!("keys generate --out {k}"))).await;
    assert!(
        !ok && err.contains("exists"),
        "never overwrites keys: {err}"
    );
    let (ok, out, err) = run(args(&format!("keys publish {k}/keys.json"))).await;
    assert!(ok, "{err}");
    assert!(out.contains("key list version 1 published"), "{out}");

    let fw = dir.path().join("ctl-lite-2.0.0.bin");
    std::fs::write(&fw, vec![42u8; 300_000]).expect("write");
    let manifest = dir.path().join("ctl-lite-2.0.0.json");
    let (ok, out, err) = run(args(&format!(
        "release sign --key {k}/release-1.key.json --product ctl-lite-firmware --maker acme \
         --version 2.0.0 --counter 20 --target ctl-lite:C --out {} {}",
        manifest.display(),
        fw.display()
    )))
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains("ctl-lite-firmware 2.0.0 (counter 20)"),
        "{out}"
    );
    // A file that is not the one signed is refused before anything is sent.
    let other = dir.path().join("elsewhere");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("ctl-lite-2.0.0.bin"), b"not it").expect("write");
    let (ok, _, err) = run(args(&format!(
        "release publish {} {}",
        manifest.display(),
        other.join("ctl-lite-2.0.0.bin").display()
    )))
    .await;
    assert!(
        !ok && err.contains("is not the file the manifest signed"),
        "{err}"
    );
    let (ok, out, err) = run(args(&format!(
        "release publish --json {} {}",
        manifest.display(),
        fw.display()
    )))
    .await;
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (r["version"].as_str(), r["complete"].as_bool()),
        (Some("2.0.0"), Some(true))
    );
    let (ok, out, _) = run(args("release list")).await;
    assert!(
        ok && out.contains("ctl-lite-firmware") && out.contains("yes"),
        "{out}"
    );

    // A device that trusts these keys, with A/B units.
    let base = dir.path().join("device");
    std::fs::create_dir_all(&base).expect("mkdir");
    let inv = base.join("inventory.toml");
    std::fs::write(&inv, inventory("CLI-D", "F-1")).expect("write");
    let mut cfg = AgentConfig::new(&url, base.join("agent"));
    cfg.enrollment_key = Some(read_secret(&data.join("enrollment-key")));
    cfg.trust_root = Some(keys.join("root.json"));
    cfg.units_dir = Some(base.join("units"));
    cfg.backoff_max = Duration::from_millis(500);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(Agent::new(cfg, InventoryFile::new(&inv)).run(shutdown));
    eventually("the device reported its structure", PATIENCE, || async {
        let (ok, out, _) = cli(&url, &token, &["devices", "show", "CLI-D", "--json"]).await;
        let d: Value = serde_json::from_str(&out).ok()?;
        (ok && d["units"].as_array().is_some_and(|u| !u.is_empty())).then_some(())
    })
    .await;
    let (ok, _, err) = run(args(
        "jobs create --device NOPE-1 --install controller:ctl-lite-firmware=2.0.0",
    ))
    .await;
    assert!(!ok && err.contains("NOPE-1"), "{err}");
    let (ok, out, err) = run(args(
        "jobs create --json --device CLI-D --install controller:ctl-lite-firmware=2.0.0",
    ))
    .await;
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(&out).expect("json")["id"]
        .as_u64()
        .expect("id")
        .to_string();
    let shown = eventually("the job succeeded", PATIENCE, || async {
        let (_, out, _) = cli(&url, &token, &["jobs", "show", &id]).await;
        out.contains("succeeded").then_some(out)
    })
    .await;
    assert!(
        shown.contains("install ctl-lite-firmware 2.0.0 on the controller"),
        "{shown}"
    );
    eventually(
        "the new version in the device's structure",
        PATIENCE,
        || async {
            let (_, out, _) = cli(&url, &token, &["devices", "show", "CLI-D"]).await;
            out.contains("acme/ctl-lite-firmware 2.0.0").then_some(())
        },
    )
    .await;

    // Rotation: a key list signed by the root, naming a new release key.
    let (ok, _, err) = run(args(&format!(
        "keys sign-list --root {k}/root-1.key.json --release {k}/release-1.pub.json --version 2 --out {k}/keys-2.json"
    )))
    .await;
    assert!(ok, "{err}");
    let (ok, out, err) = run(args(&format!("keys publish {k}/keys-2.json"))).await;
    assert!(ok && out.contains("version 2"), "{out}{err}");
    let (ok, _, err) = run(args(&format!("keys publish {k}/keys.json"))).await;
    assert!(
        !ok && err.contains("older"),
        "an older key list is refused: {err}"
    );

    let _ = stop.send(true);
    agent.await.expect("task").expect("agent ends");
}

/// The error log from the command line: ask a device for it, read it, keep a schedule.
#[tokio::test]
async fn errors_and_error_schedules_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &[]).await;
    let url = served.url.clone();
    let token = read_secret(&data.join("admin-token"));
    let inv = dir.path().join("inventory.toml");
    std::fs::write(&inv, inventory("CLI-E", "F-1")).expect("write");
    let mut cfg = AgentConfig::new(&url, dir.path().join("agent"));
    cfg.enrollment_key = Some(read_secret(&data.join("enrollment-key")));
    cfg.backoff_max = Duration::from_millis(500);
    let journal_dir = cfg.data_dir.clone();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(Agent::new(cfg, InventoryFile::new(&inv)).run(shutdown));
    eventually("the device online", PATIENCE, || async {
        let (ok, out, _) = cli(&url, &token, &["devices", "show", "CLI-E", "--json"]).await;
        let d: Value = serde_json::from_str(&out).ok()?;
        (ok && d["online"] == true).then_some(())
    })
    .await;
    // The device's software logs a warning (not sent at once), then the operator asks.
    fleetcare_agent::journal::Journal::open(
        &journal_dir,
        fleetcare_agent::journal::JournalLimits::default(),
        false,
    )
    .expect("journal")
    .append(
        &fleetcare_agent::journal::NewEvent {
            slot: "fuser".into(),
            code: "J-204".into(),
            severity: "warning".into(),
            detail: Some("fuser temperature low".into()),
            ..Default::default()
        },
        1_790_000_000_000,
    )
    .expect("logged");
    let (ok, out, err) = cli(&url, &token, &["devices", "request-errors", "CLI-E"]).await;
    assert!(ok && out.contains("asked CLI-E"), "{out}{err}");
    let shown = eventually("the event in `fleetcare errors`", PATIENCE, || async {
        let (ok, out, _) = cli(&url, &token, &["errors", "CLI-E"]).await;
        (ok && out.contains("J-204")).then_some(out)
    })
    .await;
    assert!(shown.starts_with("AT"), "{shown}");
    assert!(
        shown.contains("warning")
            && shown.contains("request")
            && shown.contains("fuser temperature low"),
        "{shown}"
    );
    let (ok, out, _) = cli(&url, &token, &["errors", "CLI-E", "--code", "J-999"]).await;
    assert!(ok && !out.contains("J-204"), "{out}");
    let (ok, _, err) = cli(
        &url,
        &token,
        &["errors", "CLI-E", "--since", "last tuesday"],
    )
    .await;
    assert!(!ok && err.contains("RFC 3339"), "{err}");

    let (ok, out, err) = cli(
        &url,
        &token,
        &[
            "error-schedule",
            "set",
            "--model",
            "acme-printer-p500",
            "--every",
            "3600",
        ],
    )
    .await;
    assert!(
        ok && out.contains("model") && out.contains("3600 s"),
        "{out}{err}"
    );
    let (ok, out, _) = cli(&url, &token, &["error-schedule", "list"]).await;
    assert!(ok && out.contains("acme-printer-p500"), "{out}");
    let (ok, out, _) = cli(
        &url,
        &token,
        &["error-schedule", "remove", "--model", "acme-printer-p500"],
    )
    .await;
    assert!(ok && !out.contains("acme-printer-p500"), "{out}");
    let (ok, _, err) = cli(
        &url,
        &token,
        &["error-schedule", "set", "--device", "CLI-E", "--every", "5"],
    )
    .await;
    assert!(!ok && err.contains("interval_s"), "{err}");

    // Diagnosis: rules refused whole, then loaded; a trouble from three overheats.
    let bad = dir.path().join("bad-rules.toml");
    std::fs::write(&bad, "[[rule]]\nid = \"x\"\n").expect("write");
    let (ok, _, err) = cli(
        &url,
        &token,
        &["rules", "load", bad.to_str().expect("utf-8")],
    )
    .await;
    assert!(!ok && err.contains("refused"), "{err}");
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules.toml");
    let (ok, out, err) = cli(&url, &token, &["rules", "load", rules]).await;
    assert!(
        ok && out.contains("rules revision 1 loaded: 5 trouble rule(s)"),
        "{out}{err}"
    );
    let (ok, out, _) = cli(&url, &token, &["rules", "show"]).await;
    assert!(
        ok && out.contains("fuser-overheat") && out.contains("install ctl-firmware 5.3.0"),
        "{out}"
    );
    let journal = fleetcare_agent::journal::Journal::open(
        &journal_dir,
        fleetcare_agent::journal::JournalLimits::default(),
        false,
    )
    .expect("journal");
    for i in 0..3 {
        journal
            .append(
                &fleetcare_agent::journal::NewEvent {
                    slot: "fuser".into(),
                    code: "SC541".into(),
                    severity: "error".into(),
                    ..Default::default()
                },
                1_790_000_000_000 + i,
            )
            .expect("logged");
    }
    let (ok, out, _) = cli(&url, &token, &["devices", "request-errors", "CLI-E"]).await;
    assert!(ok, "{out}");
    let listed = eventually(
        "the trouble in `fleetcare troubles list`",
        PATIENCE,
        || async {
            let (ok, out, _) = cli(&url, &token, &["troubles", "list", "--json"]).await;
            let v: Value = serde_json::from_str(&out).ok()?;
            (ok && v["troubles"].as_array()?.len() == 1).then_some(v)
        },
    )
    .await;
    let id = listed["troubles"][0]["id"]
        .as_u64()
        .expect("id")
        .to_string();
    let (ok, out, _) = cli(&url, &token, &["troubles", "list"]).await;
    assert!(
        ok && out.starts_with("ID") && out.contains("Fuser overheats repeatedly"),
        "{out}"
    );
    let (ok, out, _) = cli(&url, &token, &["troubles", "show", &id]).await;
    assert!(
        ok && out.contains("thermistor") && out.contains("evidence    events 1/"),
        "{out}"
    );
    let (ok, out, _) = cli(&url, &token, &["troubles", "ack", &id]).await;
    assert!(ok && out.contains("acknowledged"), "{out}");
    let (ok, out, _) = cli(&url, &token, &["devices", "about", "CLI-E"]).await;
    assert!(
        ok && out.contains("trouble  #") && out.contains("Fuser overheats"),
        "{out}"
    );
    let (ok, out, _) = cli(&url, &token, &["troubles", "resolve", &id]).await;
    assert!(ok && out.contains("resolved    by admin"), "{out}");
    let (ok, _, err) = cli(&url, &token, &["troubles", "resolve", &id]).await;
    assert!(!ok && err.contains("resolved already"), "{err}");
    let (ok, out, _) = cli(&url, &token, &["troubles", "list", "--state", "resolved"]).await;
    assert!(ok && out.contains("resolved"), "{out}");

    let _ = stop.send(true);
    agent.await.expect("task").expect("agent ends");
}

#[tokio::test]
async fn tokens_roles_and_the_audit_log_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &[]).await;
    let url = served.url.clone();
    let admin = read_secret(&data.join("admin-token"));
    let (ok, out, err) = cli(
        &url,
        &admin,
        &["tokens", "create", "vic", "--role", "viewer", "--json"],
    )
    .await;
    assert!(ok, "{err}");
    let made: Value = serde_json::from_str(&out).expect("json");
    let viewer = made["token"].as_str().expect("token").to_owned();
    let id = made["info"]["id"].as_str().expect("id").to_owned();
    let (ok, out, _) = cli(&url, &viewer, &["whoami"]).await;
    assert!(ok && out.contains("vic (viewer)"), "{out}");
    // A viewer reads, and may not change anything: refused, and audited.
    let (ok, _, _) = cli(&url, &viewer, &["devices", "list"]).await;
    assert!(ok);
    let (ok, _, err) = cli(
        &url,
        &viewer,
        &["tokens", "create", "mallory", "--role", "admin"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("may not token.create"), "{err}");
    let (ok, out, err) = cli(&url, &admin, &["audit", "--json"]).await;
    assert!(ok, "{err}");
    let log: Value = serde_json::from_str(&out).expect("json");
    let newest = &log["entries"][0];
    assert_eq!(newest["actor"], "vic", "{log}");
    assert_eq!(newest["action"], "token.create");
    assert_eq!(newest["outcome"], "denied");
    let (ok, out, _) = cli(&url, &admin, &["tokens", "list"]).await;
    assert!(ok && out.contains(&id) && !out.contains(&viewer), "{out}");
    let (ok, _, err) = cli(&url, &admin, &["tokens", "revoke", &id]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&url, &viewer, &["devices", "list"]).await;
    assert!(!ok && err.contains("revoked"), "{err}");
    let (ok, out, _) = cli(&url, &viewer, &["audit"]).await;
    assert!(!ok, "{out}");

    // Customer organizations: created with their key, listed, and entered with --tenant.
    let (ok, out, err) = cli(&url, &admin, &["customers", "create", "acme", "--json"]).await;
    assert!(ok, "{err}");
    let acme: Value = serde_json::from_str(&out).expect("json");
    assert!(
        acme["enrollment_key"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "{acme}"
    );
    let (ok, out, err) = cli(&url, &admin, &["customers", "list"]).await;
    assert!(ok && out.contains("acme"), "{out}{err}");
    let (ok, out, err) = cli(
        &url,
        &admin,
        &[
            "tokens", "create", "ann", "--role", "viewer", "--tenant", "acme", "--json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let ann: Value = serde_json::from_str(&out).expect("json");
    let ann = ann["token"].as_str().expect("token").to_owned();
    let (ok, out, _) = cli(&url, &ann, &["whoami", "--json"]).await;
    let me: Value = serde_json::from_str(&out).expect("json");
    assert!(
        ok && me["tenant_id"] != made_tenant(&url, &admin).await,
        "{me}"
    );
    let (ok, _, err) = cli(&url, &admin, &["devices", "list", "--tenant", "initech"]).await;
    assert!(!ok && err.contains("not found"), "{err}");

    // Dashboard accounts: the password from a file, never an argument.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "a long enough passphrase\n").expect("write");
    let pw = pw.to_string_lossy().into_owned();
    let (ok, _, err) = cli(
        &url,
        &admin,
        &[
            "accounts",
            "create",
            "olga",
            "--role",
            "viewer",
            "--password-file",
            &pw,
        ],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&url, &admin, &["accounts", "list"]).await;
    assert!(
        ok && out.contains("olga") && out.contains("viewer"),
        "{out}{err}"
    );
    let (ok, _, err) = cli(&url, &admin, &["accounts", "disable", "olga"]).await;
    assert!(ok, "{err}");
    served.kill9().await;
}

/// The tenant id of `token`'s caller.
async fn made_tenant(url: &str, token: &str) -> Value {
    let (ok, out, err) = cli(url, token, &["whoami", "--json"]).await;
    assert!(ok, "{err}");
    let me: Value = serde_json::from_str(&out).expect("json");
    me["tenant_id"].clone()
}

/// Meters from the command line: the counters a device reports, kept and shown by day.
#[tokio::test]
async fn meters_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &[]).await;
    let url = served.url.clone();
    let token = read_secret(&data.join("admin-token"));
    let inv = dir.path().join("inventory.toml");
    let with_pages = |pages: u32| {
        format!(
            "{}\n[operating]\npages_total = {pages}\n\"toner.black\" = 80\n",
            inventory("CLI-M", "F-1")
        )
    };
    std::fs::write(&inv, with_pages(1000)).expect("write");
    let mut cfg = AgentConfig::new(&url, dir.path().join("agent"));
    cfg.enrollment_key = Some(read_secret(&data.join("enrollment-key")));
    cfg.backoff_max = Duration::from_millis(500);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(Agent::new(cfg, InventoryFile::new(&inv)).run(shutdown));
    eventually("the first reading", PATIENCE, || async {
        let (ok, out, _) = cli(&url, &token, &["meters", "CLI-M"]).await;
        (ok && out.contains("pages_total")).then_some(())
    })
    .await;
    std::fs::write(&inv, with_pages(1250)).expect("write");
    let (ok, out, err) = cli(&url, &token, &["devices", "request-report", "CLI-M"]).await;
    assert!(ok, "{out}{err}");
    let shown = eventually("the second reading", PATIENCE, || async {
        let (ok, out, _) = cli(
            &url,
            &token,
            &["meters", "CLI-M", "--counter", "pages_total"],
        )
        .await;
        (ok && out.contains("1250")).then_some(out)
    })
    .await;
    assert!(shown.starts_with("METER"), "{shown}");
    assert!(
        shown.contains("1000") && !shown.contains("toner.black"),
        "{shown}"
    );
    let (ok, out, _) = cli(
        &url,
        &token,
        &["meters", "CLI-M", "--json", "--every", "hour"],
    )
    .await;
    let v: Value = serde_json::from_str(&out).expect("json");
    assert!(
        ok && v["every"] == "hour" && v["meters"].as_array().is_some_and(|m| m.len() == 2),
        "{out}"
    );
    let (ok, _, err) = cli(&url, &token, &["meters", "CLI-M", "--every", "week"]).await;
    assert!(!ok && err.contains("hour or day"), "{err}");
    let (ok, _, err) = cli(&url, &token, &["meters", "CLI-M", "--since", "last week"]).await;
    assert!(!ok && err.contains("RFC 3339"), "{err}");
    let _ = stop.send(true);
    agent.await.expect("task").expect("agent ends");
}

/// The center asks the kernel for no transparent huge pages: its allocator's 64 KiB pages
/// would otherwise sit in 2 MiB huge pages that stay resident whole (BENCHMARKS.md, B3).
#[tokio::test]
async fn serve_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = serve(&dir.path().join("center"), &[]).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", served.pid()))
        .expect("/proc/PID/status");
    let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) else {
        eprintln!("SKIPPED: this kernel's /proc/PID/status has no THP_enabled line");
        return;
    };
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}
