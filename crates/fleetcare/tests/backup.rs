//! Backup and restore of the embedded store with the real binaries: `fleetcare backup` while
//! the center runs and a device reports without pause, the center killed, `fleetcare restore`
//! into a new data directory, and a center on it that serves the same devices, compatibility,
//! jobs, releases and artifacts; the device carries on with its next sequence number. Restore
//! refuses a directory that holds a store and a file that is not a backup.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{cli, read_secret, serve};
use serde_json::{Value, json};

fn report(id: &str, seq: u64, version: &str) -> Value {
    json!({"device_id": id, "model": "acme-printer-p500", "seq": seq,
        "trigger": if seq == 1 { "connect" } else { "periodic" }, "observed_at_ms": 1_790_000_000_000u64 + seq,
        "units": [{"slot": "controller", "kind": "controller", "model": "ctl-lite",
                   "serial": "CTL-B1", "hw_revision": "C",
                   "software": [{"product": "ctl-lite-firmware", "maker": "acme", "version": version}]}],
        "operating": {"pages_total": 1000 + seq}})
}

/// Send error events `seqs` of boot epoch 1; the watermark the center acknowledges.
async fn errors(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    id: &str,
    seqs: std::ops::RangeInclusive<u64>,
) -> u64 {
    let events: Vec<Value> = seqs
        .map(|seq| {
            json!({"seq": seq, "at_ms": 1_790_000_000_000u64 + seq, "slot": "fuser",
                          "code": "F-101", "severity": "info"})
        })
        .collect();
    let ack: Value = http
        .post(format!("{url}/device/v1/errors"))
        .bearer_auth(token)
        .json(&json!({"device_id": id, "boot_epoch": 1, "trigger": "periodic", "events": events}))
        .send()
        .await
        .expect("errors")
        .json()
        .await
        .expect("ack");
    ack["acked_seq"].as_u64().unwrap_or_else(|| panic!("{ack}"))
}

/// Release keys and ctl-lite-firmware 2.0.0 made of `bytes`, signed and published.
async fn publish(url: &str, token: &str, dir: &std::path::Path, bytes: &[u8]) {
    let keys = dir.join("keys").display().to_string();
    run(url, token, &["keys", "generate", "--out", &keys]).await;
    run(
        url,
        token,
        &["keys", "publish", &format!("{keys}/keys.json")],
    )
    .await;
    let fw = dir.join("ctl-lite-2.0.0.bin");
    std::fs::write(&fw, bytes).expect("firmware");
    let manifest = dir.join("ctl-lite-2.0.0.json").display().to_string();
    let fw = fw.display().to_string();
    let key = format!("{keys}/release-1.key.json");
    run(
        url,
        token,
        &[
            "release",
            "sign",
            "--key",
            &key,
            "--product",
            "ctl-lite-firmware",
            "--maker",
            "acme",
            "--version",
            "2.0.0",
            "--counter",
            "20",
            "--target",
            "ctl-lite:C",
            "--out",
            &manifest,
            &fw,
        ],
    )
    .await;
    run(url, token, &["release", "publish", &manifest, &fw]).await;
}

/// Enroll device `id` with the data directory's enrollment key; its credential.
async fn enroll(http: &reqwest::Client, url: &str, data: &std::path::Path, id: &str) -> String {
    let enrolled: Value = http
        .post(format!("{url}/device/v1/enroll"))
        .json(
            &json!({"enrollment_key": read_secret(&data.join("enrollment-key")),
                      "device_id": id, "model": "acme-printer-p500"}),
        )
        .send()
        .await
        .expect("enroll")
        .json()
        .await
        .expect("json");
    enrolled["device_token"].as_str().expect("token").to_owned()
}

async fn run(url: &str, token: &str, args: &[&str]) -> String {
    let (ok, out, err) = cli(url, token, args).await;
    assert!(ok, "fleetcare {args:?}: {err}");
    out
}

