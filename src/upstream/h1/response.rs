//! Reading a response head: status, fields, and how the body that follows is framed.
//!
//! One pass over httparse's fields names each field and notes what framing and hygiene need
//! (`Content-Length`, `Transfer-Encoding`, `Connection` tokens, hop-by-hop names), so nothing is
//! looked up in the header map afterwards. When the head is not a `101` and holds nothing for the
//! handler's hygiene pass to decide (no `TE`, no `Gantry-*` field, no `Connection` naming other
//! fields), the hop-by-hop fields are never put into the map and the head says so
//! ([`ResponseHead::clean`]), so the handler skips that pass. Any other head keeps every field and
//! leaves the hygiene to the handler, as before.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::response::Parts;
use http::{Response, StatusCode, Version};

use super::H1Error;
use crate::http1::raw::{RawFields, RawFieldsBuilder};

/// More fields than this make the head too large (hyper's default too).
const MAX_FIELDS: usize = 100;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// The default request id field, which Gantry's server replaces.
const REQUEST_ID: HeaderName =
    HeaderName::from_static(crate::config::compile::defaults::REQUEST_ID_HEADER);

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
    /// The map holds no hop-by-hop field and no `Gantry-*` field: the handler's hygiene pass
    /// would remove nothing.
    pub(super) clean: bool,
    /// The fields as read, when the caller asked for them that way and the head allows it (then
    /// `parts.headers` is empty); see [`crate::http1::raw`].
    pub(super) raw: Option<Box<RawFields>>,
}

impl ResponseHead {
    pub(super) fn into_parts(self) -> (Parts, BodyFraming, Option<Box<RawFields>>) {
        (self.parts, self.framing, self.raw)
    }
}

/// What a field's name means to framing and hygiene, decided once per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// End to end, nothing to decide.
    Plain,
    ContentLength,
    TransferEncoding,
    Connection,
    /// Hop-by-hop by name alone (RFC 9110 §7.6.1), removed whatever `Connection` says:
    /// `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, and
    /// `Upgrade` (kept only on a `101`, which is never clean).
    HopByHop,
    /// Left to the handler's hygiene pass: `TE` (kept as `trailers` only) and `Gantry-*` (only
    /// Gantry says those).
    Hygiene,
    /// A field named `close`, which `Connection: close` would name.
    NamedClose,
    /// `Date`: end to end; noted so the server knows whether to add one.
    Date,
    /// `X-Request-Id`: end to end, but the server replaces it with the request's own.
    RequestId,
}

/// A field's name and role, where its line starts in the head, and its value's byte range.
pub(super) struct Field {
    name: HeaderName,
    role: Role,
    line_start: usize,
    value: (usize, usize),
}

/// What the fields say about framing and hygiene, gathered while they are named.
#[derive(Default)]
struct Facts {
    /// The agreed `Content-Length` (every value and every comma-separated item equal).
    length: Option<u64>,
    /// The first problem with the `Content-Length` values, in field order.
    length_error: Option<&'static str>,
    length_fields: bool,
    transfer_encoded: bool,
    /// The last coding of the last `Transfer-Encoding` field is `chunked`.
    chunked_last: bool,
    close: bool,
    keep_alive: bool,
    /// `Connection` names something other than `close`, `keep-alive` and `upgrade`.
    lists_fields: bool,
    hygiene: bool,
    named_close: bool,
    date: bool,
    request_id: bool,
    /// A field with an empty value (its line's end is not known from the value's range).
    empty_value: bool,
}

impl Facts {
    fn note(&mut self, role: Role, value: &[u8]) {
        match role {
            Role::Plain | Role::HopByHop => {}
            Role::ContentLength => {
                self.length_fields = true;
                if self.length_error.is_none() {
                    self.add_length(value);
                }
            }
            Role::TransferEncoding => {
                self.transfer_encoded = true;
                self.chunked_last = value
                    .rsplit(|b| *b == b',')
                    .next()
                    .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
            Role::Connection => {
                for token in value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"upgrade") {
                        self.lists_fields = true;
                    }
                }
            }
            Role::Hygiene => self.hygiene = true,
            Role::NamedClose => self.named_close = true,
            Role::Date => self.date = true,
            Role::RequestId => self.request_id = true,
        }
        self.empty_value |= value.is_empty();
    }

    fn add_length(&mut self, value: &[u8]) {
        for item in value.split(|b| *b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                self.length_error = Some("Content-Length");
                return;
            }
            let parsed = item
                .iter()
                .fold(0_u64, |n, digit| n * 10 + u64::from(digit - b'0'));
            if self.length.is_some_and(|seen| seen != parsed) {
                self.length_error = Some("conflicting Content-Length values");
                return;
            }
            self.length = Some(parsed);
        }
    }

    /// Whether the hop-by-hop fields can be left out here, with nothing left for the handler's
    /// hygiene pass (`remove_hop_by_hop`) to decide.
    fn clean(&self, status: StatusCode) -> bool {
        status != StatusCode::SWITCHING_PROTOCOLS
            && !self.hygiene
            && !self.lists_fields
            // `Connection: close` names a field called `close`.
            && (!self.close || !self.named_close)
    }
}

