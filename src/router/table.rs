//! The compiled route table: built once per configuration, read by every request.
//!
//! Layout (see the parent module for the precedence it implements):
//!
//! ```text
//! Router
//!  ├─ exact hosts     HashMap host            → HostTable
//!  ├─ wildcard hosts  HashMap suffix of *.sfx → HostTable
//!  └─ any host                                  HostTable
//! HostTable (one path class after another)
//!  ├─ exact paths     HashMap path   → candidates
//!  ├─ templates       [matchit tree] → candidates   (layers, see below)
//!  ├─ prefixes        HashMap prefix → candidates   (probed longest first)
//!  └─ catch-alls      [matchit tree] → candidates   (layers)
//! ```
//!
//! A matchit tree returns at most one route per path, but a request must be able to fall through
//! from a template whose candidates all fail their conditions to the next template that matches the
//! same path. Templates are therefore sorted by rank and split into *layers*: each template goes
//! into the first layer after every higher-ranked template it overlaps with (two whole-segment
//! templates overlap unless some position holds two different literals). Within a layer no two
//! templates can match the same path, so matchit's single answer is complete, and walking the
//! layers in order visits every matching template in rank order. Real configurations need one or
//! two layers.
//!
//! Prefixes are probed by length: the table keeps the distinct prefix lengths, longest first, and
//! looks up `path[..len]` only at segment boundaries, so the work per request is bounded by the
//! configuration, not by the (hostile) path.
//!
//! Lookup does not allocate, except for the `Allow` string of a 405 answer and for templates with
//! more than three parameters (matchit stores three inline).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use http::{HeaderMap, HeaderName, Method};

use super::params::Params;
use super::pattern::{self, Compiled, Segment, Template};

/// How a route's path is matched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathPattern {
    /// A template: `/static/exact`, `/users/{id}` (one segment), `/files/{*rest}` (the non-empty
    /// remainder, last segment only). Parameters span whole segments.
    Template(String),
    /// A prefix matched on segment boundaries: `/v1` matches `/v1` and `/v1/…` but not `/v1beta`;
    /// `/docs/` matches `/docs/` and `/docs/…` but not `/docs`; `/` matches every path.
    Prefix(String),
}

impl PathPattern {
    /// The names of the parameters the pattern captures, in path order (for checking a rewrite
    /// template against its route).
    ///
    /// # Errors
    /// The message [`Router::build`] would report for an invalid pattern.
    pub fn param_names(&self) -> Result<Vec<String>, String> {
        Ok(match pattern::compile(self)? {
            Compiled::Template(t) | Compiled::CatchAll(t) => {
                t.param_names().map(str::to_owned).collect()
            }
            Compiled::Exact(_) | Compiled::Prefix(_) => Vec::new(),
        })
    }
}

/// A condition on a header or query parameter value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValueCondition {
    /// Some value equals this one exactly (case-sensitive; query values are compared decoded).
    Equals(String),
    /// The header or parameter is present, possibly with an empty value.
    Present,
    /// The header or parameter is not present.
    Absent,
}

/// One route as configured: where it applies, and the value a match returns.
#[derive(Debug, Clone)]
pub struct RouteSpec<T> {
    /// Hosts (`api.example.com`, or `*.example.com` for exactly one extra label); empty = any host.
    pub hosts: Vec<String>,
    /// The path the route matches.
    pub path: PathPattern,
    /// Allowed methods; empty = any. `HEAD` is not implied by `GET`.
    pub methods: Vec<Method>,
    /// Conditions on request headers; all must hold.
    pub headers: Vec<(HeaderName, ValueCondition)>,
    /// Conditions on decoded query parameters; all must hold.
    pub query: Vec<(String, ValueCondition)>,
    /// What a match returns.
    pub value: T,
}

/// A route that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// Index of the offending route in the input.
    pub route_index: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route {}: {}", self.route_index, self.message)
    }
}

impl std::error::Error for BuildError {}

/// The parts of a request the router looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'q> {
    /// Host without port, already lowercased. A trailing dot is ignored.
    pub host: &'q str,
    /// Path, already normalised with [`super::normalize_path`].
    pub path: &'q str,
    /// Request method.
    pub method: &'q Method,
    /// Request headers.
    pub headers: &'q HeaderMap,
    /// Raw query string without the `?`, if any.
    pub query: Option<&'q str>,
}

