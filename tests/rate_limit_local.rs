#![allow(clippy::unwrap_used)]
//! Local rate limits end to end: exactly `burst` admitted, the 429 problem with `Retry-After` and
//! the `RateLimit` fields, key isolation (consumer, header, spoofed X-Forwarded-For), the order
//! around authentication, all-or-nothing across several limits, `server.rate_limit`, and counters
//! kept across a reload.

mod support;

use http::{HeaderMap, Request, StatusCode};
use support::{TestGateway, Upstream, empty, http1_client};

fn config(upstream: &str, server: &str, routes: &str) -> String {
    format!(
        r#"version: 1
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
server:
  shutdown_grace: 5s
{server}
observability:
  access_log: {{ format: off }}
upstreams:
  backend:
    targets: [{{ url: "{upstream}" }}]
consumers:
  - {{ name: alice, api_keys: [alice-key] }}
  - {{ name: bob, api_keys: [bob-key] }}
  - {{ name: carol, api_keys: [carol-key] }}
routes:
{routes}
"#
    )
}

async fn gateway(upstream: &Upstream, server: &str, routes: &str) -> TestGateway {
    TestGateway::start_with(&config(&upstream.url(), server, routes), &[]).await
}

async fn call(
    gw: &TestGateway,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::get(gw.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let c = http1_client().fetch(request.body(empty()).unwrap()).await;
    let text = c.text();
    (c.status, c.headers, text)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn exactly_burst_pass_then_a_429_problem_with_retry_after_and_ratelimit_fields() {
    let upstream = Upstream::start("backend").await;
    let gw = gateway(
        &upstream,
        "",
        "  - name: slow
    match: { path_prefix: /slow }
    upstream: backend
    policies:
      rate_limit: [{ key: global, rate: 1/h, burst: 3 }]",
    )
    .await;
    for remaining in [2, 1, 0] {
        let (status, headers, _) = call(&gw, "/slow", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "ratelimit-policy"),
            "\"global\";q=3;w=10800"
        );
        let t = 3600 * (3 - remaining);
        assert_eq!(
            header(&headers, "ratelimit"),
            format!("\"global\";r={remaining};t={t}")
        );
    }
    let (status, headers, body) = call(&gw, "/slow", &[]).await;
    assert_eq!(status, 429);
    assert_eq!(header(&headers, "content-type"), "application/problem+json");
    assert_eq!(header(&headers, "retry-after"), "3600");
    assert_eq!(header(&headers, "ratelimit"), "\"global\";r=0;t=10800");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["type"], "urn:gantry:problem:rate-limited");
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["detail"], "limit 1/h by global");
    assert_eq!(problem["instance"], "/slow");
    // The refused request never reached the upstream.
    assert_eq!(upstream.request_count(), 3);
}

#[tokio::test]
async fn consumers_are_isolated_and_limited_after_authentication() {
    let upstream = Upstream::start("backend").await;
    let gw = gateway(
        &upstream,
        "",
        "  - name: api
    match: { path_prefix: /api }
    upstream: backend
    policies:
      auth: { methods: [api_key] }
      rate_limit: [{ key: consumer, rate: 1/h, burst: 2 }]",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            call(&gw, "/api", &[("x-api-key", "alice-key")]).await.0,
            200
        );
    }
    assert_eq!(
        call(&gw, "/api", &[("x-api-key", "alice-key")]).await.0,
        429
    );
    // Bob has his own bucket.
    assert_eq!(call(&gw, "/api", &[("x-api-key", "bob-key")]).await.0, 200);
    // A wrong key is refused by authentication (401), never counted against anyone.
    for _ in 0..3 {
        assert_eq!(call(&gw, "/api", &[("x-api-key", "nope")]).await.0, 401);
    }
    assert_eq!(call(&gw, "/api", &[("x-api-key", "bob-key")]).await.0, 200);
    assert_eq!(call(&gw, "/api", &[("x-api-key", "bob-key")]).await.0, 429);
}

