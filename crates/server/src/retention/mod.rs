//! Retention: each tenant keeps each kind of data for its days, and the pruner deletes what is
//! past them, a few devices per transaction, on the engines' lease (see ARCHITECTURE.md,
//! "Data lifecycle: retention"). `api.rs`: the settings for operators.

pub mod api;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use fleetcare_store::{DeviceKey, PruneWork, RETENTION_KINDS, TenantId};

use crate::ctx::Ctx;
use crate::metrics::KindLabel;

/// Rows of one kind one statement deletes for one device, at most.
pub const PRUNE_ROWS: u32 = 100;
/// Devices in one pruning transaction.
pub const PRUNE_DEVICES: usize = 64;
/// Pruning transactions per sweep round (every 5 s): a pass over a million devices takes
/// about five and a half hours when there is little to delete.
pub const PRUNE_TRANSACTIONS: usize = 4;

const DAY_MS: i64 = 86_400_000;

/// The pruner's place in its walk over the fleet. It lives in memory: after a restart the
/// walk starts over, which deletes nothing twice.
#[derive(Default)]
pub struct Pruner {
    walk: Mutex<Walk>,
}

#[derive(Default)]
struct Walk {
    /// Devices next in line; one that still had rows to delete stays at the front.
    queue: VecDeque<DeviceKey>,
    /// The last device read into the queue.
    cursor: Option<DeviceKey>,
}

/// The cutoff (milliseconds) before which a kind's rows go, if the kind is pruned at all.
fn cutoff(
    overrides: &HashMap<TenantId, BTreeMap<String, u64>>,
    tenant: TenantId,
    kind: &str,
    now_ms: i64,
) -> Option<i64> {
    let default = RETENTION_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, d)| *d);
    let days = overrides
        .get(&tenant)
        .and_then(|m| m.get(kind))
        .copied()
        .unwrap_or(default);
    (days > 0).then(|| now_ms - i64::try_from(days).unwrap_or(i64::MAX / DAY_MS) * DAY_MS)
}

impl Pruner {
    /// One round: up to `PRUNE_TRANSACTIONS` transactions of `PRUNE_DEVICES` devices each.
    pub async fn round(&self, st: &Ctx) {
        let overrides = match st.store.retention_overrides().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "reading retention settings failed");
                return;
            }
        };
        for _ in 0..PRUNE_TRANSACTIONS {
            let Some(batch) = self.next_devices(st).await else {
                return;
            };
            let now = st.clock.now_ms();
            let work: Vec<PruneWork> = batch
                .iter()
                .map(|key| PruneWork {
                    key: key.clone(),
                    reports_before: cutoff(&overrides, key.tenant, "reports", now),
                    events_before: cutoff(&overrides, key.tenant, "error_events", now),
                })
                .collect();
            let done = match st.store.prune_devices(&work, PRUNE_ROWS).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning failed; the devices wait for the next round");
                    self.requeue(batch);
                    return;
                }
            };
            let (mut reports, mut events) = (0, 0);
            let mut again = Vec::new();
            for (key, (r, e)) in batch.into_iter().zip(done) {
                reports += r;
                events += e;
                if r >= u64::from(PRUNE_ROWS) || e >= u64::from(PRUNE_ROWS) {
                    again.push(key);
                }
            }
            st.metrics
                .pruned_rows
                .get_or_create(&KindLabel { kind: "reports" })
                .inc_by(reports);
            st.metrics
                .pruned_rows
                .get_or_create(&KindLabel {
                    kind: "error_events",
                })
                .inc_by(events);
            self.requeue(again);
        }
    }

    /// The next devices to prune, reading further into the fleet when the queue runs low;
    /// `None` when a walk just ended (the next round starts the next walk).
    async fn next_devices(&self, st: &Ctx) -> Option<Vec<DeviceKey>> {
        let cursor = {
            let w = self.walk.lock().expect("walk");
            if w.queue.len() >= PRUNE_DEVICES {
                None
            } else {
                Some(w.cursor.clone())
            }
        };
        if let Some(cursor) = cursor {
            let more = match st
                .store
                .devices_after(cursor.as_ref(), (4 * PRUNE_DEVICES) as u32)
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "reading devices to prune failed");
                    return None;
                }
            };
            let mut w = self.walk.lock().expect("walk");
            if more.is_empty() && w.queue.is_empty() {
                w.cursor = None;
                return None;
            }
            if let Some(last) = more.last() {
                w.cursor = Some(last.clone());
            }
            w.queue.extend(more);
        }
        let mut w = self.walk.lock().expect("walk");
        let n = w.queue.len().min(PRUNE_DEVICES);
        (n > 0).then(|| w.queue.drain(..n).collect())
    }

    /// Put devices back at the front of the queue (they have more to delete).
    fn requeue(&self, keys: Vec<DeviceKey>) {
        let mut w = self.walk.lock().expect("walk");
        for k in keys.into_iter().rev() {
            w.queue.push_front(k);
        }
    }
}
