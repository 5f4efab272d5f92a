//! Running the real `fleetcare` binary in tests (and in the benchmarks, which include this
//! file).

#![allow(dead_code)] // each test binary uses a part

pub mod broker;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn fleetcare() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleetcare"));
    c.env_remove("FLEETCARE_URL")
        .env_remove("FLEETCARE_TOKEN")
        .env_remove("FLEETCARE_TOKEN_FILE")
        .env("FLEETCARE_LOG", "warn")
        .kill_on_drop(true);
    c
}

/// A `fleetcare serve` child process.
pub struct Served {
    pub child: Child,
    pub url: String,
}

/// Start `fleetcare serve` with these extra arguments (on 127.0.0.1:0 unless they say
/// otherwise) and wait for it to say where it listens.
pub async fn serve(data_dir: &Path, extra: &[&str]) -> Served {
    let mut cmd = fleetcare();
    cmd.arg("serve").arg("--data-dir").arg(data_dir);
    if !extra.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    cmd.args(extra).stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("fleetcare serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(u) = line.strip_prefix("Fleetcare center listening on ") {
                return u.trim().to_owned();
            }
        }
        panic!("fleetcare serve ended without saying where it listens");
    })
    .await
    .expect("fleetcare serve says where it listens");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Served { child, url }
}

impl Served {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// SIGTERM, and the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the center stops promptly on SIGTERM")
            .expect("wait")
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait().await;
    }
}

/// A device in the operators' device list that is connected and has reported its structure:
/// only then can jobs and rollouts target it (the push channel opens a moment before the
/// first report is stored).
pub fn online_and_reported(d: &serde_json::Value) -> bool {
    d["online"] == true && d["units"].as_u64().is_some_and(|n| n > 0)
}

/// Run `fleetcare <args>` as an operator of `url`; `(success, stdout, stderr)`.
pub async fn cli(url: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = fleetcare()
        .args(args)
        .env("FLEETCARE_URL", url)
        .env("FLEETCARE_TOKEN", token)
        .output()
        .await
        .expect("fleetcare runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Enroll a device directly over the device protocol; its credential.
pub async fn enroll(http: &reqwest::Client, url: &str, key: &str, id: &str) -> String {
    enroll_answer(http, url, key, id).await.device_token
}

/// Enroll a device directly over the device protocol; the center's whole answer.
pub async fn enroll_answer(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    id: &str,
) -> fleetcare_wire::device::EnrollResponse {
    http.post(format!("{url}/device/v1/enroll"))
        .json(&fleetcare_wire::device::EnrollRequest {
            enrollment_key: key.to_owned(),
            device_id: id.to_owned(),
            model: "acme-mfp-9000".into(),
            current_credential: None,
        })
        .send()
        .await
        .expect("enroll")
        .json()
        .await
        .expect("an enrollment answer")
}

/// The value of the first `/metrics` line that starts with `line_start` (a name, with its
/// labels if any) and holds a number; 0 if there is none.
pub async fn metric(http: &reqwest::Client, url: &str, line_start: &str) -> f64 {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn read_secret(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("secret file")
        .trim()
        .to_owned()
}

/// A one-unit structure report of device `id` (its firmware version moves every five
/// reports), `connect` first and `periodic` after.
pub fn small_report(id: &str, seq: u64) -> fleetcare_wire::device::StructureReport {
    fleetcare_wire::device::StructureReport {
        device_id: id.to_owned(),
        model: "acme-mfp-9000".into(),
        seq,
        trigger: if seq == 1 {
            fleetcare_wire::Trigger::Connect
        } else {
            fleetcare_wire::Trigger::Periodic
        },
        observed_at_ms: 1_790_000_000_000 + i64::try_from(seq).unwrap_or(0),
        units: vec![fleetcare_wire::Unit {
            slot: "controller".into(),
            kind: "controller".into(),
            model: "ctl-x2".into(),
            serial: format!("C-{id}"),
            hw_revision: "B".into(),
            software: vec![fleetcare_wire::Software {
                product: "ctl-firmware".into(),
                maker: "acme".into(),
                version: format!("5.{}", seq / 5),
                active: true,
            }],
            in_service: true,
        }],
        operating: std::collections::BTreeMap::new(),
        supplies: Vec::new(),
        install_blocked: None,
    }
}
