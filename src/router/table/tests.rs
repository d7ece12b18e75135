use super::*;
use http::HeaderValue;

/// A route under construction: `r(tpl("/x"), "name").host("h").get()`.
struct R(RouteSpec<&'static str>);

fn r(path: PathPattern, value: &'static str) -> R {
    R(RouteSpec {
        hosts: vec![],
        path,
        methods: vec![],
        headers: vec![],
        query: vec![],
        value,
    })
}

fn tpl(p: &str) -> PathPattern {
    PathPattern::Template(p.to_owned())
}

fn pre(p: &str) -> PathPattern {
    PathPattern::Prefix(p.to_owned())
}

impl R {
    fn host(mut self, h: &str) -> Self {
        self.0.hosts.push(h.to_owned());
        self
    }
    fn method(mut self, m: Method) -> Self {
        self.0.methods.push(m);
        self
    }
    fn header(mut self, name: &'static str, cond: ValueCondition) -> Self {
        self.0.headers.push((HeaderName::from_static(name), cond));
        self
    }
    fn query(mut self, name: &str, cond: ValueCondition) -> Self {
        self.0.query.push((name.to_owned(), cond));
        self
    }
}

fn eq(v: &str) -> ValueCondition {
    ValueCondition::Equals(v.to_owned())
}

fn build(routes: Vec<R>) -> Router<&'static str> {
    match Router::build(routes.into_iter().map(|r| r.0).collect()) {
        Ok(router) => router,
        Err(errors) => panic!("build failed: {errors:?}"),
    }
}

fn build_err(routes: Vec<R>) -> Vec<BuildError> {
    match Router::build(routes.into_iter().map(|r| r.0).collect()) {
        Ok(router) => panic!("build should fail: {router:?}"),
        Err(errors) => errors,
    }
}

/// A request: `req("GET", "host", "/path?query").header("a", "b")`.
struct Q {
    method: Method,
    host: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
}

fn req(method: &str, host: &str, target: &str) -> Q {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    Q {
        method: Method::from_bytes(method.as_bytes()).expect("method"),
        host: host.to_owned(),
        path,
        query,
        headers: HeaderMap::new(),
    }
}

impl Q {
    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
        self
    }
}

/// Outcome as a string: `value`, `value {k=v, …}`, `405 GET, HEAD` or `404`.
fn find(router: &Router<&'static str>, q: &Q) -> String {
    let view = RequestView {
        host: &q.host,
        path: &q.path,
        method: &q.method,
        headers: &q.headers,
        query: q.query.as_deref(),
    };
    match router.lookup(&view) {
        Lookup::Matched { value, params } if params.is_empty() => (*value).to_owned(),
        Lookup::Matched { value, params } => {
            let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{value} {{{}}}", pairs.join(", "))
        }
        Lookup::MethodNotAllowed { allow } => format!("405 {allow}"),
        Lookup::NotFound => "404".to_owned(),
    }
}

fn get(router: &Router<&'static str>, path: &str) -> String {
    find(router, &req("GET", "example.com", path))
}

// === path classes ===

#[test]
fn class_order_exact_template_prefix_catch_all() {
    let router = build(vec![
        r(tpl("/{*rest}"), "catch-all"),
        r(pre("/users"), "prefix"),
        r(tpl("/users/{id}"), "template"),
        r(tpl("/users/me"), "exact"),
    ]);
    assert_eq!(get(&router, "/users/me"), "exact");
    assert_eq!(get(&router, "/users/7"), "template {id=7}");
    assert_eq!(get(&router, "/users/7/orders"), "prefix");
    assert_eq!(get(&router, "/users"), "prefix");
    assert_eq!(get(&router, "/other"), "catch-all {rest=other}");
    assert_eq!(get(&router, "/"), "404");
}

#[test]
fn templates_with_more_literal_segments_first() {
    let router = build(vec![
        r(tpl("/{a}/{b}/{c}"), "three-params"),
        r(tpl("/users/{id}/{tab}"), "two-params"),
        r(tpl("/users/{id}/orders"), "one-param-late"),
        r(tpl("/{x}/7/orders"), "one-param-early"),
    ]);
    // `/users/{id}/orders` and `/{x}/7/orders` tie on rank (2 literals, 1 param): file order.
    assert_eq!(get(&router, "/users/7/orders"), "one-param-late {id=7}");
    assert_eq!(
        get(&router, "/admins/7/orders"),
        "one-param-early {x=admins}"
    );
    assert_eq!(
        get(&router, "/users/7/profile"),
        "two-params {id=7, tab=profile}"
    );
    assert_eq!(get(&router, "/a/b/c"), "three-params {a=a, b=b, c=c}");
    assert_eq!(get(&router, "/a/b"), "404");
    assert_eq!(get(&router, "/a/b/c/d"), "404");
}

