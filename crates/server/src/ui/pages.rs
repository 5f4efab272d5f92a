//! The dashboard's pages. Each reads through the operator API's handlers (as the logged-in
//! operator) and turns their answers into rows of text for its template.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use fleetcare_core::DeviceId;
use fleetcare_rollout::Filter;
use fleetcare_store::DeviceKey;
use fleetcare_wire::compat::SoftwareStep;
use fleetcare_wire::operator::{Change, UnitRef};
use serde::Deserialize;

use super::chart::{self, Bar, StackRow};
use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use crate::access::api as access;
use crate::cluster::events;
use crate::compat::api as compat_api;
use crate::devices::api as devices_api;
use crate::diag::logs as errors;
use crate::error::ApiError;
use crate::extract::Query;
use crate::{diag, rollout};

/// Rows a device search shows (the count says how many matched).
const SHOWN: usize = 200;
use fleetcare_wire::compat::FINDING_KINDS;
const HOUR_MS: i64 = 3_600_000;

// ---- what every page has ------------------------------------------------------------------

pub struct NavItem {
    href: &'static str,
    label: &'static str,
    current: bool,
}

pub struct Nav {
    items: Vec<NavItem>,
    name: String,
    role: String,
    /// The customer looked into, and the ones to choose from.
    scope: Option<String>,
    customers: Vec<Choice>,
}

fn nav(ui: &Ui, current: &str) -> Nav {
    let mut items = vec![
        ("/ui/", "Overview"),
        ("/ui/devices", "Devices"),
        ("/ui/troubles", "Troubles"),
        ("/ui/rollouts", "Rollouts"),
        ("/ui/catalog", "Catalog"),
    ];
    if ui.may("GET", "/api/v1/audit") {
        items.push(("/ui/audit", "Audit log"));
    }
    Nav {
        items: items
            .into_iter()
            .map(|(href, label)| NavItem {
                href,
                label,
                current: href == current,
            })
            .collect(),
        name: ui.op.name.clone(),
        role: ui.op.role.clone(),
        scope: ui.scope.clone(),
        customers: choices(
            ui.customers.iter().map(String::as_str),
            ui.scope.as_deref().unwrap_or(""),
        ),
    }
}

/// A button that posts to an API endpoint (shown only where the role may).
pub struct Action {
    id: &'static str,
    label: &'static str,
    url: String,
    done: String,
    class: &'static str,
    confirm: String,
}

/// Every API endpoint a page's button posts to (each is in `authz::TABLE`: a test checks).
const ACTIONS: &[&str] = &[
    "/api/v1/devices/{id}/request-report",
    "/api/v1/devices/{id}/request-errors",
    "/api/v1/troubles/{id}/ack",
    "/api/v1/troubles/{id}/resolve",
    "/api/v1/rollouts/{id}/approve",
    "/api/v1/rollouts/{id}/pause",
    "/api/v1/rollouts/{id}/resume",
    "/api/v1/rollouts/{id}/abort",
    "/api/v1/devices/{id}/units/{slot}/disable",
    "/api/v1/devices/{id}/units/{slot}/enable",
];

/// The action if the operator may take it: `rule` is the endpoint's route in `authz::TABLE`.
fn action(
    ui: &Ui,
    rule: &str,
    url: String,
    id: &'static str,
    label: &'static str,
    done: String,
) -> Option<Action> {
    debug_assert!(ACTIONS.contains(&rule), "{rule} is not in ACTIONS");
    ui.may("POST", rule).then_some(Action {
        id,
        label,
        url,
        done,
        class: "",
        confirm: String::new(),
    })
}

fn render(t: &impl Template) -> Result<Html<String>, ApiError> {
    t.render()
        .map(Html)
        .map_err(|e| ApiError::Internal(format!("rendering a page: {e}")))
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    message: String,
}

/// A page, or the problem in words with the API's status.
fn page(ui: &Ui, current: &str, got: Result<Html<String>, ApiError>) -> Response {
    match got {
        Ok(html) => html.into_response(),
        Err(e) => {
            let status = e.status();
            let title = match status {
                StatusCode::NOT_FOUND => "Not found",
                StatusCode::FORBIDDEN => "Not allowed",
                StatusCode::BAD_REQUEST => "Not understood",
                _ => "A problem",
            };
            let p = ProblemPage {
                title: title.into(),
                nav: nav(ui, current),
                css: ASSET_CSS,
                js: ASSET_JS,
                message: e.to_string(),
            };
            match render(&p) {
                Ok(html) => (status, html).into_response(),
                Err(e) => e.into_response(),
            }
        }
    }
}

/// A page's query string, or its problem.
fn query<T: serde::de::DeserializeOwned>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(format!("the page's query: {}", e.body_text())))
}

/// Percent-encode for a query value.
pub fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An RFC 3339 time as people read it: `2026-12-02 01:29:14 UTC`.
fn when(t: &str) -> String {
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => t.to_owned(),
    }
}

