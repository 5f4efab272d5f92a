//! A full disk with the real binary: the center's data directory on a small tmpfs the test
//! mounts (needs root or CAP_SYS_ADMIN; skipped loudly without, except in CI), a device that
//! reports without pause and sends each report again until it is acknowledged, and the disk
//! filled to the last byte. The center refuses writes with 503 and `Retry-After`, keeps
//! serving reads, says so in `/healthz` and `/metrics`, and takes writes again by itself once
//! the space is back. Afterwards every acknowledged report is in the store and the database is
//! whole.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{read_secret, serve, small_report};

/// Unmounts on drop (the test's panics included).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn mount_tmpfs(at: &Path, mb: u64) -> Option<Mount> {
    std::fs::create_dir_all(at).expect("mount point");
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m,mode=0700")])
        .arg("fleetcare-full-disk")
        .arg(at)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Mount(at.to_owned())),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the full-disk test mounts a small tmpfs: it needs root or CAP_SYS_ADMIN ({why})"
            );
            eprintln!("SKIPPED: the full-disk test could not mount a tmpfs ({why})");
            None
        }
    }
}

/// Fill the file system holding `dir` to the last byte; the ballast file.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let ballast = dir.join("ballast");
    let mut f = std::fs::File::create(&ballast).expect("ballast");
    let chunk = vec![0x5a_u8; 64 * 1024];
    for _ in 0..16_384 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    // What is left is smaller than a chunk: a byte at a time until nothing is.
    for _ in 0..chunk.len() {
        if f.write_all(&[0]).and_then(|()| f.flush()).is_err() {
            break;
        }
    }
    ballast
}

async fn health(http: &reqwest::Client, url: &str) -> serde_json::Value {
    http.get(format!("{url}/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("health json")
}

#[tokio::test]
async fn a_full_disk_refuses_writes_serves_reads_and_recovers_losing_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let Some(_mount) = mount_tmpfs(&data, 48) else {
        return;
    };
    let config = dir.path().join("center.toml");
    // A reserve of 8 MiB; the device's rate is not limited (it reports without pause).
    std::fs::write(&config, "disk_reserve_mb = 8\ndevice_rate_per_s = 0\n").expect("config");
    let served = serve(&data, &["--config", config.to_str().expect("utf-8")]).await;
    let url = served.url.clone();
    let token = read_secret(&data.join("admin-token"));
    let http = reqwest::Client::new();
    let device = common::enroll(
        &http,
        &url,
        &read_secret(&data.join("enrollment-key")),
        "FULL-1",
    )
    .await;

    // A device that reports without pause; a report not acknowledged is sent again.
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reporter = {
        let (http, url, device) = (http.clone(), url.clone(), device.clone());
        let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seq = 1;
            let mut tries = 0u32;
            while !stop.load(Ordering::SeqCst) && tries < 1_000_000 {
                tries += 1;
                let r = http
                    .post(format!("{url}/device/v1/reports"))
                    .bearer_auth(&device)
                    .json(&small_report("FULL-1", seq))
                    .send()
                    .await
                    .expect("the center answers");
                if r.status().is_success() {
                    acked.store(seq, Ordering::SeqCst);
                    seq += 1;
                } else {
                    assert_eq!(r.status(), 503, "only a full disk refuses it");
                    assert!(r.headers().contains_key("retry-after"));
                    // Agents wait as told; the test's device asks again at once.
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    fleetcare_testkit::eventually("the device has reported", common::PATIENCE, || async {
        (acked.load(Ordering::SeqCst) >= 20).then_some(())
    })
    .await;

    // The disk fills to the last byte.
    let ballast = fill(&data);
    fleetcare_testkit::eventually(
        "the center says its disk is full",
        common::PATIENCE,
        || async { (health(&http, &url).await["status"] == "disk_full").then_some(()) },
    )
    .await;
    let at_full = acked.load(Ordering::SeqCst);
    // Writes: refused with 503, Retry-After and a reason; nothing stored.
    let r = http
        .post(format!("{url}/device/v1/errors"))
        .bearer_auth(&device)
        .json(
            &serde_json::json!({"device_id": "FULL-1", "boot_epoch": 1, "trigger": "periodic",
            "events": [{"seq": 1, "at_ms": 1_790_000_000_000u64, "slot": "fuser", "code": "F-1",
                        "severity": "info"}]}),
        )
        .send()
        .await
        .expect("errors");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("30")
    );
    let body: serde_json::Value = r.json().await.expect("error body");
    assert_eq!(body["code"], "disk_full", "{body}");
    // Reads: served.
    let shown = http
        .get(format!("{url}/api/v1/devices/FULL-1"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("device");
    assert_eq!(shown.status(), 200);
    let shown: serde_json::Value = shown.json().await.expect("device json");
    assert!(
        shown["last_report"]["seq"].as_u64().expect("last report") >= at_full,
        "{shown}"
    );
    assert_eq!(
        common::metric(&http, &url, "fleetcare_disk_full ").await,
        1.0
    );
    assert!(common::metric(&http, &url, "fleetcare_writes_refused_disk_full_total ").await > 0.0);
    // The device keeps its report and is refused again for as long as the disk is full.
    let refused_before = refused.load(Ordering::SeqCst);
    fleetcare_testkit::eventually("the device is refused again", common::PATIENCE, || async {
        (refused.load(Ordering::SeqCst) >= refused_before + 5).then_some(())
    })
    .await;
    assert!(acked.load(Ordering::SeqCst) <= at_full + 1);

    // Space returns: the center takes writes again by itself, and the device carries on.
    std::fs::remove_file(&ballast).expect("ballast gone");
    fleetcare_testkit::eventually(
        "the center takes writes again",
        common::PATIENCE,
        || async { (health(&http, &url).await["status"] == "ok").then_some(()) },
    )
    .await;
    let back = acked.load(Ordering::SeqCst);
    fleetcare_testkit::eventually("the device reports again", common::PATIENCE, || async {
        (acked.load(Ordering::SeqCst) >= back + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    reporter.await.expect("reporter");
    let last = acked.load(Ordering::SeqCst);
    assert!(refused.load(Ordering::SeqCst) > 0);
    assert!(served.terminate().await.success());

    // Every acknowledged report is stored, in order, none twice, and the database is whole.
    let store = fleetcare_store::Store::open_sqlite(&data)
        .await
        .expect("open the store");
    let tenant = store
        .ensure_tenant("default", 0)
        .await
        .expect("the default tenant");
    let key = fleetcare_store::DeviceKey {
        tenant,
        device_id: fleetcare_core::DeviceId::parse("FULL-1").expect("id"),
    };
    let seqs = store.stored_seqs(&key).await.expect("stored reports");
    assert!(
        seqs.iter().copied().eq(1..=last),
        "acknowledged 1..={last}, stored {} (first {:?}, last {:?})",
        seqs.len(),
        seqs.first(),
        seqs.last()
    );
    assert_eq!(store.integrity_check().await.expect("integrity"), "ok");
    store.close().await.expect("close");
}
