//! Rate limits and quotas (`routes[].policies.rate_limit`, `server.rate_limit`).
//!
//! A route's limits are split by what their key needs: limits keyed only by `ip`, `route`,
//! `header:NAME` or `global` run before authentication (a flood never reaches JWT or argon2
//! work); limits whose key includes `consumer` run after it. Within each stage the limits are
//! all-or-nothing: a request refused by one consumes none of the others (local admissions are
//! given back, and all Redis-backed limits are decided by one atomic script); a request refused
//! after authentication gives back what it took before it.
//!
//! Answers carry the IETF `RateLimit-Policy` and `RateLimit` fields in the syntax of
//! draft-ietf-httpapi-ratelimit-headers-09: `RateLimit-Policy: "ip";q=50;w=5` and
//! `RateLimit: "ip";r=49;t=1`. For a GCRA limit, `q` is the burst, `w` the seconds to refill a
//! whole burst, `r` the requests admissible right now and `t` the seconds until the bucket is full
//! again (rounded up); for a quota, `q`/`w` are the quota and its calendar window, `r` what is left
//! and `t` the seconds until the window ends.

pub mod gcra;
pub mod hybrid;
pub mod local;
pub mod redis;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use self::gcra::{Decision, Gcra, ceil_secs};
use self::hybrid::{HybridDecision, HybridStore};
use self::local::{KeyHash, LocalStore};
use self::redis::{RedisOp, RedisStats, SharedRedis, StoreError};
use super::Identity;
use super::clock::SharedClock;
use crate::error::GatewayError;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-09).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-09).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// One component of a limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The authenticated consumer (its name, else the token subject).
    Consumer,
    /// The client IP as derived with `server.trusted_proxies`; IPv6 by its /64.
    Ip,
    /// The route's name.
    Route,
    /// A request header's value (absent = one shared bucket, so omitting it gains nothing).
    Header(HeaderName),
    /// One bucket for everything.
    Global,
}

/// A parsed `key`: parts joined by `+`, e.g. `consumer+route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// The parts, in the order written.
    pub parts: Vec<KeyPart>,
}

impl KeySpec {
    /// Parses `consumer`, `ip`, `route`, `header:NAME`, `global` and `a+b` combinations.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        for raw in text.split('+') {
            let raw = raw.trim();
            let part = match raw {
                "consumer" => KeyPart::Consumer,
                "ip" => KeyPart::Ip,
                "route" => KeyPart::Route,
                "global" => KeyPart::Global,
                _ => match raw.strip_prefix("header:") {
                    Some(name) => HeaderName::from_bytes(name.trim().as_bytes())
                        .map(KeyPart::Header)
                        .map_err(|_| format!("{name:?} is not a valid header name"))?,
                    None => {
                        return Err(format!(
                            "unknown key kind {raw:?}: expected consumer, ip, route, header:NAME \
                             or global, or a combination like consumer+route"
                        ));
                    }
                },
            };
            if parts.contains(&part) {
                return Err(format!("{raw:?} appears twice in the key"));
            }
            parts.push(part);
        }
        if parts.len() > 1 && parts.contains(&KeyPart::Global) {
            return Err("global is one bucket for everything; it cannot be combined".into());
        }
        Ok(Self { parts })
    }

    /// Whether the key needs the authenticated identity (runs after auth).
    pub fn needs_identity(&self) -> bool {
        self.parts.contains(&KeyPart::Consumer)
    }
}

/// A calendar window for quotas, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    /// From 00:00 UTC to the next.
    Day,
    /// From the first of the month 00:00 UTC to the next.
    Month,
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// A rate with a burst (GCRA).
    Rate(Gcra),
    /// `count` per calendar window (Redis only).
    Quota {
        /// Requests per window.
        count: u64,
        /// The window.
        calendar: Calendar,
    },
}

/// Where the counters live.
#[derive(Debug, Clone)]
pub enum LimitStore {
    /// This instance only.
    Local(Arc<LocalStore>),
    /// Shared by every instance through Redis.
    Redis(SharedRedis),
    /// A local allowance per instance, reconciled with Redis in the background.
    Hybrid(Arc<HybridStore>),
}

