//! Diagnosis on the wire: rules, troubles, abnormal units, settings, and what the center knows
//! about a device.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | PUT  | `/api/v1/rules` | the rules file (TOML) | [`RulesLoaded`] |
//! | GET  | `/api/v1/rules` | | [`RulesView`] |
//! | GET  | `/api/v1/troubles?state=&device=&rule=&limit=` | | [`TroubleList`] |
//! | GET  | `/api/v1/troubles/{id}` | | [`Trouble`] |
//! | POST | `/api/v1/troubles/{id}/ack` | | [`Trouble`] |
//! | POST | `/api/v1/troubles/{id}/resolve` | | [`Trouble`] |
//! | GET  | `/api/v1/devices/{id}/about` | | [`DeviceAbout`] |
//! | GET  | `/device/v1/about` | | [`DeviceAbout`] (the calling device) |
//! | GET  | `/device/v1/settings` | | [`DeviceSettings`] |

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::compat::{CompatReport, Job};

/// Trouble severities, least first.
pub const TROUBLE_SEVERITIES: &[&str] = &["info", "minor", "major", "critical"];
/// Trouble states: `open` → `acknowledged` → `resolved` (also straight from `open`); `fixed`
/// when its fix job succeeded (back to `open` if a matching event follows, else `resolved`).
pub const TROUBLE_STATES: &[&str] = &["open", "acknowledged", "fixed", "resolved"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RulesLoaded {
    pub revision: u64,
    pub rules: u32,
    pub abnormal: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RuleSummary {
    pub id: String,
    pub title: String,
    pub severity: String,
    /// The condition in words.
    pub condition: String,
    /// The known fix in words, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AbnormalRuleSummary {
    pub id: String,
    pub title: String,
    pub unit_kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RulesView {
    /// Absent: no rules loaded.
    pub revision: Option<u64>,
    pub loaded_at: Option<String>,
    pub loaded_by: Option<String>,
    pub rules: Vec<RuleSummary>,
    pub abnormal: Vec<AbnormalRuleSummary>,
}

/// An event a trouble was judged from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Evidence {
    pub boot_epoch: u64,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Trouble {
    pub id: u64,
    pub device_id: String,
    pub rule_id: String,
    pub severity: String,
    pub title: String,
    /// The recommended action.
    pub action: String,
    pub state: String,
    /// For fleet-wide rules: what the affected devices share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The events that opened it.
    pub evidence: Vec<Evidence>,
    /// Matching events since it opened, those included.
    pub occurrences: u64,
    pub opened_at: String,
    pub last_event_at: String,
    /// When it resolves itself unless another matching event arrives; absent for a trouble
    /// that only the device's reports resolve (a supply running out, a part near its end of
    /// life).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolves_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// The known fix, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// What the center did about the fix ("job 12 created, awaiting approval", …), as it
    /// was said then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_outcome: Option<String>,
    /// The job the center made to fix it, with its state now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_job: Option<JobRef>,
    /// When its fix job succeeded (the trouble is `fixed`: it resolves at `resolves_at`
    /// unless a matching event follows, which opens it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_at: Option<String>,
}

/// A job named elsewhere, with its state now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobRef {
    pub id: u64,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TroubleList {
    pub troubles: Vec<Trouble>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AbnormalUnit {
    pub slot: String,
    pub rule_id: String,
    pub reason: String,
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceSetting {
    pub name: String,
    pub value: String,
    pub set_by: String,
    pub set_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceSettings {
    pub settings: Vec<DeviceSetting>,
    /// The units the center has taken out of service: the device keeps exactly these out
    /// (and puts back any other it had out). Absent from a center that does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units_out_of_service: Option<Vec<crate::compat::UnitService>>,
}

/// The device's error rate against its model's fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorRate {
    /// Over the last this many days (device time of the events).
    pub days: u32,
    /// This device's events per day.
    pub device_per_day: f64,
    /// Events per device and day over every device of the model.
    pub model_per_device_per_day: f64,
    pub model_devices: u64,
    /// `device_per_day / model_per_device_per_day` (absent when the fleet logged nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

/// What the center knows about a device: compatibility, troubles, recommended actions,
/// abnormal units, settings, recent jobs, and its error rate against its model's fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceAbout {
    pub device_id: String,
    pub model: String,
    pub compat: CompatReport,
    /// Live troubles (open or acknowledged), most severe first.
    pub troubles: Vec<Trouble>,
    /// What to do, most important first: troubles' actions, then compatibility advice.
    pub recommended_actions: Vec<String>,
    pub abnormal_units: Vec<AbnormalUnit>,
    /// What a rollout with the default requirements would decide now: `false` while a live
    /// trouble is major or critical, a unit is abnormal, another job is open, the device
    /// cannot install, its site's window is closed, or it has not been seen for an hour.
    pub rollout_eligible: bool,
    /// Why a rollout would pass the device by now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_ineligible: Option<String>,
    pub settings: Vec<DeviceSetting>,
    /// The newest jobs, over or not.
    pub recent_jobs: Vec<Job>,
    pub error_rate: ErrorRate,
    /// Supplies as the center holds them (the newest report's), with their levels and when
    /// each runs out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplies: Vec<crate::life::SupplyStatus>,
    /// The meters (counters and gauges) the center holds, from the newest report.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meters: std::collections::BTreeMap<String, f64>,
}
