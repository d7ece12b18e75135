//! `gantry demo`: built-in demo upstreams and the embedded demo config, so the gateway can be
//! tried with nothing else running.
//!
//! Two instances of a `users` service (so round robin is visible in the `instance` field) and one
//! `orders` service, each a tiny HTTP server on an ephemeral loopback port that answers JSON
//! describing the request it received.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The demo config, embedded from `examples/demo.yaml`.
pub const DEMO_CONFIG: &str = include_str!("../examples/demo.yaml");

/// Addresses of the running demo upstreams.
#[derive(Debug, Clone, Copy)]
pub struct DemoUpstreams {
    /// `users` instance 1.
    pub users_1: SocketAddr,
    /// `users` instance 2.
    pub users_2: SocketAddr,
    /// `orders`.
    pub orders: SocketAddr,
}

impl DemoUpstreams {
    /// Starts the three demo services on 127.0.0.1 ephemeral ports.
    pub async fn start() -> std::io::Result<Self> {
        Ok(Self {
            users_1: spawn_service("users", "users-1").await?,
            users_2: spawn_service("users", "users-2").await?,
            orders: spawn_service("orders", "orders-1").await?,
        })
    }

    /// Values for the `${DEMO_*}` variables of the demo config.
    pub fn env(&self, name: &str) -> Option<String> {
        match name {
            "DEMO_USERS_1" => Some(self.users_1.to_string()),
            "DEMO_USERS_2" => Some(self.users_2.to_string()),
            "DEMO_ORDERS" => Some(self.orders.to_string()),
            _ => std::env::var(name).ok(),
        }
    }
}

async fn spawn_service(
    service: &'static str,
    instance: &'static str,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(service, instance, req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(
    service: &'static str,
    instance: &'static str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body_len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes())
                    .into_owned()
                    .into(),
            )
        })
        .collect();
    let mut json = serde_json::json!({
        "service": service,
        "instance": instance,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": body_len,
    });
    if service == "orders" {
        json["orders"] = serde_json::json!([
            { "id": 1, "item": "coffee", "total": 3.5 },
            { "id": 2, "item": "bagel", "total": 2.25 }
        ]);
    }
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
