//! Numeric kernels: every floating-point operation of the forward pass
//! (docs/NUMERICS.md).
//!
//! [`scalar`] and [`math`] are the specification. [`Kernels`] is the run-time
//! selected implementation the model calls for its hot operations; every
//! [`Variant`] must return the same bits as [`Variant::Scalar`] (tests compare
//! with `to_bits()`). A variant may keep weights in its own layout: it receives
//! the canonical [`BlockMatrix`] once at load ([`Kernels::pack_matrix`]) and
//! gets its own [`PackedMatrix`] back in [`Kernels::matmul`].
//!
//! Small element-wise steps that are not worth a SIMD variant (activation
//! quantization, RoPE, SiLU) are plain functions in [`scalar`] used by all.

pub mod batch;
mod consts;
pub mod math;
pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use crate::mem::{LargeBuf, Plain};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

/// Weights and activations are quantized in blocks of this many values.
pub const QK: usize = 32;

/// The K cache is stored in tiles of this many positions (see [`KvView`]).
pub const KV_TILE: usize = 16;

/// Environment variable that forces a kernel variant (`scalar`, `avx2`,
/// `avx512`, `neon`, `neon-dot`).
pub const KERNEL_ENV: &str = "LLMC_KERNEL";

/// Errors of kernel selection and weight conversion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("unknown kernel variant {0:?} (expected scalar, avx2, avx512, neon or neon-dot)")]
    UnknownVariant(String),
    #[error("kernel variant {0} is not available on this machine or in this build")]
    Unavailable(Variant),
    #[error("block matrix {rows}x{cols}: {reason}")]
    Shape {
        rows: usize,
        cols: usize,
        reason: &'static str,
    },
}

/// A kernel implementation. All give identical bits; they differ in speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Portable reference code: the specification.
    Scalar,
    /// x86_64 AVX2 + FMA.
    Avx2,
    /// x86_64 AVX-512 with VNNI.
    Avx512,
    /// aarch64 NEON (baseline: widening multiplies, no dot product).
    Neon,
    /// aarch64 NEON with the dot product extension (`sdot`).
    NeonDot,
}

impl Variant {
    /// All variants, in order of preference (best first) for [`Kernels::detect`].
    pub const ALL: [Variant; 5] = [
        Variant::Avx512,
        Variant::Avx2,
        Variant::NeonDot,
        Variant::Neon,
        Variant::Scalar,
    ];

    /// The name used by `LLMC_KERNEL` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Scalar => "scalar",
            Variant::Avx2 => "avx2",
            Variant::Avx512 => "avx512",
            Variant::Neon => "neon",
            Variant::NeonDot => "neon-dot",
        }
    }

    /// Whether this build has the variant and this CPU can run it.
    pub fn is_available(self) -> bool {
        match self {
            Variant::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => x86_64::avx2::available(),
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512 => x86_64::avx512::available(),
            #[cfg(target_arch = "aarch64")]
            Variant::Neon => aarch64::neon::available(),
            #[cfg(target_arch = "aarch64")]
            Variant::NeonDot => aarch64::neon::dot_available(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = KernelError;
    fn from_str(s: &str) -> Result<Variant, KernelError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(Variant::Scalar),
            "avx2" => Ok(Variant::Avx2),
            "avx512" => Ok(Variant::Avx512),
            "neon" => Ok(Variant::Neon),
            "neon-dot" => Ok(Variant::NeonDot),
            _ => Err(KernelError::UnknownVariant(s.to_string())),
        }
    }
}

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
    kind: BlockKind,
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
    mins: Vec<f32>,
    quants: Vec<i8>,
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
/// packed it may use it (checked by [`Kernels::matmul`]).
///
/// Scalar keeps the [`BlockMatrix`] vectors unchanged. The SIMD variants use
/// the *interleaved* layout of `pack_interleaved`: rows in groups of `G`
/// (a SIMD lane per row, so each row's float chain over blocks runs in its
/// own lane in the spec's order), the last group padded with zero rows.
#[derive(Debug)]
pub struct PackedMatrix {
    variant: Variant,
    kind: BlockKind,
    rows: usize,
    cols: usize,
    /// Variant-defined layout (see above).
    scales: Store<f32>,
    mins: Store<f32>,
    quants: Store<i8>,
}

