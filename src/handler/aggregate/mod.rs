//! The `aggregate` handler (backend for frontend): one request in, several upstream calls out,
//! one JSON document back.
//!
//! Calls form a DAG (checked at config load): every call whose dependencies are done starts at
//! once, so independent calls run in parallel. Each call goes through its upstream cluster with
//! every resilience layer (`forward_to_cluster`) and gets at most what is left of the aggregate's
//! budget, never more than its own timeout. When the budget is gone the answer is assembled from
//! what arrived. A failed optional call is listed in `errors` (and uses its `fallback` if any);
//! a failed required call fails the whole aggregate with 502/504 naming it.

pub mod merge;
pub mod template;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use tokio::time::Instant;

use self::merge::{Contribution, Merge, OnConflict};
use self::template::{PathTemplate, Source};
use super::body::ResponseBody;
use super::forward::{OutgoingBody, UpstreamCall, forward_to_cluster};
use crate::error::GatewayError;
use crate::observe::access_log::AccessRecord;
use crate::observe::metrics::UpstreamMetrics;
use crate::observe::tracing::TraceContext;
use crate::pipeline::fields::ClientFields;
use crate::runtime::ServerSettings;
use crate::server::incoming::ClientBody;
use crate::upstream::cluster::UpstreamCluster;
use crate::upstream::fields::AddedFields;

/// Where the failed calls are listed in a partial answer.
const ERRORS_KEY: &str = "errors";
/// Where they go when an answer already has a top-level `errors` (deep merge, or a call or group
/// named `errors`).
const ERRORS_KEY_TAKEN: &str = "gantry_errors";

/// `Gantry-Aggregate: complete | partial` on every aggregate answer.
pub const AGGREGATE_HEADER: HeaderName = HeaderName::from_static("gantry-aggregate");

/// A compiled `aggregate:`.
pub struct Aggregate {
    /// Budget for the whole aggregate.
    pub budget: Duration,
    /// Calls in config order.
    pub calls: Vec<Call>,
    /// How answers are merged.
    pub merge: Merge,
    /// What a deep-merge collision does.
    pub on_conflict: OnConflict,
    /// Largest answer body read from one call.
    pub max_body_bytes: usize,
}

/// A compiled call.
pub struct Call {
    /// Name: key of its answer and of its `errors` entry.
    pub name: Arc<str>,
    /// The cluster it goes to.
    pub cluster: Arc<UpstreamCluster>,
    /// HTTP method.
    pub method: Method,
    /// Path and query template.
    pub path: PathTemplate,
    /// Indices of the calls it needs.
    pub depends_on: Vec<usize>,
    /// Its own timeout (the budget when not set).
    pub timeout: Duration,
    /// Whether its failure fails the aggregate.
    pub required: bool,
    /// Answer used when it fails.
    pub fallback: Option<Value>,
    /// Dotted paths kept, if set.
    pub select: Option<Vec<Vec<String>>>,
    /// Top-level renames.
    pub rename: Vec<(String, String)>,
    /// Key its answer goes under.
    pub group: Option<String>,
    /// Send the client's body with it.
    pub forward_body: bool,
}

/// What the edge hands the aggregate handler.
pub struct AggregateRequest {
    /// The edge-cleaned head of the client's request.
    pub parts: Parts,
    /// The client's body (read only when a call forwards it).
    pub body: ClientBody,
    /// Route path parameters, percent-decoded.
    pub params: Vec<(String, String)>,
    /// Host the client addressed.
    pub host: Option<HeaderValue>,
    /// Client IP.
    pub client_ip: IpAddr,
    /// The request's trace: every call is a child span of it.
    pub trace: TraceContext,
}

/// Why one call has no answer.
#[derive(Debug, Clone)]
struct CallError {
    status: u16,
    slug: &'static str,
    detail: String,
    kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureKind {
    Upstream,
    Timeout,
    /// The client did not send a value the call needs.
    Input,
}

impl CallError {
    fn new(status: u16, slug: &'static str, detail: impl Into<String>, kind: FailureKind) -> Self {
        Self {
            status,
            slug,
            detail: detail.into(),
            kind,
        }
    }

    fn from_gateway(err: &GatewayError) -> Self {
        let status = err.status().as_u16();
        let kind = if status == 504 {
            FailureKind::Timeout
        } else {
            FailureKind::Upstream
        };
        Self::new(status, err.slug(), err.to_string(), kind)
    }

