//! Semantic checks of the resilience keys (`upstreams.*.{health_check, circuit_breaker, retries,
//! load_shedding}`, `routes[].fallback`): every problem, each located by key path.

use http::{HeaderName, HeaderValue};

use super::LoadedFile;
use super::error::ConfigError;
use super::file::{FileRoute, FileUpstream};
use super::file_resilience::{FileRetryCondition, FileRetryOn};
use super::source_map::{child_index, child_key};
use super::units::Duration;

/// Most tries a request may make.
pub(super) const MAX_ATTEMPTS: u32 = 10;

struct Checks<'a> {
    loaded: &'a LoadedFile,
    errors: &'a mut Vec<ConfigError>,
}

impl Checks<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.loaded.error(path, message));
    }

    fn positive(&mut self, base: &str, key: &str, value: Option<Duration>) {
        if value.is_some_and(|d| d.0.is_zero()) {
            self.error(&child_key(base, key), "must be greater than 0");
        }
    }

    fn at_least_one(&mut self, base: &str, key: &str, value: Option<u32>) {
        if value == Some(0) {
            self.error(&child_key(base, key), "must be at least 1");
        }
    }
}

/// Checks the resilience keys of the upstream at `base`.
pub(super) fn upstream(
    loaded: &LoadedFile,
    base: &str,
    upstream: &FileUpstream,
    errors: &mut Vec<ConfigError>,
) {
    let mut c = Checks { loaded, errors };
    if let Some(health) = &upstream.health_check {
        let health_path = child_key(base, "health_check");
        if let Some(active) = &health.active {
            let at = child_key(&health_path, "active");
            if !active.path.starts_with('/')
                || active.path.parse::<http::uri::PathAndQuery>().is_err()
            {
                c.error(
                    &child_key(&at, "path"),
                    format!(
                        "invalid health-check path {:?}: expected e.g. /healthz",
                        active.path
                    ),
                );
            }
            c.positive(&at, "interval", active.interval);
            c.positive(&at, "timeout", active.timeout);
            c.at_least_one(&at, "healthy_after", active.healthy_after);
            c.at_least_one(&at, "unhealthy_after", active.unhealthy_after);
        }
        if let Some(passive) = &health.passive {
            let at = child_key(&health_path, "passive");
            c.at_least_one(&at, "consecutive_failures", passive.consecutive_failures);
            c.positive(&at, "eject_for", passive.eject_for);
            if passive.max_ejected_percent.is_some_and(|p| p > 100) {
                c.error(
                    &child_key(&at, "max_ejected_percent"),
                    "must be from 0 to 100",
                );
            }
        }
    }
    if let Some(breaker) = &upstream.circuit_breaker {
        let at = child_key(base, "circuit_breaker");
        if breaker
            .failure_ratio
            .is_some_and(|r| !(r > 0.0 && r <= 1.0))
        {
            c.error(
                &child_key(&at, "failure_ratio"),
                "must be greater than 0 and at most 1 (e.g. 0.5 for 50%)",
            );
        }
        c.at_least_one(&at, "min_requests", breaker.min_requests);
        c.positive(&at, "window", breaker.window);
        c.positive(&at, "open_for", breaker.open_for);
        c.at_least_one(&at, "half_open_requests", breaker.half_open_requests);
    }
    if let Some(retries) = &upstream.retries {
        let at = child_key(base, "retries");
        if retries.attempts.is_some_and(|a| a == 0 || a > MAX_ATTEMPTS) {
            c.error(
                &child_key(&at, "attempts"),
                format!("must be from 1 to {MAX_ATTEMPTS} (tries in all, the first included)"),
            );
        }
        let on_path = child_key(&at, "on");
        for (i, on) in retries.on.iter().flatten().enumerate() {
            let path = child_index(&on_path, i);
            if let FileRetryOn::Status(code) = on
                && !(*code == 429 || (500..=599).contains(code))
            {
                c.error(
                    &path,
                    format!("status {code} cannot be retried: use 429 or 500–599"),
                );
            }
            let earlier = retries.on.iter().flatten().take(i);
            if earlier.clone().any(|e| e == on) {
                c.error(&path, "duplicate retry condition");
            }
        }
        let backoff = child_key(&at, "backoff");
        c.positive(&backoff, "base", retries.backoff.base);
        c.positive(&backoff, "max", retries.backoff.max);
        if let (Some(base), Some(max)) = (retries.backoff.base, retries.backoff.max)
            && base > max
        {
            c.error(
                &child_key(&backoff, "max"),
                format!("max ({max}) cannot be shorter than base ({base})"),
            );
        }
    }
    if let Some(discovery) = &upstream.discovery {
        let at = child_key(&child_key(base, "discovery"), "dns");
        if !upstream.targets.is_empty() {
            c.error(
                &child_key(base, "targets"),
                "an upstream has either `targets` or `discovery`, not both",
            );
        }
        let name = discovery.dns.name.trim_end_matches('.');
        let valid_name = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid_name {
            c.error(
                &child_key(&at, "name"),
                format!("invalid DNS name {:?}", discovery.dns.name),
            );
        }
        if discovery.dns.port == Some(0) {
            c.error(&child_key(&at, "port"), "must be from 1 to 65535");
        }
        c.positive(&at, "refresh", discovery.dns.refresh);
        let servers = child_key(&at, "nameservers");
        for (i, server) in discovery.dns.nameservers.iter().enumerate() {
            if super::compile_resilience::parse_nameserver(server).is_none() {
                c.error(
                    &child_index(&servers, i),
                    format!("invalid DNS server {server:?}: expected IP or IP:PORT"),
                );
            }
        }
    }
    if let Some(shedding) = &upstream.load_shedding {
        let at = child_key(base, "load_shedding");
        c.at_least_one(
            &at,
            "max_concurrent_requests",
            Some(shedding.max_concurrent_requests),
        );
        c.positive(&at, "queue_timeout", shedding.queue_timeout);
        if let Some(adaptive) = &shedding.adaptive {
            let adaptive_path = child_key(&at, "adaptive");
            c.at_least_one(&adaptive_path, "min_limit", adaptive.min_limit);
            let min = adaptive.min_limit.unwrap_or(1);
            let max = shedding.max_concurrent_requests;
            if min > max {
                c.error(
                    &child_key(&adaptive_path, "min_limit"),
                    format!("min_limit ({min}) cannot exceed max_concurrent_requests ({max})"),
                );
            }
            if let Some(initial) = adaptive.initial_limit
                && !(min..=max).contains(&initial)
            {
                c.error(
                    &child_key(&adaptive_path, "initial_limit"),
                    format!("must be from min_limit ({min}) to max_concurrent_requests ({max})"),
                );
            }
        }
    }
}

