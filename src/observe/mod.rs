//! Access logs, metrics and traces.

pub mod access_log;
pub mod histogram;
pub mod metrics;
pub mod otlp;
pub mod random;
pub mod request_id;
pub mod tracing;
