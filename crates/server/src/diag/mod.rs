//! Fault diagnosis at the center: each tenant's rules and evaluation engine, troubles opened
//! from what the engine finds (off the ingest path, in a worker), their lifecycle, abnormal
//! units from operating info, the fix loop, and what the center knows about a device.
//!
//! Ingest hands the engine every newly stored event of a batch (never a retried one); the
//! engine answers with firings; the worker stores them — open a trouble, or count a
//! recurrence — and, for a rule with a known fix, creates the update job or sets the setting.
//! At start the engines are rebuilt from the live troubles and a replay of the events received
//! within the rules' longest window, so a restart loses no partly filled window.
//!
//! This file is the engine and its worker; `fix` is the fix loop, `api` the operator's and
//! device's HTTP handlers, `logs` the device's error-log upload.

pub mod api;
pub mod fix;
pub mod logs;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fleetcare_diag::rules::event_rank;
use fleetcare_diag::{Engine, Event, EventRef, Firing, Fix, RuleSet, abnormal_units};
use fleetcare_store::{DeviceKey, NewTrouble, StoreError, TenantId, TroubleRecurrence};
use fleetcare_wire::troubles as w;
use tokio::sync::mpsc;

use crate::ctx::Ctx;
use crate::error::ApiError;

/// Firings waiting for the worker; ingest waits when the worker is this far behind.
const QUEUE: usize = 4096;
/// The most pieces of work the worker takes at once.
const WORKER_BATCH: usize = 1024;
/// Evidence events kept on a trouble.
const MAX_EVIDENCE: usize = 50;
/// The error-rate comparison looks at this many days.
pub(crate) const RATE_DAYS: u32 = 7;

struct Work {
    tenant: TenantId,
    rules: Arc<RuleSet>,
    firings: Vec<Firing>,
    replay: bool,
}

/// A tenant's rules revision and its engine.
type Tenants = HashMap<TenantId, (u64, Arc<Mutex<Engine>>)>;

/// The tenants' rules and engines, and the worker's queue.
pub struct Diag {
    engines: RwLock<Tenants>,
    queue: mpsc::Sender<Work>,
    receiver: Mutex<Option<mpsc::Receiver<Work>>>,
    /// The engines have been rebuilt from the store.
    pub ready: AtomicBool,
    /// The catalogs fixes are checked against, and the devices' structure.
    pub(crate) compat: Arc<crate::compat::Compat>,
}

impl std::fmt::Debug for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diag").finish_non_exhaustive()
    }
}

pub(crate) fn fix_words(f: &Fix) -> String {
    match f {
        Fix::Release { product, version } => format!("install {product} {version}"),
        Fix::Setting { key, value } => format!("set {key} = {value}"),
    }
}

/// What rules name that the tenant's catalog does not define (a fix's product or release, an
/// expected life's unit model), each with the nearest defined name. Nothing to check without
/// a catalog.
fn catalog_references(
    compat: &crate::compat::Compat,
    tenant: TenantId,
    rules: &RuleSet,
) -> Vec<String> {
    use fleetcare_compat::catalog::did_you_mean;
    let Some(cur) = compat.current(tenant) else {
        return Vec::new();
    };
    let c = &cur.catalog;
    let products: Vec<Arc<str>> = c.products().map(|p| c.text(p.name)).collect();
    let units: Vec<Arc<str>> = c.unit_models().map(|u| c.text(u.name)).collect();
    let mut problems = Vec::new();
    for (i, r) in rules.rules.iter().enumerate() {
        let Some(Fix::Release { product, version }) = &r.fix else {
            continue;
        };
        let at = format!("rule[{i}] ({})", r.id);
        let known = compat
            .vocab
            .get(product)
            .and_then(|p| c.products().find(|x| x.name == p).map(|x| (p, x)));
        match known {
            None => problems.push(format!(
                "{at}.fix.release: the catalog has no product {product:?}{}",
                did_you_mean(product, products.iter().map(|p| &**p))
            )),
            Some((p, prod)) => {
                let has = compat
                    .vocab
                    .get(version)
                    .is_some_and(|v| c.find_release(p, v).is_some());
                if !has {
                    let versions: Vec<Arc<str>> = prod
                        .releases
                        .iter()
                        .map(|id| c.text(c.release(*id).version_sym))
                        .collect();
                    problems.push(format!(
                        "{at}.fix.version: the catalog has no release {product} {version}{}",
                        did_you_mean(version, versions.iter().map(|v| &**v))
                    ));
                }
            }
        }
    }
    for (i, a) in rules.abnormal.iter().enumerate() {
        for model in a.expected_life.keys() {
            if !units.iter().any(|u| &**u == model.as_str()) {
                problems.push(format!(
                    "abnormal[{i}] ({}).expected_life: the catalog has no unit model {model:?}{}",
                    a.id,
                    did_you_mean(model, units.iter().map(|u| &**u))
                ));
            }
        }
    }
    problems
}

