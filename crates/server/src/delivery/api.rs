//! Software delivery's HTTP handlers: release key lists and signed releases, artifact uploads
//! and downloads, jobs for operators (create, list, show, approve, cancel) and the device's job
//! endpoints.

use crate::delivery::artifacts::{serve_file, valid_sha};
use crate::delivery::{Availability, check_steps, job_views, system_time, tell_waiting, trust_err};
use crate::extract::Query;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use fleetcare_core::clock::rfc3339;
use fleetcare_store::{DeviceKey, NewJob, ReleaseRecord, TenantId, Transition};
use fleetcare_store::{JobFilter, JobRecord};
use fleetcare_trust::{
    Envelope, KEYS_TYPE, KeyList, MAX_ENVELOPE_BYTES, RELEASE_TYPE, ReleaseManifest,
};
use fleetcare_wire::ErrorBody;
use fleetcare_wire::compat as cw;
use fleetcare_wire::compat::SoftwareStep;
use fleetcare_wire::delivery as w;
use fleetcare_wire::device::Command;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::device_key;
use crate::extract::{DeviceAuth, JsonBody, OperatorAuth};

/// Envelopes are small; the route's body limit.
pub const MAX_ENVELOPE_BODY: usize = MAX_ENVELOPE_BYTES;

fn parse_envelope(body: &[u8]) -> Result<Envelope, ApiError> {
    Envelope::parse(body).map_err(trust_err)
}

fn envelope_value(text: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::Internal(format!("stored envelope: {e}")))
}

fn key_list_view(rec: fleetcare_store::KeyListRecord) -> Result<w::KeyListView, ApiError> {
    let env: Envelope = serde_json::from_str(&rec.envelope)
        .map_err(|e| ApiError::Internal(format!("stored key list: {e}")))?;
    let list =
        KeyList::from_json(&env.unverified_payload().map_err(trust_err)?).map_err(trust_err)?;
    Ok(w::KeyListView {
        version: list.version,
        expires: list.expires,
        threshold: list.threshold as u64,
        keyids: list.keys.iter().map(|k| k.keyid().to_owned()).collect(),
        envelope: envelope_value(&rec.envelope)?,
        published_by: rec.published_by,
        published_at: rfc3339(rec.published_at_ms),
    })
}

/// Publish a release key list (signed by root keys; agents check those signatures against
/// their provisioned root). Its version must be newer than the newest published.
#[utoipa::path(post, path = "/api/v1/keys", request_body(content = Object, description = "a DSSE envelope"),
    responses((status = 200, body = w::KeyListView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn publish_keys(
    State(st): State<AppState>,
    op: OperatorAuth,
    body: Bytes,
) -> Result<Json<w::KeyListView>, ApiError> {
    let env = parse_envelope(&body)?;
    if env.payload_type != KEYS_TYPE {
        return Err(ApiError::BadRequest(format!(
            "this is a {}, not a key list ({KEYS_TYPE})",
            env.payload_type
        )));
    }
    let list =
        KeyList::from_json(&env.unverified_payload().map_err(trust_err)?).map_err(trust_err)?;
    if let Some(cur) = st.store.key_list(op.0.tenant, None).await?
        && list.version < cur.version
    {
        return Err(ApiError::Conflict {
            code: "rollback",
            message: format!(
                "key list version {} is older than the published version {}",
                list.version, cur.version
            ),
        });
    }
    let text = serde_json::to_string(&env).expect("an envelope serializes");
    st.store
        .publish_key_list(
            op.0.tenant,
            list.version,
            &text,
            &op.0.name,
            st.clock.now_ms(),
        )
        .await?;
    tracing::info!(tenant = op.0.tenant, version = list.version, operator = %op.0.name, "key list published");
    let rec = st
        .store
        .key_list(op.0.tenant, Some(list.version))
        .await?
        .ok_or_else(|| ApiError::Internal("the key list just stored is gone".into()))?;
    Ok(Json(key_list_view(rec)?))
}

#[utoipa::path(get, path = "/api/v1/keys",
    responses((status = 200, body = w::KeyListView), (status = 404, body = ErrorBody)))]
