#![allow(clippy::unwrap_used)]
//! Header and path hygiene against hostile clients, end to end over raw TCP: CR/LF/NUL
//! injection, header names with `_` (`server.headers_with_underscores`), oversized and too many
//! headers, Host against an absolute-form target, encoded slashes and dots, overlong UTF-8, and
//! spoofed forwarding and identity headers. Single-case tests of the basics (431/414, `..`
//! resolution, replaced X-Forwarded-For) live in `tests/framing.rs` and `tests/proxy.rs`.

mod support;

use support::client::ParsedResponse;
use support::{RawConn, TestGateway, Upstream, raw_request};

/// One catch-all route to `backend`.
const CATCH_ALL: &str = "  - { name: all, match: { path_prefix: / }, upstream: backend }";

/// Sends one request head (`Connection: close` is added) and returns the only response.
async fn exchange(gw: &TestGateway, request_line: &str, headers: &[&str]) -> ParsedResponse {
    let mut text = format!("{request_line}\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    let raw = raw_request(gw.addr, text.as_bytes()).await;
    let responses = raw.responses();
    assert_eq!(responses.len(), 1, "{request_line}: {}", raw.text());
    responses.into_iter().next().unwrap()
}

fn assert_problem(response: &ParsedResponse, status: u16, slug: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{response:?}"
    );
    assert_eq!(
        response.json()["type"],
        format!("urn:gantry:problem:{slug}")
    );
}

// ---------------------------------------------------------------------------------------------
// Header names with underscores
// ---------------------------------------------------------------------------------------------

/// Headers a CGI-style backend would fold into `X-User`, `X-Forwarded-For` and `Gantry-Consumer`.
const UNDERSCORED: [&str; 3] = [
    "X_User: admin",
    "X_Forwarded_For: 6.6.6.6",
    "Gantry_Consumer: root",
];

