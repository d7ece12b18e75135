//! The `forward` handler: a request to the route's upstream, with the resilience layers in a
//! fixed order, streamed both ways.
//!
//! Order: deadline (the upstream's `request` timeout, shortened by a client's `grpc-timeout`) →
//! load shedding (concurrency limit, short queue) → body: kept in memory when it may be sent again
//! (a retryable method, a known length up to 64 KiB) → per try: pick an available target (another
//! one than before when there is one) → circuit breaker → per-try timeout (`per_try`, never past
//! the deadline), with the time left sent upstream in `Gantry-Timeout-Ms` → outcome counted by the
//! breaker and the target's passive health → retry (condition, attempts, budget, full-jitter
//! backoff) or hand the response back with its body still streaming. A response that reached the
//! client is never retried: only a try whose response is dropped here is. A request that never
//! left a stale keep-alive connection is sent again on another connection (safe: not a byte was
//! written; not a retry).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::io::AsyncWriteExt as _;

use super::body::{BodyFailure, ConnectionLease, FailureSlot, RequestBody, ResponseBody};
use crate::error::GatewayError;
use crate::observe::access_log::AccessRecord;
use crate::observe::metrics;
use crate::observe::tracing::TraceContext;
use crate::pipeline::fields::ClientFields;
use crate::pipeline::headers::remove_hop_by_hop;
use crate::runtime::{Route, ServerSettings};
use crate::server::incoming::{ClientBody, ClientUpgrade};
use crate::upstream::client::{ConnectError, SendError, SendFailure, UpstreamBody};
use crate::upstream::cluster::{
    HostHeader, InFlightGuard, Pick, Target, UpstreamCluster, UpstreamProtocol,
};
use crate::upstream::fields::{AddedFields, OutgoingFields};
use crate::upstream::h1::H1Error;
use crate::upstream::retry::REPLAY_LIMIT;
use crate::upstream::tls::UpstreamStream;

/// The time left for a try, in milliseconds, sent to the upstream so it can give up in time.
pub const TIMEOUT_HEADER: HeaderName = HeaderName::from_static("gantry-timeout-ms");

/// Marks an answer that came from the route's fallback, not from the upstream.
pub const FALLBACK_HEADER: HeaderName = HeaderName::from_static("gantry-fallback");

