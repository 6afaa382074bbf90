//! Batched kernels built from the specification's own operations.
//!
//! Batched attention: several queries that read the same KV head of the same
//! sequence (the query heads of one KV group, for a few consecutive tokens)
//! computed together, so each K tile and V row is loaded once for all of
//! them instead of once per query.
//!
//! Every query gets exactly the operations of [`super::scalar::attention`]
//! (NUMERICS.md section 7) in the same order: the same `q * scale`, one fma
//! chain over `d` per key, max, [`Kernels::exp_sub`], [`Kernels::sum16`], one
//! fma chain over `t` per output dimension, one division. Only the loop
//! nesting differs (queries side by side), which cannot change a result:
//! every chain is private to one (query, key) or (query, dimension). The
//! loops run on 16-lane values ([`Lanes`]) with four operations: load
//! (f32), load f16 and widen (exact: every f16 is an f32), store, and
//! `acc = fma(a, v, acc)` lane-wise, one IEEE fused multiply-add per lane,
//! the same operation as `f32::mul_add`. They are written once and
//! instantiated with an AVX-512 register, two AVX2 registers, four NEON
//! registers, or a plain array (other targets), so every variant gives the
//! bits of the scalar specification. Tests hold it to
//! [`super::scalar::attention`] with `to_bits()`. This is the only fast
//! attention: [`Kernels::attention`] of a SIMD variant is this with one
//! query.
//!
//! (The lane type is explicit because leaving the vectorization to the
//! compiler was fragile: for some block sizes it vectorized across queries
//! with gathers and ran ten times slower than the per-query kernel.)
//!
//! Activation quantization and SwiGLU are here too, as loops the compiler
//! vectorizes well: the same expressions as the scalar kernels.

use super::math::{f16_to_f32, round_small};
use super::{Kernels, KvView, QuantizedRows, Variant, KV_TILE, QK};

/// Lanes of one score vector: the keys of one K tile.
const L: usize = KV_TILE;

