//! Where each key path of the file is: the location of its value and of its key.
//!
//! Paths use serde_path_to_error's display syntax: map keys joined with `.`, sequence indices as
//! `[i]` (`routes[3].match.path`, `upstreams.users.targets[0].url`); the root is the empty path.
//!
//! Locations are only needed when an error is reported, so the map keeps the located YAML tree and
//! resolves a path by walking it, instead of rendering every node's path up front. A path names
//! what the converter would have recorded under it: each node's path is its parent's path joined
//! with its key or index, and when two nodes render to the same path (a key containing `.`, or a
//! key filled in by a `<<` merge) the one the converter visits last wins.

use std::fmt;
use std::sync::Arc;

use super::yaml::{Node, Scalar};

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
#[derive(Clone, Default)]
pub struct SourceMap {
    root: Option<Arc<Node>>,
}

impl fmt::Debug for SourceMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceMap").finish_non_exhaustive()
    }
}

/// Which location a lookup wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Where the value starts.
    Value,
    /// Where the key naming it is (for a sequence item, the item).
    Key,
}

impl SourceMap {
    /// The map of the document `root`.
    pub(crate) fn new(root: Arc<Node>) -> Self {
        Self { root: Some(root) }
    }

    /// Line and column (1-based) of the value at `path`; for an unknown path, of its nearest
    /// existing ancestor; the root is 1:1.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let loc = self.find(path);
        (loc.line, loc.column)
    }

    /// Line and column (1-based) of the key naming `path` (for a sequence item, of the item);
    /// falls back like [`SourceMap::locate`].
    pub fn locate_key(&self, path: &str) -> (usize, usize) {
        let loc = match self.lookup(path, Want::Key) {
            Some(loc) => loc,
            None => self.find(path),
        };
        (loc.line, loc.column)
    }

    /// Whether the file wrote a value at `path` (rather than it coming from a default).
    pub fn contains(&self, path: &str) -> bool {
        self.lookup(path, Want::Value).is_some()
    }

    fn find(&self, path: &str) -> Loc {
        let mut current = path;
        loop {
            if let Some(loc) = self.lookup(current, Want::Value) {
                return loc;
            }
            match parent(current) {
                Some(up) => current = up,
                None => return Loc::START,
            }
        }
    }

    fn lookup(&self, path: &str, want: Want) -> Option<Loc> {
        let root = self.root.as_deref()?;
        Walk {
            path: path.as_bytes(),
            want,
        }
        .node(root, 0)
    }
}

/// One lookup: the path being resolved and which location it wants.
///
/// Each method answers "the last location the converter would record for `path`, among what it
/// records while converting this node at the path `path[..at]`", so later visits are tried first.
struct Walk<'p> {
    path: &'p [u8],
    want: Want,
}

impl Walk<'_> {
    /// `node` converted at `path[..at]`: its own value, then its children.
    fn node(&self, node: &Node, at: usize) -> Option<Loc> {
        let inner = match node {
            Node::Scalar(_) => None,
            Node::Sequence(items, _) => self.sequence(items, at),
            Node::Mapping(entries, loc) => self.mapping(entries, *loc, at),
        };
        inner.or_else(|| {
            // The root's own value is never recorded.
            (self.want == Want::Value && at == self.path.len() && at != 0).then(|| node.loc())
        })
    }

    fn sequence(&self, items: &[Node], at: usize) -> Option<Loc> {
        let (index, end) = self.index_at(at)?;
        let item = items.get(index)?;
        self.node(item, end)
            .or_else(|| (self.want == Want::Key && end == self.path.len()).then(|| item.loc()))
    }

    /// The `[i]` starting at `path[at]`, written as `child_index` writes it, and where it ends.
    fn index_at(&self, at: usize) -> Option<(usize, usize)> {
        let rest = self.path.get(at..)?.strip_prefix(b"[")?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if rest.get(digits) != Some(&b']') || digits == 0 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        let index = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        Some((index, at + digits + 2))
    }

    /// Where the path of the child `key` of the node at `path[..at]` ends, if `path` starts with
    /// it.
    fn key_at(&self, key: &str, at: usize) -> Option<usize> {
        let mut rest = self.path.get(at..)?;
        if at != 0 {
            rest = rest.strip_prefix(b".")?;
        }
        rest.starts_with(key.as_bytes())
            .then(|| at + usize::from(at != 0) + key.len())
    }

    /// A mapping converted at `path[..at]`: its explicit entries, then its merge sources (last
    /// one first), then, when it has merge sources, its own location and its explicit entries'
    /// locations again.
    fn mapping(&self, entries: &[(Node, Node)], loc: Loc, at: usize) -> Option<Loc> {
        let sources = merge_sources(entries);
        if !sources.is_empty() {
            for (key, value) in entries.iter().rev() {
                let Node::Scalar(key) = key else { continue };
                if !entries
                    .iter()
                    .any(|(k, _)| explicit_key(k) == Some(&key.text))
                {
                    continue;
                }
                if self.key_at(&key.text, at) == Some(self.path.len()) {
                    return Some(match self.want {
                        Want::Key => key.loc,
                        Want::Value => value.loc(),
                    });
                }
            }
            if self.want == Want::Value && at == self.path.len() && at != 0 {
                return Some(loc);
            }
            for source in sources {
                if let Some(found) = self.node(source, at) {
                    return Some(found);
                }
            }
        }
        for (key, value) in entries.iter().rev() {
            let Some(text) = explicit_key(key) else {
                continue;
            };
            let Some(end) = self.key_at(text, at) else {
                continue;
            };
            if let Some(found) = self.node(value, end) {
                return Some(found);
            }
            if self.want == Want::Key && end == self.path.len() {
                return Some(key.loc());
            }
        }
        None
    }
}

/// Whether `key` is a YAML merge key `<<`.
pub(crate) fn is_merge_key(key: &Scalar) -> bool {
    key.plain && key.tag.is_none() && key.text == "<<"
}

/// The text of an ordinary (non-merge) scalar key.
fn explicit_key(key: &Node) -> Option<&String> {
    match key {
        Node::Scalar(scalar) if !is_merge_key(scalar) => Some(&scalar.text),
        _ => None,
    }
}

/// The mappings a mapping's `<<` keys merge in, in the order written.
fn merge_sources(entries: &[(Node, Node)]) -> Vec<&Node> {
    let mut sources = Vec::new();
    for (key, value) in entries {
        let Node::Scalar(key) = key else { continue };
        if !is_merge_key(key) {
            continue;
        }
        match value {
            Node::Mapping(..) => sources.push(value),
            Node::Sequence(items, _) if items.iter().all(|i| matches!(i, Node::Mapping(..))) => {
                sources.extend(items.iter());
            }
            _ => {}
        }
    }
    sources
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
mod tests;
