//! The aarch64 variants' int8 peak loops (`kernels::peak`): the matrix
//! kernels' own dot-product instructions on independent accumulators.
//!
//! # Safety
//! Each function needs the features of its variant (checked when its table
//! was chosen: see the dispatch module).

use std::arch::aarch64::*;
use std::arch::asm;

use super::neon::sdot;

/// Accumulators of both loops (latency about 3-4 cycles, 2 issue per cycle).
const CHAINS: usize = 8;
/// Multiply-adds per round of [`peak_neon`] (8 per `smull` of 8 bytes).
pub(super) const NEON_MACS: u64 = CHAINS as u64 * 8;
/// Multiply-adds per round of [`peak_dot`] (16 per `sdot`).
pub(super) const DOT_MACS: u64 = CHAINS as u64 * 16;

#[target_feature(enable = "neon")]
pub(super) unsafe fn peak_neon(iters: u64, u: u8, s: i8) -> i32 {
    let vu = vdup_n_s8(u as i8);
    let mut vs = [vdup_n_s8(s); CHAINS];
    let mut acc = [vdupq_n_s32(0); CHAINS];
    for _ in 0..iters {
        for (a, v) in acc.iter_mut().zip(vs.iter_mut()) {
            // The products do not depend on the accumulators: an empty asm
            // statement makes each chain's input opaque every round, or
            // the compiler would compute them once.
            asm!(
                "/* {0:v} */",
                inout(vreg) * v,
                options(nomem, nostack, preserves_flags)
            );
            *a = vpadalq_s16(*a, vmull_s8(vu, *v));
        }
    }
    sum(&acc)
}

#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn peak_dot(iters: u64, u: u8, s: i8) -> i32 {
    let (vu, vs) = (vdupq_n_s8(u as i8), vdupq_n_s8(s));
    let mut acc = [vdupq_n_s32(0); CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = sdot(*a, vu, vs);
        }
    }
    sum(&acc)
}

/// Wrapping sum of every lane.
#[target_feature(enable = "neon")]
unsafe fn sum(acc: &[int32x4_t]) -> i32 {
    let t = acc.iter().fold(vdupq_n_s32(0), |t, &a| vaddq_s32(t, a));
    vaddvq_s32(t)
}
