//! The operator API client the commands use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use fleetcare_wire::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where a token comes from when neither `--token` nor `FLEETCARE_TOKEN` gives one: the
/// `admin-token` a center started in this directory wrote.
pub const DEFAULT_TOKEN_FILE: &str = "fleetcare-data/admin-token";

#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// The operator token: `--token`, else `--token-file`, else `./fleetcare-data/admin-token`.
pub fn resolve_token(token: Option<String>, token_file: Option<PathBuf>) -> anyhow::Result<String> {
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        return Ok(t);
    }
    let (path, explicit) = match token_file {
        Some(p) => (p, true),
        None => (PathBuf::from(DEFAULT_TOKEN_FILE), false),
    };
    read_token(&path).with_context(|| {
        if explicit {
            format!("reading the token file {}", path.display())
        } else {
            format!(
                "no operator token: pass --token or set FLEETCARE_TOKEN (or FLEETCARE_TOKEN_FILE); \
                 {} was not readable",
                path.display()
            )
        }
    })
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(path)?;
    let t = t.trim();
    if t.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(t.to_owned())
}

impl Api {
    pub fn new(url: &str, token: String) -> Api {
        Api::with_tls(url, token, None, None)
    }

    /// A client of an `https://` center trusting what `tls` trusts; with `tenant`, acting
    /// within that customer organization (a provider's operator).
    pub fn with_tls(
        url: &str,
        token: String,
        tls: Option<fleetcare_tls::rustls::ClientConfig>,
        tenant: Option<&str>,
    ) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = tenant.and_then(|t| reqwest::header::HeaderValue::from_str(t).ok()) {
            headers.insert("fleetcare-tenant", t);
        }
        let mut b = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("fleetcare/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = tls {
            b = b.use_preconfigured_tls(tls);
        }
        let http = b
            .build()
            .expect("an HTTP client with a plain configuration builds");
        Api {
            http,
            base: url.trim_end_matches('/').to_owned(),
            token,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(self.url(path))).await
    }

    /// GET, with `None` for 404 (a thing not there yet).
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Option<T>> {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the center at {}", self.base))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.answer(resp).await.map(Some)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let mut req = self.http.post(self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    pub async fn delete<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.send(self.http.delete(self.url(path)).json(body)).await
    }

    /// POST a text body (a catalog's TOML).
    pub async fn post_text<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> anyhow::Result<T> {
        let req = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(req).await
    }

    /// PUT a text body (a rules file's TOML).
    pub async fn put_text<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> anyhow::Result<T> {
        let req = self
            .http
            .put(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(req).await
    }

    /// PUT a file as the body, streamed, with a progress bar when `progress` (and a terminal).
    pub async fn put_file<T: DeserializeOwned>(
        &self,
        path: &str,
        file: &Path,
        size: u64,
        progress: bool,
    ) -> anyhow::Result<T> {
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("opening {}", file.display()))?;
        let bar = if progress {
            let bar = indicatif::ProgressBar::new(size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let counted = bar.clone();
        let stream = futures_util::stream::unfold(f, move |mut f| {
            let bar = counted.clone();
            async move {
                use tokio::io::AsyncReadExt;
                let mut buf = bytes::BytesMut::with_capacity(256 * 1024);
                match f.read_buf(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        bar.inc(n as u64);
                        Some((Ok::<_, std::io::Error>(buf.freeze()), f))
                    }
                    Err(e) => Some((Err(e), f)),
                }
            }
        });
        let req = self
            .http
            .put(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            // Large files take as long as they take; the center bounds idle uploads.
            .timeout(Duration::from_secs(24 * 3600))
            .body(reqwest::Body::wrap_stream(stream));
        let out = self.send(req).await;
        bar.finish_and_clear();
        out
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the center at {}", self.base))?;
        self.answer(resp).await
    }

    /// The center's answer: its JSON, or its error as a message.
    async fn answer<T: DeserializeOwned>(&self, resp: reqwest::Response) -> anyhow::Result<T> {
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the center's answer")?;
        if status.is_success() {
            // 204 No Content answers as JSON null.
            let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(body)
                .context("the center's answer is not the expected JSON");
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) if !e.problems.is_empty() => bail!(
                "{} ({}, {}):\n  {}",
                e.error,
                status.as_u16(),
                e.code,
                e.problems.join("\n  ")
            ),
            Ok(e) if status == reqwest::StatusCode::UNAUTHORIZED => bail!(
                "{} ({}, {}): the token is not one this center knows (revoked, mistyped, or \
                 from an earlier run: `fleetcare demo` makes a new token each time it starts; \
                 use the one it printed)",
                e.error,
                status.as_u16(),
                e.code
            ),
            Ok(e) => bail!("{} ({}, {})", e.error, status.as_u16(), e.code),
            Err(_) => bail!(
                "the center answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ),
        }
    }
}

/// A device id as a URL path segment (ids hold only URL-safe characters; checked anyway).
pub fn segment(id: &str) -> anyhow::Result<&str> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        bail!("{id:?} is not a device id (letters, digits and . _ : -)");
    }
    Ok(id)
}