/// Parses the head at the start of `buf`, skipping interim (1xx) responses other than 101.
/// `None`: more bytes are needed. Consumes the head's bytes from `buf`.
/// `fields` is scratch space kept by the connection (no allocation per response).
/// `pass_through`: the caller takes the fields unparsed when the head allows it
/// ([`ResponseHead::raw`]).
pub(super) fn parse(
    buf: &mut BytesMut,
    fields: &mut Vec<Field>,
    max_head: usize,
    method_is_head: bool,
    pass_through: bool,
) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        let Some((parsed, facts, len)) = parse_fields(buf, fields, max_head)? else {
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
        let clean = facts.clean(parsed.status);
        let bodiless = method_is_head
            || parsed.status == StatusCode::SWITCHING_PROTOCOLS
            || parsed.status == StatusCode::NO_CONTENT
            || parsed.status == StatusCode::NOT_MODIFIED;
        // A Content-Length beside Transfer-Encoding is a smuggling tell: never passed on.
        let drop_length = facts.transfer_encoded && !bodiless;
        let (framing, keep_alive) = framing(&facts, parsed.status, method_is_head)?;
        let persists = !facts.close && (parsed.version == Version::HTTP_11 || facts.keep_alive);
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = parsed.status;
        parts.version = parsed.version;
        let raw = if pass_through
            && clean
            && !bodiless
            && !drop_length
            && !facts.request_id
            && !facts.empty_value
        {
            raw_fields(&head, fields, &facts)
        } else {
            None
        };
        if raw.is_some() {
            fields.clear();
        } else {
            let mut headers = HeaderMap::with_capacity(fields.len() + 1);
            for field in fields.drain(..) {
                if left_out(field.role, clean, drop_length) {
                    // httparse admits exactly the value bytes `HeaderValue` does, so leaving a
                    // value unchecked here refuses nothing that checking it would have.
                    continue;
                }
                let value =
                    HeaderValue::from_maybe_shared(head.slice(field.value.0..field.value.1))
                        .map_err(|_| H1Error::Invalid("a field value with forbidden bytes"))?;
                headers.append(field.name, value);
            }
            parts.headers = headers;
        }
        return Ok(Some(ResponseHead {
            parts,
            framing,
            keep_alive: keep_alive && persists,
            clean,
            raw,
        }));
    }
}

/// Whether a field stays out of what the client is sent: hop-by-hop fields of a clean head (see
/// [`ResponseHead::clean`]), and a `Content-Length` beside `Transfer-Encoding`.
fn left_out(role: Role, clean: bool, drop_length: bool) -> bool {
    match role {
        Role::ContentLength => drop_length,
        Role::TransferEncoding | Role::Connection | Role::HopByHop => clean,
        Role::Plain | Role::Hygiene | Role::NamedClose | Role::Date | Role::RequestId => false,
    }
}

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
) -> Result<Option<(ParsedStatus, Facts, usize)>, H1Error> {
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
    let mut facts = Facts::default();
    fields.clear();
    for field in response.headers.iter() {
        let (name, role) = match known_name(field.name.as_bytes()) {
            Some(known) => known,
            None => {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| H1Error::Invalid("field name"))?;
                let role = role_of(&name);
                (name, role)
            }
        };
        facts.note(role, field.value);
        let start = field.value.as_ptr() as usize - base;
        fields.push(Field {
            name,
            role,
            line_start: field.name.as_ptr() as usize - base,
            value: (start, start + field.value.len()),
        });
    }
    Ok(Some((ParsedStatus { status, version }, facts, len)))
}

/// The head's end-to-end lines as runs of bytes (a clean head: the hop-by-hop lines are the ones
/// left out). `None`: the lines do not fit [`crate::http1::raw::MAX_RUNS`] runs.
fn raw_fields(head: &bytes::Bytes, fields: &[Field], facts: &Facts) -> Option<Box<RawFields>> {
    let mut builder = RawFieldsBuilder::default();
    // Only a clean head without a length to drop gets here.
    for field in fields
        .iter()
        .filter(|field| !left_out(field.role, true, false))
    {
        builder = builder.line(head, field.line_start, field.value.1)?;
    }
    Some(Box::new(builder.finish(
        head.clone(),
        facts.length,
        facts.date,
    )))
}

