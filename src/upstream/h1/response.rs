//! Reading a response head: status, fields, and how the body that follows is framed.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Response, StatusCode, Version};

use super::H1Error;

/// More fields than this make the head too large (hyper's default too).
const MAX_FIELDS: usize = 100;

/// How the response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// No body (HEAD, 204, 304, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the upstream closes.
    UntilClose,
    /// `101 Switching Protocols`: the connection now carries another protocol.
    Upgrade,
}

/// A parsed final response head.
pub(super) struct ResponseHead {
    parts: Parts,
    framing: BodyFraming,
    /// The connection may carry another request after this response.
    pub(super) keep_alive: bool,
}

impl ResponseHead {
    pub(super) fn into_parts(self) -> (Parts, BodyFraming) {
        (self.parts, self.framing)
    }
}

/// Parses the head at the start of `buf`, skipping interim (1xx) responses other than 101.
/// `None`: more bytes are needed. Consumes the head's bytes from `buf`.
/// `fields` is scratch space kept by the connection (no allocation per response).
pub(super) fn parse(
    buf: &mut BytesMut,
    fields: &mut Vec<Field>,
    max_head: usize,
    method_is_head: bool,
) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        let Some((parsed, len)) = parse_fields(buf, fields, max_head)? else {
            return Ok(None);
        };
        let head = buf.split_to(len).freeze();
        let code = parsed.status.as_u16();
        if (100..200).contains(&code) && code != 101 {
            // 100 Continue (never asked for: Expect is not forwarded), 103 Early Hints: skipped.
            if buf.is_empty() {
                return Ok(None);
            }
            continue;
        }
        let mut headers = HeaderMap::with_capacity(fields.len());
        for (name, start, end) in fields.drain(..) {
            let value = HeaderValue::from_maybe_shared(head.slice(start..end))
                .map_err(|_| H1Error::Invalid("a field value with forbidden bytes"))?;
            headers.append(name, value);
        }
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = parsed.status;
        parts.version = parsed.version;
        let (framing, mut keep_alive) = framing(&mut headers, parsed.status, method_is_head)?;
        keep_alive &= connection_persists(&headers, parsed.version);
        parts.headers = headers;
        return Ok(Some(ResponseHead {
            parts,
            framing,
            keep_alive,
        }));
    }
}

/// A field's name, and its value's byte range in the head.
pub(super) type Field = (HeaderName, usize, usize);

struct ParsedStatus {
    status: StatusCode,
    version: Version,
}

/// httparse over the buffer; field values are kept as ranges so they can be sliced out of the
/// head without copying once the head is split off.
fn parse_fields(
    buf: &BytesMut,
    fields: &mut Vec<Field>,
    max_head: usize,
) -> Result<Option<(ParsedStatus, usize)>, H1Error> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => {
            return Err(H1Error::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(H1Error::HeadTooLarge),
        Err(_) => return Err(H1Error::Invalid("not an HTTP/1.1 response head")),
    };
    if len > max_head {
        return Err(H1Error::HeadTooLarge);
    }
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(H1Error::Invalid("status code"))?;
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(H1Error::Invalid("HTTP version")),
    };
    let base = buf.as_ptr() as usize;
    fields.clear();
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| H1Error::Invalid("field name"))?;
        let start = field.value.as_ptr() as usize - base;
        fields.push((name, start, start + field.value.len()));
    }
    Ok(Some((ParsedStatus { status, version }, len)))
}

/// RFC 9112 §6.3, in order; the bool says whether the framing allows reusing the connection.
fn framing(
    headers: &mut HeaderMap,
    status: StatusCode,
    method_is_head: bool,
) -> Result<(BodyFraming, bool), H1Error> {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((BodyFraming::Upgrade, false));
    }
    if method_is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((BodyFraming::Empty, true));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let chunked_last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|b| *b == b',').next())
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        // A Content-Length beside it is a smuggling tell: ignored, and the connection retired.
        let with_length = headers.remove(header::CONTENT_LENGTH).is_some();
        return Ok(if chunked_last {
            (BodyFraming::Chunked, !with_length)
        } else {
            (BodyFraming::UntilClose, false)
        });
    }
    match content_length(headers)? {
        Some(0) => Ok((BodyFraming::Empty, true)),
        Some(length) => Ok((BodyFraming::Length(length), true)),
        None => Ok((BodyFraming::UntilClose, false)),
    }
}

/// The `Content-Length`: every value (and every comma-separated item) must agree.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, H1Error> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|b| *b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                return Err(H1Error::Invalid("Content-Length"));
            }
            let parsed = item
                .iter()
                .fold(0_u64, |n, digit| n * 10 + u64::from(digit - b'0'));
            if length.is_some_and(|seen| seen != parsed) {
                return Err(H1Error::Invalid("conflicting Content-Length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

/// HTTP/1.1 persists unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
fn connection_persists(headers: &HeaderMap, version: Version) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    !close && (version == Version::HTTP_11 || keep_alive)
}
