//! Load shedding: at most `max_concurrent_requests` requests per upstream in flight, a short
//! bounded queue in front, and 503 + `Retry-After` beyond; optionally an adaptive limit that finds
//! the upstream's capacity from observed latency.
//!
//! The adaptive limit is a gradient limiter (after Netflix's concurrency-limits): it keeps the
//! lowest latency seen recently as the no-load baseline and, on every sample, moves the limit
//! towards `limit × min(1, (2 × baseline + 1 ms) / latency) + √limit`, where latency is smoothed
//! over recent samples and the 1 ms of slack keeps scheduling noise at sub-millisecond latencies
//! from reading as queueing. While latency stays near the baseline the limit grows by a fraction
//! of √limit per sample (only while the upstream is actually used that much); when latency climbs
//! past twice the baseline it shrinks, at most halving per step. A failed or timed-out request shrinks it by a tenth. The baseline is forgotten every
//! [`BASELINE_WINDOW`] so a permanently slower upstream becomes the new normal. Bounds:
//! `[min_limit, max_concurrent_requests]`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::clock::Clock;

/// How long a latency baseline is trusted before it is measured afresh.
pub const BASELINE_WINDOW: Duration = Duration::from_secs(30);

/// Latency up to this multiple of the baseline counts as no queueing.
const TOLERANCE: f64 = 2.0;

/// Weight of the newest estimate in the smoothed limit, and of the newest sample in the smoothed
/// latency.
const SMOOTHING: f64 = 0.2;

/// Latency this close to the baseline is never taken for queueing: at sub-millisecond latencies
/// scheduling noise alone doubles a sample.
const SLACK: Duration = Duration::from_millis(1);

/// Load-shedding settings (`upstreams.*.load_shedding`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShedSettings {
    /// Most requests in flight (the adaptive limit's ceiling).
    pub max_concurrent: u32,
    /// Requests that may wait for a slot.
    pub queue: u32,
    /// Longest wait in the queue.
    pub queue_timeout: Duration,
    /// Adaptive limit, when enabled.
    pub adaptive: Option<AdaptiveSettings>,
}

/// Bounds of the adaptive limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveSettings {
    /// The limit never goes below this.
    pub min_limit: u32,
    /// Where the limit starts.
    pub initial_limit: u32,
}

/// The request was shed: too many in flight and the queue is full (or the wait ran out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

/// The gradient limiter's state.
#[derive(Debug, Clone)]
pub struct GradientLimit {
    limit: f64,
    baseline: Option<Duration>,
    baseline_since: Instant,
    /// Smoothed recent latency, in seconds (one slow request is not a trend).
    recent: Option<f64>,
}

