//! The `meters` command: a device's counters and gauges over time.

use fleetcare_agent::{out, outln};
use fleetcare_wire::life::MeterSeries;

use crate::client::segment;
use crate::table;
use crate::{Remote, print_json};

/// An RFC 3339 time, checked enough to go in a query string (`+` escaped).
fn time_param(flag: &str, s: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '.' | '+')),
        "{flag} {s:?}: an RFC 3339 time such as 2026-11-22T08:00:00Z"
    );
    Ok(s.replace('+', "%2B"))
}

/// Show a device's meters, one row per meter and bucket.
pub async fn meters(
    id: String,
    counters: Vec<String>,
    since: Option<String>,
    until: Option<String>,
    every: String,
    remote: &Remote,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(every.as_str(), "hour" | "day"),
        "--every {every:?}: hour or day"
    );
    let mut path = format!("/api/v1/devices/{}/meters?every={every}", segment(&id)?);
    if let Some(s) = &since {
        path.push_str(&format!("&since={}", time_param("--since", s)?));
    }
    if let Some(u) = &until {
        path.push_str(&format!("&until={}", time_param("--until", u)?));
    }
    if !counters.is_empty() {
        for c in &counters {
            segment(c).map_err(|_| anyhow::anyhow!("--counter {c:?}: not a meter name"))?;
        }
        path.push_str(&format!("&meter={}", counters.join(",")));
    }
    let series: MeterSeries = remote.api()?.get(&path).await?;
    if remote.json {
        return print_json(&series);
    }
    let rows: Vec<Vec<String>> = series
        .meters
        .iter()
        .flat_map(|m| {
            m.points.iter().map(|p| {
                vec![
                    m.name.clone(),
                    p.at.clone(),
                    number(p.first),
                    number(p.last),
                    number(p.min),
                    number(p.max),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        outln!(
            "no readings of {} between {} and {}",
            series.device_id,
            series.since,
            series.until
        );
        return Ok(());
    }
    out!(
        "{}",
        table::render(&["METER", "FROM", "FIRST", "LAST", "MIN", "MAX"], &rows)
    );
    if series.truncated {
        outln!("(more readings than one answer holds: ask for a narrower span)");
    }
    Ok(())
}

/// A reading as a person writes it: integers without a fraction.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}
