//! aarch64 NEON kernels: [`matmul`] for plain NEON (ARMv8.0: widening
//! multiplies) and [`matmul_dot`] for CPUs with the dot product extension
//! (`sdot`); the other kernels are shared by both variants.
//!
//! Same structure as the x86_64 variants (see `x86_64/avx512.rs`), with
//! 128-bit registers:
//!
//! - matmul: 4 rows per interleaved group, a lane per row, so each row's
//!   float chain over blocks (`vcvtq` exact, `vmulq` = the rounded `dw * d`,
//!   `vfmaq` fused) runs in its own lane in the spec's order. Integer dot
//!   products, exact in any order: with `sdot` directly per 4-byte group;
//!   without, `vmull_s8`/`vmlal_s8` (two products per i16 lane: at most
//!   2 * 128 * 127 = 32512, no overflow) then `vpadalq_s16` into i32 and a
//!   final pairwise add per row.
//! - sum16: the 16 lanes are four q registers; tails go through a lane array
//!   with the spec's scalar adds; then the fixed tree.
//! - attention is not here: `kernels::batch` runs it for every SIMD variant
//!   over a lane type (four q registers here).
//!
//! `sdot` is emitted with inline assembly: its intrinsic
//! (`vdotq_s32`) is not stable in Rust yet.

use super::super::consts as c;
use super::super::{BlockKind, PackedMatrix, QuantizedRows, QK};
use std::arch::aarch64::*;
use std::ops::Range;

/// Rows per interleaved group: one q register of f32 / i32 lanes.
pub const GROUP: usize = 4;

/// Whether this CPU runs plain NEON (every aarch64 Linux machine).
pub fn available() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Whether this CPU also has the dot product instructions.
pub fn dot_available() -> bool {
    available() && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Matrix product (section 3), plain NEON.
///
/// # Safety
/// The CPU must have NEON; `w` must be packed by
/// `pack_interleaved(_, _, 4, 0)` and the shapes checked by the caller.
#[target_feature(enable = "neon")]
pub unsafe fn matmul(
    w: &PackedMatrix,
    x: &QuantizedRows,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) {
    matmul_impl::<false>(w, x, rows, out)
}

/// Matrix product (section 3) with `sdot`.
///
/// # Safety
/// The CPU must have NEON and the dot product extension; `w` as for
/// [`matmul`].
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn matmul_dot(
    w: &PackedMatrix,
    x: &QuantizedRows,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) {
    matmul_impl::<true>(w, x, rows, out)
}

#[inline(always)]
unsafe fn matmul_impl<const DOT: bool>(
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
            q: quants.as_ptr().add(grp * nb * chunk),
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
                    tile::<4, true, DOT>(&wg, &a, t)
                } else {
                    tile::<4, false, DOT>(&wg, &a, t)
                };
                store(&r, &mut out[t..t + 4], lo, hi, o);
                t += 4;
            } else if left >= 2 {
                let r = if q4 {
                    tile::<2, true, DOT>(&wg, &a, t)
                } else {
                    tile::<2, false, DOT>(&wg, &a, t)
                };
                store(&r, &mut out[t..t + 2], lo, hi, o);
                t += 2;
            } else {
                let r = if q4 {
                    tile::<1, true, DOT>(&wg, &a, t)
                } else {
                    tile::<1, false, DOT>(&wg, &a, t)
                };
                store(&r, &mut out[t..t + 1], lo, hi, o);
                t += 1;
            }
        }
    }
}

/// One weight group: packed quants, scales and mins of its blocks.
struct Grp {
    q: *const i8,
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
    r: &[float32x4_t; T],
    out: &mut [&mut [f32]],
    lo: usize,
    hi: usize,
    o: usize,
) {
    for (v, dst) in r.iter().zip(out.iter_mut()) {
        let dst = &mut dst[o..o + (hi - lo)];
        if lo == 0 && hi == GROUP {
            vst1q_f32(dst.as_mut_ptr(), *v);
        } else {
            let mut tmp = [0f32; GROUP];
            vst1q_f32(tmp.as_mut_ptr(), *v);
            dst.copy_from_slice(&tmp[lo..hi]);
        }
    }
}

