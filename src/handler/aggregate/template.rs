//! Path templates of aggregate calls: `/users/{user_id}/orders?since={query.since}&seg={profile.segment}`.
//!
//! Parsed once at config load; rendered per request. Every substituted value is percent-encoded
//! (all but `A-Z a-z 0-9 - . _ ~`; dots too when the value is only dots), so a value such as
//! `../admin` or `a?b#c` can never change the structure of the path or the query.

use http::HeaderName;

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path parameter of the route (`{user_id}`).
    Param(String),
    /// A query parameter of the client's request (`{query.page}`).
    Query(String),
    /// A header of the client's request (`{header.X-User-Id}`).
    Header(HeaderName),
    /// A field of an earlier call's answer (`{profile.segment}`, `{profile.items.0.id}`).
    Field {
        /// The call's name.
        call: String,
        /// The dotted path inside its JSON answer.
        path: Vec<String>,
    },
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Copied as written.
    Literal(String),
    /// Substituted and percent-encoded.
    Placeholder(Source),
}

/// A parsed call path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    /// The pieces in order.
    pub pieces: Vec<Piece>,
}

impl PathTemplate {
    /// Parses a template; the error says what is wrong in config terms.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("the path {text:?} must start with /"));
        }
        if text.contains('#') {
            return Err("a call path cannot have a #fragment".to_owned());
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(format!("unbalanced }} in {text:?}"));
            }
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find(['{', '}'])
                .filter(|&i| after.as_bytes()[i] == b'}')
                .ok_or_else(|| format!("unclosed {{ in {text:?}"))?;
            pieces.push(Piece::Placeholder(source(&after[..close])?));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_owned()));
        }
        for piece in &pieces {
            if let Piece::Literal(literal) = piece
                && literal
                    .bytes()
                    .any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii())
            {
                return Err(format!(
                    "the path {text:?} has spaces, control or non-ASCII characters: percent-encode them"
                ));
            }
        }
        Ok(Self { pieces })
    }

    /// The placeholders, in order.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Placeholder(source) => Some(source),
            Piece::Literal(_) => None,
        })
    }

    /// Renders the template; `value` resolves a placeholder or says why it cannot.
    pub fn render<E>(
        &self,
        mut value: impl FnMut(&Source) -> Result<String, E>,
    ) -> Result<String, E> {
        let mut out = String::with_capacity(64);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(literal) => out.push_str(literal),
                Piece::Placeholder(source) => encode_into(&mut out, value(source)?.as_bytes()),
            }
        }
        Ok(out)
    }
}

fn source(inner: &str) -> Result<Source, String> {
    let inner = inner.trim();
    if inner.is_empty() {
        return Err("an empty placeholder {}".to_owned());
    }
    let (head, tail) = match inner.split_once('.') {
        Some((head, tail)) => (head, Some(tail)),
        None => (inner, None),
    };
    match (head, tail) {
        (_, None) => Ok(Source::Param(inner.to_owned())),
        ("query", Some(name)) if !name.is_empty() => Ok(Source::Query(name.to_owned())),
        ("header", Some(name)) => HeaderName::from_bytes(name.as_bytes())
            .map(Source::Header)
            .map_err(|_| format!("invalid header name {name:?} in {{{inner}}}")),
        (call, Some(path)) => {
            let path: Vec<String> = path.split('.').map(str::to_owned).collect();
            if call.is_empty() || path.iter().any(String::is_empty) {
                return Err(format!("an empty name in {{{inner}}}"));
            }
            Ok(Source::Field {
                call: call.to_owned(),
                path,
            })
        }
    }
}

/// Appends `value` percent-encoded: only unreserved characters stay; a value made only of dots is
/// encoded whole, so it cannot become a `.` or `..` path segment.
pub fn encode_into(out: &mut String, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let only_dots = !value.is_empty() && value.iter().all(|&b| b == b'.');
    for &byte in value {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'~')
            || (byte == b'.' && !only_dots);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

/// Percent-decodes `text` (and `+` as space when `plus` is set, for query strings); a malformed
/// escape is kept as written. Bytes that are not UTF-8 become U+FFFD.
pub fn decode(text: &str, plus: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The first value of query parameter `name` in `query` (decoded), if present.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key, true) == name).then(|| decode(value, true))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, value: &str) -> String {
        PathTemplate::parse(template)
            .unwrap()
            .render::<()>(|_| Ok(value.to_owned()))
            .unwrap()
    }

    #[test]
    fn placeholders_name_their_source() {
        let t =
            PathTemplate::parse("/u/{id}?a={query.page}&b={header.X-User-Id}&c={profile.seg.0}")
                .unwrap();
        let sources: Vec<_> = t.sources().cloned().collect();
        assert_eq!(
            sources,
            vec![
                Source::Param("id".into()),
                Source::Query("page".into()),
                Source::Header(HeaderName::from_static("x-user-id")),
                Source::Field {
                    call: "profile".into(),
                    path: vec!["seg".into(), "0".into()]
                },
            ]
        );
    }

    #[test]
    fn bad_templates_are_rejected() {
        for bad in [
            "u/{id}",
            "/u/{id",
            "/u/id}",
            "/u/{}",
            "/u/{a.}",
            "/u/{header.bad name}",
            "/a b",
            "/a#b",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn substituted_values_cannot_change_the_structure() {
        assert_eq!(render("/users/{id}", "../admin"), "/users/..%2Fadmin");
        assert_eq!(render("/users/{id}", ".."), "/users/%2E%2E");
        assert_eq!(render("/r?s={x}", "a&b=c#d e"), "/r?s=a%26b%3Dc%23d%20e");
        assert_eq!(render("/users/{id}", "ok-1.2_~"), "/users/ok-1.2_~");
        assert_eq!(render("/u/{id}", "é"), "/u/%C3%A9");
    }

    #[test]
    fn decoding_reverses_encoding_and_keeps_bad_escapes() {
        assert_eq!(decode("a%2Fb%zz%", false), "a/b%zz%");
        assert_eq!(decode("a+b", true), "a b");
        assert_eq!(
            query_param("x=1&page=2%203&page=9", "page").as_deref(),
            Some("2 3")
        );
        assert_eq!(query_param("x=1", "page"), None);
    }
}
