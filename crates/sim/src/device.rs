//! A virtual device: its structure and counters (changed by the world), its error journal
//! (in memory), the structure source the agent reads, and the unit installers its jobs run
//! through.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use fleetcare_agent::AgentHandle;
use fleetcare_agent::journal::{Journal, NewEvent};
use fleetcare_agent::source::{Snapshot, SourceError, StructureSource};
use fleetcare_agent::update::{Change, InstallError, Installed, UnitInstaller};
use fleetcare_wire::Unit;

use crate::rng::Rng;

/// What changes as the device works.
#[derive(Debug)]
pub(crate) struct Working {
    pub snapshot: Snapshot,
    pub rng: Rng,
    /// This device's printing rate against the profile's mean.
    pub pace: f64,
    /// Units replaced so far (for new serials).
    pub swaps: u32,
}

/// One virtual device.
#[derive(Debug)]
pub struct SimDevice {
    pub n: usize,
    pub id: String,
    pub(crate) working: Mutex<Working>,
    pub journal: Arc<Journal>,
    pub(crate) handle: OnceLock<AgentHandle>,
    /// Bumped whenever the structure changes (the source's change token).
    pub(crate) version: std::sync::atomic::AtomicU64,
    install_failure: f64,
    stage_failure: f64,
    busy_share: f64,
    looks: std::sync::atomic::AtomicU64,
}

impl SimDevice {
    pub(crate) fn new(
        n: usize,
        snapshot: Snapshot,
        journal: Journal,
        install_failure: f64,
        stage_failure: f64,
        busy_share: f64,
    ) -> SimDevice {
        let mut rng = Rng::new(n as u64);
        let pace = 0.25 * 16f64.powf(rng.unit()); // 0.25× to 4×, log-uniform
        SimDevice {
            n,
            id: snapshot.device_id.clone(),
            working: Mutex::new(Working {
                snapshot,
                rng,
                pace,
                swaps: 0,
            }),
            journal: Arc::new(journal),
            handle: OnceLock::new(),
            version: std::sync::atomic::AtomicU64::new(0),
            install_failure,
            stage_failure,
            busy_share,
            looks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The device as it is now.
    pub fn snapshot(&self) -> Snapshot {
        self.working.lock().expect("device").snapshot.clone()
    }

    /// The device's own software logs an event (durable in its journal), and the agent is
    /// told to look at its triggers.
    pub fn log(&self, event: &NewEvent) -> Result<(u64, u64), String> {
        let at = fleetcare_core::clock::Clock::now_ms(&fleetcare_core::clock::SystemClock);
        let r = self.journal.append(event, at).map_err(|e| e.to_string())?;
        if let Some(h) = self.handle.get() {
            h.errors_logged();
        }
        Ok(r)
    }

    /// Change the device (a unit swap, …) and have the agent look at it now.
    pub fn change(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.working.lock().expect("device").snapshot);
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.get() {
            h.structure_changed();
        }
    }

    /// A draw that is the same for the same device, job and purpose (a retried step gets
    /// the same answer).
    fn fate(&self, job: u64, salt: u64) -> f64 {
        Rng::new(
            (self.n as u64)
                .wrapping_mul(0x1000_0000_01B3)
                .wrapping_add(job.wrapping_mul(31))
                ^ salt,
        )
        .unit()
    }
}

/// The structure source of a virtual device.
#[derive(Debug, Clone)]
pub struct SimSource(pub Arc<SimDevice>);

impl StructureSource for SimSource {
    fn read(&self) -> Result<Snapshot, SourceError> {
        Ok(self.0.snapshot())
    }

    fn cheap(&self) -> bool {
        true
    }

