//! Real receivers of notifications on 127.0.0.1: a webhook receiver that checks signatures
//! (HMAC-SHA256 over `"<t>.<body>"`) and can be told to fail, and a mailbox behind a real
//! SMTP server (`aiosmtpd`, Debian's `python3-aiosmtpd`) whose mails a test reads back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One webhook call as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub event_id: String,
    pub event_type: String,
    pub delivery: String,
    pub body: serde_json::Value,
    /// The signature matched the secret the receiver was given.
    pub signature_ok: bool,
    /// The receiver acknowledged it (answered 2xx).
    pub acked: bool,
    /// When it arrived.
    pub at: Instant,
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// 500 to everything.
    Fail,
    /// 302 to elsewhere.
    Redirect,
    /// Waits this long before answering 200.
    Slow(Duration),
    /// Answers 500 with a body of this many bytes.
    Huge(usize),
}

#[derive(Debug)]
struct Inner {
    secret: String,
    mode: Mode,
    /// Answer 500 to this many more calls.
    fail_next: u32,
    /// Answer 503 to every call until then.
    down_until: Option<Instant>,
    received: Vec<Received>,
}

/// A webhook receiver on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        if let Some(x) = part.strip_prefix("t=") {
            t = Some(x);
        } else if let Some(x) = part.strip_prefix("v1=") {
            v1 = Some(x);
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == v1
}

async fn hook(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (refused, mode) = {
        let mut i = inner.lock().expect("receiver");
        let refused = if i.down_until.is_some_and(|u| Instant::now() < u) {
            Some(StatusCode::SERVICE_UNAVAILABLE)
        } else if i.fail_next > 0 {
            i.fail_next -= 1;
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            None
        };
        let mode = i.mode;
        let r = Received {
            event_id: h("fleetcare-event-id"),
            event_type: h("fleetcare-event-type"),
            delivery: h("fleetcare-delivery"),
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            signature_ok: verify(&i.secret, &h("fleetcare-signature"), &body),
            acked: refused.is_none() && matches!(mode, Mode::Ok | Mode::Slow(_)),
            at: Instant::now(),
        };
        i.received.push(r);
        (refused, mode)
    };
    if let Some(s) = refused {
        return (s, "not now").into_response();
    }
    match mode {
        Mode::Fail => (StatusCode::INTERNAL_SERVER_ERROR, "failing").into_response(),
        Mode::Redirect => (
            StatusCode::FOUND,
            [(header::LOCATION, "http://127.0.0.1:9/elsewhere")],
        )
            .into_response(),
        Mode::Huge(n) => (StatusCode::INTERNAL_SERVER_ERROR, "x".repeat(n)).into_response(),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Mode::Ok => StatusCode::OK.into_response(),
    }
}

impl WebhookReceiver {
    /// Listen on 127.0.0.1 (a free port).
    pub async fn start() -> WebhookReceiver {
        let inner = Arc::new(Mutex::new(Inner {
            secret: String::new(),
            mode: Mode::Ok,
            fail_next: 0,
            down_until: None,
            received: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(inner.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a receiver");
        let url = format!("http://{}/hook", l.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        WebhookReceiver { url, inner }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("receiver"))
    }

    /// The secret signatures are checked with.
    pub fn set_secret(&self, s: &str) {
        self.with(|i| i.secret = s.to_owned());
    }
    pub fn set_mode(&self, m: Mode) {
        self.with(|i| i.mode = m);
    }
    /// Answer 500 to the next `n` calls.
    pub fn fail_next(&self, n: u32) {
        self.with(|i| i.fail_next = n);
    }
    /// Answer 503 to every call for `d`.
    pub fn down_for(&self, d: Duration) {
        self.with(|i| i.down_until = Some(Instant::now() + d));
    }
    /// Every call so far.
    pub fn received(&self) -> Vec<Received> {
        self.with(|i| i.received.clone())
    }
    /// Calls acknowledged so far, by event id.
    pub fn acked_by_event(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.received().into_iter().filter(|r| r.acked) {
            *out.entry(r.event_id).or_insert(0) += 1;
        }
        out
    }
}

/// A real SMTP server (`aiosmtpd`) on 127.0.0.1 writing what it receives into a maildir.
#[derive(Debug)]
pub struct Mailbox {
    pub port: u16,
    dir: PathBuf,
    child: std::process::Child,
}

impl Mailbox {
    /// Start one; `None` (said loudly) when `aiosmtpd` is not installed, a failure under CI.
    pub async fn start(dir: PathBuf) -> Option<Mailbox> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("addr").port()
        };
        let child = match std::process::Command::new("aiosmtpd")
            .args([
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "aiosmtpd is needed (Debian python3-aiosmtpd; scripts/test installs it): {e}"
                );
                eprintln!("SKIPPED: the mail part: aiosmtpd is not installed ({e})");
                return None;
            }
        };
        let mb = Mailbox { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(15) * crate::patience_factor();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(mb)
    }

    /// Every mail received (raw, headers and body), oldest first.
    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> =
            std::fs::read_dir(self.dir.join("new"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| {
                    (
                        e.metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH),
                        e.path(),
                    )
                })
                .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read_to_string(p).ok())
            .collect()
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
