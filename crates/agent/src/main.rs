//! `fleetcare-agent`: the device agent's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fleetcare_agent::client::CenterClient;
use fleetcare_agent::local;
use fleetcare_agent::outln;
use fleetcare_agent::signals::Termination;
use fleetcare_agent::source::InventoryFile;
use fleetcare_agent::{Agent, AgentConfig};
use fleetcare_core::structure::software_label;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "fleetcare-agent",
    version,
    about = "The Fleetcare device agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct LogArgs {
    #[arg(long, env = "FLEETCARE_AGENT_CONFIG")]
    config: PathBuf,
    /// The error code (the device maker's).
    #[arg(long)]
    code: String,
    /// The unit it concerns (its slot); none for the device as a whole.
    #[arg(long, default_value = "")]
    unit: String,
    /// debug, info, warning, error or critical.
    #[arg(long, default_value = "error")]
    severity: String,
    #[arg(long)]
    detail: Option<String>,
    /// A counter at the time, `NAME=VALUE` (repeatable), e.g. `pages_total=184220`.
    #[arg(long = "counter")]
    counters: Vec<String>,
    #[command(flatten)]
    alert: AlertArgs,
}

/// Printer MIB alert fields (prtAlertTable, RFC 3805), all optional.
#[derive(clap::Args)]
struct AlertArgs {
    /// prtAlertSeverityLevel: other, critical, warning, warningBinaryChangeEvent.
    #[arg(long)]
    alert_severity_level: Option<String>,
    /// prtAlertTrainingLevel: untrained, trained, fieldService, management, …
    #[arg(long)]
    alert_training_level: Option<String>,
    /// prtAlertGroup: inputTray, outputTray, marker, mediaPath, …
    #[arg(long)]
    alert_group: Option<String>,
    #[arg(long)]
    alert_group_index: Option<i64>,
    #[arg(long)]
    alert_location: Option<i64>,
    /// prtAlertCode: jam, subunitLifeAlmostOver, coverOpen, …
    #[arg(long)]
    alert_code: Option<String>,
}

