//! Parsing a large config on two threads.
//!
//! A 10,000-route file is about 1 MB of YAML, and the YAML parser reads it at some 40 MB/s: the
//! largest single cost of a reload. Nearly all of such a file is one top-level block sequence
//! (`routes:`), whose items are independent of each other. So the items are cut in two at an item
//! boundary, each half is parsed on its own thread as a document of its own, the rest of the file
//! is parsed with that section left empty, and the halves are put back in place.
//!
//! The cut only has to be *safe*, never clever: line numbers are kept by padding each piece with
//! the newlines that came before it, and whenever anything is not exactly as expected (a piece that
//! fails to parse, an alias to an anchor in the other half, a section that is not a top-level key
//! of a block mapping) the whole file is parsed again on one thread, so results and error messages
//! are always those of [`yaml::parse`].

use super::source_map::Loc;
use super::yaml::{self, Node, SyntaxError};
use super::yaml_fast;

/// Below this many lines a file is parsed on one thread: splitting would not pay for itself.
const MIN_LINES: usize = 2_000;

/// Parses `text` like [`yaml::parse`], on two threads when that is worth it and safe.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    parse_with(text, MIN_LINES)
}

fn parse_with(text: &str, min_lines: usize) -> Result<Option<Node>, SyntaxError> {
    match Section::find(text, min_lines).and_then(|section| section.parse(text)) {
        Some(root) => Ok(Some(root)),
        None => yaml::parse(text),
    }
}

/// A top-level `key:` whose value is a long block sequence, and where its items are.
#[derive(Debug)]
struct Section<'a> {
    /// The key as written at column 1.
    key: &'a str,
    /// 1-based line of the key.
    key_line: usize,
    /// Byte range of the items (from the first item's line to the end of the section).
    items: std::ops::Range<usize>,
    /// Byte offset of the item line where the second half starts.
    cut: usize,
}

/// One line of the text: its byte range without the newline.
struct Line<'a> {
    start: usize,
    text: &'a str,
}

fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    let mut start = 0;
    text.split_inclusive('\n').map(move |raw| {
        let line = Line {
            start,
            text: raw.trim_end_matches(['\n', '\r']),
        };
        start += raw.len();
        line
    })
}

/// Blank or comment-only: such lines never end a section.
fn is_insignificant(line: &str) -> bool {
    let trimmed = line.trim_start_matches(' ');
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// `name: rest` at column 1: a key of a top-level block mapping, and what follows its colon.
/// Names start with a letter or `_`, so flow collections, anchors, tags, aliases, directives and
/// document markers never match.
fn top_level_entry(line: &str) -> Option<(&str, &str)> {
    let first = line.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let (key, rest) = line.split_once(':')?;
    let plain_key = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let separated = rest.is_empty() || rest.starts_with(' ');
    (plain_key && separated).then_some((key, rest.trim_start_matches(' ')))
}

/// A top-level key whose value starts on the next line (nothing but a comment after the colon).
fn top_level_key(line: &str) -> Option<&str> {
    let (key, rest) = top_level_entry(line)?;
    (rest.is_empty() || rest.starts_with('#')).then_some(key)
}

/// The indentation of a block sequence item line (`- x` or a bare `-`), if it is one.
fn item_indent(line: &str) -> Option<usize> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let rest = &line[indent..];
    (rest == "-" || rest.starts_with("- ")).then_some(indent)
}

