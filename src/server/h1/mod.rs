//! Gantry's HTTP/1.1 server: one task per client connection reads a request head, runs the edge
//! on it, writes the answer, and loops while the connection may carry another request.
//!
//! Why not hyper's server here: it was the largest part of the CPU a proxied request cost
//! (callgrind: about a quarter of the instructions, in its dispatcher, its buffers and its header
//! map conversions). Here the head is parsed by httparse straight into the request's header map
//! (values are slices of the read buffer, not copies), the answer's head is encoded into one
//! write buffer together with a small body, and there is no dispatcher between the connection
//! and the request's future.
//!
//! The rules, besides those of [`head`]:
//! - A head must arrive whole within `header_read_timeout` of the connection opening, or of the
//!   previous answer (an idle keep-alive connection waits the same): a partial head gets a 408,
//!   a silent connection is just closed. Like [`IdleIo`], the timer ticks every quarter of the
//!   timeout instead of reading the clock for every request, so the 408 or close comes between
//!   `header_read_timeout` and `1.25 × header_read_timeout`, never before.
//! - A head that cannot be parsed gets a problem+json 400 (414/431 when too large) and the
//!   connection is closed: the bytes after it cannot be trusted to start a request.
//! - While a request is being answered, the connection watches for the client closing (once the
//!   request body is read) and drops the request's future if it does, as hyper did.
//! - A body the handler did not read is read and discarded after the answer (up to
//!   [`DRAIN_LIMIT`]), so the connection can carry the next request; a longer or broken one, or
//!   one the client was never told to send (`Expect: 100-continue`), closes the connection.
//! - When the listener drains, the request in flight is answered and the connection closed; an
//!   idle one is closed at once.
//! - A `101` hands the stream, and whatever the client sent after its request, to the upgrade.
//! - The HTTP/2 preface on a cleartext listener that also speaks h2c hands the connection to
//!   hyper's HTTP/2 server.

mod body;
mod head;
mod response;

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Poll, ready};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Fuse;
use http::header::HeaderName;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use body::H1RequestBody;
use body::{SharedWire, Wire, lock};
use response::{Answering, DateCache, OutFraming};

use super::drain::DrainWatch;
#[cfg(doc)]
use super::idle::IdleIo;
use super::idle::{TICKS, Ticker};
use super::incoming::{BoxIo, ClientBody, H1UpgradeSlot};
use super::prefixed::Prefixed;
use crate::error::GatewayError;
use crate::handler::body::ResponseBody;
use crate::http1::decode::Framing;
use crate::observe::request_id::RequestId;
use crate::pipeline::edge::{self, EdgeState};
use crate::pipeline::headers::Peer;

/// An unread request body up to this size is read and discarded after the answer, to keep the
/// connection; a longer one closes it.
pub const DRAIN_LIMIT: u64 = 256 * 1024;
/// Body bytes of this size or more are written from their own buffer instead of being copied
/// behind the head.
const COPY_LIMIT: usize = 16 * 1024;
/// The write buffer is flushed once it holds this much.
const FLUSH_AT: usize = 64 * 1024;
/// After closing our side with unread request bytes in flight, how long the rest is read and
/// discarded so the client receives the answer before the reset that unread data would cause.
const LINGER: Duration = Duration::from_secs(1);
/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Settings of one connection, from the listener and the current limits.
#[derive(Debug, Clone)]
pub struct H1Options {
    /// The listener's name, for the metric of refused heads.
    pub listener: Arc<str>,
    /// The largest request head (the configured URI and header limits, plus headroom so the edge
    /// can answer moderate excess with its own 414/431).
    pub max_head: usize,
    /// The configured `max_uri_bytes` and `max_header_bytes`, named in a 414/431 answered here.
    pub limits: (u64, u64),
    /// How long a request head may take to arrive (also bounds an idle keep-alive connection).
    pub header_read_timeout: Duration,
    /// Whether the HTTP/2 preface hands the connection to the h2c server.
    pub sniff_h2: bool,
}

/// How a connection ended.
pub enum Ended {
    /// Closed (or handed to an upgrade).
    Closed,
    /// The client spoke HTTP/2: the stream, with the bytes already read in front.
    H2(Prefixed<BoxIo>),
}

