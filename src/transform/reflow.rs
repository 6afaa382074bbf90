//! The reflow transform (FORMAT.md section 8.3): paragraphs wrapped to a
//! fixed width become one line each before tokenizing.
//!
//! Text wrapped at `width` columns (books, mail, licenses) ends its lines where
//! a greedy wrap had to, which the model cannot see: the LF costs it about
//! 1.5 bits where a space would cost nothing, and the word after it more
//! than its usual price (about 2.3 bits per joined line on alice29.txt).
//! At every *break position*, where a greedy wrap at `width` would break
//! the original line, the transform swaps space and LF. The rule reads
//! only the original's line starts and which bytes are separators (the same
//! on both sides), so the same swap, run left to right while tracking the
//! restored bytes, is its own inverse, and every byte string round-trips.

/// Widest `width` a block may record.
pub const MAX_WIDTH: u32 = 4096;

/// Narrowest width the compressor tries: below it, lists of short lines
/// (one word a line) would be joined, which is not wrapped prose.
const MIN_CHOSEN_WIDTH: usize = 32;

/// Fewest joined LFs for which the compressor applies the transform.
const MIN_JOINS: u64 = 16;

fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\n'
}

/// The word after the separator at `p`: bytes up to the next separator.
fn word_after(t: &[u8], p: usize) -> usize {
    t[p + 1..]
        .iter()
        .position(|&b| is_sep(b))
        .unwrap_or(t.len() - p - 1)
}

/// Whether `p` may be a break position for some width: a separator
/// between two non-separators (the same test on either side).
fn between_words(t: &[u8], p: usize) -> bool {
    p > 0 && p + 1 < t.len() && is_sep(t[p]) && !is_sep(t[p - 1]) && !is_sep(t[p + 1])
}

/// The swap at every break position of `width`. `src_is_original` says
/// which side holds the original, whose line starts the rule reads: the
/// source (compressing) or the output (restoring).
fn swap(src: &[u8], width: u32, src_is_original: bool) -> Vec<u8> {
    let width = width as usize;
    let mut out = src.to_vec();
    // Index after the original's last LF so far.
    let mut start = 0usize;
    for p in 0..src.len() {
        if between_words(src, p) {
            let line = p - start;
            if line <= width && width < line + 1 + word_after(src, p) {
                out[p] = if src[p] == b'\n' { b' ' } else { b'\n' };
            }
        }
        let original = if src_is_original { src[p] } else { out[p] };
        if original == b'\n' {
            start = p + 1;
        }
    }
    out
}

/// The text the model sees for `original` wrapped at `width`.
pub fn reflow(original: &[u8], width: u32) -> Vec<u8> {
    swap(original, width, true)
}

/// The original of a [`reflow`] text (any bytes and width are valid).
pub fn unreflow(text: &[u8], width: u32) -> Vec<u8> {
    swap(text, width, false)
}