fn when_opt(t: Option<&String>) -> String {
    t.map(|t| when(t)).unwrap_or_else(|| "—".into())
}

fn hour_label(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%H:00").to_string())
        .unwrap_or_default()
}

fn day_label(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%m-%d %H:00").to_string())
        .unwrap_or_default()
}

/// Buckets of `bucket_ms` from `since_ms` to now, with zeroes where no events were.
fn buckets(
    counts: &[(i64, u64)],
    since_ms: i64,
    bucket_ms: i64,
    n: i64,
    label: fn(i64) -> String,
) -> Vec<Bar> {
    let by: HashMap<i64, u64> = counts.iter().copied().collect();
    (0..n)
        .map(|i| {
            let at = since_ms + i * bucket_ms;
            Bar {
                label: label(at),
                value: by.get(&at).copied().unwrap_or(0),
            }
        })
        .collect()
}

fn compat_class(state: &str) -> &'static str {
    match state {
        "compatible" => "ok",
        "software" => "warn",
        "hardware" => "bad",
        _ => "off",
    }
}

fn severity_class(s: &str) -> &'static str {
    match s {
        "critical" | "major" | "error" => "bad",
        "minor" | "warning" => "warn",
        _ => "info",
    }
}

fn rollout_class(s: &str) -> &'static str {
    match s {
        "running" => "info",
        "paused" | "awaiting_approval" => "warn",
        "aborted" => "bad",
        "done" | "finished" => "ok",
        _ => "off",
    }
}

/// One palette for every badge: ok (done, good), info (under way), warn (needs someone's
/// attention), bad (failed, critical), off (not applicable, inactive).
fn rollout_device_class(s: &str) -> &'static str {
    match s {
        "succeeded" => "ok",
        "running" | "pending" => "info",
        "ineligible" => "warn",
        "failed" => "bad",
        _ => "off",
    }
}

fn job_class(s: &str) -> &'static str {
    match s {
        "succeeded" => "ok",
        "failed" | "rolled_back" => "bad",
        "cancelled" | "expired" => "off",
        "awaiting_approval" => "warn",
        _ => "info",
    }
}

fn step(s: &SoftwareStep) -> String {
    match &s.from {
        Some(from) => format!("{}: {} {from} → {} ({})", s.slot, s.product, s.to, s.action),
        // A unit that is not there yet (advice): what it gets, not a change from "none".
        None => format!("{}: {} {} ({})", s.slot, s.product, s.to, s.action),
    }
}

fn online_text(online: bool) -> (&'static str, &'static str) {
    if online {
        ("online", "ok")
    } else {
        ("offline", "off")
    }
}

fn last_report(r: Option<&fleetcare_wire::operator::LastReport>) -> String {
    r.map(|r| format!("{} ({})", when(&r.received_at), r.trigger.as_str()))
        .unwrap_or_else(|| "none yet".into())
}

// ---- the overview -----------------------------------------------------------------------

pub struct Count {
    name: String,
    count: u64,
    class: &'static str,
}

pub struct RolloutRow {
    id: u64,
    name: String,
    release: String,
    state: String,
    class: &'static str,
    wave: String,
    devices: u64,
    done: u64,
    percent: u64,
    succeeded: u64,
    failed: u64,
    created: String,
}

fn rollout_row(r: &fleetcare_wire::rollouts::Rollout) -> RolloutRow {
    let t = &r.total;
    let done = t.succeeded + t.failed + t.skipped;
    RolloutRow {
        id: r.id,
        name: r.name.clone(),
        release: r
            .spec
            .release
            .as_ref()
            .map(|x| format!("{} {}", x.product, x.version))
            .unwrap_or_else(|| "each device's own plan".into()),
        state: r.state.clone(),
        class: rollout_class(&r.state),
        wave: format!("{} of {}", r.current_wave, r.waves.len()),
        devices: t.devices,
        done,
        percent: (done * 100).checked_div(t.devices).unwrap_or(0),
        succeeded: t.succeeded,
        failed: t.failed,
        created: when(&r.created_at),
    }
}

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
    let elsewhere = crate::cluster::snapshot(st, tenant).await;
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
/// [`super::SUMMARY_TTL`] on an instance, however many pages refresh.
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
        && s.at.elapsed() < super::SUMMARY_TTL
    {
        return Ok(s.clone());
    }
    let Json(compat) = compat_api::fleet(State(st.clone()), ui.auth()).await?;
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

/// Whether the device is connected to this instance, or (as `elsewhere`, a snapshot of the
/// tenant's presence) to another.
fn is_online(
    st: &AppState,
    elsewhere: &HashMap<String, crate::devices::hub::Via>,
    tenant: fleetcare_store::TenantId,
    id: &str,
) -> bool {
    elsewhere.contains_key(id)
        || DeviceId::parse(id)
            .is_ok_and(|device_id| st.hub.online(&DeviceKey { tenant, device_id }).is_some())
}

// ---- devices ----------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceSearch {
    q: String,
    model: String,
    site: String,
    finding: String,
    trouble: String,
    version: String,
    online: String,
    filter: String,
    /// The page after this device id (the previous page's last).
    after: String,
}

