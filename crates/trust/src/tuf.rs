//! TUF's roles (specification 1.0), each document in a DSSE envelope of payload type
//! [`TUF_TYPE`], as python-tuf's client reads them with envelope type SIMPLE: root,
//! timestamp, snapshot, targets with a delegation per maker, and the maker's own targets
//! metadata listing its releases (see ARCHITECTURE.md, "Software delivery with TUF roles").
//!
//! [`TrustedSet`] is the client's side: the checks of the specification's client workflow
//! (5.3 root chain, 5.4 timestamp, 5.5 snapshot, 5.6 targets and delegations) over bytes the
//! caller fetched, in the same order and with the same outcomes as python-tuf's
//! `TrustedMetadataSet`. It does no IO: the caller fetches what [`TrustedSet::lookup`] asks
//! for.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::hex;
use crate::{
    Artifact, ArtifactName, Envelope, KeyPair, MAX_SIGNATURES, PublicKey, ReleaseManifest,
    Signature, Target, TrustError, is_sha256_hex, pae, parse_time,
};

/// The payload type of every TUF document.
pub const TUF_TYPE: &str = "application/vnd.tuf+json";
/// The specification version written into documents.
pub const SPEC_VERSION: &str = "1.0.31";
/// The largest metadata document accepted, encoded (a maker's role lists all its releases).
pub const MAX_METADATA_BYTES: usize = 1 << 20;
/// The most root versions one refresh walks through.
pub const MAX_ROOT_ROTATIONS: u64 = 32;
/// The most delegated roles one target lookup visits.
pub const MAX_DELEGATIONS: usize = 32;
/// The most keys or roles one document may list.
const MAX_ENTRIES: usize = 256;

/// A public key as TUF writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TufKey {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    /// Hex of the 32-byte ed25519 key.
    pub public: String,
}

fn canonical_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl TufKey {
    pub fn ed25519(public_hex: &str) -> TufKey {
        TufKey {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: public_hex.to_owned(),
            },
        }
    }

    /// The specification's key id: the hex SHA-256 of the key's canonical JSON.
    pub fn keyid(&self) -> String {
        let canonical = format!(
            "{{\"keytype\":{},\"keyval\":{{\"public\":{}}},\"scheme\":{}}}",
            canonical_str(&self.keytype),
            canonical_str(&self.keyval.public),
            canonical_str(&self.scheme)
        );
        hex(&Sha256::digest(canonical.as_bytes()))
    }

    /// The key, if it is one this client verifies with (ed25519 only).
    pub fn public(&self) -> Option<PublicKey> {
        if self.keytype != "ed25519" || self.scheme != "ed25519" {
            return None;
        }
        PublicKey::from_hex(&self.keyval.public)
    }
}

/// The keys of one role and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
}

/// What every document has.
pub trait Signed: Serialize + DeserializeOwned {
    const TYPE: &'static str;
    fn common(&self) -> &Common;
    /// Checks of the document's own content beyond its fields' types.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The fields every document shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Common {
    #[serde(rename = "_type")]
    pub kind: String,
    pub spec_version: String,
    pub version: u64,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub expires: String,
}

impl Common {
    pub fn new(kind: &str, version: u64, expires: SystemTime) -> Common {
        Common {
            kind: kind.to_owned(),
            spec_version: SPEC_VERSION.to_owned(),
            version,
            expires: crate::format_time(expires),
        }
    }

    fn expired(&self, now: SystemTime) -> Result<bool, TrustError> {
        Ok(parse_time("metadata", &self.expires)? <= now)
    }
}

/// The root role's document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRole {
    #[serde(flatten)]
    pub common: Common,
    pub consistent_snapshot: bool,
    pub keys: BTreeMap<String, TufKey>,
    pub roles: BTreeMap<String, RoleKeys>,
}

/// A metadata file another document names, by version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

impl MetaFile {
    pub fn version(version: u64) -> MetaFile {
        MetaFile {
            version,
            length: None,
            hashes: None,
        }
    }

