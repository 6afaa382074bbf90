//! The specification kernels (docs/NUMERICS.md), written as plain scalar
//! code. Every other variant must return the same bits.
//!
//! Notation in comments follows NUMERICS.md: `fma(a, b, c)` is
//! `a.mul_add(b, c)` (one rounding); `a * b + c` is never fused by Rust.

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

/// Defines `pub fn name(..)` whose body is compiled twice on x86_64: for the
/// baseline target and with the FMA instruction set enabled, chosen at run
/// time. `mul_add` is the correctly rounded fused multiply-add either way (a
/// library routine without hardware FMA), and Rust never contracts `a * b + c`
/// on its own, so both copies give the same bits: the second just avoids a
/// function call per fma.
macro_rules! fma_dispatch {
    ($(#[$m:meta])* pub fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? $body:block) => {
        $(#[$m])*
        pub fn $name($($a: $t),*) $(-> $r)? {
            #[inline(always)]
            fn body($($a: $t),*) $(-> $r)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "fma")]
                unsafe fn with_fma($($a: $t),*) $(-> $r)? {
                    body($($a),*)
                }
                if std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the FMA instructions.
                    return unsafe { with_fma($($a),*) };
                }
            }
            body($($a),*)
        }
    };
}

fma_dispatch! {
    /// Matrix product (section 3) for output rows `rows`, every activation row.
    /// `out[t][i]` receives row `rows.start + i` for activation row `t`.
    /// Shapes are checked by [`super::Kernels::matmul`].
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
}

fma_dispatch! {
    /// RMSNorm (section 4): `y_i = (x_i * r) * w_i`, `r = 1 / sqrt(sumsq16(x)/n + eps)`.
    pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        assert!(x.len() == w.len() && x.len() == out.len() && !x.is_empty());
        let mean = sumsq16(x) / x.len() as f32;
        let r = 1.0 / (mean + eps).sqrt();
        for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
            *o = (xi * r) * wi;
        }
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

