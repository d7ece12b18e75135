//! Field lines of an upstream response head passed to an HTTP/1.1 client as they came.
//!
//! Building a `HeaderMap` of an upstream's head and encoding it again costs a value check, a
//! hash and a map insert per field, then a walk of the map. When nothing on the way looks at the
//! response's fields (no policy on the route, an HTTP/1.1 client, see `pipeline::edge`), the
//! upstream client keeps the head's bytes instead, with the ranges of the lines to pass on, and
//! Gantry's server copies those lines after its status line. Only a head with nothing to decide
//! is passed this way (no hop-by-hop field left in it, no `Gantry-*` field, no request id field,
//! a plain status); anything else takes the map as before.
//!
//! The bytes were checked by httparse, which admits in names and values exactly what `HeaderName`
//! and `HeaderValue` do; every line is written back ending in CRLF.

use bytes::Bytes;
use http::HeaderValue;

/// At most this many runs of contiguous lines; a head cut into more takes the map.
pub const MAX_RUNS: usize = 4;

/// The lines of a response head to pass on, and what the server must know about them.
#[derive(Debug)]
pub struct RawFields {
    /// The whole head, as read.
    head: Bytes,
    /// Byte ranges in `head` of runs of whole lines, each without its last line's CRLF.
    runs: [(u32, u32); MAX_RUNS],
    run_count: u8,
    /// The body length the `Content-Length` field declares (the lines keep the field).
    content_length: Option<u64>,
    /// The lines hold a `Date` field.
    has_date: bool,
    /// Gantry's `Via` entry, written after the lines (as the map path appends it).
    via: Option<HeaderValue>,
}

/// Collects the runs of lines while the head's fields are walked in order.
#[derive(Default)]
pub struct RawFieldsBuilder {
    runs: [(u32, u32); MAX_RUNS],
    run_count: usize,
}

impl RawFieldsBuilder {
    /// Adds the line spanning `start..end` of `head` (its name's first byte to its value's last).
    /// A line right after the previous one (only a CRLF between them) extends the current run.
    /// `None`: too many runs, or a range that is not inside the head; the caller takes the map.
    pub fn line(mut self, head: &[u8], start: usize, end: usize) -> Option<Self> {
        if start >= end || end > head.len() {
            return None;
        }
        let start = u32::try_from(start).ok()?;
        let end = u32::try_from(end).ok()?;
        if let Some(last) = self.run_count.checked_sub(1).map(|i| &mut self.runs[i])
            && head.get(last.1 as usize..start as usize) == Some(b"\r\n".as_slice())
        {
            last.1 = end;
            return Some(self);
        }
        if self.run_count == MAX_RUNS {
            return None;
        }
        self.runs[self.run_count] = (start, end);
        self.run_count += 1;
        Some(self)
    }

    /// The lines added, over `head`; `content_length` and `has_date` say what the lines hold.
    pub fn finish(self, head: Bytes, content_length: Option<u64>, has_date: bool) -> RawFields {
        RawFields {
            head,
            runs: self.runs,
            // At most `MAX_RUNS` (4).
            run_count: self.run_count as u8,
            content_length,
            has_date,
            via: None,
        }
    }
}

impl RawFields {
    /// The length the lines' `Content-Length` field declares.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether the lines hold a `Date` field.
    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// Sets the `Via` entry written after the lines.
    pub fn set_via(&mut self, via: HeaderValue) {
        self.via = Some(via);
    }

    /// Writes the lines, each ending in CRLF, then the `Via` field.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        for &(start, end) in &self.runs[..usize::from(self.run_count)] {
            // The builder checked every range against the head: `get` never misses.
            if let Some(line) = self.head.get(start as usize..end as usize) {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(via) = &self.via {
            out.extend_from_slice(b"via: ");
            out.extend_from_slice(via.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(head: &[u8], ranges: &[(usize, usize)]) -> Option<RawFields> {
        let mut builder = RawFieldsBuilder::default();
        for &(start, end) in ranges {
            builder = builder.line(head, start, end)?;
        }
        Some(builder.finish(Bytes::copy_from_slice(head), None, false))
    }

    fn written(raw: &RawFields) -> String {
        let mut out = Vec::new();
        raw.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn contiguous_lines_form_one_run_and_skipped_ones_are_left_out() {
        let head = b"HTTP/1.1 200 OK\r\nA: 1\r\nConnection: x\r\nB: 2\r\nC: 3\r\n\r\n";
        let text = std::str::from_utf8(head).unwrap();
        let at = |s: &str| text.find(s).unwrap();
        let a = (at("A:"), at("A:") + 4);
        let b = (at("B:"), at("B:") + 4);
        let c = (at("C:"), at("C:") + 4);
        let mut raw = lines(head, &[a, b, c]).unwrap();
        assert_eq!(raw.run_count, 2);
        raw.set_via(HeaderValue::from_static("1.1 gantry"));
        assert_eq!(written(&raw), "A: 1\r\nB: 2\r\nC: 3\r\nvia: 1.1 gantry\r\n");
    }

    #[test]
    fn bare_line_feeds_and_trailing_spaces_are_not_passed_on() {
        let head = b"HTTP/1.1 200 OK\nA: 1  \nB: 2\n\n";
        let text = std::str::from_utf8(head).unwrap();
        let at = |s: &str| text.find(s).unwrap();
        let raw = lines(head, &[(at("A:"), at("A:") + 4), (at("B:"), at("B:") + 4)]).unwrap();
        assert_eq!(written(&raw), "A: 1\r\nB: 2\r\n");
    }

    #[test]
    fn too_many_runs_or_ranges_outside_the_head_take_the_map() {
        let head = b"HTTP/1.1 200 OK\r\nA: 1\r\nx: 0\r\nB: 2\r\nx: 0\r\nC: 3\r\nx: 0\r\nD: 4\r\nx: 0\r\nE: 5\r\n\r\n";
        let text = std::str::from_utf8(head).unwrap();
        let at = |s: &str| text.find(s).unwrap();
        let ranges: Vec<_> = ["A:", "B:", "C:", "D:", "E:"]
            .iter()
            .map(|name| (at(name), at(name) + 4))
            .collect();
        assert!(lines(head, &ranges[..4]).is_some());
        assert!(lines(head, &ranges).is_none());
        assert!(lines(head, &[(10, head.len() + 1)]).is_none());
        assert!(lines(head, &[(10, 10)]).is_none());
    }
}