impl GradientLimit {
    /// Starts at `initial`.
    pub fn new(initial: u32, now: Instant) -> Self {
        Self {
            limit: f64::from(initial.max(1)),
            baseline: None,
            baseline_since: now,
            recent: None,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.limit.round() as u32
    }

    /// Learns from one finished request: its latency, how many were in flight when it started,
    /// and whether it failed (5xx, timeout, connect error).
    pub fn on_sample(
        &mut self,
        latency: Duration,
        in_flight: u32,
        failed: bool,
        now: Instant,
        bounds: (u32, u32),
    ) {
        let (min, max) = (
            f64::from(bounds.0.max(1)),
            f64::from(bounds.1.max(bounds.0).max(1)),
        );
        if failed {
            self.limit = (self.limit * 0.9).clamp(min, max);
            return;
        }
        if now.saturating_duration_since(self.baseline_since) >= BASELINE_WINDOW {
            self.baseline = None;
            self.baseline_since = now;
        }
        let latency = latency.max(Duration::from_micros(1));
        let baseline = self.baseline.map_or(latency, |b| b.min(latency));
        self.baseline = Some(baseline);
        let sample = latency.as_secs_f64();
        let recent = self
            .recent
            .map_or(sample, |r| (1.0 - SMOOTHING) * r + SMOOTHING * sample);
        self.recent = Some(recent);
        let gradient =
            ((TOLERANCE * baseline.as_secs_f64() + SLACK.as_secs_f64()) / recent).clamp(0.5, 1.0);
        // An upstream used far below its limit says nothing about a higher one.
        if gradient >= 1.0 && f64::from(in_flight) * 2.0 < self.limit {
            return;
        }
        let estimate = self.limit * gradient + self.limit.sqrt();
        let next = if gradient < 1.0 {
            // Shrink: the estimate can still exceed the limit on small limits; never grow here.
            estimate.min(self.limit)
        } else {
            estimate
        };
        self.limit = ((1.0 - SMOOTHING) * self.limit + SMOOTHING * next).clamp(min, max);
    }
}

/// One upstream's in-flight count, queue and adaptive limit; kept across reloads.
#[derive(Debug)]
pub struct Shedder {
    clock: Clock,
    in_flight: AtomicU32,
    queued: AtomicU32,
    released: Notify,
    gradient: Mutex<Option<GradientLimit>>,
    /// The adaptive limit (0 until the first adaptive request), readable without the lock.
    limit: AtomicU32,
}

/// A slot in the upstream's concurrency limit; frees it when dropped. Owned, so it can travel
/// with the response body and free the slot when the body ends.
#[derive(Debug)]
pub struct ShedPermit {
    shedder: Arc<Shedder>,
    settings: ShedSettings,
    started: Instant,
    in_flight_at_start: u32,
    sampled: bool,
}

impl Shedder {
    /// Nothing in flight.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            in_flight: AtomicU32::new(0),
            queued: AtomicU32::new(0),
            released: Notify::new(),
            gradient: Mutex::new(None),
            limit: AtomicU32::new(0),
        }
    }

    /// Requests holding a slot now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The limit in force under `settings`.
    pub fn limit(&self, settings: &ShedSettings) -> u32 {
        match settings.adaptive {
            None => settings.max_concurrent,
            Some(adaptive) => {
                let limit = self.limit.load(Ordering::Relaxed);
                let limit = if limit == 0 {
                    adaptive.initial_limit
                } else {
                    limit
                };
                limit.clamp(adaptive.min_limit.max(1), settings.max_concurrent.max(1))
            }
        }
    }

    fn try_take(&self, limit: u32) -> Option<u32> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
    }

    /// A slot, waiting in the queue for at most `queue_timeout` when none is free.
    pub async fn acquire(
        self: &Arc<Self>,
        settings: &ShedSettings,
    ) -> Result<ShedPermit, Overloaded> {
        if let Some(n) = self.try_take(self.limit(settings)) {
            return Ok(self.permit(settings, n));
        }
        let joined = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q < settings.queue).then_some(q + 1)
            });
        if joined.is_err() {
            return Err(Overloaded);
        }
        let waited = tokio::time::timeout(settings.queue_timeout, async {
            loop {
                let released = self.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if let Some(n) = self.try_take(self.limit(settings)) {
                    return n;
                }
                released.await;
            }
        })
        .await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(n) => Ok(self.permit(settings, n)),
            Err(_) => Err(Overloaded),
        }
    }

    fn permit(self: &Arc<Self>, settings: &ShedSettings, in_flight_before: u32) -> ShedPermit {
        ShedPermit {
            shedder: Arc::clone(self),
            settings: *settings,
            started: self.clock.now(),
            in_flight_at_start: in_flight_before + 1,
            sampled: false,
        }
    }

    fn sample(&self, settings: &ShedSettings, latency: Duration, in_flight: u32, failed: bool) {
        let Some(adaptive) = settings.adaptive else {
            return;
        };
        let now = self.clock.now();
        let Ok(mut gradient) = self.gradient.lock() else {
            return;
        };
        let gradient =
            gradient.get_or_insert_with(|| GradientLimit::new(adaptive.initial_limit, now));
        gradient.on_sample(
            latency,
            in_flight,
            failed,
            now,
            (adaptive.min_limit, settings.max_concurrent),
        );
        self.limit.store(gradient.limit(), Ordering::Relaxed);
    }
}

impl ShedPermit {
    /// The request got its answer head (`failed`: 5xx, timeout, connect error): feeds the
    /// adaptive limit once. The slot stays taken until the permit is dropped.
    pub fn sample(&mut self, failed: bool) {
        if std::mem::replace(&mut self.sampled, true) {
            return;
        }
        let latency = self
            .shedder
            .clock
            .now()
            .saturating_duration_since(self.started);
        self.shedder
            .sample(&self.settings, latency, self.in_flight_at_start, failed);
    }
}

