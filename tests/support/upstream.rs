//! A programmable upstream: one real hyper server (HTTP/1.1 and h2 prior knowledge) whose behaviour
//! is chosen by the request path, so a single instance serves every case of a test.
//!
//! | path | behaviour |
//! |---|---|
//! | `/echo…` and anything unknown | 200 JSON describing the request (reads the whole body) |
//! | `/status/{code}` | that status, small JSON body (empty for 204/304) |
//! | `/slow?chunks=N&delay_ms=D` | N chunks `chunk-i\n`, D ms apart, streamed |
//! | `/gate/{id}` | `first\n`, then waits for [`Upstream::release`]`(id)`, then `done\n` |
//! | `/hang`, `/headers-hang` | never answers (until the upstream is dropped) |
//! | `/body-hang` | headers and `chunk-0\n`, then never finishes |
//! | `/bytes/{n}` | n pattern bytes ([`super::body::pattern_byte`]) with Content-Length |
//! | `/sink` | counts the request body without keeping it: `{"received": N}` |
//! | `/trailers` | body `ok` with trailers `grpc-status: 0`, `x-trailer: yes` |
//! | `/big-headers/{n}` | a response header `x-big` of n bytes |
//! | `/set-hop-headers` | a response carrying hop-by-hop headers and `x-end-to-end: kept` |
//! | `/ws` | WebSocket echo (text and binary) |
//! | `/grpc/…` with `content-type: application/grpc…` | streams the body back, trailers `grpc-status: 0`, `grpc-message: ok` |
//! | `/expect` | reads the body: `{"received": N, "expect": <Expect header or null>}` |
//! | a path set with [`Upstream::set_json`] | that status and body (`application/json`) |
//! | `/barrier/{id}/{name}?n=N` | waits until N requests reached barrier `id`, then `{"name": name}` |
//!
//! Every response carries `x-upstream: <name>`.
//!
//! Faults for resilience tests ([`Upstream::set_fault`]) apply to every path but `/healthz`,
//! which answers the status set with [`Upstream::set_health`] (200 at start):
//!
//! | fault | behaviour |
//! |---|---|
//! | [`Fault::None`] | the table above |
//! | [`Fault::Hang`] | never answers |
//! | [`Fault::Reset`] | closes the connection without an answer |
//! | [`Fault::Status`]`(code)` | that status |
//! | [`Fault::Slow`]`(d)` | waits `d`, then answers normally |
//! | [`Fault::Flapping`]`(code)` | every other request answers `code` (the first one fails) |
//! | [`Fault::GrpcStatus`]`(code)` | a gRPC trailers-only answer with that `grpc-status` |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::body::{BoxError, TestBody, channel_body, empty, frames_body, full, pattern_body};

/// How long the `wait_for_*` helpers wait before failing the test: a safety net, not an assertion.
const SAFETY_NET: Duration = Duration::from_secs(10);

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Request target as received (origin-form on HTTP/1.1, full URI on h2).
    pub uri: Uri,
    /// HTTP version of the request.
    pub version: Version,
    /// Request headers as received.
    pub headers: HeaderMap,
    /// Body bytes read by the handler (0 for handlers that do not read the body, e.g. `/hang`);
    /// final by the time the response has ended.
    pub body_len: u64,
}

/// A failure the upstream injects into every request but `/healthz`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Never answer (until the upstream is dropped).
    Hang,
    /// Close the connection without an answer.
    Reset,
    /// Answer this status.
    Status(u16),
    /// Wait this long, then behave.
    Slow(Duration),
    /// Answer this status on every other request, starting with the next one.
    Flapping(u16),
    /// A gRPC trailers-only answer: HTTP 200, `grpc-status: code` in the head.
    GrpcStatus(u8),
}

/// A running programmable upstream on 127.0.0.1; shuts down (closing every connection) when dropped.
pub struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
    accept_task: JoinHandle<()>,
}

