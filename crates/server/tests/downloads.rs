//! Artifact downloads over real sockets on a center that keeps nothing in memory
//! (`artifact_cache_mb = 0`), so a plain connection sends them from the file with `sendfile`:
//! whole, a range, 304, 416 and refusals on one keep-alive connection, then a request that is
//! not a download on the same connection (hyper's from then on), pipelined requests,
//! `Connection: close`, a trickled head cut off, reqwest as a client we did not write, the byte
//! counts by how they were sent, and a file shorter on disk than recorded refused before any
//! byte of it.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use fleetcare_server::{Center, ServerConfig};
use fleetcare_trust::{
    Artifact, ArtifactName, Envelope, KEYS_TYPE, KeyList, KeyPair, RELEASE_TYPE, ReleaseManifest,
    Target, format_time,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATIENCE: Duration = Duration::from_secs(15);

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `n` bytes that do not repeat within a page.
fn file_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One response read off a connection; what follows it stays for the next.
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

struct Client {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: tokio::net::TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, heads: &[String]) {
        self.stream
            .write_all(heads.concat().as_bytes())
            .await
            .expect("write");
    }

    /// Read until `n` more bytes are buffered; false if the connection ended first.
    async fn fill(&mut self, n: usize) -> bool {
        let mut chunk = vec![0u8; 1 << 16];
        while self.buf.len() < n {
            match self.stream.read(&mut chunk).await.expect("read") {
                0 => return false,
                got => self.buf.extend_from_slice(&chunk[..got]),
            }
        }
        true
    }

    /// The next response (a body only where the status has one: not to HEAD, not 304).
    async fn response(&mut self, head_request: bool) -> Response {
        tokio::time::timeout(PATIENCE, async {
            let end = loop {
                if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break at;
                }
                let have = self.buf.len();
                assert!(self.fill(have + 1).await, "closed before a response head");
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
            self.buf.drain(..end + 4);
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status");
            let mut r = Response {
                status,
                head,
                body: Vec::new(),
            };
            let len: usize = r
                .header("content-length")
                .map_or(0, |v| v.parse().expect("content-length"));
            if !head_request && status != 304 {
                assert!(self.fill(len).await, "closed within a body");
                r.body = self.buf.drain(..len).collect();
            }
            r
        })
        .await
        .expect("a response in time")
    }

    /// Whether the center closed the connection (nothing more comes).
    async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(PATIENCE, self.stream.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

fn get(path: &str, token: &str, extra: &[(&str, &str)]) -> String {
    let mut h =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n");
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

/// `fleetcare_artifact_bytes_total{kind=…}` as `/metrics` shows it.
async fn sent(http: &reqwest::Client, url: &str, admin: &str, how: &str) -> u64 {
    let text = http
        .get(format!("{url}/metrics"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let name = format!("fleetcare_artifact_bytes_total{{kind=\"{how}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

#[tokio::test]
async fn downloads_are_sent_from_the_file_on_plain_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("center"),
        header_read_timeout: Duration::from_secs(2),
        artifact_cache_bytes: 0,
        ..ServerConfig::default()
    };
    let center = Center::start(&config).await.expect("center");
    let addr = center.addr;
    let url = format!("http://{addr}");
    let admin = center.boot.admin_token.clone();
    let http = reqwest::Client::new();

    // A release with one artifact of 3 MiB and a few bytes, published and uploaded.
    let bytes = file_bytes((3 << 20) + 17);
    let sha = hex(&bytes);
    let in_30_days = format_time(SystemTime::now() + Duration::from_secs(30 * 86_400));
    let (root, release) = (KeyPair::from_seed(&[1; 32]), KeyPair::from_seed(&[2; 32]));
    let keys = KeyList {
        version: 1,
        expires: in_30_days.clone(),
        threshold: 1,
        keys: vec![release.public().clone()],
    };
    let manifest = ReleaseManifest {
        product: "ctl-firmware".into(),
        maker: "acme".into(),
        version: "2.0.0".into(),
        counter: 20,
        targets: vec![Target {
            unit_model: "ctl-x2".into(),
            hw_revisions: vec!["B".into()],
        }],
        artifacts: vec![Artifact {
            name: ArtifactName::new("ctl-2.0.0.bin").expect("name"),
            size: bytes.len() as u64,
            sha256: sha.clone(),
        }],
        expires: in_30_days,
    };
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/api/v1/keys".to_owned(),
            Envelope::sign(KEYS_TYPE, &keys.to_json(), &[&root])
                .to_json()
                .into_bytes(),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/releases".to_owned(),
            Envelope::sign(RELEASE_TYPE, &manifest.to_json(), &[&release])
                .to_json()
                .into_bytes(),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/v1/artifacts/{sha}"),
            bytes.clone(),
        ),
    ] {
        let r = http
            .request(method, format!("{url}{path}"))
            .bearer_auth(&admin)
            .body(body)
            .send()
            .await
            .expect("publish");
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let token = common::enroll_over_http(&center, "DL-1").await;
    let path = format!("/device/v1/artifacts/{sha}");
    let etag = format!("\"{sha}\"");

    // One keep-alive connection: whole, a range, 304, 416, a refusal, then a request that is
    // not a download (hyper's from then on), then a download again.
    let mut c = Client::connect(addr).await;
    c.send(&[get(&path, &token, &[])]).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.header("date").is_some(), "{}", r.head);
    assert!(r.body == bytes, "the whole artifact");
    let after_whole = sent(&http, &url, &admin, "sendfile").await;
    assert_eq!(after_whole, bytes.len() as u64, "sent from the file");

    c.send(&[get(&path, &token, &[("Range", "bytes=1000-2100999")])])
        .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 206, "{}", r.head);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 1000-2100999/{}", bytes.len()).as_str())
    );
    assert!(r.body == bytes[1000..2_101_000], "the range");

    c.send(&[get(&path, &token, &[("If-None-Match", &etag)])])
        .await;
    assert_eq!(c.response(false).await.status, 304);
    c.send(&[get(&path, &token, &[("Range", "bytes=99999999-")])])
        .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 416, "{}", r.head);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{}", bytes.len()).as_str())
    );
    // A resumed download whose tag is not the artifact's gets the whole file.
    c.send(&[get(
        &path,
        &token,
        &[("Range", "bytes=5-"), ("If-Range", "\"other\"")],
    )])
    .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body == bytes);
    c.send(&[get(&path, "not-a-token", &[])]).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 401, "{}", r.head);
    assert!(
        serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|v| v["error"].is_string()),
        "a JSON error: {}",
        String::from_utf8_lossy(&r.body)
    );
    c.send(&[get(
        &format!("/device/v1/artifacts/{}", "ab".repeat(32)),
        &token,
        &[],
    )])
    .await;
    assert_eq!(c.response(false).await.status, 404);
    // Not a download: hyper serves the rest of this connection.
    c.send(&[get("/device/v1/self", &token, &[])]).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head);
    let me: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(me["device_id"], "DL-1", "{me}");
    let before = sent(&http, &url, &admin, "read").await;
    c.send(&[get(&path, &token, &[("Range", "bytes=-100")])])
        .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 206, "{}", r.head);
    assert!(r.body == bytes[bytes.len() - 100..], "the last 100 bytes");
    assert_eq!(
        sent(&http, &url, &admin, "read").await - before,
        100,
        "copied by hyper on its connection"
    );

    // Pipelined: two downloads and a HEAD (hyper's) written at once, answered in order;
    // then `Connection: close` ends the connection after its response.
    let mut c = Client::connect(addr).await;
    c.send(&[
        get(&path, &token, &[("Range", "bytes=0-9")]),
        get(&path, &token, &[("Range", "bytes=10-19")]),
        format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"),
        get(
            &path,
            &token,
            &[("Range", "bytes=20-29"), ("Connection", "close")],
        ),
    ])
    .await;
    assert!(c.response(false).await.body == bytes[..10]);
    assert!(c.response(false).await.body == bytes[10..20]);
    let h = c.response(true).await;
    assert_eq!(h.status, 200, "{}", h.head);
    let h_len = h.header("content-length").map(str::to_owned);
    assert_eq!(h_len, Some(bytes.len().to_string()), "{}", h.head);
    let r = c.response(false).await;
    assert!(r.body == bytes[20..30]);
    assert!(c.closed().await, "closed after Connection: close");

    let mut c = Client::connect(addr).await;
    c.send(&[get(
        &path,
        &token,
        &[("Range", "bytes=30-39"), ("Connection", "close")],
    )])
    .await;
    let r = c.response(false).await;
    assert_eq!(r.header("connection"), Some("close"), "{}", r.head);
    assert!(r.body == bytes[30..40]);
    assert!(c.closed().await, "closed after Connection: close");

    // A client we did not write.
    let got = http
        .get(format!("{url}{path}"))
        .bearer_auth(&token)
        .header("Range", "bytes=4096-")
        .send()
        .await
        .expect("reqwest download");
    assert_eq!(got.status(), 206);
    let body = got.bytes().await.expect("body");
    assert!(
        body[..] == bytes[4096..],
        "reqwest got the bytes from 4096 on"
    );

    // A download's head that never ends is cut off once the header timeout passes.
    let mut slow = Client::connect(addr).await;
    let started = std::time::Instant::now();
    slow.stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .await
        .expect("write");
    assert!(slow.closed().await, "a trickled head is cut off");
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "cut off after {:?}, before the timeout",
        started.elapsed()
    );

    // A file shorter on disk than recorded: 500 with a reason, never a 200 that breaks.
    let on_disk = dir
        .path()
        .join("center/artifacts/sha256")
        .join(&sha[..2])
        .join(&sha);
    std::fs::write(&on_disk, &bytes[..1000]).expect("truncate");
    let mut c = Client::connect(addr).await;
    c.send(&[get(&path, &token, &[])]).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 500, "{}", r.head);
    assert!(
        String::from_utf8_lossy(&r.body).contains("unreadable"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    center.stop().await.expect("stop");
}
