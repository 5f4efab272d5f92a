//! Tenancy: a service provider and its customer organizations. A customer is a tenant whose
//! parent is the provider; its stored name is `<provider>/<customer>`, so one provider's
//! customer names never collide with (or reveal) another's. Customers have no customers.

use crate::exec::{Guard, Stmt, Ty, sql};
use crate::{Result, Store, StoreError, TenantId};

/// Characters of a customer's short name.
pub const MAX_CUSTOMER_NAME: usize = 64;

/// A customer organization as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    pub tenant: TenantId,
    /// The short name (without the provider's).
    pub name: String,
    pub created_at_ms: i64,
    pub devices: u64,
}

impl Store {
    /// The tenant's own name and, for a customer, its provider.
    async fn tenant_row(&self, tenant: TenantId) -> Result<Option<(String, Option<TenantId>)>> {
        let rows = self
            .select(
                sql("SELECT name, parent_id FROM tenants WHERE id = $1"),
                vec![tenant.into()],
                &[Ty::Text, Ty::Int],
            )
            .await?;
        rows.first()
            .map(|r| Ok((r[0].text()?, r[1].opt_int()?)))
            .transpose()
    }

    /// Create customer `name` of `provider`. A customer cannot have customers, and a name is
    /// taken once per provider (both: [`StoreError::Conflict`]).
    pub async fn create_customer(
        &self,
        provider: TenantId,
        name: &str,
        now_ms: i64,
    ) -> Result<TenantId> {
        let Some((provider_name, parent)) = self.tenant_row(provider).await? else {
            return Err(StoreError::NotFound(format!("tenant {provider}")));
        };
        if parent.is_some() {
            return Err(StoreError::Conflict(
                "a customer organization has no customers of its own".into(),
            ));
        }
        let full = format!("{provider_name}/{name}");
        let n = self
            .run(
                vec![Stmt::new(
                    "INSERT INTO tenants (name, created_at, parent_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO NOTHING",
                    vec![full.as_str().into(), now_ms.into(), provider.into()],
                )],
                Guard::None,
            )
            .await?;
        if n.first().copied() != Some(1) {
            return Err(StoreError::Conflict(format!(
                "customer {name} exists already"
            )));
        }
        self.tenant_id(&full)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("customer {full} vanished")))
    }

    /// The customer of `provider` named `name` (short), if there is one.
    pub async fn customer(&self, provider: TenantId, name: &str) -> Result<Option<TenantId>> {
        let rows = self
            .select(
                sql(
                    "SELECT c.id FROM tenants c JOIN tenants p ON p.id = c.parent_id \
                     WHERE p.id = $1 AND c.name = p.name || '/' || $2",
                ),
                vec![provider.into(), name.into()],
                &[Ty::Int],
            )
            .await?;
        rows.first().map(|r| r[0].int()).transpose()
    }

    /// A provider's customers, by name, with their device counts.
    pub async fn customers(&self, provider: TenantId) -> Result<Vec<CustomerRecord>> {
        let rows = self
            .select(
                sql("SELECT c.id, c.name, c.created_at, \
                     (SELECT COUNT(*) FROM devices d WHERE d.tenant_id = c.id) \
                     FROM tenants c WHERE c.parent_id = $1 ORDER BY c.name"),
                vec![provider.into()],
                &[Ty::Int, Ty::Text, Ty::Int, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let full = r[1].text()?;
                Ok(CustomerRecord {
                    tenant: r[0].int()?,
                    name: full
                        .split_once('/')
                        .map_or(full.clone(), |(_, n)| n.to_owned()),
                    created_at_ms: r[2].int()?,
                    devices: u64::try_from(r[3].int()?).unwrap_or(0),
                })
            })
            .collect()
    }

    /// A provider's customers' short names, sorted (at most 1000): what a dashboard offers
    /// to look into, without counting their devices.
    pub async fn customer_names(&self, provider: TenantId) -> Result<Vec<String>> {
        let rows = self
            .select(
                sql("SELECT name FROM tenants WHERE parent_id = $1 ORDER BY name LIMIT 1000"),
                vec![provider.into()],
                &[Ty::Text],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let full = r[0].text()?;
                Ok(full
                    .split_once('/')
                    .map_or(full.clone(), |(_, n)| n.to_owned()))
            })
            .collect()
    }
}
