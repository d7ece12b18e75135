//! A JWK set fetched from an IdP's `jwks_url`: cached, refetched when a token names an unknown
//! `kid`, but at most once per `refresh_interval` and never by two requests at once, so a flood
//! of random `kid`s costs the IdP one fetch per interval. The set is capped at [`MAX_KEYS`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::AuthFailure;
use super::jwt::{Family, VerifyingKey};
use crate::policy::clock::SharedClock;

/// Keys kept from one JWK set; the rest are ignored.
pub const MAX_KEYS: usize = 64;
/// How long a request waits for a fetch another request started (the HTTP client's own
/// timeout ends the fetch sooner).
const WAIT_FOR_FETCH: Duration = Duration::from_secs(5);
/// The largest JWKS document read.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// A cached, rate-limited JWK set.
#[derive(Debug)]
pub struct JwksCache {
    /// Where the set is fetched from.
    pub url: String,
    client: reqwest::Client,
    keys: ArcSwap<Vec<VerifyingKey>>,
    /// Unix ms of the last fetch attempt; 0 = never.
    last_fetch_ms: AtomicU64,
    fetching: AtomicBool,
    refresh_interval_ms: u64,
    fetches: AtomicU64,
    /// Bumped whenever a fetched set replaces the keys, so results verified with the old set
    /// (the verified-token cache) stop counting.
    generation: AtomicU64,
    /// Wakes the requests that waited for a fetch another request started.
    fetched: tokio::sync::Notify,
    clock: SharedClock,
}

impl JwksCache {
    /// A cache that has fetched nothing yet (the first token triggers the first fetch).
    pub fn new(
        url: String,
        client: reqwest::Client,
        refresh_interval: Duration,
        clock: SharedClock,
    ) -> Self {
        Self {
            url,
            client,
            keys: ArcSwap::from_pointee(Vec::new()),
            last_fetch_ms: AtomicU64::new(0),
            fetching: AtomicBool::new(false),
            refresh_interval_ms: u64::try_from(refresh_interval.as_millis()).unwrap_or(u64::MAX),
            fetches: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            fetched: tokio::sync::Notify::new(),
            clock,
        }
    }

    /// Whether this cache serves the same URL with the same refresh settings (kept across reloads).
    pub fn same_source(&self, url: &str, refresh_interval: Duration) -> bool {
        self.url == url && u128::from(self.refresh_interval_ms) == refresh_interval.as_millis()
    }

    /// The current key set's generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many fetches were attempted (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn find(&self, alg: Algorithm, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
        self.keys
            .load()
            .iter()
            .find(|k| k.fits(alg, kid))
            .map(|k| Arc::clone(&k.key))
    }

    /// The key for a token with `alg` and `kid`, fetching the set again if allowed.
    pub async fn key_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Arc<DecodingKey>, AuthFailure> {
        if let Some(key) = self.find(alg, kid) {
            return Ok(key);
        }
        // One fetch at a time; the others wait for its outcome (bounded by the client timeout),
        // so a burst of first requests after start-up does not fail. The waiter is registered
        // before looking again, and a fetch stores its keys before it clears `fetching`, so no
        // request can miss both the new keys and the wake-up.
        let fetched = self.fetched.notified();
        if let Some(key) = self.find(alg, kid) {
            return Ok(key);
        }
        let waited = |this: &Self| this.find(alg, kid).ok_or_else(|| waited_failure(this));
        if self.fetching.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(WAIT_FOR_FETCH, fetched).await;
            return waited(self);
        }
        let now = self.clock.now_ms();
        let last = self.last_fetch_ms.load(Ordering::Acquire);
        let due = last == 0 || now.saturating_sub(last) >= self.refresh_interval_ms;
        if !due {
            // With no keys at all the IdP was unreachable: the caller should retry, not re-login.
            return Err(waited_failure(self));
        }
        if self
            .fetching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            let _ = tokio::time::timeout(WAIT_FOR_FETCH, fetched).await;
            return waited(self);
        }
        // Clears `fetching` and wakes the waiters even if this request is dropped mid-fetch
        // (its client went away): otherwise no fetch would ever start again.
        let guard = FetchGuard(self);
        self.last_fetch_ms.store(now.max(1), Ordering::Release);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let stored = match self.fetch().await {
            Ok(keys) => {
                self.keys.store(Arc::new(keys));
                self.generation.fetch_add(1, Ordering::AcqRel);
                None
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, reason, "JWKS fetch failed; keeping the cached keys");
                self.keys
                    .load()
                    .is_empty()
                    .then_some(AuthFailure::Unavailable("signing keys are unavailable"))
            }
        };
        drop(guard);
        if let Some(failure) = stored {
            return Err(failure);
        }
        self.find(alg, kid)
            .ok_or(AuthFailure::Invalid("unknown token key id"))
    }

    async fn fetch(&self) -> Result<Vec<VerifyingKey>, &'static str> {
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|_| "request failed")?;
        if !response.status().is_success() {
            return Err("non-success status");
        }
        if response
            .content_length()
            .is_some_and(|l| l > MAX_BODY_BYTES as u64)
        {
            return Err("document too large");
        }
        let body = read_limited(&mut response, MAX_BODY_BYTES)
            .await
            .map_err(|too_large| {
                if too_large {
                    "document too large"
                } else {
                    "body failed"
                }
            })?;
        parse_jwks(&body).ok_or("not a JWK set")
    }
}

