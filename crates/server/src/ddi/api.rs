//! The DDI endpoints under `/{tenant}/controller/v1/{controllerId}` (table in
//! `fleetcare_wire::ddi`): authentication by target or gateway token, the poll, actions,
//! feedback, cancellations, attributes and downloads.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use fleetcare_core::secret;
use fleetcare_core::structure::{self, DeviceId};
use fleetcare_store::{DeviceKey, Enrollment, JobRecord, NewAudit, Transition};
use fleetcare_wire::Trigger;
use fleetcare_wire::compat::SoftwareStep;
use fleetcare_wire::ddi as w;
use fleetcare_wire::device::StructureReport;
use sha2::{Digest, Sha256};

use super::{Effect, module_id, module_parts};
use crate::AppState;
use crate::delivery::Availability;
use crate::delivery::artifacts::serve_file;
use crate::error::ApiError;
use crate::extract::{self, Client, JsonBody};

/// Model of a device first seen through a gateway token, until its attributes name one.
pub const UNKNOWN_MODEL: &str = "unknown";
/// Sequence-number races a `configData` request retries before it gives up.
const CONFIG_RETRIES: usize = 8;

/// A DDI request's device, after its token.
async fn authenticate(
    st: &AppState,
    client: &Client,
    headers: &HeaderMap,
    (method, uri): (&Method, &Uri),
    tenant: &str,
    controller: &str,
) -> Result<DeviceKey, ApiError> {
    let refused = |status: u16, why: &str| {
        let line = NewAudit {
            tenant: None,
            actor: Some(format!(
                "ddi:{}",
                controller.chars().take(64).collect::<String>()
            )),
            role: None,
            action: "ddi.request".into(),
            method: method.to_string(),
            path: uri.path().chars().take(500).collect(),
            status,
            outcome: "denied".into(),
            detail: Some(why.to_owned()),
            source: client.ip.map(|ip| ip.to_string()),
        };
        let store = st.store.clone();
        let now = st.clock.now_ms();
        async move {
            if let Err(e) = store.append_audit(&line, now).await {
                tracing::warn!(error = %e, "the audit line of a refused DDI request was not written");
            }
        }
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(scheme, token)| (scheme.to_ascii_lowercase(), token.trim().to_owned()));
    let Some((scheme, token)) = auth.filter(|(s, t)| {
        (s == "targettoken" || s == "gatewaytoken") && !t.is_empty() && t.len() <= 200
    }) else {
        let why = "missing DDI token (Authorization: TargetToken … or GatewayToken …)";
        let e = extract::failed(st, client.ip, why);
        if e.status() == StatusCode::UNAUTHORIZED {
            refused(401, why).await;
        }
        return Err(e);
    };
    let device_id = DeviceId::parse(controller)
        .map_err(|e| ApiError::BadRequest(format!("controllerId: {e}")))?;
    let tenant_id = tenant_by_name(st, tenant).await?;
    let key = if scheme == "targettoken" {
        let Some(key) = extract::device_of_credential(st, &token).await? else {
            let why = "unknown or revoked target token";
            let e = extract::failed(st, client.ip, why);
            if e.status() == StatusCode::UNAUTHORIZED {
                refused(401, why).await;
            }
            return Err(e);
        };
        if Some(key.tenant) != tenant_id || key.device_id != device_id {
            let why = "a target token acts only as its own controllerId, in its own tenant";
            st.metrics.rejected("other_device");
            refused(403, why).await;
            return Err(ApiError::Forbidden(why.into()));
        }
        if st.store.ddi_device(&key).await?.is_none() {
            let why = "this device joined with Fleetcare's agent; its credential is not a \
                       target token (fleetcare ddi add-target makes one)";
            refused(403, why).await;
            return Err(ApiError::Forbidden(why.into()));
        }
        key
    } else {
        let holder = st.store.gateway_tenant(&secret::hash(&token)).await?;
        let Some(tenant_id) = holder.filter(|t| Some(*t) == tenant_id) else {
            let why = "unknown or revoked gateway token for this tenant";
            let e = extract::failed(st, client.ip, why);
            if e.status() == StatusCode::UNAUTHORIZED {
                refused(401, why).await;
            }
            return Err(e);
        };
        let key = DeviceKey {
            tenant: tenant_id,
            device_id,
        };
        if st.store.ddi_device(&key).await?.is_none() {
            join_through_gateway(st, &key).await.inspect_err(|e| {
                if e.status() == StatusCode::FORBIDDEN {
                    tracing::warn!(device = %key.device_id, "a gateway named an agent's device");
                }
            })?;
        }
        key
    };
    if st.settings.device_client_cert == crate::config::ClientCert::Required
        && client.cert.is_none()
    {
        refused(
            401,
            "this center requires a device certificate (mutual TLS)",
        )
        .await;
        return Err(extract::refuse(
            st,
            "this center requires a device certificate (mutual TLS)",
        ));
    }
    extract::take_budget(st, &key)?;
    Ok(key)
}

