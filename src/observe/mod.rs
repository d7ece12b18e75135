//! Access logs (and later metrics and traces).

pub mod access_log;
