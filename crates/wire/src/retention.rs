//! Retention: how long a tenant keeps each kind of data (`/api/v1/retention`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One kind of data and how long it is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetentionKind {
    /// `reports`, `error_events`, `history` or `audit`.
    pub kind: String,
    /// Days kept; 0: kept forever.
    pub days: u64,
    pub default_days: u64,
}

/// `GET /api/v1/retention`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Retention {
    pub kinds: Vec<RetentionKind>,
}

/// `PUT /api/v1/retention`: keep `kind` for `days` (0: forever).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRetention {
    pub kind: String,
    pub days: u64,
}
