//! File model → runtime model for the resilience keys, with their defaults; and the carry-over of
//! long-lived state (breaker, budget, concurrency, target health) from the previous snapshot,
//! keyed by upstream name (and target `host:port`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::file::{FileRoute, FileUpstream};
use super::file_resilience::{FileRetryCondition, FileRetryMethods, FileRetryOn};
use super::validate_resilience::has_condition;
use crate::handler::forward::Fallback;
use crate::upstream::breaker::BreakerSettings;
use crate::upstream::client::PoolSettings;
use crate::upstream::clock::Clock;
use crate::upstream::cluster::{ClusterResilience, ClusterState, UpstreamCluster};
use crate::upstream::discovery::DnsDiscovery;
use crate::upstream::health::{ActiveHealthSettings, TargetHealth};
use crate::upstream::outlier::OutlierSettings;
use crate::upstream::retry::RetryPolicy;
use crate::upstream::shed::{AdaptiveSettings, ShedSettings};

/// Defaults of the resilience keys; documented in the README.
pub(crate) mod defaults {
    use std::time::Duration;

    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    pub const HEALTHY_AFTER: u32 = 2;
    pub const UNHEALTHY_AFTER: u32 = 3;
    pub const CONSECUTIVE_FAILURES: u32 = 5;
    pub const EJECT_FOR: Duration = Duration::from_secs(30);
    pub const MAX_EJECTED_PERCENT: u32 = 50;
    pub const FAILURE_RATIO: f64 = 0.5;
    pub const MIN_REQUESTS: u32 = 20;
    pub const BREAKER_WINDOW: Duration = Duration::from_secs(10);
    pub const OPEN_FOR: Duration = Duration::from_secs(30);
    pub const HALF_OPEN_REQUESTS: u32 = 3;
    pub const ATTEMPTS: u32 = 3;
    pub const RETRY_STATUSES: [u16; 3] = [502, 503, 504];
    pub const BACKOFF_BASE: Duration = Duration::from_millis(25);
    pub const BACKOFF_MAX: Duration = Duration::from_millis(250);
    pub const BUDGET_PERCENT: f64 = 20.0;
    pub const MIN_RETRIES_PER_SECOND: u32 = 3;
    pub const QUEUE_TIMEOUT: Duration = Duration::from_millis(50);
    pub const DNS_REFRESH: Duration = Duration::from_secs(30);
}

fn or(value: Option<super::units::Duration>, default: Duration) -> Duration {
    value.map_or(default, |d| d.0)
}

