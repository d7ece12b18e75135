//! Client-facing sockets: accept, limits, timers, graceful shutdown.

pub mod flood;
pub mod idle;
pub mod listener;
pub mod reclaim;
pub mod tls;