impl DeviceSearch {
    /// This search's query string, for the page after `after`.
    fn next(&self, after: &str) -> String {
        let fields = [
            ("q", &self.q),
            ("model", &self.model),
            ("site", &self.site),
            ("finding", &self.finding),
            ("trouble", &self.trouble),
            ("version", &self.version),
            ("online", &self.online),
            ("filter", &self.filter),
        ];
        let mut parts: Vec<String> = fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", url_escape(v)))
            .collect();
        parts.push(format!("after={}", url_escape(after)));
        format!("/ui/devices?{}", parts.join("&"))
    }
}

pub struct Choice {
    name: String,
    label: String,
    selected: bool,
}

fn choices<'a>(names: impl IntoIterator<Item = &'a str>, current: &str) -> Vec<Choice> {
    names
        .into_iter()
        .map(|n| Choice {
            name: n.to_owned(),
            label: n.to_owned(),
            selected: n == current,
        })
        .collect()
}

pub struct DeviceRow {
    id: String,
    model: String,
    site: String,
    online: &'static str,
    online_class: &'static str,
    compat: String,
    compat_class: &'static str,
    units: usize,
    troubles: u64,
    last_report: String,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    q: DeviceSearch,
    here: String,
    models: Vec<Choice>,
    sites: Vec<Choice>,
    findings: Vec<Choice>,
    troubles: Vec<Choice>,
    problem: Option<String>,
    matched: usize,
    shown: usize,
    rows: Vec<DeviceRow>,
    /// The next page's address, when there is one.
    next: Option<String>,
}

/// A value in the filter language's quotes.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub async fn devices(
    State(st): State<AppState>,
    ui: Ui,
    uri: axum::http::Uri,
    q: Result<axum::extract::Query<DeviceSearch>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let got = match query(q) {
        Ok(q) => devices_page(&st, &ui, q, uri.to_string()).await,
        Err(e) => Err(e),
    };
    page(&ui, "/ui/devices", got)
}

async fn devices_page(
    st: &AppState,
    ui: &Ui,
    q: DeviceSearch,
    here: String,
) -> Result<Html<String>, ApiError> {
    let tenant = ui.op.tenant;
    let mut problem = None;
    // The form's fields become conditions of the rollout language, beside the user's own.
    let mut parts = Vec::new();
    if !q.filter.trim().is_empty() {
        match Filter::parse(&q.filter) {
            Ok(_) => parts.push(format!("({})", q.filter)),
            Err(e) => problem = Some(format!("The rollout filter: {e}")),
        }
    }
    if !q.model.is_empty() {
        parts.push(format!("model = {}", quoted(&q.model)));
    }
    if !q.site.is_empty() {
        parts.push(format!("site = {}", quoted(&q.site)));
    }
    let filter = Filter::parse(&parts.join(" and "))
        .map_err(|e| ApiError::BadRequest(format!("the search: {e}")))?;
    let version = {
        let v: Vec<&str> = q.version.split_whitespace().collect();
        match v.as_slice() {
            [] => None,
            [v] => Some((None, *v)),
            [p, v] => Some((Some(*p), *v)),
            _ => {
                problem = Some("The software version: VERSION, or PRODUCT VERSION".into());
                None
            }
        }
    };
    let mut found = if problem.is_some() {
        Vec::new()
    } else {
        let st2 = st.clone();
        let (filter, version) = (
            filter,
            version.map(|(p, v)| (p.map(str::to_owned), v.to_owned())),
        );
        tokio::task::spawn_blocking(move || {
            rollout::select::search(
                &st2,
                tenant,
                &filter,
                version.as_ref().map(|(p, v)| (p.as_deref(), v.as_str())),
            )
        })
        .await
        .map_err(|e| ApiError::Internal(format!("the search: {e}")))?
    };
    let text = q.q.trim().to_lowercase();
    if !text.is_empty() {
        found.retain(|f| {
            f.id.to_lowercase().contains(&text) || f.model.to_lowercase().contains(&text)
        });
    }
    if !q.finding.is_empty() {
        let with: BTreeSet<String> = st
            .store
            .devices_with_finding(tenant, &q.finding)
            .await?
            .into_iter()
            .collect();
        found.retain(|f| with.contains(&*f.id));
    }
    if !q.trouble.is_empty() {
        let severity = (q.trouble != "any").then_some(q.trouble.as_str());
        let with: BTreeSet<String> = st
            .store
            .devices_with_troubles(tenant, severity)
            .await?
            .into_iter()
            .collect();
        found.retain(|f| with.contains(&*f.id));
    }
    let elsewhere = crate::cluster::snapshot(st, tenant).await;
    match q.online.as_str() {
        "yes" => found.retain(|f| is_online(st, &elsewhere, tenant, &f.id)),
        "no" => found.retain(|f| !is_online(st, &elsewhere, tenant, &f.id)),
        _ => {}
    }
    let mut live: HashMap<String, u64> = HashMap::new();
    for t in st
        .store
        .troubles(
            tenant,
            &fleetcare_store::TroubleFilter {
                state: Some("live".into()),
                ..Default::default()
            },
            1000,
        )
        .await?
    {
        *live.entry(t.device_id).or_default() += 1;
    }
    let first = found.partition_point(|f| *f.id <= *q.after);
    let page_of = &found[first..];
    let next = (page_of.len() > SHOWN).then(|| q.next(&page_of[SHOWN - 1].id));
    let mut rows = Vec::new();
    for f in page_of.iter().take(SHOWN) {
        let Ok(device_id) = DeviceId::parse(&f.id) else {
            continue;
        };
        let rec = st.store.device(&DeviceKey { tenant, device_id }).await?;
        let (online, online_class) = online_text(is_online(st, &elsewhere, tenant, &f.id));
        let compat = rec
            .as_ref()
            .and_then(|r| r.compat_state.clone())
            .unwrap_or_else(|| "not judged".into());
        rows.push(DeviceRow {
            id: f.id.to_string(),
            model: f.model.to_string(),
            site: f.site.clone().unwrap_or_default(),
            online,
            online_class,
            compat_class: compat_class(&compat),
            compat,
            units: f.units,
            troubles: live.get(&*f.id).copied().unwrap_or(0),
            last_report: last_report(
                rec.as_ref()
                    .and_then(|r| r.last_report.as_ref())
                    .map(devices_api::last_report)
                    .as_ref(),
            ),
        });
    }
    let (sites, models) = rollout::select::sites_and_models(st, tenant);
    let severities = fleetcare_diag::rules::TroubleSeverity::NAMES;
    let mut troubles = vec![Choice {
        name: "any".into(),
        label: "any live trouble".into(),
        selected: q.trouble == "any",
    }];
    troubles.extend(severities.iter().rev().map(|s| Choice {
        name: (*s).to_owned(),
        label: format!("a {s} trouble"),
        selected: q.trouble == *s,
    }));
    let p = DevicesPage {
        title: "Devices".into(),
        nav: nav(ui, "/ui/devices"),
        css: ASSET_CSS,
        js: ASSET_JS,
        models: choices(models.iter().map(String::as_str), &q.model),
        sites: choices(sites.iter().map(String::as_str), &q.site),
        findings: choices(FINDING_KINDS.iter().copied(), &q.finding),
        troubles,
        problem,
        matched: found.len(),
        shown: rows.len(),
        rows,
        next,
        here,
        q,
    };
    render(&p)
}

