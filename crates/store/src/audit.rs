//! The audit log (append-only: the schema refuses updates, and deletes of lines no archive
//! holds; see `archive_audit`) and the operators' API tokens (stored as hashes; listed by an
//! id that is a prefix of the hash).

use crate::exec::{Guard, Sql, Stmt, Ty, sql};
use crate::{Result, Store, TenantId, to_i64, to_u64};

/// Characters of a token's hash that name it in listings and revocations.
pub const TOKEN_ID_LEN: usize = 16;

/// One line of the audit log to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// `None`: the caller was not authenticated.
    pub tenant: Option<TenantId>,
    pub actor: Option<String>,
    pub role: Option<String>,
    /// The action's name in the authorization table (`rollout.pause`), or `unknown`.
    pub action: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `ok`, `failed` (the action was allowed and did not succeed) or `denied`.
    pub outcome: String,
    pub detail: Option<String>,
    /// The client's address (as the center believes it: see `trusted_proxies`).
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: u64,
    pub at_ms: i64,
    pub actor: Option<String>,
    pub role: Option<String>,
    pub action: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub outcome: String,
    pub detail: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The first [`TOKEN_ID_LEN`] characters of the token's hash.
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

const AUDIT_COLUMNS: &str =
    "id, at, actor, role, action, method, path, status, outcome, detail, source";
const AUDIT_TYPES: &[Ty] = &[
    Ty::Int,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
];

/// The tenant's id, then [`AUDIT_TYPES`].
const ARCHIVE_TYPES: &[Ty] = &[
    Ty::Int,
    Ty::Int,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Text,
    Ty::Int,
    Ty::Text,
    Ty::Text,
    Ty::Text,
];

fn audit_record(r: &[crate::exec::Val]) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: to_u64(r[0].int()?),
        at_ms: r[1].int()?,
        actor: r[2].opt_text()?,
        role: r[3].opt_text()?,
        action: r[4].text()?,
        method: r[5].text()?,
        path: r[6].text()?,
        status: u16::try_from(r[7].int()?).unwrap_or(0),
        outcome: r[8].text()?,
        detail: r[9].opt_text()?,
        source: r[10].opt_text()?,
    })
}

/// An archive of the audit log: every line through `through_id`, written to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditArchive {
    pub through_id: u64,
    pub lines: u64,
    /// SHA-256 of the archive file, hex.
    pub sha256: String,
    /// The file's name, as the operator gave it.
    pub name: String,
    pub at_ms: i64,
}

/// Lines deleted per transaction once archived.
const ARCHIVE_DELETE_BATCH: i64 = 5_000;

