//! Entropy coding of tokens given the model's logits.
//!
//! - [`freq`]: logits -> integer frequency table (NUMERICS.md section 9).
//! - [`range`]: a 64-bit range coder.
//! - [`rank`]: the rank coder (rank of the true token, adaptively coded).
//!
//! [`ChunkEncoder`] / [`ChunkDecoder`] code one chunk's tokens with either
//! coder; both directions see only the same logits rows.

pub mod freq;
pub mod range;
pub mod rank;

pub use freq::{FreqError, FreqTable, DEFAULT_TOTAL_BITS, MAX_TOTAL_BITS, MIN_TOTAL_BITS};
pub use range::{RangeCorrupt, RangeDecoder, RangeEncoder};
pub use rank::RankModel;

/// Which entropy coder a model-coded chunk uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CoderKind {
    /// Arithmetic (range) coding with the model's full distribution.
    #[default]
    Arithmetic,
    /// Rank of the true token, adaptively coded.
    Rank,
}

/// A token's interval in a frequency table: `(cum, freq, total)`.
pub type Interval = (u64, u64, u64);

/// `token`'s interval in the arithmetic coder's table for one row of
/// `logits` (`table` is scratch, `len == vocab`): a pure function of the row
/// and the token.
pub fn interval(table: &mut FreqTable, logits: &[f32], token: u32) -> Interval {
    table.fill(logits);
    let (c, f) = table.cum_freq(token as usize);
    (c, f, table.total())
}

/// Per-chunk state of either coder.
#[derive(Debug, Clone)]
enum State {
    Arithmetic,
    Rank(Box<RankModel>),
}

impl State {
    fn new(kind: CoderKind, vocab: usize) -> Self {
        match kind {
            CoderKind::Arithmetic => State::Arithmetic,
            CoderKind::Rank => State::Rank(Box::new(RankModel::new(vocab))),
        }
    }
}

/// Codes the tokens of one chunk.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    enc: RangeEncoder,
    state: State,
}

impl ChunkEncoder {
    /// A fresh encoder for a model with `vocab` tokens.
    pub fn new(kind: CoderKind, vocab: usize) -> Self {
        ChunkEncoder {
            enc: RangeEncoder::new(),
            state: State::new(kind, vocab),
        }
    }

    /// Codes `token` with the distribution of `logits` (one row, `vocab`
    /// long). `table` is scratch for the arithmetic coder (`len == vocab`).
    pub fn encode(&mut self, table: &mut FreqTable, logits: &[f32], token: u32) {
        match &mut self.state {
            State::Arithmetic => self.enc.encode_interval(interval(table, logits, token)),
            State::Rank(m) => m.encode(&mut self.enc, logits, token),
        }
    }

    /// Whether this encoder codes each token by the [`interval`] of its
    /// frequency table alone (the arithmetic coder; the rank coder keeps an
    /// adaptive state instead). Then the intervals of many rows may be
    /// computed in parallel and coded in order with
    /// [`ChunkEncoder::encode_interval`].
    pub fn codes_intervals(&self) -> bool {
        matches!(self.state, State::Arithmetic)
    }

    /// Codes one token by its [`interval`]: the same bytes as
    /// [`ChunkEncoder::encode`] with the row it came from. Panics for the
    /// rank coder (see [`ChunkEncoder::codes_intervals`]).
    pub fn encode_interval(&mut self, iv: Interval) {
        assert!(
            self.codes_intervals(),
            "the rank coder codes ranks, not intervals"
        );
        self.enc.encode_interval(iv);
    }

    /// Codes a chunk's first token, which has no model prediction, as one
    /// of `vocab` equally likely symbols (`cum = token, freq = 1,
    /// T = vocab`; FORMAT.md section 5.1), with either coder.
    pub fn encode_first(&mut self, vocab: usize, token: u32) {
        debug_assert!((token as usize) < vocab);
        self.enc.encode(token as u64, 1, vocab as u64);
    }

    /// Bytes written so far (a lower bound of the final size).
    pub fn len(&self) -> usize {
        self.enc.len()
    }

    /// True when nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.enc.is_empty()
    }

    /// Terminates the stream.
    pub fn finish(self) -> Vec<u8> {
        self.enc.finish()
    }
}

/// Decodes the tokens of one chunk from its payload.
#[derive(Debug, Clone)]
pub struct ChunkDecoder<B: AsRef<[u8]>> {
    dec: RangeDecoder<B>,
    state: State,
}

impl<B: AsRef<[u8]>> ChunkDecoder<B> {
    /// Starts decoding `payload` for a model with `vocab` tokens.
    ///
    /// The decoder re-encodes what it decodes (a range-coder step per token,
    /// negligible next to the model) so that [`ChunkDecoder::is_canonical`]
    /// can reject payloads that were altered without changing the tokens.
    pub fn new(kind: CoderKind, vocab: usize, payload: B) -> Self {
        ChunkDecoder {
            dec: RangeDecoder::new_verifying(payload),
            state: State::new(kind, vocab),
        }
    }

    /// Decodes the next token from the logits row the encoder used.
    pub fn decode(&mut self, table: &mut FreqTable, logits: &[f32]) -> Result<u32, RangeCorrupt> {
        match &mut self.state {
            State::Arithmetic => {
                table.fill(logits);
                let t = self.dec.target(table.total())?;
                let (s, c, f) = table.find(t);
                self.dec.consume(c, f);
                Ok(s as u32)
            }
            State::Rank(m) => m.decode(&mut self.dec, logits),
        }
    }

    /// Decodes a chunk's first token, coded by
    /// [`ChunkEncoder::encode_first`] as one of `vocab` equally likely ids.
    pub fn decode_first(&mut self, vocab: usize) -> Result<u32, RangeCorrupt> {
        let t = self.dec.target(vocab as u64)?;
        self.dec.consume(t, 1);
        Ok(t as u32)
    }

    /// True if the payload is exactly the encoder's output for the tokens
    /// decoded so far; ask after the last token.
    pub fn is_canonical(&self) -> bool {
        self.dec.is_canonical()
    }

    /// Payload bytes consumed so far (zeros past the end included).
    pub fn position(&self) -> usize {
        self.dec.position()
    }
}

#[cfg(test)]
mod tests;