/// Names frequent in responses, with their roles, as upstreams spell them: canonical
/// (`Content-Length`) or lowercase. An exact match costs a length switch and a compare or two;
/// `HeaderName::from_bytes` lowercases into a scratch buffer and searches every standard name.
/// Any other spelling (`CONTENT-length`) takes the general path, with the same result.
fn known_name(name: &[u8]) -> Option<(HeaderName, Role)> {
    const N4: &[(&[u8], HeaderName, Role)] = &[
        (b"Date", header::DATE, Role::Date),
        (b"ETag", header::ETAG, Role::Plain),
        (b"Vary", header::VARY, Role::Plain),
    ];
    const N6: &[(&[u8], HeaderName, Role)] = &[(b"Server", header::SERVER, Role::Plain)];
    const N7: &[(&[u8], HeaderName, Role)] = &[
        (b"Expires", header::EXPIRES, Role::Plain),
        (b"Upgrade", header::UPGRADE, Role::HopByHop),
    ];
    const N8: &[(&[u8], HeaderName, Role)] = &[(b"Location", header::LOCATION, Role::Plain)];
    const N10: &[(&[u8], HeaderName, Role)] = &[
        (b"Connection", header::CONNECTION, Role::Connection),
        (b"Set-Cookie", header::SET_COOKIE, Role::Plain),
    ];
    const N12: &[(&[u8], HeaderName, Role)] =
        &[(b"Content-Type", header::CONTENT_TYPE, Role::Plain)];
    const N13: &[(&[u8], HeaderName, Role)] = &[
        (b"Cache-Control", header::CACHE_CONTROL, Role::Plain),
        (b"Last-Modified", header::LAST_MODIFIED, Role::Plain),
        (b"Accept-Ranges", header::ACCEPT_RANGES, Role::Plain),
    ];
    const N14: &[(&[u8], HeaderName, Role)] = &[(
        b"Content-Length",
        header::CONTENT_LENGTH,
        Role::ContentLength,
    )];
    const N16: &[(&[u8], HeaderName, Role)] =
        &[(b"Content-Encoding", header::CONTENT_ENCODING, Role::Plain)];
    const N17: &[(&[u8], HeaderName, Role)] = &[(
        b"Transfer-Encoding",
        header::TRANSFER_ENCODING,
        Role::TransferEncoding,
    )];
    let candidates = match name.len() {
        4 => N4,
        6 => N6,
        7 => N7,
        8 => N8,
        // Not a standard name: a `HeaderName` of it cannot sit in a constant table.
        10 if name == b"Keep-Alive" || name == b"keep-alive" => {
            return Some((KEEP_ALIVE, Role::HopByHop));
        }
        10 => N10,
        12 if name == b"X-Request-Id" || name == b"x-request-id" => {
            return Some((REQUEST_ID, Role::RequestId));
        }
        12 => N12,
        13 => N13,
        14 => N14,
        16 => N16,
        17 => N17,
        _ => return None,
    };
    candidates
        .iter()
        .find(|(canonical, known, _)| name == *canonical || name == known.as_str().as_bytes())
        .map(|(_, known, role)| (known.clone(), *role))
}

/// The role of a name that took the general path.
fn role_of(name: &HeaderName) -> Role {
    if name == header::CONTENT_LENGTH {
        Role::ContentLength
    } else if name == header::TRANSFER_ENCODING {
        Role::TransferEncoding
    } else if name == header::CONNECTION {
        Role::Connection
    } else if name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
    {
        Role::HopByHop
    } else if name == header::TE || name.as_str().starts_with("gantry-") {
        Role::Hygiene
    } else if name.as_str() == "close" {
        Role::NamedClose
    } else if name == header::DATE {
        Role::Date
    } else if name == REQUEST_ID {
        Role::RequestId
    } else {
        Role::Plain
    }
}

/// RFC 9112 §6.3, in order; the bool says whether the framing allows reusing the connection.
fn framing(
    facts: &Facts,
    status: StatusCode,
    method_is_head: bool,
) -> Result<(BodyFraming, bool), H1Error> {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((BodyFraming::Upgrade, false));
    }
    if method_is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((BodyFraming::Empty, true));
    }
    if facts.transfer_encoded {
        // With a Content-Length beside it (left out of the map), the connection is retired.
        return Ok(if facts.chunked_last {
            (BodyFraming::Chunked, !facts.length_fields)
        } else {
            (BodyFraming::UntilClose, false)
        });
    }
    if let Some(reason) = facts.length_error {
        return Err(H1Error::Invalid(reason));
    }
    match facts.length {
        Some(0) => Ok((BodyFraming::Empty, true)),
        Some(length) => Ok((BodyFraming::Length(length), true)),
        None => Ok((BodyFraming::UntilClose, false)),
    }
}