/// What waiting for a request head came to.
enum HeadWait {
    Head(head::RequestHead),
    /// The client closed (or the stream failed) with no partial head worth an answer.
    Closed,
    Rejected(GatewayError),
    /// Nothing arrived and the listener is draining.
    Draining,
    H2,
}

/// Serves one client connection until it closes.
pub async fn serve(
    io: BoxIo,
    state: Arc<EdgeState>,
    peer: Arc<Peer>,
    drain: DrainWatch,
    options: H1Options,
) -> Ended {
    let mut connection = Connection::new(io, options);
    // One wait for the listener's shutdown for the whole connection, not one per request.
    let mut watch = drain.clone();
    let mut draining = pin!(async move { watch.draining().await }.fuse());
    let mut first = true;
    loop {
        let head = match connection.wait_for_head(draining.as_mut(), first).await {
            HeadWait::Head(head) => head,
            HeadWait::Closed | HeadWait::Draining => return Ended::Closed,
            HeadWait::Rejected(error) => {
                state
                    .runtime
                    .load()
                    .metrics
                    .head_refused(&connection.options.listener, error.slug());
                connection.reject(error).await;
                return Ended::Closed;
            }
            HeadWait::H2 => return connection.into_h2(),
        };
        first = false;
        match connection
            .exchange(
                head,
                &state,
                &peer,
                drain.is_draining() || connection.draining,
            )
            .await
        {
            Next::KeepAlive => {}
            Next::Close => return Ended::Closed,
        }
    }
}

/// Whether the connection goes on after an exchange.
enum Next {
    KeepAlive,
    Close,
}

struct Connection {
    wire: SharedWire,
    /// The answer being written: head, then small body frames.
    out: Vec<u8>,
    fields: Vec<head::Field>,
    date: DateCache,
    options: H1Options,
    /// The head-read timer, ticking every quarter of `header_read_timeout`.
    timer: Ticker,
    /// Ticks seen while waiting for the current head; the first may have fired before the wait
    /// began, so the head is late once it exceeds [`TICKS`].
    head_ticks: u32,
    /// The listener is shutting down: no request after the one in flight.
    draining: bool,
}

impl Connection {
    fn new(io: BoxIo, options: H1Options) -> Self {
        let timer = Ticker::new(options.header_read_timeout / TICKS);
        Self {
            wire: Arc::new(Mutex::new(Wire::new(io, options.max_head))),
            out: Vec::new(),
            fields: Vec::new(),
            date: DateCache::new(),
            options,
            timer,
            head_ticks: 0,
            draining: false,
        }
    }

