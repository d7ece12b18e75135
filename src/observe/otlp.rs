//! OTLP/gRPC export of sampled spans: the gateway's span per request and a client span per
//! upstream try.
//!
//! Requests hand finished spans to a bounded channel and never wait: when the collector is slow
//! or down, spans are dropped and counted rather than slowing requests. One background task
//! sends whatever has queued up as one `ExportTraceServiceRequest` whenever it catches up (no
//! timer, so nothing here depends on the clock), connecting lazily and reconnecting after an error.
//! Unsampled requests never reach this module.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use tokio::sync::mpsc;

use super::tracing::{SpanId, TraceContext};

/// Spans queued for export at most; more are dropped.
const QUEUE: usize = 8192;
/// Spans per export request at most.
const BATCH: usize = 512;

/// Sends sampled spans to an OTLP/gRPC collector.
pub struct SpanExporter {
    spans: mpsc::Sender<Span>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for SpanExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanExporter").finish_non_exhaustive()
    }
}

impl SpanExporter {
    /// Starts the export task for `endpoint` (`http://host:port`); needs a Tokio runtime.
    pub fn start(endpoint: String) -> Arc<Self> {
        let (spans, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(export_loop(endpoint, receiver));
        Arc::new(Self {
            spans,
            dropped: AtomicU64::new(0),
        })
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn submit(&self, span: Span) {
        if self.spans.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The gateway's (server) span of one request.
    pub fn server_span(
        &self,
        trace: &TraceContext,
        route: Option<&str>,
        method: &http::Method,
        status: u16,
        started: SystemTime,
    ) {
        let mut attributes = vec![
            text("http.request.method", method.as_str()),
            int("http.response.status_code", i64::from(status)),
        ];
        if let Some(route) = route {
            attributes.push(text("http.route", route));
        }
        self.submit(Span {
            trace_id: trace.trace_id.0.to_vec(),
            span_id: trace.span.0.to_vec(),
            parent_span_id: trace.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
            trace_state: trace
                .tracestate
                .as_ref()
                .and_then(|s| s.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            flags: 0x101,
            name: route.map_or_else(|| method.as_str().to_owned(), |r| format!("{method} {r}")),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: unix_nanos(started),
            end_time_unix_nano: unix_nanos(SystemTime::now()),
            attributes,
            status: Some(status_of(status >= 500)),
            ..Span::default()
        });
    }

    /// One upstream try (client span), a child of the gateway's span.
    pub fn try_span(
        &self,
        trace: &TraceContext,
        span_id: SpanId,
        upstream: &str,
        target: &str,
        status: Option<u16>,
        started: SystemTime,
    ) {
        let mut attributes = vec![
            text("gantry.upstream", upstream),
            text("server.address", target),
        ];
        if let Some(status) = status {
            attributes.push(int("http.response.status_code", i64::from(status)));
        }
        self.submit(Span {
            trace_id: trace.trace_id.0.to_vec(),
            span_id: span_id.0.to_vec(),
            parent_span_id: trace.span.0.to_vec(),
            flags: 0x301,
            name: format!("upstream {upstream}"),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: unix_nanos(started),
            end_time_unix_nano: unix_nanos(SystemTime::now()),
            attributes,
            status: Some(status_of(status.is_none_or(|s| s >= 500))),
            ..Span::default()
        });
    }
}

fn status_of(error: bool) -> Status {
    Status {
        code: if error {
            status::StatusCode::Error as i32
        } else {
            status::StatusCode::Unset as i32
        },
        ..Status::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

async fn export_loop(endpoint: String, mut receiver: mpsc::Receiver<Span>) {
    let mut client: Option<TraceServiceClient<tonic::transport::Channel>> = None;
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        if client.is_none() {
            match TraceServiceClient::connect(endpoint.clone()).await {
                Ok(connected) => client = Some(connected),
                Err(err) => {
                    tracing::warn!(endpoint = %endpoint, error = %err, spans = batch.len(), "OTLP collector unreachable; spans dropped");
                    continue;
                }
            }
        }
        let Some(connected) = client.as_mut() else {
            continue;
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![text("service.name", "gantry")],
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "gantry".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    spans: batch,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        if let Err(err) = connected.export(request).await {
            tracing::warn!(endpoint = %endpoint, error = %err, "OTLP export failed; spans dropped");
            client = None;
        }
    }
}
