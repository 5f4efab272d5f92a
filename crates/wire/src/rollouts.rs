//! Rollouts on the wire: software for many devices in waves, with gates, proper-state checks,
//! maintenance windows and approval; sites and device labels they select by.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | POST | `/api/v1/rollouts` | [`CreateRollout`] | [`Rollout`] |
//! | GET  | `/api/v1/rollouts` | | [`RolloutList`] |
//! | GET  | `/api/v1/rollouts/{id}` | | [`Rollout`] (waves and counters) |
//! | GET  | `/api/v1/rollouts/{id}/devices?state=&after=&limit=` | | [`RolloutDevices`] |
//! | POST | `/api/v1/rollouts/{id}/approve` | | [`Rollout`] (the rollout, or its next wave) |
//! | POST | `/api/v1/rollouts/{id}/pause`, `/resume`, `/abort` | | [`Rollout`] |
//! | PUT  | `/api/v1/sites/{name}` | [`Site`] | [`Site`] |
//! | GET  | `/api/v1/sites` | | [`SiteList`] |
//! | PUT  | `/api/v1/devices/{id}/labels` | [`DeviceLabels`] | [`DeviceLabels`] |

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A release to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseRef {
    pub product: String,
    pub version: String,
}

/// When a wave passes, and when the rollout stops itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutGates {
    /// Share of a wave's finished installs that must succeed before the next wave starts.
    pub success_ratio: f64,
    /// The rollout pauses when more than this share of finished installs failed (once
    /// `min_finished` have finished)…
    pub failure_ratio: Option<f64>,
    pub min_finished: u64,
    /// …or when this many failed.
    pub failure_count: Option<u64>,
    /// Installs running at the same time.
    pub max_concurrent: u64,
    /// `automatic`, or `approval` (each next wave waits for an operator other than the
    /// creator).
    pub advance: String,
}

impl Default for RolloutGates {
    fn default() -> RolloutGates {
        RolloutGates {
            success_ratio: 0.95,
            failure_ratio: Some(0.05),
            min_finished: 10,
            failure_count: None,
            max_concurrent: 100,
            advance: "automatic".into(),
        }
    }
}

/// The proper state a device must be in before it installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutRequirements {
    /// Connected now, or reported within this many seconds.
    pub online_within_s: u64,
    /// A live trouble at or above this severity keeps a device out (`none`: troubles do not).
    pub trouble_severity: String,
}

impl Default for RolloutRequirements {
    fn default() -> RolloutRequirements {
        RolloutRequirements {
            online_within_s: 3600,
            trouble_severity: "major".into(),
        }
    }
}

/// `POST /api/v1/rollouts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    pub name: String,
    /// The release to deliver; without it, every selected device is brought to its own
    /// compatibility plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRef>,
    /// Which devices (the filter language; empty: all).
    #[serde(default)]
    pub filter: String,
    /// A canary (a count or a share) and cumulative shares: `"10,25%,50%,100%"`.
    pub waves: String,
    #[serde(default)]
    pub gates: RolloutGates,
    #[serde(default)]
    pub requirements: RolloutRequirements,
    /// The rollout starts only once someone other than its creator approved it.
    #[serde(default)]
    pub require_approval: bool,
    /// What an abort does to installs already under way: `finish`, or `revert` (they finish,
    /// then the device switches back to the version it had).
    #[serde(default = "finish")]
    pub on_abort: String,
    /// Places devices in waves (a random one when absent): the same seed, the same waves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Accept a release that is not published yet (or whose files are not all on the
    /// center): its jobs wait for it, and say so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unpublished: bool,
}

fn finish() -> String {
    "finish".into()
}

/// A wave and its counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Wave {
    /// From 1.
    pub wave: u32,
    /// The cumulative share of the selection up to and including this wave.
    pub up_to: f64,
    pub devices: u64,
    pub pending: u64,
    pub ineligible: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub skipped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    pub id: u64,
    pub name: String,
    /// `creating` (its devices are being stored; seconds), `awaiting_approval`, `running`,
    /// `paused`, `aborted`, `done` (every wave done and no device pending or running;
    /// `state_reason` says how it ended).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub spec: CreateRollout,
    /// The newest wave started, from 1.
    pub current_wave: u32,
    pub created_by: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    pub updated_at: String,
    /// The wave (from 1) that waits for an operator's approval (not its creator's) before it
    /// starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_wave: Option<u32>,
    pub waves: Vec<Wave>,
    /// Every wave added up.
    pub total: Wave,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolloutList {
    pub rollouts: Vec<Rollout>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutDevice {
    pub device_id: String,
    pub wave: u32,
    /// `pending`, `ineligible`, `running`, `succeeded`, `failed`, `skipped`, `cancelled`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<u64>,
    pub updated_at: String,
    /// Why its job, queued, is not offered to the device yet (see `Job::waiting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutDevices {
    pub devices: Vec<RolloutDevice>,
}

/// A site: its time zone and the maintenance windows in which installs may start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    #[serde(default)]
    pub name: String,
    /// IANA name: `Europe/Berlin`.
    pub timezone: String,
    /// `"mon-fri 22:00-06:00"`, `"sat,sun 00:00-24:00"`, `"daily 01:00-05:00"`; none: always.
    #[serde(default)]
    pub windows: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SiteList {
    pub sites: Vec<Site>,
}

/// What an operator says of a device: its site and tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceLabels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}
