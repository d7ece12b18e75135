//! An upstream cluster: named targets, how to pick one, and how to talk to them.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::balance::{Balancer, TargetLoad};
use super::breaker::{Breaker, BreakerSettings};
use super::budget::RetryBudget;
use super::client::ConnectionPool;
use super::clock::Clock;
use super::health::{ActiveHealthSettings, TargetHealth};
use super::outlier::OutlierSettings;
use super::retry::RetryPolicy;
use super::shed::{ShedSettings, Shedder};

/// Wire protocol to the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 keep-alive.
    Http1,
    /// HTTP/2 prior knowledge (also for gRPC).
    Http2,
}

/// What the upstream sees as Host / `:authority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's.
    Preserve,
    /// The target's `host:port`.
    Target,
}

/// The request key consistent hashing uses.
#[derive(Debug, Clone)]
pub enum HashKey {
    /// No key: the balancer needs none.
    None,
    /// A request header.
    Header(HeaderName),
    /// A cookie by name.
    Cookie(String),
    /// The derived client IP.
    ClientIp,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Until response headers, all tries together.
    pub request: Duration,
    /// Until response headers, one try.
    pub per_try: Duration,
    /// Longest pause in a body, either direction.
    pub idle: Duration,
}

/// One target address with its pool and load.
pub struct Target {
    /// `host:port`.
    pub authority: String,
    /// `host:port` as a header value, for `host_header: target`.
    pub authority_header: HeaderValue,
    /// Relative weight.
    pub weight: u32,
    /// Requests in flight right now.
    pub in_flight: AtomicUsize,
    /// Keep-alive connections.
    pub pool: ConnectionPool,
    /// Active and passive health; kept across reloads under (upstream, target).
    pub health: Arc<TargetHealth>,
    /// `authority` as a shared metric label, so counting a try allocates nothing.
    pub metric_label: Arc<str>,
    /// This target's try series, found once.
    pub try_metrics: crate::observe::metrics::TryMetricCache,
}

impl Target {
    /// A target at `authority` (`host:port`) with an empty pool; `None` when `authority` is not a
    /// valid header value.
    pub fn new(
        authority: &str,
        weight: u32,
        pool: &super::client::PoolSettings,
        health: Arc<TargetHealth>,
    ) -> Option<Self> {
        Some(Self {
            authority_header: HeaderValue::from_str(authority).ok()?,
            authority: authority.to_owned(),
            weight: weight.max(1),
            in_flight: AtomicUsize::new(0),
            pool: ConnectionPool::new(authority.to_owned(), pool.clone()),
            health,
            metric_label: Arc::from(authority),
            try_metrics: crate::observe::metrics::TryMetricCache::default(),
        })
    }
}

impl TargetLoad for Arc<Target> {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    fn identity(&self) -> &str {
        &self.authority
    }
}

/// A named set of targets with a balancer.
pub struct UpstreamCluster {
    /// Name from the config.
    pub name: Arc<str>,
    /// The targets: fixed for static upstreams, replaced whole by DNS discovery.
    pub targets: ArcSwap<Vec<Arc<Target>>>,
    /// How a target is chosen.
    pub balancer: Balancer,
    /// What consistent hashing hashes.
    pub hash_key: HashKey,
    /// HTTP/1.1 or HTTP/2 to the targets.
    pub protocol: UpstreamProtocol,
    /// Timeouts.
    pub timeouts: UpstreamTimeouts,
    /// Host header policy.
    pub host_header: HostHeader,
    /// Breaker, retries, health checks and load shedding.
    pub resilience: ClusterResilience,
}

/// The resilience settings of one upstream (this snapshot's) and its state (kept across reloads).
#[derive(Debug)]
pub struct ClusterResilience {
    /// Circuit breaker, when configured.
    pub breaker: Option<BreakerSettings>,
    /// Retries (one attempt when not configured).
    pub retry: RetryPolicy,
    /// Passive outlier ejection, when configured.
    pub outlier: Option<OutlierSettings>,
    /// Active health checks, when configured.
    pub active: Option<ActiveHealthSettings>,
    /// Concurrency limit, when configured.
    pub shed: Option<ShedSettings>,
    /// DNS discovery of the targets, when configured.
    pub discovery: Option<super::discovery::DnsDiscovery>,
    /// State shared by every snapshot that has this upstream.
    pub state: Arc<ClusterState>,
}

/// Long-lived state of one upstream, keyed by its name across reloads.
#[derive(Debug)]
pub struct ClusterState {
    /// The time source of everything below.
    pub clock: Clock,
    /// Breaker state.
    pub breaker: Breaker,
    /// Recent requests and retries.
    pub budget: RetryBudget,
    /// In-flight count, queue and adaptive limit.
    pub shedder: Arc<Shedder>,
    /// Whether DNS discovery has made its first lookup (answered or failed).
    pub discovery_settled: AtomicBool,
}

impl ClusterState {
    /// Fresh state for upstream `name`.
    pub fn new(name: &str, clock: Clock) -> Self {
        Self {
            breaker: Breaker::new(name, clock.clone()),
            budget: RetryBudget::new(clock.clone()),
            shedder: Arc::new(Shedder::new(clock.clone())),
            discovery_settled: AtomicBool::new(false),
            clock,
        }
    }
}

/// The outcome of choosing a target.
pub enum Pick {
    /// This one.
    Target(Arc<Target>),
    /// The upstream has no targets at all (drained).
    NoTargets,
    /// Every target is unhealthy or ejected.
    NoneAvailable,
}

