#![allow(clippy::unwrap_used)]
//! JWT end to end against a loopback JWKS server: valid tokens pass with identity headers, every
//! listed attack is a 401, keys rotate without a restart, a flood of unknown `kid`s costs the IdP
//! one fetch, and `scopes`/`claims` rules answer 403.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;
use serde_json::{Value, json};
use support::idp::{Idp, fixture, mint, mint_hs256, mint_with_header, now};
use support::{TestGateway, Upstream, empty, http1_client};

const HMAC_SECRET: &str = "a-shared-hmac-secret-of-decent-length";

fn config(upstream: &str, idp: &Idp) -> String {
    let jwks = idp.jwks_url();
    format!(
        r#"version: 1
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
upstreams:
  backend:
    targets: [{{ url: "{upstream}" }}]
consumers:
  - {{ name: cli, api_keys: ["cli-key-1"] }}
auth_providers:
  sso:
    jwt:
      issuer: https://login.test/
      audiences: [orders-api]
      jwks_url: {jwks}
      jwks_refresh_interval: 0s
      algorithms: [RS256, ES256]
      leeway: 5s
  sso-slow:
    jwt:
      issuer: https://login.test/
      jwks_url: {jwks}
      jwks_refresh_interval: 1h
      algorithms: [RS256]
  mixed:
    jwt:
      algorithms: [HS256, RS256]
      secret: "${{HMAC_SECRET}}"
      public_key_pem: "${{RSA1_PUB}}"
routes:
  - name: jwt
    match: {{ path_prefix: /jwt }}
    upstream: backend
    policies:
      auth: {{ methods: [sso], forward_identity: true }}
  - name: slow
    match: {{ path_prefix: /slow }}
    upstream: backend
    policies:
      auth: {{ methods: [sso-slow] }}
  - name: mixed
    match: {{ path_prefix: /mixed }}
    upstream: backend
    policies:
      auth: {{ methods: [mixed], forward_identity: true }}
  - name: either
    match: {{ path_prefix: /either }}
    upstream: backend
    policies:
      auth: {{ methods: [api_key, sso], forward_identity: true }}
  - name: scoped
    match: {{ path_prefix: /scoped }}
    upstream: backend
    policies:
      auth: {{ methods: [sso], scopes: [orders:write], claims: {{ tenant: acme }} }}
"#
    )
}

async fn start(upstream: &Upstream, idp: &Idp) -> TestGateway {
    TestGateway::start_with(
        &config(&upstream.url(), idp),
        &[
            ("HMAC_SECRET", HMAC_SECRET.to_owned()),
            ("RSA1_PUB", fixture("rsa1.pub.pem")),
        ],
    )
    .await
}

fn claims() -> Value {
    json!({
        "iss": "https://login.test/",
        "aud": "orders-api",
        "sub": "alice",
        "exp": now() + 600,
        "scope": "orders:read orders:write",
        "tenant": "acme",
    })
}

fn with(extra: Value) -> Value {
    let mut c = claims();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

async fn bearer(gw: &TestGateway, path: &str, token: &str) -> support::Collected {
    let request = Request::get(gw.url(path))
        .header("authorization", format!("Bearer {token}"))
        .header("gantry-consumer", "admin")
        .body(empty())
        .unwrap();
    http1_client().fetch(request).await
}

#[tokio::test]
async fn a_valid_token_passes_with_identity_headers() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&["rsa1", "ec1"]).await;
    let gw = start(&upstream, &idp).await;
    for kid in ["rsa1", "ec1"] {
        let rsp = bearer(&gw, "/jwt/x", &mint(kid, &claims())).await;
        assert_eq!(rsp.status, 200, "{kid}: {}", rsp.text());
        let seen = upstream.last_request().unwrap();
        assert_eq!(seen.headers["gantry-consumer"], "alice");
        assert_eq!(seen.headers["gantry-subject"], "alice");
        assert_eq!(seen.headers["gantry-scopes"], "orders:read orders:write");
        assert!(seen.headers.get("authorization").is_none());
    }
    // Keys are cached: two tokens, one fetch.
    assert_eq!(idp.jwks_calls(), 1);
}

