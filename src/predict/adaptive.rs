//! The adaptive predictor of format version 2 (docs/NUMERICS.md section
//! 10): it learns from the stream it codes. Three small parts, each of
//! which a frame may switch off:
//!
//! - **bias**: a per-token logit bias, learned online by a gradient step
//!   on the coded token's cross-entropy (a cheap dynamic evaluation: tokens
//!   the stream uses often become likelier);
//! - **match**: the longest earlier occurrence of the last few tokens
//!   predicts the token that followed it (repeated lines of logs, JSON
//!   keys, repeated passages beyond the model's window);
//! - **SSE**: an adaptive probability that the next token is the
//!   candidate (the match prediction, else the table's most probable
//!   token), in contexts of the match length and of the model's own
//!   probability of the candidate: it calibrates the model and decides how
//!   far to trust the match.
//!
//! Shapes: `vocab` logits in; tables of total `2^total_bits` out. State per
//! stream: `vocab` i32 biases, the token history, a 2^16-entry position
//! index, `8 x 97` SSE cells. Everything after the logits is integer
//! arithmetic, except the bias add (one IEEE f32 add per logit).

use super::{Predictor, Softmax};
use crate::coder::{FreqError, FreqTable};
use crate::kernels::Kernels;

/// Which parts run (a frame's predictor flags, FORMAT.md 8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdaptiveConfig {
    /// Online logit bias.
    pub bias: bool,
    /// Match model and SSE.
    pub sse: bool,
    /// The block's shared token n-gram model ([`super::ngram`]), mixed
    /// after the per-stream parts.
    pub ngram: bool,
}

impl AdaptiveConfig {
    /// The flags byte: bit 0 bias, bit 1 match and SSE, bit 3 n-gram (bit
    /// 2 is the header's, FORMAT.md 8.1).
    pub fn flags(self) -> u8 {
        u8::from(self.bias) | (u8::from(self.sse) << 1) | (u8::from(self.ngram) << 3)
    }

    /// From a flags byte; `None` if a reserved bit is set.
    pub fn from_flags(f: u8) -> Option<Self> {
        (f & !11 == 0).then_some(AdaptiveConfig {
            bias: f & 1 != 0,
            sse: f & 2 != 0,
            ngram: f & 8 != 0,
        })
    }

    /// Whether any per-stream part runs (the bias or the match model; the
    /// shared n-gram is the block's, not a stream predictor's).
    pub fn any(self) -> bool {
        self.bias || self.sse
    }
}

/// Bias step per coded token: 0.1 logit in Q16.
const BIAS_RATE: i64 = 6554;
/// Biases stay within +-256 logits (exact as f32).
const BIAS_LIMIT: i32 = 1 << 24;
/// Tokens hashed to find a match.
const MATCH_MIN: usize = 4;
/// log2 of the match index size.
const INDEX_BITS: u32 = 16;
/// SSE: stretch buckets per match context (quarter log2 units, -12..=12).
const BUCKETS: usize = 97;
/// SSE: match-length contexts.
const MATCH_CONTEXTS: usize = 8;
/// SSE adaptation: p += (target - p) >> SSE_RATE.
const SSE_RATE: u32 = 6;

/// A pending update: what [`Predictor::update`] needs from the last
/// prediction.
#[derive(Debug, Clone, Copy)]
struct Pending {
    candidate: u32,
    /// SSE cells interpolated, and the weight of the upper one (0..64).
    cell: usize,
    weight: u32,
}

/// The adaptive predictor (see the module doc).
#[derive(Debug, Clone)]
pub struct Adaptive {
    cfg: AdaptiveConfig,
    base: Softmax,
    /// Logits plus bias, `vocab`.
    biased: Vec<f32>,
    /// Q16 logit biases, `vocab`.
    bias: Vec<i32>,
    /// The table handed to the coder.
    table: FreqTable,
    /// Tokens of the stream so far.
    history: Vec<u32>,
    /// Position after the last occurrence of each hashed `MATCH_MIN`-gram
    /// (0: none).
    index: Vec<u32>,
    /// Position in `history` whose token the match predicts (0: no match).
    match_ptr: usize,
    match_len: u32,
    /// Q16 probabilities that the next token is the candidate.
    sse: Vec<u16>,
    pending: Option<Pending>,
}

