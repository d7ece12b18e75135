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
