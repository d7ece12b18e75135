//! HTTP/1.1 to upstreams, spoken by the request's own task.
//!
//! Why not hyper's client here: its HTTP/1 connection runs as a task of its own that each request
//! talks to through channels (a request queue, a response oneshot, a body channel), and every hop
//! between the two tasks is a wake-up and a poll: about a third of the instructions of a proxied
//! GET. Here the request task writes the head and reads the response itself, and the response body
//! reads straight from the socket into the buffer its frames are sliced from. An idle connection is
//! not polled by anyone; before reuse, [`H1Connection::is_stale`] asks the reactor whether the
//! upstream closed it (no syscall unless something happened on the socket).
//!
//! The wire rules are RFC 9112's, read strictly where a lenient reading could desynchronise a
//! reused connection: conflicting `Content-Length` values are an invalid response; a
//! `Transfer-Encoding` wins over `Content-Length` and the connection is not reused; chunk sizes
//! must be hex digits; bytes after the end of a response mean the connection is not reused.
//! Hyper's server still speaks to clients (`src/server`), and HTTP/2 upstreams use hyper's client.

mod body;
mod request;
mod response;
mod timer;

use std::future::{Future as _, poll_fn};
use std::io;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::{Method, Request, Response};
use tokio::io::AsyncReadExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::fields::OutgoingFields;
use super::tls::UpstreamStream;
use crate::handler::body::RequestBody;
use timer::TryTimer;

pub use body::H1Body;

