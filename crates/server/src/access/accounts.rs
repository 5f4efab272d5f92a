//! Logging in and out, and operators' accounts (`/api/v1/login`, `/logout`, `/accounts`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fleetcare_core::clock::rfc3339;
use fleetcare_core::secret::{self, SecretKind};
use fleetcare_store::NewAudit;
use fleetcare_wire::access as w;

use crate::AppState;
use crate::access::authz::Role;
use crate::access::session::{
    MAX_ACCOUNT_NAME, MAX_PASSWORD, MIN_PASSWORD, SESSION_MS, cookie, decoy, hash_password,
    same_origin, set_cookie, verify_password,
};
use crate::error::ApiError;
use crate::extract::{Client, JsonBody, OperatorAuth};

/// Log in with an account's name and password: a session cookie, and who you are.
#[utoipa::path(post, path = "/api/v1/login", request_body = w::Login,
    responses((status = 200, body = w::LoggedIn), (status = 401, body = fleetcare_wire::ErrorBody),
        (status = 429, body = fleetcare_wire::ErrorBody)))]
pub async fn login(
    State(st): State<AppState>,
    client: Client,
    headers: HeaderMap,
    JsonBody(req): JsonBody<w::Login>,
) -> Result<Response, ApiError> {
    if !same_origin(&Method::POST, &headers) && headers.contains_key(header::ORIGIN) {
        return Err(ApiError::Forbidden(
            "a login from another site is refused".into(),
        ));
    }
    let (cookie, body) = begin(&st, &client, req, "/api/v1/login").await?;
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Check an account's password and begin its session: the `Set-Cookie` value, and who
/// logged in. Every attempt is audited; failures spend the client's budget. The API's login
/// and the dashboard's login form (`path`, for the audit line) both come here.
pub async fn begin(
    st: &AppState,
    client: &Client,
    req: w::Login,
    path: &str,
) -> Result<(HeaderValue, w::LoggedIn), ApiError> {
    crate::extract::not_throttled(st, client.ip)?;
    let tenant_name = req
        .tenant
        .clone()
        .unwrap_or_else(|| st.settings.tenant.clone());
    let tenant = st.store.tenant_id(&tenant_name).await?;
    let account = match tenant {
        Some(t) => st.store.account(t, &req.name).await?,
        None => None,
    };
    let (hash, usable) = match &account {
        Some(a) => (a.password_hash.clone(), !a.disabled),
        None => (decoy().to_owned(), false),
    };
    let password = req.password.clone();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let now = st.clock.now_ms();
    let line = |status: u16, outcome: &str, detail: Option<String>| NewAudit {
        tenant,
        actor: Some(req.name.chars().take(MAX_ACCOUNT_NAME).collect()),
        role: account.as_ref().map(|a| a.role.clone()),
        action: "session.login".into(),
        method: "POST".into(),
        path: path.into(),
        status,
        outcome: outcome.into(),
        detail,
        source: client.ip.map(|ip| ip.to_string()),
    };
    let (Some(tenant), Some(account), true, true) = (tenant, &account, usable, matches) else {
        let e = crate::extract::failed(st, client.ip, "wrong tenant, name or password");
        let _ = st
            .store
            .append_audit(&line(401, "denied", Some(e.to_string())), now)
            .await;
        return Err(e);
    };
    let session = secret::generate(SecretKind::Operator);
    let expires = now + SESSION_MS;
    st.store
        .create_session(
            tenant,
            &req.name,
            &account.role,
            &secret::hash(&session),
            now,
            expires,
        )
        .await?;
    let _ = st.store.append_audit(&line(200, "ok", None), now).await;
    let secure = client.https;
    tracing::info!(account = %req.name, tenant = %tenant_name, "operator logged in");
    let body = w::LoggedIn {
        name: req.name.clone(),
        role: account.role.clone(),
        tenant: tenant_name,
        expires_at: rfc3339(expires),
    };
    Ok((set_cookie(&session, SESSION_MS / 1000, secure), body))
}

/// End this session (the cookie's); the cookie is cleared.
#[utoipa::path(post, path = "/api/v1/logout", responses((status = 204)))]
pub async fn logout(
    State(st): State<AppState>,
    _op: OperatorAuth,
    client: Client,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(s) = cookie(&headers) {
        st.store
            .end_session(&secret::hash(s), st.clock.now_ms())
            .await?;
    }
    let secure = client.https;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0, secure));
    Ok(resp)
}

