//! The overview page: the fleet's counts, compatibility, troubles and activity by hour.

use super::chart::{self, Bar};
use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Query;
use crate::rollout;
use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::{Html, Response};

use super::devices::is_online;
use super::*;

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    devices: u64,
    online: u64,
    offline: u64,
    compat_states: Vec<Count>,
    compat_kinds: Vec<Count>,
    troubles: Vec<Count>,
    rollouts: Vec<RolloutRow>,
    error_chart: String,
    error_bars: Vec<Bar>,
}

pub async fn overview(State(st): State<AppState>, ui: Ui) -> Response {
    let got = overview_page(&st, &ui).await;
    page(&ui, "/ui/", got)
}

async fn overview_page(st: &AppState, ui: &Ui) -> Result<Html<String>, ApiError> {
    let tenant = ui.op.tenant;
    let devices = st.store.count_devices(tenant).await?;
    let elsewhere = st.devices.snapshot(tenant).await;
    let online = st
        .compat
        .snapshot(tenant)
        .iter()
        .filter(|(id, _)| is_online(st, &elsewhere, tenant, id))
        .count() as u64;
    let summary = fleet_summary(st, ui).await?;
    let fleet = &summary.compat;
    let compat_states = fleet
        .by_state
        .iter()
        .map(|(k, v)| Count {
            name: k.clone(),
            count: *v,
            class: compat_class(k),
        })
        .collect();
    let compat_kinds = fleet
        .by_kind
        .iter()
        .map(|(k, v)| Count {
            name: k.clone(),
            count: *v,
            class: "warn",
        })
        .collect();
    let troubles = st
        .store
        .live_troubles_by_severity(tenant)
        .await?
        .into_iter()
        .map(|(k, v)| Count {
            class: severity_class(&k),
            name: k,
            count: v,
        })
        .collect();
    let Json(list) = rollout::api::list(
        State(st.clone()),
        ui.auth(),
        Query(rollout::api::ListQuery { limit: Some(100) }),
    )
    .await?;
    let rollouts = list
        .rollouts
        .iter()
        .filter(|r| matches!(r.state.as_str(), "running" | "paused" | "awaiting_approval"))
        .map(rollout_row)
        .collect();
    let error_bars = buckets(&summary.errors, summary.since, HOUR_MS, 24, hour_label);
    let p = OverviewPage {
        title: "Fleet overview".into(),
        nav: nav(ui, "/ui/"),
        css: ASSET_CSS,
        js: ASSET_JS,
        devices,
        online,
        offline: devices.saturating_sub(online),
        compat_states,
        compat_kinds,
        troubles,
        rollouts,
        error_chart: chart::bars("Error events per hour, last 24 hours", &error_bars),
        error_bars,
    };
    render(&p)
}

/// The overview's fleet-wide numbers (compatibility by state and kind, error events per
/// hour): they read the whole fleet, so a tenant's are computed at most every
/// [`crate::ui::SUMMARY_TTL`] on an instance, however many pages refresh.
pub struct Summary {
    at: std::time::Instant,
    compat: fleetcare_wire::compat::FleetCompat,
    since: i64,
    errors: Vec<(i64, u64)>,
}

async fn fleet_summary(st: &AppState, ui: &Ui) -> Result<std::sync::Arc<Summary>, ApiError> {
    let tenant = ui.op.tenant;
    // One computation at a time per tenant and instance; a page that waited finds it fresh.
    let lock = st
        .ui
        .computing
        .lock()
        .expect("computing")
        .entry(tenant)
        .or_default()
        .clone();
    let _one = lock.lock().await;
    if let Some(s) = st.ui.summaries.lock().expect("summaries").get(&tenant)
        && s.at.elapsed() < crate::ui::SUMMARY_TTL
    {
        return Ok(s.clone());
    }
    let Json(compat) = crate::compat::api::fleet(State(st.clone()), ui.auth()).await?;
    let now = st.clock.now_ms();
    let since = (now / HOUR_MS - 23) * HOUR_MS;
    let errors = st.store.error_counts(tenant, None, since, HOUR_MS).await?;
    let s = std::sync::Arc::new(Summary {
        at: std::time::Instant::now(),
        compat,
        since,
        errors,
    });
    st.ui
        .summaries
        .lock()
        .expect("summaries")
        .insert(tenant, s.clone());
    Ok(s)
}
