//! Prometheus metrics: one [`Metrics`] per gateway, carried from snapshot to snapshot on reload.
//!
//! Counters that events drive (requests, upstream tries, retries, auth failures) live in
//! long-lived families here; per-route handles ([`RouteMetrics`]) are made when a config is
//! compiled, from the families of the previous snapshot, so a reload never resets a counter.
//! Series that describe state (target health, breaker state, concurrency limits, config version,
//! TLS counters kept by the listeners) are read when `/metrics` is scraped: nothing on the request
//! path keeps them up to date.
//!
//! Label values are bounded: route, upstream, listener and target names come from the config (or
//! DNS discovery), never from a request; methods outside the standard nine are counted as `other`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::histogram::DurationHistogram;

/// The route label of requests that matched no route (404, 405, edge rejections).
pub const UNMATCHED_ROUTE: &str = "(unmatched)";

/// Upper bounds (seconds) of the request and upstream duration buckets.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn duration_histogram() -> DurationHistogram {
    DurationHistogram::new(&DURATION_BUCKETS)
}

type HistogramFamily<L> = Family<L, DurationHistogram, fn() -> DurationHistogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    method: &'static str,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamCallLabels {
    upstream: Arc<str>,
    target: Arc<str>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabel {
    upstream: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeadRefusedLabels {
    listener: Arc<str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    route: Arc<str>,
    limit: Arc<str>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    method: Arc<str>,
    reason: Arc<str>,
}

/// How one upstream try ended, as the `outcome` label of the upstream duration histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    /// The upstream answered; the label is its status class (`2xx` …).
    Status(u16),
    /// No connection could be made.
    ConnectError,
    /// The connection broke before a response head arrived.
    Reset,
    /// The per-try timeout or the deadline ran out.
    Timeout,
    /// The client's request body broke; not the upstream's fault.
    ClientError,
}

impl TryOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Status(status) => status_class(status),
            Self::ConnectError => "connect_error",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::ClientError => "client_error",
        }
    }
}

/// Every event-driven series of one gateway. Cheap to share: each family is reference counted.
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabel>,
    upstream: UpstreamMetrics,
    requests_in_flight: Family<ListenerLabel, Gauge>,
    auth_failures: Family<AuthLabels, Counter>,
    rate_limited: Family<RateLimitLabels, Counter>,
    h2_floods: Family<ListenerLabel, Counter>,
    connections_reclaimed: Family<ListenerLabel, Counter>,
    heads_refused: Family<HeadRefusedLabels, Counter>,
    unmatched: Arc<RouteMetrics>,
    recent_errors: std::sync::Mutex<std::collections::VecDeque<RecentError>>,
}

/// How many recent errors the dashboard keeps.
pub const RECENT_ERRORS: usize = 50;