/// A controllerId first seen through a gateway token becomes a device (an agent's device
/// stays the agent's: 403).
async fn join_through_gateway(st: &AppState, key: &DeviceKey) -> Result<(), ApiError> {
    if st.store.device(key).await?.is_some() {
        return Err(ApiError::Forbidden(format!(
            "device {} joined with Fleetcare's agent; a gateway cannot act as it",
            key.device_id
        )));
    }
    // A credential nobody holds: the device acts only through the gateway until an admin
    // makes it a target token.
    let unheld = secret::hash(&secret::generate(secret::SecretKind::Device));
    match st
        .store
        .enroll_device(key, UNKNOWN_MODEL, &unheld, None, st.clock.now_ms())
        .await?
    {
        Enrollment::Enrolled { .. } => {}
        // Another request made it a moment ago.
        Enrollment::Refused => {}
    }
    st.store.ddi_register(key, st.clock.now_ms()).await?;
    st.metrics.enrollments.inc();
    tracing::info!(device = %key.device_id, tenant = key.tenant, "a DDI target joined through its tenant's gateway token");
    Ok(())
}

async fn tenant_by_name(st: &AppState, name: &str) -> Result<Option<i64>, ApiError> {
    if name.is_empty() || name.len() > fleetcare_core::limits::MAX_NAME_LEN {
        return Ok(None);
    }
    let cached = st.tenant_ids.lock().expect("tenant ids").get(name).copied();
    if cached.is_some() {
        return Ok(cached);
    }
    let t = st.store.tenant_id(name).await?;
    if let Some(t) = t {
        let mut ids = st.tenant_ids.lock().expect("tenant ids");
        if ids.len() >= 100_000 {
            ids.clear();
        }
        ids.insert(name.to_owned(), t);
    }
    Ok(t)
}

/// Where links point: `public_url`, else the address the client used.
fn base_url(st: &AppState, client: &Client, headers: &HeaderMap, tenant: &str, id: &str) -> String {
    let origin = match &st.settings.public_url {
        Some(u) => u.clone(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    h.len() <= 255
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                })
                .unwrap_or("localhost");
            format!("{}://{host}", if client.https { "https" } else { "http" })
        }
    };
    format!("{origin}/{tenant}/controller/v1/{id}")
}

fn link(href: String) -> w::Link {
    w::Link { href }
}

fn steps_of(j: &JobRecord) -> Result<Vec<SoftwareStep>, ApiError> {
    serde_json::from_str(&j.steps_json)
        .map_err(|e| ApiError::Internal(format!("stored job steps: {e}")))
}

