//! The agent's main loop.
//!
//! One task owns the data dir and decides; the push channel runs beside it and reports
//! events. The loop reacts to:
//! - the channel coming up → a `connect` report;
//! - a command → a `request` report, or a new reporting interval;
//! - the periodic deadline → a `periodic` report;
//! - the source's fingerprint changing (checked every `watch_interval`, or at once when an
//!   integrator calls [`AgentHandle::structure_changed`]) → a `change` report;
//! - a credential the center no longer accepts → a new enrollment (presenting the old one).
//!
//! Every report is validated, numbered, written to the outbox, and then the outbox is
//! flushed in order; what the center does not acknowledge stays queued and is retried with
//! backoff, so the agent works offline and catches up when the center is back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetcare_trust::Root;

use fleetcare_core::structure::validate_report;
use fleetcare_wire::Trigger;
use fleetcare_wire::device::{Command, EnrollRequest, StructureReport};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::backoff::{Backoff, Complaint};
use crate::channel::{Channel, ChannelEvent};
use crate::client::{CenterClient, ClientError};
use crate::config::AgentConfig;
use crate::embed::{NoObserver, Observer};
use crate::journal::Journal;
use crate::local::{Credential, Local, LocalError, Status};
use crate::source::{Snapshot, StructureSource};
use crate::update::command::CommandDriver;
use crate::update::download::Limits;
use crate::update::flow::{Phase, Updater};
use crate::update::tuf::Anchor;
use crate::update::{AbDriver, UnitInstaller};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Local(#[from] LocalError),
    #[error(
        "this agent is enrolled as device {enrolled}, but its structure source now names \
         device {named}; a data dir belongs to one device (use another data dir for another device)"
    )]
    IdentityChanged { enrolled: String, named: String },
    #[error(
        "not enrolled yet and no enrollment key configured: set `enrollment_key` or \
         `enrollment_key_file` in the agent config"
    )]
    NoEnrollmentKey,
    #[error("the root of trust {path}: {detail}")]
    TrustRoot { path: String, detail: String },
    #[error("setting up the installer of unit {slot}: {detail}")]
    Installer { slot: String, detail: String },
    #[error("{0}")]
    Journal(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// The unit installers, by slot.
pub type Installers = Arc<BTreeMap<String, Arc<dyn UnitInstaller>>>;

/// The status file is rewritten for a new acknowledgement at most this often.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The installers the config asks for, for the units the device has.
fn installers(cfg: &AgentConfig, snap: &Snapshot) -> Result<Installers, AgentError> {
    let mut map: BTreeMap<String, Arc<dyn UnitInstaller>> = BTreeMap::new();
    for u in &snap.units {
        let err = |e: crate::update::InstallError| AgentError::Installer {
            slot: u.slot.clone(),
            detail: e.detail,
        };
        if cfg.command_slots.contains(&u.slot) {
            let books = cfg.data_dir.join("update").join("units");
            let d = CommandDriver::new(&books, &u.slot, cfg.commands.clone()).map_err(err)?;
            map.insert(u.slot.clone(), Arc::new(d));
        } else if let Some(dir) = &cfg.units_dir {
            let health = (!cfg.health_command.is_empty()).then(|| cfg.health_command.clone());
            let d = AbDriver::new(dir, &u.slot)
                .map_err(err)?
                .with_health_command(health);
            map.insert(u.slot.clone(), Arc::new(d));
        }
    }
    Ok(Arc::new(map))
}

/// The provisioned root of trust: today's unsigned `root.json`, or a signed TUF root.
fn load_root(cfg: &AgentConfig) -> Result<Option<Anchor>, AgentError> {
    let Some(path) = &cfg.trust_root else {
        return Ok(None);
    };
    let err = |detail: String| AgentError::TrustRoot {
        path: path.display().to_string(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if fleetcare_trust::tuf::parse_envelope(&bytes)
        .is_ok_and(|e| e.payload_type == fleetcare_trust::tuf::TUF_TYPE)
    {
        fleetcare_trust::tuf::TrustedSet::new(&bytes, SystemTime::now())
            .map_err(|e| err(format!("the signed root: {e}")))?;
        return Ok(Some(Anchor::Signed(bytes)));
    }
    Root::from_json(&bytes)
        .map(|r| Some(Anchor::Unsigned(r)))
        .map_err(|e| err(e.to_string()))
}

/// Lets an integrator's code talk to a running agent.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    nudge: Arc<Notify>,
    errors: Arc<Notify>,
}

impl AgentHandle {
    /// The structure may have changed: check the source now instead of at the next tick.
    pub fn structure_changed(&self) {
        self.nudge.notify_one();
    }

    /// Events were written to the journal: look at the sending triggers now instead of at
    /// the next check.
    pub fn errors_logged(&self) {
        self.errors.notify_one();
    }
}

/// What a host program hands in instead of what a standalone agent makes for itself.
struct Embedding {
    memory: bool,
    client: Option<CenterClient>,
    installers: Option<Installers>,
    journal: Option<Arc<Journal>>,
    observer: Arc<dyn Observer>,
    /// Why this device cannot install software, when the host program knows better than the
    /// config (a printer behind the LAN proxy).
    cannot_install: Option<String>,
}

/// A device agent over a structure source.
pub struct Agent<S: StructureSource> {
    config: AgentConfig,
    source: Arc<S>,
    nudge: Arc<Notify>,
    errors_nudge: Arc<Notify>,
    embed: Embedding,
}

impl<S: StructureSource> std::fmt::Debug for Agent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("center_url", &self.config.center_url)
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl<S: StructureSource> Agent<S> {
    pub fn new(config: AgentConfig, source: S) -> Agent<S> {
        Agent {
            config,
            source: Arc::new(source),
            nudge: Arc::new(Notify::new()),
            errors_nudge: Arc::new(Notify::new()),
            embed: Embedding {
                memory: false,
                client: None,
                installers: None,
                journal: None,
                observer: Arc::new(NoObserver),
                cannot_install: None,
            },
        }
    }

    /// Keep the credential, state, outbox and error journal in memory instead of the data
    /// dir (a virtual device: nothing survives the process; no local API). The data dir is
    /// then used only by installs, while a job runs.
    pub fn in_memory(mut self) -> Agent<S> {
        self.embed.memory = true;
        self
    }

    /// Use this client (and its connection pool) for the device protocol.
    pub fn with_client(mut self, client: CenterClient) -> Agent<S> {
        self.embed.client = Some(client);
        self
    }

    /// Install through these unit installers instead of the ones the config names.
    pub fn with_installers(mut self, installers: Vec<Arc<dyn UnitInstaller>>) -> Agent<S> {
        self.embed.installers = Some(Arc::new(
            installers
                .into_iter()
                .map(|i| (i.slot().to_owned(), i))
                .collect(),
        ));
        self
    }

    /// Use this error journal (its boot epoch as it is) instead of opening the data dir's.
    pub fn with_journal(mut self, journal: Arc<Journal>) -> Agent<S> {
        self.embed.journal = Some(journal);
        self
    }

    /// This device cannot install software, for this reason (its reports say so, and the
    /// center makes no install job for it).
    pub fn cannot_install(mut self, reason: &str) -> Agent<S> {
        self.embed.cannot_install = Some(reason.to_owned());
        self
    }

    /// Tell `observer` what the agent does and how long it takes.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Agent<S> {
        self.embed.observer = observer;
        self
    }

    pub fn handle(&self) -> AgentHandle {
        AgentHandle {
            nudge: self.nudge.clone(),
            errors: self.errors_nudge.clone(),
        }
    }

    /// Run until `shutdown` becomes `true`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
        let cfg = self.config;
        let embed = self.embed;
        let observer = embed.observer.clone();
        let local = if embed.memory {
            Local::memory(cfg.outbox_max)
        } else {
            Local::open(&cfg.data_dir, cfg.outbox_max)?
        };
        let client = match embed.client.clone() {
            Some(c) => c,
            None => CenterClient::for_config(&cfg).map_err(|e| AgentError::Tls(e.to_string()))?,
        };
        let mut backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);

        let root = load_root(&cfg)?;
        let Some((snapshot, usable)) =
            identity(&self.source, &local, &cfg, &mut backoff, &mut shutdown).await?
        else {
            return Ok(());
        };
        let (token_tx, token_rx) = watch::channel(usable.as_ref().map(|c| c.device_token.clone()));
        let (events_tx, mut events) = mpsc::channel(64);
        let channel = tokio::spawn(Channel::new(&cfg, client.clone()).run(
            token_rx,
            events_tx,
            shutdown.clone(),
        ));

        let installers = match embed.installers {
            Some(i) => i,
            None => installers(&cfg, &snapshot)?,
        };
        // The error journal: a new boot epoch for every start.
        let journal = open_journal(&cfg, embed.journal, embed.memory).await?;
        let (errors_request, errors_requested) = watch::channel(None);
        // "Send now" from the device (`fleetcare-agent report` / `send-errors`, local API).
        let (report_now, mut reports_asked) = mpsc::channel::<crate::local_api::ReportNow>(4);
        let (errors_now, errors_asked) = mpsc::channel::<crate::errlog::SendNow>(4);
        let socket = if embed.memory {
            None
        } else {
            cfg.local_socket.as_ref()
        };
        let local_api = socket.map(|path| {
            start_local_api(
                path,
                journal.clone(),
                report_now,
                errors_now,
                shutdown.clone(),
            )
        });
        let errors_task = tokio::spawn(crate::errlog::run(
            journal.clone(),
            client.clone(),
            snapshot.device_id.clone(),
            cfg.errors,
            token_tx.subscribe(),
            errors_requested,
            errors_asked,
            self.errors_nudge.clone(),
            Backoff::new(cfg.backoff_initial, cfg.backoff_max),
            observer.clone(),
            shutdown.clone(),
        ));
        let install_blocked = embed
            .cannot_install
            .clone()
            .or_else(|| cannot_install(root.is_some(), &installers));
        if let Some(why) = &install_blocked {
            tracing::info!(reason = %why, "this device cannot install software; the center is told");
        }
        let jobs_nudge = Arc::new(Notify::new());
        let (legacy, signed) = match root {
            Some(Anchor::Unsigned(r)) => (Some(r), None),
            Some(Anchor::Signed(b)) => (None, Some(b)),
            None => (None, None),
        };
        let mut updater = Updater::new(
            &cfg.data_dir,
            legacy,
            installers.values().cloned().collect(),
            client.clone(),
            Limits {
                min_rate: cfg.download_min_rate,
                window: cfg.download_window,
                ..Limits::default()
            },
        );
        if let Some(b) = signed {
            updater = updater.with_signed_root(b);
        }
        let update_task = tokio::spawn(update_loop(
            updater,
            self.source.clone(),
            installers.clone(),
            token_tx.subscribe(),
            jobs_nudge.clone(),
            self.nudge.clone(),
            Backoff::new(cfg.backoff_initial, cfg.backoff_max),
            observer.clone(),
            shutdown.clone(),
        ));
        let interval = effective_interval(&cfg, &local);
        let mut r = Runner {
            journal: journal.clone(),
            errors_request,
            installers,
            install_blocked,
            jobs_nudge,
            last_fingerprint: local.state().last_fingerprint.clone(),
            last_snapshot: (snapshot, String::new()),
            last_version: None,
            token: usable.map(|c| c.device_token),
            token_tx,
            enroll_at: None,
            retry_at: None,
            next_periodic: Instant::now() + interval,
            status: Status {
                pid: std::process::id(),
                channel: "offline".into(),
                ..Status::default()
            },
            backoff,
            published: None,
            enroll_backoff: Backoff::new(cfg.backoff_initial, cfg.backoff_max),
            complaint: Complaint::new("reaching the center", cfg.center_url_hint()),
            client,
            source: self.source.clone(),
            observer,
            cfg,
            local,
        };
        if r.token.is_none() {
            r.enroll_at = Some(Instant::now());
        }
        r.flush().await?;
        r.serve(&mut events, &mut reports_asked, &self.nudge, &mut shutdown)
            .await?;
        r.status.channel = "offline".into();
        r.publish();
        let _ = channel.await;
        // An install in progress stops at its next step; its journal resumes it next start.
        update_task.abort();
        let _ = update_task.await;
        let _ = errors_task.await;
        if let Some(t) = local_api.flatten() {
            let _ = t.await;
        }
        Ok(())
    }
}

