//! Choosing a target: round robin, smooth weighted round robin, least request (power of two
//! choices), weighted random, and consistent hashing (weighted rendezvous).
//!
//! A balancer only sees weights and in-flight counts, never connections; it returns an index into
//! the cluster's target list. Rendezvous hashing is used for `consistent_hash` because a target
//! leaving moves only the keys it owned, with no ring to rebuild, and weights fall out naturally.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;

/// The algorithm of one upstream, with the state it needs.
#[derive(Debug)]
pub enum Balancer {
    /// Each target in turn.
    RoundRobin(AtomicUsize),
    /// nginx's smooth weighted round robin: current weights per target.
    WeightedRoundRobin(Mutex<Vec<i64>>),
    /// Two random targets, the one with fewer requests in flight.
    LeastRequest,
    /// Weighted random.
    Random,
    /// Weighted rendezvous hashing on a request key (round robin when the key is absent).
    ConsistentHash(AtomicUsize),
}

/// What a balancer may look at for each target.
pub trait TargetLoad {
    /// Relative weight (≥ 1).
    fn weight(&self) -> u32;
    /// Requests currently in flight.
    fn in_flight(&self) -> usize;
    /// Stable identity, used as the rendezvous hash seed (the target's `host:port`).
    fn identity(&self) -> &str;
}

impl Balancer {
    /// Picks an index into `targets`, or `None` when there is none.
    pub fn pick<T: TargetLoad>(&self, targets: &[T], key: Option<&[u8]>) -> Option<usize> {
        let n = targets.len();
        if n <= 1 {
            return (n == 1).then_some(0);
        }
        match self {
            Self::RoundRobin(next) => Some(next.fetch_add(1, Ordering::Relaxed) % n),
            Self::WeightedRoundRobin(current) => {
                let mut current = current.lock().ok()?;
                current.resize(n, 0);
                let mut total = 0i64;
                let mut best = 0;
                for (i, target) in targets.iter().enumerate() {
                    let weight = i64::from(target.weight());
                    current[i] += weight;
                    total += weight;
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= total;
                Some(best)
            }
            Self::LeastRequest => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                // Compare in_flight / weight crosswise, without division.
                let la = targets[a].in_flight() as u128 * u128::from(targets[b].weight());
                let lb = targets[b].in_flight() as u128 * u128::from(targets[a].weight());
                Some(if la <= lb { a } else { b })
            }
            Self::Random => {
                let total: u64 = targets.iter().map(|t| u64::from(t.weight())).sum();
                let mut point = rand::rng().random_range(0..total.max(1));
                for (i, target) in targets.iter().enumerate() {
                    let weight = u64::from(target.weight());
                    if point < weight {
                        return Some(i);
                    }
                    point -= weight;
                }
                Some(n - 1)
            }
            Self::ConsistentHash(fallback) => match key {
                Some(key) => Some(rendezvous(targets, key)),
                None => Some(fallback.fetch_add(1, Ordering::Relaxed) % n),
            },
        }
    }
}

/// Weighted rendezvous: the target with the highest `-weight / ln(u)` wins, `u` in (0, 1) from a
/// hash of (key, target). Stable across instances and releases (FNV-1a + splitmix64, no seed).
fn rendezvous<T: TargetLoad>(targets: &[T], key: &[u8]) -> usize {
    let key_hash = fnv1a(key, 0xcbf2_9ce4_8422_2325);
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (i, target) in targets.iter().enumerate() {
        let mixed = splitmix64(fnv1a(target.identity().as_bytes(), key_hash));
        // 53 random bits → u in (0, 1).
        let unit = ((mixed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -f64::from(target.weight()) / unit.ln();
        if score > best_score {
            best_score = score;
            best = i;
        }
    }
    best
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        weight: u32,
        in_flight: usize,
        id: String,
    }

    impl TargetLoad for Fake {
        fn weight(&self) -> u32 {
            self.weight
        }
        fn in_flight(&self) -> usize {
            self.in_flight
        }
        fn identity(&self) -> &str {
            &self.id
        }
    }

    fn targets(weights: &[u32]) -> Vec<Fake> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Fake {
                weight: *w,
                in_flight: 0,
                id: format!("10.0.0.{i}:80"),
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves() {
        let balancer = Balancer::WeightedRoundRobin(Mutex::new(Vec::new()));
        let t = targets(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| balancer.pick(&t, None).unwrap()).collect();
        // nginx's sequence for 5,1,1: a a b a c a a
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn round_robin_cycles() {
        let balancer = Balancer::RoundRobin(AtomicUsize::new(0));
        let t = targets(&[1, 1, 1]);
        let picks: Vec<usize> = (0..6).map(|_| balancer.pick(&t, None).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_request_prefers_the_idle_target() {
        let mut t = targets(&[1, 1]);
        t[0].in_flight = 10;
        let balancer = Balancer::LeastRequest;
        for _ in 0..50 {
            assert_eq!(balancer.pick(&t, None), Some(1));
        }
    }

    #[test]
    fn consistent_hash_moves_only_the_leaving_targets_keys() {
        let t = targets(&[1, 1, 1, 1]);
        let balancer = Balancer::ConsistentHash(AtomicUsize::new(0));
        let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| balancer.pick(&t, Some(k.as_bytes())).unwrap())
            .collect();
        // Remove target 2.
        let remaining: Vec<Fake> = targets(&[1, 1, 1, 1])
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, f)| f)
            .collect();
        let original_index = [0usize, 1, 3];
        let mut moved = 0;
        for (k, old) in keys.iter().zip(&before) {
            let new = original_index[balancer.pick(&remaining, Some(k.as_bytes())).unwrap()];
            if *old != 2 {
                assert_eq!(new, *old, "key {k} moved though its target stayed");
            } else {
                moved += 1;
            }
        }
        // Roughly a quarter of keys were on target 2.
        assert!(moved > 300 && moved < 700, "moved {moved}");
    }

    #[test]
    fn random_respects_weights() {
        let t = targets(&[9, 1]);
        let balancer = Balancer::Random;
        let first = (0..10_000)
            .filter(|_| balancer.pick(&t, None) == Some(0))
            .count();
        assert!(first > 8_500 && first < 9_500, "first {first}");
    }
}