/// The device's action: its oldest open job that may run now (approved, its releases
/// deliverable).
async fn current_action(st: &AppState, key: &DeviceKey) -> Result<Option<JobRecord>, ApiError> {
    let mut avail = Availability::default();
    for j in st.store.open_jobs(key).await? {
        if j.state == "awaiting_approval" {
            continue;
        }
        if avail.steps(st, key.tenant, &steps_of(&j)?).await?.is_some() {
            continue;
        }
        return Ok(Some(j));
    }
    Ok(None)
}

/// Why the center wants the device's attributes now, if it does.
async fn wants_config(
    st: &AppState,
    key: &DeviceKey,
    action: Option<&JobRecord>,
) -> Result<Option<Trigger>, ApiError> {
    if action.is_some_and(|j| j.state == "health_check")
        || st
            .store
            .ddi_device(key)
            .await?
            .is_some_and(|d| d.report_requested)
    {
        return Ok(Some(Trigger::Request));
    }
    let Some(d) = st.store.device(key).await? else {
        return Ok(Some(Trigger::Connect));
    };
    let interval_ms = 1000
        * i64::try_from(
            d.report_interval_s
                .unwrap_or(fleetcare_core::limits::DEFAULT_REPORT_INTERVAL_S),
        )
        .unwrap_or(i64::MAX / 1000);
    Ok(match d.last_report {
        None => Some(Trigger::Connect),
        Some(r) if st.clock.now_ms() - r.received_at_ms >= interval_ms => Some(Trigger::Periodic),
        Some(_) => None,
    })
}

/// `GET /{tenant}/controller/v1/{controllerId}`: how long to sleep and what to fetch.
pub async fn poll(
    State(st): State<AppState>,
    client: Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let key = authenticate(&st, &client, &headers, (&method, &uri), &tenant, &id).await?;
    // A poll is a long poll that returns at once: the device is online for the poll grace,
    // and commands sent to it meanwhile are read here. A DDI client can act only on a
    // request for a report (it is asked for its attributes); others stay with the center.
    let arriving = st.devices.hub.online(&key).is_none();
    let mailbox = st.devices.hub.poll(&key);
    if arriving {
        st.devices
            .arrived(&key, crate::devices::hub::Via::Poll)
            .await;
    }
    let commands = mailbox.drain();
    st.devices.hub.poll_done(&mailbox);
    st.metrics.polls.inc();
    if commands.contains(&fleetcare_wire::device::Command::RequestReport) {
        st.store.ddi_request_report(&key, st.clock.now_ms()).await?;
    }
    let base = base_url(&st, &client, &headers, &tenant, &id);
    let device = st.store.device(&key).await?;
    let sleep = device
        .as_ref()
        .and_then(|d| d.report_interval_s)
        .unwrap_or(st.settings.ddi_poll_s);
    let mut links = BTreeMap::new();
    let action = current_action(&st, &key).await?;
    if let Some(c) = st.store.ddi_cancels(&key).await?.first() {
        links.insert(
            "cancelAction".into(),
            link(format!("{base}/cancelAction/{c}")),
        );
    } else if let Some(j) = &action {
        // The query names the job's state, so a client caching by URL sees a change.
        let mut h = Sha256::new();
        h.update(j.state.as_bytes());
        h.update(j.updated_at_ms.to_be_bytes());
        let tag: String = h.finalize()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        links.insert(
            "deploymentBase".into(),
            link(format!("{base}/deploymentBase/{}?c={tag}", j.id)),
        );
    }
    if wants_config(&st, &key, action.as_ref()).await?.is_some() {
        links.insert("configData".into(), link(format!("{base}/configData")));
    }
    if let Some(done) = last_succeeded(&st, &key).await? {
        links.insert(
            "installedBase".into(),
            link(format!("{base}/installedBase/{}", done.id)),
        );
    }
    let body = w::Poll {
        config: w::PollConfig {
            polling: w::Polling {
                sleep: super::sleep_text(sleep),
            },
        },
        links,
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let etag: String = Sha256::digest(&bytes)[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let etag = format!("\"{etag}\"");
    let mut res = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/hal+json"),
            )],
            bytes,
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    Ok(res)
}

