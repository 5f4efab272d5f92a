//! PostgreSQL backend through sqlx. Each write is one transaction; PostgreSQL's own group
//! commit covers concurrent ones. Structure reports, the hot path, are grouped: each device
//! goes to one of [`INGEST_WRITERS`] writers (by its key, so a device's reports stay in
//! order), and a writer stores whatever reports wait for it, up to [`INGEST_GROUP`], in one
//! transaction of a few multi-row statements (states locked in key order, so writers never
//! deadlock). A group that fails is stored again report by report, so each report gets its
//! own answer. Migrations run under an advisory lock so instances starting together apply
//! each once.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

use crate::exec::{Group, Guard, Sql, Stmt, Ty, Val};
use crate::{
    DeviceKey, IngestRows, IngestState, Ingested, NewReport, Result, StoreError, ingest_rows,
    is_newest, judgement_update, migrate, needs_old_structure, sql, to_i64, to_u64,
};

/// Arbitrary, fixed: the advisory lock that serializes migrations across instances.
const MIGRATION_LOCK: i64 = 0x0f1e_e7ca_4e00_0001;

/// Writers of grouped reports (each holds at most one connection at a time). Two, not more:
/// fewer writers make larger groups, and the database's work per report is mostly per group
/// and per concurrent transaction (B1 on PostgreSQL, 2026-12-05: 59 µs of database CPU per
/// report with eight writers, 37 µs with two, throughput up by a fifth). Two writers of up
/// to [`INGEST_GROUP`] reports each still carry about 25 K reports/s at a 10 ms transaction.
pub const INGEST_WRITERS: usize = 2;
/// Reports in one writer's transaction at most.
pub const INGEST_GROUP: usize = 128;

