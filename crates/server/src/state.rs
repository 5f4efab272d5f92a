//! What every handler shares ([`AppState`]), assembled in one place from the config.

use crate::*;
use std::sync::Arc;
use std::time::Duration;

use fleetcare_core::clock::Clock;
use fleetcare_store::Store;
use tokio::sync::watch;

use crate::access::credentials::CredentialCache;
use crate::ctx::Ctx;
use crate::devices::hub::Hub;
use crate::devices::report::AfterReport;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// How long a cached device credential is trusted without asking the store; a revocation on
/// another instance takes effect here within this time.
pub const CREDENTIAL_TTL_MS: i64 = 10_000;
/// Cached device credentials at most (a few hundred bytes each; expired ones go within 20 s).
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
    /// Operating history: days of raw points, days of daily rollups.
    pub operating_raw_days: u64,
    pub operating_keep_days: u64,
    /// The center's address as people and DDI clients reach it, when configured.
    pub public_url: Option<String>,
    /// A DDI client's poll interval when its device has no reporting interval.
    pub ddi_poll_s: u64,
}

/// What every handler shares: the engines' [`Ctx`] (reached through `Deref`: `st.store`,
/// `st.devices`…) and what serving requests needs besides. One `Arc`: axum clones the state
/// for every extractor and layer of every request, and a clone is one atomic increment
/// (cloning the handles one by one was 10 % of the center's CPU under B1).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The handles behind [`AppState`].
pub struct Shared {
    /// The narrow handles, as every engine gets them.
    pub ctx: Ctx,
    pub compat: Arc<compat::Compat>,
    pub diag: Arc<diag::Diag>,
    pub rollouts: Arc<rollout::Rollouts>,
    /// The dashboard's short-lived summaries.
    pub ui: Arc<ui::Cache>,
    pub settings: Arc<Settings>,
    /// Artifact bytes, content-addressed.
    pub artifacts: Arc<delivery::artifacts::Artifacts>,
    /// Each device's request budget (429 when spent).
    pub device_limits: Arc<RateLimiter<fleetcare_store::DeviceKey>>,
    /// Each client address's budget of failed authentications.
    pub auth_failures: Arc<RateLimiter<std::net::IpAddr>>,
    /// Whose forwarded headers are believed.
    pub proxies: Arc<access::peer::TrustedProxies>,
    /// Tenant ids by name, for client certificates (which name their tenant).
    pub tenant_ids:
        Arc<std::sync::Mutex<std::collections::HashMap<String, fleetcare_store::TenantId>>>,
    /// Who reacts to a stored report, in order (see `devices::report`).
    pub after_report: Arc<[Arc<dyn AfterReport>]>,
    /// Notifications: webhooks and e-mail from the outbox.
    pub notify: Arc<notify::Notifier>,
    /// Retention: the pruner's walk over the fleet.
    pub pruner: Arc<crate::retention::Pruner>,
    /// Whether the store was restored with error-log watermarks to move over their gaps: 0
    /// not known yet, 1 yes, 2 no (see `diag::logs::take_batch`).
    pub restored_watermarks: Arc<std::sync::atomic::AtomicU8>,
    /// The data directory's disk: writes are refused while it is full.
    pub disk: Arc<crate::disk::DiskWatch>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::ops::Deref for Shared {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
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
        let metrics = Arc::new(Metrics::new());
        let artifact_bytes = metrics.artifact_bytes.clone();
        let devices = cluster::Devices {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            hub: Arc::new(Hub::new(clock.clone(), poll_grace_ms)),
            cluster: Arc::new(cluster::Cluster::new(store.is_shared())),
            mqtt: Arc::default(),
            credentials: Arc::new(CredentialCache::new(
                CREDENTIAL_TTL_MS,
                CREDENTIAL_CACHE_ENTRIES,
            )),
        };
        let ctx = Ctx::new(crate::ctx::Handles {
            store,
            clock,
            metrics,
            devices: devices.clone(),
            events: Arc::new(cluster::events::Events::default()),
            shutdown: rx,
        });
        let compat = Arc::new(compat::Compat::new());
        let diag = Arc::new(diag::Diag::new(compat.clone()));
        let rollouts = Arc::new(rollout::Rollouts::new(compat.clone()));
        // After a report is durable, in this order: the rollout engine looks at a changed
        // device again; the other instances' fleet indexes follow; operating info is judged;
        // supplies running out open troubles (and new ones resolve them); the hub wakes whoever
        // waits for the report; the dashboard's live pages are told.
        let after_report: Arc<[Arc<dyn AfterReport>]> = Arc::new([
            rollouts.clone() as Arc<dyn AfterReport>,
            Arc::new(cluster::FollowStructure(devices.clone())),
            Arc::new(diag::JudgeOperating {
                ctx: ctx.clone(),
                diag: diag.clone(),
            }),
            Arc::new(life::SupplyWatch { ctx: ctx.clone() }),
            devices.hub.clone(),
            ctx.events.clone(),
        ]);
        let state = Shared {
            ctx,
            compat,
            diag,
            rollouts,
            ui: Arc::new(ui::Cache::default()),
            settings: Arc::new(Settings {
                push_idle_timeout: config.push_idle_timeout,
                request_timeout: config.request_timeout,
                header_read_timeout: config.header_read_timeout,
                device_client_cert: config.device_client_cert,
                tenant: config.tenant.clone(),
                operating_raw_days: config.operating_raw_days,
                operating_keep_days: config.operating_keep_days,
                public_url: config.public_url.clone(),
                ddi_poll_s: config.ddi_poll_s,
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
            artifacts: Arc::new(
                delivery::artifacts::Artifacts::new(
                    config
                        .artifact_dir
                        .clone()
                        .unwrap_or_else(|| config.data_dir.join("artifacts")),
                    config.artifact_cache_bytes,
                )
                .counting(artifact_bytes),
            ),
            after_report,
            notify: Arc::new(notify::Notifier::new(config)),
            pruner: Arc::default(),
            restored_watermarks: Arc::default(),
            disk: Arc::new(crate::disk::DiskWatch::new(
                config.data_dir.clone(),
                config.disk_reserve_bytes,
            )),
        };
        (AppState(Arc::new(state)), tx)
    }
}
