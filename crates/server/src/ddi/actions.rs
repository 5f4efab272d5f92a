//! What a DDI device says of its actions: feedback into job states, cancellations answered,
//! and the report that settles an install.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use fleetcare_store::{DeviceKey, JobRecord, Transition};
use fleetcare_wire::compat::SoftwareStep;
use fleetcare_wire::ddi as w;

use super::Effect;
use super::device::{Ddi, job_of, steps_of};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::JsonBody;

/// After a job moved: the live pages, and when it is over the rollouts and the fix loop.
pub(crate) async fn moved(
    st: &AppState,
    key: &DeviceKey,
    job: u64,
    state: &str,
) -> Result<(), ApiError> {
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
    Ddi { key, .. }: Ddi,
    Path((_, _, action)): Path<(String, String, u64)>,
    JsonBody(f): JsonBody<w::Feedback>,
) -> Result<StatusCode, ApiError> {
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
            } else if let Some(errors) = error_lines(&f) {
                // What went wrong on the way (SWUpdate sends its log as it goes) is kept: a
                // failure reported later may say no more than that it failed.
                st.store
                    .note_job(key.tenant, j.id, "device_log", Some(&errors), now)
                    .await?;
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
        Effect::Failed(mut reason) => {
            let mut detail = detail;
            if matches!(reason, "install" | "download") {
                // The client's earlier words may say more than its last (SWUpdate reports a
                // board of the wrong revision, then a broken stream as its final failure).
                let earlier: Vec<String> = st
                    .store
                    .job_events(key.tenant, j.id)
                    .await?
                    .into_iter()
                    .filter(|e| e.state == "device_log")
                    .filter_map(|e| e.detail)
                    .collect();
                let said = super::failure_reason(&earlier);
                if !earlier.is_empty()
                    && (reason == "install" || !matches!(said, "install" | "download"))
                {
                    reason = said;
                    let all = join(&earlier.join("; "), detail.as_deref());
                    detail = Some(all.chars().take(super::MAX_DETAIL).collect());
                }
            }
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
                // was installed. Said once, not at every poll.
                let last = st.store.job_events(key.tenant, j.id).await?.pop();
                if last.is_none_or(|e| e.state != "skipped") {
                    st.store
                        .note_job(
                            key.tenant,
                            j.id,
                            "skipped",
                            Some("outside the site's maintenance window"),
                            now,
                        )
                        .await?;
                }
            } else {
                installed(&st, &key, &j, detail.as_deref()).await?;
            }
        }
    }
    Ok(StatusCode::OK)
}

/// The lines of a feedback's details that report an error, as one line.
fn error_lines(f: &w::Feedback) -> Option<String> {
    let lines: Vec<&str> = f
        .status
        .details
        .iter()
        .map(|d| d.trim())
        .filter(|d| d.to_ascii_lowercase().contains("error"))
        .collect();
    (!lines.is_empty()).then(|| {
        lines
            .join("; ")
            .chars()
            .filter(|c| !c.is_control())
            .take(super::MAX_DETAIL)
            .collect()
    })
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
pub(crate) async fn settle(
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

/// `POST …/cancelAction/{actionId}/feedback`: the device acknowledged or refused.
pub async fn cancel_feedback(
    State(st): State<AppState>,
    Ddi { key, .. }: Ddi,
    Path((_, _, action)): Path<(String, String, u64)>,
    JsonBody(f): JsonBody<w::Feedback>,
) -> Result<StatusCode, ApiError> {
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
