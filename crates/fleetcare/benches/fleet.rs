//! Benchmarks driven by the fleet simulator against the real `fleetcare serve` (release
//! build), each printing its figure beside its target (TARGETS.md):
//!
//! - B1: structure reports, acknowledged only when durable — `BENCH_DEVICES` (3000) virtual
//!   devices reporting every second for `BENCH_SECONDS` (20).
//! - B3: idle connected devices — `BENCH_IDLE` (10000) virtual devices on WebSockets: the
//!   center's resident memory and the kernel's TCP memory per device; then new connections per
//!   second per server core, `BENCH_CONNECT` (5000) enrolled devices opening WebSockets. With
//!   a measurement build and `FLEETCARE_HEAP_LOG=<path>` (`cargo bench -p fleetcare --features
//!   heap-count`), also the center's live heap: per connection, kept per device, and at the
//!   connect storm's peak.
//! - B4: polling devices — `BENCH_POLLERS` (5000) virtual devices long-polling with a 1 s
//!   wait: polls per second per server core, and the store's group commits meanwhile (an
//!   unchanged poll writes nothing).
//! - DDI: hawkBit clients polling — `BENCH_DDI` (2000) targets (made by their first poll
//!   through a gateway token), polled by 64 keep-alive connections in turn: polls per second
//!   per server core when there is nothing to do, and the store's group commits meanwhile.
//! - B10: the real `fleetcare-agent` binary (`cargo build --profile device -p
//!   fleetcare-agent` first; else the release build; `FLEETCARE_AGENT_BIN` names another):
//!   idle memory, CPU per report, the memory while reporting every second, and a 10-unit
//!   report's size on the wire.
//!
//! - B8: convergence — `BENCH_CONVERGE` (10000) virtual printers on push, over this process
//!   and a `fleetcare sim` child; a rollout of a
//!   signed release in waves `1%,10%,100%`: the time from its start until 95 % run it.
//!
//! `cargo bench -p fleetcare --bench fleet` (`BENCH=b1,b3,b4,b8,b10,ddi` picks some).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleetcare_sim::{Profile, Sim, SimOptions};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wanted(name: &str) -> bool {
    std::env::var("BENCH").map_or(true, |b| b.split(',').any(|x| x.trim() == name))
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

/// CPU seconds of a process from the scheduler's nanosecond counters of its threads
/// (`/proc/PID/task/*/schedstat`; exact, where `/proc/PID/stat` counts 10 ms ticks).
fn cpu_exact(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        / 1e9
}

