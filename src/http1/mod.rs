//! HTTP/1.1 wire pieces shared by both sides of the proxy: the client-facing server
//! (`crate::server::h1`) and the upstream client (`crate::upstream::h1`).
//!
//! Both read message bodies the same way (RFC 9112 §6–7), strictly: chunk sizes are hex digits
//! with a bounded line, each chunk ends with CRLF, a trailer section is bounded.

pub mod decode;
pub mod raw;

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
