//! What center instances sharing one database know of each other: which instances are alive
//! (their heartbeats), which instance each connected device is connected to (presence), and
//! which instance runs each background engine (leases). Times are the instances' own clocks
//! (kept by NTP); every check allows a grace several beats long.

use std::collections::HashMap;

use crate::exec::{Guard, Stmt, Ty, sql};
use crate::{DeviceKey, Result, Store, TenantId};

/// A device's presence: the instance it is connected to, and how (`push` or `poll`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub instance: String,
    pub via: String,
}

impl Store {
    /// An instance is alive: record (or refresh) its heartbeat.
    pub async fn heartbeat(&self, instance: &str, addr: &str, now_ms: i64) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO instances (id, addr, started_ms, heartbeat_ms) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms, addr = excluded.addr",
                vec![instance.into(), addr.into(), now_ms.into()],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// Instances whose heartbeat is not older than `alive_since_ms`: `(id, addr)`.
    pub async fn live_instances(&self, alive_since_ms: i64) -> Result<Vec<(String, String)>> {
        let rows = self
            .select(
                sql("SELECT id, addr FROM instances WHERE heartbeat_ms >= $1 ORDER BY id"),
                vec![alive_since_ms.into()],
                &[Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r[0].text()?, r[1].text()?)))
            .collect()
    }

    /// Forget instances that stopped beating before `alive_since_ms`, and the presence of
    /// the devices that were connected to them. Returns the instances forgotten.
    pub async fn forget_dead_instances(&self, alive_since_ms: i64) -> Result<u64> {
        let n = self
            .run(
                vec![
                    Stmt::new(
                        "DELETE FROM presence WHERE instance_id IN \
                         (SELECT id FROM instances WHERE heartbeat_ms < $1)",
                        vec![alive_since_ms.into()],
                    ),
                    Stmt::new(
                        "DELETE FROM instances WHERE heartbeat_ms < $1",
                        vec![alive_since_ms.into()],
                    ),
                ],
                Guard::None,
            )
            .await?;
        Ok(n.get(1).copied().unwrap_or(0))
    }

    /// An instance stops: it and its devices' presence go at once.
    pub async fn leave(&self, instance: &str) -> Result<()> {
        self.run(
            vec![
                Stmt::new(
                    "DELETE FROM presence WHERE instance_id = $1",
                    vec![instance.into()],
                ),
                Stmt::new("DELETE FROM instances WHERE id = $1", vec![instance.into()]),
                Stmt::new(
                    "DELETE FROM leases WHERE holder = $1",
                    vec![instance.into()],
                ),
            ],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// The device is connected to `instance` now (it moved there if it was elsewhere).
    pub async fn set_presence(
        &self,
        key: &DeviceKey,
        instance: &str,
        via: &str,
        now_ms: i64,
    ) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO presence (tenant_id, device_id, instance_id, via, since_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, device_id) DO UPDATE SET \
                 instance_id = excluded.instance_id, via = excluded.via, since_ms = excluded.since_ms",
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    instance.into(),
                    via.into(),
                    now_ms.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// The devices left `instance` (if they have not connected elsewhere meanwhile).
    pub async fn clear_presence(&self, keys: &[DeviceKey], instance: &str) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let stmts = keys
            .iter()
            .map(|k| {
                Stmt::new(
                    "DELETE FROM presence WHERE tenant_id = $1 AND device_id = $2 AND instance_id = $3",
                    vec![k.tenant.into(), k.device_id.as_str().into(), instance.into()],
                )
            })
            .collect();
        self.run(stmts, Guard::None).await?;
        Ok(())
    }

    /// Where the device is connected, if to an instance alive since `alive_since_ms`.
    pub async fn presence(&self, key: &DeviceKey, alive_since_ms: i64) -> Result<Option<Presence>> {
        let rows = self
            .select(
                sql("SELECT p.instance_id, p.via FROM presence p JOIN instances i ON i.id = p.instance_id \
                     WHERE p.tenant_id = $1 AND p.device_id = $2 AND i.heartbeat_ms >= $3"),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    alive_since_ms.into(),
                ],
                &[Ty::Text, Ty::Text],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(Presence {
                    instance: r[0].text()?,
                    via: r[1].text()?,
                })
            })
            .transpose()
    }

    /// Every connected device of a tenant, by id, with where it is connected.
    pub async fn presence_of_tenant(
        &self,
        tenant: TenantId,
        alive_since_ms: i64,
    ) -> Result<HashMap<String, Presence>> {
        let rows = self
            .select(
                sql("SELECT p.device_id, p.instance_id, p.via FROM presence p JOIN instances i ON i.id = p.instance_id \
                     WHERE p.tenant_id = $1 AND i.heartbeat_ms >= $2"),
                vec![tenant.into(), alive_since_ms.into()],
                &[Ty::Text, Ty::Text, Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r[0].text()?,
                    Presence {
                        instance: r[1].text()?,
                        via: r[2].text()?,
                    },
                ))
            })
            .collect()
    }

    /// Take or keep the lease `name` until `until_ms`: true if `holder` holds it now (it was
    /// free, expired, or already its own). One row, one statement: two instances asking at
    /// once cannot both get it.
    pub async fn lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let n = self
            .run(
                vec![Stmt::new(
                    "INSERT INTO leases (name, holder, expires_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
                     WHERE leases.holder = excluded.holder OR leases.expires_ms < $4",
                    vec![name.into(), holder.into(), until_ms.into(), now_ms.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(n.first().copied().unwrap_or(0) > 0)
    }

    /// Give the lease up (if `holder` holds it).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                vec![name.into(), holder.into()],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// Who holds the lease `name` at `now_ms`, if anyone.
    pub async fn lease_holder(&self, name: &str, now_ms: i64) -> Result<Option<String>> {
        let rows = self
            .select(
                sql("SELECT holder FROM leases WHERE name = $1 AND expires_ms >= $2"),
                vec![name.into(), now_ms.into()],
                &[Ty::Text],
            )
            .await?;
        rows.first().map(|r| r[0].text()).transpose()
    }

    /// The catalog revision the tenant's fleet was last judged against in full.
    pub async fn judged_revision(&self, tenant: TenantId) -> Result<Option<u64>> {
        let rows = self
            .select(
                sql("SELECT revision FROM catalog_judged WHERE tenant_id = $1"),
                vec![tenant.into()],
                &[Ty::Int],
            )
            .await?;
        rows.first()
            .map(|r| Ok(crate::to_u64(r[0].int()?)))
            .transpose()
    }

    /// The tenant's fleet has been judged in full against `revision`.
    pub async fn set_judged_revision(
        &self,
        tenant: TenantId,
        revision: u64,
        now_ms: i64,
    ) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO catalog_judged (tenant_id, revision, judged_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET revision = excluded.revision, judged_ms = excluded.judged_ms",
                vec![
                    tenant.into(),
                    i64::try_from(revision).unwrap_or(i64::MAX).into(),
                    now_ms.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }
}
