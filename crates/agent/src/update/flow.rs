//! A job on the device, from offer to report, one journaled step at a time.
//!
//! ```text
//!   offer ─verify─► accepted ─download─► downloaded ─stage─► staged ─► activating
//!     │ refused                                                          │ activate each unit
//!     ▼                                                                  ▼
//!   over (failed: reason) ◄── reverting ◄─ health fails / trial ran out ─ activated
//!                                ▲                                        │ healthy
//!   over (rolled_back) ◄─────────┘                       over (succeeded) ◄─ confirming
//! ```
//!
//! The journal (`update/journal.json`) is replaced atomically before each step's effects
//! begin to matter, so after a crash the agent resumes from it, and every step is idempotent.
//! Activation of a multi-unit job rolls forward once begun; if any unit's health check fails,
//! or any unit's trial runs out of boots, every unit is reverted: all switch or none. Only
//! once the center acknowledged the outcome is the journal removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fleetcare_trust::{Envelope, ReleaseManifest, Root, Trust, TrustError};
use fleetcare_wire::compat::SoftwareStep;
use fleetcare_wire::delivery::{DeviceJob, JobStatus};
use serde::{Deserialize, Serialize};

use super::crash::point;
use super::download::{self, Limits};
use super::{Change, InstallError, StageItem, StagedFile, UnitInstaller};
use crate::client::CenterClient;
use crate::source::Snapshot;

/// Where a job is on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Accepted,
    Downloaded,
    Staged,
    Activating,
    Activated,
    Confirming,
    Reverting,
    Over,
}

/// How a job ended, as it will be reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `succeeded`, `failed` or `rolled_back`.
    pub state: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

impl Outcome {
    fn failed(e: &InstallError) -> Outcome {
        Outcome {
            state: "failed".into(),
            reason: Some(e.reason.into()),
            detail: Some(e.detail.clone()),
        }
    }
}

/// The journal of the job in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobJournal {
    pub job: u64,
    pub steps: Vec<SoftwareStep>,
    /// The verified release of each install step, by `slot/product`.
    pub releases: BTreeMap<String, ReleaseManifest>,
    pub phase: Phase,
    pub outcome: Option<Outcome>,
    /// Set when the reverting began: why (rolled back after activation, or failed before).
    #[serde(default)]
    pub revert_reason: Option<Outcome>,
}

impl JobJournal {
    /// Slots the job touches, in order (activation order).
    pub fn slots(&self) -> Vec<String> {
        let mut s: Vec<String> = self.steps.iter().map(|s| s.slot.clone()).collect();
        s.sort();
        s.dedup();
        s
    }
}

fn trust_reason(e: &TrustError) -> &'static str {
    match e {
        TrustError::Expired { .. } => "expired",
        TrustError::Rollback { .. } => "rollback",
        _ => "signature",
    }
}

/// A release from the files TUF vouched for (`{"tuf": {"paths": [...]}}` names them).
fn tuf_release(
    spec: &serde_json::Value,
    r: &super::tuf::Refreshed,
) -> Result<ReleaseManifest, InstallError> {
    let paths: Vec<&str> = spec
        .get("paths")
        .and_then(|p| p.as_array())
        .map(|a| a.iter().filter_map(|p| p.as_str()).collect())
        .unwrap_or_default();
    let mut found = Vec::with_capacity(paths.len());
    let mut expires = String::new();
    for p in paths {
        let f = r.files.get(p).ok_or_else(|| {
            InstallError::new("signature", format!("TUF vouches for no file {p}"))
        })?;
        if expires.is_empty() || f.expires < expires {
            expires = f.expires.clone();
        }
        found.push((f.role.clone(), p.to_owned(), f.target.clone()));
    }
    fleetcare_trust::tuf::release_of(&found, &expires)
        .map_err(|e| InstallError::new(trust_reason(&e), e.to_string()))
}

