#![allow(clippy::unwrap_used)]
//! HTTP Basic against argon2 hashes end to end: the right password passes, wrong ones are 401
//! with a Basic challenge, and a flood of wrong passwords in parallel is answered 401 or 503
//! (checks are capped; past the cap the answer is 503 at once) while other routes keep serving.

mod support;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::Request;
use support::{TestGateway, Upstream, empty, http1_client};

fn hash(password: &str) -> String {
    let salt = SaltString::encode_b64(b"gantry-test-salt").unwrap();
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

async fn start(upstream: &Upstream) -> TestGateway {
    let yaml = format!(
        r#"version: 1
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
upstreams:
  backend:
    targets: [{{ url: "{}" }}]
consumers:
  - name: partner-acme
    basic_auth: {{ username: acme, password_hash: "{}" }}
routes:
  - name: basic
    match: {{ path_prefix: /basic }}
    upstream: backend
    policies:
      auth: {{ methods: [basic], forward_identity: true }}
  - name: plain
    match: {{ path_prefix: /plain }}
    upstream: backend
"#,
        upstream.url(),
        hash("correct horse")
    );
    TestGateway::start_with(&yaml, &[]).await
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

async fn get(gw: &TestGateway, path: &str, authorization: Option<&str>) -> support::Collected {
    let mut builder = Request::get(gw.url(path));
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    http1_client().fetch(builder.body(empty()).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_passes_and_wrong_ones_get_401() {
    let upstream = Upstream::start("backend").await;
    let gw = start(&upstream).await;
    let ok = get(&gw, "/basic", Some(&basic("acme", "correct horse"))).await;
    assert_eq!(ok.status, 200);
    let seen = upstream.last_request().unwrap();
    assert_eq!(seen.headers["gantry-consumer"], "partner-acme");
    assert!(seen.headers.get("authorization").is_none());
    // Cached: the second success does not need a permit, but must still be the right password.
    assert_eq!(
        get(&gw, "/basic", Some(&basic("acme", "correct horse")))
            .await
            .status,
        200
    );

    for authorization in [
        basic("acme", "wrong"),
        basic("nobody", "correct horse"),
        "Basic !!!notbase64".to_owned(),
        format!("Basic {}", STANDARD.encode("no-colon")),
        format!("Basic {}", "A".repeat(5000)),
    ] {
        let rsp = get(&gw, "/basic", Some(&authorization)).await;
        assert_eq!(rsp.status, 401, "{authorization}");
        assert_eq!(
            rsp.headers["www-authenticate"],
            "Basic realm=\"gantry\", charset=\"UTF-8\""
        );
    }
    assert_eq!(get(&gw, "/basic", None).await.status, 401);
    assert_eq!(upstream.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_passwords_is_bounded_and_other_routes_keep_serving() {
    let upstream = Upstream::start("backend").await;
    let gw = start(&upstream).await;
    let client = http1_client();
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..48 {
        let client = client.clone();
        let url = gw.url("/basic");
        flood.spawn(async move {
            let request = Request::get(url)
                .header("authorization", basic("acme", &format!("guess-{i}")))
                .body(empty())
                .unwrap();
            client.fetch(request).await.status.as_u16()
        });
    }
    // While the flood runs, the plain route answers.
    assert_eq!(get(&gw, "/plain", None).await.status, 200);
    let mut statuses = Vec::new();
    while let Some(status) = flood.join_next().await {
        statuses.push(status.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&401), "{statuses:?}");
    assert_eq!(get(&gw, "/plain", None).await.status, 200);
    // The right password still works once the flood is over.
    assert_eq!(
        get(&gw, "/basic", Some(&basic("acme", "correct horse")))
            .await
            .status,
        200
    );
}

#[test]
fn a_password_hash_that_is_not_argon2_is_a_located_config_error() {
    let text = "version: 1\nlisteners: [{ name: p, address: \"127.0.0.1:0\" }]\nconsumers:\n  - name: c\n    basic_auth: { username: u, password_hash: \"plaintext\" }\n";
    let errors = gantry::config::load_str_with_env("gantry.yaml", text, &|_| None)
        .err()
        .expect("must be rejected")
        .to_string();
    assert!(
        errors.contains(
            "gantry.yaml:5:47: consumers[0].basic_auth.password_hash: not an argon2 PHC hash string"
        ),
        "{errors}"
    );
}

#[test]
fn a_well_formed_placeholder_hash_loads_and_an_expensive_one_does_not() {
    let config = |hash: &str| {
        format!(
            "version: 1\nlisteners: [{{ name: p, address: \"127.0.0.1:0\" }}]\nconsumers:\n  - name: c\n    basic_auth: {{ username: u, password_hash: \"{hash}\" }}\n"
        )
    };
    // The contract example's placeholder (its output is too short to ever match): loads.
    let placeholder = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$Zm9vYmFyYmF6";
    assert!(
        gantry::config::load_str_with_env("gantry.yaml", &config(placeholder), &|_| None).is_ok()
    );
    let expensive = "$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHQ$Zm9vYmFyYmF6";
    let errors = gantry::config::load_str_with_env("gantry.yaml", &config(expensive), &|_| None)
        .err()
        .expect("must be rejected")
        .to_string();
    assert!(
        errors.contains("memory cost 1048576 KiB is above"),
        "{errors}"
    );
}
