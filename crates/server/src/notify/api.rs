//! The operator API of notifications: subscriptions (admin; viewers list them), tests, the
//! delivery log and redelivery, and the tenant's offline threshold.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use fleetcare_core::clock::rfc3339;
use fleetcare_store::TenantId;
use fleetcare_store::notify::{
    DeliveryRecord, NewSubscription, OutboxEvent, PARKED, SubscriptionRecord,
};
use fleetcare_wire::notify as w;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{SEVERITIES, email, event_id};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, OperatorAuth, Query};

/// Longest subscription name.
pub const MAX_NAME: usize = 64;
/// Longest digest window, in minutes (a day).
pub const MAX_DIGEST_MINUTES: u64 = 1440;

/// A webhook URL as a non-admin sees it: its origin only (chat and ticket systems put their
/// own secret in the path or query).
fn origin_only(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}/…", u.origin().ascii_serialization()),
        Err(_) => "…".into(),
    }
}

fn view(s: SubscriptionRecord, pending: u64, admin: bool) -> w::Subscription {
    w::Subscription {
        target: if s.channel == "email" {
            s.target.split(',').map(str::to_owned).collect()
        } else if admin {
            vec![s.target]
        } else {
            vec![origin_only(&s.target)]
        },
        name: s.name,
        channel: s.channel,
        events: s.events.split(',').map(str::to_owned).collect(),
        filter: s.filter,
        min_severity: s.min_severity,
        digest_minutes: s.digest_minutes,
        state: s.state,
        state_reason: s.state_reason,
        created_by: s.created_by,
        created_at: rfc3339(s.created_at_ms),
        last_success_at: s.last_success_at_ms.map(rfc3339),
        pending,
    }
}

fn delivery_view(d: DeliveryRecord) -> w::Delivery {
    w::Delivery {
        id: d.id,
        event_id: event_id(d.event_id),
        event_type: d.event_kind,
        next_attempt_at: (d.state == "pending" && d.next_at_ms < PARKED)
            .then(|| rfc3339(d.next_at_ms)),
        state: d.state,
        attempts: d.attempts,
        created_at: rfc3339(d.created_at_ms),
        delivered_at: d.delivered_at_ms.map(rfc3339),
        last_status: d.last_status,
        last_error: d.last_error,
    }
}

async fn find(st: &AppState, tenant: TenantId, name: &str) -> Result<SubscriptionRecord, ApiError> {
    st.store
        .subscription(tenant, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("subscription {name:?}")))
}

async fn pending_of(st: &AppState, tenant: TenantId, id: u64) -> Result<u64, ApiError> {
    Ok(st
        .store
        .pending_deliveries(tenant)
        .await?
        .into_iter()
        .find(|(s, _)| *s == id)
        .map_or(0, |(_, n)| n))
}

/// Check a new subscription: every problem at once.
async fn check(st: &AppState, req: &w::NewSubscription) -> Result<NewSubscription, ApiError> {
    let mut problems = Vec::new();
    if req.name.is_empty()
        || req.name.len() > MAX_NAME
        || !req
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c))
    {
        problems.push(format!(
            "name {:?}: 1 to {MAX_NAME} letters, digits and . _ : -",
            req.name
        ));
    }
    let (channel, target) = match (&req.webhook, req.email.is_empty()) {
        (Some(url), true) => match st.notify.guard.check_url(url).await {
            Ok(u) => ("webhook", u.to_string()),
            Err(e) => {
                problems.push(format!("webhook: {e}"));
                ("webhook", String::new())
            }
        },
        (None, false) => {
            if req.email.len() > email::MAX_ADDRESSES {
                problems.push(format!("email: at most {} addresses", email::MAX_ADDRESSES));
            }
            let mut addrs = Vec::new();
            for a in &req.email {
                match email::parse_mailbox(a) {
                    Ok(m) => addrs.push(m.email.to_string()),
                    Err(e) => problems.push(format!("email: {e}")),
                }
            }
            ("email", addrs.join(","))
        }
        _ => {
            problems.push("give either a webhook URL or e-mail addresses (one of the two)".into());
            ("webhook", String::new())
        }
    };
    let mut events: Vec<String> = Vec::new();
    for e in &req.events {
        if !w::EVENT_TYPES.contains(&e.as_str()) || e == "test" {
            problems.push(format!(
                "events: {e:?} is not an event type ({})",
                w::EVENT_TYPES[..w::EVENT_TYPES.len() - 1].join(", ")
            ));
        } else if !events.contains(e) {
            events.push(e.clone());
        }
    }
    if req.events.is_empty() {
        events = w::EVENT_TYPES
            .iter()
            .filter(|e| **e != "test")
            .map(|e| (*e).to_owned())
            .collect();
    }
    let filter = req.filter.clone().unwrap_or_default();
    if let Err(e) = fleetcare_rollout::Filter::parse(&filter) {
        problems.push(format!("filter: {e}"));
    }
    let min_severity = req.min_severity.clone().unwrap_or_else(|| "info".into());
    if !SEVERITIES.contains(&min_severity.as_str()) {
        problems.push(format!(
            "min_severity {min_severity:?}: one of {}",
            SEVERITIES.join(", ")
        ));
    }
    let digest_minutes = req.digest_minutes.unwrap_or(0);
    if digest_minutes > MAX_DIGEST_MINUTES {
        problems.push(format!("digest_minutes: at most {MAX_DIGEST_MINUTES}"));
    }
    if digest_minutes > 0 && channel == "webhook" {
        problems.push("digest_minutes: only for e-mail (a webhook gets every event)".into());
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: format!(
                "the subscription was refused: {} problem(s)",
                problems.len()
            ),
            problems,
        });
    }
    Ok(NewSubscription {
        name: req.name.clone(),
        channel: channel.into(),
        target,
        events: events.join(","),
        filter,
        min_severity,
        digest_minutes,
        secret: if channel == "webhook" {
            fleetcare_core::secret::generate(fleetcare_core::secret::SecretKind::Webhook)
        } else {
            String::new()
        },
    })
}

