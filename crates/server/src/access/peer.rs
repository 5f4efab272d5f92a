//! Who is on the other end of a request: the connection's address, the client a trusted proxy
//! forwarded for, and the device a client certificate names.
//!
//! `X-Forwarded-For` is believed only when the connection comes from one of the configured
//! `trusted_proxies`; then the client is the rightmost address in it that is not itself a
//! trusted proxy (each proxy appends the address it saw, so anything left of the first
//! untrusted hop is whatever the client claimed). From anyone else the header is ignored:
//! a forged one changes nothing, not the audit log's source nor a rate limit's key.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The TCP peer of a request's connection (set by the accept loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// The connection is TLS (set by the accept loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls;

/// The device a verified client certificate names (mutual TLS), set by the accept loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDevice {
    pub tenant: String,
    pub device_id: String,
}

/// Networks whose forwarded headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parse `10.0.0.0/8`-style networks (a bare address is one host).
    pub fn parse(items: &[String]) -> Result<TrustedProxies, String> {
        items
            .iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not an address or a network such as 10.0.0.0/8"))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the peer, or what a trusted proxy says it forwarded for.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        hops.reverse();
        let mut client = peer;
        for hop in hops {
            let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
                // A hop that is not an address: stop at the last one we could believe.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }

    /// Whether the client reached the center over TLS: the connection itself, or a trusted
    /// proxy's `X-Forwarded-Proto: https`.
    pub fn https(&self, peer: Option<IpAddr>, tls: bool, headers: &HeaderMap) -> bool {
        tls || peer.is_some_and(|p| self.trusts(p))
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    }
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:a.b.c.d`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).expect("ok");
        let forged = headers(&["203.0.113.9"]);
        assert_eq!(
            t.client(Some(ip("198.51.100.1")), &forged),
            Some(ip("198.51.100.1")),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            t.client(Some(ip("10.1.2.3")), &forged),
            Some(ip("203.0.113.9"))
        );
        let chain = headers(&["1.1.1.1, 203.0.113.9", "10.9.9.9"]);
        assert_eq!(
            t.client(Some(ip("192.0.2.7")), &chain),
            Some(ip("203.0.113.9")),
            "the rightmost untrusted hop; what the client put left of it is not believed"
        );
        assert_eq!(
            t.client(Some(ip("10.1.2.3")), &headers(&["junk, 10.2.2.2"])),
            Some(ip("10.2.2.2"))
        );
        assert_eq!(
            t.client(Some(ip("::ffff:10.0.0.1")), &forged),
            Some(ip("203.0.113.9")),
            "mapped IPv4 is IPv4"
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example".into()]).is_err());
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().expect("header"));
        assert!(t.https(Some(ip("10.0.0.1")), false, &h));
        assert!(!t.https(Some(ip("198.51.100.1")), false, &h));
    }
}
