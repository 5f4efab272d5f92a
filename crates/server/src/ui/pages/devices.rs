//! The devices page: search by model, site, state or a filter, a page at a time.

use super::{ASSET_CSS, ASSET_JS, Ui};
use crate::AppState;
use crate::error::ApiError;
use crate::rollout;
use askama::Template;
use axum::extract::State;
use axum::response::{Html, Response};
use fleetcare_core::DeviceId;
use fleetcare_rollout::Filter;
use fleetcare_store::DeviceKey;
use fleetcare_wire::compat::FINDING_KINDS;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};

use super::*;

/// Whether the device is connected to this instance, or (as `elsewhere`, a snapshot of the
/// tenant's presence) to another.
pub(super) fn is_online(
    st: &AppState,
    elsewhere: &HashMap<String, crate::devices::hub::Via>,
    tenant: fleetcare_store::TenantId,
    id: &str,
) -> bool {
    elsewhere.contains_key(id)
        || DeviceId::parse(id).is_ok_and(|device_id| {
            st.devices
                .hub
                .online(&DeviceKey { tenant, device_id })
                .is_some()
        })
}

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
        let rollouts = st.rollouts.clone();
        let (filter, version) = (
            filter,
            version.map(|(p, v)| (p.map(str::to_owned), v.to_owned())),
        );
        tokio::task::spawn_blocking(move || {
            rollout::select::search(
                &rollouts,
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
    let elsewhere = st.devices.snapshot(tenant).await;
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
                    .map(crate::devices::api::last_report)
                    .as_ref(),
            ),
        });
    }
    let (sites, models) = rollout::select::sites_and_models(&st.rollouts, tenant);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