impl<S: StructureSource> Runner<S> {
    /// The agent's life once started: channel events, the periodic report, watching the
    /// structure, requests from the device itself, retries and enrollment, until shutdown.
    async fn serve(
        &mut self,
        events: &mut mpsc::Receiver<ChannelEvent>,
        reports_asked: &mut mpsc::Receiver<crate::local_api::ReportNow>,
        nudge: &Notify,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        let mut watch_tick = tokio::time::interval(self.cfg.watch_interval);
        watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    None => break,
                    Some(ChannelEvent::Up(via)) => {
                        tracing::info!(via = via.as_str(), "connected to the center");
                        self.status.channel = via.as_str().into();
                        self.observer.connected(via.as_str());
                        self.report(Trigger::Connect).await?;
                        // Jobs, settings, units out of service and notices may have changed
                        // while this device was away.
                        self.jobs_nudge.notify_one();
                        self.fetch_settings().await?;
                        self.fetch_notifications().await;
                    }
                    Some(ChannelEvent::Down(reason)) => {
                        tracing::info!(%reason, "push channel down");
                        self.observer.disconnected();
                        self.status.channel = "offline".into();
                        self.publish();
                    }
                    Some(ChannelEvent::Command(c)) => self.command(c).await?,
                    Some(ChannelEvent::Unauthorized) => self.unauthorized(),
                },
                () = tokio::time::sleep_until(self.next_periodic) => {
                    self.next_periodic = Instant::now() + effective_interval(&self.cfg, &self.local);
                    self.report(Trigger::Periodic).await?;
                }
                _ = watch_tick.tick() => {
                    self.check_for_change(false).await?;
                    self.publish();
                }
                () = nudge.notified() => self.check_for_change(true).await?,
                Some(reply) = reports_asked.recv() => {
                    let result = self.report_now().await?;
                    let _ = reply.send(result);
                }
                () = sleep_until_opt(self.retry_at) => self.flush().await?,
                () = sleep_until_opt(self.enroll_at) => self.enroll().await?,
                () = stopped(shutdown) => break,
            }
        }
        Ok(())
    }
}

