//! A fast reader for the one shape that makes a config large: a block sequence whose items are
//! each one line of flow mapping with simple scalars, as generated route lists are written:
//!
//! ```yaml
//!   - { name: r1, match: { hosts: [a.example.com], path: "/items/{id}" }, upstream: users }
//! ```
//!
//! saphyr-parser reads YAML at some 3 MB/s of instructions per core, character by character,
//! through a token queue: on a 10,000-route file that was nearly half of all the work of a reload.
//! This reader builds the same [`Node`]s, with the same locations, from plain bytes.
//!
//! It is a *subset* reader, never a second YAML implementation: it accepts only lines it fully
//! understands (ASCII, plain scalars of unambiguous characters, quoted scalars without escapes,
//! `key: value` with exactly a colon and a space, no anchors, tags, aliases, comments inside the
//! flow, trailing commas or multi-line items) and answers `None` for anything else, so the caller
//! parses that text with saphyr-parser and every result and error message stays the parser's own.

use super::source_map::Loc;
use super::yaml::{Node, Scalar};

/// Flow collections nested deeper than this are left to the full parser (and its depth limit).
const MAX_DEPTH: usize = 16;

/// Reads `text`, whose first line is line `first_line` of the file, as a block sequence: every
/// line that is not blank or a comment must be `<indent>- {flow mapping}` with the same indent,
/// optionally followed by a comment. `None` when the text is anything else.
pub(crate) fn block_sequence(text: &str, first_line: usize) -> Option<Node> {
    let mut items = Vec::with_capacity(text.len() / 64);
    let mut sequence_loc = None;
    let mut indent = None;
    for (n, line) in text.split('\n').enumerate() {
        let bytes = line.as_bytes();
        if !bytes.iter().all(|&b| (b' '..=b'~').contains(&b)) {
            return None;
        }
        let spaces = bytes.iter().take_while(|&&b| b == b' ').count();
        let rest = &bytes[spaces..];
        if rest.is_empty() || rest[0] == b'#' {
            continue;
        }
        // Items at column 1 are located differently by the parser; not worth a special case.
        if spaces == 0 || *indent.get_or_insert(spaces) != spaces || !rest.starts_with(b"- ") {
            return None;
        }
        let line_number = first_line + n;
        sequence_loc.get_or_insert(Loc {
            line: line_number,
            column: spaces + 1,
        });
        let mut reader = Reader {
            line_text: line,
            bytes,
            at: spaces + 2,
            line: line_number,
            depth: 0,
        };
        reader.spaces();
        if reader.peek() != Some(b'{') {
            return None;
        }
        items.push(reader.mapping()?);
        reader.line_end()?;
    }
    Some(Node::Sequence(items, sequence_loc?))
}

/// One line being read.
struct Reader<'a> {
    /// The line, printable ASCII only, so every byte offset is a char boundary.
    line_text: &'a str,
    bytes: &'a [u8],
    at: usize,
    line: usize,
    depth: usize,
}

/// Characters a plain scalar may start with: nothing YAML gives a meaning to at the start.
fn plain_start(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'/')
}

