//! File model → runtime model: routers, clusters, settings with their defaults filled in.
//!
//! Runs after `validate`, so most conversions cannot fail here; those that still can (the router's
//! own conflict checks) are reported with the same file:line:col as every other config error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

use super::file::{
    FileConfig, FileHostHeader, FileLoadBalancing, FileLogFormat, FileProtocol, FileUpstream,
    FileUpstreamProtocol, FileValueMatch,
};
use super::{ConfigError, ConfigErrors, LoadedFile};
use crate::observe::access_log::LogFormat;
use crate::router::{PathPattern, Rewrite, RouteSpec, Router, ValueCondition};
use crate::runtime::{
    AdminSettings, GatewayConfig, Limits, ListenerSettings, Route, RouteSummary, Runtime,
    ServerSettings,
};
use crate::upstream::balance::Balancer;
use crate::upstream::client::{ConnectionPool, PoolSettings};
use crate::upstream::cluster::{
    HashKey, HostHeader, Target, UpstreamCluster, UpstreamProtocol, UpstreamTimeouts,
};

/// Defaults for keys a user may leave out; written once, documented in the README.
pub(crate) mod defaults {
    use std::time::Duration;

    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS);
    pub const MAX_HEADER_BYTES: u64 = 32 * 1024;
    pub const MAX_URI_BYTES: u64 = 8 * 1024;
    pub const MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
    pub const HEADER_READ_TIMEOUT_SECS: u64 = 10;
    pub const IDLE_TIMEOUT_SECS: u64 = 60;
    pub const MAX_CONNECTIONS: usize = 20_000;
    pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
    pub const H2_MAX_PENDING_RESET_STREAMS: usize = 50;
    pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
    pub const SHUTDOWN_GRACE_SECS: u64 = 30;
    pub const CONNECT_TIMEOUT_SECS: u64 = 1;
    pub const REQUEST_TIMEOUT_SECS: u64 = 15;
    pub const UPSTREAM_IDLE_SECS: u64 = 60;
    pub const MAX_IDLE_PER_TARGET: usize = 64;
    pub const MAX_CONNECTIONS_PER_TARGET: usize = 1024;
    pub const VIA_NAME: &str = "gantry";
    pub const REQUEST_ID_HEADER: &str = "x-request-id";
}

/// Reads, parses, validates and compiles a config file.
pub fn load_file(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
    reload_file(path, None)
}

/// Like [`load_file`], carrying long-lived state (pooled connections, in-flight counts) over from
/// `previous` for targets that still exist with the same settings.
pub fn reload_file(path: &Path, previous: Option<&Runtime>) -> Result<GatewayConfig, ConfigErrors> {
    let loaded = super::parse_file(path)?;
    let compiled = validate_and_compile(&loaded, previous);
    // Freeing the located YAML tree of a large file takes milliseconds nobody needs to wait for.
    drop_in_background(loaded);
    let mut config = compiled?;
    config.source_path = Some(path.to_path_buf());
    Ok(config)
}

/// Parses, validates and compiles config text, with `${VAR}` from the process environment.
pub fn load_str(name: &str, text: &str) -> Result<GatewayConfig, ConfigErrors> {
    load_str_with_env(name, text, &|var| std::env::var(var).ok())
}

/// Parses, validates and compiles config text, with `${VAR}` from `env`.
pub fn load_str_with_env(
    name: &str,
    text: &str,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<GatewayConfig, ConfigErrors> {
    let loaded = super::parse_str(name, text, env)?;
    validate_and_compile(&loaded, None)
}

/// Validates and compiles at the same time, on two threads: both only read the parsed file, and
/// for a large config each takes tens of milliseconds. Validation errors win; a compile result
/// (or a compile failure, even a panic) of an invalid file is thrown away.
fn validate_and_compile(
    loaded: &LoadedFile,
    previous: Option<&Runtime>,
) -> Result<GatewayConfig, ConfigErrors> {
    std::thread::scope(|scope| {
        let compiling = scope.spawn(move || compile_with(loaded, previous));
        let validated = super::validate(loaded);
        let compiled = compiling.join();
        validated?;
        compiled.unwrap_or_else(|_| {
            Err(ConfigErrors(vec![loaded.error(
                "",
                "the config compiler failed on a valid file (a bug)",
            )]))
        })
    })
}

/// Drops `value` on a short-lived thread. When no thread can be started, `spawn` drops the
/// closure, and `value` with it, right here.
fn drop_in_background<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("gantry-drop".to_owned())
        .spawn(move || drop(value));
}

