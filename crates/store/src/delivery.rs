//! Software delivery in the store: release key lists, signed releases and the artifacts the
//! center holds. The documents are stored as the signed envelopes they arrived as; the center
//! never re-serializes what was signed.

use crate::exec::{Guard, Stmt, Ty, sql};
use crate::{Result, Store, StoreError, TenantId, to_i64, to_u64};

/// A published release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub product: String,
    pub version: String,
    pub maker: String,
    pub counter: u64,
    /// The DSSE envelope, as published.
    pub envelope: String,
    /// `[{name, size, sha256}]`, from the verified manifest.
    pub artifacts_json: String,
    pub published_by: String,
    pub published_at_ms: i64,
}

/// A published key list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListRecord {
    pub version: u64,
    pub envelope: String,
    pub published_by: String,
    pub published_at_ms: i64,
}

const RELEASE_COLUMNS: &[Ty] = &[
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
];

fn release(r: &[crate::exec::Val]) -> Result<ReleaseRecord> {
    Ok(ReleaseRecord {
        product: r[0].text()?,
        version: r[1].text()?,
        maker: r[2].text()?,
        counter: to_u64(r[3].int()?),
        envelope: r[4].text()?,
        artifacts_json: r[5].text()?,
        published_by: r[6].text()?,
        published_at_ms: r[7].int()?,
    })
}

