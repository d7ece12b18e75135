#![allow(clippy::unwrap_used)]
//! IP allow/deny end to end, per route and globally (`server.ip`), on the client IP as derived
//! with `server.trusted_proxies`: a spoofed X-Forwarded-For from an untrusted peer changes nothing.

mod support;

use http::Request;
use support::{TestGateway, Upstream, empty, http1_client};

const ROUTES: &str = r#"  - name: denied-loopback
    match: { path_prefix: /deny-me }
    upstream: backend
    policies: { ip: { deny: [127.0.0.1/32, "::1"] } }
  - name: office-only
    match: { path_prefix: /office }
    upstream: backend
    policies: { ip: { allow: [203.0.113.0/24, "2001:db8::/32"], deny: [203.0.113.66/32] } }
  - name: loopback-only
    match: { path_prefix: /local }
    upstream: backend
    policies: { ip: { allow: [127.0.0.0/8] } }
  - name: open
    match: { path_prefix: /open }
    upstream: backend"#;

async fn get(gw: &TestGateway, path: &str, xff: Option<&str>) -> support::Collected {
    let mut builder = Request::get(gw.url(path));
    if let Some(xff) = xff {
        builder = builder.header("x-forwarded-for", xff);
    }
    http1_client().fetch(builder.body(empty()).unwrap()).await
}

#[tokio::test]
async fn route_rules_apply_to_the_peer_when_it_is_not_a_trusted_proxy() {
    let upstream = Upstream::start("backend").await;
    let gw = TestGateway::simple(&upstream.url(), "", ROUTES, "").await;
    let denied = get(&gw, "/deny-me", None).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.json()["type"], "urn:gantry:problem:ip-denied");
    assert_eq!(get(&gw, "/local", None).await.status, 200);
    // Claiming to be in the office through X-Forwarded-For does not work from an untrusted peer.
    assert_eq!(get(&gw, "/office", Some("203.0.113.5")).await.status, 403);
    assert_eq!(upstream.request_count(), 1);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_ip_decides() {
    let upstream = Upstream::start("backend").await;
    let gw = TestGateway::simple(
        &upstream.url(),
        "",
        ROUTES,
        "  trusted_proxies: [127.0.0.1/32]",
    )
    .await;
    assert_eq!(get(&gw, "/office", Some("203.0.113.5")).await.status, 200);
    assert_eq!(get(&gw, "/office", Some("2001:db8::7")).await.status, 200);
    assert_eq!(get(&gw, "/office", Some("203.0.113.66")).await.status, 403);
    assert_eq!(get(&gw, "/office", Some("198.51.100.1")).await.status, 403);
    // The client's own leftmost entry is not believed: the proxy appended the real one.
    assert_eq!(
        get(&gw, "/office", Some("203.0.113.5, 198.51.100.1"))
            .await
            .status,
        403
    );
    assert_eq!(get(&gw, "/deny-me", Some("203.0.113.5")).await.status, 200);
}

#[tokio::test]
async fn server_ip_rules_apply_to_every_request_before_routing() {
    let upstream = Upstream::start("backend").await;
    let gw =
        TestGateway::simple(&upstream.url(), "", ROUTES, "  ip: { deny: [127.0.0.0/8] }").await;
    for path in ["/open", "/local", "/no-such-route"] {
        let rsp = get(&gw, path, None).await;
        assert_eq!(rsp.status, 403, "{path}");
        assert_eq!(rsp.json()["type"], "urn:gantry:problem:ip-denied");
    }
    assert_eq!(upstream.request_count(), 0);
}

#[test]
fn a_bad_cidr_is_a_located_config_error() {
    let text = "version: 1\nlisteners: [{ name: p, address: \"127.0.0.1:0\" }]\nserver:\n  ip: { allow: [10.0.0.0/33] }\nupstreams: { b: { targets: [{ url: \"http://127.0.0.1:9\" }] } }\nroutes:\n  - { name: r, match: { path: / }, upstream: b, policies: { ip: { deny: [nope] } } }\n";
    let errors = gantry::config::load_str_with_env("gantry.yaml", text, &|_| None)
        .err()
        .expect("must be rejected")
        .to_string();
    assert!(
        errors.contains(
            "gantry.yaml:4:17: server.ip.allow[0]: \"10.0.0.0/33\" is not an IP address or CIDR"
        ),
        "{errors}"
    );
    assert!(
        errors.contains("routes[0].policies.ip.deny[0]: \"nope\""),
        "{errors}"
    );
}
