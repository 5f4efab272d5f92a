//! Fault diagnosis at the center: each tenant's rules and evaluation engine, troubles opened
//! from what the engine finds (off the ingest path, in a worker), their lifecycle, abnormal
//! units from operating info, the fix loop, and what the center knows about a device.
//!
//! Ingest hands the engine every newly stored event of a batch (never a retried one); the
//! engine answers with firings; the worker stores them — open a trouble, or count a
//! recurrence — and, for a rule with a known fix, creates the update job or sets the setting.
//! At start the engines are rebuilt from the live troubles and a replay of the events received
//! within the rules' longest window, so a restart loses no partly filled window.

pub mod logs;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::extract::Query;
use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;
use fleetcare_compat::plan::{Action, Step};
use fleetcare_compat::version::Version;
use fleetcare_core::clock::rfc3339;
use fleetcare_diag::rules::event_rank;
use fleetcare_diag::{Engine, Event, EventRef, Firing, Fix, RuleSet, abnormal_units};
use fleetcare_store::{
    DeviceKey, JobFilter, NewJob, NewTrouble, StoreError, TenantId, TroubleFilter, TroubleRecord,
    TroubleRecurrence,
};
use fleetcare_wire::ErrorBody;
use fleetcare_wire::device::Command;
use fleetcare_wire::troubles as w;
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::AppState;
use crate::compat::api::compat_report;
use crate::delivery::job_view;
use crate::error::ApiError;
use crate::extract::device_key;
use crate::extract::{DeviceAuth, OperatorAuth};

/// Firings waiting for the worker; ingest waits when the worker is this far behind.
const QUEUE: usize = 4096;
/// The most pieces of work the worker takes at once.
const WORKER_BATCH: usize = 1024;
/// Evidence events kept on a trouble.
const MAX_EVIDENCE: usize = 50;
/// The error-rate comparison looks at this many days.
const RATE_DAYS: u32 = 7;

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
}

impl std::fmt::Debug for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Diag").finish_non_exhaustive()
    }
}

impl Default for Diag {
    fn default() -> Self {
        Diag::new()
    }
}

fn severity_rank(s: &str) -> usize {
    w::TROUBLE_SEVERITIES
        .iter()
        .position(|x| *x == s)
        .unwrap_or(0)
}

fn fix_words(f: &Fix) -> String {
    match f {
        Fix::Release { product, version } => format!("install {product} {version}"),
        Fix::Setting { key, value } => format!("set {key} = {value}"),
    }
}

