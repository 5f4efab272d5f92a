//! A database written by the previous release (`release-2026-12-03`, made by
//! `scripts/make-upgrade-fixture` with that release's own binary, kept in
//! `tests/fixtures/release-2026-12-03/`) opens with this release on both stores: it migrates,
//! and the center serves the same device, its reports, error log, job and artifact; the device
//! carries on where it was.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::{cli, read_secret, serve};
use serde_json::{Value, json};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/release-2026-12-03")
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("fixture"))
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

/// Copy the fixture's data directory (secret files, artifacts, the device's token).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for e in std::fs::read_dir(from).expect("read") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else if e.file_name() != "fleetcare.db.gz" && e.file_name() != "dump.sql.gz" {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// What the previous release stored is served by this one, and the device carries on.
async fn the_same_center(url: &str, data: &Path) {
    let token = read_secret(&data.join("admin-token"));
    let device = read_secret(&data.join("device-token"));
    let run = |args: Vec<&'static str>| {
        let (url, token) = (url.to_owned(), token.clone());
        async move {
            let mut a = args;
            a.push("--json");
            let (ok, out, err) = cli(&url, &token, &a).await;
            assert!(ok, "fleetcare {a:?}: {err}");
            serde_json::from_str::<Value>(&out).expect("json")
        }
    };
    let d = run(vec!["devices", "show", "P500-UP"]).await;
    assert_eq!(d["last_report"]["seq"], 3, "{d}");
    let jobs = run(vec!["jobs", "list", "--device", "P500-UP"]).await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "{jobs}");
    let http = reqwest::Client::new();
    let bytes = vec![b'f'; 1024];
    let sha: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let got = http
        .get(format!("{url}/device/v1/artifacts/{sha}"))
        .bearer_auth(&device)
        .send()
        .await
        .expect("download");
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(got.bytes().await.expect("bytes").as_ref(), bytes.as_slice());
    let ack: Value = http
        .post(format!("{url}/device/v1/reports"))
        .bearer_auth(&device)
        .json(&json!({"device_id": "P500-UP", "model": "acme-printer-p500", "seq": 4,
            "trigger": "periodic", "observed_at_ms": 1_790_000_000_004u64,
            "units": [{"slot": "controller", "kind": "controller", "model": "ctl-lite",
                       "serial": "CTL-UP", "hw_revision": "C",
                       "software": [{"product": "ctl-lite-firmware", "maker": "acme", "version": "1.9.12"}]}],
            "operating": {"pages_total": 1004}}))
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("ack");
    assert_eq!(ack["duplicate"], false, "{ack}");
    let ack: Value = http
        .post(format!("{url}/device/v1/errors"))
        .bearer_auth(&device)
        .json(
            &json!({"device_id": "P500-UP", "boot_epoch": 1, "trigger": "periodic",
            "events": [{"seq": 3, "at_ms": 1_790_000_000_003u64, "slot": "fuser",
                        "code": "F-101", "severity": "info"}]}),
        )
        .send()
        .await
        .expect("errors")
        .json()
        .await
        .expect("ack");
    assert_eq!(
        ack["acked_seq"], 3,
        "the error log continues where it was: {ack}"
    );
}

#[tokio::test]
async fn the_previous_releases_embedded_store_opens_migrates_and_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    copy_dir(&fixture().join("sqlite"), &data);
    std::fs::write(
        data.join("fleetcare.db"),
        gunzip(&fixture().join("sqlite/fleetcare.db.gz")),
    )
    .expect("db");
    let served = serve(&data, &[]).await;
    the_same_center(&served.url, &data).await;
    served.kill9().await;
}

