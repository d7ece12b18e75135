#![allow(clippy::unwrap_used)]
//! API keys end to end: header and query parameter, the credential never reaches the upstream,
//! identity headers are set by the gateway only (client-sent ones are always stripped), and an
//! empty key from an unset variable is a located config error.

mod support;

use http::Request;
use support::{TestGateway, Upstream, empty, http1_client};

fn config(upstream: &str) -> String {
    format!(
        r#"version: 1
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
observability:
  access_log: {{ format: json, output: "${{LOG}}" }}
upstreams:
  backend:
    targets: [{{ url: "{upstream}" }}]
consumers:
  - name: mobile-app
    api_keys: ["${{MOBILE_APP_KEY}}"]
    scopes: [users:read]
    metadata: {{ plan: gold }}
routes:
  - name: keyed
    match: {{ path_prefix: /keyed }}
    upstream: backend
    policies:
      auth: {{ methods: [api_key], forward_identity: true, forward_metadata: [plan] }}
  - name: passthrough
    match: {{ path_prefix: /passthrough }}
    upstream: backend
    policies:
      auth: {{ methods: [api_key], forward_credentials: true }}
  - name: scoped
    match: {{ path_prefix: /scoped }}
    upstream: backend
    policies:
      auth: {{ methods: [api_key], scopes: [users:write] }}
  - name: open
    match: {{ path_prefix: /open }}
    upstream: backend
"#
    )
}

async fn start(upstream: &Upstream) -> TestGateway {
    TestGateway::start_with(
        &config(&upstream.url()),
        &[("MOBILE_APP_KEY", "k-7f3a9c".to_owned())],
    )
    .await
}

async fn get(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> support::Collected {
    let mut builder = Request::get(gw.url(path));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    http1_client().fetch(builder.body(empty()).unwrap()).await
}

#[tokio::test]
async fn a_valid_key_passes_with_identity_headers_and_without_the_credential() {
    let upstream = Upstream::start("backend").await;
    let gw = start(&upstream).await;

    let ok = get(&gw, "/keyed/a", &[("x-api-key", "k-7f3a9c")]).await;
    assert_eq!(ok.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.headers["gantry-consumer"], "mobile-app");
    assert_eq!(seen.headers["gantry-subject"], "mobile-app");
    assert_eq!(seen.headers["gantry-scopes"], "users:read");
    assert_eq!(seen.headers["gantry-consumer-plan"], "gold");
    assert!(seen.headers.get("x-api-key").is_none());

    let ok = get(&gw, "/keyed/b?x=1&api_key=k-7f3a9c&y=2", &[]).await;
    assert_eq!(ok.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(
        seen.uri.path_and_query().unwrap().as_str(),
        "/keyed/b?x=1&y=2"
    );
    assert_eq!(seen.headers["gantry-consumer"], "mobile-app");
}

#[tokio::test]
async fn wrong_missing_and_duplicated_keys_get_401_with_a_challenge() {
    let upstream = Upstream::start("backend").await;
    let gw = start(&upstream).await;
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("/keyed", &[]),
        ("/keyed", &[("x-api-key", "k-7f3a9d")]),
        ("/keyed", &[("x-api-key", "")]),
        ("/keyed?api_key=k-7f3a9c&api_key=other", &[]),
        (
            "/keyed",
            &[("x-api-key", "k-7f3a9c"), ("x-api-key", "k-7f3a9c")],
        ),
    ];
    for (path, headers) in cases {
        let rsp = get(&gw, path, headers).await;
        assert_eq!(rsp.status, 401, "{path} {headers:?}");
        assert_eq!(
            rsp.headers["www-authenticate"],
            "ApiKey header=\"X-Api-Key\""
        );
        assert_eq!(rsp.headers["content-type"], "application/problem+json");
        assert_eq!(rsp.json()["type"], "urn:gantry:problem:unauthorized");
        // The detail never echoes the credential.
        assert!(!rsp.text().contains("k-7f3a9"));
    }
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn a_key_without_the_route_scope_gets_403() {
    let upstream = Upstream::start("backend").await;
    let gw = start(&upstream).await;
    let rsp = get(&gw, "/scoped", &[("x-api-key", "k-7f3a9c")]).await;
    assert_eq!(rsp.status, 403);
    assert_eq!(rsp.json()["type"], "urn:gantry:problem:forbidden");
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let upstream = Upstream::start("backend").await;
    let gw = start(&upstream).await;
    let spoof = [
        ("gantry-consumer", "admin"),
        ("gantry-subject", "root"),
        ("gantry-scopes", "admin:*"),
        ("gantry-consumer-plan", "platinum"),
    ];
    let rsp = get(&gw, "/open", &spoof).await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last_request().unwrap();
    for (name, _) in spoof {
        assert!(
            seen.headers.get(name).is_none(),
            "{name} reached the upstream"
        );
    }

    let mut authenticated = spoof.to_vec();
    authenticated.push(("x-api-key", "k-7f3a9c"));
    let rsp = get(&gw, "/keyed", &authenticated).await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.headers.get_all("gantry-consumer").iter().count(), 1);
    assert_eq!(seen.headers["gantry-consumer"], "mobile-app");
    assert_eq!(seen.headers["gantry-subject"], "mobile-app");
    assert_eq!(seen.headers["gantry-scopes"], "users:read");
    assert_eq!(seen.headers["gantry-consumer-plan"], "gold");
}

#[test]
fn an_empty_key_is_a_located_config_error() {
    let text = config("http://127.0.0.1:9");
    let env = |name: &str| match name {
        "MOBILE_APP_KEY" => Some(String::new()),
        "LOG" => Some("/dev/null".to_owned()),
        _ => None,
    };
    let errors = gantry::config::load_str_with_env("gantry.yaml", &text, &env)
        .err()
        .expect("an empty API key must be rejected")
        .to_string();
    assert!(
        errors.contains("gantry.yaml:11:16: consumers[0].api_keys[0]: empty credential"),
        "{errors}"
    );
}

#[tokio::test]
async fn forward_credentials_keeps_the_key_for_the_upstream() {
    let upstream = Upstream::start("backend").await;
    let gw = start(&upstream).await;
    let rsp = get(&gw, "/passthrough?api_key=k-7f3a9c&x=1", &[]).await;
    assert_eq!(rsp.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.uri.query(), Some("api_key=k-7f3a9c&x=1"));
    // Identity headers only with forward_identity.
    assert!(seen.headers.get("gantry-consumer").is_none());
    let rsp = get(&gw, "/passthrough", &[("x-api-key", "k-7f3a9c")]).await;
    assert_eq!(rsp.status, 200);
    assert_eq!(
        upstream.last_request().unwrap().headers["x-api-key"],
        "k-7f3a9c"
    );
}

#[tokio::test]
async fn h2_clients_get_the_same_auth_and_stripping() {
    let upstream = Upstream::start("backend").await;
    let gw = start(&upstream).await;
    let client = support::h2_client();
    let request = |key: Option<&str>| {
        let mut builder = Request::get(gw.url("/keyed/h2")).header("gantry-consumer", "admin");
        if let Some(key) = key {
            builder = builder.header("x-api-key", key);
        }
        builder.body(empty()).unwrap()
    };
    let denied = client.fetch(request(None)).await;
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.headers["www-authenticate"],
        "ApiKey header=\"X-Api-Key\""
    );
    let ok = client.fetch(request(Some("k-7f3a9c"))).await;
    assert_eq!(ok.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.headers["gantry-consumer"], "mobile-app");
    assert_eq!(upstream.request_count(), 1);
}