/// The device's identity from its source (waiting until the source gives a valid snapshot)
/// and the stored credential if it is for this device at this center. `None` at shutdown.
async fn identity<S: StructureSource>(
    source: &Arc<S>,
    local: &Local,
    cfg: &AgentConfig,
    backoff: &mut Backoff,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<(Snapshot, Option<Credential>)>, AgentError> {
    let none: Installers = Arc::new(BTreeMap::new());
    // The device's identity comes from its source: wait for a valid snapshot.
    // Said once per distinct problem, not at every retry.
    let mut said: Option<String> = None;
    let snapshot = loop {
        match read_valid(source, &none, &[]).await {
            Ok((s, _)) => break s,
            Err(e) => {
                let text = e.to_string();
                if said.as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %e, "the structure source is not usable yet");
                    said = Some(text);
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    () = stopped(shutdown) => return Ok(None),
                }
            }
        }
    };
    backoff.reset();
    // A credential is for one device at one center.
    let credential = local.credential().cloned();
    if let Some(c) = &credential
        && c.device_id != snapshot.device_id
    {
        return Err(AgentError::IdentityChanged {
            enrolled: c.device_id.clone(),
            named: snapshot.device_id.clone(),
        });
    }
    let usable = credential.filter(|c| c.center_url == cfg.center_url);
    if usable.is_none() && cfg.enrollment_key.is_none() {
        return Err(AgentError::NoEnrollmentKey);
    }
    Ok(Some((snapshot, usable)))
}