/// One error answer, for the dashboard's list of recent errors.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecentError {
    /// When (Unix seconds).
    pub at_unix: f64,
    /// The request id the client got.
    pub request_id: String,
    /// The trace id.
    pub trace_id: String,
    /// Route, when one matched.
    pub route: Option<String>,
    /// Status sent.
    pub status: u16,
    /// Problem type slug.
    pub kind: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty families; the first config compiled makes one, later ones carry it over.
    pub fn new() -> Self {
        let requests = Family::default();
        let request_duration = Family::new_with_constructor(duration_histogram as fn() -> _);
        let upstream = UpstreamMetrics {
            duration: Family::new_with_constructor(duration_histogram as fn() -> _),
            retries: Family::default(),
            retry_budget_exhausted: Family::default(),
        };
        let unmatched = Arc::new(RouteMetrics::build(
            Arc::from(UNMATCHED_ROUTE),
            &requests,
            &request_duration,
            &upstream,
        ));
        Self {
            requests,
            request_duration,
            upstream,
            requests_in_flight: Family::default(),
            auth_failures: Family::default(),
            rate_limited: Family::default(),
            h2_floods: Family::default(),
            connections_reclaimed: Family::default(),
            heads_refused: Family::default(),
            unmatched,
            recent_errors: std::sync::Mutex::new(std::collections::VecDeque::with_capacity(
                RECENT_ERRORS,
            )),
        }
    }

    /// The handles of one route, made at config compile time.
    pub fn route(&self, name: &Arc<str>) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics::build(
            Arc::clone(name),
            &self.requests,
            &self.request_duration,
            &self.upstream,
        ))
    }

    /// The handles for requests that matched no route.
    pub fn unmatched(&self) -> &Arc<RouteMetrics> {
        &self.unmatched
    }

    /// The in-flight gauge of one listener; fetched once per accept loop, not per request.
    pub fn listener_in_flight(&self, listener: &Arc<str>) -> Gauge {
        self.requests_in_flight.get_or_create_owned(&ListenerLabel {
            listener: Arc::clone(listener),
        })
    }

    /// The counter of HTTP/2 connections one listener closed for a control-frame flood.
    pub fn h2_floods(&self, listener: &Arc<str>) -> Counter {
        self.h2_floods.get_or_create_owned(&ListenerLabel {
            listener: Arc::clone(listener),
        })
    }

    /// The counter of silent connections one listener closed at `max_connections`.
    pub fn connections_reclaimed(&self, listener: &Arc<str>) -> Counter {
        self.connections_reclaimed
            .get_or_create_owned(&ListenerLabel {
                listener: Arc::clone(listener),
            })
    }

    /// Counts an HTTP/1.1 request head the server refused before the edge ran; `reason` is the
    /// problem slug (`malformed-request`, `headers-too-large`, `uri-too-long`,
    /// `request-head-timeout`).
    pub fn head_refused(&self, listener: &Arc<str>, reason: &'static str) {
        self.heads_refused
            .get_or_create(&HeadRefusedLabels {
                listener: Arc::clone(listener),
                reason,
            })
            .inc();
    }

    /// Counts a rejected credential: `method` is the auth method (`jwt`, `api_key` …), `reason`
    /// a short fixed slug (`expired`, `bad_signature` …), never the credential or a user name,
    /// so the label set stays small. For the auth policies to call.
    pub fn auth_failure(&self, method: &str, reason: &str) {
        self.auth_failures
            .get_or_create(&AuthLabels {
                method: Arc::from(method),
                reason: Arc::from(reason),
            })
            .inc();
    }

    /// Counts a request refused by a rate limit: `outcome` is `limited` (429) or
    /// `store_unavailable` (503, Redis could not answer and the limit denies then). `limit` is
    /// the limit's description from the config, so the label set stays bounded.
    pub fn rate_limited(&self, route: Option<&Arc<str>>, limit: &Arc<str>, outcome: &'static str) {
        self.rate_limited
            .get_or_create(&RateLimitLabels {
                route: route.map_or_else(|| Arc::from(""), Arc::clone),
                limit: Arc::clone(limit),
                outcome,
            })
            .inc();
    }

    /// Remembers an error answer (the oldest is forgotten past [`RECENT_ERRORS`]).
    pub fn record_error(&self, error: RecentError) {
        if let Ok(mut errors) = self.recent_errors.lock() {
            if errors.len() == RECENT_ERRORS {
                errors.pop_front();
            }
            errors.push_back(error);
        }
    }

    /// The recent errors, newest first.
    pub fn recent_errors(&self) -> Vec<RecentError> {
        self.recent_errors
            .lock()
            .map(|errors| errors.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Registers every event-driven family into a registry built for one scrape.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gantry_requests",
            "Requests by route, method and status class.",
            self.requests.clone(),
        );
        registry.register(
            "gantry_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route.",
            self.request_duration.clone(),
        );
        registry.register(
            "gantry_upstream_request_duration_seconds",
            "Upstream tries by upstream, target and outcome (status class or failure kind).",
            self.upstream.duration.clone(),
        );
        registry.register(
            "gantry_requests_in_flight",
            "Requests being handled, by listener.",
            self.requests_in_flight.clone(),
        );
        registry.register(
            "gantry_upstream_retries",
            "Tries sent again after a retryable failure, by upstream.",
            self.upstream.retries.clone(),
        );
        registry.register(
            "gantry_upstream_retry_budget_exhausted",
            "Retries the policy allowed but the retry budget refused, by upstream.",
            self.upstream.retry_budget_exhausted.clone(),
        );
        registry.register(
            "gantry_auth_failures",
            "Rejected credentials by auth method and reason.",
            self.auth_failures.clone(),
        );
        registry.register(
            "gantry_rate_limited",
            "Requests refused by a rate limit, by route, limit and outcome.",
            self.rate_limited.clone(),
        );
        registry.register(
            "gantry_h2_control_frame_floods",
            "HTTP/2 connections closed for sending too many PING/SETTINGS frames, by listener.",
            self.h2_floods.clone(),
        );
        registry.register(
            "gantry_connections_reclaimed",
            "Connections closed at max_connections because they had not sent a byte, by listener.",
            self.connections_reclaimed.clone(),
        );
        registry.register(
            "gantry_http1_heads_refused",
            "HTTP/1.1 request heads refused before routing (malformed, too large, too slow), by listener and reason.",
            self.heads_refused.clone(),
        );
    }
}

