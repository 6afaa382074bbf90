//! The specification kernels (docs/NUMERICS.md), written as plain scalar
//! code. Every other variant must return the same bits.
//!
//! Notation in comments follows NUMERICS.md: `fma(a, b, c)` is
//! `a.mul_add(b, c)` (one rounding); `a * b + c` is never fused by Rust.
//!
//! The kernels with fma chains are `#[inline(always)]`: the scalar variant's
//! table on x86_64 CPUs with FMA (`x86_64::SCALAR_FMA`) compiles them a
//! second time with the FMA instructions enabled. `mul_add` is the correctly
//! rounded fused multiply-add either way (a library routine without
//! hardware FMA), and Rust never contracts `a * b + c` on its own, so both
//! copies give the same bits: the second just avoids a call per fma.

use super::math::{exp, round_small};
use super::{AttnScratch, BlockKind, KvView, PackedMatrix, QuantizedRows, KV_TILE, QK};
use std::ops::Range;

/// `sum16` (section 1): 16 striped lane accumulators, then the fixed tree.
#[inline]
pub fn sum16(v: &[f32]) -> f32 {
    let mut l = [0.0f32; 16];
    for (i, &x) in v.iter().enumerate() {
        l[i % 16] += x;
    }
    tree16(l)
}

/// `sumsq16` (section 1): as [`sum16`] with `L = fma(x, x, L)`.
#[inline]
pub fn sumsq16(v: &[f32]) -> f32 {
    let mut l = [0.0f32; 16];
    for (i, &x) in v.iter().enumerate() {
        l[i % 16] = x.mul_add(x, l[i % 16]);
    }
    tree16(l)
}

/// The fixed tree: `for w in [8, 4, 2, 1]: L[j] += L[j + w], j < w`.
#[inline(always)]
fn tree16(mut l: [f32; 16]) -> f32 {
    for w in [8, 4, 2, 1] {
        for j in 0..w {
            l[j] += l[j + w];
        }
    }
    l[0]
}

/// Activation quantization (section 2) of consecutive blocks of 32:
/// `x.len() == q.len() == 32 * d.len() == 32 * s.len()`.
pub fn quantize_row(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    assert!(x.len() % QK == 0 && q.len() == x.len());
    assert!(d.len() == x.len() / QK && s.len() == d.len());
    for (b, (xb, qb)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        let amax = xb.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
        if amax == 0.0 {
            qb.fill(0);
            d[b] = 0.0;
            s[b] = 0.0;
            continue;
        }
        let db = amax / 127.0;
        let inv = 127.0 / amax;
        let mut isum = 0i32;
        for (qo, &v) in qb.iter_mut().zip(xb) {
            // round_small is round_ties_even for |v * inv| <= ~127.
            let r = round_small(v * inv).clamp(-127.0, 127.0) as i8;
            *qo = r;
            isum += r as i32;
        }
        d[b] = db;
        s[b] = db * isum as f32;
    }
}

/// Quantization of one attention row (section 7): section 2's rule with the
/// whole row (`x.len() == q.len()`, a head of 64 values for SmolLM2) as one
/// block. Returns the scale `d` (`x_i ~ d * q_i`).
pub fn quant_head(x: &[f32], q: &mut [i8]) -> f32 {
    assert_eq!(x.len(), q.len());
    let amax = x.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
    if amax == 0.0 {
        q.fill(0);
        return 0.0;
    }
    let inv = 127.0 / amax;
    for (qo, &v) in q.iter_mut().zip(x) {
        *qo = round_small(v * inv).clamp(-127.0, 127.0) as i8;
    }
    amax / 127.0
}

/// Integer dot product of one block (exact in i32).
#[inline(always)]
fn dot_block(w: &[i8], a: &[i8]) -> i32 {
    w.iter().zip(a).map(|(&w, &a)| w as i32 * a as i32).sum()
}

/// Matrix product (section 3) for output rows `rows`, every activation row.
/// `out[t][i]` receives row `rows.start + i` for activation row `t`.
/// Shapes are checked by [`super::Kernels::matmul`].
#[inline(always)]
pub fn matmul(w: &PackedMatrix, x: &QuantizedRows, rows: Range<usize>, out: &mut [&mut [f32]]) {
    let k = w.cols;
    let nb = k / QK;
    for (i, r) in rows.enumerate() {
        let wq = &w.quants[r * k..(r + 1) * k];
        let wd = &w.scales[r * nb..(r + 1) * nb];
        for (t, o) in out.iter_mut().enumerate() {
            let (aq, ad, asum) = x.row(t);
            let mut acc = 0.0f32;
            match w.kind {
                BlockKind::Q8 => {
                    for b in 0..nb {
                        let isum = dot_block(&wq[b * QK..(b + 1) * QK], &aq[b * QK..(b + 1) * QK]);
                        acc = (wd[b] * ad[b]).mul_add(isum as f32, acc);
                    }
                }
                BlockKind::Q4 => {
                    let wm = &w.mins[r * nb..(r + 1) * nb];
                    for b in 0..nb {
                        let isum = dot_block(&wq[b * QK..(b + 1) * QK], &aq[b * QK..(b + 1) * QK]);
                        acc = (wd[b] * ad[b]).mul_add(isum as f32, acc);
                        acc = wm[b].mul_add(asum[b], acc);
                    }
                }
            }
            o[i] = acc;
        }
    }
}

