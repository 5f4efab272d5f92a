//! Operator tokens, the audit log and `whoami` over the API (authorization: [`crate::access::authz`]).

use crate::extract::Query;
use axum::Json;
use axum::extract::{Path, State};
use fleetcare_core::clock::rfc3339;
use fleetcare_core::secret::{self, SecretKind};
use fleetcare_store::{AuditRecord, TokenRecord};
use fleetcare_wire::access as w;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::access::authz::{self, Role};
use crate::error::ApiError;
use crate::extract::{JsonBody, OperatorAuth};

/// Longest operator name.
const MAX_NAME: usize = 100;
/// Most audit lines in one answer.
const MAX_AUDIT: u32 = 1000;

fn info(t: &TokenRecord) -> w::TokenInfo {
    w::TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.clone(),
        created_at: rfc3339(t.created_at_ms),
        revoked_at: t.revoked_at_ms.map(rfc3339),
    }
}

fn entry(a: &AuditRecord) -> w::AuditEntry {
    w::AuditEntry {
        id: a.id,
        at: rfc3339(a.at_ms),
        actor: a.actor.clone(),
        role: a.role.clone(),
        action: a.action.clone(),
        method: a.method.clone(),
        path: a.path.clone(),
        status: a.status,
        outcome: a.outcome.clone(),
        detail: a.detail.clone(),
        source: a.source.clone(),
    }
}

/// The caller, and what it may do.
#[utoipa::path(get, path = "/api/v1/whoami", responses((status = 200, body = w::WhoAmI)))]
pub async fn whoami(op: OperatorAuth) -> Json<w::WhoAmI> {
    let op = op.0;
    let may = authz::TABLE
        .iter()
        .filter(|r| authz::allows(r, &op.role))
        .map(|r| r.action.to_owned())
        .collect();
    Json(w::WhoAmI {
        name: op.name,
        role: op.role,
        tenant_id: op.tenant,
        may,
    })
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = w::TokenList)))]
pub async fn list_tokens(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::TokenList>, ApiError> {
    let tokens = st.store.operator_tokens(op.0.tenant).await?;
    Ok(Json(w::TokenList {
        tokens: tokens.iter().map(info).collect(),
    }))
}

/// A new token for an operator of the caller's tenant: the secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = w::CreateToken,
    responses((status = 200, body = w::CreatedToken), (status = 400, body = fleetcare_wire::ErrorBody)))]
pub async fn create_token(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(req): JsonBody<w::CreateToken>,
) -> Result<Json<w::CreatedToken>, ApiError> {
    let mut problems = Vec::new();
    let name = req.name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        problems.push(format!(
            "name: 1 to {MAX_NAME} characters, no control characters"
        ));
    }
    if Role::parse(&req.role).is_none() {
        problems.push(format!(
            "role {:?}: one of {}",
            req.role,
            authz::names(authz::ROLES)
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: format!("the token was refused: {} problem(s)", problems.len()),
            problems,
        });
    }
    let token = secret::generate(SecretKind::Operator);
    let hash = secret::hash(&token);
    let now = st.clock.now_ms();
    st.store
        .add_operator_token(op.0.tenant, name, &req.role, &hash, now)
        .await?;
    tracing::info!(operator = %op.0.name, name, role = %req.role, "operator token created");
    Ok(Json(w::CreatedToken {
        token,
        info: info(&TokenRecord {
            id: hash[..fleetcare_store::TOKEN_ID_LEN].to_owned(),
            name: name.to_owned(),
            role: req.role,
            created_at_ms: now,
            revoked_at_ms: None,
        }),
    }))
}

/// Revoke a token of the caller's tenant: the next request with it is refused.
#[utoipa::path(post, path = "/api/v1/tokens/{id}/revoke",
    responses((status = 200, body = w::TokenInfo), (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn revoke_token(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<w::TokenInfo>, ApiError> {
    let tenant = op.0.tenant;
    if !st
        .store
        .revoke_operator_token(tenant, &id, st.clock.now_ms())
        .await?
    {
        return Err(ApiError::NotFound(format!("live token {id}")));
    }
    let t = st
        .store
        .operator_tokens(tenant)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("token {id}")))?;
    tracing::info!(operator = %op.0.name, token = %id, "operator token revoked");
    Ok(Json(info(&t)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Lines older than this id (paging backwards).
    pub before: Option<u64>,
    pub limit: Option<u32>,
}

/// The tenant's audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), responses((status = 200, body = w::AuditLog)))]
pub async fn audit(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<w::AuditLog>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_AUDIT);
    let rows = st
        .store
        .audit(op.0.tenant, q.before.unwrap_or(0), limit)
        .await?;
    Ok(Json(w::AuditLog {
        entries: rows.iter().map(entry).collect(),
    }))
}

/// The caller's customer organizations (a provider's; a customer has none).
#[utoipa::path(get, path = "/api/v1/customers", responses((status = 200, body = w::CustomerList)))]
pub async fn list_customers(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::CustomerList>, ApiError> {
    let customers = st.store.customers(op.0.tenant).await?;
    Ok(Json(w::CustomerList {
        customers: customers
            .into_iter()
            .map(|c| w::CustomerInfo {
                name: c.name,
                created_at: rfc3339(c.created_at_ms),
                devices: c.devices,
            })
            .collect(),
    }))
}

/// A new customer organization, with an enrollment key for its devices (shown once). Its
/// operators get tokens from a provider admin acting within it (`Fleetcare-Tenant`).
#[utoipa::path(post, path = "/api/v1/customers", request_body = w::CreateCustomer,
    responses((status = 200, body = w::CreatedCustomer), (status = 400, body = fleetcare_wire::ErrorBody),
        (status = 409, body = fleetcare_wire::ErrorBody)))]
pub async fn create_customer(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(req): JsonBody<w::CreateCustomer>,
) -> Result<Json<w::CreatedCustomer>, ApiError> {
    let name = req.name.trim();
    if name.len() > fleetcare_store::MAX_CUSTOMER_NAME
        || fleetcare_core::DeviceId::parse(name).is_err()
    {
        return Err(ApiError::BadRequest(format!(
            "name {name:?}: 1 to {} letters, digits and . _ : -",
            fleetcare_store::MAX_CUSTOMER_NAME
        )));
    }
    let now = st.clock.now_ms();
    let tenant = st.store.create_customer(op.0.tenant, name, now).await?;
    let key = secret::generate(SecretKind::Enrollment);
    st.store
        .add_enrollment_key(tenant, &secret::hash(&key), now)
        .await?;
    tracing::info!(operator = %op.0.name, customer = name, "customer organization created");
    Ok(Json(w::CreatedCustomer {
        customer: w::CustomerInfo {
            name: name.to_owned(),
            created_at: rfc3339(now),
            devices: 0,
        },
        enrollment_key: key,
    }))
}
