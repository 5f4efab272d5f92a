//! `fleetcare demo`: a center on a temporary embedded store and a fleet of real agents built
//! from the sample inventories in `examples/inventories/` (embedded in the binary, so the
//! demo runs from anywhere), each with its own device id, serials and a little variety.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use fleetcare_agent::outln;
use fleetcare_agent::signals::Termination;
use fleetcare_agent::source::{InventoryFile, Snapshot, parse_inventory, render_inventory};
use fleetcare_agent::{Agent, AgentConfig};
use fleetcare_server::{Center, ServerConfig};
use tokio::sync::watch;

/// Make demo keys (root and release), publish the key list, and sign and publish a release
/// with a small artifact for every release in the sample catalog (targets as the catalog
/// says), all through the operator API. The root of trust to provision onto the devices.
async fn publish_software(url: &str, token: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    use fleetcare_trust::{
        Artifact, ArtifactName, Envelope, KEYS_TYPE, KeyList, KeyPair, RELEASE_TYPE,
        ReleaseManifest, Root, Target, format_time,
    };
    use sha2::Digest;
    let root_key = KeyPair::generate();
    let release_key = KeyPair::generate();
    let root = Root {
        threshold: 1,
        keys: vec![root_key.public().clone()],
    };
    let root_path = dir.join("root.json");
    std::fs::write(&root_path, root.to_json())?;
    let expires = format_time(std::time::SystemTime::now() + Duration::from_secs(365 * 86_400));
    let list = KeyList {
        version: 1,
        expires: expires.clone(),
        threshold: 1,
        keys: vec![release_key.public().clone()],
    };
    let api = crate::client::Api::new(url, token.to_owned());
    let _: serde_json::Value = api
        .post_text(
            "/api/v1/keys",
            "application/json",
            Envelope::sign(KEYS_TYPE, &list.to_json(), &[&root_key]).to_json(),
        )
        .await?;
    let vocab = fleetcare_compat::vocab::Vocab::new();
    let catalog = fleetcare_compat::catalog::Catalog::parse(CATALOG, &vocab)
        .map_err(|e| anyhow::anyhow!("the sample catalog: {e}"))?;
    for product in catalog.products() {
        for (i, id) in product.releases.iter().enumerate() {
            let r = catalog.release(*id);
            let targets = if r.targets.is_empty() {
                &product.runs_on
            } else {
                &r.targets
            };
            let targets: Vec<Target> = targets
                .iter()
                .map(|t| {
                    let revisions = if t.hw_revisions.is_empty() {
                        catalog
                            .unit_model(t.unit_model)
                            .map(|m| m.hw_revisions.clone())
                            .unwrap_or_default()
                    } else {
                        t.hw_revisions.clone()
                    };
                    Target {
                        unit_model: catalog.text(t.unit_model).to_string(),
                        hw_revisions: revisions
                            .iter()
                            .map(|s| catalog.text(*s).to_string())
                            .collect(),
                    }
                })
                .filter(|t| !t.hw_revisions.is_empty())
                .collect();
            if targets.is_empty() {
                continue;
            }
            let (name, version) = (catalog.text(product.name), catalog.text(r.version_sym));
            let bytes = format!("{name} {version}\n").repeat(2048).into_bytes();
            let sha: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let m = ReleaseManifest {
                product: name.to_string(),
                maker: catalog.text(product.maker).to_string(),
                version: version.to_string(),
                counter: r.counter.unwrap_or(i as u64 + 1),
                targets,
                artifacts: vec![Artifact {
                    name: ArtifactName::new(&format!("{name}.bin"))?,
                    size: bytes.len() as u64,
                    sha256: sha.clone(),
                }],
                expires: expires.clone(),
            };
            let env = Envelope::sign(RELEASE_TYPE, &m.to_json(), &[&release_key]);
            let _: serde_json::Value = api
                .post_text("/api/v1/releases", "application/json", env.to_json())
                .await?;
            let file = dir.join("release.tmp");
            std::fs::write(&file, &bytes)?;
            let _: serde_json::Value = api
                .put_file(
                    &format!("/api/v1/artifacts/{sha}"),
                    &file,
                    bytes.len() as u64,
                    false,
                )
                .await?;
        }
    }
    Ok(root_path)
}

