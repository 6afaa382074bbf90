//! The model's own distribution as the coder's table: logits -> integer
//! frequencies (docs/NUMERICS.md section 9). This is the identity predictor:
//! it adds nothing to the model and keeps no state between tokens.
//!
//! The encoder and the decoder must build the same table bit for bit from the
//! same logits. After one `exp` per symbol (the pinned `exp` of NUMERICS.md
//! section 5) everything is integer arithmetic with one fixed rule:
//!
//! ```text
//! m    = max of the non-NaN logits                      (exact, order-free)
//! q_i  = trunc(exp(l_i - m) * 2^30) as u32              (0 for NaN logits)
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

// The literals are NUMERICS.md's decimal constants, rounded to f32 by the compiler.
#![allow(clippy::excessive_precision)]

use super::Predictor;
use crate::coder::{FreqError, FreqTable, Interval};

/// Fixed-point bits of `exp(l - m)`, which lies in `[0, 1]`; `2^30` fits i32
/// (a signed conversion vectorizes) and makes `mult` fit u32.
const FIX_BITS: u32 = 30;

/// The identity predictor: the coder's table is the softmax of the logits.
#[derive(Debug, Clone)]
pub struct Softmax {
    table: FreqTable,
    /// Scratch: fixed-point `exp(l_i - m)` per symbol.
    q: Vec<u32>,
}

impl Softmax {
    /// A predictor over `vocab` symbols with tables of total `2^total_bits`.
    pub fn new(vocab: usize, total_bits: u32) -> Result<Softmax, FreqError> {
        Ok(Softmax {
            table: FreqTable::new(vocab, total_bits)?,
            q: vec![0; vocab],
        })
    }

    /// `token`'s interval in the table of one row of `logits`: a pure
    /// function of the row and the token (so rows may be done in parallel).
    pub fn interval(&mut self, logits: &[f32], token: u32) -> Interval {
        let t = self.predict(logits);
        let (c, f) = t.cum_freq(token as usize);
        (c, f, t.total())
    }
}

impl Predictor for Softmax {
    /// Rebuilds the table from one row of logits (`logits.len() == vocab`).
    fn predict(&mut self, logits: &[f32]) -> &FreqTable {
        fill(logits, &mut self.q, &mut self.table);
        &self.table
    }

    /// Nothing to learn: the table depends on the row alone.
    fn update(&mut self, _token: u32) {}
}

/// Fills `table` from one row of logits (`q` is scratch of the same length).
pub fn fill(logits: &[f32], q: &mut [u32], table: &mut FreqTable) {
    let total_bits = table.total_bits();
    let freq = table.freqs_mut();
    assert_eq!(logits.len(), freq.len(), "logits row length");
    assert_eq!(q.len(), freq.len(), "scratch length");
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the features were detected just above.
            unsafe { fill_avx512(logits, q, freq, total_bits) };
            return;
        }
        if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the features were detected just above.
            unsafe { fill_avx2(logits, q, freq, total_bits) };
            return;
        }
    }
    fill_impl(logits, q, freq, total_bits);
}

/// [`fill_impl`] compiled for AVX2 + FMA: the same IEEE and integer
/// operations, so the same table (without hardware FMA, `mul_add` is a slow
/// library call; the compiler also vectorizes every pass here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fill_avx2(logits: &[f32], q: &mut [u32], freq: &mut [u32], total_bits: u32) {
    fill_impl(logits, q, freq, total_bits)
}

/// [`fill_impl`] compiled for AVX-512F (+ FMA); see [`fill_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn fill_avx512(logits: &[f32], q: &mut [u32], freq: &mut [u32], total_bits: u32) {
    fill_impl(logits, q, freq, total_bits)
}

