//! Client-facing sockets: accept, limits, timers, graceful shutdown, and the HTTP/1.1 server.

pub mod drain;
pub mod flood;
pub mod h1;
pub mod idle;
pub mod incoming;
pub mod listener;
pub mod prefixed;
pub mod reclaim;
pub mod tls;
