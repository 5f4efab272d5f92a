//! The local API: the device's own software writes to the error log over a Unix socket
//! (`<data dir>/agent.sock` unless `local_socket` says otherwise), one JSON object per line,
//! one answer line each.
//!
//! ```text
//! → {"op":"log","code":"J-100","unit":"fuser","severity":"error","detail":"…","counters":{"pages_total":184220},"alert":{"group":"mediaPath","code":"jam"}}
//! ← {"ok":true,"boot_epoch":4,"seq":17}            (durable: it survives a crash from here on)
//! → {"op":"operating","values":{"pages_total":184221,"fuser_temp_c":182}}
//! ← {"ok":true}
//! → {"op":"status"}
//! ← {"ok":true,"pending":3,"dropped":0,…}
//! → {"op":"settings"}
//! ← {"ok":true,"settings":{"fuser.temp_offset_c":"-5"}}   (what the center set on the device)
//! → {"op":"report"}                 (a structure report now, trigger `manual`)
//! ← {"ok":true,"seq":42}            (the center acknowledged it)
//! → {"op":"send_errors"}            (the pending error log now, trigger `manual`)
//! ← {"ok":true,"sent":7}            (the center acknowledged every one)
//! ← {"ok":false,"error":"severity \"loud\": one of debug, info, warning, error, critical"}
//! ```
//!
//! Lines are at most 16 KiB; a connection idle for 30 s is closed; at most 16 connections
//! are served at once. `report` and `send_errors` answer once the center acknowledged (or
//! with why not), within [`SEND_NOW_TIMEOUT`]. The socket is created with mode 0660 (the device's software shares the
//! agent's group).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleetcare_wire::errors::PrinterAlert;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

use crate::journal::{Journal, NewEvent};

/// Longest request line.
pub const MAX_LINE: usize = 16 * 1024;
/// A connection that sends nothing for this long is closed.
pub const IDLE: Duration = Duration::from_secs(30);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest a `report` or `send_errors` waits for the center's acknowledgement.
pub const SEND_NOW_TIMEOUT: Duration = Duration::from_secs(60);

/// What a `report` asks the running agent: the report's number once acknowledged, or why not.
pub type ReportNow = tokio::sync::oneshot::Sender<Result<u64, String>>;

/// How the local API reaches the running agent for what the journal alone cannot do.
#[derive(Debug, Clone)]
pub struct Control {
    pub report: tokio::sync::mpsc::Sender<ReportNow>,
    pub errors: tokio::sync::mpsc::Sender<crate::errlog::SendNow>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Request {
    Log {
        code: String,
        #[serde(default)]
        unit: String,
        severity: String,
        #[serde(default)]
        detail: Option<String>,
        #[serde(default)]
        counters: std::collections::BTreeMap<String, f64>,
        #[serde(default)]
        alert: Option<Box<PrinterAlert>>,
    },
    /// Operating info (counters, gauges): durable, and sent with the next structure report.
    Operating {
        values: std::collections::BTreeMap<String, f64>,
    },
    Status,
    Settings,
    /// A structure report now (trigger `manual`), answered once acknowledged.
    Report,
    /// The pending error log now (trigger `manual`), answered once acknowledged.
    SendErrors,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One request line's answer (blocking: it may write the journal durably). Every request
/// a local program can send comes through here (the `local_api` fuzz target too).
pub fn handle(j: &Journal, line: &str) -> serde_json::Value {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return json!({"ok": false, "error": format!("not a request: {e}")}),
    };
    let out = match req {
        Request::Log {
            code,
            unit,
            severity,
            detail,
            counters,
            alert,
        } => j
            .append(
                &NewEvent {
                    slot: unit,
                    code,
                    severity,
                    counters,
                    detail,
                    alert: alert.map(|a| *a),
                },
                now_ms(),
            )
            .map(|(epoch, seq)| json!({"ok": true, "boot_epoch": epoch, "seq": seq})),
        Request::Operating { values } => j
            .set_operating(&values, now_ms())
            .map(|()| json!({"ok": true})),
        Request::Settings => j.settings().map(|s| json!({"ok": true, "settings": s})),
        Request::Status => j.stats().map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["ok"] = json!(true);
            v
        }),
        Request::Report | Request::SendErrors => {
            return json!({"ok": false, "error": "only the running agent sends now (its local API)"});
        }
    };
    out.unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}))
}

/// Ask the running agent to send now; its answer, within [`SEND_NOW_TIMEOUT`].
async fn send_now<T>(
    to: &tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<T, String>>>,
    ok: impl FnOnce(T) -> serde_json::Value,
) -> serde_json::Value {
    let (reply, answer) = tokio::sync::oneshot::channel();
    if to.send(reply).await.is_err() {
        return json!({"ok": false, "error": "the agent is stopping"});
    }
    match tokio::time::timeout(SEND_NOW_TIMEOUT, answer).await {
        Ok(Ok(Ok(v))) => ok(v),
        Ok(Ok(Err(why))) => json!({"ok": false, "error": why}),
        Ok(Err(_)) => json!({"ok": false, "error": "the agent is stopping"}),
        Err(_) => json!({"ok": false, "error": format!(
            "no acknowledgement from the center within {} s; it is sent when the center can take it",
            SEND_NOW_TIMEOUT.as_secs()
        )}),
    }
}

async fn answer(journal: &Arc<Journal>, control: &Control, line: &str) -> serde_json::Value {
    match serde_json::from_str::<Request>(line) {
        Ok(Request::Report) => {
            return send_now(&control.report, |seq| json!({"ok": true, "seq": seq})).await;
        }
        Ok(Request::SendErrors) => {
            return send_now(&control.errors, |n| json!({"ok": true, "sent": n})).await;
        }
        _ => {}
    }
    let (j, line) = (journal.clone(), line.to_owned());
    match tokio::task::spawn_blocking(move || handle(&j, &line)).await {
        Ok(v) => v,
        Err(e) => json!({"ok": false, "error": format!("the journal failed: {e}")}),
    }
}

async fn serve_one(journal: Arc<Journal>, control: Control, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let got = tokio::time::timeout(IDLE, async {
            (&mut reader)
                .take((MAX_LINE + 1) as u64)
                .read_until(b'\n', &mut buf)
                .await
        })
        .await;
        let n = match got {
            Err(_) | Ok(Err(_)) | Ok(Ok(0)) => return,
            Ok(Ok(n)) => n,
        };
        let reply = if n > MAX_LINE {
            let v = json!({"ok": false, "error": format!("a request line is at most {MAX_LINE} bytes")});
            let _ = write.write_all(format!("{v}\n").as_bytes()).await;
            return;
        } else {
            match std::str::from_utf8(&buf) {
                Ok(line) if line.trim().is_empty() => continue,
                Ok(line) => answer(&journal, &control, line.trim()).await,
                Err(_) => json!({"ok": false, "error": "not UTF-8"}),
            }
        };
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Bind the socket (replacing a stale one) with mode 0660.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serve until shutdown; the socket file is removed at the end.
pub async fn run(
    journal: Arc<Journal>,
    control: Control,
    listener: UnixListener,
    path: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Busy: say so and close.
                    let mut s = stream;
                    let _ = s
                        .write_all(b"{\"ok\":false,\"error\":\"busy: too many connections\"}\n")
                        .await;
                    continue;
                };
                let (j, c) = (journal.clone(), control.clone());
                tokio::spawn(async move {
                    serve_one(j, c, stream).await;
                    drop(permit);
                });
            }
            () = stopped(&mut shutdown) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}
