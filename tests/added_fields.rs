//! The fields Gantry adds on the way upstream (`Host`, `X-Forwarded-*`, `X-Real-IP`, `Via`, the
//! request id, `traceparent`, `Gantry-Timeout-Ms`): an HTTP/1.1 upstream gets them written beside
//! the head's map, an HTTP/2 one in the map. Either way each is there once, with the same values,
//! whether or not the client sent a field of that name.
#![allow(clippy::unwrap_used)]

mod support;

use http::Request;
use support::body::empty;
use support::client::{RawConn, h2_client, http1_client};
use support::gateway::TestGateway;
use support::raw_upstream::RawUpstream;
use support::recording::RecordingBackend;
use support::upstream::Upstream;

const ROUTE_ALL: &str = "  - { name: all, match: { path_prefix: / }, upstream: backend }";

/// The fields Gantry adds to a plain request from `127.0.0.1` for host `api.example`, with the
/// value each must have (`None`: generated, checked for presence only).
const ADDED: [(&str, Option<&str>); 8] = [
    ("x-forwarded-for", Some("127.0.0.1")),
    ("x-real-ip", Some("127.0.0.1")),
    ("x-forwarded-proto", Some("http")),
    ("x-forwarded-host", Some("api.example")),
    ("via", Some("1.1 gantry")),
    ("x-request-id", None),
    ("traceparent", None),
    ("gantry-timeout-ms", None),
];

/// The field lines of a raw head, names lowercased, in order.
fn field_lines(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect()
}