#[test]
fn tied_templates_follow_file_order() {
    let first = build(vec![r(tpl("/{y}/b"), "y-b"), r(tpl("/a/{x}"), "a-x")]);
    assert_eq!(get(&first, "/a/b"), "y-b {y=a}");
    assert_eq!(get(&first, "/a/c"), "a-x {x=c}");
    let second = build(vec![r(tpl("/a/{x}"), "a-x"), r(tpl("/{y}/b"), "y-b")]);
    assert_eq!(get(&second, "/a/b"), "a-x {x=b}");
    assert_eq!(get(&second, "/c/b"), "y-b {y=c}");
}

#[test]
fn template_trailing_slash_is_significant() {
    let router = build(vec![
        r(tpl("/users/{id}/"), "slash"),
        r(tpl("/users/{id}"), "bare"),
    ]);
    assert_eq!(get(&router, "/users/7/"), "slash {id=7}");
    assert_eq!(get(&router, "/users/7"), "bare {id=7}");
    assert_eq!(get(&router, "/users/"), "404");
    let exact = build(vec![r(tpl("/about/"), "about")]);
    assert_eq!(get(&exact, "/about/"), "about");
    assert_eq!(get(&exact, "/about"), "404");
}

#[test]
fn param_is_exactly_one_non_empty_segment() {
    let router = build(vec![r(tpl("/users/{id}"), "user")]);
    assert_eq!(get(&router, "/users/7"), "user {id=7}");
    assert_eq!(get(&router, "/users/7/x"), "404");
    assert_eq!(get(&router, "/users/"), "404");
    assert_eq!(get(&router, "/users"), "404");
    assert_eq!(get(&router, "/users/a%2Fb"), "user {id=a%2Fb}");
    assert_eq!(get(&router, "/users/caf\u{e9}"), "user {id=caf\u{e9}}");
}

#[test]
fn matchit_backtracks_within_a_layer() {
    // Disjoint templates share a tree; the static branch `b` must not hide the param branch.
    let router = build(vec![
        r(tpl("/a/b/{x}/d"), "first"),
        r(tpl("/a/{y}/c/e"), "second"),
    ]);
    assert_eq!(get(&router, "/a/b/c/e"), "second {y=b}");
    assert_eq!(get(&router, "/a/b/z/d"), "first {x=z}");
    assert_eq!(router.any_host.templates.layers.len(), 1);
}

#[test]
fn overlapping_templates_go_to_separate_layers() {
    let router = build(vec![
        r(tpl("/a/{x}/c"), "axc").header("x-one", ValueCondition::Present),
        r(tpl("/a/b/{y}"), "aby").header("x-two", ValueCondition::Present),
        r(tpl("/{z}/b/c"), "zbc"),
    ]);
    assert_eq!(router.any_host.templates.layers.len(), 3);
    let path = "/a/b/c";
    assert_eq!(
        find(&router, &req("GET", "h", path).header("x-one", "1")),
        "axc {x=b}"
    );
    assert_eq!(
        find(&router, &req("GET", "h", path).header("x-two", "1")),
        "aby {y=c}"
    );
    assert_eq!(find(&router, &req("GET", "h", path)), "zbc {z=a}");
}

#[test]
fn param_names_are_per_template() {
    // Different names at the same position in different templates are fine (not the same shape).
    let router = build(vec![r(tpl("/x/{a}/y"), "y"), r(tpl("/x/{b}/z"), "z")]);
    assert_eq!(get(&router, "/x/1/y"), "y {a=1}");
    assert_eq!(get(&router, "/x/1/z"), "z {b=1}");
}

// === prefixes ===

#[test]
fn prefix_matches_on_segment_boundaries() {
    let router = build(vec![r(pre("/v1"), "v1")]);
    assert_eq!(get(&router, "/v1"), "v1");
    assert_eq!(get(&router, "/v1/"), "v1");
    assert_eq!(get(&router, "/v1/users/7"), "v1");
    assert_eq!(get(&router, "/v1beta"), "404");
    assert_eq!(get(&router, "/v1beta/x"), "404");
    assert_eq!(get(&router, "/v"), "404");
    assert_eq!(get(&router, "/"), "404");
}

