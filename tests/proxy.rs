#![allow(clippy::unwrap_used)]
//! Proxy correctness end to end: streaming, header hygiene, trust boundary, protocols, failure
//! propagation, errors, request ids and the access log. Every test runs the real gateway in-process
//! against real servers on 127.0.0.1:0.

mod support;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Request};
use http_body_util::BodyExt;
use support::{
    RawConn, RawUpstream, TestGateway, Upstream, collect, empty, full, h2_client, http1_client,
    pattern_body, pattern_mismatch, upload_reading_concurrently, ws_connect,
};

const ROUTE_ALL: &str = "  - { name: all, match: { path_prefix: / }, upstream: backend }";

async fn gateway_to(url: &str) -> TestGateway {
    TestGateway::simple(url, "", ROUTE_ALL, "").await
}

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_streams_both_ways_with_flat_memory() {
    const GIB: u64 = 1 << 30;
    let upstream = Upstream::start("big").await;
    let gw = gateway_to(&upstream.url()).await;
    let client = http1_client();
    let before = vm_kib("VmRSS:");

    // Download: read frame by frame, checking the pattern, never holding the body.
    let response = client
        .send(
            Request::get(gw.url(&format!("/bytes/{GIB}")))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        GIB.to_string().as_str()
    );
    let mut body = response.into_body();
    let mut offset = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            assert_eq!(pattern_mismatch(offset, &data), None);
            offset += data.len() as u64;
        }
    }
    assert_eq!(offset, GIB);

    // Upload: a lazily generated 1 GiB body. The default max_body_bytes is 10MiB: the upload must
    // be refused (413) and the connection closed while the body is still going out, so the answer
    // is read concurrently with the upload (a client that reads only after writing can see
    // BrokenPipe first).
    let refused = upload_reading_concurrently(
        gw.addr,
        &format!(
            "POST /sink HTTP/1.1\r\nHost: {}\r\nContent-Length: {GIB}\r\n\r\n",
            gw.addr
        ),
        GIB,
    )
    .await;
    let response = refused.response.expect("an answer to the oversized upload");
    assert_eq!(response.status, 413);
    assert!(
        refused.sent < GIB,
        "the whole GiB went out: {}",
        refused.sent
    );
    drop(gw);

    // ...so run the upload against a gateway whose limit allows it.
    let gw = TestGateway::simple(
        &upstream.url(),
        "",
        ROUTE_ALL,
        "  limits: { max_body_bytes: 2GiB }",
    )
    .await;
    let upload = Request::post(gw.url("/sink"))
        .body(pattern_body(GIB))
        .unwrap();
    let done = client.fetch(upload).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.json()["received"], GIB);

    let peak = vm_kib("VmHWM:");
    // Two GiB went through this process (client, gateway and upstream all in it); memory stayed flat.
    assert!(
        peak.saturating_sub(before) < 128 * 1024,
        "peak RSS grew by {} KiB",
        peak - before
    );
}

