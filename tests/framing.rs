#![allow(clippy::unwrap_used)]
//! HTTP/1 framing end to end, over raw TCP: request smuggling vectors, Host rules, size limits,
//! broken chunked bodies, slow and idle clients, path tricks, `Expect: 100-continue`, HEAD and
//! pipelining. Where the point is what reaches the backend, the backend is a raw TCP upstream
//! that records every byte, or the programmable upstream that records every request.

mod support;

use support::client::{ParsedResponse, find};
use support::recording::RecordingBackend;
use support::{RawConn, RawResponse, RawUpstream, TestGateway, Upstream, raw_request};

/// One catch-all route to `backend`.
const CATCH_ALL: &str = "  - { name: all, match: { path_prefix: / }, upstream: backend }";

/// A raw backend that reads a request head and then only reads (recording), never answering.
async fn silent_backend() -> RawUpstream {
    RawUpstream::start(|mut conn| async move {
        if conn.read_request_head().await.is_some() {
            conn.read_to_close().await;
        }
    })
    .await
}

/// The body bytes a raw backend received after the first request head.
fn body_after_head(upstream: &RawUpstream) -> Vec<u8> {
    let received = upstream.received();
    let start = find(&received, b"\r\n\r\n").map_or(received.len(), |e| e + 4);
    received[start..].to_vec()
}

/// Asserts a Gantry problem+json answer with this status and type slug.
fn assert_problem(response: &ParsedResponse, status: u16, slug: &str) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{response:?}"
    );
    let json = response.json();
    assert_eq!(json["type"], format!("urn:gantry:problem:{slug}"), "{json}");
    assert_eq!(json["status"], status, "{json}");
    assert!(
        json["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{json}"
    );
}

/// Asserts the HTTP/1.1 parser's rejection: exactly one problem+json 400 (`malformed-request`)
/// and a closed connection.
fn assert_malformed_400_and_closed(raw: &RawResponse) {
    assert_eq!(raw.statuses(), vec![400], "{}", raw.text());
    assert!(raw.closed_by_peer, "connection left open: {}", raw.text());
    let responses = raw.responses();
    let response = responses.first().expect("one parsable response");
    assert_problem(response, 400, "malformed-request");
}

/// The only response of a raw exchange.
fn only_response(raw: &RawResponse) -> ParsedResponse {
    let responses = raw.responses();
    assert_eq!(responses.len(), 1, "{}", raw.text());
    responses.into_iter().next().unwrap()
}

async fn gateway_to(url: &str, server: &str) -> TestGateway {
    TestGateway::simple(url, "", CATCH_ALL, server).await
}

// ---------------------------------------------------------------------------------------------
// 1. Smuggling
// ---------------------------------------------------------------------------------------------

/// The hidden request every smuggling vector tries to get past the gateway.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a.example\r\n\r\n";

/// Sends `head` + `body` (then nothing: the connection is left to the gateway) and checks that the
/// backend saw at most the one outer request, never `/smuggled`, and never both framings.
async fn send_smuggling_vector(head: &str, body: &str) -> (RawResponse, RecordingBackend) {
    let backend = RecordingBackend::start().await;
    let gw = gateway_to(&backend.upstream.url(), "").await;
    let raw = raw_request(gw.addr, format!("{head}{body}").as_bytes()).await;
    for request_head in backend.heads() {
        assert!(
            request_head.starts_with("POST / HTTP/1.1\r\n"),
            "a request other than the outer one reached the backend: {request_head:?}"
        );
        let lower = request_head.to_ascii_lowercase();
        assert!(
            !(lower.contains("content-length:") && lower.contains("transfer-encoding:")),
            "both framings forwarded: {request_head:?}"
        );
    }
    let all = String::from_utf8_lossy(&backend.upstream.received()).into_owned();
    assert!(
        !all.contains("\r\n\r\nGET /smuggled") && !all.starts_with("GET /smuggled"),
        "the smuggled request reached the backend as a request: {all:?}"
    );
    (raw, backend)
}

