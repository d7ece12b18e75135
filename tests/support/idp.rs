#![allow(clippy::unwrap_used)]
//! A loopback identity provider for the auth tests: a JWKS endpoint whose key set can be swapped
//! (key rotation), an RFC 7662 introspection endpoint answering from a programmable table, call
//! counters for both, and helpers that mint tokens with the test keys in `tests/fixtures/jwt`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The client credentials the introspection endpoint accepts.
pub const CLIENT_ID: &str = "gantry";
/// See [`CLIENT_ID`].
pub const CLIENT_SECRET: &str = "introspection-secret";

#[derive(Default)]
struct State {
    jwks: Mutex<Value>,
    introspection: Mutex<HashMap<String, Value>>,
    jwks_calls: AtomicUsize,
    introspection_calls: AtomicUsize,
}

/// A running loopback IdP; stops when dropped.
pub struct Idp {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Idp {
    /// Starts serving `GET /jwks` (initially the set of `kids`) and `POST /introspect`.
    pub async fn start(kids: &[&str]) -> Idp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind idp");
        let addr = listener.local_addr().expect("idp addr");
        let state = Arc::new(State::default());
        *state.jwks.lock().unwrap() = jwk_set(kids);
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&state), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Idp { addr, state, task }
    }

    /// `http://ADDR/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// `http://ADDR/introspect`.
    pub fn introspection_url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// Serves the key set of `kids` from now on (key rotation).
    pub fn serve_keys(&self, kids: &[&str]) {
        *self.state.jwks.lock().unwrap() = jwk_set(kids);
    }

    /// Makes the introspection endpoint answer `answer` for `token` (others: inactive).
    pub fn set_introspection(&self, token: &str, answer: Value) {
        self.state
            .introspection
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }

    /// How many times `/jwks` was fetched.
    pub fn jwks_calls(&self) -> usize {
        self.state.jwks_calls.load(Ordering::SeqCst)
    }

    /// How many introspection calls were made.
    pub fn introspection_calls(&self) -> usize {
        self.state.introspection_calls.load(Ordering::SeqCst)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let json_response = |status: StatusCode, body: Value| {
        let mut rsp = Response::new(Full::new(Bytes::from(body.to_string())));
        *rsp.status_mut() = status;
        rsp.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        rsp
    };
    match req.uri().path() {
        "/jwks" => {
            state.jwks_calls.fetch_add(1, Ordering::SeqCst);
            let body = state.jwks.lock().unwrap().clone();
            Ok(json_response(StatusCode::OK, body))
        }
        "/introspect" => {
            state.introspection_calls.fetch_add(1, Ordering::SeqCst);
            let expected = format!(
                "Basic {}",
                STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
            );
            let authorized = req
                .headers()
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == expected.as_bytes());
            let body = req.into_body().collect().await?.to_bytes();
            if !authorized {
                return Ok(json_response(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "invalid_client"}),
                ));
            }
            let token = form_value(&body, "token").unwrap_or_default();
            let answer = state
                .introspection
                .lock()
                .unwrap()
                .get(&token)
                .cloned()
                .unwrap_or_else(|| json!({"active": false}));
            Ok(json_response(StatusCode::OK, answer))
        }
        _ => Ok(json_response(StatusCode::NOT_FOUND, json!({}))),
    }
}

fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            v.replace("%2B", "+")
                .replace("%2F", "/")
                .replace("%3D", "=")
        })
    })
}

/// The fixture directory.
pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// `{"keys": [...]}` of the fixture keys `kids` (rsa1, rsa2, ec1).
pub fn jwk_set(kids: &[&str]) -> Value {
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| serde_json::from_str(&fixture(&format!("{kid}.jwk.json"))).unwrap())
        .collect();
    json!({ "keys": keys })
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs `claims` with fixture key `kid` (rsa1, rsa2: RS256; ec1: ES256), `kid` in the header.
pub fn mint(kid: &str, claims: &Value) -> String {
    let pem = fixture(&format!("{kid}.key.pem"));
    let (alg, key) = if kid.starts_with("ec") {
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        )
    } else {
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &key).unwrap()
}

/// Signs `claims` with HS256 and `secret`, header fields taken from `header`.
pub fn mint_hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = aws_hmac(secret, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(key))
}

/// A token whose header is exactly `header` (any fields), signed with fixture key `kid` as RS256
/// so only the header decides the outcome.
pub fn mint_with_header(kid: &str, header: &Value, claims: &Value) -> String {
    use jsonwebtoken::crypto::sign;
    let pem = fixture(&format!("{kid}.key.pem"));
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(signing_input.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{signing_input}.{signature}")
}

/// HMAC-SHA256, via jsonwebtoken's own signer so the tests need no extra crate.
fn aws_hmac(secret: &[u8], data: &[u8]) -> Vec<u8> {
    let signature =
        jsonwebtoken::crypto::sign(data, &EncodingKey::from_secret(secret), Algorithm::HS256)
            .unwrap();
    URL_SAFE_NO_PAD.decode(signature).unwrap()
}
