//! Accepting client connections: limits, protocol negotiation, graceful shutdown.
//!
//! HTTP/1.1 is served by Gantry's own server ([`h1`]); HTTP/2 (h2c by prior knowledge, or h2 by
//! ALPN) by hyper's. On a cleartext listener that speaks both, the HTTP/2 preface decides.
//! The head buffer is set above Gantry's configured limits so that moderate excess reaches the
//! edge, which answers with the precise 414/431.
//!
//! Timers and how they interact: the HTTP/1.1 server's head timer runs both when a connection
//! opens and when a keep-alive connection goes idle waiting for the next request. So an idle
//! HTTP/1.1 connection is closed after `min(header_read_timeout, idle_timeout)`; [`IdleIo`] closes
//! any connection (HTTP/1 or HTTP/2) that moved no bytes in either direction for `idle_timeout`.
//! Both timers tick at a quarter of their timeout, so each fires up to a quarter late, never early.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::pin::pin;

use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::drain::{Drain, DrainWatch};
use super::flood::FloodGuard;
use super::h1::{self, H1Options};
use super::idle::IdleIo;
use super::incoming::{ClientBody, Io};
use super::reclaim;
use super::tls::ListenerTls;
use crate::pipeline::edge::{self, EdgeState};
use crate::pipeline::fields::ClientFields;
use crate::pipeline::headers::Peer;
use crate::runtime::{Limits, ListenerSettings};

/// Extra room above the configured header limits, so that moderate excess reaches the edge and
/// gets its precise 414/431 (beyond it, the server answers 431 itself).
const HEAD_HEADROOM: u64 = 16 * 1024;

/// How an accept loop is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep the socket for a successor loop (a reload changed this listener's settings).
    Handoff,
    /// Stop accepting for good (shutdown, or the listener left the config).
    Close,
}

