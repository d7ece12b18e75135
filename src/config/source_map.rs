//! Where each key path of the file is: the location of its value and of its key.
//!
//! Paths use serde_path_to_error's display syntax: map keys joined with `.`, sequence indices as
//! `[i]` (`routes[3].match.path`, `upstreams.users.targets[0].url`); the root is the empty path.

use std::collections::HashMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Loc {
    /// The start of the file.
    pub const START: Self = Self { line: 1, column: 1 };
}

/// Where each key path is in the source.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    values: HashMap<String, Loc>,
    keys: HashMap<String, Loc>,
}

impl SourceMap {
    /// Records where the value at `path` starts.
    pub(crate) fn insert_value(&mut self, path: &str, loc: Loc) {
        self.values.insert(path.to_owned(), loc);
    }

    /// Records where the key naming `path` is.
    pub(crate) fn insert_key(&mut self, path: &str, loc: Loc) {
        self.keys.insert(path.to_owned(), loc);
    }

    /// Line and column (1-based) of the value at `path`; for an unknown path, of its nearest
    /// existing ancestor; the root is 1:1.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let loc = self.find(path, &self.values);
        (loc.line, loc.column)
    }

    /// Line and column (1-based) of the key naming `path` (for a sequence item, of the item);
    /// falls back like [`SourceMap::locate`].
    pub fn locate_key(&self, path: &str) -> (usize, usize) {
        let loc = match self.keys.get(path) {
            Some(loc) => *loc,
            None => self.find(path, &self.values),
        };
        (loc.line, loc.column)
    }

    /// Whether the file wrote a value at `path` (rather than it coming from a default).
    pub fn contains(&self, path: &str) -> bool {
        self.values.contains_key(path)
    }

    fn find(&self, path: &str, table: &HashMap<String, Loc>) -> Loc {
        let mut current = path;
        loop {
            if let Some(loc) = table.get(current) {
                return *loc;
            }
            match parent(current) {
                Some(up) => current = up,
                None => return Loc::START,
            }
        }
    }
}

/// The path one level up: `a.b[2]` → `a.b` → `a` → `` → none.
pub(crate) fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// `parent.key` (or just `key` at the root).
pub(crate) fn child_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn child_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let mut map = SourceMap::default();
        map.insert_value("routes", Loc { line: 3, column: 3 });
        map.insert_value("routes[0]", Loc { line: 4, column: 5 });
        map.insert_key("routes[0].name", Loc { line: 4, column: 5 });
        map.insert_value(
            "routes[0].name",
            Loc {
                line: 4,
                column: 11,
            },
        );
        assert_eq!(map.locate("routes[0].name"), (4, 11));
        assert_eq!(map.locate_key("routes[0].name"), (4, 5));
        assert_eq!(map.locate("routes[0].match.path"), (4, 5));
        assert_eq!(map.locate("routes[7]"), (3, 3));
        assert_eq!(map.locate("nothing.here"), (1, 1));
        assert_eq!(map.locate(""), (1, 1));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }
}