// ---- one device -------------------------------------------------------------------------

pub struct DeviceFacts {
    id: String,
    model: String,
    online: &'static str,
    online_class: &'static str,
    compat: String,
    compat_class: &'static str,
    last_report: String,
    structure_changed: String,
    enrolled: String,
    interval: String,
    operating: String,
}

pub struct UnitRow {
    slot: String,
    kind: String,
    model: String,
    serial: String,
    hw_revision: String,
    software: Vec<String>,
    in_service: bool,
    /// Why it is out of service, by whom, and which unit took over (the center's record).
    service_note: String,
    /// Where to post to put it back, or to take it out, where the role may.
    enable_url: Option<String>,
    disable_url: Option<String>,
}

pub struct FindingRow {
    kind: String,
    explanation: String,
    rule: String,
    since: String,
}

pub struct AdviceRow {
    summary: String,
    steps: Vec<String>,
}

pub struct ErrorRow {
    at: String,
    slot: String,
    code: String,
    severity: String,
    class: &'static str,
    detail: String,
    trigger: String,
}

pub struct TroubleRow {
    id: u64,
    title: String,
    severity: String,
    class: &'static str,
    device: String,
    state: String,
    occurrences: u64,
    opened: String,
    last: String,
}

pub struct JobRow {
    id: u64,
    origin: String,
    state: String,
    class: &'static str,
    steps: Vec<String>,
    created: String,
    updated: String,
}

pub struct HistoryRow {
    at: String,
    seq: u64,
    trigger: &'static str,
    what: String,
    old: String,
    new: String,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    event: String,
    actions: Vec<Action>,
    d: DeviceFacts,
    units: Vec<UnitRow>,
    findings: Vec<FindingRow>,
    plan: Vec<String>,
    no_plan: String,
    no_plan_summary: String,
    /// Why no job is made for the plan (the device cannot install).
    plan_blocked: String,
    advice: Vec<AdviceRow>,
    error_chart: String,
    errors: Vec<ErrorRow>,
    troubles: Vec<TroubleRow>,
    jobs: Vec<JobRow>,
    history: Vec<HistoryRow>,
}

fn unit_text(u: &UnitRef) -> String {
    let rev = if u.hw_revision.is_empty() {
        String::new()
    } else {
        format!(" rev {}", u.hw_revision)
    };
    format!("{} {}{}, serial {}", u.kind, u.model, rev, u.serial)
}

