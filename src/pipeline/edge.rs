//! The edge: what every request passes through, in this fixed order.
//!
//! ```text
//! catch panic ─► request id ─► access record ─► limits (414, 431) ─► Transfer-Encoding other
//! than one `chunked` (400) ─► `_` in header names (400 or dropped) ─► Host checks (400)
//! ─► Via loop (508) ─► client IP (trusted proxies) ─► path normalisation (400) ─► `%2F`/`%5C`
//! when rejected (400)
//! ─► server.ip (403) ─► route lookup (404 / 405; a CORS preflight by the method it asks for)
//! ─► route policies (src/policy: ip, cors, rate limits, auth) ─► body limit from Content-Length (413)
//! ─► strip spoofable headers, set X-Forwarded-*, Via, request id ─► rewrite ─► forward
//! ```
//!
//! Errors travel as [`GatewayError`] and become a response exactly once, here, after being logged.
//! The runtime snapshot is loaded once per request and kept to the end, so a reload never changes
//! a request mid-flight.

use std::borrow::Cow;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};

use super::fields::ClientFields;
use super::headers::{
    Peer, client_ip, forwarded_beside_map, is_trusted, is_websocket_upgrade,
    set_forwarding_headers, strip_gantry_headers, via_has_loop,
};
use crate::error::GatewayError;
use crate::handler::aggregate::AggregateRequest;
use crate::handler::body::ResponseBody;
use crate::handler::forward::{OutgoingBody, UpstreamCall, answer_or_fallback, forward_to_cluster};
use crate::observe::access_log::{AccessLog, AccessRecord, redact_path_and_query};
use crate::observe::metrics::RequestObservation;
use crate::observe::request_id::RequestId;
use crate::observe::tracing::TraceContext;
use crate::policy::PolicyOutcome;
use crate::router::{Lookup, RequestView, normalize_path};
use crate::runtime::Runtime;
use crate::server::incoming::{ClientBody, ClientUpgrade};
use crate::upstream::fields::AddedFields;

/// Carries the verified client certificate's subject (mTLS) to the upstream; clients cannot set
/// it because every `Gantry-*` header they send is stripped first.
const CLIENT_CERT_SUBJECT: header::HeaderName =
    header::HeaderName::from_static("gantry-client-cert-subject");

/// What the edge shares across all connections of all listeners.
pub struct EdgeState {
    /// The current config snapshot; swapped whole on reload.
    pub runtime: ArcSwap<Runtime>,
    /// The access log, when on.
    pub access_log: Option<Arc<AccessLog>>,
    /// OTLP export of sampled spans, when `observability.tracing.otlp_endpoint` is set.
    pub spans: Option<Arc<crate::observe::otlp::SpanExporter>>,
}

/// Handles one request; never fails (errors become responses). `fields` tells which fields of
/// interest the head carries (see [`ClientFields`]).
pub async fn handle(
    state: Arc<EdgeState>,
    peer: Arc<Peer>,
    req: Request<ClientBody>,
    fields: ClientFields,
) -> Result<Response<ResponseBody>, Infallible> {
    let Answer {
        mut response,
        request_id: (name, value),
    } = answer(state, peer, req, fields, false).await;
    // A new value on every response: marked sensitive, HPACK sends it as a literal that is never
    // indexed, instead of inserting it into the connection's table (evicting entries that would
    // have been reused) for nothing. (Only HTTP/2 encoders read the flag.)
    let mut value = value.into_header_value();
    value.set_sensitive(true);
    // `insert`: an upstream's own field of that name is replaced.
    response.headers_mut().insert(name, value);
    Ok(response)
}

/// An answer, and the request id its head must carry (replacing any field of that name).
pub struct Answer {
    /// The response, without the request id field.
    pub response: Response<ResponseBody>,
    /// The configured request id field and its value.
    pub request_id: (HeaderName, RequestId),
}