#[tokio::test]
async fn every_listed_attack_is_refused_with_401() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&["rsa1"]).await;
    let gw = start(&upstream, &idp).await;
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let rsa1_jwk: Value = serde_json::from_str(&fixture("rsa1.jwk.json")).unwrap();
    let valid = claims();
    let attacks: Vec<(&str, &str, String)> = vec![
        (
            "alg none",
            "/jwt",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&valid)
            ),
        ),
        (
            "alg none, upper case",
            "/jwt",
            format!("{}.{}.", b64(&json!({"alg": "NONE"})), b64(&valid)),
        ),
        (
            "HS256 signed with the RSA public key (key confusion)",
            "/mixed",
            mint_hs256(
                fixture("rsa1.pub.pem").as_bytes(),
                &json!({"alg": "HS256", "typ": "JWT"}),
                &valid,
            ),
        ),
        (
            "HS256 on a provider that only allows RS256/ES256",
            "/jwt",
            mint_hs256(
                fixture("rsa1.pub.pem").as_bytes(),
                &json!({"alg": "HS256", "kid": "rsa1"}),
                &valid,
            ),
        ),
        (
            "jku header",
            "/jwt",
            mint_with_header(
                "rsa1",
                &json!({"alg": "RS256", "kid": "rsa1", "jku": "http://evil.test/jwks"}),
                &valid,
            ),
        ),
        (
            "x5u header",
            "/jwt",
            mint_with_header(
                "rsa1",
                &json!({"alg": "RS256", "kid": "rsa1", "x5u": "http://evil.test/cert"}),
                &valid,
            ),
        ),
        (
            "embedded jwk header",
            "/jwt",
            mint_with_header("rsa1", &json!({"alg": "RS256", "jwk": rsa1_jwk}), &valid),
        ),
        (
            "unknown crit",
            "/jwt",
            mint_with_header(
                "rsa1",
                &json!({"alg": "RS256", "kid": "rsa1", "crit": ["exp-ext"], "exp-ext": 1}),
                &valid,
            ),
        ),
        (
            "expired",
            "/jwt",
            mint("rsa1", &with(json!({"exp": now() - 60}))),
        ),
        ("no exp", "/jwt", mint("rsa1", &with(json!({"exp": null})))),
        (
            "not yet valid",
            "/jwt",
            mint("rsa1", &with(json!({"nbf": now() + 600}))),
        ),
        (
            "wrong issuer",
            "/jwt",
            mint("rsa1", &with(json!({"iss": "https://evil.test/"}))),
        ),
        (
            "wrong audience",
            "/jwt",
            mint("rsa1", &with(json!({"aud": ["other-api"]}))),
        ),
        (
            "signed by another key under a known kid",
            "/jwt",
            mint_with_header("rsa2", &json!({"alg": "RS256", "kid": "rsa1"}), &valid),
        ),
        ("malformed base64", "/jwt", "!!!.@@@.###".to_owned()),
        (
            "malformed JSON",
            "/jwt",
            format!(
                "{}.{}.c2ln",
                URL_SAFE_NO_PAD.encode("{not json"),
                b64(&valid)
            ),
        ),
        (
            "two segments",
            "/jwt",
            format!("{}.{}", b64(&json!({"alg": "RS256"})), b64(&valid)),
        ),
        ("oversized", "/jwt", "a".repeat(20_000)),
    ];
    for (name, path, token) in &attacks {
        let rsp = bearer(&gw, path, token).await;
        assert_eq!(rsp.status, 401, "{name}: {}", rsp.text());
        assert_eq!(
            rsp.headers["www-authenticate"], "Bearer realm=\"gantry\", error=\"invalid_token\"",
            "{name}"
        );
        assert_eq!(
            rsp.json()["type"],
            "urn:gantry:problem:unauthorized",
            "{name}"
        );
    }
    assert_eq!(upstream.request_count(), 0);
    // Without a token the challenge carries no error (RFC 6750 §3.1).
    let anonymous = http1_client()
        .fetch(Request::get(gw.url("/jwt")).body(empty()).unwrap())
        .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.headers["www-authenticate"],
        "Bearer realm=\"gantry\""
    );

    // Controls: the same provider accepts properly signed HS256 and RS256 tokens.
    let hs = mint_hs256(HMAC_SECRET.as_bytes(), &json!({"alg": "HS256"}), &valid);
    assert_eq!(bearer(&gw, "/mixed", &hs).await.status, 200);
    assert_eq!(
        bearer(&gw, "/mixed", &mint("rsa1", &valid)).await.status,
        200
    );
    assert_eq!(bearer(&gw, "/jwt", &mint("rsa1", &valid)).await.status, 200);
}