/// Add a subscription. A webhook's signing secret is in the answer, and never again.
#[utoipa::path(post, path = "/api/v1/notify", request_body = w::NewSubscription,
    responses((status = 200, body = w::Created), (status = 400, body = fleetcare_wire::ErrorBody),
        (status = 409, body = fleetcare_wire::ErrorBody)))]
pub async fn add(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(req): JsonBody<w::NewSubscription>,
) -> Result<Json<w::Created>, ApiError> {
    let tenant = op.0.tenant;
    let new = check(&st, &req).await?;
    if !st
        .store
        .add_subscription(tenant, &new, &op.0.name, st.clock.now_ms())
        .await?
    {
        return Err(ApiError::Conflict {
            code: "exists",
            message: format!("a subscription named {:?} exists", new.name),
        });
    }
    let rec = find(&st, tenant, &new.name).await?;
    Ok(Json(w::Created {
        subscription: view(rec, 0, true),
        secret: (!new.secret.is_empty()).then_some(new.secret),
    }))
}

#[utoipa::path(get, path = "/api/v1/notify", responses((status = 200, body = w::SubscriptionList)))]
pub async fn list(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::SubscriptionList>, ApiError> {
    let tenant = op.0.tenant;
    let admin = op.0.role == "admin";
    let pending: std::collections::HashMap<u64, u64> = st
        .store
        .pending_deliveries(tenant)
        .await?
        .into_iter()
        .collect();
    let subscriptions = st
        .store
        .subscriptions(tenant)
        .await?
        .into_iter()
        .map(|s| {
            let n = pending.get(&s.id).copied().unwrap_or(0);
            view(s, n, admin)
        })
        .collect();
    Ok(Json(w::SubscriptionList { subscriptions }))
}

#[utoipa::path(get, path = "/api/v1/notify/{name}", params(("name" = String, Path, description = "subscription")),
    responses((status = 200, body = w::Subscription), (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn show(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(name): Path<String>,
) -> Result<Json<w::Subscription>, ApiError> {
    let s = find(&st, op.0.tenant, &name).await?;
    let n = pending_of(&st, op.0.tenant, s.id).await?;
    Ok(Json(view(s, n, op.0.role == "admin")))
}

/// Remove a subscription; its pending deliveries are not sent.
#[utoipa::path(delete, path = "/api/v1/notify/{name}", params(("name" = String, Path, description = "subscription")),
    responses((status = 204), (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn remove(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if st.store.remove_subscription(op.0.tenant, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("subscription {name:?}")))
    }
}

/// Send a test event to this subscription (through the outbox, like any other).
#[utoipa::path(post, path = "/api/v1/notify/{name}/test", params(("name" = String, Path, description = "subscription")),
    responses((status = 200, body = w::TestSent), (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn test(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(name): Path<String>,
) -> Result<Json<w::TestSent>, ApiError> {
    let s = find(&st, op.0.tenant, &name).await?;
    let id = st
        .store
        .add_outbox_event(&OutboxEvent {
            id: 0,
            tenant: op.0.tenant,
            kind: "test".into(),
            device_id: None,
            subject_id: None,
            severity: Some("info".into()),
            at_ms: st.clock.now_ms(),
            detail: Some(s.name),
        })
        .await?;
    st.notify.wake();
    Ok(Json(w::TestSent {
        event_id: event_id(id),
    }))
}

/// Enable a subscription that was disabled (it kept failing): its waiting deliveries go out.
#[utoipa::path(post, path = "/api/v1/notify/{name}/enable", params(("name" = String, Path, description = "subscription")),
    responses((status = 200, body = w::Subscription), (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn enable(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(name): Path<String>,
) -> Result<Json<w::Subscription>, ApiError> {
    let s = find(&st, op.0.tenant, &name).await?;
    st.store
        .set_subscription_state(op.0.tenant, s.id, true, None, st.clock.now_ms())
        .await?;
    st.notify.wake();
    let s = find(&st, op.0.tenant, &name).await?;
    let n = pending_of(&st, op.0.tenant, s.id).await?;
    Ok(Json(view(s, n, true)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Deliveries older than this one.
    pub before: Option<u64>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<u32>,
}

/// A subscription's delivery log, newest first.
#[utoipa::path(get, path = "/api/v1/notify/{name}/deliveries",
    params(("name" = String, Path, description = "subscription"), DeliveriesQuery),
    responses((status = 200, body = w::DeliveryList), (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn deliveries(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(name): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<w::DeliveryList>, ApiError> {
    let s = find(&st, op.0.tenant, &name).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = st
        .store
        .deliveries(op.0.tenant, s.id, q.before, limit)
        .await?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|d| d.id))
        .flatten();
    Ok(Json(w::DeliveryList {
        deliveries: rows.into_iter().map(delivery_view).collect(),
        next,
    }))
}

/// Send a delivery again (same event id; its retries start over).
#[utoipa::path(post, path = "/api/v1/notify/{name}/deliveries/{id}/redeliver",
    params(("name" = String, Path, description = "subscription"), ("id" = u64, Path, description = "delivery")),
    responses((status = 200, body = w::Delivery), (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn redeliver(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path((name, id)): Path<(String, u64)>,
) -> Result<Json<w::Delivery>, ApiError> {
    let s = find(&st, op.0.tenant, &name).await?;
    if !st
        .store
        .redeliver(op.0.tenant, s.id, id, st.clock.now_ms())
        .await?
    {
        return Err(ApiError::NotFound(format!("delivery {id} of {name:?}")));
    }
    st.notify.wake();
    let d = st
        .store
        .deliveries(op.0.tenant, s.id, Some(id.saturating_add(1)), 1)
        .await?
        .pop()
        .filter(|d| d.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("delivery {id} of {name:?}")))?;
    Ok(Json(delivery_view(d)))
}

#[utoipa::path(get, path = "/api/v1/notify-settings", responses((status = 200, body = w::NotifySettings)))]
pub async fn settings(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::NotifySettings>, ApiError> {
    Ok(Json(w::NotifySettings {
        offline_after_s: st.store.offline_after(op.0.tenant).await?,
    }))
}

/// Set after how long a silent device is offline (`null`: 3 × its report interval).
#[utoipa::path(put, path = "/api/v1/notify-settings", request_body = w::NotifySettings,
    responses((status = 200, body = w::NotifySettings), (status = 400, body = fleetcare_wire::ErrorBody)))]
pub async fn set_settings(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(s): JsonBody<w::NotifySettings>,
) -> Result<Json<w::NotifySettings>, ApiError> {
    use fleetcare_core::limits::{MAX_REPORT_INTERVAL_S, MIN_REPORT_INTERVAL_S};
    if let Some(v) = s.offline_after_s
        && !(MIN_REPORT_INTERVAL_S..=3 * MAX_REPORT_INTERVAL_S).contains(&v)
    {
        return Err(ApiError::BadRequest(format!(
            "offline_after_s {v}: from {MIN_REPORT_INTERVAL_S} to {}",
            3 * MAX_REPORT_INTERVAL_S
        )));
    }
    st.store
        .set_offline_after(op.0.tenant, s.offline_after_s)
        .await?;
    Ok(Json(s))
}