#[test]
fn prefix_with_trailing_slash_does_not_match_bare_path() {
    let router = build(vec![r(pre("/docs/"), "docs")]);
    assert_eq!(get(&router, "/docs/"), "docs");
    assert_eq!(get(&router, "/docs/x/y"), "docs");
    assert_eq!(get(&router, "/docs"), "404");
    assert_eq!(get(&router, "/docsx"), "404");
}

#[test]
fn root_prefix_matches_everything() {
    let router = build(vec![r(pre("/"), "root")]);
    for p in ["/", "/a", "/a/b/", "/%2F", "/\u{e9}"] {
        assert_eq!(get(&router, p), "root", "{p}");
    }
}

#[test]
fn longest_prefix_wins_and_falls_through_to_shorter() {
    let router = build(vec![
        r(pre("/"), "root"),
        r(pre("/api"), "api"),
        r(pre("/api/v1/"), "api-v1-slash").header("x-beta", eq("1")),
        r(pre("/api/v1"), "api-v1"),
        r(pre("/api/v1/users"), "users").method(Method::POST),
    ]);
    assert_eq!(get(&router, "/api/v1/users/7"), "api-v1");
    assert_eq!(find(&router, &req("POST", "h", "/api/v1/users/7")), "users");
    assert_eq!(
        find(&router, &req("GET", "h", "/api/v1/x").header("x-beta", "1")),
        "api-v1-slash"
    );
    assert_eq!(get(&router, "/api/v1"), "api-v1");
    assert_eq!(get(&router, "/api/v2"), "api");
    assert_eq!(get(&router, "/apix"), "root");
}

#[test]
fn prefix_probe_ignores_non_char_boundaries() {
    // A 3-byte prefix probed against a path whose 3rd byte is inside a multi-byte character.
    let router = build(vec![r(pre("/ab"), "ab"), r(pre("/"), "root")]);
    assert_eq!(get(&router, "/\u{e9}\u{e9}"), "root");
    assert_eq!(get(&router, "/a\u{e9}"), "root");
}

// === catch-alls ===

#[test]
fn catch_all_captures_a_non_empty_rest() {
    let router = build(vec![r(tpl("/files/{*rest}"), "files")]);
    assert_eq!(get(&router, "/files/a"), "files {rest=a}");
    assert_eq!(get(&router, "/files/a/b/c.txt"), "files {rest=a/b/c.txt}");
    assert_eq!(get(&router, "/files/a/"), "files {rest=a/}");
    assert_eq!(get(&router, "/files/"), "404");
    assert_eq!(get(&router, "/files"), "404");
    assert_eq!(get(&router, "/filesx/a"), "404");
}

#[test]
fn catch_alls_rank_by_literals_and_fall_through() {
    let router = build(vec![
        r(tpl("/{*all}"), "all"),
        r(tpl("/a/{x}/{*rest}"), "a-x"),
        r(tpl("/a/b/{*rest}"), "a-b").header("x-ab", ValueCondition::Present),
    ]);
    assert_eq!(
        find(&router, &req("GET", "h", "/a/b/c").header("x-ab", "")),
        "a-b {rest=c}"
    );
    assert_eq!(get(&router, "/a/b/c"), "a-x {x=b, rest=c}");
    assert_eq!(get(&router, "/a/b"), "all {all=a/b}");
    assert_eq!(get(&router, "/z"), "all {all=z}");
}

#[test]
fn catch_all_template_with_params_before() {
    let router = build(vec![r(tpl("/repos/{owner}/{*path}"), "repo")]);
    assert_eq!(
        get(&router, "/repos/me/src/main.rs"),
        "repo {owner=me, path=src/main.rs}"
    );
    assert_eq!(get(&router, "/repos/me"), "404");
}

// === fall-through between classes ===

#[test]
fn template_failing_conditions_falls_through_to_prefix() {
    let router = build(vec![
        r(tpl("/users/{id}"), "beta").header("x-beta", eq("1")),
        r(pre("/users"), "prefix"),
    ]);
    assert_eq!(
        find(&router, &req("GET", "h", "/users/7").header("x-beta", "1")),
        "beta {id=7}"
    );
    assert_eq!(get(&router, "/users/7"), "prefix");
}

