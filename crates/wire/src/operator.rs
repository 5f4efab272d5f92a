//! The operator API, under `/api/v1/`. Its OpenAPI document is served at
//! `/api/v1/openapi.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Software, Trigger, Unit, Via};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LastReport {
    pub trigger: Trigger,
    /// RFC 3339, center clock.
    pub received_at: String,
    /// RFC 3339, device clock.
    pub observed_at: String,
    pub seq: u64,
}

/// `fleetcare devices show ID --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    pub device_id: String,
    pub model: String,
    /// Connected to the center now (push channel open, or polling).
    pub online: bool,
    pub enrolled_at: String,
    pub last_report: Option<LastReport>,
    /// When the structure last changed (RFC 3339, device clock).
    pub structure_changed_at: Option<String>,
    pub units: Vec<Unit>,
    #[serde(default)]
    pub operating: BTreeMap<String, f64>,
    /// Supplies with their levels, as the newest report says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplies: Vec<crate::Supply>,
    /// Reporting interval set by the center, if any.
    pub report_interval_s: Option<u64>,
    /// `compatible`, `software`, `hardware`, `unknown`; absent until judged against a catalog.
    #[serde(default)]
    pub compat_state: Option<String>,
    /// Why the device cannot install software, as its newest report says (absent: it can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_blocked: Option<String>,
}

/// One row of `fleetcare devices list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceSummary {
    pub device_id: String,
    pub model: String,
    pub online: bool,
    pub units: u32,
    pub last_report: Option<LastReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceSummary>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// A unit as history shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnitRef {
    pub kind: String,
    pub model: String,
    pub serial: String,
    pub hw_revision: String,
    pub software: Vec<Software>,
}

/// One structure change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    UnitAdded {
        slot: String,
        unit: UnitRef,
    },
    UnitRemoved {
        slot: String,
        unit: UnitRef,
    },
    /// Same slot, another unit (new serial).
    UnitReplaced {
        slot: String,
        old: UnitRef,
        new: UnitRef,
    },
    /// Same slot and serial; kind, model or hardware revision changed.
    UnitChanged {
        slot: String,
        old: UnitRef,
        new: UnitRef,
    },
    /// Same unit, taken out of service or put back (`in_service`).
    UnitServiceChanged {
        slot: String,
        serial: String,
        in_service: bool,
    },
    SoftwareAdded {
        slot: String,
        software: Software,
    },
    SoftwareRemoved {
        slot: String,
        software: Software,
    },
    SoftwareChanged {
        slot: String,
        product: String,
        maker: String,
        active: bool,
        old_version: String,
        new_version: String,
    },
    SupplyAdded {
        slot: String,
        supply: SupplyRef,
    },
    SupplyRemoved {
        slot: String,
        supply: SupplyRef,
    },
    /// Same slot, another cartridge (new serial or part number).
    SupplyReplaced {
        slot: String,
        old: SupplyRef,
        new: SupplyRef,
    },
}

/// A supply as the structure history names it (what it is, not how full).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SupplyRef {
    pub kind: crate::SupplyKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEvent {
    /// RFC 3339, device clock of the report that showed the change.
    pub at: String,
    /// RFC 3339, center clock.
    pub received_at: String,
    pub trigger: Trigger,
    pub seq: u64,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct History {
    pub device_id: String,
    pub events: Vec<HistoryEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestReportResponse {
    /// How the request travels: `push` (WebSocket) or `poll` (next long-poll answer).
    pub via: Via,
    /// The report the device sent in answer, when the caller asked to wait for it
    /// (`?wait_s=N`) and it arrived in time.
    pub report: Option<LastReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AllowReenroll {
    /// How long the allowance lasts, in seconds (at most 30 days). It admits one enrollment.
    pub valid_s: u64,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`; `disk_full` (reads are served, writes refused with 503 until there is room);
    /// or `shutting_down`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub store: String,
    pub version: String,
    /// Bytes free on the data directory's disk at the last look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetReportInterval {
    /// Seconds between periodic reports, 10 ..= 604800; `null` returns to the agent's own.
    pub seconds: Option<u64>,
}
