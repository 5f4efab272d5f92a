//! The `rollouts` and `sites` commands, and `devices label`.

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Args, Subcommand};
use fleetcare_agent::{out, outln};
use fleetcare_wire::rollouts::{
    CreateRollout, DeviceLabels, ReleaseRef, Rollout, RolloutDevices, RolloutGates, RolloutList,
    RolloutRequirements, Site, SiteList,
};

use crate::client::{Api, segment};
use crate::table;
use crate::{Remote, print_json};

#[derive(Args)]
pub struct CreateArgs {
    /// A name for people.
    #[arg(long)]
    pub name: String,
    /// The release to deliver, `PRODUCT=VERSION`; without it every selected device is brought
    /// to its own compatibility plan.
    #[arg(long)]
    pub release: Option<String>,
    /// Which devices, in the filter language (README: Rollouts); default all.
    #[arg(long, default_value = "")]
    pub filter: String,
    /// A canary (a count or a share) and cumulative shares.
    #[arg(long, default_value = "5%,25%,100%")]
    pub waves: String,
    /// Share of a wave's finished installs that must succeed before the next wave.
    #[arg(long, default_value_t = RolloutGates::default().success_ratio)]
    pub success_ratio: f64,
    /// Pause when more than this share of finished installs failed (`none`: never by share).
    #[arg(long, default_value_t = share_or_none(RolloutGates::default().failure_ratio))]
    pub failure_ratio: String,
    /// …judged once this many installs have finished.
    #[arg(long, default_value_t = RolloutGates::default().min_finished)]
    pub min_finished: u64,
    /// Pause when this many installs failed.
    #[arg(long)]
    pub failure_count: Option<u64>,
    /// Installs at the same time.
    #[arg(long, default_value_t = RolloutGates::default().max_concurrent)]
    pub max_concurrent: u64,
    /// Each next wave waits for an operator's approval (not the creator's).
    #[arg(long)]
    pub approve_waves: bool,
    /// The rollout starts only once someone other than its creator approved it.
    #[arg(long)]
    pub require_approval: bool,
    /// Devices must be connected or have reported within this many seconds.
    #[arg(long, default_value_t = RolloutRequirements::default().online_within_s)]
    pub online_within: u64,
    /// A live trouble at or above this severity keeps a device out (`none`).
    #[arg(long, default_value_t = RolloutRequirements::default().trouble_severity)]
    pub trouble_severity: String,
    /// What an abort does to installs under way: `finish` or `revert`.
    #[arg(long, default_value = "finish")]
    pub on_abort: String,
    /// Place devices in waves with this seed (the same seed, the same waves).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Accept a release that is not published yet (or whose files are not all on the
    /// center): its jobs wait for it, and `rollouts show` says so.
    #[arg(long)]
    pub allow_unpublished: bool,
}

/// A share as `--failure-ratio` takes it: a number, or `none`.
fn share_or_none(r: Option<f64>) -> String {
    r.map_or_else(|| "none".to_owned(), |r| r.to_string())
}

#[derive(Subcommand)]
pub enum RolloutsCmd {
    /// Create a rollout (it starts at once unless it requires approval).
    Create(Box<CreateArgs>),
    /// Rollouts, newest first, with their progress.
    List,
    /// One rollout: its waves, counters and gates.
    Show {
        id: u64,
    },
    /// A rollout's devices in a state (ineligible ones with their reasons).
    Devices {
        id: u64,
        /// pending, ineligible, running, succeeded, failed, skipped, cancelled (default all).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Approve a rollout, or its next wave (not its creator).
    Approve {
        id: u64,
    },
    Pause {
        id: u64,
    },
    Resume {
        id: u64,
    },
    /// Abort: jobs not yet started are cancelled; installs under way finish (or revert).
    Abort {
        id: u64,
    },
    /// Live progress per wave, until the rollout is over (Ctrl-C to stop watching).
    Watch {
        id: u64,
        /// Seconds between looks.
        #[arg(long, default_value_t = 1)]
        every: u64,
    },
}

#[derive(Subcommand)]
pub enum SitesCmd {
    /// Set a site's time zone and maintenance windows (`--window "mon-fri 22:00-06:00"`).
    Set {
        name: String,
        #[arg(long)]
        timezone: String,
        #[arg(long = "window")]
        windows: Vec<String>,
    },
    List,
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.0}%", n as f64 * 100.0 / of as f64)
    }
}