/// What to do when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Admit (fail open), logged and counted.
    Allow,
    /// Refuse with 503.
    Deny,
}

/// One compiled limit.
#[derive(Debug)]
pub struct Limit {
    /// Its name in the `RateLimit` fields.
    pub name: Arc<str>,
    /// What the counters are keyed by.
    pub key: KeySpec,
    /// Rate or quota.
    pub kind: LimitKind,
    /// Where the counters live.
    pub store: LimitStore,
    /// Policy when Redis is unavailable.
    pub on_store_error: OnStoreError,
    /// Whether admitted responses carry `RateLimit` for this limit.
    pub headers: bool,
    /// Detail of the 429, e.g. `limit 100/s by consumer`.
    pub detail: Arc<str>,
    /// Identity of the limit (scope, key, rate, burst), hashed into every counter key so limits
    /// never share counters and an unchanged limit keeps its Redis keys across reloads.
    pub identity: Arc<str>,
    /// The clock (wall time: quotas follow the calendar, and instances share Redis state).
    pub clock: SharedClock,
}

/// The request data keys are built from.
#[derive(Debug, Clone, Copy)]
pub struct KeyContext<'a> {
    /// Derived client IP.
    pub ip: IpAddr,
    /// Route name.
    pub route: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The authenticated caller, after auth.
    pub identity: Option<&'a Identity>,
}

impl Limit {
    /// The counter key for this request; `None` when the key needs an identity the request does
    /// not have (a `server.rate_limit` keyed by consumer on a route without auth).
    fn key_hash(&self, ctx: &KeyContext<'_>) -> Option<KeyHash> {
        let mut hasher = Sha256::new();
        hasher.update(self.identity.as_bytes());
        for part in &self.key.parts {
            hasher.update([0xff]);
            match part {
                KeyPart::Consumer => {
                    let identity = ctx.identity?;
                    let name = identity
                        .consumer
                        .as_deref()
                        .or(identity.subject.as_deref())
                        .unwrap_or("");
                    hasher.update(name.as_bytes());
                }
                KeyPart::Ip => match ctx.ip {
                    IpAddr::V4(v4) => hasher.update(v4.octets()),
                    IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                        Some(v4) => hasher.update(v4.octets()),
                        // One /64 is one subscriber: rotating addresses inside it gains nothing.
                        None => hasher.update(&v6.octets()[..8]),
                    },
                },
                KeyPart::Route => hasher.update(ctx.route.as_bytes()),
                KeyPart::Header(name) => match ctx.headers.get(name) {
                    Some(value) => {
                        hasher.update([1]);
                        hasher.update(value.as_bytes());
                    }
                    None => hasher.update([0]),
                },
                KeyPart::Global => {}
            }
        }
        let digest = hasher.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Some(key)
    }

    /// `"name";q=..;w=..` for `RateLimit-Policy`.
    pub fn policy_item(&self) -> String {
        match self.kind {
            LimitKind::Rate(gcra) => format!(
                "\"{}\";q={};w={}",
                self.name,
                gcra.burst(),
                ceil_secs(Duration::from_micros(gcra.window_us())).max(1)
            ),
            LimitKind::Quota { count, calendar } => format!(
                "\"{}\";q={};w={}",
                self.name,
                count,
                match calendar {
                    Calendar::Day => 86_400,
                    Calendar::Month => 2_592_000,
                }
            ),
        }
    }
}

/// One request's answer from a limit.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    allowed: bool,
    remaining: u64,
    reset: Duration,
    retry_after: Duration,
}

impl Outcome {
    fn from_decision(d: Decision) -> Self {
        match d {
            Decision::Allow {
                remaining, reset, ..
            } => Self {
                allowed: true,
                remaining,
                reset,
                retry_after: Duration::ZERO,
            },
            Decision::Deny { retry_after, reset } => Self {
                allowed: false,
                remaining: 0,
                reset,
                retry_after,
            },
        }
    }

    fn quota(count_with_this: u64, limit: u64, left: Duration) -> Self {
        let allowed = count_with_this <= limit;
        Self {
            allowed,
            remaining: limit.saturating_sub(count_with_this.min(limit)),
            reset: left,
            retry_after: if allowed { Duration::ZERO } else { left },
        }
    }
}

