//! Debian's SWUpdate, a hawkBit client no one here wrote, as the device: a real `fleetcare
//! serve` speaks DDI to `swupdate -u` processes. Each test builds a signed `.swu`
//! (`sw-description` with its hardware compatibility, a CMS signature made with `openssl cms`,
//! `cpio -H crc`) that installs a file with the raw-file handler, publishes it as a Fleetcare
//! release, and follows it to the device: installed, the device restarted (`-c 2`: SWUpdate
//! keeps no state across restarts without a bootloader), its next `configData` showing the new
//! version. Also: an action skipped while the site's maintenance window is closed, then
//! cancelled and acknowledged; an install refused for the wrong hardware with its reason, and one rollout that reaches agents and SWUpdate devices and
//! pauses itself on the failures.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{PATIENCE, cli, fleetcare, read_secret, serve};
use fleetcare_testkit::eventually;
use serde_json::Value;
use tokio::process::{Child, Command};

/// SWUpdate, cpio and openssl are here (scripts/test installs them); without them the test
/// says it was skipped, and under CI it fails.
fn tools(test: &str) -> bool {
    let missing: Vec<&str> = [
        ("swupdate", "--version"),
        ("cpio", "--version"),
        ("openssl", "version"),
    ]
    .into_iter()
    .filter(|(tool, arg)| {
        std::process::Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
    })
    .map(|(tool, _)| tool)
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{missing:?} needed (Debian swupdate, cpio, openssl; scripts/test installs them)"
    );
    eprintln!("SKIPPED {test}: {missing:?} not installed (scripts/test installs them)");
    false
}