struct State {
    name: String,
    requests: Mutex<Vec<RecordedRequest>>,
    request_count: watch::Sender<usize>,
    connection_count: watch::Sender<usize>,
    open_connections: AtomicUsize,
    gates: Mutex<HashMap<String, watch::Sender<bool>>>,
    shutdown: watch::Sender<bool>,
    fault: Mutex<Fault>,
    flaps: AtomicUsize,
    health: std::sync::atomic::AtomicU16,
    canned: Mutex<HashMap<String, (u16, String)>>,
    barriers: Mutex<HashMap<String, watch::Sender<usize>>>,
}

impl Upstream {
    /// Binds 127.0.0.1:0 and starts serving; ready to accept when this returns.
    pub async fn start(name: &str) -> Upstream {
        Self::start_with_tls(name, SocketAddr::from(([127, 0, 0, 1], 0)), None).await
    }

    /// Like [`Upstream::start`], speaking TLS with `config` (HTTP/1.1 or h2 as ALPN decides).
    pub async fn start_tls(name: &str, config: Arc<rustls::ServerConfig>) -> Upstream {
        let tls = Some(tokio_rustls::TlsAcceptor::from(config));
        Self::start_with_tls(name, SocketAddr::from(([127, 0, 0, 1], 0)), tls).await
    }

    /// Binds `addr` (e.g. another loopback address with a port already used on 127.0.0.1, for DNS
    /// tests where every address shares one port) and starts serving.
    pub async fn start_at(name: &str, addr: SocketAddr) -> Upstream {
        Self::start_with_tls(name, addr, None).await
    }

    async fn start_with_tls(
        name: &str,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Upstream {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind upstream listener");
        let addr = listener.local_addr().expect("upstream local addr");
        let state = Arc::new(State {
            name: name.to_owned(),
            requests: Mutex::new(Vec::new()),
            request_count: watch::Sender::new(0),
            connection_count: watch::Sender::new(0),
            open_connections: AtomicUsize::new(0),
            gates: Mutex::new(HashMap::new()),
            shutdown: watch::Sender::new(false),
            fault: Mutex::new(Fault::None),
            flaps: AtomicUsize::new(0),
            health: std::sync::atomic::AtomicU16::new(200),
            canned: Mutex::new(HashMap::new()),
            barriers: Mutex::new(HashMap::new()),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&state), tls));
        Upstream {
            addr,
            state,
            accept_task,
        }
    }

    /// The name given to [`Upstream::start`] (reported as `upstream` in JSON bodies and `x-upstream`).
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `https://localhost:PORT` (a name a test certificate can carry).
    pub fn https_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Every request seen so far, in arrival order (recorded when the head arrives).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.state.requests).last().cloned()
    }

    /// Number of requests seen so far.
    pub fn request_count(&self) -> usize {
        *self.state.request_count.borrow()
    }

    /// Number of TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        *self.state.connection_count.borrow()
    }

    /// Number of accepted connections that are still open.
    pub fn open_connections(&self) -> usize {
        self.state.open_connections.load(Ordering::SeqCst)
    }

    /// Injects `fault` into every later request but `/healthz`.
    pub fn set_fault(&self, fault: Fault) {
        self.state.flaps.store(0, Ordering::SeqCst);
        *lock(&self.state.fault) = fault;
    }

    /// The status `/healthz` answers from now on.
    pub fn set_health(&self, status: u16) {
        self.state.health.store(status, Ordering::SeqCst);
    }

    /// Requests seen so far whose path starts with `prefix` (e.g. to leave health checks out).
    pub fn count_path(&self, prefix: &str) -> usize {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.uri.path().starts_with(prefix))
            .count()
    }

    /// Requests seen so far other than health checks (`/healthz`).
    pub fn traffic_count(&self) -> usize {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.uri.path() != "/healthz")
            .count()
    }

    /// Answers `path` (exact, query ignored) with `status` and `body` as `application/json`; `body`
    /// is sent as written, so it may be deliberately not JSON.
    pub fn set_json(&self, path: &str, status: u16, body: &str) {
        lock(&self.state.canned).insert(path.to_owned(), (status, body.to_owned()));
    }

    /// Lets every `/gate/{id}` response (current and future) finish with `done\n`.
    pub fn release(&self, id: &str) {
        self.state.gate(id).send_replace(true);
    }

    /// Waits until at least `n` requests have arrived (panics after a 10 s safety net).
    pub async fn wait_for_requests(&self, n: usize) {
        wait_for_count(&self.state.request_count, n, "requests").await;
    }

    /// Waits until at least `n` connections have been accepted (panics after a 10 s safety net).
    pub async fn wait_for_connections(&self, n: usize) {
        wait_for_count(&self.state.connection_count, n, "connections").await;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.state.shutdown.send_replace(true);
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.accept_task.abort();
    }
}

