//! Passive health: outlier ejection from what real requests see.
//!
//! A target whose tries fail `consecutive_failures` times in a row (5xx answers, connect errors,
//! resets, timeouts) leaves the balancer for `eject_for`; each ejection that follows soon after the
//! previous one lasts longer (`eject_for` × the number of recent ejections, at most ten times),
//! and the count decays by one for every `eject_for` the target stays in. Never more than
//! `max_ejected_percent` of a cluster's targets are out at once (at least one may always be), so
//! a cluster-wide problem cannot eject every target: that is the breaker's job.

use std::time::{Duration, Instant};

/// Most an ejection grows to, as a multiple of `eject_for`.
const MAX_MULTIPLIER: u32 = 10;

/// Outlier ejection settings (`upstreams.*.health_check.passive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Failures in a row that eject a target.
    pub consecutive_failures: u32,
    /// Base ejection time.
    pub eject_for: Duration,
    /// Most targets of the cluster out at once, in percent.
    pub max_ejected_percent: u32,
}

impl OutlierSettings {
    /// How many of `total` targets may be ejected at once.
    pub fn max_ejected(&self, total: usize) -> usize {
        if self.max_ejected_percent == 0 || total == 0 {
            return 0;
        }
        (total * self.max_ejected_percent as usize / 100).clamp(1, total)
    }
}

/// Ejection state of one target.
#[derive(Debug, Clone, Default)]
pub struct Ejection {
    /// When the current ejection ends; `None` when the target is in.
    pub until: Option<Instant>,
    /// Recent ejections (the multiplier of the next one, minus one).
    pub recent: u32,
    /// When the last ejection ended (or was due to end).
    pub last_end: Option<Instant>,
}

impl Ejection {
    /// Whether the target is out at `now`; an ejection that has run its time ends here.
    pub fn is_out(&mut self, now: Instant) -> bool {
        match self.until {
            Some(until) if now >= until => {
                self.until = None;
                self.last_end = Some(until);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Ejects at `now`; returns when the ejection ends.
    pub fn eject(&mut self, settings: &OutlierSettings, now: Instant) -> Instant {
        if let Some(last_end) = self.last_end {
            let quiet = now.saturating_duration_since(last_end);
            let periods = quiet.as_nanos() / settings.eject_for.as_nanos().max(1);
            self.recent = self
                .recent
                .saturating_sub(u32::try_from(periods).unwrap_or(u32::MAX));
        }
        self.recent = (self.recent + 1).min(MAX_MULTIPLIER);
        let until = super::clock::later(now, settings.eject_for.saturating_mul(self.recent));
        self.until = Some(until);
        until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::clock::Clock;

    fn settings() -> OutlierSettings {
        OutlierSettings {
            consecutive_failures: 3,
            eject_for: Duration::from_secs(30),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn ejections_grow_on_repeat_and_decay_when_quiet() {
        let (clock, fake) = Clock::fake();
        let s = settings();
        let mut ejection = Ejection::default();
        let until = ejection.eject(&s, clock.now());
        assert_eq!(until - clock.now(), Duration::from_secs(30));
        assert!(ejection.is_out(clock.now()));
        fake.advance(Duration::from_secs(30));
        assert!(!ejection.is_out(clock.now()));
        // Failing again right away: twice as long.
        let until = ejection.eject(&s, clock.now());
        assert_eq!(until - clock.now(), Duration::from_secs(60));
        fake.advance(Duration::from_secs(60));
        assert!(!ejection.is_out(clock.now()));
        // Two quiet periods later the multiplier is back to one.
        fake.advance(Duration::from_secs(60));
        let until = ejection.eject(&s, clock.now());
        assert_eq!(until - clock.now(), Duration::from_secs(30));
    }

    #[test]
    fn at_least_one_and_at_most_the_share_may_be_out() {
        let s = settings();
        assert_eq!(s.max_ejected(1), 1);
        assert_eq!(s.max_ejected(2), 1);
        assert_eq!(s.max_ejected(5), 2);
        let none = OutlierSettings {
            max_ejected_percent: 0,
            ..settings()
        };
        assert_eq!(none.max_ejected(5), 0);
    }
}
