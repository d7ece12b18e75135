//! One access-log line per request, written off the request path.
//!
//! A request carries an [`AccessRecord`]; when the response body ends (or the request is dropped
//! because the client went away) the record is formatted and handed to a background thread over a
//! bounded channel. The thread writes through a buffered writer and flushes whenever it catches up,
//! so a busy gateway makes few syscalls and an idle one shows its lines at once. When the channel is
//! full, lines are dropped and counted rather than slowing requests down.
//!
//! Secrets never reach the log: the path is logged without its query string unless the query has no
//! credential parameter, and header values are not logged at all.

use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{Receiver, Sender};

use crate::handler::body::{BodyFailure, BodyProgress};

/// Access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// NCSA common log format.
    Common,
}

/// Where lines go, and in which format. Cloned into every request as an `Arc`.
pub struct AccessLog {
    format: LogFormat,
    lines: Sender<String>,
    dropped: AtomicU64,
    sampled_out: AtomicU64,
}

impl AccessLog {
    /// Starts the writer thread for `output`: `stdout`, `stderr` or a file path (appended).
    pub fn start(format: LogFormat, output: &str) -> std::io::Result<Arc<Self>> {
        let sink: Box<dyn Write + Send> = match output {
            "stdout" => Box::new(std::io::stdout()),
            "stderr" => Box::new(std::io::stderr()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        // tokio's bounded channel rather than std's: std's `sync_channel` builds all 65,536 slots
        // up front (2 MiB resident from start-up, most of an idle gateway's heap); tokio's grows
        // in blocks of 32 as lines queue up and frees them as the writer catches up. Same bound,
        // same drop-when-full. The writer is a plain thread, so it may block on `blocking_recv`.
        let (lines, receiver) = tokio::sync::mpsc::channel(QUEUE_LINES);
        std::thread::Builder::new()
            .name("gantry-access-log".into())
            .spawn(move || write_lines(receiver, sink))?;
        Ok(Arc::new(Self {
            format,
            lines,
            dropped: AtomicU64::new(0),
            sampled_out: AtomicU64::new(0),
        }))
    }

    /// Successful requests not written because of `sample_successes`.
    pub fn sampled_out(&self) -> u64 {
        self.sampled_out.load(Ordering::Relaxed)
    }

    /// Lines dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn submit(&self, record: &AccessRecord) {
        let line = match self.format {
            LogFormat::Json => record.to_json(),
            LogFormat::Common => record.to_common(),
        };
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Lines that may wait for the writer; beyond that they are dropped and counted.
const QUEUE_LINES: usize = 65_536;

fn write_lines(mut receiver: Receiver<String>, sink: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink);
    while let Some(line) = receiver.blocking_recv() {
        let _ = out.write_all(line.as_bytes());
        while let Ok(more) = receiver.try_recv() {
            let _ = out.write_all(more.as_bytes());
        }
        let _ = out.flush();
    }
}

/// Everything logged about one request, filled in as it travels; written on drop.
pub struct AccessRecord {
    log: Option<Arc<AccessLog>>,
    started: Instant,
    /// When the request arrived (wall clock).
    pub started_wall: SystemTime,
    /// The request id.
    pub request_id: String,
    /// Derived client IP.
    pub client_ip: IpAddr,
    /// Request method.
    pub method: http::Method,
    /// Request path, query redacted when it carries credentials.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub version: http::Version,
    /// Matched route name.
    pub route: Option<Arc<str>>,
    /// Upstream cluster name.
    pub upstream: Option<Arc<str>>,
    /// The authenticated consumer (route auth), if any.
    pub consumer: Option<Arc<str>>,
    /// Target `host:port`.
    pub target: Option<String>,
    /// Final status; 499 when the client left first.
    pub status: u16,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes written.
    pub bytes_out: u64,
    /// Time until upstream response headers.
    pub upstream_ms: Option<f64>,
    /// Tries sent upstream (more than one when retried).
    pub tries: u32,
    /// Whether the route's fallback answered instead of the upstream.
    pub fallback: bool,
    /// Problem slug when Gantry answered with an error.
    pub error: Option<&'static str>,
    /// Whether the response body ended normally.
    pub complete: bool,
    /// Why the response body stopped, if it did.
    pub body_error: Option<BodyFailure>,
    /// The request body's progress, read when the line is written.
    pub request_body: Option<Arc<BodyProgress>>,
    /// The sampled trace whose server span is exported when the record is done.
    pub trace: Option<crate::observe::tracing::TraceContext>,
    /// Share of successes written (the matched route's `sample_successes`; 1 = all).
    pub log_successes: f64,
    /// The W3C trace id (32 hex digits).
    pub trace_id: Option<crate::observe::tracing::TraceId>,
    /// Request metrics, counted when the record is done (whether or not the log is on).
    pub observation: Option<crate::observe::metrics::RequestObservation>,
}

impl AccessRecord {
    /// Starts a record; `log: None` records nothing (access log off).
    pub fn new(
        log: Option<Arc<AccessLog>>,
        client_ip: IpAddr,
        method: http::Method,
        version: http::Version,
    ) -> Self {
        Self {
            log,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            request_id: String::new(),
            client_ip,
            method,
            path: String::new(),
            version,
            route: None,
            upstream: None,
            consumer: None,
            target: None,
            status: 499,
            bytes_in: 0,
            bytes_out: 0,
            upstream_ms: None,
            tries: 0,
            fallback: false,
            error: Some("client-closed"),
            complete: false,
            body_error: None,
            request_body: None,
            observation: None,
            trace_id: None,
            trace: None,
            log_successes: 1.0,
        }
    }

    /// Whether this record will be written (the access log is on).
    pub fn is_enabled(&self) -> bool {
        self.log.is_some()
    }

    /// Milliseconds since the request started.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    fn to_json(&self) -> String {
        let value = serde_json::json!({
            "time": rfc3339(self.started_wall),
            "request_id": self.request_id,
            "trace_id": self.trace_id.map(|t| t.to_string()),
            "client_ip": self.client_ip.to_string(),
            "method": self.method.as_str(),
            "path": self.path,
            "protocol": format!("{:?}", self.version),
            "route": self.route.as_deref(),
            "upstream": self.upstream.as_deref(),
            "consumer": self.consumer.as_deref(),
            "target": self.target,
            "status": self.status,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "duration_ms": round3(self.elapsed_ms()),
            "upstream_ms": self.upstream_ms.map(round3),
            "tries": self.tries,
            "fallback": self.fallback,
            "error": self.error,
            "complete": self.complete,
            "body_error": self.body_error.as_ref().map(|f| format!("{f:?}")),
        });
        let mut line = value.to_string();
        line.push('\n');
        line
    }

    fn to_common(&self) -> String {
        let mut line = String::with_capacity(128);
        let _ = writeln!(
            line,
            "{} - {} [{}] \"{} {} {:?}\" {} {}",
            self.client_ip,
            self.consumer.as_deref().unwrap_or("-"),
            rfc3339(self.started_wall),
            self.method,
            self.path,
            self.version,
            self.status,
            self.bytes_out
        );
        line
    }
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        if let Some(trace) = self.trace.take()
            && let Some(exporter) = &trace.exporter
        {
            exporter.server_span(
                &trace,
                self.route.as_deref(),
                &self.method,
                self.status,
                self.started_wall,
            );
        }
        if let Some(observation) = self.observation.take() {
            observation.finish(&self.method, self.status, self.started.elapsed());
        }
        if let Some(log) = self.log.take() {
            let success = self.status < 400 && self.error.is_none() && self.body_error.is_none();
            if success && self.log_successes < 1.0 && super::random::unit() >= self.log_successes {
                log.sampled_out.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if let Some(progress) = &self.request_body {
                self.bytes_in = progress.received.load(Ordering::Relaxed);
            }
            log.submit(self);
        }
    }
}

fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Query parameters whose values are credentials and never logged or echoed.
const SECRET_QUERY_PARAMS: [&str; 6] = [
    "api_key",
    "apikey",
    "access_token",
    "token",
    "password",
    "client_secret",
];

/// The path and query for logs: credential parameter values replaced by `REDACTED`.
pub fn redact_path_and_query(path: &str, query: Option<&str>) -> String {
    let Some(query) = query else {
        return path.to_owned();
    };
    let mut out = String::with_capacity(path.len() + query.len() + 1);
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let name = pair.split('=').next().unwrap_or("");
        if SECRET_QUERY_PARAMS
            .iter()
            .any(|secret| secret.eq_ignore_ascii_case(name))
        {
            out.push_str(name);
            out.push_str("=REDACTED");
        } else {
            out.push_str(pair);
        }
    }
    out
}

/// `2026-11-28T13:35:39.123Z` from a system time, without a date crate.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn credentials_in_the_query_are_redacted() {
        assert_eq!(
            redact_path_and_query("/a", Some("x=1&api_key=s3cret&ACCESS_TOKEN=t")),
            "/a?x=1&api_key=REDACTED&ACCESS_TOKEN=REDACTED"
        );
        assert_eq!(redact_path_and_query("/a", None), "/a");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_872_939_123);
        assert_eq!(rfc3339(t), "2026-11-28T13:35:39.123Z");
    }
}
