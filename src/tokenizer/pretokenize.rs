//! The pre-tokenizer: cuts input bytes into pre-tokens, each of which is
//! then BPE-encoded on its own.
//!
//! The rule (part of the file format; see the module documentation of
//! [`crate::tokenizer`]) is, in order:
//!
//! 1. Split the bytes into maximal runs of well-formed UTF-8 and single
//!    bytes that are not part of any well-formed UTF-8 character: scanning
//!    left to right, a byte that does not start a well-formed UTF-8 sequence
//!    (Unicode Table 3-7) is a pre-token of its own. Each valid run is
//!    split by steps 2 and 3 independently (a run's end is an end of text).
//! 2. Every `\p{N}` character is a pre-token of its own and ends the text
//!    around it (the "digits, individually" split).
//! 3. The text between them is split by the GPT-2 pattern, matched
//!    leftmost-first, repeatedly, as a backtracking engine does:
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//!
//! `\p{L}`, `\p{N}` and `\s` (= `\p{White_Space}`) are the Unicode tables of
//! the `regex-syntax` crate (Unicode 16.0 in 0.8.12; `Cargo.lock` pins it).
//! Those three classes are disjoint. The scanner below is a hand-written
//! equivalent of the pattern; the tests hold it against `fancy-regex`.

use std::sync::OnceLock;

/// The class of a character as far as the pattern is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `\s`
    Space,
    /// everything else: `[^\s\p{L}\p{N}]`
    Other,
}

struct ClassTable {
    /// Class of each ASCII character.
    ascii: [Class; 128],
    /// Sorted, disjoint, inclusive code-point ranges of the non-`Other`
    /// classes; a code point in none of them is `Other`.
    ranges: Vec<(u32, u32, Class)>,
}

/// Ranges of a Unicode class expression, read from `regex-syntax`.
fn unicode_class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class as HirClass, HirKind};
    // The patterns are fixed literals; failing to parse them is a bug in
    // this file, not a property of any input.
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .expect("fixed class pattern parses");
    match hir.kind() {
        HirKind::Class(HirClass::Unicode(cls)) => cls
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
        other => panic!("{pattern} did not parse to a Unicode class: {other:?}"),
    }
}

fn class_table() -> &'static ClassTable {
    static TABLE: OnceLock<ClassTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut ranges = Vec::new();
        for (pattern, class) in [
            (r"\p{L}", Class::Letter),
            (r"\p{N}", Class::Number),
            (r"\s", Class::Space),
        ] {
            ranges.extend(
                unicode_class_ranges(pattern)
                    .into_iter()
                    .map(|(a, b)| (a, b, class)),
            );
        }
        ranges.sort_unstable_by_key(|r| r.0);
        for w in ranges.windows(2) {
            // General categories L and N are disjoint, and White_Space
            // characters are Zs/Zl/Zp/Cc; an overlap would make the class of
            // a character ambiguous.
            assert!(w[0].1 < w[1].0, "Unicode classes overlap: {w:?}");
        }
        let mut ascii = [Class::Other; 128];
        for (c, slot) in ascii.iter_mut().enumerate() {
            *slot = lookup(&ranges, c as u32);
        }
        ClassTable { ascii, ranges }
    })
}

fn lookup(ranges: &[(u32, u32, Class)], c: u32) -> Class {
    // Index of the first range starting after `c`; the one before it is the
    // only candidate.
    let i = ranges.partition_point(|r| r.0 <= c);
    match i.checked_sub(1).map(|j| ranges[j]) {
        Some((_, end, class)) if c <= end => class,
        _ => Class::Other,
    }
}

/// The pattern class of `c`.
#[cfg(test)]
pub(crate) fn class_of(c: char) -> Class {
    let t = class_table();
    let u = c as u32;
    if u < 128 {
        t.ascii[u as usize]
    } else {
        lookup(&t.ranges, u)
    }
}