/// The compiled limits of one route (the server's first, then the route's own).
#[derive(Debug)]
pub struct RateLimitSet {
    /// The route's name (the `route` key).
    pub route: Arc<str>,
    /// Limits that run before authentication.
    pub before_auth: Vec<Arc<Limit>>,
    /// Limits keyed by consumer, after authentication.
    pub after_auth: Vec<Arc<Limit>>,
    /// The precomputed `RateLimit-Policy` value.
    pub policy_header: Option<HeaderValue>,
}

/// What one stage took, to give back if a later stage refuses the request.
#[derive(Debug, Default)]
pub struct Taken {
    local: Vec<(Arc<Limit>, KeyHash, u64)>,
    hybrid: Vec<(Arc<HybridStore>, KeyHash)>,
    redis: Option<(SharedRedis, Vec<RedisOp>, u64)>,
}

impl Taken {
    /// Gives every admission back.
    pub async fn give_back(self) {
        for (limit, key, now) in self.local {
            if let (LimitStore::Local(store), LimitKind::Rate(gcra)) = (&limit.store, limit.kind) {
                store.refund(&gcra, &key, now);
            }
        }
        for (store, key) in self.hybrid {
            store.refund(&key);
        }
        if let Some((store, ops, now)) = self.redis {
            store.refund(&ops, now).await;
        }
    }
}

