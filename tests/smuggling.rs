#![allow(clippy::unwrap_used)]
//! Request smuggling, table driven, over raw TCP against the real gateway.
//!
//! Every vector is an outer `POST /` whose framing is ambiguous or malformed, followed in the same
//! write by a hidden `GET /smuggled`. The backend is a raw recording server with its own lenient
//! parser that records every request it can frame. After each vector a sentinel `GET /after` is
//! sent (on the same connection when it is still open, else on a new one); once its answer is
//! back, everything the gateway forwarded before it has reached the backend, so the list of
//! request lines the backend recorded is final. For every vector:
//!
//! - the backend never sees `/smuggled` as a request (and, for a rejected vector, not even as
//!   bytes) and sees at most one outer request, framed one way only;
//! - the answer is the one the table names: `Rejected` (a problem+json 400, whether the server's
//!   head parser or the edge refused it, then the gateway closes the connection), or `Forwarded`
//!   (the backend got exactly one request with exactly this body).
//!
//! What the server's parser decides is listed in the README ("What the HTTP/1.1 parser decides")
//! and in SECURITY.md. Focused tests of single vectors with more detail live in `tests/framing.rs`.

mod support;

use support::client::find;
use support::recording::RecordingBackend;
use support::{RawConn, TestGateway};

/// The hidden request every vector tries to get past the gateway.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n";

/// The request sent after each vector to prove the gateway still serves and to flush the backend.
const AFTER: &str = "GET /after HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n";

/// What the gateway must do with a vector.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// A problem+json 400 and the connection closed.
    Rejected,
    /// One request reaches the backend with exactly this payload (de-chunked); `closes` when the gateway must
    /// close the client connection after answering (RFC 9112 §6.3 for Content-Length next to
    /// Transfer-Encoding).
    Forwarded { body: &'static str, closes: bool },
}

use Outcome::{Forwarded, Rejected};

/// One smuggling vector: the header lines after the request line and Host, and the bytes after
/// the blank line. `{S}` in the body stands for [`SMUGGLED`], `{SLEN}` for its length in hex.
struct Vector {
    name: &'static str,
    /// The full request line; empty means `POST / HTTP/1.1`.
    request_line: &'static str,
    headers: &'static str,
    body: &'static str,
    /// Line ending of the head (`\r\n` unless the vector is about bare LF).
    eol: &'static str,
    expect: Outcome,
}

const fn v(
    name: &'static str,
    headers: &'static str,
    body: &'static str,
    expect: Outcome,
) -> Vector {
    Vector {
        name,
        request_line: "",
        headers,
        body,
        eol: "\r\n",
        expect,
    }
}

