#![allow(clippy::unwrap_used)]
//! Active health checks, deadlines and load shedding end to end, against real upstreams; states
//! from `/admin/upstreams`, counts from the upstreams.

mod support;

use http::Request;
use support::{Fault, TestGateway, Upstream, empty, full, h2_client, http1_client};

fn config(targets: &[&Upstream], extra: &str) -> String {
    let targets: Vec<String> = targets
        .iter()
        .map(|u| format!("{{ url: \"{}\" }}", u.url()))
        .collect();
    format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
observability: {{ access_log: {{ format: off }} }}
upstreams:
  pool:
    targets: [{}]
{extra}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
",
        targets.join(", ")
    )
}

fn target<'a>(pool: &'a serde_json::Value, upstream: &Upstream) -> &'a serde_json::Value {
    let authority = upstream.addr().to_string();
    pool["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == authority.as_str())
        .unwrap()
}

#[tokio::test]
async fn active_checks_take_targets_out_and_bring_them_back() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = TestGateway::start_with(
        &config(
            &[&a, &b],
            "    health_check:
      active: { path: /healthz, interval: 20ms, timeout: 1s, healthy_after: 2, unhealthy_after: 2 }",
        ),
        &[],
    )
    .await;
    a.set_health(503);
    let pool = gw
        .wait_for_upstream("pool", "a unhealthy", |p| {
            target(p, &a)["health"] == "unhealthy"
        })
        .await;
    assert_eq!(target(&pool, &b)["health"], "healthy");
    let before = a.traffic_count();
    let client = http1_client();
    for _ in 0..10 {
        let (status, headers, _) = client.get(&gw.url("/x")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-upstream"], "b");
    }
    assert_eq!(a.traffic_count(), before);

    // Every target unhealthy: 503 problem+json, no upstream called.
    b.set_health(500);
    gw.wait_for_upstream("pool", "b unhealthy", |p| {
        target(p, &b)["health"] == "unhealthy"
    })
    .await;
    let (status, _, body) = client.get(&gw.url("/x")).await;
    assert_eq!(status, 503);
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "urn:gantry:problem:no-healthy-target");

    a.set_health(200);
    gw.wait_for_upstream("pool", "a healthy", |p| {
        target(p, &a)["health"] == "healthy"
    })
    .await;
    let (status, headers, _) = client.get(&gw.url("/x")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-upstream"], "a");
}

