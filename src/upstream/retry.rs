//! Retry policy: which failures and methods are retried, how many tries, and the backoff.
//!
//! Only idempotent methods are retried unless the config says `methods: all`; a 503 Gantry made
//! itself (open breaker, load shedding) is never retried, and neither is a request whose body was
//! not buffered or whose response has started streaming to the client (see `handler::forward`).

use std::time::Duration;

use http::Method;
use rand::Rng;

/// Largest request body kept in memory so the request can be sent again.
pub const REPLAY_LIMIT: u64 = 64 * 1024;

/// The retry settings of an upstream (`upstreams.*.retries`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total tries, including the first (1 = no retries).
    pub attempts: u32,
    /// Retry when the connection could not be made.
    pub on_connect_error: bool,
    /// Retry when the connection was reset or closed before a response.
    pub on_reset: bool,
    /// Retry when a try timed out (`per_try`).
    pub on_timeout: bool,
    /// Retry on these response statuses.
    pub on_statuses: Vec<u16>,
    /// Retry every method, not only the idempotent ones.
    pub all_methods: bool,
    /// First backoff ceiling.
    pub backoff_base: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// Retries allowed as a share of recent requests.
    pub budget_ratio: f64,
    /// Retries allowed per second regardless of traffic.
    pub min_retries_per_second: u32,
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            on_connect_error: false,
            on_reset: false,
            on_timeout: false,
            on_statuses: Vec::new(),
            all_methods: false,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            budget_ratio: 0.2,
            min_retries_per_second: 3,
        }
    }

    /// Whether requests with `method` may be sent more than once.
    pub fn allows_method(&self, method: &Method) -> bool {
        self.attempts > 1
            && (self.all_methods
                || matches!(
                    *method,
                    Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
                ))
    }

    /// Whether a response with this status is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        self.on_statuses.contains(&status)
    }

    /// Full-jitter exponential backoff before retry number `retry` (1 = the first retry): a
    /// uniformly random wait up to `min(max, base × 2^(retry-1))`, so synchronized clients spread.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.backoff_max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_methods_unless_all() {
        let mut policy = RetryPolicy {
            attempts: 3,
            ..RetryPolicy::none()
        };
        assert!(policy.allows_method(&Method::GET));
        assert!(policy.allows_method(&Method::PUT));
        assert!(!policy.allows_method(&Method::POST));
        assert!(!policy.allows_method(&Method::PATCH));
        policy.all_methods = true;
        assert!(policy.allows_method(&Method::POST));
        policy.attempts = 1;
        assert!(!policy.allows_method(&Method::GET));
    }

    #[test]
    fn backoff_stays_under_the_growing_ceiling() {
        let policy = RetryPolicy {
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(35),
            ..RetryPolicy::none()
        };
        for _ in 0..200 {
            assert!(policy.backoff(1) <= Duration::from_millis(10));
            assert!(policy.backoff(2) <= Duration::from_millis(20));
            assert!(policy.backoff(3) <= Duration::from_millis(35));
            assert!(policy.backoff(30) <= Duration::from_millis(35));
        }
    }
}
