//! Self-test of the end-to-end support code: every upstream behaviour and client helper, used
//! directly (no gateway in between).

mod support;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use support::body::{channel_body, empty, full, pattern_body, pattern_mismatch};
use support::client::{
    self, RawConn, collect, h2_client, http1_client, parse_response, raw_request, ws_connect,
};
use support::raw_upstream::RawUpstream;
use support::upstream::Upstream;

fn get_request(url: &str) -> Request<support::body::TestBody> {
    Request::get(url).body(empty()).expect("request")
}

#[tokio::test]
async fn echo_describes_the_request_over_http1() {
    let up = Upstream::start("alpha").await;
    let request = Request::post(format!("{}/echo/x?a=1&b=2", up.url()))
        .header("x-multi", "one")
        .header("x-multi", "two")
        .header("X-Single", "yes")
        .body(full("hello"))
        .expect("request");
    let c = http1_client().fetch(request).await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.headers["x-upstream"], "alpha");
    let v = c.json();
    assert_eq!(v["upstream"], "alpha");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo/x");
    assert_eq!(v["query"], "a=1&b=2");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["headers"]["x-single"], "yes");
    assert_eq!(v["headers"]["x-multi"], serde_json::json!(["one", "two"]));
    assert_eq!(v["body"], "hello");
    assert_eq!(v["body_len"], 5);

    let recorded = up.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(up.request_count(), 1);
    assert_eq!(recorded[0].method, http::Method::POST);
    assert_eq!(recorded[0].uri.path(), "/echo/x");
    assert_eq!(recorded[0].version, Version::HTTP_11);
    assert_eq!(recorded[0].headers["x-single"], "yes");
    assert_eq!(recorded[0].body_len, 5);
    assert_eq!(up.last_request().expect("one request").body_len, 5);
}

#[tokio::test]
async fn unknown_paths_echo_and_h2_prior_knowledge_works() {
    let up = Upstream::start("beta").await;
    let (status, _, body) = h2_client().get(&format!("{}/whatever", up.url())).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["path"], "/whatever");
    assert_eq!(v["version"], "HTTP/2.0");
    assert_eq!(v["body"], "");
    assert_eq!(up.requests()[0].version, Version::HTTP_2);
}