    /// The bytes of the file, if length or hashes are given.
    fn check_bytes(&self, what: &str, bytes: &[u8]) -> Result<(), TrustError> {
        if let Some(len) = self.length
            && len != bytes.len() as u64
        {
            return Err(TrustError::Malformed {
                what: "metadata",
                detail: format!("{what} is {} bytes, {len} were announced", bytes.len()),
            });
        }
        if let Some(h) = &self.hashes {
            let Some(want) = h.get("sha256") else {
                return Err(TrustError::Malformed {
                    what: "metadata",
                    detail: format!("{what}: no sha256 among the announced hashes"),
                });
            };
            if hex(&Sha256::digest(bytes)) != *want {
                return Err(TrustError::Malformed {
                    what: "metadata",
                    detail: format!("{what} does not have the announced sha256"),
                });
            }
        }
        Ok(())
    }
}

/// The timestamp role's document: the snapshot's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimestampRole {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
}

/// The snapshot role's document: the version of every targets role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRole {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
}

/// A file a targets role vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

/// What a release's files carry in `custom`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseCustom {
    pub product: String,
    pub maker: String,
    pub version: String,
    pub counter: u64,
    pub targets: Vec<Target>,
}

/// One delegation: a role, its keys, and the target paths it may vouch for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u64,
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegations {
    pub keys: BTreeMap<String, TufKey>,
    pub roles: Vec<DelegatedRole>,
}

/// A targets role's document (the top-level one, or a maker's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetsRole {
    #[serde(flatten)]
    pub common: Common,
    pub targets: BTreeMap<String, TargetFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
}

/// The top-level roles.
pub const TOP_LEVEL: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

fn check_role_keys(
    what: &str,
    keys: &BTreeMap<String, TufKey>,
    keyids: &[String],
    threshold: u64,
) -> Result<(), String> {
    if keyids.is_empty() || keyids.len() > MAX_ENTRIES {
        return Err(format!("{what}: 1 to {MAX_ENTRIES} keys are needed"));
    }
    if threshold == 0 || threshold > keyids.len() as u64 {
        return Err(format!(
            "{what}: threshold {threshold} with {} keys: it must be 1 to the number of keys",
            keyids.len()
        ));
    }
    let distinct: BTreeSet<&String> = keyids.iter().collect();
    if distinct.len() != keyids.len() {
        return Err(format!("{what}: a key is listed twice"));
    }
    if let Some(k) = keyids.iter().find(|k| !keys.contains_key(*k)) {
        return Err(format!("{what}: key {k} is not among the document's keys"));
    }
    Ok(())
}

/// Every key listed under its own id (so that one key never counts twice under two ids).
fn check_keys(keys: &BTreeMap<String, TufKey>) -> Result<(), String> {
    if keys.len() > MAX_ENTRIES {
        return Err(format!("more than {MAX_ENTRIES} keys"));
    }
    for (id, k) in keys {
        if k.keyid() != *id {
            return Err(format!("key id {id} is not the id of the key it names"));
        }
    }
    Ok(())
}

impl Signed for RootRole {
    const TYPE: &'static str = "root";
    fn common(&self) -> &Common {
        &self.common
    }
    fn check(&self) -> Result<(), String> {
        check_keys(&self.keys)?;
        for r in TOP_LEVEL {
            let Some(role) = self.roles.get(r) else {
                return Err(format!("no {r} role"));
            };
            check_role_keys(r, &self.keys, &role.keyids, role.threshold)?;
        }
        Ok(())
    }
}

impl Signed for TimestampRole {
    const TYPE: &'static str = "timestamp";
    fn common(&self) -> &Common {
        &self.common
    }
    fn check(&self) -> Result<(), String> {
        if self.meta.len() != 1 || !self.meta.contains_key("snapshot.json") {
            return Err("a timestamp names snapshot.json and nothing else".into());
        }
        Ok(())
    }
}

