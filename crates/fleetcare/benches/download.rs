//! B7: artifact download. 100 concurrent Range downloads of a 256 MiB artifact over
//! loopback from the real `fleetcare serve`, and the same from nginx serving the same file in
//! the same run; aggregate throughput and the ratio.
//!
//! `cargo bench -p fleetcare --bench download` (BENCH_CLIENTS, default 100; BENCH_MIB,
//! default 256; BENCH_ROUNDS, default 3; BENCH_CACHE_MB, default 512: 0 streams the artifact
//! from its file). nginx comes from `scripts/install-bench-deps`; without it the center is
//! measured alone and the ratio is not given.
//!
//! The release is made and published with the real CLI (`keys generate`, `release sign`,
//! `keys publish`, `release publish`). The client is a minimal HTTP/1.1 reader (one request
//! per connection, the body counted and dropped) so that it costs both servers the same.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Write `mib` MiB of incompressible bytes.
fn write_artifact(path: &Path, mib: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&block).expect("write");
    }
    f.flush().expect("flush");
}

/// One download: `GET path` with `Range: bytes=0-`; the body bytes received.
async fn download(addr: &str, path: &str, token: &str) -> u64 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nRange: bytes=0-\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("request");
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    let mut body = 0u64;
    let mut in_body = false;
    loop {
        let n = s.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        if in_body {
            body += n as u64;
            continue;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = String::from_utf8_lossy(&head[..head.len().min(400)]).into_owned();
            assert!(status.contains(" 206 "), "a partial answer: {status}");
            body += (head.len() - end - 4) as u64;
            in_body = true;
        }
    }
    body
}

/// `clients` concurrent downloads; aggregate bytes per second.
async fn round(addr: &str, path: &str, token: &str, clients: u64, size: u64) -> f64 {
    let t = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, path, token) = (addr.to_owned(), path.to_owned(), token.to_owned());
            tokio::spawn(async move { download(&addr, &path, &token).await })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        let got = t.await.expect("download task");
        assert_eq!(got, size, "every download is complete");
        total += got;
    }
    total as f64 / t.elapsed().as_secs_f64()
}

