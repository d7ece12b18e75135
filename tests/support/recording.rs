//! A raw backend that records every request it reads, framed by its own lenient parser, so a
//! request the gateway let through hidden in another one's bytes shows up as a request of its own.

use std::sync::{Arc, Mutex};

use super::client::{decode_chunked, find};
use super::raw_upstream::RawUpstream;

/// A complete, keep-alive answer from the recording backend.
pub const BACKEND_OK: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";

/// A raw backend that records each request it reads (head plus body, as framed by the gateway)
/// and answers each one with [`BACKEND_OK`].
pub struct RecordingBackend {
    /// The raw upstream underneath (every received byte, connection counts).
    pub upstream: RawUpstream,
    /// Every complete request read so far, head and body, in arrival order.
    pub requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RecordingBackend {
    /// Binds 127.0.0.1:0; ready when this returns.
    pub async fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        let upstream = RawUpstream::start(move |mut conn| {
            let seen = Arc::clone(&seen);
            async move {
                while let Some(request) = conn.read_request().await {
                    seen.lock().expect("recording lock").push(request);
                    if conn.write(BACKEND_OK).await.is_err() {
                        return;
                    }
                }
                // Whatever follows an incomplete request is still recorded by RawUpstream.
                conn.read_to_close().await;
            }
        })
        .await;
        Self { upstream, requests }
    }

    /// The heads of every complete request read so far, as text.
    pub fn heads(&self) -> Vec<String> {
        self.requests
            .lock()
            .expect("recording lock")
            .iter()
            .map(|r| {
                let end = find(r, b"\r\n\r\n").map_or(r.len(), |e| e + 4);
                String::from_utf8_lossy(&r[..end]).into_owned()
            })
            .collect()
    }

    /// The request line of every complete request read so far.
    pub fn request_lines(&self) -> Vec<String> {
        self.heads()
            .iter()
            .map(|h| h.lines().next().unwrap_or("").to_owned())
            .collect()
    }

    /// The payload of the `i`th request read: its body, de-chunked when it was sent chunked.
    pub fn payload(&self, i: usize) -> Vec<u8> {
        let requests = self.requests.lock().expect("recording lock");
        let r = &requests[i];
        let start = find(r, b"\r\n\r\n").map_or(r.len(), |e| e + 4);
        let head = String::from_utf8_lossy(&r[..start]).to_ascii_lowercase();
        if head.contains("\ntransfer-encoding:")
            && head.contains("chunked")
            && let Some((data, _, _)) = decode_chunked(&r[start..])
        {
            return data;
        }
        r[start..].to_vec()
    }
}
