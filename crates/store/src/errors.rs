//! Devices' error logs in the store: each event once, per-epoch watermarks of what is held
//! contiguously, and the operator's view.

use crate::exec::{Guard, Stmt, Ty, sql};
use crate::{DeviceKey, Result, Store, TenantId, to_i64, to_u64};

/// An event to store (or a tombstone for one the device dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct NewErrorEvent {
    pub seq: u64,
    pub at_ms: i64,
    pub slot: String,
    pub code: String,
    pub severity: String,
    pub counters_json: Option<String>,
    pub detail: Option<String>,
    pub alert_json: Option<String>,
    pub dropped: bool,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEventRecord {
    pub boot_epoch: u64,
    pub seq: u64,
    pub at_ms: i64,
    pub slot: String,
    pub code: String,
    pub severity: String,
    pub counters_json: Option<String>,
    pub detail: Option<String>,
    pub alert_json: Option<String>,
    pub trigger: String,
    pub received_at_ms: i64,
}

/// What storing a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBatchStored {
    pub stored: u64,
    /// For each event of the batch: stored now (`false`: held before, a retry).
    pub new: Vec<bool>,
    pub duplicates: u64,
    /// Every event of the epoch up to here is held.
    pub acked_seq: u64,
}

/// How far the contiguous run starting after `from` goes in `seqs` (sorted, distinct).
pub fn contiguous(from: u64, seqs: &[u64]) -> u64 {
    let mut at = from;
    for &s in seqs {
        if s == at + 1 {
            at = s;
        } else if s > at + 1 {
            break;
        }
    }
    at
}

impl Store {
    /// Store a batch of one boot epoch (durably, each event once) and advance the epoch's
    /// watermark over every sequence now held without a gap.
    pub async fn store_error_batch(
        &self,
        key: &DeviceKey,
        boot_epoch: u64,
        trigger: &str,
        events: &[NewErrorEvent],
        now_ms: i64,
    ) -> Result<ErrorBatchStored> {
        match self {
            Store::Postgres(pg) => {
                // One multi-row statement instead of a round trip per event, and the
                // watermark moved in the same transaction.
                let (new, acked) = pg
                    .insert_error_events(key, boot_epoch, trigger, events, now_ms)
                    .await?;
                let stored = new.iter().filter(|n| **n).count() as u64;
                Ok(ErrorBatchStored {
                    stored,
                    new,
                    duplicates: events.len() as u64 - stored,
                    acked_seq: acked,
                })
            }
            Store::Sqlite(lite) => {
                let (key, trigger, events) = (key.clone(), trigger.to_owned(), events.to_vec());
                lite.write(move |c| {
                    sqlite_error_batch(c, &key, boot_epoch, &trigger, &events, now_ms)
                })
                .await
            }
        }
    }

