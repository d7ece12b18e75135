//! Parsing a request head (RFC 9112 §2–3, §6), strictly: anything a lenient parser and a strict
//! one could read differently is refused, because a proxy that frames a request differently from
//! its upstream is how requests get smuggled.
//!
//! - The request line and fields are httparse's: no obs-fold, no whitespace before a field's
//!   colon, no control bytes in values.
//! - `Transfer-Encoding` must end in `chunked` (and is refused on HTTP/1.0); the edge refuses
//!   anything but exactly `chunked` after that.
//! - `Content-Length` must be digits only, one value per field, all fields equal; duplicates are
//!   kept as one.
//! - `Transfer-Encoding` and `Content-Length` together: framed by chunked, the length dropped, the
//!   connection closed after the response.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::http1::decode::Framing;
use crate::pipeline::fields::ClientFields;

/// Field lines a request head may have (as hyper allowed); more is a 431.
pub const MAX_FIELDS: usize = 100;

/// A parsed head and what the connection needs to know about it.
pub struct RequestHead {
    /// Method, target, version and fields.
    pub parts: http::request::Parts,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the client lets the connection carry another request.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field.
    pub upgrade: bool,
    /// `TE: trailers`: the client takes trailer fields after a chunked body.
    pub accepts_trailers: bool,
    /// Which fields the edge asks about are in the head.
    pub fields_seen: ClientFields,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Not a valid request head.
    Invalid(&'static str),
    /// The request line alone fills the head buffer.
    UriTooLong,
    /// The head is larger than the buffer, or has more than [`MAX_FIELDS`] fields.
    TooLarge,
}

/// Where a field's name and value lie in the head's bytes.
#[derive(Clone, Copy)]
pub struct Field {
    name: (usize, usize),
    value: (usize, usize),
}

/// Takes one request head off the front of `buf`. `Ok(None)`: not all of it has arrived yet.
/// `fields` is scratch space kept by the connection.
pub fn parse(
    buf: &mut BytesMut,
    max_head: usize,
    fields: &mut Vec<Field>,
) -> Result<Option<RequestHead>, HeadError> {
    // Uninitialised slots: zeroing 100 of them (3.2 KB) on every request costs more than the
    // parse of a small head.
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buf,
        &mut slots,
    );
    let (len, method, target, version) = match parsed {
        Ok(httparse::Status::Complete(len)) => {
            let start = buf.as_ptr() as usize;
            let offset = |bytes: &[u8]| {
                let at = bytes.as_ptr() as usize - start;
                (at, at + bytes.len())
            };
            fields.clear();
            for field in request.headers.iter() {
                fields.push(Field {
                    name: offset(field.name.as_bytes()),
                    value: offset(field.value),
                });
            }
            let method = Method::from_bytes(request.method.unwrap_or("").as_bytes())
                .map_err(|_| HeadError::Invalid("method"))?;
            let target = offset(request.path.unwrap_or("").as_bytes());
            let version = match request.version {
                Some(0) => Version::HTTP_10,
                _ => Version::HTTP_11,
            };
            (len, method, target, version)
        }
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                let line_ended = buf[..max_head].windows(2).any(|w| w == b"\r\n");
                return Err(if line_ended {
                    HeadError::TooLarge
                } else {
                    HeadError::UriTooLong
                });
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(err) => return Err(HeadError::Invalid(describe(err))),
    };
    if len > max_head {
        return Err(HeadError::TooLarge);
    }
    let head = buf.split_to(len).freeze();
    build(&head, method, target, version, fields).map(Some)
}

fn describe(err: httparse::Error) -> &'static str {
    match err {
        httparse::Error::HeaderName => "invalid field name",
        httparse::Error::HeaderValue => "invalid field value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request line",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::TooManyHeaders => "too many fields",
    }
}

