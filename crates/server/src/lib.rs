//! The Fleetcare monitoring center: the device protocol (`/device/v1/`), the operator API
//! (`/api/v1/`), `/healthz` and `/metrics`, over one store.
//!
//! [`app`] builds the whole router from an [`AppState`] (tests drive it without sockets);
//! [`Center::start`] opens the store, bootstraps the data dir, binds, and serves until
//! [`Center::stop`], which shuts down gracefully: no new connections, push channels closed
//! with "going away", long polls answered, in-flight requests finished, the store closed.

pub mod access;
pub mod bootstrap;
pub mod cluster;
pub mod compat;
pub mod config;
pub mod delivery;
pub mod devices;
pub mod diag;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod operator;
pub mod ratelimit;
pub mod rollout;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use fleetcare_core::clock::{Clock, SystemClock};
use fleetcare_core::limits::{MAX_DEVICE_BODY, MAX_OPERATOR_BODY};
use fleetcare_store::{Store, StoreError};
use fleetcare_wire::operator::Health;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;

pub use crate::config::{LogFormat, ServerConfig};
use crate::access::credentials::CredentialCache;
use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::devices::hub::Hub;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// How long a cached device credential is trusted without asking the store; a revocation on
/// another instance takes effect here within this time.
pub const CREDENTIAL_TTL_MS: i64 = 10_000;
/// Cached device credentials at most (about 150 bytes each).
pub const CREDENTIAL_CACHE_ENTRIES: usize = 1_000_000;

/// Settings the handlers read (from [`ServerConfig`]).
#[derive(Debug, Clone)]
pub struct Settings {
    pub push_idle_timeout: Duration,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub device_client_cert: config::ClientCert,
    /// The center's own tenant (logins name no other by default).
    pub tenant: String,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub hub: Arc<Hub>,
    /// This instance among the others on a shared store.
    pub cluster: Arc<cluster::Cluster>,
    pub compat: Arc<compat::Compat>,
    pub diag: Arc<diag::Diag>,
    pub rollouts: Arc<rollout::Rollouts>,
    /// Change notices for the dashboard's live pages.
    pub events: Arc<cluster::events::Events>,
    /// The dashboard's short-lived summaries.
    pub ui: Arc<ui::Cache>,
    pub credentials: Arc<CredentialCache>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    /// Artifact bytes, content-addressed.
    pub artifacts: Arc<delivery::Artifacts>,
    /// Each device's request budget (429 when spent).
    pub device_limits: Arc<RateLimiter<fleetcare_store::DeviceKey>>,
    /// Each client address's budget of failed authentications.
    pub auth_failures: Arc<RateLimiter<std::net::IpAddr>>,
    /// Whose forwarded headers are believed.
    pub proxies: Arc<access::peer::TrustedProxies>,
    /// Tenant ids by name, for client certificates (which name their tenant).
    pub tenant_ids:
        Arc<std::sync::Mutex<std::collections::HashMap<String, fleetcare_store::TenantId>>>,
    /// The link to the MQTT broker, where `mqtt_url` is set (once connected at start).
    pub mqtt: Arc<std::sync::OnceLock<Arc<devices::mqtt::Mqtt>>>,
    /// Becomes `true` when the center shuts down: push channels close, long polls answer.
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// State over `store`, and the sender that starts a shutdown.
    pub fn new(
        store: Store,
        config: &ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> (AppState, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let poll_grace_ms = i64::try_from(config.poll_grace.as_millis()).unwrap_or(i64::MAX);
        let state = AppState {
            cluster: Arc::new(cluster::Cluster::new(store.is_shared())),
            store,
            hub: Arc::new(Hub::new(clock.clone(), poll_grace_ms)),
            compat: Arc::new(compat::Compat::new()),
            diag: Arc::new(diag::Diag::new()),
            rollouts: Arc::new(rollout::Rollouts::default()),
            events: Arc::new(cluster::events::Events::default()),
            ui: Arc::new(ui::Cache::default()),
            credentials: Arc::new(CredentialCache::new(
                CREDENTIAL_TTL_MS,
                CREDENTIAL_CACHE_ENTRIES,
            )),
            metrics: Arc::new(Metrics::new()),
            clock,
            settings: Arc::new(Settings {
                push_idle_timeout: config.push_idle_timeout,
                request_timeout: config.request_timeout,
                header_read_timeout: config.header_read_timeout,
                device_client_cert: config.device_client_cert,
                tenant: config.tenant.clone(),
            }),
            device_limits: Arc::new(RateLimiter::new(
                config.device_rate_per_s,
                config.device_burst,
            )),
            auth_failures: Arc::new(RateLimiter::per_minute(config.auth_failures_per_min)),
            tenant_ids: Arc::default(),
            // The config was checked when it was read.
            proxies: Arc::new(
                access::peer::TrustedProxies::parse(&config.trusted_proxies).unwrap_or_default(),
            ),
            artifacts: Arc::new(delivery::Artifacts::new(
                config
                    .artifact_dir
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("artifacts")),
                config.artifact_cache_bytes,
            )),
            mqtt: Arc::default(),
            shutdown: rx,
        };
        (state, tx)
    }
}

