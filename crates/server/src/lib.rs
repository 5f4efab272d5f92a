//! The Fleetcare monitoring center: the device protocol (`/device/v1/`), the operator API
//! (`/api/v1/`), `/healthz` and `/metrics`, over one store.
//!
//! [`app`] builds the whole router from an [`AppState`] (tests drive it without sockets);
//! [`Center::start`] opens the store, bootstraps the data dir, binds, and serves until
//! [`Center::stop`], which shuts down gracefully: no new connections, push channels closed
//! with "going away", long polls answered, in-flight requests finished, the store closed.

pub mod access;
pub mod bootstrap;
pub mod cluster;
pub mod compat;
pub mod config;
pub mod ctx;
pub mod ddi;
pub mod delivery;
pub mod devices;
pub mod diag;
pub mod disk;
pub mod error;
pub mod extract;
pub mod life;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod ratelimit;
pub mod retention;
pub mod rollout;
pub mod sendfile;
pub mod ui;

mod center;
mod routes;
mod state;

pub(crate) use crate::center::stopped;
pub use crate::center::{Center, ServeError};
pub use crate::config::{LogFormat, ServerConfig};
pub use crate::ctx::Ctx;
pub use crate::routes::{DEVICE_REQUESTS_IN_FLIGHT, app};
pub use crate::state::{AppState, CREDENTIAL_CACHE_ENTRIES, CREDENTIAL_TTL_MS, Settings};
