#![allow(clippy::unwrap_used)]
//! The circuit breaker, route fallbacks and state carried across reloads, end to end: upstream
//! calls are counted at the upstream, breaker states read from `/admin/upstreams`.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Fault, TestGateway, Upstream, http1_client};

fn config(upstream: &Upstream, breaker: &str, route_extra: &str) -> String {
    format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
observability: {{ access_log: {{ format: off }} }}
upstreams:
  svc:
    targets: [{{ url: \"{}\" }}]
    timeouts: {{ request: 2s, per_try: 150ms }}
    circuit_breaker: {breaker}
routes:
  - name: main
    match: {{ path_prefix: / }}
    upstream: svc
{route_extra}
",
        upstream.url()
    )
}

const BREAKER: &str =
    "{ failure_ratio: 0.5, min_requests: 4, window: 10s, open_for: 1s, half_open_requests: 1 }";

/// GETs `path` until the answer is not `circuit-open`, (10 ms apart, 10 s safety net); returns
/// that answer's status.
async fn until_not_circuit_open(gw: &TestGateway, path: &str) -> u16 {
    let client = http1_client();
    for _ in 0..1000 {
        let (status, headers, body) = client.get(&gw.url(path)).await;
        let is_open = status == 503
            && headers["content-type"] == "application/problem+json"
            && String::from_utf8_lossy(&body).contains("circuit-open");
        if !is_open {
            return status.as_u16();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("safety net: the breaker never let a call through");
}

#[tokio::test]
async fn the_breaker_opens_answers_without_calling_half_opens_and_closes() {
    let upstream = Upstream::start("svc").await;
    upstream.set_fault(Fault::Status(503));
    let gw = TestGateway::start_with(&config(&upstream, BREAKER, ""), &[]).await;
    let client = http1_client();
    for _ in 0..4 {
        let (status, headers, _) = client.get(&gw.url("/x")).await;
        assert_eq!(status, 503);
        assert_eq!(headers["x-upstream"], "svc", "the upstream's own 503");
    }
    assert_eq!(upstream.traffic_count(), 4);
    let svc = gw.admin_upstream("svc").await;
    assert_eq!(svc["circuit_breaker"]["state"], "open", "{svc}");
    assert!(svc["circuit_breaker"]["open_until"].as_f64().is_some());

    // Open: answered at once, the upstream is not called.
    for _ in 0..5 {
        let (status, headers, body) = client.get(&gw.url("/x")).await;
        assert_eq!(status, 503);
        assert!(headers.get("x-upstream").is_none());
        assert_eq!(headers["retry-after"], "1");
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["type"], "urn:gantry:problem:circuit-open");
    }
    assert_eq!(upstream.traffic_count(), 4);

    // After open_for one probe goes through; it fails, so the breaker opens again.
    assert_eq!(until_not_circuit_open(&gw, "/x").await, 503);
    assert_eq!(upstream.traffic_count(), 5);
    assert_eq!(
        gw.admin_upstream("svc").await["circuit_breaker"]["state"],
        "open"
    );

    // The upstream recovers: the next probe succeeds and closes the breaker.
    upstream.set_fault(Fault::None);
    assert_eq!(until_not_circuit_open(&gw, "/x").await, 200);
    assert_eq!(upstream.traffic_count(), 6);
    let svc = gw.admin_upstream("svc").await;
    assert_eq!(svc["circuit_breaker"]["state"], "closed");
    assert_eq!(svc["targets"][0]["breaker"], "closed");
    for _ in 0..3 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    }
    assert_eq!(upstream.traffic_count(), 9);
}

#[tokio::test]
async fn below_min_requests_the_breaker_stays_closed() {
    let upstream = Upstream::start("svc").await;
    upstream.set_fault(Fault::Status(500));
    let gw = TestGateway::start_with(&config(&upstream, BREAKER, ""), &[]).await;
    let client = http1_client();
    for _ in 0..3 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 500);
    }
    assert_eq!(
        gw.admin_upstream("svc").await["circuit_breaker"]["state"],
        "closed"
    );
}

const FALLBACK: &str = "    fallback:
      status: 200
      headers: { content-type: application/json, cache-control: no-store }
      body: '{\"items\": []}'";