    fn into_gateway(self, call: &str) -> GatewayError {
        let call = call.to_owned();
        let detail = self.detail;
        match self.kind {
            FailureKind::Timeout => GatewayError::AggregateCallTimeout { call, detail },
            FailureKind::Input => GatewayError::AggregateBadInput { call, detail },
            FailureKind::Upstream => GatewayError::AggregateCallFailed { call, detail },
        }
    }
}

type Outcome = Result<Value, CallError>;

/// Runs the aggregate and answers with the merged JSON document.
pub async fn aggregate(
    agg: &Aggregate,
    request: AggregateRequest,
    settings: &ServerSettings,
    metrics: &UpstreamMetrics,
) -> Result<Response<ResponseBody>, GatewayError> {
    let deadline = Instant::now() + agg.budget;
    let AggregateRequest {
        mut parts,
        body,
        params,
        host,
        client_ip,
        trace,
    } = request;
    let client_body = if agg.calls.iter().any(|c| c.forward_body) {
        read_client_body(body, settings.limits.max_body_bytes, deadline, agg.budget).await?
    } else {
        drop(body);
        Bytes::new()
    };
    // Calls ask for JSON, uncompressed, with their own framing.
    for name in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::ACCEPT_ENCODING,
        header::EXPECT,
    ] {
        parts.headers.remove(name);
    }
    parts
        .headers
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let query = parts.uri.query().unwrap_or("").to_owned();

    let n = agg.calls.len();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut started = vec![false; n];
    let mut running = FuturesUnordered::new();
    loop {
        // Start every call whose dependencies are done; a call that cannot start is done too,
        // so scan again until nothing changes.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for (i, call) in agg.calls.iter().enumerate() {
                if started[i] || call.depends_on.iter().any(|&d| outcomes[d].is_none()) {
                    continue;
                }
                started[i] = true;
                progressed = true;
                let rendered = render(call, agg, &params, &query, &parts, &outcomes);
                let path_and_query = match rendered {
                    Ok(path) => path,
                    Err(err) => {
                        if call.required && call.fallback.is_none() {
                            return Err(err.into_gateway(&call.name));
                        }
                        outcomes[i] = Some(Err(err));
                        continue;
                    }
                };
                let left = deadline.saturating_duration_since(Instant::now());
                let budget = call.timeout.min(left);
                let head = copy_head(&parts, &call.method);
                let body = if call.forward_body {
                    client_body.clone()
                } else {
                    Bytes::new()
                };
                let host = host.clone();
                let trace = trace.clone();
                running.push(async move {
                    let outcome = run_call(
                        call,
                        UpstreamCall {
                            parts: head,
                            body: OutgoingBody::Buffered(body),
                            path_and_query,
                            host,
                            client_ip,
                            client_upgrade: None,
                            budget: Some(budget),
                            trace: Some(trace),
                            // The call's head is Gantry's copy, changed above: every lookup runs.
                            fields: ClientFields::ALL,
                            // The edge put its fields in the map the calls copy.
                            added: AddedFields::default(),
                        },
                        budget,
                        agg.max_body_bytes,
                        settings,
                        metrics,
                    )
                    .await;
                    (i, outcome)
                });
            }
        }
        if running.is_empty() {
            break;
        }
        match tokio::time::timeout_at(deadline, running.next()).await {
            Ok(Some((i, outcome))) => {
                let call = &agg.calls[i];
                if let Err(err) = &outcome
                    && call.required
                {
                    return Err(err.clone().into_gateway(&call.name));
                }
                outcomes[i] = Some(outcome);
            }
            Ok(None) => break,
            Err(_budget_gone) => break,
        }
    }
    drop(running);

    let mut errors = Vec::new();
    let mut contributions = Vec::with_capacity(n);
    for (call, outcome) in agg.calls.iter().zip(outcomes) {
        let outcome = outcome.unwrap_or_else(|| {
            Err(CallError::new(
                504,
                "aggregate-budget-exhausted",
                format!("the aggregate's budget of {:?} ran out", agg.budget),
                FailureKind::Timeout,
            ))
        });
        let value = match outcome {
            Ok(value) => Some(value),
            Err(err) => {
                if call.required {
                    return Err(err.into_gateway(&call.name));
                }
                let mut entry = serde_json::json!({
                    "call": &*call.name,
                    "status": err.status,
                    "type": format!("urn:gantry:problem:{}", err.slug),
                    "detail": err.detail,
                });
                if call.fallback.is_some() {
                    entry["fallback"] = Value::Bool(true);
                }
                errors.push(entry);
                call.fallback.clone()
            }
        };
        if let Some(value) = value {
            contributions.push(Contribution {
                call: &call.name,
                group: call.group.as_deref(),
                value: shape(call, value),
            });
        }
    }
    let mut document = merge::assemble(agg.merge, agg.on_conflict, contributions)?;
    let state = if errors.is_empty() {
        "complete"
    } else {
        // An answer's own `errors` is data and is never overwritten: the list moves aside.
        let key = if document.contains_key(ERRORS_KEY) {
            ERRORS_KEY_TAKEN
        } else {
            ERRORS_KEY
        };
        document.insert(key.to_owned(), Value::Array(errors));
        "partial"
    };
    let body = serde_json::to_vec(&Value::Object(document)).map_err(|_| GatewayError::Internal)?;
    let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(AGGREGATE_HEADER, HeaderValue::from_static(state));
    headers.append(header::VIA, settings.via_entry.clone());
    Ok(response)
}

