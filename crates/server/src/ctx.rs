//! What an engine works with: the narrow handles of [`Ctx`]. The engines (compatibility,
//! delivery, diagnosis, rollouts) take a `&Ctx` and their collaborators at construction;
//! only HTTP handlers (and the cluster listener, which acts for other instances) see the
//! whole `AppState`, which is a `Ctx` plus what serving requests needs.

use std::sync::Arc;

use fleetcare_core::clock::Clock;
use fleetcare_store::Store;
use tokio::sync::watch;

use crate::cluster::Devices;
use crate::cluster::events::Events;
use crate::metrics::Metrics;

/// The handles an engine may use (reached through `Deref`: `ctx.store`…). One `Arc`: a
/// clone is one atomic increment, not one per handle.
#[derive(Clone)]
pub struct Ctx(Arc<Handles>);

impl Ctx {
    pub fn new(handles: Handles) -> Ctx {
        Ctx(Arc::new(handles))
    }
}

impl std::ops::Deref for Ctx {
    type Target = Handles;
    fn deref(&self) -> &Handles {
        &self.0
    }
}

/// What a [`Ctx`] holds.
pub struct Handles {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The sender to devices (wherever they are connected) and to the other instances.
    pub devices: Devices,
    /// Change notices for the dashboard's live pages.
    pub events: Arc<Events>,
    /// Becomes `true` when the center shuts down.
    pub shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}