/// Read buffer size for response heads and the first body bytes; larger bodies read in larger
/// steps (see [`H1Connection::poll_fill`]).
const FIRST_READ: usize = 8 * 1024;
/// The largest single read of a body.
const MAX_READ: usize = 256 * 1024;

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The response head grew past the configured limit (or had more than 100 fields).
    #[error("response head too large")]
    HeadTooLarge,
    /// The upstream's bytes are not a valid HTTP/1.1 response.
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    /// The connection closed before a complete response head arrived.
    #[error("connection closed before the response")]
    ClosedEarly,
    /// The connection closed (or reset) in the middle of a response body.
    #[error("response body truncated")]
    Truncated,
    /// The request body could not be sent as framed (the client's stream failed, or it did not
    /// match its `Content-Length`); the detail is in the request's body failure slot.
    #[error("request body: {0}")]
    RequestBody(&'static str),
    /// Reading or writing the socket failed.
    #[error("connection failed")]
    Io(#[source] io::Error),
    /// The try's deadline passed before the response head arrived.
    #[error("timed out waiting for the response")]
    TimedOut,
}

/// A failed send, with the request back when sending it again elsewhere is safe.
pub struct H1SendError {
    /// What failed.
    pub error: H1Error,
    /// The request, when nothing of it was written, or when a reused connection turned out to be
    /// closed before any answer and the request is idempotent and bodiless.
    pub unsent: Option<Request<RequestBody>>,
}

/// One HTTP/1.1 connection to a target, idle or carrying one exchange.
pub struct H1Connection {
    io: UpstreamStream,
    /// Bytes read from the upstream and not yet consumed.
    read_buf: BytesMut,
    /// Scratch for parsing a response head (kept to avoid an allocation per response).
    fields: Vec<response::Field>,
    /// Where request heads are encoded, kept between requests (no allocation per request).
    head_buf: BytesMut,
    /// Next read size for a body (grows while reads fill it).
    read_size: usize,
    max_head: usize,
    /// The target's connection slot, freed when this connection is dropped.
    _permit: Option<OwnedSemaphorePermit>,
    reused: bool,
    /// The deadline of the exchange in flight, kept with the connection: a timer per request is a
    /// registration and a removal in the runtime's timer wheel (~600 instructions of a proxied
    /// GET, callgrind); see [`TryTimer`] for how a kept one is moved.
    deadline: Option<TryTimer>,
}

impl H1Connection {
    /// A fresh connection over `io`; `max_head` bounds a response head.
    /// Boxed: the connection moves from pool to request to response body and back, and stays
    /// in one place on the heap meanwhile.
    pub fn new(
        io: UpstreamStream,
        max_head: usize,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Box<Self> {
        Box::new(Self {
            io,
            read_buf: BytesMut::new(),
            fields: Vec::new(),
            head_buf: BytesMut::new(),
            read_size: FIRST_READ,
            max_head: max_head.max(1024),
            _permit: permit,
            reused: false,
            deadline: None,
        })
    }

    /// Whether this connection served an earlier exchange.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Whether an idle connection can no longer carry a request: the upstream closed it, reset it
    /// or sent bytes nobody asked for. Costs no syscall unless the reactor has seen the socket
    /// become readable since the last read.
    pub fn is_stale(&mut self) -> bool {
        if !self.read_buf.is_empty() {
            return true;
        }
        // End of stream, an unasked-for byte, or an error: none of them can be reused.
        self.io.read_would_not_wait()
    }

    /// [`Self::send_until`] without a deadline.
    #[cfg(test)]
    pub async fn send(
        self: Box<Self>,
        request: Request<RequestBody>,
    ) -> Result<Response<H1Body>, H1SendError> {
        self.send_until(request, None, &OutgoingFields::none())
            .await
    }

    /// Sends `request` and reads the response head; the body streams from the returned response.
    /// The request body is written while the response is awaited, so an upstream that answers
    /// early (a 413 before the body) is heard; the connection is then not reused. Past
    /// `deadline` the exchange fails with [`H1Error::TimedOut`] (and the connection is dropped).
    /// `extra` is written beside the request's own fields (see [`request::RequestWriter`]).
    pub async fn send_until(
        mut self: Box<Self>,
        request: Request<RequestBody>,
        deadline: Option<Instant>,
        extra: &OutgoingFields<'_>,
    ) -> Result<Response<H1Body>, H1SendError> {
        match (&mut self.deadline, deadline) {
            (Some(timer), Some(deadline)) => timer.set(deadline),
            (timer @ None, Some(deadline)) => *timer = Some(TryTimer::new(deadline)),
            (_, None) => self.deadline = None,
        }
        let (mut parts, mut body) = request.into_parts();
        let head_buf = std::mem::take(&mut self.head_buf);
        let mut writer = request::RequestWriter::new(&mut parts, &body, head_buf, extra);
        let mut write_error: Option<H1Error> = None;
        let method_is_head = parts.method == Method::HEAD;
        let pass_through = extra.added.raw_response;
        let head = poll_fn(|cx| {
            if write_error.is_none() && !writer.finished() {
                match writer.poll_write(cx, &mut self.io, &mut body) {
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                    Poll::Ready(Err(err @ H1Error::RequestBody(_))) => {
                        return Poll::Ready(Err(err));
                    }
                    // The upstream may have answered and closed its side: read what it said.
                    Poll::Ready(Err(err)) => write_error = Some(err),
                }
            }
            let head = self.poll_head(cx, method_is_head, pass_through);
            if head.is_pending()
                && let Some(timer) = &mut self.deadline
                && timer.poll_expired(cx)
            {
                return Poll::Ready(Err(H1Error::TimedOut));
            }
            head.map(|result| match result {
                Err(H1Error::ClosedEarly) if write_error.is_some() => {
                    Err(write_error.take().unwrap_or(H1Error::ClosedEarly))
                }
                other => other,
            })
        })
        .await;
        let head = match head {
            Ok(head) => head,
            Err(error) => {
                // Never when the body failed or a frame of it left the body (it would be lost),
                // nor after the try's time ran out.
                let intact = !matches!(error, H1Error::RequestBody(_) | H1Error::TimedOut)
                    && !writer.took_body();
                let resend = intact
                    && (!writer.wrote_any()
                        || (self.reused
                            && writer.bodiless()
                            && self.read_buf.is_empty()
                            && matches!(error, H1Error::ClosedEarly | H1Error::Io(_))
                            && is_idempotent(&parts.method)));
                let unsent = resend.then(|| Request::from_parts(parts, body));
                return Err(H1SendError { error, unsent });
            }
        };
        // An answer before the whole body was sent: the upstream will not read the rest.
        let keep_alive = head.keep_alive && writer.finished() && write_error.is_none();
        self.head_buf = writer.into_buffer();
        let clean = head.clean;
        let (response_parts, framing, raw) = head.into_parts();
        self.reused = true;
        Ok(Response::from_parts(
            response_parts,
            H1Body::new(self, framing, keep_alive, clean, raw),
        ))
    }

    /// Reads until a whole final (non-1xx, or 101) response head is in the buffer, and parses it.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method_is_head: bool,
        pass_through: bool,
    ) -> Poll<Result<response::ResponseHead, H1Error>> {
        loop {
            if !self.read_buf.is_empty()
                && let Some(head) = response::parse(
                    &mut self.read_buf,
                    &mut self.fields,
                    self.max_head,
                    method_is_head,
                    pass_through,
                )?
            {
                return Poll::Ready(Ok(head));
            }
            if self.read_buf.len() >= self.max_head {
                return Poll::Ready(Err(H1Error::HeadTooLarge));
            }
            let read =
                std::task::ready!(self.poll_read_into_buf(cx, FIRST_READ)).map_err(H1Error::Io)?;
            if read == 0 {
                return Poll::Ready(Err(H1Error::ClosedEarly));
            }
        }
    }

    /// Reads more body bytes into the buffer; 0 means the upstream closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let size = self.read_size;
        let read = std::task::ready!(self.poll_read_into_buf(cx, size))?;
        // A read that filled what was asked for suggests a large body: ask for more next time.
        if read >= size {
            self.read_size = (size * 2).min(MAX_READ);
        }
        Poll::Ready(Ok(read))
    }

    fn poll_read_into_buf(&mut self, cx: &mut Context<'_>, size: usize) -> Poll<io::Result<usize>> {
        crate::http1::rewind_if_empty(&mut self.read_buf);
        if self.read_buf.capacity() - self.read_buf.len() < size / 2 {
            self.read_buf.reserve(size);
        }
        let read = std::pin::pin!(self.io.read_buf(&mut self.read_buf));
        read.poll(cx)
    }
}

/// Methods a request of which may be sent twice (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests;
