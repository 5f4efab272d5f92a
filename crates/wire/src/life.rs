//! Operating life as the operator API shows it: a device's meters (counters and gauges) over
//! time, bucketed by hour or day.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/api/v1/devices/{id}/meters?meter=&since=&until=&every=` | | [`MeterSeries`] |
//! | GET | `/api/v1/devices/{id}/supplies` | | [`SupplyList`] |
//! | GET | `/api/v1/supplies/running-out` | | [`RunningOut`] |
//! | GET | `/api/v1/meter-reads?period=&model=&after=&limit=` | | [`MeterReads`] |
//! | GET | `/api/v1/meter-read-schedule` | | [`MeterReadSchedule`] |
//! | PUT | `/api/v1/meter-read-schedule` | [`MeterReadSchedule`] | [`MeterReadSchedule`] |

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
    /// When this cartridge went in (its serial first seen; RFC 3339), and the pages the
    /// device printed since (`pages_total` then and now), as the center's history tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_since_installed: Option<f64>,
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

/// A page of a period's meter reads: every device (by id) with its billing meters at the
/// period's two edges (the 1st at 00:00 in the device's site's time zone, UTC without one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeterReads {
    /// `YYYY-MM`.
    pub period: String,
    pub devices: Vec<DeviceMeterRead>,
    /// The `after` that fetches the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One device's meter read. `meters` is empty when it has no reading with a billing meter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeviceMeterRead {
    pub device_id: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The period's start and end for this device (RFC 3339).
    pub since: String,
    pub until: String,
    pub meters: Vec<MeterRead>,
}

/// A billing meter (total, black, color, print, copy, scan, duplex, or one a profile names)
/// at the period's start and end, and its usage in between.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeterRead {
    pub meter: String,
    pub start: EdgeRead,
    pub end: EdgeRead,
    /// Pages (or scans) in the period: never negative.
    pub usage: f64,
    /// The counter went backwards in the period (a controller replaced): the usage is the
    /// sum of the runs before and after.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

/// A meter's value at an edge of the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EdgeRead {
    pub value: f64,
    /// When it was read (RFC 3339); the edge itself when interpolated.
    pub at: String,
    /// `read` (a reading within 15 minutes of the edge), `interpolated` (between the
    /// readings either side) or `nearest` (the one reading there is on one side).
    pub how: String,
    /// Not a reading at the edge (`how` is not `read`).
    pub estimated: bool,
}

/// Whether the center asks each site's connected devices for a report when a month starts in
/// the site's time zone, so meter reads are exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterReadSchedule {
    pub enabled: bool,
}

/// The fleet's supplies running out (those with a live low or empty trouble), soonest empty
/// first (without a forecast: by level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunningOut {
    pub supplies: Vec<FleetSupply>,
    /// Parts near or past their expected life (a live `part-end-of-life` trouble), past it
    /// first.
    #[serde(default)]
    pub parts: Vec<FleetPart>,
}

/// A part near its end of life, as its trouble says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetPart {
    pub device_id: String,
    pub slot: String,
    pub trouble_id: u64,
    pub severity: String,
    /// What and how much of its life is used ("… 285000 of 300000 pages since it went in").
    pub title: String,
    /// What to order and do.
    pub action: String,
}

/// A supply of a device, with its forecast and the trouble it raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetSupply {
    pub device_id: String,
    pub model: String,
    pub trouble_id: u64,
    pub status: SupplyStatus,
}

/// One CSV field, quoted when it must be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The CSV header of a meter read, and a device's rows (one per meter; one with empty meter
/// columns for a device without a reading).
pub const READ_CSV_HEADER: &str = "device_id,model,site,meter,start_at,start_value,start_how,\
    end_at,end_value,end_how,usage,estimated,reset";

pub fn read_csv_rows(d: &DeviceMeterRead) -> Vec<String> {
    let lead = [
        csv_field(&d.device_id),
        csv_field(&d.model),
        csv_field(d.site.as_deref().unwrap_or("")),
    ]
    .join(",");
    if d.meters.is_empty() {
        return vec![format!("{lead},,,,,,,,,,")];
    }
    d.meters
        .iter()
        .map(|m| {
            format!(
                "{lead},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&m.meter),
                m.start.at,
                csv_number(m.start.value),
                m.start.how,
                m.end.at,
                csv_number(m.end.value),
                m.end.how,
                csv_number(m.usage),
                m.start.estimated || m.end.estimated,
                m.reset
            )
        })
        .collect()
}

/// A number as a person writes it: integers without a fraction.
fn csv_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_read_as_csv_quotes_what_it_must() {
        let edge = |v: f64, how: &str| EdgeRead {
            value: v,
            at: "2026-11-01T00:00:00.000Z".into(),
            how: how.into(),
            estimated: how != "read",
        };
        let d = DeviceMeterRead {
            device_id: "D-1".into(),
            model: "acme, \"9000\"".into(),
            site: None,
            since: String::new(),
            until: String::new(),
            meters: vec![MeterRead {
                meter: "total".into(),
                start: edge(100.0, "read"),
                end: edge(250.5, "interpolated"),
                usage: 150.5,
                reset: false,
            }],
        };
        assert_eq!(
            read_csv_rows(&d),
            [
                "D-1,\"acme, \"\"9000\"\"\",,total,2026-11-01T00:00:00.000Z,100,read,2026-11-01T00:00:00.000Z,250.5,interpolated,150.5,true,false"
            ]
        );
        let empty = DeviceMeterRead {
            meters: vec![],
            model: "acme-9000".into(),
            ..d
        };
        assert_eq!(
            read_csv_rows(&empty)[0].matches(',').count(),
            READ_CSV_HEADER.matches(',').count()
        );
    }
}
