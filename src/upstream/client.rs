//! Keep-alive connections to one target, owned by that target (not keyed by URI authority).
//!
//! Why our own pool: hyper-util's legacy client pools by the URI's authority, which fights per-target
//! balancing and would force the target's address into `:authority`. Here each [`Target`] owns a
//! [`ConnectionPool`]: most-recently-idle reuse (LIFO keeps few connections hot), a cap on open
//! connections per target, TCP_NODELAY, and an idle expiry. HTTP/1.1 connections carry one request
//! at a time and go back to the pool when the response body has been read to its end; an HTTP/2
//! connection is shared by all requests to the target.
//!
//! [`Target`]: super::cluster::Target

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

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
    pub error: hyper::Error,
    /// The request, if nothing of it was written.
    pub unsent: Option<Request<RequestBody>>,
}

enum Sender {
    Http1(http1::SendRequest<RequestBody>),
    Http2(http2::SendRequest<RequestBody>),
}

/// One checked-out connection. Give it back with [`ConnectionPool::put_back`] once the response
/// body is complete; dropping it closes nothing by itself but frees its slot when hyper closes it.
pub struct PooledConnection {
    sender: Sender,
    /// Held while the connection is open (HTTP/1) so `max_open` is a real cap.
    permit: Option<Arc<OwnedSemaphorePermit>>,
    reused: bool,
}

impl PooledConnection {
    /// Whether this connection served an earlier request.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Sends the request; on failure before anything was written, the request comes back.
    pub async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let result = match &mut self.sender {
            Sender::Http1(sender) => sender.try_send_request(req).await,
            Sender::Http2(sender) => sender.try_send_request(req).await,
        };
        result.map_err(|mut err| {
            let unsent = err.take_message();
            SendError {
                error: err.into_error(),
                unsent,
            }
        })
    }
}

struct IdleConnection {
    sender: http1::SendRequest<RequestBody>,
    permit: Option<Arc<OwnedSemaphorePermit>>,
    idle_since: Instant,
}

/// Keep-alive connections to one target address.
pub struct ConnectionPool {
    authority: String,
    settings: PoolSettings,
    idle: Mutex<Vec<IdleConnection>>,
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
            idle: Mutex::new(Vec::new()),
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
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    /// A ready connection: the most recently idle one, or a new one (waiting for a slot under the cap).
    pub async fn checkout(&self) -> Result<PooledConnection, ConnectError> {
        if self.settings.http2 {
            return self.checkout_h2().await;
        }
        // Fast path: a live idle connection, without registering for wake-ups.
        if let Some(connection) = self.take_idle().await {
            return Ok(connection);
        }
        loop {
            // Registered before looking at the idle list again, so a connection returned in
            // between still wakes us (a waiter for a slot must also take one that comes back).
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(connection) = self.take_idle().await {
                return Ok(connection);
            }
            tokio::select! {
                permit = Arc::clone(&self.open).acquire_owned() => {
                    return self.connect_http1(permit.ok().map(Arc::new)).await;
                }
                () = &mut returned => {}
            }
        }
    }

    /// The most recently idle connection that is still usable, if any.
    async fn take_idle(&self) -> Option<PooledConnection> {
        while let Some(idle) = self.pop_idle() {
            let IdleConnection {
                mut sender, permit, ..
            } = idle;
            if sender.is_closed() {
                continue;
            }
            // The previous response's body is read; the connection becomes ready almost at once.
            if sender.ready().await.is_ok() {
                return Some(PooledConnection {
                    sender: Sender::Http1(sender),
                    permit,
                    reused: true,
                });
            }
        }
        None
    }

    async fn connect_http1(
        &self,
        permit: Option<Arc<OwnedSemaphorePermit>>,
    ) -> Result<PooledConnection, ConnectError> {
        let stream = self.connect().await?;
        let mut builder = http1::Builder::new();
        builder.max_buf_size(self.settings.max_response_head.max(8192));
        let (sender, connection) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        let slot = permit.clone();
        tokio::spawn(async move {
            // Upgrades (WebSocket) keep the IO alive after the response; the slot is freed when
            // the connection task ends.
            let _ = connection.with_upgrades().await;
            drop(slot);
        });
        Ok(PooledConnection {
            sender: Sender::Http1(sender),
            permit,
            reused: false,
        })
    }

    /// Returns an HTTP/1 connection whose response was read completely.
    pub fn put_back(&self, conn: PooledConnection) {
        let PooledConnection { sender, permit, .. } = conn;
        let Sender::Http1(sender) = sender else {
            return;
        };
        if sender.is_closed() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if idle.len() >= self.settings.max_idle {
            return;
        }
        idle.push(IdleConnection {
            sender,
            permit,
            idle_since: Instant::now(),
        });
        drop(idle);
        self.returned.notify_one();
    }

    fn pop_idle(&self) -> Option<IdleConnection> {
        let mut idle = self.idle.lock().ok()?;
        let now = Instant::now();
        // Expired connections sit at the bottom (oldest first); drop them.
        let expired = idle
            .iter()
            .take_while(|c| now.duration_since(c.idle_since) >= self.settings.idle_timeout)
            .count();
        idle.drain(..expired);
        idle.pop()
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
                permit: None,
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
            permit: None,
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