#[test]
fn template_failing_falls_through_to_a_less_specific_template() {
    let router = build(vec![
        r(tpl("/users/{id}"), "beta").header("x-beta", eq("1")),
        r(tpl("/{kind}/{id}"), "generic"),
    ]);
    assert_eq!(get(&router, "/users/7"), "generic {kind=users, id=7}");
}

#[test]
fn exact_failing_falls_through_to_catch_all() {
    let router = build(vec![
        r(tpl("/health"), "health").query("deep", ValueCondition::Present),
        r(tpl("/{*any}"), "any"),
    ]);
    assert_eq!(get(&router, "/health?deep"), "health");
    assert_eq!(get(&router, "/health"), "any {any=health}");
}

// === hosts ===

#[test]
fn host_tiers_exact_then_wildcard_then_any() {
    let router = build(vec![
        r(tpl("/x"), "any"),
        r(tpl("/x"), "wild").host("*.example.com"),
        r(tpl("/x"), "exact").host("api.example.com"),
    ]);
    assert_eq!(find(&router, &req("GET", "api.example.com", "/x")), "exact");
    assert_eq!(find(&router, &req("GET", "www.example.com", "/x")), "wild");
    assert_eq!(find(&router, &req("GET", "other.org", "/x")), "any");
    assert_eq!(find(&router, &req("GET", "", "/x")), "any");
}

#[test]
fn wildcard_matches_exactly_one_label() {
    let router = build(vec![r(tpl("/"), "wild").host("*.example.com")]);
    assert_eq!(find(&router, &req("GET", "a.example.com", "/")), "wild");
    assert_eq!(find(&router, &req("GET", "a-b_c.example.com", "/")), "wild");
    assert_eq!(find(&router, &req("GET", "a.b.example.com", "/")), "404");
    assert_eq!(find(&router, &req("GET", "example.com", "/")), "404");
    assert_eq!(find(&router, &req("GET", ".example.com", "/")), "404");
    assert_eq!(find(&router, &req("GET", "aexample.com", "/")), "404");
    assert_eq!(find(&router, &req("GET", "a.example.com.evil", "/")), "404");
    assert_eq!(find(&router, &req("GET", "a.example.com.", "/")), "wild");
}

#[test]
fn only_the_single_label_wildcard_applies() {
    // `*.example.com` and `*.b.example.com` never both match: one label is fixed.
    let router = build(vec![
        r(tpl("/"), "short").host("*.example.com"),
        r(tpl("/"), "long").host("*.b.example.com"),
    ]);
    assert_eq!(find(&router, &req("GET", "a.b.example.com", "/")), "long");
    assert_eq!(find(&router, &req("GET", "b.example.com", "/")), "short");
    assert_eq!(find(&router, &req("GET", "x.a.b.example.com", "/")), "404");
}

#[test]
fn hosts_are_case_insensitive_and_trailing_dot_is_ignored() {
    let router = build(vec![
        r(tpl("/"), "exact").host("API.Example.COM."),
        r(tpl("/"), "wild").host("*.Example.Org"),
    ]);
    assert_eq!(find(&router, &req("GET", "api.example.com", "/")), "exact");
    assert_eq!(find(&router, &req("GET", "api.example.com.", "/")), "exact");
    assert_eq!(find(&router, &req("GET", "x.example.org", "/")), "wild");
}

#[test]
fn host_tiers_fall_through_when_nothing_matches_fully() {
    let router = build(vec![
        r(tpl("/users/{id}"), "exact-beta")
            .host("api.example.com")
            .header("x-beta", ValueCondition::Present),
        r(pre("/users"), "wild-prefix")
            .host("*.example.com")
            .method(Method::POST),
        r(pre("/"), "any"),
    ]);
    let host = "api.example.com";
    assert_eq!(
        find(&router, &req("GET", host, "/users/1").header("x-beta", "")),
        "exact-beta {id=1}"
    );
    assert_eq!(find(&router, &req("POST", host, "/users/1")), "wild-prefix");
    assert_eq!(find(&router, &req("GET", host, "/users/1")), "any");
    // A host-specific route never answers other hosts.
    assert_eq!(
        find(
            &router,
            &req("GET", "other", "/users/1").header("x-beta", "")
        ),
        "any"
    );
}