/// The sample catalog, loaded into the demo center before the fleet starts.
pub const CATALOG: &str = include_str!("../../../examples/catalog.toml");

/// The sample diagnosis rules, loaded into the demo center before the fleet starts.
pub const RULES: &str = include_str!("../../../examples/rules.toml");

/// What the demo's faulting devices log, by (template, number of the device of that
/// template): `(unit, code, times)`, and what the center makes of it.
pub const FAULTS: &[(usize, usize, &str, &str, u32, &str)] = &[
    (
        0,
        0,
        "controller",
        "SC899",
        1,
        "watchdog resets on ctl-firmware 5.2.1 (fleet-wide)",
    ),
    (
        0,
        2,
        "controller",
        "SC899",
        1,
        "watchdog resets on ctl-firmware 5.2.1 (fleet-wide)",
    ),
    (
        0,
        3,
        "controller",
        "SC899",
        1,
        "watchdog resets on ctl-firmware 5.2.1 (fleet-wide)",
    ),
    (0, 5, "fuser", "SC541", 3, "the fuser overheats repeatedly"),
    (
        0,
        6,
        "fuser",
        "SC543",
        2,
        "fuser temperature drift (the center pushes a setting)",
    ),
];

/// The demo device whose fuser runs too hot (template, number): an abnormal unit.
pub const HOT_FUSER: (usize, usize) = (0, 8);

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
    // Variety: every third device of a model lacks its optional units.
    let (template, k) = (n % TEMPLATES.len(), n / TEMPLATES.len());
    if k % 3 == 2 {
        s.units
            .retain(|u| !matches!(u.kind.as_str(), "fax" | "finisher" | "duplexer"));
    }
    scenario(&mut s, template, k);
    if (template, k) == HOT_FUSER {
        s.operating.insert("fuser_temp_c".into(), 224.0);
    }
    for (k, v) in &mut s.operating {
        if k.starts_with("pages") || k.starts_with("jams") {
            *v = (*v * (1.0 + (n % 17) as f64 / 10.0)).round();
        }
    }
    Ok(s)
}

/// What the demo's incompatible devices show, by (template, number of the device of that
/// template): every finding kind, fixed by software or advised.
pub const SCENARIOS: &[(usize, usize, &str)] = &[
    (
        0,
        1,
        "software_software: ctl-firmware 5.3.0 needs newer engine firmware (a job installs it)",
    ),
    (
        0,
        4,
        "unit_software: a revision-A controller runs 5.2.1 (a job switches to the 5.1.9 in its inactive slot)",
    ),
    (
        0,
        7,
        "unit_unit: a booklet finisher beside a dup-3 duplexer (advice; the finisher goes out of service)",
    ),
    (0, 10, "unknown_device_model: an acme-mfp-9500"),
    (
        1,
        1,
        "device_unit: an mfp-9000 fuser in an mfp-7000 (advice: a fus-5)",
    ),
    (1, 4, "unknown_unit_model: a pf-999 paper feeder"),
    (2, 1, "unknown_software: engine firmware 1.4.1-dev"),
    (
        3,
        1,
        "no software plan: a revision-A engine cannot run bolt-os 11.1 (advice: a revision-B engine)",
    ),
];

fn set_software(s: &mut Snapshot, slot: &str, product: &str, version: &str, active: bool) {
    if let Some(u) = s.units.iter_mut().find(|u| u.slot == slot) {
        match u
            .software
            .iter_mut()
            .find(|w| w.product == product && w.active == active)
        {
            Some(w) => w.version = version.into(),
            None => u.software.push(fleetcare_wire::Software {
                product: product.into(),
                maker: "acme".into(),
                version: version.into(),
                active,
            }),
        }
    }
}

