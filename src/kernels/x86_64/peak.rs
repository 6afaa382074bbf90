//! The x86_64 variants' int8 peak loops (`kernels::peak`): the matrix
//! kernels' own dot-product instructions on independent accumulators.
//!
//! # Safety
//! Each function needs the features it enables (checked when its table was
//! chosen: see the dispatch module).

use std::arch::asm;
use std::arch::x86_64::*;

/// Accumulators of [`peak_avx512`]: `vpdpbusd` has a latency of about 5
/// cycles and up to 2 issue per cycle, so 12 chains keep it busy.
const AVX512_CHAINS: usize = 12;
/// Multiply-adds per round of [`peak_avx512`] (64 per `vpdpbusd`).
pub(super) const AVX512_MACS: u64 = AVX512_CHAINS as u64 * 64;

/// Chains of [`peak_avx2`]: with its inputs, the constants and the
/// accumulators they fill the 16 ymm registers without a spill.
const AVX2_CHAINS: usize = 6;
/// Multiply-adds per round of [`peak_avx2`] (32 per `vpmaddubsw`).
pub(super) const AVX2_MACS: u64 = AVX2_CHAINS as u64 * 32;

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn peak_avx512(iters: u64, u: u8, s: i8) -> i32 {
    let (vu, vs) = (_mm512_set1_epi8(u as i8), _mm512_set1_epi8(s));
    let mut acc = [_mm512_setzero_si512(); AVX512_CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_dpbusd_epi32(*a, vu, vs);
        }
    }
    let t = acc
        .iter()
        .fold(_mm512_setzero_si512(), |t, &a| _mm512_add_epi32(t, a));
    _mm512_reduce_add_epi32(t)
}

#[target_feature(enable = "avx2")]
pub(super) unsafe fn peak_avx2(iters: u64, u: u8, s: i8) -> i32 {
    let (vu, ones) = (_mm256_set1_epi8(u as i8), _mm256_set1_epi16(1));
    let mut vs = [_mm256_set1_epi8(s); AVX2_CHAINS];
    let mut acc = [_mm256_setzero_si256(); AVX2_CHAINS];
    for _ in 0..iters {
        for (a, v) in acc.iter_mut().zip(vs.iter_mut()) {
            // The products do not depend on the accumulators: an empty asm
            // statement makes each chain's input opaque every round, or
            // the compiler would compute them once.
            asm!(
                "/* {0} */",
                inout(ymm_reg) * v,
                options(nomem, nostack, preserves_flags)
            );
            *a = _mm256_add_epi32(*a, _mm256_madd_epi16(_mm256_maddubs_epi16(vu, *v), ones));
        }
    }
    let t = acc
        .iter()
        .fold(_mm256_setzero_si256(), |t, &a| _mm256_add_epi32(t, a));
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), t);
    lanes.iter().fold(0i32, |t, &l| t.wrapping_add(l))
}

/// The scalar loop compiled with FMA enabled (its table's entry).
#[target_feature(enable = "fma")]
pub(super) unsafe fn peak_scalar_fma(iters: u64, u: u8, s: i8) -> i32 {
    crate::kernels::peak::peak_scalar(iters, u, s)
}
