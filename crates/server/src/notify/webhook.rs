//! Webhooks: which URLs may be called, the signature, and one bounded send.
//!
//! A webhook URL is `http` or `https` and must not lead to a link-local address or a cloud
//! metadata service (a center's own credentials live there) unless the config allows that
//! network: the check runs when the subscription is added and again on every send, at
//! resolution, so a name that later resolves elsewhere is refused too. Redirects are not
//! followed. A send takes at most the configured timeout, and at most
//! [`MAX_ANSWER_BYTES`] of the answer are read.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;

/// Most bytes of a receiver's answer read (and kept in the delivery log, as text).
pub const MAX_ANSWER_BYTES: usize = 4096;
/// Longest webhook URL.
pub const MAX_URL_BYTES: usize = 2048;

/// Networks a webhook may point at only when the config allows them.
fn forbidden(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_link_local() {
                Some("a link-local address (where cloud metadata services live)")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
                Some("not an address of one host")
            } else if v4.octets() == [100, 100, 100, 200] {
                Some("a cloud metadata address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if (s[0] & 0xffc0) == 0xfe80 {
                Some("a link-local address")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not an address of one host")
            } else if s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] {
                Some("a cloud metadata address")
            } else {
                None
            }
        }
    }
}

/// Which addresses webhooks may reach.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allowed: Vec<IpNet>,
}

impl Guard {
    pub fn new(allow: &[String]) -> Guard {
        Guard {
            allowed: allow.iter().filter_map(|n| n.parse().ok()).collect(),
        }
    }

    /// Why `ip` may not be called, if it may not.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        forbidden(ip).filter(|_| !self.allowed.iter().any(|n| n.contains(&ip)))
    }

    /// Check a webhook URL as given (its scheme, its host and where the host resolves).
    pub async fn check_url(&self, url: &str) -> Result<reqwest::Url, String> {
        if url.len() > MAX_URL_BYTES {
            return Err(format!("a webhook URL is at most {MAX_URL_BYTES} bytes"));
        }
        let u = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!(
                "{url:?}: a webhook is http:// or https://, not {}://",
                u.scheme()
            ));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(format!(
                "{url:?}: no credentials in the URL (the signature authenticates the center)"
            ));
        }
        let Some(host) = u.host_str() else {
            return Err(format!("{url:?} names no host"));
        };
        let port = u.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match literal_ip(&u) {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::lookup_host((host, port)),
            )
            .await
            .map_err(|_| format!("{url:?}: resolving {host} took longer than 5 s"))?
            .map_err(|e| format!("{url:?}: {host} does not resolve: {e}"))?
            .collect(),
        };
        for a in &addrs {
            if let Some(why) = self.refuses(a.ip()) {
                return Err(format!(
                    "{url:?} leads to {}, {why}; allow its network in `notify_allow_networks` \
                     if that is meant",
                    a.ip()
                ));
            }
        }
        Ok(u)
    }
}

/// The address a URL names literally (`http://10.0.0.1/`, `http://[fe80::1]/`), if it does:
/// such a host is not resolved, so the guard checks it itself.
fn literal_ip(u: &reqwest::Url) -> Option<IpAddr> {
    u.host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Resolves names for the webhook client, leaving out addresses the guard refuses.
struct GuardedResolver(Arc<Guard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| guard.refuses(a.ip()).is_none())
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address a webhook may call").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client webhooks are sent with.
pub fn client(
    guard: Arc<Guard>,
    tls: Option<rustls::ClientConfig>,
    timeout: Duration,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("Fleetcare-Webhook/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver(guard)));
    if let Some(tls) = tls {
        b = b.use_preconfigured_tls(tls);
    }
    b.build().expect("a client from fixed settings")
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature(secret: &str, unix_s: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(unix_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!("t={unix_s},v1={}", fleetcare_core::secret::hex(&tag))
}

/// What one send came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub ok: bool,
    pub status: Option<u16>,
    /// Why it failed, with the start of the answer.
    pub error: Option<String>,
}

/// One webhook delivery: `POST` the body, signed, and read at most [`MAX_ANSWER_BYTES`] of
/// the answer. A 2xx answer is a success; a redirect, any other status, a timeout or a
/// refused address is a failure.
pub async fn send(
    client: &reqwest::Client,
    guard: &Guard,
    url: &str,
    headers: &[(&str, String)],
    body: bytes::Bytes,
) -> Sent {
    let failed = |error: String| Sent {
        ok: false,
        status: None,
        error: Some(error),
    };
    let u = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return failed(format!("not a URL: {e}")),
    };
    // An address in the URL itself is not resolved: check it here.
    if let Some(ip) = literal_ip(&u)
        && let Some(why) = guard.refuses(ip)
    {
        return failed(format!("{ip} is {why}"));
    }
    let mut req = client
        .post(u)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let mut resp = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            if e.is_timeout() {
                msg = format!("no answer within the time limit ({msg})");
            }
            return failed(msg);
        }
    };
    let status = resp.status();
    let mut answer = Vec::new();
    while answer.len() < MAX_ANSWER_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => {
                answer.extend_from_slice(&c[..c.len().min(MAX_ANSWER_BYTES - answer.len())])
            }
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).trim().to_owned();
    if status.is_success() {
        return Sent {
            ok: true,
            status: Some(status.as_u16()),
            error: None,
        };
    }
    let why = if status.is_redirection() {
        format!(
            "answered {status} (a redirect, to {}; redirects are not followed)",
            resp.headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("nowhere")
        )
    } else if text.is_empty() {
        format!("answered {status}")
    } else {
        format!("answered {status}: {text}")
    };
    Sent {
        ok: false,
        status: Some(status.as_u16()),
        error: Some(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_and_body() {
        // The value Python's `hmac.new(b"key", b"1.body", hashlib.sha256)` gives.
        assert_eq!(
            signature("key", 1, b"body"),
            "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
        assert_ne!(signature("other", 1, b"body"), signature("key", 1, b"body"));
        assert_ne!(signature("key", 2, b"body"), signature("key", 1, b"body"));
    }

    #[test]
    fn refuses_link_local_and_metadata_unless_allowed() {
        let g = Guard::default();
        assert!(g.refuses("169.254.169.254".parse().expect("ip")).is_some());
        assert!(g.refuses("fe80::1".parse().expect("ip")).is_some());
        assert!(g.refuses("fd00:ec2::254".parse().expect("ip")).is_some());
        assert!(
            g.refuses("::ffff:169.254.169.254".parse().expect("ip"))
                .is_some()
        );
        assert!(g.refuses("0.0.0.0".parse().expect("ip")).is_some());
        assert!(g.refuses("127.0.0.1".parse().expect("ip")).is_none());
        assert!(g.refuses("10.1.2.3".parse().expect("ip")).is_none());
        let allowed = Guard::new(&["169.254.0.0/16".to_owned()]);
        assert!(
            allowed
                .refuses("169.254.169.254".parse().expect("ip"))
                .is_none()
        );
    }
}