impl Diag {
    pub fn new(compat: Arc<crate::compat::Compat>) -> Diag {
        let (queue, rx) = mpsc::channel(QUEUE);
        Diag {
            compat,
            engines: RwLock::new(HashMap::new()),
            queue,
            receiver: Mutex::new(Some(rx)),
            ready: AtomicBool::new(false),
        }
    }

    fn engine(&self, tenant: TenantId) -> Option<Arc<Mutex<Engine>>> {
        self.engines
            .read()
            .expect("engines")
            .get(&tenant)
            .map(|(_, e)| e.clone())
    }

    /// The tenant's rules and their revision.
    pub fn rules(&self, tenant: TenantId) -> Option<(u64, Arc<RuleSet>)> {
        let engines = self.engines.read().expect("engines");
        let (rev, e) = engines.get(&tenant)?;
        let rules = e.lock().expect("engine").rules().clone();
        Some((*rev, rules))
    }

    fn install(&self, tenant: TenantId, revision: u64, rules: RuleSet) -> Arc<Mutex<Engine>> {
        let engine = Arc::new(Mutex::new(Engine::new(Arc::new(rules))));
        self.engines
            .write()
            .expect("engines")
            .insert(tenant, (revision, engine.clone()));
        engine
    }

    /// Load a tenant's rules: a new revision, a fresh engine that knows the live troubles.
    pub async fn load(
        &self,
        st: &Ctx,
        tenant: TenantId,
        source: &str,
        by: &str,
    ) -> Result<(u64, w::RulesLoaded), ApiError> {
        let rules = RuleSet::parse(source).map_err(|e| ApiError::Invalid {
            message: format!("the rules were refused: {} problem(s)", e.problems.len()),
            problems: e.problems,
        })?;
        let problems = catalog_references(&self.compat, tenant, &rules);
        if !problems.is_empty() {
            return Err(ApiError::Invalid {
                message: format!("the rules were refused: {} problem(s)", problems.len()),
                problems: problems
                    .iter()
                    .map(|p| fleetcare_diag::rules::locate(source, p))
                    .collect(),
            });
        }
        let loaded = w::RulesLoaded {
            revision: 0,
            rules: u32::try_from(rules.rules.len()).unwrap_or(u32::MAX),
            abnormal: u32::try_from(rules.abnormal.len()).unwrap_or(u32::MAX),
        };
        let revision = st
            .store
            .load_rules(tenant, source, by, st.clock.now_ms())
            .await?;
        self.install_with_live(st, tenant, revision, rules).await?;
        st.devices
            .tell(crate::cluster::Message::Rules { t: tenant })
            .await;
        Ok((revision, w::RulesLoaded { revision, ..loaded }))
    }

