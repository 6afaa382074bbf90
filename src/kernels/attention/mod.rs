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
//! with gathers and ran far slower than the per-query kernel.)

pub(in crate::kernels) mod prefetch;

use super::scalar::quant_head;
use super::{AttnScratch, Kernels, KvView, KV_TILE};
use prefetch::{Prefetch, PF_EXP_CHUNK, PF_EXP_LINES, PF_KEYS, PF_TILE_LINES};

/// Lanes of one score vector: the keys of one K tile.
pub(crate) const L: usize = KV_TILE;

/// Bytes of one K group: 4 dimensions of the 16 keys of a tile.
pub(crate) const KG: usize = 4 * L;

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
    // SAFETY: see the dispatch module; the shapes are checked above.
    unsafe { (k.ops().attention_batch)(k, kv, g, qs, n_keys, scratch, out, prefetch) }
}

/// The scalar tables' `attention_queries`: [`Kernels::attention`] (the
/// specification's kernel) per query; nothing to prefetch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn per_query(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut AttnScratch,
    out: &mut [&mut [f32]],
    _prefetch: &[&[u8]],
) {
    assert!(qs.len() == n_keys.len() && qs.len() == out.len());
    for ((q, &n), o) in qs.iter().zip(n_keys).zip(out.iter_mut()) {
        k.attention(q, kv, g, n, scratch, o);
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
        pub(crate) unsafe fn $name(
            k: &$crate::kernels::Kernels,
            kv: &$crate::kernels::KvView<'_>,
            g: usize,
            qs: &[&[f32]],
            n_keys: &[usize],
            scratch: &mut $crate::kernels::AttnScratch,
            out: &mut [&mut [f32]],
            prefetch: &[&[u8]],
        ) {
            $crate::kernels::attention::body::<$lanes, $qs, $qp>(
                k, kv, g, qs, n_keys, scratch, out, prefetch,
            )
        }
    };
}
pub(crate) use variant_entry;

/// The batched body with the portable lane type (the scalar variant's
/// table).
#[allow(clippy::too_many_arguments)]
pub(crate) fn portable(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    qs: &[&[f32]],
    n_keys: &[usize],
    scratch: &mut AttnScratch,
    out: &mut [&mut [f32]],
    prefetch: &[&[u8]],
) {
    body::<Arr, 6, 3>(k, kv, g, qs, n_keys, scratch, out, prefetch)
}

/// [`Kernels::attention`] of the SIMD variants: the batched kernel with one
/// query.
pub(crate) fn one_query(
    k: &Kernels,
    q: &[f32],
    kv: &KvView<'_>,
    g: usize,
    n_keys: usize,
    scratch: &mut AttnScratch,
    out: &mut [f32],
) {
    attention_batch(k, kv, g, &[q], &[n_keys], scratch, &mut [out]);
}

/// The batched computation with at most `QS` queries per score pass and `QP`
/// per output pass (register budget of the instruction set).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn body<V: Lanes, const QS: usize, const QP: usize>(
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

    scores_pass::<V, QS>(kv, g, qi, dq, w, n_keys, stride, scores, &mut pf);

    // Z of each query.
    let mut z = [0f32; 64];
    let mut zs = Vec::new();
    let zbuf: &mut [f32] = if nq <= z.len() {
        &mut z[..nq]
    } else {
        zs.resize(nq, 0.0);
        &mut zs
    };
    softmax::<V>(k, kv, g, n_keys, stride, scores, es, zbuf, &mut pf);
    output_pass::<V, QP>(kv, g, n_keys, stride, es, zbuf, out, &mut pf);
}

