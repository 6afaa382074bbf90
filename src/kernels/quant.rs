//! Activation quantization (NUMERICS.md section 2) and head-row
//! quantization (section 7) of the fast variants: the row loops, and the
//! generic lane body ([`QuantLanes`]) the x86 variants instantiate.

use super::math::round_small;
use super::{scalar, BlockKind, BlockMatrix, KernelError, Kernels, QuantPart, QuantizedRows, QK};

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
    type Row<'a> = ((&'a [f32], &'a mut [i8]), (&'a mut [f32], &'a mut [f32]));
    let row = |((x, q), (d, s)): Row<'_>| k.quantize_row(x, q, d, s);
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
        k.quantize_row(b, q, d, s)
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
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) trait QuantLanes: Copy {
    const N: usize;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn zero() -> Self;
    unsafe fn abs_max(self, m: Self) -> Self;
    unsafe fn hmax(self) -> f32;
    unsafe fn quant(self, inv: f32, out: *mut i8) -> i32;
}

/// `max |x_i|` (NaN ignored): whole vectors, then the scalar rule on the
/// tail.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn amax_simd<V: QuantLanes>(x: &[f32]) -> f32 {
    let full = x.len() / V::N * V::N;
    let mut m = V::zero();
    for c in x[..full].chunks_exact(V::N) {
        m = V::load(c.as_ptr()).abs_max(m);
    }
    x[full..].iter().fold(m.hmax(), |m, &v| m.max(v.abs()))
}

/// `q_i = clamp(round(x_i * inv), -127, 127)` (NaN: 0) and their sum:
/// whole vectors, then the scalar rule on the tail.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn quant_simd<V: QuantLanes>(x: &[f32], inv: f32, q: &mut [i8]) -> i32 {
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
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn quant_run_simd<V: QuantLanes>(x: &[f32], q: &mut [i8]) -> Option<(f32, i32)> {
    let amax = amax_simd::<V>(x);
    if amax == 0.0 {
        q.fill(0);
        return None;
    }
    let isum = quant_simd::<V>(x, 127.0 / amax, q);
    Some((amax / 127.0, isum))
}

/// [`super::scalar::quant_head`] with `V`'s lanes (the same bits).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn quant_row_simd<V: QuantLanes>(x: &[f32], q: &mut [i8]) -> f32 {
    assert_eq!(x.len(), q.len());
    quant_run_simd::<V>(x, q).map_or(0.0, |(d, _)| d)
}

/// [`quantize_body`] (section 2, blocks of 32) with `V`'s lanes.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(crate) unsafe fn quant_blocks_simd<V: QuantLanes>(
    x: &[f32],
    q: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
) {
    assert!(x.len() % QK == 0 && q.len() == x.len());
    assert!(d.len() == x.len() / QK && s.len() == d.len());
    for (b, (xb, qb)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        (d[b], s[b]) = match quant_run_simd::<V>(xb, qb) {
            None => (0.0, 0.0),
            Some((db, isum)) => (db, db * isum as f32),
        };
    }
}

/// Activation quantization of one row in loops the compiler vectorizes
/// well, with the expressions of [`scalar::quantize_row`] (the same bits).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
pub(crate) fn quantize_body(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    assert!(x.len() % QK == 0 && q.len() == x.len());
    assert!(d.len() == x.len() / QK && s.len() == d.len());
    for (b, (xb, qb)) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).enumerate() {
        let xb: &[f32; QK] = xb.try_into().expect("block");
        let qb: &mut [i8; QK] = qb.try_into().expect("block");
        // max over the block: per lane, then a tree (exact, order-free).
        // `if a > m { a } else { m }` is `f32::max` here: `m` is never NaN
        // and a NaN `a` is ignored, as `f32::max` ignores it.
        const L: usize = QK / 2;
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

impl QuantizedRows {
    /// Quantizes `x` (`n x k`, row-major, `k % 32 == 0`), reusing buffers.
    pub fn quantize(&mut self, x: &[f32], k: usize) {
        assert!(k > 0 && k % QK == 0 && x.len() % k == 0);
        self.n = x.len() / k;
        self.k = k;
        self.q.resize(x.len(), 0);
        self.d.resize(x.len() / QK, 0.0);
        self.s.resize(x.len() / QK, 0.0);
        scalar::quantize_row(x, &mut self.q, &mut self.d, &mut self.s);
    }

    /// [`QuantizedRows::quantize`] with the rows spread over the current
    /// rayon pool (same result: rows are independent).
    pub fn quantize_par(&mut self, x: &[f32], k: usize) {
        use rayon::prelude::*;
        assert!(k > 0 && k % QK == 0 && x.len() % k == 0);
        self.n = x.len() / k;
        self.k = k;
        self.q.resize(x.len(), 0);
        self.d.resize(x.len() / QK, 0.0);
        self.s.resize(x.len() / QK, 0.0);
        let nb = k / QK;
        x.par_chunks_exact(k)
            .zip(self.q.par_chunks_exact_mut(k))
            .zip(self.d.par_chunks_exact_mut(nb))
            .zip(self.s.par_chunks_exact_mut(nb))
            .for_each(|(((x, q), d), s)| scalar::quantize_row(x, q, d, s));
    }
}

impl QuantPart<'_> {
    /// Quantizes `x` (the part's columns of the row) into the part, with
    /// the bits of [`crate::kernels::batch::quantize_rows`] (the blocks are
    /// independent).
    pub fn quantize(&mut self, k: &Kernels, x: &[f32]) {
        assert_eq!(x.len(), self.q.len());
        k.quantize_row(x, self.q, self.d, self.s);
    }
}

impl BlockMatrix {
    /// Converts float weights (`rows x cols`, row-major) to Q8 by the
    /// activation rule of NUMERICS.md section 2 applied to each row.
    pub fn quantize_f32(
        rows: usize,
        cols: usize,
        data: &[f32],
    ) -> Result<BlockMatrix, KernelError> {
        let err = |reason| KernelError::Shape { rows, cols, reason };
        if cols == 0 || cols % QK != 0 {
            return Err(err("column count is not a non-zero multiple of 32"));
        }
        if Some(data.len()) != rows.checked_mul(cols) {
            return Err(err("data length does not match the shape"));
        }
        let mut quants = vec![0i8; data.len()];
        let mut scales = vec![0f32; data.len() / QK];
        let mut sums = vec![0f32; data.len() / QK];
        scalar::quantize_row(data, &mut quants, &mut scales, &mut sums);
        BlockMatrix::new(BlockKind::Q8, rows, cols, scales, Vec::new(), quants)
    }
}
