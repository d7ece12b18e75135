//! OAuth2 token introspection (RFC 7662): the IdP says whether an opaque token is active.
//!
//! The client authenticates with HTTP Basic (client credentials). Answers are cached by a digest
//! of the token for `cache_for`, never past the token's `exp`, in a bounded cache; inactive
//! answers are cached too, so replaying one bad token does not reach the IdP each time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::jwt::{MAX_TOKEN_BYTES, scopes_of};
use super::{AuthFailure, Identity};
use crate::policy::cache::{BoundedCache, key};
use crate::policy::clock::SharedClock;

/// The largest introspection answer read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A cached answer: the identity of an active token, or `None` for an inactive one.
type Answer = Option<Arc<Identity>>;

/// An introspection provider.
#[derive(Debug)]
pub struct Introspector {
    /// Endpoint.
    pub url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// HTTP client (rustls).
    pub client: reqwest::Client,
    /// Answer lifetime in the cache.
    pub cache_for_ms: u64,
    /// Cached answers.
    pub cache: BoundedCache<Answer>,
    /// Calls made to the endpoint.
    pub calls: AtomicU64,
    /// Clock for the cache and `exp`.
    pub clock: SharedClock,
    /// Calls to the endpoint allowed at once: random tokens miss the cache, and a flood of them
    /// must not become a flood on the IdP (past the cap: 503).
    pub permits: tokio::sync::Semaphore,
}

/// Default of [`Introspector::permits`].
pub const MAX_CONCURRENT_CALLS: usize = 64;

impl Introspector {
    /// Asks (or remembers) whether `token` is active.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::Invalid("invalid token"));
        }
        let cache_key = key(&[token.as_bytes()]);
        let now = self.clock.now_ms();
        if let Some(answer) = self.cache.get(&cache_key, now) {
            return answer
                .map(|identity| (*identity).clone())
                .ok_or(AuthFailure::Invalid("token is not active"));
        }
        let _permit = self
            .permits
            .try_acquire()
            .map_err(|_| AuthFailure::Unavailable("too many token introspections in progress"))?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut response = self
            .client
            .post(&self.url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|_| AuthFailure::Unavailable("token introspection failed"))?;
        if !response.status().is_success() {
            return Err(AuthFailure::Unavailable("token introspection failed"));
        }
        let body = super::jwks::read_limited(&mut response, MAX_BODY_BYTES)
            .await
            .map_err(|too_large| {
                AuthFailure::Unavailable(if too_large {
                    "token introspection answer too large"
                } else {
                    "token introspection failed"
                })
            })?;
        let answer: Map<String, Value> = serde_json::from_slice(&body)
            .map_err(|_| AuthFailure::Unavailable("token introspection answer is not JSON"))?;
        let exp_ms = answer
            .get("exp")
            .and_then(Value::as_u64)
            .map(|s| s.saturating_mul(1000));
        let expires = cache_until(now, self.cache_for_ms, exp_ms);
        let active = answer.get("active").and_then(Value::as_bool) == Some(true)
            && exp_ms.is_none_or(|exp| exp > now);
        if !active {
            self.cache.insert(cache_key, None, expires, now);
            return Err(AuthFailure::Invalid("token is not active"));
        }
        let text = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_owned);
        let identity = Identity {
            consumer: text("client_id").or_else(|| text("sub")).map(Arc::from),
            consumer_index: None,
            subject: text("sub").or_else(|| text("username")),
            scopes: scopes_of(&answer),
            claims: None,
        };
        let identity = Identity {
            claims: Some(Arc::new(answer)),
            ..identity
        };
        self.cache
            .insert(cache_key, Some(Arc::new(identity.clone())), expires, now);
        Ok(identity)
    }
}

/// Until when an answer may be reused: `cache_for` from now, never past the token's `exp`.
fn cache_until(now_ms: u64, cache_for_ms: u64, exp_ms: Option<u64>) -> u64 {
    let until = now_ms.saturating_add(cache_for_ms);
    exp_ms.map_or(until, |exp| until.min(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_answers_never_outlive_the_tokens_exp() {
        assert_eq!(cache_until(1_000, 60_000, None), 61_000);
        assert_eq!(cache_until(1_000, 60_000, Some(6_000)), 6_000);
        assert_eq!(cache_until(1_000, 60_000, Some(100_000)), 61_000);
    }
}
