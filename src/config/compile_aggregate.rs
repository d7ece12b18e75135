//! File model → runtime model for `routes[].aggregate` (validated before; errors here are guards).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::LoadedFile;
use super::error::ConfigError;
use super::file_aggregate::{FileAggregate, FileMerge, FileOnConflict};
use crate::handler::aggregate::merge::{Merge, OnConflict};
use crate::handler::aggregate::template::PathTemplate;
use crate::handler::aggregate::{Aggregate, Call};
use crate::upstream::cluster::UpstreamCluster;

/// Budget of an aggregate without `timeout`.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(5);
/// Largest call answer read without `max_body_bytes`.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;

/// Compiles `routes[index].aggregate`; `None` (with errors pushed) when it cannot be.
pub(super) fn aggregate(
    loaded: &LoadedFile,
    index: usize,
    file: &FileAggregate,
    upstreams: &BTreeMap<String, Arc<UpstreamCluster>>,
    errors: &mut Vec<ConfigError>,
) -> Option<Aggregate> {
    let at = |key: String| format!("routes[{index}].aggregate.{key}");
    let budget = file.timeout.map_or(DEFAULT_BUDGET, |d| d.0);
    let mut calls = Vec::with_capacity(file.calls.len());
    for (i, call) in file.calls.iter().enumerate() {
        let Some(cluster) = upstreams.get(&call.upstream) else {
            errors.push(loaded.error(at(format!("calls[{i}].upstream")), "unknown upstream"));
            return None;
        };
        let method = match &call.method {
            None => Method::GET,
            Some(m) => {
                if let Ok(method) = Method::from_bytes(m.as_bytes()) {
                    method
                } else {
                    errors.push(loaded.error(at(format!("calls[{i}].method")), "invalid method"));
                    return None;
                }
            }
        };
        let path = match PathTemplate::parse(&call.path) {
            Ok(path) => path,
            Err(problem) => {
                errors.push(loaded.error(at(format!("calls[{i}].path")), problem));
                return None;
            }
        };
        let mut depends_on = Vec::with_capacity(call.depends_on.len());
        for dep in &call.depends_on {
            let Some(position) = file.calls.iter().position(|c| &c.name == dep) else {
                errors.push(loaded.error(at(format!("calls[{i}].depends_on")), "unknown call"));
                return None;
            };
            depends_on.push(position);
        }
        calls.push(Call {
            name: Arc::from(call.name.as_str()),
            cluster: Arc::clone(cluster),
            method,
            path,
            depends_on,
            timeout: call.timeout.map_or(budget, |d| d.0),
            required: call.required,
            fallback: call.fallback.clone(),
            select: call.select.as_ref().map(|paths| {
                paths
                    .iter()
                    .map(|p| p.split('.').map(str::to_owned).collect())
                    .collect()
            }),
            rename: call
                .rename
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            group: call.group.clone(),
            forward_body: call.forward_body,
        });
    }
    Some(Aggregate {
        budget,
        calls,
        merge: match file.merge {
            FileMerge::Nested => Merge::Nested,
            FileMerge::Deep => Merge::Deep,
        },
        on_conflict: match file.on_conflict {
            None => OnConflict::UnderCallName,
            Some(FileOnConflict::Error) => OnConflict::Error,
            Some(FileOnConflict::First) => OnConflict::First,
            Some(FileOnConflict::Last) => OnConflict::Last,
        },
        max_body_bytes: usize::try_from(file.max_body_bytes.map_or(DEFAULT_MAX_BODY, |b| b.0))
            .unwrap_or(usize::MAX),
    })
}