/// Turns a validated file into the runtime model.
pub fn compile(loaded: &LoadedFile) -> Result<GatewayConfig, ConfigErrors> {
    compile_with(loaded, None)
}

/// Turns a validated file into the runtime model, reusing `previous`'s targets where unchanged.
pub fn compile_with(
    loaded: &LoadedFile,
    previous: Option<&Runtime>,
) -> Result<GatewayConfig, ConfigErrors> {
    let file = &loaded.config;
    let mut errors = Vec::new();
    let server = server_settings(loaded, &mut errors);
    let listeners = listener_settings(loaded, &mut errors);
    let upstreams: BTreeMap<String, Arc<UpstreamCluster>> = file
        .upstreams
        .iter()
        .map(|(name, upstream)| {
            let previous = previous.and_then(|p| p.upstreams.get(name)).map(|c| &**c);
            let cluster = cluster(loaded, name, upstream, &server, previous, &mut errors);
            (name.clone(), Arc::new(cluster))
        })
        .collect();
    let security = Arc::new(super::compile_security::security(
        loaded,
        previous.map(|p| &*p.security),
        &mut errors,
    ));
    // Carried over so that counters keep counting across reloads.
    let metrics = previous.map_or_else(
        || Arc::new(crate::observe::metrics::Metrics::new()),
        |p| Arc::clone(&p.metrics),
    );
    let rate_limits =
        super::compile_rate_limit::registry(loaded, previous.map(|p| &*p.rate_limits), &mut errors);
    let router = route_table(
        loaded,
        previous,
        &upstreams,
        &security,
        &rate_limits,
        &metrics,
        &mut errors,
    );
    rate_limits.finish();
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let Some(router) = router else {
        return Err(ConfigErrors(errors));
    };
    let access_log = match file.observability.access_log.format {
        FileLogFormat::Off => None,
        FileLogFormat::Json => Some((
            LogFormat::Json,
            file.observability.access_log.output.clone(),
        )),
        FileLogFormat::Common => Some((
            LogFormat::Common,
            file.observability.access_log.output.clone(),
        )),
    };
    let admin = match &file.admin {
        None => None,
        Some(admin) => match admin.address.parse::<SocketAddr>() {
            Ok(address) => Some(AdminSettings {
                address,
                token: admin.token.clone(),
            }),
            Err(_) => {
                return Err(ConfigErrors(vec![
                    loaded.error("admin.address", "expected IP:PORT"),
                ]));
            }
        },
    };
    Ok(GatewayConfig {
        source: loaded.name.clone(),
        source_path: None,
        admin,
        listeners,
        access_log,
        worker_threads: file.server.worker_threads,
        runtime: Arc::new(Runtime {
            router,
            upstreams,
            server,
            version: loaded.version.clone(),
            file: Arc::clone(file),
            security,
            metrics,
            rate_limits: Arc::new(rate_limits),
        }),
    })
}

