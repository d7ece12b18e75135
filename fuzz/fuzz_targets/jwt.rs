//! JWT parsing and verification: any token string, or three fuzzed base64url segments (so the
//! header and claims JSON parsers are reached), is rejected or verified without a panic. The
//! provider has a static HMAC key, so nothing is fetched.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gantry::GatewayConfig;
use gantry::policy::auth::Provider;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"version: 1
listeners: [{ name: p, address: "127.0.0.1:0" }]
upstreams:
  b: { targets: [{ url: "http://127.0.0.1:9" }] }
auth_providers:
  hs:
    jwt: { algorithms: [HS256, HS384], secret: "fuzzing-secret-fuzzing-secret-32b" }
routes:
  - { name: r, match: { path_prefix: / }, upstream: b, policies: { auth: { methods: [hs] } } }
"#;

struct Fixture {
    config: GatewayConfig,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        config: gantry::config::load_str_with_env("fuzz.yaml", CONFIG, &|_| None)
            .unwrap_or_else(|e| panic!("fuzz config rejected: {e}")),
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime"),
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Some(Provider::Jwt(verifier)) = fixture.config.runtime.security.providers.get("hs") else {
        panic!("no jwt provider");
    };
    let token = match data.split_first() {
        Some((0, rest)) => String::from_utf8_lossy(rest).into_owned(),
        Some((_, rest)) => {
            let mut pieces = rest.splitn(3, |b| *b == 0xff);
            let header = URL_SAFE_NO_PAD.encode(pieces.next().unwrap_or_default());
            let claims = URL_SAFE_NO_PAD.encode(pieces.next().unwrap_or_default());
            let signature = URL_SAFE_NO_PAD.encode(pieces.next().unwrap_or_default());
            format!("{header}.{claims}.{signature}")
        }
        None => return,
    };
    let _ = fixture.runtime.block_on(verifier.verify(&token));
});
