//! `fleetcare demo`: a center on a temporary embedded store, the sample catalog and rules,
//! signed software for the catalog's releases, and a fleet built from the sample inventories:
//! one real agent on an inventory file, the rest virtual devices of the simulator (the same
//! agent, its state in memory), some incompatible and some faulting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use fleetcare_agent::outln;
use fleetcare_agent::signals::Termination;
use fleetcare_agent::source::{InventoryFile, render_inventory};
use fleetcare_agent::{Agent, AgentConfig};
use fleetcare_server::{Center, ServerConfig};
use tokio::sync::watch;

/// Publish signed software for every release in the sample catalog (targets as the catalog
/// says), with a small artifact each, through TUF's roles and the operator API: demo keys
/// for root, targets and each maker; root 1 naming the center's online keys; a delegation per
/// maker; each maker's role listing its releases. The root of trust to provision onto the
/// devices (the signed `1.root.json`).
async fn publish_software(url: &str, token: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    use fleetcare_trust::tuf::{
        self, Common, DelegatedRole, Delegations, ReleaseCustom, RoleKeys, RootRole, TargetFile,
        TargetsRole, TufKey,
    };
    use fleetcare_trust::{KeyPair, Target};
    use sha2::Digest;
    use std::collections::BTreeMap;
    let expires = std::time::SystemTime::now() + Duration::from_secs(365 * 86_400);
    let root_key = KeyPair::generate();
    let targets_key = KeyPair::generate();
    let api = crate::client::Api::new(url, token.to_owned());
    let online: serde_json::Value = api.get("/api/v1/tuf/online-keys").await?;
    let online_key = |role: &str| -> anyhow::Result<TufKey> {
        Ok(serde_json::from_value(online[role]["key"].clone())?)
    };
    let mut keys = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for (role, k) in [
        ("root", root_key.public().to_tuf()),
        ("targets", targets_key.public().to_tuf()),
        ("snapshot", online_key("snapshot")?),
        ("timestamp", online_key("timestamp")?),
    ] {
        roles.insert(
            role.to_owned(),
            RoleKeys {
                keyids: vec![k.keyid()],
                threshold: 1,
            },
        );
        keys.insert(k.keyid(), k);
    }
    let root = tuf::sign(
        &RootRole {
            common: Common::new("root", 1, expires),
            consistent_snapshot: true,
            keys,
            roles,
        },
        &[&root_key],
    )
    .to_json();
    let root_path = dir.join("1.root.json");
    std::fs::write(&root_path, &root)?;
    let _: serde_json::Value = api
        .post_text("/api/v1/tuf/root", "application/json", root)
        .await?;

    // Every release of the catalog, by maker: its role's files, and the bytes to upload.
    let vocab = fleetcare_compat::vocab::Vocab::new();
    let catalog = fleetcare_compat::catalog::Catalog::parse(CATALOG, &vocab)
        .map_err(|e| anyhow::anyhow!("the sample catalog: {e}"))?;
    let mut makers: BTreeMap<String, BTreeMap<String, TargetFile>> = BTreeMap::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
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
            let maker = catalog.text(product.maker).to_string();
            let bytes = format!("{name} {version}\n").repeat(2048).into_bytes();
            let sha: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let file = fleetcare_trust::ArtifactName::new(&format!("{name}.bin"))?;
            let custom = ReleaseCustom {
                product: name.to_string(),
                maker: maker.clone(),
                version: version.to_string(),
                counter: r.counter.unwrap_or(i as u64 + 1),
                targets,
            };
            makers.entry(maker.clone()).or_default().insert(
                tuf::target_path(&maker, &name, &version, &file),
                TargetFile {
                    length: bytes.len() as u64,
                    hashes: BTreeMap::from([("sha256".to_owned(), sha.clone())]),
                    custom: Some(serde_json::to_value(custom)?),
                },
            );
            files.push((sha, bytes));
        }
    }

    // A delegation per maker, each to a key of its own, and each maker's role.
    let maker_keys: BTreeMap<String, KeyPair> = makers
        .keys()
        .map(|m| (m.clone(), KeyPair::generate()))
        .collect();
    let delegations = Delegations {
        keys: maker_keys
            .values()
            .map(|k| (k.public().to_tuf().keyid(), k.public().to_tuf()))
            .collect(),
        roles: maker_keys
            .iter()
            .map(|(m, k)| DelegatedRole {
                name: m.clone(),
                keyids: vec![k.public().to_tuf().keyid()],
                threshold: 1,
                terminating: true,
                paths: Some(tuf::maker_paths(m)),
                path_hash_prefixes: None,
            })
            .collect(),
    };
    let top = TargetsRole {
        common: Common::new("targets", 1, expires),
        targets: BTreeMap::new(),
        delegations: Some(delegations),
    };
    let _: serde_json::Value = api
        .post_text(
            "/api/v1/tuf/targets",
            "application/json",
            tuf::sign(&top, &[&targets_key]).to_json(),
        )
        .await?;
    for (maker, targets) in makers {
        let doc = TargetsRole {
            common: Common::new("targets", 1, expires),
            targets,
            delegations: None,
        };
        let _: serde_json::Value = api
            .post_text(
                &format!("/api/v1/tuf/makers/{}", crate::client::segment(&maker)?),
                "application/json",
                tuf::sign(&doc, &[&maker_keys[&maker]]).to_json(),
            )
            .await?;
    }
    let tmp = dir.join("release.tmp");
    for (sha, bytes) in files {
        std::fs::write(&tmp, &bytes)?;
        let _: serde_json::Value = api
            .put_file(
                &format!("/api/v1/artifacts/{sha}"),
                &tmp,
                bytes.len() as u64,
                false,
            )
            .await?;
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

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: std::net::SocketAddr,
    pub devices: usize,
    pub data_dir: Option<PathBuf>,
    pub run_for: Option<Duration>,
}

