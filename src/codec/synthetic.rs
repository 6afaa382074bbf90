//! Tiny deterministic stand-ins for the real model and tokenizer, for tests
//! and fuzzing: fast, but exercising the same driver paths.

use super::{LanguageModel, TextTokenizer};

/// Token id the synthetic tokenizers reserve (no bytes); [`HashModel`] uses
/// it as the context before a sequence's first token.
pub const START: u32 = 256;

/// splitmix64 finalizer.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D049BB133111EB);
    x ^ (x >> 31)
}

/// Logits from a hash of the last two tokens: noise in [-2, 2), plus a
/// strong preference for one "predicted" token and a weaker one for a second.
#[derive(Debug, Clone)]
pub struct HashModel {
    /// Logits per token.
    pub vocab: usize,
    /// Most tokens one state may hold.
    pub context: usize,
    /// Varies the hash (a different seed is a different model).
    pub seed: u64,
}

/// Error of [`HashModel::forward`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashModelError {
    /// A state would exceed the context.
    #[error("context of {0} tokens exceeded")]
    Context(usize),
    /// Mismatched argument lengths.
    #[error("bad forward arguments")]
    Arguments,
}

impl HashModel {
    /// A model over `vocab` tokens with a context of 4096.
    pub fn new(vocab: usize, seed: u64) -> Self {
        HashModel {
            vocab,
            context: 4096,
            seed,
        }
    }

    /// The logits row after history ending in `(a, b)`.
    pub fn row(&self, a: u32, b: u32, out: &mut [f32]) {
        let h = mix(self.seed ^ ((a as u64) << 32 | b as u64));
        for (i, o) in out.iter_mut().enumerate() {
            let r = mix(h ^ i as u64);
            *o = (r >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0;
        }
        let v = self.vocab as u64;
        out[(h % v) as usize] += 7.0;
        out[((h >> 20) % v) as usize] += 4.0;
    }

    /// `n` tokens sampled from the model itself (never `START`), i.e. data
    /// the model predicts well and zstd does not.
    pub fn sample(&self, n: usize, seed: u64, max_token: u32) -> Vec<u32> {
        let mut row = vec![0f32; self.vocab];
        let (mut a, mut b) = (START, START);
        let mut x = seed;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            self.row(a, b, &mut row);
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let w: Vec<f64> = row[..max_token as usize]
                .iter()
                .map(|&l| ((l - m) as f64).exp())
                .collect();
            let z: f64 = w.iter().sum();
            x = mix(x);
            let mut u = (x >> 11) as f64 / (1u64 << 53) as f64 * z;
            let mut t = 0;
            for (i, &wi) in w.iter().enumerate() {
                t = i;
                if u < wi {
                    break;
                }
                u -= wi;
            }
            out.push(t as u32);
            a = b;
            b = t as u32;
        }
        out
    }
}

impl LanguageModel for HashModel {
    /// The token history.
    type State = Vec<u32>;
    type Error = HashModelError;

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn max_context(&self) -> usize {
        self.context
    }

    fn new_state(&self) -> Vec<u32> {
        Vec::new()
    }

    fn reset_state(&self, state: &mut Vec<u32>) {
        state.clear();
    }

    fn slide_state(&self, state: &mut Vec<u32>, sinks: usize, keep: usize) {
        if sinks + keep < state.len() {
            state.drain(sinks..state.len() - keep);
        }
    }

    fn forward(
        &self,
        states: &mut [&mut Vec<u32>],
        tokens: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), HashModelError> {
        let total: usize = tokens.iter().map(|t| t.len()).sum();
        if states.len() != tokens.len() || logits.len() < total * self.vocab {
            return Err(HashModelError::Arguments);
        }
        let mut rows = logits.chunks_exact_mut(self.vocab);
        for (state, toks) in states.iter_mut().zip(tokens) {
            for &t in toks.iter() {
                if state.len() >= self.context {
                    return Err(HashModelError::Context(self.context));
                }
                state.push(t);
                let n = state.len();
                let a = if n >= 2 { state[n - 2] } else { START };
                self.row(a, t, rows.next().ok_or(HashModelError::Arguments)?);
            }
        }
        Ok(())
    }
}

/// Byte tokens 0..=255, the reserved token 256 (no bytes), and one token per
/// entry of `pairs` (two-byte tokens, greedily matched left to right).
#[derive(Debug, Clone)]
pub struct PairTokenizer {
    /// Two-byte tokens, ids `257 + index`.
    pub pairs: Vec<[u8; 2]>,
}

/// Decoding a token id that has no bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token {0} has no bytes")]
pub struct NoBytes(pub u32);

impl PairTokenizer {
    /// Bytes only (vocabulary 257).
    pub fn bytes() -> Self {
        PairTokenizer { pairs: Vec::new() }
    }

    /// Bytes plus some common English letter pairs.
    pub fn english() -> Self {
        let list = [
            "th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "e ", " t", "s ", "d ",
        ];
        PairTokenizer {
            pairs: list
                .iter()
                .map(|p| [p.as_bytes()[0], p.as_bytes()[1]])
                .collect(),
        }
    }
}

impl TextTokenizer for PairTokenizer {
    type Error = NoBytes;

    fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if i + 1 < bytes.len() {
                if let Some(k) = self.pairs.iter().position(|p| p[..] == bytes[i..i + 2]) {
                    out.push(257 + k as u32);
                    i += 2;
                    continue;
                }
            }
            out.push(bytes[i] as u32);
            i += 1;
        }
        out
    }

    fn decode(&self, tokens: &[u32]) -> Result<Vec<u8>, NoBytes> {
        let mut out = Vec::with_capacity(tokens.len() * 2);
        for &t in tokens {
            match t {
                0..=255 => out.push(t as u8),
                _ => match self.pairs.get((t as usize).wrapping_sub(257)) {
                    Some(p) if t >= 257 => out.extend_from_slice(p),
                    _ => return Err(NoBytes(t)),
                },
            }
        }
        Ok(out)
    }

    fn vocab_size(&self) -> usize {
        257 + self.pairs.len()
    }
}
