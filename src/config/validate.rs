//! Semantic checks on a structurally valid file: every problem at once, each located.
//!
//! Runs after [`super::parse_str`]; nothing here can fail on types. Checks are grouped by
//! section in file order (version, listeners, server, observability, upstreams, routes) and the
//! errors are sorted by location before they are returned.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, HeaderValue, Uri};

use super::LoadedFile;
use super::error::{ConfigError, ConfigErrors};
use super::file::{FileLoadBalancing, FileMatch, FileRoute, FileUpstream, FileValueMatch};
use super::source_map::{child_index, child_key};
use super::suggest;
use super::units::Duration;
use crate::router::FastMap;

/// Largest target weight; keeps weighted balancing arithmetic far from overflow.
const MAX_WEIGHT: u32 = 1_000_000;

/// Checks the meaning of `loaded`; returns every problem found, in file order.
pub fn validate(loaded: &LoadedFile) -> Result<(), ConfigErrors> {
    let mut validator = Validator {
        loaded,
        errors: Vec::new(),
    };
    validator.version();
    validator.listeners();
    validator.admin();
    validator.server();
    validator.observability();
    validator.upstreams();
    validator.routes();
    let mut errors = validator.errors;
    super::validate_tls::validate(loaded, &mut errors);
    super::validate_security::validate(loaded, &mut errors);
    super::validate_rate_limit::validate(loaded, &mut errors);
    if errors.is_empty() {
        return Ok(());
    }
    errors.sort_by_key(|error| (error.line, error.column));
    Err(ConfigErrors(errors))
}

/// A credential (API key, secret, token) must not be empty once `${VAR}`s are substituted: an
/// unset-but-defaulted or empty variable would otherwise open the door silently.
///
/// Returns the error located at `path`, or `None` when the value is fine.
pub fn check_credential(loaded: &LoadedFile, path: &str, value: &str) -> Option<ConfigError> {
    credential_problem(value).map(|message| loaded.error(path, message))
}

fn credential_problem(value: &str) -> Option<&'static str> {
    if value.trim().is_empty() {
        Some("empty credential (is its environment variable set to an empty value?)")
    } else {
        None
    }
}

