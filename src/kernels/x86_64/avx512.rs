//! AVX-512 (F, BW, VL, VNNI) kernels.
//!
//! How each keeps the specification's bits (docs/NUMERICS.md):
//!
//! - matmul (section 3): weights in the interleaved layout with 16 rows per
//!   group (`kernels::matrix::pack_interleaved`), so one zmm lane is one output
//!   row. For each block, `vpdpbusd` computes the 16 rows' integer dot
//!   products (exact: any order); then, per lane, `cvt` (exact, |isum| <
//!   2^24), `mul` (the rounded `dw * d`), `fmadd` (and for Q4 a second
//!   `fmadd` with `mw * s`) — the spec's chain over blocks, in order, in every
//!   lane. No horizontal float reduction exists. Q8 weights are stored as
//!   `w + 128` (u8 for `vpdpbusd`); each dot product starts at
//!   `-128 * sum(q)`, which makes it `sum(w * q)` exactly.
//! - exp (section 5): the same operations lane-wise; the branches of the
//!   scalar code become masks (the k = 128 and k < -126 cases multiply a
//!   second time, every other lane keeps its single product).
//! - sum16 / sumsq16 (section 1): one zmm is the 16 striped lanes; tails use
//!   masked adds that leave the other lanes untouched; then the fixed tree.
//! - attention (section 7) is not here: `kernels::batch` runs it for every
//!   SIMD variant over a lane type (a zmm here).

use super::super::consts as c;
use super::super::{BlockKind, PackedMatrix, QuantizedRows, QK};
use std::arch::x86_64::*;
use std::ops::Range;

/// Rows per interleaved group: one zmm of f32 / i32 lanes.
pub const GROUP: usize = 16;

/// Whether this CPU runs the variant.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("fma")
}

/// Mask of the first `n` (<= 16) lanes.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    debug_assert!(n <= 16);
    ((1u32 << n) - 1) as __mmask16
}

/// Matrix product (section 3); see [`super::super::Kernels::matmul`].
///
/// # Safety
/// The CPU must have the features of [`available`]; `w` must be packed by
/// `pack_interleaved(_, _, 16, 128)` and the shapes checked by the caller.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn matmul(
    w: &PackedMatrix,
    x: &QuantizedRows,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) {
    let k = w.cols;
    let nb = k / QK;
    let n = x.n;
    let q4 = w.kind == BlockKind::Q4;
    // Q8: the kernel computes sum((w + 128) q) = sum(w q) + 128 sum(q); the
    // dot product of (activation row, block) starts at -128 * sum(q).
    let corr: Vec<i32> = if q4 {
        Vec::new()
    } else {
        x.q[..n * k]
            .chunks_exact(QK)
            .map(|b| -128 * b.iter().map(|&v| v as i32).sum::<i32>())
            .collect()
    };
    let chunk = if q4 { 16 * GROUP } else { 32 * GROUP };
    let quants = w.aligned_quants();
    let g_end = rows.end.div_ceil(GROUP);
    assert!(quants.len() >= g_end * nb * chunk && w.scales.len() >= g_end * nb * GROUP);
    assert!(!q4 || w.mins.len() >= g_end * nb * GROUP);
    let a = Act {
        q: x.q.as_ptr(),
        d: x.d.as_ptr(),
        s: x.s.as_ptr(),
        corr: corr.as_ptr(),
        k,
        nb,
    };
    for grp in rows.start / GROUP..g_end {
        let wg = Grp {
            q: quants.as_ptr().add(grp * nb * chunk) as *const u8,
            d: w.scales.as_ptr().add(grp * nb * GROUP),
            m: if q4 {
                w.mins.as_ptr().add(grp * nb * GROUP)
            } else {
                std::ptr::null()
            },
        };
        // Output rows of this group that were asked for: lanes lo..hi.
        let lo = rows.start.max(grp * GROUP) - grp * GROUP;
        let hi = rows.end.min(grp * GROUP + GROUP) - grp * GROUP;
        let o = grp * GROUP + lo - rows.start;
        let mut t = 0;
        while t < n {
            // Tiles of 8 activation rows, then one tile of the rest: each
            // tile loads and unpacks the group's weights once.
            let r = (n - t).min(8);
            macro_rules! run {
                ($($t:literal)*) => {
                    match r {
                        $($t => {
                            let v = if q4 { tile::<$t, true>(&wg, &a, t) } else { tile::<$t, false>(&wg, &a, t) };
                            store(&v, &mut out[t..t + $t], lo, hi, o);
                        })*
                        _ => unreachable!(),
                    }
                };
            }
            run!(1 2 3 4 5 6 7 8);
            t += r;
        }
    }
}

/// One weight group: packed quants, scales and mins of its blocks.
struct Grp {
    q: *const u8,
    d: *const f32,
    m: *const f32,
}

