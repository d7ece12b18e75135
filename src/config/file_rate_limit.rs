//! The file model of rate limiting: `redis:` and the limit entries of `server.rate_limit` and
//! `routes[].policies.rate_limit`. Same rules as `file.rs`: every struct denies unknown fields.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::Duration;

/// Shared state for limits across instances.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRedis {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Bound on every Redis call (default 50ms).
    pub timeout: Option<Duration>,
    /// When to stop calling a failing Redis.
    pub breaker: Option<FileRedisBreaker>,
}

/// The breaker around Redis.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRedisBreaker {
    /// Consecutive failed calls that open it (default 3).
    pub failures: Option<u32>,
    /// How long Redis is skipped once open (default 5s); then one probe call decides.
    pub open_for: Option<Duration>,
}

/// One limit; every entry of a list must admit a request.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRateLimit {
    /// What is counted separately: `consumer`, `ip`, `route`, `header:NAME`, `global`, or a
    /// combination such as `consumer+route`.
    pub key: String,
    /// `N/s`, `N/min`, `N/h` (a rate with a burst) or `N/day`, `N/month` (a calendar quota, UTC,
    /// Redis only).
    pub rate: String,
    /// Requests admitted at once from a full bucket (default: N of the rate).
    pub burst: Option<u64>,
    /// Where the counters live: `local` (default), `redis` or `hybrid`.
    #[serde(default)]
    pub store: FileLimitStore,
    /// What happens when Redis cannot answer (default `allow`).
    #[serde(default)]
    pub on_store_error: FileOnStoreError,
    /// Whether admitted responses carry the `RateLimit` field for this limit (default true; 429s
    /// always do).
    pub headers: Option<bool>,
    /// Name in the `RateLimit` fields (default: the key).
    pub name: Option<String>,
    /// Most distinct keys a `local` limit remembers (default 100000); the oldest refilled ones go
    /// first.
    pub max_keys: Option<usize>,
}

/// Where a limit's counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileLimitStore {
    /// Per instance, in memory.
    #[default]
    Local,
    /// Shared through Redis, exact across instances.
    Redis,
    /// A local allowance per instance, reconciled with Redis every few ms (very high rates).
    Hybrid,
}

/// Policy when Redis is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileOnStoreError {
    /// Admit (fail open), logged and counted.
    #[default]
    Allow,
    /// Refuse with 503.
    Deny,
}

/// A parsed `rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedRate {
    /// `count` per `period` (GCRA).
    Rate {
        /// Requests per period.
        count: u64,
        /// The period.
        period: std::time::Duration,
    },
    /// `count` per UTC day.
    Day(u64),
    /// `count` per UTC month.
    Month(u64),
}

/// Parses `N/s`, `N/sec`, `N/min`, `N/m`, `N/h`, `N/hour`, `N/day`, `N/month`.
pub fn parse_rate(text: &str) -> Result<ParsedRate, String> {
    let bad = || {
        format!(
            "invalid rate {text:?}: expected N/s, N/min, N/h (rates) or N/day, N/month (quotas)"
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    let count: u64 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!(
            "rate {text:?} admits nothing: N must be at least 1"
        ));
    }
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => return Ok(ParsedRate::Day(count)),
        "month" => return Ok(ParsedRate::Month(count)),
        _ => return Err(bad()),
    };
    Ok(ParsedRate::Rate {
        count,
        period: std::time::Duration::from_secs(secs),
    })
}
