//! The agent's data dir: its credential, its state, and the durable report outbox.
//!
//! ```text
//! data_dir/
//!   .lock            held while an agent runs on this dir
//!   credential.json  {device_id, device_token, center_url}   (0600)
//!   state.json       {next_seq, center_interval_s}
//!   status.json      what the running agent is doing, for `fleetcare-agent status`
//!   notifications.json  what the center told the people at the device, newest first
//!   outbox/<seq>.json  reports not yet acknowledged, one file each
//! ```
//!
//! Every file is replaced atomically (`fleetcare_fs::write_atomic`). A report is written to
//! the outbox before it is sent and removed only after the center acknowledged it, so a
//! crash or an outage loses nothing; sequence numbers are saved before they are used, so a
//! number is never reused for different content.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use fleetcare_fs::{DirLock, Mode, remove_durably, write_atomic};
use fleetcare_wire::Trigger;
use fleetcare_wire::compat::Notification;
use fleetcare_wire::device::StructureReport;
use serde::{Deserialize, Serialize};

const CREDENTIAL: &str = "credential.json";
const STATE: &str = "state.json";
const STATUS: &str = "status.json";
const OUTBOX: &str = "outbox";
const NOTIFICATIONS: &str = "notifications.json";
/// Sequence numbers reserved at a time: `state.json` is written (and synced) once per block
/// and when the structure changes, not for every report.
pub const SEQ_BLOCK: u64 = 64;

/// Notifications kept on the device.
pub const MAX_NOTIFICATIONS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub device_id: String,
    pub device_token: String,
    pub center_url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Report sequence numbers below this one may have been used: the agent reserves them in
    /// blocks of [`SEQ_BLOCK`] and starts from here after a restart (a gap in the numbers is
    /// harmless; a number used twice would be taken for a duplicate). Starts at 1.
    pub next_seq: u64,
    /// The reporting interval the center set, if any.
    pub center_interval_s: Option<u64>,
    /// Fingerprint of the structure in the newest report queued: what the center will know.
    /// A structure that differs after a restart is a change.
    pub last_fingerprint: Option<String>,
    /// Units the center took out of service, by (slot, serial): reported with
    /// `in_service = false` until put back (a replaced unit has another serial).
    #[serde(default)]
    pub out_of_service: Vec<(String, String)>,
    /// Units that took over the work of a unit out of service: (slot out of service, slot
    /// that took over).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switched: Vec<(String, String)>,
}

/// What the running agent is doing; written for `fleetcare-agent status` (not fsynced: it
/// is a window, not a record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    /// `push`, `poll`, or `offline`.
    pub channel: String,
    pub last_ack_seq: Option<u64>,
    /// RFC 3339.
    pub last_ack_at: Option<String>,
    pub last_error: Option<String>,
    /// When the failed request is tried again (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
    pub outbox: usize,
    pub reports_dropped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} is damaged ({message}); move it away to start over (a new enrollment needs an operator's allowance)"
    )]
    Damaged { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, LocalError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LocalError::Damaged {
                path: path.to_owned(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LocalError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T, mode: Mode) -> Result<(), LocalError> {
    let bytes = serde_json::to_vec_pretty(value).expect("local files serialize");
    write_atomic(path, &bytes, mode).map_err(io_err(path))
}

/// What `fleetcare-agent status` reads, without taking the lock.
#[derive(Debug, Clone)]
pub struct LocalView {
    pub credential: Option<Credential>,
    pub state: State,
    /// What the agent last said it was doing (it may have exited since: see `running`).
    pub status: Option<Status>,
    /// The process that holds the data dir now, if any: the running agent.
    pub running: Option<fleetcare_fs::Holder>,
    pub outbox: usize,
    pub notifications: Vec<Notification>,
}

/// Read the data dir as it is, for `status` (the agent may be running).
pub fn view(dir: &Path) -> Result<LocalView, LocalError> {
    let outbox = match std::fs::read_dir(dir.join(OUTBOX)) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| outbox_seq(&e.path()).is_some())
            .count(),
        Err(_) => 0,
    };
    Ok(LocalView {
        credential: read_json(&dir.join(CREDENTIAL))?,
        state: read_json(&dir.join(STATE))?.unwrap_or_default(),
        status: read_json(&dir.join(STATUS)).ok().flatten(),
        running: DirLock::holder(dir).map_err(io_err(dir))?,
        outbox,
        notifications: read_json(&dir.join(NOTIFICATIONS))
            .ok()
            .flatten()
            .unwrap_or_default(),
    })
}