/// `acc + dot4(w, x)` per i32 lane (`sdot`, vector form). Register-only;
/// callers must be compiled with (or checked for) `dotprod`. Also the
/// attention kernels' integer dot (`kernels::batch`).
#[inline(always)]
pub(crate) unsafe fn sdot(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    std::arch::asm!(
        "sdot {a:v}.4s, {w:v}.16b, {x:v}.16b",
        a = inout(vreg) acc,
        w = in(vreg) w,
        x = in(vreg) x,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// 4 rows (one group) times `T` activation rows `t0..t0 + T`.
#[inline(always)]
unsafe fn tile<const T: usize, const Q4: bool, const DOT: bool>(
    w: &Grp,
    a: &Act,
    t0: usize,
) -> [float32x4_t; T] {
    let (k, nb) = (a.k, a.nb);
    let xq = a.q.add(t0 * k);
    let xd = a.d.add(t0 * nb);
    let xs = a.s.add(t0 * nb);
    let mut acc = [vdupq_n_f32(0.0); T];
    for b in 0..nb {
        // wv[j]: lane r holds quants 4j..4j+4 of row r in this block.
        let mut wv = [vdupq_n_s8(0); 8];
        if Q4 {
            let p = w.q.add(b * 16 * GROUP) as *const u8;
            for i in 0..4 {
                let v = vld1q_u8(p.add(16 * i));
                wv[i] = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
                wv[i + 4] = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
            }
        } else {
            let p = w.q.add(b * 32 * GROUP);
            for (j, v) in wv.iter_mut().enumerate() {
                *v = vld1q_s8(p.add(16 * j));
            }
        }
        // Activation bytes 4j..4j+4 of tile row i, in every lane.
        let xb = |i: usize, j: usize| {
            vreinterpretq_s8_s32(vld1q_dup_s32(xq.add(i * k + b * QK + 4 * j) as *const i32))
        };
        let mut isum = [vdupq_n_s32(0); T];
        if DOT {
            for (j, wj) in wv.iter().enumerate() {
                for (i, s) in isum.iter_mut().enumerate() {
                    *s = sdot(*s, *wj, xb(i, j));
                }
            }
        } else {
            for (i, s) in isum.iter_mut().enumerate() {
                // a01: i32 lanes [row 0, row 0, row 1, row 1] partial sums;
                // a23 likewise for rows 2, 3.
                let mut a01 = vdupq_n_s32(0);
                let mut a23 = vdupq_n_s32(0);
                for j in (0..8).step_by(2) {
                    let (x0, x1) = (xb(i, j), xb(i, j + 1));
                    let lo = vmull_s8(vget_low_s8(wv[j]), vget_low_s8(x0));
                    let lo = vmlal_s8(lo, vget_low_s8(wv[j + 1]), vget_low_s8(x1));
                    let hi = vmull_high_s8(wv[j], x0);
                    let hi = vmlal_high_s8(hi, wv[j + 1], x1);
                    a01 = vpadalq_s16(a01, lo);
                    a23 = vpadalq_s16(a23, hi);
                }
                *s = vpaddq_s32(a01, a23);
            }
        }
        let dw = vld1q_f32(w.d.add(b * GROUP));
        for (i, (acc, s)) in acc.iter_mut().zip(&isum).enumerate() {
            // acc = fma(dw * d_b, isum, acc)
            let sc = vmulq_f32(dw, vdupq_n_f32(*xd.add(i * nb + b)));
            *acc = vfmaq_f32(*acc, sc, vcvtq_f32_s32(*s));
            if Q4 {
                // acc = fma(mw, s_b, acc)
                let mw = vld1q_f32(w.m.add(b * GROUP));
                *acc = vfmaq_f32(*acc, mw, vdupq_n_f32(*xs.add(i * nb + b)));
            }
        }
    }
    acc
}

/// `math::exp` lane-wise (section 5); branches become selects.
#[inline(always)]
unsafe fn exp4(x: float32x4_t) -> float32x4_t {
    let magic = vdupq_n_f32(c::MAGIC);
    let k = vsubq_f32(vaddq_f32(vmulq_f32(x, vdupq_n_f32(c::LOG2E)), magic), magic);
    // vfmaq_f32(a, b, c) = a + b * c, fused.
    let r = vfmaq_f32(x, k, vdupq_n_f32(-c::LN2_HI));
    let r = vfmaq_f32(r, k, vdupq_n_f32(-c::LN2_LO));
    let mut p = vdupq_n_f32(c::C7);
    for cst in [c::C6, c::C5, c::C4, c::C3, 0.5, 1.0, 1.0] {
        p = vfmaq_f32(vdupq_n_f32(cst), p, r);
    }
    let ki = vcvtq_s32_f32(k);
    let big = vcgtq_s32(ki, vdupq_n_s32(127));
    let small = vcltq_s32(ki, vdupq_n_s32(-126));
    let a = vbslq_s32(big, vdupq_n_s32(127), ki);
    let a = vbslq_s32(small, vaddq_s32(ki, vdupq_n_s32(64)), a);
    let pa = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(a, vdupq_n_s32(127))));
    let y = vmulq_f32(p, pa);
    let y = vbslq_f32(big, vmulq_f32(y, vdupq_n_f32(2.0)), y);
    let y = vbslq_f32(
        small,
        vmulq_f32(y, vdupq_n_f32(f32::from_bits(63 << 23))),
        y,
    );
    let y = vbslq_f32(
        vcgeq_f32(x, vdupq_n_f32(c::HI)),
        vdupq_n_f32(f32::INFINITY),
        y,
    );
    let y = vbslq_f32(vcleq_f32(x, vdupq_n_f32(c::LO)), vdupq_n_f32(0.0), y);
    // Not NaN <=> x == x.
    vbslq_f32(vceqq_f32(x, x), y, x)
}

