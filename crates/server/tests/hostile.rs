//! Hostile clients over real sockets: the hostile-input list of TARGETS.md, each input with
//! its status, the store unchanged (its content digest) and the center healthy after it,
//! denials audited with the client's real address; and a client that trickles its request
//! head (slowloris) cut off once the header timeout passes while the center serves others.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fleetcare_server::{Center, ServerConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATIENCE: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_slow_request_head_is_cut_off_and_the_center_serves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("center"),
        header_read_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let center = Center::start(&config).await.expect("center");
    let addr = center.addr;
    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // The head never ends: the center closes the connection (perhaps after a 408).
    let mut buf = vec![0u8; 1024];
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let took = started.elapsed();
    assert!(
        closed.is_ok(),
        "the slow connection was still open after 15 s"
    );
    assert!(
        took >= Duration::from_millis(900),
        "cut off after {took:?}, before the timeout"
    );
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "a slow head got: {text}"
    );
    // Others are served.
    let mut ok = tokio::net::TcpStream::connect(addr).await.expect("connect");
    ok.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), ok.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    center.stop().await.expect("stop");
}

/// One request as raw bytes over its own connection, and what came back. Writing and reading
/// run together: the center may answer (413) before it read a body, and close.
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// `body_chunks`: the body, written piece by piece (an endless body is many pieces).
async fn send(
    addr: SocketAddr,
    head: String,
    body_chunks: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for chunk in body_chunks {
            if wr.write_all(&chunk).await.is_err() {
                return; // the center answered and closed: what a bounded server does
            }
        }
        // Keep our half open until the answer is read (a closed half is a client gone).
        std::future::pending::<()>().await;
    });
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = find(&got, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_string();
                let len = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                });
                if len.is_some_and(|n| got.len() >= end + 4 + n) {
                    break;
                }
            }
        }
    })
    .await;
    writer.abort();
    assert!(read.is_ok(), "no answer within {PATIENCE:?}");
    let end = find(&got, b"\r\n\r\n").unwrap_or(got.len());
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = got.get(end + 4..).map_or(Value::Null, |b| {
        serde_json::from_slice(b).unwrap_or(Value::Null)
    });
    Answer { status, head, body }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A request head (HTTP/1.1, the connection closed after it).
fn head(method: &str, path: &str, token: Option<&str>, extra: &[(&str, String)]) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = token {
        h.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h
}

fn json_request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (String, Vec<Vec<u8>>) {
    let extra = [
        ("Content-Type", "application/json".to_owned()),
        ("Content-Length", body.len().to_string()),
    ];
    (head(method, path, token, &extra), vec![body])
}

fn report(device: &str, seq: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "device_id": device, "model": "acme-mfp-9000", "seq": seq, "trigger": "connect",
        "observed_at_ms": 1_790_000_000_000_i64,
        "units": [{"slot": "controller", "kind": "controller", "model": "ctl-x2",
                   "serial": format!("CTL-{device}"), "hw_revision": "B", "software": []}],
        "operating": {}
    }))
    .expect("json")
}

/// What a case expects besides its status.
#[derive(Clone, Copy, PartialEq)]
enum Audited {
    /// A device request, or one refused before authentication was tried: no audit line.
    No,
    /// The newest audit line is this request, denied, from 127.0.0.1 (whatever
    /// X-Forwarded-For said).
    Denied,
}

