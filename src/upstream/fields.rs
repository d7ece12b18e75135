//! Fields Gantry adds to a request on its way upstream, kept beside the head instead of in its
//! `HeaderMap`.
//!
//! Why: every insert into a `HeaderMap` hashes the name, searches the map and may grow it, and the
//! map is then walked again to encode the head. An HTTP/1.1 upstream connection takes these
//! fields as bytes, written straight after the head's own ([`OutgoingFields::write_h1`]); an
//! HTTP/2 one (hyper encodes from the map) gets them added to the map just before it is sent
//! ([`OutgoingFields::add_to`]). The edge only leaves a field here when the client's head carries
//! no field of that name, so writing it after the head's own fields sends exactly what inserting
//! it would have; otherwise the field goes into the map as before.

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::observe::request_id::RequestId;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The forwarding fields for a client that sent none and is not a trusted proxy:
/// `X-Forwarded-For` and `X-Real-IP` (the peer), `X-Forwarded-Proto`, `X-Forwarded-Host`.
#[derive(Debug, Clone)]
pub struct Forwarded<'a> {
    /// The peer's IP, rendered once per connection.
    pub peer_ip: &'a HeaderValue,
    /// `http` or `https`.
    pub proto: &'static str,
    /// `X-Forwarded-For`, `X-Real-IP` and `X-Forwarded-Proto` as HTTP/1.1 field lines (CRLF
    /// after each), rendered once per connection from the two above.
    pub lines: &'a [u8],
    /// The host the client addressed, when it named one.
    pub host: Option<HeaderValue>,
}

/// The fields the edge adds to every try of a request (see the module doc for when a field is
/// left here rather than put in the map).
#[derive(Debug, Clone, Default)]
pub struct AddedFields<'a> {
    /// `X-Forwarded-*` and `X-Real-IP`.
    pub forwarded: Option<Forwarded<'a>>,
    /// Gantry's `Via` entry.
    pub via: Option<&'a HeaderValue>,
    /// The request id, under the configured name.
    pub request_id: Option<(&'a HeaderName, &'a RequestId)>,
    /// Not a field: the caller takes an HTTP/1.1 upstream's response fields unparsed when the
    /// head allows it (see [`crate::http1::raw`]); only the edge, for an HTTP/1.1 client and a
    /// route with nothing that reads or changes response fields, sets it.
    pub raw_response: bool,
}

/// Everything one try adds beside the head's map: the edge's fields and the try's own.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingFields<'a> {
    /// The edge's fields.
    pub added: &'a AddedFields<'a>,
    /// HTTP/1.1 only: `Host`, written first; any `Host` left in the map is not written. (An
    /// HTTP/2 request carries its authority in the URI.)
    pub host: Option<&'a HeaderValue>,
    /// The try's `traceparent` (a new span of the request's trace).
    pub traceparent: Option<&'a [u8; 55]>,
    /// One field with a numeric value (Gantry's deadline header): no `HeaderValue` is built for it.
    pub number: Option<(&'a HeaderName, u64)>,
}

/// No fields beside the map.
pub static NO_ADDED_FIELDS: AddedFields<'static> = AddedFields {
    forwarded: None,
    via: None,
    request_id: None,
    raw_response: false,
};

