//! Decoding a message body out of a read buffer, framed by length, by chunks or by the close.
//!
//! The decoder never reads the socket: it slices frames off the buffer (no copy) and says when it
//! needs more bytes, so the side that owns the connection decides how to read and what a close
//! means.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;

/// A chunk-size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer fields read at most.
const MAX_TRAILERS: usize = 64;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the peer closes (responses only).
    UntilClose,
}

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
    /// Until the peer closes.
    UntilClose,
    /// The body is complete.
    Done,
}

/// What one decoding step produced.
#[derive(Debug)]
pub enum Decoded {
    /// A data or trailers frame.
    Frame(Frame<Bytes>),
    /// The buffer holds no complete next step: read more, then decode again.
    NeedMore,
    /// The body is complete.
    End,
}

/// Why a body's bytes are not a valid body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub &'static str);

/// Walks one body through its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes still expected, when the framing says exactly.
    pub fn exact_remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(left) => Some(left),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The peer closed: fine for a body delimited by the close (now complete), a truncation for
    /// any other body that is not complete.
    pub fn on_close(&mut self) -> Result<(), DecodeError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(DecodeError("body truncated")),
        }
    }

    /// Takes the next frame off `buf`. `max_trailers` bounds the trailer section in bytes.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_trailers: usize,
    ) -> Result<Decoded, DecodeError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Length(left) | State::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), _) => State::Length(left),
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                    return Ok(Decoded::Frame(Frame::data(data)));
                }
                State::ChunkSize => match parse_chunk_size(buf)? {
                    Some((consumed, size)) => {
                        buf.advance(consumed);
                        self.state = if size == 0 {
                            State::Trailers
                        } else {
                            State::ChunkData(size)
                        };
                    }
                    None => return Ok(Decoded::NeedMore),
                },
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(DecodeError("chunk not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => match parse_trailers(buf, max_trailers)? {
                    Some((consumed, trailers)) => {
                        buf.advance(consumed);
                        self.state = State::Done;
                        return Ok(match trailers {
                            Some(trailers) => Decoded::Frame(Frame::trailers(trailers)),
                            None => Decoded::End,
                        });
                    }
                    None => return Ok(Decoded::NeedMore),
                },
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Frame(Frame::data(buf.split().freeze())));
                }
            }
        }
    }
}

/// A chunk-size line: 1 to 16 hex digits, optional whitespace and extensions, CRLF. `None`: need
/// more bytes. Strict where parsers disagree: a bare LF, a control byte in an extension, or text
/// between the size and `;` is an error.
fn parse_chunk_size(buf: &[u8]) -> Result<Option<(usize, u64)>, DecodeError> {
    let digits = buf.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > 16 {
        return Err(DecodeError("chunk size too large"));
    }
    if digits == buf.len() {
        return Ok(None);
    }
    if digits == 0 {
        return Err(DecodeError("chunk size"));
    }
    let size = buf[..digits].iter().fold(0u64, |size, digit| {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => digit - b'A' + 10,
        };
        (size << 4) | u64::from(value)
    });
    let mut in_extension = false;
    for (at, byte) in buf.iter().enumerate().skip(digits) {
        match byte {
            b'\r' => {
                return match buf.get(at + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((at + 2, size))),
                    Some(_) => Err(DecodeError("chunk-size line not ended by CRLF")),
                };
            }
            b'\n' => return Err(DecodeError("bare LF in a chunk-size line")),
            b';' => in_extension = true,
            b' ' | b'\t' => {}
            0..=0x1f | 0x7f => return Err(DecodeError("control byte in a chunk extension")),
            _ if in_extension => {}
            _ => return Err(DecodeError("chunk size")),
        }
        if at >= MAX_CHUNK_LINE {
            return Err(DecodeError("chunk-size line too long"));
        }
    }
    if buf.len() > MAX_CHUNK_LINE {
        return Err(DecodeError("chunk-size line too long"));
    }
    Ok(None)
}

/// The trailer section after the last chunk. `None`: need more bytes; `Some((n, None))`: no fields.
#[allow(clippy::type_complexity)]
fn parse_trailers(
    buf: &[u8],
    max_bytes: usize,
) -> Result<Option<(usize, Option<HeaderMap>)>, DecodeError> {
    if buf.starts_with(b"\r\n") {
        return Ok(Some((2, None)));
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((consumed, fields))) => {
            let mut trailers = HeaderMap::with_capacity(fields.len());
            for field in fields {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| DecodeError("trailer field name"))?;
                let value = HeaderValue::from_bytes(field.value)
                    .map_err(|_| DecodeError("trailer field value"))?;
                trailers.append(name, value);
            }
            Ok(Some((consumed, Some(trailers).filter(|t| !t.is_empty()))))
        }
        Ok(httparse::Status::Partial) if buf.len() > max_bytes => {
            Err(DecodeError("trailer section too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(DecodeError("trailer section")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        framing: Framing,
        wire: &[u8],
    ) -> Result<(Vec<u8>, Option<HeaderMap>), DecodeError> {
        let mut decoder = BodyDecoder::new(framing);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        // Feed one byte at a time: every split point must decode the same.
        for byte in wire {
            buf.extend_from_slice(&[*byte]);
            while let Decoded::Frame(frame) = decoder.decode(&mut buf, 1024)? {
                match frame.into_data() {
                    Ok(bytes) => data.extend_from_slice(&bytes),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                }
            }
        }
        if !decoder.is_done() {
            decoder.on_close()?;
        }
        Ok((data, trailers))
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let (data, trailers) = decode_all(
            Framing::Chunked,
            b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(data, b"abc0123456789");
        assert_eq!(trailers.unwrap()["x-t"], "1");
    }

    #[test]
    fn bad_chunk_framing_is_an_error() {
        for wire in [
            &b"x\r\n"[..],
            b"3\r\nabcd\r\n",
            b";\r\n",
            b"3\r\nabc\r\n0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(decode_all(Framing::Chunked, wire).is_err(), "{wire:?}");
        }
        let long = [b'1'; MAX_CHUNK_LINE + 10];
        assert!(decode_all(Framing::Chunked, &long).is_err());
    }

    #[test]
    fn length_bodies_stop_at_their_length_and_a_short_one_is_truncated() {
        let mut decoder = BodyDecoder::new(Framing::Length(3));
        let mut buf = BytesMut::from(&b"abcGET"[..]);
        let Decoded::Frame(frame) = decoder.decode(&mut buf, 1024).unwrap() else {
            panic!("a frame")
        };
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert!(decoder.is_done());
        assert_eq!(&buf[..], b"GET");
        assert!(decode_all(Framing::Length(5), b"abc").is_err());
        assert_eq!(decode_all(Framing::UntilClose, b"abc").unwrap().0, b"abc");
    }
}