/// The outcome of [`Router::lookup`].
#[derive(Debug)]
pub enum Lookup<'r, 'q, T> {
    /// A route matched.
    Matched {
        /// The matched route's value.
        value: &'r T,
        /// Parameters captured from the path.
        params: Params<'r, 'q>,
    },
    /// Some route matched path and conditions, but none allows the method.
    MethodNotAllowed {
        /// The value for the `Allow` header: the allowed methods, e.g. `GET, HEAD`.
        allow: String,
    },
    /// No route matched.
    NotFound,
}

/// A compiled, immutable route table.
pub struct Router<T> {
    routes: Vec<Route<T>>,
    exact_hosts: FastMap<Box<str>, HostTable>,
    /// Keyed by the suffix after `*.`.
    wildcard_hosts: FastMap<Box<str>, HostTable>,
    any_host: HostTable,
}

impl<T> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes.len())
            .field("exact_hosts", &self.exact_hosts.len())
            .field("wildcard_hosts", &self.wildcard_hosts.len())
            .finish_non_exhaustive()
    }
}

struct Route<T> {
    value: T,
    methods: Box<[Method]>,
    headers: Box<[(HeaderName, ValueCondition)]>,
    query: Box<[(String, ValueCondition)]>,
}

impl<T> Route<T> {
    fn condition_count(&self) -> usize {
        self.headers.len() + self.query.len()
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    fn conditions_hold(&self, req: &RequestView<'_>) -> bool {
        self.headers
            .iter()
            .all(|(name, cond)| header_holds(req.headers, name, cond))
            && self
                .query
                .iter()
                .all(|(name, cond)| query_holds(req.query, name, cond))
    }
}

fn header_holds(headers: &HeaderMap, name: &HeaderName, cond: &ValueCondition) -> bool {
    match cond {
        ValueCondition::Present => headers.contains_key(name),
        ValueCondition::Absent => !headers.contains_key(name),
        ValueCondition::Equals(want) => headers
            .get_all(name)
            .iter()
            .any(|v| v.as_bytes() == want.as_bytes()),
    }
}

fn query_holds(query: Option<&str>, name: &str, cond: &ValueCondition) -> bool {
    let mut values = query_pairs(query.unwrap_or_default())
        .filter(|(k, _)| decoded_eq(k, name))
        .map(|(_, v)| v);
    match cond {
        ValueCondition::Present => values.next().is_some(),
        ValueCondition::Absent => values.next().is_none(),
        ValueCondition::Equals(want) => values.any(|v| decoded_eq(v, want)),
    }
}

/// `a=1&b&c=` → `(a, 1), (b, ""), (c, "")`, still encoded; empty pieces are skipped.
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Compares a form-encoded query piece with plain text without allocating: `%XY` is decoded,
/// `+` is a space (as in HTML forms and `URLSearchParams`), a malformed escape stands for itself.
fn decoded_eq(raw: &str, want: &str) -> bool {
    let raw = raw.as_bytes();
    let mut want = want.as_bytes().iter().copied();
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let (byte, used) = match b {
            b'+' => (b' ', 1),
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => (hi << 4 | lo, 3),
                _ => (b'%', 1),
            },
            _ => (b, 1),
        };
        if want.next() != Some(byte) {
            return false;
        }
        i += used;
    }
    want.next().is_none()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Candidates for one path match: route indexes, best first (more conditions, then file order).
type Candidates = Box<[u32]>;

#[derive(Default)]
struct HostTable {
    exact: FastMap<Box<str>, Candidates>,
    templates: Layers,
    prefixes: FastMap<Box<str>, Candidates>,
    /// Distinct prefix lengths in bytes, longest first.
    prefix_lengths: Box<[usize]>,
    catch_alls: Layers,
}