    /// A fresh engine for the rules, knowing the tenant's live troubles.
    async fn install_with_live(
        &self,
        st: &Ctx,
        tenant: TenantId,
        revision: u64,
        rules: RuleSet,
    ) -> Result<(), StoreError> {
        let live = st.store.live_troubles().await?;
        let engine = self.install(tenant, revision, rules);
        let mut e = engine.lock().expect("engine");
        for (t, device, rule) in live {
            if t == tenant {
                e.mark_open(&device, &rule);
            }
        }
        Ok(())
    }

    /// Another instance loaded rules for the tenant: load them here too. (The engine starts
    /// empty: windows fill from the events this instance takes from now on.)
    pub async fn reload_rules(&self, st: &Ctx, tenant: TenantId) {
        let sets = match st.store.current_rules().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "reading rules another instance loaded failed");
                return;
            }
        };
        for set in sets.into_iter().filter(|s| s.tenant == tenant) {
            if self
                .rules(tenant)
                .is_some_and(|(rev, _)| rev == set.revision)
            {
                continue;
            }
            match RuleSet::parse(&set.source) {
                Ok(rules) => {
                    if let Err(e) = self
                        .install_with_live(st, tenant, set.revision, rules)
                        .await
                    {
                        tracing::warn!(tenant, error = %e, "installing rules another instance loaded failed");
                    }
                }
                Err(e) => {
                    tracing::error!(tenant, error = %e, "rules another instance loaded do not parse here")
                }
            }
        }
    }

    /// Another instance resolved a trouble: this instance's engine may open it again.
    pub fn closed_elsewhere(&self, tenant: TenantId, device: &str, rule_id: &str) {
        self.forget(tenant, device, rule_id);
    }

    /// At start: every tenant's rules, the live troubles, then a replay of the events received
    /// within the rules' longest window (after the fleet index is loaded, which gives the
    /// devices' units).
    pub async fn start(self: Arc<Self>, st: Ctx) {
        let mut waited = 0;
        while !self.compat.ready.load(Ordering::SeqCst) && waited < 36_000 {
            // pacing: the fleet index loads once at start; nothing to await but its flag.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            waited += 1;
        }
        let sets = match st.store.current_rules().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading the diagnosis rules failed");
                return;
            }
        };
        let mut horizon = 0i64;
        for s in sets {
            match RuleSet::parse(&s.source) {
                Ok(rules) => {
                    horizon = horizon.max(rules.max_window_ms());
                    self.install(s.tenant, s.revision, rules);
                }
                Err(e) => tracing::error!(tenant = s.tenant, revision = s.revision, error = %e,
                    "stored rules no longer parse; the tenant has no rules until some are loaded"),
            }
        }
        match st.store.live_troubles().await {
            Ok(live) => {
                for (t, device, rule) in live {
                    if let Some(e) = self.engine(t) {
                        e.lock().expect("engine").mark_open(&device, &rule);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the live troubles failed"),
        }
        if horizon > 0 {
            let replayed = self.replay(&st, st.clock.now_ms() - horizon).await;
            tracing::info!(events = replayed, "diagnosis windows rebuilt");
        }
        self.ready.store(true, Ordering::SeqCst);
    }

    async fn replay(&self, st: &Ctx, since_ms: i64) -> u64 {
        let mut after = None;
        let mut n = 0u64;
        loop {
            let rows = match st
                .store
                .error_events_received_since(since_ms, after.clone(), 5000)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "replaying the error events failed");
                    return n;
                }
            };
            let Some((t, d, last)) = rows.last() else {
                return n;
            };
            after = Some((
                last.received_at_ms,
                *t,
                d.clone(),
                last.boot_epoch,
                last.seq,
            ));
            for (tenant, device, ev) in rows {
                n += 1;
                let Some(engine) = self.engine(tenant) else {
                    continue;
                };
                let Ok(device_id) = fleetcare_core::DeviceId::parse(&device) else {
                    continue;
                };
                let key = DeviceKey { tenant, device_id };
                let ctx = self.compat.device_ctx(&key).unwrap_or_default();
                let counters: BTreeMap<String, f64> = ev
                    .counters_json
                    .as_deref()
                    .and_then(|c| serde_json::from_str(c).ok())
                    .unwrap_or_default();
                let event = Event {
                    r: EventRef {
                        boot_epoch: ev.boot_epoch,
                        seq: ev.seq,
                    },
                    at_ms: ev.at_ms,
                    received_ms: ev.received_at_ms,
                    slot: &ev.slot,
                    code: &ev.code,
                    severity: event_rank(&ev.severity).unwrap_or(0),
                    counters: &counters,
                };
                let (firings, rules) = {
                    let mut e = engine.lock().expect("engine");
                    (e.ingest(&device, &ctx, &[event]), e.rules().clone())
                };
                if !firings.is_empty() {
                    let _ = self
                        .queue
                        .send(Work {
                            tenant,
                            rules,
                            firings,
                            replay: true,
                        })
                        .await;
                }
            }
        }
    }

    /// Evaluate a stored batch's new events (`new[i]`: event `i` was stored now).
    pub async fn after_ingest(
        &self,
        st: &Ctx,
        key: &DeviceKey,
        boot_epoch: u64,
        events: &[fleetcare_wire::errors::ErrorEvent],
        new: &[bool],
    ) {
        let Some(engine) = self.engine(key.tenant) else {
            return;
        };
        let received_ms = st.clock.now_ms();
        let ctx = self.compat.device_ctx(key).unwrap_or_default();
        let evs: Vec<Event<'_>> = events
            .iter()
            .zip(new)
            .filter(|(e, n)| **n && !e.dropped)
            .map(|(e, _)| Event {
                r: EventRef {
                    boot_epoch,
                    seq: e.seq,
                },
                at_ms: e.at_ms,
                received_ms,
                slot: &e.slot,
                code: &e.code,
                severity: event_rank(&e.severity).unwrap_or(0),
                counters: &e.counters,
            })
            .collect();
        if evs.is_empty() {
            return;
        }
        let (firings, rules) = {
            let mut e = engine.lock().expect("engine");
            (
                e.ingest(key.device_id.as_str(), &ctx, &evs),
                e.rules().clone(),
            )
        };
        if !firings.is_empty() {
            let _ = self
                .queue
                .send(Work {
                    tenant: key.tenant,
                    rules,
                    firings,
                    replay: false,
                })
                .await;
        }
    }

    /// The worker: store what the engines found, and act on known fixes. It takes every
    /// waiting piece of work at once (up to [`WORKER_BATCH`]): openings are stored one by one
    /// (they are rare), recurrences of all of them in one write, so the worker keeps up with
    /// ingest however many batches recur. That write runs beside the worker, one at a time,
    /// while the next recurrences gather: a new trouble never waits behind it (unless the
    /// write holds the same device's same rule, whose order matters).
    pub async fn run_worker(self: Arc<Self>, st: Ctx) {
        let Some(mut rx) = self.receiver.lock().expect("receiver").take() else {
            return;
        };
        let mut batch = Vec::with_capacity(WORKER_BATCH);
        let mut recur = Recurrences::new();
        let mut writing: Option<Writing> = None;
        loop {
            let written = async {
                match writing.as_mut() {
                    Some((_, task)) => task.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                n = rx.recv_many(&mut batch, WORKER_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let work = std::mem::take(&mut batch);
                    if let Err(e) = self.store_firings(&st, work, &mut recur, &mut writing).await {
                        tracing::warn!(error = %e, "storing troubles failed");
                    }
                }
                done = written => {
                    writing = None;
                    log_recurrences(done);
                }
            }
            if writing.is_none() && !recur.is_empty() {
                writing = Some(write_recurrences(&st, std::mem::take(&mut recur)));
            }
        }
        if let Some((_, task)) = writing {
            log_recurrences(task.await);
        }
        if !recur.is_empty() {
            log_recurrences(write_recurrences(&st, recur).1.await);
        }
    }

    /// Store the openings of `batch` now; gather its recurrences into `recur`.
    async fn store_firings(
        &self,
        st: &Ctx,
        batch: Vec<Work>,
        recur: &mut Recurrences,
        writing: &mut Option<Writing>,
    ) -> Result<(), StoreError> {
        let now = st.clock.now_ms();
        for work in batch {
            let Work {
                tenant,
                rules,
                firings,
                replay,
            } = work;
            for f in firings {
                let rule = &rules.rules[f.rule];
                let quiet_until = now.saturating_add(rule.resolve_after_ms);
                let events = u64::try_from(f.evidence.len()).unwrap_or(u64::MAX);
                if !f.opens {
                    if !replay {
                        add(recur, tenant, &f, &rule.id, events, quiet_until);
                    }
                    continue;
                }
                let Ok(device_id) = fleetcare_core::DeviceId::parse(&f.device) else {
                    continue;
                };
                let key = DeviceKey { tenant, device_id };
                // Recurrences gathered before this opening belong to a trouble resolved since;
                // those being written land before it.
                let k = (tenant, f.device.to_string(), rule.id.clone());
                recur.remove(&k);
                if writing.as_ref().is_some_and(|(keys, _)| keys.contains(&k))
                    && let Some((_, task)) = writing.take()
                {
                    log_recurrences(task.await);
                }
                if replay
                    && st
                        .store
                        .last_resolved(&key, &rule.id)
                        .await?
                        .is_some_and(|r| r >= f.received_ms)
                {
                    // These events were judged before the restart and the trouble resolved.
                    self.forget(tenant, &f.device, &rule.id);
                    continue;
                }
                let evidence: Vec<w::Evidence> = f
                    .evidence
                    .iter()
                    .take(MAX_EVIDENCE)
                    .map(|r| w::Evidence {
                        boot_epoch: r.boot_epoch,
                        seq: r.seq,
                    })
                    .collect();
                let t = NewTrouble {
                    rule_id: rule.id.clone(),
                    severity: rule.severity.as_str().into(),
                    title: rule.title.clone(),
                    action: rule.action.clone(),
                    note: f.note.clone(),
                    evidence_json: serde_json::to_string(&evidence).expect("evidence serializes"),
                    occurrences: events,
                    last_event_at_ms: f.received_ms,
                    quiet_until_ms: quiet_until,
                    fix_json: rule.fix.as_ref().map(fix_words),
                };
                match st.store.open_trouble(&key, &t, now).await? {
                    Some(id) => {
                        st.metrics.troubles_opened.inc();
                        if !replay {
                            let took = (st.clock.now_ms() - f.received_ms).max(0);
                            st.metrics
                                .trouble_open_seconds
                                .observe(took as f64 / 1000.0);
                        }
                        tracing::info!(device = %key.device_id, trouble = id, rule = %rule.id,
                            severity = rule.severity.as_str(), "trouble opened");
                        st.events
                            .notify(tenant, crate::cluster::events::Topic::Troubles);
                        st.events.device(tenant, key.device_id.as_str());
                        if let Some(fix) = &rule.fix {
                            let mut job = None;
                            let outcome =
                                match self.fix_loop(st, &key, id, &rule.id, fix, &mut job).await {
                                    Ok(o) => o,
                                    Err(e) => format!("the fix failed: {e}"),
                                };
                            tracing::info!(device = %key.device_id, trouble = id, %outcome, "fix loop");
                            st.store.set_fix_outcome(tenant, id, &outcome, job).await?;
                        }
                    }
                    None if !replay => {
                        // Live already (another instance opened it): a recurrence.
                        add(recur, tenant, &f, &rule.id, events, quiet_until);
                    }
                    None => {}
                }
            }
        }
        Ok(())
    }

    fn forget(&self, tenant: TenantId, device: &str, rule_id: &str) {
        if let Some(e) = self.engine(tenant) {
            e.lock().expect("engine").resolved(device, rule_id);
        }
    }

    /// Resolve the troubles whose quiet period is over (called by the sweep).
    pub async fn resolve_quiet(&self, st: &Ctx) {
        match st.store.resolve_quiet_troubles(st.clock.now_ms()).await {
            Ok(done) => {
                for (tenant, t) in done {
                    tracing::info!(device = %t.device_id, trouble = t.id, rule = %t.rule_id,
                        "trouble resolved after its quiet period");
                    self.forget(tenant, &t.device_id, &t.rule_id);
                    st.devices
                        .tell(crate::cluster::Message::TroubleClosed {
                            t: tenant,
                            d: t.device_id.clone(),
                            rule: t.rule_id.clone(),
                        })
                        .await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "resolving quiet troubles failed"),
        }
    }

    /// Judge a report's operating info: mark and clear the device's abnormal units.
    pub async fn judge_operating(
        &self,
        st: &Ctx,
        key: &DeviceKey,
        operating: &BTreeMap<String, f64>,
    ) -> Result<(), StoreError> {
        let Some((_, rules)) = self.rules(key.tenant) else {
            return Ok(());
        };
        if rules.abnormal.is_empty() {
            return Ok(());
        }
        let ctx = self.compat.device_ctx(key).unwrap_or_default();
        let marks: Vec<(String, String, String)> = abnormal_units(&rules, &ctx, operating)
            .into_iter()
            .map(|m| (m.slot, m.rule, m.reason))
            .collect();
        // The marks of the rules judged at every report (and of rules no longer loaded); those
        // judged from history are left to [`Diag::judge_history`].
        let history: Vec<&str> = rules
            .abnormal
            .iter()
            .filter(|r| r.measure.from_history())
            .map(|r| r.id.as_str())
            .collect();
        if st
            .store
            .set_abnormal_units_of(
                key,
                &marks,
                &|rule| !history.contains(&rule),
                st.clock.now_ms(),
            )
            .await?
        {
            tracing::info!(device = %key.device_id, abnormal = marks.len(), "abnormal units judged");
        }
        Ok(())
    }
}

impl Diag {
    /// Judge the device's history by the abnormal-unit rules that look at it (a rate in a
    /// window, a trend, growth since a unit went in): once a day per device, on its first
    /// report of the day. Reads only as far back as the rules need.
    pub async fn judge_history(&self, st: &Ctx, key: &DeviceKey) -> Result<(), StoreError> {
        use fleetcare_diag::rules::Measure;
        let Some((_, rules)) = self.rules(key.tenant) else {
            return Ok(());
        };
        let ctx = self.compat.device_ctx(key).unwrap_or_default();
        let judged: Vec<&fleetcare_diag::rules::AbnormalRule> = rules
            .abnormal
            .iter()
            .filter(|r| r.measure.from_history())
            .filter(|r| ctx.units.iter().any(|u| u.kind == r.unit_kind))
            .collect();
        if judged.is_empty() {
            return Ok(());
        }
        let now = st.clock.now_ms();
        let installed = if judged.iter().any(|r| r.measure == Measure::SinceInstall) {
            st.store.units_installed_at(key).await?
        } else {
            BTreeMap::new()
        };
        let mut since = now;
        for r in &judged {
            since = since.min(match r.measure {
                Measure::Rate { window_ms } | Measure::Trend { window_ms } => now - window_ms,
                _ => installed
                    .values()
                    .copied()
                    .min()
                    .unwrap_or(now - HISTORY_DAYS * fleetcare_core::meters::DAY_MS),
            });
        }
        let since = since.max(now - HISTORY_DAYS * fleetcare_core::meters::DAY_MS);
        let readings = crate::life::readings(st, key, since).await?;
        let marks: Vec<(String, String, String)> =
            fleetcare_diag::abnormal::history_marks(&rules, &ctx, &readings, now, &|slot| {
                installed.get(slot).copied()
            })
            .into_iter()
            .map(|m| (m.slot, m.rule, m.reason))
            .collect();
        let lives = fleetcare_diag::abnormal::part_lives(&rules, &ctx, &readings, now, &|slot| {
            installed.get(slot).copied()
        });
        crate::life::part_troubles(st, key, &lives).await?;
        let ids: Vec<&str> = judged.iter().map(|r| r.id.as_str()).collect();
        if st
            .store
            .set_abnormal_units_of(key, &marks, &|rule| ids.contains(&rule), now)
            .await?
        {
            tracing::info!(device = %key.device_id, abnormal = marks.len(), "abnormal units judged from history");
        }
        Ok(())
    }
}

/// How far back a judgement of history reads at most (days).
const HISTORY_DAYS: i64 = 800;

/// Recurrences waiting to be written, by tenant, device and rule.
type Recurrences = BTreeMap<(TenantId, String, String), TroubleRecurrence>;
/// A write of recurrences in flight: what it holds, and its task.
type Writing = (
    std::collections::BTreeSet<(TenantId, String, String)>,
    tokio::task::JoinHandle<Result<(), StoreError>>,
);

/// Write recurrences beside the worker (one write per tenant).
fn write_recurrences(st: &Ctx, recur: Recurrences) -> Writing {
    let keys = recur.keys().cloned().collect();
    let st = st.clone();
    let task = tokio::spawn(async move {
        let mut by_tenant: BTreeMap<TenantId, Vec<TroubleRecurrence>> = BTreeMap::new();
        for ((tenant, _, _), r) in recur {
            by_tenant.entry(tenant).or_default().push(r);
        }
        for (tenant, recur) in by_tenant {
            st.store.recur_troubles(tenant, &recur).await?;
        }
        Ok(())
    });
    (keys, task)
}

fn log_recurrences(done: Result<Result<(), StoreError>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "storing recurrences of troubles failed"),
        Err(e) => tracing::warn!(error = %e, "the task storing recurrences ended"),
    }
}

