//! Every file in `examples/` parses, and the commented configs document every key.

use std::path::{Path, PathBuf};

use fleetcare_agent::AgentConfig;
use fleetcare_agent::source::parse_inventory;
use fleetcare_server::ServerConfig;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// `key = ` or `# key = ` at the start of a line.
fn documents(text: &str, key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    text.lines().any(|l| {
        let l = l.trim_start().trim_start_matches('#').trim_start();
        l.strip_prefix(leaf)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })
}

#[test]
fn the_center_example_config_is_valid_and_complete() {
    let path = examples().join("center.toml");
    let text = std::fs::read_to_string(&path).expect("examples/center.toml");
    let cfg = ServerConfig::load(Some(("center.toml", &text)), &|_| None).expect("valid");
    assert_eq!(
        cfg,
        ServerConfig::default(),
        "the example shows the defaults"
    );
    for key in ServerConfig::keys() {
        assert!(
            documents(&text, &key),
            "examples/center.toml does not document `{key}`"
        );
    }
}

#[test]
fn the_agent_example_config_is_valid_and_complete() {
    let path = examples().join("agent.toml");
    let text = std::fs::read_to_string(&path).expect("examples/agent.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    std::fs::write(&key, "fce_example\n").expect("write");
    let key_var = key.display().to_string();
    let env = move |k: &str| (k == "FLEETCARE_AGENT_ENROLLMENT_KEY_FILE").then(|| key_var.clone());
    let cfg = AgentConfig::load(Some(&path), &env).expect("valid");
    assert_eq!(cfg.enrollment_key.as_deref(), Some("fce_example"));
    let inventory = cfg.inventory.expect("names an inventory");
    assert!(inventory.exists(), "{} exists", inventory.display());
    for key in AgentConfig::keys() {
        assert!(
            documents(&text, &key),
            "examples/agent.toml does not document `{key}`"
        );
    }
}

#[test]
fn the_sample_catalog_is_valid_and_every_sample_device_is_compatible_with_it() {
    let text =
        std::fs::read_to_string(examples().join("catalog.toml")).expect("examples/catalog.toml");
    let vocab = fleetcare_compat::Vocab::new();
    let catalog = fleetcare_compat::Catalog::parse(&text, &vocab).unwrap_or_else(|e| panic!("{e}"));
    let stats = catalog.stats();
    assert!(
        stats.device_models >= 4 && stats.releases >= 20,
        "{stats:?}"
    );
    for entry in std::fs::read_dir(examples().join("inventories")).expect("inventories") {
        let path = entry.expect("entry").path();
        let s =
            parse_inventory(&path, &std::fs::read_to_string(&path).expect("read")).expect("parses");
        let facts = fleetcare_compat::DeviceFacts::new(&vocab, &s.model, &s.units);
        let findings: Vec<String> = catalog
            .judge(&facts)
            .iter()
            .map(|f| catalog.render(&facts, f).explanation)
            .collect();
        assert!(findings.is_empty(), "{}: {findings:#?}", path.display());
    }
}

#[test]
fn every_sample_inventory_is_a_valid_device() {
    let dir = examples().join("inventories");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/inventories") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let s = parse_inventory(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        fleetcare_core::structure::validate_report(
            &s.device_id,
            &s.model,
            s.units.clone(),
            &s.operating,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 3, "several device models");
}

#[test]
fn the_sample_simulation_profile_is_valid() {
    let text = std::fs::read_to_string(examples().join("sim.toml")).expect("examples/sim.toml");
    let p = fleetcare_sim::Profile::parse(&text).expect("valid");
    assert!(!p.errors.is_empty() && !p.models.is_empty());
    // Every key of a profile is documented in it.
    for key in [
        "speed",
        "pages_per_hour",
        "report_interval_s",
        "errors_interval_s",
        "transport",
        "poll_wait_s",
        "connect_per_s",
        "swaps_per_device_day",
        "install_failure",
        "stage_failure",
        "busy_share",
        "scenarios",
        "code",
        "unit_kind",
        "severity",
        "per_pages",
        "jam",
        "detail",
    ] {
        assert!(
            documents(&text, key),
            "examples/sim.toml does not document `{key}`"
        );
    }
}
