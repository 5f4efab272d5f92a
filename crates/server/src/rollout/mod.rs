//! The rollout engine and its API: selection, waves, gates, proper-state dispatch, control.
//!
//! Creating a rollout evaluates its filter over the fleet index (every device of the tenant,
//! in memory) and the device labels, places each selected device in a wave by its hash, and
//! stores the devices and their waves' counters in chunks. The engine then works every second
//! (and at once when a job ends or a device reports a new structure): it moves devices whose
//! jobs ended, asks the gates (pure, in `fleetcare-rollout`) whether to pause, advance or
//! wait, and dispatches pending devices of the started waves up to the concurrency limit —
//! each only if it is in a proper state and its own plan reaches the target.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::extract::Query;
use axum::Json;
use axum::extract::{Path, State};
use fleetcare_compat::plan::{PlanOutcome, Policy};
use fleetcare_compat::version::Version;
use fleetcare_core::DeviceId;
use fleetcare_core::clock::rfc3339;
use fleetcare_rollout::eligibility::{self, DeviceState, Requirements};
use fleetcare_rollout::waves::{self, WaveSpec};
use fleetcare_rollout::window::{self, Window};
use fleetcare_rollout::{Advance, Decision, Filter, Gates, Subject, WaveCounts};
use fleetcare_store::{
    DeviceKey, LabelRecord, NewJob, NewRollout, NewRolloutDevice, RolloutMove, RolloutRecord,
    SiteRecord, StoreError, TenantId, WaveRecord,
};
use fleetcare_wire::device::Command;
use fleetcare_wire::rollouts as w;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use utoipa::IntoParams;

use crate::AppState;
use crate::compat::decide::Entry;
use crate::error::ApiError;
use crate::extract::{JsonBody, OperatorAuth};

/// How often the engine works unasked.
const TICK: Duration = Duration::from_secs(1);
/// An ineligible device is looked at again after this long.
const RECHECK_MS: i64 = 10_000;
/// Devices stored per transaction when a rollout is created.
const CHUNK: usize = 5000;
/// Most devices looked at per rollout per tick.
const MAX_LOOK: u32 = 5000;
/// The plan search's budget per device.
const PLAN_BUDGET: Duration = Duration::from_millis(50);

/// A rollout's spec, checked and compiled.
#[derive(Debug)]
pub struct Spec {
    pub wire: w::CreateRollout,
    pub filter: Filter,
    pub waves: Vec<WaveSpec>,
    pub gates: Gates,
    pub requirements: Requirements,
    pub release: Option<(String, Version)>,
}

/// Where the waves end, and the seed devices are placed with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Thresholds {
    pub seed: u64,
    pub up_to: Vec<f64>,
}

impl Spec {
    /// Check a request; every problem at once.
    pub fn parse(wire: w::CreateRollout) -> Result<Spec, ApiError> {
        let mut problems = Vec::new();
        if wire.name.trim().is_empty() || wire.name.chars().count() > 128 {
            problems.push("name: 1 to 128 characters".to_owned());
        }
        let filter = Filter::parse(&wire.filter).unwrap_or_else(|e| {
            problems.push(format!("filter: {e}"));
            Filter::All
        });
        let wave_specs = waves::parse(&wire.waves).unwrap_or_else(|e| {
            problems.push(e);
            Vec::new()
        });
        let advance = match wire.gates.advance.as_str() {
            "automatic" => Advance::Automatic,
            "approval" => Advance::Approval,
            other => {
                problems.push(format!("gates.advance {other:?}: automatic or approval"));
                Advance::Automatic
            }
        };
        let gates = Gates {
            success_ratio: wire.gates.success_ratio,
            failure_ratio: wire.gates.failure_ratio,
            min_finished: wire.gates.min_finished,
            failure_count: wire.gates.failure_count,
            max_concurrent: wire.gates.max_concurrent,
            advance,
        };
        problems.extend(gates.check().into_iter().map(|p| format!("gates.{p}")));
        let trouble = match wire.requirements.trouble_severity.as_str() {
            "none" => None,
            s if eligibility::SEVERITIES.contains(&s) => Some(s.to_owned()),
            s => {
                problems.push(format!(
                    "requirements.trouble_severity {s:?}: none, {}",
                    eligibility::SEVERITIES.join(", ")
                ));
                None
            }
        };
        if !(60..=30 * 86_400).contains(&wire.requirements.online_within_s) {
            problems.push("requirements.online_within_s: 60 to 2592000".into());
        }
        let requirements = Requirements {
            online_within_ms: i64::try_from(wire.requirements.online_within_s)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
            trouble_severity: trouble,
        };
        if !matches!(wire.on_abort.as_str(), "finish" | "revert") {
            problems.push(format!("on_abort {:?}: finish or revert", wire.on_abort));
        }
        let release = match &wire.release {
            Some(r) => match Version::parse(&r.version) {
                Ok(v) if !r.product.is_empty() && r.product.len() <= 64 => {
                    Some((r.product.clone(), v))
                }
                Ok(_) => {
                    problems.push("release.product: 1 to 64 characters".into());
                    None
                }
                Err(e) => {
                    problems.push(format!("release.version: {e}"));
                    None
                }
            },
            None => None,
        };
        if !problems.is_empty() {
            return Err(ApiError::Invalid {
                message: format!("the rollout was refused: {} problem(s)", problems.len()),
                problems,
            });
        }
        Ok(Spec {
            wire,
            filter,
            waves: wave_specs,
            gates,
            requirements,
            release,
        })
    }
}

/// A device's labels, as the engine keeps them.
#[derive(Debug, Clone, Default)]
struct Label {
    site: Option<String>,
    tags: Vec<String>,
}

#[derive(Debug, Clone)]
struct SiteRt {
    tz: jiff::tz::TimeZone,
    windows: Vec<Window>,
}

/// The engine's memory: labels and sites (mirrors of the store), compiled specs, and the
/// devices that reported a new structure.
pub struct Rollouts {
    labels: RwLock<HashMap<TenantId, HashMap<Arc<str>, Label>>>,
    sites: RwLock<HashMap<TenantId, HashMap<String, SiteRt>>>,
    specs: Mutex<HashMap<u64, Arc<Spec>>>,
    changed: Mutex<Vec<DeviceKey>>,
    nudge: Notify,
    /// What the live pages last saw of each active rollout (state and wave counters).
    seen: Mutex<HashMap<u64, u64>>,
    /// Labels and sites were loaded from the store.
    pub ready: AtomicBool,
    /// When rollouts whose creation did not finish were last looked for.
    swept_at_ms: AtomicI64,
}

impl std::fmt::Debug for Rollouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollouts").finish_non_exhaustive()
    }
}

impl Rollouts {
    /// A tenant's device labels, as of now.
    fn labels_of(&self, tenant: TenantId) -> HashMap<Arc<str>, Label> {
        self.labels
            .read()
            .expect("labels")
            .get(&tenant)
            .cloned()
            .unwrap_or_default()
    }
}

