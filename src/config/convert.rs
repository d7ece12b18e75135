//! The located YAML tree → `serde_json::Value`.
//!
//! This is where `${VAR}` substitution and YAML 1.2 core-schema typing happen, in that order, so
//! `port: ${PORT}` can become an integer while a quoted scalar always stays a string. Duplicate
//! keys are refused here (at the second key) because only here is the key path known. YAML merge
//! keys (`<<: *defaults`) are honoured: explicit keys win, then earlier merge sources.

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use super::env;
use super::source_map::{Loc, is_merge_key};
use super::yaml::{Node, Scalar};

/// One problem found while converting, before the file name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Where it is.
    pub(crate) loc: Loc,
    /// The key path it is about.
    pub(crate) path: String,
    /// What it is.
    pub(crate) message: String,
}

/// Converts `root`, substituting environment variables; every problem is reported.
pub(crate) fn to_json(
    root: &Node,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Value, Vec<Problem>> {
    let mut converter = Converter {
        env,
        path: String::new(),
        problems: Vec::new(),
        may_split: true,
    };
    let value = converter.node(root);
    if converter.problems.is_empty() {
        Ok(value)
    } else {
        converter.problems.sort_by_key(|problem| problem.loc);
        // An aliased node is converted once per use; report each of its problems once.
        converter
            .problems
            .dedup_by(|a, b| a.loc == b.loc && a.message == b.message);
        Err(converter.problems)
    }
}

/// A sequence this long (the `routes` of a large config) is converted in two halves on two
/// threads: a reload of 10,000 routes would otherwise spend milliseconds here on one core.
const SPLIT_MIN_ITEMS: usize = 1_000;

struct Converter<'a> {
    env: &'a (dyn Fn(&str) -> Option<String> + Sync),
    /// The key path of the node being converted (see [`super::source_map`]), kept in one buffer
    /// because it is only read when there is a problem to report.
    path: String,
    problems: Vec<Problem>,
    /// Whether a long sequence may still be split over two threads (once per document is enough).
    may_split: bool,
}