/// Checks `fallback` of the route at `base`.
pub(super) fn route(
    loaded: &LoadedFile,
    base: &str,
    route: &FileRoute,
    errors: &mut Vec<ConfigError>,
) {
    let Some(fallback) = &route.fallback else {
        return;
    };
    let mut c = Checks { loaded, errors };
    let at = child_key(base, "fallback");
    if fallback.status.is_some_and(|s| !(200..=599).contains(&s)) {
        c.error(&child_key(&at, "status"), "must be from 200 to 599");
    }
    let headers = child_key(&at, "headers");
    for (name, value) in &fallback.headers {
        let path = child_key(&headers, name);
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.error(&path, format!("invalid header name {name:?}"));
        } else if HeaderValue::from_str(value).is_err() {
            c.error(
                &path,
                "invalid header value (control characters or non-ASCII)",
            );
        }
    }
    if route.upstream.is_none() {
        c.error(&at, "a fallback needs the route's upstream to stand in for");
    }
}

/// Whether `on` names this condition.
pub(super) fn has_condition(on: &[FileRetryOn], condition: FileRetryCondition) -> bool {
    on.contains(&FileRetryOn::Condition(condition))
}

#[cfg(test)]
mod tests {
    use super::super::{parse_str, validate};

    const HEAD: &str = "version: 1\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\n";