    fn version(&self) -> Option<u64> {
        Some(self.0.version.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn set_in_service(&self, slot: &str, in_service: bool) -> Result<(), String> {
        tracing::debug!(device = %self.0.id, slot, in_service, "the center changes a unit's service");
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Banks {
    seeded: bool,
    active: Vec<Installed>,
    inactive: Vec<Installed>,
    staged: Option<u64>,
    /// The job on trial, and the banks before it.
    trial: Option<u64>,
}

/// A unit's installer: two banks in memory; staging and health checks fail at the profile's
/// rates.
#[derive(Debug)]
pub struct SimInstaller {
    slot: String,
    device: Arc<SimDevice>,
    banks: Mutex<Banks>,
}

impl SimInstaller {
    pub fn new(device: Arc<SimDevice>, slot: &str) -> SimInstaller {
        SimInstaller {
            slot: slot.to_owned(),
            device,
            banks: Mutex::new(Banks::default()),
        }
    }
}

fn installed(sw: &fleetcare_wire::Software) -> Installed {
    Installed {
        product: sw.product.clone(),
        maker: sw.maker.clone(),
        version: sw.version.clone(),
        counter: 0,
        files: Vec::new(),
    }
}

impl UnitInstaller for SimInstaller {
    fn slot(&self) -> &str {
        &self.slot
    }

    fn busy(&self) -> Option<String> {
        let look = self
            .device
            .looks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (self.device.fate(look, 3) < self.device.busy_share).then(|| "printing a job".to_owned())
    }

    fn software(&self, reported: &Unit) -> Result<(Vec<Installed>, Vec<Installed>), InstallError> {
        let mut b = self.banks.lock().expect("banks");
        if !b.seeded {
            b.seeded = true;
            b.active = reported
                .software
                .iter()
                .filter(|s| s.active)
                .map(installed)
                .collect();
            b.inactive = reported
                .software
                .iter()
                .filter(|s| !s.active)
                .map(installed)
                .collect();
        }
        Ok((b.active.clone(), b.inactive.clone()))
    }

    fn stage(&self, job: u64, changes: &[Change]) -> Result<(), InstallError> {
        let mut b = self.banks.lock().expect("banks");
        if b.staged == Some(job) {
            return Ok(());
        }
        if let Some(t) = b.trial {
            return Err(InstallError::new(
                "install",
                format!("unit {} is on trial for job {t}", self.slot),
            ));
        }
        if self.device.fate(job, 1) < self.device.stage_failure {
            return Err(InstallError::new(
                "install",
                format!("simulated staging failure on unit {}", self.slot),
            ));
        }
        let mut next: BTreeMap<String, Installed> = b
            .active
            .iter()
            .map(|p| (p.product.clone(), p.clone()))
            .collect();
        for c in changes {
            match c {
                Change::Install(item) => {
                    next.insert(
                        item.product.clone(),
                        Installed {
                            product: item.product.clone(),
                            maker: item.maker.clone(),
                            version: item.version.clone(),
                            counter: item.counter,
                            files: Vec::new(),
                        },
                    );
                }
                Change::Switch { product, version } => {
                    let Some(p) = b
                        .inactive
                        .iter()
                        .find(|p| p.product == *product && p.version == *version)
                    else {
                        return Err(InstallError::new(
                            "install",
                            format!("the inactive bank holds no {product} {version}"),
                        ));
                    };
                    next.insert(product.clone(), p.clone());
                }
            }
        }
        b.inactive = next.into_values().collect();
        b.staged = Some(job);
        Ok(())
    }

    fn activate(&self, job: u64) -> Result<(), InstallError> {
        let mut b = self.banks.lock().expect("banks");
        if b.trial == Some(job) {
            return Ok(());
        }
        if b.staged != Some(job) {
            return Err(InstallError::new(
                "install",
                format!("nothing is staged for job {job}"),
            ));
        }
        let b = &mut *b;
        std::mem::swap(&mut b.active, &mut b.inactive);
        b.trial = Some(job);
        Ok(())
    }

    fn boot(&self, job: u64) -> Result<Option<bool>, InstallError> {
        let b = self.banks.lock().expect("banks");
        Ok((b.trial == Some(job)).then_some(true))
    }

    fn health(&self, job: u64) -> Result<(), InstallError> {
        // The same devices fail every time (a release that does not work on them), whichever
        // job it is.
        if self.device.fate(0, 2) < self.device.install_failure {
            return Err(InstallError::new(
                "health_check",
                format!(
                    "simulated health check failure of unit {} after job {job}",
                    self.slot
                ),
            ));
        }
        Ok(())
    }

    fn confirm(&self, job: u64) -> Result<(), InstallError> {
        let mut b = self.banks.lock().expect("banks");
        if b.trial == Some(job) {
            b.trial = None;
            b.staged = None;
        }
        Ok(())
    }

    fn revert(&self, job: u64) -> Result<(), InstallError> {
        let mut b = self.banks.lock().expect("banks");
        if b.trial == Some(job) {
            let b = &mut *b;
            std::mem::swap(&mut b.active, &mut b.inactive);
            b.trial = None;
        }
        if b.staged == Some(job) {
            b.staged = None;
        }
        Ok(())
    }
}
