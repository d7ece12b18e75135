//! YAML text → a small located tree, from saphyr-parser events.
//!
//! We keep our own tree instead of a YAML value type so every node carries the line and column it
//! came from, mapping keys keep their order and their own location, and scalars keep their style
//! (a quoted scalar is always a string; a plain one is typed after `${VAR}` substitution).
//! Aliases are expanded here by cloning the anchored node, with a cap on the total size so a
//! "billion laughs" document is an error rather than an out-of-memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::source_map::Loc;

/// Nesting deeper than this is refused: no real config needs it and deep recursion could overflow.
const MAX_DEPTH: usize = 64;
/// Total nodes, aliases expanded, that one document may have.
pub(crate) const MAX_NODES: usize = 1_000_000;

/// One scalar as written.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    /// The scalar's text, escapes already decoded.
    pub(crate) text: String,
    /// Plain (unquoted, not a block scalar): only these are typed as null/bool/number.
    pub(crate) plain: bool,
    /// Explicit tag such as `!!str`, written in short form.
    pub(crate) tag: Option<String>,
    /// Where the scalar starts.
    pub(crate) loc: Loc,
}

/// A located YAML node.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence and where it starts.
    Sequence(Vec<Node>, Loc),
    /// A mapping, in source order, and where it starts.
    Mapping(Vec<(Node, Node)>, Loc),
}

impl Node {
    /// Where the node starts.
    pub(crate) fn loc(&self) -> Loc {
        match self {
            Self::Scalar(scalar) => scalar.loc,
            Self::Sequence(_, loc) | Self::Mapping(_, loc) => *loc,
        }
    }

    /// How many nodes this subtree holds (for the alias expansion cap).
    pub(crate) fn size(&self) -> usize {
        match self {
            Self::Scalar(_) => 1,
            Self::Sequence(items, _) => 1 + items.iter().map(Self::size).sum::<usize>(),
            Self::Mapping(entries, _) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }
}

/// A problem found while reading the YAML itself, before any key path exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Where it is.
    pub(crate) loc: Loc,
    /// What it is.
    pub(crate) message: String,
}

/// A collection being built, with the anchor it will be registered under.
enum Frame {
    Sequence {
        items: Vec<Node>,
        loc: Loc,
        anchor: usize,
    },
    Mapping {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        loc: Loc,
        anchor: usize,
    },
}

fn loc_of(span: &Span) -> Loc {
    Loc {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// Parses the first (and only) document of `text`; `Ok(None)` when the stream has no document.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut builder = Builder::default();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|error| SyntaxError {
            loc: Loc {
                line: error.marker().line(),
                column: error.marker().col() + 1,
            },
            message: format!("YAML syntax error: {}", error.info()),
        })?;
        if builder.event(event, &span)? {
            break;
        }
    }
    Ok(builder.root)
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
}

impl Builder {
    /// Handles one event; `true` once the stream has ended.
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<bool, SyntaxError> {
        let loc = loc_of(span);
        match event {
            Event::StreamEnd => return Ok(true),
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(SyntaxError {
                        loc,
                        message: "only one YAML document is allowed in a config file".to_owned(),
                    });
                }
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id) else {
                    return Err(SyntaxError {
                        loc,
                        message: "unknown YAML alias".to_owned(),
                    });
                };
                let node = node.clone();
                self.count(node.size(), loc)?;
                self.complete(node, 0, loc)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, loc)?;
                let scalar = Scalar {
                    text: text.into_owned(),
                    plain: style == ScalarStyle::Plain,
                    tag: tag.map(|tag| {
                        if tag.is_yaml_core_schema() {
                            format!("!!{}", tag.suffix)
                        } else {
                            tag.to_string()
                        }
                    }),
                    loc,
                };
                self.complete(Node::Scalar(scalar), anchor, loc)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1, loc)?;
                self.push(
                    Frame::Sequence {
                        items: Vec::new(),
                        loc,
                        anchor,
                    },
                    loc,
                )?;
            }
            Event::MappingStart(anchor, _) => {
                self.count(1, loc)?;
                self.push(
                    Frame::Mapping {
                        entries: Vec::new(),
                        key: None,
                        loc,
                        anchor,
                    },
                    loc,
                )?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Sequence { items, loc, anchor }) => {
                        (Node::Sequence(items, loc), anchor)
                    }
                    Some(Frame::Mapping {
                        entries,
                        loc,
                        anchor,
                        ..
                    }) => (Node::Mapping(entries, loc), anchor),
                    None => {
                        return Err(SyntaxError {
                            loc,
                            message: "YAML syntax error: unbalanced collection end".to_owned(),
                        });
                    }
                };
                self.complete(node, anchor, loc)?;
            }
        }
        Ok(false)
    }

    fn count(&mut self, nodes: usize, loc: Loc) -> Result<(), SyntaxError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            return Err(SyntaxError {
                loc,
                message: format!("the document has more than {MAX_NODES} nodes (aliases expanded)"),
            });
        }
        Ok(())
    }

    fn push(&mut self, frame: Frame, loc: Loc) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                loc,
                message: format!("nesting deeper than {MAX_DEPTH} levels is not allowed"),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Places a finished node into its parent (or as the root) and registers its anchor.
    fn complete(&mut self, node: Node, anchor: usize, loc: Loc) -> Result<(), SyntaxError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_some() {
                    return Err(SyntaxError {
                        loc,
                        message: "only one YAML document is allowed in a config file".to_owned(),
                    });
                }
                self.root = Some(node);
            }
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn nodes_carry_locations() {
        let node = parse_ok("a: 1\nb:\n  - x\n  - 'y'\n");
        let Node::Mapping(entries, _) = node else {
            panic!("not a mapping")
        };
        assert_eq!(entries[1].0.loc(), Loc { line: 2, column: 1 });
        let Node::Sequence(items, _) = &entries[1].1 else {
            panic!("not a sequence")
        };
        assert_eq!(items[1].loc(), Loc { line: 4, column: 5 });
        let Node::Scalar(y) = &items[1] else {
            panic!("not a scalar")
        };
        assert!(!y.plain);
        assert_eq!(y.text, "y");
    }

    #[test]
    fn aliases_clone_the_anchored_node() {
        let node = parse_ok("a: &t { x: 1 }\nb: *t\n");
        let Node::Mapping(entries, _) = node else {
            panic!("not a mapping")
        };
        assert!(matches!(&entries[1].1, Node::Mapping(inner, _) if inner.len() == 1));
    }

    #[test]
    fn syntax_error_is_located() {
        let error = parse("a: 1\nb: [x, y\nc: 2\n").unwrap_err();
        assert!(error.message.starts_with("YAML syntax error"), "{error:?}");
        assert!(error.loc.line >= 2, "{error:?}");
    }

    #[test]
    fn second_document_is_refused() {
        let error = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(error.loc.line, 2);
        assert!(error.message.contains("only one YAML document"));
    }

    #[test]
    fn hostile_documents_are_errors_not_crashes() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_err());
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..10 {
            laughs.push_str(&format!(
                "b{i}: &b{i} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
                p = if i == 0 {
                    "a".to_owned()
                } else {
                    format!("b{}", i - 1)
                }
            ));
        }
        assert!(parse(&laughs).is_err());
        assert!(parse("").unwrap().is_none());
    }
}
