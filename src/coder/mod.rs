//! Entropy coding: a 64-bit range coder over integer frequency tables.
//!
//! - [`freq`]: the integer frequency table a predictor fills.
//! - [`range`]: the range coder, which codes a symbol given any
//!   [`Frequencies`] (`cum`, `freq`, `total`); it never sees logits.
//!
//! What the tables hold is the predictor's business (`predict`).

pub mod freq;
pub mod range;

pub use freq::{FreqError, FreqTable, DEFAULT_TOTAL_BITS, MAX_TOTAL_BITS, MIN_TOTAL_BITS};
pub use range::{RangeCorrupt, RangeDecoder, RangeEncoder};

/// Which predictor and coder a model-coded chunk uses (FORMAT.md: the
/// record kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CoderKind {
    /// Range coding with the model's full distribution (`predict::Softmax`).
    #[default]
    Arithmetic,
    /// Rank of the true token, adaptively coded (`predict::rank`).
    Rank,
}

impl CoderKind {
    /// The name `--coder` and `llmc -l` use: `arith` or `rank`.
    pub fn name(self) -> &'static str {
        match self {
            CoderKind::Arithmetic => "arith",
            CoderKind::Rank => "rank",
        }
    }
}

/// A token's interval in a frequency table: `(cum, freq, total)`.
pub type Interval = (u64, u64, u64);

/// A distribution over symbols `0..n` as integer frequencies: what the
/// range coder needs to code one symbol.
pub trait Frequencies {
    /// The sum of all frequencies (at most [`range::MAX_TOTAL`]).
    fn total(&self) -> u64;
    /// `(cumulative frequency below s, frequency of s)`; the frequency of
    /// a symbol that can be coded is at least 1.
    fn cum_freq(&self, s: usize) -> (u64, u64);
    /// The symbol whose interval holds `target` (< total), with its cum and freq.
    fn find(&self, target: u64) -> (usize, u64, u64);
}

impl Frequencies for FreqTable {
    fn total(&self) -> u64 {
        FreqTable::total(self)
    }
    fn cum_freq(&self, s: usize) -> (u64, u64) {
        FreqTable::cum_freq(self, s)
    }
    fn find(&self, target: u64) -> (usize, u64, u64) {
        FreqTable::find(self, target)
    }
}

impl RangeEncoder {
    /// Codes symbol `s` of the distribution `f`.
    pub fn encode_symbol(&mut self, f: &impl Frequencies, s: usize) {
        let (c, q) = f.cum_freq(s);
        self.encode(c, q, f.total());
    }
}

impl<B: AsRef<[u8]>> RangeDecoder<B> {
    /// Decodes one symbol of the distribution `f`.
    pub fn decode_symbol(&mut self, f: &impl Frequencies) -> Result<usize, RangeCorrupt> {
        let t = self.target(f.total())?;
        let (s, c, q) = f.find(t);
        self.consume(c, q);
        Ok(s)
    }
}