impl State {
    fn gate(&self, id: &str) -> watch::Sender<bool> {
        lock(&self.gates)
            .entry(id.to_owned())
            .or_insert_with(|| watch::Sender::new(false))
            .clone()
    }

    fn record(&self, req: &Request<Incoming>) -> usize {
        let index = {
            let mut requests = lock(&self.requests);
            requests.push(RecordedRequest {
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                headers: req.headers().clone(),
                body_len: 0,
            });
            requests.len() - 1
        };
        self.request_count.send_modify(|c| *c += 1);
        index
    }

    fn set_body_len(&self, index: usize, body_len: u64) {
        if let Some(r) = lock(&self.requests).get_mut(index) {
            r.body_len = body_len;
        }
    }

    async fn shutdown(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn wait_for_count(counter: &watch::Sender<usize>, n: usize, what: &str) {
    let mut rx = counter.subscribe();
    let waited = tokio::time::timeout(SAFETY_NET, rx.wait_for(|c| *c >= n)).await;
    let seen = *counter.borrow();
    assert!(
        matches!(waited, Ok(Ok(_))),
        "safety net: waited {SAFETY_NET:?} for {n} {what}, saw {seen}"
    );
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        state.connection_count.send_modify(|c| *c += 1);
        state.open_connections.fetch_add(1, Ordering::SeqCst);
        let state = Arc::clone(&state);
        let tls = tls.clone();
        connections.spawn(async move {
            let _open = OpenGuard(Arc::clone(&state));
            let service = service_fn(move |req| handle(Arc::clone(&state), req));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().max_buf_size(4 << 20);
            builder.http2().max_header_list_size(4 << 20);
            match tls {
                None => {
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    // A failed handshake (untrusted client certificate, say) just closes.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
}

/// Decrements the open-connection count when a connection task ends or is aborted.
struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

type HandlerResult = Result<Response<TestBody>, BoxError>;

async fn handle(state: Arc<State>, req: Request<Incoming>) -> HandlerResult {
    let index = state.record(&req);
    let path = req.uri().path().to_owned();
    let mut response = if path == "/healthz" {
        let code = state.health.load(Ordering::SeqCst);
        status(&state, &code.to_string())
    } else {
        let fault = *lock(&state.fault);
        match fault {
            Fault::None => route(&state, index, &path, req).await?,
            Fault::Hang => {
                state.shutdown().await;
                return Err("upstream shut down".into());
            }
            Fault::Reset => return Err("injected reset".into()),
            Fault::Status(code) => status(&state, &code.to_string()),
            Fault::Slow(delay) => {
                tokio::time::sleep(delay).await;
                route(&state, index, &path, req).await?
            }
            Fault::GrpcStatus(code) => {
                let mut response = Response::new(empty());
                let headers = response.headers_mut();
                headers.insert("content-type", HeaderValue::from_static("application/grpc"));
                headers.insert("grpc-status", HeaderValue::from(u16::from(code)));
                response
            }
            Fault::Flapping(code) => {
                if state.flaps.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                    status(&state, &code.to_string())
                } else {
                    route(&state, index, &path, req).await?
                }
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&state.name) {
        response.headers_mut().insert("x-upstream", v);
    }
    Ok(response)
}

async fn route(
    state: &Arc<State>,
    index: usize,
    path: &str,
    req: Request<Incoming>,
) -> HandlerResult {
    let canned = lock(&state.canned).get(path).cloned();
    if let Some((code, body)) = canned {
        let mut response = Response::new(full(body));
        *response.status_mut() = StatusCode::from_u16(code)?;
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        return Ok(response);
    }
    if let Some(rest) = path.strip_prefix("/barrier/") {
        return barrier(state, rest, req.uri().query().unwrap_or("")).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return Ok(status(state, code));
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        return Ok(bytes(n));
    }
    if let Some(id) = path.strip_prefix("/gate/") {
        return Ok(gate(state, id));
    }
    if let Some(n) = path.strip_prefix("/big-headers/") {
        return Ok(big_headers(state, n));
    }
    if path.starts_with("/grpc/") && is_grpc(&req) {
        return Ok(grpc_echo(state, index, req));
    }
    match path {
        "/slow" => Ok(slow(req.uri().query().unwrap_or(""))),
        "/hang" | "/headers-hang" => {
            state.shutdown().await;
            Err("upstream shut down".into())
        }
        "/body-hang" => Ok(body_hang(state)),
        "/sink" | "/expect" => sink(state, index, req).await,
        "/trailers" => Ok(trailers()),
        "/set-hop-headers" => Ok(hop_headers()),
        "/ws" if is_websocket(&req) => Ok(websocket(state, req)),
        _ => echo(state, index, req).await,
    }
}

/// Waits until `n` requests reached the barrier (or the upstream shuts down).
async fn barrier(state: &Arc<State>, rest: &str, query: &str) -> HandlerResult {
    let (id, name) = rest.split_once('/').unwrap_or((rest, ""));
    let n: usize = query
        .split('&')
        .find_map(|p| p.strip_prefix("n="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let counter = lock(&state.barriers)
        .entry(id.to_owned())
        .or_insert_with(|| watch::Sender::new(0))
        .clone();
    counter.send_modify(|c| *c += 1);
    let mut rx = counter.subscribe();
    tokio::select! {
        _ = rx.wait_for(|c| *c >= n) => {}
        () = state.shutdown() => return Err("upstream shut down".into()),
    }
    Ok(json_response(StatusCode::OK, &json!({ "name": name })))
}

fn json_response(status: StatusCode, value: &Value) -> Response<TestBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn text_response(body: TestBody) -> Response<TestBody> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    response
}

fn bad_request(what: &str) -> Response<TestBody> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": what }))
}

async fn echo(state: &State, index: usize, req: Request<Incoming>) -> HandlerResult {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    state.set_body_len(index, body.len() as u64);
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = if values.len() == 1 {
            values.into_iter().next().unwrap_or(Value::Null)
        } else {
            Value::Array(values)
        };
        headers.insert(name.as_str().to_owned(), value);
    }
    let text = std::str::from_utf8(&body).ok();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "upstream": state.name,
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body": text,
            "body_len": body.len(),
        }),
    ))
}

fn status(state: &State, code: &str) -> Response<TestBody> {
    let Some(status) = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| !s.is_informational())
    else {
        return bad_request("status must be a final status code (200..=999)");
    };
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        let mut response = Response::new(empty());
        *response.status_mut() = status;
        return response;
    }
    json_response(
        status,
        &json!({ "upstream": state.name, "status": status.as_u16() }),
    )
}

