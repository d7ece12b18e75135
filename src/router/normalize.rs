//! Request path normalisation.
//!
//! Routing decisions (and every policy keyed by path) must see one canonical spelling of a path,
//! otherwise `/admin`, `/%61dmin`, `//admin` and `/x/../admin` would be four different routes to a
//! route table but one resource to the upstream. [`normalize_path`] produces that spelling:
//!
//! - the path must start with `/` ([`PathError::NotAbsolute`]);
//! - percent escapes of *unreserved* characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) are decoded,
//!   so `%41` becomes `A` and `%2e%2e` becomes `..` (and is then resolved like any `..`);
//! - every other escape is kept, with its hex digits uppercased (`%2f` → `%2F`). `%2F` in particular
//!   stays encoded: it is data inside a segment, never a separator;
//! - a malformed escape (`%zz`, a truncated `%4`) is [`PathError::BadEscape`];
//! - raw control characters (U+0000–U+001F, U+007F) and an encoded NUL (`%00`) are
//!   [`PathError::InvalidChar`]: no legitimate API path carries them, and a NUL truncates strings in
//!   C upstreams. Other encoded control characters stay encoded and are therefore harmless;
//! - runs of `/` are merged (`//a///b` → `/a/b`);
//! - `.` segments are dropped and `..` segments remove the previous segment (RFC 3986 §5.2.4); a `..`
//!   that would climb above the root is [`PathError::EscapesRoot`] rather than being clamped, since
//!   only a hostile or broken client sends one;
//! - a trailing slash is preserved, and a trailing `.` or `..` segment leaves one (`/a/b/..` → `/a/`);
//! - a backslash is an ordinary character (it is not a separator in URLs, and it is passed on
//!   unchanged), as is any non-ASCII character (it is neither decoded nor encoded).
//!
//! The common case is a path that is already normal; it is detected with one scan and returned as
//! [`Cow::Borrowed`], so the hot path does not allocate.

use std::borrow::Cow;
use std::fmt;

/// Why a request path was rejected by [`normalize_path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// A `%` is not followed by two hex digits.
    BadEscape,
    /// A `..` segment would climb above the root.
    EscapesRoot,
    /// The path contains a control character or an encoded NUL.
    InvalidChar,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAbsolute => "path does not start with '/'",
            Self::BadEscape => "path contains an invalid percent escape",
            Self::EscapesRoot => "path climbs above the root with '..'",
            Self::InvalidChar => "path contains a control character",
        })
    }
}

impl std::error::Error for PathError {}

/// Normalises the path part of a request target (no query); see the module docs for the rules.
///
/// Returns the input unchanged (borrowed) when it is already normal.
///
/// # Errors
/// A [`PathError`] when the path is not absolute, has a malformed escape or a control character,
/// or climbs above the root.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(raw.as_bytes())? {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_slow(raw).map(Cow::Owned)
}

/// True for the characters RFC 3986 calls unreserved: decoding them never changes meaning.
pub(super) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the escape starting at `bytes[i]` (which is `%`).
fn escape_at(bytes: &[u8], i: usize) -> Result<(u8, u8, u8), PathError> {
    let hi = *bytes.get(i + 1).ok_or(PathError::BadEscape)?;
    let lo = *bytes.get(i + 2).ok_or(PathError::BadEscape)?;
    let value = hex_value(hi).ok_or(PathError::BadEscape)? << 4
        | hex_value(lo).ok_or(PathError::BadEscape)?;
    if value == 0 {
        return Err(PathError::InvalidChar);
    }
    Ok((value, hi, lo))
}

/// One validating scan: `Ok(true)` when the path is already in normal form.
///
/// Must agree exactly with [`normalize_slow`]: it returns `true` iff the slow path would return the
/// input unchanged (a unit test checks this on generated paths).
fn is_normal(bytes: &[u8]) -> Result<bool, PathError> {
    let mut normal = true;
    let mut seg_start = 1;
    let mut i = 1;
    let n = bytes.len();
    while i <= n {
        let b = bytes.get(i).copied();
        match b {
            None | Some(b'/') => {
                let seg = bytes.get(seg_start..i).unwrap_or_default();
                if (seg.is_empty() && b.is_some()) || seg == b"." || seg == b".." {
                    normal = false;
                }
                seg_start = i + 1;
                i += 1;
            }
            Some(b'%') => {
                let (value, hi, lo) = escape_at(bytes, i)?;
                if is_unreserved(value) || hi.is_ascii_lowercase() || lo.is_ascii_lowercase() {
                    normal = false;
                }
                i += 3;
            }
            Some(c) if is_control(c) => return Err(PathError::InvalidChar),
            Some(_) => i += 1,
        }
    }
    Ok(normal)
}

