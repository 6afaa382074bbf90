//! [`Kernels`]: the run-time chosen implementation the model calls, and the
//! table of function pointers ([`Ops`]) it calls through.
//!
//! Each variant has one `static` table, built in its own folder
//! (`portable.rs` for scalar, `x86_64/mod.rs`, `aarch64/mod.rs`).
//! [`super::ops_for`] picks the table once, when a `Kernels` is made
//! ([`Kernels::new`], [`Kernels::detect`], [`Kernels::best`]), and every
//! method calls through it: there is no other dispatch on the variant. The
//! loops of the kernels themselves never go through a pointer.
//!
//! # Safety of the calls through the table
//!
//! The entries are `unsafe fn` because the SIMD variants' functions are
//! compiled with `#[target_feature]`: calling one on a CPU without those
//! features is undefined behaviour. A table is reachable only through
//! `ops_for`, which returns it only after checking the CPU features of its
//! variant, and `Kernels` (whose field is private) has no other
//! constructor. So every entry of a `Kernels`' table runs on a CPU that has
//! its features. The other preconditions of an entry (shapes, a matrix
//! packed by the same variant) are those of the scalar kernel, checked by
//! the `Kernels` method (or kernels function) that calls it, before the
//! call. Each call site says `SAFETY: see the dispatch module`.

use super::matrix::{pack_interleaved, Store};
use super::{
    AttnScratch, BlockMatrix, KernelError, KvView, PackedMatrix, QuantizedRows, Variant, KERNEL_ENV,
};
use crate::mem::LargeBuf;
use std::fmt;
use std::ops::Range;

/// Matrix product (section 3): see [`Kernels::matmul`].
pub(crate) type MatmulFn =
    unsafe fn(&PackedMatrix, &QuantizedRows, Range<usize>, &mut [&mut [f32]]);

/// Activation quantization of one row (`x`, `q`, `d`, `s`; section 2).
pub(crate) type QuantizeRowFn = unsafe fn(&[f32], &mut [i8], &mut [f32], &mut [f32]);

/// Attention of one query: see [`Kernels::attention`].
pub(crate) type AttentionFn =
    unsafe fn(&Kernels, &[f32], &KvView<'_>, usize, usize, &mut AttnScratch, &mut [f32]);

/// Batched attention with a prefetch stream, after the shape checks of
/// `kernels::batch::attention_batch_prefetch` (head size a multiple of 16).
pub(crate) type AttentionBatchFn = unsafe fn(
    &Kernels,
    &KvView<'_>,
    usize,
    &[&[f32]],
    &[usize],
    &mut AttnScratch,
    &mut [&mut [f32]],
    &[&[u8]],
);

/// How a variant lays out its weights ([`Kernels::pack_matrix`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Packing {
    /// The [`BlockMatrix`] vectors unchanged.
    Canonical,
    /// `pack_interleaved` with `group` rows per group and Q8 quants offset
    /// by `q8_offset`.
    #[allow(dead_code)] // unused on targets without SIMD variants
    Interleaved { group: usize, q8_offset: u8 },
}

/// The functions of one variant (see the module docs for the safety
/// argument). All entries give the bits of the scalar specification.
pub(crate) struct Ops {
    pub(crate) variant: Variant,
    pub(crate) row_granularity: usize,
    pub(crate) packing: Packing,
    pub(crate) matmul: MatmulFn,
    pub(crate) quant_head: unsafe fn(&[f32], &mut [i8]) -> f32,
    pub(crate) quantize_row: QuantizeRowFn,
    pub(crate) rmsnorm: unsafe fn(&[f32], &[f32], f32, &mut [f32]),
    pub(crate) attention: AttentionFn,
    pub(crate) attention_batch: AttentionBatchFn,
    /// What the model runs for a batch of queries: [`Kernels::attention_queries`].
    pub(crate) attention_queries: AttentionBatchFn,
    pub(crate) exp_sub: unsafe fn(&[f32], f32, &mut [f32]),
    pub(crate) sum16: unsafe fn(&[f32]) -> f32,
    /// SwiGLU (section 8): `kernels::batch::silu_mul`.
    pub(crate) silu_mul: unsafe fn(&Kernels, &mut [f32], &[f32], &mut Vec<f32>),
    /// The coder's frequencies from logits (section 9): `kernels::freq`.
    pub(crate) freq_table: unsafe fn(&[f32], &mut [u32], &mut [u32], u32),
    /// The int8 peak loop (`kernels::peak`) and its multiply-adds per round.
    pub(crate) peak: unsafe fn(u64, u8, i8) -> i32,
    pub(crate) peak_macs: u64,
}

