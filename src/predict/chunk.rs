//! One chunk's tokens through a predictor and the range coder
//! (FORMAT.md section 5.1): token 0 uniformly, every later token with the
//! table its predictor makes from the logits row after the token before.

use super::adaptive::{Adaptive, AdaptiveConfig};
use super::ngram::{Mix, Ngram};
use super::rank::RankModel;
use super::softmax::Softmax;
use super::Predictor;
use crate::coder::{
    CoderKind, FreqError, FreqTable, Interval, RangeCorrupt, RangeDecoder, RangeEncoder,
};
use crate::kernels::Kernels;

/// Per-chunk predictor of either coder kind.
#[derive(Debug, Clone)]
enum State {
    Arithmetic(Softmax),
    Adaptive(Box<Adaptive>),
    Rank(Box<RankModel>),
}

impl State {
    /// The predictor for `kind`; `adaptive` applies to the arithmetic
    /// coder only (the rank coder has its own adaptive tables).
    fn new(
        kind: CoderKind,
        adaptive: AdaptiveConfig,
        kernels: Kernels,
        vocab: usize,
        total_bits: u32,
    ) -> Result<Self, FreqError> {
        Ok(match kind {
            CoderKind::Arithmetic if adaptive.any() => State::Adaptive(Box::new(Adaptive::new(
                adaptive, kernels, vocab, total_bits,
            )?)),
            CoderKind::Arithmetic => State::Arithmetic(Softmax::new(kernels, vocab, total_bits)?),
            CoderKind::Rank => State::Rank(Box::new(RankModel::new(vocab))),
        })
    }