impl<'a> Section<'a> {
    /// The longest top-level block sequence of a file that starts as a block mapping, if the
    /// file is long enough to be worth splitting.
    fn find(text: &'a str, min_lines: usize) -> Option<Self> {
        let all: Vec<Line<'a>> = lines(text).collect();
        if all.len() < min_lines {
            return None;
        }
        // The document must be a block mapping from its first significant line.
        let first = all.iter().find(|l| !is_insignificant(l.text))?;
        top_level_entry(first.text)?;
        let mut best: Option<(usize, Self)> = None;
        let mut i = 0;
        while i < all.len() {
            let Some(key) = top_level_key(all[i].text) else {
                i += 1;
                continue;
            };
            let key_line = i + 1;
            let mut j = i + 1;
            while j < all.len() && is_insignificant(all[j].text) {
                j += 1;
            }
            // An indentless sequence (items at column 1) is left alone: the parser locates it
            // differently as a root than as a value, so it could not be put back exactly.
            let Some(indent) = all
                .get(j)
                .and_then(|l| item_indent(l.text))
                .filter(|&indent| indent > 0)
            else {
                i = j.max(i + 1);
                continue;
            };
            let first_item = j;
            let mut starts = Vec::new();
            let mut end = all.len();
            while j < all.len() {
                let line = all[j].text;
                if !is_insignificant(line) {
                    let line_indent = line.len() - line.trim_start_matches(' ').len();
                    if item_indent(line) == Some(indent) {
                        starts.push(j);
                    } else if line_indent <= indent {
                        end = j;
                        break;
                    }
                }
                j += 1;
            }
            // Only a section that ends the file or is followed by another top-level key: any
            // other ending is unusual enough to leave to the one-thread parse.
            if end < all.len() && top_level_entry(all[end].text).is_none() {
                return None;
            }
            let items_start = all[first_item].start;
            let items_end = all.get(end).map_or(text.len(), |l| l.start);
            let half = items_start + (items_end - items_start) / 2;
            let cut = starts
                .iter()
                .skip(1)
                .map(|&s| all[s].start)
                .min_by_key(|&start| start.abs_diff(half));
            if let Some(cut) = cut {
                let lines = end - first_item;
                if best.as_ref().is_none_or(|(n, _)| lines > *n) {
                    best = Some((
                        lines,
                        Section {
                            key,
                            key_line,
                            items: items_start..items_end,
                            cut,
                        },
                    ));
                }
            }
            i = end;
        }
        best.map(|(_, section)| section)
    }

    /// Parses the three pieces (two on this thread, one on another) and puts them together;
    /// `None` when anything is not as expected.
    fn parse(&self, text: &str) -> Option<Node> {
        let newlines = |range: std::ops::Range<usize>| text[range].matches('\n').count();
        let padded = |range: std::ops::Range<usize>| {
            let mut piece = "\n".repeat(newlines(0..range.start));
            piece.push_str(&text[range]);
            piece
        };
        let mut rest = String::with_capacity(text.len() - self.items.len() + 64 * 1024);
        rest.push_str(&text[..self.items.start]);
        rest.push_str(&"\n".repeat(newlines(self.items.clone())));
        rest.push_str(&text[self.items.end..]);
        // Each half: the fast reader when the items are all one-line flow mappings, else the parser.
        let piece = |range: std::ops::Range<usize>| {
            let first_line = newlines(0..range.start) + 1;
            match yaml_fast::block_sequence(&text[range.clone()], first_line) {
                Some(items) => Ok(Some(items)),
                None => yaml::parse(&padded(range)),
            }
        };
        let (rest, first, second) = std::thread::scope(|scope| {
            let second = scope.spawn(|| piece(self.cut..self.items.end));
            let rest = yaml::parse(&rest);
            let first = piece(self.items.start..self.cut);
            (rest, first, second.join())
        });
        let (Ok(Some(mut root)), Ok(Some(first)), Ok(Ok(Some(second)))) = (rest, first, second)
        else {
            return None;
        };
        // The one-thread parse caps the whole document; the pieces were capped one by one.
        if root.size() + first.size() + second.size() > yaml::MAX_NODES {
            return None;
        }
        let (Node::Sequence(mut items, loc), Node::Sequence(more, _)) = (first, second) else {
            return None;
        };
        items.extend(more);
        self.put_back(&mut root, Node::Sequence(items, loc))
            .then_some(root)
    }

