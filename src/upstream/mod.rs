//! Upstream clusters: targets, balancing and pooled connections.

pub mod balance;
pub mod client;
pub mod cluster;
pub mod tls;
