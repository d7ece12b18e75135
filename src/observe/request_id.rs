//! The request id: the client's when well formed, else a new UUIDv7.
//!
//! A new id stays the 36 bytes of its text until something needs it as a `HeaderValue` (an HTTP/2
//! head, an aggregate's calls, a map that must hold it). On the common path it is only written
//! into the HTTP/1.1 heads as bytes, so no per-request check of its characters and no allocation
//! are spent on it (they cost ~1 % of a proxied request's instructions, callgrind).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The longest client id taken as is.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// A request's id.
#[derive(Debug, Clone)]
pub enum RequestId {
    /// Made by Gantry: a lowercase, hyphenated UUIDv7 (36 ASCII bytes).
    Generated([u8; 36]),
    /// The client's own, checked to be 1–128 of `[A-Za-z0-9._-]`.
    Client(HeaderValue),
}

impl RequestId {
    /// A new UUIDv7: this millisecond, then 74 random bits from the thread's generator
    /// (`Uuid::now_v7` would ask the OS for randomness on every call: a syscall per request).
    pub fn generate() -> Self {
        Self::generate_at(SystemTime::now())
    }

    /// [`Self::generate`], stamped with `now` (a time the caller already read).
    pub fn generate_at(now: SystemTime) -> Self {
        let millis = now.duration_since(UNIX_EPOCH).map_or(0, |d| {
            d.as_secs()
                .saturating_mul(1000)
                .saturating_add(u64::from(d.subsec_millis()))
        });
        let random: [u8; 10] = super::random::bytes();
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        let bytes = id.as_bytes();
        // 8-4-4-4-12 hex digits.
        let mut text = [b'-'; 36];
        super::tracing::hex_write(&mut text[0..8], &bytes[0..4]);
        super::tracing::hex_write(&mut text[9..13], &bytes[4..6]);
        super::tracing::hex_write(&mut text[14..18], &bytes[6..8]);
        super::tracing::hex_write(&mut text[19..23], &bytes[8..10]);
        super::tracing::hex_write(&mut text[24..36], &bytes[10..16]);
        Self::Generated(text)
    }

    /// The client's id under `name` when well formed, else a new one stamped `now`.
    pub fn from_request(headers: &HeaderMap, name: &HeaderName, now: SystemTime) -> Self {
        match headers.get(name) {
            Some(value) if is_well_formed(value.as_bytes()) => Self::Client(value.clone()),
            _ => Self::generate_at(now),
        }
    }

    /// The id's bytes, as written into a head.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Generated(text) => text,
            Self::Client(value) => value.as_bytes(),
        }
    }

    /// The id as text (for logs and problem documents).
    pub fn as_str(&self) -> &str {
        // Both kinds hold ASCII only (see the variants).
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The id as a field value, for a head encoded from its map.
    pub fn to_header_value(&self) -> HeaderValue {
        match self {
            Self::Generated(text) => HeaderValue::from_bytes(text)
                .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
            Self::Client(value) => value.clone(),
        }
    }

    /// [`Self::to_header_value`], without a copy of the client's.
    pub fn into_header_value(self) -> HeaderValue {
        match self {
            Self::Client(value) => value,
            generated @ Self::Generated(_) => generated.to_header_value(),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 1–128 of `[A-Za-z0-9._-]`: safe in a log line, a JSON string and any head.
fn is_well_formed(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_CLIENT_ID_BYTES
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuid_v7_of_now_in_their_canonical_text() {
        let before = SystemTime::now();
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a.as_bytes(), b.as_bytes());
        for id in [a, b] {
            let text = id.as_str();
            let parsed = uuid::Uuid::parse_str(text).unwrap();
            assert_eq!(
                parsed.hyphenated().to_string(),
                text,
                "lowercase, hyphenated"
            );
            assert_eq!(parsed.get_version_num(), 7);
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = parsed.get_timestamp().unwrap().to_unix();
            let stamped = UNIX_EPOCH + std::time::Duration::new(secs, nanos);
            let early = before - std::time::Duration::from_millis(1);
            assert!(stamped >= early && stamped <= SystemTime::now(), "{text}");
            assert_eq!(id.to_header_value().as_bytes(), text.as_bytes());
        }
    }

    #[test]
    fn a_well_formed_client_id_is_kept_and_anything_else_replaced() {
        let name = HeaderName::from_static("x-request-id");
        let with = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), HeaderValue::from_bytes(value).unwrap());
            RequestId::from_request(&headers, &name, SystemTime::now())
        };
        let kept = with(b"client-1.a_B");
        assert!(matches!(kept, RequestId::Client(_)));
        assert_eq!(kept.as_str(), "client-1.a_B");
        assert_eq!(kept.into_header_value(), "client-1.a_B");
        let longest = vec![b'a'; MAX_CLIENT_ID_BYTES];
        assert_eq!(with(&longest).as_bytes(), &longest[..]);
        for bad in [
            &b""[..],
            b"has space",
            b"quote\"",
            b"semi;colon",
            b"\xff\xfe",
            &[b'a'; MAX_CLIENT_ID_BYTES + 1],
        ] {
            let replaced = with(bad);
            assert!(matches!(replaced, RequestId::Generated(_)), "{bad:?}");
            assert!(uuid::Uuid::parse_str(replaced.as_str()).is_ok());
        }
        let absent = RequestId::from_request(&HeaderMap::new(), &name, SystemTime::now());
        assert!(matches!(absent, RequestId::Generated(_)));
    }
}
