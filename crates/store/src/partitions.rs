//! PostgreSQL's partitions by time (see ARCHITECTURE.md, "PostgreSQL: partitions by time"):
//! `reports` by the day a report was received, `error_events` by the week. The center makes
//! each partition ahead of its time and drops a whole partition once every tenant's
//! retention has passed it, keeping the few rows that must outlive it (a device's newest
//! report, operating values still waiting for their rollup, events a wrong clock dated later)
//! in the default partition, which the pruner empties row by row. The embedded store has no
//! partitions: it has nothing to do here.

use sqlx::Row;

use crate::postgres::PgStore;
use crate::{Result, Store, StoreError};

const DAY_MS: i64 = 86_400_000;

/// A table partitioned by time, the width of its partitions, and which of its rows outlive
/// their partition (`$1`, if there: the horizon).
pub struct Partitioned {
    pub table: &'static str,
    pub days: i64,
    keep: &'static str,
}

/// The partitioned tables.
pub const PARTITIONED: &[Partitioned] = &[
    Partitioned {
        table: "reports",
        days: 1,
        keep: "p.op_vals IS NOT NULL OR EXISTS (SELECT 1 FROM devices d \
               WHERE d.tenant_id = p.tenant_id AND d.device_id = p.device_id \
               AND d.generation = p.generation AND d.last_seq = p.seq)",
    },
    Partitioned {
        table: "error_events",
        days: 7,
        keep: "p.at >= $1",
    },
];

/// A table's partitions: name, rows (estimate), bound.
pub(crate) const PARTITIONS_OF: &str = "SELECT c.relname::text, GREATEST(c.reltuples, 0)::bigint, \
    pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
    WHERE i.inhparent = to_regclass($1) ORDER BY c.relname";

/// Partitions are made this far ahead of the time they cover.
pub const AHEAD_DAYS: i64 = 7;

/// Arbitrary, fixed: the advisory lock under which one center at a time changes partitions.
const PARTITION_LOCK: i64 = 0x0f1e_e7ca_4e00_0002;

/// Time before which a table's partitions may go: no tenant keeps its rows longer
/// (`None`: some tenant keeps them forever, nothing is dropped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Horizons {
    pub reports: Option<i64>,
    pub error_events: Option<i64>,
}

impl Horizons {
    pub fn of(&self, table: &str) -> Option<i64> {
        match table {
            "reports" => self.reports,
            "error_events" => self.error_events,
            _ => None,
        }
    }
}

/// What one round of partition upkeep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionWork {
    /// Partitions made.
    pub created: Vec<String>,
    /// Partitions dropped: table, partition, rows that went, rows kept (moved to the
    /// default partition).
    pub dropped: Vec<(&'static str, String, u64, u64)>,
}

/// One partition of a partitioned table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub table: String,
    pub name: String,
    /// Its range `[from, to)` in milliseconds; `None` for the default partition.
    pub range: Option<(i64, i64)>,
    /// PostgreSQL's estimate of its rows (from the last ANALYZE).
    pub rows_estimate: i64,
}

/// The partition of `table` that starts at `from_ms`.
pub fn partition_name(table: &str, from_ms: i64) -> String {
    let (y, m, d) = fleetcare_core::meters::civil_date(from_ms);
    format!("{table}_p{y:04}{m:02}{d:02}")
}

/// A partition's range from PostgreSQL's description of its bound (`FOR VALUES FROM (a) TO
/// (b)`, `MINVALUE` as `i64::MIN`); `None` for the default partition.
pub(crate) fn parse_bound(expr: &str) -> Option<(i64, i64)> {
    let value = |s: &str| -> Option<i64> {
        let v = s.trim().trim_matches('\'');
        match v {
            "MINVALUE" => Some(i64::MIN),
            "MAXVALUE" => Some(i64::MAX),
            v => v.parse().ok(),
        }
    };
    let rest = expr.trim().strip_prefix("FOR VALUES FROM (")?;
    let (from, rest) = rest.split_once(") TO (")?;
    let to = rest.strip_suffix(')')?;
    Some((value(from)?, value(to)?))
}

/// The start of the partition of `t` that `at_ms` falls in.
fn start_of(t: &Partitioned, at_ms: i64) -> i64 {
    let width = t.days * DAY_MS;
    at_ms.div_euclid(width) * width
}

impl Store {
    /// Make the partitions of the coming days and drop those every tenant's retention has
    /// passed (PostgreSQL; the embedded store has none, and nothing to do).
    pub async fn maintain_partitions(
        &self,
        now_ms: i64,
        horizons: &Horizons,
    ) -> Result<PartitionWork> {
        match self {
            Store::Postgres(pg) => pg.maintain_partitions(now_ms, horizons).await,
            _ => Ok(PartitionWork::default()),
        }
    }

    /// The partitions of every partitioned table (none on the embedded store).
    pub async fn partitions(&self) -> Result<Vec<PartitionInfo>> {
        match self {
            Store::Postgres(pg) => pg.partitions().await,
            _ => Ok(Vec::new()),
        }
    }

    /// Whether a table's old rows go with their partition (so that the pruner deletes row by
    /// row only in the default partition and where one tenant keeps less than the others).
    pub fn partitioned(&self) -> bool {
        matches!(self, Store::Postgres(_))
    }
}