fn gbps(b: f64) -> String {
    format!("{:.2} GB/s", b / 1e9)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clients = env_or("BENCH_CLIENTS", 100);
    let mib = env_or("BENCH_MIB", 256);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("controller-fw.bin");
    write_artifact(&file, mib);
    let size = mib << 20;

    let data = dir.path().join("center");
    // BENCH_CACHE_MB=0: the artifact is streamed from its file (as one larger than half the
    // cache budget is), not served from memory.
    let conf = dir.path().join("center.toml");
    let cache_mb = env_or("BENCH_CACHE_MB", 512);
    // All downloads use one device's token: its request budget (120 at once, 10/s by
    // default) would refuse the later rounds once a round takes less than 8 s.
    std::fs::write(
        &conf,
        format!("artifact_cache_mb = {cache_mb}\ndevice_burst = 100000\n"),
    )
    .expect("config");
    let conf = conf.display().to_string();
    let served = common::serve(&data, &["--config", &conf]).await;
    let url = served.url.clone();
    let admin = common::read_secret(&data.join("admin-token"));
    let keys = dir.path().join("keys");
    let keys_s = keys.display().to_string();
    let cli = |args: Vec<String>| {
        let (url, admin) = (url.clone(), admin.clone());
        async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let (ok, out, err) = common::cli(&url, &admin, &a).await;
            assert!(ok, "fleetcare {a:?}: {out}{err}");
        }
    };
    cli(vec![
        "keys".into(),
        "generate".into(),
        "--out".into(),
        keys_s.clone(),
    ])
    .await;
    cli(vec![
        "keys".into(),
        "publish".into(),
        format!("{keys_s}/keys.json"),
    ])
    .await;
    let manifest = dir.path().join("release.json").display().to_string();
    cli(vec![
        "release".into(),
        "sign".into(),
        "--key".into(),
        format!("{keys_s}/release-1.key.json"),
        "--product".into(),
        "controller-fw".into(),
        "--maker".into(),
        "acme".into(),
        "--version".into(),
        "1.0".into(),
        "--counter".into(),
        "1".into(),
        "--target".into(),
        "ctl-x2:A".into(),
        "--out".into(),
        manifest.clone(),
        file.display().to_string(),
    ])
    .await;
    cli(vec![
        "release".into(),
        "publish".into(),
        "--json".into(),
        manifest,
        file.display().to_string(),
    ])
    .await;
    let sha = {
        let text = std::fs::read(dir.path().join("release.json")).expect("manifest");
        let env = fleetcare_trust::Envelope::parse(&text).expect("envelope");
        let m = fleetcare_trust::ReleaseManifest::from_json(&env.unverified_payload().expect("p"))
            .expect("manifest");
        m.artifacts[0].sha256.clone()
    };
    let http = reqwest::Client::new();
    let key = common::read_secret(&data.join("enrollment-key"));
    let token = common::enroll(&http, &url, &key, "BENCH-DL-1").await;
    let center_addr = url.trim_start_matches("http://").to_owned();
    let path = format!("/device/v1/artifacts/{sha}");

    // nginx serving the same file at the same path.
    let nginx = which("nginx");
    let mut nginx_child = None;
    // A free port for nginx.
    let nginx_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let nginx_addr = nginx_addr.as_str();
    if let Some(bin) = &nginx {
        let root = dir.path().join("nginx");
        let served_dir = root.join("www/device/v1/artifacts");
        std::fs::create_dir_all(&served_dir).expect("mkdir");
        std::fs::create_dir_all(root.join("logs")).expect("mkdir");
        std::fs::hard_link(&file, served_dir.join(&sha)).expect("link");
        let conf = root.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 2;\ndaemon off;\nmaster_process on;\npid {r}/nginx.pid;\nerror_log {r}/logs/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{ access_log off; sendfile on; tcp_nopush on; default_type application/octet-stream;\n\
                   client_body_temp_path {r}/tmp; proxy_temp_path {r}/tmp; fastcgi_temp_path {r}/tmp; uwsgi_temp_path {r}/tmp; scgi_temp_path {r}/tmp;\n\
                   server {{ listen {nginx_addr}; root {r}/www; }} }}\n",
                r = root.display()
            ),
        )
        .expect("conf");
        let child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        nginx_child = Some(child);
        fleetcare_testkit::eventually("nginx listening", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(nginx_addr)
                .await
                .ok()
                .map(|_| ())
        })
        .await;
    } else {
        println!("nginx is not installed (scripts/install-bench-deps): measuring the center alone");
    }

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let a = round(&center_addr, &path, &token, clients, size).await;
        ours.push(a);
        let line = if nginx.is_some() {
            let b = round(nginx_addr, &path, "", clients, size).await;
            theirs.push(b);
            format!("center {} nginx {} ratio {:.2}", gbps(a), gbps(b), a / b)
        } else {
            format!("center {}", gbps(a))
        };
        println!("round {}: {clients} × {mib} MiB: {line}", r + 1);
    }
    let a = median(ours);
    if theirs.is_empty() {
        println!(
            "B7: {clients} concurrent Range downloads of {mib} MiB: center {} (median of {rounds})",
            gbps(a)
        );
    } else {
        let b = median(theirs);
        println!(
            "B7: {clients} concurrent Range downloads of {mib} MiB: center {}, nginx {}, ratio {:.2} (medians of {rounds})",
            gbps(a),
            gbps(b),
            a / b
        );
    }
    if let Some(mut c) = nginx_child {
        // SIGQUIT to the master: it and its workers end (a SIGKILL would orphan the workers).
        if let Some(pid) = c.id() {
            let _ = std::process::Command::new("kill")
                .args(["-QUIT", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        let _ = c.kill().await;
    }
    let mut served = served;
    let _ = served.child.kill().await;
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