#[tokio::test(flavor = "multi_thread")]
async fn underscore_headers_are_dropped_by_default() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(&up.url(), "", CATCH_ALL, "").await;
    let mut headers = vec!["Host: a.example", "X-Kept: yes"];
    headers.extend(UNDERSCORED);
    let response = exchange(&gw, "GET /echo HTTP/1.1", &headers).await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = &up.last_request().unwrap().headers;
    assert_eq!(seen["x-kept"], "yes");
    for name in ["x_user", "x_forwarded_for", "gantry_consumer"] {
        assert!(seen.get(name).is_none(), "{name} reached the upstream");
    }
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn underscore_headers_can_be_rejected_with_400() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(
        &up.url(),
        "",
        CATCH_ALL,
        "  headers_with_underscores: reject",
    )
    .await;
    let response = exchange(&gw, "GET /echo HTTP/1.1", &["Host: a.example", "X_User: a"]).await;
    assert_problem(&response, 400, "invalid-header-name");
    assert!(
        response.json()["detail"]
            .as_str()
            .unwrap()
            .contains("x_user")
    );
    assert_eq!(up.request_count(), 0);
    // Names with dashes only still pass.
    let response = exchange(&gw, "GET /echo HTTP/1.1", &["Host: a.example", "X-User: a"]).await;
    assert_eq!(response.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn underscore_headers_can_be_allowed() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(
        &up.url(),
        "",
        CATCH_ALL,
        "  headers_with_underscores: allow",
    )
    .await;
    let response = exchange(&gw, "GET /echo HTTP/1.1", &["Host: a.example", "X_User: a"]).await;
    assert_eq!(response.status, 200);
    assert_eq!(up.last_request().unwrap().headers["x_user"], "a");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_underscore_header_cannot_select_a_route() {
    let up = Upstream::start("echo").await;
    let routes = "  - { name: tenant, match: { path_prefix: /, headers: { x_tenant: gold } }, upstream: backend, rewrite: { path: /gold } }
  - { name: all, match: { path_prefix: / }, upstream: backend }";
    let gw = TestGateway::simple(&up.url(), "", routes, "").await;
    let response = exchange(
        &gw,
        "GET /x HTTP/1.1",
        &["Host: a.example", "X_Tenant: gold"],
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["path"], "/x", "routed by a dropped header");
}

#[test]
fn a_bad_underscore_mode_is_a_located_config_error() {
    let yaml = "version: 1\nlisteners: [{ name: p, address: \"127.0.0.1:0\" }]\nserver:\n  headers_with_underscores: maybe\nupstreams: {}\nroutes: []\n";
    let Err(errors) = gantry::config::load_str("t.yaml", yaml) else {
        panic!("a bad mode was accepted");
    };
    let errors = errors.to_string();
    assert!(errors.contains("t.yaml:4:"), "{errors}");
    assert!(errors.contains("headers_with_underscores"), "{errors}");
}

// ---------------------------------------------------------------------------------------------
// CR/LF/NUL injection, oversized and numerous headers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn injected_control_bytes_never_reach_the_upstream() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(&up.url(), "", CATCH_ALL, "").await;
    // Encoded CR LF in the path and the query stay encoded: no header can be injected upstream.
    for target in [
        "/a%0d%0aX-Injected:%20yes",
        "/a?q=%0d%0aX-Injected:%20yes",
        "/a%0aX-Injected:yes",
    ] {
        let response = exchange(&gw, &format!("GET {target} HTTP/1.1"), &["Host: a.example"]).await;
        assert_eq!(response.status, 200, "{target}: {response:?}");
        let seen = up.last_request().unwrap();
        assert!(seen.headers.get("x-injected").is_none(), "{target}");
        assert!(!seen.uri.to_string().contains('\n'), "{target}");
    }
    // An encoded NUL in the path, raw controls in the target or in a header value: 400.
    let response = exchange(&gw, "GET /a%00b HTTP/1.1", &["Host: a.example"]).await;
    assert_problem(&response, 400, "invalid-path");
    for head in [
        "GET /a\rb HTTP/1.1\r\nHost: a.example\r\n\r\n",
        "GET /a\0b HTTP/1.1\r\nHost: a.example\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: a.example\r\nX-A: 1\0\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: a.example\r\nX-A: 1\rX-Injected: yes\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: a.example\rX-Injected: yes\r\n\r\n",
    ] {
        let raw = raw_request(gw.addr, head.as_bytes()).await;
        assert_eq!(raw.statuses(), vec![400], "{head:?}: {}", raw.text());
        assert!(raw.closed_by_peer, "{head:?}");
    }
    assert_eq!(up.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_or_too_large_headers_are_431() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(
        &up.url(),
        "",
        CATCH_ALL,
        "  limits:\n    max_header_bytes: 4KiB",
    )
    .await;
    // Over Gantry's byte limit but inside the head buffer: the edge's problem+json.
    let big = format!("X-Big: {}", "a".repeat(5000));
    let response = exchange(&gw, "GET / HTTP/1.1", &["Host: a.example", &big]).await;
    assert_problem(&response, 431, "headers-too-large");
    // Many small headers adding up past the limit: the same.
    let many: Vec<String> = (0..90)
        .map(|i| format!("X-H{i}: {}", "b".repeat(60)))
        .collect();
    let mut headers = vec!["Host: a.example"];
    headers.extend(many.iter().map(String::as_str));
    let response = exchange(&gw, "GET / HTTP/1.1", &headers).await;
    assert_problem(&response, 431, "headers-too-large");
    // More than 100 header lines, however small: the parser's 431, connection closed.
    let lines: Vec<String> = (0..120).map(|i| format!("X-{i}: 1")).collect();
    let mut head = "GET / HTTP/1.1\r\nHost: a.example\r\n".to_owned();
    for line in &lines {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let raw = raw_request(gw.addr, head.as_bytes()).await;
    assert_eq!(raw.statuses(), vec![431], "{}", raw.text());
    assert_problem(&raw.responses()[0], 431, "headers-too-large");
    assert!(raw.closed_by_peer);
    assert_eq!(up.request_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Host and absolute-form
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_form_target_wins_over_a_spoofed_host_everywhere() {
    let up = Upstream::start("echo").await;
    let routes = "  - { name: admin, match: { hosts: [admin.example], path_prefix: / }, upstream: backend, rewrite: { path: /admin } }
  - { name: all, match: { path_prefix: / }, upstream: backend, rewrite: { path: /public } }";
    let gw = TestGateway::simple(&up.url(), "", routes, "").await;
    // Routed by the absolute form; the upstream sees that authority, never the Host header's.
    let response = exchange(
        &gw,
        "GET http://public.example/x HTTP/1.1",
        &["Host: admin.example"],
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["path"], "/public");
    let seen = up.last_request().unwrap();
    let host = seen.headers["host"].to_str().unwrap();
    assert!(!host.contains("admin"), "{host}");
    let xfh = seen
        .headers
        .get("x-forwarded-host")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(xfh.as_ref().is_none_or(|h| !h.contains("admin")), "{xfh:?}");
    // Userinfo, an empty host, or garbage in the absolute form: 400.
    for target in ["http://evil@admin.example/", "http:///x", "http://a b/"] {
        let raw = raw_request(
            gw.addr,
            format!("GET {target} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(raw.statuses(), vec![400], "{target}: {}", raw.text());
    }
    assert_eq!(up.request_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn encoded_path_tricks_never_reach_a_route_they_should_not() {
    let public = Upstream::start("public").await;
    let admin = Upstream::start("admin").await;
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
upstreams:
  public: {{ targets: [{{ url: \"{}\" }}] }}
  admin: {{ targets: [{{ url: \"{}\" }}] }}
routes:
  - {{ name: admin, match: {{ path_prefix: /admin }}, upstream: admin }}
  - {{ name: public, match: {{ path_prefix: /public }}, upstream: public }}
",
        public.url(),
        admin.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    // (target, which upstream must get it and with which path; None = a 4xx and nobody).
    let cases: &[(&str, Option<(&str, &str)>)] = &[
        // Dots resolve before routing: the route is chosen by the path the upstream gets.
        ("/public/%2e%2e/admin/x", Some(("admin", "/admin/x"))),
        ("/public/.%2E/admin/x", Some(("admin", "/admin/x"))),
        ("//admin//x", Some(("admin", "/admin/x"))),
        ("/%61dmin/x", Some(("admin", "/admin/x"))),
        // An encoded slash is data, never a separator: `..%2f` climbs nowhere.
        (
            "/public/..%2fadmin/x",
            Some(("public", "/public/..%2Fadmin/x")),
        ),
        (
            "/public/%2e%2e%2fadmin",
            Some(("public", "/public/..%2Fadmin")),
        ),
        // Overlong UTF-8 for `.` and `/` is not decoded (it is not valid UTF-8 at all).
        (
            "/public/%c0%ae%c0%ae/admin",
            Some(("public", "/public/%C0%AE%C0%AE/admin")),
        ),
        (
            "/public/%c0%af..%c0%afadmin",
            Some(("public", "/public/%C0%AF..%C0%AFadmin")),
        ),
        // Climbing above the root, encoded or not: 400 invalid-path.
        ("/public/../../admin", None),
        ("/%2e%2e/admin", None),
        ("/public/%2E%2E/%2e%2e/%2e%2e/etc/passwd", None),
        // A malformed escape or an encoded NUL: 400.
        ("/admin%zz", None),
        ("/public/%00/admin", None),
    ];
    for (target, expected) in cases {
        let (before_public, before_admin) = (public.request_count(), admin.request_count());
        let response = exchange(&gw, &format!("GET {target} HTTP/1.1"), &["Host: a.example"]).await;
        match expected {
            Some((name, path)) => {
                assert_eq!(response.status, 200, "{target}: {response:?}");
                let upstream = if *name == "admin" { &admin } else { &public };
                let seen = upstream.last_request().unwrap();
                assert_eq!(seen.uri.path(), *path, "{target}");
                let other = if *name == "admin" { &public } else { &admin };
                let other_before = if *name == "admin" {
                    before_public
                } else {
                    before_admin
                };
                assert_eq!(
                    other.request_count(),
                    other_before,
                    "{target} reached {}",
                    other.name()
                );
            }
            None => {
                assert_problem(&response, 400, "invalid-path");
                assert_eq!(public.request_count(), before_public, "{target}");
                assert_eq!(admin.request_count(), before_admin, "{target}");
            }
        }
    }
    // Raw (unencoded) overlong UTF-8 bytes in the target: the parser refuses the request line.
    let mut head =
        b"GET /public/\xc0\xae\xc0\xae/admin HTTP/1.1\r\nHost: a.example\r\n\r\n".to_vec();
    let raw = raw_request(gw.addr, &head).await;
    assert_eq!(raw.statuses(), vec![400], "{}", raw.text());
    head.clear();
}

// ---------------------------------------------------------------------------------------------
// Spoofed forwarding and identity headers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_forwarding_and_identity_headers_never_reach_the_upstream() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(&up.url(), "", CATCH_ALL, "").await;
    let spoofed = [
        "Host: a.example",
        "X-Forwarded-For: 6.6.6.6",
        "X-Forwarded-For: 7.7.7.7, 8.8.8.8",
        "x-forwarded-for: 9.9.9.9",
        "Forwarded: for=6.6.6.6;proto=https;host=admin.example",
        "X-Real-IP: 6.6.6.6",
        "X-Forwarded-Host: admin.example",
        "X-Forwarded-Proto: https",
        "GANTRY-CONSUMER: root",
        "Gantry-Subject: root",
        "gantry-client-cert-subject: CN=admin",
        "Gantry-Scopes: admin",
    ];
    let mut conn = RawConn::connect(gw.addr).await;
    let mut head = "GET /echo HTTP/1.1\r\n".to_owned();
    for h in spoofed {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    conn.send(head.as_bytes()).await.unwrap();
    let response = conn.read_response().await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let seen = up.last_request().unwrap().headers;
    let all = |name: &str| -> Vec<String> {
        seen.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(all("x-real-ip"), vec!["127.0.0.1"]);
    assert_eq!(all("x-forwarded-proto"), vec!["http"]);
    assert_eq!(all("x-forwarded-host"), vec!["a.example"]);
    assert!(
        all("forwarded").iter().all(|f| !f.contains("6.6.6.6")),
        "{:?}",
        all("forwarded")
    );
    // Gantry sets some `Gantry-*` headers itself (Gantry-Timeout-Ms); none of the client's pass.
    for name in [
        "gantry-consumer",
        "gantry-subject",
        "gantry-client-cert-subject",
        "gantry-scopes",
    ] {
        assert!(seen.get(name).is_none(), "{name} reached the upstream");
    }
}

#[test]
fn the_hostile_example_loads_with_its_documented_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hostile.yaml");
    let config = gantry::config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let server = &config.runtime.server;
    assert_eq!(
        server.headers_with_underscores,
        gantry::config::file_hostile::FileUnderscoreHeaders::Drop
    );
    assert_eq!(server.limits.h2_max_pending_reset_streams, 50);
    assert_eq!(server.limits.h2_max_local_error_reset_streams, 256);
    assert_eq!(server.limits.h2_max_header_list_size, None);
    assert_eq!(
        gantry::config::compile_hostile::h2_max_control_frames_per_second(
            &config.runtime.file.server.limits
        ),
        1000
    );
    assert_eq!(
        server.path_with_escaped_slashes,
        gantry::config::file_hostile::FileEscapedSlashes::Keep
    );
}

#[test]
fn bad_h2_limits_are_located_config_errors() {
    let yaml = "version: 1
listeners: [{ name: p, address: \"127.0.0.1:0\" }]
server:
  limits:
    h2_max_pending_reset_streams: 0
    h2_max_local_error_reset_streams: 0
    h2_max_header_list_size: 5GiB
    h2_max_control_frames_per_second: 0
upstreams: {}
routes: []
";
    let Err(errors) = gantry::config::load_str("t.yaml", yaml) else {
        panic!("bad h2 limits were accepted");
    };
    let errors = errors.to_string();
    for expected in [
        "t.yaml:5:35: server.limits.h2_max_pending_reset_streams: must be at least 1",
        "t.yaml:6:39: server.limits.h2_max_local_error_reset_streams: must be at least 1",
        "t.yaml:7:30: server.limits.h2_max_header_list_size: must be between 1 byte and 4GiB",
        "t.yaml:8:39: server.limits.h2_max_control_frames_per_second: must be at least 1",
    ] {
        assert!(errors.contains(expected), "{expected}\nnot in\n{errors}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn escaped_slashes_can_be_rejected() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(
        &up.url(),
        "",
        CATCH_ALL,
        "  path_with_escaped_slashes: reject",
    )
    .await;
    for target in ["/public/..%2fadmin", "/a%2Fb", "/a%5cb", "/a%5C..%5Cb"] {
        let response = exchange(&gw, &format!("GET {target} HTTP/1.1"), &["Host: a.example"]).await;
        assert_problem(&response, 400, "escaped-slash");
    }
    assert_eq!(up.request_count(), 0);
    let response = exchange(&gw, "GET /a/b%20c HTTP/1.1", &["Host: a.example"]).await;
    assert_eq!(response.status, 200);
}

/// A malformed `Host` is refused whether or not any route reads hosts (without host rules the
/// edge only checks it, and never turns it into text).
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_host_is_refused_with_or_without_host_routes() {
    let up = Upstream::start("backend").await;
    for host_rule in ["", "hosts: [api.example], "] {
        let yaml = format!(
            "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
upstreams:
  backend: {{ targets: [{{ url: \"{}\" }}] }}
routes:
  - {{ name: any, match: {{ {host_rule}path_prefix: / }}, upstream: backend }}
",
            up.url()
        );
        let gw = TestGateway::start_with(&yaml, &[]).await;
        let before = up.request_count();
        for host in ["evil@api.example", "api.example:8a", "[bad", ":80", "a/b"] {
            let raw = raw_request(
                gw.addr,
                format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await;
            assert_eq!(
                raw.statuses(),
                vec![400],
                "{host_rule}{host}: {}",
                raw.text()
            );
        }
        assert_eq!(up.request_count(), before, "{host_rule}");
        // A good one still passes, in any case and with a port.
        let raw = raw_request(
            gw.addr,
            b"GET / HTTP/1.1\r\nHost: API.example:8080\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(raw.statuses(), vec![200], "{host_rule}: {}", raw.text());
        assert_eq!(up.request_count(), before + 1, "{host_rule}");
    }
}
