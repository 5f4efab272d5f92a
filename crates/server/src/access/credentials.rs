//! A cache of device credentials (hash → device), so a device's request costs no store read.
//!
//! Entries live between half of `ttl` and `ttl` (spread by the credential's hash, so that
//! devices that connected together do not all go back to the store at one instant); a
//! revocation or a new enrollment on this instance removes the device's entry at once, and on
//! other instances it lapses within `ttl` (10 s). When the cache holds `capacity` entries it is
//! emptied and refills from the store: it is a cache, never the record.
//!
//! Entries are kept in two generations: new ones go into the current one, and every `ttl` the
//! previous generation, whose entries have all expired by then, is retired whole. So an
//! expired entry goes within two `ttl`s (a device on a push channel authenticates once, and
//! its entry would otherwise stay as long as the center runs) at the cost of one swap under
//! the lock; the retired generation is freed by the caller, off the lock (a million entries
//! take a quarter of a second to free, and a `retain` over them held the lock for 20–100 ms).

use std::collections::HashMap;
use std::sync::Mutex;

use fleetcare_store::DeviceKey;

#[derive(Debug)]
pub struct CredentialCache {
    inner: Mutex<Inner>,
    ttl_ms: i64,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    current: Generation,
    previous: Generation,
    /// When `current` was started.
    since_ms: Option<i64>,
}

/// One generation of entries; retired whole when the next one is, every `ttl`.
#[derive(Debug, Default)]
pub struct Generation {
    by_hash: HashMap<String, (DeviceKey, i64)>,
    by_device: HashMap<DeviceKey, String>,
}