    /// Tells a learning predictor of a token coded without its table.
    fn observe(&mut self, token: u32) {
        if let State::Adaptive(p) = self {
            p.observe(token);
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
    /// A fresh encoder for a model with `vocab` tokens; tables of the
    /// arithmetic coder total `2^total_bits` and are computed with `kernels`.
    pub fn new(
        kind: CoderKind,
        adaptive: AdaptiveConfig,
        kernels: Kernels,
        vocab: usize,
        total_bits: u32,
    ) -> Result<Self, FreqError> {
        Ok(ChunkEncoder {
            enc: RangeEncoder::new(),
            state: State::new(kind, adaptive, kernels, vocab, total_bits)?,
        })
    }

    /// Codes `token` with the prediction from `logits` (one row, `vocab` long).
    pub fn encode(&mut self, logits: &[f32], token: u32) {
        match &mut self.state {
            State::Arithmetic(p) => {
                self.enc.encode_symbol(p.predict(logits), token as usize);
                p.update(token);
            }
            State::Adaptive(p) => {
                self.enc.encode_symbol(p.predict(logits), token as usize);
                p.update(token);
            }
            State::Rank(m) => m.encode(&mut self.enc, logits, token),
        }
    }

    /// Whether each token's code depends on its own logits row alone (the
    /// stateless softmax predictor): then the [`Softmax::interval`]s of many
    /// rows may be computed in parallel and coded in order with
    /// [`ChunkEncoder::encode_interval`].
    pub fn codes_intervals(&self) -> bool {
        matches!(self.state, State::Arithmetic(_))
    }

    /// Codes one token by its [`Softmax::interval`]: the same bytes as
    /// [`ChunkEncoder::encode`] with the row it came from. Panics for the
    /// rank coder (see [`ChunkEncoder::codes_intervals`]).
    pub fn encode_interval(&mut self, iv: Interval) {
        assert!(
            self.codes_intervals(),
            "the rank coder codes ranks, not intervals"
        );
        self.enc.encode_interval(iv);
    }

    /// The interval of `token` in the table the predictor makes from
    /// `logits`, without coding it (the predictor learns from it as if
    /// coded): `(cum, freq)` of `2^total_bits`. For the block's n-gram pass
    /// (`predict::ngram`), which codes it later with
    /// [`ChunkEncoder::encode_mixed`]. Panics for the rank coder.
    pub fn table_interval(&mut self, logits: &[f32], token: u32) -> (u64, u64) {
        let iv = match &mut self.state {
            State::Arithmetic(p) => {
                let iv = p.predict(logits).cum_freq(token as usize);
                p.update(token);
                iv
            }
            State::Adaptive(p) => {
                let iv = p.predict(logits).cum_freq(token as usize);
                p.update(token);
                iv
            }
            State::Rank(_) => panic!("the n-gram mixes arithmetic-coder tables only"),
        };
        iv
    }

    /// Codes one token by an interval the n-gram pass computed.
    pub fn encode_mixed(&mut self, iv: Interval) {
        self.enc.encode_interval(iv);
    }

    /// Codes a chunk's first token, which has no model prediction, as one
    /// of `vocab` equally likely symbols (`cum = token, freq = 1,
    /// T = vocab`; FORMAT.md section 5.1), with either coder.
    pub fn encode_first(&mut self, vocab: usize, token: u32) {
        debug_assert!((token as usize) < vocab);
        self.enc.encode(token as u64, 1, vocab as u64);
        self.state.observe(token);
    }

    /// Tells the predictor of a context token that is not coded (a
    /// stream's primer, FORMAT.md 8.4).
    pub fn observe(&mut self, token: u32) {
        self.state.observe(token);
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
    pub fn new(
        kind: CoderKind,
        adaptive: AdaptiveConfig,
        kernels: Kernels,
        vocab: usize,
        total_bits: u32,
        payload: B,
    ) -> Result<Self, FreqError> {
        Ok(ChunkDecoder {
            dec: RangeDecoder::new_verifying(payload),
            state: State::new(kind, adaptive, kernels, vocab, total_bits)?,
        })
    }

    /// Decodes the next token from the logits row the encoder used.
    pub fn decode(&mut self, logits: &[f32]) -> Result<u32, RangeCorrupt> {
        match &mut self.state {
            State::Arithmetic(p) => {
                let t = self.dec.decode_symbol(p.predict(logits))? as u32;
                p.update(t);
                Ok(t)
            }
            State::Adaptive(p) => {
                let t = self.dec.decode_symbol(p.predict(logits))? as u32;
                p.update(t);
                Ok(t)
            }
            State::Rank(m) => m.decode(&mut self.dec, logits),
        }
    }

    /// Decodes the next token from the logits row the encoder used, with
    /// the block's n-gram mixed in ([`Ngram::mix`] after `history`, the
    /// stream's tokens so far). Returns the token, the mix and the token's
    /// frequency in the stream's table: what [`Ngram::update`] needs after
    /// the step. Panics for the rank coder.
    pub fn decode_mixed(
        &mut self,
        logits: &[f32],
        ngram: &Ngram,
        history: &[u32],
    ) -> Result<(u32, Mix, u64), RangeCorrupt> {
        let mix = ngram.mix(history);
        let (t, g) = match &mut self.state {
            State::Arithmetic(p) => {
                let r = decode_with(&mut self.dec, p.predict(logits), &mix)?;
                p.update(r.0);
                r
            }
            State::Adaptive(p) => {
                let r = decode_with(&mut self.dec, p.predict(logits), &mix)?;
                p.update(r.0);
                r
            }
            State::Rank(_) => panic!("the n-gram mixes arithmetic-coder tables only"),
        };
        Ok((t, mix, g))
    }

    /// Decodes a chunk's first token, coded by
    /// [`ChunkEncoder::encode_first`] as one of `vocab` equally likely ids.
    pub fn decode_first(&mut self, vocab: usize) -> Result<u32, RangeCorrupt> {
        let t = self.dec.target(vocab as u64)?;
        self.dec.consume(t, 1);
        self.state.observe(t as u32);
        Ok(t as u32)
    }

    /// Tells the predictor of a context token that is not coded (as
    /// [`ChunkEncoder::observe`]).
    pub fn observe(&mut self, token: u32) {
        self.state.observe(token);
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

/// Decodes one token with `table`, mixed with `mix` if it is used:
/// `(token, its frequency in table)`.
fn decode_with<B: AsRef<[u8]>>(
    dec: &mut RangeDecoder<B>,
    table: &FreqTable,
    mix: &Mix,
) -> Result<(u32, u64), RangeCorrupt> {
    let s = if mix.used() {
        dec.decode_symbol(&mix.table(table))?
    } else {
        dec.decode_symbol(table)?
    };
    Ok((s as u32, table.freqs()[s] as u64))
}
