#![allow(clippy::unwrap_used)]
//! Redis-backed limits against a real `redis-server`: exact across three gateway instances under
//! concurrency (rate and daily quota), `EVALSHA` surviving a script flush, a Redis outage handled by
//! `on_store_error` with the breaker keeping requests off Redis, limiting resuming after Redis
//! returns, calendar quotas on an injected clock, and requests stamped earlier than a time a key has
//! already seen (clock skew, concurrency) judged at that newest time by check, charge and refund.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gantry::policy::clock::FakeClock;
use gantry::policy::rate_limit::redis::{RedisSettings, RedisStore};
use gantry::policy::rate_limit::{
    Calendar, KeyContext, KeySpec, Limit, LimitKind, LimitStore, OnStoreError, RateLimitSet,
};
use http::{HeaderMap, Request, StatusCode};
use support::{RedisServer, TestGateway, Upstream, empty, http1_client};

fn config(upstream: &str, redis: &str, routes: &str) -> String {
    format!(
        r#"version: 1
listeners:
  - {{ name: public, address: "127.0.0.1:0" }}
admin: {{ address: "127.0.0.1:0" }}
server:
  shutdown_grace: 5s
observability:
  access_log: {{ format: off }}
redis: {redis}
upstreams:
  backend:
    targets: [{{ url: "{upstream}" }}]
consumers:
  - {{ name: alice, api_keys: [alice-key] }}
  - {{ name: bob, api_keys: [bob-key] }}
routes:
{routes}
"#
    )
}

async fn call(gw: &TestGateway, path: &str, key: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::get(gw.url(path));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let c = http1_client().fetch(request.body(empty()).unwrap()).await;
    let text = c.text();
    (c.status, c.headers, text)
}

/// Sends `per_instance` requests to each gateway from many concurrent tasks; returns the statuses.
async fn hammer(
    gateways: &[Arc<TestGateway>],
    path: &str,
    key: Option<&str>,
    per_instance: usize,
) -> Vec<u16> {
    let mut tasks = tokio::task::JoinSet::new();
    for gw in gateways {
        for _ in 0..per_instance {
            let gw = Arc::clone(gw);
            let path = path.to_owned();
            let key = key.map(str::to_owned);
            tasks.spawn(async move { call(&gw, &path, key.as_deref()).await.0.as_u16() });
        }
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses
}

async fn three(upstream: &Upstream, redis: &str, routes: &str) -> Vec<Arc<TestGateway>> {
    let text = config(&upstream.url(), redis, routes);
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(Arc::new(TestGateway::start_with(&text, &[]).await));
    }
    gateways
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_sharing_redis_admit_exactly_the_burst_and_the_quota() {
    let redis = RedisServer::start();
    let upstream = Upstream::start("backend").await;
    // A generous timeout and fail-closed: a slow machine shows up as 503s, never as over-admission.
    let gateways = three(
        &upstream,
        &format!("{{ url: \"{}\", timeout: 2s }}", redis.url()),
        "  - name: slow
    match: { path_prefix: /slow }
    upstream: backend
    policies:
      rate_limit: [{ key: route, rate: 1/h, burst: 17, store: redis, on_store_error: deny }]
  - name: quota
    match: { path_prefix: /quota }
    upstream: backend
    policies:
      auth: { methods: [api_key] }
      rate_limit: [{ key: consumer, rate: 7/day, store: redis, on_store_error: deny }]",
    )
    .await;
    let statuses = hammer(&gateways, "/slow", None, 40).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        17,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 120 - 17);

    let statuses = hammer(&gateways, "/quota", Some("alice-key"), 10).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 30 - 7);
    // Bob's quota is his own.
    let statuses = hammer(&gateways, "/quota", Some("bob-key"), 3).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "{statuses:?}"
    );
    let (status, headers, body) = call(&gateways[0], "/quota", Some("alice-key")).await;
    assert_eq!(status, 429, "{body}");
    let policy = headers.get("ratelimit-policy").unwrap().to_str().unwrap();
    assert_eq!(policy, "\"consumer\";q=7;w=86400");
    let retry: u64 = headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "until midnight UTC: {retry}");

    // The script cache emptied (as after a Redis restart): EVALSHA's NOSCRIPT loads it again.
    assert_eq!(redis.command("SCRIPT FLUSH"), "+OK");
    assert_eq!(call(&gateways[1], "/slow", None).await.0, 429);
    assert_eq!(call(&gateways[2], "/quota", Some("alice-key")).await.0, 429);
    let stats = gateways[1]
        .gateway()
        .runtime()
        .rate_limits
        .redis_stats()
        .unwrap();
    assert_eq!(stats.failures, 0, "{stats:?}");
}

