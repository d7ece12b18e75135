//! DNS discovery: an upstream's targets come from DNS (A/AAAA records with a configured port, or
//! SRV records with their own ports and weights) and are looked up again every `refresh`, sooner
//! when the answer's TTL runs out first.
//!
//! A new answer replaces the target list whole (one `ArcSwap` store), but every target that stays
//! keeps its `Target` — and with it its pooled connections, in-flight count and health — so a
//! refresh never drops a connection to an unchanged address. A failed or empty lookup keeps the last
//! good list: a DNS outage must not become an upstream outage. One task per upstream runs while its
//! config snapshot is in force; a reload hands the current list to the next snapshot.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use tokio::task::JoinHandle;

use super::client::PoolSettings;
use super::cluster::{Target, UpstreamCluster};
use super::health::TargetHealth;

/// Most targets taken from one answer; a larger answer is cut (and logged), so a hostile or broken
/// DNS server cannot make Gantry open pools by the million.
pub const MAX_TARGETS: usize = 1024;

/// Longest wait before a failed lookup is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// DNS discovery settings (`upstreams.*.discovery.dns`).
#[derive(Debug, Clone, PartialEq)]
pub struct DnsDiscovery {
    /// Name looked up.
    pub name: String,
    /// Port of every address (A/AAAA); `None` looks the name up as SRV.
    pub port: Option<u16>,
    /// Longest time between two lookups.
    pub refresh: Duration,
    /// DNS servers; empty uses the system's.
    pub nameservers: Vec<SocketAddr>,
    /// Pool settings of the targets it creates.
    pub pool: PoolSettings,
}

impl DnsDiscovery {
    /// Whether a list found under `other` is valid under these settings (same question, same pools).
    pub fn same_source(&self, other: &Self) -> bool {
        self.name == other.name
            && self.port == other.port
            && self.nameservers == other.nameservers
            && self.pool == other.pool
    }
}

/// One answer: `(host:port, weight)` pairs, sorted, and until when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Addresses with their weights.
    pub addresses: Vec<(String, u32)>,
    /// The answer's TTL as an instant.
    pub valid_until: Instant,
}

/// Starts the discovery task of `cluster`, when it has one.
pub fn spawn_discovery(cluster: &Arc<UpstreamCluster>) -> Option<JoinHandle<()>> {
    let settings = cluster.resilience.discovery.clone()?;
    let weak = Arc::downgrade(cluster);
    Some(tokio::spawn(run(weak, settings)))
}