#[tokio::test]
async fn free_get_and_send_use_a_fresh_http1_client() {
    let up = Upstream::start("free").await;
    let (status, headers, _) = client::get(&format!("{}/echo", up.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let response = client::send(get_request(&format!("{}/status/201", up.url())))
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn status_returns_the_requested_code() {
    let up = Upstream::start("s").await;
    let (status, _, body) = client::get(&format!("{}/status/503", up.url())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["status"], 503);
    let (status, _, body) = client::get(&format!("{}/status/204", up.url())).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
    let (status, _, _) = client::get(&format!("{}/status/abc", up.url())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bytes_streams_the_pattern_with_content_length() {
    let up = Upstream::start("b").await;
    let (status, headers, body) = client::get(&format!("{}/bytes/1048576", up.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], "1048576");
    assert_eq!(body.len(), 1_048_576);
    assert_eq!(pattern_mismatch(0, &body), None);
    assert_eq!(&body[..3], b"abc");

    // Count a larger body frame by frame without keeping it.
    let response = http1_client()
        .send(get_request(&format!("{}/bytes/33554439", up.url())))
        .await
        .expect("send");
    let mut body = response.into_body();
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            assert_eq!(pattern_mismatch(seen, &data), None);
            seen += data.len() as u64;
        }
    }
    assert_eq!(seen, 33_554_439);
}

#[tokio::test]
async fn sink_counts_a_streamed_upload() {
    let up = Upstream::start("sink").await;
    for client in [http1_client(), h2_client()] {
        let request = Request::post(format!("{}/sink", up.url()))
            .body(pattern_body(10 << 20))
            .expect("request");
        let c = client.fetch(request).await;
        assert_eq!(c.status, StatusCode::OK);
        assert_eq!(c.json()["received"], 10 << 20);
        assert_eq!(up.last_request().expect("recorded").body_len, 10 << 20);
    }
}

#[tokio::test]
async fn slow_streams_all_chunks() {
    let up = Upstream::start("slow").await;
    let (status, _, body) = client::get(&format!("{}/slow?chunks=4&delay_ms=1", up.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"chunk-0\nchunk-1\nchunk-2\nchunk-3\n");
}

async fn next_data(body: &mut hyper::body::Incoming) -> Option<Bytes> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            // h2 may end the stream with an empty DATA frame.
            if !data.is_empty() {
                return Some(data);
            }
        }
    }
    None
}

#[tokio::test]
async fn gate_streams_first_chunk_then_waits_for_release() {
    let up = Upstream::start("gate").await;
    for (id, client) in [("g1", http1_client()), ("g2", h2_client())] {
        let response = client
            .send(get_request(&format!("{}/gate/{id}", up.url())))
            .await
            .expect("send");
        let mut body = response.into_body();
        assert_eq!(next_data(&mut body).await.expect("first"), "first\n");
        up.release(id);
        assert_eq!(next_data(&mut body).await.expect("done"), "done\n");
        assert_eq!(next_data(&mut body).await, None);
    }
    // Released before the request arrives: finishes at once.
    up.release("early");
    let (_, _, body) = client::get(&format!("{}/gate/early", up.url())).await;
    assert_eq!(&body[..], b"first\ndone\n");
}

#[tokio::test]
async fn hang_holds_the_request_until_the_upstream_is_dropped() {
    let up = Upstream::start("hang").await;
    let url = format!("{}/hang", up.url());
    let pending = tokio::spawn(async move { client::send(get_request(&url)).await });
    up.wait_for_requests(1).await;
    up.wait_for_connections(1).await;
    assert_eq!(up.requests()[0].uri.path(), "/hang");
    assert_eq!(up.open_connections(), 1);
    drop(up);
    assert!(pending.await.expect("join").is_err());
}

#[tokio::test]
async fn headers_hang_on_h2_ends_when_the_upstream_is_dropped() {
    let up = Upstream::start("hang2").await;
    let url = format!("{}/headers-hang", up.url());
    let pending = tokio::spawn(async move { h2_client().send(get_request(&url)).await });
    up.wait_for_requests(1).await;
    drop(up);
    assert!(pending.await.expect("join").is_err());
}

#[tokio::test]
async fn body_hang_sends_one_chunk_then_stalls() {
    let up = Upstream::start("bh").await;
    let response = http1_client()
        .send(get_request(&format!("{}/body-hang", up.url())))
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.expect("frame").expect("ok");
    assert_eq!(first.into_data().expect("data"), "chunk-0\n");
    drop(up);
    // The body never finished: it must end in an error, not a clean end.
    let mut errored = false;
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            errored = true;
            break;
        }
    }
    assert!(errored);
}

#[tokio::test]
async fn trailers_are_visible_on_h2() {
    let up = Upstream::start("t").await;
    let c = h2_client()
        .fetch(get_request(&format!("{}/trailers", up.url())))
        .await;
    assert_eq!(c.body, "ok");
    let trailers = c.trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-trailer"], "yes");
}

#[tokio::test]
async fn trailers_are_sent_on_http1_when_te_trailers() {
    let up = Upstream::start("t1").await;
    let raw = raw_request(
        up.addr(),
        b"GET /trailers HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.closed_by_peer);
    let responses = raw.responses();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].body, b"ok");
    assert!(
        responses[0]
            .trailers
            .contains(&("grpc-status".into(), "0".into()))
    );
    assert!(
        responses[0]
            .trailers
            .contains(&("x-trailer".into(), "yes".into()))
    );
}

