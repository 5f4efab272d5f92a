//! The operator API for compatibility (catalog, per-device report, fleet counts, policy) and the
//! device's own compatibility report and notifications. Jobs are delivery's (`delivery::api`).

use crate::extract::Query;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use fleetcare_compat::{DeviceFacts, FindingKind, PlanOutcome, Policy, State as CompatState};
use fleetcare_core::clock::rfc3339;
use fleetcare_store::{DeviceKey, NotificationRecord, PolicyRecord};
use fleetcare_wire::ErrorBody;
use fleetcare_wire::compat as w;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::compat::decide::{PLAN_BUDGET, assess, recommendations, software_steps};
use crate::compat::notice::NotificationBody;
use crate::compat::{LoadError, stats_wire};
use crate::error::ApiError;
use crate::extract::device_key;
use crate::extract::{DeviceAuth, JsonBody, OperatorAuth};

/// `POST /api/v1/catalog` accepts a catalog this large.
pub const MAX_CATALOG_BODY: usize = fleetcare_compat::catalog::MAX_CATALOG_BYTES;

fn catalog_info(rev: fleetcare_store::CatalogRevision) -> w::CatalogInfo {
    w::CatalogInfo {
        revision: rev.revision,
        loaded_at: rfc3339(rev.loaded_at_ms),
        loaded_by: rev.loaded_by,
        digest: rev.digest,
        stats: serde_json::from_str(&rev.stats_json).unwrap_or_default(),
        source: rev.source,
    }
}

/// Load a catalog (the body is its TOML): a new revision, and the whole fleet re-judged.
/// A catalog that contradicts itself or names unknown items is refused with every problem.
#[utoipa::path(post, path = "/api/v1/catalog", request_body(content = String, content_type = "application/toml"),
    responses((status = 200, body = w::CatalogLoaded), (status = 400, body = ErrorBody)))]
pub async fn load_catalog(
    State(st): State<AppState>,
    op: OperatorAuth,
    body: Bytes,
) -> Result<Json<w::CatalogLoaded>, ApiError> {
    let source = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the catalog is not UTF-8 text".into()))?;
    match st
        .compat
        .load_catalog(&st, op.0.tenant, source, &op.0.name)
        .await
    {
        Ok((revision, stats, devices)) => {
            st.metrics.catalog_loads.inc();
            tracing::info!(tenant = op.0.tenant, revision, operator = %op.0.name, "catalog loaded");
            Ok(Json(w::CatalogLoaded {
                revision,
                stats: stats_wire(stats),
                devices,
            }))
        }
        Err(LoadError::Invalid(e)) => Err(ApiError::Invalid {
            message: format!("the catalog was refused: {} problem(s)", e.problems.len()),
            problems: e.problems,
        }),
        Err(LoadError::Store(e)) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CatalogQuery {
    /// A revision (default: the current one).
    pub revision: Option<u64>,
    /// Include the TOML source.
    pub source: Option<bool>,
}

/// The tenant's current catalog revision (or another one).
#[utoipa::path(get, path = "/api/v1/catalog", params(CatalogQuery),
    responses((status = 200, body = w::CatalogInfo), (status = 404, body = ErrorBody)))]
pub async fn show_catalog(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<CatalogQuery>,
) -> Result<Json<w::CatalogInfo>, ApiError> {
    let rev = st
        .store
        .catalog_revision(op.0.tenant, q.revision, q.source.unwrap_or(false))
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(match q.revision {
                Some(r) => format!("catalog revision {r}"),
                None => "a catalog (none was loaded yet)".into(),
            })
        })?;
    Ok(Json(catalog_info(rev)))
}