#[tokio::test]
async fn the_fallback_stands_in_for_a_timed_out_upstream() {
    let upstream = Upstream::start("svc").await;
    upstream.set_fault(Fault::Hang);
    let gw = TestGateway::start_with(&config(&upstream, BREAKER, FALLBACK), &[]).await;
    let (status, headers, body) = http1_client().get(&gw.url("/items")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["gantry-fallback"], "true");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(&body[..], br#"{"items": []}"#);
    assert_eq!(upstream.traffic_count(), 1);
}

#[tokio::test]
async fn the_fallback_stands_in_for_an_open_breaker_without_calling_the_upstream() {
    let upstream = Upstream::start("svc").await;
    upstream.set_fault(Fault::Status(503));
    let gw = TestGateway::start_with(&config(&upstream, BREAKER, FALLBACK), &[]).await;
    let client = http1_client();
    // A plain 503 from the upstream is passed on: a fallback is not a retry.
    for _ in 0..4 {
        let (status, headers, _) = client.get(&gw.url("/items")).await;
        assert_eq!(status, 503);
        assert!(headers.get("gantry-fallback").is_none());
    }
    for _ in 0..3 {
        let (status, headers, _) = client.get(&gw.url("/items")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["gantry-fallback"], "true");
    }
    assert_eq!(upstream.traffic_count(), 4);
}

#[tokio::test]
async fn without_a_fallback_a_hanging_upstream_is_a_504_after_per_try() {
    let upstream = Upstream::start("svc").await;
    upstream.set_fault(Fault::Hang);
    let gw = TestGateway::start_with(&config(&upstream, BREAKER, ""), &[]).await;
    let (status, headers, body) = http1_client().get(&gw.url("/x")).await;
    assert_eq!(status, 504);
    assert!(headers.get("gantry-fallback").is_none());
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "urn:gantry:problem:upstream-timeout");
}

fn write_config(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn breaker_state_survives_a_reload() {
    let upstream = Upstream::start("svc").await;
    upstream.set_fault(Fault::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.yaml");
    let long_open = "{ failure_ratio: 0.5, min_requests: 4, open_for: 1h, half_open_requests: 1 }";
    write_config(&path, &config(&upstream, long_open, ""));
    let gw = TestGateway::start_file(&path).await;
    let client = http1_client();
    for _ in 0..4 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 503);
    }
    assert_eq!(
        gw.admin_upstream("svc").await["circuit_breaker"]["state"],
        "open"
    );

    // A new config: another route and other breaker numbers; the upstream keeps its state.
    let changed = config(
        &upstream,
        long_open,
        "  - { name: other, match: { path: /other }, upstream: svc }",
    )
    .replace("min_requests: 4", "min_requests: 5");
    write_config(&path, &changed);
    let status = gw.gateway().reload().await.unwrap();
    assert_eq!(status.version, gw.gateway().runtime().version);
    assert_eq!(
        gw.admin_upstream("svc").await["circuit_breaker"]["state"],
        "open"
    );
    let (status, _, body) = client.get(&gw.url("/other")).await;
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("circuit-open"));
    assert_eq!(upstream.traffic_count(), 4);
}

