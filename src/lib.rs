//! Gantry: an API gateway in one binary, configured by one YAML file.
//!
//! [`start`] binds the listeners of a compiled [`GatewayConfig`] and serves them until
//! [`RunningGateway::shutdown`]. The binary (`main.rs`) and the end-to-end tests both go through it.
//! The way a request travels is written down once, in [`pipeline::edge`].

pub mod admin;
pub mod config;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod handler;
pub mod http1;
pub mod observe;
pub mod pipeline;
pub mod policy;
pub mod router;
pub mod runtime;
pub mod server;
pub mod tls;
pub mod upstream;

pub use crate::gateway::{ReloadError, ReloadStatus, RunningGateway, StartError, start};
pub use crate::runtime::GatewayConfig;
