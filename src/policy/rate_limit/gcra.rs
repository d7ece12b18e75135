//! The Generic Cell Rate Algorithm: a token bucket kept as one number, the theoretical arrival
//! time (TAT) of the next request. The same arithmetic runs in the local store and, in Lua, in
//! Redis (`redis.rs`), so both stores answer alike.
//!
//! With emission interval `T = period / count` and `burst` B, a request at `now` is admitted when
//! `max(tat, now) + T - now <= B·T`; admitting sets `tat = max(tat, now) + T`. A fresh key admits
//! exactly B requests at once, then one every `T`. Times are microseconds: fine enough for a
//! million requests per second, and still exact as a Lua double (2^53 µs is 285 years).

use std::time::Duration;

/// One microsecond-based GCRA limit: `count` per `period`, with `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Emission interval `T` (µs per request at the sustained rate).
    interval_us: u64,
    /// `B·T`: how far ahead of `now` the TAT may run.
    window_us: u64,
    /// B.
    burst: u64,
}

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; `tat` is the new state to store.
    Allow {
        /// The new TAT (µs).
        tat: u64,
        /// Requests still admissible right now.
        remaining: u64,
        /// Time until the bucket is full again.
        reset: Duration,
    },
    /// Refused; the state is unchanged.
    Deny {
        /// Time until one request would be admitted.
        retry_after: Duration,
        /// Time until the bucket is full again.
        reset: Duration,
    },
}

impl Gcra {
    /// `count` requests per `period` with `burst`; `None` when the interval is below 1 µs or a
    /// value is zero (validation reports those first).
    pub fn new(count: u64, period: Duration, burst: u64) -> Option<Self> {
        let period_us = u64::try_from(period.as_micros()).ok()?;
        if count == 0 || burst == 0 {
            return None;
        }
        let interval_us = period_us / count;
        if interval_us == 0 {
            return None;
        }
        Some(Self {
            interval_us,
            window_us: interval_us.checked_mul(burst)?,
            burst,
        })
    }

    /// The emission interval `T` in µs.
    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    /// `B·T` in µs.
    pub fn window_us(&self) -> u64 {
        self.window_us
    }

    /// The burst B.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Decides a request at `now_us` against stored `tat` (`None` = a fresh key).
    pub fn check(&self, tat: Option<u64>, now_us: u64) -> Decision {
        let base = tat.unwrap_or(now_us).max(now_us);
        let ahead = base - now_us + self.interval_us;
        self.decide(ahead, now_us)
    }

    /// Decides from `ahead = max(tat, now) + T - now`, the number the Redis script returns.
    pub fn decide(&self, ahead: u64, now_us: u64) -> Decision {
        if ahead <= self.window_us {
            Decision::Allow {
                tat: now_us.saturating_add(ahead),
                remaining: (self.window_us - ahead) / self.interval_us,
                reset: Duration::from_micros(ahead),
            }
        } else {
            let current = ahead - self.interval_us;
            Decision::Deny {
                retry_after: Duration::from_micros(ahead - self.window_us),
                reset: Duration::from_micros(current),
            }
        }
    }

    /// The TAT after giving one admitted request back (all-or-nothing across several limits).
    pub fn refund(&self, tat: u64, now_us: u64) -> u64 {
        tat.saturating_sub(self.interval_us).max(now_us)
    }
}

/// Whole seconds for `Retry-After` and the `t` parameter: rounded up, so a client coming back on
/// time is admitted; at least 1 for a refusal.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::clock::{Clock, FakeClock};

    const SEC: u64 = 1_000_000;

    fn run(gcra: &Gcra, tat: &mut Option<u64>, now: u64) -> Decision {
        let d = gcra.check(*tat, now);
        if let Decision::Allow { tat: t, .. } = d {
            *tat = Some(t);
        }
        d
    }

    #[test]
    fn exactly_burst_pass_at_once_then_the_rate_refills() {
        let clock = FakeClock::at(1_700_000_000_000);
        let now = || clock.now_ms() * 1000;
        // 10/s, burst 5: five at once, the sixth waits 100 ms.
        let gcra = Gcra::new(10, Duration::from_secs(1), 5).unwrap();
        let mut tat = None;
        for i in 0..5 {
            let d = run(&gcra, &mut tat, now());
            assert!(
                matches!(d, Decision::Allow { remaining, .. } if remaining == 4 - i),
                "{d:?}"
            );
        }
        let Decision::Deny { retry_after, .. } = run(&gcra, &mut tat, now()) else {
            panic!("sixth admitted");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        clock.advance(Duration::from_millis(99));
        assert!(matches!(run(&gcra, &mut tat, now()), Decision::Deny { .. }));
        clock.advance(Duration::from_millis(1));
        assert!(matches!(
            run(&gcra, &mut tat, now()),
            Decision::Allow { remaining: 0, .. }
        ));
        // A full second idle refills 10 intervals, capped at the burst.
        clock.advance(Duration::from_secs(1));
        let admitted = (0..20)
            .filter(|_| matches!(run(&gcra, &mut tat, now()), Decision::Allow { .. }))
            .count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn sustained_rate_over_a_minute_matches_the_configuration() {
        let clock = FakeClock::at(0);
        let gcra = Gcra::new(60, Duration::from_secs(60), 1).unwrap();
        let mut tat = None;
        let mut admitted = 0;
        for _ in 0..600 {
            if matches!(
                run(&gcra, &mut tat, clock.now_ms() * 1000),
                Decision::Allow { .. }
            ) {
                admitted += 1;
            }
            clock.advance(Duration::from_millis(100));
        }
        // 60 s at 1/s: one per second, the first at t=0.
        assert_eq!(admitted, 60);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        // 1/h, burst 2: after two, the next is 3600 s away; after 0.5 s, 3599.5 s -> 3600.
        let gcra = Gcra::new(1, Duration::from_secs(3600), 2).unwrap();
        let mut tat = None;
        run(&gcra, &mut tat, 0);
        run(&gcra, &mut tat, 0);
        let Decision::Deny { retry_after, reset } = run(&gcra, &mut tat, SEC / 2) else {
            panic!("admitted");
        };
        assert_eq!(ceil_secs(retry_after), 3600);
        assert_eq!(ceil_secs(reset), 7200);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }

    #[test]
    fn refund_gives_one_request_back() {
        let gcra = Gcra::new(1, Duration::from_secs(1), 1).unwrap();
        let mut tat = None;
        run(&gcra, &mut tat, 0);
        assert!(matches!(gcra.check(tat, 0), Decision::Deny { .. }));
        tat = tat.map(|t| gcra.refund(t, 0));
        assert!(matches!(gcra.check(tat, 0), Decision::Allow { .. }));
    }

    #[test]
    fn absurd_rates_are_refused() {
        assert!(Gcra::new(0, Duration::from_secs(1), 1).is_none());
        assert!(Gcra::new(1, Duration::from_secs(1), 0).is_none());
        assert!(Gcra::new(2_000_000, Duration::from_secs(1), 1).is_none());
    }
}
