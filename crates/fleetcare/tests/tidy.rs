//! The workspace's conventions, checked by `cargo test` rather than by reviewers. Each check
//! names the files that break it and says what to do.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn crates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    v.sort();
    v
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// The text of a source file before its `#[cfg(test)]` module: what ships.
fn shipped(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

fn fail_if_any(what: &str, offenders: Vec<String>) {
    assert!(
        offenders.is_empty(),
        "{what}:\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn manifests_inherit_from_the_workspace() {
    let mut bad = Vec::new();
    for c in crates() {
        let text = read(&c.join("Cargo.toml"));
        let manifest: toml::Table = text.parse().expect("valid TOML");
        let name = rel(&c);
        let package = manifest["package"].as_table().expect("[package]");
        if !package.contains_key("description") {
            bad.push(format!("{name}: [package] needs a description"));
        }
        for key in ["version", "edition", "rust-version", "license", "publish"] {
            let inherited = package
                .get(key)
                .and_then(|v| v.as_table())
                .and_then(|t| t.get("workspace"))
                .and_then(toml::Value::as_bool)
                == Some(true);
            if !inherited {
                bad.push(format!("{name}: `{key}.workspace = true`"));
            }
        }
        let lints = manifest
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(toml::Value::as_bool);
        if lints != Some(true) {
            bad.push(format!("{name}: [lints] workspace = true"));
        }
        for section in ["dependencies", "dev-dependencies"] {
            let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else {
                continue;
            };
            for (dep, spec) in deps {
                let ok = spec
                    .as_table()
                    .and_then(|t| t.get("workspace"))
                    .and_then(toml::Value::as_bool)
                    == Some(true);
                if !ok {
                    bad.push(format!(
                        "{name}: [{section}] {dep}: declare it in the root [workspace.dependencies] and use `{{ workspace = true }}`"
                    ));
                }
            }
        }
    }
    fail_if_any("crate manifests must inherit from the workspace", bad);
}

#[test]
fn every_source_file_says_what_it_is_for() {
    let mut bad = Vec::new();
    for c in crates() {
        let mut files = Vec::new();
        rust_files(&c.join("src"), &mut files);
        rust_files(&c.join("tests"), &mut files);
        for f in files {
            if !read(&f).trim_start().starts_with("//!") {
                bad.push(rel(&f));
            }
        }
    }
    fail_if_any(
        "start each file with a `//!` comment saying what it is for",
        bad,
    );
}

/// Library code reports through return values and `tracing`, never by printing, and uses
/// typed errors, not `anyhow` (binaries may do both).
#[test]
fn libraries_neither_print_nor_use_anyhow() {
    let mut bad = Vec::new();
    for c in crates() {
        if c.ends_with("fleetcare") || c.ends_with("testkit") {
            continue; // the fleetcare binary crate; test helpers
        }
        let mut files = Vec::new();
        rust_files(&c.join("src"), &mut files);
        // `testing.rs` modules are test support (they say loudly when a test is skipped);
        // `out.rs` is the binaries' standard output.
        for f in files.iter().filter(|f| {
            !f.ends_with("main.rs") && !f.ends_with("testing.rs") && !f.ends_with("out.rs")
        }) {
            let text = read(f);
            let code = shipped(&text);
            for needle in ["println!", "print!(", "eprintln!", "anyhow::", "use anyhow"] {
                if code.contains(needle) {
                    bad.push(format!("{}: {needle}", rel(f)));
                }
            }
        }
    }
    fail_if_any("library code must not print or use anyhow", bad);
}

#[test]
fn shipped_code_does_not_unwrap() {
    let mut bad = Vec::new();
    for c in crates() {
        if c.ends_with("testkit") {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&c.join("src"), &mut files);
        for f in files {
            let text = read(&f);
            for (i, line) in shipped(&text).lines().enumerate() {
                if line.contains(".unwrap()") && !line.trim_start().starts_with("//") {
                    bad.push(format!("{}:{}", rel(&f), i + 1));
                }
            }
        }
    }
    fail_if_any(
        "use `?`, or `expect(\"why it cannot fail\")`, instead of `.unwrap()`",
        bad,
    );
}

/// `unsafe` is denied workspace-wide; the exceptions are the agent's advice to the kernel
/// about its own pages and the center's call into mimalloc's collect, which no safe interface
/// offers. A new one is a design decision: add it here and to ARCHITECTURE.md's invariants,
/// with its SAFETY argument beside it.
#[test]
fn unsafe_code_stays_where_it_is_allowed() {
    const ALLOWED: &[&str] = &[
        "crates/agent/src/resident.rs",
        "crates/fleetcare/src/heap.rs",
    ];
    let mut bad = Vec::new();
    for c in crates() {
        let mut files = Vec::new();
        for dir in ["src", "tests", "benches", "examples", "fuzz_targets"] {
            rust_files(&c.join(dir), &mut files);
        }
        for f in files.iter().filter(|f| !f.ends_with("tidy.rs")) {
            let text = read(f);
            let allows = text.contains("allow(unsafe_code)");
            if allows && !ALLOWED.iter().any(|a| rel(f) == *a) {
                bad.push(rel(f));
            }
            if allows && !text.contains("// SAFETY:") {
                bad.push(format!("{} (no SAFETY argument)", rel(f)));
            }
        }
    }
    fail_if_any("unsafe code outside the files allowed to hold it", bad);
}

/// Tests wait for conditions (`fleetcare_testkit::eventually`), never for time.
#[test]
fn tests_do_not_sleep() {
    let mut bad = Vec::new();
    for c in crates() {
        let mut files = Vec::new();
        rust_files(&c.join("tests"), &mut files);
        for f in files.iter().filter(|f| !f.ends_with("tidy.rs")) {
            let text = read(f);
            for (i, line) in text.lines().enumerate() {
                // A scripted server's pacing (a slow peer) is behaviour under test, not a
                // wait for a condition; it says so on the line.
                if line.contains("sleep(") && !line.contains("// pacing:") {
                    bad.push(format!("{}:{}", rel(f), i + 1));
                }
            }
        }
    }
    fail_if_any("tests must await a condition, not sleep", bad);
}

#[test]
fn no_metric_is_labelled_with_a_device() {
    let text = read(&root().join("crates/server/src/metrics.rs"));
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.to_lowercase();
        if l.contains("pub device") || l.contains("device_id:") || l.contains("serial:") {
            bad.push(format!("crates/server/src/metrics.rs:{}", i + 1));
        }
    }
    fail_if_any(
        "metric labels must have bounded values: never a device id or serial",
        bad,
    );
}

#[test]
fn architecture_names_every_crate() {
    let text = read(&root().join("ARCHITECTURE.md"));
    let mut bad = Vec::new();
    for c in crates() {
        let name = rel(&c);
        if !text.contains(&format!("`{name}`")) {
            bad.push(name);
        }
    }
    fail_if_any(
        "ARCHITECTURE.md's code map must describe every crate (as `crates/<name>`)",
        bad,
    );
}

#[test]
fn the_readme_lists_every_limit() {
    let readme = read(&root().join("README.md"));
    let limits = read(&root().join("crates/core/src/limits.rs"));
    let mut bad = Vec::new();
    for line in limits.lines() {
        if let Some(rest) = line.trim().strip_prefix("pub const ") {
            let name = rest.split(':').next().unwrap_or_default().trim();
            if !readme.contains(&format!("`{name}`")) {
                bad.push(name.to_owned());
            }
        }
    }
    fail_if_any(
        "README.md's limits table must list every constant of core::limits",
        bad,
    );
}

#[test]
fn every_command_to_a_device_goes_through_the_cluster() {
    // `cluster::send` reaches a device wherever it is connected (this instance, another one,
    // the MQTT broker); the local hub alone misses the others.
    let mut files = Vec::new();
    rust_files(&root().join("crates/server/src"), &mut files);
    let offenders = files
        .iter()
        .filter(|p| {
            !p.ends_with("cluster/mod.rs")
                && !p.ends_with("cluster/listen.rs")
                && !p.ends_with("devices/hub.rs")
        })
        .filter(|p| read(p).contains("hub.send("))
        .map(|p| format!("{}: send commands with ctx.devices.send", rel(p)))
        .collect();
    fail_if_any("commands sent through the local hub only", offenders);
}

/// The modules of a crate, by path (`devices::hub`), with their source.
fn modules(krate: &str) -> Vec<(String, String)> {
    let src = root().join("crates").join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).expect("under src").with_extension("");
            let mut name = rel.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_owned();
            }
            if name == "lib" || name == "main" {
                name = "crate".to_owned();
            }
            (name, read(f))
        })
        .collect()
}