pub async fn show_keys(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::KeyListView>, ApiError> {
    let rec = st
        .store
        .key_list(op.0.tenant, None)
        .await?
        .ok_or_else(|| ApiError::NotFound("a published key list".into()))?;
    Ok(Json(key_list_view(rec)?))
}

async fn release_view(
    st: &AppState,
    tenant: TenantId,
    r: ReleaseRecord,
) -> Result<w::Release, ApiError> {
    let arts: Vec<fleetcare_trust::Artifact> = serde_json::from_str(&r.artifacts_json)
        .map_err(|e| ApiError::Internal(format!("stored release artifacts: {e}")))?;
    let mut artifacts = Vec::with_capacity(arts.len());
    for a in arts {
        let stored = st.store.artifact(tenant, &a.sha256).await? == Some(a.size);
        artifacts.push(w::ReleaseArtifact {
            name: a.name.to_string(),
            size: a.size,
            sha256: a.sha256,
            stored,
        });
    }
    Ok(w::Release {
        complete: artifacts.iter().all(|a| a.stored),
        product: r.product,
        maker: r.maker,
        version: r.version,
        counter: r.counter,
        artifacts,
        published_by: r.published_by,
        published_at: rfc3339(r.published_at_ms),
    })
}

/// Publish a signed release manifest; its artifacts are uploaded next
/// (`PUT /api/v1/artifacts/{sha256}`). It must be signed by enough keys of the newest
/// published key list and not expired.
#[utoipa::path(post, path = "/api/v1/releases", request_body(content = Object, description = "a DSSE envelope"),
    responses((status = 200, body = w::Release), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn publish_release(
    State(st): State<AppState>,
    op: OperatorAuth,
    body: Bytes,
) -> Result<Json<w::Release>, ApiError> {
    let env = parse_envelope(&body)?;
    let keys = st.store.key_list(op.0.tenant, None).await?.ok_or_else(|| {
        ApiError::BadRequest(
            "no key list is published: publish one first (fleetcare keys publish)".into(),
        )
    })?;
    let keys_env: Envelope = serde_json::from_str(&keys.envelope)
        .map_err(|e| ApiError::Internal(format!("stored key list: {e}")))?;
    let list = KeyList::from_json(&keys_env.unverified_payload().map_err(trust_err)?)
        .map_err(trust_err)?;
    let payload = env
        .verify(RELEASE_TYPE, &list.keys, list.threshold)
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "signature: {e} (checked against key list version {})",
                list.version
            ))
        })?;
    let m = ReleaseManifest::from_json(&payload).map_err(trust_err)?;
    if fleetcare_trust::parse_time("release", &m.expires).map_err(trust_err)?
        <= system_time(st.clock.now_ms())
    {
        return Err(ApiError::BadRequest(format!(
            "expired: the release expired at {}",
            m.expires
        )));
    }
    let rec = ReleaseRecord {
        product: m.product.clone(),
        version: m.version.clone(),
        maker: m.maker.clone(),
        counter: m.counter,
        envelope: serde_json::to_string(&env).expect("an envelope serializes"),
        artifacts_json: serde_json::to_string(&m.artifacts).expect("artifacts serialize"),
        published_by: op.0.name.clone(),
        published_at_ms: st.clock.now_ms(),
    };
    let created = st.store.publish_release(op.0.tenant, &rec).await?;
    if created {
        tracing::info!(tenant = op.0.tenant, product = %m.product, version = %m.version, operator = %op.0.name, "release published");
        tell_waiting(&st, op.0.tenant, |r| {
            r.product == m.product && r.version == m.version
        })
        .await?;
    }
    let rec = st
        .store
        .release(op.0.tenant, &m.product, &m.version)
        .await?
        .ok_or_else(|| ApiError::Internal("the release just stored is gone".into()))?;
    Ok(Json(release_view(&st, op.0.tenant, rec).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReleaseQuery {
    /// Only this product's releases.
    pub product: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/releases", params(ReleaseQuery),
    responses((status = 200, body = w::ReleaseList)))]
pub async fn list_releases(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<ReleaseQuery>,
) -> Result<Json<w::ReleaseList>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = st
        .store
        .releases(op.0.tenant, q.product.as_deref(), limit)
        .await?;
    let mut releases = Vec::with_capacity(rows.len());
    for r in rows {
        releases.push(release_view(&st, op.0.tenant, r).await?);
    }
    Ok(Json(w::ReleaseList { releases }))
}

