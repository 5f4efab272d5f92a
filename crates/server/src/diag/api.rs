//! Diagnosis's HTTP handlers: rules, troubles and their lifecycle for operators, and what the
//! center knows about a device (`about`, for the operator and for the device itself).

use crate::AppState;
use crate::compat::api::compat_report;
use crate::delivery::job_view;
use crate::diag::{RATE_DAYS, fix_words};
use crate::error::ApiError;
use crate::extract::Query;
use crate::extract::device_key;
use crate::extract::{DeviceAuth, OperatorAuth};
use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;
use fleetcare_core::clock::rfc3339;
use fleetcare_store::{DeviceKey, JobFilter, StoreError, TenantId, TroubleFilter, TroubleRecord};
use fleetcare_wire::ErrorBody;
use fleetcare_wire::troubles as w;
use serde::Deserialize;
use utoipa::IntoParams;

/// A trouble severity's rank, lowest first (unknown: the lowest).
pub(crate) fn severity_rank(s: &str) -> usize {
    w::TROUBLE_SEVERITIES
        .iter()
        .position(|x| *x == s)
        .unwrap_or(0)
}

/// Stored troubles for the wire, each with its fix job's state now.
pub async fn trouble_views(
    st: &AppState,
    tenant: TenantId,
    troubles: Vec<TroubleRecord>,
) -> Result<Vec<w::Trouble>, StoreError> {
    let mut out = Vec::with_capacity(troubles.len());
    for t in troubles {
        let job = match t.fix_job {
            Some(id) => st
                .store
                .job(tenant, id)
                .await?
                .map(|j| w::JobRef { id, state: j.state }),
            None => None,
        };
        out.push(trouble_view(t, job));
    }
    Ok(out)
}

/// A stored trouble for the wire, with its fix job as it is now.
pub fn trouble_view(t: TroubleRecord, fix_job: Option<w::JobRef>) -> w::Trouble {
    w::Trouble {
        id: t.id,
        device_id: t.device_id,
        rule_id: t.rule_id,
        severity: t.severity,
        title: t.title,
        action: t.action,
        state: t.state,
        note: t.note,
        evidence: serde_json::from_str(&t.evidence_json).unwrap_or_default(),
        occurrences: t.occurrences,
        opened_at: rfc3339(t.opened_at_ms),
        last_event_at: rfc3339(t.last_event_at_ms),
        resolves_at: (t.quiet_until_ms != fleetcare_store::troubles::NO_QUIET_PERIOD)
            .then(|| rfc3339(t.quiet_until_ms)),
        acknowledged_by: t.acknowledged_by,
        acknowledged_at: t.acknowledged_at_ms.map(rfc3339),
        resolved_by: t.resolved_by,
        resolved_at: t.resolved_at_ms.map(rfc3339),
        fix: t.fix_json,
        fix_outcome: t.fix_outcome,
        fix_job,
        fixed_at: t.fixed_at_ms.map(rfc3339),
    }
}

/// Load the tenant's diagnosis rules (the body is the TOML file). Rules that contradict
/// themselves are refused with every problem listed.
#[utoipa::path(put, path = "/api/v1/rules", request_body(content = String, content_type = "application/toml"),
    responses((status = 200, body = w::RulesLoaded), (status = 400, body = ErrorBody)))]
pub async fn load_rules(
    State(st): State<AppState>,
    op: OperatorAuth,
    body: Bytes,
) -> Result<Json<w::RulesLoaded>, ApiError> {
    let source = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the rules are not UTF-8 text".into()))?;
    let (revision, loaded) = st.diag.load(&st, op.0.tenant, source, &op.0.name).await?;
    tracing::info!(tenant = op.0.tenant, revision, operator = %op.0.name, "diagnosis rules loaded");
    Ok(Json(loaded))
}

