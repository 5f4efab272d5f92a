//! Downloads on plain TCP connections, sent from the file with `sendfile(2)`: an artifact's
//! pages go from the page cache to the socket without passing through the center's memory.
//!
//! hyper writes every body byte itself and does not give its socket back, so a plain
//! connection starts here. [`serve`] reads the request head itself; a download (`GET` of an
//! artifact path, HTTP/1.1, no body, no upgrade) goes through the same router with a
//! [`ZeroCopy`] mark, and a handler that would stream a file answers with an empty body and a
//! [`SendFile`]: this module writes the head and `sendfile`s the range. Any other answer it
//! writes itself, with its length or chunked. The first request that is not a download hands
//! the connection, with the bytes already read, to hyper for the rest of its life.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{self, HeaderMap, Method, StatusCode, header};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

/// On a request: its response may be a [`SendFile`] (the connection can send one).
#[derive(Clone, Copy, Debug)]
pub struct ZeroCopy;

/// On a response: its body is `len` bytes of `file` from `start`; the response's own body is
/// empty.
#[derive(Clone, Debug)]
pub struct SendFile {
    pub file: Arc<std::fs::File>,
    pub start: u64,
    pub len: u64,
}

/// The largest request head read here; a larger one is hyper's to refuse.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// A body up to this size goes out in one write with its head.
const SMALL_BODY: u64 = 64 * 1024;
/// A client that takes nothing of a response for this long is cut off.
const STALL: Duration = Duration::from_secs(60);

/// Paths whose responses may be files: artifacts, DDI artifacts and TUF targets.
pub(crate) fn is_download(path: &str) -> bool {
    path.starts_with("/device/v1/artifacts/")
        || path.starts_with("/device/v1/tuf/targets/")
        || (path.contains("/controller/v1/")
            && path.contains("/softwaremodules/")
            && path.contains("/artifacts/"))
}

/// What the connection's next bytes are.
enum Head {
    /// Closed, broken or too slow: nothing to answer.
    Gone,
    /// A request hyper serves (not a download, malformed, too large).
    Hyper,
    /// A download, and the bytes its head took.
    Download(Box<http::Request<Body>>, usize),
}

/// Serve a plain connection's downloads. `None`: the connection is over; `Some`: hyper
/// serves the rest of it, starting with the bytes already read.
pub(crate) async fn serve(
    mut stream: TcpStream,
    router: &Router,
    peer: crate::access::peer::Peer,
    header_timeout: Duration,
    closing: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Rewind<TcpStream>> {
    use tower::ServiceExt;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let head = tokio::select! {
            r = tokio::time::timeout(header_timeout, read_head(&mut stream, &mut buf)) => match r {
                Ok(Ok(h)) => h,
                Ok(Err(_)) | Err(_) => Head::Gone,
            },
            // Shutting down: a connection waiting for its next request ends now.
            _ = closing.wait_for(|c| *c), if buf.is_empty() => Head::Gone,
        };
        let mut req = match head {
            Head::Gone => return None,
            Head::Hyper => {
                return Some(Rewind {
                    prefix: buf.freeze(),
                    inner: stream,
                });
            }
            Head::Download(req, used) => {
                buf.advance(used);
                *req
            }
        };
        let close = wants_close(req.headers());
        req.extensions_mut().insert(peer);
        req.extensions_mut().insert(ZeroCopy);
        let resp = match router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let close = close || *closing.borrow();
        match write_response(&mut stream, resp, close).await {
            Ok(true) if !close => {}
            Ok(_) => {
                let _ = stream.shutdown().await;
                return None;
            }
            Err(e) => {
                tracing::debug!(peer = %peer.0, error = %e, "download cut off");
                return None;
            }
        }
    }
}

/// Read until `buf` holds a whole request head, and judge it.
async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<Head> {
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut r = httparse::Request::new(&mut headers);
            match r.parse(buf) {
                Ok(httparse::Status::Complete(n)) => return Ok(download(&r, n)),
                // Decided as soon as the request line says it is not a download.
                Ok(httparse::Status::Partial) => {
                    if r.method.is_some_and(|m| m != "GET")
                        || r.path.is_some_and(|p| !is_download(p))
                    {
                        return Ok(Head::Hyper);
                    }
                }
                Err(_) => return Ok(Head::Hyper),
            }
        }
        if buf.len() >= MAX_HEAD {
            return Ok(Head::Hyper);
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(Head::Gone);
        }
    }
}

/// A complete head of `n` bytes: a download this module serves, or hyper's.
fn download(r: &httparse::Request<'_, '_>, n: usize) -> Head {
    let (Some("GET"), Some(path), Some(1)) = (r.method, r.path, r.version) else {
        return Head::Hyper;
    };
    if !is_download(path) {
        return Head::Hyper;
    }
    let mut b = http::Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(http::Version::HTTP_11);
    for h in r.headers.iter() {
        let name = h.name;
        // A body, an upgrade or an expectation: hyper's.
        if (name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Head::Hyper;
        }
        b = b.header(name, h.value);
    }
    match b.body(Body::empty()) {
        Ok(req) => Head::Download(Box::new(req), n),
        Err(_) => Head::Hyper,
    }
}

