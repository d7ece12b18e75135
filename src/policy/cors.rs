//! CORS: the gateway answers preflights itself and decorates actual responses.
//!
//! Origins are matched exactly against the allow-list; an arbitrary `Origin` is never reflected.
//! `"*"` is allowed only without credentials (a config error otherwise), and then `*` is sent, not
//! the caller's origin. A cross-origin request from a foreign origin is still forwarded (CORS is
//! enforced by the browser, which will not let the page read it); only a refused preflight is 403.

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use crate::error::GatewayError;

/// Puts the CORS headers decided for a request on its response: they replace the upstream's own
/// `Access-Control-*` (the gateway owns CORS on this route), while `Origin` is added to `Vary`
/// without dropping what the upstream varies on.
pub fn apply_headers(response: &mut HeaderMap, cors: HeaderMap) {
    for (name, value) in &cors {
        if name == VARY {
            let present = response.get_all(VARY).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*")
                })
            });
            if !present {
                response.append(VARY, value.clone());
            }
        } else {
            response.insert(name.clone(), value.clone());
        }
    }
}

/// A compiled CORS policy; header values are rendered once at config compile time.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    /// Exact origins allowed.
    pub origins: Vec<HeaderValue>,
    /// `"*"` was configured (never with credentials).
    pub any_origin: bool,
    /// Methods allowed cross-origin.
    pub methods: Vec<Method>,
    /// The `Access-Control-Allow-Methods` value.
    pub methods_header: HeaderValue,
    /// Lowercase request header names allowed.
    pub headers: Vec<HeaderName>,
    /// The `Access-Control-Allow-Headers` value, if any are allowed.
    pub headers_header: Option<HeaderValue>,
    /// The `Access-Control-Expose-Headers` value.
    pub expose_header: Option<HeaderValue>,
    /// Credentials allowed.
    pub credentials: bool,
    /// The `Access-Control-Max-Age` value.
    pub max_age: Option<HeaderValue>,
}

/// What CORS decided for a request.
#[derive(Debug)]
pub enum CorsDecision {
    /// No `Origin`, or an origin we do not serve: nothing to add.
    NotCors,
    /// A preflight the gateway answers.
    Preflight(Response<Bytes>),
    /// An actual cross-origin request: add these headers to whatever response it gets.
    Actual(HeaderMap),
}

impl CorsPolicy {
    /// Decides for one request; a preflight that asks for too much is a 403.
    pub fn evaluate(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<CorsDecision, GatewayError> {
        let Some(origin) = headers.get(ORIGIN) else {
            return Ok(CorsDecision::NotCors);
        };
        let allowed = self.allow_origin(origin);
        if let Some(requested) = super::preflight_method(method, headers) {
            let Some(allow_origin) = allowed else {
                return Err(GatewayError::CorsDenied {
                    reason: "origin not allowed",
                });
            };
            if !self.methods.contains(&requested) {
                return Err(GatewayError::CorsDenied {
                    reason: "method not allowed",
                });
            }
            if !self.headers_allowed(headers) {
                return Err(GatewayError::CorsDenied {
                    reason: "request header not allowed",
                });
            }
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            let out = response.headers_mut();
            self.common(out, allow_origin);
            out.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods_header.clone());
            if let Some(value) = &self.headers_header {
                out.insert(ACCESS_CONTROL_ALLOW_HEADERS, value.clone());
            }
            if let Some(value) = &self.max_age {
                out.insert(ACCESS_CONTROL_MAX_AGE, value.clone());
            }
            return Ok(CorsDecision::Preflight(response));
        }
        let Some(allow_origin) = allowed else {
            return Ok(CorsDecision::NotCors);
        };
        let mut out = HeaderMap::new();
        self.common(&mut out, allow_origin);
        if let Some(value) = &self.expose_header {
            out.insert(ACCESS_CONTROL_EXPOSE_HEADERS, value.clone());
        }
        Ok(CorsDecision::Actual(out))
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, when it is allowed.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        if self.origins.iter().any(|o| o == origin) {
            Some(origin.clone())
        } else if self.any_origin {
            Some(HeaderValue::from_static("*"))
        } else {
            None
        }
    }

    fn headers_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .all(|value| match value.to_str() {
                Ok(text) => text
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .all(|name| {
                        self.headers
                            .iter()
                            .any(|allowed| allowed.as_str().eq_ignore_ascii_case(name))
                    }),
                Err(_) => false,
            })
    }

    fn common(&self, out: &mut HeaderMap, allow_origin: HeaderValue) {
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        // The answer depends on Origin: caches must not serve one origin's answer to another.
        out.insert(VARY, HeaderValue::from_static("Origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_is_extended_and_access_control_headers_replaced() {
        let mut response = HeaderMap::new();
        response.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        let mut cors = HeaderMap::new();
        cors.insert(VARY, HeaderValue::from_static("Origin"));
        cors.insert(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://app.example.com"),
        );
        apply_headers(&mut response, cors.clone());
        let vary: Vec<_> = response.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);
        assert_eq!(
            response[ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        apply_headers(&mut response, cors);
        assert_eq!(response.get_all(VARY).iter().count(), 2);
    }
}