/// [`handle`], leaving the request id for the caller to add: Gantry's HTTP/1.1 server writes it
/// straight into the encoded head (a map insert hashes the name and searches the map).
/// `raw_fields`: the caller writes an HTTP/1.1 head and takes an upstream's response fields
/// unparsed where nothing on the way reads or changes them (see [`crate::http1::raw`]).
pub async fn answer(
    state: Arc<EdgeState>,
    peer: Arc<Peer>,
    req: Request<ClientBody>,
    fields: ClientFields,
    raw_fields: bool,
) -> Answer {
    let runtime = state.runtime.load_full();
    let settings = &runtime.server;
    // The parse knows `X-Request-Id` only; another configured name is looked up every time.
    let fields =
        if settings.request_id_header == crate::config::compile::defaults::REQUEST_ID_HEADER {
            fields
        } else {
            fields | ClientFields::REQUEST_ID
        };
    let client = client_ip(peer.addr.ip(), req.headers(), &settings.trusted_proxies);
    let grpc = fields.may_have(ClientFields::CONTENT_TYPE) && is_grpc(req.headers());
    // gRPC answers are read for `grpc-status`; another request id name than the one the
    // upstream client knows could pass an upstream's own field of that name.
    let raw_fields = raw_fields
        && !grpc
        && settings.request_id_header == crate::config::compile::defaults::REQUEST_ID_HEADER;
    let uri = req.uri().clone();
    // Boxed once here: it ends in the response body, which moves many times (see `ResponseBody`).
    // Written into a box allocated first: the 432-byte record is built in place, not copied.
    let mut record = Box::write(
        Box::new_uninit(),
        AccessRecord::new(
            state.access_log.clone(),
            client,
            req.method().clone(),
            req.version(),
        ),
    );
    // A new id takes the record's arrival time: one clock read, not two.
    let request_id = if fields.may_have(ClientFields::REQUEST_ID) {
        RequestId::from_request(
            req.headers(),
            &settings.request_id_header,
            record.started_wall,
        )
    } else {
        RequestId::generate_at(record.started_wall)
    };
    let sample_ratio = runtime.server.trace_sample_ratio;
    let mut trace = if fields.may_have(ClientFields::TRACEPARENT) {
        TraceContext::from_headers(req.headers(), sample_ratio)
    } else {
        TraceContext::new_trace(sample_ratio)
    };
    let trace_id = trace.trace_id;
    record.trace_id = Some(trace_id);
    if trace.sampled {
        // Only sampled requests carry the exporter: unsampled ones never build a span.
        trace.exporter.clone_from(&state.spans);
        if trace.exporter.is_some() {
            record.trace = Some(trace.clone());
        }
    }
    if settings.metrics_enabled {
        record.observation = Some(RequestObservation::start(
            Arc::clone(runtime.metrics.unmatched()),
            peer.requests_in_flight.clone(),
        ));
    }
    if record.is_enabled() {
        record.request_id = request_id.as_str().to_owned();
        record.path = redact_path_and_query(uri.path(), uri.query());
    }

    // CORS headers decided by a route's policy go on whatever answer the request gets, the
    // gateway's own 401/403/429 included, so a browser app can read them.
    let mut cors_headers: Option<HeaderMap> = None;
    // `RateLimit-Policy`/`RateLimit` likewise go on the answer, admitted or refused.
    let mut rate_headers: Option<HeaderMap> = None;
    let routed = AssertUnwindSafe(route_and_forward(
        &runtime,
        &peer,
        (req, fields),
        trace,
        (&request_id, raw_fields),
        &mut record,
        (&mut cors_headers, &mut rate_headers),
    ))
    .catch_unwind()
    .await
    .unwrap_or_else(|_| {
        tracing::error!(request_id = %request_id, "panic while handling a request");
        Err(GatewayError::Internal)
    });

    let mut response = match routed {
        Ok(response) => {
            record.error = None;
            response
        }
        Err(err) => {
            record.error = Some(err.slug());
            log_error(&err, &request_id);
            if settings.metrics_enabled
                && let Some((limit, outcome)) = err.rate_limit_refusal()
            {
                runtime
                    .metrics
                    .rate_limited(record.route.as_ref(), limit, outcome);
            }
            runtime
                .metrics
                .record_error(crate::observe::metrics::RecentError {
                    at_unix: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64()),
                    request_id: request_id.as_str().to_owned(),
                    trace_id: trace_id.to_string(),
                    route: record.route.as_deref().map(str::to_owned),
                    status: err.status().as_u16(),
                    kind: err.slug(),
                });
            let id = request_id.as_str();
            let trace_id = trace_id.to_string();
            err.into_traced_response(uri.path(), id, Some(&trace_id), grpc)
                .map(ResponseBody::full)
        }
    };
    if let Some(cors) = cors_headers {
        crate::policy::cors::apply_headers(response.headers_mut(), cors);
    }
    if let Some(rate) = rate_headers {
        response.headers_mut().extend(rate);
    }
    record.status = response.status().as_u16();
    Answer {
        response: response.map(|body| body.with_record(record)),
        request_id: (settings.request_id_header.clone(), request_id),
    }
}