/// A target's most common try series (`2xx`), found once. A target belongs to one gateway, whose
/// [`Metrics`] live as long as the process (carried over by every reload), so the series it points
/// to stays the exported one.
#[derive(Debug, Default)]
pub struct TryMetricCache {
    ok: std::sync::OnceLock<DurationHistogram>,
}

/// The upstream families, shared by every route's handles.
#[derive(Clone)]
pub struct UpstreamMetrics {
    duration: HistogramFamily<UpstreamCallLabels>,
    retries: Family<UpstreamLabel, Counter>,
    retry_budget_exhausted: Family<UpstreamLabel, Counter>,
}

impl UpstreamMetrics {
    /// Counts one upstream try and its duration.
    ///
    /// The `2xx` series of a target is looked up once and kept in `cache`: finding a series hashes
    /// its labels under a lock, the largest cost of counting a try.
    pub fn upstream_try(
        &self,
        upstream: &Arc<str>,
        target: &Arc<str>,
        cache: &TryMetricCache,
        outcome: TryOutcome,
        took: Duration,
    ) {
        let series = || {
            self.duration
                .get_or_create(&UpstreamCallLabels {
                    upstream: Arc::clone(upstream),
                    target: Arc::clone(target),
                    outcome: outcome.label(),
                })
                .clone()
        };
        match outcome {
            TryOutcome::Status(200..=299) => cache.ok.get_or_init(series).observe(took),
            _ => series().observe(took),
        }
    }

    /// Counts a retry of a request to `upstream`.
    pub fn retry(&self, upstream: &Arc<str>) {
        self.retries
            .get_or_create(&UpstreamLabel {
                upstream: Arc::clone(upstream),
            })
            .inc();
    }

    /// Counts a retry that the policy allowed but the retry budget refused.
    pub fn retry_budget_exhausted(&self, upstream: &Arc<str>) {
        self.retry_budget_exhausted
            .get_or_create(&UpstreamLabel {
                upstream: Arc::clone(upstream),
            })
            .inc();
    }
}

/// Standard methods get their own label value; the rest are `other` (bounded cardinality).
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn method_index(method: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn status_class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

fn status_class(status: u16) -> &'static str {
    STATUS_CLASSES[status_class_index(status)]
}

/// One route's handles, made at compile time. A request counter per (method, status class) is
/// fetched from the family the first time it is needed and kept, so later requests touch only
/// atomics; series appear only once they have a request (no rows of zeros).
pub struct RouteMetrics {
    name: Arc<str>,
    requests: Family<RequestLabels, Counter>,
    counters: [[OnceLock<Counter>; STATUS_CLASSES.len()]; METHODS.len()],
    duration: DurationHistogram,
    upstream: UpstreamMetrics,
}

impl RouteMetrics {
    fn build(
        name: Arc<str>,
        requests: &Family<RequestLabels, Counter>,
        durations: &HistogramFamily<RouteLabel>,
        upstream: &UpstreamMetrics,
    ) -> Self {
        let duration = durations.get_or_create_owned(&RouteLabel {
            route: Arc::clone(&name),
        });
        Self {
            name,
            requests: requests.clone(),
            counters: Default::default(),
            duration,
            upstream: upstream.clone(),
        }
    }

