//! The compressor's side of the block's shared n-gram model
//! (`predict::ngram`, FORMAT.md 8.4): the model runs stream by stream and
//! records each token's interval in its stream's own table; this pass then
//! replays the tokens in the order the decoder meets them, mixing the
//! n-gram in.
//!
//! The decoder's order: token `j` of a stream's token list (its primer
//! first) is decoded at step `j`, every stream of the block in one batch.
//! Stream 0 has no primer and starts at once; the others start when stream
//! 0 has its first `primer` tokens, so their `j` counts the primer too.
//! Within a step every stream reads the same n-gram state; the updates are
//! applied after the step, in stream order.

use crate::coder::Interval;
use crate::predict::Ngram;

/// One stream's tokens for the pass.
pub(super) struct Coded<'a> {
    /// The stream's tokens, its primer (lead) first.
    pub tokens: &'a [u32],
    /// Index in `tokens` of the first token coded with a table: 1 when
    /// token 0 was coded uniformly (no primer), else the primer's length.
    pub first: usize,
    /// `(cum, freq)` of each coded token in its stream's own table
    /// (`tokens[first..]`, in order).
    pub intervals: &'a [(u32, u32)],
}

/// A stream as recorded for the pass (owned).
#[derive(Debug, Clone, Default)]
pub(super) struct Recorded {
    /// The stream's tokens, its primer first.
    pub tokens: Vec<u32>,
    /// The primer's length (0: none; token 0 was coded uniformly).
    pub lead: usize,
    /// `(cum, freq)` of each token coded with a table.
    pub intervals: Vec<(u32, u32)>,
}

impl Recorded {
    /// The pass's view of it.
    pub fn view(&self) -> Coded<'_> {
        Coded {
            tokens: &self.tokens,
            first: if self.lead == 0 { 1 } else { self.lead },
            intervals: &self.intervals,
        }
    }
}

/// Replays `streams` (a block of `block_tokens` tokens, tables of total
/// `2^total_bits`) in decoding order with the n-gram mixed in; calls
/// `code(stream, interval)` for every token, in that order.
pub(super) fn ngram_pass(
    streams: &[Coded],
    block_tokens: u64,
    total_bits: u32,
    mut code: impl FnMut(usize, Interval),
) {
    let mut ngram = Ngram::new(block_tokens, total_bits);
    let steps = streams.iter().map(|s| s.tokens.len()).max().unwrap_or(0);
    let mut pending = Vec::with_capacity(streams.len());
    for j in 0..steps {
        for (i, s) in streams.iter().enumerate() {
            if j < s.first || j >= s.tokens.len() {
                continue;
            }
            let (cum, freq) = s.intervals[j - s.first];
            let (cum, freq) = (cum as u64, freq as u64);
            let t = s.tokens[j];
            let mix = ngram.mix(&s.tokens[..j]);
            let iv = mix.interval(total_bits, cum, freq, t);
            code(i, iv);
            pending.push((i, mix, freq));
        }
        for (i, mix, g) in pending.drain(..) {
            let s = &streams[i];
            ngram.update(&s.tokens[..j], s.tokens[j], &mix, g);
        }
    }
}
