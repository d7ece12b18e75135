//! Parsing and classifying configured path patterns.
//!
//! A configured path is checked and rewritten into the same normal form as request paths (see
//! [`super::normalize`]) so that `/%7Euser` in a config file matches a request for `/~user`. Then
//! it is sorted into one of the four path classes the route table keeps apart (exact, template,
//! prefix, catch-all template).
//!
//! Parameters must span a whole segment (`/users/{id}`, not `/img{id}.png`), although matchit would
//! accept the latter: whole-segment parameters make "can these two patterns match the same path?"
//! an exact, cheap question, which is what lets the table try every matching template in
//! precedence order (see [`Template::overlaps`]). Literal `{` and `}` are not supported in
//! templates (percent-encode them as `%7B`/`%7D`).

use super::normalize::normalize_segment_into;
use super::table::PathPattern;

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Segment {
    /// Literal text, already normalised.
    Static(String),
    /// `{name}`: exactly one non-empty segment.
    Param(String),
    /// `{*name}`: the non-empty rest of the path; always the last segment.
    CatchAll(String),
}

impl Segment {
    fn param_name(&self) -> Option<&str> {
        match self {
            Self::Param(n) | Self::CatchAll(n) => Some(n),
            Self::Static(_) => None,
        }
    }
}

/// A template with at least one parameter, ready for a matchit tree.
#[derive(Debug, Clone)]
pub(super) struct Template {
    pub(super) segments: Vec<Segment>,
    /// The route string handed to matchit (`/users/{id}`).
    pub(super) route: String,
    /// The route with parameter names erased (`/users/{}`): two templates with the same shape
    /// match exactly the same paths.
    pub(super) shape: String,
    pub(super) static_count: usize,
    pub(super) param_count: usize,
}

/// A configured path, classified.
#[derive(Debug, Clone)]
pub(super) enum Compiled {
    /// A template without parameters: matched by string equality.
    Exact(String),
    /// A template with `{name}` parameters and no catch-all.
    Template(Template),
    /// A path prefix, matched on segment boundaries.
    Prefix(String),
    /// A template ending in `{*name}`.
    CatchAll(Template),
}

impl Template {
    /// The literal segments before the first parameter. Two templates can only overlap when one's
    /// static prefix starts the other's, which the table uses to avoid comparing every pair.
    pub(super) fn static_prefix(&self) -> &[Segment] {
        let literals = self
            .segments
            .iter()
            .take_while(|s| matches!(s, Segment::Static(_)))
            .count();
        &self.segments[..literals]
    }

    /// The number of segments before a catch-all, or `None` when there is no catch-all.
    fn fixed_len(&self) -> (usize, bool) {
        match self.segments.last() {
            Some(Segment::CatchAll(_)) => (self.segments.len() - 1, true),
            _ => (self.segments.len(), false),
        }
    }

    /// Whether some path could match both templates.
    ///
    /// Never answers `false` for templates that can both match a path (answering `true` for
    /// disjoint ones would only cost an extra tree at lookup). Two literal segments at the same
    /// position that differ make templates disjoint; anything else is compatible.
    pub(super) fn overlaps(&self, other: &Self) -> bool {
        let (a_len, a_rest) = self.fixed_len();
        let (b_len, b_rest) = other.fixed_len();
        let comparable = match (a_rest, b_rest) {
            (false, false) => {
                if a_len != b_len {
                    return false;
                }
                a_len
            }
            (true, true) => a_len.min(b_len),
            // A catch-all needs at least one more segment than its fixed part.
            (true, false) if b_len > a_len => a_len,
            (false, true) if a_len > b_len => b_len,
            _ => return false,
        };
        self.segments
            .iter()
            .zip(&other.segments)
            .take(comparable)
            .all(|pair| match pair {
                (Segment::Static(x), Segment::Static(y)) => x == y,
                _ => true,
            })
    }

    /// Parameter names in order of appearance.
    pub(super) fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(Segment::param_name)
    }
}

/// Whether `name` is a valid parameter name: ASCII letters, digits and `_`.
pub(super) fn is_param_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Normalises one literal segment of a configured path; rejects what a request path can never
/// contain after normalisation (dot segments, control characters, bad escapes).
fn literal_segment(raw: &str, out: &mut String) -> Result<(), String> {
    let start = out.len();
    normalize_segment_into(raw, out).map_err(|e| format!("segment {raw:?}: {e}"))?;
    if matches!(out.get(start..), Some("." | "..")) {
        return Err(format!(
            "segment {raw:?}: '.' and '..' segments are not allowed"
        ));
    }
    Ok(())
}