fn server_settings(loaded: &LoadedFile, errors: &mut Vec<ConfigError>) -> ServerSettings {
    let server = &loaded.config.server;
    let limits = &server.limits;
    let trusted_proxies = server
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, text)| match parse_cidr(text) {
            Some(net) => Some(net),
            None => {
                errors.push(loaded.error(
                    format!("server.trusted_proxies[{i}]"),
                    format!("{text:?} is not an IP address or CIDR"),
                ));
                None
            }
        })
        .collect();
    let request_id_header = server
        .request_id_header
        .as_deref()
        .unwrap_or(defaults::REQUEST_ID_HEADER);
    let request_id_header =
        HeaderName::from_bytes(request_id_header.as_bytes()).unwrap_or_else(|_| {
            errors.push(loaded.error("server.request_id_header", "not a valid header name"));
            HeaderName::from_static(defaults::REQUEST_ID_HEADER)
        });
    let via_name = server
        .via_name
        .clone()
        .unwrap_or_else(|| defaults::VIA_NAME.to_owned());
    let via_entry = HeaderValue::from_str(&format!("1.1 {via_name}")).unwrap_or_else(|_| {
        errors.push(loaded.error("server.via_name", "not a valid Via pseudonym"));
        HeaderValue::from_static("1.1 gantry")
    });
    ServerSettings {
        trusted_proxies,
        request_id_header,
        shutdown_grace: server
            .shutdown_grace
            .map_or(Duration::from_secs(defaults::SHUTDOWN_GRACE_SECS), |d| d.0),
        limits: Limits {
            max_header_bytes: limits
                .max_header_bytes
                .map_or(defaults::MAX_HEADER_BYTES, |s| s.0),
            max_uri_bytes: limits
                .max_uri_bytes
                .map_or(defaults::MAX_URI_BYTES, |s| s.0),
            max_body_bytes: limits
                .max_body_bytes
                .map_or(defaults::MAX_BODY_BYTES, |s| s.0),
            header_read_timeout: limits.header_read_timeout.map_or(
                Duration::from_secs(defaults::HEADER_READ_TIMEOUT_SECS),
                |d| d.0,
            ),
            idle_timeout: limits
                .idle_timeout
                .map_or(Duration::from_secs(defaults::IDLE_TIMEOUT_SECS), |d| d.0),
            max_connections: limits.max_connections.unwrap_or(defaults::MAX_CONNECTIONS),
            h2_max_concurrent_streams: limits
                .h2_max_concurrent_streams
                .unwrap_or(defaults::H2_MAX_CONCURRENT_STREAMS),
            h2_max_pending_reset_streams: limits
                .h2_max_pending_reset_streams
                .unwrap_or(defaults::H2_MAX_PENDING_RESET_STREAMS),
            h2_max_local_error_reset_streams: limits
                .h2_max_local_error_reset_streams
                .unwrap_or(defaults::H2_MAX_LOCAL_ERROR_RESET_STREAMS),
            h2_max_header_list_size: limits.h2_max_header_list_size.map(|s| s.0),
        },
        via_entry,
        via_name,
        trace_sample_ratio: trace_sample_ratio(loaded, errors),
        metrics_enabled: loaded.config.observability.metrics.enabled,
        headers_with_underscores: server.headers_with_underscores.unwrap_or_default(),
        path_with_escaped_slashes: server.path_with_escaped_slashes.unwrap_or_default(),
    }
}

fn trace_sample_ratio(loaded: &LoadedFile, errors: &mut Vec<ConfigError>) -> f64 {
    for (route, ratio) in &loaded.config.observability.access_log.sample_successes {
        let key = format!("observability.access_log.sample_successes.{route}");
        if !(0.0..=1.0).contains(ratio) {
            errors.push(loaded.error(key, "must be between 0 and 1"));
        } else if !loaded.config.routes.iter().any(|r| r.name == *route) {
            errors.push(loaded.error(key, format!("no route is named \"{route}\"")));
        }
    }
    if let Some(endpoint) = &loaded.config.observability.tracing.otlp_endpoint
        && !endpoint.is_empty()
        && endpoint.parse::<http::Uri>().map_or(true, |uri| {
            // Plain h2c only: the build carries no TLS stack for tonic's client (yet).
            uri.scheme_str() != Some("http") || uri.authority().is_none()
        })
    {
        errors.push(loaded.error(
            "observability.tracing.otlp_endpoint",
            "expected http://HOST:PORT (OTLP/gRPC without TLS)",
        ));
    }
    let ratio = loaded
        .config
        .observability
        .tracing
        .sample_ratio
        .unwrap_or(0.0);
    if !(0.0..=1.0).contains(&ratio) {
        errors.push(loaded.error(
            "observability.tracing.sample_ratio",
            "must be between 0 and 1",
        ));
        return 0.0;
    }
    ratio
}

