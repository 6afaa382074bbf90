//! The frequency rule of NUMERICS.md section 9 (`kernels::freq`), compiled
//! for each x86_64 variant: the same IEEE and integer operations, so the same
//! table. Without hardware FMA, `mul_add` is a slow library call; with the
//! wider instruction sets the compiler also vectorizes every pass.
//!
//! # Safety
//! Each function needs a CPU with the features it enables (checked when its
//! table was chosen: see the dispatch module).

use crate::kernels::freq::fill_impl;

#[target_feature(enable = "fma")]
pub(super) unsafe fn fill_fma(logits: &[f32], q: &mut [u32], freq: &mut [u32], total_bits: u32) {
    fill_impl(logits, q, freq, total_bits)
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn fill_avx2(logits: &[f32], q: &mut [u32], freq: &mut [u32], total_bits: u32) {
    fill_impl(logits, q, freq, total_bits)
}

#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn fill_avx512(logits: &[f32], q: &mut [u32], freq: &mut [u32], total_bits: u32) {
    fill_impl(logits, q, freq, total_bits)
}
