//! Which fields of interest a client's head carries, learnt in the one pass that parses (or scans)
//! its fields.
//!
//! The edge and the forwarding code look up or remove a dozen fields that most requests do not
//! carry (`Transfer-Encoding`, `Via`, `traceparent`, `Expect`, ...). Each lookup in a `HeaderMap`
//! hashes the name, even when the answer is "absent"; knowing which names the head has at all
//! skips those lookups (about 1,000 instructions of a proxied request, callgrind). Like nginx's
//! `headers_in`, the set is filled while the fields are parsed.
//!
//! The set only ever says "may be there": a name it holds is looked up as before. Names Gantry's
//! own policies add on the way (`Gantry-*` identity headers) are never among these.

use std::ops::BitOr;

use http::header::{HeaderMap, HeaderName};

/// A set of the client fields the request path asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientFields(u16);

impl ClientFields {
    /// No field of interest.
    pub const NONE: Self = Self(0);
    /// Unknown: every lookup runs.
    pub const ALL: Self = Self(u16::MAX);
    /// `Transfer-Encoding`.
    pub const TRANSFER_ENCODING: Self = Self(1);
    /// `Content-Length`.
    pub const CONTENT_LENGTH: Self = Self(1 << 1);
    /// `Content-Type` (gRPC is told by it).
    pub const CONTENT_TYPE: Self = Self(1 << 2);
    /// `Expect`.
    pub const EXPECT: Self = Self(1 << 3);
    /// `Via`.
    pub const VIA: Self = Self(1 << 4);
    /// `Forwarded`.
    pub const FORWARDED: Self = Self(1 << 5);
    /// `traceparent`.
    pub const TRACEPARENT: Self = Self(1 << 6);
    /// `tracestate`.
    pub const TRACESTATE: Self = Self(1 << 7);
    /// `grpc-timeout`.
    pub const GRPC_TIMEOUT: Self = Self(1 << 8);

    /// A hop-by-hop field (RFC 9110 §7.6.1): `Connection`, `Keep-Alive`, `Proxy-Connection`,
    /// `Proxy-Authenticate`, `Proxy-Authorization`, `TE`, `Upgrade`.
    pub const HOP_BY_HOP: Self = Self(1 << 9);
    /// A `Gantry-*` field (only Gantry may set those upstream).
    pub const GANTRY: Self = Self(1 << 10);
    /// `X-Forwarded-For`, `-Proto`, `-Host` or `X-Real-IP`.
    pub const X_FORWARDED: Self = Self(1 << 11);
    /// The request id field: `X-Request-Id` (with another name configured, the edge marks it as
    /// maybe present itself).
    pub const REQUEST_ID: Self = Self(1 << 12);

    /// The member `name` stands for (`NONE` for names the request path does not ask about).
    /// One match on the (lowercase) name: a length switch and a compare or two per field.
    pub fn of(name: &HeaderName) -> Self {
        match name.as_str() {
            "transfer-encoding" => Self::TRANSFER_ENCODING,
            "content-length" => Self::CONTENT_LENGTH,
            "content-type" => Self::CONTENT_TYPE,
            "expect" => Self::EXPECT,
            "via" => Self::VIA,
            "forwarded" => Self::FORWARDED,
            "traceparent" => Self::TRACEPARENT,
            "tracestate" => Self::TRACESTATE,
            "grpc-timeout" => Self::GRPC_TIMEOUT,
            "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-real-ip" => {
                Self::X_FORWARDED
            }
            "x-request-id" => Self::REQUEST_ID,
            "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "upgrade" => Self::HOP_BY_HOP,
            other if other.starts_with("gantry-") => Self::GANTRY,
            _ => Self::NONE,
        }
    }

    /// The fields of interest among `headers` (for heads parsed by someone else: hyper's h2).
    pub fn scan(headers: &HeaderMap) -> Self {
        headers
            .keys()
            .fold(Self::NONE, |seen, name| seen | Self::of(name))
    }

    /// Whether a field in `fields` may be in the head (`false`: it is certainly not).
    pub fn may_have(self, fields: Self) -> bool {
        self.0 & fields.0 != 0
    }
}

impl BitOr for ClientFields {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn scan_finds_exactly_the_fields_present() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("a"));
        headers.insert("x-other", HeaderValue::from_static("b"));
        assert_eq!(ClientFields::scan(&headers), ClientFields::NONE);

        headers.insert("Traceparent", HeaderValue::from_static("c"));
        headers.insert(
            http::header::EXPECT,
            HeaderValue::from_static("100-continue"),
        );
        let seen = ClientFields::scan(&headers);
        assert!(seen.may_have(ClientFields::TRACEPARENT));
        assert!(seen.may_have(ClientFields::EXPECT));
        assert!(!seen.may_have(ClientFields::TRACESTATE));
        assert!(!seen.may_have(ClientFields::VIA | ClientFields::FORWARDED));
    }

    #[test]
    fn every_member_is_recognised_by_its_name() {
        let names = [
            ("transfer-encoding", ClientFields::TRANSFER_ENCODING),
            ("content-length", ClientFields::CONTENT_LENGTH),
            ("content-type", ClientFields::CONTENT_TYPE),
            ("expect", ClientFields::EXPECT),
            ("via", ClientFields::VIA),
            ("forwarded", ClientFields::FORWARDED),
            ("traceparent", ClientFields::TRACEPARENT),
            ("tracestate", ClientFields::TRACESTATE),
            ("grpc-timeout", ClientFields::GRPC_TIMEOUT),
            ("connection", ClientFields::HOP_BY_HOP),
            ("keep-alive", ClientFields::HOP_BY_HOP),
            ("proxy-connection", ClientFields::HOP_BY_HOP),
            ("proxy-authenticate", ClientFields::HOP_BY_HOP),
            ("proxy-authorization", ClientFields::HOP_BY_HOP),
            ("te", ClientFields::HOP_BY_HOP),
            ("upgrade", ClientFields::HOP_BY_HOP),
            ("gantry-consumer", ClientFields::GANTRY),
            ("x-forwarded-for", ClientFields::X_FORWARDED),
            ("x-forwarded-proto", ClientFields::X_FORWARDED),
            ("x-forwarded-host", ClientFields::X_FORWARDED),
            ("x-real-ip", ClientFields::X_FORWARDED),
            ("x-request-id", ClientFields::REQUEST_ID),
            ("x-gantry-consumer", ClientFields::NONE),
        ];
        for (name, member) in names {
            let parsed = HeaderName::from_bytes(name.to_ascii_uppercase().as_bytes()).unwrap();
            assert_eq!(ClientFields::of(&parsed), member, "{name}");
        }
        assert!(ClientFields::ALL.may_have(ClientFields::GRPC_TIMEOUT));
    }
}
