//! The dashboard's pages. Each reads through the operator API's handlers (as the logged-in
//! operator) and turns their answers into rows of text for its template. One file per page;
//! this one holds what every page shares (navigation, actions, formatting, rendering).

use std::collections::HashMap;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use fleetcare_wire::compat::SoftwareStep;

use super::chart::{self, Bar};
use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::error::ApiError;

mod audit;
mod catalog;
mod device;
mod devices;
mod login;
mod notify;
mod overview;
mod rollouts;
mod supplies;
mod troubles;

pub use audit::audit;
pub use catalog::catalog;
pub use device::device;
pub use devices::devices;
pub use login::login;
pub use notify::notify;
pub use overview::{Summary, overview};
pub use rollouts::{rollout, rollouts};
pub use supplies::{meter_reads_csv, supplies};
pub use troubles::{trouble, troubles};

/// Rows a device search shows (the count says how many matched).
const SHOWN: usize = 200;
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
        ("/ui/supplies", "Running out"),
        ("/ui/rollouts", "Rollouts"),
        ("/ui/catalog", "Catalog"),
    ];
    items.push(("/ui/notify", "Notifications"));
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

// ---- devices ----------------------------------------------------------------------------

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

/// A value in the filter language's quotes.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

// ---- one device -------------------------------------------------------------------------

// ---- troubles ---------------------------------------------------------------------------

// ---- rollouts ---------------------------------------------------------------------------

// ---- the catalog ------------------------------------------------------------------------

// ---- the audit log ----------------------------------------------------------------------

// ---- login ------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use fleetcare_rollout::Filter;

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
    fn empty_buckets_are_zero() {
        let b = buckets(&[(2 * HOUR_MS, 5)], 0, HOUR_MS, 4, hour_label);
        assert_eq!(b.iter().map(|b| b.value).collect::<Vec<_>>(), [0, 0, 5, 0]);
        assert_eq!(b[2].label, "02:00");
    }
}
