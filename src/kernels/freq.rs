//! Logits -> the coder's integer frequencies (NUMERICS.md section 9): the
//! one exp per symbol and the integer rule, written once and compiled per
//! variant (each table's `freq_table` entry; the SIMD ones are the same
//! body with wider instructions enabled, so the same bits).

use super::consts::{LOG2E, MAGIC};
use super::math::exp_poly;

/// Fixed-point bits of `exp(l - m)`, which lies in `[0, 1]`; `2^30` fits i32
/// (a signed conversion vectorizes) and makes `mult` fit u32.
pub const FIX_BITS: u32 = 30;

/// [`fill_impl`] as the scalar table's entry.
pub(crate) fn fill_spec(logits: &[f32], q: &mut [u32], freq: &mut [u32], total_bits: u32) {
    fill_impl(logits, q, freq, total_bits)
}

/// The table rule of NUMERICS.md section 9.
#[inline(always)]
pub(crate) fn fill_impl(logits: &[f32], q: &mut [u32], freq: &mut [u32], total_bits: u32) {
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
    const SCALE: f32 = (1u32 << FIX_BITS) as f32;
    // NaN and everything below CLAMP become CLAMP; x > 0 cannot occur
    // (x = l - max) but is clamped to 0 so the conversions below stay in range.
    let x = if x > CLAMP { x } else { CLAMP };
    let x = if x < 0.0 { x } else { 0.0 };
    let k = ((x * LOG2E) + MAGIC) - MAGIC;
    let p = exp_poly(x, k);
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
}
