//! Fleetcare's compatibility engine, without IO: the catalog, the order of vendor versions,
//! judgement of a device by indexed rules, software plans from a real solver (pubgrub), and
//! hardware advice. See ARCHITECTURE.md, "Compatibility".

pub mod advice;
pub mod catalog;
pub mod facts;
pub mod judge;
pub mod plan;
pub mod render;
pub mod state;
pub mod version;
pub mod vocab;

pub use advice::{HardwareChange, Recommendation};
pub use catalog::{Catalog, CatalogError, CatalogStats};
pub use facts::DeviceFacts;
pub use judge::{Finding, FindingKind};
pub use plan::{Action, PlanOutcome, Policy, Step};
pub use render::Rendered;
pub use state::State;
pub use version::{Version, VersionRange};
pub use vocab::{Name, Sym, Vocab};
