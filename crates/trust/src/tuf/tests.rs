//! The client's checks, each refusal on its own, over a repository built here: root keys 1
//! and 2 (threshold 2), targets key 3, snapshot key 4, timestamp key 5, makers acme (key 6)
//! and zenith (key 7).

use std::time::{Duration, SystemTime};

use super::*;

fn key(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32])
}

fn id(k: &KeyPair) -> String {
    k.public().to_tuf().keyid()
}

fn at(days: i64) -> SystemTime {
    let now = SystemTime::now();
    let d = Duration::from_secs(days.unsigned_abs() * 86_400);
    if days >= 0 { now + d } else { now - d }
}

fn bytes(env: &Envelope) -> Vec<u8> {
    env.to_json().into_bytes()
}

fn root_doc(version: u64, root_keys: &[&KeyPair], threshold: u64) -> RootRole {
    let mut keys = BTreeMap::new();
    let mut roles = BTreeMap::new();
    let mut role = |name: &str, ks: &[&KeyPair], threshold: u64| {
        for k in ks {
            keys.insert(id(k), k.public().to_tuf());
        }
        roles.insert(
            name.to_owned(),
            RoleKeys {
                keyids: ks.iter().map(|k| id(k)).collect(),
                threshold,
            },
        );
    };
    role("root", root_keys, threshold);
    role("targets", &[&key(3)], 1);
    role("snapshot", &[&key(4)], 1);
    role("timestamp", &[&key(5)], 1);
    RootRole {
        common: Common::new("root", version, at(365)),
        consistent_snapshot: true,
        keys,
        roles,
    }
}

fn release_target(maker: &str, product: &str, version: &str, counter: u64) -> TargetFile {
    TargetFile {
        length: 3,
        hashes: BTreeMap::from([(
            "sha256".to_owned(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned(),
        )]),
        custom: Some(
            serde_json::to_value(ReleaseCustom {
                product: product.into(),
                maker: maker.into(),
                version: version.into(),
                counter,
                targets: vec![Target {
                    unit_model: "ctl-x2".into(),
                    hw_revisions: vec!["B".into()],
                }],
            })
            .expect("json"),
        ),
    }
}

fn top_targets(version: u64) -> TargetsRole {
    let delegate = |name: &str, k: &KeyPair| DelegatedRole {
        name: name.into(),
        keyids: vec![id(k)],
        threshold: 1,
        terminating: true,
        paths: Some(maker_paths(name)),
        path_hash_prefixes: None,
    };
    TargetsRole {
        common: Common::new("targets", version, at(365)),
        targets: BTreeMap::new(),
        delegations: Some(Delegations {
            keys: [key(6), key(7)]
                .iter()
                .map(|k| (id(k), k.public().to_tuf()))
                .collect(),
            roles: vec![delegate("acme", &key(6)), delegate("zenith", &key(7))],
        }),
    }
}

fn maker_doc(version: u64, files: &[(&str, TargetFile)]) -> TargetsRole {
    TargetsRole {
        common: Common::new("targets", version, at(90)),
        targets: files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), t.clone()))
            .collect(),
        delegations: None,
    }
}

fn snapshot_doc(version: u64, roles: &[(&str, u64)]) -> SnapshotRole {
    SnapshotRole {
        common: Common::new("snapshot", version, at(30)),
        meta: roles
            .iter()
            .map(|(r, v)| (format!("{r}.json"), MetaFile::version(*v)))
            .collect(),
    }
}

fn timestamp_doc(version: u64, snapshot: u64, days: i64) -> TimestampRole {
    TimestampRole {
        common: Common::new("timestamp", version, at(days)),
        meta: BTreeMap::from([("snapshot.json".to_owned(), MetaFile::version(snapshot))]),
    }
}

/// A repository at one moment: every document, signed.
struct Repo {
    root: Vec<u8>,
    timestamp: Vec<u8>,
    snapshot: Vec<u8>,
    targets: Vec<u8>,
    acme: Vec<u8>,
    zenith: Vec<u8>,
}

const ACME_FW: &str = "acme/ctl-firmware/5.3.0/ctl.bin";
const ZENITH_FW: &str = "zenith/fin-firmware/2.0.0/fin.bin";