#[tokio::test]
async fn a_redis_outage_follows_on_store_error_and_the_breaker_keeps_requests_off_redis() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let upstream = Upstream::start("backend").await;
    let text = config(
        &upstream.url(),
        &format!(
            "{{ url: \"{}\", timeout: 500ms, breaker: {{ failures: 2, open_for: 2s }} }}",
            redis.url()
        ),
        "  - name: open
    match: { path_prefix: /open }
    upstream: backend
    policies:
      rate_limit: [{ key: route, rate: 1/h, burst: 2, store: redis, on_store_error: allow }]
  - name: closed
    match: { path_prefix: /closed }
    upstream: backend
    policies:
      rate_limit: [{ key: route, rate: 1/h, burst: 100, store: redis, on_store_error: deny }]",
    );
    let gw = TestGateway::start_with(&text, &[]).await;
    let stats = || gw.gateway().runtime().rate_limits.redis_stats().unwrap();
    assert_eq!(call(&gw, "/open", None).await.0, 200);
    assert_eq!(call(&gw, "/open", None).await.0, 200);
    assert_eq!(call(&gw, "/open", None).await.0, 429);

    redis.kill();
    // Until the breaker opens, each request tries Redis and fails: open admits, closed refuses.
    let mut tries = 0;
    while !stats().breaker_open {
        tries += 1;
        assert!(
            tries < 100,
            "safety net: the breaker never opened: {:?}",
            stats()
        );
        let (status, _, body) = call(&gw, "/closed", None).await;
        assert_eq!(status, 503, "{body}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["type"], "urn:gantry:problem:rate-limit-unavailable");
    }
    let before = stats();
    for _ in 0..10 {
        assert_eq!(call(&gw, "/open", None).await.0, 200, "fail open");
        let (status, headers, _) = call(&gw, "/closed", None).await;
        assert_eq!(status, 503, "fail closed");
        assert_eq!(headers.get("retry-after").unwrap(), "1");
    }
    let after = stats();
    if after.breaker_open {
        assert_eq!(
            after.calls, before.calls,
            "an open breaker must keep requests off Redis"
        );
        assert!(after.skipped >= before.skipped + 20, "{after:?}");
    }
    assert!(
        after.allowed_on_error >= 10 && after.denied_on_error >= 10,
        "{after:?}"
    );

    // Redis comes back (empty) on the same port: after open_for, a probe closes the breaker and
    // limiting resumes: two admitted, then 429.
    let _redis = RedisServer::start_on(port);
    let mut tries = 0;
    loop {
        tries += 1;
        assert!(
            tries < 2000,
            "safety net: limiting never resumed: {:?}",
            stats()
        );
        if call(&gw, "/open", None).await.0 == 429 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!stats().breaker_open);
    assert_eq!(call(&gw, "/closed", None).await.0, 200);
}

fn limit(
    store: &Arc<RedisStore>,
    clock: &Arc<FakeClock>,
    kind: LimitKind,
    key: &str,
) -> Arc<Limit> {
    shared_limit(store, clock, kind, key, &uuid_like().to_string())
}

/// A limit whose counters are those of every other limit made with the same `identity` (the same
/// limit on another gateway).
fn shared_limit(
    store: &Arc<RedisStore>,
    clock: &Arc<FakeClock>,
    kind: LimitKind,
    key: &str,
    identity: &str,
) -> Arc<Limit> {
    Arc::new(Limit {
        name: Arc::from(key),
        key: KeySpec::parse(key).unwrap(),
        kind,
        store: LimitStore::Redis(Arc::clone(store)),
        on_store_error: OnStoreError::Deny,
        headers: true,
        detail: Arc::from("test"),
        identity: Arc::from(format!("test|{key}|{kind:?}|{identity}")),
        clock: clock.clone(),
    })
}

/// A request from 127.0.0.1 on route `r`.
fn request(headers: &HeaderMap) -> KeyContext<'_> {
    KeyContext {
        ip: [127, 0, 0, 1].into(),
        route: "r",
        headers,
        identity: None,
    }
}

/// Route `r` with one limit, checked before authentication.
fn route(limit: Arc<Limit>) -> RateLimitSet {
    RateLimitSet {
        route: Arc::from("r"),
        before_auth: vec![limit],
        after_auth: Vec::new(),
        policy_header: None,
    }
}

fn settings(redis: &RedisServer) -> RedisSettings {
    RedisSettings {
        url: redis.url(),
        timeout: Duration::from_secs(2),
        breaker_failures: 3,
        breaker_open_for: Duration::from_secs(5),
    }
}

