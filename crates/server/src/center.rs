//! A running center: the data dir's lock, the store, the listener and the background
//! engines, started and stopped in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use fleetcare_core::clock::{Clock, SystemClock};
use fleetcare_store::{Store, StoreError};
use tokio::sync::watch;

use crate::*;

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
        if let Err(e) = fleetcare_fs::raise_descriptor_limit() {
            tracing::warn!(error = %e, "could not raise the descriptor limit");
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|reason| ServeError::Bind {
                addr: config.listen,
                reason,
            })?;
        let addr = listener.local_addr().map_err(ServeError::Serve)?;
        let tls_on = tls.is_some();
        let (state, shutdown) = AppState::new(store, config, clock);
        state
            .notify
            .configure_mail(config)
            .map_err(|e| ServeError::Bootstrap(format!("the SMTP relay: {e}")))?;
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
            devices::mqtt::start(&state, m)
                .await
                .map_err(ServeError::Mqtt)?;
        }
        let cluster = cluster::listen::start(&state, addr.to_string()).await;
        let sweeper = tokio::spawn(sweep(state.clone()));
        tokio::spawn(state.disk.clone().run(state.ctx.clone()));
        tokio::spawn(state.compat.clone().start(state.ctx.clone()));
        tokio::spawn(state.compat.clone().run_worker(state.ctx.clone()));
        tokio::spawn(state.diag.clone().start(state.ctx.clone()));
        tokio::spawn(state.diag.clone().run_worker(state.ctx.clone()));
        tokio::spawn(state.rollouts.clone().run(state.ctx.clone()));
        tokio::spawn(notify::run(
            state.ctx.clone(),
            state.notify.clone(),
            state.rollouts.clone(),
        ));
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
        let mut conn = Conn {
            builder: builder.clone(),
            router: router.clone(),
            peer: access::peer::Peer(addr),
            closing: closing.clone(),
        };
        let done = done_tx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let rest = crate::sendfile::serve(
                        stream,
                        &conn.router,
                        conn.peer,
                        header_timeout,
                        &mut conn.closing,
                    )
                    .await;
                    if let Some(rest) = rest {
                        // Boxed, as is the TLS branch: the task holds what its connection
                        // uses, not hyper's and TLS's state beside the downloads' (6.5 KB).
                        Box::pin(conn.serve(rest, None, false)).await;
                    }
                }
                Some(acceptor) => {
                    Box::pin(async move {
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let cert = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .and_then(|c| fleetcare_tls::device_name(c))
                                    .map(|(tenant, device_id)| access::peer::CertDevice {
                                        tenant,
                                        device_id,
                                    });
                                conn.serve(stream, cert, true).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%addr, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                        }
                    })
                    .await
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
    let mut rounds: u64 = 0;
    let mut meter_reads_asked = std::collections::HashSet::new();
    loop {
        tick.tick().await;
        let gone = st.devices.hub.sweep();
        st.devices.left(&gone).await;
        if let Some(retired) = st
            .devices
            .credentials
            .retire(st.clock.now_ms())
            .filter(|g| !g.is_empty())
        {
            tokio::task::spawn_blocking(move || drop(retired));
        }
        if st.devices.cluster.leads() {
            delivery::expire_jobs(&st).await;
            if rounds.is_multiple_of(60) {
                delivery::tuf::refresh_all(&st).await;
            }
            diag::logs::run_schedules(&st).await;
            st.diag.resolve_quiet(&st).await;
            st.compat.clone().rejudge_unfinished(&st).await;
            crate::life::reads::run_schedule(&st, &mut meter_reads_asked).await;
            notify::sweep(&st.ctx, &st.notify, rounds.is_multiple_of(720)).await;
            st.pruner.round(&st.ctx).await;
            if rounds.is_multiple_of(12) {
                crate::life::prune(
                    &st,
                    st.settings.operating_raw_days,
                    st.settings.operating_keep_days,
                )
                .await;
            }
        }
        rounds = rounds.wrapping_add(1);
    }
}