/// (VmRSS, RssAnon) of a process, bytes.
fn rss(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb = |k: &str| {
        s.lines()
            .find_map(|l| {
                l.strip_prefix(k)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
            * 1024.0
    };
    (kb("VmRSS:"), kb("RssAnon:"))
}

fn pss(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    s.lines()
        .find_map(|l| {
            l.strip_prefix("Pss:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0)
        * 1024.0
}

/// The live heap of a center built with `heap-count` and run with `FLEETCARE_HEAP_LOG`, and its
/// peak so far, bytes (its last complete line of `<path>.<pid>`); `None` otherwise.
fn heap(pid: u32) -> Option<(f64, f64)> {
    let mut path = std::env::var_os("FLEETCARE_HEAP_LOG")?;
    path.push(format!(".{pid}"));
    let text = std::fs::read_to_string(path).ok()?;
    let complete = &text[..text.rfind('\n')?];
    let mut f = complete.lines().last()?.split_whitespace().skip(1);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// The kernel's slab memory (socket structures live there), bytes (`/proc/meminfo`).
fn slab() -> f64 {
    let s = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    s.lines()
        .find_map(|l| {
            l.strip_prefix("Slab:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0)
        * 1024.0
}

/// The kernel's TCP memory (all sockets of the machine), bytes (`/proc/net/sockstat`).
fn tcp_mem() -> f64 {
    let s = std::fs::read_to_string("/proc/net/sockstat").expect("sockstat");
    let pages = s
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|x| *x == "mem")?;
            f.get(i + 1)?.parse::<f64>().ok()
        })
        .unwrap_or(0.0);
    pages * 4096.0
}

async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // Every series of the name, whatever its labels.
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = match rest.strip_prefix('{') {
                Some(r) => &r[r.find('}')? + 1..],
                None => rest,
            };
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
        .sum()
}

fn profile(text: &str) -> Profile {
    Profile::parse(text).expect("a valid profile")
}

async fn fleet(url: &str, data: &Path, devices: usize, p: Profile) -> Sim {
    Sim::start(SimOptions {
        center_url: url.to_owned(),
        enrollment_key: common::read_secret(&data.join("enrollment-key")),
        devices,
        offset: 0,
        profile: p,
        id_prefix: None,
        trust_root: None,
        scratch: None,
    })
    .await
    .expect("the fleet starts")
}

async fn b1(devices: usize, seconds: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = common::serve(&data, &[]).await;
    let sim = fleet(
        &served.url,
        &data,
        devices,
        profile("report_interval_s = 1\nswaps_per_device_day = 0\nscenarios = false\nconnect_per_s = 5000\n"),
    )
    .await;
    let up = sim.wait_connected(devices, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // warm-up
    let commits0 = metric(&served.url, "fleetcare_store_group_commits_total").await;
    sim.begin_window().await;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let s = sim.summary().await;
    let commits = metric(&served.url, "fleetcare_store_group_commits_total").await - commits0;
    println!(
        "B1 reports (sim, SQLite): {devices} devices ({up} connected) each every 1 s, {:.0} s: \
         {:.0} reports/s; ack p50 {:.1} ms p99 {:.1} ms max {:.1} ms; center {:.2} cores = \
         {:.0} reports/s per server core; {:.1} reports per group commit; simulator {:.2} cores",
        s.measured_s,
        s.reports_per_s,
        s.report_ack.p50_ms,
        s.report_ack.p99_ms,
        s.report_ack.max_ms,
        s.center_cores.unwrap_or(0.0),
        s.reports_per_center_core.unwrap_or(0.0),
        s.reports_per_s * s.measured_s / commits.max(1.0),
        s.sim_cores,
    );
    let _ = sim.stop().await;
    served.kill9().await;
}

async fn b3(idle: usize, connect: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = common::serve(&data, &[]).await;
    let pid = served.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss0, _) = rss(pid);
    let heap0 = heap(pid);
    let (tcp0, slab0) = (tcp_mem(), slab());
    let sim = fleet(
        &served.url,
        &data,
        idle,
        profile(
            "report_interval_s = 86400\nerrors_interval_s = 86400\nswaps_per_device_day = 0\n\
             scenarios = false\ntransport = \"websocket\"\nconnect_per_s = 4000\n",
        ),
    )
    .await;
    let up = sim.wait_connected(idle, Duration::from_secs(180)).await;
    // Settle: the connect reports are stored, buffers drained.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss1, _) = rss(pid);
    let heap1 = heap(pid);
    let (tcp1, slab1) = (tcp_mem(), slab());
    let fds = metric(&served.url, "process_open_fds").await;
    let n = up.max(1) as f64;
    let per_rss = (rss1 - rss0) / n;
    // Loopback: both ends of every connection are on this machine; the center's is half
    // (socket structures in the slab, buffered data in TCP memory; the slab also grew for the
    // simulator's own allocations, so this is an upper bound).
    let per_kernel = ((tcp1 - tcp0) + (slab1 - slab0)) / n / 2.0;
    let _ = sim.stop().await;
    // What the connections themselves held: the center's memory once they are gone (its
    // store caches, filled by the devices' first reports, stay).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss2, _) = rss(pid);
    let heap2 = heap(pid);
    let per_conn = (rss1 - rss2) / n;
    println!(
        "B3 idle devices (sim, WebSocket): {up} connected, {fds:.0} descriptors; center \
         resident +{:.1} MB over the empty center = {:.1} KB per device (store caches \
         included); {:.1} KB per device freed when they disconnect; kernel {:.1} KB per \
         device (slab and TCP memory, the center's half): {:.1} KB per connected device (target \
         ≤ 8 KB, kernel included)",
        (rss1 - rss0) / 1e6,
        per_rss / 1024.0,
        per_conn / 1024.0,
        per_kernel / 1024.0,
        (per_conn + per_kernel) / 1024.0,
    );
    if let (Some((live0, _)), Some((live1, peak)), Some((live2, _))) = (heap0, heap1, heap2) {
        println!(
            "B3 the center's live heap (counting allocator): empty {:.1} MB, connected {:.1} MB, \
             after they left {:.1} MB, peak {:.1} MB: {:.2} KB per connection, {:.2} KB kept per \
             device, {:.1} KB per device at the connect storm's peak; resident beyond the live \
             heap while connected: {:.1} KB per device",
            live0 / 1e6,
            live1 / 1e6,
            live2 / 1e6,
            peak / 1e6,
            (live1 - live2) / n / 1024.0,
            (live2 - live0) / n / 1024.0,
            (peak - live0) / n / 1024.0,
            ((rss1 - rss0) - (live1 - live0)) / n / 1024.0,
        );
    }

    // New connections: enrolled devices open their WebSockets, 64 at a time.
    let http = reqwest::Client::new();
    let key = common::read_secret(&data.join("enrollment-key"));
    let mut tokens = Vec::with_capacity(connect);
    let mut pending = futures_util::stream::FuturesUnordered::new();
    use futures_util::StreamExt;
    for i in 0..connect {
        let (http, url, key) = (http.clone(), served.url.clone(), key.clone());
        pending.push(async move { common::enroll(&http, &url, &key, &format!("WS-{i:06}")).await });
        if pending.len() >= 64
            && let Some(t) = pending.next().await
        {
            tokens.push(t);
        }
    }
    while let Some(t) = pending.next().await {
        tokens.push(t);
    }
    let ws_url = served.url.replacen("http://", "ws://", 1) + "/device/v1/push";
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut sockets = Vec::with_capacity(connect);
    let mut opening = futures_util::stream::FuturesUnordered::new();
    for t in tokens {
        let url = ws_url.clone();
        opening.push(async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = url.into_client_request().expect("request");
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
            tokio_tungstenite::connect_async(req)
                .await
                .expect("WebSocket")
                .0
        });
        if opening.len() >= 64
            && let Some(s) = opening.next().await
        {
            sockets.push(s);
        }
    }
    while let Some(s) = opening.next().await {
        sockets.push(s);
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    println!(
        "B3 new connections: {} WebSockets opened (upgrade and credential check) in {wall:.2} s \
         = {:.0}/s; center CPU {cpu:.2} s = {:.0} connections/s per server core (target ≥ 5 K)",
        sockets.len(),
        sockets.len() as f64 / wall,
        sockets.len() as f64 / cpu.max(1e-9),
    );
    drop(sockets);
    served.kill9().await;
}

async fn b4(pollers: usize, seconds: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = common::serve(&data, &[]).await;
    let sim = fleet(
        &served.url,
        &data,
        pollers,
        profile(
            "report_interval_s = 86400\nerrors_interval_s = 86400\nswaps_per_device_day = 0\n\
             scenarios = false\ntransport = \"poll\"\npoll_wait_s = 1\nconnect_per_s = 4000\n",
        ),
    )
    .await;
    let up = sim.wait_connected(pollers, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(5)).await; // the connect reports are stored
    let polls0 = metric(&served.url, "fleetcare_polls_total").await;
    let commits0 = metric(&served.url, "fleetcare_store_group_commits_total").await;
    let cpu0 = cpu_seconds(served.pid());
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(served.pid()) - cpu0;
    let polls = metric(&served.url, "fleetcare_polls_total").await - polls0;
    let commits = metric(&served.url, "fleetcare_store_group_commits_total").await - commits0;
    println!(
        "B4 polling (sim, long polls of 1 s): {up} devices, {wall:.0} s: {:.0} polls/s; center \
         {:.2} cores = {:.0} polls/s per server core (target ≥ 30 K); group commits meanwhile: \
         {commits:.0} (an unchanged poll writes nothing)",
        polls / wall,
        cpu / wall,
        polls / cpu.max(1e-9),
    );
    let _ = sim.stop().await;
    served.kill9().await;
}

/// DDI polls with nothing to do: a hawkBit fleet's steady state.
async fn ddi(targets: usize, seconds: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let config = dir.path().join("center.toml");
    std::fs::write(
        &config,
        "device_rate_per_s = 100000\ndevice_burst = 100000\n",
    )
    .expect("config");
    let served = common::serve(&data, &["--config", config.to_str().expect("utf-8")]).await;
    let token = common::read_secret(&data.join("admin-token"));
    let out = operator(&served.url, &token, &["ddi", "gateway-token", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let gateway = format!(
        "GatewayToken {}",
        v["gateway_token"].as_str().expect("token")
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let url = served.url.clone();
    let poll = move |i: usize| {
        let (http, gateway, url) = (http.clone(), gateway.clone(), url.clone());
        async move {
            let r = http
                .get(format!("{url}/default/controller/v1/DDI-{i:06}"))
                .header("authorization", gateway)
                .send()
                .await
                .expect("poll");
            assert!(r.status().is_success(), "{}", r.status());
            let _ = r.bytes().await;
        }
    };
    // Every target's first poll makes it a device.
    for chunk in (0..targets).collect::<Vec<_>>().chunks(64) {
        futures_util::future::join_all(chunk.iter().map(|&i| poll(i))).await;
    }
    let polls0 = metric(&served.url, "fleetcare_polls_total").await;
    let commits0 = metric(&served.url, "fleetcare_store_group_commits_total").await;
    let cpu0 = cpu_exact(served.pid());
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..64)
        .map(|w| {
            let poll = poll.clone();
            tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < deadline {
                    poll(i % targets).await;
                    i += 64;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_exact(served.pid()) - cpu0;
    let polls = metric(&served.url, "fleetcare_polls_total").await - polls0;
    let commits = metric(&served.url, "fleetcare_store_group_commits_total").await - commits0;
    println!(
        "DDI polls (hawkBit clients, nothing to do): {targets} targets, {wall:.0} s: {:.0} polls/s; \
         center {:.2} cores = {:.0} polls/s per server core; group commits meanwhile: \
         {commits:.0}",
        polls / wall,
        cpu / wall,
        polls / cpu.max(1e-9),
    );
    served.kill9().await;
}

/// The `fleetcare` binary as an operator runs it.
fn operator(url: &str, token: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare"))
        .args(args)
        .env("FLEETCARE_URL", url)
        .env("FLEETCARE_TOKEN", token)
        .output()
        .expect("fleetcare runs");
    assert!(
        out.status.success(),
        "fleetcare {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn b8(devices: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = common::serve(&data, &[]).await;
    let (url, token) = (
        served.url.clone(),
        common::read_secret(&data.join("admin-token")),
    );
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/catalog.toml");
    operator(&url, &token, &["catalog", "load", catalog]);
    let keys = dir.path().join("keys");
    let k = keys.to_str().expect("utf-8");
    operator(&url, &token, &["keys", "generate", "--out", k]);
    operator(
        &url,
        &token,
        &["keys", "publish", &format!("{k}/keys.json")],
    );
    let fw = dir.path().join("ctl-lite-2.0.0.bin");
    std::fs::write(&fw, vec![7u8; 64 * 1024]).expect("write");
    let manifest = dir.path().join("ctl-lite-2.0.0.json");
    let (fw_s, m_s) = (
        fw.to_str().expect("utf-8"),
        manifest.to_str().expect("utf-8"),
    );
    operator(
        &url,
        &token,
        &[
            "release",
            "sign",
            "--key",
            &format!("{k}/release-1.key.json"),
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
            m_s,
            fw_s,
        ],
    );
    operator(&url, &token, &["release", "publish", m_s, fw_s]);
    // Two processes share the fleet: each device holds a connection, and during its install a
    // download connection and a staged file too, which for 10 K devices at once is more than
    // the 20,000 descriptors one process may hold here.
    let text = "report_interval_s = 86400\nerrors_interval_s = 86400\nswaps_per_device_day = 0\n\
             scenarios = false\ntransport = \"websocket\"\nconnect_per_s = 4000\n\
             [models]\n\"acme-printer-p500\" = 1\n";
    let here = devices / 2;
    let profile_file = dir.path().join("b8.toml");
    std::fs::write(&profile_file, text).expect("profile");
    let mut other = std::process::Command::new(env!("CARGO_BIN_EXE_fleetcare"))
        .args(["sim", "--center", &url, "--json"])
        .args(["--devices", &(devices - here).to_string()])
        .args(["--offset", &here.to_string()])
        .arg("--profile")
        .arg(&profile_file)
        .arg("--trust-root")
        .arg(keys.join("root.json"))
        .arg("--enrollment-key-file")
        .arg(data.join("enrollment-key"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("fleetcare sim starts");
    let sim = Sim::start(SimOptions {
        center_url: url.clone(),
        enrollment_key: common::read_secret(&data.join("enrollment-key")),
        devices: here,
        offset: 0,
        profile: profile(text),
        id_prefix: None,
        trust_root: Some(keys.join("root.json")),
        scratch: None,
    })
    .await
    .expect("the fleet starts");
    // Every device of both processes is connected once the center counts them.
    let started = Instant::now();
    let up = loop {
        let n = online(&url).await;
        if n >= devices || started.elapsed() > Duration::from_secs(180) {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let t0 = Instant::now();
    let out = operator(
        &url,
        &token,
        &[
            "rollouts",
            "create",
            "--json",
            "--name",
            "converge",
            "--release",
            "ctl-lite-firmware=2.0.0",
            "--waves",
            "1%,10%,100%",
            "--failure-ratio",
            "none",
            "--max-concurrent",
            "10000",
            "--min-finished",
            "1",
        ],
    );
    let created = t0.elapsed();
    let id = serde_json::from_str::<serde_json::Value>(&out).expect("json")["id"]
        .as_u64()
        .expect("id");
    let http = reqwest::Client::new();
    let mut marks: Vec<(f64, Duration)> = Vec::new();
    let converged = loop {
        let r: serde_json::Value = http
            .get(format!("{url}/api/v1/rollouts/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("show")
            .json()
            .await
            .expect("json");
        let total = &r["total"];
        let done = total["succeeded"].as_f64().unwrap_or(0.0)
            / total["devices"].as_f64().unwrap_or(1.0).max(1.0);
        for m in [0.5, 0.9, 0.95] {
            if done >= m && !marks.iter().any(|(x, _)| *x == m) {
                marks.push((m, t0.elapsed()));
            }
        }
        if done >= 0.95 {
            break Some(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(300) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let failed: serde_json::Value = http
        .get(format!(
            "{url}/api/v1/rollouts/{id}/devices?state=failed&limit=5"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("devices")
        .json()
        .await
        .expect("json");
    for d in failed["devices"].as_array().into_iter().flatten() {
        println!("B8 failed: {} {}", d["device_id"], d["reason"]);
    }
    let s = sim.summary().await;
    println!(
        "B8 convergence: {up} devices on push; rollout created in {created:.2?}; 50 % at {:?}, 90 % at {:?}, 95 % at {} (target ≤ 60 s); jobs ended: {:?}",
        marks.iter().find(|m| m.0 == 0.5).map(|m| m.1),
        marks.iter().find(|m| m.0 == 0.9).map(|m| m.1),
        converged.map_or("not within 300 s".into(), |d| format!("{d:.1?}")),
        s.jobs,
    );
    let _ = sim.stop().await;
    let _ = other.kill();
    let _ = other.wait();
    served.kill9().await;
}

/// Devices the center counts as connected on push (its metrics).
async fn online(url: &str) -> usize {
    let Ok(r) = reqwest::get(format!("{url}/metrics")).await else {
        return 0;
    };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("fleetcare_push_connected_devices "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as usize)
}

fn agent_binary() -> PathBuf {
    // Another build of the agent, to compare in the same run conditions.
    if let Some(bin) = std::env::var_os("FLEETCARE_AGENT_BIN") {
        return PathBuf::from(bin);
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    for p in ["device/fleetcare-agent", "release/fleetcare-agent"] {
        if target.join(p).exists() {
            return target.join(p);
        }
    }
    panic!("build the agent first: cargo build --profile device -p fleetcare-agent");
}

async fn b10() {
    let bin = agent_binary();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("center");
    let served = common::serve(&data, &[]).await;
    let base = dir.path().join("agent");
    std::fs::create_dir_all(&base).expect("mkdir");
    let inventory = include_str!("../../../examples/inventories/acme-mfp-9000.toml");
    std::fs::write(base.join("inventory.toml"), inventory).expect("inventory");
    let run = |interval: u64| {
        std::fs::write(
            base.join("agent.toml"),
            format!(
                "center_url = \"{}\"\nenrollment_key_file = \"{}\"\ndata_dir = \"data\"\n\
                 inventory = \"inventory.toml\"\nreport_interval_s = {interval}\n",
                served.url,
                data.join("enrollment-key").display()
            ),
        )
        .expect("config");
        std::process::Command::new(&bin)
            .args(["run", "--config"])
            .arg(base.join("agent.toml"))
            .env("FLEETCARE_LOG", "warn")
            .spawn()
            .expect("the agent starts")
    };
    let stored = |url: String| async move { metric(&url, "fleetcare_reports_stored_total").await };
    // Idle: connected, nothing to do.
    let mut agent = run(86_400);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = agent.id();
    let c0 = cpu_exact(pid);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let idle_cpu = (cpu_exact(pid) - c0) / 30.0;
    let (vm_rss, anon) = rss(pid);
    let p = pss(pid);
    let _ = agent.kill();
    let _ = agent.wait();
    // Busy: a report every second.
    let mut agent = run(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = agent.id();
    let (c0, r0, t0) = (
        cpu_exact(pid),
        stored(served.url.clone()).await,
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (c1, r1, wall) = (
        cpu_exact(pid),
        stored(served.url.clone()).await,
        t0.elapsed().as_secs_f64(),
    );
    // What stays resident once the report's code has run too.
    let (busy_rss, _) = rss(pid);
    let _ = agent.kill();
    let _ = agent.wait();
    let reports = r1 - r0;
    let per_report = ((c1 - c0) - idle_cpu * wall).max(0.0) / reports.max(1.0);
    // The report on the wire: the inventory's 10 units, as the agent sends it.
    let snap = fleetcare_agent::source::parse_inventory(Path::new("inventory.toml"), inventory)
        .expect("inventory");
    let report = fleetcare_wire::device::StructureReport {
        device_id: snap.device_id,
        model: snap.model,
        seq: 123_456,
        trigger: fleetcare_wire::Trigger::Periodic,
        observed_at_ms: 1_790_000_000_000,
        units: snap.units,
        operating: snap.operating,
        supplies: snap.supplies,
        install_blocked: None,
    };
    let json = serde_json::to_vec(&report).expect("json");
    let gz = fleetcare_agent::client::gzip(&json);
    println!(
        "B10 agent ({}): idle resident {:.2} MB (private {:.2} MB, proportional {:.2} MB; \
         target ≤ 5 MB), idle CPU {:.2} ms/s; {reports:.0} reports in {wall:.0} s: {:.2} ms CPU \
         per report (target ≤ 1 ms), resident {:.2} MB while reporting; a {}-unit report is {} bytes of JSON, {} on the wire \
         gzipped (target ≤ 1 KiB)",
        bin.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .unwrap_or(&bin)
            .display(),
        vm_rss / 1e6,
        anon / 1e6,
        p / 1e6,
        idle_cpu * 1000.0,
        per_report * 1000.0,
        busy_rss / 1e6,
        report.units.len(),
        json.len(),
        gz.len(),
    );
    served.kill9().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds = env_or("BENCH_SECONDS", 20);
    if wanted("b1") {
        b1(env_or("BENCH_DEVICES", 3000) as usize, seconds).await;
    }
    if wanted("b3") {
        b3(
            env_or("BENCH_IDLE", 10_000) as usize,
            env_or("BENCH_CONNECT", 5000) as usize,
        )
        .await;
    }
    if wanted("b4") {
        b4(env_or("BENCH_POLLERS", 5000) as usize, seconds).await;
    }
    if wanted("ddi") {
        ddi(env_or("BENCH_DDI", 2000) as usize, seconds).await;
    }
    if wanted("b8") {
        b8(env_or("BENCH_CONVERGE", 10_000) as usize).await;
    }
    if wanted("b10") {
        b10().await;
    }
}
