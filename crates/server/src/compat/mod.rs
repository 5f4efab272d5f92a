//! The center's compatibility engine: each tenant's current catalog, the fleet index, judgement
//! of every report, re-judgement of the fleet after a catalog change, and the worker that acts
//! on findings (version-change jobs, advice notifications, units taken out of service). See
//! ARCHITECTURE.md, "Compatibility".

pub mod api;
pub mod units;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use fleetcare_compat::advice::HardwareChange;
use fleetcare_compat::render::Rendered;
use fleetcare_compat::{
    Catalog, CatalogError, DeviceFacts, FindingKind, Name, PlanOutcome, Policy, Recommendation,
    State, Step, Vocab,
};
use fleetcare_core::secret;
use fleetcare_core::{DeviceId, Structure};
use fleetcare_store::{
    DeviceKey, FindingRow, Judgement, NewJob, NewNotification, PolicyRecord, Rejudged, Store,
    StoreError, TenantId,
};
use fleetcare_wire::compat::{self as w, FindingSubject};
use fleetcare_wire::device::Command;
use tokio::sync::mpsc;

use crate::AppState;

/// Longest a plan search may take in the worker.
pub const PLAN_BUDGET: Duration = Duration::from_millis(200);
/// Longest the search for advice may take.
pub const ADVICE_BUDGET: Duration = Duration::from_millis(500);
/// Devices whose judgements are written in one transaction during a re-judgement.
const WRITE_BATCH: usize = 500;
/// A batch of re-judgements and what storing it did (which were applied).
type BatchWritten = (Vec<Rejudged>, Result<Vec<bool>, StoreError>);
/// Re-judgement batches being written at once (the SQLite writer commits them together).
const WRITES_IN_FLIGHT: usize = 2;
/// Devices waiting for the worker at most; beyond it, a device waits for its next report.
const QUEUE: usize = 100_000;

/// A tenant's catalog as the center uses it.
#[derive(Debug)]
pub struct Current {
    pub revision: u64,
    pub catalog: Catalog,
}

/// What the fleet index keeps of a device.
#[derive(Debug)]
pub struct Entry {
    pub facts: DeviceFacts,
    /// The structure's fingerprint (the store keeps it as 32 hex digits).
    pub structure_hash: u128,
    /// The stored findings' hash (see [`hash_bits`]), low 64 bits: enough to tell a change.
    findings_hash: AtomicU64,
    /// The stored findings call for the worker (see [`actionable`]).
    actionable: AtomicBool,
}

impl Entry {
    fn new(
        facts: DeviceFacts,
        structure_hash: u128,
        findings_hash: u128,
        actionable: bool,
    ) -> Entry {
        Entry {
            facts,
            structure_hash,
            findings_hash: AtomicU64::new(findings_hash as u64),
            actionable: AtomicBool::new(actionable),
        }
    }

    fn findings_hash(&self) -> u64 {
        self.findings_hash.load(Ordering::Relaxed)
    }
}

/// Findings the worker acts on: a software plan or hardware advice may follow.
pub fn actionable(j: &Judgement) -> bool {
    j.findings.iter().any(|f| {
        FindingKind::parse(&f.kind).is_some_and(|k| {
            k.software_fixable() || k.hardware() || k == FindingKind::UnknownUnitModel
        })
    })
}

/// A stored hash (hex) as bits: `""` (no findings) is 0, anything unreadable (`"unjudged"`)
/// is `u128::MAX`, which no judgement produces.
pub fn hash_bits(hex: &str) -> u128 {
    if hex.is_empty() {
        return 0;
    }
    u128::from_str_radix(hex, 16).unwrap_or(u128::MAX)
}

/// The stored form of a structure fingerprint.
pub fn hash_hex(bits: u128) -> String {
    format!("{bits:032x}")
}

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

/// A judgement for the store: rendered findings, their hash, the device's state.
pub fn judgement_of(cur: &Current, facts: &DeviceFacts) -> Judgement {
    let (hash, rendered) = findings_of(cur, facts);
    judgement(cur, hash, rendered)
}

