//! The file model of `upstreams.*` resilience keys (health checks, circuit breaker, retries, load
//! shedding) and of a route's `fallback`. Same rules as `file.rs`: exactly the YAML, unknown keys
//! denied, nothing resolved.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::units::Duration;

/// Active and passive health checking.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileHealthCheck {
    /// Periodic GET on a path of every target.
    pub active: Option<FileActiveHealth>,
    /// Outlier ejection from the failures real requests see.
    pub passive: Option<FilePassiveHealth>,
}

/// Active health checks.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileActiveHealth {
    /// Path requested with GET; a 2xx answer passes (e.g. `/healthz`).
    pub path: String,
    /// Time between two checks of a target (default 5s).
    pub interval: Option<Duration>,
    /// A check fails without response headers within this (default 1s).
    pub timeout: Option<Duration>,
    /// Passed checks in a row that bring a target back (default 2).
    pub healthy_after: Option<u32>,
    /// Failed checks in a row that take a target out (default 3).
    pub unhealthy_after: Option<u32>,
}

/// Passive checks: outlier ejection.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePassiveHealth {
    /// 5xx answers or connection failures in a row that eject a target (default 5).
    pub consecutive_failures: Option<u32>,
    /// How long the first ejection lasts; repeats last longer (default 30s).
    pub eject_for: Option<Duration>,
    /// Most targets of the upstream ejected at once, in percent (default 50).
    pub max_ejected_percent: Option<u32>,
}

/// Circuit breaker of the upstream.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileCircuitBreaker {
    /// Failed share of calls in the window that opens the breaker, 0 < r ≤ 1 (default 0.5).
    pub failure_ratio: Option<f64>,
    /// Fewest calls in the window before the ratio counts (default 20).
    pub min_requests: Option<u32>,
    /// Sliding window (default 10s).
    pub window: Option<Duration>,
    /// How long the breaker stays open before probing (default 30s).
    pub open_for: Option<Duration>,
    /// Probe calls while half-open; all must succeed to close (default 3).
    pub half_open_requests: Option<u32>,
}

/// Retries.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRetries {
    /// Total tries including the first (default 3).
    pub attempts: Option<u32>,
    /// Conditions retried: `connect_error`, `reset`, `timeout` and status codes
    /// (default `[connect_error, reset, 502, 503, 504]`).
    pub on: Option<Vec<FileRetryOn>>,
    /// `idempotent` (GET, HEAD, OPTIONS, PUT, DELETE; the default) or `all`.
    #[serde(default)]
    pub methods: FileRetryMethods,
    /// Exponential backoff with full jitter.
    #[serde(default)]
    pub backoff: FileBackoff,
    /// Retries may add at most this share on top of the requests of the last 10s (default 20%).
    pub budget: Option<Percent>,
    /// Retries allowed per second whatever the traffic, so a quiet upstream is retried (default 3).
    pub min_retries_per_second: Option<u32>,
}

/// A retry condition: a name or an HTTP status code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum FileRetryOn {
    /// A response status (500–599).
    Status(u16),
    /// A named failure.
    Condition(FileRetryCondition),
}

/// Named retry conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileRetryCondition {
    /// The connection could not be made (refused, connect timeout).
    ConnectError,
    /// The connection was reset or closed before the response.
    Reset,
    /// The try ran out of `per_try` time.
    Timeout,
}

/// Which methods are retried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileRetryMethods {
    /// GET, HEAD, OPTIONS, PUT, DELETE.
    #[default]
    Idempotent,
    /// Every method (POST too).
    All,
}

/// Retry backoff.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileBackoff {
    /// Ceiling of the first wait (default 25ms); doubles per retry.
    pub base: Option<Duration>,
    /// Largest ceiling (default 250ms).
    pub max: Option<Duration>,
}

/// Load shedding of the upstream.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileLoadShedding {
    /// Most requests in flight to the upstream; with `adaptive`, the limit's ceiling.
    pub max_concurrent_requests: u32,
    /// Requests that may wait for a slot beyond it (default 0: answer 503 at once).
    pub queue: Option<u32>,
    /// Longest wait in the queue (default 50ms).
    pub queue_timeout: Option<Duration>,
    /// Find the limit from observed latency (gradient limiter).
    pub adaptive: Option<FileAdaptive>,
}

/// Adaptive concurrency limit.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAdaptive {
    /// Lowest limit (default 1).
    pub min_limit: Option<u32>,
    /// Where the limit starts (default: a quarter of `max_concurrent_requests`, at least `min_limit`).
    pub initial_limit: Option<u32>,
}

/// A static answer a route gives when its upstream is open-circuited, unhealthy or timed out.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileFallback {
    /// Status code (default 200).
    pub status: Option<u16>,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default)]
    pub body: String,
}

/// Service discovery.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileDiscovery {
    /// Targets from DNS: A/AAAA records with `port`, or SRV records when `port` is left out.
    pub dns: FileDnsDiscovery,
}

/// DNS discovery.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileDnsDiscovery {
    /// Name to resolve, e.g. `orders.internal` (SRV: `_http._tcp.orders.internal`).
    pub name: String,
    /// Port of every address; without it the name is looked up as SRV (ports and weights from there).
    pub port: Option<u16>,
    /// Longest time between two lookups (default 30s); a shorter TTL refreshes sooner.
    pub refresh: Option<Duration>,
    /// DNS servers as `IP` or `IP:PORT` (default: the system's, from /etc/resolv.conf).
    #[serde(default)]
    pub nameservers: Vec<String>,
}

/// A percentage written `20%` (0–100, decimals allowed).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Percent {
    /// Parses `20%` or `12.5%`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let number = text
            .trim()
            .strip_suffix('%')
            .ok_or_else(|| format!("invalid percentage {text:?}: expected e.g. 20%"))?;
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("invalid percentage {text:?}: expected e.g. 20%"))?;
        if !(0.0..=100.0).contains(&value) {
            return Err(format!("percentage {text:?} must be from 0% to 100%"));
        }
        Ok(Self(value))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(\\.[0-9]+)?%$",
            "description": "A percentage: 20%, 12.5%."
        })
    }
}
