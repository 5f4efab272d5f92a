//! The login page.

use super::ASSET_CSS;
use crate::error::ApiError;
use askama::Template;
use axum::http::StatusCode;
use axum::response::Html;

use super::*;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    css: &'static str,
    next: &'a str,
    error: Option<&'a str>,
}

/// The login form (again, with the problem, after a failed attempt).
pub fn login(
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Result<(StatusCode, Html<String>), ApiError> {
    render(&LoginPage {
        css: ASSET_CSS,
        next,
        error,
    })
    .map(|h| (status, h))
}