const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// A route's static stand-in answer (`routes[].fallback`).
#[derive(Debug, Clone)]
pub struct Fallback {
    /// Status code.
    pub status: StatusCode,
    /// Headers, `Gantry-Fallback: true` added when served.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// The answer to a forwarded request: `result`, or the route's fallback in its place when the
/// upstream is open-circuited, has no healthy target or ran out of time. (Kept apart from the
/// call itself, so the edge awaits the call with no wrapping future around it.)
pub fn answer_or_fallback(
    route: &Route,
    result: Result<Response<ResponseBody>, GatewayError>,
    settings: &ServerSettings,
    record: &mut AccessRecord,
) -> Result<Response<ResponseBody>, GatewayError> {
    match (result, &route.fallback) {
        (Err(err), Some(fallback)) if serves_fallback(&err) => {
            tracing::debug!(route = %route.name, error = %err, "serving the route's fallback");
            record.fallback = true;
            let mut response = Response::new(ResponseBody::full(fallback.body.clone()));
            *response.status_mut() = fallback.status;
            *response.headers_mut() = fallback.headers.clone();
            response
                .headers_mut()
                .insert(FALLBACK_HEADER, HeaderValue::from_static("true"));
            response
                .headers_mut()
                .append(header::VIA, settings.via_entry.clone());
            Ok(response)
        }
        (result, _) => result,
    }
}

/// The failures a fallback stands in for: the upstream cannot be asked, or did not answer in time.
fn serves_fallback(err: &GatewayError) -> bool {
    matches!(
        err,
        GatewayError::CircuitOpen { .. }
            | GatewayError::NoHealthyTarget { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::ConnectTimeout { .. }
            | GatewayError::DeadlineExceeded { .. }
    )
}

/// One request to an upstream cluster, from the edge or from an aggregate's call.
pub struct UpstreamCall<'a> {
    /// Method, headers (edge-cleaned), version.
    pub parts: Parts,
    /// Where the body comes from.
    pub body: OutgoingBody,
    /// Path and query to send upstream.
    pub path_and_query: String,
    /// Host the client addressed, sent upstream with `host_header: preserve`.
    pub host: Option<HeaderValue>,
    /// Client IP, for consistent hashing.
    pub client_ip: IpAddr,
    /// The client's side of a WebSocket upgrade.
    pub client_upgrade: Option<ClientUpgrade>,
    /// A shorter time budget than the upstream's `request` timeout (an aggregate's remaining time).
    pub budget: Option<Duration>,
    /// The trace the call belongs to (passed along, not looked up in the request's extensions:
    /// the extensions map costs an allocation per request).
    pub trace: Option<TraceContext>,
    /// Which fields of interest the head may carry ([`ClientFields::ALL`] when unknown).
    pub fields: ClientFields,
    /// Fields added beside the head's map, to every try (see [`AddedFields`]).
    pub added: AddedFields<'a>,
}

/// The body of an upstream request.
pub enum OutgoingBody {
    /// The client's body, streamed (or buffered when small enough to replay).
    Client(ClientBody),
    /// A body already in memory (an aggregate's call), sent again on every try.
    Buffered(Bytes),
}

/// The request body: streamed once, or buffered and sent on every try.
enum BodySource {
    Stream(Option<RequestBody>),
    Buffered(Bytes, Option<HeaderMap>),
}

impl BodySource {
    fn take(&mut self) -> Option<RequestBody> {
        match self {
            Self::Stream(body) => body.take(),
            Self::Buffered(data, trailers) => {
                Some(RequestBody::buffered(data.clone(), trailers.clone()))
            }
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Self::Buffered(..))
    }
}

/// How a try ended, as the retry policy, breaker and health see it.
enum TryOutcome {
    Response(Response<UpstreamBody>),
    Failed(GatewayError, FailureKind),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    Connect,
    Reset,
    Timeout,
    /// The client's body broke: not the upstream's fault, never retried.
    Client,
}

/// Sends `call` to `cluster` with every resilience layer (deadline, shedding, breaker, retries,
/// health) and hands back the response with its body still streaming: for the edge (then
/// [`answer_or_fallback`]) and for an aggregate's calls.
///
/// Not an `async fn`: one copies each argument into a local of its future when first polled, so
/// the 584-byte call was written into the connection's future state (cold memory, one copy per
/// connection) twice, then a third time field by field. Destructured here, before the future
/// exists, its fields are written into it once (simulated L2 misses per GET at c=50: 262 → 233,
/// `CALLGRIND_CACHE=1 bench/callgrind`).
pub fn forward_to_cluster(
    cluster: &UpstreamCluster,
    call: UpstreamCall<'_>,
    settings: &ServerSettings,
    upstream_metrics: &metrics::UpstreamMetrics,
    record: &mut AccessRecord,
) -> impl Future<Output = Result<Response<ResponseBody>, GatewayError>> {
    let UpstreamCall {
        mut parts,
        body,
        path_and_query,
        host,
        client_ip,
        client_upgrade,
        budget: budget_cap,
        trace,
        fields,
        mut added,
    } = call;
    async move {
        let resilience = &cluster.resilience;
        let state = &*resilience.state;
        if cluster.hashes_on_a_header() {
            // The balancer may hash on one of the added fields: it reads the map.
            OutgoingFields {
                added: &added,
                ..OutgoingFields::none()
            }
            .add_to(&mut parts.headers);
            added = AddedFields {
                raw_response: added.raw_response,
                ..AddedFields::default()
            };
        }
        if record.is_enabled() {
            record.upstream = Some(cluster.name.clone());
        }
        let upstream_name = || cluster.name.to_string();

        let started = Instant::now();
        let mut budget = cluster.timeouts.request;
        if fields.may_have(ClientFields::GRPC_TIMEOUT)
            && let Some(value) = parts.headers.get(&GRPC_TIMEOUT)
        {
            let client =
                parse_grpc_timeout(value.as_bytes()).ok_or(GatewayError::InvalidGrpcTimeout)?;
            budget = budget.min(client);
        }
        if let Some(cap) = budget_cap {
            budget = budget.min(cap);
        }
        if budget.is_zero() {
            return Err(GatewayError::DeadlineExceeded {
                upstream: upstream_name(),
            });
        }
        let deadline = crate::upstream::clock::later(started, budget);

        let shed_permit =
            match &resilience.shed {
                Some(shed) => Some(state.shedder.acquire(shed).await.map_err(|_| {
                    GatewayError::Overloaded {
                        upstream: upstream_name(),
                    }
                })?),
                None => None,
            };

        let failure = FailureSlot::default();
        record.request_body = Some(failure.clone());
        let retry = &resilience.retry;
        let mut source = match body {
            OutgoingBody::Buffered(data) => BodySource::Buffered(data, None),
            OutgoingBody::Client(body)
                if client_upgrade.is_none()
                    && retry.allows_method(&parts.method)
                    && (body.is_end_stream()
                        || body.size_hint().exact().is_some_and(|n| n <= REPLAY_LIMIT)) =>
            {
                let (data, trailers) = buffer_body(body, settings, cluster, &failure).await?;
                BodySource::Buffered(data, trailers)
            }
            OutgoingBody::Client(body) => BodySource::Stream(Some(RequestBody::new(
                body,
                settings.limits.max_body_bytes,
                cluster.timeouts.idle,
                failure.clone(),
            ))),
        };
        let grpc = fields.may_have(ClientFields::CONTENT_TYPE) && is_grpc(&parts.headers);
        // A buffered body from an aggregate's POST call is replayable but must not be retried either.
        let method_retryable = retry.allows_method(&parts.method);
        let websocket = client_upgrade.is_some();
        if retry.attempts > 1 {
            // Only upstreams that retry pay for the budget's bookkeeping.
            state.budget.deposit();
        }

        let mut template = Some(parts);
        let mut tried: Vec<Arc<Target>> = Vec::new();
        let mut attempt: u32 = 0;
        let result = loop {
            attempt += 1;
            // A try after the one that moved the head never happens (`may_retry` checks), but a
            // missing head must not panic.
            let Some(head) = template.as_ref() else {
                break Err(GatewayError::Internal);
            };
            let target = match cluster.pick(&head.headers, client_ip, &tried) {
                Pick::Target(target) => target,
                Pick::NoTargets => {
                    break Err(GatewayError::NoTarget {
                        upstream: upstream_name(),
                    });
                }
                Pick::NoneAvailable => {
                    break Err(GatewayError::NoHealthyTarget {
                        upstream: upstream_name(),
                    });
                }
            };
            // The first try starts when the call did, with the whole budget: no clock read and no
            // clock arithmetic on every request.
            let (try_started, remaining) = if attempt == 1 {
                (started, budget)
            } else {
                let now = Instant::now();
                (now, deadline.saturating_duration_since(now))
            };
            if remaining.is_zero() {
                break Err(GatewayError::DeadlineExceeded {
                    upstream: upstream_name(),
                });
            }
            let permit = match &resilience.breaker {
                Some(breaker) => match state.breaker.try_acquire(breaker) {
                    Ok(permit) => Some(permit),
                    Err(refused) => {
                        break Err(GatewayError::CircuitOpen {
                            upstream: upstream_name(),
                            retry_after: refused.retry_after,
                        });
                    }
                },
                None => None,
            };
            let Some(body) = source.take() else {
                break Err(GatewayError::Internal);
            };
            // The last possible try moves the head; earlier ones copy it for the next.
            let mut parts = if source.replayable() && attempt < retry.attempts {
                template.as_ref().map(copy_head)
            } else {
                template.take()
            }
            .ok_or(GatewayError::Internal)?;
            let try_timeout = cluster.timeouts.per_try.min(remaining);
            let host_field = build_upstream_head(
                &mut parts,
                cluster,
                &target,
                host.as_ref(),
                &path_and_query,
                websocket,
                fields,
            )?;
            let timeout_ms = set_deadline_headers(&mut parts.headers, try_timeout, grpc);
            // A head without trace fields gets the try's `traceparent` as bytes, beside the map.
            let trace_beside_map =
                !fields.may_have(ClientFields::TRACEPARENT | ClientFields::TRACESTATE);
            let mut traceparent = None;
            let try_span = trace.as_ref().map(|trace| {
                // Each try is its own span: the upstream sees a new parent id per try.
                let span = if trace_beside_map && trace.tracestate.is_none() {
                    let (span, text) = trace.child_traceparent_text();
                    traceparent = Some(text);
                    span
                } else {
                    trace.inject(
                        &mut parts.headers,
                        fields.may_have(ClientFields::TRACESTATE),
                    )
                };
                (
                    span,
                    trace
                        .exporter
                        .as_ref()
                        .map(|_| std::time::SystemTime::now()),
                )
            });
            if record.is_enabled() {
                record.target = Some(target.authority.clone());
            }
            let in_flight = InFlightGuard::new(target.clone());
            record.tries = attempt;
            let sent = {
                let try_deadline = crate::upstream::clock::later(try_started, try_timeout);
                let request = Request::from_parts(parts, body);
                let extra = OutgoingFields {
                    added: &added,
                    host: host_field,
                    traceparent: traceparent.as_ref(),
                    number: Some((&TIMEOUT_HEADER, timeout_ms)),
                };
                // Pinned where it is built: awaiting it in place copies nothing.
                std::pin::pin!(send(cluster, &target, request, try_deadline, &extra)).await
            };
            let outcome = match sent {
                Err(TryError::TimedOut) => match client_failure(&failure) {
                    Some(err) => TryOutcome::Failed(err, FailureKind::Client),
                    None => TryOutcome::Failed(
                        GatewayError::UpstreamTimeout {
                            upstream: upstream_name(),
                            after: try_timeout,
                        },
                        FailureKind::Timeout,
                    ),
                },
                Err(TryError::Failed(err)) => match client_failure(&failure) {
                    Some(err) => TryOutcome::Failed(err, FailureKind::Client),
                    None => {
                        let kind = match err {
                            GatewayError::UpstreamConnect { .. }
                            | GatewayError::ConnectTimeout { .. } => FailureKind::Connect,
                            _ => FailureKind::Reset,
                        };
                        TryOutcome::Failed(err, kind)
                    }
                },
                Ok(response) => TryOutcome::Response(response),
            };
            // Read by the metrics, and by a retry's backoff (read there when not here).
            let try_ended = settings.metrics_enabled.then(Instant::now);
            if let Some(try_ended) = try_ended {
                let observed = match &outcome {
                    TryOutcome::Response(response) => {
                        metrics::TryOutcome::Status(response.status().as_u16())
                    }
                    TryOutcome::Failed(_, FailureKind::Connect) => {
                        metrics::TryOutcome::ConnectError
                    }
                    TryOutcome::Failed(_, FailureKind::Reset) => metrics::TryOutcome::Reset,
                    TryOutcome::Failed(_, FailureKind::Timeout) => metrics::TryOutcome::Timeout,
                    TryOutcome::Failed(_, FailureKind::Client) => metrics::TryOutcome::ClientError,
                };
                upstream_metrics.upstream_try(
                    &cluster.name,
                    &target.metric_label,
                    &target.try_metrics,
                    observed,
                    try_ended.saturating_duration_since(try_started),
                );
            }
            if let (Some(trace), Some((span, Some(started)))) = (&trace, try_span)
                && let Some(exporter) = &trace.exporter
            {
                let status = match &outcome {
                    TryOutcome::Response(response) => Some(response.status().as_u16()),
                    TryOutcome::Failed(..) => None,
                };
                exporter.try_span(
                    trace,
                    span,
                    &cluster.name,
                    &target.authority,
                    status,
                    started,
                );
            }
            // Every try counts toward the breaker and its target's health.
            let status = match &outcome {
                TryOutcome::Response(response) => effective_status(response, grpc),
                TryOutcome::Failed(..) => 0,
            };
            let upstream_failed = match &outcome {
                TryOutcome::Response(..) => (500..600).contains(&status),
                TryOutcome::Failed(_, kind) => *kind != FailureKind::Client,
            };
            if !matches!(outcome, TryOutcome::Failed(_, FailureKind::Client)) {
                if let Some(permit) = permit {
                    permit.record(!upstream_failed);
                }
                if upstream_failed {
                    if let Some(outlier) = &resilience.outlier {
                        target
                            .health
                            .record_failure(outlier, &cluster.targets.load());
                    }
                } else {
                    target.health.record_success();
                }
            }
            let retryable = match &outcome {
                TryOutcome::Response(..) => retry.retries_status(status),
                TryOutcome::Failed(_, FailureKind::Connect) => retry.on_connect_error,
                TryOutcome::Failed(_, FailureKind::Reset) => retry.on_reset,
                TryOutcome::Failed(_, FailureKind::Timeout) => retry.on_timeout,
                TryOutcome::Failed(_, FailureKind::Client) => false,
            };
            let allowed = retryable
                && method_retryable
                && source.replayable()
                && attempt < retry.attempts
                && template.is_some();
            let backoff = if allowed {
                retry.backoff(attempt)
            } else {
                Duration::ZERO
            };
            // The budget is asked last: a retry that would not be made must not spend it.
            if allowed
                && crate::upstream::clock::later(try_ended.unwrap_or_else(Instant::now), backoff)
                    < deadline
            {
                if state
                    .budget
                    .try_withdraw(retry.budget_ratio, retry.min_retries_per_second)
                {
                    drop(outcome);
                    drop(in_flight);
                    tracing::debug!(upstream = %cluster.name, target = %target.authority, attempt, "retrying");
                    if settings.metrics_enabled {
                        upstream_metrics.retry(&cluster.name);
                    }
                    tried.push(target);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                if settings.metrics_enabled {
                    upstream_metrics.retry_budget_exhausted(&cluster.name);
                }
            }
            break match outcome {
                TryOutcome::Failed(err, _) => Err(err),
                TryOutcome::Response(response) => Ok((response, target, in_flight)),
            };
        };
        if record.is_enabled() {
            record.upstream_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
        }
        let mut shed_permit = shed_permit;
        if let Some(permit) = &mut shed_permit {
            let failed = match &result {
                Ok((response, ..)) => (500..600).contains(&effective_status(response, grpc)),
                Err(err) => !matches!(err.origin(), crate::error::ErrorOrigin::Client),
            };
            permit.sample(failed);
        }
        let (response, target, in_flight) = result?;
        let lease = ConnectionLease {
            target,
            in_flight,
            shed: shed_permit.map(Box::new),
        };
        finish_response(response, lease, cluster, settings, client_upgrade)
    }
}

/// Hands the upstream's response back: hop-by-hop removed, `Via` added, body streaming (or the
/// WebSocket tunnel started).
fn finish_response(
    mut response: Response<UpstreamBody>,
    lease: ConnectionLease,
    cluster: &UpstreamCluster,
    settings: &ServerSettings,
    client_upgrade: Option<ClientUpgrade>,
) -> Result<Response<ResponseBody>, GatewayError> {
    let websocket = client_upgrade.is_some();
    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if !hygiene_done(&response) {
        remove_hop_by_hop(response.headers_mut(), upgraded && websocket);
        // Only Gantry says an answer is a fallback; an upstream's claim would mislead clients.
        response.headers_mut().remove(FALLBACK_HEADER);
    }
    // Fields passed through unparsed get `Via` after them (the map path appends it).
    let raw = match response.body_mut() {
        UpstreamBody::Http1(body) => body.raw_fields_mut(),
        UpstreamBody::Http2(_) => None,
    };
    match raw {
        Some(raw) => raw.set_via(settings.via_entry.clone()),
        None => {
            response
                .headers_mut()
                .append(header::VIA, settings.via_entry.clone());
        }
    }

    if upgraded {
        let Some(client_upgrade) = client_upgrade else {
            // An upstream may not switch protocols the client did not ask for (or the route forbids).
            return Err(GatewayError::UpstreamFailed {
                upstream: cluster.name.to_string(),
                kind: "unexpected protocol switch",
                source: None,
            });
        };
        let (parts, body) = response.into_parts();
        let UpstreamBody::Http1(body) = body else {
            return Err(GatewayError::UpstreamFailed {
                upstream: cluster.name.to_string(),
                kind: "unexpected protocol switch",
                source: None,
            });
        };
        let Some(upstream) = body.into_upgraded() else {
            return Err(GatewayError::UpstreamFailed {
                upstream: cluster.name.to_string(),
                kind: "unexpected protocol switch",
                source: None,
            });
        };
        // A tunnel may live for hours: it keeps the target's in-flight count, not a shedding slot.
        tokio::spawn(tunnel(client_upgrade, upstream, lease.in_flight));
        return Ok(Response::from_parts(
            parts,
            ResponseBody::full(Bytes::new()),
        ));
    }

    let (parts, incoming) = response.into_parts();
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(incoming, cluster.timeouts.idle, Some(lease)),
    ))
}