/// The run-time chosen kernel implementation. Cheap to copy (one pointer).
#[derive(Clone, Copy)]
pub struct Kernels {
    ops: &'static Ops,
}

impl PartialEq for Kernels {
    fn eq(&self, other: &Kernels) -> bool {
        self.variant() == other.variant()
    }
}

impl Eq for Kernels {}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernels")
            .field("variant", &self.variant())
            .finish()
    }
}

impl Kernels {
    /// The reference implementation.
    pub fn scalar() -> Kernels {
        Kernels::new(Variant::Scalar).expect("the scalar variant is always available")
    }

    /// A specific variant, if this build and CPU have it.
    pub fn new(variant: Variant) -> Result<Kernels, KernelError> {
        match super::ops_for(variant) {
            Some(ops) => Ok(Kernels { ops }),
            None => Err(KernelError::Unavailable(variant)),
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
        Variant::ALL
            .into_iter()
            .find_map(|v| Kernels::new(v).ok())
            .unwrap_or_else(Kernels::scalar)
    }

    /// Every variant this machine runs (for tests holding them against scalar).
    pub fn available() -> Vec<Variant> {
        Variant::ALL
            .into_iter()
            .filter(|v| v.is_available())
            .collect()
    }

    pub fn variant(&self) -> Variant {
        self.ops.variant
    }

    /// The chosen table (for the kernels functions outside this module).
    #[inline(always)]
    pub(crate) fn ops(&self) -> &'static Ops {
        self.ops
    }

    /// Row ranges given to [`Kernels::matmul`] should start at multiples of
    /// this (a variant may interleave rows in groups); any range is correct,
    /// aligned ones are faster.
    pub fn row_granularity(&self) -> usize {
        self.ops.row_granularity
    }

