//! Devices with hawkBit clients (DDI) in the store: which devices joined through DDI and the
//! attributes they sent (`configData`), what each did with a job as an action (fetched it,
//! answered its cancellation), the tenants' gateway tokens, and the SHA-1 and MD5 of
//! artifacts that DDI clients check.

use std::collections::BTreeMap;

use crate::exec::{Guard, Stmt, Ty, sql};
use crate::{DeviceKey, Result, Store, StoreError, TenantId, to_i64, to_u64};

/// A DDI device's attributes and the sequence number of its newest structure report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DdiDevice {
    pub attributes: BTreeMap<String, String>,
    pub seq: u64,
    /// Someone asked for a report that the device's attributes have not answered yet.
    pub report_requested: bool,
}

/// What a DDI device did with a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdiAction {
    pub fetched_at_ms: Option<i64>,
    /// `acknowledged` or `rejected`, once the device answered a cancellation.
    pub cancel_answer: Option<String>,
}

impl Store {
    /// Mark a device as one that joined through DDI (nothing changes if it is one already).
    pub async fn ddi_register(&self, key: &DeviceKey, now_ms: i64) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO ddi_devices (tenant_id, device_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, device_id) DO NOTHING",
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    now_ms.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// A DDI device's attributes, or `None` when the device did not join through DDI.
    pub async fn ddi_device(&self, key: &DeviceKey) -> Result<Option<DdiDevice>> {
        let rows = self
            .select(
                sql("SELECT attributes, seq, requested_at FROM ddi_devices \
                     WHERE tenant_id = $1 AND device_id = $2"),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[Ty::Text, Ty::Int, Ty::Int],
            )
            .await?;
        rows.first()
            .map(|r| {
                let attributes = serde_json::from_str(&r[0].text()?)
                    .map_err(|e| StoreError::Corrupt(format!("ddi attributes: {e}")))?;
                Ok(DdiDevice {
                    attributes,
                    seq: to_u64(r[1].int()?),
                    report_requested: r[2].opt_int()?.is_some(),
                })
            })
            .transpose()
    }

    /// Replace a DDI device's attributes and take the next sequence number, if its sequence
    /// number is still `seq` (`false`: another request came first; read again).
    pub async fn ddi_set_attributes(
        &self,
        key: &DeviceKey,
        seq: u64,
        attributes: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let json = serde_json::to_string(attributes).expect("strings serialize");
        self.changed_one(Stmt::new(
            "UPDATE ddi_devices SET attributes = $3, seq = seq + 1, requested_at = NULL \
             WHERE tenant_id = $1 AND device_id = $2 AND seq = $4",
            vec![
                key.tenant.into(),
                key.device_id.as_str().into(),
                json.into(),
                to_i64(seq).into(),
            ],
        ))
        .await
    }

    /// Ask a DDI device for its attributes at its next poll.
    pub async fn ddi_request_report(&self, key: &DeviceKey, now_ms: i64) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "UPDATE ddi_devices SET requested_at = $3 \
                 WHERE tenant_id = $1 AND device_id = $2 AND requested_at IS NULL",
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    now_ms.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// Record that a DDI device fetched a job as an action (the first time counts).
    pub async fn ddi_fetched(&self, key: &DeviceKey, job: u64, now_ms: i64) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO ddi_actions (tenant_id, job_id, device_id, fetched_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, job_id) DO NOTHING",
                vec![
                    key.tenant.into(),
                    to_i64(job).into(),
                    key.device_id.as_str().into(),
                    now_ms.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    pub async fn ddi_action(&self, tenant: TenantId, job: u64) -> Result<Option<DdiAction>> {
        let rows = self
            .select(
                sql("SELECT fetched_at, cancel_answer FROM ddi_actions \
                     WHERE tenant_id = $1 AND job_id = $2"),
                vec![tenant.into(), to_i64(job).into()],
                &[Ty::Int, Ty::Text],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(DdiAction {
                    fetched_at_ms: r[0].opt_int()?,
                    cancel_answer: r[1].opt_text()?,
                })
            })
            .transpose()
    }

