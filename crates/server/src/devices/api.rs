//! The operator's view of devices under `/api/v1/devices`: list, show, history, report
//! requests and intervals, credentials. Every query is scoped to the operator's tenant:
//! another tenant's device is "not found".

use std::time::Duration;

use crate::extract::Query;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fleetcare_core::DeviceId;
use fleetcare_core::clock::rfc3339;
use fleetcare_core::limits::{MAX_REPORT_INTERVAL_S, MIN_REPORT_INTERVAL_S};
use fleetcare_store::{DeviceKey, ReportMeta};
use fleetcare_wire::device::Command;
use fleetcare_wire::operator::{
    AllowReenroll, DeviceList, DeviceSummary, DeviceView, History, HistoryEvent, LastReport,
    RequestReportResponse, SetReportInterval,
};
use fleetcare_wire::{ErrorBody, Trigger};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::devices::hub::Hub;
use crate::error::ApiError;
use crate::extract::{JsonBody, OperatorAuth, device_key, known_device, unknown_device};

/// Devices in one page of `GET /api/v1/devices`, by default and at most.
const PAGE_DEFAULT: u32 = 100;
const PAGE_MAX: u32 = 1000;
/// History events in one answer, by default and at most.
const HISTORY_DEFAULT: u32 = 200;
const HISTORY_MAX: u32 = 10_000;
/// Longest an operator may wait for a requested report.
const MAX_REQUEST_WAIT_S: u64 = 30;
/// Longest a re-enrollment allowance may last.
const MAX_ALLOWANCE_S: u64 = 30 * 24 * 3600;

pub(crate) fn last_report(m: &ReportMeta) -> LastReport {
    LastReport {
        trigger: m.trigger,
        received_at: rfc3339(m.received_at_ms),
        observed_at: rfc3339(m.observed_at_ms),
        seq: m.seq,
    }
}

/// Everything the center knows of one device's present.
pub(crate) async fn device_view(st: &AppState, key: &DeviceKey) -> Result<DeviceView, ApiError> {
    let rec = known_device(st, key).await?;
    Ok(DeviceView {
        online: st.devices.online(key).await.is_some(),
        enrolled_at: rfc3339(rec.enrolled_at_ms),
        last_report: rec.last_report.as_ref().map(last_report),
        structure_changed_at: rec.structure_changed_at_ms.map(rfc3339),
        units: rec
            .structure
            .map(|s| s.units().cloned().collect())
            .unwrap_or_default(),
        operating: rec.operating,
        supplies: rec.supplies,
        report_interval_s: rec.report_interval_s,
        compat_state: rec.compat_state,
        install_blocked: rec.install_blocked,
        device_id: rec.device_id,
        model: rec.model,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Return devices whose id sorts after this one (the previous page's `next_after`).
    pub after: Option<String>,
    /// Devices per page (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Devices of the operator's tenant, ordered by id, a page at a time.
#[utoipa::path(get, path = "/api/v1/devices", params(ListQuery),
    responses((status = 200, body = DeviceList), (status = 401, body = ErrorBody)))]
pub async fn list_devices(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<ListQuery>,
) -> Result<Json<DeviceList>, ApiError> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX);
    let rows = st
        .store
        .list_devices(op.0.tenant, q.after.as_deref(), limit)
        .await?;
    let next_after = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.device_id.clone()))
        .flatten();
    let devices = rows
        .into_iter()
        .map(|r| {
            let online = DeviceId::parse(&r.device_id).is_ok_and(|device_id| {
                st.devices
                    .hub
                    .online(&DeviceKey {
                        tenant: op.0.tenant,
                        device_id,
                    })
                    .is_some()
            });
            DeviceSummary {
                online,
                units: r.units,
                last_report: r.last_report.as_ref().map(last_report),
                device_id: r.device_id,
                model: r.model,
            }
        })
        .collect();
    Ok(Json(DeviceList {
        devices,
        next_after,
    }))
}

