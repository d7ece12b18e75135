#![allow(clippy::unwrap_used)]
//! Retries and passive health end to end: a dead target is ejected while retries hide it from
//! clients; POST is not retried unless configured; GET is retried on a reset; the retry budget
//! caps the extra load of a full outage. Counts come from the upstreams, states from
//! `/admin/upstreams`.

mod support;

use http::{Method, Request};
use support::{Fault, RawUpstream, TestGateway, Upstream, full, http1_client};

/// A gateway with upstream `pool` at `targets` and the given extra upstream YAML.
async fn gateway(targets: &[String], extra: &str) -> TestGateway {
    let targets: Vec<String> = targets
        .iter()
        .map(|url| format!("{{ url: \"{url}\" }}"))
        .collect();
    let yaml = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
observability: {{ access_log: {{ format: off }} }}
upstreams:
  pool:
    targets: [{}]
{extra}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
",
        targets.join(", ")
    );
    TestGateway::start_with(&yaml, &[]).await
}

/// An address nothing listens on (bound, then released): connecting is refused.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn a_dead_target_is_ejected_and_retries_hide_it_from_clients() {
    let live = Upstream::start("live").await;
    let dead = dead_url().await;
    let gw = gateway(
        &[dead.clone(), live.url()],
        "    retries: { attempts: 2, on: [connect_error] }
    health_check:
      passive: { consecutive_failures: 1, eject_for: 1h, max_ejected_percent: 50 }",
    )
    .await;
    let client = http1_client();
    for i in 0..10 {
        let (status, headers, _) = client.get(&gw.url(&format!("/item/{i}"))).await;
        assert_eq!(status, 200, "request {i}");
        assert_eq!(headers["x-upstream"], "live");
    }
    assert_eq!(live.traffic_count(), 10);
    let pool = gw.admin_upstream("pool").await;
    let dead_authority = dead.trim_start_matches("http://");
    let dead_target = pool["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == dead_authority)
        .unwrap();
    assert_eq!(dead_target["ejected"], true, "{pool}");
    assert_eq!(dead_target["available"], false);
    assert!(dead_target["ejected_remaining_ms"].as_u64().unwrap() > 0);
    assert!(dead_target["ejected_until"].as_f64().unwrap() > 0.0);
    let live_target = pool["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] != dead_authority)
        .unwrap();
    assert_eq!(live_target["ejected"], false);
}

#[tokio::test]
async fn without_retries_the_dead_target_fails_a_request_before_it_is_ejected() {
    // The other half of the test above: the ejection alone costs one client-visible error.
    let live = Upstream::start("live").await;
    let gw = gateway(
        &[dead_url().await, live.url()],
        "    health_check:
      passive: { consecutive_failures: 1, eject_for: 1h, max_ejected_percent: 50 }",
    )
    .await;
    let client = http1_client();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(client.get(&gw.url("/x")).await.0.as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(live.traffic_count(), 5);
}

#[tokio::test]
async fn get_is_retried_on_a_reset() {
    let upstream = RawUpstream::reset_first().await;
    let gw = gateway(
        &[upstream.url()],
        "    retries: { attempts: 3, on: [reset] }",
    )
    .await;
    let (status, _, body) = http1_client().get(&gw.url("/thing")).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"ok");
    assert_eq!(upstream.connection_count(), 2);
    assert_eq!(upstream.request_lines(), 2);
}

#[tokio::test]
async fn post_is_never_retried_by_default() {
    let upstream = RawUpstream::reset_first().await;
    let gw = gateway(
        &[upstream.url()],
        "    retries: { attempts: 3, on: [reset] }",
    )
    .await;
    let request = Request::builder()
        .method(Method::POST)
        .uri(gw.url("/orders"))
        .header("content-type", "text/plain")
        .body(full("hello"))
        .unwrap();
    let response = http1_client().fetch(request).await;
    assert_eq!(response.status, 502);
    assert_eq!(
        response.json()["type"],
        "urn:gantry:problem:upstream-failed"
    );
    upstream.wait_for_connections(1).await;
    assert_eq!(upstream.request_lines(), 1);
    assert_eq!(upstream.connection_count(), 1);
}

#[tokio::test]
async fn post_is_retried_with_its_body_when_methods_is_all() {
    let upstream = RawUpstream::reset_first().await;
    let gw = gateway(
        &[upstream.url()],
        "    retries: { attempts: 3, on: [reset], methods: all }",
    )
    .await;
    let request = Request::builder()
        .method(Method::POST)
        .uri(gw.url("/orders"))
        .body(full("hello"))
        .unwrap();
    let response = http1_client().fetch(request).await;
    assert_eq!(response.status, 200);
    let per_connection = upstream.received_per_connection();
    assert_eq!(per_connection.len(), 2);
    for received in per_connection {
        assert!(
            received.ends_with(b"\r\n\r\nhello"),
            "{}",
            String::from_utf8_lossy(&received)
        );
    }
}

#[tokio::test]
async fn a_body_too_large_to_buffer_is_not_retried() {
    let upstream = RawUpstream::reset_first().await;
    let gw = gateway(
        &[upstream.url()],
        "    retries: { attempts: 3, on: [reset] }",
    )
    .await;
    // PUT is idempotent, but 100 KiB is over the 64 KiB replay cap.
    let request = Request::builder()
        .method(Method::PUT)
        .uri(gw.url("/blob"))
        .body(full(vec![b'x'; 100 * 1024]))
        .unwrap();
    let response = http1_client().fetch(request).await;
    assert_eq!(response.status, 502);
    assert_eq!(upstream.connection_count(), 1);
}

#[tokio::test]
async fn the_budget_caps_retries_under_a_full_outage() {
    let upstream = Upstream::start("down").await;
    upstream.set_fault(Fault::Status(503));
    let gw = gateway(
        &[upstream.url()],
        "    retries:
      attempts: 3
      on: [503]
      budget: 10%
      min_retries_per_second: 0
      backoff: { base: 1ms, max: 1ms }",
    )
    .await;
    let client = http1_client();
    for _ in 0..20 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 503);
    }
    // Without a budget: 60 calls. With 10% of 20 requests: 2 retries.
    assert_eq!(upstream.traffic_count(), 22);
    let pool = gw.admin_upstream("pool").await;
    assert_eq!(pool["retry_budget"]["requests"], 20);
    assert_eq!(pool["retry_budget"]["retries"], 2);
}