/// The storage of one array of a [`PackedMatrix`]: its own vector, or a
/// range of a buffer that all of a model's matrices share
/// ([`share_matrices`]).
#[derive(Debug)]
enum Store<T: Plain> {
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
    fn aligned_quants(&self) -> &[i8] {
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
fn pack_interleaved(m: BlockMatrix, variant: Variant, g: usize, q8_offset: u8) -> PackedMatrix {
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

/// `n` activation rows of `k` values quantized per NUMERICS.md section 2:
/// `q[t * k + i]` (i8), per block `d[t * k/32 + b]` and `s[t * k/32 + b]`
/// (`s = d * sum(q)`, used by Q4 weights).
#[derive(Debug, Clone, Default)]
pub struct QuantizedRows {
    n: usize,
    k: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

impl QuantizedRows {
    pub fn new() -> QuantizedRows {
        QuantizedRows::default()
    }

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

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Values per row.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Shapes the rows for `n` rows of `k` values (`k % 32 == 0`) to be
    /// written part by part ([`QuantizedRows::parts_mut`]); values not yet
    /// written are stale.
    pub fn reshape(&mut self, n: usize, k: usize) {
        assert!(k > 0 && k % QK == 0);
        self.n = n;
        self.k = k;
        self.q.resize(n * k, 0);
        self.d.resize(n * k / QK, 0.0);
        self.s.resize(n * k / QK, 0.0);
    }

    /// Disjoint writable parts: `parts[c][t]` is row `t`'s columns
    /// `ranges[c]` (increasing, non-overlapping, bounds multiples of 32),
    /// which [`QuantPart::quantize`] fills exactly as
    /// [`crate::kernels::batch::quantize_rows`] would fill them. For
    /// threads that each produce some blocks of every row.
    pub fn parts_mut(&mut self, ranges: &[Range<usize>]) -> Vec<Vec<QuantPart<'_>>> {
        let (k, nb) = (self.k, self.k / QK);
        let mut parts: Vec<Vec<QuantPart<'_>>> =
            ranges.iter().map(|_| Vec::with_capacity(self.n)).collect();
        let rows = self
            .q
            .chunks_exact_mut(k)
            .zip(self.d.chunks_exact_mut(nb))
            .zip(self.s.chunks_exact_mut(nb));
        for ((mut q, mut d), mut s) in rows.take(self.n) {
            let mut at = 0;
            for (p, r) in parts.iter_mut().zip(ranges) {
                assert!(r.start >= at && r.start % QK == 0 && r.end % QK == 0 && r.end <= k);
                let (skip, len) = (r.start - at, r.end - r.start);
                let (qa, qb) = std::mem::take(&mut q)[skip..].split_at_mut(len);
                let (da, db) = std::mem::take(&mut d)[skip / QK..].split_at_mut(len / QK);
                let (sa, sb) = std::mem::take(&mut s)[skip / QK..].split_at_mut(len / QK);
                p.push(QuantPart {
                    q: qa,
                    d: da,
                    s: sa,
                });
                (q, d, s, at) = (qb, db, sb, r.end);
            }
        }
        parts
    }

    /// Row `t`: `(q[k], d[k/32], s[k/32])`.
    pub fn row(&self, t: usize) -> (&[i8], &[f32], &[f32]) {
        let nb = self.k / QK;
        (
            &self.q[t * self.k..(t + 1) * self.k],
            &self.d[t * nb..(t + 1) * nb],
            &self.s[t * nb..(t + 1) * nb],
        )
    }
}

/// Some columns (whole blocks) of one row of a [`QuantizedRows`]
/// ([`QuantizedRows::parts_mut`]).
#[derive(Debug)]
pub struct QuantPart<'a> {
    q: &'a mut [i8],
    d: &'a mut [f32],
    s: &'a mut [f32],
}

impl QuantPart<'_> {
    /// Quantizes `x` (the part's columns of the row) into the part, with
    /// the bits of [`crate::kernels::batch::quantize_rows`] (the blocks are
    /// independent).
    pub fn quantize(&mut self, k: &Kernels, x: &[f32]) {
        assert_eq!(x.len(), self.q.len());
        batch::quantize_row(k.variant(), x, self.q, self.d, self.s);
    }
}

/// One layer of one sequence's KV cache, as attention reads it.
///
/// K and V are int8 rows with one f32 scale per (position, head)
/// (NUMERICS.md section 7: [`scalar::quant_head`] applied to the whole head
/// row when the token is cached). About 140 bytes per position and head of
/// 64 dimensions instead of 256 (f16) or 512 (f32): attention at long
/// context is bound by streaming the cache.
///
/// With `d4 = ceil(head_dim / 4)` groups of 4 dimensions (a missing
/// dimension of the last group holds 0):
/// - `k`: tiles of [`KV_TILE`] positions, `[tile][n_kv_head][d4][KV_TILE][4]`:
///   position `t`, head `g`, dim `d` is at
///   `(((t / 16 * n_kv_head + g) * d4 + d / 4) * 16 + t % 16) * 4 + d % 4`.
///   One 64-byte group holds 4 dimensions of 16 keys, the operand of one
///   4-way integer dot instruction (`vpdpbusd`, `sdot`) per query.
/// - `dk`: K scale, `[tile][n_kv_head][KV_TILE]` ([`KvView::dk_index`]).
/// - `v`: `[pos][n_kv_head][head_dim]`.
/// - `dv`: V scale, `[pos][n_kv_head]`.
#[derive(Debug, Clone, Copy)]
pub struct KvView<'a> {
    pub k: &'a [i8],
    pub dk: &'a [f32],
    pub v: &'a [i8],
    pub dv: &'a [f32],
    pub n_kv_head: usize,
    pub head_dim: usize,
}

