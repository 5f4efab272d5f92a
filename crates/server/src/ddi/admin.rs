//! DDI targets and gateway tokens for operators (`/api/v1/ddi/…`).

use axum::Json;
use axum::extract::{Path, State};
use fleetcare_core::secret::{self, SecretKind};
use fleetcare_core::structure;
use fleetcare_store::{DeviceKey, Enrollment, TenantId};
use fleetcare_wire::ErrorBody;
use fleetcare_wire::ddi as w;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, OperatorAuth, device_key};

async fn tenant_name(st: &AppState, tenant: TenantId) -> Result<String, ApiError> {
    st.store
        .tenant_name(tenant)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("tenant {tenant} has no name")))
}

/// Make a device a DDI target: it is enrolled with a new credential, which is its target
/// token (shown once). A device enrolled already is refused unless an operator allowed it to
/// enroll again (`fleetcare devices allow-reenroll`); then its token is replaced.
#[utoipa::path(post, path = "/api/v1/ddi/targets", request_body = w::NewTarget,
    responses((status = 200, body = w::TargetCreated), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_target(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(req): JsonBody<w::NewTarget>,
) -> Result<Json<w::TargetCreated>, ApiError> {
    let device_id = structure::validate_identity(&req.device_id, &req.model)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let key = DeviceKey {
        tenant: op.0.tenant,
        device_id,
    };
    let token = secret::generate(SecretKind::Device);
    match st
        .store
        .enroll_device(
            &key,
            &req.model,
            &secret::hash(&token),
            None,
            st.clock.now_ms(),
        )
        .await?
    {
        Enrollment::Enrolled { .. } => {}
        Enrollment::Refused => {
            return Err(ApiError::Conflict {
                code: "already_enrolled",
                message: format!(
                    "device {} is enrolled already; `fleetcare devices allow-reenroll {}` first \
                     to give it a new target token",
                    key.device_id, key.device_id
                ),
            });
        }
    }
    st.store.ddi_register(&key, st.clock.now_ms()).await?;
    st.devices.credentials.forget(&key);
    st.metrics.enrollments.inc();
    tracing::info!(device = %key.device_id, tenant = key.tenant, operator = %op.0.name, "DDI target created");
    Ok(Json(w::TargetCreated {
        device_id: key.device_id.as_str().to_owned(),
        tenant: tenant_name(&st, op.0.tenant).await?,
        target_token: token,
    }))
}

/// A DDI target: its model and the attributes it sent.
#[utoipa::path(get, path = "/api/v1/ddi/targets/{id}", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = w::TargetView), (status = 404, body = ErrorBody)))]
pub async fn show_target(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<w::TargetView>, ApiError> {
    let key = device_key(&op, &id)?;
    let (Some(dd), Some(d)) = (
        st.store.ddi_device(&key).await?,
        st.store.device(&key).await?,
    ) else {
        return Err(ApiError::NotFound(format!("DDI target {id}")));
    };
    Ok(Json(w::TargetView {
        device_id: id,
        model: d.model,
        attributes: dd.attributes,
        reports: dd.seq,
    }))
}

/// A new gateway token for the caller's tenant (shown once): its holder acts as any
/// controllerId of the tenant, and a controllerId it names first becomes a device.
#[utoipa::path(post, path = "/api/v1/ddi/gateway-tokens",
    responses((status = 200, body = w::GatewayToken)))]
pub async fn add_gateway_token(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::GatewayToken>, ApiError> {
    let token = secret::generate(SecretKind::Gateway);
    st.store
        .add_gateway_token(op.0.tenant, &secret::hash(&token), st.clock.now_ms())
        .await?;
    tracing::info!(tenant = op.0.tenant, operator = %op.0.name, "DDI gateway token created");
    Ok(Json(w::GatewayToken {
        tenant: tenant_name(&st, op.0.tenant).await?,
        gateway_token: token,
    }))
}

/// Revoke every gateway token of the caller's tenant (at once: each request looks its token
/// up).
#[utoipa::path(delete, path = "/api/v1/ddi/gateway-tokens",
    responses((status = 200, body = w::Revoked)))]
pub async fn revoke_gateway_tokens(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::Revoked>, ApiError> {
    let revoked = st
        .store
        .revoke_gateway_tokens(op.0.tenant, st.clock.now_ms())
        .await?;
    tracing::info!(tenant = op.0.tenant, operator = %op.0.name, revoked, "DDI gateway tokens revoked");
    Ok(Json(w::Revoked { revoked }))
}