impl AlertArgs {
    fn alert(self) -> Option<fleetcare_wire::errors::PrinterAlert> {
        let a = fleetcare_wire::errors::PrinterAlert {
            severity_level: self.alert_severity_level,
            training_level: self.alert_training_level,
            group: self.alert_group,
            group_index: self.alert_group_index,
            location: self.alert_location,
            code: self.alert_code,
        };
        (a != fleetcare_wire::errors::PrinterAlert {
            severity_level: None,
            training_level: None,
            group: None,
            group_index: None,
            location: None,
            code: None,
        })
        .then_some(a)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Report this device's structure to the center and obey it, until stopped (SIGTERM).
    Run {
        /// The agent config (see examples/agent.toml).
        #[arg(long, env = "FLEETCARE_AGENT_CONFIG")]
        config: PathBuf,
        /// Log lines as `text` or `json`, to standard error; the level comes from
        /// FLEETCARE_LOG (default `info`).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
    },
    /// Append an event to the device's error log (durable when this returns); the running
    /// agent sends it as its triggers say (at once from `errors_immediate_severity`).
    Log(Box<LogArgs>),
    /// Send a structure report now (trigger `manual`) through the running agent; returns once
    /// the center acknowledged it, or says why not.
    Report {
        #[arg(long, env = "FLEETCARE_AGENT_CONFIG")]
        config: PathBuf,
        /// Print the local API's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Send the pending error log now (trigger `manual`) through the running agent; returns
    /// once the center acknowledged it, or says why not.
    SendErrors {
        #[arg(long, env = "FLEETCARE_AGENT_CONFIG")]
        config: PathBuf,
        /// Print the local API's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Show local state and what the center knows about this device.
    Status {
        #[arg(long, env = "FLEETCARE_AGENT_CONFIG")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread is plenty for one device, and keeps the agent small.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetcare-agent: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Cmd::Run { config, log_format } => run(config, &log_format).await,
            Cmd::Status { config, json } => status(config, json).await,
            Cmd::Report { config, json } => send_now(config, "report", json).await,
            Cmd::SendErrors { config, json } => send_now(config, "send_errors", json).await,
            Cmd::Log(args) => log_event(*args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetcare-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<AgentConfig> {
    Ok(AgentConfig::load(Some(path), &|k| std::env::var(k).ok())?)
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETCARE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal (not in a file, a pipe or a journal).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(config: PathBuf, log_format: &str) -> anyhow::Result<()> {
    let cfg = load_config(&config)?;
    init_logs(log_format);
    let inventory = if cfg.printers.is_empty() {
        Some(cfg.inventory.clone().with_context(|| {
            format!(
                "{}: `inventory` (or, for a LAN proxy, `printers`) is required: the agent binary \
                 reads the structure from an inventory file or from printers (integrators with \
                 unit drivers build their own agent on the library)",
                config.display()
            )
        })?)
    } else {
        None
    };
    let mut signals = Termination::install()?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("stopping");
        let _ = stop.send(true);
    });
    // Once start-up is over, give back the pages of code only start-up ran (resident).
    tokio::spawn(async {
        tokio::time::sleep(fleetcare_agent::resident::STARTUP).await;
        match fleetcare_agent::resident::release_startup_pages() {
            Ok(r) => tracing::debug!(
                resident_before_kb = r.resident_before / 1024,
                resident_after_kb = r.resident_after / 1024,
                "start-up code released"
            ),
            Err(e) => tracing::debug!(error = %e, "start-up code not released"),
        }
    });
    if let Some(hint) = cfg.center_url_hint() {
        tracing::warn!(
            "{}",
            hint.trim().trim_start_matches('(').trim_end_matches(')')
        );
    }
    match inventory {
        Some(inventory) => {
            tracing::info!(center = %cfg.center_url, data_dir = %cfg.data_dir.display(), "agent starting");
            Agent::new(cfg, InventoryFile::new(inventory))
                .run(shutdown)
                .await?;
        }
        None => {
            tracing::info!(center = %cfg.center_url, data_dir = %cfg.data_dir.display(),
                printers = cfg.printers.len(), "agent starting as a LAN proxy");
            fleetcare_agent::proxy::run(cfg, shutdown).await?;
        }
    }
    Ok(())
}

fn log_event(args: LogArgs) -> anyhow::Result<()> {
    let LogArgs {
        config,
        code,
        unit,
        severity,
        detail,
        counters,
        alert,
    } = args;
    let alert = alert.alert();
    let cfg = load_config(&config)?;
    let mut parsed = std::collections::BTreeMap::new();
    for c in &counters {
        let (k, v) = c
            .split_once('=')
            .with_context(|| format!("--counter {c:?}: expected NAME=VALUE"))?;
        let v: f64 = v
            .parse()
            .with_context(|| format!("--counter {c:?}: the value is not a number"))?;
        parsed.insert(k.to_owned(), v);
    }
    let journal = fleetcare_agent::journal::Journal::open(&cfg.data_dir, cfg.journal, false)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let (epoch, seq) = journal.append(
        &fleetcare_agent::journal::NewEvent {
            slot: unit,
            code,
            severity,
            counters: parsed,
            detail,
            alert,
        },
        now,
    )?;
    outln!("logged as event {seq} of boot {epoch}");
    Ok(())
}

/// Ask the running agent, through its local API, to send now.
async fn send_now(config: PathBuf, op: &str, as_json: bool) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let cfg = load_config(&config)?;
    let path = cfg.local_socket.clone().with_context(|| {
        format!(
            "{}: the local API is off (`local_api = false`); `{op}` reaches the running agent through it",
            config.display()
        )
    })?;
    let stream = tokio::net::UnixStream::connect(&path).await.map_err(|e| {
        anyhow::anyhow!(
            "the agent is not running, or not with this config (no answer at {}: {e}); start it with `fleetcare-agent run`",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{{\"op\":\"{op}\"}}\n").as_bytes())
        .await
        .with_context(|| format!("asking the agent at {}", path.display()))?;
    let mut line = String::new();
    let wait = fleetcare_agent::local_api::SEND_NOW_TIMEOUT + std::time::Duration::from_secs(5);
    tokio::time::timeout(wait, tokio::io::BufReader::new(read).read_line(&mut line))
        .await
        .map_err(|_| anyhow::anyhow!("the agent did not answer within {} s", wait.as_secs()))?
        .with_context(|| format!("reading the agent's answer at {}", path.display()))?;
    let answer: serde_json::Value = serde_json::from_str(line.trim())
        .with_context(|| format!("the agent's answer is not JSON: {line:?}"))?;
    if as_json {
        outln!("{answer}");
    }
    if answer["ok"] != true {
        anyhow::bail!(
            "not sent: {}",
            answer["error"]
                .as_str()
                .unwrap_or("the agent gave no reason")
        );
    }
    if !as_json {
        match op {
            "report" => outln!(
                "report #{} (manual) acknowledged by the center",
                answer["seq"]
            ),
            _ => outln!(
                "{} error event(s) sent (manual) and acknowledged by the center",
                answer["sent"]
            ),
        }
    }
    Ok(())
}

async fn status(config: PathBuf, as_json: bool) -> anyhow::Result<()> {
    let cfg = load_config(&config)?;
    let view = local::view(&cfg.data_dir)
        .with_context(|| format!("reading {}", cfg.data_dir.display()))?;
    let (center, compat) = match &view.credential {
        Some(c) => {
            let client = if c.center_url == cfg.center_url {
                CenterClient::for_config(&cfg)?
            } else {
                CenterClient::new(&c.center_url, cfg.request_timeout)
            };
            (
                Some(
                    client
                        .whoami(&c.device_token)
                        .await
                        .map_err(|e| e.to_string()),
                ),
                client.about(&c.device_token).await.ok(),
            )
        }
        None => (None, None),
    };
    let about = compat;
    let compat = about.as_ref().map(|a| a.compat.clone());
    let settings = fleetcare_agent::journal::Journal::open(&cfg.data_dir, cfg.journal, false)
        .and_then(|j| j.settings())
        .unwrap_or_default();
    // Installing: the job in progress (its journal) and each unit's banks.
    let journal_file: Option<serde_json::Value> =
        std::fs::read(cfg.data_dir.join("update/journal.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
    let mut banks = Vec::new();
    if let Some(dir) = &cfg.units_dir {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Ok(b) = std::fs::read(e.path().join("boot.json"))
                && let Ok(rec) =
                    serde_json::from_slice::<fleetcare_agent::update::ab::BootRecord>(&b)
            {
                banks.push((e.file_name().to_string_lossy().into_owned(), rec));
            }
        }
    }
    banks.sort_by(|a, b| a.0.cmp(&b.0));
    let journal = fleetcare_agent::journal::Journal::open(&cfg.data_dir, cfg.journal, false)
        .and_then(|j| j.stats())
        .ok();
    if as_json {
        let out = json!({
            "error_log": journal,
            "install": {
                "job": journal_file,
                "units": banks.iter().map(|(slot, r)| json!({
                    "slot": slot,
                    "active": r.active,
                    "banks": r.banks,
                    "trial": r.trial,
                })).collect::<Vec<_>>(),
            },
            "device_id": view.credential.as_ref().map(|c| &c.device_id),
            "center_url": cfg.center_url,
            "enrolled": view.credential.is_some(),
            "next_seq": view.state.next_seq,
            "center_interval_s": view.state.center_interval_s,
            "outbox": view.outbox,
            "running": view.running.is_some(),
            "pid": view.running.and_then(|h| h.pid),
            "last_run": view.status,
            "center": match &center {
                Some(Ok(v)) => serde_json::to_value(v)?,
                Some(Err(e)) => json!({"error": e}),
                None => serde_json::Value::Null,
            },
            "compat": compat,
            "troubles": about.as_ref().map(|a| &a.troubles),
            "recommended_actions": about.as_ref().map(|a| &a.recommended_actions),
            "abnormal_units": about.as_ref().map(|a| &a.abnormal_units),
            "rollout_eligible": about.as_ref().map(|a| a.rollout_eligible),
            "rollout_ineligible": about.as_ref().and_then(|a| a.rollout_ineligible.as_ref()),
            "recent_jobs": about.as_ref().map(|a| &a.recent_jobs),
            "error_rate": about.as_ref().map(|a| &a.error_rate),
            "supplies": about.as_ref().map(|a| &a.supplies),
            "meters": about.as_ref().map(|a| &a.meters),
            "settings": settings,
            "notifications": view.notifications,
            "out_of_service": view.state.out_of_service,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match &view.credential {
        Some(c) => outln!(
            "device       {} (enrolled at {})",
            c.device_id,
            c.center_url
        ),
        None => outln!("device       not enrolled yet"),
    }
    outln!(
        "queued       {} report(s) not yet acknowledged",
        view.outbox
    );
    match (&view.running, &view.status) {
        (Some(h), _) => outln!(
            "agent        running{}",
            h.pid.map_or(String::new(), |p| format!(" (pid {p})"))
        ),
        (None, Some(s)) => outln!(
            "agent        not running (it was pid {}; what follows is from then)",
            s.pid
        ),
        (None, None) => outln!("agent        not running"),
    }
    if let Some(s) = &view.status {
        if view.running.is_some() {
            outln!("channel      {}", s.channel);
        }
        if let (Some(seq), Some(at)) = (s.last_ack_seq, &s.last_ack_at) {
            outln!("last ack     report #{seq} at {at}");
        }
        if let Some(e) = &s.last_error {
            outln!("last error   {e}");
            if let (Some(at), Some(_)) = (&s.retry_at, &view.running) {
                outln!("next try     at {at}");
            }
        }
        if s.reports_dropped > 0 {
            outln!("dropped      {} report(s) (outbox full)", s.reports_dropped);
        }
    }
    let days_left: std::collections::BTreeMap<String, f64> = about
        .as_ref()
        .map(|a| {
            a.supplies
                .iter()
                .filter_map(|s| s.days_left.map(|d| (s.supply.slot.clone(), d)))
                .collect()
        })
        .unwrap_or_default();
    match center {
        Some(Ok(v)) => {
            outln!(
                "center says  model {}, {} unit(s), online {}, last report {}",
                v.model,
                v.units.len(),
                v.online,
                v.last_report
                    .as_ref()
                    .map_or("never".to_owned(), |r| format!(
                        "#{} ({}) at {}",
                        r.seq,
                        r.trigger.as_str(),
                        r.received_at
                    ))
            );
            for u in &v.units {
                let sw: Vec<String> = u.software.iter().map(software_label).collect();
                outln!(
                    "  {:<16} {:<16} {:<14} #{:<14} {}",
                    u.slot,
                    u.kind,
                    u.model,
                    u.serial,
                    sw.join(", ")
                );
            }
            for sup in &v.supplies {
                outln!(
                    "  {:<16} {:<16} {:<14} {:<8} {}{}{}",
                    sup.slot,
                    sup.kind.as_str(),
                    sup.level_pct.map_or("?".to_owned(), |p| format!("{p} %")),
                    sup.state.as_str(),
                    sup.part_number
                        .as_deref()
                        .map_or(String::new(), |p| format!("part {p} ")),
                    sup.serial
                        .as_deref()
                        .map_or(String::new(), |n| format!("#{n} ")),
                    days_left
                        .get(&sup.slot)
                        .map_or(String::new(), |d| format!("(about {d} days left)"))
                );
            }
            if !v.operating.is_empty() {
                let meters: Vec<String> = v
                    .operating
                    .iter()
                    .take(12)
                    .map(|(k, x)| format!("{k} {x}"))
                    .collect();
                outln!("meters       {}", meters.join(", "));
            }
        }
        Some(Err(e)) => outln!("center says  (unreachable: {e})"),
        None => {}
    }
    if let Some(s) = &journal {
        outln!(
            "error log    {} event(s) not yet sent, {} dropped (journal full){}",
            s.pending,
            s.dropped,
            if s.quarantined > 0 {
                format!(", {} damaged journal(s) moved aside", s.quarantined)
            } else {
                String::new()
            }
        );
    }
    if let Some(j) = &journal_file {
        outln!(
            "installing   job #{} ({})",
            j["job"],
            j["phase"].as_str().unwrap_or("?")
        );
    }
    for (slot, r) in &banks {
        let label = |bank: &str| {
            r.banks
                .get(bank)
                .map(|ps| {
                    ps.iter()
                        .map(|p| format!("{} {}", p.product, p.version))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let trial = r.trial.as_ref().map_or(String::new(), |t| {
            format!(
                " — on trial for job #{}, {} boot(s) left",
                t.job, t.boots_left
            )
        });
        outln!(
            "bank {:<12} active {}: {}; inactive {}: {}{trial}",
            slot,
            r.active,
            label(&r.active),
            r.inactive(),
            label(&r.inactive())
        );
    }
    for (slot, serial) in &view.state.out_of_service {
        let takes_over = view
            .state
            .switched
            .iter()
            .find(|(from, _)| from == slot)
            .map_or(String::new(), |(_, to)| {
                format!("; the {to} takes over its work")
            });
        outln!("out of service  {slot} (#{serial}), as the center asked{takes_over}");
    }
    if let Some(c) = &compat {
        outln!(
            "compatibility {}{}",
            c.state,
            c.catalog_revision
                .map_or(String::new(), |r| format!(" (catalog revision {r})"))
        );
        for f in &c.findings {
            outln!("  - {}: {}", f.kind, f.explanation);
        }
        if let Some(p) = &c.plan {
            for s in &p.steps {
                outln!(
                    "  planned: {} {} on the {} ({})",
                    s.product,
                    s.to,
                    s.slot,
                    s.action
                );
            }
        }
        for r in &c.advice {
            outln!("  recommended {}: {}", r.rank, r.summary);
        }
        for j in &c.jobs {
            outln!("  job #{} {} ({} step(s))", j.id, j.state, j.steps.len());
        }
    }
    if let Some(a) = &about {
        for t in &a.troubles {
            outln!(
                "trouble      #{} {} [{}, {}] since {}, {} event(s)",
                t.id,
                t.title,
                t.severity,
                t.state,
                t.opened_at,
                t.occurrences
            );
            if let Some(o) = &t.fix_outcome {
                outln!("  fix: {o}");
            }
        }
        for (i, r) in a.recommended_actions.iter().enumerate() {
            outln!("action {:<5} {r}", format!("{}.", i + 1));
        }
        for u in &a.abnormal_units {
            outln!("abnormal     {}: {} (since {})", u.slot, u.reason, u.since);
        }
        if !a.rollout_eligible {
            outln!(
                "rollouts     this device is passed by now: {}",
                a.rollout_ineligible
                    .as_deref()
                    .unwrap_or("not in a proper state")
            );
        }
        for j in &a.recent_jobs {
            outln!(
                "recent job   #{} {}{} ({} step(s), {})",
                j.id,
                j.state,
                j.reason
                    .as_ref()
                    .map_or(String::new(), |r| format!(" ({r})")),
                j.steps.len(),
                j.updated_at
            );
        }
        let r = &a.error_rate;
        outln!(
            "error rate   {:.1} event(s)/day over {} days; model {} averages {:.1} per device ({} device(s)){}",
            r.device_per_day,
            r.days,
            a.model,
            r.model_per_device_per_day,
            r.model_devices,
            r.ratio
                .map_or(String::new(), |x| format!(" — {x:.1}× the fleet"))
        );
    }
    for (k, v) in &settings {
        outln!("setting      {k} = {v} (set by the center)");
    }
    // What the center told the people at this device: what it holds open now, or, when it
    // cannot be asked, what the agent kept (the notices open when it last connected, and
    // those pushed since).
    let notices = match &compat {
        Some(c) => c.notifications.clone(),
        None => view.notifications.clone(),
    };
    for n in &notices {
        outln!("notification  #{} {} ({})", n.id, n.title, n.created_at);
        outln!("  {}", n.summary);
        for r in &n.recommendations {
            outln!("  {}. {}", r.rank, r.summary);
        }
    }
    Ok(())
}
