//! A rollout over a simulated fleet, with the real binaries: `fleetcare serve`, `fleetcare
//! sim` (1,000 printers running the real agent), and the operator's commands. The release
//! fails on 5 % of the fleet: the rollout pauses itself in its first wave and no device of a
//! later wave receives it; busy devices say so and take the job later.

mod common;

use std::process::Stdio;

use common::{PATIENCE, cli, fleetcare, online_and_reported, read_secret, serve};
use fleetcare_testkit::eventually;
use serde_json::Value;

#[tokio::test]
async fn a_release_that_fails_on_five_percent_pauses_in_its_first_wave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = serve(&data, &[]).await;
    let (url, token) = (served.url.clone(), read_secret(&data.join("admin-token")));
    let run = |args: Vec<String>| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, out, err) = cli(&url, &token, &a).await;
            assert!(ok, "fleetcare {args:?}: {err}");
            out
        }
    };
    let words = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/catalog.toml");
    run(words(&format!("catalog load {catalog}"))).await;
    let keys = dir.path().join("keys");
    let k = keys.display();
    run(words(&format!("keys generate --out {k}"))).await;
    run(words(&format!("keys publish {k}/keys.json"))).await;
    let fw = dir.path().join("ctl-lite-2.0.0.bin");
    std::fs::write(&fw, vec![9u8; 20_000]).expect("write");
    let manifest = dir.path().join("ctl-lite-2.0.0.json");
    run(words(&format!(
        "release sign --key {k}/release-1.key.json --product ctl-lite-firmware --maker acme \
         --version 2.0.0 --counter 20 --target ctl-lite:C --out {} {}",
        manifest.display(),
        fw.display()
    )))
    .await;
    run(words(&format!(
        "release publish {} {}",
        manifest.display(),
        fw.display()
    )))
    .await;

    let profile = dir.path().join("fleet.toml");
    std::fs::write(
        &profile,
        "install_failure = 0.05\nbusy_share = 0.1\nscenarios = false\nconnect_per_s = 2000\n\
         [models]\n\"acme-printer-p500\" = 1\n",
    )
    .expect("profile");
    let devices = 1000;
    let mut sim = fleetcare();
    sim.args([
        "sim",
        "--json",
        "--center",
        &url,
        "--devices",
        "1000",
        "--profile",
    ])
    .arg(&profile)
    .arg("--enrollment-key-file")
    .arg(data.join("enrollment-key"))
    .arg("--trust-root")
    .arg(keys.join("root.json"))
    .stdout(Stdio::null());
    let _sim = sim.spawn().expect("fleetcare sim starts");
    eventually("the fleet is online", PATIENCE * 3, || async {
        let (_, out, _) = cli(
            &url,
            &token,
            &["devices", "list", "--json", "--limit", "2000"],
        )
        .await;
        let v: Value = serde_json::from_str(&out).ok()?;
        let online = v
            .as_array()?
            .iter()
            .filter(|d| online_and_reported(d))
            .count();
        (online == devices).then_some(())
    })
    .await;

    let out = run(words(
        "rollouts create --json --name lite-2.0 --release ctl-lite-firmware=2.0.0 \
         --waves 10%,50%,100% --failure-ratio 0.01 --min-finished 1 --max-concurrent 200 --seed 1",
    ))
    .await;
    let r: Value = serde_json::from_str(&out).expect("json");
    let id = r["id"].as_u64().expect("id").to_string();
    assert_eq!(r["total"]["devices"], devices, "{r}");
    // `watch` follows the rollout until it needs an operator: here, until it paused itself.
    let watched =
        tokio::time::timeout(PATIENCE * 4, cli(&url, &token, &["rollouts", "watch", &id]))
            .await
            .expect("the rollout pauses in time");
    assert!(watched.0, "{}", watched.2);
    assert!(
        watched
            .1
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("paused")),
        "{}",
        watched.1
    );
    let (_, out, _) = cli(&url, &token, &["rollouts", "show", &id, "--json"]).await;
    let r: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["state"], "paused", "{r}");
    assert!(
        r["state_reason"]
            .as_str()
            .is_some_and(|s| s.contains("failed")),
        "{r}"
    );
    assert_eq!(r["current_wave"], 1, "still the first wave: {r}");
    assert!(r["waves"][0]["started_at"].is_string(), "{r}");
    assert!(r["waves"][0]["failed"].as_u64() >= Some(1), "{r}");
    for w in [1, 2] {
        let wave = &r["waves"][w];
        assert_eq!(
            (
                wave["running"].as_u64(),
                wave["succeeded"].as_u64(),
                wave["failed"].as_u64(),
                wave["started_at"].is_null()
            ),
            (Some(0), Some(0), Some(0), true),
            "no device of wave {} received it: {r}",
            w + 1
        );
    }
    // Every job of the rollout went to a device of its first wave.
    let (_, out, _) = cli(
        &url,
        &token,
        &["rollouts", "devices", &id, "--json", "--limit", "1000"],
    )
    .await;
    let d: Value = serde_json::from_str(&out).expect("json");
    let first: std::collections::BTreeSet<&str> = d["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter(|x| x["wave"] == 1)
        .filter_map(|x| x["device_id"].as_str())
        .collect();
    let (_, out, _) = cli(&url, &token, &["jobs", "list", "--json", "--limit", "2000"]).await;
    let jobs: Value = serde_json::from_str(&out).expect("json");
    let jobs = jobs["jobs"].as_array().expect("jobs");
    assert!(!jobs.is_empty());
    for j in jobs {
        assert!(
            first.contains(j["device_id"].as_str().unwrap_or("")),
            "a job outside wave 1: {j}"
        );
    }
    // Some devices were busy and took their job later.
    let mut busy = 0;
    for j in jobs.iter().take(200) {
        let id = j["id"].as_u64().expect("id").to_string();
        let (_, out, _) = cli(&url, &token, &["jobs", "show", &id, "--json"]).await;
        let v: Value = serde_json::from_str(&out).expect("json");
        if v["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["state"] == "busy"))
        {
            busy += 1;
        }
    }
    assert!(busy > 0, "no device said busy");
    drop(served);
}
