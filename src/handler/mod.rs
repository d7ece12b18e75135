//! Terminal handlers: exactly one per route. Only `forward` exists so far.

pub mod body;
pub mod forward;
