#![allow(clippy::unwrap_used)]
//! Routing end to end: precedence, conditions, rewrites, 404/405, and what the upstream receives.

mod support;

use http::{Method, Request, StatusCode};
use support::{TestGateway, Upstream, empty, http1_client};

/// One gateway with two upstreams `a` and `b` and the given routes.
async fn gateway(a: &Upstream, b: &Upstream, routes: &str) -> TestGateway {
    let yaml = format!(
        "version: 1
listeners:
  - {{ name: public, address: \"127.0.0.1:0\" }}
observability:
  access_log: {{ format: json, output: \"${{LOG}}\" }}
upstreams:
  a:
    targets: [{{ url: \"{}\" }}]
  b:
    targets: [{{ url: \"{}\" }}]
routes:
{routes}",
        a.url(),
        b.url()
    );
    TestGateway::start_with(&yaml, &[]).await
}

/// Sends a request and returns (status, the echo JSON's `upstream` or the problem `type`, body).
async fn call(
    gw: &TestGateway,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, serde_json::Value) {
    let mut builder = Request::builder()
        .method(method)
        .uri(gw.url(path))
        .header("host", host);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let response = http1_client().fetch(builder.body(empty()).unwrap()).await;
    let json = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
    (response.status, json)
}

#[tokio::test]
async fn exact_host_beats_wildcard_beats_any_host() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(
        &a,
        &b,
        "  - { name: any, match: { path_prefix: / }, upstream: a, rewrite: { path: /any } }
  - { name: wild, match: { hosts: [\"*.example.com\"], path_prefix: / }, upstream: a, rewrite: { path: /wild } }
  - { name: exact, match: { hosts: [api.example.com], path_prefix: / }, upstream: b, rewrite: { path: /exact } }
",
    )
    .await;
    let (status, json) = call(&gw, Method::GET, "api.example.com", "/x", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(json["path"], "/exact");
    assert_eq!(json["upstream"], "b");
    // Uppercase and a port do not matter.
    let (_, json) = call(&gw, Method::GET, "API.Example.COM:8080", "/x", &[]).await;
    assert_eq!(json["path"], "/exact");
    let (_, json) = call(&gw, Method::GET, "web.example.com", "/x", &[]).await;
    assert_eq!(json["path"], "/wild");
    // A wildcard covers exactly one label.
    let (_, json) = call(&gw, Method::GET, "a.b.example.com", "/x", &[]).await;
    assert_eq!(json["path"], "/any");
    let (_, json) = call(&gw, Method::GET, "other.org", "/x", &[]).await;
    assert_eq!(json["path"], "/any");
}

#[tokio::test]
async fn path_precedence_exact_then_static_segments_then_prefix_then_catch_all() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(
        &a,
        &b,
        "  - { name: catch, match: { path: \"/v1/{*rest}\" }, upstream: a, rewrite: { path: \"/catch/{rest}\" } }
  - { name: prefix, match: { path_prefix: /v1/users }, upstream: a, rewrite: { path: /prefix } }
  - { name: param, match: { path: \"/v1/users/{id}\" }, upstream: a, rewrite: { path: \"/param/{id}\" } }
  - { name: more-static, match: { path: \"/v1/users/{id}/orders\" }, upstream: a, rewrite: { path: \"/orders/{id}\" } }
  - { name: exact, match: { path: /v1/users/me }, upstream: b, rewrite: { path: /me } }
",
    )
    .await;
    let cases = [
        ("/v1/users/me", "/me"),
        ("/v1/users/7", "/param/7"),
        ("/v1/users/7/orders", "/orders/7"),
        ("/v1/users/7/other", "/prefix"),
        ("/v1/users", "/prefix"),
        ("/v1/items/3/x", "/catch/items/3/x"),
    ];
    for (path, expected) in cases {
        let (status, json) = call(&gw, Method::GET, "h", path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(json["path"], expected, "{path}");
    }
    // A prefix matches on segment boundaries only.
    let (status, json) = call(&gw, Method::GET, "h", "/v1/usersbeta", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(json["path"], "/catch/usersbeta");
}

#[tokio::test]
async fn header_and_query_conditions_rank_first_and_fall_through() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(
        &a,
        &b,
        "  - { name: plain, match: { path_prefix: /users }, upstream: a }
  - { name: v2, match: { path_prefix: /users, headers: { Accept-Version: \"2\" } }, upstream: b }
  - { name: debug, match: { path: \"/users/{id}\", query: { debug: { present: true } } }, upstream: b, rewrite: { path: /debug } }
",
    )
    .await;
    let (_, json) = call(
        &gw,
        Method::GET,
        "h",
        "/users/1",
        &[("accept-version", "2")],
    )
    .await;
    assert_eq!(json["upstream"], "b");
    let (_, json) = call(
        &gw,
        Method::GET,
        "h",
        "/users/1",
        &[("accept-version", "1")],
    )
    .await;
    assert_eq!(json["upstream"], "a");
    let (_, json) = call(&gw, Method::GET, "h", "/users/1?debug", &[]).await;
    assert_eq!(json["path"], "/debug");
    // The template route needs ?debug; without it the request falls through to the prefix route.
    let (_, json) = call(&gw, Method::GET, "h", "/users/1?x=1", &[]).await;
    assert_eq!(json["upstream"], "a");
    assert_eq!(json["path"], "/users/1");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow_and_unknown_path_is_404() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(
        &a,
        &b,
        "  - { name: read, match: { path: \"/items/{id}\", methods: [GET, HEAD] }, upstream: a }
  - { name: write, match: { path: \"/items/{id}\", methods: [PUT] }, upstream: b }
",
    )
    .await;
    let request = Request::delete(gw.url("/items/3")).body(empty()).unwrap();
    let response = http1_client().fetch(request).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.headers["allow"], "GET, HEAD, PUT");
    assert_eq!(response.headers["content-type"], "application/problem+json");
    let problem = response.json();
    assert_eq!(problem["type"], "urn:gantry:problem:method-not-allowed");
    assert_eq!(problem["status"], 405);
    assert_eq!(problem["instance"], "/items/3");
    assert_eq!(
        problem["request_id"],
        response.headers["x-request-id"].to_str().unwrap()
    );

    let (status, problem) = call(&gw, Method::GET, "h", "/nothing?api_key=secret", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(problem["type"], "urn:gantry:problem:no-route");
    assert_eq!(
        problem["instance"], "/nothing",
        "credentials never echo back"
    );
    assert_eq!(a.request_count() + b.request_count(), 0);
}

#[tokio::test]
async fn rewrites_keep_the_query_and_the_upstream_sees_the_normalised_path() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(
        &a,
        &b,
        "  - { name: users, match: { path: \"/v1/users/{id}\" }, upstream: a, rewrite: { path: \"/users/{id}\" } }
  - { name: legacy, match: { path_prefix: /legacy }, upstream: b, rewrite: { strip_prefix: /legacy } }
",
    )
    .await;
    let (_, json) = call(
        &gw,
        Method::GET,
        "h",
        "/v1/users/42?fields=name&x=%20y",
        &[],
    )
    .await;
    assert_eq!(json["path"], "/users/42");
    assert_eq!(json["query"], "fields=name&x=%20y");
    let (_, json) = call(&gw, Method::GET, "h", "/legacy/a/b?q=1", &[]).await;
    assert_eq!(json["path"], "/a/b");
    assert_eq!(json["query"], "q=1");
    let (_, json) = call(&gw, Method::GET, "h", "/legacy", &[]).await;
    assert_eq!(json["path"], "/");
    // Dot segments and doubled slashes are resolved before matching; %41 is decoded.
    let (_, json) = call(&gw, Method::GET, "h", "/legacy/x/../%41//b", &[]).await;
    assert_eq!(json["path"], "/A/b");
}

#[tokio::test]
async fn a_path_escaping_the_root_is_400_and_reaches_nobody() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(
        &a,
        &b,
        "  - { name: all, match: { path_prefix: / }, upstream: a }\n",
    )
    .await;
    for path in ["/../etc/passwd", "/a/../../b", "/%2e%2e/x"] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        let response = support::raw_request(gw.addr, raw.as_bytes()).await;
        let parsed = &response.responses()[0];
        assert_eq!(parsed.status, 400, "{path}");
        assert_eq!(
            parsed.json()["type"],
            "urn:gantry:problem:invalid-path",
            "{path}"
        );
    }
    assert_eq!(a.request_count(), 0);
}
