//! Weight matrices: the canonical block form ([`BlockMatrix`]), the
//! per-variant packed form ([`PackedMatrix`], [`pack_interleaved`]) and the
//! shared weight buffers of a model ([`share_matrices`]).

use super::{KernelError, Variant, QK};
use crate::mem::{LargeBuf, Plain};
use std::ops::Range;
use std::sync::Arc;

/// Weight block format (NUMERICS.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `w = scale * q`, `q` in -128..=127.
    Q8,
    /// `w = scale * q + min`, `q` in 0..=15.
    Q4,
}

/// A weight matrix in the canonical, variant-independent block form:
/// `rows` rows of `cols` weights (`cols % 32 == 0`), one f32 scale (and for
/// Q4 one f32 min) per block of 32, one quant per weight stored as i8.
///
/// Layout: `scales[r * cols/32 + b]`, `mins` likewise (empty for Q8),
/// `quants[r * cols + i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockMatrix {
    pub(super) kind: BlockKind,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) scales: Vec<f32>,
    pub(super) mins: Vec<f32>,
    pub(super) quants: Vec<i8>,
}

impl BlockMatrix {
    /// Checks the shape: `cols` a non-zero multiple of 32, vector lengths
    /// consistent, Q4 quants within 0..=15.
    pub fn new(
        kind: BlockKind,
        rows: usize,
        cols: usize,
        scales: Vec<f32>,
        mins: Vec<f32>,
        quants: Vec<i8>,
    ) -> Result<BlockMatrix, KernelError> {
        let err = |reason| KernelError::Shape { rows, cols, reason };
        if cols == 0 || cols % QK != 0 {
            return Err(err("column count is not a non-zero multiple of 32"));
        }
        let n = rows.checked_mul(cols).ok_or(err("size overflows"))?;
        if quants.len() != n || scales.len() != n / QK {
            return Err(err("quant or scale count does not match the shape"));
        }
        match kind {
            BlockKind::Q8 if !mins.is_empty() => return Err(err("Q8 matrix with mins")),
            BlockKind::Q4 if mins.len() != n / QK => {
                return Err(err("min count does not match the shape"))
            }
            BlockKind::Q4 if quants.iter().any(|&q| !(0..=15).contains(&q)) => {
                return Err(err("Q4 quant outside 0..=15"))
            }
            _ => {}
        }
        Ok(BlockMatrix {
            kind,
            rows,
            cols,
            scales,
            mins,
            quants,
        })
    }

    pub fn kind(&self) -> BlockKind {
        self.kind
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    pub fn mins(&self) -> &[f32] {
        &self.mins
    }
    pub fn quants(&self) -> &[i8] {
        &self.quants
    }

    /// The matrix with its rows reordered: row `i` of the result is row
    /// `perm[i]` of `self` (`perm` a permutation of `0..rows`; panics
    /// otherwise). Exact: blocks move whole.
    pub fn permute_rows(&self, perm: &[usize]) -> BlockMatrix {
        assert_eq!(perm.len(), self.rows, "one index per row");
        let mut seen = vec![false; self.rows];
        for &p in perm {
            assert!(p < self.rows && !std::mem::replace(&mut seen[p], true));
        }
        let (c, nb) = (self.cols, self.cols / QK);
        let pick = |v: &[f32], w: usize| -> Vec<f32> {
            perm.iter()
                .flat_map(|&p| v[p * w..(p + 1) * w].iter().copied())
                .collect()
        };
        BlockMatrix {
            kind: self.kind,
            rows: self.rows,
            cols: c,
            scales: pick(&self.scales, nb),
            mins: if self.mins.is_empty() {
                Vec::new()
            } else {
                pick(&self.mins, nb)
            },
            quants: perm
                .iter()
                .flat_map(|&p| self.quants[p * c..(p + 1) * c].iter().copied())
                .collect(),
        }
    }

    /// Dequantizes row `r` into `out` (len `cols`), NUMERICS.md section 8
    /// (embedding lookup): Q8 `d * q`, Q4 `d * q + m` (no fma).
    pub fn dequant_row(&self, r: usize, out: &mut [f32]) {
        assert!(r < self.rows && out.len() == self.cols);
        let nb = self.cols / QK;
        let q = &self.quants[r * self.cols..(r + 1) * self.cols];
        for b in 0..nb {
            let d = self.scales[r * nb + b];
            let qs = &q[b * QK..(b + 1) * QK];
            let o = &mut out[b * QK..(b + 1) * QK];
            match self.kind {
                BlockKind::Q8 => {
                    for (o, &q) in o.iter_mut().zip(qs) {
                        *o = d * q as f32;
                    }
                }
                BlockKind::Q4 => {
                    let m = self.mins[r * nb + b];
                    for (o, &q) in o.iter_mut().zip(qs) {
                        *o = d * q as f32 + m;
                    }
                }
            }
        }
    }
}

/// A weight matrix in the layout of one kernel variant. Only the variant that
/// packed it may use it (checked by [`super::Kernels::matmul`]).
///
/// Scalar keeps the [`BlockMatrix`] vectors unchanged. The SIMD variants use
/// the *interleaved* layout of `pack_interleaved`: rows in groups of `G`
/// (a SIMD lane per row, so each row's float chain over blocks runs in its
/// own lane in the spec's order), the last group padded with zero rows.
#[derive(Debug)]
pub struct PackedMatrix {
    pub(super) variant: Variant,
    pub(super) kind: BlockKind,
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// Variant-defined layout (see above).
    pub(super) scales: Store<f32>,
    pub(super) mins: Store<f32>,
    pub(super) quants: Store<i8>,
}

/// The storage of one array of a [`PackedMatrix`]: its own vector, or a
/// range of a buffer that all of a model's matrices share
/// ([`share_matrices`]).
#[derive(Debug)]
pub(super) enum Store<T: Plain> {
    Own(LargeBuf<T>),
    Shared(Arc<LargeBuf<T>>, Range<usize>),
}

impl<T: Plain> std::ops::Deref for Store<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Store::Own(v) => v,
            Store::Shared(b, r) => &b[r.clone()],
        }
    }
}

