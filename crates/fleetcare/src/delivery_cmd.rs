//! `keys`, `release` and `jobs create`: signing offline, publishing, and operator jobs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Subcommand;
use fleetcare_trust::{
    Artifact, ArtifactName, Envelope, KEYS_TYPE, KeyList, KeyPair, PublicKey, RELEASE_TYPE,
    ReleaseManifest, Root, SecretKeyFile, Target, format_time,
};
use fleetcare_wire::compat::Job;
use fleetcare_wire::delivery::{
    ArtifactStored, JobStepRequest, KeyListView, NewJobRequest, Release, ReleaseList,
};
use sha2::{Digest, Sha256};

use fleetcare_agent::{out, outln};

use crate::client::segment;
use crate::table;
use crate::{Remote, print_json};

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Make offline signing keys: root keys, release keys, `root.json` (provision it onto
    /// devices) and a first key list `keys.json` signed by the root keys.
    Generate {
        /// A new directory for the keys (refused if it exists).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        root_keys: usize,
        /// Root keys that must sign a key list.
        #[arg(long, default_value_t = 1)]
        root_threshold: usize,
        #[arg(long, default_value_t = 1)]
        release_keys: usize,
        /// Release keys that must sign a release.
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        /// Days until the key list expires.
        #[arg(long, default_value_t = 365)]
        expires_days: u64,
    },
    /// Sign a new key list with root keys: rotate or revoke release keys without touching
    /// devices.
    SignList {
        /// Root key files (as many as the root's threshold).
        #[arg(long = "root", required = true)]
        root: Vec<PathBuf>,
        /// Public key files of the release keys to trust (`release-N.pub.json`).
        #[arg(long = "release", required = true)]
        release: Vec<PathBuf>,
        /// Must be higher than the published list's.
        #[arg(long)]
        version: u64,
        #[arg(long, default_value_t = 1)]
        threshold: usize,
        #[arg(long, default_value_t = 365)]
        expires_days: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Publish a key list, or a TUF document: a root, the targets role, or (`--maker`) a
    /// maker's role.
    Publish {
        file: PathBuf,
        /// The maker whose role the document is (TUF targets documents only).
        #[arg(long)]
        maker: Option<String>,
    },
    /// The center's online keys for the TUF snapshot and timestamp roles (for `keys root`).
    Online {
        /// Write them here (else print them).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a TUF root (offline). Its root role is the root keys given, which sign it; a
    /// rotation is also signed by the outgoing root's keys (`--old-root-key`).
    Root(crate::tuf_cmd::RootArgs),
    /// Make a maker's key pair (`<maker>.key.json`, `<maker>.pub.json`).
    Maker {
        #[arg(long)]
        maker: String,
        /// An existing directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Delegate a maker's releases to the maker's keys: the next version of the targets
    /// role, signed with targets (release) keys, published unless `--out` is given.
    Delegate(crate::tuf_cmd::DelegateArgs),
    /// The key list the center publishes.
    Show,
}

#[derive(Subcommand)]
pub enum ReleaseCmd {
    /// Sign a release manifest for FILES (offline).
    Sign {
        /// A release key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        product: String,
        #[arg(long)]
        maker: String,
        #[arg(long)]
        version: String,
        /// The release counter: never lower than an earlier release's of the product.
        #[arg(long)]
        counter: u64,
        /// `UNIT_MODEL:REV[,REV…]`, once per unit model the release is made for.
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        #[arg(long, default_value_t = 90)]
        expires_days: u64,
        /// Where to write the signed manifest.
        #[arg(long)]
        out: PathBuf,
        /// Sign the maker's TUF role instead (its next version with this release added;
        /// `--key` is the maker's key). Reads the maker's published role from the center.
        #[arg(long)]
        tuf: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Publish a signed manifest and upload its files (with a progress bar).
    Publish {
        manifest: PathBuf,
        files: Vec<PathBuf>,
    },
    /// Published releases.
    List {
        #[arg(long)]
        product: Option<String>,
    },
}

fn write_new(path: &Path, text: &str, private: bool) -> anyhow::Result<()> {
    if path.exists() {
        bail!("{} exists; not overwriting it", path.display());
    }
    let mode = if private {
        fleetcare_fs::Mode::Private
    } else {
        fleetcare_fs::Mode::Shared
    };
    fleetcare_fs::write_atomic(path, text.as_bytes(), mode)
        .with_context(|| format!("writing {}", path.display()))
}

fn read_key(path: &Path, role: &str) -> anyhow::Result<KeyPair> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SecretKeyFile::parse(&bytes, role).with_context(|| format!("{}", path.display()))
}

fn expires(days: u64) -> String {
    format_time(SystemTime::now() + Duration::from_secs(days.max(1) * 86_400))
}

fn key_list_envelope(
    version: u64,
    threshold: usize,
    release: Vec<PublicKey>,
    days: u64,
    roots: &[&KeyPair],
) -> anyhow::Result<Envelope> {
    let list = KeyList {
        version,
        expires: expires(days),
        threshold,
        keys: release,
    };
    // Validate as a device would.
    KeyList::from_json(&list.to_json())?;
    Ok(Envelope::sign(KEYS_TYPE, &list.to_json(), roots))
}

pub async fn keys(cmd: KeysCmd, remote: &Remote) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Generate {
            out,
            root_keys,
            root_threshold,
            release_keys,
            threshold,
            expires_days,
        } => {
            if out.exists() {
                bail!(
                    "{} exists; choose a new directory for new keys",
                    out.display()
                );
            }
            fleetcare_fs::create_private_dir(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let roots: Vec<KeyPair> = (0..root_keys.max(1)).map(|_| KeyPair::generate()).collect();
            let releases: Vec<KeyPair> = (0..release_keys.max(1))
                .map(|_| KeyPair::generate())
                .collect();
            let root = Root {
                threshold: root_threshold,
                keys: roots.iter().map(|k| k.public().clone()).collect(),
            };
            Root::from_json(root.to_json().as_bytes()).context("the root")?;
            for (i, k) in roots.iter().enumerate() {
                write_new(
                    &out.join(format!("root-{}.key.json", i + 1)),
                    &SecretKeyFile::new("root", k).to_json(),
                    true,
                )?;
            }
            for (i, k) in releases.iter().enumerate() {
                write_new(
                    &out.join(format!("release-{}.key.json", i + 1)),
                    &SecretKeyFile::new("release", k).to_json(),
                    true,
                )?;
                write_new(
                    &out.join(format!("release-{}.pub.json", i + 1)),
                    &serde_json::to_string_pretty(k.public())?,
                    false,
                )?;
            }
            write_new(&out.join("root.json"), &root.to_json(), false)?;
            let signers: Vec<&KeyPair> = roots.iter().collect();
            let env = key_list_envelope(
                1,
                threshold,
                releases.iter().map(|k| k.public().clone()).collect(),
                expires_days,
                &signers,
            )?;
            write_new(&out.join("keys.json"), &env.to_json(), false)?;
            outln!("keys written to {}:", out.display());
            outln!("  root.json            provision onto every device (agent `trust_root`)");
            outln!("  keys.json            the first key list: `fleetcare keys publish`");
            outln!("  root-N.key.json      root keys: keep offline");
            outln!("  release-N.key.json   release keys: sign releases with them");
            Ok(())
        }
        KeysCmd::SignList {
            root,
            release,
            version,
            threshold,
            expires_days,
            out,
        } => {
            let roots: Vec<KeyPair> = root
                .iter()
                .map(|p| read_key(p, "root"))
                .collect::<anyhow::Result<_>>()?;
            let mut pubs = Vec::new();
            for p in &release {
                let text = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                let k: PublicKey = serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not a public key file", p.display()))?;
                pubs.push(k);
            }
            let signers: Vec<&KeyPair> = roots.iter().collect();
            let env = key_list_envelope(version, threshold, pubs, expires_days, &signers)?;
            write_new(&out, &env.to_json(), false)?;
            outln!("key list version {version} written to {}", out.display());
            Ok(())
        }
        KeysCmd::Online { out } => crate::tuf_cmd::online(remote, out).await,
        KeysCmd::Root(a) => crate::tuf_cmd::root(a),
        KeysCmd::Maker { maker, out } => crate::tuf_cmd::maker(&maker, &out),
        KeysCmd::Delegate(a) => crate::tuf_cmd::delegate(a, remote).await,
        KeysCmd::Publish { file, maker } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            if crate::tuf_cmd::is_tuf(&text) {
                return crate::tuf_cmd::publish(&text, maker.as_deref(), remote).await;
            }
            let v: KeyListView = remote
                .api()?
                .post_text("/api/v1/keys", "application/json", text)
                .await?;
            if remote.json {
                return print_json(&v);
            }
            outln!(
                "key list version {} published: {} release key(s), {} needed, expires {}",
                v.version,
                v.keyids.len(),
                v.threshold,
                v.expires
            );
            Ok(())
        }
        KeysCmd::Show => {
            let v: KeyListView = remote.api()?.get("/api/v1/keys").await?;
            if remote.json {
                return print_json(&v);
            }
            outln!("version    {}", v.version);
            outln!("expires    {}", v.expires);
            outln!("threshold  {}", v.threshold);
            outln!("published  {} by {}", v.published_at, v.published_by);
            for k in &v.keyids {
                outln!("  key {k}");
            }
            Ok(())
        }
    }
}

/// SHA-256 and size of a file, streamed.
fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if got == 0 {
            break;
        }
        n += got as u64;
        h.update(&buf[..got]);
    }
    Ok((n, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

fn parse_target(t: &str) -> anyhow::Result<Target> {
    let Some((model, revs)) = t.split_once(':') else {
        bail!("--target {t:?}: expected UNIT_MODEL:REV[,REV…]");
    };
    Ok(Target {
        unit_model: model.to_owned(),
        hw_revisions: revs.split(',').map(str::to_owned).collect(),
    })
}

fn file_name(path: &Path) -> anyhow::Result<ArtifactName> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", path.display()))?;
    Ok(ArtifactName::new(name)?)
}

pub async fn release(cmd: ReleaseCmd, remote: &Remote) -> anyhow::Result<()> {
    match cmd {
        ReleaseCmd::Sign {
            key,
            product,
            maker,
            version,
            counter,
            targets,
            expires_days,
            out,
            tuf,
            files,
        } => {
            let mut artifacts = Vec::new();
            for f in &files {
                let (size, sha256) = hash_file(f)?;
                artifacts.push(Artifact {
                    name: file_name(f)?,
                    size,
                    sha256,
                });
            }
            let m = ReleaseManifest {
                product,
                maker,
                version,
                counter,
                targets: targets
                    .iter()
                    .map(|t| parse_target(t))
                    .collect::<anyhow::Result<_>>()?,
                artifacts,
                expires: expires(expires_days),
            };
            m.validate()?;
            if tuf {
                return crate::tuf_cmd::sign_release(&key, &m, expires_days, &out, remote).await;
            }
            let key = read_key(&key, "release")?;
            let env = Envelope::sign(RELEASE_TYPE, &m.to_json(), &[&key]);
            write_new(&out, &env.to_json(), false)?;
            outln!(
                "{} {} (counter {}) signed by key {}…: {}",
                m.product,
                m.version,
                m.counter,
                &key.public().keyid()[..12],
                out.display()
            );
            Ok(())
        }
        ReleaseCmd::Publish { manifest, files } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let (m, tuf_maker) = if crate::tuf_cmd::is_tuf(&text) {
                // A maker's role lists all its releases: this one is the one whose files
                // (by hash) are given.
                let (maker, all) = crate::tuf_cmd::releases_in(&text)?;
                let given: Vec<String> = files
                    .iter()
                    .map(|f| hash_file(f).map(|h| h.1))
                    .collect::<anyhow::Result<_>>()?;
                let m = all
                    .into_iter()
                    .find(|m| m.artifacts.iter().all(|a| given.contains(&a.sha256)))
                    .context("none of the role's releases is made of the files given")?;
                (m, Some(maker))
            } else {
                let env = Envelope::parse(text.as_bytes())?;
                (
                    ReleaseManifest::from_json(&env.unverified_payload()?)?,
                    None,
                )
            };
            // Every artifact from a file given, checked here before anything is sent.
            let mut uploads = Vec::new();
            for a in &m.artifacts {
                let Some(path) = files
                    .iter()
                    .find(|f| file_name(f).is_ok_and(|n| n == a.name))
                else {
                    bail!("no file named {} was given (the manifest lists it)", a.name);
                };
                let (size, sha) = hash_file(path)?;
                if size != a.size || sha != a.sha256 {
                    bail!(
                        "{} is not the file the manifest signed ({size} bytes, SHA-256 {sha}; signed {} bytes, {})",
                        path.display(),
                        a.size,
                        a.sha256
                    );
                }
                uploads.push((path.clone(), a.clone()));
            }
            let api = remote.api()?;
            match &tuf_maker {
                Some(maker) => {
                    let _: serde_json::Value = api
                        .post_text(
                            &format!("/api/v1/tuf/makers/{}", segment(maker)?),
                            "application/json",
                            text,
                        )
                        .await?;
                }
                None => {
                    let _: Release = api
                        .post_text("/api/v1/releases", "application/json", text)
                        .await?;
                }
            }
            for (path, a) in &uploads {
                let stored: ArtifactStored = api
                    .put_file(
                        &format!("/api/v1/artifacts/{}", a.sha256),
                        path,
                        a.size,
                        !remote.json,
                    )
                    .await
                    .with_context(|| format!("uploading {}", path.display()))?;
                if !remote.json && !stored.created {
                    outln!("{}: the center already holds it", a.name);
                }
            }
            let list: ReleaseList = api
                .get(&format!(
                    "/api/v1/releases?product={}",
                    segment(&m.product)?
                ))
                .await?;
            let r = list
                .releases
                .into_iter()
                .find(|r| r.version == m.version)
                .context("the center does not list the release just published")?;
            if remote.json {
                return print_json(&r);
            }
            outln!(
                "{} {} published ({} artifact(s), {})",
                r.product,
                r.version,
                r.artifacts.len(),
                if r.complete { "complete" } else { "incomplete" }
            );
            Ok(())
        }
        ReleaseCmd::List { product } => {
            let mut path = "/api/v1/releases?limit=1000".to_owned();
            if let Some(p) = &product {
                path.push_str(&format!("&product={}", segment(p)?));
            }
            let list: ReleaseList = remote.api()?.get(&path).await?;
            if remote.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .releases
                .iter()
                .map(|r| {
                    vec![
                        r.product.clone(),
                        r.version.clone(),
                        r.counter.to_string(),
                        r.artifacts.iter().map(|a| a.size).sum::<u64>().to_string(),
                        if r.complete { "yes" } else { "no" }.into(),
                        r.published_at.clone(),
                    ]
                })
                .collect();
            out!(
                "{}",
                table::render(
                    &[
                        "PRODUCT",
                        "VERSION",
                        "COUNTER",
                        "BYTES",
                        "COMPLETE",
                        "PUBLISHED"
                    ],
                    &rows
                )
            );
            Ok(())
        }
    }
}

