//! Header hygiene at the trust boundary: hop-by-hop removal, forwarding headers, `Via`.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use super::fields::ClientFields;
use crate::upstream::fields::Forwarded;

/// Hop-by-hop names removed in both directions (RFC 9110 §7.6.1), besides those listed in `Connection`.
///
/// `Trailer` is not among them: RFC 9110 §6.6.2 makes it an end-to-end field, and hyper's HTTP/1.1
/// server only sends trailer fields that the response's `Trailer` header announces, so removing it
/// would silently drop gRPC-style trailers for HTTP/1.1 clients.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Removes hop-by-hop headers. `Upgrade` (and `Connection: upgrade`) survive only when
/// `keep_upgrade` (a WebSocket upgrade on a route that allows it). `TE` survives only as `trailers`.
///
/// One pass over the names decides what to do, so the common message, which has none of these
/// headers, costs no hash lookups.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let (mut connection, mut upgrade, mut te, mut fixed) = (false, false, false, false);
    for name in headers.keys() {
        if name == header::CONNECTION {
            connection = true;
        } else if name == header::UPGRADE {
            upgrade = true;
        } else if name == header::TE {
            te = true;
        } else if HOP_BY_HOP.contains(name) {
            fixed = true;
        }
    }
    if connection {
        // Names present in the message and listed in `Connection`; tokens are compared in place
        // (parsing each into a `HeaderName` allocates). The usual `keep-alive` alone needs no
        // scan: a `Keep-Alive` header is in the fixed list.
        let listed = headers.get_all(header::CONNECTION);
        let names_more = listed
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .any(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"keep-alive"));
        let named: Vec<HeaderName> = if !names_more {
            Vec::new()
        } else {
            headers
                .keys()
                .filter(|name| {
                    !(keep_upgrade && *name == header::UPGRADE)
                        && *name != header::CONNECTION
                        && lists(&listed, name)
                })
                .cloned()
                .collect()
        };
        for name in named {
            headers.remove(&name);
        }
        headers.remove(header::CONNECTION);
    }
    if fixed {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if upgrade {
        headers.remove(header::UPGRADE);
    }
    if te && let Some(value) = headers.get(header::TE) {
        let wants_trailers = value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
        if wants_trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        } else {
            headers.remove(header::TE);
        }
    }
}

/// Whether the `Connection` values list `name` (names are lowercase; tokens compare ignoring case).
fn lists(connection: &http::header::GetAll<'_, HeaderValue>, name: &HeaderName) -> bool {
    connection
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .any(|token| {
            token
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_str().as_bytes())
        })
}

/// Whether the request asks for a WebSocket upgrade (RFC 6455 §4.1).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        });
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    upgrade && connection
}

/// The TCP peer of a client connection, with its IP pre-rendered once per connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The peer's IP as a header value (for `X-Forwarded-For` / `X-Real-IP`).
    pub ip_header: HeaderValue,
    /// The connection came over TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    /// Subject of the verified client certificate (mTLS), sent as `Gantry-Client-Cert-Subject`.
    pub client_cert_subject: Option<HeaderValue>,
    /// The listener's in-flight request gauge (a detached one until the listener sets it).
    pub requests_in_flight: prometheus_client::metrics::gauge::Gauge,
    /// `X-Forwarded-For`, `X-Real-IP` and `X-Forwarded-Proto` as HTTP/1.1 field lines: the same
    /// for every request of the connection, so rendered once.
    forwarded_lines: Bytes,
}

impl Peer {
    /// Describes a newly accepted cleartext connection.
    pub fn new(addr: SocketAddr) -> Self {
        Self::describe(addr, false, None)
    }

    /// Describes a connection whose TLS handshake completed.
    pub fn tls(addr: SocketAddr, client_cert_subject: Option<HeaderValue>) -> Self {
        Self::describe(addr, true, client_cert_subject)
    }

