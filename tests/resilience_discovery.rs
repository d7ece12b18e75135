#![allow(clippy::unwrap_used)]
//! DNS discovery end to end, against a real DNS server on a loopback port (`support::dns`):
//! targets follow the answers, pooled connections to unchanged targets survive a change, the last
//! good answer is kept while DNS fails, SRV gives ports and weights.

mod support;

use std::net::{Ipv4Addr, SocketAddr};

use support::{DnsServer, TestGateway, Upstream, http1_client};

fn config(dns: &DnsServer, discovery: &str) -> String {
    format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
observability: {{ access_log: {{ format: off }} }}
upstreams:
  svc:
    discovery:
      dns: {{ {discovery}, refresh: 50ms, nameservers: [\"{}\"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}
",
        dns.addr()
    )
}

fn targets(upstream: &serde_json::Value) -> Vec<String> {
    let mut list: Vec<String> = upstream["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{} w{}", t["target"].as_str().unwrap(), t["weight"]))
        .collect();
    list.sort();
    list
}

#[tokio::test]
async fn targets_follow_dns_keep_pooled_connections_and_survive_dns_failures() {
    let a = Upstream::start("a").await;
    let port = a.addr().port();
    // Same port on another loopback address: an A record carries no port.
    let b = Upstream::start_at("b", SocketAddr::from(([127, 0, 0, 2], port))).await;
    let dns = DnsServer::start().await;
    dns.set_a("svc.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    let gw =
        TestGateway::start_with(&config(&dns, &format!("name: svc.test, port: {port}")), &[]).await;
    let only_a = vec![format!("127.0.0.1:{port} w1")];
    gw.wait_for_upstream("svc", "a discovered", |u| targets(u) == only_a)
        .await;
    let client = http1_client();
    for _ in 0..3 {
        let (status, headers, _) = client.get(&gw.url("/x")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-upstream"], "a");
    }
    assert_eq!(a.connection_count(), 1);

    // b joins: a's pooled connection is kept.
    dns.set_a(
        "svc.test",
        &[Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 2)],
    );
    let both = vec![
        format!("127.0.0.1:{port} w1"),
        format!("127.0.0.2:{port} w1"),
    ];
    gw.wait_for_upstream("svc", "b discovered", |u| targets(u) == both)
        .await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let (status, headers, _) = client.get(&gw.url("/x")).await;
        assert_eq!(status, 200);
        seen.push(headers["x-upstream"].to_str().unwrap().to_owned());
    }
    assert!(
        seen.contains(&"a".to_owned()) && seen.contains(&"b".to_owned()),
        "{seen:?}"
    );
    assert_eq!(
        a.connection_count(),
        1,
        "the connection to the unchanged target was kept"
    );

    // DNS fails: the last good answer stays.
    dns.set_failing(true);
    let queries = dns.queries();
    dns.wait_for_queries_after(queries + 2).await;
    assert_eq!(targets(&gw.admin_upstream("svc").await), both);
    assert_eq!(client.get(&gw.url("/x")).await.0, 200);

    // a leaves.
    dns.set_failing(false);
    dns.set_a("svc.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    let only_b = vec![format!("127.0.0.2:{port} w1")];
    gw.wait_for_upstream("svc", "a removed", |u| targets(u) == only_b)
        .await;
    let before = a.traffic_count();
    for _ in 0..4 {
        let (status, headers, _) = client.get(&gw.url("/x")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-upstream"], "b");
    }
    assert_eq!(a.traffic_count(), before);
    assert!(b.traffic_count() >= 4);
}

#[tokio::test]
async fn without_a_port_srv_records_give_ports_and_weights() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let dns = DnsServer::start().await;
    dns.set_srv(
        "_http._tcp.svc.test",
        &[
            (0, 3, a.addr().port(), "a.svc.test"),
            (0, 1, b.addr().port(), "b.svc.test"),
        ],
    );
    dns.set_a("a.svc.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    dns.set_a("b.svc.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    let gw = TestGateway::start_with(&config(&dns, "name: _http._tcp.svc.test"), &[]).await;
    let mut expected = vec![format!("{} w3", a.addr()), format!("{} w1", b.addr())];
    expected.sort();
    gw.wait_for_upstream("svc", "SRV targets", |u| targets(u) == expected)
        .await;
    let client = http1_client();
    for _ in 0..4 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    }
    assert_eq!(a.traffic_count() + b.traffic_count(), 4);
    assert_eq!(
        gw.admin_upstream("svc").await["discovery"],
        "_http._tcp.svc.test"
    );
}

#[tokio::test]
async fn before_the_first_answer_requests_get_503_no_target() {
    let dns = DnsServer::start().await;
    dns.set_failing(true);
    let gw = TestGateway::start_with(&config(&dns, "name: svc.test, port: 80"), &[]).await;
    let (status, _, body) = http1_client().get(&gw.url("/x")).await;
    assert_eq!(status, 503);
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "urn:gantry:problem:no-target");
}

#[tokio::test]
async fn a_reload_keeps_the_discovered_targets_even_while_dns_fails() {
    let a = Upstream::start("a").await;
    let port = a.addr().port();
    let dns = DnsServer::start().await;
    dns.set_a("svc.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.yaml");
    let text = config(&dns, &format!("name: svc.test, port: {port}"));
    std::fs::write(&path, &text).unwrap();
    let gw = TestGateway::start_file(&path).await;
    let only_a = vec![format!("127.0.0.1:{port} w1")];
    gw.wait_for_upstream("svc", "a discovered", |u| targets(u) == only_a)
        .await;
    assert_eq!(http1_client().get(&gw.url("/x")).await.0, 200);
    dns.set_failing(true);
    let changed = text.replace(
        "routes:\n",
        "routes:\n  - { name: extra, match: { path: /extra }, upstream: svc }\n",
    );
    std::fs::write(&path, changed).unwrap();
    gw.gateway().reload().await.unwrap();
    assert_eq!(targets(&gw.admin_upstream("svc").await), only_a);
    let (status, headers, _) = http1_client().get(&gw.url("/extra")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-upstream"], "a");
    assert_eq!(a.connection_count(), 1, "the pooled connection came along");
}

#[tokio::test]
async fn readiness_waits_for_the_first_dns_lookup() {
    let a = Upstream::start("a").await;
    // Resolvers fall back to TCP on the same port: a listener that never answers keeps that
    // path pending too.
    let (dns, tcp) = DnsServer::start_with_tcp().await;
    dns.set_silent(true);
    dns.set_a("svc.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = tcp.accept().await {
            held.push(stream);
        }
    });
    let gw = TestGateway::start_with(
        &config(&dns, &format!("name: svc.test, port: {}", a.addr().port())),
        &[],
    )
    .await;
    let ready = format!("http://{}/readyz", gw.gateway().admin_addr().unwrap());
    let (status, _, body) = support::get(&ready).await;
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("warming-up"));
    dns.set_silent(false);
    let mut status = status;
    for _ in 0..1000 {
        status = support::get(&ready).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(status, 200);
    hold.abort();
}