/// RMSNorm (section 4): `y_i = (x_i * r) * w_i`, `r = 1 / sqrt(sumsq16(x)/n + eps)`.
#[inline(always)]
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    assert!(x.len() == w.len() && x.len() == out.len() && !x.is_empty());
    let mean = sumsq16(x) / x.len() as f32;
    let r = 1.0 / (mean + eps).sqrt();
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (xi * r) * wi;
    }
}

/// RoPE (section 6) on one head vector `v` (len `2 * cos.len()`), in place:
/// `(x0, x1) -> (x0*c - x1*s, x0*s + x1*c)` with separate products.
pub fn rope(v: &mut [f32], cos: &[f32], sin: &[f32]) {
    assert!(v.len() == 2 * cos.len() && cos.len() == sin.len());
    for (p, (&c, &s)) in v.chunks_exact_mut(2).zip(cos.iter().zip(sin)) {
        let (x0, x1) = (p[0], p[1]);
        p[0] = x0 * c - x1 * s;
        p[1] = x0 * s + x1 * c;
    }
}

/// Attention of one query (section 7) over keys `0..n_keys` of KV head `g`.
/// `scratch` holds the scores and the quantized query; `out` (len
/// head_dim) receives the result.
#[inline(always)]
pub fn attention(
    q: &[f32],
    kv: &KvView<'_>,
    g: usize,
    n_keys: usize,
    scratch: &mut AttnScratch,
    out: &mut [f32],
) {
    let hd = kv.head_dim;
    assert!(q.len() == hd && out.len() == hd && g < kv.n_kv_head && n_keys > 0);
    // |isum| <= hd * 127 * 127 must stay below 2^24 (exact as f32).
    assert!(hd <= 1024);
    kv.check(n_keys);
    let tiles = n_keys.div_ceil(KV_TILE);
    let scale = 1.0 / (hd as f32).sqrt();
    let AttnScratch { f, q: qi, .. } = scratch;
    f.clear();
    f.resize(tiles * KV_TILE + hd, 0.0);
    let (scores, qs) = f.split_at_mut(tiles * KV_TILE);
    for (qs, &x) in qs.iter_mut().zip(q) {
        *qs = x * scale;
    }
    qi.clear();
    qi.resize(hd, 0);
    let dq = quant_head(qs, qi);
    // s_t = isum_t * (dq * dk_t), isum_t the exact integer dot product.
    // Keys past n_keys in the last tile are computed from whatever the
    // cache holds there and then ignored.
    for (t, s) in scores.iter_mut().enumerate() {
        let isum: i32 = (0..hd)
            .map(|d| qi[d] as i32 * kv.k[kv.k_index(t, g, d)] as i32)
            .sum();
        *s = isum as f32 * (dq * kv.dk[kv.dk_index(t, g)]);
    }
    let scores = &mut scores[..n_keys];
    // A sliding window masks keys 0..k0: weight exactly 0, not in the max.
    let k0 = kv.first_key(n_keys);
    let m = scores[k0..]
        .iter()
        .fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    scores[..k0].fill(0.0);
    for s in scores[k0..].iter_mut() {
        *s = exp(*s - m);
    }
    let z = sum16(scores);
    // o[d] = fma chain over t of w_t * v_t[d], w_t = e_t * dv_t; t outer
    // keeps each o[d]'s chain in order while reading V contiguously.
    out.fill(0.0);
    for (t, &e) in scores.iter().enumerate() {
        let w = e * kv.dv[kv.dv_index(t, g)];
        let vt = &kv.v[kv.v_index(t, g, 0)..][..hd];
        for (o, &v) in out.iter_mut().zip(vt) {
            *o = w.mul_add(v as f32, *o);
        }
    }
    for o in out.iter_mut() {
        *o /= z;
    }
}

/// `out[i] = exp(x[i] - m)`.
#[inline(always)]
pub fn exp_sub(x: &[f32], m: f32, out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    for (o, &v) in out.iter_mut().zip(x) {
        *o = exp(v - m);
    }
}

/// GeGLU gate (section 11), the specification of
/// [`super::batch::gelu_mul`]: `y = (K2 * g) * (1 + (A * g) * g)`, `g =
/// (g / (1 + exp(-y))) * u`, in place.
#[inline(always)]
pub fn gelu_mul(g: &mut [f32], u: &[f32]) {
    use super::ffn::{GELU_A, GELU_K2};
    assert_eq!(g.len(), u.len());
    for (gi, &ui) in g.iter_mut().zip(u) {
        let x = *gi;
        let y = (GELU_K2 * x) * (1.0 + (GELU_A * x) * x);
        *gi = (x / (1.0 + exp(-y))) * ui;
    }
}

/// SwiGLU gate (section 8): `g[i] = (g[i] / (1 + exp(-g[i]))) * u[i]`, in place.
#[inline(always)]
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len());
    for (gi, &ui) in g.iter_mut().zip(u) {
        *gi = (*gi / (1.0 + exp(-*gi))) * ui;
    }
}
