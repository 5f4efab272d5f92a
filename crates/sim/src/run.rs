//! Starting, measuring and stopping a simulated fleet.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetcare_agent::client::CenterClient;
use fleetcare_agent::journal::{Journal, JournalLimits};
use fleetcare_agent::update::UnitInstaller;
use fleetcare_agent::{Agent, AgentConfig, AgentError, Transport};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::device::{SimDevice, SimInstaller, SimSource};
use crate::fleet::Mix;
use crate::profile::Profile;
use crate::stats::{CenterUse, DeviceObserver, Stats, Summary};

/// How often a virtual device's agent looks at its source unasked (the world tells it when
/// something changed, so this is only a safety net).
const WATCH_INTERVAL: Duration = Duration::from_secs(60);
/// How often it looks at its journal's triggers unasked (likewise).
const ERRORS_CHECK: Duration = Duration::from_secs(5);
/// Waiting for the agents to stop.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Fleet(String),
    #[error("the scratch directory {path}: {source}")]
    Scratch {
        path: String,
        source: std::io::Error,
    },
    #[error("the device journal: {0}")]
    Journal(String),
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub center_url: String,
    pub enrollment_key: String,
    pub devices: usize,
    /// The number of this process's first device: several processes share one fleet.
    pub offset: usize,
    pub profile: Profile,
    /// Put before every device id (`P-ACM9K-000001`), for a second fleet on one center.
    pub id_prefix: Option<String>,
    /// The devices' root of trust (without it, every install is refused, as on a real device).
    pub trust_root: Option<PathBuf>,
    /// Where installs write while a job runs (default: a directory on tmpfs, if there is one).
    pub scratch: Option<PathBuf>,
}

type AgentTask = JoinHandle<Result<(), AgentError>>;

/// A running simulated fleet.
pub struct Sim {
    pub devices: Arc<Vec<Arc<SimDevice>>>,
    pub stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    agents: Arc<Mutex<Vec<AgentTask>>>,
    started: watch::Receiver<usize>,
    starter: JoinHandle<()>,
    world: JoinHandle<()>,
    _scratch: tempfile::TempDir,
    center_url: String,
    offset: usize,
    window: Mutex<Option<Window>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("devices", &self.devices.len())
            .field("center_url", &self.center_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    at: Instant,
    reports: u64,
    center: Option<CenterUse>,
    sim_cpu: f64,
}

/// This process's CPU seconds so far (`/proc/self/stat`).
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / rustix::param::clock_ticks_per_second() as f64
}

fn own_resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |pages| {
            pages * rustix::param::page_size() as f64 / 1_048_576.0
        })
}

/// The center's own CPU time, memory and descriptors, from its `/metrics`.
pub async fn center_use(http: &reqwest::Client, center_url: &str) -> Option<CenterUse> {
    let got = async {
        http.get(format!("{center_url}/metrics"))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    }
    .await;
    let text = match got {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "reading the center's /metrics");
            return None;
        }
    };
    let value = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    Some(CenterUse {
        cpu_seconds: value("process_cpu_seconds_total")?,
        resident_bytes: value("process_resident_memory_bytes").unwrap_or(0.0),
        open_fds: value("process_open_fds").unwrap_or(0.0),
    })
}

fn transport(p: &Profile) -> Transport {
    match p.transport.as_str() {
        "websocket" => Transport::WebSocket,
        "poll" => Transport::Poll,
        _ => Transport::Auto,
    }
}