impl Default for Rollouts {
    fn default() -> Self {
        Rollouts {
            labels: RwLock::new(HashMap::new()),
            sites: RwLock::new(HashMap::new()),
            specs: Mutex::new(HashMap::new()),
            changed: Mutex::new(Vec::new()),
            nudge: Notify::new(),
            seen: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            swept_at_ms: AtomicI64::new(i64::MIN),
        }
    }
}

/// The facts of a device, as the filter looks at them.
struct DeviceSubject<'a> {
    id: &'a str,
    entry: &'a Entry,
    vocab: &'a fleetcare_compat::vocab::Vocab,
    label: Option<&'a Label>,
    model: std::sync::Arc<str>,
}

impl Subject for DeviceSubject<'_> {
    fn id(&self) -> &str {
        self.id
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn site(&self) -> Option<&str> {
        self.label.and_then(|l| l.site.as_deref())
    }
    fn has_tag(&self, tag: &str) -> bool {
        self.label.is_some_and(|l| l.tags.iter().any(|t| t == tag))
    }
    fn any_unit(&self, name: &str, f: &mut dyn FnMut(&str, &str, &str) -> bool) -> bool {
        let facts = &self.entry.facts;
        facts.units.iter().any(|u| {
            let (slot, kind) = (
                facts.text(self.vocab, &u.slot),
                facts.text(self.vocab, &u.kind),
            );
            if &*slot != name && &*kind != name {
                return false;
            }
            let rev = u
                .hw_revision
                .as_ref()
                .map(|r| facts.text(self.vocab, r))
                .unwrap_or_else(|| "".into());
            f(&kind, &facts.text(self.vocab, &u.model), &rev)
        })
    }
    fn any_software(&self, product: &str, f: &mut dyn FnMut(&str) -> bool) -> bool {
        let facts = &self.entry.facts;
        facts.live_software().any(|(_, s)| {
            s.active
                && &*facts.text(self.vocab, &s.product) == product
                && s.version
                    .as_ref()
                    .is_some_and(|v| f(&facts.text(self.vocab, v)))
        })
    }
}

/// A device the dashboard's search found in the fleet index.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub id: Arc<str>,
    pub model: Arc<str>,
    pub site: Option<String>,
    pub units: usize,
}

/// The dashboard's device search over the fleet index: the rollout filter language, and a
/// software version (`VERSION`, or `PRODUCT VERSION`) some active software runs. By id.
pub(crate) fn search(
    st: &AppState,
    tenant: TenantId,
    filter: &Filter,
    version: Option<(Option<&str>, &str)>,
) -> Vec<Found> {
    let fleet = st.compat.snapshot(tenant);
    let labels = st.rollouts.labels_of(tenant);
    let vocab = &st.compat.vocab;
    let mut found: Vec<Found> = on_every_core(&fleet, |(id, e)| {
        let facts = &e.facts;
        let label = labels.get(&**id);
        let model = facts.text(vocab, &facts.model);
        let subject = DeviceSubject {
            id,
            entry: e,
            vocab,
            label,
            model: model.clone(),
        };
        let runs = |(product, version): (Option<&str>, &str)| {
            facts.live_software().any(|(_, s)| {
                s.active
                    && product.is_none_or(|p| &*facts.text(vocab, &s.product) == p)
                    && s.version
                        .as_ref()
                        .is_some_and(|v| &*facts.text(vocab, v) == version)
            })
        };
        (filter.matches(&subject) && version.is_none_or(runs)).then(|| Found {
            id: id.clone(),
            model,
            site: label.and_then(|l| l.site.clone()),
            units: facts.units.len(),
        })
    });
    found.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    found
}

/// Sites with devices, and device models, in the fleet index (the search form's choices).
pub(crate) fn sites_and_models(st: &AppState, tenant: TenantId) -> (Vec<String>, Vec<String>) {
    let sites: std::collections::BTreeSet<String> = st
        .rollouts
        .labels
        .read()
        .expect("labels")
        .get(&tenant)
        .map(|m| m.values().filter_map(|l| l.site.clone()).collect())
        .unwrap_or_default();
    let vocab = &st.compat.vocab;
    let models: std::collections::BTreeSet<String> = st
        .compat
        .snapshot(tenant)
        .iter()
        .map(|(_, e)| e.facts.text(vocab, &e.facts.model).to_string())
        .collect();
    (sites.into_iter().collect(), models.into_iter().collect())
}

/// The active version of `product` on the device, if it runs it.
fn running_version(st: &AppState, entry: &Entry, product: &str) -> Option<String> {
    let facts = &entry.facts;
    let vocab = &st.compat.vocab;
    facts
        .live_software()
        .find(|(_, s)| s.active && &*facts.text(vocab, &s.product) == product)
        .and_then(|(_, s)| s.version.as_ref().map(|v| facts.text(vocab, v).to_string()))
}

/// Where a selected device starts: pending, or already done.
fn first_state(
    st: &AppState,
    tenant: TenantId,
    spec: &Spec,
    entry: &Entry,
) -> (String, Option<String>) {
    match &spec.release {
        Some((product, version)) => match running_version(st, entry, product) {
            None => ("skipped".into(), Some(format!("runs no {product}"))),
            Some(v) if Version::parse(&v).is_ok_and(|v| v == *version) => (
                "succeeded".into(),
                Some(format!("runs {product} {version} already")),
            ),
            Some(_) => ("pending".into(), None),
        },
        None => match st.compat.current(tenant) {
            Some(cur) if cur.catalog.software_compatible(&entry.facts) => (
                "skipped".into(),
                Some("compatible already: nothing to change".into()),
            ),
            _ => ("pending".into(), None),
        },
    }
}

/// What the engine makes of one device now.
enum Verdict {
    Dispatch(String),
    Done(&'static str, String),
    Ineligible(String),
}

impl Rollouts {
    /// Something changed (a job ended, a device reported): work now.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// A device reported a new structure (or its first): newcomers join running rollouts,
    /// devices whose software changed are planned again.
    pub fn device_changed(&self, key: &DeviceKey) {
        self.changed.lock().expect("changed").push(key.clone());
        self.nudge();
    }

    fn spec(&self, r: &RolloutRecord) -> Option<Arc<Spec>> {
        if let Some(s) = self.specs.lock().expect("specs").get(&r.id) {
            return Some(s.clone());
        }
        let wire: w::CreateRollout = serde_json::from_str(&r.spec_json).ok()?;
        let spec = Arc::new(Spec::parse(wire).ok()?);
        self.specs.lock().expect("specs").insert(r.id, spec.clone());
        Some(spec)
    }

    fn label(&self, tenant: TenantId, device: &str) -> Option<Label> {
        self.labels
            .read()
            .expect("labels")
            .get(&tenant)
            .and_then(|m| m.get(device))
            .cloned()
    }

    fn window_open(&self, tenant: TenantId, site: Option<&str>, now_ms: i64) -> bool {
        let Some(site) = site else {
            return true;
        };
        match self
            .sites
            .read()
            .expect("sites")
            .get(&tenant)
            .and_then(|m| m.get(site))
        {
            Some(s) => window::open(&s.windows, &s.tz, now_ms),
            None => true,
        }
    }

