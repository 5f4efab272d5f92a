//! Fleet rollouts, without IO: which devices ([`query`]), in which wave ([`waves`]), when to
//! advance or stop ([`gates`]), when a site allows installs ([`window`]), and whether a device
//! is in a proper state ([`eligibility`]). The center's engine reads and writes the store and
//! creates the jobs.

pub mod eligibility;
pub mod gates;
pub mod query;
pub mod waves;
pub mod window;

pub use gates::{Advance, Decision, Gates, WaveCounts};
pub use query::{Filter, FilterError, Subject};