/// Upload an artifact that a published release names; it is checked against the size and
/// SHA-256 the release signed while it streams, and kept only if both match.
#[utoipa::path(put, path = "/api/v1/artifacts/{sha256}", params(("sha256" = String, Path, description = "the artifact's SHA-256")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = w::ArtifactStored), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_artifact(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(sha256): Path<String>,
    req: Request,
) -> Result<Json<w::ArtifactStored>, ApiError> {
    valid_sha(&sha256)?;
    let size = st
        .store
        .release_artifact_size(op.0.tenant, &sha256)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "a published release naming artifact {sha256} (publish the release first)"
            ))
        })?;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len != size
    {
        return Err(ApiError::BadRequest(format!(
            "integrity: Content-Length is {len}, the release signed {size} bytes"
        )));
    }
    let put = st.artifacts.put(&sha256, size, req.into_body()).await?;
    if let crate::delivery::artifacts::Put::Created { sha1, md5 } = &put {
        st.store.put_artifact_digests(&sha256, sha1, md5).await?;
    }
    let created = put != crate::delivery::artifacts::Put::Held;
    st.store
        .add_artifact(op.0.tenant, &sha256, size, st.clock.now_ms())
        .await?;
    if created {
        tracing::info!(tenant = op.0.tenant, %sha256, size, "artifact stored");
        tell_waiting(&st, op.0.tenant, |r| r.artifacts_json.contains(&sha256)).await?;
    }
    Ok(Json(w::ArtifactStored {
        sha256,
        size,
        created,
    }))
}

/// Create a job for one device: install or switch software on one or more of its units,
/// all or none. It is queued at once and the device is told.
#[utoipa::path(post, path = "/api/v1/jobs", request_body = w::NewJobRequest,
    responses((status = 200, body = fleetcare_wire::compat::Job), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_job(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(req): JsonBody<w::NewJobRequest>,
) -> Result<Json<fleetcare_wire::compat::Job>, ApiError> {
    let key = device_key(&op, &req.device_id)?;
    let steps = check_steps(&st, &key, &req.steps).await?;
    let policy = st.store.policy(key.tenant).await?;
    let ttl_s = req
        .ttl_s
        .unwrap_or(policy.job_ttl_s)
        .clamp(60, 365 * 86_400);
    let now = st.clock.now_ms();
    let id = st
        .store
        .create_job(
            &key,
            &NewJob {
                origin: "operator".into(),
                state: "queued".into(),
                steps_json: serde_json::to_string(&steps).expect("steps serialize"),
                catalog_revision: None,
                created_by: op.0.name.clone(),
                expires_at_ms: now.saturating_add(i64::try_from(ttl_s * 1000).unwrap_or(i64::MAX)),
            },
            now,
        )
        .await?;
    st.metrics.jobs_created.inc();
    tracing::info!(device = %key.device_id, job = id, operator = %op.0.name, "job created");
    st.devices.send(&key, Command::JobsAvailable).await;
    let job = st
        .store
        .job(key.tenant, id)
        .await?
        .ok_or_else(|| ApiError::Internal("the job just created is gone".into()))?;
    job_views(&st, key.tenant, vec![job])
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::Internal("the job just created is gone".into()))
}

/// The device's open jobs that it can run now, with the signed releases they need and the
/// newest key list. A job whose releases are not all published (with every artifact held)
/// waits and is not offered yet (the operator sees why: `Job::waiting`).
#[utoipa::path(get, path = "/device/v1/jobs", responses((status = 200, body = w::DeviceJobs)))]
pub async fn device_jobs(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
) -> Result<Json<w::DeviceJobs>, ApiError> {
    let open = st.store.open_jobs(&key).await?;
    let mut jobs = Vec::new();
    let mut avail = Availability::default();
    for j in open {
        if j.state == "awaiting_approval" {
            continue;
        }
        let steps: Vec<SoftwareStep> = serde_json::from_str(&j.steps_json)
            .map_err(|e| ApiError::Internal(format!("stored job steps: {e}")))?;
        if avail.steps(&st, key.tenant, &steps).await?.is_some() {
            continue;
        }
        let mut releases = Vec::new();
        for s in steps.iter().filter(|s| s.action == "install") {
            let r = st
                .store
                .release(key.tenant, &s.product, &s.to)
                .await?
                .ok_or_else(|| ApiError::Internal(format!("{} {} is gone", s.product, s.to)))?;
            releases.push(envelope_value(&r.envelope)?);
        }
        jobs.push(w::DeviceJob {
            id: j.id,
            state: j.state,
            steps,
            releases,
            expires_at: rfc3339(j.expires_at_ms),
        });
    }
    let key_list = match st.store.key_list(key.tenant, None).await? {
        Some(k) => Some(envelope_value(&k.envelope)?),
        None => None,
    };
    Ok(Json(w::DeviceJobs { jobs, key_list }))
}

/// States a device may report, and the states it may report them from.
const RUNNING: &[&str] = &[
    "queued",
    "downloading",
    "downloaded",
    "verifying",
    "installing",
    "activating",
    "health_check",
];

