//! Loader and validator tests: exact locations, messages, and a realistic file.

use super::*;

/// Four lines: a valid head every test builds on, so a test's own lines start at line 5.
const HEAD: &str = "version: 1\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\n";

/// Upstreams `users` and `orders` on lines 5-9.
const UPSTREAMS: &str = "upstreams:\n  users:\n    targets: [{ url: \"http://127.0.0.1:8081\" }]\n  orders:\n    targets: [{ url: \"http://127.0.0.1:8082\" }]\n";

fn test_env(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("9090".to_owned()),
        "TRICKY" => Some("a: [x]".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<LoadedFile, ConfigErrors> {
    parse_str("t.yaml", text, &test_env)
}

/// The structural errors of `text`, displayed.
fn structural(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected a structural error"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// The semantic errors of `text` (which must parse), displayed.
fn semantic(text: &str) -> Vec<String> {
    let loaded = parse(text).unwrap_or_else(|e| panic!("structural error: {e}"));
    match validate(&loaded) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// Routes (starting at line 10) after the head and the upstreams.
fn with_routes(routes: &str) -> String {
    format!("{HEAD}{UPSTREAMS}routes:\n{routes}")
}

#[test]
fn syntax_error_is_located_by_the_scanner() {
    let errors = structural("version: 1\nlisteners: [\n  { name: a\n");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("t.yaml:4:1: YAML syntax error: "),
        "{errors:?}"
    );
    let errors = structural("version: 1\nlisteners:\n  - name: 'open\n");
    assert!(
        errors[0].starts_with("t.yaml:3:11: YAML syntax error: "),
        "{errors:?}"
    );
}

#[test]
fn empty_file_and_second_document_are_errors() {
    assert_eq!(
        structural(""),
        ["t.yaml:1:1: the file is empty: expected at least `version` and `listeners`"]
    );
    let errors = structural(&format!("{HEAD}---\nversion: 1\n"));
    assert_eq!(
        errors,
        ["t.yaml:5:1: only one YAML document is allowed in a config file"]
    );
}

#[test]
fn duplicate_key_is_located_at_the_second() {
    let errors = structural(&format!("{HEAD}version: 1\n"));
    assert_eq!(
        errors,
        ["t.yaml:5:1: version: duplicate key `version` (first at line 1)"]
    );
}

#[test]
fn wrong_type_is_located_at_the_value() {
    let errors = structural(
        "version: 1\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\n    protocols: http1\n",
    );
    assert_eq!(
        errors,
        [
            "t.yaml:5:16: listeners[0].protocols: invalid type: string \"http1\", expected a sequence"
        ]
    );
    let errors = structural("version: one\nlisteners: []\n");
    assert_eq!(
        errors,
        [
            "t.yaml:1:10: version: invalid type: string \"one\", expected an integer from 0 to 4294967295"
        ]
    );
}

#[test]
fn unknown_key_points_at_the_key_with_a_suggestion() {
    let errors = structural(&with_routes(
        "  - name: a\n    match: { path: /x }\n    upstrem: users\n",
    ));
    assert_eq!(
        errors,
        [
            "t.yaml:13:5: routes[0].upstrem: unknown field `upstrem`, expected one of `name`, `match`, `upstream`, `aggregate`, `rewrite`, `websocket`, `fallback`, `policies` (did you mean `upstream`?)"
        ]
    );
    let errors = structural(&format!("{HEAD}servr: {{}}\n"));
    assert!(
        errors[0].starts_with("t.yaml:5:1: servr: unknown field `servr`"),
        "{errors:?}"
    );
    assert!(
        errors[0].ends_with("(did you mean `server`?)"),
        "{errors:?}"
    );
}

#[test]
fn unknown_enum_value_gets_a_suggestion() {
    let errors = structural(&format!(
        "{HEAD}upstreams:\n  u:\n    load_balancing: roundrobin\n"
    ));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .starts_with("t.yaml:7:21: upstreams.u.load_balancing: unknown value `roundrobin`"),
        "{errors:?}"
    );
    assert!(
        errors[0].ends_with("(did you mean `round_robin`?)"),
        "{errors:?}"
    );
}

#[test]
fn bad_duration_and_size_are_located_at_the_value() {
    let errors = structural(&format!(
        "{HEAD}upstreams:\n  u:\n    timeouts: {{ connect: 5x }}\n"
    ));
    assert_eq!(
        errors,
        [
            "t.yaml:7:26: upstreams.u.timeouts.connect: invalid duration \"5x\": unit must be ms, s, m or h"
        ]
    );
    let errors = structural(&format!(
        "{HEAD}server:\n  limits:\n    max_body_bytes: 10MB\n"
    ));
    assert_eq!(
        errors,
        [
            "t.yaml:7:21: server.limits.max_body_bytes: invalid size \"10MB\": unit must be B, KiB, MiB or GiB"
        ]
    );
}

#[test]
fn value_match_errors_explain_the_two_forms() {
    let errors = structural(&with_routes(
        "  - name: a\n    match: { path: /x, headers: { X-V: 2 } }\n    upstream: users\n",
    ));
    assert_eq!(
        errors,
        [
            "t.yaml:12:40: routes[0].match.headers.X-V: expected a string or { present: true|false }; quote it to match the text: \"2\""
        ]
    );
    let errors = structural(&with_routes(
        "  - name: a\n    match: { path: /x, query: { v: { presnt: true } } }\n    upstream: users\n",
    ));
    assert_eq!(
        errors,
        [
            "t.yaml:12:36: routes[0].match.query.v: expected a string or { present: true|false }, found unknown key `presnt` (did you mean `present`?)"
        ]
    );
}

#[test]
fn env_substitution_set_unset_default_escape() {
    let text = "version: 1\nlisteners:\n  - name: ${NAME:-public}\n    address: 127.0.0.1:${PORT}\nserver:\n  via_name: \"$${PORT}\"\n  trusted_proxies:\n    - ${TRICKY}\n  worker_threads: ${PORT}\n";
    let loaded = parse(text).unwrap();
    assert_eq!(loaded.config.listeners[0].name, "public");
    assert_eq!(loaded.config.listeners[0].address, "127.0.0.1:9090");
    assert_eq!(loaded.config.server.via_name.as_deref(), Some("${PORT}"));
    // An environment value never adds structure: `a: [x]` stays one string.
    assert_eq!(loaded.config.server.trusted_proxies, ["a: [x]"]);
    // Typing happens after substitution.
    assert_eq!(loaded.config.server.worker_threads, Some(9090));

    let errors =
        structural("version: 1\nlisteners:\n  - name: ${NAME}\n    address: \"${ADDR}\"\n");
    assert_eq!(
        errors,
        [
            "t.yaml:3:11: listeners[0].name: environment variable NAME is not set",
            "t.yaml:4:14: listeners[0].address: environment variable ADDR is not set",
        ]
    );
}

#[test]
fn empty_credential_check() {
    let loaded = parse(&format!("{HEAD}server:\n  via_name: ${{EMPTY:-}}\n")).unwrap();
    assert_eq!(loaded.config.server.via_name.as_deref(), Some(""));
    let error = check_credential(&loaded, "server.via_name", "").unwrap();
    assert_eq!(error.line, 6);
    assert_eq!(error.column, 13);
    assert!(error.message.starts_with("empty credential"));
    assert!(check_credential(&loaded, "server.via_name", "  ").is_some());
    assert!(check_credential(&loaded, "server.via_name", "s3cret").is_none());
}

#[test]
fn io_error_is_reported_at_the_start_of_the_file() {
    let errors = parse_file(Path::new("/nonexistent/gantry.yaml")).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert!(
        errors.0[0]
            .to_string()
            .starts_with("/nonexistent/gantry.yaml:1:1: cannot read the config file")
    );
}

#[test]
fn listener_rules() {
    let text = "version: 2\nlisteners:\n  - name: a\n    address: localhost:80\n    protocols: [http1, http1]\n  - name: a\n    address: \"[::1]:0\"\n  - name: b\n    address: 0.0.0.0:80\n  - name: c\n    address: 0.0.0.0:80\n    protocols: []\n";
    assert_eq!(
        semantic(text),
        [
            "t.yaml:1:10: version: unsupported version 2: only 1 exists",
            "t.yaml:4:14: listeners[0].address: invalid address \"localhost:80\": expected IP:PORT, e.g. 0.0.0.0:8080 or [::1]:8080 (no host names)",
            "t.yaml:5:24: listeners[0].protocols[1]: duplicate protocol",
            "t.yaml:6:11: listeners[1].name: duplicate listener name \"a\" (first at line 3)",
            "t.yaml:11:14: listeners[3].address: address 0.0.0.0:80 is already used by the listener at line 9",
            "t.yaml:12:16: listeners[3].protocols: at least one protocol is needed (http1, h2c)",
        ]
    );
    assert_eq!(
        semantic("version: 1\nlisteners: []\n"),
        ["t.yaml:2:12: listeners: at least one listener is needed"]
    );
}

#[test]
fn server_rules() {
    let text = format!(
        "{HEAD}server:\n  trusted_proxies: [10.0.0.0/8, 127.0.0.1, \"::1\", nope/3]\n  request_id_header: \"X Request\"\n  worker_threads: 0\n  via_name: \"my proxy\"\n  limits: {{ max_body_bytes: 0, idle_timeout: 0s, max_connections: 0 }}\n"
    );
    assert_eq!(
        semantic(&text),
        [
            "t.yaml:6:51: server.trusted_proxies[3]: invalid CIDR \"nope/3\": expected e.g. 10.0.0.0/8, 127.0.0.1 or ::1/128",
            "t.yaml:7:22: server.request_id_header: invalid header name \"X Request\"",
            "t.yaml:8:19: server.worker_threads: must be at least 1",
            "t.yaml:9:13: server.via_name: invalid name \"my proxy\": use letters, digits and -._~",
            "t.yaml:10:29: server.limits.max_body_bytes: must be greater than 0",
            "t.yaml:10:46: server.limits.idle_timeout: must be greater than 0",
            "t.yaml:10:67: server.limits.max_connections: must be at least 1",
        ]
    );
}

#[test]
fn upstream_rules() {
    let text = format!(
        "{HEAD}upstreams:
  users:
    targets:
      - {{ url: \"ftp://a:1\" }}
      - {{ url: \"http://b:1/x\" }}
      - {{ url: \"http://u@b:1\" }}
      - {{ url: \"b:1\" }}
      - {{ url: \"http://c:2\", weight: 0 }}
      - {{ url: \"http://c:3?x=1\" }}
      - {{ url: \"http://c:2\" }}
      - {{ url: \"http://c:0\" }}
      - {{ url: \"http://[::1]:80/\" }}
      - {{ url: \"http://http://c:4\" }}
    load_balancing: {{ consistent_hash: {{ header: X-A, client_ip: true }} }}
    timeouts: {{ request: 2s, per_try: 3s, connect: 0ms }}
    pool: {{ max_idle_per_target: 0 }}
  \"bad name\": {{ targets: [{{ url: \"http://x:1\" }}] }}
  empty: {{}}
  hashed:
    targets: [{{ url: \"http://x:1\" }}]
    load_balancing: {{ consistent_hash: {{ header: \"X Bad\" }} }}
    timeouts: {{ per_try: 20s }}
"
    );
    assert_eq!(
        semantic(&text),
        [
            "t.yaml:8:16: upstreams.users.targets[0].url: unsupported scheme \"ftp\": expected http://HOST:PORT",
            "t.yaml:9:16: upstreams.users.targets[1].url: invalid URL \"http://b:1/x\": a target has no path (routes decide the path)",
            "t.yaml:10:16: upstreams.users.targets[2].url: a target URL cannot carry credentials",
            "t.yaml:11:16: upstreams.users.targets[3].url: invalid URL \"b:1\": expected http://HOST:PORT (the scheme is missing)",
            "t.yaml:12:38: upstreams.users.targets[4].weight: weight must be from 1 to 1000000",
            "t.yaml:13:16: upstreams.users.targets[5].url: invalid URL \"http://c:3?x=1\": a target has no query string",
            "t.yaml:14:16: upstreams.users.targets[6].url: duplicate target \"http://c:2\" (first at line 12); use weight instead",
            "t.yaml:15:16: upstreams.users.targets[7].url: invalid URL \"http://c:0\": the port is missing or 0",
            "t.yaml:17:16: upstreams.users.targets[9].url: invalid URL \"http://http://c:4\": the scheme is written twice",
            "t.yaml:18:40: upstreams.users.load_balancing.consistent_hash: consistent_hash needs exactly one of header, cookie or client_ip: true",
            "t.yaml:19:39: upstreams.users.timeouts.per_try: per_try (3s) cannot be longer than request (2s)",
            "t.yaml:19:52: upstreams.users.timeouts.connect: must be greater than 0",
            "t.yaml:20:34: upstreams.users.pool.max_idle_per_target: must be at least 1",
            "t.yaml:21:3: upstreams.bad name: invalid upstream name \"bad name\": use letters, digits, _ . and -",
            "t.yaml:22:10: upstreams.empty.targets: an upstream needs targets (write `targets: []` to drain it: requests get 503)",
            "t.yaml:25:50: upstreams.hashed.load_balancing.consistent_hash.header: invalid header name \"X Bad\"",
            "t.yaml:26:26: upstreams.hashed.timeouts.per_try: per_try (20s) cannot be longer than the default request timeout (15s)",
        ]
    );
}

#[test]
fn route_names_and_upstream_references() {
    let routes = "  - name: a\n    match: { path: /a }\n    upstream: user\n  - name: a\n    match: { path: /b }\n    upstream: users\n  - name: \"\"\n    match: { path: /c }\n  - name: d\n    match: { path: /d }\n    upstream: zzz\n";
    assert_eq!(
        semantic(&with_routes(routes)),
        [
            "t.yaml:13:15: routes[0].upstream: unknown upstream \"user\" (did you mean \"users\"?)",
            "t.yaml:14:11: routes[1].name: duplicate route name \"a\" (first at line 11)",
            "t.yaml:17:5: routes[2].upstream: a route needs `upstream`: the upstream to forward to",
            "t.yaml:17:11: routes[2].name: a route name cannot be empty",
            "t.yaml:21:15: routes[3].upstream: unknown upstream \"zzz\"",
        ]
    );
}

#[test]
fn route_match_rules() {
    let routes = "  - name: a
    match: { path: /x, path_prefix: /y }
    upstream: users
  - name: b
    match: { methods: [GET] }
    upstream: users
  - name: c
    match: { path: \"users/{id}\", hosts: [\"a.com:80\", \"*.*.a.com\", x.com, X.com, \"*.ok.com\"] }
    upstream: users
  - name: d
    match: { path: \"/a/{*rest}/b\", methods: [get, GET, GET, \"G T\"] }
    upstream: users
  - name: e
    match: { path: \"/a/x{id}\", headers: { X-A: \"1\", x-a: \"2\", \"bad header\": \"1\" } }
    upstream: users
  - name: f
    match: { path_prefix: \"/a/{x}\" }
    upstream: users
  - name: g
    match: { path: \"/u/{id}/{id}\" }
    upstream: users
  - name: h
    match: { path: \"/u/{1d}\" }
    upstream: users
  - name: i
    match: { path_prefix: v1 }
    upstream: users
";
    assert_eq!(
        semantic(&with_routes(routes)),
        [
            "t.yaml:12:37: routes[0].match.path_prefix: match.path and match.path_prefix cannot both be set",
            "t.yaml:15:12: routes[1].match: a route needs match.path or match.path_prefix",
            "t.yaml:18:20: routes[2].match.path: a path must start with /: \"users/{id}\"",
            "t.yaml:18:42: routes[2].match.hosts[0]: invalid host \"a.com:80\": a host has no port (and no scheme)",
            "t.yaml:18:54: routes[2].match.hosts[1]: invalid host \"*.*.a.com\": only a single leading `*.` wildcard is allowed",
            "t.yaml:18:74: routes[2].match.hosts[3]: duplicate host \"X.com\"",
            "t.yaml:21:20: routes[3].match.path: in \"/a/{*rest}/b\": a catch-all {*rest} must be the last segment",
            "t.yaml:21:46: routes[3].match.methods[0]: method \"get\" must be uppercase: \"GET\"",
            "t.yaml:21:56: routes[3].match.methods[2]: duplicate method \"GET\"",
            "t.yaml:21:61: routes[3].match.methods[3]: invalid method \"G T\"",
            "t.yaml:24:20: routes[4].match.path: in \"/a/x{id}\": braces must enclose a whole segment: /{name} or /{*name}",
            "t.yaml:24:53: routes[4].match.headers.x-a: header \"x-a\" is also listed as \"X-A\"; header names are case-insensitive",
            "t.yaml:24:63: routes[4].match.headers.bad header: invalid header name \"bad header\"",
            "t.yaml:27:27: routes[5].match.path_prefix: a path_prefix cannot have {params}; use match.path with {*rest}",
            "t.yaml:30:20: routes[6].match.path: in \"/u/{id}/{id}\": parameter {id} appears twice",
            "t.yaml:33:20: routes[7].match.path: in \"/u/{1d}\": invalid parameter name \"1d\": use letters, digits and _, not starting with a digit",
            "t.yaml:36:27: routes[8].match.path_prefix: a path must start with /: \"v1\"",
        ]
    );
}

#[test]
fn rewrite_rules() {
    let routes = "  - name: a
    match: { path_prefix: /a }
    upstream: users
    rewrite: { path: \"/z/{id}\" }
  - name: b
    match: { path: \"/b/{id}\" }
    upstream: users
    rewrite: { path: \"/z/{uid}\", strip_prefix: x }
  - name: c
    match: { path: \"/c/{*rest}\" }
    upstream: users
    rewrite: {}
  - name: d
    match: { path: \"/d/{id}/{*rest}\" }
    upstream: users
    rewrite: { path: \"/z/{rest}/{id}/{id}\" }
  - name: e
    match: { path_prefix: /e }
    upstream: users
    rewrite: { strip_prefix: /e }
";
    assert_eq!(
        semantic(&with_routes(routes)),
        [
            "t.yaml:14:22: routes[0].rewrite.path: rewrite.path uses params, which only match.path (a template) captures",
            "t.yaml:18:22: routes[1].rewrite.path: rewrite.path uses {uid}, which match.path does not capture",
            "t.yaml:18:48: routes[1].rewrite.strip_prefix: rewrite.path and rewrite.strip_prefix cannot both be set",
            "t.yaml:18:48: routes[1].rewrite.strip_prefix: strip_prefix must start with /",
            "t.yaml:22:14: routes[2].rewrite: a rewrite needs exactly one of path or strip_prefix",
        ]
    );
}

#[test]
fn shadowed_routes_are_reported() {
    // d and i have more conditions than a and h, so the router ranks them first: not shadowed.
    let routes = "  - name: a
    match: { path: \"/u/{id}\", methods: [GET, POST] }
    upstream: users
  - name: b
    match: { path: \"/u/{uid}\", methods: [GET] }
    upstream: orders
  - name: c
    match: { path: \"/u/{id}\", methods: [DELETE] }
    upstream: users
  - name: d
    match: { path: \"/u/{id}\", methods: [GET], headers: { X-A: \"1\" } }
    upstream: users
  - name: e
    match: { path_prefix: /p, headers: { X-A: \"1\" } }
    upstream: users
  - name: f
    match: { path_prefix: /p, headers: { x-a: \"1\" } }
    upstream: users
  - name: g
    match: { path_prefix: /p, hosts: [a.com] }
    upstream: users
  - name: h
    match: { path_prefix: /p }
    upstream: users
  - name: i
    match: { path_prefix: /p, query: { v: \"2\" } }
    upstream: users
";
    assert_eq!(
        semantic(&with_routes(routes)),
        [
            "t.yaml:15:12: routes[1].match: route \"b\" can never match: route \"a\" (line 11) matches every request it would",
            "t.yaml:27:12: routes[5].match: route \"f\" can never match: route \"e\" (line 23) matches every request it would",
        ]
    );
}

#[test]
fn several_errors_from_different_sections_come_together_in_file_order() {
    let text = format!(
        "version: 3\nlisteners:\n  - name: public\n    address: nowhere\n{UPSTREAMS}routes:\n  - name: r\n    match: {{ path: /r, methods: [get] }}\n    upstream: userz\n"
    );
    let errors = semantic(&text);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].starts_with("t.yaml:1:10: version:"));
    assert!(errors[1].starts_with("t.yaml:4:14: listeners[0].address:"));
    assert!(errors[2].starts_with("t.yaml:12:34: routes[0].match.methods[0]:"));
    assert!(errors[3].starts_with(
        "t.yaml:13:15: routes[0].upstream: unknown upstream \"userz\" (did you mean \"users\"?)"
    ));
}

#[test]
fn schema_describes_routes_and_upstreams() {
    let schema = json_schema();
    let properties = &schema["properties"];
    assert!(properties.get("routes").is_some(), "{schema}");
    assert!(properties.get("upstreams").is_some(), "{schema}");
}

/// The foundation subset of `examples/gantry.yaml`: what exists today must load and validate.
const FOUNDATION: &str = r#"# Gantry configuration (foundation subset)
version: 1

listeners:
  - name: public
    address: 0.0.0.0:8080          # "127.0.0.1:0" is allowed
    protocols: [http1, h2c]
  - name: public-v6
    address: "[::1]:0"

server:
  trusted_proxies: [10.0.0.0/8, 127.0.0.1/32]
  request_id_header: X-Request-Id
  shutdown_grace: 30s
  limits:
    max_header_bytes: 32KiB
    max_uri_bytes: 8KiB
    max_body_bytes: 10MiB
    header_read_timeout: 10s
    idle_timeout: 60s
    max_connections: 20000
    h2_max_concurrent_streams: 100

observability:
  access_log: { format: json, output: stdout }

upstreams:
  users:
    targets:
      - { url: "http://10.0.1.10:8080", weight: 3 }
      - { url: "http://10.0.1.11:8080", weight: 1 }
    load_balancing: weighted_round_robin
    timeouts: { connect: 1s, request: 5s, per_try: 2s, idle: 90s }
    pool: { max_idle_per_target: 64 }
  orders-by-user:
    targets: [{ url: "http://10.0.2.10:8080" }, { url: "http://10.0.2.11:8080" }]
    load_balancing: { consistent_hash: { header: X-User-Id } }
  inventory-grpc:
    protocol: grpc
    targets: [{ url: "http://10.0.3.10:50051" }]
  users-v2:
    targets: [{ url: "http://10.0.1.20:8080" }]
    host_header: target

routes:
  - name: users-read
    match:
      hosts: [api.example.com, "*.api.example.com"]
      path: /v1/users/{id}
      methods: [GET, HEAD]
    upstream: users
    rewrite: { path: "/users/{id}" }

  - name: users-v2-by-header
    match: { path_prefix: /users, headers: { Accept-Version: "2" } }
    upstream: users-v2

  - name: orders
    match: { path: "/v1/orders/{*rest}", query: { debug: { present: false } } }
    upstream: orders-by-user

  - name: legacy-xml
    match: { path_prefix: /legacy/ }
    upstream: users
    rewrite: { strip_prefix: /legacy }

  - name: chat
    match: { path: /ws/chat }
    upstream: users
    websocket: true
"#;

#[test]
fn foundation_example_loads_and_validates() {
    let loaded = parse(FOUNDATION).unwrap_or_else(|e| panic!("{e}"));
    if let Err(errors) = validate(&loaded) {
        panic!("{errors}");
    }
    let config = &loaded.config;
    assert_eq!(config.listeners.len(), 2);
    assert_eq!(
        config.server.limits.max_body_bytes.map(|s| s.0),
        Some(10 << 20)
    );
    assert_eq!(config.upstreams.len(), 4);
    assert_eq!(config.upstreams["users"].targets[0].weight, 3);
    assert_eq!(
        config.upstreams["orders-by-user"].load_balancing,
        file::FileLoadBalancing::ConsistentHash(file::FileHashKey {
            header: Some("X-User-Id".to_owned()),
            cookie: None,
            client_ip: false,
        })
    );
    assert_eq!(config.routes.len(), 5);
    assert_eq!(
        config.routes[0].matcher.path.as_deref(),
        Some("/v1/users/{id}")
    );
    assert!(config.routes[4].websocket);
    assert_eq!(loaded.source_map.locate("routes[0].match.path"), (49, 13));
    assert_eq!(
        loaded.source_map.locate("upstreams.users.targets[1].url"),
        (31, 16)
    );
    assert_eq!(
        loaded.error("routes[2].upstream", "x").to_string(),
        "t.yaml:60:15: routes[2].upstream: x"
    );
}

#[test]
fn truncated_or_mangled_input_never_panics() {
    let boundaries = FOUNDATION.char_indices().map(|(i, _)| i);
    for end in boundaries {
        let truncated = &FOUNDATION[..end];
        if let Ok(loaded) = parse(truncated) {
            let _ = validate(&loaded);
        }
        let mangled: String = FOUNDATION
            .char_indices()
            .map(|(i, c)| {
                if i == end {
                    ['{', ':', '-', '[', '"', '&', '*', '\t'][end % 8]
                } else {
                    c
                }
            })
            .collect();
        if let Ok(loaded) = parse(&mangled) {
            let _ = validate(&loaded);
        }
    }
}

/// A file with `n` routes `r0..`, one per line from line 10, the route at `odd` carrying `extra`.
fn many_routes(n: usize, odd: usize, extra: &str) -> String {
    let mut text = format!("{HEAD}{UPSTREAMS}routes:\n");
    for i in 0..n {
        let more = if i == odd { extra } else { "" };
        text.push_str(&format!(
            "  - {{ name: r{i}, match: {{ path: /r{i} }}, upstream: users{more} }}\n"
        ));
    }
    text
}

#[test]
fn long_route_lists_deserialize_in_order_on_two_threads() {
    let loaded = parse(&many_routes(1500, usize::MAX, "")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = loaded
        .config
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let expected: Vec<String> = (0..1500).map(|i| format!("r{i}")).collect();
    assert_eq!(names, expected);
}

#[test]
fn an_error_in_either_half_of_a_long_route_list_is_located_exactly() {
    for odd in [3, 1400] {
        let errors = structural(&many_routes(1500, odd, ", retries: 3"));
        let line = 11 + odd;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(&format!("t.yaml:{line}:")),
            "{errors:?}"
        );
        assert!(
            errors[0].contains(&format!("routes[{odd}]"))
                && errors[0].contains("unknown field `retries`"),
            "{errors:?}"
        );
    }
}