/// A per-run suffix so reruns against one Redis never share keys.
fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn quotas_follow_the_utc_calendar_on_an_injected_clock() {
    let redis = RedisServer::start();
    // 2026-11-30T23:59:59Z: one second before both a new day and a new month.
    let clock = FakeClock::at(1_796_083_199_000);
    let store = Arc::new(RedisStore::new(settings(&redis), clock.clone()).unwrap());
    let set = |kind, key| route(limit(&store, &clock, kind, key));
    let daily = set(
        LimitKind::Quota {
            count: 3,
            calendar: Calendar::Day,
        },
        "header:x-day",
    );
    let monthly = set(
        LimitKind::Quota {
            count: 2,
            calendar: Calendar::Month,
        },
        "header:x-month",
    );
    let headers = HeaderMap::new();
    let ctx = request(&headers);
    for _ in 0..3 {
        daily.check(false, &ctx, &mut None).await.unwrap();
    }
    let Err(gantry::error::GatewayError::RateLimited { retry_after, .. }) =
        daily.check(false, &ctx, &mut None).await
    else {
        panic!("fourth request of the day admitted");
    };
    assert_eq!(retry_after, Duration::from_secs(1), "until midnight UTC");
    for _ in 0..2 {
        monthly.check(false, &ctx, &mut None).await.unwrap();
    }
    assert!(monthly.check(false, &ctx, &mut None).await.is_err());
    // Midnight, 1 December: both windows start afresh.
    clock.advance(Duration::from_secs(1));
    for _ in 0..3 {
        daily.check(false, &ctx, &mut None).await.unwrap();
    }
    assert!(daily.check(false, &ctx, &mut None).await.is_err());
    let mut rate_headers = None;
    monthly.check(false, &ctx, &mut rate_headers).await.unwrap();
    let value = rate_headers
        .unwrap()
        .get("ratelimit")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // 31 days of December left.
    assert_eq!(value, "\"header:x-month\";r=1;t=2678400");
    // Within the day, the quota does not refill with time.
    clock.advance(Duration::from_secs(3600));
    assert!(daily.check(false, &ctx, &mut None).await.is_err());
}

#[tokio::test]
async fn gcra_in_redis_admits_the_burst_and_refills_on_an_injected_clock() {
    let redis = RedisServer::start();
    let clock = FakeClock::at(1_796_000_000_000);
    let store = Arc::new(RedisStore::new(settings(&redis), clock.clone()).unwrap());
    let gcra = gantry::policy::rate_limit::gcra::Gcra::new(10, Duration::from_secs(1), 4).unwrap();
    let set = route(limit(&store, &clock, LimitKind::Rate(gcra), "global"));
    let headers = HeaderMap::new();
    let ctx = request(&headers);
    for _ in 0..4 {
        set.check(false, &ctx, &mut None).await.unwrap();
    }
    let Err(gantry::error::GatewayError::RateLimited { retry_after, .. }) =
        set.check(false, &ctx, &mut None).await
    else {
        panic!("fifth admitted");
    };
    assert_eq!(retry_after, Duration::from_millis(100));
    clock.advance(Duration::from_millis(100));
    set.check(false, &ctx, &mut None).await.unwrap();
    assert!(set.check(false, &ctx, &mut None).await.is_err());
}

