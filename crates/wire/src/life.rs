//! Operating life as the operator API shows it: a device's meters (counters and gauges) over
//! time, bucketed by hour or day.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/api/v1/devices/{id}/meters?meter=&since=&until=&every=` | | [`MeterSeries`] |

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
