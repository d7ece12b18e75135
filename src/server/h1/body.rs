//! The connection's state shared between the connection task and the request body it hands the
//! edge, and that body.
//!
//! The body reads straight from the client's socket, in whatever task polls it (the request's own
//! task, or an HTTP/2 upstream connection's), so the stream and its read buffer sit behind a
//! mutex, held only inside a poll. The connection task reads the socket itself only when no body
//! is being read (before a head, or after the body ended), so two tasks never wait on the same
//! read.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::http1::decode::{BodyDecoder, Decoded, Framing};
use crate::server::incoming::BoxIo;

/// What the server says to a client waiting with `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// The first read of a connection, and of a body.
const FIRST_READ: usize = 8 * 1024;
/// The largest single read of a body.
const MAX_READ: usize = 64 * 1024;

/// The client connection, shared with the current request's body.
pub struct Wire {
    /// `None` once the stream was handed over (an upgrade, HTTP/2).
    pub io: Option<BoxIo>,
    /// Bytes read from the client and not consumed yet.
    pub read_buf: BytesMut,
    /// The current request's body.
    pub body: BodyDecoder,
    /// How much of `100 Continue` is still to be written before the body is read; `None`: nothing.
    continue_left: Option<usize>,
    /// The response head is out: too late for a `100 Continue`.
    pub responded: bool,
    /// The client's body broke its framing or the client went away mid-body.
    pub broken: bool,
    read_size: usize,
    max_trailers: usize,
}

/// The lock around a [`Wire`].
pub type SharedWire = Arc<Mutex<Wire>>;

/// Locks the wire; a panic while it was held cannot leave it worse than a broken connection.
pub fn lock(wire: &SharedWire) -> MutexGuard<'_, Wire> {
    wire.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Wire {
    /// A fresh connection.
    pub fn new(io: BoxIo, max_trailers: usize) -> Self {
        Self {
            io: Some(io),
            // Allocated at the first read: an idle connection (or an idle flood) holds no buffer.
            read_buf: BytesMut::new(),
            body: BodyDecoder::new(Framing::Empty),
            continue_left: None,
            responded: false,
            broken: false,
            read_size: FIRST_READ,
            max_trailers,
        }
    }

    /// Starts a request whose body is framed as `framing`.
    pub fn start_request(&mut self, framing: Framing, expect_continue: bool) {
        self.body = BodyDecoder::new(framing);
        self.continue_left = (expect_continue && !self.body.is_done()).then_some(CONTINUE.len());
        self.responded = false;
        self.broken = false;
    }

    /// Whether the client is still waiting for a `100 Continue` that was never sent.
    pub fn continue_unsent(&self) -> bool {
        self.continue_left == Some(CONTINUE.len())
    }

    /// Reads more bytes into the buffer; `Ok(0)`: the client closed.
    pub fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if self.read_buf.capacity() == 0 {
            // A connection's first read goes through a small stack buffer: a connection that
            // sends nothing (one of an idle flood) holds no heap buffer.
            let mut first = [0u8; 1024];
            let mut filled = ReadBuf::new(&mut first);
            ready!(Pin::new(io).poll_read(cx, &mut filled))?;
            let read = filled.filled().len();
            if read > 0 {
                self.read_buf.reserve(FIRST_READ);
                self.read_buf.extend_from_slice(filled.filled());
            }
            return Poll::Ready(Ok(read));
        }
        crate::http1::rewind_if_empty(&mut self.read_buf);
        let size = self.read_size;
        if self.read_buf.capacity() - self.read_buf.len() < size / 2 {
            self.read_buf.reserve(size);
        }
        let read = ready!(pin!(io.read_buf(&mut self.read_buf)).poll(cx))?;
        if read >= size {
            self.read_size = (size * 2).min(MAX_READ);
        }
        Poll::Ready(Ok(read))
    }

    /// Writes all of `bytes` (used for the small interim `100 Continue`).
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(left) = self.continue_left.filter(|left| *left > 0) {
            let Some(io) = self.io.as_mut() else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            let written = ready!(Pin::new(io).poll_write(cx, &CONTINUE[CONTINUE.len() - left..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_left = Some(left - written);
        }
        self.continue_left = None;
        Poll::Ready(Ok(()))
    }

    /// The next frame of the current request's body.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.continue_left.is_some() {
            if self.responded {
                // The answer went out first: the client will not be told to continue.
                self.continue_left = None;
            } else if let Err(err) = ready!(self.poll_continue(cx)) {
                self.broken = true;
                return Poll::Ready(Some(Err(err)));
            }
        }
        loop {
            match self.body.decode(&mut self.read_buf, self.max_trailers) {
                Ok(Decoded::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
                Err(err) => {
                    self.broken = true;
                    return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, err))));
                }
            }
            match ready!(self.poll_read_more(cx)) {
                Ok(0) => {
                    self.broken = true;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection before the end of the body",
                    ))));
                }
                Ok(_) => {}
                Err(err) => {
                    self.broken = true;
                    return Poll::Ready(Some(Err(err)));
                }
            }
        }
    }

    /// Writes through the stream (the connection task's responses).
    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.io.as_mut() {
            Some(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

/// The body of a request on a Gantry HTTP/1.1 connection.
pub struct H1RequestBody {
    wire: SharedWire,
    ended: bool,
}

impl H1RequestBody {
    pub(super) fn new(wire: SharedWire) -> Self {
        Self { wire, ended: false }
    }
}

impl Body for H1RequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let polled = lock(&this.wire).poll_body(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || lock(&self.wire).body.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            return SizeHint::with_exact(0);
        }
        lock(&self.wire)
            .body
            .exact_remaining()
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}
