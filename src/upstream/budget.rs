//! The retry budget: retries may add at most `budget` percent on top of the requests of the last
//! ten seconds, plus a small floor per second so a quiet upstream can still be retried.
//!
//! Why a budget and not only `attempts`: with three attempts, a full outage triples the load on
//! the failing upstream exactly when it can least take it. With a 20% budget it gets at most
//! 1.2× (plus the floor). The counts are kept per upstream and carried across reloads.

use std::sync::Mutex;
use std::time::Duration;

use super::clock::{Clock, RollingCounts};

/// The window the budget looks back over.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Requests and retries over the last [`BUDGET_WINDOW`] of one upstream.
#[derive(Debug)]
pub struct RetryBudget {
    clock: Clock,
    /// (first tries, retries).
    counts: Mutex<RollingCounts>,
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(clock: Clock) -> Self {
        let now = clock.now();
        Self {
            counts: Mutex::new(RollingCounts::new(BUDGET_WINDOW, now)),
            clock,
        }
    }

    /// Counts a request's first try (it earns `ratio` retries).
    pub fn deposit(&self) {
        let now = self.clock.now();
        if let Ok(mut counts) = self.counts.lock() {
            counts.add(now, 1, 0);
        }
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn try_withdraw(&self, ratio: f64, min_per_second: u32) -> bool {
        let now = self.clock.now();
        let Ok(mut counts) = self.counts.lock() else {
            return false;
        };
        let (requests, retries) = counts.totals(now);
        let floor = f64::from(min_per_second) * BUDGET_WINDOW.as_secs_f64();
        let allowed = floor + ratio * requests as f64;
        if (retries as f64) < allowed.floor() {
            counts.add(now, 0, 1);
            true
        } else {
            false
        }
    }

    /// (first tries, retries) in the window, for the admin API.
    pub fn totals(&self) -> (u64, u64) {
        let now = self.clock.now();
        self.counts.lock().map_or((0, 0), |c| c.totals(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_capped_at_the_ratio_plus_the_floor() {
        let (clock, _) = Clock::fake();
        let budget = RetryBudget::new(clock);
        for _ in 0..100 {
            budget.deposit();
        }
        // 20% of 100 + 1/s × 10 s.
        let granted = (0..100).filter(|_| budget.try_withdraw(0.2, 1)).count();
        assert_eq!(granted, 30);
    }

    #[test]
    fn the_budget_refills_as_the_window_slides() {
        let (clock, fake) = Clock::fake();
        let budget = RetryBudget::new(clock);
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!((0..10).filter(|_| budget.try_withdraw(0.5, 0)).count(), 5);
        fake.advance(Duration::from_secs(11));
        assert!(
            !budget.try_withdraw(0.5, 0),
            "no requests, no floor: nothing"
        );
        for _ in 0..4 {
            budget.deposit();
        }
        assert_eq!((0..10).filter(|_| budget.try_withdraw(0.5, 0)).count(), 2);
    }
}