/// Moves the arrays of the SIMD-packed matrices among `mats` into three
/// buffers shared by all of them ([`LargeBuf`]: huge pages where the system
/// has them), each matrix's quants at a 64-byte aligned offset. A decoding
/// step streams every weight once (about 110 MB for SmolLM2); in one large
/// mapping that stream crosses a page boundary every 2 MB instead of every
/// 4 KB. The values, and so every result, are unchanged. Matrices of the
/// scalar variant (which index their quants from the start of the vector)
/// are left as they are.
pub fn share_matrices(mats: &mut [&mut PackedMatrix]) {
    let mut mats: Vec<&mut PackedMatrix> = mats
        .iter_mut()
        .map(|m| &mut **m)
        .filter(|m| m.variant != Variant::Scalar)
        .collect();
    let (mut nq, mut ns, mut nm) = (0, 0, 0);
    for m in &mats {
        nq += m.aligned_quants().len().div_ceil(64) * 64;
        ns += m.scales.len();
        nm += m.mins.len();
    }
    // 63 spare bytes so the data can start on a cache line whatever the
    // buffer's own alignment.
    let (mut q, mut sc, mut mn) = (
        LargeBuf::<i8>::zeroed(nq + 63),
        LargeBuf::zeroed(ns),
        LargeBuf::zeroed(nm),
    );
    let mut spans = Vec::new();
    let (mut oq, mut os, mut om) = (q.as_ptr().align_offset(64).min(63), 0, 0);
    for m in mats.iter_mut() {
        let a = m.aligned_quants();
        q[oq..oq + a.len()].copy_from_slice(a);
        sc[os..os + m.scales.len()].copy_from_slice(&m.scales);
        mn[om..om + m.mins.len()].copy_from_slice(&m.mins);
        spans.push((
            oq..oq + a.len(),
            os..os + m.scales.len(),
            om..om + m.mins.len(),
        ));
        oq += a.len().div_ceil(64) * 64;
        os += m.scales.len();
        om += m.mins.len();
        // Free each copied matrix at once: the load then never holds the
        // weights twice.
        (m.quants, m.scales, m.mins) = (
            Store::Own(LargeBuf::new()),
            Store::Own(LargeBuf::new()),
            Store::Own(LargeBuf::new()),
        );
    }
    let (q, sc, mn) = (Arc::new(q), Arc::new(sc), Arc::new(mn));
    for (m, (rq, rs, rm)) in mats.iter_mut().zip(spans) {
        m.quants = Store::Shared(q.clone(), rq);
        m.scales = Store::Shared(sc.clone(), rs);
        m.mins = Store::Shared(mn.clone(), rm);
    }
}

