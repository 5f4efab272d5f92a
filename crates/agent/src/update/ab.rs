//! The built-in A/B driver: two banks of software per unit and a boot-control record.
//!
//! ```text
//! <units_dir>/<slot>/boot.json            the boot-control record, replaced atomically
//! <units_dir>/<slot>/{a,b}/<product>/<artifact name>
//! ```
//!
//! The record says which bank is active, what each bank holds (product, maker, version,
//! release counter, files with size and SHA-256), whether the inactive bank is being written
//! (`staging`), which job's content it holds once written (`staged`), and the trial: the job
//! that activated the bank, the bank to go back to, and how many boots are left to confirm it.
//! Every change to the record is one atomic replace (temporary file, fsync, rename, fsync of
//! the directory), so after a crash the record is either the old or the new one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use fleetcare_trust::ArtifactName;
use fleetcare_wire::{Software, Unit};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::crash::point;
use super::{Change, InstallError, UnitInstaller};

/// Boots a trial may take before it is reverted.
pub const TRIAL_BOOTS: u8 = 3;

/// One file of an installed product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub name: ArtifactName,
    pub size: u64,
    pub sha256: String,
}

/// A product in a bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub product: String,
    pub maker: String,
    pub version: String,
    /// The release counter it was installed with (0 for what the device came with).
    #[serde(default)]
    pub counter: u64,
    #[serde(default)]
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub job: u64,
    /// The bank to go back to.
    pub previous: String,
    pub boots_left: u8,
}

/// The boot-control record of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootRecord {
    /// `a` or `b`.
    pub active: String,
    pub banks: BTreeMap<String, Vec<Installed>>,
    /// The inactive bank is being written for this job: its content is not usable.
    pub staging: Option<u64>,
    /// The inactive bank holds this job's complete content.
    pub staged: Option<u64>,
    pub trial: Option<Trial>,
    /// The last job this unit finished, and how: `confirmed` or `reverted`.
    pub last: Option<(u64, String)>,
}

impl BootRecord {
    pub fn inactive(&self) -> String {
        if self.active == "a" { "b" } else { "a" }.to_owned()
    }

    fn bank(&self, name: &str) -> &[Installed] {
        self.banks.get(name).map_or(&[], Vec::as_slice)
    }
}

fn install_err(detail: impl Into<String>) -> InstallError {
    InstallError::new("install", detail)
}

fn io_err(what: &str, path: &Path, e: &io::Error) -> InstallError {
    if e.raw_os_error() == Some(28) {
        return InstallError::new("no_space", format!("{what} {}: {e}", path.display()));
    }
    install_err(format!("{what} {}: {e}", path.display()))
}

/// A slot or product name as a directory name: itself when it is a plain component (the
/// rules of an artifact name), otherwise `~` and the first 32 hex digits of its SHA-256 (`~`
/// is never in a plain name, so the two never collide). No name can leave its directory.
pub fn dir_name(name: &str) -> String {
    match ArtifactName::new(name) {
        Ok(n) => n.to_string(),
        Err(_) => format!("~{}", &hex(&Sha256::digest(name.as_bytes()))[..32]),
    }
}

