//! The rank coder (`--coder rank`).
//!
//! Instead of the model's probabilities, it codes the *rank* of the true token
//! in the vocabulary sorted by descending logit, ties broken by ascending
//! token id (so the order is total and needs no float arithmetic: logits are
//! compared by their IEEE total order, `f32::total_cmp`). Ranks are then coded
//! with an adaptive model and the same range coder:
//!
//! - `bucket(r)` = 0 for r = 0, else `1 + floor(log2 r)`; rank `r >= 1` lies
//!   in `[2^(b-1), 2^b)` and has `b - 1` mantissa bits below its leading one.
//! - The bucket is coded with an adaptive frequency model chosen by the class
//!   of the gap `l1 - l2` between the two largest logits (4 classes, fixed
//!   thresholds; a confident model has a large gap). Bucket frequencies
//!   start at the prior `max(1, 64 >> (b / 2))` (small ranks are common).
//! - The top mantissa bit is coded with an adaptive model per bucket; the
//!   remaining bits are coded raw (uniform).
//!
//! Adaptive frequencies grow by [`INCREMENT`] per use and are halved
//! (rounding up) once their total exceeds [`LIMIT`].
//!
//! These choices were measured on SmolLM2 ranks of alice29.txt (docs/FORMAT.md):
//! more contexts (8 gap classes, the previous bucket) learn too slowly within
//! a 2048-token chunk and cost 7% more.
//!
//! It never needs `exp`, so it is cheaper than the arithmetic coder, but it
//! discards how confident the model is beyond the gap class, so it compresses
//! worse (see docs/FORMAT.md for measurements).

use crate::coder::{Frequencies, RangeCorrupt, RangeDecoder, RangeEncoder};

/// Added to a symbol's frequency each time it is coded.
pub const INCREMENT: u32 = 16;
/// Frequencies are halved once their total exceeds this.
pub const LIMIT: u32 = 1 << 16;
/// Upper bounds of the gap classes (`l1 - l2 < GAP_CLASSES[k]` gives class k;
/// otherwise, and for NaN, class 3).
const GAP_CLASSES: [f32; 3] = [1.0, 2.0, 4.0];
const N_GAP: usize = GAP_CLASSES.len() + 1;
/// Mantissa bits coded adaptively.
const MODELED_BITS: u32 = 1;

/// Maps an f32 to a u32 whose unsigned order is `f32::total_cmp`'s order.
#[inline(always)]
pub fn order_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[inline(always)]
fn key_to_f32(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

/// Rank of `token` in `logits` sorted by descending logit, ties by id.
pub fn rank_of(logits: &[f32], token: u32) -> u32 {
    let t = token as usize;
    let kt = order_key(logits[t]);
    let above = logits.iter().filter(|&&l| order_key(l) > kt).count();
    let tied_below = logits[..t].iter().filter(|&&l| order_key(l) == kt).count();
    (above + tied_below) as u32
}

/// The token with rank `rank` (< logits.len()); `scratch` is reused storage.
pub fn token_at_rank(logits: &[f32], rank: u32, scratch: &mut Vec<u64>) -> u32 {
    if rank == 0 {
        // The first maximum: the most common case, without the selection.
        let mut best = 0usize;
        let mut bk = order_key(logits[0]);
        for (i, &l) in logits.iter().enumerate().skip(1) {
            let k = order_key(l);
            if k > bk {
                bk = k;
                best = i;
            }
        }
        return best as u32;
    }
    // Ascending order of (!key, id) is descending logit, ascending id.
    scratch.clear();
    scratch.extend(
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| ((!order_key(l) as u64) << 32) | i as u64),
    );
    let (_, nth, _) = scratch.select_nth_unstable(rank as usize);
    *nth as u32
}

/// `bucket(r)`: 0 for 0, else 1 + floor(log2 r).
#[inline]
fn bucket(r: u32) -> u32 {
    32 - r.leading_zeros()
}

/// Gap class of the two largest logits.
fn gap_class(logits: &[f32]) -> usize {
    let (mut k1, mut k2) = (0u32, 0u32);
    for &l in logits {
        let k = order_key(l);
        if k > k1 {
            k2 = k1;
            k1 = k;
        } else if k > k2 {
            k2 = k;
        }
    }
    if logits.len() < 2 {
        return N_GAP - 1;
    }
    let d = key_to_f32(k1) - key_to_f32(k2);
    GAP_CLASSES
        .iter()
        .position(|&th| d < th)
        .unwrap_or(N_GAP - 1)
}

/// An adaptive frequency model over a small alphabet.
#[derive(Debug, Clone)]
struct Adaptive {
    freq: Vec<u32>,
    total: u32,
}

impl Adaptive {
    fn new(n: usize) -> Self {
        Self::with_prior((0..n).map(|_| 1).collect())
    }

    fn with_prior(freq: Vec<u32>) -> Self {
        Adaptive {
            total: freq.iter().sum(),
            freq,
        }
    }

    fn update(&mut self, s: usize) {
        self.freq[s] += INCREMENT;
        self.total += INCREMENT;
        if self.total > LIMIT {
            self.total = 0;
            for f in &mut self.freq {
                *f = (*f).div_ceil(2);
                self.total += *f;
            }
        }
    }

    fn encode(&mut self, enc: &mut RangeEncoder, s: usize) {
        enc.encode_symbol(self, s);
        self.update(s);
    }

    fn decode(&mut self, dec: &mut RangeDecoder<impl AsRef<[u8]>>) -> Result<usize, RangeCorrupt> {
        let s = dec.decode_symbol(self)?;
        self.update(s);
        Ok(s)
    }
}