fn history_row(e: &fleetcare_wire::operator::HistoryEvent) -> HistoryRow {
    let (what, old, new) = match &e.change {
        Change::UnitAdded { slot, unit } => (
            format!("{slot}: unit added"),
            String::new(),
            unit_text(unit),
        ),
        Change::UnitRemoved { slot, unit } => (
            format!("{slot}: unit removed"),
            unit_text(unit),
            "none".into(),
        ),
        Change::UnitReplaced { slot, old, new } => (
            format!("{slot}: unit replaced"),
            unit_text(old),
            unit_text(new),
        ),
        Change::UnitChanged { slot, old, new } => (
            format!("{slot}: unit changed"),
            unit_text(old),
            unit_text(new),
        ),
        Change::UnitServiceChanged {
            slot,
            serial,
            in_service,
        } => (
            format!("{slot}: unit {serial}"),
            String::new(),
            if *in_service {
                "back in service".into()
            } else {
                "taken out of service".into()
            },
        ),
        Change::SoftwareAdded { slot, software } => (
            format!("{slot}: software added"),
            String::new(),
            format!("{} {}", software.product, software.version),
        ),
        Change::SoftwareRemoved { slot, software } => (
            format!("{slot}: software removed"),
            format!("{} {}", software.product, software.version),
            "none".into(),
        ),
        Change::SoftwareChanged {
            slot,
            product,
            active,
            old_version,
            new_version,
            ..
        } => (
            format!(
                "{slot}: {product}{}",
                if *active { "" } else { " (inactive copy)" }
            ),
            old_version.clone(),
            new_version.clone(),
        ),
    };
    HistoryRow {
        at: when(&e.at),
        seq: e.seq,
        trigger: e.trigger.as_str(),
        what,
        old,
        new,
    }
}

