//! Fast per-thread random numbers for ids and sampling.
//!
//! Every request draws ~40 random bytes (request id, trace and span ids, the sampling coin).
//! `rand::rng()` is a reseeding ChaCha12 generator: secure, and ~2 % of a proxied request's
//! instructions (callgrind). None of these values is a secret: ids must be unique and unguessable
//! enough not to collide, not unpredictable to an attacker, so a small generator seeded once per
//! thread from the OS-seeded one is enough. Anything secret (keys, tokens) must not use this.

use std::cell::RefCell;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// `N` random bytes, filled eight at a time (`random::<[u8; N]>()` draws a number per byte).
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0; N];
    RNG.with(|rng| rng.borrow_mut().fill_bytes(&mut out));
    out
}

/// A number in `[0, 1)`, for sampling decisions.
pub fn unit() -> f64 {
    RNG.with(|rng| rng.borrow_mut().random())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_stay_in_range() {
        let a: [u8; 16] = bytes();
        let b: [u8; 16] = bytes();
        assert_ne!(a, b);
        let sum: f64 = (0..1000)
            .map(|_| unit())
            .inspect(|u| assert!((0.0..1.0).contains(u)))
            .sum();
        // 1000 uniform draws average 0.5 ± a few percent; a constant generator would not.
        assert!((400.0..600.0).contains(&sum), "{sum}");
    }
}
