//! The runtime model: what a request sees. Compiled once per config by `config::compile`,
//! immutable, swapped whole. The engine never reads the YAML file types.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::observe::access_log::LogFormat;
use crate::router::{Rewrite, Router};
use crate::upstream::cluster::UpstreamCluster;

/// A compiled config: listeners to bind plus the request-time snapshot.
pub struct GatewayConfig {
    /// Where the config came from (file name), for messages.
    pub source: String,
    /// The file to read again on reload; `None` for configs built from text (the demo).
    pub source_path: Option<PathBuf>,
    /// The admin listener, if configured.
    pub admin: Option<AdminSettings>,
    /// Listeners to bind.
    pub listeners: Vec<ListenerSettings>,
    /// Access log format and output; `None` when off.
    pub access_log: Option<(LogFormat, String)>,
    /// Tokio worker threads; `None` = number of cores.
    pub worker_threads: Option<usize>,
    /// What requests read.
    pub runtime: Arc<Runtime>,
}

/// The admin listener.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Address to bind.
    pub address: SocketAddr,
    /// Bearer token for `/admin/*`; `None` = open.
    pub token: Option<String>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// Name from the config.
    pub name: Arc<str>,
    /// Address to bind.
    pub address: SocketAddr,
    /// Serve HTTP/1.1.
    pub http1: bool,
    /// Serve cleartext HTTP/2 by prior knowledge.
    pub h2c: bool,
    /// TLS termination; compared by its settings, so unchanged TLS keeps the listener on reload.
    pub tls: Option<Arc<crate::server::tls::ListenerTls>>,
}

/// The immutable snapshot one request uses from start to end.
pub struct Runtime {
    /// Route table.
    pub router: Router<Arc<Route>>,
    /// Upstream clusters by name.
    pub upstreams: BTreeMap<String, Arc<UpstreamCluster>>,
    /// Edge settings.
    pub server: ServerSettings,
    /// Fingerprint of the effective config (hex), shown by the admin API and metrics.
    pub version: String,
    /// The file model this snapshot was compiled from, for the admin API's views of it.
    pub file: Arc<crate::config::file::FileConfig>,
    /// Consumers, auth providers and `server.ip`, shared by the routes' policies.
    pub security: Arc<crate::policy::Security>,
    /// Metric families, shared by every snapshot of this gateway (carried over on reload).
    pub metrics: Arc<crate::observe::metrics::Metrics>,
    /// Rate-limit state: Redis store, server-wide limits, local counters kept across reloads.
    pub rate_limits: Arc<crate::policy::rate_limit::RateLimits>,
}

impl Runtime {
    /// The effective config as JSON, secrets redacted, for `GET /admin/config`.
    pub fn effective_config(&self) -> serde_json::Value {
        crate::config::compile::effective_config(&self.file)
    }

    /// One line per route, in file order, for `GET /admin/routes`.
    pub fn route_summaries(&self) -> Vec<RouteSummary> {
        crate::config::compile::route_summaries(&self.file)
    }
}

/// What the admin API shows of a route.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteSummary {
    /// Route name.
    pub name: String,
    /// Hosts it matches (empty = any).
    pub hosts: Vec<String>,
    /// `path` or `path_prefix` as written.
    pub path: String,
    /// Whether `path` is a prefix.
    pub prefix: bool,
    /// Allowed methods (empty = any).
    pub methods: Vec<String>,
    /// Upstream it forwards to.
    pub upstream: String,
}

/// A compiled route.
pub struct Route {
    /// Name from the config.
    pub name: Arc<str>,
    /// Where it forwards; `None` for an aggregate route.
    pub upstream: Option<Arc<UpstreamCluster>>,
    /// The calls an aggregate route makes instead of forwarding.
    pub aggregate: Option<Arc<crate::handler::aggregate::Aggregate>>,
    /// Path rewrite before forwarding.
    pub rewrite: Option<Rewrite>,
    /// WebSocket upgrades pass through.
    pub websocket: bool,
    /// Static answer when the upstream is open-circuited, unhealthy or timed out.
    pub fallback: Option<Arc<crate::handler::forward::Fallback>>,
    /// Route policies (ip, cors, auth); `None` costs nothing.
    pub policies: Option<Box<crate::policy::RoutePolicies>>,
    /// Share of successful requests written to the access log (1 = all).
    pub log_successes: f64,
    /// Metric handles, made at compile time from the gateway's long-lived families.
    pub metrics: Arc<crate::observe::metrics::RouteMetrics>,
}

/// Edge settings: trust boundary, ids, limits.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Header carrying the request id.
    pub request_id_header: HeaderName,
    /// Drain time on shutdown.
    pub shutdown_grace: Duration,
    /// Size and time limits.
    pub limits: Limits,
    /// Our `Via` entry, e.g. `1.1 gantry`.
    pub via_entry: HeaderValue,
    /// The pseudonym in our `Via` entry, for loop detection.
    pub via_name: String,
    /// Whether requests and upstream tries are counted (`observability.metrics.enabled`).
    pub metrics_enabled: bool,
    /// Share of new traces marked sampled (`observability.tracing.sample_ratio`).
    pub trace_sample_ratio: f64,
    /// What happens to request headers with `_` in their name.
    pub headers_with_underscores: crate::config::file_hostile::FileUnderscoreHeaders,
    /// What happens to request paths with `%2F` or `%5C`.
    pub path_with_escaped_slashes: crate::config::file_hostile::FileEscapedSlashes,
}

/// Size and time limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request head bytes (431).
    pub max_header_bytes: u64,
    /// Request target bytes (414).
    pub max_uri_bytes: u64,
    /// Request body bytes (413).
    pub max_body_bytes: u64,
    /// Time for a request head to arrive.
    pub header_read_timeout: Duration,
    /// Idle keep-alive connections close after this.
    pub idle_timeout: Duration,
    /// Open connections per listener.
    pub max_connections: usize,
    /// HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 streams opened and reset by the client before being accepted (rapid reset guard).
    pub h2_max_pending_reset_streams: usize,
    /// HTTP/2 streams the server resets for protocol errors before GOAWAY.
    pub h2_max_local_error_reset_streams: usize,
    /// HTTP/2 header list size advertised to clients; `None` sizes it above the head limits.
    pub h2_max_header_list_size: Option<u64>,
}
