//! Limits on everything a device or operator sends. Documented in README.md ("Limits");
//! a request over any of them is refused with 400 (413 for bodies) and changes nothing.

/// Largest request body the device API accepts, in bytes.
pub const MAX_DEVICE_BODY: usize = 256 * 1024;
/// Largest request body the operator API accepts, in bytes.
pub const MAX_OPERATOR_BODY: usize = 1024 * 1024;
/// Units in one structure report.
pub const MAX_UNITS: usize = 64;
/// Software entries on one unit.
pub const MAX_SOFTWARE_PER_UNIT: usize = 32;
/// Characters in any identifier or name (device id, slot, kind, model, serial, hardware
/// revision, product, maker, version).
pub const MAX_NAME_LEN: usize = 64;
/// Entries in the operating info of one report.
pub const MAX_OPERATING_ENTRIES: usize = 256;
/// Supplies in one report (toner, drums, waste boxes, staples, …).
pub const MAX_SUPPLIES: usize = 64;
/// Seconds a device may ask to wait in one long poll.
pub const MAX_POLL_WAIT_S: u64 = 60;
/// Bounds of a reporting interval set by the center, in seconds.
pub const MIN_REPORT_INTERVAL_S: u64 = 10;
pub const MAX_REPORT_INTERVAL_S: u64 = 7 * 24 * 3600;
/// The agent's report interval when the center set none (an hour); a device silent for three
/// of them is offline unless its tenant says otherwise.
pub const DEFAULT_REPORT_INTERVAL_S: u64 = 3600;