    /// Reads until a whole request head is in, the client leaves, the timer fires or the
    /// listener drains.
    async fn wait_for_head<D: Future<Output = ()>>(
        &mut self,
        mut draining: Pin<&mut Fuse<D>>,
        first: bool,
    ) -> HeadWait {
        let mut waiting = false;
        poll_fn(|cx| {
            loop {
                let mut wire = lock(&self.wire);
                if !wire.read_buf.is_empty() {
                    if first && self.options.sniff_h2 {
                        let n = wire.read_buf.len().min(H2_PREFACE.len());
                        if wire.read_buf[..n] == H2_PREFACE[..n] {
                            if n == H2_PREFACE.len() {
                                return Poll::Ready(HeadWait::H2);
                            }
                        } else if let Some(parsed) =
                            parse(&mut wire, &mut self.fields, &self.options)
                        {
                            return Poll::Ready(parsed);
                        }
                    } else if let Some(parsed) = parse(&mut wire, &mut self.fields, &self.options) {
                        return Poll::Ready(parsed);
                    }
                }
                match wire.poll_read_more(cx) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(HeadWait::Closed),
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Pending => {}
                }
                let idle = wire.read_buf.is_empty();
                drop(wire);
                if draining.as_mut().poll(cx).is_ready() {
                    self.draining = true;
                }
                if idle && self.draining {
                    return Poll::Ready(HeadWait::Draining);
                }
                if !waiting {
                    waiting = true;
                    self.head_ticks = 0;
                }
                while self.timer.poll_tick(cx) {
                    self.head_ticks += 1;
                    if self.head_ticks > TICKS {
                        return Poll::Ready(if idle {
                            HeadWait::Closed
                        } else {
                            HeadWait::Rejected(GatewayError::RequestHeadTimeout {
                                after: self.options.header_read_timeout,
                            })
                        });
                    }
                }
                return Poll::Pending;
            }
        })
        .await
    }

    /// The stream and what was read of it, for hyper's HTTP/2 server.
    fn into_h2(self) -> Ended {
        let mut wire = lock(&self.wire);
        let prefix = wire.read_buf.split().freeze();
        match wire.io.take() {
            Some(io) => Ended::H2(Prefixed::new(prefix, io)),
            None => Ended::Closed,
        }
    }

    /// Answers a head that never became a request, then closes.
    async fn reject(&mut self, error: GatewayError) {
        let request_id = RequestId::generate();
        let id = request_id.as_str();
        tracing::debug!(request_id = id, status = error.status().as_u16(), kind = error.slug(), error = %error, "request head refused");
        let response = error
            .into_traced_response("/", id, None, false)
            .map(ResponseBody::full);
        let answering = Answering {
            head_request: false,
            version: http::Version::HTTP_11,
            keep_alive: false,
            accepts_trailers: false,
        };
        let _ = self.respond(response, answering, None, None).await;
        self.close(true).await;
    }

    /// One request and its answer.
    async fn exchange(
        &mut self,
        head: head::RequestHead,
        state: &Arc<EdgeState>,
        peer: &Arc<Peer>,
        draining: bool,
    ) -> Next {
        let head::RequestHead {
            parts,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
            accepts_trailers,
            fields_seen,
        } = head;
        lock(&self.wire).start_request(framing, expect_continue);
        let answering = Answering {
            head_request: parts.method == Method::HEAD,
            version: parts.version,
            keep_alive: keep_alive && !draining,
            accepts_trailers,
        };
        let body = match framing {
            Framing::Empty => ClientBody::Empty,
            _ => ClientBody::H1(H1RequestBody::new(Arc::clone(&self.wire))),
        };
        let mut request = Request::from_parts(parts, body);
        let upgrade = upgrade.then(|| {
            let (sender, receiver) = oneshot::channel();
            request
                .extensions_mut()
                .insert(H1UpgradeSlot(Arc::new(Mutex::new(Some(receiver)))));
            sender
        });
        // Pinned where it is built: the request's future is large, and is never moved.
        let handling = pin!(edge::answer(
            Arc::clone(state),
            Arc::clone(peer),
            request,
            fields_seen,
            true,
        ));
        let Some(answer) = self.answer(handling).await else {
            // The client left before the answer: the request's future was dropped (cancelled).
            return Next::Close;
        };
        let (name, value) = &answer.request_id;
        match self
            .respond(
                answer.response,
                answering,
                upgrade,
                Some((name, value.as_bytes())),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                // Linger only when upload bytes may still be on their way.
                let unread = !lock(&self.wire).body.is_done();
                self.close(unread).await;
                return Next::Close;
            }
        }
        if self.finish_request_body().await {
            Next::KeepAlive
        } else {
            self.close(false).await;
            Next::Close
        }
    }

    /// Runs the request's future; `None` when the client closed the connection first.
    async fn answer<F: Future>(&mut self, mut future: Pin<&mut F>) -> Option<F::Output> {
        let max_head = self.options.max_head;
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            // Only once the body has been read: before that its reader owns the socket's reads.
            let mut wire = lock(&self.wire);
            while wire.body.is_done() && wire.read_buf.len() < max_head && wire.io.is_some() {
                match wire.poll_read_more(cx) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                    // A pipelined request: kept for later.
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Writes the answer. `Ok(true)`: the connection may carry another request (as far as the
    /// answer goes); `Ok(false)`: it must close (or was handed to an upgrade).
    /// `request_id`: written into the head, replacing the map's fields of that name.
    async fn respond(
        &mut self,
        response: Response<ResponseBody>,
        mut answering: Answering,
        upgrade: Option<oneshot::Sender<BoxIo>>,
        request_id: Option<(&HeaderName, &[u8])>,
    ) -> io::Result<bool> {
        let (mut parts, mut body) = response.into_parts();
        {
            let mut wire = lock(&self.wire);
            wire.responded = true;
            let unread_too_long = !wire.body.is_done()
                && (wire.broken
                    || wire.continue_unsent()
                    || wire.body.exact_remaining().is_some_and(|n| n > DRAIN_LIMIT));
            if unread_too_long {
                answering.keep_alive = false;
            }
        }
        self.out.clear();
        let (framing, keep_alive) = response::encode_head(
            &mut self.out,
            &mut parts,
            answering,
            &body.size_hint(),
            &mut self.date,
            (request_id, body.raw_fields()),
        );
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            self.flush().await?;
            let mut wire = lock(&self.wire);
            let early = wire.read_buf.split().freeze();
            if let (Some(sender), Some(io)) = (upgrade, wire.io.take()) {
                let _ = sender.send(Box::new(Prefixed::new(early, io)));
            }
            return Ok(false);
        }
        if framing == OutFraming::None || body.is_end_stream() {
            drop(body);
            if let OutFraming::Length(n) = framing
                && n > 0
            {
                // A declared length and no bytes to send: the answer cannot be completed.
                self.flush().await?;
                return Ok(false);
            }
            if framing == OutFraming::Chunked {
                response::last_chunk(&mut self.out, None);
            }
            self.flush().await?;
            return Ok(keep_alive && framing != OutFraming::UntilClose);
        }
        let trailers = answering.accepts_trailers && framing == OutFraming::Chunked;
        let complete = self.write_body(&mut body, framing, trailers).await?;
        Ok(complete && keep_alive && framing != OutFraming::UntilClose)
    }

    /// Streams the body after its head. `Ok(false)`: it failed or did not match its length, and
    /// the client saw it cut short.
    async fn write_body(
        &mut self,
        body: &mut ResponseBody,
        framing: OutFraming,
        send_trailers: bool,
    ) -> io::Result<bool> {
        let mut trailers = None;
        let mut left = match framing {
            OutFraming::Length(n) => Some(n),
            _ => None,
        };
        loop {
            let next = poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending if !self.out.is_empty() => Poll::Ready(Err(())),
                Poll::Pending => Poll::Pending,
                Poll::Ready(frame) => Poll::Ready(Ok(frame)),
            })
            .await;
            let frame = match next {
                // Nothing more right now: send what is waiting.
                Err(()) => {
                    self.flush().await?;
                    continue;
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    // Passed on as a cut-short answer: what was sent goes out, then the close.
                    self.flush().await?;
                    return Ok(false);
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    // Trailers go out only to a client that asked for them, after the last chunk.
                    if send_trailers {
                        trailers = frame.into_trailers().ok();
                    }
                    continue;
                }
            };
            if data.is_empty() {
                continue;
            }
            if let Some(left) = left.as_mut() {
                if data.len() as u64 > *left {
                    tracing::debug!("response body longer than its Content-Length; cut short");
                    self.flush().await?;
                    return Ok(false);
                }
                *left -= data.len() as u64;
            }
            let chunked = framing == OutFraming::Chunked;
            if chunked {
                response::chunk_prefix(&mut self.out, data.len());
            }
            if data.len() >= COPY_LIMIT {
                let suffix: &[u8] = if chunked { b"\r\n" } else { b"" };
                let out = std::mem::take(&mut self.out);
                let written = write_all(&self.wire, &[&out, &data, suffix]).await;
                self.out = out;
                self.out.clear();
                written?;
            } else {
                self.out.extend_from_slice(&data);
                if chunked {
                    self.out.extend_from_slice(b"\r\n");
                }
                if self.out.len() >= FLUSH_AT {
                    self.flush().await?;
                }
            }
            // The declared length is complete and the body says it has ended: no poll to learn
            // what it already told (a body that has more to say is polled, and cut short).
            if left == Some(0) && body.is_end_stream() {
                break;
            }
        }
        if left.is_some_and(|left| left > 0) {
            tracing::debug!("response body shorter than its Content-Length; cut short");
            self.flush().await?;
            return Ok(false);
        }
        if framing == OutFraming::Chunked {
            response::last_chunk(&mut self.out, trailers.as_ref());
        }
        self.flush().await?;
        Ok(true)
    }

    /// After the answer: reads and discards what is left of the request body. `true`: the
    /// connection is at the start of the next request.
    async fn finish_request_body(&mut self) -> bool {
        {
            let wire = lock(&self.wire);
            if wire.body.is_done() {
                return !wire.broken && wire.io.is_some();
            }
        }
        let mut discarded = 0u64;
        let deadline = Instant::now() + self.options.header_read_timeout;
        let drained = tokio::time::timeout_at(
            deadline,
            poll_fn(|cx| {
                let mut wire = lock(&self.wire);
                if wire.broken || wire.io.is_none() {
                    return Poll::Ready(false);
                }
                loop {
                    let max_trailers = self.options.max_head;
                    let wire = &mut *wire;
                    match wire.body.decode(&mut wire.read_buf, max_trailers) {
                        Ok(crate::http1::decode::Decoded::End) => return Poll::Ready(true),
                        Ok(crate::http1::decode::Decoded::Frame(frame)) => {
                            discarded += frame.data_ref().map_or(0, |d| d.len() as u64);
                            if discarded > DRAIN_LIMIT {
                                return Poll::Ready(false);
                            }
                        }
                        Ok(crate::http1::decode::Decoded::NeedMore) => {
                            match ready!(wire.poll_read_more(cx)) {
                                Ok(0) | Err(_) => return Poll::Ready(false),
                                Ok(_) => {}
                            }
                        }
                        Err(_) => return Poll::Ready(false),
                    }
                }
            }),
        )
        .await;
        drained.unwrap_or(false)
    }

    /// Closes our side. With unread request bytes possibly in flight, keeps reading (and
    /// discarding) for [`LINGER`], so the kernel does not answer them with a reset that could
    /// destroy the answer before the client read it.
    async fn close(&mut self, linger: bool) {
        let shut = poll_fn(|cx| match lock(&self.wire).io.as_mut() {
            Some(io) => Pin::new(io).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        })
        .await;
        if shut.is_err() || !linger {
            return;
        }
        let _ = tokio::time::timeout(
            LINGER,
            poll_fn(|cx| {
                let mut wire = lock(&self.wire);
                loop {
                    wire.read_buf.clear();
                    match ready!(wire.poll_read_more(cx)) {
                        Ok(0) | Err(_) => return Poll::Ready(()),
                        Ok(_) => {}
                    }
                }
            }),
        )
        .await;
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = write_all(&self.wire, &[&self.out]).await;
        self.out.clear();
        written
    }
}