/// The catalogue (PortSwigger's CL.TE/TE.CL/TE.TE families, HTTP Garden's chunk and whitespace
/// cases). Header lines are separated by `|` and joined with the vector's line ending.
const VECTORS: &[Vector] = &[
    // CL.TE: by Content-Length the body is `3\r\nab`; by chunked it is `abc` and a request follows.
    v(
        "cl.te",
        "Content-Length: 5|Transfer-Encoding: chunked",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Forwarded {
            body: "abc",
            closes: true,
        },
    ),
    // TE.CL: by Content-Length (4) the body is `NN\r\n` and the hidden request would follow.
    v(
        "te.cl",
        "Transfer-Encoding: chunked|Content-Length: 4",
        "{SLEN}\r\n{S}\r\n0\r\n\r\n",
        Forwarded {
            body: "{S}",
            closes: true,
        },
    ),
    // TE.TE obfuscations, each next to a Content-Length that would frame differently.
    v(
        "te.te xchunked",
        "Content-Length: 5|Transfer-Encoding: xchunked",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "te.te leading space",
        "Content-Length: 5|Transfer-Encoding:  chunked",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Forwarded {
            body: "abc",
            closes: true,
        },
    ),
    v(
        "te.te tab",
        "Content-Length: 5|Transfer-Encoding:\tchunked",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Forwarded {
            body: "abc",
            closes: true,
        },
    ),
    v(
        "te.te chunked, identity",
        "Content-Length: 5|Transfer-Encoding: chunked, identity",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "te.te identity, chunked",
        "Content-Length: 5|Transfer-Encoding: identity, chunked",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        // hyper accepts a list ending in chunked; Gantry's edge refuses it.
        Rejected,
    ),
    v(
        "te.te uppercase",
        "Content-Length: 5|Transfer-Encoding: CHUNKED",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Forwarded {
            body: "abc",
            closes: true,
        },
    ),
    v(
        "te.te duplicate lines, second obfuscated",
        "Transfer-Encoding: chunked|Transfer-Encoding: cow",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "te.te duplicate lines, first obfuscated",
        "Transfer-Encoding: cow|Transfer-Encoding: chunked|Content-Length: 5",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "te.te chunked twice",
        "Transfer-Encoding: chunked|Transfer-Encoding: chunked",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        // hyper decodes once and would parse `{S}` as a pipelined request; a parser decoding
        // twice would not. Gantry's edge refuses the ambiguity.
        Rejected,
    ),
    v(
        "te.te obs-fold",
        "Content-Length: 5|Transfer-Encoding:\r\n chunked",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "te.te space before colon",
        "Content-Length: 5|Transfer-Encoding : chunked",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "te.te vertical tab",
        "Content-Length: 5|Transfer-Encoding:\x0bchunked",
        "3\r\nabc\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    // hyper's client sends a GET whose body length is unknown (chunked) with no body at all: the
    // body is dropped, never forwarded as bytes the upstream could frame differently.
    Vector {
        name: "te.cl on a GET",
        request_line: "GET / HTTP/1.1",
        headers: "Content-Length: 5|Transfer-Encoding: chunked",
        body: "3\r\nabc\r\n0\r\n\r\n{S}",
        eol: "\r\n",
        expect: Forwarded {
            body: "",
            closes: true,
        },
    },
    // Content-Length games.
    v(
        "cl differing duplicates",
        "Content-Length: 5|Content-Length: 6",
        "hello{S}",
        Rejected,
    ),
    v(
        "cl list value",
        "Content-Length: 5, 6",
        "hello{S}",
        Rejected,
    ),
    v(
        "cl identical duplicates",
        "Content-Length: 5|Content-Length: 5",
        "hello",
        Forwarded {
            body: "hello",
            closes: false,
        },
    ),
    v("cl plus sign", "Content-Length: +5", "hello{S}", Rejected),
    v("cl minus sign", "Content-Length: -5", "hello{S}", Rejected),
    v("cl hex", "Content-Length: 0x5", "hello{S}", Rejected),
    v(
        "cl overflowing",
        "Content-Length: 99999999999999999999999",
        "hello{S}",
        Rejected,
    ),
    v(
        "cl space inside",
        "Content-Length: 5 5",
        "hello{S}",
        Rejected,
    ),
    // Chunk extensions and chunk sizes.
    v(
        "chunk extension",
        "Transfer-Encoding: chunked",
        "5;name=value\r\nhello\r\n0\r\n\r\n",
        Forwarded {
            body: "hello",
            closes: false,
        },
    ),
    v(
        "chunk extension with bare LF",
        "Transfer-Encoding: chunked",
        "5;ext\nxx\r\nhello\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "chunk size oversized hex",
        "Transfer-Encoding: chunked",
        "FFFFFFFFFFFFFFFFF1\r\nhello\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "chunk size not hex",
        "Transfer-Encoding: chunked",
        "5g\r\nhello\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "chunk data longer than its size",
        "Transfer-Encoding: chunked",
        "3\r\nhello\r\n0\r\n\r\n{S}",
        Rejected,
    ),
    v(
        "chunk with bare LF line endings",
        "Transfer-Encoding: chunked",
        "5\nhello\n0\n\n{S}",
        Rejected,
    ),
    // Header bytes that must never be forwarded.
    v(
        "nul in a header value",
        "Content-Length: 5|X-Evil: a\0b",
        "hello{S}",
        Rejected,
    ),
    v(
        "bare cr in a header value",
        "Content-Length: 5|X-Evil: a\rb",
        "hello{S}",
        Rejected,
    ),
    v(
        "bare cr ending a header line",
        "Content-Length: 5|X-Evil: a\r|X-Other: b",
        "hello{S}",
        Rejected,
    ),
    // A bad request with a pipelined one behind it: the second is never parsed.
    v(
        "pipelined after a bad one",
        "Content-Length: 5|Content-Length: 7",
        "{S}",
        Rejected,
    ),
    Vector {
        name: "bare LF head",
        request_line: "",
        headers: "Content-Length: 5",
        body: "hello",
        eol: "\n",
        expect: Forwarded {
            body: "hello",
            closes: false,
        },
    },
    Vector {
        name: "transfer-encoding on HTTP/1.0",
        request_line: "POST / HTTP/1.0",
        headers: "Content-Length: 5|Transfer-Encoding: chunked",
        body: "3\r\nabc\r\n0\r\n\r\n{S}",
        eol: "\r\n",
        expect: Rejected,
    },
];

fn expand(text: &str) -> String {
    text.replace("{SLEN}", &format!("{:x}", SMUGGLED.len()))
        .replace("{S}", SMUGGLED)
}

/// The bytes a vector sends.
fn vector_bytes(vector: &Vector) -> Vec<u8> {
    let eol = vector.eol;
    let line = vector.request_line_or_default();
    let headers = vector.headers.replace('|', eol);
    format!(
        "{line}{eol}Host: a.example{eol}{headers}{eol}{eol}{}",
        expand(vector.body)
    )
    .into_bytes()
}

/// Runs one vector against a fresh gateway and backend; returns a failure description or `None`.
async fn run(vector: &Vector) -> Option<String> {
    let backend = RecordingBackend::start().await;
    let gw = TestGateway::simple(
        &backend.upstream.url(),
        "",
        "  - { name: all, match: { path_prefix: / }, upstream: backend }",
        "",
    )
    .await;
    let mut conn = RawConn::connect(gw.addr).await;
    let _ = conn.send(&vector_bytes(vector)).await;
    let Some(first) = conn.read_response().await else {
        return Some("no response at all".into());
    };
    let mut failures = Vec::new();
    match vector.expect {
        Rejected => {
            if first.status != 400 {
                failures.push(format!("status {} instead of 400", first.status));
            }
            if first.header("content-type") != Some("application/problem+json") {
                failures.push(format!("expected problem+json, got {first:?}"));
            }
            if !conn.wait_closed().await {
                failures.push("connection left open after a 400".into());
            }
        }
        Forwarded { closes, .. } => {
            if first.status != 200 {
                failures.push(format!("status {}: {first:?}", first.status));
            }
            if closes && !conn.wait_closed().await {
                failures.push("connection left open after CL next to TE".into());
            }
        }
    }
    // The sentinel: on the same connection when it is still open, so anything left over from the
    // vector would be parsed before it.
    let after = if conn.is_closed().await {
        let mut fresh = RawConn::connect(gw.addr).await;
        fresh.send(AFTER.as_bytes()).await.unwrap();
        fresh.read_response().await
    } else {
        let _ = conn.send(AFTER.as_bytes()).await;
        conn.read_response().await
    };
    match after {
        Some(response) if response.status == 200 => {}
        other => failures.push(format!("the sentinel was not served: {other:?}")),
    }

    let lines = backend.request_lines();
    let expected_lines: Vec<&str> = match vector.expect {
        Rejected => vec!["GET /after HTTP/1.1"],
        Forwarded { .. } => vec![vector.request_line_or_default(), "GET /after HTTP/1.1"],
    };
    if lines != expected_lines {
        failures.push(format!(
            "backend saw {lines:?}, expected {expected_lines:?}"
        ));
    }
    if matches!(vector.expect, Rejected)
        && find(&backend.upstream.received(), b"/smuggled").is_some()
    {
        failures.push("bytes of a rejected request reached the backend".into());
    }
    for head in backend.heads() {
        let lower = head.to_ascii_lowercase();
        if lower.contains("\ncontent-length:") && lower.contains("\ntransfer-encoding:") {
            failures.push(format!("both framings forwarded: {head:?}"));
        }
    }
    if let Forwarded { body, .. } = vector.expect {
        let got = backend.payload(0);
        if got != expand(body).as_bytes() {
            failures.push(format!(
                "backend body {:?}, expected {:?}",
                String::from_utf8_lossy(&got),
                expand(body)
            ));
        }
    }
    (!failures.is_empty()).then(|| failures.join("; "))
}

impl Vector {
    fn request_line_or_default(&self) -> &'static str {
        if self.request_line.is_empty() {
            "POST / HTTP/1.1"
        } else {
            self.request_line
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_vector_gets_a_second_request_to_the_backend() {
    let mut failures = Vec::new();
    for vector in VECTORS {
        if let Some(failure) = run(vector).await {
            failures.push(format!("{}: {failure}", vector.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        VECTORS.len(),
        failures.join("\n")
    );
}

/// Many requests pipelined in one write after a rejected one: none of them is parsed, and the
/// backend is never dialled.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_pipelined_behind_a_rejected_request_is_parsed() {
    let backend = RecordingBackend::start().await;
    let gw = TestGateway::simple(
        &backend.upstream.url(),
        "",
        "  - { name: all, match: { path_prefix: / }, upstream: backend }",
        "",
    )
    .await;
    let mut bytes = b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: +0\r\n\r\n".to_vec();
    for _ in 0..50 {
        bytes.extend_from_slice(SMUGGLED.as_bytes());
    }
    let mut conn = RawConn::connect(gw.addr).await;
    let _ = conn.send(&bytes).await;
    let response = conn.read_response().await.expect("an answer");
    assert_eq!(response.status, 400);
    assert!(conn.wait_closed().await);
    assert!(conn.buffered().is_empty(), "{:?}", conn.buffered());
    assert_eq!(backend.upstream.connection_count(), 0);
}