#[test]
fn route_with_several_hosts() {
    let router = build(vec![
        r(tpl("/"), "multi")
            .host("a.com")
            .host("*.b.com")
            .host("A.COM"),
        r(tpl("/"), "any"),
    ]);
    assert_eq!(find(&router, &req("GET", "a.com", "/")), "multi");
    assert_eq!(find(&router, &req("GET", "x.b.com", "/")), "multi");
    assert_eq!(find(&router, &req("GET", "c.com", "/")), "any");
}

#[test]
fn ip_literal_hosts() {
    let router = build(vec![
        r(tpl("/"), "v4").host("127.0.0.1"),
        r(tpl("/"), "v6").host("[::1]"),
    ]);
    assert_eq!(find(&router, &req("GET", "127.0.0.1", "/")), "v4");
    assert_eq!(find(&router, &req("GET", "[::1]", "/")), "v6");
}

#[test]
fn invalid_hosts_are_build_errors() {
    for host in [
        "",
        "*",
        "*.",
        "a.*.com",
        "*a.com",
        "**.a.com",
        "a..com",
        ".a.com",
        "a.com:8080",
        "a com",
        "a/b",
        "caf\u{e9}.com",
        "[]",
        "*.[::1]",
    ] {
        let errors = build_err(vec![r(tpl("/"), "ok"), r(tpl("/"), "bad").host(host)]);
        assert_eq!(errors.len(), 1, "{host:?}: {errors:?}");
        assert_eq!(errors[0].route_index, 1);
        assert!(errors[0].message.contains("host"), "{host:?}");
    }
}

// === candidates and conditions ===

#[test]
fn more_conditions_win_then_file_order() {
    let router = build(vec![
        r(tpl("/x"), "none"),
        r(tpl("/x"), "one").header("x-a", ValueCondition::Present),
        r(tpl("/x"), "two")
            .header("x-a", ValueCondition::Present)
            .query("q", ValueCondition::Present),
        r(tpl("/x"), "one-later").query("q", ValueCondition::Present),
        r(tpl("/x"), "none-later"),
    ]);
    assert_eq!(get(&router, "/x"), "none");
    assert_eq!(
        find(&router, &req("GET", "h", "/x").header("x-a", "")),
        "one"
    );
    assert_eq!(
        find(&router, &req("GET", "h", "/x?q").header("x-a", "")),
        "two"
    );
    assert_eq!(find(&router, &req("GET", "h", "/x?q")), "one-later");
}

#[test]
fn header_conditions() {
    let router = build(vec![
        r(tpl("/eq"), "eq").header("x-env", eq("Prod")),
        r(tpl("/present"), "present").header("x-env", ValueCondition::Present),
        r(tpl("/absent"), "absent").header("x-env", ValueCondition::Absent),
    ]);
    let q = |path, value: Option<&'static str>| {
        let q = req("GET", "h", path);
        match value {
            Some(v) => q.header("x-env", v),
            None => q,
        }
    };
    assert_eq!(find(&router, &q("/eq", Some("Prod"))), "eq");
    assert_eq!(find(&router, &q("/eq", Some("prod"))), "404");
    assert_eq!(find(&router, &q("/eq", Some("Prod "))), "404");
    assert_eq!(find(&router, &q("/eq", None)), "404");
    assert_eq!(find(&router, &q("/present", Some(""))), "present");
    assert_eq!(find(&router, &q("/present", None)), "404");
    assert_eq!(find(&router, &q("/absent", None)), "absent");
    assert_eq!(find(&router, &q("/absent", Some(""))), "404");
    // Any of several same-name headers may match.
    let many = req("GET", "h", "/eq")
        .header("x-env", "dev")
        .header("x-env", "Prod");
    assert_eq!(find(&router, &many), "eq");
    // Header names are case-insensitive by construction (HeaderName is lowercase).
    let mut upper = req("GET", "h", "/eq");
    upper.headers.insert(
        HeaderName::from_bytes(b"X-Env").expect("name"),
        HeaderValue::from_static("Prod"),
    );
    assert_eq!(find(&router, &upper), "eq");
}

