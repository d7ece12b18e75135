#![allow(clippy::unwrap_used)]
//! Slow and abusive clients, over raw TCP: slowloris (a head trickled byte by byte), slow POST
//! (a body that stalls or trickles), idle connections filling `max_connections`, and a client
//! that never reads its response. Each is ended by a timeout or limit, and a normal client is
//! served while (or right after) it happens. No test asserts timing: each asserts that the slow
//! connection is closed, what it was answered, and that the normal client got its 200.

mod support;

use std::time::Duration;

use support::{RawConn, TestGateway, Upstream};

/// One catch-all route to `backend`.
const CATCH_ALL: &str = "  - { name: all, match: { path_prefix: / }, upstream: backend }";

/// A well-behaved client's request on a fresh connection.
async fn normal_client_gets_200(gw: &TestGateway) {
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /echo HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let response = conn
        .read_response()
        .await
        .expect("the normal client is answered");
    assert_eq!(response.status, 200, "{response:?}");
}

/// Polls `done` every few milliseconds until it holds; panics after a 10 s safety net.
async fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "safety net: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_trickling_a_head_is_closed_and_others_are_served() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(
        &up.url(),
        "",
        CATCH_ALL,
        "  limits: { header_read_timeout: 500ms }",
    )
    .await;
    let mut slow = RawConn::connect(gw.addr).await;
    // A head that never ends: one byte at a time, as slowhttptest does. Each byte is progress,
    // but header_read_timeout bounds the whole head, so the trickle cannot keep it open.
    // Always a valid partial head (so the parser never rejects it as malformed), ~10 s of trickle at
    // most: a safety net, should the timeout never fire.
    let mut trickle = b"GET /echo HTTP/1.1\r\nHost: a.example\r\n".to_vec();
    trickle.extend(b"X-a: b\r\n".repeat(60));
    let mut closed = false;
    for (i, byte) in trickle.iter().enumerate() {
        if slow.send(&[*byte]).await.is_err() || slow.is_closed().await {
            closed = true;
            break;
        }
        if i == 5 {
            // Others are served while the attack is going on.
            normal_client_gets_200(&gw).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "the trickling connection was never closed");
    assert!(slow.wait_closed().await);
    // A head timeout is answered with a 408 problem when it can be written, or just closed.
    let leftover = String::from_utf8_lossy(slow.buffered()).into_owned();
    assert!(
        leftover.is_empty() || leftover.starts_with("HTTP/1.1 408"),
        "{leftover:?}"
    );
    assert_eq!(
        up.count_path("/echo"),
        1,
        "only the normal client reached the upstream"
    );
    normal_client_gets_200(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_post_that_stalls_is_408_and_closed() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(&up.url(), "    timeouts: { idle: 300ms }", CATCH_ALL, "").await;
    let mut slow = RawConn::connect(gw.addr).await;
    slow.send(b"POST /sink HTTP/1.1\r\nHost: a.example\r\nContent-Length: 100000\r\n\r\nabc")
        .await
        .unwrap();
    normal_client_gets_200(&gw).await;
    let response = slow
        .read_response()
        .await
        .expect("an answer to the stalled body");
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(
        response.json()["type"],
        "urn:gantry:problem:request-body-timeout"
    );
    assert!(
        slow.wait_closed().await,
        "a stalled body must close the connection"
    );
    normal_client_gets_200(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_post_that_trickles_is_bounded_by_the_request_timeout() {
    let up = Upstream::start("echo").await;
    // Each byte arrives within `idle`, so only `request` (until response headers) bounds it.
    let gw = TestGateway::simple(
        &up.url(),
        "    timeouts: { idle: 5s, request: 500ms }",
        CATCH_ALL,
        "",
    )
    .await;
    let mut slow = RawConn::connect(gw.addr).await;
    slow.send(b"POST /sink HTTP/1.1\r\nHost: a.example\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    let mut cut_off = false;
    // At most ~10 s of trickle: a safety net, should the request timeout never fire.
    for _ in 0..500 {
        if slow.send(b"x").await.is_err() || slow.is_closed().await || !slow.buffered().is_empty() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cut_off, "the trickled body was never cut off");
    // The 504 may be lost to the reset that closing over unread bytes causes, so the access log
    // is the witness; what did arrive must be that 504.
    let log = gw.access_log(1).await;
    assert_eq!(log[0]["path"], "/sink", "{log:?}");
    assert_eq!(log[0]["status"], 504, "{log:?}");
    assert_eq!(log[0]["error"], "upstream-timeout", "{log:?}");
    let answer = String::from_utf8_lossy(slow.buffered()).into_owned();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 504"),
        "{answer:?}"
    );
    normal_client_gets_200(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_filling_max_connections_are_reaped_and_others_served() {
    let up = Upstream::start("echo").await;
    let gw = TestGateway::simple(
        &up.url(),
        "",
        CATCH_ALL,
        "  limits: { max_connections: 3, header_read_timeout: 300ms, idle_timeout: 300ms }",
    )
    .await;
    // Every slot taken by a connection that never sends a byte.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(RawConn::connect(gw.addr).await);
    }
    // A fourth client waits in the accept queue until the idle ones are closed, then is served.
    normal_client_gets_200(&gw).await;
    for conn in &mut idle {
        assert!(conn.wait_closed().await, "an idle connection kept its slot");
    }
    normal_client_gets_200(&gw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn at_max_connections_silent_connections_make_room_and_speaking_ones_stay() {
    let up = Upstream::start("echo").await;
    // Timeouts far past the 10 s safety net: only reclaiming can let the new client in.
    let gw = TestGateway::simple(
        &up.url(),
        "",
        CATCH_ALL,
        "  limits: { max_connections: 3, header_read_timeout: 60s, idle_timeout: 60s }",
    )
    .await;
    // A keep-alive client that has spoken holds one slot.
    let mut speaking = RawConn::connect(gw.addr).await;
    let keep_alive_get = b"GET /echo HTTP/1.1\r\nHost: a.example\r\n\r\n";
    speaking.send(keep_alive_get).await.unwrap();
    assert_eq!(speaking.read_response().await.unwrap().status, 200);
    // Two connections that never send a byte take the other slots (an idle flood).
    let mut silent = vec![
        RawConn::connect(gw.addr).await,
        RawConn::connect(gw.addr).await,
    ];
    // The listener is full; a new client is let in once the silent ones are closed for it.
    normal_client_gets_200(&gw).await;
    for conn in &mut silent {
        assert!(
            conn.wait_closed().await,
            "a silent connection kept its slot"
        );
    }
    // The client that had spoken was not touched.
    speaking.send(keep_alive_get).await.unwrap();
    assert_eq!(speaking.read_response().await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_reads_is_cut_off_after_idle_timeout() {
    let up = Upstream::start("bulk").await;
    let other = Upstream::start("other").await;
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
server:
  limits: {{ idle_timeout: 500ms }}
upstreams:
  bulk: {{ targets: [{{ url: \"{}\" }}] }}
  other: {{ targets: [{{ url: \"{}\" }}] }}
routes:
  - {{ name: bulk, match: {{ path_prefix: /bytes }}, upstream: bulk }}
  - {{ name: other, match: {{ path_prefix: / }}, upstream: other }}
",
        up.url(),
        other.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let mut reader = RawConn::connect(gw.addr).await;
    // 64 MiB: far more than the socket buffers on both sides can hold.
    let size: u64 = 64 * 1024 * 1024;
    reader
        .send(format!("GET /bytes/{size} HTTP/1.1\r\nHost: a.example\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The upstream is sending and the client does not read: the gateway's writes stall.
    up.wait_for_requests(1).await;
    normal_client_gets_200(&gw).await;
    // The gateway gives up on the stalled connection and drops its upstream call, whose
    // connection cannot be reused mid-body.
    poll_until(
        "the upstream connection of the stalled client closes",
        || up.open_connections() == 0,
    )
    .await;
    // What the client can still read ends early: the response was cut, not completed. The close
    // is a reset: a FIN would sit behind the unsent bytes, unseen by a client that never reads,
    // and the kernel would keep the orphaned socket and its buffer.
    let mut received: u64 = 0;
    let stream = reader.stream_mut();
    let mut buf = vec![0u8; 1 << 20];
    let end = loop {
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) => break None,
            Ok(Err(e)) => break Some(e.kind()),
            Ok(Ok(n)) => received += n as u64,
            Err(_) => panic!("safety net: the stalled connection was never closed"),
        }
    };
    assert!(received < size, "the whole response arrived: {received}");
    assert_eq!(
        end,
        Some(std::io::ErrorKind::ConnectionReset),
        "the stalled connection ended with an orderly close"
    );
    normal_client_gets_200(&gw).await;
    assert_eq!(other.request_count(), 2);
}
