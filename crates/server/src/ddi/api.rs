//! The DDI endpoints under `/{tenant}/controller/v1/{controllerId}` (table in
//! `fleetcare_wire::ddi`): the poll, actions, cancellations, attributes
//! and downloads (feedback in `actions.rs`, who is asking in `device.rs`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetcare_core::structure;
use fleetcare_store::{DeviceKey, JobRecord};
use fleetcare_wire::Trigger;
use fleetcare_wire::ddi as w;
use fleetcare_wire::device::StructureReport;
use sha2::{Digest, Sha256};

use super::actions::settle;
use super::device::{Ddi, UNKNOWN_MODEL, job_of, steps_of};
use super::{module_id, module_parts};
use crate::AppState;
use crate::delivery::Availability;
use crate::delivery::artifacts::serve_file;
use crate::error::ApiError;
use crate::extract::JsonBody;

/// Sequence-number races a `configData` request retries before it gives up.
const CONFIG_RETRIES: usize = 8;

fn link(href: String) -> w::Link {
    w::Link { href }
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

/// Why the center wants the device's attributes now, if it does (`device`: its record, as
/// the caller read it).
async fn wants_config(
    st: &AppState,
    key: &DeviceKey,
    device: Option<&fleetcare_store::DeviceRecord>,
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
    let Some(d) = device else {
        return Ok(Some(Trigger::Connect));
    };
    let interval_ms = 1000
        * i64::try_from(
            d.report_interval_s
                .unwrap_or(fleetcare_core::limits::DEFAULT_REPORT_INTERVAL_S),
        )
        .unwrap_or(i64::MAX / 1000);
    Ok(match &d.last_report {
        None => Some(Trigger::Connect),
        Some(r) if st.clock.now_ms() - r.received_at_ms >= interval_ms => Some(Trigger::Periodic),
        Some(_) => None,
    })
}

/// `GET /{tenant}/controller/v1/{controllerId}`: how long to sleep and what to fetch.
pub async fn poll(
    State(st): State<AppState>,
    Ddi { key, base }: Ddi,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
    if wants_config(&st, &key, device.as_ref(), action.as_ref())
        .await?
        .is_some()
    {
        links.insert("configData".into(), link(format!("{base}/configData")));
    }
    if let Some(done) = st.store.newest_job_in(&key, "succeeded").await? {
        links.insert(
            "installedBase".into(),
            link(format!("{base}/installedBase/{done}")),
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
    Ddi { key, base }: Ddi,
    Path((_, _, action)): Path<(String, String, u64)>,
) -> Result<Json<w::Deployment>, ApiError> {
    let j = job_of(&st, &key, action).await?;
    if fleetcare_store::TERMINAL_JOB_STATES.contains(&j.state.as_str())
        || j.state == "awaiting_approval"
    {
        return Err(ApiError::NotFound(format!(
            "open action {action} of this device"
        )));
    }
    st.store.ddi_fetched(&key, j.id, st.clock.now_ms()).await?;
    Ok(Json(deployment(&st, &key, &base, &j).await?))
}

/// `GET …/installedBase/{actionId}`: a finished action.
pub async fn installed_base(
    State(st): State<AppState>,
    Ddi { key, base }: Ddi,
    Path((_, _, action)): Path<(String, String, u64)>,
) -> Result<Json<w::Deployment>, ApiError> {
    let j = job_of(&st, &key, action).await?;
    if j.state != "succeeded" {
        return Err(ApiError::NotFound(format!(
            "installed action {action} of this device"
        )));
    }
    Ok(Json(deployment(&st, &key, &base, &j).await?))
}

/// `GET …/cancelAction/{actionId}`.
pub async fn cancel_action(
    State(st): State<AppState>,
    Ddi { key, .. }: Ddi,
    Path((_, _, action)): Path<(String, String, u64)>,
) -> Result<Json<w::CancelAction>, ApiError> {
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

/// `PUT …/configData`: the device's attributes; in the flattened form, its structure.
pub async fn config_data(
    State(st): State<AppState>,
    Ddi { key, .. }: Ddi,
    JsonBody(c): JsonBody<w::ConfigData>,
) -> Result<StatusCode, ApiError> {
    let device = st.store.device(&key).await?;
    let trigger = wants_config(
        &st,
        &key,
        device.as_ref(),
        current_action(&st, &key).await?.as_ref(),
    )
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
                    None => device
                        .as_ref()
                        .map_or_else(|| UNKNOWN_MODEL.to_owned(), |d| d.model.clone()),
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
    Ddi { key, .. }: Ddi,
    zero_copy: Option<axum::Extension<crate::sendfile::ZeroCopy>>,
    headers: HeaderMap,
    Path((_, _, module, file)): Path<(String, String, u64, String)>,
) -> Result<Response, ApiError> {
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
    serve_file(
        &st.artifacts,
        &a.sha256,
        size,
        &headers,
        zero_copy.is_some(),
    )
    .await
}