impl Signed for SnapshotRole {
    const TYPE: &'static str = "snapshot";
    fn common(&self) -> &Common {
        &self.common
    }
    fn check(&self) -> Result<(), String> {
        if !self.meta.contains_key("targets.json") {
            return Err("a snapshot names targets.json".into());
        }
        if self.meta.len() > 4 * MAX_ENTRIES {
            return Err("too many roles".into());
        }
        Ok(())
    }
}

impl Signed for TargetsRole {
    const TYPE: &'static str = "targets";
    fn common(&self) -> &Common {
        &self.common
    }
    fn check(&self) -> Result<(), String> {
        if let Some(d) = &self.delegations {
            check_keys(&d.keys)?;
            if d.roles.len() > MAX_ENTRIES {
                return Err(format!("more than {MAX_ENTRIES} delegations"));
            }
            let mut names = BTreeSet::new();
            for r in &d.roles {
                if !names.insert(r.name.as_str()) {
                    return Err(format!("role {} is delegated twice", r.name));
                }
                if TOP_LEVEL.contains(&r.name.as_str()) || !plain_role_name(&r.name) {
                    return Err(format!("{:?} cannot be a delegated role's name", r.name));
                }
                check_role_keys(&r.name, &d.keys, &r.keyids, r.threshold)?;
                if r.paths.is_some() == r.path_hash_prefixes.is_some() {
                    return Err(format!(
                        "role {}: exactly one of paths and path_hash_prefixes",
                        r.name
                    ));
                }
            }
        }
        for (path, t) in &self.targets {
            match t.hashes.get("sha256") {
                Some(h) if is_sha256_hex(h) => {}
                _ => {
                    return Err(format!(
                        "target {path}: no sha256 of 64 lower-case hex digits"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A role name that is also a safe file name (`N.<role>.json`).
fn plain_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Sign a document with every key given; the payload is its JSON.
pub fn sign<T: Signed>(doc: &T, keys: &[&KeyPair]) -> Envelope {
    let payload = serde_json::to_vec(doc).expect("a document serializes");
    let msg = pae(TUF_TYPE, &payload);
    Envelope {
        payload: B64.encode(&payload),
        payload_type: TUF_TYPE.to_owned(),
        signatures: keys
            .iter()
            .map(|k| Signature {
                keyid: k.public().to_tuf().keyid(),
                sig: B64.encode(k.sign(&msg)),
            })
            .collect(),
    }
}

/// An envelope's JSON, bounded in size.
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope, TrustError> {
    if bytes.len() > MAX_METADATA_BYTES {
        return Err(TrustError::TooLarge {
            what: "metadata",
            size: bytes.len(),
            max: MAX_METADATA_BYTES,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| TrustError::Malformed {
        what: "envelope",
        detail: e.to_string(),
    })
}

/// The payload of an envelope and the document in it, not yet verified.
fn open<T: Signed>(env: &Envelope) -> Result<(Vec<u8>, T), TrustError> {
    if env.payload_type != TUF_TYPE {
        return Err(TrustError::WrongType {
            expected: TUF_TYPE.to_owned(),
            found: env.payload_type.clone(),
        });
    }
    let payload = B64
        .decode(&env.payload)
        .map_err(|e| TrustError::Malformed {
            what: "payload",
            detail: e.to_string(),
        })?;
    let kind: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|e| TrustError::Malformed {
            what: "metadata",
            detail: e.to_string(),
        })?;
    let found = kind.get("_type").and_then(|t| t.as_str()).unwrap_or("");
    if found != T::TYPE {
        return Err(TrustError::WrongType {
            expected: T::TYPE.to_owned(),
            found: found.to_owned(),
        });
    }
    let doc: T = serde_json::from_value(kind).map_err(|e| TrustError::Malformed {
        what: "metadata",
        detail: format!("{}: {e}", T::TYPE),
    })?;
    let c = doc.common();
    if !c.spec_version.starts_with("1.") {
        return Err(TrustError::Malformed {
            what: "metadata",
            detail: format!("spec_version {} is not 1.x", c.spec_version),
        });
    }
    if c.version == 0 {
        return Err(TrustError::Malformed {
            what: "metadata",
            detail: format!("{} version 0", T::TYPE),
        });
    }
    parse_time("metadata", &c.expires)?;
    doc.check().map_err(|detail| TrustError::Malformed {
        what: "metadata",
        detail: format!("{}: {detail}", T::TYPE),
    })?;
    Ok((payload, doc))
}

/// Whether a threshold of `role`'s keys signed the envelope (each key counted once).
fn verify_by(
    env: &Envelope,
    payload: &[u8],
    keys: &BTreeMap<String, TufKey>,
    keyids: &[String],
    threshold: u64,
) -> Result<(), TrustError> {
    let msg = pae(&env.payload_type, payload);
    let mut counted: BTreeSet<&str> = BTreeSet::new();
    for s in env.signatures.iter().take(MAX_SIGNATURES) {
        if !keyids.contains(&s.keyid) || counted.contains(s.keyid.as_str()) {
            continue;
        }
        let Some(key) = keys.get(&s.keyid).and_then(TufKey::public) else {
            continue;
        };
        let Ok(sig) = B64.decode(&s.sig) else {
            continue;
        };
        if key.verify(&msg, &sig) {
            counted.insert(s.keyid.as_str());
        }
    }
    let needed = usize::try_from(threshold.max(1)).unwrap_or(usize::MAX);
    if counted.len() < needed {
        return Err(TrustError::Signature {
            valid: counted.len(),
            needed,
        });
    }
    Ok(())
}

fn verify_role(
    env: &Envelope,
    payload: &[u8],
    root: &RootRole,
    role: &str,
) -> Result<(), TrustError> {
    let r = root.roles.get(role).ok_or_else(|| TrustError::Malformed {
        what: "root",
        detail: format!("no {role} role"),
    })?;
    verify_by(env, payload, &root.keys, &r.keyids, r.threshold)
}

/// A document signed by a threshold of the keys `root` gives `role` (`targets`, `snapshot`,
/// `timestamp`; for a new root, see [`TrustedSet::update_root`]). For a repository's checks
/// at publication, not for a client's workflow.
pub fn verify_top<T: Signed>(root: &RootRole, role: &str, env: &Envelope) -> Result<T, TrustError> {
    let (payload, doc) = open::<T>(env)?;
    verify_role(env, &payload, root, role)?;
    Ok(doc)
}

/// A delegated targets document signed by a threshold of the keys `parent` delegates `role`
/// to.
pub fn verify_delegated(
    parent: &TargetsRole,
    role: &str,
    env: &Envelope,
) -> Result<TargetsRole, TrustError> {
    let (payload, doc) = open::<TargetsRole>(env)?;
    let d = parent
        .delegations
        .as_ref()
        .and_then(|d| d.roles.iter().find(|r| r.name == role).map(|r| (d, r)));
    let Some((d, r)) = d else {
        return Err(TrustError::Malformed {
            what: "targets",
            detail: format!("no delegation to {role}"),
        });
    };
    verify_by(env, &payload, &d.keys, &r.keyids, r.threshold)?;
    Ok(doc)
}

/// A document's fields, not verified (for routing and display only).
pub fn unverified<T: Signed>(env: &Envelope) -> Result<T, TrustError> {
    open::<T>(env).map(|(_, doc)| doc)
}

/// When a document expires.
pub fn expires_at(c: &Common) -> Result<SystemTime, TrustError> {
    parse_time("metadata", &c.expires)
}

fn expired(what: &'static str, c: &Common, now: SystemTime) -> Result<(), TrustError> {
    if c.expired(now)? {
        return Err(TrustError::Expired {
            what,
            at: c.expires.clone(),
        });
    }
    Ok(())
}

fn out_of_order(detail: &str) -> TrustError {
    TrustError::Malformed {
        what: "update order",
        detail: detail.to_owned(),
    }
}

/// What a target lookup needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The target, and the role that vouches for it.
    Found { role: String, target: TargetFile },
    /// A role's metadata must be fetched (`N.<role>.json`, N from the snapshot) and given to
    /// [`TrustedSet::update_delegated`] before the lookup can go on.
    Need {
        role: String,
        delegator: String,
        version: u64,
    },
    /// No role that may vouch for the path does.
    NotFound,
}

/// What a client trusts, verified: the newest root, and for one refresh the timestamp,
/// snapshot and targets roles in that order.
#[derive(Debug, Clone)]
pub struct TrustedSet {
    now: SystemTime,
    root: (RootRole, Envelope),
    timestamp: Option<(TimestampRole, Envelope)>,
    snapshot: Option<(SnapshotRole, Envelope)>,
    targets: BTreeMap<String, (TargetsRole, Envelope)>,
}

impl TrustedSet {
    /// Start from a root the client already trusts (it must be signed by its own threshold;
    /// it may be expired: a newer one may follow).
    pub fn new(root: &[u8], now: SystemTime) -> Result<TrustedSet, TrustError> {
        let env = parse_envelope(root)?;
        let (payload, doc) = open::<RootRole>(&env)?;
        verify_role(&env, &payload, &doc, "root")?;
        Ok(TrustedSet::with_root(doc, env, now))
    }

    /// The one signed step from a provisioned unsigned root (the key list era) to the chain:
    /// `root` (version 1) is accepted when a threshold of the legacy root's keys signed it,
    /// and a threshold of its own root keys.
    pub fn migrate(
        legacy: &crate::Root,
        root: &[u8],
        now: SystemTime,
    ) -> Result<TrustedSet, TrustError> {
        let env = parse_envelope(root)?;
        let (payload, doc) = open::<RootRole>(&env)?;
        if doc.common.version != 1 {
            return Err(TrustError::Malformed {
                what: "root",
                detail: format!(
                    "the first signed root must be version 1, not {}",
                    doc.common.version
                ),
            });
        }
        let keys: BTreeMap<String, TufKey> = legacy
            .keys
            .iter()
            .map(|k| {
                let t = k.to_tuf();
                (t.keyid(), t)
            })
            .collect();
        let ids: Vec<String> = keys.keys().cloned().collect();
        verify_by(&env, &payload, &keys, &ids, legacy.threshold as u64)?;
        verify_role(&env, &payload, &doc, "root")?;
        Ok(TrustedSet::with_root(doc, env, now))
    }

    fn with_root(root: RootRole, env: Envelope, now: SystemTime) -> TrustedSet {
        TrustedSet {
            now,
            root: (root, env),
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> &RootRole {
        &self.root.0
    }

    pub fn timestamp(&self) -> Option<&TimestampRole> {
        self.timestamp.as_ref().map(|t| &t.0)
    }

    pub fn snapshot(&self) -> Option<&SnapshotRole> {
        self.snapshot.as_ref().map(|t| &t.0)
    }

    pub fn targets(&self, role: &str) -> Option<&TargetsRole> {
        self.targets.get(role).map(|t| &t.0)
    }

    /// 5.3: the next root, version N+1, signed by a threshold of the trusted root's root keys
    /// and of its own. Only before the timestamp.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<(), TrustError> {
        if self.timestamp.is_some() {
            return Err(out_of_order("a root after the timestamp"));
        }
        let env = parse_envelope(bytes)?;
        let (payload, doc) = open::<RootRole>(&env)?;
        verify_role(&env, &payload, &self.root.0, "root")?;
        let want = self.root.0.common.version + 1;
        if doc.common.version != want {
            return Err(TrustError::Rollback {
                what: "root",
                offered: doc.common.version,
                current: want - 1,
            });
        }
        verify_role(&env, &payload, &doc, "root")?;
        self.root = (doc, env);
        Ok(())
    }

    /// 5.4: a timestamp signed by the root's timestamp keys, not older than the one held
    /// and not naming an older snapshot. `Ok(false)`: the same version as held (kept).
    /// An expired timestamp is held (for later rollback checks) and refused.
    pub fn update_timestamp(&mut self, bytes: &[u8]) -> Result<bool, TrustError> {
        if self.snapshot.is_some() {
            return Err(out_of_order("a timestamp after the snapshot"));
        }
        expired("root", &self.root.0.common, self.now)?;
        let env = parse_envelope(bytes)?;
        let (payload, doc) = open::<TimestampRole>(&env)?;
        verify_role(&env, &payload, &self.root.0, "timestamp")?;
        if let Some((cur, _)) = &self.timestamp {
            if doc.common.version < cur.common.version {
                return Err(TrustError::Rollback {
                    what: "timestamp",
                    offered: doc.common.version,
                    current: cur.common.version,
                });
            }
            if doc.common.version == cur.common.version {
                return Ok(false);
            }
            let (new, old) = (snapshot_version(&doc), snapshot_version(cur));
            if new < old {
                return Err(TrustError::Rollback {
                    what: "snapshot",
                    offered: new,
                    current: old,
                });
            }
        }
        self.timestamp = Some((doc, env));
        expired(
            "timestamp",
            &self.timestamp.as_ref().expect("held").0.common,
            self.now,
        )?;
        Ok(true)
    }

    fn final_timestamp(&self) -> Result<&TimestampRole, TrustError> {
        let Some((t, _)) = &self.timestamp else {
            return Err(out_of_order("a snapshot before the timestamp"));
        };
        expired("timestamp", &t.common, self.now)?;
        Ok(t)
    }

    /// 5.5: a snapshot signed by the root's snapshot keys, of the bytes and version the
    /// timestamp names, that lowers no role's version nor drops one. `trusted`: bytes this
    /// client stored earlier (their hashes are not checked against the new timestamp, and an
    /// older version is held only as the floor for rollback checks).
    pub fn update_snapshot(&mut self, bytes: &[u8], trusted: bool) -> Result<(), TrustError> {
        if !self.targets.is_empty() {
            return Err(out_of_order("a snapshot after targets"));
        }
        let ts = self.final_timestamp()?;
        let named = ts
            .meta
            .get("snapshot.json")
            .cloned()
            .unwrap_or_else(|| MetaFile::version(0));
        if !trusted {
            named.check_bytes("snapshot.json", bytes)?;
        }
        let env = parse_envelope(bytes)?;
        let (payload, doc) = open::<SnapshotRole>(&env)?;
        verify_role(&env, &payload, &self.root.0, "snapshot")?;
        if let Some((cur, _)) = &self.snapshot {
            for (name, old) in &cur.meta {
                let Some(new) = doc.meta.get(name) else {
                    return Err(TrustError::Malformed {
                        what: "snapshot",
                        detail: format!("{name} is no longer listed"),
                    });
                };
                if new.version < old.version {
                    return Err(TrustError::Rollback {
                        what: "targets role in the snapshot",
                        offered: new.version,
                        current: old.version,
                    });
                }
            }
        }
        self.snapshot = Some((doc, env));
        self.final_snapshot().map(|_| ())
    }

    fn final_snapshot(&self) -> Result<&SnapshotRole, TrustError> {
        let ts = self.final_timestamp()?;
        let Some((s, _)) = &self.snapshot else {
            return Err(out_of_order("targets before the snapshot"));
        };
        expired("snapshot", &s.common, self.now)?;
        let want = snapshot_version(ts);
        if s.common.version != want {
            return Err(TrustError::Malformed {
                what: "snapshot",
                detail: format!(
                    "version {} is not the {want} the timestamp names (mix-and-match)",
                    s.common.version
                ),
            });
        }
        Ok(s)
    }

    /// 5.6: the top-level targets role.
    pub fn update_targets(&mut self, bytes: &[u8]) -> Result<(), TrustError> {
        self.update_delegated("targets", "root", bytes)
    }

    /// 5.6: a targets role (`targets`, delegated by `root`, or a role delegated by a targets
    /// role already held), signed by the keys its delegator names, of the version the
    /// snapshot names, not expired.
    pub fn update_delegated(
        &mut self,
        role: &str,
        delegator: &str,
        bytes: &[u8],
    ) -> Result<(), TrustError> {
        let snapshot = self.final_snapshot()?;
        let Some(named) = snapshot.meta.get(&format!("{role}.json")).cloned() else {
            return Err(TrustError::Malformed {
                what: "snapshot",
                detail: format!("{role}.json is not listed"),
            });
        };
        named.check_bytes(&format!("{role}.json"), bytes)?;
        let env = parse_envelope(bytes)?;
        let (payload, doc) = open::<TargetsRole>(&env)?;
        if delegator == "root" {
            if role != "targets" {
                return Err(out_of_order("the root delegates only the targets role"));
            }
            verify_role(&env, &payload, &self.root.0, "targets")?;
        } else {
            let Some((parent, _)) = self.targets.get(delegator) else {
                return Err(out_of_order("a delegated role before its delegator"));
            };
            let d = parent
                .delegations
                .as_ref()
                .and_then(|d| d.roles.iter().find(|r| r.name == role).map(|r| (d, r)));
            let Some((d, r)) = d else {
                return Err(TrustError::Malformed {
                    what: "targets",
                    detail: format!("{delegator} does not delegate to {role}"),
                });
            };
            verify_by(&env, &payload, &d.keys, &r.keyids, r.threshold)?;
        }
        if doc.common.version != named.version {
            return Err(TrustError::Malformed {
                what: "targets",
                detail: format!(
                    "{role} version {} is not the {} the snapshot names (mix-and-match)",
                    doc.common.version, named.version
                ),
            });
        }
        expired(
            if role == "targets" {
                "targets"
            } else {
                "delegated targets"
            },
            &doc.common,
            self.now,
        )?;
        self.targets.insert(role.to_owned(), (doc, env));
        Ok(())
    }

    /// 5.6.7: the role that vouches for `path`, walking delegations depth first in order;
    /// a terminating delegation that matches ends the walk.
    pub fn lookup(&self, path: &str) -> Lookup {
        let mut stack: Vec<(String, String)> = vec![("targets".into(), "root".into())];
        let mut visited: BTreeSet<(String, String)> = BTreeSet::new();
        while let Some((role, delegator)) = stack.pop() {
            if visited.len() > MAX_DELEGATIONS {
                break;
            }
            if !visited.insert((role.clone(), delegator.clone())) {
                continue;
            }
            let Some((t, _)) = self.targets.get(&role) else {
                let version = self
                    .snapshot
                    .as_ref()
                    .and_then(|(s, _)| s.meta.get(&format!("{role}.json")))
                    .map_or(0, |m| m.version);
                return Lookup::Need {
                    role,
                    delegator,
                    version,
                };
            };
            if let Some(target) = t.targets.get(path) {
                return Lookup::Found {
                    role,
                    target: target.clone(),
                };
            }
            let Some(d) = &t.delegations else {
                continue;
            };
            let mut children = Vec::new();
            for r in &d.roles {
                if r.matches(path) {
                    children.push((r.name.clone(), role.clone()));
                    if r.terminating {
                        stack.clear();
                        break;
                    }
                }
            }
            children.reverse();
            stack.extend(children);
        }
        Lookup::NotFound
    }
}

fn snapshot_version(t: &TimestampRole) -> u64 {
    t.meta.get("snapshot.json").map_or(0, |m| m.version)
}

/// Shell-style matching of one path segment (`*` and `?`; `[` is literal).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

impl DelegatedRole {
    /// Whether this role may vouch for `path`: a pattern matches segment by segment, with
    /// the same number of segments (as python-tuf does), or the SHA-256 of the path starts
    /// with one of the hash prefixes.
    pub fn matches(&self, path: &str) -> bool {
        if let Some(paths) = &self.paths {
            let segs: Vec<&str> = path.split('/').collect();
            return paths.iter().any(|p| {
                let pats: Vec<&str> = p.split('/').collect();
                pats.len() == segs.len()
                    && pats
                        .iter()
                        .zip(&segs)
                        .all(|(p, s)| glob(p.as_bytes(), s.as_bytes()))
            });
        }
        if let Some(prefixes) = &self.path_hash_prefixes {
            let h = hex(&Sha256::digest(path.as_bytes()));
            return prefixes.iter().any(|p| h.starts_with(p.as_str()));
        }
        false
    }
}

/// The target path of a release's file: `<maker>/<product>/<version>/<file>`.
pub fn target_path(maker: &str, product: &str, version: &str, file: &ArtifactName) -> String {
    format!("{maker}/{product}/{version}/{file}")
}

/// The paths a maker's delegation covers: its releases' files.
pub fn maker_paths(maker: &str) -> Vec<String> {
    vec![format!("{maker}/*/*/*")]
}

/// A release from the targets that vouch for its files, each found by [`TrustedSet::lookup`]
/// as `(role, path, target)`: every file must be under `<maker>/<product>/<version>/`, the
/// role must be the maker's own, and every file must carry the same release fields.
/// `expires`: the release is good as long as the role that lists it.
pub fn release_of(
    found: &[(String, String, TargetFile)],
    expires: &str,
) -> Result<ReleaseManifest, TrustError> {
    let bad = |detail: String| TrustError::Malformed {
        what: "release",
        detail,
    };
    let mut custom: Option<ReleaseCustom> = None;
    let mut artifacts = Vec::new();
    for (role, path, t) in found {
        let c: ReleaseCustom = t
            .custom
            .clone()
            .ok_or_else(|| bad(format!("{path}: no release fields")))
            .and_then(|v| {
                serde_json::from_value(v).map_err(|e| bad(format!("{path}: release fields: {e}")))
            })?;
        if c.maker != *role {
            return Err(bad(format!(
                "{path} says maker {} but is signed by the role of {role}: a maker's key \
                 vouches only for its own software",
                c.maker
            )));
        }
        let Some(file) = path
            .strip_prefix(&format!("{}/{}/{}/", c.maker, c.product, c.version))
            .filter(|f| !f.contains('/'))
        else {
            return Err(bad(format!(
                "{path} is not a file of {} {} {}",
                c.maker, c.product, c.version
            )));
        };
        let name = ArtifactName::new(file).map_err(|e| bad(e.to_string()))?;
        if let Some(first) = &custom
            && *first != c
        {
            return Err(bad(format!(
                "{path}: its release fields differ from the release's other files"
            )));
        }
        artifacts.push(Artifact {
            name,
            size: t.length,
            sha256: t.hashes.get("sha256").cloned().unwrap_or_default(),
        });
        custom = Some(c);
    }
    let Some(c) = custom else {
        return Err(bad("no files".into()));
    };
    let m = ReleaseManifest {
        product: c.product,
        maker: c.maker,
        version: c.version,
        counter: c.counter,
        targets: c.targets,
        artifacts,
        expires: expires.to_owned(),
    };
    m.validate()?;
    Ok(m)
}

/// Every release a maker's role lists (its files grouped by `<maker>/<product>/<version>/`),
/// each checked as [`release_of`] checks one.
pub fn releases_of_role(role: &str, doc: &TargetsRole) -> Result<Vec<ReleaseManifest>, TrustError> {
    let mut groups: BTreeMap<&str, Vec<(String, String, TargetFile)>> = BTreeMap::new();
    for (path, t) in &doc.targets {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        groups
            .entry(dir)
            .or_default()
            .push((role.to_owned(), path.clone(), t.clone()));
    }
    groups
        .values()
        .map(|files| release_of(files, &doc.common.expires))
        .collect()
}

#[cfg(test)]
mod tests;
