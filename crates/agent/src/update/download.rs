//! Verified, resumable downloads of artifacts.
//!
//! The file is written to `<dir>/<sha256>.part` while the bytes are hashed; an interrupted
//! download resumes with `Range` (and `If-Range`, so a changed file starts over). More bytes
//! than the release signed stop the download at once (endless data); a server that sends
//! too slowly is left (slow retrieval); the finished file is renamed to `<dir>/<sha256>` only
//! when its size and SHA-256 are exactly the signed ones. The name on disk is the hash: no
//! name from the center or a manifest is ever used as a path.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, IF_RANGE, RANGE};
use sha2::{Digest, Sha256};

use super::InstallError;
use super::crash::point;
use crate::client::error_chain;

/// How patient a download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Averaged over `window`, slower than this is slow retrieval.
    pub min_rate: u64,
    pub window: Duration,
    /// Tries, each resuming where the last stopped.
    pub attempts: u32,
    /// Time to connect and get the answer's headers.
    pub connect: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            min_rate: 4 * 1024,
            window: Duration::from_secs(30),
            attempts: 5,
            connect: Duration::from_secs(15),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> InstallError {
    if e.raw_os_error() == Some(28) {
        return InstallError::new("no_space", format!("{what} {}: {e}", path.display()));
    }
    InstallError::new("download", format!("{what} {}: {e}", path.display()))
}

/// Hash what a file holds so far.
fn hash_prefix(path: &Path) -> std::io::Result<(Sha256, u64)> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            return Ok((h, n));
        }
        n += got as u64;
        h.update(&buf[..got]);
    }
}

enum Attempt {
    Done,
    /// Worth another try (the connection broke or ended early).
    Retry(String),
}

/// What to download, and what it must be.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub url: &'a str,
    /// The device credential.
    pub token: &'a str,
    pub sha256: &'a str,
    pub size: u64,
}

