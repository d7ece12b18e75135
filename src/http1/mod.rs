//! HTTP/1.1 wire pieces shared by both sides of the proxy: the client-facing server
//! (`crate::server::h1`) and the upstream client (`crate::upstream::h1`).
//!
//! Both read message bodies the same way (RFC 9112 §6–7), strictly: chunk sizes are hex digits
//! with a bounded line, each chunk ends with CRLF, a trailer section is bounded.

pub mod decode;
