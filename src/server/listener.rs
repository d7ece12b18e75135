//! Accepting client connections: limits, protocol negotiation, graceful shutdown.
//!
//! hyper's own buffers are set above Gantry's configured limits so that the edge, not hyper, decides
//! and answers with problem+json (hyper's own rejections have empty bodies).
//!
//! Timers and how they interact: hyper starts its header-read timer both when a connection opens
//! and when a keep-alive connection goes idle waiting for the next request. So an idle HTTP/1.1
//! connection is closed after `min(header_read_timeout, idle_timeout)`; [`IdleIo`] closes any
//! connection (HTTP/1 or HTTP/2) that moved no bytes in either direction for `idle_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::flood::FloodGuard;
use super::idle::IdleIo;
use super::reclaim;
use super::tls::ListenerTls;
use crate::pipeline::edge::{self, EdgeState};
use crate::pipeline::headers::Peer;
use crate::runtime::{Limits, ListenerSettings};

/// Extra room above the configured header limits so hyper never rejects first.
const HYPER_HEADROOM: u64 = 16 * 1024;

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
/// Connections are watched by `graceful`, which outlives the loop, so whoever stops the loop decides
/// whether they drain (shutdown, removed listener) or carry on (handoff on reload). Limits are read
/// from the current runtime snapshot, so a reload applies them to new connections.
pub async fn serve(
    listener: TcpListener,
    settings: ListenerSettings,
    state: Arc<EdgeState>,
    graceful: Arc<GracefulShutdown>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<Option<Stop>>,
) -> TcpListener {
    let mut snapshot = state.runtime.load_full();
    // The metrics outlive every snapshot, so one handle serves the whole loop.
    let in_flight = snapshot.metrics.listener_in_flight(&settings.name);
    let floods = snapshot.metrics.h2_floods(&settings.name);
    let reclaimed = snapshot.metrics.connections_reclaimed(&settings.name);
    let reclaimer = reclaim::Reclaimer::default();
    let mut builder = connection_builder(&settings, &snapshot.server.limits);
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
            builder = connection_builder(&settings, &snapshot.server.limits);
        }
        let _ = stream.set_nodelay(true);
        if let Some(tls) = &settings.tls {
            spawn_tls_connection(TlsConnection {
                tls: Arc::clone(tls),
                stream,
                peer,
                listener: Arc::clone(&settings.name),
                idle_timeout: snapshot.server.limits.idle_timeout,
                builder: builder.clone(),
                state: Arc::clone(&state),
                watcher: graceful.watcher(),
                permit,
                in_flight: in_flight.clone(),
                flood_limit: flood_limit(&snapshot),
                floods: floods.clone(),
            });
            continue;
        }
        let io = TokioIo::new(FloodGuard::new(
            IdleIo::new(stream, snapshot.server.limits.idle_timeout)
                .reclaimable(reclaimer.register()),
            flood_limit(&snapshot),
            floods.clone(),
            peer,
        ));
        let state = Arc::clone(&state);
        let peer_info = Arc::new(Peer::new(peer).counted_in(in_flight.clone()));
        let service =
            service_fn(move |req| edge::handle(Arc::clone(&state), Arc::clone(&peer_info), req));
        let connection = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "client connection ended with an error");
            }
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
    builder: auto::Builder<TokioExecutor>,
    state: Arc<EdgeState>,
    watcher: Watcher,
    permit: OwnedSemaphorePermit,
    in_flight: prometheus_client::metrics::gauge::Gauge,
    flood_limit: u32,
    floods: prometheus_client::metrics::counter::Counter,
}

/// Handshakes off the accept loop (a slow client must not stall accepting), then serves HTTP/1.1
/// or h2 as ALPN decided. The connection's slot is held through the handshake, which is bounded
/// by `handshake_timeout`.
fn spawn_tls_connection(conn: TlsConnection) {
    tokio::spawn(async move {
        let TlsConnection {
            tls,
            stream,
            peer,
            listener,
            idle_timeout,
            builder,
            state,
            watcher,
            permit,
            in_flight,
            flood_limit,
            floods,
        } = conn;
        let Ok((io, negotiated)) = tls.accept(stream, peer, &listener, idle_timeout).await else {
            // Counted and logged by `accept`; dropping the stream closes it.
            drop(permit);
            return;
        };
        let peer_info = Arc::new(Peer::tls(peer, negotiated.client_subject).counted_in(in_flight));
        let service =
            service_fn(move |req| edge::handle(Arc::clone(&state), Arc::clone(&peer_info), req));
        // RFC 9113 §3.2: over TLS, h2 is chosen by ALPN only; without it, HTTP/1.1.
        let builder = if negotiated.h2 {
            builder.http2_only()
        } else {
            builder.http1_only()
        };
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(FloodGuard::new(io, flood_limit, floods, peer)),
                service,
            )
            .into_owned();
        if let Err(err) = watcher.watch(connection).await {
            tracing::debug!(%peer, error = %err, "client connection ended with an error");
        }
        drop(permit);
    });
}

/// PING/SETTINGS frames per second per HTTP/2 connection, from the current snapshot.
fn flood_limit(snapshot: &crate::runtime::Runtime) -> u32 {
    crate::config::compile_hostile::h2_max_control_frames_per_second(&snapshot.file.server.limits)
}

/// Lets the connections watched by `graceful` finish their in-flight requests, for at most `grace`.
pub async fn drain(graceful: GracefulShutdown, grace: Duration, listener: &str) {
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(listener, "shutdown grace expired with requests in flight");
        }
    }
}

/// hyper's connection builder for this listener's protocols and limits.
fn connection_builder(
    settings: &ListenerSettings,
    limits: &Limits,
) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let head_room = limits.max_header_bytes + limits.max_uri_bytes + HYPER_HEADROOM;
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.min(limits.idle_timeout))
        .max_buf_size(usize::try_from(head_room).unwrap_or(usize::MAX).max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(
            u32::try_from(limits.h2_max_header_list_size.unwrap_or(head_room)).unwrap_or(u32::MAX),
        )
        .max_pending_accept_reset_streams(Some(limits.h2_max_pending_reset_streams))
        .max_local_error_reset_streams(Some(limits.h2_max_local_error_reset_streams));
    match (settings.http1, settings.h2c) {
        (true, false) => builder.http1_only(),
        (false, true) => builder.http2_only(),
        _ => builder,
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