impl HostTable {
    /// Offers each candidate list matching `path` to `visit`, in precedence order, until it
    /// returns `Some`.
    fn walk<'r, 'q, R>(
        &'r self,
        path: &'q str,
        visit: &mut impl FnMut(&'r [u32], Params<'r, 'q>) -> Option<R>,
    ) -> Option<R> {
        if let Some(found) = self.exact.get(path).and_then(|c| visit(c, Params::empty())) {
            return Some(found);
        }
        if let Some(found) = self.templates.walk(path, visit) {
            return Some(found);
        }
        for &len in &self.prefix_lengths {
            let Some(prefix) = path.get(..len) else {
                continue;
            };
            let on_boundary = len == path.len()
                || prefix.ends_with('/')
                || path.as_bytes().get(len) == Some(&b'/');
            if !on_boundary {
                continue;
            }
            if let Some(found) = self
                .prefixes
                .get(prefix)
                .and_then(|c| visit(c, Params::empty()))
            {
                return Some(found);
            }
        }
        self.catch_alls.walk(path, visit)
    }
}

/// Templates of one class, split into layers of mutually disjoint templates (see module docs).
#[derive(Default)]
struct Layers {
    layers: Vec<matchit::Router<u32>>,
    /// Indexed by the value stored in the trees.
    candidates: Vec<Candidates>,
}

impl Layers {
    fn walk<'r, 'q, R>(
        &'r self,
        path: &'q str,
        visit: &mut impl FnMut(&'r [u32], Params<'r, 'q>) -> Option<R>,
    ) -> Option<R> {
        for layer in &self.layers {
            let Ok(m) = layer.at(path) else { continue };
            let Some(candidates) = usize::try_from(*m.value)
                .ok()
                .and_then(|i| self.candidates.get(i))
            else {
                continue;
            };
            if let Some(found) = visit(candidates, Params::from_matchit(m.params)) {
                return Some(found);
            }
        }
        None
    }
}

impl<T> Router<T> {
    /// Whether any route names a host: without, lookups never read the request's host.
    pub fn matches_hosts(&self) -> bool {
        !self.exact_hosts.is_empty() || !self.wildcard_hosts.is_empty()
    }

    /// Compiles a route table. Routes are identified by their index in `routes` (file order).
    ///
    /// # Errors
    /// Every invalid route (bad path, host or query name; a template with the same shape as an
    /// earlier one but different parameter names), each with its index.
    pub fn build(routes: Vec<RouteSpec<T>>) -> Result<Self, Vec<BuildError>> {
        let mut errors = Vec::new();
        let mut compiled = Vec::with_capacity(routes.len());
        let mut exact_hosts: FastMap<String, TableBuilder> = FastMap::default();
        let mut wildcard_hosts: FastMap<String, TableBuilder> = FastMap::default();
        let mut any_host = TableBuilder::default();

        for (index, spec) in routes.into_iter().enumerate() {
            let mut error = |message: String| {
                errors.push(BuildError {
                    route_index: index,
                    message,
                });
            };
            let Ok(id) = u32::try_from(index) else {
                error("too many routes".to_owned());
                break;
            };
            let path = pattern::compile(&spec.path).map_err(&mut error).ok();
            let mut hosts = Vec::with_capacity(spec.hosts.len());
            for host in &spec.hosts {
                match parse_host(host) {
                    Ok(h) if !hosts.contains(&h) => hosts.push(h),
                    Ok(_) => {}
                    Err(message) => error(message),
                }
            }
            for (name, _) in &spec.query {
                if name.is_empty() {
                    error("empty query parameter name".to_owned());
                }
            }
            if let Some(path) = path {
                if spec.hosts.is_empty() {
                    any_host.add(path, id, &mut error);
                } else {
                    // The last host takes the compiled path, the others a copy.
                    let last = hosts.len().saturating_sub(1);
                    let mut path = Some(path);
                    for (h, host) in hosts.into_iter().enumerate() {
                        let table = match host {
                            HostKey::Exact(h) => exact_hosts.entry(h).or_default(),
                            HostKey::Wildcard(s) => wildcard_hosts.entry(s).or_default(),
                        };
                        let path = if h == last { path.take() } else { path.clone() };
                        if let Some(path) = path {
                            table.add(path, id, &mut error);
                        }
                    }
                }
            }
            compiled.push(Route {
                value: spec.value,
                methods: spec.methods.into(),
                headers: spec.headers.into(),
                query: spec.query.into(),
            });
        }

        let conditions: Vec<usize> = compiled.iter().map(Route::condition_count).collect();
        let rank = |id: &u32| {
            let count = usize::try_from(*id)
                .ok()
                .and_then(|i| conditions.get(i))
                .copied()
                .unwrap_or(0);
            (std::cmp::Reverse(count), *id)
        };
        let on_two_threads = compiled.len() >= MIN_ROUTES_FOR_TWO_THREADS;
        let exact_hosts = finish_hosts(exact_hosts, &rank, &mut errors, on_two_threads);
        let wildcard_hosts = finish_hosts(wildcard_hosts, &rank, &mut errors, on_two_threads);
        let any_host = any_host.finish(&rank, &mut errors);

        if errors.is_empty() {
            Ok(Self {
                routes: compiled,
                exact_hosts,
                wildcard_hosts,
                any_host,
            })
        } else {
            // A route listed under several hosts reports each problem once.
            errors.sort_by_key(|e| e.route_index);
            errors.dedup();
            Err(errors)
        }
    }

