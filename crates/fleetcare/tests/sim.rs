//! `fleetcare sim`, the real binary, against a real `fleetcare serve`: the fleet enrolls,
//! connects and reports (connect, periodic, change after unit swaps), its error processes
//! reach the center exactly once, and installs fail at the profile's rate.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{PATIENCE, cli, fleetcare, online_and_reported, read_secret, serve};
use fleetcare_testkit::eventually;
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// `fleetcare sim` as a child: started now, its summary (JSON) when it ends.
fn sim(
    url: &str,
    data: &Path,
    profile: &Path,
    devices: usize,
    extra: &[&str],
) -> tokio::process::Child {
    let mut c = fleetcare();
    c.args(["sim", "--json", "--center", url, "--devices"])
        .arg(devices.to_string())
        .arg("--profile")
        .arg(profile)
        .arg("--enrollment-key-file")
        .arg(data.join("enrollment-key"))
        .args(extra)
        .stdout(Stdio::piped());
    c.spawn().expect("fleetcare sim starts")
}

async fn summary(mut child: tokio::process::Child) -> Value {
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .await
        .expect("read");
    let status = tokio::time::timeout(PATIENCE * 3, child.wait())
        .await
        .expect("the simulator ends")
        .expect("wait");
    assert!(status.success(), "fleetcare sim failed: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

async fn get(url: &str, token: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn a_simulated_fleet_reports_swaps_units_and_logs_errors_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &[]).await;
    let (url, token) = (served.url.clone(), read_secret(&data.join("admin-token")));
    let profile = dir.path().join("fast.toml");
    // Two simulated hours pass every second: jams and swaps within seconds.
    std::fs::write(
        &profile,
        "speed = 7200\npages_per_hour = 600\nreport_interval_s = 1\nerrors_interval_s = 1\n\
         swaps_per_device_day = 2\n\
         [[error]]\ncode = \"J-100\"\nunit_kind = \"paper-feeder\"\nseverity = \"warning\"\n\
         per_pages = 300\njam = true\n",
    )
    .expect("write");
    let devices = 24;
    let s = summary(sim(&url, &data, &profile, devices, &["--duration", "4"])).await;
    assert_eq!(s["devices"], devices, "{s}");
    assert_eq!(s["connected_push"], devices, "{s}");
    assert_eq!(s["agents_failed"], 0, "{s}");
    assert_eq!(s["reports_by_trigger"]["connect"], devices, "{s}");
    assert!(
        s["reports_by_trigger"]["periodic"].as_u64() > Some(0),
        "{s}"
    );
    assert!(s["unit_swaps"].as_u64() > Some(0), "{s}");
    assert!(s["reports_by_trigger"]["change"].as_u64() > Some(0), "{s}");
    assert!(s["center_cores"].as_f64().is_some(), "{s}");
    assert!(s["report_ack"]["count"].as_u64() > Some(0), "{s}");

    // The center knows every device with its units, the replacements in their histories, and
    // each acknowledged error event once.
    let list = get(&url, &token, "/api/v1/devices?limit=1000").await;
    let ids: Vec<String> = list["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), devices, "{list}");
    let (mut stored, mut replaced) = (0u64, 0usize);
    for id in &ids {
        let d = get(&url, &token, &format!("/api/v1/devices/{id}")).await;
        assert!(d["units"].as_array().is_some_and(|u| u.len() >= 3), "{d}");
        let e = get(
            &url,
            &token,
            &format!("/api/v1/devices/{id}/errors?limit=1000"),
        )
        .await;
        stored += e["events"].as_array().map_or(0, |v| v.len() as u64);
        let h = get(&url, &token, &format!("/api/v1/devices/{id}/history")).await;
        if h.to_string().contains("replaced") {
            replaced += 1;
        }
    }
    assert!(
        replaced > 0,
        "a swap shows as a replacement in some history"
    );
    assert!(stored > 0, "errors reached the center");
    assert_eq!(
        stored,
        s["error_events_sent"].as_u64().expect("sent"),
        "every acknowledged event is stored once: {s}"
    );
    drop(served);
}

#[tokio::test]
async fn simulated_installs_fail_at_the_profiles_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &[]).await;
    let (url, token) = (served.url.clone(), read_secret(&data.join("admin-token")));
    let run = |args: String| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let a: Vec<&str> = args.split(' ').collect();
            let (ok, out, err) = cli(&url, &token, &a).await;
            assert!(ok, "fleetcare {args}: {err}");
            out
        }
    };
    let keys = dir.path().join("keys");
    let k = keys.display();
    run(format!("keys generate --out {k}")).await;
    run(format!("keys publish {k}/keys.json")).await;
    let fw = dir.path().join("ctl-lite-2.0.0.bin");
    std::fs::write(&fw, vec![7u8; 50_000]).expect("write");
    let manifest = dir.path().join("ctl-lite-2.0.0.json");
    run(format!(
        "release sign --key {k}/release-1.key.json --product ctl-lite-firmware --maker acme \
         --version 2.0.0 --counter 20 --target ctl-lite:C --out {} {}",
        manifest.display(),
        fw.display()
    ))
    .await;
    run(format!(
        "release publish {} {}",
        manifest.display(),
        fw.display()
    ))
    .await;

    // Printers only (their controller runs ctl-lite-firmware), half of whose installs fail
    // their health check.
    let profile = dir.path().join("installs.toml");
    std::fs::write(
        &profile,
        "install_failure = 0.5\nscenarios = false\n[models]\n\"acme-printer-p500\" = 1\n",
    )
    .expect("write");
    let devices = 16;
    let root = keys.join("root.json");
    let child = sim(
        &url,
        &data,
        &profile,
        devices,
        &["--trust-root", root.to_str().expect("utf-8")],
    );
    let ids: Vec<String> = eventually("the fleet is online and reported", PATIENCE, || async {
        let l = get(&url, &token, "/api/v1/devices?limit=1000").await;
        let ids: Vec<String> = l["devices"]
            .as_array()?
            .iter()
            .filter(|d| online_and_reported(d))
            .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
            .collect();
        (ids.len() == devices).then_some(ids)
    })
    .await;
    for id in &ids {
        run(format!(
            "jobs create --device {id} --install controller:ctl-lite-firmware=2.0.0"
        ))
        .await;
    }
    let states: Vec<String> = eventually("every job ended", PATIENCE * 2, || async {
        let j = get(&url, &token, "/api/v1/jobs?limit=1000").await;
        let states: Vec<String> = j["jobs"]
            .as_array()?
            .iter()
            .filter_map(|j| j["state"].as_str().map(str::to_owned))
            .collect();
        (states.len() == devices
            && states
                .iter()
                .all(|s| matches!(s.as_str(), "succeeded" | "rolled_back" | "failed")))
        .then_some(states)
    })
    .await;
    let ok = states.iter().filter(|s| *s == "succeeded").count();
    let back = states.iter().filter(|s| *s == "rolled_back").count();
    assert_eq!(ok + back, devices, "{states:?}");
    assert!(ok > 0 && back > 0, "about half each: {states:?}");
    // The devices whose install held run the new version; the others the old one.
    let mut on_new = 0;
    for id in &ids {
        let d = get(&url, &token, &format!("/api/v1/devices/{id}")).await;
        let active: Vec<&str> = d["units"][0]["software"]
            .as_array()
            .expect("software")
            .iter()
            .filter(|s| s["active"] != false && s["product"] == "ctl-lite-firmware")
            .filter_map(|s| s["version"].as_str())
            .collect();
        if active == ["2.0.0"] {
            on_new += 1;
        }
    }
    assert_eq!(on_new, ok, "reports show exactly the successful installs");
    // The simulator saw the same.
    let pid = child.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    let s = summary(child).await;
    assert_eq!(s["jobs"]["succeeded"].as_u64(), Some(ok as u64), "{s}");
    assert_eq!(s["jobs"]["rolled_back"].as_u64(), Some(back as u64), "{s}");
    drop(served);
}
