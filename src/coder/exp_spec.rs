//! Local copy of the pinned `exp` of docs/NUMERICS.md section 5.
//!
//! `crate::kernels::math::exp` is the authoritative implementation; this copy
//! exists only until that module is merged, and must then be replaced by a
//! re-export (the test below will hold the two together meanwhile).

// The literals are the spec's decimal constants, rounded to f32 by the compiler.
#![allow(clippy::excessive_precision)]

/// f32 `exp(x)` exactly as NUMERICS.md section 5 specifies.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const HI: f32 = 88.722_839_355_468_75;
    const LO: f32 = -87.336_540_222_167_97;
    const LOG2E: f32 = 1.442_695_021_629_333_496_093_75;
    const LN2_HI: f32 = 0.693_145_751_953_125;
    const LN2_LO: f32 = 1.428_606_765_330_187_045e-6;
    if x.is_nan() {
        return x;
    }
    if x >= HI {
        return f32::INFINITY;
    }
    if x <= LO {
        return 0.0;
    }
    // round_ties_even for |v| < 2^22 via the 1.5*2^23 trick (bit-identical).
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
    let ki = k as i32;
    if ki > 127 {
        (p * f32::from_bits(254 << 23)) * 2.0
    } else if ki < -126 {
        (p * f32::from_bits(((ki + 64 + 127) as u32) << 23)) * f32::from_bits(63 << 23)
    } else {
        p * f32::from_bits(((ki + 127) as u32) << 23)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_to_std_exp() {
        let mut x = -87.0f32;
        while x < 0.0 {
            let a = super::exp(x) as f64;
            let b = (x as f64).exp();
            assert!(((a - b) / b).abs() < 1e-6, "{x}: {a} vs {b}");
            x += 0.01;
        }
        assert_eq!(super::exp(0.0).to_bits(), 1.0f32.to_bits());
        assert_eq!(super::exp(-100.0).to_bits(), 0);
        assert_eq!(super::exp(f32::NEG_INFINITY).to_bits(), 0);
    }
}
