//! The one error type of every handler; it renders as [`ErrorBody`] JSON with its status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fleetcare_store::StoreError;
use fleetcare_wire::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A 400 listing every problem of the input.
    #[error("{message}")]
    Invalid {
        message: String,
        problems: Vec<String>,
    },
    #[error("{0}")]
    BadJson(String),
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Names what was not found ("device X").
    #[error("{0} not found")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 429: the caller's budget is spent; `Retry-After` says when the next request passes.
    #[error("{what}; retry in {} s", retry_after_s(*.retry_after_ms))]
    TooManyRequests {
        what: &'static str,
        retry_after_ms: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    /// 503: the center's disk is full; nothing was stored, `Retry-After` says when to try.
    #[error("the center's disk is full; nothing was stored, try again later")]
    DiskFull,
    #[error("the request took longer than {0:?}")]
    Timeout(std::time::Duration),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BadJson(_) | ApiError::Invalid { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::DiskFull => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told (the response body).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_owned(),
            error: self.to_string(),
            problems: match self {
                ApiError::Invalid { problems, .. } => problems.clone(),
                _ => Vec::new(),
            },
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid { .. } => "invalid",
            ApiError::BadJson(_) => "bad_json",
            ApiError::TooLarge(_) => "too_large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict { code, .. } => code,
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::DiskFull => "disk_full",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // A full disk is logged once, when writes stop (`disk.rs`), not per request.
        if status.is_server_error() && !matches!(self, ApiError::DiskFull) {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = (status, Json(self.body())).into_response();
        if let ApiError::TooManyRequests { retry_after_ms, .. } = &self {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_s(*retry_after_ms)),
            );
        }
        if let ApiError::DiskFull = &self {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(DISK_FULL_RETRY_S),
            );
            // The disk layer sees this and stops taking writes until there is room.
            resp.extensions_mut().insert(DiskFullHit);
        }
        resp
    }
}

/// What a refused write is told to wait, in seconds.
pub const DISK_FULL_RETRY_S: u64 = 30;

/// Marks a response to a write that failed for want of disk space.
#[derive(Debug, Clone, Copy)]
pub struct DiskFullHit;

/// Whole seconds, rounded up, at least 1 (what `Retry-After` can say).
fn retry_after_s(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict(message) => ApiError::Conflict {
                code: "conflict",
                message,
            },
            StoreError::Corrupt(_) => ApiError::Internal(e.to_string()),
            StoreError::DiskFull(_) => ApiError::DiskFull,
            StoreError::Open { .. }
            | StoreError::Migrate(_)
            | StoreError::Db(_)
            | StoreError::Closed => {
                ApiError::Unavailable(format!("the store could not answer: {e}"))
            }
        }
    }
}
