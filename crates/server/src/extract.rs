//! Extractors: JSON bodies with size limits and precise errors, device identity, and the
//! operator the authorization layer let through.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use fleetcare_core::secret;
use fleetcare_store::{DeviceKey, Operator};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::access::peer::{CertDevice, Peer};
use crate::config::ClientCert;
use crate::ctx::Ctx;
use crate::error::ApiError;

/// A JSON body: over the route's limit → 413; not JSON or not the expected shape → 400
/// naming the field and the problem.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(fleetcare_core::limits::MAX_OPERATOR_BODY, |l| l.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(limit)
            } else {
                ApiError::BadRequest(format!(
                    "could not read the request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parse JSON, naming the path of the offending field. Valid bodies take the fast path;
/// only a body that fails is parsed again to find where.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::BadJson(format!("malformed JSON body: {inner}"))
        } else {
            ApiError::BadJson(format!("malformed JSON body at `{path}`: {inner}"))
        }
    })
}

/// A query string: unknown parameters, or values of the wrong type, are a 400 naming them
/// (a misspelt or unsupported parameter, `sort=` say, is never silently ignored).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::BadRequest(format!("query string: {}", e.body_text())))
    }
}

/// The body limit of a route, set by a layer so the 413 message can say it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A 401 saying why, counted.
pub(crate) fn refuse(state: &AppState, why: &str) -> ApiError {
    state.metrics.rejected("unauthorized");
    ApiError::Unauthorized(why.to_owned())
}

/// The client's address (the peer, or whom a trusted proxy forwarded for).
pub(crate) fn client_ip(
    parts_ext: &axum::http::Extensions,
    headers: &axum::http::HeaderMap,
    state: &AppState,
) -> Option<std::net::IpAddr> {
    let peer = parts_ext.get::<Peer>().map(|p| p.0.ip());
    state.proxies.client(peer, headers)
}

/// Refuse a client address that failed to authenticate too often lately (429), before it
/// may try a password again.
pub(crate) fn not_throttled(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    match ip {
        Some(ip) => state
            .auth_failures
            .check(&ip, state.clock.now_ms())
            .map_err(|retry_after_ms| {
                state.metrics.rejected("throttled");
                ApiError::TooManyRequests {
                    what: "too many failed authentications from this address",
                    retry_after_ms,
                }
            }),
        None => Ok(()),
    }
}

/// A failed authentication: it costs the client address one of its budget; 401 saying why,
/// or 429 once the budget is spent (such refusals are not audited: a flood of guesses cannot
/// grow the audit log). A secret that is right still passes: tokens and credentials are too
/// long to guess, and devices behind one NAT must not lose service for a neighbour's mistake.
/// Passwords are different: a throttled address may not try one at all ([`not_throttled`]).
pub(crate) fn failed(state: &AppState, ip: Option<std::net::IpAddr>, why: &str) -> ApiError {
    if let Some(ip) = ip
        && let Err(retry_after_ms) = state.auth_failures.take(&ip, state.clock.now_ms())
    {
        state.metrics.rejected("throttled");
        return ApiError::TooManyRequests {
            what: "too many failed authentications from this address",
            retry_after_ms,
        };
    }
    refuse(state, why)
}

/// Whether a client certificate names `key`'s device (tenant ids by name are cached: tenants
/// are never renamed).
pub(crate) async fn cert_names(
    state: &AppState,
    cert: &CertDevice,
    key: &DeviceKey,
) -> Result<bool, ApiError> {
    if cert.device_id != key.device_id.as_str() {
        return Ok(false);
    }
    let cached = state
        .tenant_ids
        .lock()
        .expect("tenant ids")
        .get(&cert.tenant)
        .copied();
    let tenant = match cached {
        Some(t) => Some(t),
        None => {
            let t = state.store.tenant_id(&cert.tenant).await?;
            if let Some(t) = t {
                let mut ids = state.tenant_ids.lock().expect("tenant ids");
                if ids.len() >= 100_000 {
                    ids.clear();
                }
                ids.insert(cert.tenant.clone(), t);
            }
            t
        }
    };
    Ok(tenant == Some(key.tenant))
}

/// Who is calling, before any credential: its address and the device its certificate names.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: Option<std::net::IpAddr>,
    pub cert: Option<CertDevice>,
    /// The client reached the center over TLS: this connection's, or a trusted proxy's
    /// (judged by the connection's peer, not by the forwarded address).
    pub https: bool,
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<Peer>().map(|p| p.0.ip());
        let tls = parts.extensions.get::<crate::access::peer::Tls>().is_some();
        Ok(Client {
            ip: client_ip(&parts.extensions, &parts.headers, state),
            cert: parts.extensions.get::<CertDevice>().cloned(),
            https: state.proxies.https(peer, tls, &parts.headers),
        })
    }
}

