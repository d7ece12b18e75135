//! Bodies that stream through Gantry untouched, with the few checks a gateway owes them.
//!
//! [`RequestBody`] wraps the client's body on its way upstream: it enforces the body-size limit
//! while streaming, ends when the client's framing breaks, and times out when the client stalls.
//! Whatever stopped it is written into a shared [`BodyFailure`] so the forwarder can answer with
//! the right status (413, 400, 408) instead of a generic upstream error.
//!
//! [`ResponseBody`] wraps the upstream's body on its way to the client: an error mid-body is passed
//! on as an error, so hyper aborts the client's response (connection closed on HTTP/1, RST_STREAM on
//! h2) rather than ending it cleanly; a truncated body never becomes a complete one. When the body
//! ends normally the upstream connection goes back to its pool.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::observe::access_log::AccessRecord;
use crate::server::incoming::ClientBody;
use crate::upstream::client::UpstreamBody;
use crate::upstream::cluster::{InFlightGuard, Target};

/// Why a body stream stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFailure {
    /// The request body grew past the limit.
    TooLarge(u64),
    /// The client's body framing was broken or the client went away.
    Client(String),
    /// No body bytes for longer than the idle timeout.
    Idle(Duration),
    /// The upstream's body failed.
    Upstream(String),
}

/// The error a body stream yields; the detail is in the shared [`BodyFailure`].
#[derive(Debug, thiserror::Error)]
#[error("body stream stopped: {0:?}")]
pub struct BodyError(pub BodyFailure);

/// What a request body reports to the forwarder (why it stopped) and the access log (bytes read).
#[derive(Debug, Default)]
pub struct BodyProgress {
    /// Why the stream stopped early, if it did.
    pub failure: OnceLock<BodyFailure>,
    /// Body bytes read from the client so far.
    pub received: AtomicU64,
}

/// Shared between a request body and whoever sent it.
pub type FailureSlot = Arc<BodyProgress>;

/// A resettable idle timer, armed only while the stream is pending.
struct IdleTimer {
    after: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    fn new(after: Duration) -> Self {
        Self { after, sleep: None }
    }

    /// Data arrived: push the deadline out.
    fn touch(&mut self) {
        if let Some(sleep) = &mut self.sleep {
            sleep.as_mut().reset(Instant::now() + self.after);
        }
    }

    /// Polled while the body is pending: `Ready` when the body was idle too long.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let after = self.after;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        sleep.as_mut().poll(cx)
    }
}

/// The body sent upstream.
pub struct RequestBody {
    /// A body read ahead so the request can be sent again (retries), served before `inner`.
    buffered: Option<Bytes>,
    /// Boxed (trailers are rare): the body moves with its request through every layer.
    buffered_trailers: Option<Box<http::HeaderMap>>,
    inner: Option<ClientBody>,
    limit: u64,
    received: u64,
    idle: IdleTimer,
    failure: FailureSlot,
}

impl RequestBody {
    /// An empty body (requests Gantry makes itself).
    pub fn empty() -> Self {
        Self {
            buffered: None,
            buffered_trailers: None,
            inner: None,
            limit: 0,
            received: 0,
            idle: IdleTimer::new(Duration::from_secs(60)),
            failure: FailureSlot::default(),
        }
    }

    /// Wraps the client's body with a size limit and an idle timeout.
    pub fn new(inner: ClientBody, limit: u64, idle: Duration, failure: FailureSlot) -> Self {
        Self {
            buffered: None,
            buffered_trailers: None,
            inner: Some(inner),
            limit,
            received: 0,
            idle: IdleTimer::new(idle),
            failure,
        }
    }

    /// A body read ahead of time (a copy is sent on every try of a retried request).
    pub fn buffered(data: Bytes, trailers: Option<http::HeaderMap>) -> Self {
        let mut body = Self::empty();
        body.buffered = Some(data).filter(|d| !d.is_empty());
        body.buffered_trailers = trailers.map(Box::new);
        body
    }

    /// Bytes seen so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn fail(&mut self, failure: BodyFailure) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.inner = None;
        let _ = self.failure.failure.set(failure.clone());
        Poll::Ready(Some(Err(BodyError(failure))))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(data) = this.buffered.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = this.buffered_trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(*trailers))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    this.failure
                        .received
                        .store(this.received, Ordering::Relaxed);
                    if this.received > this.limit {
                        return this.fail(BodyFailure::TooLarge(this.limit));
                    }
                }
                this.idle.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => this.fail(BodyFailure::Client(err.to_string())),
            Poll::Ready(None) => {
                this.inner = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                ready!(this.idle.poll_expired(cx));
                let after = this.idle.after;
                this.fail(BodyFailure::Idle(after))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.buffered.is_none()
            && self.buffered_trailers.is_none()
            && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.buffered.as_ref().map_or(0, |b| b.len() as u64);
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(buffered), Body::size_hint)
    }
}

