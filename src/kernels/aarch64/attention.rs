//! Lane types over NEON registers. Their methods are only called
//! (inlined) from [`super::neon`] / [`super::neon_dot`], compiled with
//! NEON (and `dotprod` for [`Q4Dot`]), entered only for a variant whose
//! availability was checked.
use crate::kernels::attention::{variant_entry, Lanes, KG, L};
use std::arch::aarch64::*;

/// Four q registers of 4 f32; integer dot products with widening
/// multiplies.
#[derive(Clone, Copy)]
pub struct Q4([float32x4_t; 4]);

/// Four q registers of 4 f32; integer dot products with `sdot`.
#[derive(Clone, Copy)]
pub struct Q4Dot(Q4);

/// The f32 operations of both lane types.
impl Q4 {
    #[inline(always)]
    fn zero_() -> Self {
        // SAFETY: NEON (module docs).
        Q4(unsafe { [vdupq_n_f32(0.0); 4] })
    }
    #[inline(always)]
    fn load_(s: &[f32]) -> Self {
        assert!(s.len() >= L);
        // SAFETY: 16 floats readable (checked); NEON.
        unsafe {
            let p = s.as_ptr();
            Q4([
                vld1q_f32(p),
                vld1q_f32(p.add(4)),
                vld1q_f32(p.add(8)),
                vld1q_f32(p.add(12)),
            ])
        }
    }
    #[inline(always)]
    fn load_i8_(s: &[i8]) -> Self {
        assert!(s.len() >= L);
        // SAFETY: 16 bytes readable (checked); NEON. sxtl + scvtf: exact.
        unsafe {
            let v = vld1q_s8(s.as_ptr());
            let lo = vmovl_s8(vget_low_s8(v));
            let hi = vmovl_high_s8(v);
            Q4([
                vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
                vcvtq_f32_s32(vmovl_high_s16(lo)),
                vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
                vcvtq_f32_s32(vmovl_high_s16(hi)),
            ])
        }
    }
    #[inline(always)]
    fn store_(self, s: &mut [f32]) {
        assert!(s.len() >= L);
        // SAFETY: 16 floats writable (checked); NEON.
        unsafe {
            let p = s.as_mut_ptr();
            for (c, &r) in self.0.iter().enumerate() {
                vst1q_f32(p.add(4 * c), r);
            }
        }
    }
    #[inline(always)]
    fn fma_(self, a: f32, v: Self) -> Self {
        // vfmaq_n_f32(acc, v, a) = acc + v * a, fused (one rounding).
        // SAFETY: NEON.
        let mut r = self.0;
        for (r, &x) in r.iter_mut().zip(&v.0) {
            *r = unsafe { vfmaq_n_f32(*r, x, a) };
        }
        Q4(r)
    }
    #[inline(always)]
    fn mul_(self, v: Self) -> Self {
        let mut r = self.0;
        for (r, &x) in r.iter_mut().zip(&v.0) {
            // SAFETY: NEON.
            *r = unsafe { vmulq_f32(*r, x) };
        }
        Q4(r)
    }
    /// Lanes `((sums[t] - bias) as f32) * (self[t] * dq)`.
    #[inline(always)]
    fn scores_(self, sums: [int32x4_t; 4], bias: i32, dq: f32) -> Self {
        let mut r = self.0;
        for (r, &a) in r.iter_mut().zip(&sums) {
            // SAFETY: NEON.
            *r = unsafe {
                let i = vcvtq_f32_s32(vsubq_s32(a, vdupq_n_s32(bias)));
                vmulq_f32(i, vmulq_n_f32(*r, dq))
            };
        }
        Q4(r)
    }
    #[inline(always)]
    fn load_k_(s: &[i8]) -> [int8x16_t; 4] {
        assert!(s.len() >= KG);
        // SAFETY: 64 bytes readable (checked); NEON.
        unsafe {
            let p = s.as_ptr();
            [
                vld1q_s8(p),
                vld1q_s8(p.add(16)),
                vld1q_s8(p.add(32)),
                vld1q_s8(p.add(48)),
            ]
        }
    }
}

/// `prfm pldl2keep` of the line holding `p[0]`.
#[inline(always)]
fn prfm_l2(p: &[u8]) {
    // SAFETY: `prfm` is a hint: it never faults and writes nothing.
    unsafe {
        std::arch::asm!("prfm pldl2keep, [{0}]", in(reg) p.as_ptr(), options(nostack, preserves_flags, readonly))
    };
}

impl Lanes for Q4 {
    /// Keys 4r..4r+4 in register r.
    type K = [int8x16_t; 4];
    /// Register 2r + h: keys 4r + 2h, 4r + 2h + 1, two partial sums
    /// each.
    type I = [int32x4_t; 8];
    const Q_BIAS: i32 = 0;

