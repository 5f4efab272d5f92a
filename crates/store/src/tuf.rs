//! TUF's roles in the store (ARCHITECTURE.md, "Software delivery with TUF roles"): every
//! version of every role of a tenant's repository, stored as the envelope that was signed,
//! and the center's online keys. What a document means is `fleetcare-trust`'s; the store only
//! keeps versions unique and answers "the newest" and "this version".

use crate::exec::{Guard, Stmt, Ty, sql};
use crate::{Result, Store, StoreError, TenantId, to_i64, to_u64};

/// One version of one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TufRecord {
    pub role: String,
    pub version: u64,
    /// The DSSE envelope, as signed.
    pub envelope: String,
    pub expires_at_ms: i64,
    pub published_by: String,
    pub published_at_ms: i64,
}

const COLUMNS: &[Ty] = &[Ty::Text, Ty::Int, Ty::Text, Ty::Int, Ty::Text, Ty::Int];

fn record(r: &[crate::exec::Val]) -> Result<TufRecord> {
    Ok(TufRecord {
        role: r[0].text()?,
        version: to_u64(r[1].int()?),
        envelope: r[2].text()?,
        expires_at_ms: r[3].int()?,
        published_by: r[4].text()?,
        published_at_ms: r[5].int()?,
    })
}

impl Store {
    /// Store one version of a role. `Ok(false)`: this very document was already there. A
    /// different document with the same version is refused (`Conflict`): a version, once
    /// published, means one thing.
    pub async fn put_tuf(&self, tenant: TenantId, r: &TufRecord) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "INSERT INTO tuf_metadata (tenant_id, role, version, envelope, expires_at, \
                     published_by, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant_id, role, version) DO NOTHING",
                    vec![
                        tenant.into(),
                        r.role.as_str().into(),
                        to_i64(r.version).into(),
                        r.envelope.as_str().into(),
                        r.expires_at_ms.into(),
                        r.published_by.as_str().into(),
                        r.published_at_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        if out.first().copied() == Some(1) {
            return Ok(true);
        }
        match self.tuf(tenant, &r.role, Some(r.version)).await? {
            Some(k) if k.envelope == r.envelope => Ok(false),
            _ => Err(StoreError::Conflict(format!(
                "{} version {} is already published",
                r.role, r.version
            ))),
        }
    }

    /// A role's newest version, or the given one.
    pub async fn tuf(
        &self,
        tenant: TenantId,
        role: &str,
        version: Option<u64>,
    ) -> Result<Option<TufRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT role, version, envelope, expires_at, published_by, published_at \
                     FROM tuf_metadata WHERE tenant_id = $1 AND role = $2 \
                     AND ($3 = 0 OR version = $3) ORDER BY version DESC LIMIT 1",
                ),
                vec![
                    tenant.into(),
                    role.into(),
                    to_i64(version.unwrap_or(0)).into(),
                ],
                COLUMNS,
            )
            .await?;
        rows.first().map(|r| record(r)).transpose()
    }

    /// The newest version of every role of a tenant, by role name.
    pub async fn tuf_newest(&self, tenant: TenantId) -> Result<Vec<TufRecord>> {
        self.select(
            sql(
                "SELECT m.role, m.version, m.envelope, m.expires_at, m.published_by, \
                 m.published_at FROM tuf_metadata m WHERE m.tenant_id = $1 AND m.version = \
                 (SELECT MAX(n.version) FROM tuf_metadata n WHERE n.tenant_id = m.tenant_id \
                 AND n.role = m.role) ORDER BY m.role",
            ),
            vec![tenant.into()],
            COLUMNS,
        )
        .await?
        .iter()
        .map(|r| record(r))
        .collect()
    }

    /// Tenants whose repository has a timestamp, with its newest expiry (for the center's
    /// re-signing before it runs out).
    pub async fn tuf_timestamps(&self) -> Result<Vec<(TenantId, i64)>> {
        self.select(
            sql(
                "SELECT tenant_id, MAX(expires_at) FROM tuf_metadata WHERE role = 'timestamp' \
                 GROUP BY tenant_id ORDER BY tenant_id",
            ),
            vec![],
            &[Ty::Int, Ty::Int],
        )
        .await?
        .iter()
        .map(|r| Ok((r[0].int()?, r[1].int()?)))
        .collect()
    }

    /// Forget the versions of an online role (`timestamp`, `snapshot`) below `keep_from`:
    /// no client asks for them (a client reads the newest timestamp, then the snapshot it
    /// names), and the center signs new ones twice a day. Root, targets and makers' roles are
    /// never forgotten: a device walks the root chain from its own version. The rows gone.
    pub async fn forget_tuf(&self, tenant: TenantId, role: &str, keep_from: u64) -> Result<u64> {
        if !matches!(role, "timestamp" | "snapshot") {
            return Err(StoreError::Conflict(format!(
                "{role} versions are kept: a client may need any of them"
            )));
        }
        let out = self
            .run(
                vec![Stmt::new(
                    "DELETE FROM tuf_metadata WHERE tenant_id = $1 AND role = $2 AND version < $3",
                    vec![tenant.into(), role.into(), to_i64(keep_from).into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0))
    }

    /// A tenant's online key for `role` (a key file), stored from `fresh` the first time (by
    /// whichever center instance gets there first; the others read it).
    pub async fn tuf_online_key(
        &self,
        tenant: TenantId,
        role: &str,
        fresh: &str,
        now_ms: i64,
    ) -> Result<String> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO tuf_online_keys (tenant_id, role, key_file, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, role) DO NOTHING",
                vec![tenant.into(), role.into(), fresh.into(), now_ms.into()],
            )],
            Guard::None,
        )
        .await?;
        let rows = self
            .select(
                sql("SELECT key_file FROM tuf_online_keys WHERE tenant_id = $1 AND role = $2"),
                vec![tenant.into(), role.into()],
                &[Ty::Text],
            )
            .await?;
        rows.first()
            .map(|r| r[0].text())
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt(format!("the online {role} key vanished")))
    }
}
