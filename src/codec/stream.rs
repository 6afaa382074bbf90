//! Streams and windows (FORMAT.md section 8.4): how a block's tokens are
//! split into streams, and how each stream is fed to the model through
//! windows that carry context forward.
//!
//! A stream is a run of consecutive tokens coded by one range coder. Its
//! token 0 is coded uniformly (or from a primer: the block's first tokens,
//! fed as context); every later token from the logits of a model state
//! holding at most `window` tokens. A state fills up, so a stream is
//! covered by windows: each later one either starts from an empty state fed
//! `carry` tokens of context that were already coded (their logits are not
//! used), or slides the previous state, keeping `sinks` first tokens and
//! the last `carry`; then it codes the tokens after them until the state
//! holds `window` tokens. The compressor runs a stream's windows in order;
//! the decoder does too, one token of every stream per forward pass.

use std::borrow::Cow;
use std::ops::Range;

use crate::lm::LanguageModel;

/// One model state's work in a stream of `n` tokens: feed `t[start..end]`
/// to an empty state; the logits after `t[i]` code `t[i + 1]` for
/// `i >= first - 1`, so tokens `first..=end` are coded; the rows for
/// `start..first - 1` are context only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First token fed.
    pub start: usize,
    /// First token coded (`start < first <= end`).
    pub first: usize,
    /// One past the last token fed; also the last token coded.
    pub end: usize,
    /// Whether the window continues the previous window's state, slid
    /// ([`crate::lm::LanguageModel::slide_state`]), instead of starting
    /// from an empty one (then `start + 1 == first`).
    pub slide: bool,
}

impl Window {
    /// Tokens fed.
    pub fn fed(&self) -> Range<usize> {
        self.start..self.end
    }

    /// Tokens coded.
    pub fn coded(&self) -> Range<usize> {
        self.first..self.end + 1
    }

    /// Context rows before the first coded row.
    pub fn silent(&self) -> usize {
        self.first - 1 - self.start
    }

    /// Readies the stream's `state` for this window: slides it (keeping
    /// `sinks` and `carry` tokens) if the window continues the previous
    /// one, else empties it.
    pub fn enter<M: LanguageModel>(
        &self,
        model: &M,
        state: &mut M::State,
        carry: usize,
        sinks: usize,
    ) {
        if self.slide {
            model.slide_state(state, sinks, carry);
        } else {
            model.reset_state(state);
        }
    }
}

/// The windows of a stream of `n` tokens whose first `lead` tokens are
/// context only (a primer, `lead < window`): the first window starts at
/// token 0 and codes from token `max(lead, 1)`; each feeds at most `window`
/// tokens. With `sinks == 0`
/// each later one starts from an empty state `carry` tokens before the
/// first token it codes. With `sinks >= 1` each later one slides the
/// previous state (keeping its first `sinks` and last `carry` tokens) and
/// feeds `window - sinks - carry` new tokens.
/// Requires `1 <= carry < window` and `sinks + carry < window`.
pub fn windows(
    n: usize,
    lead: usize,
    window: usize,
    carry: usize,
    sinks: usize,
) -> impl Iterator<Item = Window> {
    debug_assert!(carry >= 1 && carry + sinks < window && lead < window);
    let mut first = lead.max(1);
    let first0 = first;
    let mut start = 0usize;
    std::iter::from_fn(move || {
        if first >= n {
            return None;
        }
        let slide = sinks > 0 && first > first0;
        let fed = if slide {
            window - sinks - carry
        } else {
            window
        };
        let end = (start + fed).min(n - 1);
        let w = Window {
            start,
            first,
            end,
            slide,
        };
        first = end + 1;
        start = if sinks > 0 { end } else { first - carry };
        Some(w)
    })
}

/// How many tokens of a block's stream 0 prime its later streams
/// (FORMAT.md 8.4): `primer` tokens, at most stream 0's length; none for a
/// block of one stream.
pub fn primer_len(primer: usize, stream_lens: &[usize]) -> usize {
    match stream_lens {
        [first, _, ..] => primer.min(*first),
        _ => 0,
    }
}

/// The tokens the model is fed for the stream at `start..start + len` of
/// a block's `tokens`, and how many of them lead (context only): the
/// block's first `primer` tokens then the stream's own, for every stream
/// but the first (`start > 0`).
pub fn primed(tokens: &[u32], start: usize, len: usize, primer: usize) -> (Cow<'_, [u32]>, usize) {
    let own = &tokens[start..start + len];
    if start == 0 || primer == 0 {
        (Cow::Borrowed(own), 0)
    } else {
        (Cow::Owned([&tokens[..primer], own].concat()), primer)
    }
}

/// Splits `n` tokens into at most `max_streams` streams of at least
/// `min_tokens` tokens each (one stream if `n < 2 * min_tokens`), as equal
/// as possible, longer ones first. Returns the stream lengths.
pub fn split_streams(n: usize, max_streams: usize, min_tokens: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let s = (n / min_tokens.max(1)).clamp(1, max_streams.max(1));
    let (q, r) = (n / s, n % s);
    (0..s).map(|i| q + usize::from(i < r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_token_once() {
        for n in 0..60 {
            for window in 2..9 {
                for carry in 1..window {
                    let ws: Vec<Window> = windows(n, 0, window, carry, 0).collect();
                    let mut next = 1;
                    for w in &ws {
                        assert_eq!(w.first, next, "n {n} window {window} carry {carry}");
                        assert!(w.start < w.first && w.first <= w.end && w.end < n);
                        assert!(w.end - w.start <= window);
                        assert_eq!(w.silent() + w.coded().len(), w.fed().len());
                        next = w.end + 1;
                    }
                    assert_eq!(next.max(1), n.max(1), "n {n}");
                    if let Some(w) = ws.get(1) {
                        assert_eq!(w.first - w.start, carry);
                    }
                }
            }
        }
    }

    #[test]
    fn sliding_windows_cover_every_token_once() {
        for n in 0..60 {
            for window in 3..10 {
                for sinks in 1..window - 1 {
                    for carry in 1..window - sinks {
                        let ws: Vec<Window> = windows(n, 0, window, carry, sinks).collect();
                        let mut next = 1;
                        // Tokens the state holds before each window.
                        let mut held = 0;
                        for (i, w) in ws.iter().enumerate() {
                            assert_eq!(w.first, next, "n {n} window {window} carry {carry}");
                            assert_eq!(w.slide, i > 0);
                            assert!(w.start < w.first && w.first <= w.end && w.end < n);
                            if w.slide {
                                assert_eq!((w.start + 1, held), (w.first, window));
                                held = sinks + carry;
                            }
                            held += w.fed().len();
                            assert!(held <= window);
                            next = w.end + 1;
                        }
                        assert_eq!(next.max(1), n.max(1), "n {n}");
                    }
                }
            }
        }
    }

    #[test]
    fn streams_are_balanced_and_bounded() {
        assert_eq!(split_streams(0, 8, 10), Vec::<usize>::new());
        assert_eq!(split_streams(5, 8, 10), vec![5]);
        assert_eq!(split_streams(25, 8, 10), vec![13, 12]);
        assert_eq!(split_streams(1000, 8, 10), vec![125; 8]);
        for n in 1..300 {
            let s = split_streams(n, 7, 13);
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s.len() <= 7);
            assert!(s.len() == 1 || s.iter().all(|&l| l >= 13));
        }
    }
}
