//! The audit page: who did what, newest first.

use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Query;
use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditPageQuery {
    before: Option<u64>,
}

pub struct AuditRow {
    id: u64,
    at: String,
    actor: String,
    role: String,
    action: String,
    request: String,
    status: u16,
    outcome: String,
    class: &'static str,
    source: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    rows: Vec<AuditRow>,
    older: Option<u64>,
}

pub async fn audit(
    State(st): State<AppState>,
    ui: Ui,
    q: Result<axum::extract::Query<AuditPageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let got = async {
        let q = query(q)?;
        if !ui.may("GET", "/api/v1/audit") {
            return Err(ApiError::Forbidden(format!(
                "the role {} may not read the audit log",
                ui.op.role
            )));
        }
        const LINES: u32 = 200;
        let Json(log) = crate::access::api::audit(
            State(st.clone()),
            ui.auth(),
            Query(crate::access::api::AuditQuery {
                before: q.before,
                limit: Some(LINES),
            }),
        )
        .await?;
        let older = (log.entries.len() == LINES as usize)
            .then(|| log.entries.last().map(|e| e.id))
            .flatten();
        render(&AuditPage {
            title: "Audit log".into(),
            nav: nav(&ui, "/ui/audit"),
            css: ASSET_CSS,
            js: ASSET_JS,
            rows: log
                .entries
                .iter()
                .map(|a| AuditRow {
                    id: a.id,
                    at: when(&a.at),
                    actor: a.actor.clone().unwrap_or_else(|| "—".into()),
                    role: a.role.clone().unwrap_or_default(),
                    action: a.action.clone(),
                    request: format!("{} {}", a.method, a.path),
                    status: a.status,
                    class: match a.outcome.as_str() {
                        "ok" => "ok",
                        "denied" => "bad",
                        _ => "warn",
                    },
                    outcome: a.outcome.clone(),
                    source: a.source.clone().unwrap_or_default(),
                    detail: a.detail.clone().unwrap_or_default(),
                })
                .collect(),
            older,
        })
    }
    .await;
    page(&ui, "/ui/audit", got)
}