#[tokio::test]
async fn big_headers_sets_x_big() {
    let up = Upstream::start("big").await;
    let (status, headers, _) = client::get(&format!("{}/big-headers/20000", up.url())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-big"].len(), 20000);
}

#[tokio::test]
async fn set_hop_headers_sends_hop_by_hop_headers() {
    let up = Upstream::start("hop").await;
    let raw = raw_request(
        up.addr(),
        b"GET /set-hop-headers HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .await;
    // The response says `Connection: close`, so the upstream closes after it.
    assert!(raw.closed_by_peer);
    let r = &raw.responses()[0];
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close, x-custom-hop"));
    assert_eq!(r.header("x-custom-hop"), Some("1"));
    assert_eq!(r.header("keep-alive"), Some("timeout=5"));
    assert_eq!(r.header("proxy-authenticate"), Some("x"));
    assert_eq!(r.header("trailer"), Some("x"));
    assert_eq!(r.header("upgrade"), Some("foo"));
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn websocket_echoes_text_and_binary() {
    let up = Upstream::start("ws").await;
    let mut ws = ws_connect(&format!("ws://{}/ws", up.addr())).await;
    ws.send(Message::text("hi")).await.expect("send text");
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::text("hi")
    );
    ws.send(Message::binary(vec![0u8, 1, 2]))
        .await
        .expect("send binary");
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::binary(vec![0u8, 1, 2])
    );
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
    assert_eq!(up.requests()[0].uri.path(), "/ws");
}

#[tokio::test]
async fn try_ws_connect_reports_a_refused_handshake() {
    let up = Upstream::start("nows").await;
    // `/status/403` never upgrades.
    let err = client::try_ws_connect(&format!("ws://{}/status/403", up.addr())).await;
    assert!(err.is_err());
}

#[tokio::test]
async fn grpc_echoes_the_body_as_it_streams_with_trailers() {
    let up = Upstream::start("grpc").await;
    let (tx, body) = channel_body();
    let request = Request::post(format!("{}/grpc/pkg.Svc/Method", up.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .expect("request");
    let response = h2_client().send(request).await.expect("send");
    assert_eq!(response.headers()["content-type"], "application/grpc");
    let mut incoming = response.into_body();
    // Each message comes back before the next one is sent: the echo streams.
    assert!(tx.send_data(&b"\0\0\0\0\x01A"[..]).await);
    assert_eq!(
        next_data(&mut incoming).await.expect("echo 1"),
        &b"\0\0\0\0\x01A"[..]
    );
    assert!(tx.send_data(&b"\0\0\0\0\x01B"[..]).await);
    assert_eq!(
        next_data(&mut incoming).await.expect("echo 2"),
        &b"\0\0\0\0\x01B"[..]
    );
    drop(tx);
    let rest = incoming.collect().await.expect("rest");
    let trailers = rest.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    assert_eq!(up.last_request().expect("recorded").body_len, 12);
}

#[tokio::test]
async fn expect_100_continue_then_body() {
    let up = Upstream::start("exp").await;
    let mut conn = RawConn::connect(up.addr()).await;
    conn.send(
        b"POST /expect HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .expect("send head");
    let interim = conn.read_response().await.expect("100");
    assert_eq!(interim.status, 100);
    conn.send(b"hello").await.expect("send body");
    let response = conn.read_response().await.expect("200");
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["received"], 5);
    assert_eq!(response.json()["expect"], "100-continue");
}

#[tokio::test]
async fn connection_count_counts_tcp_connections() {
    let up = Upstream::start("cc").await;
    let c = http1_client();
    for _ in 0..3 {
        c.get(&format!("{}/echo", up.url())).await;
    }
    assert_eq!(up.request_count(), 3);
    assert_eq!(up.connection_count(), 1);
    client::get(&format!("{}/echo", up.url())).await;
    assert_eq!(up.connection_count(), 2);
}

#[tokio::test]
async fn raw_request_reads_pipelined_responses_until_close() {
    let up = Upstream::start("pipe").await;
    let raw = raw_request(
        up.addr(),
        b"GET /status/201 HTTP/1.1\r\nHost: p\r\n\r\nGET /slow?chunks=2&delay_ms=0 HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.closed_by_peer);
    assert_eq!(raw.error, None);
    assert_eq!(raw.statuses(), vec![201, 200]);
    let responses = raw.responses();
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[1].header("transfer-encoding"), Some("chunked"));
    assert_eq!(responses[1].body_text(), "chunk-0\nchunk-1\n");
    assert!(raw.text().starts_with("HTTP/1.1 201"));
}

#[tokio::test]
async fn raw_conn_keeps_alive_and_sees_the_close() {
    let up = Upstream::start("rc").await;
    let mut conn = RawConn::connect(up.addr()).await;
    conn.send(b"GET /bytes/10 HTTP/1.1\r\nHost: r\r\n\r\n")
        .await
        .expect("send");
    let r = conn.read_response().await.expect("response");
    assert_eq!(r.body, b"abcdefghij");
    assert!(!conn.is_closed().await);
    conn.send(b"HEAD /bytes/10 HTTP/1.1\r\nHost: r\r\n\r\n")
        .await
        .expect("send");
    let r = conn.read_head_response().await.expect("head response");
    assert_eq!(r.header("content-length"), Some("10"));
    conn.send(b"GET /echo HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let r = conn.read_response().await.expect("response");
    assert_eq!(r.json()["path"], "/echo");
    assert!(conn.wait_closed().await);
    assert!(conn.is_closed().await);
    assert!(conn.read_response().await.is_none());
    assert!(conn.buffered().is_empty());
    assert_eq!(up.connection_count(), 1);
}

#[test]
fn parse_response_handles_chunked_and_close_delimited_bodies() {
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\nrest";
    let (r, used) = parse_response(chunked, false, false).expect("complete");
    assert_eq!(r.body, b"abc");
    assert_eq!(r.trailers, vec![("x-t".to_owned(), "1".to_owned())]);
    assert_eq!(&chunked[used..], b"rest");
    assert!(parse_response(&chunked[..40], false, false).is_none());

    let delimited = b"HTTP/1.0 200 OK\r\n\r\nuntil close";
    assert!(parse_response(delimited, false, false).is_none());
    let (r, _) = parse_response(delimited, true, false).expect("complete at eof");
    assert_eq!(r.body, b"until close");
}

#[tokio::test]
async fn raw_reset_gives_a_connection_error() {
    let raw = RawUpstream::reset_after_request().await;
    let result = client::send(get_request(&format!("{}/x", raw.url()))).await;
    assert!(result.is_err());
    assert_eq!(raw.connection_count(), 1);
    assert_eq!(raw.request_lines(), 1);

    let response = raw_request(raw.addr(), b"GET /y HTTP/1.1\r\nHost: r\r\n\r\n").await;
    assert!(response.closed_by_peer);
    assert_eq!(response.error, Some(std::io::ErrorKind::ConnectionReset));
    assert!(response.statuses().is_empty());
    raw.wait_for_connections(2).await;
}

#[tokio::test]
async fn raw_truncate_gives_a_body_error() {
    let raw = RawUpstream::truncate(100, 10).await;
    let response = client::send(get_request(&raw.url()))
        .await
        .expect("head arrives");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "100");
    assert!(collect(response).await.is_err());
}

#[tokio::test]
async fn raw_close_mid_chunked_gives_a_body_error() {
    let raw = RawUpstream::close_mid_chunked().await;
    let response = client::send(get_request(&raw.url()))
        .await
        .expect("head arrives");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(collect(response).await.is_err());
}

#[tokio::test]
async fn raw_garbage_is_not_http() {
    let raw = RawUpstream::garbage().await;
    assert!(client::send(get_request(&raw.url())).await.is_err());
    let response = raw_request(raw.addr(), b"GET / HTTP/1.1\r\nHost: g\r\n\r\n").await;
    assert!(response.text().contains("not http"));
    assert!(response.statuses().is_empty());
}

#[tokio::test]
async fn raw_huge_head_has_the_requested_size() {
    let raw = RawUpstream::huge_head(100_000).await;
    let mut conn = RawConn::connect(raw.addr()).await;
    for _ in 0..2 {
        conn.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .expect("send");
        let r = conn.read_response().await.expect("response");
        assert_eq!(r.status, 200);
        assert!(r.header("x-huge").expect("x-huge").len() > 99_000);
    }
    assert_eq!(raw.connection_count(), 1);
    assert_eq!(raw.request_lines(), 2);
    // A head this size is rejected by hyper's client (default limit ~400 KiB).
    let too_big = RawUpstream::huge_head(1 << 20).await;
    assert!(client::send(get_request(&too_big.url())).await.is_err());
}

#[tokio::test]
async fn raw_custom_handler_records_bytes_per_connection() {
    let raw = RawUpstream::start(|mut conn| async move {
        while let Some(request) = conn.read_request().await {
            let body = format!("{}", request.len());
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if conn.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
    let c = http1_client();
    let request = Request::post(raw.url())
        .body(full("12345"))
        .expect("request");
    let collected = c.fetch(request).await;
    assert_eq!(collected.status, StatusCode::OK);
    let (_, _, body) = client::get(&format!("{}/second", raw.url())).await;
    assert!(!body.is_empty());
    raw.wait_for_connections(2).await;
    let per_connection = raw.received_per_connection();
    assert_eq!(per_connection.len(), 2);
    assert!(per_connection[0].ends_with(b"\r\n\r\n12345"));
    assert!(per_connection[1].starts_with(b"GET /second HTTP/1.1\r\n"));
    assert_eq!(raw.request_lines(), 2);
    assert_eq!(
        raw.received().len(),
        per_connection[0].len() + per_connection[1].len()
    );
}

#[tokio::test]
async fn raw_respond_with_answers_every_request() {
    let raw = RawUpstream::respond_with(
        b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 2\r\n\r\nhi".to_vec(),
    )
    .await;
    let c = http1_client();
    for _ in 0..2 {
        let (status, _, body) = c.get(&raw.url()).await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(body, "hi");
    }
    assert_eq!(raw.connection_count(), 1);
    assert_eq!(raw.request_lines(), 2);
}

#[tokio::test]
async fn body_sender_abort_fails_the_upload() {
    let up = Upstream::start("abort").await;
    let (tx, body) = channel_body();
    let request = Request::post(format!("{}/sink", up.url()))
        .body(body)
        .expect("request");
    let pending = tokio::spawn(async move { h2_client().send(request).await });
    assert!(tx.send_data("partial").await);
    up.wait_for_requests(1).await;
    tx.abort().await;
    // The upstream saw a broken body: the h2 stream is reset, so the client gets no 200.
    let result = pending.await.expect("join");
    assert!(result.is_err() || result.expect("response").status() != StatusCode::OK);
}

/// 1 GiB each way without buffering it (about a second on loopback, even unoptimised).
#[tokio::test]
async fn one_gib_download_and_upload() {
    let up = Upstream::start("gib").await;
    let response = http1_client()
        .send(get_request(&format!("{}/bytes/{}", up.url(), 1u64 << 30)))
        .await
        .expect("send");
    let mut body = response.into_body();
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            seen += data.len() as u64;
        }
    }
    assert_eq!(seen, 1 << 30);
    let request = Request::post(format!("{}/sink", up.url()))
        .body(pattern_body(1 << 30))
        .expect("request");
    let c = http1_client().fetch(request).await;
    assert_eq!(c.json()["received"], 1u64 << 30);
}

#[tokio::test]
async fn injected_faults_apply_to_everything_but_healthz() {
    let up = Upstream::start("faulty").await;
    let client = http1_client();
    up.set_fault(support::Fault::Status(503));
    assert_eq!(client.get(&format!("{}/x", up.url())).await.0, 503);
    assert_eq!(client.get(&format!("{}/healthz", up.url())).await.0, 200);
    up.set_health(500);
    assert_eq!(client.get(&format!("{}/healthz", up.url())).await.0, 500);

    up.set_fault(support::Fault::Flapping(502));
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(client.get(&format!("{}/x", up.url())).await.0.as_u16());
        }
        out
    };
    assert_eq!(statuses, [502, 200, 502, 200]);

    up.set_fault(support::Fault::Slow(std::time::Duration::from_millis(1)));
    assert_eq!(client.get(&format!("{}/x", up.url())).await.0, 200);

    // Reset: the connection closes without an answer.
    up.set_fault(support::Fault::Reset);
    assert!(
        client
            .send(get_request(&format!("{}/x", up.url())))
            .await
            .is_err()
    );

    // Hang: the request arrives and is never answered.
    up.set_fault(support::Fault::Hang);
    let hung = tokio::spawn({
        let client = client.clone();
        let url = format!("{}/x", up.url());
        async move { client.send(get_request(&url)).await.is_ok() }
    });
    up.wait_for_requests(10).await;
    assert!(!hung.is_finished());
    hung.abort();
    assert_eq!(up.count_path("/healthz"), 2);
    assert_eq!(up.traffic_count(), 8);
}

#[tokio::test]
async fn the_dns_server_answers_a_and_srv_and_fails_on_demand() {
    let dns = support::DnsServer::start().await;
    dns.set_a("a.test", &[std::net::Ipv4Addr::new(127, 0, 0, 9)]);
    // A hand-made query for a.test A (id 0x1234, RD).
    let query = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 4, b't', b'e', b's', b't', 0, 0,
        1, 0, 1,
    ];
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    socket.send_to(&query, dns.addr()).await.expect("send");
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).await.expect("recv");
    let reply = &buf[..n];
    assert_eq!(&reply[..2], &[0x12, 0x34]);
    assert_eq!(reply[3] & 0x0f, 0, "NOERROR");
    assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 1, "one answer");
    assert_eq!(&reply[n - 4..], &[127, 0, 0, 9]);
    dns.set_failing(true);
    socket.send_to(&query, dns.addr()).await.expect("send");
    let n = socket.recv(&mut buf).await.expect("recv");
    assert_eq!(buf[3] & 0x0f, 2, "SERVFAIL");
    assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), 0);
    assert_eq!(n, query.len(), "the question only");
    assert_eq!(dns.queries(), 2);
}
