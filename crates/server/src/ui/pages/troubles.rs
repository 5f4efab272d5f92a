//! The troubles list and one trouble's page with its evidence and fix.

use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use crate::diag;
use crate::extract::Query;
use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::*;

pub struct TroubleRow {
    pub(super) id: u64,
    pub(super) title: String,
    pub(super) severity: String,
    pub(super) class: &'static str,
    pub(super) device: String,
    pub(super) state: String,
    pub(super) occurrences: u64,
    pub(super) opened: String,
    pub(super) last: String,
}

pub(super) fn trouble_row(t: &fleetcare_wire::troubles::Trouble) -> TroubleRow {
    TroubleRow {
        id: t.id,
        title: t.title.clone(),
        class: severity_class(&t.severity),
        severity: t.severity.clone(),
        device: t.device_id.clone(),
        state: t.state.clone(),
        occurrences: t.occurrences,
        opened: when(&t.opened_at),
        last: when(&t.last_event_at),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TroublesQuery {
    state: String,
}

#[derive(Template)]
#[template(path = "troubles.html")]
struct TroublesPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    here: String,
    states: Vec<Choice>,
    rows: Vec<TroubleRow>,
}

pub async fn troubles(
    State(st): State<AppState>,
    ui: Ui,
    uri: axum::http::Uri,
    q: Result<axum::extract::Query<TroublesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let got = async {
        let q = query(q)?;
        let state = if q.state.is_empty() {
            "live".to_owned()
        } else {
            q.state
        };
        let Json(list) = diag::api::list_troubles(
            State(st.clone()),
            ui.auth(),
            Query(diag::api::TroubleQuery {
                state: Some(state.clone()),
                device: None,
                rule: None,
                limit: Some(500),
            }),
        )
        .await?;
        render(&TroublesPage {
            title: "Troubles".into(),
            nav: nav(&ui, "/ui/troubles"),
            css: ASSET_CSS,
            js: ASSET_JS,
            here: uri.to_string(),
            states: choices(["live", "open", "acknowledged", "resolved", "all"], &state),
            rows: list.troubles.iter().map(trouble_row).collect(),
        })
    }
    .await;
    page(&ui, "/ui/troubles", got)
}

pub struct TroubleFacts {
    id: u64,
    title: String,
    severity: String,
    class: &'static str,
    state: String,
    device: String,
    rule: String,
    action: String,
    note: String,
    occurrences: u64,
    opened: String,
    last: String,
    resolves: String,
    acknowledged: String,
    resolved: String,
    fix: String,
    fix_outcome: String,
    /// The fix job and its state now.
    fix_job: Option<(u64, String)>,
    fixed: String,
}

pub struct EvidenceRow {
    epoch: u64,
    seq: u64,
    at: String,
    slot: String,
    code: String,
    severity: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "trouble.html")]
struct TroublePage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    actions: Vec<Action>,
    t: TroubleFacts,
    evidence: Vec<EvidenceRow>,
}

pub async fn trouble(State(st): State<AppState>, ui: Ui, Path(id): Path<u64>) -> Response {
    let got = async {
        let Json(t) = diag::api::show_trouble(State(st.clone()), ui.auth(), Path(id)).await?;
        // The evidence events, as the center holds them.
        let Json(errs) = crate::diag::logs::list(
            State(st.clone()),
            ui.auth(),
            Path(t.device_id.clone()),
            Query(crate::diag::logs::ErrorQuery {
                since: None,
                code: None,
                limit: Some(1000),
            }),
        )
        .await?;
        let held: BTreeMap<(u64, u64), &fleetcare_wire::errors::StoredErrorEvent> = errs
            .events
            .iter()
            .map(|e| ((e.boot_epoch, e.seq), e))
            .collect();
        let evidence = t
            .evidence
            .iter()
            .map(|e| {
                let got = held.get(&(e.boot_epoch, e.seq));
                EvidenceRow {
                    epoch: e.boot_epoch,
                    seq: e.seq,
                    at: got
                        .map(|g| when(&g.at))
                        .unwrap_or_else(|| "no longer held".into()),
                    slot: got.map(|g| g.slot.clone()).unwrap_or_default(),
                    code: got.map(|g| g.code.clone()).unwrap_or_default(),
                    severity: got.map(|g| g.severity.clone()).unwrap_or_default(),
                    detail: got.and_then(|g| g.detail.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let mut actions = Vec::new();
        if t.state == "open" {
            actions.extend(action(
                &ui,
                "/api/v1/troubles/{id}/ack",
                format!("/api/v1/troubles/{id}/ack"),
                "ack",
                "Acknowledge",
                format!("Trouble {id} acknowledged."),
            ));
        }
        if t.state != "resolved" {
            actions.extend(action(
                &ui,
                "/api/v1/troubles/{id}/resolve",
                format!("/api/v1/troubles/{id}/resolve"),
                "resolve",
                "Resolve",
                format!("Trouble {id} resolved."),
            ));
        }
        render(&TroublePage {
            title: format!("Trouble {id}"),
            nav: nav(&ui, "/ui/troubles"),
            css: ASSET_CSS,
            js: ASSET_JS,
            actions,
            t: TroubleFacts {
                id: t.id,
                title: t.title.clone(),
                class: severity_class(&t.severity),
                severity: t.severity.clone(),
                state: t.state.clone(),
                device: t.device_id.clone(),
                rule: t.rule_id.clone(),
                action: t.action.clone(),
                note: t.note.clone().unwrap_or_default(),
                occurrences: t.occurrences,
                opened: when(&t.opened_at),
                last: when(&t.last_event_at),
                resolves: t.resolves_at.as_deref().map_or_else(
                    || "when the device's reports show it is over".to_owned(),
                    when,
                ),
                acknowledged: t
                    .acknowledged_by
                    .as_ref()
                    .map(|b| format!("by {b}, {}", when_opt(t.acknowledged_at.as_ref())))
                    .unwrap_or_default(),
                resolved: t
                    .resolved_by
                    .as_ref()
                    .map(|b| format!("by {b}, {}", when_opt(t.resolved_at.as_ref())))
                    .unwrap_or_default(),
                fix: t.fix.clone().unwrap_or_default(),
                fix_outcome: t.fix_outcome.clone().unwrap_or_default(),
                fix_job: t
                    .fix_job
                    .as_ref()
                    .map(|j| (j.id, j.state.replace('_', " "))),
                fixed: when_opt(t.fixed_at.as_ref()),
            },
            evidence,
        })
    }
    .await;
    page(&ui, "/ui/troubles", got)
}
