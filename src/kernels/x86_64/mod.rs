//! x86_64 kernel variants, chosen at run time with `is_x86_feature_detected!`.
//! Each returns the same bits as [`super::scalar`]; the module docs of each
//! say how it keeps the specified operation order.
//!
//! This module builds the function tables of the x86_64 variants
//! ([`AVX512`], [`AVX2`], and [`SCALAR_FMA`]: the scalar variant compiled
//! with FMA); `kernels::ops_for` picks one after checking its features.

pub mod attention;
pub mod avx2;
// The AVX-512 intrinsics need Rust 1.89 (the crate's rust-version).
pub mod avx512;
mod fma;
mod freq;
mod peak;
pub mod quant;

use super::dispatch::{Ops, Packing};
use super::{ffn, scalar, Variant};
use crate::kernels::attention::one_query;

/// Whether this CPU has the FMA instructions ([`SCALAR_FMA`]).
pub(crate) fn fma_available() -> bool {
    is_x86_feature_detected!("fma")
}

/// The scalar variant with its fma chains compiled for the FMA
/// instructions (`fma.rs`); the other entries are the portable ones.
pub(crate) static SCALAR_FMA: Ops = Ops {
    variant: Variant::Scalar,
    row_granularity: 16,
    packing: Packing::Canonical,
    matmul: fma::matmul,
    quant_head: scalar::quant_head,
    quantize_row: scalar::quantize_row,
    rmsnorm: fma::rmsnorm,
    attention: fma::attention,
    attention_batch: crate::kernels::attention::portable,
    attention_queries: crate::kernels::attention::per_query,
    exp_sub: fma::exp_sub,
    sum16: scalar::sum16,
    silu_mul: fma::silu_mul,
    freq_table: freq::fill_fma,
    peak: peak::peak_scalar_fma,
    peak_macs: crate::kernels::peak::SCALAR_CHAINS as u64,
};

pub(crate) static AVX512: Ops = Ops {
    variant: Variant::Avx512,
    row_granularity: avx512::GROUP,
    // vpdpbusd multiplies u8 weights by i8 activations: Q8 weights are
    // stored offset by 128 (corrected exactly in the kernel).
    packing: Packing::Interleaved {
        group: avx512::GROUP,
        q8_offset: 128,
    },
    matmul: avx512::matmul,
    quant_head: quant::quant_head_avx512,
    quantize_row: quant::quantize_row_avx512,
    rmsnorm: avx512::rmsnorm,
    attention: one_query,
    attention_batch: attention::avx512,
    attention_queries: crate::kernels::attention::attention_batch_prefetch,
    exp_sub: avx512::exp_sub,
    sum16: avx512::sum16,
    silu_mul: ffn::silu_mul_exp,
    freq_table: freq::fill_avx512,
    peak: peak::peak_avx512,
    peak_macs: peak::AVX512_MACS,
};

pub(crate) static AVX2: Ops = Ops {
    variant: Variant::Avx2,
    row_granularity: avx2::GROUP,
    packing: Packing::Interleaved {
        group: avx2::GROUP,
        q8_offset: 0,
    },
    matmul: avx2::matmul,
    quant_head: quant::quant_head_avx2,
    quantize_row: quant::quantize_row_avx2,
    rmsnorm: avx2::rmsnorm,
    attention: one_query,
    attention_batch: attention::avx2,
    attention_queries: crate::kernels::attention::attention_batch_prefetch,
    exp_sub: avx2::exp_sub,
    sum16: avx2::sum16,
    silu_mul: ffn::silu_mul_exp,
    freq_table: freq::fill_avx2,
    peak: peak::peak_avx2,
    peak_macs: peak::AVX2_MACS,
};