#[test]
fn query_conditions() {
    let router = build(vec![
        r(tpl("/eq"), "eq").query("name", eq("a b&c")),
        r(tpl("/present"), "present").query("flag", ValueCondition::Present),
        r(tpl("/absent"), "absent").query("debug", ValueCondition::Absent),
        r(tpl("/enc"), "enc").query("key name", eq("\u{e9}")),
    ]);
    assert_eq!(get(&router, "/eq?name=a%20b%26c"), "eq");
    assert_eq!(get(&router, "/eq?name=a+b%26c"), "eq");
    assert_eq!(get(&router, "/eq?x=1&name=nope&name=a+b%26c"), "eq");
    assert_eq!(get(&router, "/eq?name=a+b&c"), "404");
    assert_eq!(get(&router, "/eq?na%6De=a%20b%26c"), "eq");
    assert_eq!(get(&router, "/eq"), "404");
    assert_eq!(get(&router, "/present?flag"), "present");
    assert_eq!(get(&router, "/present?flag="), "present");
    assert_eq!(get(&router, "/present?a=1&&flag=x&"), "present");
    assert_eq!(get(&router, "/present?flags=1"), "404");
    assert_eq!(get(&router, "/present?xflag"), "404");
    assert_eq!(get(&router, "/present?"), "404");
    assert_eq!(get(&router, "/absent"), "absent");
    assert_eq!(get(&router, "/absent?debugx=1"), "absent");
    assert_eq!(get(&router, "/absent?debug"), "404");
    assert_eq!(get(&router, "/absent?de%62ug=0"), "404");
    assert_eq!(get(&router, "/enc?key+name=%C3%A9"), "enc");
    assert_eq!(get(&router, "/enc?key%20name=%c3%a9"), "enc");
}

#[test]
fn query_decoding_is_lenient_with_bad_escapes() {
    assert!(decoded_eq("%zz", "%zz"));
    assert!(decoded_eq("%", "%"));
    assert!(decoded_eq("a%4", "a%4"));
    assert!(decoded_eq("%41%", "A%"));
    assert!(!decoded_eq("%41", "%41"));
    assert!(decoded_eq("", ""));
    assert!(!decoded_eq("a", ""));
    assert!(!decoded_eq("", "a"));
    // Decoded bytes are compared as bytes: 0xFF is not the UTF-8 encoding of U+00FF.
    assert!(!decoded_eq("%FF", "\u{ff}"));
}

// === methods ===

#[test]
fn empty_methods_mean_any_and_head_is_not_implied() {
    let router = build(vec![
        r(tpl("/any"), "any"),
        r(tpl("/get"), "get").method(Method::GET),
    ]);
    for m in ["GET", "POST", "DELETE", "PURGE"] {
        assert_eq!(find(&router, &req(m, "h", "/any")), "any");
    }
    assert_eq!(find(&router, &req("GET", "h", "/get")), "get");
    assert_eq!(find(&router, &req("HEAD", "h", "/get")), "405 GET");
}

#[test]
fn method_not_allowed_lists_the_union() {
    let router = build(vec![
        r(tpl("/x"), "post").method(Method::POST),
        r(tpl("/x"), "get-head")
            .method(Method::HEAD)
            .method(Method::GET),
        r(tpl("/{p}"), "put")
            .method(Method::PUT)
            .method(Method::GET),
        r(pre("/"), "purge").method(Method::from_bytes(b"PURGE").expect("m")),
        r(tpl("/x"), "gated")
            .method(Method::DELETE)
            .header("x-admin", ValueCondition::Present),
    ]);
    assert_eq!(
        find(&router, &req("PATCH", "h", "/x")),
        "405 GET, HEAD, POST, PUT, PURGE"
    );
    assert_eq!(
        find(&router, &req("PATCH", "h", "/x").header("x-admin", "")),
        "405 GET, HEAD, POST, PUT, DELETE, PURGE"
    );
    assert_eq!(find(&router, &req("PUT", "h", "/x")), "put {p=x}");
    assert_eq!(find(&router, &req("PURGE", "h", "/x")), "purge");
}

#[test]
fn method_not_allowed_only_when_nothing_else_matches() {
    let router = build(vec![
        r(tpl("/users/{id}"), "get").method(Method::GET),
        r(pre("/users"), "fallback"),
    ]);
    assert_eq!(find(&router, &req("POST", "h", "/users/1")), "fallback");
    let strict = build(vec![r(tpl("/users/{id}"), "get").method(Method::GET)]);
    assert_eq!(find(&strict, &req("POST", "h", "/users/1")), "405 GET");
    assert_eq!(find(&strict, &req("POST", "h", "/nothing")), "404");
}