impl<'a> KvView<'a> {
    /// The memory an attention over positions `0..keys` of this view reads,
    /// in the order it reads it: K tiles, K scales, V rows, V scales (every
    /// head of the view; for prefetching).
    pub fn read_regions(&self, keys: usize) -> [&'a [u8]; 4] {
        let tiles = keys.div_ceil(KV_TILE) * self.n_kv_head;
        let rows = keys * self.n_kv_head;
        let k = &self.k[..(tiles * self.k_tile_bytes()).min(self.k.len())];
        let dk = &self.dk[..(tiles * KV_TILE).min(self.dk.len())];
        let v = &self.v[..(rows * self.head_dim).min(self.v.len())];
        let dv = &self.dv[..rows.min(self.dv.len())];
        [
            crate::mem::bytes(k),
            crate::mem::bytes(dk),
            crate::mem::bytes(v),
            crate::mem::bytes(dv),
        ]
    }

    /// An empty view with this shape (for its index functions).
    pub fn layout(n_kv_head: usize, head_dim: usize) -> KvView<'static> {
        KvView {
            k: &[],
            dk: &[],
            v: &[],
            dv: &[],
            n_kv_head,
            head_dim,
        }
    }
    /// Groups of 4 dimensions per K row.
    #[inline(always)]
    pub fn d4(&self) -> usize {
        self.head_dim.div_ceil(4)
    }
    /// Bytes of K per tile and head: `d4 * 64`.
    #[inline(always)]
    pub fn k_tile_bytes(&self) -> usize {
        self.d4() * KV_TILE * 4
    }
    /// Index of K element (position `t`, head `g`, dim `d`).
    #[inline(always)]
    pub fn k_index(&self, t: usize, g: usize, d: usize) -> usize {
        (((t / KV_TILE * self.n_kv_head + g) * self.d4() + d / 4) * KV_TILE + t % KV_TILE) * 4
            + d % 4
    }
    /// Index of the K scale of position `t`, head `g`.
    #[inline(always)]
    pub fn dk_index(&self, t: usize, g: usize) -> usize {
        (t / KV_TILE * self.n_kv_head + g) * KV_TILE + t % KV_TILE
    }
    /// Index of V element (position `t`, head `g`, dim `d`).
    #[inline(always)]
    pub fn v_index(&self, t: usize, g: usize, d: usize) -> usize {
        (t * self.n_kv_head + g) * self.head_dim + d
    }
    /// Index of the V scale of position `t`, head `g`.
    #[inline(always)]
    pub fn dv_index(&self, t: usize, g: usize) -> usize {
        t * self.n_kv_head + g
    }
    /// Panics unless the view holds keys `0..n_keys` (whole K tiles) of
    /// every head.
    pub(crate) fn check(&self, n_keys: usize) {
        let tiles = n_keys.div_ceil(KV_TILE);
        let nkv = self.n_kv_head;
        assert!(self.k.len() >= tiles * nkv * self.k_tile_bytes());
        assert!(self.dk.len() >= tiles * nkv * KV_TILE);
        assert!(self.v.len() >= n_keys * nkv * self.head_dim);
        assert!(self.dv.len() >= n_keys * nkv);
    }
}

