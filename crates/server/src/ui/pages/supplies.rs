//! The "running out" page: the fleet's supplies with a live low or empty trouble, soonest
//! empty first, with the part to order; parts near or past their expected life; and the
//! month's meter reads as CSV.

use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use crate::error::ApiError;
use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::*;

pub struct SupplyRow {
    device: String,
    model: String,
    supply: String,
    level: String,
    state: String,
    class: &'static str,
    part: String,
    days_left: String,
    empty_at: String,
    trouble: u64,
}

pub struct PartRow {
    device: String,
    slot: String,
    title: String,
    action: String,
    severity: String,
    class: &'static str,
    trouble: u64,
}

#[derive(Template)]
#[template(path = "supplies.html")]
struct SuppliesPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    rows: Vec<SupplyRow>,
    parts: Vec<PartRow>,
    /// The last whole month (`YYYY-MM`), the export's default.
    last_month: String,
    may_export: bool,
}

pub async fn supplies(State(st): State<AppState>, ui: Ui) -> Response {
    let got = async {
        let Json(out) = crate::life::api::running_out(State(st.clone()), ui.auth()).await?;
        let (y, m) = fleetcare_core::meters::civil_month(st.clock.now_ms());
        let (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        render(&SuppliesPage {
            title: "Running out".into(),
            nav: nav(&ui, "/ui/supplies"),
            css: ASSET_CSS,
            js: ASSET_JS,
            rows: out
                .supplies
                .iter()
                .map(|s| {
                    let sup = &s.status.supply;
                    SupplyRow {
                        device: s.device_id.clone(),
                        model: s.model.clone(),
                        supply: match &sup.color {
                            Some(c) => format!("{} {c} ({})", sup.kind.as_str(), sup.slot),
                            None => format!("{} ({})", sup.kind.as_str(), sup.slot),
                        },
                        level: sup.level_pct.map_or("—".into(), |l| format!("{l} %")),
                        state: sup.state.as_str().to_owned(),
                        class: match sup.state {
                            fleetcare_wire::SupplyState::Empty => "bad",
                            _ => "warn",
                        },
                        part: sup.part_number.clone().unwrap_or_else(|| "—".into()),
                        days_left: s
                            .status
                            .days_left
                            .map_or("not known yet".into(), |d| format!("{d:.1}")),
                        empty_at: s.status.empty_at.as_deref().map_or(String::new(), when),
                        trouble: s.trouble_id,
                    }
                })
                .collect(),
            parts: out
                .parts
                .iter()
                .map(|p| PartRow {
                    device: p.device_id.clone(),
                    slot: p.slot.clone(),
                    title: p.title.clone(),
                    action: p.action.clone(),
                    severity: p.severity.clone(),
                    class: if p.severity == "major" { "bad" } else { "warn" },
                    trouble: p.trouble_id,
                })
                .collect(),
            last_month: format!("{y:04}-{m:02}"),
            may_export: ui.may("GET", "/api/v1/meter-reads"),
        })
    }
    .await;
    page(&ui, "/ui/supplies", got)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    period: String,
    #[serde(default)]
    model: Option<String>,
}

/// A month's meter reads as CSV (one row per device and meter), read a page of devices at a
/// time and sent as it is read.
pub async fn meter_reads_csv(
    State(st): State<AppState>,
    ui: Ui,
    q: Result<axum::extract::Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return page(&ui, "/ui/supplies", Err(e)),
    };
    if !ui.may("GET", "/api/v1/meter-reads") {
        let e = ApiError::Forbidden(format!("the role {} may not read meters", ui.op.role));
        return page(&ui, "/ui/supplies", Err(e));
    }
    let period = match crate::life::reads::parse_period(&q.period) {
        Ok(p) => p,
        Err(e) => return page(&ui, "/ui/supplies", Err(ApiError::BadRequest(e))),
    };
    let tenant = ui.op.tenant;
    let state = (st, Some(String::new()), true);
    let body = futures_util::stream::unfold(state, move |(st, after, first)| {
        let model = q.model.clone();
        async move {
            let after = after?;
            let (reads, next) = match crate::life::reads::read_page(
                &st,
                tenant,
                period,
                model.as_deref(),
                &after,
                crate::life::api::MAX_READS_PAGE,
            )
            .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "a meter-read export stopped");
                    return Some((Err(std::io::Error::other(e.to_string())), (st, None, false)));
                }
            };
            let mut text = String::new();
            if first {
                text.push_str(fleetcare_wire::life::READ_CSV_HEADER);
                text.push('\n');
            }
            for d in &reads {
                for r in fleetcare_wire::life::read_csv_rows(d) {
                    text.push_str(&r);
                    text.push('\n');
                }
            }
            Some((Ok::<_, std::io::Error>(text), (st, next, false)))
        }
    });
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"meter-reads-{}.csv\"", q.period),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}
