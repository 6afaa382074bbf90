//! Lane types over x86 vector registers. Their methods are only called
//! (inlined) from functions compiled with the matching features, which
//! [`crate::kernels::batch::attention_batch`] enters only for a variant whose
//! availability was checked.
use crate::kernels::attention::{variant_entry, Lanes, KG, L};
use std::arch::x86_64::*;

/// One zmm register (AVX-512F, VNNI for the dot products).
#[derive(Clone, Copy)]
pub struct Zmm(__m512);

impl Lanes for Zmm {
    /// The group's bytes plus 128 (as u8: `vpdpbusd` multiplies u8 by
    /// i8), so every sum is off by `128 * sum(q)`.
    type K = __m512i;
    type I = __m512i;
    const Q_BIAS: i32 = 128;

    #[inline(always)]
    fn prefetch_l2(p: &[u8]) {
        // SAFETY: a prefetch never faults and writes nothing; SSE is
        // baseline on x86_64.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.as_ptr().cast()) }
    }

    #[inline(always)]
    fn quant_head(x: &[f32], q: &mut [i8]) -> f32 {
        // SAFETY: this lane type is only used under `avx512` (features
        // checked when the `Kernels` was made).
        unsafe { super::quant::quant_head_avx512(x, q) }
    }

    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: only reached from avx512f code (module docs).
        Zmm(unsafe { _mm512_setzero_ps() })
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        assert!(s.len() >= L);
        // SAFETY: 16 floats readable (checked); features as above.
        Zmm(unsafe { _mm512_loadu_ps(s.as_ptr()) })
    }
    #[inline(always)]
    fn load_i8(s: &[i8]) -> Self {
        assert!(s.len() >= L);
        // SAFETY: 16 bytes readable (checked); features as above.
        Zmm(unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(s.as_ptr().cast()))) })
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        assert!(s.len() >= L);
        // SAFETY: 16 floats writable (checked); features as above.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), self.0) }
    }
    #[inline(always)]
    fn fma(self, a: f32, v: Self) -> Self {
        // SAFETY: features as above.
        Zmm(unsafe { _mm512_fmadd_ps(_mm512_set1_ps(a), v.0, self.0) })
    }
    #[inline(always)]
    fn mul(self, v: Self) -> Self {
        // SAFETY: features as above.
        Zmm(unsafe { _mm512_mul_ps(self.0, v.0) })
    }
    #[inline(always)]
    fn load_k(s: &[i8]) -> Self::K {
        assert!(s.len() >= KG);
        // SAFETY: 64 bytes readable (checked); features as above.
        unsafe {
            _mm512_xor_si512(
                _mm512_loadu_si512(s.as_ptr().cast()),
                _mm512_set1_epi8(-128),
            )
        }
    }
    #[inline(always)]
    fn izero() -> Self::I {
        // SAFETY: features as above.
        unsafe { _mm512_setzero_si512() }
    }
    #[inline(always)]
    fn dot(acc: Self::I, k: Self::K, q: u32) -> Self::I {
        // (k + 128) * q summed over 4 bytes per key: exact in i32.
        // SAFETY: avx512vnni, checked with the variant (module docs).
        unsafe { _mm512_dpbusd_epi32(acc, k, _mm512_set1_epi32(q as i32)) }
    }
    #[inline(always)]
    fn scores(acc: Self::I, bias: i32, dk: Self, dq: f32) -> Self {
        // SAFETY: features as above.
        unsafe {
            let i = _mm512_sub_epi32(acc, _mm512_set1_epi32(bias));
            let c = _mm512_mul_ps(dk.0, _mm512_set1_ps(dq));
            Zmm(_mm512_mul_ps(_mm512_cvtepi32_ps(i), c))
        }
    }
}

/// Two ymm registers (AVX2 + FMA).
#[derive(Clone, Copy)]
pub struct Ymm2(__m256, __m256);

impl Lanes for Ymm2 {
    /// Keys 0..8 and 8..16: (|k| as u8, k).
    type K = [__m256i; 4];
    type I = (__m256i, __m256i);
    const Q_BIAS: i32 = 0;

    #[inline(always)]
    fn prefetch_l2(p: &[u8]) {
        // SAFETY: a prefetch never faults and writes nothing; SSE is
        // baseline on x86_64.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.as_ptr().cast()) }
    }