fn parse_cidr(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn listener_settings(loaded: &LoadedFile, errors: &mut Vec<ConfigError>) -> Vec<ListenerSettings> {
    loaded
        .config
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, listener)| {
            let Ok(address) = listener.address.parse::<SocketAddr>() else {
                errors.push(loaded.error(
                    format!("listeners[{i}].address"),
                    format!("{:?} is not IP:PORT", listener.address),
                ));
                return None;
            };
            let tls = match &listener.tls {
                Some(tls) => Some(super::compile_tls::listener_tls(loaded, i, tls, errors)?),
                None => None,
            };
            Some(ListenerSettings {
                name: Arc::from(listener.name.as_str()),
                address,
                http1: listener.protocols.contains(&FileProtocol::Http1),
                h2c: listener.protocols.contains(&FileProtocol::H2c),
                tls,
            })
        })
        .collect()
}

fn cluster(
    loaded: &LoadedFile,
    name: &str,
    upstream: &FileUpstream,
    server: &ServerSettings,
    previous: Option<&UpstreamCluster>,
    errors: &mut Vec<ConfigError>,
) -> UpstreamCluster {
    let timeouts = &upstream.timeouts;
    let request = timeouts
        .request
        .map_or(Duration::from_secs(defaults::REQUEST_TIMEOUT_SECS), |d| d.0);
    let timeouts = UpstreamTimeouts {
        connect: timeouts
            .connect
            .map_or(Duration::from_secs(defaults::CONNECT_TIMEOUT_SECS), |d| d.0),
        request,
        per_try: timeouts.per_try.map_or(request, |d| d.0),
        idle: timeouts
            .idle
            .map_or(Duration::from_secs(defaults::UPSTREAM_IDLE_SECS), |d| d.0),
    };
    let protocol = match upstream.protocol {
        FileUpstreamProtocol::Http1 => UpstreamProtocol::Http1,
        FileUpstreamProtocol::H2 | FileUpstreamProtocol::Grpc => UpstreamProtocol::Http2,
    };
    let pool = PoolSettings {
        max_idle: upstream
            .pool
            .max_idle_per_target
            .unwrap_or(defaults::MAX_IDLE_PER_TARGET),
        max_open: upstream
            .pool
            .max_connections_per_target
            .unwrap_or(defaults::MAX_CONNECTIONS_PER_TARGET),
        idle_timeout: timeouts.idle,
        connect_timeout: timeouts.connect,
        max_response_head: usize::try_from(server.limits.max_header_bytes).unwrap_or(usize::MAX),
        http2: protocol == UpstreamProtocol::Http2,
        tls: None,
    };
    let tls = super::compile_tls::upstream_tls(loaded, name, upstream, pool.http2, errors);
    let resilience = super::compile_resilience::resilience(name, upstream, previous, &pool);
    let targets = upstream
        .targets
        .iter()
        .enumerate()
        .filter_map(|(i, target)| {
            let authority = target
                .url
                .parse::<http::Uri>()
                .ok()
                .and_then(|uri| uri.authority().map(|a| a.as_str().to_owned()));
            let Some(authority) = authority else {
                errors.push(loaded.error(
                    format!("upstreams.{name}.targets[{i}].url"),
                    "expected http://HOST:PORT",
                ));
                return None;
            };
            let pool = PoolSettings {
                tls: target
                    .url
                    .starts_with("https://")
                    .then(|| tls.clone())
                    .flatten(),
                ..pool.clone()
            };
            let weight = target.weight.max(1);
            // Same target, same settings: keep its pool and in-flight count across the reload.
            let unchanged = previous.and_then(|cluster| {
                cluster
                    .targets
                    .load()
                    .iter()
                    .find(|t| {
                        t.authority == authority && t.weight == weight && *t.pool.settings() == pool
                    })
                    .cloned()
            });
            if let Some(kept) = unchanged {
                return Some(kept);
            }
            let authority_header = HeaderValue::from_str(&authority).ok()?;
            // A URL without a port means the scheme's default one.
            let has_port = authority
                .parse::<http::uri::Authority>()
                .is_ok_and(|a| a.port_u16().is_some());
            let connect_to = if has_port {
                authority.clone()
            } else if pool.tls.is_some() {
                format!("{authority}:443")
            } else {
                format!("{authority}:80")
            };
            let health = super::compile_resilience::target_health(
                name,
                &authority,
                previous,
                &resilience.state.clock,
            );
            Some(Arc::new(Target {
                health,
                pool: ConnectionPool::new(connect_to, pool.clone()),
                metric_label: Arc::from(authority.as_str()),
                try_metrics: crate::observe::metrics::TryMetricCache::default(),
                authority,
                authority_header,
                weight,
                in_flight: AtomicUsize::new(0),
            }))
        })
        .collect();
    let (balancer, hash_key) = match &upstream.load_balancing {
        FileLoadBalancing::RoundRobin => (Balancer::RoundRobin(AtomicUsize::new(0)), HashKey::None),
        FileLoadBalancing::WeightedRoundRobin => (
            Balancer::WeightedRoundRobin(Mutex::new(Vec::new())),
            HashKey::None,
        ),
        FileLoadBalancing::LeastRequest => (Balancer::LeastRequest, HashKey::None),
        FileLoadBalancing::Random => (Balancer::Random, HashKey::None),
        FileLoadBalancing::ConsistentHash(key) => {
            let hash_key = if let Some(header) = &key.header {
                HeaderName::from_bytes(header.as_bytes()).map_or(HashKey::None, HashKey::Header)
            } else if let Some(cookie) = &key.cookie {
                HashKey::Cookie(cookie.clone())
            } else {
                HashKey::ClientIp
            };
            (Balancer::ConsistentHash(AtomicUsize::new(0)), hash_key)
        }
    };
    UpstreamCluster {
        name: Arc::from(name),
        balancer,
        hash_key,
        protocol,
        timeouts,
        host_header: match upstream.host_header {
            FileHostHeader::Preserve => HostHeader::Preserve,
            FileHostHeader::Target => HostHeader::Target,
        },
        targets: arc_swap::ArcSwap::from_pointee(
            super::compile_resilience::discovered_targets(previous, resilience.discovery.as_ref())
                .unwrap_or(targets),
        ),
        resilience,
    }
}