#[tokio::test]
async fn the_previous_releases_postgres_database_opens_migrates_and_serves() {
    let Some(admin_url) = fleetcare_store::testing::postgres_url("upgrade postgres") else {
        return;
    };
    let db = fleetcare_store::testing::TempPostgres::create(&admin_url)
        .await
        .expect("database");
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = dir.path().join("dump.sql");
    std::fs::write(&dump, gunzip(&fixture().join("postgres/dump.sql.gz"))).expect("dump");
    let out = std::process::Command::new("psql")
        .args(["--quiet", "--set", "ON_ERROR_STOP=1", "--file"])
        .arg(&dump)
        .arg(&db.url)
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = dir.path().join("center");
    copy_dir(&fixture().join("postgres"), &data);
    // The doctor, read-only, on the previous release's database: migrations and partitions
    // are for the next start to make.
    let (ok, said) = doctor_pg(&data, &db.url);
    assert!(!ok, "{said}");
    assert!(said.contains("migrates it"), "{said}");
    assert!(
        said.contains("reports: no partition made for tomorrow"),
        "{said}"
    );
    let served = serve(&data, &["--database-url", &db.url]).await;
    the_same_center(&served.url, &data).await;
    served.kill9().await;
    let (ok, said) = doctor_pg(&data, &db.url);
    assert!(ok, "{said}");
    assert!(
        said.contains("7 days ahead") && said.contains("nothing to do"),
        "{said}"
    );
    let v = fleetcare_store::doctor::schema_version();
    assert!(
        said.contains(&format!("schema version {v} (this release: {v})")),
        "{said}"
    );
    // The reports carried over sit in a partition of their own, ending where the first day's
    // begins; once retention has passed it, it goes whole and the device's newest report
    // stays.
    let store = fleetcare_store::Store::open_postgres(&db.url)
        .await
        .expect("open");
    let parts = store.partitions().await.expect("partitions");
    let carried = parts
        .iter()
        .find(|p| p.name.starts_with("reports_upto_"))
        .unwrap_or_else(|| panic!("{parts:?}"));
    let (from, to) = carried.range.expect("a range");
    assert_eq!(from, i64::MIN);
    assert!(
        parts
            .iter()
            .any(|p| p.table == "reports" && p.range.map(|r| r.0) == Some(to)),
        "{parts:?}"
    );
    let later = to + 40 * 86_400_000;
    // By then the pruner has rolled up the operating values of every day before the raw
    // history's horizon (the server's own pruner may or may not have run before it was
    // killed): done here, so that only the device's newest report is a keeper.
    store
        .prune_operating(fleetcare_core::meters::day_of(later), 0, 1000)
        .await
        .expect("roll up");
    let work = store
        .maintain_partitions(
            later,
            &fleetcare_store::Horizons {
                reports: Some(later - 30 * 86_400_000),
                error_events: None,
            },
        )
        .await
        .expect("drop");
    let dropped = work
        .dropped
        .iter()
        .find(|d| d.1 == carried.name)
        .unwrap_or_else(|| panic!("{work:?}"));
    assert_eq!((dropped.2, dropped.3), (3, 1), "{dropped:?}");
    let tenant = store.ensure_tenant("default", 0).await.expect("tenant");
    let key = fleetcare_store::DeviceKey {
        tenant,
        device_id: fleetcare_core::DeviceId::parse("P500-UP").expect("id"),
    };
    let seqs = store.stored_seqs(&key).await.expect("seqs");
    assert_eq!(seqs.last(), Some(&4), "{seqs:?}");
    store.close().await.expect("close");
    db.drop_database().await.expect("drop");
}

fn doctor_pg(data: &Path, url: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare"))
        .args(["doctor", "--database-url", url, "--data-dir"])
        .arg(data)
        .output()
        .expect("fleetcare runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn doctor(data: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare"))
        .args(["doctor", "--full", "--data-dir"])
        .arg(data)
        .output()
        .expect("fleetcare runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `fleetcare doctor` on the previous release's store, on this release's, on a damaged one.
#[tokio::test]
async fn doctor_says_what_a_store_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    copy_dir(&fixture().join("sqlite"), &data);
    let db = data.join("fleetcare.db");
    std::fs::write(&db, gunzip(&fixture().join("sqlite/fleetcare.db.gz"))).expect("db");
    let (ok, said) = doctor(&data);
    assert!(ok, "{said}");
    assert!(said.contains("integrity (full check): ok"), "{said}");
    assert!(said.contains("migrates it"), "an older schema: {said}");
    assert!(said.contains("reports            3"), "{said}");
    // Opened by this release: migrated, nothing to do.
    let served = serve(&data, &[]).await;
    served.terminate().await;
    let (ok, said) = doctor(&data);
    assert!(
        ok && said.contains("nothing to do") && !said.contains("migrates it"),
        "{said}"
    );
    // Damaged: every page past the first few overwritten.
    let mut bytes = std::fs::read(&db).expect("db");
    for b in bytes.iter_mut().skip(8192) {
        *b = 0x5a;
    }
    std::fs::write(&db, &bytes).expect("damage");
    let (ok, said) = doctor(&data);
    assert!(!ok, "{said}");
    assert!(
        said.contains("restore the newest backup") || said.contains("malformed"),
        "{said}"
    );
}