fn summary(r: &Rollout) -> String {
    let mut o = String::new();
    let target = match &r.spec.release {
        Some(rel) => format!("{} {}", rel.product, rel.version),
        None => "each device's compatibility plan".into(),
    };
    let line = |o: &mut String, k: &str, v: String| {
        o.push_str(&format!("{k:<12}{v}\n"));
    };
    line(&mut o, "rollout", format!("{} {}", r.id, r.name));
    line(
        &mut o,
        "state",
        match &r.state_reason {
            Some(why) => format!("{} ({why})", r.state),
            None => r.state.clone(),
        },
    );
    line(&mut o, "delivers", target);
    line(
        &mut o,
        "to",
        if r.spec.filter.is_empty() {
            "every device".into()
        } else {
            r.spec.filter.clone()
        },
    );
    line(
        &mut o,
        "waves",
        format!(
            "{} (wave {} of {} started)",
            r.spec.waves,
            r.current_wave,
            r.waves.len()
        ),
    );
    line(
        &mut o,
        "gates",
        format!(
            "advance at {:.0}% success ({}), pause at {} failed{}, {} at a time",
            r.spec.gates.success_ratio * 100.0,
            r.spec.gates.advance,
            r.spec
                .gates
                .failure_ratio
                .map_or("no share".into(), |f| format!("> {:.1}%", f * 100.0)),
            r.spec
                .gates
                .failure_count
                .map_or(String::new(), |c| format!(" or {c}")),
            r.spec.gates.max_concurrent
        ),
    );
    line(
        &mut o,
        "created",
        format!(
            "by {} at {}{}",
            r.created_by,
            r.created_at,
            r.approved_by
                .as_ref()
                .map_or(String::new(), |a| format!(", approved by {a}"))
        ),
    );
    o.push('\n');
    let rows: Vec<Vec<String>> = r
        .waves
        .iter()
        .chain(std::iter::once(&r.total))
        .map(|w| {
            vec![
                if w.wave == 0 {
                    "all".into()
                } else {
                    w.wave.to_string()
                },
                w.devices.to_string(),
                w.pending.to_string(),
                w.ineligible.to_string(),
                w.running.to_string(),
                w.succeeded.to_string(),
                w.failed.to_string(),
                w.skipped.to_string(),
                pct(w.succeeded + w.skipped, w.devices),
            ]
        })
        .collect();
    o.push_str(&table::render(
        &[
            "WAVE",
            "DEVICES",
            "PENDING",
            "INELIGIBLE",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
            "SKIPPED",
            "DONE",
        ],
        &rows,
    ));
    o
}

fn create_body(a: CreateArgs) -> anyhow::Result<CreateRollout> {
    let release = match a.release {
        Some(r) => {
            let (p, v) = r
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--release PRODUCT=VERSION"))?;
            Some(ReleaseRef {
                product: p.to_owned(),
                version: v.to_owned(),
            })
        }
        None => None,
    };
    let failure_ratio = match a.failure_ratio.as_str() {
        "none" => None,
        s => Some(
            s.parse::<f64>()
                .map_err(|_| anyhow::anyhow!("--failure-ratio: a share such as 0.05, or none"))?,
        ),
    };
    Ok(CreateRollout {
        name: a.name,
        release,
        filter: a.filter,
        waves: a.waves,
        gates: RolloutGates {
            success_ratio: a.success_ratio,
            failure_ratio,
            min_finished: a.min_finished,
            failure_count: a.failure_count,
            max_concurrent: a.max_concurrent,
            advance: if a.approve_waves {
                "approval"
            } else {
                "automatic"
            }
            .into(),
        },
        requirements: RolloutRequirements {
            online_within_s: a.online_within,
            trouble_severity: a.trouble_severity,
        },
        require_approval: a.require_approval,
        on_abort: a.on_abort,
        seed: a.seed,
        allow_unpublished: a.allow_unpublished,
    })
}

