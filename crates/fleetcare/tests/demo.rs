//! `fleetcare demo` shows a fleet of at least 50 devices with their units.

mod common;

use std::process::Stdio;

use common::{PATIENCE, cli, fleetcare, online_and_reported};
use fleetcare_testkit::eventually;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn the_demo_shows_a_fleet_of_fifty_devices_with_their_units() {
    let mut child = fleetcare()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--devices",
            "50",
            "--for",
            "120",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut url, mut token) = (None, None);
    let mut printed = Vec::new();
    tokio::time::timeout(PATIENCE * 2, async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            printed.push(line.clone());
            if let Some(u) = line.trim().strip_prefix("center:") {
                url = Some(u.trim().to_owned());
            }
            if let Some(t) = line.trim().strip_prefix("token:") {
                token = Some(t.trim().to_owned());
            }
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
    })
    .await
    .expect("the demo prints how to look at it");
    let (url, token) = (
        url.expect("center URL printed"),
        token.expect("token printed"),
    );

    // The commands it prints work as printed (here `fleetcare` is not on the PATH: they name
    // the binary), and it shows a rollout.
    let command = |words: &str| {
        printed
            .iter()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_owned())
            .find(|l| l.contains(words))
            .unwrap_or_else(|| panic!("no `{words}` command printed: {printed:#?}"))
    };
    // `watch` returns once the canary is done and the next wave waits for an approval, which
    // the demo's admin (not the rollout's creator) gives.
    for words in ["devices list", "rollouts watch", "rollouts approve"] {
        let line = command(words);
        let parts: Vec<&str> = line.split_whitespace().collect();
        let out = tokio::process::Command::new(parts[0])
            .args(&parts[1..])
            .env("FLEETCARE_URL", &url)
            .env("FLEETCARE_TOKEN", &token)
            .output();
        let out = tokio::time::timeout(PATIENCE * 3, out)
            .await
            .unwrap_or_else(|_| panic!("`{line}` ends"))
            .expect("runs");
        assert!(
            out.status.success(),
            "`{line}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        printed
            .iter()
            .any(|l| l.contains("cargo install --locked --path crates/agent")),
        "says how to install the binaries: {printed:#?}"
    );

    let devices: Vec<Value> =
        eventually("50 devices online with their units", PATIENCE, || async {
            let (ok, out, _) = cli(&url, &token, &["devices", "list", "--json"]).await;
            let v: Vec<Value> = serde_json::from_str(&out).ok()?;
            (ok && v.len() >= 50 && v.iter().all(online_and_reported)).then_some(v)
        })
        .await;
    let models: std::collections::BTreeSet<&str> =
        devices.iter().filter_map(|d| d["model"].as_str()).collect();
    assert!(models.len() >= 3, "several device models: {models:?}");
    let (ok, out, _) = cli(
        &url,
        &token,
        &[
            "devices",
            "show",
            devices[0]["device_id"].as_str().expect("id"),
        ],
    )
    .await;
    assert!(ok && out.contains("SLOT"), "{out}");

    // Findings only hardware (or a catalog entry) can fix stay open and are shown.
    let fleet: Value = eventually(
        "the hardware finding kinds in the fleet",
        PATIENCE,
        || async {
            let (ok, out, _) = cli(&url, &token, &["compat", "fleet", "--json"]).await;
            let v: Value = serde_json::from_str(&out).ok()?;
            let kinds = v["by_kind"].as_object()?.len();
            (ok && kinds >= 3).then_some(v)
        },
    )
    .await;
    for kind in ["device_unit", "unknown_device_model", "unknown_unit_model"] {
        assert!(
            fleet["by_kind"][kind].as_u64() >= Some(1),
            "{kind} missing: {fleet}"
        );
    }
    // What software can fix is fixed: a job installs (ACM9K-000005: newer engine firmware for
    // ctl-firmware 5.3.0) or switches (ACM9K-000017: the controller's inactive copy), the
    // device confirms it, reports, and is judged compatible.
    for id in ["ACM9K-000005", "ACM9K-000017"] {
        let c: Value = eventually(&format!("{id} fixed by its job"), PATIENCE * 3, || async {
            let (ok, out, _) = cli(&url, &token, &["compat", "check", id, "--json"]).await;
            let c: Value = serde_json::from_str(&out).ok()?;
            (ok && c["state"] == "compatible").then_some(c)
        })
        .await;
        assert!(c["findings"].as_array().is_some_and(Vec::is_empty), "{c}");
        let (ok, out, _) = cli(&url, &token, &["jobs", "list", "--device", id, "--json"]).await;
        assert!(ok);
        let jobs: Value = serde_json::from_str(&out).expect("json");
        assert_eq!(jobs["jobs"][0]["state"], "succeeded", "{jobs}");
        assert_eq!(jobs["jobs"][0]["origin"], "compat", "{jobs}");
    }
    // The booklet finisher beside the dup-3: advised, and an optional unit out of service.
    let (ok, out, _) = cli(&url, &token, &["compat", "check", "ACM9K-000029", "--json"]).await;
    assert!(ok);
    let c: Value = serde_json::from_str(&out).expect("json");
    let kinds: Vec<&str> = c["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter_map(|n| n["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"compat_advice") || kinds.contains(&"unit_out_of_service"),
        "{c}"
    );
    let (ok, out, _) = cli(&url, &token, &["jobs", "list", "--json"]).await;
    assert!(ok);
    let jobs: Value = serde_json::from_str(&out).expect("json");
    assert!(
        jobs["jobs"].as_array().map(Vec::len) >= Some(2),
        "the software fixes became jobs: {jobs}"
    );

    // Error logs lead to fixes: the watchdog resets of three mfp-9000s on ctl-firmware 5.2.1
    // are one suspected defect; each of them installs 5.3.0 by its diagnosis job.
    for id in ["ACM9K-000001", "ACM9K-000009", "ACM9K-000013"] {
        let jobs: Value = eventually(
            &format!("{id} fixed by the known-issue rule"),
            PATIENCE * 3,
            || async {
                let (ok, out, _) =
                    cli(&url, &token, &["jobs", "list", "--device", id, "--json"]).await;
                let v: Value = serde_json::from_str(&out).ok()?;
                let done = v["jobs"].as_array()?.iter().any(|j| {
                    j["origin"] == "diagnosis"
                        && j["state"] == "succeeded"
                        && j["steps"][0]["to"] == "5.3.0"
                });
                (ok && done).then_some(v)
            },
        )
        .await;
        assert!(jobs["jobs"].is_array());
        let (ok, out, _) = cli(
            &url,
            &token,
            &["troubles", "list", "--device", id, "--json"],
        )
        .await;
        let t: Value = serde_json::from_str(&out).expect("json");
        assert!(
            ok && t["troubles"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["rule_id"] == "ctl-521-watchdog")),
            "{t}"
        );
    }
    // The real agent's cyan toner is low: a trouble with the part to order, listed as running
    // out; and this month's meter read has its total.
    let (ok, out, _) = cli(
        &url,
        &token,
        &["troubles", "list", "--device", "ACM9K-000001", "--json"],
    )
    .await;
    assert!(
        ok && out.contains("supply-low:toner.cyan") && out.contains("TN-45C"),
        "{out}"
    );
    let month = {
        let (y, m) = fleetcare_core::meters::civil_month(fleetcare_core::clock::Clock::now_ms(
            &fleetcare_core::clock::SystemClock,
        ));
        format!("{y:04}-{m:02}")
    };
    let (ok, csv, err) = cli(
        &url,
        &token,
        &["meters", "read", "--period", &month, "--format", "csv"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        csv.lines()
            .any(|l| l.starts_with("ACM9K-000001,") && l.contains(",total,")),
        "{csv}"
    );
    // The faulting devices' own troubles, one of them fixed by a setting.
    let t = eventually("the fuser troubles", PATIENCE, || async {
        let (ok, out, _) = cli(&url, &token, &["troubles", "list", "--json"]).await;
        let t: Value = serde_json::from_str(&out).ok()?;
        let rules: std::collections::BTreeSet<String> = t["troubles"]
            .as_array()?
            .iter()
            .filter_map(|t| t["rule_id"].as_str().map(str::to_owned))
            .collect();
        (ok && rules.contains("fuser-overheat") && rules.contains("fuser-temperature-drift"))
            .then_some(t)
    })
    .await;
    assert!(
        t["troubles"]
            .as_array()
            .expect("troubles")
            .iter()
            .any(|t| t["rule_id"] == "fuser-temperature-drift"
                && t["fix_outcome"]
                    .as_str()
                    .is_some_and(|o| o.contains("fuser.temp_offset_c"))),
        "{t}"
    );
    let (ok, out, _) = cli(
        &url,
        &token,
        &["devices", "about", "ACM9K-000033", "--json"],
    )
    .await;
    let a: Value = serde_json::from_str(&out).expect("json");
    assert!(ok && a["rollout_eligible"] == false, "{a}");
    assert_eq!(
        a["abnormal_units"][0]["rule_id"], "fuser-temperature",
        "{a}"
    );

    let pid = child.id().expect("running");
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    while let Ok(Some(_)) = lines.next_line().await {}
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the demo stops")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}
