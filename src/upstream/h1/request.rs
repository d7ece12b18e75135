//! Writing a request: the head, then the body framed by `Content-Length` or chunked.
//!
//! The body's framing is decided once, from the body and the head (as hyper's client does): no
//! body at all when the body is already at its end; `Content-Length` when the size is known (a
//! client's `Content-Length`, or a buffered body); chunked otherwise. A body that yields more or
//! fewer bytes than its `Content-Length` is not sent on as something else: the exchange fails and
//! the connection is closed, so the upstream never reads a request boundary that is not there.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http_body::Body;
use tokio::io::AsyncWrite;

use super::H1Error;
use crate::handler::body::RequestBody;
use crate::upstream::fields::OutgoingFields;

/// Room reserved for a request head before encoding it.
const HEAD_ROOM: usize = 1024;
/// The largest head buffer a connection keeps for its next request.
const HEAD_KEPT: usize = 8 * 1024;

/// How the body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body bytes follow the head.
    None,
    /// Exactly this many bytes are still to be written.
    Length(u64),
    /// Chunks, then the last chunk (and trailers).
    Chunked,
}

/// Writes one request: owns the encoded head and the frame being written.
pub(super) struct RequestWriter {
    framing: Framing,
    /// Bytes before the current data: the head and/or a chunk-size line.
    prefix: BytesMut,
    /// The current data frame.
    data: Bytes,
    /// Bytes after the current data (a chunk's CRLF).
    suffix: &'static [u8],
    /// The body has ended (or there is none); only what is buffered remains to be written.
    body_done: bool,
    wrote_any: bool,
    /// A frame was taken from the body: the body can no longer be sent again from its start.
    took_body: bool,
}

impl RequestWriter {
    /// Decides the framing (adjusting `Content-Length`/`Transfer-Encoding` in `parts`) and encodes
    /// the head into `buf` (the connection's, emptied: its room is reused).
    /// `extra`: the fields Gantry adds beside the map (`Host`, forwarding, trace, deadline),
    /// written as bytes: no `HeaderValue` is built for them and no map insert hashes them.
    pub(super) fn new(
        parts: &mut Parts,
        body: &RequestBody,
        mut buf: BytesMut,
        extra: &OutgoingFields<'_>,
    ) -> Self {
        let framing = decide_framing(parts, body);
        buf.clear();
        // Room for a usual head; a larger one grows the buffer, which keeps its size.
        buf.reserve(HEAD_ROOM);
        let mut prefix = buf;
        encode_head(parts, extra, &mut prefix);
        Self {
            framing,
            prefix,
            data: Bytes::new(),
            suffix: b"",
            body_done: framing == Framing::None,
            wrote_any: false,
            took_body: false,
        }
    }

    /// The head buffer, emptied, for the connection's next request; a buffer grown past
    /// [`HEAD_KEPT`] by an unusually large head is let go (an idle connection keeps it).
    pub(super) fn into_buffer(self) -> BytesMut {
        let mut buf = self.prefix;
        buf.clear();
        // Takes back the room before the written bytes, so `capacity` is the whole buffer.
        buf.reserve(HEAD_ROOM);
        if buf.capacity() > HEAD_KEPT {
            return BytesMut::new();
        }
        buf
    }

    /// Everything, the end of the body included, has been written.
    pub(super) fn finished(&self) -> bool {
        self.body_done && self.prefix.is_empty() && self.data.is_empty() && self.suffix.is_empty()
    }

    /// Some byte of the request reached the socket.
    pub(super) fn wrote_any(&self) -> bool {
        self.wrote_any
    }

    /// Some frame of the body was taken from it (and may be lost with this connection).
    pub(super) fn took_body(&self) -> bool {
        self.took_body
    }

    /// The request carries no body: nothing of it depends on the client's stream.
    pub(super) fn bodiless(&self) -> bool {
        self.framing == Framing::None
    }

