//! Change notices for the dashboard's live pages: an in-memory broadcast of "this changed",
//! never of what it changed to (a page fetches that itself). A lost notice only delays a
//! refresh; a subscriber that fell behind is told to refresh everything.

use std::collections::BTreeSet;
use std::sync::Arc;

use fleetcare_store::TenantId;
use tokio::sync::{Semaphore, broadcast};

/// Notices held for subscribers that are behind; past it they get `resync`.
const BACKLOG: usize = 4096;
/// Live streams (browser tabs) an instance serves at once.
pub const MAX_STREAMS: usize = 512;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// A device's report, error batch, job, connection or troubles.
    Device(Arc<str>),
    /// Troubles opened, acknowledged or resolved.
    Troubles,
    /// A rollout moved, or was paused, resumed, aborted, approved or created.
    Rollouts,
}

#[derive(Debug, Clone)]
pub struct Notice {
    pub tenant: TenantId,
    pub topic: Topic,
}

/// The event names a page section may listen to.
pub const FLEET: &str = "fleet";
pub const TROUBLES: &str = "troubles";
pub const ROLLOUTS: &str = "rollouts";
/// Sent to a subscriber that missed notices: every section refreshes.
pub const RESYNC: &str = "resync";

/// The event name of one device's changes.
pub fn device_event(id: &str) -> String {
    format!("device-{id}")
}

impl Notice {
    /// The event names this notice stands for.
    pub fn names(&self, into: &mut BTreeSet<String>) {
        into.insert(FLEET.to_owned());
        match &self.topic {
            Topic::Device(id) => {
                into.insert(device_event(id));
            }
            Topic::Troubles => {
                into.insert(TROUBLES.to_owned());
            }
            Topic::Rollouts => {
                into.insert(ROLLOUTS.to_owned());
            }
        }
    }
}

pub struct Events {
    tx: broadcast::Sender<Notice>,
    /// To the other instances (set by the bus when it starts, on a shared store).
    outbound: std::sync::OnceLock<tokio::sync::mpsc::Sender<Notice>>,
    /// Permits for live streams.
    pub streams: Arc<Semaphore>,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            tx: broadcast::channel(BACKLOG).0,
            outbound: std::sync::OnceLock::new(),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }
}

impl Events {
    /// Tell the live pages something changed, on this instance and (on a shared store) on
    /// the others. Never waits: a notice that finds the outbound queue full is dropped.
    pub fn notify(&self, tenant: TenantId, topic: Topic) {
        let out = self.outbound.get();
        if self.tx.receiver_count() == 0 && out.is_none() {
            return;
        }
        let n = Notice { tenant, topic };
        if let Some(out) = out {
            let _ = out.try_send(n.clone());
        }
        self.deliver(n);
    }

    /// A device changed.
    pub fn device(&self, tenant: TenantId, device_id: &str) {
        if self.tx.receiver_count() > 0 || self.outbound.get().is_some() {
            self.notify(tenant, Topic::Device(device_id.into()));
        }
    }

    /// A notice for this instance's pages only (one that came from another instance).
    pub fn deliver(&self, n: Notice) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(n);
        }
    }

    /// Send notices to other instances through `out` (once; later calls are ignored).
    pub fn send_out(&self, out: tokio::sync::mpsc::Sender<Notice>) {
        let _ = self.outbound.set(out);
    }

    /// Whether any live page may be watching: one of this instance's, or (on a shared
    /// store) another instance's.
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0 || self.outbound.get().is_some()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.tx.subscribe()
    }
}

impl crate::devices::report::AfterReport for Events {
    /// The device's live page shows the new report.
    fn stored<'a>(
        &'a self,
        r: &'a crate::devices::report::Stored<'a>,
    ) -> crate::devices::report::Work<'a> {
        if !r.duplicate {
            self.device(r.key.tenant, r.key.device_id.as_str());
        }
        crate::devices::report::done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_their_events_and_reach_subscribers_of_any_tenant() {
        let ev = Events::default();
        ev.device(1, "nobody-listens");
        let mut rx = ev.subscribe();
        ev.device(1, "dev-1");
        ev.notify(2, Topic::Rollouts);
        let mut names = BTreeSet::new();
        let n = rx.try_recv().expect("first");
        assert_eq!(n.tenant, 1);
        n.names(&mut names);
        assert_eq!(
            names.iter().map(String::as_str).collect::<Vec<_>>(),
            ["device-dev-1", "fleet"]
        );
        names.clear();
        rx.try_recv().expect("second").names(&mut names);
        assert!(names.contains(ROLLOUTS) && names.contains(FLEET));
        assert!(
            rx.try_recv().is_err(),
            "the notice before subscribing is not kept"
        );
    }
}
