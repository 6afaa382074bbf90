//! Batched kernels built from the specification's own operations.
//!
//! Batched attention: several queries that read the same KV head of the same
//! sequence (the query heads of one KV group, for a few consecutive tokens)
//! computed together, so each K tile and V row is loaded once for all of
//! them instead of once per query.
//!
//! Every query gets exactly the operations of [`super::scalar::attention`]
//! (NUMERICS.md section 7): the same `q * scale` and int8 quantization of
//! the query, per key the exact integer dot product with the int8 key
//! (any order gives the same integer, so the fastest integer dot
//! instruction serves), the same two f32 products for the score, max,
//! [`Kernels::exp_sub`], [`Kernels::sum16`], `w_t = e_t * dv_t`, one fma
//! chain over `t` per output dimension, one division. Only the loop nesting
//! differs (queries side by side), which cannot change a result: every
//! chain is private to one (query, key) or (query, dimension). The loops
//! run on 16-lane values (`Lanes`): f32 lanes with load (f32, or i8
//! widened: exact), store and `acc = fma(a, v, acc)` lane-wise (one IEEE
//! fused multiply-add per lane, the same operation as `f32::mul_add`), and
//! 16 i32 lanes of integer dot products, one per key of a K tile. They are
//! written once and instantiated with an AVX-512 register (`vpdpbusd`), two
//! AVX2 registers (`vpmaddubsw` + `vpmaddwd`), four NEON registers (widening
//! multiplies, or `sdot`), or a plain array (other targets), so every
//! variant gives the bits of the scalar specification. Tests hold it to
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

use super::math::round_small;
use super::scalar::quant_head;
use super::{AttnScratch, Kernels, KvView, QuantizedRows, Variant, KV_TILE, QK};

/// Lanes of one score vector: the keys of one K tile.
const L: usize = KV_TILE;

/// Bytes of one K group: 4 dimensions of the 16 keys of a tile.
const KG: usize = 4 * L;

/// Attention of `qs.len()` queries over KV head `g` of one sequence:
/// query `i` (`qs[i]`, len `head_dim`) sees keys `0..n_keys[i]` and its result
/// goes to `out[i]` (len `head_dim`). Same bits as calling
/// [`Kernels::attention`] once per query.
///
/// `scratch` is reused between calls (grows to about `2 * qs.len() *
/// max(n_keys)` floats). Panics on inconsistent lengths or a view too short
/// for `max(n_keys)` keys (programming errors).
pub fn attention_batch(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut AttnScratch,
    out: &mut [&mut [f32]],
) {
    attention_batch_prefetch(k, kv, g, qs, n_keys, scratch, out, &[]);
}

/// [`attention_batch`], and meanwhile the memory regions in `prefetch`
/// (typically what the caller's next job reads: [`KvView::read_regions`])
/// are pulled into L2, a few 64-byte lines at a time spread over the score
/// pass, the softmax and the first output pass, so that the memory system
/// streams the next job's cache while this one computes and the next job
/// finds it in cache. Only the timing differs: the results are the same
/// bits.
#[allow(clippy::too_many_arguments)]
pub fn attention_batch_prefetch(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut AttnScratch,
    out: &mut [&mut [f32]],
    prefetch: &[&[u8]],
) {
    let hd = kv.head_dim;
    assert!(qs.len() == n_keys.len() && qs.len() == out.len() && g < kv.n_kv_head);
    assert!(qs.iter().all(|q| q.len() == hd) && out.iter().all(|o| o.len() == hd));
    assert!(n_keys.iter().all(|&n| n > 0));
    // |isum| <= hd * 127 * 127 must stay below 2^24 (exact as f32).
    assert!(hd <= 1024);
    let Some(&max_keys) = n_keys.iter().max() else {
        return;
    };
    kv.check(max_keys);
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
        Variant::Avx512 => unsafe { avx512(k, kv, g, qs, n_keys, scratch, out, prefetch) },
        #[cfg(target_arch = "x86_64")]
        Variant::Avx2 => unsafe { avx2(k, kv, g, qs, n_keys, scratch, out, prefetch) },
        #[cfg(target_arch = "aarch64")]
        Variant::Neon => unsafe { neon(k, kv, g, qs, n_keys, scratch, out, prefetch) },
        #[cfg(target_arch = "aarch64")]
        Variant::NeonDot => unsafe { neon_dot(k, kv, g, qs, n_keys, scratch, out, prefetch) },
        _ => body::<Arr, 6, 3>(k, kv, g, qs, n_keys, scratch, out, prefetch),
    }
}

