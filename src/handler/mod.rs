//! Terminal handlers: exactly one per route (`forward` or `aggregate`).

pub mod aggregate;
pub mod body;
pub mod forward;
