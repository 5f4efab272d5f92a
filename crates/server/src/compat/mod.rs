//! The center's compatibility engine: each tenant's current catalog, the fleet index, judgement
//! of every report, re-judgement of the fleet after a catalog change, and the worker that acts
//! on findings (version-change jobs, advice notifications, units taken out of service). See
//! ARCHITECTURE.md, "Compatibility".
//!
//! This file holds the catalogs and the fleet index and re-judges; `decide` the decisions free
//! of IO (judgement, software steps, advice), `worker` the worker that acts on them, `notice`
//! notifications to devices, `units` units taken out of service, `api` the HTTP handlers.

pub mod api;
pub mod decide;
pub mod notice;
pub mod units;
pub mod worker;

use decide::{Changed, Current, Entry, actionable, hash_bits, judgement_of, rejudge_all};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use fleetcare_compat::{Catalog, CatalogError, DeviceFacts, Vocab};
use fleetcare_core::secret;
use fleetcare_core::{DeviceId, Structure};
use fleetcare_store::{DeviceKey, Judgement, Rejudged, Store, StoreError, TenantId};
use fleetcare_wire::compat::{self as w};
use tokio::sync::mpsc;

use crate::ctx::Ctx;

/// Devices whose judgements are written in one transaction during a re-judgement.
const WRITE_BATCH: usize = 500;
/// A batch of re-judgements and what storing it did (which were applied).
type BatchWritten = (Vec<Rejudged>, Result<Vec<bool>, StoreError>);
/// Re-judgement batches being written at once (the SQLite writer commits them together).
const WRITES_IN_FLIGHT: usize = 2;
/// Devices waiting for the worker at most; beyond it, a device waits for its next report.
const QUEUE: usize = 100_000;

/// Per tenant, per device id (shared strings, so a snapshot of the fleet allocates nothing).
type Index = HashMap<TenantId, HashMap<Arc<str>, Arc<Entry>>>;

pub struct Compat {
    pub vocab: Vocab,
    catalogs: RwLock<HashMap<TenantId, Arc<Current>>>,
    index: RwLock<Index>,
    queue: mpsc::Sender<DeviceKey>,
    receiver: Mutex<Option<mpsc::Receiver<DeviceKey>>>,
    pending: Mutex<HashSet<DeviceKey>>,
    /// Bumped on each catalog load; a re-judgement of an older generation stops.
    generation: Mutex<HashMap<TenantId, u64>>,
    /// Tenants being re-judged by this instance now.
    busy: Mutex<HashSet<TenantId>>,
    /// The fleet index has been loaded from the store.
    pub ready: AtomicBool,
    pub rejudged: AtomicU64,
}

impl std::fmt::Debug for Compat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compat").finish_non_exhaustive()
    }
}

impl Default for Compat {
    fn default() -> Self {
        Compat::new()
    }
}

