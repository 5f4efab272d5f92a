//! Embedded SQLite backend: WAL, group commit on one writer thread, checkpoints under our
//! control, a small pool of read connections.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::exec::{Group, Guard, Sql, Stmt, Ty, Val};
use crate::{
    IngestRows, IngestState, Ingested, NewReport, Result, StoreError, ingest_rows, is_newest,
    judgement_update, migrate, needs_old_structure, sql, to_i64, to_u64,
};

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "fleetcare.db";
/// Most writes committed together.
const MAX_GROUP: usize = 4096;
/// Writes that may wait for the writer before callers wait to enqueue (backpressure).
const QUEUE: usize = 16 * 1024;
const READERS: usize = 8;
/// Past this size the writer truncates the write-ahead log between two group commits. Passive
/// checkpoints copy frames into the database as writes happen, but SQLite restarts the log
/// only when no reader uses it, which under steady load may be never: without this the log
/// grows without bound (seen: 12 GB beside a 2 GB database).
pub const WAL_LIMIT: u64 = 64 * 1024 * 1024;
/// Under load, a group of fewer writes than this waits up to [`COMMIT_DELAY`] for more
/// (PostgreSQL's `commit_siblings` and `commit_delay`).
const COMMIT_SIBLINGS: usize = 32;
const COMMIT_DELAY: Duration = Duration::from_millis(2);
/// How often the checkpointer copies the log into the database while writes happen.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// Page cache of the writer connection, in KiB (negative: SQLite's unit for KiB).
const WRITER_CACHE_KIB: i64 = -64 * 1024;

/// `$N` → `?N`: SQLite's numbered parameters.
fn q(sql: &str) -> String {
    sql.replace('$', "?")
}