fn add(
    recur: &mut Recurrences,
    tenant: TenantId,
    f: &Firing,
    rule_id: &str,
    events: u64,
    quiet_until: i64,
) {
    let r = recur
        .entry((tenant, f.device.to_string(), rule_id.to_owned()))
        .or_insert_with(|| TroubleRecurrence {
            device_id: f.device.to_string(),
            rule_id: rule_id.to_owned(),
            events: 0,
            last_event_at_ms: 0,
            quiet_until_ms: 0,
        });
    r.events += events;
    r.last_event_at_ms = r.last_event_at_ms.max(f.received_ms);
    r.quiet_until_ms = r.quiet_until_ms.max(quiet_until);
}

// ---- the API -------------------------------------------------------------------------------

/// The report subscriber of diagnosis: the newest report's operating info is judged for
/// abnormal units.
pub struct JudgeOperating {
    pub ctx: Ctx,
    pub diag: Arc<Diag>,
}

impl crate::devices::report::AfterReport for JudgeOperating {
    fn stored<'a>(
        &'a self,
        r: &'a crate::devices::report::Stored<'a>,
    ) -> crate::devices::report::Work<'a> {
        let Some(operating) = r.operating.filter(|_| r.current && !r.duplicate) else {
            return crate::devices::report::done();
        };
        Box::pin(async move {
            if let Err(e) = self.diag.judge_operating(&self.ctx, r.key, operating).await {
                tracing::warn!(device = %r.key.device_id, error = %e, "judging operating info failed");
            }
            if r.keyframe
                && let Err(e) = self.diag.judge_history(&self.ctx, r.key).await
            {
                tracing::warn!(device = %r.key.device_id, error = %e, "judging operating history failed");
            }
        })
    }
}