impl Converter<'_> {
    fn problem(&mut self, loc: Loc, message: impl Into<String>) {
        self.problems.push(Problem {
            loc,
            path: self.path.clone(),
            message: message.into(),
        });
    }

    /// Runs `convert` with `.key` (or `key` at the root) appended to the path.
    fn at_key<T>(&mut self, key: &str, convert: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.path.len();
        if len != 0 {
            self.path.push('.');
        }
        self.path.push_str(key);
        let result = convert(self);
        self.path.truncate(len);
        result
    }

    fn node(&mut self, node: &Node) -> Value {
        match node {
            Node::Scalar(scalar) => self.scalar(scalar),
            Node::Sequence(items, _) if self.may_split && items.len() >= SPLIT_MIN_ITEMS => {
                self.sequence_on_two_threads(items)
            }
            Node::Sequence(items, _) => Value::Array(self.items(items, 0)),
            Node::Mapping(entries, _) => self.mapping(entries),
        }
    }

    /// Converts `items`, numbering them in paths from `first_index`.
    fn items(&mut self, items: &[Node], first_index: usize) -> Vec<Value> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let len = self.path.len();
                // Writing to a String cannot fail.
                let _ = write!(self.path, "[{}]", first_index + i);
                let value = self.node(item);
                self.path.truncate(len);
                value
            })
            .collect()
    }

    /// Converts the second half of `items` on another thread while this one does the first; the
    /// result, problems included, is the same as converting them in order here.
    fn sequence_on_two_threads(&mut self, items: &[Node]) -> Value {
        self.may_split = false;
        let (first, second) = items.split_at(items.len() / 2);
        let mut other = Converter {
            env: self.env,
            path: self.path.clone(),
            problems: Vec::new(),
            may_split: false,
        };
        let (mut values, more) = std::thread::scope(|scope| {
            let more = scope.spawn(|| {
                let values = other.items(second, first.len());
                (values, other.problems)
            });
            (self.items(first, 0), more.join())
        });
        match more {
            Ok((more, problems)) => {
                values.extend(more);
                self.problems.extend(problems);
            }
            // Whatever failed there fails here too, where it is handled like any other panic.
            Err(_) => values.extend(self.items(second, first.len())),
        }
        self.may_split = true;
        Value::Array(values)
    }

    fn mapping(&mut self, entries: &[(Node, Node)]) -> Value {
        let mut merged = Map::new();
        let mut object = Map::with_capacity(entries.len());
        let mut merge_sources: Vec<&Node> = Vec::new();
        for (key, value) in entries {
            let Node::Scalar(key) = key else {
                self.problem(key.loc(), "mapping keys must be plain strings");
                continue;
            };
            if is_merge_key(key) {
                match value {
                    Node::Mapping(..) => merge_sources.push(value),
                    Node::Sequence(items, _)
                        if items.iter().all(|i| matches!(i, Node::Mapping(..))) =>
                    {
                        merge_sources.extend(items.iter());
                    }
                    _ => self.problem(
                        value.loc(),
                        "a merge key `<<` needs a mapping or a list of mappings",
                    ),
                }
                continue;
            }
            if object.contains_key(&key.text) {
                let first = entries
                    .iter()
                    .find_map(|(k, _)| match k {
                        Node::Scalar(k) if !is_merge_key(k) && k.text == key.text => Some(k.loc),
                        _ => None,
                    })
                    .unwrap_or(key.loc);
                let message = format!(
                    "duplicate key `{}` (first at line {})",
                    key.text, first.line
                );
                self.at_key(&key.text, |this| this.problem(key.loc, message));
                continue;
            }
            let converted = self.at_key(&key.text, |this| this.node(value));
            object.insert(key.text.clone(), converted);
        }
        // Earlier merge sources win over later ones, explicit keys over all of them.
        for source in merge_sources.iter().rev() {
            if let Value::Object(entries) = self.node(source) {
                merged.extend(entries);
            }
        }
        if merged.is_empty() {
            return Value::Object(object);
        }
        merged.extend(object);
        Value::Object(merged)
    }

    fn scalar(&mut self, scalar: &Scalar) -> Value {
        let substitution = match env::substitute(&scalar.text, self.env) {
            Ok(substitution) => substitution,
            Err(message) => {
                self.problem(scalar.loc, message);
                return Value::Null;
            }
        };
        let text = substitution.text;
        match scalar.tag.as_deref() {
            Some("!!str") => Value::String(text),
            Some(tag @ ("!!null" | "!!bool" | "!!int" | "!!float")) => {
                let value = resolve_plain(&text);
                let fits = match tag {
                    "!!null" => value.is_null(),
                    "!!bool" => value.is_boolean(),
                    "!!int" => value.is_i64() || value.is_u64(),
                    _ => value.is_number(),
                };
                if !fits {
                    self.problem(scalar.loc, format!("{text:?} is not a valid {tag}"));
                }
                value
            }
            Some(tag) => {
                self.problem(scalar.loc, format!("unsupported YAML tag {tag}"));
                Value::Null
            }
            None if !scalar.plain => Value::String(text),
            // `${VAR:-}` means "empty", not "absent": keep it a string for the validator to judge.
            None if substitution.replaced && text.is_empty() => Value::String(text),
            // Most plain scalars stay strings: keep the substituted text rather than copy it.
            None => typed_plain(&text).unwrap_or(Value::String(text)),
        }
    }
}

/// Types a plain scalar with the YAML 1.2 core schema: null, bool, int, float, else string.
pub(crate) fn resolve_plain(text: &str) -> Value {
    typed_plain(text).unwrap_or_else(|| Value::String(text.to_owned()))
}

/// [`resolve_plain`] for the scalars that are not strings; `None` for a string.
fn typed_plain(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    if let Some(number) = resolve_int(text) {
        return Some(Value::Number(number));
    }
    if is_core_float(text)
        && let Some(number) = text.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Some(Value::Number(number));
    }
    None
}

