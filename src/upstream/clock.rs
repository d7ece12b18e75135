//! Time for the resilience state machines (breaker, retry budget, ejection, adaptive limit).
//!
//! Everything time-driven reads the time through a [`Clock`] handed to it, never from
//! `Instant::now()` directly, so unit tests drive it with a [`FakeClock`] and assert exact state
//! changes without sleeping. Tokio's paused clock is not used because it does not mix with the
//! real sockets of the end-to-end tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the resilience state reads the time from.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The monotonic system clock.
    #[default]
    System,
    /// A clock that moves only when a test advances it.
    Fake(Arc<FakeClock>),
}

impl Clock {
    /// The current instant.
    pub fn now(&self) -> Instant {
        match self {
            Self::System => Instant::now(),
            Self::Fake(fake) => fake.now(),
        }
    }

    /// A fake clock and a handle to advance it.
    pub fn fake() -> (Self, Arc<FakeClock>) {
        let fake = Arc::new(FakeClock::new());
        (Self::Fake(Arc::clone(&fake)), fake)
    }
}

/// A manually advanced clock for tests.
#[derive(Debug)]
pub struct FakeClock {
    start: Instant,
    offset_nanos: AtomicU64,
}

impl FakeClock {
    /// A clock standing at the moment it was made.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            offset_nanos: AtomicU64::new(0),
        }
    }

    /// The fake now.
    pub fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

/// `now + by`, saturating far in the future instead of panicking: a config may write `100000h`,
/// and `Instant + Duration` panics on overflow.
pub fn later(now: Instant, by: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(by)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

/// Number of buckets a [`RollingCounts`] window is cut into: old counts leave in tenths.
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    slot: u64,
    first: u64,
    second: u64,
}

/// Two counters summed over a sliding time window (e.g. successes and failures), kept in ten
/// buckets so the window slides in steps of a tenth without storing every event.
#[derive(Debug, Clone)]
pub struct RollingCounts {
    origin: Instant,
    width: Duration,
    buckets: [Bucket; BUCKETS],
}

impl RollingCounts {
    /// Counts over `window`, starting at `now`.
    pub fn new(window: Duration, now: Instant) -> Self {
        Self {
            origin: now,
            width: Self::bucket_width(window),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// The window this was built for; a new window size starts counting afresh.
    pub fn window(&self) -> Duration {
        self.width * BUCKETS as u32
    }

    /// Whether this counts over `window` (as rounded when built).
    pub fn covers(&self, window: Duration) -> bool {
        self.width == Self::bucket_width(window)
    }

    fn bucket_width(window: Duration) -> Duration {
        (window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    fn slot(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin);
        u64::try_from(elapsed.as_nanos() / self.width.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    /// Adds to both counters at `now`.
    pub fn add(&mut self, now: Instant, first: u64, second: u64) {
        let slot = self.slot(now);
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                first: 0,
                second: 0,
            };
        }
        bucket.first += first;
        bucket.second += second;
    }

    /// Both counters summed over the window ending at `now`.
    pub fn totals(&self, now: Instant) -> (u64, u64) {
        let current = self.slot(now);
        self.buckets
            .iter()
            .filter(|b| b.slot <= current && current - b.slot < BUCKETS as u64)
            .filter(|b| b.first + b.second > 0)
            .fold((0, 0), |(a, b), bucket| {
                (a + bucket.first, b + bucket.second)
            })
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_saturates_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(later(now, Duration::MAX) > now);
    }

    #[test]
    fn counts_leave_the_window_as_the_clock_moves() {
        let (clock, fake) = Clock::fake();
        let mut counts = RollingCounts::new(Duration::from_secs(10), clock.now());
        counts.add(clock.now(), 3, 1);
        fake.advance(Duration::from_secs(5));
        counts.add(clock.now(), 1, 1);
        assert_eq!(counts.totals(clock.now()), (4, 2));
        fake.advance(Duration::from_secs(6));
        assert_eq!(counts.totals(clock.now()), (1, 1));
        fake.advance(Duration::from_secs(5));
        assert_eq!(counts.totals(clock.now()), (0, 0));
    }
}
