//! Target health: active checks (a GET on `path` every `interval`) and the passive state that
//! outlier ejection keeps ([`super::outlier`]).
//!
//! A target is in the balancer while its active checks say healthy (the starting assumption, so a
//! new config serves at once) and it is not ejected. Active state flips only after
//! `unhealthy_after` failed or `healthy_after` passed checks in a row, so one lost probe does not
//! move traffic. Each [`TargetHealth`] is kept across reloads under (upstream, target), and one
//! checker task per upstream runs while its config snapshot is in force.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{Request, header};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::clock::Clock;
use super::cluster::{UpstreamCluster, UpstreamProtocol};
use super::outlier::{Ejection, OutlierSettings};
use crate::handler::body::RequestBody;

/// Active health-check settings (`upstreams.*.health_check.active`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHealthSettings {
    /// Path requested with GET; a 2xx answer passes.
    pub path: String,
    /// Time between two checks of a target.
    pub interval: Duration,
    /// A check without response headers within this fails.
    pub timeout: Duration,
    /// Passed checks in a row that make an unhealthy target healthy.
    pub healthy_after: u32,
    /// Failed checks in a row that make a healthy target unhealthy.
    pub unhealthy_after: u32,
}

/// Health of one target: active check results and passive ejection.
#[derive(Debug)]
pub struct TargetHealth {
    upstream: String,
    authority: String,
    clock: Clock,
    healthy: AtomicBool,
    passes: AtomicU32,
    fails: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Mirrors `ejection.until.is_some()` so the balancer's fast path takes no lock.
    ejected: AtomicBool,
    ejection: Mutex<Ejection>,
}

impl TargetHealth {
    /// A healthy, never-ejected target.
    pub fn new(upstream: &str, authority: &str, clock: Clock) -> Self {
        Self {
            upstream: upstream.to_owned(),
            authority: authority.to_owned(),
            clock,
            healthy: AtomicBool::new(true),
            passes: AtomicU32::new(0),
            fails: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            ejection: Mutex::new(Ejection::default()),
        }
    }

    /// Whether the balancer may pick this target now.
    pub fn is_available(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }

    /// Whether active checks say healthy.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether the target is ejected now (an ejection whose time is up ends here).
    pub fn is_ejected(&self) -> bool {
        if !self.ejected.load(Ordering::Relaxed) {
            return false;
        }
        let now = self.clock.now();
        let Ok(mut ejection) = self.ejection.lock() else {
            return false;
        };
        let out = ejection.is_out(now);
        if !out {
            self.ejected.store(false, Ordering::Relaxed);
            tracing::info!(upstream = %self.upstream, target = %self.authority, "target back from ejection");
        }
        out
    }

    /// When the current ejection ends, if the target is ejected.
    pub fn ejected_until(&self) -> Option<Instant> {
        if !self.is_ejected() {
            return None;
        }
        self.ejection.lock().ok()?.until
    }