/// Iterator over the pre-tokens of arbitrary bytes, in order; the
/// pre-tokens concatenate to the input.
pub(crate) struct PreTokens<'a> {
    bytes: &'a [u8],
    /// Start of the next pre-token.
    pos: usize,
    /// The well-formed UTF-8 run containing `pos` (from its start), valid
    /// while `pos < run_end`.
    run: &'a str,
    run_start: usize,
    run_end: usize,
    table: &'static ClassTable,
}

impl<'a> PreTokens<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        PreTokens {
            bytes,
            pos: 0,
            run: "",
            run_start: 0,
            run_end: 0,
            table: class_table(),
        }
    }

    #[inline]
    fn class(&self, c: char) -> Class {
        let u = c as u32;
        if u < 128 {
            self.table.ascii[u as usize]
        } else {
            lookup(&self.table.ranges, u)
        }
    }
}

impl<'a> Iterator for PreTokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        if self.pos >= self.run_end {
            let rest = &self.bytes[self.pos..];
            let valid = match std::str::from_utf8(rest) {
                Ok(s) => s,
                Err(e) => {
                    let n = e.valid_up_to();
                    if n == 0 {
                        // No well-formed character starts here: this byte
                        // is a pre-token by itself.
                        self.pos += 1;
                        return Some(&rest[..1]);
                    }
                    // The prefix up to `n` was just validated by from_utf8.
                    std::str::from_utf8(&rest[..n]).unwrap_or_default()
                }
            };
            self.run = valid;
            self.run_start = self.pos;
            self.run_end = self.pos + valid.len();
        }
        let start = self.pos - self.run_start;
        let end = piece_end(self, self.run, start);
        self.pos = self.run_start + end;
        Some(&self.bytes[self.run_start + start..self.pos])
    }
}

/// First character of `s[i..]` and its length in bytes.
#[inline]
fn char_at(s: &str, i: usize) -> Option<(char, usize)> {
    s.get(i..)
        .and_then(|t| t.chars().next())
        .map(|c| (c, c.len_utf8()))
}

/// End of the maximal run of characters of class `class` starting at `i`.
#[inline]
fn run_end(p: &PreTokens<'_>, s: &str, mut i: usize, class: Class) -> usize {
    let b = s.as_bytes();
    while i < b.len() {
        if b[i] < 128 {
            if p.table.ascii[b[i] as usize] != class {
                break;
            }
            i += 1;
        } else {
            match char_at(s, i) {
                Some((c, n)) if p.class(c) == class => i += n,
                _ => break,
            }
        }
    }
    i
}

/// Length of a contraction suffix (`s t re ve m ll d`) at the start of `b`.
#[inline]
fn contraction_len(b: &[u8]) -> Option<usize> {
    match b {
        [b's' | b't' | b'm' | b'd', ..] => Some(1),
        [b'r' | b'v', b'e', ..] | [b'l', b'l', ..] => Some(2),
        _ => None,
    }
}