/// Parses the buffered bytes; `None`: the head is not all there yet.
fn parse(wire: &mut Wire, fields: &mut Vec<head::Field>, options: &H1Options) -> Option<HeadWait> {
    let (max_uri, max_headers) = options.limits;
    match head::parse(&mut wire.read_buf, options.max_head, fields) {
        Ok(Some(head)) => Some(HeadWait::Head(head)),
        Ok(None) => None,
        Err(head::HeadError::Invalid(reason)) => {
            Some(HeadWait::Rejected(GatewayError::MalformedRequest {
                reason,
            }))
        }
        Err(head::HeadError::UriTooLong) => Some(HeadWait::Rejected(GatewayError::UriTooLong {
            limit: max_uri,
        })),
        Err(head::HeadError::TooLarge) => Some(HeadWait::Rejected(GatewayError::HeadersTooLarge {
            limit: max_headers,
        })),
    }
}

/// Writes all of `parts`, in as few writes as the stream allows.
async fn write_all(wire: &SharedWire, parts: &[&[u8]]) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0usize;
    poll_fn(|cx| {
        while done < total {
            let mut slices = [IoSlice::new(&[]); 3];
            let mut count = 0;
            let mut skip = done;
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                if count < slices.len() {
                    slices[count] = IoSlice::new(&part[skip..]);
                    count += 1;
                }
                skip = 0;
            }
            let written = ready!(lock(wire).poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            done += written;
        }
        Poll::Ready(Ok(()))
    })
    .await
}
