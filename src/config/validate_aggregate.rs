//! Semantic checks of `routes[].aggregate`: call names, upstreams, methods, path templates whose
//! placeholders must name something (a path param of `match.path`, a call in `depends_on`), and
//! the dependency graph (unknown calls and cycles rejected), each error located.

use std::collections::{BTreeSet, HashMap};

use http::Method;

use super::LoadedFile;
use super::error::ConfigError;
use super::file::FileRoute;
use super::file_aggregate::FileMerge;
use super::source_map::{child_index, child_key};
use super::suggest;
use crate::handler::aggregate::template::{PathTemplate, Source};

/// Appends every problem of `route.aggregate` to `errors`.
pub(super) fn route(
    loaded: &LoadedFile,
    base: &str,
    route: &FileRoute,
    errors: &mut Vec<ConfigError>,
) {
    let Some(aggregate) = &route.aggregate else {
        return;
    };
    let at = child_key(base, "aggregate");
    let mut error = |path: &str, message: String| errors.push(loaded.error(path, message));
    if route.rewrite.is_some() || route.websocket {
        error(
            &at,
            "an aggregate route cannot have `rewrite` or `websocket`".to_owned(),
        );
    }
    if aggregate.timeout.is_some_and(|d| d.0.is_zero()) {
        error(&child_key(&at, "timeout"), "must be more than 0".to_owned());
    }
    if aggregate.max_body_bytes.is_some_and(|b| b.0 == 0) {
        error(
            &child_key(&at, "max_body_bytes"),
            "must be more than 0".to_owned(),
        );
    }
    if aggregate.on_conflict.is_some() && aggregate.merge != FileMerge::Deep {
        error(
            &child_key(&at, "on_conflict"),
            "on_conflict only applies to `merge: deep`".to_owned(),
        );
    }
    let calls_path = child_key(&at, "calls");
    if aggregate.calls.is_empty() {
        error(
            &calls_path,
            "an aggregate needs at least one call".to_owned(),
        );
    }
    let params = match_params(route.matcher.path.as_deref().unwrap_or(""));
    let upstreams = &loaded.config.upstreams;
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, call) in aggregate.calls.iter().enumerate() {
        let call_at = child_index(&calls_path, i);
        let name_at = child_key(&call_at, "name");
        if call.name.is_empty()
            || call.name == "errors"
            || !call
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            error(
                &name_at,
                format!(
                    "invalid call name {:?}: letters, digits, _ and - (and not `errors`)",
                    call.name
                ),
            );
        } else if names.insert(&call.name, i).is_some() {
            error(&name_at, format!("duplicate call name {:?}", call.name));
        }
        if call.group.as_deref() == Some("errors") || call.group.as_deref() == Some("") {
            error(
                &child_key(&call_at, "group"),
                "a group cannot be empty or `errors`".to_owned(),
            );
        }
        if !upstreams.contains_key(&call.upstream) {
            let mut message = format!("unknown upstream {:?}", call.upstream);
            if let Some(close) =
                suggest::closest(&call.upstream, upstreams.keys().map(String::as_str))
            {
                message.push_str(&format!(" (did you mean {close:?}?)"));
            }
            error(&child_key(&call_at, "upstream"), message);
        }
        if let Some(method) = &call.method
            && Method::from_bytes(method.as_bytes()).is_err()
        {
            error(
                &child_key(&call_at, "method"),
                format!("invalid method {method:?}"),
            );
        }
        if call.timeout.is_some_and(|d| d.0.is_zero()) {
            error(
                &child_key(&call_at, "timeout"),
                "must be more than 0".to_owned(),
            );
        }
        if call.required && call.fallback.is_some() {
            error(
                &child_key(&call_at, "fallback"),
                "a required call cannot have a fallback: its failure fails the aggregate"
                    .to_owned(),
            );
        }
        if let Some(select) = &call.select {
            for (j, path) in select.iter().enumerate() {
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    error(
                        &child_index(&child_key(&call_at, "select"), j),
                        format!("invalid field path {path:?}"),
                    );
                }
            }
        }
        let path_at = child_key(&call_at, "path");
        match PathTemplate::parse(&call.path) {
            Err(problem) => error(&path_at, problem),
            Ok(template) => {
                for source in template.sources() {
                    match source {
                        Source::Param(name) if !params.contains(name.as_str()) => error(
                            &path_at,
                            format!(
                                "{{{name}}} names nothing: match.path does not capture it (use {{query.{name}}} or {{header.NAME}} for request values)"
                            ),
                        ),
                        Source::Field { call: from, .. } if !call.depends_on.contains(from) => {
                            error(
                                &path_at,
                                format!(
                                    "{{{from}.…}} uses call {from:?}, which is not in this call's depends_on"
                                ),
                            )
                        }
                        _ => {}
                    }
                }
            }
        }
        for (j, dep) in call.depends_on.iter().enumerate() {
            let dep_at = child_index(&child_key(&call_at, "depends_on"), j);
            if *dep == call.name {
                error(&dep_at, "a call cannot depend on itself".to_owned());
            } else if !aggregate.calls.iter().any(|c| c.name == *dep) {
                error(&dep_at, format!("unknown call {dep:?}"));
            }
        }
    }
    // Cycles: whatever Kahn's algorithm cannot order is on (or behind) a cycle.
    let n = aggregate.calls.len();
    let index = |name: &str| aggregate.calls.iter().position(|c| c.name == name);
    let deps: Vec<Vec<usize>> = aggregate
        .calls
        .iter()
        .map(|c| c.depends_on.iter().filter_map(|d| index(d)).collect())
        .collect();
    let mut done = vec![false; n];
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..n {
            if !done[i] && deps[i].iter().all(|&d| done[d] && d != i) {
                done[i] = true;
                changed = true;
            }
        }
    }
    let mut reported = BTreeSet::new();
    for start in (0..n).filter(|&i| !done[i]) {
        // Follow unordered dependencies until a call repeats: that is the cycle.
        let mut path = vec![start];
        let mut current = start;
        while let Some(&next) = deps[current].iter().find(|&&d| !done[d]) {
            if let Some(pos) = path.iter().position(|&p| p == next) {
                let cycle: Vec<usize> = path[pos..].to_vec();
                let key: BTreeSet<usize> = cycle.iter().copied().collect();
                if reported.insert(key.into_iter().collect::<Vec<_>>()) {
                    let mut names: Vec<&str> = cycle
                        .iter()
                        .map(|&c| aggregate.calls[c].name.as_str())
                        .collect();
                    names.push(&aggregate.calls[next].name);
                    error(
                        &child_key(&child_index(&calls_path, cycle[0]), "depends_on"),
                        format!("dependency cycle: {}", names.join(" -> ")),
                    );
                }
                break;
            }
            path.push(next);
            current = next;
        }
    }
}

/// The parameter names a `match.path` template captures (`{id}`, `{*rest}`).
fn match_params(path: &str) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.insert(after[..close].trim_start_matches('*'));
        rest = &after[close + 1..];
    }
    out
}
