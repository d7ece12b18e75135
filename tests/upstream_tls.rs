#![allow(clippy::unwrap_used)]
//! TLS to upstreams end to end: `https://` targets verified against a configured CA, SNI from
//! the target host or `server_name`, upstream mTLS, h2 by ALPN, and precise 502s when the
//! upstream's certificate is not trusted or not for the name. Certificates are made by rcgen.

mod support;

use support::tls::{TestCa, server_config};
use support::{TestGateway, Upstream, get};

/// A gateway with one cleartext listener and upstream `backend` at `url`, `extra` being more
/// YAML under `upstreams.backend` (indented 4).
async fn gateway(url: &str, extra: &str) -> TestGateway {
    let yaml = format!(
        "version: 1\n\
         listeners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\n\
         upstreams:\n  backend:\n    targets: [{{ url: \"{url}\" }}]\n{extra}\n\
         routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: backend }}\n"
    );
    TestGateway::start_with(&yaml, &[]).await
}

fn ca_block(dir: &std::path::Path) -> String {
    format!("    tls:\n      ca: \"{}/ca.pem\"\n", dir.display())
}

/// Asserts a 502 problem+json of type `upstream-tls` whose detail contains `reason`.
async fn assert_tls_failure(gw: &TestGateway, reason: &str) {
    let (status, headers, body) = get(&gw.url("/echo")).await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "urn:gantry:problem:upstream-tls");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("upstream backend failed the TLS handshake"),
        "{detail}"
    );
    assert!(detail.contains(reason), "{detail}");
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Upstream CA");
    ca.write(dir.path(), "ca");
    let identity = ca.server(&["localhost"]);
    let upstream =
        Upstream::start_tls("secure", server_config(&identity, &["http/1.1"], None)).await;
    let gw = gateway(&upstream.https_url(), &ca_block(dir.path())).await;
    let (status, _, body) = get(&gw.url("/echo")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(upstream.request_count(), 1);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.version, http::Version::HTTP_11);
    // A second request reuses the pooled TLS connection.
    assert_eq!(get(&gw.url("/echo")).await.0, 200);
    assert_eq!(upstream.connection_count(), 1);
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_a_precise_502() {
    let dir = tempfile::tempdir().unwrap();
    TestCa::new("Some Other CA").write(dir.path(), "ca");
    let real = TestCa::new("Upstream CA");
    let upstream = Upstream::start_tls(
        "secure",
        server_config(&real.server(&["localhost"]), &["http/1.1"], None),
    )
    .await;
    let gw = gateway(&upstream.https_url(), &ca_block(dir.path())).await;
    assert_tls_failure(&gw, "certificate not trusted").await;
    assert_eq!(upstream.request_count(), 0);

    // Without `ca`, the system roots are used, and they do not know a test CA either. (A machine
    // without any system roots rejects such a config instead; that part is checked only where
    // roots exist.)
    if !rustls_native_certs::load_native_certs().certs.is_empty() {
        let gw = gateway(&upstream.https_url(), "").await;
        assert_tls_failure(&gw, "certificate not trusted").await;
    }
}

#[tokio::test]
async fn the_name_is_checked_and_can_be_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Upstream CA");
    ca.write(dir.path(), "ca");
    let upstream = Upstream::start_tls(
        "secure",
        server_config(&ca.server(&["backend.internal"]), &["http/1.1"], None),
    )
    .await;
    // The target is addressed as localhost, the certificate is for backend.internal.
    let gw = gateway(&upstream.https_url(), &ca_block(dir.path())).await;
    assert_tls_failure(&gw, "certificate not valid for the server name").await;

    let named = format!(
        "{}      server_name: backend.internal\n",
        ca_block(dir.path())
    );
    let gw = gateway(&upstream.https_url(), &named).await;
    assert_eq!(get(&gw.url("/echo")).await.0, 200);
    assert_eq!(upstream.request_count(), 1);
}

#[tokio::test]
async fn upstream_mtls_presents_the_configured_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Upstream CA");
    ca.write(dir.path(), "ca");
    let clients = TestCa::new("Gateway clients CA");
    clients.client("gantry", "Edge").write(dir.path(), "gantry");
    let upstream = Upstream::start_tls(
        "secure",
        server_config(&ca.server(&["localhost"]), &["http/1.1"], Some(&clients)),
    )
    .await;

    // Without a client certificate the upstream refuses the handshake (with TLS 1.3, by an alert
    // the gateway reads after its side of the handshake is done).
    let gw = gateway(&upstream.https_url(), &ca_block(dir.path())).await;
    assert_tls_failure(&gw, "the upstream rejected the handshake").await;
    assert_eq!(upstream.request_count(), 0);

    let d = dir.path().display();
    let with_identity = format!(
        "{}      client_cert: \"{d}/gantry.pem\"\n      client_key: \"{d}/gantry.key\"\n",
        ca_block(dir.path())
    );
    let gw = gateway(&upstream.https_url(), &with_identity).await;
    let (status, _, body) = get(&gw.url("/echo")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(upstream.request_count(), 1);
}

#[tokio::test]
async fn h2_and_grpc_upstreams_negotiate_h2_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Upstream CA");
    ca.write(dir.path(), "ca");
    // The upstream only speaks h2: without ALPN h2 the handshake would fail.
    let upstream = Upstream::start_tls(
        "grpc",
        server_config(&ca.server(&["localhost"]), &["h2"], None),
    )
    .await;
    let extra = format!("    protocol: grpc\n{}", ca_block(dir.path()));
    let gw = gateway(&upstream.https_url(), &extra).await;
    let (status, _, body) = get(&gw.url("/echo")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.version, http::Version::HTTP_2);
    assert_eq!(seen.uri.scheme_str(), Some("https"));
}