fn values<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Sends `head` (a request line and fields, without the blank line) and returns what the
/// recording backend read.
async fn forwarded_head(backend: &RecordingBackend, gw: &TestGateway, head: &str) -> String {
    let before = backend.heads().len();
    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(format!("{head}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let response = conn.read_response().await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    let heads = backend.heads();
    assert_eq!(heads.len(), before + 1);
    heads[before].clone()
}

#[tokio::test]
async fn an_http1_upstream_gets_each_added_field_once_and_host_first() {
    let backend = RecordingBackend::start().await;
    let url = format!("http://{}", backend.upstream.addr());
    let gw = TestGateway::simple(&url, "", ROUTE_ALL, "").await;

    let head = forwarded_head(&backend, &gw, "GET /a?b=1 HTTP/1.1\r\nHost: api.example").await;
    assert!(head.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{head}");
    let fields = field_lines(&head);
    assert_eq!(fields[0], ("host".into(), "api.example".into()), "{head}");
    for (name, expected) in [("host", Some("api.example"))].into_iter().chain(ADDED) {
        let seen = values(&fields, name);
        assert_eq!(seen.len(), 1, "{name} in {head}");
        if let Some(expected) = expected {
            assert_eq!(seen[0], expected, "{name}");
        }
    }
    assert_eq!(values(&fields, "x-request-id")[0].len(), 36);
    let traceparent = values(&fields, "traceparent")[0];
    assert!(
        traceparent.len() == 55 && traceparent.starts_with("00-"),
        "{traceparent}"
    );
}

#[tokio::test]
async fn fields_the_client_sent_are_replaced_or_extended_as_before() {
    let backend = RecordingBackend::start().await;
    let url = format!("http://{}", backend.upstream.addr());
    let gw = TestGateway::simple(&url, "    host_header: target", ROUTE_ALL, "").await;

    let client_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let head = forwarded_head(
        &backend,
        &gw,
        &format!(
            "GET / HTTP/1.1\r\nHost: api.example\r\nVia: 1.0 fred\r\nX-Request-Id: client-id-1\r\n\
             traceparent: {client_trace}\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6"
        ),
    )
    .await;
    let fields = field_lines(&head);
    // `host_header: target`: the target's authority, once, and not the client's.
    assert_eq!(
        values(&fields, "host"),
        vec![backend.upstream.addr().to_string()],
        "{head}"
    );
    assert_eq!(fields[0].0, "host");
    assert_eq!(values(&fields, "via"), vec!["1.0 fred", "1.1 gantry"]);
    assert_eq!(values(&fields, "x-request-id"), vec!["client-id-1"]);
    assert_eq!(values(&fields, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(values(&fields, "x-real-ip"), vec!["127.0.0.1"]);
    // The client's trace continues: same trace id, Gantry's own span as the parent.
    let traceparent = values(&fields, "traceparent");
    assert_eq!(traceparent.len(), 1, "{head}");
    assert_eq!(traceparent[0][..36], client_trace[..36]);
    assert_ne!(traceparent[0], client_trace);
}

#[tokio::test]
async fn an_http2_upstream_gets_the_same_added_fields_in_its_map() {
    let upstream = Upstream::start("h2-added").await;
    let gw = TestGateway::simple(&upstream.url(), "    protocol: h2", ROUTE_ALL, "").await;
    let request = Request::get(gw.url("/echo"))
        .header("host", "api.example")
        .body(empty())
        .unwrap();
    let echo = http1_client().fetch(request).await.json();
    assert_eq!(echo["version"], "HTTP/2.0");
    let seen = upstream.last_request().unwrap().headers;
    for (name, expected) in ADDED {
        let all: Vec<_> = seen.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{name}: {seen:?}");
        if let Some(expected) = expected {
            assert_eq!(all[0], expected, "{name}");
        }
    }
    // An HTTP/2 request carries its authority in the URI, not in a Host field.
    assert!(seen.get("host").is_none(), "{seen:?}");
}

#[tokio::test]
async fn consistent_hashing_on_an_added_field_sees_it() {
    // Two targets, hashed on X-Forwarded-Proto, which the client does not send and Gantry adds:
    // every request has the same key, so one target gets them all.
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let yaml = format!(
        "version: 1\n\
         listeners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\n\
         upstreams:\n  backend:\n    targets: [{{ url: \"{}\" }}, {{ url: \"{}\" }}]\n    \
         load_balancing: {{ consistent_hash: {{ header: X-Forwarded-Proto }} }}\n\
         routes:\n{ROUTE_ALL}\n",
        a.url(),
        b.url()
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let client = http1_client();
    for _ in 0..20 {
        let (status, _, _) = client.get(&gw.url("/echo")).await;
        assert_eq!(status, 200);
    }
    let counts = (a.request_count(), b.request_count());
    assert!(counts == (20, 0) || counts == (0, 20), "{counts:?}");
}

#[tokio::test]
async fn the_request_id_replaces_the_upstreams_own_for_http1_and_http2_clients() {
    // The edge leaves the request id out of the response's map for Gantry's HTTP/1.1 server, which
    // writes it into the head itself; the HTTP/2 server gets it in the map. Either way an upstream's
    // own fields of that name do not reach the client.
    let upstream = RawUpstream::start(|mut conn| async move {
        while conn.read_request().await.is_some() {
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: upstream-1\r\n\
                           X-Request-Id: upstream-2\r\nx-kept: yes\r\n\r\nok";
            if conn.write(answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let url = format!("http://{}", upstream.addr());
    let gw = TestGateway::simple(&url, "", ROUTE_ALL, "").await;

    let mut conn = RawConn::connect(gw.addr).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Request-Id: client-7\r\n\r\n")
        .await
        .unwrap();
    let response = conn.read_response().await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header_all("x-request-id"), vec!["client-7"]);
    assert_eq!(response.header_all("x-kept"), vec!["yes"]);

    let request = Request::get(gw.url("/"))
        .header("x-request-id", "client-8")
        .body(empty())
        .unwrap();
    let response = h2_client().fetch(request).await;
    assert_eq!(response.status, 200);
    let ids: Vec<_> = response.headers.get_all("x-request-id").iter().collect();
    assert_eq!(ids, vec!["client-8"]);
}
