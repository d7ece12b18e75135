//! Shaping (`select`, `rename`, `group`) and merging of call answers.
//!
//! `nested` puts each answer under its group (default: the call name). `deep` merges objects
//! recursively and never silently overwrites: equal values are not a collision; otherwise the rule
//! decides — by default the later call's value goes under the later call's name at the same path
//! (`{"id": 1, "billing": {"id": 2}}`), or `on_conflict: error | first | last`. "Later" is config
//! order, never arrival order, so the same answers always merge to the same document.

use serde_json::{Map, Value};

use crate::error::GatewayError;

/// How call answers are put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Each answer under its group or call name.
    Nested,
    /// One deep-merged object.
    Deep,
}

/// What a deep-merge collision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The later value goes under the later call's name.
    UnderCallName,
    /// The aggregate fails (502).
    Error,
    /// The earlier value stays.
    First,
    /// The later value replaces it.
    Last,
}

/// Keeps only the `paths` (each a dotted path) of an object; of each object in an array.
pub fn select(value: Value, paths: &[Vec<String>]) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(|v| select(v, paths)).collect()),
        Value::Object(object) => {
            let mut out = Map::new();
            for path in paths {
                copy_path(&object, &mut out, path);
            }
            Value::Object(out)
        }
        other => other,
    }
}

fn copy_path(from: &Map<String, Value>, to: &mut Map<String, Value>, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(value) = from.get(first) else {
        return;
    };
    if rest.is_empty() {
        to.insert(first.clone(), value.clone());
        return;
    }
    if let Value::Object(inner) = value {
        let slot = to
            .entry(first.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(slot) = slot {
            copy_path(inner, slot, rest);
        }
    }
}

/// Renames top-level fields of an object (other values are left alone).
pub fn rename(value: Value, renames: &[(String, String)]) -> Value {
    match value {
        Value::Object(mut object) => {
            for (old, new) in renames {
                if let Some(moved) = object.remove(old) {
                    object.insert(new.clone(), moved);
                }
            }
            Value::Object(object)
        }
        other => other,
    }
}

/// One call's shaped answer, ready to merge.
pub struct Contribution<'a> {
    /// The call's name.
    pub call: &'a str,
    /// Its `group`, if any.
    pub group: Option<&'a str>,
    /// The shaped answer (or fallback).
    pub value: Value,
}

/// Merges the contributions, in config order, into one object.
pub fn assemble(
    merge: Merge,
    rule: OnConflict,
    contributions: Vec<Contribution<'_>>,
) -> Result<Map<String, Value>, GatewayError> {
    let mut out = Map::new();
    for Contribution { call, group, value } in contributions {
        let incoming = match (merge, group, value) {
            (Merge::Nested, group, value) => single(group.unwrap_or(call), value),
            (Merge::Deep, Some(group), value) => single(group, value),
            (Merge::Deep, None, Value::Object(object)) => object,
            // Only objects merge; anything else lands under the call name.
            (Merge::Deep, None, value) => single(call, value),
        };
        let mut diverted = Map::new();
        merge_into(&mut out, incoming, call, rule, "", &mut diverted)?;
        if !diverted.is_empty() {
            if out.contains_key(call) {
                return Err(GatewayError::AggregateConflict {
                    call: call.to_owned(),
                    key: call.to_owned(),
                });
            }
            out.insert(call.to_owned(), Value::Object(diverted));
        }
    }
    Ok(out)
}

fn single(key: &str, value: Value) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    map
}

fn merge_into(
    target: &mut Map<String, Value>,
    incoming: Map<String, Value>,
    call: &str,
    rule: OnConflict,
    prefix: &str,
    diverted: &mut Map<String, Value>,
) -> Result<(), GatewayError> {
    for (key, value) in incoming {
        let Some(existing) = target.get_mut(&key) else {
            target.insert(key, value);
            continue;
        };
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (existing, value) {
            (Value::Object(existing), Value::Object(value)) => {
                let mut inner = Map::new();
                merge_into(existing, value, call, rule, &path, &mut inner)?;
                if !inner.is_empty() {
                    diverted.insert(key, Value::Object(inner));
                }
            }
            (existing, value) if *existing == value => {}
            (existing, value) => match rule {
                OnConflict::UnderCallName => {
                    diverted.insert(key, value);
                }
                OnConflict::Error => {
                    return Err(GatewayError::AggregateConflict {
                        call: call.to_owned(),
                        key: path,
                    });
                }
                OnConflict::First => {}
                OnConflict::Last => *existing = value,
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn contribution<'a>(call: &'a str, value: Value) -> Contribution<'a> {
        Contribution {
            call,
            group: None,
            value,
        }
    }

    fn paths(list: &[&str]) -> Vec<Vec<String>> {
        list.iter()
            .map(|p| p.split('.').map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn select_keeps_dotted_paths_and_skips_missing_ones() {
        let value = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4});
        assert_eq!(
            select(value, &paths(&["a", "b.c", "missing", "a.x"])),
            json!({"a": 1, "b": {"c": 2}})
        );
        assert_eq!(
            select(json!([{"a": 1, "b": 2}, 7]), &paths(&["a"])),
            json!([{"a": 1}, 7])
        );
    }

    #[test]
    fn rename_moves_top_level_keys() {
        let renames = vec![("a".to_owned(), "z".to_owned())];
        assert_eq!(
            rename(json!({"a": 1, "b": 2}), &renames),
            json!({"z": 1, "b": 2})
        );
    }

    #[test]
    fn deep_merge_puts_the_later_colliding_value_under_the_call_name() {
        let merged = assemble(
            Merge::Deep,
            OnConflict::UnderCallName,
            vec![
                contribution("users", json!({"id": 1, "user": {"name": "a", "x": 1}})),
                contribution(
                    "billing",
                    json!({"id": 2, "user": {"name": "b", "y": 2}, "same": 1}),
                ),
                contribution("more", json!({"id": 1, "same": 1})),
            ],
        )
        .unwrap();
        assert_eq!(
            Value::Object(merged),
            json!({
                "id": 1,
                "user": {"name": "a", "x": 1, "y": 2},
                "same": 1,
                "billing": {"id": 2, "user": {"name": "b"}}
            })
        );
    }

    #[test]
    fn explicit_rules_decide_collisions() {
        let calls = || {
            vec![
                contribution("a", json!({"k": {"v": 1}})),
                contribution("b", json!({"k": {"v": 2}})),
            ]
        };
        let first = assemble(Merge::Deep, OnConflict::First, calls()).unwrap();
        assert_eq!(Value::Object(first), json!({"k": {"v": 1}}));
        let last = assemble(Merge::Deep, OnConflict::Last, calls()).unwrap();
        assert_eq!(Value::Object(last), json!({"k": {"v": 2}}));
        let err = assemble(Merge::Deep, OnConflict::Error, calls()).unwrap_err();
        assert!(err.to_string().contains("k.v"), "{err}");
    }

    #[test]
    fn nested_merge_is_exact_and_groups_share_a_key() {
        let merged = assemble(
            Merge::Nested,
            OnConflict::UnderCallName,
            vec![
                contribution("a", json!([1, 2])),
                Contribution {
                    call: "b",
                    group: Some("g"),
                    value: json!({"x": 1}),
                },
                Contribution {
                    call: "c",
                    group: Some("g"),
                    value: json!({"y": 2}),
                },
            ],
        )
        .unwrap();
        assert_eq!(
            Value::Object(merged),
            json!({"a": [1, 2], "g": {"x": 1, "y": 2}})
        );
    }
}