struct Validator<'a> {
    loaded: &'a LoadedFile,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.loaded.error(path, message));
    }

    fn key_error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.loaded.key_error(path, message));
    }

    fn line(&self, path: &str) -> usize {
        self.loaded.line_of(path)
    }

    fn positive(&mut self, path: &str, value: Option<Duration>) {
        if value.is_some_and(|d| d.0.is_zero()) {
            self.error(path, "must be greater than 0");
        }
    }

    fn at_least_one<T: Into<u64> + Copy>(&mut self, path: &str, value: Option<T>) {
        if value.is_some_and(|v| v.into() == 0) {
            self.error(path, "must be at least 1");
        }
    }

    fn header_name(&mut self, path: &str, name: &str) {
        if let Some(problem) = header_name_problem(name) {
            self.error(path, problem);
        }
    }

    fn version(&mut self) {
        let version = self.loaded.config.version;
        if version != 1 {
            self.error(
                "version",
                format!("unsupported version {version}: only 1 exists"),
            );
        }
    }

    fn admin(&mut self) {
        let Some(admin) = &self.loaded.config.admin else {
            return;
        };
        match admin.address.parse::<SocketAddr>() {
            Ok(address) => {
                let clash = self.loaded.config.listeners.iter().any(|l| {
                    address.port() != 0 && l.address.parse::<SocketAddr>().ok() == Some(address)
                });
                if clash {
                    self.error(
                        "admin.address",
                        format!("address {address} is already used by a listener"),
                    );
                }
            }
            Err(_) => self.error(
                "admin.address",
                format!("invalid address {:?}: expected IP:PORT", admin.address),
            ),
        }
        if let Some(token) = &admin.token
            && let Some(message) = credential_problem(token)
        {
            self.error("admin.token", message);
        }
    }

    fn listeners(&mut self) {
        let listeners = &self.loaded.config.listeners;
        if listeners.is_empty() {
            self.error("listeners", "at least one listener is needed");
        }
        let mut names: HashMap<&str, String> = HashMap::new();
        let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
        for (i, listener) in listeners.iter().enumerate() {
            let base = child_index("listeners", i);
            let name_path = child_key(&base, "name");
            if listener.name.trim().is_empty() {
                self.error(&name_path, "a listener name cannot be empty");
            } else if let Some(first) = names.get(listener.name.as_str()) {
                let line = self.line(first);
                self.error(
                    &name_path,
                    format!(
                        "duplicate listener name {:?} (first at line {line})",
                        listener.name
                    ),
                );
            } else {
                names.insert(&listener.name, name_path.clone());
            }
            let address_path = child_key(&base, "address");
            match listener.address.parse::<SocketAddr>() {
                Ok(address) => {
                    if address.port() != 0 {
                        if let Some(first) = addresses.get(&address) {
                            let line = self.line(first);
                            self.error(&address_path, format!("address {address} is already used by the listener at line {line}"));
                        } else {
                            addresses.insert(address, address_path);
                        }
                    }
                }
                Err(_) => self.error(
                    &address_path,
                    format!(
                        "invalid address {:?}: expected IP:PORT, e.g. 0.0.0.0:8080 or [::1]:8080 (no host names)",
                        listener.address
                    ),
                ),
            }
            let protocols_path = child_key(&base, "protocols");
            if listener.protocols.is_empty() {
                self.error(
                    &protocols_path,
                    "at least one protocol is needed (http1, h2c)",
                );
            }
            for (j, protocol) in listener.protocols.iter().enumerate() {
                if listener.protocols[..j].contains(protocol) {
                    self.error(&child_index(&protocols_path, j), "duplicate protocol");
                }
            }
        }
    }

    fn server(&mut self) {
        let server = &self.loaded.config.server;
        for (i, proxy) in server.trusted_proxies.iter().enumerate() {
            let valid = proxy.parse::<ipnet::IpNet>().is_ok() || proxy.parse::<IpAddr>().is_ok();
            if !valid {
                self.error(
                    &child_index("server.trusted_proxies", i),
                    format!(
                        "invalid CIDR {proxy:?}: expected e.g. 10.0.0.0/8, 127.0.0.1 or ::1/128"
                    ),
                );
            }
        }
        if let Some(header) = &server.request_id_header {
            self.header_name("server.request_id_header", header);
        }
        if server.worker_threads == Some(0) {
            self.error("server.worker_threads", "must be at least 1");
        }
        if let Some(via) = &server.via_name
            && (via.is_empty() || !via.bytes().all(is_tchar))
        {
            self.error(
                "server.via_name",
                format!("invalid name {via:?}: use letters, digits and -._~"),
            );
        }
        let limits = &server.limits;
        for (key, size) in [
            ("max_header_bytes", limits.max_header_bytes),
            ("max_uri_bytes", limits.max_uri_bytes),
            ("max_body_bytes", limits.max_body_bytes),
        ] {
            if size.is_some_and(|s| s.0 == 0) {
                self.error(&child_key("server.limits", key), "must be greater than 0");
            }
        }
        self.positive(
            "server.limits.header_read_timeout",
            limits.header_read_timeout,
        );
        self.positive("server.limits.idle_timeout", limits.idle_timeout);
        self.at_least_one(
            "server.limits.max_connections",
            limits.max_connections.map(|v| v as u64),
        );
        self.at_least_one(
            "server.limits.h2_max_concurrent_streams",
            limits.h2_max_concurrent_streams,
        );
        self.at_least_one(
            "server.limits.h2_max_control_frames_per_second",
            limits.h2_max_control_frames_per_second,
        );
        for (key, value) in [
            (
                "h2_max_pending_reset_streams",
                limits.h2_max_pending_reset_streams,
            ),
            (
                "h2_max_local_error_reset_streams",
                limits.h2_max_local_error_reset_streams,
            ),
        ] {
            self.at_least_one(&child_key("server.limits", key), value.map(|v| v as u64));
        }
        // SETTINGS_MAX_HEADER_LIST_SIZE is a 32-bit field (RFC 9113 §6.5.2).
        if let Some(size) = limits.h2_max_header_list_size
            && (size.0 == 0 || size.0 > u64::from(u32::MAX))
        {
            self.error(
                "server.limits.h2_max_header_list_size",
                "must be between 1 byte and 4GiB",
            );
        }
    }

    fn observability(&mut self) {
        let access_log = &self.loaded.config.observability.access_log;
        if access_log.output.trim().is_empty() {
            self.error(
                "observability.access_log.output",
                "cannot be empty: use stdout, stderr or a file path",
            );
        }
    }

    fn upstreams(&mut self) {
        for (name, upstream) in &self.loaded.config.upstreams {
            let base = child_key("upstreams", name);
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                self.key_error(
                    &base,
                    format!("invalid upstream name {name:?}: use letters, digits, _ . and -"),
                );
            }
            self.upstream(&base, upstream);
        }
    }

    fn upstream(&mut self, base: &str, upstream: &FileUpstream) {
        let targets_path = child_key(base, "targets");
        // An explicit `targets: []` is a deliberate drain (every request answers 503 no-target);
        // leaving the key out is a mistake.
        if upstream.targets.is_empty()
            && upstream.discovery.is_none()
            && !self.loaded.source_map.contains(&targets_path)
        {
            self.error(
                &targets_path,
                "an upstream needs targets (write `targets: []` to drain it: requests get 503)",
            );
        }
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (i, target) in upstream.targets.iter().enumerate() {
            let target_path = child_index(&targets_path, i);
            let url_path = child_key(&target_path, "url");
            if let Some(problem) = target_problem(&target.url) {
                self.error(&url_path, problem);
            } else if let Some(first) = seen.get(target.url.as_str()) {
                let line = self.line(first);
                self.error(
                    &url_path,
                    format!(
                        "duplicate target {:?} (first at line {line}); use weight instead",
                        target.url
                    ),
                );
            } else {
                seen.insert(&target.url, url_path);
            }
            if target.weight == 0 || target.weight > MAX_WEIGHT {
                self.error(
                    &child_key(&target_path, "weight"),
                    format!("weight must be from 1 to {MAX_WEIGHT}"),
                );
            }
        }
        if let FileLoadBalancing::ConsistentHash(key) = &upstream.load_balancing {
            let hash_path = child_key(base, "load_balancing.consistent_hash");
            let chosen = usize::from(key.header.is_some())
                + usize::from(key.cookie.is_some())
                + usize::from(key.client_ip);
            if chosen != 1 {
                self.error(
                    &hash_path,
                    "consistent_hash needs exactly one of header, cookie or client_ip: true",
                );
            }
            if let Some(header) = &key.header {
                self.header_name(&child_key(&hash_path, "header"), header);
            }
            if let Some(cookie) = &key.cookie
                && (cookie.is_empty() || !cookie.bytes().all(is_tchar))
            {
                self.error(
                    &child_key(&hash_path, "cookie"),
                    format!("invalid cookie name {cookie:?}"),
                );
            }
        }
        let timeouts = &upstream.timeouts;
        let timeouts_path = child_key(base, "timeouts");
        for (key, value) in [
            ("connect", timeouts.connect),
            ("request", timeouts.request),
            ("per_try", timeouts.per_try),
            ("idle", timeouts.idle),
        ] {
            self.positive(&child_key(&timeouts_path, key), value);
        }
        if let Some(per_try) = timeouts.per_try {
            let (request, source) = match timeouts.request {
                Some(request) => (request.0, "request"),
                None => (
                    super::compile::defaults::REQUEST_TIMEOUT,
                    "the default request timeout",
                ),
            };
            if per_try.0 > request {
                self.error(
                    &child_key(&timeouts_path, "per_try"),
                    format!(
                        "per_try ({per_try}) cannot be longer than {source} ({})",
                        Duration(request)
                    ),
                );
            }
        }
        super::validate_resilience::upstream(self.loaded, base, upstream, &mut self.errors);
        let pool_path = child_key(base, "pool");
        self.at_least_one(
            &child_key(&pool_path, "max_idle_per_target"),
            upstream.pool.max_idle_per_target.map(|v| v as u64),
        );
        self.at_least_one(
            &child_key(&pool_path, "max_connections_per_target"),
            upstream.pool.max_connections_per_target.map(|v| v as u64),
        );
    }

    fn routes(&mut self) {
        let routes = &self.loaded.config.routes;
        let name_path = |i: usize| child_key(&child_index("routes", i), "name");
        // The index of the first route with each name.
        let mut names: FastMap<&str, usize> = FastMap::default();
        names.reserve(routes.len());
        // Only routes with the same hosts and path can shadow each other: group by that key so
        // a 10,000-route file is checked in near-linear time.
        let mut shapes: FastMap<ShapeKey, Vec<(usize, Shape)>> = FastMap::default();
        for (i, route) in routes.iter().enumerate() {
            let base = child_index("routes", i);
            if route.name.trim().is_empty() {
                self.error(&name_path(i), "a route name cannot be empty");
            } else if let Some(&first) = names.get(route.name.as_str()) {
                let line = self.line(&name_path(first));
                self.error(
                    &name_path(i),
                    format!(
                        "duplicate route name {:?} (first at line {line})",
                        route.name
                    ),
                );
            } else {
                names.insert(&route.name, i);
            }
            self.route_upstream(&base, route);
            super::validate_aggregate::route(self.loaded, &base, route, &mut self.errors);
            super::validate_resilience::route(self.loaded, &base, route, &mut self.errors);
            let template = self.route_match(&base, &route.matcher);
            self.rewrite(&base, route, template.as_ref());
            if let Some((key, shape)) = Shape::of(&route.matcher, template) {
                let group = shapes.entry(key).or_default();
                if let Some((earlier, _)) = group.iter().find(|(_, earlier)| earlier.covers(&shape))
                {
                    let first = &routes[*earlier];
                    let line = self.line(&name_path(*earlier));
                    self.error(
                        &child_key(&base, "match"),
                        format!(
                            "route {:?} can never match: route {:?} (line {line}) matches every request it would",
                            route.name, first.name
                        ),
                    );
                }
                group.push((i, shape));
            }
        }
    }

    fn route_upstream(&mut self, base: &str, route: &FileRoute) {
        let path = || child_key(base, "upstream");
        let upstreams = &self.loaded.config.upstreams;
        match &route.upstream {
            None if route.aggregate.is_some() => {}
            Some(_) if route.aggregate.is_some() => self.error(
                &path(),
                "a route has either `upstream` or `aggregate`, not both",
            ),
            None => self.error(
                &path(),
                "a route needs `upstream`: the upstream to forward to",
            ),
            Some(name) if !upstreams.contains_key(name) => {
                let mut message = format!("unknown upstream {name:?}");
                if let Some(close) = suggest::closest(name, upstreams.keys().map(String::as_str)) {
                    message.push_str(&format!(" (did you mean {close:?}?)"));
                } else if upstreams.is_empty() {
                    message.push_str(" (no upstreams are defined)");
                }
                self.error(&path(), message);
            }
            Some(_) => {}
        }
    }

    /// Checks `match`; returns the parsed path template when `match.path` is valid.
    fn route_match(&mut self, base: &str, matcher: &FileMatch) -> Option<Template> {
        let match_path = child_key(base, "match");
        let mut template = None;
        match (&matcher.path, &matcher.path_prefix) {
            (None, None) => {
                self.error(&match_path, "a route needs match.path or match.path_prefix")
            }
            (Some(_), Some(_)) => self.error(
                &child_key(&match_path, "path_prefix"),
                "match.path and match.path_prefix cannot both be set",
            ),
            _ => {}
        }
        if let Some(path) = &matcher.path {
            match Template::parse(path, TemplateKind::Match) {
                Ok(parsed) => template = Some(parsed),
                Err(problem) => self.error(&child_key(&match_path, "path"), problem),
            }
        }
        if let Some(prefix) = &matcher.path_prefix {
            let prefix_path = child_key(&match_path, "path_prefix");
            if prefix.contains(['{', '}']) {
                self.error(
                    &prefix_path,
                    "a path_prefix cannot have {params}; use match.path with {*rest}",
                );
            } else if let Err(problem) = Template::parse(prefix, TemplateKind::Match) {
                self.error(&prefix_path, problem);
            }
        }
        self.hosts(&match_path, &matcher.hosts);
        self.methods(&match_path, &matcher.methods);
        if !matcher.headers.is_empty() {
            self.conditions(&child_key(&match_path, "headers"), &matcher.headers, true);
        }
        if !matcher.query.is_empty() {
            self.conditions(&child_key(&match_path, "query"), &matcher.query, false);
        }
        template
    }

    fn hosts(&mut self, match_path: &str, hosts: &[String]) {
        // Paths are built only for an error: this runs for every route of a large file.
        let path = |j: usize| child_index(&child_key(match_path, "hosts"), j);
        for (j, host) in hosts.iter().enumerate() {
            if let Some(problem) = host_problem(host) {
                self.error(&path(j), problem);
            } else if hosts[..j].iter().any(|h| h.eq_ignore_ascii_case(host)) {
                self.error(&path(j), format!("duplicate host {host:?}"));
            }
        }
    }

    fn methods(&mut self, match_path: &str, methods: &[String]) {
        let path = |j: usize| child_index(&child_key(match_path, "methods"), j);
        for (j, method) in methods.iter().enumerate() {
            if method.is_empty() || !method.bytes().all(is_tchar) {
                self.error(&path(j), format!("invalid method {method:?}"));
            } else if method.bytes().any(|b| b.is_ascii_lowercase()) {
                self.error(
                    &path(j),
                    format!(
                        "method {method:?} must be uppercase: {:?}",
                        method.to_ascii_uppercase()
                    ),
                );
            } else if methods[..j].contains(method) {
                self.error(&path(j), format!("duplicate method {method:?}"));
            }
        }
    }

    fn conditions(
        &mut self,
        base: &str,
        conditions: &BTreeMap<String, FileValueMatch>,
        headers: bool,
    ) {
        // Walk in file order so a case-insensitive duplicate is reported at the later key.
        let mut ordered: Vec<(&String, &FileValueMatch, (usize, usize))> = conditions
            .iter()
            .map(|(name, condition)| {
                (
                    name,
                    condition,
                    self.loaded.source_map.locate_key(&child_key(base, name)),
                )
            })
            .collect();
        ordered.sort_by_key(|(_, _, loc)| *loc);
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (name, condition, _) in ordered {
            let path = child_key(base, name);
            if !headers {
                if name.is_empty() {
                    self.key_error(&path, "a query parameter name cannot be empty");
                }
                continue;
            }
            if let Some(problem) = header_name_problem(name) {
                self.key_error(&path, problem);
                continue;
            }
            let lower = name.to_ascii_lowercase();
            if let Some(first) = seen.get(&lower) {
                self.key_error(
                    &path,
                    format!("header {name:?} is also listed as {first:?}; header names are case-insensitive"),
                );
            } else {
                seen.insert(lower, name);
            }
            if let FileValueMatch::Exact(value) = condition
                && HeaderValue::from_str(value).is_err()
            {
                self.error(&path, format!("invalid header value {value:?}"));
            }
        }
    }

    fn rewrite(&mut self, base: &str, route: &FileRoute, template: Option<&Template>) {
        let Some(rewrite) = &route.rewrite else {
            return;
        };
        let rewrite_path = child_key(base, "rewrite");
        match (&rewrite.path, &rewrite.strip_prefix) {
            (None, None) => self.error(
                &rewrite_path,
                "a rewrite needs exactly one of path or strip_prefix",
            ),
            (Some(_), Some(_)) => self.error(
                &child_key(&rewrite_path, "strip_prefix"),
                "rewrite.path and rewrite.strip_prefix cannot both be set",
            ),
            _ => {}
        }
        if let Some(path) = &rewrite.path {
            let path_path = child_key(&rewrite_path, "path");
            match Template::parse(path, TemplateKind::Rewrite) {
                Err(problem) => self.error(&path_path, problem),
                Ok(parsed) => {
                    if route.matcher.path.is_none() && !parsed.params.is_empty() {
                        // A fixed rewrite path is fine on a prefix route; params need a template.
                        self.error(
                            &path_path,
                            "rewrite.path uses params, which only match.path (a template) captures",
                        );
                    } else if let Some(template) = template {
                        for param in &parsed.params {
                            if !template.params.contains(param) {
                                self.error(
                                    &path_path,
                                    format!("rewrite.path uses {{{param}}}, which match.path does not capture"),
                                );
                            }
                        }
                    }
                }
            }
        }
        if let Some(prefix) = &rewrite.strip_prefix
            && !prefix.starts_with('/')
        {
            self.error(
                &child_key(&rewrite_path, "strip_prefix"),
                "strip_prefix must start with /",
            );
        }
    }
}

