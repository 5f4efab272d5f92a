//! Software delivery at the center: release key lists, signed releases, content-addressed
//! artifacts (upload and Range downloads), operator jobs, and the device's job endpoints.
//!
//! The center checks a release's signatures against the newest published key list so that
//! mistakes show at once, but it is not what devices trust: agents verify everything again
//! against their provisioned root.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::extract::Query;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetcare_core::clock::rfc3339;
use fleetcare_store::{DeviceKey, NewJob, ReleaseRecord, StoreError, TenantId, Transition};
use fleetcare_trust::{
    Envelope, KEYS_TYPE, KeyList, MAX_ENVELOPE_BYTES, RELEASE_TYPE, ReleaseManifest, TrustError,
    is_sha256_hex,
};
use fleetcare_wire::ErrorBody;
use fleetcare_wire::compat::SoftwareStep;
use fleetcare_wire::delivery as w;
use fleetcare_wire::device::Command;
use futures_util::StreamExt as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use utoipa::IntoParams;

use crate::AppState;
use crate::compat::api::job_view;
use crate::error::ApiError;
use crate::extract::device_key;
use crate::extract::{DeviceAuth, JsonBody, OperatorAuth};

/// Envelopes are small; the route's body limit.
pub const MAX_ENVELOPE_BODY: usize = MAX_ENVELOPE_BYTES;
/// An upload that sends nothing for this long is abandoned.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(30);
/// Bytes read from an artifact file per chunk of a download.
const CHUNK: usize = 256 * 1024;