    fn set_label(&self, tenant: TenantId, device: &str, l: Label) {
        self.labels
            .write()
            .expect("labels")
            .entry(tenant)
            .or_default()
            .insert(Arc::from(device), l);
    }

    fn set_site(&self, tenant: TenantId, name: &str, s: SiteRt) {
        self.sites
            .write()
            .expect("sites")
            .entry(tenant)
            .or_default()
            .insert(name.to_owned(), s);
    }

    /// Another instance set a device's labels: read them back, and let running rollouts see
    /// whether the device now belongs to them.
    pub async fn reload_label(&self, st: &AppState, key: &DeviceKey) {
        match st.store.label_of(key).await {
            Ok(Some(l)) => {
                let tags = serde_json::from_str(&l.tags_json).unwrap_or_default();
                self.set_label(key.tenant, &l.device_id, Label { site: l.site, tags });
                self.device_changed(key);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(device = %key.device_id, error = %e, "reading labels another instance set failed")
            }
        }
    }

    /// Another instance changed one of the tenant's sites: read them back.
    pub async fn reload_sites(&self, st: &AppState, tenant: TenantId) {
        match st.store.sites(tenant).await {
            Ok(all) => {
                for s in all {
                    let windows: Vec<String> =
                        serde_json::from_str(&s.windows_json).unwrap_or_default();
                    if let Ok(rt) = site_rt(&s.timezone, &windows) {
                        self.set_site(tenant, &s.name, rt);
                    }
                }
                self.nudge();
            }
            Err(e) => {
                tracing::warn!(tenant, error = %e, "reading sites another instance set failed")
            }
        }
    }