/// Splits a configured path into its raw segments, checking that it is absolute and has no empty
/// segment except a final one (a trailing slash).
fn raw_segments(path: &str) -> Result<Vec<&str>, String> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("path {path:?} must start with '/'"));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len().saturating_sub(1);
    if parts
        .iter()
        .enumerate()
        .any(|(i, p)| p.is_empty() && i != last)
    {
        return Err(format!("path {path:?} contains an empty segment ('//')"));
    }
    Ok(parts)
}

/// Checks and classifies a configured path pattern.
pub(super) fn compile(pattern: &PathPattern) -> Result<Compiled, String> {
    match pattern {
        PathPattern::Prefix(p) => compile_prefix(p),
        PathPattern::Template(t) => compile_template(t),
    }
}

fn compile_prefix(prefix: &str) -> Result<Compiled, String> {
    let mut out = String::with_capacity(prefix.len());
    for part in raw_segments(prefix)? {
        out.push('/');
        literal_segment(part, &mut out)?;
    }
    Ok(Compiled::Prefix(out))
}

fn compile_template(template: &str) -> Result<Compiled, String> {
    let parts = raw_segments(template)?;
    let count = parts.len();
    let mut segments = Vec::with_capacity(count);
    for (i, part) in parts.into_iter().enumerate() {
        let inner = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
        let segment = match inner {
            Some(inner) => {
                let (name, catch_all) = match inner.strip_prefix('*') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if !is_param_name(name) {
                    return Err(format!(
                        "parameter {part:?} in {template:?}: names are ASCII letters, digits and '_'"
                    ));
                }
                if catch_all && i + 1 != count {
                    return Err(format!(
                        "catch-all {part:?} in {template:?} must be the last segment"
                    ));
                }
                if catch_all {
                    Segment::CatchAll(name.to_owned())
                } else {
                    Segment::Param(name.to_owned())
                }
            }
            None if part.contains(['{', '}']) => {
                return Err(format!(
                    "segment {part:?} in {template:?}: a parameter must be a whole segment \
                     ('{{name}}'); literal braces must be percent-encoded"
                ));
            }
            None => {
                let mut literal = String::with_capacity(part.len());
                literal_segment(part, &mut literal)?;
                Segment::Static(literal)
            }
        };
        segments.push(segment);
    }

    let mut names: Vec<&str> = segments.iter().filter_map(Segment::param_name).collect();
    let param_count = names.len();
    names.sort_unstable();
    let duplicate = names.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(*a),
        _ => None,
    });
    if let Some(name) = duplicate {
        return Err(format!("parameter {name:?} appears twice in {template:?}"));
    }

    let mut route = String::with_capacity(template.len());
    let mut shape = String::with_capacity(template.len());
    for segment in &segments {
        route.push('/');
        shape.push('/');
        match segment {
            Segment::Static(s) => {
                route.push_str(s);
                shape.push_str(s);
            }
            Segment::Param(n) => {
                route.push('{');
                route.push_str(n);
                route.push('}');
                shape.push_str("{}");
            }
            Segment::CatchAll(n) => {
                route.push_str("{*");
                route.push_str(n);
                route.push('}');
                shape.push_str("{*}");
            }
        }
    }

    if param_count == 0 {
        return Ok(Compiled::Exact(route));
    }
    let catch_all = matches!(segments.last(), Some(Segment::CatchAll(_)));
    let template = Template {
        static_count: segments.len() - param_count,
        param_count,
        segments,
        route,
        shape,
    };
    Ok(if catch_all {
        Compiled::CatchAll(template)
    } else {
        Compiled::Template(template)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> Template {
        match compile(&PathPattern::Template(t.to_owned())) {
            Ok(Compiled::Template(t) | Compiled::CatchAll(t)) => t,
            other => panic!("{t:?} is not a template: {other:?}"),
        }
    }

    fn err(p: PathPattern) -> String {
        match compile(&p) {
            Err(e) => e,
            Ok(c) => panic!("{p:?} should fail, got {c:?}"),
        }
    }

    #[test]
    fn classifies() {
        assert!(
            matches!(compile(&PathPattern::Template("/a/b".into())), Ok(Compiled::Exact(p)) if p == "/a/b")
        );
        assert!(
            matches!(compile(&PathPattern::Template("/".into())), Ok(Compiled::Exact(p)) if p == "/")
        );
        assert!(matches!(
            compile(&PathPattern::Template("/a/{x}".into())),
            Ok(Compiled::Template(_))
        ));
        assert!(matches!(
            compile(&PathPattern::Template("/a/{*x}".into())),
            Ok(Compiled::CatchAll(_))
        ));
        assert!(
            matches!(compile(&PathPattern::Prefix("/v1".into())), Ok(Compiled::Prefix(p)) if p == "/v1")
        );
        assert!(
            matches!(compile(&PathPattern::Prefix("/".into())), Ok(Compiled::Prefix(p)) if p == "/")
        );
        assert!(
            matches!(compile(&PathPattern::Prefix("/docs/".into())), Ok(Compiled::Prefix(p)) if p == "/docs/")
        );
    }

    #[test]
    fn literal_segments_are_normalised() {
        assert!(
            matches!(compile(&PathPattern::Template("/%7euser/%2f".into())), Ok(Compiled::Exact(p)) if p == "/~user/%2F")
        );
        assert!(
            matches!(compile(&PathPattern::Prefix("/%41".into())), Ok(Compiled::Prefix(p)) if p == "/A")
        );
        assert_eq!(template("/%61/{id}").route, "/a/{id}");
    }

    #[test]
    fn ranks_and_shapes() {
        let t = template("/users/{id}/orders/{order}");
        assert_eq!((t.static_count, t.param_count), (2, 2));
        assert_eq!(t.shape, "/users/{}/orders/{}");
        assert_eq!(t.param_names().collect::<Vec<_>>(), ["id", "order"]);
        let c = template("/files/{*rest}");
        assert_eq!((c.static_count, c.param_count), (1, 1));
        assert_eq!(c.shape, "/files/{*}");
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(err(PathPattern::Template("users".into())).contains("must start with '/'"));
        assert!(err(PathPattern::Prefix("v1".into())).contains("must start with '/'"));
        assert!(err(PathPattern::Template("/a//b".into())).contains("empty segment"));
        assert!(err(PathPattern::Prefix("//".into())).contains("empty segment"));
        assert!(err(PathPattern::Template("/a/../b".into())).contains("'..'"));
        assert!(err(PathPattern::Template("/a/%2e".into())).contains("'.'"));
        assert!(err(PathPattern::Prefix("/a/.".into())).contains("'.'"));
        assert!(err(PathPattern::Template("/img{id}.png".into())).contains("whole segment"));
        assert!(err(PathPattern::Template("/{a}{b}".into())).contains("ASCII"));
        assert!(err(PathPattern::Template("/{}".into())).contains("ASCII"));
        assert!(err(PathPattern::Template("/{*}".into())).contains("ASCII"));
        assert!(err(PathPattern::Template("/{a-b}".into())).contains("ASCII"));
        assert!(err(PathPattern::Template("/{*rest}/x".into())).contains("last segment"));
        assert!(err(PathPattern::Template("/{id}/{id}".into())).contains("twice"));
        assert!(err(PathPattern::Template("/a}".into())).contains("whole segment"));
        assert!(err(PathPattern::Template("/%zz".into())).contains("escape"));
        assert!(err(PathPattern::Template("/a\0".into())).contains("control"));
    }

    #[test]
    fn overlap_of_templates() {
        let o = |a: &str, b: &str| template(a).overlaps(&template(b));
        assert!(o("/a/{x}", "/{y}/b"));
        assert!(o("/a/{x}", "/a/{y}"));
        assert!(!o("/a/{x}", "/b/{y}"));
        assert!(!o("/a/{x}", "/a/{x}/c"));
        assert!(!o("/a/{x}/c", "/a/{x}/d"));
        assert!(o("/{x}/c", "/a/{y}"));
        // Catch-alls.
        assert!(o("/a/{*r}", "/a/b/{*r}"));
        assert!(o("/{*r}", "/a/b/{*r}"));
        assert!(!o("/a/{*r}", "/b/{*r}"));
        assert!(o("/{x}/{*r}", "/a/b/{*r}"));
        // Catch-all vs a plain template (not in the same class today, but answered exactly).
        assert!(o("/a/{*r}", "/a/{x}"));
        assert!(!o("/a/{*r}", "/{x}"));
        assert!(o("/{x}/{y}", "/a/{*r}"));
    }
}