/// An owned KV cache in the [`KvView`] layout, for tests: every position
/// starts as garbage (random K/V bytes including -128, NaN K scales,
/// infinite V scales), which attention must never let into a result for
/// positions it does not see.
#[cfg(test)]
pub(crate) struct KvBuf {
    pub k: Vec<i8>,
    pub dk: Vec<f32>,
    pub v: Vec<i8>,
    pub dv: Vec<f32>,
    pub n_kv: usize,
    pub hd: usize,
}

#[cfg(test)]
impl KvBuf {
    pub fn new(n_kv: usize, hd: usize, cap: usize) -> KvBuf {
        let tiles = cap.div_ceil(KV_TILE);
        let layout = KvView::layout(n_kv, hd);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut byte = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as i8
        };
        KvBuf {
            k: (0..tiles * n_kv * layout.k_tile_bytes())
                .map(|_| byte())
                .collect(),
            dk: vec![f32::NAN; tiles * n_kv * KV_TILE],
            v: (0..cap * n_kv * hd).map(|_| byte()).collect(),
            dv: vec![f32::INFINITY; cap * n_kv],
            n_kv,
            hd,
        }
    }

    /// Caches position `t` of head `g` as the model does: each row
    /// quantized by [`scalar::quant_head`].
    pub fn set(&mut self, t: usize, g: usize, k: &[f32], v: &[f32]) {
        let l = KvView::layout(self.n_kv, self.hd);
        let mut q = vec![0i8; self.hd];
        self.dk[l.dk_index(t, g)] = scalar::quant_head(k, &mut q);
        for (d, &x) in q.iter().enumerate() {
            self.k[l.k_index(t, g, d)] = x;
        }
        self.dv[l.dv_index(t, g)] = scalar::quant_head(v, &mut q);
        let i = l.v_index(t, g, 0);
        self.v[i..i + self.hd].copy_from_slice(&q);
    }

    /// Dequantized K and V values of position `t`, head `g`, dim `d`.
    pub fn kv_f32(&self, t: usize, g: usize, d: usize) -> (f32, f32) {
        let l = KvView::layout(self.n_kv, self.hd);
        (
            self.dk[l.dk_index(t, g)] * self.k[l.k_index(t, g, d)] as f32,
            self.dv[l.dv_index(t, g)] * self.v[l.v_index(t, g, d)] as f32,
        )
    }

    pub fn view(&self) -> KvView<'_> {
        KvView {
            k: &self.k,
            dk: &self.dk,
            v: &self.v,
            dv: &self.dv,
            n_kv_head: self.n_kv,
            head_dim: self.hd,
        }
    }
}

/// Reusable buffers of the attention kernels (grow to the largest call).
#[derive(Debug, Default, Clone)]
pub struct AttnScratch {
    /// Scores and weights.
    pub(crate) f: Vec<f32>,
    /// Quantized queries.
    pub(crate) q: Vec<i8>,
    /// Quantized queries as 4-byte words.
    pub(crate) w: Vec<u32>,
}

