//! Rollouts' HTTP handlers: create (select and place in waves), list, show, devices, approve,
//! pause, resume, abort; sites with their maintenance windows; device labels.

use std::sync::Arc;

use crate::extract::Query;
use axum::Json;
use axum::extract::{Path, State};
use fleetcare_core::clock::rfc3339;
use fleetcare_rollout::{Decision, WaveCounts};
use fleetcare_store::{LabelRecord, NewRollout, RolloutRecord, SiteRecord, TenantId};
use fleetcare_wire::rollouts as w;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, OperatorAuth};
use crate::rollout::engine::counts;
use crate::rollout::select::select;
use crate::rollout::{Label, Spec, Thresholds, site_rt};

/// Devices stored per transaction when a rollout is created.
const CHUNK: usize = 5000;

async fn view(st: &AppState, r: RolloutRecord) -> Result<w::Rollout, ApiError> {
    let waves_now = st.store.rollout_waves(r.tenant, r.id).await?;
    let th: Option<Thresholds> = serde_json::from_str(&r.thresholds_json).ok();
    let mut total = w::Wave {
        wave: 0,
        up_to: 1.0,
        devices: 0,
        pending: 0,
        ineligible: 0,
        running: 0,
        succeeded: 0,
        failed: 0,
        skipped: 0,
        started_at: None,
    };
    let waves: Vec<w::Wave> = waves_now
        .iter()
        .map(|x| {
            total.devices += x.devices;
            total.pending += x.pending;
            total.ineligible += x.ineligible;
            total.running += x.running;
            total.succeeded += x.succeeded;
            total.failed += x.failed;
            total.skipped += x.skipped;
            w::Wave {
                wave: x.wave + 1,
                up_to: th
                    .as_ref()
                    .and_then(|t| t.up_to.get(x.wave as usize).copied())
                    .unwrap_or(1.0),
                devices: x.devices,
                pending: x.pending,
                ineligible: x.ineligible,
                running: x.running,
                succeeded: x.succeeded,
                failed: x.failed,
                skipped: x.skipped,
                started_at: x.started_at_ms.map(rfc3339),
            }
        })
        .collect();
    let spec: w::CreateRollout = serde_json::from_str(&r.spec_json)
        .map_err(|e| ApiError::Internal(format!("rollout {}: {e}", r.id)))?;
    // The engine's own decision: the wave that waits for an operator, if one does.
    let awaiting_wave = match (r.state.as_str(), st.rollouts.spec(&r)) {
        ("running", Some(parsed)) if !waves_now.is_empty() => {
            let counts: Vec<WaveCounts> = waves_now.iter().map(counts).collect();
            match fleetcare_rollout::gates::decide(
                &parsed.gates,
                r.current_wave as usize,
                &counts,
                r.wave_approved > r.current_wave,
            ) {
                Decision::AwaitApproval(n) => Some(n as u32 + 1),
                _ => None,
            }
        }
        _ => None,
    };
    Ok(w::Rollout {
        id: r.id,
        name: r.name,
        state: r.state,
        state_reason: r.state_reason,
        spec,
        current_wave: r.current_wave + 1,
        created_by: r.created_by,
        created_at: rfc3339(r.created_at_ms),
        approved_by: r.approved_by,
        updated_at: rfc3339(r.updated_at_ms),
        awaiting_wave,
        waves,
        total,
    })
}

async fn find(st: &AppState, tenant: TenantId, id: u64) -> Result<RolloutRecord, ApiError> {
    st.store
        .rollout(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("rollout {id}")))
}

