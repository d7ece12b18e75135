#![allow(clippy::unwrap_used)]
//! TLS termination end to end: certificates by SNI, ALPN h2, client certificates (mTLS),
//! certificate rotation on disk, hostile handshakes, and config errors for bad files.
//! Every certificate is made in the test by rcgen.

mod support;

use std::path::Path;
use std::time::Duration;

use support::client::{RawConn, raw_request};
use support::tls::{Pem, TestCa};
use support::{TestGateway, TlsConn, Upstream, tls_handshake};

/// A gateway config with one TLS listener (`tls` is the YAML under `tls:`, indented 6) in front
/// of `upstream`.
fn config(tls: &str, upstream: &str) -> String {
    format!(
        "version: 1\n\
         listeners:\n  - name: public-tls\n    address: \"127.0.0.1:0\"\n    tls:\n{tls}\n\
         server:\n  shutdown_grace: 5s\n\
         upstreams:\n  backend:\n    targets: [{{ url: \"{upstream}\" }}]\n\
         routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: backend }}\n"
    )
}

/// `certificates:` YAML for pairs written into `dir` under these names.
fn certificates(dir: &Path, names: &[&str]) -> String {
    let mut yaml = String::from("      certificates:\n");
    for name in names {
        let dir = dir.display();
        yaml.push_str(&format!(
            "        - {{ cert: \"{dir}/{name}.pem\", key: \"{dir}/{name}.key\" }}\n"
        ));
    }
    yaml
}

/// The DNS names of the leaf certificate a connection was served.
fn served_names(conn: &TlsConn) -> Vec<String> {
    gantry::tls::dns_names(&conn.server_certificates[0])
}

struct Setup {
    dir: tempfile::TempDir,
    ca: TestCa,
    upstream: Upstream,
}

async fn setup() -> Setup {
    Setup {
        dir: tempfile::tempdir().unwrap(),
        ca: TestCa::new("Gantry Test CA"),
        upstream: Upstream::start("backend").await,
    }
}

#[tokio::test]
async fn a_tls_listener_terminates_and_forwards_as_https() {
    let s = setup().await;
    s.ca.server(&["localhost"]).write(s.dir.path(), "site");
    let gw = TestGateway::start_with(
        &config(&certificates(s.dir.path(), &["site"]), &s.upstream.url()),
        &[],
    )
    .await;
    let mut conn = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    let rsp = conn.get("/echo").await.unwrap();
    assert_eq!(rsp.status, 200);
    let seen = s.upstream.last_request().unwrap();
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    // The plain port of the same gateway would not do: this one only speaks TLS.
    assert_eq!(
        gw.gateway()
            .tls_stats("public-tls")
            .await
            .unwrap()
            .completed,
        1
    );
}

#[tokio::test]
async fn sni_picks_the_certificate_and_the_first_is_the_default() {
    let s = setup().await;
    s.ca.server(&["api.example.com", "127.0.0.1"])
        .write(s.dir.path(), "api");
    s.ca.server(&["*.example.org"])
        .write(s.dir.path(), "wildcard");
    let gw = TestGateway::start_with(
        &config(
            &certificates(s.dir.path(), &["api", "wildcard"]),
            &s.upstream.url(),
        ),
        &[],
    )
    .await;
    let client = s.ca.client_config(&["http/1.1"], None);

    let mut org = TlsConn::connect(gw.addr, client.clone(), "shop.example.org")
        .await
        .unwrap();
    assert_eq!(served_names(&org), ["*.example.org"]);
    assert_eq!(org.get("/echo").await.unwrap().status, 200);

    let api = TlsConn::connect(gw.addr, client.clone(), "api.example.com")
        .await
        .unwrap();
    assert_eq!(served_names(&api), ["api.example.com"]);

    // An IP address sends no SNI at all: the first certificate is the default.
    let default = TlsConn::connect(gw.addr, client.clone(), "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(served_names(&default), ["api.example.com"]);

    // A name no certificate covers gets the default too, which the client then rejects.
    let err = tls_handshake(gw.addr, client, "nothing.example.net")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("only valid for DnsName(\"api.example.com\")"),
        "{err}"
    );
}

