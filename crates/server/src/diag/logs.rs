//! Devices' error logs at the center: batches stored exactly once and acknowledged by
//! watermark, the operator's view, and asking a device to send its log now.

use crate::extract::Query;
use axum::Json;
use axum::extract::{Path, State};
use fleetcare_core::clock::rfc3339;
use fleetcare_core::limits::{MAX_NAME_LEN, MAX_OPERATING_ENTRIES};
use fleetcare_store::NewErrorEvent;
use fleetcare_wire::ErrorBody;
use fleetcare_wire::device::Command;
use fleetcare_wire::errors as w;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::extract::device_key;
use crate::extract::{DeviceAuth, JsonBody, OperatorAuth};

/// Events in one batch.
pub const MAX_EVENTS_PER_BATCH: usize = 1000;
/// Characters of an event's detail.
pub const MAX_DETAIL: usize = 4096;

/// Every problem of an error batch (empty: valid).
pub fn check(b: &w::ErrorBatch) -> Vec<String> {
    let mut p = Vec::new();
    if b.events.len() > MAX_EVENTS_PER_BATCH {
        p.push(format!(
            "{} events: at most {MAX_EVENTS_PER_BATCH} per batch",
            b.events.len()
        ));
        return p;
    }
    if b.boot_epoch == 0 {
        p.push("boot_epoch: starts at 1".into());
    }
    let mut last = 0;
    for (i, e) in b.events.iter().enumerate() {
        let at = format!("events[{i}]");
        if e.seq <= last {
            p.push(format!(
                "{at}.seq: {} after {last}: sequences start at 1 and grow",
                e.seq
            ));
        }
        last = e.seq;
        if e.dropped {
            continue;
        }
        for (field, v) in [("slot", &e.slot), ("code", &e.code)] {
            if v.chars().count() > MAX_NAME_LEN || v.chars().any(char::is_control) {
                p.push(format!(
                    "{at}.{field}: at most {MAX_NAME_LEN} characters, no control characters"
                ));
            }
        }
        if e.code.is_empty() {
            p.push(format!("{at}.code: required"));
        }
        if !w::SEVERITIES.contains(&e.severity.as_str()) {
            p.push(format!(
                "{at}.severity: {:?} is not one of {}",
                e.severity,
                w::SEVERITIES.join(", ")
            ));
        }
        if e.counters.len() > MAX_OPERATING_ENTRIES || e.counters.values().any(|v| !v.is_finite()) {
            p.push(format!(
                "{at}.counters: at most {MAX_OPERATING_ENTRIES}, finite numbers"
            ));
        }
        if e.detail
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DETAIL)
        {
            p.push(format!("{at}.detail: at most {MAX_DETAIL} characters"));
        }
    }
    p
}

