//! The file model: exactly the YAML a user writes, nothing resolved yet.
//!
//! Every struct denies unknown fields so a typo is an error with a location, never a silent default.
//! No `#[serde(flatten)]` anywhere: it quietly turns `deny_unknown_fields` off (serde-rs/serde#2283).
//! The engine never sees these types; `config::compile` turns them into the runtime model.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::file_resilience::{
    FileCircuitBreaker, FileDiscovery, FileFallback, FileHealthCheck, FileLoadShedding, FileRetries,
};
use super::file_tls::{FileListenerTls, FileUpstreamTls};
use super::units::{ByteSize, Duration};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Schema version of this file; only `1` exists.
    pub version: u32,
    /// Where Gantry accepts client connections.
    pub listeners: Vec<FileListener>,
    /// The admin API, probes and metrics, on their own listener.
    pub admin: Option<FileAdmin>,
    /// Process-wide settings: trust boundary, limits, threads.
    #[serde(default)]
    pub server: FileServer,
    /// Logs (and later metrics and traces).
    #[serde(default)]
    pub observability: FileObservability,
    /// Named upstream clusters that routes forward to.
    #[serde(default)]
    pub upstreams: BTreeMap<String, FileUpstream>,
    /// Routes, matched by host, path, method, headers and query.
    #[serde(default)]
    pub routes: Vec<FileRoute>,
    /// Who calls the API (API keys, Basic credentials, metadata).
    #[serde(default)]
    pub consumers: Vec<super::file_security::FileConsumer>,
    /// Named token verifiers (JWT, OAuth2 introspection) that routes use as auth methods.
    #[serde(default)]
    pub auth_providers: BTreeMap<String, super::file_security::FileAuthProvider>,
    /// Shared state across instances (rate limits with `store: redis`).
    pub redis: Option<super::file_rate_limit::FileRedis>,
}

/// One listening socket.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// `IP:PORT`; port 0 binds an ephemeral port (printed at start-up).
    pub address: String,
    /// Client protocols: `http1` and/or `h2c` (cleartext HTTP/2 by prior knowledge).
    #[serde(default = "default_protocols")]
    pub protocols: Vec<FileProtocol>,
    /// TLS termination; with it, ALPN (not `protocols`) decides between HTTP/1.1 and h2.
    pub tls: Option<FileListenerTls>,
}

fn default_protocols() -> Vec<FileProtocol> {
    vec![FileProtocol::Http1, FileProtocol::H2c]
}

/// A client-side protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileProtocol {
    /// HTTP/1.1 (and 1.0).
    Http1,
    /// HTTP/2 over cleartext TCP, by prior knowledge.
    H2c,
}

/// The admin listener: `/admin/*` (token-protected), `/healthz`, `/readyz`, `/metrics`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// `IP:PORT` of the admin listener (keep it private, e.g. 127.0.0.1:9901).
    pub address: String,
    /// Bearer token required on `/admin/*`; omit the key for none.
    pub token: Option<String>,
}

/// Process-wide settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// CIDRs whose `X-Forwarded-For`/`Forwarded`/`X-Real-IP` are believed; everyone else's are replaced.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Header carrying the request id in and out (default `X-Request-Id`).
    pub request_id_header: Option<String>,
    /// How long in-flight requests may run after SIGTERM/SIGINT (default 30s).
    pub shutdown_grace: Option<Duration>,
    /// Request size and time limits.
    #[serde(default)]
    pub limits: FileLimits,
    /// Tokio worker threads (default: number of cores).
    pub worker_threads: Option<usize>,
    /// Name this gateway writes into `Via` and detects loops by (default `gantry`).
    pub via_name: Option<String>,
    /// Client IP rules for every request, checked before routing (and before each route's own).
    pub ip: Option<super::file_security::FileIpRules>,
    /// Limits applied on every route, before the route's own.
    #[serde(default)]
    pub rate_limit: Vec<super::file_rate_limit::FileRateLimit>,
    /// Request headers with `_` in their name: `allow`, `reject` (400) or `drop` (default).
    pub headers_with_underscores: Option<super::file_hostile::FileUnderscoreHeaders>,
    /// Request paths with `%2F` or `%5C`: `keep` (default, forwarded encoded) or `reject` (400).
    pub path_with_escaped_slashes: Option<super::file_hostile::FileEscapedSlashes>,
}

