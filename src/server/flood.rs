//! HTTP/2 control-frame flood guard: a thin IO wrapper that reads the frame headers of an inbound
//! h2 connection and closes it when the client sends more PING or SETTINGS frames per second than
//! `server.limits.h2_max_control_frames_per_second`.
//!
//! Why a wrapper: the `h2` crate (0.4) has no limit for these. It answers every PING and SETTINGS,
//! and a client that floods them without reading only meets backpressure: memory stays bounded,
//! but the connection lives on until `idle_timeout` and costs a task and buffers all that time.
//! Envoy's flood protection closes such connections; this does the same. The wrapper never
//! changes a byte: it only looks at the 9-byte frame headers (length, type, flags, stream id)
//! as they pass. Only connections known to speak HTTP/2 are wrapped (prior knowledge, ALPN `h2`,
//! or the preface sniffed by the HTTP/1.1 server, whose bytes are read again through the guard):
//! an HTTP/1.1 connection never meets it.
//!
//! On a flood it tries to write `GOAWAY ENHANCE_YOUR_CALM` itself, but only when the outbound
//! byte stream sits at a frame boundary (it tracks the server's own frame headers too), so the
//! frame can never land inside one of hyper's frames; then it fails the read, hyper drops the
//! connection and the socket closes. When the outbound side is mid-frame or its buffer is full (a
//! flooding client that does not read), the connection is closed without the GOAWAY.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const HEADERS: u8 = 0x1;
/// RFC 9113 §7.
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// Control frames are counted per window of this length.
const WINDOW: Duration = Duration::from_secs(1);

/// Where a byte stream is, as far as frame boundaries go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// Matching the client preface; `n` bytes matched so far.
    Preface(usize),
    /// Not HTTP/2: nothing more to look at.
    Off,
    /// Collecting a frame header; `n` of its 9 bytes seen.
    Header([u8; FRAME_HEADER], usize),
    /// Skipping `n` payload bytes.
    Payload(usize),
}

/// One frame header as read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    kind: u8,
    stream: u32,
}

/// Walks a byte stream and reports every frame header it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameCursor(Cursor);

impl FrameCursor {
    fn inbound() -> Self {
        Self(Cursor::Preface(0))
    }

    fn outbound() -> Self {
        // The server's first bytes are already a frame (its SETTINGS).
        Self(Cursor::Header([0; FRAME_HEADER], 0))
    }

    fn at_frame_boundary(&self) -> bool {
        matches!(self.0, Cursor::Header(_, 0))
    }

    fn is_h2(&self) -> bool {
        !matches!(self.0, Cursor::Preface(_) | Cursor::Off)
    }

    /// Not HTTP/2: there is nothing more to look at (the common HTTP/1.1 connection).
    fn is_off(&self) -> bool {
        matches!(self.0, Cursor::Off)
    }

    /// Advances over `bytes`, calling `on_frame` for each completed frame header.
    fn advance(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(FrameHead)) {
        while !bytes.is_empty() {
            match &mut self.0 {
                Cursor::Off => return,
                Cursor::Preface(n) => {
                    let want = &PREFACE[*n..];
                    let take = want.len().min(bytes.len());
                    if bytes[..take] != want[..take] {
                        self.0 = Cursor::Off;
                        return;
                    }
                    *n += take;
                    bytes = &bytes[take..];
                    if *n == PREFACE.len() {
                        self.0 = Cursor::Header([0; FRAME_HEADER], 0);
                    }
                }
                Cursor::Header(head, n) => {
                    let take = (FRAME_HEADER - *n).min(bytes.len());
                    head[*n..*n + take].copy_from_slice(&bytes[..take]);
                    *n += take;
                    bytes = &bytes[take..];
                    if *n == FRAME_HEADER {
                        let length = usize::from(head[0]) << 16
                            | usize::from(head[1]) << 8
                            | usize::from(head[2]);
                        let stream =
                            u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                        on_frame(FrameHead {
                            kind: head[3],
                            stream,
                        });
                        self.0 = if length == 0 {
                            Cursor::Header([0; FRAME_HEADER], 0)
                        } else {
                            Cursor::Payload(length)
                        };
                    }
                }
                Cursor::Payload(left) => {
                    let take = (*left).min(bytes.len());
                    *left -= take;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        self.0 = Cursor::Header([0; FRAME_HEADER], 0);
                    }
                }
            }
        }
    }
}