fn product_dir(product: &str) -> Result<String, InstallError> {
    Ok(dir_name(product))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copy `from` to `to` while hashing what is read; the copy is fsynced. The hash and size of
/// the bytes written, so the caller checks exactly what was installed.
fn copy_hashing(from: &Path, to: &Path, limit: u64) -> Result<(u64, String), InstallError> {
    let mut src = fs::File::open(from).map_err(|e| io_err("opening", from, &e))?;
    let mut dst = fs::File::create(to).map_err(|e| io_err("creating", to, &e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n: u64 = 0;
    loop {
        let got = src
            .read(&mut buf)
            .map_err(|e| io_err("reading", from, &e))?;
        if got == 0 {
            break;
        }
        n += got as u64;
        if n > limit {
            return Err(InstallError::new(
                "integrity",
                format!(
                    "{} grew past its signed size of {limit} bytes",
                    from.display()
                ),
            ));
        }
        hasher.update(&buf[..got]);
        dst.write_all(&buf[..got])
            .map_err(|e| io_err("writing", to, &e))?;
    }
    dst.sync_all().map_err(|e| io_err("syncing", to, &e))?;
    Ok((n, hex(&hasher.finalize())))
}

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        n += got as u64;
        hasher.update(&buf[..got]);
    }
    Ok((n, hex(&hasher.finalize())))
}

/// The built-in A/B driver of one unit.
#[derive(Debug, Clone)]
pub struct AbDriver {
    slot: String,
    dir: PathBuf,
    /// Run as the health check after the built-in file check (exit 0: healthy), with
    /// `FLEETCARE_SLOT`, `FLEETCARE_BANK_DIR` and `FLEETCARE_JOB` set.
    health_command: Option<Vec<String>>,
}

impl AbDriver {
    /// The driver for `slot`, keeping its banks under `units_dir/<slot>`.
    pub fn new(units_dir: &Path, slot: &str) -> Result<AbDriver, InstallError> {
        Ok(AbDriver {
            slot: slot.to_owned(),
            dir: units_dir.join(dir_name(slot)),
            health_command: None,
        })
    }

    pub fn with_health_command(mut self, cmd: Option<Vec<String>>) -> AbDriver {
        self.health_command = cmd;
        self
    }

    fn record_path(&self) -> PathBuf {
        self.dir.join("boot.json")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The boot-control record, if the unit has one.
    pub fn load(&self) -> Result<Option<BootRecord>, InstallError> {
        let path = self.record_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| install_err(format!("{} is damaged: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", &path, &e)),
        }
    }

    fn record(&self) -> Result<BootRecord, InstallError> {
        self.load()?.ok_or_else(|| {
            install_err(format!("unit {} has no boot-control record yet", self.slot))
        })
    }

    fn save(&self, rec: &BootRecord) -> Result<(), InstallError> {
        let path = self.record_path();
        let text = serde_json::to_vec_pretty(rec).expect("a boot record serializes");
        fleetcare_fs::write_atomic(&path, &text, fleetcare_fs::Mode::Shared)
            .map_err(|e| io_err("writing", &path, &e))
    }

    fn bank_dir(&self, bank: &str) -> PathBuf {
        self.dir.join(bank)
    }

    /// Create the record from what the device reports, the first time.
    fn seed(&self, unit: &Unit) -> Result<BootRecord, InstallError> {
        fs::create_dir_all(self.bank_dir("a")).map_err(|e| io_err("creating", &self.dir, &e))?;
        fs::create_dir_all(self.bank_dir("b")).map_err(|e| io_err("creating", &self.dir, &e))?;
        let conv = |s: &Software| Installed {
            product: s.product.clone(),
            maker: s.maker.clone(),
            version: s.version.clone(),
            counter: 0,
            files: Vec::new(),
        };
        let mut banks = BTreeMap::new();
        banks.insert(
            "a".to_owned(),
            unit.software
                .iter()
                .filter(|s| s.active)
                .map(conv)
                .collect(),
        );
        banks.insert(
            "b".to_owned(),
            unit.software
                .iter()
                .filter(|s| !s.active)
                .map(conv)
                .collect(),
        );
        let rec = BootRecord {
            active: "a".into(),
            banks,
            staging: None,
            staged: None,
            trial: None,
            last: None,
        };
        self.save(&rec)?;
        fleetcare_fs::sync_dir(self.dir.parent().unwrap_or(&self.dir))
            .map_err(|e| io_err("syncing", &self.dir, &e))?;
        Ok(rec)
    }

    /// Verify every file of a bank's product against its record.
    fn check_product(&self, bank: &str, p: &Installed) -> Result<(), InstallError> {
        let dir = self.bank_dir(bank).join(product_dir(&p.product)?);
        for f in &p.files {
            let path = dir.join(f.name.as_str());
            let (size, sha) = hash_file(&path).map_err(|e| {
                InstallError::new("health_check", format!("{}: {e}", path.display()))
            })?;
            if size != f.size || sha != f.sha256 {
                return Err(InstallError::new(
                    "health_check",
                    format!("{} does not match its record", path.display()),
                ));
            }
        }
        Ok(())
    }

    /// Replace `bank/<product>` with a copy of `from_bank/<product>`, checked against `p`.
    fn copy_product(
        &self,
        from_bank: &str,
        to_bank: &str,
        p: &Installed,
    ) -> Result<(), InstallError> {
        let name = product_dir(&p.product)?;
        let src = self.bank_dir(from_bank).join(&name);
        let dst = self.bank_dir(to_bank).join(&name);
        remove_dir(&dst)?;
        fs::create_dir_all(&dst).map_err(|e| io_err("creating", &dst, &e))?;
        for f in &p.files {
            let (size, sha) = copy_hashing(
                &src.join(f.name.as_str()),
                &dst.join(f.name.as_str()),
                f.size,
            )?;
            if size != f.size || sha != f.sha256 {
                return Err(InstallError::new(
                    "integrity",
                    format!(
                        "{} changed since it was installed",
                        src.join(f.name.as_str()).display()
                    ),
                ));
            }
        }
        fleetcare_fs::sync_dir(&dst).map_err(|e| io_err("syncing", &dst, &e))
    }
}

fn remove_dir(dir: &Path) -> Result<(), InstallError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", dir, &e)),
    }
}

