#![allow(clippy::unwrap_used)]
//! Load balancing end to end: which real upstream each request reaches.

mod support;

use http::Request;
use support::{TestGateway, Upstream, empty, http1_client};

/// A gateway whose upstream `pool` has the given targets and balancing YAML.
async fn gateway(targets: &[(&Upstream, u32)], load_balancing: &str) -> TestGateway {
    let targets: Vec<String> = targets
        .iter()
        .map(|(u, w)| format!("{{ url: \"{}\", weight: {w} }}", u.url()))
        .collect();
    let yaml = format!(
        "version: 1
listeners:
  - {{ name: public, address: \"127.0.0.1:0\" }}
observability:
  access_log: {{ format: off }}
upstreams:
  pool:
    targets: [{}]
    load_balancing: {load_balancing}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
",
        targets.join(", ")
    );
    TestGateway::start_with(&yaml, &[]).await
}

async fn upstream_of(gw: &TestGateway, headers: &[(&str, &str)]) -> String {
    let mut request = Request::get(gw.url("/echo"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let echo = http1_client()
        .fetch(request.body(empty()).unwrap())
        .await
        .json();
    echo["upstream"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn round_robin_alternates() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&[(&a, 1), (&b, 1)], "round_robin").await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(upstream_of(&gw, &[]).await);
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);
}

#[tokio::test]
async fn smooth_weighted_round_robin_follows_weights() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&[(&a, 3), (&b, 1)], "weighted_round_robin").await;
    let mut seen = Vec::new();
    for _ in 0..8 {
        seen.push(upstream_of(&gw, &[]).await);
    }
    // nginx's smooth sequence for weights 3:1 interleaves: a a b a, twice.
    assert_eq!(seen, ["a", "a", "b", "a", "a", "a", "b", "a"]);
}

#[tokio::test]
async fn consistent_hash_keeps_a_key_on_one_target() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let gw = gateway(
        &[(&a, 1), (&b, 1), (&c, 1)],
        "{ consistent_hash: { header: X-User-Id } }",
    )
    .await;
    let mut owners = std::collections::BTreeSet::new();
    for user in 0..30 {
        let id = format!("user-{user}");
        let first = upstream_of(&gw, &[("x-user-id", &id)]).await;
        for _ in 0..3 {
            assert_eq!(
                upstream_of(&gw, &[("x-user-id", &id)]).await,
                first,
                "{id} moved"
            );
        }
        owners.insert(first);
    }
    assert_eq!(owners.len(), 3, "30 keys spread over all three targets");
}

#[tokio::test]
async fn least_request_avoids_the_busy_target() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&[(&a, 1), (&b, 1)], "least_request").await;
    // Hold one request open on whichever target gets it.
    let client = http1_client();
    let held = client
        .send(Request::get(gw.url("/gate/hold")).body(empty()).unwrap())
        .await
        .unwrap();
    let busy = held.headers()["x-upstream"].to_str().unwrap().to_owned();
    for _ in 0..10 {
        assert_ne!(upstream_of(&gw, &[]).await, busy);
    }
    a.release("hold");
    b.release("hold");
    drop(held);
}

#[tokio::test]
async fn random_reaches_every_target() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&[(&a, 1), (&b, 1)], "random").await;
    for _ in 0..64 {
        upstream_of(&gw, &[]).await;
    }
    assert_eq!(a.request_count() + b.request_count(), 64);
    assert!(a.request_count() > 0 && b.request_count() > 0);
}