impl Sim {
    /// Make the fleet and start its agents, `connect_per_s` at a time.
    pub async fn start(opts: SimOptions) -> Result<Sim, SimError> {
        if let Err(e) = fleetcare_fs::raise_descriptor_limit() {
            tracing::warn!(error = %e, "could not raise the descriptor limit");
        }
        let p = Arc::new(opts.profile.clone());
        let mix = Mix::new(&p.weights(), p.scenarios);
        let mut devices = Vec::with_capacity(opts.devices);
        for i in 0..opts.devices {
            let n = opts.offset + i;
            let mut snap = mix.device(n).map_err(SimError::Fleet)?;
            if let Some(prefix) = &opts.id_prefix {
                snap.device_id = format!("{prefix}-{}", snap.device_id);
            }
            let journal = Journal::memory(JournalLimits {
                max_events: 10_000,
                max_bytes: 4 << 20,
            })
            .map_err(|e| SimError::Journal(e.to_string()))?;
            devices.push(Arc::new(SimDevice::new(
                n,
                snap,
                journal,
                p.install_failure,
                p.stage_failure,
                p.busy_share,
            )));
        }
        let devices = Arc::new(devices);
        let scratch_base = opts.scratch.clone().unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        });
        let scratch = tempfile::Builder::new()
            .prefix("fleetcare-sim-")
            .tempdir_in(&scratch_base)
            .map_err(|source| SimError::Scratch {
                path: scratch_base.display().to_string(),
                source,
            })?;
        let stats = Arc::new(Stats::default());
        let (stop, shutdown) = watch::channel(false);
        let world = tokio::spawn(crate::world::run(
            devices.clone(),
            p.clone(),
            stats.clone(),
            shutdown.clone(),
        ));
        // One pool for the fleet: connections are shared, a few hundred kept idle.
        let client = CenterClient::with_pool(&opts.center_url, Duration::from_secs(30), 256);
        let agents = Arc::new(Mutex::new(Vec::with_capacity(opts.devices)));
        let (started_tx, started) = watch::channel(0usize);
        let starter = {
            let (devices, agents, stats, p) =
                (devices.clone(), agents.clone(), stats.clone(), p.clone());
            let scratch = scratch.path().to_owned();
            let mut shutdown = shutdown.clone();
            let opts = opts.clone();
            tokio::spawn(async move {
                // Start in slices of a tenth of a second.
                let per_slice = (p.connect_per_s as usize / 10).max(1);
                let mut slice = tokio::time::interval(Duration::from_millis(100));
                for (i, d) in devices.iter().enumerate() {
                    if i % per_slice == 0 {
                        tokio::select! {
                            _ = slice.tick() => {}
                            _ = shutdown.wait_for(|s| *s) => return,
                        }
                    }
                    let mut cfg = AgentConfig::new(&opts.center_url, scratch.join(&d.id));
                    cfg.enrollment_key = Some(opts.enrollment_key.clone());
                    cfg.report_interval = Duration::from_secs(p.report_interval_s);
                    cfg.transport = transport(&p);
                    cfg.poll_wait = Duration::from_secs(p.poll_wait_s);
                    cfg.watch_interval = WATCH_INTERVAL;
                    cfg.request_timeout = Duration::from_secs(30);
                    cfg.backoff_initial = Duration::from_secs(1);
                    cfg.trust_root = opts.trust_root.clone();
                    cfg.errors.interval = Duration::from_secs(p.errors_interval_s);
                    cfg.errors.check = ERRORS_CHECK;
                    cfg.local_socket = None;
                    let installers: Vec<Arc<dyn UnitInstaller>> = d
                        .snapshot()
                        .units
                        .iter()
                        .map(|u| {
                            Arc::new(SimInstaller::new(d.clone(), &u.slot))
                                as Arc<dyn UnitInstaller>
                        })
                        .collect();
                    let agent = Agent::new(cfg, SimSource(d.clone()))
                        .in_memory()
                        .with_client(client.clone())
                        .with_installers(installers)
                        .with_journal(d.journal.clone())
                        .with_observer(Arc::new(DeviceObserver::new(stats.clone())));
                    let _ = d.handle.set(agent.handle());
                    let task = tokio::spawn(agent.run(shutdown.clone()));
                    agents.lock().expect("agents").push(task);
                    let _ = started_tx.send(i + 1);
                }
            })
        };
        Ok(Sim {
            devices,
            stats,
            stop,
            agents,
            started,
            starter,
            world,
            _scratch: scratch,
            center_url: opts.center_url,
            offset: opts.offset,
            window: Mutex::new(None),
        })
    }

    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&Arc<SimDevice>> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// Devices whose channel is up now.
    pub fn connected(&self) -> i64 {
        self.stats.connected_push.load(Ordering::Relaxed)
            + self.stats.connected_poll.load(Ordering::Relaxed)
    }

    /// Wait until every agent has started and `want` of them are connected, or `patience`
    /// has passed; the number connected.
    pub async fn wait_connected(&self, want: usize, patience: Duration) -> i64 {
        let deadline = tokio::time::Instant::now() + patience;
        let mut started = self.started.clone();
        let n = self.devices.len();
        let _ = tokio::time::timeout_at(deadline, started.wait_for(|s| *s >= n)).await;
        loop {
            let c = self.connected();
            if c >= i64::try_from(want).unwrap_or(i64::MAX)
                || tokio::time::Instant::now() >= deadline
            {
                return c;
            }
            // pacing: the connection gauge is a counter the agents bump; nothing to await.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Start the measured window now: latencies so far (the ramp) are forgotten.
    pub async fn begin_window(&self) {
        let http = reqwest::Client::new();
        let center = center_use(&http, &self.center_url).await;
        self.stats.reset_latencies();
        *self.window.lock().expect("window") = Some(Window {
            at: Instant::now(),
            reports: self.stats.reports_total(),
            center,
            sim_cpu: own_cpu_seconds(),
        });
    }

    /// The summary of the window so far (the whole run if no window began).
    pub async fn summary(&self) -> Summary {
        let http = reqwest::Client::new();
        let end_center = center_use(&http, &self.center_url).await;
        let (end_at, end_cpu) = (Instant::now(), own_cpu_seconds());
        let w = *self.window.lock().expect("window");
        let (secs, reports, center_cores, sim_cores) = match w {
            Some(w) => {
                let secs = (end_at - w.at).as_secs_f64().max(1e-9);
                let cores = match (w.center, end_center) {
                    (Some(a), Some(b)) => Some((b.cpu_seconds - a.cpu_seconds) / secs),
                    _ => None,
                };
                (
                    secs,
                    self.stats.reports_total() - w.reports,
                    cores,
                    (end_cpu - w.sim_cpu) / secs,
                )
            }
            None => (0.0, self.stats.reports_total(), None, 0.0),
        };
        let reports_per_s = if secs > 0.0 {
            reports as f64 / secs
        } else {
            0.0
        };
        let (report_ack, enroll, errors_ack) = self.stats.latencies();
        Summary {
            devices: self.devices.len(),
            offset: self.offset,
            measured_s: secs,
            connected_push: self.stats.connected_push.load(Ordering::Relaxed),
            connected_poll: self.stats.connected_poll.load(Ordering::Relaxed),
            agents_failed: 0,
            first_agent_error: None,
            reports_by_trigger: self.stats.reports(),
            reports_per_s,
            report_failures: self.stats.report_failures.load(Ordering::Relaxed),
            report_ack,
            enroll,
            error_events_logged: self.stats.events_logged.load(Ordering::Relaxed),
            error_events_sent: self.stats.error_events_sent.load(Ordering::Relaxed),
            error_batches: self.stats.error_batches.load(Ordering::Relaxed),
            errors_ack,
            unit_swaps: self.stats.swaps.load(Ordering::Relaxed),
            jobs: self.stats.jobs(),
            center_cores,
            reports_per_center_core: center_cores.filter(|c| *c > 0.0).map(|c| reports_per_s / c),
            center_resident_mb: end_center.map(|c| c.resident_bytes / 1_048_576.0),
            center_open_fds: end_center.map(|c| c.open_fds),
            sim_cores,
            sim_resident_mb: own_resident_mb(),
        }
    }

    /// Stop every agent and the world; the summary of the window.
    pub async fn stop(self) -> Summary {
        let mut summary = self.summary().await;
        let _ = self.stop.send(true);
        let _ = self.starter.await;
        let _ = self.world.await;
        let tasks: Vec<_> = std::mem::take(&mut *self.agents.lock().expect("agents"));
        let deadline = tokio::time::Instant::now() + STOP_PATIENCE;
        for t in tasks {
            match tokio::time::timeout_at(deadline, t).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    summary.agents_failed += 1;
                    summary.first_agent_error.get_or_insert(e.to_string());
                }
                Ok(Err(e)) => {
                    summary.agents_failed += 1;
                    summary.first_agent_error.get_or_insert(e.to_string());
                }
                Err(_) => {
                    summary.agents_failed += 1;
                    summary
                        .first_agent_error
                        .get_or_insert("did not stop in time".into());
                }
            }
        }
        summary
    }
}
