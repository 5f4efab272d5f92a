//! Content-addressed artifacts on disk: upload into place, a small cache of hot files, and
//! downloads with HTTP Range.

use crate::error::ApiError;
use crate::metrics::KindLabel;
use crate::sendfile::SendFile;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetcare_trust::is_sha256_hex;
use futures_util::StreamExt as _;
use prometheus_client::metrics::{counter::Counter, family::Family};
use sha2::{Digest, Sha256};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// An upload that sends nothing for this long is abandoned.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(30);

/// Bytes held per chunk of the window shared by downloads of an artifact too large to keep
/// whole (read from the file at once).
pub(crate) const CHUNK: u64 = 1 << 20;
/// Bytes read per step of a download that has no window (a budget under four chunks): what
/// each such download holds in memory.
pub(crate) const DIRECT_CHUNK: u64 = 256 << 10;

/// Where the center keeps artifact bytes: `<root>/sha256/<2 hex>/<64 hex>`, and `<root>/tmp`
/// for uploads in progress. Artifacts being downloaded are kept in memory (up to a budget,
/// least recently used out first): loaded once, checked against their hash, and served to
/// every device from the same buffer. One larger than half the budget is kept by chunks
/// instead: the devices of a wave download it at about the same time, and each chunk read
/// from the file serves all of them while it stays in the budget (userspace's share of what
/// `sendfile` from the page cache saves: the read's copy).
#[derive(Debug)]
pub struct Artifacts {
    root: PathBuf,
    budget: u64,
    hot: std::sync::Mutex<Hot>,
    /// Bytes sent, by how (`fleetcare_artifact_bytes`).
    sent: Family<KindLabel, Counter>,
    /// Artifacts open for `sendfile`, by hash, and when each was last used: the downloads of
    /// a wave share one descriptor (each sends from its own offset), kept open while they go
    /// on, so a center at its descriptor limit with 10,000 connections still serves them.
    open: std::sync::Mutex<OpenFiles>,
}

/// Descriptors kept for `sendfile`: at most [`OPEN_FILES`], each closed once unused for
/// [`OPEN_IDLE`] (nginx's `open_file_cache` does the same).
#[derive(Debug, Default)]
struct OpenFiles {
    files: std::collections::HashMap<String, (Arc<std::fs::File>, std::time::Instant)>,
}

const OPEN_FILES: usize = 256;
const OPEN_IDLE: Duration = Duration::from_secs(30);

impl OpenFiles {
    /// The artifact's descriptor if it is open, marked as used now.
    fn get(&mut self, sha256: &str) -> Option<Arc<std::fs::File>> {
        let now = std::time::Instant::now();
        self.files
            .retain(|_, (_, used)| now.duration_since(*used) < OPEN_IDLE);
        let (file, used) = self.files.get_mut(sha256)?;
        *used = now;
        Some(file.clone())
    }

    fn put(&mut self, sha256: &str, file: Arc<std::fs::File>) {
        if self.files.len() >= OPEN_FILES
            && let Some(oldest) = self
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            self.files.remove(&oldest);
        }
        self.files
            .insert(sha256.to_owned(), (file, std::time::Instant::now()));
    }
}

#[derive(Debug, Default)]
struct Hot {
    /// By hash (a whole artifact) or `hash/index` (a chunk of one): the bytes once loaded (one
    /// loader; the others wait for it), when last used, and their size.
    entries: std::collections::HashMap<String, (Arc<tokio::sync::OnceCell<Bytes>>, u64, u64)>,
    used: u64,
    tick: u64,
}

impl Artifacts {
    pub fn new(root: PathBuf, budget: u64) -> Artifacts {
        Artifacts {
            root,
            budget,
            hot: std::sync::Mutex::new(Hot::default()),
            sent: Family::default(),
            open: std::sync::Mutex::default(),
        }
    }

    /// Count the bytes sent in `sent` (the center's metric).
    pub fn counting(mut self, sent: Family<KindLabel, Counter>) -> Artifacts {
        self.sent = sent;
        self
    }

    fn count(&self, how: &'static str, bytes: u64) {
        self.sent
            .get_or_create(&KindLabel { kind: how })
            .inc_by(bytes);
    }

