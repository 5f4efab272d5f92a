//! One device's page: its facts, units, findings and advice, errors, troubles, jobs and history.

use super::chart::{self};
use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use crate::cluster::events;
use crate::diag;
use crate::error::ApiError;
use crate::extract::Query;
use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{Html, Response};
use fleetcare_wire::operator::{Change, UnitRef};

use super::troubles::{TroubleRow, trouble_row};
use super::*;

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

pub struct JobRow {
    id: u64,
    origin: String,
    state: String,
    class: &'static str,
    steps: Vec<String>,
    created: String,
    updated: String,
}

/// One supply as the newest report says.
pub struct SupplyRow {
    slot: String,
    kind: &'static str,
    color: String,
    level: String,
    state: &'static str,
    class: &'static str,
    part_number: String,
    serial: String,
    /// When it runs out, from its consumption (empty when the readings do not tell).
    days_left: String,
    /// Pages printed since this cartridge went in.
    pages: String,
}

fn supply_rows(list: &[fleetcare_wire::life::SupplyStatus]) -> Vec<SupplyRow> {
    use fleetcare_wire::SupplyState;
    list.iter()
        .map(|st| (&st.supply, st))
        .map(|(s, st)| SupplyRow {
            days_left: match (st.days_left, &st.empty_at) {
                (Some(d), Some(at)) => format!("{d} (about {})", at.get(..10).unwrap_or(at)),
                _ => String::new(),
            },
            slot: s.slot.clone(),
            kind: s.kind.as_str(),
            color: s.color.clone().unwrap_or_default(),
            level: s.level_pct.map_or("unknown".into(), |p| format!("{p} %")),
            state: s.state.as_str(),
            class: match s.state {
                SupplyState::Ok => "ok",
                SupplyState::Low => "warn",
                SupplyState::Empty => "bad",
                SupplyState::Unknown => "",
            },
            part_number: s.part_number.clone().unwrap_or_default(),
            serial: s.serial.clone().unwrap_or_default(),
            pages: st
                .pages_since_installed
                .map_or(String::new(), |p| format!("{p:.0}")),
        })
        .collect()
}

/// One meter over the last 30 days: its chart and its numbers.
pub struct MeterRow {
    name: String,
    chart: String,
    latest: String,
    low: String,
    high: String,
}

/// Meters shown on a device's page at most (by name); `fleetcare meters` shows them all.
const METERS_SHOWN: usize = 12;