fn repo() -> Repo {
    Repo {
        root: bytes(&sign(
            &root_doc(1, &[&key(1), &key(2)], 2),
            &[&key(1), &key(2)],
        )),
        timestamp: bytes(&sign(&timestamp_doc(1, 1, 1), &[&key(5)])),
        snapshot: bytes(&sign(
            &snapshot_doc(1, &[("targets", 1), ("acme", 1), ("zenith", 1)]),
            &[&key(4)],
        )),
        targets: bytes(&sign(&top_targets(1), &[&key(3)])),
        acme: bytes(&sign(
            &maker_doc(
                1,
                &[(ACME_FW, release_target("acme", "ctl-firmware", "5.3.0", 7))],
            ),
            &[&key(6)],
        )),
        zenith: bytes(&sign(
            &maker_doc(
                1,
                &[(
                    ZENITH_FW,
                    release_target("zenith", "fin-firmware", "2.0.0", 2),
                )],
            ),
            &[&key(7)],
        )),
    }
}

/// The whole workflow up to the snapshot.
fn refreshed(r: &Repo) -> TrustedSet {
    let mut t = TrustedSet::new(&r.root, SystemTime::now()).expect("root");
    t.update_timestamp(&r.timestamp).expect("timestamp");
    t.update_snapshot(&r.snapshot, false).expect("snapshot");
    t.update_targets(&r.targets).expect("targets");
    t
}

/// Look a path up, loading delegated roles from the repository as asked.
fn find(t: &mut TrustedSet, r: &Repo, path: &str) -> Result<(String, TargetFile), TrustError> {
    for _ in 0..8 {
        match t.lookup(path) {
            Lookup::Found { role, target } => return Ok((role, target)),
            Lookup::NotFound => {
                return Err(TrustError::Malformed {
                    what: "target",
                    detail: "not found".into(),
                });
            }
            Lookup::Need {
                role, delegator, ..
            } => {
                let b = match role.as_str() {
                    "acme" => &r.acme,
                    "zenith" => &r.zenith,
                    other => panic!("unexpected role {other}"),
                };
                t.update_delegated(&role, &delegator, b)?;
            }
        }
    }
    panic!("lookup did not settle")
}

#[test]
fn a_release_is_found_through_its_makers_delegation() {
    let r = repo();
    let mut t = refreshed(&r);
    let (role, target) = find(&mut t, &r, ACME_FW).expect("found");
    assert_eq!(role, "acme");
    let m = release_of(
        &[(role, ACME_FW.to_owned(), target)],
        &t.targets("acme").expect("held").common.expires,
    )
    .expect("release");
    assert_eq!(
        (
            m.maker.as_str(),
            m.product.as_str(),
            m.version.as_str(),
            m.counter
        ),
        ("acme", "ctl-firmware", "5.3.0", 7)
    );
    assert!(m.targets_unit("ctl-x2", "B"));
    assert_eq!(m.artifacts[0].name.as_str(), "ctl.bin");
    assert_eq!(
        t.lookup("acme/ctl-firmware/9.9.9/ctl.bin"),
        Lookup::NotFound
    );
}

#[test]
fn key_ids_are_the_specifications() {
    // The id python-tuf and every TUF implementation compute for this key.
    let k = TufKey::ed25519("8f5a4a7e4bbf3f1a0e3b1c3d8c2c3b6b8b4f5e1e0b2f3a1c9d8e7f6a5b4c3d2e");
    let canonical = "{\"keytype\":\"ed25519\",\"keyval\":{\"public\":\"8f5a4a7e4bbf3f1a0e3b1c3d8c2c3b6b8b4f5e1e0b2f3a1c9d8e7f6a5b4c3d2e\"},\"scheme\":\"ed25519\"}";
    assert_eq!(k.keyid(), hex(&Sha256::digest(canonical.as_bytes())));
    // A root that lists a key under another id is refused (one key would count twice).
    let mut doc = root_doc(1, &[&key(1), &key(2)], 2);
    let k1 = doc.keys.remove(&id(&key(1))).expect("held");
    doc.keys.insert("00".repeat(32), k1);
    let b = bytes(&sign(&doc, &[&key(1), &key(2)]));
    assert!(matches!(
        TrustedSet::new(&b, SystemTime::now()),
        Err(TrustError::Malformed { .. })
    ));
}

#[test]
fn a_root_rotates_only_when_old_and_new_keys_sign() {
    let r = repo();
    let mut t = TrustedSet::new(&r.root, SystemTime::now()).expect("root");
    // Version 2 replaces root key 2 with key 8.
    let v2 = root_doc(2, &[&key(1), &key(8)], 2);
    // Signed by the new keys only: the old root's threshold (keys 1 and 2) is not met.
    let new_only = bytes(&sign(&v2, &[&key(1), &key(8)]));
    assert_eq!(
        t.update_root(&new_only),
        Err(TrustError::Signature {
            valid: 1,
            needed: 2
        })
    );
    // Signed by the old keys only: its own threshold is not met.
    let old_only = bytes(&sign(&v2, &[&key(1), &key(2)]));
    assert!(matches!(
        t.update_root(&old_only),
        Err(TrustError::Signature { .. })
    ));
    // Skipping a version is refused.
    let v3 = bytes(&sign(
        &root_doc(3, &[&key(1), &key(8)], 2),
        &[&key(1), &key(2), &key(8)],
    ));
    assert!(matches!(
        t.update_root(&v3),
        Err(TrustError::Rollback { .. })
    ));
    let both = bytes(&sign(&v2, &[&key(1), &key(2), &key(8)]));
    t.update_root(&both).expect("rotated");
    assert_eq!(t.root().common.version, 2);
    // Replaying version 1 now is a rollback.
    assert!(matches!(
        t.update_root(&r.root),
        Err(TrustError::Rollback { .. }) | Err(TrustError::Signature { .. })
    ));
}

