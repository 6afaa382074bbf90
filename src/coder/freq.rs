//! Logits -> integer frequency table (docs/NUMERICS.md section 9).
//!
//! The encoder and the decoder must build the same table bit for bit from the
//! same logits. After one `exp` per symbol (the pinned `exp` of NUMERICS.md
//! section 5) everything is integer arithmetic with one fixed rule:
//!
//! ```text
//! m    = max of the non-NaN logits                      (exact, order-free)
//! q_i  = trunc(exp(l_i - m) * 2^31) as u32              (0 for NaN logits)
//!        (if m is not finite: q_i = 1 for every i, a uniform table)
//! S    = sum q_i                                        (u64, exact)
//! R    = 2^total_bits - n                               (mass above the floor)
//! mult = floor(R * 2^32 / S)                            (u64)
//! f_i  = 1 + ((q_i * mult) >> 32)                       (u64 product, < 2^62)
//! f_a += 2^total_bits - sum f_i   where a = lowest index with maximal q
//! ```
//!
//! Every symbol gets at least 1, the total is exactly `2^total_bits`, and
//! `sum f_i <= n + R` because `q_i * mult / 2^32 <= q_i * R / S`. The
//! truncations lose less than `n + R/mult` counts, which all go to the most
//! probable symbol.

use super::exp_spec::exp;

/// Fixed-point bits of `exp(l - m)`, which lies in `[0, 1]`; `2^31` fits u32.
const FIX_BITS: u32 = 31;

/// Smallest and largest accepted `total_bits`.
pub const MIN_TOTAL_BITS: u32 = 24;
/// See [`MIN_TOTAL_BITS`]. Above 30, `q * mult` could overflow u64 for
/// small vocabularies, and the range coder loses precision.
pub const MAX_TOTAL_BITS: u32 = 30;
/// Default: the floor of 1 per symbol then costs at most
/// `-log2(1 - 49152 / 2^28)` = 0.00026 bits per token for a 49152 vocabulary.
pub const DEFAULT_TOTAL_BITS: u32 = 28;

/// An integer frequency table over `n` symbols with total `2^total_bits`.
#[derive(Debug, Clone)]
pub struct FreqTable {
    /// One frequency per symbol, each >= 1.
    freq: Vec<u32>,
    /// Scratch: fixed-point `exp(l_i - m)` per symbol.
    q: Vec<u32>,
    total_bits: u32,
}

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreqError {
    /// `total_bits` outside `MIN_TOTAL_BITS..=MAX_TOTAL_BITS`.
    #[error("total_bits {0} outside {MIN_TOTAL_BITS}..={MAX_TOTAL_BITS}")]
    TotalBits(u32),
    /// The vocabulary is empty or leaves less than half the total above the floor.
    #[error("vocabulary of {n} symbols does not fit a total of 2^{total_bits}")]
    Vocab { n: usize, total_bits: u32 },
}

impl FreqTable {
    /// A table for `n` symbols; contents are set by [`FreqTable::fill`].
    pub fn new(n: usize, total_bits: u32) -> Result<Self, FreqError> {
        if !(MIN_TOTAL_BITS..=MAX_TOTAL_BITS).contains(&total_bits) {
            return Err(FreqError::TotalBits(total_bits));
        }
        // Require n <= 2^(total_bits-1) so at least half the mass is shaped
        // by the model.
        if n == 0 || n as u64 > 1u64 << (total_bits - 1) {
            return Err(FreqError::Vocab { n, total_bits });
        }
        Ok(FreqTable {
            freq: vec![1; n],
            q: vec![0; n],
            total_bits,
        })
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.freq.len()
    }

    /// Never true (a table has at least one symbol); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.freq.is_empty()
    }

    /// log2 of the total.
    pub fn total_bits(&self) -> u32 {
        self.total_bits
    }

    /// The total, `2^total_bits`.
    pub fn total(&self) -> u64 {
        1u64 << self.total_bits
    }

    /// The frequencies.
    pub fn freqs(&self) -> &[u32] {
        &self.freq
    }

    /// Rebuilds the table from one row of logits (`logits.len() == len()`).
    pub fn fill(&mut self, logits: &[f32]) {
        assert_eq!(logits.len(), self.freq.len(), "logits row length");
        let (sum, amax) = fixed_point_exp(logits, &mut self.q);
        let n = self.freq.len() as u64;
        let total = 1u64 << self.total_bits;
        let r = total - n;
        // sum >= 1 always (uniform fallback or q_max = 2^31); r * 2^32 < 2^62.
        let mult = (r << 32) / sum;
        let used = scale(&self.q, mult, &mut self.freq);
        // used <= n + r = total: see the module comment.
        let leftover = total - used;
        self.freq[amax] += leftover as u32;
    }

    /// `(cumulative frequency below s, frequency of s)`.
    pub fn cum_freq(&self, s: usize) -> (u64, u64) {
        let cum: u64 = self.freq[..s].iter().map(|&f| f as u64).sum();
        (cum, self.freq[s] as u64)
    }

    /// The symbol whose interval holds `target` (< total), with its cum and freq.
    pub fn find(&self, target: u64) -> (usize, u64, u64) {
        let mut cum = 0u64;
        for (s, &f) in self.freq.iter().enumerate() {
            let next = cum + f as u64;
            if target < next {
                return (s, cum, f as u64);
            }
            cum = next;
        }
        // Unreachable for target < total; the last symbol is a safe answer.
        let last = self.freq.len() - 1;
        (last, cum - self.freq[last] as u64, self.freq[last] as u64)
    }
}