/// Select, then rename.
fn shape(call: &Call, value: Value) -> Value {
    let value = match &call.select {
        Some(paths) => merge::select(value, paths),
        None => value,
    };
    if call.rename.is_empty() {
        value
    } else {
        merge::rename(value, &call.rename)
    }
}

/// The call's path and query with every placeholder filled; a value that is missing is an error
/// of this call, never a panic.
fn render(
    call: &Call,
    agg: &Aggregate,
    params: &[(String, String)],
    query: &str,
    parts: &Parts,
    outcomes: &[Option<Outcome>],
) -> Result<String, CallError> {
    let input =
        |detail: String| CallError::new(400, "aggregate-missing-input", detail, FailureKind::Input);
    call.path.render(|source| match source {
        Source::Param(name) => params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| input(format!("path parameter {name} is missing"))),
        Source::Query(name) => template::query_param(query, name)
            .ok_or_else(|| input(format!("query parameter {name} is missing"))),
        Source::Header(name) => parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| input(format!("header {name} is missing"))),
        Source::Field { call: from, path } => {
            let index = agg.calls.iter().position(|c| &*c.name == from);
            let outcome = index.and_then(|i| outcomes.get(i)).and_then(Option::as_ref);
            let value = match outcome {
                Some(Ok(value)) => value,
                Some(Err(_)) => match index.and_then(|i| agg.calls[i].fallback.as_ref()) {
                    Some(fallback) => fallback,
                    None => {
                        return Err(CallError::new(
                            424,
                            "aggregate-dependency-failed",
                            format!("call {from} it depends on failed"),
                            FailureKind::Upstream,
                        ));
                    }
                },
                None => {
                    return Err(CallError::new(
                        424,
                        "aggregate-dependency-failed",
                        format!("call {from} it depends on did not answer"),
                        FailureKind::Upstream,
                    ));
                }
            };
            field(value, path).ok_or_else(|| {
                CallError::new(
                    424,
                    "aggregate-missing-field",
                    format!(
                        "field {from}.{} is missing or not a string, number or boolean",
                        path.join(".")
                    ),
                    FailureKind::Upstream,
                )
            })
        }
    })
}

/// A scalar at a dotted path (array elements by index) as text.
fn field(value: &Value, path: &[String]) -> Option<String> {
    let mut current = value;
    for segment in path {
        current = match current {
            Value::Object(object) => object.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match current {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// One call: through the cluster's resilience layers, then its body read (capped) and parsed.
async fn run_call(
    call: &Call,
    request: UpstreamCall<'_>,
    budget: Duration,
    max_body: usize,
    settings: &ServerSettings,
    metrics: &UpstreamMetrics,
) -> Outcome {
    if budget.is_zero() {
        return Err(CallError::new(
            504,
            "aggregate-budget-exhausted",
            "no time was left in the aggregate's budget",
            FailureKind::Timeout,
        ));
    }
    let mut record = AccessRecord::new(
        None,
        request.client_ip,
        request.parts.method.clone(),
        request.parts.version,
    );
    let work = async {
        let response = forward_to_cluster(&call.cluster, request, settings, metrics, &mut record)
            .await
            .map_err(|err| CallError::from_gateway(&err))?;
        let status = response.status();
        if !status.is_success() {
            return Err(CallError::new(
                status.as_u16(),
                "aggregate-upstream-status",
                format!(
                    "upstream {} answered {}",
                    call.cluster.name,
                    status.as_u16()
                ),
                FailureKind::Upstream,
            ));
        }
        let bytes = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|err| {
                if err.is::<http_body_util::LengthLimitError>() {
                    CallError::new(
                        502,
                        "aggregate-body-too-large",
                        format!("the answer is larger than {max_body} bytes"),
                        FailureKind::Upstream,
                    )
                } else {
                    CallError::new(
                        502,
                        "aggregate-body-failed",
                        "the answer body could not be read",
                        FailureKind::Upstream,
                    )
                }
            })?
            .to_bytes();
        if status == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|_| {
            CallError::new(
                502,
                "aggregate-invalid-json",
                "the answer is not JSON",
                FailureKind::Upstream,
            )
        })
    };
    match tokio::time::timeout(budget, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(CallError::new(
            504,
            "aggregate-call-timeout",
            format!("no complete answer within {budget:?}"),
            FailureKind::Timeout,
        )),
    }
}

/// Reads the client's body once (for calls that forward it), within the size limit and budget.
async fn read_client_body(
    body: ClientBody,
    limit: u64,
    deadline: Instant,
    budget: Duration,
) -> Result<Bytes, GatewayError> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match tokio::time::timeout_at(deadline, Limited::new(body, cap).collect()).await {
        Err(_) => Err(GatewayError::RequestBodyTimeout { after: budget }),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Ok(Err(err)) => Err(GatewayError::BadRequestBody {
            reason: err.to_string(),
        }),
    }
}

/// A copy of the client's head with the call's method.
fn copy_head(parts: &Parts, method: &Method) -> Parts {
    let (mut copy, ()) = Request::new(()).into_parts();
    copy.method = method.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    copy
}