    /// Converts a canonical matrix into this variant's layout (once, at load).
    pub fn pack_matrix(&self, m: BlockMatrix) -> PackedMatrix {
        match self.ops.packing {
            Packing::Canonical => PackedMatrix {
                variant: self.variant(),
                kind: m.kind,
                rows: m.rows,
                cols: m.cols,
                scales: Store::Own(LargeBuf::from_slice(&m.scales)),
                mins: Store::Own(LargeBuf::from_slice(&m.mins)),
                quants: Store::Own(LargeBuf::from_slice(&m.quants)),
            },
            Packing::Interleaved { group, q8_offset } => {
                pack_interleaved(m, self.variant(), group, q8_offset)
            }
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
        assert_eq!(
            w.variant,
            self.variant(),
            "matrix packed for another variant"
        );
        assert!(x.k() == w.cols && out.len() == x.n() && rows.end <= w.rows);
        assert!(out.iter().all(|o| o.len() == rows.len()));
        if rows.is_empty() || x.n() == 0 {
            return;
        }
        // SAFETY: see the module docs; `w` was packed by this variant and
        // the shapes are checked above.
        unsafe { (self.ops.matmul)(w, x, rows, out) }
    }

    /// Section 7's row quantization ([`super::scalar::quant_head`], the same
    /// bits): `q` gets the int8 row, the scale is returned.
    pub fn quant_head(&self, x: &[f32], q: &mut [i8]) -> f32 {
        assert_eq!(x.len(), q.len());
        // SAFETY: see the module docs; lengths checked.
        unsafe { (self.ops.quant_head)(x, q) }
    }

    /// Activation quantization (section 2) of one row of consecutive
    /// blocks, as [`super::scalar::quantize_row`] (the same bits).
    #[inline]
    pub(crate) fn quantize_row(&self, x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
        // SAFETY: see the module docs; every entry asserts its shapes.
        unsafe { (self.ops.quantize_row)(x, q, d, s) }
    }

    /// RMSNorm of one row (NUMERICS.md section 4): `out = x / rms(x) * w`.
    pub fn rmsnorm(&self, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
        assert!(x.len() == w.len() && x.len() == out.len() && !x.is_empty());
        // SAFETY: see the module docs; lengths checked.
        unsafe { (self.ops.rmsnorm)(x, w, eps, out) }
    }

    /// Attention of one query head over keys `0..n_keys` of KV head
    /// `kv_head` (NUMERICS.md section 7). `q` and `out` are `head_dim` long;
    /// `scratch` is reused between calls to avoid allocation.
    ///
    /// Scalar runs the specification; every other variant runs the batched
    /// kernel (`kernels::batch::attention_batch`) with this one query, so
    /// there is one fast attention implementation, written once over a lane
    /// type.
    pub fn attention(
        &self,
        q: &[f32],
        kv: &KvView<'_>,
        kv_head: usize,
        n_keys: usize,
        scratch: &mut AttnScratch,
        out: &mut [f32],
    ) {
        // SAFETY: see the module docs; every entry checks the shapes.
        unsafe { (self.ops.attention)(self, q, kv, kv_head, n_keys, scratch, out) }
    }

    /// `out[i] = exp(x[i] - m)` with the spec `exp` (section 5).
    pub fn exp_sub(&self, x: &[f32], m: f32, out: &mut [f32]) {
        assert_eq!(x.len(), out.len());
        // SAFETY: see the module docs; lengths checked.
        unsafe { (self.ops.exp_sub)(x, m, out) }
    }

    /// Attention of each query `qs[i]` over keys `0..n_keys[i]` of KV head
    /// `g` into `out[i]`, pulling the regions in `prefetch` into cache
    /// meanwhile: the batched kernel, except for the scalar variant, which
    /// runs the specification per query (so that a model on scalar kernels
    /// is the specification end to end) and prefetches nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_queries(
        &self,
        kv: &KvView<'_>,
        g: usize,
        qs: &[&[f32]],
        n_keys: &[usize],
        scratch: &mut AttnScratch,
        out: &mut [&mut [f32]],
        prefetch: &[&[u8]],
    ) {
        // SAFETY: see the module docs; both kinds of entry check the shapes.
        unsafe { (self.ops.attention_queries)(self, kv, g, qs, n_keys, scratch, out, prefetch) }
    }

    /// `sum16` of NUMERICS.md section 1.
    pub fn sum16(&self, x: &[f32]) -> f32 {
        // SAFETY: see the module docs.
        unsafe { (self.ops.sum16)(x) }
    }

    /// The coder's integer frequencies for one row of logits (NUMERICS.md
    /// section 9): every `freq[i] >= 1`, summing to `2^total_bits`. `q` is
    /// scratch. Panics unless `logits`, `q` and `freq` have one length `n`
    /// with `1 <= n <= 2^(total_bits - 1)` and `total_bits` is in 24..=30
    /// (what `coder::FreqTable` guarantees).
    pub fn freq_table(&self, logits: &[f32], q: &mut [u32], freq: &mut [u32], total_bits: u32) {
        let n = freq.len();
        assert!(logits.len() == n && q.len() == n, "row lengths");
        assert!((24..=30).contains(&total_bits), "total_bits {total_bits}");
        assert!(
            n >= 1 && n as u64 <= 1u64 << (total_bits - 1),
            "{n} symbols"
        );
        // SAFETY: see the module docs.
        unsafe { (self.ops.freq_table)(logits, q, freq, total_bits) }
    }
}