fn trust_err(e: TrustError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

/// Where the center keeps artifact bytes: `<root>/sha256/<2 hex>/<64 hex>`, and `<root>/tmp`
/// for uploads in progress. Artifacts being downloaded are kept in memory (up to a budget,
/// least recently used out first): loaded once, checked against their hash, and served to
/// every device from the same buffer.
#[derive(Debug)]
pub struct Artifacts {
    root: PathBuf,
    budget: u64,
    hot: std::sync::Mutex<Hot>,
}

#[derive(Debug, Default)]
struct Hot {
    /// By hash: the bytes once loaded (one loader; the others wait for it), and when last used.
    entries: std::collections::HashMap<String, (Arc<tokio::sync::OnceCell<Bytes>>, u64, u64)>,
    used: u64,
    tick: u64,
}

impl Artifacts {
    pub fn new(root: PathBuf, budget: u64) -> Artifacts {
        Artifacts {
            root,
            budget,
            hot: std::sync::Mutex::new(Hot::default()),
        }
    }

    /// The artifact's bytes from memory, loading and checking them if needed; `None` if it
    /// is too large for the budget (serve it from the file).
    pub async fn hot(&self, sha256: &str, size: u64) -> Result<Option<Bytes>, ApiError> {
        if size > self.budget / 2 {
            return Ok(None);
        }
        let cell = {
            let mut h = self
                .hot
                .lock()
                .expect("the artifact cache lock is never poisoned");
            h.tick += 1;
            let tick = h.tick;
            let fresh = !h.entries.contains_key(sha256);
            if fresh {
                // Make room: least recently used first.
                while h.used + size > self.budget {
                    let Some(old) = h
                        .entries
                        .iter()
                        .min_by_key(|(_, (_, t, _))| *t)
                        .map(|(k, _)| k.clone())
                    else {
                        break;
                    };
                    if let Some((_, _, n)) = h.entries.remove(&old) {
                        h.used = h.used.saturating_sub(n);
                    }
                }
                h.used += size;
            }
            let e = h
                .entries
                .entry(sha256.to_owned())
                .or_insert_with(|| (Arc::new(tokio::sync::OnceCell::new()), tick, size));
            e.1 = tick;
            e.0.clone()
        };
        let path = self.path(sha256);
        let expected = sha256.to_owned();
        let bytes = cell
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    let data = std::fs::read(&path).map_err(|e| {
                        ApiError::Internal(format!(
                            "artifact {expected} is recorded but unreadable: {e}"
                        ))
                    })?;
                    let got: String = Sha256::digest(&data)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    if got != expected {
                        return Err(ApiError::Internal(format!(
                            "artifact {expected} is damaged on disk (its SHA-256 is now {got})"
                        )));
                    }
                    Ok(Bytes::from(data))
                })
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
            })
            .await;
        match bytes {
            Ok(b) => Ok(Some(b.clone())),
            Err(e) => {
                let mut h = self
                    .hot
                    .lock()
                    .expect("the artifact cache lock is never poisoned");
                if h.entries.remove(sha256).is_some() {
                    h.used = h.used.saturating_sub(size);
                }
                Err(e)
            }
        }
    }

    /// The path of an artifact; `sha256` must already be validated hex.
    pub fn path(&self, sha256: &str) -> PathBuf {
        debug_assert!(is_sha256_hex(sha256));
        self.root.join("sha256").join(&sha256[..2]).join(sha256)
    }

    /// Stream `body` into the store; refused (and nothing kept) unless it is exactly `size`
    /// bytes hashing to `sha256`. `Ok(false)`: the artifact was already held.
    pub async fn put(&self, sha256: &str, size: u64, body: Body) -> Result<bool, ApiError> {
        let dest = self.path(sha256);
        if tokio::fs::metadata(&dest)
            .await
            .is_ok_and(|m| m.len() == size)
        {
            return Ok(false);
        }
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(|e| ApiError::Internal(format!("artifact directory: {e}")))?;
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| ApiError::Internal(e.to_string()))?;
        let tmp = tmp_dir.join(format!(
            "{sha256}.{}.part",
            nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        let result = self.receive(&tmp, &dest, sha256, size, body).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map(|()| true)
    }

    async fn receive(
        &self,
        tmp: &FsPath,
        dest: &FsPath,
        sha256: &str,
        size: u64,
        body: Body,
    ) -> Result<(), ApiError> {
        let io = |e: std::io::Error| ApiError::Internal(format!("writing the artifact: {e}"));
        let mut file = tokio::fs::File::create(tmp).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut got: u64 = 0;
        let mut stream = body.into_data_stream();
        loop {
            let next = tokio::time::timeout(UPLOAD_IDLE, stream.next())
                .await
                .map_err(|_| ApiError::Timeout(UPLOAD_IDLE))?;
            let Some(chunk) = next else { break };
            let chunk = chunk
                .map_err(|e| ApiError::BadRequest(format!("the upload was interrupted: {e}")))?;
            got += chunk.len() as u64;
            if got > size {
                return Err(ApiError::BadRequest(format!(
                    "integrity: the upload is longer than the {size} bytes the release signed"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io)?;
        }
        if got != size {
            return Err(ApiError::BadRequest(format!(
                "integrity: the upload is {got} bytes, the release signed {size}"
            )));
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if digest != sha256 {
            return Err(ApiError::BadRequest(format!(
                "integrity: the upload's SHA-256 is {digest}, the release signed {sha256}"
            )));
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        let parent = dest.parent().expect("an artifact path has a parent");
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
        tokio::fs::rename(tmp, dest).await.map_err(io)?;
        let parent = parent.to_owned();
        tokio::task::spawn_blocking(move || fleetcare_fs::sync_dir(&parent))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(io)?;
        Ok(())
    }
}

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
        <= SystemTime::UNIX_EPOCH + Duration::from_millis(st.clock.now_ms().max(0) as u64)
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

fn valid_sha(sha256: &str) -> Result<(), ApiError> {
    if is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{:?} is not a SHA-256 (64 lower-case hex digits)",
            sha256.chars().take(80).collect::<String>()
        )))
    }
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
    let created = st.artifacts.put(&sha256, size, req.into_body()).await?;
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

/// Resolve an operator's or a plan's steps against the device's structure and the published
/// releases: every problem at once.
async fn check_steps(
    st: &AppState,
    key: &DeviceKey,
    req: &[w::JobStepRequest],
) -> Result<Vec<SoftwareStep>, ApiError> {
    let rec = crate::extract::known_device(st, key).await?;
    if let Some(why) = rec.install_blocked {
        return Err(ApiError::Conflict {
            code: "cannot_install",
            message: format!("device {} cannot install software: {why}", key.device_id),
        });
    }
    let structure = rec.structure.ok_or_else(|| ApiError::Conflict {
        code: "no_structure",
        message: format!(
            "device {} has not reported its structure yet",
            key.device_id
        ),
    })?;
    let mut problems = Vec::new();
    let mut steps = Vec::new();
    if req.is_empty() || req.len() > fleetcare_core::limits::MAX_UNITS {
        problems.push(format!(
            "a job has 1 to {} steps",
            fleetcare_core::limits::MAX_UNITS
        ));
    }
    for (i, s) in req.iter().enumerate() {
        if req[..i]
            .iter()
            .any(|o| o.slot == s.slot && o.product == s.product)
        {
            problems.push(format!("{} {} is changed twice", s.slot, s.product));
            continue;
        }
        let Some(unit) = structure.units().find(|u| u.slot == s.slot) else {
            problems.push(format!("the device has no unit in slot {}", s.slot));
            continue;
        };
        let installed = unit.software.iter().find(|sw| sw.product == s.product);
        let maker = match s.action.as_str() {
            "install" => match st.store.release(key.tenant, &s.product, &s.version).await? {
                None => {
                    problems.push(format!("{} {} is not published", s.product, s.version));
                    continue;
                }
                Some(r) => {
                    let env: Envelope = serde_json::from_str(&r.envelope)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    let m =
                        ReleaseManifest::from_json(&env.unverified_payload().map_err(trust_err)?)
                            .map_err(trust_err)?;
                    if !m.targets_unit(&unit.model, &unit.hw_revision) {
                        problems.push(format!(
                            "{} {} is not made for {} revision {} (slot {})",
                            s.product, s.version, unit.model, unit.hw_revision, s.slot
                        ));
                        continue;
                    }
                    m.maker
                }
            },
            "switch" => match installed {
                Some(sw) => sw.maker.clone(),
                None => {
                    problems.push(format!(
                        "switch needs {} installed in slot {}",
                        s.product, s.slot
                    ));
                    continue;
                }
            },
            other => {
                problems.push(format!(
                    "action {other:?}: `install` or `switch` (step {})",
                    i + 1
                ));
                continue;
            }
        };
        steps.push(SoftwareStep {
            slot: s.slot.clone(),
            product: s.product.clone(),
            maker,
            from: installed.map(|sw| sw.version.clone()),
            to: s.version.clone(),
            action: s.action.clone(),
        });
    }
    if problems.is_empty() {
        Ok(steps)
    } else {
        Err(ApiError::Invalid {
            message: format!("the job was refused: {} problem(s)", problems.len()),
            problems,
        })
    }
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
    crate::cluster::send(&st, &key, Command::JobsAvailable).await;
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

/// Whether releases can be delivered: published, with every file on the center. Answers are
/// kept for the life of the value (one request), so a page of jobs asks once per release.
#[derive(Default)]
pub struct Availability {
    known: std::collections::HashMap<(String, String), Option<String>>,
}

impl Availability {
    /// Why `product version` cannot be delivered now; `None`: it can.
    pub async fn release(
        &mut self,
        st: &AppState,
        tenant: TenantId,
        product: &str,
        version: &str,
    ) -> Result<Option<String>, StoreError> {
        let k = (product.to_owned(), version.to_owned());
        if let Some(w) = self.known.get(&k) {
            return Ok(w.clone());
        }
        let why = match st.store.release(tenant, product, version).await? {
            None => Some(format!(
                "{product} {version} is not published (fleetcare release publish)"
            )),
            Some(r) => {
                let arts: Vec<fleetcare_trust::Artifact> =
                    serde_json::from_str(&r.artifacts_json).unwrap_or_default();
                let mut missing = None;
                for a in &arts {
                    if st.store.artifact(tenant, &a.sha256).await? != Some(a.size) {
                        missing = Some(format!(
                            "{product} {version}: its file {} is not on the center yet                              (fleetcare release publish uploads it)",
                            a.name
                        ));
                        break;
                    }
                }
                missing
            }
        };
        self.known.insert(k, why.clone());
        Ok(why)
    }

    /// Why a job with these steps cannot be offered to its device now; `None`: it can.
    pub async fn steps(
        &mut self,
        st: &AppState,
        tenant: TenantId,
        steps: &[SoftwareStep],
    ) -> Result<Option<String>, StoreError> {
        for s in steps.iter().filter(|s| s.action == "install") {
            if let Some(why) = self.release(st, tenant, &s.product, &s.to).await? {
                return Ok(Some(format!("waiting for its release: {why}")));
            }
        }
        Ok(None)
    }
}

/// Queued jobs looked at when a release becomes deliverable, at most (the oldest beyond it
/// wait for their device's next look, at most five minutes).
const WAITING_JOBS: u32 = 10_000;

/// A release became deliverable (published, or its last file arrived): tell the devices
/// whose queued jobs waited for a release that `concerns` picks and can be offered now.
async fn tell_waiting(
    st: &AppState,
    tenant: TenantId,
    concerns: impl Fn(&ReleaseRecord) -> bool,
) -> Result<(), StoreError> {
    let mut releases: std::collections::HashMap<(String, String), bool> = Default::default();
    let mut avail = Availability::default();
    let mut told = Vec::new();
    let mut before = None;
    let mut seen = 0;
    loop {
        let page = st
            .store
            .jobs(
                tenant,
                &fleetcare_store::JobFilter {
                    device_id: None,
                    state: Some("queued".into()),
                    before_id: before,
                },
                1000,
            )
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        seen += page.len() as u32;
        for j in &page {
            let steps: Vec<SoftwareStep> = serde_json::from_str(&j.steps_json).unwrap_or_default();
            let mut waited = false;
            for s in steps.iter().filter(|s| s.action == "install") {
                let k = (s.product.clone(), s.to.clone());
                let hit = match releases.get(&k) {
                    Some(h) => *h,
                    None => {
                        let h = st
                            .store
                            .release(tenant, &s.product, &s.to)
                            .await?
                            .is_some_and(|r| concerns(&r));
                        releases.insert(k, h);
                        h
                    }
                };
                waited |= hit;
            }
            if waited
                && avail.steps(st, tenant, &steps).await?.is_none()
                && let Ok(device_id) = fleetcare_core::DeviceId::parse(&j.device_id)
            {
                told.push(DeviceKey { tenant, device_id });
            }
        }
        if page.len() < 1000 || seen >= WAITING_JOBS {
            break;
        }
    }
    if !told.is_empty() {
        let n = crate::cluster::send_many(st, &told, &Command::JobsAvailable).await;
        tracing::info!(
            tenant,
            jobs = told.len(),
            connected = n,
            "jobs that waited for a release can run now"
        );
    }
    Ok(())
}

/// Jobs as the operator API shows them, each queued one saying why it waits, if it does.
pub async fn job_views(
    st: &AppState,
    tenant: TenantId,
    jobs: Vec<fleetcare_store::JobRecord>,
) -> Result<Vec<fleetcare_wire::compat::Job>, StoreError> {
    let mut avail = Availability::default();
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let queued = j.state == "queued";
        let mut v = job_view(j);
        if queued {
            v.waiting = avail.steps(st, tenant, &v.steps).await?;
        }
        out.push(v);
    }
    Ok(out)
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
                crate::diag::job_finished(&st, &key, id, &s.state).await?;
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

/// One byte range of a `Range` header; `None`: serve the whole file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeReq {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parse a `Range` header for a file of `size` bytes. Only single ranges are served as
/// partial content; anything else is answered with the whole file.
pub(crate) fn parse_range(value: &str, size: u64) -> RangeReq {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeReq::Whole;
    };
    if spec.contains(',') {
        return RangeReq::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last N bytes.
        match b.parse::<u64>() {
            Ok(0) | Err(_) => return RangeReq::Unsatisfiable,
            Ok(n) => (size.saturating_sub(n), size.saturating_sub(1)),
        }
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return RangeReq::Whole;
        };
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.min(size.saturating_sub(1)),
                _ => return RangeReq::Whole,
            }
        };
        (start, end)
    };
    if size == 0 || range.0 >= size {
        RangeReq::Unsatisfiable
    } else {
        RangeReq::Part(range.0, range.1)
    }
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    valid_sha(&sha256)?;
    let size = st
        .store
        .artifact(key.tenant, &sha256)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("artifact {sha256}")))?;
    let hot = st.artifacts.hot(&sha256, size).await?;
    serve_file(&st.artifacts.path(&sha256), hot, &sha256, size, &headers).await
}