/// Where the agent's state lives: its data dir (locked for this process), or memory (a
/// virtual device of the simulator: nothing survives the process, and nothing holds a file).
#[derive(Debug)]
enum Files {
    Dir { dir: PathBuf, _lock: DirLock },
    Memory,
}

/// The agent's data dir, locked for this process (or its in-memory stand-in).
#[derive(Debug)]
pub struct Local {
    files: Files,
    credential: Option<Credential>,
    state: State,
    /// The next sequence number to use (below `state.next_seq`, the reserved ceiling).
    next: u64,
    /// Held only in memory mode; on disk they are read from their file.
    notifications: Vec<Notification>,
    pub outbox: Outbox,
}

impl Local {
    /// Open (creating if needed) and lock the data dir. `outbox_max`: reports kept at most.
    pub fn open(dir: &Path, outbox_max: usize) -> Result<Local, LocalError> {
        fleetcare_fs::create_private_dir(dir).map_err(io_err(dir))?;
        let lock = DirLock::acquire(dir).map_err(io_err(dir))?;
        let credential = read_json(&dir.join(CREDENTIAL))?;
        let mut state: State = read_json(&dir.join(STATE))?.unwrap_or_default();
        let outbox = Outbox::open(&dir.join(OUTBOX), outbox_max)?;
        // Never reuse a number that is already in the outbox, whatever state.json says.
        let floor = outbox.last_seq().map_or(1, |s| s + 1);
        state.next_seq = state.next_seq.max(floor);
        Ok(Local {
            files: Files::Dir {
                dir: dir.to_owned(),
                _lock: lock,
            },
            credential,
            next: state.next_seq,
            state,
            notifications: Vec::new(),
            outbox,
        })
    }

    /// State held in memory only, starting empty (a virtual device).
    pub fn memory(outbox_max: usize) -> Local {
        Local {
            files: Files::Memory,
            credential: None,
            next: 1,
            state: State::default(),
            notifications: Vec::new(),
            outbox: Outbox::memory(outbox_max),
        }
    }

    /// The data dir (`None` in memory).
    pub fn dir(&self) -> Option<&Path> {
        match &self.files {
            Files::Dir { dir, .. } => Some(dir),
            Files::Memory => None,
        }
    }