fn trouble_row(t: &fleetcare_wire::troubles::Trouble) -> TroubleRow {
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

pub async fn device(State(st): State<AppState>, ui: Ui, Path(id): Path<String>) -> Response {
    let got = device_page(&st, &ui, id).await;
    page(&ui, "/ui/devices", got)
}

async fn device_page(st: &AppState, ui: &Ui, id: String) -> Result<Html<String>, ApiError> {
    let s = || State(st.clone());
    let Json(v) = devices_api::show_device(s(), ui.auth(), Path(id.clone())).await?;
    let gap = st
        .store
        .periodic_gap_ms(&crate::extract::device_key(&ui.auth(), &id)?)
        .await?;
    let Json(compat) = compat_api::device_compat(s(), ui.auth(), Path(id.clone())).await?;
    let Json(history) = devices_api::device_history(
        s(),
        ui.auth(),
        Path(id.clone()),
        Query(devices_api::HistoryQuery { limit: Some(100) }),
    )
    .await?;
    let Json(errs) = errors::list(
        s(),
        ui.auth(),
        Path(id.clone()),
        Query(errors::ErrorQuery {
            since: None,
            code: None,
            limit: Some(20),
        }),
    )
    .await?;
    let Json(troubles) = diag::api::list_troubles(
        s(),
        ui.auth(),
        Query(diag::api::TroubleQuery {
            state: Some("all".into()),
            device: Some(id.clone()),
            rule: None,
            limit: Some(20),
        }),
    )
    .await?;
    let Json(jobs) = crate::delivery::api::list_jobs(
        s(),
        ui.auth(),
        Query(crate::delivery::api::JobsQuery {
            device: Some(id.clone()),
            state: None,
            before: None,
            limit: Some(20),
        }),
    )
    .await?;
    let Json(out) = crate::compat::units::list(s(), ui.auth(), Path(id.clone())).await?;
    let now = st.clock.now_ms();
    let six_h = 6 * HOUR_MS;
    let since = (now / six_h - 27) * six_h;
    let counts = st
        .store
        .error_counts(ui.op.tenant, Some(&v.device_id), since, six_h)
        .await?;
    let bars = buckets(&counts, since, six_h, 28, day_label);
    let (online, online_class) = online_text(v.online);
    let compat_state = v
        .compat_state
        .clone()
        .unwrap_or_else(|| "not judged".into());
    let path = url_escape(&v.device_id);
    let mut actions: Vec<Action> = [
        action(
            ui,
            "/api/v1/devices/{id}/request-report",
            format!("/api/v1/devices/{path}/request-report"),
            "request-report",
            "Request a report",
            "Report requested: it shows here when it arrives.".into(),
        ),
        action(
            ui,
            "/api/v1/devices/{id}/request-errors",
            format!("/api/v1/devices/{path}/request-errors"),
            "request-errors",
            "Request the error log",
            "Error log requested: new events show here when they arrive.".into(),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    for a in &mut actions {
        a.class = "secondary";
    }
    let p = DevicePage {
        title: format!("Device {}", v.device_id),
        nav: nav(ui, "/ui/devices"),
        css: ASSET_CSS,
        js: ASSET_JS,
        event: events::device_event(&v.device_id),
        actions,
        d: DeviceFacts {
            id: v.device_id.clone(),
            model: v.model.clone(),
            online,
            online_class,
            compat_class: compat_class(&compat_state),
            compat: compat_state,
            last_report: last_report(v.last_report.as_ref()),
            structure_changed: when_opt(v.structure_changed_at.as_ref()),
            enrolled: when(&v.enrolled_at),
            interval: match v.report_interval_s {
                Some(s) => format!(
                    "every {} (set by the center)",
                    fleetcare_diag::rules::duration_words(
                        i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000)
                    )
                ),
                None => match gap {
                    Some(ms) => format!(
                        "the agent's own: every {} (between its last two periodic reports)",
                        fleetcare_diag::rules::duration_words(ms)
                    ),
                    None => "the agent's own (two periodic reports show it)".into(),
                },
            },
            operating: v
                .operating
                .iter()
                .map(|(k, x)| format!("{k} {x}"))
                .collect::<Vec<_>>()
                .join(", "),
        },
        units: v
            .units
            .iter()
            .map(|u| UnitRow {
                slot: u.slot.clone(),
                kind: u.kind.clone(),
                model: u.model.clone(),
                serial: u.serial.clone(),
                hw_revision: u.hw_revision.clone(),
                software: u
                    .software
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {} ({}){}",
                            s.product,
                            s.version,
                            s.maker,
                            if s.active { "" } else { ", inactive copy" }
                        )
                    })
                    .collect(),
                in_service: u.in_service,
                service_note: out
                    .iter()
                    .find(|o| o.slot == u.slot)
                    .map(|o| {
                        format!(
                            "{} (by {}{})",
                            o.reason,
                            o.taken_by,
                            o.switched_to
                                .as_ref()
                                .map_or(String::new(), |to| format!("; the {to} took over"))
                        )
                    })
                    .unwrap_or_default(),
                enable_url: (out.iter().any(|o| o.slot == u.slot)
                    && ui.may("POST", "/api/v1/devices/{id}/units/{slot}/enable"))
                .then(|| {
                    format!(
                        "/api/v1/devices/{path}/units/{}/enable",
                        url_escape(&u.slot)
                    )
                }),
                disable_url: (u.in_service
                    && ui.may("POST", "/api/v1/devices/{id}/units/{slot}/disable"))
                .then(|| {
                    format!(
                        "/api/v1/devices/{path}/units/{}/disable",
                        url_escape(&u.slot)
                    )
                }),
            })
            .collect(),
        findings: compat
            .findings
            .iter()
            .map(|f| FindingRow {
                kind: f.kind.clone(),
                explanation: f.explanation.clone(),
                rule: f.rule.clone(),
                since: when(&f.opened_at),
            })
            .collect(),
        plan: compat
            .plan
            .as_ref()
            .map(|p| p.steps.iter().map(step).collect())
            .unwrap_or_default(),
        no_plan: compat.no_plan.clone().unwrap_or_default(),
        no_plan_summary: compat.no_plan_summary.clone().unwrap_or_default(),
        plan_blocked: compat
            .plan
            .as_ref()
            .and_then(|p| p.blocked.clone())
            .unwrap_or_default(),
        advice: compat
            .advice
            .iter()
            .map(|a| AdviceRow {
                summary: a.summary.clone(),
                steps: a
                    .hardware
                    .iter()
                    .map(|h| match h.action.as_str() {
                        "replace" => format!(
                            "{}: replace {} rev {} by {} rev {}",
                            h.slot,
                            h.from_model,
                            h.from_hw_revision,
                            h.to_model.as_deref().unwrap_or("?"),
                            h.to_hw_revision.as_deref().unwrap_or("any")
                        ),
                        other => {
                            format!("{}: {} ({})", h.slot, other.replace('_', " "), h.from_model)
                        }
                    })
                    .chain(a.software.iter().map(step))
                    .collect(),
            })
            .collect(),
        error_chart: chart::bars("Error events per 6 hours, last 7 days", &bars),
        errors: errs
            .events
            .iter()
            .map(|e| ErrorRow {
                at: when(&e.at),
                slot: e.slot.clone(),
                code: e.code.clone(),
                class: severity_class(&e.severity),
                severity: e.severity.clone(),
                detail: e.detail.clone().unwrap_or_default(),
                trigger: e.trigger.clone(),
            })
            .collect(),
        troubles: troubles.troubles.iter().map(trouble_row).collect(),
        jobs: jobs
            .jobs
            .iter()
            .map(|j| JobRow {
                id: j.id,
                origin: j.origin.clone(),
                class: job_class(&j.state),
                state: match (&j.reason, &j.waiting) {
                    (Some(r), _) => format!("{} ({r})", j.state),
                    (None, Some(w)) => format!("{} — {w}", j.state),
                    (None, None) => j.state.clone(),
                },
                steps: j.steps.iter().map(step).collect(),
                created: when(&j.created_at),
                updated: when(&j.updated_at),
            })
            .collect(),
        history: history.events.iter().rev().map(history_row).collect(),
    };
    render(&p)
}

