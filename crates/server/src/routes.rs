//! The whole HTTP surface of the center: every route, its body limit, timeout and
//! authorization layer, in one table.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use fleetcare_core::limits::{MAX_DEVICE_BODY, MAX_OPERATOR_BODY};
use fleetcare_wire::operator::Health;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::extract::BodyLimit;

use crate::*;

/// Device requests (reports, error batches, enrollments, job status) processed at once.
pub const DEVICE_REQUESTS_IN_FLIGHT: usize = 1024;

/// The whole HTTP surface of the center.
pub fn app(state: AppState) -> Router {
    let timed = middleware::from_fn_with_state(state.clone(), request_timeout);
    let device = Router::new()
        .route("/device/v1/enroll", post(devices::protocol::enroll))
        .route("/device/v1/reports", post(devices::protocol::report))
        .route("/device/v1/self", get(devices::protocol::whoami))
        .route(
            "/device/v1/credential",
            post(devices::protocol::rotate_credential),
        )
        .route("/device/v1/compat", get(compat::api::own_compat))
        .route("/device/v1/about", get(diag::api::own_about))
        .route("/device/v1/settings", get(diag::api::own_settings))
        .route("/device/v1/jobs", get(delivery::api::device_jobs))
        .route(
            "/device/v1/tuf/metadata/{file}",
            get(delivery::tuf::metadata),
        )
        .route(
            "/device/v1/notifications",
            get(compat::api::own_notifications),
        )
        .route("/device/v1/errors", post(diag::logs::upload))
        .route(
            "/device/v1/jobs/{id}/status",
            post(delivery::api::job_status),
        )
        // hawkBit's Direct Device Integration API (see `ddi/`).
        .route("/{tenant}/controller/v1/{id}", get(ddi::api::poll))
        .route(
            "/{tenant}/controller/v1/{id}/deploymentBase/{action}",
            get(ddi::api::deployment_base),
        )
        .route(
            "/{tenant}/controller/v1/{id}/deploymentBase/{action}/feedback",
            post(ddi::actions::feedback),
        )
        .route(
            "/{tenant}/controller/v1/{id}/installedBase/{action}",
            get(ddi::api::installed_base),
        )
        .route(
            "/{tenant}/controller/v1/{id}/cancelAction/{action}",
            get(ddi::api::cancel_action),
        )
        .route(
            "/{tenant}/controller/v1/{id}/cancelAction/{action}/feedback",
            post(ddi::actions::cancel_feedback),
        )
        .route(
            "/{tenant}/controller/v1/{id}/configData",
            put(ddi::api::config_data),
        )
        // Agents gzip their larger bodies; the limit below applies to what they inflate to.
        .layer(
            tower::ServiceBuilder::new()
                // A storm of devices (a restart of the fleet's center) is taken a bounded number
                // at a time; the others wait their turn with their bodies unread.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    DEVICE_REQUESTS_IN_FLIGHT,
                ))
                .layer(tower_http::decompression::RequestDecompressionLayer::new())
                .layer(tower_http::map_request_body::MapRequestBodyLayer::new(
                    axum::body::Body::new,
                )),
        )
        .layer(timed.clone())
        // Downloads take as long as the bytes take.
        .route(
            "/device/v1/artifacts/{sha256}",
            get(delivery::api::get_artifact),
        )
        .route("/device/v1/tuf/targets/{*path}", get(delivery::tuf::target))
        .route(
            "/{tenant}/controller/v1/{id}/softwaremodules/{module}/artifacts/{file}",
            get(ddi::api::download),
        )
        // Long polls and push channels bound themselves.
        .route("/device/v1/push", get(devices::protocol::push))
        .route("/device/v1/poll", get(devices::protocol::poll))
        .layer(DefaultBodyLimit::max(MAX_DEVICE_BODY))
        .layer(Extension(BodyLimit(MAX_DEVICE_BODY)));
    let operator = Router::new()
        .route("/api/v1/devices", get(devices::api::list_devices))
        .route("/api/v1/devices/{id}", get(devices::api::show_device))
        .route(
            "/api/v1/devices/{id}/history",
            get(devices::api::device_history),
        )
        .route("/api/v1/devices/{id}/meters", get(life::api::meters))
        .route("/api/v1/meter-reads", get(life::api::meter_reads))
        .route("/api/v1/supplies/running-out", get(life::api::running_out))
        .route(
            "/api/v1/meter-read-schedule",
            get(life::api::schedule).put(life::api::set_schedule),
        )
        .route("/api/v1/devices/{id}/supplies", get(life::api::supplies))
        .route(
            "/api/v1/notify",
            get(notify::api::list).post(notify::api::add),
        )
        .route(
            "/api/v1/notify/{name}",
            get(notify::api::show).delete(notify::api::remove),
        )
        .route("/api/v1/notify/{name}/test", post(notify::api::test))
        .route("/api/v1/notify/{name}/enable", post(notify::api::enable))
        .route(
            "/api/v1/notify/{name}/deliveries",
            get(notify::api::deliveries),
        )
        .route(
            "/api/v1/notify/{name}/deliveries/{id}/redeliver",
            post(notify::api::redeliver),
        )
        .route(
            "/api/v1/retention",
            get(retention::api::show).put(retention::api::set),
        )
        .route("/api/v1/ddi/targets", post(ddi::admin::add_target))
        .route("/api/v1/ddi/targets/{id}", get(ddi::admin::show_target))
        .route(
            "/api/v1/ddi/gateway-tokens",
            post(ddi::admin::add_gateway_token).delete(ddi::admin::revoke_gateway_tokens),
        )
        .route(
            "/api/v1/notify-settings",
            get(notify::api::settings).put(notify::api::set_settings),
        )
        .route(
            "/api/v1/devices/{id}/request-report",
            post(devices::api::request_report),
        )
        .route(
            "/api/v1/devices/{id}/report-interval",
            put(devices::api::set_report_interval),
        )
        .route(
            "/api/v1/devices/{id}/revoke",
            post(devices::api::revoke_device),
        )
        .route(
            "/api/v1/devices/{id}/rotate-credential",
            post(devices::api::rotate_credential),
        )
        .route(
            "/api/v1/devices/{id}/allow-reenroll",
            post(devices::api::allow_reenroll),
        )
        .route(
            "/api/v1/devices/{id}/compat",
            get(compat::api::device_compat),
        )
        .route("/api/v1/devices/{id}/units", get(compat::units::list))
        .route(
            "/api/v1/devices/{id}/units/{slot}/disable",
            post(compat::units::disable),
        )
        .route(
            "/api/v1/devices/{id}/units/{slot}/enable",
            post(compat::units::enable),
        )
        .route(
            "/api/v1/catalog/revisions",
            get(compat::api::catalog_revisions),
        )
        .route("/api/v1/compat/fleet", get(compat::api::fleet))
        .route("/api/v1/troubles", get(diag::api::list_troubles))
        .route(
            "/api/v1/rollouts",
            get(rollout::api::list).post(rollout::api::create),
        )
        .route("/api/v1/rollouts/{id}", get(rollout::api::show))
        .route("/api/v1/rollouts/{id}/devices", get(rollout::api::devices))
        .route("/api/v1/rollouts/{id}/approve", post(rollout::api::approve))
        .route("/api/v1/rollouts/{id}/pause", post(rollout::api::pause))
        .route("/api/v1/rollouts/{id}/resume", post(rollout::api::resume))
        .route("/api/v1/rollouts/{id}/abort", post(rollout::api::abort))
        .route("/api/v1/sites", get(rollout::api::sites))
        .route("/api/v1/sites/{name}", put(rollout::api::put_site))
        .route("/api/v1/devices/{id}/labels", put(rollout::api::put_labels))
        .route("/api/v1/troubles/{id}", get(diag::api::show_trouble))
        .route("/api/v1/troubles/{id}/ack", post(diag::api::ack_trouble))
        .route(
            "/api/v1/troubles/{id}/resolve",
            post(diag::api::resolve_trouble),
        )
        .route("/api/v1/devices/{id}/about", get(diag::api::device_about))
        .route(
            "/api/v1/compat/policy",
            get(compat::api::get_policy).put(compat::api::set_policy),
        )
        .route(
            "/api/v1/jobs",
            get(delivery::api::list_jobs).post(delivery::api::create_job),
        )
        .route("/api/v1/releases", get(delivery::api::list_releases))
        .route("/api/v1/devices/{id}/errors", get(diag::logs::list))
        .route(
            "/api/v1/error-schedules",
            get(diag::logs::schedules)
                .put(diag::logs::set_schedule)
                .delete(diag::logs::remove_schedule),
        )
        .route(
            "/api/v1/devices/{id}/request-errors",
            post(diag::logs::request),
        )
        .route("/api/v1/keys", get(delivery::api::show_keys))
        .route("/api/v1/tuf/online-keys", get(delivery::tuf::online_keys))
        .route("/api/v1/tuf/roles/{role}", get(delivery::tuf::show_role))
        .route("/api/v1/jobs/{id}", get(delivery::api::show_job))
        .route(
            "/api/v1/jobs/{id}/approve",
            post(delivery::api::approve_job),
        )
        .route("/api/v1/jobs/{id}/cancel", post(delivery::api::cancel_job))
        .route("/api/v1/whoami", get(access::api::whoami))
        .route(
            "/api/v1/tokens",
            get(access::api::list_tokens).post(access::api::create_token),
        )
        .route(
            "/api/v1/tokens/{id}/revoke",
            post(access::api::revoke_token),
        )
        .route("/api/v1/audit", get(access::api::audit))
        .route("/api/v1/logout", post(access::accounts::logout))
        .route(
            "/api/v1/accounts",
            get(access::accounts::list_accounts).post(access::accounts::create_account),
        )
        .route(
            "/api/v1/accounts/{name}/disable",
            post(access::accounts::disable_account),
        )
        .route(
            "/api/v1/customers",
            get(access::api::list_customers).post(access::api::create_customer),
        )
        .layer(timed.clone())
        .layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY))
        .layer(Extension(BodyLimit(MAX_OPERATOR_BODY)));
    // Catalogs and rules are larger than other operator bodies.
    let catalog = Router::new()
        .route(
            "/api/v1/catalog",
            get(compat::api::show_catalog).post(compat::api::load_catalog),
        )
        .route(
            "/api/v1/rules",
            get(diag::api::show_rules).put(diag::api::load_rules),
        )
        .layer(timed.clone())
        .layer(DefaultBodyLimit::max(compat::api::MAX_CATALOG_BODY))
        .layer(Extension(BodyLimit(compat::api::MAX_CATALOG_BODY)));
    // Signed envelopes have their own bound.
    let signed = Router::new()
        .route("/api/v1/keys", post(delivery::api::publish_keys))
        .route("/api/v1/releases", post(delivery::api::publish_release))
        .route("/api/v1/tuf/root", post(delivery::tuf::publish_root))
        .route("/api/v1/tuf/targets", post(delivery::tuf::publish_targets))
        .route(
            "/api/v1/tuf/makers/{maker}",
            post(delivery::tuf::publish_maker),
        )
        .layer(timed.clone())
        .layer(DefaultBodyLimit::max(
            fleetcare_trust::tuf::MAX_METADATA_BYTES,
        ))
        .layer(Extension(BodyLimit(
            fleetcare_trust::tuf::MAX_METADATA_BYTES,
        )));
    // Artifact uploads are bounded by the size their release signed and by an idle timeout.
    let upload = Router::new()
        .route(
            "/api/v1/artifacts/{sha256}",
            put(delivery::api::put_artifact),
        )
        .layer(DefaultBodyLimit::disable());
    // Every operator route: authenticated, authorized by the one table, audited.
    let operator_api = Router::new()
        .merge(operator)
        .merge(catalog)
        .merge(signed)
        .merge(upload)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authz::authorize,
        ));
    // Logging in is how a session begins: outside the authorization layer, bounded like the
    // rest, and limited by the failed-authentication budget of the client's address.
    let login = Router::new()
        .route("/api/v1/login", post(access::accounts::login))
        .layer(timed.clone())
        .layer(DefaultBodyLimit::max(MAX_OPERATOR_BODY))
        .layer(Extension(BodyLimit(MAX_OPERATOR_BODY)));
    Router::new()
        .merge(device)
        .merge(operator_api)
        .merge(login)
        .merge(ui::routes(state.clone()))
        .route("/healthz", get(healthz))
        // The API's description is public, like the API's documentation.
        .route("/api/v1/openapi.json", get(openapi::openapi))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound("this endpoint".into()) })
        .with_state(state.clone())
        .layer(TraceLayer::new_for_http())
        // Outside the trace: while the disk is full, devices retrying their writes are
        // counted in /metrics, not logged one by one.
        .layer(middleware::from_fn_with_state(state, disk_full))
}

