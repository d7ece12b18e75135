//! Writing a response head and deciding how its body is framed (RFC 9112 §6.1–6.3).
//!
//! The head is encoded straight into the connection's write buffer, and a small body's bytes
//! follow it there, so a typical response leaves in one write.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use http_body::SizeHint;

use crate::http1::raw::RawFields;

/// How the body of a response goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFraming {
    /// No body bytes at all (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked (HTTP/1.1 clients, length unknown).
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients, length unknown).
    UntilClose,
}

/// What the connection needs to know about the request to answer it.
#[derive(Debug, Clone, Copy)]
pub struct Answering {
    /// The request was `HEAD`.
    pub head_request: bool,
    /// The request's version.
    pub version: Version,
    /// Whether the connection may carry another request after this answer.
    pub keep_alive: bool,
    /// The client takes trailer fields after a chunked body (`TE: trailers`).
    pub accepts_trailers: bool,
}

/// The `Date` field value, formatted once per second per connection.
pub struct DateCache {
    second: u64,
    value: Option<HeaderValue>,
}

impl DateCache {
    pub fn new() -> Self {
        Self {
            second: 0,
            value: None,
        }
    }

    fn now(&mut self) -> HeaderValue {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.value.is_none() {
            self.second = second;
            self.value = HeaderValue::from_str(&httpdate::fmt_http_date(now)).ok();
        }
        self.value
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
    }
}