fn query_param(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn slow(query: &str) -> Response<TestBody> {
    let chunks = query_param(query, "chunks").unwrap_or(3);
    let delay = Duration::from_millis(query_param(query, "delay_ms").unwrap_or(10));
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        for i in 0..chunks {
            if i > 0 {
                tokio::time::sleep(delay).await;
            }
            if !tx.send_data(format!("chunk-{i}\n")).await {
                return;
            }
        }
    });
    text_response(body)
}

fn gate(state: &Arc<State>, id: &str) -> Response<TestBody> {
    let mut released = state.gate(id).subscribe();
    let (tx, body) = channel_body();
    let state = Arc::clone(state);
    tokio::spawn(async move {
        if !tx.send_data("first\n").await {
            return;
        }
        tokio::select! {
            r = async { released.wait_for(|open| *open).await.is_ok() } => {
                if r {
                    tx.send_data("done\n").await;
                }
            }
            () = tx.closed() => {}
            () = state.shutdown() => {}
        }
    });
    text_response(body)
}

fn body_hang(state: &Arc<State>) -> Response<TestBody> {
    let (tx, body) = channel_body();
    let state = Arc::clone(state);
    tokio::spawn(async move {
        if !tx.send_data("chunk-0\n").await {
            return;
        }
        tokio::select! {
            () = tx.closed() => {}
            () = state.shutdown() => {}
        }
    });
    text_response(body)
}