/// Runs jobs: owns `<data_dir>/update/`.
pub struct Updater {
    dir: PathBuf,
    /// The unsigned root of the key-list era (legacy releases; and the anchor of the one
    /// signed step onto TUF's chain).
    root: Option<Root>,
    /// Where TUF's chain starts on this device.
    anchor: Option<super::tuf::Anchor>,
    installers: BTreeMap<String, Arc<dyn UnitInstaller>>,
    client: CenterClient,
    limits: Limits,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("dir", &self.dir)
            .field("slots", &self.installers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn io_err(what: &str, path: &Path, e: &std::io::Error) -> InstallError {
    InstallError::new("install", format!("{what} {}: {e}", path.display()))
}

/// Run a blocking installer call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, InstallError> + Send + 'static,
) -> Result<T, InstallError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(InstallError::new(
            "install",
            format!("the driver panicked: {e}"),
        ))
    })
}

impl Updater {
    pub fn new(
        data_dir: &Path,
        root: Option<Root>,
        installers: Vec<Arc<dyn UnitInstaller>>,
        client: CenterClient,
        limits: Limits,
    ) -> Updater {
        Updater {
            dir: data_dir.join("update"),
            anchor: root.clone().map(super::tuf::Anchor::Unsigned),
            root,
            installers: installers
                .into_iter()
                .map(|i| (i.slot().to_owned(), i))
                .collect(),
            client,
            limits,
        }
    }

    pub fn client(&self) -> &CenterClient {
        &self.client
    }

    /// Trust a signed TUF root (instead of an unsigned one): releases come only through TUF.
    pub fn with_signed_root(mut self, root: Vec<u8>) -> Updater {
        self.root = None;
        self.anchor = Some(super::tuf::Anchor::Signed(root));
        self
    }

    /// The TUF files an offer's releases name (`{"tuf": {"paths": [...]}}`).
    pub fn tuf_paths(offer: &DeviceJob) -> Vec<String> {
        offer
            .releases
            .iter()
            .filter_map(|r| r.get("tuf")?.get("paths")?.as_array().cloned())
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect()
    }

    /// Refresh this device's TUF metadata and look up `paths` (see `update::tuf`).
    pub async fn refresh_tuf(
        &self,
        token: &str,
        paths: &[String],
        now: SystemTime,
    ) -> Result<super::tuf::Refreshed, InstallError> {
        let Some(anchor) = &self.anchor else {
            return Err(InstallError::new(
                "signature",
                "no root of trust is provisioned (set `trust_root` in the agent config)",
            ));
        };
        super::tuf::refresh(
            &self.client,
            token,
            &super::tuf::dir(&self.dir),
            anchor,
            paths,
            now,
        )
        .await
    }