/// Two gateways share a bucket (rate 1/h, burst 3) and the second one's clock reads 1 ms less: a
/// request stamped a little before one Redis has already counted (clock skew, or two concurrent
/// requests reaching Redis in the other order). It must get the burst's last unit, judged at the
/// newest time the key has seen, and no more is admitted than the burst and the rate allow.
#[tokio::test]
async fn a_request_stamped_before_one_already_counted_gets_the_last_unit_of_the_burst() {
    let redis = RedisServer::start();
    let front = FakeClock::at(1_796_000_000_001);
    let behind = FakeClock::at(1_796_000_000_000);
    let gcra =
        gantry::policy::rate_limit::gcra::Gcra::new(1, Duration::from_secs(3600), 3).unwrap();
    let gateway = |clock: &Arc<FakeClock>| {
        let store = Arc::new(RedisStore::new(settings(&redis), clock.clone()).unwrap());
        route(shared_limit(
            &store,
            clock,
            LimitKind::Rate(gcra),
            "global",
            "shared",
        ))
    };
    let (front_gw, behind_gw) = (gateway(&front), gateway(&behind));
    let headers = HeaderMap::new();
    let ctx = request(&headers);
    for _ in 0..2 {
        front_gw.check(false, &ctx, &mut None).await.unwrap();
    }
    let mut rate_headers = None;
    behind_gw
        .check(false, &ctx, &mut rate_headers)
        .await
        .expect("the third of a burst of 3, stamped 1 ms earlier, is admitted");
    let value = rate_headers.unwrap()["ratelimit"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(value, "\"global\";r=0;t=10800");
    assert!(front_gw.check(false, &ctx, &mut None).await.is_err());
    assert!(behind_gw.check(false, &ctx, &mut None).await.is_err());
    // One interval later exactly one more.
    front.advance(Duration::from_secs(3600));
    behind.advance(Duration::from_secs(3600));
    front_gw.check(false, &ctx, &mut None).await.unwrap();
    assert!(behind_gw.check(false, &ctx, &mut None).await.is_err());
    assert!(front_gw.check(false, &ctx, &mut None).await.is_err());
}

/// The hybrid store's reconciliation (`charge`) and refunds stamped before a time the key has
/// already seen count from that newest time too, like the check.
#[tokio::test]
async fn charges_and_refunds_stamped_earlier_count_from_the_newest_time_the_key_has_seen() {
    use gantry::policy::rate_limit::redis::RedisOp;
    const T: u64 = 3_600_000_000;
    let redis = RedisServer::start();
    let store = RedisStore::new(settings(&redis), FakeClock::at(0)).unwrap();
    let newer = 1_796_000_000_001_000;
    let older = newer - 1000;
    let op = [RedisOp::Gcra("k".into(), T, 3 * T)];
    let charge = |n: u64| [("k".to_owned(), T, 3 * T, n)];
    // `check` answers how far ahead of now the TAT runs with this request: within 3T = admitted.
    assert_eq!(store.check(&op, newer).await.unwrap(), [T]);
    assert_eq!(store.check(&op, newer).await.unwrap(), [2 * T]);
    // One unit left, also for a reconciliation stamped 1 ms earlier; charging it empties the bucket.
    assert_eq!(store.charge(&charge(0), older).await.unwrap(), [1]);
    assert_eq!(store.charge(&charge(1), older).await.unwrap(), [0]);
    assert_eq!(store.check(&op, older).await.unwrap(), [4 * T], "refused");
    // A refund stamped earlier gives back exactly one unit.
    store.refund(&op, older).await;
    assert_eq!(store.check(&op, older).await.unwrap(), [3 * T], "admitted");
    assert_eq!(store.check(&op, newer).await.unwrap(), [4 * T], "refused");
    assert_eq!(store.stats().failures, 0);
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_probes_after_open_for() {
    // Nothing listens on this port: every call fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clock = FakeClock::at(1_796_000_000_000);
    let settings = RedisSettings {
        url: format!("redis://127.0.0.1:{port}"),
        timeout: Duration::from_secs(1),
        breaker_failures: 3,
        breaker_open_for: Duration::from_secs(5),
    };
    let store = Arc::new(RedisStore::new(settings, clock.clone()).unwrap());
    let ops = [gantry::policy::rate_limit::redis::RedisOp::Gcra(
        "k".into(),
        1000,
        1000,
    )];
    for _ in 0..3 {
        assert!(store.check(&ops, 0).await.is_err());
    }
    let stats = store.stats();
    assert!(stats.breaker_open);
    assert_eq!(stats.failures, 3);
    let calls = stats.calls;
    for _ in 0..50 {
        assert_eq!(
            store.check(&ops, 0).await,
            Err(gantry::policy::rate_limit::redis::StoreError::BreakerOpen)
        );
    }
    assert_eq!(store.stats().calls, calls);
    assert_eq!(store.stats().skipped, 50);
    // open_for later: exactly one probe goes to Redis; it fails, so the breaker stays open.
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        store.check(&ops, 0).await,
        Err(gantry::policy::rate_limit::redis::StoreError::Failed)
    );
    assert_eq!(store.stats().calls, calls + 1);
    assert_eq!(
        store.check(&ops, 0).await,
        Err(gantry::policy::rate_limit::redis::StoreError::BreakerOpen)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hybrid_mode_stays_within_its_documented_bound_across_three_instances() {
    let redis = RedisServer::start();
    let upstream = Upstream::start("backend").await;
    let gateways = three(
        &upstream,
        &format!("{{ url: \"{}\", timeout: 2s }}", redis.url()),
        "  - name: hybrid
    match: { path_prefix: /hybrid }
    upstream: backend
    policies:
      rate_limit: [{ key: route, rate: 1/h, burst: 40, store: hybrid, on_store_error: deny }]",
    )
    .await;
    // Waves of concurrent requests until the shared bucket is dry everywhere: each wave after the
    // first finds allowances refreshed by the reconcilers (polled, never slept on).
    let mut admitted = 0;
    let mut dry_waves = 0;
    let mut waves = 0;
    while dry_waves < 3 {
        waves += 1;
        assert!(
            waves < 2000,
            "safety net: the bucket never ran dry ({admitted} admitted)"
        );
        let syncs = |gw: &TestGateway| gw.gateway().runtime().rate_limits.hybrid_syncs();
        let before: Vec<_> = gateways.iter().map(|g| syncs(g)).collect();
        let statuses = hammer(&gateways, "/hybrid", None, 10).await;
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 429),
            "{statuses:?}"
        );
        let wave = statuses.iter().filter(|s| **s == 200).count();
        admitted += wave;
        dry_waves = if wave == 0 { dry_waves + 1 } else { 0 };
        // Let every reconciler run at least once before the next wave.
        for (gw, before) in gateways.iter().zip(before) {
            let mut polls = 0;
            while syncs(gw) == before {
                polls += 1;
                assert!(polls < 10_000, "safety net: a reconciler stopped");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    // Never fewer than the burst; at most N x floor(burst / 4) over it (README, hybrid mode).
    assert!(
        (40..=40 + 3 * 10).contains(&admitted),
        "admitted {admitted}"
    );
}

#[tokio::test]
async fn a_consumer_refusal_in_redis_gives_back_the_ip_admission_in_redis() {
    let redis = RedisServer::start();
    let upstream = Upstream::start("backend").await;
    let text = config(
        &upstream.url(),
        &format!("{{ url: \"{}\", timeout: 2s }}", redis.url()),
        "  - name: api
    match: { path_prefix: /api }
    upstream: backend
    policies:
      auth: { methods: [api_key] }
      rate_limit:
        - { key: ip, rate: 1/h, burst: 2, store: redis, on_store_error: deny }
        - { key: consumer, rate: 1/h, burst: 1, store: redis, on_store_error: deny }",
    );
    let gw = TestGateway::start_with(&text, &[]).await;
    assert_eq!(call(&gw, "/api", Some("alice-key")).await.0, 200);
    for _ in 0..4 {
        assert_eq!(call(&gw, "/api", Some("alice-key")).await.0, 429);
    }
    // Alice's refusals took nothing from the IP bucket: Bob, from the same IP, still gets in.
    assert_eq!(call(&gw, "/api", Some("bob-key")).await.0, 200);
    let (status, headers, _) = call(&gw, "/api", Some("bob-key")).await;
    assert_eq!(status, 429);
    assert!(
        headers
            .get("ratelimit")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("\"ip\";r=0"),
        "{headers:?}"
    );
}

#[tokio::test]
async fn hybrid_mode_follows_on_store_error_once_redis_is_gone() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start("backend").await;
    let text = config(
        &upstream.url(),
        &format!(
            "{{ url: \"{}\", timeout: 500ms, breaker: {{ failures: 2, open_for: 30s }} }}",
            redis.url()
        ),
        "  - name: open
    match: { path_prefix: /open }
    upstream: backend
    policies:
      rate_limit: [{ key: route, rate: 1/h, burst: 2, store: hybrid, on_store_error: allow }]
  - name: closed
    match: { path_prefix: /closed }
    upstream: backend
    policies:
      rate_limit: [{ key: route, rate: 1/h, burst: 2, store: hybrid, on_store_error: deny }]",
    );
    let gw = TestGateway::start_with(&text, &[]).await;
    // A burst below 4 leaves no local allowance: these are decided exactly in Redis.
    for path in ["/open", "/closed"] {
        assert_eq!(call(&gw, path, None).await.0, 200);
        assert_eq!(call(&gw, path, None).await.0, 200);
        assert_eq!(call(&gw, path, None).await.0, 429);
    }
    let before = gw.gateway().runtime().rate_limits.redis_stats().unwrap();
    redis.kill();
    // A refill can no longer be learned; what Redis cannot decide follows on_store_error.
    let mut tries = 0;
    let (mut open, mut closed) = (0, 0);
    while open == 0 || closed == 0 {
        tries += 1;
        assert!(tries < 2000, "safety net: on_store_error never applied");
        let stats = gw.gateway().runtime().rate_limits.redis_stats().unwrap();
        if stats.failures > before.failures {
            let (o, _, _) = call(&gw, "/open", None).await;
            let (c, _, body) = call(&gw, "/closed", None).await;
            assert!(o == 200 || o == 429, "{o}");
            assert!(c == 503 || c == 429, "{c}: {body}");
            open += usize::from(o == 200);
            closed += usize::from(c == 503);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