#[tokio::test]
async fn the_remaining_budget_is_sent_upstream_and_spoofed_values_are_replaced() {
    let upstream = Upstream::start("u").await;
    let gw = TestGateway::start_with(
        &config(&[&upstream], "    timeouts: { request: 5s, per_try: 3s }"),
        &[],
    )
    .await;
    let client = http1_client();
    let request = Request::get(gw.url("/x"))
        .header("gantry-timeout-ms", "999999")
        .body(empty())
        .unwrap();
    assert_eq!(client.fetch(request).await.status, 200);
    let sent = upstream.last_request().unwrap();
    let ms: u64 = sent.headers["gantry-timeout-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 0 && ms <= 3000, "per_try bounds it: {ms}");
    assert!(sent.headers.get("grpc-timeout").is_none());

    // A client's grpc-timeout shortens the budget.
    let request = Request::get(gw.url("/x"))
        .header("grpc-timeout", "200m")
        .body(empty())
        .unwrap();
    assert_eq!(client.fetch(request).await.status, 200);
    let sent = upstream.last_request().unwrap();
    let ms: u64 = sent.headers["gantry-timeout-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 0 && ms <= 200, "{ms}");
}

#[tokio::test]
async fn a_spent_or_malformed_client_deadline_is_answered_without_calling_the_upstream() {
    let upstream = Upstream::start("u").await;
    let gw = TestGateway::start_with(&config(&[&upstream], ""), &[]).await;
    let client = http1_client();
    for (value, status, slug) in [
        ("0m", 504, "deadline-exceeded"),
        ("0S", 504, "deadline-exceeded"),
        ("soon", 400, "invalid-grpc-timeout"),
        ("123456789m", 400, "invalid-grpc-timeout"),
        ("-5S", 400, "invalid-grpc-timeout"),
    ] {
        let request = Request::get(gw.url("/x"))
            .header("grpc-timeout", value)
            .body(empty())
            .unwrap();
        let response = client.fetch(request).await;
        assert_eq!(response.status, status, "{value}");
        assert_eq!(
            response.json()["type"],
            format!("urn:gantry:problem:{slug}")
        );
    }
    assert_eq!(upstream.traffic_count(), 0);
}

#[tokio::test]
async fn grpc_upstreams_get_the_remaining_budget_as_grpc_timeout() {
    let upstream = Upstream::start("g").await;
    let gw = TestGateway::start_with(
        &config(
            &[&upstream],
            "    protocol: grpc\n    timeouts: { request: 5s }",
        ),
        &[],
    )
    .await;
    let request = Request::post(gw.url("/grpc/pkg.Svc/Call"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "1S")
        .body(full(vec![0u8, 0, 0, 0, 0]))
        .unwrap();
    let response = h2_client().fetch(request).await;
    assert_eq!(response.status, 200);
    let sent = upstream.last_request().unwrap();
    let value = sent.headers["grpc-timeout"].to_str().unwrap().to_owned();
    let ms: u64 = value.strip_suffix('m').unwrap().parse().unwrap();
    assert!(ms > 0 && ms <= 1000, "{value}");
}

#[tokio::test]
async fn a_hanging_upstream_is_bounded_by_the_request_deadline_across_retries() {
    let upstream = Upstream::start("u").await;
    upstream.set_fault(Fault::Hang);
    let gw = TestGateway::start_with(
        &config(
            &[&upstream],
            "    timeouts: { request: 300ms, per_try: 100ms }
    retries: { attempts: 10, on: [timeout], backoff: { base: 1ms, max: 1ms } }",
        ),
        &[],
    )
    .await;
    let (status, _, body) = http1_client().get(&gw.url("/x")).await;
    assert_eq!(status, 504);
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "urn:gantry:problem:upstream-timeout");
    let tries = upstream.traffic_count();
    // Retried on timeout, but 10 tries of 100 ms never fit in 300 ms.
    assert!((2..10).contains(&tries), "{tries} tries");
}

#[tokio::test]
async fn beyond_the_concurrency_limit_and_queue_requests_are_shed_with_retry_after() {
    let upstream = Upstream::start("u").await;
    let gw = TestGateway::start_with(
        &config(
            &[&upstream],
            "    timeouts: { per_try: 1s }
    load_shedding: { max_concurrent_requests: 1, queue: 1, queue_timeout: 5s }",
        ),
        &[],
    )
    .await;
    let client = http1_client();
    let hung = tokio::spawn({
        let client = client.clone();
        let url = gw.url("/hang");
        async move { client.get(&url).await.0 }
    });
    gw.wait_for_upstream("pool", "one in flight", |p| {
        p["load_shedding"]["in_flight"] == 1
    })
    .await;
    let queued = tokio::spawn({
        let client = client.clone();
        let url = gw.url("/queued");
        async move { client.get(&url).await.0 }
    });
    gw.wait_for_upstream("pool", "one queued", |p| p["load_shedding"]["queued"] == 1)
        .await;
    let (status, headers, body) = client.get(&gw.url("/shed")).await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "urn:gantry:problem:overloaded");
    assert_eq!(upstream.count_path("/shed"), 0);
    // The hung request times out, the queued one takes its slot.
    assert_eq!(hung.await.unwrap(), 504);
    assert_eq!(queued.await.unwrap(), 200);
    assert_eq!(upstream.count_path("/queued"), 1);
}

#[tokio::test]
async fn the_adaptive_limit_is_exposed() {
    let upstream = Upstream::start("u").await;
    let gw = TestGateway::start_with(
        &config(
            &[&upstream],
            "    load_shedding: { max_concurrent_requests: 100, adaptive: { min_limit: 2, initial_limit: 8 } }",
        ),
        &[],
    )
    .await;
    let pool = gw.admin_upstream("pool").await;
    assert_eq!(pool["load_shedding"]["adaptive"], true);
    assert_eq!(pool["load_shedding"]["limit"], 8);
    assert_eq!(pool["load_shedding"]["max_concurrent_requests"], 100);
    assert_eq!(http1_client().get(&gw.url("/x")).await.0, 200);
    let limit = gw.admin_upstream("pool").await["load_shedding"]["limit"]
        .as_u64()
        .unwrap();
    assert!((2..=100).contains(&limit));
}

#[tokio::test]
async fn h2_upstreams_are_checked_over_h2() {
    let upstream = Upstream::start("h2").await;
    let gw = TestGateway::start_with(
        &config(
            &[&upstream],
            "    protocol: h2
    health_check:
      active: { path: /healthz, interval: 20ms, healthy_after: 1, unhealthy_after: 1 }",
        ),
        &[],
    )
    .await;
    upstream.wait_for_requests(1).await;
    let check = upstream
        .requests()
        .into_iter()
        .find(|r| r.uri.path() == "/healthz")
        .unwrap();
    assert_eq!(check.version, http::Version::HTTP_2);
    upstream.set_health(503);
    gw.wait_for_upstream("pool", "unhealthy", |p| {
        p["targets"][0]["health"] == "unhealthy"
    })
    .await;
    let (status, _, _) = http1_client().get(&gw.url("/x")).await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn a_streaming_response_holds_its_slot_until_the_body_ends() {
    let upstream = Upstream::start("u").await;
    let gw = TestGateway::start_with(
        &config(
            &[&upstream],
            "    load_shedding: { max_concurrent_requests: 1 }",
        ),
        &[],
    )
    .await;
    let client = http1_client();
    let streaming = client
        .send(Request::get(gw.url("/gate/s")).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(streaming.status(), 200);
    assert_eq!(
        gw.admin_upstream("pool").await["load_shedding"]["in_flight"],
        1
    );
    let (status, _, _) = http1_client().get(&gw.url("/x")).await;
    assert_eq!(status, 503);
    upstream.release("s");
    let body = support::collect(streaming).await.unwrap();
    assert_eq!(body.text(), "first\ndone\n");
    gw.wait_for_upstream("pool", "slot freed", |p| {
        p["load_shedding"]["in_flight"] == 0
    })
    .await;
    assert_eq!(http1_client().get(&gw.url("/x")).await.0, 200);
}

#[tokio::test]
async fn the_adaptive_limit_shrinks_when_the_upstream_slows_down() {
    let upstream = Upstream::start("u").await;
    let gw = TestGateway::start_with(
        &config(
            &[&upstream],
            "    load_shedding: { max_concurrent_requests: 100, adaptive: { min_limit: 1, initial_limit: 20 } }",
        ),
        &[],
    )
    .await;
    let client = http1_client();
    for _ in 0..5 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    }
    let limit = |p: &serde_json::Value| p["load_shedding"]["limit"].as_u64().unwrap();
    // Fast and lightly used: the limit does not grow (it grows only under load).
    assert!(limit(&gw.admin_upstream("pool").await) <= 20);
    upstream.set_fault(Fault::Slow(std::time::Duration::from_millis(100)));
    for _ in 0..5 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    }
    let slowed = limit(&gw.admin_upstream("pool").await);
    assert!(
        slowed < 20,
        "latency far above the baseline shrinks the limit: {slowed}"
    );
}

#[test]
fn the_resilience_example_is_a_valid_config() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/resilience.yaml");
    let config = gantry::config::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let users = &config.runtime.upstreams["users"];
    assert!(users.resilience.breaker.is_some());
    assert_eq!(users.resilience.retry.attempts, 3);
    assert!(
        config.runtime.upstreams["orders"]
            .resilience
            .discovery
            .is_some()
    );
}
