//! Request header names with `_`: allowed, rejected or dropped (`server.headers_with_underscores`).
//!
//! Backends that map headers to CGI-style variables (`HTTP_X_USER`) fold `-` and `_` together, so
//! `X_User` would arrive there as the `X-User` the gateway strips or sets itself. Checked before
//! routing, so a dropped header can neither select a route nor carry a credential.

use http::header::{HeaderMap, HeaderName};

use crate::config::file_hostile::FileUnderscoreHeaders;
use crate::error::GatewayError;

/// Applies `policy` to `headers`: nothing to do for the common request without `_` in any name.
pub fn apply(headers: &mut HeaderMap, policy: FileUnderscoreHeaders) -> Result<(), GatewayError> {
    if policy == FileUnderscoreHeaders::Allow {
        return Ok(());
    }
    let Some(first) = headers.keys().find(|name| has_underscore(name)) else {
        return Ok(());
    };
    if policy == FileUnderscoreHeaders::Reject {
        return Err(GatewayError::InvalidHeaderName {
            name: first.as_str().to_owned(),
        });
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| has_underscore(name))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
    Ok(())
}

fn has_underscore(name: &HeaderName) -> bool {
    name.as_str().as_bytes().contains(&b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("a"));
        h.insert("x_user", HeaderValue::from_static("b"));
        h.append("x_user", HeaderValue::from_static("c"));
        h.insert("api_key", HeaderValue::from_static("d"));
        h
    }

    #[test]
    fn drop_removes_every_value_of_every_underscore_name() {
        let mut h = headers();
        apply(&mut h, FileUnderscoreHeaders::Drop).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-user"], "a");
    }

    #[test]
    fn reject_names_the_first_offender_and_allow_keeps_all() {
        let mut h = headers();
        let err = apply(&mut h, FileUnderscoreHeaders::Reject).unwrap_err();
        assert_eq!(err.slug(), "invalid-header-name");
        assert_eq!(err.status(), 400);
        apply(&mut h, FileUnderscoreHeaders::Allow).unwrap();
        assert_eq!(h.len(), 4);
    }
}
