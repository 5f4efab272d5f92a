//! The agent's TUF client (ARCHITECTURE.md, "Software delivery with TUF roles"): before a
//! job's releases are trusted, the specification's workflow runs against the center's
//! repository with `fleetcare_trust::tuf::TrustedSet` — the root chain (from the provisioned
//! root, or the one signed step from an unsigned one), timestamp, snapshot, targets and the
//! makers' roles the job's files need — and what it verified is kept under
//! `update/tuf/` as the floor of the next refresh (rollback and freeze checks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fleetcare_trust::tuf::{self, Lookup, TargetFile, TrustedSet};
use fleetcare_trust::{Root, TrustError};

use super::InstallError;
use crate::client::CenterClient;

/// What the device was provisioned with.
#[derive(Debug, Clone)]
pub enum Anchor {
    /// Today's unsigned `root.json`: the first signed root must be signed by its keys.
    Unsigned(Root),
    /// A signed TUF root (`1.root.json`, or a later one).
    Signed(Vec<u8>),
}

/// A file the repository vouches for, and the role that does.
#[derive(Debug, Clone)]
pub struct Found {
    pub role: String,
    pub target: TargetFile,
    /// When the role that lists it expires.
    pub expires: String,
}

/// The outcome of one refresh: the files looked up.
#[derive(Debug, Clone, Default)]
pub struct Refreshed {
    pub files: BTreeMap<String, Found>,
}

fn reason(e: &TrustError) -> &'static str {
    match e {
        TrustError::Expired { .. } => "expired",
        TrustError::Rollback { .. } => "rollback",
        _ => "signature",
    }
}

fn refused(what: &str, e: &TrustError) -> InstallError {
    InstallError::new(reason(e), format!("TUF {what}: {e}"))
}

/// The metadata directory.
pub fn dir(update_dir: &Path) -> PathBuf {
    update_dir.join("tuf")
}

fn read_local(dir: &Path, file: &str) -> Option<Vec<u8>> {
    std::fs::read(dir.join(file)).ok()
}

fn keep(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), InstallError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| InstallError::new("install", format!("creating {}: {e}", dir.display())))?;
    fleetcare_fs::write_atomic(&dir.join(file), bytes, fleetcare_fs::Mode::Private).map_err(|e| {
        InstallError::new(
            "install",
            format!("writing {}: {e}", dir.join(file).display()),
        )
    })
}