/// Hosts and (prefix?, path): only routes with the same key can shadow each other.
type ShapeKey = (BTreeSet<String>, (bool, String));

/// What decides whether a route matches besides its [`ShapeKey`], normalised so equal conditions
/// compare equal.
#[derive(Debug)]
struct Shape {
    /// Empty means every method.
    methods: BTreeSet<String>,
    headers: BTreeMap<String, FileValueMatch>,
    query: BTreeMap<String, FileValueMatch>,
}

impl Shape {
    fn of(matcher: &FileMatch, template: Option<Template>) -> Option<(ShapeKey, Self)> {
        let path = match (&matcher.path, &matcher.path_prefix, template) {
            (Some(_), None, Some(template)) => (false, template.normalized),
            (None, Some(prefix), None) => (true, prefix.clone()),
            _ => return None,
        };
        let hosts = matcher
            .hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let shape = Self {
            methods: matcher.methods.iter().cloned().collect(),
            headers: matcher
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            query: matcher.query.clone(),
        };
        Some(((hosts, path), shape))
    }

    /// Whether every request `later` (with the same [`ShapeKey`]) matches is also matched by
    /// `self` (so `later` never wins).
    /// The router ranks routes with more header/query conditions first, so a later route with more
    /// conditions is never shadowed; with as many, it is when `self`'s conditions are the same.
    fn covers(&self, later: &Self) -> bool {
        let conditions = |s: &Self| s.headers.len() + s.query.len();
        conditions(self) == conditions(later)
            && (self.methods.is_empty()
                || (!later.methods.is_empty() && later.methods.is_subset(&self.methods)))
            && self
                .headers
                .iter()
                .all(|(k, v)| later.headers.get(k) == Some(v))
            && self
                .query
                .iter()
                .all(|(k, v)| later.query.get(k) == Some(v))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TemplateKind {
    /// `match.path`: `{*rest}` only last, each name once.
    Match,
    /// `rewrite.path`: params may repeat and appear anywhere.
    Rewrite,
}

/// A parsed path template.
#[derive(Debug, Clone)]
struct Template {
    params: Vec<String>,
    /// The path with every `{name}` written `{}` and `{*name}` written `{*}`.
    normalized: String,
}

impl Template {
    fn parse(path: &str, kind: TemplateKind) -> Result<Self, String> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("a path must start with /: {path:?}"));
        };
        if path.contains(['?', '#']) {
            return Err(format!("a path cannot contain ? or #: {path:?}"));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "a path cannot contain spaces or control characters: {path:?}"
            ));
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let mut params: Vec<String> = Vec::new();
        let mut normalized = String::with_capacity(path.len());
        for (index, segment) in segments.iter().enumerate() {
            normalized.push('/');
            if !segment.contains(['{', '}']) {
                normalized.push_str(segment);
                continue;
            }
            let inner = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|inner| !inner.contains(['{', '}']))
                .ok_or_else(|| {
                    format!(
                        "in {path:?}: braces must enclose a whole segment: /{{name}} or /{{*name}}"
                    )
                })?;
            let (name, catch_all) = match inner.strip_prefix('*') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if !is_param_name(name) {
                return Err(format!(
                    "in {path:?}: invalid parameter name {name:?}: use letters, digits and _, not starting with a digit"
                ));
            }
            if kind == TemplateKind::Match {
                if catch_all && index + 1 != segments.len() {
                    return Err(format!(
                        "in {path:?}: a catch-all {{*{name}}} must be the last segment"
                    ));
                }
                if params.iter().any(|p| p == name) {
                    return Err(format!("in {path:?}: parameter {{{name}}} appears twice"));
                }
            }
            normalized.push_str(if catch_all { "{*}" } else { "{}" });
            params.push(name.to_owned());
        }
        Ok(Self { params, normalized })
    }
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// RFC 9110 `tchar`: what tokens (methods, header names, cookie names) are made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn header_name_problem(name: &str) -> Option<String> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(_) => None,
        Err(_) => Some(format!("invalid header name {name:?}")),
    }
}

