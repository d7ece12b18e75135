//! The layers every request passes before its handler, in the order written in [`edge`].

pub mod edge;
pub mod fields;
pub mod framing;
pub mod headers;
pub mod underscore;