/// The resilience settings of upstream `name`, with the state of the previous snapshot's
/// upstream of the same name (fresh state when there is none).
pub(super) fn resilience(
    name: &str,
    upstream: &FileUpstream,
    previous: Option<&UpstreamCluster>,
    pool: &PoolSettings,
) -> ClusterResilience {
    let state = previous.map_or_else(
        || Arc::new(ClusterState::new(name, Clock::System)),
        |p| Arc::clone(&p.resilience.state),
    );
    let health = upstream.health_check.as_ref();
    let active = health
        .and_then(|h| h.active.as_ref())
        .map(|a| ActiveHealthSettings {
            path: a.path.clone(),
            interval: or(a.interval, defaults::HEALTH_INTERVAL),
            timeout: or(a.timeout, defaults::HEALTH_TIMEOUT),
            healthy_after: a.healthy_after.unwrap_or(defaults::HEALTHY_AFTER),
            unhealthy_after: a.unhealthy_after.unwrap_or(defaults::UNHEALTHY_AFTER),
        });
    let outlier = health
        .and_then(|h| h.passive.as_ref())
        .map(|p| OutlierSettings {
            consecutive_failures: p
                .consecutive_failures
                .unwrap_or(defaults::CONSECUTIVE_FAILURES),
            eject_for: or(p.eject_for, defaults::EJECT_FOR),
            max_ejected_percent: p
                .max_ejected_percent
                .unwrap_or(defaults::MAX_EJECTED_PERCENT),
        });
    let breaker = upstream.circuit_breaker.as_ref().map(|b| BreakerSettings {
        failure_ratio: b.failure_ratio.unwrap_or(defaults::FAILURE_RATIO),
        min_requests: b.min_requests.unwrap_or(defaults::MIN_REQUESTS),
        window: or(b.window, defaults::BREAKER_WINDOW),
        open_for: or(b.open_for, defaults::OPEN_FOR),
        half_open_requests: b.half_open_requests.unwrap_or(defaults::HALF_OPEN_REQUESTS),
    });
    let retry = upstream
        .retries
        .as_ref()
        .map_or_else(RetryPolicy::none, |r| {
            let default_on: Vec<FileRetryOn> =
                [FileRetryCondition::ConnectError, FileRetryCondition::Reset]
                    .into_iter()
                    .map(FileRetryOn::Condition)
                    .chain(
                        defaults::RETRY_STATUSES
                            .into_iter()
                            .map(FileRetryOn::Status),
                    )
                    .collect();
            let on = r.on.as_deref().unwrap_or(&default_on);
            RetryPolicy {
                attempts: r.attempts.unwrap_or(defaults::ATTEMPTS),
                on_connect_error: has_condition(on, FileRetryCondition::ConnectError),
                on_reset: has_condition(on, FileRetryCondition::Reset),
                on_timeout: has_condition(on, FileRetryCondition::Timeout),
                on_statuses: on
                    .iter()
                    .filter_map(|o| match o {
                        FileRetryOn::Status(code) => Some(*code),
                        FileRetryOn::Condition(_) => None,
                    })
                    .collect(),
                all_methods: r.methods == FileRetryMethods::All,
                backoff_base: or(r.backoff.base, defaults::BACKOFF_BASE),
                backoff_max: or(r.backoff.max, defaults::BACKOFF_MAX),
                budget_ratio: r.budget.map_or(defaults::BUDGET_PERCENT, |p| p.0) / 100.0,
                min_retries_per_second: r
                    .min_retries_per_second
                    .unwrap_or(defaults::MIN_RETRIES_PER_SECOND),
            }
        });
    let shed = upstream.load_shedding.as_ref().map(|s| {
        let max = s.max_concurrent_requests.max(1);
        ShedSettings {
            max_concurrent: max,
            queue: s.queue.unwrap_or(0),
            queue_timeout: or(s.queue_timeout, defaults::QUEUE_TIMEOUT),
            adaptive: s.adaptive.as_ref().map(|a| {
                let min_limit = a.min_limit.unwrap_or(1).clamp(1, max);
                AdaptiveSettings {
                    min_limit,
                    initial_limit: a.initial_limit.unwrap_or((max / 4).max(min_limit)),
                }
            }),
        }
    });
    let discovery = upstream.discovery.as_ref().map(|d| DnsDiscovery {
        name: d.dns.name.clone(),
        port: d.dns.port,
        refresh: or(d.dns.refresh, defaults::DNS_REFRESH),
        nameservers: d
            .dns
            .nameservers
            .iter()
            .filter_map(|server| parse_nameserver(server))
            .collect(),
        pool: pool.clone(),
    });
    ClusterResilience {
        discovery,
        breaker,
        retry,
        outlier,
        active,
        shed,
        state,
    }
}

/// The health state of target `authority` of upstream `name`: the previous snapshot's when it had
/// the same target, else fresh.
pub(super) fn target_health(
    name: &str,
    authority: &str,
    previous: Option<&UpstreamCluster>,
    clock: &Clock,
) -> Arc<TargetHealth> {
    previous
        .and_then(|p| {
            p.targets
                .load()
                .iter()
                .find(|t| t.authority == authority)
                .cloned()
        })
        .map_or_else(
            || Arc::new(TargetHealth::new(name, authority, clock.clone())),
            |t| Arc::clone(&t.health),
        )
}

/// `IP` (port 53) or `IP:PORT`.
pub(super) fn parse_nameserver(text: &str) -> Option<std::net::SocketAddr> {
    text.parse().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| (ip, 53).into())
    })
}

/// The starting targets of a discovered upstream: the previous snapshot's current list when it
/// asked DNS the same question, else none until the first answer. `None` for static upstreams.
pub(super) fn discovered_targets(
    previous: Option<&UpstreamCluster>,
    discovery: Option<&DnsDiscovery>,
) -> Option<Vec<Arc<crate::upstream::cluster::Target>>> {
    let discovery = discovery?;
    let carried = previous.filter(|p| {
        p.resilience
            .discovery
            .as_ref()
            .is_some_and(|d| d.same_source(discovery))
    });
    Some(carried.map_or_else(Vec::new, |p| p.targets.load().as_ref().clone()))
}

/// The compiled `fallback` of a route (validated, so nothing fails here).
pub(super) fn fallback(route: &FileRoute) -> Option<Arc<Fallback>> {
    let fallback = route.fallback.as_ref()?;
    let mut headers = HeaderMap::new();
    for (name, value) in &fallback.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    Some(Arc::new(Fallback {
        status: fallback
            .status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::OK),
        headers,
        body: Bytes::from(fallback.body.clone()),
    }))
}