/// Everything between the edge checks and the handler; errors bubble up with `?`.
async fn route_and_forward(
    runtime: &Runtime,
    peer: &Peer,
    (mut req, fields): (Request<ClientBody>, ClientFields),
    trace: TraceContext,
    (request_id, raw_fields): (&RequestId, bool),
    record: &mut AccessRecord,
    (cors_headers, rate_headers): (&mut Option<HeaderMap>, &mut Option<HeaderMap>),
) -> Result<Response<ResponseBody>, GatewayError> {
    let settings = &runtime.server;
    let limits = &settings.limits;
    check_head_limits(&req, limits.max_uri_bytes, limits.max_header_bytes)?;
    if fields.may_have(ClientFields::TRANSFER_ENCODING) {
        super::framing::check_transfer_encoding(req.headers())?;
    }
    super::underscore::apply(req.headers_mut(), settings.headers_with_underscores)?;
    if let Some(rules) = &runtime.security.global_ip {
        rules.check(record.client_ip)?;
    }
    let host = request_host(&req)?;
    if fields.may_have(ClientFields::VIA) && via_has_loop(req.headers(), &settings.via_name) {
        return Err(GatewayError::LoopDetected);
    }
    let path = normalize_path(req.uri().path())?;
    super::framing::check_escaped_slashes(&path, settings.path_with_escaped_slashes)?;
    let routing_host = routing_host(host.as_ref(), runtime.router.matches_hosts())?;
    // A CORS preflight is routed by the method it asks about, so a GET-only route can answer it;
    // when that route has no CORS policy, the OPTIONS request is routed as itself.
    let preflight = crate::policy::preflight_method(req.method(), req.headers());
    let view = |method| RequestView {
        host: &routing_host,
        path: &path,
        method,
        headers: req.headers(),
        query: req.uri().query(),
    };
    let mut lookup = runtime
        .router
        .lookup(&view(preflight.as_ref().unwrap_or(req.method())));
    let routed_has_cors = matches!(&lookup, Lookup::Matched { value, .. }
        if value.policies.as_ref().is_some_and(|p| p.cors.is_some()));
    if preflight.is_some() && !routed_has_cors {
        lookup = runtime.router.lookup(&view(req.method()));
    }
    let (route, params) = match lookup {
        Lookup::Matched { value, params } => (value, params),
        Lookup::MethodNotAllowed { allow } => {
            return Err(GatewayError::MethodNotAllowed {
                method: req.method().clone(),
                allow,
            });
        }
        Lookup::NotFound => {
            return Err(GatewayError::NoRoute {
                method: req.method().clone(),
                path: path.into_owned(),
            });
        }
    };
    record.route = Some(route.name.clone());
    record.log_successes = route.log_successes;
    if let Some(observation) = &mut record.observation {
        observation.route = Arc::clone(&route.metrics);
    }
    let mut identity = None;
    if let Some(policies) = &route.policies {
        let decided = crate::policy::apply(
            policies,
            &runtime.security,
            req.method(),
            req.headers(),
            req.uri().query(),
            record.client_ip,
            cors_headers,
            rate_headers,
        )
        .await;
        if let Err(err) = &decided
            && settings.metrics_enabled
            && let Some((method, reason)) = err.auth_failure()
        {
            runtime.metrics.auth_failure(method, reason);
        }
        match decided? {
            PolicyOutcome::Answer(response) => return Ok(response.map(ResponseBody::full)),
            PolicyOutcome::Continue(found) => {
                if record.is_enabled() {
                    record.consumer = found.as_ref().and_then(|i| i.consumer.clone());
                }
                identity = found;
            }
        }
    }
    if fields.may_have(ClientFields::CONTENT_LENGTH)
        && let Some(length) = content_length(req.headers())
        && length > limits.max_body_bytes
    {
        return Err(GatewayError::PayloadTooLarge {
            limit: limits.max_body_bytes,
        });
    }

    // An aggregate fills its call paths from the params; copy them before the path is consumed.
    let aggregate_params: Option<Vec<(String, String)>> = route.aggregate.as_ref().map(|_| {
        params
            .iter()
            .map(|(name, value)| {
                let value = crate::handler::aggregate::template::decode(value, false);
                (name.to_owned(), value)
            })
            .collect()
    });
    let mut path_and_query = match &route.rewrite {
        Some(rewrite) => rewrite.apply(&path, &params),
        None => path.into_owned(),
    };
    let auth = route.policies.as_ref().and_then(|p| p.auth.as_ref());
    if let Some(query) = req.uri().query() {
        // An API key in the query is a credential: it leaves with the other credentials.
        let query = match auth {
            Some(auth) if auth.strips_query_key() && query.contains("api_key") => {
                crate::policy::auth::strip_api_key_param(query).map(Cow::Owned)
            }
            _ => Some(Cow::Borrowed(query)),
        };
        if let Some(query) = query {
            path_and_query.push('?');
            path_and_query.push_str(&query);
        }
    }
    let client_upgrade = (route.websocket && is_websocket_upgrade(req.headers()))
        .then(|| ClientUpgrade::take_from(&mut req));

    let client = record.client_ip;
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    if fields.may_have(ClientFields::GANTRY) {
        strip_gantry_headers(headers);
    }
    if let Some(subject) = &peer.client_cert_subject {
        headers.insert(CLIENT_CERT_SUBJECT, subject.clone());
    }
    if let (Some(auth), Some(identity)) = (auth, &identity) {
        auth.decorate(&runtime.security, headers, identity);
    }
    // Fields the client's head does not carry are added beside the map (`AddedFields`), except
    // for an aggregate, whose calls copy the map.
    let beside_map = route.aggregate.is_none();
    let mut added = AddedFields {
        // Policies may add, replace or read response fields (CORS, rate limit headers).
        raw_response: raw_fields
            && beside_map
            && route.policies.is_none()
            && client_upgrade.is_none(),
        ..AddedFields::default()
    };
    let trusted_peer = is_trusted(peer.addr.ip(), &settings.trusted_proxies);
    if beside_map && !trusted_peer && !fields.may_have(ClientFields::X_FORWARDED) {
        added.forwarded = Some(forwarded_beside_map(headers, peer, host.as_ref(), fields));
    } else {
        // Room for the forwarding headers, `Via` and the request id: one growth, not several.
        // (Beside the map, as on most requests, the map keeps the client's size.)
        headers.reserve(6);
        set_forwarding_headers(headers, peer, client, host.as_ref(), trusted_peer, fields);
    }
    if beside_map && !fields.may_have(ClientFields::VIA) {
        added.via = Some(&settings.via_entry);
    } else {
        headers.append(header::VIA, settings.via_entry.clone());
    }
    if fields.may_have(ClientFields::REQUEST_ID) {
        headers.insert(
            settings.request_id_header.clone(),
            request_id.to_header_value(),
        );
    } else if beside_map {
        added.request_id = Some((&settings.request_id_header, request_id));
    } else {
        // `append` skips the search for a value to replace when the client sent none.
        headers.append(
            settings.request_id_header.clone(),
            request_id.to_header_value(),
        );
    }

    if let (Some(aggregate), Some(params)) = (&route.aggregate, aggregate_params) {
        let request = AggregateRequest {
            parts,
            body,
            params,
            host,
            client_ip: client,
            trace,
        };
        return crate::handler::aggregate::aggregate(
            aggregate,
            request,
            settings,
            route.metrics.upstream(),
        )
        .await;
    }
    let Some(cluster) = route.upstream.as_deref() else {
        // Compilation gives every forwarding route an upstream (an aggregate returned above).
        return Err(GatewayError::Internal);
    };
    // Pinned where it is built: awaiting it in place copies nothing.
    let result = std::pin::pin!(forward_to_cluster(
        cluster,
        UpstreamCall {
            parts,
            body: OutgoingBody::Client(body),
            path_and_query,
            host,
            client_ip: client,
            client_upgrade,
            budget: None,
            trace: Some(trace),
            fields,
            added,
        },
        settings,
        route.metrics.upstream(),
        record,
    ))
    .await;
    answer_or_fallback(route, result, settings, record)
}

