//! A tenant's retention for operators: `GET` and `PUT /api/v1/retention`.

use axum::Json;
use axum::extract::State;
use fleetcare_store::{MAX_RETENTION_DAYS, RETENTION_KINDS};
use fleetcare_wire::ErrorBody;
use fleetcare_wire::retention as w;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, OperatorAuth};

async fn view(st: &AppState, tenant: fleetcare_store::TenantId) -> Result<w::Retention, ApiError> {
    let days = st.store.retention(tenant).await?;
    Ok(w::Retention {
        kinds: RETENTION_KINDS
            .iter()
            .map(|(kind, default_days)| w::RetentionKind {
                kind: (*kind).to_owned(),
                days: days.get(*kind).copied().unwrap_or(*default_days),
                default_days: *default_days,
            })
            .collect(),
    })
}

/// How long the tenant keeps each kind of data.
#[utoipa::path(get, path = "/api/v1/retention", responses((status = 200, body = w::Retention)))]
pub async fn show(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::Retention>, ApiError> {
    Ok(Json(view(&st, op.0.tenant).await?))
}

/// Keep a kind of data for so many days (0: forever). The pruner applies it from its next
/// round.
#[utoipa::path(put, path = "/api/v1/retention", request_body = w::SetRetention,
    responses((status = 200, body = w::Retention), (status = 400, body = ErrorBody)))]
pub async fn set(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(s): JsonBody<w::SetRetention>,
) -> Result<Json<w::Retention>, ApiError> {
    if !RETENTION_KINDS.iter().any(|(k, _)| *k == s.kind) {
        return Err(ApiError::BadRequest(format!(
            "kind {:?}: one of {}",
            s.kind,
            RETENTION_KINDS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if matches!(s.kind.as_str(), "history" | "audit") && s.days != 0 {
        return Err(ApiError::BadRequest(format!(
            "{}: kept forever (0); pruning it is not supported",
            s.kind
        )));
    }
    if s.days > MAX_RETENTION_DAYS {
        return Err(ApiError::BadRequest(format!(
            "days {}: at most {MAX_RETENTION_DAYS} (0: forever)",
            s.days
        )));
    }
    st.store.set_retention(op.0.tenant, &s.kind, s.days).await?;
    tracing::info!(tenant = op.0.tenant, kind = %s.kind, days = s.days, operator = %op.0.name, "retention set");
    Ok(Json(view(&st, op.0.tenant).await?))
}
