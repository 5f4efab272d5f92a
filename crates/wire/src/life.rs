//! Operating life as the operator API shows it: a device's meters (counters and gauges) over
//! time, bucketed by hour or day.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/api/v1/devices/{id}/meters?meter=&since=&until=&every=` | | [`MeterSeries`] |
//! | GET | `/api/v1/devices/{id}/supplies` | | [`SupplyList`] |

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A device's meters over `[since, until)`, each as buckets of `every`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeterSeries {
    pub device_id: String,
    /// `hour` or `day` (UTC).
    pub every: String,
    pub since: String,
    pub until: String,
    /// By name.
    pub meters: Vec<Meter>,
    /// More raw points fell in the span than one read returns: the newest are missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One meter's buckets, oldest first (a bucket without a reading is absent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Meter {
    pub name: String,
    pub points: Vec<MeterPoint>,
}

/// A device's supplies as its newest report says, each with the center's forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SupplyList {
    pub device_id: String,
    pub supplies: Vec<SupplyStatus>,
}

/// A supply and when it runs out (a receptacle: when it is full), from its consumption since
/// it was put in (a robust fit over the readings of the last 30 days).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SupplyStatus {
    pub supply: crate::Supply,
    /// Points of level used (a receptacle: filled) per day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<f64>,
    /// Days from its newest reading until it is empty (a receptacle: full); absent when the
    /// readings do not tell (too few, or the level does not move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<f64>,
    /// When that is (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_at: Option<String>,
}

/// The readings of one bucket: the first and last, the lowest and highest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeterPoint {
    /// The bucket's start (RFC 3339, UTC).
    pub at: String,
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
}
