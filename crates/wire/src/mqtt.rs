//! The device protocol over an MQTT broker: the same messages as over HTTP, in envelopes, on
//! topics per tenant and device (`<t>` the tenant's number, `<d>` the device id):
//!
//! | topic | who publishes | payload |
//! |---|---|---|
//! | `fleetcare/<t>/<d>/up/report` | device | [`Up`] of a [`crate::device::StructureReport`] |
//! | `fleetcare/<t>/<d>/up/errors` | device | [`Up`] of a [`crate::errors::ErrorBatch`] |
//! | `fleetcare/<t>/<d>/up/status` | device (and its last will) | [`Up`] of a [`Status`] |
//! | `fleetcare/<t>/<d>/down/ack` | center | [`Ack`] of each up message, once it is durable |
//! | `fleetcare/<t>/<d>/down/command` | center | a [`crate::device::Command`] |
//!
//! Every message goes with QoS 1. The broker's ACL lets a device (MQTT username `<t>/<d>`)
//! publish only under its own `up/` and read only its own `down/`; the center still checks
//! the credential inside each envelope, exactly as it checks `Authorization` over HTTP, so a
//! revoked credential stops working at once whatever the broker knows. The one message
//! without a credential is a [`Status`] saying offline (a last will is fixed when the
//! session opens and must outlive credential rotations; only the device can publish it). An up message without
//! its ack may be published again with the same id and body: reports and error batches are
//! idempotent.

use serde::{Deserialize, Serialize};

use crate::ErrorBody;

/// The first level of every topic.
pub const ROOT: &str = "fleetcare";
/// Up kinds.
pub const REPORT: &str = "report";
pub const ERRORS: &str = "errors";
pub const STATUS: &str = "status";
/// Longest envelope id.
pub const MAX_ID_LEN: usize = 64;

/// The topic a device publishes `kind` on.
pub fn up_topic(tenant: i64, device_id: &str, kind: &str) -> String {
    format!("{ROOT}/{tenant}/{device_id}/up/{kind}")
}

/// The topic the center answers a device's messages on.
pub fn ack_topic(tenant: i64, device_id: &str) -> String {
    format!("{ROOT}/{tenant}/{device_id}/down/ack")
}

/// The topic the center sends a device's commands on.
pub fn command_topic(tenant: i64, device_id: &str) -> String {
    format!("{ROOT}/{tenant}/{device_id}/down/command")
}

/// `(tls, host, port)` of an `mqtt://` or `mqtts://` broker URL (ports 1883 and 8883 by
/// default).
pub fn parse_url(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(format!("{url:?}: must start with mqtt:// or mqtts://"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url:?}: {p:?} is not a port"))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("{url:?}: no host"));
    }
    Ok((tls, host.to_owned(), port))
}

/// `(tenant, device id, kind)` of an up topic.
pub fn parse_up_topic(topic: &str) -> Option<(i64, &str, &str)> {
    let mut parts = topic.split('/');
    let (root, t, d, up, kind) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if root != ROOT || up != "up" || parts.next().is_some() {
        return None;
    }
    Some((t.parse().ok()?, d, kind))
}

/// A device's message: an id of its choosing (repeated in the [`Ack`]), its credential, and
/// the body it would send over HTTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Up<B> {
    pub id: String,
    pub credential: String,
    pub body: B,
}

/// The center's answer: `status` as the HTTP status would be; `body` the HTTP answer on 200,
/// `error` otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub id: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// The device's connection: `true` when it connects, `false` in its last will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub online: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1883"),
            Ok((false, "127.0.0.1".into(), 1883))
        );
        assert_eq!(
            parse_url("mqtts://broker.example"),
            Ok((true, "broker.example".into(), 8883))
        );
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("mqtt://:1883").is_err());
        assert!(parse_url("mqtt://h:port").is_err());
    }

    #[test]
    fn up_topics_read_back() {
        let t = up_topic(7, "PRN-1", REPORT);
        assert_eq!(t, "fleetcare/7/PRN-1/up/report");
        assert_eq!(parse_up_topic(&t), Some((7, "PRN-1", REPORT)));
        for bad in [
            "fleetcare/7/PRN-1/down/ack",
            "fleetcare/x/PRN-1/up/report",
            "other/7/PRN-1/up/report",
            "fleetcare/7/PRN-1/up/report/more",
            "fleetcare/7/PRN-1/up",
        ] {
            assert_eq!(parse_up_topic(bad), None, "{bad}");
        }
    }
}