#[tokio::test]
async fn the_hostile_input_list_each_gets_its_status_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("center"),
        header_read_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(3),
        device_rate_per_s: 1,
        device_burst: 10,
        auth_failures_per_min: 10,
        ..ServerConfig::default()
    };
    let center = Center::start(&config).await.expect("center");
    let addr = center.addr;
    let store = center.state.store.clone();
    let admin = center.boot.admin_token.clone();
    let key = center.boot.enrollment_key.clone();

    // Two devices, each with a stored report; another tenant with its own admin and device.
    let mut creds = Vec::new();
    for id in ["DEV-1", "DEV-2"] {
        let (h, b) = json_request(
            "POST",
            "/device/v1/enroll",
            None,
            serde_json::to_vec(
                &json!({"enrollment_key": key, "device_id": id, "model": "acme-mfp-9000"}),
            )
            .expect("json"),
        );
        let a = send(addr, h, b.into_iter()).await;
        assert_eq!(a.status, 200, "{}", a.body);
        let token = a.body["device_token"].as_str().expect("token").to_owned();
        let (h, b) = json_request("POST", "/device/v1/reports", Some(&token), report(id, 1));
        assert_eq!(send(addr, h, b.into_iter()).await.status, 200);
        creds.push(token);
    }
    std::fs::create_dir(dir.path().join("other")).expect("mkdir");
    let other = fleetcare_server::bootstrap::run(&store, &dir.path().join("other"), "other", 0)
        .await
        .expect("other tenant");
    let (h, b) = json_request("POST", "/device/v1/enroll", None,
        serde_json::to_vec(&json!({"enrollment_key": other.enrollment_key, "device_id": "OTHER-1", "model": "acme-mfp-9000"})).expect("json"));
    assert_eq!(send(addr, h, b.into_iter()).await.status, 200);
    let (dev1, dev2) = (creds[0].clone(), creds[1].clone());

    let bomb = {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            gz.write_all(&vec![b' '; 1 << 20]).expect("gzip");
        }
        gz.finish().expect("gzip")
    };
    assert!(
        bomb.len() < 256 * 1024,
        "the bomb fits under the body limit compressed"
    );
    let injected_filter = serde_json::to_vec(&json!({
        "name": "x", "filter": "model = \"a\" OR 1=1; DROP TABLE devices; --",
        "waves": "100%", "gates": {}
    }))
    .expect("json");

    type Case = (&'static str, String, Vec<Vec<u8>>, u16, Audited);
    let oversized = vec![b'{'; 300 * 1024];
    let cases: Vec<Case> = vec![
        {
            let (h, b) = json_request("POST", "/device/v1/reports", Some(&dev1), oversized);
            ("oversized body (declared)", h, b, 413, Audited::No)
        },
        (
            "endless chunked body",
            head(
                "POST",
                "/device/v1/reports",
                Some(&dev1),
                &[
                    ("Content-Type", "application/json".into()),
                    ("Transfer-Encoding", "chunked".into()),
                ],
            ),
            // 64 MiB at most, in 64 KiB chunks; the center stops reading long before.
            (0..1024)
                .map(|_| {
                    let mut c = format!("{:x}\r\n", 64 * 1024).into_bytes();
                    c.extend(std::iter::repeat_n(b' ', 64 * 1024));
                    c.extend_from_slice(b"\r\n");
                    c
                })
                .collect(),
            413,
            Audited::No,
        ),
        (
            "compression bomb (64 MiB of gzip in 64 KiB)",
            head(
                "POST",
                "/device/v1/reports",
                Some(&dev1),
                &[
                    ("Content-Type", "application/json".into()),
                    ("Content-Encoding", "gzip".into()),
                    ("Content-Length", bomb.len().to_string()),
                ],
            ),
            vec![bomb.clone()],
            413,
            Audited::No,
        ),
        {
            let (h, b) = json_request(
                "POST",
                "/device/v1/reports",
                Some(&dev1),
                b"{\"device_id\": \"DEV-1\", ".to_vec(),
            );
            ("malformed JSON", h, b, 400, Audited::No)
        },
        {
            let (h, b) = json_request(
                "POST",
                "/device/v1/reports",
                Some(&dev1),
                br#"{"device_id": 7}"#.to_vec(),
            );
            ("JSON of the wrong shape", h, b, 400, Audited::No)
        },
        {
            let (h, b) = json_request(
                "POST",
                "/device/v1/reports",
                Some(&dev1),
                report("DEV-2", 2),
            );
            (
                "forged device id (DEV-1's credential, DEV-2's report)",
                h,
                b,
                403,
                Audited::No,
            )
        },
        {
            let (h, b) = json_request(
                "POST",
                "/device/v1/reports",
                Some(&dev1),
                report("DEV-1", 1),
            );
            (
                "replayed report (acknowledged again as a duplicate)",
                h,
                b,
                200,
                Audited::No,
            )
        },
        {
            let (h, b) = json_request(
                "POST",
                "/device/v1/reports",
                Some("fcd_forged"),
                report("DEV-1", 2),
            );
            ("forged device credential", h, b, 401, Audited::No)
        },
        (
            "another tenant's device (by the other tenant's admin)",
            head(
                "POST",
                "/api/v1/devices/DEV-1/request-report",
                Some(&other.admin_token),
                &[("Content-Length", "0".into())],
            ),
            vec![],
            404,
            Audited::No,
        ),
        (
            "another tenant's device (to this tenant's admin)",
            head("GET", "/api/v1/devices/OTHER-1", Some(&admin), &[]),
            vec![],
            404,
            Audited::No,
        ),
        (
            "injection in a filter (trouble state)",
            head(
                "GET",
                "/api/v1/troubles?state=open%27%20OR%20%271%27%3D%271",
                Some(&admin),
                &[],
            ),
            vec![],
            400,
            Audited::No,
        ),
        {
            let (h, b) = json_request("POST", "/api/v1/rollouts", Some(&admin), injected_filter);
            ("injection in a rollout filter", h, b, 400, Audited::No)
        },
        (
            "injection in a sort key",
            head(
                "GET",
                "/api/v1/devices?sort=id%3BDROP%20TABLE%20devices",
                Some(&admin),
                &[],
            ),
            vec![],
            400,
            Audited::No,
        ),
        (
            "injection in a path id",
            head(
                "GET",
                "/api/v1/devices/DEV-1%27%3BDROP%20TABLE%20devices%3B--",
                Some(&admin),
                &[],
            ),
            vec![],
            400,
            Audited::No,
        ),
        (
            "forged proxy header with a bad token",
            head(
                "POST",
                "/api/v1/devices/DEV-1/revoke",
                Some("fco_forged"),
                &[
                    ("X-Forwarded-For", "203.0.113.9".into()),
                    ("Content-Length", "0".into()),
                ],
            ),
            vec![],
            401,
            Audited::Denied,
        ),
        (
            "forged proxy header without a token",
            head(
                "POST",
                "/api/v1/devices/DEV-1/revoke",
                None,
                &[
                    ("X-Forwarded-For", "203.0.113.9".into()),
                    ("Content-Length", "0".into()),
                ],
            ),
            vec![],
            401,
            Audited::Denied,
        ),
        (
            "header larger than the center reads",
            head(
                "GET",
                "/healthz",
                None,
                &[("X-Padding", "a".repeat(512 * 1024))],
            ),
            vec![],
            431,
            Audited::No,
        ),
    ];

    let healthy = || async {
        let a = send(addr, head("GET", "/healthz", None, &[]), std::iter::empty()).await;
        assert_eq!(a.status, 200, "the center is unhealthy: {}", a.body);
    };
    let mut table = Vec::new();
    for (name, h, body, want, audited) in cases {
        let before = store.content_digest().await.expect("digest");
        let a = send(addr, h, body.into_iter()).await;
        assert_eq!(a.status, want, "{name}: answered {} {}", a.status, a.body);
        assert_eq!(
            store.content_digest().await.expect("digest"),
            before,
            "{name}: changed the store"
        );
        if audited == Audited::Denied {
            let newest = &store
                .newest_audit_line()
                .await
                .expect("audit")
                .expect("a line");
            assert_eq!(newest.outcome, "denied", "{name}");
            assert_eq!(
                newest.source.as_deref(),
                Some("127.0.0.1"),
                "{name}: the forged header was believed"
            );
        }
        healthy().await;
        table.push(format!("{name}: {}", a.status));
    }

    // A device over its request budget: 429 with Retry-After, and the store unchanged.
    let before = store.content_digest().await.expect("digest");
    let mut throttled = None;
    for _ in 0..30 {
        let a = send(
            addr,
            head("GET", "/device/v1/self", Some(&dev2), &[]),
            std::iter::empty(),
        )
        .await;
        if a.status == 429 {
            throttled = Some(a);
            break;
        }
        assert_eq!(a.status, 200);
    }
    let a = throttled.expect("DEV-2 throttled within 30 requests");
    assert!(
        a.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "{}",
        a.head
    );
    assert_eq!(store.content_digest().await.expect("digest"), before);
    table.push("device flood: 429".into());

    // Failed authentications from one address: past its budget each further failure is 429,
    // not audited; a right token still passes; a password may not even be tried.
    let account = serde_json::to_vec(
        &json!({"name": "olga", "role": "viewer", "password": "a long enough passphrase"}),
    )
    .expect("json");
    let (h, b) = json_request("POST", "/api/v1/accounts", Some(&admin), account);
    assert_eq!(send(addr, h, b.into_iter()).await.status, 200);
    let mut throttled = false;
    for _ in 0..30 {
        let a = send(
            addr,
            head("GET", "/api/v1/devices", Some("fco_guess"), &[]),
            std::iter::empty(),
        )
        .await;
        if a.status == 429 {
            assert!(a.header("retry-after").is_some(), "{}", a.head);
            throttled = true;
            break;
        }
        assert_eq!(a.status, 401);
    }
    assert!(throttled, "guessing tokens is throttled within 30 tries");
    let lines = store
        .newest_audit_line()
        .await
        .expect("audit")
        .expect("line")
        .id;
    let a = send(
        addr,
        head("GET", "/api/v1/devices", Some("fco_guess"), &[]),
        std::iter::empty(),
    )
    .await;
    assert_eq!(a.status, 429);
    assert_eq!(
        store
            .newest_audit_line()
            .await
            .expect("audit")
            .expect("line")
            .id,
        lines,
        "throttled guesses are not audited"
    );
    let a = send(
        addr,
        head("GET", "/api/v1/devices", Some(&admin), &[]),
        std::iter::empty(),
    )
    .await;
    assert_eq!(
        a.status, 200,
        "a right token passes: neighbours behind one address keep working"
    );
    let login =
        serde_json::to_vec(&json!({"name": "olga", "password": "a long enough passphrase"}))
            .expect("json");
    let (h, b) = json_request("POST", "/api/v1/login", None, login);
    let a = send(addr, h, b.into_iter()).await;
    assert_eq!(
        a.status, 429,
        "a throttled address may not try a password: {}",
        a.body
    );
    assert!(a.header("retry-after").is_some());
    healthy().await;
    table.push("token guessing: 429".into());
    println!("{}", table.join("\n"));
    center.stop().await.expect("stop");
}