    /// Write one of the data dir's files (nothing in memory).
    fn persist<T: Serialize>(&self, name: &str, value: &T, mode: Mode) -> Result<(), LocalError> {
        match &self.files {
            Files::Dir { dir, .. } => write_json(&dir.join(name), value, mode),
            Files::Memory => Ok(()),
        }
    }

    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    pub fn save_credential(&mut self, c: Credential) -> Result<(), LocalError> {
        self.persist(CREDENTIAL, &c, Mode::Private)?;
        self.credential = Some(c);
        Ok(())
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    fn set_state(&mut self, next: State) -> Result<(), LocalError> {
        self.persist(STATE, &next, Mode::Shared)?;
        self.state = next;
        Ok(())
    }

    /// Take the next sequence number for a report of the structure with `fingerprint`. The
    /// number is reserved durably before it is returned (a block at a time), and a new
    /// fingerprint is saved with it.
    pub fn take_seq(&mut self, fingerprint: &str) -> Result<u64, LocalError> {
        let seq = self.next.max(1);
        let changed = self.state.last_fingerprint.as_deref() != Some(fingerprint);
        if seq >= self.state.next_seq || changed {
            let next = State {
                next_seq: self.state.next_seq.max(seq + SEQ_BLOCK),
                last_fingerprint: Some(fingerprint.to_owned()),
                ..self.state.clone()
            };
            self.set_state(next)?;
        }
        self.next = seq + 1;
        Ok(seq)
    }

    /// Remember the center's reporting interval (`None`: the agent's own).
    pub fn set_center_interval(&mut self, seconds: Option<u64>) -> Result<(), LocalError> {
        if self.state.center_interval_s == seconds {
            return Ok(());
        }
        let next = State {
            center_interval_s: seconds,
            ..self.state.clone()
        };
        self.set_state(next)
    }

    /// Take a unit out of service (`false`, with the slot that takes over its work, if any)
    /// or put it back.
    pub fn set_unit_service(
        &mut self,
        slot: &str,
        serial: &str,
        in_service: bool,
        switched_to: Option<&str>,
    ) -> Result<(), LocalError> {
        let mut next = self.state.clone();
        next.out_of_service
            .retain(|(s, n)| !(s == slot && n == serial));
        next.switched.retain(|(from, _)| from != slot);
        if !in_service {
            next.out_of_service
                .push((slot.to_owned(), serial.to_owned()));
            if let Some(to) = switched_to {
                next.switched.push((slot.to_owned(), to.to_owned()));
            }
        }
        if next == self.state {
            return Ok(());
        }
        self.set_state(next)
    }

    /// The notifications the center sent, newest first.
    pub fn notifications(&self) -> Vec<Notification> {
        match &self.files {
            Files::Dir { dir, .. } => read_json(&dir.join(NOTIFICATIONS))
                .ok()
                .flatten()
                .unwrap_or_default(),
            Files::Memory => self.notifications.clone(),
        }
    }

    /// The center's open notifications, as it listed them (those it closed meanwhile go).
    pub fn set_notifications(&mut self, mut all: Vec<Notification>) -> Result<(), LocalError> {
        all.truncate(MAX_NOTIFICATIONS);
        if all == self.notifications() {
            return Ok(());
        }
        self.persist(NOTIFICATIONS, &all, Mode::Shared)?;
        if matches!(self.files, Files::Memory) {
            self.notifications = all;
        }
        Ok(())
    }

    /// Keep a notification (the newest [`MAX_NOTIFICATIONS`]).
    pub fn add_notification(&mut self, n: Notification) -> Result<(), LocalError> {
        let mut all = self.notifications();
        all.retain(|m| m.id != n.id);
        all.insert(0, n);
        all.truncate(MAX_NOTIFICATIONS);
        self.persist(NOTIFICATIONS, &all, Mode::Shared)?;
        if matches!(self.files, Files::Memory) {
            self.notifications = all;
        }
        Ok(())
    }

    /// Publish what the agent is doing (best effort, not fsynced; nothing in memory).
    pub fn write_status(&self, status: &Status) {
        let Files::Dir { dir, .. } = &self.files else {
            return;
        };
        let path = dir.join(STATUS);
        let tmp = dir.join(".status.json.tmp");
        let bytes = serde_json::to_vec_pretty(status).expect("status serializes");
        let _ = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
    }
}

/// One queued report's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    trigger: Trigger,
    fingerprint: String,
}

/// Reports written but not yet acknowledged, sent oldest first.
///
/// Bounded: while the center is unreachable, a periodic report replaces the newest queued
/// report if that one is periodic too and shows the same structure (it says nothing new but
/// newer counters); beyond `max` entries the oldest is dropped and counted.
#[derive(Debug)]
pub struct Outbox {
    /// `None`: in memory, the reports themselves in `held`.
    dir: Option<PathBuf>,
    /// On disk: the newest report pushed, so that sending it does not read it back.
    newest: Option<std::sync::Arc<StructureReport>>,
    held: BTreeMap<u64, std::sync::Arc<StructureReport>>,
    max: usize,
    entries: BTreeMap<u64, Entry>,
    dropped: u64,
}

fn outbox_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".json")?.parse().ok()
}