/// The table rule of the module comment.
#[inline(always)]
fn fill_impl(logits: &[f32], q: &mut [u32], freq: &mut [u32], total_bits: u32) {
    let n = freq.len() as u64;
    let total = 1u64 << total_bits;
    let r = total - n;
    let m = max_ignoring_nan(logits);
    let (sum, amax) = if m.is_finite() {
        for (o, &l) in q.iter_mut().zip(logits) {
            *o = fixed_exp(l - m);
        }
        let sum: u64 = q.iter().map(|&v| v as u64).sum();
        // exp(0) = 1 exactly, so the maximum of q is 2^FIX_BITS; the
        // lowest index reaching it takes the leftover.
        (sum, q.iter().position(|&v| v == 1 << FIX_BITS).unwrap_or(0))
    } else {
        // All NaN / -inf, or a +inf logit: a fixed uniform table.
        q.fill(1);
        (n, 0)
    };
    // sum >= 1 always (uniform fallback or q_max = 2^30); r * 2^32 < 2^62.
    let mult = (r << 32) / sum;
    let used = scale(q, mult, freq);
    // used <= n + r = total: see the module comment.
    freq[amax] += (total - used) as u32;
}

/// Max of the non-NaN values (NEG_INFINITY if none). Max is exact and
/// order-free, so 16 lanes give the same value as a sequential fold; the
/// sign of a zero maximum may differ, which `l - m` cannot tell apart
/// (`l - 0.0` and `l - (-0.0)` agree for every `l` that matters, as
/// `exp(+0) = exp(-0) = 1`).
#[inline(always)]
fn max_ignoring_nan(v: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = if x > *l { x } else { *l };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in lanes.iter().chain(chunks.remainder()) {
        m = if x > m { x } else { m };
    }
    m
}

/// `trunc(exp(x) * 2^FIX_BITS)` for `x <= 0` or NaN, with `exp` of
/// NUMERICS.md section 5, written without branches so it vectorizes.
///
/// Equal to `(kernels::math::exp(x) * 2^FIX_BITS) as u32` for every such `x`
/// (tested): below `CLAMP` the spec's exp is < 2^-46, truncating to 0, and
/// so is `exp(CLAMP)`; NaN (NaN logits) also gives 0. Above `CLAMP` the
/// operations are the spec's, and `-47 <= k <= 0` needs none of its
/// special scalings.
#[inline(always)]
pub(crate) fn fixed_exp(x: f32) -> u32 {
    const CLAMP: f32 = -32.0;
    const LOG2E: f32 = 1.442_695_021_629_333_496_093_75;
    const LN2_HI: f32 = 0.693_145_751_953_125;
    const LN2_LO: f32 = 1.428_606_765_330_187_045e-6;
    const SCALE: f32 = (1u32 << FIX_BITS) as f32;
    // NaN and everything below CLAMP become CLAMP; x > 0 cannot occur
    // (x = l - max) but is clamped to 0 so the conversions below stay in range.
    let x = if x > CLAMP { x } else { CLAMP };
    let x = if x < 0.0 { x } else { 0.0 };
    let k = ((x * LOG2E) + 12_582_912.0) - 12_582_912.0;
    let r = k.mul_add(-LN2_HI, x);
    let r = k.mul_add(-LN2_LO, r);
    let mut p: f32 = 1.984_126_98e-4;
    p = p.mul_add(r, 1.388_888_89e-3);
    p = p.mul_add(r, 8.333_333_33e-3);
    p = p.mul_add(r, 4.166_666_67e-2);
    p = p.mul_add(r, 1.666_666_67e-1);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    // SAFETY: x in [-32, 0] gives k an integer in [-47, 0].
    let ki: i32 = unsafe { k.to_int_unchecked() };
    let e = p * f32::from_bits(((ki + 127) as u32) << 23);
    // SAFETY: e in [0, 1] (p(r) <= sqrt(2) with k <= -1, p(r) <= 1 with
    // k = 0 as r <= 0 there), so e * 2^30 is finite and below 2^31. The
    // checked conversion does not vectorize on x86.
    let v = e * SCALE;
    debug_assert!((0.0..=SCALE).contains(&v));
    unsafe { v.to_int_unchecked::<i32>() as u32 }
}