    fn describe(addr: SocketAddr, tls: bool, client_cert_subject: Option<HeaderValue>) -> Self {
        let ip = ip_text(addr.ip());
        let ip_header =
            HeaderValue::from_str(&ip).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let proto = if tls { "https" } else { "http" };
        let mut lines = Vec::with_capacity(64 + 2 * ip.len());
        for piece in [
            "x-forwarded-for: ",
            &ip,
            "\r\nx-real-ip: ",
            &ip,
            "\r\nx-forwarded-proto: ",
            proto,
            "\r\n",
        ] {
            lines.extend_from_slice(piece.as_bytes());
        }
        let forwarded_lines = Bytes::from(lines);
        Self {
            addr,
            ip_header,
            tls,
            client_cert_subject,
            requests_in_flight: prometheus_client::metrics::gauge::Gauge::default(),
            forwarded_lines,
        }
    }

    /// Counts this connection's requests in `gauge` (its listener's).
    #[must_use]
    pub fn counted_in(mut self, gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        self.requests_in_flight = gauge;
        self
    }

    /// `https` or `http`, for `X-Forwarded-Proto`.
    fn proto(&self) -> HeaderValue {
        HeaderValue::from_static(self.proto_text())
    }

    fn proto_text(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// `ip` as text, the way `Display` writes it. Runs once per accepted connection, where
/// `Display` and `format!` cost about 2k instructions for an IPv4 address (a tenth of a proxied
/// request's); an IPv4 address is written by hand, an IPv6 one (rarer) through `Display`.
fn ip_text(ip: IpAddr) -> String {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => return v6.to_string(),
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's IP: the peer, unless the peer is a trusted proxy, in which case the rightmost
/// `X-Forwarded-For` entry that is not itself trusted (the leftmost ones are client-controlled).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    while let Some(hop) = hops.pop() {
        if !is_trusted(hop, trusted) {
            return hop;
        }
    }
    peer
}

/// Sets `X-Forwarded-For/-Proto/-Host`, `X-Real-IP` and `Forwarded` for the upstream. From an
/// untrusted peer they are replaced (never appended to); from a trusted one the chain is extended.
/// `fields` tells which of them the client's head may carry: absent ones are added without a
/// search for a value to replace or remove.
pub fn set_forwarding_headers(
    headers: &mut HeaderMap,
    peer: &Peer,
    client_ip: IpAddr,
    host: Option<&HeaderValue>,
    trusted_peer: bool,
    fields: ClientFields,
) {
    let (xff, xfp, xfh, real_ip) = (
        X_FORWARDED_FOR,
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
        X_REAL_IP,
    );
    if trusted_peer {
        let chain = headers
            .get_all(&xff)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        if chain.is_empty() {
            headers.insert(&xff, peer.ip_header.clone());
        } else if let Ok(value) = HeaderValue::from_str(&format!("{chain}, {}", peer.addr.ip())) {
            headers.insert(&xff, value);
        }
        if !headers.contains_key(&xfp) {
            headers.insert(&xfp, peer.proto());
        }
        if !headers.contains_key(&xfh)
            && let Some(host) = host
        {
            headers.insert(&xfh, host.clone());
        }
        if !headers.contains_key(&real_ip)
            && let Ok(value) = HeaderValue::from_str(&client_ip.to_string())
        {
            headers.insert(&real_ip, value);
        }
    } else if !fields.may_have(ClientFields::X_FORWARDED) {
        headers.append(&xff, peer.ip_header.clone());
        headers.append(&real_ip, peer.ip_header.clone());
        headers.append(&xfp, peer.proto());
        if let Some(host) = host {
            headers.append(&xfh, host.clone());
        }
        if fields.may_have(ClientFields::FORWARDED) {
            headers.remove(header::FORWARDED);
        }
    } else {
        headers.insert(&xff, peer.ip_header.clone());
        headers.insert(&real_ip, peer.ip_header.clone());
        headers.insert(&xfp, peer.proto());
        match host {
            Some(host) => {
                headers.insert(&xfh, host.clone());
            }
            None => {
                headers.remove(&xfh);
            }
        }
        if fields.may_have(ClientFields::FORWARDED) {
            headers.remove(header::FORWARDED);
        }
    }
}

/// The forwarding fields for an untrusted peer whose head carries none, to be written beside
/// the map ([`Forwarded`]); a client's `Forwarded` is removed here, as [`set_forwarding_headers`]
/// does.
pub fn forwarded_beside_map<'a>(
    headers: &mut HeaderMap,
    peer: &'a Peer,
    host: Option<&HeaderValue>,
    fields: ClientFields,
) -> Forwarded<'a> {
    if fields.may_have(ClientFields::FORWARDED) {
        headers.remove(header::FORWARDED);
    }
    Forwarded {
        peer_ip: &peer.ip_header,
        proto: peer.proto_text(),
        lines: &peer.forwarded_lines,
        host: host.cloned(),
    }
}