impl Outbox {
    fn open(dir: &Path, max: usize) -> Result<Outbox, LocalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut entries = BTreeMap::new();
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let path = e.map_err(io_err(dir))?.path();
            let Some(seq) = outbox_seq(&path) else {
                continue;
            };
            match read_json::<StructureReport>(&path) {
                Ok(Some(r)) => {
                    entries.insert(
                        seq,
                        Entry {
                            trigger: r.trigger,
                            fingerprint: fingerprint(&r),
                        },
                    );
                }
                // A torn or damaged file cannot be sent; its content is gone either way.
                // (Writes are atomic, so this takes a disk fault.)
                _ => {
                    tracing::warn!(path = %path.display(), "dropping a damaged queued report");
                    remove_durably(&path).map_err(io_err(&path))?;
                }
            }
        }
        Ok(Outbox {
            dir: Some(dir.to_owned()),
            newest: None,
            held: BTreeMap::new(),
            max,
            entries,
            dropped: 0,
        })
    }

    fn memory(max: usize) -> Outbox {
        Outbox {
            dir: None,
            newest: None,
            held: BTreeMap::new(),
            max,
            entries: BTreeMap::new(),
            dropped: 0,
        }
    }

    fn path(dir: &Path, seq: u64) -> PathBuf {
        dir.join(format!("{seq:020}.json"))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Report `seq` is queued (not yet acknowledged).
    pub fn contains(&self, seq: u64) -> bool {
        self.entries.contains_key(&seq)
    }

    /// Reports dropped since the agent started (coalesced ones are not counted).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn last_seq(&self) -> Option<u64> {
        self.entries.keys().next_back().copied()
    }

    /// Queue a report durably; `fp` is its structure's fingerprint ([`fingerprint`]).
    pub fn push(&mut self, report: StructureReport, fp: String) -> Result<(), LocalError> {
        let (seq, trigger) = (report.seq, report.trigger);
        match &self.dir {
            Some(dir) => {
                write_json(&Self::path(dir, seq), &report, Mode::Shared)?;
                self.newest = Some(std::sync::Arc::new(report));
            }
            None => {
                self.held.insert(seq, std::sync::Arc::new(report));
            }
        }
        let report = Entry {
            trigger,
            fingerprint: fp,
        };
        if report.trigger == Trigger::Periodic
            && let Some((&newest_seq, newest)) = self.entries.iter().next_back()
            && newest.trigger == Trigger::Periodic
            && newest.fingerprint == report.fingerprint
        {
            self.remove(newest_seq)?;
        }
        self.entries.insert(seq, report);
        while self.entries.len() > self.max {
            let oldest = *self.entries.keys().next().expect("not empty");
            tracing::warn!(
                seq = oldest,
                max = self.max,
                "outbox full: dropping the oldest queued report"
            );
            self.remove(oldest)?;
            self.dropped += 1;
        }
        Ok(())
    }

    /// Queue a report, computing its fingerprint.
    #[cfg(test)]
    fn queue(&mut self, report: StructureReport) -> Result<(), LocalError> {
        let fp = fingerprint(&report);
        self.push(report, fp)
    }

    /// The oldest queued report.
    pub fn first(&mut self) -> Result<Option<std::sync::Arc<StructureReport>>, LocalError> {
        while let Some(&seq) = self.entries.keys().next() {
            let got = match &self.dir {
                Some(_) if self.newest.as_ref().is_some_and(|r| r.seq == seq) => {
                    Ok(self.newest.clone())
                }
                Some(dir) => read_json(&Self::path(dir, seq)).map(|r| r.map(std::sync::Arc::new)),
                None => Ok(self.held.get(&seq).cloned()),
            };
            match got {
                Ok(Some(r)) => return Ok(Some(r)),
                Ok(None) | Err(LocalError::Damaged { .. }) => {
                    tracing::warn!(seq, "a queued report vanished or was damaged; skipping it");
                    self.remove(seq)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The center acknowledged (or refused for good) report `seq`: forget it. The removal
    /// need not be durable: a report that comes back after a crash is sent again, and the
    /// center acknowledges it as the duplicate it is.
    pub fn remove(&mut self, seq: u64) -> Result<(), LocalError> {
        match &self.dir {
            Some(dir) => {
                let path = Self::path(dir, seq);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path)(e)),
                }
            }
            None => {
                self.held.remove(&seq);
            }
        }
        self.entries.remove(&seq);
        if self.newest.as_ref().is_some_and(|r| r.seq == seq) {
            self.newest = None;
        }
        Ok(())
    }
}

