//! Clients for end-to-end tests: raw TCP (exact bytes in, exact bytes out), hyper's legacy client
//! for HTTP/1.1 and h2 prior knowledge, and WebSocket.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::body::{TestBody, empty};

/// How long raw reads wait for the peer: a safety net so a broken test fails, not an assertion.
pub const SAFETY_NET: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------------------

/// Everything a raw exchange produced.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// Every byte received.
    pub bytes: Vec<u8>,
    /// True when reading stopped because the peer closed (FIN) or reset the connection; false when
    /// the 10 s safety net ended it.
    pub closed_by_peer: bool,
    /// The read error that ended the exchange, e.g. `ConnectionReset`.
    pub error: Option<io::ErrorKind>,
}

impl RawResponse {
    /// Status code of every `HTTP/1.x NNN` status line found anywhere in the bytes (a response that
    /// follows a body without a line break counts too), interim 1xx responses included.
    pub fn statuses(&self) -> Vec<u16> {
        let b = &self.bytes;
        (0..b.len())
            .filter_map(|i| {
                let line = &b[i..];
                let version_ok = line.starts_with(b"HTTP/1.1 ") || line.starts_with(b"HTTP/1.0 ");
                let code = line.get(9..12)?;
                let after = line.get(12).copied().unwrap_or(b'\r');
                if version_ok
                    && code.iter().all(u8::is_ascii_digit)
                    && (after == b' ' || after == b'\r')
                {
                    std::str::from_utf8(code).ok()?.parse().ok()
                } else {
                    None
                }
            })
            .collect()
    }

    /// The responses parsed one after another (interim 1xx responses are entries of their own);
    /// stops at the first incomplete or malformed one. Responses to HEAD are not distinguishable
    /// here: use [`RawConn::read_head_response`] for them.
    pub fn responses(&self) -> Vec<ParsedResponse> {
        let mut out = Vec::new();
        let mut rest = &self.bytes[..];
        while let Some((response, used)) = parse_response(rest, self.closed_by_peer, false) {
            out.push(response);
            rest = &rest[used..];
            if used == 0 {
                break;
            }
        }
        out
    }

    /// The bytes as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Header or trailer fields in order: (name as sent, value).
pub type Fields = Vec<(String, String)>;

/// One parsed HTTP/1.x response.
#[derive(Clone, Debug, Default)]
pub struct ParsedResponse {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields in order, names as sent.
    pub headers: Fields,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Fields,
}

impl ParsedResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }
}

/// Opens a TCP connection to `addr`, writes `bytes`, and reads until the peer closes or resets it
/// (or the 10 s safety net). Include `Connection: close` for a prompt return: otherwise the peer
/// keeps the connection open after answering.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect for raw request");
    let mut response = RawResponse {
        bytes: Vec::new(),
        closed_by_peer: false,
        error: None,
    };
    if let Err(e) = stream.write_all(bytes).await {
        // The peer may answer and close before reading everything; collect what it sent anyway.
        response.error = Some(e.kind());
    }
    let deadline = tokio::time::Instant::now() + SAFETY_NET;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return response,
            Ok(Ok(0)) => {
                response.closed_by_peer = true;
                return response;
            }
            Ok(Ok(n)) => response.bytes.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => {
                response.closed_by_peer = true;
                response.error = Some(e.kind());
                return response;
            }
        }
    }
}

/// What [`upload_reading_concurrently`] saw: the answer (if a complete one arrived) and how many
/// body bytes went out before the upload ended or the peer stopped taking them.
#[derive(Debug)]
pub struct UploadOutcome {
    /// The response, parsed; `None` if the peer closed before a complete one.
    pub response: Option<ParsedResponse>,
    /// Body bytes written.
    pub sent: u64,
}