    /// The cache's cell for `key` (`size` bytes), made room for if new; least recently used
    /// out first.
    fn cell(&self, key: &str, size: u64) -> Arc<tokio::sync::OnceCell<Bytes>> {
        let mut h = self
            .hot
            .lock()
            .expect("the artifact cache lock is never poisoned");
        h.tick += 1;
        let tick = h.tick;
        if !h.entries.contains_key(key) {
            while h.used + size > self.budget {
                let Some(old) = h
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, t, _))| *t)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some((_, _, n)) = h.entries.remove(&old) {
                    h.used = h.used.saturating_sub(n);
                }
            }
            h.used += size;
        }
        let e = h
            .entries
            .entry(key.to_owned())
            .or_insert_with(|| (Arc::new(tokio::sync::OnceCell::new()), tick, size));
        e.1 = tick;
        e.0.clone()
    }

    /// Drop `key` from the cache (its load failed).
    fn forget(&self, key: &str) {
        let mut h = self
            .hot
            .lock()
            .expect("the artifact cache lock is never poisoned");
        if let Some((_, _, n)) = h.entries.remove(key) {
            h.used = h.used.saturating_sub(n);
        }
    }

    /// The artifact's bytes from memory, loading and checking them if needed; `None` if it
    /// is too large for the budget (serve it by chunks).
    pub async fn hot(&self, sha256: &str, size: u64) -> Result<Option<Bytes>, ApiError> {
        if size > self.budget / 2 {
            return Ok(None);
        }
        let cell = self.cell(sha256, size);
        let path = self.path(sha256);
        let expected = sha256.to_owned();
        let bytes = cell
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    let data = std::fs::read(&path).map_err(|e| {
                        ApiError::Internal(format!(
                            "artifact {expected} is recorded but unreadable: {e}"
                        ))
                    })?;
                    let got: String = Sha256::digest(&data)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    if got != expected {
                        return Err(ApiError::Internal(format!(
                            "artifact {expected} is damaged on disk (its SHA-256 is now {got})"
                        )));
                    }
                    Ok(Bytes::from(data))
                })
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
            })
            .await;
        match bytes {
            Ok(b) => Ok(Some(b.clone())),
            Err(e) => {
                self.forget(sha256);
                Err(e)
            }
        }
    }

    /// The size of the chunks downloads read: [`CHUNK`] when they share a window,
    /// [`DIRECT_CHUNK`] when the budget has no room for one.
    fn step(&self) -> u64 {
        if self.budget < 4 * CHUNK {
            DIRECT_CHUNK
        } else {
            CHUNK
        }
    }

    /// Chunk `index` (of [`Self::step`] bytes) of an artifact of `size` bytes: from the
    /// shared window when the budget has room for it, else read for this download alone.
    async fn chunk(&self, sha256: &str, size: u64, index: u64) -> std::io::Result<Bytes> {
        let step = self.step();
        let start = index * step;
        let n = step.min(size.saturating_sub(start));
        let path = self.path(sha256);
        if step != CHUNK {
            return read_chunk(path, start, n).await;
        }
        let key = format!("{sha256}/{index}");
        let cell = self.cell(&key, n);
        match cell.get_or_try_init(|| read_chunk(path, start, n)).await {
            Ok(b) => Ok(b.clone()),
            Err(e) => {
                self.forget(&key);
                Err(e)
            }
        }
    }

    /// The path of an artifact; `sha256` must already be validated hex.
    pub fn path(&self, sha256: &str) -> PathBuf {
        debug_assert!(is_sha256_hex(sha256));
        self.root.join("sha256").join(&sha256[..2]).join(sha256)
    }

    /// Stream `body` into the store; refused (and nothing kept) unless it is exactly `size`
    /// bytes hashing to `sha256`. `Ok(false)`: the artifact was already held.
    pub async fn put(&self, sha256: &str, size: u64, body: Body) -> Result<Put, ApiError> {
        let dest = self.path(sha256);
        if tokio::fs::metadata(&dest)
            .await
            .is_ok_and(|m| m.len() == size)
        {
            return Ok(Put::Held);
        }
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(|e| ApiError::Internal(format!("artifact directory: {e}")))?;
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| ApiError::Internal(e.to_string()))?;
        let tmp = tmp_dir.join(format!(
            "{sha256}.{}.part",
            nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        let result = self.receive(&tmp, &dest, sha256, size, body).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map(|(sha1, md5)| Put::Created { sha1, md5 })
    }

    async fn receive(
        &self,
        tmp: &FsPath,
        dest: &FsPath,
        sha256: &str,
        size: u64,
        body: Body,
    ) -> Result<(String, String), ApiError> {
        let io = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::StorageFull {
                ApiError::DiskFull
            } else {
                ApiError::Internal(format!("writing the artifact: {e}"))
            }
        };
        let mut file = tokio::fs::File::create(tmp).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut others = (sha1::Sha1::new(), md5::Md5::new());
        let mut got: u64 = 0;
        let mut stream = body.into_data_stream();
        loop {
            let next = tokio::time::timeout(UPLOAD_IDLE, stream.next())
                .await
                .map_err(|_| ApiError::Timeout(UPLOAD_IDLE))?;
            let Some(chunk) = next else { break };
            let chunk = chunk
                .map_err(|e| ApiError::BadRequest(format!("the upload was interrupted: {e}")))?;
            got += chunk.len() as u64;
            if got > size {
                return Err(ApiError::BadRequest(format!(
                    "integrity: the upload is longer than the {size} bytes the release signed"
                )));
            }
            hasher.update(&chunk);
            others.0.update(&chunk);
            others.1.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        if got != size {
            return Err(ApiError::BadRequest(format!(
                "integrity: the upload is {got} bytes, the release signed {size}"
            )));
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if digest != sha256 {
            return Err(ApiError::BadRequest(format!(
                "integrity: the upload's SHA-256 is {digest}, the release signed {sha256}"
            )));
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        let parent = dest.parent().expect("an artifact path has a parent");
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
        tokio::fs::rename(tmp, dest).await.map_err(io)?;
        let parent = parent.to_owned();
        tokio::task::spawn_blocking(move || fleetcare_fs::sync_dir(&parent))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(io)?;
        Ok((hex(&others.0.finalize()), hex(&others.1.finalize())))
    }
}

/// What [`Artifacts::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// The artifact was held already.
    Held,
    /// Stored now, with its SHA-1 and MD5 (hex) for DDI clients.
    Created { sha1: String, md5: String },
}

fn hex(bytes: &[u8]) -> String {
    fleetcare_core::secret::hex(bytes)
}

/// The SHA-1 and MD5 (hex) of a file, read once (for artifacts stored before they were kept).
pub(crate) fn other_digests(path: &FsPath) -> std::io::Result<(String, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let (mut a, mut b) = (sha1::Sha1::new(), md5::Md5::new());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        a.update(&buf[..n]);
        b.update(&buf[..n]);
    }
    Ok((hex(&a.finalize()), hex(&b.finalize())))
}