/// Accepts on one bound listener until `stop` says so, then hands the socket back.
///
/// Connections are watched by `drain`, which outlives the loop, so whoever stops the loop decides
/// whether they drain (shutdown, removed listener) or carry on (handoff on reload). Limits are read
/// from the current runtime snapshot, so a reload applies them to new connections.
pub async fn serve(
    listener: TcpListener,
    settings: ListenerSettings,
    state: Arc<EdgeState>,
    drain: Arc<Drain>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<Option<Stop>>,
) -> TcpListener {
    let mut snapshot = state.runtime.load_full();
    // The metrics outlive every snapshot, so one handle serves the whole loop.
    let in_flight = snapshot.metrics.listener_in_flight(&settings.name);
    let floods = snapshot.metrics.h2_floods(&settings.name);
    let reclaimed = snapshot.metrics.connections_reclaimed(&settings.name);
    let reclaimer = reclaim::Reclaimer::default();
    let mut protocols = Protocols::new(&settings, &snapshot.server.limits);
    // Rotated certificate files are picked up for as long as this loop serves the listener.
    let _cert_watch = settings
        .tls
        .as_ref()
        .and_then(|tls| tls.watch(&settings.name));
    loop {
        if stop.borrow_and_update().is_some() {
            break;
        }
        // At max_connections, close the oldest connections that never sent a byte (an idle
        // flood) to make room; past it, stop accepting: new connections wait in the backlog.
        let full = slots.available_permits() == 0;
        if full {
            let closed = reclaimer.reclaim(std::time::Instant::now(), reclaim::MIN_AGE);
            if closed > 0 {
                reclaimed.inc_by(closed as u64);
                tracing::info!(listener = %settings.name, closed, "max_connections reached: closed connections that sent nothing");
            }
        }
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => break,
            // Still full: look again once more silent connections are old enough.
            () = tokio::time::sleep(reclaim::MIN_AGE), if full => continue,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = %settings.name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let current = state.runtime.load();
        if !Arc::ptr_eq(&current, &snapshot) {
            snapshot = arc_swap::Guard::into_inner(current);
            protocols = Protocols::new(&settings, &snapshot.server.limits);
        }
        let _ = stream.set_nodelay(true);
        if let Some(tls) = &settings.tls {
            spawn_tls_connection(TlsConnection {
                tls: Arc::clone(tls),
                stream,
                peer,
                listener: Arc::clone(&settings.name),
                idle_timeout: snapshot.server.limits.idle_timeout,
                protocols: protocols.clone(),
                state: Arc::clone(&state),
                watcher: drain.watcher(),
                permit,
                in_flight: in_flight.clone(),
                flood: Flood {
                    limit: flood_limit(&snapshot),
                    floods: floods.clone(),
                    peer,
                },
            });
            continue;
        }
        let io = IdleIo::new(stream, snapshot.server.limits.idle_timeout)
            .reclaimable(reclaimer.register());
        let peer_info = Arc::new(Peer::new(peer).counted_in(in_flight.clone()));
        // Built in a box of its own (~12 KiB): spawned by value, tokio moved it three times on
        // its way into the task, and the task held it twice (once to move it in, once to poll
        // it): 59 KiB copied per connection (callgrind, release, a connection per request: 42.6k
        // → 28.9k instructions per request). A box moves as a pointer.
        let connection = Box::into_pin(Box::write(
            Box::new_uninit(),
            serve_cleartext(
                Box::new(io),
                protocols.clone(),
                Arc::clone(&state),
                peer_info,
                drain.watcher(),
                Flood {
                    limit: flood_limit(&snapshot),
                    floods: floods.clone(),
                    peer,
                },
            ),
        ));
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    listener
}

/// An accepted connection on a TLS listener, before its handshake.
struct TlsConnection {
    tls: Arc<ListenerTls>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    idle_timeout: Duration,
    protocols: Protocols,
    state: Arc<EdgeState>,
    watcher: DrainWatch,
    permit: OwnedSemaphorePermit,
    in_flight: prometheus_client::metrics::gauge::Gauge,
    flood: Flood,
}

/// What an HTTP/2 connection's [`FloodGuard`] needs. Only connections known to speak HTTP/2 are
/// wrapped: for HTTP/1.1 the guard would be a layer on every read and write that never finds a
/// frame.
struct Flood {
    limit: u32,
    floods: prometheus_client::metrics::counter::Counter,
    peer: SocketAddr,
}

impl Flood {
    fn guard<S>(self, io: S) -> FloodGuard<S> {
        FloodGuard::new(io, self.limit, self.floods, self.peer)
    }
}

/// Handshakes off the accept loop (a slow client must not stall accepting), then serves HTTP/1.1
/// or h2 as ALPN decided. The connection's slot is held through the handshake, which is bounded
/// by `handshake_timeout`.
fn spawn_tls_connection(conn: TlsConnection) {
    // Built in a box of its own (~12 KiB), for the reason `serve` gives for cleartext ones.
    tokio::spawn(Box::into_pin(Box::write(Box::new_uninit(), async move {
        let TlsConnection {
            tls,
            stream,
            peer,
            listener,
            idle_timeout,
            protocols,
            state,
            watcher,
            permit,
            in_flight,
            flood,
        } = conn;
        let Ok((io, negotiated)) = tls.accept(stream, peer, &listener, idle_timeout).await else {
            // Counted and logged by `accept`; dropping the stream closes it.
            drop(permit);
            return;
        };
        let peer_info = Arc::new(Peer::tls(peer, negotiated.client_subject).counted_in(in_flight));
        // RFC 9113 §3.2: over TLS, h2 is chosen by ALPN only; without it, HTTP/1.1.
        if negotiated.h2 {
            serve_h2(flood.guard(io), &protocols.h2, state, peer_info, watcher).await;
        } else {
            let options = H1Options {
                sniff_h2: false,
                ..protocols.h1.clone()
            };
            // Without the preface sniffing, the server never hands the stream on.
            let _ = h1::serve(Box::new(io), state, peer_info, watcher, options).await;
        }
        drop(permit);
    })));
}

/// The protocols a listener speaks and their settings, rebuilt when a reload changes the limits.
#[derive(Clone)]
struct Protocols {
    /// HTTP/1.1 is served (else only h2c by prior knowledge).
    http1: bool,
    h1: H1Options,
    h2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(settings: &ListenerSettings, limits: &Limits) -> Self {
        let head_room = limits.max_header_bytes + limits.max_uri_bytes + HEAD_HEADROOM;
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(
                u32::try_from(limits.h2_max_header_list_size.unwrap_or(head_room))
                    .unwrap_or(u32::MAX),
            )
            .max_pending_accept_reset_streams(Some(limits.h2_max_pending_reset_streams))
            .max_local_error_reset_streams(Some(limits.h2_max_local_error_reset_streams));
        Self {
            http1: settings.http1 || !settings.h2c,
            h1: H1Options {
                listener: Arc::clone(&settings.name),
                max_head: usize::try_from(head_room).unwrap_or(usize::MAX).max(8192),
                limits: (limits.max_uri_bytes, limits.max_header_bytes),
                header_read_timeout: limits.header_read_timeout.min(limits.idle_timeout),
                sniff_h2: settings.h2c,
            },
            h2,
        }
    }
}

/// Serves one cleartext connection: HTTP/1.1, or h2c by prior knowledge.
async fn serve_cleartext(
    io: Box<dyn Io>,
    protocols: Protocols,
    state: Arc<EdgeState>,
    peer: Arc<Peer>,
    watcher: DrainWatch,
    flood: Flood,
) {
    if !protocols.http1 {
        serve_h2(flood.guard(io), &protocols.h2, state, peer, watcher).await;
        return;
    }
    let ended = h1::serve(
        io,
        Arc::clone(&state),
        Arc::clone(&peer),
        watcher.clone(),
        protocols.h1.clone(),
    )
    .await;
    // The guard sees the preface and every frame after it: the sniffed bytes are read again.
    if let h1::Ended::H2(io) = ended {
        serve_h2(flood.guard(io), &protocols.h2, state, peer, watcher).await;
    }
}

/// Serves an HTTP/2 connection with hyper until it ends, or until the listener drains (then
/// GOAWAY, and the streams in flight finish).
async fn serve_h2<I: Io>(
    io: I,
    builder: &http2::Builder<TokioExecutor>,
    state: Arc<EdgeState>,
    peer: Arc<Peer>,
    mut watcher: DrainWatch,
) {
    let service = service_fn(move |req: http::Request<Incoming>| {
        let fields_seen = ClientFields::scan(req.headers());
        // Boxed: hyper spawns every stream as a task wrapping this future (about 8.5 KiB), and
        // moved it some nine times on the way into the task and out of it; a box moves as a
        // pointer. Written into a box allocated first, so it is built there, not copied in.
        // (h2c GET, pinned A/B: user CPU per request 25.2 → 20.2 µs; README, Performance.)
        Box::into_pin(Box::write(
            Box::new_uninit(),
            edge::handle(
                Arc::clone(&state),
                Arc::clone(&peer),
                req.map(ClientBody::H2),
                fields_seen,
            ),
        ))
    });
    let mut connection = pin!(builder.serve_connection(TokioIo::new(io), service));
    let ended = tokio::select! {
        ended = connection.as_mut() => Some(ended),
        () = watcher.draining() => None,
    };
    let ended = match ended {
        Some(ended) => ended,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = ended {
        tracing::debug!(error = %err, "client connection ended with an error");
    }
}

/// PING/SETTINGS frames per second per HTTP/2 connection, from the current snapshot.
fn flood_limit(snapshot: &crate::runtime::Runtime) -> u32 {
    crate::config::compile_hostile::h2_max_control_frames_per_second(&snapshot.file.server.limits)
}

/// Lets the connections watched by `drain` finish their in-flight requests, for at most `grace`.
pub async fn drain(drain: Drain, grace: Duration, listener: &str) {
    tokio::select! {
        () = drain.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(listener, "shutdown grace expired with requests in flight");
        }
    }
}

/// Binds a listener's address (port 0 picks an ephemeral port).
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}