fn account_info(a: &fleetcare_store::AccountRecord) -> w::AccountInfo {
    w::AccountInfo {
        name: a.name.clone(),
        role: a.role.clone(),
        created_at: rfc3339(a.created_at_ms),
        disabled_at: a.disabled_at_ms.map(rfc3339),
    }
}

#[utoipa::path(get, path = "/api/v1/accounts", responses((status = 200, body = w::AccountList)))]
pub async fn list_accounts(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::AccountList>, ApiError> {
    let accounts = st.store.accounts(op.0.tenant).await?;
    Ok(Json(w::AccountList {
        accounts: accounts.iter().map(account_info).collect(),
    }))
}

/// A new account of the caller's tenant, with its password (stored as an argon2id hash).
#[utoipa::path(post, path = "/api/v1/accounts", request_body = w::CreateAccount,
    responses((status = 200, body = w::AccountInfo), (status = 400, body = fleetcare_wire::ErrorBody),
        (status = 409, body = fleetcare_wire::ErrorBody)))]
pub async fn create_account(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(req): JsonBody<w::CreateAccount>,
) -> Result<Json<w::AccountInfo>, ApiError> {
    let mut problems = Vec::new();
    let name = req.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_ACCOUNT_NAME
        || name.chars().any(char::is_control)
    {
        problems.push(format!(
            "name: 1 to {MAX_ACCOUNT_NAME} characters, no control characters"
        ));
    }
    if Role::parse(&req.role).is_none() {
        problems.push(format!(
            "role {:?}: one of {}",
            req.role,
            crate::access::authz::names(crate::access::authz::ROLES)
        ));
    }
    let chars = req.password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&chars) {
        problems.push(format!(
            "password: {MIN_PASSWORD} to {MAX_PASSWORD} characters (got {chars})"
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: format!("the account was refused: {} problem(s)", problems.len()),
            problems,
        });
    }
    let password = req.password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let now = st.clock.now_ms();
    if !st
        .store
        .create_account(op.0.tenant, name, &req.role, &hash, now)
        .await?
    {
        return Err(ApiError::Conflict {
            code: "exists",
            message: format!("account {name} exists already"),
        });
    }
    tracing::info!(operator = %op.0.name, account = name, role = %req.role, "account created");
    Ok(Json(account_info(&fleetcare_store::AccountRecord {
        name: name.to_owned(),
        role: req.role,
        created_at_ms: now,
        disabled_at_ms: None,
    })))
}

/// Disable an account: its sessions end at once, and it cannot log in again.
#[utoipa::path(post, path = "/api/v1/accounts/{name}/disable",
    responses((status = 204), (status = 404, body = fleetcare_wire::ErrorBody)))]
pub async fn disable_account(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !st
        .store
        .disable_account(op.0.tenant, &name, st.clock.now_ms())
        .await?
    {
        return Err(ApiError::NotFound(format!("enabled account {name}")));
    }
    tracing::info!(operator = %op.0.name, account = %name, "account disabled");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_to_argon2id_and_verify() {
        let h = hash_password("correct horse battery staple").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery staple", &h));
        assert!(!verify_password("correct horse battery stapl", &h));
        assert!(!verify_password("x", "not a phc string"));
        assert_ne!(
            h,
            hash_password("correct horse battery staple").expect("hash"),
            "salted"
        );
    }

    #[test]
    fn cookies_and_origins() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; fleetcare_session=fco_x; b=2".parse().expect("v"),
        );
        assert_eq!(cookie(&h), Some("fco_x"));
        h.insert(header::HOST, "center:8470".parse().expect("v"));
        assert!(same_origin(&Method::GET, &h));
        assert!(!same_origin(&Method::POST, &h), "no Origin: refused");
        h.insert(header::ORIGIN, "https://evil.example".parse().expect("v"));
        assert!(!same_origin(&Method::POST, &h));
        h.insert(header::ORIGIN, "http://center:8470".parse().expect("v"));
        assert!(same_origin(&Method::POST, &h));
        h.insert("sec-fetch-site", "cross-site".parse().expect("v"));
        assert!(!same_origin(&Method::POST, &h), "the browser's word wins");
    }
}
