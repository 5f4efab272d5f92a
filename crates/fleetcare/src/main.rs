//! `fleetcare`: the monitoring center (`serve`), the demo, and the operator's commands.

mod access_cmd;
mod client;
mod compat_cmd;
mod ddi_cmd;
mod delivery_cmd;
mod demo;
mod diag_cmd;
mod doctor_cmd;
mod heap;
mod life_cmd;
mod notify_cmd;
mod retention_cmd;
mod rollout_cmd;
mod sim_cmd;
mod table;
mod tuf_cmd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use fleetcare_agent::{out, outln};
use fleetcare_core::structure::{describe, software_label};
use fleetcare_server::{Center, LogFormat, ServerConfig};
use fleetcare_wire::operator::{
    AllowReenroll, DeviceList, DeviceView, History, RequestReportResponse, SetReportInterval,
};
use serde_json::Value;

use crate::client::{Api, resolve_token, segment};

#[derive(Parser)]
#[command(
    name = "fleetcare",
    version,
    about = "Fleetcare: remote maintenance for fleets of printers, copiers and MFPs"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// How operator commands reach the center.
#[derive(Args, Clone)]
pub(crate) struct Remote {
    /// The center's URL.
    #[arg(
        long,
        env = "FLEETCARE_URL",
        default_value = "http://127.0.0.1:8470",
        global = true
    )]
    pub url: String,
    /// Operator token (default: the file named by --token-file, else ./fleetcare-data/admin-token).
    #[arg(long, env = "FLEETCARE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding the operator token.
    #[arg(long, env = "FLEETCARE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) to trust for an https:// center.
    #[arg(long, env = "FLEETCARE_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Act within this customer organization (a provider's operator).
    #[arg(long, env = "FLEETCARE_TENANT", global = true)]
    pub tenant: Option<String>,
    /// Print JSON (the API's own) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Remote {
    pub(crate) fn api(&self) -> anyhow::Result<Api> {
        let tls = match &self.ca_file {
            Some(ca) => Some(fleetcare_tls::client_config(ca, None)?),
            None if self.url.starts_with("https://") => anyhow::bail!(
                "--ca-file (or FLEETCARE_CA_FILE): the CA certificates to trust for {} \
                 (the system's bundle is /etc/ssl/certs/ca-certificates.crt)",
                self.url
            ),
            None => None,
        };
        if let Some(t) = &self.tenant
            && reqwest::header::HeaderValue::from_str(t).is_err()
        {
            anyhow::bail!("--tenant {t:?}: not a usable customer name");
        }
        Ok(Api::with_tls(
            &self.url,
            resolve_token(self.token.clone(), self.token_file.clone())?,
            tls,
            self.tenant.as_deref(),
        ))
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the monitoring center.
    Serve {
        /// A config file (see examples/center.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the embedded store, admin-token and enrollment-key live [default: fleetcare-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8470].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Use PostgreSQL (postgres://…) instead of the embedded store.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Back up an embedded store while its center runs: one file with a consistent snapshot
    /// of the store, every artifact it names and the data directory's secret files (keep it
    /// as secret as they are). PostgreSQL: use pg_dump (README, "Backup and restore").
    Backup {
        /// The center's data directory.
        #[arg(long, default_value = "fleetcare-data")]
        data_dir: PathBuf,
        /// Where artifacts are kept, if not under the data directory (`artifact_dir`).
        #[arg(long)]
        artifact_dir: Option<PathBuf>,
        /// The backup file to write (it must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Rebuild a data directory from a backup (the center must not run on it): the store,
    /// every artifact (its SHA-256 checked) and the secret files. With `--database-url`: a
    /// PostgreSQL database just restored with pg_restore is made ready for the devices that
    /// carry on (their error logs continue past what the lost center acknowledged).
    Restore {
        /// The backup file.
        #[arg(required_unless_present = "database_url")]
        file: Option<PathBuf>,
        /// The new data directory (it must hold no store).
        #[arg(long, required_unless_present = "database_url")]
        data_dir: Option<PathBuf>,
        /// A PostgreSQL database restored with pg_restore.
        #[arg(long, conflicts_with_all = ["file", "data_dir"])]
        database_url: Option<String>,
        /// Where to put artifacts, if not under the data directory.
        #[arg(long)]
        artifact_dir: Option<PathBuf>,
    },
    /// Check an embedded store in place (safe while the center runs): integrity, schema
    /// version, what it keeps and since when, free space; and say what to do.
    Doctor {
        /// The center's data directory.
        #[arg(long, default_value = "fleetcare-data")]
        data_dir: PathBuf,
        /// The center's PostgreSQL database (read only; the data directory then holds its
        /// artifacts).
        #[arg(long)]
        database_url: Option<String>,
        /// The whole integrity check (every page and index; slower) instead of the quick one.
        #[arg(long)]
        full: bool,
    },
    /// Run a center with a simulated fleet of real agents, and show how to look at it.
    Demo {
        /// Address of the demo center.
        #[arg(long, default_value = "127.0.0.1:8470")]
        listen: SocketAddr,
        /// Devices in the fleet.
        #[arg(long, default_value_t = 60)]
        devices: usize,
        /// Keep the demo's data here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Stop after this many seconds (default: until Ctrl-C).
        #[arg(long = "for", value_name = "SECONDS")]
        run_for: Option<u64>,
    },
    /// A simulated fleet of real agents against a running center: throughput, latencies, and
    /// the center's CPU per core.
    Sim(sim_cmd::SimArgs),
    /// Devices: list, show, history, ask for a report.
    Devices {
        #[command(subcommand)]
        command: DevicesCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// The catalog: load a new revision, show one.
    Catalog {
        #[command(subcommand)]
        command: compat_cmd::CatalogCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Compatibility: a device's findings and plan or advice, the fleet, the policy.
    Compat {
        #[command(subcommand)]
        command: compat_cmd::CompatCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// A device's error log as the center holds it, newest first.
    Errors {
        id: String,
        /// Only events at or after this time (RFC 3339, e.g. 2026-11-22T08:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only events with this code.
        #[arg(long)]
        code: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// A device's meters (counters and gauges from its reports) over time, by hour or day;
    /// `meters read` for a month's billing meter reads, `meters schedule` for the requests at
    /// each month's edge.
    #[command(args_conflicts_with_subcommands = true)]
    Meters {
        #[command(subcommand)]
        command: Option<life_cmd::MetersCmd>,
        /// The device.
        #[arg(required = true)]
        id: Option<String>,
        /// Only this meter (repeatable); all when absent.
        #[arg(long = "counter")]
        counters: Vec<String>,
        /// From this time (RFC 3339); default: 30 buckets before --until.
        #[arg(long)]
        since: Option<String>,
        /// Up to this time (RFC 3339); default: the end of the current hour or day.
        #[arg(long)]
        until: Option<String>,
        /// hour or day (UTC).
        #[arg(long, default_value = "day")]
        every: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// How long the tenant keeps reports and error events (the pruner deletes what is older).
    Retention {
        #[command(subcommand)]
        command: retention_cmd::RetentionCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Devices with hawkBit clients (DDI: SWUpdate, RAUC's updater…): target and gateway tokens.
    Ddi {
        #[command(subcommand)]
        command: ddi_cmd::DdiCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Notifications: webhooks and e-mail for troubles, advice, supplies, rollouts, jobs and
    /// devices gone offline; their delivery log.
    Notify {
        #[command(subcommand)]
        command: notify_cmd::NotifyCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// The center's periodic requests for error logs, per device or per model.
    ErrorSchedule {
        #[command(subcommand)]
        command: ScheduleCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Diagnosis rules: load a new revision, show the current one.
    Rules {
        #[command(subcommand)]
        command: diag_cmd::RulesCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Troubles judged from error logs: list, show, acknowledge, resolve.
    Troubles {
        #[command(subcommand)]
        command: diag_cmd::TroublesCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Signing keys: the key list of the key-list era, and the TUF roles (root, online keys,
    /// makers and their delegations).
    Keys {
        #[command(subcommand)]
        command: delivery_cmd::KeysCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Releases: sign offline, publish with their artifacts, list.
    Release {
        #[command(subcommand)]
        command: delivery_cmd::ReleaseCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Operator tokens: create (shown once), list, revoke.
    Tokens {
        #[command(subcommand)]
        command: access_cmd::TokensCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// The audit log: every state-changing action and every denial, newest first.
    Audit {
        /// Most lines.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Lines older than this id.
        #[arg(long)]
        before: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Move the oldest lines of the audit log (appended before a date) to a file (JSON lines,
    /// its SHA-256 recorded in the store) and delete them from the store; safe while the
    /// center runs. Only archived lines can ever leave the log.
    AuditArchive {
        /// Lines appended before this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        before: String,
        /// The archive file (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// The center's data directory (embedded store).
        #[arg(long, default_value = "fleetcare-data")]
        data_dir: PathBuf,
        /// The center's PostgreSQL database instead.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Dashboard accounts: create (password from a file), list, disable.
    Accounts {
        #[command(subcommand)]
        command: access_cmd::AccountsCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// A provider's customer organizations: create (with their enrollment key), list.
    Customers {
        #[command(subcommand)]
        command: access_cmd::CustomersCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Who this token is, and what it may do.
    Whoami {
        #[command(flatten)]
        remote: Remote,
    },
    /// Rollouts: software for many devices in waves, with gates and approval.
    Rollouts {
        #[command(subcommand)]
        command: rollout_cmd::RolloutsCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Sites: time zones and maintenance windows for rollouts.
    Sites {
        #[command(subcommand)]
        command: rollout_cmd::SitesCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Units out of service: list, take one out, put it back.
    Units {
        #[command(subcommand)]
        command: compat_cmd::UnitsCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Jobs: instructions to devices (version changes, …).
    Jobs {
        #[command(subcommand)]
        command: compat_cmd::JobsCmd,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum ScheduleCmd {
    /// Every schedule.
    List,
    /// Ask a device (`--device`) or every device of a model (`--model`) every N seconds.
    Set {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// Seconds between requests (60 to 604800).
        #[arg(long)]
        every: u64,
    },
    /// Stop asking.
    Remove {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        model: Option<String>,
    },
}

#[derive(Subcommand)]
enum DevicesCmd {
    /// Devices with their model, connection and last report.
    List {
        /// Show at most this many devices.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        /// Start after this device id.
        #[arg(long)]
        after: Option<String>,
    },
    /// One device: its units and their software.
    Show { id: String },
    /// A device's structure history (units added, removed, replaced; software changed).
    History {
        id: String,
        /// The newest this many events.
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// Ask a connected device for a structure report now, and wait for it.
    RequestReport {
        id: String,
        /// Seconds to wait for the report (0: do not wait).
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Ask a connected device to send its error log now.
    RequestErrors { id: String },
    /// What the center knows about a device: troubles, recommended actions, abnormal units,
    /// settings, recent jobs, error rate against its model.
    About { id: String },
    /// Set a device's periodic reporting interval, in seconds, or `default` for the agent's own.
    SetInterval { id: String, seconds: String },
    /// Set a device's site and tags (what rollout filters select by).
    Label {
        id: String,
        #[arg(long)]
        site: Option<String>,
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Revoke a device's credential; it can enroll again only after allow-reenroll.
    Revoke { id: String },
    /// Have a connected device rotate its credential (the old one stops working once the
    /// device uses the new one).
    RotateCredential { id: String },
    /// Allow one new enrollment of an enrolled device (lost credential, new controller).
    AllowReenroll {
        id: String,
        /// How long the allowance lasts, in hours.
        #[arg(long, default_value_t = 24)]
        hours: u64,
    },
}

fn main() -> ExitCode {
    heap::no_huge_pages();
    #[cfg(feature = "heap-count")]
    heap::log();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work is bounded where it starts (store reads, file IO); a thread each for
        // a burst of it would cost memory, not speed.
        .max_blocking_threads(64)
        .on_thread_park(heap::on_park)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetcare: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Cmd::Serve {
                config,
                data_dir,
                listen,
                database_url,
            } => serve(config, data_dir, listen, database_url).await,
            Cmd::Doctor {
                data_dir,
                database_url,
                full,
            } => doctor_cmd::doctor(data_dir, database_url, full).await,
            Cmd::AuditArchive {
                before,
                out,
                data_dir,
                database_url,
            } => {
                let store = match database_url {
                    Some(url) => fleetcare_store::Store::open_postgres(&url).await?,
                    None => fleetcare_store::Store::open_sqlite(&data_dir).await?,
                };
                let done = retention_cmd::audit_archive(store.clone(), &before, &out).await;
                store.close().await?;
                done
            }
            Cmd::Backup {
                data_dir,
                artifact_dir,
                out,
            } => {
                let artifacts = artifact_dir.unwrap_or_else(|| data_dir.join("artifacts"));
                let out2 = out.clone();
                let s = tokio::task::spawn_blocking(move || {
                    fleetcare_store::backup::backup_sqlite(&data_dir, &artifacts, &out2)
                })
                .await??;
                outln!(
                    "backup written to {}: store snapshot of {} bytes (schema {}), {} artifact(s) \
                     of {} bytes, files {}",
                    out.display(),
                    s.store_bytes,
                    s.schema_version,
                    s.artifacts,
                    s.artifact_bytes,
                    s.files.join(", ")
                );
                for m in &s.missing {
                    outln!("artifact {m} is named by the store but its file is missing: listed, not held");
                }
                Ok(())
            }
            Cmd::Restore {
                database_url: Some(url),
                ..
            } => {
                let store = fleetcare_store::Store::open_postgres(&url).await?;
                let n = store.mark_restored_watermarks().await?;
                store.close().await?;
                outln!(
                    "the restored database is ready: {n} error-log watermark(s) will move over \
                     what devices sent after the dump"
                );
                Ok(())
            }
            Cmd::Restore {
                file: Some(file),
                data_dir: Some(data_dir),
                artifact_dir,
                ..
            } => {
                let artifacts = artifact_dir.unwrap_or_else(|| data_dir.join("artifacts"));
                let dir = data_dir.clone();
                let s = tokio::task::spawn_blocking(move || {
                    fleetcare_store::backup::restore_sqlite(&file, &dir, &artifacts)
                })
                .await??;
                outln!(
                    "restored into {}: store of {} bytes (schema {}), {} artifact(s) of {} bytes \
                     checked, files {}; start the center on it with `fleetcare serve --data-dir {}`",
                    data_dir.display(),
                    s.store_bytes,
                    s.schema_version,
                    s.artifacts,
                    s.artifact_bytes,
                    s.files.join(", "),
                    data_dir.display()
                );
                for m in &s.missing {
                    outln!("artifact {m} was missing when the backup was made: upload it again");
                }
                Ok(())
            }
            Cmd::Restore { .. } => {
                anyhow::bail!("restore: a backup file and --data-dir, or --database-url")
            }
            Cmd::Demo {
                listen,
                devices,
                data_dir,
                run_for,
            } => {
                // The fleet's agents run in this process; their notices would drown the demo.
                init_logs(LogFormat::Text, "warn,fleetcare_agent=error");
                demo::run(demo::DemoOptions {
                    listen,
                    devices,
                    data_dir,
                    run_for: run_for.map(Duration::from_secs),
                })
                .await
            }
            Cmd::Sim(args) => {
                init_logs(LogFormat::Text, "warn,fleetcare_agent=error");
                sim_cmd::run(args).await
            }
            Cmd::Devices { command, remote } => devices(command, &remote).await,
            Cmd::Catalog { command, remote } => compat_cmd::catalog(command, &remote).await,
            Cmd::Compat { command, remote } => compat_cmd::compat(command, &remote).await,
            Cmd::Jobs { command, remote } => compat_cmd::jobs(command, &remote).await,
            Cmd::Keys { command, remote } => delivery_cmd::keys(command, &remote).await,
            Cmd::ErrorSchedule { command, remote } => error_schedule(command, &remote).await,
            Cmd::Notify { command, remote } => notify_cmd::notify(command, &remote).await,
            Cmd::Ddi { command, remote } => ddi_cmd::ddi(command, &remote).await,
            Cmd::Retention { command, remote } => retention_cmd::retention(command, &remote).await,
            Cmd::Errors {
                id,
                since,
                code,
                limit,
                remote,
            } => errors(id, since, code, limit, &remote).await,
            Cmd::Meters {
                command: Some(c),
                remote,
                ..
            } => life_cmd::meters_cmd(c, &remote).await,
            Cmd::Meters {
                command: None,
                id,
                counters,
                since,
                until,
                every,
                remote,
            } => {
                let id = id.unwrap_or_default();
                life_cmd::meters(id, counters, since, until, every, &remote).await
            }
            Cmd::Release { command, remote } => delivery_cmd::release(command, &remote).await,
            Cmd::Rules { command, remote } => diag_cmd::rules(command, &remote).await,
            Cmd::Troubles { command, remote } => diag_cmd::troubles(command, &remote).await,
            Cmd::Units { command, remote } => compat_cmd::units(command, &remote).await,
            Cmd::Tokens { command, remote } => access_cmd::tokens(command, &remote).await,
            Cmd::Audit {
                limit,
                before,
                remote,
            } => access_cmd::audit(limit, before, &remote).await,
            Cmd::Whoami { remote } => access_cmd::whoami(&remote).await,
            Cmd::Customers { command, remote } => access_cmd::customers(command, &remote).await,
            Cmd::Accounts { command, remote } => access_cmd::accounts(command, &remote).await,
            Cmd::Rollouts { command, remote } => rollout_cmd::rollouts(command, &remote).await,
            Cmd::Sites { command, remote } => rollout_cmd::sites(command, &remote).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetcare: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETCARE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal (not in a file, a pipe or a journal).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    database_url: Option<String>,
) -> anyhow::Result<()> {
    let text = match &config {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let name = config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut cfg = ServerConfig::load(text.as_deref().map(|t| (name.as_str(), t)), &|k| {
        std::env::var(k).ok()
    })?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if database_url.is_some() {
        cfg.database_url = database_url;
    }
    init_logs(cfg.log_format, "info");
    let mut signals = fleetcare_agent::signals::Termination::install()?;
    let center = Center::start(&cfg).await?;
    let boot = &center.boot;
    outln!("Fleetcare center listening on {}", center.url());
    outln!(
        "  store:          {}",
        match &cfg.database_url {
            Some(_) => "postgres".to_owned(),
            None => format!("sqlite in {}", cfg.data_dir.display()),
        }
    );
    let verb = if boot.created { "written to" } else { "in" };
    outln!(
        "  admin token:    {verb} {}",
        boot.admin_token_path.display()
    );
    outln!(
        "  enrollment key: {verb} {}",
        boot.enrollment_key_path.display()
    );
    signals.wait().await;
    tracing::info!("shutting down");
    center.stop().await?;
    Ok(())
}

async fn error_schedule(cmd: ScheduleCmd, remote: &Remote) -> anyhow::Result<()> {
    use fleetcare_wire::errors::{ErrorSchedules, SetErrorSchedule};
    let api = remote.api()?;
    let list: ErrorSchedules = match cmd {
        ScheduleCmd::List => api.get("/api/v1/error-schedules").await?,
        ScheduleCmd::Set {
            device,
            model,
            every,
        } => {
            api.put(
                "/api/v1/error-schedules",
                &SetErrorSchedule {
                    device_id: device,
                    model,
                    interval_s: every,
                },
            )
            .await?
        }
        ScheduleCmd::Remove { device, model } => {
            api.delete(
                "/api/v1/error-schedules",
                &SetErrorSchedule {
                    device_id: device,
                    model,
                    interval_s: 0,
                },
            )
            .await?
        }
    };
    if remote.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .schedules
        .iter()
        .map(|s| {
            vec![
                s.scope.clone(),
                s.target.clone(),
                format!("{} s", s.interval_s),
                s.next_at.clone(),
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(&["SCOPE", "TARGET", "EVERY", "NEXT"], &rows)
    );
    Ok(())
}

async fn errors(
    id: String,
    since: Option<String>,
    code: Option<String>,
    limit: u32,
    remote: &Remote,
) -> anyhow::Result<()> {
    let mut path = format!("/api/v1/devices/{}/errors?limit={limit}", segment(&id)?);
    if let Some(s) = &since {
        anyhow::ensure!(
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '.' | '+')),
            "--since {s:?}: an RFC 3339 time such as 2026-11-22T08:00:00Z"
        );
        path.push_str(&format!("&since={}", s.replace('+', "%2B")));
    }
    if let Some(c) = &code {
        path.push_str(&format!("&code={}", segment(c)?));
    }
    let list: fleetcare_wire::errors::ErrorList = remote.api()?.get(&path).await?;
    if remote.json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .events
        .iter()
        .map(|e| {
            vec![
                e.at.clone(),
                format!("{}/{}", e.boot_epoch, e.seq),
                e.severity.clone(),
                if e.slot.is_empty() {
                    "-".into()
                } else {
                    e.slot.clone()
                },
                e.code.clone(),
                e.trigger.clone(),
                e.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(
            &[
                "AT", "BOOT/SEQ", "SEVERITY", "UNIT", "CODE", "SENT", "DETAIL"
            ],
            &rows
        )
    );
    if list.dropped > 0 {
        outln!(
            "the device dropped {} event(s) (its journal was full)",
            list.dropped
        );
    }
    Ok(())
}

pub(crate) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn last_report_text(r: Option<&fleetcare_wire::operator::LastReport>) -> String {
    r.map_or("never".to_owned(), |r| {
        format!("#{} {} at {}", r.seq, r.trigger.as_str(), r.received_at)
    })
}

async fn devices(cmd: DevicesCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        DevicesCmd::List { limit, after } => {
            let mut devices = Vec::new();
            let mut after = after;
            let mut more = false;
            loop {
                let page = (limit as usize - devices.len()).clamp(1, 1000);
                let mut path = format!("/api/v1/devices?limit={page}");
                if let Some(a) = &after {
                    path.push_str(&format!("&after={}", segment(a)?));
                }
                let list: DeviceList = api.get(&path).await?;
                devices.extend(list.devices);
                match list.next_after {
                    Some(n) if devices.len() < limit as usize => after = Some(n),
                    Some(_) => {
                        more = true;
                        break;
                    }
                    None => break,
                }
            }
            if remote.json {
                return print_json(&devices);
            }
            let rows: Vec<Vec<String>> = devices
                .iter()
                .map(|d| {
                    vec![
                        d.device_id.clone(),
                        d.model.clone(),
                        if d.online { "online" } else { "offline" }.to_owned(),
                        d.units.to_string(),
                        last_report_text(d.last_report.as_ref()),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(&["DEVICE", "MODEL", "STATE", "UNITS", "LAST REPORT"], &rows)
            );
            if more {
                let last = devices.last().map_or("", |d| d.device_id.as_str());
                outln!("(more devices: --after {last})");
            }
            Ok(())
        }
        DevicesCmd::Show { id } => {
            let v: Value = api
                .get(&format!("/api/v1/devices/{}", segment(&id)?))
                .await?;
            if remote.json {
                return print_json(&v);
            }
            let d: DeviceView = serde_json::from_value(v)?;
            outln!("device        {}", d.device_id);
            outln!("model         {}", d.model);
            outln!(
                "state         {}",
                if d.online { "online" } else { "offline" }
            );
            outln!("enrolled      {}", d.enrolled_at);
            outln!("last report   {}", last_report_text(d.last_report.as_ref()));
            if let Some(at) = &d.structure_changed_at {
                outln!("last change   {at}");
            }
            if let Some(s) = d.report_interval_s {
                outln!("interval      {s} s (set by the center)");
            }
            if let Some(c) = &d.compat_state {
                outln!("compatibility {c}");
            }
            if let Some(why) = &d.install_blocked {
                outln!("installs      none: {why}");
            }
            outln!();
            let rows: Vec<Vec<String>> = d
                .units
                .iter()
                .map(|u| {
                    let sw: Vec<String> = u.software.iter().map(software_label).collect();
                    vec![
                        u.slot.clone(),
                        u.kind.clone(),
                        u.model.clone(),
                        u.serial.clone(),
                        u.hw_revision.clone(),
                        sw.join(", "),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &["SLOT", "KIND", "MODEL", "SERIAL", "REV", "SOFTWARE"],
                    &rows
                )
            );
            if !d.operating.is_empty() {
                outln!();
                let rows: Vec<Vec<String>> = d
                    .operating
                    .iter()
                    .map(|(k, v)| vec![k.clone(), v.to_string()])
                    .collect();
                out!("{}", table::render(&["OPERATING", "VALUE"], &rows));
            }
            if !d.supplies.is_empty() {
                outln!();
                let list: fleetcare_wire::life::SupplyList = api
                    .get(&format!("/api/v1/devices/{}/supplies", segment(&id)?))
                    .await?;
                let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                let rows: Vec<Vec<String>> = list
                    .supplies
                    .iter()
                    .map(|st| {
                        let s = &st.supply;
                        vec![
                            s.slot.clone(),
                            s.kind.as_str().to_owned(),
                            opt(&s.color),
                            s.level_pct.map_or("?".into(), |p| format!("{p} %")),
                            s.state.as_str().to_owned(),
                            opt(&s.part_number),
                            opt(&s.serial),
                            st.days_left.map_or("-".into(), |d| d.to_string()),
                        ]
                    })
                    .collect();
                out!(
                    "{}",
                    table::render(
                        &[
                            "SUPPLY",
                            "KIND",
                            "COLOR",
                            "LEVEL",
                            "STATE",
                            "PART",
                            "SERIAL",
                            "DAYS LEFT"
                        ],
                        &rows
                    )
                );
            }
            Ok(())
        }
        DevicesCmd::History { id, limit } => {
            let h: History = api
                .get(&format!(
                    "/api/v1/devices/{}/history?limit={limit}",
                    segment(&id)?
                ))
                .await?;
            if remote.json {
                return print_json(&h);
            }
            let rows: Vec<Vec<String>> = h
                .events
                .iter()
                .map(|e| {
                    vec![
                        e.at.clone(),
                        e.trigger.as_str().to_owned(),
                        format!("#{}", e.seq),
                        describe(&e.change),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(&["OBSERVED", "TRIGGER", "REPORT", "CHANGE"], &rows)
            );
            Ok(())
        }
        DevicesCmd::About { id } => diag_cmd::about(&id, remote).await,
        DevicesCmd::Label { id, site, tags } => rollout_cmd::label(&id, site, tags, remote).await,
        DevicesCmd::RequestErrors { id } => {
            let r: RequestReportResponse = api
                .post::<(), _>(
                    &format!("/api/v1/devices/{}/request-errors", segment(&id)?),
                    None,
                )
                .await?;
            if remote.json {
                return print_json(&r);
            }
            outln!("asked {id} for its error log (via {})", r.via.as_str());
            Ok(())
        }
        DevicesCmd::RequestReport { id, wait } => {
            let started = Instant::now();
            let r: RequestReportResponse = api
                .post::<(), _>(
                    &format!(
                        "/api/v1/devices/{}/request-report?wait_s={wait}",
                        segment(&id)?
                    ),
                    None,
                )
                .await?;
            let took = started.elapsed();
            if remote.json {
                return print_json(&r);
            }
            match &r.report {
                Some(rep) => outln!(
                    "{id}: report #{} stored at {} ({} ms after the request, via {})",
                    rep.seq,
                    rep.received_at,
                    took.as_millis(),
                    r.via.as_str()
                ),
                None if wait > 0 => anyhow::bail!(
                    "{id}: asked via {}, but no report arrived within {wait} s",
                    r.via.as_str()
                ),
                None => outln!("{id}: asked via {}", r.via.as_str()),
            }
            Ok(())
        }
        DevicesCmd::SetInterval { id, seconds } => {
            let seconds = match seconds.as_str() {
                "default" => None,
                s => Some(
                    s.parse::<u64>()
                        .with_context(|| format!("{s:?}: give a number of seconds or `default`"))?,
                ),
            };
            let _: Value = api
                .put(
                    &format!("/api/v1/devices/{}/report-interval", segment(&id)?),
                    &SetReportInterval { seconds },
                )
                .await?;
            if remote.json {
                return print_json(
                    &serde_json::json!({"device_id": id, "report_interval_s": seconds}),
                );
            }
            match seconds {
                Some(s) => outln!("{id}: reports every {s} s"),
                None => outln!("{id}: reports at the agent's own interval"),
            }
            Ok(())
        }
        DevicesCmd::Revoke { id } => {
            let _: Value = api
                .post::<(), _>(&format!("/api/v1/devices/{}/revoke", segment(&id)?), None)
                .await?;
            if remote.json {
                return print_json(&serde_json::json!({"device_id": id, "revoked": true}));
            }
            outln!("{id}: credential revoked");
            Ok(())
        }
        DevicesCmd::RotateCredential { id } => {
            let _: Value = api
                .post::<(), _>(
                    &format!("/api/v1/devices/{}/rotate-credential", segment(&id)?),
                    None,
                )
                .await?;
            if remote.json {
                return print_json(
                    &serde_json::json!({"device_id": id, "rotation_requested": true}),
                );
            }
            outln!("{id}: told to rotate its credential");
            Ok(())
        }
        DevicesCmd::AllowReenroll { id, hours } => {
            let _: Value = api
                .post(
                    &format!("/api/v1/devices/{}/allow-reenroll", segment(&id)?),
                    Some(&AllowReenroll {
                        valid_s: hours * 3600,
                    }),
                )
                .await?;
            if remote.json {
                return print_json(
                    &serde_json::json!({"device_id": id, "reenroll_allowed_s": hours * 3600}),
                );
            }
            outln!("{id}: may enroll again within {hours} h");
            Ok(())
        }
    }
}