#[test]
fn method_mismatch_needs_conditions_to_hold() {
    let router = build(vec![
        r(tpl("/x"), "get")
            .method(Method::GET)
            .header("x-k", eq("1")),
    ]);
    assert_eq!(find(&router, &req("POST", "h", "/x")), "404");
    assert_eq!(
        find(&router, &req("POST", "h", "/x").header("x-k", "1")),
        "405 GET"
    );
}

#[test]
fn method_not_allowed_collects_across_host_tiers() {
    let router = build(vec![
        r(tpl("/x"), "exact").host("a.com").method(Method::GET),
        r(tpl("/x"), "wild").host("*.com").method(Method::POST),
        r(tpl("/x"), "any")
            .method(Method::DELETE)
            .method(Method::GET),
        r(tpl("/x"), "other-host").host("b.com").method(Method::PUT),
    ]);
    assert_eq!(
        find(&router, &req("PATCH", "a.com", "/x")),
        "405 GET, POST, DELETE"
    );
    assert_eq!(find(&router, &req("DELETE", "a.com", "/x")), "any");
}

// === build errors ===

#[test]
fn same_shape_different_names_conflict() {
    let errors = build_err(vec![
        r(tpl("/u/{id}"), "a"),
        r(tpl("/u/{id}"), "same"),
        r(tpl("/u/{name}"), "b"),
    ]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].route_index, 2);
    assert!(
        errors[0].message.contains("conflicts with route 0"),
        "{}",
        errors[0]
    );
    assert!(errors[0].to_string().starts_with("route 2: "));
}

#[test]
fn catch_all_shapes_conflict_too() {
    let errors = build_err(vec![r(tpl("/f/{*a}"), "a"), r(tpl("/f/{*b}"), "b")]);
    assert_eq!(errors[0].route_index, 1);
    assert!(errors[0].message.contains("conflicts with route 0"));
}

#[test]
fn identical_templates_share_candidates() {
    let router = build(vec![
        r(tpl("/u/{id}"), "get").method(Method::GET),
        r(tpl("/u/{id}"), "post").method(Method::POST),
    ]);
    assert_eq!(find(&router, &req("POST", "h", "/u/1")), "post {id=1}");
    assert_eq!(find(&router, &req("GET", "h", "/u/1")), "get {id=1}");
    assert_eq!(router.any_host.templates.layers.len(), 1);
}

#[test]
fn conflicts_are_per_host() {
    let router = build(vec![
        r(tpl("/u/{id}"), "a").host("a.com"),
        r(tpl("/u/{name}"), "b").host("b.com"),
    ]);
    assert_eq!(find(&router, &req("GET", "b.com", "/u/1")), "b {name=1}");
    // Listed under two hosts, the conflict is reported once.
    let errors = build_err(vec![
        r(tpl("/u/{id}"), "a").host("a.com").host("b.com"),
        r(tpl("/u/{name}"), "b").host("a.com").host("b.com"),
    ]);
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn all_errors_are_collected_in_order() {
    let errors = build_err(vec![
        r(tpl("relative"), "a"),
        r(tpl("/ok"), "b"),
        r(tpl("/{a}/{a}"), "c").host("bad host"),
        r(tpl("/q"), "d").query("", ValueCondition::Present),
    ]);
    let indexes: Vec<usize> = errors.iter().map(|e| e.route_index).collect();
    assert_eq!(indexes, [0, 2, 2, 3], "{errors:?}");
}

#[test]
fn configured_paths_are_normalised() {
    let router = build(vec![
        r(tpl("/%7euser/{id}"), "tilde"),
        r(pre("/%41pi"), "api"),
    ]);
    assert_eq!(get(&router, "/~user/1"), "tilde {id=1}");
    assert_eq!(get(&router, "/Api/x"), "api");
}

#[test]
fn path_pattern_param_names() {
    assert_eq!(
        tpl("/a/{x}/{*y}").param_names(),
        Ok(vec!["x".to_owned(), "y".to_owned()])
    );
    assert_eq!(tpl("/a").param_names(), Ok(vec![]));
    assert_eq!(pre("/a").param_names(), Ok(vec![]));
    assert!(tpl("a").param_names().is_err());
}

// === hostile input and scale ===

#[test]
fn hostile_paths_do_not_panic() {
    let router = build(vec![
        r(tpl("/a/{x}"), "ax"),
        r(tpl("/{*r}"), "all").method(Method::POST),
        r(pre("/a/b"), "ab"),
        r(tpl("/x/{a}/{b}/{c}/{d}/{e}"), "five"),
    ]);
    let long = format!("/{}", "a/".repeat(100_000));
    let wide = format!("/{}", "\u{1f600}".repeat(10_000));
    for path in [
        "",
        "x",
        "/",
        "//",
        "/a/",
        "/a//b",
        "/\0",
        "/%",
        "/\u{e9}",
        long.as_str(),
        wide.as_str(),
    ] {
        let _ = get(&router, path);
        let _ = find(&router, &req("POST", "\u{e9}.\u{e9}", path));
    }
    assert_eq!(
        get(&router, "/x/1/2/3/4/5"),
        "five {a=1, b=2, c=3, d=4, e=5}"
    );
}

#[test]
fn ten_thousand_routes() {
    let mut routes = Vec::new();
    for i in 0..2_500 {
        routes.push(r(tpl(&format!("/svc{i}/items/{{id}}")), "template"));
        routes.push(r(tpl(&format!("/svc{i}/health")), "exact"));
        routes.push(r(pre(&format!("/svc{i}/static")), "prefix"));
        routes.push(r(tpl(&format!("/svc{i}/files/{{*rest}}")), "files").host("files.com"));
    }
    let router = build(routes);
    assert_eq!(router.len(), 10_000);
    assert_eq!(router.any_host.templates.layers.len(), 1);
    assert_eq!(get(&router, "/svc2499/items/9"), "template {id=9}");
    assert_eq!(get(&router, "/svc17/health"), "exact");
    assert_eq!(get(&router, "/svc17/static/a/b"), "prefix");
    assert_eq!(
        find(&router, &req("GET", "files.com", "/svc3/files/a/b")),
        "files {rest=a/b}"
    );
    assert_eq!(get(&router, "/svc3/files/a/b"), "404");
    assert_eq!(get(&router, "/svc2500/items/9"), "404");
}

#[test]
fn router_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router<String>>();
}