    /// Number of routes in the table.
    #[must_use]
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True when the table has no routes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes' values in file order (for carrying state over to the next table).
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.routes.iter().map(|route| &route.value)
    }

    /// Finds the route for a request; see the module docs for the precedence.
    #[must_use]
    pub fn lookup<'r, 'q>(&'r self, req: &RequestView<'q>) -> Lookup<'r, 'q, T> {
        let mut wrong_method = false;
        let found = self.walk(req, &mut |candidates, params| {
            for &id in candidates {
                let Some(route) = self.route(id) else {
                    continue;
                };
                if !route.conditions_hold(req) {
                    continue;
                }
                if route.allows(req.method) {
                    return Some((&route.value, params));
                }
                wrong_method = true;
            }
            None
        });
        if let Some((value, params)) = found {
            return Lookup::Matched { value, params };
        }
        if wrong_method {
            return Lookup::MethodNotAllowed {
                allow: self.allowed_methods(req),
            };
        }
        Lookup::NotFound
    }

    fn route(&self, id: u32) -> Option<&Route<T>> {
        usize::try_from(id).ok().and_then(|i| self.routes.get(i))
    }

    /// The host tiers that apply to `host`, most specific first.
    fn walk<'r, 'q, R>(
        &'r self,
        req: &RequestView<'q>,
        visit: &mut impl FnMut(&'r [u32], Params<'r, 'q>) -> Option<R>,
    ) -> Option<R> {
        let host = req.host.strip_suffix('.').unwrap_or(req.host);
        let exact = self.exact_hosts.get(host);
        // Exactly one extra label: `a.example.com` → `example.com`.
        let wildcard = host
            .split_once('.')
            .filter(|(label, _)| !label.is_empty())
            .and_then(|(_, suffix)| self.wildcard_hosts.get(suffix));
        for table in [exact, wildcard, Some(&self.any_host)]
            .into_iter()
            .flatten()
        {
            if let Some(found) = table.walk(req.path, visit) {
                return Some(found);
            }
        }
        None
    }

    /// The `Allow` value: methods of every route whose path and conditions match, deduplicated,
    /// standard methods in RFC 9110 order first, then others in precedence order.
    fn allowed_methods(&self, req: &RequestView<'_>) -> String {
        let mut allowed: Vec<&Method> = Vec::new();
        self.walk(req, &mut |candidates, _| {
            for route in candidates.iter().filter_map(|&id| self.route(id)) {
                if route.conditions_hold(req) {
                    for m in &route.methods {
                        if !allowed.contains(&m) {
                            allowed.push(m);
                        }
                    }
                }
            }
            None::<()>
        });
        allowed.sort_by_key(|m| method_order(m));
        let mut allow = String::new();
        for m in allowed {
            if !allow.is_empty() {
                allow.push_str(", ");
            }
            allow.push_str(m.as_str());
        }
        allow
    }
}

fn method_order(m: &Method) -> u8 {
    const ORDER: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    ORDER
        .iter()
        .position(|o| o == m)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(u8::MAX)
}

#[derive(Debug, PartialEq, Eq)]
enum HostKey {
    Exact(String),
    /// The suffix after `*.`.
    Wildcard(String),
}

/// Lowercases and checks a configured host.
fn parse_host(raw: &str) -> Result<HostKey, String> {
    let host = raw.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, host),
    };
    let bracketed = name.starts_with('[') && name.ends_with(']');
    let valid = !name.is_empty()
        && (bracketed && name.len() > 2 && !wildcard
            || name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    if !valid {
        return Err(format!(
            "host {raw:?} is not a host name (letters, digits, '-', '_' in dot-separated labels, \
             no port; a wildcard is a whole first label: '*.example.com'; IDN hosts in xn-- form)"
        ));
    }
    Ok(if wildcard {
        HostKey::Wildcard(name.to_owned())
    } else {
        HostKey::Exact(name.to_owned())
    })
}

/// A table with at least this many routes finishes its per-host tables on two threads.
const MIN_ROUTES_FOR_TWO_THREADS: usize = 2000;

/// Finishes per-host tables; with `on_two_threads`, half of the hosts on another thread (each
/// host's table is independent of the others, and layering them is most of a large build).
fn finish_hosts(
    builders: FastMap<String, TableBuilder>,
    rank: &(impl Fn(&u32) -> (std::cmp::Reverse<usize>, u32) + Sync),
    errors: &mut Vec<BuildError>,
    on_two_threads: bool,
) -> FastMap<Box<str>, HostTable> {
    let finish_all = |builders: Vec<(String, TableBuilder)>| {
        let mut errors = Vec::new();
        let tables: Vec<(Box<str>, HostTable)> = builders
            .into_iter()
            .map(|(host, builder)| (host.into_boxed_str(), builder.finish(rank, &mut errors)))
            .collect();
        (tables, errors)
    };
    let mut first: Vec<(String, TableBuilder)> = builders.into_iter().collect();
    if !on_two_threads || first.len() < 2 {
        let (tables, more_errors) = finish_all(first);
        errors.extend(more_errors);
        return tables.into_iter().collect();
    }
    let second = first.split_off(first.len() / 2);
    let ((tables, first_errors), (more_tables, more_errors)) = std::thread::scope(|scope| {
        let later = scope.spawn(|| finish_all(second));
        let done = finish_all(first);
        // A panic there would have happened here too: let it travel the same way.
        let more = later
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (done, more)
    });
    errors.extend(first_errors);
    errors.extend(more_errors);
    tables.into_iter().chain(more_tables).collect()
}

/// Collects one host's routes per path class before layering.
#[derive(Default)]
struct TableBuilder {
    exact: FastMap<String, Vec<u32>>,
    templates: LayersBuilder,
    prefixes: FastMap<String, Vec<u32>>,
    catch_alls: LayersBuilder,
}

impl TableBuilder {
    fn add(&mut self, path: Compiled, id: u32, error: &mut impl FnMut(String)) {
        match path {
            Compiled::Exact(p) => self.exact.entry(p).or_default().push(id),
            Compiled::Prefix(p) => self.prefixes.entry(p).or_default().push(id),
            Compiled::Template(t) => self.templates.add(t, id, error),
            Compiled::CatchAll(t) => self.catch_alls.add(t, id, error),
        }
    }