/// The demo's rollout, created by a release manager of its own (so that the demo's admin may
/// approve its waves).
async fn demo_rollout(
    url: &str,
    admin_token: &str,
) -> anyhow::Result<fleetcare_wire::rollouts::Rollout> {
    let admin = crate::client::Api::new(url, admin_token.to_owned());
    let manager: fleetcare_wire::access::CreatedToken = admin
        .post(
            "/api/v1/tokens",
            Some(&serde_json::json!({"name": "release-manager", "role": "release_engineer"})),
        )
        .await?;
    crate::client::Api::new(url, manager.token)
        .post(
            "/api/v1/rollouts",
            Some(&serde_json::json!({
                "name": "lite-2.0 on the P500 printers",
                "release": {"product": "ctl-lite-firmware", "version": "2.0.0"},
                "filter": "model = \"acme-printer-p500\"",
                "waves": "1,50%,100%",
                "gates": {"advance": "approval", "min_finished": 1},
            })),
        )
        .await
}

/// How to run this binary from another terminal: `fleetcare` when that is on the PATH and is
/// this very binary, else its full path (after `cargo run` it is under `target/`).
fn cli_command() -> String {
    let me = std::env::current_exe().and_then(|p| p.canonicalize());
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("fleetcare"))
            .find(|p| p.is_file())
            .and_then(|p| p.canonicalize().ok())
    });
    match (me, on_path) {
        (Ok(me), Some(found)) if me == found => "fleetcare".into(),
        (Ok(me), _) => me.display().to_string(),
        (Err(_), _) => "fleetcare".into(),
    }
}

