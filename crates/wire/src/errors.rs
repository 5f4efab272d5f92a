//! The error log on the wire: event batches from a device, their acknowledgement, and the
//! operator's view.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | POST | `/device/v1/errors` | [`ErrorBatch`] | [`ErrorAck`] |
//! | GET  | `/api/v1/devices/{id}/errors?since=&code=&limit=` | | [`ErrorList`] |
//! | POST | `/api/v1/devices/{id}/request-errors` | | [`crate::operator::RequestReportResponse`] |
//!
//! Every event carries `(boot_epoch, seq)`: the agent numbers events from 1 in each boot
//! epoch. The center stores each `(device, boot_epoch, seq)` once and acknowledges, per epoch,
//! the highest sequence up to which it holds every event; the agent deletes only what was
//! acknowledged. An event the agent had to drop (its journal was full) travels as a tombstone
//! (`dropped: true`, no content) so the sequence stays contiguous and the loss is counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Severities, least severe first.
pub const SEVERITIES: &[&str] = &["debug", "info", "warning", "error", "critical"];

/// Standard printer alert fields (Printer MIB `prtAlertTable`, RFC 3805).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrinterAlert {
    /// `prtAlertSeverityLevel`: `other`, `critical`, `warning`, `warningBinaryChangeEvent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity_level: Option<String>,
    /// `prtAlertTrainingLevel`: `untrained`, `trained`, `fieldService`, `management`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_level: Option<String>,
    /// `prtAlertGroup`: `inputTray`, `outputTray`, `marker`, `mediaPath`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<i64>,
    /// `prtAlertCode`: `jam`, `subunitLifeAlmostOver`, `coverOpen`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// One event of a device's error log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorEvent {
    pub seq: u64,
    /// When it happened on the device, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The unit it concerns (empty: the device as a whole).
    #[serde(default)]
    pub slot: String,
    #[serde(default)]
    pub code: String,
    /// `debug`, `info`, `warning`, `error`, `critical`.
    #[serde(default)]
    pub severity: String,
    /// The device's counters when it happened (pages printed, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<PrinterAlert>,
    /// A tombstone: the agent dropped this event (journal full); only its number travels.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
}

/// What caused an upload of the error log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorTrigger {
    /// The agent's own schedule.
    Periodic,
    /// An operator asked (`fleetcare devices request-errors`).
    Request,
    /// The center's periodic request (a schedule it keeps per device or model).
    Scheduled,
    /// An event at or above the severity that goes at once.
    Immediate,
    /// Enough accumulated (count, bytes or weighted severity).
    Accumulation,
    /// A person or the device's own software asked for it on the device
    /// (`fleetcare-agent send-errors`).
    Manual,
}

impl ErrorTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorTrigger::Periodic => "periodic",
            ErrorTrigger::Request => "request",
            ErrorTrigger::Scheduled => "scheduled",
            ErrorTrigger::Immediate => "immediate",
            ErrorTrigger::Accumulation => "accumulation",
            ErrorTrigger::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorTrigger> {
        [
            ErrorTrigger::Periodic,
            ErrorTrigger::Request,
            ErrorTrigger::Scheduled,
            ErrorTrigger::Immediate,
            ErrorTrigger::Accumulation,
            ErrorTrigger::Manual,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// `POST /device/v1/errors`: events of one boot epoch, in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBatch {
    pub device_id: String,
    pub boot_epoch: u64,
    pub trigger: ErrorTrigger,
    pub events: Vec<ErrorEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorAck {
    pub boot_epoch: u64,
    /// Every event of the epoch up to this sequence is stored: delete them.
    pub acked_seq: u64,
    /// Events of this batch stored now, and ones the center already held (retries).
    pub stored: u64,
    pub duplicates: u64,
}

/// An event as the center stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StoredErrorEvent {
    pub boot_epoch: u64,
    pub seq: u64,
    /// RFC 3339, on the device.
    pub at: String,
    pub slot: String,
    pub code: String,
    pub severity: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<PrinterAlert>,
    /// The upload's trigger.
    pub trigger: String,
    /// RFC 3339, at the center.
    pub received_at: String,
}

/// `GET /api/v1/devices/{id}/errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorList {
    pub device_id: String,
    /// Newest first.
    pub events: Vec<StoredErrorEvent>,
    /// Events the device dropped (its journal was full) and reported as such.
    pub dropped: u64,
}

/// A periodic request for error logs that the center keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorSchedule {
    /// `device` or `model`.
    pub scope: String,
    /// The device id or the model.
    pub target: String,
    pub interval_s: u64,
    /// RFC 3339: when the center asks next.
    pub next_at: String,
}

/// `GET /api/v1/error-schedules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorSchedules {
    pub schedules: Vec<ErrorSchedule>,
}

/// `PUT /api/v1/error-schedules`: one device or one model, every `interval_s` seconds;
/// `DELETE` with the same target (and any interval) removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetErrorSchedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub interval_s: u64,
}
