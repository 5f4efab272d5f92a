//! The notifications page: the tenant's subscriptions, their state, and each one's newest
//! deliveries (what was sent, what failed and why).

use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;

use super::*;

/// Deliveries shown per subscription.
const RECENT: u32 = 10;

pub struct SubscriptionRow {
    name: String,
    channel: String,
    target: String,
    events: String,
    filter: String,
    min_severity: String,
    state: String,
    class: &'static str,
    reason: String,
    pending: u64,
    last_success: String,
    deliveries: Vec<DeliveryRow>,
}

pub struct DeliveryRow {
    id: u64,
    event: String,
    kind: String,
    state: String,
    class: &'static str,
    attempts: u64,
    made: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "notify.html")]
struct NotifyPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    rows: Vec<SubscriptionRow>,
}

pub async fn notify(State(st): State<AppState>, ui: Ui) -> Response {
    let got = async {
        let Json(list) = crate::notify::api::list(State(st.clone()), ui.auth()).await?;
        let mut rows = Vec::with_capacity(list.subscriptions.len());
        for s in list.subscriptions {
            let Json(ds) = crate::notify::api::deliveries(
                State(st.clone()),
                ui.auth(),
                Path(s.name.clone()),
                crate::extract::Query(crate::notify::api::DeliveriesQuery {
                    before: None,
                    limit: Some(RECENT),
                }),
            )
            .await?;
            rows.push(SubscriptionRow {
                class: if s.state == "active" { "ok" } else { "bad" },
                name: s.name,
                channel: s.channel,
                target: s.target.join(", "),
                events: s.events.join(", "),
                filter: s.filter,
                min_severity: s.min_severity,
                state: s.state,
                reason: s.state_reason.unwrap_or_default(),
                pending: s.pending,
                last_success: s
                    .last_success_at
                    .as_deref()
                    .map(when)
                    .unwrap_or_else(|| "never".into()),
                deliveries: ds
                    .deliveries
                    .into_iter()
                    .map(|d| DeliveryRow {
                        id: d.id,
                        event: d.event_id,
                        kind: d.event_type,
                        class: match d.state.as_str() {
                            "delivered" => "ok",
                            "failed" => "bad",
                            _ => "warn",
                        },
                        state: d.state,
                        attempts: d.attempts,
                        made: when(&d.created_at),
                        outcome: d
                            .last_error
                            .or_else(|| {
                                d.delivered_at
                                    .as_deref()
                                    .map(|t| format!("delivered {}", when(t)))
                            })
                            .unwrap_or_default(),
                    })
                    .collect(),
            });
        }
        render(&NotifyPage {
            title: "Notifications".into(),
            nav: nav(&ui, "/ui/notify"),
            css: ASSET_CSS,
            js: ASSET_JS,
            rows,
        })
    }
    .await;
    page(&ui, "/ui/notify", got)
}