fn route_table(
    loaded: &LoadedFile,
    previous: Option<&Runtime>,
    upstreams: &BTreeMap<String, Arc<UpstreamCluster>>,
    security: &crate::policy::Security,
    rate_limits: &crate::policy::rate_limit::RateLimits,
    metrics: &crate::observe::metrics::Metrics,
    errors: &mut Vec<ConfigError>,
) -> Option<Router<Arc<Route>>> {
    let file: &FileConfig = &loaded.config;
    // A route's metric handles depend on its name only, and the registry is the previous
    // snapshot's (carried over): a route that keeps its name keeps its handles instead of
    // looking its label sets up again.
    let mut kept_metrics: crate::router::FastMap<
        &str,
        &Arc<crate::observe::metrics::RouteMetrics>,
    > = crate::router::FastMap::default();
    if let Some(previous) = previous {
        kept_metrics.reserve(previous.router.len());
        for route in previous.router.values() {
            kept_metrics.insert(&route.name, &route.metrics);
        }
    }
    let mut specs = Vec::with_capacity(file.routes.len());
    for (i, route) in file.routes.iter().enumerate() {
        let at = |key: &str| format!("routes[{i}].{key}");
        let upstream = route.upstream.as_ref().and_then(|name| upstreams.get(name));
        let aggregate = match &route.aggregate {
            Some(file) => {
                match super::compile_aggregate::aggregate(loaded, i, file, upstreams, errors) {
                    Some(aggregate) => Some(Arc::new(aggregate)),
                    None => continue,
                }
            }
            None => None,
        };
        if upstream.is_none() && aggregate.is_none() {
            errors.push(loaded.error(at("upstream"), "a route needs a known upstream"));
            continue;
        }
        let m = &route.matcher;
        let path = match (&m.path, &m.path_prefix) {
            (Some(path), None) => PathPattern::Template(path.clone()),
            (None, Some(prefix)) => PathPattern::Prefix(prefix.clone()),
            _ => {
                errors.push(loaded.error(at("match"), "needs exactly one of path and path_prefix"));
                continue;
            }
        };
        let rewrite = match &route.rewrite {
            None => None,
            Some(rewrite) => match (&rewrite.path, &rewrite.strip_prefix) {
                (Some(template), None) => match Rewrite::template(template) {
                    Ok(rewrite) => Some(rewrite),
                    Err(err) => {
                        errors.push(loaded.error(at("rewrite.path"), err.to_string()));
                        continue;
                    }
                },
                (None, Some(prefix)) => Some(Rewrite::strip_prefix(prefix)),
                _ => {
                    errors.push(
                        loaded.error(at("rewrite"), "needs exactly one of path and strip_prefix"),
                    );
                    continue;
                }
            },
        };
        let methods: Vec<Method> = m
            .methods
            .iter()
            .filter_map(|method| Method::from_bytes(method.as_bytes()).ok())
            .collect();
        let headers = m
            .headers
            .iter()
            .filter_map(|(name, condition)| {
                let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                Some((name, value_condition(condition)))
            })
            .collect();
        let query = m
            .query
            .iter()
            .map(|(name, condition)| (name.clone(), value_condition(condition)))
            .collect();
        specs.push(RouteSpec {
            hosts: m.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            path,
            methods,
            headers,
            query,
            value: Arc::new(Route {
                log_successes: file
                    .observability
                    .access_log
                    .sample_successes
                    .get(&route.name)
                    .copied()
                    .unwrap_or(1.0),
                metrics: kept_metrics.get(route.name.as_str()).map_or_else(
                    || metrics.route(&Arc::from(route.name.as_str())),
                    |kept| Arc::clone(kept),
                ),
                name: Arc::from(route.name.as_str()),
                upstream: upstream.map(Arc::clone),
                aggregate,
                rewrite,
                websocket: route.websocket,
                fallback: super::compile_resilience::fallback(route),
                policies: super::compile_rate_limit::attach(
                    super::compile_security::route_policies(loaded, i, route, security, errors),
                    route,
                    rate_limits,
                ),
            }),
        });
    }
    // Route indices in build errors refer to `specs`; map them back through the route names.
    let names: Vec<Arc<str>> = specs.iter().map(|s| Arc::clone(&s.value.name)).collect();
    match Router::build(specs) {
        Ok(router) => Some(router),
        Err(build_errors) => {
            for err in build_errors {
                let index = names
                    .get(err.route_index)
                    .and_then(|name| file.routes.iter().position(|r| *r.name == **name))
                    .unwrap_or(err.route_index);
                let key = if file
                    .routes
                    .get(index)
                    .is_some_and(|r| r.matcher.path.is_some())
                {
                    "match.path"
                } else {
                    "match.path_prefix"
                };
                errors.push(loaded.error(format!("routes[{index}].{key}"), err.message));
            }
            None
        }
    }
}

