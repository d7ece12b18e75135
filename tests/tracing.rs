#![allow(clippy::unwrap_used)]
//! W3C trace context end to end: the client's trace continues upstream with a new span per try,
//! a missing or spoofed `traceparent` starts a new trace, and the trace id shows up in the access
//! log and in problem+json.

mod support;

use http::Request;
use support::{Fault, TestGateway, Upstream, empty, http1_client};

const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn gateway(upstream: &Upstream, extra: &str, tracing: &str) -> TestGateway {
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
observability:
  access_log: {{ format: json, output: \"${{LOG}}\" }}
{tracing}
upstreams:
  app:
    targets: [{{ url: \"{}\" }}]
{extra}
routes:
  - {{ name: all, match: {{ path_prefix: /api }}, upstream: app }}
",
        upstream.url()
    );
    TestGateway::start_with(&yaml, &[]).await
}

/// `(trace id, span id, flags)` of a `traceparent` the upstream received.
fn split(traceparent: &str) -> (String, String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    assert!(
        traceparent
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

async fn get_with(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> support::Collected {
    let mut request = Request::get(gw.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    http1_client().fetch(request.body(empty()).unwrap()).await
}

#[tokio::test]
async fn the_client_trace_continues_upstream_with_the_gateway_span_as_parent() {
    let app = Upstream::start("app").await;
    let gw = gateway(&app, "", "").await;
    let response = get_with(
        &gw,
        "/api/x",
        &[("traceparent", CLIENT), ("tracestate", "vendor=opaque")],
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = app.last_request().unwrap();
    let (trace, span, flags) = split(seen.headers["traceparent"].to_str().unwrap());
    assert_eq!(trace, CLIENT_TRACE);
    assert_ne!(
        span, "00f067aa0ba902b7",
        "the upstream's parent is the gateway's span"
    );
    assert_eq!(flags, "01", "the client's sampling decision is kept");
    assert_eq!(seen.headers["tracestate"], "vendor=opaque");
    let log = gw.access_log(1).await;
    assert_eq!(log[0]["trace_id"], CLIENT_TRACE);
}

#[tokio::test]
async fn a_request_without_a_trace_gets_a_new_one_sampled_by_ratio() {
    let app = Upstream::start("app").await;
    let gw = gateway(&app, "", "  tracing: { sample_ratio: 1.0 }").await;
    assert_eq!(get_with(&gw, "/api/a", &[]).await.status, 200);
    assert_eq!(get_with(&gw, "/api/b", &[]).await.status, 200);
    let requests = app.requests();
    let (first, _, flags) = split(requests[0].headers["traceparent"].to_str().unwrap());
    let (second, _, _) = split(requests[1].headers["traceparent"].to_str().unwrap());
    assert_ne!(first, "0".repeat(32));
    assert_ne!(first, second, "every request is its own trace");
    assert_eq!(flags, "01", "sample_ratio 1 samples every new trace");
    let log = gw.access_log(2).await;
    assert_eq!(log[0]["trace_id"], first.as_str());
}

#[tokio::test]
async fn spoofed_or_malformed_trace_headers_start_a_new_trace() {
    let app = Upstream::start("app").await;
    let gw = gateway(&app, "", "").await;
    let oversized = format!("v={}", "a".repeat(600));
    for (parent, state) in [
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "x=1",
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "x=1",
        ),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "x=1",
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "x=1",
        ),
        ("garbage", "x=1"),
    ] {
        let response = get_with(
            &gw,
            "/api/x",
            &[("traceparent", parent), ("tracestate", state)],
        )
        .await;
        assert_eq!(response.status, 200, "{parent}");
        let seen = app.last_request().unwrap();
        let (trace, _, flags) = split(seen.headers["traceparent"].to_str().unwrap());
        assert_ne!(trace, CLIENT_TRACE, "{parent}");
        assert_eq!(flags, "00", "sample_ratio defaults to 0");
        assert!(seen.headers.get("tracestate").is_none(), "{parent}");
    }
    // A valid parent with an oversized state: the trace continues, the state is dropped.
    let response = get_with(
        &gw,
        "/api/x",
        &[("traceparent", CLIENT), ("tracestate", oversized.as_str())],
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = app.last_request().unwrap();
    assert_eq!(
        split(seen.headers["traceparent"].to_str().unwrap()).0,
        CLIENT_TRACE
    );
    assert!(seen.headers.get("tracestate").is_none());
}

#[tokio::test]
async fn each_try_is_its_own_span_of_the_same_trace() {
    let app = Upstream::start("app").await;
    app.set_fault(Fault::Flapping(503));
    let gw = gateway(
        &app,
        "    retries: { attempts: 2, on: [503], min_retries_per_second: 100 }",
        "",
    )
    .await;
    let response = get_with(&gw, "/api/x", &[("traceparent", CLIENT)]).await;
    assert_eq!(response.status, 200, "the retry succeeded");
    let requests = app.requests();
    assert_eq!(requests.len(), 2);
    let (trace_a, span_a, _) = split(requests[0].headers["traceparent"].to_str().unwrap());
    let (trace_b, span_b, _) = split(requests[1].headers["traceparent"].to_str().unwrap());
    assert_eq!(
        (trace_a.as_str(), trace_b.as_str()),
        (CLIENT_TRACE, CLIENT_TRACE)
    );
    assert_ne!(span_a, span_b);
}

#[tokio::test]
async fn problem_json_carries_the_trace_id() {
    let app = Upstream::start("app").await;
    let gw = gateway(&app, "", "").await;
    let response = get_with(&gw, "/nowhere", &[("traceparent", CLIENT)]).await;
    assert_eq!(response.status, 404);
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(body["trace_id"], CLIENT_TRACE);
    assert_eq!(app.request_count(), 0);
}
