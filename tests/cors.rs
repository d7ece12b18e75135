#![allow(clippy::unwrap_used)]
//! CORS end to end: the gateway answers preflights for exact origins only, never reflects a
//! foreign origin, and puts the CORS headers on its own 401s too; `"*"` with credentials is a
//! located config error.

mod support;

use http::{Method, Request};
use support::{TestGateway, Upstream, empty, http1_client};

const APP: &str = "https://app.example.com";

fn config(upstream: &str, origins: &str, credentials: bool) -> String {
    format!(
        r#"version: 1
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
upstreams:
  backend:
    targets: [{{ url: "{upstream}" }}]
consumers:
  - {{ name: web, api_keys: ["web-key-1"] }}
routes:
  - name: users
    match: {{ path: "/v1/users/{{id}}", methods: [GET, DELETE] }}
    upstream: backend
    policies:
      cors:
        allow_origins: {origins}
        allow_methods: [GET]
        allow_headers: [X-Api-Key, Content-Type]
        expose_headers: [X-Request-Id]
        allow_credentials: {credentials}
        max_age: 10m
      auth: {{ methods: [api_key] }}
  - name: plain
    match: {{ path_prefix: /plain }}
    upstream: backend
"#
    )
}

async fn send(
    gw: &TestGateway,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> support::Collected {
    let mut builder = Request::builder().method(method).uri(gw.url(path));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    http1_client().fetch(builder.body(empty()).unwrap()).await
}

#[tokio::test]
async fn preflights_are_answered_for_listed_origins_only() {
    let upstream = Upstream::start("backend").await;
    let gw =
        TestGateway::start_with(&config(&upstream.url(), &format!("[\"{APP}\"]"), true), &[]).await;

    let ok = send(
        &gw,
        Method::OPTIONS,
        "/v1/users/7",
        &[
            ("origin", APP),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-api-key"),
        ],
    )
    .await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.headers["access-control-allow-origin"], APP);
    assert_eq!(ok.headers["access-control-allow-credentials"], "true");
    assert_eq!(ok.headers["access-control-allow-methods"], "GET");
    assert_eq!(
        ok.headers["access-control-allow-headers"],
        "X-Api-Key, Content-Type"
    );
    assert_eq!(ok.headers["access-control-max-age"], "600");
    assert_eq!(ok.headers["vary"], "Origin");

    let refused: [&[(&str, &str)]; 3] = [
        &[
            ("origin", "https://evil.example.com"),
            ("access-control-request-method", "GET"),
        ],
        &[("origin", APP), ("access-control-request-method", "DELETE")],
        &[
            ("origin", APP),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-secret"),
        ],
    ];
    for headers in refused {
        let rsp = send(&gw, Method::OPTIONS, "/v1/users/7", headers).await;
        assert_eq!(rsp.status, 403, "{headers:?}");
        assert_eq!(rsp.json()["type"], "urn:gantry:problem:cors-denied");
        assert!(rsp.headers.get("access-control-allow-origin").is_none());
    }
    // Preflights never reach the upstream.
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn actual_requests_get_cors_headers_even_on_the_gateways_own_errors() {
    let upstream = Upstream::start("backend").await;
    let gw =
        TestGateway::start_with(&config(&upstream.url(), &format!("[\"{APP}\"]"), true), &[]).await;

    let unauthorized = send(&gw, Method::GET, "/v1/users/7", &[("origin", APP)]).await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(unauthorized.headers["access-control-allow-origin"], APP);
    assert_eq!(
        unauthorized.headers["access-control-allow-credentials"],
        "true"
    );
    assert_eq!(
        unauthorized.headers["access-control-expose-headers"],
        "X-Request-Id"
    );

    let ok = send(
        &gw,
        Method::GET,
        "/v1/users/7",
        &[("origin", APP), ("x-api-key", "web-key-1")],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers["access-control-allow-origin"], APP);

    // A foreign origin is not reflected (and not refused: the browser enforces CORS).
    let foreign = send(
        &gw,
        Method::GET,
        "/v1/users/7",
        &[
            ("origin", "https://evil.example.com"),
            ("x-api-key", "web-key-1"),
        ],
    )
    .await;
    assert_eq!(foreign.status, 200);
    assert!(foreign.headers.get("access-control-allow-origin").is_none());
    assert!(
        foreign
            .headers
            .get("access-control-allow-credentials")
            .is_none()
    );
}

#[tokio::test]
async fn a_wildcard_origin_sends_a_star_never_the_callers_origin() {
    let upstream = Upstream::start("backend").await;
    let gw = TestGateway::start_with(&config(&upstream.url(), "[\"*\"]", false), &[]).await;
    let rsp = send(
        &gw,
        Method::GET,
        "/v1/users/7",
        &[("origin", "https://any.example.org")],
    )
    .await;
    assert_eq!(rsp.status, 401);
    assert_eq!(rsp.headers["access-control-allow-origin"], "*");
    assert!(
        rsp.headers
            .get("access-control-allow-credentials")
            .is_none()
    );
}

#[test]
fn a_wildcard_with_credentials_and_bad_origins_are_located_config_errors() {
    let text = config(
        "http://127.0.0.1:9",
        "[\"*\", \"https://app.example.com/path\", \"app.example.com\"]",
        true,
    );
    let errors = gantry::config::load_str_with_env("gantry.yaml", &text, &|_| None)
        .err()
        .expect("must be rejected")
        .to_string();
    assert!(errors.contains("gantry.yaml:15:25: routes[0].policies.cors.allow_origins[0]: \"*\" cannot be used with allow_credentials"), "{errors}");
    assert!(errors.contains("routes[0].policies.cors.allow_origins[1]: \"https://app.example.com/path\" is not an origin"), "{errors}");
    assert!(
        errors.contains("routes[0].policies.cors.allow_origins[2]"),
        "{errors}"
    );
}