#[test]
fn disjoint_templates_with_different_names_share_a_layer() {
    let router = build(vec![
        r(tpl("/{a}/x"), "x"),
        r(tpl("/{b}/y"), "y"),
        r(tpl("/{o}/a/{*r}"), "ca"),
        r(tpl("/{p}/b/{*s}"), "cb"),
    ]);
    assert_eq!(router.any_host.templates.layers.len(), 1);
    assert_eq!(router.any_host.catch_alls.layers.len(), 1);
    assert_eq!(get(&router, "/1/x"), "x {a=1}");
    assert_eq!(get(&router, "/2/y"), "y {b=2}");
    assert_eq!(get(&router, "/1/a/z/z"), "ca {o=1, r=z/z}");
    assert_eq!(get(&router, "/2/b/z"), "cb {p=2, s=z}");
}

#[test]
fn many_hosts_are_finished_on_two_threads_with_every_error_kept() {
    let routes = || {
        let mut routes = Vec::new();
        for h in 0..50 {
            for p in 0..50 {
                routes
                    .push(r(tpl(&format!("/items{p}/{{id}}")), "item").host(&format!("h{h}.com")));
            }
        }
        routes
    };
    let router = build(routes());
    assert_eq!(router.len(), 2_500);
    assert_eq!(
        find(&router, &req("GET", "h49.com", "/items49/7")),
        "item {id=7}"
    );
    assert_eq!(
        find(&router, &req("GET", "h0.com", "/items0/7")),
        "item {id=7}"
    );
    // A conflict in the first and in the last host: both reported, in route order.
    let mut bad = routes();
    bad.push(r(tpl("/items0/{other}"), "bad").host("h0.com"));
    bad.push(r(tpl("/items1/{other}"), "bad").host("h49.com"));
    let indexes: Vec<usize> = build_err(bad).iter().map(|e| e.route_index).collect();
    assert_eq!(indexes, vec![2_500, 2_501]);
}

/// The edge skips turning `Host` into text when no route reads it; any host rule must say so.
#[test]
fn matches_hosts_tells_whether_any_route_names_a_host() {
    assert!(!build(vec![r(pre("/"), "a"), r(tpl("/x/{id}"), "b")]).matches_hosts());
    assert!(
        build(vec![
            r(pre("/"), "a"),
            r(tpl("/x"), "b").host("api.example.com")
        ])
        .matches_hosts()
    );
    assert!(build(vec![r(pre("/"), "a").host("*.example.com")]).matches_hosts());
}
