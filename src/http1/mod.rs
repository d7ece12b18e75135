//! HTTP/1.1 wire pieces shared by both sides of the proxy: the client-facing server
//! (`crate::server::h1`) and the upstream client (`crate::upstream::h1`).
//!
//! Both read message bodies the same way (RFC 9112 §6–7), strictly: chunk sizes are hex digits
//! with a bounded line, each chunk ends with CRLF, a trailer section is bounded.

pub mod decode;
pub mod raw;

use bytes::BytesMut;

/// Moves an empty read buffer back to the start of its allocation, when nothing else still
/// holds a part of it (a head or body split off earlier and since dropped).
///
/// Why: a `BytesMut` read buffer only rewinds once its free room runs low, so every message on a
/// keep-alive connection lands a little further along it: with small messages each one touches
/// fresh cache lines, and the whole buffer of every connection cycles through the cache. Reading
/// each message at the start keeps a connection's hot bytes to a line or two. It never copies
/// (the buffer is empty) nor allocates; a shared buffer is left as it is.
pub fn rewind_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() {
        // Asking for one byte more than the visible room makes `try_reclaim` take the whole
        // allocation back when it is unique; it returns false, and changes nothing, otherwise.
        let _ = buf.try_reclaim(buf.capacity() + 1);
    }
}

/// `n` in decimal digits, written into `digits` (no formatting machinery: heads are encoded for
/// most messages).
pub fn decimal(n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        // `rest % 10` is below 10: the cast cannot truncate.
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &digits[at..]
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    #[test]
    fn an_empty_unshared_buffer_is_read_into_from_its_start() {
        let mut buf = BytesMut::with_capacity(64);
        let start = buf.as_ptr();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let head = buf.split_to(buf.len()).freeze();
        assert_ne!(buf.as_ptr(), start);
        // Still shared with `head`: left alone.
        super::rewind_if_empty(&mut buf);
        assert_ne!(buf.as_ptr(), start);
        drop(head);
        super::rewind_if_empty(&mut buf);
        assert_eq!(buf.as_ptr(), start);
        assert_eq!(buf.capacity(), 64);
        // Not empty: left alone (no copy).
        buf.extend_from_slice(b"ab");
        let _ = buf.split_to(1);
        let at = buf.as_ptr();
        super::rewind_if_empty(&mut buf);
        assert_eq!(buf.as_ptr(), at);
        assert_eq!(&buf[..], b"b");
    }

    #[test]
    fn decimals_are_written_whole() {
        for value in [0, 1, 9, 10, 15_000, 99_999_999, u64::MAX] {
            let mut digits = [0; 20];
            assert_eq!(
                super::decimal(value, &mut digits),
                value.to_string().as_bytes()
            );
        }
    }
}