#[tokio::test]
async fn ip_limits_run_before_authentication_so_a_flood_never_reaches_it() {
    let upstream = Upstream::start("backend").await;
    let gw = gateway(
        &upstream,
        "",
        "  - name: api
    match: { path_prefix: /api }
    upstream: backend
    policies:
      auth: { methods: [api_key] }
      rate_limit: [{ key: ip, rate: 1/h, burst: 2 }]",
    )
    .await;
    assert_eq!(call(&gw, "/api", &[("x-api-key", "bad")]).await.0, 401);
    assert_eq!(call(&gw, "/api", &[("x-api-key", "bad")]).await.0, 401);
    // Third request from the same IP: refused before its credential is even looked at.
    assert_eq!(
        call(&gw, "/api", &[("x-api-key", "alice-key")]).await.0,
        429
    );
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_gets_no_fresh_bucket() {
    let upstream = Upstream::start("backend").await;
    let routes = "  - name: api
    match: { path_prefix: /api }
    upstream: backend
    policies:
      rate_limit: [{ key: ip, rate: 1/h, burst: 1 }]";
    let gw = gateway(&upstream, "", routes).await;
    assert_eq!(
        call(&gw, "/api", &[("x-forwarded-for", "203.0.113.1")])
            .await
            .0,
        200
    );
    for spoof in ["203.0.113.2", "198.51.100.7", "2001:db8::1"] {
        let (status, _, _) = call(
            &gw,
            "/api",
            &[("x-forwarded-for", spoof), ("x-real-ip", spoof)],
        )
        .await;
        assert_eq!(status, 429, "spoofed {spoof} got a fresh bucket");
    }
    // The same headers from a trusted proxy do name distinct clients: the key is the derived IP.
    let trusted = gateway(&upstream, "  trusted_proxies: [127.0.0.1/32]", routes).await;
    for client in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(
            call(&trusted, "/api", &[("x-forwarded-for", client)])
                .await
                .0,
            200
        );
        assert_eq!(
            call(&trusted, "/api", &[("x-forwarded-for", client)])
                .await
                .0,
            429
        );
    }
}

#[tokio::test]
async fn header_keys_isolate_values_and_a_missing_header_shares_one_bucket() {
    let upstream = Upstream::start("backend").await;
    let gw = gateway(
        &upstream,
        "",
        r#"  - name: api
    match: { path_prefix: /api }
    upstream: backend
    policies:
      rate_limit: [{ key: "header:X-Tenant", rate: 1/h, burst: 1 }]"#,
    )
    .await;
    assert_eq!(call(&gw, "/api", &[("x-tenant", "a")]).await.0, 200);
    assert_eq!(call(&gw, "/api", &[("x-tenant", "a")]).await.0, 429);
    assert_eq!(call(&gw, "/api", &[("x-tenant", "b")]).await.0, 200);
    assert_eq!(call(&gw, "/api", &[]).await.0, 200);
    assert_eq!(call(&gw, "/api", &[]).await.0, 429);
    // An empty value is a value of its own, not "missing".
    assert_eq!(call(&gw, "/api", &[("x-tenant", "")]).await.0, 200);
}