impl Frequencies for Adaptive {
    fn total(&self) -> u64 {
        self.total as u64
    }

    fn cum_freq(&self, s: usize) -> (u64, u64) {
        let cum: u32 = self.freq[..s].iter().sum();
        (cum as u64, self.freq[s] as u64)
    }

    fn find(&self, target: u64) -> (usize, u64, u64) {
        let mut cum = 0u64;
        for (s, &f) in self.freq.iter().enumerate() {
            if target < cum + f as u64 {
                return (s, cum, f as u64);
            }
            cum += f as u64;
        }
        unreachable!("target below total")
    }
}

/// Adaptive state of the rank coder for one chunk (both directions).
#[derive(Debug, Clone)]
pub struct RankModel {
    vocab: u32,
    buckets: Vec<Adaptive>,
    /// Per bucket: model of the top `min(MODELED_BITS, b - 1)` mantissa bits.
    mantissa: Vec<Adaptive>,
    scratch: Vec<u64>,
}

impl RankModel {
    /// A fresh model for a vocabulary of `vocab` (>= 1) tokens.
    pub fn new(vocab: usize) -> Self {
        let vocab = vocab.clamp(1, u32::MAX as usize) as u32;
        let nb = bucket(vocab - 1) as usize + 1;
        RankModel {
            vocab,
            buckets: (0..N_GAP)
                .map(|_| {
                    Adaptive::with_prior(
                        (0..nb as u32).map(|b| (64u32 >> (b / 2)).max(1)).collect(),
                    )
                })
                .collect(),
            mantissa: (0..nb)
                .map(|b| Adaptive::new(1 << (b as u32).saturating_sub(1).min(MODELED_BITS)))
                .collect(),
            scratch: Vec::new(),
        }
    }

    fn context(&self, logits: &[f32]) -> usize {
        gap_class(logits)
    }

    /// Codes `token` given the model's logits row (`len == vocab`).
    pub fn encode(&mut self, enc: &mut RangeEncoder, logits: &[f32], token: u32) {
        debug_assert_eq!(logits.len(), self.vocab as usize);
        let ctx = self.context(logits);
        let r = rank_of(logits, token);
        let b = bucket(r);
        self.buckets[ctx].encode(enc, b as usize);
        if b >= 2 {
            let nbits = b - 1;
            let m = r - (1 << nbits);
            let top = nbits.min(MODELED_BITS);
            let low_bits = nbits - top;
            self.mantissa[b as usize].encode(enc, (m >> low_bits) as usize);
            enc.encode_bits(m & ((1u32 << low_bits) - 1), low_bits);
        }
    }

    /// Decodes one token given the same logits row.
    pub fn decode(
        &mut self,
        dec: &mut RangeDecoder<impl AsRef<[u8]>>,
        logits: &[f32],
    ) -> Result<u32, RangeCorrupt> {
        let ctx = self.context(logits);
        let b = self.buckets[ctx].decode(dec)? as u32;
        let r = if b >= 2 {
            let nbits = b - 1;
            let top = nbits.min(MODELED_BITS);
            let low_bits = nbits - top;
            let hi = self.mantissa[b as usize].decode(dec)? as u32;
            let lo = dec.decode_bits(low_bits)?;
            (1u32 << nbits) | (hi << low_bits) | lo
        } else {
            b
        };
        if r >= self.vocab {
            return Err(RangeCorrupt);
        }
        Ok(token_at_rank(logits, r, &mut self.scratch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_key_matches_total_cmp() {
        let vals = [
            f32::NEG_INFINITY,
            -1e30,
            -1.0,
            -0.0,
            0.0,
            1e-40,
            1.0,
            f32::INFINITY,
            f32::NAN,
        ];
        for &a in &vals {
            for &b in &vals {
                assert_eq!(order_key(a).cmp(&order_key(b)), a.total_cmp(&b), "{a} {b}");
            }
            assert_eq!(key_to_f32(order_key(a)).to_bits(), a.to_bits());
        }
    }

    #[test]
    fn rank_and_token_at_rank_are_inverse() {
        let logits: Vec<f32> = (0..500).map(|i| ((i * 37) % 23) as f32 * 0.5).collect();
        let mut scratch = Vec::new();
        let mut seen = vec![false; 500];
        for t in 0..500u32 {
            let r = rank_of(&logits, t);
            assert!(!seen[r as usize]);
            seen[r as usize] = true;
            assert_eq!(token_at_rank(&logits, r, &mut scratch), t);
        }
        // Ties by ascending id: tokens 0 and 23 share the lowest logit class.
        assert!(rank_of(&logits, 0) < rank_of(&logits, 23));
    }

    #[test]
    fn rank_model_round_trip() {
        let n = 3000;
        let mut x = 1u64;
        let mut rows = Vec::new();
        let mut toks = Vec::new();
        for step in 0..300 {
            let row: Vec<f32> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 1000) as f32 / 100.0
                })
                .collect();
            toks.push(((x >> 20) % n as u64) as u32 * (step % 3) as u32 % n as u32);
            rows.push(row);
        }
        let mut enc = RangeEncoder::new();
        let mut m = RankModel::new(n);
        for (row, &t) in rows.iter().zip(&toks) {
            m.encode(&mut enc, row, t);
        }
        let bytes = enc.finish();
        let mut dec = RangeDecoder::new(&bytes[..]);
        let mut m = RankModel::new(n);
        for (row, &t) in rows.iter().zip(&toks) {
            assert_eq!(m.decode(&mut dec, row).unwrap(), t);
        }
    }
}
