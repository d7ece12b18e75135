//! Bearer JWTs verified locally (RFC 7519/7515), with the classic attacks refused up front.
//!
//! Always refused: `alg: none` (not an algorithm here), any algorithm outside the allow-list, an
//! HMAC token checked with a public key (HMAC keys come only from `secret`, public keys never act
//! as HMAC secrets), `jku`/`x5u`/`jwk`/`x5c` headers (keys come from configuration only), any
//! `crit` header (we understand no extensions), a missing or past `exp`, a future `nbf`, a wrong
//! `iss` or `aud`, and malformed base64 or JSON. Time comes from the injected clock.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use super::{AuthFailure, Identity};
use crate::policy::cache::{BoundedCache, key as digest};
use crate::policy::clock::SharedClock;

/// The longest token accepted; longer ones are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// HS*.
    Hmac,
    /// RS*, PS*.
    Rsa,
    /// ES*.
    Ec,
    /// EdDSA.
    Ed,
}

/// The family of `alg`.
pub fn family(alg: Algorithm) -> Family {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
        Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
        Algorithm::EdDSA => Family::Ed,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Family::Rsa,
    }
}

/// A verification key with what it may verify.
#[derive(Clone)]
pub struct VerifyingKey {
    /// `kid`, when known.
    pub kid: Option<String>,
    /// The JWK's `alg`, when it pins one.
    pub alg: Option<Algorithm>,
    /// The key's family.
    pub family: Family,
    /// The key itself.
    pub key: Arc<DecodingKey>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Whether this key may verify a token with `alg` and `kid`. A key without a `kid` (a PEM
    /// key, the HMAC secret) fits any `kid`; the signature check still decides.
    pub fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        self.family == family(alg)
            && self.alg.is_none_or(|a| a == alg)
            && match (kid, self.kid.as_deref()) {
                (Some(wanted), Some(own)) => wanted == own,
                _ => true,
            }
    }
}

/// A JWT provider's compiled settings.
#[derive(Debug)]
pub struct JwtVerifier {
    /// Provider name (for logs).
    pub name: String,
    /// Allowed algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Accepted audiences (empty = not checked).
    pub audiences: Vec<String>,
    /// Tolerated clock skew, seconds.
    pub leeway_secs: u64,
    /// Claim naming the consumer.
    pub consumer_claim: String,
    /// Keys from the config (PEM, static JWKS, HMAC secret).
    pub static_keys: Vec<VerifyingKey>,
    /// Keys fetched from `jwks_url`.
    pub jwks: Option<Arc<JwksCache>>,
    /// The clock for `exp`/`nbf`.
    pub clock: SharedClock,
    /// Tokens already verified: (identity, JWKS generation, expiry) by token digest. A signature
    /// check costs more than the rest of a proxied request; a client repeats its token.
    pub verified: BoundedCache<Verified>,
}

/// A verified token's identity and the JWKS generation it was verified under.
pub type Verified = (Arc<Identity>, u64);

/// How long a verified token is reused at most (it also ends at the token's `exp`).
pub const VERIFIED_CACHE_MS: u64 = 5 * 60 * 1000;

/// The parts of a JOSE header that decide how (and whether) to verify.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn parse_header(token: &str) -> Result<TokenHeader, AuthFailure> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::Invalid("malformed token"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthFailure::Invalid("malformed token header (base64)"))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| AuthFailure::Invalid("malformed token header (JSON)"))?;
    for forbidden in ["jku", "x5u", "jwk", "x5c"] {
        if header.contains_key(forbidden) {
            return Err(AuthFailure::Invalid(
                "token header names its own key (jku/x5u/jwk/x5c): refused",
            ));
        }
    }
    if header.contains_key("crit") {
        return Err(AuthFailure::Invalid(
            "token header has critical extensions we do not understand",
        ));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthFailure::Invalid("token header has no alg"))?;
    let alg: Algorithm = alg
        .parse()
        .map_err(|_| AuthFailure::Invalid("token algorithm is not allowed"))?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if kid.len() <= 256 => Some(kid.clone()),
        Some(_) => return Err(AuthFailure::Invalid("malformed token kid")),
    };
    Ok(TokenHeader { alg, kid })
}

