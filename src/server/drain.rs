//! Graceful shutdown of a listener's client connections: on [`Drain::shutdown`], every connection
//! finishes the requests it is serving and closes; idle ones close at once.
//!
//! Why not hyper-util's `GracefulShutdown`: it only watches hyper's own connection types, and
//! HTTP/1.1 connections are served by Gantry's server (`super::h1`). HTTP/2 connections (still
//! hyper's) are watched here too, through [`DrainWatch::draining`].

use tokio::sync::watch;

/// The shutdown switch of one listener's connections.
pub struct Drain {
    draining: watch::Sender<bool>,
}

/// A connection's view of its listener's [`Drain`]; dropped when the connection ends.
#[derive(Clone)]
pub struct DrainWatch {
    draining: watch::Receiver<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// A switch no connection watches yet.
    pub fn new() -> Self {
        let (draining, _) = watch::channel(false);
        Self { draining }
    }

    /// What a new connection holds for as long as it lives.
    pub fn watcher(&self) -> DrainWatch {
        DrainWatch {
            draining: self.draining.subscribe(),
        }
    }

    /// Asks every watching connection to finish and close; resolves once all of them ended.
    pub async fn shutdown(self) {
        self.draining.send_replace(true);
        self.draining.closed().await;
    }
}

impl DrainWatch {
    /// Whether the listener is shutting down: finish the request in flight, then close.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Resolves when the listener starts shutting down.
    pub async fn draining(&mut self) {
        // An error means the switch is gone, which only happens once nobody can drain us: wait
        // for ever rather than end the connection.
        if self.draining.wait_for(|draining| *draining).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