pub(crate) fn valid_sha(sha256: &str) -> Result<(), ApiError> {
    if is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{:?} is not a SHA-256 (64 lower-case hex digits)",
            sha256.chars().take(80).collect::<String>()
        )))
    }
}

/// One byte range of a `Range` header; `None`: serve the whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeReq {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parse a `Range` header for a file of `size` bytes. Only single ranges are served as
/// partial content; anything else is answered with the whole file.
pub(crate) fn parse_range(value: &str, size: u64) -> RangeReq {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeReq::Whole;
    };
    if spec.contains(',') {
        return RangeReq::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last N bytes.
        match b.parse::<u64>() {
            Ok(0) | Err(_) => return RangeReq::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size.saturating_sub(1)),
        }
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return RangeReq::Whole;
        };
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.min(size.saturating_sub(1)),
                _ => return RangeReq::Whole,
            }
        };
        (start, end)
    };
    if size == 0 || range.0 >= size {
        RangeReq::Unsatisfiable
    } else {
        RangeReq::Part(range.0, range.1)
    }
}

/// Serve an artifact of `size` bytes (its content never changes under its hash: the tag),
/// from memory whole or by chunks, honouring `Range`, `If-Range` and `If-None-Match`. On a
/// connection that can send a file (`zero_copy`, see [`crate::sendfile`]) it is answered
/// with a [`SendFile`] instead of a body.
pub(crate) async fn serve_file(
    artifacts: &Arc<Artifacts>,
    sha256: &str,
    size: u64,
    headers: &HeaderMap,
    zero_copy: bool,
) -> Result<Response, ApiError> {
    let etag = format!("\"{sha256}\"");
    let header_is = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .map(str::to_owned)
    };
    if header_is(header::IF_NONE_MATCH).is_some_and(|v| v == etag || v == "*") {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let mut range = match header_is(header::RANGE) {
        Some(r) => parse_range(&r, size),
        None => RangeReq::Whole,
    };
    // A resumed download whose tag no longer matches must start over.
    if header_is(header::IF_RANGE).is_some_and(|v| v != etag) {
        range = RangeReq::Whole;
    }
    let (status, start, len) = match range {
        RangeReq::Whole => (StatusCode::OK, 0, size),
        RangeReq::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        RangeReq::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response());
        }
    };
    let mut send = None;
    // Sent from the page cache where the connection can: faster than copying even from the
    // hot cache, which then serves only connections that cannot (TLS).
    let hot = match zero_copy {
        true => None,
        false => artifacts.hot(sha256, size).await?,
    };
    let (body, how) = match hot {
        Some(b) => (
            Body::from(b.slice(start as usize..(start + len) as usize)),
            "memory",
        ),
        None if zero_copy => {
            send = Some(open_for_sending(artifacts, sha256, size, start, len).await?);
            (Body::empty(), "sendfile")
        }
        None => (
            chunked_body(artifacts.clone(), sha256, size, start, len).await?,
            "read",
        ),
    };
    // Counted when the response is made: a download cut off short still counts whole.
    artifacts.count(how, len);
    let mut resp = Response::new(body);
    if let Some(send) = send {
        resp.extensions_mut().insert(send);
    }
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
                .expect("digits are a valid header"),
        );
    }
    Ok(resp)
}