/// Fills `q` with fixed-point `exp(l_i - m)`; returns `(sum q, argmax)`.
fn fixed_point_exp(logits: &[f32], q: &mut [u32]) -> (u64, usize) {
    let m = logits
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    if !m.is_finite() {
        // All NaN / -inf, or a +inf logit: a fixed uniform table.
        q.fill(1);
        return (q.len() as u64, 0);
    }
    exp_row(logits, m, q);
    let mut sum = 0u64;
    let mut best = 0u32;
    let mut amax = 0usize;
    for (i, &v) in q.iter().enumerate() {
        sum += v as u64;
        if v > best {
            best = v;
            amax = i;
        }
    }
    (sum, amax)
}

/// `q_i = trunc(exp(l_i - m) * 2^31)`; dispatched to an FMA build where the
/// CPU has one (same IEEE operations, so the same bits; without hardware FMA
/// `mul_add` is a slow library call).
fn exp_row(logits: &[f32], m: f32, q: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the features were detected just above.
            unsafe { exp_row_fma(logits, m, q) };
            return;
        }
    }
    exp_row_scalar(logits, m, q);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_row_fma(logits: &[f32], m: f32, q: &mut [u32]) {
    exp_row_scalar(logits, m, q)
}

#[inline(always)]
fn exp_row_scalar(logits: &[f32], m: f32, q: &mut [u32]) {
    const SCALE: f32 = (1u64 << FIX_BITS) as f32;
    for (o, &l) in q.iter_mut().zip(logits) {
        // l - m <= 0 (or NaN for a NaN logit); e in [0, 1] or NaN.
        let e = exp(l - m);
        // Exact scaling; `as u32` truncates and maps NaN to 0.
        *o = (e * SCALE) as u32;
    }
}

/// `f_i = 1 + ((q_i * mult) >> 32)`; returns `sum f_i`.
fn scale(q: &[u32], mult: u64, freq: &mut [u32]) -> u64 {
    let mut used = 0u64;
    for (f, &v) in freq.iter_mut().zip(q) {
        let x = 1 + ((v as u64 * mult) >> 32);
        *f = x as u32;
        used += x;
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax64(l: &[f32]) -> Vec<f64> {
        let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = l.iter().map(|&x| (x as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    fn check_invariants(t: &FreqTable) {
        let sum: u64 = t.freqs().iter().map(|&f| f as u64).sum();
        assert_eq!(sum, t.total());
        assert!(t.freqs().iter().all(|&f| f >= 1));
    }

    #[test]
    fn total_and_floor_hold() {
        let mut t = FreqTable::new(1000, 24).unwrap();
        let mut x = 12345u32;
        for _ in 0..20 {
            let logits: Vec<f32> = (0..1000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x % 4000) as f32 / 100.0 - 20.0
                })
                .collect();
            t.fill(&logits);
            check_invariants(&t);
        }
    }

    #[test]
    fn close_to_softmax() {
        let n = 4096;
        let logits: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 50.0).collect();
        let mut t = FreqTable::new(n, 28).unwrap();
        t.fill(&logits);
        check_invariants(&t);
        let p = softmax64(&logits);
        // KL(p || f/T) in bits must be tiny.
        let kl: f64 = p
            .iter()
            .zip(t.freqs())
            .map(|(&pi, &f)| pi * (pi / (f as f64 / t.total() as f64)).log2())
            .sum();
        assert!(kl < 1e-4, "kl {kl}");
    }

    #[test]
    fn degenerate_rows() {
        let mut t = FreqTable::new(10, 24).unwrap();
        for row in [
            vec![f32::NAN; 10],
            vec![f32::NEG_INFINITY; 10],
            {
                let mut v = vec![0.0; 10];
                v[3] = f32::INFINITY;
                v
            },
            {
                let mut v = vec![f32::NAN; 10];
                v[7] = -1.0e30;
                v
            },
            vec![f32::MAX; 10],
            vec![-f32::MAX; 10],
        ] {
            t.fill(&row);
            check_invariants(&t);
        }
        // Uniform fallback: the leftover goes to symbol 0.
        t.fill(&[f32::NAN; 10]);
        assert!(t.freqs()[1..].iter().all(|&f| f == t.freqs()[1]));
        assert!(t.freqs()[0] >= t.freqs()[1]);
        // One dominant symbol gets almost everything.
        let mut v = vec![-100.0; 10];
        v[7] = 0.0;
        t.fill(&v);
        assert_eq!(t.freqs()[7] as u64, t.total() - 9);
    }

    #[test]
    fn ties_give_leftover_to_lowest_index() {
        let mut t = FreqTable::new(3, 24).unwrap();
        t.fill(&[1.0, 2.0, 2.0]);
        check_invariants(&t);
        assert!(t.freqs()[1] >= t.freqs()[2]);
    }

    #[test]
    fn find_inverts_cum_freq() {
        let mut t = FreqTable::new(300, 24).unwrap();
        let logits: Vec<f32> = (0..300).map(|i| ((i * 31) % 17) as f32 * 0.7).collect();
        t.fill(&logits);
        for s in 0..300 {
            let (c, f) = t.cum_freq(s);
            assert_eq!(t.find(c), (s, c, f));
            assert_eq!(t.find(c + f - 1), (s, c, f));
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(FreqTable::new(10, 23).is_err());
        assert!(FreqTable::new(10, 31).is_err());
        assert!(FreqTable::new(0, 24).is_err());
        assert!(FreqTable::new((1 << 23) + 1, 24).is_err());
        assert!(FreqTable::new(1 << 23, 24).is_ok());
    }
}
