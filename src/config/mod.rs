//! Configuration: YAML text → the typed file model, with every error located as
//! `FILE:LINE:COL: key.path: reason`.
//!
//! Loading happens in stages, each with its own kind of error:
//! 1. [`parse_str`] reads the YAML into a located tree (syntax errors, duplicate keys), substitutes
//!    `${VAR}` inside scalar values, types plain scalars with the YAML 1.2 core schema, and
//!    deserializes into [`file::FileConfig`] (the first structural error: wrong type, unknown
//!    key, bad duration). The located tree is kept in a [`SourceMap`].
//! 2. [`validate`] checks the meaning (references, syntax of paths and addresses, routes that can
//!    never match) and reports every problem at once.
//! 3. [`compile`] turns the validated file model into the runtime model.

pub mod compile;
mod compile_aggregate;
pub mod compile_hostile;
mod compile_rate_limit;
mod compile_resilience;
mod compile_security;
mod compile_tls;
mod convert;
mod env;
mod error;
pub mod file;
pub mod file_aggregate;
pub mod file_hostile;
pub mod file_observe;
pub mod file_rate_limit;
pub mod file_resilience;
pub mod file_security;
pub mod file_tls;
mod source_map;
mod split;
mod structure;
mod suggest;
pub mod units;
mod validate;
mod validate_aggregate;
mod validate_rate_limit;
mod validate_resilience;
mod validate_security;
mod validate_tls;
pub mod watch;
mod yaml;
mod yaml_fast;

use std::path::Path;

pub use compile::{compile, compile_with, load_file, load_str, load_str_with_env, reload_file};
pub use error::{ConfigError, ConfigErrors};
pub use source_map::SourceMap;
pub use validate::{check_credential, validate};

/// A parsed, structurally valid file with its locations.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    /// The file name errors are reported under.
    pub name: String,
    /// The typed file model, shared with the runtime it compiles to (for `GET /admin/config`).
    pub config: std::sync::Arc<file::FileConfig>,
    /// Where each key path is in the source.
    pub source_map: SourceMap,
    /// The config version: a fingerprint of the file's bytes and of the `${VAR}` values used.
    pub version: String,
}

impl LoadedFile {
    /// An error located at the value of `path` (or its nearest written ancestor).
    pub fn error(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let path = path.into();
        let (line, column) = self.source_map.locate(&path);
        located(&self.name, line, column, path, message.into())
    }

    /// An error located at the key naming `path` (for a map entry whose name is the problem).
    pub fn key_error(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let path = path.into();
        let (line, column) = self.source_map.locate_key(&path);
        located(&self.name, line, column, path, message.into())
    }

    /// The line of the value at `path`, for messages that point back at an earlier definition.
    pub fn line_of(&self, path: &str) -> usize {
        self.source_map.locate(path).0
    }
}

fn located(file: &str, line: usize, column: usize, path: String, message: String) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        line,
        column,
        path,
        message,
    }
}

/// Parses `text` (named `name` in errors) into the file model; structural checks only.
///
/// `env` looks up variables for `${VAR}` substitution. Syntax and environment errors are all
/// reported; after those, only the first structural (type/key) error is.
pub fn parse_str(
    name: &str,
    text: &str,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<LoadedFile, ConfigErrors> {
    let root = match split::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(located(
                name,
                1,
                1,
                String::new(),
                "the file is empty: expected at least `version` and `listeners`".to_owned(),
            )
            .into());
        }
        Err(error) => {
            return Err(located(
                name,
                error.loc.line,
                error.loc.column,
                String::new(),
                error.message,
            )
            .into());
        }
    };
    // The variables the file uses are part of its version: the same bytes with another
    // `${VAR}` value are another config. Looked up from both conversion threads, hence the lock.
    let used = std::sync::Mutex::new(Vec::new());
    let recording = |variable: &str| {
        let value = env(variable);
        if let Ok(mut used) = used.lock() {
            used.push((variable.to_owned(), value.clone()));
        }
        value
    };
    let value = convert::to_json(&root, &recording).map_err(|problems| {
        ConfigErrors(
            problems
                .into_iter()
                .map(|p| located(name, p.loc.line, p.loc.column, p.path, p.message))
                .collect(),
        )
    })?;
    let root = std::sync::Arc::new(root);
    let source_map = SourceMap::new(std::sync::Arc::clone(&root));
    // Only for a failure's message; the conversion succeeded once, so it does again.
    let original = || convert::to_json(&root, env).unwrap_or_default();
    match structure::deserialize(value, original, &source_map) {
        Ok(config) => Ok(LoadedFile {
            name: name.to_owned(),
            config: std::sync::Arc::new(config),
            source_map,
            version: compile::fingerprint(text, used.into_inner().unwrap_or_default()),
        }),
        Err(failure) => {
            let (line, column) = failure.loc;
            Err(located(name, line, column, failure.path, failure.message).into())
        }
    }
}

/// Reads and parses the file at `path` with the process environment; structural checks only.
pub fn parse_file(path: &Path) -> Result<LoadedFile, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        located(
            &name,
            1,
            1,
            String::new(),
            format!("cannot read the config file: {error}"),
        )
    })?;
    parse_str(&name, &text, &|variable| std::env::var(variable).ok())
}

/// The JSON Schema of the config file, for editors and `gantry schema`.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(file::FileConfig).to_value()
}

#[cfg(test)]
mod tests;
