//! `keys online|root|maker|delegate` and the TUF side of `keys publish` and `release sign
//! --tuf`: the documents of TUF's roles, signed where the keys are (ARCHITECTURE.md,
//! "Software delivery with TUF roles").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use fleetcare_trust::tuf::{
    self, Common, DelegatedRole, Delegations, ReleaseCustom, RoleKeys, RootRole, TargetFile,
    TargetsRole, TufKey,
};
use fleetcare_trust::{Envelope, KeyPair, PublicKey, ReleaseManifest, SecretKeyFile};

use crate::client::{Api, segment};
use crate::{Remote, print_json};
use fleetcare_agent::outln;

fn read_key(path: &Path, role: &str) -> anyhow::Result<KeyPair> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SecretKeyFile::parse(&bytes, role).with_context(|| format!("{}", path.display()))
}

fn read_pub(path: &Path) -> anyhow::Result<PublicKey> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a public key file", path.display()))
}

fn in_days(days: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(days.max(1) * 86_400)
}

fn write(path: &Path, env: &Envelope) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} exists; not overwriting it", path.display());
    }
    fleetcare_fs::write_atomic(path, env.to_json().as_bytes(), fleetcare_fs::Mode::Shared)
        .with_context(|| format!("writing {}", path.display()))
}

/// The center's online keys, as `keys online` writes them.
#[derive(serde::Serialize, serde::Deserialize)]
struct OnlineKeys {
    snapshot: OnlineKey,
    timestamp: OnlineKey,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct OnlineKey {
    keyid: String,
    key: TufKey,
}

pub async fn online(remote: &Remote, out: Option<PathBuf>) -> anyhow::Result<()> {
    let keys: OnlineKeys = remote.api()?.get("/api/v1/tuf/online-keys").await?;
    let text = serde_json::to_string_pretty(&keys)?;
    match out {
        Some(p) => {
            fleetcare_fs::write_atomic(&p, text.as_bytes(), fleetcare_fs::Mode::Shared)
                .with_context(|| format!("writing {}", p.display()))?;
            outln!(
                "the center's online keys (snapshot {}…, timestamp {}…) written to {}",
                &keys.snapshot.keyid[..12],
                &keys.timestamp.keyid[..12],
                p.display()
            );
            Ok(())
        }
        None => print_json(&keys),
    }
}

/// What `keys root` is given.
#[derive(clap::Args)]
pub struct RootArgs {
    /// Root key files of the new root: listed as its root role, and they sign it.
    #[arg(long = "root-key", required = true)]
    pub root_keys: Vec<PathBuf>,
    /// Keys of the root this one replaces (they sign, they are not listed).
    #[arg(long = "old-root-key")]
    pub old_root_keys: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub root_threshold: u64,
    /// Public key files of the targets role (`release-N.pub.json`).
    #[arg(long = "targets", required = true)]
    pub targets: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub targets_threshold: u64,
    /// The center's online keys (`keys online --out`).
    #[arg(long)]
    pub online: PathBuf,
    /// 1 for the first root; one more than the published root's for a rotation.
    #[arg(long)]
    pub version: u64,
    #[arg(long, default_value_t = 365)]
    pub expires_days: u64,
    /// Where to write the signed root (`N.root.json`).
    #[arg(long)]
    pub out: PathBuf,
}

/// Sign a root (offline): the root keys given are its root role and sign it; for a rotation
/// the outgoing root's keys sign too (`--old-root-key`).
pub fn root(a: RootArgs) -> anyhow::Result<()> {
    let roots: Vec<KeyPair> = a
        .root_keys
        .iter()
        .map(|p| read_key(p, "root"))
        .collect::<anyhow::Result<_>>()?;
    let old: Vec<KeyPair> = a
        .old_root_keys
        .iter()
        .map(|p| read_key(p, "root"))
        .collect::<anyhow::Result<_>>()?;
    let targets: Vec<PublicKey> = a
        .targets
        .iter()
        .map(|p| read_pub(p))
        .collect::<anyhow::Result<_>>()?;
    let online: OnlineKeys = serde_json::from_slice(
        &std::fs::read(&a.online).with_context(|| format!("reading {}", a.online.display()))?,
    )
    .with_context(|| format!("{} is not what `keys online` writes", a.online.display()))?;
    let mut keys = BTreeMap::new();
    let mut roles = BTreeMap::new();
    let mut role = |name: &str, ks: Vec<TufKey>, threshold: u64| {
        let ids = ks.iter().map(TufKey::keyid).collect();
        for k in ks {
            keys.insert(k.keyid(), k);
        }
        roles.insert(
            name.to_owned(),
            RoleKeys {
                keyids: ids,
                threshold,
            },
        );
    };
    role(
        "root",
        roots.iter().map(|k| k.public().to_tuf()).collect(),
        a.root_threshold,
    );
    role(
        "targets",
        targets.iter().map(PublicKey::to_tuf).collect(),
        a.targets_threshold,
    );
    role("snapshot", vec![online.snapshot.key], 1);
    role("timestamp", vec![online.timestamp.key], 1);
    let doc = RootRole {
        common: Common::new("root", a.version, in_days(a.expires_days)),
        consistent_snapshot: true,
        keys,
        roles,
    };
    let signers: Vec<&KeyPair> = roots.iter().chain(old.iter()).collect();
    let env = tuf::sign(&doc, &signers);
    // Checked as a client would: signed by its own threshold.
    tuf::TrustedSet::new(env.to_json().as_bytes(), SystemTime::now())
        .context("the root as signed")?;
    write(&a.out, &env)?;
    outln!(
        "root version {} written to {} (root keys {}, threshold {}; targets keys {}, threshold {})",
        a.version,
        a.out.display(),
        roots.len(),
        a.root_threshold,
        targets.len(),
        a.targets_threshold
    );
    Ok(())
}

/// A maker's key pair: `<maker>.key.json` (the maker keeps it) and `<maker>.pub.json` (for
/// `keys delegate`).
pub fn maker(maker: &str, out: &Path) -> anyhow::Result<()> {
    let k = KeyPair::generate();
    let secret = out.join(format!("{maker}.key.json"));
    let public = out.join(format!("{maker}.pub.json"));
    for p in [&secret, &public] {
        if p.exists() {
            bail!("{} exists; not overwriting it", p.display());
        }
    }
    fleetcare_fs::write_atomic(
        &secret,
        SecretKeyFile::new("maker", &k).to_json().as_bytes(),
        fleetcare_fs::Mode::Private,
    )?;
    fleetcare_fs::write_atomic(
        &public,
        serde_json::to_string_pretty(k.public())?.as_bytes(),
        fleetcare_fs::Mode::Shared,
    )?;
    outln!(
        "maker {maker}: {} (keep it with the maker), {}",
        secret.display(),
        public.display()
    );
    Ok(())
}

async fn current(api: &Api, role: &str) -> anyhow::Result<Option<TargetsRole>> {
    let Some(env) = api
        .get_opt::<Envelope>(&format!("/api/v1/tuf/roles/{}", segment(role)?))
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(tuf::unverified::<TargetsRole>(&env)?))
}

