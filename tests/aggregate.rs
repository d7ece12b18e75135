#![allow(clippy::unwrap_used)]
//! Aggregation (backend for frontend) end to end: the real gateway against programmable upstreams.

mod support;

use serde_json::{Value, json};
use support::{TestGateway, Upstream, get};

fn config(upstream: &Upstream, aggregate: &str) -> String {
    format!(
        "version: 1\n\
         listeners:\n  - {{ name: public, address: \"127.0.0.1:0\" }}\n\
         upstreams:\n  backend:\n    targets: [{{ url: \"{}\" }}]\n\
         routes:\n  - name: bff\n    match: {{ path: \"/bff/{{user_id}}\", methods: [GET, POST] }}\n    aggregate:\n{aggregate}\n",
        upstream.url()
    )
}

async fn start(upstream: &Upstream, aggregate: &str) -> TestGateway {
    TestGateway::start_with(&config(upstream, aggregate), &[]).await
}

async fn fetch(gateway: &TestGateway, path: &str) -> (u16, Option<String>, Value) {
    let (status, headers, body) = get(&gateway.url(path)).await;
    let state = headers
        .get("gantry-aggregate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status.as_u16(), state, body)
}

#[tokio::test]
async fn independent_calls_run_in_parallel() {
    let upstream = Upstream::start("backend").await;
    // Each call is held until all three have arrived: run one by one, the first would wait
    // for the others until the budget ran out and the required calls would fail with 504.
    let gateway = start(
        &upstream,
        "      timeout: 5s\n      calls:\n\
         \x20       - { name: a, upstream: backend, path: \"/barrier/p/a?n=3\", required: true }\n\
         \x20       - { name: b, upstream: backend, path: \"/barrier/p/b?n=3\", required: true }\n\
         \x20       - { name: c, upstream: backend, path: \"/barrier/p/c?n=3\", required: true }\n",
    )
    .await;
    let (status, state, body) = fetch(&gateway, "/bff/7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(state.as_deref(), Some("complete"));
    assert_eq!(
        body,
        json!({"a": {"name": "a"}, "b": {"name": "b"}, "c": {"name": "c"}})
    );
}

#[tokio::test]
async fn sequential_call_uses_a_field_and_encodes_it() {
    let upstream = Upstream::start("backend").await;
    upstream.set_json("/users/7", 200, r#"{"id": 7, "segment": "../admin"}"#);
    upstream.set_json("/recs/..%2Fadmin", 200, r#"{"items": [1, 2]}"#);
    let gateway = start(
        &upstream,
        "      calls:\n\
         \x20       - { name: profile, upstream: backend, path: \"/users/{user_id}\", required: true }\n\
         \x20       - { name: recs, upstream: backend, path: \"/recs/{profile.segment}\", depends_on: [profile] }\n\
         \x20       - { name: missing, upstream: backend, path: \"/x/{profile.nope}\", depends_on: [profile], fallback: { none: true } }\n",
    )
    .await;
    let (status, state, body) = fetch(&gateway, "/bff/7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(state.as_deref(), Some("partial"));
    assert_eq!(body["profile"]["segment"], "../admin");
    assert_eq!(body["recs"], json!({"items": [1, 2]}));
    // The missing field is that call's error, with its fallback used and marked.
    assert_eq!(body["missing"], json!({"none": true}));
    assert_eq!(body["errors"][0]["call"], "missing");
    assert_eq!(
        body["errors"][0]["type"],
        "urn:gantry:problem:aggregate-missing-field"
    );
    assert_eq!(body["errors"][0]["fallback"], true);
    let paths: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.uri.path().to_owned())
        .collect();
    assert!(paths.contains(&"/recs/..%2Fadmin".to_owned()), "{paths:?}");
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/admin") || p.starts_with("/x/")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn deep_merge_keeps_both_colliding_values_and_nested_is_exact() {
    let upstream = Upstream::start("backend").await;
    upstream.set_json(
        "/users",
        200,
        r#"{"id": 1, "name": "ann", "meta": {"v": 1}}"#,
    );
    upstream.set_json(
        "/billing",
        200,
        r#"{"id": 2, "plan": "pro", "meta": {"v": 1, "w": 2}}"#,
    );
    let gateway = start(
        &upstream,
        "      merge: deep\n      calls:\n\
         \x20       - { name: users, upstream: backend, path: /users }\n\
         \x20       - { name: billing, upstream: backend, path: /billing, select: [id, plan, meta], rename: { plan: tier } }\n",
    )
    .await;
    let (status, state, body) = fetch(&gateway, "/bff/1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(state.as_deref(), Some("complete"));
    assert_eq!(
        body,
        json!({"id": 1, "name": "ann", "meta": {"v": 1, "w": 2}, "tier": "pro", "billing": {"id": 2}})
    );
}

#[tokio::test]
async fn an_answers_own_errors_field_is_kept_and_the_failed_calls_move_aside() {
    let upstream = Upstream::start("backend").await;
    upstream.set_json(
        "/graphql",
        200,
        r#"{"data": {"a": 1}, "errors": ["from upstream"]}"#,
    );
    upstream.set_json("/broken", 500, r#"{"oops": 1}"#);
    let gateway = start(
        &upstream,
        "      merge: deep
      calls:
                 - { name: graph, upstream: backend, path: /graphql }
                 - { name: broken, upstream: backend, path: /broken }
",
    )
    .await;
    let (status, state, body) = fetch(&gateway, "/bff/1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(state.as_deref(), Some("partial"));
    assert_eq!(body["errors"], json!(["from upstream"]), "{body}");
    assert_eq!(body["data"], json!({"a": 1}));
    assert_eq!(body["gantry_errors"][0]["call"], "broken", "{body}");
    assert_eq!(body["gantry_errors"][0]["status"], 500, "{body}");
}

#[tokio::test]
async fn slow_optional_call_gives_partial_and_failing_required_gives_502() {
    let upstream = Upstream::start("backend").await;
    upstream.set_json("/fast", 200, r#"{"ok": true}"#);
    upstream.set_json("/broken", 500, r#"{"oops": 1}"#);
    upstream.set_json("/text", 200, "not json");
    let gateway = start(
        &upstream,
        "      timeout: 300ms\n      max_body_bytes: 64B\n      calls:\n\
         \x20       - { name: fast, upstream: backend, path: /fast, required: true }\n\
         \x20       - { name: slow, upstream: backend, path: /hang }\n\
         \x20       - { name: text, upstream: backend, path: /text }\n\
         \x20       - { name: big, upstream: backend, path: /bytes/1000 }\n",
    )
    .await;
    let (status, state, body) = fetch(&gateway, "/bff/1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(state.as_deref(), Some("partial"));
    assert_eq!(body["fast"], json!({"ok": true}));
    assert!(body.get("slow").is_none());
    let errors = body["errors"].as_array().unwrap();
    let by_call = |name: &str| errors.iter().find(|e| e["call"] == name).cloned().unwrap();
    assert_eq!(by_call("slow")["status"], 504);
    assert_eq!(
        by_call("text")["type"],
        "urn:gantry:problem:aggregate-invalid-json"
    );
    assert_eq!(
        by_call("big")["type"],
        "urn:gantry:problem:aggregate-body-too-large"
    );

    let failing = Upstream::start("backend").await;
    failing.set_json("/broken", 500, r#"{"oops": 1}"#);
    let gateway = start(
        &failing,
        "      calls:\n\
         \x20       - { name: profile, upstream: backend, path: /broken, required: true }\n",
    )
    .await;
    let (status, _, body) = fetch(&gateway, "/bff/1").await;
    assert_eq!(status, 502);
    assert_eq!(body["type"], "urn:gantry:problem:aggregate-call-failed");
    assert!(
        body["detail"].as_str().unwrap().contains("profile"),
        "{body}"
    );
}

#[tokio::test]
async fn cycles_and_placeholders_naming_nothing_are_rejected_at_load() {
    let upstream = Upstream::start("backend").await;
    let text = config(
        &upstream,
        "      calls:\n\
         \x20       - { name: a, upstream: backend, path: \"/a/{b.x}\", depends_on: [b] }\n\
         \x20       - { name: b, upstream: backend, path: /b, depends_on: [a] }\n\
         \x20       - { name: c, upstream: backendz, path: \"/c/{nothing}/{a.x}\" }\n\
         \x20 - name: both\n    match: { path: /both }\n    upstream: backend\n    aggregate: { calls: [{ name: x, upstream: backend, path: /x }] }\n",
    );
    let errors = gantry::config::load_str_with_env("t.yaml", &text, &|_| None)
        .err()
        .expect("rejected")
        .to_string();
    for expected in [
        "t.yaml:12:71: routes[0].aggregate.calls[0].depends_on: dependency cycle: a -> b -> a",
        "dependency cycle: a -> b -> a",
        "unknown upstream \"backendz\"",
        "{nothing} names nothing",
        "not in this call's depends_on",
        "either `upstream` or `aggregate`",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
}

#[tokio::test]
async fn post_body_is_forwarded_and_missing_client_input_is_a_400() {
    let upstream = Upstream::start("backend").await;
    let gateway = start(
        &upstream,
        "      calls:\n\
         \x20       - { name: sink, upstream: backend, method: POST, path: /sink, forward_body: true, required: true }\n\
         \x20       - { name: plain, upstream: backend, path: /sink }\n",
    )
    .await;
    let request = http::Request::post(gateway.url("/bff/1"))
        .body(support::full("0123456789"))
        .unwrap();
    let collected = support::http1_client().fetch(request).await;
    assert_eq!(collected.status, 200, "{}", collected.text());
    let body = collected.json();
    assert_eq!(body["sink"]["received"], 10);
    assert_eq!(body["plain"]["received"], 0);

    let gateway = start(
        &upstream,
        "      calls:\n\
         \x20       - { name: me, upstream: backend, path: \"/users/{header.X-User-Id}\", required: true }\n",
    )
    .await;
    let (status, _, body) = fetch(&gateway, "/bff/1").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], "urn:gantry:problem:aggregate-bad-input");
    assert!(
        body["detail"].as_str().unwrap().contains("x-user-id"),
        "{body}"
    );
}

#[tokio::test]
async fn a_call_on_a_failed_call_is_424_and_a_required_call_past_the_budget_is_504() {
    let upstream = Upstream::start("backend").await;
    upstream.set_json("/broken", 500, r#"{"oops": 1}"#);
    upstream.set_json("/fast", 200, r#"{"ok": true}"#);
    // `profile` fails; `recs` needs its field, so it is never sent and reported as 424.
    let gateway = start(
        &upstream,
        "      calls:\n\
         \x20       - { name: fast, upstream: backend, path: /fast, required: true }\n\
         \x20       - { name: profile, upstream: backend, path: /broken }\n\
         \x20       - { name: recs, upstream: backend, path: \"/recs/{profile.segment}\", depends_on: [profile] }\n",
    )
    .await;
    let (status, state, body) = fetch(&gateway, "/bff/1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(state.as_deref(), Some("partial"));
    let errors = body["errors"].as_array().unwrap();
    let recs = errors.iter().find(|e| e["call"] == "recs").unwrap();
    assert_eq!(recs["status"], 424, "{body}");
    assert_eq!(
        recs["type"],
        "urn:gantry:problem:aggregate-dependency-failed"
    );
    assert_eq!(
        upstream.count_path("/recs"),
        0,
        "a call whose input failed is never sent"
    );

    // A required call that hangs past the aggregate's budget: 504 naming it.
    let gateway = start(
        &upstream,
        "      timeout: 200ms\n      calls:\n\
         \x20       - { name: fast, upstream: backend, path: /fast }\n\
         \x20       - { name: stuck, upstream: backend, path: /hang, required: true }\n",
    )
    .await;
    let (status, _, body) = fetch(&gateway, "/bff/1").await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["type"], "urn:gantry:problem:aggregate-call-timeout");
    assert!(body["detail"].as_str().unwrap().contains("stuck"), "{body}");
}

#[tokio::test]
async fn a_reload_that_changes_the_calls_serves_the_new_aggregate_and_an_invalid_one_is_refused() {
    let upstream = Upstream::start("backend").await;
    upstream.set_json("/users/7", 200, r#"{"id": 7}"#);
    upstream.set_json("/orders/7", 200, r#"{"count": 2}"#);
    let profile = "      calls:\n\
                   \x20       - { name: profile, upstream: backend, path: \"/users/{user_id}\", required: true }\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.yaml");
    std::fs::write(&path, config(&upstream, profile)).unwrap();
    let gateway = TestGateway::start_file(&path).await;
    let (status, _, body) = fetch(&gateway, "/bff/7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"profile": {"id": 7}}));

    // A second call added by reload is made by the next request.
    let both = format!(
        "{profile}\x20       - {{ name: orders, upstream: backend, path: \"/orders/{{user_id}}\" }}\n"
    );
    std::fs::write(&path, config(&upstream, &both)).unwrap();
    gateway.gateway().reload().await.unwrap();
    let (status, _, body) = fetch(&gateway, "/bff/7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"profile": {"id": 7}, "orders": {"count": 2}}));

    // A call depending on a call that does not exist: refused, the running aggregate serves on.
    let broken = format!(
        "{profile}\x20       - {{ name: orders, upstream: backend, path: \"/orders/{{user_id}}\", depends_on: [nope] }}\n"
    );
    std::fs::write(&path, config(&upstream, &broken)).unwrap();
    let refused = gateway.gateway().reload().await.unwrap_err().to_string();
    assert!(refused.contains("depends_on"), "{refused}");
    let (status, _, body) = fetch(&gateway, "/bff/7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"profile": {"id": 7}, "orders": {"count": 2}}));
}

/// Every call is a span of the client's trace: the upstream sees the client's trace id with a
/// parent span of the call's own, not the client's span that the copied head carried.
#[tokio::test]
async fn every_call_continues_the_clients_trace_with_a_span_of_its_own() {
    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let upstream = Upstream::start("backend").await;
    upstream.set_json("/a", 200, r#"{"a": 1}"#);
    upstream.set_json("/b", 200, r#"{"b": 2}"#);
    let gateway = start(
        &upstream,
        "      timeout: 5s\n      calls:\n\
         \x20       - { name: a, upstream: backend, path: \"/a\", required: true }\n\
         \x20       - { name: b, upstream: backend, path: \"/b\", required: true }\n",
    )
    .await;
    let request = http::Request::get(gateway.url("/bff/7"))
        .header("traceparent", CLIENT)
        .body(support::empty())
        .unwrap();
    let answer = support::http1_client().fetch(request).await;
    assert_eq!(answer.status, 200);
    let spans: Vec<String> = upstream
        .requests()
        .iter()
        .map(|seen| {
            let traceparent = seen.headers["traceparent"].to_str().unwrap();
            let fields: Vec<&str> = traceparent.split('-').collect();
            assert_eq!(
                fields[1], "4bf92f3577b34da6a3ce929d0e0e4736",
                "{traceparent}"
            );
            fields[2].to_owned()
        })
        .collect();
    assert_eq!(spans.len(), 2);
    assert!(
        spans.iter().all(|span| span != "00f067aa0ba902b7"),
        "{spans:?}"
    );
    assert_ne!(spans[0], spans[1]);
}
