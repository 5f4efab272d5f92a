//! Access on the wire: operator tokens, the audit log, and who the caller is.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET  | `/api/v1/whoami` | | [`WhoAmI`] |
//! | GET  | `/api/v1/tokens` | | [`TokenList`] |
//! | POST | `/api/v1/tokens` | [`CreateToken`] | [`CreatedToken`] (the token, shown once) |
//! | POST | `/api/v1/tokens/{id}/revoke` | | [`TokenInfo`] |
//! | GET  | `/api/v1/audit?before=&limit=` | | [`AuditLog`] (newest first) |
//! | GET  | `/api/v1/customers` | | [`CustomerList`] |
//! | POST | `/api/v1/customers` | [`CreateCustomer`] | [`CreatedCustomer`] (its enrollment key, shown once) |
//! | POST | `/api/v1/login` | [`Login`] | [`LoggedIn`], and the session cookie |
//! | POST | `/api/v1/logout` | | 204, the cookie cleared |
//! | GET  | `/api/v1/accounts` | | [`AccountList`] |
//! | POST | `/api/v1/accounts` | [`CreateAccount`] | [`AccountInfo`] |
//! | POST | `/api/v1/accounts/{name}/disable` | | 204 |
//!
//! A provider's operator acts within one of its customer organizations by sending
//! `Fleetcare-Tenant: <customer>` with any request; a customer that is not the caller's is
//! "not found".

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The caller: its name, role and tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub role: String,
    pub tenant_id: i64,
    /// The actions of the authorization table this caller may take.
    pub may: Vec<String>,
}

/// A new operator token: who holds it and their role (`viewer`, `operator`,
/// `release_engineer`, `approver`, `admin`, `auditor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    pub role: String,
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// The first 16 hex digits of the token's hash: names it for revocation.
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The secret: shown here once, stored only as a hash.
    pub token: String,
    pub info: TokenInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// One line of the audit log: who did what, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: u64,
    pub at: String,
    pub actor: Option<String>,
    pub role: Option<String>,
    /// The action's name in the authorization table (`rollout.pause`).
    pub action: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `ok`, `failed` or `denied`.
    pub outcome: String,
    pub detail: Option<String>,
    /// The client's address, as the center believes it.
    #[serde(default)]
    pub source: Option<String>,
}

/// A new customer organization of the caller's (provider) tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// Letters, digits and `. _ : -`, at most 64.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CustomerInfo {
    pub name: String,
    pub created_at: String,
    pub devices: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedCustomer {
    pub customer: CustomerInfo,
    /// The customer's devices enroll with this key: shown here once, stored only as a hash.
    pub enrollment_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CustomerList {
    pub customers: Vec<CustomerInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// A dashboard login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account's tenant (`provider` or `provider/customer`); default: the center's own.
    #[serde(default)]
    pub tenant: Option<String>,
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoggedIn {
    pub name: String,
    pub role: String,
    pub tenant: String,
    pub expires_at: String,
}

/// A new operator account; its password is stored only as an argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub name: String,
    pub role: String,
    /// 12 to 256 characters.
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountInfo {
    pub name: String,
    pub role: String,
    pub created_at: String,
    pub disabled_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<AccountInfo>,
}