async fn last_succeeded(st: &AppState, key: &DeviceKey) -> Result<Option<JobRecord>, ApiError> {
    let f = fleetcare_store::JobFilter {
        device_id: Some(key.device_id.as_str().to_owned()),
        state: Some("succeeded".into()),
        before_id: None,
    };
    Ok(st.store.jobs(key.tenant, &f, 1).await?.pop())
}

/// The job of this device named by an action id.
async fn job_of(st: &AppState, key: &DeviceKey, id: u64) -> Result<JobRecord, ApiError> {
    st.store
        .job(key.tenant, id)
        .await?
        .filter(|j| j.device_id == key.device_id.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("action {id} of this device")))
}

/// An artifact's SHA-1 and MD5: kept since its upload, or computed once from its file.
async fn digests(st: &AppState, sha256: &str) -> Result<(String, String), ApiError> {
    if let Some(d) = st.store.artifact_digests(sha256).await? {
        return Ok(d);
    }
    let path = st.artifacts.path(sha256);
    let (sha1, md5) =
        tokio::task::spawn_blocking(move || crate::delivery::artifacts::other_digests(&path))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| ApiError::Internal(format!("reading the artifact: {e}")))?;
    st.store.put_artifact_digests(sha256, &sha1, &md5).await?;
    Ok((sha1, md5))
}

/// The deployment a job is: one chunk per step.
async fn deployment(
    st: &AppState,
    key: &DeviceKey,
    base: &str,
    j: &JobRecord,
) -> Result<w::Deployment, ApiError> {
    let mut chunks = Vec::new();
    for (i, s) in steps_of(j)?.iter().enumerate() {
        let mut artifacts = Vec::new();
        if let Some(r) = st.store.release(key.tenant, &s.product, &s.to).await? {
            let arts: Vec<fleetcare_trust::Artifact> = serde_json::from_str(&r.artifacts_json)
                .map_err(|e| ApiError::Internal(format!("release artifacts: {e}")))?;
            for a in arts {
                let (sha1, md5) = digests(st, &a.sha256).await?;
                let file = format!(
                    "{base}/softwaremodules/{}/artifacts/{}",
                    module_id(j.id, i),
                    a.name.as_str()
                );
                let (dl, md5l) = if base.starts_with("https:") {
                    ("download", "md5sum")
                } else {
                    ("download-http", "md5sum-http")
                };
                artifacts.push(w::Artifact {
                    filename: a.name.as_str().to_owned(),
                    hashes: w::Hashes {
                        sha1,
                        md5,
                        sha256: a.sha256.clone(),
                    },
                    size: a.size,
                    links: [
                        (dl.to_owned(), link(file.clone())),
                        (md5l.to_owned(), link(format!("{file}.MD5SUM"))),
                    ]
                    .into(),
                });
            }
        }
        chunks.push(w::Chunk {
            part: s.slot.clone(),
            version: s.to.clone(),
            name: s.product.clone(),
            artifacts,
        });
    }
    let window = st
        .rollouts
        .device_window(key.tenant, key.device_id.as_str(), st.clock.now_ms());
    let events = st.store.job_events(key.tenant, j.id).await?;
    let messages: Vec<String> = events
        .iter()
        .rev()
        .take(10)
        .map(|e| match &e.detail {
            Some(d) => format!("{}: {d}", e.state),
            None => e.state.clone(),
        })
        .collect();
    Ok(w::Deployment {
        id: j.id.to_string(),
        deployment: w::DeploymentBody {
            download: "forced".into(),
            update: if window == Some(false) {
                "skip"
            } else {
                "forced"
            }
            .into(),
            maintenance_window: window
                .map(|open| if open { "available" } else { "unavailable" }.into()),
            chunks,
        },
        action_history: Some(w::ActionHistory {
            status: j.state.clone(),
            messages,
        }),
    })
}

