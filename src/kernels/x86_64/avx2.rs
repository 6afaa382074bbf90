//! AVX2 + FMA kernels.
//!
//! Same structure as the AVX-512 variant (see its module docs), with ymm
//! registers:
//!
//! - matmul: 8 rows per interleaved group (a lane per row). Integer dot
//!   products with `vpmaddubsw` (u8 x i8 -> pairs summed to i16) and
//!   `vpmaddwd` by ones (-> i32). `vpmaddubsw` saturates, so the operands
//!   are chosen to stay in range: Q4 nibbles (0..15) times activations
//!   (|q| <= 127) give pair sums <= 3810 and eight of them (<= 30480) are
//!   added in i16 before widening; Q8 uses the sign trick
//!   `|w| * sign(q, w)` (pair sums <= 2 * 128 * 127 = 32512), widened each
//!   step. Then the same per-lane float chain as the spec.
//! - sum16: lanes 0..8 and 8..16 are two ymm; tails go through a lane array
//!   with the spec's scalar adds.

use super::super::consts as c;
use super::super::{BlockKind, PackedMatrix, QuantizedRows, QK};
use std::arch::x86_64::*;
use std::ops::Range;

/// Rows per interleaved group: one ymm of f32 / i32 lanes.
pub const GROUP: usize = 8;

/// Whether this CPU runs the variant.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// Matrix product (section 3); see [`super::super::Kernels::matmul`].
///
/// # Safety
/// The CPU must have AVX2 and FMA; `w` must be packed by
/// `pack_interleaved(_, _, 8, 0)` and the shapes checked by the caller.
#[target_feature(enable = "avx2,fma")]
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
    let chunk = if q4 { 16 * GROUP } else { 32 * GROUP };
    let quants = w.aligned_quants();
    let g_end = rows.end.div_ceil(GROUP);
    assert!(quants.len() >= g_end * nb * chunk && w.scales.len() >= g_end * nb * GROUP);
    assert!(!q4 || w.mins.len() >= g_end * nb * GROUP);
    let a = Act {
        q: x.q.as_ptr(),
        d: x.d.as_ptr(),
        s: x.s.as_ptr(),
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
        let lo = rows.start.max(grp * GROUP) - grp * GROUP;
        let hi = rows.end.min(grp * GROUP + GROUP) - grp * GROUP;
        let o = grp * GROUP + lo - rows.start;
        let mut t = 0;
        while t < n {
            let left = n - t;
            if left >= 4 {
                let r = if q4 {
                    tile::<4, true>(&wg, &a, t)
                } else {
                    tile::<4, false>(&wg, &a, t)
                };
                store(&r, &mut out[t..t + 4], lo, hi, o);
                t += 4;
            } else if left >= 2 {
                let r = if q4 {
                    tile::<2, true>(&wg, &a, t)
                } else {
                    tile::<2, false>(&wg, &a, t)
                };
                store(&r, &mut out[t..t + 2], lo, hi, o);
                t += 2;
            } else {
                let r = if q4 {
                    tile::<1, true>(&wg, &a, t)
                } else {
                    tile::<1, false>(&wg, &a, t)
                };
                store(&r, &mut out[t..t + 1], lo, hi, o);
                t += 1;
            }
        }
    }
}

/// One weight group: packed quants, scales and mins of its blocks.
struct Grp {
    q: *const u8,
    d: *const f32,
    m: *const f32,
}

/// The activation rows: quants `[n][k]`, scales and sums `[n][nb]`.
struct Act {
    q: *const i8,
    d: *const f32,
    s: *const f32,
    k: usize,
    nb: usize,
}

/// Writes lanes `lo..hi` of each tile row to `out[i][o..o + hi - lo]`.
#[inline(always)]
unsafe fn store<const T: usize>(
    r: &[__m256; T],
    out: &mut [&mut [f32]],
    lo: usize,
    hi: usize,
    o: usize,
) {
    for (v, dst) in r.iter().zip(out.iter_mut()) {
        let dst = &mut dst[o..o + (hi - lo)];
        if lo == 0 && hi == GROUP {
            _mm256_storeu_ps(dst.as_mut_ptr(), *v);
        } else {
            let mut tmp = [0f32; GROUP];
            _mm256_storeu_ps(tmp.as_mut_ptr(), *v);
            dst.copy_from_slice(&tmp[lo..hi]);
        }
    }
}

/// Activation bytes `4j..4j+4` of block `b` of tile row `i`, in every lane.
#[inline(always)]
unsafe fn bcast(xq: *const i8, k: usize, i: usize, b: usize, j: usize) -> __m256i {
    _mm256_set1_epi32((xq.add(i * k + b * QK + 4 * j) as *const i32).read_unaligned())
}