type Finish = Box<dyn FnOnce(Option<StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

enum Msg {
    Write(Job),
    Close(oneshot::Sender<Result<()>>),
}

struct Inner {
    path: PathBuf,
    writer: mpsc::Sender<Msg>,
    readers: Mutex<Vec<Connection>>,
    /// At most [`READERS`] reads at a time: a burst of reads waits here instead of opening a
    /// connection (and occupying a blocking thread, with its own page cache) for each.
    read_permits: tokio::sync::Semaphore,
    /// Commits since the last checkpoint; the checkpointer skips idle seconds.
    commits: Arc<AtomicU64>,
    /// Woken after a commit that added to the notification outbox.
    outbox: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
}

#[derive(Clone)]
pub struct SqliteStore(Arc<Inner>);

fn open_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        at: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Savepoint sub-journals and sorts in memory, not in temporary files.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

impl SqliteStore {
    pub async fn open(dir: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with_wal_limit(dir, WAL_LIMIT).await
    }

    /// Open with another limit on the write-ahead log's size (tests).
    pub async fn open_with_wal_limit(dir: &Path, wal_limit: u64) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| open_err(dir, e))?;
        let path = dir.join(DB_FILE);
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection> {
            let conn = Connection::open(&p).map_err(|e| open_err(&p, e))?;
            configure(&conn)?;
            // Durable on commit; WAL; no automatic checkpoints (ours run every second).
            let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(open_err(
                    &p,
                    format!("journal mode is {mode}, WAL is required"),
                ));
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            // The writer's page cache: large enough that a group commit does not spill.
            conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB.to_string())?;
            migrate_sqlite(&conn)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Db(e.to_string()))??;

        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let outbox = Arc::new(tokio::sync::Notify::new());
        {
            let (commits, wal, outbox) = (commits.clone(), wal_path(&path), outbox.clone());
            std::thread::Builder::new()
                .name("sqlite-writer".into())
                .spawn(move || writer_loop(conn, rx, commits, &outbox, &wal, wal_limit))
                .map_err(|e| open_err(&path, e))?;
        }
        {
            let (commits, stop, p) = (commits.clone(), stop.clone(), path.clone());
            std::thread::Builder::new()
                .name("sqlite-checkpoint".into())
                .spawn(move || checkpoint_loop(&p, &commits, &stop))
                .map_err(|e| open_err(&path, e))?;
        }
        Ok(SqliteStore(Arc::new(Inner {
            path,
            writer: tx,
            readers: Mutex::new(Vec::new()),
            read_permits: tokio::sync::Semaphore::new(READERS),
            outbox,
            commits,
            stop,
        })))
    }

    /// Run `f` on the writer inside the next group commit; answers once the group is durable.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| match f(conn) {
            Ok(v) => (
                true,
                Box::new(move |commit_err: Option<StoreError>| {
                    let _ = tx.send(match commit_err {
                        None => Ok(v),
                        Some(e) => Err(e),
                    });
                }) as Finish,
            ),
            Err(e) => (
                false,
                Box::new(move |_: Option<StoreError>| {
                    let _ = tx.send(Err(e));
                }) as Finish,
            ),
        });
        self.0
            .writer
            .send(Msg::Write(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Db("the write was abandoned; nothing was stored".into()))?
    }

    /// Run `f` on a pooled read connection on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.0.clone();
        let _permit = self
            .0
            .read_permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let conn = match inner.readers.lock().expect("reader pool").pop() {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(|e| open_err(&inner.path, e))?;
                    configure(&c)?;
                    c
                }
            };
            let out = f(&conn);
            let mut pool = inner.readers.lock().expect("reader pool");
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Db(format!("read task failed: {e}")))?
    }

    pub async fn ingest_report(&self, report: NewReport) -> Result<Ingested> {
        // The fingerprint is pure CPU: compute it here, not on the writer thread.
        let fingerprint = report.structure.fingerprint();
        self.write(move |c| ingest(c, &report, fingerprint)).await
    }

    pub async fn close(&self) -> Result<()> {
        self.0.stop.store(true, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        if self.0.writer.send(Msg::Close(tx)).await.is_err() {
            return Ok(()); // already closed
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// A digest of every row of every table but the audit log (and SQLite's own): equal
    /// before and after something means it changed nothing.
    pub async fn content_digest(&self) -> Result<String> {
        use std::fmt::Write as _;
        self.read(|c| {
            let tables: Vec<String> = c
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT IN \
                     ('audit_log', 'sqlite_sequence') ORDER BY name",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut h = String::new();
            for t in tables {
                h.push_str(&t);
                let mut st = c.prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1, 2"))?;
                let n = st.column_count();
                let mut rows = st.query([])?;
                while let Some(row) = rows.next()? {
                    for i in 0..n {
                        let v: rusqlite::types::Value = row.get(i)?;
                        let _ = write!(h, "{v:?}\u{1f}");
                    }
                    h.push('\n');
                }
            }
            Ok(fleetcare_core::secret::hash(&h))
        })
        .await
    }

    pub async fn integrity_check(&self) -> Result<String> {
        self.read(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))?))
            .await
    }

    pub(crate) async fn run_groups(&self, groups: Vec<Group>) -> Result<Vec<Vec<u64>>> {
        self.write(move |c| {
            groups
                .iter()
                .map(|(stmts, guard)| run_stmts(c, stmts, *guard))
                .collect()
        })
        .await
    }

    pub(crate) async fn select(
        &self,
        sql: Sql,
        params: Vec<Val>,
        types: &'static [Ty],
    ) -> Result<Vec<Vec<Val>>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&sql.sqlite())?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        Ok(match t {
                            Ty::Int => r.get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int),
                            Ty::Text => r.get::<_, Option<String>>(i)?.map_or(Val::Null, Val::Text),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<Val>>>()
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Group commits so far (each one fsync).
    pub fn group_commits(&self) -> u64 {
        self.0.commits.load(Ordering::Relaxed)
    }

    /// Woken after each commit that added notification events.
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        self.0.outbox.clone()
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.0.path
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Val::Null | Val::NullText => ToSqlOutput::Owned(Value::Null),
            Val::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

/// Execute one statement on the writer's connection; the rows it changed (or the integer it
/// returned).
pub(crate) fn exec_stmt(c: &Connection, st: &Stmt) -> rusqlite::Result<u64> {
    let mut prepared = c.prepare_cached(&st.sql.sqlite())?;
    let params = rusqlite::params_from_iter(st.params.iter());
    if st.returns_int {
        let v: Option<i64> = prepared.query_row(params, |r| r.get(0)).optional()?;
        return Ok(v.map_or(0, to_u64));
    }
    Ok(prepared.execute(params)? as u64)
}

/// Execute statements in order (inside the writer's group transaction).
pub(crate) fn run_stmts(c: &Connection, stmts: &[Stmt], guard: Guard) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(stmts.len());
    for (i, st) in stmts.iter().enumerate() {
        let n = exec_stmt(c, st)?;
        out.push(n);
        if i == 0 && guard == Guard::First && n == 0 {
            break;
        }
    }
    Ok(out)
}

