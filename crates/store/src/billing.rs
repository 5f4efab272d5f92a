//! Meter reads in the store: the billing meters of readings near a month's edge
//! (`meter_edge_reads`), billing meters that went backwards (`meter_resets`), and each
//! tenant's meter-read schedule. Ingest writes the first two with the report
//! (`lib.rs`, `meter_rows`); the center computes reads from what this module returns (see
//! ARCHITECTURE.md, "Meter reads for billing").

use std::collections::BTreeMap;

use fleetcare_core::meters;

use crate::exec::{Stmt, Ty, Val, sql};
use crate::{DeviceKey, Result, Store, StoreError, TenantId};

/// A reading: when it was taken and its billing meters (by operating name).
pub type Reading = (i64, BTreeMap<String, f64>);

/// A device a meter read covers.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadDevice {
    pub device_id: String,
    pub model: String,
    pub site: Option<String>,
    /// Its newest reading (billing meters only), if it ever sent one.
    pub newest: Option<Reading>,
}

/// The readings either side of an edge: the newest at or before it, the first after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeNeighbours {
    pub before: Option<Reading>,
    pub after: Option<Reading>,
}

/// A billing meter that went backwards.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterReset {
    pub at_ms: i64,
    /// Its operating name (`pages_total`, …).
    pub name: String,
    pub before: i64,
    pub after: i64,
}

/// Only the billing meters of operating info.
fn billing(vals: BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    vals.into_iter()
        .filter(|(k, _)| meters::billing_meter(k).is_some())
        .collect()
}

fn reading_of(r: &[Val]) -> Result<Reading> {
    let vals: BTreeMap<String, f64> = serde_json::from_str(&r[1].text()?)
        .map_err(|e| StoreError::Corrupt(format!("meter reading: {e}")))?;
    Ok((r[0].int()?, billing(vals)))
}