/// The error journal: a new boot epoch for every start.
async fn open_journal(
    cfg: &AgentConfig,
    embedded: Option<Arc<Journal>>,
    memory: bool,
) -> Result<Arc<Journal>, AgentError> {
    Ok(match embedded {
        Some(j) => j,
        None if memory => {
            Arc::new(Journal::memory(cfg.journal).map_err(|e| AgentError::Journal(e.to_string()))?)
        }
        None => {
            let (dir, limits) = (cfg.data_dir.clone(), cfg.journal);
            Arc::new(
                tokio::task::spawn_blocking(move || Journal::open(&dir, limits, true))
                    .await
                    .map_err(|e| AgentError::Journal(e.to_string()))?
                    .map_err(|e| AgentError::Journal(e.to_string()))?,
            )
        }
    })
}

/// The local API on its socket; `None` (logged) if it cannot bind.
fn start_local_api(
    path: &std::path::Path,
    journal: Arc<Journal>,
    report: mpsc::Sender<crate::local_api::ReportNow>,
    errors: mpsc::Sender<crate::errlog::SendNow>,
    shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    match crate::local_api::bind(path) {
        Ok(l) => Some(tokio::spawn(crate::local_api::run(
            journal,
            crate::local_api::Control { report, errors },
            l,
            path.to_path_buf(),
            shutdown,
        ))),
        Err(e) => {
            tracing::error!(socket = %path.display(), error = %e, "the local API could not start; `fleetcare-agent log` still works");
            None
        }
    }
}

