//! Operator accounts (name, role, password hash) and their dashboard sessions. A session is
//! an operator token with an expiry, marked as a session: the authorization layer looks both
//! up the same way, and revoking, expiring or disabling ends it from the next request.

use crate::exec::{Guard, Stmt, Ty, sql};
use crate::{Result, Store, TenantId};

/// An account as listed (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub name: String,
    pub role: String,
    pub created_at_ms: i64,
    pub disabled_at_ms: Option<i64>,
}

/// What a login checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    pub role: String,
    /// A PHC string (argon2id).
    pub password_hash: String,
    pub disabled: bool,
}

impl Store {
    /// A new account; `false` (nothing changed) if the tenant has one of that name.
    pub async fn create_account(
        &self,
        tenant: TenantId,
        name: &str,
        role: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let n = self
            .run(
                vec![Stmt::new(
                    "INSERT INTO operator_accounts (tenant_id, name, role, password_hash, \
                     created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (tenant_id, name) DO NOTHING",
                    vec![
                        tenant.into(),
                        name.into(),
                        role.into(),
                        password_hash.into(),
                        now_ms.into(),
                    ],
                )],
                Guard::None,
            )
            .await?;
        Ok(n.first().copied() == Some(1))
    }

    pub async fn account(&self, tenant: TenantId, name: &str) -> Result<Option<StoredAccount>> {
        let rows = self
            .select(
                sql(
                    "SELECT role, password_hash, disabled_at FROM operator_accounts \
                     WHERE tenant_id = $1 AND name = $2",
                ),
                vec![tenant.into(), name.into()],
                &[Ty::Text, Ty::Text, Ty::Int],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(StoredAccount {
                    role: r[0].text()?,
                    password_hash: r[1].text()?,
                    disabled: r[2].opt_int()?.is_some(),
                })
            })
            .transpose()
    }

    pub async fn accounts(&self, tenant: TenantId) -> Result<Vec<AccountRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT name, role, created_at, disabled_at FROM operator_accounts \
                     WHERE tenant_id = $1 ORDER BY name",
                ),
                vec![tenant.into()],
                &[Ty::Text, Ty::Text, Ty::Int, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AccountRecord {
                    name: r[0].text()?,
                    role: r[1].text()?,
                    created_at_ms: r[2].int()?,
                    disabled_at_ms: r[3].opt_int()?,
                })
            })
            .collect()
    }

    /// Disable an account and end its sessions, in one transaction; `false` if it has none
    /// such that is enabled.
    pub async fn disable_account(&self, tenant: TenantId, name: &str, now_ms: i64) -> Result<bool> {
        let n = self
            .run(
                vec![
                    Stmt::new(
                        "UPDATE operator_accounts SET disabled_at = $3 \
                         WHERE tenant_id = $1 AND name = $2 AND disabled_at IS NULL",
                        vec![tenant.into(), name.into(), now_ms.into()],
                    ),
                    Stmt::new(
                        "UPDATE operator_tokens SET revoked_at = $3 WHERE tenant_id = $1 \
                         AND name = $2 AND session = 1 AND revoked_at IS NULL",
                        vec![tenant.into(), name.into(), now_ms.into()],
                    ),
                ],
                Guard::None,
            )
            .await?;
        Ok(n.first().copied() == Some(1))
    }

    /// A session for an account, by the hash of its secret, until `expires_ms`.
    pub async fn create_session(
        &self,
        tenant: TenantId,
        name: &str,
        role: &str,
        session_hash: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO operator_tokens (token_hash, tenant_id, name, role, created_at, \
                 expires_at, session) VALUES ($1, $2, $3, $4, $5, $6, 1)",
                vec![
                    session_hash.into(),
                    tenant.into(),
                    name.into(),
                    role.into(),
                    now_ms.into(),
                    expires_ms.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// End a session (logout); `false` if it was not live.
    pub async fn end_session(&self, session_hash: &str, now_ms: i64) -> Result<bool> {
        let n = self
            .run(
                vec![Stmt::new(
                    "UPDATE operator_tokens SET revoked_at = $2 WHERE token_hash = $1 \
                     AND session = 1 AND revoked_at IS NULL",
                    vec![session_hash.into(), now_ms.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(n.first().copied() == Some(1))
    }
}
