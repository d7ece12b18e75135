//! A circuit breaker per upstream: stop calling an upstream that is failing, and find out cheaply
//! when it has recovered.
//!
//! Closed: every call goes through; outcomes are counted over a sliding `window`. When at least
//! `min_requests` calls were made in the window and the failed share reaches `failure_ratio`, the
//! breaker opens. Open: calls are refused at once (503, no upstream call) for `open_for`. Then
//! half-open: `half_open_requests` probe calls are let through; when all of them succeed the
//! breaker closes (with a fresh window), the first failure opens it again. A probe that never
//! reports (the client went away) gives its slot back.
//!
//! The state lives in [`Breaker`], kept across reloads under the upstream's name; the settings
//! come from the config snapshot a request runs under and are passed in on every call. The phase is
//! mirrored in an atomic so the admin API and metrics read it without taking the lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::clock::{Clock, RollingCounts, later};

/// Circuit breaker settings (`upstreams.*.circuit_breaker`).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// Failed share of calls (0 < r ≤ 1) that opens the breaker.
    pub failure_ratio: f64,
    /// Fewest calls in the window before the ratio counts.
    pub min_requests: u32,
    /// Length of the sliding window.
    pub window: Duration,
    /// How long the breaker stays open before probing.
    pub open_for: Duration,
    /// Probe calls let through while half-open.
    pub half_open_requests: u32,
}

/// The breaker's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerPhase {
    /// Calls flow.
    Closed,
    /// Calls are refused.
    Open,
    /// A few probe calls flow.
    HalfOpen,
}

impl BreakerPhase {
    /// The name the admin API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    phase: BreakerPhase,
    /// (successes, failures) while closed.
    window: RollingCounts,
    open_until: Instant,
    probes_out: u32,
    probes_ok: u32,
}

/// One upstream's breaker state.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    clock: Clock,
    phase: AtomicU8,
    inner: Mutex<Inner>,
}

/// Permission for one call; report its outcome with [`Permit::record`].
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    settings: &'a BreakerSettings,
    probe: bool,
    done: bool,
}

/// The breaker refused the call; the upstream should not be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// How long until the breaker will let a probe through.
    pub retry_after: Duration,
}

impl Breaker {
    /// A closed breaker for upstream `name`.
    pub fn new(name: &str, clock: Clock) -> Self {
        let now = clock.now();
        Self {
            name: name.to_owned(),
            phase: AtomicU8::new(BreakerPhase::Closed.to_u8()),
            inner: Mutex::new(Inner {
                phase: BreakerPhase::Closed,
                window: RollingCounts::new(Duration::from_secs(10), now),
                open_until: now,
                probes_out: 0,
                probes_ok: 0,
            }),
            clock,
        }
    }