#[tokio::test]
async fn the_fallback_stands_in_when_no_target_is_healthy() {
    let upstream = Upstream::start("svc").await;
    let yaml = config(&upstream, BREAKER, FALLBACK).replace(
        "    circuit_breaker:",
        "    health_check: { active: { path: /healthz, interval: 20ms, unhealthy_after: 1 } }\n    circuit_breaker:",
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    upstream.set_health(503);
    gw.wait_for_upstream("svc", "unhealthy", |u| {
        u["targets"][0]["health"] == "unhealthy"
    })
    .await;
    let (status, headers, _) = http1_client().get(&gw.url("/items")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["gantry-fallback"], "true");
    assert_eq!(upstream.traffic_count(), 0);
}

#[tokio::test]
async fn an_upstream_cannot_claim_its_answer_is_a_fallback() {
    let upstream = support::RawUpstream::respond_with(
        &b"HTTP/1.1 200 OK\r\ngantry-fallback: true\r\ncontent-length: 2\r\n\r\nok"[..],
    )
    .await;
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
observability: {{ access_log: {{ format: off }} }}
upstreams:
  svc: {{ targets: [{{ url: \"{}\" }}] }}
routes:
  - {{ name: main, match: {{ path_prefix: / }}, upstream: svc }}
",
        upstream.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let (status, headers, body) = http1_client().get(&gw.url("/x")).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"ok");
    assert!(headers.get("gantry-fallback").is_none());
}

#[tokio::test]
async fn grpc_unavailable_counts_and_retries_like_a_503() {
    let upstream = Upstream::start("grpc").await;
    upstream.set_fault(Fault::GrpcStatus(14));
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
observability: {{ access_log: {{ format: off }} }}
upstreams:
  svc:
    protocol: grpc
    targets: [{{ url: \"{}\" }}]
    retries: {{ attempts: 2, on: [503], methods: all, backoff: {{ base: 1ms, max: 1ms }} }}
    circuit_breaker: {{ failure_ratio: 1.0, min_requests: 4, open_for: 1h }}
routes:
  - {{ name: main, match: {{ path_prefix: / }}, upstream: svc }}
",
        upstream.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let call = || {
        http::Request::post(gw.url("/pkg.Svc/Call"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(support::full(vec![0u8, 0, 0, 0, 0]))
            .unwrap()
    };
    let client = support::h2_client();
    for _ in 0..2 {
        let response = client.fetch(call()).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.headers["grpc-status"], "14");
    }
    // Two calls, each retried once: four failed tries open the breaker.
    assert_eq!(upstream.traffic_count(), 4);
    assert_eq!(
        gw.admin_upstream("svc").await["circuit_breaker"]["state"],
        "open"
    );
    let response = client.fetch(call()).await;
    assert_eq!(response.headers["grpc-status"], "14");
    assert!(response.headers.get("x-upstream").is_none());
    assert_eq!(upstream.traffic_count(), 4);
}

#[tokio::test]
async fn the_access_log_marks_fallbacks() {
    let upstream = Upstream::start("svc").await;
    upstream.set_fault(Fault::Hang);
    let gw = TestGateway::simple(
        &upstream.url(),
        "    timeouts: { per_try: 50ms }",
        &format!(
            "  - name: main\n    match: {{ path_prefix: / }}\n    upstream: backend\n{FALLBACK}"
        ),
        "",
    )
    .await;
    assert_eq!(http1_client().get(&gw.url("/x")).await.0, 200);
    let lines = gw.access_log(1).await;
    assert_eq!(lines[0]["fallback"], true);
    assert_eq!(lines[0]["tries"], 1);
    assert_eq!(lines[0]["status"], 200);
}

/// The try's timer lives with the pooled HTTP/1.1 connection and is moved to each request's
/// deadline. A reused connection must time out at the deadline of the request it carries now:
/// an earlier one than the last request's (`grpc-timeout` cuts the budget), and a later one.
#[tokio::test]
async fn a_reused_connection_times_out_at_the_deadline_of_the_request_it_carries() {
    let upstream = Upstream::start("svc").await;
    let gw = TestGateway::start_with(&config(&upstream, BREAKER, ""), &[]).await;
    let client = http1_client();
    // The connection is pooled with its timer set to this request's deadline (150 ms per try).
    assert_eq!(client.get(&gw.url("/x")).await.0, 200);

    // An answer after 80 ms: inside the last request's deadline, past this one's 30 ms.
    upstream.set_fault(Fault::Slow(Duration::from_millis(80)));
    let request = http::Request::get(gw.url("/x"))
        .header("grpc-timeout", "30m")
        .body(support::empty())
        .unwrap();
    assert_eq!(client.fetch(request).await.status, 504);
    assert_eq!(
        upstream.connection_count(),
        1,
        "the pooled connection carried it"
    );

    // The timed-out connection is dropped: a fresh one, then reused after its first deadline
    // has passed (a timer left at that deadline would fire at once).
    upstream.set_fault(Fault::None);
    assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    assert_eq!(upstream.connection_count(), 2);
}