/// Whether the response's fields already went through what `finish_response` removes: our
/// HTTP/1.1 client leaves hop-by-hop fields out as it reads a head whose hygiene needs no
/// decision, and holds back any head with a `Gantry-*` field (see `upstream::h1`).
fn hygiene_done(response: &Response<UpstreamBody>) -> bool {
    match response.body() {
        UpstreamBody::Http1(body) => body.head_is_clean(),
        UpstreamBody::Http2(_) => false,
    }
}

/// Reads a small body of known length into memory so every try can send it.
async fn buffer_body(
    body: ClientBody,
    settings: &ServerSettings,
    cluster: &UpstreamCluster,
    failure: &FailureSlot,
) -> Result<(Bytes, Option<HeaderMap>), GatewayError> {
    let expected = body.size_hint().exact().unwrap_or(0);
    let mut body = RequestBody::new(
        body,
        settings.limits.max_body_bytes.min(REPLAY_LIMIT),
        cluster.timeouts.idle,
        failure.clone(),
    );
    let mut data = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(
                client_failure(failure).unwrap_or_else(|| GatewayError::BadRequestBody {
                    reason: "the body ended early".to_owned(),
                }),
            );
        };
        match frame.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    Ok((data.freeze(), trailers))
}

/// A copy of the request head for one try (extensions are not needed upstream).
fn copy_head(parts: &Parts) -> Parts {
    let (mut copy, ()) = Request::new(()).into_parts();
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}