fn value_condition(condition: &FileValueMatch) -> ValueCondition {
    match condition {
        FileValueMatch::Exact(value) => ValueCondition::Equals(value.clone()),
        FileValueMatch::Presence(p) if p.present => ValueCondition::Present,
        FileValueMatch::Presence(_) => ValueCondition::Absent,
    }
}

/// One summary per route for the admin API.
pub(crate) fn route_summaries(file: &FileConfig) -> Vec<RouteSummary> {
    file.routes
        .iter()
        .map(|route| {
            let m = &route.matcher;
            RouteSummary {
                name: route.name.clone(),
                hosts: m.hosts.clone(),
                path: m
                    .path
                    .clone()
                    .or_else(|| m.path_prefix.clone())
                    .unwrap_or_default(),
                prefix: m.path_prefix.is_some(),
                methods: m.methods.clone(),
                upstream: route.upstream.clone().unwrap_or_default(),
            }
        })
        .collect()
}

/// Keys whose values are credentials, replaced in what the admin API shows. Not `key`: in this
/// file model that is a TLS private key's *path* (`certificates[].key`) or a rate limit's
/// counting key (`key: consumer+route`); paths and selectors are what an operator checks in
/// `GET /admin/config`, and the key material itself is never part of the config.
const SECRET_KEYS: [&str; 7] = [
    "token",
    "secret",
    "password",
    "password_hash",
    "client_secret",
    "api_key",
    "api_keys",
];