/// `GET …/deploymentBase/{actionId}`.
pub async fn deployment_base(
    State(st): State<AppState>,
    client: Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((tenant, id, action)): Path<(String, String, u64)>,
) -> Result<Json<w::Deployment>, ApiError> {
    let key = authenticate(&st, &client, &headers, (&method, &uri), &tenant, &id).await?;
    let j = job_of(&st, &key, action).await?;
    if fleetcare_store::TERMINAL_JOB_STATES.contains(&j.state.as_str())
        || j.state == "awaiting_approval"
    {
        return Err(ApiError::NotFound(format!(
            "open action {action} of this device"
        )));
    }
    st.store.ddi_fetched(&key, j.id, st.clock.now_ms()).await?;
    let base = base_url(&st, &client, &headers, &tenant, &id);
    Ok(Json(deployment(&st, &key, &base, &j).await?))
}

/// `GET …/installedBase/{actionId}`: a finished action.
pub async fn installed_base(
    State(st): State<AppState>,
    client: Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((tenant, id, action)): Path<(String, String, u64)>,
) -> Result<Json<w::Deployment>, ApiError> {
    let key = authenticate(&st, &client, &headers, (&method, &uri), &tenant, &id).await?;
    let j = job_of(&st, &key, action).await?;
    if j.state != "succeeded" {
        return Err(ApiError::NotFound(format!(
            "installed action {action} of this device"
        )));
    }
    let base = base_url(&st, &client, &headers, &tenant, &id);
    Ok(Json(deployment(&st, &key, &base, &j).await?))
}

/// After a job moved: the live pages, and when it is over the rollouts and the fix loop.
async fn moved(st: &AppState, key: &DeviceKey, job: u64, state: &str) -> Result<(), ApiError> {
    st.events.device(key.tenant, key.device_id.as_str());
    if fleetcare_store::TERMINAL_JOB_STATES.contains(&state) {
        st.rollouts.nudge();
        st.diag.job_finished(st, key, job, state).await?;
    }
    Ok(())
}

/// `POST …/deploymentBase/{actionId}/feedback`.
pub async fn feedback(
    State(st): State<AppState>,
    client: Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((tenant, id, action)): Path<(String, String, u64)>,
    JsonBody(f): JsonBody<w::Feedback>,
) -> Result<StatusCode, ApiError> {
    let key = authenticate(&st, &client, &headers, (&method, &uri), &tenant, &id).await?;
    let effect = super::effect(&f).map_err(ApiError::BadRequest)?;
    let j = job_of(&st, &key, action).await?;
    let detail = super::detail_text(&f);
    let now = st.clock.now_ms();
    let over = fleetcare_store::TERMINAL_JOB_STATES.contains(&j.state.as_str());
    let progress = f
        .status
        .result
        .progress
        .map(|p| serde_json::json!({ "chunks_done": p.cnt, "chunks_total": p.of }).to_string());
    match effect {
        _ if over => {
            // A job already over stays over; what the device says is kept.
            let note = format!("the device said {} after the job ended", f.status.execution);
            st.store
                .note_job(
                    key.tenant,
                    j.id,
                    "ddi_feedback",
                    Some(&join(&note, detail.as_deref())),
                    now,
                )
                .await?;
        }
        Effect::Note => {
            st.store
                .note_job(
                    key.tenant,
                    j.id,
                    &f.status.execution,
                    detail.as_deref(),
                    now,
                )
                .await?;
        }
        Effect::Progress(to) => {
            let t = Transition {
                detail: detail.as_deref(),
                progress_json: progress.as_deref(),
                ..Transition::new(super::states_before(to), to)
            };
            if st.store.transition_job(key.tenant, j.id, &t, now).await? {
                tracing::info!(device = %key.device_id, job = j.id, state = to, "job status (DDI)");
                moved(&st, &key, j.id, to).await?;
            } else if progress.is_some() {
                let here = [j.state.as_str()];
                let t = Transition {
                    progress_json: progress.as_deref(),
                    event: false,
                    ..Transition::new(&here, &j.state)
                };
                st.store.transition_job(key.tenant, j.id, &t, now).await?;
            }
        }
        Effect::Failed(reason) => {
            let t = Transition {
                reason: Some(reason),
                detail: detail.as_deref(),
                ..Transition::new(RUNNING, "failed")
            };
            if st.store.transition_job(key.tenant, j.id, &t, now).await? {
                tracing::info!(device = %key.device_id, job = j.id, reason, "job failed (DDI)");
                moved(&st, &key, j.id, "failed").await?;
            }
        }
        Effect::Installed => {
            if st
                .rollouts
                .device_window(key.tenant, key.device_id.as_str(), now)
                == Some(false)
                && j.state == "queued"
            {
                // The answer to `update: skip` (SWUpdate says "closed, success"): nothing
                // was installed.
                st.store
                    .note_job(
                        key.tenant,
                        j.id,
                        "skipped",
                        Some("outside the site's maintenance window"),
                        now,
                    )
                    .await?;
            } else {
                installed(&st, &key, &j, detail.as_deref()).await?;
            }
        }
    }
    Ok(StatusCode::OK)
}

