//! An upstream cluster: named targets, how to pick one, and how to talk to them.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::balance::{Balancer, TargetLoad};
use super::client::ConnectionPool;

/// Wire protocol to the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 keep-alive.
    Http1,
    /// HTTP/2 prior knowledge (also for gRPC).
    Http2,
}

/// What the upstream sees as Host / `:authority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's.
    Preserve,
    /// The target's `host:port`.
    Target,
}

/// The request key consistent hashing uses.
#[derive(Debug, Clone)]
pub enum HashKey {
    /// No key: the balancer needs none.
    None,
    /// A request header.
    Header(HeaderName),
    /// A cookie by name.
    Cookie(String),
    /// The derived client IP.
    ClientIp,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Until response headers, all tries together.
    pub request: Duration,
    /// Until response headers, one try.
    pub per_try: Duration,
    /// Longest pause in a body, either direction.
    pub idle: Duration,
}

/// One target address with its pool and load.
pub struct Target {
    /// `host:port`.
    pub authority: String,
    /// `host:port` as a header value, for `host_header: target`.
    pub authority_header: HeaderValue,
    /// Relative weight.
    pub weight: u32,
    /// Requests in flight right now.
    pub in_flight: AtomicUsize,
    /// Keep-alive connections.
    pub pool: ConnectionPool,
}

impl TargetLoad for Arc<Target> {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    fn identity(&self) -> &str {
        &self.authority
    }
}

/// A named set of targets with a balancer.
pub struct UpstreamCluster {
    /// Name from the config.
    pub name: Arc<str>,
    /// The targets.
    pub targets: Vec<Arc<Target>>,
    /// How a target is chosen.
    pub balancer: Balancer,
    /// What consistent hashing hashes.
    pub hash_key: HashKey,
    /// HTTP/1.1 or HTTP/2 to the targets.
    pub protocol: UpstreamProtocol,
    /// Timeouts.
    pub timeouts: UpstreamTimeouts,
    /// Host header policy.
    pub host_header: HostHeader,
}

impl UpstreamCluster {
    /// Picks a target for a request with these headers from this client.
    pub fn pick(&self, headers: &HeaderMap, client_ip: IpAddr) -> Option<Arc<Target>> {
        let ip_text;
        let key: Option<&[u8]> = match &self.hash_key {
            HashKey::None => None,
            HashKey::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
            HashKey::Cookie(name) => cookie_value(headers, name),
            HashKey::ClientIp => {
                ip_text = client_ip.to_string();
                Some(ip_text.as_bytes())
            }
        };
        let index = self.balancer.pick(&self.targets, key)?;
        self.targets.get(index).cloned()
    }
}

/// The value of cookie `name` in any `Cookie` header.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// Counts a request in flight on a target for as long as it lives.
pub struct InFlightGuard(Arc<Target>);

impl InFlightGuard {
    /// Starts counting.
    pub fn new(target: Arc<Target>) -> Self {
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(target)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_are_found_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; session=abc ; b=2"),
        );
        assert_eq!(cookie_value(&headers, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(&headers, "missing"), None);
    }
}
