//! An inactivity timer around a client connection: no byte in either direction for `idle_timeout`
//! and the connection is closed.
//!
//! Why not hyper's timers: hyper's HTTP/1 header-read timer covers a slow request head (and an idle
//! keep-alive connection), but HTTP/2 connections have no idle timer at all.
//!
//! Why ticks: reading the clock on every read and write cost a clock read or two per request, for a
//! timer that almost never fires. Instead an I/O call only raises a flag, and the sleep ticks every
//! quarter of `idle_timeout` (the clock is read only then, to re-arm from the tick's own time). A
//! tick that finds the flag raised lowers it; the connection is idle once [`TICKS`] ticks in a row
//! found it lowered. So the close comes between `idle_timeout` and `1.25 × idle_timeout` after the
//! last byte, never before.
//!
//! A connection that times out while its writes are stalled (a client that stopped reading) is
//! closed abortively (RST): a plain close would queue the FIN behind megabytes of unsent response
//! that the client never takes, so the client would never see the close and the kernel would keep
//! the orphaned socket and its send buffer until its own timers end it. An idle connection with
//! nothing left to send still gets an orderly FIN.

use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
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

/// Ticks in a row without I/O after which a connection is idle; a tick is `idle_timeout / TICKS`.
pub const TICKS: u32 = 4;

/// A sleep that fires every `tick`, re-armed only when it fires.
///
/// Why not a plain `Sleep` polled on every pending read: while it is registered with the waker of
/// the task polling it, such a poll only registers the same waker again (about 130 instructions,
/// twice per request). Checking whether it fired is two loads.
pub struct Ticker {
    sleep: Pin<Box<Sleep>>,
    tick: Duration,
    /// The waker the sleep will wake, once it was polled since it was last armed.
    waker: Option<Waker>,
}

impl Ticker {
    /// Fires `tick` from now, then every `tick` after each firing is seen.
    pub fn new(tick: Duration) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(tick)),
            tick,
            waker: None,
        }
    }

    /// True when a tick went by since the last one seen; false after arranging for `cx` to be
    /// woken when it does.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> bool {
        let registered = self
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if registered && !self.sleep.is_elapsed() {
            return false;
        }
        // Unconstrained: out of coop budget a poll is Pending without registering the waker, and
        // the check above would then trust a registration that never happened.
        if pin!(tokio::task::unconstrained(self.sleep.as_mut()))
            .poll(cx)
            .is_pending()
        {
            if !registered {
                self.waker = Some(cx.waker().clone());
            }
            return false;
        }
        // From now, not from the deadline: a tick seen late still counts for a whole tick.
        let next = Instant::now() + self.tick;
        self.sleep.as_mut().reset(next);
        // A fired sleep gave its waker away: the next call polls it again.
        self.waker = None;
        true
    }
}

/// Counts the ticks that found no I/O since the one before.
#[derive(Debug, Default)]
struct QuietTicks {
    /// Some I/O was done since the last tick.
    active: bool,
    /// Ticks in a row that found no I/O.
    quiet: u32,
}

impl QuietTicks {
    fn io(&mut self) {
        self.active = true;
    }

    /// One tick went by; true once [`TICKS`] ticks in a row found no I/O.
    fn tick(&mut self) -> bool {
        if std::mem::take(&mut self.active) {
            self.quiet = 0;
            return false;
        }
        self.quiet += 1;
        self.quiet >= TICKS
    }
}

/// A stream that fails with `TimedOut` after `timeout` without I/O (at most a tick later).
pub struct IdleIo<S> {
    inner: S,
    ticker: Ticker,
    quiet: QuietTicks,
    /// The last write returned Pending: the peer is not taking our bytes.
    write_stalled: bool,
    /// Until the first byte arrives, the listener may close this connection to make room.
    silent: Option<Arc<Ticket>>,
}

impl<S: AbortOnClose> IdleIo<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            ticker: Ticker::new(timeout / TICKS),
            quiet: QuietTicks::default(),
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

    /// Called when the inner stream is pending: `Ready(error)` once the connection was idle too long.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        while self.ticker.poll_tick(cx) {
            if self.quiet.tick() {
                if self.write_stalled {
                    self.inner.abort_on_close();
                }
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle timeout",
                ));
            }
        }
        Poll::Pending
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
                this.quiet.io();
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
                this.quiet.io();
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
                this.quiet.io();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ticker_wakes_its_task_at_each_tick() {
        let mut ticker = Ticker::new(Duration::from_millis(5));
        for _ in 0..3 {
            // Hangs (and times out) if a tick went by without waking the task.
            tokio::time::timeout(
                Duration::from_secs(10),
                std::future::poll_fn(|cx| {
                    if ticker.poll_tick(cx) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                }),
            )
            .await
            .expect("the tick woke the task");
        }
    }

    #[test]
    fn idle_after_a_whole_timeout_of_quiet_ticks() {
        let mut quiet = QuietTicks::default();
        for _ in 1..TICKS {
            assert!(!quiet.tick());
        }
        assert!(quiet.tick());
    }

    #[test]
    fn io_between_ticks_starts_the_count_again() {
        let mut quiet = QuietTicks::default();
        for _ in 1..TICKS {
            assert!(!quiet.tick());
        }
        quiet.io();
        // The tick that finds the I/O is not quiet, then a whole timeout of quiet ones is needed.
        assert!(!quiet.tick());
        for _ in 1..TICKS {
            assert!(!quiet.tick());
        }
        assert!(quiet.tick());
    }
}
