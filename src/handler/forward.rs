//! The `forward` handler: one request to one target of the route's upstream, streamed both ways.
//!
//! Order: pick a target (balancer) → build the upstream request in place (headers moved, not
//! copied) → check out a pooled connection → send under the per-try/request deadline → hand the
//! response back with its body still streaming. A request that never left a stale keep-alive
//! connection is sent again on another connection (safe: not a byte was written).

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::body::{BodyFailure, ConnectionLease, FailureSlot, RequestBody, ResponseBody};
use crate::error::GatewayError;
use crate::observe::access_log::AccessRecord;
use crate::pipeline::headers::remove_hop_by_hop;
use crate::runtime::{Route, ServerSettings};
use crate::upstream::client::{ConnectError, PooledConnection, SendError};
use crate::upstream::cluster::{
    HostHeader, InFlightGuard, Target, UpstreamCluster, UpstreamProtocol,
};

/// A request ready to forward: its head (already cleaned at the edge), body and target path.
pub struct ForwardRequest {
    /// Method, headers (edge-cleaned), version.
    pub parts: Parts,
    /// The client's body.
    pub body: Incoming,
    /// Path (normalised, rewritten) and query to send upstream.
    pub path_and_query: String,
    /// Host the client addressed (Host or `:authority`), sent upstream with `host_header: preserve`.
    pub host: Option<HeaderValue>,
    /// Client IP, for consistent hashing.
    pub client_ip: IpAddr,
    /// The client's side of a WebSocket upgrade, when the route allows it and it was asked for.
    pub client_upgrade: Option<OnUpgrade>,
}

/// Forwards the request to the route's upstream.
pub async fn forward(
    route: &Route,
    request: ForwardRequest,
    settings: &ServerSettings,
    record: &mut AccessRecord,
) -> Result<Response<ResponseBody>, GatewayError> {
    let cluster = &*route.upstream;
    let ForwardRequest {
        mut parts,
        body,
        path_and_query,
        host,
        client_ip,
        client_upgrade,
    } = request;
    let target = cluster
        .pick(&parts.headers, client_ip)
        .ok_or_else(|| GatewayError::NoTarget {
            upstream: cluster.name.to_string(),
        })?;
    if record.is_enabled() {
        record.upstream = Some(cluster.name.clone());
        record.target = Some(target.authority.clone());
    }
    let in_flight = InFlightGuard::new(target.clone());

    let failure = FailureSlot::default();
    record.request_body = Some(failure.clone());
    let body = RequestBody::new(
        body,
        settings.limits.max_body_bytes,
        cluster.timeouts.idle,
        failure.clone(),
    );
    let websocket = client_upgrade.is_some();
    build_upstream_head(
        &mut parts,
        cluster,
        &target,
        host,
        &path_and_query,
        websocket,
    )?;
    let upstream_request = Request::from_parts(parts, body);

    let started = Instant::now();
    let deadline = cluster.timeouts.per_try.min(cluster.timeouts.request);
    let sent = tokio::time::timeout(deadline, send(cluster, &target, upstream_request)).await;
    record.upstream_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let (mut response, connection) = match sent {
        Err(_elapsed) => {
            return Err(
                client_failure(&failure).unwrap_or(GatewayError::UpstreamTimeout {
                    upstream: cluster.name.to_string(),
                    after: deadline,
                }),
            );
        }
        Ok(Err(err)) => return Err(client_failure(&failure).unwrap_or(err)),
        Ok(Ok(sent)) => sent,
    };

    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    remove_hop_by_hop(response.headers_mut(), upgraded && websocket);
    response
        .headers_mut()
        .append(header::VIA, settings.via_entry.clone());

    if upgraded {
        let Some(client_upgrade) = client_upgrade else {
            // An upstream may not switch protocols the client did not ask for (or the route forbids).
            return Err(GatewayError::UpstreamFailed {
                upstream: cluster.name.to_string(),
                kind: "unexpected protocol switch",
                source: None,
            });
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(tunnel(
            client_upgrade,
            upstream_upgrade,
            connection,
            in_flight,
        ));
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(
            parts,
            ResponseBody::full(Bytes::new()),
        ));
    }

    let (parts, incoming) = response.into_parts();
    let lease = ConnectionLease {
        target,
        connection,
        in_flight,
    };
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(incoming, cluster.timeouts.idle, Some(lease)),
    ))
}

/// Rewrites the head in place for the upstream: URI, version, Host/`:authority`, hop-by-hop.
fn build_upstream_head(
    parts: &mut Parts,
    cluster: &UpstreamCluster,
    target: &Target,
    client_host: Option<HeaderValue>,
    path_and_query: &str,
    websocket: bool,
) -> Result<(), GatewayError> {
    let authority = match cluster.host_header {
        HostHeader::Preserve => client_host.unwrap_or_else(|| target.authority_header.clone()),
        HostHeader::Target => target.authority_header.clone(),
    };
    remove_hop_by_hop(&mut parts.headers, websocket);
    // Expect: 100-continue was answered by our own server side when the body was first read.
    parts.headers.remove(header::EXPECT);
    let bad_uri = |_| GatewayError::BadPath(crate::router::PathError::InvalidChar);
    match cluster.protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            parts.uri = Uri::try_from(path_and_query).map_err(bad_uri)?;
            parts.headers.insert(header::HOST, authority);
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
        }
    }
    Ok(())
}

/// Checks out a connection and sends; a request that never left a reused connection is retried on
/// another one (a keep-alive connection the upstream closed while it sat idle).
async fn send(
    cluster: &UpstreamCluster,
    target: &Target,
    mut request: Request<RequestBody>,
) -> Result<(Response<Incoming>, PooledConnection), GatewayError> {
    const MAX_STALE: usize = 3;
    for _ in 0..MAX_STALE {
        let mut connection = target
            .pool
            .checkout()
            .await
            .map_err(|err| connect_error(cluster, err))?;
        match connection.send(request).await {
            Ok(response) => return Ok((response, connection)),
            Err(SendError {
                unsent: Some(unsent),
                ..
            }) if connection.reused() => request = unsent,
            Err(SendError { error, .. }) => return Err(upstream_error(cluster, error)),
        }
    }
    Err(GatewayError::UpstreamFailed {
        upstream: cluster.name.to_string(),
        kind: "connections closed before the request could be sent",
        source: None,
    })
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
            source: Some(source),
        },
        ConnectError::Tls { reason, source } => {
            tracing::debug!(upstream, error = %source, "upstream TLS handshake failed");
            GatewayError::UpstreamTls { upstream, reason }
        }
    }
}

fn upstream_error(cluster: &UpstreamCluster, error: hyper::Error) -> GatewayError {
    if let Some(reason) = crate::upstream::tls::failure_in(&error) {
        return GatewayError::UpstreamTls {
            upstream: cluster.name.to_string(),
            reason,
        };
    }
    let kind = if error.is_parse_too_large() {
        "response head too large"
    } else if error.is_parse() || error.is_parse_status() {
        "invalid response"
    } else if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        "connection closed before the response"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "connection failed"
    };
    GatewayError::UpstreamFailed {
        upstream: cluster.name.to_string(),
        kind,
        source: Some(error),
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
async fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    connection: PooledConnection,
    in_flight: InFlightGuard,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(err) => {
            tracing::debug!(error = %err, "websocket upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    drop(connection);
    drop(in_flight);
}