/// `f_i = 1 + ((q_i * mult) >> 32)`; returns `sum f_i`.
#[inline(always)]
fn scale(q: &[u32], mult: u64, freq: &mut [u32]) -> u64 {
    if let Ok(m32) = u32::try_from(mult) {
        // The common case (S >= 2^FIX_BITS): a 32x32->64 product, which
        // vectorizes; the same values as below.
        let mut used = 0u32; // sum f_i <= 2^MAX_TOTAL_BITS fits u32
        for (f, &v) in freq.iter_mut().zip(q) {
            let x = 1 + ((v as u64 * m32 as u64) >> 32) as u32;
            *f = x;
            used += x;
        }
        return used as u64;
    }
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

    /// The branch-free `fixed_exp` equals the spec's exp, scaled and
    /// truncated, on a dense sample of every f32 <= 0 (and NaN, -inf).
    #[test]
    fn fixed_exp_matches_spec_exp() {
        let spec = |x: f32| (crate::kernels::math::exp(x) * (1u32 << FIX_BITS) as f32) as u32;
        let mut checked = 0u64;
        // Negative floats: bits 0x8000_0000..=0xff80_0000 (-0 .. -inf).
        let mut b = 0x8000_0000u32;
        while b <= 0xff80_0000 {
            let x = f32::from_bits(b);
            assert_eq!(fixed_exp(x), spec(x), "x = {x} ({b:#x})");
            checked += 1;
            b = b.saturating_add(61);
            if b == u32::MAX {
                break;
            }
        }
        // Every float in [-32, -21] where q goes from 0 to nonzero, densely.
        let mut x = -21.0f32;
        while x > -32.0 {
            assert_eq!(fixed_exp(x), spec(x), "x = {x}");
            x = f32::from_bits(x.to_bits() + 7);
        }
        for x in [
            0.0,
            -0.0,
            f32::NAN,
            -f32::NAN,
            f32::NEG_INFINITY,
            -f32::MAX,
            -1e-45,
        ] {
            assert_eq!(fixed_exp(x), spec(x), "x = {x}");
        }
        assert_eq!(fixed_exp(0.0), 1 << FIX_BITS);
        assert!(checked > 30_000_000);
    }

    fn softmax64(l: &[f32]) -> Vec<f64> {
        let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = l.iter().map(|&x| (x as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    fn check_invariants(tab: &FreqTable) {
        let sum: u64 = tab.freqs().iter().map(|&f| f as u64).sum();
        assert_eq!(sum, tab.total());
        assert!(tab.freqs().iter().all(|&f| f >= 1));
    }

    #[test]
    fn total_and_floor_hold() {
        let mut t = Softmax::new(1000, 24).unwrap();
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
            let tab = t.predict(&logits);
            check_invariants(tab);
        }
    }

    #[test]
    fn close_to_softmax() {
        let n = 4096;
        let logits: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 50.0).collect();
        let mut t = Softmax::new(n, 28).unwrap();
        let tab = t.predict(&logits);
        check_invariants(tab);
        let p = softmax64(&logits);
        // KL(p || f/T) in bits must be tiny.
        let kl: f64 = p
            .iter()
            .zip(tab.freqs())
            .map(|(&pi, &f)| pi * (pi / (f as f64 / tab.total() as f64)).log2())
            .sum();
        assert!(kl < 1e-4, "kl {kl}");
    }

    #[test]
    fn degenerate_rows() {
        let mut t = Softmax::new(10, 24).unwrap();
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
            let tab = t.predict(&row);
            check_invariants(tab);
        }
        // Uniform fallback: the leftover goes to symbol 0.
        let tab = t.predict(&[f32::NAN; 10]);
        assert!(tab.freqs()[1..].iter().all(|&f| f == tab.freqs()[1]));
        assert!(tab.freqs()[0] >= tab.freqs()[1]);
        // One dominant symbol gets almost everything.
        let mut v = vec![-100.0; 10];
        v[7] = 0.0;
        let tab = t.predict(&v);
        assert_eq!(tab.freqs()[7] as u64, tab.total() - 9);
    }

    #[test]
    fn ties_give_leftover_to_lowest_index() {
        let mut t = Softmax::new(3, 24).unwrap();
        let tab = t.predict(&[1.0, 2.0, 2.0]);
        check_invariants(tab);
        assert!(tab.freqs()[1] >= tab.freqs()[2]);
    }

    #[test]
    fn find_inverts_cum_freq() {
        let mut t = Softmax::new(300, 24).unwrap();
        let logits: Vec<f32> = (0..300).map(|i| ((i * 31) % 17) as f32 * 0.7).collect();
        let tab = t.predict(&logits);
        for s in 0..300 {
            let (c, f) = tab.cum_freq(s);
            assert_eq!(tab.find(c), (s, c, f));
            assert_eq!(tab.find(c + f - 1), (s, c, f));
        }
    }
}