fma_dispatch! {
    /// Attention of one query (section 7) over keys `0..n_keys` of KV head `g`.
    /// `scratch` holds the scores and the quantized query; `out` (len
    /// head_dim) receives the result.
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
        let m = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        for s in scores.iter_mut() {
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
}

fma_dispatch! {
    /// `out[i] = exp(x[i] - m)`.
    pub fn exp_sub(x: &[f32], m: f32, out: &mut [f32]) {
        assert_eq!(x.len(), out.len());
        for (o, &v) in out.iter_mut().zip(x) {
            *o = exp(v - m);
        }
    }
}

fma_dispatch! {
    /// SwiGLU gate (section 8): `g[i] = (g[i] / (1 + exp(-g[i]))) * u[i]`, in place.
    pub fn silu_mul(g: &mut [f32], u: &[f32]) {
        assert_eq!(g.len(), u.len());
        for (gi, &ui) in g.iter_mut().zip(u) {
            *gi = (*gi / (1.0 + exp(-*gi))) * ui;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{BlockMatrix, Kernels};

    /// Deterministic pseudo-random numbers for tests (SplitMix64).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn f32(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    #[test]
    fn sum16_order_is_the_specified_one() {
        // Values chosen so that a different association gives another result:
        // 1e8 + 1 - 1e8 depends on order in f32.
        let mut v = vec![0.0f32; 40];
        v[0] = 1e8;
        v[16] = 1.0; // lane 0: 1e8 + 1 = 1e8
        v[32] = -1e8; // lane 0: 0
        v[5] = 1.0;
        assert_eq!(sum16(&v), 1.0);
        // Left to right, both ones are lost against 1e8.
        let seq = v.iter().fold(0.0f32, |a, &b| a + b);
        assert_eq!(seq, 0.0);
        // The tree: lanes 3 and 11 meet first at w=8.
        let mut w = vec![0.0f32; 16];
        w[3] = 1e8;
        w[11] = -1e8;
        w[1] = 0.5;
        assert_eq!(sum16(&w), 0.5);
        assert_eq!(sum16(&[]), 0.0);
        assert_eq!(sumsq16(&[3.0, 4.0]), 25.0);
    }

    #[test]
    fn quantize_block_rules() {
        let mut x = vec![0.0f32; 64];
        for (i, v) in x.iter_mut().enumerate().take(32) {
            *v = (i as f32 - 15.5) * 0.25;
        }
        // second block stays zero
        let mut q = vec![0i8; 64];
        let mut d = vec![0f32; 2];
        let mut s = vec![0f32; 2];
        quantize_row(&x, &mut q, &mut d, &mut s);
        let amax = 15.5f32 * 0.25;
        assert_eq!(d[0].to_bits(), (amax / 127.0f32).to_bits());
        assert_eq!((q[0], q[31]), (-127, 127)); // the extremes map to -+127 exactly
        let inv = 127.0f32 / amax;
        for i in 0..32 {
            assert_eq!(q[i] as f32, (x[i] * inv).round_ties_even(), "{i}");
        }
        let isum: i32 = q[..32].iter().map(|&v| v as i32).sum();
        assert_eq!(s[0].to_bits(), (d[0] * isum as f32).to_bits());
        assert_eq!((d[1], s[1]), (0.0, 0.0));
        assert!(q[32..].iter().all(|&v| v == 0));
    }

    #[test]
    fn matmul_matches_dequantized_reference_closely_and_spec_exactly() {
        let mut rng = Rng(7);
        let (rows, cols, n) = (37, 96, 5);
        for kind in [BlockKind::Q8, BlockKind::Q4] {
            let nb = rows * cols / QK;
            let quants: Vec<i8> = (0..rows * cols)
                .map(|_| match kind {
                    BlockKind::Q8 => (rng.next() % 255) as i8,
                    BlockKind::Q4 => (rng.next() % 16) as i8,
                })
                .map(|q| if q == -128 { -127 } else { q })
                .collect();
            let scales: Vec<f32> = (0..nb).map(|_| rng.f32() * 0.01).collect();
            let mins: Vec<f32> = match kind {
                BlockKind::Q8 => vec![],
                BlockKind::Q4 => (0..nb).map(|_| rng.f32() * 0.05).collect(),
            };
            let m = BlockMatrix::new(kind, rows, cols, scales, mins, quants).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f32() * 3.0).collect();
            let mut qx = QuantizedRows::new();
            qx.quantize(&x, cols);
            let k = Kernels::scalar();
            let pm = k.pack_matrix(m.clone());
            let mut full = vec![0f32; n * rows];
            {
                let mut outs: Vec<&mut [f32]> = full.chunks_mut(rows).collect();
                k.matmul(&pm, &qx, 0..rows, &mut outs);
            }
            // Split row ranges give the same bits.
            let mut split = vec![0f32; n * rows];
            for r in [0..5, 5..16, 16..37] {
                let mut tmp = vec![0f32; n * r.len()];
                let mut outs: Vec<&mut [f32]> = tmp.chunks_mut(r.len()).collect();
                k.matmul(&pm, &qx, r.clone(), &mut outs);
                for t in 0..n {
                    split[t * rows + r.start..t * rows + r.end]
                        .copy_from_slice(&tmp[t * r.len()..(t + 1) * r.len()]);
                }
            }
            assert!(full
                .iter()
                .zip(&split)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            // Independent literal evaluation of the spec formula.
            let mut wrow = vec![0f32; cols];
            for t in 0..n {
                let (aq, ad, asum) = qx.row(t);
                for r in 0..rows {
                    let mut acc = 0.0f32;
                    for b in 0..cols / QK {
                        let mut isum = 0i32;
                        for i in 0..QK {
                            isum +=
                                m.quants()[r * cols + b * QK + i] as i32 * aq[b * QK + i] as i32;
                        }
                        let dw = m.scales()[r * cols / QK + b];
                        acc = f32::mul_add(dw * ad[b], isum as f32, acc);
                        if kind == BlockKind::Q4 {
                            acc = f32::mul_add(m.mins()[r * cols / QK + b], asum[b], acc);
                        }
                    }
                    assert_eq!(acc.to_bits(), full[t * rows + r].to_bits());
                    // And it approximates the float product.
                    m.dequant_row(r, &mut wrow);
                    let exact: f64 = wrow
                        .iter()
                        .zip(&x[t * cols..(t + 1) * cols])
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum();
                    let mag: f64 = wrow.iter().map(|a| a.abs() as f64).sum::<f64>() * 3.0;
                    assert!((acc as f64 - exact).abs() <= mag * 0.01, "{acc} vs {exact}");
                }
            }
        }
    }

    #[test]
    fn rmsnorm_formula() {
        let x: Vec<f32> = (0..40).map(|i| i as f32 * 0.37 - 5.0).collect();
        let w: Vec<f32> = (0..40).map(|i| 1.0 + i as f32 * 0.01).collect();
        let mut out = vec![0f32; 40];
        rmsnorm(&x, &w, 1e-5, &mut out);
        let ss = sumsq16(&x);
        let r = 1.0f32 / (ss / 40.0 + 1e-5).sqrt();
        for i in 0..40 {
            assert_eq!(out[i].to_bits(), ((x[i] * r) * w[i]).to_bits());
        }
        let rms = (x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / 40.0).sqrt();
        assert!(((out[3] as f64) - x[3] as f64 / rms * w[3] as f64).abs() < 1e-5);
    }

    #[test]
    fn rope_rotates_pairs() {
        let mut v = [1.0f32, 2.0, 3.0, 4.0];
        rope(&mut v, &[0.0, 1.0], &[1.0, 0.0]);
        assert_eq!(v, [-2.0, 1.0, 3.0, 4.0]);
    }

    /// The spec against an f64 softmax over the dequantized cache and
    /// query (checks the layout and the formula; the int8 rounding itself
    /// is the spec).
    #[test]
    fn attention_matches_f64_softmax_and_layout() {
        let mut rng = Rng(11);
        let (n_kv, hd, n_keys) = (3usize, 64usize, 37usize);
        let mut kv = crate::kernels::KvBuf::new(n_kv, hd, n_keys);
        for t in 0..n_keys {
            for g in 0..n_kv {
                let k: Vec<f32> = (0..hd).map(|_| rng.f32()).collect();
                let v: Vec<f32> = (0..hd).map(|_| rng.f32()).collect();
                kv.set(t, g, &k, &v);
            }
        }
        let view = kv.view();
        let q: Vec<f32> = (0..hd).map(|_| rng.f32() * 2.0).collect();
        let qp: Vec<f32> = q.iter().map(|&x| x * 0.125).collect();
        let mut qi = vec![0i8; hd];
        let dq = quant_head(&qp, &mut qi);
        let mut out = vec![0f32; hd];
        let mut scratch = AttnScratch::new();
        for g in 0..n_kv {
            for nk in [1, 16, 17, n_keys] {
                attention(&q, &view, g, nk, &mut scratch, &mut out);
                let s: Vec<f64> = (0..nk)
                    .map(|t| {
                        (0..hd)
                            .map(|d| dq as f64 * qi[d] as f64 * kv.kv_f32(t, g, d).0 as f64)
                            .sum::<f64>()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..hd {
                    let o: f64 = (0..nk)
                        .map(|t| e[t] * kv.kv_f32(t, g, d).1 as f64)
                        .sum::<f64>()
                        / z;
                    assert!((o - out[d] as f64).abs() < 1e-5, "g{g} nk{nk} d{d}");
                }
            }
        }
    }

    /// quant_head: section 2's rule on the whole row.
    #[test]
    fn quant_head_rule() {
        let mut q = [1i8; 8];
        assert_eq!(
            quant_head(&[0.0, -0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], &mut q),
            0.0
        );
        assert_eq!(q, [0; 8]);
        let x = [1.0f32, -2.54, 0.5, 127.0, -127.0, 0.25, 1e-9, 63.5];
        let d = quant_head(&x, &mut q);
        assert_eq!(d.to_bits(), (127.0f32 / 127.0).to_bits());
        // 0.5 and 63.5 are ties: to even.
        assert_eq!(q, [1, -3, 0, 127, -127, 0, 0, 64]);
        let x = [1e30f32, 1.0, -3e29, 0.0];
        let mut q = [0i8; 4];
        let d = quant_head(&x, &mut q);
        assert_eq!(d.to_bits(), (1e30f32 / 127.0).to_bits());
        assert_eq!(q, [127, 0, -38, 0]);
    }

    #[test]
    fn silu_mul_values() {
        let mut g = [0.0f32, 1.0, -1.0, -100.0, 100.0];
        let u = [1.0f32, 2.0, 1.0, 1.0, 0.5];
        silu_mul(&mut g, &u);
        let want = [0.0f64, 2.0 * 0.7310585786, -0.2689414214, -3.7e-42, 50.0];
        for i in 0..5 {
            assert!((g[i] as f64 - want[i]).abs() < 1e-6, "{i}: {}", g[i]);
        }
    }
}