/// Removes every `Gantry-*` header: only Gantry itself may set identity headers upstream.
pub fn strip_gantry_headers(headers: &mut HeaderMap) {
    let has_any = headers
        .keys()
        .any(|name| name.as_str().starts_with("gantry-"));
    if has_any {
        let names: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("gantry-"))
            .cloned()
            .collect();
        for name in names {
            headers.remove(name);
        }
    }
}

/// Whether any `Via` entry was added by a gateway with our pseudonym (a forwarding loop).
pub fn via_has_loop(headers: &HeaderMap, via_name: &str) -> bool {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| {
            let mut parts = entry.split_whitespace();
            let _protocol = parts.next();
            parts
                .next()
                .is_some_and(|by| by.eq_ignore_ascii_case(via_name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.100.9",
            "192.168.1.255",
            "255.255.255.255",
            "1.20.199.200",
            "::1",
            "2001:db8::7",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().expect("a test address");
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 255 - octet, octet / 3, 7]);
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn a_peer_renders_its_forwarding_lines_once() {
        let peer = Peer::new("198.51.100.23:4711".parse().expect("a test address"));
        assert_eq!(peer.ip_header, "198.51.100.23");
        assert_eq!(
            &peer.forwarded_lines[..],
            b"x-forwarded-for: 198.51.100.23\r\nx-real-ip: 198.51.100.23\r\nx-forwarded-proto: http\r\n"
        );
        let tls = Peer::tls("[2001:db8::1]:443".parse().expect("a test address"), None);
        assert_eq!(
            &tls.forwarded_lines[..],
            b"x-forwarded-for: 2001:db8::1\r\nx-real-ip: 2001:db8::1\r\nx-forwarded-proto: https\r\n"
        );
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(*k, HeaderValue::from_static(v));
        }
        headers
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers, deflate"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get("connection").is_none());
        assert!(h.get("upgrade").is_none());
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-kept"], "yes");
    }

    #[test]
    fn keep_alive_alone_and_mixed_case_tokens_are_handled() {
        let mut h = map(&[
            ("connection", "Keep-Alive"),
            ("keep-alive", "timeout=5"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h, false);
        assert!(h.get("connection").is_none() && h.get("keep-alive").is_none());
        assert_eq!(h["x-kept"], "yes");

        let mut h = map(&[
            ("connection", "keep-alive"),
            ("connection", " X-Secret ,upgrade"),
            ("x-secret", "1"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ]);
        remove_hop_by_hop(&mut h, true);
        assert!(h.get("x-secret").is_none());
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn client_ip_walks_xff_from_the_right_for_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = map(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2")]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let untrusted: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(client_ip(untrusted, &h, &trusted), untrusted);
    }

    #[test]
    fn via_loops_are_detected_by_pseudonym() {
        let h = map(&[("via", "1.0 fred, 1.1 Gantry")]);
        assert!(via_has_loop(&h, "gantry"));
        assert!(!via_has_loop(&h, "other"));
    }
}