/// Request size and time limits, enforced at the edge with problem+json answers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Total request head size; 431 past it (default 32KiB).
    pub max_header_bytes: Option<ByteSize>,
    /// Request target size; 414 past it (default 8KiB).
    pub max_uri_bytes: Option<ByteSize>,
    /// Request body size; 413 past it (default 10MiB).
    pub max_body_bytes: Option<ByteSize>,
    /// A request head must arrive within this (default 10s).
    pub header_read_timeout: Option<Duration>,
    /// Idle keep-alive connections close after this (default 60s).
    pub idle_timeout: Option<Duration>,
    /// Open client connections per listener; more wait in the accept queue (default 20000).
    pub max_connections: Option<usize>,
    /// HTTP/2 streams per client connection (default 100).
    pub h2_max_concurrent_streams: Option<u32>,
    /// HTTP/2 streams a client may open and reset before the server accepts them, per connection;
    /// past it the connection ends with GOAWAY ENHANCE_YOUR_CALM (rapid reset guard; default 50).
    pub h2_max_pending_reset_streams: Option<usize>,
    /// HTTP/2 streams the server may reset for protocol errors per connection before it sends
    /// GOAWAY ENHANCE_YOUR_CALM (default 256).
    pub h2_max_local_error_reset_streams: Option<usize>,
    /// HTTP/2 header list size advertised in SETTINGS (default: max_header_bytes + max_uri_bytes
    /// + 16KiB, so Gantry's own 431 answers first).
    pub h2_max_header_list_size: Option<ByteSize>,
    /// PING and SETTINGS frames a client may send per second on one HTTP/2 connection; past it
    /// the connection is closed (GOAWAY ENHANCE_YOUR_CALM when it can be sent; default 1000).
    pub h2_max_control_frames_per_second: Option<u32>,
}

/// Logs, metrics and traces.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileObservability {
    /// One line per request.
    #[serde(default)]
    pub access_log: FileAccessLog,
    /// Request and upstream counters (`enabled`, default true).
    #[serde(default)]
    pub metrics: super::file_observe::FileMetrics,
    /// W3C trace context: `sample_ratio` for new traces.
    #[serde(default)]
    pub tracing: super::file_observe::FileTracing,
}

/// Access log settings.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAccessLog {
    /// `json`, `common` or `off`.
    #[serde(default = "default_log_format")]
    pub format: FileLogFormat,
    /// `stdout`, `stderr` or a file path.
    #[serde(default = "default_log_output")]
    pub output: String,
    /// Per route name, the share (0 to 1) of successful requests (status below 400, no gateway
    /// error) that are logged; errors are always logged. Routes not named log every request.
    #[serde(default)]
    pub sample_successes: std::collections::BTreeMap<String, f64>,
}

impl Default for FileAccessLog {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            output: default_log_output(),
            sample_successes: std::collections::BTreeMap::new(),
        }
    }
}

fn default_log_format() -> FileLogFormat {
    FileLogFormat::Json
}

fn default_log_output() -> String {
    "stdout".to_owned()
}

/// Access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileLogFormat {
    /// One JSON object per line.
    Json,
    /// NCSA common log format.
    Common,
    /// No access log.
    Off,
}

/// A named cluster of targets.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    /// Static targets.
    #[serde(default)]
    pub targets: Vec<FileTarget>,
    /// How a target is chosen (default `round_robin`).
    #[serde(default)]
    pub load_balancing: FileLoadBalancing,
    /// Wire protocol to the targets: `http1` (default), `h2` or `grpc` (HTTP/2).
    #[serde(default)]
    pub protocol: FileUpstreamProtocol,
    /// Connect, request and idle timeouts.
    #[serde(default)]
    pub timeouts: FileTimeouts,
    /// Connection pool per target.
    #[serde(default)]
    pub pool: FilePool,
    /// `preserve` (default) sends the client's Host/:authority; `target` sends the target's host:port.
    #[serde(default)]
    pub host_header: FileHostHeader,
    /// TLS settings for `https://` targets (CA, SNI name, client certificate).
    pub tls: Option<FileUpstreamTls>,
    /// Active health checks and passive outlier ejection.
    pub health_check: Option<FileHealthCheck>,
    /// Circuit breaker.
    pub circuit_breaker: Option<FileCircuitBreaker>,
    /// Retries with backoff and a budget.
    pub retries: Option<FileRetries>,
    /// Concurrency limit (fixed or adaptive) with a short queue.
    pub load_shedding: Option<FileLoadShedding>,
    /// Targets found in DNS instead of listed (`targets` must then be left out).
    pub discovery: Option<FileDiscovery>,
    /// Limits on everything forwarded to this upstream, whichever route it came by (counted
    /// together across those routes), after `server.rate_limit` and before the route's own.
    #[serde(default)]
    pub rate_limit: Vec<super::file_rate_limit::FileRateLimit>,
}

