//! The operator API of operating life: a device's meters over time, its supplies, and a
//! month's meter reads for billing.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use fleetcare_core::clock::rfc3339;
use fleetcare_core::meters::{DAY_MS, HOUR_MS};
use fleetcare_wire::life::{
    Meter, MeterPoint, MeterReadSchedule, MeterReads, MeterSeries, RunningOut, SupplyList,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{OperatorAuth, Query, device_key, known_device};

/// Buckets one answer holds at most (per meter): a bucket an hour for 62 days.
pub const MAX_BUCKETS: i64 = 62 * 24;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MeterQuery {
    /// Only these meters (comma-separated names); all when absent.
    pub meter: Option<String>,
    /// From this time (RFC 3339); default: 30 buckets before `until`.
    pub since: Option<String>,
    /// Up to this time (RFC 3339, exclusive); default: the end of the current hour or day.
    pub until: Option<String>,
    /// `hour` or `day` (UTC); default `day`.
    pub every: Option<String>,
}

/// A device's supplies as its newest report says, each with when it runs out (a robust fit
/// over the last 30 days of its levels, since it was put in).
#[utoipa::path(get, path = "/api/v1/devices/{id}/supplies",
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = SupplyList), (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn supplies(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<SupplyList>, ApiError> {
    let key = device_key(&op, &id)?;
    let rec = known_device(&st, &key).await?;
    Ok(Json(SupplyList {
        device_id: key.device_id.to_string(),
        supplies: super::supply_status(&st, &key, rec.supplies).await?,
    }))
}

fn time_ms(what: &str, s: &str) -> Result<i64, ApiError> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| ApiError::BadRequest(format!("{what} {s:?}: {e} (RFC 3339)")))?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .map_err(|_| ApiError::BadRequest(format!("{what} {s:?}: before 1970")))
}

/// A device's meters (counters and gauges from its reports) over time, as buckets of an hour
/// or a day: each with the first, last, lowest and highest reading.
#[utoipa::path(get, path = "/api/v1/devices/{id}/meters",
    params(("id" = String, Path, description = "device id"), MeterQuery),
    responses((status = 200, body = MeterSeries), (status = 400, body = fleetcare_wire::ErrorBody),
        (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn meters(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
    Query(q): Query<MeterQuery>,
) -> Result<Json<MeterSeries>, ApiError> {
    let key = device_key(&op, &id)?;
    let (every, every_ms) = match q.every.as_deref().unwrap_or("day") {
        "hour" => ("hour", HOUR_MS),
        "day" => ("day", DAY_MS),
        other => {
            return Err(ApiError::BadRequest(format!(
                "every {other:?}: hour or day"
            )));
        }
    };
    // By default the span ends with the bucket now is in.
    let until = match &q.until {
        Some(s) => time_ms("until", s)?,
        None => (st.clock.now_ms().div_euclid(every_ms) + 1) * every_ms,
    };
    let since = match &q.since {
        Some(s) => time_ms("since", s)?,
        None => until - 30 * every_ms,
    };
    if since >= until {
        return Err(ApiError::BadRequest(format!(
            "since {} is not before until {}",
            rfc3339(since),
            rfc3339(until)
        )));
    }
    if (until - since) / every_ms > MAX_BUCKETS {
        return Err(ApiError::BadRequest(format!(
            "{} buckets of an {every} asked for; at most {MAX_BUCKETS} in one answer (a \
             narrower span, or every=day)",
            (until - since) / every_ms
        )));
    }
    known_device(&st, &key).await?;
    let names: Option<Vec<&str>> = q.meter.as_deref().map(|m| m.split(',').collect());
    let (buckets, truncated) = super::series(&st, &key, since, until, every_ms, |n| {
        names.as_ref().is_none_or(|ns| ns.contains(&n))
    })
    .await?;
    let mut by: BTreeMap<String, Vec<MeterPoint>> = BTreeMap::new();
    for b in buckets {
        by.entry(b.name).or_default().push(MeterPoint {
            at: rfc3339(b.start_ms),
            first: b.span.first,
            last: b.span.last,
            min: b.span.min,
            max: b.span.max,
        });
    }
    Ok(Json(MeterSeries {
        device_id: key.device_id.to_string(),
        every: every.to_owned(),
        since: rfc3339(since),
        until: rfc3339(until),
        meters: by
            .into_iter()
            .map(|(name, points)| Meter { name, points })
            .collect(),
        truncated,
    }))
}

/// Devices one page of meter reads holds by default, and at most.
pub const READS_PAGE: i64 = 500;
pub const MAX_READS_PAGE: i64 = 2000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReadsQuery {
    /// The month, `YYYY-MM`.
    pub period: String,
    /// Only devices of this model.
    pub model: Option<String>,
    /// Devices after this id (the previous page's `next`).
    pub after: Option<String>,
    /// Devices in this page (default 500, at most 2000).
    pub limit: Option<i64>,
}

/// A month's meter reads for billing: every device's billing meters at the month's start and
/// end in its site's time zone, the usage between, and whether each value was read at the
/// edge or estimated. Pages of devices by id.
#[utoipa::path(get, path = "/api/v1/meter-reads", params(ReadsQuery),
    responses((status = 200, body = MeterReads), (status = 400, body = fleetcare_wire::ErrorBody)))]
pub async fn meter_reads(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<ReadsQuery>,
) -> Result<Json<MeterReads>, ApiError> {
    let period = super::reads::parse_period(&q.period).map_err(ApiError::BadRequest)?;
    let limit = q.limit.unwrap_or(READS_PAGE);
    if !(1..=MAX_READS_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit {limit}: 1 to {MAX_READS_PAGE}"
        )));
    }
    let (devices, next) = super::reads::read_page(
        &st,
        op.0.tenant,
        period,
        q.model.as_deref(),
        q.after.as_deref().unwrap_or(""),
        limit,
    )
    .await?;
    Ok(Json(MeterReads {
        period: q.period,
        devices,
        next,
    }))
}

/// Whether the center asks devices for a report when a month starts (in each site's time
/// zone), so that meter reads are exact.
#[utoipa::path(get, path = "/api/v1/meter-read-schedule",
    responses((status = 200, body = MeterReadSchedule)))]
pub async fn schedule(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<MeterReadSchedule>, ApiError> {
    Ok(Json(MeterReadSchedule {
        enabled: st.store.meter_read_schedule(op.0.tenant).await?,
    }))
}

/// Turn the meter-read schedule on or off.
#[utoipa::path(put, path = "/api/v1/meter-read-schedule", request_body = MeterReadSchedule,
    responses((status = 200, body = MeterReadSchedule), (status = 400, body = fleetcare_wire::ErrorBody)))]
pub async fn set_schedule(
    State(st): State<AppState>,
    op: OperatorAuth,
    crate::extract::JsonBody(s): crate::extract::JsonBody<MeterReadSchedule>,
) -> Result<Json<MeterReadSchedule>, ApiError> {
    st.store
        .set_meter_read_schedule(op.0.tenant, s.enabled)
        .await?;
    tracing::info!(tenant = op.0.tenant, enabled = s.enabled, operator = %op.0.name, "meter-read schedule set");
    Ok(Json(s))
}

/// The fleet's supplies running out (a live low or empty trouble), each with when it is
/// empty, soonest first; and its parts near or past their expected life.
#[utoipa::path(get, path = "/api/v1/supplies/running-out",
    responses((status = 200, body = RunningOut)))]
pub async fn running_out(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<RunningOut>, ApiError> {
    Ok(Json(super::running_out(&st, op.0.tenant).await?))
}
