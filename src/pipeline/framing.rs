//! Request framing and path checks hyper leaves to us.
//!
//! hyper's HTTP/1 parser already rejects a `Transfer-Encoding` whose last coding is not `chunked`.
//! It accepts any list that *ends* in `chunked` (`identity, chunked`, `cow` and `chunked` on two
//! lines, `chunked, chunked`) and decodes the body once. Other parsers read such lists
//! differently (ignore the unknown coding, decode twice, fall back to Content-Length), which is
//! the TE.TE smuggling family. Gantry accepts exactly one `chunked` and nothing else.

use http::header::{self, HeaderMap};

use crate::config::file_hostile::FileEscapedSlashes;
use crate::error::GatewayError;

/// 400 `escaped-slash` for a normalised path with `%2F` or `%5C` when the policy is `reject`.
/// The normaliser uppercases escape hex, so two needles cover every spelling.
pub fn check_escaped_slashes(path: &str, policy: FileEscapedSlashes) -> Result<(), GatewayError> {
    if policy == FileEscapedSlashes::Reject && (path.contains("%2F") || path.contains("%5C")) {
        return Err(GatewayError::EscapedSlash);
    }
    Ok(())
}

/// 400 `invalid-transfer-encoding` unless every `Transfer-Encoding` line, taken together, is
/// exactly one `chunked` (any case, surrounding whitespace allowed). No header: nothing to do.
pub fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), GatewayError> {
    let mut lines = headers.get_all(header::TRANSFER_ENCODING).iter();
    let Some(first) = lines.next() else {
        return Ok(());
    };
    let single = lines.next().is_none()
        && first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
    if single {
        Ok(())
    } else {
        Err(GatewayError::BadTransferEncoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn te(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::TRANSFER_ENCODING, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn escaped_slashes_are_refused_only_when_asked() {
        for path in ["/a%2Fb", "/a%5Cb", "/%2F"] {
            assert!(check_escaped_slashes(path, FileEscapedSlashes::Keep).is_ok());
            let err = check_escaped_slashes(path, FileEscapedSlashes::Reject).unwrap_err();
            assert_eq!(err.slug(), "escaped-slash");
        }
        assert!(check_escaped_slashes("/a/b%20c", FileEscapedSlashes::Reject).is_ok());
    }

    #[test]
    fn only_a_single_chunked_passes() {
        assert!(check_transfer_encoding(&te(&[])).is_ok());
        assert!(check_transfer_encoding(&te(&["chunked"])).is_ok());
        assert!(check_transfer_encoding(&te(&["CHUNKED "])).is_ok());
        for bad in [
            &["identity, chunked"][..],
            &["chunked, chunked"],
            &["chunked", "chunked"],
            &["cow", "chunked"],
            &["gzip, chunked"],
            &[""],
        ] {
            let err = check_transfer_encoding(&te(bad)).unwrap_err();
            assert_eq!(err.slug(), "invalid-transfer-encoding", "{bad:?}");
            assert!(err.closes_connection());
        }
    }
}