/// Attention of `qs.len()` queries over KV head `g` of one sequence:
/// query `i` (`qs[i]`, len `head_dim`) sees keys `0..n_keys[i]` and its result
/// goes to `out[i]` (len `head_dim`). Same bits as calling
/// [`Kernels::attention`] once per query.
///
/// `scratch` is reused between calls (grows to about `3 * qs.len() *
/// max(n_keys)` floats). Panics on inconsistent lengths or a view too short
/// for `max(n_keys)` keys (programming errors).
pub fn attention_batch(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut Vec<f32>,
    out: &mut [&mut [f32]],
) {
    let hd = kv.head_dim;
    let nkv = kv.n_kv_head;
    assert!(qs.len() == n_keys.len() && qs.len() == out.len() && g < nkv);
    assert!(qs.iter().all(|q| q.len() == hd) && out.iter().all(|o| o.len() == hd));
    assert!(n_keys.iter().all(|&n| n > 0));
    let Some(&max_keys) = n_keys.iter().max() else {
        return;
    };
    let tiles = max_keys.div_ceil(KV_TILE);
    assert!(kv.k.len() >= tiles * nkv * hd * KV_TILE);
    assert!(kv.v.len() >= max_keys * nkv * hd);
    if hd % L != 0 {
        // Head sizes that are not a multiple of 16 (none in practice): the
        // specification's kernel per query.
        for ((q, &n), o) in qs.iter().zip(n_keys).zip(out.iter_mut()) {
            super::scalar::attention(q, kv, g, n, scratch, o);
        }
        return;
    }
    match k.variant() {
        // SAFETY: a `Kernels` of these variants exists only after
        // `is_available()` confirmed the CPU features.
        #[cfg(target_arch = "x86_64")]
        Variant::Avx512 => unsafe { avx512(k, kv, g, qs, n_keys, scratch, out) },
        #[cfg(target_arch = "x86_64")]
        Variant::Avx2 => unsafe { avx2(k, kv, g, qs, n_keys, scratch, out) },
        #[cfg(target_arch = "aarch64")]
        Variant::Neon | Variant::NeonDot => unsafe { neon(k, kv, g, qs, n_keys, scratch, out) },
        _ => body::<Arr, 6, 3>(k, kv, g, qs, n_keys, scratch, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,fma")]
unsafe fn avx512(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut Vec<f32>,
    out: &mut [&mut [f32]],
) {
    // 32 zmm registers: 12 score accumulators, or 6 x 4 output ones.
    body::<x86::Zmm, 12, 6>(k, kv, g, qs, n_keys, scratch, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut Vec<f32>,
    out: &mut [&mut [f32]],
) {
    // 16 ymm registers: a 16-lane accumulator takes two.
    body::<x86::Ymm2, 6, 3>(k, kv, g, qs, n_keys, scratch, out)
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn neon(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut Vec<f32>,
    out: &mut [&mut [f32]],
) {
    // 32 q registers: a 16-lane accumulator takes four; an output pass
    // keeps 64 dimensions (16 registers) per query.
    body::<arm::Q4, 6, 1>(k, kv, g, qs, n_keys, scratch, out)
}

/// The batched computation with at most `QS` queries per score pass and `QP`
/// per output pass (register budget of the instruction set).
#[inline(always)]
fn body<V: Lanes, const QS: usize, const QP: usize>(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut Vec<f32>,
    out: &mut [&mut [f32]],
) {
    let hd = kv.head_dim;
    let nq = qs.len();
    let max_keys = *n_keys.iter().max().unwrap_or(&0);
    let stride = max_keys.div_ceil(L) * L;
    // scratch: scores [nq][stride], e [nq][stride], one block's scaled
    // queries transposed [hd][QS].
    let need = 2 * nq * stride + hd * QS;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (scores, rest) = scratch.split_at_mut(nq * stride);
    let (es, rest) = rest.split_at_mut(nq * stride);
    let qt = &mut rest[..hd * QS];
    let scale = 1.0 / (hd as f32).sqrt();

    // Scores: blocks of queries, each reading every K tile once.
    let mut i = 0;
    while i < nq {
        let left = nq - i;
        let b = match left {
            _ if left >= QS => QS,
            1..=3 => left,
            4 | 5 => 4,
            _ => 6,
        };
        let keys = n_keys[i..i + b].iter().copied().max().unwrap_or(0);
        // q'_d = q_d * scale, laid out [d][query] so one load serves a step.
        for (j, q) in qs[i..i + b].iter().enumerate() {
            for (d, &qd) in q.iter().enumerate() {
                qt[d * b + j] = qd * scale;
            }
        }
        let q = &qt[..hd * b];
        let sc = &mut scores[i * stride..(i + b) * stride];
        // Few queries: several K tiles per pass, so that enough independent
        // fma chains are in flight to hide the fma latency.
        match b {
            _ if b == QS => scores_block::<V, QS, 1>(kv, g, q, keys, stride, sc),
            1 => scores_block::<V, 1, 4>(kv, g, q, keys, stride, sc),
            2 => scores_block::<V, 2, 2>(kv, g, q, keys, stride, sc),
            3 => scores_block::<V, 3, 2>(kv, g, q, keys, stride, sc),
            4 => scores_block::<V, 4, 1>(kv, g, q, keys, stride, sc),
            _ => scores_block::<V, 6, 1>(kv, g, q, keys, stride, sc),
        }
        i += b;
    }

    // Softmax weights per query: max, exp(s - m), Z = sum16(e).
    let mut z = [0f32; 64];
    let mut zs = Vec::new();
    let zbuf: &mut [f32] = if nq <= z.len() {
        &mut z[..nq]
    } else {
        zs.resize(nq, 0.0);
        &mut zs
    };
    for (qi, zq) in zbuf.iter_mut().enumerate() {
        let n = n_keys[qi];
        let s = &scores[qi * stride..qi * stride + n];
        let m = max(s);
        let e = &mut es[qi * stride..qi * stride + n];
        k.exp_sub(s, m, e);
        *zq = k.sum16(e);
    }

    // Outputs: blocks of queries, each reading every V row once; the keys
    // all queries of the block see first, then each query's own tail.
    let mut i = 0;
    while i < nq {
        let b = (nq - i).min(QP);
        let common = n_keys[i..i + b].iter().copied().min().unwrap_or(0);
        let e = &es[i * stride..(i + b) * stride];
        let o = &mut out[i..i + b];
        match b {
            _ if b == QP => pv_block::<V, QP>(kv, g, e, stride, common, o),
            1 => pv_block::<V, 1>(kv, g, e, stride, common, o),
            2 => pv_block::<V, 2>(kv, g, e, stride, common, o),
            3 => pv_block::<V, 3>(kv, g, e, stride, common, o),
            4 => pv_block::<V, 4>(kv, g, e, stride, common, o),
            _ => pv_block::<V, 5>(kv, g, e, stride, common, o),
        }
        for (j, o) in o.iter_mut().enumerate() {
            let n = n_keys[i + j];
            let e = &e[j * stride..j * stride + n];
            pv_tail::<V>(kv, g, e, common, o);
            let zq = zbuf[i + j];
            for v in o.iter_mut() {
                *v /= zq;
            }
        }
        i += b;
    }
}

/// `max` of section 7 (exact, order-free; NaN ignored like `f32::max`).
#[inline(always)]
fn max(s: &[f32]) -> f32 {
    // `if v > m { v } else { m }` is `f32::max` here: `m` is never NaN and
    // a NaN `v` is ignored, as `f32::max` ignores it.
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut it = s.chunks_exact(L);
    for ch in &mut it {
        for (m, &v) in lanes.iter_mut().zip(ch) {
            *m = if v > *m { v } else { *m };
        }
    }
    let m = it
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    lanes.iter().fold(m, |m, &v| m.max(v))
}

/// 16 lanes of f32: one K tile's keys, or 16 output dimensions.
trait Lanes: Copy {
    fn zero() -> Self;
    /// `s[0..16]` (panics if shorter).
    fn load(s: &[f32]) -> Self;
    /// `s[0..16]`, IEEE binary16 bits, widened to f32 (exact; panics if
    /// shorter).
    fn load_f16(s: &[u16]) -> Self;
    /// Into `s[0..16]` (panics if shorter).
    fn store(self, s: &mut [f32]);
    /// Lane-wise `fma(a, v, self)`: one IEEE fused multiply-add per lane.
    fn fma(self, a: f32, v: Self) -> Self;
}

/// The portable lane type: 16 `f32::mul_add`.
#[derive(Clone, Copy)]
struct Arr([f32; L]);

impl Lanes for Arr {
    #[inline(always)]
    fn zero() -> Self {
        Arr([0.0; L])
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        Arr(s[..L].try_into().expect("16 lanes"))
    }
    #[inline(always)]
    fn load_f16(s: &[u16]) -> Self {
        let s: &[u16; L] = s[..L].try_into().expect("16 lanes");
        Arr(s.map(f16_to_f32))
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        s[..L].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn fma(mut self, a: f32, v: Self) -> Self {
        for (x, &y) in self.0.iter_mut().zip(&v.0) {
            *x = a.mul_add(y, *x);
        }
        self
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Lane types over x86 vector registers. Their methods are only called
    //! (inlined) from functions compiled with the matching features, which
    //! [`super::attention_batch`] enters only for a variant whose
    //! availability was checked.
    use super::{Lanes, L};
    use std::arch::x86_64::*;

    /// One zmm register (AVX-512F).
    #[derive(Clone, Copy)]
    pub struct Zmm(__m512);

    impl Lanes for Zmm {
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
        fn load_f16(s: &[u16]) -> Self {
            assert!(s.len() >= L);
            // SAFETY: 16 halves (32 bytes) readable (checked); features as
            // above (`vcvtph2ps` zmm is AVX-512F).
            Zmm(unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(s.as_ptr().cast())) })
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
    }

    /// Two ymm registers (AVX2 + FMA + F16C).
    #[derive(Clone, Copy)]
    pub struct Ymm2(__m256, __m256);

    impl Lanes for Ymm2 {
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
        fn load_f16(s: &[u16]) -> Self {
            assert!(s.len() >= L);
            // SAFETY: 16 halves readable (checked); features as above
            // (`vcvtph2ps` is F16C, part of this variant's check).
            unsafe {
                Ymm2(
                    _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().cast())),
                    _mm256_cvtph_ps(_mm_loadu_si128(s.as_ptr().add(8).cast())),
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
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    //! The lane type over NEON registers. Its methods are only called
    //! (inlined) from [`super::neon`], compiled with NEON, which every
    //! aarch64 Linux machine has (checked by the variant's availability).
    use super::{Lanes, L};
    use std::arch::aarch64::*;
    use std::arch::asm;

    /// Four q registers of 4 f32.
    #[derive(Clone, Copy)]
    pub struct Q4([float32x4_t; 4]);

    /// Lanes 0..4 and 4..8 of 8 halves, widened (`fcvtl`, `fcvtl2`: exact).
    /// Inline assembly because the f16 conversion intrinsics
    /// (`vcvt_f32_f16`) are not stable in Rust yet.
    #[inline(always)]
    fn widen(h: uint16x8_t) -> (float32x4_t, float32x4_t) {
        let (lo, hi): (float32x4_t, float32x4_t);
        // SAFETY: register-only conversions, available with NEON (module
        // docs); no memory access.
        unsafe {
            asm!(
                "fcvtl {lo:v}.4s, {h:v}.4h",
                "fcvtl2 {hi:v}.4s, {h:v}.8h",
                h = in(vreg) h,
                lo = out(vreg) lo,
                hi = out(vreg) hi,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        (lo, hi)
    }

    impl Lanes for Q4 {
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: NEON (module docs).
            Q4(unsafe { [vdupq_n_f32(0.0); 4] })
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
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
        fn load_f16(s: &[u16]) -> Self {
            assert!(s.len() >= L);
            // SAFETY: 16 halves readable (checked); NEON.
            let (a, b) = unsafe { (vld1q_u16(s.as_ptr()), vld1q_u16(s.as_ptr().add(8))) };
            let (a0, a1) = widen(a);
            let (b0, b1) = widen(b);
            Q4([a0, a1, b0, b1])
        }
        #[inline(always)]
        fn store(self, s: &mut [f32]) {
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
        fn fma(self, a: f32, v: Self) -> Self {
            // vfmaq_n_f32(acc, v, a) = acc + v * a, fused (one rounding).
            // SAFETY: NEON.
            Q4(std::array::from_fn(|c| unsafe {
                vfmaq_n_f32(self.0[c], v.0[c], a)
            }))
        }
    }
}

/// Scores of `B` queries (`q`: scaled, `[hd][B]`) for keys `0..keys`
/// rounded up to whole tiles: `sc[j * stride + t]`. Per query and key:
/// `acc = fma(q'_d, k_t[d], acc)` for d in order. `T` tiles per pass (the
/// last few one by one).
#[inline(always)]
fn scores_block<V: Lanes, const B: usize, const T: usize>(
    kv: &KvView<'_>,
    g: usize,
    q: &[f32],
    keys: usize,
    stride: usize,
    sc: &mut [f32],
) {
    let tiles = keys.div_ceil(L);
    let mut tile = 0;
    while tile + T <= tiles {
        scores_tiles::<V, B, T>(kv, g, q, tile, stride, sc);
        tile += T;
    }
    while tile < tiles {
        scores_tiles::<V, B, 1>(kv, g, q, tile, stride, sc);
        tile += 1;
    }
}

/// [`scores_block`] for tiles `tile0..tile0 + T`.
#[inline(always)]
fn scores_tiles<V: Lanes, const B: usize, const T: usize>(
    kv: &KvView<'_>,
    g: usize,
    q: &[f32],
    tile0: usize,
    stride: usize,
    sc: &mut [f32],
) {
    let hd = kv.head_dim;
    let nkv = kv.n_kv_head;
    assert!(q.len() == B * hd && sc.len() >= (B - 1) * stride + (tile0 + T) * L);
    let kt: [&[u16]; T] =
        std::array::from_fn(|i| &kv.k[((tile0 + i) * nkv + g) * hd * L..][..hd * L]);
    let mut acc = [[V::zero(); B]; T];
    for (d, qd) in q.chunks_exact(B).enumerate() {
        let qd: &[f32; B] = qd.try_into().expect("B queries");
        for (ai, k) in acc.iter_mut().zip(&kt) {
            let kd = V::load_f16(&k[d * L..]);
            for (a, &qj) in ai.iter_mut().zip(qd) {
                *a = a.fma(qj, kd);
            }
        }
    }
    for (i, ai) in acc.iter().enumerate() {
        for (j, a) in ai.iter().enumerate() {
            a.store(&mut sc[j * stride + (tile0 + i) * L..]);
        }
    }
}

/// Output chains of `B` queries over keys `0..common` (which all of them
/// see; query `j`'s weights at `e[j * stride..]`): `o[j][d] = fma(e_j[t],
/// v_t[d], o[j][d])` for t in order, written to `out[j]` (not yet divided
/// by Z). 16 dimensions at a time, four such groups side by side when the
/// head has them.
#[inline(always)]
fn pv_block<V: Lanes, const B: usize>(
    kv: &KvView<'_>,
    g: usize,
    e: &[f32],
    stride: usize,
    common: usize,
    out: &mut [&mut [f32]],
) {
    let hd = kv.head_dim;
    let mut d0 = 0;
    while d0 < hd {
        if hd - d0 >= 4 * L {
            pv_dims::<V, B, 4>(kv, g, e, stride, common, d0, out);
            d0 += 4 * L;
        } else {
            pv_dims::<V, B, 1>(kv, g, e, stride, common, d0, out);
            d0 += L;
        }
    }
}

#[inline(always)]
fn pv_dims<V: Lanes, const B: usize, const C: usize>(
    kv: &KvView<'_>,
    g: usize,
    e: &[f32],
    stride: usize,
    common: usize,
    d0: usize,
    out: &mut [&mut [f32]],
) {
    let hd = kv.head_dim;
    let nkv = kv.n_kv_head;
    assert!(B == 0 || e.len() >= (B - 1) * stride + common);
    let mut acc = [[V::zero(); C]; B];
    for t in 0..common {
        let vt = &kv.v[(t * nkv + g) * hd + d0..][..C * L];
        let v: [V; C] = std::array::from_fn(|c| V::load_f16(&vt[c * L..]));
        for (j, aj) in acc.iter_mut().enumerate() {
            let et = e[j * stride + t];
            for (a, &vc) in aj.iter_mut().zip(&v) {
                *a = a.fma(et, vc);
            }
        }
    }
    for (aj, o) in acc.iter().zip(out.iter_mut()) {
        for (c, a) in aj.iter().enumerate() {
            a.store(&mut o[d0 + c * L..]);
        }
    }
}

/// Continues one query's output chains (in `o`, len `head_dim`, a
/// multiple of 16) over keys `from..e.len()`.
#[inline(always)]
fn pv_tail<V: Lanes>(kv: &KvView<'_>, g: usize, e: &[f32], from: usize, o: &mut [f32]) {
    let hd = kv.head_dim;
    let nkv = kv.n_kv_head;
    for (c, oc) in o.chunks_exact_mut(L).enumerate() {
        let mut acc = V::load(oc);
        for (t, &et) in e.iter().enumerate().skip(from) {
            acc = acc.fma(et, V::load_f16(&kv.v[(t * nkv + g) * hd + c * L..]));
        }
        acc.store(oc);
    }
}

/// Activation quantization (NUMERICS.md section 2) of `x` (`[n, k]`) into
/// `qx`, rows spread over the current rayon pool when `parallel`. The same
/// bits as [`QuantizedRows::quantize`]: each block runs
/// [`super::scalar::quantize_row`]'s expressions, compiled for the vector
/// unit; the only reordering is the block's `max |x_i|`, which is exact and
/// order-free (NaN ignored either way, as `f32::max` does).
pub fn quantize_rows(k: &Kernels, x: &[f32], cols: usize, qx: &mut QuantizedRows, parallel: bool) {
    use rayon::prelude::*;
    assert!(cols > 0 && cols % QK == 0 && x.len() % cols == 0);
    qx.n = x.len() / cols;
    qx.k = cols;
    qx.q.resize(x.len(), 0);
    qx.d.resize(x.len() / QK, 0.0);
    qx.s.resize(x.len() / QK, 0.0);
    let variant = k.variant();
    type Row<'a> = ((&'a [f32], &'a mut [i8]), (&'a mut [f32], &'a mut [f32]));
    let row = |((x, q), (d, s)): Row<'_>| quantize_row(variant, x, q, d, s);
    let nb = cols / QK;
    if parallel {
        x.par_chunks_exact(cols)
            .zip(qx.q.par_chunks_exact_mut(cols))
            .zip(
                qx.d.par_chunks_exact_mut(nb)
                    .zip(qx.s.par_chunks_exact_mut(nb)),
            )
            .for_each(row);
    } else {
        x.chunks_exact(cols)
            .zip(qx.q.chunks_exact_mut(cols))
            .zip(qx.d.chunks_exact_mut(nb).zip(qx.s.chunks_exact_mut(nb)))
            .for_each(row);
    }
}

fn quantize_row(variant: Variant, x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    match variant {
        // SAFETY: a `Kernels` of these variants exists only after
        // `is_available()` confirmed the CPU features.
        #[cfg(target_arch = "x86_64")]
        Variant::Avx512 => unsafe { quantize_row_avx512(x, q, d, s) },
        #[cfg(target_arch = "x86_64")]
        Variant::Avx2 => unsafe { quantize_row_avx2(x, q, d, s) },
        Variant::Scalar => super::scalar::quantize_row(x, q, d, s),
        #[allow(unreachable_patterns)]
        _ => quantize_body(x, q, d, s),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
unsafe fn quantize_row_avx512(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quantize_body(x, q, d, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_row_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quantize_body(x, q, d, s)
}

#[inline(always)]
fn quantize_body(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    assert!(x.len() % QK == 0 && q.len() == x.len());
    assert!(d.len() == x.len() / QK && s.len() == d.len());
    for (b, (xb, qb)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        let xb: &[f32; QK] = xb.try_into().expect("block");
        let qb: &mut [i8; QK] = qb.try_into().expect("block");
        // max over the block: per lane, then a tree (exact, order-free).
        // `if a > m { a } else { m }` is `f32::max` here: `m` is never NaN
        // and a NaN `a` is ignored, as `f32::max` ignores it.
        let mut lanes = [0.0f32; L];
        for half in xb.chunks_exact(L) {
            for (m, &v) in lanes.iter_mut().zip(half) {
                let a = v.abs();
                *m = if a > *m { a } else { *m };
            }
        }
        for w in [8, 4, 2, 1] {
            for j in 0..w {
                let a = lanes[j + w];
                lanes[j] = if a > lanes[j] { a } else { lanes[j] };
            }
        }
        let amax = lanes[0];
        if amax == 0.0 {
            qb.fill(0);
            d[b] = 0.0;
            s[b] = 0.0;
            continue;
        }
        let db = amax / 127.0;
        let inv = 127.0 / amax;
        let mut qi = [0i32; QK];
        for (o, &v) in qi.iter_mut().zip(xb) {
            // `clamp(r, -127, 127) as i8` of the scalar code: NaN gives 0,
            // everything else an integer in -127..=127.
            let r = round_small(v * inv);
            let c = if r.is_nan() {
                0.0
            } else {
                r.clamp(-127.0, 127.0)
            };
            // SAFETY: c is an integer-valued float in -127..=127.
            *o = unsafe { c.to_int_unchecked::<i32>() };
        }
        for (o, &v) in qb.iter_mut().zip(&qi) {
            *o = v as i8;
        }
        let isum: i32 = qi.iter().sum();
        d[b] = db;
        s[b] = db * isum as f32;
    }
}

/// SwiGLU (NUMERICS.md section 8) on rows of `g` in place with `u`:
/// `g_i = (g_i / (1 + exp(-g_i))) * u_i`, the exp from
/// [`Kernels::exp_sub`] (`exp((-g) - 0) = exp(-g)`: subtracting zero is
/// exact). Same bits as [`super::scalar::silu_mul`]. `tmp` is scratch.
pub fn silu_mul(k: &Kernels, g: &mut [f32], u: &[f32], tmp: &mut Vec<f32>) {
    assert_eq!(g.len(), u.len());
    if k.variant() == Variant::Scalar {
        return super::scalar::silu_mul(g, u);
    }
    tmp.clear();
    tmp.extend(g.iter().map(|&v| -v));
    let (neg, e) = {
        let n = g.len();
        tmp.resize(2 * n, 0.0);
        tmp.split_at_mut(n)
    };
    k.exp_sub(neg, 0.0, e);
    for ((gi, &ui), &ei) in g.iter_mut().zip(u).zip(e.iter()) {
        *gi = (*gi / (1.0 + ei)) * ui;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::math::f16_from_f32;
    use crate::kernels::scalar;

    /// SplitMix64 values in [-1, 1).
    struct Rng(u64);
    impl Rng {
        fn value(&mut self) -> f32 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// f16 values that are awkward for a conversion: signed zeros, the
    /// smallest and largest subnormals, the smallest normal, the largest
    /// finite values.
    const SPECIAL_F16: [u16; 8] = [
        0x0000, 0x8000, 0x0001, 0x83ff, 0x03ff, 0x0400, 0x7bff, 0xfbff,
    ];

    /// A cache of `cap` positions in the [`KvView`] layout (f16 bits:
    /// random values rounded to f16, every 29th a [`SPECIAL_F16`] when
    /// `specials`); K positions from `valid` on hold NaN and V ones
    /// infinity, which a correct kernel never lets into a result.
    fn cache(
        rng: &mut Rng,
        n_kv: usize,
        hd: usize,
        cap: usize,
        valid: usize,
        ks: f32,
    ) -> (Vec<u16>, Vec<u16>) {
        cache_with(rng, n_kv, hd, cap, valid, ks, false)
    }

    fn cache_with(
        rng: &mut Rng,
        n_kv: usize,
        hd: usize,
        cap: usize,
        valid: usize,
        ks: f32,
        specials: bool,
    ) -> (Vec<u16>, Vec<u16>) {
        let tiles = cap.div_ceil(KV_TILE);
        let mut k = vec![f16_from_f32(f32::NAN); tiles * KV_TILE * n_kv * hd];
        let mut v = vec![f16_from_f32(f32::INFINITY); cap * n_kv * hd];
        let mut i = 0usize;
        let mut f16 = |rng: &mut Rng, scale: f32| {
            i += 1;
            if specials && i % 29 == 0 {
                SPECIAL_F16[(i / 29) % SPECIAL_F16.len()]
            } else {
                f16_from_f32(rng.value() * scale)
            }
        };
        let layout = KvView {
            k: &[],
            v: &[],
            n_kv_head: n_kv,
            head_dim: hd,
        };
        for t in 0..valid {
            for g in 0..n_kv {
                for d in 0..hd {
                    k[layout.k_index(t, g, d)] = f16(rng, ks);
                    v[layout.v_index(t, g, d)] = f16(rng, 1.0);
                }
            }
        }
        (k, v)
    }

    /// Every variant's batched attention equals the scalar kernel query by
    /// query: query counts 1..=14 (every register-block split and tail), 24
    /// and 64,
    /// ragged key counts around tile edges, several head sizes (including
    /// one that takes the per-query fallback), small and large scores.
    #[test]
    fn batched_attention_matches_scalar_per_query() {
        let mut rng = Rng(3);
        for (n_kv, hd, ks) in [
            (3usize, 64usize, 0.5f32),
            (3, 64, 25.0),
            (2, 16, 1.0),
            (1, 48, 2.0),
            (1, 40, 1.0),
            (2, 128, 1.0),
        ] {
            let cap = 70;
            // Large scores with the special values: one key can dominate.
            let (k, v) = cache_with(&mut rng, n_kv, hd, cap, cap, ks, ks < 2.0);
            let view = KvView {
                k: &k,
                v: &v,
                n_kv_head: n_kv,
                head_dim: hd,
            };
            for nq in (1..=14usize).chain([24, 64]) {
                for base in [1usize, 13, 16, 17, 40, 64 - nq.min(10)] {
                    let g = (nq + base) % n_kv;
                    let qv: Vec<Vec<f32>> = (0..nq)
                        .map(|_| (0..hd).map(|_| rng.value()).collect())
                        .collect();
                    // Consecutive tokens (3 heads each) or arbitrary spreads.
                    let n_keys: Vec<usize> = (0..nq)
                        .map(|i| {
                            if nq % 2 == 0 {
                                base + i / 3
                            } else {
                                1 + (base * 7 + i * 11) % 64
                            }
                        })
                        .map(|n| n.min(cap))
                        .collect();
                    let mut want = vec![vec![0f32; hd]; nq];
                    for i in 0..nq {
                        scalar::attention(
                            &qv[i],
                            &view,
                            g,
                            n_keys[i],
                            &mut Vec::new(),
                            &mut want[i],
                        );
                    }
                    for kern in Kernels::available()
                        .into_iter()
                        .map(|v| Kernels::new(v).unwrap())
                    {
                        let qs: Vec<&[f32]> = qv.iter().map(|q| q.as_slice()).collect();
                        let mut got = vec![vec![f32::NAN; hd]; nq];
                        let mut outs: Vec<&mut [f32]> =
                            got.iter_mut().map(|o| o.as_mut_slice()).collect();
                        let mut scratch = vec![f32::NAN; 5];
                        attention_batch(&kern, &view, g, &qs, &n_keys, &mut scratch, &mut outs);
                        for i in 0..nq {
                            assert_eq!(
                                bits(&got[i]),
                                bits(&want[i]),
                                "{:?} n_kv {n_kv} hd {hd} nq {nq} query {i} keys {}",
                                kern.variant(),
                                n_keys[i]
                            );
                        }
                    }
                }
            }
        }
    }

    /// Quantization and SwiGLU equal the scalar kernels on random rows mixed
    /// with zeros, signed zeros, subnormals, huge values, infinities, NaN and
    /// all-zero blocks.
    #[test]
    fn quantize_and_silu_match_scalar() {
        let mut rng = Rng(17);
        let specials = [
            0.0f32,
            -0.0,
            1e-40,
            -1e-42,
            3e38,
            -3e38,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            127.0,
            0.5,
            -0.5,
            1.5,
        ];
        for cols in [32usize, 64, 576, 1536] {
            for n in [1usize, 3, 17] {
                let mut x: Vec<f32> = (0..n * cols)
                    .map(|i| match i % 7 {
                        0 => specials[(i / 7) % specials.len()],
                        _ => rng.value() * [1.0f32, 1e-3, 50.0][i % 3],
                    })
                    .collect();
                x[cols - 32..cols].fill(0.0); // an all-zero block
                let mut want = QuantizedRows::new();
                want.quantize(&x, cols);
                for kern in Kernels::available()
                    .into_iter()
                    .map(|v| Kernels::new(v).unwrap())
                {
                    for par in [false, true] {
                        let mut got = QuantizedRows::new();
                        quantize_rows(&kern, &x, cols, &mut got, par);
                        assert_eq!(got.q, want.q, "{:?}", kern.variant());
                        assert_eq!(bits(&got.d), bits(&want.d), "{:?}", kern.variant());
                        assert_eq!(bits(&got.s), bits(&want.s), "{:?}", kern.variant());
                        assert_eq!((got.n(), got.k()), (n, cols));
                    }
                    let u: Vec<f32> = (0..x.len()).map(|_| rng.value() * 4.0).collect();
                    // SiLU sees pre-activations: finite, some large.
                    let gx: Vec<f32> = x
                        .iter()
                        .map(|&v| {
                            if v.is_finite() {
                                v.clamp(-200.0, 200.0)
                            } else {
                                v
                            }
                        })
                        .collect();
                    let mut want_g = gx.clone();
                    scalar::silu_mul(&mut want_g, &u);
                    let mut got_g = gx.clone();
                    silu_mul(&kern, &mut got_g, &u, &mut vec![1.0; 3]);
                    assert_eq!(bits(&got_g), bits(&want_g), "{:?}", kern.variant());
                }
            }
        }
    }

    /// Long context with the scores of a real model's scale, and a cache
    /// only partly written (the rest must be ignored).
    #[test]
    fn batched_attention_matches_scalar_at_long_context() {
        let mut rng = Rng(9);
        let (hd, cap, valid) = (64, 2064, 2050);
        for ks in [0.3f32, 8.0] {
            let (k, v) = cache(&mut rng, 1, hd, cap, valid, ks);
            let view = KvView {
                k: &k,
                v: &v,
                n_kv_head: 1,
                head_dim: hd,
            };
            let nq = 12;
            let qv: Vec<Vec<f32>> = (0..nq)
                .map(|_| (0..hd).map(|_| rng.value()).collect())
                .collect();
            let n_keys: Vec<usize> = (0..nq).map(|i| 2047 + i / 3).collect();
            for kern in Kernels::available()
                .into_iter()
                .map(|v| Kernels::new(v).unwrap())
            {
                let qs: Vec<&[f32]> = qv.iter().map(|q| q.as_slice()).collect();
                let mut got = vec![vec![0f32; hd]; nq];
                let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|o| o.as_mut_slice()).collect();
                attention_batch(&kern, &view, 0, &qs, &n_keys, &mut Vec::new(), &mut outs);
                for i in 0..nq {
                    let mut want = vec![0f32; hd];
                    scalar::attention(&qv[i], &view, 0, n_keys[i], &mut Vec::new(), &mut want);
                    assert!(want.iter().all(|x| x.is_finite()));
                    assert_eq!(
                        bits(&got[i]),
                        bits(&want),
                        "{:?} ks {ks} query {i}",
                        kern.variant()
                    );
                }
            }
        }
    }
}
