//! Fault diagnosis, without IO.
//!
//! * [`rules`]: the rules format (TOML, documented by `examples/rules.toml`), validated with
//!   every problem listed, and compiled.
//! * [`engine`]: incremental evaluation. Each error event is matched against the rules once,
//!   on ingest; per device and rule the engine keeps only what the condition needs (the last
//!   N matching events, the last "A" event, the devices of a fleet signature within the
//!   window), so evaluation never rescans history and memory is bounded by the rules.
//! * [`abnormal`]: abnormal units judged from operating info (counters and gauges).

pub mod abnormal;
pub mod engine;
pub mod rules;

pub use abnormal::{AbnormalMark, abnormal_units};
pub use engine::{DeviceCtx, Engine, Event, EventRef, Firing, UnitCtx};
pub use rules::{Condition, Fix, Matcher, Rule, RuleSet, RulesError, TroubleSeverity};
