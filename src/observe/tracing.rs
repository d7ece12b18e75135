//! W3C Trace Context (`traceparent` / `tracestate`): taken from the client when well formed, a new
//! trace otherwise, and sent upstream with a fresh span id for every try.
//!
//! Parsing follows the W3C Trace Context Level 1 rules strictly: lowercase hex only, no all-zero
//! ids, version `ff` refused, exactly 55 characters for version `00` (longer only for future
//! versions, whose extra fields are ignored). A malformed `traceparent` is not an error for the
//! client: the gateway starts a new trace and drops the client's `tracestate` with it (the spec
//! says a vendor state without a valid parent means nothing). An oversized `tracestate`
//! (over 512 bytes, the size the spec tells vendors they may rely on) is dropped too.
//!
//! The context is handed from the edge to the forwarding code with the request (not in its
//! extensions: the extensions map would cost an allocation per request). Nothing here allocates
//! for a request except the 55-byte header per try.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue};

/// `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The longest `tracestate` passed on.
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// A 16-byte trace id, shown as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 32];
        f.write_str(hex_into(&mut out, &self.0))
    }
}

/// Every byte's two lowercase hex digits, built at compile time.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

/// Writes `bytes` as lowercase hex into `out` (twice as long). Every request's `traceparent` is
/// written this way: one two-byte lookup per byte instead of a formatter call per byte (which
/// cost ~10 % of a proxied request's instructions).
pub(super) fn hex_write(out: &mut [u8], bytes: &[u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
}

/// [`hex_write`], returned as text (for display; the header path skips the UTF-8 check).
fn hex_into<'a>(out: &'a mut [u8], bytes: &[u8]) -> &'a str {
    hex_write(out, bytes);
    // Only ASCII hex digits were written.
    std::str::from_utf8(out).unwrap_or("")
}

/// An 8-byte span id, shown as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; 16];
        f.write_str(hex_into(&mut out, &self.0))
    }
}

/// The trace one request belongs to.
#[derive(Debug, Clone)]
pub struct TraceContext {
    /// The trace id (the client's, or new).
    pub trace_id: TraceId,
    /// The client's span, when it sent a valid `traceparent`: the parent of ours.
    pub parent: Option<SpanId>,
    /// The gateway's span for this request.
    pub span: SpanId,
    /// Whether the trace is sampled (the `01` flag): the client's decision when it sent one.
    pub sampled: bool,
    /// The client's `tracestate`, passed on unchanged when its `traceparent` was valid.
    pub tracestate: Option<HeaderValue>,
    /// Where this request's spans go: set only for sampled requests when export is on.
    pub exporter: Option<std::sync::Arc<crate::observe::otlp::SpanExporter>>,
}

impl TraceContext {
    /// The client's context when its `traceparent` is valid, else a new trace that is sampled
    /// with probability `sample_ratio` (parent-based: a client's decision is kept).
    pub fn from_headers(headers: &HeaderMap, sample_ratio: f64) -> Self {
        if let Some((trace_id, parent, sampled)) = headers
            .get(&TRACEPARENT)
            .and_then(|v| parse_traceparent(v.as_bytes()))
        {
            // Several tracestate lines are one list (RFC 9110 field combination); keep it simple and
            // pass on only a single, bounded line.
            let mut states = headers.get_all(&TRACESTATE).iter();
            let tracestate = match (states.next(), states.next()) {
                (Some(state), None) if state.len() <= MAX_TRACESTATE_BYTES => Some(state.clone()),
                _ => None,
            };
            return Self {
                trace_id,
                parent: Some(parent),
                span: SpanId(nonzero_random()),
                sampled,
                tracestate,
                exporter: None,
            };
        }
        Self::new_trace(sample_ratio)
    }

    /// A new trace, for a request without a (valid) `traceparent`: sampled with `sample_ratio`.
    pub fn new_trace(sample_ratio: f64) -> Self {
        Self {
            trace_id: TraceId(nonzero_random()),
            parent: None,
            span: SpanId(nonzero_random()),
            sampled: sample_ratio > 0.0 && super::random::unit() < sample_ratio,
            tracestate: None,
            exporter: None,
        }
    }

    /// The `traceparent` for an upstream try: this trace, a new span id (the try's).
    pub fn child_traceparent(&self) -> (SpanId, HeaderValue) {
        let (span, text) = self.child_traceparent_text();
        let value = HeaderValue::from_bytes(&text).unwrap_or_else(|_| {
            HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00")
        });
        (span, value)
    }

    /// [`Self::child_traceparent`] as its 55 bytes (for a head written as bytes).
    pub fn child_traceparent_text(&self) -> (SpanId, [u8; 55]) {
        let span = SpanId(nonzero_random());
        // "00-" trace (32) "-" span (16) "-" flags (2): 55 bytes, built in place.
        let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_write(&mut text[3..35], &self.trace_id.0);
        hex_write(&mut text[36..52], &span.0);
        if self.sampled {
            text[54] = b'1';
        }
        (span, text)
    }