/// `Connection: close` among the request's or response's headers.
fn wants_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

/// Write a response. `Ok(false)`: the connection cannot carry another one (its body fell
/// short, or the response closes it).
async fn write_response(
    stream: &mut TcpStream,
    resp: http::Response<Body>,
    close: bool,
) -> io::Result<bool> {
    use std::io::Write as _;
    let (parts, body) = resp.into_parts();
    let close = close || wants_close(&parts.headers);
    let file = parts.extensions.get::<SendFile>().cloned();
    let no_body = parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    let len = match &file {
        Some(f) => Some(f.len),
        None if no_body => Some(0),
        None => body.size_hint().exact(),
    };
    let mut head = Vec::with_capacity(512);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        let now = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&jiff::Timestamp::now())
            .unwrap_or_default();
        let _ = write!(head, "date: {now}\r\n");
    }
    match len {
        Some(_) if no_body => {}
        Some(n) => {
            let _ = write!(head, "content-length: {n}\r\n");
        }
        None => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");

    if let Some(f) = file {
        put(stream, &head).await?;
        send_file(stream, &f).await?;
        return Ok(!close);
    }
    if no_body {
        put(stream, &head).await?;
        return Ok(!close);
    }
    let mut data = body.into_data_stream();
    match len {
        // Small: one write, head and body.
        Some(n) if n <= SMALL_BODY => {
            let mut all = head;
            let at = all.len();
            while let Some(chunk) = data.next().await {
                all.extend_from_slice(&chunk.map_err(io::Error::other)?);
            }
            if (all.len() - at) as u64 != n {
                return Err(io::Error::other("a body is not the length it said"));
            }
            put(stream, &all).await?;
            Ok(!close)
        }
        Some(n) => {
            put(stream, &head).await?;
            let mut sent = 0u64;
            while let Some(chunk) = data.next().await {
                let chunk: Bytes = chunk.map_err(io::Error::other)?;
                sent += chunk.len() as u64;
                if sent > n {
                    return Err(io::Error::other("a body is longer than it said"));
                }
                put(stream, &chunk).await?;
            }
            Ok(!close && sent == n)
        }
        None => {
            put(stream, &head).await?;
            while let Some(chunk) = data.next().await {
                let chunk: Bytes = chunk.map_err(io::Error::other)?;
                if chunk.is_empty() {
                    continue;
                }
                put(stream, format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                put(stream, &chunk).await?;
                put(stream, b"\r\n").await?;
            }
            put(stream, b"0\r\n\r\n").await?;
            Ok(!close)
        }
    }
}

/// Write all of `bytes`, or fail once the client has taken nothing for [`STALL`].
async fn put(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    tokio::time::timeout(STALL, stream.write_all(bytes))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))?
}

/// `sendfile` the range; the socket is non-blocking, so each call sends what fits and the
/// task waits for room (its readiness counts against the task's budget, so a fast client
/// does not starve the worker's other tasks).
async fn send_file(stream: &TcpStream, f: &SendFile) -> io::Result<()> {
    let mut offset = f.start;
    let end = f.start + f.len;
    while offset < end {
        let want = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        let sent = tokio::time::timeout(STALL, async {
            loop {
                stream.writable().await?;
                match stream.try_io(Interest::WRITABLE, || {
                    rustix::fs::sendfile(stream, &*f.file, Some(&mut offset), want)
                        .map_err(io::Error::from)
                }) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))??;
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the artifact is shorter on disk than recorded",
            ));
        }
    }
    Ok(())
}

