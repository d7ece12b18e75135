//! An inactivity timer around a client connection: no byte in either direction for `idle_timeout`
//! and the connection is closed.
//!
//! Why not hyper's timers: hyper's HTTP/1 header-read timer covers a slow request head (and an idle
//! keep-alive connection), but HTTP/2 connections have no idle timer at all. This wrapper records
//! the time of the last I/O cheaply and only re-arms its sleep when the sleep fires, so busy
//! connections pay one clock read per I/O call.
//!
//! A connection that times out while its writes are stalled (a client that stopped reading) is
//! closed abortively (RST): a plain close would queue the FIN behind megabytes of unsent response
//! that the client never takes, so the client would never see the close and the kernel would keep
//! the orphaned socket and its send buffer until its own timers end it. An idle connection with
//! nothing left to send still gets an orderly FIN.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::reclaim::Ticket;

/// A stream whose close can be turned into a reset.
pub trait AbortOnClose {
    /// Makes the coming close send RST and drop unsent data.
    fn abort_on_close(&self);
}

impl AbortOnClose for TcpStream {
    fn abort_on_close(&self) {
        // SO_LINGER 0: close never blocks, unsent data is dropped, the peer gets RST.
        let _ = self.set_zero_linger();
    }
}

/// A stream that fails with `TimedOut` after `timeout` without I/O.
pub struct IdleIo<S> {
    inner: S,
    timeout: Duration,
    last_activity: Instant,
    sleep: Pin<Box<Sleep>>,
    /// The last write returned Pending: the peer is not taking our bytes.
    write_stalled: bool,
    /// Until the first byte arrives, the listener may close this connection to make room.
    silent: Option<Arc<Ticket>>,
}

impl<S: AbortOnClose> IdleIo<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout,
            last_activity: now,
            sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
            write_stalled: false,
            silent: None,
        }
    }

    /// Makes the connection reclaimable (see `reclaim`) until its first byte arrives.
    #[must_use]
    pub fn reclaimable(mut self, ticket: Arc<Ticket>) -> Self {
        self.silent = Some(ticket);
        self
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Called when the inner stream is pending: `Ready(error)` once the connection was idle too long.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.last_activity + self.timeout;
            if deadline <= Instant::now() {
                if self.write_stalled {
                    self.inner.abort_on_close();
                }
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle timeout",
                ));
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

impl<S: AsyncRead + AbortOnClose + Unpin> AsyncRead for IdleIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.silent.as_ref().and_then(|t| t.poll_reclaimed(cx)) {
            return Poll::Ready(Err(error));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.touch();
                if buf.filled().len() > before {
                    this.silent = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + AbortOnClose + Unpin> AsyncWrite for IdleIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.touch();
                this.write_stalled = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                this.write_stalled = true;
                this.poll_idle(cx).map(Err)
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.touch();
                this.write_stalled = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                this.write_stalled = true;
                this.poll_idle(cx).map(Err)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