impl AttnScratch {
    pub const fn new() -> AttnScratch {
        AttnScratch {
            f: Vec::new(),
            q: Vec::new(),
            w: Vec::new(),
        }
    }
}

/// The run-time chosen kernel implementation. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernels {
    variant: Variant,
}

impl Kernels {
    /// The reference implementation.
    pub fn scalar() -> Kernels {
        Kernels {
            variant: Variant::Scalar,
        }
    }

    /// A specific variant, if this build and CPU have it.
    pub fn new(variant: Variant) -> Result<Kernels, KernelError> {
        if variant.is_available() {
            Ok(Kernels { variant })
        } else {
            Err(KernelError::Unavailable(variant))
        }
    }

    /// `LLMC_KERNEL` if set (an unknown or unavailable name is an error, so a
    /// test never silently runs the wrong variant), else the best available.
    pub fn detect() -> Result<Kernels, KernelError> {
        match std::env::var(KERNEL_ENV) {
            Ok(name) if !name.trim().is_empty() => Kernels::new(name.parse()?),
            _ => Ok(Kernels::best()),
        }
    }

    /// The fastest variant this machine runs.
    pub fn best() -> Kernels {
        let variant = Variant::ALL
            .into_iter()
            .find(|v| v.is_available())
            .unwrap_or(Variant::Scalar);
        Kernels { variant }
    }