#[tokio::test]
async fn a_plain_http_upstream_behind_an_https_url_is_a_precise_502() {
    let dir = tempfile::tempdir().unwrap();
    TestCa::new("Upstream CA").write(dir.path(), "ca");
    let plain = Upstream::start("plain").await;
    let gw = gateway(&plain.https_url(), &ca_block(dir.path())).await;
    let (status, _, body) = get(&gw.url("/echo")).await;
    assert_eq!(status, 502);
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "urn:gantry:problem:upstream-tls");
}

fn load(yaml: &str) -> String {
    match gantry::config::load_str_with_env("gantry.yaml", yaml, &|_| None) {
        Ok(_) => panic!("the config was accepted"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn bad_upstream_tls_settings_are_config_errors_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("garbage.pem"), "garbage").unwrap();
    let yaml = format!(
        "version: 1
listeners:
  - {{ name: public, address: \"127.0.0.1:0\" }}
upstreams:
  secure:
    targets: [{{ url: \"https://localhost:8443\" }}]
    tls:
      ca: \"{d}/garbage.pem\"
      server_name: \"not a name\"
      client_cert: \"{d}/missing.pem\"
  plain:
    targets: [{{ url: \"http://localhost:8080\" }}]
    tls: {{ ca: \"{d}/garbage.pem\" }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: secure }}
"
    );
    let errors = load(&yaml);
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 5, "{errors}");
    assert!(
        lines[0].starts_with("gantry.yaml:8:11: upstreams.secure.tls.ca: ")
            && lines[0].contains("garbage.pem: no certificate found"),
        "{errors}"
    );
    assert!(
        lines[1].starts_with("gantry.yaml:9:20: upstreams.secure.tls.server_name: "),
        "{errors}"
    );
    assert!(
        lines[2].starts_with(
            "gantry.yaml:10:20: upstreams.secure.tls.client_cert: client_cert needs client_key"
        ),
        "{errors}"
    );
    assert!(
        lines[3]
            .starts_with("gantry.yaml:13:10: upstreams.plain.tls: tls applies to https:// targets"),
        "{errors}"
    );
    assert!(
        lines[4].starts_with("gantry.yaml:13:16: upstreams.plain.tls.ca: "),
        "{errors}"
    );
}

#[tokio::test]
async fn a_reload_keeps_tls_connections_to_unchanged_upstreams_and_renews_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Upstream CA");
    ca.write(dir.path(), "ca");
    let upstream = Upstream::start_tls(
        "secure",
        server_config(&ca.server(&["localhost"]), &["http/1.1"], None),
    )
    .await;
    let yaml = |grace: &str, extra: &str| {
        format!(
            "version: 1\n\
             listeners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\n\
             server: {{ shutdown_grace: {grace} }}\n\
             upstreams:\n  backend:\n    targets: [{{ url: \"{}\" }}]\n{}{extra}\n\
             routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: backend }}\n",
            upstream.https_url(),
            ca_block(dir.path())
        )
    };
    let path = dir.path().join("gantry.yaml");
    std::fs::write(&path, yaml("5s", "")).unwrap();
    let gw = TestGateway::start_file(&path).await;
    assert_eq!(get(&gw.url("/echo")).await.0, 200);
    assert_eq!(upstream.connection_count(), 1);

    // Unrelated change: the pooled TLS connection is kept and reused.
    std::fs::write(&path, yaml("6s", "")).unwrap();
    gw.gateway().reload().await.unwrap();
    assert_eq!(get(&gw.url("/echo")).await.0, 200);
    assert_eq!(upstream.connection_count(), 1);

    // The upstream's TLS settings changed: new connections with the new settings.
    std::fs::write(&path, yaml("6s", "      server_name: localhost\n")).unwrap();
    gw.gateway().reload().await.unwrap();
    assert_eq!(get(&gw.url("/echo")).await.0, 200);
    assert_eq!(upstream.connection_count(), 2);
}

#[tokio::test]
async fn websockets_pass_through_tls_on_both_sides() {
    use futures_util::{SinkExt, StreamExt};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let ca = TestCa::new("Test CA");
    ca.write(dir.path(), "ca");
    ca.server(&["localhost"]).write(dir.path(), "site");
    let upstream = Upstream::start_tls(
        "secure",
        server_config(&ca.server(&["localhost"]), &["http/1.1"], None),
    )
    .await;
    let yaml = format!(
        "version: 1\n\
         listeners:\n  - name: public-tls\n    address: \"127.0.0.1:0\"\n    tls:\n      certificates: [{{ cert: \"{d}/site.pem\", key: \"{d}/site.key\" }}]\n\
         upstreams:\n  backend:\n    targets: [{{ url: \"{}\" }}]\n{}\n\
         routes:\n  - {{ name: chat, match: {{ path: /ws }}, upstream: backend, websocket: true }}\n",
        upstream.https_url(),
        ca_block(dir.path())
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let stream =
        support::tls_handshake(gw.addr, ca.client_config(&["http/1.1"], None), "localhost")
            .await
            .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", stream)
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text("over tls"))
        .await
        .unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "over tls");
    ws.close(None).await.unwrap();
    assert_eq!(upstream.request_count(), 1);
}