/// The status a response stands for: its own, or for a gRPC trailers-only answer (HTTP 200 with
/// `grpc-status` in the head) the HTTP status of its gRPC code (the gRPC HTTP mapping, reversed),
/// so `UNAVAILABLE` counts and retries like a 503.
fn effective_status<B>(response: &Response<B>, grpc: bool) -> u16 {
    let status = response.status().as_u16();
    if !grpc || status != 200 {
        return status;
    }
    match response
        .headers()
        .get(&GRPC_STATUS)
        .map(HeaderValue::as_bytes)
    {
        Some(b"14") => 503,        // UNAVAILABLE
        Some(b"4") => 504,         // DEADLINE_EXCEEDED
        Some(b"13" | b"2") => 500, // INTERNAL, UNKNOWN
        Some(b"12") => 501,        // UNIMPLEMENTED
        Some(b"8") => 429,         // RESOURCE_EXHAUSTED
        _ => status,
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Tells the upstream how long this try may take: `grpc-timeout` for gRPC (replacing the
/// client's, which only ever shortens ours), and the `Gantry-Timeout-Ms` value returned, which the
/// upstream client writes itself (straight into an HTTP/1.1 head: no value allocated, no map
/// insert). The client's own `Gantry-Timeout-Ms` went with every `Gantry-*` field at the edge.
fn set_deadline_headers(headers: &mut HeaderMap, left: Duration, grpc: bool) -> u64 {
    let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
    if grpc {
        // At most 8 digits (gRPC spec); 99,999,999 ms is 27 hours.
        if let Ok(value) = HeaderValue::from_str(&format!("{}m", millis.min(99_999_999))) {
            headers.insert(GRPC_TIMEOUT, value);
        }
    }
    millis
}

/// `grpc-timeout`: 1–8 ASCII digits and a unit (`H M S m u n`), per the gRPC HTTP/2 spec.
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Rewrites the head in place for the upstream: URI, version, Host/`:authority`, hop-by-hop.
/// Sets the try's version and URI and removes what must not go upstream. For an HTTP/1.1
/// upstream, the `Host` to send comes back (written ahead of the map's fields, which lose theirs).
fn build_upstream_head<'h>(
    parts: &mut Parts,
    cluster: &UpstreamCluster,
    target: &'h Target,
    client_host: Option<&'h HeaderValue>,
    path_and_query: &str,
    websocket: bool,
    fields: ClientFields,
) -> Result<Option<&'h HeaderValue>, GatewayError> {
    let authority = match cluster.host_header {
        HostHeader::Preserve => client_host.unwrap_or(&target.authority_header),
        HostHeader::Target => &target.authority_header,
    };
    // Nothing on the way adds a hop-by-hop field: a head that had none needs no scan.
    if websocket || fields.may_have(ClientFields::HOP_BY_HOP | ClientFields::TRANSFER_ENCODING) {
        remove_hop_by_hop(&mut parts.headers, websocket);
    }
    // Expect: 100-continue was answered by our own server side when the body was first read.
    if fields.may_have(ClientFields::EXPECT) {
        parts.headers.remove(header::EXPECT);
    }
    let bad_uri = |_| GatewayError::BadPath(crate::router::PathError::InvalidChar);
    match cluster.protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            // The client's origin-form target, when the path was not changed, is kept unparsed.
            let unchanged = parts.uri.scheme().is_none()
                && parts
                    .uri
                    .path_and_query()
                    .map(http::uri::PathAndQuery::as_str)
                    == Some(path_and_query);
            if !unchanged {
                parts.uri = Uri::try_from(path_and_query).map_err(bad_uri)?;
            }
            Ok(Some(authority))
        }
        UpstreamProtocol::Http2 => {
            parts.version = Version::HTTP_2;
            let authority = authority.to_str().unwrap_or(&target.authority);
            let scheme = if target.pool.settings().tls.is_some() {
                "https"
            } else {
                "http"
            };
            parts.uri = Uri::builder()
                .scheme(scheme)
                .authority(authority)
                .path_and_query(path_and_query)
                .build()
                .map_err(|_| GatewayError::InvalidHost)?;
            parts.headers.remove(header::HOST);
            Ok(None)
        }
    }
}

