//! Path rewrites applied before a request is forwarded upstream.
//!
//! Two forms cover what gateways are asked for: a template that rebuilds the path from captured
//! parameters (`/users/{id}` → `/internal/user/{id}`), and stripping a mount prefix (`/v1/users` →
//! `/users`). Templates are parsed once at configuration time so `apply` only concatenates. The
//! query string is not touched here: the caller carries it over.

use std::fmt;

use super::params::Params;
use super::pattern::is_param_name;

/// A path rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Rebuild the path from a template with `{name}` placeholders.
    Template(RewriteTemplate),
    /// Remove a leading path prefix, on a segment boundary. Stored without a trailing slash; the
    /// root prefix is stored as the empty string and strips nothing.
    StripPrefix(String),
}

/// A parsed rewrite template such as `/internal/{id}/{rest}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteTemplate {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param(String),
}

impl RewriteTemplate {
    /// The template as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Names of the parameters the template uses, in order (for checking them against the
    /// route's path at configuration time).
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Param(n) => Some(n.as_str()),
            Part::Literal(_) => None,
        })
    }
}

/// Why a rewrite template was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteError {
    /// The template does not start with `/`.
    NotAbsolute,
    /// A `{` without a matching `}`; the byte offset of the `{`.
    Unclosed(usize),
    /// A `}` without an opening `{`; its byte offset.
    StrayBrace(usize),
    /// A placeholder whose name is empty or not ASCII letters, digits and `_`; the offset of `{`.
    BadName(usize),
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute => f.write_str("rewrite template must start with '/'"),
            Self::Unclosed(at) => write!(f, "unclosed '{{' at offset {at}"),
            Self::StrayBrace(at) => write!(f, "'}}' without '{{' at offset {at}"),
            Self::BadName(at) => write!(
                f,
                "placeholder at offset {at}: names are ASCII letters, digits and '_'"
            ),
        }
    }
}

impl std::error::Error for RewriteError {}

