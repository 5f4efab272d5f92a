//! The device protocol, under `/device/v1/` (table in `fleetcare_wire::device`).

use std::time::{Duration, Instant};

use crate::extract::Query;
use axum::Json;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use fleetcare_core::limits::{MAX_NAME_LEN, MAX_POLL_WAIT_S};
use fleetcare_core::secret::{self, SecretKind};
use fleetcare_core::structure;
use fleetcare_store::{DeviceKey, Enrollment, NewReport};
use fleetcare_wire::Trigger;
use fleetcare_wire::device::{
    Command, CredentialResponse, EnrollRequest, EnrollResponse, PollResponse, ReportAck,
    StructureReport,
};
use fleetcare_wire::operator::DeviceView;
use serde::Deserialize;

use crate::AppState;
use crate::devices::report::Stored;
use crate::error::ApiError;
use crate::extract::{self, Client, DeviceAuth, JsonBody};
use crate::metrics::TriggerLabel;

/// Read buffer of a push channel. Devices send the center only pings over it (commands go the
/// other way), and hundreds of thousands of idle channels per server must stay cheap:
/// tungstenite fills the whole buffer with zeros before its first read, so all of it is
/// resident for every device (its default of 128 KiB would cost 128 KB; 4 KiB cost 4 KB). A
/// larger message still arrives whole: the buffer grows to the frame's announced length, up
/// to the message limit, read this many bytes at a time.
pub const PUSH_READ_BUFFER: usize = 256;
/// Longest reason a device gives for not installing software that the center keeps.
const MAX_INSTALL_BLOCKED: usize = 500;
/// Largest message a device may send on its push channel (it sends none but pings).
const PUSH_MAX_MESSAGE: usize = 16 * 1024;

pub async fn enroll(
    State(st): State<AppState>,
    client: Client,
    JsonBody(req): JsonBody<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let device_id = structure::validate_identity(&req.device_id, &req.model)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let Some(tenant) = st
        .store
        .enrollment_tenant(&secret::hash(&req.enrollment_key))
        .await?
    else {
        st.metrics.rejected("bad_enrollment_key");
        return Err(extract::failed(
            &st,
            client.ip,
            "unknown or revoked enrollment key",
        ));
    };
    let key = DeviceKey { tenant, device_id };
    // With mutual TLS a device enrolls only as the device its certificate names.
    match &client.cert {
        Some(cert) if !extract::cert_names(&st, cert, &key).await? => {
            st.metrics.rejected("other_device");
            return Err(ApiError::Forbidden(format!(
                "the client certificate names device {} of tenant {}; a device enrolls only as itself",
                cert.device_id, cert.tenant
            )));
        }
        None if st.settings.device_client_cert == crate::config::ClientCert::Required => {
            return Err(extract::refuse(
                &st,
                "this center requires a device certificate (mutual TLS)",
            ));
        }
        _ => {}
    }
    let token = secret::generate(SecretKind::Device);
    let current = req.current_credential.as_deref().map(secret::hash);
    match st
        .store
        .enroll_device(
            &key,
            &req.model,
            &secret::hash(&token),
            current.as_deref(),
            st.clock.now_ms(),
        )
        .await?
    {
        Enrollment::Enrolled { report_interval_s } => {
            st.devices.credentials.forget(&key);
            st.metrics.enrollments.inc();
            tracing::info!(device = %key.device_id, tenant, "device enrolled");
            Ok(Json(EnrollResponse {
                device_token: token,
                report_interval_s,
                tenant: Some(tenant),
            }))
        }
        Enrollment::Refused => {
            st.metrics.rejected("already_enrolled");
            tracing::warn!(device = %key.device_id, tenant, "enrollment of an enrolled device refused");
            Err(ApiError::Conflict {
                code: "already_enrolled",
                message: format!(
                    "device {} is enrolled already; enroll again with its current credential, \
                     or have an operator run `fleetcare devices allow-reenroll {}`",
                    key.device_id, key.device_id
                ),
            })
        }
    }
}

pub async fn report(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
    JsonBody(r): JsonBody<StructureReport>,
) -> Result<Json<ReportAck>, ApiError> {
    take_report(&st, key, r).await.map(Json)
}