fn migrate_sqlite(conn: &Connection) -> Result<()> {
    let m = |e: rusqlite::Error| StoreError::Migrate(e.to_string());
    // Every pending migration in one transaction: one that fails leaves the database as it
    // was before any of them.
    let tx = conn.unchecked_transaction().map_err(m)?;
    tx.execute_batch(migrate::CREATE_TABLE).map_err(m)?;
    let newest: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM fleetcare_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(m)?;
    let known = migrate::SQLITE.last().map_or(0, |(v, _)| *v);
    migrate::check_not_newer(newest, known)?;
    let mut applied = Vec::new();
    for (version, ddl) in migrate::SQLITE {
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM fleetcare_migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )
            .map_err(m)?;
        if done {
            continue;
        }
        tx.execute_batch(ddl)
            .map_err(|e| StoreError::Migrate(format!("schema migration {version}: {e}")))?;
        tx.execute(
            "INSERT INTO fleetcare_migrations (version, applied_at) VALUES (?1, ?2)",
            params![
                version,
                fleetcare_core::clock::Clock::now_ms(&fleetcare_core::clock::SystemClock)
            ],
        )
        .map_err(m)?;
        applied.push(*version);
    }
    tx.commit().map_err(m)?;
    if !applied.is_empty() {
        tracing::info!(?applied, "applied schema migrations");
    }
    Ok(())
}

impl crate::Columns for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.get(i)?)
    }
}

fn ingest(c: &Connection, r: &NewReport, fingerprint: String) -> Result<Ingested> {
    let (tenant, id) = (r.key.tenant, r.key.device_id.as_str());
    let state = c
        .prepare_cached(&q(sql::INGEST_STATE))?
        .query_row(params![tenant, id], |row| Ok(IngestState::decode(row, 0)))
        .optional()?
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("device {id}")))?;
    let interval = state.report_interval_s.map(to_u64);
    let seq = to_i64(r.seq);
    let trig = r.trigger.as_str();
    let newest = is_newest(&state, seq);
    let rows = if newest {
        let old = if needs_old_structure(&state, &fingerprint) {
            Some(c.prepare_cached(&q(sql::OLD_STRUCTURE))?.query_row(
                params![tenant, id],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                },
            )?)
        } else {
            None
        };
        Some(ingest_rows(r, &state, old, fingerprint.clone())?)
    } else {
        None
    };
    let changes = rows.as_ref().map_or(0, IngestRows::changes);
    let (op_keyframe, op_vals) = rows
        .as_ref()
        .map_or((None, None), IngestRows::history_columns);
    let inserted = c.prepare_cached(&q(sql::INSERT_REPORT))?.execute(params![
        tenant,
        id,
        state.generation,
        seq,
        trig,
        r.observed_at_ms,
        r.received_at_ms,
        fingerprint,
        i64::from(changes),
        op_keyframe,
        op_vals
    ])?;
    if inserted == 0 {
        return Ok(Ingested::duplicate(interval));
    }
    let Some(rows) = rows else {
        return Ok(Ingested::stale(interval));
    };
    if let Some((structure_json, events)) = &rows.structure_change {
        let mut ins = c.prepare_cached(&q(sql::INSERT_EVENT))?;
        for (kind, slot, json) in events {
            ins.execute(params![
                tenant,
                id,
                seq,
                trig,
                r.observed_at_ms,
                r.received_at_ms,
                kind,
                slot,
                json
            ])?;
        }
        c.prepare_cached(&q(sql::COMPAT_STRUCTURE))?
            .execute(params![tenant, id, rows.fingerprint])?;
        c.prepare_cached(&q(sql::UPDATE_STRUCTURE))?
            .execute(params![
                tenant,
                id,
                structure_json,
                rows.fingerprint,
                r.observed_at_ms,
                i64::try_from(r.structure.units().len()).unwrap_or(i64::MAX)
            ])?;
    }
    c.prepare_cached(&q(sql::UPDATE_AFTER_REPORT))?
        .execute(params![
            tenant,
            id,
            seq,
            trig,
            r.received_at_ms,
            r.observed_at_ms,
            r.structure.model(),
            rows.operating_json,
            r.install_blocked,
            rows.supplies_json
        ])?;
    if let Some(h) = rows.history.as_ref().filter(|h| h.keyframe) {
        c.prepare_cached(&q(sql::INSERT_OPERATING_DAY))?
            .execute(params![h.day(), tenant, id])?;
    }
    for (at, vals) in &rows.meters.edge_reads {
        c.prepare_cached(&q(sql::INSERT_EDGE_READ))?
            .execute(params![tenant, id, at, vals])?;
    }
    for (name, before, after) in &rows.meters.resets {
        c.prepare_cached(&q(sql::INSERT_METER_RESET))?
            .execute(params![tenant, id, r.observed_at_ms, name, before, after])?;
    }
    let findings_changed = match judgement_update(r, &state) {
        Some((stmts, guard)) => {
            run_stmts(c, &stmts, guard)?;
            true
        }
        None => false,
    };
    Ok(Ingested {
        duplicate: false,
        changes,
        report_interval_s: interval,
        current: true,
        findings_changed,
        keyframe: rows.history.as_ref().is_some_and(|h| h.keyframe),
        supply_changes: rows.supply_changes,
    })
}

