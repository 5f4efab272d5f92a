//! The Fleetcare device agent, as a library: integrators build their own agent around their
//! own [`source::UnitDriver`]s, and the demo and simulator run the same logic.
//!
//! ```no_run
//! use fleetcare_agent::source::{DriverSource, InventoryFile, UnitDriver};
//! use fleetcare_agent::{Agent, AgentConfig};
//! use fleetcare_wire::Unit;
//!
//! struct Fuser;
//! impl UnitDriver for Fuser {
//!     fn slot(&self) -> &str {
//!         "fuser"
//!     }
//!     fn describe(&self) -> Result<Unit, String> {
//!         // Ask the hardware; this runs on a blocking thread.
//!         Ok(Unit {
//!             slot: "fuser".into(),
//!             kind: "fuser".into(),
//!             model: "fus-7".into(),
//!             serial: "FUS-77002".into(),
//!             hw_revision: "A".into(),
//!             software: vec![],
//!             in_service: true,
//!         })
//!     }
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = AgentConfig::new("http://127.0.0.1:8470", "agent-data".into());
//! config.enrollment_key = Some(std::fs::read_to_string("enrollment-key")?.trim().to_owned());
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//!
//! // From the device's own hardware, one driver per unit …
//! let source = DriverSource::new("ACM9K-000123", "acme-mfp-9000", vec![Box::new(Fuser)]);
//! let agent = Agent::new(config.clone(), source);
//! let handle = agent.handle(); // handle.structure_changed() after a unit swap
//! agent.run(shutdown.clone()).await?;
//!
//! // … or from an inventory file.
//! Agent::new(config, InventoryFile::new("inventory.toml")).run(shutdown).await?;
//! # drop(handle);
//! # Ok(()) }
//! ```

pub mod agent;
pub mod backoff;
pub mod channel;
pub mod client;
pub mod config;
pub mod embed;
pub mod errlog;
pub mod journal;
pub mod local;
pub mod local_api;
pub mod mqtt;
pub mod out;
pub mod proxy;
pub mod resident;
pub mod signals;
pub mod source;
pub mod update;

pub use agent::{Agent, AgentError, AgentHandle};
pub use config::{AgentConfig, Transport};
pub use embed::{NoObserver, Observer};
