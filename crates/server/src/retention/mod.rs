//! Retention: each tenant keeps each kind of data for its days, and the pruner deletes what is
//! past them, a few devices per transaction, on the engines' lease (see ARCHITECTURE.md,
//! "Data lifecycle: retention"). `api.rs`: the settings for operators.

pub mod api;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use fleetcare_store::{DeviceKey, Horizons, PruneWork, RETENTION_KINDS, TenantId};

use crate::ctx::Ctx;
use crate::metrics::KindLabel;

/// Rows of one kind one statement deletes for one device, at most.
pub const PRUNE_ROWS: u32 = 100;
/// Devices in one pruning transaction: small, so that a transaction holds the embedded
/// store's one writer for a few milliseconds and ingest's group commits slip in between
/// (64 made B1's slowest acknowledgements 40 ms slower while the pruner had work).
pub const PRUNE_DEVICES: usize = 16;
/// Pruning transactions per sweep round (every 5 s): a pass over a million devices takes
/// about five and a half hours when there is little to delete.
pub const PRUNE_TRANSACTIONS: usize = 16;

const DAY_MS: i64 = 86_400_000;

/// The pruner's place in its walk over the fleet. It lives in memory: after a restart the
/// walk starts over, which deletes nothing twice.
#[derive(Default)]
pub struct Pruner {
    walk: Mutex<Walk>,
    /// When partitions were last looked after (PostgreSQL).
    partitions_at: Mutex<Option<i64>>,
}

/// How often the pruner makes the coming partitions and drops the passed ones.
pub const PARTITIONS_EVERY_MS: i64 = 3_600_000;

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

/// Before when no tenant keeps a kind's rows: the longest retention anyone has (`None`: the
/// kind is kept forever by default or by some tenant).
fn horizon(
    overrides: &HashMap<TenantId, BTreeMap<String, u64>>,
    kind: &str,
    now_ms: i64,
) -> Option<i64> {
    let default = RETENTION_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, d)| *d);
    let mut longest = default;
    for days in overrides.values().filter_map(|m| m.get(kind)) {
        if *days == 0 || longest == 0 {
            return None;
        }
        longest = longest.max(*days);
    }
    (longest > 0).then(|| now_ms - i64::try_from(longest).unwrap_or(i64::MAX / DAY_MS) * DAY_MS)
}

impl Pruner {
    /// One round: partitions looked after if their hour has come, then up to
    /// `PRUNE_TRANSACTIONS` transactions of `PRUNE_DEVICES` devices each.
    pub async fn round(&self, st: &Ctx) {
        let overrides = match st.store.retention_overrides().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "reading retention settings failed");
                return;
            }
        };
        let now = st.clock.now_ms();
        let horizons = Horizons {
            reports: horizon(&overrides, "reports", now),
            error_events: horizon(&overrides, "error_events", now),
        };
        self.partitions(st, now, &horizons).await;
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
            let done = match st.store.prune_devices(&work, PRUNE_ROWS, &horizons).await {
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

    /// Make the coming partitions and drop the passed ones, once an hour (PostgreSQL).
    async fn partitions(&self, st: &Ctx, now: i64, horizons: &Horizons) {
        if !st.store.partitioned() {
            return;
        }
        {
            let mut at = self.partitions_at.lock().expect("partitions_at");
            if at.is_some_and(|t| now - t < PARTITIONS_EVERY_MS) {
                return;
            }
            *at = Some(now);
        }
        match st.store.maintain_partitions(now, horizons).await {
            Ok(work) => {
                for (table, _, gone, _) in work.dropped {
                    st.metrics
                        .pruned_rows
                        .get_or_create(&KindLabel { kind: table })
                        .inc_by(gone);
                }
            }
            Err(e) => {
                // Tried again next round; rows meanwhile go to the default partition.
                *self.partitions_at.lock().expect("partitions_at") =
                    Some(now - PARTITIONS_EVERY_MS + 60_000);
                tracing::warn!(error = %e, "partition upkeep failed; trying again in a minute");
            }
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
