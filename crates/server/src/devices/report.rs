//! What follows a stored report. Storing, judging and acknowledging a report is the device
//! protocol's (`protocol::take_report`); everything else that reacts to a report — the
//! rollout engine, the other instances' fleet indexes, the judgement of operating info,
//! supplies running out, the hub's last-report watch, the dashboard's live pages — is a
//! subscriber registered in
//! `AppState::new`, called in that order after the report is durable and before its ack.
//! A subscriber holds what it needs itself (it was given it when it was made).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use fleetcare_store::DeviceKey;
use fleetcare_wire::Trigger;

/// A report the store has just made durable, as its subscribers see it.
#[derive(Debug)]
pub struct Stored<'a> {
    pub key: &'a DeviceKey,
    pub seq: u64,
    pub trigger: Trigger,
    pub received_at_ms: i64,
    pub observed_at_ms: i64,
    /// The newest report of the device (an older one, arriving late, changes no state).
    pub current: bool,
    /// Stored before (a retry): nothing is new.
    pub duplicate: bool,
    /// Structure changes the report recorded.
    pub changes: u32,
    /// The report's operating info, if it had any.
    pub operating: Option<&'a BTreeMap<String, f64>>,
    /// Supplies whose state changed with the report, or new cartridges.
    pub supply_changes: &'a [fleetcare_store::SupplyChange],
    /// The device's first report of its UTC day (by observed time): daily judgements of its
    /// history run then.
    pub keyframe: bool,
}

/// What a subscriber's work on one report ends in (most finish at once: [`done`]).
pub type Work<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Work that is already finished.
pub fn done<'a>() -> Work<'a> {
    Box::pin(std::future::ready(()))
}

/// Something that reacts to every stored report. It decides for itself which reports concern
/// it; it cannot fail the report (the report is durable already): it logs what goes wrong.
pub trait AfterReport: Send + Sync {
    fn stored<'a>(&'a self, r: &'a Stored<'a>) -> Work<'a>;
}