#[tokio::test]
async fn jwks_key_rotation_works_without_a_restart() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&["rsa1"]).await;
    let gw = start(&upstream, &idp).await;
    assert_eq!(
        bearer(&gw, "/jwt", &mint("rsa1", &claims())).await.status,
        200
    );
    assert_eq!(
        bearer(&gw, "/jwt", &mint("rsa2", &claims())).await.status,
        401
    );

    idp.serve_keys(&["rsa2"]);
    let rsp = bearer(&gw, "/jwt", &mint("rsa2", &claims())).await;
    assert_eq!(rsp.status, 200, "{}", rsp.text());
    // rsa1 was retired by the IdP: its tokens no longer pass.
    assert_eq!(
        bearer(&gw, "/jwt", &mint("rsa1", &claims())).await.status,
        401
    );
    assert!(idp.jwks_calls() >= 3);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_the_idp_one_fetch_per_interval() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&["rsa1"]).await;
    let gw = start(&upstream, &idp).await;
    assert_eq!(
        bearer(&gw, "/slow", &mint("rsa1", &claims())).await.status,
        200
    );
    assert_eq!(idp.jwks_calls(), 1);
    for i in 0..50 {
        let token = mint_with_header(
            "rsa1",
            &json!({"alg": "RS256", "kid": format!("random-{i}")}),
            &claims(),
        );
        assert_eq!(bearer(&gw, "/slow", &token).await.status, 401);
    }
    assert_eq!(idp.jwks_calls(), 1);
}

#[tokio::test]
async fn scopes_and_claims_rules_answer_403() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&["rsa1"]).await;
    let gw = start(&upstream, &idp).await;
    let no_scope = mint("rsa1", &with(json!({"scope": "orders:read"})));
    let rsp = bearer(&gw, "/scoped", &no_scope).await;
    assert_eq!(rsp.status, 403);
    assert_eq!(rsp.json()["type"], "urn:gantry:problem:forbidden");

    let scp_array = mint(
        "rsa1",
        &with(json!({"scope": null, "scp": ["orders:write"], "tenant": "globex"})),
    );
    assert_eq!(bearer(&gw, "/scoped", &scp_array).await.status, 403);

    let ok = mint(
        "rsa1",
        &with(json!({"scope": null, "scp": ["orders:write"]})),
    );
    assert_eq!(bearer(&gw, "/scoped", &ok).await.status, 200);
    assert_eq!(upstream.request_count(), 1);
}

#[tokio::test]
async fn any_one_of_the_route_methods_may_succeed() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&["rsa1"]).await;
    let gw = start(&upstream, &idp).await;
    let client = http1_client();
    let send = |headers: Vec<(&'static str, String)>| {
        let mut builder = Request::get(gw.url("/either"));
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        client.fetch(builder.body(empty()).unwrap())
    };
    let by_key = send(vec![("x-api-key", "cli-key-1".into())]).await;
    assert_eq!(by_key.status, 200);
    assert_eq!(
        upstream.last_request().unwrap().headers["gantry-consumer"],
        "cli"
    );

    let token = format!("Bearer {}", mint("rsa1", &claims()));
    let by_token = send(vec![
        ("x-api-key", "wrong".into()),
        ("authorization", token),
    ])
    .await;
    assert_eq!(by_token.status, 200);
    assert_eq!(
        upstream.last_request().unwrap().headers["gantry-consumer"],
        "alice"
    );

    let neither = send(vec![]).await;
    assert_eq!(neither.status, 401);
    let challenges: Vec<_> = neither.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(
        challenges,
        ["ApiKey header=\"X-Api-Key\"", "Bearer realm=\"gantry\""]
    );
}

#[tokio::test]
async fn the_jwks_cache_survives_a_reload() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&["rsa1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gantry.yaml");
    let text = config(&upstream.url(), &idp)
        .replace("${HMAC_SECRET}", HMAC_SECRET)
        .replace("${RSA1_PUB}", &fixture("rsa1.pub.pem").replace('\n', "\\n"));
    std::fs::write(&path, &text).unwrap();
    let gw = TestGateway::start_file(&path).await;
    let token = mint("rsa1", &claims());
    assert_eq!(bearer(&gw, "/slow", &token).await.status, 200);
    assert_eq!(idp.jwks_calls(), 1);

    std::fs::write(
        &path,
        format!(
            "{text}  - {{ name: extra, match: {{ path_prefix: /extra }}, upstream: backend }}\n"
        ),
    )
    .unwrap();
    gw.gateway().reload().await.unwrap();
    assert_eq!(bearer(&gw, "/extra", "").await.status, 200);
    // The new snapshot verifies with the keys the old one fetched: no second fetch.
    assert_eq!(bearer(&gw, "/slow", &token).await.status, 200);
    assert_eq!(idp.jwks_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_first_requests_shares_one_jwks_fetch_and_all_pass() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&["rsa1"]).await;
    let gw = start(&upstream, &idp).await;
    let client = http1_client();
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..20 {
        let token = mint("rsa1", &with(json!({ "sub": format!("user-{i}") })));
        let request = Request::get(gw.url("/slow"))
            .header("authorization", format!("Bearer {token}"))
            .body(empty())
            .unwrap();
        let client = client.clone();
        burst.spawn(async move { client.fetch(request).await.status.as_u16() });
    }
    while let Some(status) = burst.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(idp.jwks_calls(), 1);
}

