#![allow(clippy::unwrap_used)]
//! Gantry's own HTTP/1.1 server (`src/server/h1`), end to end over raw TCP: what HTTP/1.0 clients
//! get, trailers only for clients that ask, an upgrade that carries bytes sent right behind the
//! request, and an early answer that survives a client still uploading.
//! (Framing, smuggling, pipelining, `Expect` and timeouts are in `framing.rs`, `smuggling.rs` and
//! `slow_clients.rs`.)

mod support;

use support::client::find;
use support::{RawConn, TestGateway, Upstream};

const CATCH_ALL: &str =
    "  - { name: all, match: { path_prefix: / }, upstream: backend, websocket: true }";

async fn gateway(up: &Upstream, server: &str) -> TestGateway {
    TestGateway::simple(&up.url(), "", CATCH_ALL, server).await
}

#[tokio::test(flavor = "multi_thread")]
async fn http10_clients_get_close_delimited_streams_and_keep_alive_only_when_asked() {
    let up = Upstream::start("echo").await;
    let gw = gateway(&up, "").await;
    // A streamed body of unknown length: HTTP/1.0 has no chunked, so the close ends it.
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /slow?chunks=3&delay_ms=5 HTTP/1.0\r\nHost: a.example\r\n\r\n")
        .await
        .unwrap();
    let response = conn.read_response().await.expect("an answer");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), None, "{response:?}");
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body_text(), "chunk-0\nchunk-1\nchunk-2\n");
    assert!(conn.wait_closed().await);

    // `Connection: keep-alive` and a known length: the connection carries a second request.
    let mut conn = RawConn::connect(gw.addr).await;
    for _ in 0..2 {
        conn.send(b"GET /echo HTTP/1.0\r\nHost: a.example\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let response = conn.read_response().await.expect("an answer");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), Some("keep-alive"));
        assert!(response.header("content-length").is_some());
    }
    assert!(!conn.is_closed().await);
    assert_eq!(up.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn trailers_go_only_to_clients_that_ask_for_them() {
    let up = Upstream::start("echo").await;
    let gw = gateway(&up, "").await;
    for (te, expected) in [("", false), ("TE: trailers\r\n", true)] {
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(format!("GET /trailers HTTP/1.1\r\nHost: a.example\r\n{te}\r\n").as_bytes())
            .await
            .unwrap();
        let response = conn.read_response().await.expect("an answer");
        assert_eq!(response.status, 200);
        assert_eq!(response.body_text(), "ok");
        assert_eq!(response.header("transfer-encoding"), Some("chunked"));
        let sent = response
            .trailers
            .iter()
            .any(|(name, value)| name == "x-trailer" && value == "yes");
        assert_eq!(sent, expected, "{te:?}: {response:?}");
        // The connection is still in step: a second request on it is answered.
        conn.send(b"GET /echo HTTP/1.1\r\nHost: a.example\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(conn.read_response().await.expect("an answer").status, 200);
    }
}

/// A masked WebSocket text frame from a client.
fn client_text_frame(text: &str) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![0x81, 0x80 | u8::try_from(text.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frame_sent_right_behind_the_upgrade_request_reaches_the_upstream() {
    let up = Upstream::start("ws").await;
    let gw = gateway(&up, "").await;
    let mut conn = RawConn::connect(gw.addr).await;
    let mut bytes =
        b"GET /ws HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            .to_vec();
    // In the same write as the handshake: the server has read it together with the head.
    bytes.extend(client_text_frame("early"));
    conn.send(&bytes).await.unwrap();
    let response = conn.read_head_response().await.expect("the 101");
    assert_eq!(response.status, 101, "{response:?}");
    // The upstream echoes the frame back, unmasked: 0x81, length 5, "early".
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while find(conn.buffered(), b"early").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no echo: {:?}",
            conn.buffered()
        );
        if conn.is_closed().await {
            panic!("closed without the echo: {:?}", conn.buffered());
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        find(conn.buffered(), &[0x81, 0x05]).is_some(),
        "{:?}",
        conn.buffered()
    );
}

/// The server closes with upload bytes still unread; it then reads and discards for a moment
/// (lingering close, as nginx does) so the reset those bytes would cause cannot overtake the
/// answer. On Linux loopback the answer also arrived without the linger when tried, so this test
/// pins the behaviour (413, close, nothing forwarded), not the linger itself.
#[tokio::test(flavor = "multi_thread")]
async fn an_early_answer_reaches_a_client_that_is_still_uploading() {
    let up = Upstream::start("echo").await;
    let gw = gateway(&up, "  limits: { max_body_bytes: 1KiB }").await;
    let mut conn = RawConn::connect(gw.addr).await;
    // The head announces 4 MiB; 256 KiB of it follow at once, more than the gateway reads.
    conn.send(b"POST /sink HTTP/1.1\r\nHost: a.example\r\nContent-Length: 4194304\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'x'; 256 * 1024];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn.send(&chunk)).await;
    let response = conn.read_response().await.expect("the 413, not a reset");
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(conn.wait_closed().await);
    assert_eq!(up.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_heads_are_answered_logged_and_counted_by_reason() {
    let up = Upstream::start("echo").await;
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
server:
  limits: {{ max_uri_bytes: 1KiB, max_header_bytes: 1KiB }}
upstreams:
  backend: {{ targets: [{{ url: \"{}\" }}] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: backend }}
",
        up.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let long_target = format!("GET /{} HTTP/1.1\r\n", "u".repeat(64 * 1024));
    let long_field = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(64 * 1024)
    );
    for (bytes, status) in [
        (
            "GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n".to_owned(),
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n".to_owned(),
            400,
        ),
        (long_target, 414),
        (long_field, 431),
    ] {
        let raw = support::raw_request(gw.addr, bytes.as_bytes()).await;
        assert_eq!(raw.statuses(), vec![status], "{}", raw.text());
        assert_eq!(
            raw.responses()[0].header("content-type"),
            Some("application/problem+json")
        );
    }
    let admin = gw.gateway().admin_addr().unwrap();
    let (_, _, metrics) = support::get(&format!("http://{admin}/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics);
    for line in [
        "gantry_http1_heads_refused_total{listener=\"public\",reason=\"malformed-request\"} 2",
        "gantry_http1_heads_refused_total{listener=\"public\",reason=\"uri-too-long\"} 1",
        "gantry_http1_heads_refused_total{listener=\"public\",reason=\"headers-too-large\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    assert_eq!(up.request_count(), 0);
}
