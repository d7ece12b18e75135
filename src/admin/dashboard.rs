//! `GET /dashboard`: one self-contained page (embedded with rust-embed, no CDN) for incidents.
//!
//! The page polls `/metrics` (rates, error rates and latency quantiles are computed in the browser
//! from the differences between two scrapes, so they describe the last second, not the process
//! lifetime) and `/dashboard/state.json` (targets, breakers, config version, last reload error,
//! recent errors) once a second. Both are open like `/metrics`: they show no secret.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::gateway::RunningGateway;

#[derive(rust_embed::Embed)]
#[folder = "src/admin/dashboard/"]
struct Assets;

/// The page itself.
pub fn page() -> Response<Full<Bytes>> {
    match Assets::get("index.html") {
        Some(file) => {
            let mut rsp = Response::new(Full::new(Bytes::from(file.data.into_owned())));
            rsp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            rsp.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
                ),
            );
            rsp
        }
        None => {
            let mut rsp = Response::new(Full::new(Bytes::from_static(b"dashboard missing")));
            *rsp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            rsp
        }
    }
}

/// What the page shows besides the metrics.
pub fn state(gateway: &RunningGateway) -> serde_json::Value {
    let runtime = gateway.runtime();
    let status = gateway.status();
    let upstreams: Vec<serde_json::Value> = runtime
        .upstreams
        .values()
        .map(|cluster| cluster.admin_view())
        .collect();
    serde_json::json!({
        "version": status.version,
        "loaded_at_unix": status.loaded_at_unix,
        "last_reload_error": status.last_error,
        "reloads_succeeded": status.reloads_succeeded,
        "reloads_failed": status.reloads_failed,
        "draining": gateway.is_draining(),
        "upstreams": upstreams,
        "recent_errors": runtime.metrics.recent_errors(),
    })
}
