//! Compiles the rate-limit area: the Redis store (kept across reloads while `redis:` is unchanged),
//! the server-wide limits, and each route's [`RateLimitSet`]. A limit's local counters are keyed by
//! its identity (scope, key, rate, burst, store), so a reload keeps the counters of every limit
//! it leaves unchanged; Redis counters are keyed by the same identity and survive on their own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::LoadedFile;
use super::error::ConfigError;
use super::file::FileRoute;
use super::file_rate_limit::{
    FileLimitStore, FileOnStoreError, FileRateLimit, ParsedRate, parse_rate,
};
use crate::policy::RoutePolicies;
use crate::policy::clock::{self, SharedClock};
use crate::policy::rate_limit::gcra::Gcra;
use crate::policy::rate_limit::redis::{RedisSettings, RedisStore};
use crate::policy::rate_limit::{
    Calendar, KeySpec, Limit, LimitKind, LimitStore, OnStoreError, RateLimitSet, RateLimits,
};

/// Default bound on a Redis call.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// Default consecutive failures that open the Redis breaker.
const DEFAULT_BREAKER_FAILURES: u32 = 3;
/// Default time the open breaker skips Redis.
const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(5);
/// Default bound on the keys one local limit remembers.
const DEFAULT_MAX_KEYS: usize = 100_000;

/// The registry of a new config, carrying the Redis store and local counters over from `previous`.
pub(crate) fn registry(
    loaded: &LoadedFile,
    previous: Option<&RateLimits>,
    errors: &mut Vec<ConfigError>,
) -> RateLimits {
    let clock: SharedClock = previous.map_or_else(clock::system, |p| Arc::clone(&p.clock));
    let redis = loaded.config.redis.as_ref().and_then(|redis| {
        let breaker = redis.breaker.as_ref();
        let settings = RedisSettings {
            url: redis.url.clone(),
            timeout: redis.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            breaker_failures: breaker
                .and_then(|b| b.failures)
                .unwrap_or(DEFAULT_BREAKER_FAILURES),
            breaker_open_for: breaker
                .and_then(|b| b.open_for)
                .map_or(DEFAULT_BREAKER_OPEN_FOR, |d| d.0),
        };
        if let Some(kept) = previous
            .and_then(|p| p.redis.as_ref())
            .filter(|r| *r.settings() == settings)
        {
            return Some(Arc::clone(kept));
        }
        match RedisStore::new(settings, Arc::clone(&clock)) {
            Ok(store) => Some(Arc::new(store)),
            Err(message) => {
                errors.push(loaded.error("redis.url", format!("invalid Redis URL: {message}")));
                None
            }
        }
    });
    let mut registry = RateLimits::new(clock, redis, previous);
    let mut seen = HashMap::new();
    let server: Vec<Arc<Limit>> = loaded
        .config
        .server
        .rate_limit
        .iter()
        .filter_map(|limit| build(&registry, "server", limit, &mut seen))
        .collect();
    registry.server = server;
    for (name, upstream) in &loaded.config.upstreams {
        let scope = format!("upstream:{name}");
        let mut seen = HashMap::new();
        let limits: Vec<Arc<Limit>> = upstream
            .rate_limit
            .iter()
            .filter_map(|limit| build(&registry, &scope, limit, &mut seen))
            .collect();
        if !limits.is_empty() {
            registry.upstreams.insert(name.clone(), limits);
        }
    }
    registry
}

