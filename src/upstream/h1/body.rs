//! A response body read straight from the upstream connection.
//!
//! Frames are slices of the connection's read buffer (no copy). When the body ends as framed,
//! with nothing after it and a persistent connection, [`H1Body::take_connection`] hands the
//! connection back for the pool; anything else (an error, bytes after the end, `Connection:
//! close`, a body delimited by the close) means it is dropped and closed.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::{Body, Frame, SizeHint};

use super::response::BodyFraming;
use super::{H1Connection, H1Error};
use crate::upstream::tls::UpstreamStream;

/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer fields read at most.
const MAX_TRAILERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes left.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk: this many bytes left.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: trailer fields, then a blank line.
    Trailers,
    /// Until the upstream closes.
    UntilClose,
    /// The body is complete.
    Done,
    /// `101`: no body; the connection belongs to the tunnel.
    Upgraded,
    /// The body failed (the error was yielded); the connection is gone.
    Failed,
}

/// The body of an HTTP/1.1 upstream response.
pub struct H1Body {
    connection: Option<Box<H1Connection>>,
    state: State,
    keep_alive: bool,
}

impl H1Body {
    pub(super) fn new(
        connection: Box<H1Connection>,
        framing: BodyFraming,
        keep_alive: bool,
    ) -> Self {
        let state = match framing {
            BodyFraming::Empty => State::Done,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::ChunkSize,
            BodyFraming::UntilClose => State::UntilClose,
            BodyFraming::Upgrade => State::Upgraded,
        };
        Self {
            connection: Some(connection),
            state,
            keep_alive,
        }
    }

    /// The connection, once the body has ended cleanly on a connection that may be reused.
    pub fn take_connection(&mut self) -> Option<Box<H1Connection>> {
        if self.state != State::Done || !self.keep_alive {
            return None;
        }
        let connection = self.connection.take()?;
        if !connection.read_buf.is_empty() {
            // Bytes after the response: the upstream is out of step with us; never reuse.
            tracing::debug!(
                extra = connection.read_buf.len(),
                "upstream sent bytes after the response; connection closed"
            );
            return None;
        }
        Some(connection)
    }

    /// After a `101`: the upstream's stream and whatever it sent after the head.
    pub fn into_upgraded(mut self) -> Option<(UpstreamStream, Bytes)> {
        if self.state != State::Upgraded {
            return None;
        }
        let connection = self.connection.take()?;
        Some((connection.io, connection.read_buf.freeze()))
    }

    fn fail(&mut self, error: H1Error) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.connection = None;
        self.state = State::Failed;
        self.keep_alive = false;
        Poll::Ready(Some(Err(error)))
    }
}

/// Reads more bytes; `Err(Truncated)` when the upstream closes before the body's end.
fn fill(connection: &mut H1Connection, cx: &mut Context<'_>) -> Poll<Result<(), H1Error>> {
    match ready!(connection.poll_fill(cx)) {
        Ok(0) => Poll::Ready(Err(H1Error::Truncated)),
        Ok(_) => Poll::Ready(Ok(())),
        Err(err) => Poll::Ready(Err(H1Error::Io(err))),
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        loop {
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut connection.read_buf;
            match this.state {
                State::Done | State::Upgraded | State::Failed => return Poll::Ready(None),
                State::Length(left) | State::ChunkData(left) => {
                    if buf.is_empty()
                        && let Err(err) = ready!(fill(connection, cx))
                    {
                        return this.fail(err);
                    }
                    let buf = &mut connection.read_buf;
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    this.state = match (this.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), _) => State::Length(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::ChunkSize => match parse_chunk_size(buf) {
                    Ok(Some((consumed, size))) => {
                        buf.advance(consumed);
                        this.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    Ok(None) => {
                        if let Err(err) = ready!(fill(connection, cx)) {
                            return this.fail(err);
                        }
                    }
                    Err(err) => return this.fail(err),
                },
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        if let Err(err) = ready!(fill(connection, cx)) {
                            return this.fail(err);
                        }
                        continue;
                    }
                    if &buf[..2] != b"\r\n" {
                        return this.fail(H1Error::Invalid("chunk not followed by CRLF"));
                    }
                    buf.advance(2);
                    this.state = State::ChunkSize;
                }
                State::Trailers => match parse_trailers(buf, connection.max_head) {
                    Ok(Some((consumed, trailers))) => {
                        connection.read_buf.advance(consumed);
                        this.state = State::Done;
                        if let Some(trailers) = trailers {
                            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                        }
                        return Poll::Ready(None);
                    }
                    Ok(None) => {
                        if let Err(err) = ready!(fill(connection, cx)) {
                            return this.fail(err);
                        }
                    }
                    Err(err) => return this.fail(err),
                },
                State::UntilClose => {
                    if buf.is_empty() {
                        match ready!(connection.poll_fill(cx)) {
                            Ok(0) => {
                                this.state = State::Done;
                                return Poll::Ready(None);
                            }
                            Ok(_) => {}
                            Err(err) => return this.fail(H1Error::Io(err)),
                        }
                    }
                    let data = connection.read_buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Upgraded)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(left) => SizeHint::with_exact(left),
            State::Done | State::Upgraded => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A chunk-size line: hex digits, optional extensions, CRLF. `None`: need more bytes.
fn parse_chunk_size(buf: &[u8]) -> Result<Option<(usize, u64)>, H1Error> {
    if buf.is_empty() {
        return Ok(None);
    }
    // httparse accepts a line without digits as size 0; a size must have at least one.
    if !buf[0].is_ascii_hexdigit() {
        return Err(H1Error::Invalid("chunk size"));
    }
    match httparse::parse_chunk_size(buf) {
        Ok(httparse::Status::Complete(parsed)) => Ok(Some(parsed)),
        Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
            Err(H1Error::Invalid("chunk-size line too long"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(H1Error::Invalid("chunk size")),
    }
}

/// The trailer section after the last chunk. `None`: need more bytes; `Some((n, None))`: no fields.
#[allow(clippy::type_complexity)]
fn parse_trailers(
    buf: &[u8],
    max_head: usize,
) -> Result<Option<(usize, Option<HeaderMap>)>, H1Error> {
    if buf.starts_with(b"\r\n") {
        return Ok(Some((2, None)));
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((consumed, fields))) => {
            let mut trailers = HeaderMap::with_capacity(fields.len());
            for field in fields {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| H1Error::Invalid("trailer field name"))?;
                let value = HeaderValue::from_bytes(field.value)
                    .map_err(|_| H1Error::Invalid("trailer field value"))?;
                trailers.append(name, value);
            }
            Ok(Some((consumed, Some(trailers).filter(|t| !t.is_empty()))))
        }
        Ok(httparse::Status::Partial) if buf.len() > max_head => {
            Err(H1Error::Invalid("trailer section too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(H1Error::Invalid("trailer section")),
    }
}