#[tokio::test]
async fn several_limits_are_all_or_nothing() {
    let upstream = Upstream::start("backend").await;
    let gw = gateway(
        &upstream,
        "",
        r#"  - name: api
    match: { path_prefix: /api }
    upstream: backend
    policies:
      rate_limit:
        - { key: route, rate: 1/h, burst: 3 }
        - { key: "header:X-Tenant", rate: 1/h, burst: 1 }"#,
    )
    .await;
    assert_eq!(call(&gw, "/api", &[("x-tenant", "a")]).await.0, 200);
    // Refused by the tenant limit: the route limit must not be charged for it.
    for _ in 0..5 {
        assert_eq!(call(&gw, "/api", &[("x-tenant", "a")]).await.0, 429);
    }
    assert_eq!(call(&gw, "/api", &[("x-tenant", "b")]).await.0, 200);
    assert_eq!(call(&gw, "/api", &[("x-tenant", "c")]).await.0, 200);
    // Now the route limit (3) is used up.
    let (status, headers, _) = call(&gw, "/api", &[("x-tenant", "d")]).await;
    assert_eq!(status, 429);
    assert!(
        header(&headers, "ratelimit").starts_with("\"route\";r=0"),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_consumer_refusal_gives_back_what_the_ip_limit_took() {
    let upstream = Upstream::start("backend").await;
    let gw = gateway(
        &upstream,
        "",
        "  - name: api
    match: { path_prefix: /api }
    upstream: backend
    policies:
      auth: { methods: [api_key] }
      rate_limit:
        - { key: ip, rate: 1/h, burst: 3 }
        - { key: consumer, rate: 1/h, burst: 1 }",
    )
    .await;
    assert_eq!(
        call(&gw, "/api", &[("x-api-key", "alice-key")]).await.0,
        200
    );
    for _ in 0..4 {
        assert_eq!(
            call(&gw, "/api", &[("x-api-key", "alice-key")]).await.0,
            429
        );
    }
    assert_eq!(call(&gw, "/api", &[("x-api-key", "bob-key")]).await.0, 200);
    assert_eq!(
        call(&gw, "/api", &[("x-api-key", "carol-key")]).await.0,
        200
    );
    assert_eq!(upstream.request_count(), 3);
}

#[tokio::test]
async fn server_rate_limit_covers_every_route_and_headers_can_be_turned_off() {
    let upstream = Upstream::start("backend").await;
    let gw = gateway(
        &upstream,
        "  rate_limit: [{ key: global, rate: 1/h, burst: 2, headers: false }]",
        "  - { name: one, match: { path_prefix: /one }, upstream: backend }
  - { name: two, match: { path_prefix: /two }, upstream: backend }",
    )
    .await;
    let (status, headers, _) = call(&gw, "/one", &[]).await;
    assert_eq!(status, 200);
    assert!(headers.get("ratelimit").is_none(), "headers: false");
    assert_eq!(call(&gw, "/two", &[]).await.0, 200);
    let (status, headers, _) = call(&gw, "/one", &[]).await;
    assert_eq!(status, 429);
    // A refusal always explains itself.
    assert_eq!(header(&headers, "ratelimit"), "\"global\";r=0;t=7200");
}

#[tokio::test]
async fn a_reload_keeps_the_counters_of_unchanged_limits() {
    let upstream = Upstream::start("backend").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.yaml");
    let routes = |extra: &str, rate: &str| {
        format!(
            "  - name: api
    match: {{ path_prefix: /api }}
    upstream: backend
    policies:
      rate_limit: [{{ key: ip, rate: {rate}, burst: 2 }}]
{extra}"
        )
    };
    std::fs::write(&path, config(&upstream.url(), "", &routes("", "1/h"))).unwrap();
    let gw = TestGateway::start_file(&path).await;
    assert_eq!(call(&gw, "/api", &[]).await.0, 200);
    assert_eq!(call(&gw, "/api", &[]).await.0, 200);
    assert_eq!(call(&gw, "/api", &[]).await.0, 429);
    // Another route appears; the limit itself is unchanged, so its bucket stays empty.
    let extra = "  - { name: other, match: { path_prefix: /other }, upstream: backend }";
    std::fs::write(&path, config(&upstream.url(), "", &routes(extra, "1/h"))).unwrap();
    gw.gateway().reload().await.unwrap();
    assert_eq!(call(&gw, "/other", &[]).await.0, 200);
    assert_eq!(call(&gw, "/api", &[]).await.0, 429);
    // A changed limit starts afresh.
    std::fs::write(&path, config(&upstream.url(), "", &routes(extra, "2/h"))).unwrap();
    gw.gateway().reload().await.unwrap();
    assert_eq!(call(&gw, "/api", &[]).await.0, 200);
}

#[tokio::test]
async fn upstream_limits_count_every_route_that_forwards_there_together() {
    let upstream = Upstream::start("backend").await;
    let text = config(
        &upstream.url(),
        "",
        "  - { name: one, match: { path_prefix: /one }, upstream: backend }
  - { name: two, match: { path_prefix: /two }, upstream: backend }",
    )
    .replace(
        "    targets: [",
        "    rate_limit: [{ key: ip, rate: 1/h, burst: 3, name: backend-ip }]\n    targets: [",
    );
    let gw = TestGateway::start_with(&text, &[]).await;
    assert_eq!(call(&gw, "/one", &[]).await.0, 200);
    assert_eq!(call(&gw, "/two", &[]).await.0, 200);
    let (status, headers, _) = call(&gw, "/one", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "ratelimit-policy"),
        "\"backend-ip\";q=3;w=10800"
    );
    assert_eq!(call(&gw, "/two", &[]).await.0, 429);
}

#[tokio::test]
async fn hostile_key_values_get_their_own_bounded_bucket_never_an_error() {
    let upstream = Upstream::start("backend").await;
    let gw = gateway(
        &upstream,
        "  trusted_proxies: [127.0.0.1/32]",
        r#"  - name: tenant
    match: { path_prefix: /tenant }
    upstream: backend
    policies:
      rate_limit: [{ key: "header:X-Tenant", rate: 1/h, burst: 1, max_keys: 64 }]
  - name: ip
    match: { path_prefix: /ip }
    upstream: backend
    policies:
      rate_limit: [{ key: ip, rate: 1/h, burst: 1 }]"#,
    )
    .await;
    // Bytes that are not UTF-8 (obs-text) are a key like any other.
    let raw = |path: &str| {
        let mut bytes =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Tenant: ")
                .into_bytes();
        bytes.extend_from_slice(&[0xff, 0xfe, b'a', 0x80]);
        bytes.extend_from_slice(b"\r\n\r\n");
        bytes
    };
    let first = support::raw_request(gw.addr, &raw("/tenant"))
        .await
        .responses();
    assert_eq!(first[0].status, 200);
    let second = support::raw_request(gw.addr, &raw("/tenant"))
        .await
        .responses();
    assert_eq!(second[0].status, 429);
    // A long value costs the same as a short one (keys are hashed) and is isolated too.
    let long = "t".repeat(4000);
    assert_eq!(call(&gw, "/tenant", &[("x-tenant", &long)]).await.0, 200);
    assert_eq!(call(&gw, "/tenant", &[("x-tenant", &long)]).await.0, 429);
    // A flood of distinct values cannot grow memory past max_keys, and never errors.
    for n in 0..100 {
        let value = format!("flood-{n}");
        assert_eq!(call(&gw, "/tenant", &[("x-tenant", &value)]).await.0, 200);
    }
    // IPv6 clients are keyed by their /64: rotating the interface id gains nothing.
    assert_eq!(
        call(&gw, "/ip", &[("x-forwarded-for", "2001:db8:0:0::1")])
            .await
            .0,
        200
    );
    assert_eq!(
        call(&gw, "/ip", &[("x-forwarded-for", "2001:db8:0:0::2")])
            .await
            .0,
        429
    );
    assert_eq!(
        call(&gw, "/ip", &[("x-forwarded-for", "2001:db8:0:1::1")])
            .await
            .0,
        200
    );
    // An IPv4 client and its IPv4-mapped IPv6 form are one client.
    assert_eq!(
        call(&gw, "/ip", &[("x-forwarded-for", "192.0.2.9")])
            .await
            .0,
        200
    );
    assert_eq!(
        call(&gw, "/ip", &[("x-forwarded-for", "::ffff:192.0.2.9")])
            .await
            .0,
        429
    );
}
