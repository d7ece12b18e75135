#![allow(clippy::unwrap_used)]
//! Gantry's own HTTP/1.1 client to upstreams (`src/upstream/h1`), end to end against raw TCP
//! upstreams that close, answer early or lie about framing.

mod support;

use http::Request;
use support::{Collected, RawConn, RawUpstream, TestClient, TestGateway, empty, http1_client};

const CATCH_ALL: &str = "  - { name: all, match: { path_prefix: / }, upstream: backend }";

async fn gateway_to(upstream: &RawUpstream) -> TestGateway {
    TestGateway::simple(&upstream.url(), "", CATCH_ALL, "").await
}

/// `GET /` through `gw`.
async fn get_root(client: &TestClient, gw: &TestGateway) -> Collected {
    client
        .fetch(Request::get(gw.url("/")).body(empty()).unwrap())
        .await
}

/// A gateway whose route `/ws` allows WebSocket upgrades to `upstream`.
async fn websocket_gateway_to(upstream: &RawUpstream) -> TestGateway {
    let route = "  - { name: chat, match: { path: /ws }, upstream: backend, websocket: true }";
    TestGateway::simple(&upstream.url(), "", route, "").await
}

#[tokio::test]
async fn connections_the_upstream_closes_after_each_answer_are_replaced_without_errors() {
    // Answers one request per connection, then closes without saying so (no `Connection: close`):
    // a pooled connection is dead by the time the next request wants it.
    let upstream = RawUpstream::start(|mut conn| async move {
        if conn.read_request().await.is_some() {
            let _ = conn
                .write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
        conn.close().await;
    })
    .await;
    let gw = gateway_to(&upstream).await;
    let client = http1_client();
    for _ in 0..5 {
        let response = get_root(&client, &gw).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.text(), "ok");
    }
    assert_eq!(upstream.connection_count(), 5);
}

#[tokio::test]
async fn an_answer_before_the_whole_body_is_passed_on_and_its_connection_not_reused() {
    let upstream = RawUpstream::answer_head_then_hold(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!",
    )
    .await;
    let gw = gateway_to(&upstream).await;
    // The client announces a megabyte and sends a kilobyte: the upstream answers at once.
    let mut client = RawConn::connect(gw.addr).await;
    client
        .send(b"POST /upload HTTP/1.1\r\nhost: a.example\r\ncontent-length: 1000000\r\n\r\n")
        .await
        .unwrap();
    client.send(&[b'x'; 1000]).await.unwrap();
    let response = client.read_response().await.expect("an answer");
    assert_eq!(response.status, 413);
    assert_eq!(response.body_text(), "big!");
    // That connection never carries another request: the upstream would read the rest of the
    // body as one.
    let response = http1_client()
        .fetch(Request::get(gw.url("/next")).body(empty()).unwrap())
        .await;
    assert_eq!(response.status, 413);
    assert_eq!(upstream.connection_count(), 2);
}

#[tokio::test]
async fn a_response_with_both_lengths_is_read_as_chunked_and_its_connection_retired() {
    let upstream = RawUpstream::respond_with(
        "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let gw = gateway_to(&upstream).await;
    let client = http1_client();
    for _ in 0..2 {
        let response = get_root(&client, &gw).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "hello");
    }
    assert_eq!(upstream.connection_count(), 2);
}

#[tokio::test]
async fn conflicting_lengths_and_unasked_protocol_switches_are_a_bad_gateway() {
    for answer in [
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 20\r\n\r\nok",
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    ] {
        let upstream = RawUpstream::respond_with(answer).await;
        let gw = gateway_to(&upstream).await;
        let response = get_root(&http1_client(), &gw).await;
        assert_eq!(response.status, 502, "{answer}");
        assert_eq!(
            response.json()["type"],
            "urn:gantry:problem:upstream-failed"
        );
    }
}