impl OutgoingFields<'_> {
    /// Nothing beside the map.
    pub fn none() -> OutgoingFields<'static> {
        OutgoingFields {
            added: &NO_ADDED_FIELDS,
            host: None,
            traceparent: None,
            number: None,
        }
    }

    /// Whether the map's own `Host` is replaced by [`Self::host`].
    pub fn replaces_host(&self) -> bool {
        self.host.is_some()
    }

    /// Writes `Host` (when set), as the head's first field.
    pub fn write_h1_host(&self, out: &mut BytesMut) {
        if let Some(host) = self.host {
            field(out, b"host: ", host.as_bytes());
        }
    }

    /// Writes every other field, after the head's own.
    pub fn write_h1(&self, out: &mut BytesMut) {
        let added = self.added;
        if let Some(forwarded) = &added.forwarded {
            out.extend_from_slice(forwarded.lines);
            if let Some(host) = &forwarded.host {
                field(out, b"x-forwarded-host: ", host.as_bytes());
            }
        }
        if let Some(via) = added.via {
            field(out, b"via: ", via.as_bytes());
        }
        if let Some((name, value)) = added.request_id {
            named_field(out, name, value.as_bytes());
        }
        if let Some(traceparent) = self.traceparent {
            field(out, b"traceparent: ", traceparent);
        }
        if let Some((name, value)) = self.number {
            named_field(out, name, crate::http1::decimal(value, &mut [0; 20]));
        }
    }

    /// Puts the fields into `headers`, for a request that is encoded from its map (HTTP/2).
    /// `Host` is not: an HTTP/2 request's authority is in its URI.
    pub fn add_to(&self, headers: &mut HeaderMap) {
        // The client's map is sized for its own fields: room for all eight here is one growth.
        headers.reserve(8);
        let added = self.added;
        if let Some(forwarded) = &added.forwarded {
            headers.append(X_FORWARDED_FOR, forwarded.peer_ip.clone());
            headers.append(X_REAL_IP, forwarded.peer_ip.clone());
            headers.append(X_FORWARDED_PROTO, HeaderValue::from_static(forwarded.proto));
            if let Some(host) = &forwarded.host {
                headers.append(X_FORWARDED_HOST, host.clone());
            }
        }
        if let Some(via) = added.via {
            headers.append(header::VIA, via.clone());
        }
        if let Some((name, value)) = added.request_id {
            headers.append(name.clone(), value.to_header_value());
        }
        if let Some(traceparent) = self.traceparent
            && let Ok(value) = HeaderValue::from_bytes(traceparent)
        {
            headers.insert(TRACEPARENT, value);
        }
        if let Some((name, value)) = self.number {
            headers.insert(name.clone(), HeaderValue::from(value));
        }
    }
}

/// A field line; `name_colon` is the name with its `": "`.
fn field(out: &mut BytesMut, name_colon: &[u8], value: &[u8]) {
    out.extend_from_slice(name_colon);
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn named_field(out: &mut BytesMut, name: &HeaderName, value: &[u8]) {
    out.extend_from_slice(name.as_str().as_bytes());
    field(out, b": ", value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(
        peer: &'a HeaderValue,
        via: &'a HeaderValue,
        id: &'a RequestId,
    ) -> AddedFields<'a> {
        AddedFields {
            forwarded: Some(Forwarded {
                peer_ip: peer,
                proto: "http",
                lines: b"x-forwarded-for: 192.0.2.7\r\nx-real-ip: 192.0.2.7\r\nx-forwarded-proto: http\r\n",
                host: Some(HeaderValue::from_static("example.test")),
            }),
            via: Some(via),
            request_id: Some((&REQUEST_ID, id)),
            raw_response: false,
        }
    }

    static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    const TIMEOUT: HeaderName = HeaderName::from_static("gantry-timeout-ms");

    #[test]
    fn the_bytes_written_and_the_map_filled_say_the_same() {
        let (peer, via, id) = (
            HeaderValue::from_static("192.0.2.7"),
            HeaderValue::from_static("1.1 gantry"),
            // A generated id: written from its bytes, put into the map as a new value.
            RequestId::generate(),
        );
        let added = sample(&peer, &via, &id);
        let traceparent = *b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let host = HeaderValue::from_static("backend:8080");
        let fields = OutgoingFields {
            added: &added,
            host: Some(&host),
            traceparent: Some(&traceparent),
            number: Some((&TIMEOUT, 2500)),
        };
        let mut out = BytesMut::new();
        fields.write_h1_host(&mut out);
        fields.write_h1(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let written: Vec<(&str, &str)> = text
            .split("\r\n")
            .filter(|line| !line.is_empty())
            .map(|line| line.split_once(": ").unwrap())
            .collect();
        assert_eq!(written[0], ("host", "backend:8080"));

        let mut map = HeaderMap::new();
        fields.add_to(&mut map);
        // Everything but Host goes into the map, with the same values.
        assert_eq!(map.len(), written.len() - 1);
        for (name, value) in &written[1..] {
            assert_eq!(map.get(*name).unwrap(), value, "{name}");
        }
        assert_eq!(map["gantry-timeout-ms"], "2500");
        assert_eq!(map["x-forwarded-host"], "example.test");
    }

    #[test]
    fn nothing_is_written_when_nothing_is_added() {
        let mut out = BytesMut::new();
        let fields = OutgoingFields::none();
        fields.write_h1_host(&mut out);
        fields.write_h1(&mut out);
        assert!(out.is_empty());
        let mut map = HeaderMap::new();
        fields.add_to(&mut map);
        assert!(map.is_empty());
    }
}
