//! Software delivery on the wire: key lists, releases, artifacts, and jobs as a device sees
//! them.
//!
//! Signed documents (key lists, release manifests) travel as DSSE envelopes whose exact
//! shape is `fleetcare-trust`'s: the signature covers the payload bytes, so the wire carries an
//! envelope as an opaque JSON object and never re-serializes what was signed.
//!
//! Device endpoints:
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET  | `/device/v1/jobs` | | [`DeviceJobs`] |
//! | POST | `/device/v1/jobs/{id}/status` | [`JobStatus`] | [`JobStatusAck`] |
//! | GET  | `/device/v1/artifacts/{sha256}` | `Range`, `If-Range`, `If-None-Match` | the bytes; `ETag` is the hash |
//!
//! Operator endpoints: `POST /api/v1/keys` (an envelope), `GET /api/v1/keys`,
//! `POST /api/v1/releases` (an envelope), `GET /api/v1/releases`,
//! `PUT /api/v1/artifacts/{sha256}` (the bytes), `POST /api/v1/jobs` ([`NewJobRequest`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::compat::SoftwareStep;

/// A signed document: `{payload, payloadType, signatures}`.
pub type Envelope = serde_json::Value;

/// One of a device's open jobs, with what it needs to verify it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceJob {
    pub id: u64,
    /// The state the center last recorded.
    pub state: String,
    /// All switch or install together, or none.
    pub steps: Vec<SoftwareStep>,
    /// The signed release of every `install` step, in step order.
    #[schema(value_type = Vec<Object>)]
    pub releases: Vec<Envelope>,
    /// RFC 3339; a job not started by then is over.
    pub expires_at: String,
}

/// `GET /device/v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceJobs {
    pub jobs: Vec<DeviceJob>,
    /// The newest release key list (signed by root keys), when one is published.
    #[schema(value_type = Option<Object>)]
    pub key_list: Option<Envelope>,
}

/// `POST /device/v1/jobs/{id}/status`: where the job is on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobStatus {
    /// `downloading`, `downloaded`, `verifying`, `installing`, `activating`, `health_check`,
    /// `succeeded`, `failed`, `rolled_back`; or `busy` (the device cannot take the job now and
    /// will later: the job stays as it is).
    pub state: String,
    /// The reason code of `failed` and `rolled_back`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Bytes downloaded so far and in all (while downloading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobStatusAck {
    /// The job's state at the center after this status (a job already over stays over).
    pub state: String,
}

/// Job states in the order a job goes through them.
pub const JOB_STATES: &[&str] = &[
    "awaiting_approval",
    "queued",
    "downloading",
    "downloaded",
    "verifying",
    "installing",
    "activating",
    "health_check",
    "succeeded",
    "failed",
    "rolled_back",
];

/// The uniform reason codes of `failed` and `rolled_back`.
pub const REASONS: &[&str] = &[
    "integrity",
    "signature",
    "rollback",
    "expired",
    "incompatible_hardware",
    "no_space",
    "download",
    "install",
    "health_check",
    "timeout",
    "cancelled",
    "rejected",
];

/// `POST /api/v1/jobs`: an operator's job for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewJobRequest {
    pub device_id: String,
    /// What to change; `from` is filled in by the center.
    pub steps: Vec<JobStepRequest>,
    /// Seconds until a job that has not started expires (default: the tenant policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobStepRequest {
    pub slot: String,
    pub product: String,
    pub version: String,
    /// `install` (download the release) or `switch` (activate the copy in the inactive slot).
    pub action: String,
}

/// A published release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub product: String,
    pub maker: String,
    pub version: String,
    pub counter: u64,
    pub artifacts: Vec<ReleaseArtifact>,
    /// Every artifact is held by the center: devices can be given it.
    pub complete: bool,
    pub published_by: String,
    pub published_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseArtifact {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// The center holds the bytes.
    pub stored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseList {
    pub releases: Vec<Release>,
}

/// `PUT /api/v1/artifacts/{sha256}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactStored {
    pub sha256: String,
    pub size: u64,
    /// `false`: the center already held it.
    pub created: bool,
}

/// `GET /api/v1/keys`, `POST /api/v1/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyListView {
    pub version: u64,
    pub expires: String,
    pub threshold: u64,
    pub keyids: Vec<String>,
    #[schema(value_type = Object)]
    pub envelope: Envelope,
    pub published_by: String,
    pub published_at: String,
}
