//! The operator dashboard: pages the center renders (askama templates compiled in), live by
//! server-sent events, with vendored htmx. See ARCHITECTURE.md, "The dashboard".
//!
//! Pages read through the operator API's own handler functions, as the logged-in operator,
//! so a page shows what the API answers; an action is a button that posts to the API
//! endpoint itself, shown only when the operator's role passes that endpoint's rule.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use fleetcare_core::secret;
use fleetcare_store::Operator;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::access::{accounts, authz, session};
use crate::cluster::events;
use crate::error::ApiError;
use crate::extract::{Client, OperatorAuth};

pub mod chart;
mod pages;

/// How old the overview's fleet-wide numbers may be.
pub const SUMMARY_TTL: Duration = Duration::from_secs(5);

/// What the dashboard keeps in memory: each tenant's overview numbers, for
/// [`SUMMARY_TTL`].
#[derive(Default)]
pub struct Cache {
    summaries: std::sync::Mutex<
        std::collections::HashMap<fleetcare_store::TenantId, std::sync::Arc<pages::Summary>>,
    >,
    computing: std::sync::Mutex<
        std::collections::HashMap<
            fleetcare_store::TenantId,
            std::sync::Arc<tokio::sync::Mutex<()>>,
        >,
    >,
}

/// Largest login form accepted.
const MAX_FORM: usize = 8 * 1024;
/// How often a live stream checks that its session still holds.
const SESSION_RECHECK: Duration = Duration::from_secs(30);
/// Change notices are sent at most this often: the first after a quiet spell at once, the
/// ones that follow gathered and sent as one event per name.
const COALESCE: Duration = Duration::from_secs(1);

/// The pages' policy: only the center's own scripts, styles and connections; no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The dashboard's routes (under `/ui/`), and `/` leading there.
pub fn routes(state: AppState) -> Router<AppState> {
    let timed = axum::middleware::from_fn_with_state(state, crate::routes::request_timeout);
    let pages = Router::new()
        .route("/ui/", get(pages::overview))
        .route("/ui/devices", get(pages::devices))
        .route("/ui/devices/{id}", get(pages::device))
        .route("/ui/catalog", get(pages::catalog))
        .route("/ui/troubles", get(pages::troubles))
        .route("/ui/troubles/{id}", get(pages::trouble))
        .route("/ui/supplies", get(pages::supplies))
        .route("/ui/meter-reads.csv", get(pages::meter_reads_csv))
        .route("/ui/rollouts", get(pages::rollouts))
        .route("/ui/rollouts/{id}", get(pages::rollout))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/notify", get(pages::notify))
        .route("/ui/login", get(login_page).post(login_form))
        .route("/ui/logout", post(logout))
        .route("/ui/scope", post(scope))
        .route("/ui/assets/{name}", get(asset))
        .layer(timed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM));
    Router::new()
        .merge(pages)
        // A stream lives long: outside the request timeout.
        .route("/ui/events", get(live))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .layer(axum::middleware::from_fn(headers))
}

/// Security headers on every dashboard answer; pages are never cached.
async fn headers(req: Request, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/ui/assets/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The logged-in operator of a dashboard request (by its session cookie). Without a live
/// session a page redirects to the login form, and comes back after it.
pub struct Ui {
    /// Within a customer, the customer's tenant (as the API's `Fleetcare-Tenant` makes it).
    pub op: Operator,
    /// The customer organization a provider's operator is looking into.
    pub scope: Option<String>,
    /// The provider's customers, to choose from (empty for anyone else).
    pub customers: Vec<String>,
}

/// The cookie naming the customer a provider's operator looks into.
const SCOPE_COOKIE: &str = "fleetcare_scope";

/// A customer's short name as a cookie may carry it.
fn scope_name(s: &str) -> bool {
    (1..=fleetcare_store::tenants::MAX_CUSTOMER_NAME).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b))
}

impl Ui {
    /// The operator as the API's handlers take it.
    fn auth(&self) -> OperatorAuth {
        OperatorAuth(self.op.clone())
    }

