//! The file model of a route's `aggregate:` (backend for frontend): one request in, several upstream
//! calls out, one JSON document back. Same rules as `file.rs`: exactly the YAML, unknown keys denied,
//! nothing resolved.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::units::{ByteSize, Duration};

/// `routes[].aggregate`: the calls to make and how to merge their answers.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAggregate {
    /// Budget for the whole aggregate; every call gets at most what is left (default 5s).
    pub timeout: Option<Duration>,
    /// The upstream calls; independent ones run in parallel.
    pub calls: Vec<FileAggregateCall>,
    /// `nested` (each answer under its call name or group; the default) or `deep` (one deep-merged object).
    #[serde(default)]
    pub merge: FileMerge,
    /// `deep` merge only: what a key collision between two calls does. Left out, the later call's
    /// value goes under the later call's name; `error` answers 502, `first`/`last` keep that one.
    pub on_conflict: Option<FileOnConflict>,
    /// Largest answer body read from a call (default 1MiB); a larger one is an error of that call.
    pub max_body_bytes: Option<ByteSize>,
}

/// How call answers are put together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileMerge {
    /// `{ "<call or group>": <answer>, ... }`.
    #[default]
    Nested,
    /// Objects deep-merged into one; collisions per `on_conflict`.
    Deep,
}

/// What a deep-merge collision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileOnConflict {
    /// The aggregate fails with 502 naming both calls.
    Error,
    /// The earlier call (in config order) keeps the key.
    First,
    /// The later call (in config order) takes the key.
    Last,
}

/// One upstream call of an aggregate.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAggregateCall {
    /// Unique name within the aggregate: the key of its answer and of its `errors` entry.
    pub name: String,
    /// Upstream cluster the call goes to (with its balancing, health, breaker, retries and pool).
    pub upstream: String,
    /// HTTP method (default GET).
    pub method: Option<String>,
    /// Path and query template: `{param}` (route path param), `{query.NAME}`, `{header.NAME}`,
    /// `{CALL.field.path}` (a field of an earlier call named in `depends_on`).
    pub path: String,
    /// Calls whose answers this one needs; it starts as soon as they are done.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Longest this call may take (never more than what is left of the aggregate's budget).
    pub timeout: Option<Duration>,
    /// A failure of a required call fails the whole aggregate (502, or 504 on timeout).
    #[serde(default)]
    pub required: bool,
    /// JSON value used as the answer when the call fails (marked in `errors` with `fallback: true`).
    pub fallback: Option<serde_json::Value>,
    /// Keep only these fields (dotted paths allowed, e.g. `user.name`).
    pub select: Option<Vec<String>>,
    /// Rename top-level fields: `{ old: new }`, after `select`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Put the answer under this key (default: the call name with `merge: nested`, none with `deep`).
    pub group: Option<String>,
    /// Send the client's request body with this call (e.g. for POST aggregation).
    #[serde(default)]
    pub forward_body: bool,
}