impl Rewrite {
    /// Parses a template: literal text with `{name}` placeholders (anywhere, not only as whole
    /// segments); `{*name}` is accepted as a synonym so a catch-all can be written as in the route.
    ///
    /// # Errors
    /// A [`RewriteError`] for a template not starting with `/`, unbalanced braces or a bad name.
    pub fn template(t: &str) -> Result<Self, RewriteError> {
        if !t.starts_with('/') {
            return Err(RewriteError::NotAbsolute);
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = t;
        let mut offset = 0;
        while let Some(pos) = rest.find(['{', '}']) {
            let at = offset + pos;
            literal.push_str(rest.get(..pos).unwrap_or_default());
            let after = rest.get(pos + 1..).unwrap_or_default();
            if rest.as_bytes().get(pos) == Some(&b'}') {
                return Err(RewriteError::StrayBrace(at));
            }
            let Some(close) = after.find('}') else {
                return Err(RewriteError::Unclosed(at));
            };
            let inner = after.get(..close).unwrap_or_default();
            let name = inner.strip_prefix('*').unwrap_or(inner);
            if !is_param_name(name) {
                return Err(RewriteError::BadName(at));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Param(name.to_owned()));
            rest = after.get(close + 1..).unwrap_or_default();
            offset = at + close + 2;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self::Template(RewriteTemplate {
            source: t.to_owned(),
            parts,
        }))
    }

    /// A prefix to strip. A missing leading `/` is added and trailing slashes are dropped, so
    /// `v1`, `/v1` and `/v1/` are the same rewrite; `/` strips nothing.
    #[must_use]
    pub fn strip_prefix(p: &str) -> Self {
        let trimmed = p.trim_matches('/');
        if trimmed.is_empty() {
            Self::StripPrefix(String::new())
        } else {
            Self::StripPrefix(format!("/{trimmed}"))
        }
    }

    /// Rewrites `path` (the normalised request path, without query).
    ///
    /// A template placeholder without a captured parameter becomes the empty string (check
    /// [`RewriteTemplate::param_names`] against the route when compiling the configuration). A
    /// path that does not start with the strip prefix on a segment boundary is returned unchanged.
    #[must_use]
    pub fn apply(&self, path: &str, params: &Params<'_, '_>) -> String {
        match self {
            Self::Template(t) => {
                let mut out = String::with_capacity(t.source.len() + path.len());
                for part in &t.parts {
                    match part {
                        Part::Literal(s) => out.push_str(s),
                        Part::Param(name) => out.push_str(params.get(name).unwrap_or_default()),
                    }
                }
                out
            }
            // Trimmed again here in case the variant was built directly with a trailing slash.
            Self::StripPrefix(prefix) => match path.strip_prefix(prefix.trim_end_matches('/')) {
                Some("") => "/".to_owned(),
                Some(rest) if rest.starts_with('/') => rest.to_owned(),
                _ => path.to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{Lookup, PathPattern, RequestView, RouteSpec, Router};
    use http::{HeaderMap, Method};

    /// Captures parameters by routing `path` through a one-route table with `template`.
    fn with_params(template: &str, path: &str, f: impl FnOnce(&Params<'_, '_>)) {
        let router = Router::build(vec![RouteSpec {
            hosts: vec![],
            path: PathPattern::Template(template.to_owned()),
            methods: vec![],
            headers: vec![],
            query: vec![],
            value: (),
        }])
        .expect("valid route");
        let headers = HeaderMap::new();
        let req = RequestView {
            host: "h",
            path,
            method: &Method::GET,
            headers: &headers,
            query: None,
        };
        match router.lookup(&req) {
            Lookup::Matched { params, .. } => f(&params),
            other => panic!("{path:?} did not match {template:?}: {other:?}"),
        }
    }

    fn rewrite(t: &str) -> Rewrite {
        Rewrite::template(t).expect("valid template")
    }

    #[test]
    fn template_substitutes_params() {
        with_params("/users/{id}/orders/{order}", "/users/7/orders/x%2Fy", |p| {
            assert_eq!(
                rewrite("/internal/{order}/u/{id}").apply("/ignored", p),
                "/internal/x%2Fy/u/7"
            );
            assert_eq!(rewrite("/u/{id}.json").apply("/", p), "/u/7.json");
            assert_eq!(rewrite("/{id}{order}").apply("/", p), "/7x%2Fy");
            assert_eq!(rewrite("/static").apply("/users/7", p), "/static");
        });
    }

    #[test]
    fn template_with_catch_all() {
        with_params("/files/{*rest}", "/files/a/b/c.txt", |p| {
            assert_eq!(rewrite("/store/{rest}").apply("/", p), "/store/a/b/c.txt");
            assert_eq!(rewrite("/store/{*rest}").apply("/", p), "/store/a/b/c.txt");
        });
    }

    #[test]
    fn missing_param_becomes_empty() {
        assert_eq!(
            rewrite("/a/{nope}/b").apply("/x", &Params::empty()),
            "/a//b"
        );
    }

    #[test]
    fn template_errors() {
        assert_eq!(
            Rewrite::template("users/{id}"),
            Err(RewriteError::NotAbsolute)
        );
        assert_eq!(Rewrite::template(""), Err(RewriteError::NotAbsolute));
        assert_eq!(
            Rewrite::template("/users/{id"),
            Err(RewriteError::Unclosed(7))
        );
        assert_eq!(
            Rewrite::template("/users/id}"),
            Err(RewriteError::StrayBrace(9))
        );
        assert_eq!(
            Rewrite::template("/a/{x}/}"),
            Err(RewriteError::StrayBrace(7))
        );
        assert_eq!(
            Rewrite::template("/users/{}"),
            Err(RewriteError::BadName(7))
        );
        assert_eq!(
            Rewrite::template("/users/{*}"),
            Err(RewriteError::BadName(7))
        );
        assert_eq!(
            Rewrite::template("/users/{a b}"),
            Err(RewriteError::BadName(7))
        );
        assert_eq!(Rewrite::template("/{{x}}"), Err(RewriteError::BadName(1)));
        assert_eq!(Rewrite::template("/é/{"), Err(RewriteError::Unclosed(4)));
    }

    #[test]
    fn template_names_and_source() {
        let Rewrite::Template(t) = rewrite("/a/{x}/{*y}") else {
            panic!("not a template")
        };
        assert_eq!(t.as_str(), "/a/{x}/{*y}");
        assert_eq!(t.param_names().collect::<Vec<_>>(), ["x", "y"]);
    }

    #[test]
    fn strip_prefix() {
        let p = Params::empty();
        let r = Rewrite::strip_prefix("/v1");
        assert_eq!(r.apply("/v1/users", &p), "/users");
        assert_eq!(r.apply("/v1/users/", &p), "/users/");
        assert_eq!(r.apply("/v1/", &p), "/");
        assert_eq!(r.apply("/v1", &p), "/");
        assert_eq!(r.apply("/v1beta/users", &p), "/v1beta/users");
        assert_eq!(r.apply("/v2/users", &p), "/v2/users");
        assert_eq!(r.apply("/", &p), "/");
        assert_eq!(r.apply("/x/v1/users", &p), "/x/v1/users");
    }

    #[test]
    fn strip_prefix_spellings() {
        let p = Params::empty();
        assert_eq!(Rewrite::strip_prefix("/v1/"), Rewrite::strip_prefix("/v1"));
        assert_eq!(Rewrite::strip_prefix("v1"), Rewrite::strip_prefix("/v1"));
        assert_eq!(Rewrite::strip_prefix("/a/b/").apply("/a/b/c", &p), "/c");
        for root in ["/", "", "//"] {
            assert_eq!(Rewrite::strip_prefix(root).apply("/a/b", &p), "/a/b");
        }
        let direct = Rewrite::StripPrefix("/v1/".to_owned());
        assert_eq!(direct.apply("/v1/users", &p), "/users");
        assert_eq!(direct.apply("/v1", &p), "/");
        assert_eq!(Rewrite::StripPrefix("/".to_owned()).apply("/a", &p), "/a");
    }
}
