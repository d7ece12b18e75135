//! Path parameters captured by a route match.
//!
//! A thin wrapper over matchit's parameters so that the gateway does not depend on matchit's
//! types: names borrow from the compiled route table (`'r`), values from the request path (`'q`),
//! and nothing is copied. Up to three parameters are stored inline without allocating.

use std::fmt;

/// Path parameters captured by a template match, name → value, in path order.
///
/// Prefix and exact routes capture nothing. A `{*rest}` catch-all captures the remainder of the
/// path without its leading slash (`/files/{*rest}` on `/files/a/b` gives `rest = "a/b"`). Values
/// are substrings of the (normalised) request path and so are still percent-encoded.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params<'r, 'q> {
    inner: matchit::Params<'r, 'q>,
}

impl<'r, 'q> Params<'r, 'q> {
    /// No parameters.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    pub(super) fn from_matchit(inner: matchit::Params<'r, 'q>) -> Self {
        Self { inner }
    }

    /// The value captured for `name`, if any.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&'q str> {
        self.inner.get(name)
    }

    /// All `(name, value)` pairs in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&'r str, &'q str)> + '_ {
        self.inner.iter()
    }

    /// How many parameters were captured.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when nothing was captured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

impl fmt::Debug for Params<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