    /// Load labels and sites, then work until shutdown.
    pub async fn run(self: Arc<Self>, st: AppState) {
        match st.store.all_labels().await {
            Ok(all) => {
                for (t, l) in all {
                    let tags = serde_json::from_str(&l.tags_json).unwrap_or_default();
                    self.set_label(t, &l.device_id, Label { site: l.site, tags });
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the device labels failed"),
        }
        match st.store.all_sites().await {
            Ok(all) => {
                for (t, s) in all {
                    let windows: Vec<String> =
                        serde_json::from_str(&s.windows_json).unwrap_or_default();
                    if let Ok(rt) = site_rt(&s.timezone, &windows) {
                        self.set_site(t, &s.name, rt);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the sites failed"),
        }
        self.ready.store(true, Ordering::SeqCst);
        let mut shutdown = st.shutdown.clone();
        loop {
            // Rollouts move on the one instance that holds the engines' lease.
            if !st.cluster.leads() {
                // Changed devices are the leader's to look at (it hears of them too).
                self.changed.lock().expect("changed").clear();
            } else if let Err(e) = self.work(&st).await {
                tracing::warn!(error = %e, "the rollout engine: will try again");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = self.nudge.notified() => {}
                () = crate::stopped(&mut shutdown) => return,
            }
        }
    }

    /// One round over every active rollout.
    pub async fn work(&self, st: &AppState) -> Result<(), StoreError> {
        let changed = std::mem::take(&mut *self.changed.lock().expect("changed"));
        self.abandon_unfinished(st).await?;
        let active = st.store.active_rollouts().await?;
        for r in &active {
            if !changed.is_empty() && r.state == "running" {
                self.newcomers(st, r, &changed).await?;
            }
            self.tick(st, r).await?;
        }
        if st.events.watched() {
            self.tell_pages(st, &active).await?;
        }
        Ok(())
    }

    /// Rollouts cut off while being created (a creation takes seconds even for a million
    /// devices; one older than this was cut off by a stopped center and would otherwise show
    /// `creating` for ever) are aborted. A write, so once a minute, not on every round.
    async fn abandon_unfinished(&self, st: &AppState) -> Result<(), StoreError> {
        const UNFINISHED_MS: i64 = 15 * 60 * 1000;
        const EVERY_MS: i64 = 60 * 1000;
        let now = st.clock.now_ms();
        if now.saturating_sub(self.swept_at_ms.load(Ordering::Relaxed)) < EVERY_MS {
            return Ok(());
        }
        self.swept_at_ms.store(now, Ordering::Relaxed);
        let abandoned = st
            .store
            .abandon_unfinished_rollouts(now - UNFINISHED_MS, now)
            .await?;
        if abandoned > 0 {
            tracing::warn!(
                rollouts = abandoned,
                "rollouts whose creation did not finish were aborted"
            );
        }
        Ok(())
    }

    /// A rollout change notice for each tenant whose active rollouts moved since the last
    /// round (the live pages watch; one read of the wave counters per active rollout).
    async fn tell_pages(&self, st: &AppState, active: &[RolloutRecord]) -> Result<(), StoreError> {
        use std::hash::{Hash, Hasher};
        let mut now = HashMap::new();
        let mut moved = std::collections::BTreeSet::new();
        for r in active {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for w in st.store.rollout_waves(r.tenant, r.id).await? {
                (
                    w.pending,
                    w.ineligible,
                    w.running,
                    w.succeeded,
                    w.failed,
                    w.skipped,
                )
                    .hash(&mut h);
            }
            if let Some(now) = st.store.rollout(r.tenant, r.id).await? {
                (now.state, now.current_wave, now.updated_at_ms).hash(&mut h);
            }
            let fp = h.finish();
            now.insert(r.id, fp);
            if self.seen.lock().expect("seen").get(&r.id) != Some(&fp) {
                moved.insert(r.tenant);
            }
        }
        *self.seen.lock().expect("seen") = now;
        for tenant in moved {
            st.events
                .notify(tenant, crate::cluster::events::Topic::Rollouts);
        }
        Ok(())
    }

    /// Devices that reported a new structure: join the rollout if they match and are new to
    /// it, or are looked at again if what they run changed.
    async fn newcomers(
        &self,
        st: &AppState,
        r: &RolloutRecord,
        keys: &[DeviceKey],
    ) -> Result<(), StoreError> {
        let Some(spec) = self.spec(r) else {
            return Ok(());
        };
        let th: Thresholds = match serde_json::from_str(&r.thresholds_json) {
            Ok(t) => t,
            Err(_) => return Ok(()),
        };
        let now = st.clock.now_ms();
        for key in keys.iter().filter(|k| k.tenant == r.tenant) {
            let id = key.device_id.as_str();
            let Some(entry) = st.compat.snapshot_one(key) else {
                continue;
            };
            let label = self.label(r.tenant, id);
            let subject = DeviceSubject {
                id,
                entry: &entry,
                vocab: &st.compat.vocab,
                label: label.as_ref(),
                model: entry.facts.text(&st.compat.vocab, &entry.facts.model),
            };
            if !spec.filter.matches(&subject) {
                continue;
            }
            let (state, reason) = first_state(st, r.tenant, &spec, &entry);
            match st.store.rollout_device(r.tenant, r.id, id).await? {
                None => {
                    let wave = waves::wave_of(&th.up_to, waves::place(th.seed, id)) as u32;
                    st.store
                        .add_rollout_devices(
                            r.tenant,
                            r.id,
                            &[NewRolloutDevice {
                                device_id: id.to_owned(),
                                wave,
                                state,
                                reason,
                            }],
                            now,
                        )
                        .await?;
                }
                Some(d)
                    if matches!(d.state.as_str(), "succeeded" | "skipped")
                        && state == "pending" =>
                {
                    // It runs something else now: planned again.
                    st.store
                        .set_rollout_device(
                            r.tenant,
                            r.id,
                            id,
                            d.wave,
                            &d.state,
                            "pending",
                            Some("its software changed: planned again"),
                            now,
                        )
                        .await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    async fn tick(&self, st: &AppState, r: &RolloutRecord) -> Result<(), StoreError> {
        let Some(spec) = self.spec(r) else {
            tracing::error!(
                rollout = r.id,
                "a stored rollout no longer parses; it is left alone"
            );
            return Ok(());
        };
        let now = st.clock.now_ms();
        // Devices whose jobs ended, in one transaction.
        let finished = st
            .store
            .finished_rollout_jobs(r.tenant, r.id, MAX_LOOK)
            .await?;
        let ended: Vec<RolloutMove> = finished
            .iter()
            .map(|f| {
                let ok = f.job_state == "succeeded";
                RolloutMove {
                    device_id: f.device_id.clone(),
                    wave: f.wave,
                    from: "running".into(),
                    to: if ok { "succeeded" } else { "failed" }.into(),
                    reason: (!ok).then(|| {
                        format!(
                            "job {} {}: {}",
                            f.job_id,
                            f.job_state,
                            f.reason.clone().unwrap_or_default()
                        )
                    }),
                }
            })
            .collect();
        let moved = st
            .store
            .move_rollout_devices(r.tenant, r.id, &ended, now)
            .await?;
        if r.state == "aborted" && spec.wire.on_abort == "revert" {
            for (f, moved) in finished.iter().zip(moved) {
                if moved && f.job_state == "succeeded" {
                    revert(st, r, &f.device_id, f.job_id, &f.steps_json).await?;
                }
            }
        }
        if r.state != "running" {
            return Ok(());
        }
        let waves_now = st.store.rollout_waves(r.tenant, r.id).await?;
        if waves_now.is_empty() {
            // Being created (its waves are written next): nothing to decide yet.
            return Ok(());
        }
        let counts: Vec<WaveCounts> = waves_now.iter().map(counts).collect();
        let current = r.current_wave as usize;
        let mut max_wave = r.current_wave;
        match fleetcare_rollout::gates::decide(
            &spec.gates,
            current,
            &counts,
            r.wave_approved as usize > current,
        ) {
            Decision::Pause(reason) => {
                tracing::warn!(rollout = r.id, %reason, "rollout paused itself");
                st.store
                    .set_rollout_state(r.tenant, r.id, &["running"], "paused", Some(&reason), now)
                    .await?;
                return Ok(());
            }
            Decision::Advance(n) => {
                tracing::info!(rollout = r.id, wave = n + 1, "rollout: next wave");
                st.store.start_wave(r.tenant, r.id, n as u32, now).await?;
                max_wave = n as u32;
            }
            Decision::AwaitApproval(n) => {
                let why = format!("wave {} waits for approval", n + 1);
                if r.state_reason.as_deref() != Some(why.as_str()) {
                    st.store
                        .set_rollout_reason(r.tenant, r.id, Some(&why), now)
                        .await?;
                }
            }
            Decision::Done => {
                let sum = |f: fn(&WaveRecord) -> u64| waves_now.iter().map(f).sum::<u64>();
                let (pending, running) = (sum(|w| w.pending), sum(|w| w.running));
                if pending == 0 && running == 0 {
                    let why = done_words(
                        sum(|w| w.succeeded),
                        sum(|w| w.failed),
                        sum(|w| w.ineligible),
                        sum(|w| w.skipped),
                    );
                    if st
                        .store
                        .set_rollout_state(r.tenant, r.id, &["running"], "done", Some(&why), now)
                        .await?
                    {
                        tracing::info!(rollout = r.id, %why, "rollout done");
                        st.events
                            .notify(r.tenant, crate::cluster::events::Topic::Rollouts);
                    }
                    return Ok(());
                }
                let why = format!(
                    "every wave has started; {pending} device(s) wait for their turn, {running} \
                     install(s) running"
                );
                if r.state_reason.as_deref() != Some(why.as_str()) {
                    st.store
                        .set_rollout_reason(r.tenant, r.id, Some(&why), now)
                        .await?;
                }
            }
            Decision::Continue => {}
        }
        let running: u64 = waves_now.iter().map(|w| w.running).sum();
        let mut slots = spec.gates.max_concurrent.saturating_sub(running);
        if slots == 0 {
            return Ok(());
        }
        let look = u32::try_from(slots.saturating_mul(2))
            .unwrap_or(MAX_LOOK)
            .min(MAX_LOOK);
        let candidates = st
            .store
            .rollout_candidates(r.tenant, r.id, max_wave, now - RECHECK_MS, look)
            .await?;
        if candidates.is_empty() {
            return Ok(());
        }
        let policy = st.store.policy(r.tenant).await?;
        let plan_policy = Policy::parse(&policy.plan).unwrap_or_default();
        let ttl = i64::try_from(policy.job_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        // The proper state of each, then every plan in one blocking task, then every move and
        // every dispatch in one transaction each.
        let mut moves = Vec::new();
        let mut to_plan = Vec::new();
        for c in candidates {
            let Ok(device_id) = DeviceId::parse(&c.device_id) else {
                continue;
            };
            let key = DeviceKey {
                tenant: r.tenant,
                device_id,
            };
            match self.precheck(st, &key, &spec, now).await? {
                Ok(entry) => to_plan.push((c, key, entry)),
                Err((state, reason)) => moves.push(RolloutMove {
                    device_id: c.device_id.clone(),
                    wave: c.wave,
                    from: c.state.clone(),
                    to: state.into(),
                    reason: Some(reason),
                }),
            }
        }
        let mut dispatch = Vec::new();
        if !to_plan.is_empty() {
            let verdicts = match st.compat.current(r.tenant) {
                None => to_plan
                    .iter()
                    .map(|_| Verdict::Ineligible("the tenant has no catalog to plan with".into()))
                    .collect::<Vec<_>>(),
                Some(cur) => {
                    let pins: Vec<(fleetcare_compat::vocab::Sym, Version)> = match &spec.release {
                        Some((product, version)) => st
                            .compat
                            .vocab
                            .get(product)
                            .map(|sym| vec![(sym, version.clone())])
                            .unwrap_or_default(),
                        None => Vec::new(),
                    };
                    let entries: Vec<Arc<Entry>> =
                        to_plan.iter().map(|(_, _, e)| e.clone()).collect();
                    let (cur2, release) = (cur.clone(), spec.release.is_some());
                    tokio::task::spawn_blocking(move || {
                        entries
                            .iter()
                            .map(|e| plan_verdict(&cur2, e, plan_policy, &pins, release))
                            .collect()
                    })
                    .await
                    .map_err(|e| StoreError::Db(format!("the plan search failed: {e}")))?
                }
            };
            for ((c, key, _), v) in to_plan.into_iter().zip(verdicts) {
                match v {
                    Verdict::Dispatch(steps_json) if slots > 0 => {
                        slots -= 1;
                        dispatch.push((
                            key,
                            c.wave,
                            c.state.clone(),
                            NewJob {
                                origin: "rollout".into(),
                                state: "queued".into(),
                                steps_json,
                                catalog_revision: st.compat.current(r.tenant).map(|c| c.revision),
                                created_by: format!("rollout {} ({})", r.id, r.name),
                                expires_at_ms: now.saturating_add(ttl),
                            },
                        ));
                    }
                    Verdict::Dispatch(_) => {}
                    Verdict::Done(state, reason) => moves.push(RolloutMove {
                        device_id: c.device_id.clone(),
                        wave: c.wave,
                        from: c.state.clone(),
                        to: state.into(),
                        reason: Some(reason),
                    }),
                    Verdict::Ineligible(reason) => moves.push(RolloutMove {
                        device_id: c.device_id.clone(),
                        wave: c.wave,
                        from: c.state.clone(),
                        to: "ineligible".into(),
                        reason: Some(reason),
                    }),
                }
            }
        }
        st.store
            .move_rollout_devices(r.tenant, r.id, &moves, now)
            .await?;
        let ids = st.store.dispatch_rollout_jobs(r.id, &dispatch, now).await?;
        let mut told = Vec::new();
        for ((key, _, _, _), job) in dispatch.iter().zip(ids) {
            if job.is_some() {
                st.metrics.jobs_created.inc();
                told.push(key.clone());
            }
        }
        crate::cluster::send_many(st, &told, &Command::JobsAvailable).await;
        Ok(())
    }

    /// The checks before a plan: the target, the device's condition, its site's window.
    /// `Ok` with the device's entry if it should be planned, else where it goes and why.
    async fn precheck(
        &self,
        st: &AppState,
        key: &DeviceKey,
        spec: &Spec,
        now: i64,
    ) -> Result<Result<Arc<Entry>, (&'static str, String)>, StoreError> {
        let Some(entry) = st.compat.snapshot_one(key) else {
            return Ok(Err((
                "ineligible",
                "the center holds no structure of it".into(),
            )));
        };
        if let Some((product, version)) = &spec.release {
            match running_version(st, &entry, product) {
                None => return Ok(Err(("skipped", format!("runs no {product}")))),
                Some(v) if Version::parse(&v).is_ok_and(|v| v == *version) => {
                    return Ok(Err((
                        "succeeded",
                        format!("runs {product} {version} already"),
                    )));
                }
                Some(_) => {}
            }
        }
        let state = self.device_state(st, key, now).await?;
        if let Err(why) = eligibility::check(now, &spec.requirements, &state) {
            return Ok(Err(("ineligible", why)));
        }
        Ok(Ok(entry))
    }

    /// What a rollout judges a device's proper state by, now.
    pub async fn device_state(
        &self,
        st: &AppState,
        key: &DeviceKey,
        now: i64,
    ) -> Result<DeviceState, StoreError> {
        let cond = st.store.device_condition(key).await?;
        let label = self.label(key.tenant, key.device_id.as_str());
        Ok(DeviceState {
            connected: crate::cluster::seen_online(st, key).await,
            last_seen_ms: cond.last_report_at_ms,
            worst_trouble: cond.worst_trouble,
            abnormal_units: cond.abnormal_slots,
            open_job: cond.open_job,
            window_open: self.window_open(
                key.tenant,
                label.as_ref().and_then(|l| l.site.as_deref()),
                now,
            ),
            install_blocked: cond.install_blocked,
        })
    }
}

/// The plan of one device for the rollout's target.
fn plan_verdict(
    cur: &crate::compat::decide::Current,
    entry: &Entry,
    policy: Policy,
    pins: &[(fleetcare_compat::vocab::Sym, Version)],
    release: bool,
) -> Verdict {
    if release && pins.is_empty() {
        return Verdict::Ineligible("the catalog does not know the release's product".into());
    }
    match cur
        .catalog
        .plan_pinned(&entry.facts, policy, PLAN_BUDGET, pins)
    {
        PlanOutcome::Change(steps) => {
            if !cur
                .catalog
                .software_compatible(&cur.catalog.apply(&entry.facts, &steps))
            {
                Verdict::Ineligible("its plan would leave it incompatible".into())
            } else {
                let wire =
                    crate::compat::decide::software_steps(&cur.catalog, &entry.facts, &steps);
                Verdict::Dispatch(serde_json::to_string(&wire).expect("steps serialize"))
            }
        }
        PlanOutcome::Keep => {
            Verdict::Done("skipped", "compatible already: nothing to change".into())
        }
        PlanOutcome::NoSolution(why) => Verdict::Ineligible(format!(
            "no plan for it reaches the target: {} (`compat check` shows the whole reasoning)",
            fleetcare_compat::plan::summarize(&why)
        )),
        PlanOutcome::OutOfTime => Verdict::Ineligible("its plan search ran out of time".into()),
    }
}

/// After an abort with `on_abort = revert`: the device switches back to what it had.
async fn revert(
    st: &AppState,
    r: &RolloutRecord,
    device: &str,
    job: u64,
    steps_json: &str,
) -> Result<(), StoreError> {
    let Ok(device_id) = DeviceId::parse(device) else {
        return Ok(());
    };
    let steps: Vec<fleetcare_wire::compat::SoftwareStep> =
        serde_json::from_str(steps_json).unwrap_or_default();
    let back: Vec<fleetcare_wire::compat::SoftwareStep> = steps
        .into_iter()
        .filter_map(|s| {
            Some(fleetcare_wire::compat::SoftwareStep {
                from: Some(s.to.clone()),
                to: s.from?,
                action: "switch".into(),
                ..s
            })
        })
        .collect();
    if back.is_empty() {
        return Ok(());
    }
    let key = DeviceKey {
        tenant: r.tenant,
        device_id,
    };
    let now = st.clock.now_ms();
    let id = st
        .store
        .create_job(
            &key,
            &NewJob {
                origin: "rollout".into(),
                state: "queued".into(),
                steps_json: serde_json::to_string(&back).expect("steps serialize"),
                catalog_revision: None,
                created_by: format!("rollout {} aborted: revert of job {job}", r.id),
                expires_at_ms: now.saturating_add(7 * 86_400_000),
            },
            now,
        )
        .await?;
    crate::cluster::send(st, &key, Command::JobsAvailable).await;
    tracing::info!(
        rollout = r.id,
        device,
        job = id,
        "rollout aborted: the device switches back"
    );
    Ok(())
}

/// How a rollout ended, in words: "done: 4 succeeded" or "done with 3 ineligible: …".
fn done_words(succeeded: u64, failed: u64, ineligible: u64, skipped: u64) -> String {
    let mut left = Vec::new();
    if failed > 0 {
        left.push(format!("{failed} failed"));
    }
    if ineligible > 0 {
        left.push(format!("{ineligible} ineligible"));
    }
    let mut parts = vec![format!("{succeeded} succeeded")];
    if failed > 0 {
        parts.push(format!("{failed} failed"));
    }
    if ineligible > 0 {
        parts.push(format!(
            "{ineligible} ineligible (not in a proper state while it ran; a new rollout takes them)"
        ));
    }
    if skipped > 0 {
        parts.push(format!("{skipped} had it already"));
    }
    if left.is_empty() {
        format!("done: {}", parts.join(", "))
    } else {
        format!("done with {}: {}", left.join(" and "), parts.join(", "))
    }
}

fn counts(w: &WaveRecord) -> WaveCounts {
    WaveCounts {
        devices: w.devices,
        pending: w.pending,
        ineligible: w.ineligible,
        running: w.running,
        succeeded: w.succeeded,
        failed: w.failed,
        skipped: w.skipped,
    }
}

fn site_rt(timezone: &str, windows: &[String]) -> Result<SiteRt, Vec<String>> {
    let mut problems = Vec::new();
    let tz = window::zone(timezone).map_err(|e| problems.push(format!("timezone: {e}")));
    if windows.len() > window::MAX_WINDOWS {
        problems.push(format!("windows: at most {}", window::MAX_WINDOWS));
    }
    let parsed: Vec<Window> = windows
        .iter()
        .filter_map(|w| {
            Window::parse(w)
                .map_err(|e| problems.push(format!("windows: {e}")))
                .ok()
        })
        .collect();
    match tz {
        Ok(tz) if problems.is_empty() => Ok(SiteRt {
            tz,
            windows: parsed,
        }),
        _ => Err(problems),
    }
}

// ---- views ---------------------------------------------------------------------------------

async fn view(st: &AppState, r: RolloutRecord) -> Result<w::Rollout, ApiError> {
    let waves_now = st.store.rollout_waves(r.tenant, r.id).await?;
    let th: Option<Thresholds> = serde_json::from_str(&r.thresholds_json).ok();
    let mut total = w::Wave {
        wave: 0,
        up_to: 1.0,
        devices: 0,
        pending: 0,
        ineligible: 0,
        running: 0,
        succeeded: 0,
        failed: 0,
        skipped: 0,
        started_at: None,
    };
    let waves: Vec<w::Wave> = waves_now
        .iter()
        .map(|x| {
            total.devices += x.devices;
            total.pending += x.pending;
            total.ineligible += x.ineligible;
            total.running += x.running;
            total.succeeded += x.succeeded;
            total.failed += x.failed;
            total.skipped += x.skipped;
            w::Wave {
                wave: x.wave + 1,
                up_to: th
                    .as_ref()
                    .and_then(|t| t.up_to.get(x.wave as usize).copied())
                    .unwrap_or(1.0),
                devices: x.devices,
                pending: x.pending,
                ineligible: x.ineligible,
                running: x.running,
                succeeded: x.succeeded,
                failed: x.failed,
                skipped: x.skipped,
                started_at: x.started_at_ms.map(rfc3339),
            }
        })
        .collect();
    let spec: w::CreateRollout = serde_json::from_str(&r.spec_json)
        .map_err(|e| ApiError::Internal(format!("rollout {}: {e}", r.id)))?;
    // The engine's own decision: the wave that waits for an operator, if one does.
    let awaiting_wave = match (r.state.as_str(), st.rollouts.spec(&r)) {
        ("running", Some(parsed)) if !waves_now.is_empty() => {
            let counts: Vec<WaveCounts> = waves_now.iter().map(counts).collect();
            match fleetcare_rollout::gates::decide(
                &parsed.gates,
                r.current_wave as usize,
                &counts,
                r.wave_approved > r.current_wave,
            ) {
                Decision::AwaitApproval(n) => Some(n as u32 + 1),
                _ => None,
            }
        }
        _ => None,
    };
    Ok(w::Rollout {
        id: r.id,
        name: r.name,
        state: r.state,
        state_reason: r.state_reason,
        spec,
        current_wave: r.current_wave + 1,
        created_by: r.created_by,
        created_at: rfc3339(r.created_at_ms),
        approved_by: r.approved_by,
        updated_at: rfc3339(r.updated_at_ms),
        awaiting_wave,
        waves,
        total,
    })
}

async fn find(st: &AppState, tenant: TenantId, id: u64) -> Result<RolloutRecord, ApiError> {
    st.store
        .rollout(tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("rollout {id}")))
}

// ---- the API -------------------------------------------------------------------------------

/// `f` over `items`, in as many parts as the machine has cores; the `Some`s, in order.
fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Option<R> + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let part = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let parts: Vec<_> = items
            .chunks(part)
            .map(|chunk| s.spawn(move || chunk.iter().filter_map(f).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    })
}

/// The devices a new rollout selects, each with its wave and first state, in key order (so
/// that storing them appends to the index), and the waves' thresholds.
fn select(
    st: &AppState,
    tenant: TenantId,
    spec: &Spec,
    seed: u64,
) -> (Vec<NewRolloutDevice>, Thresholds) {
    let fleet = st.compat.snapshot(tenant);
    let labels = st.rollouts.labels_of(tenant);
    let vocab = &st.compat.vocab;
    let mut selected: Vec<(Arc<str>, f64, Arc<Entry>)> = on_every_core(&fleet, |(id, e)| {
        spec.filter
            .matches(&DeviceSubject {
                id,
                entry: e,
                vocab,
                label: labels.get(&**id),
                model: e.facts.text(vocab, &e.facts.model),
            })
            .then(|| (id.clone(), waves::place(seed, id), e.clone()))
    });
    let mut places: Vec<f64> = selected.iter().map(|s| s.1).collect();
    places.sort_by(f64::total_cmp);
    let th = Thresholds {
        seed,
        up_to: waves::thresholds(&spec.waves, &places),
    };
    drop(places);
    selected.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let rows = on_every_core(&selected, |(d, p, e)| {
        let (state, reason) = first_state(st, tenant, spec, e);
        Some(NewRolloutDevice {
            device_id: d.to_string(),
            wave: waves::wave_of(&th.up_to, *p) as u32,
            state,
            reason,
        })
    });
    (rows, th)
}

/// Create a rollout: the filter is evaluated over the fleet now, devices are placed in waves
/// and stored; it starts at once, or once approved.
#[utoipa::path(post, path = "/api/v1/rollouts", request_body = w::CreateRollout,
    responses((status = 200, body = w::Rollout), (status = 400, body = fleetcare_wire::ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    op: OperatorAuth,
    JsonBody(req): JsonBody<w::CreateRollout>,
) -> Result<Json<w::Rollout>, ApiError> {
    let tenant = op.0.tenant;
    let spec = Spec::parse(req)?;
    if let Some((product, version)) = &spec.release {
        let known = st.compat.current(tenant).is_some_and(|cur| {
            st.compat
                .vocab
                .get(product)
                .zip(st.compat.vocab.get(version.as_str()))
                .is_some_and(|(p, v)| cur.catalog.find_release(p, v).is_some())
        });
        if !known {
            return Err(ApiError::Invalid {
                message: "the rollout was refused: 1 problem(s)".into(),
                problems: vec![format!(
                    "release: the tenant's catalog has no release {product} {version}"
                )],
            });
        }
        if !spec.wire.allow_unpublished
            && let Some(why) = crate::delivery::Availability::default()
                .release(&st, tenant, product, &version.to_string())
                .await?
        {
            return Err(ApiError::Invalid {
                message: "the rollout was refused: 1 problem(s)".into(),
                problems: vec![format!(
                    "release: {why}; publish it first, or create the rollout allowing an \
                     unpublished release (--allow-unpublished), whose jobs then wait for it"
                )],
            });
        }
    }
    let started = std::time::Instant::now();
    let seed = spec
        .wire
        .seed
        .unwrap_or_else(fleetcare_core::secret::random_u64);
    let spec = Arc::new(spec);
    // Selection, waves and first states: the fleet index and the labels, in memory, off the
    // async workers and on every core.
    let (rows, th) = {
        let (st, spec) = (st.clone(), spec.clone());
        tokio::task::spawn_blocking(move || select(&st, tenant, &spec, seed))
            .await
            .map_err(|e| ApiError::Internal(format!("selecting the devices: {e}")))?
    };
    let took_select = started.elapsed();
    let now = st.clock.now_ms();
    let needs_approval = spec.wire.require_approval;
    let id = st
        .store
        .create_rollout(
            tenant,
            &NewRollout {
                name: spec.wire.name.clone(),
                spec_json: serde_json::to_string(&spec.wire).expect("spec serializes"),
                thresholds_json: serde_json::to_string(&th).expect("thresholds serialize"),
                waves: u32::try_from(th.up_to.len()).unwrap_or(u32::MAX),
                // Not active until its selection is stored: the engine's newcomers and ticks
                // would otherwise race the rows below (a device added twice, a wave judged
                // empty).
                state: "creating".into(),
                created_by: op.0.name.clone(),
            },
            now,
        )
        .await?;
    for chunk in rows.chunks(CHUNK) {
        if let Err(e) = st
            .store
            .add_fresh_rollout_devices(tenant, id, chunk, now)
            .await
        {
            let why = format!("its devices could not be stored: {e}");
            st.store
                .set_rollout_state(tenant, id, &["creating"], "aborted", Some(&why), now)
                .await
                .ok();
            return Err(e.into());
        }
    }
    if needs_approval {
        st.store
            .set_rollout_state(
                tenant,
                id,
                &["creating"],
                "awaiting_approval",
                Some("waits for approval by someone other than its creator"),
                now,
            )
            .await?;
    } else {
        st.store
            .set_rollout_state(tenant, id, &["creating"], "running", None, now)
            .await?;
        st.store.start_wave(tenant, id, 0, now).await.ok();
    }
    tracing::info!(rollout = id, devices = rows.len(), selected_in = ?took_select, took = ?started.elapsed(), operator = %op.0.name, "rollout created");
    st.rollouts.nudge();
    view(&st, find(&st, tenant, id).await?).await.map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/rollouts", params(ListQuery), responses((status = 200, body = w::RolloutList)))]
pub async fn list(
    State(st): State<AppState>,
    op: OperatorAuth,
    Query(q): Query<ListQuery>,
) -> Result<Json<w::RolloutList>, ApiError> {
    let mut out = Vec::new();
    for r in st
        .store
        .rollouts(op.0.tenant, q.limit.unwrap_or(100).clamp(1, 1000))
        .await?
    {
        out.push(view(&st, r).await?);
    }
    Ok(Json(w::RolloutList { rollouts: out }))
}

#[utoipa::path(get, path = "/api/v1/rollouts/{id}", responses((status = 200, body = w::Rollout), (status = 404)))]
pub async fn show(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    view(&st, find(&st, op.0.tenant, id).await?).await.map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DevicesQuery {
    pub state: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/rollouts/{id}/devices", params(DevicesQuery), responses((status = 200, body = w::RolloutDevices)))]
pub async fn devices(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
    Query(q): Query<DevicesQuery>,
) -> Result<Json<w::RolloutDevices>, ApiError> {
    find(&st, op.0.tenant, id).await?;
    let state = q.state.unwrap_or_default();
    if !state.is_empty()
        && !fleetcare_store::rollouts::ROLLOUT_DEVICE_STATES.contains(&state.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "state {state:?}: one of {}",
            fleetcare_store::rollouts::ROLLOUT_DEVICE_STATES.join(", ")
        )));
    }
    let rows = st
        .store
        .rollout_devices(
            op.0.tenant,
            id,
            &state,
            q.after.as_deref().unwrap_or(""),
            q.limit.unwrap_or(100).clamp(1, 1000),
        )
        .await?;
    let mut out = w::RolloutDevices {
        devices: rows
            .into_iter()
            .map(|d| w::RolloutDevice {
                device_id: d.device_id,
                wave: d.wave + 1,
                state: d.state,
                reason: d.reason,
                job_id: d.job_id,
                updated_at: rfc3339(d.updated_at_ms),
                waiting: None,
            })
            .collect(),
    };
    // A running device's job may wait for its release: say so.
    let mut avail = crate::delivery::Availability::default();
    for d in out.devices.iter_mut().filter(|d| d.state == "running") {
        let Some(job) = d.job_id else { continue };
        if let Some(j) = st.store.job(op.0.tenant, job).await?
            && j.state == "queued"
        {
            let steps: Vec<fleetcare_wire::compat::SoftwareStep> =
                serde_json::from_str(&j.steps_json).unwrap_or_default();
            d.waiting = avail.steps(&st, op.0.tenant, &steps).await?;
        }
    }
    Ok(Json(out))
}

/// Approve a rollout awaiting approval, or its next wave; never by its creator.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/approve", responses((status = 200, body = w::Rollout), (status = 403), (status = 409)))]
pub async fn approve(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    let r = find(&st, op.0.tenant, id).await?;
    if r.created_by == op.0.name {
        return Err(ApiError::Forbidden(format!(
            "{} created rollout {id}: no one approves their own rollout",
            op.0.name
        )));
    }
    let now = st.clock.now_ms();
    let done = match r.state.as_str() {
        "awaiting_approval" => {
            let ok = st
                .store
                .approve_rollout(op.0.tenant, id, &op.0.name, now)
                .await?;
            if ok {
                st.store.start_wave(op.0.tenant, id, 0, now).await.ok();
            }
            ok
        }
        "running" => {
            st.store
                .approve_wave(op.0.tenant, id, r.current_wave + 1, now)
                .await?
        }
        other => {
            return Err(ApiError::Conflict {
                code: "not_awaiting_approval",
                message: format!("rollout {id} is {other}: nothing to approve"),
            });
        }
    };
    if !done {
        return Err(ApiError::Conflict {
            code: "not_awaiting_approval",
            message: format!("rollout {id}: nothing waits for approval"),
        });
    }
    tracing::info!(rollout = id, operator = %op.0.name, "rollout approved");
    st.rollouts.nudge();
    st.events
        .notify(op.0.tenant, crate::cluster::events::Topic::Rollouts);
    view(&st, find(&st, op.0.tenant, id).await?).await.map(Json)
}

async fn transition(
    st: &AppState,
    op: &OperatorAuth,
    id: u64,
    from: &[&str],
    to: &str,
    reason: Option<String>,
) -> Result<RolloutRecord, ApiError> {
    let r = find(st, op.0.tenant, id).await?;
    let now = st.clock.now_ms();
    if !st
        .store
        .set_rollout_state(op.0.tenant, id, from, to, reason.as_deref(), now)
        .await?
    {
        return Err(ApiError::Conflict {
            code: "rollout_state",
            message: format!("rollout {id} is {}: it cannot become {to}", r.state),
        });
    }
    tracing::info!(rollout = id, operator = %op.0.name, state = to, "rollout state");
    st.rollouts.nudge();
    st.events
        .notify(op.0.tenant, crate::cluster::events::Topic::Rollouts);
    find(st, op.0.tenant, id).await
}

#[utoipa::path(post, path = "/api/v1/rollouts/{id}/pause", responses((status = 200, body = w::Rollout), (status = 409)))]
pub async fn pause(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    let why = format!("paused by {}", op.0.name);
    let r = transition(&st, &op, id, &["running"], "paused", Some(why)).await?;
    view(&st, r).await.map(Json)
}

#[utoipa::path(post, path = "/api/v1/rollouts/{id}/resume", responses((status = 200, body = w::Rollout), (status = 409)))]
pub async fn resume(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    let r = transition(&st, &op, id, &["paused"], "running", None).await?;
    view(&st, r).await.map(Json)
}

/// Abort: jobs not yet started are cancelled, devices not yet dispatched too; running installs
/// finish (and with `on_abort = revert` switch back).
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/abort", responses((status = 200, body = w::Rollout), (status = 409)))]
pub async fn abort(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<u64>,
) -> Result<Json<w::Rollout>, ApiError> {
    let why = format!("aborted by {}", op.0.name);
    let r = transition(
        &st,
        &op,
        id,
        &["awaiting_approval", "running", "paused"],
        "aborted",
        Some(why),
    )
    .await?;
    let now = st.clock.now_ms();
    for (device, wave, job) in st.store.unstarted_rollout_jobs(op.0.tenant, id).await? {
        let cancelled = st
            .store
            .transition_job(
                op.0.tenant,
                job,
                &fleetcare_store::Transition {
                    reason: Some("cancelled"),
                    detail: Some("the rollout was aborted"),
                    ..fleetcare_store::Transition::new(&["awaiting_approval", "queued"], "failed")
                },
                now,
            )
            .await?;
        if cancelled {
            st.store
                .set_rollout_device(
                    op.0.tenant,
                    id,
                    &device,
                    wave,
                    "running",
                    "cancelled",
                    Some("the rollout was aborted"),
                    now,
                )
                .await?;
        }
    }
    st.store
        .cancel_rollout_devices(op.0.tenant, id, now)
        .await?;
    view(&st, find(&st, op.0.tenant, r.id).await?)
        .await
        .map(Json)
}

/// Set a site's time zone and maintenance windows.
#[utoipa::path(put, path = "/api/v1/sites/{name}", request_body = w::Site, responses((status = 200, body = w::Site), (status = 400)))]
pub async fn put_site(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(name): Path<String>,
    JsonBody(site): JsonBody<w::Site>,
) -> Result<Json<w::Site>, ApiError> {
    let mut problems = Vec::new();
    if name.is_empty() || name.chars().count() > 64 {
        problems.push("name: 1 to 64 characters".to_owned());
    }
    let rt = site_rt(&site.timezone, &site.windows).map_err(|p| problems.extend(p));
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: format!("the site was refused: {} problem(s)", problems.len()),
            problems,
        });
    }
    let Ok(rt) = rt else {
        return Err(ApiError::Internal("site check".into()));
    };
    st.store
        .set_site(
            op.0.tenant,
            &SiteRecord {
                name: name.clone(),
                timezone: site.timezone.clone(),
                windows_json: serde_json::to_string(&site.windows).expect("strings serialize"),
            },
        )
        .await?;
    st.rollouts.set_site(op.0.tenant, &name, rt);
    st.rollouts.nudge();
    crate::cluster::tell(&st, crate::cluster::Message::Sites { t: op.0.tenant }).await;
    Ok(Json(w::Site { name, ..site }))
}

#[utoipa::path(get, path = "/api/v1/sites", responses((status = 200, body = w::SiteList)))]
pub async fn sites(
    State(st): State<AppState>,
    op: OperatorAuth,
) -> Result<Json<w::SiteList>, ApiError> {
    let sites = st
        .store
        .sites(op.0.tenant)
        .await?
        .into_iter()
        .map(|s| w::Site {
            name: s.name,
            timezone: s.timezone,
            windows: serde_json::from_str(&s.windows_json).unwrap_or_default(),
        })
        .collect();
    Ok(Json(w::SiteList { sites }))
}

/// Set a device's site and tags (what rollout filters select by).
#[utoipa::path(put, path = "/api/v1/devices/{id}/labels", request_body = w::DeviceLabels, responses((status = 200, body = w::DeviceLabels), (status = 400), (status = 404)))]
pub async fn put_labels(
    State(st): State<AppState>,
    op: OperatorAuth,
    Path(id): Path<String>,
    JsonBody(l): JsonBody<w::DeviceLabels>,
) -> Result<Json<w::DeviceLabels>, ApiError> {
    let key = crate::extract::device_key(&op, &id)?;
    if st.store.device(&key).await?.is_none() {
        return Err(ApiError::NotFound(format!("device {id}")));
    }
    let mut problems = Vec::new();
    if l.tags.len() > 32 {
        problems.push("tags: at most 32".to_owned());
    }
    for t in l.tags.iter().chain(l.site.iter()) {
        if t.is_empty() || t.chars().count() > 64 || t.chars().any(char::is_control) {
            problems.push(format!(
                "{t:?}: site and tags are 1 to 64 characters, no control characters"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: format!("the labels were refused: {} problem(s)", problems.len()),
            problems,
        });
    }
    st.store
        .set_labels(
            &key,
            &LabelRecord {
                device_id: id.clone(),
                site: l.site.clone(),
                tags_json: serde_json::to_string(&l.tags).expect("strings serialize"),
            },
        )
        .await?;
    st.rollouts.set_label(
        op.0.tenant,
        &id,
        Label {
            site: l.site.clone(),
            tags: l.tags.clone(),
        },
    );
    st.rollouts.device_changed(&key);
    crate::cluster::tell(
        &st,
        crate::cluster::Message::Labels {
            t: op.0.tenant,
            d: id.clone(),
        },
    )
    .await;
    Ok(Json(l))
}
