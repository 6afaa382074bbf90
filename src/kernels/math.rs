//! Elementary functions built from IEEE-754 operations only (docs/NUMERICS.md
//! sections 5 and 6).
//!
//! Platform math libraries differ in their last bits between machines, so no
//! `exp`, `ln`, `sin` or `cos` of the standard library (or of libm) is used on
//! the path from tokens to probabilities. Everything here is range reduction
//! plus a polynomial, written with `+ - * /`, `sqrt`-free, and `fma` exactly
//! where the spec says so. The std versions are used only in tests, as the
//! accuracy yardstick.

use super::consts::{C3, C4, C5, C6, C7, HI, LN2_HI, LN2_LO, LO, LOG2E, MAGIC};

/// Rounds to the nearest integer, ties to even, for `|x| < 2^22`.
///
/// Adding `1.5 * 2^23` moves `x` into the binade `[2^23, 2^24)` whose spacing
/// is exactly 1, so the addition itself rounds `x` to an integer with the
/// IEEE default (ties to even; `1.5 * 2^23` is even, so the parity of the sum
/// is the parity of the rounded `x`). The subtraction is then exact. This is
/// bit-identical to `f32::round_ties_even` on that range and needs no
/// SSE4.1 or libm call. Callers guarantee the range (quantization: |x| <= ~127;
/// `exp`: |x| < 128).
#[inline(always)]
pub fn round_small(x: f32) -> f32 {
    (x + MAGIC) - MAGIC
}

/// f32 `exp(x)`, NUMERICS.md section 5. Max relative error about 1.5 ulp
/// (measured in the tests).
///
/// Edge cases: `x >= 88.72283935546875` (including +inf) gives +inf;
/// `x <= -87.3365478515625` (including -inf) gives +0.0, so results never
/// become subnormal; NaN gives NaN.
// The constants are in [`super::consts`], shared with the SIMD variants.
#[inline]
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x >= HI {
        return f32::INFINITY;
    }
    if x <= LO {
        return 0.0;
    }
    let k = round_small(x * LOG2E);
    let p = exp_poly(x, k);
    let ki = k as i32; // exact: |k| <= 128
    if ki > 127 {
        // k = 128: 2^128 is not an f32; scale in two exact-power steps.
        (p * pow2_f32(127)) * 2.0
    } else if ki < -126 {
        // Unreachable with the LO cut-off above, kept as specified.
        (p * pow2_f32(ki + 64)) * pow2_f32(-64)
    } else {
        p * pow2_f32(ki)
    }
}

/// `exp(x - k ln 2)` of section 5 for the integer `k = round(x * log2 e)`:
/// the two-step reduction and the degree-7 polynomial (shared by [`exp`]
/// and the coder's branch-free fixed-point exp in `kernels::freq`).
#[inline(always)]
pub(crate) fn exp_poly(x: f32, k: f32) -> f32 {
    let r = k.mul_add(-LN2_HI, x);
    let r = k.mul_add(-LN2_LO, r);
    let mut p = C7;
    p = p.mul_add(r, C6);
    p = p.mul_add(r, C5);
    p = p.mul_add(r, C4);
    p = p.mul_add(r, C3);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p.mul_add(r, 1.0)
}

/// `2^k` for `-126 <= k <= 127`, built from its bits.
#[inline(always)]
fn pow2_f32(k: i32) -> f32 {
    debug_assert!((-126..=127).contains(&k));
    f32::from_bits(((k + 127) as u32) << 23)
}

// ---------------------------------------------------------------------------
// f64 functions for the RoPE tables (computed once per model).
// ---------------------------------------------------------------------------

/// Taylor coefficients `1/i!` as f64 (const evaluation is IEEE and the same on
/// every host).
const fn inv_factorials<const N: usize>() -> [f64; N] {
    let mut c = [0.0; N];
    let mut i = 0;
    let mut f = 1.0;
    while i < N {
        if i > 0 {
            f /= i as f64;
        }
        c[i] = f;
        i += 1;
    }
    c
}

const INV_FACT: [f64; 22] = inv_factorials::<22>();