impl PackedMatrix {
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn kind(&self) -> BlockKind {
        self.kind
    }
    pub fn variant(&self) -> Variant {
        self.variant
    }
    /// Bytes held, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.scales.len() * 4 + self.mins.len() * 4 + self.quants.len()
    }

    /// Interleaved layout: the quant bytes from their 64-byte aligned start.
    /// (The buffer never moves, so the offset is the one used at pack
    /// time.)
    #[allow(dead_code)] // unused on targets without SIMD variants
    pub(super) fn aligned_quants(&self) -> &[i8] {
        let off = self.quants.as_ptr().align_offset(64);
        &self.quants[off.min(self.quants.len())..]
    }
}

/// Packs `m` into the interleaved layout with `g` rows per group (`g` a
/// multiple of 4). With `nb = cols / 32` blocks per row and `ng =
/// ceil(rows / g)` groups (rows past `rows` are zero: scale 0, min 0, quant 0):
///
/// - `scales[(grp * nb + b) * g + r]` = scale of row `grp * g + r`, block `b`;
///   `mins` likewise (Q4 only).
/// - `quants`, from a 64-byte aligned start ([`PackedMatrix::aligned_quants`]),
///   one chunk per `(grp, b)` in that order. Writing `q[r][i]` for quant `i`
///   (0..32) of row `grp * g + r` in block `b`, and vectors of `4 * g` bytes
///   holding 4 consecutive quants of each row side by side (byte `4 * r + i`):
///   - Q4 (`16 * g` bytes): 4 vectors; vector `p` byte `4r + i` =
///     `q[r][4p + i] | q[r][4p + 16 + i] << 4` (low nibbles give quants
///     `4p..4p+4`, high nibbles `4p+16..4p+20`).
///   - Q8 (`32 * g` bytes): 8 vectors; vector `j` byte `4r + i` =
///     `q[r][4j + i] + q8_offset` (wrapping: 128 turns i8 into u8 for
///     `vpdpbusd`).
#[allow(dead_code)] // unused on targets without SIMD variants
pub(super) fn pack_interleaved(
    m: BlockMatrix,
    variant: Variant,
    g: usize,
    q8_offset: u8,
) -> PackedMatrix {
    debug_assert!(g % 4 == 0 && g > 0);
    let (rows, cols) = (m.rows, m.cols);
    let nb = cols / QK;
    let ng = rows.div_ceil(g);
    let q4 = m.kind == BlockKind::Q4;
    // Mapped buffers: freed when the model moves them into its shared
    // buffers, they go straight back to the system.
    let mut scales = LargeBuf::zeroed_paged(ng * nb * g);
    let mut mins = LargeBuf::zeroed_paged(if q4 { ng * nb * g } else { 0 });
    let chunk = if q4 { 16 * g } else { 32 * g };
    // 63 spare bytes so the data can start on a cache line.
    let mut quants = LargeBuf::<i8>::zeroed_paged(ng * nb * chunk + 63);
    let off = quants.as_ptr().align_offset(64);
    let data = &mut quants[off..off + ng * nb * chunk];
    for grp in 0..ng {
        for b in 0..nb {
            let c = &mut data[(grp * nb + b) * chunk..][..chunk];
            for r in 0..g.min(rows - grp * g) {
                let row = grp * g + r;
                let sb = (grp * nb + b) * g + r;
                scales[sb] = m.scales[row * nb + b];
                if q4 {
                    mins[sb] = m.mins[row * nb + b];
                }
                let q = &m.quants[row * cols + b * QK..][..QK];
                for i in 0..4 {
                    if q4 {
                        for p in 0..4 {
                            let (lo, hi) = (q[4 * p + i] as u8, q[4 * p + 16 + i] as u8);
                            c[p * 4 * g + 4 * r + i] = (lo | hi << 4) as i8;
                        }
                    } else {
                        for j in 0..8 {
                            c[j * 4 * g + 4 * r + i] =
                                (q[4 * j + i] as u8).wrapping_add(q8_offset) as i8;
                        }
                    }
                }
            }
        }
    }
    PackedMatrix {
        variant,
        kind: m.kind,
        rows,
        cols,
        scales: Store::Own(scales),
        mins: Store::Own(mins),
        quants: Store::Own(quants),
    }
}
