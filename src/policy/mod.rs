//! Route policies: what may stop a routed request before its handler runs.
//!
//! The order is fixed here and nowhere else (DESIGN.md):
//!
//! ```text
//! server.ip (every request, before routing)
//! route found ─► ip allow/deny (403) ─► cors (preflight answered here; 403 for a refused preflight)
//! ─► rate limit by ip/route/header/global (429 / 503) ─► auth (401 / 403 / 503)
//! ─► rate limit by consumer (429 / 503; a refusal gives back what the first stage took) ─► handler
//! ```
//!
//! Each stage is an `Option` on the compiled route, checked in turn with static dispatch: a route
//! without policies carries `None` and pays one branch. A policy never calls another; [`apply`]
//! calls them in order. CORS runs before auth so that the gateway's own 401/403/429 answers still
//! carry the CORS headers a browser needs to read them (the edge adds them to error responses too).

pub mod auth;
pub mod cache;
pub mod clock;
pub mod cors;
pub mod ip;
pub mod rate_limit;

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Response};

use crate::error::GatewayError;

pub use auth::{AuthPolicy, Identity, Security};
pub use cors::CorsPolicy;
pub use ip::IpRules;

/// The compiled policies of one route; each `None` costs one branch.
#[derive(Debug, Default)]
pub struct RoutePolicies {
    /// Client IP rules.
    pub ip: Option<IpRules>,
    /// CORS.
    pub cors: Option<CorsPolicy>,
    /// Authentication and authorization.
    pub auth: Option<AuthPolicy>,
    /// Rate limits and quotas (the server's and the route's).
    pub rate_limit: Option<rate_limit::RateLimitSet>,
}

/// What the policy stage decided for a request that was not refused.
pub enum PolicyOutcome {
    /// The gateway answers itself (a CORS preflight).
    Answer(Response<Bytes>),
    /// Go on to the handler, with the caller's identity when the route authenticates.
    Continue(Option<Identity>),
}

/// Runs the route's policies in the fixed order. `cors_headers` receives the CORS headers for
/// the final response (success or error) as soon as the CORS stage has decided them;
/// `rate_headers` likewise receives `RateLimit-Policy` and `RateLimit`.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    policies: &RoutePolicies,
    security: &Security,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    client_ip: IpAddr,
    cors_headers: &mut Option<HeaderMap>,
    rate_headers: &mut Option<HeaderMap>,
) -> Result<PolicyOutcome, GatewayError> {
    if let Some(ip) = &policies.ip {
        ip.check(client_ip)?;
    }
    if let Some(cors) = &policies.cors {
        match cors.evaluate(method, headers)? {
            cors::CorsDecision::Preflight(response) => return Ok(PolicyOutcome::Answer(response)),
            cors::CorsDecision::Actual(out) => *cors_headers = Some(out),
            cors::CorsDecision::NotCors => {}
        }
    }
    let mut taken = None;
    if let Some(limits) = &policies.rate_limit {
        let ctx = rate_limit::KeyContext {
            ip: client_ip,
            route: &limits.route,
            headers,
            identity: None,
        };
        taken = Some(limits.check(false, &ctx, rate_headers).await?);
    }
    let identity = match &policies.auth {
        Some(auth) => Some(auth.authenticate(security, headers, query).await?),
        None => None,
    };
    if let Some(limits) = &policies.rate_limit
        && !limits.after_auth.is_empty()
    {
        let ctx = rate_limit::KeyContext {
            ip: client_ip,
            route: &limits.route,
            headers,
            identity: identity.as_ref(),
        };
        if let Err(refused) = limits.check(true, &ctx, rate_headers).await {
            // All-or-nothing across both stages: the first stage's admissions go back.
            if let Some(taken) = taken {
                taken.give_back().await;
            }
            return Err(refused);
        }
    }
    Ok(PolicyOutcome::Continue(identity))
}

/// Whether `method`/`headers` form a CORS preflight, and for which method.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(http::header::ORIGIN) {
        return None;
    }
    let requested = headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(requested.as_bytes()).ok()
}