/// `ln 2` split so that `k * LN2_HI_64` is exact for `|k| < 2^21`
/// (LN2_HI_64 has 32 significant bits).
const LN2_HI_64: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO_64: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// `2^k` for `-1022 <= k <= 1023`.
fn pow2_f64(k: i64) -> f64 {
    debug_assert!((-1022..=1023).contains(&k));
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// Nearest integer (ties to even) for `|x| < 2^51`, by the same trick as
/// [`round_small`] in the binade `[2^52, 2^53)`.
fn round_f64(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    (x + MAGIC) - MAGIC
}

/// f64 `exp`, relative error ~1e-16 (tested against std).
pub fn exp64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.782_712_893_384 {
        return f64::INFINITY;
    }
    if x < -745.2 {
        return 0.0;
    }
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    let k = round_f64(x * LOG2E); // |k| <= 1076
                                  // |r| <= ~0.3466; k * LN2_HI_64 is exact and x - k*LN2_HI_64 is exact by
                                  // Sterbenz' lemma when k != 0.
    let r = (x - k * LN2_HI_64) - k * LN2_LO_64;
    // Taylor to r^17: truncation < 0.35^18 / 18! ~ 1e-24.
    let mut p = INV_FACT[17];
    let mut i = 17;
    while i > 0 {
        i -= 1;
        p = p * r + INV_FACT[i];
    }
    let k = k as i64;
    // Two exact scaling steps cover overflow-near and subnormal results.
    if k > 1023 {
        p * pow2_f64(1023) * pow2_f64(k - 1023)
    } else if k < -1022 {
        p * pow2_f64(k + 600) * pow2_f64(-600)
    } else {
        p * pow2_f64(k)
    }
}

/// f64 natural logarithm, relative error ~1e-16 (tested against std).
/// `ln64(0) = -inf`, negative or NaN input gives NaN, `ln64(inf) = inf`.
pub fn ln64(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x == f64::INFINITY {
        return x;
    }
    let mut bits = x.to_bits();
    let mut e: i64 = 0;
    if bits >> 52 == 0 {
        // Subnormal: scale into the normal range first (exact).
        bits = (x * pow2_f64(54)).to_bits();
        e -= 54;
    }
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    // m in [1, 2); fold to [sqrt(1/2), sqrt(2)) so |s| <= 0.1716.
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m-1)/(m+1).
    // m - 1 is exact (Sterbenz). 13 odd terms: truncation < 0.1716^27/27 ~ 1e-22.
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let mut p = 1.0 / 27.0;
    let mut n = 27.0;
    while n > 1.0 {
        n -= 2.0;
        p = p * z + 1.0 / n;
    }
    let ln_m = 2.0 * s * p;
    let e = e as f64;
    e * LN2_HI_64 + (e * LN2_LO_64 + ln_m)
}

/// `pi/2` split into two 33-bit parts and a remainder: `k * PIO2_1` and
/// `k * PIO2_2` are exact for `|k| < 2^20`. Derived from pi to 80 digits.
const PIO2_1: f64 = f64::from_bits(0x3ff9_21fb_5440_0000);
const PIO2_2: f64 = f64::from_bits(0x3dd0_b461_1a60_0000);
const PIO2_3: f64 = f64::from_bits(0x3ba3_198a_2e03_7073);
const TWO_OVER_PI: f64 = f64::from_bits(0x3fe4_5f30_6dc9_c883);

/// Largest argument magnitude for which the reduction of [`sin64`]/[`cos64`]
/// is accurate (`|k| < 2^20`). Larger finite arguments still give a
/// deterministic result, just a less accurate one.
pub const TRIG_ACCURATE_MAX: f64 = 1_600_000.0;

/// `x = k * pi/2 + r` with `|r| <= ~pi/4`; returns `(r, k mod 4)`.
fn reduce_pio2(x: f64) -> (f64, u32) {
    let k = round_f64(x * TWO_OVER_PI);
    let r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let q = (k as i64).rem_euclid(4) as u32;
    (r, q)
}