impl RateLimitSet {
    /// Runs one stage (`after_auth` = the consumer-keyed limits); `rate_headers` collects the
    /// `RateLimit` items.
    pub async fn check(
        &self,
        after_auth: bool,
        ctx: &KeyContext<'_>,
        rate_headers: &mut Option<HeaderMap>,
    ) -> Result<Taken, GatewayError> {
        let limits = if after_auth {
            &self.after_auth
        } else {
            &self.before_auth
        };
        let mut taken = Taken::default();
        let Some(first) = limits.first() else {
            return Ok(taken);
        };
        let now_ms = first.clock.now_ms();
        let now_us = now_ms.saturating_mul(1000);
        let mut items = String::new();
        let mut redis_limits: Vec<(&Arc<Limit>, usize)> = Vec::new();
        let mut redis_ops: Vec<RedisOp> = Vec::new();
        let mut redis_store: Option<SharedRedis> = None;
        for limit in limits {
            let Some(key) = limit.key_hash(ctx) else {
                continue;
            };
            match (&limit.store, limit.kind) {
                (LimitStore::Local(store), LimitKind::Rate(gcra)) => {
                    let outcome = Outcome::from_decision(store.acquire(&gcra, &key, now_us));
                    if !outcome.allowed {
                        push_item(&mut items, limit, &outcome);
                        taken.give_back().await;
                        return Err(self.refuse(limit, &outcome, items, rate_headers));
                    }
                    if limit.headers {
                        push_item(&mut items, limit, &outcome);
                    }
                    taken.local.push((Arc::clone(limit), key, now_us));
                }
                (LimitStore::Hybrid(store), LimitKind::Rate(gcra)) => {
                    let mut decision = store.acquire(&key, now_ms);
                    if decision == HybridDecision::Unknown {
                        // A key's first request here: read what is left across instances.
                        let probe = [(
                            hybrid::redis_key(&key),
                            gcra.interval_us(),
                            gcra.window_us(),
                            0,
                        )];
                        decision = match store.redis().charge(&probe, now_us).await {
                            Ok(left) => {
                                store.learn(&key, left.first().copied().unwrap_or(0), now_ms);
                                store.acquire(&key, now_ms)
                            }
                            Err(_) => HybridDecision::StoreDown,
                        };
                    }
                    let interval = Duration::from_micros(gcra.interval_us());
                    if decision == HybridDecision::Exact {
                        // Near the limit: decide exactly in Redis, like `store: redis`.
                        let op = [RedisOp::Gcra(
                            hybrid::redis_key(&key),
                            gcra.interval_us(),
                            gcra.window_us(),
                        )];
                        decision = match store.redis().check(&op, now_us).await {
                            Ok(values) => {
                                let ahead = values.first().copied().unwrap_or(u64::MAX);
                                match gcra.decide(ahead, now_us) {
                                    Decision::Allow { remaining, .. } => {
                                        store.observe(&key, remaining);
                                        // Charged in Redis already: nothing to reconcile.
                                        HybridDecision::Allow(0)
                                    }
                                    Decision::Deny { .. } => {
                                        store.observe(&key, 0);
                                        HybridDecision::Deny
                                    }
                                }
                            }
                            Err(_) => HybridDecision::StoreDown,
                        };
                        if let HybridDecision::Allow(_) = decision {
                            if limit.headers {
                                let outcome = Outcome {
                                    allowed: true,
                                    remaining: 0,
                                    reset: interval,
                                    retry_after: Duration::ZERO,
                                };
                                push_item(&mut items, limit, &outcome);
                            }
                            continue;
                        }
                    }
                    match decision {
                        HybridDecision::Allow(left) => {
                            if limit.headers {
                                let outcome = Outcome {
                                    allowed: true,
                                    remaining: left,
                                    reset: interval,
                                    retry_after: Duration::ZERO,
                                };
                                push_item(&mut items, limit, &outcome);
                            }
                            taken.hybrid.push((Arc::clone(store), key));
                        }
                        HybridDecision::Deny | HybridDecision::Unknown | HybridDecision::Exact => {
                            let outcome = Outcome {
                                allowed: false,
                                remaining: 0,
                                reset: interval,
                                retry_after: interval,
                            };
                            push_item(&mut items, limit, &outcome);
                            taken.give_back().await;
                            return Err(self.refuse(limit, &outcome, items, rate_headers));
                        }
                        HybridDecision::StoreDown => {
                            if limit.on_store_error == OnStoreError::Deny {
                                taken.give_back().await;
                                store.redis().count_denied_on_error();
                                return Err(GatewayError::RateLimitUnavailable {
                                    limit: Arc::clone(&limit.detail),
                                });
                            }
                            store.redis().count_allowed_on_error();
                        }
                    }
                }
                (LimitStore::Local(_) | LimitStore::Hybrid(_), LimitKind::Quota { .. }) => {}
                (LimitStore::Redis(store), kind) => {
                    let hex = hex(&key);
                    let op = match kind {
                        LimitKind::Rate(gcra) => RedisOp::Gcra(
                            format!("gantry:rl:{hex}"),
                            gcra.interval_us(),
                            gcra.window_us(),
                        ),
                        LimitKind::Quota { count, calendar } => {
                            let (window, left_ms) = window(calendar, now_ms);
                            RedisOp::Quota(
                                format!("gantry:q:{hex}:{window}"),
                                count,
                                left_ms.saturating_mul(1000),
                            )
                        }
                    };
                    redis_limits.push((limit, redis_ops.len()));
                    redis_ops.push(op);
                    redis_store.get_or_insert_with(|| Arc::clone(store));
                }
            }
        }
        if let Some(store) = redis_store {
            match store.check(&redis_ops, now_us).await {
                Ok(values) => {
                    let mut refused: Option<(&Arc<Limit>, Outcome)> = None;
                    let mut redis_items = String::new();
                    for (limit, index) in &redis_limits {
                        let value = values.get(*index).copied().unwrap_or(u64::MAX);
                        let outcome = match (limit.kind, &redis_ops[*index]) {
                            (LimitKind::Rate(gcra), _) => {
                                Outcome::from_decision(gcra.decide(value, now_us))
                            }
                            (LimitKind::Quota { count, .. }, RedisOp::Quota(_, _, left)) => {
                                Outcome::quota(value, count, Duration::from_micros(*left))
                            }
                            (LimitKind::Quota { count, .. }, _) => {
                                Outcome::quota(value, count, Duration::ZERO)
                            }
                        };
                        if !outcome.allowed {
                            let worse = refused
                                .as_ref()
                                .is_none_or(|(_, o)| o.retry_after < outcome.retry_after);
                            if worse {
                                refused = Some((limit, outcome));
                            }
                        }
                        if limit.headers || !outcome.allowed {
                            push_item(&mut redis_items, limit, &outcome);
                        }
                    }
                    if let Some((limit, outcome)) = refused {
                        push_raw(&mut items, &redis_items);
                        taken.give_back().await;
                        return Err(self.refuse(limit, &outcome, items, rate_headers));
                    }
                    push_raw(&mut items, &redis_items);
                    taken.redis = Some((store, redis_ops, now_us));
                }
                Err(error) => {
                    if let Some((limit, _)) = redis_limits
                        .iter()
                        .find(|(l, _)| l.on_store_error == OnStoreError::Deny)
                    {
                        taken.give_back().await;
                        store.count_denied_on_error();
                        return Err(GatewayError::RateLimitUnavailable {
                            limit: Arc::clone(&limit.detail),
                        });
                    }
                    store.count_allowed_on_error();
                    if error == StoreError::Failed {
                        tracing::warn!(
                            "rate limit: Redis unavailable; admitted (on_store_error: allow)"
                        );
                    }
                }
            }
        }
        if !items.is_empty() {
            self.set_headers(items, rate_headers);
        }
        Ok(taken)
    }