/// 8 rows (one group) times `T` activation rows `t0..t0 + T`.
#[inline(always)]
unsafe fn tile<const T: usize, const Q4: bool>(w: &Grp, a: &Act, t0: usize) -> [__m256; T] {
    let (k, nb) = (a.k, a.nb);
    let xq = a.q.add(t0 * k);
    let xd = a.d.add(t0 * nb);
    let xs = a.s.add(t0 * nb);
    let ones = _mm256_set1_epi16(1);
    let nib = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); T];
    for b in 0..nb {
        let mut isum = [_mm256_setzero_si256(); T];
        if Q4 {
            let p = w.q.add(b * 16 * GROUP);
            let mut s16 = [_mm256_setzero_si256(); T];
            for j in 0..4 {
                let v = _mm256_load_si256(p.add(32 * j) as *const _);
                let lo = _mm256_and_si256(v, nib); // quants 4j..4j+4
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib); // 4j+16..
                for (i, s) in s16.iter_mut().enumerate() {
                    let pl = _mm256_maddubs_epi16(lo, bcast(xq, k, i, b, j));
                    let ph = _mm256_maddubs_epi16(hi, bcast(xq, k, i, b, j + 4));
                    *s = _mm256_add_epi16(*s, _mm256_add_epi16(pl, ph));
                }
            }
            for (d, s) in isum.iter_mut().zip(&s16) {
                *d = _mm256_madd_epi16(*s, ones);
            }
        } else {
            let p = w.q.add(b * 32 * GROUP);
            for j in 0..8 {
                let v = _mm256_load_si256(p.add(32 * j) as *const _);
                let av = _mm256_abs_epi8(v);
                for (i, s) in isum.iter_mut().enumerate() {
                    let xv = _mm256_sign_epi8(bcast(xq, k, i, b, j), v);
                    let pr = _mm256_madd_epi16(_mm256_maddubs_epi16(av, xv), ones);
                    *s = _mm256_add_epi32(*s, pr);
                }
            }
        }
        let dw = _mm256_loadu_ps(w.d.add(b * GROUP));
        for (i, (acc, s)) in acc.iter_mut().zip(&isum).enumerate() {
            // acc = fma(dw * d_b, isum, acc)
            let sc = _mm256_mul_ps(dw, _mm256_set1_ps(*xd.add(i * nb + b)));
            *acc = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(*s), *acc);
            if Q4 {
                // acc = fma(mw, s_b, acc)
                let mw = _mm256_loadu_ps(w.m.add(b * GROUP));
                *acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(*xs.add(i * nb + b)), *acc);
            }
        }
    }
    acc
}

/// `math::exp` lane-wise (section 5); branches become blends.
#[inline(always)]
unsafe fn exp8(x: __m256) -> __m256 {
    let k = _mm256_sub_ps(
        _mm256_add_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(c::LOG2E)),
            _mm256_set1_ps(c::MAGIC),
        ),
        _mm256_set1_ps(c::MAGIC),
    );
    let r = _mm256_fmadd_ps(k, _mm256_set1_ps(-c::LN2_HI), x);
    let r = _mm256_fmadd_ps(k, _mm256_set1_ps(-c::LN2_LO), r);
    let mut p = _mm256_set1_ps(c::C7);
    for cst in [c::C6, c::C5, c::C4, c::C3, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(cst));
    }
    let ki = _mm256_cvttps_epi32(k);
    let big = _mm256_cmpgt_epi32(ki, _mm256_set1_epi32(127));
    let small = _mm256_cmpgt_epi32(_mm256_set1_epi32(-126), ki);
    let a = _mm256_blendv_epi8(ki, _mm256_set1_epi32(127), big);
    let a = _mm256_blendv_epi8(a, _mm256_add_epi32(ki, _mm256_set1_epi32(64)), small);
    let pa = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        a,
        _mm256_set1_epi32(127),
    )));
    let y = _mm256_mul_ps(p, pa);
    let y = _mm256_blendv_ps(
        y,
        _mm256_mul_ps(y, _mm256_set1_ps(2.0)),
        _mm256_castsi256_ps(big),
    );
    let y = _mm256_blendv_ps(
        y,
        _mm256_mul_ps(y, _mm256_set1_ps(f32::from_bits(63 << 23))),
        _mm256_castsi256_ps(small),
    );
    let y = _mm256_blendv_ps(
        y,
        _mm256_set1_ps(f32::INFINITY),
        _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(c::HI)),
    );
    let y = _mm256_blendv_ps(
        y,
        _mm256_setzero_ps(),
        _mm256_cmp_ps::<_CMP_LE_OQ>(x, _mm256_set1_ps(c::LO)),
    );
    _mm256_blendv_ps(y, x, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x))
}