/// A transaction-control statement, prepared once (they run for every write).
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// The writer: take every waiting write, run each in a savepoint, commit once, answer all.
fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    commits: Arc<AtomicU64>,
    outbox: &tokio::sync::Notify,
    wal: &Path,
    wal_limit: u64,
) {
    let mut group: Vec<Job> = Vec::with_capacity(MAX_GROUP);
    let mut finishes: Vec<Finish> = Vec::with_capacity(MAX_GROUP);
    let mut close: Option<oneshot::Sender<Result<()>>> = None;
    let mut last_commit = Instant::now() - COMMIT_DELAY * 10;
    let mut last_outbox = 0i64;
    while close.is_none() {
        match rx.blocking_recv() {
            Some(Msg::Write(job)) => group.push(job),
            Some(Msg::Close(tx)) => close = Some(tx),
            None => break,
        }
        // Under load (the previous commit was just now), a small group waits a moment for
        // company: one fsync and one copy of each page for more writes. Idle, a write goes at
        // once.
        let busy = last_commit.elapsed() < COMMIT_DELAY * 2;
        let gather_until = Instant::now() + COMMIT_DELAY;
        while group.len() < MAX_GROUP && close.is_none() {
            match rx.try_recv() {
                Ok(Msg::Write(job)) => group.push(job),
                Ok(Msg::Close(tx)) => close = Some(tx),
                Err(_)
                    if busy && group.len() < COMMIT_SIBLINGS && Instant::now() < gather_until =>
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(_) => break,
            }
        }
        if group.is_empty() {
            continue;
        }
        if let Err(e) = control(&conn, "BEGIN IMMEDIATE") {
            // Nothing ran: dropping the jobs drops their answer channels, and every caller
            // of the group gets an error; nothing was stored.
            tracing::error!(error = %e, writes = group.len(), "could not begin a group commit");
            group.clear();
            continue;
        }
        let mut lost = false;
        for job in group.drain(..) {
            if lost {
                // Dropped unrun: its caller hears that nothing was stored.
                continue;
            }
            let _ = control(&conn, "SAVEPOINT w");
            let (ok, finish) = match catch_unwind(AssertUnwindSafe(|| job(&conn))) {
                Ok(r) => r,
                Err(_) => (false, Box::new(|_| ()) as Finish),
            };
            if !ok {
                let _ = control(&conn, "ROLLBACK TO w");
            }
            finishes.push(finish);
            // SQLite rolls the whole transaction back by itself after some errors (a full
            // disk, an I/O error): the group's earlier writes are gone, and a later one would
            // run outside any transaction, committed piecemeal. None runs; all are refused.
            if conn.is_autocommit() {
                lost = true;
                continue;
            }
            let _ = control(&conn, "RELEASE w");
        }
        let committed = if lost {
            Err(None)
        } else {
            control(&conn, "COMMIT").map_err(Some)
        };
        let commit_err = match committed {
            Err(None) => {
                tracing::error!(
                    "SQLite rolled a group back after a write failed; the whole group is refused"
                );
                Some(StoreError::Db(
                    "the group's transaction was rolled back after another write failed; \
                     nothing was stored"
                        .into(),
                ))
            }
            Ok(()) => {
                last_commit = Instant::now();
                commits.fetch_add(1, Ordering::Relaxed);
                // The outbox grew (a trigger or the offline sweep added an event): wake the
                // notification worker now rather than at its next poll.
                if let Ok(seq) = conn
                    .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'notify_events'")
                    .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)))
                    && seq > last_outbox
                {
                    last_outbox = seq;
                    outbox.notify_one();
                }
                None
            }
            Err(Some(e)) => {
                tracing::error!(error = %e, "group commit failed; the whole group is refused");
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                Some(match StoreError::from(e) {
                    StoreError::DiskFull(e) => StoreError::DiskFull(format!("commit: {e}")),
                    e => StoreError::Db(format!("commit: {e}")),
                })
            }
        };
        for finish in finishes.drain(..) {
            finish(commit_err.clone());
        }
        // Between groups, with every caller answered: keep the log bounded. Most frames were
        // copied by the passive checkpointer already; this copies the rest, waits for readers
        // to leave the log (they are short), and truncates it.
        if std::fs::metadata(wal).is_ok_and(|m| m.len() > wal_limit) {
            match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            }) {
                Ok(0) => tracing::debug!("write-ahead log truncated"),
                Ok(_) => tracing::warn!(
                    "write-ahead log not truncated: readers were busy; trying after the next group"
                ),
                Err(e) => tracing::warn!(error = %e, "write-ahead log checkpoint failed"),
            }
        }
    }
    let truncated = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(StoreError::from);
    if let Some(tx) = close {
        let _ = tx.send(truncated);
    }
    rx.close();
}