/// Counts control frames per one-second window. Time comes from the caller, so the budget is
/// tested on a fake clock.
#[derive(Debug, Clone)]
pub struct ControlFrameBudget {
    limit: u32,
    window_start: Instant,
    count: u32,
}

impl ControlFrameBudget {
    /// A budget of `limit` control frames per second, starting at `now`.
    pub fn new(limit: u32, now: Instant) -> Self {
        Self {
            limit,
            window_start: now,
            count: 0,
        }
    }

    /// Records one control frame at `now`; false once the window holds more than the limit.
    pub fn spend(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= self.limit
    }
}

/// A client connection watched for PING/SETTINGS floods. See the module docs.
pub struct FloodGuard<S> {
    inner: S,
    inbound: FrameCursor,
    outbound: FrameCursor,
    budget: ControlFrameBudget,
    /// Highest client stream id seen in a HEADERS frame: the GOAWAY's last-stream-id.
    last_stream: u32,
    tripped: bool,
    floods: Counter,
    peer: std::net::SocketAddr,
}

impl<S> FloodGuard<S> {
    /// Wraps `inner`; `floods` counts connections closed by the guard.
    pub fn new(
        inner: S,
        max_control_frames_per_second: u32,
        floods: Counter,
        peer: std::net::SocketAddr,
    ) -> Self {
        Self {
            inner,
            inbound: FrameCursor::inbound(),
            outbound: FrameCursor::outbound(),
            budget: ControlFrameBudget::new(max_control_frames_per_second, Instant::now()),
            last_stream: 0,
            tripped: false,
            floods,
            peer,
        }
    }

    /// Looks at freshly read bytes; true if they pushed the connection over its budget.
    fn inspect(&mut self, bytes: &[u8], now: Instant) -> bool {
        let (budget, last_stream) = (&mut self.budget, &mut self.last_stream);
        let mut over = false;
        self.inbound.advance(bytes, |head| match head.kind {
            PING | SETTINGS => over |= !budget.spend(now),
            HEADERS => *last_stream = (*last_stream).max(head.stream),
            _ => {}
        });
        over
    }