/// One metadata file from the center; `None` if it has none (404).
async fn fetch(
    client: &CenterClient,
    token: &str,
    file: &str,
) -> Result<Option<Vec<u8>>, InstallError> {
    let fail = |e: String| InstallError::new("download", format!("TUF metadata {file}: {e}"));
    let mut resp = client
        .http()
        .get(format!("{}/device/v1/tuf/metadata/{file}", client.base()))
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        if body.len() + chunk.len() > tuf::MAX_METADATA_BYTES {
            return Err(fail(format!(
                "larger than {} bytes",
                tuf::MAX_METADATA_BYTES
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

async fn need(client: &CenterClient, token: &str, file: &str) -> Result<Vec<u8>, InstallError> {
    fetch(client, token, file).await?.ok_or_else(|| {
        InstallError::new(
            "signature",
            format!("the center's TUF repository has no {file}"),
        )
    })
}

/// Run the client workflow and look up `paths`. Keeps what it verified in `dir`.
pub async fn refresh(
    client: &CenterClient,
    token: &str,
    dir: &Path,
    anchor: &Anchor,
    paths: &[String],
    now: SystemTime,
) -> Result<Refreshed, InstallError> {
    // 5.2: the trusted root: the newest this device verified, else what it was provisioned
    // with (an unsigned root takes the one signed step to version 1).
    let mut set = match (read_local(dir, "root.json"), anchor) {
        (Some(b), _) => TrustedSet::new(&b, now).map_err(|e| refused("stored root", &e))?,
        (None, Anchor::Signed(b)) => {
            TrustedSet::new(b, now).map_err(|e| refused("provisioned root", &e))?
        }
        (None, Anchor::Unsigned(legacy)) => {
            let first = need(client, token, "1.root.json").await?;
            let set =
                TrustedSet::migrate(legacy, &first, now).map_err(|e| refused("1.root.json", &e))?;
            keep(dir, "root.json", &first)?;
            tracing::info!("the unsigned root of trust was replaced by signed root version 1");
            set
        }
    };
    // 5.3: the root chain, one version at a time.
    let start = set.root().common.version;
    for _ in 0..tuf::MAX_ROOT_ROTATIONS {
        let next = set.root().common.version + 1;
        let Some(b) = fetch(client, token, &format!("{next}.root.json")).await? else {
            break;
        };
        set.update_root(&b)
            .map_err(|e| refused(&format!("{next}.root.json"), &e))?;
        keep(dir, "root.json", &b)?;
    }
    if set.root().common.version != start {
        tracing::info!(
            from = start,
            to = set.root().common.version,
            "root of trust rotated"
        );
    }
    // 5.4: the timestamp, the one held first (as the floor; errors only mean it is not).
    if let Some(b) = read_local(dir, "timestamp.json") {
        let _ = set.update_timestamp(&b);
    }
    let b = need(client, token, "timestamp.json").await?;
    if set
        .update_timestamp(&b)
        .map_err(|e| refused("timestamp", &e))?
    {
        keep(dir, "timestamp.json", &b)?;
    }
    // 5.5: the snapshot the timestamp names, unless the one held is it.
    let held =
        read_local(dir, "snapshot.json").is_some_and(|b| set.update_snapshot(&b, true).is_ok());
    if !held {
        let v = set
            .timestamp()
            .and_then(|t| t.meta.get("snapshot.json"))
            .map_or(0, |m| m.version);
        let b = need(client, token, &format!("{v}.snapshot.json")).await?;
        set.update_snapshot(&b, false)
            .map_err(|e| refused("snapshot", &e))?;
        keep(dir, "snapshot.json", &b)?;
    }
    // 5.6: targets, then the roles each file needs.
    load_role(client, token, dir, &mut set, "targets", "root").await?;
    let mut out = Refreshed::default();
    for path in paths {
        let mut visits = 0;
        loop {
            visits += 1;
            if visits > tuf::MAX_DELEGATIONS {
                return Err(InstallError::new(
                    "signature",
                    format!("TUF: {path}: too many delegations"),
                ));
            }
            match set.lookup(path) {
                Lookup::Found { role, target } => {
                    let expires = set
                        .targets(&role)
                        .map(|t| t.common.expires.clone())
                        .unwrap_or_default();
                    out.files.insert(
                        path.clone(),
                        Found {
                            role,
                            target,
                            expires,
                        },
                    );
                    break;
                }
                Lookup::NotFound => {
                    return Err(InstallError::new(
                        "signature",
                        format!("TUF: no role the repository trusts for it lists {path}"),
                    ));
                }
                Lookup::Need {
                    role, delegator, ..
                } => load_role(client, token, dir, &mut set, &role, &delegator).await?,
            }
        }
    }
    Ok(out)
}

/// A targets role: the one held if it is the version the snapshot names, else the center's.
async fn load_role(
    client: &CenterClient,
    token: &str,
    dir: &Path,
    set: &mut TrustedSet,
    role: &str,
    delegator: &str,
) -> Result<(), InstallError> {
    let file = format!("{role}.json");
    if let Some(b) = read_local(dir, &file)
        && set.update_delegated(role, delegator, &b).is_ok()
    {
        return Ok(());
    }
    let v = set
        .snapshot()
        .and_then(|s| s.meta.get(&file))
        .map_or(0, |m| m.version);
    let b = need(client, token, &format!("{v}.{file}")).await?;
    set.update_delegated(role, delegator, &b)
        .map_err(|e| refused(role, &e))?;
    keep(dir, &file, &b)
}
