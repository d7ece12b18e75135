//! The cluster-wide store: every check is one Lua script, run atomically by Redis in one round
//! trip, over all of a request's Redis-backed limits at once (all-or-nothing: if one refuses,
//! none is written). GCRA state is one integer key with a TTL, plus the newest time applied to it
//! (`KEY:now`); quotas are one counter per calendar window. The script is sent by SHA (`EVALSHA`)
//! and loaded again when Redis answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
//!
//! Redis failing must never stall requests: `redis.timeout` bounds every call, and a breaker stops
//! calling Redis for `breaker.open_for` after `breaker.failures` consecutive failures, so a dead
//! Redis costs nothing; the limits' `on_store_error` then decides. After `open_for` one probe call
//! goes through; its success closes the breaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::policy::clock::SharedClock;

/// Lua shared by the scripts that touch GCRA keys: time never goes backwards for a key.
/// `KEY:now` keeps the newest time applied to `KEY`, and a call stamped earlier (a gateway whose
/// clock lags, or a concurrent request that reached Redis second) is judged at that time: at its
/// own, it would see a TAT computed from a later time as further ahead than it is and be refused
/// at the burst's last unit. The times applied to a key still only come from gateway clocks and
/// now only increase, so a key admits at most `burst + (newest - first time) / T`, as before: this
/// cannot over-admit. `KEY` stays a plain number, so instances still running the previous script
/// (a rolling upgrade) read and write it as before. `KEY:now` is derived here rather than passed
/// in `KEYS`, which one Redis (not Cluster) allows.
macro_rules! gcra_state_lua {
    () => {
        r"
local function load(key, now)
  local state = redis.call('MGET', key, key .. ':now')
  return tonumber(state[1] or '0'), math.max(now, tonumber(state[2] or '0'))
end
local function save(key, tat, now)
  local ttl = math.floor((tat - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl)
  redis.call('SET', key .. ':now', string.format('%.0f', now), 'PX', ttl)
end
"
    };
}

/// The check, over `#KEYS` limits. `ARGV[1]` is now (µs, from the gateway's clock so tests can
/// inject one); then per key three values: kind (`g` GCRA, `q` quota), and
/// `g`: emission interval T, window B·T (µs); `q`: limit N, µs until the window ends.
/// Returns one number per key: `g`: `max(tat, now) + T - now`, with now the key's newest time
/// (see [`gcra_state_lua`]); `q`: the count including this request. A key is admitted when its
/// number is within its window/limit; only when all are, the new state is written.
const SCRIPT: &str = concat!(
    gcra_state_lua!(),
    r"
local now = tonumber(ARGV[1])
local values = {}
local at = {}
local ok = true
for i = 1, #KEYS do
  local kind = ARGV[3 * i - 1]
  local a = tonumber(ARGV[3 * i])
  local b = tonumber(ARGV[3 * i + 1])
  if kind == 'g' then
    local tat, t = load(KEYS[i], now)
    local ahead = math.max(tat, t) - t + a
    values[i] = ahead
    at[i] = t
    if ahead > b then ok = false end
  else
    local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
    values[i] = cur + 1
    if cur + 1 > a then ok = false end
  end
end
if ok then
  for i = 1, #KEYS do
    local kind = ARGV[3 * i - 1]
    local b = tonumber(ARGV[3 * i + 1])
    if kind == 'g' then
      save(KEYS[i], at[i] + values[i], at[i])
    else
      redis.call('SET', KEYS[i], values[i], 'PX', math.floor(b / 1000) + 60000)
    end
  end
end
return values
"
);

/// Gives one request back to GCRA keys (another limit of the same request refused it).
const REFUND: &str = concat!(
    gcra_state_lua!(),
    r"
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local t = tonumber(ARGV[i + 1])
  local tat, at = load(KEYS[i], now)
  if tat > at then
    save(KEYS[i], math.max(tat - t, at), at)
  end
end
return 0
"
);

/// Charges GCRA keys with requests already admitted elsewhere (hybrid mode) and reports what is
/// left. Per key: `ARGV`: T, window B·T, count n (µs). The TAT moves even past the window, so every
/// instance sees an overdraft; returns, per key, the requests still admissible (>= 0).
const CHARGE: &str = concat!(
    gcra_state_lua!(),
    r"
local now = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local t = tonumber(ARGV[3 * i - 1])
  local w = tonumber(ARGV[3 * i])
  local n = tonumber(ARGV[3 * i + 1])
  local cur, at = load(KEYS[i], now)
  local tat = math.max(cur, at) + n * t
  if n > 0 then
    save(KEYS[i], tat, at)
  end
  local left = math.floor((at + w - tat) / t)
  if left < 0 then left = 0 end
  out[i] = left
end
return out
"
);

/// One key of a check.
#[derive(Debug, Clone)]
pub enum RedisOp {
    /// GCRA: key, emission interval, window (µs).
    Gcra(String, u64, u64),
    /// Quota: key (includes the window), limit, µs until the window ends.
    Quota(String, u64, u64),
}

/// Why a Redis check did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The breaker is open: Redis was not called.
    BreakerOpen,
    /// The call failed or took longer than `redis.timeout`.
    Failed,
}