/// Why a try got no response.
enum TryError {
    /// Its deadline passed (waiting for a connection, or for the response head).
    TimedOut,
    /// Anything else.
    Failed(GatewayError),
}

/// Checks out a connection and sends, all before `deadline`; a request that never left a reused
/// connection is retried on another one (a keep-alive connection the upstream closed while it
/// sat idle).
async fn send(
    cluster: &UpstreamCluster,
    target: &Target,
    mut request: Request<RequestBody>,
    deadline: Instant,
    extra: &OutgoingFields<'_>,
) -> Result<Response<UpstreamBody>, TryError> {
    const MAX_STALE: usize = 3;
    for _ in 0..MAX_STALE {
        // An idle connection is ready at once: the timeout's timer is then never registered.
        let connection = tokio::time::timeout_at(deadline.into(), target.pool.checkout())
            .await
            .map_err(|_elapsed| TryError::TimedOut)?
            .map_err(|err| TryError::Failed(connect_error(cluster, err)))?;
        let reused = connection.reused();
        match connection.send(request, deadline, extra).await {
            Ok(response) => return Ok(response),
            Err(SendError {
                error: SendFailure::TimedOut,
                ..
            }) => return Err(TryError::TimedOut),
            Err(SendError {
                unsent: Some(unsent),
                ..
            }) if reused => request = unsent,
            Err(SendError { error, .. }) => {
                return Err(TryError::Failed(upstream_error(cluster, error)));
            }
        }
    }
    Err(TryError::Failed(GatewayError::UpstreamFailed {
        upstream: cluster.name.to_string(),
        kind: "connections closed before the request could be sent",
        source: None,
    }))
}

