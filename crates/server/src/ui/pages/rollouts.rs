//! The rollouts list and one rollout's page with its waves and devices.

use super::chart::{self, StackRow};
use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use crate::extract::Query;
use crate::rollout;
use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;

use super::*;

#[derive(Template)]
#[template(path = "rollouts.html")]
struct RolloutsPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    rows: Vec<RolloutRow>,
}

pub async fn rollouts(State(st): State<AppState>, ui: Ui) -> Response {
    let got = async {
        let Json(list) = rollout::api::list(
            State(st.clone()),
            ui.auth(),
            Query(rollout::api::ListQuery { limit: Some(200) }),
        )
        .await?;
        render(&RolloutsPage {
            title: "Rollouts".into(),
            nav: nav(&ui, "/ui/rollouts"),
            css: ASSET_CSS,
            js: ASSET_JS,
            rows: list.rollouts.iter().map(rollout_row).collect(),
        })
    }
    .await;
    page(&ui, "/ui/rollouts", got)
}

pub struct RolloutFacts {
    id: u64,
    name: String,
    state: String,
    class: &'static str,
    reason: String,
    release: String,
    filter: String,
    waves: String,
    wave: u32,
    gates: String,
    requirements: String,
    on_abort: String,
    created: String,
    approved: String,
}

pub struct WaveRow {
    name: String,
    up_to: String,
    devices: u64,
    pending: u64,
    ineligible: u64,
    running: u64,
    succeeded: u64,
    failed: u64,
    skipped: u64,
    started: String,
}

pub struct RolloutDeviceRow {
    id: String,
    wave: u32,
    state: String,
    class: &'static str,
    reason: String,
    job: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "rollout.html")]
struct RolloutPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    actions: Vec<Action>,
    r: RolloutFacts,
    chart: String,
    waves: Vec<WaveRow>,
    devices: Vec<RolloutDeviceRow>,
    more_devices: bool,
}

const PARTS: [&str; 6] = [
    "succeeded",
    "failed",
    "running",
    "pending",
    "ineligible",
    "skipped",
];

pub async fn rollout(State(st): State<AppState>, ui: Ui, Path(id): Path<u64>) -> Response {
    let got = async {
        let Json(r) = rollout::api::show(State(st.clone()), ui.auth(), Path(id)).await?;
        const DEVICES: u32 = 100;
        let Json(devices) = rollout::api::devices(
            State(st.clone()),
            ui.auth(),
            Path(id),
            Query(rollout::api::DevicesQuery {
                state: None,
                after: None,
                limit: Some(DEVICES),
            }),
        )
        .await?;
        let waves: Vec<WaveRow> = r
            .waves
            .iter()
            .chain(std::iter::once(&r.total))
            .map(|w| WaveRow {
                name: if w.wave == 0 { "all".into() } else { format!("{}", w.wave) },
                up_to: format!("{:.0} %", w.up_to * 100.0),
                devices: w.devices,
                pending: w.pending,
                ineligible: w.ineligible,
                running: w.running,
                succeeded: w.succeeded,
                failed: w.failed,
                skipped: w.skipped,
                started: when_opt(w.started_at.as_ref()),
            })
            .collect();
        let rows: Vec<StackRow> = r
            .waves
            .iter()
            .map(|w| StackRow {
                label: format!("wave {}", w.wave),
                values: vec![w.succeeded, w.failed, w.running, w.pending, w.ineligible, w.skipped],
            })
            .collect();
        let g = &r.spec.gates;
        let q = &r.spec.requirements;
        let mut actions = Vec::new();
        let url = |verb: &str| format!("/api/v1/rollouts/{id}/{verb}");
        let waits_for_wave = r.state == "running" && g.advance == "approval";
        // No one approves their own rollout (the API refuses it): no button for its creator.
        if (r.state == "awaiting_approval" || waits_for_wave) && r.created_by != ui.op.name {
            actions.extend(action(
                &ui,
                "/api/v1/rollouts/{id}/approve",
                url("approve"),
                "approve",
                if waits_for_wave { "Approve the next wave" } else { "Approve" },
                "Approved.".into(),
            ));
        }
        if r.state == "running" {
            actions.extend(action(
                &ui,
                "/api/v1/rollouts/{id}/pause",
                url("pause"),
                "pause",
                "Pause",
                "Rollout paused.".into(),
            ));
        }
        if r.state == "paused" {
            actions.extend(action(
                &ui,
                "/api/v1/rollouts/{id}/resume",
                url("resume"),
                "resume",
                "Resume",
                "Rollout resumed.".into(),
            ));
        }
        if matches!(r.state.as_str(), "awaiting_approval" | "running" | "paused")
            && let Some(mut a) = action(
                &ui,
                "/api/v1/rollouts/{id}/abort",
                url("abort"),
                "abort",
                "Abort",
                "Rollout aborted.".into(),
            ) {
                a.class = "danger";
                a.confirm = format!(
                    "Abort rollout {}? Devices not yet started are cancelled; installs under way {}.",
                    r.name,
                    if r.spec.on_abort == "revert" { "finish, then switch back" } else { "finish" }
                );
                actions.push(a);
        }
        let more_devices = devices.devices.len() == DEVICES as usize;
        render(&RolloutPage {
            title: format!("Rollout {id}"),
            nav: nav(&ui, "/ui/rollouts"),
            css: ASSET_CSS,
            js: ASSET_JS,
            actions,
            chart: chart::stacked("Devices of each wave by state", &PARTS, &rows),
            r: RolloutFacts {
                id: r.id,
                name: r.name.clone(),
                class: rollout_class(&r.state),
                state: r.state.clone(),
                reason: r.state_reason.clone().unwrap_or_default(),
                release: rollout_row(&r).release,
                filter: if r.spec.filter.trim().is_empty() {
                    "every device".into()
                } else {
                    r.spec.filter.clone()
                },
                waves: r.spec.waves.clone(),
                wave: r.current_wave,
                gates: format!(
                    "next wave when {:.0} % succeeded ({}); stops when {} failed; at most {} at once",
                    g.success_ratio * 100.0,
                    g.advance,
                    match (g.failure_ratio, g.failure_count) {
                        (Some(p), Some(n)) => format!("more than {:.0} % (of at least {}) or {n}", p * 100.0, g.min_finished),
                        (Some(p), None) => format!("more than {:.0} % (of at least {})", p * 100.0, g.min_finished),
                        (None, Some(n)) => format!("{n}"),
                        (None, None) => "never".into(),
                    },
                    g.max_concurrent
                ),
                requirements: format!(
                    "reported within {} s; {}",
                    q.online_within_s,
                    if q.trouble_severity == "none" {
                        "troubles do not keep a device out".to_owned()
                    } else {
                        format!("no live trouble of {} or worse", q.trouble_severity)
                    }
                ),
                on_abort: r.spec.on_abort.clone(),
                created: format!("by {}, {}", r.created_by, when(&r.created_at)),
                approved: r.approved_by.clone().unwrap_or_default(),
            },
            waves,
            devices: devices
                .devices
                .iter()
                .map(|d| RolloutDeviceRow {
                    id: d.device_id.clone(),
                    wave: d.wave,
                    class: rollout_device_class(&d.state),
                    state: d.state.clone(),
                    reason: d
                        .waiting
                        .clone()
                        .or_else(|| d.reason.clone())
                        .unwrap_or_default(),
                    job: d.job_id.map(|j| j.to_string()).unwrap_or_default(),
                    updated: when(&d.updated_at),
                })
                .collect(),
            more_devices,
        })
    }
    .await;
    page(&ui, "/ui/rollouts", got)
}