/// Device requests (reports, error batches, enrollments, job status) processed at once.
pub const DEVICE_REQUESTS_IN_FLIGHT: usize = 1024;

/// The whole HTTP surface of the center.
pub fn app(state: AppState) -> Router {
    let timed = middleware::from_fn_with_state(state.clone(), request_timeout);
    let device = Router::new()
        .route("/device/v1/enroll", post(devices::protocol::enroll))
        .route("/device/v1/reports", post(devices::protocol::report))
        .route("/device/v1/self", get(devices::protocol::whoami))
        .route("/device/v1/credential", post(devices::protocol::rotate_credential))
        .route("/device/v1/compat", get(compat::api::own_compat))
        .route("/device/v1/about", get(diag::own_about))
        .route("/device/v1/settings", get(diag::own_settings))
        .route("/device/v1/jobs", get(delivery::device_jobs))
        .route(
            "/device/v1/notifications",
            get(compat::api::own_notifications),
        )
        .route("/device/v1/errors", post(diag::logs::upload))
        .route("/device/v1/jobs/{id}/status", post(delivery::job_status))
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
        .route("/device/v1/artifacts/{sha256}", get(delivery::get_artifact))
        // Long polls and push channels bound themselves.
        .route("/device/v1/push", get(devices::protocol::push))
        .route("/device/v1/poll", get(devices::protocol::poll))
        .layer(DefaultBodyLimit::max(MAX_DEVICE_BODY))
        .layer(Extension(BodyLimit(MAX_DEVICE_BODY)));
    let operator = Router::new()
        .route("/api/v1/devices", get(operator::list_devices))
        .route("/api/v1/devices/{id}", get(operator::show_device))
        .route(
            "/api/v1/devices/{id}/history",
            get(operator::device_history),
        )
        .route(
            "/api/v1/devices/{id}/request-report",
            post(operator::request_report),
        )
        .route(
            "/api/v1/devices/{id}/report-interval",
            put(operator::set_report_interval),
        )
        .route("/api/v1/devices/{id}/revoke", post(operator::revoke_device))
        .route(
            "/api/v1/devices/{id}/rotate-credential",
            post(operator::rotate_credential),
        )
        .route(
            "/api/v1/devices/{id}/allow-reenroll",
            post(operator::allow_reenroll),
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
        .route("/api/v1/troubles", get(diag::list_troubles))
        .route("/api/v1/rollouts", get(rollout::list).post(rollout::create))
        .route("/api/v1/rollouts/{id}", get(rollout::show))
        .route("/api/v1/rollouts/{id}/devices", get(rollout::devices))
        .route("/api/v1/rollouts/{id}/approve", post(rollout::approve))
        .route("/api/v1/rollouts/{id}/pause", post(rollout::pause))
        .route("/api/v1/rollouts/{id}/resume", post(rollout::resume))
        .route("/api/v1/rollouts/{id}/abort", post(rollout::abort))
        .route("/api/v1/sites", get(rollout::sites))
        .route("/api/v1/sites/{name}", put(rollout::put_site))
        .route("/api/v1/devices/{id}/labels", put(rollout::put_labels))
        .route("/api/v1/troubles/{id}", get(diag::show_trouble))
        .route("/api/v1/troubles/{id}/ack", post(diag::ack_trouble))
        .route("/api/v1/troubles/{id}/resolve", post(diag::resolve_trouble))
        .route("/api/v1/devices/{id}/about", get(diag::device_about))
        .route(
            "/api/v1/compat/policy",
            get(compat::api::get_policy).put(compat::api::set_policy),
        )
        .route(
            "/api/v1/jobs",
            get(compat::api::list_jobs).post(delivery::create_job),
        )
        .route("/api/v1/releases", get(delivery::list_releases))
        .route("/api/v1/devices/{id}/errors", get(diag::logs::list))
        .route(
            "/api/v1/error-schedules",
            get(diag::logs::schedules)
                .put(diag::logs::set_schedule)
                .delete(diag::logs::remove_schedule),
        )
        .route("/api/v1/devices/{id}/request-errors", post(diag::logs::request))
        .route("/api/v1/keys", get(delivery::show_keys))
        .route("/api/v1/jobs/{id}", get(compat::api::show_job))
        .route("/api/v1/jobs/{id}/approve", post(compat::api::approve_job))
        .route("/api/v1/jobs/{id}/cancel", post(compat::api::cancel_job))
        .route("/api/v1/whoami", get(access::api::whoami))
        .route(
            "/api/v1/tokens",
            get(access::api::list_tokens).post(access::api::create_token),
        )
        .route("/api/v1/tokens/{id}/revoke", post(access::api::revoke_token))
        .route("/api/v1/audit", get(access::api::audit))
        .route("/api/v1/logout", post(access::session::logout))
        .route(
            "/api/v1/accounts",
            get(access::session::list_accounts).post(access::session::create_account),
        )
        .route(
            "/api/v1/accounts/{name}/disable",
            post(access::session::disable_account),
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
        .route("/api/v1/rules", get(diag::show_rules).put(diag::load_rules))
        .layer(timed.clone())
        .layer(DefaultBodyLimit::max(compat::api::MAX_CATALOG_BODY))
        .layer(Extension(BodyLimit(compat::api::MAX_CATALOG_BODY)));
    // Signed envelopes have their own bound.
    let signed = Router::new()
        .route("/api/v1/keys", post(delivery::publish_keys))
        .route("/api/v1/releases", post(delivery::publish_release))
        .layer(timed.clone())
        .layer(DefaultBodyLimit::max(delivery::MAX_ENVELOPE_BODY))
        .layer(Extension(BodyLimit(delivery::MAX_ENVELOPE_BODY)));
    // Artifact uploads are bounded by the size their release signed and by an idle timeout.
    let upload = Router::new()
        .route("/api/v1/artifacts/{sha256}", put(delivery::put_artifact))
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
        .route("/api/v1/login", post(access::session::login))
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
        .route("/api/v1/openapi.json", get(operator::openapi))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound("this endpoint".into()) })
        .with_state(state)
        .layer(TraceLayer::new_for_http())
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
            status: if stopping { "shutting_down" } else { "ok" }.to_owned(),
            store: st.store.backend().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
    )
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    st.metrics.observe_group_commits(st.store.group_commits());
    st.metrics.observe_process();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
}

