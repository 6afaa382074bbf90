//! The x86 lane types of the int8 row rules ([`QuantLanes`]) and the
//! entries that instantiate the generic bodies with them.

use crate::kernels::consts::MAGIC;
use crate::kernels::quant::{quant_blocks_simd, quant_row_simd, QuantLanes};
use std::arch::x86_64::*;

/// 16 lanes (AVX-512F/BW).
#[derive(Clone, Copy)]
pub struct Z(__m512);

impl QuantLanes for Z {
    const N: usize = 16;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Z(_mm512_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        Z(_mm512_setzero_ps())
    }
    #[inline(always)]
    unsafe fn abs_max(self, m: Self) -> Self {
        let a = _mm512_and_si512(_mm512_castps_si512(self.0), _mm512_set1_epi32(i32::MAX));
        Z(_mm512_max_ps(_mm512_castsi512_ps(a), m.0))
    }
    #[inline(always)]
    unsafe fn hmax(self) -> f32 {
        _mm512_reduce_max_ps(self.0)
    }
    #[inline(always)]
    unsafe fn quant(self, inv: f32, out: *mut i8) -> i32 {
        let m = _mm512_set1_ps(MAGIC);
        let r = _mm512_sub_ps(
            _mm512_add_ps(_mm512_mul_ps(self.0, _mm512_set1_ps(inv)), m),
            m,
        );
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(r, r);
        let c = _mm512_max_ps(
            _mm512_min_ps(r, _mm512_set1_ps(127.0)),
            _mm512_set1_ps(-127.0),
        );
        let i = _mm512_cvtps_epi32(_mm512_mask_mov_ps(c, nan, _mm512_setzero_ps()));
        _mm_storeu_si128(out as *mut __m128i, _mm512_cvtepi32_epi8(i));
        _mm512_reduce_add_epi32(i)
    }
}

/// 8 lanes (AVX2).
#[derive(Clone, Copy)]
pub struct Y(__m256);

impl QuantLanes for Y {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Y(_mm256_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        Y(_mm256_setzero_ps())
    }
    #[inline(always)]
    unsafe fn abs_max(self, m: Self) -> Self {
        let a = _mm256_and_si256(_mm256_castps_si256(self.0), _mm256_set1_epi32(i32::MAX));
        Y(_mm256_max_ps(_mm256_castsi256_ps(a), m.0))
    }
    #[inline(always)]
    unsafe fn hmax(self) -> f32 {
        let mut l = [0f32; 8];
        _mm256_storeu_ps(l.as_mut_ptr(), self.0);
        l.iter().fold(0.0, |m, &a| m.max(a))
    }
    #[inline(always)]
    unsafe fn quant(self, inv: f32, out: *mut i8) -> i32 {
        let m = _mm256_set1_ps(MAGIC);
        let r = _mm256_sub_ps(
            _mm256_add_ps(_mm256_mul_ps(self.0, _mm256_set1_ps(inv)), m),
            m,
        );
        let ord = _mm256_cmp_ps::<_CMP_ORD_Q>(r, r);
        let c = _mm256_max_ps(
            _mm256_min_ps(r, _mm256_set1_ps(127.0)),
            _mm256_set1_ps(-127.0),
        );
        // NaN lanes (ord = 0) become +0.
        let i = _mm256_cvtps_epi32(_mm256_and_ps(c, ord));
        // i32 -> i8 (exact: |q| <= 127): lanes 0..4 land in the low
        // word of the low 128-bit half, 4..8 in that of the high one.
        let b = _mm256_packs_epi16(_mm256_packs_epi32(i, i), _mm256_setzero_si256());
        (out as *mut [i32; 2])
            .write_unaligned([_mm256_extract_epi32::<0>(b), _mm256_extract_epi32::<4>(b)]);
        let h = _mm_add_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256::<1>(i));
        let h = _mm_add_epi32(h, _mm_shuffle_epi32::<0b01_00_11_10>(h));
        let h = _mm_add_epi32(h, _mm_shuffle_epi32::<0b10_11_00_01>(h));
        _mm_cvtsi128_si32(h)
    }
}

/// [`crate::kernels::scalar::quant_head`] in AVX-512 registers.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
pub(crate) unsafe fn quant_head_avx512(x: &[f32], q: &mut [i8]) -> f32 {
    quant_row_simd::<Z>(x, q)
}

/// [`crate::kernels::scalar::quant_head`] in AVX2 registers.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quant_head_avx2(x: &[f32], q: &mut [i8]) -> f32 {
    quant_row_simd::<Y>(x, q)
}

/// Activation quantization of a row in AVX-512 registers.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
pub(crate) unsafe fn quantize_row_avx512(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quant_blocks_simd::<Z>(x, q, d, s)
}

/// Activation quantization of a row in AVX2 registers.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quantize_row_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quant_blocks_simd::<Y>(x, q, d, s)
}