impl Adaptive {
    /// A fresh predictor for a stream.
    pub fn new(
        cfg: AdaptiveConfig,
        kernels: Kernels,
        vocab: usize,
        total_bits: u32,
    ) -> Result<Adaptive, FreqError> {
        let sse = (0..MATCH_CONTEXTS * BUCKETS)
            .map(|i| stretch_center(i % BUCKETS))
            .collect();
        Ok(Adaptive {
            cfg,
            base: Softmax::new(kernels, vocab, total_bits)?,
            biased: if cfg.bias {
                vec![0.0; vocab]
            } else {
                Vec::new()
            },
            bias: if cfg.bias { vec![0; vocab] } else { Vec::new() },
            table: FreqTable::new(vocab, total_bits)?,
            history: Vec::new(),
            index: if cfg.sse {
                vec![0; 1 << INDEX_BITS]
            } else {
                Vec::new()
            },
            match_ptr: 0,
            match_len: 0,
            sse,
            pending: None,
        })
    }

    /// The parts that run.
    pub fn config(&self) -> AdaptiveConfig {
        self.cfg
    }

    /// Records a token coded without a table (a stream's token 0).
    pub fn observe(&mut self, token: u32) {
        self.pending = None;
        self.push(token);
    }

    /// Appends `token` to the history and moves the match model on.
    fn push(&mut self, token: u32) {
        if !self.cfg.sse {
            return;
        }
        if self.match_ptr > 0 && self.history[self.match_ptr] == token {
            self.match_ptr += 1;
            self.match_len = self.match_len.saturating_add(1);
        } else {
            self.match_ptr = 0;
            self.match_len = 0;
        }
        self.history.push(token);
        let n = self.history.len();
        if n < MATCH_MIN {
            return;
        }
        let h = ngram_hash(&self.history[n - MATCH_MIN..]);
        let earlier = self.index[h] as usize;
        if self.match_ptr == 0
            && earlier > 0
            && self.history[earlier - MATCH_MIN..earlier] == self.history[n - MATCH_MIN..]
        {
            self.match_ptr = earlier;
            self.match_len = MATCH_MIN as u32;
        }
        self.index[h] = n as u32;
        if self.match_ptr >= n {
            self.match_ptr = 0;
            self.match_len = 0;
        }
    }
}