/// `SLOT:PRODUCT=VERSION`.
fn parse_step(s: &str, action: &str) -> anyhow::Result<JobStepRequest> {
    let parsed = s
        .split_once(':')
        .and_then(|(slot, rest)| rest.split_once('=').map(|(p, v)| (slot, p, v)));
    let Some((slot, product, version)) = parsed else {
        bail!("--{action} {s:?}: expected SLOT:PRODUCT=VERSION");
    };
    Ok(JobStepRequest {
        slot: slot.into(),
        product: product.into(),
        version: version.into(),
        action: action.into(),
    })
}

pub async fn create_job(
    device: String,
    install: Vec<String>,
    switch: Vec<String>,
    ttl_s: Option<u64>,
    remote: &Remote,
) -> anyhow::Result<()> {
    let mut steps = Vec::new();
    for s in &install {
        steps.push(parse_step(s, "install")?);
    }
    for s in &switch {
        steps.push(parse_step(s, "switch")?);
    }
    if steps.is_empty() {
        bail!("give at least one --install or --switch");
    }
    let req = NewJobRequest {
        device_id: segment(&device)?.to_owned(),
        steps,
        ttl_s,
    };
    let j: Job = remote.api()?.post("/api/v1/jobs", Some(&req)).await?;
    if remote.json {
        return print_json(&j);
    }
    outln!(
        "job #{} for {}: {} (expires {})",
        j.id,
        j.device_id,
        j.state,
        j.expires_at
    );
    Ok(())
}