impl PgStore {
    pub(crate) async fn partitions(&self) -> Result<Vec<PartitionInfo>> {
        let mut out = Vec::new();
        for t in PARTITIONED {
            let rows = sqlx::query(PARTITIONS_OF)
                .bind(t.table)
                .fetch_all(self.pool())
                .await?;
            for r in rows {
                let bound: String = r.try_get(2)?;
                out.push(PartitionInfo {
                    table: t.table.to_owned(),
                    name: r.try_get(0)?,
                    range: parse_bound(&bound),
                    rows_estimate: r.try_get::<i64, _>(1)?.max(0),
                });
            }
        }
        Ok(out)
    }

    pub(crate) async fn maintain_partitions(
        &self,
        now_ms: i64,
        horizons: &Horizons,
    ) -> Result<PartitionWork> {
        let mut work = PartitionWork::default();
        let existing = self.partitions().await?;
        for t in PARTITIONED {
            let have: Vec<(&str, i64, i64)> = existing
                .iter()
                .filter(|p| p.table == t.table)
                .filter_map(|p| p.range.map(|(f, to)| (p.name.as_str(), f, to)))
                .collect();
            let width = t.days * DAY_MS;
            let mut from = start_of(t, now_ms);
            while from <= now_ms + AHEAD_DAYS * DAY_MS {
                // A range some partition covers already (the one a migration made for the rows
                // it carried over ends at a partition's start, but may cover today) is left.
                let taken = have
                    .iter()
                    .any(|(_, f, to)| from < *to && from + width > *f);
                if !taken && self.create(t, from).await? {
                    work.created.push(partition_name(t.table, from));
                }
                from += width;
            }
            let Some(horizon) = horizons.of(t.table) else {
                continue;
            };
            for (name, _, to) in have {
                if to <= horizon
                    && let Some((gone, kept)) = self.drop_partition(t, name, horizon).await?
                {
                    work.dropped.push((t.table, name.to_owned(), gone, kept));
                }
            }
        }
        if !work.created.is_empty() || !work.dropped.is_empty() {
            tracing::info!(created = ?work.created, dropped = ?work.dropped, "partitions");
        }
        Ok(work)
    }

    /// Make the partition of `t` that starts at `from`, moving into it any rows the default
    /// partition holds for its range; `false` if another center made it first.
    async fn create(&self, t: &Partitioned, from: i64) -> Result<bool> {
        let name = partition_name(t.table, from);
        let to = from + t.days * DAY_MS;
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&name)
            .fetch_one(&mut *tx)
            .await?;
        if exists {
            return Ok(false);
        }
        // Waiting long for a lock would stall every writer queued behind it: give up and
        // try again next round instead.
        sqlx::query("SET LOCAL lock_timeout = '5s'")
            .execute(&mut *tx)
            .await?;
        let table = t.table;
        sqlx::query(&format!(
            "CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "WITH moved AS (DELETE FROM {table}_default WHERE received_at >= $1 \
             AND received_at < $2 RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ))
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Drop one partition, its rows that must outlive it moved to the default partition
    /// first; `(rows gone, rows kept)`, or `None` if it was gone already. The keepers are
    /// found before the table is locked (a row never becomes a keeper later: a device's
    /// newest report only moves forward, a rollup only clears values), so writers wait only
    /// for the detach, the copy of the keepers, and the drop.
    async fn drop_partition(
        &self,
        t: &Partitioned,
        name: &str,
        horizon: i64,
    ) -> Result<Option<(u64, u64)>> {
        let table = t.table;
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            return Ok(None);
        }
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {name}"))
            .fetch_one(&mut *tx)
            .await?;
        let keep = format!(
            "CREATE TEMPORARY TABLE fleetcare_keep ON COMMIT DROP AS \
             SELECT p.* FROM {name} p WHERE {}",
            t.keep
        );
        let mut keep = sqlx::query(&keep);
        if t.keep.contains("$1") {
            keep = keep.bind(horizon);
        }
        keep.execute(&mut *tx).await?;
        sqlx::query("SET LOCAL lock_timeout = '5s'")
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("ALTER TABLE {table} DETACH PARTITION {name}"))
            .execute(&mut *tx)
            .await?;
        let kept = sqlx::query(&format!("INSERT INTO {table} SELECT * FROM fleetcare_keep"))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(&format!("DROP TABLE {name}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let rows = u64::try_from(rows).map_err(|_| StoreError::Corrupt("row count".into()))?;
        Ok(Some((rows.saturating_sub(kept), kept)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_say_where_they_start() {
        let day = fleetcare_core::meters::days_from_civil(2026, 12, 4) * DAY_MS;
        assert_eq!(partition_name("reports", day), "reports_p20261204");
        assert_eq!(
            parse_bound("FOR VALUES FROM ('1790000000000') TO ('1790086400000')"),
            Some((1_790_000_000_000, 1_790_086_400_000))
        );
        assert_eq!(
            parse_bound("FOR VALUES FROM (MINVALUE) TO (1790086400000)"),
            Some((i64::MIN, 1_790_086_400_000))
        );
        assert_eq!(parse_bound("DEFAULT"), None);
        // Weeks start where the epoch's first week did, whatever the day.
        let week = &PARTITIONED[1];
        assert_eq!(start_of(week, day + 5) % (7 * DAY_MS), 0);
        assert!(start_of(week, day + 5) <= day && day < start_of(week, day) + 7 * DAY_MS);
    }
}