fn scenario(s: &mut Snapshot, template: usize, k: usize) {
    let serial = |s: &Snapshot, slot: &str| {
        s.units
            .iter()
            .find(|u| u.slot == slot)
            .map(|u| u.serial.clone())
            .unwrap_or_default()
    };
    let unit =
        |slot: &str, kind: &str, model: &str, serial: String, sw: Vec<(&str, &str, &str)>| {
            fleetcare_wire::Unit {
                slot: slot.into(),
                kind: kind.into(),
                model: model.into(),
                serial,
                hw_revision: "A".into(),
                software: sw
                    .into_iter()
                    .map(|(p, m, v)| fleetcare_wire::Software {
                        product: p.into(),
                        maker: m.into(),
                        version: v.into(),
                        active: true,
                    })
                    .collect(),
                in_service: true,
            }
        };
    match (template, k) {
        (0, 1) => {
            set_software(s, "controller", "ctl-firmware", "5.3.0", true);
            set_software(s, "engine", "engine-firmware", "2.7.4", true);
        }
        (0, 4) => {
            if let Some(c) = s.units.iter_mut().find(|u| u.slot == "controller") {
                c.hw_revision = "A".into();
            }
            set_software(s, "controller", "pdl-interpreter", "3.3", true);
        }
        (0, 7) => {
            let (fin, dup) = (serial(s, "finisher"), serial(s, "duplexer"));
            s.units
                .retain(|u| u.slot != "finisher" && u.slot != "duplexer");
            s.units.push(unit(
                "finisher",
                "finisher",
                "fin-booklet-5",
                format!("{fin}-B"),
                vec![("finisher-firmware", "nordfin", "2.0.1")],
            ));
            s.units
                .push(unit("duplexer", "duplexer", "dup-3", dup, vec![]));
        }
        (0, 10) => s.model = "acme-mfp-9500".into(),
        (1, 1) => {
            if let Some(f) = s.units.iter_mut().find(|u| u.slot == "fuser") {
                f.model = "fus-7".into();
                f.hw_revision = "A".into();
            }
        }
        (1, 4) => {
            if let Some(f) = s.units.iter_mut().find(|u| u.slot == "tray-1") {
                f.model = "pf-999".into();
            }
        }
        (2, 1) => set_software(s, "engine", "engine-firmware", "1.4.1-dev", true),
        (3, 1) => {
            if let Some(e) = s.units.iter_mut().find(|u| u.slot == "engine") {
                e.hw_revision = "A".into();
                for w in &mut e.software {
                    w.version = "6.2-r3".into();
                }
            }
        }
        _ => {}
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
    let tenant = center.boot.tenant;
    // Signed software for every release of the sample catalog, before any device asks.
    let root = publish_software(&url, &center.boot.admin_token, &dir)
        .await
        .context("publishing the sample releases")?;
    // The sample catalog, and a policy that acts: fixes run at once, optional incompatible
    // units go out of service.
    center
        .state
        .compat
        .load_catalog(&center.state, tenant, CATALOG, "demo")
        .await
        .map_err(|e| anyhow::anyhow!("loading the sample catalog: {e}"))?;
    center
        .state
        .diag
        .load(&center.state, tenant, RULES, "demo")
        .await
        .map_err(|e| anyhow::anyhow!("loading the sample rules: {e:?}"))?;
    center
        .state
        .store
        .set_policy(
            tenant,
            &fleetcare_store::PolicyRecord {
                plan: "minimal".into(),
                fix: "automatic".into(),
                out_of_service: true,
                job_ttl_s: 7 * 24 * 3600,
            },
        )
        .await?;
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
        cfg.trust_root = Some(root.clone());
        cfg.units_dir = Some(base.join("units"));
        first.get_or_insert((snap.device_id.clone(), inventory.clone()));
        let agent = Agent::new(cfg, InventoryFile::new(inventory));
        agents.push(tokio::spawn(agent.run(shutdown.clone())));
    }
    let token = center.boot.admin_token.clone();
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
    // Some devices fault: their software logs errors, which the agents send at once.
    for &(template, k, slot, code, times, _) in FAULTS {
        let n = k * TEMPLATES.len() + template;
        if n >= opts.devices {
            continue;
        }
        let snap = demo_device(n)?;
        let journal = fleetcare_agent::journal::Journal::open(
            &dir.join("devices").join(&snap.device_id).join("agent"),
            fleetcare_agent::journal::JournalLimits::default(),
            false,
        )?;
        for _ in 0..times {
            journal.append(
                &fleetcare_agent::journal::NewEvent {
                    slot: slot.into(),
                    code: code.into(),
                    severity: "error".into(),
                    detail: Some("logged by the demo".into()),
                    ..Default::default()
                },
                fleetcare_core::clock::Clock::now_ms(&fleetcare_core::clock::SystemClock),
            )?;
        }
    }
    let count = center.state.store.count_devices(tenant).await?;
    let (first_id, first_inventory) = first.unwrap_or_default();
    outln!("Fleetcare demo");
    outln!("  center:   {url}");
    outln!("  token:    {token}");
    outln!("  data dir: {}", dir.display());
    outln!(
        "  devices:  {count} enrolled, {} connected",
        center.state.hub.push_connected()
    );
    outln!("  API:      {url}/api/v1/openapi.json");
    outln!();
    outln!("Look at the fleet from another terminal:");
    outln!("  export FLEETCARE_URL={url}");
    outln!("  export FLEETCARE_TOKEN={token}");
    outln!("  fleetcare devices list");
    outln!("  fleetcare devices show {first_id}");
    outln!("  fleetcare devices request-report {first_id}");
    outln!("  fleetcare devices history {first_id}");
    outln!();
    outln!("Compatibility (catalog: examples/catalog.toml):");
    outln!("  fleetcare compat fleet");
    for (template, k, what) in SCENARIOS {
        let n = k * TEMPLATES.len() + template;
        if n < opts.devices {
            outln!(
                "  fleetcare compat check {:<16} # {what}",
                demo_device(n)?.device_id
            );
        }
    }
    outln!("  fleetcare jobs list                 # the fixes, run by the devices themselves");
    outln!();
    outln!("Diagnosis (rules: examples/rules.toml):");
    outln!("  fleetcare rules show");
    outln!("  fleetcare troubles list");
    for &(template, k, _, _, _, what) in FAULTS {
        let n = k * TEMPLATES.len() + template;
        if n < opts.devices {
            outln!(
                "  fleetcare devices about {:<14} # {what}",
                demo_device(n)?.device_id
            );
        }
    }
    let hot = HOT_FUSER.1 * TEMPLATES.len() + HOT_FUSER.0;
    if hot < opts.devices {
        outln!(
            "  fleetcare devices about {:<14} # its fuser runs too hot: an abnormal unit",
            demo_device(hot)?.device_id
        );
    }
    outln!();
    outln!(
        "Software (signed with demo keys; the devices trust {}):",
        root.display()
    );
    outln!("  fleetcare release list");
    outln!("  fleetcare keys show");
    outln!();
    outln!("Swap a unit: change a serial in");
    outln!("  {}", first_inventory.display());
    outln!("and `devices history` shows the replacement within a second or two.");
    outln!("Press Ctrl-C to stop.");

    tokio::select! {
        () = signals.wait() => {}
        () = async {
            match opts.run_for {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => {}
    }
    outln!("stopping the demo");
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
        assert_eq!(
            models.len(),
            TEMPLATES.len() + 1,
            "the four samples and one unknown model"
        );
        assert!(
            unit_counts.len() > TEMPLATES.len(),
            "unit mixes vary within a model"
        );
    }
}
