//! The admin listener: probes, metrics, and the `/admin/` API (config, routes, upstreams, reload).
//!
//! It runs on its own address (`admin.address`), never on a public listener. Everything under
//! `/admin/` needs `Authorization: Bearer <admin.token>` when a token is configured (compared in
//! constant time); `/healthz`, `/readyz`, `/metrics` and `/dashboard` need none. Answers are JSON; errors are
//! problem+json in the same shape as the gateway's own. A dozen fixed endpoints are matched with one
//! `match`, which keeps the admin API free of a web framework.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::task::JoinHandle;

use crate::gateway::{ReloadError, RunningGateway};
use crate::runtime::AdminSettings;

mod dashboard;
mod metrics;

/// The OpenAPI description of this API, served at `GET /admin/openapi.json`.
const OPENAPI: &str = include_str!("openapi.json");

/// Binds the admin address and serves until the gateway shuts down.
pub async fn serve(
    settings: AdminSettings,
    gateway: RunningGateway,
) -> std::io::Result<JoinHandle<()>> {
    let listener = crate::server::listener::bind(settings.address).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "admin API listening");
    eprintln!("gantry: admin on http://{bound}");
    let mut stop = gateway.background_stop();
    let token = settings.token.map(|t| t.into_bytes());
    gateway.set_admin_addr(bound);
    Ok(tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(_) => continue,
                },
                _ = stop.changed() => return,
            };
            let gateway = gateway.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let gateway = gateway.clone();
                    let token = token.clone();
                    async move { Ok::<_, Infallible>(handle(&gateway, token.as_deref(), req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

async fn handle(
    gateway: &RunningGateway,
    token: Option<&[u8]>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path.starts_with("/admin/") && !authorized(token, req.headers()) {
        let mut rsp = problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs Authorization: Bearer <admin.token>",
            &path,
        );
        rsp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return rsp;
    }
    let allow = match path.as_str() {
        "/healthz"
        | "/readyz"
        | "/metrics"
        | "/dashboard"
        | "/dashboard/state.json"
        | "/admin/config"
        | "/admin/routes"
        | "/admin/upstreams"
        | "/admin/status"
        | "/admin/openapi.json" => "GET",
        "/admin/reload" => "POST",
        _ => {
            return problem(
                StatusCode::NOT_FOUND,
                "no-route",
                "no such admin endpoint",
                &path,
            );
        }
    };
    if method.as_str() != allow {
        let mut rsp = problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            &format!("use {allow}"),
            &path,
        );
        rsp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return rsp;
    }
    match path.as_str() {
        "/healthz" => json(StatusCode::OK, &serde_json::json!({ "status": "alive" })),
        "/readyz" => readiness(gateway, &path),
        "/metrics" => metrics(gateway, req.headers().get(header::ACCEPT)).await,
        "/dashboard" => dashboard::page(),
        "/dashboard/state.json" => json(StatusCode::OK, &dashboard::state(gateway)),
        "/admin/config" => {
            let runtime = gateway.runtime();
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "version": runtime.version,
                    "config": runtime.effective_config(),
                }),
            )
        }
        "/admin/routes" => json(StatusCode::OK, &gateway.runtime().route_summaries()),
        "/admin/upstreams" => json(StatusCode::OK, &upstreams(gateway)),
        "/admin/status" => json(StatusCode::OK, &gateway.status()),
        "/admin/openapi.json" => {
            let mut rsp = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            rsp
        }
        _ => reload(gateway, &path).await,
    }
}

fn readiness(gateway: &RunningGateway, path: &str) -> Response<Full<Bytes>> {
    if gateway.is_draining() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the gateway is shutting down",
            path,
        );
    }
    let runtime = gateway.runtime();
    // A discovered upstream has no targets until its first DNS lookup has been made.
    if let Some(waiting) = runtime
        .upstreams
        .values()
        .find(|cluster| !cluster.discovery_settled())
    {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "warming-up",
            &format!(
                "upstream {} is waiting for its first DNS answer",
                waiting.name
            ),
            path,
        );
    }
    json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ready", "version": runtime.version }),
    )
}

async fn reload(gateway: &RunningGateway, path: &str) -> Response<Full<Bytes>> {
    match gateway.reload().await {
        Ok(status) => json(StatusCode::OK, &status),
        Err(ReloadError::Invalid(errors)) => {
            let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            let mut body = problem_body(
                StatusCode::BAD_REQUEST,
                "invalid-config",
                "the new config was rejected; the running config keeps serving",
                path,
            );
            body["errors"] = serde_json::json!(lines);
            problem_response(StatusCode::BAD_REQUEST, &body)
        }
        Err(err @ ReloadError::NoSource) => problem(
            StatusCode::CONFLICT,
            "reload-unavailable",
            &err.to_string(),
            path,
        ),
        Err(err @ ReloadError::Bind(_)) => problem(
            StatusCode::BAD_REQUEST,
            "invalid-config",
            &err.to_string(),
            path,
        ),
        Err(err @ ReloadError::ShuttingDown) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            &err.to_string(),
            path,
        ),
    }
}

fn upstreams(gateway: &RunningGateway) -> serde_json::Value {
    let runtime = gateway.runtime();
    let list: Vec<serde_json::Value> = runtime
        .upstreams
        .values()
        .map(|cluster| cluster.admin_view())
        .collect();
    serde_json::Value::Array(list)
}

/// Prometheus text by default; OpenMetrics when the scraper's `Accept` asks for it.
async fn metrics(gateway: &RunningGateway, accept: Option<&HeaderValue>) -> Response<Full<Bytes>> {
    let format = crate::observe::metrics::Format::negotiate(accept);
    let body = metrics::render(gateway, format).await;
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    rsp
}

/// Whether the request carries the admin token (always true when none is configured).
fn authorized(token: Option<&[u8]>, headers: &http::HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    constant_time_eq(presented, token)
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut rsp = Response::new(Full::new(Bytes::from(body)));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rsp
}

/// An admin error in the gateway's problem+json shape.
fn problem(status: StatusCode, slug: &str, detail: &str, instance: &str) -> Response<Full<Bytes>> {
    problem_response(status, &problem_body(status, slug, detail, instance))
}

fn problem_body(status: StatusCode, slug: &str, detail: &str, instance: &str) -> serde_json::Value {
    serde_json::json!({
        "type": format!("urn:gantry:problem:{slug}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "instance": instance,
        "request_id": crate::observe::request_id::RequestId::generate().to_string(),
    })
}

fn problem_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut rsp = json(status, body);
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    rsp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn the_openapi_document_is_json() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["paths"]["/admin/reload"].is_object());
    }
}