    /// Writes as much as can be written now. The first body frame, when it is already there, goes
    /// out in the same write as the head.
    pub(super) fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
        body: &mut RequestBody,
    ) -> Poll<Result<(), H1Error>> {
        loop {
            if self.data.is_empty() && self.suffix.is_empty() && !self.body_done {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(frame) => self.take_frame(frame)?,
                    Poll::Pending if self.prefix.is_empty() => return Poll::Pending,
                    Poll::Pending => {}
                }
            }
            if self.prefix.is_empty() && self.data.is_empty() && self.suffix.is_empty() {
                if self.body_done {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            ready!(self.poll_flush_pending(cx, io)).map_err(H1Error::Io)?;
        }
    }

    /// Frames one item of the body.
    fn take_frame(
        &mut self,
        frame: Option<Result<http_body::Frame<Bytes>, crate::handler::body::BodyError>>,
    ) -> Result<(), H1Error> {
        let frame = match frame {
            None => return self.end_body(None),
            Some(Err(_)) => return Err(H1Error::RequestBody("the client's body stream failed")),
            Some(Ok(frame)) => frame,
        };
        self.took_body = true;
        let frame = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => return self.end_body(frame.into_trailers().ok()),
        };
        if frame.is_empty() {
            return Ok(());
        }
        match &mut self.framing {
            Framing::Length(left) => {
                let len = frame.len() as u64;
                if len > *left {
                    return Err(H1Error::RequestBody("longer than its Content-Length"));
                }
                *left -= len;
                self.data = frame;
            }
            Framing::Chunked => {
                push_chunk_size(&mut self.prefix, frame.len());
                self.data = frame;
                self.suffix = b"\r\n";
            }
            Framing::None => {
                return Err(H1Error::RequestBody("a body where none was announced"));
            }
        }
        Ok(())
    }

    /// The body ended (with trailers, maybe): check the length, write the last chunk.
    fn end_body(&mut self, trailers: Option<http::HeaderMap>) -> Result<(), H1Error> {
        self.body_done = true;
        match self.framing {
            Framing::Length(0) | Framing::None => Ok(()),
            Framing::Length(_) => Err(H1Error::RequestBody("shorter than its Content-Length")),
            Framing::Chunked => {
                self.prefix.extend_from_slice(b"0\r\n");
                for (name, value) in trailers.iter().flatten() {
                    self.prefix.extend_from_slice(name.as_str().as_bytes());
                    self.prefix.extend_from_slice(b": ");
                    self.prefix.extend_from_slice(value.as_bytes());
                    self.prefix.extend_from_slice(b"\r\n");
                }
                self.prefix.extend_from_slice(b"\r\n");
                Ok(())
            }
        }
    }

    /// Writes prefix, data and suffix (one vectored write when the socket takes it all).
    fn poll_flush_pending<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
    ) -> Poll<io::Result<()>> {
        while !(self.prefix.is_empty() && self.data.is_empty() && self.suffix.is_empty()) {
            let slices = [
                IoSlice::new(&self.prefix),
                IoSlice::new(&self.data),
                IoSlice::new(self.suffix),
            ];
            let written = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.wrote_any = true;
            self.advance(written);
        }
        Poll::Ready(Ok(()))
    }

    fn advance(&mut self, mut written: usize) {
        let from_prefix = written.min(self.prefix.len());
        self.prefix.advance(from_prefix);
        written -= from_prefix;
        let from_data = written.min(self.data.len());
        self.data.advance(from_data);
        written -= from_data;
        self.suffix = &self.suffix[written.min(self.suffix.len())..];
    }
}

/// Decides how the body is framed and makes the head say so.
fn decide_framing(parts: &mut Parts, body: &RequestBody) -> Framing {
    // Hop-by-hop removal already took the client's Transfer-Encoding; never trust one here. A
    // look at the names costs less than the hash of a removal that finds nothing.
    if parts
        .headers
        .keys()
        .any(|name| name == header::TRANSFER_ENCODING)
    {
        parts.headers.remove(header::TRANSFER_ENCODING);
    }
    if body.is_end_stream() {
        // A client's `Content-Length: 0` stays; no header is invented for a bodiless request.
        return Framing::None;
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared {
        return Framing::Length(length);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(length) = body.size_hint().exact() {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        return Framing::Length(length);
    }
    // A GET body of unknown length (a client's chunked GET) is not forwarded: many servers never
    // read a body on GET, and would take the chunks for the next request (as hyper's client does).
    if matches!(parts.method, Method::GET | Method::HEAD | Method::CONNECT) {
        return Framing::None;
    }
    parts.headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    Framing::Chunked
}

/// A chunk-size line: the length in hex and CRLF (no allocation: chunks are many).
fn push_chunk_size(out: &mut BytesMut, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0_u8; 16];
    let mut at = digits.len();
    let mut rest = len;
    loop {
        at -= 1;
        digits[at] = HEX[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// `METHOD path?query HTTP/1.1`, `Host` when `extra` replaces it, the fields as they are, the
/// fields of `extra`, and the blank line.
fn encode_head(parts: &Parts, extra: &OutgoingFields<'_>, out: &mut BytesMut) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    extra.write_h1_host(out);
    let skip_host = extra.replaces_host();
    for (name, value) in &parts.headers {
        if skip_host && name == header::HOST {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    extra.write_h1(out);
    out.extend_from_slice(b"\r\n");
}