async fn run(cluster: Weak<UpstreamCluster>, settings: DnsDiscovery) {
    let resolver = match resolver(&settings) {
        Ok(resolver) => resolver,
        Err(err) => {
            tracing::error!(name = %settings.name, error = %err, "DNS discovery cannot start: no resolver configuration");
            if let Some(cluster) = cluster.upgrade() {
                // Nothing will ever be found: readiness must not wait for it.
                cluster
                    .resilience
                    .state
                    .discovery_settled
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return;
        }
    };
    loop {
        // Our own schedule decides when to ask again; the resolver's cache would answer for it.
        resolver.clear_cache();
        let wait = match resolve(&resolver, &settings).await {
            Ok(answer) if !answer.addresses.is_empty() => {
                let Some(cluster) = cluster.upgrade() else {
                    return;
                };
                apply(&cluster, &settings, &answer.addresses);
                next_refresh(&settings, answer.valid_until, Instant::now())
            }
            Ok(_) => {
                tracing::warn!(name = %settings.name, "DNS answer has no addresses; keeping the last good targets");
                settings.refresh.min(RETRY_AFTER_FAILURE)
            }
            Err(err) => {
                tracing::warn!(name = %settings.name, error = %err, "DNS lookup failed; keeping the last good targets");
                settings.refresh.min(RETRY_AFTER_FAILURE)
            }
        };
        // Ready or not, the first answer is in: readiness stops waiting for it.
        if let Some(cluster) = cluster.upgrade() {
            cluster
                .resilience
                .state
                .discovery_settled
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if cluster.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// When to look again: at `refresh`, or when the answer expires if that is sooner, but not in a
/// busy loop on a zero TTL.
fn next_refresh(settings: &DnsDiscovery, valid_until: Instant, now: Instant) -> Duration {
    let floor = settings.refresh.min(Duration::from_secs(1));
    valid_until
        .saturating_duration_since(now)
        .min(settings.refresh)
        .max(floor)
}

fn resolver(settings: &DnsDiscovery) -> Result<TokioResolver, ResolveError> {
    let mut builder = if settings.nameservers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let mut config = ResolverConfig::new();
        for server in &settings.nameservers {
            config.add_name_server(NameServerConfig::new(*server, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*server, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let options = builder.options_mut();
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    Ok(builder.build())
}

async fn resolve(
    resolver: &TokioResolver,
    settings: &DnsDiscovery,
) -> Result<Answer, ResolveError> {
    let mut addresses = Vec::new();
    let valid_until = match settings.port {
        Some(port) => {
            let ips = resolver.lookup_ip(settings.name.as_str()).await?;
            addresses.extend(
                ips.iter()
                    .map(|ip| (SocketAddr::new(ip, port).to_string(), 1)),
            );
            ips.valid_until()
        }
        None => {
            let records = resolver.srv_lookup(settings.name.as_str()).await?;
            let mut valid_until = records.as_lookup().valid_until();
            for record in records.iter().take(MAX_TARGETS) {
                let ips = resolver.lookup_ip(record.target().clone()).await?;
                valid_until = valid_until.min(ips.valid_until());
                let weight = u32::from(record.weight()).max(1);
                addresses.extend(
                    ips.iter()
                        .map(|ip| (SocketAddr::new(ip, record.port()).to_string(), weight)),
                );
            }
            valid_until
        }
    };
    addresses.sort();
    addresses.dedup_by(|a, b| a.0 == b.0);
    if addresses.len() > MAX_TARGETS {
        tracing::warn!(name = %settings.name, found = addresses.len(), kept = MAX_TARGETS, "DNS answer has too many addresses");
        addresses.truncate(MAX_TARGETS);
    }
    Ok(Answer {
        addresses,
        valid_until,
    })
}

/// Replaces the cluster's targets with `addresses`, keeping the `Target` (pool, health) of every
/// address that stays.
pub fn apply(cluster: &UpstreamCluster, settings: &DnsDiscovery, addresses: &[(String, u32)]) {
    let current = cluster.targets.load_full();
    let unchanged = current.len() == addresses.len()
        && current
            .iter()
            .zip(addresses)
            .all(|(t, (authority, weight))| t.authority == *authority && t.weight == *weight);
    if unchanged {
        return;
    }
    let next: Vec<Arc<Target>> = addresses
        .iter()
        .filter_map(|(authority, weight)| {
            if let Some(kept) = current
                .iter()
                .find(|t| t.authority == *authority && t.weight == *weight)
            {
                return Some(Arc::clone(kept));
            }
            let health = current
                .iter()
                .find(|t| t.authority == *authority)
                .map_or_else(
                    || {
                        Arc::new(TargetHealth::new(
                            &cluster.name,
                            authority,
                            cluster.resilience.state.clock.clone(),
                        ))
                    },
                    |t| Arc::clone(&t.health),
                );
            Target::new(authority, *weight, &settings.pool, health).map(Arc::new)
        })
        .collect();
    let added: Vec<&str> = next
        .iter()
        .filter(|t| !current.iter().any(|c| Arc::ptr_eq(c, t)))
        .map(|t| t.authority.as_str())
        .collect();
    let removed: Vec<&str> = current
        .iter()
        .filter(|c| !next.iter().any(|t| Arc::ptr_eq(c, t)))
        .map(|t| t.authority.as_str())
        .collect();
    tracing::info!(upstream = %cluster.name, name = %settings.name, ?added, ?removed, "DNS discovery changed the targets");
    cluster.targets.store(Arc::new(next));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(refresh: Duration) -> DnsDiscovery {
        DnsDiscovery {
            name: "svc.test".into(),
            port: Some(80),
            refresh,
            nameservers: Vec::new(),
            pool: PoolSettings {
                max_idle: 1,
                max_open: 1,
                idle_timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
                max_response_head: 1024,
                http2: false,
                tls: None,
            },
        }
    }

    #[test]
    fn refresh_follows_the_ttl_when_it_is_sooner_but_never_spins() {
        let now = Instant::now();
        let s = settings(Duration::from_secs(30));
        assert_eq!(
            next_refresh(&s, now + Duration::from_secs(10), now),
            Duration::from_secs(10)
        );
        assert_eq!(
            next_refresh(&s, now + Duration::from_secs(300), now),
            Duration::from_secs(30)
        );
        assert_eq!(next_refresh(&s, now, now), Duration::from_secs(1));
        let fast = settings(Duration::from_millis(100));
        assert_eq!(next_refresh(&fast, now, now), Duration::from_millis(100));
    }
}