/// One upstream target.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTarget {
    /// `http://HOST:PORT`.
    pub url: String,
    /// Relative share of traffic for weighted balancing (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Load-balancing algorithm: a name, or `{ consistent_hash: { header | cookie | client_ip } }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileLoadBalancing {
    /// Each target in turn.
    #[default]
    RoundRobin,
    /// Smooth weighted round robin (nginx's).
    WeightedRoundRobin,
    /// Power of two random choices on in-flight requests.
    LeastRequest,
    /// Uniformly random.
    Random,
    /// Rendezvous hashing on a request key; a target leaving moves only its keys.
    ConsistentHash(FileHashKey),
}

/// What consistent hashing hashes on; exactly one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileHashKey {
    /// Hash this request header.
    pub header: Option<String>,
    /// Hash this cookie.
    pub cookie: Option<String>,
    /// Hash the client IP.
    #[serde(default)]
    pub client_ip: bool,
}

/// Wire protocol to an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileUpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 (prior knowledge, cleartext).
    H2,
    /// gRPC: HTTP/2, trailers passed through.
    Grpc,
}

/// Which Host/:authority the upstream receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileHostHeader {
    /// The client's.
    #[default]
    Preserve,
    /// The target's `host:port`.
    Target,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileTimeouts {
    /// TCP connect (default 1s).
    pub connect: Option<Duration>,
    /// Until the response headers arrive (default 15s).
    pub request: Option<Duration>,
    /// Per try, until response headers (default: `request`).
    pub per_try: Option<Duration>,
    /// Bodies in either direction may be idle this long (default 60s); also idle pooled connections.
    pub idle: Option<Duration>,
}

/// Connection pool per target.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePool {
    /// Idle keep-alive connections kept per target (default 64).
    pub max_idle_per_target: Option<usize>,
    /// Open connections per target, busy or idle; past it requests wait (default 1024).
    pub max_connections_per_target: Option<usize>,
}

/// A route: what to match and where it goes.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// Unique name, used in logs and metrics.
    pub name: String,
    /// Conditions; all must hold.
    #[serde(rename = "match")]
    pub matcher: FileMatch,
    /// Upstream cluster to forward to (or `aggregate`, never both).
    pub upstream: Option<String>,
    /// Several upstream calls merged into one JSON answer (backend for frontend), instead of `upstream`.
    pub aggregate: Option<super::file_aggregate::FileAggregate>,
    /// Path rewrite before forwarding.
    pub rewrite: Option<FileRewrite>,
    /// Allow WebSocket upgrades through this route.
    #[serde(default)]
    pub websocket: bool,
    /// Static answer when the upstream is open-circuited, unhealthy or timed out.
    pub fallback: Option<FileFallback>,
    /// Policies applied before forwarding (ip, cors, auth).
    pub policies: Option<super::file_security::FilePolicies>,
}

/// Route match conditions.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileMatch {
    /// Exact hosts or one-label wildcards (`*.example.com`); empty matches any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Exact path or template: `/users/{id}`, `/files/{*rest}`.
    pub path: Option<String>,
    /// Prefix on segment boundaries: `/v1` matches `/v1` and `/v1/x`, not `/v1beta`.
    pub path_prefix: Option<String>,
    /// Allowed methods; empty allows all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Header conditions: an exact value, or `{ present: true }`.
    #[serde(default)]
    pub headers: BTreeMap<String, FileValueMatch>,
    /// Query parameter conditions: an exact value, or `{ present: true }`.
    #[serde(default)]
    pub query: BTreeMap<String, FileValueMatch>,
}

/// A header or query condition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum FileValueMatch {
    /// The value must equal this.
    Exact(String),
    /// The name must (or must not) be present.
    Presence(FilePresence),
}

/// `{ present: true }` or `{ present: false }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilePresence {
    /// Whether the header or parameter must be present.
    pub present: bool,
}

/// Path rewrite: a template from captured params, or a prefix to strip.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRewrite {
    /// New path, e.g. `/users/{id}`; params come from the route's path template.
    pub path: Option<String>,
    /// Prefix removed from the front of the path, e.g. `/v1`.
    pub strip_prefix: Option<String>,
}