/// Store a batch of the device's error log; the acknowledgement says up to where the epoch is
/// held (delete up to there). A retried batch stores nothing twice.
#[utoipa::path(post, path = "/device/v1/errors", request_body = w::ErrorBatch,
    responses((status = 200, body = w::ErrorAck), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn upload(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
    JsonBody(b): JsonBody<w::ErrorBatch>,
) -> Result<Json<w::ErrorAck>, ApiError> {
    take_batch(&st, key, b).await.map(Json)
}

/// Check and store one error batch of an authenticated device, and run the diagnosis rules
/// on it; every transport (HTTP, MQTT) comes here.
/// After a restore: the first batch of an epoch may start past the watermark (the device
/// deleted what the lost center acknowledged); the watermark moves over the gap, said once.
/// A center that was not restored pays one query, once.
async fn restored_gap(
    st: &AppState,
    key: &fleetcare_store::DeviceKey,
    boot_epoch: u64,
    events: &[NewErrorEvent],
) -> Result<(), ApiError> {
    use std::sync::atomic::Ordering;
    let restored = match st.restored_watermarks.load(Ordering::Relaxed) {
        0 => {
            let yes = st.store.has_restored_watermarks().await?;
            st.restored_watermarks
                .store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            yes
        }
        state => state == 1,
    };
    if let (true, Some(first)) = (restored, events.iter().map(|e| e.seq).min())
        && let Some((from, to)) = st.store.take_restored_gap(key, boot_epoch, first).await?
    {
        tracing::warn!(device = %key.device_id, boot_epoch, from, to,
            "error events acknowledged before the store's restore are lost; the log continues after them");
    }
    Ok(())
}

pub async fn take_batch(
    st: &AppState,
    key: fleetcare_store::DeviceKey,
    b: w::ErrorBatch,
) -> Result<w::ErrorAck, ApiError> {
    if b.device_id != key.device_id.as_str() {
        return Err(ApiError::Forbidden(format!(
            "this credential belongs to device {}; a device can only send its own log",
            key.device_id
        )));
    }
    let problems = check(&b);
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: format!("the error batch was refused: {} problem(s)", problems.len()),
            problems,
        });
    }
    let events: Vec<NewErrorEvent> = b
        .events
        .iter()
        .map(|e| NewErrorEvent {
            seq: e.seq,
            at_ms: e.at_ms,
            slot: e.slot.clone(),
            code: e.code.clone(),
            severity: if e.dropped {
                "dropped".into()
            } else {
                e.severity.clone()
            },
            counters_json: (!e.counters.is_empty())
                .then(|| serde_json::to_string(&e.counters).expect("numbers serialize")),
            detail: e.detail.clone(),
            alert_json: e
                .alert
                .as_ref()
                .map(|a| serde_json::to_string(a).expect("an alert serializes")),
            dropped: e.dropped,
        })
        .collect();
    restored_gap(st, &key, b.boot_epoch, &events).await?;
    let stored = st
        .store
        .store_error_batch(
            &key,
            b.boot_epoch,
            b.trigger.as_str(),
            &events,
            st.clock.now_ms(),
        )
        .await?;
    st.diag
        .after_ingest(st, &key, b.boot_epoch, &b.events, &stored.new)
        .await;
    st.metrics.error_events.inc_by(stored.stored);
    st.metrics.error_event_duplicates.inc_by(stored.duplicates);
    if stored.stored > 0 {
        st.events.device(key.tenant, key.device_id.as_str());
    }
    tracing::debug!(device = %key.device_id, epoch = b.boot_epoch, trigger = b.trigger.as_str(),
        stored = stored.stored, duplicates = stored.duplicates, acked = stored.acked_seq, "error log stored");
    Ok(w::ErrorAck {
        boot_epoch: b.boot_epoch,
        acked_seq: stored.acked_seq,
        stored: stored.stored,
        duplicates: stored.duplicates,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ErrorQuery {
    /// Only events at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only events with this code.
    pub code: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A device's error log as the center holds it, newest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/errors", params(("id" = String, Path, description = "device id"), ErrorQuery),
    responses((status = 200, body = w::ErrorList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
    Query(q): Query<ErrorQuery>,
) -> Result<Json<w::ErrorList>, ApiError> {
    let key = device_key(&op, &id)?;
    if st.store.device(&key).await?.is_none() {
        return Err(crate::extract::unknown_device(&st, &key).await);
    }
    let since_ms = match &q.since {
        None => 0,
        Some(s) => humantime::parse_rfc3339_weak(s)
            .map_err(|e| ApiError::BadRequest(format!("since {s:?}: {e} (RFC 3339)")))?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = st
        .store
        .error_events(&key, since_ms, q.code.as_deref(), limit)
        .await?;
    let events = rows
        .into_iter()
        .map(|r| w::StoredErrorEvent {
            boot_epoch: r.boot_epoch,
            seq: r.seq,
            at: rfc3339(r.at_ms),
            slot: r.slot,
            code: r.code,
            severity: r.severity,
            counters: r
                .counters_json
                .as_deref()
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or_default(),
            detail: r.detail,
            alert: r
                .alert_json
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok()),
            trigger: r.trigger,
            received_at: rfc3339(r.received_at_ms),
        })
        .collect();
    Ok(Json(w::ErrorList {
        device_id: key.device_id.to_string(),
        events,
        dropped: st.store.dropped_error_events(&key).await?,
    }))
}

/// Ask a connected device to send its error log now (trigger `request`).
#[utoipa::path(post, path = "/api/v1/devices/{id}/request-errors", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = fleetcare_wire::operator::RequestReportResponse), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn request(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<fleetcare_wire::operator::RequestReportResponse>, ApiError> {
    let key = device_key(&op, &id)?;
    if st.store.device(&key).await?.is_none() {
        return Err(crate::extract::unknown_device(&st, &key).await);
    }
    let Some(via) = st
        .devices
        .send(&key, Command::RequestErrors { scheduled: false })
        .await
    else {
        return Err(ApiError::Conflict {
            code: "offline",
            message: format!(
                "device {} is not connected; it sends its log when it connects again",
                key.device_id
            ),
        });
    };
    Ok(Json(fleetcare_wire::operator::RequestReportResponse {
        via,
        report: None,
    }))
}

/// Shortest interval of a schedule.
pub const MIN_SCHEDULE_S: u64 = 60;

fn schedule_target(
    op: &OperatorAuth,
    s: &w::SetErrorSchedule,
) -> Result<(&'static str, String), ApiError> {
    match (&s.device_id, &s.model) {
        (Some(d), None) => Ok(("device", device_key(op, d)?.device_id.to_string())),
        (None, Some(m)) if !m.is_empty() && m.chars().count() <= MAX_NAME_LEN => {
            Ok(("model", m.clone()))
        }
        _ => Err(ApiError::BadRequest(
            "give either device_id or model (1 to 64 characters), not both".into(),
        )),
    }
}

fn schedule_view(s: fleetcare_store::ErrorSchedule) -> w::ErrorSchedule {
    w::ErrorSchedule {
        scope: s.scope,
        target: s.target,
        interval_s: s.interval_s,
        next_at: rfc3339(s.next_at_ms),
    }
}

/// The center's periodic requests for error logs.
#[utoipa::path(get, path = "/api/v1/error-schedules", responses((status = 200, body = w::ErrorSchedules)))]
pub async fn schedules(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::ErrorSchedules>, ApiError> {
    Ok(Json(w::ErrorSchedules {
        schedules: st
            .store
            .error_schedules(op.0.tenant)
            .await?
            .into_iter()
            .map(schedule_view)
            .collect(),
    }))
}

/// Ask a device, or every device of a model, for its error log every `interval_s` seconds.
#[utoipa::path(put, path = "/api/v1/error-schedules", request_body = w::SetErrorSchedule,
    responses((status = 200, body = w::ErrorSchedules), (status = 400, body = ErrorBody)))]
pub async fn set_schedule(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(s): JsonBody<w::SetErrorSchedule>,
) -> Result<Json<w::ErrorSchedules>, ApiError> {
    let (scope, target) = schedule_target(&op, &s)?;
    if !(MIN_SCHEDULE_S..=fleetcare_core::limits::MAX_REPORT_INTERVAL_S).contains(&s.interval_s) {
        return Err(ApiError::BadRequest(format!(
            "interval_s: {MIN_SCHEDULE_S} to {} seconds",
            fleetcare_core::limits::MAX_REPORT_INTERVAL_S
        )));
    }
    st.store
        .set_error_schedule(op.0.tenant, scope, &target, s.interval_s, st.clock.now_ms())
        .await?;
    tracing::info!(tenant = op.0.tenant, scope, %target, interval_s = s.interval_s, operator = %op.0.name, "error-log schedule set");
    schedules(State(st), op).await
}

/// Remove a schedule.
#[utoipa::path(delete, path = "/api/v1/error-schedules", request_body = w::SetErrorSchedule,
    responses((status = 200, body = w::ErrorSchedules), (status = 404, body = ErrorBody)))]