    /// May this operator call the API endpoint (`authz::TABLE`)?
    pub fn may(&self, method: &str, path: &str) -> bool {
        authz::may(&self.op.role, method, path)
    }
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let found = match session::cookie(&parts.headers).filter(|c| !c.is_empty()) {
            Some(c) => st
                .store
                .operator_by_token(&secret::hash(c), st.clock.now_ms())
                .await
                .map_err(|e| ApiError::from(e).into_response())?,
            None => None,
        };
        match found {
            Some(op) => {
                let fail = |e: fleetcare_store::StoreError| ApiError::from(e).into_response();
                let customers = st.store.customer_names(op.tenant).await.map_err(fail)?;
                let wanted = session::cookie_named(&parts.headers, SCOPE_COOKIE)
                    .filter(|s| scope_name(s) && customers.iter().any(|c| c == s));
                let mut ui = Ui {
                    op,
                    scope: None,
                    customers,
                };
                if let Some(name) = wanted
                    && let Some(tenant) =
                        st.store.customer(ui.op.tenant, name).await.map_err(fail)?
                {
                    ui.op = Operator {
                        tenant,
                        name: format!("{} (provider)", ui.op.name),
                        role: ui.op.role,
                    };
                    ui.scope = Some(name.to_owned());
                }
                Ok(ui)
            }
            None if parts.method == Method::GET => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map_or("/ui/", |p| p.as_str())
                    .to_owned();
                Err(
                    Redirect::to(&format!("/ui/login?next={}", pages::url_escape(&here)))
                        .into_response(),
                )
            }
            None => Err(ApiError::Unauthorized("no session: log in".into()).into_response()),
        }
    }
}

/// Where a login may return to: a dashboard page of this center, nothing else.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_page(
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Result<Html<String>, ApiError> {
    pages::login(&safe_next(q.next.as_deref()), None, StatusCode::OK).map(|(_, h)| h)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    next: String,
}