/// Appends `segment` to `out` with escapes normalised (unreserved decoded, hex uppercased).
///
/// `segment` contains no `/`. Shared with the route table, which normalises the literal segments
/// of configured paths the same way requests are normalised.
pub(super) fn normalize_segment_into(segment: &str, out: &mut String) -> Result<(), PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = segment.as_bytes();
    let mut run_start = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            out.push_str(segment.get(run_start..i).unwrap_or_default());
            let (value, _, _) = escape_at(bytes, i)?;
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push(char::from(HEX[usize::from(value >> 4)]));
                out.push(char::from(HEX[usize::from(value & 0x0f)]));
            }
            i += 3;
            run_start = i;
        } else if is_control(b) {
            return Err(PathError::InvalidChar);
        } else {
            i += 1;
        }
    }
    out.push_str(segment.get(run_start..).unwrap_or_default());
    Ok(())
}

fn normalize_slow(raw: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut segment = String::new();
    let mut trailing_slash = false;
    let mut parts = raw.get(1..).unwrap_or_default().split('/').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        segment.clear();
        normalize_segment_into(part, &mut segment)?;
        match segment.as_str() {
            "" | "." => trailing_slash = last,
            ".." => {
                let parent = out.rfind('/').ok_or(PathError::EscapesRoot)?;
                out.truncate(parent);
                trailing_slash = last;
            }
            s => {
                out.push('/');
                out.push_str(s);
                trailing_slash = false;
            }
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, PathError> {
        normalize_path(raw).map(Cow::into_owned)
    }

    fn assert_borrowed(raw: &str) {
        match normalize_path(raw) {
            Ok(Cow::Borrowed(s)) => assert_eq!(s, raw),
            other => panic!("{raw:?} should be borrowed unchanged, got {other:?}"),
        }
    }

    fn assert_owned(raw: &str, expected: &str) {
        match normalize_path(raw) {
            Ok(Cow::Owned(s)) => assert_eq!(s, expected, "input {raw:?}"),
            other => panic!("{raw:?} should become {expected:?}, got {other:?}"),
        }
    }

    #[test]
    fn already_normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/a/b/",
            "/users/7",
            "/a%2Fb",
            "/%C3%A9t%C3%A9",
            "/caf\u{e9}",
            "/a\\b",
            "/a/.b/..c/...",
            "/a.b/c..d",
            "/with space",
            "/%25",
        ] {
            assert_borrowed(p);
        }
    }

    #[test]
    fn rejects_relative_and_empty() {
        assert_eq!(norm(""), Err(PathError::NotAbsolute));
        assert_eq!(norm("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(norm("*"), Err(PathError::NotAbsolute));
        assert_eq!(norm("http://x/a"), Err(PathError::NotAbsolute));
        assert_eq!(norm("%2Fa"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn resolves_dot_segments() {
        assert_owned("/a/../b", "/b");
        assert_owned("/a/./b", "/a/b");
        assert_owned("/a/b/..", "/a/");
        assert_owned("/a/b/.", "/a/b/");
        assert_owned("/a/..", "/");
        assert_owned("/.", "/");
        assert_owned("/./", "/");
        assert_owned("/a/b/../../c", "/c");
        assert_owned("/a/b/../c/./d/", "/a/c/d/");
    }

    #[test]
    fn encoded_dots_are_decoded_then_resolved() {
        assert_owned("/a/%2e%2e/x", "/x");
        assert_owned("/a/.%2E/x", "/x");
        assert_owned("/a/%2e./x", "/x");
    }

    #[test]
    fn encoded_dot_dot_at_root_escapes() {
        // `/%2e%2e/x` decodes to `/../x`, which climbs above the root.
        assert_eq!(norm("/%2e%2e/x"), Err(PathError::EscapesRoot));
        assert_eq!(norm("/%2E%2E"), Err(PathError::EscapesRoot));
        assert_eq!(norm("/.%2e/x"), Err(PathError::EscapesRoot));
    }

    #[test]
    fn mixed_case_encoded_dots() {
        assert_owned("/a/%2E%2E/%2e/b", "/b");
        assert_owned("/a/b/%2e%2E/c", "/a/c");
        assert_owned("/a/%2e/b", "/a/b");
    }

    #[test]
    fn climbing_above_root_is_an_error() {
        assert_eq!(norm("/.."), Err(PathError::EscapesRoot));
        assert_eq!(norm("/../"), Err(PathError::EscapesRoot));
        assert_eq!(norm("/../a"), Err(PathError::EscapesRoot));
        assert_eq!(norm("/a/../.."), Err(PathError::EscapesRoot));
        assert_eq!(norm("/a/b/../../../c"), Err(PathError::EscapesRoot));
        assert_eq!(norm("//.."), Err(PathError::EscapesRoot));
    }

    #[test]
    fn merges_slashes() {
        assert_owned("//a///b", "/a/b");
        assert_owned("//", "/");
        assert_owned("///", "/");
        assert_owned("/a//", "/a/");
        assert_owned("/a//b//", "/a/b/");
    }

    #[test]
    fn encoded_slash_is_not_a_separator() {
        assert_owned("/a/..%2f..", "/a/..%2F..");
        assert_borrowed("/a/..%2F..");
        assert_owned("/a%2fb/../c", "/c");
        assert_owned("/%2f", "/%2F");
    }

    #[test]
    fn decodes_only_unreserved() {
        assert_owned("/%41%42c", "/ABc");
        assert_owned("/%7euser", "/~user");
        assert_owned("/%2D%2e%5F%7E%30", "/-._~0");
        assert_owned("/a%3fb", "/a%3Fb");
        assert_borrowed("/a%20b");
        assert_owned("/%c3%a9", "/%C3%A9");
        assert_borrowed("/%3F%23%5B%5D%40%21");
    }

    #[test]
    fn bad_escapes() {
        for p in [
            "/%zz",
            "/%4",
            "/%",
            "/a%",
            "/a%g0",
            "/%0g",
            "/%%41",
            "/%\u{e9}a",
        ] {
            assert_eq!(norm(p), Err(PathError::BadEscape), "{p:?}");
        }
    }

    #[test]
    fn control_chars_and_nul() {
        for p in [
            "/a\0b", "/a\nb", "/a\rb", "/\t", "/\u{7f}", "/%00", "/a/%00/b",
        ] {
            assert_eq!(norm(p), Err(PathError::InvalidChar), "{p:?}");
        }
        // Other encoded control characters stay encoded (and so cannot split anything).
        assert_borrowed("/a%0Ab");
        assert_owned("/a%0db", "/a%0Db");
    }

    #[test]
    fn errors_in_a_path_that_needs_rewriting_are_still_found() {
        assert_eq!(norm("//a/%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/./a\0"), Err(PathError::InvalidChar));
    }

    #[test]
    fn backslash_is_literal() {
        assert_borrowed("/a\\..\\b");
        assert_owned("/a/\\/../b", "/a/b");
        assert_owned("/%5c", "/%5C");
    }

    #[test]
    fn unicode_is_kept() {
        assert_borrowed("/日本/語");
        assert_owned("/日本/../語/", "/語/");
        assert_owned("/ü//ö", "/ü/ö");
    }

    #[test]
    fn very_long_paths() {
        let long = format!("/{}", "a/".repeat(50_000));
        assert_borrowed(&long);
        let dotted = format!("{}{}", "/a".repeat(50_000), "/..".repeat(50_000));
        assert_eq!(norm(&dotted), Ok("/".to_owned()));
        let escaping = format!("{}{}", "/a".repeat(1000), "/..".repeat(1001));
        assert_eq!(norm(&escaping), Err(PathError::EscapesRoot));
        let slashes = "/".repeat(100_000);
        assert_eq!(norm(&slashes), Ok("/".to_owned()));
    }

    /// The fast check and the slow rewrite must agree: borrowed iff unchanged.
    #[test]
    fn fast_and_slow_paths_agree_on_generated_paths() {
        const TOKENS: &[&str] = &[
            "/", "a", "B", ".", "..", "%2e", "%2E", "%2f", "%2F", "%41", "%7e", "%c3", "%C3", "~",
            "\\", "\u{e9}", "%25", "-", "%zz", "%",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut path = String::from("/");
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 8) as usize;
            let mut s = seed;
            for _ in 0..len {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                path.push_str(TOKENS[((s >> 33) as usize) % TOKENS.len()]);
            }
            let fast = is_normal(path.as_bytes());
            let slow = normalize_slow(&path);
            match (fast, slow) {
                (Ok(true), Ok(s)) => assert_eq!(s, path, "fast says normal"),
                (Ok(false), Ok(s)) => {
                    assert_ne!(s, path, "fast says not normal");
                    // Normalising is idempotent.
                    assert_eq!(normalize_path(&s), Ok(Cow::Borrowed(s.as_str())));
                }
                (Ok(false), Err(_)) => {}
                // Both reject; which error is reported first may differ.
                (Err(_), Err(_)) => {}
                (f, s) => panic!("disagree on {path:?}: {f:?} vs {s:?}"),
            }
        }
    }
}
