//! Compiles the hostile-traffic settings that live outside `compile.rs`'s `Limits`.
//!
//! The HTTP/2 control-frame flood limit is read per accept loop from the runtime's file model
//! through [`h2_max_control_frames_per_second`], so adding it did not touch the shared compile
//! path (the reload work owns it); the default is decided here, in one place.

use super::file::FileLimits;

/// Default PING + SETTINGS frames per second per HTTP/2 connection. Like Envoy's
/// `max_outbound_control_frames` (1000): far above what real clients send (a SETTINGS or two,
/// keep-alive PINGs seconds apart), far below a flood (hundreds of thousands per second).
pub const H2_MAX_CONTROL_FRAMES_PER_SECOND: u32 = 1000;

/// `server.limits.h2_max_control_frames_per_second`, or its default.
pub fn h2_max_control_frames_per_second(limits: &FileLimits) -> u32 {
    limits
        .h2_max_control_frames_per_second
        .unwrap_or(H2_MAX_CONTROL_FRAMES_PER_SECOND)
}
