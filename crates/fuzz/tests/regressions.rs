//! Every fuzz target over its seeds and over every input a fuzzer ever crashed it with (kept
//! in `fuzz/regressions/<target>/` once fixed). Runs in the ordinary test suite, so a fixed
//! crash stays fixed without a fuzzer.
//!
//! `cargo test -p fleetcare-fuzz --test regressions -- --ignored write_generated_seeds`
//! writes the seeds that are made rather than written by hand (signed documents, a printer's
//! IPP answer).

use std::path::{Path, PathBuf};

use fleetcare_fuzz::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_target_survives_its_seeds_and_every_crash_found_so_far() {
    let mut ran = 0;
    for (name, target) in TARGETS {
        let seeds = inputs(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} has no seed");
        for file in &seeds {
            let data = std::fs::read(file).expect("read");
            assert!(
                target(&data),
                "{name}: the seed {} is not accepted",
                file.display()
            );
            ran += 1;
        }
        for file in inputs(&fuzz_dir().join("regressions").join(name)) {
            let data = std::fs::read(&file).expect("read");
            target(&data);
            ran += 1;
        }
        // And every prefix of the first seed: truncated input is the commonest hostile input.
        let first = std::fs::read(&seeds[0]).expect("read");
        for n in 0..first.len().min(4096) {
            target(&first[..n]);
        }
    }
    // Every directory names a target: a renamed target does not silently lose its crashes.
    for kind in ["seeds", "regressions"] {
        for dir in std::fs::read_dir(fuzz_dir().join(kind))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = dir.file_name().to_string_lossy().into_owned();
            assert!(
                name.starts_with('.') || TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{kind}/{name} names no target"
            );
        }
    }
    assert!(ran >= TARGETS.len());
}

#[test]
fn the_cargo_fuzz_project_has_exactly_these_targets() {
    let mut bins: Vec<String> = inputs(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    bins.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(
        bins, names,
        "fuzz/fuzz_targets/ and fleetcare_fuzz::TARGETS differ"
    );
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("manifest");
    for n in &names {
        assert!(
            manifest.contains(&format!("name = \"{n}\"")),
            "fuzz/Cargo.toml has no [[bin]] {n}"
        );
    }
}

/// The seeds of the signed-document and IPP targets are made here (written to `fuzz/seeds`).
#[test]
#[ignore = "writes seed files; run by hand when the formats change"]
fn write_generated_seeds() {
    use fleetcare_trust::{Envelope, KeyList, KeyPair, Root};
    let seeds = fuzz_dir().join("seeds");
    let root_key = KeyPair::from_seed(&[7; 32]);
    let release_key = KeyPair::from_seed(&[8; 32]);
    let list = KeyList {
        version: 1,
        expires: "2030-01-01T00:00:00Z".into(),
        threshold: 1,
        keys: vec![release_key.public().clone()],
    };
    let list_json = serde_json::to_vec(&list).expect("json");
    let keys = Envelope::sign(fleetcare_trust::KEYS_TYPE, &list_json, &[&root_key]);
    let manifest = serde_json::json!({
        "product": "ctl-firmware", "maker": "acme", "version": "5.3.0", "counter": 7,
        "targets": [{"unit_model": "ctl-x2", "hw_revisions": ["B"]}],
        "artifacts": [{"name": "ctl-5.3.0.bin", "size": 1024,
                       "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}],
        "expires": "2030-01-01T00:00:00Z"
    });
    let manifest_json = serde_json::to_vec(&manifest).expect("json");
    let release = Envelope::sign(
        fleetcare_trust::RELEASE_TYPE,
        &manifest_json,
        &[&release_key],
    );
    let root = Root {
        threshold: 1,
        keys: vec![root_key.public().clone()],
    };
    let dir = seeds.join("signed");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("keys-envelope.json"), keys.to_json()).expect("write");
    std::fs::write(dir.join("release-envelope.json"), release.to_json()).expect("write");
    std::fs::write(dir.join("manifest.json"), &manifest_json).expect("write");
    std::fs::write(dir.join("key-list.json"), &list_json).expect("write");
    std::fs::write(dir.join("root.json"), root.to_json()).expect("write");
}
