//! The `meters` command: a device's counters and gauges over time, and a month's meter reads
//! for billing.

use fleetcare_agent::{out, outln};
use fleetcare_wire::life::{DeviceMeterRead, MeterReadSchedule, MeterReads, MeterSeries};

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

#[derive(clap::Subcommand)]
pub enum MetersCmd {
    /// A month's meter reads for billing: every device's billing meters at the month's start
    /// and end (00:00 on the 1st in its site's time zone), the usage between, and whether a
    /// value was estimated.
    Read {
        /// The month, YYYY-MM.
        #[arg(long)]
        period: String,
        /// Only devices of this model.
        #[arg(long)]
        model: Option<String>,
        /// table, csv or json (--json is json too).
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show the meter-read schedule, or turn it on or off: whether the center asks each
    /// site's connected devices for a report when a month starts.
    Schedule {
        /// on or off; absent: show it.
        state: Option<String>,
    },
}

/// Run a `meters` subcommand.
pub async fn meters_cmd(c: MetersCmd, remote: &Remote) -> anyhow::Result<()> {
    match c {
        MetersCmd::Read {
            period,
            model,
            format,
        } => read(&period, model.as_deref(), &format, remote).await,
        MetersCmd::Schedule { state } => {
            let api = remote.api()?;
            let s: MeterReadSchedule = match state.as_deref() {
                None => api.get("/api/v1/meter-read-schedule").await?,
                Some(on @ ("on" | "off")) => {
                    api.put(
                        "/api/v1/meter-read-schedule",
                        &MeterReadSchedule {
                            enabled: on == "on",
                        },
                    )
                    .await?
                }
                Some(other) => anyhow::bail!("{other:?}: on or off"),
            };
            if remote.json {
                return print_json(&s);
            }
            outln!(
                "meter-read schedule: {}",
                if s.enabled {
                    "on (each site's connected devices are asked for a report at 00:00 on the 1st, site time)"
                } else {
                    "off"
                }
            );
            Ok(())
        }
    }
}

/// Every page of a month's reads, printed as they come.
async fn read(
    period: &str,
    model: Option<&str>,
    format: &str,
    remote: &Remote,
) -> anyhow::Result<()> {
    let format = if remote.json { "json" } else { format };
    anyhow::ensure!(
        matches!(format, "table" | "csv" | "json"),
        "--format {format:?}: table, csv or json"
    );
    anyhow::ensure!(
        period.len() == 7 && period.chars().all(|c| c.is_ascii_digit() || c == '-'),
        "--period {period:?}: a month such as 2026-11"
    );
    let api = remote.api()?;
    let mut after = String::new();
    let mut all: Vec<DeviceMeterRead> = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    if format == "csv" {
        outln!("{}", fleetcare_wire::life::READ_CSV_HEADER);
    }
    // Bounded: each page moves `after` forward; a page without `next` is the last.
    loop {
        let mut path = format!("/api/v1/meter-reads?period={period}&limit=1000");
        if let Some(m) = model {
            path.push_str(&format!("&model={}", segment(m)?));
        }
        if !after.is_empty() {
            path.push_str(&format!("&after={}", segment(&after)?));
        }
        let page: MeterReads = api.get(&path).await?;
        for d in &page.devices {
            match format {
                "csv" => {
                    for r in fleetcare_wire::life::read_csv_rows(d) {
                        outln!("{r}");
                    }
                }
                "table" => rows.extend(table_rows(d)),
                _ => {}
            }
        }
        if format == "json" {
            all.extend(page.devices);
        }
        match page.next {
            Some(n) if n > after => after = n,
            _ => break,
        }
    }
    match format {
        "json" => print_json(&MeterReads {
            period: period.to_owned(),
            devices: all,
            next: None,
        }),
        "table" => {
            if rows.is_empty() {
                outln!("no devices");
            } else {
                out!(
                    "{}",
                    table::render(
                        &["DEVICE", "MODEL", "METER", "START", "END", "USAGE", "NOTE"],
                        &rows
                    )
                );
                outln!("(* estimated: no reading within 15 minutes of the edge)");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn table_rows(d: &DeviceMeterRead) -> Vec<Vec<String>> {
    if d.meters.is_empty() {
        return vec![vec![
            d.device_id.clone(),
            d.model.clone(),
            "-".into(),
            String::new(),
            String::new(),
            String::new(),
            "no reading".into(),
        ]];
    }
    let edge = |e: &fleetcare_wire::life::EdgeRead| {
        format!("{}{}", number(e.value), if e.estimated { "*" } else { "" })
    };
    d.meters
        .iter()
        .map(|m| {
            vec![
                d.device_id.clone(),
                d.model.clone(),
                m.meter.clone(),
                edge(&m.start),
                edge(&m.end),
                number(m.usage),
                if m.reset {
                    "counter went backwards".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect()
}