    fn finish(
        self,
        rank: &impl Fn(&u32) -> (std::cmp::Reverse<usize>, u32),
        errors: &mut Vec<BuildError>,
    ) -> HostTable {
        let sort = |mut ids: Vec<u32>| -> Candidates {
            ids.sort_by_key(rank);
            ids.into()
        };
        let mut prefix_lengths: Vec<usize> = self.prefixes.keys().map(String::len).collect();
        prefix_lengths.sort_unstable_by(|a, b| b.cmp(a));
        prefix_lengths.dedup();
        HostTable {
            exact: self
                .exact
                .into_iter()
                .map(|(p, ids)| (p.into_boxed_str(), sort(ids)))
                .collect(),
            templates: self.templates.finish(&sort, errors),
            prefixes: self
                .prefixes
                .into_iter()
                .map(|(p, ids)| (p.into_boxed_str(), sort(ids)))
                .collect(),
            prefix_lengths: prefix_lengths.into(),
            catch_alls: self.catch_alls.finish(&sort, errors),
        }
    }
}

struct PatternEntry {
    template: Template,
    ids: Vec<u32>,
}

#[derive(Default)]
struct LayersBuilder {
    by_shape: FastMap<String, usize>,
    patterns: Vec<PatternEntry>,
}

impl LayersBuilder {
    fn add(&mut self, mut template: Template, id: u32, error: &mut impl FnMut(String)) {
        if let Some(&i) = self.by_shape.get(&template.shape) {
            let Some(entry) = self.patterns.get_mut(i) else {
                return;
            };
            if entry.template.route == template.route {
                entry.ids.push(id);
            } else {
                let first = entry.ids.first().copied().unwrap_or_default();
                error(format!(
                    "path {:?} conflicts with route {first} ({:?}): same path, different \
                     parameter names",
                    template.route, entry.template.route
                ));
            }
            return;
        }
        // The shape is only needed as the key from here on.
        let shape = std::mem::take(&mut template.shape);
        self.by_shape.insert(shape, self.patterns.len());
        self.patterns.push(PatternEntry {
            template,
            ids: vec![id],
        });
    }

