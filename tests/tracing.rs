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

mod collector {
    //! A tiny OTLP/gRPC trace collector on a loopback port: every export request it receives is
    //! passed to the test over a channel.

    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::trace::v1::Span;
    use tokio::sync::mpsc;

    struct Sink(mpsc::UnboundedSender<ExportTraceServiceRequest>);

    #[tonic::async_trait]
    impl TraceService for Sink {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let _ = self.0.send(request.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// A running collector: its URL and the spans it has received.
    pub struct Collector {
        pub url: String,
        received: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
        pub spans: Vec<Span>,
    }

    impl Collector {
        pub async fn start() -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let (tx, received) = mpsc::unbounded_channel();
            let service = TraceServiceServer::new(Sink(tx));
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let service = TowerToHyperService::new(service.clone());
                    tokio::spawn(async move {
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .http2_only()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self {
                url,
                received,
                spans: Vec::new(),
            }
        }

        /// Waits (bounded at 10 s, a safety net) until `n` spans have arrived.
        pub async fn wait_for_spans(&mut self, n: usize) {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while self.spans.len() < n {
                let request = tokio::time::timeout_at(deadline, self.received.recv())
                    .await
                    .expect("the collector received too few spans")
                    .expect("collector stopped");
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        self.spans.extend(scope.spans);
                    }
                }
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn sampled_requests_are_exported_to_an_otlp_collector_and_unsampled_ones_are_not() {
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

    let mut collector = collector::Collector::start().await;
    let app = Upstream::start("app").await;
    let gw = gateway(
        &app,
        "",
        &format!(
            "  tracing: {{ sample_ratio: 0, otlp_endpoint: \"{}\" }}",
            collector.url
        ),
    )
    .await;
    // Unsampled first (client flag 00, ratio 0): nothing may be exported for it.
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    assert_eq!(
        get_with(&gw, "/api/quiet", &[("traceparent", unsampled)])
            .await
            .status,
        200
    );
    assert_eq!(
        get_with(&gw, "/api/x", &[("traceparent", CLIENT)])
            .await
            .status,
        200
    );
    collector.wait_for_spans(2).await;
    let spans = &collector.spans;
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) == CLIENT_TRACE),
        "only the sampled trace is exported"
    );
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("the gateway's span");
    let client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("the upstream try's span");
    assert_eq!(
        hex(&server.parent_span_id),
        "00f067aa0ba902b7",
        "child of the client's span"
    );
    assert_eq!(
        client.parent_span_id, server.span_id,
        "the try is a child of the gateway span"
    );
    assert!(server.end_time_unix_nano >= server.start_time_unix_nano);
    let seen = app.last_request().unwrap();
    let (trace, span, _) = split(seen.headers["traceparent"].to_str().unwrap());
    assert_eq!(trace, CLIENT_TRACE);
    assert_eq!(
        span,
        hex(&client.span_id),
        "the upstream's parent is the try span"
    );
}

#[tokio::test]
async fn sampled_routes_log_every_error_and_only_their_share_of_successes() {
    let app = Upstream::start("app").await;
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
observability:
  access_log: {{ format: json, output: \"${{LOG}}\", sample_successes: {{ busy: 0 }} }}
upstreams:
  app:
    targets: [{{ url: \"{}\" }}]
routes:
  - {{ name: busy, match: {{ path_prefix: /busy }}, rewrite: {{ strip_prefix: /busy }}, upstream: app }}
  - {{ name: quiet, match: {{ path_prefix: /quiet }}, upstream: app }}
",
        app.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let client = http1_client();
    for i in 0..5 {
        assert_eq!(client.get(&gw.url(&format!("/busy/{i}"))).await.0, 200);
    }
    assert_eq!(client.get(&gw.url("/busy/status/503")).await.0, 503);
    assert_eq!(client.get(&gw.url("/quiet/1")).await.0, 200);
    let log = gw.access_log(2).await;
    let paths: Vec<&str> = log.iter().map(|l| l["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/busy/status/503", "/quiet/1"]);
}

#[test]
fn sampling_a_route_that_does_not_exist_is_rejected() {
    let yaml = "version: 1
listeners: [{ name: public, address: \"127.0.0.1:0\" }]
observability:
  access_log: { sample_successes: { nosuch: 0.5, all: 2 } }
  tracing: { otlp_endpoint: \"https://collector:4317\", sample_ratio: 1.5 }
upstreams:
  app: { targets: [{ url: \"http://127.0.0.1:1\" }] }
routes:
  - { name: all, match: { path_prefix: / }, upstream: app }
";
    let errors = gantry::config::load_str("t.yaml", yaml)
        .err()
        .unwrap()
        .to_string();
    assert!(
        errors.contains("observability.access_log.sample_successes.nosuch: no route is named"),
        "{errors}"
    );
    assert!(
        errors.contains("observability.access_log.sample_successes.all: must be between 0 and 1"),
        "{errors}"
    );
    assert!(
        errors.contains("observability.tracing.otlp_endpoint: expected http://HOST:PORT"),
        "{errors}"
    );
    assert!(
        errors.contains("observability.tracing.sample_ratio: must be between 0 and 1"),
        "{errors}"
    );
}
