//! Semantic checks of rate limiting (`redis:`, `server.rate_limit`, `routes[].policies.rate_limit`),
//! every problem located like the rest of `validate`.

use super::LoadedFile;
use super::error::ConfigError;
use super::file_rate_limit::{FileLimitStore, FileRateLimit, ParsedRate, parse_rate};
use crate::policy::rate_limit::KeySpec;
use crate::policy::rate_limit::gcra::Gcra;

/// Appends every problem of the rate-limit area to `errors`.
pub(crate) fn validate(loaded: &LoadedFile, errors: &mut Vec<ConfigError>) {
    let config = &loaded.config;
    if let Some(redis) = &config.redis {
        if let Err(error) = redis::Client::open(redis.url.as_str()) {
            errors.push(loaded.error("redis.url", format!("invalid Redis URL: {error}")));
        }
        if redis.timeout.is_some_and(|t| t.0.is_zero()) {
            errors.push(loaded.error("redis.timeout", "must be more than 0"));
        }
        if let Some(breaker) = &redis.breaker
            && breaker.failures == Some(0)
        {
            errors.push(loaded.error("redis.breaker.failures", "must be at least 1"));
        }
    }
    for (i, limit) in config.server.rate_limit.iter().enumerate() {
        check(
            loaded,
            &format!("server.rate_limit[{i}]"),
            limit,
            true,
            errors,
        );
    }
    for (name, upstream) in &config.upstreams {
        for (i, limit) in upstream.rate_limit.iter().enumerate() {
            check(
                loaded,
                &format!("upstreams.{name}.rate_limit[{i}]"),
                limit,
                true,
                errors,
            );
        }
    }
    for (r, route) in config.routes.iter().enumerate() {
        let Some(policies) = &route.policies else {
            continue;
        };
        for (i, limit) in policies.rate_limit.iter().enumerate() {
            let base = format!("routes[{r}].policies.rate_limit[{i}]");
            check(loaded, &base, limit, policies.auth.is_some(), errors);
        }
    }
}

fn check(
    loaded: &LoadedFile,
    base: &str,
    limit: &FileRateLimit,
    has_auth: bool,
    errors: &mut Vec<ConfigError>,
) {
    match KeySpec::parse(&limit.key) {
        Ok(spec) if spec.needs_identity() && !has_auth => errors.push(loaded.error(
            format!("{base}.key"),
            "a consumer key needs policies.auth on this route (who is the consumer otherwise?)",
        )),
        Ok(_) => {}
        Err(message) => errors.push(loaded.error(format!("{base}.key"), message)),
    }
    if limit.burst == Some(0) {
        errors.push(loaded.error(
            format!("{base}.burst"),
            "a burst of 0 admits nothing: use at least 1",
        ));
    }
    match parse_rate(&limit.rate) {
        Ok(ParsedRate::Rate { count, period }) => {
            if Gcra::new(count, period, limit.burst.unwrap_or(count).max(1)).is_none() {
                errors.push(loaded.error(
                    format!("{base}.rate"),
                    "too fast: at most 1000000/s (one request per microsecond)",
                ));
            }
        }
        Ok(ParsedRate::Day(_) | ParsedRate::Month(_)) => {
            if limit.store != FileLimitStore::Redis {
                errors.push(loaded.error(
                    format!("{base}.store"),
                    "quotas (N/day, N/month) are kept in Redis: set store: redis",
                ));
            }
            if limit.burst.is_some() {
                errors.push(loaded.error(
                    format!("{base}.burst"),
                    "a quota has no burst: the whole quota is available at the window's start",
                ));
            }
        }
        Err(message) => errors.push(loaded.error(format!("{base}.rate"), message)),
    }
    if limit.store != FileLimitStore::Local && loaded.config.redis.is_none() {
        errors.push(loaded.error(
            format!("{base}.store"),
            "store: redis and store: hybrid need a top-level redis: { url } block",
        ));
    }
    if limit.max_keys == Some(0) {
        errors.push(loaded.error(format!("{base}.max_keys"), "must be at least 1"));
    }
    if let Some(name) = &limit.name
        && (name.is_empty()
            || !name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'))
    {
        errors.push(loaded.error(
            format!("{base}.name"),
            "must be printable ASCII without quotes or backslashes (it is sent in RateLimit)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_str, validate};

    fn semantic(text: &str) -> Vec<String> {
        let loaded = parse_str("t.yaml", text, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        match validate::validate(&loaded) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_bad_limit_is_reported_with_its_location() {
        let text = r#"version: 1
listeners: [{ name: public, address: "127.0.0.1:0" }]
server:
  rate_limit:
    - { key: global, rate: 10/fortnight }
upstreams:
  users: { targets: [{ url: "http://127.0.0.1:8081" }] }
routes:
  - name: r
    match: { path_prefix: / }
    upstream: users
    policies:
      rate_limit:
        - { key: ip, rate: 10/s, burst: 0 }
        - { key: cookie, rate: 10/s }
        - { key: consumer, rate: 10/s }
        - { key: ip, rate: 10/s, store: redis }
        - { key: ip, rate: 5/day }
"#;
        let errors = semantic(text);
        let expected = [
            "t.yaml:5:28: server.rate_limit[0].rate: invalid rate \"10/fortnight\"",
            "t.yaml:14:41: routes[0].policies.rate_limit[0].burst: a burst of 0",
            "t.yaml:15:18: routes[0].policies.rate_limit[1].key: unknown key kind \"cookie\"",
            "t.yaml:16:18: routes[0].policies.rate_limit[2].key: a consumer key needs policies.auth",
            "t.yaml:17:41: routes[0].policies.rate_limit[3].store: store: redis and store: hybrid need a top-level redis:",
            "t.yaml:18:11: routes[0].policies.rate_limit[4].store: quotas",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, prefix) in errors.iter().zip(expected) {
            assert!(error.starts_with(prefix), "{error}\n  expected {prefix}");
        }
    }

    #[test]
    fn a_redis_block_makes_redis_limits_and_quotas_valid() {
        let text = r#"version: 1
listeners: [{ name: public, address: "127.0.0.1:0" }]
redis: { url: "redis://127.0.0.1:6379", timeout: 20ms }
upstreams:
  users: { targets: [{ url: "http://127.0.0.1:8081" }] }
consumers: [{ name: a, api_keys: [k] }]
routes:
  - name: r
    match: { path_prefix: / }
    upstream: users
    policies:
      auth: { methods: [api_key] }
      rate_limit:
        - { key: consumer+route, rate: 100/s, burst: 50, store: redis, on_store_error: deny }
        - { key: consumer, rate: 1000/day, store: redis }
        - { key: "header:X-Tenant", rate: 6000/min }
"#;
        assert_eq!(semantic(text), Vec::<String>::new());
    }
}