/// Equal structures (model and units), equal fingerprints; counters do not count. Queued
/// reports were validated before they were queued; one that is not valid gets a fingerprint
/// of its own (its sequence number), so it never merges with another.
pub fn fingerprint(r: &StructureReport) -> String {
    fleetcare_core::Structure::new(&r.model, r.units.clone())
        .map_or_else(|_| format!("invalid-{}", r.seq), |s| s.fingerprint())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seq: u64, trigger: Trigger, serial: &str) -> StructureReport {
        StructureReport {
            device_id: "D".into(),
            model: "m".into(),
            seq,
            trigger,
            observed_at_ms: 1,
            units: vec![fleetcare_wire::Unit {
                slot: "engine".into(),
                kind: "engine".into(),
                model: "e".into(),
                serial: serial.into(),
                hw_revision: String::new(),
                software: vec![],
                in_service: true,
            }],
            operating: BTreeMap::new(),
            supplies: Vec::new(),
            install_blocked: None,
        }
    }

    #[test]
    fn outbox_survives_reopening_and_never_reuses_a_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut l = Local::open(dir.path(), 10).expect("open");
            assert!(Local::open(dir.path(), 10).is_err(), "the dir is locked");
            let s1 = l.take_seq("fp").expect("seq");
            let s2 = l.take_seq("fp").expect("seq");
            assert_eq!((s1, s2), (1, 2));
            l.outbox
                .queue(report(s1, Trigger::Connect, "E1"))
                .expect("push");
            l.outbox
                .queue(report(s2, Trigger::Change, "E2"))
                .expect("push");
        }
        // state.json lost: the outbox still keeps numbers from being reused.
        std::fs::remove_file(dir.path().join(STATE)).expect("rm");
        let mut l = Local::open(dir.path(), 10).expect("reopen");
        assert_eq!(l.outbox.len(), 2);
        assert_eq!(l.take_seq("fp").expect("seq"), 3);
        let first = l.outbox.first().expect("read").expect("queued");
        assert_eq!(first.seq, 1);
        l.outbox.remove(1).expect("ack");
        assert_eq!(l.outbox.first().expect("read").expect("queued").seq, 2);
        assert_eq!(view(dir.path()).expect("view").outbox, 1);
    }

    #[test]
    fn periodic_reports_coalesce_and_the_outbox_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut l = Local::open(dir.path(), 3).expect("open");
        l.outbox
            .queue(report(1, Trigger::Periodic, "E1"))
            .expect("push");
        l.outbox
            .queue(report(2, Trigger::Periodic, "E1"))
            .expect("push");
        assert_eq!(
            l.outbox.len(),
            1,
            "same structure: the newer periodic replaces"
        );
        assert_eq!(l.outbox.first().expect("read").expect("queued").seq, 2);
        l.outbox
            .queue(report(3, Trigger::Change, "E2"))
            .expect("push");
        l.outbox
            .queue(report(4, Trigger::Periodic, "E2"))
            .expect("push");
        l.outbox
            .queue(report(5, Trigger::Change, "E3"))
            .expect("push");
        assert_eq!(l.outbox.len(), 3);
        assert_eq!(l.outbox.dropped(), 1);
        assert_eq!(
            l.outbox.first().expect("read").expect("queued").seq,
            3,
            "oldest dropped"
        );
        let files = std::fs::read_dir(dir.path().join(OUTBOX))
            .expect("ls")
            .count();
        assert_eq!(
            files, 3,
            "dropped and replaced reports leave no file behind"
        );
    }

    #[test]
    fn damaged_queued_reports_are_dropped_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut l = Local::open(dir.path(), 10).expect("open");
            l.outbox
                .queue(report(1, Trigger::Change, "E1"))
                .expect("push");
            l.outbox
                .queue(report(2, Trigger::Change, "E2"))
                .expect("push");
        }
        std::fs::write(
            dir.path().join(OUTBOX).join(format!("{:020}.json", 1)),
            b"{tor",
        )
        .expect("damage");
        let mut l = Local::open(dir.path(), 10).expect("reopen");
        assert_eq!(l.outbox.len(), 1);
        assert_eq!(l.outbox.first().expect("read").expect("queued").seq, 2);
    }
}
