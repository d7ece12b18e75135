//! Authentication (who is calling) and coarse authorization (may they call this route).
//!
//! A route lists `methods`; any one of them may succeed, tried in the order written. A method
//! whose credential is absent is skipped; when none succeeds the caller gets 401 with one
//! `WWW-Authenticate` challenge per scheme, or 503 when a verifier could not decide (IdP down,
//! password checks saturated). A known caller missing a scope or claim gets 403.

pub mod api_key;
pub mod basic;
pub mod introspection;
pub mod jwks;
pub mod jwt;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::GatewayError;

pub use api_key::ApiKeys;
pub use basic::BasicVerifier;
pub use introspection::Introspector;
pub use jwt::JwtVerifier;

/// The header API keys are read from.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");
/// The query parameter API keys are read from (removed before forwarding).
pub const API_KEY_PARAM: &str = "api_key";
/// Identity header: the consumer's name.
pub const CONSUMER_HEADER: HeaderName = HeaderName::from_static("gantry-consumer");
/// Identity header: the subject (token `sub`, or the consumer).
pub const SUBJECT_HEADER: HeaderName = HeaderName::from_static("gantry-subject");
/// Identity header: granted scopes, space-separated.
pub const SCOPES_HEADER: HeaderName = HeaderName::from_static("gantry-scopes");

/// A consumer from the config.
#[derive(Debug)]
pub struct Consumer {
    /// Its name.
    pub name: Arc<str>,
    /// Scopes granted when it authenticates by API key or Basic credentials.
    pub scopes: Vec<String>,
    /// Its metadata (also the claims that `claims` rules see for API key and Basic callers).
    pub metadata: BTreeMap<String, String>,
}

/// Everything auth needs that is shared across routes: consumers, their credentials, providers.
#[derive(Debug, Default)]
pub struct Security {
    /// Consumers in file order.
    pub consumers: Vec<Consumer>,
    /// Consumer index by name.
    pub by_name: HashMap<String, usize>,
    /// API key digests.
    pub api_keys: ApiKeys,
    /// Basic credential checks.
    pub basic: Option<BasicVerifier>,
    /// Named providers.
    pub providers: HashMap<String, Provider>,
    /// `server.ip`, checked for every request before routing.
    pub global_ip: Option<super::IpRules>,
}

/// A named token verifier.
#[derive(Debug, Clone)]
pub enum Provider {
    /// JWT verified locally.
    Jwt(Arc<JwtVerifier>),
    /// RFC 7662 introspection.
    Introspection(Arc<Introspector>),
}

/// One way a route accepts callers.
#[derive(Debug, Clone)]
pub enum AuthMethod {
    /// `X-Api-Key` or `?api_key=`.
    ApiKey,
    /// `Authorization: Basic`.
    Basic,
    /// `Authorization: Bearer` with a provider.
    Provider(Provider),
}

impl AuthMethod {
    /// The `method` label of `gantry_auth_failures_total`.
    fn metric_label(&self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Basic => "basic",
            Self::Provider(Provider::Jwt(_)) => "jwt",
            Self::Provider(Provider::Introspection(_)) => "introspection",
        }
    }
}

/// Who the caller is, once authenticated.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The consumer's name, when known.
    pub consumer: Option<Arc<str>>,
    /// Index into `Security::consumers` when the consumer is configured.
    pub consumer_index: Option<usize>,
    /// Token subject (or the consumer for API key / Basic).
    pub subject: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Claims that `claims` rules are checked against.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
}

impl Identity {
    /// The identity of a configured consumer (API key, Basic).
    pub fn of_consumer(security: &Security, index: usize) -> Self {
        let consumer = security.consumers.get(index);
        Self {
            consumer: consumer.map(|c| Arc::clone(&c.name)),
            consumer_index: consumer.map(|_| index),
            subject: consumer.map(|c| c.name.to_string()),
            scopes: consumer.map(|c| c.scopes.clone()).unwrap_or_default(),
            claims: consumer.map(|c| {
                Arc::new(
                    c.metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect(),
                )
            }),
        }
    }
}