/// End of the pre-token that starts at byte `i` (< `s.len()`, on a char
/// boundary) of the valid run `s`.
fn piece_end(p: &PreTokens<'_>, s: &str, i: usize) -> usize {
    let Some((c, n)) = char_at(s, i) else {
        return s.len();
    };
    match p.class(c) {
        // Step 2: a number character stands alone.
        Class::Number => i + n,
        Class::Letter => run_end(p, s, i, Class::Letter),
        Class::Other => {
            // `'s|'t|'re|'ve|'m|'ll|'d` come first in the alternation.
            if c == '\'' {
                if let Some(k) = contraction_len(&s.as_bytes()[i + 1..]) {
                    return i + 1 + k;
                }
            }
            run_end(p, s, i, Class::Other)
        }
        Class::Space => {
            // ` ?\p{L}+` and ` ?[^\s\p{L}\p{N}]+` with the optional space.
            // (` ?\p{N}+` cannot take the space: numbers end the text.)
            if c == ' ' {
                if let Some((c2, _)) = char_at(s, i + 1) {
                    match p.class(c2) {
                        Class::Letter => return run_end(p, s, i + 1, Class::Letter),
                        Class::Other => return run_end(p, s, i + 1, Class::Other),
                        Class::Number | Class::Space => {}
                    }
                }
            }
            let j = run_end(p, s, i, Class::Space);
            match char_at(s, j) {
                // `\s+(?!\S)` at the end of the text (a number character
                // or the end of the run ends the text).
                None => j,
                Some((c2, _)) if p.class(c2) == Class::Number => j,
                // Followed by a non-space: `\s+(?!\S)` backtracks by one
                // character if that leaves at least one; else `\s+`.
                Some(_) => {
                    let last = s[..j].chars().next_back().map_or(0, char::len_utf8);
                    if j - last > i {
                        j - last
                    } else {
                        j
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(b: &[u8]) -> Vec<&[u8]> {
        PreTokens::new(b).collect()
    }

    fn split_str(s: &str) -> Vec<&str> {
        PreTokens::new(s.as_bytes())
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect()
    }

    #[test]
    fn classes() {
        assert_eq!(class_of('a'), Class::Letter);
        assert_eq!(class_of('中'), Class::Letter);
        assert_eq!(class_of('ǅ'), Class::Letter); // Lt
        assert_eq!(class_of('7'), Class::Number);
        assert_eq!(class_of('½'), Class::Number); // No
        assert_eq!(class_of('Ⅻ'), Class::Number); // Nl
        assert_eq!(class_of('٣'), Class::Number); // Nd
        assert_eq!(class_of('\u{0b}'), Class::Space);
        assert_eq!(class_of('\u{85}'), Class::Space);
        assert_eq!(class_of('\u{a0}'), Class::Space);
        assert_eq!(class_of('\u{3000}'), Class::Space);
        assert_eq!(class_of('\u{200b}'), Class::Other); // Cf, not White_Space
        assert_eq!(class_of('\u{1c}'), Class::Other);
        assert_eq!(class_of('\u{301}'), Class::Other); // combining mark
        assert_eq!(class_of('\''), Class::Other);
        assert_eq!(class_of('😀'), Class::Other);
    }

    #[test]
    fn examples() {
        assert_eq!(split_str(""), Vec::<&str>::new());
        assert_eq!(
            split_str("Hello  world's 123 x\n\n y"),
            ["Hello", " ", " world", "'s", " ", "1", "2", "3", " x", "\n\n", " y"]
        );
        assert_eq!(split_str("a  \t1"), ["a", "  \t", "1"]);
        assert_eq!(split_str("  \na"), ["  ", "\n", "a"]);
        assert_eq!(split_str(" 'steve IT'S"), [" '", "steve", " IT", "'", "S"]);
        assert_eq!(split_str("?'s x"), ["?'", "s", " x"]);
        assert_eq!(split_str("   "), ["   "]);
        assert_eq!(split_str("a\r\nb"), ["a", "\r", "\n", "b"]);
        assert_eq!(split_str("x '"), ["x", " '"]);
    }

    #[test]
    fn invalid_bytes_stand_alone() {
        // E2 82 is an incomplete 3-byte sequence, FF never occurs, 80 is a
        // stray continuation byte; "ab" runs are split on their own.
        let input = b"ab\xe2\x82cd\xff\x80 e\xf0\x9f\x98\x80";
        assert_eq!(
            split(input),
            [
                &b"ab"[..],
                b"\xe2",
                b"\x82",
                b"cd",
                b"\xff",
                b"\x80",
                b" e",
                "😀".as_bytes()
            ]
        );
        // A run boundary ends the text for the lookahead: the two spaces
        // before the invalid byte form one pre-token.
        assert_eq!(split(b"a  \xffb"), [&b"a"[..], b"  ", b"\xff", b"b"]);
    }
}