// ---- troubles ---------------------------------------------------------------------------

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
        let Json(errs) = errors::list(
            State(st.clone()),
            ui.auth(),
            Path(t.device_id.clone()),
            Query(errors::ErrorQuery {
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
                resolves: when(&t.resolves_at),
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

// ---- rollouts ---------------------------------------------------------------------------

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

// ---- the catalog ------------------------------------------------------------------------

pub struct CatalogFacts {
    revision: u64,
    title: String,
    loaded: String,
    digest: String,
    stats: String,
}

pub struct Table {
    id: &'static str,
    title: &'static str,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

pub struct RuleRow {
    id: String,
    title: String,
    severity: String,
    condition: String,
    fix: String,
}

#[derive(Template)]
#[template(path = "catalog.html")]
struct CatalogPage {
    title: String,
    nav: Nav,
    css: &'static str,
    js: &'static str,
    info: Option<CatalogFacts>,
    tables: Vec<Table>,
    rules: Vec<RuleRow>,
    rules_loaded: String,
}

fn cell(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => {
            let sep = if a.iter().any(toml::Value::is_table) {
                "; "
            } else {
                ", "
            };
            a.iter().map(cell).collect::<Vec<_>>().join(sep)
        }
        // A requirement or conflict: "engine-firmware >= 2.7 on the engine".
        toml::Value::Table(t) if t.contains_key("product") => {
            let mut words = cell(&t["product"]);
            if let Some(v) = t.get("versions") {
                words.push(' ');
                words.push_str(&cell(v));
            }
            match t.get("unit").map(cell).as_deref() {
                None | Some("any") => {}
                Some("same") => words.push_str(" on the same unit"),
                Some(unit) => words.push_str(&format!(" on the {unit}")),
            }
            words
        }
        // A target: "ctl-x2 rev B, C".
        toml::Value::Table(t) if t.contains_key("unit_model") => {
            let mut words = cell(&t["unit_model"]);
            if let Some(r) = t.get("hw_revisions") {
                words.push_str(&format!(" rev {}", cell(r)));
            }
            words
        }
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| format!("{k} {}", cell(v)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// The catalog's sections as tables: one column per key any entry has, in first-seen order.
fn tables(source: &str) -> Vec<Table> {
    let Ok(doc) = source.parse::<toml::Table>() else {
        return Vec::new();
    };
    [
        ("device_model", "catalog-device-models", "Device models"),
        ("unit_model", "catalog-unit-models", "Unit models"),
        ("product", "catalog-products", "Software products"),
        ("release", "catalog-releases", "Releases"),
    ]
    .into_iter()
    .filter_map(|(key, id, title)| {
        let entries = doc.get(key)?.as_array()?;
        let mut columns: Vec<String> = Vec::new();
        for e in entries.iter().filter_map(toml::Value::as_table) {
            for k in e.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
        // The name first, the rest as the catalog spells them (sorted).
        if let Some(i) = columns.iter().position(|c| c == "name") {
            let name = columns.remove(i);
            columns.insert(0, name);
        }
        let rows = entries
            .iter()
            .filter_map(toml::Value::as_table)
            .map(|e| {
                columns
                    .iter()
                    .map(|c| e.get(c).map(cell).unwrap_or_default())
                    .collect()
            })
            .collect();
        Some(Table {
            id,
            title,
            columns: columns.iter().map(|c| c.replace('_', " ")).collect(),
            rows,
        })
    })
    .collect()
}

pub async fn catalog(State(st): State<AppState>, ui: Ui) -> Response {
    let got = async {
        let found = compat_api::show_catalog(
            State(st.clone()),
            ui.auth(),
            Query(compat_api::CatalogQuery {
                revision: None,
                source: Some(true),
            }),
        )
        .await;
        let info = match found {
            Ok(Json(c)) => Some(c),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let Json(rules) = diag::api::show_rules(State(st.clone()), ui.auth()).await?;
        let Json(published) = crate::delivery::api::list_releases(
            State(st.clone()),
            ui.auth(),
            Query(crate::delivery::api::ReleaseQuery {
                product: None,
                limit: Some(1000),
            }),
        )
        .await?;
        let source = info
            .as_ref()
            .and_then(|c| c.source.clone())
            .unwrap_or_default();
        let title = source
            .parse::<toml::Table>()
            .ok()
            .and_then(|d| d.get("title").and_then(|t| t.as_str().map(str::to_owned)))
            .unwrap_or_default();
        render(&CatalogPage {
            title: "Catalog".into(),
            nav: nav(&ui, "/ui/catalog"),
            css: ASSET_CSS,
            js: ASSET_JS,
            tables: {
                let mut t = tables(&source);
                t.push(Table {
                    id: "published-releases",
                    title: "Published releases (signed; what devices can be given)",
                    columns: [
                        "product",
                        "maker",
                        "version",
                        "counter",
                        "files",
                        "held",
                        "published",
                    ]
                    .map(String::from)
                    .to_vec(),
                    rows: published
                        .releases
                        .iter()
                        .map(|r| {
                            vec![
                                r.product.clone(),
                                r.maker.clone(),
                                r.version.clone(),
                                r.counter.to_string(),
                                format!(
                                    "{} ({} bytes)",
                                    r.artifacts.len(),
                                    r.artifacts.iter().map(|a| a.size).sum::<u64>()
                                ),
                                if r.complete {
                                    "every file"
                                } else {
                                    "not every file yet"
                                }
                                .into(),
                                format!("{} by {}", when(&r.published_at), r.published_by),
                            ]
                        })
                        .collect(),
                });
                t
            },
            info: info.map(|c| CatalogFacts {
                revision: c.revision,
                title,
                loaded: format!("{} by {}", when(&c.loaded_at), c.loaded_by),
                digest: c.digest.clone(),
                stats: format!(
                    "{} device models, {} unit models, {} products, {} releases, {} rules",
                    c.stats.device_models,
                    c.stats.unit_models,
                    c.stats.products,
                    c.stats.releases,
                    c.stats.rules
                ),
            }),
            rules_loaded: match (rules.revision, &rules.loaded_at, &rules.loaded_by) {
                (Some(r), Some(at), Some(by)) => {
                    format!("Revision {r}, loaded {} by {by}.", when(at))
                }
                _ => String::new(),
            },
            rules: rules
                .rules
                .iter()
                .map(|r| RuleRow {
                    id: r.id.clone(),
                    title: r.title.clone(),
                    severity: r.severity.clone(),
                    condition: r.condition.clone(),
                    fix: r.fix.clone().unwrap_or_default(),
                })
                .collect(),
        })
    }
    .await;
    page(&ui, "/ui/catalog", got)
}

// ---- the audit log ----------------------------------------------------------------------

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
        let Json(log) = access::audit(
            State(st.clone()),
            ui.auth(),
            Query(access::AuditQuery {
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

// ---- login ------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    css: &'static str,
    next: &'a str,
    error: Option<&'a str>,
}

/// The login form (again, with the problem, after a failed attempt).
pub fn login(
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Result<(StatusCode, Html<String>), ApiError> {
    render(&LoginPage {
        css: ASSET_CSS,
        next,
        error,
    })
    .map(|h| (status, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_cells_read_as_requirements_and_targets() {
        let doc: toml::Table = r#"
requires = [{ product = "engine-firmware", versions = ">= 2.7", unit = "engine" }, { product = "pdl", versions = "< 4", unit = "same" }]
targets = [{ unit_model = "ctl-x2", hw_revisions = ["B", "C"] }, { unit_model = "ctl-x3" }]
"#
        .parse()
        .expect("toml");
        assert_eq!(
            cell(&doc["requires"]),
            "engine-firmware >= 2.7 on the engine; pdl < 4 on the same unit"
        );
        assert_eq!(cell(&doc["targets"]), "ctl-x2 rev B, C; ctl-x3");
    }

    #[test]
    fn catalog_sections_become_tables_with_every_key() {
        let t = tables(
            r#"
[[device_model]]
name = "m1"
maker = "acme"
[[device_model]]
name = "m2"
optional_kinds = ["fax", "finisher"]
"#,
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].columns, ["name", "maker", "optional kinds"]);
        assert_eq!(t[0].rows[1], ["m2", "", "fax, finisher"]);
        assert!(tables("not toml [").is_empty());
    }

    #[test]
    fn quoting_and_escaping() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert!(Filter::parse(&format!("model = {}", quoted(r#"x" or id ~ "*"#))).is_ok());
        assert_eq!(url_escape("a b/ü?"), "a%20b/%C3%BC%3F");
        assert_eq!(when("2026-12-02T01:29:14.123Z"), "2026-12-02 01:29:14 UTC");
    }

    #[test]
    fn every_button_posts_to_an_endpoint_of_the_authorization_table() {
        for a in ACTIONS {
            assert!(
                crate::access::authz::TABLE
                    .iter()
                    .any(|r| r.method == "POST" && r.path == *a),
                "{a}"
            );
            // Some role may, and a viewer never may.
            assert!(crate::access::authz::may("admin", "POST", a), "{a}");
            assert!(!crate::access::authz::may("viewer", "POST", a), "{a}");
        }
    }

    #[test]
    fn the_next_page_keeps_the_search() {
        let q = DeviceSearch {
            model: "m 1".into(),
            filter: r#"id ~ "A*""#.into(),
            after: "OLD".into(),
            ..Default::default()
        };
        assert_eq!(
            q.next("D-9"),
            "/ui/devices?model=m%201&filter=id%20~%20%22A%2A%22&after=D-9"
        );
    }

    #[test]
    fn empty_buckets_are_zero() {
        let b = buckets(&[(2 * HOUR_MS, 5)], 0, HOUR_MS, 4, hour_label);
        assert_eq!(b.iter().map(|b| b.value).collect::<Vec<_>>(), [0, 0, 5, 0]);
        assert_eq!(b[2].label, "02:00");
    }
}