/// 414 when the request target is too long; 431 when the headers are.
fn check_head_limits(
    req: &Request<ClientBody>,
    max_uri: u64,
    max_headers: u64,
) -> Result<(), GatewayError> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    if uri_len as u64 > max_uri {
        return Err(GatewayError::UriTooLong { limit: max_uri });
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes as u64 > max_headers {
        return Err(GatewayError::HeadersTooLarge { limit: max_headers });
    }
    Ok(())
}

/// The authority the client addressed. HTTP/1.1 needs exactly one Host; an absolute-form target
/// overrides Host (RFC 9112 §3.2.2); on HTTP/2 a Host header must agree with `:authority`.
fn request_host(req: &Request<ClientBody>) -> Result<Option<HeaderValue>, GatewayError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(GatewayError::DuplicateHost);
    }
    let authority = req.uri().authority();
    match req.version() {
        Version::HTTP_2 | Version::HTTP_3 => {
            if let (Some(host), Some(authority)) = (first, authority)
                && !host
                    .as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes())
            {
                return Err(GatewayError::HostMismatch {
                    host: String::from_utf8_lossy(host.as_bytes()).into_owned(),
                });
            }
        }
        Version::HTTP_11 if first.is_none() => return Err(GatewayError::MissingHost),
        _ => {}
    }
    match authority {
        Some(authority) => HeaderValue::from_str(authority.as_str())
            .map(Some)
            .map_err(|_| GatewayError::InvalidHost),
        None => Ok(first.cloned()),
    }
}

