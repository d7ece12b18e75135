//! The client against a scripted peer on a real loopback socket.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::response::BodyFraming;
use super::{H1Body, H1Connection, H1Error};
use crate::handler::body::RequestBody;
use crate::upstream::tls::UpstreamStream;

/// A client connection and the server end of the same socket.
async fn pair() -> (Box<H1Connection>, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let connection = H1Connection::new(UpstreamStream::Plain(client.unwrap()), 16 * 1024, None);
    (connection, server.unwrap().0)
}

fn get(path: &str) -> Request<RequestBody> {
    let mut request = Request::new(RequestBody::empty());
    *request.uri_mut() = path.parse().unwrap();
    request
        .headers_mut()
        .insert("host", "upstream".parse().unwrap());
    request
}

/// Reads one request head (and `body_len` body bytes) from the server end.
async fn read_request(server: &mut TcpStream, body_len: usize) -> String {
    let mut seen = Vec::new();
    let mut byte = [0_u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        assert_eq!(
            server.read(&mut byte).await.unwrap(),
            1,
            "request ended early"
        );
        seen.push(byte[0]);
    }
    let mut body = vec![0_u8; body_len];
    server.read_exact(&mut body).await.unwrap();
    seen.extend_from_slice(&body);
    String::from_utf8(seen).unwrap()
}

/// Sends `request`, answers with `answer`, and collects the response.
async fn exchange(
    request: Request<RequestBody>,
    answer: &'static [u8],
) -> (
    Result<(StatusCode, HeaderMap, Bytes, Option<HeaderMap>), H1Error>,
    H1Body,
    String,
) {
    let (connection, mut server) = pair().await;
    let server_side = async move {
        let head = read_request(&mut server, 0).await;
        server.write_all(answer).await.unwrap();
        (head, server)
    };
    let (sent, (head, _server)) = tokio::join!(connection.send(request), server_side);
    let response = match sent {
        Ok(response) => response,
        Err(err) => panic!("send failed: {}", err.error),
    };
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    let result = loop {
        match body.frame().await {
            None => break Ok((parts.status, parts.headers, Bytes::from(data), trailers)),
            Some(Err(err)) => break Err(err),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
        }
    };
    (result, body, head)
}

#[tokio::test]
async fn a_length_delimited_response_is_read_and_the_connection_kept() {
    let (result, mut body, head) = exchange(
        get("/a?b=1"),
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello",
    )
    .await;
    assert!(
        head.starts_with("GET /a?b=1 HTTP/1.1\r\nhost: upstream\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("content-length"),
        "no length invented for a GET: {head}"
    );
    let (status, headers, data, _) = result.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["x-a"], "1");
    assert_eq!(data, "hello");
    assert!(body.take_connection().is_some());
}

#[tokio::test]
async fn bytes_after_the_response_retire_the_connection() {
    let (result, mut body, _) = exchange(
        get("/"),
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
    )
    .await;
    assert_eq!(result.unwrap().2, "ok");
    assert!(body.take_connection().is_none());
}

#[tokio::test]
async fn chunked_bodies_with_extensions_and_trailers_are_decoded() {
    let (result, mut body, _) = exchange(
        get("/"),
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
          6;ext=1\r\nhello \r\n5\r\nworld\r\n0\r\nx-trailer: yes\r\n\r\n",
    )
    .await;
    let (_, _, data, trailers) = result.unwrap();
    assert_eq!(data, "hello world");
    assert_eq!(trailers.unwrap()["x-trailer"], "yes");
    assert!(body.take_connection().is_some());
}

#[tokio::test]
async fn malformed_chunk_sizes_fail_the_body() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
    ] {
        let (result, mut body, _) = exchange(get("/"), answer).await;
        assert!(
            matches!(result, Err(H1Error::Invalid(_))),
            "{}",
            String::from_utf8_lossy(answer)
        );
        assert!(body.take_connection().is_none());
    }
}

