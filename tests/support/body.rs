//! Body types shared by the test upstreams and the test clients.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::mpsc;

/// The error type carried by every test body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type used for requests sent by the test clients and responses of the upstreams.
pub type TestBody = BoxBody<Bytes, BoxError>;

/// Size of the frames produced by [`PatternBody`].
pub const PATTERN_CHUNK: usize = 64 * 1024;

/// The byte at offset `i` of the deterministic pattern (`b'a' + i % 26`).
pub fn pattern_byte(i: u64) -> u8 {
    // The remainder is below 26, so the cast cannot truncate.
    b'a' + u8::try_from(i % 26).unwrap_or(0)
}

/// Offset (relative to `bytes`) of the first byte that breaks the pattern, when `bytes` starts at
/// `offset` of the pattern; `None` when all of `bytes` matches.
pub fn pattern_mismatch(offset: u64, bytes: &[u8]) -> Option<usize> {
    bytes
        .iter()
        .enumerate()
        .position(|(i, b)| *b != pattern_byte(offset + i as u64))
}

/// A body holding `bytes` in one frame.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body with no frames.
pub fn empty() -> TestBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A streaming body of `n` pattern bytes (see [`pattern_byte`]) with an exact size hint.
pub fn pattern_body(n: u64) -> TestBody {
    PatternBody::new(n).boxed()
}

/// A body made of the given frames (data and/or trailers), without a size hint.
pub fn frames_body(frames: Vec<Frame<Bytes>>) -> TestBody {
    FramesBody {
        frames: frames.into(),
    }
    .boxed()
}

/// A streaming body and the sender that feeds it, for bodies written step by step.
pub fn channel_body() -> (BodySender, TestBody) {
    let (tx, rx) = mpsc::channel(1);
    (BodySender { tx }, ChannelBody { rx }.boxed())
}

/// Streams `n` bytes of the pattern in [`PATTERN_CHUNK`] frames without allocating `n` bytes.
pub struct PatternBody {
    remaining: u64,
    offset: u64,
    base: Bytes,
}

impl PatternBody {
    /// A pattern body of `n` bytes.
    pub fn new(n: u64) -> Self {
        let base: Vec<u8> = (0..(PATTERN_CHUNK + 26) as u64).map(pattern_byte).collect();
        Self {
            remaining: n,
            offset: 0,
            base: Bytes::from(base),
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let len =
            usize::try_from(this.remaining.min(PATTERN_CHUNK as u64)).unwrap_or(PATTERN_CHUNK);
        let start = usize::try_from(this.offset % 26).unwrap_or(0);
        let chunk = this.base.slice(start..start + len);
        this.remaining -= len as u64;
        this.offset += len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A body that yields a fixed list of frames.
struct FramesBody {
    frames: VecDeque<Frame<Bytes>>,
}

impl Body for FramesBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.get_mut().frames.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

/// A body fed through a channel by a [`BodySender`]; it ends when the sender is dropped.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

/// Writes frames into a body made by [`channel_body`]; dropping it ends the body cleanly.
pub struct BodySender {
    tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
}

impl BodySender {
    /// Queues a data frame; false when the body has been dropped by its reader.
    pub async fn send_data(&self, data: impl Into<Bytes>) -> bool {
        self.tx.send(Ok(Frame::data(data.into()))).await.is_ok()
    }

    /// Queues a trailers frame; false when the body has been dropped by its reader.
    pub async fn send_trailers(&self, trailers: HeaderMap) -> bool {
        self.tx.send(Ok(Frame::trailers(trailers))).await.is_ok()
    }

    /// Makes the body fail with an error (an aborted stream) instead of ending cleanly.
    pub async fn abort(self) {
        let _ = self.tx.send(Err("body aborted by the test".into())).await;
    }

    /// Resolves once the reader of the body has dropped it.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Whether the reader of the body has dropped it.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
