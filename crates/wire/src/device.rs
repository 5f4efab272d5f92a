//! The device protocol: agent ↔ center, under `/device/v1/`.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | POST | `/device/v1/enroll` | [`EnrollRequest`] | [`EnrollResponse`] |
//! | POST | `/device/v1/reports` | [`StructureReport`] | [`ReportAck`] |
//! | GET  | `/device/v1/push` | WebSocket upgrade; text frames carry [`Command`] | |
//! | GET  | `/device/v1/poll?wait_s=N` | long-poll fallback | [`PollResponse`] |
//! | GET  | `/device/v1/self` | what the center knows about this device | [`crate::operator::DeviceView`] |
//! | GET  | `/device/v1/compat` | its compatibility: findings, plan, advice, jobs, notifications | [`crate::compat::CompatReport`] |
//! | POST | `/device/v1/credential` | rotate: a new credential for this device | [`CredentialResponse`] |
//!
//! Errors come as [`crate::ErrorBody`] with their status: 400 malformed or invalid body (every
//! problem named), 401 unknown or revoked credential or enrollment key, 403 a body naming
//! another device, 409 `already_enrolled`, 413 body over the limit.
//!
//! Every request but `enroll` carries `Authorization: Bearer <device_token>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Trigger, Unit};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollRequest {
    pub enrollment_key: String,
    pub device_id: String,
    pub model: String,
    /// The device's current credential, when it enrolls again to rotate it. An enrolled
    /// device id is admitted again only with it, or after an operator allowed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_credential: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollResponse {
    /// The device's own credential. The center keeps only its hash; keep it secret.
    pub device_token: String,
    /// Reporting interval set by the center for this device, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_interval_s: Option<u64>,
    /// The number of the device's tenant: MQTT topics name the device by it
    /// (`fleetcare/<tenant>/<device>/…`, see [`crate::mqtt`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<i64>,
}

/// A rotated credential. The one the device presented stays valid until the device first uses
/// this one (or for [`CredentialResponse::previous_valid_s`] at most): save it durably, then
/// use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CredentialResponse {
    pub device_token: String,
    pub previous_valid_s: u64,
}

/// A full snapshot of a device's structure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StructureReport {
    pub device_id: String,
    pub model: String,
    /// Strictly increasing per device credential; makes the upload idempotent.
    pub seq: u64,
    pub trigger: Trigger,
    /// Device clock when the snapshot was taken, milliseconds since the Unix epoch.
    pub observed_at_ms: i64,
    pub units: Vec<Unit>,
    /// Operating info: counters and gauges by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operating: BTreeMap<String, f64>,
    /// Supplies (toner, drums, …) with their levels; a supply's serial is part of the
    /// structure (a new one is a replacement), its level part of the operating history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplies: Vec<crate::Supply>,
    /// Why this device cannot install software (a printer behind a LAN proxy, an agent without
    /// a root of trust), in words; absent when it can. The center then makes no install job
    /// for it, and its plan and rollouts say why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_blocked: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportAck {
    /// The sequence number acknowledged (durably stored, now or earlier).
    pub seq: u64,
    /// `true` when this report had been stored before (a retry).
    pub duplicate: bool,
    /// Structure changes recorded from this report.
    pub changes: u32,
    /// Reporting interval set by the center for this device, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_interval_s: Option<u64>,
}

/// Center → device, over the push channel or a long-poll answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Send a structure report now, with trigger `request`.
    RequestReport,
    /// Report periodically at this interval from now on (`null`: back to the agent's own).
    SetReportInterval { seconds: Option<u64> },
    /// Something for the people at the device (advice on incompatible hardware, …).
    Notify {
        notification: crate::compat::Notification,
    },
    /// Take a unit out of service (or back in): the device keeps working without it.
    SetUnitService {
        slot: String,
        serial: String,
        in_service: bool,
        reason: String,
        /// The slot of the unit of the same kind that takes over its work, if the device has
        /// one (the agent hands the switch to that unit's driver).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        switched_to: Option<String>,
    },
    /// Jobs are waiting for this device: fetch them from `/device/v1/jobs`.
    JobsAvailable,
    /// Send the error log now, with trigger `request` (an operator asked) or `scheduled` (the
    /// center's periodic request).
    RequestErrors {
        #[serde(default)]
        scheduled: bool,
    },
    /// The center changed the device's settings: fetch them (`GET /device/v1/settings`).
    SettingsChanged,
    /// Get a new credential (`POST /device/v1/credential`), save it, use it from now on.
    RotateCredential,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PollResponse {
    pub commands: Vec<Command>,
}
