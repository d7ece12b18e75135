//! The per-instance store: GCRA state in a sharded, bounded map.
//!
//! Keys come from request data (client IPs, header values), so the map is bounded: a shard that is
//! full first drops every entry whose TAT has passed (such a key is indistinguishable from a fresh
//! one, so nothing is lost), and only if that frees nothing drops the eighth of its entries that are
//! closest to full. Those keys get a fresh bucket early: under a flood of distinct keys the limit
//! errs towards admitting, never towards refusing unrelated clients. Evictions are counted.
//!
//! Time never goes backwards for a key, as in Redis: a request whose clock reading is older than
//! one already applied to its key (read before a concurrent request took the lock, or before an
//! earlier limit of the same request waited for Redis) is judged at the newer one; at its own it
//! would see a TAT computed from a later time and be refused at the burst's last unit. Kept per
//! key, not per shard, so a clock that jumps ahead and back freezes only the keys used meanwhile.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::gcra::{Decision, Gcra};

/// Number of independently locked shards; a lock is held for one map operation, never across
/// `.await`.
const SHARDS: usize = 16;

/// A map key: the first 16 bytes of a SHA-256 over the limit and the request's key values.
pub type KeyHash = [u8; 16];

/// One key's GCRA state (µs).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tat: u64,
    /// The newest time applied to this key.
    at: u64,
}

/// GCRA state of one limit on this instance.
#[derive(Debug)]
pub struct LocalStore {
    shards: Vec<Mutex<HashMap<KeyHash, Bucket>>>,
    max_per_shard: usize,
    evictions: AtomicU64,
}

impl LocalStore {
    /// A store holding at most about `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_per_shard: max_keys.div_ceil(SHARDS).max(1),
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &KeyHash) -> &Mutex<HashMap<KeyHash, Bucket>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// Checks and, when admitted, records one request for `key` at `now_us`.
    pub fn acquire(&self, gcra: &Gcra, key: &KeyHash, now_us: u64) -> Decision {
        // A poisoned shard only means another thread panicked mid-update of plain integers.
        let mut map = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = map.get(key).copied();
        let at = bucket.map_or(now_us, |b| b.at.max(now_us));
        let decision = gcra.check(bucket.map(|b| b.tat), at);
        if let Decision::Allow { tat, .. } = decision {
            if bucket.is_none() && map.len() >= self.max_per_shard {
                let evicted = evict(&mut map, now_us, self.max_per_shard);
                self.evictions.fetch_add(evicted, Ordering::Relaxed);
            }
            map.insert(*key, Bucket { tat, at });
        }
        decision
    }

    /// Gives back one request admitted for `key` (another limit of the same request refused it).
    pub fn refund(&self, gcra: &Gcra, key: &KeyHash, now_us: u64) {
        let mut map = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bucket) = map.get_mut(key) {
            bucket.at = bucket.at.max(now_us);
            bucket.tat = gcra.refund(bucket.tat, bucket.at);
        }
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live keys dropped to stay within the bound, since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

/// Makes room in a full shard; returns how many live (not yet refilled) keys were dropped.
fn evict(map: &mut HashMap<KeyHash, Bucket>, now_us: u64, max: usize) -> u64 {
    map.retain(|_, b| b.tat > now_us);
    if map.len() < max {
        return 0;
    }
    // Still full of live keys: drop the eighth with the earliest TAT (closest to a full bucket).
    let n = (map.len() / 8).max(1);
    let mut tats: Vec<u64> = map.values().map(|b| b.tat).collect();
    let (_, cut, _) = tats.select_nth_unstable(n - 1);
    let cut = *cut;
    let before = map.len();
    map.retain(|_, b| b.tat > cut);
    (before - map.len()) as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(n: u32) -> KeyHash {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&n.to_be_bytes());
        k
    }

    #[test]
    fn keys_are_independent() {
        let store = LocalStore::new(1000);
        let gcra = Gcra::new(1, Duration::from_secs(60), 2).unwrap();
        for _ in 0..2 {
            assert!(matches!(
                store.acquire(&gcra, &key(1), 0),
                Decision::Allow { .. }
            ));
        }
        assert!(matches!(
            store.acquire(&gcra, &key(1), 0),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            store.acquire(&gcra, &key(2), 0),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn a_reading_older_than_one_already_applied_gets_the_last_unit_of_the_burst() {
        let store = LocalStore::new(1000);
        let gcra = Gcra::new(1, Duration::from_secs(3600), 3).unwrap();
        let (newer, older) = (1_000_000, 999_000);
        for _ in 0..2 {
            assert!(matches!(
                store.acquire(&gcra, &key(1), newer),
                Decision::Allow { .. }
            ));
        }
        assert!(matches!(
            store.acquire(&gcra, &key(1), older),
            Decision::Allow { remaining: 0, .. }
        ));
        assert!(matches!(
            store.acquire(&gcra, &key(1), newer),
            Decision::Deny { .. }
        ));
        // A refund stamped earlier gives back exactly one.
        store.refund(&gcra, &key(1), older);
        assert!(matches!(
            store.acquire(&gcra, &key(1), older),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            store.acquire(&gcra, &key(1), older),
            Decision::Deny { .. }
        ));
        // Time is kept per key: a reading 10 h ahead on one key (a clock that jumped) does not
        // stop another key of the same shard from refilling on the right time.
        let hour = 3_600_000_000;
        store.acquire(&gcra, &key(2), newer + 10 * hour);
        for _ in 0..3 {
            store.acquire(&gcra, &key(3), newer);
        }
        assert!(matches!(
            store.acquire(&gcra, &key(3), newer),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            store.acquire(&gcra, &key(3), newer + hour),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn the_map_stays_bounded_under_a_flood_of_distinct_keys() {
        let store = LocalStore::new(160);
        let gcra = Gcra::new(1, Duration::from_secs(60), 5).unwrap();
        for n in 0..100_000u32 {
            store.acquire(&gcra, &key(n.wrapping_mul(2_654_435_761)), 0);
        }
        assert!(store.len() <= 160, "{}", store.len());
        assert!(store.evictions() > 0);
    }

    #[test]
    fn refilled_keys_are_dropped_before_live_ones() {
        let store = LocalStore::new(16);
        let gcra = Gcra::new(1, Duration::from_secs(1), 1).unwrap();
        // Fill one shard (key[0] == 0) with one key, then a second after it refilled.
        assert!(matches!(
            store.acquire(&gcra, &key(1), 0),
            Decision::Allow { .. }
        ));
        assert!(matches!(
            store.acquire(&gcra, &key(2), 2_000_000),
            Decision::Allow { .. }
        ));
        assert_eq!(store.evictions(), 0);
        assert!(matches!(
            store.acquire(&gcra, &key(2), 2_000_000),
            Decision::Deny { .. }
        ));
    }
}
