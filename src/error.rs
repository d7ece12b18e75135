//! Every answer Gantry decides itself: one error enum, turned into a response in exactly one place.
//!
//! Inner code returns `GatewayError` with `?`; the edge (`pipeline::edge`) logs it once and calls
//! [`GatewayError::into_response`]. HTTP clients get `application/problem+json`; gRPC clients
//! (`content-type: application/grpc*`) get a trailers-only response with the matching `grpc-status`.
//! 4xx bodies explain the caller's mistake; 5xx bodies name what failed in config terms (route,
//! upstream) but never addresses or raw causes.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::router::PathError;

/// Where an error came from: decides the status class and whether the connection is suspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOrigin {
    /// The client sent something wrong (4xx).
    Client,
    /// The upstream failed or misbehaved (502/503/504).
    Upstream,
    /// Gantry itself failed (500).
    Gateway,
}

/// Everything that can stop Gantry from forwarding a request, or end it early.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// HTTP/1.1 request without a Host header.
    #[error("the request has no Host header")]
    MissingHost,
    /// More than one Host header.
    #[error("the request has more than one Host header")]
    DuplicateHost,
    /// HTTP/2 Host header disagreeing with `:authority`, or an unparsable host.
    #[error("Host {host:?} does not match the request authority")]
    HostMismatch {
        /// The Host header value.
        host: String,
    },
    /// Host header value that is not a valid authority.
    #[error("invalid Host header")]
    InvalidHost,
    /// A `Transfer-Encoding` other than exactly one `chunked` (TE.TE smuggling obfuscations).
    #[error("Transfer-Encoding must be exactly \"chunked\"")]
    BadTransferEncoding,
    /// A path with `%2F` or `%5C` under `server.path_with_escaped_slashes: reject`.
    #[error("the path contains an encoded slash or backslash (%2F, %5C)")]
    EscapedSlash,
    /// A request header name refused by `server.headers_with_underscores: reject`.
    #[error("header name {name:?} contains an underscore")]
    InvalidHeaderName {
        /// The offending name.
        name: String,
    },
    /// A path that cannot be normalised (escapes root, bad escape, control character).
    #[error("invalid request path: {0}")]
    BadPath(#[from] PathError),
    /// The request body was malformed (e.g. a bad chunk) or ended early.
    #[error("the request body could not be read: {reason}")]
    BadRequestBody {
        /// What went wrong, from the HTTP layer.
        reason: String,
    },
    /// The client stopped sending its body for longer than the idle timeout.
    #[error("the request body stalled for {after:?}")]
    RequestBodyTimeout {
        /// The idle timeout.
        after: Duration,
    },
    /// No route matches host and path.
    #[error("no route for {method} {path}")]
    NoRoute {
        /// The request method.
        method: http::Method,
        /// The normalised path.
        path: String,
    },
    /// A route matches the path but not the method.
    #[error("method {method} is not allowed here; allowed: {allow}")]
    MethodNotAllowed {
        /// The request method.
        method: http::Method,
        /// The `Allow` header value.
        allow: String,
    },
    /// Body larger than the limit (from Content-Length or while streaming).
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Request target longer than the limit.
    #[error("the request URI exceeds the limit of {limit} bytes")]
    UriTooLong {
        /// The limit in bytes.
        limit: u64,
    },
    /// Request headers larger than the limit.
    #[error("the request headers exceed the limit of {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The request already passed through this gateway (`Via` carries our entry).
    #[error("the request already passed through this gateway (Via loop)")]
    LoopDetected,
    /// TCP connect to the chosen target failed.
    #[error("upstream {upstream} could not be reached")]
    UpstreamConnect {
        /// Upstream cluster name.
        upstream: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The upstream reset or closed the connection, or sent an invalid response.
    #[error("upstream {upstream} failed: {kind}")]
    UpstreamFailed {
        /// Upstream cluster name.
        upstream: String,
        /// A short description safe for clients.
        kind: &'static str,
        /// The HTTP error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The upstream did not send response headers in time.
    #[error("upstream {upstream} did not answer within {after:?}")]
    UpstreamTimeout {
        /// Upstream cluster name.
        upstream: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// Connect to the upstream took too long.
    #[error("upstream {upstream} could not be reached within {after:?}")]
    ConnectTimeout {
        /// Upstream cluster name.
        upstream: String,
        /// The connect timeout.
        after: Duration,
    },
    /// The upstream has no target to send to.
    #[error("upstream {upstream} has no available target")]
    NoTarget {
        /// Upstream cluster name.
        upstream: String,
    },
    /// The upstream's circuit breaker is open: answered at once, without calling it.
    #[error("upstream {upstream} is unavailable (circuit open)")]
    CircuitOpen {
        /// Upstream cluster name.
        upstream: String,
        /// When a probe will be let through; sent as `Retry-After`.
        retry_after: Duration,
    },
    /// Every target of the upstream is unhealthy or ejected.
    #[error("upstream {upstream} has no healthy target")]
    NoHealthyTarget {
        /// Upstream cluster name.
        upstream: String,
    },
    /// The upstream's concurrency limit and queue are full: the request was shed.
    #[error("upstream {upstream} is overloaded")]
    Overloaded {
        /// Upstream cluster name.
        upstream: String,
    },
    /// The request's time budget ran out before it could be (re)sent.
    #[error("the deadline for upstream {upstream} passed before the request could be sent")]
    DeadlineExceeded {
        /// Upstream cluster name.
        upstream: String,
    },
    /// The client's `grpc-timeout` header is malformed.
    #[error("invalid grpc-timeout header: expected 1 to 8 digits and a unit (H, M, S, m, u, n)")]
    InvalidGrpcTimeout,
    /// The request head is not valid HTTP/1.1 (answered by the server before the edge runs).
    #[error("malformed request: {reason}")]
    MalformedRequest {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The client did not send a whole request head within `header_read_timeout`.
    #[error("the request head did not arrive within {after:?}")]
    RequestHeadTimeout {
        /// The timeout.
        after: Duration,
    },
    /// The client went away before the response was ready (logged as 499, never sent).
    #[error("the client closed the connection")]
    ClientClosed,
    /// Plain HTTP sent to a TLS listener (answered before any TLS, then closed).
    #[error("this port speaks TLS: use https://")]
    PlainHttpOnTlsPort,
    /// The TLS handshake with the upstream failed (untrusted or wrong-name certificate, alert).
    #[error("upstream {upstream} failed the TLS handshake: {reason}")]
    UpstreamTls {
        /// Upstream cluster name.
        upstream: String,
        /// Why, in config terms (never the address).
        reason: &'static str,
    },
    /// A required call of an aggregate failed (its error, or a non-2xx or unreadable answer).
    #[error("required call {call} of the aggregate failed: {detail}")]
    AggregateCallFailed {
        /// The call's name.
        call: String,
        /// What went wrong, in config terms.
        detail: String,
    },
    /// A required call of an aggregate ran out of time (its own timeout or the aggregate's budget).
    #[error("required call {call} of the aggregate timed out: {detail}")]
    AggregateCallTimeout {
        /// The call's name.
        call: String,
        /// Which timeout expired.
        detail: String,
    },
    /// A required call of an aggregate needs a value the client did not send (query, header, param).
    #[error("required call {call} of the aggregate cannot be made: {detail}")]
    AggregateBadInput {
        /// The call's name.
        call: String,
        /// Which value is missing.
        detail: String,
    },
    /// Deep merge with `on_conflict: error` met a key two calls disagree on.
    #[error("call {call} of the aggregate collides with an earlier call on key {key:?}")]
    AggregateConflict {
        /// The later call.
        call: String,
        /// The dotted key path.
        key: String,
    },
    /// A bug: a panic caught at the edge.
    #[error("internal error")]
    Internal,
    /// The client IP is not allowed (server.ip or the route's ip rules).
    #[error("client address {ip} is not allowed here")]
    IpDenied {
        /// The client IP as derived with `server.trusted_proxies`.
        ip: std::net::IpAddr,
    },
    /// A CORS preflight asked for something the route does not allow.
    #[error("CORS preflight refused: {reason}")]
    CorsDenied {
        /// What was not allowed.
        reason: &'static str,
    },
    /// Missing or invalid credentials.
    #[error("authentication failed: {reason}")]
    Unauthorized {
        /// The auth method whose check failed last (`jwt`, `api_key` …; `none` when no
        /// credential was sent), for the `gantry_auth_failures_total` metric.
        method: &'static str,
        /// Why, without echoing the credential.
        reason: &'static str,
        /// `WWW-Authenticate` challenges, one per accepted scheme.
        challenges: std::sync::Arc<[HeaderValue]>,
    },
    /// Authenticated, but not allowed on this route (scope or claim).
    #[error("access denied: {reason}")]
    Forbidden {
        /// The missing scope or claim.
        reason: String,
    },
    /// A rate limit or quota refused the request.
    #[error("{limit}")]
    RateLimited {
        /// Which limit, e.g. `limit 100/s by consumer`.
        limit: std::sync::Arc<str>,
        /// When one request would be admitted; sent as `Retry-After`, rounded up.
        retry_after: Duration,
    },
    /// The rate-limit store (Redis) could not answer and the limit says `on_store_error: deny`.
    #[error("the rate limit store is unavailable ({limit})")]
    RateLimitUnavailable {
        /// Which limit.
        limit: std::sync::Arc<str>,
    },
    /// Credentials could not be checked right now (IdP down, password checks saturated).
    #[error("authentication unavailable: {reason}")]
    AuthUnavailable {
        /// The auth method that could not decide.
        method: &'static str,
        /// What could not be done.
        reason: &'static str,
    },
}

impl GatewayError {
    /// HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingHost
            | Self::DuplicateHost
            | Self::HostMismatch { .. }
            | Self::InvalidHost
            | Self::InvalidHeaderName { .. }
            | Self::BadTransferEncoding
            | Self::EscapedSlash
            | Self::BadPath(_)
            | Self::BadRequestBody { .. }
            | Self::PlainHttpOnTlsPort
            | Self::AggregateBadInput { .. }
            | Self::InvalidGrpcTimeout
            | Self::MalformedRequest { .. } => StatusCode::BAD_REQUEST,
            Self::RequestBodyTimeout { .. } | Self::RequestHeadTimeout { .. } => {
                StatusCode::REQUEST_TIMEOUT
            }
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::LoopDetected => StatusCode::LOOP_DETECTED,
            Self::UpstreamConnect { .. }
            | Self::UpstreamFailed { .. }
            | Self::UpstreamTls { .. }
            | Self::AggregateCallFailed { .. }
            | Self::AggregateConflict { .. } => StatusCode::BAD_GATEWAY,
            Self::AggregateCallTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::UpstreamTimeout { .. } | Self::ConnectTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::NoTarget { .. }
            | Self::CircuitOpen { .. }
            | Self::NoHealthyTarget { .. }
            | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            // 499 is nginx's "client closed request"; it only ever reaches the access log.
            Self::ClientClosed => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::IpDenied { .. } | Self::CorsDenied { .. } | Self::Forbidden { .. } => {
                StatusCode::FORBIDDEN
            }
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::AuthUnavailable { .. } | Self::RateLimitUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// For the auth-failure metric: the method and a short fixed reason, when this error is a
    /// refused or undecided credential check.
    pub fn auth_failure(&self) -> Option<(&'static str, &str)> {
        match self {
            Self::Unauthorized { method, reason, .. } => Some((method, reason)),
            Self::AuthUnavailable { method, reason } => Some((method, reason)),
            Self::Forbidden { .. } => Some(("authorization", "forbidden")),
            _ => None,
        }
    }

    /// For the rate-limit metric: the limit and the outcome, when a rate limit refused.
    pub fn rate_limit_refusal(&self) -> Option<(&std::sync::Arc<str>, &'static str)> {
        match self {
            Self::RateLimited { limit, .. } => Some((limit, "limited")),
            Self::RateLimitUnavailable { limit } => Some((limit, "store_unavailable")),
            _ => None,
        }
    }

    /// Stable slug for the problem `type` (`urn:gantry:problem:<slug>`) and for logs.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::MissingHost => "missing-host",
            Self::DuplicateHost => "duplicate-host",
            Self::HostMismatch { .. } => "host-mismatch",
            Self::InvalidHost => "invalid-host",
            Self::InvalidHeaderName { .. } => "invalid-header-name",
            Self::BadTransferEncoding => "invalid-transfer-encoding",
            Self::EscapedSlash => "escaped-slash",
            Self::BadPath(_) => "invalid-path",
            Self::BadRequestBody { .. } => "invalid-body",
            Self::RequestBodyTimeout { .. } => "request-body-timeout",
            Self::NoRoute { .. } => "no-route",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::UriTooLong { .. } => "uri-too-long",
            Self::HeadersTooLarge { .. } => "headers-too-large",
            Self::LoopDetected => "loop-detected",
            Self::UpstreamConnect { .. } => "upstream-unreachable",
            Self::UpstreamFailed { .. } => "upstream-failed",
            Self::UpstreamTimeout { .. } => "upstream-timeout",
            Self::ConnectTimeout { .. } => "upstream-connect-timeout",
            Self::NoTarget { .. } => "no-target",
            Self::CircuitOpen { .. } => "circuit-open",
            Self::NoHealthyTarget { .. } => "no-healthy-target",
            Self::Overloaded { .. } => "overloaded",
            Self::DeadlineExceeded { .. } => "deadline-exceeded",
            Self::InvalidGrpcTimeout => "invalid-grpc-timeout",
            Self::MalformedRequest { .. } => "malformed-request",
            Self::RequestHeadTimeout { .. } => "request-head-timeout",
            Self::ClientClosed => "client-closed",
            Self::PlainHttpOnTlsPort => "plain-http-on-tls-port",
            Self::UpstreamTls { .. } => "upstream-tls",
            Self::AggregateCallFailed { .. } => "aggregate-call-failed",
            Self::AggregateCallTimeout { .. } => "aggregate-call-timeout",
            Self::AggregateBadInput { .. } => "aggregate-bad-input",
            Self::AggregateConflict { .. } => "aggregate-conflict",
            Self::Internal => "internal",
            Self::IpDenied { .. } => "ip-denied",
            Self::CorsDenied { .. } => "cors-denied",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::AuthUnavailable { .. } => "auth-unavailable",
            Self::RateLimited { .. } => "rate-limited",
            Self::RateLimitUnavailable { .. } => "rate-limit-unavailable",
        }
    }

    /// Which side caused it.
    pub fn origin(&self) -> ErrorOrigin {
        match self {
            Self::MissingHost
            | Self::DuplicateHost
            | Self::HostMismatch { .. }
            | Self::InvalidHost
            | Self::InvalidHeaderName { .. }
            | Self::BadTransferEncoding
            | Self::EscapedSlash
            | Self::BadPath(_)
            | Self::BadRequestBody { .. }
            | Self::RequestBodyTimeout { .. }
            | Self::RequestHeadTimeout { .. }
            | Self::MalformedRequest { .. }
            | Self::NoRoute { .. }
            | Self::MethodNotAllowed { .. }
            | Self::PayloadTooLarge { .. }
            | Self::UriTooLong { .. }
            | Self::HeadersTooLarge { .. }
            | Self::LoopDetected
            | Self::InvalidGrpcTimeout
            | Self::ClientClosed
            | Self::PlainHttpOnTlsPort
            | Self::AggregateBadInput { .. }
            | Self::IpDenied { .. }
            | Self::CorsDenied { .. }
            | Self::Unauthorized { .. }
            | Self::Forbidden { .. }
            | Self::RateLimited { .. } => ErrorOrigin::Client,
            Self::UpstreamConnect { .. }
            | Self::UpstreamTls { .. }
            | Self::UpstreamFailed { .. }
            | Self::UpstreamTimeout { .. }
            | Self::ConnectTimeout { .. }
            | Self::NoTarget { .. }
            | Self::CircuitOpen { .. }
            | Self::NoHealthyTarget { .. }
            | Self::Overloaded { .. }
            | Self::DeadlineExceeded { .. }
            | Self::AggregateCallFailed { .. }
            | Self::AggregateCallTimeout { .. }
            | Self::AggregateConflict { .. } => ErrorOrigin::Upstream,
            Self::Internal | Self::AuthUnavailable { .. } | Self::RateLimitUnavailable { .. } => {
                ErrorOrigin::Gateway
            }
        }
    }

    /// Whether the client connection should be closed after this answer (its framing is suspect).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Self::BadRequestBody { .. }
                | Self::BadTransferEncoding
                | Self::RequestBodyTimeout { .. }
                | Self::RequestHeadTimeout { .. }
                | Self::MalformedRequest { .. }
                | Self::PayloadTooLarge { .. }
                | Self::Internal
        )
    }

    /// Seconds for `Retry-After` on answers that say "come back later".
    fn retry_after(&self) -> Option<u64> {
        match self {
            // Rounded up: a client coming back on time finds the breaker half-open.
            Self::CircuitOpen { retry_after, .. } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
                    .map(|s| s.max(1))
            }
            Self::Overloaded { .. } | Self::RateLimitUnavailable { .. } => Some(1),
            // Whole seconds, rounded up and at least 1: a client that waits that long is admitted.
            Self::RateLimited { retry_after, .. } => {
                Some(crate::policy::rate_limit::gcra::ceil_secs(*retry_after).max(1))
            }
            _ => None,
        }
    }

    /// gRPC status code for gRPC clients.
    pub fn grpc_status(&self) -> u8 {
        match self.status().as_u16() {
            400 => 3,             // INVALID_ARGUMENT
            401 => 16,            // UNAUTHENTICATED
            403 => 7,             // PERMISSION_DENIED
            408 => 4,             // DEADLINE_EXCEEDED
            404 | 405 => 12,      // UNIMPLEMENTED
            413 | 414 | 431 => 8, // RESOURCE_EXHAUSTED
            429 => 8,             // RESOURCE_EXHAUSTED
            499 => 1,             // CANCELLED
            502 | 503 => 14,      // UNAVAILABLE
            504 => 4,             // DEADLINE_EXCEEDED
            _ => 13,              // INTERNAL
        }
    }

    /// Human detail for the body: the error's own text for 4xx; for 5xx, the same text, which
    /// names only config terms (never addresses or causes).
    fn detail(&self) -> String {
        self.to_string()
    }

    /// The one place an error becomes a response. `instance` is the request path without query.
    pub fn into_response(self, instance: &str, request_id: &str, grpc: bool) -> Response<Bytes> {
        self.into_traced_response(instance, request_id, None, grpc)
    }

    /// [`Self::into_response`], with the request's trace id in the problem body.
    pub fn into_traced_response(
        self,
        instance: &str,
        request_id: &str,
        trace_id: Option<&str>,
        grpc: bool,
    ) -> Response<Bytes> {
        let status = self.status();
        let mut rsp = if grpc {
            grpc_trailers_only(self.grpc_status(), &self.detail())
        } else {
            let mut body = serde_json::json!({
                "type": format!("urn:gantry:problem:{}", self.slug()),
                "title": status.canonical_reason().unwrap_or("Error"),
                "status": status.as_u16(),
                "detail": self.detail(),
                "instance": instance,
                "request_id": request_id,
            });
            if let Some(trace_id) = trace_id {
                body["trace_id"] = serde_json::Value::from(trace_id);
            }
            let mut rsp = Response::new(Bytes::from(body.to_string()));
            *rsp.status_mut() = status;
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            rsp
        };
        if let Self::MethodNotAllowed { allow, .. } = &self
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            rsp.headers_mut().insert(header::ALLOW, value);
        }
        if let Some(after) = self.retry_after() {
            rsp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        if let Self::Unauthorized { challenges, .. } = &self {
            for challenge in challenges.iter() {
                rsp.headers_mut()
                    .append(header::WWW_AUTHENTICATE, challenge.clone());
            }
        }
        if let Self::AuthUnavailable { .. } = &self {
            rsp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.closes_connection() {
            rsp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        rsp
    }
}

/// A gRPC trailers-only response: HTTP 200 with `grpc-status`/`grpc-message` in the headers.
fn grpc_trailers_only(code: u8, message: &str) -> Response<Bytes> {
    let mut rsp = Response::new(Bytes::new());
    let headers = rsp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
    if let Ok(value) = HeaderValue::from_str(&percent_encode_grpc_message(message)) {
        headers.insert("grpc-message", value);
    }
    rsp
}

/// `grpc-message` is percent-encoded outside printable ASCII (gRPC over HTTP/2 spec).
fn percent_encode_grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_has_the_fixed_shape() {
        let rsp = GatewayError::MethodNotAllowed {
            method: http::Method::POST,
            allow: "GET, HEAD".into(),
        }
        .into_response("/v1/users/7", "req-1", false);
        assert_eq!(rsp.status(), 405);
        assert_eq!(rsp.headers()[header::ALLOW], "GET, HEAD");
        let body: serde_json::Value = serde_json::from_slice(rsp.body()).unwrap();
        assert_eq!(body["type"], "urn:gantry:problem:method-not-allowed");
        assert_eq!(body["title"], "Method Not Allowed");
        assert_eq!(body["status"], 405);
        assert_eq!(body["instance"], "/v1/users/7");
        assert_eq!(body["request_id"], "req-1");
    }

    #[test]
    fn grpc_clients_get_trailers_only() {
        let rsp = GatewayError::UpstreamTimeout {
            upstream: "users".into(),
            after: Duration::from_secs(1),
        }
        .into_response("/x", "r", true);
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["grpc-status"], "4");
        assert!(rsp.body().is_empty());
    }
}
