//! A misbehaving upstream: a plain TCP listener whose connections are handed to a test-provided
//! async closure, with ready-made behaviours (reset, truncated body, cut chunked body, garbage,
//! huge head). Every byte it reads is recorded per connection, so a test can count exactly how many
//! requests reached it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::body::pattern_byte;
use super::client::{decode_chunked, find};

const SAFETY_NET: Duration = Duration::from_secs(10);

/// A running raw TCP upstream on 127.0.0.1; stops accepting and drops every connection when dropped.
pub struct RawUpstream {
    addr: SocketAddr,
    state: Arc<RawState>,
    accept_task: JoinHandle<()>,
}

struct RawState {
    connection_count: watch::Sender<usize>,
    received: Mutex<Vec<Vec<u8>>>,
}

impl RawUpstream {
    /// Binds 127.0.0.1:0 and gives each accepted connection to `handler`; ready when this returns.
    pub async fn start<F, Fut>(handler: F) -> RawUpstream
    where
        F: Fn(RawConnection) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw upstream listener");
        let addr = listener.local_addr().expect("raw upstream local addr");
        let state = Arc::new(RawState {
            connection_count: watch::Sender::new(0),
            received: Mutex::new(Vec::new()),
        });
        let accept_state = Arc::clone(&state);
        let accept_task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let index = {
                    let mut received = lock(&accept_state.received);
                    received.push(Vec::new());
                    received.len() - 1
                };
                accept_state.connection_count.send_modify(|c| *c += 1);
                let conn = RawConnection {
                    stream,
                    state: Arc::clone(&accept_state),
                    index,
                    pending: Vec::new(),
                };
                connections.spawn(handler(conn));
                while connections.try_join_next().is_some() {}
            }
        });
        RawUpstream {
            addr,
            state,
            accept_task,
        }
    }

    /// Reads each request head, then closes with SO_LINGER 0 so the peer sees a reset (RST).
    pub async fn reset_after_request() -> RawUpstream {
        Self::start(|mut conn| async move {
            if conn.read_request_head().await.is_some() {
                conn.reset();
            }
        })
        .await
    }

    /// Resets (RST) its first connection after reading the request; answers `200 ok` on every
    /// later one, keeping it alive: a failure that goes away when the request is sent again.
    pub async fn reset_first() -> RawUpstream {
        Self::start(|mut conn| async move {
            while conn.read_request().await.is_some() {
                if conn.index() == 0 {
                    conn.reset();
                    return;
                }
                if conn
                    .write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
        .await
    }

    /// Answers with `Content-Length: content_length` but sends only `actually_sent` pattern bytes,
    /// then closes (FIN).
    pub async fn truncate(content_length: u64, actually_sent: u64) -> RawUpstream {
        Self::start(move |mut conn| async move {
            if conn.read_request().await.is_none() {
                return;
            }
            let mut out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {content_length}\r\n\r\n"
            )
            .into_bytes();
            out.extend((0..actually_sent).map(pattern_byte));
            let _ = conn.write(&out).await;
            conn.close().await;
        })
        .await
    }

    /// Answers with a chunked body and closes in the middle of the second chunk.
    pub async fn close_mid_chunked() -> RawUpstream {
        Self::start(|mut conn| async move {
            if conn.read_request().await.is_none() {
                return;
            }
            let _ = conn
                .write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n\
                      6\r\nhello \r\n10\r\npartial",
                )
                .await;
            conn.close().await;
        })
        .await
    }

    /// Answers each request with bytes that are not HTTP, then closes.
    pub async fn garbage() -> RawUpstream {
        Self::start(|mut conn| async move {
            if conn.read_request().await.is_none() {
                return;
            }
            let _ = conn
                .write(b"SSH-2.0-NotHttp\r\nthis is not http\r\n\r\n")
                .await;
            conn.close().await;
        })
        .await
    }

    /// Answers every request with a valid `200` whose head is `n` bytes long (a filler header
    /// `x-huge`) and an empty body; keeps the connection alive.
    pub async fn huge_head(n: usize) -> RawUpstream {
        let prefix = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nx-huge: ";
        let suffix = "\r\n\r\n";
        let filler = n.saturating_sub(prefix.len() + suffix.len()).max(1);
        let head = format!("{prefix}{}{suffix}", "h".repeat(filler));
        Self::respond_with(head.into_bytes()).await
    }

    /// Answers the first request head on each connection with `answer` as soon as the head is
    /// in (without reading a body), then reads until the client closes.
    pub async fn answer_head_then_hold(answer: &'static [u8]) -> RawUpstream {
        Self::start(move |mut conn| async move {
            if conn.read_request_head().await.is_some() {
                let _ = conn.write(answer).await;
                conn.read_to_close().await;
            }
        })
        .await
    }

    /// Answers every request on every connection with exactly `response` (keep-alive).
    pub async fn respond_with(response: impl Into<Vec<u8>>) -> RawUpstream {
        let response: Arc<[u8]> = response.into().into();
        Self::start(move |mut conn| {
            let response = Arc::clone(&response);
            async move {
                while conn.read_request().await.is_some() {
                    if conn.write(&response).await.is_err() {
                        return;
                    }
                }
            }
        })
        .await
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Number of TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        *self.state.connection_count.borrow()
    }

    /// Waits until at least `n` connections have been accepted (panics after a 10 s safety net).
    pub async fn wait_for_connections(&self, n: usize) {
        let mut rx = self.state.connection_count.subscribe();
        let waited = tokio::time::timeout(SAFETY_NET, rx.wait_for(|c| *c >= n)).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "safety net: waited {SAFETY_NET:?} for {n} raw connections, saw {}",
            self.connection_count()
        );
    }

    /// Every byte read so far, connection after connection (in accept order).
    pub fn received(&self) -> Vec<u8> {
        lock(&self.state.received).concat()
    }

    /// Every byte read so far, one entry per accepted connection.
    pub fn received_per_connection(&self) -> Vec<Vec<u8>> {
        lock(&self.state.received).clone()
    }

    /// Number of HTTP/1.x request lines read so far (lines ending in ` HTTP/1.1` or ` HTTP/1.0`).
    pub fn request_lines(&self) -> usize {
        lock(&self.state.received)
            .iter()
            .map(|bytes| {
                bytes
                    .windows(11)
                    .filter(|w| *w == b" HTTP/1.1\r\n" || *w == b" HTTP/1.0\r\n")
                    .count()
            })
            .sum()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One accepted connection of a [`RawUpstream`]. Reads (through its helpers or its `AsyncRead`
/// impl) are recorded; writes go straight to the socket.
pub struct RawConnection {
    stream: TcpStream,
    state: Arc<RawState>,
    index: usize,
    /// Bytes read from the socket but not yet handed out.
    pending: Vec<u8>,
}

impl RawConnection {
    /// Position of this connection in accept order (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Reads one request head (up to and including the blank line); `None` if the peer closed first.
    pub async fn read_request_head(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = find(&self.pending, b"\r\n\r\n") {
                return Some(self.pending.drain(..end + 4).collect());
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads one whole request (head plus a Content-Length or chunked body); `None` if the peer
    /// closed first.
    pub async fn read_request(&mut self) -> Option<Vec<u8>> {
        let mut request = self.read_request_head().await?;
        let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim() == name)
                .map(|(_, v)| v.trim().to_owned())
        };
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                if let Some((_, _, len)) = decode_chunked(&self.pending) {
                    request.extend(self.pending.drain(..len));
                    return Some(request);
                }
                if !self.fill().await {
                    return None;
                }
            }
        }
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while self.pending.len() < len {
            if !self.fill().await {
                return None;
            }
        }
        request.extend(self.pending.drain(..len));
        Some(request)
    }

    /// Reads (and records) until the peer closes the connection or it fails.
    pub async fn read_to_close(&mut self) {
        while self.fill().await {}
    }

    /// Writes all of `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Closes gracefully (FIN).
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Closes with SO_LINGER 0, so the peer sees a reset (RST).
    pub fn reset(self) {
        let _ = self.stream.set_zero_linger();
        drop(self.stream);
    }

    /// The socket itself, for anything the helpers do not cover (reads through it are not recorded).
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Reads more bytes into `pending`; false on EOF or error.
    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.record(&buf[..n]);
                self.pending.extend_from_slice(&buf[..n]);
                true
            }
        }
    }

    fn record(&self, bytes: &[u8]) {
        if let Some(r) = lock(&self.state.received).get_mut(self.index) {
            r.extend_from_slice(bytes);
        }
    }
}

impl AsyncRead for RawConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.pending.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = buf.filled()[before..].to_vec();
            this.record(&fresh);
        }
        polled
    }
}

impl AsyncWrite for RawConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