/// What `keys delegate` is given.
#[derive(clap::Args)]
pub struct DelegateArgs {
    #[arg(long)]
    pub maker: String,
    /// The maker's public key files.
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub threshold: u64,
    /// Targets (release) key files to sign with.
    #[arg(long = "sign", required = true)]
    pub sign: Vec<PathBuf>,
    #[arg(long, default_value_t = 365)]
    pub expires_days: u64,
    /// Write the signed document here instead of publishing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The next version of the top-level targets role with the maker's delegation added (or its
/// keys replaced), signed with targets keys; published unless `--out` is given.
pub async fn delegate(a: DelegateArgs, remote: &Remote) -> anyhow::Result<()> {
    let signers: Vec<KeyPair> = a
        .sign
        .iter()
        .map(|p| read_key(p, "release"))
        .collect::<anyhow::Result<_>>()?;
    let keys: Vec<TufKey> = a
        .keys
        .iter()
        .map(|p| read_pub(p).map(|k| k.to_tuf()))
        .collect::<anyhow::Result<_>>()?;
    let api = remote.api()?;
    let cur = current(&api, "targets").await?;
    let version = cur.as_ref().map_or(1, |c| c.common.version + 1);
    let mut d = cur.and_then(|c| c.delegations).unwrap_or(Delegations {
        keys: BTreeMap::new(),
        roles: Vec::new(),
    });
    d.roles.retain(|r| r.name != a.maker);
    d.roles.push(DelegatedRole {
        name: a.maker.clone(),
        keyids: keys.iter().map(TufKey::keyid).collect(),
        threshold: a.threshold,
        terminating: true,
        paths: Some(tuf::maker_paths(&a.maker)),
        path_hash_prefixes: None,
    });
    d.roles.sort_by(|x, y| x.name.cmp(&y.name));
    for k in keys {
        d.keys.insert(k.keyid(), k);
    }
    // Keys no delegation uses any more go.
    let used: std::collections::BTreeSet<String> =
        d.roles.iter().flat_map(|r| r.keyids.clone()).collect();
    d.keys.retain(|id, _| used.contains(id));
    let doc = TargetsRole {
        common: Common::new("targets", version, in_days(a.expires_days)),
        targets: BTreeMap::new(),
        delegations: Some(d),
    };
    let refs: Vec<&KeyPair> = signers.iter().collect();
    let env = tuf::sign(&doc, &refs);
    if let Some(out) = &a.out {
        write(out, &env)?;
        outln!("targets version {version} written to {}", out.display());
        return Ok(());
    }
    publish_env(&api, remote, "targets", None, &env).await
}

async fn publish_env(
    api: &Api,
    remote: &Remote,
    kind: &str,
    maker: Option<&str>,
    env: &Envelope,
) -> anyhow::Result<()> {
    let path = match (kind, maker) {
        ("root", _) => "/api/v1/tuf/root".to_owned(),
        ("targets", None) => "/api/v1/tuf/targets".to_owned(),
        ("targets", Some(m)) => format!("/api/v1/tuf/makers/{}", segment(m)?),
        (other, _) => bail!("a {other} document is signed by the center, not published"),
    };
    let v: serde_json::Value = api
        .post_text(&path, "application/json", env.to_json())
        .await?;
    if remote.json {
        return print_json(&v);
    }
    outln!(
        "{} version {} published; snapshot {}, timestamp {}{}",
        v["role"].as_str().unwrap_or(kind),
        v["version"],
        v["snapshot_version"],
        v["timestamp_version"],
        match v["releases"].as_array() {
            Some(r) if !r.is_empty() => format!(
                "; releases: {}",
                r.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => String::new(),
        }
    );
    Ok(())
}

/// `keys publish` of a TUF document: a root, the targets role, or (`--maker`) a maker's role.
pub async fn publish(text: &str, maker: Option<&str>, remote: &Remote) -> anyhow::Result<()> {
    let env = tuf::parse_envelope(text.as_bytes())?;
    let payload: serde_json::Value =
        serde_json::from_slice(&env.unverified_payload_bounded(tuf::MAX_METADATA_BYTES)?)
            .context("the document")?;
    let kind = payload["_type"].as_str().unwrap_or("").to_owned();
    publish_env(&remote.api()?, remote, &kind, maker, &env).await
}

/// Is this envelope a TUF document?
pub fn is_tuf(text: &str) -> bool {
    tuf::parse_envelope(text.as_bytes()).is_ok_and(|e| e.payload_type == tuf::TUF_TYPE)
}

/// `release sign --tuf`: the maker's next role version, with this release's files added as
/// targets (the maker's earlier releases stay listed).
pub async fn sign_release(
    key: &Path,
    m: &ReleaseManifest,
    expires_days: u64,
    out: &Path,
    remote: &Remote,
) -> anyhow::Result<()> {
    let key = read_key(key, "maker")?;
    let api = remote.api()?;
    let cur = current(&api, &m.maker).await?;
    let version = cur.as_ref().map_or(1, |c| c.common.version + 1);
    let mut targets = cur.map(|c| c.targets).unwrap_or_default();
    let custom = serde_json::to_value(ReleaseCustom {
        product: m.product.clone(),
        maker: m.maker.clone(),
        version: m.version.clone(),
        counter: m.counter,
        targets: m.targets.clone(),
    })?;
    for a in &m.artifacts {
        let path = tuf::target_path(&m.maker, &m.product, &m.version, &a.name);
        if targets.contains_key(&path) {
            bail!(
                "{path} is already listed by the maker's role: a version, once published, means one thing"
            );
        }
        targets.insert(
            path,
            TargetFile {
                length: a.size,
                hashes: BTreeMap::from([("sha256".to_owned(), a.sha256.clone())]),
                custom: Some(custom.clone()),
            },
        );
    }
    let doc = TargetsRole {
        common: Common::new("targets", version, in_days(expires_days)),
        targets,
        delegations: None,
    };
    // Checked as the center will check it.
    tuf::releases_of_role(&m.maker, &doc)?;
    write(out, &tuf::sign(&doc, &[&key]))?;
    outln!(
        "{} {} (counter {}) added to {}'s role version {version}, signed by key {}…: {}",
        m.product,
        m.version,
        m.counter,
        m.maker,
        &key.public().to_tuf().keyid()[..12],
        out.display()
    );
    Ok(())
}

/// The releases a maker's role document lists (for `release publish` of one).
pub fn releases_in(text: &str) -> anyhow::Result<(String, Vec<ReleaseManifest>)> {
    let env = tuf::parse_envelope(text.as_bytes())?;
    let doc = tuf::unverified::<TargetsRole>(&env)?;
    let maker = doc
        .targets
        .keys()
        .next()
        .and_then(|p| p.split('/').next())
        .context("the maker's role lists no files")?
        .to_owned();
    Ok((maker.clone(), tuf::releases_of_role(&maker, &doc)?))
}
