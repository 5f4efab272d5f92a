//! Compatibility, jobs and notifications as the operator API and the device see them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /api/v1/catalog`: a catalog revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogInfo {
    pub revision: u64,
    /// RFC 3339.
    pub loaded_at: String,
    pub loaded_by: String,
    /// SHA-256 of the source, hex.
    pub digest: String,
    pub stats: CatalogStats,
    /// The TOML source, when asked for (`?source=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogStats {
    pub device_models: u64,
    pub unit_models: u64,
    pub products: u64,
    pub releases: u64,
    /// Constraints judgement evaluates (acceptances, incompatibilities, targets, requirements,
    /// conflicts).
    pub rules: u64,
}

/// `POST /api/v1/catalog` (the body is the catalog's TOML): the new revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogLoaded {
    pub revision: u64,
    pub stats: CatalogStats,
    /// Devices the fleet re-judgement will go through.
    pub devices: u64,
}

/// A unit as a finding names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingUnit {
    pub slot: String,
    pub kind: String,
    pub model: String,
    pub hw_revision: String,
}

/// Software as a finding names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingSoftware {
    pub slot: String,
    pub product: String,
    pub maker: String,
    pub version: String,
}

/// What a finding involves (stored with it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingSubject {
    pub units: Vec<FindingUnit>,
    pub software: Vec<FindingSoftware>,
}

/// Every kind of [`Finding`].
pub const FINDING_KINDS: &[&str] = &[
    "device_unit",
    "unit_unit",
    "unit_software",
    "software_software",
    "unknown_device_model",
    "unknown_unit_model",
    "unknown_software",
];

/// A finding kind in words, for people ("software needs other software"); the kind itself
/// when it is not one of [`FINDING_KINDS`].
pub fn finding_words(kind: &str) -> &str {
    match kind {
        "device_unit" => "a unit does not fit the device",
        "unit_unit" => "units do not work together",
        "unit_software" => "software not made for its unit",
        "software_software" => "software needs other software",
        "unknown_device_model" => "device model not in the catalog",
        "unknown_unit_model" => "unit model not in the catalog",
        "unknown_software" => "software not in the catalog",
        other => other,
    }
}

/// A compatibility violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    /// `device_unit`, `unit_unit`, `unit_software`, `software_software`,
    /// `unknown_device_model`, `unknown_unit_model`, `unknown_software`.
    pub kind: String,
    /// Stable while the finding holds.
    pub key: String,
    /// The catalog rule, as the catalog states it.
    pub rule: String,
    pub units: Vec<FindingUnit>,
    pub software: Vec<FindingSoftware>,
    /// In plain words.
    pub explanation: String,
    /// The catalog revision that produced it.
    pub catalog_revision: u64,
    /// RFC 3339, when the finding was first seen.
    pub opened_at: String,
}

/// One software change of a plan or a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SoftwareStep {
    pub slot: String,
    pub product: String,
    pub maker: String,
    /// The active version now (absent on a replacement unit).
    pub from: Option<String>,
    pub to: String,
    /// `switch` (activate the copy in the unit's inactive slot, no download) or `install`.
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    /// `minimal` or `latest`.
    pub policy: String,
    /// Empty: nothing to change.
    pub steps: Vec<SoftwareStep>,
    /// Why no job is made for these steps: the device cannot install software (a printer
    /// behind the LAN proxy, an agent without a root of trust).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
}

/// One hardware change of a recommended configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HardwareStep {
    pub slot: String,
    /// `replace` or `out_of_service`.
    pub action: String,
    pub from_model: String,
    pub from_hw_revision: String,
    /// The replacement (for `replace`).
    pub to_model: Option<String>,
    pub to_hw_revision: Option<String>,
}

/// A configuration that would make the device compatible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Recommendation {
    /// 1 is the best.
    pub rank: u32,
    pub hardware: Vec<HardwareStep>,
    /// The software plan once the hardware is changed.
    pub software: Vec<SoftwareStep>,
    /// In words.
    pub summary: String,
}

/// `compatible`, `software` (a software plan fixes it), `hardware` (only hardware can),
/// `unknown` (the catalog does not know something), `no_catalog`.
pub type CompatState = String;