    /// Whether the store was restored and some device's error log may continue past a gap.
    pub async fn has_restored_watermarks(&self) -> Result<bool> {
        let rows = self
            .select(
                sql("SELECT tenant_id FROM restored_watermarks LIMIT 1"),
                vec![],
                &[Ty::Int],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Mark every error-log watermark as restored (a PostgreSQL database just restored with
    /// pg_restore; the embedded store's restore does it itself). How many.
    pub async fn mark_restored_watermarks(&self) -> Result<u64> {
        let out = self
            .run(
                vec![Stmt::new(crate::backup::MARK_RESTORED, vec![])],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0))
    }

    /// The first batch of a restored epoch: if it starts past the watermark, the events in
    /// between were acknowledged before the restore and are gone; the watermark moves over
    /// them and the mark goes. The gap, if there was one.
    pub async fn take_restored_gap(
        &self,
        key: &DeviceKey,
        boot_epoch: u64,
        first_seq: u64,
    ) -> Result<Option<(u64, u64)>> {
        let before = self.watermark(key, boot_epoch).await?;
        let (tenant, id, epoch) = (key.tenant, key.device_id.as_str(), to_i64(boot_epoch));
        let out = self
            .run(
                vec![
                    Stmt::new(
                        "DELETE FROM restored_watermarks WHERE tenant_id = $1 AND device_id = $2 \
                         AND boot_epoch = $3",
                        vec![tenant.into(), id.into(), epoch.into()],
                    ),
                    Stmt::new(
                        "UPDATE error_watermarks SET acked_seq = $4 WHERE tenant_id = $1 \
                         AND device_id = $2 AND boot_epoch = $3 AND acked_seq < $4",
                        vec![
                            tenant.into(),
                            id.into(),
                            epoch.into(),
                            to_i64(first_seq.saturating_sub(1)).into(),
                        ],
                    ),
                ],
                Guard::First,
            )
            .await?;
        Ok((out.get(1).copied() == Some(1)).then(|| (before + 1, first_seq - 1)))
    }

    /// The epoch's watermark (0: nothing held yet).
    pub async fn watermark(&self, key: &DeviceKey, boot_epoch: u64) -> Result<u64> {
        let rows = self
            .select(
                sql(
                    "SELECT acked_seq FROM error_watermarks WHERE tenant_id = $1 \
                     AND device_id = $2 AND boot_epoch = $3",
                ),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    to_i64(boot_epoch).into(),
                ],
                &[Ty::Int],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r[0].int().map(to_u64))
    }

    /// A device's events (not tombstones), newest first, at or after `since_ms`, of `code`
    /// when given, at most `limit`.
    pub async fn error_events(
        &self,
        key: &DeviceKey,
        since_ms: i64,
        code: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ErrorEventRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT boot_epoch, seq, at, slot, code, severity, counters, detail, alert, \
                     upload_trigger, received_at FROM error_events WHERE tenant_id = $1 \
                     AND device_id = $2 AND at >= $3 AND dropped = 0 AND ($4 = '' OR code = $4) \
                     ORDER BY at DESC, boot_epoch DESC, seq DESC LIMIT $5",
                ),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    since_ms.into(),
                    code.unwrap_or_default().into(),
                    i64::from(limit).into(),
                ],
                &[
                    Ty::Int,
                    Ty::Int,
                    Ty::Int,
                    Ty::Text,
                    Ty::Text,
                    Ty::Text,
                    Ty::Text,
                    Ty::Text,
                    Ty::Text,
                    Ty::Text,
                    Ty::Int,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ErrorEventRecord {
                    boot_epoch: to_u64(r[0].int()?),
                    seq: to_u64(r[1].int()?),
                    at_ms: r[2].int()?,
                    slot: r[3].text()?,
                    code: r[4].text()?,
                    severity: r[5].text()?,
                    counters_json: r[6].opt_text()?,
                    detail: r[7].opt_text()?,
                    alert_json: r[8].opt_text()?,
                    trigger: r[9].text()?,
                    received_at_ms: r[10].int()?,
                })
            })
            .collect()
    }

    /// How many events the device reported as dropped.
    pub async fn dropped_error_events(&self, key: &DeviceKey) -> Result<u64> {
        let rows = self
            .select(
                sql(
                    "SELECT COUNT(*) FROM error_events WHERE tenant_id = $1 AND device_id = $2 \
                     AND dropped = 1",
                ),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[Ty::Int],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r[0].int().map(to_u64))
    }

    /// Every device's tenant-wide error count (for tests and the CLI's summaries).
    pub async fn count_error_events(&self, tenant: TenantId) -> Result<u64> {
        let rows = self
            .select(
                sql("SELECT COUNT(*) FROM error_events WHERE tenant_id = $1 AND dropped = 0"),
                vec![tenant.into()],
                &[Ty::Int],
            )
            .await?;
        rows.first().map_or(Ok(0), |r| r[0].int().map(to_u64))
    }
}

/// A periodic request for error logs the center keeps: for one device (`scope` `device`) or
/// every device of a model (`model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorSchedule {
    pub tenant: TenantId,
    pub scope: String,
    pub target: String,
    pub interval_s: u64,
    pub next_at_ms: i64,
}