async fn action(api: &Api, id: u64, verb: &str, remote: &Remote) -> anyhow::Result<()> {
    let r: Rollout = api
        .post::<(), _>(&format!("/api/v1/rollouts/{id}/{verb}"), None)
        .await?;
    if remote.json {
        return print_json(&r);
    }
    out!("{}", summary(&r));
    Ok(())
}

async fn watch(api: &Api, id: u64, every: u64, remote: &Remote) -> anyhow::Result<()> {
    let first: Rollout = api.get(&format!("/api/v1/rollouts/{id}")).await?;
    if remote.json || !std::io::stderr().is_terminal() {
        // Not a terminal: a line per look, until the rollout is over.
        let mut r = first;
        loop {
            outln!(
                "{} wave {}/{}: {} devices, {} running, {} succeeded, {} failed, {} ineligible",
                r.state,
                r.current_wave,
                r.waves.len(),
                r.total.devices,
                r.total.running,
                r.total.succeeded,
                r.total.failed,
                r.total.ineligible
            );
            if over(&r) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(every.max(1))).await;
            r = api.get(&format!("/api/v1/rollouts/{id}")).await?;
        }
    }
    let bars = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let wave_bars: Vec<indicatif::ProgressBar> = first
        .waves
        .iter()
        .map(|w| {
            let b = bars.add(indicatif::ProgressBar::new(w.devices.max(1)));
            b.set_style(style.clone());
            b.set_prefix(format!("wave {}", w.wave));
            b
        })
        .collect();
    let status = bars.add(indicatif::ProgressBar::new_spinner());
    let mut r = first;
    loop {
        for (b, w) in wave_bars.iter().zip(&r.waves) {
            b.set_length(w.devices.max(1));
            b.set_position(w.succeeded + w.failed + w.skipped);
            b.set_message(format!(
                "{} running, {} failed, {} ineligible{}",
                w.running,
                w.failed,
                w.ineligible,
                if w.started_at.is_some() {
                    ""
                } else {
                    " (not started)"
                }
            ));
        }
        status.set_message(format!(
            "rollout {} {}{}",
            r.id,
            r.state,
            r.state_reason
                .as_ref()
                .map_or(String::new(), |s| format!(": {s}"))
        ));
        status.tick();
        if over(&r) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(every.max(1))).await;
        r = api.get(&format!("/api/v1/rollouts/{id}")).await?;
    }
    for b in &wave_bars {
        b.finish();
    }
    status.finish();
    Ok(())
}

/// Nothing more will happen without an operator.
fn over(r: &Rollout) -> bool {
    match r.state.as_str() {
        "aborted" => r.total.running == 0,
        "done" | "paused" | "awaiting_approval" => true,
        _ if r.awaiting_wave.is_some() => true,
        _ => {
            r.total.pending == 0
                && r.total.running == 0
                && r.total.ineligible == 0
                && r.current_wave as usize == r.waves.len()
        }
    }
}