impl Store {
    /// Lines after `after_id`, oldest first, at most `limit`, up to the first appended at or
    /// after `before_ms` (an archive is a run of the oldest lines), with their tenants.
    pub async fn audit_to_archive(
        &self,
        after_id: u64,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<(Option<TenantId>, AuditRecord)>> {
        let rows = self
            .select(
                Sql::Both(std::borrow::Cow::Owned(format!(
                    "SELECT tenant_id, {AUDIT_COLUMNS} FROM audit_log WHERE id > $1 \
                     ORDER BY id LIMIT $2"
                ))),
                vec![to_i64(after_id).into(), i64::from(limit).into()],
                ARCHIVE_TYPES,
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let line = audit_record(&r[1..])?;
            if line.at_ms >= before_ms {
                break;
            }
            out.push((r[0].opt_int()?, line));
        }
        Ok(out)
    }

    /// Record an archive, then delete the lines it holds (a few thousand per transaction);
    /// the lines deleted. Lines past the archive stay: the schema refuses their deletion.
    pub async fn archive_audit(&self, a: &AuditArchive) -> Result<u64> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO audit_archives (through_id, lines, sha256, name, at) \
                 VALUES ($1, $2, $3, $4, $5)",
                vec![
                    to_i64(a.through_id).into(),
                    to_i64(a.lines).into(),
                    (&a.sha256).into(),
                    (&a.name).into(),
                    a.at_ms.into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        self.delete_archived_audit().await
    }

    /// Delete what archives hold and is still in the log (an archive interrupted before its
    /// lines were all deleted); the lines deleted.
    pub async fn delete_archived_audit(&self) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let n = self
                .run(
                    vec![Stmt::new(
                        "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
                         WHERE id <= (SELECT COALESCE(MAX(through_id), 0) FROM audit_archives) \
                         ORDER BY id LIMIT $1)",
                        vec![ARCHIVE_DELETE_BATCH.into()],
                    )],
                    Guard::None,
                )
                .await?
                .first()
                .copied()
                .unwrap_or(0);
            deleted += n;
            if n == 0 {
                return Ok(deleted);
            }
        }
    }

    /// Every archive of the audit log, oldest first.
    pub async fn audit_archives(&self) -> Result<Vec<AuditArchive>> {
        let rows = self
            .select(
                sql(
                    "SELECT through_id, lines, sha256, name, at FROM audit_archives \
                     ORDER BY through_id",
                ),
                vec![],
                &[Ty::Int, Ty::Int, Ty::Text, Ty::Text, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditArchive {
                    through_id: to_u64(r[0].int()?),
                    lines: to_u64(r[1].int()?),
                    sha256: r[2].text()?,
                    name: r[3].text()?,
                    at_ms: r[4].int()?,
                })
            })
            .collect()
    }

    /// Append a line to the audit log.
    pub async fn append_audit(&self, a: &NewAudit, now_ms: i64) -> Result<()> {
        self.run(
            vec![Stmt::new(
                "INSERT INTO audit_log (tenant_id, at, actor, role, action, method, path, status, \
                 outcome, detail, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                vec![
                    a.tenant.into(),
                    now_ms.into(),
                    a.actor.clone().into(),
                    a.role.clone().into(),
                    (&a.action).into(),
                    (&a.method).into(),
                    (&a.path).into(),
                    i64::from(a.status).into(),
                    (&a.outcome).into(),
                    a.detail.clone().into(),
                    a.source.clone().into(),
                ],
            )],
            Guard::None,
        )
        .await?;
        Ok(())
    }

    /// A tenant's audit log, newest first, before line `before` (0: from the newest).
    pub async fn audit(
        &self,
        tenant: TenantId,
        before: u64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>> {
        let rows = self
            .select(
                Sql::Both(std::borrow::Cow::Owned(format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tenant_id = $1 \
                     AND ($2 = 0 OR id < $2) ORDER BY id DESC LIMIT $3"
                ))),
                vec![
                    tenant.into(),
                    to_i64(before).into(),
                    i64::from(limit).into(),
                ],
                AUDIT_TYPES,
            )
            .await?;
        rows.iter().map(|r| audit_record(r)).collect()
    }

    /// The newest line of the whole audit log, whoever's (unauthenticated denials have no
    /// tenant): for the operator of the center's host, and tests.
    pub async fn newest_audit_line(&self) -> Result<Option<AuditRecord>> {
        let rows = self
            .select(
                Sql::Both(std::borrow::Cow::Owned(format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY id DESC LIMIT 1"
                ))),
                vec![],
                AUDIT_TYPES,
            )
            .await?;
        rows.first().map(|r| audit_record(r)).transpose()
    }

    /// The id of the tenant named `name`, if there is one (never creates it).
    pub async fn tenant_id(&self, name: &str) -> Result<Option<TenantId>> {
        let rows = self
            .select(
                sql(crate::sql::TENANT_BY_NAME),
                vec![name.into()],
                &[Ty::Int],
            )
            .await?;
        rows.first().map(|r| r[0].int()).transpose()
    }

    /// A tenant's operator tokens (never the tokens themselves), oldest first.
    pub async fn operator_tokens(&self, tenant: TenantId) -> Result<Vec<TokenRecord>> {
        let rows = self
            .select(
                sql(
                    "SELECT token_hash, name, role, created_at, revoked_at FROM operator_tokens \
                     WHERE tenant_id = $1 AND session = 0 ORDER BY created_at, token_hash",
                ),
                vec![tenant.into()],
                &[Ty::Text, Ty::Text, Ty::Text, Ty::Int, Ty::Int],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let hash = r[0].text()?;
                Ok(TokenRecord {
                    id: hash.chars().take(TOKEN_ID_LEN).collect(),
                    name: r[1].text()?,
                    role: r[2].text()?,
                    created_at_ms: r[3].int()?,
                    revoked_at_ms: r[4].opt_int()?,
                })
            })
            .collect()
    }

    /// Revoke a tenant's token by its id; `false` if it has none such that is live.
    pub async fn revoke_operator_token(
        &self,
        tenant: TenantId,
        id: &str,
        now_ms: i64,
    ) -> Result<bool> {
        if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let out = self
            .run(
                vec![Stmt::new(
                    "UPDATE operator_tokens SET revoked_at = $3 WHERE tenant_id = $1 \
                     AND substr(token_hash, 1, 16) = $2 AND revoked_at IS NULL AND session = 0",
                    vec![tenant.into(), id.into(), now_ms.into()],
                )],
                Guard::None,
            )
            .await?;
        Ok(out.first().copied() == Some(1))
    }
}
