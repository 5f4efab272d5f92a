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

/// What the doctor found of PostgreSQL's partitions of one table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionSummary {
    pub table: String,
    /// Range partitions, and where the newest ends (ms).
    pub ranges: usize,
    pub covered_until: Option<i64>,
    /// Rows (estimate) in the default partition.
    pub default_rows: i64,
}

/// A PostgreSQL store as found, read-only (no migration, no partition made).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PgInspection {
    pub inspection: Inspection,
    /// Rows estimated from PostgreSQL's statistics, not counted.
    pub estimated: bool,
    pub partitions: Vec<PartitionSummary>,
}

/// Longest a single read of the doctor may take on PostgreSQL (a table's oldest row on a big
/// table); past it that figure is "unknown".
const PG_READ_TIMEOUT: &str = "20s";

/// Inspect a PostgreSQL store read-only. The quick check reads PostgreSQL's own count of
/// checksum failures; `full` also checks every index of the store's tables with `amcheck`
/// (when the extension is installed; otherwise says so), and counts rows instead of
/// estimating them.
pub async fn inspect_postgres(url: &str, full: bool) -> crate::Result<PgInspection> {
    use sqlx::{Connection, Row};
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::query("SET default_transaction_read_only = on")
        .execute(&mut c)
        .await?;
    sqlx::query(&format!("SET statement_timeout = '{PG_READ_TIMEOUT}'"))
        .execute(&mut c)
        .await?;
    let mut integrity = Vec::new();
    let failures: Option<i64> = sqlx::query_scalar(
        "SELECT checksum_failures FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut c)
    .await?;
    match failures {
        Some(n) if n > 0 => integrity.push(format!("{n} page checksum failure(s)")),
        _ => {}
    }
    if full {
        let amcheck: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'amcheck')",
        )
        .fetch_one(&mut c)
        .await?;
        if amcheck {
            sqlx::query("SET statement_timeout = 0")
                .execute(&mut c)
                .await?;
            let indexes: Vec<String> = sqlx::query_scalar(
                "SELECT i.indexrelid::regclass::text FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE a.amname = 'btree' AND c.relkind = 'i' AND n.nspname = current_schema()",
            )
            .fetch_all(&mut c)
            .await?;
            for ix in indexes {
                if let Err(e) = sqlx::query("SELECT bt_index_check($1::regclass)")
                    .bind(&ix)
                    .execute(&mut c)
                    .await
                {
                    integrity.push(format!("index {ix}: {e}"));
                }
            }
            sqlx::query(&format!("SET statement_timeout = '{PG_READ_TIMEOUT}'"))
                .execute(&mut c)
                .await?;
        } else {
            integrity.push(
                "indexes not checked: the amcheck extension is not installed \
                 (CREATE EXTENSION amcheck, or run pg_amcheck)"
                    .into(),
            );
        }
    }
    if integrity.is_empty() {
        integrity.push("ok".into());
    }
    let schema_version: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM fleetcare_migrations")
            .fetch_one(&mut c)
            .await
            .unwrap_or(0);
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut c)
        .await?;
    let mut tables = Vec::new();
    for (table, at) in GROWING {
        // A partitioned table's statistics are its partitions'.
        let estimate: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(GREATEST(c.reltuples, 0))::bigint FROM pg_partition_tree(to_regclass($1)) t \
             JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf",
        )
        .bind(table)
        .fetch_one(&mut c)
        .await
        .ok()
        .flatten();
        let rows = if full {
            sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&mut c)
                .await
                .ok()
                .or(estimate)
        } else {
            estimate
        };
        let oldest: Option<i64> = sqlx::query_scalar(&format!("SELECT MIN({at}) FROM {table}"))
            .fetch_one(&mut c)
            .await
            .ok()
            .flatten();
        let oldest = if *table == "operating_daily" {
            oldest.map(|d| d * 86_400_000)
        } else {
            oldest
        };
        tables.push((
            (*table).to_owned(),
            rows.map_or(0, |r| u64::try_from(r).unwrap_or(0)),
            oldest,
        ));
    }
    let mut partitions = Vec::new();
    for t in crate::partitions::PARTITIONED {
        let rows = sqlx::query(crate::partitions::PARTITIONS_OF)
            .bind(t.table)
            .fetch_all(&mut c)
            .await?;
        let mut s = PartitionSummary {
            table: t.table.to_owned(),
            ..PartitionSummary::default()
        };
        for r in rows {
            let bound: String = r.try_get(2)?;
            match crate::partitions::parse_bound(&bound) {
                None => s.default_rows = r.try_get(1)?,
                Some((_, end)) => {
                    s.ranges += 1;
                    s.covered_until = Some(s.covered_until.map_or(end, |u| u.max(end)));
                }
            }
        }
        partitions.push(s);
    }
    c.close().await?;
    Ok(PgInspection {
        inspection: Inspection {
            integrity,
            schema_version,
            bytes: u64::try_from(bytes).unwrap_or(0),
            tables,
        },
        estimated: !full,
        partitions,
    })
}

impl crate::Store {
    /// A real write that changes nothing anyone reads (the newest migration's row rewritten
    /// as it is): whether the store can write again after its disk was full.
    pub async fn probe_write(&self) -> crate::Result<()> {
        self.run(
            vec![crate::exec::Stmt::new(
                "UPDATE fleetcare_migrations SET applied_at = applied_at \
                 WHERE version = (SELECT MAX(version) FROM fleetcare_migrations)",
                vec![],
            )],
            crate::exec::Guard::None,
        )
        .await
        .map(|_| ())
    }
}