impl Store {
    /// Store a key list. `Ok(false)`: this very list was already there. A different list with
    /// the same version is refused.
    pub async fn publish_key_list(
        &self,
        tenant: TenantId,
        version: u64,
        envelope: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "INSERT INTO key_lists (tenant_id, version, envelope, published_by, \
                     published_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (tenant_id, version) DO NOTHING",
                    vec![
                        tenant.into(),
                        to_i64(version).into(),
                        envelope.into(),
                        by.into(),
                        now_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        if out.first().copied() == Some(1) {
            return Ok(true);
        }
        match self.key_list(tenant, Some(version)).await? {
            Some(k) if k.envelope == envelope => Ok(false),
            _ => Err(StoreError::Conflict(format!(
                "a different key list with version {version} is already published"
            ))),
        }
    }

    /// A key list: the newest, or the given version.
    pub async fn key_list(
        &self,
        tenant: TenantId,
        version: Option<u64>,
    ) -> Result<Option<KeyListRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT version, envelope, published_by, published_at FROM key_lists \
                     WHERE tenant_id = $1 AND ($2 = 0 OR version = $2) \
                     ORDER BY version DESC LIMIT 1",
                ),
                vec![tenant.into(), to_i64(version.unwrap_or(0)).into()],
                &[Ty::Int, Ty::Text, Ty::Text, Ty::Int],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(KeyListRecord {
                    version: to_u64(r[0].int()?),
                    envelope: r[1].text()?,
                    published_by: r[2].text()?,
                    published_at_ms: r[3].int()?,
                })
            })
            .transpose()
    }

    /// Store a release. `Ok(false)`: this very release was already there. A different release
    /// of the same product and version is refused: a version, once published, means one thing.
    pub async fn publish_release(&self, tenant: TenantId, r: &ReleaseRecord) -> Result<bool> {
        let out = self
            .run(
                vec![Stmt::new(
                    "INSERT INTO releases (tenant_id, product, version, maker, counter, envelope, \
                     artifacts, published_by, published_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (tenant_id, product, version) DO NOTHING",
                    vec![
                        tenant.into(),
                        (&r.product).into(),
                        (&r.version).into(),
                        (&r.maker).into(),
                        to_i64(r.counter).into(),
                        (&r.envelope).into(),
                        (&r.artifacts_json).into(),
                        (&r.published_by).into(),
                        r.published_at_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        if out.first().copied() == Some(1) {
            return Ok(true);
        }
        match self.release(tenant, &r.product, &r.version).await? {
            Some(old) if old.envelope == r.envelope => Ok(false),
            _ => Err(StoreError::Conflict(format!(
                "{} {} is already published with a different manifest or signatures",
                r.product, r.version
            ))),
        }
    }

    pub async fn release(
        &self,
        tenant: TenantId,
        product: &str,
        version: &str,
    ) -> Result<Option<ReleaseRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT product, version, maker, counter, envelope, artifacts, published_by, \
                     published_at FROM releases WHERE tenant_id = $1 AND product = $2 \
                     AND version = $3",
                ),
                vec![tenant.into(), product.into(), version.into()],
                RELEASE_COLUMNS,
            )
            .await?;
        rows.first().map(|r| release(r)).transpose()
    }

    /// Releases of a tenant (of one product, when given), newest first, at most `limit`.
    pub async fn releases(
        &self,
        tenant: TenantId,
        product: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ReleaseRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT product, version, maker, counter, envelope, artifacts, published_by, \
                     published_at FROM releases WHERE tenant_id = $1 AND ($2 = '' OR product = $2) \
                     ORDER BY published_at DESC, product, counter DESC LIMIT $3",
                ),
                vec![
                    tenant.into(),
                    product.unwrap_or_default().into(),
                    i64::from(limit).into(),
                ],
                RELEASE_COLUMNS,
            )
            .await?;
        rows.iter().map(|r| release(r)).collect()
    }

    /// The signed size of an artifact some published release of the tenant names.
    pub async fn release_artifact_size(
        &self,
        tenant: TenantId,
        sha256: &str,
    ) -> Result<Option<u64>> {
        let rows = self
            .select(
                sql(
                    "SELECT artifacts FROM releases WHERE tenant_id = $1 AND artifacts LIKE $2 \
                     LIMIT 16",
                ),
                vec![tenant.into(), format!("%\"{sha256}\"%").into()],
                &[Ty::Text],
            )
            .await?;
        for r in &rows {
            let arts: Vec<serde_json::Value> = serde_json::from_str(&r[0].text()?)
                .map_err(|e| StoreError::Corrupt(format!("release artifacts: {e}")))?;
            if let Some(size) = arts
                .iter()
                .filter(|a| a["sha256"].as_str() == Some(sha256))
                .find_map(|a| a["size"].as_u64())
            {
                return Ok(Some(size));
            }
        }
        Ok(None)
    }

    /// Record that the center holds an artifact for the tenant (its file is already durable).
    pub async fn add_artifact(
        &self,
        tenant: TenantId,
        sha256: &str,
        size: u64,
        now_ms: i64,
    ) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO artifacts (tenant_id, sha256, size, stored_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, sha256) DO NOTHING",
                vec![
                    tenant.into(),
                    sha256.into(),
                    to_i64(size).into(),
                    now_ms.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// The size of an artifact the tenant holds.
    pub async fn artifact(&self, tenant: TenantId, sha256: &str) -> Result<Option<u64>> {
        let rows = self
            .select(
                sql("SELECT size FROM artifacts WHERE tenant_id = $1 AND sha256 = $2"),
                vec![tenant.into(), sha256.into()],
                &[Ty::Int],
            )
            .await?;
        rows.first().map(|r| Ok(to_u64(r[0].int()?))).transpose()
    }

    /// Jobs that never started and whose time ran out are over: `failed`, reason `expired`.
    /// How many (at most 1000 per call; nothing is written when none is due).
    pub async fn expire_jobs(&self, now_ms: i64) -> Result<u64> {
        let due = self
            .select(
                sql(
                    "SELECT tenant_id, id FROM jobs WHERE state IN ('awaiting_approval', 'queued') \
                     AND expires_at <= $1 ORDER BY expires_at LIMIT 1000",
                ),
                vec![now_ms.into()],
                &[Ty::Int, Ty::Int],
            )
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut stmts = Vec::with_capacity(due.len() * 2);
        for r in &due {
            let (tenant, id) = (r[0].int()?, r[1].int()?);
            stmts.push(Stmt::new(
                "UPDATE jobs SET state = 'failed', reason = 'expired', \
                 detail = 'the device did not take the job before it expired', updated_at = $3 \
                 WHERE tenant_id = $1 AND id = $2 AND state IN ('awaiting_approval', 'queued')",
                vec![tenant.into(), id.into(), now_ms.into()],
            ));
            stmts.push(Stmt::new(
                crate::compat::JOB_EVENT,
                vec![tenant.into(), id.into(), now_ms.into(), "failed".into()],
            ));
        }
        let out = self.run(stmts, Guard::None).await?;
        Ok(out.iter().step_by(2).sum())
    }
}
