//! `fleetcare demo`: a center on a temporary embedded store and a fleet of real agents built
//! from the sample inventories in `examples/inventories/` (embedded in the binary, so the
//! demo runs from anywhere), each with its own device id, serials and a little variety.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use fleetcare_agent::signals::Termination;
use fleetcare_agent::source::{InventoryFile, Snapshot, parse_inventory, render_inventory};
use fleetcare_agent::{Agent, AgentConfig};
use fleetcare_server::{Center, ServerConfig};
use tokio::sync::watch;

/// The sample inventories: `(file name, text)`.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "acme-mfp-9000.toml",
        include_str!("../../../examples/inventories/acme-mfp-9000.toml"),
    ),
    (
        "acme-mfp-7000.toml",
        include_str!("../../../examples/inventories/acme-mfp-7000.toml"),
    ),
    (
        "acme-printer-p500.toml",
        include_str!("../../../examples/inventories/acme-printer-p500.toml"),
    ),
    (
        "bolt-copier-c30.toml",
        include_str!("../../../examples/inventories/bolt-copier-c30.toml"),
    ),
];

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: std::net::SocketAddr,
    pub devices: usize,
    pub data_dir: Option<PathBuf>,
    pub run_for: Option<Duration>,
}

/// Device `n` (from 0) of the demo fleet: a template with its own identity and some variety.
pub fn demo_device(n: usize) -> anyhow::Result<Snapshot> {
    let (name, text) = TEMPLATES[n % TEMPLATES.len()];
    let mut s = parse_inventory(Path::new(name), text)?;
    let prefix = s
        .device_id
        .rsplit_once('-')
        .map_or(s.device_id.as_str(), |(p, _)| p)
        .to_owned();
    let number = n + 1;
    s.device_id = format!("{prefix}-{number:06}");
    for u in &mut s.units {
        u.serial = format!("{}-{number:05}", u.serial);
    }
    // Variety: every third device of a kind lacks its optional units; every fourth runs
    // older firmware on its engine; counters differ.
    if (n / TEMPLATES.len()) % 3 == 2 {
        s.units
            .retain(|u| !matches!(u.kind.as_str(), "fax" | "finisher" | "duplexer"));
    }
    if (n / TEMPLATES.len()) % 4 == 3 {
        for u in s.units.iter_mut().filter(|u| u.kind == "engine") {
            for sw in &mut u.software {
                sw.version = older(&sw.version);
            }
        }
    }
    for (k, v) in &mut s.operating {
        if k.starts_with("pages") || k.starts_with("jams") {
            *v = (*v * (1.0 + (n % 17) as f64 / 10.0)).round();
        }
    }
    Ok(s)
}

/// A plausible older version: the last numeric segment one lower where it can be.
fn older(v: &str) -> String {
    let (head, tail) = v.split_once('-').map_or((v, None), |(h, t)| (h, Some(t)));
    let mut parts: Vec<String> = head.split('.').map(str::to_owned).collect();
    if let Some(last) = parts
        .iter_mut()
        .rev()
        .find(|p| p.parse::<u64>().is_ok_and(|n| n > 0))
    {
        *last = (last.parse::<u64>().unwrap_or(1) - 1).to_string();
    }
    let head = parts.join(".");
    match tail {
        Some(t) => format!("{head}-{t}"),
        None => head,
    }
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let mut signals = Termination::install()?;
    let temp;
    let dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("fleetcare-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    let config = ServerConfig {
        listen: opts.listen,
        data_dir: dir.join("center"),
        ..ServerConfig::default()
    };
    let center = Center::start(&config).await.with_context(|| {
        format!(
            "starting the demo center on {} (another one running? try --listen 127.0.0.1:0)",
            opts.listen
        )
    })?;
    let url = center.url();
    let (stop, shutdown) = watch::channel(false);
    let mut agents = Vec::new();
    let mut first = None;
    for n in 0..opts.devices {
        let snap = demo_device(n)?;
        let base = dir.join("devices").join(&snap.device_id);
        std::fs::create_dir_all(&base)?;
        let inventory = base.join("inventory.toml");
        std::fs::write(&inventory, render_inventory(&snap))?;
        let mut cfg = AgentConfig::new(&url, base.join("agent"));
        cfg.enrollment_key = Some(center.boot.enrollment_key.clone());
        cfg.inventory = Some(inventory.clone());
        cfg.report_interval = Duration::from_secs(300);
        first.get_or_insert((snap.device_id.clone(), inventory.clone()));
        let agent = Agent::new(cfg, InventoryFile::new(inventory));
        agents.push(tokio::spawn(agent.run(shutdown.clone())));
    }
    let token = center.boot.admin_token.clone();
    let tenant = center.boot.tenant;
    // Wait until the fleet has connected and reported.
    let started = tokio::time::Instant::now();
    loop {
        let n = center.state.store.count_devices(tenant).await?;
        let online = center.state.hub.push_connected();
        if (n as usize >= opts.devices && online >= opts.devices)
            || started.elapsed() > Duration::from_secs(30)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count = center.state.store.count_devices(tenant).await?;
    let (first_id, first_inventory) = first.unwrap_or_default();
    println!("Fleetcare demo");
    println!("  center:   {url}");
    println!("  token:    {token}");
    println!("  data dir: {}", dir.display());
    println!(
        "  devices:  {count} enrolled, {} connected",
        center.state.hub.push_connected()
    );
    println!("  API:      {url}/api/v1/openapi.json");
    println!();
    println!("Look at the fleet from another terminal:");
    println!("  export FLEETCARE_URL={url}");
    println!("  export FLEETCARE_TOKEN={token}");
    println!("  fleetcare devices list");
    println!("  fleetcare devices show {first_id}");
    println!("  fleetcare devices request-report {first_id}");
    println!("  fleetcare devices history {first_id}");
    println!("Swap a unit: change a serial in");
    println!("  {}", first_inventory.display());
    println!("and `devices history` shows the replacement within a second or two.");
    println!("Press Ctrl-C to stop.");

    tokio::select! {
        () = signals.wait() => {}
        () = async {
            match opts.run_for {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => {}
    }
    println!("stopping the demo");
    let _ = stop.send(true);
    for a in agents {
        if let Ok(Err(e)) = a.await {
            eprintln!("an agent ended with an error: {e}");
        }
    }
    center.stop().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_is_varied_and_valid() {
        let mut ids = std::collections::BTreeSet::new();
        let mut models = std::collections::BTreeSet::new();
        let mut unit_counts = std::collections::BTreeSet::new();
        for n in 0..60 {
            let s = demo_device(n).expect("template parses");
            fleetcare_core::structure::validate_report(
                &s.device_id,
                &s.model,
                s.units.clone(),
                &s.operating,
            )
            .expect("every demo device is valid");
            assert!(ids.insert(s.device_id.clone()), "unique ids");
            models.insert(s.model.clone());
            unit_counts.insert((s.model.clone(), s.units.len()));
        }
        assert_eq!(models.len(), TEMPLATES.len());
        assert!(
            unit_counts.len() > TEMPLATES.len(),
            "unit mixes vary within a model"
        );
        assert_eq!(older("2.8.0-b45"), "2.7.0-b45");
        assert_eq!(older("5.2.1"), "5.2.0");
        assert_eq!(older("1.0"), "0.0");
    }
}