/// Redis settings that decide whether a reload may keep the connection and breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://…` URL.
    pub url: String,
    /// Bound on every call.
    pub timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long the open breaker skips Redis.
    pub breaker_open_for: Duration,
}

/// Counters a test or the admin API can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedisStats {
    /// Calls sent to Redis (checks, refunds and connection attempts).
    pub calls: u64,
    /// Calls that failed or timed out.
    pub failures: u64,
    /// Checks answered without Redis because the breaker was open.
    pub skipped: u64,
    /// Whether the breaker is open now.
    pub breaker_open: bool,
    /// Requests admitted without a Redis answer (`on_store_error: allow`).
    pub allowed_on_error: u64,
    /// Requests refused with 503 without a Redis answer (`on_store_error: deny`).
    pub denied_on_error: u64,
}

impl RedisStats {
    /// Appends the counters in the Prometheus text format (for `/metrics`).
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let lines: [(&str, &str, &str, u64); 4] = [
            (
                "gantry_rate_limit_redis_calls_total",
                "counter",
                "Calls sent to Redis by rate limits (checks, refunds, reconciliations).",
                self.calls,
            ),
            (
                "gantry_rate_limit_redis_failures_total",
                "counter",
                "Redis calls that failed or timed out.",
                self.failures,
            ),
            (
                "gantry_rate_limit_redis_skipped_total",
                "counter",
                "Checks answered without Redis because its breaker was open.",
                self.skipped,
            ),
            (
                "gantry_rate_limit_redis_breaker_open",
                "gauge",
                "Whether the breaker around Redis is open.",
                u64::from(self.breaker_open),
            ),
        ];
        for (name, kind, help, value) in lines {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        let name = "gantry_rate_limit_store_error_decisions_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests decided by on_store_error because Redis could not answer."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(
            out,
            "{name}{{decision=\"allow\"}} {}",
            self.allowed_on_error
        );
        let _ = writeln!(out, "{name}{{decision=\"deny\"}} {}", self.denied_on_error);
    }
}