/// The artifact's file, open for `sendfile` (shared with the downloads of it under way), with
/// the kernel asked to read the range ahead (the sending task then seldom waits for the disk).
/// Checked here, before the headers go out: a file missing or shorter than recorded is a
/// clear error, not a 200 whose body breaks.
async fn open_for_sending(
    artifacts: &Arc<Artifacts>,
    sha256: &str,
    size: u64,
    start: u64,
    len: u64,
) -> Result<SendFile, ApiError> {
    let unreadable = |e: std::io::Error| {
        ApiError::Internal(format!("artifact {sha256} is recorded but unreadable: {e}"))
    };
    let open = || {
        artifacts
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let shared = open().get(sha256);
    let file = match shared {
        Some(f) => f,
        None => {
            let path = artifacts.path(sha256);
            let f = tokio::task::spawn_blocking(move || std::fs::File::open(&path))
                .await
                .map_err(|e| ApiError::Internal(format!("opening artifact {sha256}: {e}")))?
                .map_err(|e| match e.raw_os_error() {
                    // Out of descriptors: the center is busy, not the artifact broken.
                    Some(n)
                        if n == rustix::io::Errno::MFILE.raw_os_error()
                            || n == rustix::io::Errno::NFILE.raw_os_error() =>
                    {
                        ApiError::Unavailable(format!(
                            "the center has no descriptor free to send artifact {sha256}; try again"
                        ))
                    }
                    _ => unreadable(e),
                })?;
            let f = Arc::new(f);
            open().put(sha256, f.clone());
            f
        }
    };
    // The size as the file has it now (a descriptor held since may see a truncation).
    let on_disk = file.metadata().map_err(unreadable)?.len();
    if on_disk != size {
        return Err(unreadable(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{on_disk} bytes on disk, {size} recorded"),
        )));
    }
    if let Some(n) = std::num::NonZeroU64::new(len) {
        // Advice only: a kernel that ignores it still sends the same bytes.
        let _ = rustix::fs::fadvise(&*file, start, Some(n), rustix::fs::Advice::WillNeed);
    }
    Ok(SendFile { file, start, len })
}

/// `len` bytes of an artifact from `start`, chunk by chunk. The first chunk is read before
/// the headers go out: an artifact missing or unreadable on disk is a clear error, not a 200
/// whose body breaks.
async fn chunked_body(
    artifacts: Arc<Artifacts>,
    sha256: &str,
    size: u64,
    start: u64,
    len: u64,
) -> Result<Body, ApiError> {
    let sha = sha256.to_owned();
    let end = start + len;
    let step = artifacts.step();
    let first = if len > 0 {
        Some(
            artifacts
                .chunk(&sha, size, start / step)
                .await
                .map_err(|e| {
                    ApiError::Internal(format!("artifact {sha} is recorded but unreadable: {e}"))
                })?,
        )
    } else {
        None
    };
    let stream = futures_util::stream::try_unfold((start, first), move |(at, mut read)| {
        let (artifacts, sha) = (artifacts.clone(), sha.clone());
        async move {
            if at >= end {
                return Ok(None);
            }
            let index = at / step;
            let chunk = match read.take() {
                Some(c) => c,
                None => artifacts.chunk(&sha, size, index).await?,
            };
            let from = (at - index * step) as usize;
            let to = ((end - index * step) as usize).min(chunk.len());
            if to <= from {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("artifact {sha} is shorter on disk than recorded"),
                ));
            }
            Ok(Some((
                chunk.slice(from..to),
                (at + (to - from) as u64, None),
            )))
        }
    });
    Ok(Body::from_stream(stream))
}