/// A connection whose first bytes were already read: they are read again first.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            if self.prefix.is_empty() {
                // Let go of the buffer the head was read into: an idle connection (a
                // WebSocket kept for days) should not keep it.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(head: &str) -> &'static str {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Request::new(&mut headers);
        let httparse::Status::Complete(n) = r.parse(head.as_bytes()).expect("parses") else {
            panic!("partial: {head}");
        };
        match download(&r, n) {
            Head::Download(req, used) => {
                assert_eq!(used, head.len());
                assert_eq!(req.method(), Method::GET);
                "download"
            }
            Head::Hyper => "hyper",
            Head::Gone => "gone",
        }
    }

    #[test]
    fn only_plain_gets_of_download_paths_are_served_here() {
        let a = "/device/v1/artifacts/ab";
        assert_eq!(
            judge(&format!("GET {a} HTTP/1.1\r\nHost: x\r\n\r\n")),
            "download"
        );
        assert_eq!(
            judge("GET /t/controller/v1/d/softwaremodules/3/artifacts/f.swu HTTP/1.1\r\n\r\n"),
            "download"
        );
        assert_eq!(
            judge("GET /device/v1/tuf/targets/x/ab.bin HTTP/1.1\r\n\r\n"),
            "download"
        );
        assert_eq!(
            judge(&format!("GET {a} HTTP/1.1\r\nContent-Length: 0\r\n\r\n")),
            "download"
        );
        for head in [
            format!("POST {a} HTTP/1.1\r\n\r\n"),
            format!("HEAD {a} HTTP/1.1\r\n\r\n"),
            format!("GET {a} HTTP/1.0\r\n\r\n"),
            format!("GET {a} HTTP/1.1\r\nContent-Length: 3\r\n\r\n"),
            format!("GET {a} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            format!("GET {a} HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            format!("GET {a} HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"),
            "GET /device/v1/self HTTP/1.1\r\n\r\n".to_owned(),
            "GET /device/v1/tuf/metadata/1.root.json HTTP/1.1\r\n\r\n".to_owned(),
        ] {
            assert_eq!(judge(&head), "hyper", "{head}");
        }
    }

    /// A connected pair on loopback: (the center's end, the client's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(l.local_addr().expect("addr"));
        let (client, accepted) = tokio::join!(client, l.accept());
        (accepted.expect("accept").0, client.expect("connect"))
    }

    /// Write `resp` and read everything the client gets until the center's end closes.
    async fn written(resp: http::Response<Body>) -> (io::Result<bool>, String, Vec<u8>) {
        let (mut center, mut client) = pair().await;
        let kept = write_response(&mut center, resp, false).await;
        drop(center);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("read");
        let end = got
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head")
            + 4;
        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
        (kept, head, got[end..].to_vec())
    }

    #[tokio::test]
    async fn responses_are_written_with_their_length_or_chunked() {
        // A body of unknown length goes chunked, and the chunks decode to it.
        let parts: Vec<Result<Bytes, io::Error>> = vec![
            Ok(Bytes::from_static(b"hello, ")),
            Ok(Bytes::new()),
            Ok(Bytes::from(vec![7u8; 70_000])),
        ];
        let (kept, head, body) = written(http::Response::new(Body::from_stream(
            futures_util::stream::iter(parts),
        )))
        .await;
        assert!(kept.expect("written"), "the connection may carry another");
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        loop {
            let line = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a size line");
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..line]).expect("hex"), 16)
                .expect("a size");
            rest = &rest[line + 2..];
            if n == 0 {
                assert_eq!(rest, b"\r\n", "the last chunk ends the body");
                break;
            }
            decoded.extend_from_slice(&rest[..n]);
            assert_eq!(&rest[n..n + 2], b"\r\n");
            rest = &rest[n + 2..];
        }
        let mut want = b"hello, ".to_vec();
        want.extend_from_slice(&[7u8; 70_000]);
        assert!(decoded == want, "the chunks are the body");

        // Small and large bodies of known length; a 304 has none; a response that closes
        // the connection says so.
        for n in [0usize, 10, 70_000] {
            let (kept, head, body) = written(http::Response::new(Body::from(vec![1u8; n]))).await;
            assert!(kept.expect("written"));
            assert!(head.contains(&format!("content-length: {n}\r\n")), "{head}");
            assert!(head.contains("date: "), "{head}");
            assert_eq!(body.len(), n);
        }
        let mut resp = http::Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp.headers_mut()
            .insert(header::ETAG, "\"x\"".parse().expect("value"));
        let (kept, head, body) = written(resp).await;
        assert!(kept.expect("written"));
        assert!(
            head.starts_with("http/1.1 304 not modified\r\n") && head.contains("etag: \"x\"\r\n"),
            "{head}"
        );
        assert!(!head.contains("content-length"), "{head}");
        assert!(body.is_empty());
        let mut resp = http::Response::new(Body::from("bye"));
        resp.headers_mut()
            .insert(header::CONNECTION, "close".parse().expect("value"));
        let (kept, head, _) = written(resp).await;
        assert!(!kept.expect("written"), "closes");
        assert_eq!(head.matches("connection: close").count(), 1, "{head}");
    }

    #[tokio::test]
    async fn a_range_is_sent_from_the_file_and_a_short_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a");
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        let file = Arc::new(std::fs::File::open(&path).expect("open"));
        let mut resp = http::Response::new(Body::empty());
        resp.extensions_mut().insert(SendFile {
            file: file.clone(),
            start: 1000,
            len: 250_000,
        });
        let (kept, head, body) = written(resp).await;
        assert!(kept.expect("sent"));
        assert!(head.contains("content-length: 250000\r\n"), "{head}");
        assert!(body == bytes[1000..251_000], "the range's bytes");

        let (mut center, _client) = pair().await;
        let short = SendFile {
            file,
            start: 299_000,
            len: 5_000,
        };
        let e = send_file(&center, &short).await.expect_err("short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let _ = center.shutdown().await;
    }
}