#[tokio::test]
async fn a_chunked_upload_of_unknown_length_reaches_the_upstream_chunked() {
    let upstream =
        RawUpstream::respond_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let gw = gateway_to(&upstream).await;
    let mut client = RawConn::connect(gw.addr).await;
    client
        .send(
            b"POST /up HTTP/1.1\r\nhost: a.example\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let response = client.read_response().await.expect("an answer");
    assert_eq!(response.status, 200);
    let received = String::from_utf8(upstream.received()).unwrap();
    assert!(
        received.contains("transfer-encoding: chunked\r\n"),
        "{received}"
    );
    assert!(!received.contains("content-length"), "{received}");
    let body = &received[received.find("\r\n\r\n").unwrap() + 4..];
    // Re-chunked as the client's frames arrived; the bytes inside are the client's.
    let (decoded, _, _) = support::client::decode_chunked(body.as_bytes()).expect("valid chunked");
    assert_eq!(decoded, b"hello world");
}

/// A gateway (with its admin API) whose one upstream `svc` is `upstream` plus `settings`, after
/// one request answered `ok` left a connection in the pool.
async fn pooled_gateway(upstream: &RawUpstream, settings: &str) -> TestGateway {
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
observability: {{ access_log: {{ format: off }} }}
upstreams:
  svc: {{ targets: [{{ url: \"{}\" }}]{settings} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}
",
        upstream.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let response = get_root(&http1_client(), &gw).await;
    assert_eq!(response.text(), "ok");
    gw
}

#[tokio::test]
async fn idle_connections_the_upstream_closes_are_swept_from_the_pool() {
    // Keeps each connection open until the gateway has had its answer, then closes it while it
    // sits idle in the pool: nobody reads an idle connection, so only the sweep can notice.
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let upstream = RawUpstream::start(move |mut conn| {
        let mut close = close_rx.clone();
        async move {
            if conn.read_request().await.is_some() {
                let _ = conn
                    .write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = close.wait_for(|close| *close).await;
            }
            conn.close().await;
        }
    })
    .await;
    let gw = pooled_gateway(&upstream, "").await;
    gw.wait_for_upstream("svc", "one idle connection", |svc| {
        svc["targets"][0]["idle_connections"] == 1
    })
    .await;
    close_tx.send_replace(true);
    gw.wait_for_upstream("svc", "the closed connection swept", |svc| {
        svc["targets"][0]["idle_connections"] == 0
    })
    .await;
}

#[tokio::test]
async fn idle_connections_past_the_idle_timeout_are_closed_by_the_sweep() {
    // The upstream never closes a connection: only the pool's idle expiry can.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let upstream = RawUpstream::start(move |mut conn| {
        let closed = closed_tx.clone();
        async move {
            while conn.read_request().await.is_some() {
                let _ = conn
                    .write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
            let _ = closed.send(());
        }
    })
    .await;
    let gw = pooled_gateway(&upstream, ", timeouts: { idle: 300ms }").await;
    tokio::time::timeout(std::time::Duration::from_secs(10), closed_rx.recv())
        .await
        .expect("the idle connection was closed by the gateway");
    gw.wait_for_upstream("svc", "no idle connection", |svc| {
        svc["targets"][0]["idle_connections"] == 0
    })
    .await;
    assert_eq!(upstream.connection_count(), 1);
}

#[tokio::test]
async fn bytes_an_upstream_sends_right_after_its_101_reach_the_websocket_client() {
    use futures_util::StreamExt as _;
    // A server that speaks first: its greeting frame goes out in the same write as the 101, so
    // the gateway has it buffered with the response head and must pass it on before tunnelling.
    let upstream = RawUpstream::start(|mut conn| async move {
        let Some(head) = conn.read_request_head().await else {
            return;
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let key = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-accept: {accept}\r\n\r\n"
        )
        .into_bytes();
        out.extend_from_slice(&[0x81, 5]);
        out.extend_from_slice(b"hello");
        let _ = conn.write(&out).await;
        conn.read_to_close().await;
    })
    .await;
    let gw = websocket_gateway_to(&upstream).await;
    let mut ws = support::client::ws_connect(&format!("ws://{}/ws", gw.addr)).await;
    let greeting = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("safety net: no greeting within 10 s")
        .expect("a frame")
        .expect("a valid frame");
    assert_eq!(greeting.into_text().unwrap().as_str(), "hello");
}

#[tokio::test]
async fn hop_by_hop_fields_of_any_spelling_never_reach_the_client() {
    // (answer, whether its connection is reused)
    let answers = [
        // Spellings no table holds take the general path, framing included.
        (
            "HTTP/1.1 200 OK\r\nCONTENT-length: 5\r\nKEEP-ALIVE: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\
             X-Kept: yes\r\n\r\nhello",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCONNECTION: close\r\nX-Kept: yes\r\n\r\nhello",
            false,
        ),
        // A field named in `Connection`, before it.
        (
            "HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: keep-alive, X-Secret\r\n\
             Keep-Alive: timeout=5\r\nContent-Length: 5\r\nX-Kept: yes\r\n\r\nhello",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nGantry-Fallback: true\r\n\
             Proxy-Authenticate: Basic\r\nx-kept: yes\r\n\r\nhello",
            true,
        ),
    ];
    for (answer, reused) in answers {
        let upstream = RawUpstream::respond_with(answer).await;
        let gw = gateway_to(&upstream).await;
        let client = http1_client();
        for _ in 0..2 {
            let response = get_root(&client, &gw).await;
            assert_eq!(response.status, 200, "{answer}");
            assert_eq!(response.text(), "hello", "{answer}");
            assert_eq!(response.headers["x-kept"], "yes", "{answer}");
            assert_eq!(response.headers["via"], "1.1 gantry", "{answer}");
            for gone in [
                "connection",
                "keep-alive",
                "proxy-connection",
                "proxy-authenticate",
                "upgrade",
                "x-secret",
                "gantry-fallback",
            ] {
                assert!(
                    response.headers.get(gone).is_none(),
                    "{gone} reached the client: {answer}"
                );
            }
        }
        let expected = if reused { 1 } else { 2 };
        assert_eq!(upstream.connection_count(), expected, "{answer}");
    }
}

#[tokio::test]
async fn a_101_keeps_its_upgrade_and_loses_its_other_hop_by_hop_fields() {
    let upstream = RawUpstream::answer_head_then_hold(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
          Connection: Upgrade, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\nSec-WebSocket-Accept: abc\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    let gw = websocket_gateway_to(&upstream).await;
    let mut client = RawConn::connect(gw.addr).await;
    client
        .send(
            b"GET /ws HTTP/1.1\r\nhost: a.example\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
              sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let response = client.read_head_response().await.expect("an answer");
    assert_eq!(response.status, 101);
    assert_eq!(response.header("upgrade"), Some("websocket"));
    assert_eq!(response.header_all("connection"), ["upgrade"]);
    assert_eq!(response.header("x-kept"), Some("yes"));
    for gone in ["keep-alive", "x-secret", "proxy-connection"] {
        assert!(response.header(gone).is_none(), "{gone} reached the client");
    }
}
