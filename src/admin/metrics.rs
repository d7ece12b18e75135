//! `GET /metrics`: the gateway's event counters plus series read from live state at scrape time.
//!
//! Each scrape builds a fresh registry: the long-lived families are registered by reference
//! (their counts are shared), and state gauges (config, listeners, targets, breakers, limits, TLS)
//! are filled from what the gateway holds right now. Scrapes are rare; requests never pay for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::gateway::RunningGateway;
use crate::observe::metrics::Format;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerResultLabel {
    listener: Arc<str>,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerVersionLabel {
    listener: Arc<str>,
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabel {
    upstream: Arc<str>,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabel {
    upstream: Arc<str>,
    state: &'static str,
}

/// The full exposition in `format`.
pub async fn render(gateway: &RunningGateway, format: Format) -> String {
    let runtime = gateway.runtime();
    let mut registry = Registry::default();
    runtime.metrics.register(&mut registry);
    config_series(&mut registry, gateway);
    listener_series(
        &mut registry,
        &gateway.open_connections().await,
        &gateway.tls_stats_all().await,
    );
    upstream_series(&mut registry, &runtime);
    if let Some(stats) = runtime.rate_limits.redis_stats() {
        rate_limit_series(&mut registry, &stats);
    }
    format.encode(&registry)
}

fn gauge(value: i64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value);
    gauge
}

fn config_series(registry: &mut Registry, gateway: &RunningGateway) {
    let status = gateway.status();
    let info: Family<VersionLabel, Gauge> = Family::default();
    info.get_or_create(&VersionLabel {
        version: status.version.clone(),
    })
    .set(1);
    registry.register(
        "gantry_config_info",
        "The config in force (version = content fingerprint).",
        info,
    );
    let loaded: Gauge<f64, AtomicU64> = Gauge::default();
    loaded.set(status.loaded_at_unix);
    registry.register(
        "gantry_config_loaded_timestamp_seconds",
        "When the config in force was loaded.",
        loaded,
    );
    let reloads: Family<ResultLabel, Counter> = Family::default();
    reloads
        .get_or_create(&ResultLabel { result: "success" })
        .inc_by(status.reloads_succeeded);
    reloads
        .get_or_create(&ResultLabel { result: "failure" })
        .inc_by(status.reloads_failed);
    registry.register(
        "gantry_config_reloads",
        "Config reloads by result.",
        reloads,
    );
    registry.register(
        "gantry_config_last_reload_successful",
        "Whether the last reload was applied (1) or rejected (0).",
        gauge(i64::from(status.last_error.is_none())),
    );
    registry.register(
        "gantry_draining",
        "Whether the gateway is shutting down.",
        gauge(i64::from(gateway.is_draining())),
    );
}

/// Open connections per listener; TLS handshake outcomes and certificate reloads per TLS listener
/// (counted since the listener's accept loop started: a reload that changes the listener starts
/// it from zero).
fn listener_series(
    registry: &mut Registry,
    open: &[(Arc<str>, usize)],
    tls: &[(Arc<str>, crate::server::tls::TlsStats)],
) {
    let connections: Family<ListenerLabel, Gauge> = Family::default();
    for (name, count) in open {
        connections
            .get_or_create(&ListenerLabel {
                listener: Arc::clone(name),
            })
            .set(i64::try_from(*count).unwrap_or(i64::MAX));
    }
    registry.register(
        "gantry_connections_open",
        "Open client connections by listener.",
        connections,
    );
    if tls.is_empty() {
        return;
    }
    let handshakes: Family<ListenerResultLabel, Counter> = Family::default();
    let by_version: Family<ListenerVersionLabel, Counter> = Family::default();
    let reloads: Family<ListenerLabel, Counter> = Family::default();
    let rejections: Family<ListenerLabel, Counter> = Family::default();
    for (name, stats) in tls {
        for (result, count) in [
            ("completed", stats.completed),
            ("failed", stats.failed),
            ("timed_out", stats.timed_out),
            ("plain_http", stats.plain_http),
        ] {
            handshakes
                .get_or_create(&ListenerResultLabel {
                    listener: Arc::clone(name),
                    result,
                })
                .inc_by(count);
        }
        for (version, count) in [
            ("1.2", stats.completed_tls12),
            ("1.3", stats.completed_tls13),
        ] {
            by_version
                .get_or_create(&ListenerVersionLabel {
                    listener: Arc::clone(name),
                    version,
                })
                .inc_by(count);
        }
        let label = ListenerLabel {
            listener: Arc::clone(name),
        };
        reloads
            .get_or_create(&label)
            .inc_by(stats.certificates_reloaded);
        rejections
            .get_or_create(&label)
            .inc_by(stats.certificates_rejected);
    }
    registry.register(
        "gantry_tls_handshakes",
        "TLS connections by handshake outcome.",
        handshakes,
    );
    registry.register(
        "gantry_tls_handshakes_by_version",
        "Completed TLS handshakes by protocol version.",
        by_version,
    );
    registry.register(
        "gantry_tls_certificate_reloads",
        "Changed certificate files loaded and swapped in.",
        reloads,
    );
    registry.register(
        "gantry_tls_certificate_rejections",
        "Changed certificate files that did not load (the previous certificate stayed).",
        rejections,
    );
}

fn upstream_series(registry: &mut Registry, runtime: &crate::runtime::Runtime) {
    let in_flight: Family<TargetLabel, Gauge> = Family::default();
    let healthy: Family<TargetLabel, Gauge> = Family::default();
    let ejected: Family<TargetLabel, Gauge> = Family::default();
    let breaker: Family<BreakerLabel, Gauge> = Family::default();
    let limit: Family<UpstreamLabel, Gauge> = Family::default();
    for cluster in runtime.upstreams.values() {
        let state = &*cluster.resilience.state;
        for target in cluster.targets.load().iter() {
            let label = TargetLabel {
                upstream: Arc::clone(&cluster.name),
                target: target.authority.clone(),
            };
            in_flight
                .get_or_create(&label)
                .set(i64::try_from(target.in_flight.load(Ordering::Relaxed)).unwrap_or(0));
            healthy
                .get_or_create(&label)
                .set(i64::from(target.health.is_healthy()));
            ejected
                .get_or_create(&label)
                .set(i64::from(target.health.ejected_until().is_some()));
        }
        if cluster.resilience.breaker.is_some() {
            let phase = state.breaker.phase().as_str();
            for name in ["closed", "open", "half_open"] {
                breaker
                    .get_or_create(&BreakerLabel {
                        upstream: Arc::clone(&cluster.name),
                        state: name,
                    })
                    .set(i64::from(phase == name));
            }
        }
        if let Some(shed) = &cluster.resilience.shed {
            limit
                .get_or_create(&UpstreamLabel {
                    upstream: Arc::clone(&cluster.name),
                })
                .set(i64::from(state.shedder.limit(shed)));
        }
    }
    registry.register(
        "gantry_upstream_requests_in_flight",
        "Requests in flight per target.",
        in_flight,
    );
    registry.register(
        "gantry_upstream_target_healthy",
        "Whether active health checks consider the target healthy (1 when unchecked).",
        healthy,
    );
    registry.register(
        "gantry_upstream_target_ejected",
        "Whether passive outlier detection has ejected the target.",
        ejected,
    );
    registry.register(
        "gantry_upstream_circuit_breaker_state",
        "Circuit breaker state by upstream (1 for the current state).",
        breaker,
    );
    registry.register(
        "gantry_upstream_concurrency_limit",
        "The load shedder's current concurrency limit (adaptive or fixed), by upstream.",
        limit,
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: &'static str,
}

/// The Redis store's counters, read at scrape time (only when a Redis store is configured).
fn rate_limit_series(
    registry: &mut Registry,
    stats: &crate::policy::rate_limit::redis::RedisStats,
) {
    let counter = |value: u64| {
        let counter: Counter = Counter::default();
        counter.inc_by(value);
        counter
    };
    registry.register(
        "gantry_rate_limit_redis_calls",
        "Calls sent to Redis by rate limits (checks, refunds, reconciliations).",
        counter(stats.calls),
    );
    registry.register(
        "gantry_rate_limit_redis_failures",
        "Redis calls that failed or timed out.",
        counter(stats.failures),
    );
    registry.register(
        "gantry_rate_limit_redis_skipped",
        "Checks answered without Redis because its breaker was open.",
        counter(stats.skipped),
    );
    registry.register(
        "gantry_rate_limit_redis_breaker_open",
        "Whether the breaker around Redis is open.",
        gauge(i64::from(stats.breaker_open)),
    );
    let decisions: Family<DecisionLabel, Counter> = Family::default();
    decisions
        .get_or_create(&DecisionLabel { decision: "allow" })
        .inc_by(stats.allowed_on_error);
    decisions
        .get_or_create(&DecisionLabel { decision: "deny" })
        .inc_by(stats.denied_on_error);
    registry.register(
        "gantry_rate_limit_store_error_decisions",
        "Requests decided by on_store_error because Redis could not answer.",
        decisions,
    );
}
