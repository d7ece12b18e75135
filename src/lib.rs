//! Gantry: an API gateway in one binary, configured by one YAML file.
//!
//! [`start`] binds the listeners of a compiled [`GatewayConfig`] and serves them until
//! [`RunningGateway::shutdown`]. The binary (`main.rs`) and the end-to-end tests both go through it.
//! The way a request travels is written down once, in [`pipeline::edge`].

pub mod config;
pub mod demo;
pub mod error;
pub mod handler;
pub mod observe;
pub mod pipeline;
pub mod router;
pub mod runtime;
pub mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::observe::access_log::AccessLog;
use crate::pipeline::edge::EdgeState;
pub use crate::runtime::GatewayConfig;

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

/// A started gateway: its bound addresses and the handle to stop it.
pub struct RunningGateway {
    listeners: Vec<(Arc<str>, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    state: Arc<EdgeState>,
}

impl RunningGateway {
    /// The bound address of listener `name` (useful with port 0).
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, addr)| *addr)
    }

    /// Every listener with its bound address, in config order.
    pub fn addrs(&self) -> &[(Arc<str>, SocketAddr)] {
        &self.listeners
    }

    /// The grace period in force for shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        self.state.runtime.load().server.shutdown_grace
    }

    /// Stops accepting, lets in-flight requests finish within `shutdown_grace`, and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
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
    let server = config.runtime.server.clone();
    let state = Arc::new(EdgeState {
        runtime: ArcSwap::new(Arc::clone(&config.runtime)),
        access_log,
    });
    let mut bound = Vec::with_capacity(config.listeners.len());
    for settings in &config.listeners {
        let listener = server::listener::bind(settings.address)
            .await
            .map_err(|source| StartError::Bind {
                listener: settings.name.to_string(),
                address: settings.address,
                source,
            })?;
        bound.push((settings.clone(), listener));
    }
    let (shutdown, watcher) = watch::channel(false);
    let mut listeners = Vec::with_capacity(bound.len());
    let mut tasks = Vec::with_capacity(bound.len());
    for (settings, listener) in bound {
        let addr = listener.local_addr().unwrap_or(settings.address);
        listeners.push((Arc::clone(&settings.name), addr));
        tasks.push(tokio::spawn(server::listener::serve(
            listener,
            settings,
            server.limits,
            Arc::clone(&state),
            watcher.clone(),
            server.shutdown_grace,
        )));
    }
    Ok(RunningGateway {
        listeners,
        shutdown,
        tasks,
        state,
    })
}