impl Store {
    /// Set (or replace) a schedule; the first request is one interval from now.
    pub async fn set_error_schedule(
        &self,
        tenant: TenantId,
        scope: &str,
        target: &str,
        interval_s: u64,
        now_ms: i64,
    ) -> Result<()> {
        let next = now_ms
            .saturating_add(i64::try_from(interval_s.saturating_mul(1000)).unwrap_or(i64::MAX));
        self.run(
            vec![Stmt::new(
                "INSERT INTO error_schedules (tenant_id, scope, target, interval_s, next_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, scope, target) DO UPDATE \
                 SET interval_s = excluded.interval_s, next_at = excluded.next_at",
                vec![
                    tenant.into(),
                    scope.into(),
                    target.into(),
                    to_i64(interval_s).into(),
                    next.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// Remove a schedule; whether there was one.
    pub async fn remove_error_schedule(
        &self,
        tenant: TenantId,
        scope: &str,
        target: &str,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "DELETE FROM error_schedules WHERE tenant_id = $1 AND scope = $2 AND target = $3",
                    vec![tenant.into(), scope.into(), target.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }

    /// A tenant's schedules.
    pub async fn error_schedules(&self, tenant: TenantId) -> Result<Vec<ErrorSchedule>> {
        let rows = self
            .select(
                sql(
                    "SELECT tenant_id, scope, target, interval_s, next_at FROM error_schedules \
                     WHERE tenant_id = $1 ORDER BY scope, target",
                ),
                vec![tenant.into()],
                &[Ty::Int, Ty::Text, Ty::Text, Ty::Int, Ty::Int],
            )
            .await?;
        rows.iter().map(|r| schedule(r)).collect()
    }

    /// Schedules due at `now_ms` (at most 100), each moved to its next time; the ones this
    /// call took (another center instance may take others).
    pub async fn take_due_error_schedules(&self, now_ms: i64) -> Result<Vec<ErrorSchedule>> {
        let rows = self
            .select(
                sql(
                    "SELECT tenant_id, scope, target, interval_s, next_at FROM error_schedules \
                     WHERE next_at <= $1 ORDER BY next_at LIMIT 100",
                ),
                vec![now_ms.into()],
                &[Ty::Int, Ty::Text, Ty::Text, Ty::Int, Ty::Int],
            )
            .await?;
        let due: Vec<ErrorSchedule> = rows.iter().map(|r| schedule(r)).collect::<Result<_>>()?;
        if due.is_empty() {
            return Ok(due);
        }
        let stmts = due
            .iter()
            .map(|d| {
                Stmt::new(
                    "UPDATE error_schedules SET next_at = $5 WHERE tenant_id = $1 AND scope = $2 \
                     AND target = $3 AND next_at = $4",
                    vec![
                        d.tenant.into(),
                        (&d.scope).into(),
                        (&d.target).into(),
                        d.next_at_ms.into(),
                        now_ms
                            .saturating_add(
                                i64::try_from(d.interval_s.saturating_mul(1000))
                                    .unwrap_or(i64::MAX),
                            )
                            .into(),
                    ],
                )
            })
            .collect();
        let out = self.run(stmts, Guard::None).await?;
        Ok(due
            .into_iter()
            .zip(out)
            .filter(|(_, n)| *n == 1)
            .map(|(d, _)| d)
            .collect())
    }

    /// Ids of a tenant's devices of a model.
    pub async fn device_ids_of_model(&self, tenant: TenantId, model: &str) -> Result<Vec<String>> {
        let rows = self
            .select(
                sql("SELECT device_id FROM devices WHERE tenant_id = $1 AND model = $2 ORDER BY device_id"),
                vec![tenant.into(), model.into()],
                &[Ty::Text],
            )
            .await?;
        rows.iter().map(|r| r[0].text()).collect()
    }
}

fn schedule(r: &[crate::exec::Val]) -> Result<ErrorSchedule> {
    Ok(ErrorSchedule {
        tenant: r[0].int()?,
        scope: r[1].text()?,
        target: r[2].text()?,
        interval_s: to_u64(r[3].int()?),
        next_at_ms: r[4].int()?,
    })
}

/// The embedded store's error batch, whole on the writer inside one group commit: the
/// watermark read, the fresh events inserted, the watermark moved over what is now held
/// without a gap. One job, no reads on the pool: the writer sees every batch before it.
pub(crate) fn sqlite_error_batch(
    c: &rusqlite::Connection,
    key: &DeviceKey,
    boot_epoch: u64,
    trigger: &str,
    events: &[NewErrorEvent],
    now_ms: i64,
) -> Result<ErrorBatchStored> {
    use rusqlite::{OptionalExtension, params};
    let (tenant, id, epoch) = (key.tenant, key.device_id.as_str(), to_i64(boot_epoch));
    let held: Option<i64> = c
        .prepare_cached(
            "SELECT acked_seq FROM error_watermarks WHERE tenant_id = ?1 AND device_id = ?2 \
             AND boot_epoch = ?3",
        )?
        .query_row(params![tenant, id, epoch], |r| r.get(0))
        .optional()?;
    let watermark = match held {
        Some(w) => w,
        None => {
            c.prepare_cached(
                "INSERT INTO error_watermarks (tenant_id, device_id, boot_epoch, acked_seq) \
                 VALUES (?1, ?2, ?3, 0)",
            )?
            .execute(params![tenant, id, epoch])?;
            0
        }
    };
    // What the watermark covers was stored before (and may have been pruned since): never
    // stored again.
    let mut insert = c.prepare_cached(
        "INSERT INTO error_events (tenant_id, device_id, boot_epoch, seq, at, slot, code, \
         severity, counters, detail, alert, dropped, upload_trigger, received_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
         ON CONFLICT (tenant_id, device_id, boot_epoch, seq) DO NOTHING",
    )?;
    let mut new = Vec::with_capacity(events.len());
    for e in events {
        let seq = to_i64(e.seq);
        let stored = seq > watermark
            && insert.execute(params![
                tenant,
                id,
                epoch,
                seq,
                e.at_ms,
                e.slot,
                e.code,
                e.severity,
                e.counters_json,
                e.detail,
                e.alert_json,
                e.dropped,
                trigger,
                now_ms
            ])? > 0;
        new.push(stored);
    }
    let stored = new.iter().filter(|n| **n).count() as u64;
    let mut acked = to_u64(watermark);
    let mut above = c.prepare_cached(
        "SELECT seq FROM error_events WHERE tenant_id = ?1 AND device_id = ?2 \
         AND boot_epoch = ?3 AND seq > ?4 ORDER BY seq LIMIT 10000",
    )?;
    loop {
        let seqs: Vec<u64> = above
            .query_map(params![tenant, id, epoch, to_i64(acked)], |r| {
                r.get::<_, i64>(0)
            })?
            .map(|s| s.map(to_u64))
            .collect::<rusqlite::Result<_>>()?;
        let next = contiguous(acked, &seqs);
        let whole = seqs.len() == 10000 && next == *seqs.last().unwrap_or(&0);
        acked = next;
        if !whole {
            break;
        }
    }
    if acked > to_u64(watermark) {
        c.prepare_cached(
            "UPDATE error_watermarks SET acked_seq = ?4 WHERE tenant_id = ?1 \
             AND device_id = ?2 AND boot_epoch = ?3",
        )?
        .execute(params![tenant, id, epoch, to_i64(acked)])?;
    }
    Ok(ErrorBatchStored {
        stored,
        new,
        duplicates: events.len() as u64 - stored,
        acked_seq: acked,
    })
}

#[cfg(test)]
mod tests {
    use super::contiguous;

    #[test]
    fn the_watermark_stops_at_the_first_gap() {
        assert_eq!(contiguous(0, &[1, 2, 3]), 3);
        assert_eq!(contiguous(0, &[2, 3]), 0);
        assert_eq!(contiguous(3, &[4, 6, 7]), 4);
        assert_eq!(contiguous(5, &[]), 5);
    }
}
