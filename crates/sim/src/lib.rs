//! The Fleetcare fleet simulator: many virtual devices, each running the real agent
//! (embedded, its state in memory), against a real center. Used by `fleetcare sim` (load and
//! behaviour at fleet scale) and `fleetcare demo`.
//!
//! - [`profile`]: the simulation profile (TOML), checked with every problem listed.
//! - [`fleet`]: devices made from the sample inventories, with the sample scenarios.
//! - [`device`]: a virtual device — its source, journal and unit installers.
//! - [`world`]: one task that prints pages, raises errors and swaps units for the fleet.
//! - [`stats`]: latencies (HdrHistogram) and counts; the summary.
//! - [`run`]: starting, measuring and stopping a fleet.

pub mod device;
pub mod fleet;
pub mod profile;
pub mod rng;
pub mod run;
pub mod stats;
pub mod world;

pub use device::SimDevice;
pub use profile::Profile;
pub use run::{Sim, SimError, SimOptions};
pub use stats::Summary;
