//! The file model of observability keys added by the observability work: `observability.tracing`.
//!
//! Kept apart from `file.rs` so these keys can grow without touching the shared model.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Metrics on the admin listener's `/metrics`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileMetrics {
    /// Count requests and upstream tries (default true). State series (config, targets,
    /// breakers, TLS) are read at scrape time and always served.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl Default for FileMetrics {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn enabled() -> bool {
    true
}

/// W3C trace context handling.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTracing {
    /// Share of new traces (requests without a valid `traceparent`) marked sampled, 0 to 1
    /// (default 0). A client's own sampling decision is always kept (parent-based).
    pub sample_ratio: Option<f64>,
    /// OTLP/gRPC collector (`http://host:4317`, no TLS) that sampled spans are sent to; empty or
    /// absent = no export. Read when the gateway starts (a reload does not change it).
    pub otlp_endpoint: Option<String>,
}