/// `crate::a::b::…` paths named in a source (in `use crate::…` and in `crate::…::` uses).
fn crate_paths(text: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    out
}

/// Sets of modules that import each other in a circle (strongly connected components of the
/// import graph, without the edges between a module and its own parents or children).
fn module_cycles(krate: &str) -> Vec<Vec<String>> {
    use std::collections::{BTreeMap, BTreeSet};
    let mods = modules(krate);
    let names: BTreeSet<&str> = mods.iter().map(|(n, _)| n.as_str()).collect();
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (m, text) in &mods {
        let edges = graph.entry(m.as_str()).or_default();
        for path in crate_paths(shipped(text)) {
            for len in (1..=path.len()).rev() {
                let target = path[..len].join("::");
                if let Some(t) = names.get(target.as_str()) {
                    let related = m.starts_with(&format!("{t}::"))
                        || t.starts_with(&format!("{m}::"))
                        || *t == m
                        || *t == "crate"
                        || m == "crate";
                    if !related {
                        edges.insert(t);
                    }
                    break;
                }
            }
        }
    }
    // Reachability closure is enough at this size: two modules are in one cycle when each
    // reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(m) = todo.pop() {
            for &n in graph.get(m).into_iter().flatten() {
                if seen.insert(n) {
                    todo.push(n);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&str, BTreeSet<&str>> = names.iter().map(|&n| (n, reach(n))).collect();
    let mut cycles: Vec<Vec<String>> = Vec::new();
    let mut placed = BTreeSet::new();
    for &a in &names {
        if placed.contains(a) || !reaches[a].contains(a) {
            continue;
        }
        let members: Vec<String> = names
            .iter()
            .filter(|&&b| reaches[a].contains(b) && reaches[b].contains(a))
            .map(|b| b.to_string())
            .collect();
        placed.extend(members.iter().cloned());
        cycles.push(members);
    }
    cycles
}

#[test]
fn modules_import_each_other_in_one_direction() {
    // A cycle ties its modules into one: none can be read, tested or moved alone.
    let mut bad = Vec::new();
    for krate in ["server", "agent", "store", "fleetcare"] {
        for c in module_cycles(krate) {
            bad.push(format!("crates/{krate}: {}", c.join(" ↔ ")));
        }
    }
    fail_if_any(
        "module cycles (move the shared item down into a module both can import)",
        bad,
    );
}

#[test]
fn the_deciding_crates_do_no_io() {
    // Decisions (compatibility, diagnosis, rollout gates, trust, shapes) are pure functions of
    // their inputs: they are tested without a runtime, a network or a database.
    const IO: &[&str] = &[
        "tokio", "sqlx", "rusqlite", "reqwest", "axum", "hyper", "rumqttc", "tracing",
    ];
    let mut bad = Vec::new();
    for krate in ["compat", "core", "diag", "rollout", "trust", "wire"] {
        let manifest: toml::Table = read(&root().join("crates").join(krate).join("Cargo.toml"))
            .parse()
            .expect("Cargo.toml");
        let deps = manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .cloned()
            .unwrap_or_default();
        for dep in deps.keys().filter(|d| IO.contains(&d.as_str())) {
            bad.push(format!("crates/{krate}/Cargo.toml: {dep}"));
        }
    }
    fail_if_any("IO crates in a deciding crate", bad);
}

#[test]
fn only_handlers_see_the_app_state() {
    // Engines take the narrow handles of `ctx::Ctx` and their collaborators at construction;
    // the whole `AppState` is for request handlers (HTTP, MQTT, the cluster listener) and for
    // the files that assemble and serve it.
    let wiring = [
        "lib.rs",
        "state.rs",
        "routes.rs",
        "center.rs",
        "cluster/listen.rs",
        "devices/mqtt.rs",
    ];
    let src = root().join("crates/server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let bad = files
        .iter()
        .filter(|f| {
            !wiring
                .iter()
                .any(|w| f.strip_prefix(&src).is_ok_and(|r| r == Path::new(w)))
        })
        .filter(|f| {
            let code: String = read(f)
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            code.contains("AppState")
                && !code.contains("State<AppState>")
                && !code.contains("FromRequestParts<AppState>")
        })
        .map(|f| format!("{}: take a &Ctx, not the AppState", rel(f)))
        .collect();
    fail_if_any("engines that see the whole AppState", bad);
}

#[test]
fn server_files_stay_small() {
    // One concern per file: the center's files stay under about 800 lines (tests included).
    let mut files = Vec::new();
    rust_files(&root().join("crates/server/src"), &mut files);
    let bad = files
        .iter()
        .filter(|f| read(f).lines().count() > 850)
        .map(|f| format!("{}: split it by concern", rel(f)))
        .collect();
    fail_if_any("files over 850 lines in crates/server", bad);
}
