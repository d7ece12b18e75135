#![allow(clippy::unwrap_used)]
//! `/metrics` end to end: known traffic through the real gateway, then a scrape parsed by the
//! reference Prometheus parser (Python `prometheus_client`, installed with pip when missing) and
//! checked for exact counts; OpenMetrics only when `Accept` asks for it; counters survive a reload.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use http::Request;
use support::{TestGateway, Upstream, empty, full, http1_client};

/// One parsed sample: name, sorted labels, value.
type Labels = Vec<(String, String)>;
type Samples = BTreeMap<(String, Labels), f64>;

/// Makes sure the reference parser is importable, installing it with pip when it is not.
fn ensure_parser() {
    let importable = || {
        Command::new("python3")
            .args(["-c", "import prometheus_client"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if importable() {
        return;
    }
    let installed = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed && importable(),
        "the Prometheus parser is needed: python3 -m pip install prometheus_client"
    );
}

/// Parses `text` with the Python reference parser (text 0.0.4 or OpenMetrics) into samples.
fn parse(text: &str, openmetrics: bool) -> Samples {
    ensure_parser();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scrape.txt");
    std::fs::write(&file, text).unwrap();
    let module = if openmetrics {
        "prometheus_client.openmetrics.parser"
    } else {
        "prometheus_client.parser"
    };
    let script = format!(
        "import json, sys\n\
         from {module} import text_string_to_metric_families\n\
         out = []\n\
         for family in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
         \x20   for s in family.samples:\n\
         \x20       out.append([s.name, sorted(s.labels.items()), s.value])\n\
         print(json.dumps(out))\n"
    );
    let output = Command::new("python3")
        .args(["-c", &script, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the reference parser rejected the scrape: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<(String, Labels, f64)> = serde_json::from_slice(&output.stdout).unwrap();
    rows.into_iter()
        .map(|(name, labels, value)| ((name, labels), value))
        .collect()
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    samples.get(&(name.to_owned(), labels)).copied()
}

/// Scrapes `/metrics` with an optional `Accept`; returns content type and body.
async fn scrape(gw: &TestGateway, accept: Option<&str>) -> (String, String) {
    let addr = gw.gateway().admin_addr().unwrap();
    let mut request = Request::get(format!("http://{addr}/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = http1_client().fetch(request.body(empty()).unwrap()).await;
    assert_eq!(response.status, 200);
    let content_type = response.headers["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text())
}

/// A gateway with an admin listener and one upstream `app`, plus `rest` (consumers, routes).
fn with_app(app: &Upstream, rest: &str) -> String {
    format!(
        "version: 1
listeners: [{{ name: public, address: \"127.0.0.1:0\" }}]
admin: {{ address: \"127.0.0.1:0\" }}
observability: {{ access_log: {{ format: off }} }}
upstreams:
  app:
    targets: [{{ url: \"{}\" }}]
{rest}",
        app.url()
    )
}

fn config(app: &Upstream, dead: &str) -> String {
    with_app(
        app,
        &format!(
            "  gone:
    targets: [{{ url: \"{dead}\" }}]
    retries: {{ attempts: 2, on: [connect_error], budget: 100%, min_retries_per_second: 100 }}
routes:
  - {{ name: users, match: {{ path_prefix: /users }}, upstream: app }}
  - {{ name: status, match: {{ path_prefix: /status }}, upstream: app }}
  - {{ name: broken, match: {{ path_prefix: /broken }}, upstream: gone }}
"
        ),
    )
}

/// An address nothing listens on: connecting is refused.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn a_scrape_after_known_traffic_has_exact_counts_and_parses() {
    let app = Upstream::start("app").await;
    let dead = dead_url().await;
    let gw = TestGateway::start_with(&config(&app, &dead), &[]).await;
    let client = http1_client();
    for i in 0..3 {
        let (status, _, _) = client.get(&gw.url(&format!("/users/{i}"))).await;
        assert_eq!(status, 200);
    }
    for _ in 0..2 {
        let response = client
            .fetch(
                Request::post(gw.url("/users/new"))
                    .body(full("{}"))
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status, 200);
    }
    assert_eq!(client.get(&gw.url("/status/404")).await.0, 404);
    assert_eq!(client.get(&gw.url("/status/503")).await.0, 503);
    assert_eq!(client.get(&gw.url("/nowhere")).await.0, 404);
    // A spoofed, high-cardinality method is counted as `other`, never as its own label value.
    let brew = client
        .fetch(
            Request::builder()
                .method("BREW")
                .uri(gw.url("/users/pot"))
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(brew.status, 200);
    assert_eq!(client.get(&gw.url("/broken/x")).await.0, 502);

    let (content_type, text) = scrape(&gw, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!text.contains("# EOF"), "{text}");
    let s = parse(&text, false);
    let requests = |route: &str, method: &str, class: &str| {
        value(
            &s,
            "gantry_requests_total",
            &[
                ("route", route),
                ("method", method),
                ("status_class", class),
            ],
        )
    };
    assert_eq!(requests("users", "GET", "2xx"), Some(3.0), "{text}");
    assert_eq!(requests("users", "POST", "2xx"), Some(2.0));
    assert_eq!(requests("users", "other", "2xx"), Some(1.0));
    assert_eq!(requests("status", "GET", "4xx"), Some(1.0));
    assert_eq!(requests("status", "GET", "5xx"), Some(1.0));
    assert_eq!(requests("(unmatched)", "GET", "4xx"), Some(1.0));
    assert_eq!(requests("broken", "GET", "5xx"), Some(1.0));
    assert_eq!(requests("users", "GET", "5xx"), None);
    assert!(!text.contains("/users/1"), "raw paths must never be labels");
    assert!(!text.contains("BREW"));
    let count = |route: &str| {
        value(
            &s,
            "gantry_request_duration_seconds_count",
            &[("route", route)],
        )
    };
    assert_eq!(count("users"), Some(6.0));
    assert_eq!(count("status"), Some(2.0));
    let target = app.addr().to_string();
    let tries = |upstream: &str, target: &str, outcome: &str| {
        value(
            &s,
            "gantry_upstream_request_duration_seconds_count",
            &[
                ("upstream", upstream),
                ("target", target),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(tries("app", &target, "2xx"), Some(6.0));
    assert_eq!(tries("app", &target, "4xx"), Some(1.0));
    assert_eq!(tries("app", &target, "5xx"), Some(1.0));
    let dead_target = dead.trim_start_matches("http://");
    assert_eq!(tries("gone", dead_target, "connect_error"), Some(2.0));
    assert_eq!(
        value(&s, "gantry_upstream_retries_total", &[("upstream", "gone")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "gantry_requests_in_flight", &[("listener", "public")]),
        Some(0.0)
    );
    // At least the test client's keep-alive connection (its pool may hold more than one).
    let open = value(&s, "gantry_connections_open", &[("listener", "public")]).unwrap();
    assert!(open >= 1.0, "{text}");
    assert_eq!(
        value(
            &s,
            "gantry_upstream_target_healthy",
            &[("upstream", "app"), ("target", &target)]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "gantry_config_reloads_total", &[("result", "success")]),
        Some(0.0)
    );
    let version = gw.gateway().status().version;
    assert_eq!(
        value(&s, "gantry_config_info", &[("version", &version)]),
        Some(1.0)
    );
}

#[tokio::test]
async fn openmetrics_only_when_the_scraper_asks_for_it() {
    let app = Upstream::start("app").await;
    let dead = dead_url().await;
    let gw = TestGateway::start_with(&config(&app, &dead), &[]).await;
    assert_eq!(http1_client().get(&gw.url("/users/1")).await.0, 200);
    let (content_type, text) = scrape(
        &gw,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let s = parse(&text, true);
    assert_eq!(
        value(
            &s,
            "gantry_requests_total",
            &[
                ("route", "users"),
                ("method", "GET"),
                ("status_class", "2xx")
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn counters_keep_counting_across_a_reload() {
    let app = Upstream::start("app").await;
    let dead = dead_url().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.yaml");
    std::fs::write(&path, config(&app, &dead)).unwrap();
    let gw = TestGateway::start_file(&path).await;
    let client = http1_client();
    assert_eq!(client.get(&gw.url("/users/1")).await.0, 200);
    // A changed config (a new route) compiles new route handles from the same families.
    let changed = config(&app, &dead).replace(
        "routes:\n",
        "routes:\n  - { name: extra, match: { path_prefix: /extra }, upstream: app }\n",
    );
    std::fs::write(&path, changed).unwrap();
    gw.gateway().reload().await.unwrap();
    assert_eq!(client.get(&gw.url("/users/2")).await.0, 200);
    let s = parse(&scrape(&gw, None).await.1, false);
    assert_eq!(
        value(
            &s,
            "gantry_requests_total",
            &[
                ("route", "users"),
                ("method", "GET"),
                ("status_class", "2xx")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "gantry_config_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn counting_can_be_switched_off_while_state_series_stay() {
    let app = Upstream::start("app").await;
    let dead = dead_url().await;
    let yaml = config(&app, &dead).replace(
        "observability: { access_log: { format: off } }",
        "observability: { access_log: { format: off }, metrics: { enabled: false } }",
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    assert_eq!(http1_client().get(&gw.url("/users/1")).await.0, 200);
    let (_, text) = scrape(&gw, None).await;
    let s = parse(&text, false);
    assert_eq!(
        value(
            &s,
            "gantry_requests_total",
            &[
                ("route", "users"),
                ("method", "GET"),
                ("status_class", "2xx")
            ]
        ),
        None,
        "{text}"
    );
    assert!(text.contains("gantry_config_info{"), "{text}");
}

#[tokio::test]
async fn refused_credentials_are_counted_by_method_and_reason() {
    let app = Upstream::start("app").await;
    let yaml = with_app(
        &app,
        "consumers:
  - { name: reader, api_keys: [\"k-good\"], scopes: [read] }
routes:
  - name: keyed
    match: { path_prefix: /keyed }
    upstream: app
    policies: { auth: { methods: [api_key] } }
  - name: writers
    match: { path_prefix: /write }
    upstream: app
    policies: { auth: { methods: [api_key], scopes: [write] } }
",
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let client = http1_client();
    let with_key = |path: &str, key: &str| {
        Request::get(gw.url(path))
            .header("x-api-key", key)
            .body(empty())
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(client.fetch(with_key("/keyed", "k-bad")).await.status, 401);
    }
    assert_eq!(client.get(&gw.url("/keyed")).await.0, 401);
    assert_eq!(client.fetch(with_key("/write", "k-good")).await.status, 403);
    assert_eq!(client.fetch(with_key("/keyed", "k-good")).await.status, 200);
    let (_, text) = scrape(&gw, None).await;
    let s = parse(&text, false);
    let failures = |method: &str, reason: &str| {
        value(
            &s,
            "gantry_auth_failures_total",
            &[("method", method), ("reason", reason)],
        )
    };
    assert_eq!(failures("api_key", "invalid API key"), Some(2.0), "{text}");
    assert_eq!(failures("none", "credentials are required"), Some(1.0));
    assert_eq!(failures("authorization", "forbidden"), Some(1.0));
    assert_eq!(
        app.requests().len(),
        1,
        "only the good key reached the upstream"
    );
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_route_and_limit() {
    let app = Upstream::start("app").await;
    let yaml = with_app(
        &app,
        "routes:
  - name: limited
    match: { path_prefix: /limited }
    upstream: app
    policies: { rate_limit: [{ key: route, rate: 1/h, burst: 2 }] }
",
    );
    let gw = TestGateway::start_with(&yaml, &[]).await;
    let client = http1_client();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(client.get(&gw.url("/limited")).await.0);
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    let (_, text) = scrape(&gw, None).await;
    let s = parse(&text, false);
    assert_eq!(
        value(
            &s,
            "gantry_rate_limited_total",
            &[
                ("route", "limited"),
                ("limit", "limit 1/h by route"),
                ("outcome", "limited")
            ]
        ),
        Some(3.0),
        "{text}"
    );
}