fn meter_rows(series: &fleetcare_wire::life::MeterSeries) -> Vec<MeterRow> {
    series
        .meters
        .iter()
        .take(METERS_SHOWN)
        .map(|m| {
            let points: Vec<(String, f64)> = m
                .points
                .iter()
                .map(|p| (p.at.get(..10).unwrap_or(&p.at).to_owned(), p.last))
                .collect();
            let low = m.points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
            let high = m
                .points
                .iter()
                .map(|p| p.max)
                .fold(f64::NEG_INFINITY, f64::max);
            MeterRow {
                name: m.name.clone(),
                chart: chart::line(&format!("{} per day, last 30 days", m.name), &points),
                latest: m
                    .points
                    .last()
                    .map(|p| p.last.to_string())
                    .unwrap_or_default(),
                low: low.to_string(),
                high: high.to_string(),
            }
        })
        .collect()
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
    supplies: Vec<SupplyRow>,
    meters: Vec<MeterRow>,
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
    let supply = |s: &fleetcare_wire::operator::SupplyRef| {
        let mut t = s.kind.as_str().to_owned();
        for (label, v) in [
            ("", &s.color),
            ("part ", &s.part_number),
            ("serial ", &s.serial),
        ] {
            if let Some(v) = v {
                t.push_str(&format!(", {label}{v}"));
            }
        }
        t
    };
    let (what, old, new) = match &e.change {
        Change::SupplyAdded { slot, supply: s } => {
            (format!("{slot}: supply added"), String::new(), supply(s))
        }
        Change::SupplyRemoved { slot, supply: s } => {
            (format!("{slot}: supply removed"), supply(s), "none".into())
        }
        Change::SupplyReplaced { slot, old, new } => {
            (format!("{slot}: supply replaced"), supply(old), supply(new))
        }
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

pub async fn device(State(st): State<AppState>, ui: Ui, Path(id): Path<String>) -> Response {
    let got = device_page(&st, &ui, id).await;
    page(&ui, "/ui/devices", got)
}

async fn device_page(st: &AppState, ui: &Ui, id: String) -> Result<Html<String>, ApiError> {
    let s = || State(st.clone());
    let Json(v) = crate::devices::api::show_device(s(), ui.auth(), Path(id.clone())).await?;
    let gap = st
        .store
        .periodic_gap_ms(&crate::extract::device_key(&ui.auth(), &id)?)
        .await?;
    let Json(compat) = crate::compat::api::device_compat(s(), ui.auth(), Path(id.clone())).await?;
    let Json(history) = crate::devices::api::device_history(
        s(),
        ui.auth(),
        Path(id.clone()),
        Query(crate::devices::api::HistoryQuery { limit: Some(100) }),
    )
    .await?;
    let Json(errs) = crate::diag::logs::list(
        s(),
        ui.auth(),
        Path(id.clone()),
        Query(crate::diag::logs::ErrorQuery {
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
    let Json(supplies) = crate::life::api::supplies(s(), ui.auth(), Path(id.clone())).await?;
    let supplies = supplies.supplies;
    let Json(meters) = crate::life::api::meters(
        s(),
        ui.auth(),
        Path(id.clone()),
        Query(crate::life::api::MeterQuery {
            meter: None,
            since: None,
            until: None,
            every: Some("day".into()),
        }),
    )
    .await?;
    let now = st.clock.now_ms();
    let six_h = 6 * HOUR_MS;
    let since = (now / six_h - 27) * six_h;
    let counts = st
        .store
        .error_counts(ui.op.tenant, Some(&v.device_id), since, six_h)
        .await?;
    let bars = buckets(&counts, since, six_h, 28, day_label);
    let path = url_escape(&v.device_id);
    let p = DevicePage {
        title: format!("Device {}", v.device_id),
        nav: nav(ui, "/ui/devices"),
        css: ASSET_CSS,
        js: ASSET_JS,
        event: events::device_event(&v.device_id),
        actions: device_actions(ui, &path),
        d: device_facts(&v, gap),
        units: unit_rows(ui, &v, &out, &path),
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
        advice: advice_rows(&compat),
        error_chart: chart::bars("Error events per 6 hours, last 7 days", &bars),
        meters: meter_rows(&meters),
        supplies: supply_rows(&supplies),
        errors: error_rows(&errs),
        troubles: troubles.troubles.iter().map(trouble_row).collect(),
        jobs: job_rows(&jobs),
        history: history.events.iter().rev().map(history_row).collect(),
    };
    render(&p)
}

/// The buttons an operator may press on a device's page.
fn device_actions(ui: &Ui, path: &str) -> Vec<Action> {
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
    actions
}

/// The device's facts as the page shows them.
fn device_facts(v: &fleetcare_wire::operator::DeviceView, gap: Option<i64>) -> DeviceFacts {
    let (online, online_class) = online_text(v.online);
    let compat_state = v
        .compat_state
        .clone()
        .unwrap_or_else(|| "not judged".into());
    DeviceFacts {
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
    }
}

/// One row per unit, with its software and service state, and the buttons that take it out of
/// service or put it back.
fn unit_rows(
    ui: &Ui,
    v: &fleetcare_wire::operator::DeviceView,
    out: &[fleetcare_wire::compat::UnitService],
    path: &str,
) -> Vec<UnitRow> {
    v.units
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
        .collect()
}

/// Hardware advice, each a list of steps in words.
fn advice_rows(compat: &fleetcare_wire::compat::CompatReport) -> Vec<AdviceRow> {
    compat
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
        .collect()
}

fn error_rows(errs: &fleetcare_wire::errors::ErrorList) -> Vec<ErrorRow> {
    errs.events
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
        .collect()
}

fn job_rows(jobs: &fleetcare_wire::compat::JobList) -> Vec<JobRow> {
    jobs.jobs
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
        .collect()
}
