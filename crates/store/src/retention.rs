//! Retention in the store: each tenant's days per kind of data, and the pruner's statements —
//! each deletes at most a given number of one device's rows, through that device's own index,
//! so a transaction stays short whatever the backlog (see ARCHITECTURE.md, "Data lifecycle:
//! retention").

use std::collections::{BTreeMap, HashMap};

use crate::exec::{Guard, Stmt, Ty, sql};
use crate::{DeviceKey, Horizons, Result, Store, StoreError, TenantId, to_i64, to_u64};

/// The kinds of data with a retention, and their default days (0: kept forever).
pub const RETENTION_KINDS: &[(&str, u64)] = &[
    ("reports", 30),
    ("error_events", 180),
    ("history", 0),
    ("audit", 0),
];

/// Longest retention that can be set, in days (100 years).
pub const MAX_RETENTION_DAYS: u64 = 36_500;

impl Store {
    /// A tenant's retention per kind, defaults included.
    pub async fn retention(&self, tenant: TenantId) -> Result<BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, u64> = RETENTION_KINDS
            .iter()
            .map(|(k, d)| ((*k).to_owned(), *d))
            .collect();
        let rows = self
            .select(
                sql("SELECT kind, days FROM retention_settings WHERE tenant_id = $1"),
                vec![tenant.into()],
                &[Ty::Text, Ty::Int],
            )
            .await?;
        for r in rows {
            out.insert(r[0].text()?, to_u64(r[1].int()?));
        }
        Ok(out)
    }

    /// Every tenant's retention that differs from the defaults.
    pub async fn retention_overrides(&self) -> Result<HashMap<TenantId, BTreeMap<String, u64>>> {
        let rows = self
            .select(
                sql("SELECT tenant_id, kind, days FROM retention_settings"),
                vec![],
                &[Ty::Int, Ty::Text, Ty::Int],
            )
            .await?;
        let mut out: HashMap<TenantId, BTreeMap<String, u64>> = HashMap::new();
        for r in rows {
            out.entry(r[0].int()?)
                .or_default()
                .insert(r[1].text()?, to_u64(r[2].int()?));
        }
        Ok(out)
    }

    /// Set a tenant's retention of one kind (a known kind; days within bounds).
    pub async fn set_retention(&self, tenant: TenantId, kind: &str, days: u64) -> Result<()> {
        if !RETENTION_KINDS.iter().any(|(k, _)| *k == kind) || days > MAX_RETENTION_DAYS {
            return Err(StoreError::Corrupt(format!(
                "retention {kind} {days}: not a kind of data or too many days"
            )));
        }
        self.run(
            vec![Stmt::new(
                "INSERT INTO retention_settings (tenant_id, kind, days) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, kind) DO UPDATE SET days = excluded.days",
                vec![tenant.into(), kind.into(), to_i64(days).into()],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// Devices after `after` in key order (tenant, then id), at most `limit`: the pruner's
    /// walk over the fleet.
    pub async fn devices_after(
        &self,
        after: Option<&DeviceKey>,
        limit: u32,
    ) -> Result<Vec<DeviceKey>> {
        let (tenant, id) = match after {
            Some(k) => (k.tenant, k.device_id.as_str().to_owned()),
            None => (i64::MIN, String::new()),
        };
        let rows = self
            .select(
                sql("SELECT tenant_id, device_id FROM devices \
                     WHERE tenant_id > $1 OR (tenant_id = $1 AND device_id > $2) \
                     ORDER BY tenant_id, device_id LIMIT $3"),
                vec![tenant.into(), id.into(), i64::from(limit).into()],
                &[Ty::Int, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceKey {
                    tenant: r[0].int()?,
                    device_id: fleetcare_core::DeviceId::parse(&r[1].text()?)
                        .map_err(|e| StoreError::Corrupt(format!("device id: {e}")))?,
                })
            })
            .collect()
    }

    /// Prune, in one transaction, each device's data past its cutoffs: at most `limit`
    /// reports received before `reports_before` (never the device's newest, never one whose
    /// operating values wait for their day's rollup) and at most `limit` error events that
    /// happened before `events_before`, per statement. How many of each went, per device.
    ///
    /// Where old rows go with their partition (PostgreSQL, a kind with a horizon), only the
    /// rows the partitions will not take are deleted here: those in the default partition,
    /// and those after the horizon (a tenant that keeps less than the others).
    ///
    /// (A retry of events that were pruned stores nothing: what an epoch's watermark covers
    /// is never stored again.)
    pub async fn prune_devices(
        &self,
        work: &[PruneWork],
        limit: u32,
        horizons: &Horizons,
    ) -> Result<Vec<(u64, u64)>> {
        let limit = i64::from(limit);
        let split = |h: Option<i64>| if self.partitioned() { h } else { None };
        let (reports_h, events_h) = (split(horizons.reports), split(horizons.error_events));
        let mut groups = Vec::with_capacity(work.len());
        for w in work {
            let key = || vec![w.key.tenant.into(), w.key.device_id.as_str().into()];
            let mut stmts = Vec::with_capacity(4);
            let reports = |table: &str, after: Option<i64>| {
                let mut p = key();
                p.extend([
                    w.reports_before.unwrap_or(i64::MIN).into(),
                    limit.into(),
                    after.unwrap_or(i64::MIN).into(),
                ]);
                Stmt::owned(
                    format!(
                        "DELETE FROM {table} WHERE (tenant_id, device_id, generation, seq) IN ( \
                         SELECT r.tenant_id, r.device_id, r.generation, r.seq FROM {table} r \
                         JOIN devices d ON d.tenant_id = r.tenant_id AND d.device_id = r.device_id \
                         WHERE r.tenant_id = $1 AND r.device_id = $2 AND r.received_at < $3 \
                         AND r.received_at >= $5 AND r.op_vals IS NULL \
                         AND NOT (r.generation = d.generation AND r.seq = d.last_seq) LIMIT $4)"
                    ),
                    p,
                )
            };
            let events = |table: &str, after: Option<i64>| {
                let mut p = key();
                p.extend([
                    w.events_before.unwrap_or(i64::MIN).into(),
                    limit.into(),
                    after.unwrap_or(i64::MIN).into(),
                ]);
                Stmt::owned(
                    format!(
                        "DELETE FROM {table} WHERE (tenant_id, device_id, boot_epoch, seq) IN ( \
                         SELECT tenant_id, device_id, boot_epoch, seq FROM {table} \
                         WHERE tenant_id = $1 AND device_id = $2 AND at < $3 \
                         AND received_at >= $5 LIMIT $4)"
                    ),
                    p,
                )
            };
            // Which kind each statement deletes (true: reports). A statement over the whole
            // partitioned table is left out where its range is empty (a tenant that keeps as
            // long as the longest): PostgreSQL would plan it over every partition to find
            // nothing.
            let mut kinds = Vec::with_capacity(4);
            let empty = |before: Option<i64>, h: Option<i64>| {
                h.is_some_and(|h| before.is_none_or(|b| b <= h))
            };
            if !empty(w.reports_before, reports_h) {
                stmts.push(reports("reports", reports_h));
                kinds.push(true);
            }
            if !empty(w.events_before, events_h) {
                stmts.push(events("error_events", events_h));
                kinds.push(false);
            }
            if reports_h.is_some() {
                stmts.push(reports("reports_default", None));
                kinds.push(true);
            }
            if events_h.is_some() {
                stmts.push(events("error_events_default", None));
                kinds.push(false);
            }
            groups.push(((stmts, Guard::None), kinds));
        }
        let (groups, kinds): (Vec<_>, Vec<_>) = groups.into_iter().unzip();
        let out = self.run_groups(groups).await?;
        Ok(out
            .into_iter()
            .zip(kinds)
            .map(|(g, kinds)| {
                g.iter().zip(kinds).fold(
                    (0, 0),
                    |(r, e), (n, is_report)| {
                        if is_report { (r + n, e) } else { (r, e + n) }
                    },
                )
            })
            .collect())
    }
}

/// One device's cutoffs for [`Store::prune_devices`] (`None`: that kind is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneWork {
    pub key: DeviceKey,
    pub reports_before: Option<i64>,
    pub events_before: Option<i64>,
}