/// Every revision of the tenant's catalog, newest first.
#[utoipa::path(get, path = "/api/v1/catalog/revisions", responses((status = 200, body = [w::CatalogInfo])))]
pub async fn catalog_revisions(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<Vec<w::CatalogInfo>>, ApiError> {
    let revs = st.store.catalog_revisions(op.0.tenant).await?;
    Ok(Json(revs.into_iter().map(catalog_info).collect()))
}

pub(crate) fn notification_view(n: NotificationRecord) -> w::Notification {
    let body: NotificationBody = serde_json::from_str(&n.body_json).unwrap_or_default();
    w::Notification {
        id: n.id,
        kind: n.kind,
        title: n.title,
        summary: body.summary,
        recommendations: body.recommendations,
        created_at: rfc3339(n.created_at_ms),
        delivered_at: n.delivered_at_ms.map(rfc3339),
        switched_to: body.switched_to,
    }
}

fn policy_view(p: PolicyRecord) -> w::CompatPolicy {
    w::CompatPolicy {
        plan: p.plan,
        fix: p.fix,
        out_of_service: p.out_of_service,
        job_ttl_s: p.job_ttl_s,
    }
}

/// Everything about a device's compatibility: stored findings, and the plan or advice now.
pub(crate) async fn compat_report(
    st: &AppState,
    key: &DeviceKey,
) -> Result<w::CompatReport, ApiError> {
    let rec = crate::extract::known_device(st, key).await?;
    let stored = st.store.open_findings(key).await?;
    let jobs = crate::delivery::job_views(st, key.tenant, st.store.open_jobs(key).await?).await?;
    let notifications = st
        .store
        .notifications(key, false, 20)
        .await?
        .into_iter()
        .map(notification_view)
        .collect();
    let findings: Vec<w::Finding> = stored
        .into_iter()
        .map(|f| {
            let subject: w::FindingSubject =
                serde_json::from_str(&f.subject_json).unwrap_or_default();
            w::Finding {
                kind: f.kind,
                key: f.key,
                rule: f.rule,
                units: subject.units,
                software: subject.software,
                explanation: f.explanation,
                catalog_revision: f.catalog_revision,
                opened_at: rfc3339(f.opened_at_ms),
            }
        })
        .collect();
    let mut report = w::CompatReport {
        device_id: rec.device_id.clone(),
        model: rec.model.clone(),
        catalog_revision: None,
        state: rec
            .compat_state
            .clone()
            .unwrap_or_else(|| "unjudged".into()),
        findings,
        plan: None,
        no_plan: None,
        no_plan_summary: None,
        advice: Vec::new(),
        jobs,
        notifications,
    };
    let Some(cur) = st.compat.current(key.tenant) else {
        report.state = "no_catalog".into();
        return Ok(report);
    };
    report.catalog_revision = Some(cur.revision);
    let Some(structure) = rec.structure else {
        return Ok(report);
    };
    let policy = st.store.policy(key.tenant).await?;
    let plan_policy = Policy::parse(&policy.plan).unwrap_or_default();
    let facts = DeviceFacts::new(&st.compat.vocab, structure.model(), structure.units());
    let (cur2, facts2) = (cur.clone(), facts.clone());
    let a = tokio::task::spawn_blocking(move || assess(&cur2, &facts2, plan_policy))
        .await
        .map_err(|e| ApiError::Internal(format!("the compatibility assessment failed: {e}")))?;
    // The stored findings' state as the plan settles it (the stored state, which the fleet's
    // counts use, follows once the worker has planned).
    if report.state == CompatState::Software.as_str() {
        let kinds: Vec<FindingKind> = report
            .findings
            .iter()
            .filter_map(|f| FindingKind::parse(&f.kind))
            .collect();
        report.state = CompatState::settled_kinds(&kinds, a.plan.as_ref())
            .as_str()
            .into();
    }
    match a.plan {
        Some(PlanOutcome::Change(steps)) => {
            report.plan = Some(w::Plan {
                policy: plan_policy.as_str().into(),
                steps: software_steps(&cur.catalog, &facts, &steps),
                blocked: rec
                    .install_blocked
                    .as_ref()
                    .map(|why| format!("this device cannot install software: {why}")),
            });
        }
        Some(PlanOutcome::Keep) => {
            report.plan = Some(w::Plan {
                policy: plan_policy.as_str().into(),
                steps: Vec::new(),
                blocked: None,
            });
        }
        Some(PlanOutcome::NoSolution(why)) => report.no_plan = Some(why),
        Some(PlanOutcome::OutOfTime) => {
            report.no_plan = Some(format!(
                "the plan search did not finish within {} ms",
                PLAN_BUDGET.as_millis()
            ));
        }
        None => {}
    }
    report.no_plan_summary = report
        .no_plan
        .as_deref()
        .map(fleetcare_compat::plan::summarize);
    if let Some(recs) = a.advice {
        report.advice = recommendations(&cur.catalog, &facts, &recs);
    }
    Ok(report)
}

/// A device's compatibility: findings with explanations, the software plan, or the ranked
/// hardware configurations that would make it compatible; its open jobs and notifications.
#[utoipa::path(get, path = "/api/v1/devices/{id}/compat", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = w::CompatReport), (status = 404, body = ErrorBody)))]
pub async fn device_compat(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<w::CompatReport>, ApiError> {
    let key = device_key(&op, &id)?;
    compat_report(&st, &key).await.map(Json)
}

/// The calling device's compatibility, and what the center advised it.
pub async fn own_compat(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
) -> Result<Json<w::CompatReport>, ApiError> {
    let report = compat_report(&st, &key).await?;
    let undelivered: Vec<u64> = report
        .notifications
        .iter()
        .filter(|n| n.delivered_at.is_none())
        .map(|n| n.id)
        .collect();
    st.store
        .mark_delivered(key.tenant, &undelivered, st.clock.now_ms())
        .await?;
    Ok(Json(report))
}

/// The calling device's open notifications, newest first (it fetches them whenever it
/// connects: what was said while it was away reaches it). Those not delivered before are
/// delivered now.
pub async fn own_notifications(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
) -> Result<Json<w::DeviceNotifications>, ApiError> {
    let open = st.store.notifications(&key, false, 50).await?;
    let undelivered: Vec<u64> = open
        .iter()
        .filter(|n| n.delivered_at_ms.is_none())
        .map(|n| n.id)
        .collect();
    st.store
        .mark_delivered(key.tenant, &undelivered, st.clock.now_ms())
        .await?;
    Ok(Json(w::DeviceNotifications {
        notifications: open.into_iter().map(notification_view).collect(),
    }))
}

/// Devices by compatibility state and finding kind, overall and per device model.
#[utoipa::path(get, path = "/api/v1/compat/fleet", responses((status = 200, body = w::FleetCompat)))]
pub async fn fleet(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::FleetCompat>, ApiError> {
    Ok(Json(
        crate::compat::fleet(&st.store, &st.compat, op.0.tenant).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/compat/policy", responses((status = 200, body = w::CompatPolicy)))]
pub async fn get_policy(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::CompatPolicy>, ApiError> {
    Ok(Json(policy_view(st.store.policy(op.0.tenant).await?)))
}

/// Set the tenant's compatibility policy: the plan preference, whether version changes run
/// automatically or wait for approval (or are not made), whether optional incompatible units
/// may be taken out of service, and how long jobs for offline devices wait.
#[utoipa::path(put, path = "/api/v1/compat/policy", request_body = w::CompatPolicy,
    responses((status = 200, body = w::CompatPolicy), (status = 400, body = ErrorBody)))]
pub async fn set_policy(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(p): JsonBody<w::CompatPolicy>,
) -> Result<Json<w::CompatPolicy>, ApiError> {
    let mut problems = Vec::new();
    if Policy::parse(&p.plan).is_none() {
        problems.push(format!(
            "plan: {:?} is neither \"minimal\" nor \"latest\"",
            p.plan
        ));
    }
    if !matches!(p.fix.as_str(), "automatic" | "approval" | "off") {
        problems.push(format!(
            "fix: {:?} is not \"automatic\", \"approval\" or \"off\"",
            p.fix
        ));
    }
    if !(60..=90 * 24 * 3600).contains(&p.job_ttl_s) {
        problems.push(format!(
            "job_ttl_s: must be between 60 and 7776000, got {}",
            p.job_ttl_s
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: "the policy was refused".into(),
            problems,
        });
    }
    let rec = PolicyRecord {
        plan: p.plan,
        fix: p.fix,
        out_of_service: p.out_of_service,
        job_ttl_s: p.job_ttl_s,
    };
    st.store.set_policy(op.0.tenant, &rec).await?;
    tracing::info!(tenant = op.0.tenant, operator = %op.0.name, plan = %rec.plan, fix = %rec.fix, "compatibility policy set");
    Ok(Json(policy_view(rec)))
}
