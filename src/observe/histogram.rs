//! A duration histogram observed with atomics only.
//!
//! `prometheus_client`'s `Histogram` takes a lock and converts to seconds on every observation;
//! every proxied request makes two (its duration, its upstream try). Here an observation is a
//! bucket search over integer nanoseconds and two relaxed atomic adds. The exposition is the
//! same: `_sum` in seconds, `_count`, and cumulative `_bucket{le=...}` lines ending in `+Inf`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Fixed buckets of durations; clones share the counts.
#[derive(Debug, Clone)]
pub struct DurationHistogram {
    inner: Arc<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    /// Upper bounds, in seconds (for the exposition).
    bounds: &'static [f64],
    /// The same bounds in nanoseconds (for the search).
    bounds_nanos: Box<[u64]>,
    /// One count per bound, then the `+Inf` bucket (not cumulative).
    counts: Box<[AtomicU64]>,
    /// Sum of all observations, in nanoseconds (wraps after 584 years of summed time).
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// `bounds`: increasing upper bounds in seconds.
    pub fn new(bounds: &'static [f64]) -> Self {
        let bounds_nanos = bounds.iter().map(|&seconds| nanos_of(seconds)).collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Buckets {
                bounds,
                bounds_nanos,
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one duration into the first bucket whose bound is at least `took`.
    pub fn observe(&self, took: Duration) {
        let inner = &*self.inner;
        let nanos = nanos(took);
        let index = inner
            .bounds_nanos
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(inner.bounds_nanos.len());
        if let Some(count) = inner.counts.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Sum (seconds), count and the per-bucket counts with their bounds (`+Inf` last).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.inner;
        let mut count = 0u64;
        let buckets = inner
            .counts
            .iter()
            .enumerate()
            .map(|(index, n)| {
                let n = n.load(Ordering::Relaxed);
                count = count.wrapping_add(n);
                let bound = inner.bounds.get(index).copied().unwrap_or(f64::INFINITY);
                (bound, n)
            })
            .collect();
        // Seconds for the exposition: exact to the microsecond up to 285 years of summed time.
        #[allow(clippy::cast_precision_loss)]
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

/// Whole nanoseconds, saturating (without `as_nanos`' 128-bit arithmetic).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// Seconds to whole nanoseconds (bounds are configuration constants, well inside `u64`).
fn nanos_of(seconds: f64) -> u64 {
    Duration::try_from_secs_f64(seconds).map_or(u64::MAX, nanos)
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    const BOUNDS: [f64; 3] = [0.001, 0.01, 1.0];

    #[test]
    fn observations_land_in_the_first_bucket_at_least_their_size() {
        let histogram = DurationHistogram::new(&BOUNDS);
        for took in [
            Duration::ZERO,
            Duration::from_micros(1000), // on a bound: that bucket (`le` is "at most")
            Duration::from_nanos(1_000_001),
            Duration::from_millis(10),
            Duration::from_millis(999),
            Duration::from_secs(2),
            Duration::MAX,
        ] {
            histogram.observe(took);
        }
        let (_, count, buckets) = histogram.snapshot();
        assert_eq!(count, 7);
        assert_eq!(
            buckets,
            vec![(0.001, 2), (0.01, 2), (1.0, 1), (f64::INFINITY, 2)]
        );
    }

    /// The text a scraper reads is what `prometheus_client`'s own histogram writes.
    #[test]
    fn the_exposition_matches_the_library_histogram() {
        let ours = DurationHistogram::new(&BOUNDS);
        let theirs = prometheus_client::metrics::histogram::Histogram::new(BOUNDS);
        for millis in [0, 1, 3, 250, 4000] {
            ours.observe(Duration::from_millis(millis));
            #[allow(clippy::cast_precision_loss)]
            theirs.observe(millis as f64 / 1000.0);
        }
        let mut registry = Registry::default();
        registry.register("took_seconds", "Took.", ours);
        let ours = exposition(&registry);
        let mut registry = Registry::default();
        registry.register("took_seconds", "Took.", theirs);
        let theirs = exposition(&registry);
        assert_eq!(ours, theirs);
        assert!(
            ours.contains("took_seconds_bucket{le=\"+Inf\"} 5"),
            "{ours}"
        );
        assert!(ours.contains("took_seconds_sum 4.254"), "{ours}");
    }

    fn exposition(registry: &Registry) -> String {
        let mut out = String::new();
        encode(&mut out, registry).unwrap();
        out
    }
}