fn sh(cmd: &mut std::process::Command) {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A center with a catalog, release keys, and a CMS signer for `.swu` images.
struct Lab {
    dir: tempfile::TempDir,
    url: String,
    token: String,
    _served: common::Served,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("center");
        let config = dir.path().join("center.toml");
        // Clients poll every second here; a fleet's default is five minutes.
        std::fs::write(
            &config,
            "ddi_poll_s = 1\ndevice_rate_per_s = 1000\ndevice_burst = 1000\n",
        )
        .expect("config");
        let served = serve(&data, &["--config", config.to_str().expect("utf-8")]).await;
        let lab = Lab {
            url: served.url.clone(),
            token: read_secret(&data.join("admin-token")),
            _served: served,
            dir,
        };
        let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/catalog.toml");
        lab.run(&["catalog", "load", catalog]).await;
        let keys = lab.path("keys");
        lab.run(&["keys", "generate", "--out", &keys]).await;
        lab.run(&["keys", "publish", &format!("{keys}/keys.json")])
            .await;
        sh(std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=fleetcare-test-signer"])
            .args(["-addext", "keyUsage=digitalSignature"])
            .args(["-addext", "extendedKeyUsage=emailProtection"])
            .arg("-keyout")
            .arg(lab.dir.path().join("signer.key"))
            .arg("-out")
            .arg(lab.dir.path().join("signer.pem")));
        lab
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    async fn run(&self, args: &[&str]) -> String {
        let (ok, out, err) = cli(&self.url, &self.token, args).await;
        assert!(ok, "fleetcare {args:?}: {err}");
        out
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run(&a).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// A signed `.swu` of ctl-lite-firmware `version` for boards of revision `hw`, whose
    /// payload of `size` bytes (its first line names the version) the raw-file handler writes
    /// to `installed/firmware.bin` under the device's directory.
    fn swu(&self, version: &str, hw: &str, size: usize) -> PathBuf {
        let d = self.dir.path().join(format!("swu-{version}-{hw}"));
        std::fs::create_dir_all(&d).expect("dir");
        let mut payload = format!("ctl-lite-firmware {version}\n").into_bytes();
        payload.resize(size.max(payload.len()), b'#');
        std::fs::write(d.join("firmware.bin"), &payload).expect("payload");
        let sha: String = <sha2::Sha256 as sha2::Digest>::digest(&payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(
            d.join("sw-description"),
            format!(
                "software =\n{{\n  version = \"{version}\";\n  description = \"ctl-lite-firmware {version}\";\n  \
                 hardware-compatibility: [ \"{hw}\" ];\n  files: (\n    {{\n      filename = \"firmware.bin\";\n      \
                 path = \"installed/firmware.bin\";\n      sha256 = \"{sha}\";\n    }}\n  );\n}}\n"
            ),
        )
        .expect("sw-description");
        sh(std::process::Command::new("openssl")
            .current_dir(&d)
            .args([
                "cms",
                "-sign",
                "-in",
                "sw-description",
                "-out",
                "sw-description.sig",
            ])
            .arg("-signer")
            .arg(self.dir.path().join("signer.pem"))
            .arg("-inkey")
            .arg(self.dir.path().join("signer.key"))
            .args(["-outform", "DER", "-nosmimecap", "-binary"]));
        let out = self.dir.path().join(format!("ctl-lite-{version}.swu"));
        let list = d.join("list");
        std::fs::write(&list, "sw-description\nsw-description.sig\nfirmware.bin\n").expect("list");
        sh(std::process::Command::new("sh")
            .current_dir(&d)
            .arg("-c")
            .arg(format!(
                "cpio -o -H crc --quiet < list > '{}'",
                out.display()
            )));
        out
    }

    /// Sign and publish `swu` as ctl-lite-firmware `version` for ctl-lite controllers of
    /// revision C.
    async fn publish(&self, version: &str, counter: u32, swu: &Path) {
        let manifest = self.path(&format!("ctl-lite-{version}.json"));
        let key = self.path("keys/release-1.key.json");
        let swu = swu.display().to_string();
        let counter = counter.to_string();
        self.run(&[
            "release",
            "sign",
            "--key",
            &key,
            "--product",
            "ctl-lite-firmware",
            "--maker",
            "acme",
            "--version",
            version,
            "--counter",
            &counter,
            "--target",
            "ctl-lite:C",
            "--out",
            &manifest,
            &swu,
        ])
        .await;
        self.run(&["release", "publish", &manifest, &swu]).await;
    }

    /// A new DDI target and a SWUpdate device for it, not started yet.
    async fn device(&self, id: &str, board: &str) -> Swupdate {
        let out = self
            .json(&["ddi", "add-target", id, "--model", "acme-printer-p500"])
            .await;
        let dir = self.dir.path().join(format!("device-{id}"));
        std::fs::create_dir_all(dir.join("tmp")).expect("dir");
        std::fs::create_dir_all(dir.join("installed")).expect("dir");
        Swupdate {
            id: id.to_owned(),
            tenant: out["tenant"].as_str().expect("tenant").to_owned(),
            token: out["target_token"].as_str().expect("token").to_owned(),
            url: self.url.clone(),
            board: board.to_owned(),
            cert: self.dir.path().join("signer.pem"),
            dir,
            child: None,
        }
    }

    async fn job(&self, id: u64) -> Value {
        self.json(&["jobs", "show", &id.to_string()]).await
    }

    /// Await a job of `device` in a state `pick` accepts.
    async fn await_job(&self, device: &str, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        eventually(what, PATIENCE * 3, || async {
            let v = self.json(&["jobs", "list", "--device", device]).await;
            v["jobs"].as_array()?.iter().find(|j| pick(j)).cloned()
        })
        .await
    }

    async fn software(&self, device: &str) -> Option<String> {
        let d = self.json(&["devices", "show", device]).await;
        d["units"]
            .as_array()?
            .iter()
            .find(|u| u["slot"] == "controller")?["software"][0]["version"]
            .as_str()
            .map(str::to_owned)
    }
}

/// One `swupdate -u` process as a device: its identity (`identify`, sent as `configData`)
/// names what its controller runs, read from the installed file at each start as a device's
/// boot would.
struct Swupdate {
    id: String,
    tenant: String,
    token: String,
    url: String,
    board: String,
    cert: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl Swupdate {
    /// What the controller runs: the installed payload's first line, else the factory's.
    fn installed(&self) -> Option<String> {
        let text = std::fs::read(self.dir.join("installed/firmware.bin")).ok()?;
        let first = String::from_utf8_lossy(&text).lines().next()?.to_owned();
        first.strip_prefix("ctl-lite-firmware ").map(str::to_owned)
    }

    fn start(&mut self, confirm: bool) {
        let version = self.installed().unwrap_or_else(|| "1.9.12".into());
        let identify = [
            ("model", "acme-printer-p500".to_owned()),
            ("unit.controller.kind", "controller".into()),
            ("unit.controller.model", "ctl-lite".into()),
            ("unit.controller.serial", format!("CTL-{}", self.id)),
            ("unit.controller.hw_revision", "C".into()),
            ("unit.controller.software.ctl-lite-firmware", version),
            (
                "unit.controller.software.ctl-lite-firmware.maker",
                "acme".into(),
            ),
        ]
        .iter()
        .map(|(k, v)| format!("  {{ name = \"{k}\"; value = \"{v}\"; }}"))
        .collect::<Vec<_>>()
        .join(",\n");
        std::fs::write(
            self.dir.join("swupdate.cfg"),
            format!("globals: {{\n  loglevel = 6;\n}};\nidentify: (\n{identify}\n);\n"),
        )
        .expect("config");
        let mut suricatta = format!(
            "-t {} -u {} -i {} -k {}",
            self.tenant, self.url, self.id, self.token
        );
        if confirm {
            suricatta.push_str(" -c 2");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("swupdate.log"))
            .expect("log");
        let child = Command::new("swupdate")
            .current_dir(&self.dir)
            // Its IPC sockets go to TMPDIR: one set per device.
            .env("TMPDIR", self.dir.join("tmp"))
            .args(["-f", "swupdate.cfg", "-v", "-k"])
            .arg(&self.cert)
            .args(["-H", &format!("board:{}", self.board), "-u", &suricatta])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("swupdate starts");
        self.child = Some(child);
    }

    /// End the process and its helpers (suricatta, the downloader).
    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status()
                    .await;
            }
            let _ = c.wait().await;
        }
    }

    /// Restart as a device does after an install, confirming it (`-c 2`).
    async fn reboot(&mut self) {
        self.stop().await;
        self.start(true);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("swupdate.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("lua_report_exception"))
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Swupdate {
    fn drop(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

#[tokio::test]
async fn swupdate_installs_a_release_the_center_planned_and_its_next_report_shows_it() {
    if !tools("swupdate installs") {
        return;
    }
    let lab = Lab::start().await;
    let swu = lab.swu("2.0.0", "1.0", 20_000);
    lab.publish("2.0.0", 20, &swu).await;
    let mut dev = lab.device("sw-1", "1.0").await;
    dev.start(false);
    eventually(
        "the device's attributes are its structure",
        PATIENCE,
        || async { (lab.software("sw-1").await.as_deref() == Some("1.9.12")).then_some(()) },
    )
    .await;
    let attrs = lab.json(&["ddi", "show", "sw-1"]).await;
    assert_eq!(
        attrs["attributes"]["unit.controller.model"], "ctl-lite",
        "{attrs}"
    );

    // A catalog revision says 1.9.12 was made for revision B controllers only: the device's
    // rev C controller runs software not made for it, the plan is 2.0.0, and version changes
    // run by themselves. The center makes the job, and the device installs it.
    lab.run(&["compat", "policy", "--fix", "automatic"]).await;
    let catalog = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/catalog.toml"
    ))
    .expect("catalog");
    let old = "product = \"ctl-lite-firmware\"\nversion = \"1.9.12\"\n";
    assert!(catalog.contains(old));
    let revised = catalog.replace(
        old,
        &format!("{old}targets = [{{ unit_model = \"ctl-lite\", hw_revisions = [\"B\"] }}]\n"),
    );
    let path = lab.path("catalog-r2.toml");
    std::fs::write(&path, revised).expect("catalog");
    lab.run(&["catalog", "load", &path]).await;
    let job = lab
        .await_job("sw-1", "the center plans 2.0.0 for the device", |j| {
            j["origin"] == "compat"
        })
        .await;
    let id = job["id"].as_u64().expect("id");
    eventually("SWUpdate installed the file", PATIENCE * 3, || async {
        (dev.installed().as_deref() == Some("2.0.0")).then_some(())
    })
    .await;
    eventually("the center heard the install", PATIENCE, || async {
        (lab.job(id).await["state"] == "installing").then_some(())
    })
    .await;
    // Installed is not success: SWUpdate awaits its restart, and so does the job.
    assert_eq!(lab.software("sw-1").await.as_deref(), Some("1.9.12"));
    assert_ne!(lab.job(id).await["state"], "succeeded");

    dev.reboot().await;
    let j = eventually(
        "the device's next report shows 2.0.0",
        PATIENCE * 2,
        || async {
            let j = lab.job(id).await;
            (j["state"] == "succeeded").then_some(j)
        },
    )
    .await;
    assert_eq!(
        lab.software("sw-1").await.as_deref(),
        Some("2.0.0"),
        "{}",
        dev.log()
    );
    let states: Vec<&str> = j["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    for s in ["downloading", "installing", "health_check", "succeeded"] {
        assert!(states.contains(&s), "{s} missing from {states:?}");
    }
    // The device's history has the change, and it is compatible.
    let history = lab.run(&["devices", "history", "sw-1"]).await;
    assert!(history.contains("2.0.0"), "{history}");
    dev.stop().await;
}

#[tokio::test]
async fn a_cancelled_action_is_acknowledged_and_the_wrong_hardware_fails_with_its_reason() {
    if !tools("swupdate cancel and failure") {
        return;
    }
    let lab = Lab::start().await;
    let swu = lab.swu("2.0.0", "1.0", 20_000);
    lab.publish("2.0.0", 20, &swu).await;
    // A device at a site whose maintenance window is closed now: it is offered the action
    // with `update: skip`, fetches it, installs nothing, and waits.
    let hour = jiff::Timestamp::now().as_second().rem_euclid(86_400) / 3600;
    let window = format!(
        "mon-sun {:02}:00-{:02}:00",
        (hour + 2) % 24,
        (hour + 3) % 24
    );
    lab.run(&[
        "sites",
        "set",
        "night-shift",
        "--timezone",
        "UTC",
        "--window",
        &window,
    ])
    .await;
    let mut waiting = lab.device("sw-waiting", "1.0").await;
    lab.run(&["devices", "label", "sw-waiting", "--site", "night-shift"])
        .await;
    waiting.start(false);
    let mut wrong = lab.device("sw-wrong", "2.0").await;
    wrong.start(false);
    for d in ["sw-waiting", "sw-wrong"] {
        eventually("the devices report", PATIENCE, || async {
            lab.software(d).await.map(|_| ())
        })
        .await;
    }
    let make = |device: &'static str| {
        let lab = &lab;
        async move {
            let v = lab
                .json(&[
                    "jobs",
                    "create",
                    "--device",
                    device,
                    "--install",
                    "controller:ctl-lite-firmware=2.0.0",
                ])
                .await;
            v["id"].as_u64().expect("id")
        }
    };
    let waiting_job = make("sw-waiting").await;
    let wrong_job = make("sw-wrong").await;

    eventually(
        "the device skipped the action until its window",
        PATIENCE * 2,
        || async {
            let j = lab.job(waiting_job).await;
            j["events"]
                .as_array()?
                .iter()
                .any(|e| e["state"] == "skipped")
                .then_some(())
        },
    )
    .await;
    assert_eq!(lab.job(waiting_job).await["state"], "queued");
    lab.run(&["jobs", "cancel", &waiting_job.to_string()]).await;
    let j = eventually(
        "the device acknowledged the cancellation",
        PATIENCE * 3,
        || async {
            let j = lab.job(waiting_job).await;
            j["events"]
                .as_array()?
                .iter()
                .any(|e| e["state"] == "cancel_acknowledged")
                .then_some(j)
        },
    )
    .await;
    assert_eq!(
        (j["state"].as_str(), j["reason"].as_str()),
        (Some("failed"), Some("cancelled")),
        "{j}"
    );
    assert_eq!(waiting.installed(), None, "{}", waiting.log());

    let j = eventually(
        "the wrong board refused the image",
        PATIENCE * 3,
        || async {
            let j = lab.job(wrong_job).await;
            (j["state"] == "failed").then_some(j)
        },
    )
    .await;
    assert_eq!(j["reason"], "incompatible_hardware", "{j}\n{}", wrong.log());
    assert!(
        j["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not compatible with hardware")),
        "{j}"
    );
    assert_eq!(wrong.installed(), None);
    assert_eq!(lab.software("sw-wrong").await.as_deref(), Some("1.9.12"));
    waiting.stop().await;
    wrong.stop().await;
}

#[tokio::test]
async fn one_rollout_reaches_agents_and_swupdate_devices_and_pauses_on_failures() {
    if !tools("swupdate rollout") {
        return;
    }
    let lab = Lab::start().await;
    let swu = lab.swu("2.0.0", "1.0", 20_000);
    lab.publish("2.0.0", 20, &swu).await;
    // Three printers with Fleetcare's agent (the simulator runs the real agent)…
    let profile = lab.path("fleet.toml");
    std::fs::write(
        &profile,
        "install_failure = 0.0\nbusy_share = 0.0\nscenarios = false\nconnect_per_s = 100\n\
         [models]\n\"acme-printer-p500\" = 1\n",
    )
    .expect("profile");
    let mut sim = fleetcare();
    sim.args([
        "sim",
        "--json",
        "--center",
        &lab.url,
        "--devices",
        "3",
        "--profile",
        &profile,
    ])
    .arg("--enrollment-key-file")
    .arg(lab.dir.path().join("center/enrollment-key"))
    .arg("--trust-root")
    .arg(lab.dir.path().join("keys/root.json"))
    .stdout(Stdio::null());
    let _sim = sim.spawn().expect("fleetcare sim starts");
    // …and three with SWUpdate, two of whose boards the image does not fit.
    let mut good = lab.device("sw-good", "1.0").await;
    let mut bad1 = lab.device("sw-bad-1", "2.0").await;
    let mut bad2 = lab.device("sw-bad-2", "2.0").await;
    for d in [&mut good, &mut bad1, &mut bad2] {
        d.start(false);
    }
    eventually("six devices report", PATIENCE * 3, || async {
        let v = lab.json(&["devices", "list", "--limit", "100"]).await;
        let n = v
            .as_array()?
            .iter()
            .filter(|d| d["last_report"].is_object())
            .count();
        (n == 6).then_some(())
    })
    .await;

    let r = lab
        .json(&[
            "rollouts",
            "create",
            "--name",
            "lite-2.0",
            "--release",
            "ctl-lite-firmware=2.0.0",
            "--waves",
            "100%",
            "--failure-ratio",
            "0.3",
            "--min-finished",
            "1",
            "--max-concurrent",
            "50",
            "--seed",
            "1",
        ])
        .await;
    assert_eq!(r["total"]["devices"], 6, "{r}");
    let rid = r["id"].as_u64().expect("id").to_string();

    // The wrong boards fail, the rollout pauses itself on them.
    let r = eventually(
        "the rollout pauses on the failures",
        PATIENCE * 3,
        || async {
            let r = lab.json(&["rollouts", "show", &rid]).await;
            (r["state"] == "paused").then_some(r)
        },
    )
    .await;
    assert!(
        r["state_reason"]
            .as_str()
            .is_some_and(|s| s.contains("failed")),
        "{r}"
    );
    for d in ["sw-bad-1", "sw-bad-2"] {
        let j = lab
            .await_job(d, "the wrong board's job fails", |j| j["state"] == "failed")
            .await;
        assert_eq!(j["reason"], "incompatible_hardware", "{j}");
        assert_eq!(j["origin"], "rollout", "{j}");
    }
    // The jobs already running finish: the agents' and the good SWUpdate device's.
    let v = lab.json(&["devices", "list", "--limit", "100"]).await;
    let agents: Vec<String> = v
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["device_id"].as_str())
        .filter(|d| !d.starts_with("sw-"))
        .map(str::to_owned)
        .collect();
    assert_eq!(agents.len(), 3, "{v}");
    for a in &agents {
        let j = lab
            .await_job(a, "an agent installs the rollout's release", |j| {
                j["state"] == "succeeded"
            })
            .await;
        assert_eq!(j["origin"], "rollout", "{j}");
        eventually("the agent's report shows 2.0.0", PATIENCE, || async {
            (lab.software(a).await.as_deref() == Some("2.0.0")).then_some(())
        })
        .await;
    }
    eventually("SWUpdate installed the file", PATIENCE * 3, || async {
        (good.installed().as_deref() == Some("2.0.0")).then_some(())
    })
    .await;
    good.reboot().await;
    let j = lab
        .await_job("sw-good", "the good board's job succeeds", |j| {
            j["state"] == "succeeded"
        })
        .await;
    assert_eq!(j["origin"], "rollout", "{j}");
    assert_eq!(lab.software("sw-good").await.as_deref(), Some("2.0.0"));
    for d in [&mut good, &mut bad1, &mut bad2] {
        d.stop().await;
    }
}