/// sin and cos of a reduced argument `|r| <= ~pi/4` (Taylor to r^21 / r^20:
/// truncation below 1e-20).
fn sincos_kernel(r: f64) -> (f64, f64) {
    let z = r * r;
    // sin r = r * (1 - z/3! + z^2/5! - ... - z^10/21!)
    let mut s = -INV_FACT[21];
    let mut i = 21;
    while i > 3 {
        i -= 2;
        let c = if (i / 2) % 2 == 1 {
            -INV_FACT[i]
        } else {
            INV_FACT[i]
        };
        s = s * z + c;
    }
    let sin = r + r * (z * s);
    // cos r = 1 - z/2! + z^2/4! - ... + z^10/20!
    let mut c = INV_FACT[20];
    let mut i = 20;
    while i > 2 {
        i -= 2;
        let k = if (i / 2) % 2 == 1 {
            -INV_FACT[i]
        } else {
            INV_FACT[i]
        };
        c = c * z + k;
    }
    let cos = 1.0 + z * c;
    (sin, cos)
}

/// f64 sine; absolute error ~1e-16 for `|x| <= TRIG_ACCURATE_MAX`; NaN for
/// NaN or infinite input.
pub fn sin64(x: f64) -> f64 {
    if !x.is_finite() {
        return f64::NAN;
    }
    let (r, q) = reduce_pio2(x);
    let (s, c) = sincos_kernel(r);
    match q {
        0 => s,
        1 => c,
        2 => -s,
        _ => -c,
    }
}

/// f64 cosine; absolute error ~1e-16 for `|x| <= TRIG_ACCURATE_MAX`; NaN for
/// NaN or infinite input.
pub fn cos64(x: f64) -> f64 {
    if !x.is_finite() {
        return f64::NAN;
    }
    let (r, q) = reduce_pio2(x);
    let (s, c) = sincos_kernel(r);
    match q {
        0 => c,
        1 => -s,
        2 => -c,
        _ => s,
    }
}

/// RoPE rotation tables, NUMERICS.md section 6: `cos[p * half + j]`,
/// `sin[p * half + j]` for positions `p < n_pos` and pairs `j < head_dim/2`.
#[derive(Debug, Clone)]
pub struct RopeTable {
    half: usize,
    n_pos: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// Builds the table. `head_dim` must be even and non-zero, `base > 1`
    /// finite; `n_pos` must keep `p * theta` within [`TRIG_ACCURATE_MAX`]
    /// (callers validate; the model caps context length far below that).
    pub fn new(head_dim: usize, base: f32, n_pos: usize) -> RopeTable {
        assert!(head_dim >= 2 && head_dim % 2 == 0, "head_dim must be even");
        let half = head_dim / 2;
        let ln_base = ln64(base as f64);
        let theta: Vec<f64> = (0..half)
            .map(|j| {
                let e = (2 * j) as f64 / head_dim as f64;
                exp64(-(e * ln_base))
            })
            .collect();
        let mut cos = Vec::with_capacity(n_pos * half);
        let mut sin = Vec::with_capacity(n_pos * half);
        for p in 0..n_pos {
            for &t in &theta {
                let a = p as f64 * t;
                cos.push(cos64(a) as f32);
                sin.push(sin64(a) as f32);
            }
        }
        RopeTable {
            half,
            n_pos,
            cos,
            sin,
        }
    }

    /// Number of positions covered.
    pub fn n_pos(&self) -> usize {
        self.n_pos
    }

    /// `(cos, sin)` rows for position `p`, each `head_dim/2` long.
    /// Panics if `p >= n_pos` (the model bounds positions by context length).
    pub fn at(&self, p: usize) -> (&[f32], &[f32]) {
        let a = p * self.half;
        (&self.cos[a..a + self.half], &self.sin[a..a + self.half])
    }
}