/// Why a catalog load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Invalid(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Compat {
    pub fn new() -> Compat {
        let (tx, rx) = mpsc::channel(QUEUE);
        Compat {
            vocab: Vocab::new(),
            catalogs: RwLock::default(),
            index: RwLock::default(),
            queue: tx,
            receiver: Mutex::new(Some(rx)),
            pending: Mutex::default(),
            generation: Mutex::default(),
            busy: Mutex::default(),
            ready: AtomicBool::new(false),
            rejudged: AtomicU64::new(0),
        }
    }

    /// The tenant's current catalog.
    pub fn current(&self, tenant: TenantId) -> Option<Arc<Current>> {
        self.catalogs
            .read()
            .expect("catalogs")
            .get(&tenant)
            .cloned()
    }

    /// Facts and judgement of a structure against the tenant's catalog (if it has one).
    pub fn judge(
        &self,
        tenant: TenantId,
        structure: &Structure,
    ) -> Option<(DeviceFacts, Judgement)> {
        let cur = self.current(tenant)?;
        let facts = DeviceFacts::new(&self.vocab, structure.model(), structure.units());
        let j = judgement_of(&cur, &facts);
        Some((facts, j))
    }

    /// After a report was stored: keep the fleet index current, and have the worker act when
    /// the findings or the structure changed (`changed`), or the device just connected, if it
    /// has findings to act on or a unit out of service.
    pub fn after_ingest(
        &self,
        key: &DeviceKey,
        structure_hash: String,
        judged: Option<(DeviceFacts, Judgement)>,
        current: bool,
        changed: bool,
        connected: bool,
    ) {
        let Some((facts, j)) = judged else {
            return;
        };
        let now_actionable = actionable(&j);
        // A unit out of service (now, or before this report) may go back in service.
        let mut out_of_service = facts.units.iter().any(|u| !u.in_service);
        let mut was_actionable = false;
        if current {
            let entry = Arc::new(Entry::new(
                facts,
                hash_bits(&structure_hash),
                hash_bits(&j.hash),
                now_actionable,
            ));
            let old = self
                .index
                .write()
                .expect("fleet index")
                .entry(key.tenant)
                .or_default()
                .insert(Arc::from(key.device_id.as_str()), entry);
            if let Some(e) = &old {
                was_actionable = e.actionable.load(Ordering::Relaxed);
                out_of_service |= e.facts.units.iter().any(|u| !u.in_service);
            }
        }
        // A device that needs (or needed) a plan or advice, or has a unit out of service: act
        // when its findings or structure changed or it just connected.
        if (now_actionable || was_actionable || out_of_service) && (changed || connected) {
            self.enqueue(key.clone());
        }
    }

    /// Keep a device's facts in the index when its tenant has no catalog (diagnosis rules
    /// look at its units all the same).
    pub fn index_unjudged(&self, key: &DeviceKey, structure_hash: &str, facts: DeviceFacts) {
        self.index
            .write()
            .expect("fleet index")
            .entry(key.tenant)
            .or_default()
            .insert(
                Arc::from(key.device_id.as_str()),
                Arc::new(Entry::new(
                    facts,
                    hash_bits(structure_hash),
                    u128::MAX,
                    false,
                )),
            );
    }

    /// Ask the worker to act on a device (deduplicated; dropped when the queue is full: the
    /// device's next report asks again).
    pub fn enqueue(&self, key: DeviceKey) {
        if self.pending.lock().expect("pending").insert(key.clone())
            && self.queue.try_send(key.clone()).is_err()
        {
            self.pending.lock().expect("pending").remove(&key);
        }
    }

    /// Devices the fleet index holds for a tenant.
    pub fn indexed(&self, tenant: TenantId) -> usize {
        self.index
            .read()
            .expect("fleet index")
            .get(&tenant)
            .map_or(0, HashMap::len)
    }

    /// Make a catalog the tenant's current one; the new generation.
    fn install(&self, tenant: TenantId, cur: Current) -> u64 {
        self.catalogs
            .write()
            .expect("catalogs")
            .insert(tenant, Arc::new(cur));
        let mut g = self.generation.lock().expect("generation");
        let n = g.entry(tenant).or_default();
        *n += 1;
        *n
    }

    fn generation(&self, tenant: TenantId) -> u64 {
        self.generation
            .lock()
            .expect("generation")
            .get(&tenant)
            .copied()
            .unwrap_or(0)
    }

    /// Validate and store a new catalog revision, make it current, and re-judge the fleet in
    /// the background.
    pub async fn load_catalog(
        self: &Arc<Self>,
        st: &Ctx,
        tenant: TenantId,
        source: &str,
        by: &str,
    ) -> Result<(u64, fleetcare_compat::CatalogStats, u64), LoadError> {
        let catalog = Catalog::parse(source, &self.vocab)?;
        let stats = catalog.stats();
        let stats_json = serde_json::to_string(&stats_wire(stats)).expect("stats serialize");
        let digest = secret::hash(source);
        let revision = st
            .store
            .add_catalog_revision(tenant, by, &digest, &stats_json, source, st.clock.now_ms())
            .await?;
        let generation = self.install(tenant, Current { revision, catalog });
        st.devices
            .tell(crate::cluster::Message::Catalog { t: tenant })
            .await;
        let devices = st.store.count_devices(tenant).await?;
        let (me, st2) = (self.clone(), st.clone());
        tokio::spawn(async move { me.rejudge(&st2, tenant, generation).await });
        Ok((revision, stats, devices))
    }

    /// Re-judge every indexed device of a tenant against its current catalog. Judging runs on
    /// every core and streams the devices whose findings changed to the store while it goes;
    /// they are written in batches (each device guarded by its structure fingerprint, at most
    /// [`WRITES_IN_FLIGHT`] batches in flight so the group commit can join them), and the
    /// worker is told to act on them. A newer catalog stops it.
    ///
    /// Across instances the re-judgement of a tenant runs on one at a time (the lease
    /// `rejudge:<tenant>`); when it completes, the revision is recorded, and the instance that
    /// runs the background engines takes up any current revision not recorded as judged (one
    /// an instance's death or a newer catalog cut short).
    pub async fn rejudge(self: &Arc<Self>, st: &Ctx, tenant: TenantId, generation: u64) {
        if !self.busy.lock().expect("busy").insert(tenant) {
            return;
        }
        let lease = format!("rejudge:{tenant}");
        let done = st
            .devices
            .with_lease(&lease, self.rejudge_now(st, tenant, generation))
            .await
            .flatten();
        self.busy.lock().expect("busy").remove(&tenant);
        if let Some(revision) = done
            && let Err(e) = st
                .store
                .set_judged_revision(tenant, revision, st.clock.now_ms())
                .await
        {
            tracing::warn!(tenant, error = %e, "recording a finished re-judgement failed");
        }
    }

    /// Take up the re-judgements of current catalogs not recorded as finished.
    pub async fn rejudge_unfinished(self: Arc<Self>, st: &Ctx) {
        if !self.ready.load(Ordering::SeqCst) {
            return;
        }
        let current: Vec<(TenantId, u64)> = self
            .catalogs
            .read()
            .expect("catalogs")
            .iter()
            .map(|(t, c)| (*t, c.revision))
            .collect();
        for (tenant, revision) in current {
            match st.store.judged_revision(tenant).await {
                Ok(Some(r)) if r == revision => {}
                Ok(_) => {
                    tracing::info!(
                        tenant,
                        revision,
                        "taking up an unfinished fleet re-judgement"
                    );
                    let g = self.generation(tenant);
                    self.rejudge(st, tenant, g).await;
                }
                Err(e) => tracing::warn!(tenant, error = %e, "reading the judged revision failed"),
            }
        }
    }

    /// Another instance loaded a catalog: make the tenant's current revision ours too (the
    /// instance that loaded it re-judges the fleet).
    pub async fn reload_catalog(&self, st: &Ctx, tenant: TenantId) {
        let list = match st.store.current_catalogs().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "reading a catalog another instance loaded failed");
                return;
            }
        };
        for (t, rev) in list {
            if t != tenant || self.current(t).is_some_and(|c| c.revision == rev.revision) {
                continue;
            }
            let Some(source) = rev.source else { continue };
            match Catalog::parse(&source, &self.vocab) {
                Ok(catalog) => {
                    self.install(
                        t,
                        Current {
                            revision: rev.revision,
                            catalog,
                        },
                    );
                    // The instance that loaded it stores the judgements; this one's index
                    // must see the new names too (its rollouts plan with it).
                    self.relink(t);
                    tracing::info!(
                        tenant,
                        revision = rev.revision,
                        "catalog loaded on another instance"
                    );
                }
                Err(e) => {
                    tracing::error!(tenant, error = %e, "a catalog another instance loaded does not compile here")
                }
            }
        }
    }

    /// Another instance stored a new structure of a device: index it as the store has it.
    pub async fn refresh(&self, st: &Ctx, key: &DeviceKey) {
        match st.store.structure_of(key).await {
            Ok(Some(r)) => {
                if let Some((id, entry)) = self.entry_of(r) {
                    self.index
                        .write()
                        .expect("fleet index")
                        .entry(key.tenant)
                        .or_default()
                        .insert(id, entry);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(device = %key.device_id, error = %e, "reading a structure another instance stored failed")
            }
        }
    }

    /// A stored structure as an index entry.
    fn entry_of(&self, r: fleetcare_store::StructureRow) -> Option<(Arc<str>, Arc<Entry>)> {
        let (Some(json), Some(hash)) = (r.structure_json, r.structure_hash) else {
            return None;
        };
        let Ok(structure) = Structure::from_json(&r.model, &json) else {
            tracing::warn!(device = %r.key.device_id, "a stored structure does not read back");
            return None;
        };
        let facts = DeviceFacts::new(&self.vocab, structure.model(), structure.units());
        Some((
            Arc::from(r.key.device_id.as_str()),
            // Whether stored findings were actionable is not kept: assume they were if there
            // are any, so that a device that became compatible meanwhile gets its pending jobs
            // and notices closed.
            Arc::new(Entry::new(
                facts,
                hash_bits(&hash),
                r.findings_hash.as_deref().map_or(u128::MAX, hash_bits),
                r.findings_hash.as_deref().is_some_and(|h| !h.is_empty()),
            )),
        ))
    }

    /// Give the tenant's indexed devices the names the vocabulary learned since their facts
    /// were made (a catalog revision added a device model, unit model, revision or product a
    /// device had reported before): the same entries with those names as symbols, so that
    /// judgement, plans and rollout selection see them as the catalog defines them. Only
    /// devices with names no catalog knew are looked at; a device that reported meanwhile is
    /// left as it is (its facts are newer). How many were relinked.
    pub fn relink(&self, tenant: TenantId) -> usize {
        let stale: Vec<(Arc<str>, Arc<Entry>)> = self
            .index
            .read()
            .expect("fleet index")
            .get(&tenant)
            .map(|m| {
                m.iter()
                    .filter(|(_, e)| e.facts.has_local_names())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let fresh: Vec<(Arc<str>, Arc<Entry>, Arc<Entry>)> = stale
            .into_iter()
            .filter_map(|(id, old)| {
                let facts = old.facts.relinked(&self.vocab)?;
                let new = Arc::new(Entry::new(facts, old.structure_hash, 0, false));
                Some((id, old, new))
            })
            .collect();
        if fresh.is_empty() {
            return 0;
        }
        let mut index = self.index.write().expect("fleet index");
        let Some(devices) = index.get_mut(&tenant) else {
            return 0;
        };
        let mut n = 0;
        for (id, old, new) in fresh {
            if let Some(slot) = devices.get_mut(&id)
                && Arc::ptr_eq(slot, &old)
            {
                // Findings stored meanwhile were recorded on the old entry: carry them over.
                new.findings_hash
                    .store(old.findings_hash(), Ordering::Relaxed);
                new.actionable
                    .store(old.actionable.load(Ordering::Relaxed), Ordering::Relaxed);
                *slot = new;
                n += 1;
            }
        }
        n
    }

    /// Re-judge now; the revision judged if it ran to the end.
    async fn rejudge_now(
        self: &Arc<Self>,
        st: &Ctx,
        tenant: TenantId,
        generation: u64,
    ) -> Option<u64> {
        let cur = self.current(tenant)?;
        let started = Instant::now();
        // A revision not judged before may change what can be done for devices whose findings
        // stay the same; a restart's pass over the same revision need not look at them again.
        let again = match st.store.judged_revision(tenant).await {
            Ok(Some(r)) => r != cur.revision,
            _ => true,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Changed>(WRITE_BATCH * 4);
        let (me, cur2) = (self.clone(), cur.clone());
        let (total_tx, total_rx) = tokio::sync::oneshot::channel();
        let judging = tokio::task::spawn_blocking(move || {
            let relinked = me.relink(tenant);
            if relinked > 0 {
                tracing::info!(
                    tenant,
                    devices = relinked,
                    "devices with names the catalog did not know before are judged by their new definitions"
                );
            }
            let entries = me.snapshot(tenant);
            let _ = total_tx.send(entries.len());
            let act = |id: &str| {
                if let Ok(device_id) = DeviceId::parse(id) {
                    me.enqueue(DeviceKey { tenant, device_id });
                }
            };
            rejudge_all(&cur2, entries, again.then_some(&act), &tx);
            Instant::now()
        });
        let mut in_flight: tokio::task::JoinSet<BatchWritten> = tokio::task::JoinSet::new();
        let mut written = 0usize;
        let mut failed = false;
        let mut buf = Vec::with_capacity(WRITE_BATCH);
        loop {
            if self.generation(tenant) != generation {
                tracing::info!(
                    tenant,
                    "a newer catalog was loaded; this re-judgement stops"
                );
                return None; // dropping the receiver stops the judging threads
            }
            // Collect the next results while the last batches are written.
            if rx.recv_many(&mut buf, WRITE_BATCH).await == 0 {
                break;
            }
            while in_flight.len() >= WRITES_IN_FLIGHT {
                if let Some(done) = in_flight.join_next().await {
                    written += self.stored(done, &mut failed);
                }
            }
            if failed {
                return None;
            }
            let items: Vec<Rejudged> = buf
                .drain(..)
                .filter_map(|c| {
                    let device_id = DeviceId::parse(&c.id).ok()?;
                    Some(Rejudged {
                        key: DeviceKey { tenant, device_id },
                        structure_hash: c.structure_hash,
                        judgement: c.judgement,
                        had_findings: c.had_findings,
                    })
                })
                .collect();
            let (store, now) = (st.store.clone(), st.clock.now_ms());
            in_flight.spawn(async move {
                let t = Instant::now();
                let applied = store.apply_judgements(&items, now).await;
                tracing::debug!(
                    devices = items.len(),
                    ms = t.elapsed().as_millis() as u64,
                    "re-judgements stored"
                );
                (items, applied)
            });
        }
        while let Some(done) = in_flight.join_next().await {
            written += self.stored(done, &mut failed);
        }
        let total = total_rx.await.unwrap_or(0);
        let judged_in = match judging.await {
            Ok(at) => at.duration_since(started),
            Err(e) => {
                tracing::error!(error = %e, "re-judgement failed");
                return None;
            }
        };
        if failed {
            return None;
        }
        self.rejudged.fetch_add(total as u64, Ordering::Relaxed);
        st.metrics
            .compat_rejudge_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            tenant,
            revision = cur.revision,
            devices = total,
            changed = written,
            judged_ms = judged_in.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "fleet re-judged"
        );
        Some(cur.revision)
    }

    /// Index the re-judgements a batch stored and queue them for the worker; how many.
    fn stored(
        &self,
        done: Result<BatchWritten, tokio::task::JoinError>,
        failed: &mut bool,
    ) -> usize {
        let (items, applied) = match done {
            Ok((items, Ok(applied))) => (items, applied),
            Ok((_, Err(e))) => {
                tracing::error!(error = %e, "storing re-judgements failed; the devices' next reports judge them again");
                *failed = true;
                return 0;
            }
            Err(e) => {
                tracing::error!(error = %e, "storing re-judgements failed");
                *failed = true;
                return 0;
            }
        };
        let mut written = 0;
        for (r, ok) in items.into_iter().zip(applied) {
            if !ok {
                continue;
            }
            written += 1;
            let now = actionable(&r.judgement);
            let (structure, findings) =
                (hash_bits(&r.structure_hash), hash_bits(&r.judgement.hash));
            if self.set_findings(&r.key, structure, findings, now) || now {
                self.enqueue(r.key);
            }
        }
        written
    }

    /// Every device of a tenant in the fleet index (shared, nothing copied but pointers).
    pub fn snapshot(&self, tenant: TenantId) -> Vec<(Arc<str>, Arc<Entry>)> {
        self.index
            .read()
            .expect("fleet index")
            .get(&tenant)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// One device's entry in the fleet index.
    pub fn snapshot_one(&self, key: &DeviceKey) -> Option<Arc<Entry>> {
        self.index
            .read()
            .expect("fleet index")
            .get(&key.tenant)
            .and_then(|m| m.get(key.device_id.as_str()))
            .cloned()
    }

    /// The device's facts from the fleet index.
    pub fn facts(&self, key: &DeviceKey) -> Option<DeviceFacts> {
        self.index
            .read()
            .expect("fleet index")
            .get(&key.tenant)
            .and_then(|m| m.get(key.device_id.as_str()))
            .map(|e| e.facts.clone())
    }

    /// The device's facts as rules look at them (from the fleet index; `None` when the
    /// center holds no structure of it).
    pub fn device_ctx(&self, key: &DeviceKey) -> Option<fleetcare_diag::DeviceCtx> {
        let entry = self
            .index
            .read()
            .expect("fleet index")
            .get(&key.tenant)
            .and_then(|m| m.get(key.device_id.as_str()))
            .cloned()?;
        let f = &entry.facts;
        let text = |n| f.text(&self.vocab, n).to_string();
        let units = f
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| fleetcare_diag::UnitCtx {
                slot: text(&u.slot),
                kind: text(&u.kind),
                model: text(&u.model),
                software: f
                    .software
                    .iter()
                    .filter(|s| usize::from(s.unit) == i && s.active)
                    .map(|s| {
                        format!(
                            "{} {}",
                            text(&s.product),
                            s.version.as_ref().map(text).unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect();
        Some(fleetcare_diag::DeviceCtx {
            model: text(&f.model),
            units,
        })
    }

    /// Record a device's stored findings in the index (if its structure is still the one
    /// judged); whether they were actionable before.
    fn set_findings(
        &self,
        key: &DeviceKey,
        structure_hash: u128,
        findings_hash: u128,
        now: bool,
    ) -> bool {
        let index = self.index.read().expect("fleet index");
        match index
            .get(&key.tenant)
            .and_then(|m| m.get(key.device_id.as_str()))
        {
            Some(e) if e.structure_hash == structure_hash => {
                e.findings_hash
                    .store(findings_hash as u64, Ordering::Relaxed);
                e.actionable.swap(now, Ordering::Relaxed)
            }
            _ => false,
        }
    }
}

pub fn stats_wire(s: fleetcare_compat::CatalogStats) -> w::CatalogStats {
    w::CatalogStats {
        device_models: s.device_models as u64,
        unit_models: s.unit_models as u64,
        products: s.products as u64,
        releases: s.releases as u64,
        rules: s.rules as u64,
    }
}

/// Counts for `GET /api/v1/compat/fleet`.
pub async fn fleet(
    store: &Store,
    compat: &Compat,
    tenant: TenantId,
) -> Result<w::FleetCompat, StoreError> {
    let states = store.compat_states(tenant).await?;
    let kinds = store.finding_counts(tenant).await?;
    let mut by_model: BTreeMap<String, w::ModelCompat> = BTreeMap::new();
    let mut by_state = BTreeMap::new();
    let mut by_kind = BTreeMap::new();
    let mut devices = 0;
    for (model, state, n) in states {
        devices += n;
        *by_state.entry(state.clone()).or_insert(0) += n;
        let m = by_model
            .entry(model.clone())
            .or_insert_with(|| w::ModelCompat {
                model,
                devices: 0,
                by_state: BTreeMap::new(),
                by_kind: BTreeMap::new(),
            });
        m.devices += n;
        *m.by_state.entry(state).or_insert(0) += n;
    }
    for (model, kind, n) in kinds {
        *by_kind.entry(kind.clone()).or_insert(0) += n;
        if let Some(m) = by_model.get_mut(&model) {
            m.by_kind.insert(kind, n);
        }
    }
    Ok(w::FleetCompat {
        catalog_revision: compat.current(tenant).map(|c| c.revision),
        devices,
        by_state,
        by_kind,
        by_model: by_model.into_values().collect(),
    })
}
