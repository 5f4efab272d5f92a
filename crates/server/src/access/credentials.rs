//! A cache of device credentials (hash → device), so a device's request costs no store read.
//!
//! Entries live between half of `ttl` and `ttl` (spread by the credential's hash, so that
//! devices that connected together do not all go back to the store at one instant); a revocation or a new enrollment on this instance removes the
//! device's entry at once, and on other instances it lapses within `ttl` (10 s). When the
//! cache holds `capacity` entries it is emptied and refills from the store: it is a cache,
//! never the record.

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
    by_hash: HashMap<String, (DeviceKey, i64)>,
    by_device: HashMap<DeviceKey, (String, i64)>,
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
        let (key, expires) = inner.by_hash.get(hash)?;
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
        if inner.by_hash.len() >= self.capacity {
            inner.by_hash.clear();
            inner.by_device.clear();
        }
        let expires = now_ms + self.life_ms(&hash);
        if let Some((old, _)) = inner.by_device.insert(key.clone(), (hash.clone(), expires)) {
            inner.by_hash.remove(&old);
        }
        inner.by_hash.insert(hash, (key, expires));
    }

    /// The device's credential changed or was revoked: forget it.
    pub fn forget(&self, key: &DeviceKey) {
        let mut inner = self.inner.lock().expect("credential cache");
        if let Some((hash, _)) = inner.by_device.remove(key) {
            inner.by_hash.remove(&hash);
        }
    }

    /// Drop the entries that expired by `now_ms`, and give back the room they took once most
    /// of it is empty: a device connected over a push channel authenticates once, so without
    /// this its expired entry would stay for as long as the center runs (about 400 bytes per
    /// device). Run every few seconds; a pass over a million entries holds the lock for a few
    /// milliseconds.
    pub fn purge(&self, now_ms: i64) {
        let mut inner = self.inner.lock().expect("credential cache");
        let Inner { by_hash, by_device } = &mut *inner;
        let before = by_hash.len();
        by_hash.retain(|_, (_, expires)| now_ms < *expires);
        if by_hash.len() == before {
            return;
        }
        by_device.retain(|_, (_, expires)| now_ms < *expires);
        if by_hash.capacity() > 4 * by_hash.len().max(256) {
            by_hash.shrink_to_fit();
            by_device.shrink_to_fit();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("credential cache").by_hash.len()
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
    fn expired_entries_are_purged_and_their_room_given_back() {
        let c = CredentialCache::new(1000, 100_000);
        for i in 0..10_000 {
            c.insert(format!("old{i}"), key(&format!("OLD-{i}")), 0);
        }
        let grown = c.inner.lock().expect("cache").by_hash.capacity();
        c.insert("fresh".into(), key("FRESH"), 900);
        c.purge(1000);
        assert_eq!(c.len(), 1, "only the entry still fresh at 1000 stays");
        assert_eq!(c.get("fresh", 1000), Some(key("FRESH")));
        c.forget(&key("FRESH"));
        assert!(c.is_empty(), "the reverse map was purged alike");
        let inner = c.inner.lock().expect("cache");
        assert!(inner.by_device.is_empty());
        assert!(
            inner.by_hash.capacity() < grown / 4,
            "room given back: {} of {grown}",
            inner.by_hash.capacity()
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