type IngestJob = (NewReport, tokio::sync::oneshot::Sender<Result<Ingested>>);

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    ingest: std::sync::Arc<Vec<tokio::sync::mpsc::Sender<IngestJob>>>,
    /// Transactions that stored a group of several reports.
    groups: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl PgStore {
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn open(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(32)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| StoreError::Open {
                at: redact(url),
                reason: e.to_string(),
            })?;
        let groups = std::sync::Arc::default();
        let ingest = (0..INGEST_WRITERS)
            .map(|_| {
                let (tx, rx) = tokio::sync::mpsc::channel(INGEST_GROUP * 4);
                tokio::spawn(ingest_writer(
                    pool.clone(),
                    rx,
                    std::sync::Arc::clone(&groups),
                ));
                tx
            })
            .collect();
        let store = PgStore {
            pool,
            ingest: std::sync::Arc::new(ingest),
            groups,
        };
        store.migrate().await?;
        // The partitions of the coming days exist before the first write needs them.
        let now = fleetcare_core::clock::Clock::now_ms(&fleetcare_core::clock::SystemClock);
        store
            .maintain_partitions(now, &crate::Horizons::default())
            .await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let m = |e: sqlx::Error| StoreError::Migrate(e.to_string());
        let mut conn = self.pool.acquire().await.map_err(m)?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(m)?;
        let result = async {
            // Every pending migration in one transaction (PostgreSQL's DDL is
            // transactional): one that fails leaves the database as it was.
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(m)?;
            tx.execute(migrate::CREATE_TABLE).await.map_err(m)?;
            let newest: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM fleetcare_migrations")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(m)?;
            let known = migrate::POSTGRES.last().map_or(0, |(v, _)| *v);
            migrate::check_not_newer(newest, known)?;
            let mut applied = Vec::new();
            for (version, ddl) in migrate::POSTGRES {
                let done: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM fleetcare_migrations WHERE version = $1)",
                )
                .bind(version)
                .fetch_one(&mut *tx)
                .await
                .map_err(m)?;
                if done {
                    continue;
                }
                tx.execute(*ddl)
                    .await
                    .map_err(|e| StoreError::Migrate(format!("schema migration {version}: {e}")))?;
                sqlx::query(
                    "INSERT INTO fleetcare_migrations (version, applied_at) VALUES ($1, $2)",
                )
                .bind(version)
                .bind(fleetcare_core::clock::Clock::now_ms(
                    &fleetcare_core::clock::SystemClock,
                ))
                .execute(&mut *tx)
                .await
                .map_err(m)?;
                applied.push(*version);
            }
            tx.commit().await.map_err(m)?;
            if !applied.is_empty() {
                tracing::info!(?applied, "applied schema migrations");
            }
            Ok(())
        }
        .await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        result
    }

    /// Transactions that stored a group of several reports so far.
    pub fn group_commits(&self) -> u64 {
        self.groups.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn ingest_report(&self, r: NewReport) -> Result<Ingested> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        r.key.hash(&mut h);
        let writer = &self.ingest[usize::try_from(h.finish() % INGEST_WRITERS as u64).unwrap_or(0)];
        let (tx, rx) = tokio::sync::oneshot::channel();
        writer.send((r, tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// One writer of grouped reports: whatever waits, up to [`INGEST_GROUP`], in rounds where
/// each device appears once.
async fn ingest_writer(
    pool: PgPool,
    mut rx: tokio::sync::mpsc::Receiver<IngestJob>,
    groups: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let mut waiting = Vec::with_capacity(INGEST_GROUP);
    while rx.recv_many(&mut waiting, INGEST_GROUP).await > 0 {
        let mut rounds: Vec<Vec<IngestJob>> = Vec::new();
        for job in waiting.drain(..) {
            match rounds
                .iter_mut()
                .find(|r| r.iter().all(|(o, _)| o.key != job.0.key))
            {
                Some(r) => r.push(job),
                None => rounds.push(vec![job]),
            }
        }
        for mut round in rounds {
            if round.len() == 1 {
                let (r, tx) = round.pop().expect("one");
                let _ = tx.send(ingest_one(&pool, r).await);
                continue;
            }
            let reports: Vec<&NewReport> = round.iter().map(|(r, _)| r).collect();
            match ingest_group(&pool, &reports).await {
                Ok(results) => {
                    groups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    for ((_, tx), result) in round.into_iter().zip(results) {
                        let _ = tx.send(result);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, reports = round.len(), "a group of reports failed; storing them one by one");
                    for (r, tx) in round {
                        let _ = tx.send(ingest_one(&pool, r).await);
                    }
                }
            }
        }
    }
}

/// Device states of a group, locked in key order.
const GROUP_STATES: &str = "SELECT d.tenant_id, d.device_id, d.generation, d.last_seq, \
    d.structure_hash, d.report_interval_s, c.findings_hash, c.judged_revision, d.operating, \
    d.last_observed_at, d.supplies FROM devices d \
    LEFT JOIN device_compat c ON c.tenant_id = d.tenant_id AND c.device_id = d.device_id \
    WHERE (d.tenant_id, d.device_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[])) \
    ORDER BY d.tenant_id, d.device_id FOR UPDATE OF d";
/// A group's reports, each stored once: the table is partitioned by the time a report was
/// received, so its key cannot say "once per (device, generation, seq)" by itself. A report
/// newer than its device's last one (`fresh`) cannot be stored yet; an older one is looked
/// for first. The group holds its devices' rows locked, so no other transaction stores the
/// same report meanwhile.
const GROUP_INSERT_REPORTS: &str = "INSERT INTO reports (tenant_id, device_id, generation, seq, \
    trigger, observed_at, received_at, structure_hash, changes, op_keyframe, op_vals) \
    SELECT t, id, g, s, trig, obs, recv, fp, ch, kf, vals FROM unnest($1::bigint[], $2::text[], \
    $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], \
    $10::bigint[], $11::text[], $12::bool[]) \
    AS u(t, id, g, s, trig, obs, recv, fp, ch, kf, vals, fresh) \
    WHERE u.fresh OR NOT EXISTS (SELECT 1 FROM reports r WHERE r.tenant_id = u.t \
    AND r.device_id = u.id AND r.generation = u.g AND r.seq = u.s) \
    RETURNING tenant_id, device_id";
/// [`GROUP_INSERT_REPORTS`] when every report is fresh (the usual group): no statement over
/// the partitioned table to plan, only rows to route.
const GROUP_INSERT_FRESH_REPORTS: &str = "INSERT INTO reports (tenant_id, device_id, generation, \
    seq, trigger, observed_at, received_at, structure_hash, changes, op_keyframe, op_vals) \
    SELECT t, id, g, s, trig, obs, recv, fp, ch, kf, vals FROM unnest($1::bigint[], $2::text[], \
    $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::text[], $9::bigint[], \
    $10::bigint[], $11::text[], $12::bool[]) \
    AS u(t, id, g, s, trig, obs, recv, fp, ch, kf, vals, fresh) \
    RETURNING tenant_id, device_id";
/// One report, stored unless it is already (see [`GROUP_INSERT_REPORTS`]).
const INSERT_REPORT: &str = "INSERT INTO reports (tenant_id, device_id, generation, seq, \
    trigger, observed_at, received_at, structure_hash, changes, op_keyframe, op_vals) \
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 WHERE $12 OR NOT EXISTS (SELECT 1 \
    FROM reports r WHERE r.tenant_id = $1 AND r.device_id = $2 AND r.generation = $3 \
    AND r.seq = $4)";
const GROUP_UPDATE_AFTER: &str = "UPDATE devices d SET last_seq = u.seq, last_trigger = u.trig, \
    last_report_at = u.recv, last_observed_at = u.obs, model = u.model, operating = u.op, \
    install_blocked = u.blocked, supplies = u.supplies, silent_at = CASE WHEN d.silent_at IS \
    NULL OR d.offline_since IS NOT NULL THEN u.recv + 1000 * \
    COALESCE(n.offline_after_s, 3 * COALESCE(d.report_interval_s, 3600)) ELSE d.silent_at END \
    FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], \
    $7::text[], $8::text[], $9::text[], $10::text[]) \
    AS u(t, id, seq, trig, recv, obs, model, op, blocked, supplies) \
    LEFT JOIN notify_settings n ON n.tenant_id = u.t \
    WHERE d.tenant_id = u.t AND d.device_id = u.id";

/// Store a group of reports of distinct devices in one transaction; each report's outcome
/// (a device that is not enrolled is that report's error). `Err`: nothing was stored.
async fn ingest_group(pool: &PgPool, reports: &[&NewReport]) -> Result<Vec<Result<Ingested>>> {
    use std::collections::{HashMap, HashSet};
    let mut tx = pool.begin().await?;
    let mut keys: Vec<(i64, &str)> = reports
        .iter()
        .map(|r| (r.key.tenant, r.key.device_id.as_str()))
        .collect();
    keys.sort_unstable();
    let (ts, ids): (Vec<i64>, Vec<&str>) = keys.iter().copied().unzip();
    let mut states: HashMap<(i64, String), IngestState> = HashMap::new();
    for row in sqlx::query(GROUP_STATES)
        .bind(&ts)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
    {
        states.insert(
            (row.try_get(0)?, row.try_get(1)?),
            IngestState::decode(&row, 2)?,
        );
    }
    // Each report's rows, decided from its device's state.
    struct Plan<'a> {
        r: &'a NewReport,
        state: IngestState,
        fingerprint: String,
        rows: Option<IngestRows>,
    }
    let mut plans: Vec<Option<Plan<'_>>> = Vec::with_capacity(reports.len());
    for r in reports {
        let Some(state) = states.remove(&(r.key.tenant, r.key.device_id.to_string())) else {
            plans.push(None);
            continue;
        };
        let fingerprint = r.structure.fingerprint();
        let rows = if is_newest(&state, to_i64(r.seq)) {
            let old = if needs_old_structure(&state, &fingerprint) {
                let row = sqlx::query(sql::OLD_STRUCTURE)
                    .bind(r.key.tenant)
                    .bind(r.key.device_id.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                Some((
                    row.try_get::<String, _>(0)?,
                    row.try_get::<Option<String>, _>(1)?,
                    row.try_get::<Option<String>, _>(2)?,
                ))
            } else {
                None
            };
            Some(ingest_rows(r, &state, old, fingerprint.clone())?)
        } else {
            None
        };
        plans.push(Some(Plan {
            r,
            state,
            fingerprint,
            rows,
        }));
    }
    let live: Vec<&Plan<'_>> = plans.iter().flatten().collect();
    let insert = if live.iter().all(|p| p.rows.is_some()) {
        GROUP_INSERT_FRESH_REPORTS
    } else {
        GROUP_INSERT_REPORTS
    };
    let inserted: HashSet<(i64, String)> = sqlx::query(insert)
        .bind(live.iter().map(|p| p.r.key.tenant).collect::<Vec<_>>())
        .bind(
            live.iter()
                .map(|p| p.r.key.device_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(live.iter().map(|p| p.state.generation).collect::<Vec<_>>())
        .bind(live.iter().map(|p| to_i64(p.r.seq)).collect::<Vec<_>>())
        .bind(
            live.iter()
                .map(|p| p.r.trigger.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(live.iter().map(|p| p.r.observed_at_ms).collect::<Vec<_>>())
        .bind(live.iter().map(|p| p.r.received_at_ms).collect::<Vec<_>>())
        .bind(
            live.iter()
                .map(|p| p.fingerprint.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            live.iter()
                .map(|p| i64::from(p.rows.as_ref().map_or(0, IngestRows::changes)))
                .collect::<Vec<_>>(),
        )
        .bind(
            live.iter()
                .map(|p| p.rows.as_ref().and_then(|r| r.history_columns().0))
                .collect::<Vec<_>>(),
        )
        .bind(
            live.iter()
                .map(|p| p.rows.as_ref().and_then(|r| r.history_columns().1))
                .collect::<Vec<_>>(),
        )
        .bind(live.iter().map(|p| p.rows.is_some()).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<_>>()?;
    let mut after: Vec<(&Plan<'_>, &IngestRows)> = Vec::new();
    let mut results = Vec::with_capacity(plans.len());
    for p in &plans {
        let Some(p) = p else {
            results.push(None);
            continue;
        };
        let r = p.r;
        let interval = p.state.report_interval_s.map(to_u64);
        if !inserted.contains(&(r.key.tenant, r.key.device_id.to_string())) {
            results.push(Some(Ingested::duplicate(interval)));
            continue;
        }
        let mut findings_changed = false;
        if let Some(rows) = &p.rows {
            store_structure_change(&mut tx, r, rows).await?;
            after.push((p, rows));
            if let Some((stmts, guard)) = judgement_update(r, &p.state) {
                run_stmts(&mut tx, &stmts, guard).await?;
                findings_changed = true;
            }
        }
        results.push(Some(Ingested {
            duplicate: false,
            changes: p.rows.as_ref().map_or(0, IngestRows::changes),
            report_interval_s: interval,
            current: p.rows.is_some(),
            findings_changed,
            supply_changes: p
                .rows
                .as_ref()
                .map(|r| r.supply_changes.clone())
                .unwrap_or_default(),
            keyframe: p
                .rows
                .as_ref()
                .and_then(|r| r.history.as_ref())
                .is_some_and(|h| h.keyframe),
        }));
    }
    if !after.is_empty() {
        sqlx::query(GROUP_UPDATE_AFTER)
            .bind(
                after
                    .iter()
                    .map(|(p, _)| p.r.key.tenant)
                    .collect::<Vec<_>>(),
            )
            .bind(
                after
                    .iter()
                    .map(|(p, _)| p.r.key.device_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                after
                    .iter()
                    .map(|(p, _)| to_i64(p.r.seq))
                    .collect::<Vec<_>>(),
            )
            .bind(
                after
                    .iter()
                    .map(|(p, _)| p.r.trigger.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                after
                    .iter()
                    .map(|(p, _)| p.r.received_at_ms)
                    .collect::<Vec<_>>(),
            )
            .bind(
                after
                    .iter()
                    .map(|(p, _)| p.r.observed_at_ms)
                    .collect::<Vec<_>>(),
            )
            .bind(
                after
                    .iter()
                    .map(|(p, _)| p.r.structure.model())
                    .collect::<Vec<_>>(),
            )
            .bind(
                after
                    .iter()
                    .map(|(_, rows)| rows.operating_json.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                after
                    .iter()
                    .map(|(p, _)| p.r.install_blocked.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                after
                    .iter()
                    .map(|(_, rows)| rows.supplies_json.as_deref())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
        store_history(
            &mut tx,
            after.iter().map(|(p, rows)| (p.r, rows.history.as_ref())),
        )
        .await?;
        for (p, rows) in &after {
            store_meter_rows(&mut tx, p.r, &rows.meters).await?;
        }
    }
    tx.commit().await?;
    Ok(results
        .into_iter()
        .zip(reports)
        .map(|(res, r)| {
            res.ok_or_else(|| StoreError::NotFound(format!("device {}", r.key.device_id)))
        })
        .collect())
}

const INSERT_OPERATING_DAYS: &str = "INSERT INTO operating_days (rolled, day, tenant_id, \
    device_id) SELECT 0, * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) \
    ON CONFLICT (rolled, day, tenant_id, device_id) DO NOTHING";

/// The device-days the reports' keyframes open in the pruner's work list (their operating
/// history itself is in their `reports` rows).
async fn store_history<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    reports: impl Iterator<Item = (&'a NewReport, Option<&'a crate::HistoryRow>)>,
) -> Result<()> {
    let days: Vec<(&NewReport, &crate::HistoryRow)> = reports
        .filter_map(|(r, h)| h.filter(|h| h.keyframe).map(|h| (r, h)))
        .collect();
    if days.is_empty() {
        return Ok(());
    }
    sqlx::query(INSERT_OPERATING_DAYS)
        .bind(days.iter().map(|(_, h)| h.day()).collect::<Vec<_>>())
        .bind(days.iter().map(|(r, _)| r.key.tenant).collect::<Vec<_>>())
        .bind(
            days.iter()
                .map(|(r, _)| r.key.device_id.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A report's rows for meter reads (rare: near a month's edge, or a meter gone backwards).
async fn store_meter_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    r: &NewReport,
    m: &crate::MeterRows,
) -> Result<()> {
    let (tenant, id) = (r.key.tenant, r.key.device_id.as_str());
    for (at, vals) in &m.edge_reads {
        sqlx::query(sql::INSERT_EDGE_READ)
            .bind(tenant)
            .bind(id)
            .bind(at)
            .bind(vals)
            .execute(&mut **tx)
            .await?;
    }
    for (name, before, after) in &m.resets {
        sqlx::query(sql::INSERT_METER_RESET)
            .bind(tenant)
            .bind(id)
            .bind(r.observed_at_ms)
            .bind(name)
            .bind(before)
            .bind(after)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The history events, compatibility row and stored structure of a report that changed it.
async fn store_structure_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    r: &NewReport,
    rows: &IngestRows,
) -> Result<()> {
    let Some((structure_json, events)) = &rows.structure_change else {
        return Ok(());
    };
    let (tenant, id, seq, trig) = (
        r.key.tenant,
        r.key.device_id.as_str(),
        to_i64(r.seq),
        r.trigger.as_str(),
    );
    for (kind, slot, json) in events {
        sqlx::query(sql::INSERT_EVENT)
            .bind(tenant)
            .bind(id)
            .bind(seq)
            .bind(trig)
            .bind(r.observed_at_ms)
            .bind(r.received_at_ms)
            .bind(*kind)
            .bind(slot)
            .bind(json)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(sql::COMPAT_STRUCTURE)
        .bind(tenant)
        .bind(id)
        .bind(&rows.fingerprint)
        .execute(&mut **tx)
        .await?;
    sqlx::query(sql::UPDATE_STRUCTURE)
        .bind(tenant)
        .bind(id)
        .bind(structure_json)
        .bind(&rows.fingerprint)
        .bind(r.observed_at_ms)
        .bind(i64::try_from(r.structure.units().len()).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl crate::Columns for sqlx::postgres::PgRow {
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
}

/// One report in its own transaction.
async fn ingest_one(pool: &PgPool, r: NewReport) -> Result<Ingested> {
    let fingerprint = r.structure.fingerprint();
    let (tenant, id) = (r.key.tenant, r.key.device_id.as_str());
    let mut tx = pool.begin().await?;
    let state = sqlx::query(&format!("{} FOR UPDATE OF d", sql::INGEST_STATE))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| IngestState::decode(&row, 0))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("device {id}")))?;
    let interval = state.report_interval_s.map(to_u64);
    let seq = to_i64(r.seq);
    let trig = r.trigger.as_str();
    let rows = if is_newest(&state, seq) {
        let old = if needs_old_structure(&state, &fingerprint) {
            let row = sqlx::query(sql::OLD_STRUCTURE)
                .bind(tenant)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            Some((
                row.try_get::<String, _>(0)?,
                row.try_get::<Option<String>, _>(1)?,
                row.try_get::<Option<String>, _>(2)?,
            ))
        } else {
            None
        };
        Some(ingest_rows(&r, &state, old, fingerprint.clone())?)
    } else {
        None
    };
    let changes = rows.as_ref().map_or(0, IngestRows::changes);
    let inserted = sqlx::query(INSERT_REPORT)
        .bind(tenant)
        .bind(id)
        .bind(state.generation)
        .bind(seq)
        .bind(trig)
        .bind(r.observed_at_ms)
        .bind(r.received_at_ms)
        .bind(&fingerprint)
        .bind(i64::from(changes))
        .bind(rows.as_ref().and_then(|r| r.history_columns().0))
        .bind(rows.as_ref().and_then(|r| r.history_columns().1))
        .bind(rows.is_some())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if inserted == 0 {
        return Ok(Ingested::duplicate(interval));
    }
    let current = rows.is_some();
    let keyframe = rows
        .as_ref()
        .and_then(|r| r.history.as_ref())
        .is_some_and(|h| h.keyframe);
    let supply_changes = rows
        .as_ref()
        .map(|r| r.supply_changes.clone())
        .unwrap_or_default();
    let mut findings_changed = false;
    if let Some(rows) = rows {
        store_structure_change(&mut tx, &r, &rows).await?;
        sqlx::query(sql::UPDATE_AFTER_REPORT)
            .bind(tenant)
            .bind(id)
            .bind(seq)
            .bind(trig)
            .bind(r.received_at_ms)
            .bind(r.observed_at_ms)
            .bind(r.structure.model())
            .bind(&rows.operating_json)
            .bind(&r.install_blocked)
            .bind(&rows.supplies_json)
            .execute(&mut *tx)
            .await?;
        store_history(&mut tx, std::iter::once((&r, rows.history.as_ref()))).await?;
        store_meter_rows(&mut tx, &r, &rows.meters).await?;
        if let Some((stmts, guard)) = judgement_update(&r, &state) {
            run_stmts(&mut tx, &stmts, guard).await?;
            findings_changed = true;
        }
    }
    tx.commit().await?;
    Ok(Ingested {
        duplicate: false,
        changes,
        report_interval_s: interval,
        current,
        findings_changed,
        supply_changes,
        keyframe,
    })
}

impl PgStore {
    /// Store a batch of error events (each sequence once) and move its epoch's watermark
    /// over the sequences now held without a gap, in one transaction; for each event whether
    /// it was new, and the watermark.
    ///
    /// Batches of one epoch run one after the other (an advisory lock on the epoch: memory
    /// only, no row written). The table is partitioned by the time an event was received, so
    /// its key cannot say "each sequence once" by itself: the watermark row says what is
    /// held (through `acked_seq` without a gap, nothing past `max_seq`), the events above
    /// the watermark are read only after a gap, the new events and the new watermark are
    /// decided here, and two plain statements write them. The hot path never reads the
    /// partitioned table: PostgreSQL plans such a statement over every partition's indexes,
    /// which costs more (about a millisecond) than running it.
    pub(crate) async fn insert_error_events(
        &self,
        key: &DeviceKey,
        boot_epoch: u64,
        trigger: &str,
        events: &[crate::NewErrorEvent],
        now_ms: i64,
    ) -> Result<(Vec<bool>, u64)> {
        let (tenant, id, epoch) = (key.tenant, key.device_id.as_str(), to_i64(boot_epoch));
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO error_watermarks (tenant_id, device_id, boot_epoch, acked_seq) \
             SELECT $1, $2, $3, 0 FROM (SELECT pg_advisory_xact_lock(hashtextextended( \
             $1::text || '/' || $2 || '/' || $3::text, 4242))) AS locked \
             ON CONFLICT (tenant_id, device_id, boot_epoch) DO NOTHING",
        )
        .bind(tenant)
        .bind(id)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT acked_seq, max_seq FROM error_watermarks WHERE tenant_id = $1 \
             AND device_id = $2 AND boot_epoch = $3",
        )
        .bind(tenant)
        .bind(id)
        .bind(epoch)
        .fetch_one(&mut *tx)
        .await?;
        let watermark: i64 = row.try_get(0)?;
        let max_seq: Option<i64> = row.try_get(1)?;
        // Something is held above the watermark only after a gap (or before `max_seq` was
        // kept): then, and only then, the events are read.
        let held: std::collections::BTreeSet<i64> = if max_seq.is_none_or(|m| m > watermark) {
            sqlx::query_scalar(
                "SELECT seq FROM error_events WHERE tenant_id = $1 AND device_id = $2 \
                 AND boot_epoch = $3 AND seq > $4",
            )
            .bind(tenant)
            .bind(id)
            .bind(epoch)
            .bind(watermark)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        } else {
            std::collections::BTreeSet::new()
        };
        // The batch's events not held yet, each sequence once.
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<&crate::NewErrorEvent> = events
            .iter()
            .filter(|e| {
                let seq = to_i64(e.seq);
                seq > watermark && !held.contains(&seq) && seen.insert(seq)
            })
            .collect();
        if !fresh.is_empty() {
            sqlx::query(
                "INSERT INTO error_events (tenant_id, device_id, boot_epoch, seq, at, slot, \
                 code, severity, counters, detail, alert, dropped, upload_trigger, received_at) \
                 SELECT $1, $2, $3, u.seq, u.at, u.slot, u.code, u.severity, u.counters, \
                 u.detail, u.alert, u.dropped, $4, $5 FROM unnest($6::bigint[], $7::bigint[], \
                 $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
                 $14::bigint[]) AS u(seq, at, slot, code, severity, counters, detail, alert, \
                 dropped)",
            )
            .bind(tenant)
            .bind(id)
            .bind(epoch)
            .bind(trigger)
            .bind(now_ms)
            .bind(fresh.iter().map(|e| to_i64(e.seq)).collect::<Vec<_>>())
            .bind(fresh.iter().map(|e| e.at_ms).collect::<Vec<_>>())
            .bind(fresh.iter().map(|e| e.slot.as_str()).collect::<Vec<_>>())
            .bind(fresh.iter().map(|e| e.code.as_str()).collect::<Vec<_>>())
            .bind(
                fresh
                    .iter()
                    .map(|e| e.severity.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                fresh
                    .iter()
                    .map(|e| e.counters_json.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                fresh
                    .iter()
                    .map(|e| e.detail.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                fresh
                    .iter()
                    .map(|e| e.alert_json.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                fresh
                    .iter()
                    .map(|e| i64::from(e.dropped))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
        }
        // The watermark moves over the run of sequences now held without a gap.
        let mut acked = watermark;
        let now_held: std::collections::BTreeSet<i64> = held
            .iter()
            .copied()
            .chain(fresh.iter().map(|e| to_i64(e.seq)))
            .collect();
        for seq in now_held {
            if seq == acked + 1 {
                acked = seq;
            } else if seq > acked + 1 {
                break;
            }
        }
        let highest = held
            .last()
            .copied()
            .into_iter()
            .chain(fresh.iter().map(|e| to_i64(e.seq)))
            .chain(max_seq)
            .max()
            .unwrap_or(watermark)
            .max(acked);
        let acked: i64 = if acked > watermark || max_seq != Some(highest) {
            sqlx::query_scalar(
                "UPDATE error_watermarks SET acked_seq = GREATEST(acked_seq, $4), \
                 max_seq = GREATEST(COALESCE(max_seq, 0), $5) \
                 WHERE tenant_id = $1 AND device_id = $2 AND boot_epoch = $3 \
                 RETURNING acked_seq",
            )
            .bind(tenant)
            .bind(id)
            .bind(epoch)
            .bind(acked)
            .bind(highest)
            .fetch_one(&mut *tx)
            .await?
        } else {
            acked
        };
        tx.commit().await?;
        let new: std::collections::HashSet<i64> = fresh.iter().map(|e| to_i64(e.seq)).collect();
        Ok((
            events
                .iter()
                .map(|e| new.contains(&to_i64(e.seq)))
                .collect(),
            to_u64(acked),
        ))
    }

    pub(crate) async fn run_groups(&self, groups: Vec<Group>) -> Result<Vec<Vec<u64>>> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(groups.len());
        for (stmts, guard) in &groups {
            out.push(run_stmts(&mut tx, stmts, *guard).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn select(
        &self,
        sql: Sql,
        params: Vec<Val>,
        types: &'static [Ty],
    ) -> Result<Vec<Vec<Val>>> {
        let rows = bind_all(sqlx::query(sql.postgres()), &params)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        Ok(match t {
                            Ty::Int => r.try_get::<Option<i64>, _>(i)?.map_or(Val::Null, Val::Int),
                            Ty::Text => r
                                .try_get::<Option<String>, _>(i)?
                                .map_or(Val::Null, Val::Text),
                        })
                    })
                    .collect()
            })
            .collect()
    }

    pub async fn close(&self) -> Result<()> {
        self.pool.close().await;
        Ok(())
    }

    pub async fn integrity_check(&self) -> Result<String> {
        // PostgreSQL keeps its own integrity; check that the schema answers.
        sqlx::query("SELECT 1 FROM fleetcare_migrations LIMIT 1")
            .execute(&self.pool)
            .await?;
        Ok("ok".to_owned())
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Bind parameters in order.
pub(crate) fn bind_all<'q>(mut q: PgQuery<'q>, params: &'q [Val]) -> PgQuery<'q> {
    for p in params {
        q = match p {
            Val::Null => q.bind(None::<i64>),
            Val::NullText => q.bind(None::<String>),
            Val::Int(i) => q.bind(*i),
            Val::Text(s) => q.bind(s.as_str()),
        };
    }
    q
}

/// Execute statements in order inside a transaction.
pub(crate) async fn run_stmts(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    stmts: &[Stmt],
    guard: Guard,
) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(stmts.len());
    for (i, st) in stmts.iter().enumerate() {
        let q = bind_all(sqlx::query(st.sql.postgres()), &st.params);
        let n = if st.returns_int {
            q.fetch_optional(&mut **tx)
                .await?
                .map(|r| r.try_get::<i64, _>(0))
                .transpose()?
                .map_or(0, to_u64)
        } else {
            q.execute(&mut **tx).await?.rows_affected()
        };
        out.push(n);
        if i == 0 && guard == Guard::First && n == 0 {
            break;
        }
    }
    Ok(out)
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..s + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
