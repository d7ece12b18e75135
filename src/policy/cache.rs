//! A small bounded cache keyed by a SHA-256 digest of request data (a token, a password).
//!
//! Every cache an attacker can feed is bounded: when full, expired entries go first, then an
//! arbitrary one, so random credentials can churn the cache but never grow it. Keys are digests,
//! so the cache never holds a credential in clear. The lock is never held across an `.await`.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// A digest used as a cache key.
pub type Key = [u8; 32];

/// SHA-256 of the parts, each length-prefixed so `("ab","c")` and `("a","bc")` differ.
pub fn key(parts: &[&[u8]]) -> Key {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Shards of a cache: the hot path (a repeated token) takes one of several locks, not one.
const SHARDS: usize = 16;

/// A bounded map from digest to value with a per-entry expiry (Unix milliseconds).
#[derive(Debug)]
pub struct BoundedCache<V> {
    shards: Vec<Mutex<HashMap<Key, (V, u64)>>>,
    per_shard: usize,
}

impl<V: Clone> BoundedCache<V> {
    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        let count = capacity.clamp(1, SHARDS);
        Self {
            shards: (0..count).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.max(1).div_ceil(count),
        }
    }

    fn shard(&self, key: &Key) -> Option<&Mutex<HashMap<Key, (V, u64)>>> {
        // Keys are digests: any byte is uniformly distributed.
        self.shards.get(usize::from(key[0]) % self.shards.len())
    }

    /// The value under `key` if it has not expired at `now_ms`.
    pub fn get(&self, key: &Key, now_ms: u64) -> Option<V> {
        let mut entries = self.shard(key)?.lock().ok()?;
        match entries.get(key) {
            Some((value, expires)) if *expires > now_ms => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` until `expires_ms`, evicting to stay within the capacity.
    pub fn insert(&self, key: Key, value: V, expires_ms: u64, now_ms: u64) {
        if expires_ms <= now_ms {
            return;
        }
        let Some(Ok(mut entries)) = self.shard(&key).map(Mutex::lock) else {
            return;
        };
        if entries.len() >= self.per_shard && !entries.contains_key(&key) {
            entries.retain(|_, (_, expires)| *expires > now_ms);
            if entries.len() >= self.per_shard
                && let Some(victim) = entries.keys().next().copied()
            {
                entries.remove(&victim);
            }
        }
        entries.insert(key, (value, expires_ms));
    }

    /// Number of entries (expired ones included until touched).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |e| e.len()))
            .sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_size_stays_bounded() {
        let cache = BoundedCache::new(3);
        cache.insert(key(&[b"a"]), 1, 100, 0);
        assert_eq!(cache.get(&key(&[b"a"]), 99), Some(1));
        assert_eq!(cache.get(&key(&[b"a"]), 100), None);
        for i in 0..1000u32 {
            cache.insert(key(&[&i.to_le_bytes()]), i, 1_000, 10);
        }
        assert!((1..=3).contains(&cache.len()));
        let big = BoundedCache::new(100);
        for i in 0..10_000u32 {
            big.insert(key(&[&i.to_le_bytes()]), i, 1_000, 10);
        }
        assert!(big.len() <= 112, "{}", big.len());
    }

    #[test]
    fn keys_are_length_prefixed() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
    }
}