impl UnitInstaller for AbDriver {
    fn slot(&self) -> &str {
        &self.slot
    }

    fn software(&self, reported: &Unit) -> Result<(Vec<Installed>, Vec<Installed>), InstallError> {
        let rec = match self.load()? {
            Some(r) => r,
            None => self.seed(reported)?,
        };
        let inactive = if rec.staging.is_some() {
            Vec::new()
        } else {
            rec.bank(&rec.inactive()).to_vec()
        };
        Ok((rec.bank(&rec.active).to_vec(), inactive))
    }

    fn stage(&self, job: u64, changes: &[Change]) -> Result<(), InstallError> {
        let mut rec = self.record()?;
        if rec.staged == Some(job) && rec.staging.is_none() {
            return Ok(());
        }
        if let Some(t) = &rec.trial {
            return Err(install_err(format!(
                "unit {} is on trial for job {}; it must be confirmed or reverted first",
                self.slot, t.job
            )));
        }
        let (active, inactive) = (rec.active.clone(), rec.inactive());
        // What the inactive bank will hold, and where each product comes from.
        enum From<'a> {
            Active,
            Inactive,
            Staged(&'a super::StageItem),
        }
        let mut plan: Vec<(Installed, From)> = rec
            .bank(&active)
            .iter()
            .map(|p| (p.clone(), From::Active))
            .collect();
        for c in changes {
            let (entry, from) = match c {
                Change::Switch { product, version } => {
                    let Some(copy) = rec
                        .bank(&inactive)
                        .iter()
                        .find(|p| p.product == *product && p.version == *version)
                        .filter(|_| rec.staging.is_none())
                    else {
                        return Err(install_err(format!(
                            "unit {} has no copy of {product} {version} in its inactive bank to switch to",
                            self.slot
                        )));
                    };
                    (copy.clone(), From::Inactive)
                }
                Change::Install(item) => (
                    Installed {
                        product: item.product.clone(),
                        maker: item.maker.clone(),
                        version: item.version.clone(),
                        counter: item.counter,
                        files: item
                            .files
                            .iter()
                            .map(|f| FileRecord {
                                name: f.name.clone(),
                                size: f.size,
                                sha256: f.sha256.clone(),
                            })
                            .collect(),
                    },
                    From::Staged(item),
                ),
            };
            product_dir(&entry.product)?;
            plan.retain(|(p, _)| p.product != entry.product);
            plan.push((entry, from));
        }
        plan.sort_by(|a, b| a.0.product.cmp(&b.0.product));

        rec.staging = Some(job);
        rec.staged = None;
        self.save(&rec)?;
        point("ab.stage.begin");
        let bank_dir = self.bank_dir(&inactive);
        fs::create_dir_all(&bank_dir).map_err(|e| io_err("creating", &bank_dir, &e))?;
        // Products the new bank does not hold go.
        if let Ok(entries) = fs::read_dir(&bank_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !plan.iter().any(|(p, _)| dir_name(&p.product) == name) {
                    remove_dir(&e.path())?;
                }
            }
        }
        for (entry, from) in &plan {
            match from {
                From::Active => self.copy_product(&active, &inactive, entry)?,
                From::Inactive => self.check_product(&inactive, entry).map_err(|e| {
                    InstallError::new("integrity", format!("the copy to switch to: {}", e.detail))
                })?,
                From::Staged(item) => {
                    let dst = bank_dir.join(product_dir(&item.product)?);
                    remove_dir(&dst)?;
                    fs::create_dir_all(&dst).map_err(|e| io_err("creating", &dst, &e))?;
                    for f in &item.files {
                        let (size, sha) =
                            copy_hashing(&f.path, &dst.join(f.name.as_str()), f.size)?;
                        if size != f.size || sha != f.sha256 {
                            remove_dir(&dst)?;
                            return Err(InstallError::new(
                                "integrity",
                                format!(
                                    "{} changed after it was verified: {size} bytes with SHA-256 \
                                     {sha}, signed {} bytes with {}",
                                    f.path.display(),
                                    f.size,
                                    f.sha256
                                ),
                            ));
                        }
                        point("ab.stage.file");
                    }
                    fleetcare_fs::sync_dir(&dst).map_err(|e| io_err("syncing", &dst, &e))?;
                }
            }
        }
        fleetcare_fs::sync_dir(&bank_dir).map_err(|e| io_err("syncing", &bank_dir, &e))?;
        point("ab.stage.files");
        rec.banks
            .insert(inactive, plan.into_iter().map(|(p, _)| p).collect());
        rec.staging = None;
        rec.staged = Some(job);
        self.save(&rec)?;
        point("ab.stage.done");
        Ok(())
    }

    fn activate(&self, job: u64) -> Result<(), InstallError> {
        let mut rec = self.record()?;
        if rec.trial.as_ref().is_some_and(|t| t.job == job) {
            return Ok(());
        }
        if rec.staged != Some(job) || rec.staging.is_some() {
            return Err(install_err(format!(
                "unit {} has nothing staged for job {job}",
                self.slot
            )));
        }
        let previous = rec.active.clone();
        rec.active = rec.inactive();
        rec.staged = None;
        rec.trial = Some(Trial {
            job,
            previous,
            boots_left: TRIAL_BOOTS,
        });
        self.save(&rec)?;
        point("ab.activate");
        Ok(())
    }

    fn boot(&self, job: u64) -> Result<Option<bool>, InstallError> {
        let mut rec = self.record()?;
        let Some(t) = rec.trial.as_mut().filter(|t| t.job == job) else {
            return Ok(None);
        };
        if t.boots_left == 0 {
            return Ok(Some(false));
        }
        t.boots_left -= 1;
        self.save(&rec)?;
        point("ab.boot");
        Ok(Some(true))
    }

    fn health(&self, job: u64) -> Result<(), InstallError> {
        let rec = self.record()?;
        if rec.trial.as_ref().is_none_or(|t| t.job != job) {
            return Err(InstallError::new(
                "health_check",
                format!("unit {} is not on trial for job {job}", self.slot),
            ));
        }
        for p in rec.bank(&rec.active) {
            self.check_product(&rec.active, p)?;
        }
        if let Some(cmd) = &self.health_command {
            let out = std::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .env("FLEETCARE_SLOT", &self.slot)
                .env("FLEETCARE_JOB", job.to_string())
                .env("FLEETCARE_BANK_DIR", self.bank_dir(&rec.active))
                .output()
                .map_err(|e| {
                    InstallError::new("health_check", format!("running {}: {e}", cmd[0]))
                })?;
            if !out.status.success() {
                return Err(InstallError::new(
                    "health_check",
                    format!(
                        "{} said the unit is not healthy ({}): {}",
                        cmd[0],
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn confirm(&self, job: u64) -> Result<(), InstallError> {
        let mut rec = self.record()?;
        if rec
            .last
            .as_ref()
            .is_some_and(|(j, how)| *j == job && how == "confirmed")
        {
            return Ok(());
        }
        if rec.trial.as_ref().is_none_or(|t| t.job != job) {
            return Err(install_err(format!(
                "unit {} has no trial of job {job} to confirm",
                self.slot
            )));
        }
        rec.trial = None;
        rec.last = Some((job, "confirmed".into()));
        self.save(&rec)?;
        point("ab.confirm");
        Ok(())
    }

    fn revert(&self, job: u64) -> Result<(), InstallError> {
        let mut rec = self.record()?;
        match rec.trial.take() {
            Some(t) if t.job == job => {
                rec.active = t.previous;
                rec.last = Some((job, "reverted".into()));
            }
            other => {
                rec.trial = other;
                // Not activated (or already reverted): nothing of this job is active.
                if rec.staging == Some(job) {
                    // Half written: the inactive bank holds nothing usable.
                    rec.staging = None;
                    let inactive = rec.inactive();
                    rec.banks.insert(inactive, Vec::new());
                } else if rec.staged == Some(job) {
                    // Complete but never activated: it stays as the inactive copy.
                    rec.staged = None;
                } else {
                    return Ok(());
                }
            }
        }
        self.save(&rec)?;
        point("ab.revert");
        Ok(())
    }
}