/// `n` bytes of a file from `start`, read on the blocking pool straight into the buffer
/// hyper writes to the socket (one copy from the page cache, as `read(2)` makes it; a
/// `tokio::fs::File` reads into its own buffer and copies again).
async fn read_chunk(path: PathBuf, start: u64, n: u64) -> std::io::Result<Bytes> {
    use std::io::{Read as _, Seek as _};
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        file.seek(std::io::SeekFrom::Start(start))?;
        let mut chunk = Vec::with_capacity(n as usize);
        file.take(n).read_to_end(&mut chunk)?;
        Ok(Bytes::from(chunk))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeReq::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=95-200", 100), Part(95, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=x-1", 100), Whole);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
    }

    /// The same bytes whichever way an artifact is served: whole from memory, by chunks of
    /// the shared window, or read for the download alone; ranges across chunk boundaries.
    #[tokio::test]
    async fn every_way_of_serving_gives_the_file_s_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 3 * CHUNK + 12_345;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let sha: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let ranges = [
            (0, size - 1),
            (CHUNK - 1, CHUNK + 1),
            (DIRECT_CHUNK - 5, 2 * CHUNK + 7),
            (size - 10, size - 1),
        ];
        // whole in memory, by the window (the artifact exceeds half the budget), direct.
        for budget in [4 * size, 5 * CHUNK, 0] {
            let artifacts = Arc::new(Artifacts::new(dir.path().to_owned(), budget));
            let path = artifacts.path(&sha);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &data).expect("write");
            for (a, b) in ranges {
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::RANGE,
                    HeaderValue::from_str(&format!("bytes={a}-{b}")).expect("header"),
                );
                let resp = serve_file(&artifacts, &sha, size, &headers, false)
                    .await
                    .expect("served");
                let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                    .await
                    .expect("body");
                assert_eq!(
                    &body[..],
                    &data[a as usize..=b as usize],
                    "budget {budget}, bytes {a}-{b}"
                );
            }
            // A file cut short on disk is an error mid-body, never short bytes passed off
            // as whole.
            if budget < 4 * size {
                std::fs::write(&path, &data[..(2 * CHUNK) as usize]).expect("truncate");
                let fresh = Arc::new(Artifacts::new(dir.path().to_owned(), budget));
                let resp = serve_file(&fresh, &sha, size, &HeaderMap::new(), false)
                    .await
                    .expect("headers go out first");
                assert!(
                    axum::body::to_bytes(resp.into_body(), usize::MAX)
                        .await
                        .is_err(),
                    "budget {budget}: a short file must fail the body"
                );
            }
            // A file missing on disk is an error before any header, whichever the way.
            std::fs::remove_file(&path).expect("remove");
            let fresh = Arc::new(Artifacts::new(dir.path().to_owned(), budget));
            let missing = serve_file(&fresh, &sha, size, &HeaderMap::new(), false).await;
            assert!(
                matches!(missing, Err(ApiError::Internal(_))),
                "budget {budget}: a missing file must be an error, not a 200"
            );
        }
    }

    /// Downloads of an artifact share one descriptor, and each checks the file's size as it
    /// is when the download starts.
    #[tokio::test]
    async fn downloads_under_way_share_one_open_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = vec![5u8; 10_000];
        let sha: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let artifacts = Arc::new(Artifacts::new(dir.path().to_owned(), 0));
        let path = artifacts.path(&sha);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &data).expect("write");
        let send = |resp: Response| {
            resp.extensions()
                .get::<SendFile>()
                .cloned()
                .expect("a file to send")
        };
        let a = send(
            serve_file(&artifacts, &sha, 10_000, &HeaderMap::new(), true)
                .await
                .expect("a"),
        );
        let mut range = HeaderMap::new();
        range.insert(header::RANGE, HeaderValue::from_static("bytes=100-199"));
        let b = send(
            serve_file(&artifacts, &sha, 10_000, &range, true)
                .await
                .expect("b"),
        );
        assert!(Arc::ptr_eq(&a.file, &b.file), "one descriptor for both");
        assert_eq!((a.start, a.len, b.start, b.len), (0, 10_000, 100, 100));
        drop((a, b));
        std::fs::write(&path, &data[..10]).expect("truncate");
        let e = serve_file(&artifacts, &sha, 10_000, &HeaderMap::new(), true)
            .await
            .expect_err("shorter than recorded");
        assert!(e.to_string().contains("10 bytes on disk"), "{e}");
    }
}