    fn refuse(
        &self,
        limit: &Limit,
        outcome: &Outcome,
        items: String,
        rate_headers: &mut Option<HeaderMap>,
    ) -> GatewayError {
        self.set_headers(items, rate_headers);
        GatewayError::RateLimited {
            limit: Arc::clone(&limit.detail),
            retry_after: outcome.retry_after,
        }
    }

    fn set_headers(&self, items: String, rate_headers: &mut Option<HeaderMap>) {
        let headers = rate_headers.get_or_insert_with(HeaderMap::new);
        if let Some(policy) = &self.policy_header {
            headers.insert(RATELIMIT_POLICY, policy.clone());
        }
        let value = match headers.get(RATELIMIT).and_then(|v| v.to_str().ok()) {
            Some(before) if !items.is_empty() => format!("{before}, {items}"),
            Some(before) => before.to_owned(),
            None => items,
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(RATELIMIT, value);
        }
    }
}

fn push_item(items: &mut String, limit: &Limit, outcome: &Outcome) {
    if !items.is_empty() {
        items.push_str(", ");
    }
    let _ = write!(
        items,
        "\"{}\";r={};t={}",
        limit.name,
        outcome.remaining,
        ceil_secs(outcome.reset)
    );
}

fn push_raw(items: &mut String, more: &str) {
    if more.is_empty() {
        return;
    }
    if !items.is_empty() {
        items.push_str(", ");
    }
    items.push_str(more);
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The calendar window containing `now_ms` (an id that changes at each boundary) and the ms
/// left until it ends. UTC, proleptic Gregorian.
pub fn window(calendar: Calendar, now_ms: u64) -> (u64, u64) {
    const DAY_MS: u64 = 86_400_000;
    let day = now_ms / DAY_MS;
    match calendar {
        Calendar::Day => (day, (day + 1) * DAY_MS - now_ms),
        Calendar::Month => {
            let (y, m, _) = civil_from_days(day);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let next = days_from_civil(ny, nm, 1);
            (y * 12 + (m - 1), next * DAY_MS - now_ms)
        }
    }
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (non-negative).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// The rate-limit state of one gateway: the Redis store, the server-wide limits, and the local
/// stores by limit identity so a reload keeps the counters of unchanged limits.
pub struct RateLimits {
    /// The clock every limit reads.
    pub clock: SharedClock,
    /// The Redis store, when `redis:` is configured.
    pub redis: Option<SharedRedis>,
    /// `server.rate_limit`, applied on every route before the route's own.
    pub server: Vec<Arc<Limit>>,
    /// `upstreams.NAME.rate_limit`, by upstream, applied on every route forwarding there.
    pub upstreams: HashMap<String, Vec<Arc<Limit>>>,
    /// Local stores by limit identity (filled while compiling, then only read).
    locals: Mutex<HashMap<Arc<str>, Arc<LocalStore>>>,
    /// The previous config's local stores, while compiling; emptied by [`RateLimits::finish`].
    carried: Mutex<HashMap<Arc<str>, Arc<LocalStore>>>,
    /// Hybrid stores by limit identity (kept across reloads like the local ones).
    hybrids: Mutex<HashMap<Arc<str>, Arc<HybridStore>>>,
    /// The previous config's hybrid stores, while compiling.
    carried_hybrids: Mutex<HashMap<Arc<str>, Arc<HybridStore>>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("redis", &self.redis.is_some())
            .field("server", &self.server.len())
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    /// An empty registry on `clock` that can take over `previous`'s local counters.
    pub fn new(clock: SharedClock, redis: Option<SharedRedis>, previous: Option<&Self>) -> Self {
        let carried = previous
            .map(|p| {
                p.locals
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default();
        let carried_hybrids = previous
            .map(|p| {
                p.hybrids
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default();
        Self {
            clock,
            redis,
            server: Vec::new(),
            upstreams: HashMap::new(),
            locals: Mutex::new(HashMap::new()),
            carried: Mutex::new(carried),
            hybrids: Mutex::new(HashMap::new()),
            carried_hybrids: Mutex::new(carried_hybrids),
        }
    }

    /// Drops the previous config's stores that no limit took over.
    pub fn finish(&self) {
        self.carried
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.carried_hybrids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The hybrid store of the limit `identity`: the previous config's, or a new one.
    pub fn hybrid_store(
        &self,
        identity: &Arc<str>,
        redis: &SharedRedis,
        gcra: Gcra,
        max_keys: usize,
    ) -> Arc<HybridStore> {
        let carried = self
            .carried_hybrids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(identity)
            .filter(|h| Arc::ptr_eq(h.redis(), redis))
            .cloned();
        let mut hybrids = self
            .hybrids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(hybrids.entry(Arc::clone(identity)).or_insert_with(|| {
            carried.unwrap_or_else(|| Arc::new(HybridStore::new(Arc::clone(redis), gcra, max_keys)))
        }))
    }

    /// The local store of the limit `identity`: the previous config's, or a new one.
    pub fn local_store(&self, identity: &Arc<str>, max_keys: usize) -> Arc<LocalStore> {
        let carried = self
            .carried
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(identity)
            .cloned();
        let mut locals = self
            .locals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            locals
                .entry(Arc::clone(identity))
                .or_insert_with(|| carried.unwrap_or_else(|| Arc::new(LocalStore::new(max_keys)))),
        )
    }

    /// Reconciliations made by this config's hybrid stores so far.
    pub fn hybrid_syncs(&self) -> u64 {
        self.hybrids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|h| h.syncs())
            .sum()
    }

    /// Redis counters, when Redis is configured.
    pub fn redis_stats(&self) -> Option<RedisStats> {
        self.redis.as_ref().map(|r| r.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_refuse_nonsense() {
        let spec = KeySpec::parse("consumer+route").unwrap();
        assert_eq!(spec.parts, vec![KeyPart::Consumer, KeyPart::Route]);
        assert!(spec.needs_identity());
        assert!(!KeySpec::parse("header:X-Tenant").unwrap().needs_identity());
        assert!(
            KeySpec::parse("cookie:x")
                .unwrap_err()
                .contains("unknown key kind")
        );
        assert!(KeySpec::parse("ip+ip").is_err());
        assert!(KeySpec::parse("global+ip").is_err());
        assert!(KeySpec::parse("header:bad name").is_err());
    }

    #[test]
    fn calendar_windows_are_utc_aligned() {
        // 2026-11-29T05:00:00Z
        let now = 1_795_928_400_000;
        let (day, left) = window(Calendar::Day, now);
        assert_eq!(day, now / 86_400_000);
        assert_eq!(left, 19 * 3_600_000);
        let (month, left) = window(Calendar::Month, now);
        assert_eq!(month, 2026 * 12 + 10);
        // Until 2026-12-01T00:00:00Z: 1 day and 19 hours.
        assert_eq!(left, (24 + 19) * 3_600_000);
        // The last ms of a month is still in it; the next is in the next.
        let dec1 = now + left;
        assert_eq!(window(Calendar::Month, dec1 - 1).0, 2026 * 12 + 10);
        assert_eq!(window(Calendar::Month, dec1).0, 2026 * 12 + 11);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
