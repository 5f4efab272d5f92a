//! The rollout engine and its API: selection, waves, gates, proper-state dispatch, control.
//!
//! Creating a rollout evaluates its filter over the fleet index (every device of the tenant,
//! in memory) and the device labels, places each selected device in a wave by its hash, and
//! stores the devices and their waves' counters in chunks. The engine then works every second
//! (and at once when a job ends or a device reports a new structure): it moves devices whose
//! jobs ended, asks the gates (pure, in `fleetcare-rollout`) whether to pause, advance or
//! wait, and dispatches pending devices of the started waves up to the concurrency limit —
//! each only if it is in a proper state and its own plan reaches the target.
//!
//! This file holds the state shared by the parts (specs, device labels, sites and their
//! maintenance windows); `select` evaluates a filter over the fleet, `engine` works the waves,
//! `api` holds the HTTP handlers.

pub mod api;
pub mod engine;
pub mod select;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex, RwLock};

use fleetcare_compat::version::Version;
use fleetcare_rollout::eligibility::{self, Requirements};
use fleetcare_rollout::waves::{self, WaveSpec};
use fleetcare_rollout::window::{self, Window};
use fleetcare_rollout::{Advance, Filter, Gates};
use fleetcare_store::{DeviceKey, RolloutRecord, TenantId};
use fleetcare_wire::rollouts as w;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::ctx::Ctx;
use crate::error::ApiError;

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
pub(crate) struct Label {
    pub(crate) site: Option<String>,
    pub(crate) tags: Vec<String>,
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
    /// The fleet index and the catalogs the plans are judged against.
    pub(crate) compat: Arc<crate::compat::Compat>,
}

impl std::fmt::Debug for Rollouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollouts").finish_non_exhaustive()
    }
}

impl Rollouts {
    /// A tenant's device labels, as of now.
    fn label_of(&self, key: &fleetcare_store::DeviceKey) -> Option<Label> {
        self.labels
            .read()
            .expect("labels")
            .get(&key.tenant)
            .and_then(|m| m.get(key.device_id.as_str()))
            .cloned()
    }

    fn labels_of(&self, tenant: TenantId) -> HashMap<Arc<str>, Label> {
        self.labels
            .read()
            .expect("labels")
            .get(&tenant)
            .cloned()
            .unwrap_or_default()
    }
}

impl Rollouts {
    /// The engine, reading the fleet and the catalogs from `compat`.
    pub fn new(compat: Arc<crate::compat::Compat>) -> Self {
        Rollouts {
            compat,
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

    /// Whether the maintenance window of a device's site is open now; `None` when its site
    /// has no windows (or it has no site).
    pub(crate) fn device_window(
        &self,
        tenant: TenantId,
        device: &str,
        now_ms: i64,
    ) -> Option<bool> {
        let site = self.label(tenant, device)?.site?;
        let sites = self.sites.read().expect("sites");
        let s = sites.get(&tenant)?.get(&site)?;
        (!s.windows.is_empty()).then(|| window::open(&s.windows, &s.tz, now_ms))
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
    pub async fn reload_label(&self, st: &Ctx, key: &DeviceKey) {
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
    pub async fn reload_sites(&self, st: &Ctx, tenant: TenantId) {
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

// ---- the API -------------------------------------------------------------------------------

impl crate::devices::report::AfterReport for Rollouts {
    /// A device whose structure changed is looked at again (its plan may differ now).
    fn stored<'a>(
        &'a self,
        r: &'a crate::devices::report::Stored<'a>,
    ) -> crate::devices::report::Work<'a> {
        if r.current && r.changes > 0 {
            self.device_changed(r.key);
        }
        crate::devices::report::done()
    }
}
