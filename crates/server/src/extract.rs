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

/// The device a request's credential belongs to. Unknown or missing → 401.
#[derive(Debug, Clone)]
pub struct DeviceAuth(pub DeviceKey);

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| refuse(state, "missing device credential (Authorization: Bearer …)"))?;
        let hash = secret::hash(token);
        let now = state.clock.now_ms();
        if let Some(key) = state.credentials.get(&hash, now) {
            return Ok(DeviceAuth(key));
        }
        match state.store.device_by_credential(&hash).await? {
            Some(key) => {
                state.credentials.insert(hash, key.clone(), now);
                Ok(DeviceAuth(key))
            }
            None => Err(refuse(state, "unknown or revoked device credential")),
        }
    }
}

/// The operator [`crate::authz::authorize`] authenticated and authorized for this request.
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