    /// The current phase, without locking (an open breaker whose time is up still reads open
    /// until the next call moves it to half-open).
    pub fn phase(&self) -> BreakerPhase {
        BreakerPhase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Until when the breaker stays open, when it is open.
    pub fn open_until(&self) -> Option<Instant> {
        let inner = self.inner.lock().ok()?;
        (inner.phase == BreakerPhase::Open).then_some(inner.open_until)
    }

    /// Asks to make one call.
    pub fn try_acquire<'a>(&'a self, settings: &'a BreakerSettings) -> Result<Permit<'a>, Refused> {
        let now = self.clock.now();
        let Ok(mut inner) = self.inner.lock() else {
            // A poisoned lock means a bug elsewhere; do not turn it into an outage.
            return Ok(self.permit(settings, false));
        };
        match inner.phase {
            BreakerPhase::Closed => Ok(self.permit(settings, false)),
            BreakerPhase::Open if now < inner.open_until => Err(Refused {
                retry_after: inner.open_until - now,
            }),
            BreakerPhase::Open | BreakerPhase::HalfOpen => {
                if inner.phase == BreakerPhase::Open {
                    inner.probes_out = 0;
                    inner.probes_ok = 0;
                    self.set_phase(&mut inner, BreakerPhase::HalfOpen);
                }
                if inner.probes_out + inner.probes_ok >= settings.half_open_requests.max(1) {
                    return Err(Refused {
                        retry_after: settings.open_for.min(Duration::from_secs(1)),
                    });
                }
                inner.probes_out += 1;
                Ok(self.permit(settings, true))
            }
        }
    }

    fn permit<'a>(&'a self, settings: &'a BreakerSettings, probe: bool) -> Permit<'a> {
        Permit {
            breaker: self,
            settings,
            probe,
            done: false,
        }
    }

    fn set_phase(&self, inner: &mut Inner, phase: BreakerPhase) {
        if inner.phase != phase {
            let level_warn = phase == BreakerPhase::Open;
            if level_warn {
                tracing::warn!(upstream = %self.name, from = inner.phase.as_str(), to = phase.as_str(), "circuit breaker state change");
            } else {
                tracing::info!(upstream = %self.name, from = inner.phase.as_str(), to = phase.as_str(), "circuit breaker state change");
            }
        }
        inner.phase = phase;
        self.phase.store(phase.to_u8(), Ordering::Relaxed);
    }

    fn open(&self, inner: &mut Inner, settings: &BreakerSettings, now: Instant) {
        inner.open_until = later(now, settings.open_for);
        inner.probes_out = 0;
        inner.probes_ok = 0;
        self.set_phase(inner, BreakerPhase::Open);
    }

    fn outcome(&self, settings: &BreakerSettings, probe: bool, success: Option<bool>) {
        let now = self.clock.now();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        if probe {
            if inner.phase != BreakerPhase::HalfOpen {
                return;
            }
            inner.probes_out = inner.probes_out.saturating_sub(1);
            match success {
                None => {}
                Some(false) => self.open(inner, settings, now),
                Some(true) => {
                    inner.probes_ok += 1;
                    if inner.probes_ok >= settings.half_open_requests.max(1) {
                        inner.window = RollingCounts::new(settings.window, now);
                        self.set_phase(inner, BreakerPhase::Closed);
                    }
                }
            }
            return;
        }
        let Some(success) = success else {
            return;
        };
        if inner.phase != BreakerPhase::Closed {
            // A call admitted while closed that ends after the breaker opened: already judged.
            return;
        }
        if !inner.window.covers(settings.window) {
            // The window was changed by a reload: count afresh rather than misread old buckets.
            inner.window = RollingCounts::new(settings.window, now);
        }
        inner
            .window
            .add(now, u64::from(success), u64::from(!success));
        let (ok, failed) = inner.window.totals(now);
        let total = ok + failed;
        if !success
            && total >= u64::from(settings.min_requests.max(1))
            && failed as f64 >= settings.failure_ratio * total as f64
        {
            inner.window.clear();
            self.open(inner, settings, now);
        }
    }
}

impl Permit<'_> {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the call's outcome.
    pub fn record(mut self, success: bool) {
        self.done = true;
        self.breaker
            .outcome(self.settings, self.probe, Some(success));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.breaker.outcome(self.settings, self.probe, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_ratio: 0.5,
            min_requests: 4,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(30),
            half_open_requests: 2,
        }
    }

    #[test]
    fn opens_at_the_ratio_once_enough_calls_were_made() {
        let (clock, _) = Clock::fake();
        let breaker = Breaker::new("u", clock);
        let s = settings();
        // Three failures: below min_requests, stays closed.
        for _ in 0..3 {
            breaker.try_acquire(&s).unwrap().record(false);
        }
        assert_eq!(breaker.phase(), BreakerPhase::Closed);
        breaker.try_acquire(&s).unwrap().record(false);
        assert_eq!(breaker.phase(), BreakerPhase::Open);
        assert!(breaker.try_acquire(&s).is_err());
    }