/// Host for routing: lowercased, without port; empty when the client sent none (HTTP/1.0).
/// Every `Host` is checked (400 when malformed), but only a router with host rules reads it:
/// without them (`as_text` false) the name is left empty and not turned into text.
fn routing_host(host: Option<&HeaderValue>, as_text: bool) -> Result<Cow<'_, str>, GatewayError> {
    let Some(host) = host else {
        return Ok(Cow::Borrowed(""));
    };
    match plain_host_name(host.as_bytes()) {
        Some(_) if !as_text => Ok(Cow::Borrowed("")),
        Some(name) => std::str::from_utf8(name)
            .map(Cow::Borrowed)
            .map_err(|_| GatewayError::InvalidHost),
        None if !as_text => parsed_host_name(host).map(|_| Cow::Borrowed("")),
        None => parsed_host_name(host),
    }
}

/// The host of any authority: parsed, userinfo rejected, port and trailing dot cut, lowercased.
fn parsed_host_name(host: &HeaderValue) -> Result<Cow<'_, str>, GatewayError> {
    let text = host.to_str().map_err(|_| GatewayError::InvalidHost)?;
    // Parse to reject anything that is not an authority (userinfo included), then slice the host.
    let authority: http::uri::Authority = text.parse().map_err(|_| GatewayError::InvalidHost)?;
    if text.contains('@') || authority.host().is_empty() {
        return Err(GatewayError::InvalidHost);
    }
    // The port, when there is one, is digits only (`port = *DIGIT`, RFC 3986): the authority
    // parse lets `host:8a` through as a name with a colon in it.
    let host_end = match text.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(text.len(), |i| i + 2),
        None => text.find(':').unwrap_or(text.len()),
    };
    let (name, port) = text
        .split_at_checked(host_end)
        .ok_or(GatewayError::InvalidHost)?;
    if let Some(port) = port.strip_prefix(':') {
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GatewayError::InvalidHost);
        }
    } else if !port.is_empty() {
        return Err(GatewayError::InvalidHost);
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(name))
    }
}