fn resolve_int(text: &str) -> Option<Number> {
    if let Some(octal) = text.strip_prefix("0o") {
        return u64::from_str_radix(octal, 8).ok().map(Number::from);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok().map(Number::from);
    }
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if negative {
        text.parse::<i64>().ok().map(Number::from)
    } else {
        digits.parse::<u64>().ok().map(Number::from)
    }
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (infinities and NaN have no JSON form).
fn is_core_float(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let whole = digits(&mut i);
    let mut fraction = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        fraction = digits(&mut i);
    }
    if whole == 0 && fraction == 0 {
        return false;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::source_map::SourceMap;
    use super::super::yaml;
    use super::*;

    fn convert(text: &str) -> Result<(Value, SourceMap), Vec<Problem>> {
        let env = |name: &str| match name {
            "PORT" => Some("9090".to_owned()),
            "TRICKY" => Some("a: [x]".to_owned()),
            _ => None,
        };
        let root = yaml::parse(text).unwrap().unwrap();
        let value = to_json(&root, &env)?;
        Ok((value, SourceMap::new(Arc::new(root))))
    }

    #[test]
    fn core_schema_typing() {
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("True"), Value::Bool(true));
        assert_eq!(resolve_plain("42"), Value::from(42u64));
        assert_eq!(resolve_plain("-7"), Value::from(-7i64));
        assert_eq!(resolve_plain("0x1F"), Value::from(31u64));
        assert_eq!(resolve_plain("0o17"), Value::from(15u64));
        assert_eq!(resolve_plain("0.5"), Value::from(0.5));
        assert_eq!(resolve_plain("1e3"), Value::from(1000.0));
        assert_eq!(resolve_plain("yes"), Value::from("yes"));
        assert_eq!(resolve_plain("0.0.0.0:8080"), Value::from("0.0.0.0:8080"));
        assert_eq!(resolve_plain("30s"), Value::from("30s"));
        assert_eq!(resolve_plain(".inf"), Value::from(".inf"));
        assert_eq!(resolve_plain("-"), Value::from("-"));
    }

    #[test]
    fn quoted_scalars_stay_strings_and_env_values_are_typed_after_substitution() {
        let (value, _) =
            convert("a: '1'\nb: ${PORT}\nc: \"${PORT}\"\nd: ${TRICKY}\ne: !!str 5\n").unwrap();
        assert_eq!(value["a"], Value::from("1"));
        assert_eq!(value["b"], Value::from(9090u64));
        assert_eq!(value["c"], Value::from("9090"));
        assert_eq!(value["d"], Value::from("a: [x]"));
        assert_eq!(value["e"], Value::from("5"));
    }

    #[test]
    fn records_value_and_key_locations() {
        let (_, map) = convert("routes:\n  - name: a\n    match: { path: /x }\n").unwrap();
        assert_eq!(map.locate("routes[0].name"), (2, 11));
        assert_eq!(map.locate_key("routes[0].name"), (2, 5));
        assert_eq!(map.locate("routes[0].match.path"), (3, 20));
        assert_eq!(map.locate("routes[0]"), (2, 5));
    }

    #[test]
    fn duplicate_keys_are_errors_at_the_second() {
        let problems = convert("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].loc, Loc { line: 4, column: 3 });
        assert_eq!(problems[0].path, "b.c");
        assert_eq!(problems[0].message, "duplicate key `c` (first at line 3)");
    }

    #[test]
    fn unset_variables_are_all_reported() {
        let problems = convert("a: ${NOPE}\nb: [x, \"${ALSO_NOPE}\"]\n").unwrap_err();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].message, "environment variable NOPE is not set");
        assert_eq!((problems[1].loc.line, problems[1].loc.column), (2, 8));
        assert_eq!(problems[1].path, "b[1]");
    }

    #[test]
    fn a_long_sequence_converts_on_two_threads_like_on_one() {
        let mut text = String::from("routes:\n");
        for i in 0..2 * SPLIT_MIN_ITEMS {
            match i {
                10 | 1500 => text.push_str(&format!("  - n: {i}\n    port: ${{NOPE_{i}}}\n")),
                _ => text.push_str(&format!("  - n: {i}\n    port: ${{PORT}}\n")),
            }
        }
        let problems = convert(&text).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["routes[10].port", "routes[1500].port"]);
        assert_eq!(problems[1].loc.line, 2 + 2 * 1500 + 1);
        let fixed = text
            .replace("${NOPE_10}", "${PORT}")
            .replace("${NOPE_1500}", "1");
        let (value, _) = convert(&fixed).unwrap();
        let routes = value["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 2 * SPLIT_MIN_ITEMS);
        assert!(routes.iter().enumerate().all(|(i, r)| r["n"] == i));
        assert_eq!(routes[1500]["port"], 1);
        assert_eq!(routes[1999]["port"], 9090);
    }

    #[test]
    fn merge_keys_fill_in_missing_keys() {
        let (value, map) =
            convert("base: &b { connect: 1s, request: 5s }\nt:\n  <<: *b\n  request: 9s\n")
                .unwrap();
        assert_eq!(value["t"]["connect"], Value::from("1s"));
        assert_eq!(value["t"]["request"], Value::from("9s"));
        assert_eq!(map.locate("t.request"), (4, 12));
    }
}