#[tokio::test]
async fn a_slow_upstream_reaches_the_client_chunk_by_chunk() {
    let upstream = Upstream::start("slow").await;
    let gw = gateway_to(&upstream.url()).await;
    for client in [http1_client(), h2_client()] {
        let response = client
            .send(Request::get(gw.url("/gate/g1")).body(empty()).unwrap())
            .await
            .unwrap();
        let mut body = response.into_body();
        // The first chunk arrives while the upstream is still holding the rest back.
        let first = loop {
            let frame = body.frame().await.unwrap().unwrap();
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                break data;
            }
        };
        assert_eq!(first, Bytes::from_static(b"first\n"));
        upstream.release("g1");
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, Bytes::from_static(b"done\n"));
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let upstream = Upstream::start("hop").await;
    let gw = gateway_to(&upstream.url()).await;
    let request = Request::get(gw.url("/echo"))
        .header("connection", "keep-alive, x-secret-hop")
        .header("x-secret-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic abc")
        .header("te", "trailers, deflate")
        .header("upgrade", "h2c")
        .header("x-end-to-end", "kept")
        .body(empty())
        .unwrap();
    let echo = http1_client().fetch(request).await.json();
    let headers = &echo["headers"];
    for gone in [
        "x-secret-hop",
        "keep-alive",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} reached the upstream: {headers}"
        );
    }
    assert_eq!(headers["te"], "trailers");
    assert_eq!(headers["x-end-to-end"], "kept");

    let response = http1_client()
        .fetch(
            Request::get(gw.url("/set-hop-headers"))
                .body(empty())
                .unwrap(),
        )
        .await;
    for gone in [
        "x-custom-hop",
        "keep-alive",
        "proxy-authenticate",
        "upgrade",
    ] {
        assert!(
            response.headers.get(gone).is_none(),
            "{gone} reached the client"
        );
    }
    assert_eq!(response.headers["x-end-to-end"], "kept");
    assert_eq!(response.headers["via"], "1.1 gantry");
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
    let upstream = Upstream::start("trust").await;
    let gw = gateway_to(&upstream.url()).await;
    let request = Request::get(gw.url("/echo"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=6.6.6.6")
        .header("gantry-consumer", "admin")
        .header("Gantry-Subject", "root")
        .body(empty())
        .unwrap();
    let echo = http1_client().fetch(request).await.json();
    let headers = &echo["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert!(headers.get("forwarded").is_none());
    assert!(headers.get("gantry-consumer").is_none());
    assert!(headers.get("gantry-subject").is_none());
    assert_eq!(headers["via"], "1.1 gantry");
}

#[tokio::test]
async fn forwarding_headers_from_a_trusted_peer_are_extended() {
    let upstream = Upstream::start("trusted").await;
    let gw = TestGateway::simple(
        &upstream.url(),
        "",
        ROUTE_ALL,
        "  trusted_proxies: [127.0.0.1/32]",
    )
    .await;
    let request = Request::get(gw.url("/echo"))
        .header("x-forwarded-for", "6.6.6.6")
        .body(empty())
        .unwrap();
    let echo = http1_client().fetch(request).await.json();
    assert_eq!(echo["headers"]["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
    assert_eq!(echo["headers"]["x-real-ip"], "6.6.6.6");
    let log = gw.access_log(1).await;
    assert_eq!(log[0]["client_ip"], "6.6.6.6");
}

#[tokio::test]
async fn a_request_carrying_our_via_entry_is_a_loop() {
    let upstream = Upstream::start("loop").await;
    let gw = gateway_to(&upstream.url()).await;
    let request = Request::get(gw.url("/echo"))
        .header("via", "1.1 edge, 1.1 gantry")
        .body(empty())
        .unwrap();
    let response = http1_client().fetch(request).await;
    assert_eq!(response.status, 508);
    assert_eq!(response.json()["type"], "urn:gantry:problem:loop-detected");
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn h2c_clients_reach_http1_upstreams_and_host_must_match_authority() {
    let upstream = Upstream::start("h2c").await;
    let gw = gateway_to(&upstream.url()).await;
    let (status, _, body) = h2_client().get(&gw.url("/echo")).await;
    assert_eq!(status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["headers"]["host"], gw.addr.to_string());

    let request = Request::get(gw.url("/echo"))
        .header("host", "evil.example")
        .body(empty())
        .unwrap();
    let response = h2_client().fetch(request).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["type"], "urn:gantry:problem:host-mismatch");
}

#[tokio::test]
async fn grpc_passes_through_h2_with_trailers() {
    let upstream = Upstream::start("grpc").await;
    let gw = TestGateway::simple(&upstream.url(), "    protocol: grpc", ROUTE_ALL, "").await;
    let message = Bytes::from_static(b"\0\0\0\0\x05hello");
    let request = Request::post(gw.url("/grpc/inventory.v1.Inventory/GetItem"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(message.clone()))
        .unwrap();
    let response = h2_client().fetch(request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, message);
    let trailers = response.trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    assert_eq!(
        upstream.last_request().unwrap().version,
        http::Version::HTTP_2
    );
}

#[tokio::test]
async fn grpc_clients_get_gateway_errors_as_trailers_only_responses() {
    let upstream = Upstream::start("grpc-err").await;
    let gw = TestGateway::simple(
        &upstream.url(),
        "    protocol: grpc",
        "  - { name: only, match: { path: /known }, upstream: backend }",
        "",
    )
    .await;
    let request = Request::post(gw.url("/pkg.Service/Missing"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(empty())
        .unwrap();
    let response = h2_client().fetch(request).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["grpc-status"], "12");
    assert!(response.headers.contains_key("grpc-message"));
    assert!(response.body.is_empty());
}

#[tokio::test]
async fn http1_trailers_pass_when_the_client_accepts_them() {
    let upstream = Upstream::start("trailers").await;
    let gw = gateway_to(&upstream.url()).await;
    let request = Request::get(gw.url("/trailers"))
        .header("te", "trailers")
        .body(empty())
        .unwrap();
    let response = http1_client().fetch(request).await;
    assert_eq!(response.body, Bytes::from_static(b"ok"));
    let trailers = response.trailers.expect("trailers over HTTP/1.1");
    assert_eq!(trailers["x-trailer"], "yes");
}

#[tokio::test]
async fn websocket_upgrades_pass_only_on_websocket_routes() {
    let upstream = Upstream::start("ws").await;
    let gw = TestGateway::simple(
        &upstream.url(),
        "",
        "  - { name: chat, match: { path: /ws }, upstream: backend, websocket: true }\n  - { name: plain, match: { path: /ws-plain }, upstream: backend, rewrite: { path: /ws } }",
        "",
    )
    .await;
    let mut ws = ws_connect(&format!("ws://{}/ws", gw.addr)).await;
    ws.send(tungstenite_text("hello")).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "hello");
    ws.close(None).await.unwrap();

    // The same upstream behind a route without `websocket: true`: the Upgrade header is stripped.
    let refused = support::client::try_ws_connect(&format!("ws://{}/ws-plain", gw.addr)).await;
    assert!(refused.is_err());
    let last = upstream.last_request().unwrap();
    assert!(last.headers.get("upgrade").is_none());
}

fn tungstenite_text(text: &str) -> tokio_tungstenite::tungstenite::Message {
    tokio_tungstenite::tungstenite::Message::text(text)
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_call_and_is_logged_as_499() {
    let upstream = Upstream::start("hang").await;
    let gw = gateway_to(&upstream.url()).await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /hang HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    upstream.wait_for_requests(1).await;
    assert_eq!(upstream.open_connections(), 1);
    drop(conn);
    // The gateway drops its upstream call, which closes the upstream connection.
    for _ in 0..1000 {
        if upstream.open_connections() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.open_connections(), 0);
    let log = gw.access_log(1).await;
    assert_eq!(log[0]["status"], 499);
    assert_eq!(log[0]["route"], "all");
}

#[tokio::test]
async fn an_upstream_that_dies_mid_body_aborts_the_client_response() {
    for upstream in [
        RawUpstream::truncate(100_000, 50_000).await,
        RawUpstream::close_mid_chunked().await,
    ] {
        let gw = gateway_to(&upstream.url()).await;
        for client in [http1_client(), h2_client()] {
            let response = client
                .send(Request::get(gw.url("/x")).body(empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert!(
                collect(response).await.is_err(),
                "a truncated body must not end cleanly"
            );
        }
    }
}

#[tokio::test]
async fn upstream_failures_map_to_502_504() {
    // Connection refused: a port that was just free.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let gw = gateway_to(&format!("http://{closed}")).await;
    let response = http1_client()
        .fetch(Request::get(gw.url("/x")).body(empty()).unwrap())
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(
        response.json()["type"],
        "urn:gantry:problem:upstream-unreachable"
    );
    assert!(
        !response.text().contains(&closed.to_string()),
        "5xx bodies never name addresses"
    );

    let reset = RawUpstream::reset_after_request().await;
    let gw = gateway_to(&reset.url()).await;
    let response = http1_client()
        .fetch(Request::get(gw.url("/x")).body(empty()).unwrap())
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(
        response.json()["type"],
        "urn:gantry:problem:upstream-failed"
    );

    let garbage = RawUpstream::garbage().await;
    let gw = gateway_to(&garbage.url()).await;
    let response = http1_client()
        .fetch(Request::get(gw.url("/x")).body(empty()).unwrap())
        .await;
    assert_eq!(response.status, 502);

    let huge = RawUpstream::huge_head(64 * 1024).await;
    let gw = TestGateway::simple(
        &huge.url(),
        "",
        ROUTE_ALL,
        "  limits: { max_header_bytes: 16KiB }",
    )
    .await;
    let response = http1_client()
        .fetch(Request::get(gw.url("/x")).body(empty()).unwrap())
        .await;
    assert_eq!(response.status, 502);

    let hang = Upstream::start("hang").await;
    let gw = TestGateway::simple(
        &hang.url(),
        "    timeouts: { request: 200ms }",
        ROUTE_ALL,
        "",
    )
    .await;
    let response = http1_client()
        .fetch(Request::get(gw.url("/hang")).body(empty()).unwrap())
        .await;
    assert_eq!(response.status, 504);
    assert_eq!(
        response.json()["type"],
        "urn:gantry:problem:upstream-timeout"
    );
}

#[tokio::test]
async fn request_ids_are_kept_when_well_formed_and_replaced_otherwise() {
    let upstream = Upstream::start("ids").await;
    let gw = gateway_to(&upstream.url()).await;
    let request = Request::get(gw.url("/echo"))
        .header("x-request-id", "abc-123_x.y")
        .body(empty())
        .unwrap();
    let response = http1_client().fetch(request).await;
    assert_eq!(response.headers["x-request-id"], "abc-123_x.y");
    assert_eq!(response.json()["headers"]["x-request-id"], "abc-123_x.y");

    for bad in ["has space", &"x".repeat(129), "semi;colon"] {
        let request = Request::get(gw.url("/echo"))
            .header("x-request-id", HeaderValue::from_str(bad).unwrap())
            .body(empty())
            .unwrap();
        let response = http1_client().fetch(request).await;
        let returned = response.headers["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(returned, bad);
        assert_eq!(returned.len(), 36, "a UUID: {returned}");
        assert_eq!(
            response.json()["headers"]["x-request-id"],
            returned.as_str()
        );
    }
}

#[tokio::test]
async fn the_access_log_has_one_json_line_per_request_without_secrets() {
    let upstream = Upstream::start("log").await;
    let gw = gateway_to(&upstream.url()).await;
    let request = Request::post(gw.url("/echo?api_key=s3cret&page=2"))
        .header("authorization", "Bearer topsecret")
        .header("x-request-id", "log-test-1")
        .body(full("hello"))
        .unwrap();
    let response = http1_client().fetch(request).await;
    assert_eq!(response.status, 200);
    let lines = gw.access_log(1).await;
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["request_id"], "log-test-1");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/echo?api_key=REDACTED&page=2");
    assert_eq!(line["route"], "all");
    assert_eq!(line["upstream"], "backend");
    assert_eq!(line["target"], upstream.addr().to_string());
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes_in"], 5);
    assert_eq!(line["bytes_out"], response.body.len());
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert!(line["duration_ms"].is_number());
    assert!(line["upstream_ms"].is_number());
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    let text = line.to_string();
    assert!(!text.contains("s3cret") && !text.contains("topsecret"));
}

#[tokio::test]
async fn http1_upstream_connections_are_pooled_and_reused() {
    let upstream = Upstream::start("pool").await;
    let gw = gateway_to(&upstream.url()).await;
    for _ in 0..20 {
        let (status, _, _) = http1_client().get(&gw.url("/echo")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(upstream.request_count(), 20);
    assert_eq!(upstream.connection_count(), 1);
}

#[tokio::test]
async fn h2_upstreams_get_http2_and_the_original_authority() {
    let upstream = Upstream::start("h2up").await;
    let gw = TestGateway::simple(&upstream.url(), "    protocol: h2", ROUTE_ALL, "").await;
    let request = Request::get(gw.url("/echo"))
        .header("host", "api.example.com")
        .body(empty())
        .unwrap();
    let echo = http1_client().fetch(request).await.json();
    assert_eq!(echo["version"], "HTTP/2.0");
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.uri.authority().unwrap().as_str(), "api.example.com");

    let gw = TestGateway::simple(&upstream.url(), "    host_header: target", ROUTE_ALL, "").await;
    let request = Request::get(gw.url("/echo"))
        .header("host", "api.example.com")
        .body(empty())
        .unwrap();
    let echo = http1_client().fetch(request).await.json();
    assert_eq!(echo["headers"]["host"], upstream.addr().to_string());
}

#[tokio::test]
async fn requests_with_methods_and_bodies_pass_intact() {
    let upstream = Upstream::start("methods").await;
    let gw = gateway_to(&upstream.url()).await;
    for method in [
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        let request = Request::builder()
            .method(method.clone())
            .uri(gw.url("/echo"))
            .body(full("payload"))
            .unwrap();
        let echo = http1_client().fetch(request).await.json();
        assert_eq!(echo["method"], method.as_str());
        assert_eq!(echo["body"], "payload");
    }
}

#[tokio::test]
async fn bodies_that_stall_past_the_idle_timeout_are_cut_both_ways() {
    let upstream = Upstream::start("stall").await;
    let gw = TestGateway::simple(
        &upstream.url(),
        "    timeouts: { idle: 200ms }",
        ROUTE_ALL,
        "",
    )
    .await;

    // Upstream → client: headers and one chunk, then silence. The client's body errors out.
    let response = http1_client()
        .send(Request::get(gw.url("/body-hang")).body(empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        collect(response).await.is_err(),
        "a stalled body must not end cleanly"
    );

    // Client → upstream: half the announced body, then silence. The gateway answers 408.
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"POST /sink HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();
    let answer = conn.read_response().await.expect("an answer");
    assert_eq!(answer.status, 408);
    assert_eq!(
        answer.json()["type"],
        "urn:gantry:problem:request-body-timeout"
    );
    assert!(conn.wait_closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_target_are_capped_and_requests_wait_for_a_slot() {
    let upstream = Upstream::start("cap").await;
    let gw = TestGateway::simple(
        &upstream.url(),
        "    pool: { max_connections_per_target: 1 }",
        ROUTE_ALL,
        "",
    )
    .await;
    let client = http1_client();
    // The first request holds the only connection.
    let held = client
        .send(Request::get(gw.url("/gate/cap")).body(empty()).unwrap())
        .await
        .unwrap();
    // The second waits for the slot instead of opening a second connection.
    let url = gw.url("/echo");
    let waiting = tokio::spawn(async move { http1_client().get(&url).await.0 });
    // Give the second request every chance to reach the upstream: it must not, while the slot is
    // taken (without the cap it would arrive at once on a second connection).
    for _ in 0..30 {
        assert_eq!(
            upstream.request_count(),
            1,
            "the cap let a second connection open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    upstream.release("cap");
    let rest = held.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"first\ndone\n");
    assert_eq!(waiting.await.unwrap(), 200);
    assert_eq!(upstream.request_count(), 2);
    assert_eq!(upstream.connection_count(), 1);
}

#[tokio::test]
async fn a_connect_that_never_completes_is_a_504() {
    // A listener that never accepts, with its accept queue already full: the kernel drops further
    // SYNs, so the gateway's connect hangs until its connect timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        if let Ok(Ok(stream)) = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(stream);
        } else {
            break;
        }
    }
    let gw = TestGateway::simple(
        &format!("http://{addr}"),
        "    timeouts: { connect: 200ms }",
        ROUTE_ALL,
        "",
    )
    .await;
    let response = http1_client()
        .fetch(Request::get(gw.url("/x")).body(empty()).unwrap())
        .await;
    assert_eq!(response.status, 504);
    assert_eq!(
        response.json()["type"],
        "urn:gantry:problem:upstream-connect-timeout"
    );
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_connections_wait_until_one_closes() {
    let upstream = Upstream::start("maxconn").await;
    let gw = TestGateway::simple(
        &upstream.url(),
        "",
        ROUTE_ALL,
        "  limits: { max_connections: 1 }",
    )
    .await;
    let mut first = RawConn::connect(gw.addr).await;
    first
        .send(b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(first.read_response().await.unwrap().status, 200);

    // The second connection is not served while the first one is open...
    let mut second = RawConn::connect(gw.addr).await;
    second
        .send(b"GET /echo HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..30 {
        assert_eq!(
            upstream.request_count(),
            1,
            "a second connection was served past the limit"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // ...and is served as soon as it closes.
    drop(first);
    assert_eq!(second.read_response().await.unwrap().status, 200);
    assert_eq!(upstream.request_count(), 2);
}

#[tokio::test]
async fn a_drained_upstream_answers_503_without_calling_anyone() {
    let yaml = "version: 1
listeners:
  - { name: public, address: \"127.0.0.1:0\" }
upstreams:
  drained:
    targets: []
routes:
  - { name: all, match: { path_prefix: / }, upstream: drained }
";
    let gw = TestGateway::start_with(yaml, &[]).await;
    let response = http1_client()
        .fetch(Request::get(gw.url("/x")).body(empty()).unwrap())
        .await;
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["type"], "urn:gantry:problem:no-target");
}