/// Why the center could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("preparing the data dir: {0}")]
    Bootstrap(String),
    #[error("listening on {addr}: {reason}")]
    Bind {
        addr: SocketAddr,
        reason: std::io::Error,
    },
    #[error(
        "another center{} is using {}: stop it first, or give this one a data dir of its own (--data-dir)",
        pid.map_or(String::new(), |p| format!(" (pid {p})")),
        dir.display()
    )]
    InUse {
        dir: std::path::PathBuf,
        pid: Option<u32>,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// A running center.
pub struct Center {
    /// The address it listens on (with the real port when the config said 0).
    pub addr: SocketAddr,
    /// Whether it serves TLS.
    pub tls: bool,
    pub boot: bootstrap::Bootstrap,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    sweeper: tokio::task::JoinHandle<()>,
    /// Beats on a shared store; leaves the cluster at shutdown (before the store closes).
    cluster: Option<tokio::task::JoinHandle<()>>,
    /// The data dir's lock, released when the center is stopped or dropped.
    _lock: fleetcare_fs::DirLock,
}

impl std::fmt::Debug for Center {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Center")
            .field("addr", &self.addr)
            .field("store", &self.state.store)
            .finish_non_exhaustive()
    }
}

impl Center {
    /// Open the store (migrating it), bootstrap the data dir, bind and serve.
    pub async fn start(config: &ServerConfig) -> Result<Center, ServeError> {
        Center::start_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(
        config: &ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Center, ServeError> {
        fleetcare_fs::create_private_dir(&config.data_dir).map_err(|e| {
            ServeError::Bootstrap(format!("creating {}: {e}", config.data_dir.display()))
        })?;
        // One center per data dir: two on one embedded store would each believe they hold
        // every lease, and run the background engines twice.
        let lock = fleetcare_fs::DirLock::acquire(&config.data_dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                ServeError::InUse {
                    dir: config.data_dir.clone(),
                    pid: fleetcare_fs::DirLock::holder(&config.data_dir)
                        .ok()
                        .flatten()
                        .and_then(|h| h.pid),
                }
            } else {
                ServeError::Bootstrap(format!("locking {}: {e}", config.data_dir.display()))
            }
        })?;
        let store = match &config.database_url {
            Some(url) => Store::open_postgres(url).await?,
            None => Store::open_sqlite(&config.data_dir).await?,
        };
        let tls = match &config.tls {
            None => None,
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                fleetcare_tls::server_config(
                    &t.cert_file,
                    &t.key_file,
                    t.client_ca_file.as_deref(),
                )
                .map_err(|e| ServeError::Tls(e.to_string()))?,
            )),
        };
        let boot = bootstrap::run(&store, &config.data_dir, &config.tenant, clock.now_ms()).await?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|reason| ServeError::Bind {
                addr: config.listen,
                reason,
            })?;
        let addr = listener.local_addr().map_err(ServeError::Serve)?;
        let tls_on = tls.is_some();
        let (state, shutdown) = AppState::new(store, config, clock);
        let router = app(state.clone());
        let mut stop = state.shutdown.clone();
        let header_timeout = state.settings.header_read_timeout;
        let server = tokio::spawn(async move {
            serve(listener, router, tls, header_timeout, async move {
                stopped(&mut stop).await
            })
            .await
        });
        if let Some(m) = &config.mqtt {
            devices::mqtt::start(&state, m).await.map_err(ServeError::Mqtt)?;
        }
        let cluster = cluster::start(&state, addr.to_string()).await;
        let sweeper = tokio::spawn(sweep(state.clone()));
        tokio::spawn(state.compat.clone().start(state.clone()));
        tokio::spawn(state.compat.clone().run_worker(state.clone()));
        tokio::spawn(state.diag.clone().start(state.clone()));
        tokio::spawn(state.diag.clone().run_worker(state.clone()));
        tokio::spawn(state.rollouts.clone().run(state.clone()));
        cluster::bus::start(&state).await;
        tracing::info!(%addr, store = state.store.backend(), tls = tls_on, "center listening");
        Ok(Center {
            addr,
            tls: tls_on,
            boot,
            state,
            shutdown,
            server,
            sweeper,
            cluster,
            _lock: lock,
        })
    }

    /// `http://addr`, or `https://localhost:port` when the center serves TLS (the name its
    /// certificate is normally issued for on a test machine).
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Shut down gracefully and close the store.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        self.sweeper.abort();
        let served = match self.server.await {
            Ok(r) => r.map_err(ServeError::Serve),
            Err(e) => Err(ServeError::Serve(std::io::Error::other(e))),
        };
        if let Some(c) = self.cluster {
            // Leaving takes one write; a store that does not answer must not hold the stop.
            let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
        }
        let closed = self.state.store.close().await.map_err(ServeError::from);
        tracing::info!("center stopped");
        served.and(closed)
    }
}