/// A request that takes longer than the configured timeout, body included, is answered 408.
pub(crate) async fn request_timeout(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(st.settings.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            st.metrics.rejected("timeout");
            ApiError::Timeout(st.settings.request_timeout).into_response()
        }
    }
}

/// While the disk is full, a write is refused before it starts (see `disk.rs`); a write that
/// fails for want of space makes the disk count as full.
async fn disk_full(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.disk.is_full() && !crate::disk::allowed_when_full(req.method(), req.uri().path()) {
        st.metrics.writes_refused_disk_full.inc();
        return ApiError::DiskFull.into_response();
    }
    let resp = next.run(req).await;
    if resp
        .extensions()
        .get::<crate::error::DiskFullHit>()
        .is_some()
    {
        st.disk.hit();
    }
    resp
}

async fn healthz(State(st): State<AppState>) -> (StatusCode, Json<Health>) {
    let stopping = *st.shutdown.borrow();
    let status = if stopping {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(Health {
            status: if stopping {
                "shutting_down"
            } else if st.disk.is_full() {
                "disk_full"
            } else {
                "ok"
            }
            .to_owned(),
            disk_free_bytes: Some(st.disk.free_bytes()).filter(|f| *f != u64::MAX),
            store: st.store.backend().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
    )
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    st.metrics.observe_group_commits(st.store.group_commits());
    st.metrics.observe_process();
    // Read when scraped, as `/health` reads it: a write that failed for want of space marks
    // the disk full between two of the watch's looks.
    st.metrics.disk_full.set(i64::from(st.disk.is_full()));
    st.metrics
        .disk_free_bytes
        .set(i64::try_from(st.disk.free_bytes()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
}