/// A device's findings, rendered, and their hash (`""` when there are none).
fn findings_of(cur: &Current, facts: &DeviceFacts) -> (String, Vec<Rendered>) {
    let findings = cur.catalog.judge(facts);
    if findings.is_empty() {
        return (String::new(), Vec::new());
    }
    let rendered: Vec<Rendered> = findings
        .iter()
        .map(|f| cur.catalog.render(facts, f))
        .collect();
    let keys: Vec<&str> = rendered.iter().map(|r| r.key.as_str()).collect();
    (secret::hash(&keys.join("\n"))[..32].to_owned(), rendered)
}

/// The judgement to store for rendered findings.
fn judgement(cur: &Current, hash: String, rendered: Vec<Rendered>) -> Judgement {
    Judgement {
        revision: cur.revision,
        hash,
        state: State::judged(rendered.iter().map(|r| r.kind))
            .as_str()
            .into(),
        findings: rendered.into_iter().map(finding_row).collect(),
    }
}

fn finding_row(r: Rendered) -> FindingRow {
    let subject = FindingSubject {
        units: r
            .units
            .into_iter()
            .map(|u| w::FindingUnit {
                slot: u.slot,
                kind: u.kind,
                model: u.model,
                hw_revision: u.hw_revision,
            })
            .collect(),
        software: r
            .software
            .into_iter()
            .map(|s| w::FindingSoftware {
                slot: s.slot,
                product: s.product,
                maker: s.maker,
                version: s.version,
            })
            .collect(),
    };
    FindingRow {
        key: r.key,
        kind: r.kind.as_str().into(),
        rule: r.rule,
        subject_json: serde_json::to_string(&subject).expect("subjects serialize"),
        explanation: r.explanation,
    }
}

/// A plan's steps for the wire (slot and maker names from the facts and the catalog).
pub fn software_steps(
    catalog: &Catalog,
    facts: &DeviceFacts,
    steps: &[Step],
) -> Vec<w::SoftwareStep> {
    steps
        .iter()
        .map(|s| w::SoftwareStep {
            slot: facts_text(catalog, facts, &facts.units[s.unit as usize].slot),
            product: catalog.text(s.product).to_string(),
            maker: catalog
                .product(s.product)
                .map(|p| catalog.text(p.maker).to_string())
                .unwrap_or_default(),
            from: s.from.as_ref().map(ToString::to_string),
            to: s.to.to_string(),
            action: s.action.as_str().into(),
        })
        .collect()
}

fn facts_text(catalog: &Catalog, facts: &DeviceFacts, n: &Name) -> String {
    facts.text(&catalog.vocab, n).to_string()
}

