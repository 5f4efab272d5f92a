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
        err.contains("unknown or revoked operator token (401"),
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