/// The activation rows: quants `[n][k]`, scales and sums `[n][nb]`, Q8
/// corrections `[n][nb]`.
struct Act {
    q: *const i8,
    d: *const f32,
    s: *const f32,
    corr: *const i32,
    k: usize,
    nb: usize,
}

/// Writes lanes `lo..hi` of each tile row to `out[i][o..o + hi - lo]`.
#[inline(always)]
unsafe fn store<const T: usize>(
    r: &[__m512; T],
    out: &mut [&mut [f32]],
    lo: usize,
    hi: usize,
    o: usize,
) {
    for (v, dst) in r.iter().zip(out.iter_mut()) {
        let dst = &mut dst[o..o + (hi - lo)];
        if lo == 0 && hi == GROUP {
            _mm512_storeu_ps(dst.as_mut_ptr(), *v);
        } else {
            let mut tmp = [0f32; GROUP];
            _mm512_storeu_ps(tmp.as_mut_ptr(), *v);
            dst.copy_from_slice(&tmp[lo..hi]);
        }
    }
}

/// 16 rows (one group) times `T` activation rows `t0..t0 + T`: each weight
/// block is loaded and unpacked once for the `T` rows.
#[inline(always)]
unsafe fn tile<const T: usize, const Q4: bool>(w: &Grp, a: &Act, t0: usize) -> [__m512; T] {
    let (k, nb) = (a.k, a.nb);
    let xq = a.q.add(t0 * k);
    let xd = a.d.add(t0 * nb);
    let xs = a.s.add(t0 * nb);
    // Empty (dangling) for Q4: only offset and read for Q8.
    let corr = a.corr.wrapping_add(if Q4 { 0 } else { t0 * nb });
    let nib = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        // wv[j]: lane r holds quants 4j..4j+4 of row r in this block.
        let mut wv = [_mm512_setzero_si512(); 8];
        if Q4 {
            let p = w.q.add(b * 16 * GROUP);
            for i in 0..4 {
                let v = _mm512_load_si512(p.add(64 * i) as *const _);
                wv[i] = _mm512_and_si512(v, nib);
                wv[i + 4] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
            }
        } else {
            let p = w.q.add(b * 32 * GROUP);
            for (j, v) in wv.iter_mut().enumerate() {
                *v = _mm512_load_si512(p.add(64 * j) as *const _);
            }
        }
        let mut isum = [_mm512_setzero_si512(); T];
        if !Q4 {
            for (i, s) in isum.iter_mut().enumerate() {
                *s = _mm512_set1_epi32(*corr.add(i * nb + b));
            }
        }
        let xb = |i: usize, j: usize| {
            _mm512_set1_epi32((xq.add(i * k + b * QK + 4 * j) as *const i32).read_unaligned())
        };
        if T >= 4 {
            for (j, wj) in wv.iter().enumerate() {
                for (i, s) in isum.iter_mut().enumerate() {
                    *s = _mm512_dpbusd_epi32(*s, *wj, xb(i, j));
                }
            }
        } else {
            // Few independent chains: split each row's 8 dependent
            // vpdpbusd in two halves (integer sums: exact in any order).
            for (i, s) in isum.iter_mut().enumerate() {
                let mut h = _mm512_setzero_si512();
                for j in 0..4 {
                    *s = _mm512_dpbusd_epi32(*s, wv[j], xb(i, j));
                    h = _mm512_dpbusd_epi32(h, wv[j + 4], xb(i, j + 4));
                }
                *s = _mm512_add_epi32(*s, h);
            }
        }
        let dw = _mm512_loadu_ps(w.d.add(b * GROUP));
        for (i, (acc, s)) in acc.iter_mut().zip(&isum).enumerate() {
            // acc = fma(dw * d_b, isum, acc)
            let sc = _mm512_mul_ps(dw, _mm512_set1_ps(*xd.add(i * nb + b)));
            *acc = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(*s), *acc);
            if Q4 {
                // acc = fma(mw, s_b, acc)
                let mw = _mm512_loadu_ps(w.m.add(b * GROUP));
                *acc = _mm512_fmadd_ps(mw, _mm512_set1_ps(*xs.add(i * nb + b)), *acc);
            }
        }
    }
    acc
}

