//! `fleetcare sim`: a simulated fleet of real agents against a running center, with its
//! throughput, latencies and the center's CPU per core at the end.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fleetcare_agent::outln;
use fleetcare_agent::signals::Termination;
use fleetcare_sim::{Profile, Sim, SimOptions};

#[derive(Args, Clone)]
pub(crate) struct SimArgs {
    /// The center's URL.
    #[arg(long, env = "FLEETCARE_URL", default_value = "http://127.0.0.1:8470")]
    pub center: String,
    /// Virtual devices in this process (at most about 19,000: one descriptor each).
    #[arg(long)]
    pub devices: usize,
    /// The simulation profile (TOML; default: examples/sim.toml, built in).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Seconds to measure after every device has started (default: until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// The number of this process's first device, so that several processes share one fleet.
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// The fleet's enrollment key (default: read from --enrollment-key-file).
    #[arg(long, env = "FLEETCARE_ENROLLMENT_KEY", hide_env_values = true)]
    pub enrollment_key: Option<String>,
    /// A file holding the enrollment key.
    #[arg(long, default_value = "fleetcare-data/enrollment-key")]
    pub enrollment_key_file: PathBuf,
    /// Put this before every device id (a second fleet on the same center).
    #[arg(long)]
    pub id_prefix: Option<String>,
    /// The devices' root of trust (root.json); without it they refuse every install.
    #[arg(long)]
    pub trust_root: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub(crate) async fn run(a: SimArgs) -> anyhow::Result<()> {
    let profile = match &a.profile {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Profile::parse(&text).with_context(|| format!("{}", p.display()))?
        }
        None => Profile::parse(fleetcare_sim::profile::SAMPLE)?,
    };
    let key = match a.enrollment_key.filter(|k| !k.is_empty()) {
        Some(k) => k,
        None => std::fs::read_to_string(&a.enrollment_key_file)
            .with_context(|| {
                format!(
                    "no enrollment key: pass --enrollment-key or set FLEETCARE_ENROLLMENT_KEY; \
                     {} was not readable",
                    a.enrollment_key_file.display()
                )
            })?
            .trim()
            .to_owned(),
    };
    if a.devices == 0 {
        anyhow::bail!("--devices must be at least 1");
    }
    let mut signals = Termination::install()?;
    let tty = std::io::stderr().is_terminal() && !a.json;
    let sim = Sim::start(SimOptions {
        center_url: a.center.trim_end_matches('/').to_owned(),
        enrollment_key: key,
        devices: a.devices,
        offset: a.offset,
        profile,
        id_prefix: a.id_prefix,
        trust_root: a.trust_root,
        scratch: None,
    })
    .await?;
    let bar = if tty {
        let b = indicatif::ProgressBar::new(a.devices as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} connecting {bar:40} {pos}/{len} devices  {msg}",
            )
            .expect("a valid template"),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    // The ramp: until every device is connected (or a minute without progress).
    let mut last = (0, tokio::time::Instant::now());
    loop {
        let c = sim.connected();
        bar.set_position(u64::try_from(c).unwrap_or(0));
        bar.set_message(format!("{} reports", sim.stats.reports_total()));
        if c >= i64::try_from(a.devices).unwrap_or(i64::MAX) {
            break;
        }
        if c > last.0 {
            last = (c, tokio::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            bar.suspend(|| eprintln!("fleetcare sim: {c} of {} devices connected after a minute without progress; measuring anyway", a.devices));
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            () = signals.wait() => break,
        }
    }
    bar.finish_and_clear();
    sim.begin_window().await;
    let spinner = if tty {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .expect("a valid template"),
        );
        s
    } else {
        indicatif::ProgressBar::hidden()
    };
    let until = a
        .duration
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut prev = (sim.stats.reports_total(), tokio::time::Instant::now());
    loop {
        let tick = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            () = tick => {}
            () = signals.wait() => break,
        }
        let now = (sim.stats.reports_total(), tokio::time::Instant::now());
        let rate = (now.0 - prev.0) as f64 / (now.1 - prev.1).as_secs_f64().max(1e-9);
        prev = now;
        spinner.set_message(format!(
            "{} connected, {rate:.0} reports/s, {} error events sent",
            sim.connected(),
            sim.stats
                .error_events_sent
                .load(std::sync::atomic::Ordering::Relaxed)
        ));
        spinner.tick();
        if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
            break;
        }
    }
    spinner.finish_and_clear();
    let summary = sim.stop().await;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("the summary serializes")
        );
    } else {
        fleetcare_agent::out!("{}", summary.render());
    }
    Ok(())
}