/// Accept connections until `stop`, then let open requests finish. Each connection shares
/// the router (an `Arc`), and must finish its TLS handshake and send its request head within
/// `header_timeout` (a client that trickles them, slowloris, is cut off; bodies are bounded
/// by the request timeout). Every request carries its connection's [`access::peer::Peer`], and over
/// mutual TLS the [`access::peer::CertDevice`] its certificate names.
async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioTimer;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Every connection's task holds a sender: once all are gone, every connection is over.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            builder: builder.clone(),
            router: router.clone(),
            peer: access::peer::Peer(addr),
            closing: closing.clone(),
        };
        let done = done_tx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => conn.serve(stream, None, false).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| fleetcare_tls::device_name(c))
                                .map(|(tenant, device_id)| access::peer::CertDevice { tenant, device_id });
                            conn.serve(stream, cert, true).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                }
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(done_tx);
    let _ = done_rx.recv().await;
    Ok(())
}

/// One accepted connection, about to be served.
struct Conn {
    builder: hyper::server::conn::http1::Builder,
    router: Router,
    peer: access::peer::Peer,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Conn {
    async fn serve<I>(mut self, io: I, cert: Option<access::peer::CertDevice>, tls: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use tower::ServiceExt;
        let (router, peer) = (self.router, self.peer);
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer);
                if tls {
                    req.extensions_mut().insert(access::peer::Tls);
                }
                if let Some(cert) = &cert {
                    req.extensions_mut().insert(cert.clone());
                }
                router.clone().oneshot(req)
            });
        let conn = self
            .builder
            .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            () = async { let _ = self.closing.wait_for(|c| *c).await; } => {
                // Let the request under way finish, then close.
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// Resolves once the center is shutting down.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Every few seconds: forget devices that stopped polling; and, on the instance that runs the
/// background engines, expire jobs, ask for scheduled error logs, resolve quiet troubles and
/// take up fleet re-judgements that an instance's death cut short.
async fn sweep(st: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let gone = st.hub.sweep();
        cluster::left(&st, &gone).await;
        if st.cluster.leads() {
            delivery::expire_jobs(&st).await;
            diag::logs::run_schedules(&st).await;
            st.diag.resolve_quiet(&st).await;
            st.compat.clone().rejudge_unfinished(&st).await;
        }
    }
}