    /// The upstream families, for the forward handler's per-try events.
    pub fn upstream(&self) -> &UpstreamMetrics {
        &self.upstream
    }

    /// The route's name (its label value).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Counts one finished request.
    pub fn record(&self, method: &http::Method, status: u16, took: Duration) {
        let m = method_index(method);
        let s = status_class_index(status);
        if let Some(slot) = self.counters.get(m).and_then(|row| row.get(s)) {
            slot.get_or_init(|| {
                self.requests.get_or_create_owned(&RequestLabels {
                    route: Arc::clone(&self.name),
                    method: METHODS[m],
                    status_class: STATUS_CLASSES[s],
                })
            })
            .inc();
        }
        self.duration.observe(took);
    }
}

/// What a request holds for metrics from arrival to the end of its response.
pub struct RequestObservation {
    /// The route it matched (the unmatched handles until it does).
    pub route: Arc<RouteMetrics>,
    in_flight: Gauge,
}

impl RequestObservation {
    /// Counts the request as in flight on its listener until this is finished or dropped.
    pub fn start(route: Arc<RouteMetrics>, in_flight: Gauge) -> Self {
        in_flight.inc();
        Self { route, in_flight }
    }

    /// Counts the finished request.
    pub fn finish(&self, method: &http::Method, status: u16, took: Duration) {
        self.route.record(method, status, took);
    }
}

impl Drop for RequestObservation {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

/// Which exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, only when `Accept` asks for `application/openmetrics-text`.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, else the Prometheus text format.
    pub fn negotiate(accept: Option<&http::HeaderValue>) -> Self {
        let asks = accept.and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(',').any(|part| {
                let mut params = part.split(';');
                let media = params.next().unwrap_or("").trim();
                let refused = params.any(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if asks {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Encodes `registry` in this format.
    pub fn encode(self, registry: &Registry) -> String {
        let mut out = String::with_capacity(8192);
        let result = match self {
            Self::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
            }
            Self::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry),
        };
        if result.is_err() {
            tracing::warn!("metrics could not be encoded");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        Format::Prometheus.encode(&registry)
    }

    #[test]
    fn route_handles_share_the_family_so_a_recompiled_route_keeps_counting() {
        let metrics = Metrics::new();
        let name: Arc<str> = Arc::from("users");
        let first = metrics.route(&name);
        first.record(&http::Method::GET, 200, Duration::from_millis(3));
        let second = metrics.route(&name);
        second.record(&http::Method::GET, 204, Duration::from_millis(3));
        second.record(
            &http::Method::from_bytes(b"BREW").unwrap(),
            503,
            Duration::ZERO,
        );
        let out = text(&metrics);
        assert!(
            out.contains(
                "gantry_requests_total{route=\"users\",method=\"GET\",status_class=\"2xx\"} 2\n"
            ),
            "{out}"
        );
        assert!(out.contains(
            "gantry_requests_total{route=\"users\",method=\"other\",status_class=\"5xx\"} 1\n"
        ));
        assert!(out.contains("gantry_request_duration_seconds_count{route=\"users\"} 3\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new();
        metrics.auth_failure("jwt", "bad\"quote\n");
        assert!(text(&metrics).contains("reason=\"bad\\\"quote\\n\""));
    }

    #[test]
    fn openmetrics_only_when_asked() {
        let v = |s: &'static str| http::HeaderValue::from_static(s);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some(&v("text/plain;version=0.0.4"))),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(Some(&v(
                "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;q=0.5"
            ))),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some(&v("application/openmetrics-text;q=0"))),
            Format::Prometheus
        );
    }

    #[test]
    fn in_flight_goes_back_down_when_the_request_ends() {
        let metrics = Metrics::new();
        let gauge = metrics.listener_in_flight(&Arc::from("public"));
        let observation = RequestObservation::start(Arc::clone(metrics.unmatched()), gauge.clone());
        assert_eq!(gauge.get(), 1);
        drop(observation);
        assert_eq!(gauge.get(), 0);
    }
}
