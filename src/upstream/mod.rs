//! Upstream clusters: targets, balancing, pooled connections, and resilience (health checks,
//! outlier ejection, circuit breaker, retries with a budget, load shedding).

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod discovery;
pub mod fields;
pub mod h1;
pub mod health;
pub mod outlier;
pub mod retry;
pub mod shed;
pub mod tls;