/// The score pass of [`body`]: `scores[j * stride + t]` for every query `j`
/// (quantized rows `qi`, scales `dq`) and key `t < n_keys[j]` (rounded up to
/// whole tiles), in blocks of at most `QS` queries, each reading every K
/// tile once. `w` holds one block's queries as 4-byte groups.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scores_pass<V: Lanes, const QS: usize>(
    kv: &KvView<'_>,
    g: usize,
    qi: &[i8],
    dq: &[f32],
    w: &mut [u32],
    n_keys: &[usize],
    stride: usize,
    scores: &mut [f32],
    pf: &mut Prefetch<'_>,
) {
    let (hd, d4, nq) = (kv.head_dim, kv.head_dim / 4, n_keys.len());
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
            _ if b == QS => scores_block::<V, QS, 1>(kv, g, qw, dqb, &bias, keys, stride, sc, pf),
            1 => scores_block::<V, 1, 4>(kv, g, qw, dqb, &bias, keys, stride, sc, pf),
            2 => scores_block::<V, 2, 2>(kv, g, qw, dqb, &bias, keys, stride, sc, pf),
            3 => scores_block::<V, 3, 2>(kv, g, qw, dqb, &bias, keys, stride, sc, pf),
            4 => scores_block::<V, 4, 1>(kv, g, qw, dqb, &bias, keys, stride, sc, pf),
            _ => scores_block::<V, 6, 1>(kv, g, qw, dqb, &bias, keys, stride, sc, pf),
        }
        i += b;
    }
}

/// The softmax of [`body`], per query `j`: max, `e = exp(s - m)` (in `es`),
/// `zbuf[j] = sum16(e)`, then `w_t = e_t * dv_t` in place.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn softmax<V: Lanes>(
    k: &Kernels,
    kv: &KvView<'_>,
    g: usize,
    n_keys: &[usize],
    stride: usize,
    scores: &[f32],
    es: &mut [f32],
    zbuf: &mut [f32],
    pf: &mut Prefetch<'_>,
) {
    for (qn, zq) in zbuf.iter_mut().enumerate() {
        let n = n_keys[qn];
        // A sliding window masks keys 0..k0 (weight exactly 0, not in the
        // max), as the specification does.
        let k0 = kv.first_key(n);
        let s = &scores[qn * stride + k0..qn * stride + n];
        let m = max(s);
        let e = &mut es[qn * stride..qn * stride + n];
        let (masked, e_win) = e.split_at_mut(k0);
        masked.fill(0.0);
        // (Element-wise: the pieces give the same bits as one call.)
        for (sc, ec) in s.chunks(PF_EXP_CHUNK).zip(e_win.chunks_mut(PF_EXP_CHUNK)) {
            pf.issue::<V>(PF_EXP_LINES);
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
}

/// The output pass of [`body`]: `out[j] = sum_t w_t v_t / zbuf[j]`, in
/// blocks of at most `QP` queries, each reading every V row once.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_pass<V: Lanes, const QP: usize>(
    kv: &KvView<'_>,
    g: usize,
    n_keys: &[usize],
    stride: usize,
    es: &[f32],
    zbuf: &[f32],
    out: &mut [&mut [f32]],
    pf: &mut Prefetch<'_>,
) {
    let nq = n_keys.len();
    // Outputs: blocks of queries, each reading every V row once; the keys
    // all queries of the block see first, then each query's own tail.
    let mut i = 0;
    while i < nq {
        let b = (nq - i).min(QP);
        let common = n_keys[i..i + b].iter().copied().min().unwrap_or(0);
        let e = &es[i * stride..(i + b) * stride];
        let o = &mut out[i..i + b];
        // The rest of the prefetch rides on the first output pass.
        let pf = &mut *pf;
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
pub(crate) trait Lanes: Copy {
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

    /// Asks the memory system to bring the line holding `p[0]` into L2 (a
    /// hint: no effect on any value, no fault). None where the lane type
    /// has no prefetch instruction.
    #[inline(always)]
    fn prefetch_l2(p: &[u8]) {
        let _ = p;
    }

    /// [`quant_head`] (the same bits), in this instruction set where it has
    /// a version.
    #[inline(always)]
    fn quant_head(x: &[f32], q: &mut [i8]) -> f32 {
        quant_head(x, q)
    }
}

/// The portable lane type: 16 `f32::mul_add`, 16 i32 sums.
#[derive(Clone, Copy)]
pub(crate) struct Arr([f32; L]);

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
        pf.issue::<V>(T * PF_TILE_LINES);
        scores_tiles::<V, B, T>(kv, g, qw, dq, bias, tile, stride, sc);
        tile += T;
    }
    while tile < tiles {
        pf.issue::<V>(PF_TILE_LINES);
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
            pf.issue::<V>((pf.left() * PF_KEYS).div_ceil(common - t));
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