/// Validate, judge and store one structure report of an authenticated device, then tell
/// whoever follows it; the acknowledgement is given only once the report is durable. Every
/// transport (HTTP, MQTT) comes here.
pub async fn take_report(
    st: &AppState,
    key: DeviceKey,
    r: StructureReport,
) -> Result<ReportAck, ApiError> {
    let started = Instant::now();
    if r.device_id != key.device_id.as_str() {
        st.metrics.rejected("other_device");
        tracing::warn!(device = %key.device_id, claimed = %r.device_id.chars().take(MAX_NAME_LEN).collect::<String>(),
            "a device reported as another device");
        return Err(ApiError::Forbidden(format!(
            "this credential belongs to device {}; a device can only report as itself",
            key.device_id
        )));
    }
    if r.seq == 0 {
        return Err(ApiError::BadRequest("seq: starts at 1".into()));
    }
    let (_, structure) = structure::validate_report(&r.device_id, &r.model, r.units, &r.operating)
        .and_then(|(id, s)| Ok((id, s.with_supplies(&r.supplies)?)))
        .map_err(|e| {
            st.metrics.rejected("invalid_report");
            ApiError::BadRequest(e.to_string())
        })?;
    let received_at_ms = st.clock.now_ms();
    let judged = st.compat.judge(key.tenant, &structure);
    let structure_hash = structure.fingerprint();
    let operating = (!r.operating.is_empty()).then(|| r.operating.clone());
    let unjudged = judged.is_none().then(|| {
        fleetcare_compat::facts::DeviceFacts::new(
            &st.compat.vocab,
            structure.model(),
            structure.units(),
        )
    });
    let ingested = st
        .store
        .ingest_report(NewReport {
            key: key.clone(),
            seq: r.seq,
            trigger: r.trigger,
            observed_at_ms: r.observed_at_ms,
            received_at_ms,
            structure,
            operating: r.operating,
            supplies: r.supplies,
            judgement: judged.as_ref().map(|(_, j)| j.clone()),
            install_blocked: r
                .install_blocked
                .map(|why| why.chars().take(MAX_INSTALL_BLOCKED).collect()),
        })
        .await?;
    if let Some(facts) = unjudged.filter(|_| ingested.current) {
        st.compat.index_unjudged(&key, &structure_hash, facts);
    }
    st.compat.after_ingest(
        &key,
        structure_hash,
        judged,
        ingested.current,
        ingested.findings_changed || ingested.changes > 0,
        r.trigger == Trigger::Connect,
    );
    if ingested.duplicate {
        st.metrics.report_duplicates.inc();
    } else {
        st.metrics
            .reports
            .get_or_create(&TriggerLabel {
                trigger: r.trigger.as_str(),
            })
            .inc();
        st.metrics
            .structure_changes
            .inc_by(u64::from(ingested.changes));
    }
    let stored = Stored {
        key: &key,
        seq: r.seq,
        trigger: r.trigger,
        received_at_ms,
        observed_at_ms: r.observed_at_ms,
        current: ingested.current,
        duplicate: ingested.duplicate,
        changes: ingested.changes,
        operating: operating.as_ref(),
        supply_changes: &ingested.supply_changes,
        keyframe: ingested.keyframe,
    };
    for s in st.after_report.iter() {
        s.stored(&stored).await;
    }
    st.metrics
        .ingest_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(ReportAck {
        seq: r.seq,
        duplicate: ingested.duplicate,
        changes: ingested.changes,
        report_interval_s: ingested.report_interval_s,
    })
}

pub async fn push(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
    ws: WebSocketUpgrade,
) -> Response {
    ws.read_buffer_size(PUSH_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(PUSH_MAX_MESSAGE)
        .max_frame_size(PUSH_MAX_MESSAGE)
        .on_upgrade(move |socket| push_session(st, key, socket))
}

/// One push channel: send queued commands as they come; close when the device goes quiet
/// for longer than the idle timeout, closes, or the center shuts down.
///
/// Its state lives as long as the device stays connected, in a task of its own, so it is kept
/// small (`session_state_is_small`): an `async move` block rather than an `async fn`, whose
/// arguments would each be held twice (rustc keeps an argument's slot beside the local it is
/// moved into); and the store's futures and the sending of commands boxed, since they are
/// large and live only while they run.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would hold each argument twice"
)]
fn push_session(
    st: AppState,
    key: DeviceKey,
    mut socket: WebSocket,
) -> impl Future<Output = ()> + Send {
    async move {
        let guard = st.devices.hub.attach_push(&key);
        Box::pin(st.devices.arrived(&key, crate::devices::hub::Via::Push)).await;
        st.events.device(key.tenant, key.device_id.as_str());
        st.metrics.push_connections.inc();
        tracing::debug!(device = %key.device_id, "push channel open");
        let mut shutdown = st.shutdown.clone();
        let mut deadline = tokio::time::Instant::now() + st.settings.push_idle_timeout;
        let reason = loop {
            if guard.mailbox.is_revoked() {
                break Box::pin(close(&mut socket, 1008, "credential revoked")).await;
            }
            let commands = guard.mailbox.drain();
            if !commands.is_empty() && Box::pin(send(&st, &mut socket, commands)).await.is_err() {
                break "send failed";
            }
            tokio::select! {
                () = guard.mailbox.notified() => {}
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Close(_))) | None => break "closed by the device",
                    Some(Err(_)) => break "connection error",
                    Some(Ok(_)) => deadline = tokio::time::Instant::now() + st.settings.push_idle_timeout,
                },
                () = tokio::time::sleep_until(deadline) => break Box::pin(close(&mut socket, 1001, "idle")).await,
                () = crate::stopped(&mut shutdown) => break Box::pin(close(&mut socket, 1001, "center shutting down")).await,
            }
        };
        st.metrics.push_connections.dec();
        drop(guard);
        if st.devices.hub.online(&key).is_none() {
            Box::pin(st.devices.left(std::slice::from_ref(&key))).await;
        }
        st.events.device(key.tenant, key.device_id.as_str());
        tracing::debug!(device = %key.device_id, reason, "push channel closed");
    }
}