/// Passive checkpoints every second while writes happen: they copy WAL frames into the
/// database without blocking the writer, so WAL stays small and no commit pays for a
/// checkpoint.
fn checkpoint_loop(path: &Path, commits: &AtomicU64, stop: &AtomicBool) {
    let conn = match Connection::open(path).and_then(|c| configure(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "checkpointer could not open the database; WAL will grow");
            return;
        }
    };
    let mut seen = 0;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let now = commits.load(Ordering::Relaxed);
        if now == seen {
            continue;
        }
        seen = now;
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        }) {
            Ok((busy, log, done)) => tracing::trace!(busy, log, done, "checkpoint"),
            Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under steady writes with readers always busy, the log stays near its limit instead of
    /// growing without bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_ahead_log_stays_bounded_under_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limit = 256 * 1024;
        let raw = SqliteStore::open_with_wal_limit(dir.path(), limit)
            .await
            .expect("open");
        let store = crate::Store::Sqlite(raw.clone());
        let tenant = store.ensure_tenant("t", 0).await.expect("tenant");
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (s, stop) = (store.clone(), stop.clone());
            readers.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    s.operator_by_token("nothing", 0).await.expect("read");
                }
            }));
        }
        let mut largest = 0;
        for i in 0..4000u32 {
            // Rows of a few hundred bytes: the log passes the limit many times over.
            let name = format!("operator-{i}-{}", "x".repeat(300));
            store
                .add_operator_token(tenant, &name, "viewer", &format!("h{i}"), 0)
                .await
                .expect("write");
            largest = largest.max(std::fs::metadata(wal_path(raw.path())).map_or(0, |m| m.len()));
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.await.expect("reader");
        }
        let written = 4000 * 400;
        assert!(written > 4 * limit, "the test writes well past the limit");
        // The limit, plus what one group commit adds before the writer can truncate.
        assert!(
            largest < 2 * limit,
            "the log reached {largest} bytes (limit {limit})"
        );
        assert_eq!(store.integrity_check().await.expect("check"), "ok");
        store.close().await.expect("close");
    }
}