/// Create a rollout: the filter is evaluated over the fleet now, devices are placed in waves
/// and stored; it starts at once, or once approved.
#[utoipa::path(post, path = "/api/v1/rollouts", request_body = w::CreateRollout,
    responses((status = 200, body = w::Rollout), (status = 400, body = fleetcare_wire::ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(req): JsonBody<w::CreateRollout>,
) -> Result<Json<w::Rollout>, ApiError> {
    let tenant = op.0.tenant;
    let spec = Spec::parse(req)?;
    if let Some((product, version)) = &spec.release {
        let known = st.compat.current(tenant).is_some_and(|cur| {
            st.compat
                .vocab
                .get(product)
                .zip(st.compat.vocab.get(version.as_str()))
                .is_some_and(|(p, v)| cur.catalog.find_release(p, v).is_some())
        });
        if !known {
            return Err(ApiError::Invalid {
                message: "the rollout was refused: 1 problem(s)".into(),
                problems: vec![format!(
                    "release: the tenant's catalog has no release {product} {version}"
                )],
            });
        }
        if !spec.wire.allow_unpublished
            && let Some(why) = crate::delivery::Availability::default()
                .release(&st, tenant, product, &version.to_string())
                .await?
        {
            return Err(ApiError::Invalid {
                message: "the rollout was refused: 1 problem(s)".into(),
                problems: vec![format!(
                    "release: {why}; publish it first, or create the rollout allowing an \
                     unpublished release (--allow-unpublished), whose jobs then wait for it"
                )],
            });
        }
    }
    let started = std::time::Instant::now();
    let seed = spec
        .wire
        .seed
        .unwrap_or_else(fleetcare_core::secret::random_u64);
    let spec = Arc::new(spec);
    // Selection, waves and first states: the fleet index and the labels, in memory, off the
    // async workers and on every core.
    let (rows, th) = {
        let (rollouts, spec) = (st.rollouts.clone(), spec.clone());
        tokio::task::spawn_blocking(move || select(&rollouts, tenant, &spec, seed))
            .await
            .map_err(|e| ApiError::Internal(format!("selecting the devices: {e}")))?
    };
    let took_select = started.elapsed();
    let now = st.clock.now_ms();
    let needs_approval = spec.wire.require_approval;
    let id = st
        .store
        .create_rollout(
            tenant,
            &NewRollout {
                name: spec.wire.name.clone(),
                spec_json: serde_json::to_string(&spec.wire).expect("spec serializes"),
                thresholds_json: serde_json::to_string(&th).expect("thresholds serialize"),
                waves: u32::try_from(th.up_to.len()).unwrap_or(u32::MAX),
                // Not active until its selection is stored: the engine's newcomers and ticks
                // would otherwise race the rows below (a device added twice, a wave judged
                // empty).
                state: "creating".into(),
                created_by: op.0.name.clone(),
            },
            now,
        )
        .await?;
    for chunk in rows.chunks(CHUNK) {
        if let Err(e) = st
            .store
            .add_fresh_rollout_devices(tenant, id, chunk, now)
            .await
        {
            let why = format!("its devices could not be stored: {e}");
            st.store
                .set_rollout_state(tenant, id, &["creating"], "aborted", Some(&why), now)
                .await
                .ok();
            return Err(e.into());
        }
    }
    if needs_approval {
        st.store
            .set_rollout_state(
                tenant,
                id,
                &["creating"],
                "awaiting_approval",
                Some("waits for approval by someone other than its creator"),
                now,
            )
            .await?;
    } else {
        st.store
            .set_rollout_state(tenant, id, &["creating"], "running", None, now)
            .await?;
        st.store.start_wave(tenant, id, 0, now).await.ok();
    }
    tracing::info!(rollout = id, devices = rows.len(), selected_in = ?took_select, took = ?started.elapsed(), operator = %op.0.name, "rollout created");
    st.rollouts.nudge();
    view(&st, find(&st, tenant, id).await?).await.map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/rollouts", params(ListQuery), responses((status = 200, body = w::RolloutList)))]
pub async fn list(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<ListQuery>,
) -> Result<Json<w::RolloutList>, ApiError> {
    let mut out = Vec::new();
    for r in st
        .store
        .rollouts(op.0.tenant, q.limit.unwrap_or(100).clamp(1, 1000))
        .await?
    {
        out.push(view(&st, r).await?);
    }
    Ok(Json(w::RolloutList { rollouts: out }))
}

#[utoipa::path(get, path = "/api/v1/rollouts/{id}", responses((status = 200, body = w::Rollout), (status = 404)))]
pub async fn show(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    view(&st, find(&st, op.0.tenant, id).await?).await.map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DevicesQuery {
    pub state: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/rollouts/{id}/devices", params(DevicesQuery), responses((status = 200, body = w::RolloutDevices)))]
pub async fn devices(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
    Query(q): Query<DevicesQuery>,
) -> Result<Json<w::RolloutDevices>, ApiError> {
    find(&st, op.0.tenant, id).await?;
    let state = q.state.unwrap_or_default();
    if !state.is_empty()
        && !fleetcare_store::rollouts::ROLLOUT_DEVICE_STATES.contains(&state.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "state {state:?}: one of {}",
            fleetcare_store::rollouts::ROLLOUT_DEVICE_STATES.join(", ")
        )));
    }
    let rows = st
        .store
        .rollout_devices(
            op.0.tenant,
            id,
            &state,
            q.after.as_deref().unwrap_or(""),
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    let mut out = w::RolloutDevices {
        devices: rows
            .into_iter()
            .map(|d| w::RolloutDevice {
                device_id: d.device_id,
                wave: d.wave + 1,
                state: d.state,
                reason: d.reason,
                job_id: d.job_id,
                updated_at: rfc3339(d.updated_at_ms),
                waiting: None,
            })
            .collect(),
    };
    // A running device's job may wait for its release: say so.
    let mut avail = crate::delivery::Availability::default();
    for d in out.devices.iter_mut().filter(|d| d.state == "running") {
        let Some(job) = d.job_id else { continue };
        if let Some(j) = st.store.job(op.0.tenant, job).await?
            && j.state == "queued"
        {
            let steps: Vec<fleetcare_wire::compat::SoftwareStep> =
                serde_json::from_str(&j.steps_json).unwrap_or_default();
            d.waiting = avail.steps(&st, op.0.tenant, &steps).await?;
        }
    }
    Ok(Json(out))
}

/// Approve a rollout awaiting approval, or its next wave; never by its creator.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/approve", responses((status = 200, body = w::Rollout), (status = 403), (status = 409)))]
pub async fn approve(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    let r = find(&st, op.0.tenant, id).await?;
    if r.created_by == op.0.name {
        return Err(ApiError::Forbidden(format!(
            "{} created rollout {id}: no one approves their own rollout",
            op.0.name
        )));
    }
    let now = st.clock.now_ms();
    let done = match r.state.as_str() {
        "awaiting_approval" => {
            let ok = st
                .store
                .approve_rollout(op.0.tenant, id, &op.0.name, now)
                .await?;
            if ok {
                st.store.start_wave(op.0.tenant, id, 0, now).await.ok();
            }
            ok
        }
        "running" => {
            st.store
                .approve_wave(op.0.tenant, id, r.current_wave + 1, now)
                .await?
        }
        other => {
            return Err(ApiError::Conflict {
                code: "not_awaiting_approval",
                message: format!("rollout {id} is {other}: nothing to approve"),
            });
        }
    };
    if !done {
        return Err(ApiError::Conflict {
            code: "not_awaiting_approval",
            message: format!("rollout {id}: nothing waits for approval"),
        });
    }
    tracing::info!(rollout = id, operator = %op.0.name, "rollout approved");
    st.rollouts.nudge();
    st.events
        .notify(op.0.tenant, crate::cluster::events::Topic::Rollouts);
    view(&st, find(&st, op.0.tenant, id).await?).await.map(Json)
}

async fn transition(
    st: &AppState,
    op: &OperatorAuth,
    id: u64,
    from: &[&str],
    to: &str,
    reason: Option<String>,
) -> Result<RolloutRecord, ApiError> {
    let r = find(st, op.0.tenant, id).await?;
    let now = st.clock.now_ms();
    if !st
        .store
        .set_rollout_state(op.0.tenant, id, from, to, reason.as_deref(), now)
        .await?
    {
        return Err(ApiError::Conflict {
            code: "rollout_state",
            message: format!("rollout {id} is {}: it cannot become {to}", r.state),
        });
    }
    tracing::info!(rollout = id, operator = %op.0.name, state = to, "rollout state");
    st.rollouts.nudge();
    st.events
        .notify(op.0.tenant, crate::cluster::events::Topic::Rollouts);
    find(st, op.0.tenant, id).await
}

#[utoipa::path(post, path = "/api/v1/rollouts/{id}/pause", responses((status = 200, body = w::Rollout), (status = 409)))]
pub async fn pause(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    let why = format!("paused by {}", op.0.name);
    let r = transition(&st, &op, id, &["running"], "paused", Some(why)).await?;
    view(&st, r).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/rollouts/{id}/resume", responses((status = 200, body = w::Rollout), (status = 409)))]
pub async fn resume(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    let r = transition(&st, &op, id, &["paused"], "running", None).await?;
    view(&st, r).await.map(Json)
}

/// Abort: jobs not yet started are cancelled, devices not yet dispatched too; running installs
/// finish (and with `on_abort = revert` switch back).
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/abort", responses((status = 200, body = w::Rollout), (status = 409)))]
pub async fn abort(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    let why = format!("aborted by {}", op.0.name);
    let r = transition(
        &st,
        &op,
        id,
        &["awaiting_approval", "running", "paused"],
        "aborted",
        Some(why),
    )
    .await?;
    let now = st.clock.now_ms();
    for (device, wave, job) in st.store.unstarted_rollout_jobs(op.0.tenant, id).await? {
        let cancelled = st
            .store
            .transition_job(
                op.0.tenant,
                job,
                &fleetcare_store::Transition {
                    reason: Some("cancelled"),
                    detail: Some("the rollout was aborted"),
                    ..fleetcare_store::Transition::new(&["awaiting_approval", "queued"], "failed")
                },
                now,
            )
            .await?;
        if cancelled {
            st.store
                .set_rollout_device(
                    op.0.tenant,
                    id,
                    &device,
                    wave,
                    "running",
                    "cancelled",
                    Some("the rollout was aborted"),
                    now,
                )
                .await?;
        }
    }
    st.store
        .cancel_rollout_devices(op.0.tenant, id, now)
        .await?;
    view(&st, find(&st, op.0.tenant, r.id).await?)
        .await
        .map(Json)
}

/// Set a site's time zone and maintenance windows.
#[utoipa::path(put, path = "/api/v1/sites/{name}", request_body = w::Site, responses((status = 200, body = w::Site), (status = 400)))]
pub async fn put_site(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(name): Path<String>,
    JsonBody(site): JsonBody<w::Site>,
) -> Result<Json<w::Site>, ApiError> {
    let mut problems = Vec::new();
    if name.is_empty() || name.chars().count() > 64 {
        problems.push("name: 1 to 64 characters".to_owned());
    }
    let rt = site_rt(&site.timezone, &site.windows).map_err(|p| problems.extend(p));
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: format!("the site was refused: {} problem(s)", problems.len()),
            problems,
        });
    }
    let Ok(rt) = rt else {
        return Err(ApiError::Internal("site check".into()));
    };
    st.store
        .set_site(
            op.0.tenant,
            &SiteRecord {
                name: name.clone(),
                timezone: site.timezone.clone(),
                windows_json: serde_json::to_string(&site.windows).expect("strings serialize"),
            },
        )
        .await?;
    st.rollouts.set_site(op.0.tenant, &name, rt);
    st.rollouts.nudge();
    st.devices
        .tell(crate::cluster::Message::Sites { t: op.0.tenant })
        .await;
    Ok(Json(w::Site { name, ..site }))
}