/// Why this device cannot install software, if it cannot.
fn cannot_install(has_root: bool, installers: &Installers) -> Option<String> {
    if !has_root {
        Some("no root of trust is provisioned (`trust_root` in the agent config)".into())
    } else if installers.is_empty() {
        Some("no unit has an installer (`units_dir` or `command_slots` in the agent config)".into())
    } else {
        None
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn effective_interval(cfg: &AgentConfig, local: &Local) -> Duration {
    local
        .state()
        .center_interval_s
        .map_or(cfg.report_interval, Duration::from_secs)
}

/// Read the source (on a blocking thread, unless it says its reads are cheap), with each
/// installed unit's software as its installer knows it and the units the center took out of
/// service marked so, and validate what it says, every problem at once. The snapshot and its
/// structure's fingerprint.
async fn read_valid<S: StructureSource>(
    source: &Arc<S>,
    installers: &Installers,
    out_of_service: &[(String, String)],
) -> Result<(Snapshot, String), String> {
    let mut snap = if source.cheap() {
        let mut snap = source.read().map_err(|e| e.to_string())?;
        overlay(installers, &mut snap);
        snap
    } else {
        let s = source.clone();
        let inst = installers.clone();
        tokio::task::spawn_blocking(move || {
            s.read().map(|mut snap| {
                overlay(&inst, &mut snap);
                snap
            })
        })
        .await
        .map_err(|e| format!("the structure source panicked: {e}"))?
        .map_err(|e| e.to_string())?
    };
    for u in &mut snap.units {
        if out_of_service
            .iter()
            .any(|(slot, serial)| *slot == u.slot && *serial == u.serial)
        {
            u.in_service = false;
        }
    }
    let (_, structure) = validate_report(
        &snap.device_id,
        &snap.model,
        std::mem::take(&mut snap.units),
        &snap.operating,
    )
    .and_then(|(id, s)| Ok((id, s.with_supplies(&snap.supplies)?)))
    .map_err(|e| format!("the structure is not valid: {e}"))?;
    let fingerprint = structure.fingerprint();
    snap.units = structure.into_units();
    Ok((snap, fingerprint))
}

/// Replace the software of every unit that has an installer with what its banks hold.
fn overlay(installers: &Installers, snap: &mut Snapshot) {
    for u in &mut snap.units {
        let Some(inst) = installers.get(&u.slot) else {
            continue;
        };
        match inst.software(u) {
            Ok((active, inactive)) => {
                let sw = |p: &crate::update::Installed, active: bool| fleetcare_wire::Software {
                    product: p.product.clone(),
                    maker: p.maker.clone(),
                    version: p.version.clone(),
                    active,
                };
                u.software = active
                    .iter()
                    .map(|p| sw(p, true))
                    .chain(inactive.iter().map(|p| sw(p, false)))
                    .collect();
            }
            Err(e) => tracing::warn!(slot = %u.slot, error = %e, "reading the unit's banks"),
        }
    }
}

/// Runs jobs beside the main loop: resumes a journaled job, then takes the center's offers,
/// one at a time, whenever the center says there are jobs (and every five minutes).
#[allow(clippy::too_many_arguments)]
async fn update_loop<S: StructureSource>(
    updater: Updater,
    source: Arc<S>,
    installers: Installers,
    mut token: watch::Receiver<Option<String>>,
    jobs: Arc<Notify>,
    structure_changed: Arc<Notify>,
    mut backoff: Backoff,
    observer: Arc<dyn Observer>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut first_boot = true;
    loop {
        let tok = token.borrow_and_update().clone();
        let mut retry = None;
        if let Some(tok) = tok {
            match run_once(&updater, &source, &installers, &tok, first_boot, &*observer).await {
                Ok(true) => {
                    first_boot = false;
                    backoff.reset();
                    structure_changed.notify_one();
                    continue; // there may be more
                }
                Ok(false) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(error = %e, "installing: will try again");
                    retry = Some(backoff.next_delay());
                }
            }
            first_boot = false;
        }
        let wait = retry.unwrap_or(Duration::from_secs(300));
        tokio::select! {
            () = jobs.notified() => {}
            () = tokio::time::sleep(wait) => {}
            _ = token.changed() => {}
            () = stopped(&mut shutdown) => return,
        }
    }
}

/// Finish the journaled job or take the next offer. `Ok(true)`: a job ended.
async fn run_once<S: StructureSource>(
    updater: &Updater,
    source: &Arc<S>,
    installers: &Installers,
    token: &str,
    first_boot: bool,
    observer: &dyn Observer,
) -> Result<bool, String> {
    let journal = match updater.journal().map_err(|e| e.to_string())? {
        Some(j) => j,
        None => {
            let offers = updater
                .client()
                .jobs(token)
                .await
                .map_err(|e| e.to_string())?;
            let Some(offer) = offers.jobs.first() else {
                return Ok(false);
            };
            // "Busy, later": a unit the job touches cannot take it now.
            if let Some(why) = offer
                .steps
                .iter()
                .find_map(|s| installers.get(&s.slot).and_then(|i| i.busy()))
            {
                let _ = updater
                    .client()
                    .job_status(
                        token,
                        offer.id,
                        &fleetcare_wire::delivery::JobStatus {
                            state: "busy".into(),
                            reason: None,
                            detail: Some(why.clone()),
                            bytes_done: None,
                            bytes_total: None,
                        },
                    )
                    .await;
                return Err(format!("busy, job {} later: {why}", offer.id));
            }
            let (snap, _) = read_valid(source, installers, &[]).await?;
            let paths = Updater::tuf_paths(offer);
            let tuf = if paths.is_empty() {
                None
            } else {
                Some(updater.refresh_tuf(token, &paths, SystemTime::now()).await)
            };
            let j = updater.accept(
                offer,
                offers.key_list.as_ref(),
                &snap,
                SystemTime::now(),
                tuf,
            );
            updater.begin(&j).map_err(|e| e.to_string())?;
            j
        }
    };
    let j = updater.drive(journal, token, first_boot).await;
    if j.phase != Phase::Over {
        return Err(format!("job {} is still {:?}", j.job, j.phase));
    }
    updater.report(&j, token).await?;
    if let Some(o) = &j.outcome {
        observer.job_finished(j.job, &o.state);
    }
    Ok(true)
}

struct Runner<S: StructureSource> {
    journal: Arc<Journal>,
    errors_request: watch::Sender<Option<fleetcare_wire::errors::ErrorTrigger>>,
    installers: Installers,
    /// Why this device cannot install software (`None`: it can), said in every report.
    install_blocked: Option<String>,
    jobs_nudge: Arc<Notify>,
    cfg: AgentConfig,
    source: Arc<S>,
    local: Local,
    client: CenterClient,
    observer: Arc<dyn Observer>,
    token: Option<String>,
    token_tx: watch::Sender<Option<String>>,
    /// Fingerprint of the newest report queued (the structure the center will know).
    last_fingerprint: Option<String>,
    /// The newest good snapshot and its fingerprint.
    last_snapshot: (Snapshot, String),
    /// The source's change token when it was last read.
    last_version: Option<u64>,
    enroll_at: Option<Instant>,
    retry_at: Option<Instant>,
    next_periodic: Instant,
    backoff: Backoff,
    enroll_backoff: Backoff,
    /// Why the center cannot be reached, said in the log (rate-limited).
    complaint: Complaint,
    status: Status,
    /// The status last written, and when.
    published: Option<(Instant, Status)>,
}

impl<S: StructureSource> Runner<S> {
    /// Write the status file for `fleetcare-agent status`: at once when the channel, the
    /// outbox or an error changed; a new acknowledgement alone at most every
    /// [`STATUS_EVERY`] (the change check's tick writes what is left).
    fn publish(&mut self) {
        self.status.outbox = self.local.outbox.len();
        self.status.reports_dropped = self.local.outbox.dropped();
        let same_but_acks = self.published.as_ref().is_some_and(|(_, p)| {
            Status {
                last_ack_seq: self.status.last_ack_seq,
                last_ack_at: self.status.last_ack_at.clone(),
                ..p.clone()
            } == self.status
        });
        let recent = self
            .published
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < STATUS_EVERY);
        if same_but_acks && recent {
            return;
        }
        if self
            .published
            .as_ref()
            .is_some_and(|(_, p)| *p == self.status)
        {
            return;
        }
        self.local.write_status(&self.status);
        self.published = Some((Instant::now(), self.status.clone()));
    }

    /// The source's snapshot with the units the center took out of service marked so, and
    /// its structure's fingerprint.
    async fn read(&self) -> Result<(Snapshot, String), String> {
        let (mut snap, fingerprint) = read_valid(
            &self.source,
            &self.installers,
            &self.local.state().out_of_service,
        )
        .await?;
        // Operating info the device's software recorded through the local API wins over the
        // source's, within the report's limit.
        if self.journal.has_operating() {
            let j = self.journal.clone();
            if let Ok(Ok(values)) = tokio::task::spawn_blocking(move || j.operating()).await {
                for (k, v) in values {
                    if snap.operating.len() < fleetcare_core::limits::MAX_OPERATING_ENTRIES
                        || snap.operating.contains_key(&k)
                    {
                        snap.operating.insert(k, v);
                    }
                }
            }
        }
        Ok((snap, fingerprint))
    }

    /// A fresh snapshot, or the last good one if the source cannot answer right now.
    async fn snapshot(&mut self) -> (Snapshot, String) {
        match self.read().await {
            Ok((s, fp)) => {
                self.last_snapshot = (s.clone(), fp.clone());
                (s, fp)
            }
            Err(e) => {
                tracing::warn!(error = %e, "using the last good structure");
                self.last_snapshot.clone()
            }
        }
    }

    /// Report the structure if it changed. Unless `force`d (something said it may have),
    /// a source whose change token ([`StructureSource::version`]) is the same as last time is
    /// not read at all.
    async fn check_for_change(&mut self, force: bool) -> Result<(), AgentError> {
        let version = self.source.version();
        if !force && version.is_some() && version == self.last_version {
            return Ok(());
        }
        let (snap, fp) = match self.read().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "structure source not readable now");
                return Ok(());
            }
        };
        self.last_version = version;
        if self.last_fingerprint.as_deref() == Some(fp.as_str()) {
            return Ok(());
        }
        self.last_snapshot = (snap, fp);
        // Never reported from this data dir: the `connect` report will carry the structure.
        if self.last_fingerprint.is_none() {
            return Ok(());
        }
        self.report(Trigger::Change).await
    }

    /// Queue a report with this trigger and send what is queued.
    async fn report(&mut self, trigger: Trigger) -> Result<(), AgentError> {
        self.queue(trigger).await?;
        self.flush().await
    }

    /// A report asked for on the device (trigger `manual`), sent now: its number once the
    /// center acknowledged it, or why it did not.
    async fn report_now(&mut self) -> Result<Result<u64, String>, AgentError> {
        if self.token.is_none() {
            return Ok(Err(match &self.status.last_error {
                Some(e) => format!("not enrolled with the center yet ({e})"),
                None => "not enrolled with the center yet".into(),
            }));
        }
        let Some(seq) = self.queue(Trigger::Manual).await? else {
            return Ok(Err(
                "the structure source names another device than the one enrolled".into(),
            ));
        };
        self.flush().await?;
        if self.status.last_ack_seq.is_some_and(|a| a >= seq) {
            return Ok(Ok(seq));
        }
        let why = self
            .status
            .last_error
            .clone()
            .unwrap_or_else(|| "no answer from the center".into());
        Ok(Err(if self.local.outbox.contains(seq) {
            format!(
                "report #{seq} is queued, not yet acknowledged: {why}; it is sent again when the center can take it"
            )
        } else {
            format!("the center refused report #{seq}: {why}")
        }))
    }

    /// Queue a report with this trigger: its number (`None`: the source names another device
    /// than the one enrolled, and nothing was queued).
    async fn queue(&mut self, trigger: Trigger) -> Result<Option<u64>, AgentError> {
        let (snap, fingerprint) = if trigger == Trigger::Change {
            self.last_snapshot.clone()
        } else {
            self.snapshot().await
        };
        if let Some(c) = self.local.credential()
            && c.device_id != snap.device_id
        {
            tracing::error!(
                enrolled = %c.device_id, named = %snap.device_id,
                "the structure source names another device; not reporting it"
            );
            return Ok(None);
        }
        let seq = self.local.take_seq(&fingerprint)?;
        let report = StructureReport {
            device_id: snap.device_id,
            model: snap.model,
            seq,
            trigger,
            observed_at_ms: now_ms(),
            units: snap.units,
            operating: snap.operating,
            supplies: snap.supplies,
            install_blocked: self.install_blocked.clone(),
        };
        self.local.outbox.push(report, fingerprint.clone())?;
        self.last_fingerprint = Some(fingerprint);
        tracing::debug!(seq, trigger = trigger.as_str(), "report queued");
        Ok(Some(seq))
    }

    async fn command(&mut self, c: Command) -> Result<(), AgentError> {
        match c {
            Command::RequestReport => self.report(Trigger::Request).await,
            Command::SetReportInterval { seconds } => {
                self.set_interval(seconds)?;
                Ok(())
            }
            Command::Notify { notification } => {
                tracing::warn!(
                    title = %notification.title,
                    summary = %notification.summary,
                    "notification from the center"
                );
                self.local.add_notification(notification)?;
                Ok(())
            }
            Command::SetUnitService {
                slot,
                serial,
                in_service,
                reason,
                switched_to,
            } => {
                self.unit_service(&slot, &serial, in_service, &reason, switched_to.as_deref())
                    .await?;
                self.check_for_change(true).await
            }
            Command::JobsAvailable => {
                tracing::info!("the center has jobs for this device");
                self.jobs_nudge.notify_one();
                Ok(())
            }
            Command::SettingsChanged => self.fetch_settings().await,
            Command::RotateCredential => self.rotate_credential().await,
            Command::RequestErrors { scheduled } => {
                let _ = self.errors_request.send(Some(if scheduled {
                    fleetcare_wire::errors::ErrorTrigger::Scheduled
                } else {
                    fleetcare_wire::errors::ErrorTrigger::Request
                }));
                Ok(())
            }
        }
    }

    /// Take a unit out of service (with the unit that takes over its work, if any) or put it
    /// back, as the center says: the source (or the unit's driver) is told, and the agent
    /// reports the unit so from now on.
    async fn unit_service(
        &mut self,
        slot: &str,
        serial: &str,
        in_service: bool,
        reason: &str,
        switched_to: Option<&str>,
    ) -> Result<(), AgentError> {
        tracing::warn!(%slot, %serial, in_service, %reason, switched_to, "the center changes a unit's service");
        let (source, s, to) = (
            self.source.clone(),
            slot.to_owned(),
            switched_to.map(str::to_owned).filter(|_| !in_service),
        );
        let applied = tokio::task::spawn_blocking(move || {
            source.set_in_service(&s, in_service)?;
            match &to {
                Some(to) => source.switch_unit(&s, to),
                None => Ok(()),
            }
        })
        .await
        .unwrap_or_else(|e| Err(format!("the structure source panicked: {e}")));
        if let Err(e) = applied {
            tracing::error!(%slot, error = %e, "could not change the unit's service");
            return Ok(());
        }
        self.local
            .set_unit_service(slot, serial, in_service, switched_to)?;
        Ok(())
    }

    /// Fetch what the center set on this device: its settings, kept in the journal where the
    /// device's software reads them (local API `settings`), and the units it has out of
    /// service, which the agent makes exactly so. Best effort: the next connection fetches
    /// them again.
    async fn fetch_settings(&mut self) -> Result<(), AgentError> {
        let Some(token) = self.token.clone() else {
            return Ok(());
        };
        let got = match self.client.settings(&token).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "fetching the device's settings failed");
                return Ok(());
            }
        };
        let map: std::collections::BTreeMap<String, String> = got
            .settings
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect();
        let j = self.journal.clone();
        let n = map.len();
        match tokio::task::spawn_blocking(move || {
            if j.settings().ok().as_ref() == Some(&map) {
                return Ok(false);
            }
            j.set_settings(&map).map(|()| true)
        })
        .await
        {
            Ok(Ok(true)) => tracing::info!(settings = n, "settings from the center applied"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "keeping the device's settings failed"),
            Err(e) => tracing::warn!(error = %e, "keeping the device's settings failed"),
        }
        if let Some(units) = got.units_out_of_service {
            self.reconcile_units(&units).await?;
        }
        Ok(())
    }

    /// Make the units out of service exactly those the center lists.
    async fn reconcile_units(
        &mut self,
        units: &[fleetcare_wire::compat::UnitService],
    ) -> Result<(), AgentError> {
        let had = self.local.state().out_of_service.clone();
        let mut changed = false;
        for u in units {
            if !had.iter().any(|(s, n)| *s == u.slot && *n == u.serial) {
                self.unit_service(
                    &u.slot,
                    &u.serial,
                    false,
                    &u.reason,
                    u.switched_to.as_deref(),
                )
                .await?;
                changed = true;
            }
        }
        for (slot, serial) in had {
            if !units.iter().any(|u| u.slot == slot && u.serial == serial) {
                self.unit_service(&slot, &serial, true, "the center has it in service", None)
                    .await?;
                changed = true;
            }
        }
        if changed {
            self.check_for_change(true).await?;
        }
        Ok(())
    }

    /// Fetch the center's open notifications (what it said while this device was away
    /// reaches it); best effort, like the settings.
    async fn fetch_notifications(&mut self) {
        let Some(token) = self.token.clone() else {
            return;
        };
        match self.client.notifications(&token).await {
            Ok(got) => {
                for n in got
                    .notifications
                    .iter()
                    .filter(|n| n.delivered_at.is_none())
                {
                    tracing::warn!(title = %n.title, summary = %n.summary, "notification from the center");
                }
                if let Err(e) = self.local.set_notifications(got.notifications) {
                    tracing::warn!(error = %e, "keeping the center's notifications failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "fetching the center's notifications failed"),
        }
    }

    fn set_interval(&mut self, seconds: Option<u64>) -> Result<(), AgentError> {
        if self.local.state().center_interval_s != seconds {
            self.local.set_center_interval(seconds)?;
            let interval = effective_interval(&self.cfg, &self.local);
            tracing::info!(?interval, "reporting interval set by the center");
            self.next_periodic = Instant::now() + interval;
        }
        Ok(())
    }

    /// Send queued reports, oldest first, until the outbox is empty or the center cannot
    /// take one now.
    async fn flush(&mut self) -> Result<(), AgentError> {
        self.retry_at = None;
        let Some(token) = self.token.clone() else {
            self.publish();
            return Ok(());
        };
        while let Some(report) = self.local.outbox.first()? {
            let sent = std::time::Instant::now();
            match self.client.report(&token, report.as_ref()).await {
                Ok(ack) => {
                    self.observer.report_acked(report.trigger, sent.elapsed());
                    self.local.outbox.remove(report.seq)?;
                    self.backoff.reset();
                    self.status.last_ack_seq = Some(ack.seq);
                    self.status.last_ack_at = Some(fleetcare_core::clock::rfc3339(now_ms()));
                    self.status.last_error = None;
                    self.status.retry_at = None;
                    self.complaint.recovered();
                    self.set_interval(ack.report_interval_s)?;
                }
                Err(e) if e.is_unauthorized() => {
                    self.status.last_error = Some(e.to_string());
                    self.unauthorized();
                    break;
                }
                Err(e) if e.is_retryable() => {
                    self.observer.report_failed();
                    let delay = self.backoff.next_delay();
                    self.complaint.failed(&e.to_string(), delay);
                    self.status.last_error = Some(e.to_string());
                    self.status.retry_at = Some(retry_at(delay));
                    self.retry_at = Some(Instant::now() + delay);
                    break;
                }
                Err(e) => {
                    // Retrying cannot fix what the center refused for good; keep the rest moving.
                    tracing::error!(error = %e, seq = report.seq, "the center refused a report; dropping it");
                    self.status.last_error = Some(e.to_string());
                    self.local.outbox.remove(report.seq)?;
                }
            }
        }
        self.publish();
        Ok(())
    }

    /// Rotate the credential: the new one is saved durably before it is used; until then the
    /// center still takes the old one, so a crash in between loses nothing.
    async fn rotate_credential(&mut self) -> Result<(), AgentError> {
        let (Some(token), Some(saved)) = (self.token.clone(), self.local.credential().cloned())
        else {
            return Ok(());
        };
        match self.client.rotate_credential(&token).await {
            Ok(answer) => {
                self.local.save_credential(Credential {
                    device_token: answer.device_token.clone(),
                    ..saved
                })?;
                tracing::info!("device credential rotated");
                self.token = Some(answer.device_token.clone());
                let _ = self.token_tx.send(Some(answer.device_token));
                Ok(())
            }
            Err(e) if e.is_unauthorized() => {
                self.unauthorized();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "rotating the credential failed; keeping the current one");
                self.status.last_error = Some(e.to_string());
                Ok(())
            }
        }
    }

    /// The center does not accept the credential (revoked, or the center forgot it).
    fn unauthorized(&mut self) {
        if self.enroll_at.is_none() {
            tracing::warn!("the center does not accept this device's credential; enrolling again");
            self.token = None;
            let _ = self.token_tx.send(None);
            self.enroll_at = Some(Instant::now());
        }
    }

    async fn enroll(&mut self) -> Result<(), AgentError> {
        self.enroll_at = None;
        let Some(key) = self.cfg.enrollment_key.clone() else {
            tracing::error!("the credential was refused and no enrollment key is configured");
            self.enroll_at = Some(Instant::now() + self.cfg.backoff_max);
            return Ok(());
        };
        let snap = self.last_snapshot.0.clone();
        let current = self.local.credential().map(|c| c.device_token.clone());
        let req = EnrollRequest {
            enrollment_key: key,
            device_id: snap.device_id.clone(),
            model: snap.model.clone(),
            current_credential: current,
        };
        let sent = std::time::Instant::now();
        match self.client.enroll(&req).await {
            Ok(answer) => {
                self.observer.enrolled(sent.elapsed());
                self.local.save_credential(Credential {
                    device_id: snap.device_id.clone(),
                    device_token: answer.device_token.clone(),
                    center_url: self.cfg.center_url.clone(),
                })?;
                tracing::info!(device = %snap.device_id, tenant = answer.tenant,
                    mqtt_username = answer.tenant.map(|t| format!("{t}/{}", snap.device_id)),
                    "enrolled with the center");
                self.enroll_backoff.reset();
                self.complaint.recovered();
                self.status.last_error = None;
                self.status.retry_at = None;
                self.token = Some(answer.device_token.clone());
                let _ = self.token_tx.send(Some(answer.device_token));
                self.set_interval(answer.report_interval_s)?;
                self.flush().await
            }
            Err(e) => {
                let delay = match &e {
                    ClientError::Refused { code, .. } if code == "already_enrolled" => {
                        tracing::error!(
                            device = %snap.device_id,
                            "the center refuses to enroll this device again: an operator must run \
                             `fleetcare devices allow-reenroll {}`", snap.device_id
                        );
                        self.cfg.backoff_max
                    }
                    e if e.is_retryable() => {
                        let delay = self.enroll_backoff.next_delay();
                        self.complaint.failed(&e.to_string(), delay);
                        delay
                    }
                    e => {
                        let hint = self.cfg.center_url_hint().unwrap_or_default();
                        tracing::error!(error = %e, "enrollment refused{hint}");
                        self.cfg.backoff_max
                    }
                };
                self.status.last_error = Some(e.to_string());
                self.status.retry_at = Some(retry_at(delay));
                self.publish();
                self.enroll_at = Some(Instant::now() + delay);
                Ok(())
            }
        }
    }
}

/// When a try `delay` from now happens, for `status` (RFC 3339).
fn retry_at(delay: Duration) -> String {
    fleetcare_core::clock::rfc3339(now_ms() + i64::try_from(delay.as_millis()).unwrap_or(0))
}
