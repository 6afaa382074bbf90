//! The scalar specification kernels with fma chains, compiled with the FMA
//! instructions enabled (the `#[inline(always)]` bodies of
//! [`crate::kernels::scalar`] inlined here). `mul_add` is the correctly
//! rounded fused multiply-add with or without them, so the bits are the
//! scalar variant's; only the library call per fma is saved.
//!
//! # Safety
//! Each function needs a CPU with FMA ([`super::fma_available`]); the
//! other preconditions are those of the scalar kernel it wraps.

use crate::kernels::{scalar, AttnScratch, Kernels, KvView, PackedMatrix, QuantizedRows};
use std::ops::Range;

#[target_feature(enable = "fma")]
pub(super) unsafe fn matmul(
    w: &PackedMatrix,
    x: &QuantizedRows,
    rows: Range<usize>,
    out: &mut [&mut [f32]],
) {
    scalar::matmul(w, x, rows, out)
}

#[target_feature(enable = "fma")]
pub(super) unsafe fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    scalar::rmsnorm(x, w, eps, out)
}

#[target_feature(enable = "fma")]
pub(super) unsafe fn attention(
    _: &Kernels,
    q: &[f32],
    kv: &KvView<'_>,
    g: usize,
    n_keys: usize,
    scratch: &mut AttnScratch,
    out: &mut [f32],
) {
    scalar::attention(q, kv, g, n_keys, scratch, out)
}

#[target_feature(enable = "fma")]
pub(super) unsafe fn exp_sub(x: &[f32], m: f32, out: &mut [f32]) {
    scalar::exp_sub(x, m, out)
}

#[target_feature(enable = "fma")]
pub(super) unsafe fn silu_mul(_: &Kernels, g: &mut [f32], u: &[f32], _tmp: &mut Vec<f32>) {
    scalar::silu_mul(g, u)
}