/// Sends `head` (a request head ending in a blank line) and then `body_len` bytes of the pattern,
/// while another task reads the answer. A server may answer early (413) and close while the body is
/// still going out: the write side then fails (BrokenPipe, reset) and stops, and the answer read
/// so far is kept. Waiting for the answer only after the upload (as hyper's client does) races
/// with that close. Panics past the 10 s safety net for the answer.
pub async fn upload_reading_concurrently(
    addr: SocketAddr,
    head: &str,
    body_len: u64,
) -> UploadOutcome {
    let stream = TcpStream::connect(addr).await.expect("connect for upload");
    let (mut read_half, mut write_half) = stream.into_split();
    let head = head.as_bytes().to_vec();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        if write_half.write_all(&head).await.is_err() {
            return;
        }
        let chunk: Vec<u8> = (0..super::body::PATTERN_CHUNK as u64)
            .map(super::body::pattern_byte)
            .collect();
        let mut done = 0u64;
        while done < body_len {
            let n = usize::try_from((body_len - done).min(chunk.len() as u64)).unwrap_or(0);
            if write_half.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            done += n as u64;
            counter.store(done, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let deadline = tokio::time::Instant::now() + SAFETY_NET;
    let mut buf = Vec::new();
    let mut tmp = vec![0u8; 16 * 1024];
    let response = loop {
        let read = tokio::time::timeout_at(deadline, read_half.read(&mut tmp))
            .await
            .expect("safety net: no answer to the upload within 10 s");
        let eof = !matches!(read, Ok(n) if n > 0);
        if let Ok(n) = read {
            buf.extend_from_slice(&tmp[..n]);
        }
        if let Some((response, _)) = parse_response(&buf, eof, false) {
            break Some(response);
        }
        if eof {
            break None;
        }
    };
    // The answer is in: stop the upload (dropping the read half does not stop the writer).
    writer.abort();
    let _ = writer.await;
    UploadOutcome {
        response,
        sent: sent.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// An interactive raw HTTP/1.1 connection.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl RawConn {
    /// Connects to `addr` (panics on failure).
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).await.expect("raw connect");
        let _ = stream.set_nodelay(true);
        RawConn {
            stream,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// Writes all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Shuts down the write half (the peer reads EOF).
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    /// Reads one response (head plus a Content-Length, chunked or close-delimited body; a 1xx is
    /// returned on its own). `None` if the peer closed before a complete response. Panics after the
    /// 10 s safety net.
    pub async fn read_response(&mut self) -> Option<ParsedResponse> {
        self.read_parsed(false).await
    }

    /// Like [`RawConn::read_response`] for the answer to a HEAD request (the head only).
    pub async fn read_head_response(&mut self) -> Option<ParsedResponse> {
        self.read_parsed(true).await
    }

    /// A non-blocking look: true if the peer has already closed or reset the connection as far as
    /// this side has seen. To assert that a close happens, use [`RawConn::wait_closed`].
    pub async fn is_closed(&mut self) -> bool {
        // Let the runtime poll its I/O driver once so readiness is current.
        tokio::task::yield_now().await;
        let mut tmp = [0u8; 16 * 1024];
        while !self.closed {
            match self.stream.try_read(&mut tmp) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.closed = true,
            }
        }
        self.closed
    }

    /// Reads (buffering anything that arrives) until the peer closes or resets the connection;
    /// false if the 10 s safety net ran out first.
    pub async fn wait_closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + SAFETY_NET;
        while !self.closed {
            if !self.fill(deadline).await {
                return false;
            }
        }
        true
    }

    /// Bytes received but not yet returned as a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The socket itself.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    async fn read_parsed(&mut self, head_only: bool) -> Option<ParsedResponse> {
        let deadline = tokio::time::Instant::now() + SAFETY_NET;
        loop {
            if let Some((response, used)) = parse_response(&self.buf, self.closed, head_only) {
                self.buf.drain(..used);
                return Some(response);
            }
            if self.closed {
                return None;
            }
            assert!(
                self.fill(deadline).await,
                "safety net: no complete response within {SAFETY_NET:?}; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Reads once; false only when the deadline passed.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> bool {
        let mut tmp = vec![0u8; 64 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
            Err(_) => false,
            Ok(Ok(0) | Err(_)) => {
                self.closed = true;
                true
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }
}

/// Parses one response at the start of `buf`: the response and the bytes it used, or `None` while
/// incomplete or malformed. `eof` lets a close-delimited body end at the end of `buf`.
pub fn parse_response(buf: &[u8], eof: bool, head_only: bool) -> Option<(ParsedResponse, usize)> {
    let head_end = find(buf, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let reason = parts.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = ParsedResponse {
        status,
        reason,
        headers,
        ..ParsedResponse::default()
    };
    let body_start = head_end + 4;
    let rest = &buf[body_start..];
    if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((response, body_start));
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let (body, trailers, used) = decode_chunked(rest)?;
        response.body = body;
        response.trailers = trailers;
        return Some((response, body_start + used));
    }
    if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().ok()?;
        if rest.len() < len {
            return None;
        }
        response.body = rest[..len].to_vec();
        return Some((response, body_start + len));
    }
    if !eof {
        return None;
    }
    response.body = rest.to_vec();
    Some((response, buf.len()))
}

/// Decodes a complete chunked body at the start of `buf`: (data, trailers, bytes used), or `None`
/// while incomplete or malformed.
pub fn decode_chunked(buf: &[u8]) -> Option<(Vec<u8>, Fields, usize)> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = pos + find(&buf[pos..], b"\r\n")?;
        let size_text = std::str::from_utf8(&buf[pos..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        pos = line_end + 2;
        if size == 0 {
            let mut trailers = Vec::new();
            loop {
                let end = pos + find(&buf[pos..], b"\r\n")?;
                let line = std::str::from_utf8(&buf[pos..end]).ok()?;
                pos = end + 2;
                if line.is_empty() {
                    return Some((body, trailers, pos));
                }
                let (n, v) = line.split_once(':')?;
                trailers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return None;
        }
        pos += size + 2;
    }
}

/// Index of the first occurrence of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// hyper clients
// ---------------------------------------------------------------------------------------------

/// hyper-util's legacy client over plain TCP, with the body type of the support code.
pub type HyperClient = Client<HttpConnector, TestBody>;

/// A test HTTP client (HTTP/1.1 or h2 prior knowledge) with a few conveniences.
#[derive(Clone)]
pub struct TestClient {
    /// The underlying hyper client.
    pub inner: HyperClient,
}

/// A body fully read: status, headers, data and trailers.
#[derive(Clone, Debug)]
pub struct Collected {
    /// Response status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// All data frames, concatenated.
    pub body: Bytes,
    /// Trailers, if the body carried any.
    pub trailers: Option<HeaderMap>,
}

impl Collected {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }
}

/// An HTTP/1.1 client (keep-alive pool per authority).
pub fn http1_client() -> TestClient {
    TestClient {
        inner: Client::builder(TokioExecutor::new()).build_http(),
    }
}

/// An h2 client with prior knowledge (h2c, no upgrade dance).
pub fn h2_client() -> TestClient {
    TestClient {
        inner: Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http(),
    }
}

impl TestClient {
    /// Sends `request` and returns the response head with its streaming body.
    pub async fn send(
        &self,
        request: Request<TestBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        self.inner.request(request).await
    }

    /// GETs `url` and reads the whole body (panics on any error).
    pub async fn get(&self, url: &str) -> (StatusCode, HeaderMap, Bytes) {
        let request = Request::get(url).body(empty()).expect("valid GET request");
        let response = self.send(request).await.expect("GET request failed");
        let c = collect(response)
            .await
            .expect("reading the GET body failed");
        (c.status, c.headers, c.body)
    }

    /// Sends `request` and reads the whole response, trailers included (panics on any error).
    pub async fn fetch(&self, request: Request<TestBody>) -> Collected {
        let response = self.send(request).await.expect("request failed");
        collect(response).await.expect("reading the body failed")
    }
}

/// GETs `url` with a fresh HTTP/1.1 client and reads the whole body (panics on any error).
pub async fn get(url: &str) -> (StatusCode, HeaderMap, Bytes) {
    http1_client().get(url).await
}

/// Sends `request` with a fresh HTTP/1.1 client.
pub async fn send(
    request: Request<TestBody>,
) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
    http1_client().send(request).await
}

/// Reads a response's whole body, keeping trailers; the error is the body error (e.g. truncated).
pub async fn collect(response: Response<Incoming>) -> Result<Collected, hyper::Error> {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok(Collected {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

/// A client WebSocket over plain TCP.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `url` (`ws://…`), panicking if the handshake fails.
pub async fn ws_connect(url: &str) -> WsStream {
    try_ws_connect(url).await.expect("WebSocket handshake").0
}

/// Opens a WebSocket to `url` (`ws://…`) or returns the handshake error (e.g. an HTTP status).
pub async fn try_ws_connect(
    url: &str,
) -> Result<(WsStream, tungstenite::handshake::client::Response), tungstenite::Error> {
    tokio_tungstenite::connect_async(url).await
}

// ---------------------------------------------------------------------------------------------
// TLS (hyper's client connections over tokio-rustls)
// ---------------------------------------------------------------------------------------------

/// The client half of a TLS connection to a test server.
pub type ClientTlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects to `addr` and completes a TLS handshake for `server_name` (sent as SNI).
pub async fn tls_handshake(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    server_name: &str,
) -> io::Result<ClientTlsStream> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tokio::time::timeout(
        SAFETY_NET,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "safety net: TLS handshake"))?
}

enum TlsSender {
    Http1(hyper::client::conn::http1::SendRequest<TestBody>),
    Http2(hyper::client::conn::http2::SendRequest<TestBody>),
}

/// One HTTP connection over TLS, HTTP/1.1 or h2 as ALPN decided.
pub struct TlsConn {
    sender: TlsSender,
    server_name: String,
    /// The ALPN protocol the server chose.
    pub alpn: Option<Vec<u8>>,
    /// The certificate chain the server presented, leaf first.
    pub server_certificates: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl TlsConn {
    /// Handshakes with `addr` for `server_name`, then starts HTTP on the connection.
    pub async fn connect(
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> io::Result<TlsConn> {
        let stream = tls_handshake(addr, config, server_name).await?;
        let connection = stream.get_ref().1;
        let alpn = connection.alpn_protocol().map(<[u8]>::to_vec);
        let server_certificates = connection
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        let io = hyper_util::rt::TokioIo::new(stream);
        let sender = if alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(conn);
            TlsSender::Http2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(conn);
            TlsSender::Http1(sender)
        };
        Ok(TlsConn {
            sender,
            server_name: server_name.to_owned(),
            alpn,
            server_certificates,
        })
    }

    /// Whether the connection speaks h2.
    pub fn is_h2(&self) -> bool {
        matches!(self.sender, TlsSender::Http2(_))
    }

    /// GETs `path` with extra `headers` and reads the whole response.
    pub async fn get_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Collected, hyper::Error> {
        let response = self.start_get(path, headers).await?;
        collect(response).await
    }

    /// GETs `path` with extra `headers`; returns once the response head has arrived.
    pub async fn start_get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>, hyper::Error> {
        let builder = match self.sender {
            TlsSender::Http1(_) => Request::get(path).header("host", self.server_name.as_str()),
            TlsSender::Http2(_) => Request::get(format!("https://{}{path}", self.server_name)),
        };
        let builder = headers
            .iter()
            .fold(builder, |b, (name, value)| b.header(*name, *value));
        let request = builder.body(empty()).expect("valid request");
        match &mut self.sender {
            TlsSender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
            TlsSender::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }

    /// GETs `path` and reads the whole response.
    pub async fn get(&mut self, path: &str) -> Result<Collected, hyper::Error> {
        self.get_with(path, &[]).await
    }
}