#[test]
fn provider_and_method_mistakes_are_located_config_errors() {
    let text = r#"version: 1
listeners: [{ name: p, address: "127.0.0.1:0" }]
upstreams: { b: { targets: [{ url: "http://127.0.0.1:9" }] } }
auth_providers:
  hs:
    jwt: { algorithms: [HS256], secret: "${UNSET_SECRET:-}" }
  nosecret:
    jwt: { algorithms: [HS256, none], public_key_pem: "not a key" }
  both:
    jwt: { algorithms: [RS256], jwks_url: "http://127.0.0.1:9/jwks" }
    oauth2_introspection: { url: "ftp://x", client_id: a, client_secret: b }
routes:
  - name: r
    match: { path: / }
    upstream: b
    policies: { auth: { methods: [api_key, hs, nosecet] } }
"#;
    let errors = gantry::config::load_str_with_env("gantry.yaml", text, &|_| None)
        .err()
        .expect("must be rejected")
        .to_string();
    for expected in [
        "gantry.yaml:6:41: auth_providers.hs.jwt.secret: empty credential",
        "auth_providers.nosecret.jwt.algorithms[1]: \"none\" is never accepted",
        "auth_providers.nosecret.jwt.algorithms: HS* algorithms need `secret`",
        "auth_providers.nosecret.jwt.public_key_pem: not an RSA, EC or Ed25519 public key",
        "auth_providers.both: needs exactly one of jwt and oauth2_introspection",
        "gantry.yaml:16:48: routes[0].policies.auth.methods[2]: unknown auth method \"nosecet\"",
        "(did you mean \"nosecret\"?)",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
}

#[tokio::test]
async fn ps256_and_eddsa_verify_with_static_pem_keys_and_stay_inside_their_allow_lists() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let upstream = Upstream::start("backend").await;
    let yaml = format!(
        r#"version: 1
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
upstreams:
  backend:
    targets: [{{ url: "{}" }}]
auth_providers:
  ps:
    jwt: {{ algorithms: [PS256], public_key_pem: "${{RSA1_PUB}}" }}
  ed:
    jwt: {{ algorithms: [EdDSA], public_key_pem: "${{ED1_PUB}}" }}
routes:
  - {{ name: ps, match: {{ path_prefix: /ps }}, upstream: backend, policies: {{ auth: {{ methods: [ps] }} }} }}
  - {{ name: ed, match: {{ path_prefix: /ed }}, upstream: backend, policies: {{ auth: {{ methods: [ed] }} }} }}
"#,
        upstream.url()
    );
    let gw = TestGateway::start_with(
        &yaml,
        &[
            ("RSA1_PUB", fixture("rsa1.pub.pem")),
            ("ED1_PUB", fixture("ed1.pub.pem")),
        ],
    )
    .await;
    let rsa = EncodingKey::from_rsa_pem(fixture("rsa1.key.pem").as_bytes()).unwrap();
    let ed = EncodingKey::from_ed_pem(fixture("ed1.key.pem").as_bytes()).unwrap();
    let ps256 = encode(&Header::new(Algorithm::PS256), &claims(), &rsa).unwrap();
    let rs256 = encode(&Header::new(Algorithm::RS256), &claims(), &rsa).unwrap();
    let eddsa = encode(&Header::new(Algorithm::EdDSA), &claims(), &ed).unwrap();
    assert_eq!(bearer(&gw, "/ps", &ps256).await.status, 200);
    assert_eq!(bearer(&gw, "/ed", &eddsa).await.status, 200);
    // Same key, algorithm outside the provider's list.
    assert_eq!(bearer(&gw, "/ps", &rs256).await.status, 401);
    assert_eq!(bearer(&gw, "/ed", &ps256).await.status, 401);
    assert_eq!(upstream.request_count(), 2);
}

#[tokio::test]
async fn an_unreachable_jwks_is_503_not_401() {
    let upstream = Upstream::start("backend").await;
    let idp = Idp::start(&["rsa1"]).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/jwks", dead.local_addr().unwrap());
    drop(dead);
    let yaml = config(&upstream.url(), &idp).replace(&idp.jwks_url(), &dead_url);
    let gw = TestGateway::start_with(
        &yaml,
        &[
            ("HMAC_SECRET", HMAC_SECRET.to_owned()),
            ("RSA1_PUB", fixture("rsa1.pub.pem")),
        ],
    )
    .await;
    for _ in 0..2 {
        let rsp = bearer(&gw, "/jwt", &mint("rsa1", &claims())).await;
        assert_eq!(rsp.status, 503);
        assert_eq!(rsp.json()["type"], "urn:gantry:problem:auth-unavailable");
    }
    assert_eq!(idp.jwks_calls(), 0);
}
