//! A response body read straight from the upstream connection.
//!
//! Frames are slices of the connection's read buffer (no copy); the framing rules are the shared
//! [`BodyDecoder`]'s. When the body ends as framed, with nothing after it and a persistent
//! connection, [`H1Body::take_connection`] hands the connection back for the pool; anything else
//! (an error, bytes after the end, `Connection: close`, a body delimited by the close) means it is
//! dropped and closed.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::response::BodyFraming;
use super::{H1Connection, H1Error};
use crate::http1::decode::{BodyDecoder, Decoded, Framing};
use crate::http1::raw::RawFields;
use crate::upstream::tls::UpstreamStream;

/// The body of an HTTP/1.1 upstream response.
pub struct H1Body {
    connection: Option<Box<H1Connection>>,
    decoder: BodyDecoder,
    /// `101`: no body; the connection belongs to the tunnel.
    upgraded: bool,
    keep_alive: bool,
    /// The head's fields hold nothing for the handler's hygiene pass to remove.
    head_clean: bool,
    /// The head's fields, unparsed (the response's map is then empty).
    raw: Option<Box<RawFields>>,
}

impl H1Body {
    pub(super) fn new(
        connection: Box<H1Connection>,
        framing: BodyFraming,
        keep_alive: bool,
        head_clean: bool,
        raw: Option<Box<RawFields>>,
    ) -> Self {
        let decoding = match framing {
            BodyFraming::Empty | BodyFraming::Upgrade => Framing::Empty,
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked,
            BodyFraming::UntilClose => Framing::UntilClose,
        };
        Self {
            connection: Some(connection),
            decoder: BodyDecoder::new(decoding),
            upgraded: framing == BodyFraming::Upgrade,
            keep_alive,
            head_clean,
            raw,
        }
    }

    /// The head's fields as read, when they were passed through unparsed (see
    /// [`crate::http1::raw`]): the response's own map is then empty.
    pub fn raw_fields(&self) -> Option<&RawFields> {
        self.raw.as_deref()
    }

    /// [`Self::raw_fields`], to set the `Via` entry written after them.
    pub fn raw_fields_mut(&mut self) -> Option<&mut RawFields> {
        self.raw.as_deref_mut()
    }

    /// Whether the response's fields were read with the hop-by-hop ones left out and hold no
    /// `Gantry-*` field: `remove_hop_by_hop` would find nothing to remove. Never after a `101`.
    pub fn head_is_clean(&self) -> bool {
        self.head_clean
    }

    /// The connection, once the body has ended cleanly on a connection that may be reused.
    pub fn take_connection(&mut self) -> Option<Box<H1Connection>> {
        if !self.decoder.is_done() || self.upgraded || !self.keep_alive {
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
        if !self.upgraded {
            return None;
        }
        let connection = self.connection.take()?;
        Some((connection.io, connection.read_buf.freeze()))
    }

    fn fail(&mut self, error: H1Error) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.connection = None;
        self.keep_alive = false;
        Poll::Ready(Some(Err(error)))
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
        if this.upgraded {
            return Poll::Ready(None);
        }
        loop {
            // No connection: the body failed (and said so) or was handed back.
            let Some(connection) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            match this
                .decoder
                .decode(&mut connection.read_buf, connection.max_head)
            {
                Ok(Decoded::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
                Err(err) => return this.fail(H1Error::Invalid(err.0)),
            }
            match ready!(connection.poll_fill(cx)) {
                Ok(0) => {
                    if this.decoder.on_close().is_err() {
                        return this.fail(H1Error::Truncated);
                    }
                }
                Ok(_) => {}
                Err(err) => return this.fail(H1Error::Io(err)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.upgraded || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        if self.upgraded {
            return SizeHint::with_exact(0);
        }
        self.decoder
            .exact_remaining()
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}