async fn json_of(url: &str, token: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = run(url, token, &a).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn fleetcare_cmd(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare"))
        .args(args)
        .output()
        .expect("fleetcare runs")
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_a_center_its_devices_carry_on_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &[]).await;
    let (url, token) = (served.url.clone(), read_secret(&data.join("admin-token")));
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/catalog.toml");
    run(&url, &token, &["catalog", "load", catalog]).await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    publish(&url, &token, dir.path(), &bytes).await;

    // A device that reports without pause, each report acknowledged.
    let http = reqwest::Client::new();
    let device_token = enroll(&http, &url, &data, "P500-B1").await;
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reporter = {
        let (http, url, device_token) = (http.clone(), url.clone(), device_token.clone());
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seq = 1;
            while !stop.load(Ordering::SeqCst) && seq < 100_000 {
                let r = http
                    .post(format!("{url}/device/v1/reports"))
                    .bearer_auth(&device_token)
                    .json(&report("P500-B1", seq, "1.9.12"))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    acked.store(seq, Ordering::SeqCst);
                    seq += 1;
                }
            }
        })
    };
    fleetcare_testkit::eventually("the device has reported", common::PATIENCE, || async {
        (acked.load(Ordering::SeqCst) >= 20).then_some(())
    })
    .await;
    assert_eq!(
        errors(&http, &url, &device_token, "P500-B1", 1..=10).await,
        10
    );
    let job = json_of(
        &url,
        &token,
        &[
            "jobs",
            "create",
            "--device",
            "P500-B1",
            "--install",
            "controller:ctl-lite-firmware=2.0.0",
        ],
    )
    .await;
    let compat_before = json_of(&url, &token, &["compat", "check", "P500-B1"]).await;

    // The backup, while the device keeps reporting.
    let backup = dir.path().join("center.fcbackup");
    let out = fleetcare_cmd(&[
        "backup".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--out".as_ref(),
        backup.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1 artifact(s) of 300000 bytes"), "{said}");
    let at_backup = acked.load(Ordering::SeqCst);
    fleetcare_testkit::eventually("reports after the backup", common::PATIENCE, || async {
        (acked.load(Ordering::SeqCst) >= at_backup + 10).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    reporter.await.expect("reporter");
    let last = acked.load(Ordering::SeqCst);
    // Acknowledged after the backup: the device deletes them, the restored center never
    // had them.
    assert_eq!(
        errors(&http, &url, &device_token, "P500-B1", 11..=20).await,
        20
    );
    served.kill9().await;

    // Restore: refused into a directory that holds a store, or from a file that is not a
    // backup; then into a new directory.
    let refused = fleetcare_cmd(&[
        "restore".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("holds a store already"));
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a backup").expect("junk");
    let fresh = dir.path().join("restored");
    let refused = fleetcare_cmd(&[
        "restore".as_ref(),
        junk.as_os_str(),
        "--data-dir".as_ref(),
        fresh.as_os_str(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a Fleetcare backup"));
    assert!(
        !fresh.join("fleetcare.db").exists(),
        "a refused restore leaves no store"
    );
    let out = fleetcare_cmd(&[
        "restore".as_ref(),
        backup.as_os_str(),
        "--data-dir".as_ref(),
        fresh.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read_secret(&fresh.join("admin-token")),
        token,
        "the secrets came back"
    );

    let served = serve(&fresh, &[]).await;
    let url = served.url.clone();
    let d = json_of(&url, &token, &["devices", "show", "P500-B1"]).await;
    let restored_seq = d["last_report"]["seq"].as_u64().expect("seq");
    assert!(
        (20..=last).contains(&restored_seq),
        "the backup holds a report between the first 20 and the last ({last}): {restored_seq}"
    );
    assert_eq!(
        json_of(&url, &token, &["compat", "check", "P500-B1"]).await,
        compat_before,
        "the same compatibility"
    );
    let j = json_of(
        &url,
        &token,
        &["jobs", "show", &job["id"].as_u64().expect("id").to_string()],
    )
    .await;
    assert_eq!(j["device_id"], "P500-B1", "{j}");
    let releases = json_of(&url, &token, &["release", "list"]).await;
    assert!(releases.to_string().contains("2.0.0"), "{releases}");
    // The device's credential works, and its artifact is served whole.
    let sha: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let got = http
        .get(format!("{url}/device/v1/artifacts/{sha}"))
        .bearer_auth(&device_token)
        .send()
        .await
        .expect("download");
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), bytes.as_slice());
    // The device carries on: its next report (a sequence number the restored center has not
    // seen) is taken as new, and it is the device's newest.
    let ack: Value = http
        .post(format!("{url}/device/v1/reports"))
        .bearer_auth(&device_token)
        .json(&report("P500-B1", last + 1, "1.9.12"))
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("ack");
    assert_eq!(
        (ack["seq"].as_u64(), ack["duplicate"].as_bool()),
        (Some(last + 1), Some(false)),
        "{ack}"
    );
    let d = json_of(&url, &token, &["devices", "show", "P500-B1"]).await;
    assert_eq!(d["last_report"]["seq"], last + 1, "{d}");
    // Its error log carries on past what was lost: the next batch is acknowledged whole
    // (else the device would keep it and send it again forever).
    assert_eq!(
        errors(&http, &url, &device_token, "P500-B1", 21..=25).await,
        25
    );
    assert_eq!(
        errors(&http, &url, &device_token, "P500-B1", 26..=26).await,
        26
    );
    served.kill9().await;
}

/// PostgreSQL: `pg_dump` of a running center's database and a copy of its data directory
/// (artifacts, secret files), `pg_restore` into a new database, and a center on it that serves
/// the same device, its artifact, and takes its next report.
#[tokio::test]
async fn postgres_pg_dump_and_pg_restore_with_the_data_directory() {
    let Some(admin_url) = fleetcare_store::testing::postgres_url("backup pg_dump") else {
        return;
    };
    let source = fleetcare_store::testing::TempPostgres::create(&admin_url)
        .await
        .expect("a database");
    let target = fleetcare_store::testing::TempPostgres::create(&admin_url)
        .await
        .expect("a database");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &["--database-url", &source.url]).await;
    let (url, token) = (served.url.clone(), read_secret(&data.join("admin-token")));
    let bytes = vec![7u8; 50_000];
    publish(&url, &token, dir.path(), &bytes).await;
    let http = reqwest::Client::new();
    let device_token = enroll(&http, &url, &data, "P500-PG").await;
    for seq in 1..=5 {
        let r = http
            .post(format!("{url}/device/v1/reports"))
            .bearer_auth(&device_token)
            .json(&report("P500-PG", seq, "1.9.12"))
            .send()
            .await
            .expect("report");
        assert!(r.status().is_success());
    }
    assert_eq!(
        errors(&http, &url, &device_token, "P500-PG", 1..=5).await,
        5
    );
    // The documented backup: the database with pg_dump, the data directory copied after it
    // (artifacts are written before the rows that name them, so the copy holds every one).
    let dump = dir.path().join("center.pgdump");
    let out = std::process::Command::new("pg_dump")
        .args(["--format=custom", "--file"])
        .arg(&dump)
        .arg(&source.url)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = dir.path().join("center-copy");
    let out = std::process::Command::new("cp")
        .args(["-a"])
        .arg(&data)
        .arg(&copy)
        .output()
        .expect("cp runs");
    assert!(out.status.success());
    assert_eq!(
        errors(&http, &url, &device_token, "P500-PG", 6..=8).await,
        8
    );
    served.kill9().await;
    let out = std::process::Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname", &target.url])
        .arg(&dump)
        .output()
        .expect("pg_restore runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = fleetcare_cmd(&[
        "restore".as_ref(),
        "--database-url".as_ref(),
        target.url.as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served = serve(&copy, &["--database-url", &target.url]).await;
    let url = served.url.clone();
    let d = json_of(&url, &token, &["devices", "show", "P500-PG"]).await;
    assert_eq!(d["last_report"]["seq"], 5, "{d}");
    let sha: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let got = http
        .get(format!("{url}/device/v1/artifacts/{sha}"))
        .bearer_auth(&device_token)
        .send()
        .await
        .expect("download");
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(got.bytes().await.expect("bytes").len(), bytes.len());
    let ack: Value = http
        .post(format!("{url}/device/v1/reports"))
        .bearer_auth(&device_token)
        .json(&report("P500-PG", 6, "1.9.12"))
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("ack");
    assert_eq!(ack["duplicate"], false, "{ack}");
    assert_eq!(
        errors(&http, &url, &device_token, "P500-PG", 9..=10).await,
        10
    );
    served.kill9().await;
    source.drop_database().await.expect("drop");
    target.drop_database().await.expect("drop");
}
