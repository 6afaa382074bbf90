//! aarch64 kernel variants (NEON baseline, NEON + dot product), chosen at
//! run time with `is_aarch64_feature_detected!`.
//!
//! This module builds their function tables ([`NEON`], [`NEON_DOT`]);
//! `kernels::ops_for` picks one after checking its features.

pub mod attention;
pub mod neon;
mod peak;

use super::dispatch::{Ops, Packing};
use super::{ffn, freq, quant, scalar, Variant};
use crate::kernels::attention::one_query;

pub(crate) static NEON: Ops = Ops {
    variant: Variant::Neon,
    row_granularity: neon::GROUP,
    packing: Packing::Interleaved {
        group: neon::GROUP,
        q8_offset: 0,
    },
    matmul: neon::matmul,
    quant_head: scalar::quant_head,
    quantize_row: quant::quantize_body,
    rmsnorm: neon::rmsnorm,
    attention: one_query,
    attention_batch: attention::neon,
    attention_queries: crate::kernels::attention::attention_batch_prefetch,
    exp_sub: neon::exp_sub,
    sum16: neon::sum16,
    silu_mul: ffn::silu_mul_exp,
    freq_table: freq::fill_spec,
    peak: peak::peak_neon,
    peak_macs: peak::NEON_MACS,
};

/// [`NEON`] with the `sdot` matrix product and attention.
pub(crate) static NEON_DOT: Ops = Ops {
    variant: Variant::NeonDot,
    matmul: neon::matmul_dot,
    attention_batch: attention::neon_dot,
    peak: peak::peak_dot,
    peak_macs: peak::DOT_MACS,
    ..NEON
};