/// What rules name that the tenant's catalog does not define (a fix's product or release, an
/// expected life's unit model), each with the nearest defined name. Nothing to check without
/// a catalog.
fn catalog_references(st: &AppState, tenant: TenantId, rules: &RuleSet) -> Vec<String> {
    use fleetcare_compat::catalog::did_you_mean;
    let Some(cur) = st.compat.current(tenant) else {
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
        let known = st
            .compat
            .vocab
            .get(product)
            .and_then(|p| c.products().find(|x| x.name == p).map(|x| (p, x)));
        match known {
            None => problems.push(format!(
                "{at}.fix.release: the catalog has no product {product:?}{}",
                did_you_mean(product, products.iter().map(|p| &**p))
            )),
            Some((p, prod)) => {
                let has = st
                    .compat
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

/// Stored troubles for the wire, each with its fix job's state now.
pub async fn trouble_views(
    st: &AppState,
    tenant: TenantId,
    troubles: Vec<TroubleRecord>,
) -> Result<Vec<w::Trouble>, StoreError> {
    let mut out = Vec::with_capacity(troubles.len());
    for t in troubles {
        let job = match t.fix_job {
            Some(id) => st
                .store
                .job(tenant, id)
                .await?
                .map(|j| w::JobRef { id, state: j.state }),
            None => None,
        };
        out.push(trouble_view(t, job));
    }
    Ok(out)
}

/// A stored trouble for the wire, with its fix job as it is now.
pub fn trouble_view(t: TroubleRecord, fix_job: Option<w::JobRef>) -> w::Trouble {
    w::Trouble {
        id: t.id,
        device_id: t.device_id,
        rule_id: t.rule_id,
        severity: t.severity,
        title: t.title,
        action: t.action,
        state: t.state,
        note: t.note,
        evidence: serde_json::from_str(&t.evidence_json).unwrap_or_default(),
        occurrences: t.occurrences,
        opened_at: rfc3339(t.opened_at_ms),
        last_event_at: rfc3339(t.last_event_at_ms),
        resolves_at: rfc3339(t.quiet_until_ms),
        acknowledged_by: t.acknowledged_by,
        acknowledged_at: t.acknowledged_at_ms.map(rfc3339),
        resolved_by: t.resolved_by,
        resolved_at: t.resolved_at_ms.map(rfc3339),
        fix: t.fix_json,
        fix_outcome: t.fix_outcome,
        fix_job,
        fixed_at: t.fixed_at_ms.map(rfc3339),
    }
}

impl Diag {
    pub fn new() -> Diag {
        let (queue, rx) = mpsc::channel(QUEUE);
        Diag {
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
        st: &AppState,
        tenant: TenantId,
        source: &str,
        by: &str,
    ) -> Result<(u64, w::RulesLoaded), ApiError> {
        let rules = RuleSet::parse(source).map_err(|e| ApiError::Invalid {
            message: format!("the rules were refused: {} problem(s)", e.problems.len()),
            problems: e.problems,
        })?;
        let problems = catalog_references(st, tenant, &rules);
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
        crate::cluster::tell(st, crate::cluster::Message::Rules { t: tenant }).await;
        Ok((revision, w::RulesLoaded { revision, ..loaded }))
    }

    /// A fresh engine for the rules, knowing the tenant's live troubles.
    async fn install_with_live(
        &self,
        st: &AppState,
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
    pub async fn reload_rules(&self, st: &AppState, tenant: TenantId) {
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
    pub async fn start(self: Arc<Self>, st: AppState) {
        let mut waited = 0;
        while !st.compat.ready.load(Ordering::SeqCst) && waited < 36_000 {
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

    async fn replay(&self, st: &AppState, since_ms: i64) -> u64 {
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
                let ctx = st.compat.device_ctx(&key).unwrap_or_default();
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
        st: &AppState,
        key: &DeviceKey,
        boot_epoch: u64,
        events: &[fleetcare_wire::errors::ErrorEvent],
        new: &[bool],
    ) {
        let Some(engine) = self.engine(key.tenant) else {
            return;
        };
        let received_ms = st.clock.now_ms();
        let ctx = st.compat.device_ctx(key).unwrap_or_default();
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
    /// ingest however many batches recur and a new trouble never waits behind a long queue.
    pub async fn run_worker(self: Arc<Self>, st: AppState) {
        let Some(mut rx) = self.receiver.lock().expect("receiver").take() else {
            return;
        };
        let mut batch = Vec::with_capacity(WORKER_BATCH);
        while rx.recv_many(&mut batch, WORKER_BATCH).await > 0 {
            if let Err(e) = self.store_firings(&st, std::mem::take(&mut batch)).await {
                tracing::warn!(error = %e, "storing troubles failed");
            }
        }
    }

    async fn store_firings(&self, st: &AppState, batch: Vec<Work>) -> Result<(), StoreError> {
        let now = st.clock.now_ms();
        let mut recur: BTreeMap<(TenantId, String, String), TroubleRecurrence> = BTreeMap::new();
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
                        add(&mut recur, tenant, &f, &rule.id, events, quiet_until);
                    }
                    continue;
                }
                let Ok(device_id) = fleetcare_core::DeviceId::parse(&f.device) else {
                    continue;
                };
                let key = DeviceKey { tenant, device_id };
                // Recurrences gathered before this opening belong to a trouble resolved since.
                recur.remove(&(tenant, f.device.to_string(), rule.id.clone()));
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
                                match fix_loop(st, &key, id, &rule.id, fix, &mut job).await {
                                    Ok(o) => o,
                                    Err(e) => format!("the fix failed: {e}"),
                                };
                            tracing::info!(device = %key.device_id, trouble = id, %outcome, "fix loop");
                            st.store.set_fix_outcome(tenant, id, &outcome, job).await?;
                        }
                    }
                    None if !replay => {
                        // Live already (another instance opened it): a recurrence.
                        add(&mut recur, tenant, &f, &rule.id, events, quiet_until);
                    }
                    None => {}
                }
            }
        }
        let mut by_tenant: BTreeMap<TenantId, Vec<TroubleRecurrence>> = BTreeMap::new();
        for ((tenant, _, _), r) in recur {
            by_tenant.entry(tenant).or_default().push(r);
        }
        for (tenant, recur) in by_tenant {
            st.store.recur_troubles(tenant, &recur).await?;
        }
        Ok(())
    }

    fn forget(&self, tenant: TenantId, device: &str, rule_id: &str) {
        if let Some(e) = self.engine(tenant) {
            e.lock().expect("engine").resolved(device, rule_id);
        }
    }

    /// Resolve the troubles whose quiet period is over (called by the sweep).
    pub async fn resolve_quiet(&self, st: &AppState) {
        match st.store.resolve_quiet_troubles(st.clock.now_ms()).await {
            Ok(done) => {
                for (tenant, t) in done {
                    tracing::info!(device = %t.device_id, trouble = t.id, rule = %t.rule_id,
                        "trouble resolved after its quiet period");
                    self.forget(tenant, &t.device_id, &t.rule_id);
                    crate::cluster::tell(
                        st,
                        crate::cluster::Message::TroubleClosed {
                            t: tenant,
                            d: t.device_id.clone(),
                            rule: t.rule_id.clone(),
                        },
                    )
                    .await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "resolving quiet troubles failed"),
        }
    }

    /// Judge a report's operating info: mark and clear the device's abnormal units.
    pub async fn judge_operating(
        &self,
        st: &AppState,
        key: &DeviceKey,
        operating: &BTreeMap<String, f64>,
    ) -> Result<(), StoreError> {
        let Some((_, rules)) = self.rules(key.tenant) else {
            return Ok(());
        };
        if rules.abnormal.is_empty() {
            return Ok(());
        }
        let ctx = st.compat.device_ctx(key).unwrap_or_default();
        let marks: Vec<(String, String, String)> = abnormal_units(&rules, &ctx, operating)
            .into_iter()
            .map(|m| (m.slot, m.rule, m.reason))
            .collect();
        if st
            .store
            .set_abnormal_units(key, &marks, st.clock.now_ms())
            .await?
        {
            tracing::info!(device = %key.device_id, abnormal = marks.len(), "abnormal units judged");
        }
        Ok(())
    }
}

fn add(
    recur: &mut BTreeMap<(TenantId, String, String), TroubleRecurrence>,
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

/// A job finished: the live troubles it was made to fix are `fixed` when it succeeded (they
/// resolve when no matching event follows within their rule's quiet period, and open again
/// if one does), or resolved at once when their rule says `resolve_on_fix`.
pub async fn job_finished(
    st: &AppState,
    key: &DeviceKey,
    job: u64,
    state: &str,
) -> Result<(), StoreError> {
    if state != "succeeded" {
        return Ok(());
    }
    let troubles = st.store.troubles_fixed_by(key.tenant, job).await?;
    if troubles.is_empty() {
        return Ok(());
    }
    let now = st.clock.now_ms();
    let rules = st.diag.rules(key.tenant).map(|(_, r)| r);
    for t in troubles {
        let rule = rules
            .as_ref()
            .and_then(|r| r.rules.iter().find(|r| r.id == t.rule_id));
        let quiet = rule.map_or(
            i64::try_from(fleetcare_diag::rules::DEFAULT_RESOLVE_AFTER.as_millis())
                .unwrap_or(i64::MAX),
            |r| r.resolve_after_ms,
        );
        if rule.is_some_and(|r| r.resolve_on_fix) {
            let by = format!("center (its fix, job {job}, succeeded)");
            if st.store.resolve_trouble(key.tenant, t.id, &by, now).await? {
                st.diag.forget(key.tenant, &t.device_id, &t.rule_id);
                crate::cluster::tell(
                    st,
                    crate::cluster::Message::TroubleClosed {
                        t: key.tenant,
                        d: t.device_id.clone(),
                        rule: t.rule_id.clone(),
                    },
                )
                .await;
                tracing::info!(device = %key.device_id, trouble = t.id, job, "trouble resolved by its fix");
            }
        } else {
            let until = now.saturating_add(quiet);
            let outcome = format!(
                "its fix (job {job}) succeeded at {}; it resolves at {} unless a matching event \
                 follows",
                rfc3339(now),
                rfc3339(until)
            );
            if st
                .store
                .mark_trouble_fixed(key.tenant, t.id, now, until, &outcome)
                .await?
            {
                tracing::info!(device = %key.device_id, trouble = t.id, job, "trouble fixed; watching for a recurrence");
            }
        }
    }
    st.events
        .notify(key.tenant, crate::cluster::events::Topic::Troubles);
    st.events.device(key.tenant, key.device_id.as_str());
    Ok(())
}

/// Act on a known fix for a device's new trouble; what was done, in words, and in `made` the
/// job it created.
async fn fix_loop(
    st: &AppState,
    key: &DeviceKey,
    trouble: u64,
    rule_id: &str,
    fix: &Fix,
    made: &mut Option<u64>,
) -> Result<String, StoreError> {
    let now = st.clock.now_ms();
    match fix {
        Fix::Setting { key: name, value } => {
            st.store
                .set_device_setting(
                    key,
                    name,
                    value,
                    &format!("center (trouble {trouble}, rule {rule_id})"),
                    now,
                )
                .await?;
            let told = crate::cluster::send(st, key, Command::SettingsChanged)
                .await
                .is_some();
            Ok(format!(
                "setting {name} = {value} set{}",
                if told {
                    "; the device was told"
                } else {
                    "; the device fetches it when it connects"
                }
            ))
        }
        Fix::Release { product, version } => {
            let Some(cur) = st.compat.current(key.tenant) else {
                return Ok(
                    "not applied: the tenant has no catalog to check the fix against".into(),
                );
            };
            let Some(facts) = st.compat.facts(key) else {
                return Ok("not applied: the center holds no structure of the device".into());
            };
            let catalog = &cur.catalog;
            let vocab = &st.compat.vocab;
            let (Some(psym), Some(vsym), Ok(to)) = (
                vocab.get(product),
                vocab.get(version),
                Version::parse(version),
            ) else {
                return Ok(format!(
                    "not applied: the catalog does not know {product} {version}"
                ));
            };
            let Some(release) = catalog.find_release(psym, vsym) else {
                return Ok(format!(
                    "not applied: the catalog does not know {product} {version}"
                ));
            };
            let product_name = fleetcare_compat::vocab::Name::of(psym);
            let Some(sw) = facts
                .software
                .iter()
                .find(|s| s.active && s.product == product_name)
            else {
                return Ok(format!("not applied: the device runs no {product}"));
            };
            let from_text = sw
                .version
                .as_ref()
                .map(|v| facts.text(vocab, v).to_string());
            if from_text.as_deref() == Some(version.as_str()) {
                return Ok(format!("not needed: the device runs {product} {version}"));
            }
            let inactive = facts
                .inactive_copy(sw.unit, &product_name)
                .is_some_and(|c| {
                    c.version
                        .as_ref()
                        .is_some_and(|v| facts.text(vocab, v).as_ref() == version)
                });
            let step = Step {
                unit: sw.unit,
                product: psym,
                from: from_text.as_deref().and_then(|v| Version::parse(v).ok()),
                to,
                release,
                action: if inactive {
                    Action::Switch
                } else {
                    Action::Install
                },
            };
            let after = catalog.apply(&facts, std::slice::from_ref(&step));
            if !catalog.software_compatible(&after) {
                return Ok(format!(
                    "not applied: {product} {version} would make the device incompatible \
                     (its compatibility plan does not allow it)"
                ));
            }
            let policy = st.store.policy(key.tenant).await?;
            if policy.fix == "off" {
                return Ok("not applied: automatic fixes are off by the tenant's policy".into());
            }
            if let Some(why) = st.store.device(key).await?.and_then(|d| d.install_blocked) {
                return Ok(format!(
                    "not applied: the device cannot install software ({why})"
                ));
            }
            if let Some(j) = st.store.open_jobs(key).await?.first() {
                return Ok(format!(
                    "not applied yet: job {} is open for the device (one change at a time)",
                    j.id
                ));
            }
            let steps = crate::compat::software_steps(catalog, &facts, &[step]);
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
                        origin: "diagnosis".into(),
                        state: state.into(),
                        steps_json: serde_json::to_string(&steps).expect("steps serialize"),
                        catalog_revision: Some(cur.revision),
                        created_by: format!("center (trouble {trouble}, rule {rule_id})"),
                        expires_at_ms: now.saturating_add(ttl_ms),
                    },
                    now,
                )
                .await?;
            st.metrics.jobs_created.inc();
            *made = Some(id);
            if state == "queued" {
                crate::cluster::send(st, key, Command::JobsAvailable).await;
            }
            // Its state is not written here: every page reads the job's state now.
            Ok(format!("job {id} created to install {product} {version}"))
        }
    }
}

// ---- the API -------------------------------------------------------------------------------

/// Load the tenant's diagnosis rules (the body is the TOML file). Rules that contradict
/// themselves are refused with every problem listed.
#[utoipa::path(put, path = "/api/v1/rules", request_body(content = String, content_type = "application/toml"),
    responses((status = 200, body = w::RulesLoaded), (status = 400, body = ErrorBody)))]
pub async fn load_rules(
    State(st): State<AppState>,
    op: OperatorAuth,
    body: Bytes,
) -> Result<Json<w::RulesLoaded>, ApiError> {
    let source = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the rules are not UTF-8 text".into()))?;
    let (revision, loaded) = st.diag.load(&st, op.0.tenant, source, &op.0.name).await?;
    tracing::info!(tenant = op.0.tenant, revision, operator = %op.0.name, "diagnosis rules loaded");
    Ok(Json(loaded))
}

/// The tenant's diagnosis rules, in words.
#[utoipa::path(get, path = "/api/v1/rules", responses((status = 200, body = w::RulesView)))]
pub async fn show_rules(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::RulesView>, ApiError> {
    let stored = st
        .store
        .current_rules()
        .await?
        .into_iter()
        .find(|r| r.tenant == op.0.tenant);
    let rules = st.diag.rules(op.0.tenant).map(|(_, r)| r);
    Ok(Json(w::RulesView {
        revision: stored.as_ref().map(|s| s.revision),
        loaded_at: stored.as_ref().map(|s| rfc3339(s.loaded_at_ms)),
        loaded_by: stored.map(|s| s.loaded_by),
        rules: rules
            .iter()
            .flat_map(|r| r.rules.iter())
            .map(|r| w::RuleSummary {
                id: r.id.clone(),
                title: r.title.clone(),
                severity: r.severity.as_str().into(),
                condition: r.describe(),
                fix: r.fix.as_ref().map(fix_words),
            })
            .collect(),
        abnormal: rules
            .iter()
            .flat_map(|r| r.abnormal.iter())
            .map(|a| w::AbnormalRuleSummary {
                id: a.id.clone(),
                title: a.title.clone(),
                unit_kind: a.unit_kind.clone(),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TroubleQuery {
    /// `live` (open or acknowledged; the default), `open`, `acknowledged`, `resolved`, `all`.
    pub state: Option<String>,
    pub device: Option<String>,
    pub rule: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// The tenant's troubles, newest first.
#[utoipa::path(get, path = "/api/v1/troubles", params(TroubleQuery),
    responses((status = 200, body = w::TroubleList), (status = 400, body = ErrorBody)))]
pub async fn list_troubles(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<TroubleQuery>,
) -> Result<Json<w::TroubleList>, ApiError> {
    let state = match q.state.as_deref().unwrap_or("live") {
        "all" => None,
        s if s == "live" || w::TROUBLE_STATES.contains(&s) => Some(s.to_owned()),
        s => {
            return Err(ApiError::BadRequest(format!(
                "state {s:?}: live, open, acknowledged, fixed, resolved or all"
            )));
        }
    };
    let device_id = match &q.device {
        Some(d) => {
            let key = device_key(&op, d)?;
            // An unknown device says so (with the nearest ids), not an empty list.
            crate::extract::known_device(&st, &key).await?;
            Some(key.device_id.to_string())
        }
        None => None,
    };
    let f = TroubleFilter {
        state,
        device_id,
        rule_id: q.rule.clone(),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let troubles = st.store.troubles(op.0.tenant, &f, limit).await?;
    Ok(Json(w::TroubleList {
        troubles: trouble_views(&st, op.0.tenant, troubles).await?,
    }))
}

async fn one_view(st: &AppState, tenant: TenantId, id: u64) -> Result<w::Trouble, ApiError> {
    let t = one(st, tenant, id).await?;
    Ok(trouble_views(st, tenant, vec![t]).await?.remove(0))
}

async fn one(st: &AppState, tenant: TenantId, id: u64) -> Result<TroubleRecord, ApiError> {
    st.store
        .trouble(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("trouble {id}")))
}

/// One trouble, with its evidence.
#[utoipa::path(get, path = "/api/v1/troubles/{id}", params(("id" = u64, Path, description = "trouble id")),
    responses((status = 200, body = w::Trouble), (status = 404, body = ErrorBody)))]
pub async fn show_trouble(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Trouble>, ApiError> {
    Ok(Json(one_view(&st, op.0.tenant, id).await?))
}

/// Acknowledge an open trouble: someone is on it. It still resolves itself when quiet.
#[utoipa::path(post, path = "/api/v1/troubles/{id}/ack", params(("id" = u64, Path, description = "trouble id")),
    responses((status = 200, body = w::Trouble), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn ack_trouble(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Trouble>, ApiError> {
    let t = one(&st, op.0.tenant, id).await?;
    if !st
        .store
        .acknowledge_trouble(op.0.tenant, id, &op.0.name, st.clock.now_ms())
        .await?
    {
        return Err(ApiError::Conflict {
            code: "not_open",
            message: format!(
                "trouble {id} is {}; only an open trouble is acknowledged",
                t.state
            ),
        });
    }
    tracing::info!(trouble = id, operator = %op.0.name, "trouble acknowledged");
    st.events
        .notify(op.0.tenant, crate::cluster::events::Topic::Troubles);
    st.events.device(op.0.tenant, &t.device_id);
    Ok(Json(one_view(&st, op.0.tenant, id).await?))
}

/// Resolve a trouble. The rule's condition must hold again for a new one to open.
#[utoipa::path(post, path = "/api/v1/troubles/{id}/resolve", params(("id" = u64, Path, description = "trouble id")),
    responses((status = 200, body = w::Trouble), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resolve_trouble(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Trouble>, ApiError> {
    let t = one(&st, op.0.tenant, id).await?;
    if !st
        .store
        .resolve_trouble(op.0.tenant, id, &op.0.name, st.clock.now_ms())
        .await?
    {
        return Err(ApiError::Conflict {
            code: "resolved",
            message: format!("trouble {id} is resolved already"),
        });
    }
    st.diag.forget(op.0.tenant, &t.device_id, &t.rule_id);
    crate::cluster::tell(
        &st,
        crate::cluster::Message::TroubleClosed {
            t: op.0.tenant,
            d: t.device_id.clone(),
            rule: t.rule_id.clone(),
        },
    )
    .await;
    tracing::info!(trouble = id, operator = %op.0.name, "trouble resolved");
    st.events
        .notify(op.0.tenant, crate::cluster::events::Topic::Troubles);
    st.events.device(op.0.tenant, &t.device_id);
    Ok(Json(one_view(&st, op.0.tenant, id).await?))
}

/// What the center knows about a device.
pub async fn about(st: &AppState, key: &DeviceKey) -> Result<w::DeviceAbout, ApiError> {
    let compat = compat_report(st, key).await?;
    let live = st
        .store
        .troubles(
            key.tenant,
            &TroubleFilter {
                state: Some("live".into()),
                device_id: Some(key.device_id.to_string()),
                rule_id: None,
            },
            100,
        )
        .await?;
    let mut troubles = trouble_views(st, key.tenant, live).await?;
    troubles.sort_by_key(|t| std::cmp::Reverse(severity_rank(&t.severity)));
    let mut actions: Vec<String> = troubles
        .iter()
        .map(|t| format!("{} ({}): {}", t.title, t.severity, t.action))
        .collect();
    for n in &compat.notifications {
        actions.push(n.title.clone());
    }
    if let Some(p) = &compat.plan {
        for s in &p.steps {
            actions.push(format!(
                "software: {} {} on the {} ({})",
                s.product, s.to, s.slot, s.action
            ));
        }
    }
    let abnormal: Vec<w::AbnormalUnit> = st
        .store
        .abnormal_units(key)
        .await?
        .into_iter()
        .map(|a| w::AbnormalUnit {
            slot: a.slot,
            rule_id: a.rule_id,
            reason: a.reason,
            since: rfc3339(a.since_ms),
        })
        .collect();
    for a in &abnormal {
        actions.push(format!("the {} is abnormal: {}", a.slot, a.reason));
    }
    let settings = st
        .store
        .device_settings(key)
        .await?
        .into_iter()
        .map(setting_view)
        .collect();
    let recent_jobs = st
        .store
        .jobs(
            key.tenant,
            &JobFilter {
                device_id: Some(key.device_id.to_string()),
                state: None,
                before_id: None,
            },
            5,
        )
        .await?
        .into_iter()
        .map(job_view)
        .collect();
    let since = st
        .clock
        .now_ms()
        .saturating_sub(i64::from(RATE_DAYS) * 86_400_000);
    let (own, fleet, devices) = st.store.error_rates(key, &compat.model, since).await?;
    let days = f64::from(RATE_DAYS);
    let device_per_day = own as f64 / days;
    let model_per_device_per_day = if devices == 0 {
        0.0
    } else {
        fleet as f64 / devices as f64 / days
    };
    // What a rollout with the default requirements would decide now.
    let now = st.clock.now_ms();
    let proper = st.rollouts.device_state(st, key, now).await?;
    let eligible = fleetcare_rollout::eligibility::check(
        now,
        &fleetcare_rollout::eligibility::Requirements::default(),
        &proper,
    );
    Ok(w::DeviceAbout {
        device_id: key.device_id.to_string(),
        model: compat.model.clone(),
        rollout_eligible: eligible.is_ok(),
        rollout_ineligible: eligible.err(),
        compat,
        troubles,
        recommended_actions: actions,
        abnormal_units: abnormal,
        settings,
        recent_jobs,
        error_rate: w::ErrorRate {
            days: RATE_DAYS,
            device_per_day,
            model_per_device_per_day,
            model_devices: devices,
            ratio: (model_per_device_per_day > 0.0)
                .then(|| device_per_day / model_per_device_per_day),
        },
    })
}

fn setting_view(s: fleetcare_store::SettingRecord) -> w::DeviceSetting {
    w::DeviceSetting {
        name: s.name,
        value: s.value,
        set_by: s.set_by,
        set_at: rfc3339(s.set_at_ms),
    }
}

/// What the center knows about a device: compatibility, troubles, recommended actions,
/// abnormal units, settings, recent jobs, and its error rate against its model's fleet.
#[utoipa::path(get, path = "/api/v1/devices/{id}/about", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = w::DeviceAbout), (status = 404, body = ErrorBody)))]
pub async fn device_about(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
) -> Result<Json<w::DeviceAbout>, ApiError> {
    let key = device_key(&op, &id)?;
    about(&st, &key).await.map(Json)
}

/// What the center knows about the calling device.
pub async fn own_about(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
) -> Result<Json<w::DeviceAbout>, ApiError> {
    about(&st, &key).await.map(Json)
}

/// The settings the center set on the calling device.
pub async fn own_settings(
    State(st): State<AppState>,
    DeviceAuth(key): DeviceAuth,
) -> Result<Json<w::DeviceSettings>, ApiError> {
    Ok(Json(w::DeviceSettings {
        settings: st
            .store
            .device_settings(&key)
            .await?
            .into_iter()
            .map(setting_view)
            .collect(),
        units_out_of_service: Some(
            st.store
                .units_out(&key)
                .await?
                .into_iter()
                .map(crate::compat::units::view)
                .collect(),
        ),
    }))
}