/// One device: its units and software as last reported, and whether it is connected.
#[utoipa::path(get, path = "/api/v1/devices/{id}", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody)))]
pub async fn show_device(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let key = device_key(&op, &id)?;
    device_view(&st, &key).await.map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The newest this many events (default 200, at most 10000), oldest first.
    pub limit: Option<u32>,
}

/// A device's structure history: units added, removed, replaced, changed; software added,
/// removed, changed; each with the report (trigger, time) that showed it.
#[utoipa::path(get, path = "/api/v1/devices/{id}/history",
    params(("id" = String, Path, description = "device id"), HistoryQuery),
    responses((status = 200, body = History), (status = 404, body = ErrorBody)))]
pub async fn device_history(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<History>, ApiError> {
    let key = device_key(&op, &id)?;
    if st.store.device(&key).await?.is_none() {
        return Err(unknown_device(&st, &key).await);
    }
    let limit = q.limit.unwrap_or(HISTORY_DEFAULT).clamp(1, HISTORY_MAX);
    let events = st
        .store
        .history(&key, limit)
        .await?
        .into_iter()
        .map(|h| HistoryEvent {
            at: rfc3339(h.observed_at_ms),
            received_at: rfc3339(h.received_at_ms),
            trigger: h.trigger,
            seq: h.seq,
            change: h.change,
        })
        .collect();
    Ok(Json(History {
        device_id: key.device_id.to_string(),
        events,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    /// Wait up to this many seconds (at most 30) for the device's answer and return it.
    pub wait_s: Option<u64>,
}

/// Ask a connected device to send a structure report now (trigger `request`).
#[utoipa::path(post, path = "/api/v1/devices/{id}/request-report",
    params(("id" = String, Path, description = "device id"), RequestQuery),
    responses((status = 200, body = RequestReportResponse),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the device is not connected (code `offline`)", body = ErrorBody)))]
pub async fn request_report(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
    Query(q): Query<RequestQuery>,
) -> Result<Json<RequestReportResponse>, ApiError> {
    let key = device_key(&op, &id)?;
    if st.store.device(&key).await?.is_none() {
        return Err(unknown_device(&st, &key).await);
    }
    let offline = || ApiError::Conflict {
        code: "offline",
        message: format!(
            "device {} is not connected; it reports when it connects again",
            key.device_id
        ),
    };
    let wait = Duration::from_secs(q.wait_s.unwrap_or(0).min(MAX_REQUEST_WAIT_S));
    let mut report = None;
    if let Some((mailbox, via)) = st.devices.hub.connected(&key) {
        // Connected here: the mailbox hears the answer.
        let mut reports = mailbox.subscribe_reports();
        Hub::queue(&mailbox, Command::RequestReport);
        if !wait.is_zero() {
            let answered = tokio::time::timeout(wait, async {
                while reports.changed().await.is_ok() {
                    let got = reports.borrow_and_update().clone();
                    if let Some(m) = got.filter(|m| m.trigger == Trigger::Request) {
                        return Some(m);
                    }
                }
                None
            })
            .await;
            report = answered.ok().flatten().as_ref().map(last_report);
        }
        return Ok(Json(RequestReportResponse { via, report }));
    }
    // Connected to another instance (or nowhere): the command travels there, and the answer
    // is heard of through the change notices of the instance that takes it.
    let asked_at = st.clock.now_ms();
    let mut notices = st.events.subscribe();
    let via = st
        .devices
        .send(&key, Command::RequestReport)
        .await
        .ok_or_else(offline)?;
    if !wait.is_zero() {
        let answered = tokio::time::timeout(wait, async {
            loop {
                match notices.recv().await {
                    Ok(n)
                        if n.tenant == key.tenant
                            && n.topic
                                == crate::cluster::events::Topic::Device(
                                    key.device_id.as_str().into(),
                                ) => {}
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
                if let Ok(Some(rec)) = st.store.device(&key).await
                    && let Some(m) = rec
                        .last_report
                        .filter(|m| m.trigger == Trigger::Request && m.received_at_ms >= asked_at)
                {
                    return Some(m);
                }
            }
        })
        .await;
        report = answered.ok().flatten().as_ref().map(last_report);
    }
    Ok(Json(RequestReportResponse { via, report }))
}

/// Set the device's periodic reporting interval (`null`: back to the agent's own). A
/// connected device hears it at once; others with their next report's acknowledgement.
#[utoipa::path(put, path = "/api/v1/devices/{id}/report-interval",
    params(("id" = String, Path, description = "device id")),
    request_body = SetReportInterval,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_report_interval(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SetReportInterval>,
) -> Result<StatusCode, ApiError> {
    let key = device_key(&op, &id)?;
    if let Some(s) = body.seconds
        && !(MIN_REPORT_INTERVAL_S..=MAX_REPORT_INTERVAL_S).contains(&s)
    {
        return Err(ApiError::BadRequest(format!(
            "seconds: must be between {MIN_REPORT_INTERVAL_S} and {MAX_REPORT_INTERVAL_S}, got {s}"
        )));
    }
    if !st.store.set_report_interval(&key, body.seconds).await? {
        return Err(unknown_device(&st, &key).await);
    }
    st.devices
        .send(
            &key,
            Command::SetReportInterval {
                seconds: body.seconds,
            },
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke the device's credential: it stops working at once, and the device can enroll
/// again only after `allow-reenroll`.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke",
    params(("id" = String, Path, description = "device id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_device(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = device_key(&op, &id)?;
    if !st.store.revoke_device(&key, st.clock.now_ms()).await? {
        return Err(unknown_device(&st, &key).await);
    }
    st.devices.revoke(&key).await;
    tracing::info!(device = %key.device_id, operator = %op.0.name, "device credential revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Have a connected device rotate its credential now: it gets a new one, and the old one stops
/// working once the device uses the new one.
#[utoipa::path(post, path = "/api/v1/devices/{id}/rotate-credential",
    params(("id" = String, Path, description = "device id")),
    responses((status = 202, description = "the device was told to rotate"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the device is not connected (code `offline`)", body = ErrorBody)))]
pub async fn rotate_credential(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = device_key(&op, &id)?;
    if st.store.device(&key).await?.is_none() {
        return Err(unknown_device(&st, &key).await);
    }
    if st
        .devices
        .send(&key, Command::RotateCredential)
        .await
        .is_none()
    {
        return Err(ApiError::Conflict {
            code: "offline",
            message: format!(
                "device {} is not connected; ask again when it is",
                key.device_id
            ),
        });
    }
    tracing::info!(device = %key.device_id, operator = %op.0.name, "credential rotation requested");
    Ok(StatusCode::ACCEPTED)
}

/// Allow one new enrollment of an enrolled device id for a while (a device that lost its
/// credential, or whose controller was replaced).
#[utoipa::path(post, path = "/api/v1/devices/{id}/allow-reenroll",
    params(("id" = String, Path, description = "device id")),
    request_body = AllowReenroll,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn allow_reenroll(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AllowReenroll>,
) -> Result<StatusCode, ApiError> {
    let key = device_key(&op, &id)?;
    if !(1..=MAX_ALLOWANCE_S).contains(&body.valid_s) {
        return Err(ApiError::BadRequest(format!(
            "valid_s: must be between 1 and {MAX_ALLOWANCE_S}, got {}",
            body.valid_s
        )));
    }
    let until = st.clock.now_ms() + i64::try_from(body.valid_s * 1000).unwrap_or(i64::MAX);
    if !st.store.allow_reenroll(&key, until).await? {
        return Err(unknown_device(&st, &key).await);
    }
    tracing::info!(device = %key.device_id, operator = %op.0.name, valid_s = body.valid_s,
        "re-enrollment allowed");
    Ok(StatusCode::NO_CONTENT)
}