#[test]
fn an_expired_timestamp_is_a_freeze() {
    let r = repo();
    let mut t = TrustedSet::new(&r.root, SystemTime::now()).expect("root");
    let stale = bytes(&sign(&timestamp_doc(2, 1, -1), &[&key(5)]));
    assert!(matches!(
        t.update_timestamp(&stale),
        Err(TrustError::Expired {
            what: "timestamp",
            ..
        })
    ));
    // Nothing can be trusted past it.
    assert!(t.update_snapshot(&r.snapshot, false).is_err());
}

#[test]
fn a_timestamp_signed_by_another_key_is_refused() {
    let r = repo();
    let mut t = TrustedSet::new(&r.root, SystemTime::now()).expect("root");
    // The snapshot key may not sign a timestamp.
    let wrong = bytes(&sign(&timestamp_doc(2, 1, 1), &[&key(4)]));
    assert!(matches!(
        t.update_timestamp(&wrong),
        Err(TrustError::Signature { .. })
    ));
}

#[test]
fn rollbacks_of_timestamp_and_snapshot_are_refused() {
    let r = repo();
    let mut t = TrustedSet::new(&r.root, SystemTime::now()).expect("root");
    // The client held timestamp 5 naming snapshot 5.
    let held = bytes(&sign(&timestamp_doc(5, 5, 1), &[&key(5)]));
    t.update_timestamp(&held).expect("held");
    assert!(matches!(
        t.update_timestamp(&r.timestamp),
        Err(TrustError::Rollback {
            what: "timestamp",
            ..
        })
    ));
    let lower_snapshot = bytes(&sign(&timestamp_doc(6, 4, 1), &[&key(5)]));
    assert!(matches!(
        t.update_timestamp(&lower_snapshot),
        Err(TrustError::Rollback {
            what: "snapshot",
            ..
        })
    ));
    // A snapshot that lowers a maker's role version below the one held: the client stored
    // snapshot 1 naming acme 4; a new session with timestamp 2 loads it as the floor (held,
    // though it is no longer the final snapshot), then the new snapshot 2 names acme 3.
    let held = bytes(&sign(
        &snapshot_doc(1, &[("targets", 1), ("acme", 4), ("zenith", 1)]),
        &[&key(4)],
    ));
    let mut t = TrustedSet::new(&r.root, SystemTime::now()).expect("root");
    t.update_timestamp(&bytes(&sign(&timestamp_doc(2, 2, 1), &[&key(5)])))
        .expect("timestamp");
    assert!(matches!(
        t.update_snapshot(&held, true),
        Err(TrustError::Malformed {
            what: "snapshot",
            ..
        })
    ));
    let rolled = bytes(&sign(
        &snapshot_doc(2, &[("targets", 1), ("acme", 3), ("zenith", 1)]),
        &[&key(4)],
    ));
    assert!(matches!(
        t.update_snapshot(&rolled, false),
        Err(TrustError::Rollback { .. })
    ));
    // The same snapshot without the lowered version is accepted.
    let fine = bytes(&sign(
        &snapshot_doc(2, &[("targets", 1), ("acme", 4), ("zenith", 1)]),
        &[&key(4)],
    ));
    t.update_snapshot(&fine, false).expect("snapshot 2");
}

#[test]
fn a_role_of_another_moment_is_mix_and_match() {
    let r = repo();
    let mut t = refreshed(&r);
    // The snapshot names acme version 1; version 2 (a real, maker-signed document) is not it.
    let acme2 = bytes(&sign(
        &maker_doc(
            2,
            &[(ACME_FW, release_target("acme", "ctl-firmware", "5.3.0", 7))],
        ),
        &[&key(6)],
    ));
    assert!(matches!(
        t.update_delegated("acme", "targets", &acme2),
        Err(TrustError::Malformed {
            what: "targets",
            ..
        })
    ));
    // A snapshot other than the one the timestamp names.
    let mut t = TrustedSet::new(&r.root, SystemTime::now()).expect("root");
    t.update_timestamp(&r.timestamp).expect("timestamp");
    let other = bytes(&sign(
        &snapshot_doc(2, &[("targets", 1), ("acme", 1), ("zenith", 1)]),
        &[&key(4)],
    ));
    assert!(matches!(
        t.update_snapshot(&other, false),
        Err(TrustError::Malformed {
            what: "snapshot",
            ..
        })
    ));
}

