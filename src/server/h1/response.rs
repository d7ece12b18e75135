//! Writing a response head and deciding how its body is framed (RFC 9112 §6.1–6.3).
//!
//! The head is encoded straight into the connection's write buffer, and a small body's bytes
//! follow it there, so a typical response leaves in one write.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderValue};
use http::{StatusCode, Version};
use http_body::SizeHint;

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
pub fn encode_head(
    out: &mut Vec<u8>,
    parts: &mut http::response::Parts,
    answering: Answering,
    body_hint: &SizeHint,
    date: &mut DateCache,
) -> (OutFraming, bool) {
    let status = parts.status;
    let headers = &mut parts.headers;
    let mut keep_alive = answering.keep_alive
        && !headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"close"));
    headers.remove(header::TRANSFER_ENCODING);
    let bodiless_status = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        headers.remove(header::CONTENT_LENGTH);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse::<u64>().ok());
    let framing = if bodiless_status {
        OutFraming::None
    } else if answering.head_request {
        if declared.is_none()
            && let Some(exact) = body_hint.exact()
        {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(exact));
        }
        OutFraming::None
    } else if let Some(length) = declared {
        OutFraming::Length(length)
    } else if let Some(exact) = body_hint.exact() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(exact));
        OutFraming::Length(exact)
    } else if answering.version == Version::HTTP_11 {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        OutFraming::Chunked
    } else {
        keep_alive = false;
        OutFraming::UntilClose
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        keep_alive = false;
    } else if !keep_alive {
        if !headers.contains_key(header::CONNECTION) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    } else if answering.version == Version::HTTP_10 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, date.now());
    }

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers.iter() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep_alive)
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
}