impl UpstreamCluster {
    /// Whether picking a target reads a request header (consistent hashing on a header).
    pub fn hashes_on_a_header(&self) -> bool {
        matches!(self.hash_key, HashKey::Header(_))
    }

    /// Picks an available target for a request with these headers from this client, avoiding
    /// the targets in `tried` when another is available (a retry goes elsewhere).
    pub fn pick(&self, headers: &HeaderMap, client_ip: IpAddr, tried: &[Arc<Target>]) -> Pick {
        let ip_text;
        let key: Option<&[u8]> = match &self.hash_key {
            HashKey::None => None,
            HashKey::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
            HashKey::Cookie(name) => cookie_value(headers, name),
            HashKey::ClientIp => {
                ip_text = client_ip.to_string();
                Some(ip_text.as_bytes())
            }
        };
        let targets = self.targets.load();
        if targets.is_empty() {
            return Pick::NoTargets;
        }
        // Fast path: every target in rotation and nothing to avoid; no allocation.
        if tried.is_empty() && targets.iter().all(|t| t.health.is_available()) {
            return match self.balancer.pick(&targets, key) {
                Some(index) => targets
                    .get(index)
                    .cloned()
                    .map_or(Pick::NoneAvailable, Pick::Target),
                None => Pick::NoneAvailable,
            };
        }
        let available: Vec<Arc<Target>> = targets
            .iter()
            .filter(|t| t.health.is_available())
            .cloned()
            .collect();
        let fresh: Vec<Arc<Target>> = available
            .iter()
            .filter(|t| !tried.iter().any(|done| Arc::ptr_eq(done, t)))
            .cloned()
            .collect();
        // Only targets already tried are left: trying one again beats failing.
        let candidates = if fresh.is_empty() { available } else { fresh };
        match self.balancer.pick(&candidates, key) {
            Some(index) => candidates
                .get(index)
                .cloned()
                .map_or(Pick::NoneAvailable, Pick::Target),
            None => Pick::NoneAvailable,
        }
    }
}

impl UpstreamCluster {
    /// Whether the targets are known: always for static ones; for DNS discovery, once the first
    /// lookup was made (or a reload brought a list along).
    pub fn discovery_settled(&self) -> bool {
        self.resilience.discovery.is_none()
            || !self.targets.load().is_empty()
            || self
                .resilience
                .state
                .discovery_settled
                .load(Ordering::Relaxed)
    }

    /// What `GET /admin/upstreams` shows of this upstream: per target health, ejection and load;
    /// the breaker, retry budget and concurrency limit. Reads atomics and short locks only.
    pub fn admin_view(&self) -> serde_json::Value {
        let state = &*self.resilience.state;
        let now = state.clock.now();
        let unix_at = |at: std::time::Instant| {
            let ahead = at.saturating_duration_since(now);
            std::time::SystemTime::now()
                .checked_add(ahead)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| (d.as_millis() as f64) / 1000.0)
        };
        let breaker = match &self.resilience.breaker {
            None => "none",
            Some(_) => state.breaker.phase().as_str(),
        };
        let targets: Vec<serde_json::Value> = self
            .targets
            .load()
            .iter()
            .map(|target| {
                let health = &target.health;
                let ejected_until = health.ejected_until();
                serde_json::json!({
                    "target": target.authority,
                    "weight": target.weight,
                    "in_flight": target.in_flight.load(Ordering::Relaxed),
                    "idle_connections": target.pool.idle_count(),
                    "health": match (&self.resilience.active, health.is_healthy()) {
                        (None, _) => "unchecked",
                        (Some(_), true) => "healthy",
                        (Some(_), false) => "unhealthy",
                    },
                    "available": health.is_available(),
                    "ejected": ejected_until.is_some(),
                    "ejected_until": ejected_until.and_then(unix_at),
                    "ejected_remaining_ms": ejected_until
                        .map(|at| at.saturating_duration_since(now).as_millis() as u64),
                    "consecutive_failures": health.consecutive_failures(),
                    "breaker": breaker,
                })
            })
            .collect();
        let (requests, retries) = state.budget.totals();
        let shedding = self.resilience.shed.as_ref().map(|shed| {
            serde_json::json!({
                "limit": state.shedder.limit(shed),
                "max_concurrent_requests": shed.max_concurrent,
                "adaptive": shed.adaptive.is_some(),
                "in_flight": state.shedder.in_flight(),
                "queued": state.shedder.queued(),
            })
        });
        serde_json::json!({
            "name": &*self.name,
            "protocol": match self.protocol {
                UpstreamProtocol::Http1 => "http1",
                UpstreamProtocol::Http2 => "h2",
            },
            "targets": targets,
            "circuit_breaker": {
                "state": breaker,
                "open_until": state.breaker.open_until().and_then(unix_at),
            },
            "retry_budget": { "requests": requests, "retries": retries },
            "load_shedding": shedding,
            "discovery": self.resilience.discovery.as_ref().map(|d| d.name.clone()),
        })
    }
}

/// The value of cookie `name` in any `Cookie` header.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// Counts a request in flight on a target for as long as it lives.
pub struct InFlightGuard(Arc<Target>);

impl InFlightGuard {
    /// Starts counting.
    pub fn new(target: Arc<Target>) -> Self {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(target)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_are_found_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; session=abc ; b=2"),
        );
        assert_eq!(cookie_value(&headers, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&headers, "missing"), None);
    }
}