/// The device a credential belongs to, if it is current (cached for a few seconds; a
/// revocation drops the cached entry at once).
pub async fn device_of_credential(
    state: &AppState,
    token: &str,
) -> Result<Option<DeviceKey>, ApiError> {
    let hash = secret::hash(token);
    let now = state.clock.now_ms();
    if let Some(key) = state.devices.credentials.get(&hash, now) {
        return Ok(Some(key));
    }
    let key = state.store.device_by_credential(&hash, now).await?;
    if let Some(key) = &key {
        state.devices.credentials.insert(hash, key.clone(), now);
    }
    Ok(key)
}

/// Take one request from the device's budget: 429 when it is spent.
pub fn take_budget(state: &AppState, key: &DeviceKey) -> Result<(), ApiError> {
    state
        .device_limits
        .take(key, state.clock.now_ms())
        .map_err(|retry_after_ms| {
            state.metrics.rejected("rate_limited");
            ApiError::TooManyRequests {
                what: "this device sent more requests than its rate allows",
                retry_after_ms,
            }
        })
}

/// The device a request's credential belongs to. Unknown or missing → 401 (and the client
/// address's failure budget shrinks; spent → 429); over the device's request budget → 429
/// with `Retry-After`; a client certificate that names another device → 403, none where the
/// center requires one → 401.
#[derive(Debug, Clone)]
pub struct DeviceAuth(pub DeviceKey);

impl DeviceAuth {
    async fn resolve(parts: &Parts, state: &AppState) -> Result<DeviceKey, ApiError> {
        let ip = client_ip(&parts.extensions, &parts.headers, state);
        let token = bearer(&parts.headers).ok_or_else(|| {
            failed(
                state,
                ip,
                "missing device credential (Authorization: Bearer …)",
            )
        })?;
        device_of_credential(state, token)
            .await?
            .ok_or_else(|| failed(state, ip, "unknown or revoked device credential"))
    }

    /// The client certificate, where there is one, must name this device.
    async fn check_certificate(
        parts: &Parts,
        state: &AppState,
        key: &DeviceKey,
    ) -> Result<(), ApiError> {
        match parts.extensions.get::<CertDevice>() {
            None if state.settings.device_client_cert == ClientCert::Required => Err(refuse(
                state,
                "this center requires a device certificate (mutual TLS)",
            )),
            None => Ok(()),
            Some(cert) => {
                if cert_names(state, cert, key).await? {
                    Ok(())
                } else {
                    state.metrics.rejected("other_device");
                    Err(ApiError::Forbidden(format!(
                        "the client certificate names device {} of tenant {}, not the device \
                         this credential belongs to",
                        cert.device_id, cert.tenant
                    )))
                }
            }
        }
    }
}

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = DeviceAuth::resolve(parts, state).await?;
        DeviceAuth::check_certificate(parts, state, &key).await?;
        take_budget(state, &key)?;
        Ok(DeviceAuth(key))
    }
}

/// The operator that the authorization layer (`access::authz::authorize`) authenticated and
/// authorized for this request.
/// A handler outside that layer gets a 500, never an operator whose role nobody checked.
#[derive(Debug, Clone)]
pub struct OperatorAuth(pub Operator);

impl FromRequestParts<AppState> for OperatorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<OperatorAuth>()
            .cloned()
            .ok_or_else(|| {
                ApiError::Internal("an operator route outside the authorization layer".into())
            })
    }
}

/// The key of device `id` in the operator's tenant (a malformed id is a bad request).
pub(crate) fn device_key(op: &OperatorAuth, id: &str) -> Result<DeviceKey, ApiError> {
    let device_id = fleetcare_core::DeviceId::parse(id)
        .map_err(|e| ApiError::BadRequest(format!("not a device id: {e}")))?;
    Ok(DeviceKey {
        tenant: op.0.tenant,
        device_id,
    })
}

/// The device's record, or "not found" naming the tenant's ids nearest to the one asked for.
pub(crate) async fn known_device(
    st: &Ctx,
    key: &DeviceKey,
) -> Result<fleetcare_store::DeviceRecord, ApiError> {
    match st.store.device(key).await? {
        Some(d) => Ok(d),
        None => Err(unknown_device(st, key).await),
    }
}

/// "device X not found", with the nearest ids the tenant has ("did you mean …?").
pub(crate) async fn unknown_device(st: &Ctx, key: &DeviceKey) -> ApiError {
    let asked = key.device_id.as_str();
    let mut near: Vec<(usize, String)> = st
        .store
        .device_ids_like(key.tenant, asked)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|id| {
            (
                strsim::levenshtein(&id.to_lowercase(), &asked.to_lowercase()),
                id,
            )
        })
        .filter(|(d, _)| *d <= (asked.chars().count() / 3).max(2))
        .collect();
    near.sort();
    let near: Vec<String> = near.into_iter().take(3).map(|(_, id)| id).collect();
    if near.is_empty() {
        ApiError::NotFound(format!("device {}", key.device_id))
    } else {
        ApiError::NotFound(format!(
            "device {} (did you mean {}?)",
            key.device_id,
            near.join(", ")
        ))
    }
}