/// `math::exp` lane-wise (section 5).
#[inline(always)]
unsafe fn exp16(x: __m512) -> __m512 {
    let k = _mm512_sub_ps(
        _mm512_add_ps(
            _mm512_mul_ps(x, _mm512_set1_ps(c::LOG2E)),
            _mm512_set1_ps(c::MAGIC),
        ),
        _mm512_set1_ps(c::MAGIC),
    );
    let r = _mm512_fmadd_ps(k, _mm512_set1_ps(-c::LN2_HI), x);
    let r = _mm512_fmadd_ps(k, _mm512_set1_ps(-c::LN2_LO), r);
    let mut p = _mm512_set1_ps(c::C7);
    for cst in [c::C6, c::C5, c::C4, c::C3, 0.5, 1.0, 1.0] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(cst));
    }
    // Lanes whose x is NaN or clamped hold garbage here; replaced below.
    let ki = _mm512_cvttps_epi32(k);
    let big = _mm512_cmpgt_epi32_mask(ki, _mm512_set1_epi32(127));
    let small = _mm512_cmplt_epi32_mask(ki, _mm512_set1_epi32(-126));
    // First factor 2^a: a = k, or 127 when k = 128, or k + 64 when k < -126.
    let a = _mm512_mask_mov_epi32(ki, big, _mm512_set1_epi32(127));
    let a = _mm512_mask_add_epi32(a, small, ki, _mm512_set1_epi32(64));
    let pa = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        a,
        _mm512_set1_epi32(127),
    )));
    let y = _mm512_mul_ps(p, pa);
    let y = _mm512_mask_mul_ps(y, big, y, _mm512_set1_ps(2.0));
    let y = _mm512_mask_mul_ps(y, small, y, _mm512_set1_ps(f32::from_bits(63 << 23)));
    let y = _mm512_mask_mov_ps(
        y,
        _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(c::HI)),
        _mm512_set1_ps(f32::INFINITY),
    );
    let y = _mm512_mask_mov_ps(
        y,
        _mm512_cmp_ps_mask::<_CMP_LE_OQ>(x, _mm512_set1_ps(c::LO)),
        _mm512_setzero_ps(),
    );
    _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x), x)
}

/// The fixed tree of section 1 over the 16 lanes.
#[inline(always)]
unsafe fn tree16(l: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(l);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(l)));
    let s8 = _mm256_add_ps(lo, hi); // L[j] + L[j + 8]
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4)); // lanes 0, 1: + lanes 2, 3
    let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
    _mm_cvtss_f32(s1)
}

/// `sum16` (section 1).
///
/// # Safety
/// The CPU must have the features of [`available`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn sum16(x: &[f32]) -> f32 {
    let mut l = _mm512_setzero_ps();
    let mut it = x.chunks_exact(16);
    for ch in &mut it {
        l = _mm512_add_ps(l, _mm512_loadu_ps(ch.as_ptr()));
    }
    let rest = it.remainder();
    if !rest.is_empty() {
        let m = lanes(rest.len());
        l = _mm512_mask_add_ps(l, m, l, _mm512_maskz_loadu_ps(m, rest.as_ptr()));
    }
    tree16(l)
}

/// `sumsq16` (section 1).
#[inline(always)]
unsafe fn sumsq16(x: &[f32]) -> f32 {
    let mut l = _mm512_setzero_ps();
    let mut it = x.chunks_exact(16);
    for ch in &mut it {
        let v = _mm512_loadu_ps(ch.as_ptr());
        l = _mm512_fmadd_ps(v, v, l);
    }
    let rest = it.remainder();
    if !rest.is_empty() {
        let m = lanes(rest.len());
        let v = _mm512_maskz_loadu_ps(m, rest.as_ptr());
        l = _mm512_mask3_fmadd_ps(v, v, l, m);
    }
    tree16(l)
}

/// RMSNorm (section 4). Lengths checked by the caller.
///
/// # Safety
/// The CPU must have the features of [`available`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    assert!(w.len() == n && out.len() == n);
    let mean = sumsq16(x) / n as f32;
    let r = _mm512_set1_ps(1.0 / (mean + eps).sqrt());
    let mut i = 0;
    while i < n {
        let m = lanes((n - i).min(16));
        let xv = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
        let wv = _mm512_maskz_loadu_ps(m, w.as_ptr().add(i));
        let y = _mm512_mul_ps(_mm512_mul_ps(xv, r), wv);
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), m, y);
        i += 16;
    }
}

/// `out[i] = exp(x[i] - m)`.
///
/// # Safety
/// The CPU must have the features of [`available`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn exp_sub(x: &[f32], m: f32, out: &mut [f32]) {
    assert_eq!(out.len(), x.len());
    exp_sub_raw(x.as_ptr(), m, out.as_mut_ptr(), x.len());
}

/// `exp_sub` over raw pointers (`x == out` allowed: each chunk is read
/// before it is written).
#[inline(always)]
unsafe fn exp_sub_raw(x: *const f32, m: f32, out: *mut f32, n: usize) {
    let mv = _mm512_set1_ps(m);
    let mut i = 0;
    while i < n {
        let k = lanes((n - i).min(16));
        let v = _mm512_maskz_loadu_ps(k, x.add(i));
        _mm512_mask_storeu_ps(out.add(i), k, exp16(_mm512_sub_ps(v, mv)));
        i += 16;
    }
}