fn bytes(n: &str) -> Response<TestBody> {
    let Ok(n) = n.parse::<u64>() else {
        return bad_request("/bytes/{n} needs a number");
    };
    let mut response = Response::new(pattern_body(n));
    let headers = response.headers_mut();
    headers.insert("content-length", HeaderValue::from(n));
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

async fn sink(state: &State, index: usize, req: Request<Incoming>) -> HandlerResult {
    let expect = req
        .headers()
        .get("expect")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut body = req.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            received += data.len() as u64;
        }
    }
    state.set_body_len(index, received);
    Ok(json_response(
        StatusCode::OK,
        &json!({ "received": received, "expect": expect }),
    ))
}

fn trailers() -> Response<TestBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("x-trailer", HeaderValue::from_static("yes"));
    let mut response = text_response(frames_body(vec![
        Frame::data(Bytes::from_static(b"ok")),
        Frame::trailers(trailers),
    ]));
    // HTTP/1.1 only sends trailer fields that the `Trailer` header announces.
    response.headers_mut().insert(
        "trailer",
        HeaderValue::from_static("grpc-status, x-trailer"),
    );
    response
}

fn big_headers(state: &State, n: &str) -> Response<TestBody> {
    let Ok(n) = n.parse::<usize>() else {
        return bad_request("/big-headers/{n} needs a number");
    };
    let mut response = json_response(
        StatusCode::OK,
        &json!({ "upstream": state.name, "x_big_len": n }),
    );
    let value = HeaderValue::from_str(&"x".repeat(n)).expect("x is a valid header value");
    response.headers_mut().insert("x-big", value);
    response
}

fn hop_headers() -> Response<TestBody> {
    let mut response = text_response(full("hop"));
    let h = response.headers_mut();
    h.insert(
        "connection",
        HeaderValue::from_static("close, x-custom-hop"),
    );
    h.insert("x-custom-hop", HeaderValue::from_static("1"));
    h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    h.insert("proxy-authenticate", HeaderValue::from_static("x"));
    h.insert("trailer", HeaderValue::from_static("x"));
    h.insert("upgrade", HeaderValue::from_static("foo"));
    h.insert("x-end-to-end", HeaderValue::from_static("kept"));
    response
}

fn is_grpc(req: &Request<Incoming>) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn grpc_echo(state: &Arc<State>, index: usize, req: Request<Incoming>) -> Response<TestBody> {
    let (tx, body) = channel_body();
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let mut incoming = req.into_body();
        let mut received = 0u64;
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else {
                tx.abort().await;
                return;
            };
            if let Ok(data) = frame.into_data() {
                received += data.len() as u64;
                if !tx.send_data(data).await {
                    return;
                }
            }
        }
        state.set_body_len(index, received);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("ok"));
        tx.send_trailers(trailers).await;
    });
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert(
        "trailer",
        HeaderValue::from_static("grpc-status, grpc-message"),
    );
    response
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && req.headers().contains_key("sec-websocket-key")
}

fn websocket(state: &Arc<State>, mut req: Request<Incoming>) -> Response<TestBody> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()))
        .unwrap_or_default();
    let protocol = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_owned());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        tokio::select! {
            () = ws_echo(ws) => {}
            () = state.shutdown() => {}
        }
    });
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert("upgrade", HeaderValue::from_static("websocket"));
    h.insert("connection", HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert("sec-websocket-accept", v);
    }
    if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert("sec-websocket-protocol", v);
    }
    response
}

async fn ws_echo<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // Close and ping frames are answered by tungstenite itself while we keep reading.
    while let Some(Ok(message)) = ws.next().await {
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}
