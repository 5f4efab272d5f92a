//! The command driver: an integrator's scripts do the unit's work, the agent keeps the books.
//!
//! The agent keeps the same banks and boot-control record as the built-in A/B driver (under
//! `<data_dir>/update/units/<slot>`), so the files a script installs from are verified
//! copies, rollback counters are kept, and a trial is counted in boots. Each step runs the
//! integrator's command after the agent's own part succeeded (stage) or before it records
//! the change (activate, confirm, revert), with
//! `FLEETCARE_SLOT`, `FLEETCARE_JOB` and `FLEETCARE_BANK_DIR` (the bank being staged or
//! running) in the environment. A command must be idempotent: after a crash it runs again.
//! Exit status 0 is success; anything else fails the step (and the job is reverted).

use std::path::Path;
use std::time::Duration;

use fleetcare_wire::Unit;

use super::ab::{AbDriver, Installed};
use super::{Change, InstallError, UnitInstaller};

/// The integrator's commands (each an argv; empty: nothing to run for that step).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commands {
    pub stage: Vec<String>,
    pub activate: Vec<String>,
    pub health: Vec<String>,
    pub confirm: Vec<String>,
    pub revert: Vec<String>,
    /// Longest a command may run.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct CommandDriver {
    books: AbDriver,
    commands: Commands,
}

impl CommandDriver {
    pub fn new(
        books_dir: &Path,
        slot: &str,
        commands: Commands,
    ) -> Result<CommandDriver, InstallError> {
        Ok(CommandDriver {
            books: AbDriver::new(books_dir, slot)?,
            commands,
        })
    }

    fn run(
        &self,
        step: &str,
        argv: &[String],
        job: u64,
        bank: &Path,
        reason: &'static str,
    ) -> Result<(), InstallError> {
        let Some((cmd, args)) = argv.split_first() else {
            return Ok(());
        };
        let mut child = std::process::Command::new(cmd)
            .args(args)
            .env("FLEETCARE_SLOT", self.books.slot())
            .env("FLEETCARE_JOB", job.to_string())
            .env("FLEETCARE_STEP", step)
            .env("FLEETCARE_BANK_DIR", bank)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| InstallError::new(reason, format!("{step} command {cmd}: {e}")))?;
        let deadline =
            std::time::Instant::now() + self.commands.timeout.unwrap_or(Duration::from_secs(600));
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(InstallError::new(
                        reason,
                        format!("{step} command {cmd} failed: {status}"),
                    ));
                }
                Ok(None) if std::time::Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(InstallError::new(
                        "timeout",
                        format!("{step} command {cmd} took too long"),
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    return Err(InstallError::new(
                        reason,
                        format!("{step} command {cmd}: {e}"),
                    ));
                }
            }
        }
    }

    fn bank(&self, which: Which) -> Result<std::path::PathBuf, InstallError> {
        let rec = self
            .books
            .load()?
            .ok_or_else(|| InstallError::new("install", "no boot-control record"))?;
        let bank = match which {
            Which::Active => rec.active.clone(),
            Which::Inactive => rec.inactive(),
        };
        Ok(self.books.dir().join(bank))
    }
}

enum Which {
    Active,
    Inactive,
}

impl UnitInstaller for CommandDriver {
    fn slot(&self) -> &str {
        self.books.slot()
    }

    fn software(&self, reported: &Unit) -> Result<(Vec<Installed>, Vec<Installed>), InstallError> {
        self.books.software(reported)
    }

    fn stage(&self, job: u64, changes: &[Change]) -> Result<(), InstallError> {
        self.books.stage(job, changes)?;
        let bank = self.bank(Which::Inactive)?;
        self.run("stage", &self.commands.stage, job, &bank, "install")
    }

    fn activate(&self, job: u64) -> Result<(), InstallError> {
        let on_trial = self
            .books
            .load()?
            .and_then(|r| r.trial)
            .is_some_and(|t| t.job == job);
        if !on_trial {
            let bank = self.bank(Which::Inactive)?;
            self.run("activate", &self.commands.activate, job, &bank, "install")?;
        }
        self.books.activate(job)
    }

    fn boot(&self, job: u64) -> Result<Option<bool>, InstallError> {
        self.books.boot(job)
    }

    fn health(&self, job: u64) -> Result<(), InstallError> {
        self.books.health(job)?;
        let bank = self.bank(Which::Active)?;
        self.run("health", &self.commands.health, job, &bank, "health_check")
    }

    fn confirm(&self, job: u64) -> Result<(), InstallError> {
        let bank = self.bank(Which::Active)?;
        self.run("confirm", &self.commands.confirm, job, &bank, "install")?;
        self.books.confirm(job)
    }

    fn revert(&self, job: u64) -> Result<(), InstallError> {
        let on_trial = self
            .books
            .load()?
            .and_then(|r| r.trial)
            .is_some_and(|t| t.job == job);
        if on_trial {
            let bank = self.bank(Which::Active)?;
            self.run("revert", &self.commands.revert, job, &bank, "install")?;
        }
        self.books.revert(job)
    }
}