#[tokio::test]
async fn transfer_encoding_beside_content_length_is_chunked_and_the_connection_retired() {
    let (result, mut body, _) = exchange(
        get("/"),
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let (_, headers, data, _) = result.unwrap();
    assert_eq!(data, "hello");
    assert!(!headers.contains_key("content-length"));
    assert!(body.take_connection().is_none());
}

#[tokio::test]
async fn content_length_must_agree_with_itself() {
    let (result, _, _) = exchange(
        get("/"),
        b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    assert_eq!(result.unwrap().2, "ok");
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2 3\r\n\r\nok",
    ] {
        let (connection, mut server) = pair().await;
        let server_side = async move {
            read_request(&mut server, 0).await;
            server.write_all(answer).await.unwrap();
            server
        };
        let (sent, _server) = tokio::join!(connection.send(get("/")), server_side);
        let err = sent.err().expect("an invalid length is refused").error;
        assert!(matches!(err, H1Error::Invalid(_)), "{err}");
    }
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let (result, _, _) = exchange(
        get("/"),
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n\
          HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(result.unwrap().0, 201);
}

#[tokio::test]
async fn http10_and_connection_close_answers_are_not_reused() {
    for answer in [
        &b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
    ] {
        let (result, mut body, _) = exchange(get("/"), answer).await;
        assert_eq!(result.unwrap().2, "ok");
        assert!(body.take_connection().is_none());
    }
    let (_, mut body, _) = exchange(
        get("/"),
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    assert!(body.take_connection().is_some());
}

#[tokio::test]
async fn a_body_without_length_runs_until_the_upstream_closes() {
    let (connection, mut server) = pair().await;
    let server_side = async move {
        read_request(&mut server, 0).await;
        server
            .write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
            .await
            .unwrap();
        drop(server);
    };
    let (sent, ()) = tokio::join!(connection.send(get("/")), server_side);
    let mut body = sent.ok().unwrap().into_body();
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        data.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(data, b"until the end");
    assert!(body.take_connection().is_none());
}

#[tokio::test]
async fn a_head_answer_has_no_body_whatever_its_length_says() {
    let mut request = get("/");
    *request.method_mut() = Method::HEAD;
    let (result, mut body, _) =
        exchange(request, b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n").await;
    let (_, headers, data, _) = result.unwrap();
    assert_eq!(headers["content-length"], "100");
    assert!(data.is_empty());
    assert!(body.take_connection().is_some());
}

#[tokio::test]
async fn a_head_past_the_limit_is_refused() {
    let (connection, mut server) = pair().await;
    let server_side = async move {
        read_request(&mut server, 0).await;
        let filler = "a".repeat(20 * 1024);
        let answer = format!("HTTP/1.1 200 OK\r\nx-filler: {filler}\r\n\r\n");
        let _ = server.write_all(answer.as_bytes()).await;
        server
    };
    let (sent, _server) = tokio::join!(connection.send(get("/")), server_side);
    assert!(matches!(sent.err().unwrap().error, H1Error::HeadTooLarge));
}

#[tokio::test]
async fn a_buffered_body_is_sent_with_its_length_in_one_write() {
    let mut request = get("/upload");
    *request.method_mut() = Method::POST;
    *request.body_mut() = RequestBody::buffered(Bytes::from_static(b"payload"), None);
    let (connection, mut server) = pair().await;
    let server_side = async move {
        let head = read_request(&mut server, 7).await;
        server
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        (head, server)
    };
    let (sent, (head, _server)) = tokio::join!(connection.send(request), server_side);
    assert_eq!(sent.ok().unwrap().status(), 204);
    assert!(head.starts_with("POST /upload HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("content-length: 7\r\n"), "{head}");
    assert!(head.ends_with("\r\n\r\npayload"), "{head}");
}

#[tokio::test]
async fn a_reused_connection_closed_before_answering_gives_an_idempotent_request_back() {
    for (method, given_back) in [(Method::GET, true), (Method::POST, false)] {
        let (mut connection, mut server) = pair().await;
        connection.reused = true;
        let server_side = async move {
            read_request(&mut server, 0).await;
            drop(server);
        };
        let mut request = get("/");
        *request.method_mut() = method.clone();
        let (sent, ()) = tokio::join!(connection.send(request), server_side);
        let err = sent.err().unwrap();
        assert!(matches!(err.error, H1Error::ClosedEarly), "{}", err.error);
        assert_eq!(err.unsent.is_some(), given_back, "{method}");
    }
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_stale() {
    let (mut connection, server) = pair().await;
    assert!(!connection.is_stale());
    drop(server);
    // The reactor learns of the FIN on its next turn; yield until it has (bounded).
    let mut turns = 0;
    while !connection.is_stale() {
        turns += 1;
        assert!(turns < 10_000, "the close was never seen");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn an_idle_connection_the_upstream_wrote_to_is_stale() {
    let (mut connection, mut server) = pair().await;
    server
        .write_all(b"HTTP/1.1 408 Timeout\r\n\r\n")
        .await
        .unwrap();
    let mut turns = 0;
    while !connection.is_stale() {
        turns += 1;
        assert!(turns < 10_000, "the bytes were never seen");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_request_whose_body_was_taken_is_never_given_back_for_resending() {
    for (method, body, given_back) in [
        (Method::GET, None, true),
        (Method::POST, Some(Bytes::from_static(b"payload")), false),
    ] {
        let (mut connection, server) = pair().await;
        // The upstream resets the connection before anything is written to it.
        server.set_zero_linger().unwrap();
        drop(server);
        let mut turns = 0;
        while !connection.is_stale() {
            turns += 1;
            assert!(turns < 10_000, "the reset was never seen");
            tokio::task::yield_now().await;
        }
        let mut request = get("/");
        *request.method_mut() = method.clone();
        if let Some(body) = body {
            *request.body_mut() = RequestBody::buffered(body, None);
        }
        let err = connection
            .send(request)
            .await
            .err()
            .expect("the write fails");
        // A body frame that left the body with a failed write is gone: sending the rest again
        // would deliver a body without its start.
        assert_eq!(err.unsent.is_some(), given_back, "{method}: {}", err.error);
    }
}

/// The fields a client is sent after `finish_response`'s hygiene, sorted, as the head is read now
/// (hop-by-hop fields left out of a clean head, the hygiene pass run on any other) and whether
/// the head was clean.
fn after_hygiene(head: &[u8], method_is_head: bool) -> (Vec<(String, String)>, bool) {
    let mut buf = bytes::BytesMut::from(head);
    let parsed =
        super::response::parse(&mut buf, &mut Vec::new(), 64 * 1024, method_is_head, false)
            .unwrap()
            .expect("a whole head");
    let clean = parsed.clean;
    let (mut parts, ..) = parsed.into_parts();
    if !clean {
        crate::pipeline::headers::remove_hop_by_hop(&mut parts.headers, false);
        parts.headers.remove("gantry-fallback");
    }
    (sorted(&parts.headers), clean)
}

/// The same, the long way: every field into the map (less a `Content-Length` beside a
/// `Transfer-Encoding` on a response with a body), then the whole hygiene pass.
fn reference_hygiene(head: &[u8], method_is_head: bool) -> Vec<(String, String)> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut slots);
    assert!(response.parse(head).unwrap().is_complete());
    let mut headers = HeaderMap::new();
    for field in response.headers.iter() {
        headers.append(
            http::HeaderName::from_bytes(field.name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(field.value).unwrap(),
        );
    }
    let bodiless = method_is_head || matches!(response.code, Some(101 | 204 | 304));
    if !bodiless && headers.contains_key("transfer-encoding") {
        headers.remove("content-length");
    }
    crate::pipeline::headers::remove_hop_by_hop(&mut headers, false);
    headers.remove("gantry-fallback");
    sorted(&headers)
}

/// The fields a client is sent when the head is passed through unparsed (`None`: it takes the
/// map), read back from the bytes the server would write; every line must end in CRLF.
fn passed_through(head: &[u8], method_is_head: bool) -> Option<Vec<(String, String)>> {
    let mut buf = bytes::BytesMut::from(head);
    let parsed = super::response::parse(&mut buf, &mut Vec::new(), 64 * 1024, method_is_head, true)
        .unwrap()
        .expect("a whole head");
    let (parts, _, raw) = parsed.into_parts();
    let raw = raw?;
    assert!(parts.headers.is_empty(), "the map stays empty");
    let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
    raw.write_to(&mut out);
    out.extend_from_slice(b"\r\n");
    for (at, byte) in out.iter().enumerate() {
        assert!(
            *byte != b'\n' || out[at - 1] == b'\r',
            "a bare LF in {out:?}"
        );
    }
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut slots);
    assert!(response.parse(&out).unwrap().is_complete());
    let mut headers = HeaderMap::new();
    for field in response.headers.iter() {
        headers.append(
            http::HeaderName::from_bytes(field.name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(field.value).unwrap(),
        );
    }
    Some(sorted(&headers))
}

fn sorted(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn hop_by_hop_fields_left_out_while_reading_match_the_hygiene_pass() {
    // (head, whether the fast path may take it)
    let cases: &[(&str, bool)] = &[
        (
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 29 Nov 2026 16:00:00 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 6\r\nConnection: keep-alive\r\n\r\n",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 6\r\ndate: x\r\nkeep-alive: timeout=5\r\n\
             connection: Keep-Alive\r\nx-kept: yes\r\n\r\n",
            true,
        ),
        // Spellings no table holds take the general path to the same names.
        (
            "HTTP/1.1 200 OK\r\nCONTENT-length: 6\r\nCONNECTION: close\r\nKEEP-ALIVE: 1\r\n\
             Proxy-Connection: keep-alive\r\nproxy-authenticate: Basic\r\n\
             Proxy-Authorization: x\r\nUPGRADE: h2c\r\nX-Kept: yes\r\n\r\n",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nUpgrade: h2,h2c\r\nConnection: Upgrade, close\r\n\
             Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            true,
        ),
        // A field named in `Connection`, before or after it, in one `Connection` field or another.
        (
            "HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: keep-alive\r\n\
             Connection: x-secret\r\nContent-Length: 0\r\nX-Kept: yes\r\n\r\n",
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: close, X-SECRET\r\nx-secret: 1\r\n\
             Keep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nconnection: close\r\nclose: 1\r\n\r\n",
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nclose: 1\r\nContent-Length: 0\r\n\r\n",
            true,
        ),
        // TE survives only as `trailers`; `Gantry-*` fields are only Gantry's to send.
        (
            "HTTP/1.1 200 OK\r\nTE: trailers, deflate\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nte: deflate\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (
            "HTTP/1.1 503 Service Unavailable\r\nGantry-Fallback: true\r\n\
             Gantry-Other: 1\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\ncontent-length: 4\r\n\r\n",
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\
             ETag: \"a\"\r\nConnection: ,\r\n\r\n",
            true,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: max=5\r\n\r\n",
            true,
        ),
    ];
    let mut passed = 0;
    for (head, fast) in cases {
        for method_is_head in [false, true] {
            let (fields, clean) = after_hygiene(head.as_bytes(), method_is_head);
            let reference = reference_hygiene(head.as_bytes(), method_is_head);
            assert_eq!(fields, reference, "{head}");
            assert_eq!(clean, *fast, "{head}");
            // Passed through unparsed, the client gets the same fields.
            if let Some(raw) = passed_through(head.as_bytes(), method_is_head) {
                assert!(clean && !method_is_head, "{head}");
                assert_eq!(raw, reference, "{head}");
                passed += 1;
            }
        }
    }
    // The clean heads with a body and no framing conflict: the first three and `close: 1`, the
    // HTTP/1.0 one.
    assert_eq!(passed, 5);
}

#[test]
fn heads_with_something_to_decide_are_never_passed_through() {
    for head in [
        // The server replaces the request id.
        "HTTP/1.1 200 OK\r\nX-Request-Id: theirs\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-REQUEST-id: theirs\r\nContent-Length: 0\r\n\r\n",
        // No body (its length field is the server's to decide), or a length beside chunked.
        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        // An empty value: its line's end is not known from the value.
        "HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n",
        // Cut into more runs than are kept.
        "HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: 1\r\nB: 2\r\nKeep-Alive: 1\r\nC: 3\r\n\
         Keep-Alive: 1\r\nD: 4\r\nKeep-Alive: 1\r\nE: 5\r\nContent-Length: 0\r\n\r\n",
    ] {
        assert_eq!(passed_through(head.as_bytes(), false), None, "{head}");
    }
    // Four runs are kept.
    let four = "HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: 1\r\nB: 2\r\nKeep-Alive: 1\r\nC: 3\r\n\
                Keep-Alive: 1\r\nD: 4\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        passed_through(four.as_bytes(), false).map(|f| f.len()),
        Some(5)
    );
}

#[test]
fn framing_reads_every_spelling_of_its_fields() {
    for (head, framing, keep_alive) in [
        (
            "HTTP/1.1 200 OK\r\nCONTENT-length: 5\r\n\r\n",
            BodyFraming::Length(5),
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCONNECTION: Close\r\n\r\n",
            BodyFraming::Length(5),
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
            BodyFraming::Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            BodyFraming::Chunked,
            false,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            BodyFraming::UntilClose,
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n",
            BodyFraming::Empty,
            true,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            BodyFraming::Empty,
            false,
        ),
    ] {
        let mut buf = bytes::BytesMut::from(head.as_bytes());
        let parsed = super::response::parse(&mut buf, &mut Vec::new(), 64 * 1024, false, false)
            .unwrap()
            .expect("a whole head");
        assert_eq!(parsed.keep_alive, keep_alive, "{head}");
        assert_eq!(parsed.into_parts().1, framing, "{head}");
    }
    for lie in [
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCONTENT-LENGTH: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    ] {
        let mut buf = bytes::BytesMut::from(lie.as_bytes());
        let parsed = super::response::parse(&mut buf, &mut Vec::new(), 64 * 1024, false, false);
        assert!(matches!(parsed, Err(H1Error::Invalid(_))), "{lie}");
    }
}

#[test]
fn a_101_keeps_every_field_for_the_upgrade_to_decide() {
    let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                Connection: Upgrade\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\n";
    let mut buf = bytes::BytesMut::from(head.as_bytes());
    let parsed = super::response::parse(&mut buf, &mut Vec::new(), 64 * 1024, false, false)
        .unwrap()
        .expect("a whole head");
    assert!(!parsed.clean);
    let (parts, framing, _) = parsed.into_parts();
    assert_eq!(framing, BodyFraming::Upgrade);
    assert_eq!(parts.headers.len(), 4);
    assert_eq!(parts.headers["keep-alive"], "timeout=5");
}

#[tokio::test]
async fn a_reused_connection_writes_each_head_whole_and_alone() {
    let (connection, mut server) = pair().await;
    let mut connection = Some(connection);
    // A small head, a head larger than the buffer a connection keeps, then a small one again.
    let big = "b".repeat(10 * 1024);
    for (path, filler) in [("/first", "a"), ("/second", big.as_str()), ("/third", "c")] {
        let mut request = get(path);
        request
            .headers_mut()
            .insert("x-filler", filler.parse().unwrap());
        let server_side = async {
            let head = read_request(&mut server, 0).await;
            server
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            head
        };
        let (sent, head) = tokio::join!(connection.take().unwrap().send(request), server_side);
        let expected =
            format!("GET {path} HTTP/1.1\r\nhost: upstream\r\nx-filler: {filler}\r\n\r\n");
        assert_eq!(head, expected);
        let mut body = sent.ok().unwrap().into_body();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ok"
        );
        assert!(body.frame().await.is_none());
        connection = body.take_connection();
        assert!(connection.is_some(), "{path}");
    }
}