fn device_id(n: usize) -> anyhow::Result<String> {
    fleetcare_sim::fleet::sample_device(n)
        .map(|s| s.device_id)
        .map_err(|e| anyhow::anyhow!(e))
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
    // Device 1 is the real agent as it runs on a device: an inventory file to edit, its data
    // dir and A/B banks on disk. The rest are the simulator's virtual devices, running the same
    // agent with their state in memory.
    let (stop, shutdown) = watch::channel(false);
    let mut first = fleetcare_sim::fleet::sample_device(0).map_err(|e| anyhow::anyhow!(e))?;
    // Its cyan toner is nearly out: a supply trouble with the part to order, from the start.
    if let Some(cyan) = first.supplies.iter_mut().find(|s| s.slot == "toner.cyan") {
        cyan.level_pct = Some(6.0);
        cyan.state = fleetcare_wire::SupplyState::Low;
    }
    let base = dir.join("devices").join(&first.device_id);
    std::fs::create_dir_all(&base)?;
    let inventory = base.join("inventory.toml");
    std::fs::write(&inventory, render_inventory(&first))?;
    let first_journal = base.join("agent");
    let real = if opts.devices > 0 {
        let mut cfg = AgentConfig::new(&url, first_journal.clone());
        cfg.enrollment_key = Some(center.boot.enrollment_key.clone());
        cfg.inventory = Some(inventory.clone());
        cfg.report_interval = Duration::from_secs(300);
        cfg.trust_root = Some(root.clone());
        cfg.units_dir = Some(base.join("units"));
        Some(tokio::spawn(
            Agent::new(cfg, InventoryFile::new(inventory.clone())).run(shutdown.clone()),
        ))
    } else {
        None
    };
    std::fs::create_dir_all(dir.join("sim"))?;
    let mut profile = fleetcare_sim::Profile::parse(fleetcare_sim::profile::SAMPLE)?;
    profile.models.clear(); // one of each sample model in turn
    profile.report_interval_s = 300;
    let sim = fleetcare_sim::Sim::start(fleetcare_sim::SimOptions {
        center_url: url.clone(),
        enrollment_key: center.boot.enrollment_key.clone(),
        devices: opts.devices.saturating_sub(1),
        offset: 1,
        profile,
        id_prefix: None,
        trust_root: Some(root.clone()),
        scratch: Some(dir.join("sim")),
    })
    .await?;
    let token = center.boot.admin_token.clone();
    // A dashboard account: `admin`, with a new password each run (shown below).
    let password = fleetcare_core::secret::generate(fleetcare_core::secret::SecretKind::Operator);
    let hash = fleetcare_server::access::session::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?;
    center
        .state
        .store
        .create_account(tenant, "admin", "admin", &hash, center.state.clock.now_ms())
        .await?;
    // Wait until the fleet has connected and reported.
    let started = tokio::time::Instant::now();
    loop {
        let n = center.state.store.count_devices(tenant).await?;
        let online = center.state.devices.hub.push_connected();
        if n as usize >= opts.devices && online >= opts.devices {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "after 30 s, {n} of the demo's {} devices are enrolled and {online} connected; \
                 going on",
                opts.devices
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Some devices fault: their software logs errors, which the agents send at once.
    for &(template, k, slot, code, times, _) in FAULTS {
        let n = k * fleetcare_sim::fleet::TEMPLATES.len() + template;
        if n >= opts.devices {
            continue;
        }
        let event = fleetcare_agent::journal::NewEvent {
            slot: slot.into(),
            code: code.into(),
            severity: "error".into(),
            detail: Some("logged by the demo".into()),
            ..Default::default()
        };
        for _ in 0..times {
            if n == 0 {
                // The real agent's journal, as `fleetcare-agent log` would write it.
                fleetcare_agent::journal::Journal::open(
                    &first_journal,
                    fleetcare_agent::journal::JournalLimits::default(),
                    false,
                )?
                .append(
                    &event,
                    fleetcare_core::clock::Clock::now_ms(&fleetcare_core::clock::SystemClock),
                )?;
            } else {
                let id = fleetcare_sim::fleet::sample_device(n).map_err(|e| anyhow::anyhow!(e))?;
                match sim.device(&id.device_id) {
                    Some(d) => {
                        d.log(&event).map_err(|e| anyhow::anyhow!(e))?;
                    }
                    None => eprintln!(
                        "the demo's device {} is not running: its {code} errors are not logged",
                        id.device_id
                    ),
                }
            }
        }
    }
    // A rollout in progress: the P500 printers' controller firmware, a canary first, made by
    // a release manager; each next wave waits for an operator's approval (yours: not its
    // creator's).
    let rollout = demo_rollout(&url, &token)
        .await
        .map_err(|e| eprintln!("the demo's rollout was not created: {e:#}"))
        .ok();
    let count = center.state.store.count_devices(tenant).await?;
    let (first_id, first_inventory) = (first.device_id.clone(), inventory.clone());
    let fc = cli_command();
    outln!("Fleetcare demo");
    outln!("  center:   {url}");
    outln!("  token:    {token}");
    outln!("  dashboard: {url}/ui/  (log in as admin, password {password})");
    outln!("  data dir: {}", dir.display());
    outln!(
        "  devices:  {count} enrolled, {} connected",
        center.state.devices.hub.push_connected()
    );
    outln!("  API:      {url}/api/v1/openapi.json");
    outln!();
    outln!("Look at the fleet from another terminal:");
    outln!("  export FLEETCARE_URL={url}");
    outln!("  export FLEETCARE_TOKEN={token}");
    outln!("  {fc} devices list");
    outln!("  {fc} devices show {first_id}");
    outln!("  {fc} devices request-report {first_id}");
    outln!("  {fc} devices history {first_id}");
    outln!();
    outln!("Compatibility (catalog: examples/catalog.toml):");
    outln!("  {fc} compat fleet");
    for (template, k, what) in fleetcare_sim::fleet::SCENARIOS {
        let n = k * fleetcare_sim::fleet::TEMPLATES.len() + template;
        if n < opts.devices {
            outln!("  {fc} compat check {:<16} # {what}", device_id(n)?);
        }
    }
    outln!("  {fc} jobs list                 # the fixes, run by the devices themselves");
    outln!();
    outln!("Diagnosis (rules: examples/rules.toml):");
    outln!("  {fc} rules show");
    outln!("  {fc} troubles list");
    for &(template, k, _, _, _, what) in FAULTS {
        let n = k * fleetcare_sim::fleet::TEMPLATES.len() + template;
        if n < opts.devices {
            outln!("  {fc} devices about {:<14} # {what}", device_id(n)?);
        }
    }
    let (t, k) = fleetcare_sim::fleet::HOT_FUSER;
    let hot = k * fleetcare_sim::fleet::TEMPLATES.len() + t;
    if hot < opts.devices {
        outln!(
            "  {fc} devices about {:<14} # its fuser runs too hot: an abnormal unit",
            device_id(hot)?
        );
    }
    outln!();
    if let Some(r) = &rollout {
        outln!(
            "A rollout in progress, by release-manager: the P500 printers, a canary first, each"
        );
        outln!("next wave after an operator's approval (yours):");
        outln!("  {fc} rollouts list");
        outln!(
            "  {fc} rollouts watch {}            # until it needs you, or ends",
            r.id
        );
        outln!(
            "  {fc} rollouts approve {}          # start the next wave",
            r.id
        );
        outln!("  {fc} rollouts devices {} --state ineligible", r.id);
        outln!();
    }
    outln!(
        "Software (TUF roles signed with demo keys; the devices trust {}):",
        root.display()
    );
    outln!("  {fc} release list");
    outln!();
    let (y, m) = fleetcare_core::meters::civil_month(fleetcare_core::clock::Clock::now_ms(
        &fleetcare_core::clock::SystemClock,
    ));
    outln!("Operating life (meters, supplies, billing reads):");
    outln!("  {fc} meters {first_id}             # counters and gauges over time, by day");
    outln!("  {fc} devices show {first_id}       # supplies with their days left");
    outln!("  {fc} meters read --period {y:04}-{m:02} --format csv   # this month's meter reads");
    outln!("  {fc} troubles list --device {first_id}   # its cyan toner is low: the part to order");
    outln!("  {url}/ui/supplies            # supplies running out, parts near their end of life");
    outln!("  (`fleetcare sim` runs a fleet whose toners run low and are replaced over time)");
    outln!();
    outln!("Swap a unit: change a serial in");
    outln!("  {}", first_inventory.display());
    outln!("and `devices history` shows the replacement within a second or two.");
    if fc != "fleetcare" {
        outln!();
        outln!("`fleetcare` is not on your PATH: the commands above name this binary. To install");
        outln!("both binaries, from the repository:");
        outln!("  cargo install --locked --path crates/fleetcare");
        outln!("  cargo install --locked --path crates/agent");
    }
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
    let summary = sim.stop().await;
    if let Some(e) = summary.first_agent_error {
        eprintln!(
            "{} simulated agent(s) ended with an error: {e}",
            summary.agents_failed
        );
    }
    if let Some(a) = real
        && let Ok(Err(e)) = a.await
    {
        eprintln!("the agent of {first_id} ended with an error: {e}");
    }
    center.stop().await?;
    Ok(())
}