/// The tenant's diagnosis rules, in words.
#[utoipa::path(get, path = "/api/v1/rules", responses((status = 200, body = w::RulesView)))]
pub async fn show_rules(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::RulesView>, ApiError> {
    let stored = st
        .store
        .current_rules()
        .await?
        .into_iter()
        .find(|r| r.tenant == op.0.tenant);
    let rules = st.diag.rules(op.0.tenant).map(|(_, r)| r);
    Ok(Json(w::RulesView {
        revision: stored.as_ref().map(|s| s.revision),
        loaded_at: stored.as_ref().map(|s| rfc3339(s.loaded_at_ms)),
        loaded_by: stored.map(|s| s.loaded_by),
        rules: rules
            .iter()
            .flat_map(|r| r.rules.iter())
            .map(|r| w::RuleSummary {
                id: r.id.clone(),
                title: r.title.clone(),
                severity: r.severity.as_str().into(),
                condition: r.describe(),
                fix: r.fix.as_ref().map(fix_words),
            })
            .collect(),
        abnormal: rules
            .iter()
            .flat_map(|r| r.abnormal.iter())
            .map(|a| w::AbnormalRuleSummary {
                id: a.id.clone(),
                title: a.title.clone(),
                unit_kind: a.unit_kind.clone(),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TroubleQuery {
    /// `live` (open or acknowledged; the default), `open`, `acknowledged`, `resolved`, `all`.
    pub state: Option<String>,
    pub device: Option<String>,
    pub rule: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// The tenant's troubles, newest first.
#[utoipa::path(get, path = "/api/v1/troubles", params(TroubleQuery),
    responses((status = 200, body = w::TroubleList), (status = 400, body = ErrorBody)))]
pub async fn list_troubles(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<TroubleQuery>,
) -> Result<Json<w::TroubleList>, ApiError> {
    let state = match q.state.as_deref().unwrap_or("live") {
        "all" => None,
        s if s == "live" || w::TROUBLE_STATES.contains(&s) => Some(s.to_owned()),
        s => {
            return Err(ApiError::BadRequest(format!(
                "state {s:?}: live, open, acknowledged, fixed, resolved or all"
            )));
        }
    };
    let device_id = match &q.device {
        Some(d) => {
            let key = device_key(&op, d)?;
            // An unknown device says so (with the nearest ids), not an empty list.
            crate::extract::known_device(&st, &key).await?;
            Some(key.device_id.to_string())
        }
        None => None,
    };
    let f = TroubleFilter {
        state,
        device_id,
        rule_id: q.rule.clone(),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let troubles = st.store.troubles(op.0.tenant, &f, limit).await?;
    Ok(Json(w::TroubleList {
        troubles: trouble_views(&st, op.0.tenant, troubles).await?,
    }))
}

async fn one_view(st: &AppState, tenant: TenantId, id: u64) -> Result<w::Trouble, ApiError> {
    let t = one(st, tenant, id).await?;
    Ok(trouble_views(st, tenant, vec![t]).await?.remove(0))
}

async fn one(st: &AppState, tenant: TenantId, id: u64) -> Result<TroubleRecord, ApiError> {
    st.store
        .trouble(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("trouble {id}")))
}

/// One trouble, with its evidence.
#[utoipa::path(get, path = "/api/v1/troubles/{id}", params(("id" = u64, Path, description = "trouble id")),
    responses((status = 200, body = w::Trouble), (status = 404, body = ErrorBody)))]
pub async fn show_trouble(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Trouble>, ApiError> {
    Ok(Json(one_view(&st, op.0.tenant, id).await?))
}

/// Acknowledge an open trouble: someone is on it. It still resolves itself when quiet.
#[utoipa::path(post, path = "/api/v1/troubles/{id}/ack", params(("id" = u64, Path, description = "trouble id")),
    responses((status = 200, body = w::Trouble), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn ack_trouble(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Trouble>, ApiError> {
    let t = one(&st, op.0.tenant, id).await?;
    if !st
        .store
        .acknowledge_trouble(op.0.tenant, id, &op.0.name, st.clock.now_ms())
        .await?
    {
        return Err(ApiError::Conflict {
            code: "not_open",
            message: format!(
                "trouble {id} is {}; only an open trouble is acknowledged",
                t.state
            ),
        });
    }
    tracing::info!(trouble = id, operator = %op.0.name, "trouble acknowledged");
    st.events
        .notify(op.0.tenant, crate::cluster::events::Topic::Troubles);
    st.events.device(op.0.tenant, &t.device_id);
    Ok(Json(one_view(&st, op.0.tenant, id).await?))
}

/// Resolve a trouble. The rule's condition must hold again for a new one to open.
#[utoipa::path(post, path = "/api/v1/troubles/{id}/resolve", params(("id" = u64, Path, description = "trouble id")),
    responses((status = 200, body = w::Trouble), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resolve_trouble(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Trouble>, ApiError> {
    let t = one(&st, op.0.tenant, id).await?;
    if !st
        .store
        .resolve_trouble(op.0.tenant, id, &op.0.name, st.clock.now_ms())
        .await?
    {
        return Err(ApiError::Conflict {
            code: "resolved",
            message: format!("trouble {id} is resolved already"),
        });
    }
    st.diag.forget(op.0.tenant, &t.device_id, &t.rule_id);
    st.devices
        .tell(crate::cluster::Message::TroubleClosed {
            t: op.0.tenant,
            d: t.device_id.clone(),
            rule: t.rule_id.clone(),
        })
        .await;
    tracing::info!(trouble = id, operator = %op.0.name, "trouble resolved");
    st.events
        .notify(op.0.tenant, crate::cluster::events::Topic::Troubles);
    st.events.device(op.0.tenant, &t.device_id);
    Ok(Json(one_view(&st, op.0.tenant, id).await?))
}

/// What the center knows about a device.
pub async fn about(st: &AppState, key: &DeviceKey) -> Result<w::DeviceAbout, ApiError> {
    let compat = compat_report(st, key).await?;
    let live = st
        .store
        .troubles(
            key.tenant,
            &TroubleFilter {
                state: Some("live".into()),
                device_id: Some(key.device_id.to_string()),
                rule_id: None,
            },
            100,
        )
        .await?;
    let mut troubles = trouble_views(st, key.tenant, live).await?;
    troubles.sort_by_key(|t| std::cmp::Reverse(severity_rank(&t.severity)));
    let mut actions: Vec<String> = troubles
        .iter()
        .map(|t| format!("{} ({}): {}", t.title, t.severity, t.action))
        .collect();
    for n in &compat.notifications {
        actions.push(n.title.clone());
    }
    if let Some(p) = &compat.plan {
        for s in &p.steps {
            actions.push(format!(
                "software: {} {} on the {} ({})",
                s.product, s.to, s.slot, s.action
            ));
        }
    }
    let abnormal: Vec<w::AbnormalUnit> = st
        .store
        .abnormal_units(key)
        .await?
        .into_iter()
        .map(|a| w::AbnormalUnit {
            slot: a.slot,
            rule_id: a.rule_id,
            reason: a.reason,
            since: rfc3339(a.since_ms),
        })
        .collect();
    for a in &abnormal {
        actions.push(format!("the {} is abnormal: {}", a.slot, a.reason));
    }
    let settings = st
        .store
        .device_settings(key)
        .await?
        .into_iter()
        .map(setting_view)
        .collect();
    let recent_jobs = st
        .store
        .jobs(
            key.tenant,
            &JobFilter {
                device_id: Some(key.device_id.to_string()),
                state: None,
                before_id: None,
            },
            5,
        )
        .await?
        .into_iter()
        .map(job_view)
        .collect();
    let since = st
        .clock
        .now_ms()
        .saturating_sub(i64::from(RATE_DAYS) * 86_400_000);
    let (own, fleet, devices) = st.store.error_rates(key, &compat.model, since).await?;
    let days = f64::from(RATE_DAYS);
    let device_per_day = own as f64 / days;
    let model_per_device_per_day = if devices == 0 {
        0.0
    } else {
        fleet as f64 / devices as f64 / days
    };
    // What a rollout with the default requirements would decide now.
    let now = st.clock.now_ms();
    let proper = st.rollouts.device_state(st, key, now).await?;
    let eligible = fleetcare_rollout::eligibility::check(
        now,
        &fleetcare_rollout::eligibility::Requirements::default(),
        &proper,
    );
    let rec = crate::extract::known_device(st, key).await?;
    Ok(w::DeviceAbout {
        device_id: key.device_id.to_string(),
        model: compat.model.clone(),
        supplies: crate::life::supply_status(st, key, rec.supplies).await?,
        meters: rec.operating,
        rollout_eligible: eligible.is_ok(),
        rollout_ineligible: eligible.err(),
        compat,
        troubles,
        recommended_actions: actions,
        abnormal_units: abnormal,
        settings,
        recent_jobs,
        error_rate: w::ErrorRate {
            days: RATE_DAYS,
            device_per_day,
            model_per_device_per_day,
            model_devices: devices,
            ratio: (model_per_device_per_day > 0.0)
                .then(|| device_per_day / model_per_device_per_day),
        },
    })
}

fn setting_view(s: fleetcare_store::SettingRecord) -> w::DeviceSetting {
    w::DeviceSetting {
        name: s.name,
        value: s.value,
        set_by: s.set_by,
        set_at: rfc3339(s.set_at_ms),
    }
}

/// What the center knows about a device: compatibility, troubles, recommended actions,
/// abnormal units, settings, recent jobs, and its error rate against its model's fleet.
#[utoipa::path(get, path = "/api/v1/devices/{id}/about", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = w::DeviceAbout), (status = 404, body = ErrorBody)))]
pub async fn device_about(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<w::DeviceAbout>, ApiError> {
    let key = device_key(&op, &id)?;
    about(&st, &key).await.map(Json)
}

/// What the center knows about the calling device.
pub async fn own_about(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
) -> Result<Json<w::DeviceAbout>, ApiError> {
    about(&st, &key).await.map(Json)
}

/// The settings the center set on the calling device.
pub async fn own_settings(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
) -> Result<Json<w::DeviceSettings>, ApiError> {
    Ok(Json(w::DeviceSettings {
        settings: st
            .store
            .device_settings(&key)
            .await?
            .into_iter()
            .map(setting_view)
            .collect(),
        units_out_of_service: Some(
            st.store
                .units_out(&key)
                .await?
                .into_iter()
                .map(crate::compat::units::view)
                .collect(),
        ),
    }))
}