#[tokio::test]
async fn h2_is_chosen_by_alpn_and_only_when_offered() {
    let s = setup().await;
    s.ca.server(&["localhost"]).write(s.dir.path(), "site");
    let both = certificates(s.dir.path(), &["site"]);
    let gw = TestGateway::start_with(&config(&both, &s.upstream.url()), &[]).await;

    let mut h2 = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["h2", "http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    assert!(h2.is_h2());
    let rsp = h2.get("/echo").await.unwrap();
    assert_eq!(rsp.status, 200);
    assert_eq!(
        rsp.json()["version"],
        "HTTP/1.1",
        "the upstream side is unchanged"
    );

    let mut h1 = TlsConn::connect(gw.addr, s.ca.client_config(&[], None), "localhost")
        .await
        .unwrap();
    assert_eq!(h1.alpn, None);
    assert!(!h1.is_h2());
    assert_eq!(h1.get("/echo").await.unwrap().status, 200);

    // A listener that offers only http/1.1 never picks h2, even when the client prefers it.
    let only_h1 = format!("{both}      alpn: [http/1.1]\n");
    let gw = TestGateway::start_with(&config(&only_h1, &s.upstream.url()), &[]).await;
    let conn = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["h2", "http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(conn.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

fn client_auth(dir: &Path, mode: &str) -> String {
    format!(
        "      client_auth:\n        mode: {mode}\n        ca: \"{}/clients-ca.pem\"\n",
        dir.display()
    )
}

#[tokio::test]
async fn required_client_certificates_reject_clients_without_one_and_forward_the_subject() {
    let s = setup().await;
    s.ca.server(&["localhost"]).write(s.dir.path(), "site");
    let clients = TestCa::new("Clients CA");
    clients.write(s.dir.path(), "clients-ca");
    let tls = format!(
        "{}{}",
        certificates(s.dir.path(), &["site"]),
        client_auth(s.dir.path(), "required")
    );
    let gw = TestGateway::start_with(&config(&tls, &s.upstream.url()), &[]).await;

    // No certificate: the handshake (or, in TLS 1.3, the first read after it) fails; no request
    // ever reaches the upstream.
    let anonymous = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["http/1.1"], None),
        "localhost",
    )
    .await;
    if let Ok(mut conn) = anonymous {
        assert!(conn.get("/echo").await.is_err());
    }
    // A certificate from a CA the listener does not trust is rejected the same way.
    let stranger = TestCa::new("Other CA").client("mallory", "Evil");
    let untrusted = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["http/1.1"], Some(&stranger)),
        "localhost",
    )
    .await;
    if let Ok(mut conn) = untrusted {
        assert!(conn.get("/echo").await.is_err());
    }
    assert_eq!(s.upstream.request_count(), 0);

    let identity = clients.client("client-a", "Acme");
    let mut conn = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["h2"], Some(&identity)),
        "localhost",
    )
    .await
    .unwrap();
    let rsp = conn
        .get_with("/echo", &[("gantry-client-cert-subject", "CN=admin")])
        .await
        .unwrap();
    assert_eq!(rsp.status, 200);
    let seen = s.upstream.last_request().unwrap();
    let subjects: Vec<_> = seen
        .headers
        .get_all("gantry-client-cert-subject")
        .iter()
        .collect();
    assert_eq!(subjects.len(), 1, "the spoofed value is stripped");
    assert_eq!(subjects[0], "CN=client-a, O=Acme");
    let stats = wait_for_stats(&gw, |s| s.failed >= 2).await;
    assert_eq!(stats.completed, 1, "{stats:?}");
}

#[tokio::test]
async fn optional_client_certificates_let_both_in() {
    let s = setup().await;
    s.ca.server(&["localhost"]).write(s.dir.path(), "site");
    let clients = TestCa::new("Clients CA");
    clients.write(s.dir.path(), "clients-ca");
    let tls = format!(
        "{}{}",
        certificates(s.dir.path(), &["site"]),
        client_auth(s.dir.path(), "optional")
    );
    let gw = TestGateway::start_with(&config(&tls, &s.upstream.url()), &[]).await;

    let mut anonymous = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    let rsp = anonymous
        .get_with("/echo", &[("gantry-client-cert-subject", "CN=admin")])
        .await
        .unwrap();
    assert_eq!(rsp.status, 200);
    let seen = s.upstream.last_request().unwrap();
    assert!(seen.headers.get("gantry-client-cert-subject").is_none());

    let identity = clients.client("client-b", "Acme");
    let mut known = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["http/1.1"], Some(&identity)),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(known.get("/echo").await.unwrap().status, 200);
    let seen = s.upstream.last_request().unwrap();
    assert_eq!(
        seen.headers["gantry-client-cert-subject"],
        "CN=client-b, O=Acme"
    );
}