/// Behind a trusted proxy that terminated TLS, a login's cookie is `Secure`; the same header
/// from an untrusted peer is ignored.
#[tokio::test]
async fn the_session_cookie_is_secure_behind_a_trusted_tls_proxy() {
    for (trusted, secure) in [(vec!["127.0.0.1".to_owned()], true), (vec![], false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("center"),
            trusted_proxies: trusted,
            ..ServerConfig::default()
        };
        let center = Center::start(&config).await.expect("center");
        let account = serde_json::to_vec(
            &json!({"name": "olga", "role": "viewer", "password": "a long enough passphrase"}),
        )
        .expect("json");
        let (h, b) = json_request(
            "POST",
            "/api/v1/accounts",
            Some(&center.boot.admin_token),
            account,
        );
        assert_eq!(send(center.addr, h, b.into_iter()).await.status, 200);
        let login =
            serde_json::to_vec(&json!({"name": "olga", "password": "a long enough passphrase"}))
                .expect("json");
        let extra = [
            ("Content-Type", "application/json".to_owned()),
            ("Content-Length", login.len().to_string()),
            ("X-Forwarded-Proto", "https".to_owned()),
            ("X-Forwarded-For", "203.0.113.9".to_owned()),
        ];
        let a = send(
            center.addr,
            head("POST", "/api/v1/login", None, &extra),
            vec![login].into_iter(),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        let cookie = a.header("set-cookie").unwrap_or("").to_owned();
        assert_eq!(cookie.contains("; Secure"), secure, "{cookie}");
        center.stop().await.expect("stop");
    }
}

/// One center per data dir: a second one on another port is refused, naming the first by
/// its process id; once the first stops, the dir is free. A taken port is said once.
#[tokio::test]
async fn a_second_center_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("center"),
        ..ServerConfig::default()
    };
    let first = Center::start(&config).await.expect("center");
    let err = Center::start(&config).await.expect_err("a second center");
    let said = err.to_string();
    assert!(
        said.contains(&format!("another center (pid {})", std::process::id())),
        "{said}"
    );
    assert!(
        said.contains(&config.data_dir.display().to_string()),
        "{said}"
    );

    // Another dir, but the first one's port: the cause once, not twice.
    let other = tempfile::tempdir().expect("tempdir");
    let err = Center::start(&ServerConfig {
        listen: first.addr,
        data_dir: other.path().join("center"),
        ..ServerConfig::default()
    })
    .await
    .expect_err("a taken port");
    let chain = anyhow_like(&err);
    assert_eq!(chain.matches("in use").count(), 1, "{chain}");

    first.stop().await.expect("stop");
    let again = Center::start(&config).await.expect("the dir is free again");
    again.stop().await.expect("stop");
}

/// The error and its causes, as `fleetcare serve` prints them.
fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