/// Replaces every credential value (by key name) with `"REDACTED"`.
fn redact_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) && !child.is_null() {
                    *child = serde_json::Value::String("REDACTED".to_owned());
                } else {
                    redact_secrets(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

/// The config as `GET /admin/config` shows it: the file model as JSON, credentials redacted.
/// Rendered on demand, not at load: a reload should not pay for a page nobody may ask for.
pub(crate) fn effective_config(file: &FileConfig) -> serde_json::Value {
    let mut value = serde_json::to_value(file).unwrap_or_default();
    redact_secrets(&mut value);
    value
}

/// The version of a config: a fingerprint of the file's bytes and of the `${VAR}` values it
/// used (`used`, in any order). Equal files in equal environments, equal versions; hashing the
/// 1 MB text of a 10,000-route file takes a fraction of a millisecond, where rendering and
/// hashing the parsed model took a tenth of a reload.
pub(crate) fn fingerprint(text: &str, mut used: Vec<(String, Option<String>)>) -> String {
    used.sort();
    used.dedup();
    let mut environment = Vec::new();
    for (name, value) in &used {
        environment.extend_from_slice(name.as_bytes());
        match value {
            Some(value) => {
                environment.push(b'=');
                environment.extend_from_slice(value.as_bytes());
            }
            None => environment.push(b'!'),
        }
        environment.push(0);
    }
    let hash = word_hash(text.as_bytes()) ^ word_hash(&environment).rotate_left(32);
    format!("{hash:016x}")
}

/// A hash of `bytes` over their little-endian 64-bit words: each step (xor, multiply by an odd
/// constant, rotate) is a bijection, so texts of one length that differ in a single word always
/// hash differently. A fingerprint for change detection, not a MAC.
fn word_hash(bytes: &[u8]) -> u64 {
    fn step(hash: u64, word: u64) -> u64 {
        (hash ^ word).wrapping_mul(0x0100_0000_01b3).rotate_left(27)
    }
    let mut words = bytes.chunks_exact(8);
    let mut hash = 0xcbf2_9ce4_8422_2325;
    for word in &mut words {
        let mut buffer = [0; 8];
        buffer.copy_from_slice(word);
        hash = step(hash, u64::from_le_bytes(buffer));
    }
    let mut tail = [0; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    hash = step(hash, u64::from_le_bytes(tail));
    step(hash, bytes.len() as u64)
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    #[test]
    fn a_variable_changes_the_version_of_the_same_file() {
        let text = "version: 1\nlisteners: [{ name: a, address: \"127.0.0.1:${PORT}\" }]\n";
        let version = |port: &'static str| {
            super::super::parse_str("t.yaml", text, &move |_| Some(port.to_owned()))
                .unwrap()
                .version
        };
        assert_eq!(version("80"), version("80"));
        assert_ne!(version("80"), version("81"));
    }

    #[test]
    fn the_version_follows_the_bytes_and_the_variables_used() {
        let text = "routes: /v1/items/{id}\n";
        let var = |value: &str| vec![("PORT".to_owned(), Some(value.to_owned()))];
        assert_eq!(fingerprint(text, var("1")), fingerprint(text, var("1")));
        assert_ne!(fingerprint(text, var("1")), fingerprint(text, var("2")));
        assert_ne!(fingerprint(text, var("1")), fingerprint(text, Vec::new()));
        // Every byte counts, wherever it sits in its word, and so does the length.
        let base = word_hash(text.as_bytes());
        for at in 0..text.len() {
            let mut changed = text.as_bytes().to_vec();
            changed[at] ^= 1;
            assert_ne!(word_hash(&changed), base, "byte {at}");
        }
        assert_ne!(word_hash(b"ab"), word_hash(b"ab\0"));
        // The order in which two threads looked variables up does not matter.
        let two = |a, b| vec![(a, Some("x".to_owned())), (b, Some("y".to_owned()))];
        assert_eq!(
            fingerprint(text, two("A".to_owned(), "B".to_owned())),
            fingerprint(text, {
                let mut v = two("A".to_owned(), "B".to_owned());
                v.reverse();
                v
            })
        );
    }
}
