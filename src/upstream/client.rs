//! Keep-alive connections to one target, owned by that target (not keyed by URI authority).
//!
//! Why our own pool: hyper-util's legacy client pools by the URI's authority, which fights per-target
//! balancing and would force the target's address into `:authority`. Here each [`Target`] owns a
//! [`ConnectionPool`]: most-recently-idle reuse (LIFO keeps few connections hot), a cap on open
//! connections per target, TCP_NODELAY, and an idle expiry. HTTP/1.1 connections carry one request
//! at a time (spoken by [`super::h1`], in the request's own task) and go back to the pool when the
//! response body has been read to its end; an HTTP/2 connection (hyper's client) is shared by all
//! requests to the target.
//!
//! [`Target`]: super::cluster::Target

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::fields::OutgoingFields;
use super::h1::{H1Body, H1Connection, H1Error, H1SendError};
use super::tls::{UpstreamStream, UpstreamTls, describe};
use crate::handler::body::RequestBody;

/// Settings of a target's pool, from `upstreams.*.pool` and `timeouts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Idle connections kept.
    pub max_idle: usize,
    /// Open connections, busy or idle.
    pub max_open: usize,
    /// Idle connections older than this are closed.
    pub idle_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Largest upstream response head accepted (HTTP/1).
    pub max_response_head: usize,
    /// Speak HTTP/2 (prior knowledge, or ALPN over TLS) instead of HTTP/1.1.
    pub http2: bool,
    /// TLS to this target (`https://`); `None` for plain TCP.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// Why a connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed.
    #[error("connect failed")]
    Io(#[source] std::io::Error),
    /// TCP connect took too long.
    #[error("connect timed out")]
    Timeout,
    /// The HTTP handshake failed.
    #[error("handshake failed")]
    Handshake(#[source] hyper::Error),
    /// The TLS handshake failed; the text says why in config terms.
    #[error("TLS handshake failed: {reason}")]
    Tls {
        /// From [`crate::upstream::tls::describe`].
        reason: &'static str,
        /// The TLS error.
        #[source]
        source: std::io::Error,
    },
}

/// A failed send: the error, and the request back when it never left (safe to send elsewhere).
pub struct SendError {
    /// What failed.
    pub error: SendFailure,
    /// The request, if sending it again is safe.
    pub unsent: Option<Request<RequestBody>>,
}

/// What failed, by protocol.
#[derive(Debug, thiserror::Error)]
pub enum SendFailure {
    /// An HTTP/1.1 exchange (our own client, [`super::h1`]).
    #[error(transparent)]
    Http1(#[from] H1Error),
    /// An HTTP/2 exchange (hyper's client).
    #[error(transparent)]
    Http2(#[from] hyper::Error),
    /// The try's deadline passed before the response head arrived.
    #[error("timed out waiting for the response")]
    TimedOut,
}

/// The body of an upstream response, by protocol.
pub enum UpstreamBody {
    /// Read straight from an HTTP/1.1 connection.
    Http1(H1Body),
    /// A stream of a shared HTTP/2 connection.
    Http2(Incoming),
}

impl UpstreamBody {
    /// The HTTP/1.1 connection, when the body ended cleanly and it may carry another request.
    pub fn take_connection(&mut self) -> Option<Box<H1Connection>> {
        match self {
            Self::Http1(body) => body.take_connection(),
            Self::Http2(_) => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = SendFailure;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, SendFailure>>> {
        match self.get_mut() {
            Self::Http1(body) => Pin::new(body).poll_frame(cx).map_err(SendFailure::Http1),
            Self::Http2(body) => Pin::new(body).poll_frame(cx).map_err(SendFailure::Http2),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Http1(body) => body.is_end_stream(),
            Self::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Http1(body) => body.size_hint(),
            Self::Http2(body) => body.size_hint(),
        }
    }
}

enum Sender {
    Http1(Box<H1Connection>),
    Http2(http2::SendRequest<RequestBody>),
}

/// One checked-out connection, used for one request by [`PooledConnection::send`]. An HTTP/1.1
/// connection then lives in the response body and goes back to the pool from there.
pub struct PooledConnection {
    sender: Sender,
    reused: bool,
}

impl PooledConnection {
    /// Whether this connection served an earlier request.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Sends the request; on failure, the request comes back when sending it again is safe.
    /// Past `deadline` without a response head, it fails with [`SendFailure::TimedOut`].
    /// `extra`: fields Gantry adds beside the map, written straight into an HTTP/1.1 head, added
    /// to the map of an HTTP/2 one.
    pub async fn send(
        self,
        mut req: Request<RequestBody>,
        deadline: Instant,
        extra: &OutgoingFields<'_>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        if let Sender::Http2(_) = &self.sender {
            extra.add_to(req.headers_mut());
        }
        match self.sender {
            Sender::Http1(connection) => {
                match connection
                    .send_until(req, Some(deadline.into()), extra)
                    .await
                {
                    Ok(response) => Ok(response.map(UpstreamBody::Http1)),
                    Err(H1SendError {
                        error: H1Error::TimedOut,
                        ..
                    }) => Err(SendError {
                        error: SendFailure::TimedOut,
                        unsent: None,
                    }),
                    Err(H1SendError { error, unsent }) => Err(SendError {
                        error: SendFailure::Http1(error),
                        unsent,
                    }),
                }
            }
            Sender::Http2(mut sender) => {
                let sending = sender.try_send_request(req);
                match tokio::time::timeout_at(deadline.into(), sending).await {
                    Err(_elapsed) => Err(SendError {
                        error: SendFailure::TimedOut,
                        unsent: None,
                    }),
                    Ok(Ok(response)) => Ok(response.map(UpstreamBody::Http2)),
                    Ok(Err(mut err)) => {
                        let unsent = err.take_message();
                        Err(SendError {
                            error: SendFailure::Http2(err.into_error()),
                            unsent,
                        })
                    }
                }
            }
        }
    }
}

struct IdleConnection {
    connection: Box<H1Connection>,
    /// The pool's clock when the connection came back (see [`IdleList::clock`]).
    idle_since: Instant,
}

/// The idle connections, oldest first.
struct IdleList {
    connections: Vec<IdleConnection>,
    /// The time of the last sweep. Why not `Instant::now()`: two clock reads per request (stamp
    /// and expiry check) for a housekeeping bound; the once-a-second sweep reads the clock anyway.
    clock: Instant,
}

/// Keep-alive connections to one target address.
pub struct ConnectionPool {
    authority: String,
    settings: PoolSettings,
    idle: Mutex<IdleList>,
    open: Arc<Semaphore>,
    /// Signalled when a connection goes back to the idle list.
    returned: Notify,
    shared_h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
}

impl ConnectionPool {
    /// A pool for `authority` (`host:port`), connecting lazily.
    pub fn new(authority: String, settings: PoolSettings) -> Self {
        let open = Arc::new(Semaphore::new(settings.max_open.max(1)));
        Self {
            authority,
            settings,
            idle: Mutex::new(IdleList {
                connections: Vec::new(),
                clock: Instant::now(),
            }),
            open,
            returned: Notify::new(),
            shared_h2: Mutex::new(None),
        }
    }

    /// The settings this pool was built with.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Connections sitting idle right now.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.connections.len())
    }

    /// A ready connection: the most recently idle one, or a new one (waiting for a slot under the cap).
    pub async fn checkout(&self) -> Result<PooledConnection, ConnectError> {
        if self.settings.http2 {
            return self.checkout_h2().await;
        }
        // Fast path: a live idle connection, without registering for wake-ups.
        if let Some(connection) = self.take_idle() {
            return Ok(connection);
        }
        loop {
            // Registered before looking at the idle list again, so a connection returned in
            // between still wakes us (a waiter for a slot must also take one that comes back).
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(connection) = self.take_idle() {
                return Ok(connection);
            }
            tokio::select! {
                permit = Arc::clone(&self.open).acquire_owned() => {
                    return self.connect_http1(permit.ok()).await;
                }
                () = &mut returned => {}
            }
        }
    }

    /// The most recently idle connection that the upstream has not closed, if any.
    fn take_idle(&self) -> Option<PooledConnection> {
        while let Some(IdleConnection { mut connection, .. }) = self.pop_idle() {
            if connection.is_stale() {
                continue;
            }
            return Some(PooledConnection {
                sender: Sender::Http1(connection),
                reused: true,
            });
        }
        None
    }

    async fn connect_http1(
        &self,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<PooledConnection, ConnectError> {
        let stream = self.connect().await?;
        Ok(PooledConnection {
            sender: Sender::Http1(H1Connection::new(
                stream,
                self.settings.max_response_head,
                permit,
            )),
            reused: false,
        })
    }

    /// Returns an HTTP/1.1 connection whose response was read completely.
    pub fn put_back(&self, connection: Box<H1Connection>) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if idle.connections.len() >= self.settings.max_idle {
            return;
        }
        let idle_since = idle.clock;
        idle.connections.push(IdleConnection {
            connection,
            idle_since,
        });
        drop(idle);
        self.returned.notify_one();
    }

    /// Closes idle connections the upstream has closed (or written to) and those that would pass
    /// the idle timeout before the next sweep. Nobody reads an idle connection, so without this
    /// a closed one would hold its socket (CLOSE_WAIT) until the next request to the target.
    ///
    /// This is the only idle expiry (a checkout does not read the clock): a connection's stamp is
    /// the sweep before it came back, so with a sweep every [`SWEEP_EVERY`] a connection is never
    /// reused past the idle timeout and is closed up to two sweeps before it.
    pub fn sweep(&self) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let now = Instant::now();
        idle.clock = now;
        idle.connections.retain_mut(|entry| {
            now.duration_since(entry.idle_since) + SWEEP_EVERY < self.settings.idle_timeout
                && !entry.connection.is_stale()
        });
    }

    fn pop_idle(&self) -> Option<IdleConnection> {
        self.idle.lock().ok()?.connections.pop()
    }

    async fn checkout_h2(&self) -> Result<PooledConnection, ConnectError> {
        let existing = self
            .shared_h2
            .lock()
            .ok()
            .and_then(|shared| shared.as_ref().filter(|s| !s.is_closed()).cloned());
        if let Some(mut sender) = existing
            && sender.ready().await.is_ok()
        {
            return Ok(PooledConnection {
                sender: Sender::Http2(sender),
                reused: true,
            });
        }
        let stream = self.connect().await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(
                u32::try_from(self.settings.max_response_head).unwrap_or(u32::MAX),
            )
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        if let Ok(mut shared) = self.shared_h2.lock() {
            *shared = Some(sender.clone());
        }
        Ok(PooledConnection {
            sender: Sender::Http2(sender),
            reused: false,
        })
    }

    /// A new connection: TCP, then TLS for `https://` targets. Each step is bounded by the
    /// connect timeout, so a peer that accepts but never finishes the handshake cannot hang us.
    async fn connect(&self) -> Result<UpstreamStream, ConnectError> {
        let tcp = self.connect_tcp().await?;
        let Some(tls) = &self.settings.tls else {
            return Ok(UpstreamStream::Plain(tcp));
        };
        let host = self
            .authority
            .rsplit_once(':')
            .map_or(self.authority.as_str(), |(host, _)| host);
        let Some(name) = tls.server_name_for(host) else {
            return Err(ConnectError::Tls {
                reason: "the target host is not a valid TLS server name",
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        };
        match tokio::time::timeout(self.settings.connect_timeout, tls.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(UpstreamStream::Tls(Box::new(stream))),
            Ok(Err(source)) => Err(ConnectError::Tls {
                reason: describe(&source),
                source,
            }),
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    async fn connect_tcp(&self) -> Result<TcpStream, ConnectError> {
        let connect = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(self.authority.as_str())
                .await
                .map_err(ConnectError::Io)?
                .collect();
            let mut last_error = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(err) => last_error = Some(err),
                }
            }
            Err(ConnectError::Io(last_error.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
            })))
        };
        tokio::time::timeout(self.settings.connect_timeout, connect)
            .await
            .map_err(|_| ConnectError::Timeout)?
    }
}

/// How often idle HTTP/1.1 connections are swept (see [`ConnectionPool::sweep`]).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Sweeps the pools of an HTTP/1.1 cluster's targets every second while the cluster is alive
/// (restarted with the other upstream tasks on reload). `None` for HTTP/2 clusters, whose one
/// shared connection is watched by hyper's connection task.
pub fn spawn_pool_sweeper(
    cluster: &Arc<super::cluster::UpstreamCluster>,
) -> Option<tokio::task::JoinHandle<()>> {
    if cluster.protocol == super::cluster::UpstreamProtocol::Http2 {
        return None;
    }
    let cluster = Arc::downgrade(cluster);
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            for target in cluster.targets.load().iter() {
                target.pool.sweep();
            }
        }
    }))
}