/// The shared Redis store of one gateway; kept across reloads while its settings are unchanged.
pub struct RedisStore {
    settings: RedisSettings,
    client: redis::Client,
    manager: OnceCell<ConnectionManager>,
    script: redis::Script,
    refund: redis::Script,
    charge: redis::Script,
    clock: SharedClock,
    calls: AtomicU64,
    failures: AtomicU64,
    skipped: AtomicU64,
    allowed_on_error: AtomicU64,
    denied_on_error: AtomicU64,
    consecutive: AtomicU32,
    /// Wall-clock ms until which Redis is skipped; 0 = closed.
    open_until_ms: AtomicU64,
    /// One probe at a time once `open_until_ms` has passed.
    probing: AtomicBool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.settings.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store for `settings`; connects lazily on the first check. Fails only on a bad URL.
    pub fn new(settings: RedisSettings, clock: SharedClock) -> Result<Self, String> {
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| e.to_string())?;
        Ok(Self {
            settings,
            client,
            manager: OnceCell::new(),
            script: redis::Script::new(SCRIPT),
            refund: redis::Script::new(REFUND),
            charge: redis::Script::new(CHARGE),
            clock,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            allowed_on_error: AtomicU64::new(0),
            denied_on_error: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        })
    }

    /// The settings this store was built from.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// The counters.
    pub fn stats(&self) -> RedisStats {
        let open_until = self.open_until_ms.load(Ordering::Acquire);
        RedisStats {
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            breaker_open: open_until != 0,
            allowed_on_error: self.allowed_on_error.load(Ordering::Relaxed),
            denied_on_error: self.denied_on_error.load(Ordering::Relaxed),
        }
    }

    /// Counts a request admitted because Redis could not answer.
    pub fn count_allowed_on_error(&self) {
        self.allowed_on_error.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request refused because Redis could not answer.
    pub fn count_denied_on_error(&self) {
        self.denied_on_error.fetch_add(1, Ordering::Relaxed);
    }

    /// The injected clock, in µs.
    pub fn now_us(&self) -> u64 {
        self.clock.now_ms().saturating_mul(1000)
    }

    /// The injected clock, in ms.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Runs one atomic check of `ops` at `now_us`; returns one number per op (see [`SCRIPT`]).
    pub async fn check(&self, ops: &[RedisOp], now_us: u64) -> Result<Vec<u64>, StoreError> {
        let probe = self.admit_call()?;
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(now_us);
        for op in ops {
            match op {
                RedisOp::Gcra(key, t, window) => invocation.key(key).arg("g").arg(*t).arg(*window),
                RedisOp::Quota(key, limit, left) => {
                    invocation.key(key).arg("q").arg(*limit).arg(*left)
                }
            };
        }
        let result = self
            .call(|mut conn| async move { invocation.invoke_async::<Vec<u64>>(&mut conn).await })
            .await;
        self.record(result.is_ok(), probe);
        result
    }

    /// Gives one request back to the GCRA keys of `ops` (quota counters are not refunded: a
    /// refused request that consumed a quota unit is the rarer, safer error).
    pub async fn refund(&self, ops: &[RedisOp], now_us: u64) {
        let Ok(probe) = self.admit_call() else {
            return;
        };
        let mut invocation = self.refund.prepare_invoke();
        invocation.arg(now_us);
        let mut any = false;
        for op in ops {
            if let RedisOp::Gcra(key, t, _) = op {
                invocation.key(key).arg(*t);
                any = true;
            }
        }
        if !any {
            self.probing.store(false, Ordering::Release);
            return;
        }
        let result = self
            .call(|mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await })
            .await;
        if result.is_err() {
            tracing::warn!("rate limit: refund to Redis failed");
        }
        self.record(result.is_ok(), probe);
    }

    /// Charges GCRA keys `(key, T, window, count)` with admissions made locally (hybrid mode) and
    /// returns, per key, the requests still admissible across all instances.
    pub async fn charge(
        &self,
        keys: &[(String, u64, u64, u64)],
        now_us: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let probe = self.admit_call()?;
        let mut invocation = self.charge.prepare_invoke();
        invocation.arg(now_us);
        for (key, t, window, count) in keys {
            invocation.key(key).arg(*t).arg(*window).arg(*count);
        }
        let result = self
            .call(|mut conn| async move { invocation.invoke_async::<Vec<u64>>(&mut conn).await })
            .await;
        self.record(result.is_ok(), probe);
        result
    }

    /// Whether Redis may be called now; `Ok(true)` for the single half-open probe.
    fn admit_call(&self) -> Result<bool, StoreError> {
        let open_until = self.open_until_ms.load(Ordering::Acquire);
        if open_until == 0 {
            return Ok(false);
        }
        if self.clock.now_ms() < open_until
            || self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::BreakerOpen);
        }
        Ok(true)
    }

    /// Sends one call through the connection manager, bounded by `redis.timeout`.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let timeout = self.settings.timeout;
        let attempt = async {
            let manager = self
                .manager
                .get_or_try_init(|| async {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout))
                        .set_number_of_retries(1)
                        .set_max_delay(Duration::from_millis(100));
                    ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                })
                .await?;
            f(manager.clone()).await
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "rate limit: Redis call failed");
                Err(StoreError::Failed)
            }
            Err(_) => {
                tracing::warn!(timeout = ?timeout, "rate limit: Redis call timed out");
                Err(StoreError::Failed)
            }
        }
    }

    /// Feeds the breaker with one call's outcome.
    fn record(&self, ok: bool, probe: bool) {
        if ok {
            self.consecutive.store(0, Ordering::Relaxed);
            if self.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
                tracing::info!("rate limit: Redis answers again; breaker closed");
            }
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            let failures = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
            if probe || failures >= self.settings.breaker_failures {
                let until = self
                    .clock
                    .now_ms()
                    .saturating_add(
                        u64::try_from(self.settings.breaker_open_for.as_millis())
                            .unwrap_or(u64::MAX),
                    )
                    .max(1);
                if self.open_until_ms.swap(until, Ordering::AcqRel) == 0 {
                    tracing::error!(
                        failures,
                        open_for = ?self.settings.breaker_open_for,
                        "rate limit: Redis breaker opened; limits follow on_store_error"
                    );
                }
            }
        }
        if probe {
            self.probing.store(false, Ordering::Release);
        }
    }
}

/// A handle shared by the limits that use Redis.
pub type SharedRedis = Arc<RedisStore>;
