//! Operator accounts and dashboard sessions: passwords stored as argon2id hashes (PHC strings),
//! a login that sets a session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS,
//! 12 hours), logout, and the account API for admins.
//!
//! A session is an operator token with an expiry: the authorization layer takes it from the
//! cookie as it takes a token from `Authorization`, so the same table decides what it may do.
//! A request authenticated by the cookie that changes something must come from the center's
//! own pages (`Origin` naming this host, or `Sec-Fetch-Site: same-origin`): a cross-site
//! form cannot act with an operator's cookie.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use fleetcare_core::secret::{self, SecretKind};

use crate::error::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "fleetcare_session";
/// How long a session lasts.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;
/// Password length bounds (characters).
pub const MIN_PASSWORD: usize = 12;
pub const MAX_PASSWORD: usize = 256;
pub(crate) const MAX_ACCOUNT_NAME: usize = 64;

/// A PHC string for `password` (argon2id, the crate's default parameters: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::Internal(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash no password matches, verified against when there is no such account, so that a
/// login for a missing account takes as long as one with a wrong password.
pub(crate) fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&secret::generate(SecretKind::Operator)).unwrap_or_default())
}

/// The session secret a request's cookie carries.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, COOKIE)
}

/// The value of the cookie `name` a request carries (not empty).
pub fn cookie_named<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
}

/// A cookie-authenticated request that changes something must come from the center's own
/// pages.
pub fn same_origin(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return site == "same-origin";
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .is_some_and(|o| o == host),
        _ => false,
    }
}

pub(crate) fn set_cookie(value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("fleetcare_session=; Max-Age=0"))
}
