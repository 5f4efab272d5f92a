//! The device's error log: a durable journal in embedded SQLite (`<data dir>/journal.db`).
//!
//! - An event is durable when [`Journal::append`] returns (WAL, `synchronous=FULL`, one
//!   transaction). The device's own software (through `fleetcare-agent log`, another process)
//!   and the agent write to the same journal; SQLite's locking orders them.
//! - Events are numbered `(boot_epoch, seq)`: each agent start opens a new epoch, and `seq`
//!   counts from 1 within it, kept in the journal so numbers are never reused.
//! - Bounded: beyond `max_events` or `max_bytes`, the least severe and then the oldest events
//!   are dropped — turned into tombstones that keep their number (so the center's sequence
//!   stays contiguous and the loss is counted there) — and the count is kept.
//! - A journal that cannot be opened or fails its check is moved aside
//!   (`journal.db.corrupt-<ms>`) and a new one is started: collection never stops.
//! - Only what the center acknowledged is deleted.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use fleetcare_wire::errors::{ErrorEvent, PrinterAlert, SEVERITIES};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the error journal {path}: {reason}")]
    Db { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

/// Bounds of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalLimits {
    pub max_events: u64,
    pub max_bytes: u64,
}

impl Default for JournalLimits {
    fn default() -> Self {
        JournalLimits {
            max_events: 100_000,
            max_bytes: 64 << 20,
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewEvent {
    pub slot: String,
    pub code: String,
    /// One of [`SEVERITIES`].
    pub severity: String,
    pub counters: std::collections::BTreeMap<String, f64>,
    pub detail: Option<String>,
    pub alert: Option<PrinterAlert>,
}

#[derive(Serialize, Deserialize, Default)]
struct Body {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    counters: std::collections::BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alert: Option<PrinterAlert>,
}

/// What the journal holds, for the sending triggers and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct JournalStats {
    /// Events not yet acknowledged (tombstones not counted).
    pub pending: u64,
    pub bytes: u64,
    /// The most severe pending event's rank in [`SEVERITIES`].
    pub max_severity: Option<usize>,
    /// The pending events' severities, weighted (debug 0, info 1, warning 3, error 10,
    /// critical 30).
    pub weight: u64,
    /// Events dropped because the journal was full, since it was created.
    pub dropped: u64,
    /// Journals found damaged and moved aside.
    pub quarantined: u64,
    pub boot_epoch: u64,
}

/// The weight of a severity for the accumulation trigger.
pub fn severity_weight(rank: usize) -> u64 {
    [0, 1, 3, 10, 30].get(rank).copied().unwrap_or(0)
}

pub fn severity_rank(s: &str) -> Option<usize> {
    SEVERITIES.iter().position(|x| *x == s)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    epoch    INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    at_ms    INTEGER NOT NULL,
    slot     TEXT NOT NULL,
    code     TEXT NOT NULL,
    severity INTEGER NOT NULL,
    body     TEXT,
    size     INTEGER NOT NULL,
    dropped  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (epoch, seq)
);
CREATE INDEX IF NOT EXISTS events_for_dropping ON events (dropped, severity, epoch, seq);
CREATE TABLE IF NOT EXISTS operating (key TEXT PRIMARY KEY, value REAL NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
";

/// The journal.
#[derive(Debug)]
pub struct Journal {
    conn: Mutex<Connection>,
    path: PathBuf,
    limits: JournalLimits,
    /// Operating info has been written (at open, or since, through this journal): reading it
    /// for every report is skipped until then. (Only the local API writes it, in the agent's
    /// own process.)
    operating_seen: std::sync::atomic::AtomicBool,
    /// What [`Journal::changed_stats`] saw last: the database's `data_version` (changes by
    /// other connections, such as `fleetcare-agent log`) and this journal's own writes.
    seen: Mutex<Option<(i64, u64)>>,
    writes: std::sync::atomic::AtomicU64,
}

fn db_err(path: &Path, e: impl std::fmt::Display) -> JournalError {
    JournalError::Db {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn meta(c: &Connection, key: &str) -> rusqlite::Result<u64> {
    let v: Option<i64> = c
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?;
    Ok(v.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
}

fn set_meta(c: &Connection, key: &str, v: u64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, i64::try_from(v).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    let _: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    c.pragma_update(None, "synchronous", "FULL")?;
    let check: String = c.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(rusqlite::Error::InvalidQuery);
    }
    c.execute_batch(SCHEMA)?;
    Ok(c)
}

fn read_operating(c: &Connection) -> rusqlite::Result<std::collections::BTreeMap<String, f64>> {
    let mut st = c.prepare_cached("SELECT key, value FROM operating")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))?;
    rows.collect()
}

/// An event checked and encoded: itself, its severity's rank, its body, its size.
fn validated(e: &NewEvent) -> Result<(&NewEvent, usize, String, i64), JournalError> {
    let rank = severity_rank(&e.severity).ok_or_else(|| {
        JournalError::Invalid(format!(
            "severity {:?}: one of {}",
            e.severity,
            SEVERITIES.join(", ")
        ))
    })?;
    if e.code.is_empty() || e.code.len() > 64 || e.slot.len() > 64 {
        return Err(JournalError::Invalid(
            "code: 1 to 64 characters; slot: at most 64".into(),
        ));
    }
    if e.detail.as_ref().is_some_and(|d| d.chars().count() > 4096) {
        return Err(JournalError::Invalid(
            "detail: at most 4096 characters".into(),
        ));
    }
    let body = serde_json::to_string(&Body {
        counters: e.counters.clone(),
        detail: e.detail.clone(),
        alert: e.alert.clone(),
    })
    .expect("an event body serializes");
    let size = (body.len() + e.code.len() + e.slot.len() + 32) as i64;
    Ok((e, rank, body, size))
}

impl Journal {
    /// Open (or create) the journal in `dir`. `new_boot`: this is an agent start, so a new
    /// boot epoch begins. A damaged journal is moved aside and a new one started.
    pub fn open(
        dir: &Path,
        limits: JournalLimits,
        new_boot: bool,
    ) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(|e| db_err(dir, e))?;
        let path = dir.join("journal.db");
        let conn = match open_conn(&path) {
            Ok(c) => c,
            Err(e) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let aside = dir.join(format!("journal.db.corrupt-{now}"));
                tracing::error!(journal = %path.display(), error = %e, moved_to = %aside.display(),
                    "the error journal is damaged; moved aside, starting a new one");
                std::fs::rename(&path, &aside).map_err(|e| db_err(&path, e))?;
                for ext in ["-wal", "-shm"] {
                    let side = dir.join(format!("journal.db{ext}"));
                    if side.exists() {
                        let _ = std::fs::rename(
                            &side,
                            dir.join(format!("journal.db.corrupt-{now}{ext}")),
                        );
                    }
                }
                open_conn(&path).map_err(|e| db_err(&path, e))?
            }
        };
        let operating_seen = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM operating)", [], |r| {
                r.get::<_, bool>(0)
            })
            .map_err(|e| db_err(&path, e))?;
        if new_boot {
            let tx = conn.unchecked_transaction().map_err(|e| db_err(&path, e))?;
            let epoch = meta(&tx, "epoch").map_err(|e| db_err(&path, e))? + 1;
            set_meta(&tx, "epoch", epoch).map_err(|e| db_err(&path, e))?;
            set_meta(&tx, "next_seq", 1).map_err(|e| db_err(&path, e))?;
            tx.commit().map_err(|e| db_err(&path, e))?;
        }
        Ok(Journal {
            conn: Mutex::new(conn),
            path,
            limits,
            operating_seen: std::sync::atomic::AtomicBool::new(operating_seen),
            seen: Mutex::new(None),
            writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Is there operating info to read?
    pub fn has_operating(&self) -> bool {
        self.operating_seen
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A journal in memory (a virtual device of the simulator): durable only as long as the
    /// process. Its boot epoch is the wall-clock second it opened, so a virtual device that is
    /// simulated again later never reuses an `(epoch, seq)` the center already holds.
    pub fn memory(limits: JournalLimits) -> Result<Journal, JournalError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| db_err(&path, e))?;
        // A small page cache: thousands of these live in one process.
        conn.execute_batch("PRAGMA cache_size = -64")
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| db_err(&path, e))?;
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs().max(1));
        set_meta(&conn, "epoch", epoch)
            .and_then(|()| set_meta(&conn, "next_seq", 1))
            .map_err(|e| db_err(&path, e))?;
        Ok(Journal {
            conn: Mutex::new(conn),
            path,
            limits,
            operating_seen: std::sync::atomic::AtomicBool::new(false),
            seen: Mutex::new(None),
            writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> JournalError {
        db_err(&self.path, e)
    }

    /// Append an event; durable when this returns. Its `(boot_epoch, seq)`.
    pub fn append(&self, e: &NewEvent, at_ms: i64) -> Result<(u64, u64), JournalError> {
        self.append_batch(std::slice::from_ref(e), at_ms)
    }

    /// Append events in one transaction, all or none; durable when this returns. The boot
    /// epoch and the first event's sequence (the others follow it).
    pub fn append_batch(
        &self,
        events: &[NewEvent],
        at_ms: i64,
    ) -> Result<(u64, u64), JournalError> {
        let c = self
            .conn
            .lock()
            .expect("the journal lock is never poisoned");
        // An event without counters gets the device's current operating info.
        let current = if events.iter().any(|e| e.counters.is_empty()) {
            read_operating(&c).map_err(|e| self.err(e))?
        } else {
            std::collections::BTreeMap::new()
        };
        let filled: Vec<NewEvent> = events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if e.counters.is_empty() {
                    e.counters = current.clone();
                }
                e
            })
            .collect();
        let rows = filled
            .iter()
            .map(validated)
            .collect::<Result<Vec<_>, _>>()?;
        let tx = rusqlite::Transaction::new_unchecked(&c, rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let mut epoch = meta(&tx, "epoch").map_err(|e| self.err(e))?;
        if epoch == 0 {
            epoch = 1;
            set_meta(&tx, "epoch", 1).map_err(|e| self.err(e))?;
        }
        let first = meta(&tx, "next_seq").map_err(|e| self.err(e))?.max(1);
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO events (epoch, seq, at_ms, slot, code, severity, body, size) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| self.err(e))?;
            for (i, (e, rank, body, size)) in rows.iter().enumerate() {
                st.execute(params![
                    epoch as i64,
                    (first + i as u64) as i64,
                    at_ms,
                    e.slot,
                    e.code,
                    *rank as i64,
                    body,
                    *size
                ])
                .map_err(|e| self.err(e))?;
            }
        }
        set_meta(&tx, "next_seq", first + rows.len() as u64).map_err(|e| self.err(e))?;
        self.enforce_limits(&tx)?;
        tx.commit().map_err(|e| self.err(e))?;
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok((epoch, first))
    }

    /// Record operating info (counters and gauges by name); durable when this returns.
    pub fn set_operating(
        &self,
        values: &std::collections::BTreeMap<String, f64>,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        if values.len() > fleetcare_core::limits::MAX_OPERATING_ENTRIES
            || values
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 64 || !v.is_finite())
        {
            return Err(JournalError::Invalid(format!(
                "operating info: at most {} entries, names 1 to 64 characters, finite numbers",
                fleetcare_core::limits::MAX_OPERATING_ENTRIES
            )));
        }
        let c = self
            .conn
            .lock()
            .expect("the journal lock is never poisoned");
        let tx = c.unchecked_transaction().map_err(|e| self.err(e))?;
        self.operating_seen
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for (k, v) in values {
            tx.execute(
                "INSERT INTO operating (key, value, at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, at_ms = excluded.at_ms",
                params![k, v, at_ms],
            )
            .map_err(|e| self.err(e))?;
        }
        let n: i64 = tx
            .query_row("SELECT COUNT(*) FROM operating", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if n as usize > fleetcare_core::limits::MAX_OPERATING_ENTRIES {
            return Err(JournalError::Invalid(format!(
                "operating info: at most {} names in all",
                fleetcare_core::limits::MAX_OPERATING_ENTRIES
            )));
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Replace the settings the center set on this device; durable when this returns.
    pub fn set_settings(
        &self,
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), JournalError> {
        let c = self
            .conn
            .lock()
            .expect("the journal lock is never poisoned");
        let tx = c.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM settings", [])
            .map_err(|e| self.err(e))?;
        for (k, v) in settings {
            tx.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The settings the center set on this device (the device's software reads them through
    /// the local API).
    pub fn settings(&self) -> Result<std::collections::BTreeMap<String, String>, JournalError> {
        let c = self
            .conn
            .lock()
            .expect("the journal lock is never poisoned");
        let mut st = c
            .prepare_cached("SELECT name, value FROM settings ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// The operating info recorded through the journal.
    pub fn operating(&self) -> Result<std::collections::BTreeMap<String, f64>, JournalError> {
        let c = self
            .conn
            .lock()
            .expect("the journal lock is never poisoned");
        read_operating(&c).map_err(|e| self.err(e))
    }

    /// Drop (to tombstones) the least severe, then oldest events beyond the limits.
    fn enforce_limits(&self, c: &Connection) -> Result<(), JournalError> {
        let (count, bytes): (i64, i64) = c
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events WHERE dropped = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.err(e))?;
        let (count, bytes) = (count as u64, bytes as u64);
        if count <= self.limits.max_events && bytes <= self.limits.max_bytes {
            return Ok(());
        }
        let mut over_count = count.saturating_sub(self.limits.max_events);
        let mut over_bytes = bytes.saturating_sub(self.limits.max_bytes);
        let victims: Vec<(i64, i64, i64)> = {
            let mut st = c
                .prepare(
                    "SELECT epoch, seq, size FROM events WHERE dropped = 0 \
                     ORDER BY severity, epoch, seq LIMIT 1000",
                )
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| self.err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.err(e))?
        };
        let mut dropped = 0u64;
        for (epoch, seq, size) in victims {
            if over_count == 0 && over_bytes == 0 {
                break;
            }
            c.execute(
                "UPDATE events SET dropped = 1, body = NULL, size = 0, slot = '', code = '' \
                 WHERE epoch = ?1 AND seq = ?2",
                params![epoch, seq],
            )
            .map_err(|e| self.err(e))?;
            over_count = over_count.saturating_sub(1);
            over_bytes = over_bytes.saturating_sub(size as u64);
            dropped += 1;
        }
        let total = meta(c, "dropped").map_err(|e| self.err(e))? + dropped;
        set_meta(c, "dropped", total).map_err(|e| self.err(e))?;
        tracing::warn!(
            dropped,
            total,
            "the error journal is full: dropped the least severe, oldest events"
        );
        Ok(())
    }

    /// Up to `limit` unacknowledged events (tombstones included) of the oldest epoch that has
    /// any, in order: `(epoch, events)`.
    pub fn pending(&self, limit: usize) -> Result<Option<(u64, Vec<ErrorEvent>)>, JournalError> {
        let c = self
            .conn
            .lock()
            .expect("the journal lock is never poisoned");
        let epoch: Option<i64> = c
            .query_row("SELECT MIN(epoch) FROM events", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        let Some(epoch) = epoch else { return Ok(None) };
        let mut st = c
            .prepare_cached(
                "SELECT seq, at_ms, slot, code, severity, body, dropped FROM events \
                 WHERE epoch = ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![epoch, limit as i64], |r| {
                let body: Option<String> = r.get(5)?;
                let body: Body = body
                    .as_deref()
                    .and_then(|b| serde_json::from_str(b).ok())
                    .unwrap_or_default();
                let rank: i64 = r.get(4)?;
                Ok(ErrorEvent {
                    seq: r.get::<_, i64>(0)? as u64,
                    at_ms: r.get(1)?,
                    slot: r.get(2)?,
                    code: r.get(3)?,
                    severity: SEVERITIES
                        .get(rank as usize)
                        .copied()
                        .unwrap_or("info")
                        .to_owned(),
                    counters: body.counters,
                    detail: body.detail,
                    alert: body.alert,
                    dropped: r.get::<_, i64>(6)? != 0,
                })
            })
            .map_err(|e| self.err(e))?;
        let events = rows
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        Ok(Some((epoch as u64, events)))
    }

    /// The center holds every event of `epoch` up to `seq`: delete them. An epoch older than
    /// the current one with nothing left above `seq` is done.
    pub fn ack(&self, epoch: u64, seq: u64) -> Result<u64, JournalError> {
        let c = self
            .conn
            .lock()
            .expect("the journal lock is never poisoned");
        let n = c
            .execute(
                "DELETE FROM events WHERE epoch = ?1 AND seq <= ?2",
                params![epoch as i64, seq as i64],
            )
            .map_err(|e| self.err(e))?;
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(n as u64)
    }

    /// The stats, unless nothing was written since the last call (`None`): the sending
    /// triggers look often, and an unchanged journal costs one `PRAGMA` then.
    pub fn changed_stats(&self) -> Result<Option<JournalStats>, JournalError> {
        let now = {
            let c = self
                .conn
                .lock()
                .expect("the journal lock is never poisoned");
            let v: i64 = c
                .prepare_cached("PRAGMA data_version")
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map_err(|e| self.err(e))?;
            (v, self.writes.load(std::sync::atomic::Ordering::SeqCst))
        };
        let mut seen = self.seen.lock().expect("seen");
        if *seen == Some(now) {
            return Ok(None);
        }
        let s = self.counts()?;
        *seen = Some(now);
        Ok(Some(s))
    }

    /// Everything `fleetcare-agent status` shows (quarantined journals included).
    pub fn stats(&self) -> Result<JournalStats, JournalError> {
        let mut s = self.counts()?;
        s.quarantined = std::fs::read_dir(self.path.parent().unwrap_or(Path::new(".")))
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with("journal.db.corrupt-")
                            && !n.ends_with("-wal")
                            && !n.ends_with("-shm")
                    })
                    .count() as u64
            })
            .unwrap_or(0);
        Ok(s)
    }

    fn counts(&self) -> Result<JournalStats, JournalError> {
        let c = self
            .conn
            .lock()
            .expect("the journal lock is never poisoned");
        let mut s = JournalStats::default();
        let mut st = c
            .prepare_cached(
                "SELECT severity, COUNT(*), COALESCE(SUM(size), 0) FROM events WHERE dropped = 0 \
                 GROUP BY severity",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (rank, n, bytes) = row.map_err(|e| self.err(e))?;
            let (rank, n) = (rank as usize, n as u64);
            s.pending += n;
            s.bytes += bytes as u64;
            s.weight += n * severity_weight(rank);
            s.max_severity = s.max_severity.max(Some(rank));
        }
        s.dropped = meta(&c, "dropped").map_err(|e| self.err(e))?;
        s.boot_epoch = meta(&c, "epoch").map_err(|e| self.err(e))?;
        drop(st);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: &str, severity: &str) -> NewEvent {
        NewEvent {
            slot: "fuser".into(),
            code: code.into(),
            severity: severity.into(),
            ..NewEvent::default()
        }
    }

    #[test]
    fn events_are_numbered_per_boot_and_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), JournalLimits::default(), true).expect("open");
        assert_eq!(j.append(&ev("J-1", "warning"), 1).expect("append"), (1, 1));
        assert_eq!(j.append(&ev("J-2", "error"), 2).expect("append"), (1, 2));
        drop(j);
        // Another process (fleetcare-agent log) appends to the same epoch.
        let other = Journal::open(dir.path(), JournalLimits::default(), false).expect("open");
        assert_eq!(other.append(&ev("J-3", "info"), 3).expect("append"), (1, 3));
        drop(other);
        let j = Journal::open(dir.path(), JournalLimits::default(), true).expect("reopen");
        assert_eq!(j.append(&ev("J-4", "info"), 4).expect("append"), (2, 1));
        let (epoch, events) = j.pending(10).expect("pending").expect("some");
        assert_eq!(epoch, 1, "the oldest epoch goes first");
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(j.ack(1, 2).expect("ack"), 2);
        let (_, events) = j.pending(10).expect("pending").expect("some");
        assert_eq!(events.len(), 1);
        j.ack(1, 3).expect("ack");
        let (epoch, events) = j.pending(10).expect("pending").expect("some");
        assert_eq!((epoch, events[0].code.as_str()), (2, "J-4"));
        let s = j.stats().expect("stats");
        assert_eq!((s.pending, s.boot_epoch, s.max_severity), (1, 2, Some(1)));
    }

    #[test]
    fn a_full_journal_drops_the_least_severe_oldest_first_and_keeps_their_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = JournalLimits {
            max_events: 3,
            max_bytes: 1 << 20,
        };
        let j = Journal::open(dir.path(), limits, true).expect("open");
        j.append(&ev("A", "error"), 1).expect("append");
        j.append(&ev("B", "info"), 2).expect("append");
        j.append(&ev("C", "warning"), 3).expect("append");
        j.append(&ev("D", "info"), 4).expect("append");
        j.append(&ev("E", "critical"), 5).expect("append");
        let (_, events) = j.pending(10).expect("pending").expect("some");
        let kept: Vec<(&str, bool)> = events
            .iter()
            .map(|e| (e.code.as_str(), e.dropped))
            .collect();
        // B and D (info) went first; the numbers stay, as tombstones.
        assert_eq!(
            kept,
            vec![
                ("A", false),
                ("", true),
                ("C", false),
                ("", true),
                ("E", false)
            ]
        );
        let s = j.stats().expect("stats");
        assert_eq!((s.pending, s.dropped), (3, 2));
        assert!(
            j.append(&ev("X", "loud"), 6).is_err(),
            "an unknown severity is refused"
        );
    }

    #[test]
    fn a_damaged_journal_is_moved_aside_and_collection_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), JournalLimits::default(), true).expect("open");
        j.append(&ev("A", "error"), 1).expect("append");
        drop(j);
        std::fs::write(
            dir.path().join("journal.db"),
            b"this is not a database at all, not at all",
        )
        .expect("damage");
        let _ = std::fs::remove_file(dir.path().join("journal.db-wal"));
        let _ = std::fs::remove_file(dir.path().join("journal.db-shm"));
        let j = Journal::open(dir.path(), JournalLimits::default(), true).expect("a new journal");
        assert_eq!(j.append(&ev("B", "error"), 2).expect("append").1, 1);
        assert_eq!(j.stats().expect("stats").quarantined, 1);
    }
}