fn host_problem(host: &str) -> Option<String> {
    if host.is_empty() {
        return Some("a host cannot be empty".to_owned());
    }
    if host.contains(':') {
        return Some(format!(
            "invalid host {host:?}: a host has no port (and no scheme)"
        ));
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.contains('*') {
        return Some(format!(
            "invalid host {host:?}: only a single leading `*.` wildcard is allowed"
        ));
    }
    if !is_hostname(name) {
        return Some(format!(
            "invalid host {host:?}: expected a host name such as api.example.com or *.example.com"
        ));
    }
    None
}

fn is_hostname(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn target_problem(url: &str) -> Option<String> {
    const EXPECTED: &str = "expected http://HOST:PORT";
    let Ok(uri) = url.parse::<Uri>() else {
        return Some(format!("invalid URL {url:?}: {EXPECTED}"));
    };
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Some(format!("unsupported scheme {other:?}: {EXPECTED}")),
        None => {
            return Some(format!(
                "invalid URL {url:?}: {EXPECTED} (the scheme is missing)"
            ));
        }
    }
    if url.matches("://").count() > 1 {
        return Some(format!("invalid URL {url:?}: the scheme is written twice"));
    }
    let Some(authority) = uri.authority() else {
        return Some(format!("invalid URL {url:?}: {EXPECTED}"));
    };
    if authority.as_str().contains('@') {
        return Some("a target URL cannot carry credentials".to_owned());
    }
    if authority.host().is_empty() {
        return Some(format!("invalid URL {url:?}: the host is missing"));
    }
    if authority.as_str().ends_with(':') || authority.port_u16() == Some(0) {
        return Some(format!("invalid URL {url:?}: the port is missing or 0"));
    }
    if uri.query().is_some() {
        return Some(format!("invalid URL {url:?}: a target has no query string"));
    }
    if !matches!(uri.path(), "" | "/") {
        return Some(format!(
            "invalid URL {url:?}: a target has no path (routes decide the path)"
        ));
    }
    None
}