#[utoipa::path(get, path = "/api/v1/sites", responses((status = 200, body = w::SiteList)))]
pub async fn sites(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::SiteList>, ApiError> {
    let sites = st
        .store
        .sites(op.0.tenant)
        .await?
        .into_iter()
        .map(|s| w::Site {
            name: s.name,
            timezone: s.timezone,
            windows: serde_json::from_str(&s.windows_json).unwrap_or_default(),
        })
        .collect();
    Ok(Json(w::SiteList { sites }))
}

/// Set a device's site and tags (what rollout filters select by).
#[utoipa::path(put, path = "/api/v1/devices/{id}/labels", request_body = w::DeviceLabels, responses((status = 200, body = w::DeviceLabels), (status = 400), (status = 404)))]
pub async fn put_labels(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
    JsonBody(l): JsonBody<w::DeviceLabels>,
) -> Result<Json<w::DeviceLabels>, ApiError> {
    let key = crate::extract::device_key(&op, &id)?;
    if st.store.device(&key).await?.is_none() {
        return Err(ApiError::NotFound(format!("device {id}")));
    }
    let mut problems = Vec::new();
    if l.tags.len() > 32 {
        problems.push("tags: at most 32".to_owned());
    }
    for t in l.tags.iter().chain(l.site.iter()) {
        if t.is_empty() || t.chars().count() > 64 || t.chars().any(char::is_control) {
            problems.push(format!(
                "{t:?}: site and tags are 1 to 64 characters, no control characters"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: format!("the labels were refused: {} problem(s)", problems.len()),
            problems,
        });
    }
    st.store
        .set_labels(
            &key,
            &LabelRecord {
                device_id: id.clone(),
                site: l.site.clone(),
                tags_json: serde_json::to_string(&l.tags).expect("strings serialize"),
            },
        )
        .await?;
    st.rollouts.set_label(
        op.0.tenant,
        &id,
        Label {
            site: l.site.clone(),
            tags: l.tags.clone(),
        },
    );
    st.rollouts.device_changed(&key);
    st.devices
        .tell(crate::cluster::Message::Labels {
            t: op.0.tenant,
            d: id.clone(),
        })
        .await;
    Ok(Json(l))
}