#[test]
fn one_makers_key_never_vouches_for_another_makers_software() {
    let r = repo();
    // zenith's role signed by acme's key.
    let forged = bytes(&sign(
        &maker_doc(
            1,
            &[(
                ZENITH_FW,
                release_target("zenith", "fin-firmware", "6.6.6", 99),
            )],
        ),
        &[&key(6)],
    ));
    let mut t = refreshed(&r);
    assert!(matches!(
        t.update_delegated("zenith", "targets", &forged),
        Err(TrustError::Signature { .. })
    ));
    // acme's own role listing a zenith path: the lookup of zenith's path never asks acme.
    let sneaky = Repo {
        acme: bytes(&sign(
            &maker_doc(
                1,
                &[(
                    ZENITH_FW,
                    release_target("zenith", "fin-firmware", "6.6.6", 99),
                )],
            ),
            &[&key(6)],
        )),
        ..repo()
    };
    let mut t = refreshed(&sneaky);
    let (role, target) = find(&mut t, &sneaky, ZENITH_FW).expect("zenith's own");
    assert_eq!(role, "zenith");
    let m =
        release_of(&[(role, ZENITH_FW.into(), target)], "2099-01-01T00:00:00Z").expect("release");
    assert_eq!(m.version, "2.0.0");
    // And a file whose release fields name another maker is refused even in its role.
    let lying = release_target("zenith", "ctl-firmware", "5.3.0", 7);
    assert!(
        release_of(
            &[("acme".into(), ACME_FW.into(), lying)],
            "2099-01-01T00:00:00Z"
        )
        .is_err()
    );
}

#[test]
fn an_unsigned_root_steps_onto_the_chain_once() {
    let legacy = crate::Root {
        threshold: 2,
        keys: vec![key(1).public().clone(), key(2).public().clone()],
    };
    let r = repo();
    let t = TrustedSet::migrate(&legacy, &r.root, SystemTime::now()).expect("migrated");
    assert_eq!(t.root().common.version, 1);
    // A first root signed by keys the legacy root does not hold is refused.
    let other = bytes(&sign(
        &root_doc(1, &[&key(8), &key(9)], 2),
        &[&key(8), &key(9)],
    ));
    assert!(matches!(
        TrustedSet::migrate(&legacy, &other, SystemTime::now()),
        Err(TrustError::Signature { .. })
    ));
    // Only version 1 is the step.
    let v2 = bytes(&sign(
        &root_doc(2, &[&key(1), &key(2)], 2),
        &[&key(1), &key(2)],
    ));
    assert!(TrustedSet::migrate(&legacy, &v2, SystemTime::now()).is_err());
}

#[test]
fn path_patterns_match_segment_by_segment() {
    let r = DelegatedRole {
        name: "acme".into(),
        keyids: vec![],
        threshold: 1,
        terminating: true,
        paths: Some(maker_paths("acme")),
        path_hash_prefixes: None,
    };
    assert!(r.matches("acme/p/1.0/f.bin"));
    assert!(!r.matches("acme/p/1.0/sub/f.bin"));
    assert!(!r.matches("acme/p/f.bin"));
    assert!(!r.matches("acmex/p/1.0/f.bin"));
    assert!(!r.matches("zenith/p/1.0/f.bin"));
    assert!(glob(b"f?.b*", b"f1.bin"));
    assert!(!glob(b"f?.b*", b"f12.bin"));
}

#[test]
fn metadata_is_bounded_and_typed() {
    let big = vec![b' '; MAX_METADATA_BYTES + 1];
    assert!(matches!(
        TrustedSet::new(&big, SystemTime::now()),
        Err(TrustError::TooLarge { .. })
    ));
    let r = repo();
    // A timestamp offered as a root.
    assert!(matches!(
        TrustedSet::new(&r.timestamp, SystemTime::now()),
        Err(TrustError::WrongType { .. })
    ));
    // The legacy payload type is not TUF's.
    let env = Envelope::sign(crate::KEYS_TYPE, b"{}", &[&key(1)]);
    assert!(matches!(
        TrustedSet::new(&bytes(&env), SystemTime::now()),
        Err(TrustError::WrongType { .. })
    ));
}