pub async fn rollouts(cmd: RolloutsCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        RolloutsCmd::Create(a) => {
            let body = create_body(*a)?;
            let r: Rollout = api.post("/api/v1/rollouts", Some(&body)).await?;
            if remote.json {
                return print_json(&r);
            }
            out!("{}", summary(&r));
        }
        RolloutsCmd::List => {
            let l: RolloutList = api.get("/api/v1/rollouts").await?;
            if remote.json {
                return print_json(&l);
            }
            let rows: Vec<Vec<String>> = l
                .rollouts
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.name.clone(),
                        r.state.clone(),
                        format!("{}/{}", r.current_wave, r.waves.len()),
                        r.total.devices.to_string(),
                        pct(r.total.succeeded + r.total.skipped, r.total.devices),
                        r.total.failed.to_string(),
                        r.spec
                            .release
                            .as_ref()
                            .map_or("plan".into(), |x| format!("{} {}", x.product, x.version)),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &[
                        "ID", "NAME", "STATE", "WAVE", "DEVICES", "DONE", "FAILED", "DELIVERS"
                    ],
                    &rows
                )
            );
        }
        RolloutsCmd::Show { id } => {
            let r: Rollout = api.get(&format!("/api/v1/rollouts/{id}")).await?;
            if remote.json {
                return print_json(&r);
            }
            out!("{}", summary(&r));
        }
        RolloutsCmd::Devices { id, state, limit } => {
            let path = format!(
                "/api/v1/rollouts/{id}/devices?limit={limit}{}",
                match state {
                    Some(s) => format!("&state={}", segment(&s)?),
                    None => String::new(),
                }
            );
            let d: RolloutDevices = api.get(&path).await?;
            if remote.json {
                return print_json(&d);
            }
            let rows: Vec<Vec<String>> = d
                .devices
                .iter()
                .map(|x| {
                    vec![
                        x.device_id.clone(),
                        x.wave.to_string(),
                        x.state.clone(),
                        x.job_id.map_or("-".into(), |j| j.to_string()),
                        x.waiting
                            .clone()
                            .or_else(|| x.reason.clone())
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(&["DEVICE", "WAVE", "STATE", "JOB", "REASON"], &rows)
            );
        }
        RolloutsCmd::Approve { id } => action(&api, id, "approve", remote).await?,
        RolloutsCmd::Pause { id } => action(&api, id, "pause", remote).await?,
        RolloutsCmd::Resume { id } => action(&api, id, "resume", remote).await?,
        RolloutsCmd::Abort { id } => action(&api, id, "abort", remote).await?,
        RolloutsCmd::Watch { id, every } => watch(&api, id, every, remote).await?,
    }
    Ok(())
}

pub async fn sites(cmd: SitesCmd, remote: &Remote) -> anyhow::Result<()> {
    let api = remote.api()?;
    match cmd {
        SitesCmd::Set {
            name,
            timezone,
            windows,
        } => {
            let s: Site = api
                .put(
                    &format!("/api/v1/sites/{}", segment(&name)?),
                    &Site {
                        name: name.clone(),
                        timezone,
                        windows,
                    },
                )
                .await?;
            if remote.json {
                return print_json(&s);
            }
            outln!(
                "site {}: {}, {}",
                s.name,
                s.timezone,
                if s.windows.is_empty() {
                    "installs at any time".into()
                } else {
                    format!("installs start {}", s.windows.join("; "))
                }
            );
        }
        SitesCmd::List => {
            let l: SiteList = api.get("/api/v1/sites").await?;
            if remote.json {
                return print_json(&l);
            }
            let rows: Vec<Vec<String>> = l
                .sites
                .iter()
                .map(|s| vec![s.name.clone(), s.timezone.clone(), s.windows.join("; ")])
                .collect();
            out!("{}", table::render(&["SITE", "TIMEZONE", "WINDOWS"], &rows));
        }
    }
    Ok(())
}

pub async fn label(
    id: &str,
    site: Option<String>,
    tags: Vec<String>,
    remote: &Remote,
) -> anyhow::Result<()> {
    let api = remote.api()?;
    let l: DeviceLabels = api
        .put(
            &format!("/api/v1/devices/{}/labels", segment(id)?),
            &DeviceLabels { site, tags },
        )
        .await?;
    if remote.json {
        return print_json(&l);
    }
    outln!(
        "{id}: site {}, tags {}",
        l.site.as_deref().unwrap_or("-"),
        if l.tags.is_empty() {
            "-".into()
        } else {
            l.tags.join(", ")
        }
    );
    Ok(())
}