fn build(
    head: &Bytes,
    method: Method,
    target: (usize, usize),
    version: Version,
    fields: &[Field],
) -> Result<RequestHead, HeadError> {
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.1))
        .map_err(|_| HeadError::Invalid("request target"))?;
    // Sized for the client's fields only: the fields Gantry adds on the way go beside the map to
    // an HTTP/1.1 upstream (`upstream::fields`), and a map rounded up for them cost a 1 KiB
    // allocation and its fill on every request.
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoded = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut upgrade_token = false;
    let mut expect_continue = false;
    let mut accepts_trailers = false;
    let mut fields_seen = ClientFields::NONE;
    for field in fields {
        let name = HeaderName::from_bytes(&head[field.name.0..field.name.1])
            .map_err(|_| HeadError::Invalid("invalid field name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(field.value.0..field.value.1))
            .map_err(|_| HeadError::Invalid("invalid field value"))?;
        fields_seen = fields_seen | ClientFields::of(&name);
        if name == header::CONTENT_LENGTH {
            let parsed = parse_length(value.as_bytes())?;
            if length.is_some_and(|seen| seen != parsed) {
                return Err(HeadError::Invalid("conflicting Content-Length values"));
            }
            if length.is_some() {
                // The same value again: keep one.
                continue;
            }
            length = Some(parsed);
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoded = true;
            // The last coding of the last field decides.
            chunked = value
                .as_bytes()
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONNECTION {
            for token in value.as_bytes().split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name == header::TE {
            accepts_trailers |= value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"trailers"));
        } else if name == header::EXPECT {
            expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    let mut keep_alive = match version {
        Version::HTTP_10 => keep_alive_token && !close,
        _ => !close,
    };
    let framing = if transfer_encoded {
        if version == Version::HTTP_10 {
            return Err(HeadError::Invalid("Transfer-Encoding on HTTP/1.0"));
        }
        if !chunked {
            return Err(HeadError::Invalid(
                "Transfer-Encoding not ending in chunked",
            ));
        }
        if length.is_some() {
            // RFC 9112 §6.3: chunked wins, and the connection must not carry another request.
            headers.remove(header::CONTENT_LENGTH);
            keep_alive = false;
        }
        Framing::Chunked
    } else {
        match length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let upgrade =
        upgrade_token && version == Version::HTTP_11 && headers.contains_key(header::UPGRADE);
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(RequestHead {
        parts,
        framing,
        keep_alive,
        expect_continue: expect_continue && version == Version::HTTP_11,
        upgrade,
        accepts_trailers,
        fields_seen,
    })
}

/// A `Content-Length` value: 1 to 19 digits, nothing else (no sign, no list, no spaces).
fn parse_length(value: &[u8]) -> Result<u64, HeadError> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Invalid("invalid Content-Length"));
    }
    value
        .iter()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(HeadError::Invalid("invalid Content-Length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Option<RequestHead>, HeadError> {
        let mut buf = BytesMut::from(text.as_bytes());
        parse(&mut buf, 8192, &mut Vec::new())
    }

    fn framing(text: &str) -> Result<(Framing, bool), HeadError> {
        parse_text(text).map(|head| {
            let head = head.expect("a whole head");
            (head.framing, head.keep_alive)
        })
    }

    #[test]
    fn a_head_is_parsed_and_the_rest_stays_in_the_buffer() {
        let mut buf =
            BytesMut::from(&b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-A: 2\r\n\r\nNEXT"[..]);
        let head = parse(&mut buf, 8192, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(head.parts.method, Method::GET);
        assert_eq!(head.parts.uri, "/a?b=1");
        assert_eq!(head.parts.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(head.framing, Framing::Empty);
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"NEXT");
    }

    #[test]
    fn a_partial_head_waits_and_an_oversized_one_is_refused() {
        assert!(
            parse_text("GET / HTTP/1.1\r\nHost: x\r\n")
                .unwrap()
                .is_none()
        );
        let mut long_line = BytesMut::from(format!("GET /{} HTTP/1.1", "a".repeat(200)).as_bytes());
        assert_eq!(
            parse(&mut long_line, 100, &mut Vec::new()).err(),
            Some(HeadError::UriTooLong)
        );
        let mut long_fields =
            BytesMut::from(format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(200)).as_bytes());
        assert_eq!(
            parse(&mut long_fields, 100, &mut Vec::new()).err(),
            Some(HeadError::TooLarge)
        );
        let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert_eq!(
            parse_text(&format!("GET / HTTP/1.1\r\n{many}\r\n")).err(),
            Some(HeadError::TooLarge)
        );
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = "POST / HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(
            framing(&format!("{h}Content-Length: 5\r\n\r\n")),
            Ok((Framing::Length(5), true))
        );
        assert_eq!(
            framing(&format!(
                "{h}Content-Length: 5\r\nContent-Length: 5\r\n\r\n"
            )),
            Ok((Framing::Length(5), true))
        );
        assert_eq!(
            framing(&format!("{h}Transfer-Encoding: chunked\r\n\r\n")),
            Ok((Framing::Chunked, true))
        );
        // Both framings: chunked, and no second request on this connection.
        assert_eq!(
            framing(&format!(
                "{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            )),
            Ok((Framing::Chunked, false))
        );
        for bad in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: 0x5\r\n",
            "Content-Length: 99999999999999999999\r\n",
            "Transfer-Encoding: xchunked\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n",
        ] {
            assert!(
                matches!(
                    framing(&format!("{h}{bad}\r\n")),
                    Err(HeadError::Invalid(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            framing("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Invalid(_))
        ));
    }

    #[test]
    fn malformed_lines_are_refused() {
        for bad in [
            "GET / HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse_text(bad), Err(HeadError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn connection_tokens_decide_keep_alive_and_upgrade() {
        let head = |text: &str| parse_text(text).unwrap().unwrap();
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        let ws =
            head("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(ws.upgrade && ws.keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n").upgrade);
        assert!(
            head("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
                .expect_continue
        );
    }
}
