//! The file model of hostile-traffic settings: `server.headers_with_underscores` and
//! `server.path_with_escaped_slashes`.
//!
//! Kept apart from `file.rs` so these keys can grow without touching the shared model. The HTTP/2
//! limits live next to `h2_max_concurrent_streams` in `server.limits`, where users look for them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to do with a request header whose name contains `_`.
///
/// Many backends (CGI, PHP, some WSGI servers) fold `-` to `_` when they turn headers into
/// variables, so `X_User` and `X-User` collide there: a client could slip an `X_User` past a
/// gateway that only strips `X-User`. Envoy's edge advice is to drop or reject such names; the
/// default here is `drop`, which keeps clients that send them working.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileUnderscoreHeaders {
    /// Forward them unchanged.
    Allow,
    /// Answer 400 `invalid-header-name`.
    Reject,
    /// Remove them before routing, policies and forwarding.
    #[default]
    Drop,
}

/// What to do with a request path containing an encoded slash or backslash (`%2F`, `%5C`).
///
/// Gantry never decodes them (they are data inside a segment, not separators), so routing is
/// consistent. An upstream that decodes them itself may still see `/public/..%2Fadmin` as
/// `/admin`; `reject` closes that door for upstreams that do (Envoy's
/// `path_with_escaped_slashes_action: REJECT_REQUEST`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileEscapedSlashes {
    /// Forward them encoded, as received (uppercased hex).
    #[default]
    Keep,
    /// Answer 400 `escaped-slash`.
    Reject,
}