/// The common case without parsing an `Authority`: a lowercase DNS name (`[a-z0-9.-]`, not
/// empty) with an optional numeric port. Anything else (`None`) takes the full parse, which
/// decides the same for these inputs; this only skips its cost on every request.
fn plain_host_name(bytes: &[u8]) -> Option<&[u8]> {
    // One pass: the name's bytes up to the first `:`, then a port of 1–5 digits up to 65535.
    let mut name_end = bytes.len();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => {}
            b':' => {
                name_end = i;
                break;
            }
            _ => return None,
        }
    }
    let name = &bytes[..name_end];
    if name.is_empty() {
        return None;
    }
    if let Some(port) = bytes.get(name_end + 1..) {
        let value = port.iter().try_fold(0_u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        });
        if port.is_empty() || port.len() > 5 || value.is_none_or(|v| v > u32::from(u16::MAX)) {
            return None;
        }
    }
    Some(name.strip_suffix(b".").unwrap_or(name))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn log_error(err: &GatewayError, request_id: &RequestId) {
    let id = request_id.as_str();
    let status = err.status().as_u16();
    if status >= 500 {
        tracing::warn!(request_id = id, status, kind = err.slug(), error = %err, cause = ?std::error::Error::source(err), "request failed");
    } else {
        tracing::debug!(request_id = id, status, kind = err.slug(), error = %err, "request rejected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path must decide exactly as the full parse for every input it accepts.
    #[test]
    fn plain_host_names_route_like_parsed_ones() {
        let inputs = [
            "example.com",
            "example.com:8080",
            "example.com.",
            "a-b.c0:1",
            "localhost:65535",
            "localhost:65536",
            "host:",
            "host:+80",
            "host:80:80",
            ":80",
            ".",
            "Example.COM",
            "user@host",
            "[::1]:80",
            "127.0.0.1:9",
            "h_st",
            "host%2f",
            "host:0080",
            "host:00000080",
            "host:99999",
            "host:8a",
            "host:80 ",
        ];
        let mut fast = 0;
        for input in inputs {
            let value = HeaderValue::from_static(input);
            let slow = parsed_host_name(&value).ok();
            if let Some(name) = plain_host_name(input.as_bytes()) {
                fast += 1;
                assert_eq!(slow.as_deref().map(str::as_bytes), Some(name), "{input}");
            }
            assert_eq!(
                routing_host(Some(&value), true).ok().as_deref(),
                slow.as_deref(),
                "{input}"
            );
            // Without host rules the name is not needed, but a bad one is refused all the same.
            assert_eq!(
                routing_host(Some(&value), false).ok().as_deref(),
                slow.as_ref().map(|_| ""),
                "{input}"
            );
        }
        assert!(fast >= 6, "the fast path took only {fast} inputs");
        // The full parse: a port is digits only (any value, as RFC 3986 has it), and is cut.
        for (input, expected) in [
            ("host:8a", None),
            ("host:80:80", None),
            ("host:+80", None),
            ("[::1]x", None),
            ("host:", Some("host")),
            ("host:99999", Some("host")),
            ("[::1]:80", Some("[::1]")),
            ("Example.COM.:443", Some("example.com")),
        ] {
            let value = HeaderValue::from_static(input);
            assert_eq!(
                parsed_host_name(&value).ok().as_deref(),
                expected,
                "{input}"
            );
        }
    }
}