impl Store {
    /// The devices of a tenant (of a model, if given) after `after` by id, at most `limit`,
    /// with their site and newest reading.
    pub async fn meter_read_devices(
        &self,
        tenant: TenantId,
        model: Option<&str>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<ReadDevice>> {
        let mut params: Vec<Val> = vec![tenant.into(), after.into(), limit.into()];
        let text = match model {
            Some(m) => {
                params.push(m.into());
                "SELECT d.device_id, d.model, l.site, d.last_observed_at, d.operating \
                 FROM devices d LEFT JOIN device_labels l ON l.tenant_id = d.tenant_id \
                 AND l.device_id = d.device_id WHERE d.tenant_id = $1 AND d.device_id > $2 \
                 AND d.model = $4 ORDER BY d.device_id LIMIT $3"
            }
            None => {
                "SELECT d.device_id, d.model, l.site, d.last_observed_at, d.operating \
                 FROM devices d LEFT JOIN device_labels l ON l.tenant_id = d.tenant_id \
                 AND l.device_id = d.device_id WHERE d.tenant_id = $1 AND d.device_id > $2 \
                 ORDER BY d.device_id LIMIT $3"
            }
        };
        self.select(
            sql(text),
            params,
            &[Ty::Text, Ty::Text, Ty::Text, Ty::Int, Ty::Text],
        )
        .await?
        .iter()
        .map(|r| {
            let newest =
                match (r[3].opt_int()?, r[4].opt_text()?) {
                    (Some(at), Some(json)) => Some((
                        at,
                        billing(serde_json::from_str(&json).map_err(|e| {
                            StoreError::Corrupt(format!("stored operating info: {e}"))
                        })?),
                    )),
                    _ => None,
                };
            Ok(ReadDevice {
                device_id: r[0].text()?,
                model: r[1].text()?,
                site: r[2].opt_text()?,
                newest,
            })
        })
        .collect()
    }

    /// The readings either side of `edge_ms`: from the edge reads kept at ingest; the
    /// device's newest reading when it has sent none since the edge; the operating history of
    /// the days around the edge when neither tells (readings from before edge reads were kept).
    pub async fn edge_neighbours(
        &self,
        key: &DeviceKey,
        edge_ms: i64,
        newest: Option<&Reading>,
    ) -> Result<EdgeNeighbours> {
        let one = |text: &'static str| {
            self.select(
                sql(text),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    edge_ms.into(),
                ],
                &[Ty::Int, Ty::Text],
            )
        };
        let before = one(
            "SELECT at, vals FROM meter_edge_reads WHERE tenant_id = $1 AND device_id = $2 \
             AND at <= $3 ORDER BY at DESC LIMIT 1",
        )
        .await?;
        let after = one(
            "SELECT at, vals FROM meter_edge_reads WHERE tenant_id = $1 AND device_id = $2 \
             AND at > $3 ORDER BY at LIMIT 1",
        )
        .await?;
        let mut n = EdgeNeighbours {
            before: before.first().map(|r| reading_of(r)).transpose()?,
            after: after.first().map(|r| reading_of(r)).transpose()?,
        };
        if n.after.is_none() && newest.is_some_and(|nw| nw.0 <= edge_ms) {
            // Nothing since the edge: the newest reading is the last before it.
            n.before = newest.cloned();
        } else if (n.before.is_none() || n.after.is_none()) && newest.is_some() {
            let history = self.history_neighbours(key, edge_ms).await?;
            n.before = n.before.or(history.before);
            n.after = n.after.or(history.after);
        }
        Ok(n)
    }

    /// The readings either side of an edge from the operating history of the days around it
    /// (raw points replayed, or daily rollups: a day's first value at its start, its last at
    /// its end).
    async fn history_neighbours(&self, key: &DeviceKey, edge_ms: i64) -> Result<EdgeNeighbours> {
        let h = self
            .operating_history(
                key,
                edge_ms - 2 * meters::DAY_MS,
                edge_ms + 2 * meters::DAY_MS,
            )
            .await?;
        let mut readings: Vec<Reading> = meters::replay(&h.points)
            .into_iter()
            .map(|(at, v)| (at, billing(v)))
            .collect();
        for (day, spans) in &h.daily {
            let pick = |f: fn(&meters::Span) -> f64| {
                billing(spans.iter().map(|(k, s)| (k.clone(), f(s))).collect())
            };
            readings.push((day * meters::DAY_MS, pick(|s| s.first)));
            readings.push(((day + 1) * meters::DAY_MS - 1, pick(|s| s.last)));
        }
        readings.retain(|(_, v)| !v.is_empty());
        readings.sort_by_key(|(at, _)| *at);
        Ok(EdgeNeighbours {
            before: readings
                .iter()
                .rev()
                .find(|(at, _)| *at <= edge_ms)
                .cloned(),
            after: readings.iter().find(|(at, _)| *at > edge_ms).cloned(),
        })
    }

    /// The billing meters of a device that went backwards in `(from_ms, to_ms]`, oldest first.
    pub async fn meter_resets(
        &self,
        key: &DeviceKey,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MeterReset>> {
        self.select(
            sql(
                "SELECT at, name, before, after FROM meter_resets WHERE tenant_id = $1 \
                 AND device_id = $2 AND at > $3 AND at <= $4 ORDER BY at, name",
            ),
            vec![
                key.tenant.into(),
                key.device_id.as_str().into(),
                from_ms.into(),
                to_ms.into(),
            ],
            &[Ty::Int, Ty::Text, Ty::Int, Ty::Int],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(MeterReset {
                at_ms: r[0].int()?,
                name: r[1].text()?,
                before: r[2].int()?,
                after: r[3].int()?,
            })
        })
        .collect()
    }

    /// Whether the tenant's meter-read schedule is on (it is unless turned off).
    pub async fn meter_read_schedule(&self, tenant: TenantId) -> Result<bool> {
        let rows = self
            .select(
                sql("SELECT enabled FROM meter_read_schedules WHERE tenant_id = $1"),
                vec![tenant.into()],
                &[Ty::Int],
            )
            .await?;
        Ok(rows.first().map_or(Ok(1), |r| r[0].int())? != 0)
    }

    /// Turn a tenant's meter-read schedule on or off.
    pub async fn set_meter_read_schedule(&self, tenant: TenantId, enabled: bool) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO meter_read_schedules (tenant_id, enabled) VALUES ($1, $2) \
                 ON CONFLICT (tenant_id) DO UPDATE SET enabled = excluded.enabled",
                vec![tenant.into(), i64::from(enabled).into()],
            )],
            crate::exec::Guard::None,
        )
        .await?;
        Ok(())
    }

    /// Every tenant with devices whose meter-read schedule is on, and its devices' ids with
    /// their sites.
    pub async fn meter_read_targets(&self) -> Result<Vec<(TenantId, String, Option<String>)>> {
        self.select(
            sql("SELECT d.tenant_id, d.device_id, l.site FROM devices d \
                 LEFT JOIN device_labels l ON l.tenant_id = d.tenant_id \
                 AND l.device_id = d.device_id \
                 LEFT JOIN meter_read_schedules s ON s.tenant_id = d.tenant_id \
                 WHERE s.enabled IS NULL OR s.enabled <> 0 ORDER BY d.tenant_id, d.device_id"),
            vec![],
            &[Ty::Int, Ty::Text, Ty::Text],
        )
        .await?
        .iter()
        .map(|r| Ok((r[0].int()?, r[1].text()?, r[2].opt_text()?)))
        .collect()
    }
}
