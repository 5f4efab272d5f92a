//! Fleet aggregates the dashboard shows: error counts over time, devices with an open finding
//! of a kind or a live trouble, live troubles by severity. Each is one query over an index.

use crate::exec::{Ty, sql};
use crate::{DeviceKey, Result, Store, TenantId, to_u64};

/// Most buckets one error-count query returns.
pub const MAX_BUCKETS: i64 = 1000;

impl Store {
    /// Error events per time bucket (by the device's clock), from `since_ms`, oldest first:
    /// `(bucket start ms, events)`. Buckets without events are absent. One device, or the
    /// whole tenant when `device` is `None`.
    pub async fn error_counts(
        &self,
        tenant: TenantId,
        device: Option<&str>,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, u64)>> {
        let bucket_ms = bucket_ms.max(1);
        // Two texts, so each reads its own index: (tenant, device, at) or (tenant, at).
        let (text, params) = match device {
            Some(d) => (
                "SELECT (at / $3) * $3 AS bucket, COUNT(*) FROM error_events \
                 WHERE tenant_id = $1 AND device_id = $4 AND at >= $2 \
                 GROUP BY bucket ORDER BY bucket LIMIT $5",
                vec![
                    tenant.into(),
                    since_ms.into(),
                    bucket_ms.into(),
                    d.into(),
                    MAX_BUCKETS.into(),
                ],
            ),
            None => (
                "SELECT (at / $3) * $3 AS bucket, COUNT(*) FROM error_events \
                 WHERE tenant_id = $1 AND at >= $2 \
                 GROUP BY bucket ORDER BY bucket LIMIT $4",
                vec![
                    tenant.into(),
                    since_ms.into(),
                    bucket_ms.into(),
                    MAX_BUCKETS.into(),
                ],
            ),
        };
        let rows = self.select(sql(text), params, &[Ty::Int, Ty::Int]).await?;
        rows.iter()
            .map(|r| Ok((r[0].int()?, to_u64(r[1].int()?))))
            .collect()
    }

    /// Devices with an open compatibility finding of `kind`, by id.
    /// How far apart (device clock) the device's last two periodic reports were taken: its
    /// agent's own interval as it runs. `None` until there are two.
    pub async fn periodic_gap_ms(&self, key: &DeviceKey) -> Result<Option<i64>> {
        let rows = self
            .select(
                sql(
                    "SELECT observed_at FROM reports WHERE tenant_id = $1 AND device_id = $2 \
                     AND trigger = 'periodic' ORDER BY generation DESC, seq DESC LIMIT 2",
                ),
                vec![key.tenant.into(), key.device_id.as_str().into()],
                &[Ty::Int],
            )
            .await?;
        Ok(match rows.as_slice() {
            [a, b] => Some(a[0].int()? - b[0].int()?).filter(|d| *d > 0),
            _ => None,
        })
    }

    /// Device ids of the tenant that look like `id` (the same first three characters, or the
    /// same last four), at most 2000: candidates for "did you mean".
    pub async fn device_ids_like(&self, tenant: TenantId, id: &str) -> Result<Vec<String>> {
        let chars: Vec<char> = id.chars().collect();
        let head: String = chars.iter().take(3).collect();
        let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
        let rows = self
            .select(
                sql("SELECT device_id FROM devices WHERE tenant_id = $1 \
                     AND (device_id LIKE $2 OR device_id LIKE $3) ORDER BY device_id LIMIT 2000"),
                vec![
                    tenant.into(),
                    format!("{head}%").into(),
                    format!("%{tail}").into(),
                ],
                &[Ty::Text],
            )
            .await?;
        rows.iter().map(|r| r[0].text()).collect()
    }

    pub async fn devices_with_finding(&self, tenant: TenantId, kind: &str) -> Result<Vec<String>> {
        let rows = self
            .select(
                sql("SELECT DISTINCT device_id FROM findings \
                     WHERE tenant_id = $1 AND kind = $2 AND closed_at IS NULL ORDER BY device_id"),
                vec![tenant.into(), kind.into()],
                &[Ty::Text],
            )
            .await?;
        rows.iter().map(|r| r[0].text()).collect()
    }

    /// Devices with a live (open or acknowledged) trouble, of `severity` if given, by id.
    pub async fn devices_with_troubles(
        &self,
        tenant: TenantId,
        severity: Option<&str>,
    ) -> Result<Vec<String>> {
        let rows = self
            .select(
                sql(
                    "SELECT DISTINCT device_id FROM troubles WHERE tenant_id = $1 \
                     AND state <> 'resolved' AND ($2 = '' OR severity = $2) ORDER BY device_id",
                ),
                vec![tenant.into(), severity.unwrap_or("").into()],
                &[Ty::Text],
            )
            .await?;
        rows.iter().map(|r| r[0].text()).collect()
    }

    /// Live troubles by severity: `(severity, count)`.
    pub async fn live_troubles_by_severity(&self, tenant: TenantId) -> Result<Vec<(String, u64)>> {
        let rows = self
            .select(
                sql("SELECT severity, COUNT(*) FROM troubles \
                     WHERE tenant_id = $1 AND state <> 'resolved' GROUP BY severity ORDER BY severity"),
                vec![tenant.into()],
                &[Ty::Text, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r[0].text()?, to_u64(r[1].int()?))))
            .collect()
    }
}