#[tokio::test]
async fn a_flapping_upstream_is_hidden_by_retries() {
    let upstream = Upstream::start("flappy").await;
    upstream.set_fault(Fault::Flapping(503));
    let gw = gateway(
        &[upstream.url()],
        "    retries: { attempts: 2, on: [503], backoff: { base: 1ms, max: 2ms } }",
    )
    .await;
    let client = http1_client();
    for _ in 0..5 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    }
    assert_eq!(upstream.traffic_count(), 10);
}

#[tokio::test]
async fn an_ejection_survives_a_reload_that_rebuilds_the_targets() {
    let live = Upstream::start("live").await;
    let dead = dead_url().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.yaml");
    let text = format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
observability: {{ access_log: {{ format: off }} }}
upstreams:
  pool:
    targets: [{{ url: \"{dead}\" }}, {{ url: \"{}\" }}]
    pool: {{ max_idle_per_target: 8 }}
    retries: {{ attempts: 2, on: [connect_error] }}
    health_check:
      passive: {{ consecutive_failures: 1, eject_for: 1h }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool }}
",
        live.url()
    );
    std::fs::write(&path, &text).unwrap();
    let gw = TestGateway::start_file(&path).await;
    let client = http1_client();
    for _ in 0..4 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    }
    let dead_authority = dead.trim_start_matches("http://").to_owned();
    let is_dead_ejected = |pool: &serde_json::Value| {
        pool["targets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["target"] == dead_authority.as_str() && t["ejected"] == true)
    };
    assert!(is_dead_ejected(&gw.admin_upstream("pool").await));
    // New pool settings: every target gets a new pool, but keeps its health.
    std::fs::write(
        &path,
        text.replace("max_idle_per_target: 8", "max_idle_per_target: 9"),
    )
    .unwrap();
    gw.gateway().reload().await.unwrap();
    assert!(is_dead_ejected(&gw.admin_upstream("pool").await));
    let before = live.traffic_count();
    for _ in 0..4 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    }
    assert_eq!(live.traffic_count(), before + 4);
}

#[tokio::test]
async fn never_more_than_max_ejected_percent_of_the_targets_are_ejected() {
    let live = Upstream::start("live").await;
    let gw = gateway(
        &[dead_url().await, dead_url().await, live.url()],
        "    retries: { attempts: 3, on: [connect_error] }
    health_check:
      passive: { consecutive_failures: 1, eject_for: 1h, max_ejected_percent: 50 }",
    )
    .await;
    let client = http1_client();
    for _ in 0..9 {
        assert_eq!(client.get(&gw.url("/x")).await.0, 200);
    }
    let pool = gw.admin_upstream("pool").await;
    let ejected = pool["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["ejected"] == true)
        .count();
    // 50% of 3 targets: one may be out, though two are dead.
    assert_eq!(ejected, 1, "{pool}");
    assert_eq!(live.traffic_count(), 9);
}

#[tokio::test]
async fn a_retry_goes_to_another_target_even_under_consistent_hashing() {
    let bad = Upstream::start("bad").await;
    bad.set_fault(Fault::Status(503));
    let good = Upstream::start("good").await;
    let gw = gateway(
        &[bad.url(), good.url()],
        "    load_balancing: { consistent_hash: { header: x-user-id } }
    retries: { attempts: 3, on: [503], backoff: { base: 1ms, max: 1ms } }",
    )
    .await;
    let client = http1_client();
    let mut first_on_bad = 0;
    for i in 0..20 {
        let (bad_before, good_before) = (bad.traffic_count(), good.traffic_count());
        let request = Request::get(gw.url("/x"))
            .header("x-user-id", format!("user-{i}"))
            .body(support::empty())
            .unwrap();
        let response = client.fetch(request).await;
        assert_eq!(response.status, 200, "user-{i}");
        if bad.traffic_count() > bad_before {
            // The key belongs to the bad target: one try there, the retry on the other.
            first_on_bad += 1;
            assert_eq!(bad.traffic_count(), bad_before + 1);
            assert_eq!(good.traffic_count(), good_before + 1);
        }
    }
    assert!(first_on_bad > 0, "no key hashed to the bad target");
}

#[tokio::test]
async fn the_access_log_counts_the_tries() {
    let upstream = RawUpstream::reset_first().await;
    let gw = TestGateway::simple(
        &upstream.url(),
        "    retries: { attempts: 3, on: [reset] }",
        "  - { name: all, match: { path_prefix: / }, upstream: backend }",
        "",
    )
    .await;
    assert_eq!(http1_client().get(&gw.url("/x")).await.0, 200);
    let lines = gw.access_log(1).await;
    assert_eq!(lines[0]["tries"], 2);
    assert_eq!(lines[0]["fallback"], false);
    assert_eq!(lines[0]["status"], 200);
}
