//! Router matching: a fixed route table (exact, prefix, parameters, globs, hosts, wildcard host,
//! methods, header and query conditions) looked up with fuzzed host, path, method, header and
//! query. Never panics; a match on a normalised path only ever comes from a route whose prefix
//! the path has.
#![no_main]

use std::sync::OnceLock;

use gantry::GatewayConfig;
use gantry::router::{Lookup, RequestView, normalize_path};
use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"version: 1
listeners: [{ name: p, address: "127.0.0.1:0" }]
upstreams:
  b: { targets: [{ url: "http://127.0.0.1:9" }] }
routes:
  - { name: exact, match: { path: /exact }, upstream: b }
  - { name: admin, match: { path_prefix: /admin, methods: [GET, POST] }, upstream: b }
  - { name: user, match: { path: "/users/{id}/orders/{order}" }, upstream: b }
  - { name: host, match: { hosts: [api.example.com], path_prefix: /api }, upstream: b }
  - { name: wild, match: { hosts: ["*.example.org"], path_prefix: / }, upstream: b }
  - { name: header, match: { path_prefix: /h, headers: { x-tenant: gold } }, upstream: b }
  - { name: query, match: { path_prefix: /q, query: { v: "2" } }, upstream: b }
  - { name: rest, match: { path_prefix: /public }, upstream: b }
"#;

fn config() -> &'static GatewayConfig {
    static CONFIG_ONCE: OnceLock<GatewayConfig> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| {
        gantry::config::load_str_with_env("fuzz.yaml", CONFIG, &|_| None)
            .unwrap_or_else(|e| panic!("fuzz config rejected: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // host \n path \n method \n x-tenant \n query
    let mut parts = text.split('\n');
    let host = parts.next().unwrap_or("");
    let raw_path = parts.next().unwrap_or("/");
    let method =
        Method::from_bytes(parts.next().unwrap_or("GET").as_bytes()).unwrap_or(Method::GET);
    let mut headers = HeaderMap::new();
    if let Some(tenant) = parts.next()
        && let Ok(value) = HeaderValue::from_str(tenant)
    {
        headers.insert("x-tenant", value);
    }
    let query = parts.next();
    let Ok(path) = normalize_path(raw_path) else {
        return;
    };
    let view = RequestView {
        host,
        path: &path,
        method: &method,
        headers: &headers,
        query,
    };
    if let Lookup::Matched { value, .. } = config().runtime.router.lookup(&view) {
        let name: &str = &value.name;
        let prefix = match name {
            "exact" => "/exact",
            "admin" => "/admin",
            "user" => "/users/",
            "host" => "/api",
            "header" => "/h",
            "query" => "/q",
            "rest" => "/public",
            _ => "/",
        };
        assert!(
            path.starts_with(prefix),
            "{path:?} matched route {}",
            value.name
        );
    }
});
