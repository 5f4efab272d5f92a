//! Eclipse hawkBit's Direct Device Integration API (DDI v1) as Fleetcare speaks it, under
//! `/{tenant}/controller/v1/{controllerId}` (see ARCHITECTURE.md, "Devices with hawkBit
//! clients"). Field names are hawkBit's. Bodies from clients are read leniently (unknown
//! fields ignored, as hawkBit does); answers carry what hawkBit's do.
//!
//! | method | path (after the controller's base) | body | answer |
//! |---|---|---|---|
//! | GET  | `` | | [`Poll`] (`ETag`; `If-None-Match` gives 304) |
//! | GET  | `/deploymentBase/{actionId}` | | [`Deployment`] |
//! | POST | `/deploymentBase/{actionId}/feedback` | [`Feedback`] | 200 |
//! | GET  | `/cancelAction/{actionId}` | | [`CancelAction`] |
//! | POST | `/cancelAction/{actionId}/feedback` | [`Feedback`] | 200 |
//! | PUT  | `/configData` | [`ConfigData`] | 200 |
//! | GET  | `/installedBase/{actionId}` | | [`Deployment`] |
//! | GET  | `/softwaremodules/{moduleId}/artifacts/{fileName}` | `Range`, `If-Range` | the bytes |
//!
//! Every request carries `Authorization: TargetToken <token>` or `GatewayToken <token>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A link: `{"href": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub href: String,
}

/// The answer to a poll: how long to sleep, and what to fetch next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    pub config: PollConfig,
    /// `deploymentBase`, `cancelAction`, `configData`, `installedBase`, as they apply.
    #[serde(rename = "_links", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, Link>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollConfig {
    pub polling: Polling,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polling {
    /// `HH:MM:SS`.
    pub sleep: String,
}

/// An action: what to download and install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The action's id (a Fleetcare job id), as a string like hawkBit's.
    pub id: String,
    pub deployment: DeploymentBody,
    #[serde(
        rename = "actionHistory",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub action_history: Option<ActionHistory>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentBody {
    /// `forced`, `attempt` or `skip`.
    pub download: String,
    /// `forced`, `attempt` or `skip` (`skip`: outside the maintenance window).
    pub update: String,
    /// `available` or `unavailable`, when the device's site has maintenance windows.
    #[serde(
        rename = "maintenanceWindow",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub maintenance_window: Option<String>,
    pub chunks: Vec<Chunk>,
}

/// One unit's software: `part` is the unit's slot, `name` the product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub part: String,
    pub version: String,
    pub name: String,
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub filename: String,
    pub hashes: Hashes,
    pub size: u64,
    /// `download` (HTTPS) or `download-http`, and `md5sum` / `md5sum-http`.
    #[serde(rename = "_links")]
    pub links: BTreeMap<String, Link>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    pub sha1: String,
    pub md5: String,
    pub sha256: String,
}

/// The action's newest events, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionHistory {
    pub status: String,
    pub messages: Vec<String>,
}

/// A cancellation to acknowledge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelAction {
    pub id: String,
    #[serde(rename = "cancelAction")]
    pub cancel_action: StopId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopId {
    #[serde(rename = "stopId")]
    pub stop_id: String,
}

/// Where an action is on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    pub status: FeedbackStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackStatus {
    /// `proceeding`, `closed`, `canceled`, `rejected`, `scheduled`, `resumed`, `download`,
    /// `downloaded`.
    pub execution: String,
    pub result: FeedbackResult,
    #[serde(default)]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackResult {
    /// `success`, `failure` or `none`.
    pub finished: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub cnt: u64,
    pub of: u64,
}

/// The device's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigData {
    /// `merge` (the default), `replace` or `remove`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub data: BTreeMap<String, String>,
}

/// `POST /api/v1/ddi/targets`: make a device a DDI target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    pub device_id: String,
    pub model: String,
}

/// A new DDI target and its token (shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetCreated {
    pub device_id: String,
    /// The tenant's name: the `{tenant}` of the DDI paths.
    pub tenant: String,
    /// `Authorization: TargetToken <target_token>`; the center keeps only its hash.
    pub target_token: String,
}

/// A DDI target as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetView {
    pub device_id: String,
    pub model: String,
    /// Its `configData` attributes.
    pub attributes: BTreeMap<String, String>,
    /// Structure reports made from them.
    pub reports: u64,
}

/// `POST /api/v1/ddi/gateway-tokens`: a new gateway token (shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GatewayToken {
    pub tenant: String,
    /// `Authorization: GatewayToken <gateway_token>`: acts as any controllerId of the tenant.
    pub gateway_token: String,
}

/// `DELETE /api/v1/ddi/gateway-tokens`: how many were revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revoked {
    pub revoked: u64,
}