/// Recommendations for the wire.
pub fn recommendations(
    catalog: &Catalog,
    facts: &DeviceFacts,
    recs: &[Recommendation],
) -> Vec<w::Recommendation> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| w::Recommendation {
            rank: u32::try_from(i + 1).unwrap_or(u32::MAX),
            hardware: r
                .changes
                .iter()
                .map(|c| {
                    let u = &facts.units[c.unit() as usize];
                    let (action, to_model, to_rev) = match c {
                        HardwareChange::Replace {
                            model, hw_revision, ..
                        } => (
                            "replace",
                            Some(catalog.text(*model).to_string()),
                            hw_revision.map(|r| catalog.text(r).to_string()),
                        ),
                        HardwareChange::OutOfService { .. } => ("out_of_service", None, None),
                    };
                    w::HardwareStep {
                        slot: facts_text(catalog, facts, &u.slot),
                        action: action.into(),
                        from_model: facts_text(catalog, facts, &u.model),
                        from_hw_revision: u
                            .hw_revision
                            .as_ref()
                            .map(|r| facts_text(catalog, facts, r))
                            .unwrap_or_default(),
                        to_model,
                        to_hw_revision: to_rev,
                    }
                })
                .collect(),
            software: software_steps(catalog, &r.after, &r.steps),
            summary: catalog.describe_recommendation(facts, r),
        })
        .collect()
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
        st: &AppState,
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
        crate::cluster::tell(st, crate::cluster::Message::Catalog { t: tenant }).await;
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
    pub async fn rejudge(self: &Arc<Self>, st: &AppState, tenant: TenantId, generation: u64) {
        if !self.busy.lock().expect("busy").insert(tenant) {
            return;
        }
        let lease = format!("rejudge:{tenant}");
        let done = crate::cluster::with_lease(st, &lease, self.rejudge_now(st, tenant, generation))
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
    pub async fn rejudge_unfinished(self: Arc<Self>, st: &AppState) {
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
    pub async fn reload_catalog(&self, st: &AppState, tenant: TenantId) {
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
    pub async fn refresh(&self, st: &AppState, key: &DeviceKey) {
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
        st: &AppState,
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

    /// At start: every tenant's current catalog, the fleet index from the store, then a
    /// re-judgement of every tenant (only changed findings are written).
    pub async fn start(self: Arc<Self>, st: AppState) {
        match st.store.current_catalogs().await {
            Ok(list) => {
                for (tenant, rev) in list {
                    let Some(source) = rev.source else { continue };
                    match Catalog::parse(&source, &self.vocab) {
                        Ok(catalog) => {
                            self.install(
                                tenant,
                                Current {
                                    revision: rev.revision,
                                    catalog,
                                },
                            );
                        }
                        Err(e) => tracing::error!(tenant, revision = rev.revision, error = %e,
                            "a stored catalog no longer compiles; the tenant has no catalog until one is loaded"),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the catalogs failed"),
        }
        let mut after: Option<DeviceKey> = None;
        let mut loaded = 0usize;
        loop {
            let rows = match st.store.structures(after.as_ref(), 5000).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "loading the fleet index failed");
                    return;
                }
            };
            let Some(last) = rows.last() else { break };
            after = Some(last.key.clone());
            let mut index = self.index.write().expect("fleet index");
            for r in rows {
                let tenant = r.key.tenant;
                if let Some((id, entry)) = self.entry_of(r) {
                    index.entry(tenant).or_default().insert(id, entry);
                    loaded += 1;
                }
            }
        }
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!(devices = loaded, "fleet index loaded");
        let tenants: Vec<TenantId> = self
            .catalogs
            .read()
            .expect("catalogs")
            .keys()
            .copied()
            .collect();
        for t in tenants {
            let g = self.generation(t);
            self.rejudge(&st, t, g).await;
        }
    }

    /// The worker: act on each device queued (see the module documentation).
    pub async fn run_worker(self: Arc<Self>, st: AppState) {
        let Some(mut rx) = self.receiver.lock().expect("receiver").take() else {
            return;
        };
        while let Some(key) = rx.recv().await {
            self.pending.lock().expect("pending").remove(&key);
            if let Err(e) = self.act(&st, &key).await {
                tracing::warn!(device = %key.device_id, error = %e, "acting on compatibility failed");
            }
        }
    }

    async fn act(&self, st: &AppState, key: &DeviceKey) -> Result<(), StoreError> {
        let Some(cur) = self.current(key.tenant) else {
            return Ok(());
        };
        let Some(rec) = st.store.device(key).await? else {
            return Ok(());
        };
        let Some(structure) = rec.structure else {
            return Ok(());
        };
        // Units out of service whose slot holds a unit that works now go back first.
        crate::compat::units::reconcile(st, key, &cur, &structure).await?;
        let policy = st.store.policy(key.tenant).await?;
        // Reads first: write only what changes.
        let open_jobs = st.store.open_jobs(key).await?;
        let advised = st
            .store
            .notifications(key, false, 50)
            .await?
            .iter()
            .any(|n| n.kind == "compat_advice");
        // Judging, planning and searching for advice are CPU work: off the async runtime.
        let plan_policy = Policy::parse(&policy.plan).unwrap_or_default();
        let (vocab, cur2, structure2) = (self.vocab.clone(), cur.clone(), structure.clone());
        let started = Instant::now();
        let d = tokio::task::spawn_blocking(move || {
            let facts = DeviceFacts::new(&vocab, structure2.model(), structure2.units());
            decide(&cur2, &facts, &structure2, plan_policy)
        })
        .await
        .map_err(|e| StoreError::Db(format!("the compatibility decision failed: {e}")))?;
        st.metrics
            .compat_plan_seconds
            .observe(started.elapsed().as_secs_f64());
        // The stored state was judged before any plan was searched: settle it.
        if rec.compat_state.as_deref() != Some(d.state)
            && st
                .store
                .settle_compat_state(key, &d.findings_hash, d.state)
                .await?
        {
            st.events.device(key.tenant, key.device_id.as_str());
        }
        let now = st.clock.now_ms();
        let pending = open_jobs.iter().any(|j| {
            j.origin == "compat" && matches!(j.state.as_str(), "awaiting_approval" | "queued")
        });
        // A device that cannot install gets no job; its plan says why.
        let blocked = rec.install_blocked.as_deref();
        if (d.job_steps.is_none() || blocked.is_some()) && pending {
            let why = match blocked {
                Some(why) => format!("the device cannot install software: {why}"),
                None => "the device needs no software change now".into(),
            };
            st.store
                .cancel_pending_jobs(key, "compat", &why, now)
                .await?;
        }
        if let Some(steps) = d.job_steps.filter(|_| blocked.is_none()) {
            self.ensure_job(st, key, &cur, steps, &policy, &open_jobs)
                .await?;
        }
        match d.advice {
            Some(a) => self.advise(st, key, &cur, a, &policy).await?,
            None if advised => {
                st.store
                    .close_notifications(key, "compat_advice", now)
                    .await?;
            }
            None => {}
        }
        Ok(())
    }

    async fn ensure_job(
        &self,
        st: &AppState,
        key: &DeviceKey,
        cur: &Current,
        steps: Vec<w::SoftwareStep>,
        policy: &PolicyRecord,
        open: &[fleetcare_store::JobRecord],
    ) -> Result<(), StoreError> {
        if policy.fix == "off" {
            return Ok(());
        }
        let steps_json = serde_json::to_string(&steps).expect("steps serialize");
        if open
            .iter()
            .any(|j| !matches!(j.state.as_str(), "awaiting_approval" | "queued"))
        {
            return Ok(()); // one change at a time: a job is running
        }
        if let Some(same) = open
            .iter()
            .find(|j| j.origin == "compat" && j.steps_json == steps_json)
        {
            if same.state == "queued" {
                crate::cluster::send(st, key, Command::JobsAvailable).await;
            }
            return Ok(());
        }
        let now = st.clock.now_ms();
        if open.iter().any(|j| j.origin == "compat") {
            st.store
                .cancel_pending_jobs(key, "compat", "replaced by a newer compatibility plan", now)
                .await?;
        }
        let state = if policy.fix == "automatic" {
            "queued"
        } else {
            "awaiting_approval"
        };
        let ttl_ms = i64::try_from(policy.job_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let id = st
            .store
            .create_job(
                key,
                &NewJob {
                    origin: "compat".into(),
                    state: state.into(),
                    steps_json,
                    catalog_revision: Some(cur.revision),
                    created_by: "center (compatibility plan)".into(),
                    expires_at_ms: now.saturating_add(ttl_ms),
                },
                now,
            )
            .await?;
        st.metrics.jobs_created.inc();
        tracing::info!(device = %key.device_id, job = id, state, "version-change job created");
        if state == "queued" {
            crate::cluster::send(st, key, Command::JobsAvailable).await;
        }
        Ok(())
    }

    async fn advise(
        &self,
        st: &AppState,
        key: &DeviceKey,
        cur: &Current,
        a: Advice,
        policy: &PolicyRecord,
    ) -> Result<(), StoreError> {
        let Advice {
            summary,
            recommendations: wire_recs,
            key: notice_key,
            out_of_service,
        } = a;
        let notice = NewNotification {
            key: notice_key,
            kind: "compat_advice".into(),
            title: format!("{}: a hardware change is needed", key.device_id),
            body_json: serde_json::to_string(&NotificationBody {
                summary: summary.clone(),
                recommendations: wire_recs.clone(),
                switched_to: None,
            })
            .expect("bodies serialize"),
            catalog_revision: Some(cur.revision),
            replaces: true,
        };
        let now = st.clock.now_ms();
        if let Some(id) = st.store.notify(key, &notice, now).await? {
            st.metrics.notifications.inc();
            push_notification(st, key, id, &notice, now).await?;
        }
        // Where policy allows: take an optional incompatible unit out of service, so the
        // device keeps working without it until the hardware is changed.
        if policy.out_of_service
            && let Some((slot, serial, switched_to)) = out_of_service
        {
            let reason = format!(
                "the {slot} does not work in this configuration; the device keeps working without it until it is replaced"
            );
            crate::compat::units::take_out(
                st,
                key,
                fleetcare_store::units::UnitService {
                    slot,
                    serial,
                    origin: fleetcare_store::units::BY_POLICY.into(),
                    taken_by: "center (compatibility policy)".into(),
                    reason,
                    switched_to,
                    taken_at_ms: now,
                },
                &summary,
                wire_recs,
                Some(cur.revision),
            )
            .await?;
        }
        Ok(())
    }
}

/// Tell a device of a notification stored for it, wherever it is connected (an offline
/// device fetches its open notifications when it connects).
pub async fn push_notification(
    st: &AppState,
    key: &DeviceKey,
    id: u64,
    n: &NewNotification,
    now: i64,
) -> Result<(), StoreError> {
    let body: NotificationBody = serde_json::from_str(&n.body_json).unwrap_or_default();
    let notification = w::Notification {
        id,
        kind: n.kind.clone(),
        title: n.title.clone(),
        summary: body.summary,
        recommendations: body.recommendations,
        created_at: fleetcare_core::clock::rfc3339(now),
        delivered_at: None,
        switched_to: body.switched_to,
    };
    if crate::cluster::send(st, key, Command::Notify { notification })
        .await
        .is_some()
    {
        st.store.mark_delivered(key.tenant, &[id], now).await?;
    }
    Ok(())
}

/// What the worker decided for a device (computed off the async runtime).
struct Decision {
    /// A software plan with changes: the job to have.
    job_steps: Option<Vec<w::SoftwareStep>>,
    /// Hardware advice to notify.
    advice: Option<Advice>,
    /// The device's state now that its plan is known.
    state: &'static str,
    /// The findings' hash as the store keeps it (`""`: none).
    findings_hash: String,
}

struct Advice {
    summary: String,
    recommendations: Vec<w::Recommendation>,
    /// One open notification per set of findings.
    key: String,
    /// `(slot, serial, slot that takes over)` of an optional unit that does not work here and
    /// can be taken out of service (if the policy allows).
    out_of_service: Option<(String, String, Option<String>)>,
}

/// What software or hardware can do for a device, judged now against a catalog: the CPU
/// part that the worker and the device's compatibility report share.
pub struct Assessment {
    pub findings: Vec<fleetcare_compat::Finding>,
    /// The plan search's outcome, when a finding software could fix asked for one.
    pub plan: Option<PlanOutcome>,
    /// Ranked configurations, when only hardware can fix it (or the catalog does not know a
    /// unit, or no software set fixes it).
    pub advice: Option<Vec<Recommendation>>,
    /// `compatible`, `software` (a plan fixes it), `hardware` or `unknown`.
    pub state: &'static str,
}

/// Judge a device, search its plan where software might fix it, and its advice where it
/// cannot.
pub fn assess(cur: &Current, facts: &DeviceFacts, policy: Policy) -> Assessment {
    let findings = cur.catalog.judge(facts);
    let mut advise = findings
        .iter()
        .any(|f| f.kind.hardware() || f.kind == FindingKind::UnknownUnitModel);
    let plan = findings
        .iter()
        .any(|f| f.kind.software_fixable())
        .then(|| cur.catalog.plan(facts, policy, PLAN_BUDGET));
    if matches!(
        plan,
        Some(PlanOutcome::NoSolution(_) | PlanOutcome::OutOfTime)
    ) {
        advise = true;
    }
    let advice = advise.then(|| cur.catalog.advise(facts, policy, ADVICE_BUDGET));
    let state = State::settled(&findings, plan.as_ref()).as_str();
    Assessment {
        findings,
        plan,
        advice,
        state,
    }
}

/// Judge, plan and advise one device: the CPU part of acting.
fn decide(cur: &Current, facts: &DeviceFacts, structure: &Structure, policy: Policy) -> Decision {
    let a = assess(cur, facts, policy);
    let rendered: Vec<Rendered> = a
        .findings
        .iter()
        .map(|f| cur.catalog.render(facts, f))
        .collect();
    let keys: Vec<&str> = rendered.iter().map(|r| r.key.as_str()).collect();
    let findings_hash = if keys.is_empty() {
        String::new()
    } else {
        secret::hash(&keys.join("\n"))[..32].to_owned()
    };
    let job_steps = match &a.plan {
        Some(PlanOutcome::Change(steps)) => Some(software_steps(&cur.catalog, facts, steps)),
        _ => None,
    };
    let Some(recs) = a.advice else {
        return Decision {
            job_steps,
            advice: None,
            state: a.state,
            findings_hash,
        };
    };
    let problem = rendered
        .iter()
        .filter(|r| {
            r.kind.hardware()
                || r.kind.software_fixable()
                || r.kind == FindingKind::UnknownUnitModel
        })
        .map(|r| r.explanation.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let wire_recs = recommendations(&cur.catalog, facts, &recs);
    let summary = match wire_recs.first() {
        Some(best) => format!("{problem} Recommended: {}", best.summary),
        None => format!("{problem} No configuration in the catalog makes this device compatible."),
    };
    // Only a unit that does not work here (not one the catalog merely does not know).
    let hardware_units: Vec<u16> = a
        .findings
        .iter()
        .filter(|f| f.kind.hardware())
        .flat_map(|f| f.units.iter().copied())
        .collect();
    let out_of_service = recs
        .iter()
        .find_map(|r| match r.changes.as_slice() {
            [HardwareChange::OutOfService { unit }] if hardware_units.contains(unit) => Some(*unit),
            _ => None,
        })
        .and_then(|unit| {
            let slot = facts_text(&cur.catalog, facts, &facts.units[unit as usize].slot);
            let serial = structure.unit(&slot)?.serial.clone();
            let switched_to = crate::compat::units::takes_over(structure, &slot);
            Some((slot, serial, switched_to))
        });
    Decision {
        job_steps,
        advice: Some(Advice {
            summary,
            recommendations: wire_recs,
            key: format!("advice:{}", &secret::hash(&keys.join("\n"))[..32]),
            out_of_service,
        }),
        state: a.state,
        findings_hash,
    }
}

/// The stored body of a notification.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NotificationBody {
    pub summary: String,
    #[serde(default)]
    pub recommendations: Vec<w::Recommendation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_to: Option<String>,
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

/// A device whose judgement changed under a new catalog.
pub struct Changed {
    pub id: Arc<str>,
    pub structure_hash: String,
    pub judgement: Judgement,
    /// The device may have open findings (its stored findings hash is not the empty one).
    pub had_findings: bool,
}

/// The worker looks at a device after every catalog change even when its findings stay the
/// same: they call for a plan or advice (which the new revision may change), or a unit is out
/// of service (which the new revision may let back in).
fn act_again(e: &Entry) -> bool {
    e.actionable.load(Ordering::Relaxed) || e.facts.units.iter().any(|u| !u.in_service)
}

/// Judge every entry and send those whose findings hash changed; hand `again` (when the
/// revision is new) the devices whose findings stay the same but that the worker must look at
/// again ([`act_again`]). Stops early when the receiver is gone. Runs on as many threads as
/// the machine has cores.
pub fn rejudge_all(
    cur: &Current,
    entries: Vec<(Arc<str>, Arc<Entry>)>,
    again: Option<&(dyn Fn(&str) + Sync)>,
    tx: &tokio::sync::mpsc::Sender<Changed>,
) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = entries.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for part in entries.chunks(chunk) {
            s.spawn(move || {
                for (id, e) in part {
                    let (hash, rendered) = findings_of(cur, &e.facts);
                    if hash_bits(&hash) as u64 == e.findings_hash() {
                        if let Some(again) = again
                            && act_again(e)
                        {
                            again(id);
                        }
                        continue;
                    }
                    // Rows (explanations, subjects as JSON) only for what changed.
                    let changed = Changed {
                        id: id.clone(),
                        structure_hash: hash_hex(e.structure_hash),
                        judgement: judgement(cur, hash, rendered),
                        had_findings: e.findings_hash() != 0,
                    };
                    if tx.blocking_send(changed).is_err() {
                        return;
                    }
                }
            });
        }
    });
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