fn connect_error(cluster: &UpstreamCluster, err: ConnectError) -> GatewayError {
    let upstream = cluster.name.to_string();
    match err {
        ConnectError::Io(source) => GatewayError::UpstreamConnect { upstream, source },
        ConnectError::Timeout => GatewayError::ConnectTimeout {
            upstream,
            after: cluster.timeouts.connect,
        },
        ConnectError::Handshake(source) => GatewayError::UpstreamFailed {
            upstream,
            kind: "handshake failed",
            source: Some(Box::new(source)),
        },
        ConnectError::Tls { reason, source } => {
            tracing::debug!(upstream, error = %source, "upstream TLS handshake failed");
            GatewayError::UpstreamTls { upstream, reason }
        }
    }
}

fn upstream_error(cluster: &UpstreamCluster, error: SendFailure) -> GatewayError {
    if let Some(reason) = crate::upstream::tls::failure_in(&error) {
        return GatewayError::UpstreamTls {
            upstream: cluster.name.to_string(),
            reason,
        };
    }
    let kind = match &error {
        SendFailure::Http1(error) => match error {
            H1Error::HeadTooLarge => "response head too large",
            H1Error::Invalid(_) => "invalid response",
            H1Error::ClosedEarly | H1Error::Truncated => "connection closed before the response",
            H1Error::RequestBody(_) => "request body could not be sent",
            H1Error::Io(_) => "connection failed",
            H1Error::TimedOut => "timed out",
        },
        // `send` answers a timeout itself; kept for completeness.
        SendFailure::TimedOut => "timed out",
        SendFailure::Http2(error) if error.is_parse_too_large() => "response head too large",
        SendFailure::Http2(error) if error.is_parse() || error.is_parse_status() => {
            "invalid response"
        }
        SendFailure::Http2(error)
            if error.is_incomplete_message() || error.is_closed() || error.is_canceled() =>
        {
            "connection closed before the response"
        }
        SendFailure::Http2(error) if error.is_timeout() => "timed out",
        SendFailure::Http2(_) => "connection failed",
    };
    GatewayError::UpstreamFailed {
        upstream: cluster.name.to_string(),
        kind,
        source: Some(Box::new(error)),
    }
}