impl Generation {
    fn forget(&mut self, key: &DeviceKey) {
        if let Some(hash) = self.by_device.remove(key) {
            self.by_hash.remove(&hash);
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

impl CredentialCache {
    pub fn new(ttl_ms: i64, capacity: usize) -> CredentialCache {
        CredentialCache {
            inner: Mutex::new(Inner::default()),
            ttl_ms,
            capacity: capacity.max(1),
        }
    }

    /// The device a credential hash belongs to, if cached and fresh at `now_ms`.
    pub fn get(&self, hash: &str, now_ms: i64) -> Option<DeviceKey> {
        let inner = self.inner.lock().expect("credential cache");
        let (key, expires) = inner
            .current
            .by_hash
            .get(hash)
            .or_else(|| inner.previous.by_hash.get(hash))?;
        (now_ms < *expires).then(|| key.clone())
    }

    /// How long the entry for `hash` lives: `ttl` less up to half of it.
    fn life_ms(&self, hash: &str) -> i64 {
        let spread = (self.ttl_ms / 2).max(1);
        let h = hash
            .get(..8)
            .and_then(|p| i64::from_str_radix(p, 16).ok())
            .unwrap_or(0);
        self.ttl_ms - h % spread
    }

    pub fn insert(&self, hash: String, key: DeviceKey, now_ms: i64) {
        let mut inner = self.inner.lock().expect("credential cache");
        if inner.current.len() + inner.previous.len() >= self.capacity {
            inner.current = Generation::default();
            inner.previous = Generation::default();
        }
        inner.since_ms.get_or_insert(now_ms);
        inner.previous.forget(&key);
        if let Some(old) = inner.current.by_device.insert(key.clone(), hash.clone()) {
            inner.current.by_hash.remove(&old);
        }
        let expires = now_ms + self.life_ms(&hash);
        inner.current.by_hash.insert(hash, (key, expires));
    }

    /// The device's credential changed or was revoked: forget it.
    pub fn forget(&self, key: &DeviceKey) {
        let mut inner = self.inner.lock().expect("credential cache");
        inner.current.forget(key);
        inner.previous.forget(key);
    }

    /// Once `ttl` has passed since the current generation began, retire the previous one (its
    /// entries were all inserted at least `ttl` ago, so all have expired) and begin a new one.
    /// The caller frees what is returned, off any latency-sensitive thread. Run every few
    /// seconds.
    pub fn retire(&self, now_ms: i64) -> Option<Generation> {
        let mut inner = self.inner.lock().expect("credential cache");
        let since = inner.since_ms?;
        if now_ms - since < self.ttl_ms {
            return None;
        }
        let current = std::mem::take(&mut inner.current);
        inner.since_ms = (!current.is_empty()).then_some(now_ms);
        Some(std::mem::replace(&mut inner.previous, current))
    }

    pub fn len(&self) -> usize {
        let inner = self.inner.lock().expect("credential cache");
        inner.current.len() + inner.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use fleetcare_core::DeviceId;

    use super::*;

    fn key(id: &str) -> DeviceKey {
        DeviceKey {
            tenant: 1,
            device_id: DeviceId::parse(id).expect("id"),
        }
    }

    #[test]
    fn entries_expire_are_forgotten_and_stay_bounded() {
        let c = CredentialCache::new(1000, 3);
        c.insert("h1".into(), key("A"), 0);
        assert_eq!(c.get("h1", 999), Some(key("A")));
        assert_eq!(c.get("h1", 1000), None, "expired");
        c.insert("h2".into(), key("A"), 0);
        assert_eq!(c.get("h1", 1), None, "a device has one credential");
        c.forget(&key("A"));
        assert_eq!(c.get("h2", 1), None);
        for (i, id) in ["B", "C", "D", "E"].into_iter().enumerate() {
            c.insert(format!("x{i}"), key(id), 0);
        }
        assert!(c.len() <= 3);
        assert_eq!(
            c.get("x3", 1),
            Some(key("E")),
            "the newest entry survives a flush"
        );
    }

    #[test]
    fn expired_entries_are_retired_within_two_ttls() {
        let c = CredentialCache::new(1000, 100_000);
        assert!(c.retire(0).is_none(), "nothing to retire in an empty cache");
        c.insert("first".into(), key("FIRST"), 0);
        for i in 0..1000 {
            c.insert(format!("old{i}"), key(&format!("OLD-{i}")), 900);
        }
        assert!(c.retire(999).is_none(), "not before a ttl has passed");
        let retired = c
            .retire(1000)
            .expect("a generation ends a ttl after it began");
        assert!(
            retired.is_empty(),
            "the first previous generation was empty"
        );
        assert_eq!(
            c.len(),
            1001,
            "the entries moved to the previous generation"
        );
        // Found in the previous generation while fresh; a device replaced there keeps one
        // credential; a forgotten device is gone from both generations.
        c.insert("fresh".into(), key("FRESH"), 1100);
        c.insert("old0-new".into(), key("OLD-0"), 1100);
        assert_eq!(c.get("old0", 1200), None, "a device has one credential");
        assert_eq!(c.get("old0-new", 1200), Some(key("OLD-0")));
        c.forget(&key("OLD-1"));
        assert_eq!(c.get("old1", 1200), None);
        assert_eq!(c.get("old2", 1200), Some(key("OLD-2")));
        let retired = c.retire(2000).expect("the second generation ends");
        assert_eq!(
            retired.len(),
            999,
            "all inserted at 0 and 900, less the two replaced"
        );
        assert_eq!(c.len(), 2, "the entries inserted at 1100 remain");
        assert_eq!(c.get("fresh", 1500), Some(key("FRESH")));
        assert_eq!(c.retire(3000).map(|g| g.len()), Some(2));
        assert!(c.is_empty(), "and went one ttl later");
        assert!(
            c.retire(4000).is_none(),
            "an empty cache begins no generation"
        );
        c.insert("again".into(), key("AGAIN"), 5000);
        assert!(
            c.retire(5999).is_none(),
            "a new generation began with the insert"
        );
        assert!(c.retire(6000).is_some());
        assert_eq!(
            c.get("again", 5400),
            Some(key("AGAIN")),
            "still found, fresh"
        );
    }

    #[test]
    fn lives_are_spread_within_the_ttl() {
        let c = CredentialCache::new(10_000, 100);
        let lives: Vec<i64> = (0..50)
            .map(|i| c.life_ms(&fleetcare_core::secret::hash(&format!("credential-{i}"))))
            .collect();
        assert!(
            lives.iter().all(|l| (5_000..=10_000).contains(l)),
            "{lives:?}"
        );
        let distinct: std::collections::BTreeSet<_> = lives.iter().collect();
        assert!(distinct.len() > 40, "spread, not one instant: {lives:?}");
    }
}