/// Multiplicative hash of `MATCH_MIN` token ids into the index.
fn ngram_hash(t: &[u32]) -> usize {
    let mut h = 0u64;
    for &x in t {
        h = (h ^ x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    (h >> (64 - INDEX_BITS)) as usize
}

/// `floor(log2(x))` in Q8 with a linear mantissa: `256 * k + (m >> (k - 8))`
/// for `x = 2^k + m` (exact integer arithmetic; `x >= 1`).
pub(super) fn log2_q8(x: u64) -> i64 {
    let k = 63 - x.leading_zeros() as i64;
    let m = x - (1u64 << k);
    let frac = if k >= 8 { m >> (k - 8) } else { m << (8 - k) };
    256 * k + frac as i64
}

/// The initial SSE probability of bucket `i`: `2^s / (1 + 2^s)` at
/// `s = (i - 48) / 4`, in Q16, from four pinned constants (no libm).
fn stretch_center(i: usize) -> u16 {
    // 2^(j/4) in Q16 for j = 0..4.
    const ROOT: [u64; 4] = [65536, 77936, 92682, 110218];
    let s = i as i64 - 48;
    let (k, j) = (s.div_euclid(4), s.rem_euclid(4) as usize);
    // a = 2^s in Q32 (k in -12..=12).
    let a = (ROOT[j] << 16) as u128;
    let a = if k >= 0 { a << k } else { a >> -k };
    let p = (a << 16) / (a + (1u128 << 32));
    p.clamp(1, 65535) as u16
}

impl Predictor for Adaptive {
    fn predict(&mut self, logits: &[f32]) -> &FreqTable {
        let total_bits = self.table.total_bits();
        let base = if self.cfg.bias {
            for ((b, &l), &q) in self.biased.iter_mut().zip(logits).zip(&self.bias) {
                *b = l + q as f32 * (1.0 / 65536.0);
            }
            self.base.predict(&self.biased)
        } else {
            self.base.predict(logits)
        };
        if !self.cfg.sse {
            self.pending = None;
            self.table.freqs_mut().copy_from_slice(base.freqs());
            return &self.table;
        }
        let f0 = base.freqs();
        let n = f0.len() as u64;
        let total = 1u64 << total_bits;
        // The candidate: the match's token, else the most probable one
        // (lowest id among equals).
        let candidate = if self.match_ptr > 0 {
            self.history[self.match_ptr]
        } else {
            let mut best = 0usize;
            for (i, &f) in f0.iter().enumerate() {
                if f > f0[best] {
                    best = i;
                }
            }
            best as u32
        };
        let q = f0[candidate as usize] as u64;
        // Context: match length class, and the stretch of q / total.
        let mctx = if self.match_ptr == 0 {
            0
        } else {
            ((32 - self.match_len.leading_zeros()) as usize)
                .saturating_sub(2)
                .clamp(1, MATCH_CONTEXTS - 1)
        };
        let st = (log2_q8(q) - log2_q8(total - q)).clamp(-12 * 256, 12 * 256 - 1) + 12 * 256;
        let (cell, weight) = (mctx * BUCKETS + (st / 64) as usize, (st % 64) as u32);
        let p = (self.sse[cell] as u64 * (64 - weight as u64)
            + self.sse[cell + 1] as u64 * weight as u64)
            >> 6;
        // The candidate's new frequency, with room for every other symbol's
        // floor of 1 on either side.
        let fc = (p << (total_bits - 16)).clamp(2 * n, total - 2 * n);
        // The others keep their shape: f_v = max(1, f0_v * (total - fc) /
        // (total - q)), the rest to the candidate.
        let k = ((total - fc) << 32) / (total - q);
        let out = self.table.freqs_mut();
        let mut sum = 0u64;
        for (o, &f) in out.iter_mut().zip(f0) {
            let v = ((f as u64 * k) >> 32).max(1);
            *o = v as u32;
            sum += v;
        }
        let c = candidate as usize;
        sum -= out[c] as u64;
        out[c] = (total - sum) as u32;
        self.pending = Some(Pending {
            candidate,
            cell,
            weight,
        });
        &self.table
    }

    fn update(&mut self, token: u32) {
        if self.cfg.bias {
            let total_bits = self.table.total_bits();
            // The last base table (the softmax of logits + bias): the
            // gradient of -ln p(token) is p - onehot.
            let f0 = self.base.table().freqs();
            for (b, &f) in self.bias.iter_mut().zip(f0) {
                *b = (*b - ((f as i64 * BIAS_RATE) >> total_bits) as i32).max(-BIAS_LIMIT);
            }
            let b = &mut self.bias[token as usize];
            *b = (*b + BIAS_RATE as i32).min(BIAS_LIMIT);
        }
        if let Some(pd) = self.pending.take() {
            let target: i32 = if token == pd.candidate { 65535 } else { 0 };
            for (cell, w) in [(pd.cell, 64 - pd.weight), (pd.cell + 1, pd.weight)] {
                if w >= 32 {
                    let p = self.sse[cell] as i32;
                    self.sse[cell] = (p + ((target - p) >> SSE_RATE)).clamp(1, 65535) as u16;
                }
            }
        }
        self.push(token);
    }
}