    #[inline(always)]
    fn quant_head(x: &[f32], q: &mut [i8]) -> f32 {
        // SAFETY: this lane type is only used under `avx2` (features
        // checked when the `Kernels` was made).
        unsafe { super::quant::quant_head_avx2(x, q) }
    }

    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: only reached from avx2,fma code (module docs).
        unsafe { Ymm2(_mm256_setzero_ps(), _mm256_setzero_ps()) }
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        assert!(s.len() >= L);
        // SAFETY: 16 floats readable (checked); features as above.
        unsafe {
            Ymm2(
                _mm256_loadu_ps(s.as_ptr()),
                _mm256_loadu_ps(s.as_ptr().add(8)),
            )
        }
    }
    #[inline(always)]
    fn load_i8(s: &[i8]) -> Self {
        assert!(s.len() >= L);
        // SAFETY: 16 bytes readable (checked); features as above.
        unsafe {
            let a = _mm_loadu_si128(s.as_ptr().cast());
            Ymm2(
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a)),
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(a))),
            )
        }
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        assert!(s.len() >= L);
        // SAFETY: 16 floats writable (checked); features as above.
        unsafe {
            _mm256_storeu_ps(s.as_mut_ptr(), self.0);
            _mm256_storeu_ps(s.as_mut_ptr().add(8), self.1);
        }
    }
    #[inline(always)]
    fn fma(self, a: f32, v: Self) -> Self {
        // SAFETY: features as above.
        unsafe {
            let a = _mm256_set1_ps(a);
            Ymm2(
                _mm256_fmadd_ps(a, v.0, self.0),
                _mm256_fmadd_ps(a, v.1, self.1),
            )
        }
    }
    #[inline(always)]
    fn mul(self, v: Self) -> Self {
        // SAFETY: features as above.
        unsafe { Ymm2(_mm256_mul_ps(self.0, v.0), _mm256_mul_ps(self.1, v.1)) }
    }
    #[inline(always)]
    fn load_k(s: &[i8]) -> Self::K {
        assert!(s.len() >= KG);
        // SAFETY: 64 bytes readable (checked); features as above.
        unsafe {
            let a = _mm256_loadu_si256(s.as_ptr().cast());
            let b = _mm256_loadu_si256(s.as_ptr().add(32).cast());
            [_mm256_abs_epi8(a), a, _mm256_abs_epi8(b), b]
        }
    }
    #[inline(always)]
    fn izero() -> Self::I {
        // SAFETY: features as above.
        unsafe { (_mm256_setzero_si256(), _mm256_setzero_si256()) }
    }
    #[inline(always)]
    fn dot(acc: Self::I, k: Self::K, q: u32) -> Self::I {
        // k * q = |k| * (q * sign(k)) (sign(-128) included: |-128| is
        // 128 as u8). vpmaddubsw adds two such products into an i16:
        // |q| <= 127 and |k| <= 128 keep it within 2 * 128 * 127, no
        // saturation; vpmaddwd by 1 adds the pairs into the key's i32.
        // SAFETY: features as above.
        unsafe {
            let q = _mm256_set1_epi32(q as i32);
            let one = _mm256_set1_epi16(1);
            let lo = _mm256_maddubs_epi16(k[0], _mm256_sign_epi8(q, k[1]));
            let hi = _mm256_maddubs_epi16(k[2], _mm256_sign_epi8(q, k[3]));
            (
                _mm256_add_epi32(acc.0, _mm256_madd_epi16(lo, one)),
                _mm256_add_epi32(acc.1, _mm256_madd_epi16(hi, one)),
            )
        }
    }
    #[inline(always)]
    fn scores(acc: Self::I, bias: i32, dk: Self, dq: f32) -> Self {
        // SAFETY: features as above.
        unsafe {
            let b = _mm256_set1_epi32(bias);
            let q = _mm256_set1_ps(dq);
            let f = |a: __m256i, k: __m256| {
                _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_sub_epi32(a, b)),
                    _mm256_mul_ps(k, q),
                )
            };
            Ymm2(f(acc.0, dk.0), f(acc.1, dk.1))
        }
    }
}

variant_entry!(
    /// 32 zmm registers: 12 score accumulators, or 6 x 4 output ones.
    avx512, "avx512f,avx512bw,avx512vl,avx512vnni,fma", Zmm, 12, 6
);
variant_entry!(
    /// 16 ymm registers: a 16-lane accumulator takes two, a K group four
    /// (magnitudes and signed bytes).
    avx2, "avx2,fma", Ymm2, 4, 3
);