    #[inline(always)]
    fn prefetch_l2(p: &[u8]) {
        prfm_l2(p)
    }
    #[inline(always)]
    fn zero() -> Self {
        Q4::zero_()
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        Q4::load_(s)
    }
    #[inline(always)]
    fn load_i8(s: &[i8]) -> Self {
        Q4::load_i8_(s)
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        self.store_(s)
    }
    #[inline(always)]
    fn fma(self, a: f32, v: Self) -> Self {
        self.fma_(a, v)
    }
    #[inline(always)]
    fn mul(self, v: Self) -> Self {
        self.mul_(v)
    }
    #[inline(always)]
    fn load_k(s: &[i8]) -> Self::K {
        Q4::load_k_(s)
    }
    #[inline(always)]
    fn izero() -> Self::I {
        // SAFETY: NEON.
        unsafe { [vdupq_n_s32(0); 8] }
    }
    #[inline(always)]
    fn dot(mut acc: Self::I, k: Self::K, q: u32) -> Self::I {
        // smull: i8 x i8 into i16 (|product| <= 128 * 127, exact);
        // sadalp adds neighbouring products into the i32 lanes.
        // SAFETY: NEON.
        unsafe {
            let q = vreinterpretq_s8_u32(vdupq_n_u32(q));
            let ql = vget_low_s8(q);
            for (r, &kr) in k.iter().enumerate() {
                acc[2 * r] = vpadalq_s16(acc[2 * r], vmull_s8(vget_low_s8(kr), ql));
                acc[2 * r + 1] = vpadalq_s16(acc[2 * r + 1], vmull_high_s8(kr, q));
            }
        }
        acc
    }
    #[inline(always)]
    fn scores(acc: Self::I, bias: i32, dk: Self, dq: f32) -> Self {
        // SAFETY: NEON.
        let sums = unsafe {
            [
                vpaddq_s32(acc[0], acc[1]),
                vpaddq_s32(acc[2], acc[3]),
                vpaddq_s32(acc[4], acc[5]),
                vpaddq_s32(acc[6], acc[7]),
            ]
        };
        Q4(dk.0).scores_(sums, bias, dq)
    }
}

impl Lanes for Q4Dot {
    /// Keys 4r..4r+4 in register r.
    type K = [int8x16_t; 4];
    /// Keys 4r..4r+4 in register r.
    type I = [int32x4_t; 4];
    const Q_BIAS: i32 = 0;

    #[inline(always)]
    fn prefetch_l2(p: &[u8]) {
        prfm_l2(p)
    }
    #[inline(always)]
    fn zero() -> Self {
        Q4Dot(Q4::zero_())
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        Q4Dot(Q4::load_(s))
    }
    #[inline(always)]
    fn load_i8(s: &[i8]) -> Self {
        Q4Dot(Q4::load_i8_(s))
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        self.0.store_(s)
    }
    #[inline(always)]
    fn fma(self, a: f32, v: Self) -> Self {
        Q4Dot(self.0.fma_(a, v.0))
    }
    #[inline(always)]
    fn mul(self, v: Self) -> Self {
        Q4Dot(self.0.mul_(v.0))
    }
    #[inline(always)]
    fn load_k(s: &[i8]) -> Self::K {
        Q4::load_k_(s)
    }
    #[inline(always)]
    fn izero() -> Self::I {
        // SAFETY: NEON.
        unsafe { [vdupq_n_s32(0); 4] }
    }
    #[inline(always)]
    fn dot(mut acc: Self::I, k: Self::K, q: u32) -> Self::I {
        // SAFETY: NEON.
        let q = unsafe { vreinterpretq_s8_u32(vdupq_n_u32(q)) };
        for (a, &kr) in acc.iter_mut().zip(&k) {
            // SAFETY: register-only; reached only from `dotprod` code
            // (module docs).
            *a = unsafe { super::neon::sdot(*a, kr, q) };
        }
        acc
    }
    #[inline(always)]
    fn scores(acc: Self::I, bias: i32, dk: Self, dq: f32) -> Self {
        Q4Dot(dk.0.scores_(acc, bias, dq))
    }
}

variant_entry!(
    /// 32 q registers: a 16-key integer accumulator takes eight (pairwise
    /// partial sums); an output pass keeps 64 dimensions (16 registers).
    neon, "neon", Q4, 2, 1
);
variant_entry!(
    /// A 16-key integer accumulator takes four q registers.
    neon_dot, "neon,dotprod", Q4Dot, 6, 1
);