    pub fn installers(&self) -> &BTreeMap<String, Arc<dyn UnitInstaller>> {
        &self.installers
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    fn staging(&self) -> PathBuf {
        self.dir.join("staging")
    }

    fn keys_path(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    pub fn journal(&self) -> Result<Option<JobJournal>, InstallError> {
        let path = self.journal_path();
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                InstallError::new("install", format!("{} is damaged: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", &path, &e)),
        }
    }

    fn commit(&self, j: &JobJournal) -> Result<(), InstallError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("creating", &self.dir, &e))?;
        let path = self.journal_path();
        let text = serde_json::to_vec_pretty(j).expect("a journal serializes");
        fleetcare_fs::write_atomic(&path, &text, fleetcare_fs::Mode::Private)
            .map_err(|e| io_err("writing", &path, &e))
    }

    /// The trust state: the provisioned root and the newest key list accepted so far.
    fn trust(&self) -> Result<Trust, InstallError> {
        let root = self.root.clone().ok_or_else(|| {
            InstallError::new(
                "signature",
                "no root of trust is provisioned (set `trust_root` in the agent config)",
            )
        })?;
        let mut t = Trust::new(root);
        if let Ok(bytes) = std::fs::read(self.keys_path()) {
            let env = Envelope::parse(&bytes)
                .map_err(|e| InstallError::new("signature", format!("the stored key list: {e}")))?;
            // It was verified when it was stored; verify again (the root may have changed), but
            // an expired one is still the floor for rollback checks.
            if let Ok(payload) =
                env.verify(fleetcare_trust::KEYS_TYPE, &t.root.keys, t.root.threshold)
            {
                t.keys = fleetcare_trust::KeyList::from_json(&payload).ok();
            }
        }
        Ok(t)
    }

    /// Check an offered job against what this device trusts and is: a journal to run, or an
    /// outcome to report (nothing was touched).
    pub fn accept(
        &self,
        offer: &DeviceJob,
        key_list: Option<&serde_json::Value>,
        snapshot: &Snapshot,
        now: SystemTime,
        tuf: Option<Result<super::tuf::Refreshed, InstallError>>,
    ) -> JobJournal {
        let mut j = JobJournal {
            job: offer.id,
            steps: offer.steps.clone(),
            releases: BTreeMap::new(),
            phase: Phase::Accepted,
            outcome: None,
            revert_reason: None,
        };
        if let Err(e) = self.verify(offer, key_list, snapshot, now, tuf, &mut j) {
            tracing::warn!(job = offer.id, reason = e.reason, detail = %e.detail, "job refused");
            j.phase = Phase::Over;
            j.outcome = Some(Outcome::failed(&e));
        }
        j
    }

    fn verify(
        &self,
        offer: &DeviceJob,
        key_list: Option<&serde_json::Value>,
        snapshot: &Snapshot,
        now: SystemTime,
        tuf: Option<Result<super::tuf::Refreshed, InstallError>>,
        j: &mut JobJournal,
    ) -> Result<(), InstallError> {
        let tuf = tuf.transpose()?;
        // The key-list era's trust, for releases that still come as their own envelopes (a
        // device provisioned with a signed TUF root has none: it takes releases only through
        // TUF, and switch steps need no release).
        let mut trust = match (&self.root, &self.anchor) {
            (Some(_), _) | (None, None) => Some(self.trust()?),
            (None, Some(_)) => None,
        };
        if let (Some(kl), Some(trust)) = (key_list, trust.as_mut()) {
            let env: Envelope = serde_json::from_value(kl.clone())
                .map_err(|e| InstallError::new("signature", format!("the key list: {e}")))?;
            match trust.update_keys(&env, now) {
                Ok(true) => {
                    std::fs::create_dir_all(&self.dir)
                        .map_err(|e| io_err("creating", &self.dir, &e))?;
                    fleetcare_fs::write_atomic(
                        &self.keys_path(),
                        env.to_json().as_bytes(),
                        fleetcare_fs::Mode::Private,
                    )
                    .map_err(|e| io_err("writing", &self.keys_path(), &e))?;
                    tracing::info!(
                        version = trust.keys.as_ref().map(|k| k.version),
                        "release key list updated"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    return Err(InstallError::new(
                        trust_reason(&e),
                        format!("the key list the center offers: {e}"),
                    ));
                }
            }
        }
        if offer.steps.is_empty() {
            return Err(InstallError::new("install", "the job has no steps"));
        }
        let mut releases = offer.releases.iter();
        for s in &offer.steps {
            let installer = self.installers.get(&s.slot).ok_or_else(|| {
                InstallError::new(
                    "install",
                    format!("this device cannot install software on unit {}", s.slot),
                )
            })?;
            let unit = snapshot
                .units
                .iter()
                .find(|u| u.slot == s.slot)
                .ok_or_else(|| {
                    InstallError::new(
                        "incompatible_hardware",
                        format!("the device has no unit {}", s.slot),
                    )
                })?;
            let (active, inactive) = installer.software(unit)?;
            match s.action.as_str() {
                "install" => {
                    let env = releases.next().ok_or_else(|| {
                        InstallError::new(
                            "signature",
                            format!("no signed release for {} {}", s.product, s.to),
                        )
                    })?;
                    let m = match (env.get("tuf"), &tuf, trust.as_ref()) {
                        (Some(t), Some(r), _) => tuf_release(t, r).map_err(|e| {
                            InstallError::new(
                                e.reason,
                                format!("{} {}: {}", s.product, s.to, e.detail),
                            )
                        })?,
                        (Some(_), None, _) => {
                            return Err(InstallError::new(
                                "signature",
                                format!(
                                    "{} {}: its TUF metadata was not refreshed",
                                    s.product, s.to
                                ),
                            ));
                        }
                        (None, _, None) => {
                            return Err(InstallError::new(
                                "signature",
                                format!(
                                    "{} {}: this device trusts a signed TUF root and takes releases \
                                     only through TUF",
                                    s.product, s.to
                                ),
                            ));
                        }
                        (None, _, Some(trust)) => {
                            let env: Envelope =
                                serde_json::from_value(env.clone()).map_err(|e| {
                                    InstallError::new("signature", format!("the release: {e}"))
                                })?;
                            trust.verify_release(&env, now).map_err(|e| {
                                InstallError::new(
                                    trust_reason(&e),
                                    format!("{} {}: {e}", s.product, s.to),
                                )
                            })?
                        }
                    };
                    if m.product != s.product || m.version != s.to {
                        return Err(InstallError::new(
                            "signature",
                            format!(
                                "the job asks for {} {} but the signed release is {} {}",
                                s.product, s.to, m.product, m.version
                            ),
                        ));
                    }
                    if !m.targets_unit(&unit.model, &unit.hw_revision) {
                        return Err(InstallError::new(
                            "incompatible_hardware",
                            format!(
                                "{} {} is not made for unit {} ({} revision {})",
                                m.product, m.version, s.slot, unit.model, unit.hw_revision
                            ),
                        ));
                    }
                    if let Some(cur) = active.iter().find(|p| p.product == s.product)
                        && m.counter < cur.counter
                    {
                        return Err(InstallError::new(
                            "rollback",
                            format!(
                                "{} {} has release counter {}, lower than the installed {} ({})",
                                m.product, m.version, m.counter, cur.version, cur.counter
                            ),
                        ));
                    }
                    j.releases.insert(format!("{}/{}", s.slot, s.product), m);
                }
                "switch" => {
                    if !inactive
                        .iter()
                        .any(|p| p.product == s.product && p.version == s.to)
                    {
                        return Err(InstallError::new(
                            "install",
                            format!(
                                "unit {} has no inactive copy of {} {}",
                                s.slot, s.product, s.to
                            ),
                        ));
                    }
                }
                other => {
                    return Err(InstallError::new(
                        "install",
                        format!("unknown action {other:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn status(&self, token: &str, job: u64, state: &str, bytes: Option<(u64, u64)>) {
        let s = JobStatus {
            state: state.into(),
            reason: None,
            detail: None,
            bytes_done: bytes.map(|b| b.0),
            bytes_total: bytes.map(|b| b.1),
        };
        if let Err(e) = self.client.job_status(token, job, &s).await {
            tracing::debug!(job, state, error = %e, "job status not delivered (the outcome will be)");
        }
    }

    /// Run the journal to its end (phase `over`), committing each step. `first_boot`: this is
    /// the first time since the agent started, so a trial in progress uses up a boot.
    pub async fn drive(&self, mut j: JobJournal, token: &str, first_boot: bool) -> JobJournal {
        if first_boot && matches!(j.phase, Phase::Activating | Phase::Activated) {
            for slot in j.slots() {
                let Some(inst) = self.installers.get(&slot).cloned() else {
                    continue;
                };
                let job = j.job;
                match blocking(move || inst.boot(job)).await {
                    Ok(Some(false)) => {
                        j.revert_reason = Some(Outcome {
                            state: "rolled_back".into(),
                            reason: Some("health_check".into()),
                            detail: Some(format!(
                                "unit {slot} was not confirmed within {} boots",
                                super::ab::TRIAL_BOOTS
                            )),
                        });
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(job, %slot, error = %e, "counting a boot"),
                }
            }
            if j.revert_reason.is_some() {
                j.phase = Phase::Reverting;
                self.commit_or_log(&j);
                point("flow.reverting");
            }
        }
        loop {
            let next = match j.phase {
                Phase::Over => return j,
                Phase::Accepted => self
                    .download(&mut j, token)
                    .await
                    .map(|()| Phase::Downloaded),
                Phase::Downloaded => self.stage(&j, token).await.map(|()| Phase::Staged),
                Phase::Staged => Ok(Phase::Activating),
                Phase::Activating => self.activate(&j, token).await.map(|()| Phase::Activated),
                Phase::Activated => match self.health(&j, token).await {
                    Ok(()) => {
                        point("flow.healthy");
                        Ok(Phase::Confirming)
                    }
                    Err(e) => {
                        j.revert_reason = Some(Outcome {
                            state: "rolled_back".into(),
                            reason: Some(e.reason.into()),
                            detail: Some(e.detail),
                        });
                        Ok(Phase::Reverting)
                    }
                },
                Phase::Confirming => match self.each(&j, |i, job| i.confirm(job)).await {
                    Ok(()) => {
                        j.outcome = Some(Outcome {
                            state: "succeeded".into(),
                            reason: None,
                            detail: None,
                        });
                        point("flow.confirmed");
                        Ok(Phase::Over)
                    }
                    Err(e) => {
                        // Every unit was healthy: the decision is made and rolls forward. A
                        // confirmation that fails is retried on the next start.
                        tracing::error!(job = j.job, error = %e, "confirming failed; will retry");
                        return j;
                    }
                },
                Phase::Reverting => match self.each(&j, |i, job| i.revert(job)).await {
                    Ok(()) => {
                        j.outcome = j.revert_reason.take().or_else(|| {
                            Some(Outcome {
                                state: "failed".into(),
                                reason: Some("install".into()),
                                detail: None,
                            })
                        });
                        point("flow.reverted");
                        Ok(Phase::Over)
                    }
                    Err(e) => {
                        // Reverting must finish; a driver that cannot is retried on the next
                        // start. Stop here, with the journal still saying `reverting`.
                        tracing::error!(job = j.job, error = %e, "reverting failed; will retry");
                        return j;
                    }
                },
            };
            match next {
                Ok(p) => j.phase = p,
                Err(e) => {
                    tracing::warn!(job = j.job, reason = e.reason, detail = %e.detail, "job step failed");
                    // Before activation nothing is active from this job: undo the staging and
                    // report the failure. From activation on, every unit goes back.
                    let activated = matches!(j.phase, Phase::Activating | Phase::Activated);
                    let failure = Outcome::failed(&e);
                    j.revert_reason = Some(if activated {
                        Outcome {
                            state: "rolled_back".into(),
                            ..failure
                        }
                    } else {
                        failure
                    });
                    j.phase = Phase::Reverting;
                }
            }
            self.commit_or_log(&j);
            point(match j.phase {
                Phase::Downloaded => "flow.downloaded",
                Phase::Staged => "flow.staged",
                Phase::Activating => "flow.activating",
                Phase::Activated => "flow.activated",
                Phase::Reverting => "flow.reverting",
                _ => "flow.step",
            });
        }
    }

    fn commit_or_log(&self, j: &JobJournal) {
        if let Err(e) = self.commit(j) {
            tracing::error!(job = j.job, error = %e, "writing the job journal");
        }
    }

    async fn each(
        &self,
        j: &JobJournal,
        f: impl Fn(&dyn UnitInstaller, u64) -> Result<(), InstallError> + Send + Sync + Clone + 'static,
    ) -> Result<(), InstallError> {
        for slot in j.slots() {
            let inst = self.installer(&slot)?;
            let job = j.job;
            let f = f.clone();
            blocking(move || f(inst.as_ref(), job)).await?;
        }
        Ok(())
    }

    fn installer(&self, slot: &str) -> Result<Arc<dyn UnitInstaller>, InstallError> {
        self.installers
            .get(slot)
            .cloned()
            .ok_or_else(|| InstallError::new("install", format!("no installer for unit {slot}")))
    }

    async fn download(&self, j: &mut JobJournal, token: &str) -> Result<(), InstallError> {
        let total: u64 = j
            .releases
            .values()
            .flat_map(|m| &m.artifacts)
            .map(|a| a.size)
            .sum();
        let mut before = 0u64;
        let mut last_report = Instant::now() - Duration::from_secs(10);
        self.status(token, j.job, "downloading", Some((0, total)))
            .await;
        for m in j.releases.values() {
            for a in &m.artifacts {
                let url = format!("{}/device/v1/artifacts/{}", self.client.base(), a.sha256);
                let mut held = 0u64;
                let mut progress = |n: u64| held = n;
                download::fetch(
                    self.client.http(),
                    &download::Target {
                        url: &url,
                        token,
                        sha256: &a.sha256,
                        size: a.size,
                    },
                    &self.staging(),
                    &self.limits,
                    &mut progress,
                )
                .await?;
                before += a.size.max(held);
                if last_report.elapsed() > Duration::from_secs(2) {
                    self.status(token, j.job, "downloading", Some((before, total)))
                        .await;
                    last_report = Instant::now();
                }
            }
        }
        self.status(token, j.job, "downloaded", Some((total, total)))
            .await;
        Ok(())
    }

    async fn stage(&self, j: &JobJournal, token: &str) -> Result<(), InstallError> {
        self.status(token, j.job, "verifying", None).await;
        let mut by_slot: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        for s in &j.steps {
            let change = if s.action == "switch" {
                Change::Switch {
                    product: s.product.clone(),
                    version: s.to.clone(),
                }
            } else {
                let m = j
                    .releases
                    .get(&format!("{}/{}", s.slot, s.product))
                    .ok_or_else(|| InstallError::new("install", "the journal lost a release"))?;
                Change::Install(StageItem {
                    product: m.product.clone(),
                    maker: m.maker.clone(),
                    version: m.version.clone(),
                    counter: m.counter,
                    files: m
                        .artifacts
                        .iter()
                        .map(|a| StagedFile {
                            name: a.name.clone(),
                            path: self.staging().join(&a.sha256),
                            size: a.size,
                            sha256: a.sha256.clone(),
                        })
                        .collect(),
                })
            };
            by_slot.entry(s.slot.clone()).or_default().push(change);
        }
        self.status(token, j.job, "installing", None).await;
        for (slot, changes) in by_slot {
            let inst = self.installer(&slot)?;
            let job = j.job;
            blocking(move || inst.stage(job, &changes)).await?;
        }
        Ok(())
    }

    async fn activate(&self, j: &JobJournal, token: &str) -> Result<(), InstallError> {
        self.status(token, j.job, "activating", None).await;
        self.each(j, |i, job| i.activate(job)).await
    }

    async fn health(&self, j: &JobJournal, token: &str) -> Result<(), InstallError> {
        self.status(token, j.job, "health_check", None).await;
        self.each(j, |i, job| i.health(job)).await
    }

    /// Report the outcome of a finished journal; once the center has it (or has forgotten the
    /// job), remove the journal and the staged downloads. `Err` if it should be tried again.
    pub async fn report(&self, j: &JobJournal, token: &str) -> Result<(), String> {
        let o = j.outcome.clone().unwrap_or(Outcome {
            state: "failed".into(),
            reason: Some("install".into()),
            detail: None,
        });
        let s = JobStatus {
            state: o.state,
            reason: o.reason,
            detail: o.detail,
            bytes_done: None,
            bytes_total: None,
        };
        match self.client.job_status(token, j.job, &s).await {
            Ok(_) => {}
            Err(e) if !e.is_retryable() => {
                tracing::warn!(job = j.job, error = %e, "the center refused the job's outcome; dropping it");
            }
            Err(e) => return Err(e.to_string()),
        }
        point("flow.reported");
        let _ = std::fs::remove_dir_all(self.staging());
        let _ = fleetcare_fs::remove_durably(&self.journal_path());
        tracing::info!(job = j.job, state = %s.state, reason = ?s.reason, "job over");
        Ok(())
    }

    /// Record a refused offer durably before reporting it.
    pub fn begin(&self, j: &JobJournal) -> Result<(), InstallError> {
        self.commit(j)?;
        point("flow.accepted");
        Ok(())
    }
}