    #[test]
    fn successes_keep_the_ratio_below_the_threshold() {
        let (clock, _) = Clock::fake();
        let breaker = Breaker::new("u", clock);
        let s = settings();
        // S F F S F: 3 of 5 failed → open at the fifth call.
        for i in 0..5 {
            breaker.try_acquire(&s).unwrap().record(i % 3 == 0);
        }
        assert_eq!(breaker.phase(), BreakerPhase::Open);
        let breaker = Breaker::new("u", Clock::fake().0);
        for i in 0..20 {
            breaker.try_acquire(&s).unwrap().record(i % 4 != 0);
        }
        // 5 of 20 failed.
        assert_eq!(breaker.phase(), BreakerPhase::Closed);
    }

    #[test]
    fn old_failures_slide_out_of_the_window() {
        let (clock, fake) = Clock::fake();
        let breaker = Breaker::new("u", clock);
        let s = settings();
        for _ in 0..3 {
            breaker.try_acquire(&s).unwrap().record(false);
        }
        fake.advance(Duration::from_secs(11));
        breaker.try_acquire(&s).unwrap().record(false);
        assert_eq!(breaker.phase(), BreakerPhase::Closed);
    }

    #[test]
    fn half_opens_after_open_for_and_closes_when_probes_succeed() {
        let (clock, fake) = Clock::fake();
        let breaker = Breaker::new("u", clock);
        let s = settings();
        for _ in 0..4 {
            breaker.try_acquire(&s).unwrap().record(false);
        }
        let refused = breaker.try_acquire(&s).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        fake.advance(Duration::from_secs(29));
        assert!(breaker.try_acquire(&s).is_err());
        fake.advance(Duration::from_secs(1));
        let first = breaker.try_acquire(&s).unwrap();
        assert!(first.is_probe());
        assert_eq!(breaker.phase(), BreakerPhase::HalfOpen);
        let second = breaker.try_acquire(&s).unwrap();
        // Only two probes at a time.
        assert!(breaker.try_acquire(&s).is_err());
        first.record(true);
        assert_eq!(breaker.phase(), BreakerPhase::HalfOpen);
        second.record(true);
        assert_eq!(breaker.phase(), BreakerPhase::Closed);
        assert!(!breaker.try_acquire(&s).unwrap().is_probe());
    }

    #[test]
    fn a_failed_probe_opens_again_for_open_for() {
        let (clock, fake) = Clock::fake();
        let breaker = Breaker::new("u", clock);
        let s = settings();
        for _ in 0..4 {
            breaker.try_acquire(&s).unwrap().record(false);
        }
        fake.advance(Duration::from_secs(30));
        breaker.try_acquire(&s).unwrap().record(false);
        assert_eq!(breaker.phase(), BreakerPhase::Open);
        assert_eq!(
            breaker.try_acquire(&s).unwrap_err().retry_after,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn an_enormous_open_for_does_not_panic() {
        let (clock, _) = Clock::fake();
        let breaker = Breaker::new("u", clock);
        let s = BreakerSettings {
            open_for: Duration::from_millis(u64::MAX),
            ..settings()
        };
        for _ in 0..4 {
            breaker.try_acquire(&s).unwrap().record(false);
        }
        assert!(breaker.try_acquire(&s).is_err());
    }

    #[test]
    fn an_abandoned_probe_gives_its_slot_back() {
        let (clock, fake) = Clock::fake();
        let breaker = Breaker::new("u", clock);
        let s = BreakerSettings {
            half_open_requests: 1,
            ..settings()
        };
        for _ in 0..4 {
            breaker.try_acquire(&s).unwrap().record(false);
        }
        fake.advance(Duration::from_secs(30));
        drop(breaker.try_acquire(&s).unwrap());
        breaker.try_acquire(&s).unwrap().record(true);
        assert_eq!(breaker.phase(), BreakerPhase::Closed);
    }
}