/// Replaces a file the way deployment tools do: write a sibling, then rename over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Opens new connections until one is served `expected` (10 s safety net).
async fn wait_for_certificate(
    addr: std::net::SocketAddr,
    ca: &TestCa,
    name: &str,
    expected: &Pem,
) -> TlsConn {
    let leaf = expected.chain()[0].clone();
    for _ in 0..1000 {
        let conn = TlsConn::connect(addr, ca.client_config(&["http/1.1"], None), name)
            .await
            .unwrap();
        if conn.server_certificates[0] == leaf {
            return conn;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("safety net: the new certificate was never served");
}

#[tokio::test]
async fn a_certificate_rotated_on_disk_is_served_to_new_connections_only() {
    let s = setup().await;
    let first = s.ca.server(&["localhost"]);
    let (cert_path, key_path) = first.write(s.dir.path(), "site");
    let gw = TestGateway::start_with(
        &config(&certificates(s.dir.path(), &["site"]), &s.upstream.url()),
        &[],
    )
    .await;
    let mut old = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(old.server_certificates[0], first.chain()[0]);
    assert_eq!(old.get("/echo").await.unwrap().status, 200);

    let second = s.ca.server(&["localhost"]);
    replace(&key_path, &second.key);
    replace(&cert_path, &second.cert);
    let mut new = wait_for_certificate(gw.addr, &s.ca, "localhost", &second).await;
    assert_eq!(new.get("/echo").await.unwrap().status, 200);

    // The connection made before the rotation is untouched and keeps working.
    assert_eq!(old.get("/echo").await.unwrap().status, 200);
    let stats = gw.gateway().tls_stats("public-tls").await.unwrap();
    assert!(stats.certificates_reloaded >= 1, "{stats:?}");

    // A broken file (mid-rotation, a typo) is not loaded: the last good certificate stays.
    let rejected = stats.certificates_rejected;
    replace(&cert_path, "not a certificate");
    wait_for_stats(&gw, |s| s.certificates_rejected > rejected).await;
    let conn = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(conn.server_certificates[0], second.chain()[0]);
}

#[tokio::test]
async fn a_config_reload_applies_a_changed_tls_block_to_new_connections() {
    let s = setup().await;
    let first = s.ca.server(&["localhost"]);
    first.write(s.dir.path(), "one");
    let second = s.ca.server(&["localhost"]);
    second.write(s.dir.path(), "two");
    let path = s.dir.path().join("gantry.yaml");
    std::fs::write(
        &path,
        config(&certificates(s.dir.path(), &["one"]), &s.upstream.url()),
    )
    .unwrap();
    let gw = TestGateway::start_file(&path).await;
    let mut before = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(before.server_certificates[0], first.chain()[0]);

    // An unrelated change keeps the listener as it is (its counters go on counting).
    let unrelated = config(&certificates(s.dir.path(), &["one"]), &s.upstream.url())
        .replace("shutdown_grace: 5s", "shutdown_grace: 6s");
    std::fs::write(&path, unrelated).unwrap();
    gw.gateway().reload().await.unwrap();
    assert_eq!(
        gw.gateway()
            .tls_stats("public-tls")
            .await
            .unwrap()
            .completed,
        1
    );

    std::fs::write(
        &path,
        config(&certificates(s.dir.path(), &["two"]), &s.upstream.url()),
    )
    .unwrap();
    gw.gateway().reload().await.unwrap();
    let after = TlsConn::connect(
        gw.addr,
        s.ca.client_config(&["http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(after.server_certificates[0], second.chain()[0]);
    assert_eq!(before.get("/echo").await.unwrap().status, 200);

    // A reload naming a missing certificate is rejected with the path; the listener keeps serving.
    std::fs::write(
        &path,
        config(&certificates(s.dir.path(), &["three"]), &s.upstream.url()),
    )
    .unwrap();
    let err = gw.gateway().reload().await.unwrap_err().to_string();
    assert!(
        err.contains("listeners[0].tls.certificates[0].cert: cannot read")
            && err.contains("three.pem"),
        "{err}"
    );
    let still = TlsConn::connect(gw.addr, s.ca.client_config(&[], None), "localhost")
        .await
        .unwrap();
    assert_eq!(still.server_certificates[0], second.chain()[0]);
}

#[tokio::test]
async fn garbage_plain_http_and_stalled_handshakes_are_closed_and_counted() {
    let s = setup().await;
    s.ca.server(&["localhost"]).write(s.dir.path(), "site");
    let tls = format!(
        "{}      handshake_timeout: 300ms\n",
        certificates(s.dir.path(), &["site"])
    );
    let yaml = config(&tls, &s.upstream.url())
        .replace("server:\n", "admin:\n  address: \"127.0.0.1:0\"\nserver:\n");
    let gw = TestGateway::start_with(&yaml, &[]).await;

    // Plain HTTP to the TLS port: a readable 400, then the connection is closed.
    let plain = raw_request(
        gw.addr,
        b"GET /v1/users?x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(plain.closed_by_peer);
    let responses = plain.responses();
    assert_eq!(responses.len(), 1, "{}", plain.text());
    assert_eq!(responses[0].status, 400);
    assert_eq!(
        responses[0].header("content-type"),
        Some("application/problem+json")
    );
    let body = responses[0].json();
    assert_eq!(body["type"], "urn:gantry:problem:plain-http-on-tls-port");
    assert_eq!(body["instance"], "/v1/users");

    // Bytes that are neither TLS nor HTTP: closed without an answer.
    let garbage = raw_request(gw.addr, &[0x00, 0xff, 0x13, 0x37, 0x42, 0x00, 0x01, 0x02]).await;
    assert!(garbage.closed_by_peer);
    assert!(!garbage.text().contains("HTTP/1.1"));

    // A handshake that starts (a record header) and never finishes: closed by the timeout.
    let mut stalled = RawConn::connect(gw.addr).await;
    stalled.send(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
    let silent = RawConn::connect(gw.addr).await;
    assert!(
        stalled.wait_closed().await,
        "the stalled handshake is closed by the gateway"
    );
    let mut silent = silent;
    assert!(
        silent.wait_closed().await,
        "a silent connection is closed by the gateway"
    );

    // Counted as the connection closes; poll until the counts are in.
    let stats = wait_for_stats(&gw, |s| s.plain_http + s.failed + s.timed_out >= 4).await;
    assert_eq!(stats.plain_http, 1, "{stats:?}");
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert_eq!(stats.timed_out, 2, "{stats:?}");
    assert_eq!(stats.completed, 0, "{stats:?}");
    assert_eq!(s.upstream.request_count(), 0);
    let admin = gw.gateway().admin_addr().unwrap();
    let (status, _, metrics) = support::get(&format!("http://{admin}/metrics")).await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    for line in [
        "gantry_tls_handshakes_total{listener=\"public-tls\",result=\"plain_http\"} 1",
        "gantry_tls_handshakes_total{listener=\"public-tls\",result=\"failed\"} 1",
        "gantry_tls_handshakes_total{listener=\"public-tls\",result=\"timed_out\"} 2",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }

    // The listener still serves real clients afterwards.
    let mut conn = TlsConn::connect(gw.addr, s.ca.client_config(&["h2"], None), "localhost")
        .await
        .unwrap();
    assert_eq!(conn.get("/echo").await.unwrap().status, 200);
    wait_for_stats(&gw, |s| s.completed == 1).await;
    let (_, _, metrics) = support::get(&format!("http://{admin}/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics);
    for line in [
        "gantry_tls_handshakes_by_version_total{listener=\"public-tls\",version=\"1.3\"} 1",
        "gantry_tls_handshakes_by_version_total{listener=\"public-tls\",version=\"1.2\"} 0",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

/// Polls the listener's TLS counters until `done` holds (10 s safety net).
async fn wait_for_stats(
    gw: &TestGateway,
    done: impl Fn(&gantry::server::tls::TlsStats) -> bool,
) -> gantry::server::tls::TlsStats {
    for _ in 0..1000 {
        let stats = gw.gateway().tls_stats("public-tls").await.unwrap();
        if done(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("safety net: TLS counters never reached the expected state");
}

fn load(yaml: &str) -> String {
    match gantry::config::load_str_with_env("gantry.yaml", yaml, &|_| None) {
        Ok(_) => panic!("the config was accepted"),
        Err(errors) => errors.to_string(),
    }
}

#[test]
fn missing_and_garbage_certificate_files_are_config_errors_with_path_and_location() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("garbage.pem"), "hello").unwrap();
    std::fs::write(dir.path().join("garbage.key"), "-----BEGIN NONSENSE-----\n").unwrap();
    let ca = TestCa::new("CA");
    ca.server(&["a.example"]).write(dir.path(), "a");
    ca.server(&["b.example"]).write(dir.path(), "b");
    let tls = format!(
        "      certificates:\n\
         \x20       - {{ cert: \"{d}/missing.pem\", key: \"{d}/a.key\" }}\n\
         \x20       - {{ cert: \"{d}/garbage.pem\", key: \"{d}/garbage.key\" }}\n\
         \x20       - {{ cert: \"{d}/a.pem\", key: \"{d}/b.key\" }}\n\
         \x20     client_auth: {{ mode: required, ca: \"{d}/garbage.pem\" }}\n"
    );
    let errors = load(&config(&tls, "http://127.0.0.1:9"));
    let lines: Vec<&str> = errors.lines().collect();
    let expect = [
        format!(
            "gantry.yaml:7:19: listeners[0].tls.certificates[0].cert: cannot read {d}/missing.pem"
        ),
        format!(
            "gantry.yaml:8:19: listeners[0].tls.certificates[1].cert: {d}/garbage.pem: no certificate found"
        ),
        "gantry.yaml:8:".to_owned(),
        "gantry.yaml:9:".to_owned(),
        "gantry.yaml:10:".to_owned(),
    ];
    assert_eq!(lines.len(), 5, "{errors}");
    for (line, prefix) in lines.iter().zip(&expect) {
        assert!(
            line.starts_with(prefix.as_str()),
            "{line}\n  expected {prefix}"
        );
    }
    assert!(
        lines[2].contains("certificates[1].key") && lines[2].contains("garbage.key"),
        "{errors}"
    );
    assert!(
        lines[3].contains("certificates[2].key") && lines[3].contains("does not belong"),
        "{errors}"
    );
    assert!(
        lines[4].contains("client_auth.ca") && lines[4].contains("garbage.pem"),
        "{errors}"
    );
}

#[test]
fn client_auth_needs_a_ca_and_alpn_needs_a_protocol() {
    let dir = tempfile::tempdir().unwrap();
    TestCa::new("CA")
        .server(&["a.example"])
        .write(dir.path(), "a");
    let tls = format!(
        "{}      alpn: []\n      client_auth: {{ mode: required }}\n      handshake_timeout: 0s\n",
        certificates(dir.path(), &["a"])
    );
    let yaml = config(&tls, "http://127.0.0.1:9").replace(
        "    address: \"127.0.0.1:0\"\n",
        "    address: \"127.0.0.1:0\"\n    protocols: [http1]\n",
    );
    let errors = load(&yaml);
    assert!(
        errors.contains("gantry.yaml:5:16: listeners[0].protocols: a TLS listener's protocols are negotiated by ALPN"),
        "{errors}"
    );
    assert!(
        errors.contains("listeners[0].tls.alpn: at least one protocol"),
        "{errors}"
    );
    assert!(
        errors.contains("listeners[0].tls.client_auth.mode: client certificates need `ca`"),
        "{errors}"
    );
    assert!(
        errors.contains("listeners[0].tls.handshake_timeout: must be greater than 0"),
        "{errors}"
    );
}

#[tokio::test]
async fn min_version_refuses_older_clients_and_the_contract_shape_loads() {
    let s = setup().await;
    let d = s.dir.path().display();
    s.ca.server(&["api.example.com"])
        .write(s.dir.path(), "api.example.com");
    s.ca.server(&["*.example.org"])
        .write(s.dir.path(), "wildcard.example.org");
    TestCa::new("Clients CA").write(s.dir.path(), "clients-ca");
    // The `listeners[].tls` block of the shared example config, key for key.
    let contract = format!(
        "      certificates:                 # picked by SNI; the first is the default
        - cert: {d}/api.example.com.pem
          key: {d}/api.example.com.key
        - cert: {d}/wildcard.example.org.pem
          key: {d}/wildcard.example.org.key
      min_version: \"1.2\"
      alpn: [h2, http/1.1]
      client_auth:                  # mTLS: none | optional | required
        mode: optional
        ca: {d}/clients-ca.pem
"
    );
    let gw = TestGateway::start_with(&config(&contract, &s.upstream.url()), &[]).await;
    let tls12_only = |ca: &TestCa| {
        let config = rustls::ClientConfig::builder_with_provider(support::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
        std::sync::Arc::new(config)
    };
    let mut conn = TlsConn::connect(gw.addr, tls12_only(&s.ca), "api.example.com")
        .await
        .unwrap();
    assert_eq!(conn.get("/echo").await.unwrap().status, 200);

    let only13 = contract.replace("min_version: \"1.2\"", "min_version: 1.3");
    let gw = TestGateway::start_with(&config(&only13, &s.upstream.url()), &[]).await;
    let err = tls_handshake(gw.addr, tls12_only(&s.ca), "api.example.com")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");
    let conn = TlsConn::connect(gw.addr, s.ca.client_config(&[], None), "api.example.com")
        .await
        .unwrap();
    assert_eq!(served_names(&conn), ["api.example.com"]);
}

#[test]
fn gantry_validate_reports_a_garbage_certificate_file_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("site.pem");
    std::fs::write(&cert, "not PEM at all").unwrap();
    TestCa::new("CA")
        .server(&["a.example"])
        .write(dir.path(), "ok");
    let tls = format!(
        "      certificates:\n        - cert: \"{}\"\n          key: \"{}/ok.key\"\n",
        cert.display(),
        dir.path().display()
    );
    let path = dir.path().join("gantry.yaml");
    std::fs::write(&path, config(&tls, "http://127.0.0.1:9")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:7:17: listeners[0].tls.certificates[0].cert: {}: no certificate found",
        path.display(),
        cert.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight_on_tls_connections() {
    let s = setup().await;
    s.ca.server(&["localhost"]).write(s.dir.path(), "site");
    let gw = TestGateway::start_with(
        &config(&certificates(s.dir.path(), &["site"]), &s.upstream.url()),
        &[],
    )
    .await;
    let mut conn = TlsConn::connect(gw.addr, s.ca.client_config(&["h2"], None), "localhost")
        .await
        .unwrap();
    let held = conn.start_get("/gate/tls", &[]).await.unwrap();
    assert_eq!(held.status(), 200);
    let gateway = gw.gateway().clone();
    let shutdown = tokio::spawn(async move { gateway.shutdown().await });
    for _ in 0..1000 {
        if gw.gateway().is_draining() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gw.gateway().is_draining());
    s.upstream.release("tls");
    let body = support::collect(held).await.unwrap();
    assert_eq!(body.text(), "first\ndone\n");
    shutdown.await.unwrap();
    // The listener is closed: no new handshake.
    assert!(
        tls_handshake(gw.addr, s.ca.client_config(&[], None), "localhost")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_kubernetes_style_symlink_swap_rotates_the_certificate() {
    use std::os::unix::fs::symlink;
    let s = setup().await;
    let dir = s.dir.path();
    // The layout of a mounted Secret: files are links through `..data`, which is swapped whole.
    let first = s.ca.server(&["localhost"]);
    std::fs::create_dir(dir.join("v1")).unwrap();
    first.write(&dir.join("v1"), "site");
    symlink("v1", dir.join("..data")).unwrap();
    symlink("..data/site.pem", dir.join("site.pem")).unwrap();
    symlink("..data/site.key", dir.join("site.key")).unwrap();
    let gw = TestGateway::start_with(
        &config(&certificates(dir, &["site"]), &s.upstream.url()),
        &[],
    )
    .await;
    let conn = TlsConn::connect(gw.addr, s.ca.client_config(&[], None), "localhost")
        .await
        .unwrap();
    assert_eq!(conn.server_certificates[0], first.chain()[0]);

    let second = s.ca.server(&["localhost"]);
    std::fs::create_dir(dir.join("v2")).unwrap();
    second.write(&dir.join("v2"), "site");
    symlink("v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let mut rotated = wait_for_certificate(gw.addr, &s.ca, "localhost", &second).await;
    assert_eq!(rotated.get("/echo").await.unwrap().status, 200);
}
