//! The aggregate merge: arbitrary answer bodies and statuses of up to four calls, shaped and merged
//! per a fuzzed aggregate config (merge mode, conflict rule, groups, select paths, renames,
//! fallbacks). Never a panic, and the document the client would get is always valid JSON: an
//! object that holds every contribution's key (or the conflict error the config asked for).
//!
//! Input layout: byte 0 picks merge mode and conflict rule, then one record per call separated by
//! `\n\x00\n`: a flags byte (bit 0-1: status class 2xx/204/4xx/5xx, bit 2: has a group, bit 3:
//! has a fallback, bit 4: select, bit 5: rename), then the answer body (any bytes; the gateway
//! parses it with `serde_json::from_slice`, and a body that is not JSON is that call's error).
#![no_main]

use gantry::handler::aggregate::merge::{self, Contribution, Merge, OnConflict};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const NAMES: [&str; 4] = ["profile", "orders", "billing", "recs"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let merge_mode = if mode & 1 == 0 {
        Merge::Nested
    } else {
        Merge::Deep
    };
    let rule = match (mode >> 1) & 3 {
        0 => OnConflict::UnderCallName,
        1 => OnConflict::Error,
        2 => OnConflict::First,
        _ => OnConflict::Last,
    };
    let mut contributions = Vec::new();
    let mut errors = Vec::new();
    for (i, record) in split(rest, b"\n\x00\n")
        .into_iter()
        .take(NAMES.len())
        .enumerate()
    {
        let Some((&flags, body)) = record.split_first() else {
            continue;
        };
        let call = NAMES[i];
        let status = [200u16, 204, 404, 503][usize::from(flags & 3)];
        // What the handler does with one answer: a 204 is null, another 2xx must be JSON, any
        // other status is the call's error.
        let answer = match status {
            204 => Ok(Value::Null),
            200 => serde_json::from_slice::<Value>(body).map_err(|_| 502u16),
            other => Err(other),
        };
        let value = match answer {
            Ok(value) => Some(value),
            Err(status) => {
                errors.push(json!({ "call": call, "status": status }));
                (flags & 8 != 0).then(|| json!({ "fallback": call, "items": [] }))
            }
        };
        let Some(mut value) = value else {
            continue;
        };
        if flags & 16 != 0 {
            // Dotted select paths taken from the answer's own keys, plus one that is not there.
            let mut paths: Vec<Vec<String>> =
                keys(&value).into_iter().take(3).map(|k| vec![k]).collect();
            paths.push(vec!["a".into(), "b".into()]);
            value = merge::select(value, &paths);
        }
        if flags & 32 != 0 {
            let renames: Vec<(String, String)> = keys(&value)
                .into_iter()
                .take(2)
                .map(|k| (k.clone(), format!("{k}_{call}")))
                .chain([("id".to_owned(), "errors".to_owned())])
                .collect();
            value = merge::rename(value, &renames);
        }
        contributions.push(Contribution {
            call,
            group: (flags & 4 != 0).then_some(if i % 2 == 0 { "shared" } else { call }),
            value,
        });
    }
    let expected_keys: Vec<String> = contributions
        .iter()
        .filter_map(|c| match (merge_mode, c.group, &c.value) {
            (Merge::Nested, group, _) => Some(group.unwrap_or(c.call).to_owned()),
            (Merge::Deep, Some(group), _) => Some(group.to_owned()),
            (Merge::Deep, None, Value::Object(_)) => None,
            (Merge::Deep, None, _) => Some(c.call.to_owned()),
        })
        .collect();
    let document = match merge::assemble(merge_mode, rule, contributions) {
        Ok(document) => document,
        Err(err) => {
            // Only a conflict may fail the merge, and only under the rules that can report one.
            assert!(
                err.slug().contains("conflict"),
                "unexpected merge error {err:?}"
            );
            return;
        }
    };
    for key in &expected_keys {
        assert!(document.contains_key(key), "{key} lost from {document:?}");
    }
    let mut document = document;
    if !errors.is_empty() {
        document.insert("errors".to_owned(), Value::Array(errors));
    }
    let bytes = serde_json::to_vec(&Value::Object(document)).expect("a merged document serialises");
    let again: Value = serde_json::from_slice(&bytes).expect("the answer is valid JSON");
    assert!(again.is_object());
});

fn keys(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(sep.len()).position(|w| w == sep) {
        out.push(&rest[..at]);
        rest = &rest[at + sep.len()..];
    }
    out.push(rest);
    out
}