/// Characters a plain scalar may go on with: none of them is an indicator inside flow
/// collections (`,[]{}:#`) or whitespace.
fn plain_continue(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'/' | b'-' | b'+' | b'=' | b'@')
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn loc(&self, at: usize) -> Loc {
        Loc {
            line: self.line,
            column: at + 1,
        }
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// After the item: nothing, or a comment after at least one space.
    fn line_end(&mut self) -> Option<()> {
        let before = self.at;
        self.spaces();
        match self.peek() {
            None => Some(()),
            Some(b'#') if self.at > before => Some(()),
            Some(_) => None,
        }
    }

    /// `{ key: value, ... }`, at the `{`.
    fn mapping(&mut self) -> Option<Node> {
        let start = self.at;
        self.enter()?;
        // Route mappings have a few keys: one allocation instead of growing 0 → 4 → 8.
        let mut entries = Vec::with_capacity(4);
        self.spaces();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth -= 1;
            return Some(Node::Mapping(entries, self.loc(start)));
        }
        loop {
            let key = self.scalar()?;
            if self.bytes.get(self.at..self.at + 2) != Some(b": ") {
                return None;
            }
            self.at += 2;
            self.spaces();
            let value = self.value()?;
            entries.push((key, value));
            self.spaces();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.spaces();
                    // A trailing comma is valid YAML, but not this reader's business.
                    if self.peek() == Some(b'}') {
                        return None;
                    }
                }
                b'}' => {
                    self.at += 1;
                    self.depth -= 1;
                    return Some(Node::Mapping(entries, self.loc(start)));
                }
                _ => return None,
            }
        }
    }

    /// `[ value, ... ]`, at the `[`.
    fn sequence(&mut self) -> Option<Node> {
        let start = self.at;
        self.enter()?;
        let mut items = Vec::with_capacity(2);
        self.spaces();
        if self.peek() == Some(b']') {
            self.at += 1;
            self.depth -= 1;
            return Some(Node::Sequence(items, self.loc(start)));
        }
        loop {
            items.push(self.value()?);
            self.spaces();
            match self.peek()? {
                b',' => {
                    self.at += 1;
                    self.spaces();
                    if self.peek() == Some(b']') {
                        return None;
                    }
                }
                b']' => {
                    self.at += 1;
                    self.depth -= 1;
                    return Some(Node::Sequence(items, self.loc(start)));
                }
                _ => return None,
            }
        }
    }

    fn enter(&mut self) -> Option<()> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        self.at += 1;
        Some(())
    }

    fn value(&mut self) -> Option<Node> {
        match self.peek()? {
            b'{' => self.mapping(),
            b'[' => self.sequence(),
            _ => self.scalar(),
        }
    }

    /// A plain, 'single' or "double" quoted scalar (quoted ones without escapes).
    fn scalar(&mut self) -> Option<Node> {
        let start = self.at;
        let quote = self.peek()?;
        let (text, plain) = if quote == b'"' || quote == b'\'' {
            let length = self.bytes[start + 1..]
                .iter()
                .position(|&b| b == quote || b == b'\\')?;
            let end = start + 1 + length;
            // A backslash escapes in "…"; in '…' a doubled quote does: both left to the parser.
            if self.bytes[end] != quote || self.bytes.get(end + 1) == Some(&quote) {
                return None;
            }
            self.at = end + 1;
            (start + 1..end, false)
        } else if plain_start(quote) {
            let length = self.bytes[start..]
                .iter()
                .position(|&b| !plain_continue(b))
                .unwrap_or(self.bytes.len() - start);
            self.at = start + length;
            // What ends a plain scalar here must be a separator, never more scalar text.
            if !matches!(self.peek(), None | Some(b' ' | b',' | b'}' | b']' | b':')) {
                return None;
            }
            (start..self.at, true)
        } else {
            return None;
        };
        Some(Node::Scalar(Scalar {
            text: self.line_text.get(text)?.to_owned(),
            plain,
            tag: None,
            loc: self.loc(start),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    /// The fast reader must give exactly what the full parser gives, or nothing.
    fn agrees(lines: &str) {
        let text = format!("version: 1\nroutes:\n{lines}");
        let full = yaml::parse(&text).unwrap().unwrap();
        let Node::Mapping(entries, _) = full else {
            panic!("not a mapping")
        };
        let expected = format!("{:?}", entries[1].1);
        let fast = block_sequence(lines, 3).unwrap_or_else(|| panic!("not read:\n{lines}"));
        assert_eq!(format!("{fast:?}"), expected, "for:\n{lines}");
    }

    fn refused(lines: &str) {
        assert!(block_sequence(lines, 3).is_none(), "read:\n{lines}");
    }

    #[test]
    fn reads_route_lines_exactly_like_the_parser() {
        agrees(
            "  - { name: all, match: { path_prefix: / }, upstream: backend }\n\
             \x20 - { name: r0, match: { hosts: [h0.example.com], path: \"/v1/items0/{id}\" }, upstream: backend }\n",
        );
        agrees(" - {a: 1,b: [x,y , z],c: {}, d: [], 'e': 'q x', f: \"#x: y\"}\n");
        agrees(
            "    - {  name: r-1 ,  x: true }   # trailing comment\n\n    # a comment line\n    - { n: 1.5e3, m: [[a], {b: c}] }\n",
        );
        agrees("  -   { a: b }   \n  - {}\n  - { a: [], b: ..., c: '' }\n");
        agrees("  - { a: x-, b: x-y, c: a+b=c@d, d: _x, e: .5, f: 0x1F }\n");
    }

    /// Random lines from YAML-ish tokens: whatever the fast reader accepts, the parser must
    /// accept too and read the same way.
    #[test]
    fn whatever_it_reads_the_parser_reads_the_same_way() {
        const TOKENS: [&str; 24] = [
            "{", "}", "[", "]", ",", ": ", ":", " ", "a", "b1", "\"q x\"", "'s'", "-", "#", "x.y",
            "/p", "&a", "*a", "!!str", "?", "|", "\"", "'", "{ k: v }",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % 1_000_003).unwrap()
        };
        let mut read = 0;
        for _ in 0..20_000 {
            let mut line = String::from("  - { k: ");
            for _ in 0..next() % 8 {
                line.push_str(TOKENS[next() % TOKENS.len()]);
            }
            if next() % 4 != 0 {
                line.push_str(" }");
            }
            line.push('\n');
            if let Some(fast) = block_sequence(&line, 3) {
                read += 1;
                let text = format!("version: 1\nroutes:\n{line}");
                let full = yaml::parse(&text);
                let Ok(Some(Node::Mapping(entries, _))) = full else {
                    panic!("the parser refuses what the fast reader read: {line:?}: {full:?}")
                };
                assert_eq!(
                    format!("{fast:?}"),
                    format!("{:?}", entries[1].1),
                    "{line:?}"
                );
            }
        }
        assert!(
            read > 100,
            "too few lines were read ({read}) to show anything"
        );
    }

    #[test]
    fn anything_unusual_is_left_to_the_parser() {
        for lines in [
            "  - { a: *alias }\n",
            "  - { a: &anchor x }\n",
            "  - { a: !!str 1 }\n",
            "  - { a: \"esc\\n\" }\n",
            "  - { a: 'it''s' }\n",
            "  - { a: b, }\n",
            "  - [a, b]\n",
            "  - { a: b c }\n",
            "  - { a: ${VAR} }\n",
            "  - { a:b }\n",
            "  - { a : b }\n",
            "  - { a }\n",
            "  - { a: }\n",
            "  - { a: b } x\n",
            "  - { a: b }#x\n",
            "  - { a: [b: c] }\n",
            "  - { a: -1 }\n",
            "  - { a: *.example.com }\n",
            "  - { a: \"ünï\" }\n",
            "  - { a:\tb }\n",
            "  - { a: b }\r\n",
            "  - { a: b,\n      c: d }\n",
            "  - { a: b }\n   - { a: c }\n",
            "  - name: x\n",
            "  - { a: {{{{{{{{{{{{{{{{{{}}}}}}}}}}}}}}}}}}} }\n",
            "- { a: b }\n",
            "# only a comment\n",
            "",
        ] {
            refused(lines);
        }
    }
}