    fn errors(upstream_extra: &str, route_extra: &str) -> Vec<String> {
        let text = format!(
            "{HEAD}upstreams:\n  users:\n    targets: [{{ url: \"http://127.0.0.1:8081\" }}]\n{upstream_extra}routes:\n  - name: r\n    match: {{ path: /x }}\n    upstream: users\n{route_extra}"
        );
        let loaded = parse_str("t.yaml", &text, &|_| None)
            .unwrap_or_else(|e| panic!("structural error: {e}"));
        match validate(&loaded) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn the_example_keys_are_valid() {
        let extra = "    timeouts: { connect: 1s, request: 5s, per_try: 2s, idle: 90s }
    health_check:
      active: { path: /healthz, interval: 5s, timeout: 1s, healthy_after: 2, unhealthy_after: 3 }
      passive: { consecutive_failures: 5, eject_for: 30s, max_ejected_percent: 50 }
    circuit_breaker:
      failure_ratio: 0.5
      min_requests: 20
      window: 10s
      open_for: 30s
      half_open_requests: 3
    retries:
      attempts: 3
      on: [connect_error, reset, 502, 503, 504]
      methods: idempotent
      backoff: { base: 25ms, max: 250ms }
      budget: 20%
    load_shedding: { max_concurrent_requests: 100, queue: 10, queue_timeout: 50ms, adaptive: { min_limit: 5 } }
";
        let fallback = "    fallback: { status: 200, headers: { content-type: application/json }, body: '[]' }\n";
        assert_eq!(errors(extra, fallback), Vec::<String>::new());
    }

    #[test]
    fn every_bad_value_is_reported_with_its_location() {
        let extra = "    health_check:
      active: { path: healthz, interval: 0s, healthy_after: 0 }
      passive: { max_ejected_percent: 150 }
    circuit_breaker: { failure_ratio: 1.5, half_open_requests: 0 }
    retries:
      attempts: 11
      on: [reset, 404, reset]
      backoff: { base: 1s, max: 100ms }
    load_shedding: { max_concurrent_requests: 4, adaptive: { min_limit: 8 } }
";
        let fallback = "    fallback: { status: 99, headers: { \"bad header\": x } }\n";
        let found = errors(extra, fallback);
        let expected = [
            "t.yaml:9:23: upstreams.users.health_check.active.path: invalid health-check path \"healthz\": expected e.g. /healthz",
            "t.yaml:9:42: upstreams.users.health_check.active.interval: must be greater than 0",
            "t.yaml:9:61: upstreams.users.health_check.active.healthy_after: must be at least 1",
            "t.yaml:10:39: upstreams.users.health_check.passive.max_ejected_percent: must be from 0 to 100",
            "t.yaml:11:39: upstreams.users.circuit_breaker.failure_ratio: must be greater than 0 and at most 1 (e.g. 0.5 for 50%)",
            "t.yaml:11:64: upstreams.users.circuit_breaker.half_open_requests: must be at least 1",
            "t.yaml:13:17: upstreams.users.retries.attempts: must be from 1 to 10 (tries in all, the first included)",
            "t.yaml:14:19: upstreams.users.retries.on[1]: status 404 cannot be retried: use 429 or 500–599",
            "t.yaml:14:24: upstreams.users.retries.on[2]: duplicate retry condition",
            "t.yaml:15:33: upstreams.users.retries.backoff.max: max (100ms) cannot be shorter than base (1s)",
            "t.yaml:16:73: upstreams.users.load_shedding.adaptive.min_limit: min_limit (8) cannot exceed max_concurrent_requests (4)",
            "t.yaml:21:25: routes[0].fallback.status: must be from 200 to 599",
            "t.yaml:21:54: routes[0].fallback.headers.bad header: invalid header name \"bad header\"",
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn discovery_replaces_targets_and_checks_its_name_and_servers() {
        let text = format!(
            "{HEAD}upstreams:\n  orders:\n    discovery:\n      dns: {{ name: orders.internal, port: 8080, refresh: 10s, nameservers: [10.0.0.2, \"10.0.0.3:5353\"] }}\n"
        );
        let loaded = parse_str("t.yaml", &text, &|_| None).unwrap();
        assert!(validate(&loaded).is_ok());
        let text = format!(
            "{HEAD}upstreams:\n  orders:\n    targets: [{{ url: \"http://127.0.0.1:1\" }}]\n    discovery:\n      dns: {{ name: \"bad name\", port: 0, refresh: 0s, nameservers: [dns.example] }}\n"
        );
        let loaded = parse_str("t.yaml", &text, &|_| None).unwrap();
        let found: Vec<String> = validate(&loaded)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "t.yaml:7:14: upstreams.orders.targets: an upstream has either `targets` or `discovery`, not both",
                "t.yaml:9:20: upstreams.orders.discovery.dns.name: invalid DNS name \"bad name\"",
                "t.yaml:9:38: upstreams.orders.discovery.dns.port: must be from 1 to 65535",
                "t.yaml:9:50: upstreams.orders.discovery.dns.refresh: must be greater than 0",
                "t.yaml:9:68: upstreams.orders.discovery.dns.nameservers[0]: invalid DNS server \"dns.example\": expected IP or IP:PORT",
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_units_are_structural_errors() {
        for (extra, message) in [
            ("    retries: { budget: 20 }\n", "expected a string"),
            ("    retries: { budget: 20 percent }\n", "expected e.g. 20%"),
            ("    retries: { budget: 120% }\n", "must be from 0% to 100%"),
            (
                "    retries: { on: [teapot] }\n",
                "did not match any variant",
            ),
            (
                "    circuit_breaker: { ratio: 0.5 }\n",
                "unknown field `ratio`",
            ),
            (
                "    load_shedding: { queue: 3 }\n",
                "missing field `max_concurrent_requests`",
            ),
        ] {
            let text = format!("{HEAD}upstreams:\n  users:\n    targets: []\n{extra}");
            let error = parse_str("t.yaml", &text, &|_| None)
                .unwrap_err()
                .to_string();
            assert!(error.contains(message), "{extra}: {error}");
        }
    }
}
