//! Software installation on the device: verified downloads, installers (the unit-driver side
//! of an install), and the job flow with its journal.
//!
//! - [`download`]: resumable, verified-while-streaming downloads of artifacts.
//! - [`ab`]: the built-in A/B driver (two banks per unit, boot-control record, trials).
//! - [`command`]: a driver that runs an integrator's scripts.
//! - [`flow`]: a job from offer to report, one journaled step at a time.

pub mod ab;
pub mod command;
pub mod crash;
pub mod download;
pub mod flow;
pub mod tuf;

use std::path::PathBuf;

use fleetcare_trust::ArtifactName;
use fleetcare_wire::Unit;

pub use ab::{AbDriver, Installed};

/// Why an install step failed: a uniform reason code and the details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct InstallError {
    /// One of the job reason codes (`install`, `integrity`, `no_space`, `health_check`, …).
    pub reason: &'static str,
    pub detail: String,
}

impl InstallError {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> InstallError {
        InstallError {
            reason,
            detail: detail.into(),
        }
    }
}

/// A verified file ready to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    pub name: ArtifactName,
    /// Where the verified download is.
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// A release to install on a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageItem {
    pub product: String,
    pub maker: String,
    pub version: String,
    pub counter: u64,
    pub files: Vec<StagedFile>,
}

/// One change to a unit's software.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Install(StageItem),
    /// Make the copy in the inactive bank active (no download).
    Switch {
        product: String,
        version: String,
    },
}

/// The install side of a unit driver. Every method runs on a blocking thread and must be
/// idempotent for a given job: after a crash the flow calls the same step again.
pub trait UnitInstaller: Send + Sync + 'static {
    fn slot(&self) -> &str;
    /// The unit cannot take a job now (printing, a door open…): why. The agent tells the
    /// center it is busy and tries again later; the default is never busy.
    fn busy(&self) -> Option<String> {
        None
    }
    /// The software in the active and the inactive bank (what the device runs, and what a
    /// switch can go to). `reported` is what the structure source says, for a driver that
    /// must first learn what the unit came with.
    fn software(&self, reported: &Unit) -> Result<(Vec<Installed>, Vec<Installed>), InstallError>;
    /// Write the inactive bank: the active set with `changes` applied.
    fn stage(&self, job: u64, changes: &[Change]) -> Result<(), InstallError>;
    /// Make the staged bank active, on trial.
    fn activate(&self, job: u64) -> Result<(), InstallError>;
    /// A boot (agent start) during the job's trial uses up one of its boots: `Some(true)` if
    /// the trial may go on, `Some(false)` if it had none left (it must be reverted), `None` if
    /// the unit is not on trial for the job.
    fn boot(&self, job: u64) -> Result<Option<bool>, InstallError>;
    fn health(&self, job: u64) -> Result<(), InstallError>;
    /// Keep the trial bank.
    fn confirm(&self, job: u64) -> Result<(), InstallError>;
    /// Go back to the bank that was active before the job (nothing if it never switched).
    fn revert(&self, job: u64) -> Result<(), InstallError>;
}