#[tokio::test(flavor = "multi_thread")]
async fn cl_te_is_framed_by_chunked_and_the_connection_closes() {
    // By Content-Length the body is `3\r\nab`; by chunked it is `abc` and a second request follows.
    let (raw, backend) = send_smuggling_vector(
        "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("3\r\nabc\r\n0\r\n\r\n{SMUGGLED}"),
    )
    .await;
    assert_eq!(raw.statuses(), vec![200], "{}", raw.text());
    assert!(
        raw.closed_by_peer,
        "the connection must close after the response"
    );
    let heads = backend.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(backend.upstream.request_lines(), 1);
    // Framed by chunked: the backend got the 3 chunked bytes, not the 5 Content-Length bytes.
    let request = backend.requests.lock().unwrap()[0].clone();
    let text = String::from_utf8_lossy(&request).into_owned();
    assert!(
        !text.to_ascii_lowercase().contains("content-length: 5"),
        "{text:?}"
    );
    assert!(text.contains("abc"), "{text:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn te_cl_is_framed_by_chunked_and_the_connection_closes() {
    // By Content-Length (4) the body is `5c\r\n` and the rest would be a request of its own; by
    // chunked the hidden request is body data, and what follows the terminator is `SMUGGLED`.
    let inner = "GET /inner HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let (raw, backend) = send_smuggling_vector(
        "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
        &format!("{:x}\r\n{inner}\r\n0\r\n\r\n{SMUGGLED}", inner.len()),
    )
    .await;
    assert_eq!(raw.statuses(), vec![200], "{}", raw.text());
    assert!(
        raw.closed_by_peer,
        "the connection must close after the response"
    );
    let heads = backend.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    // The inner request travelled as the body of the outer one, whole.
    let request = backend.requests.lock().unwrap()[0].clone();
    assert!(find(&request, inner.as_bytes()).is_some());
}