impl Drop for ShedPermit {
    fn drop(&mut self) {
        self.shedder.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shedder.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_shrinks_when_latency_climbs_and_grows_back_when_it_recovers() {
        let (clock, fake) = Clock::fake();
        let mut limit = GradientLimit::new(20, clock.now());
        let bounds = (2, 100);
        let fast = Duration::from_millis(10);
        let slow = Duration::from_millis(100);
        for _ in 0..50 {
            let in_flight = limit.limit();
            limit.on_sample(fast, in_flight, false, clock.now(), bounds);
            fake.advance(Duration::from_millis(100));
        }
        let grown = limit.limit();
        assert!(
            grown > 20,
            "a healthy, busy upstream earns a higher limit: {grown}"
        );
        for _ in 0..30 {
            let in_flight = limit.limit();
            limit.on_sample(slow, in_flight, false, clock.now(), bounds);
            fake.advance(Duration::from_millis(100));
        }
        let shrunk = limit.limit();
        assert!(
            shrunk < grown / 2,
            "latency ×10 shrinks the limit: {grown} → {shrunk}"
        );
        for _ in 0..60 {
            let in_flight = limit.limit();
            limit.on_sample(fast, in_flight, false, clock.now(), bounds);
            fake.advance(Duration::from_millis(100));
        }
        assert!(
            limit.limit() > shrunk * 2,
            "recovered: {shrunk} → {}",
            limit.limit()
        );
    }

    #[test]
    fn an_idle_upstream_does_not_grow_its_limit_and_failures_shrink_it() {
        let (clock, _) = Clock::fake();
        let mut limit = GradientLimit::new(20, clock.now());
        for _ in 0..50 {
            limit.on_sample(Duration::from_millis(5), 1, false, clock.now(), (1, 100));
        }
        assert_eq!(limit.limit(), 20);
        limit.on_sample(Duration::from_millis(5), 1, true, clock.now(), (1, 100));
        assert_eq!(limit.limit(), 18);
    }

    #[test]
    fn a_permanently_slower_upstream_becomes_the_new_baseline() {
        let (clock, fake) = Clock::fake();
        let mut limit = GradientLimit::new(20, clock.now());
        limit.on_sample(Duration::from_millis(10), 20, false, clock.now(), (2, 100));
        for _ in 0..20 {
            limit.on_sample(
                Duration::from_millis(100),
                limit.limit(),
                false,
                clock.now(),
                (2, 100),
            );
        }
        let low = limit.limit();
        fake.advance(BASELINE_WINDOW);
        for _ in 0..40 {
            limit.on_sample(
                Duration::from_millis(100),
                limit.limit(),
                false,
                clock.now(),
                (2, 100),
            );
            fake.advance(Duration::from_millis(100));
        }
        assert!(limit.limit() > low, "{low} → {}", limit.limit());
    }

    #[tokio::test]
    async fn beyond_the_limit_and_the_queue_requests_are_shed() {
        let shedder = Arc::new(Shedder::new(Clock::System));
        let settings = ShedSettings {
            max_concurrent: 1,
            queue: 1,
            queue_timeout: Duration::from_secs(5),
            adaptive: None,
        };
        let first = shedder.acquire(&settings).await.unwrap();
        let waiting = shedder.acquire(&settings);
        tokio::pin!(waiting);
        // Polled once: it joins the queue.
        assert!(futures_util::FutureExt::now_or_never(waiting.as_mut()).is_none());
        assert_eq!(shedder.queued(), 1);
        assert_eq!(shedder.acquire(&settings).await.unwrap_err(), Overloaded);
        drop(first);
        let mut second = waiting.await.unwrap();
        assert_eq!(shedder.in_flight(), 1);
        second.sample(false);
        assert_eq!(
            shedder.in_flight(),
            1,
            "the slot is held until the permit goes"
        );
        drop(second);
        assert_eq!(shedder.in_flight(), 0);
    }
}
