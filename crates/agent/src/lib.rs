//! The Fleetcare device agent, as a library: integrators build their own agent around their
//! own [`source::UnitDriver`]s, and the demo and simulator run the same logic.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use fleetcare_agent::{Agent, AgentConfig, source::InventoryFile};
//! let mut config = AgentConfig::new("http://127.0.0.1:8470", "agent-data".into());
//! config.enrollment_key = Some(std::fs::read_to_string("enrollment-key")?.trim().to_owned());
//! let (_stop, shutdown) = tokio::sync::watch::channel(false);
//! Agent::new(config, InventoryFile::new("inventory.toml")).run(shutdown).await?;
//! # Ok(()) }
//! ```

pub mod agent;
pub mod backoff;
pub mod channel;
pub mod client;
pub mod config;
pub mod local;
pub mod source;

pub use agent::{Agent, AgentError, AgentHandle};
pub use config::{AgentConfig, Transport};
