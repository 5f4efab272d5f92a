//! What `fleetcare doctor` reads of a store, read-only (safe while the center runs): whether
//! the database is whole, its schema version against this release's, the rows it keeps per
//! kind and the oldest of each.

use rusqlite::{Connection, OpenFlags};

use crate::sqlite::DB_FILE;

/// The newest schema version this release knows.
pub fn schema_version() -> i64 {
    crate::migrate::SQLITE.last().map_or(0, |(v, _)| *v)
}

/// A store's state, as found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inspection {
    /// `ok`, or what the integrity check found.
    pub integrity: Vec<String>,
    pub schema_version: i64,
    pub bytes: u64,
    /// Per table of the kinds that grow: rows, and the oldest row's time (ms), if any.
    pub tables: Vec<(String, u64, Option<i64>)>,
}

/// The tables that grow with time, and the column that says when a row was made.
pub const GROWING: &[(&str, &str)] = &[
    ("reports", "received_at"),
    ("error_events", "at"),
    ("structure_events", "received_at"),
    ("audit_log", "at"),
    ("job_events", "at"),
    ("operating_daily", "day"),
    ("notify_deliveries", "created_at"),
];

/// Inspect the embedded store in `data_dir`; `full` runs the whole integrity check (every
/// page and index), else the quick one.
pub fn inspect_sqlite(data_dir: &std::path::Path, full: bool) -> std::io::Result<Inspection> {
    let db = data_dir.join(DB_FILE);
    if !db.exists() {
        return Err(std::io::Error::other(format!(
            "{} holds no embedded store ({DB_FILE})",
            data_dir.display()
        )));
    }
    let e = |e: rusqlite::Error| std::io::Error::other(e.to_string());
    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(e)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(e)?;
    let check = if full {
        "PRAGMA integrity_check"
    } else {
        "PRAGMA quick_check"
    };
    let integrity: Vec<String> = conn
        .prepare(check)
        .map_err(e)?
        .query_map([], |r| r.get(0))
        .map_err(e)?
        .take(20)
        .collect::<Result<_, _>>()
        .map_err(e)?;
    let schema_version = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM fleetcare_migrations",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    let pages: u64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(e)?;
    let page_size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(e)?;
    let mut tables = Vec::new();
    for (table, at) in GROWING {
        let row: Option<(u64, Option<i64>)> = conn
            .query_row(
                &format!("SELECT COUNT(*), MIN({at}) FROM {table}"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        if let Some((rows, oldest)) = row {
            // `operating_daily` counts days, not milliseconds.
            let oldest = if *table == "operating_daily" {
                oldest.map(|d| d * 86_400_000)
            } else {
                oldest
            };
            tables.push(((*table).to_owned(), rows, oldest));
        }
    }
    Ok(Inspection {
        integrity,
        schema_version,
        bytes: pages * page_size,
        tables,
    })
}