#[cfg(test)]
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;

    fn ulp_diff(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn round_small_matches_round_ties_even() {
        let mut x = -300.0f32;
        while x < 300.0 {
            // Equal as values; round_small gives +0.0 where round_ties_even
            // gives -0.0 for x in (-0.5, -0.0], which no caller can observe
            // (the result is converted to an integer or multiplied into a
            // sum that is then added to a non-zero value).
            assert_eq!(round_small(x), x.round_ties_even(), "{x}");
            x += 0.125 / 3.0;
        }
        for x in [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 127.49999] {
            assert_eq!(round_small(x), x.round_ties_even(), "{x}");
        }
        // Sign of zero: -0.4 rounds to +0 here (0.0 in value) — only the
        // value is used by callers (converted to an integer).
        assert_eq!(round_small(-0.4), 0.0);
    }

    #[test]
    fn exp_constants_have_specified_bits() {
        assert_eq!(88.722_839_355_468_75f32.to_bits(), 0x42b1_7218);
        assert_eq!((-87.336_547_851_562_5f32).to_bits(), 0xc2ae_ac50);
        assert_eq!(1.442_695_021_629_333_496_093_75f32.to_bits(), 0x3fb8_aa3b);
        assert_eq!(0.693_145_751_953_125f32.to_bits(), 0x3f31_7200);
    }

    #[test]
    fn exp_accuracy_dense_sweep() {
        // Every 61st f32 bit pattern in the finite, non-clamped range, plus
        // a fine sweep of [-1, 1].
        let mut worst = 0u32;
        let mut worst_x = 0.0f32;
        let mut check = |x: f32| {
            let got = exp(x);
            let want = (x as f64).exp() as f32;
            let d = ulp_diff(got, want);
            if d > worst {
                worst = d;
                worst_x = x;
            }
        };
        let lo = -87.33f32;
        let hi = 88.72f32;
        for bits in (0u32..0x8000_0000).step_by(61) {
            let x = f32::from_bits(bits);
            if x < hi {
                check(x);
            }
            let xn = -x;
            if xn > lo {
                check(xn);
            }
        }
        let mut x = -1.0f32;
        while x <= 1.0 {
            check(x);
            x += 1.0 / 65536.0;
        }
        // Against the correctly rounded f32 value: 2 ulp covers the polynomial
        // and reduction error (measured: 1).
        eprintln!("exp: worst {worst} ulp at {worst_x}");
        assert!(worst <= 2, "worst {worst} ulp at {worst_x}");
    }

    #[test]
    fn exp_edge_cases() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(f32::NEG_INFINITY).to_bits(), 0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(88.722_839_355_468_75), f32::INFINITY);
        assert_eq!(exp(-87.336_547_851_562_5).to_bits(), 0);
        // Just inside both cut-offs: finite, normal.
        let top = exp(f32::from_bits(0x42b1_7217));
        assert!(top.is_finite() && top > 3.4e38, "{top}");
        let bottom = exp(f32::from_bits(0xc2ae_ac4f));
        assert!(bottom.is_normal(), "{bottom}");
        // k = 128 branch: x where x*log2e rounds to 128.
        let x = 88.5f32;
        assert!(ulp_diff(exp(x), (x as f64).exp() as f32) <= 2);
    }

    #[test]
    fn exp_is_monotonic() {
        // A coarse sweep, plus every f32 within 300 ulp of each point where
        // the reduction switches k (x = (k + 1/2) ln 2): the only places where
        // two polynomial pieces meet.
        let mut xs: Vec<f32> = (0..2_000_000)
            .map(|i| (-87.3 + i as f64 * (176.0 / 2_000_000.0)) as f32)
            .collect();
        for k in -126..=128 {
            let c = ((k as f64 + 0.5) * std::f64::consts::LN_2) as f32;
            for d in -300i32..=300 {
                let b = c.to_bits() as i32 + if c < 0.0 { -d } else { d };
                xs.push(f32::from_bits(b as u32));
            }
        }
        xs.retain(|x| *x > -87.33 && *x < 88.72);
        xs.sort_by(|a, b| a.total_cmp(b));
        for w in xs.windows(2) {
            assert!(
                exp(w[0]) <= exp(w[1]),
                "exp not monotonic at {} -> {}",
                w[0],
                w[1]
            );
        }
    }

    fn rel(a: f64, b: f64) -> f64 {
        if a == b {
            0.0
        } else {
            ((a - b) / b).abs()
        }
    }

    #[test]
    fn exp64_accuracy() {
        let mut worst: f64 = 0.0;
        let mut x: f64 = -708.0;
        while x < 709.0 {
            worst = worst.max(rel(exp64(x), x.exp()));
            x += 0.0137;
        }
        let mut x = -1.0;
        while x < 1.0 {
            worst = worst.max(rel(exp64(x), x.exp()));
            x += 1.0 / 4097.0;
        }
        assert!(worst < 1e-15, "exp64 worst relative error {worst}");
        assert_eq!(exp64(0.0), 1.0);
        assert_eq!(exp64(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp64(f64::NEG_INFINITY), 0.0);
        assert!(exp64(f64::NAN).is_nan());
        // Subnormal results are still close.
        assert!(rel(exp64(-740.0), (-740.0f64).exp()) < 1e-10);
    }

    #[test]
    fn ln64_accuracy() {
        let mut worst: f64 = 0.0;
        let mut x: f64 = 1e-300;
        while x < 1e300 {
            worst = worst.max(rel(ln64(x), x.ln()));
            x *= 1.0123;
        }
        let mut x: f64 = 0.5;
        while x < 2.0 {
            let want = x.ln();
            if want.abs() > 1e-3 {
                worst = worst.max(rel(ln64(x), want));
            } else {
                // Near 1 compare absolutely (ln is ~0).
                assert!((ln64(x) - want).abs() < 1e-18, "{x}");
            }
            x += 1.0 / 8191.0;
        }
        assert!(worst < 1e-15, "ln64 worst relative error {worst}");
        assert_eq!(ln64(1.0), 0.0);
        assert_eq!(ln64(0.0), f64::NEG_INFINITY);
        assert!(ln64(-1.0).is_nan());
        assert!(ln64(f64::NAN).is_nan());
        assert_eq!(ln64(f64::INFINITY), f64::INFINITY);
        let sub = 1e-310;
        assert!(rel(ln64(sub), sub.ln()) < 1e-15);
        assert!(rel(ln64(100_000.0), 100_000.0f64.ln()) < 1e-15);
    }

    #[test]
    fn sin_cos64_accuracy() {
        let mut worst: f64 = 0.0;
        let mut x: f64 = -10_000.0;
        while x < 10_000.0 {
            worst = worst.max((sin64(x) - x.sin()).abs());
            worst = worst.max((cos64(x) - x.cos()).abs());
            x += 0.000_713_1;
        }
        // RoPE arguments: p * theta for the real table shape.
        for p in [1u32, 7, 100, 4095, 8191, 1 << 19] {
            for j in 0..32 {
                let t = exp64(-((2 * j) as f64 / 64.0) * ln64(100_000.0));
                let a = p as f64 * t;
                worst = worst.max((sin64(a) - a.sin()).abs());
                worst = worst.max((cos64(a) - a.cos()).abs());
            }
        }
        assert!(worst < 1e-15, "sin/cos worst absolute error {worst}");
        // Small arguments: relative accuracy of sin.
        for x in [1e-300, 1e-10, 1e-3, 0.1, 0.78] {
            assert!(rel(sin64(x), x.sin()) < 1e-15, "{x}");
            assert!(rel(sin64(-x), (-x).sin()) < 1e-15, "{x}");
        }
        assert_eq!(sin64(0.0), 0.0);
        assert_eq!(cos64(0.0), 1.0);
        assert!(sin64(f64::NAN).is_nan() && cos64(f64::INFINITY).is_nan());
    }

    #[test]
    fn rope_table_shape_and_values() {
        let t = RopeTable::new(64, 100_000.0, 300);
        assert_eq!(t.n_pos(), 300);
        let (c0, s0) = t.at(0);
        assert!(c0.iter().all(|&c| c == 1.0) && s0.iter().all(|&s| s == 0.0));
        let (c, s) = t.at(299);
        for j in 0..32 {
            let theta = 100_000f64.powf(-(2.0 * j as f64) / 64.0);
            let a = 299.0 * theta;
            assert!((c[j] as f64 - a.cos()).abs() <= 6e-8, "cos j={j}");
            assert!((s[j] as f64 - a.sin()).abs() <= 6e-8, "sin j={j}");
        }
    }
}
