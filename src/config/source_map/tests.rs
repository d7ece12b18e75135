use std::collections::HashMap;
use std::sync::Arc;

use super::super::yaml::{self, Node};
use super::*;

fn map_of(text: &str) -> SourceMap {
    SourceMap::new(Arc::new(yaml::parse(text).unwrap().unwrap()))
}

#[test]
fn unknown_paths_fall_back_to_the_nearest_ancestor() {
    let map = map_of("a: 1\nroutes:\n  - name: x\n");
    assert_eq!(map.locate("routes[0].name"), (3, 11));
    assert_eq!(map.locate_key("routes[0].name"), (3, 5));
    assert_eq!(map.locate("routes[0].match.path"), (3, 5));
    assert_eq!(map.locate("routes[7]"), (3, 3));
    assert_eq!(map.locate("routes[00]"), (3, 3));
    assert_eq!(map.locate("nothing.here"), (1, 1));
    assert_eq!(map.locate(""), (1, 1));
    assert!(map.contains("routes[0]"));
    assert!(!map.contains("routes[0].match"));
    assert!(!map.contains(""));
    assert_eq!(parent("a.b[2]"), Some("a.b"));
    assert_eq!(parent("a"), Some(""));
    assert_eq!(parent(""), None);
}

/// The converter's former eager recording, kept as the reference the lazy walk must agree with.
#[derive(Default)]
struct Eager {
    values: HashMap<String, Loc>,
    keys: HashMap<String, Loc>,
}

impl Eager {
    fn node(&mut self, node: &Node, path: &str) {
        if !path.is_empty() {
            self.values.insert(path.to_owned(), node.loc());
        }
        match node {
            Node::Scalar(_) => {}
            Node::Sequence(items, _) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = child_index(path, i);
                    self.keys.insert(item_path.clone(), item.loc());
                    self.node(item, &item_path);
                }
            }
            Node::Mapping(entries, loc) => self.mapping(entries, *loc, path),
        }
    }

    fn mapping(&mut self, entries: &[(Node, Node)], loc: Loc, path: &str) {
        let mut seen: HashMap<&str, Loc> = HashMap::new();
        let mut merge_sources: Vec<&Node> = Vec::new();
        for (key, value) in entries {
            let Node::Scalar(key) = key else { continue };
            if is_merge_key(key) {
                match value {
                    Node::Mapping(..) => merge_sources.push(value),
                    Node::Sequence(items, _) => merge_sources.extend(items.iter()),
                    Node::Scalar(_) => {}
                }
                continue;
            }
            let child = child_key(path, &key.text);
            if seen.contains_key(key.text.as_str()) {
                continue;
            }
            seen.insert(&key.text, key.loc);
            self.keys.insert(child.clone(), key.loc);
            self.node(value, &child);
        }
        for source in merge_sources.iter().rev() {
            self.node(source, path);
        }
        if !merge_sources.is_empty() {
            if !path.is_empty() {
                self.values.insert(path.to_owned(), loc);
            }
            for (key, value) in entries {
                if let Node::Scalar(key) = key
                    && seen.contains_key(key.text.as_str())
                {
                    let child = child_key(path, &key.text);
                    self.keys.insert(child.clone(), key.loc);
                    self.values.insert(child, value.loc());
                }
            }
        }
    }

    fn find(&self, path: &str) -> Loc {
        let mut current = path;
        loop {
            if let Some(loc) = self.values.get(current) {
                return *loc;
            }
            match parent(current) {
                Some(up) => current = up,
                None => return Loc::START,
            }
        }
    }
}

fn agree(text: &str) {
    let root = yaml::parse(text).unwrap().unwrap();
    let mut eager = Eager::default();
    eager.node(&root, "");
    let lazy = SourceMap::new(Arc::new(root));
    let mut paths: Vec<String> = eager
        .values
        .keys()
        .chain(eager.keys.keys())
        .cloned()
        .collect();
    for extra in [
        "",
        "x",
        "a.zz",
        "a[0]",
        "[0]",
        "[9]",
        "a.",
        ".",
        "a..b",
        "routes[01]",
    ] {
        paths.push(extra.to_owned());
    }
    let more: Vec<String> = paths
        .iter()
        .flat_map(|p| [format!("{p}.nope"), format!("{p}[0]"), format!("{p}[5]")])
        .collect();
    paths.extend(more);
    for path in &paths {
        let key = eager.keys.get(path.as_str()).copied();
        let key = key.unwrap_or_else(|| eager.find(path));
        assert_eq!(
            lazy.locate(path),
            (eager.find(path).line, eager.find(path).column),
            "locate {path:?} in {text:?}"
        );
        assert_eq!(
            lazy.locate_key(path),
            (key.line, key.column),
            "locate_key {path:?} in {text:?}"
        );
        assert_eq!(
            lazy.contains(path),
            eager.values.contains_key(path.as_str()),
            "contains {path:?} in {text:?}"
        );
    }
}

#[test]
fn the_walk_agrees_with_recording_every_path() {
    for text in [
        "routes:\n  - name: a\n    match: { path: /x, hosts: [a, b] }\n  - name: b\n",
        "a: 1\nb:\n  c: [1, [2, {d: 3}]]\n  e: {}\n  f: []\n",
        "[1, {a: 2}, [3]]\n",
        "just a scalar\n",
        // Keys that render to the same path: the later one wins.
        "a.b: 1\na:\n  b: 2\n",
        "a:\n  b: 2\na.b: 1\n",
        "a.b:\n  c: 1\na:\n  b.c: 2\n  b: { c: 3 }\n",
        "'': { x: 1, '': 2 }\ny: 3\n",
        "a: { '': 1, '.': 2, '[0]': 3, x: [4] }\n",
        "a[0]: 1\na: [2]\n",
        // Merge keys, nested, listed, overridden, and a quoted `<<` that is an ordinary key.
        "base: &b { connect: 1s, request: 5s }\nt:\n  <<: *b\n  request: 9s\n",
        "b1: &b1 { x: 1, y: { z: 2 } }\nb2: &b2 { x: 3, w: 4 }\nt:\n  <<: [*b1, *b2]\n  y: { q: 5 }\n",
        "b1: &b1 { x: 1 }\nb2: &b2 { <<: *b1, y: 2 }\nt: { <<: *b2, z: 3 }\n",
        "b: &b { '<<': 1, k: 2 }\nt: { '<<': 3, <<: *b }\n",
        "b: &b { x: 1 }\n<<: *b\n'': 2\ny: 3\n",
        "b: &b { x: [1, 2] }\nl:\n  - <<: *b\n    x: [3]\n  - <<: *b\n",
    ] {
        agree(text);
    }
}