fn join(a: &str, b: Option<&str>) -> String {
    match b {
        Some(b) => format!("{a}: {b}"),
        None => a.to_owned(),
    }
}

/// Job states a DDI device may move a job from.
const RUNNING: &[&str] = &[
    "queued",
    "downloading",
    "downloaded",
    "verifying",
    "installing",
    "activating",
    "health_check",
];

/// The device says it installed: succeeded if its current structure already shows every
/// step's version, else the job awaits the report that does.
async fn installed(
    st: &AppState,
    key: &DeviceKey,
    j: &JobRecord,
    detail: Option<&str>,
) -> Result<(), ApiError> {
    let now = st.clock.now_ms();
    let steps = steps_of(j)?;
    let shows = match st.store.device(key).await? {
        Some(d) => d.structure.as_ref().is_some_and(|s| {
            let units: Vec<fleetcare_wire::Unit> = s.units().cloned().collect();
            shows_steps(&units, &steps)
        }),
        None => false,
    };
    let to = if shows { "succeeded" } else { "health_check" };
    let t = Transition {
        detail: Some(detail.unwrap_or(if shows {
            "installed; the device's report shows it"
        } else {
            "installed, the device says; awaiting its report"
        })),
        ..Transition::new(&RUNNING[..6], to)
    };
    if st.store.transition_job(key.tenant, j.id, &t, now).await? {
        tracing::info!(device = %key.device_id, job = j.id, state = to, "job status (DDI)");
        moved(st, key, j.id, to).await?;
    }
    Ok(())
}

/// Whether units show every step's target version.
fn shows_steps(units: &[fleetcare_wire::Unit], steps: &[SoftwareStep]) -> bool {
    steps.iter().all(|s| {
        units.iter().any(|u| {
            u.slot == s.slot
                && u.software
                    .iter()
                    .any(|sw| sw.product == s.product && sw.version == s.to && sw.active)
        })
    })
}