/// Reads a response body up to `limit` bytes, chunk by chunk, so a body without (or with a
/// lying) Content-Length cannot grow memory past it. `Err(true)`: too large; `Err(false)`: failed.
pub(crate) async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, bool> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| false)? {
        if body.len() + chunk.len() > limit {
            return Err(true);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why no key was found: no keys at all (the IdP is unreachable) or an unknown `kid`.
fn waited_failure(cache: &JwksCache) -> AuthFailure {
    if cache.keys.load().is_empty() {
        AuthFailure::Unavailable("signing keys are unavailable")
    } else {
        AuthFailure::Invalid("unknown token key id")
    }
}

/// Ends a fetch: clears the flag, then wakes whoever waited for it.
struct FetchGuard<'a>(&'a JwksCache);

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        self.0.fetching.store(false, Ordering::Release);
        self.0.fetched.notify_waiters();
    }
}

/// The usable keys of a JWK set document (unsupported or malformed keys are skipped).
pub fn parse_jwks(body: &[u8]) -> Option<Vec<VerifyingKey>> {
    let document: Value = serde_json::from_slice(body).ok()?;
    let keys = document.get("keys")?.as_array()?;
    Some(
        keys.iter()
            .filter_map(|raw| {
                let jwk: Jwk = serde_json::from_value(raw.clone()).ok()?;
                let key = DecodingKey::from_jwk(&jwk).ok()?;
                let family = match raw.get("kty").and_then(Value::as_str)? {
                    "RSA" => Family::Rsa,
                    "EC" => Family::Ec,
                    "OKP" => Family::Ed,
                    // Symmetric keys in a fetched set are ignored: HMAC keys come from `secret`.
                    _ => return None,
                };
                let alg = match raw.get("alg").and_then(Value::as_str) {
                    Some(alg) => Some(alg.parse::<Algorithm>().ok()?),
                    None => None,
                };
                Some(VerifyingKey {
                    kid: raw.get("kid").and_then(Value::as_str).map(str::to_owned),
                    alg,
                    family,
                    key: Arc::new(key),
                })
            })
            .take(MAX_KEYS)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::clock::FakeClock;

    #[tokio::test]
    async fn refetches_are_rate_limited_on_the_injected_clock() {
        // Nothing listens on port 1: every fetch fails at once, and only the count matters.
        let clock = FakeClock::at(1_000_000);
        let cache = JwksCache::new(
            "http://127.0.0.1:1/jwks".to_owned(),
            reqwest::Client::new(),
            Duration::from_secs(30),
            clock.clone(),
        );
        let first = cache.key_for(Algorithm::RS256, Some("a")).await;
        assert_eq!(
            first.unwrap_err(),
            AuthFailure::Unavailable("signing keys are unavailable")
        );
        assert_eq!(cache.fetch_count(), 1);
        for kid in ["b", "c", "d"] {
            assert_eq!(
                cache
                    .key_for(Algorithm::RS256, Some(kid))
                    .await
                    .unwrap_err(),
                AuthFailure::Unavailable("signing keys are unavailable")
            );
        }
        assert_eq!(cache.fetch_count(), 1);
        clock.advance(Duration::from_secs(29));
        let _ = cache.key_for(Algorithm::RS256, Some("e")).await;
        assert_eq!(cache.fetch_count(), 1);
        clock.advance(Duration::from_secs(1));
        let _ = cache.key_for(Algorithm::RS256, Some("f")).await;
        assert_eq!(cache.fetch_count(), 2);
    }
}
