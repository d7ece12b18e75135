//! An upstream's response fields on their way to the client. On a route with nothing that reads or
//! changes them, an HTTP/1.1 client gets the upstream's lines as sent (names keep their case),
//! less the hop-by-hop ones, with Gantry's `Via`, request id and `Date` added; any other answer
//! goes through the header map (names lowercased) and must carry the same fields.
#![allow(clippy::unwrap_used)]

mod support;

use http::Request;
use support::body::empty;
use support::client::{Fields, RawConn, h2_client, raw_request};
use support::gateway::TestGateway;
use support::raw_upstream::RawUpstream;

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nServer: up\r\nX-Mixed-Case: Value  \r\n\
    Keep-Alive: timeout=5\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n\
    Content-Length: 2\r\nProxy-Connection: keep-alive\r\nX-Tail: t\r\n\r\nok";

/// Two routes to the same upstream: `/plain` with no policy, `/cors` with a CORS policy (which
/// adds fields to the answer, so it takes the map).
fn routes() -> &'static str {
    "  - { name: plain, match: { path_prefix: /plain }, upstream: backend }\n  \
       - name: cors\n    match: { path_prefix: /cors }\n    upstream: backend\n    \
         policies:\n      cors: { allow_origins: [\"https://app.example\"], allow_methods: [GET] }"
}

fn names(fields: &Fields) -> Vec<&str> {
    fields.iter().map(|(name, _)| name.as_str()).collect()
}

fn lowercased(fields: &Fields) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect()
}

#[tokio::test]
async fn an_http1_client_gets_the_upstreams_lines_as_sent_less_hop_by_hop() {
    let upstream = RawUpstream::respond_with(ANSWER).await;
    let gw = TestGateway::simple(&upstream.url(), "", routes(), "").await;

    let mut conn = RawConn::connect(gw.addr).await;
    // Twice on one connection: the upstream connection is reused for the second.
    for id in ["r-1", "r-2"] {
        let request =
            format!("GET /plain HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: {id}\r\n\r\n");
        conn.send(request.as_bytes()).await.unwrap();
        let response = conn.read_response().await.unwrap();
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.body, b"ok");
        let fields = &response.headers;
        assert_eq!(
            names(fields),
            [
                "Server",
                "X-Mixed-Case",
                "Cache-Control",
                "Content-Length",
                "X-Tail",
                "via",
                "x-request-id",
                "date"
            ],
            "{fields:?}"
        );
        assert_eq!(response.header("x-mixed-case"), Some("Value"));
        assert_eq!(response.header("via"), Some("1.1 gantry"));
        assert_eq!(response.header("x-request-id"), Some(id));
    }
    assert_eq!(upstream.connection_count(), 1);
}

#[tokio::test]
async fn answers_through_the_map_carry_the_same_fields() {
    let upstream = RawUpstream::respond_with(ANSWER).await;
    let gw = TestGateway::simple(&upstream.url(), "", routes(), "").await;

    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /plain HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: same\r\n\r\n")
        .await
        .unwrap();
    let plain = conn.read_response().await.unwrap();
    conn.send(
        b"GET /cors HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: same\r\n\
          Origin: https://app.example\r\n\r\n",
    )
    .await
    .unwrap();
    let cors = conn.read_response().await.unwrap();
    assert_eq!(cors.status, 200, "{cors:?}");
    // Through the map: names lowercased, CORS fields added; the rest as on the plain route.
    assert!(
        cors.headers
            .iter()
            .all(|(name, _)| *name == name.to_ascii_lowercase()),
        "{cors:?}"
    );
    assert_eq!(
        cors.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let without = |fields: &Fields, skip: &[&str]| {
        let mut kept: Vec<_> = lowercased(fields)
            .into_iter()
            .filter(|(name, _)| !skip.contains(&name.as_str()))
            .collect();
        kept.sort();
        kept
    };
    let skip = ["date", "access-control-allow-origin", "vary"];
    assert_eq!(
        without(&plain.headers, &skip),
        without(&cors.headers, &skip)
    );

    // An HTTP/2 client always gets the map.
    let request = Request::get(gw.url("/plain"))
        .header("x-request-id", "same")
        .body(empty())
        .unwrap();
    let response = h2_client().fetch(request).await;
    assert_eq!(response.status, 200);
    let mut h2: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .filter(|(name, _)| name != "date" && name != "content-length")
        .collect();
    h2.sort();
    assert_eq!(h2, without(&plain.headers, &["date", "content-length"]));
}

#[tokio::test]
async fn bare_line_feeds_and_the_upstreams_date_and_id_are_not_passed_on_as_sent() {
    // Bare LFs and trailing spaces: every line the client gets ends in CRLF. The upstream's `Date`
    // is kept (the server adds none); its request id is replaced (that head takes the map).
    let upstream = RawUpstream::respond_with(
        b"HTTP/1.1 200 OK\nServer: up \nDate: Sun, 29 Nov 2026 16:00:00 GMT\nContent-Length: 2\n\nok",
    )
    .await;
    let gw = TestGateway::simple(&upstream.url(), "", routes(), "").await;
    let exchange = raw_request(
        gw.addr,
        b"GET /plain HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    let bytes = &exchange.bytes;
    for (at, byte) in bytes.iter().enumerate() {
        assert!(
            *byte != b'\n' || bytes[at - 1] == b'\r',
            "{}",
            exchange.text()
        );
    }
    let response = &exchange.responses()[0];
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        names(&response.headers),
        [
            "Server",
            "Date",
            "Content-Length",
            "via",
            "x-request-id",
            "connection"
        ]
    );
    assert_eq!(response.header("server"), Some("up"));
    assert_eq!(
        response.header("date"),
        Some("Sun, 29 Nov 2026 16:00:00 GMT")
    );

    let with_id = RawUpstream::respond_with(
        b"HTTP/1.1 200 OK\r\nX-Request-Id: theirs\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let gw = TestGateway::simple(&with_id.url(), "", routes(), "").await;
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET /plain HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: mine\r\n\r\n")
        .await
        .unwrap();
    let response = conn.read_response().await.unwrap();
    assert_eq!(response.header_all("x-request-id"), ["mine"]);
}