impl JwtVerifier {
    /// Verifies `token` (or finds it verified) and returns who it names.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::Invalid("token too long"));
        }
        let cache_key = digest(&[token.as_bytes()]);
        let generation = self.jwks.as_ref().map_or(0, |j| j.generation());
        let now_ms = self.clock.now_ms();
        // Keys rotated since: verify again (a retired key's tokens must stop passing).
        if let Some((identity, seen)) = self.verified.get(&cache_key, now_ms)
            && seen == generation
        {
            return Ok((*identity).clone());
        }
        let (identity, exp) = self.verify_uncached(token).await?;
        let generation = self.jwks.as_ref().map_or(0, |j| j.generation());
        let until = exp
            .saturating_add(self.leeway_secs)
            .saturating_mul(1000)
            .min(now_ms.saturating_add(VERIFIED_CACHE_MS));
        self.verified.insert(
            cache_key,
            (Arc::new(identity.clone()), generation),
            until,
            now_ms,
        );
        Ok(identity)
    }

    async fn verify_uncached(&self, token: &str) -> Result<(Identity, u64), AuthFailure> {
        let header = parse_header(token)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthFailure::Invalid("token algorithm is not allowed"));
        }
        let kid = header.kid.as_deref();
        let key = match self.static_keys.iter().find(|k| k.fits(header.alg, kid)) {
            Some(key) => Arc::clone(&key.key),
            None => match &self.jwks {
                // HMAC keys never come from a JWKS: that is how key confusion starts.
                Some(jwks) if family(header.alg) != Family::Hmac => {
                    jwks.key_for(header.alg, kid).await?
                }
                _ => return Err(AuthFailure::Invalid("no key to verify this token")),
            },
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|_| AuthFailure::Invalid("invalid token signature or claims"))?;
        self.check_claims(data.claims)
    }

    fn check_claims(&self, claims: Map<String, Value>) -> Result<(Identity, u64), AuthFailure> {
        let now = self.clock.now_ms() / 1000;
        let exp = claims
            .get("exp")
            .and_then(numeric_date)
            .ok_or(AuthFailure::Invalid("token has no valid exp"))?;
        if exp.saturating_add(self.leeway_secs) <= now {
            return Err(AuthFailure::Invalid("token expired"));
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric_date(nbf).ok_or(AuthFailure::Invalid("token has an invalid nbf"))?;
            if nbf > now.saturating_add(self.leeway_secs) {
                return Err(AuthFailure::Invalid("token not yet valid"));
            }
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(AuthFailure::Invalid("token issuer is not accepted"));
        }
        if !self.audiences.is_empty() {
            let accepted = |aud: &Value| {
                aud.as_str()
                    .is_some_and(|a| self.audiences.iter().any(|x| x == a))
            };
            let ok = match claims.get("aud") {
                Some(Value::Array(list)) => list.iter().any(accepted),
                Some(aud) => accepted(aud),
                None => false,
            };
            if !ok {
                return Err(AuthFailure::Invalid("token audience is not accepted"));
            }
        }
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        let consumer = claims
            .get(&self.consumer_claim)
            .and_then(Value::as_str)
            .map(Arc::<str>::from);
        let scopes = scopes_of(&claims);
        let identity = Identity {
            consumer,
            consumer_index: None,
            subject,
            scopes,
            claims: Some(Arc::new(claims)),
        };
        Ok((identity, exp))
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional (rounded down); not negative.
fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let seconds = value.as_f64()?;
        // Whole seconds are all the precision `exp`/`nbf` checks need.
        (0.0..1e18)
            .contains(&seconds)
            .then(|| seconds.floor() as u64)
    })
}

/// Scopes from `scope` (space-separated, RFC 8693) or `scp` (array or string).
pub fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    let mut scopes = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(text)) => scopes.extend(text.split_whitespace().map(str::to_owned)),
            Some(Value::Array(list)) => {
                scopes.extend(list.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::clock::FakeClock;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn verifier(clock: SharedClock) -> JwtVerifier {
        JwtVerifier {
            name: "t".into(),
            algorithms: vec![Algorithm::HS256],
            issuer: Some("iss".into()),
            audiences: vec!["api".into()],
            leeway_secs: 30,
            consumer_claim: "sub".into(),
            static_keys: vec![VerifyingKey {
                kid: None,
                alg: None,
                family: Family::Hmac,
                key: Arc::new(DecodingKey::from_secret(b"secret")),
            }],
            jwks: None,
            clock,
            verified: BoundedCache::new(16),
        }
    }

    fn token(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn expiry_and_not_before_follow_the_injected_clock_with_leeway() {
        let clock = FakeClock::at(1_000_000_000);
        let v = verifier(clock.clone());
        let t = token(
            json!({"sub": "u", "iss": "iss", "aud": "api", "exp": 1_000_010, "nbf": 1_000_040, "scope": "a b"}),
        );
        // now = 1_000_000 s; nbf is 40 s ahead, leeway 30 s: not yet.
        assert_eq!(
            v.verify(&t).await.unwrap_err(),
            AuthFailure::Invalid("token not yet valid")
        );
        clock.advance(std::time::Duration::from_secs(10));
        let id = v.verify(&t).await.unwrap();
        assert_eq!(id.scopes, vec!["a", "b"]);
        // exp + leeway = 1_000_040.
        clock.advance(std::time::Duration::from_secs(30));
        assert_eq!(
            v.verify(&t).await.unwrap_err(),
            AuthFailure::Invalid("token expired")
        );
    }

    #[test]
    fn numeric_dates_may_be_fractional_but_not_negative_or_text() {
        assert_eq!(numeric_date(&json!(1_700_000_000)), Some(1_700_000_000));
        assert_eq!(numeric_date(&json!(1_700_000_000.75)), Some(1_700_000_000));
        assert_eq!(numeric_date(&json!(-5)), None);
        assert_eq!(numeric_date(&json!("1700000000")), None);
    }

    #[tokio::test]
    async fn a_verified_token_is_reused_until_its_expiry() {
        let clock = FakeClock::at(1_000_000_000);
        let mut v = verifier(clock.clone());
        let t = token(json!({"sub": "u", "iss": "iss", "aud": "api", "exp": 1_000_100}));
        assert!(v.verify(&t).await.is_ok());
        // Without any key, only the cache can answer: the same token passes, another does not.
        v.static_keys.clear();
        assert!(v.verify(&t).await.is_ok());
        let other = token(json!({"sub": "w", "iss": "iss", "aud": "api", "exp": 1_000_100}));
        assert!(v.verify(&other).await.is_err());
        // Past exp + leeway the cached entry is gone too.
        clock.advance(std::time::Duration::from_secs(130));
        assert!(v.verify(&t).await.is_err());
    }
}