/// `GET /api/v1/devices/{id}/compat`, `GET /device/v1/compat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompatReport {
    pub device_id: String,
    pub model: String,
    /// The catalog revision judged against (absent: the tenant has no catalog).
    pub catalog_revision: Option<u64>,
    pub state: CompatState,
    pub findings: Vec<Finding>,
    /// The software plan, when software can fix the findings.
    pub plan: Option<Plan>,
    /// Why no software plan exists, in words (the solver's derivation).
    pub no_plan: Option<String>,
    /// The same in one line (the releases missing for the device's units, or its conclusion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_plan_summary: Option<String>,
    /// Ranked configurations, when only hardware can fix it.
    pub advice: Vec<Recommendation>,
    /// Jobs for this device that are not over.
    pub jobs: Vec<Job>,
    /// Open notifications.
    pub notifications: Vec<Notification>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelCompat {
    pub model: String,
    pub devices: u64,
    pub by_state: BTreeMap<String, u64>,
    /// Devices with at least one open finding of the kind.
    pub by_kind: BTreeMap<String, u64>,
}

/// `GET /api/v1/compat/fleet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetCompat {
    pub catalog_revision: Option<u64>,
    pub devices: u64,
    pub by_state: BTreeMap<String, u64>,
    pub by_kind: BTreeMap<String, u64>,
    pub by_model: Vec<ModelCompat>,
}

/// A tenant's compatibility policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CompatPolicy {
    /// `minimal` (keep installed versions where possible) or `latest`.
    pub plan: String,
    /// `automatic` (jobs run at once), `approval` (jobs wait for an approver) or `off`.
    pub fix: String,
    /// May an optional incompatible unit be taken out of service?
    pub out_of_service: bool,
    /// Jobs for devices that stay offline expire after this many seconds.
    pub job_ttl_s: u64,
}

/// A notification for a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: u64,
    /// `compat_advice`, `unit_out_of_service`, …
    pub kind: String,
    pub title: String,
    /// In words, for a service engineer at the device.
    pub summary: String,
    #[serde(default)]
    pub recommendations: Vec<Recommendation>,
    /// RFC 3339.
    pub created_at: String,
    pub delivered_at: Option<String>,
    /// For a unit taken out of service: the slot of the unit of the same kind that takes over
    /// its work, if the device has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_to: Option<String>,
}

/// `GET /device/v1/notifications`: the device's open notifications, newest first (the agent
/// fetches them whenever it connects, so what was said while it was away reaches it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceNotifications {
    pub notifications: Vec<Notification>,
}

/// A unit the center took out of service (the device keeps working without it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnitService {
    pub slot: String,
    /// The unit's serial when it was taken out: another serial in the slot is another unit.
    pub serial: String,
    pub reason: String,
    /// `policy` (the compatibility policy took it out) or `operator`.
    pub origin: String,
    pub taken_by: String,
    /// The slot of the unit of the same kind that takes over its work, if the device has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_to: Option<String>,
    /// RFC 3339.
    pub taken_at: String,
}

/// `POST /api/v1/devices/{id}/units/{slot}/disable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableUnit {
    /// Why, for the people at the device (1 to 500 characters).
    pub reason: String,
}

/// What taking a unit out of service or putting it back did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnitServiceChanged {
    pub device_id: String,
    pub slot: String,
    pub serial: String,
    pub in_service: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_to: Option<String>,
    /// `push`, `poll` or `mqtt` when the connected device was told now; absent when it is
    /// offline (it is told when it connects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told_via: Option<String>,
    /// The units of the device out of service now.
    pub out_of_service: Vec<UnitService>,
}

/// A job: an instruction to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    pub id: u64,
    pub device_id: String,
    /// `compat` (a compatibility plan), `operator`, `rollout`, `fix`.
    pub origin: String,
    /// `awaiting_approval`, `queued`, `downloading`, `downloaded`, `verifying`, `installing`,
    /// `activating`, `health_check`; over: `succeeded`, `failed`, `rolled_back`.
    pub state: String,
    /// Why it failed or was rolled back: `integrity`, `signature`, `rollback`, `expired`,
    /// `incompatible_hardware`, `no_space`, `download`, `install`, `health_check`, `timeout`,
    /// `cancelled`.
    pub reason: Option<String>,
    pub detail: Option<String>,
    /// All switch or install together, or none.
    pub steps: Vec<SoftwareStep>,
    pub catalog_revision: Option<u64>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    /// While downloading: bytes the device holds, of how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Every state the job went through after its creation, oldest first (in `jobs show`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<JobEvent>,
    /// Why a queued job is not offered to its device yet: a release it installs is not
    /// published, or not every file of it is on the center. It waits (until it expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// A state a job went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    /// RFC 3339.
    pub at: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<u64>,
}
