//! Running agents inside another program: the simulator's virtual devices, the demo, the LAN
//! proxy (one agent per printer), or an integrator's own process.
//!
//! [`crate::Agent`]'s builder methods hand in what a standalone agent makes for itself: where
//! its state lives ([`crate::Agent::in_memory`]), the HTTP client, the unit installers, the
//! error journal, and an [`Observer`] that is told what happened and how long it took.

use std::time::Duration;

use fleetcare_wire::Trigger;

/// Told of what an agent did, with its latency (for the simulator's statistics). Every
/// method has an empty default; they are called on the agent's own tasks, so they must be
/// quick.
pub trait Observer: Send + Sync + 'static {
    /// The center acknowledged a structure report (`took`: the request alone).
    fn report_acked(&self, _trigger: Trigger, _took: Duration) {}
    /// A report could not be delivered now (it stays queued).
    fn report_failed(&self) {}
    /// The center acknowledged `events` error events in one batch.
    fn errors_acked(&self, _events: usize, _took: Duration) {}
    /// The push channel came up (`push` or `poll`), `took` after the attempt began.
    fn connected(&self, _via: &str) {}
    fn disconnected(&self) {}
    /// The device enrolled (`took`: the request alone).
    fn enrolled(&self, _took: Duration) {}
    /// A job ended on the device with this state (`succeeded`, `failed`, `reverted`, …).
    fn job_finished(&self, _job: u64, _state: &str) {}
}

/// Observes nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {}
