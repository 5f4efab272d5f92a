//! The wire format of Fleetcare.
//!
//! This crate owns every JSON message that crosses a process boundary: the device protocol
//! (agent ↔ center, under `/device/v1/`) and the operator API (CLI and dashboard ↔ center,
//! under `/api/v1/`). Domain types live in `fleetcare-core`; conversions happen at the edges.
//! Fields are only ever added, never renamed or removed: agents in the field and operators'
//! scripts depend on them.

pub mod access;
pub mod compat;
pub mod delivery;
pub mod device;
pub mod errors;
pub mod life;
pub mod mqtt;
pub mod operator;
pub mod rollouts;
pub mod troubles;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What caused a structure report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The agent (re)connected its push channel to the center.
    Connect,
    /// The center asked for it.
    Request,
    /// The agent's reporting schedule.
    Periodic,
    /// The structure changed (unit swapped, software changed).
    Change,
    /// A person or the device's own software asked for it on the device.
    Manual,
}

impl Trigger {
    pub const ALL: [Trigger; 5] = [
        Trigger::Connect,
        Trigger::Request,
        Trigger::Periodic,
        Trigger::Change,
        Trigger::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Connect => "connect",
            Trigger::Request => "request",
            Trigger::Periodic => "periodic",
            Trigger::Change => "change",
            Trigger::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// How the center reaches a connected device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The device's open WebSocket.
    Push,
    /// The answer to the device's next long poll.
    Poll,
    /// The device's command topic on the MQTT broker.
    Mqtt,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Push => "push",
            Via::Poll => "poll",
            Via::Mqtt => "mqtt",
        }
    }
}

/// One program installed on a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Software {
    /// Product id, specific to the program (e.g. `ctl-firmware`).
    pub product: String,
    /// Maker (preparer/vendor) id.
    pub maker: String,
    /// Vendor version string.
    pub version: String,
    /// `false` for the inactive copy of an A/B unit. Defaults to `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub active: bool,
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

/// One replaceable unit of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Unit {
    /// Position in the device; unique within the device.
    pub slot: String,
    /// controller, engine, fuser, finisher, document-feeder, paper-feeder, duplexer, fax, scanner, …
    pub kind: String,
    pub model: String,
    pub serial: String,
    #[serde(default)]
    pub hw_revision: String,
    #[serde(default)]
    pub software: Vec<Software>,
    /// `false` when the unit was taken out of service (present, but not used): compatibility
    /// is not judged on it. Defaults to `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub in_service: bool,
}

/// Error body of every rejected request, device or operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code: `bad_request`, `bad_json`, `too_large`, `unauthorized`,
    /// `forbidden`, `not_found`, `timeout`, `already_enrolled`, `offline`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// What was wrong, for a person.
    pub error: String,
    /// Every problem, when there are several (a refused catalog or config).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}
