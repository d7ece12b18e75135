//! HTTP Basic against argon2 hashes. A check costs ~19 MiB and tens of milliseconds, so checks
//! run on the blocking pool under a concurrency cap; when every permit is taken the answer is
//! 503 at once (never a queue that a flood of wrong passwords could grow). Successful checks are
//! cached briefly (by a digest of user and password), so a legitimate client pays once per TTL.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::Semaphore;

use super::{AuthFailure, Identity, Security};
use crate::policy::cache::{BoundedCache, key};
use crate::policy::clock::SharedClock;

/// The longest `Authorization: Basic` credential decoded.
const MAX_CREDENTIAL_BYTES: usize = 1024;

/// Basic credentials of every consumer, and the machinery to check them.
#[derive(Debug)]
pub struct BasicVerifier {
    /// user name → (consumer index, PHC hash string).
    users: HashMap<String, (usize, Arc<str>)>,
    permits: Arc<Semaphore>,
    cache: BoundedCache<usize>,
    cache_for_ms: u64,
    clock: SharedClock,
}

impl BasicVerifier {
    /// A verifier with `max_concurrent` argon2 checks at once and a success cache.
    pub fn new(
        max_concurrent: usize,
        cache_capacity: usize,
        cache_for_ms: u64,
        clock: SharedClock,
    ) -> Self {
        Self {
            users: HashMap::new(),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            cache: BoundedCache::new(cache_capacity),
            cache_for_ms,
            clock,
        }
    }

    /// Adds a user (the hash was checked at config time).
    pub fn add(&mut self, username: &str, hash: &str, index: usize) {
        self.users
            .insert(username.to_owned(), (index, Arc::from(hash)));
    }

    /// Checks the credential part of `Authorization: Basic <credential>`.
    pub async fn verify(
        &self,
        security: &Security,
        credential: &str,
    ) -> Result<Identity, AuthFailure> {
        if credential.len() > MAX_CREDENTIAL_BYTES {
            return Err(AuthFailure::Invalid("invalid Basic credentials"));
        }
        let decoded = STANDARD
            .decode(credential)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(AuthFailure::Invalid("malformed Basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or(AuthFailure::Invalid("malformed Basic credentials"))?;
        // User names are not secrets: an unknown one is refused without spending a hash.
        let (index, hash) = self
            .users
            .get(user)
            .cloned()
            .ok_or(AuthFailure::Invalid("invalid Basic credentials"))?;
        let cache_key = key(&[user.as_bytes(), password.as_bytes()]);
        let now = self.clock.now_ms();
        if self.cache.get(&cache_key, now) == Some(index) {
            return Ok(Identity::of_consumer(security, index));
        }
        let permit = Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| AuthFailure::Unavailable("too many password checks in progress"))?;
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .map_err(|_| AuthFailure::Unavailable("password check failed"))?;
        if !verified {
            return Err(AuthFailure::Invalid("invalid Basic credentials"));
        }
        self.cache
            .insert(cache_key, index, now.saturating_add(self.cache_for_ms), now);
        Ok(Identity::of_consumer(security, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::clock::FakeClock;

    fn verifier(clock: SharedClock) -> BasicVerifier {
        use argon2::password_hash::{PasswordHasher, SaltString};
        // Small costs: this test is about the cap and the cache, not argon2.
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"unit-test-salt").unwrap();
        let hash = argon.hash_password(b"pw", &salt).unwrap().to_string();
        let mut v = BasicVerifier::new(1, 8, 60_000, clock);
        v.add("u", &hash, 0);
        v
    }

    fn security() -> Security {
        Security {
            consumers: vec![super::super::Consumer {
                name: Arc::from("c"),
                scopes: Vec::new(),
                metadata: std::collections::BTreeMap::new(),
            }],
            ..Security::default()
        }
    }

    fn credential(user: &str, password: &str) -> String {
        STANDARD.encode(format!("{user}:{password}"))
    }

    #[tokio::test]
    async fn past_the_cap_checks_are_refused_at_once_and_successes_are_cached() {
        let clock = FakeClock::at(1_000);
        let v = verifier(clock.clone());
        let security = security();
        // Every permit taken: a wrong password is not queued, it is refused as unavailable.
        let held = Arc::clone(&v.permits).try_acquire_owned().unwrap();
        assert_eq!(
            v.verify(&security, &credential("u", "wrong"))
                .await
                .unwrap_err(),
            AuthFailure::Unavailable("too many password checks in progress")
        );
        drop(held);
        assert!(v.verify(&security, &credential("u", "pw")).await.is_ok());
        // Cached: passes even with every permit taken, until the TTL runs out.
        let held = Arc::clone(&v.permits).try_acquire_owned().unwrap();
        assert!(v.verify(&security, &credential("u", "pw")).await.is_ok());
        assert!(
            v.verify(&security, &credential("u", "wrong"))
                .await
                .is_err()
        );
        clock.advance(std::time::Duration::from_secs(61));
        assert!(v.verify(&security, &credential("u", "pw")).await.is_err());
        drop(held);
    }
}
