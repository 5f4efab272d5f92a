//! The trust checks, each refusal on its own.

use std::time::{Duration, SystemTime};

use super::*;

fn key(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32])
}

fn in_days(d: u64) -> String {
    format_time(SystemTime::now() + Duration::from_secs(d * 86_400))
}

fn key_list(version: u64, threshold: usize, keys: &[&KeyPair], expires: String) -> Vec<u8> {
    KeyList {
        version,
        expires,
        threshold,
        keys: keys.iter().map(|k| k.public().clone()).collect(),
    }
    .to_json()
}

fn manifest() -> ReleaseManifest {
    ReleaseManifest {
        product: "ctl-firmware".into(),
        maker: "acme".into(),
        version: "5.3.0".into(),
        counter: 7,
        targets: vec![Target {
            unit_model: "ctl-x2".into(),
            hw_revisions: vec!["B".into(), "C".into()],
        }],
        artifacts: vec![Artifact {
            name: ArtifactName::new("ctl-5.3.0.bin").expect("valid in this test"),
            size: 3,
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
        }],
        expires: in_days(30),
    }
}

/// Root 1..=3 (threshold 2), release keys 11, 12 (threshold 1).
fn trust() -> Trust {
    let root = Root {
        threshold: 2,
        keys: vec![
            key(1).public().clone(),
            key(2).public().clone(),
            key(3).public().clone(),
        ],
    };
    let mut t = Trust::new(Root::from_json(root.to_json().as_bytes()).expect("valid in this test"));
    let env = Envelope::sign(
        KEYS_TYPE,
        &key_list(1, 1, &[&key(11), &key(12)], in_days(365)),
        &[&key(1), &key(3)],
    );
    assert_eq!(t.update_keys(&env, SystemTime::now()), Ok(true));
    t
}

fn signed_release(m: &ReleaseManifest, keys: &[&KeyPair]) -> Envelope {
    Envelope::sign(RELEASE_TYPE, &m.to_json(), keys)
}

#[test]
fn a_release_signed_by_a_current_release_key_verifies() {
    let t = trust();
    let env = Envelope::parse(
        signed_release(&manifest(), &[&key(11)])
            .to_json()
            .as_bytes(),
    )
    .expect("valid in this test");
    assert_eq!(
        t.verify_release(&env, SystemTime::now())
            .expect("valid in this test"),
        manifest()
    );
    assert!(manifest().targets_unit("ctl-x2", "C"));
    assert!(!manifest().targets_unit("ctl-x2", "A"));
    assert!(!manifest().targets_unit("ctl-x3", "B"));
}

#[test]
fn unknown_keys_do_not_count() {
    let t = trust();
    // Signed by a root key (not a release key) and by a stranger.
    let env = signed_release(&manifest(), &[&key(1), &key(99)]);
    assert_eq!(
        t.verify_release(&env, SystemTime::now()),
        Err(TrustError::Signature {
            valid: 0,
            needed: 1
        })
    );
}

#[test]
fn a_key_counts_once_toward_a_threshold() {
    let mut t = Trust::new(Root {
        threshold: 2,
        keys: vec![key(1).public().clone(), key(2).public().clone()],
    });
    let payload = key_list(1, 1, &[&key(11)], in_days(10));
    // The same root key three times is one signature, not three.
    let env = Envelope::sign(KEYS_TYPE, &payload, &[&key(1), &key(1), &key(1)]);
    assert_eq!(
        t.update_keys(&env, SystemTime::now()),
        Err(TrustError::Signature {
            valid: 1,
            needed: 2
        })
    );
    assert_eq!(t.keys, None);
    let env = Envelope::sign(KEYS_TYPE, &payload, &[&key(2), &key(1)]);
    assert_eq!(t.update_keys(&env, SystemTime::now()), Ok(true));
}

#[test]
fn a_tampered_payload_or_signature_is_refused() {
    let t = trust();
    let good = signed_release(&manifest(), &[&key(11)]);
    let mut other = manifest();
    other.version = "9.9.9".into();
    let mut tampered = good.clone();
    tampered.payload = signed_release(&other, &[]).payload;
    assert!(matches!(
        t.verify_release(&tampered, SystemTime::now()),
        Err(TrustError::Signature { valid: 0, .. })
    ));
    let mut bad_sig = good.clone();
    bad_sig.signatures[0].sig = bad_sig.signatures[0].sig.replace('A', "B");
    if bad_sig.signatures[0].sig == good.signatures[0].sig {
        bad_sig.signatures[0].sig = "AAAA".into();
    }
    assert!(t.verify_release(&bad_sig, SystemTime::now()).is_err());
    // A key list signature is not a release signature (type is covered by the signature).
    let mut retyped = good;
    retyped.payload_type = KEYS_TYPE.into();
    assert!(matches!(
        t.verify_release(&retyped, SystemTime::now()),
        Err(TrustError::WrongType { .. })
    ));
}

