//! Crash points for the crash-safety harness.
//!
//! `FLEETCARE_AGENT_CRASH_POINT=<name>` makes the agent abort (no unwinding, no cleanup: like
//! a power cut after the last fsync) the first time it passes the named point;
//! `<name>:<n>` at the n-th time. Unset (always, outside the harness), a point costs one
//! load of a cached value.

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
static PASSED: AtomicU32 = AtomicU32::new(0);

/// The environment variable the harness sets.
pub const ENV: &str = "FLEETCARE_AGENT_CRASH_POINT";

/// Every point, in the order an install passes them (the harness kills at each).
pub const POINTS: &[&str] = &[
    "flow.accepted",
    "download.chunk",
    "flow.downloaded",
    "ab.stage.begin",
    "ab.stage.file",
    "ab.stage.files",
    "ab.stage.done",
    "flow.staged",
    "flow.activating",
    "ab.activate",
    "flow.activated",
    "ab.boot",
    "flow.healthy",
    "ab.confirm",
    "flow.confirmed",
    "flow.reverting",
    "ab.revert",
    "flow.reverted",
    "flow.reported",
];

/// Abort here if the harness asked for it.
pub fn point(name: &str) {
    let target = TARGET.get_or_init(|| {
        let v = std::env::var(ENV).ok()?;
        let (n, count) = match v.rsplit_once(':') {
            Some((n, c)) => (n.to_owned(), c.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some((n, count.max(1)))
    });
    if let Some((n, count)) = target
        && n == name
        && PASSED.fetch_add(1, Ordering::SeqCst) + 1 == *count
    {
        let _ = writeln!(std::io::stderr(), "crash point {name}: aborting");
        std::process::abort();
    }
}