    /// Replaces the client's trace headers with this trace's, for one upstream try.
    /// `may_have_tracestate`: the head may carry a `tracestate` (when not, no lookup removes it).
    pub fn inject(&self, headers: &mut HeaderMap, may_have_tracestate: bool) -> SpanId {
        let (span, value) = self.child_traceparent();
        headers.insert(TRACEPARENT, value);
        // `insert` replaces every value the client sent.
        match &self.tracestate {
            Some(state) => {
                headers.insert(TRACESTATE, state.clone());
            }
            None if may_have_tracestate => {
                headers.remove(&TRACESTATE);
            }
            None => {}
        }
        span
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything the spec says to ignore.
pub fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, bool)> {
    if value.len() < 55 {
        return None;
    }
    let version = hex_byte(value.get(0..2)?)?;
    if version == 0xff || (version == 0 && value.len() != 55) {
        return None;
    }
    // Future versions may append fields, always after a dash.
    if value.len() > 55 && value.get(55) != Some(&b'-') {
        return None;
    }
    if value.get(2) != Some(&b'-') || value.get(35) != Some(&b'-') || value.get(52) != Some(&b'-') {
        return None;
    }
    let mut trace = [0u8; 16];
    for (i, byte) in trace.iter_mut().enumerate() {
        *byte = hex_byte(value.get(3 + 2 * i..5 + 2 * i)?)?;
    }
    let mut span = [0u8; 8];
    for (i, byte) in span.iter_mut().enumerate() {
        *byte = hex_byte(value.get(36 + 2 * i..38 + 2 * i)?)?;
    }
    let flags = hex_byte(value.get(53..55)?)?;
    if trace == [0; 16] || span == [0; 8] {
        return None;
    }
    Some((TraceId(trace), SpanId(span), flags & 1 == 1))
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    match pair {
        [hi, lo] => Some(digit(*hi)? << 4 | digit(*lo)?),
        _ => None,
    }
}

/// Random bytes that are not all zero (an all-zero id is invalid).
fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = super::random::bytes();
        if bytes.iter().any(|b| *b != 0) {
            return bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn every_byte_is_written_as_its_two_lowercase_hex_digits() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut out = vec![0; 512];
        hex_write(&mut out, &bytes);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn a_valid_traceparent_is_parsed() {
        let (trace, span, sampled) = parse_traceparent(VALID.as_bytes()).unwrap();
        assert_eq!(trace.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
        assert!(sampled);
    }

    #[test]
    fn a_child_traceparent_round_trips_with_the_sampled_flag() {
        for sampled in [true, false] {
            let mut ctx = TraceContext::from_headers(&HeaderMap::new(), 0.0);
            ctx.sampled = sampled;
            let (span, value) = ctx.child_traceparent();
            let (trace, parent, flag) = parse_traceparent(value.as_bytes()).unwrap();
            assert_eq!((trace, parent, flag), (ctx.trace_id, span, sampled));
            let text = value.to_str().unwrap();
            assert_eq!(
                text,
                format!("00-{}-{}-0{}", ctx.trace_id, span, u8::from(sampled))
            );
        }
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad}");
        }
        // A future version may carry more fields.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-beef")
                .is_some()
        );
    }

    #[test]
    fn the_client_trace_is_continued_with_new_span_ids() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=abc"));
        let ctx = TraceContext::from_headers(&headers, 0.0);
        assert_eq!(ctx.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent.unwrap().to_string(), "00f067aa0ba902b7");
        assert!(ctx.sampled, "the client's decision wins over the ratio");
        let mut upstream = HeaderMap::new();
        let span = ctx.inject(&mut upstream, true);
        let sent = upstream[&TRACEPARENT].to_str().unwrap();
        assert_eq!(
            sent,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span}-01")
        );
        assert_ne!(span.to_string(), "00f067aa0ba902b7");
        assert_eq!(upstream[&TRACESTATE], "vendor=abc");
    }

    #[test]
    fn a_bad_parent_starts_a_new_trace_and_drops_the_state() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("garbage"));
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=abc"));
        let ctx = TraceContext::from_headers(&headers, 1.0);
        assert!(ctx.parent.is_none());
        assert!(ctx.sampled, "ratio 1 samples every new trace");
        assert!(ctx.tracestate.is_none());
        let never = TraceContext::from_headers(&HeaderMap::new(), 0.0);
        assert!(!never.sampled);
    }

    #[test]
    fn an_oversized_tracestate_is_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        let big = format!("v={}", "a".repeat(MAX_TRACESTATE_BYTES));
        headers.insert(TRACESTATE, HeaderValue::from_str(&big).unwrap());
        assert!(
            TraceContext::from_headers(&headers, 0.0)
                .tracestate
                .is_none()
        );
    }
}