/// Why a verifier refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credential is wrong, malformed, expired... (401).
    Invalid(&'static str),
    /// The verifier could not decide now (503).
    Unavailable(&'static str),
}

/// A route's compiled auth policy.
#[derive(Debug)]
pub struct AuthPolicy {
    /// Accepted methods, tried in order.
    pub methods: Vec<AuthMethod>,
    /// Scopes the caller must all hold.
    pub scopes: Vec<String>,
    /// Claims that must equal these values.
    pub claims: Vec<(String, String)>,
    /// Send identity headers upstream.
    pub forward_identity: bool,
    /// Consumer metadata sent upstream: (key, header name).
    pub forward_metadata: Vec<(String, HeaderName)>,
    /// Forward the credential upstream.
    pub forward_credentials: bool,
    /// One `WWW-Authenticate` value per scheme, rendered at compile time.
    pub challenges: Arc<[HeaderValue]>,
    /// The same, with `error="invalid_token"` on the Bearer challenge (RFC 6750 §3.1): sent when
    /// a bearer token was presented and refused, so a client knows to refresh it.
    pub invalid_token_challenges: Arc<[HeaderValue]>,
}

impl AuthPolicy {
    /// Authenticates, then authorizes, the caller.
    pub async fn authenticate(
        &self,
        security: &Security,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Identity, GatewayError> {
        let mut failure: Option<(&'static str, AuthFailure)> = None;
        let mut bearer_refused = false;
        for method in &self.methods {
            let result = match method {
                AuthMethod::ApiKey => match api_key::credential(headers, query) {
                    Some(Ok(key)) => security
                        .api_keys
                        .verify(key.as_bytes())
                        .map(|index| Identity::of_consumer(security, index)),
                    Some(Err(failure)) => Err(failure),
                    None => continue,
                },
                AuthMethod::Basic => {
                    let Some(value) = authorization(headers, "basic") else {
                        continue;
                    };
                    match &security.basic {
                        Some(basic) => basic.verify(security, value).await,
                        None => Err(AuthFailure::Invalid("no Basic credentials are configured")),
                    }
                }
                AuthMethod::Provider(provider) => {
                    let Some(token) = authorization(headers, "bearer") else {
                        continue;
                    };
                    let verified = match provider {
                        Provider::Jwt(jwt) => jwt.verify(token).await,
                        Provider::Introspection(introspector) => introspector.verify(token).await,
                    };
                    bearer_refused |= matches!(verified, Err(AuthFailure::Invalid(_)));
                    verified.map(|mut identity| {
                        if let Some(name) = &identity.consumer
                            && let Some(&index) = security.by_name.get(&**name)
                        {
                            identity.consumer_index = Some(index);
                        }
                        identity
                    })
                }
            };
            match result {
                Ok(identity) => {
                    self.authorize(&identity)?;
                    return Ok(identity);
                }
                // An undecided check outranks a refusal: the caller should retry, not re-login.
                Err(err) => {
                    if !matches!(failure, Some((_, AuthFailure::Unavailable(_)))) {
                        failure = Some((method.metric_label(), err));
                    }
                }
            }
        }
        Err(match failure {
            Some((method, AuthFailure::Unavailable(reason))) => {
                GatewayError::AuthUnavailable { method, reason }
            }
            Some((method, AuthFailure::Invalid(reason))) => GatewayError::Unauthorized {
                method,
                reason,
                challenges: Arc::clone(if bearer_refused {
                    &self.invalid_token_challenges
                } else {
                    &self.challenges
                }),
            },
            None => GatewayError::Unauthorized {
                method: "none",
                reason: "credentials are required",
                challenges: Arc::clone(&self.challenges),
            },
        })
    }

    /// 403 unless the identity holds every scope and claim the route requires.
    fn authorize(&self, identity: &Identity) -> Result<(), GatewayError> {
        for scope in &self.scopes {
            if !identity.scopes.iter().any(|s| s == scope) {
                return Err(GatewayError::Forbidden {
                    reason: format!("missing scope {scope:?}"),
                });
            }
        }
        for (name, expected) in &self.claims {
            let actual = identity.claims.as_ref().and_then(|c| c.get(name));
            let equal = match actual {
                Some(serde_json::Value::String(s)) => s == expected,
                Some(serde_json::Value::Number(n)) => n.to_string() == *expected,
                Some(serde_json::Value::Bool(b)) => b.to_string() == *expected,
                _ => false,
            };
            if !equal {
                return Err(GatewayError::Forbidden {
                    reason: format!("claim {name:?} does not have the required value"),
                });
            }
        }
        Ok(())
    }

    /// Whether `?api_key=` must be removed before forwarding: it was a credential here.
    pub fn strips_query_key(&self) -> bool {
        !self.forward_credentials && self.methods.iter().any(|m| matches!(m, AuthMethod::ApiKey))
    }

    /// Edits the upstream request's headers: credentials out (unless forwarded), identity in.
    /// Client-sent `Gantry-*` headers were already stripped by the edge.
    pub fn decorate(&self, security: &Security, headers: &mut HeaderMap, identity: &Identity) {
        if !self.forward_credentials {
            headers.remove(AUTHORIZATION);
            headers.remove(API_KEY_HEADER);
        }
        if !self.forward_identity {
            return;
        }
        if let Some(value) = identity
            .consumer
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.insert(CONSUMER_HEADER, value);
        }
        if let Some(value) = identity
            .subject
            .as_deref()
            .and_then(|s| HeaderValue::from_str(s).ok())
        {
            headers.insert(SUBJECT_HEADER, value);
        }
        if !identity.scopes.is_empty()
            && let Ok(value) = HeaderValue::from_str(&identity.scopes.join(" "))
        {
            headers.insert(SCOPES_HEADER, value);
        }
        if let Some(consumer) = identity
            .consumer_index
            .and_then(|i| security.consumers.get(i))
        {
            for (key, header) in &self.forward_metadata {
                if let Some(value) = consumer
                    .metadata
                    .get(key)
                    .and_then(|v| HeaderValue::from_str(v).ok())
                {
                    headers.insert(header.clone(), value);
                }
            }
        }
    }
}

/// The credential of `Authorization: <scheme> <credential>` (scheme case-insensitive).
fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (given, credential) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credential.trim())
}

/// `query` without any `api_key` parameter, for the upstream request.
pub fn strip_api_key_param(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            name != API_KEY_PARAM && !pair.is_empty()
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_key_parameter_is_removed_and_the_rest_kept() {
        assert_eq!(strip_api_key_param("api_key=s3cret"), None);
        assert_eq!(
            strip_api_key_param("a=1&api_key=s3cret&b=2").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(
            strip_api_key_param("api_keys=1").as_deref(),
            Some("api_keys=1")
        );
    }
}