    /// Replaces the (empty) value of the section's key in `root` with `items`.
    fn put_back(&self, root: &mut Node, items: Node) -> bool {
        let Node::Mapping(entries, _) = root else {
            return false;
        };
        let key_loc = Loc {
            line: self.key_line,
            column: 1,
        };
        let Some((_, value)) = entries.iter_mut().find(|(key, _)| {
            matches!(key, Node::Scalar(k) if k.text == self.key && k.plain && k.loc == key_loc)
        }) else {
            return false;
        };
        if !matches!(value, Node::Scalar(v) if v.plain && v.text.is_empty() && v.tag.is_none()) {
            return false;
        }
        *value = items;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config-shaped file with `n` routes in assorted YAML styles.
    fn config(n: usize) -> String {
        let mut text =
            String::from("# a comment\nversion: 1\nlisteners:\n  - { name: a }\nroutes:\n");
        for i in 0..n {
            match i % 4 {
                0 => text.push_str(&format!("  - {{ name: r{i}, match: {{ path: \"/p{i}/{{id}}\" }} }}\n")),
                1 => text.push_str(&format!(
                    "  # route {i}\n  - name: r{i}\n    match:\n      path_prefix: /q{i}/\n    note: |\n      - not an item\n      line two\n\n"
                )),
                2 => text.push_str(&format!("  -\n    name: 'r{i}'\n    tags: [a,\n      b]\n")),
                _ => text.push_str(&format!("  - name: r{i}  # trailing\n    anchors: &x{i} {{ k: v }}\n    again: *x{i}\n")),
            }
        }
        text.push_str("upstreams:\n  u: { targets: [] }\n");
        text
    }

    fn same_as_one_thread(text: &str) {
        let one = format!("{:?}", yaml::parse(text));
        let two = format!("{:?}", parse_with(text, 10));
        assert!(one == two, "the parses differ for:\n{text}");
    }

    #[test]
    fn a_split_parse_equals_the_one_thread_parse() {
        let text = config(400);
        let section = Section::find(&text, 10).unwrap();
        assert_eq!(section.key, "routes");
        assert!(section.parse(&text).is_some(), "the split itself succeeds");
        same_as_one_thread(&text);
    }

    #[test]
    fn one_line_flow_items_are_read_by_the_fast_reader_with_the_same_result() {
        let mut text = String::from("version: 1\nroutes:\n");
        for i in 0..400 {
            text.push_str(&format!(
                "  - {{ name: r{i}, match: {{ hosts: [h{}.example.com], path: \"/v1/items{i}/{{id}}\" }}, upstream: backend }}\n",
                i % 7
            ));
        }
        text.push_str("upstreams:\n  backend: { targets: [] }\n");
        let section = Section::find(&text, 10).unwrap();
        let items = &text[section.items.clone()];
        assert!(yaml_fast::block_sequence(items, 3).is_some());
        same_as_one_thread(&text);
    }

    #[test]
    fn an_alias_across_the_cut_falls_back_to_the_one_thread_parse() {
        let mut text = String::from("version: 1\nroutes:\n  - &first { name: a }\n");
        for i in 0..300 {
            text.push_str(&format!("  - {{ name: r{i} }}\n"));
        }
        text.push_str("  - *first\n");
        assert!(Section::find(&text, 10).unwrap().parse(&text).is_none());
        same_as_one_thread(&text);
    }

    #[test]
    fn errors_are_those_of_the_one_thread_parse() {
        let mut text = config(300);
        text.push_str("routes2:\n  - [unclosed\n");
        same_as_one_thread(&text);
        let broken = config(300).replacen("  - name: r101\n", "  - name: \"r101\n", 1);
        same_as_one_thread(&broken);
        let bad_end = config(300).replace("upstreams:", "  upstreams:");
        same_as_one_thread(&bad_end);
    }

    #[test]
    fn unusual_shapes_are_not_split() {
        let flow = format!("{{\nroutes:\n{}}}\n", "- a\n".repeat(50));
        assert!(Section::find(&flow, 10).is_none());
        same_as_one_thread(&flow);
        let top_sequence = "- a\n".repeat(50);
        assert!(Section::find(&top_sequence, 10).is_none());
        let nested = format!("x: {{\nroutes:\n{}}}\n", "- a\n".repeat(50));
        same_as_one_thread(&nested);
        let zero_indent = format!(
            "version: 1\nroutes:\n{}other: 1\n",
            "- { name: a }\n".repeat(50)
        );
        assert!(Section::find(&zero_indent, 10).is_none());
        same_as_one_thread(&zero_indent);
        let short = config(3);
        assert!(Section::find(&short, MIN_LINES).is_none());
    }
}