/// The fixed tree of section 1; `l0` = lanes 0..8, `l1` = lanes 8..16.
#[inline(always)]
unsafe fn tree16(l0: __m256, l1: __m256) -> f32 {
    let s8 = _mm256_add_ps(l0, l1);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
    _mm_cvtss_f32(s1)
}

/// The 16 lanes in memory.
#[inline(always)]
unsafe fn spill(l0: __m256, l1: __m256) -> [f32; 16] {
    let mut l = [0f32; 16];
    _mm256_storeu_ps(l.as_mut_ptr(), l0);
    _mm256_storeu_ps(l.as_mut_ptr().add(8), l1);
    l
}

/// `sum16` (section 1).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sum16(x: &[f32]) -> f32 {
    let (mut l0, mut l1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut it = x.chunks_exact(16);
    for ch in &mut it {
        l0 = _mm256_add_ps(l0, _mm256_loadu_ps(ch.as_ptr()));
        l1 = _mm256_add_ps(l1, _mm256_loadu_ps(ch.as_ptr().add(8)));
    }
    let rest = it.remainder();
    if !rest.is_empty() {
        let mut l = spill(l0, l1);
        for (a, &v) in l.iter_mut().zip(rest) {
            *a += v;
        }
        l0 = _mm256_loadu_ps(l.as_ptr());
        l1 = _mm256_loadu_ps(l.as_ptr().add(8));
    }
    tree16(l0, l1)
}

/// `sumsq16` (section 1).
#[inline(always)]
unsafe fn sumsq16(x: &[f32]) -> f32 {
    let (mut l0, mut l1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut it = x.chunks_exact(16);
    for ch in &mut it {
        let a = _mm256_loadu_ps(ch.as_ptr());
        let b = _mm256_loadu_ps(ch.as_ptr().add(8));
        l0 = _mm256_fmadd_ps(a, a, l0);
        l1 = _mm256_fmadd_ps(b, b, l1);
    }
    let rest = it.remainder();
    if !rest.is_empty() {
        let mut l = spill(l0, l1);
        for (a, &v) in l.iter_mut().zip(rest) {
            *a = v.mul_add(v, *a);
        }
        l0 = _mm256_loadu_ps(l.as_ptr());
        l1 = _mm256_loadu_ps(l.as_ptr().add(8));
    }
    tree16(l0, l1)
}

/// RMSNorm (section 4).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    assert!(w.len() == n && out.len() == n);
    let mean = sumsq16(x) / n as f32;
    let r = 1.0 / (mean + eps).sqrt();
    let rv = _mm256_set1_ps(r);
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        let xv = _mm256_loadu_ps(x.as_ptr().add(i));
        let wv = _mm256_loadu_ps(w.as_ptr().add(i));
        _mm256_storeu_ps(
            out.as_mut_ptr().add(i),
            _mm256_mul_ps(_mm256_mul_ps(xv, rv), wv),
        );
    }
    for i in full..n {
        out[i] = (x[i] * r) * w[i];
    }
}

/// `exp_sub` over raw pointers (`x == out` allowed: each chunk is read
/// before it is written). Tails go through a zero-padded lane array.
#[inline(always)]
unsafe fn exp_sub_raw(x: *const f32, m: f32, out: *mut f32, n: usize) {
    let mv = _mm256_set1_ps(m);
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        let v = _mm256_loadu_ps(x.add(i));
        _mm256_storeu_ps(out.add(i), exp8(_mm256_sub_ps(v, mv)));
    }
    if full < n {
        let mut buf = [0f32; 8];
        std::ptr::copy_nonoverlapping(x.add(full), buf.as_mut_ptr(), n - full);
        let y = exp8(_mm256_sub_ps(_mm256_loadu_ps(buf.as_ptr()), mv));
        _mm256_storeu_ps(buf.as_mut_ptr(), y);
        std::ptr::copy_nonoverlapping(buf.as_ptr(), out.add(full), n - full);
    }
}

/// `out[i] = exp(x[i] - m)`.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp_sub(x: &[f32], m: f32, out: &mut [f32]) {
    assert_eq!(out.len(), x.len());
    exp_sub_raw(x.as_ptr(), m, out.as_mut_ptr(), x.len());
}
