//! The wire format of Fleetcare.
//!
//! This crate owns every JSON message that crosses a process boundary: the device protocol
//! (agent ↔ center, under `/device/v1/`) and the operator API (CLI and dashboard ↔ center,
//! under `/api/v1/`). Domain types live in `fleetcare-core`; conversions happen at the edges.
//! Fields are only ever added, never renamed or removed: agents in the field and operators'
//! scripts depend on them.

pub mod access;
pub mod compat;
pub mod ddi;
pub mod delivery;
pub mod device;
pub mod errors;
pub mod life;
pub mod mqtt;
pub mod notify;
pub mod operator;
pub mod retention;
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

/// What a supply is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SupplyKind {
    Toner,
    Ink,
    Drum,
    Developer,
    Fuser,
    Transfer,
    Waste,
    Staples,
    Other,
}

impl SupplyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SupplyKind::Toner => "toner",
            SupplyKind::Ink => "ink",
            SupplyKind::Drum => "drum",
            SupplyKind::Developer => "developer",
            SupplyKind::Fuser => "fuser",
            SupplyKind::Transfer => "transfer",
            SupplyKind::Waste => "waste",
            SupplyKind::Staples => "staples",
            SupplyKind::Other => "other",
        }
    }
}

/// How much of a supply is left, as the device says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SupplyState {
    Ok,
    Low,
    Empty,
    #[default]
    Unknown,
}

impl SupplyState {
    pub fn as_str(self) -> &'static str {
        match self {
            SupplyState::Ok => "ok",
            SupplyState::Low => "low",
            SupplyState::Empty => "empty",
            SupplyState::Unknown => "unknown",
        }
    }
}

/// A supply of a device (toner, drum, waste box, …) and its level as last read. One with a
/// serial number is a replaceable part: a new serial in its slot is a replacement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Supply {
    /// Position in the device (`toner.black`, `drum.1`); unique within the device.
    pub slot: String,
    pub kind: SupplyKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// 0 to 100; `null` when the device cannot tell.
    #[serde(default)]
    pub level_pct: Option<f64>,
    /// The level in the supply's own unit (of `max`), where the device tells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default)]
    pub state: SupplyState,
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