/// Encodes `parts` as a response head into `out`; returns the body's framing and whether the
/// connection stays open. Framing fields the handler set (`Transfer-Encoding`) are replaced by the
/// server's own; `Connection: close` from the handler is honoured.
///
/// One look at the names finds what the rules need; the fields the server adds or drops are
/// written or skipped as the head is encoded, so the map itself is neither searched nor changed
/// (it is taken `&mut` only for the caller's sake).
/// `replacing`: a field written after the head's own, replacing every field of that name in the
/// map (the request id, which the edge leaves out of the map for this: no insert hashes it).
/// `raw`: an upstream's fields passed through unparsed, written after the map's; they hold no
/// framing or connection field but `Content-Length`, and never the `replacing` name (see
/// [`crate::http1::raw`]).
pub fn encode_head(
    out: &mut Vec<u8>,
    parts: &mut http::response::Parts,
    answering: Answering,
    body_hint: &SizeHint,
    date: &mut DateCache,
    (replacing, raw): (Option<(&HeaderName, &[u8])>, Option<&RawFields>),
) -> (OutFraming, bool) {
    let status = parts.status;
    let headers = &parts.headers;
    let (mut connection, mut close, mut length_field, mut has_date) = (false, false, false, false);
    let mut declared = None;
    if let Some(raw) = raw {
        declared = raw.content_length();
        length_field = declared.is_some();
        has_date = raw.has_date();
    }
    for (name, value) in headers {
        if name == header::CONNECTION {
            connection = true;
            close |= has_token(value.as_bytes(), b"close");
        } else if name == header::CONTENT_LENGTH {
            if !length_field {
                declared = std::str::from_utf8(value.as_bytes())
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok());
            }
            length_field = true;
        } else if name == header::DATE {
            has_date = true;
        }
    }
    let mut keep_alive = answering.keep_alive && !close;
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let drop_length = status.is_informational() || status == StatusCode::NO_CONTENT;
    if drop_length {
        declared = None;
    }
    // What the server adds: a length, chunked coding, a connection option.
    let mut length = None;
    let mut chunked = false;
    let framing = if bodiless_status {
        OutFraming::None
    } else if answering.head_request {
        if declared.is_none() {
            length = body_hint.exact();
        }
        OutFraming::None
    } else if let Some(declared) = declared {
        OutFraming::Length(declared)
    } else if let Some(exact) = body_hint.exact() {
        length = Some(exact);
        OutFraming::Length(exact)
    } else if answering.version == Version::HTTP_11 {
        chunked = true;
        OutFraming::Chunked
    } else {
        keep_alive = false;
        OutFraming::UntilClose
    };
    // A length the server writes replaces any the handler set (one that did not parse).
    let skip_length = drop_length || length.is_some();
    let mut connection_value: Option<&[u8]> = None;
    let mut replace_connection = false;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        keep_alive = false;
    } else if !keep_alive {
        if !connection {
            connection_value = Some(b"close");
        }
    } else if answering.version == Version::HTTP_10 {
        connection_value = Some(b"keep-alive");
        replace_connection = true;
    }

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let replaced = replacing.map(|(name, _)| name);
    for (name, value) in headers {
        let skipped = name == header::TRANSFER_ENCODING
            || (skip_length && name == header::CONTENT_LENGTH)
            || (replace_connection && name == header::CONNECTION)
            || replaced == Some(name);
        if !skipped {
            field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if let Some(raw) = raw {
        raw.write_to(out);
    }
    if let Some((name, value)) = replacing {
        field(out, name.as_str().as_bytes(), value);
    }
    if let Some(length) = length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(crate::http1::decimal(length, &mut [0; 20]));
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        field(out, b"transfer-encoding", b"chunked");
    }
    if let Some(value) = connection_value {
        field(out, b"connection", value);
    }
    if !has_date {
        field(out, b"date", date.now().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep_alive)
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a comma-separated field value holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Appends the last chunk and the trailer section.
pub fn last_chunk(out: &mut Vec<u8>, trailers: Option<&http::HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a chunk-size line for `len` bytes of data.
pub fn chunk_prefix(out: &mut Vec<u8>, len: usize) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{len:X}\r\n");
}

#[cfg(test)]
mod tests {
    use http::Response;

    use super::*;

    fn encode(
        response: Response<()>,
        answering: Answering,
        hint: SizeHint,
    ) -> (String, OutFraming, bool) {
        let (mut parts, ()) = response.into_parts();
        let mut out = Vec::new();
        let (framing, keep_alive) = encode_head(
            &mut out,
            &mut parts,
            answering,
            &hint,
            &mut DateCache::new(),
            (None, None),
        );
        (String::from_utf8(out).unwrap(), framing, keep_alive)
    }

    const GET11: Answering = Answering {
        head_request: false,
        version: Version::HTTP_11,
        keep_alive: true,
        accepts_trailers: false,
    };

    #[test]
    fn known_lengths_are_declared_and_unknown_ones_chunked() {
        let (text, framing, keep) = encode(Response::new(()), GET11, SizeHint::with_exact(5));
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("content-length: 5\r\n") && text.contains("date: "),
            "{text}"
        );
        assert_eq!((framing, keep), (OutFraming::Length(5), true));
        let (text, framing, _) = encode(Response::new(()), GET11, SizeHint::default());
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert_eq!(framing, OutFraming::Chunked);
        let http10 = Answering {
            version: Version::HTTP_10,
            keep_alive: true,
            ..GET11
        };
        let (text, framing, keep) = encode(Response::new(()), http10, SizeHint::default());
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert_eq!((framing, keep), (OutFraming::UntilClose, false));
    }

    #[test]
    fn head_and_bodiless_statuses_send_no_body() {
        let head = Answering {
            head_request: true,
            ..GET11
        };
        let response = Response::builder()
            .header("content-length", "42")
            .body(())
            .unwrap();
        let (text, framing, _) = encode(response, head, SizeHint::default());
        assert!(text.contains("content-length: 42\r\n"), "{text}");
        assert_eq!(framing, OutFraming::None);
        let no_content = Response::builder()
            .status(204)
            .header("content-length", "3")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap();
        let (text, framing, _) = encode(no_content, GET11, SizeHint::with_exact(3));
        assert!(
            !text.contains("content-length") && !text.contains("transfer-encoding"),
            "{text}"
        );
        assert_eq!(framing, OutFraming::None);
    }

    #[test]
    fn connection_close_from_the_handler_closes() {
        let response = Response::builder()
            .header("connection", "close")
            .body(())
            .unwrap();
        let (text, _, keep) = encode(response, GET11, SizeHint::with_exact(0));
        assert!(!keep);
        assert_eq!(text.matches("connection").count(), 1, "{text}");
    }

    #[test]
    fn fields_the_server_owns_are_replaced_not_repeated() {
        // A length that does not parse gives way to the body's; the handler's coding goes.
        let response = Response::builder()
            .header("content-length", "abc")
            .header("transfer-encoding", "gzip")
            .header("x-a", "1")
            .body(())
            .unwrap();
        let (text, framing, keep) = encode(response, GET11, SizeHint::with_exact(1_234_567_890));
        assert_eq!(framing, OutFraming::Length(1_234_567_890));
        assert!(keep);
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert!(text.contains("content-length: 1234567890\r\n"), "{text}");
        assert!(
            !text.contains("transfer-encoding") && !text.contains("gzip"),
            "{text}"
        );
        assert!(
            text.contains("x-a: 1\r\n") && text.ends_with("\r\n\r\n"),
            "{text}"
        );

        // An HTTP/1.0 client kept alive is told so once; a handler's Date is kept as it is.
        let http10 = Answering {
            version: Version::HTTP_10,
            ..GET11
        };
        let response = Response::builder()
            .header("connection", "x-other")
            .header("date", "Thu, 01 Jan 2026 00:00:00 GMT")
            .body(())
            .unwrap();
        let (text, _, keep) = encode(response, http10, SizeHint::with_exact(0));
        assert!(keep);
        assert_eq!(text.matches("connection").count(), 1, "{text}");
        assert!(text.contains("connection: keep-alive\r\n"), "{text}");
        assert!(text.contains("content-length: 0\r\n"), "{text}");
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert!(
            text.contains("date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"),
            "{text}"
        );

        // `Connection: close` in any case closes, and no second `Connection` is added.
        let response = Response::builder()
            .header("connection", "x-a, Close")
            .header("content-length", "2")
            .body(())
            .unwrap();
        let (text, framing, keep) = encode(response, GET11, SizeHint::default());
        assert_eq!((framing, keep), (OutFraming::Length(2), false));
        assert_eq!(text.matches("connection").count(), 1, "{text}");
    }
}