    /// The GOAWAY ENHANCE_YOUR_CALM frame for this connection.
    fn goaway(&self) -> [u8; 17] {
        let mut frame = [0u8; 17];
        frame[2] = 8; // length
        frame[3] = 0x7; // GOAWAY, no flags, stream 0
        frame[9..13].copy_from_slice(&self.last_stream.to_be_bytes());
        frame[13..17].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        frame
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for FloodGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tripped {
            return Poll::Ready(Err(flood_error()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result
            && buf.filled().len() > before
            && !this.inbound.is_off()
            && this.inspect(&buf.filled()[before..], Instant::now())
        {
            this.tripped = true;
            this.floods.inc();
            tracing::warn!(peer = %this.peer, "HTTP/2 control frame flood: closing the connection");
            // The flooding bytes never reach hyper.
            buf.set_filled(before);
            if this.outbound.at_frame_boundary() {
                let frame = this.goaway();
                // One attempt, never waiting: a client that does not read gets a plain close.
                if let Poll::Ready(Ok(n)) = Pin::new(&mut this.inner).poll_write(cx, &frame)
                    && n < frame.len()
                {
                    tracing::debug!(peer = %this.peer, "GOAWAY only partly written");
                }
            }
            return Poll::Ready(Err(flood_error()));
        }
        result
    }
}

fn flood_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "HTTP/2 control frame flood",
    )
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FloodGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result
            && this.inbound.is_h2()
        {
            this.outbound.advance(&buf[..n.min(buf.len())], |_| {});
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result
            && this.inbound.is_h2()
        {
            let mut left = n;
            for slice in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(slice.len());
                this.outbound.advance(&slice[..take], |_| {});
                left -= take;
            }
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn kinds(cursor: &mut FrameCursor, bytes: &[u8]) -> Vec<u8> {
        let mut seen = Vec::new();
        cursor.advance(bytes, |h| seen.push(h.kind));
        seen
    }

    #[test]
    fn frames_are_found_across_any_split_of_the_stream() {
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]));
        stream.extend(frame(HEADERS, 1, b"abcdefgh"));
        stream.extend(frame(PING, 0, &[0; 8]));
        stream.extend(frame(0x0, 1, &[]));
        for split in 1..stream.len() {
            let mut cursor = FrameCursor::inbound();
            let mut seen = kinds(&mut cursor, &stream[..split]);
            seen.extend(kinds(&mut cursor, &stream[split..]));
            assert_eq!(seen, [SETTINGS, HEADERS, PING, 0x0], "split at {split}");
            assert!(cursor.at_frame_boundary());
        }
    }

    #[test]
    fn http1_is_not_inspected() {
        let mut cursor = FrameCursor::inbound();
        assert!(kinds(&mut cursor, b"GET / HTTP/1.1\r\n\r\n").is_empty());
        assert!(!cursor.is_h2());
        // Bytes that look like frames after an HTTP/1 start are never parsed.
        assert!(kinds(&mut cursor, &frame(PING, 0, &[0; 8])).is_empty());
    }

    #[test]
    fn outbound_boundary_tracks_partial_frames() {
        let mut cursor = FrameCursor::outbound();
        let settings = frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]);
        cursor.advance(&settings[..5], |_| {});
        assert!(!cursor.at_frame_boundary());
        cursor.advance(&settings[5..12], |_| {});
        assert!(!cursor.at_frame_boundary());
        cursor.advance(&settings[12..], |_| {});
        assert!(cursor.at_frame_boundary());
    }

    #[test]
    fn the_budget_is_per_second_on_a_fake_clock() {
        let t0 = Instant::now();
        let mut budget = ControlFrameBudget::new(3, t0);
        assert!((0..3).all(|_| budget.spend(t0)));
        assert!(!budget.spend(t0 + Duration::from_millis(999)));
        // A new window starts a second after the last one began.
        let t1 = t0 + Duration::from_secs(1);
        assert!((0..3).all(|_| budget.spend(t1)));
        assert!(!budget.spend(t1));
    }

    #[test]
    fn a_flood_trips_the_guard_and_a_few_pings_do_not() {
        let peer = "127.0.0.1:1".parse().unwrap();
        let mut guard = FloodGuard::new(Vec::<u8>::new(), 10, Counter::default(), peer);
        let now = Instant::now();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, &[]));
        bytes.extend(frame(HEADERS, 5, b"x"));
        for _ in 0..9 {
            bytes.extend(frame(PING, 0, &[0; 8]));
        }
        assert!(
            !guard.inspect(&bytes, now),
            "10 control frames are within a budget of 10"
        );
        assert!(guard.inspect(&frame(PING, 0, &[0; 8]), now));
        let goaway = guard.goaway();
        assert_eq!(&goaway[..9], &[0, 0, 8, 7, 0, 0, 0, 0, 0]);
        assert_eq!(
            u32::from_be_bytes([goaway[9], goaway[10], goaway[11], goaway[12]]),
            5
        );
        assert_eq!(
            u32::from_be_bytes([goaway[13], goaway[14], goaway[15], goaway[16]]),
            ENHANCE_YOUR_CALM
        );
    }
}