    /// The device's cancelled jobs that it fetched and has not answered the cancellation of,
    /// oldest first.
    pub async fn ddi_cancels(&self, key: &DeviceKey) -> Result<Vec<u64>> {
        let rows = self
            .select(
                sql("SELECT a.job_id FROM ddi_actions a JOIN jobs j \
                     ON j.tenant_id = a.tenant_id AND j.id = a.job_id \
                     WHERE a.tenant_id = $1 AND a.device_id = $2 AND a.fetched_at IS NOT NULL \
                     AND a.cancel_at IS NULL AND j.state = 'failed' AND j.reason = 'cancelled' \
                     ORDER BY a.job_id"),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[Ty::Int],
            )
            .await?;
        rows.iter().map(|r| Ok(to_u64(r[0].int()?))).collect()
    }

    /// Record the device's answer to a cancellation (the first answer counts): whether it was
    /// recorded now.
    pub async fn ddi_cancel_answer(
        &self,
        key: &DeviceKey,
        job: u64,
        answer: &str,
        now_ms: i64,
    ) -> Result<bool> {
        self.changed_one(Stmt::new(
            "UPDATE ddi_actions SET cancel_answer = $4, cancel_at = $5 \
             WHERE tenant_id = $1 AND job_id = $2 AND device_id = $3 AND cancel_at IS NULL",
            vec![
                key.tenant.into(),
                to_i64(job).into(),
                key.device_id.as_str().into(),
                answer.into(),
                now_ms.into(),
            ],
        ))
        .await
    }

    /// The id of a device's newest job in `state` (through the device's index of jobs).
    pub async fn newest_job_in(&self, key: &DeviceKey, state: &str) -> Result<Option<u64>> {
        let rows = self
            .select(
                sql(
                    "SELECT id FROM jobs WHERE tenant_id = $1 AND device_id = $2 AND state = $3 \
                     ORDER BY id DESC LIMIT 1",
                ),
                vec![
                    key.tenant.into(),
                    key.device_id.as_str().into(),
                    state.into(),
                ],
                &[Ty::Int],
            )
            .await?;
        rows.first().map(|r| Ok(to_u64(r[0].int()?))).transpose()
    }

    /// Store a gateway token's hash for a tenant.
    pub async fn add_gateway_token(
        &self,
        tenant: TenantId,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO ddi_gateway_tokens (token_hash, tenant_id, created_at) \
                 VALUES ($1, $2, $3)",
                vec![token_hash.into(), tenant.into(), now_ms.into()],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// Revoke every gateway token of a tenant; how many were in force.
    pub async fn revoke_gateway_tokens(&self, tenant: TenantId, now_ms: i64) -> Result<u64> {
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE ddi_gateway_tokens SET revoked_at = $2 \
                     WHERE tenant_id = $1 AND revoked_at IS NULL",
                    vec![tenant.into(), now_ms.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied().unwrap_or(0))
    }

    /// The tenant of a gateway token in force.
    pub async fn gateway_tenant(&self, token_hash: &str) -> Result<Option<TenantId>> {
        let rows = self
            .select(
                sql("SELECT tenant_id FROM ddi_gateway_tokens \
                     WHERE token_hash = $1 AND revoked_at IS NULL"),
                vec![token_hash.into()],
                &[Ty::Int],
            )
            .await?;
        rows.first().map(|r| r[0].int()).transpose()
    }

    /// The SHA-1 and MD5 (hex) of an artifact, when known.
    pub async fn artifact_digests(&self, sha256: &str) -> Result<Option<(String, String)>> {
        let rows = self
            .select(
                sql("SELECT sha1, md5 FROM artifact_digests WHERE sha256 = $1"),
                vec![sha256.into()],
                &[Ty::Text, Ty::Text],
            )
            .await?;
        rows.first()
            .map(|r| Ok((r[0].text()?, r[1].text()?)))
            .transpose()
    }

    pub async fn put_artifact_digests(&self, sha256: &str, sha1: &str, md5: &str) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO artifact_digests (sha256, sha1, md5) VALUES ($1, $2, $3) \
                 ON CONFLICT (sha256) DO NOTHING",
                vec![sha256.into(), sha1.into(), md5.into()],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }
}