/// A device reports where a job is. Idempotent: a job already over stays over and the answer
/// says its state.
#[utoipa::path(post, path = "/device/v1/jobs/{id}/status", params(("id" = u64, Path, description = "job id")),
    request_body = w::JobStatus,
    responses((status = 200, body = w::JobStatusAck), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn job_status(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
    Path(id): Path<u64>,
    JsonBody(s): JsonBody<w::JobStatus>,
) -> Result<Json<w::JobStatusAck>, ApiError> {
    let job = st
        .store
        .job(key.tenant, id)
        .await?
        .filter(|j| j.device_id == key.device_id.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("job {id} of this device")))?;
    if s.state == "busy" {
        // "Busy, later": the device will take the job when it can; the job stays as it is.
        if !fleetcare_store::TERMINAL_JOB_STATES.contains(&job.state.as_str()) {
            let detail: Option<String> = s.detail.as_ref().map(|d| d.chars().take(1000).collect());
            st.store
                .note_job(key.tenant, id, "busy", detail.as_deref(), st.clock.now_ms())
                .await?;
            tracing::info!(device = %key.device_id, job = id, "the device is busy; it takes the job later");
        }
        return Ok(Json(w::JobStatusAck { state: job.state }));
    }
    if !RUNNING.contains(&s.state.as_str())
        && !fleetcare_store::TERMINAL_JOB_STATES.contains(&s.state.as_str())
        || s.state == "queued"
    {
        return Err(ApiError::BadRequest(format!(
            "state {:?}: one of {}",
            s.state,
            w::JOB_STATES[2..].join(", ")
        )));
    }
    let over = matches!(s.state.as_str(), "failed" | "rolled_back");
    match s.reason.as_deref() {
        Some(r) if !w::REASONS.contains(&r) => {
            return Err(ApiError::BadRequest(format!(
                "reason {r:?}: one of {}",
                w::REASONS.join(", ")
            )));
        }
        None if over => {
            return Err(ApiError::BadRequest(format!(
                "a {} job needs a reason: one of {}",
                s.state,
                w::REASONS.join(", ")
            )));
        }
        _ => {}
    }
    let detail: Option<String> = s.detail.as_ref().map(|d| d.chars().take(1000).collect());
    let progress = s.bytes_done.map(|done| {
        serde_json::json!({ "bytes_done": done, "bytes_total": s.bytes_total }).to_string()
    });
    if job.state != s.state {
        let moved = st
            .store
            .transition_job(
                key.tenant,
                id,
                &Transition {
                    reason: s.reason.as_deref(),
                    detail: detail.as_deref(),
                    progress_json: progress.as_deref(),
                    ..Transition::new(RUNNING, &s.state)
                },
                st.clock.now_ms(),
            )
            .await?;
        if moved {
            tracing::info!(device = %key.device_id, job = id, state = %s.state, reason = ?s.reason, "job status");
            st.events.device(key.tenant, key.device_id.as_str());
            if fleetcare_store::TERMINAL_JOB_STATES.contains(&s.state.as_str()) {
                st.rollouts.nudge();
                st.diag.job_finished(&st, &key, id, &s.state).await?;
            }
        }
    } else if progress.is_some() {
        st.store
            .transition_job(
                key.tenant,
                id,
                &Transition {
                    progress_json: progress.as_deref(),
                    event: false,
                    ..Transition::new(RUNNING, &s.state)
                },
                st.clock.now_ms(),
            )
            .await?;
    }
    let now = st
        .store
        .job(key.tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id}")))?;
    if now.state == "awaiting_approval" {
        return Err(ApiError::Conflict {
            code: "not_approved",
            message: format!("job {id} awaits approval"),
        });
    }
    Ok(Json(w::JobStatusAck { state: now.state }))
}

/// An artifact's bytes, for a device of a tenant that holds it: `ETag` is the quoted hash,
/// `Range` (one range) gives 206, `If-Range` with another tag gives the whole file, and
/// `If-None-Match` with the tag gives 304.
#[utoipa::path(get, path = "/device/v1/artifacts/{sha256}", params(("sha256" = String, Path, description = "the artifact's SHA-256")),
    responses((status = 200, description = "the whole artifact"), (status = 206, description = "one range"),
        (status = 304, description = "not modified"), (status = 404, body = ErrorBody), (status = 416, description = "range not satisfiable")))]
