//! The running gateway: its listeners, its current config, reloads and shutdown.
//!
//! A reload builds the whole new config off the request path (parse, validate, compile on the
//! blocking pool), binds any new listener sockets, and only then swaps the runtime snapshot in one
//! store. Requests keep the snapshot they started with. Listeners whose settings did not change keep
//! their sockets and connections; a changed listener at the same address hands its socket to a new
//! accept loop (nothing is refused); removed listeners stop accepting and drain. A config that fails
//! at any step is rejected with its file:line:col errors and the running config keeps serving.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::server::drain::Drain;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::ConfigErrors;
use crate::observe::access_log::AccessLog;
use crate::pipeline::edge::EdgeState;
use crate::runtime::{GatewayConfig, ListenerSettings, Runtime};
use crate::server::listener::{self, Stop};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address could not be bound.
    #[error("listener {listener}: cannot bind {address}")]
    Bind {
        /// Listener name.
        listener: String,
        /// Address from the config.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The access log output could not be opened.
    #[error("access log: cannot open {output}")]
    AccessLog {
        /// The configured output.
        output: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a reload was rejected; the running config is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway was started from text, not a file: there is nothing to read again.
    #[error("this gateway was not started from a config file")]
    NoSource,
    /// The new config is invalid.
    #[error("invalid config:\n{0}")]
    Invalid(ConfigErrors),
    /// A new listener could not be bound.
    #[error("{0}")]
    Bind(#[from] StartError),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

/// What happened to the last reloads, for the admin API and metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadStatus {
    /// Fingerprint of the config in force.
    pub version: String,
    /// When it was loaded (Unix seconds).
    pub loaded_at_unix: f64,
    /// The last reload's errors, if it failed (cleared by a successful one).
    pub last_error: Option<String>,
    /// Reloads applied.
    pub reloads_succeeded: u64,
    /// Reloads rejected.
    pub reloads_failed: u64,
}

/// A bound listener and its accept loop.
struct ListenerHandle {
    settings: ListenerSettings,
    max_connections: usize,
    /// One permit per connection the listener may still accept: open = max - available.
    slots: Arc<Semaphore>,
    bound: SocketAddr,
    stop: watch::Sender<Option<Stop>>,
    task: JoinHandle<TcpListener>,
    graceful: Arc<Drain>,
}

struct Shared {
    state: Arc<EdgeState>,
    /// Serialises reloads and shutdown; holds the listeners by name.
    listeners: tokio::sync::Mutex<BTreeMap<Arc<str>, ListenerHandle>>,
    /// Bound addresses, readable without waiting for a reload in progress.
    bound: Mutex<Vec<(Arc<str>, SocketAddr)>>,
    status: Mutex<ReloadStatus>,
    source_path: Option<PathBuf>,
    draining: AtomicBool,
    shutdown_grace: Mutex<Duration>,
    /// Background tasks (admin listener, file watcher) stopped at shutdown.
    background: Mutex<Vec<JoinHandle<()>>>,
    stop_background: watch::Sender<bool>,
    admin_addr: Mutex<Option<SocketAddr>>,
    /// Per-upstream tasks of the snapshot in force (health checks, DNS discovery), replaced on
    /// reload.
    upstream_tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A started gateway: a cheap handle (clones share it) to inspect, reload and stop it.
#[derive(Clone)]
pub struct RunningGateway {
    shared: Arc<Shared>,
}

/// Binds every listener and starts serving. Must run inside a Tokio runtime.
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, StartError> {
    let access_log =
        match &config.access_log {
            Some((format, output)) => Some(AccessLog::start(*format, output).map_err(
                |source| StartError::AccessLog {
                    output: output.clone(),
                    source,
                },
            )?),
            None => None,
        };
    let runtime = Arc::clone(&config.runtime);
    let spans = runtime
        .file
        .observability
        .tracing
        .otlp_endpoint
        .as_ref()
        .filter(|endpoint| !endpoint.is_empty())
        .map(|endpoint| crate::observe::otlp::SpanExporter::start(endpoint.clone()));
    let state = Arc::new(EdgeState {
        runtime: ArcSwap::new(Arc::clone(&runtime)),
        access_log,
        spans,
    });
    let mut listeners = BTreeMap::new();
    for settings in &config.listeners {
        let socket = bind(settings).await?;
        let handle = spawn_listener(
            socket,
            settings.clone(),
            runtime.server.limits.max_connections,
            &state,
            Arc::new(Drain::new()),
        );
        listeners.insert(Arc::clone(&settings.name), handle);
    }
    let (stop_background, _) = watch::channel(false);
    let gateway = RunningGateway {
        shared: Arc::new(Shared {
            state,
            bound: Mutex::new(bound_addresses(&listeners, &config.listeners)),
            listeners: tokio::sync::Mutex::new(listeners),
            status: Mutex::new(ReloadStatus {
                version: runtime.version.clone(),
                loaded_at_unix: unix_now(),
                last_error: None,
                reloads_succeeded: 0,
                reloads_failed: 0,
            }),
            source_path: config.source_path.clone(),
            draining: AtomicBool::new(false),
            shutdown_grace: Mutex::new(runtime.server.shutdown_grace),
            background: Mutex::new(Vec::new()),
            stop_background,
            admin_addr: Mutex::new(None),
            upstream_tasks: Mutex::new(Vec::new()),
        }),
    };
    gateway.restart_upstream_tasks(&runtime);
    if let Some(admin) = &config.admin {
        let task = crate::admin::serve(admin.clone(), gateway.clone())
            .await
            .map_err(|source| StartError::Bind {
                listener: "admin".to_owned(),
                address: admin.address,
                source,
            })?;
        gateway.add_background(task);
    }
    Ok(gateway)
}

async fn bind(settings: &ListenerSettings) -> Result<TcpListener, StartError> {
    listener::bind(settings.address)
        .await
        .map_err(|source| StartError::Bind {
            listener: settings.name.to_string(),
            address: settings.address,
            source,
        })
}

fn spawn_listener(
    socket: TcpListener,
    settings: ListenerSettings,
    max_connections: usize,
    state: &Arc<EdgeState>,
    graceful: Arc<Drain>,
) -> ListenerHandle {
    let bound = socket.local_addr().unwrap_or(settings.address);
    let (stop, stop_rx) = watch::channel(None);
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let task = tokio::spawn(listener::serve(
        socket,
        settings.clone(),
        Arc::clone(state),
        Arc::clone(&graceful),
        Arc::clone(&slots),
        stop_rx,
    ));
    ListenerHandle {
        settings,
        max_connections,
        slots,
        bound,
        stop,
        task,
        graceful,
    }
}

/// Stops a listener's accept loop for good, then drains its connections in the background.
async fn close_listener(handle: ListenerHandle, grace: Duration) {
    let _ = handle.stop.send(Some(Stop::Close));
    drop(handle.task.await);
    let name = handle.settings.name;
    // The loop has ended, so this is the last reference.
    match Arc::try_unwrap(handle.graceful) {
        Ok(graceful) => listener::drain(graceful, grace, &name).await,
        Err(_) => {
            tracing::warn!(listener = %name, "connections not drained: their watcher is still shared")
        }
    }
}

/// How often, and how many times, [`retire`] looks whether a replaced snapshot is still in use.
const RETIRE_POLL: Duration = Duration::from_millis(50);
const RETIRE_POLLS: u32 = 200;

/// Frees a replaced runtime snapshot on the blocking pool once the requests still using it have
/// finished. Freeing a 10,000-route table takes milliseconds; done where the swap happens, it
/// would stall a request worker (with `worker_threads: 1`, every request) that long.
fn retire(old: Arc<Runtime>) {
    tokio::spawn(async move {
        let mut old = old;
        for _ in 0..RETIRE_POLLS {
            match Arc::try_unwrap(old) {
                Ok(runtime) => {
                    drop(tokio::task::spawn_blocking(move || drop(runtime)));
                    return;
                }
                Err(shared) => old = shared,
            }
            tokio::time::sleep(RETIRE_POLL).await;
        }
        // Still held by a long-running request after 10 s: its last holder frees it.
    });
}

fn bound_addresses(
    handles: &BTreeMap<Arc<str>, ListenerHandle>,
    order: &[ListenerSettings],
) -> Vec<(Arc<str>, SocketAddr)> {
    order
        .iter()
        .filter_map(|s| handles.get(&s.name).map(|h| (Arc::clone(&s.name), h.bound)))
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl RunningGateway {
    /// The bound address of listener `name` (useful with port 0).
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs()
            .into_iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, addr)| addr)
    }

    /// Every listener with its bound address, in config order.
    pub fn addrs(&self) -> Vec<(Arc<str>, SocketAddr)> {
        self.shared
            .bound
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    /// The bound address of the admin listener, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.shared.admin_addr.lock().ok().and_then(|a| *a)
    }

    pub(crate) fn set_admin_addr(&self, addr: SocketAddr) {
        if let Ok(mut slot) = self.shared.admin_addr.lock() {
            *slot = Some(addr);
        }
    }

    /// TLS handshake counts of listener `name` since its current accept loop started; `None`
    /// for an unknown or cleartext listener.
    pub async fn tls_stats(&self, name: &str) -> Option<crate::server::tls::TlsStats> {
        let listeners = self.shared.listeners.lock().await;
        let handle = listeners.get(name)?;
        handle.settings.tls.as_ref().map(|tls| tls.stats())
    }

    /// TLS handshake counts of every TLS listener, in name order (for `/metrics`).
    pub async fn tls_stats_all(&self) -> Vec<(Arc<str>, crate::server::tls::TlsStats)> {
        let listeners = self.shared.listeners.lock().await;
        listeners
            .iter()
            .filter_map(|(name, handle)| {
                let tls = handle.settings.tls.as_ref()?;
                Some((Arc::clone(name), tls.stats()))
            })
            .collect()
    }

    /// Open client connections of every listener, in name order (for `/metrics`).
    pub async fn open_connections(&self) -> Vec<(Arc<str>, usize)> {
        let listeners = self.shared.listeners.lock().await;
        listeners
            .iter()
            .map(|(name, handle)| {
                let open = handle
                    .max_connections
                    .max(1)
                    .saturating_sub(handle.slots.available_permits());
                (Arc::clone(name), open)
            })
            .collect()
    }

    /// The config snapshot new requests get.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.state.runtime.load_full()
    }

    /// Version, load time and reload outcomes.
    pub fn status(&self) -> ReloadStatus {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// True once shutdown has begun (readiness fails, in-flight requests drain).
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Relaxed)
    }

    /// The grace period in force for shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        self.shared
            .shutdown_grace
            .lock()
            .map_or(Duration::from_secs(30), |g| *g)
    }

    /// The file reloads read, if any.
    pub fn source_path(&self) -> Option<&std::path::Path> {
        self.shared.source_path.as_deref()
    }

    /// Re-reads the config file and applies it, or rejects it and keeps serving the current one.
    pub async fn reload(&self) -> Result<ReloadStatus, ReloadError> {
        let Some(path) = self.shared.source_path.clone() else {
            return Err(ReloadError::NoSource);
        };
        // Serialise with other reloads and shutdown from here on.
        let mut listeners = self.shared.listeners.lock().await;
        if self.is_draining() {
            return Err(ReloadError::ShuttingDown);
        }
        let previous = self.runtime();
        let started = std::time::Instant::now();
        let compiled =
            tokio::task::spawn_blocking(move || crate::config::reload_file(&path, Some(&previous)))
                .await
                .unwrap_or_else(|_| {
                    Err(ConfigErrors(vec![crate::config::ConfigError {
                        file: String::new(),
                        line: 1,
                        column: 1,
                        path: String::new(),
                        message: "the config compiler panicked".to_owned(),
                    }]))
                });
        let compiled_in = started.elapsed();
        let result = match compiled {
            Ok(config) => self.apply(&mut listeners, config).await,
            Err(errors) => Err(ReloadError::Invalid(errors)),
        };
        let mut status = self
            .shared
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &result {
            Ok(version) => {
                status.version.clone_from(version);
                status.loaded_at_unix = unix_now();
                status.last_error = None;
                status.reloads_succeeded += 1;
                tracing::info!(
                    version = %version,
                    compile_ms = compiled_in.as_secs_f64() * 1000.0,
                    total_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "config reloaded"
                );
            }
            Err(err) => {
                status.last_error = Some(err.to_string());
                status.reloads_failed += 1;
                tracing::warn!(error = %err, "config reload rejected; the running config keeps serving");
            }
        }
        let status = status.clone();
        result.map(|_| status)
    }

    /// Binds what is new, swaps the snapshot, then retires what left. Returns the new version.
    async fn apply(
        &self,
        listeners: &mut BTreeMap<Arc<str>, ListenerHandle>,
        config: GatewayConfig,
    ) -> Result<String, ReloadError> {
        let state = &self.shared.state;
        let max_connections = config.runtime.server.limits.max_connections;
        // 1. Bind every socket the new config needs before touching anything.
        let mut fresh: Vec<(ListenerSettings, TcpListener)> = Vec::new();
        for settings in &config.listeners {
            let same_address = listeners
                .get(&settings.name)
                .is_some_and(|h| h.settings.address == settings.address);
            if !same_address {
                fresh.push((settings.clone(), bind(settings).await?));
            }
        }
        // 2. Swap: from here on, new requests see the new config.
        let grace = config.runtime.server.shutdown_grace;
        let version = config.runtime.version.clone();
        retire(state.runtime.swap(Arc::clone(&config.runtime)));
        self.restart_upstream_tasks(&config.runtime);
        if let Ok(mut g) = self.shared.shutdown_grace.lock() {
            *g = grace;
        }
        // 3. Listeners that stay at their address: keep, or hand the socket to a new loop.
        for settings in &config.listeners {
            let Some(handle) = listeners.get(&settings.name) else {
                continue;
            };
            if handle.settings.address != settings.address {
                continue;
            }
            if handle.settings == *settings && handle.max_connections == max_connections {
                continue;
            }
            if let Some(old) = listeners.remove(&settings.name) {
                let _ = old.stop.send(Some(Stop::Handoff));
                if let Ok(socket) = old.task.await {
                    let handle = spawn_listener(
                        socket,
                        settings.clone(),
                        max_connections,
                        state,
                        old.graceful,
                    );
                    listeners.insert(Arc::clone(&settings.name), handle);
                }
            }
        }
        // 4. Retire listeners that left (or moved), then start the freshly bound ones.
        let wanted: Vec<&ListenerSettings> = config.listeners.iter().collect();
        let leaving: Vec<Arc<str>> = listeners
            .iter()
            .filter(|(name, handle)| {
                !wanted
                    .iter()
                    .any(|s| s.name == **name && s.address == handle.settings.address)
            })
            .map(|(name, _)| Arc::clone(name))
            .collect();
        for name in leaving {
            if let Some(handle) = listeners.remove(&name) {
                tokio::spawn(close_listener(handle, grace));
            }
        }
        for (settings, socket) in fresh {
            let handle = spawn_listener(
                socket,
                settings.clone(),
                max_connections,
                state,
                Arc::new(Drain::new()),
            );
            listeners.insert(Arc::clone(&settings.name), handle);
        }
        if let Ok(mut bound) = self.shared.bound.lock() {
            *bound = bound_addresses(listeners, &config.listeners);
        }
        Ok(version)
    }

    /// Stops the upstream tasks of the previous snapshot and starts those of `runtime` (their
    /// state lives in the carried-over targets, so nothing is lost).
    fn restart_upstream_tasks(&self, runtime: &Runtime) {
        let fresh: Vec<JoinHandle<()>> = runtime
            .upstreams
            .values()
            .flat_map(|cluster| {
                [
                    crate::upstream::health::spawn_checker(cluster),
                    crate::upstream::discovery::spawn_discovery(cluster),
                    crate::upstream::client::spawn_pool_sweeper(cluster),
                ]
            })
            .flatten()
            .collect();
        if let Ok(mut tasks) = self.shared.upstream_tasks.lock() {
            for old in std::mem::replace(&mut *tasks, fresh) {
                old.abort();
            }
        }
    }

    /// Runs `task` until shutdown (admin listener, file watcher).
    pub(crate) fn add_background(&self, task: JoinHandle<()>) {
        if let Ok(mut tasks) = self.shared.background.lock() {
            tasks.push(task);
        }
    }

    /// A receiver that turns true when background tasks must stop.
    pub(crate) fn background_stop(&self) -> watch::Receiver<bool> {
        self.shared.stop_background.subscribe()
    }

    /// Watches the config file's directory and reloads on change (debounced). The directory, not
    /// the file, is watched so that the atomic symlink swap of a Kubernetes ConfigMap is seen.
    pub fn watch_config_file(
        &self,
        debounce: Duration,
    ) -> Result<(), crate::config::watch::WatchError> {
        let Some(path) = self.shared.source_path.clone() else {
            return Ok(());
        };
        let task = crate::config::watch::spawn(path, debounce, self.clone())?;
        self.add_background(task);
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish within `shutdown_grace`, and returns.
    pub async fn shutdown(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        let grace = self.shutdown_grace();
        // Take the listeners and release the lock at once: a reload waiting for it (file watcher,
        // admin API) then sees `draining` and gives up instead of blocking the shutdown.
        let listeners = std::mem::take(&mut *self.shared.listeners.lock().await);
        let closing: Vec<_> = listeners
            .into_values()
            .map(|handle| close_listener(handle, grace))
            .collect();
        futures_util::future::join_all(closing).await;
        if let Ok(mut tasks) = self.shared.upstream_tasks.lock() {
            tasks.drain(..).for_each(|task| task.abort());
        }
        let _ = self.shared.stop_background.send(true);
        let tasks: Vec<JoinHandle<()>> = self
            .shared
            .background
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
    }
}