/// A TE.TE / obfuscation vector with `Content-Length: 5` next to an obfuscated Transfer-Encoding.
async fn obfuscated_te(te_line: &str) -> (RawResponse, RecordingBackend) {
    send_smuggling_vector(
        &format!("POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n{te_line}\r\n\r\n"),
        &format!("3\r\nabc\r\n0\r\n\r\n{SMUGGLED}"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn te_xchunked_is_rejected_by_the_parser() {
    let (raw, backend) = obfuscated_te("Transfer-Encoding: xchunked").await;
    assert_malformed_400_and_closed(&raw);
    assert_eq!(backend.upstream.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn te_chunked_then_identity_is_rejected_by_the_parser() {
    let (raw, backend) = obfuscated_te("Transfer-Encoding: chunked, identity").await;
    assert_malformed_400_and_closed(&raw);
    assert_eq!(backend.upstream.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn te_with_space_before_colon_is_rejected_by_the_parser() {
    let (raw, backend) = obfuscated_te("Transfer-Encoding : chunked").await;
    assert_malformed_400_and_closed(&raw);
    assert_eq!(backend.upstream.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn te_with_tab_before_value_is_plain_chunked_and_closes() {
    // A tab is optional whitespace: this is a real `chunked`, so it is CL.TE again.
    let (raw, backend) = obfuscated_te("Transfer-Encoding:\tchunked").await;
    assert_eq!(raw.statuses(), vec![200], "{}", raw.text());
    assert!(raw.closed_by_peer);
    assert_eq!(backend.heads().len(), 1);
    assert_eq!(backend.upstream.request_lines(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_transfer_encodings_one_obfuscated_are_rejected_by_the_parser() {
    let (raw, backend) = send_smuggling_vector(
        "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: cow\r\n\r\n",
        &format!("3\r\nabc\r\n0\r\n\r\n{SMUGGLED}"),
    )
    .await;
    assert_malformed_400_and_closed(&raw);
    assert_eq!(backend.upstream.connection_count(), 0);
}

/// A vector the HTTP/1.1 parser must reject before the edge runs: 400, closed, backend never dialled.
async fn rejected_before_routing(head: &str, body: &str) {
    let (raw, backend) = send_smuggling_vector(head, body).await;
    assert_malformed_400_and_closed(&raw);
    assert_eq!(
        backend.upstream.connection_count(),
        0,
        "{:?}",
        backend.heads()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_content_length_with_different_values_is_400() {
    rejected_before_routing(
        "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        &format!("hello!{SMUGGLED}"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_valued_content_length_is_400() {
    rejected_before_routing(
        "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5, 5\r\n\r\n",
        &format!("hello{SMUGGLED}"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn non_numeric_content_length_is_400() {
    rejected_before_routing(
        "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: +5\r\n\r\n",
        &format!("hello{SMUGGLED}"),
    )
    .await;
    rejected_before_routing(
        "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0x5\r\n\r\n",
        &format!("hello{SMUGGLED}"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_in_a_header_value_is_400() {
    rejected_before_routing(
        "GET / HTTP/1.1\r\nHost: a.example\r\nX-Evil: a\0b\r\n\r\n",
        SMUGGLED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bare_cr_in_a_header_value_is_400() {
    rejected_before_routing(
        "GET / HTTP/1.1\r\nHost: a.example\r\nX-Evil: a\rContent-Length: 5\r\n\r\n",
        SMUGGLED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn space_before_colon_in_content_length_is_400() {
    rejected_before_routing(
        "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length : 5\r\n\r\n",
        &format!("hello{SMUGGLED}"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn obs_fold_continuation_line_is_400() {
    rejected_before_routing(
        "GET / HTTP/1.1\r\nHost: a.example\r\nX-Fold: a\r\n Transfer-Encoding: chunked\r\n\r\n",
        SMUGGLED,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_encoding_on_http10_is_400() {
    rejected_before_routing(
        "POST / HTTP/1.0\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n",
        &format!("3\r\nabc\r\n0\r\n\r\n{SMUGGLED}"),
    )
    .await;
}

/// The parser accepts two `Content-Length` headers with the same value as one (RFC 9110 §8.6 allows
/// it); what matters is that the backend gets exactly one, and exactly that body.
#[tokio::test(flavor = "multi_thread")]
async fn identical_duplicate_content_lengths_are_forwarded_as_one() {
    let (raw, backend) = send_smuggling_vector(
        "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
        &format!("hello{SMUGGLED}"),
    )
    .await;
    assert_eq!(raw.statuses(), vec![200], "{}", raw.text());
    assert!(raw.closed_by_peer);
    let heads = backend.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let lower = heads[0].to_ascii_lowercase();
    assert_eq!(lower.matches("content-length:").count(), 1, "{lower:?}");
    assert!(lower.contains("content-length: 5\r\n"), "{lower:?}");
    assert!(backend.requests.lock().unwrap()[0].ends_with(b"\r\n\r\nhello"));
}

/// A request Gantry rejects before reading its body: the body (already buffered, or arriving after
/// the answer) is skipped by its Content-Length and never parsed as a request of its own.
#[tokio::test(flavor = "multi_thread")]
async fn the_body_of_a_rejected_request_is_never_parsed_as_a_request() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "").await;
    let after = "GET /after HTTP/1.1\r\nHost: a.example\r\n\r\n";
    for head in [
        "POST /%2e%2e/ HTTP/1.1\r\nHost: a.example",
        "POST / HTTP/1.1\r\nX-No-Host: 1",
    ] {
        let head = format!("{head}\r\nContent-Length: {}\r\n\r\n", SMUGGLED.len());
        // The body in the same write as the head.
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(format!("{head}{SMUGGLED}{after}").as_bytes())
            .await
            .unwrap();
        let rejected = conn.read_response().await.expect("an answer");
        assert_eq!(rejected.status, 400, "{rejected:?}");
        let next = conn.read_response().await.expect("the next answer");
        assert_eq!(next.json()["path"], "/after");
        // The body only after the answer.
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(head.as_bytes()).await.unwrap();
        let rejected = conn.read_response().await.expect("an answer");
        assert_eq!(rejected.status, 400, "{rejected:?}");
        if conn
            .send(format!("{SMUGGLED}{after}").as_bytes())
            .await
            .is_ok()
            && let Some(next) = conn.read_response().await
        {
            assert_eq!(next.json()["path"], "/after");
        }
    }
    let paths: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.uri.path().to_owned())
        .collect();
    assert!(paths.iter().all(|p| p == "/after"), "{paths:?}");
    assert!(!paths.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. Host
// ---------------------------------------------------------------------------------------------

/// Routes by host: `other.example` → `/other`, `a.example` → `/a`, `api.example.com` → `/api`,
/// anything else → `/any` (the echo upstream shows the rewritten path).
const HOST_ROUTES: &str = "  - { name: other, match: { hosts: [other.example], path_prefix: / }, upstream: backend, rewrite: { path: /other } }
  - { name: a, match: { hosts: [a.example], path_prefix: / }, upstream: backend, rewrite: { path: /a } }
  - { name: api, match: { hosts: [api.example.com], path_prefix: / }, upstream: backend, rewrite: { path: /api } }
  - { name: any, match: { path_prefix: / }, upstream: backend, rewrite: { path: /any } }";

async fn host_gateway() -> (Upstream, TestGateway) {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(&up.url(), "", HOST_ROUTES, "").await;
    (up, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn http11_without_host_is_missing_host() {
    let (up, gw) = host_gateway().await;
    let raw = raw_request(gw.addr, b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_problem(&only_response(&raw), 400, "missing-host");
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_host_headers_are_duplicate_host() {
    let (up, gw) = host_gateway().await;
    let raw = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: a.example\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_problem(&only_response(&raw), 400, "duplicate-host");
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_without_host_is_routed_to_a_route_without_hosts() {
    let (up, gw) = host_gateway().await;
    let raw = raw_request(gw.addr, b"GET /x HTTP/1.0\r\n\r\n").await;
    let response = only_response(&raw);
    assert_eq!(response.status, 200, "{}", raw.text());
    assert_eq!(response.json()["path"], "/any");
    assert_eq!(up.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_target_overrides_host() {
    let (_up, gw) = host_gateway().await;
    let raw = raw_request(
        gw.addr,
        b"GET http://other.example/x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    let response = only_response(&raw);
    assert_eq!(response.status, 200, "{}", raw.text());
    assert_eq!(response.json()["path"], "/other");
    // The backend's Host is the target's authority, not the client's Host header.
    assert_eq!(response.json()["headers"]["host"], "other.example");
    // The same request in origin-form goes by Host: the routes really differ.
    let raw = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(only_response(&raw).json()["path"], "/a");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_with_port_and_uppercase_matches_lowercase_route_host() {
    let (_up, gw) = host_gateway().await;
    let raw = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: API.Example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    let response = only_response(&raw);
    assert_eq!(response.status, 200, "{}", raw.text());
    assert_eq!(response.json()["path"], "/api");
}

// ---------------------------------------------------------------------------------------------
// 3. Limits
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn headers_over_max_header_bytes_are_431_problem() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "  limits:\n    max_header_bytes: 1KiB").await;
    let filler = "f".repeat(2048);
    let raw = raw_request(
        gw.addr,
        format!(
            "GET /x HTTP/1.1\r\nHost: a.example\r\nX-Filler: {filler}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_problem(&only_response(&raw), 431, "headers-too-large");
    assert_eq!(up.request_count(), 0);
    // Just under the limit passes.
    let filler = "f".repeat(512);
    let raw = raw_request(
        gw.addr,
        format!(
            "GET /x HTTP/1.1\r\nHost: a.example\r\nX-Filler: {filler}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(only_response(&raw).status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn uri_over_max_uri_bytes_is_414_problem() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "  limits:\n    max_uri_bytes: 1KiB").await;
    let long = "u".repeat(2048);
    let raw = raw_request(
        gw.addr,
        format!("GET /{long} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_problem(&only_response(&raw), 414, "uri-too-long");
    assert_eq!(up.request_count(), 0);
}

/// Past the configured limits plus Gantry's 16 KiB of headroom, the head buffer is full and the
/// server answers before the edge: a 431 problem and a closed connection, never reaching the
/// backend.
#[tokio::test(flavor = "multi_thread")]
async fn head_far_over_the_limits_gets_a_431_problem() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(
        &up.url(),
        "  limits:\n    max_header_bytes: 1KiB\n    max_uri_bytes: 1KiB",
    )
    .await;
    let filler = "f".repeat(64 * 1024);
    let raw = raw_request(
        gw.addr,
        format!("GET /x HTTP/1.1\r\nHost: a.example\r\nX-Filler: {filler}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(raw.statuses(), vec![431], "{}", raw.text());
    assert_problem(&only_response(&raw), 431, "headers-too-large");
    assert!(raw.closed_by_peer);
    assert_eq!(up.request_count(), 0);
}

/// A request line that alone fills the head buffer is a 414, not a 431.
#[tokio::test(flavor = "multi_thread")]
async fn uri_far_over_max_uri_bytes_is_414_problem() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "  limits:\n    max_uri_bytes: 1KiB").await;
    let long = "u".repeat(64 * 1024);
    let raw = raw_request(
        gw.addr,
        format!("GET /{long} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_problem(&only_response(&raw), 414, "uri-too-long");
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_over_max_body_bytes_is_413_before_the_backend() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "  limits:\n    max_body_bytes: 1KiB").await;
    // Only the head: the answer must not wait for a body.
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /sink HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2048\r\n\r\n")
        .await
        .unwrap();
    let response = conn.read_response().await.expect("an answer");
    assert_problem(&response, 413, "payload-too-large");
    assert_eq!(up.request_count(), 0);
    assert_eq!(up.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_body_growing_past_the_limit_is_413_and_never_forwarded_past_it() {
    let backend = silent_backend().await;
    let gw = gateway_to(&backend.url(), "  limits:\n    max_body_bytes: 1KiB").await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /sink HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = format!("100\r\n{}\r\n", "Z".repeat(256));
    for _ in 0..16 {
        if conn.send(chunk.as_bytes()).await.is_err() {
            break; // the gateway may already have answered and closed
        }
    }
    let response = conn.read_response().await.expect("an answer");
    assert_problem(&response, 413, "payload-too-large");
    assert!(conn.wait_closed().await, "connection left open");
    let forwarded = body_after_head(&backend)
        .iter()
        .filter(|b| **b == b'Z')
        .count();
    assert!(
        forwarded <= 1024,
        "backend received {forwarded} body bytes past the 1 KiB limit"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Broken chunked body
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn bad_chunk_size_is_400_and_nothing_past_it_is_forwarded() {
    let backend = silent_backend().await;
    let gw = gateway_to(&backend.url(), "").await;
    let raw = raw_request(
        gw.addr,
        b"POST /x HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
    )
    .await;
    assert!(raw.closed_by_peer, "connection left open: {}", raw.text());
    let response = only_response(&raw);
    assert_problem(&response, 400, "invalid-body");
    let forwarded = body_after_head(&backend);
    assert!(
        find(&forwarded, b"world").is_none(),
        "bytes past the bad chunk reached the backend: {:?}",
        String::from_utf8_lossy(&forwarded)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overflowing_chunk_size_is_400_invalid_body() {
    let backend = silent_backend().await;
    let gw = gateway_to(&backend.url(), "").await;
    let raw = raw_request(
        gw.addr,
        b"POST /x HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n\
          ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(raw.closed_by_peer, "connection left open: {}", raw.text());
    assert_problem(&only_response(&raw), 400, "invalid-body");
    assert!(find(&body_after_head(&backend), b"abc").is_none());
}

// ---------------------------------------------------------------------------------------------
// 5. Slow and idle clients
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_half_head_is_closed_after_header_read_timeout() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "  limits:\n    header_read_timeout: 200ms").await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /x HTTP/1.1\r\nHost: a.example\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(conn.wait_closed().await, "half a head kept the connection");
    assert_eq!(up.request_count(), 0);
    // The gateway still serves a complete request.
    let raw = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(only_response(&raw).status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "  limits:\n    idle_timeout: 300ms").await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .await
        .unwrap();
    let response = conn.read_response().await.expect("an answer");
    assert_eq!(response.status, 200);
    assert_ne!(response.header("connection"), Some("close"));
    assert!(conn.wait_closed().await, "idle connection kept open");
    assert!(conn.buffered().is_empty(), "{:?}", conn.buffered());
    // A fresh connection still works.
    let mut fresh = RawConn::connect(gw.addr).await;
    fresh
        .send(b"GET /y HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .await
        .unwrap();
    let response = fresh.read_response().await.expect("an answer");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["path"], "/y");
}

// ---------------------------------------------------------------------------------------------
// 6. Path tricks
// ---------------------------------------------------------------------------------------------

/// Sends `GET {target}` and returns the response.
async fn get_raw(gw: &TestGateway, target: &str) -> ParsedResponse {
    let raw = raw_request(
        gw.addr,
        format!("GET {target} HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    only_response(&raw)
}

/// Routes `/b` and `/c` and `/a/b` to distinct rewritten paths, to prove what was routed.
const PATH_ROUTES: &str =
    "  - { name: b, match: { path: /b }, upstream: backend, rewrite: { path: /routed-b } }
  - { name: rest, match: { path_prefix: / }, upstream: backend }";

#[tokio::test(flavor = "multi_thread")]
async fn dot_dot_segment_is_resolved_before_routing() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(&up.url(), "", PATH_ROUTES, "").await;
    let response = get_raw(&gw, "/a/../b").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["path"], "/routed-b");
    assert_eq!(up.last_request().unwrap().uri.path(), "/routed-b");
    // Without the rewrite route in play the backend sees the normalised path itself.
    let response = get_raw(&gw, "/x/../y").await;
    assert_eq!(response.json()["path"], "/y");
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_climbing_above_the_root_are_invalid_path() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "").await;
    for target in ["/%2e%2e/x", "/..", "/a/../../b"] {
        let response = get_raw(&gw, target).await;
        assert_problem(&response, 400, "invalid-path");
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backend_sees_the_normalised_path() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "").await;
    let cases = [
        ("//a///b", "/a/b"),
        ("/a/%2E%2E/c", "/c"),
        // An encoded slash stays encoded and is not a separator for `..`.
        ("/a%2Fb/c", "/a%2Fb/c"),
        ("/a%2Fb/../c", "/c"),
    ];
    for (target, expected) in cases {
        let response = get_raw(&gw, target).await;
        assert_eq!(response.status, 200, "{target}");
        assert_eq!(response.json()["path"], expected, "{target}");
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Expect: 100-continue
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_is_answered_and_not_forwarded() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "").await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(
        b"POST /expect HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let interim = conn.read_response().await.expect("100 Continue");
    assert_eq!(interim.status, 100, "{interim:?}");
    conn.send(b"hello").await.unwrap();
    let response = conn.read_response().await.expect("final answer");
    assert_eq!(response.status, 200, "{response:?}");
    let json = response.json();
    assert_eq!(json["received"], 5, "{json}");
    assert_eq!(json["expect"], serde_json::Value::Null, "{json}");
    assert!(up.last_request().unwrap().headers.get("expect").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_100_continue_with_an_oversized_body_gets_413_without_100() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "  limits:\n    max_body_bytes: 1KiB").await;
    let raw = raw_request(
        gw.addr,
        b"POST /expect HTTP/1.1\r\nHost: a.example\r\nContent-Length: 2048\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(raw.statuses(), vec![413], "{}", raw.text());
    assert_problem(&only_response(&raw), 413, "payload-too-large");
    assert!(raw.closed_by_peer, "the unsent body must not be awaited");
    assert_eq!(up.request_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// 8. HEAD
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn head_returns_the_get_headers_and_no_body() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "").await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"HEAD /bytes/100 HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .await
        .unwrap();
    let head = conn.read_head_response().await.expect("HEAD answer");
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-length"), Some("100"), "{head:?}");
    // No body followed: the next response on the same connection starts right away.
    conn.send(b"GET /bytes/100 HTTP/1.1\r\nHost: a.example\r\n\r\n")
        .await
        .unwrap();
    let get = conn.read_response().await.expect("GET answer");
    assert_eq!(get.status, 200, "{get:?}");
    assert_eq!(get.header("content-length"), head.header("content-length"));
    assert_eq!(get.body.len(), 100);
    assert!(conn.buffered().is_empty());
    assert_eq!(up.requests()[0].method, http::Method::HEAD);
}

// ---------------------------------------------------------------------------------------------
// 9. Pipelining and CL.0
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order_and_bodies_stay_bodies() {
    let up = Upstream::start("echo").await;
    let gw = gateway_to(&up.url(), "").await;
    // A GET whose Content-Length body looks like a request (CL.0 bait), then a second request,
    // written in one go.
    let bait = "GET /hidden HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let bytes = format!(
        "GET /one HTTP/1.1\r\nHost: a.example\r\nContent-Length: {}\r\n\r\n{bait}\
         GET /two HTTP/1.1\r\nHost: a.example\r\n\r\n",
        bait.len()
    );
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(bytes.as_bytes()).await.unwrap();
    let first = conn.read_response().await.expect("first answer");
    let second = conn.read_response().await.expect("second answer");
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.json()["path"], "/one");
    assert_eq!(first.json()["body"], bait);
    assert_eq!(second.json()["path"], "/two");
    let paths: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.uri.path().to_owned())
        .collect();
    assert_eq!(paths, ["/one", "/two"]);
}