    fn finish(
        mut self,
        sort: &impl Fn(Vec<u32>) -> Candidates,
        errors: &mut Vec<BuildError>,
    ) -> Layers {
        // Rank: more literal segments, then fewer parameters, then file order of the first route.
        self.patterns.sort_by_key(|p| {
            (
                std::cmp::Reverse(p.template.static_count),
                p.template.param_count,
                p.ids.first().copied(),
            )
        });

        // Only templates whose static prefixes are prefixes of one another can overlap (at a
        // position where both are literal, they must be equal). Index the earlier templates by
        // their whole static prefix and by every prefix of it, so building a large table is not
        // quadratic in the common case: `ending_at[p]` holds those whose static prefix is `p`,
        // `extending[p]` those whose static prefix starts with `p`.
        let mut ending_at: FastMap<&[Segment], Vec<usize>> = FastMap::default();
        let mut extending: FastMap<&[Segment], Vec<usize>> = FastMap::default();
        let mut layer_of: Vec<usize> = Vec::with_capacity(self.patterns.len());
        for (i, p) in self.patterns.iter().enumerate() {
            let prefix = p.template.static_prefix();
            let shorter = (0..prefix.len()).filter_map(|j| ending_at.get(&prefix[..j]));
            let longer = extending.get(prefix);
            let mut layer = 0;
            for &j in shorter.chain(longer).flatten() {
                let (Some(q), Some(&l)) = (self.patterns.get(j), layer_of.get(j)) else {
                    continue;
                };
                if l + 1 > layer && p.template.overlaps(&q.template) {
                    layer = l + 1;
                }
            }
            layer_of.push(layer);
            ending_at.entry(prefix).or_default().push(i);
            for j in 0..=prefix.len() {
                extending.entry(&prefix[..j]).or_default().push(i);
            }
        }

        let layer_count = layer_of.iter().max().map_or(0, |m| m + 1);
        let mut layers: Vec<matchit::Router<u32>> =
            (0..layer_count).map(|_| matchit::Router::new()).collect();
        let mut candidates = Vec::with_capacity(self.patterns.len());
        for (i, (p, layer)) in self.patterns.into_iter().zip(layer_of).enumerate() {
            let first = p.ids.first().copied().unwrap_or_default();
            let inserted = u32::try_from(i)
                .map_err(|_| "too many routes".to_owned())
                .and_then(|value| match layers.get_mut(layer) {
                    Some(tree) => tree
                        .insert(p.template.route.as_str(), value)
                        .map_err(|e| e.to_string()),
                    None => Err("internal error: missing layer".to_owned()),
                });
            if let Err(message) = inserted {
                errors.push(BuildError {
                    route_index: usize::try_from(first).unwrap_or(usize::MAX),
                    message: format!("path {:?}: {message}", p.template.route),
                });
            }
            candidates.push(sort(p.ids));
        }
        Layers { layers, candidates }
    }
}

/// `FxHash` (as in rustc): a fast non-cryptographic hash for the path and host maps (and for the
/// config validator's maps).
///
/// Flooding is not a concern: keys come from the configuration; a request only probes, and a
/// probe's cost is bounded by the configured keys' collision chains.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            for (w, b) in word.iter_mut().zip(rest) {
                *w = *b;
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A `HashMap` with [`FxHasher`], for keys that come from the configuration.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests;