/// Adds the server's and the route's limits to the route's policies (creating them when the
/// route has none).
pub(crate) fn attach(
    policies: Option<Box<RoutePolicies>>,
    route: &FileRoute,
    registry: &RateLimits,
) -> Option<Box<RoutePolicies>> {
    let own = route
        .policies
        .as_ref()
        .map_or(&[][..], |p| p.rate_limit.as_slice());
    let upstream = route
        .upstream
        .as_ref()
        .and_then(|name| registry.upstreams.get(name))
        .map_or(&[][..], Vec::as_slice);
    if own.is_empty() && registry.server.is_empty() && upstream.is_empty() {
        return policies;
    }
    let scope = format!("route:{}", route.name);
    let mut seen = HashMap::new();
    let mut limits: Vec<Arc<Limit>> = registry.server.clone();
    limits.extend(upstream.iter().cloned());
    limits.extend(
        own.iter()
            .filter_map(|limit| build(registry, &scope, limit, &mut seen)),
    );
    // Names in the RateLimit fields must be unique on a route.
    let mut names: HashMap<Arc<str>, usize> = HashMap::new();
    let mut items = Vec::new();
    for limit in &mut limits {
        let n = names.entry(Arc::clone(&limit.name)).or_insert(0);
        *n += 1;
        if *n > 1 {
            let mut renamed = clone_limit(limit);
            renamed.name = Arc::from(format!("{}-{n}", limit.name));
            *limit = Arc::new(renamed);
        }
        items.push(limit.policy_item());
    }
    let policy_header = HeaderValue::try_from(items.join(", ")).ok();
    let (after_auth, before_auth) = limits
        .into_iter()
        .partition(|limit: &Arc<Limit>| limit.key.needs_identity());
    let mut policies = policies.unwrap_or_default();
    policies.rate_limit = Some(RateLimitSet {
        route: Arc::from(route.name.as_str()),
        before_auth,
        after_auth,
        policy_header,
    });
    Some(policies)
}

fn clone_limit(limit: &Limit) -> Limit {
    Limit {
        name: Arc::clone(&limit.name),
        key: limit.key.clone(),
        kind: limit.kind,
        store: limit.store.clone(),
        on_store_error: limit.on_store_error,
        headers: limit.headers,
        detail: Arc::clone(&limit.detail),
        identity: Arc::clone(&limit.identity),
        clock: Arc::clone(&limit.clock),
    }
}

/// One limit; `None` only for entries validation already reported.
fn build(
    registry: &RateLimits,
    scope: &str,
    limit: &FileRateLimit,
    seen: &mut HashMap<String, usize>,
) -> Option<Arc<Limit>> {
    let key = KeySpec::parse(&limit.key).ok()?;
    let kind = match parse_rate(&limit.rate).ok()? {
        ParsedRate::Rate { count, period } => {
            LimitKind::Rate(Gcra::new(count, period, limit.burst.unwrap_or(count))?)
        }
        ParsedRate::Day(count) => LimitKind::Quota {
            count,
            calendar: Calendar::Day,
        },
        ParsedRate::Month(count) => LimitKind::Quota {
            count,
            calendar: Calendar::Month,
        },
    };
    let burst = limit.burst.map_or_else(String::new, |b| b.to_string());
    let store_name = match limit.store {
        FileLimitStore::Local => "local",
        FileLimitStore::Redis => "redis",
        FileLimitStore::Hybrid => "hybrid",
    };
    let base = format!(
        "{scope}|{}|{}|{burst}|{store_name}",
        limit.key.trim(),
        limit.rate.trim()
    );
    let n = seen.entry(base.clone()).or_insert(0);
    *n += 1;
    let identity: Arc<str> = Arc::from(format!("{base}#{n}"));
    let store = match limit.store {
        FileLimitStore::Local => LimitStore::Local(
            registry.local_store(&identity, limit.max_keys.unwrap_or(DEFAULT_MAX_KEYS)),
        ),
        FileLimitStore::Redis => LimitStore::Redis(Arc::clone(registry.redis.as_ref()?)),
        FileLimitStore::Hybrid => match kind {
            LimitKind::Rate(gcra) => LimitStore::Hybrid(registry.hybrid_store(
                &identity,
                registry.redis.as_ref()?,
                gcra,
                limit.max_keys.unwrap_or(DEFAULT_MAX_KEYS),
            )),
            // Quotas always count in Redis.
            LimitKind::Quota { .. } => LimitStore::Redis(Arc::clone(registry.redis.as_ref()?)),
        },
    };
    Some(Arc::new(Limit {
        name: Arc::from(limit.name.as_deref().unwrap_or(limit.key.trim())),
        key,
        kind,
        store,
        on_store_error: match limit.on_store_error {
            FileOnStoreError::Allow => OnStoreError::Allow,
            FileOnStoreError::Deny => OnStoreError::Deny,
        },
        headers: limit.headers.unwrap_or(true),
        detail: Arc::from(format!(
            "limit {} by {}",
            limit.rate.trim(),
            limit.key.trim()
        )),
        identity,
        clock: Arc::clone(&registry.clock),
    }))
}