/// A report arrived: jobs that await it succeed if it shows their versions, and fail if it
/// does not.
async fn settle(
    st: &AppState,
    key: &DeviceKey,
    units: &[fleetcare_wire::Unit],
) -> Result<(), ApiError> {
    for j in st.store.open_jobs(key).await? {
        if j.state != "health_check" {
            continue;
        }
        let steps = steps_of(&j)?;
        let (to, reason, detail) = if shows_steps(units, &steps) {
            (
                "succeeded",
                None,
                "the device's report shows the new versions".to_owned(),
            )
        } else {
            let now: Vec<String> = steps
                .iter()
                .map(|s| {
                    let v = units
                        .iter()
                        .find(|u| u.slot == s.slot)
                        .and_then(|u| {
                            u.software
                                .iter()
                                .find(|sw| sw.product == s.product && sw.active)
                        })
                        .map_or("nothing", |sw| sw.version.as_str());
                    format!("{} {} on {} (wanted {})", s.product, v, s.slot, s.to)
                })
                .collect();
            (
                "failed",
                Some("install"),
                format!(
                    "the device said it installed, but its report shows {}",
                    now.join(", ")
                ),
            )
        };
        let t = Transition {
            reason,
            detail: Some(&detail),
            ..Transition::new(&["health_check"], to)
        };
        if st
            .store
            .transition_job(key.tenant, j.id, &t, st.clock.now_ms())
            .await?
        {
            tracing::info!(device = %key.device_id, job = j.id, state = to, "job settled by the device's report (DDI)");
            moved(st, key, j.id, to).await?;
        }
    }
    Ok(())
}

/// `GET …/cancelAction/{actionId}`.
pub async fn cancel_action(
    State(st): State<AppState>,
    client: Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((tenant, id, action)): Path<(String, String, u64)>,
) -> Result<Json<w::CancelAction>, ApiError> {
    let key = authenticate(&st, &client, &headers, (&method, &uri), &tenant, &id).await?;
    let j = job_of(&st, &key, action).await?;
    if j.reason.as_deref() != Some("cancelled") {
        return Err(ApiError::NotFound(format!(
            "cancellation of action {action}"
        )));
    }
    Ok(Json(w::CancelAction {
        id: j.id.to_string(),
        cancel_action: w::StopId {
            stop_id: j.id.to_string(),
        },
    }))
}

/// `POST …/cancelAction/{actionId}/feedback`: the device acknowledged or refused.
pub async fn cancel_feedback(
    State(st): State<AppState>,
    client: Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((tenant, id, action)): Path<(String, String, u64)>,
    JsonBody(f): JsonBody<w::Feedback>,
) -> Result<StatusCode, ApiError> {
    let key = authenticate(&st, &client, &headers, (&method, &uri), &tenant, &id).await?;
    let j = job_of(&st, &key, action).await?;
    let answer = match (
        f.status.execution.as_str(),
        f.status.result.finished.as_str(),
    ) {
        ("closed" | "canceled", "success" | "none") => "acknowledged",
        ("rejected", _) | (_, "failure") => "rejected",
        ("proceeding" | "scheduled" | "resumed", _) => return Ok(StatusCode::OK),
        (e, _) => {
            return Err(ApiError::BadRequest(format!(
                "status.execution {e:?}: closed, canceled, rejected or proceeding"
            )));
        }
    };
    let now = st.clock.now_ms();
    if st.store.ddi_cancel_answer(&key, j.id, answer, now).await? {
        st.store
            .note_job(
                key.tenant,
                j.id,
                &format!("cancel_{answer}"),
                super::detail_text(&f).as_deref(),
                now,
            )
            .await?;
        st.events.device(key.tenant, key.device_id.as_str());
        tracing::info!(device = %key.device_id, job = j.id, answer, "the device answered a cancellation (DDI)");
    }
    Ok(StatusCode::OK)
}