/// What a response holds of its upstream until its body ends.
pub struct ConnectionLease {
    /// The target whose pool gets an HTTP/1.1 connection back.
    pub target: Arc<Target>,
    /// Keeps the target's in-flight count up while the body streams.
    pub in_flight: InFlightGuard,
    /// The upstream's load-shedding slot, freed when the body ends. Boxed (only upstreams that
    /// shed have one): the lease rides in every response, which moves many times on its way out.
    pub shed: Option<Box<crate::upstream::shed::ShedPermit>>,
}

impl ConnectionLease {
    /// The response was read to its end: its connection may serve another request.
    fn give_back(self, body: &mut UpstreamBody) {
        let Self {
            target,
            in_flight,
            shed,
        } = self;
        if let Some(connection) = body.take_connection() {
            target.pool.put_back(connection);
        }
        drop(in_flight);
        drop(shed);
    }
}

enum ResponseKind {
    Full(Option<Bytes>),
    Upstream {
        inner: UpstreamBody,
        idle: IdleTimer,
        lease: Option<ConnectionLease>,
        /// A failure held back for one poll (see `poll_frame`); boxed, as it is rare.
        failed: Option<Box<BodyFailure>>,
    },
}

/// The body sent to the client.
pub struct ResponseBody {
    kind: ResponseKind,
    /// Boxed: a response moves a dozen times on its way out and the record is 400+ bytes.
    record: Option<Box<AccessRecord>>,
}

impl ResponseBody {
    /// A body Gantry wrote itself (errors, problem+json).
    pub fn full(bytes: Bytes) -> Self {
        Self {
            kind: ResponseKind::Full(Some(bytes).filter(|b| !b.is_empty())),
            record: None,
        }
    }

    /// The upstream's body, streamed with an idle timeout; `lease` returns to the pool at its end.
    pub fn upstream(inner: UpstreamBody, idle: Duration, lease: Option<ConnectionLease>) -> Self {
        Self {
            kind: ResponseKind::Upstream {
                inner,
                idle: IdleTimer::new(idle),
                lease,
                failed: None,
            },
            record: None,
        }
    }

    /// Attaches the access-log record, written when the body is done or dropped.
    pub fn with_record(mut self, record: Box<AccessRecord>) -> Self {
        self.record = Some(record);
        self
    }

    /// An upstream's response fields passed through unparsed (the response's map then lacks
    /// them): the HTTP/1.1 server writes them after the map's (see [`crate::http1::raw`]).
    pub fn raw_fields(&self) -> Option<&crate::http1::raw::RawFields> {
        match &self.kind {
            ResponseKind::Upstream {
                inner: UpstreamBody::Http1(body),
                ..
            } => body.raw_fields(),
            _ => None,
        }
    }

    fn count(&mut self, frame: &Frame<Bytes>) {
        if let (Some(record), Some(data)) = (self.record.as_mut(), frame.data_ref()) {
            record.bytes_out += data.len() as u64;
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            ResponseKind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseKind::Upstream {
                failed: failed @ Some(_),
                ..
            } => Poll::Ready(failed.take().map(|failure| Err(BodyError(*failure)))),
            ResponseKind::Upstream {
                inner,
                idle,
                lease,
                failed,
            } => {
                match Pin::new(&mut *inner).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        idle.touch();
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(err))) => {
                        // Dropping the lease discards the broken connection.
                        lease.take();
                        let failure = BodyFailure::Upstream(err.to_string());
                        // hyper's server drops what it has buffered when a body fails; one
                        // Pending first lets it flush the head and the bytes already passed on,
                        // so the client sees a truncated response rather than none at all.
                        *failed = Some(Box::new(failure));
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Poll::Ready(None) => {
                        if let Some(lease) = lease.take() {
                            lease.give_back(inner);
                        }
                        Poll::Ready(None)
                    }
                    Poll::Pending => {
                        ready!(idle.poll_expired(cx));
                        lease.take();
                        Poll::Ready(Some(Err(BodyError(BodyFailure::Idle(idle.after)))))
                    }
                }
            }
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => this.count(frame),
            Poll::Ready(Some(Err(BodyError(failure)))) => {
                if let Some(record) = this.record.as_mut() {
                    record.body_error = Some(failure.clone());
                }
            }
            Poll::Ready(None) => {
                if let Some(record) = this.record.as_mut() {
                    record.complete = true;
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ResponseKind::Full(bytes) => bytes.is_none(),
            ResponseKind::Upstream { inner, failed, .. } => {
                failed.is_none() && inner.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ResponseKind::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseKind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper does not poll a body that is already at its end (HEAD, 204, Content-Length: 0).
        if !self.is_end_stream() {
            return;
        }
        if let Some(record) = self.record.as_mut() {
            record.complete = true;
        }
        if let ResponseKind::Upstream { inner, lease, .. } = &mut self.kind
            && let Some(lease) = lease.take()
        {
            lease.give_back(inner);
        }
    }
}
