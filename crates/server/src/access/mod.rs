//! Who may do what: operators' tokens, accounts and sessions, the one authorization table,
//! device credentials, and the identity of the connection a request came over.

pub mod accounts;
pub mod api;
pub mod authz;
pub mod credentials;
pub mod peer;
pub mod session;