    /// Every variant this machine runs (for tests holding them against scalar).
    pub fn available() -> Vec<Variant> {
        Variant::ALL
            .into_iter()
            .filter(|v| v.is_available())
            .collect()
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Row ranges given to [`Kernels::matmul`] should start at multiples of
    /// this (a variant may interleave rows in groups); any range is correct,
    /// aligned ones are faster.
    pub fn row_granularity(&self) -> usize {
        match self.variant {
            Variant::Scalar | Variant::Avx512 => 16,
            Variant::Avx2 => 8,
            Variant::Neon | Variant::NeonDot => 4,
        }
    }

    /// Converts a canonical matrix into this variant's layout (once, at load).
    pub fn pack_matrix(&self, m: BlockMatrix) -> PackedMatrix {
        match self.variant {
            Variant::Scalar => PackedMatrix {
                variant: self.variant,
                kind: m.kind,
                rows: m.rows,
                cols: m.cols,
                scales: Store::Own(LargeBuf::from_slice(&m.scales)),
                mins: Store::Own(LargeBuf::from_slice(&m.mins)),
                quants: Store::Own(LargeBuf::from_slice(&m.quants)),
            },
            // vpdpbusd multiplies u8 weights by i8 activations: Q8 weights
            // are stored offset by 128 (corrected exactly in the kernel).
            Variant::Avx512 => pack_interleaved(m, self.variant, 16, 128),
            Variant::Avx2 => pack_interleaved(m, self.variant, 8, 0),
            Variant::Neon | Variant::NeonDot => pack_interleaved(m, self.variant, 4, 0),
        }
    }

    /// `out[t][i] = (W x_t)[rows.start + i]` for every activation row `t` and
    /// every `i < rows.len()` (NUMERICS.md section 3).
    ///
    /// Panics if `w` was packed by another variant or shapes disagree
    /// (`x.k() == w.cols()`, `out.len() == x.n()`, each `out[t].len() ==
    /// rows.len()`, `rows.end <= w.rows()`): those are programming errors.
    pub fn matmul(
        &self,
        w: &PackedMatrix,
        x: &QuantizedRows,
        rows: Range<usize>,
        out: &mut [&mut [f32]],
    ) {
        assert_eq!(w.variant, self.variant, "matrix packed for another variant");
        assert!(x.k() == w.cols && out.len() == x.n() && rows.end <= w.rows);
        assert!(out.iter().all(|o| o.len() == rows.len()));
        if rows.is_empty() || x.n() == 0 {
            return;
        }
        match self.variant {
            // SAFETY (all arms): a `Kernels` of a SIMD variant exists only if
            // `is_available()` confirmed the CPU features; `w` was packed by
            // this variant (asserted above) and the shapes are checked.
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512 => unsafe { x86_64::avx512::matmul(w, x, rows, out) },
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => unsafe { x86_64::avx2::matmul(w, x, rows, out) },
            #[cfg(target_arch = "aarch64")]
            Variant::Neon => unsafe { aarch64::neon::matmul(w, x, rows, out) },
            #[cfg(target_arch = "aarch64")]
            Variant::NeonDot => unsafe { aarch64::neon::matmul_dot(w, x, rows, out) },
            _ => scalar::matmul(w, x, rows, out),
        }
    }

    /// Section 7's row quantization ([`scalar::quant_head`], the same
    /// bits): `q` gets the int8 row, the scale is returned.
    pub fn quant_head(&self, x: &[f32], q: &mut [i8]) -> f32 {
        assert_eq!(x.len(), q.len());
        match self.variant {
            // SAFETY (both arms): features checked when `self` was made.
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512 => unsafe { batch::quant_head_avx512(x, q) },
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => unsafe { batch::quant_head_avx2(x, q) },
            _ => scalar::quant_head(x, q),
        }
    }

    /// RMSNorm of one row (NUMERICS.md section 4): `out = x / rms(x) * w`.
    pub fn rmsnorm(&self, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        assert!(x.len() == w.len() && x.len() == out.len() && !x.is_empty());
        match self.variant {
            // SAFETY (all arms): features checked when `self` was made.
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512 => unsafe { x86_64::avx512::rmsnorm(x, w, eps, out) },
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => unsafe { x86_64::avx2::rmsnorm(x, w, eps, out) },
            #[cfg(target_arch = "aarch64")]
            Variant::Neon | Variant::NeonDot => unsafe { aarch64::neon::rmsnorm(x, w, eps, out) },
            _ => scalar::rmsnorm(x, w, eps, out),
        }
    }

    /// Attention of one query head over keys `0..n_keys` of KV head
    /// `kv_head` (NUMERICS.md section 7). `q` and `out` are `head_dim` long;
    /// `scratch` is reused between calls to avoid allocation.
    ///
    /// Scalar runs the specification; every other variant runs the batched
    /// kernel ([`batch::attention_batch`]) with this one query, so there is
    /// one fast attention implementation, written once over a lane type.
    pub fn attention(
        &self,
        q: &[f32],
        kv: &KvView<'_>,
        kv_head: usize,
        n_keys: usize,
        scratch: &mut AttnScratch,
        out: &mut [f32],
    ) {
        match self.variant {
            Variant::Scalar => scalar::attention(q, kv, kv_head, n_keys, scratch, out),
            _ => batch::attention_batch(self, kv, kv_head, &[q], &[n_keys], scratch, &mut [out]),
        }
    }

    /// `out[i] = exp(x[i] - m)` with the spec `exp` (section 5).
    pub fn exp_sub(&self, x: &[f32], m: f32, out: &mut [f32]) {
        assert_eq!(x.len(), out.len());
        match self.variant {
            // SAFETY (all arms): features checked when `self` was made.
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512 => unsafe { x86_64::avx512::exp_sub(x, m, out) },
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => unsafe { x86_64::avx2::exp_sub(x, m, out) },
            #[cfg(target_arch = "aarch64")]
            Variant::Neon | Variant::NeonDot => unsafe { aarch64::neon::exp_sub(x, m, out) },
            _ => scalar::exp_sub(x, m, out),
        }
    }

    /// `sum16` of NUMERICS.md section 1.
    pub fn sum16(&self, x: &[f32]) -> f32 {
        match self.variant {
            // SAFETY (all arms): features checked when `self` was made.
            #[cfg(target_arch = "x86_64")]
            Variant::Avx512 => unsafe { x86_64::avx512::sum16(x) },
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => unsafe { x86_64::avx2::sum16(x) },
            #[cfg(target_arch = "aarch64")]
            Variant::Neon | Variant::NeonDot => unsafe { aarch64::neon::sum16(x) },
            _ => scalar::sum16(x),
        }
    }
}

#[cfg(test)]
mod tests;