/// When the client's body caused the failure, that is the answer, not the upstream's.
fn client_failure(failure: &FailureSlot) -> Option<GatewayError> {
    match failure.failure.get()? {
        BodyFailure::TooLarge(limit) => Some(GatewayError::PayloadTooLarge { limit: *limit }),
        BodyFailure::Client(reason) => Some(GatewayError::BadRequestBody {
            reason: reason.clone(),
        }),
        BodyFailure::Idle(after) => Some(GatewayError::RequestBodyTimeout { after: *after }),
        BodyFailure::Upstream(_) => None,
    }
}

/// Copies bytes both ways between an upgraded client and upstream until either side closes.
/// What the upstream sent right after its `101` goes to the client first.
async fn tunnel(
    client: ClientUpgrade,
    (mut upstream, early): (UpstreamStream, Bytes),
    in_flight: InFlightGuard,
) {
    let mut client = match client.upgraded().await {
        Ok(client) => client,
        Err(err) => {
            tracing::debug!(error = %err, "websocket upgrade failed");
            return;
        }
    };
    if !early.is_empty() && client.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    drop(in_flight);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_the_spec() {
        assert_eq!(
            parse_grpc_timeout(b"100m"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"0m"), Some(Duration::ZERO));
        for bad in [
            &b""[..],
            b"m",
            b"123456789m",
            b"10x",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