/// Send commands on a push channel, in order.
async fn send(st: &AppState, socket: &mut WebSocket, commands: Vec<Command>) -> Result<(), ()> {
    for command in commands {
        let text = serde_json::to_string(&command).expect("commands serialize");
        socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| ())?;
        st.metrics.commands_sent.inc();
    }
    Ok(())
}

/// Close a push channel with a code and a reason (which is also the session's end reason).
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) -> &'static str {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
    reason
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    /// Seconds to wait for a command before answering with none.
    pub wait_s: Option<u64>,
}

pub async fn poll(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
    Query(q): Query<PollQuery>,
) -> Result<Json<PollResponse>, ApiError> {
    let wait = Duration::from_secs(q.wait_s.unwrap_or(25).min(MAX_POLL_WAIT_S));
    let arriving = st.devices.hub.online(&key).is_none();
    let mailbox = st.devices.hub.poll(&key);
    if arriving {
        st.devices
            .arrived(&key, crate::devices::hub::Via::Poll)
            .await;
    }
    let mut commands = mailbox.drain();
    if commands.is_empty() && !wait.is_zero() {
        let mut shutdown = st.shutdown.clone();
        tokio::select! {
            () = mailbox.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = crate::stopped(&mut shutdown) => {}
        }
        commands = mailbox.drain();
    }
    if mailbox.is_revoked() {
        return Err(ApiError::Unauthorized(
            "unknown or revoked device credential".into(),
        ));
    }
    st.devices.hub.poll_done(&mailbox);
    st.metrics.polls.inc();
    st.metrics.commands_sent.inc_by(commands.len() as u64);
    Ok(Json(PollResponse { commands }))
}

/// How long a device's previous credential keeps working after a rotation it has not yet
/// confirmed by using the new one (a device that lost the answer carries on with the old).
pub const ROTATION_GRACE_MS: i64 = 7 * 24 * 3600 * 1000;

/// Rotate the calling device's credential.
pub async fn rotate_credential(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
    headers: axum::http::HeaderMap,
) -> Result<Json<CredentialResponse>, ApiError> {
    let presented = extract::bearer(&headers)
        .map(secret::hash)
        .ok_or_else(|| ApiError::Internal("an authenticated device without a bearer".into()))?;
    let token = secret::generate(SecretKind::Device);
    let now = st.clock.now_ms();
    if !st
        .store
        .rotate_credential(
            &key,
            &presented,
            &secret::hash(&token),
            now,
            now + ROTATION_GRACE_MS,
        )
        .await?
    {
        return Err(extract::refuse(&st, "unknown or revoked device credential"));
    }
    st.devices.credentials.forget(&key);
    tracing::info!(device = %key.device_id, tenant = key.tenant, "device credential rotated");
    Ok(Json(CredentialResponse {
        device_token: token,
        previous_valid_s: u64::try_from(ROTATION_GRACE_MS / 1000).unwrap_or(0),
    }))
}

/// What the center knows about the calling device.
pub async fn whoami(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
) -> Result<Json<DeviceView>, ApiError> {
    crate::devices::api::device_view(&st, &key).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what a function returns, for a future that cannot be named.
    fn returned<A, B, C, R>(_: fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// A push session's state is held for as long as its device stays connected, by every
    /// connected device: it must not grow unnoticed (it was 1,496 bytes as an `async fn`).
    #[test]
    fn session_state_is_small() {
        let session: fn(AppState, DeviceKey, WebSocket) -> _ = push_session;
        let size = returned(session);
        assert!(size <= 1024, "a push session's state is {size} bytes");
    }
}
