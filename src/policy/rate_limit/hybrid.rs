//! The hybrid store: each instance admits from a local allowance and reconciles with Redis in the
//! background every `SYNC_INTERVAL`, for rates where a Redis round trip per request costs too much.
//!
//! A key's first request on an instance reads what is left in Redis, `R`; each reconciliation
//! charges Redis, in one script call for all keys, with the requests admitted locally since the
//! last one, and receives the new `R`. The instance may admit `floor(R / SHARE_DIVISOR)` requests
//! without Redis; once that allowance is spent, requests are decided exactly by Redis (as with
//! `store: redis`) while the last known `R` is above 0, and refused locally, without a Redis hop,
//! once it is 0 (until a reconciliation sees the bucket refill). Accuracy: the limit can be
//! exceeded by at most the allowances outstanding when the shared bucket runs dry, at most
//! N·floor(R/4) for N instances, never more than N·floor(burst/4); a burst below 4 is exact.
//! Admissions are never lost: an allowance not used is not charged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::gcra::Gcra;
use super::local::KeyHash;
use super::redis::{SharedRedis, StoreError};

/// How often an instance reconciles with Redis.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(5);
/// An instance takes this fraction (1/4) of what is left at each reconciliation.
pub const SHARE_DIVISOR: u64 = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Requests this instance may still admit before the next reconciliation.
    allowance: u64,
    /// Requests admitted locally, not yet charged to Redis.
    pending: u64,
    /// What was left across instances at the last reconciliation.
    known_left: u64,
    /// Wall-clock ms of the last use, to forget idle keys.
    last_used_ms: u64,
}

/// What the hybrid store decided without Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HybridDecision {
    /// Admitted from the local allowance; how much of it is left.
    Allow(u64),
    /// The allowance is spent and the shared bucket was empty at the last reconciliation.
    Deny,
    /// The allowance is spent but the shared bucket was not empty: ask Redis exactly.
    Exact,
    /// The key is unknown here: ask Redis.
    Unknown,
    /// Reconciliation is failing and the allowance is spent: `on_store_error` decides.
    StoreDown,
}

/// Hybrid state of one limit on this instance.
pub struct HybridStore {
    redis: SharedRedis,
    gcra: Gcra,
    /// Redis key prefix (`gantry:rl:`); the key hash follows.
    entries: Mutex<HashMap<KeyHash, Entry>>,
    max_keys: usize,
    started: AtomicBool,
    store_down: AtomicBool,
    syncs: AtomicU64,
}

impl std::fmt::Debug for HybridStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridStore").finish_non_exhaustive()
    }
}

/// The Redis key of a hybrid counter.
pub fn redis_key(key: &KeyHash) -> String {
    format!("gantry:rl:{}", super::hex(key))
}

impl HybridStore {
    /// A store for `gcra` over `redis`, remembering at most `max_keys` keys.
    pub fn new(redis: SharedRedis, gcra: Gcra, max_keys: usize) -> Self {
        Self {
            redis,
            gcra,
            entries: Mutex::new(HashMap::new()),
            max_keys,
            started: AtomicBool::new(false),
            store_down: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
        }
    }

    /// Reconciliations done so far (tests poll it instead of sleeping).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyHash, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits from the local allowance when there is one; starts the reconciler on first use.
    pub fn acquire(self: &Arc<Self>, key: &KeyHash, now_ms: u64) -> HybridDecision {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(reconcile(Arc::downgrade(self)));
        }
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else {
            return HybridDecision::Unknown;
        };
        entry.last_used_ms = now_ms;
        if entry.allowance > 0 {
            entry.allowance -= 1;
            entry.pending += 1;
            HybridDecision::Allow(entry.allowance)
        } else if self.store_down.load(Ordering::Acquire) {
            HybridDecision::StoreDown
        } else if entry.known_left > 0 {
            HybridDecision::Exact
        } else {
            HybridDecision::Deny
        }
    }

    /// A key's first request, decided by Redis (`ahead` from the check script): records the
    /// allowance granted from what is left.
    pub fn learn(&self, key: &KeyHash, left: u64, now_ms: u64) {
        let mut entries = self.lock();
        if entries.contains_key(key) {
            // Concurrent first requests: the first answer granted the allowance; granting again
            // would hand out the same remainder twice.
            return;
        }
        if entries.len() >= self.max_keys {
            // Forget the least recently used eighth; their pending counts are charged late or
            // never (the limit errs towards admitting).
            let n = (entries.len() / 8).max(1);
            let mut ages: Vec<u64> = entries.values().map(|e| e.last_used_ms).collect();
            let (_, cut, _) = ages.select_nth_unstable(n - 1);
            let cut = *cut;
            entries.retain(|_, e| e.last_used_ms > cut);
        }
        entries.insert(
            *key,
            Entry {
                allowance: left / SHARE_DIVISOR,
                pending: 0,
                known_left: left,
                last_used_ms: now_ms,
            },
        );
    }

    /// Records what an exact check (`HybridDecision::Exact`) left in the shared bucket.
    pub fn observe(&self, key: &KeyHash, left: u64) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.known_left = left;
        }
    }

    /// Gives one local admission back (another limit refused the request).
    pub fn refund(&self, key: &KeyHash) {
        if let Some(entry) = self.lock().get_mut(key)
            && entry.pending > 0
        {
            entry.pending -= 1;
            entry.allowance += 1;
        }
    }

    /// The limit's GCRA.
    pub fn gcra(&self) -> &Gcra {
        &self.gcra
    }

    /// The Redis store.
    pub fn redis(&self) -> &SharedRedis {
        &self.redis
    }

    /// One reconciliation: charge pending admissions, refresh allowances, forget idle keys.
    async fn sync_once(&self) {
        let now_ms = self.redis.now_ms();
        let idle_ms = self.gcra.window_us() / 1000 + 1000;
        let batch: Vec<(KeyHash, u64)> = {
            let mut entries = self.lock();
            entries.retain(|_, e| e.pending > 0 || now_ms.saturating_sub(e.last_used_ms) < idle_ms);
            entries.iter().map(|(k, e)| (*k, e.pending)).collect()
        };
        if batch.is_empty() {
            self.syncs.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let keys: Vec<(String, u64, u64, u64)> = batch
            .iter()
            .map(|(k, n)| {
                (
                    redis_key(k),
                    self.gcra.interval_us(),
                    self.gcra.window_us(),
                    *n,
                )
            })
            .collect();
        match self.redis.charge(&keys, now_ms.saturating_mul(1000)).await {
            Ok(left) => {
                self.store_down.store(false, Ordering::Release);
                let mut entries = self.lock();
                for ((key, charged), left) in batch.iter().zip(left) {
                    if let Some(entry) = entries.get_mut(key) {
                        entry.pending = entry.pending.saturating_sub(*charged);
                        entry.allowance = left / SHARE_DIVISOR;
                        entry.known_left = left;
                    }
                }
            }
            Err(StoreError::BreakerOpen | StoreError::Failed) => {
                self.store_down.store(true, Ordering::Release);
            }
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }
}

/// The background reconciler; ends when the store is dropped (its config replaced).
async fn reconcile(store: Weak<HybridStore>) {
    loop {
        tokio::time::sleep(SYNC_INTERVAL).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        store.sync_once().await;
    }
}