/// `PUT …/configData`: the device's attributes; in the flattened form, its structure.
pub async fn config_data(
    State(st): State<AppState>,
    client: Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((tenant, id)): Path<(String, String)>,
    JsonBody(c): JsonBody<w::ConfigData>,
) -> Result<StatusCode, ApiError> {
    let key = authenticate(&st, &client, &headers, (&method, &uri), &tenant, &id).await?;
    let trigger = wants_config(&st, &key, current_action(&st, &key).await?.as_ref())
        .await?
        .unwrap_or(Trigger::Connect);
    for _ in 0..CONFIG_RETRIES {
        let Some(dd) = st.store.ddi_device(&key).await? else {
            return Err(ApiError::NotFound(format!("DDI target {}", key.device_id)));
        };
        let attrs = super::apply_config(&dd.attributes, &c).map_err(|e| {
            st.metrics.rejected("invalid_report");
            ApiError::BadRequest(format!("configData: {e}"))
        })?;
        let mut makers = BTreeMap::new();
        for (product, version) in super::unnamed_makers(&attrs) {
            if let Some(r) = st.store.release(key.tenant, &product, &version).await? {
                makers.insert((product, version), r.maker);
            }
        }
        let flat = super::flattened(&attrs, &makers).map_err(|e| {
            st.metrics.rejected("invalid_report");
            ApiError::BadRequest(format!("configData: {e}"))
        })?;
        let report = match &flat {
            Some(f) => {
                let model = match &f.model {
                    Some(m) => m.clone(),
                    None => st
                        .store
                        .device(&key)
                        .await?
                        .map_or_else(|| UNKNOWN_MODEL.to_owned(), |d| d.model),
                };
                // Refused here, before anything is stored.
                structure::validate_report(
                    key.device_id.as_str(),
                    &model,
                    f.units.clone(),
                    &f.operating,
                )
                .map_err(|e| {
                    st.metrics.rejected("invalid_report");
                    ApiError::BadRequest(format!("configData: {e}"))
                })?;
                Some(StructureReport {
                    device_id: key.device_id.as_str().to_owned(),
                    model,
                    seq: dd.seq + 1,
                    trigger,
                    observed_at_ms: st.clock.now_ms(),
                    units: f.units.clone(),
                    operating: f.operating.clone(),
                    supplies: Vec::new(),
                    install_blocked: None,
                })
            }
            None => None,
        };
        if !st.store.ddi_set_attributes(&key, dd.seq, &attrs).await? {
            continue;
        }
        if let Some(r) = report {
            let units = r.units.clone();
            crate::devices::protocol::take_report(&st, key.clone(), r).await?;
            settle(&st, &key, &units).await?;
        }
        return Ok(StatusCode::OK);
    }
    Err(ApiError::Conflict {
        code: "busy",
        message: "the device's attributes changed under this request too often; send again".into(),
    })
}

/// `GET …/softwaremodules/{moduleId}/artifacts/{fileName}` (and `{fileName}.MD5SUM`).
pub async fn download(
    State(st): State<AppState>,
    client: Client,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((tenant, id, module, file)): Path<(String, String, u64, String)>,
) -> Result<Response, ApiError> {
    let key = authenticate(&st, &client, &headers, (&method, &uri), &tenant, &id).await?;
    let (job, step) = module_parts(module);
    let j = job_of(&st, &key, job).await?;
    let steps = steps_of(&j)?;
    let s = steps
        .get(step)
        .ok_or_else(|| ApiError::NotFound(format!("software module {module}")))?;
    let r = st
        .store
        .release(key.tenant, &s.product, &s.to)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{} {}", s.product, s.to)))?;
    let arts: Vec<fleetcare_trust::Artifact> = serde_json::from_str(&r.artifacts_json)
        .map_err(|e| ApiError::Internal(format!("release artifacts: {e}")))?;
    let (name, md5sum) = match file.strip_suffix(".MD5SUM") {
        Some(n) => (n, true),
        None => (file.as_str(), false),
    };
    let a = arts
        .iter()
        .find(|a| a.name.as_str() == name)
        .ok_or_else(|| {
            ApiError::NotFound(format!("artifact {name} of software module {module}"))
        })?;
    if md5sum {
        let (_, md5) = digests(&st, &a.sha256).await?;
        return Ok(format!("{md5}  {name}\n").into_response());
    }
    let size = st
        .store
        .artifact(key.tenant, &a.sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("artifact {name} (not uploaded yet)")))?;
    let hot = st.artifacts.hot(&a.sha256, size).await?;
    serve_file(
        &st.artifacts.path(&a.sha256),
        hot,
        &a.sha256,
        size,
        &headers,
    )
    .await
}