pub async fn remove_schedule(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(s): JsonBody<w::SetErrorSchedule>,
) -> Result<Json<w::ErrorSchedules>, ApiError> {
    let (scope, target) = schedule_target(&op, &s)?;
    if !st
        .store
        .remove_error_schedule(op.0.tenant, scope, &target)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "a schedule for {scope} {target}"
        )));
    }
    schedules(State(st), op).await
}

/// Ask the connected devices of every due schedule for their error logs (trigger
/// `scheduled`), wherever they are connected; a device offline at the time is asked at the
/// next interval.
pub async fn run_schedules(st: &Ctx) {
    let due = match st.store.take_due_error_schedules(st.clock.now_ms()).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "reading error-log schedules");
            return;
        }
    };
    for s in due {
        let ids = if s.scope == "device" {
            vec![s.target.clone()]
        } else {
            match st.store.device_ids_of_model(s.tenant, &s.target).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "listing devices for an error-log schedule");
                    continue;
                }
            }
        };
        let keys: Vec<fleetcare_store::DeviceKey> = ids
            .iter()
            .filter_map(|id| fleetcare_core::DeviceId::parse(id).ok())
            .map(|device_id| fleetcare_store::DeviceKey {
                tenant: s.tenant,
                device_id,
            })
            .collect();
        let asked = st
            .devices
            .send_many(&keys, &Command::RequestErrors { scheduled: true })
            .await;
        tracing::debug!(scope = %s.scope, target = %s.target, asked, "scheduled error-log requests");
    }
}
