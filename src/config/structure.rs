//! Deserializing the converted value into the file model, with errors made for humans.
//!
//! serde stops at the first error, so this stage reports one; the path comes from
//! serde_path_to_error and is located with the [`SourceMap`]. Unknown keys are pointed at the key
//! itself and get a "did you mean" when a close name exists.

use serde_json::Value;
use serde_path_to_error::Segment;

use super::file::{FileConfig, FileRoute};
use super::source_map::{SourceMap, child_index, child_key};
use super::suggest;

/// The first structural error, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Line and column.
    pub(crate) loc: (usize, usize),
    /// Key path.
    pub(crate) path: String,
    /// Human message.
    pub(crate) message: String,
}

/// A `routes` list at least this long is deserialized in two halves on two threads.
const MIN_ROUTES_TO_SPLIT: usize = 1000;

/// Deserializes `value` into the file model.
///
/// `original` rebuilds `value` for messages that show what was written: only a failure needs it,
/// so the value is consumed rather than copied up front.
pub(crate) fn deserialize(
    mut value: Value,
    original: impl Fn() -> Value,
    source_map: &SourceMap,
) -> Result<FileConfig, Failure> {
    if let Some(routes) = take_long_routes(&mut value) {
        match deserialize_on_two_threads(value, routes) {
            Some(config) => return Ok(config),
            // Something is wrong: find and describe it the one-threaded way.
            None => value = original(),
        }
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let original = original();
        let (path, found) = walk(&original, error.path());
        describe(&path, found, &error.inner().to_string(), source_map)
    })
}

/// Takes a long `routes` list out of `value`, leaving an empty one.
fn take_long_routes(value: &mut Value) -> Option<Vec<Value>> {
    match value.get_mut("routes") {
        Some(Value::Array(routes)) if routes.len() >= MIN_ROUTES_TO_SPLIT => {
            Some(std::mem::take(routes))
        }
        _ => None,
    }
}

/// Deserializes the second half of `routes` on another thread while this one does the rest of
/// the file and the first half. `None` on any error (or a thread that could not run): the caller
/// then starts over serially, which reports the first error with its path.
fn deserialize_on_two_threads(rest: Value, mut routes: Vec<Value>) -> Option<FileConfig> {
    /// Deserializes `values` into a vector with room for `capacity` routes: a `FileRoute` is
    /// large, and growing a vector of 10,000 of them by doubling copied megabytes.
    fn routes_of(values: Vec<Value>, capacity: usize) -> Option<Vec<FileRoute>> {
        let mut routes = Vec::with_capacity(capacity);
        for value in values {
            routes.push(serde_json::from_value(value).ok()?);
        }
        Some(routes)
    }
    let total = routes.len();
    let second = routes.split_off(total / 2);
    std::thread::scope(|scope| {
        let later = std::thread::Builder::new()
            .spawn_scoped(scope, || {
                let count = second.len();
                routes_of(second, count)
            })
            .ok()?;
        let mut config: FileConfig = serde_json::from_value(rest).ok()?;
        let mut first = routes_of(routes, total)?;
        first.extend(later.join().ok()??);
        config.routes = first;
        Some(config)
    })
}

/// The display path of `path` (up to any unknown segment) and the value written there.
fn walk<'v>(root: &'v Value, path: &serde_path_to_error::Path) -> (String, Option<&'v Value>) {
    let mut text = String::new();
    let mut value = Some(root);
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                text = child_index(&text, *index);
                value = value.and_then(|v| v.get(*index));
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                text = child_key(&text, key);
                value = value.and_then(|v| v.get(key));
            }
            Segment::Unknown => return (text, None),
        }
    }
    (text, value)
}

fn describe(path: &str, found: Option<&Value>, serde_message: &str, map: &SourceMap) -> Failure {
    if let Some(rest) = serde_message.strip_prefix("unknown field ") {
        let names = backticked(rest);
        if let Some((field, expected)) = names.split_first() {
            let key_path = if path.rsplit(['.', ']']).next() == Some(field) {
                path.to_owned()
            } else {
                child_key(path, field)
            };
            let mut message = format!("unknown field `{field}`");
            message.push_str(&expected_list(expected));
            if let Some(close) = suggest::closest(field, expected.iter().map(String::as_str)) {
                message.push_str(&format!(" (did you mean `{close}`?)"));
            }
            return Failure {
                loc: map.locate_key(&key_path),
                path: key_path,
                message,
            };
        }
    }
    let message = if let Some(rest) = serde_message.strip_prefix("unknown variant ") {
        let names = backticked(rest);
        match names.split_first() {
            Some((variant, expected)) => {
                let mut message = format!("unknown value `{variant}`");
                message.push_str(&expected_list(expected));
                if let Some(close) = suggest::closest(variant, expected.iter().map(String::as_str))
                {
                    message.push_str(&format!(" (did you mean `{close}`?)"));
                }
                message
            }
            None => serde_message.to_owned(),
        }
    } else if serde_message.contains("untagged enum FileValueMatch") {
        let mut message = "expected a string or { present: true|false }".to_owned();
        match found {
            Some(scalar @ (Value::Number(_) | Value::Bool(_))) => {
                message.push_str(&format!("; quote it to match the text: \"{scalar}\""));
            }
            Some(Value::Object(keys)) => {
                if let Some(wrong) = keys.keys().find(|key| key.as_str() != "present") {
                    message.push_str(&format!(", found unknown key `{wrong}`"));
                    if suggest::closest(wrong, ["present"]).is_some() {
                        message.push_str(" (did you mean `present`?)");
                    }
                }
            }
            _ => {}
        }
        message
    } else {
        humanize(serde_message)
    };
    Failure {
        loc: map.locate(path),
        path: path.to_owned(),
        message,
    }
}

/// Every `` `name` `` in `text`, in order.
fn backticked(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn expected_list(expected: &[String]) -> String {
    match expected {
        [] => ", this mapping takes no keys".to_owned(),
        [only] => format!(", expected `{only}`"),
        many => {
            let list: Vec<String> = many.iter().map(|name| format!("`{name}`")).collect();
            format!(", expected one of {}", list.join(", "))
        }
    }
}

/// Replaces Rust type names in serde's messages with words a config author knows.
fn humanize(message: &str) -> String {
    let mut message = message
        .replace("invalid type: map", "invalid type: mapping")
        .replace("expected a map", "expected a mapping")
        .replace("expected u32", "expected an integer from 0 to 4294967295")
        .replace("expected u16", "expected an integer from 0 to 65535")
        .replace("expected usize", "expected a non-negative integer")
        .replace("expected u64", "expected a non-negative integer");
    if let Some(at) = message.find("expected struct ") {
        message.truncate(at);
        message.push_str("expected a mapping");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_config_words() {
        assert_eq!(
            humanize("invalid type: null, expected struct FileServer"),
            "invalid type: null, expected a mapping"
        );
        assert_eq!(
            humanize("invalid type: string \"x\", expected u32"),
            "invalid type: string \"x\", expected an integer from 0 to 4294967295"
        );
        assert_eq!(backticked("`a`, expected one of `b`, `c`"), ["a", "b", "c"]);
    }
}