/// The width to reflow `text` at, if it looks wrapped (the compressor's
/// policy, not the format): the width whose break positions hold the most
/// LFs less four times the spaces, applied when those are at least 16 LFs,
/// at least three quarters of the LFs between two words and at least 8
/// times the spaces (GPL-3's text, three fifths of whose breaks a greedy
/// wrap predicts, lost 1.1% to the reflow at half). One pass: a separator
/// `L` bytes into its line with a `w`-byte word after it is a break
/// position for the widths `L..=L + w`, added to difference arrays over
/// the widths. Text whose lines still end in CRLF (the CRLF transform did
/// not apply) is left alone: its joined lines would end in a stray CR.
pub fn choose_width(text: &[u8]) -> Option<u32> {
    if text.windows(2).any(|w| w == b"\r\n") {
        return None;
    }
    let top = MAX_WIDTH as usize;
    // joins[w] / splits[w]: LFs / spaces at break positions of width w,
    // as differences (summed below).
    let mut joins = vec![0i64; top + 2];
    let mut splits = vec![0i64; top + 2];
    let mut lfs_between = 0u64;
    let mut start = 0usize;
    for p in 0..text.len() {
        if between_words(text, p) {
            let line = p - start;
            if text[p] == b'\n' {
                lfs_between += 1;
            }
            if line <= top {
                let hi = (line + word_after(text, p)).min(top);
                let d = if text[p] == b'\n' {
                    &mut joins
                } else {
                    &mut splits
                };
                d[line] += 1;
                d[hi + 1] -= 1;
            }
        }
        if text[p] == b'\n' {
            start = p + 1;
        }
    }
    let (mut j, mut s) = (0i64, 0i64);
    let mut best: Option<(i64, usize, i64, i64)> = None;
    for w in 0..=top {
        j += joins[w];
        s += splits[w];
        let score = j - 4 * s;
        if w >= MIN_CHOSEN_WIDTH && best.is_none_or(|b| score > b.0) {
            best = Some((score, w, j, s));
        }
    }
    let (_, w, j, s) = best?;
    let (j, s) = (j as u64, s as u64);
    (j >= MIN_JOINS && 4 * j >= 3 * lfs_between && j >= 8 * s).then_some(w as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{wrap as wrap_eol, Rng};

    fn wrap(words: &[&str], width: usize) -> String {
        wrap_eol(words, width, "\n")
    }

    fn prose(rng: &mut Rng, n: usize) -> Vec<&'static str> {
        const WORDS: [&str; 12] = [
            "the",
            "Rabbit",
            "said",
            "to",
            "Alice,",
            "`Oh",
            "dear!'",
            "and",
            "looked",
            "at",
            "its",
            "waistcoat-pocket,",
        ];
        (0..n)
            .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
            .collect()
    }

    #[test]
    fn wrapped_paragraphs_become_lines() {
        let mut rng = Rng(7);
        let mut text = String::new();
        for _ in 0..40 {
            text += &wrap(&prose(&mut rng, 60), 50);
            text += "\n\n";
        }
        let width = choose_width(text.as_bytes()).expect("wrapped text is chosen");
        assert_eq!(width, 50);
        let flat = reflow(text.as_bytes(), width);
        // Every paragraph is one line: only the blank lines keep LFs.
        let lfs = flat.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lfs, 80);
        assert_eq!(flat.len(), text.len());
        assert_eq!(unreflow(&flat, width), text.as_bytes());
    }

    #[test]
    fn partly_wrapped_text_is_left_alone() {
        // Wrapped paragraphs between stanzas of short lines: about half of
        // the LFs between two words are where a wrap at 50 breaks.
        let mut rng = Rng(5);
        let mut text = String::new();
        for _ in 0..20 {
            text += &wrap(&prose(&mut rng, 50), 50);
            text += "\n\n";
            for _ in 0..6 {
                text += &prose(&mut rng, 3).join(" ");
                text += "\n";
            }
            text += "\n";
        }
        assert_eq!(choose_width(text.as_bytes()), None);
    }

    #[test]
    fn a_space_at_a_break_position_round_trips_as_an_lf() {
        // "aaaa bbbb" at width 6: the space is where a wrap would break.
        let t = b"aaaa bbbb\ncc dd";
        let flat = reflow(t, 6);
        assert_eq!(&flat, b"aaaa\nbbbb\ncc dd");
        assert_eq!(unreflow(&flat, 6), t);
    }

    #[test]
    fn any_bytes_and_width_round_trip() {
        let mut rng = Rng(11);
        // Bytes drawn mostly from separators and a few letters, so that
        // break positions are dense; every width from 1 to 12 and a wide one.
        for _ in 0..2000 {
            let n = rng.below(40) as usize;
            let t: Vec<u8> = (0..n)
                .map(|_| b" \n\nab\rc\x00\xff"[rng.below(9) as usize])
                .collect();
            for width in (1..=12).chain([MAX_WIDTH]) {
                let flat = reflow(&t, width);
                assert_eq!(flat.len(), t.len());
                assert_eq!(unreflow(&flat, width), t, "{t:?} at {width}");
            }
        }
    }

    #[test]
    fn code_logs_and_lists_are_left_alone() {
        let mut code = String::new();
        for i in 0..200 {
            code += &format!("fn f{i}(x: u32) -> u32 {{\n    x + {i}\n}}\n");
        }
        assert_eq!(choose_width(code.as_bytes()), None);
        // Log lines of varied length: the LFs between them are break
        // positions of no single width for most of them.
        let mut log = String::new();
        let mut rng = Rng(3);
        for i in 0..300 {
            let pad = "x".repeat(rng.below(60) as usize);
            log += &format!(
                "2024-05-{:02} 10:00:{:02} status installed pkg{pad}:amd64 1.{i}\n",
                i % 28 + 1,
                i % 60
            );
        }
        assert_eq!(choose_width(log.as_bytes()), None);
        let list: String = (0..500).map(|i| format!("word{i}\n")).collect();
        assert_eq!(choose_width(list.as_bytes()), None);
        assert_eq!(choose_width(b""), None);
    }
}