async fn login_form(
    State(st): State<AppState>,
    client: Client,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let axum::Form(f) = match form {
        Ok(f) => f,
        Err(e) => {
            return pages::login(
                "/ui/",
                Some(&format!("The form was not understood: {e}")),
                StatusCode::BAD_REQUEST,
            )
            .into_response();
        }
    };
    let next = safe_next(Some(&f.next));
    if !session::same_origin(&Method::POST, &headers) {
        return pages::login(
            &next,
            Some("A login from another site is refused."),
            StatusCode::FORBIDDEN,
        )
        .into_response();
    }
    let req = fleetcare_wire::access::Login {
        tenant: (!f.tenant.trim().is_empty()).then(|| f.tenant.trim().to_owned()),
        name: f.name.trim().to_owned(),
        password: f.password,
    };
    match accounts::begin(&st, &client, req, "/ui/login").await {
        Ok((cookie, _)) => {
            let mut resp = Redirect::to(&next).into_response();
            resp.headers_mut().insert(header::SET_COOKIE, cookie);
            resp
        }
        Err(e) => {
            let status = e.status();
            let message = match e {
                ApiError::TooManyRequests { .. } => {
                    "Too many failed logins from this address: wait a minute, then try again."
                        .to_owned()
                }
                ApiError::Unauthorized(_) => "Wrong organization, name or password.".to_owned(),
                other => other.to_string(),
            };
            pages::login(&next, Some(&message), status).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeForm {
    #[serde(default)]
    customer: String,
}

/// A provider's operator chooses a customer organization to look into (or none: its own).
async fn scope(
    ui: Ui,
    client: Client,
    headers: HeaderMap,
    form: Result<axum::Form<ScopeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !session::same_origin(&Method::POST, &headers) {
        return ApiError::Forbidden("a change from another site is refused".into()).into_response();
    }
    let Ok(axum::Form(f)) = form else {
        return ApiError::BadRequest("the form: customer".into()).into_response();
    };
    let name = f.customer.trim();
    let value = if name.is_empty() {
        String::new()
    } else if scope_name(name) && ui.customers.iter().any(|c| c == name) {
        name.to_owned()
    } else {
        return ApiError::NotFound(format!("customer {name:?}")).into_response();
    };
    let secure = if client.https { "; Secure" } else { "" };
    let max_age = if value.is_empty() { "; Max-Age=0" } else { "" };
    let mut resp = Redirect::to("/ui/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SCOPE_COOKIE}={value}; Path=/ui/; HttpOnly; SameSite=Strict{max_age}{secure}"
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(State(st): State<AppState>, client: Client, headers: HeaderMap) -> Response {
    if !session::same_origin(&Method::POST, &headers) {
        return ApiError::Forbidden("a logout from another site is refused".into()).into_response();
    }
    if let Some(c) = session::cookie(&headers)
        && let Err(e) = st
            .store
            .end_session(&secret::hash(c), st.clock.now_ms())
            .await
    {
        return ApiError::from(e).into_response();
    }
    let mut resp = Redirect::to("/ui/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie("", 0, client.https));
    resp
}

/// The vendored and own assets, compiled in. Names carry versions: cached for a year.
async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match name.as_str() {
        "htmx-2.0.11.min.js" => (
            include_bytes!("../../assets/htmx-2.0.11.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "htmx-ext-sse-2.2.4.min.js" => (
            include_bytes!("../../assets/htmx-ext-sse-2.2.4.min.js"),
            "text/javascript; charset=utf-8",
        ),
        ASSET_JS => (
            include_bytes!("../../assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        ASSET_CSS => (
            include_bytes!("../../assets/app.css"),
            "text/css; charset=utf-8",
        ),
        _ => return ApiError::NotFound(format!("asset {name:?}")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

/// Our own script and style, by a name that changes when they do.
pub const ASSET_JS: &str = "app-11.js";
pub const ASSET_CSS: &str = "app-12.css";

/// A stream's state: the notices gathered since the last send, and what to send now.
struct Live {
    st: AppState,
    rx: tokio::sync::broadcast::Receiver<events::Notice>,
    tenant: fleetcare_store::TenantId,
    session: String,
    pending: BTreeSet<String>,
    ready: std::collections::VecDeque<String>,
    tick: tokio::time::Interval,
    recheck: tokio::time::Instant,
    /// When events were last sent: a notice after a quiet second goes out at once, the
    /// rest wait for the next tick.
    sent: tokio::time::Instant,
    shutdown: tokio::sync::watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// `/ui/events`: the session's tenant's change notices, as named events once a second.
async fn live(State(st): State<AppState>, ui: Ui, headers: HeaderMap) -> Response {
    let Ok(permit) = st.events.streams.clone().try_acquire_owned() else {
        return ApiError::Unavailable("too many live pages on this instance; reload later".into())
            .into_response();
    };
    let Some(session) = session::cookie(&headers).map(secret::hash) else {
        return ApiError::Unauthorized("no session".into()).into_response();
    };
    let mut tick = tokio::time::interval(COALESCE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = Live {
        rx: st.events.subscribe(),
        tenant: ui.op.tenant,
        session,
        pending: BTreeSet::new(),
        ready: std::collections::VecDeque::new(),
        tick,
        recheck: tokio::time::Instant::now() + SESSION_RECHECK,
        sent: tokio::time::Instant::now() - COALESCE,
        shutdown: st.shutdown.clone(),
        st,
        _permit: permit,
    };
    let mut resp = Sse::new(stream_of(state))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // A buffering reverse proxy (nginx) would hold the events back.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn stream_of(state: Live) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    stream::unfold(state, |mut s| async move {
        loop {
            if let Some(name) = s.ready.pop_front() {
                let ev = Event::default().event(name.clone()).data(name);
                return Some((Ok(ev), s));
            }
            tokio::select! {
                got = s.rx.recv() => match got {
                    Ok(n) if n.tenant == s.tenant => {
                        n.names(&mut s.pending);
                        if s.sent.elapsed() >= COALESCE {
                            s.sent = tokio::time::Instant::now();
                            if !s.pending.is_empty() {
                        s.sent = tokio::time::Instant::now();
                        s.ready.extend(std::mem::take(&mut s.pending));
                    }
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        s.pending.insert(events::RESYNC.to_owned());
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = s.tick.tick() => {
                    if tokio::time::Instant::now() >= s.recheck {
                        s.recheck = tokio::time::Instant::now() + SESSION_RECHECK;
                        let live = s.st.store.operator_by_token(&s.session, s.st.clock.now_ms()).await;
                        if !matches!(live, Ok(Some(_))) {
                            return None;
                        }
                    }
                    s.ready.extend(std::mem::take(&mut s.pending));
                }
                () = crate::stopped(&mut s.shutdown) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_returns_only_to_a_dashboard_page() {
        assert_eq!(safe_next(Some("/ui/devices?q=a")), "/ui/devices?q=a");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/api/v1/tokens",
            "/ui/\\evil",
            "/ui/\r\nSet-Cookie: x",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }
}