/// The fixed tree of section 1 over lanes `l[0]` (0..4) .. `l[3]` (12..16).
#[inline(always)]
unsafe fn tree16(l: [float32x4_t; 4]) -> f32 {
    let a0 = vaddq_f32(l[0], l[2]); // L[j] + L[j + 8], j = 0..4
    let a1 = vaddq_f32(l[1], l[3]); // j = 4..8
    let b = vaddq_f32(a0, a1); // + L[j + 4]
    let c2 = vadd_f32(vget_low_f32(b), vget_high_f32(b)); // + L[j + 2]
    vget_lane_f32::<0>(c2) + vget_lane_f32::<1>(c2)
}

/// Lanes to memory and back, for tails.
#[inline(always)]
unsafe fn spill(l: [float32x4_t; 4]) -> [f32; 16] {
    let mut m = [0f32; 16];
    for (i, v) in l.iter().enumerate() {
        vst1q_f32(m.as_mut_ptr().add(4 * i), *v);
    }
    m
}

#[inline(always)]
unsafe fn reload(m: &[f32; 16]) -> [float32x4_t; 4] {
    std::array::from_fn(|i| vld1q_f32(m.as_ptr().add(4 * i)))
}

/// `sum16` (section 1).
///
/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub unsafe fn sum16(x: &[f32]) -> f32 {
    let mut l = [vdupq_n_f32(0.0); 4];
    let mut it = x.chunks_exact(16);
    for ch in &mut it {
        for (i, li) in l.iter_mut().enumerate() {
            *li = vaddq_f32(*li, vld1q_f32(ch.as_ptr().add(4 * i)));
        }
    }
    let rest = it.remainder();
    if !rest.is_empty() {
        let mut m = spill(l);
        for (a, &v) in m.iter_mut().zip(rest) {
            *a += v;
        }
        l = reload(&m);
    }
    tree16(l)
}

/// `sumsq16` (section 1).
#[inline(always)]
unsafe fn sumsq16(x: &[f32]) -> f32 {
    let mut l = [vdupq_n_f32(0.0); 4];
    let mut it = x.chunks_exact(16);
    for ch in &mut it {
        for (i, li) in l.iter_mut().enumerate() {
            let v = vld1q_f32(ch.as_ptr().add(4 * i));
            *li = vfmaq_f32(*li, v, v);
        }
    }
    let rest = it.remainder();
    if !rest.is_empty() {
        let mut m = spill(l);
        for (a, &v) in m.iter_mut().zip(rest) {
            *a = v.mul_add(v, *a);
        }
        l = reload(&m);
    }
    tree16(l)
}

/// RMSNorm (section 4).
///
/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub unsafe fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    assert!(w.len() == n && out.len() == n);
    let mean = sumsq16(x) / n as f32;
    let r = 1.0 / (mean + eps).sqrt();
    let rv = vdupq_n_f32(r);
    let full = n / 4 * 4;
    for i in (0..full).step_by(4) {
        let xv = vld1q_f32(x.as_ptr().add(i));
        let wv = vld1q_f32(w.as_ptr().add(i));
        vst1q_f32(out.as_mut_ptr().add(i), vmulq_f32(vmulq_f32(xv, rv), wv));
    }
    for i in full..n {
        out[i] = (x[i] * r) * w[i];
    }
}

/// `exp_sub` over raw pointers (`x == out` allowed: each chunk is read
/// before it is written). Tails go through a zero-padded lane array.
#[inline(always)]
unsafe fn exp_sub_raw(x: *const f32, m: f32, out: *mut f32, n: usize) {
    let mv = vdupq_n_f32(m);
    let full = n / 4 * 4;
    for i in (0..full).step_by(4) {
        vst1q_f32(out.add(i), exp4(vsubq_f32(vld1q_f32(x.add(i)), mv)));
    }
    if full < n {
        let mut buf = [0f32; 4];
        std::ptr::copy_nonoverlapping(x.add(full), buf.as_mut_ptr(), n - full);
        let y = exp4(vsubq_f32(vld1q_f32(buf.as_ptr()), mv));
        vst1q_f32(buf.as_mut_ptr(), y);
        std::ptr::copy_nonoverlapping(buf.as_ptr(), out.add(full), n - full);
    }
}

/// `out[i] = exp(x[i] - m)`.
///
/// # Safety
/// The CPU must have NEON.
#[target_feature(enable = "neon")]
pub unsafe fn exp_sub(x: &[f32], m: f32, out: &mut [f32]) {
    assert_eq!(out.len(), x.len());
    exp_sub_raw(x.as_ptr(), m, out.as_mut_ptr(), x.len());
}