/// Download `t.url` into `dir`, verified against `t.size` and `t.sha256`; the path of the
/// verified file. `progress` hears the bytes held so far.
pub async fn fetch(
    http: &reqwest::Client,
    t: &Target<'_>,
    dir: &Path,
    limits: &Limits,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<PathBuf, InstallError> {
    let Target {
        url,
        token,
        sha256,
        size,
    } = *t;
    debug_assert!(fleetcare_trust::is_sha256_hex(sha256));
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, &e))?;
    let dest = dir.join(sha256);
    let part = dir.join(format!("{sha256}.part"));
    if let Ok((h, n)) = hash_prefix(&dest) {
        if n == size && hex(&h.finalize()) == sha256 {
            progress(size);
            return Ok(dest);
        }
        let _ = std::fs::remove_file(&dest);
    }
    let held = std::fs::metadata(&part).map_or(0, |m| m.len());
    let free = fleetcare_fs::free_space(dir).map_err(|e| io("checking free space in", dir, &e))?;
    if size.saturating_sub(held) > free {
        return Err(InstallError::new(
            "no_space",
            format!(
                "{} bytes are needed in {}, {free} are free",
                size - held,
                dir.display()
            ),
        ));
    }
    let mut last = String::new();
    for _ in 0..limits.attempts.max(1) {
        match attempt(http, url, token, sha256, size, &part, limits, progress).await? {
            Attempt::Done => {
                let f = std::fs::File::open(&part).map_err(|e| io("opening", &part, &e))?;
                f.sync_all().map_err(|e| io("syncing", &part, &e))?;
                std::fs::rename(&part, &dest).map_err(|e| io("renaming", &part, &e))?;
                fleetcare_fs::sync_dir(dir).map_err(|e| io("syncing", dir, &e))?;
                return Ok(dest);
            }
            Attempt::Retry(why) => {
                tracing::info!(%url, %why, "download interrupted; resuming");
                last = why;
            }
        }
    }
    Err(InstallError::new(
        "download",
        format!("{url}: gave up after {} tries: {last}", limits.attempts),
    ))
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    sha256: &str,
    size: u64,
    part: &Path,
    limits: &Limits,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Attempt, InstallError> {
    let (mut hasher, mut held) = match hash_prefix(part) {
        Ok(x) => x,
        Err(_) => (Sha256::new(), 0),
    };
    if held > size {
        let _ = std::fs::remove_file(part);
        (hasher, held) = (Sha256::new(), 0);
    }
    let mut req = http.get(url).bearer_auth(token);
    if held > 0 {
        req = req
            .header(RANGE, format!("bytes={held}-"))
            .header(IF_RANGE, format!("\"{sha256}\""));
    }
    let resp = match tokio::time::timeout(limits.connect, req.send()).await {
        Err(_) => return Ok(Attempt::Retry("no answer".into())),
        Ok(Err(e)) => return Ok(Attempt::Retry(error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    let mut file = match status {
        StatusCode::PARTIAL_CONTENT => {
            let expected = format!("bytes {held}-");
            let ok = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&expected));
            if !ok {
                let _ = std::fs::remove_file(part);
                return Ok(Attempt::Retry(
                    "the server resumed at another offset".into(),
                ));
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(part)
                .map_err(|e| io("opening", part, &e))?;
            f.seek(SeekFrom::Start(held))
                .map_err(|e| io("seeking", part, &e))?;
            f
        }
        StatusCode::OK => {
            (hasher, held) = (Sha256::new(), 0);
            std::fs::File::create(part).map_err(|e| io("creating", part, &e))?
        }
        StatusCode::RANGE_NOT_SATISFIABLE if held == size => {
            return finish(hasher, held, size, sha256, part);
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let _ = std::fs::remove_file(part);
            return Ok(Attempt::Retry("the server has a shorter file".into()));
        }
        s if s.is_server_error()
            || s == StatusCode::REQUEST_TIMEOUT
            || s == StatusCode::TOO_MANY_REQUESTS =>
        {
            return Ok(Attempt::Retry(format!("the center answered {s}")));
        }
        s => {
            return Err(InstallError::new(
                "download",
                format!("{url}: the center answered {s}"),
            ));
        }
    };
    if resp.content_length().is_some_and(|n| held + n > size) {
        let _ = std::fs::remove_file(part);
        return Err(InstallError::new(
            "integrity",
            format!(
                "the center offers {} bytes, the release signed {size}",
                held + resp.content_length().unwrap_or(0)
            ),
        ));
    }
    let mut resp = resp;
    let mut window_start = Instant::now();
    let mut window_bytes = 0u64;
    loop {
        let left = limits.window.saturating_sub(window_start.elapsed());
        let chunk =
            match tokio::time::timeout(left.max(Duration::from_millis(1)), resp.chunk()).await {
                Err(_) => None,
                Ok(Err(e)) => {
                    file.sync_data().map_err(|e| io("syncing", part, &e))?;
                    return Ok(Attempt::Retry(error_chain(&e)));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => Some(c),
            };
        if let Some(c) = &chunk {
            held += c.len() as u64;
            if held > size {
                drop(file);
                let _ = std::fs::remove_file(part);
                return Err(InstallError::new(
                    "integrity",
                    format!("the center sent more than the {size} bytes the release signed"),
                ));
            }
            hasher.update(c);
            file.write_all(c).map_err(|e| io("writing", part, &e))?;
            window_bytes += c.len() as u64;
            progress(held);
            point("download.chunk");
        }
        if window_start.elapsed() >= limits.window {
            let rate = window_bytes as f64 / window_start.elapsed().as_secs_f64();
            if (rate as u64) < limits.min_rate {
                file.sync_data().map_err(|e| io("syncing", part, &e))?;
                return Err(InstallError::new(
                    "timeout",
                    format!(
                        "slow retrieval: {rate:.0} bytes/s over {:?}, at least {} needed",
                        limits.window, limits.min_rate
                    ),
                ));
            }
            window_start = Instant::now();
            window_bytes = 0;
        }
    }
    drop(file);
    if held < size {
        return Ok(Attempt::Retry(format!(
            "the answer ended after {held} of {size} bytes"
        )));
    }
    finish(hasher, held, size, sha256, part)
}

fn finish(
    hasher: Sha256,
    held: u64,
    size: u64,
    sha256: &str,
    part: &Path,
) -> Result<Attempt, InstallError> {
    let got = hex(&hasher.finalize());
    if held != size || got != sha256 {
        let _ = std::fs::remove_file(part);
        return Err(InstallError::new(
            "integrity",
            format!(
                "downloaded {held} bytes with SHA-256 {got}; the release signed {size} bytes with {sha256}"
            ),
        ));
    }
    Ok(Attempt::Done)
}