/// Defines `unsafe fn $name`: [`body`] with lane type `$lanes`, `$qs` queries
/// per score pass and `$qp` per output pass, compiled with `$features`
/// (entered only after the variant's availability was checked).
macro_rules! variant_entry {
    ($(#[$m:meta])* $name:ident, $features:literal, $lanes:ty, $qs:literal, $qp:literal) => {
        $(#[$m])*
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            k: &Kernels,
            kv: &KvView<'_>,
            g: usize,
            qs: &[&[f32]],
            n_keys: &[usize],
            scratch: &mut AttnScratch,
            out: &mut [&mut [f32]],
            prefetch: &[&[u8]],
        ) {
            body::<$lanes, $qs, $qp>(k, kv, g, qs, n_keys, scratch, out, prefetch)
        }
    };
}

variant_entry!(
    /// 32 zmm registers: 12 score accumulators, or 6 x 4 output ones.
    #[cfg(target_arch = "x86_64")]
    avx512, "avx512f,avx512bw,avx512vl,avx512vnni,fma", x86::Zmm, 12, 6
);
variant_entry!(
    /// 16 ymm registers: a 16-lane accumulator takes two, a K group four
    /// (magnitudes and signed bytes).
    #[cfg(target_arch = "x86_64")]
    avx2, "avx2,fma", x86::Ymm2, 4, 3
);
variant_entry!(
    /// 32 q registers: a 16-key integer accumulator takes eight (pairwise
    /// partial sums); an output pass keeps 64 dimensions (16 registers).
    #[cfg(target_arch = "aarch64")]
    neon, "neon", arm::Q4, 2, 1
);
variant_entry!(
    /// A 16-key integer accumulator takes four q registers.
    #[cfg(target_arch = "aarch64")]
    neon_dot, "neon,dotprod", arm::Q4Dot, 6, 1
);

/// The batched computation with at most `QS` queries per score pass and `QP`
/// per output pass (register budget of the instruction set).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn body<V: Lanes, const QS: usize, const QP: usize>(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut AttnScratch,
    out: &mut [&mut [f32]],
    prefetch: &[&[u8]],
) {
    let hd = kv.head_dim;
    let d4 = hd / 4;
    let nq = qs.len();
    let max_keys = *n_keys.iter().max().unwrap_or(&0);
    let mut pf = Prefetch::new(prefetch);
    let stride = max_keys.div_ceil(L) * L;
    // f: scores [nq][stride], e [nq][stride], dq [nq], q' [hd];
    // q: quantized queries [nq][hd]; w: one block's queries as 4-byte
    // groups, transposed [d4][QS].
    let AttnScratch { f, q: qi, w } = scratch;
    let need = 2 * nq * stride + nq + hd;
    if f.len() < need {
        f.resize(need, 0.0);
    }
    if qi.len() < nq * hd {
        qi.resize(nq * hd, 0);
    }
    if w.len() < d4 * QS {
        w.resize(d4 * QS, 0);
    }
    let (scores, rest) = f.split_at_mut(nq * stride);
    let (es, rest) = rest.split_at_mut(nq * stride);
    let (dq, rest) = rest.split_at_mut(nq);
    let qp = &mut rest[..hd];
    let scale = 1.0 / (hd as f32).sqrt();
    // q'_d = q_d * scale; (qi, dq) = quant_head(q').
    for ((q, qi), dq) in qs.iter().zip(qi.chunks_exact_mut(hd)).zip(dq.iter_mut()) {
        for (p, &x) in qp.iter_mut().zip(q.iter()) {
            *p = x * scale;
        }
        *dq = V::quant_head(qp, qi);
    }

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
        // Query j's dimensions 4c..4c+4 as one little-endian word at
        // w[c * b + j], so one load serves a step; the bias a lane type's
        // dot instruction adds per query.
        let mut bias = [0i32; QS];
        for (j, q) in qi[i * hd..(i + b) * hd].chunks_exact(hd).enumerate() {
            for (c, q4) in q.chunks_exact(4).enumerate() {
                w[c * b + j] =
                    u32::from_le_bytes([q4[0] as u8, q4[1] as u8, q4[2] as u8, q4[3] as u8]);
            }
            bias[j] = V::Q_BIAS * q.iter().map(|&x| x as i32).sum::<i32>();
        }
        let qw = &w[..d4 * b];
        let dqb = &dq[i..i + b];
        let sc = &mut scores[i * stride..(i + b) * stride];
        // Few queries: several K tiles per pass, so that enough independent
        // dot chains are in flight to hide the latency.
        match b {
            _ if b == QS => {
                scores_block::<V, QS, 1>(kv, g, qw, dqb, &bias, keys, stride, sc, &mut pf)
            }
            1 => scores_block::<V, 1, 4>(kv, g, qw, dqb, &bias, keys, stride, sc, &mut pf),
            2 => scores_block::<V, 2, 2>(kv, g, qw, dqb, &bias, keys, stride, sc, &mut pf),
            3 => scores_block::<V, 3, 2>(kv, g, qw, dqb, &bias, keys, stride, sc, &mut pf),
            4 => scores_block::<V, 4, 1>(kv, g, qw, dqb, &bias, keys, stride, sc, &mut pf),
            _ => scores_block::<V, 6, 1>(kv, g, qw, dqb, &bias, keys, stride, sc, &mut pf),
        }
        i += b;
    }

    // Softmax weights per query: max, exp(s - m), Z = sum16(e), then
    // w_t = e_t * dv_t in place.
    let mut z = [0f32; 64];
    let mut zs = Vec::new();
    let zbuf: &mut [f32] = if nq <= z.len() {
        &mut z[..nq]
    } else {
        zs.resize(nq, 0.0);
        &mut zs
    };
    for (qn, zq) in zbuf.iter_mut().enumerate() {
        let n = n_keys[qn];
        let s = &scores[qn * stride..qn * stride + n];
        let m = max(s);
        let e = &mut es[qn * stride..qn * stride + n];
        // (Element-wise: the pieces give the same bits as one call.)
        for (sc, ec) in s.chunks(PF_EXP_CHUNK).zip(e.chunks_mut(PF_EXP_CHUNK)) {
            pf.issue(PF_EXP_LINES);
            k.exp_sub(sc, m, ec);
        }
        *zq = k.sum16(e);
        if kv.n_kv_head == 1 {
            // 16 lanes at a time (lane-wise IEEE products), then the rest.
            let mut ec = e.chunks_exact_mut(L);
            let mut dc = kv.dv[..n].chunks_exact(L);
            for (e, dv) in (&mut ec).zip(&mut dc) {
                V::load(e).mul(V::load(dv)).store(e);
            }
            for (e, &dv) in ec.into_remainder().iter_mut().zip(dc.remainder()) {
                *e *= dv;
            }
        } else {
            for (t, e) in e.iter_mut().enumerate() {
                *e *= kv.dv[kv.dv_index(t, g)];
            }
        }
    }

    // Outputs: blocks of queries, each reading every V row once; the keys
    // all queries of the block see first, then each query's own tail.
    let mut i = 0;
    while i < nq {
        let b = (nq - i).min(QP);
        let common = n_keys[i..i + b].iter().copied().min().unwrap_or(0);
        let e = &es[i * stride..(i + b) * stride];
        let o = &mut out[i..i + b];
        // The rest of the prefetch rides on the first output pass.
        let pf = &mut pf;
        match b {
            _ if b == QP => pv_block::<V, QP>(kv, g, e, stride, common, o, pf),
            1 => pv_block::<V, 1>(kv, g, e, stride, common, o, pf),
            2 => pv_block::<V, 2>(kv, g, e, stride, common, o, pf),
            3 => pv_block::<V, 3>(kv, g, e, stride, common, o, pf),
            4 => pv_block::<V, 4>(kv, g, e, stride, common, o, pf),
            _ => pv_block::<V, 5>(kv, g, e, stride, common, o, pf),
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

/// 16 lanes of f32 (one K tile's keys, or 16 output dimensions), and the
/// integer dot products of a K tile.
trait Lanes: Copy {
    /// One K group (64 bytes: 4 dimensions of 16 keys, [`KvView`] layout)
    /// in the form [`Lanes::dot`] takes.
    type K: Copy;
    /// 16 i32 accumulators, one per key, in any internal arrangement.
    type I: Copy;
    /// [`Lanes::dot`] adds `Q_BIAS * sum(query bytes)` to every key's sum
    /// (an unsigned-operand trick); the caller subtracts it.
    const Q_BIAS: i32;

    fn zero() -> Self;
    /// `s[0..16]` (panics if shorter).
    fn load(s: &[f32]) -> Self;
    /// `s[0..16]`, i8, converted to f32 (exact; panics if shorter).
    fn load_i8(s: &[i8]) -> Self;
    /// Into `s[0..16]` (panics if shorter).
    fn store(self, s: &mut [f32]);
    /// Lane-wise `fma(a, v, self)`: one IEEE fused multiply-add per lane.
    fn fma(self, a: f32, v: Self) -> Self;
    /// Lane-wise `self * v` (IEEE).
    fn mul(self, v: Self) -> Self;

    /// `s[0..64]` (panics if shorter).
    fn load_k(s: &[i8]) -> Self::K;
    fn izero() -> Self::I;
    /// For each key `t` of the group: `acc[t] += sum_i k[t][i] * q[i]`
    /// (+ the bias), `q` the query's 4 bytes (little-endian word).
    fn dot(acc: Self::I, k: Self::K, q: u32) -> Self::I;
    /// Scores of a tile: lane t = `((acc[t] - bias) as f32) * (dk[t] * dq)`
    /// (the conversion is exact: |sum| < 2^24; `dk * dq` is `dq * dk`).
    fn scores(acc: Self::I, bias: i32, dk: Self, dq: f32) -> Self;

    /// [`quant_head`] (the same bits), in this instruction set where it has
    /// a version.
    #[inline(always)]
    fn quant_head(x: &[f32], q: &mut [i8]) -> f32 {
        quant_head(x, q)
    }
}

/// The portable lane type: 16 `f32::mul_add`, 16 i32 sums.
#[derive(Clone, Copy)]
struct Arr([f32; L]);

impl Lanes for Arr {
    type K = [i8; KG];
    type I = [i32; L];
    const Q_BIAS: i32 = 0;

    #[inline(always)]
    fn zero() -> Self {
        Arr([0.0; L])
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        Arr(s[..L].try_into().expect("16 lanes"))
    }
    #[inline(always)]
    fn load_i8(s: &[i8]) -> Self {
        let s: &[i8; L] = s[..L].try_into().expect("16 lanes");
        Arr(s.map(|x| x as f32))
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
    #[inline(always)]
    fn mul(mut self, v: Self) -> Self {
        for (x, &y) in self.0.iter_mut().zip(&v.0) {
            *x *= y;
        }
        self
    }
    #[inline(always)]
    fn load_k(s: &[i8]) -> Self::K {
        s[..KG].try_into().expect("64 bytes")
    }
    #[inline(always)]
    fn izero() -> Self::I {
        [0; L]
    }
    #[inline(always)]
    fn dot(mut acc: Self::I, k: Self::K, q: u32) -> Self::I {
        let q = q.to_le_bytes().map(|b| b as i8 as i32);
        for (a, kt) in acc.iter_mut().zip(k.chunks_exact(4)) {
            *a += (0..4).map(|i| kt[i] as i32 * q[i]).sum::<i32>();
        }
        acc
    }
    #[inline(always)]
    fn scores(acc: Self::I, bias: i32, dk: Self, dq: f32) -> Self {
        let mut r = dk;
        for (r, &a) in r.0.iter_mut().zip(&acc) {
            *r = (a - bias) as f32 * (*r * dq);
        }
        r
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Lane types over x86 vector registers. Their methods are only called
    //! (inlined) from functions compiled with the matching features, which
    //! [`super::attention_batch`] enters only for a variant whose
    //! availability was checked.
    use super::{Lanes, KG, L};
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
        fn quant_head(x: &[f32], q: &mut [i8]) -> f32 {
            // SAFETY: this lane type is only used under `avx512` (features
            // checked when the `Kernels` was made).
            unsafe { super::quant_head_avx512(x, q) }
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
            Zmm(unsafe {
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(s.as_ptr().cast())))
            })
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
        fn quant_head(x: &[f32], q: &mut [i8]) -> f32 {
            // SAFETY: this lane type is only used under `avx2` (features
            // checked when the `Kernels` was made).
            unsafe { super::quant_head_avx2(x, q) }
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
}

#[cfg(target_arch = "aarch64")]
mod arm {
    //! Lane types over NEON registers. Their methods are only called
    //! (inlined) from [`super::neon`] / [`super::neon_dot`], compiled with
    //! NEON (and `dotprod` for [`Q4Dot`]), entered only for a variant whose
    //! availability was checked.
    use super::{Lanes, KG, L};
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

    impl Lanes for Q4 {
        /// Keys 4r..4r+4 in register r.
        type K = [int8x16_t; 4];
        /// Register 2r + h: keys 4r + 2h, 4r + 2h + 1, two partial sums
        /// each.
        type I = [int32x4_t; 8];
        const Q_BIAS: i32 = 0;

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

    /// `acc + dot4(k, q)` per i32 lane: the matmul kernel's `sdot`
    /// (inline assembly: the intrinsic `vdotq_s32` is not stable yet).
    #[inline(always)]
    fn sdot(acc: int32x4_t, k: int8x16_t, q: int8x16_t) -> int32x4_t {
        // SAFETY: register-only; reached only from `dotprod` code (module
        // docs).
        unsafe { crate::kernels::aarch64::neon::sdot(acc, k, q) }
    }

    impl Lanes for Q4Dot {
        /// Keys 4r..4r+4 in register r.
        type K = [int8x16_t; 4];
        /// Keys 4r..4r+4 in register r.
        type I = [int32x4_t; 4];
        const Q_BIAS: i32 = 0;

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
                *a = sdot(*a, kr, q);
            }
            acc
        }
        #[inline(always)]
        fn scores(acc: Self::I, bias: i32, dk: Self, dq: f32) -> Self {
            Q4Dot(dk.0.scores_(acc, bias, dq))
        }
    }
}

/// Scores of `B` queries (`qw`: their 4-byte groups, `[d4][B]`; scales
/// `dq`; biases `bias`) for keys `0..keys` rounded up to whole tiles:
/// `sc[j * stride + t] = isum * (dq_j * dk_t)`. `T` tiles per pass (the
/// last few one by one).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scores_block<V: Lanes, const B: usize, const T: usize>(
    kv: &KvView<'_>,
    g: usize,
    qw: &[u32],
    dq: &[f32],
    bias: &[i32],
    keys: usize,
    stride: usize,
    sc: &mut [f32],
    pf: &mut Prefetch<'_>,
) {
    let dq: &[f32; B] = dq.try_into().expect("B scales");
    let bias: &[i32; B] = bias[..B].try_into().expect("B biases");
    let tiles = keys.div_ceil(L);
    let mut tile = 0;
    while tile + T <= tiles {
        pf.issue(T * PF_TILE_LINES);
        scores_tiles::<V, B, T>(kv, g, qw, dq, bias, tile, stride, sc);
        tile += T;
    }
    while tile < tiles {
        pf.issue(PF_TILE_LINES);
        scores_tiles::<V, B, 1>(kv, g, qw, dq, bias, tile, stride, sc);
        tile += 1;
    }
}

/// [`scores_block`] for tiles `tile0..tile0 + T`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scores_tiles<V: Lanes, const B: usize, const T: usize>(
    kv: &KvView<'_>,
    g: usize,
    qw: &[u32],
    dq: &[f32; B],
    bias: &[i32; B],
    tile0: usize,
    stride: usize,
    sc: &mut [f32],
) {
    let nkv = kv.n_kv_head;
    let tb = kv.k_tile_bytes();
    assert!(qw.len() == B * kv.d4() && sc.len() >= (B - 1) * stride + (tile0 + T) * L);
    let mut kt: [&[i8]; T] = [&[]; T];
    for (i, k) in kt.iter_mut().enumerate() {
        *k = &kv.k[((tile0 + i) * nkv + g) * tb..][..tb];
    }
    let mut acc = [[V::izero(); B]; T];
    for (c, qc) in qw.chunks_exact(B).enumerate() {
        let qc: &[u32; B] = qc.try_into().expect("B queries");
        for (ai, k) in acc.iter_mut().zip(&kt) {
            let kc = V::load_k(&k[c * KG..]);
            for (a, &q) in ai.iter_mut().zip(qc) {
                *a = V::dot(*a, kc, q);
            }
        }
    }
    for (i, ai) in acc.iter().enumerate() {
        let dk = V::load(&kv.dk[((tile0 + i) * nkv + g) * L..]);
        for (j, &a) in ai.iter().enumerate() {
            // s_t = (isum_t as f32) * (dq * dk_t)
            V::scores(a, bias[j], dk, dq[j]).store(&mut sc[j * stride + (tile0 + i) * L..]);
        }
    }
}

/// Output chains of `B` queries over keys `0..common` (which all of them
/// see; query `j`'s weights `w_t = e_t * dv_t` at `e[j * stride..]`):
/// `o[j][d] = fma(w_j[t], v_t[d], o[j][d])` for t in order, written to
/// `out[j]` (not yet divided by Z). 16 dimensions at a time, four such
/// groups side by side when the head has them.
#[inline(always)]
fn pv_block<V: Lanes, const B: usize>(
    kv: &KvView<'_>,
    g: usize,
    e: &[f32],
    stride: usize,
    common: usize,
    out: &mut [&mut [f32]],
    pf: &mut Prefetch<'_>,
) {
    let hd = kv.head_dim;
    let mut d0 = 0;
    while d0 < hd {
        if hd - d0 >= 4 * L {
            pv_dims::<V, B, 4>(kv, g, e, stride, common, d0, out, pf);
            d0 += 4 * L;
        } else {
            pv_dims::<V, B, 1>(kv, g, e, stride, common, d0, out, pf);
            d0 += L;
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pv_dims<V: Lanes, const B: usize, const C: usize>(
    kv: &KvView<'_>,
    g: usize,
    e: &[f32],
    stride: usize,
    common: usize,
    d0: usize,
    out: &mut [&mut [f32]],
    pf: &mut Prefetch<'_>,
) {
    assert!(B == 0 || e.len() >= (B - 1) * stride + common);
    let mut acc = [[V::zero(); C]; B];
    // What is left of the prefetch, spread evenly over these keys (a few
    // lines every PF_KEYS keys).
    for t in 0..common {
        if t % PF_KEYS == 0 && pf.left() > 0 {
            pf.issue((pf.left() * PF_KEYS).div_ceil(common - t));
        }
        let vt = &kv.v[kv.v_index(t, g, d0)..][..C * L];
        // (A plain loop: `array::from_fn`'s closure is not always inlined,
        // and out of line it loses the caller's target features.)
        let mut v = [V::zero(); C];
        for (c, x) in v.iter_mut().enumerate() {
            *x = V::load_i8(&vt[c * L..]);
        }
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

// Pacing of the prefetch (lines of 64 bytes of the caller's next job): a
// few lines per K tile of the score pass and per piece of the softmax,
// and the rest spread evenly over the first output pass. Tuned on a 2-core
// Zen 4 (decoding 21 sequences, 2 threads, in-process A/B): prefetching
// only the next K, during the output pass, left memory idle during the
// score pass and softmax and made the output pass wait on V.

/// Lines per K tile (16 keys) of the score pass.
const PF_TILE_LINES: usize = 8;
/// Scores per piece of the softmax's `exp`, and lines per piece.
const PF_EXP_CHUNK: usize = 256;
const PF_EXP_LINES: usize = 8;
/// Keys of an output pass per round of prefetches.
const PF_KEYS: usize = 4;

/// The memory a caller's next job reads, prefetched a few 64-byte lines at
/// a time over the whole of the current job, so that the memory system
/// streams it while this job computes instead of in bursts.
struct Prefetch<'a> {
    regions: &'a [&'a [u8]],
    /// Current region and byte offset in it.
    r: usize,
    off: usize,
    left: usize,
}

impl<'a> Prefetch<'a> {
    fn new(regions: &'a [&'a [u8]]) -> Self {
        let left = regions.iter().map(|r| r.len().div_ceil(64)).sum();
        let mut p = Prefetch {
            regions,
            r: 0,
            off: 0,
            left,
        };
        p.skip_empty();
        p
    }

    /// Lines not yet prefetched.
    #[inline(always)]
    fn left(&self) -> usize {
        self.left
    }

    #[inline(always)]
    fn skip_empty(&mut self) {
        while self.r < self.regions.len() && self.off >= self.regions[self.r].len() {
            self.r += 1;
            self.off = 0;
        }
    }

    /// Prefetches the next `lines` lines (fewer if the regions end).
    #[inline(always)]
    fn issue(&mut self, lines: usize) {
        for _ in 0..lines.min(self.left) {
            prefetch_l2(&self.regions[self.r][self.off..]);
            self.off += 64;
            self.left -= 1;
            self.skip_empty();
        }
    }
}

/// Asks the memory system to bring the line holding `p[0]` into L2 (a hint:
/// no effect on any value, no fault).
#[inline(always)]
fn prefetch_l2(p: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and writes nothing; SSE is baseline
    // on x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(p.as_ptr().cast())
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `prfm` is a hint: it never faults and writes nothing.
    unsafe {
        std::arch::asm!("prfm pldl2keep, [{0}]", in(reg) p.as_ptr(), options(nostack, preserves_flags, readonly))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = p;
}

/// Continues one query's output chains (in `o`, len `head_dim`, a
/// multiple of 16) over keys `from..e.len()`.
#[inline(always)]
fn pv_tail<V: Lanes>(kv: &KvView<'_>, g: usize, e: &[f32], from: usize, o: &mut [f32]) {
    for (c, oc) in o.chunks_exact_mut(L).enumerate() {
        let mut acc = V::load(oc);
        for (t, &et) in e.iter().enumerate().skip(from) {
            acc = acc.fma(et, V::load_i8(&kv.v[kv.v_index(t, g, c * L)..]));
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

/// For every row `t`: `prep(t, a_t, b_t)` on row `t` of `a` (`[n, wa]`)
/// and of `b` (`[n, cols]`), then the activation quantization of `b_t` into
/// row `t` of `qx`, exactly as [`quantize_rows`] would quantize `b` after
/// `prep` ran on every row. One pass (one fork/join when `parallel`), with
/// the row still in L1 when it is quantized; `prep` of one row must not
/// depend on another's.
#[allow(clippy::too_many_arguments)]
pub fn prep_quantize_rows<F>(
    k: &Kernels,
    a: &mut [f32],
    wa: usize,
    b: &mut [f32],
    cols: usize,
    qx: &mut QuantizedRows,
    parallel: bool,
    prep: F,
) where
    F: Fn(usize, &mut [f32], &mut [f32]) + Sync,
{
    use rayon::prelude::*;
    assert!(cols > 0 && cols % QK == 0 && b.len() % cols == 0);
    assert!(wa > 0 && a.len() / wa == b.len() / cols && a.len() % wa == 0);
    qx.n = b.len() / cols;
    qx.k = cols;
    qx.q.resize(b.len(), 0);
    qx.d.resize(b.len() / QK, 0.0);
    qx.s.resize(b.len() / QK, 0.0);
    let variant = k.variant();
    let nb = cols / QK;
    type Row<'a> = (
        usize,
        (
            ((&'a mut [f32], &'a mut [f32]), &'a mut [i8]),
            (&'a mut [f32], &'a mut [f32]),
        ),
    );
    let row = |(t, (((a, b), q), (d, s))): Row<'_>| {
        prep(t, a, b);
        quantize_row(variant, b, q, d, s)
    };
    if parallel {
        a.par_chunks_exact_mut(wa)
            .zip(b.par_chunks_exact_mut(cols))
            .zip(qx.q.par_chunks_exact_mut(cols))
            .zip(
                qx.d.par_chunks_exact_mut(nb)
                    .zip(qx.s.par_chunks_exact_mut(nb)),
            )
            .enumerate()
            .for_each(row);
    } else {
        a.chunks_exact_mut(wa)
            .zip(b.chunks_exact_mut(cols))
            .zip(qx.q.chunks_exact_mut(cols))
            .zip(qx.d.chunks_exact_mut(nb).zip(qx.s.chunks_exact_mut(nb)))
            .enumerate()
            .for_each(row);
    }
}

pub(crate) fn quantize_row(
    variant: Variant,
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
) {
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

/// The lane operations of the int8 row rules (sections 2 and 7), per
/// instruction set, so that one generic body ([`quant_row_simd`],
/// [`quant_blocks_simd`]) serves every variant that has them. Each is the
/// scalar expression lane by lane:
/// - `abs_max(m)`: `max(|x|, m)`, where a NaN `|x|` leaves `m` (`vmaxps`
///   returns its second operand then), as `f32::max` ignores NaN; `m` is
///   never NaN. A maximum is exact in any order.
/// - `quant(inv, out)`: `round_small(x * inv)` as three IEEE operations
///   ([`super::math::round_small`]), NaN to 0, else clamped to +-127, to
///   i8 (exact) into `out[0..N]`; returns the lanes' integer sum.
#[cfg(target_arch = "x86_64")]
trait QuantLanes: Copy {
    const N: usize;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn zero() -> Self;
    unsafe fn abs_max(self, m: Self) -> Self;
    unsafe fn hmax(self) -> f32;
    unsafe fn quant(self, inv: f32, out: *mut i8) -> i32;
}

#[cfg(target_arch = "x86_64")]
mod quant_lanes {
    use super::super::consts::MAGIC;
    use super::QuantLanes;
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
}

/// `max |x_i|` (NaN ignored): whole vectors, then the scalar rule on the
/// tail.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn amax_simd<V: QuantLanes>(x: &[f32]) -> f32 {
    let full = x.len() / V::N * V::N;
    let mut m = V::zero();
    for c in x[..full].chunks_exact(V::N) {
        m = V::load(c.as_ptr()).abs_max(m);
    }
    x[full..].iter().fold(m.hmax(), |m, &v| m.max(v.abs()))
}

/// `q_i = clamp(round(x_i * inv), -127, 127)` (NaN: 0) and their sum:
/// whole vectors, then the scalar rule on the tail.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quant_simd<V: QuantLanes>(x: &[f32], inv: f32, q: &mut [i8]) -> i32 {
    let full = x.len() / V::N * V::N;
    let mut sum = 0;
    for (c, o) in x[..full].chunks_exact(V::N).zip(q.chunks_exact_mut(V::N)) {
        sum += V::load(c.as_ptr()).quant(inv, o.as_mut_ptr());
    }
    for (o, &v) in q[full..].iter_mut().zip(&x[full..]) {
        *o = round_small(v * inv).clamp(-127.0, 127.0) as i8;
        sum += *o as i32;
    }
    sum
}

/// The int8 rule of sections 2 and 7 on one run of values (a block, or a
/// whole head row) with `V`'s lanes: `None` (and `q` zeroed) if every
/// value is 0 or NaN, else the scale `amax / 127` and `sum(q)`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quant_run_simd<V: QuantLanes>(x: &[f32], q: &mut [i8]) -> Option<(f32, i32)> {
    let amax = amax_simd::<V>(x);
    if amax == 0.0 {
        q.fill(0);
        return None;
    }
    let isum = quant_simd::<V>(x, 127.0 / amax, q);
    Some((amax / 127.0, isum))
}

/// [`quant_head`] with `V`'s lanes (the same bits).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quant_row_simd<V: QuantLanes>(x: &[f32], q: &mut [i8]) -> f32 {
    assert_eq!(x.len(), q.len());
    quant_run_simd::<V>(x, q).map_or(0.0, |(d, _)| d)
}

/// [`quantize_body`] (section 2, blocks of 32) with `V`'s lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn quant_blocks_simd<V: QuantLanes>(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    assert!(x.len() % QK == 0 && q.len() == x.len());
    assert!(d.len() == x.len() / QK && s.len() == d.len());
    for (b, (xb, qb)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        (d[b], s[b]) = match quant_run_simd::<V>(xb, qb) {
            None => (0.0, 0.0),
            Some((db, isum)) => (db, db * isum as f32),
        };
    }
}

/// [`quant_head`] in AVX-512 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
pub(crate) unsafe fn quant_head_avx512(x: &[f32], q: &mut [i8]) -> f32 {
    quant_row_simd::<quant_lanes::Z>(x, q)
}

/// [`quant_head`] in AVX2 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quant_head_avx2(x: &[f32], q: &mut [i8]) -> f32 {
    quant_row_simd::<quant_lanes::Y>(x, q)
}

/// Activation quantization of a row in AVX-512 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
unsafe fn quantize_row_avx512(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quant_blocks_simd::<quant_lanes::Z>(x, q, d, s)
}

/// Activation quantization of a row in AVX2 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_row_avx2(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    quant_blocks_simd::<quant_lanes::Y>(x, q, d, s)
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
    use crate::kernels::{scalar, KvBuf};

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

    /// A cache of `cap` positions: rows of random values (K times `ks`),
    /// every 29th row special when `specials` (all zeros, one huge value
    /// among small ones, all negative zeros), quantized as the model does;
    /// positions from `valid` on are garbage, which a correct kernel never
    /// lets into a result.
    fn cache(rng: &mut Rng, n_kv: usize, hd: usize, cap: usize, valid: usize, ks: f32) -> KvBuf {
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
    ) -> KvBuf {
        let mut kv = KvBuf::new(n_kv, hd, cap);
        let mut i = 0usize;
        let mut row = |rng: &mut Rng, scale: f32| -> Vec<f32> {
            i += 1;
            let mut r: Vec<f32> = (0..hd).map(|_| rng.value() * scale).collect();
            if specials && i % 29 == 0 {
                match (i / 29) % 3 {
                    0 => r.fill(0.0),
                    1 => r[i % hd] = 3e4 * scale,
                    _ => r.fill(-0.0),
                }
            }
            r
        };
        for t in 0..valid {
            for g in 0..n_kv {
                let k = row(rng, ks);
                let v = row(rng, 1.0);
                kv.set(t, g, &k, &v);
            }
        }
        kv
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
            let kv = cache_with(&mut rng, n_kv, hd, cap, cap, ks, ks < 2.0);
            let view = kv.view();
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
                            &mut AttnScratch::new(),
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
                        let mut scratch = AttnScratch::new();
                        scratch.f = vec![f32::NAN; 5];
                        scratch.q = vec![-3; 1000];
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

    /// Every variant's head-row quantization (K/V cache rows, queries)
    /// equals the scalar rule: lengths with and without a vector tail,
    /// random rows with special values mixed in, all-zero rows, rows whose
    /// only non-zero values are NaN or a lone huge value.
    #[test]
    fn quant_head_variants_match_scalar() {
        let mut rng = Rng(11);
        let specials = [
            0.0f32,
            -0.0,
            1e-42,
            3e38,
            -3e38,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            0.5,
            -1.5,
        ];
        for n in [1usize, 3, 8, 15, 16, 17, 40, 48, 64, 100, 128] {
            for case in 0..8 {
                let x: Vec<f32> = (0..n)
                    .map(|i| match case {
                        0 => 0.0,
                        1 => [f32::NAN, 0.0, -0.0][i % 3],
                        2 if i == n / 2 => -1e30,
                        2 => 0.5,
                        3 | 4 if i % 5 == 0 => specials[(i / 5 + case) % specials.len()],
                        _ => rng.value() * [1.0f32, 1e-3, 50.0][case % 3],
                    })
                    .collect();
                let mut want = vec![0i8; n];
                let dw = scalar::quant_head(&x, &mut want);
                for kern in Kernels::available()
                    .into_iter()
                    .map(|v| Kernels::new(v).unwrap())
                {
                    let mut got = vec![1i8; n];
                    let d = kern.quant_head(&x, &mut got);
                    assert_eq!(got, want, "{:?} n {n} case {case}", kern.variant());
                    assert_eq!(
                        d.to_bits(),
                        dw.to_bits(),
                        "{:?} n {n} case {case}",
                        kern.variant()
                    );
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
                        // The fused pass: `prep` writes row t of `b` from
                        // row t of `a` (here: a copy of x's row, and a
                        // mark in `a` to show it ran once per row), then
                        // quantizes it: the same as quantizing x.
                        let mut a: Vec<f32> = vec![0.0; n * 3];
                        let mut b = vec![f32::NAN; n * cols];
                        let mut got = QuantizedRows::new();
                        prep_quantize_rows(
                            &kern,
                            &mut a,
                            3,
                            &mut b,
                            cols,
                            &mut got,
                            par,
                            |t, ar, br| {
                                br.copy_from_slice(&x[t * cols..(t + 1) * cols]);
                                ar[t % 3] += 1.0;
                            },
                        );
                        assert_eq!(bits(&b), bits(&x));
                        assert_eq!(got.q, want.q, "{:?}", kern.variant());
                        assert_eq!(bits(&got.d), bits(&want.d), "{:?}", kern.variant());
                        assert_eq!(bits(&got.s), bits(&want.s), "{:?}", kern.variant());
                        assert_eq!((got.n(), got.k()), (n, cols));
                        for (t, ar) in a.chunks_exact(3).enumerate() {
                            assert_eq!(ar.iter().sum::<f32>(), 1.0);
                            assert_eq!(ar[t % 3], 1.0);
                        }
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

    /// The prefetch stream walks every line of its regions once, skips
    /// empty regions and stops at the end however much is asked; the
    /// regions of a view are what an attention over its first keys reads.
    #[test]
    fn prefetch_walks_every_region_line_once() {
        let buf = vec![0u8; 300];
        let regions: [&[u8]; 7] = [
            &[],
            &buf[..1],
            &buf[..64],
            &[],
            &buf[..65],
            &buf[10..140],
            &[],
        ];
        let mut pf = Prefetch::new(&regions);
        assert_eq!(pf.left(), 1 + 1 + 2 + 3);
        pf.issue(2);
        assert_eq!(pf.left(), 5);
        assert_eq!((pf.r, pf.off), (4, 0), "at the third non-empty region");
        pf.issue(4);
        assert_eq!((pf.left(), pf.r, pf.off), (1, 5, 128));
        pf.issue(1000);
        assert_eq!((pf.left(), pf.r), (0, regions.len()));
        pf.issue(1);
        assert_eq!(pf.left(), 0);
        assert_eq!(Prefetch::new(&[]).left(), 0);

        let mut rng = Rng(5);
        let kv = cache(&mut rng, 1, 64, 64, 64, 1.0);
        let view = kv.view();
        let [k, dk, v, dv] = view.read_regions(17);
        assert_eq!(
            [k.len(), dk.len(), v.len(), dv.len()],
            [2 * view.k_tile_bytes(), 2 * KV_TILE * 4, 17 * 64, 17 * 4]
        );
        assert_eq!(k.as_ptr(), view.k.as_ptr().cast());
        assert_eq!(v.as_ptr(), view.v.as_ptr().cast());
        let all = view.read_regions(1000);
        assert_eq!(all[2].len(), view.v.len(), "clamped to the view");
    }

    /// Long context with the scores of a real model's scale, and a cache
    /// only partly written (the rest must be ignored); with and without
    /// prefetching.
    #[test]
    fn batched_attention_matches_scalar_at_long_context() {
        let mut rng = Rng(9);
        let (hd, cap, valid) = (64, 2064, 2050);
        for ks in [0.3f32, 8.0] {
            let kv = cache(&mut rng, 1, hd, cap, valid, ks);
            let view = kv.view();
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
                // Without a prefetch, prefetching another cache, and
                // prefetching this one: the same bits.
                let other = cache(&mut rng, 1, hd, cap, valid, ks);
                let prefetches = [
                    [&[][..]; 4],
                    other.view().read_regions(valid),
                    view.read_regions(2049),
                ];
                let got: Vec<Vec<Vec<f32>>> = prefetches
                    .iter()
                    .map(|regions| {
                        let mut got = vec![vec![0f32; hd]; nq];
                        let mut outs: Vec<&mut [f32]> =
                            got.iter_mut().map(|o| o.as_mut_slice()).collect();
                        attention_batch_prefetch(
                            &kern,
                            &view,
                            0,
                            &qs,
                            &n_keys,
                            &mut AttnScratch::new(),
                            &mut outs,
                            regions,
                        );
                        got
                    })
                    .collect();
                for i in 0..nq {
                    let mut want = vec![0f32; hd];
                    scalar::attention(
                        &qv[i],
                        &view,
                        0,
                        n_keys[i],
                        &mut AttnScratch::new(),
                        &mut want,
                    );
                    assert!(want.iter().all(|x| x.is_finite()));
                    for (p, got) in got.iter().enumerate() {
                        assert_eq!(
                            bits(&got[i]),
                            bits(&want),
                            "{:?} ks {ks} query {i} prefetch {p}",
                            kern.variant()
                        );
                    }
                }
            }
        }
    }
}
