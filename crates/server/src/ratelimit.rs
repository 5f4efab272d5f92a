//! Token buckets per key (a device, a client address), in memory on each instance.
//!
//! A bucket holds up to `burst` requests and refills at `per_s`; a request that finds it empty
//! is answered 429 with `Retry-After` saying when the next one would pass. A full bucket is
//! the same as none, so buckets that have refilled are dropped: memory follows the keys
//! active in the last `burst / per_s` seconds, not the fleet. The time is the center's clock
//! (tests inject theirs). With several instances each keeps its own buckets, so a device that
//! spreads its requests over `n` instances gets up to `n` times the rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// Keys are spread over this many locks.
const SHARDS: usize = 64;

#[derive(Debug)]
pub struct RateLimiter<K> {
    shards: Vec<Mutex<HashMap<K, Bucket>>>,
    hasher: std::collections::hash_map::RandomState,
    /// Refill per millisecond, in [`UNIT`]s of a token (integers, so waits are exact).
    per_ms: u64,
    /// Capacity, in [`UNIT`]s.
    burst: u64,
    /// Buckets per shard before full ones are swept.
    shard_capacity: usize,
}

/// One token, in units that make both per-second and per-minute rates whole per millisecond.
const UNIT: u64 = 60_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    at_ms: i64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_s` requests per second sustained, `burst` at once; `per_s` 0 turns limiting off.
    pub fn new(per_s: u64, burst: u64) -> RateLimiter<K> {
        RateLimiter::with_rate(per_s.saturating_mul(UNIT / 1000), burst)
    }

    /// `per_min` requests per minute sustained, up to `per_min` at once; 0 turns it off.
    pub fn per_minute(per_min: u64) -> RateLimiter<K> {
        RateLimiter::with_rate(per_min.saturating_mul(UNIT / 60_000), per_min)
    }

    fn with_rate(per_ms: u64, burst: u64) -> RateLimiter<K> {
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            per_ms,
            burst: burst.clamp(1, 1_000_000) * UNIT,
            shard_capacity: 16_384,
        }
    }

    pub fn is_off(&self) -> bool {
        self.per_ms == 0
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, Bucket>> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(key);
        &self.shards[(h as usize) % SHARDS]
    }

    fn refilled(&self, b: Bucket, now_ms: i64) -> u64 {
        let elapsed = u64::try_from(now_ms - b.at_ms).unwrap_or(0);
        b.tokens
            .saturating_add(elapsed.saturating_mul(self.per_ms))
            .min(self.burst)
    }

    /// Milliseconds until a bucket holding `tokens` has one.
    fn wait(&self, tokens: u64) -> u64 {
        (UNIT - tokens).div_ceil(self.per_ms)
    }

    /// Take one request from `key`'s bucket: `Ok` if it may pass, else the milliseconds until
    /// it would.
    pub fn take(&self, key: &K, now_ms: i64) -> Result<(), u64> {
        if self.is_off() {
            return Ok(());
        }
        let mut map = self.shard(key).lock().expect("rate limiter");
        let tokens = map
            .get(key)
            .map_or(self.burst, |b| self.refilled(*b, now_ms));
        if tokens < UNIT {
            return Err(self.wait(tokens));
        }
        if map.len() >= self.shard_capacity && !map.contains_key(key) {
            map.retain(|_, b| self.refilled(*b, now_ms) < self.burst);
        }
        map.insert(
            key.clone(),
            Bucket {
                tokens: tokens - UNIT,
                at_ms: now_ms,
            },
        );
        Ok(())
    }

    /// Whether `key` is throttled now, without taking anything (a failed login costs a
    /// token; a throttled client is refused before it may try again).
    pub fn check(&self, key: &K, now_ms: i64) -> Result<(), u64> {
        if self.is_off() {
            return Ok(());
        }
        let map = self.shard(key).lock().expect("rate limiter");
        match map.get(key).map(|b| self.refilled(*b, now_ms)) {
            Some(tokens) if tokens < UNIT => Err(self.wait(tokens)),
            _ => Ok(()),
        }
    }

    /// Drop the buckets that have refilled.
    pub fn sweep(&self, now_ms: i64) {
        for shard in &self.shards {
            let mut map = shard.lock().expect("rate limiter");
            map.retain(|_, b| self.refilled(*b, now_ms) < self.burst);
        }
    }

    /// Buckets held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("rate limiter").len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_and_the_wait_is_said() {
        let l = RateLimiter::<u32>::new(2, 3);
        for _ in 0..3 {
            assert_eq!(l.take(&1, 0), Ok(()));
        }
        assert_eq!(l.take(&1, 0), Err(500), "2 per second: the next in 500 ms");
        assert_eq!(l.take(&2, 0), Ok(()), "another key has its own bucket");
        assert_eq!(l.take(&1, 499), Err(1));
        assert_eq!(l.take(&1, 500), Ok(()));
        assert_eq!(l.check(&1, 500), Err(500));
        assert_eq!(l.check(&1, 1000), Ok(()), "checking takes nothing");
        l.sweep(1000);
        assert_eq!(l.len(), 1, "key 2 has refilled, key 1 not yet");
        l.sweep(10_000);
        assert!(l.is_empty(), "refilled buckets are dropped");
    }

    #[test]
    fn zero_rate_is_off_and_memory_stays_bounded() {
        let off = RateLimiter::<u32>::new(0, 1);
        assert!((0..100).all(|_| off.take(&1, 0).is_ok()));
        assert!(off.is_empty());
        let mut l = RateLimiter::<u32>::new(1000, 2);
        l.shard_capacity = 4;
        for k in 0..10_000 {
            l.take(&k, i64::from(k)).expect("first request of a key");
        }
        assert!(
            l.len() <= SHARDS * 4,
            "{} buckets: full ones are swept",
            l.len()
        );
    }
}