    /// Failures in a row seen by real requests.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// A try to this target succeeded.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A try to this target failed; ejects it when the failures in a row reach the threshold and
    /// fewer than the allowed share of `siblings` (the whole cluster, this one included) are out.
    /// Returns whether it was ejected.
    pub fn record_failure(
        &self,
        settings: &OutlierSettings,
        siblings: &[Arc<super::cluster::Target>],
    ) -> bool {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < settings.consecutive_failures.max(1) || self.is_ejected() {
            return false;
        }
        let out = siblings.iter().filter(|t| t.health.is_ejected()).count();
        if out >= settings.max_ejected(siblings.len()) {
            return false;
        }
        let now = self.clock.now();
        let Ok(mut ejection) = self.ejection.lock() else {
            return false;
        };
        let until = ejection.eject(settings, now);
        self.ejected.store(true, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        tracing::warn!(
            upstream = %self.upstream,
            target = %self.authority,
            failures,
            eject_for_ms = u64::try_from(until.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX),
            "target ejected"
        );
        true
    }

    /// Records one active check; flips the state after enough results in a row.
    pub fn record_check(&self, passed: bool, settings: &ActiveHealthSettings) {
        let (same, other, threshold) = if passed {
            (&self.passes, &self.fails, settings.healthy_after)
        } else {
            (&self.fails, &self.passes, settings.unhealthy_after)
        };
        other.store(0, Ordering::Relaxed);
        let streak = same.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if streak >= threshold.max(1) && self.is_healthy() != passed {
            self.healthy.store(passed, Ordering::Relaxed);
            if passed {
                tracing::info!(upstream = %self.upstream, target = %self.authority, "target healthy");
            } else {
                tracing::warn!(upstream = %self.upstream, target = %self.authority, streak, "target unhealthy");
            }
        }
    }
}

/// Starts the active checker of `cluster`, when it has one. The task ends on its own when the
/// cluster is dropped; the gateway also aborts it when a reload replaces the cluster.
pub fn spawn_checker(cluster: &Arc<UpstreamCluster>) -> Option<JoinHandle<()>> {
    let settings = cluster.resilience.active.clone()?;
    let http2 = cluster.protocol == UpstreamProtocol::Http2;
    let weak = Arc::downgrade(cluster);
    Some(tokio::spawn(run_checker(weak, settings, http2)))
}

async fn run_checker(cluster: Weak<UpstreamCluster>, settings: ActiveHealthSettings, http2: bool) {
    loop {
        {
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            let targets = cluster.targets.load_full();
            let checks = targets.iter().map(|target| {
                let settings = &settings;
                async move {
                    let passed = check(&target.authority, settings, http2).await;
                    target.health.record_check(passed, settings);
                }
            });
            futures_util::future::join_all(checks).await;
        }
        tokio::time::sleep(settings.interval).await;
    }
}

/// One check: a fresh connection (pooled ones belong to requests) speaking the upstream's
/// protocol, GET `path`, 2xx response headers within `timeout`.
async fn check(authority: &str, settings: &ActiveHealthSettings, http2: bool) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(authority).await.ok()?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let request = if http2 {
            Request::get(format!("http://{authority}{}", settings.path))
        } else {
            Request::get(settings.path.as_str()).header(header::HOST, authority)
        }
        .header(header::USER_AGENT, "gantry-health-check")
        .body(RequestBody::empty())
        .ok()?;
        let (response, connection) = if http2 {
            let (mut sender, connection) = http2::handshake(TokioExecutor::new(), io).await.ok()?;
            let connection = tokio::spawn(connection);
            (sender.send_request(request).await.ok()?, connection)
        } else {
            let (mut sender, connection) = http1::handshake(io).await.ok()?;
            let connection = tokio::spawn(connection);
            (sender.send_request(request).await.ok()?, connection)
        };
        // The status decides; the body is not read (a hostile endpoint could send gigabytes) and
        // the connection is closed, since it is never reused.
        let passed = response.status().is_success();
        drop(response);
        connection.abort();
        Some(passed)
    };
    matches!(
        tokio::time::timeout(settings.timeout, attempt).await,
        Ok(Some(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ActiveHealthSettings {
        ActiveHealthSettings {
            path: "/healthz".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_after: 2,
            unhealthy_after: 3,
        }
    }

    #[test]
    fn state_flips_only_after_results_in_a_row() {
        let health = TargetHealth::new("u", "t:1", Clock::fake().0);
        let s = settings();
        health.record_check(false, &s);
        health.record_check(false, &s);
        health.record_check(true, &s);
        health.record_check(false, &s);
        health.record_check(false, &s);
        assert!(health.is_available());
        health.record_check(false, &s);
        assert!(!health.is_available());
        health.record_check(true, &s);
        assert!(!health.is_available());
        health.record_check(true, &s);
        assert!(health.is_available());
    }
}
