//! PostgreSQL backend through sqlx. Each write is one transaction; PostgreSQL's own group
//! commit covers concurrent ones. Migrations run under an advisory lock so instances
//! starting together apply each once.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

use crate::exec::{Group, Guard, Sql, Stmt, Ty, Val};
use crate::{
    DeviceKey, DeviceRow, Enrollment, HistoryRecord, IngestRows, IngestState, Ingested, NewReport,
    Operator, Result, StoreError, TenantId, device_id, history_record, ingest_rows, is_newest,
    judgement_update, migrate, needs_old_structure, report_meta, sql, to_i64, to_u64,
};

/// Arbitrary, fixed: the advisory lock that serializes migrations across instances.
const MIGRATION_LOCK: i64 = 0x0f1e_e7ca_4e00_0001;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
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
        let store = PgStore { pool };
        store.migrate().await?;
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
            conn.execute(migrate::CREATE_TABLE).await.map_err(m)?;
            for (version, ddl) in migrate::POSTGRES {
                let done: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM fleetcare_migrations WHERE version = $1)",
                )
                .bind(version)
                .fetch_one(&mut *conn)
                .await
                .map_err(m)?;
                if done {
                    continue;
                }
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(m)?;
                tx.execute(*ddl).await.map_err(m)?;
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
                tx.commit().await.map_err(m)?;
                tracing::info!(version, "applied schema migration");
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

    pub async fn ensure_tenant(&self, name: &str, now_ms: i64) -> Result<TenantId> {
        sqlx::query(sql::INSERT_TENANT)
            .bind(name)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar(sql::TENANT_BY_NAME)
            .bind(name)
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn add_operator_token(
        &self,
        tenant: TenantId,
        name: &str,
        role: &str,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let n = sqlx::query(sql::INSERT_OPERATOR_TOKEN)
            .bind(token_hash)
            .bind(tenant)
            .bind(name)
            .bind(role)
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn operator_by_token(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<Operator>> {
        let row = sqlx::query(sql::OPERATOR_BY_TOKEN)
            .bind(token_hash)
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Operator {
                tenant: r.try_get(0)?,
                name: r.try_get(1)?,
                role: r.try_get(2)?,
            })
        })
        .transpose()
    }

    pub async fn add_enrollment_key(
        &self,
        tenant: TenantId,
        key_hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let n = sqlx::query(sql::INSERT_ENROLLMENT_KEY)
            .bind(key_hash)
            .bind(tenant)
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn enrollment_tenant(&self, key_hash: &str) -> Result<Option<TenantId>> {
        Ok(sqlx::query_scalar(sql::ENROLLMENT_TENANT)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn enroll_device(
        &self,
        key: &DeviceKey,
        model: &str,
        credential_hash: &str,
        current_credential_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<Enrollment> {
        let row: Option<Option<i64>> = sqlx::query_scalar(sql::ENROLL)
            .bind(key.tenant)
            .bind(key.device_id.as_str())
            .bind(model)
            .bind(credential_hash)
            .bind(now_ms)
            .bind(current_credential_hash.unwrap_or_default())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(interval) => Enrollment::Enrolled {
                report_interval_s: interval.map(to_u64),
            },
            None => Enrollment::Refused,
        })
    }

    pub async fn revoke_device(&self, key: &DeviceKey, now_ms: i64) -> Result<bool> {
        self.update_device(sql::REVOKE, key, now_ms).await
    }

    pub async fn allow_reenroll(&self, key: &DeviceKey, until_ms: i64) -> Result<bool> {
        self.update_device(sql::ALLOW_REENROLL, key, until_ms).await
    }

    /// Run an `UPDATE devices … WHERE tenant_id = $1 AND device_id = $2` with `$3 = value`.
    async fn update_device(&self, sql: &'static str, key: &DeviceKey, value: i64) -> Result<bool> {
        let n = sqlx::query(sql)
            .bind(key.tenant)
            .bind(key.device_id.as_str())
            .bind(value)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn device_by_credential(
        &self,
        credential_hash: &str,
    ) -> Result<Option<(DeviceKey, bool)>> {
        let row = sqlx::query(sql::DEVICE_BY_CREDENTIAL)
            .bind(credential_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                DeviceKey {
                    tenant: r.try_get(0)?,
                    device_id: device_id(r.try_get(1)?)?,
                },
                r.try_get(2)?,
            ))
        })
        .transpose()
    }

    pub async fn ingest_report(&self, r: NewReport) -> Result<Ingested> {
        let fingerprint = r.structure.fingerprint();
        let (tenant, id) = (r.key.tenant, r.key.device_id.as_str());
        let mut tx = self.pool.begin().await?;
        let state = sqlx::query(&format!("{} FOR UPDATE OF d", sql::INGEST_STATE))
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| -> Result<IngestState> {
                Ok(IngestState {
                    generation: row.try_get(0)?,
                    last_seq: row.try_get(1)?,
                    structure_hash: row.try_get(2)?,
                    report_interval_s: row.try_get(3)?,
                    findings_hash: row.try_get(4)?,
                    judged_revision: row.try_get(5)?,
                })
            })
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
                ))
            } else {
                None
            };
            Some(ingest_rows(&r, &state, old, fingerprint.clone())?)
        } else {
            None
        };
        let changes = rows.as_ref().map_or(0, IngestRows::changes);
        let inserted = sqlx::query(sql::INSERT_REPORT)
            .bind(tenant)
            .bind(id)
            .bind(state.generation)
            .bind(seq)
            .bind(trig)
            .bind(r.observed_at_ms)
            .bind(r.received_at_ms)
            .bind(&fingerprint)
            .bind(i64::from(changes))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Ok(Ingested {
                duplicate: true,
                changes: 0,
                report_interval_s: interval,
                current: false,
                findings_changed: false,
            });
        }
        let current = rows.is_some();
        let mut findings_changed = false;
        if let Some(rows) = rows {
            if let Some((structure_json, events)) = &rows.structure_change {
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
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(sql::COMPAT_STRUCTURE)
                    .bind(tenant)
                    .bind(id)
                    .bind(&rows.fingerprint)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql::UPDATE_STRUCTURE)
                    .bind(tenant)
                    .bind(id)
                    .bind(structure_json)
                    .bind(&rows.fingerprint)
                    .bind(r.observed_at_ms)
                    .bind(i64::try_from(r.structure.units().len()).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(sql::UPDATE_AFTER_REPORT)
                .bind(tenant)
                .bind(id)
                .bind(seq)
                .bind(trig)
                .bind(r.received_at_ms)
                .bind(r.observed_at_ms)
                .bind(r.structure.model())
                .bind(&rows.operating_json)
                .execute(&mut *tx)
                .await?;
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
        })
    }

    pub async fn list_devices(
        &self,
        tenant: TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeviceRow>> {
        let rows = sqlx::query(sql::LIST_DEVICES)
            .bind(tenant)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DeviceRow {
                    device_id: r.try_get(0)?,
                    model: r.try_get(1)?,
                    units: u32::try_from(r.try_get::<i64, _>(2)?).unwrap_or(u32::MAX),
                    last_report: report_meta(
                        r.try_get(3)?,
                        r.try_get(4)?,
                        r.try_get(5)?,
                        r.try_get(6)?,
                    )?,
                })
            })
            .collect()
    }

    pub async fn history(&self, key: &DeviceKey, limit: u32) -> Result<Vec<HistoryRecord>> {
        let rows = sqlx::query(sql::HISTORY)
            .bind(key.tenant)
            .bind(key.device_id.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .into_iter()
            .map(|r| {
                history_record(
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    pub async fn set_report_interval(&self, key: &DeviceKey, seconds: Option<u64>) -> Result<bool> {
        let n = sqlx::query(sql::SET_INTERVAL)
            .bind(key.tenant)
            .bind(key.device_id.as_str())
            .bind(seconds.map(to_i64))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn stored_seqs(&self, key: &DeviceKey) -> Result<Vec<u64>> {
        let seqs: Vec<i64> = sqlx::query_scalar(sql::STORED_SEQS)
            .bind(key.tenant)
            .bind(key.device_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(seqs.into_iter().map(to_u64).collect())
    }

    pub async fn count_devices(&self, tenant: TenantId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(sql::COUNT_DEVICES)
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        Ok(to_u64(n))
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