/// Serve a file whose content never changes under `tag` (from `hot` when it is in memory),
/// honouring `Range`, `If-Range` and `If-None-Match`.
pub(crate) async fn serve_file(
    path: &FsPath,
    hot: Option<Bytes>,
    tag: &str,
    size: u64,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{tag}\"");
    let header_is = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .map(str::to_owned)
    };
    if header_is(header::IF_NONE_MATCH).is_some_and(|v| v == etag || v == "*") {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let mut range = match header_is(header::RANGE) {
        Some(r) => parse_range(&r, size),
        None => RangeReq::Whole,
    };
    // A resumed download whose tag no longer matches must start over.
    if header_is(header::IF_RANGE).is_some_and(|v| v != etag) {
        range = RangeReq::Whole;
    }
    let (status, start, len) = match range {
        RangeReq::Whole => (StatusCode::OK, 0, size),
        RangeReq::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        RangeReq::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response());
        }
    };
    let body = match hot {
        Some(b) => Body::from(b.slice(start as usize..(start + len) as usize)),
        None => file_body(path, tag, start, len).await?,
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
                .expect("digits are a valid header"),
        );
    }
    Ok(resp)
}

/// `len` bytes of a file from `start`, streamed.
async fn file_body(path: &FsPath, tag: &str, start: u64, len: u64) -> Result<Body, ApiError> {
    let mut file = tokio::fs::File::open(path).await.map_err(|e| {
        ApiError::Internal(format!("artifact {tag} is recorded but unreadable: {e}"))
    })?;
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    let stream =
        futures_util::stream::unfold((file.take(len), false), |(mut file, done)| async move {
            if done {
                return None;
            }
            let mut buf = bytes::BytesMut::with_capacity(CHUNK);
            match file.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => Some((Ok::<Bytes, std::io::Error>(buf.freeze()), (file, false))),
                Err(e) => Some((Err(e), (file, true))),
            }
        });
    Ok(Body::from_stream(stream))
}

/// Mark jobs that were never taken and whose time ran out as failed (`expired`).
pub async fn expire_jobs(st: &AppState) {
    match st.store.expire_jobs(st.clock.now_ms()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "jobs expired"),
        Err(e) => tracing::warn!(error = %e, "expiring jobs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeReq::*;
        assert_eq!(parse_range("bytes=0-9", 100), Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=95-200", 100), Part(95, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=x-1", 100), Whole);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
    }
}