#[test]
fn a_rotated_key_list_revokes_a_key_without_reprovisioning() {
    let mut t = trust();
    let v2 = Envelope::sign(
        KEYS_TYPE,
        &key_list(2, 1, &[&key(12)], in_days(365)),
        &[&key(2), &key(3)],
    );
    assert_eq!(t.update_keys(&v2, SystemTime::now()), Ok(true));
    let by_revoked = signed_release(&manifest(), &[&key(11)]);
    assert!(matches!(
        t.verify_release(&by_revoked, SystemTime::now()),
        Err(TrustError::Signature { valid: 0, .. })
    ));
    assert!(
        t.verify_release(&signed_release(&manifest(), &[&key(12)]), SystemTime::now())
            .is_ok()
    );
    // The old list again is a rollback.
    let v1 = Envelope::sign(
        KEYS_TYPE,
        &key_list(1, 1, &[&key(11), &key(12)], in_days(365)),
        &[&key(1), &key(3)],
    );
    assert_eq!(
        t.update_keys(&v1, SystemTime::now()),
        Err(TrustError::Rollback {
            what: "key list",
            offered: 1,
            current: 2
        })
    );
    // A release key cannot sign a key list.
    let forged = Envelope::sign(
        KEYS_TYPE,
        &key_list(3, 1, &[&key(99)], in_days(9)),
        &[&key(12)],
    );
    assert!(t.update_keys(&forged, SystemTime::now()).is_err());
    assert_eq!(t.keys.as_ref().expect("valid in this test").version, 2);
}

#[test]
fn expired_metadata_is_refused() {
    let t = trust();
    let mut m = manifest();
    m.expires = format_time(SystemTime::now() - Duration::from_secs(1));
    assert!(matches!(
        t.verify_release(&signed_release(&m, &[&key(11)]), SystemTime::now()),
        Err(TrustError::Expired {
            what: "release",
            ..
        })
    ));
    // A frozen key list: every release is refused once it expired.
    let later = SystemTime::now() + Duration::from_secs(400 * 86_400);
    let mut m = manifest();
    m.expires = in_days(1000);
    assert!(matches!(
        t.verify_release(&signed_release(&m, &[&key(11)]), later),
        Err(TrustError::Expired {
            what: "key list",
            ..
        })
    ));
    let mut fresh = Trust::new(t.root.clone());
    let stale = Envelope::sign(
        KEYS_TYPE,
        &key_list(
            5,
            1,
            &[&key(11)],
            format_time(SystemTime::now() - Duration::from_secs(5)),
        ),
        &[&key(1), &key(2)],
    );
    assert!(matches!(
        fresh.update_keys(&stale, SystemTime::now()),
        Err(TrustError::Expired { .. })
    ));
}

#[test]
fn names_that_could_leave_a_directory_are_refused() {
    for bad in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "/etc/passwd",
        ".hidden",
        "a b",
        "ü",
        "x\0y",
        &"a".repeat(129),
    ] {
        assert!(ArtifactName::new(bad).is_err(), "{bad:?} must be refused");
    }
    for good in ["ctl-5.3.0.bin", "a", "A_b-c.d..e"] {
        assert_eq!(
            ArtifactName::new(good)
                .expect("valid in this test")
                .as_str(),
            good
        );
    }
    // Also inside a signed manifest: it does not parse.
    let text = String::from_utf8(manifest().to_json())
        .expect("valid in this test")
        .replace("ctl-5.3.0.bin", "../../boot.json");
    assert!(ReleaseManifest::from_json(text.as_bytes()).is_err());
}

#[test]
fn a_manifest_lists_every_problem() {
    let mut m = manifest();
    m.product = String::new();
    m.targets.clear();
    m.artifacts[0].sha256 = "XYZ".into();
    m.artifacts.push(m.artifacts[0].clone());
    let Err(TrustError::Malformed { detail, .. }) = m.validate() else {
        panic!("refused");
    };
    for needle in ["product", "targets", "sha256", "twice"] {
        assert!(detail.contains(needle), "{needle} in {detail}");
    }
}

#[test]
fn key_files_round_trip_and_keep_their_role() {
    let k = KeyPair::generate();
    let text = SecretKeyFile::new("release", &k).to_json();
    assert_eq!(
        SecretKeyFile::parse(text.as_bytes(), "release")
            .expect("valid in this test")
            .public(),
        k.public()
    );
    assert!(SecretKeyFile::parse(text.as_bytes(), "root").is_err());
    assert!(!format!("{k:?}").contains(&SecretKeyFile::new("release", &k).seed));
    // A public key whose id is not its hash is refused.
    let mut root = trust().root;
    root.keys.truncate(1);
    root.threshold = 1;
    let text = root
        .to_json()
        .replace(root.keys[0].keyid(), &"0".repeat(64));
    assert!(Root::from_json(text.as_bytes()).is_err());
    // Thresholds must be reachable and never zero.
    let mut r = trust().root;
    r.threshold = 4;
    assert!(Root::from_json(r.to_json().as_bytes()).is_err());
    r.threshold = 0;
    assert!(Root::from_json(r.to_json().as_bytes()).is_err());
}

#[test]
fn oversized_envelopes_are_refused_before_parsing() {
    let big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(
        Envelope::parse(&big),
        Err(TrustError::TooLarge { .. })
    ));
}