pub async fn get_artifact(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
    Path(sha256): Path<String>,
    zero_copy: Option<axum::Extension<crate::sendfile::ZeroCopy>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    valid_sha(&sha256)?;
    let size = st
        .store
        .artifact(key.tenant, &sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("artifact {sha256}")))?;
    serve_file(&st.artifacts, &sha256, size, &headers, zero_copy.is_some()).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Only this device's jobs.
    pub device: Option<String>,
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Jobs older than this id (the previous page's `next_before`).
    pub before: Option<u64>,
    /// Jobs per page (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", params(JobsQuery), responses((status = 200, body = cw::JobList)))]
pub async fn list_jobs(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<JobsQuery>,
) -> Result<Json<cw::JobList>, ApiError> {
    if let Some(d) = &q.device {
        // An unknown device says so (with the nearest ids), not an empty list.
        crate::extract::known_device(&st, &device_key(&op, d)?).await?;
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = JobFilter {
        device_id: q.device,
        state: q.state,
        before_id: q.before,
    };
    let jobs = st.store.jobs(op.0.tenant, &filter, limit).await?;
    let next_before = (jobs.len() == limit as usize)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(cw::JobList {
        jobs: crate::delivery::job_views(&st, op.0.tenant, jobs).await?,
        next_before,
    }))
}

/// One job as the API shows it (saying why it waits, if it does).
async fn job_with_wait(st: &AppState, tenant: TenantId, id: u64) -> Result<cw::Job, ApiError> {
    let j = job_of(st, tenant, id).await?;
    crate::delivery::job_views(st, tenant, vec![j])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal("a job vanished".into()))
}

async fn job_of(st: &AppState, tenant: TenantId, id: u64) -> Result<JobRecord, ApiError> {
    st.store
        .job(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {id}")))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(("id" = u64, Path, description = "job id")),
    responses((status = 200, body = cw::Job), (status = 404, body = ErrorBody)))]
pub async fn show_job(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<cw::Job>, ApiError> {
    let mut job = job_with_wait(&st, op.0.tenant, id).await?;
    job.events = st
        .store
        .job_events(op.0.tenant, id)
        .await?
        .into_iter()
        .map(|e| cw::JobEvent {
            at: rfc3339(e.at_ms),
            state: e.state,
            reason: e.reason,
            detail: e.detail,
        })
        .collect();
    Ok(Json(job))
}

/// Approve a job awaiting approval: it is queued, and the device hears of it.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/approve", params(("id" = u64, Path, description = "job id")),
    responses((status = 200, body = cw::Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve_job(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<cw::Job>, ApiError> {
    let job = job_of(&st, op.0.tenant, id).await?;
    if !st
        .store
        .approve_job(op.0.tenant, id, &op.0.name, st.clock.now_ms())
        .await?
    {
        return Err(ApiError::Conflict {
            code: "not_awaiting_approval",
            message: format!("job {id} is {}, not awaiting approval", job.state),
        });
    }
    tracing::info!(job = id, operator = %op.0.name, "job approved");
    if let Ok(device_id) = fleetcare_core::DeviceId::parse(&job.device_id) {
        st.devices
            .send(
                &DeviceKey {
                    tenant: op.0.tenant,
                    device_id,
                },
                fleetcare_wire::device::Command::JobsAvailable,
            )
            .await;
    }
    Ok(Json(job_with_wait(&st, op.0.tenant, id).await?))
}

/// Cancel a job that has not started (awaiting approval or queued).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", params(("id" = u64, Path, description = "job id")),
    responses((status = 200, body = cw::Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_job(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<cw::Job>, ApiError> {
    let job = job_of(&st, op.0.tenant, id).await?;
    let detail = format!("cancelled by {}", op.0.name);
    // A DDI device can stop an action it has not installed yet (it answers the cancellation).
    let ddi = match fleetcare_core::DeviceId::parse(&job.device_id) {
        Ok(device_id) => st
            .store
            .ddi_device(&DeviceKey {
                tenant: op.0.tenant,
                device_id,
            })
            .await?
            .is_some(),
        Err(_) => false,
    };
    let from: &[&str] = if ddi {
        &["awaiting_approval", "queued", "downloading", "downloaded"]
    } else {
        &["awaiting_approval", "queued"]
    };
    if !st
        .store
        .transition_job(
            op.0.tenant,
            id,
            &Transition {
                reason: Some("cancelled"),
                detail: Some(&detail),
                ..Transition::new(from, "failed")
            },
            st.clock.now_ms(),
        )
        .await?
    {
        return Err(ApiError::Conflict {
            code: "job_started",
            message: format!(
                "job {id} is {}; only a job that has not started (or, on a DDI device, not \
                 begun to install) can be cancelled",
                job.state
            ),
        });
    }
    Ok(Json(job_with_wait(&st, op.0.tenant, id).await?))
}
