//! Selection: a rollout's filter evaluated over the fleet index and the device labels, on
//! every core.

use std::sync::Arc;

use fleetcare_compat::version::Version;
use fleetcare_rollout::waves::{self};
use fleetcare_rollout::{Filter, Subject};
use fleetcare_store::{NewRolloutDevice, TenantId};

use crate::compat::decide::Entry;
use crate::rollout::Rollouts;
use crate::rollout::{Label, Spec, Thresholds};

/// The facts of a device, as the filter looks at them.
pub(crate) struct DeviceSubject<'a> {
    pub(crate) id: &'a str,
    pub(crate) entry: &'a Entry,
    pub(crate) vocab: &'a fleetcare_compat::vocab::Vocab,
    pub(crate) label: Option<&'a Label>,
    pub(crate) model: std::sync::Arc<str>,
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
    r: &Rollouts,
    tenant: TenantId,
    filter: &Filter,
    version: Option<(Option<&str>, &str)>,
) -> Vec<Found> {
    let fleet = r.compat.snapshot(tenant);
    let labels = r.labels_of(tenant);
    let vocab = &r.compat.vocab;
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
pub(crate) fn sites_and_models(r: &Rollouts, tenant: TenantId) -> (Vec<String>, Vec<String>) {
    let sites: std::collections::BTreeSet<String> = r
        .labels
        .read()
        .expect("labels")
        .get(&tenant)
        .map(|m| m.values().filter_map(|l| l.site.clone()).collect())
        .unwrap_or_default();
    let vocab = &r.compat.vocab;
    let models: std::collections::BTreeSet<String> = r
        .compat
        .snapshot(tenant)
        .iter()
        .map(|(_, e)| e.facts.text(vocab, &e.facts.model).to_string())
        .collect();
    (sites.into_iter().collect(), models.into_iter().collect())
}

/// The active version of `product` on the device, if it runs it.
pub(crate) fn running_version(r: &Rollouts, entry: &Entry, product: &str) -> Option<String> {
    let facts = &entry.facts;
    let vocab = &r.compat.vocab;
    facts
        .live_software()
        .find(|(_, s)| s.active && &*facts.text(vocab, &s.product) == product)
        .and_then(|(_, s)| s.version.as_ref().map(|v| facts.text(vocab, v).to_string()))
}

/// `f` over `items`, in as many parts as the machine has cores; the `Some`s, in order.
pub(crate) fn on_every_core<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Option<R> + Sync,
) -> Vec<R> {
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
pub(crate) fn select(
    r: &Rollouts,
    tenant: TenantId,
    spec: &Spec,
    seed: u64,
) -> (Vec<NewRolloutDevice>, Thresholds) {
    let fleet = r.compat.snapshot(tenant);
    let labels = r.labels_of(tenant);
    let vocab = &r.compat.vocab;
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
        let (state, reason) = first_state(r, tenant, spec, e);
        Some(NewRolloutDevice {
            device_id: d.to_string(),
            wave: waves::wave_of(&th.up_to, *p) as u32,
            state,
            reason,
        })
    });
    (rows, th)
}

/// Where a selected device starts: pending, or already done.
pub(crate) fn first_state(
    r: &Rollouts,
    tenant: TenantId,
    spec: &Spec,
    entry: &Entry,
) -> (String, Option<String>) {
    match &spec.release {
        Some((product, version)) => match running_version(r, entry, product) {
            None => ("skipped".into(), Some(format!("runs no {product}"))),
            Some(v) if Version::parse(&v).is_ok_and(|v| v == *version) => (
                "succeeded".into(),
                Some(format!("runs {product} {version} already")),
            ),
            Some(_) => ("pending".into(), None),
        },
        None => match r.compat.current(tenant) {
            Some(cur) if cur.catalog.software_compatible(&entry.facts) => (
                "skipped".into(),
                Some("compatible already: nothing to change".into()),
            ),
            _ => ("pending".into(), None),
        },
    }
}

impl Rollouts {
    /// Does one device match a filter (a notification subscription's)? A device the fleet
    /// index does not hold matches none.
    pub(crate) fn device_matches(&self, key: &fleetcare_store::DeviceKey, filter: &Filter) -> bool {
        let Some(entry) = self.compat.snapshot_one(key) else {
            return false;
        };
        let label = self.label_of(key);
        let vocab = &self.compat.vocab;
        let subject = DeviceSubject {
            id: key.device_id.as_str(),
            entry: &entry,
            vocab,
            label: label.as_ref(),
            model: entry.facts.text(vocab, &entry.facts.model),
        };
        filter.matches(&subject)
    }

    /// A device's model and site as the fleet index and labels hold them.
    pub(crate) fn device_facts(
        &self,
        key: &fleetcare_store::DeviceKey,
    ) -> Option<(String, Option<String>)> {
        let entry = self.compat.snapshot_one(key)?;
        let model = entry
            .facts
            .text(&self.compat.vocab, &entry.facts.model)
            .to_string();
        Some((model, self.label_of(key).and_then(|l| l.site)))
    }
}
