//! The scalar variant's function table: the specification kernels of
//! [`super::scalar`], and the batched attention body with the portable lane
//! type. (On x86_64 CPUs with FMA the scalar variant uses
//! `x86_64::SCALAR_FMA` instead: the same functions compiled with FMA.)

use super::dispatch::{Ops, Packing};
use super::{attention, freq, peak, scalar, AttnScratch, Kernels, KvView, Variant};

pub(crate) static SCALAR: Ops = Ops {
    variant: Variant::Scalar,
    row_granularity: 16,
    packing: Packing::Canonical,
    matmul: scalar::matmul,
    quant_head: scalar::quant_head,
    quantize_row: scalar::quantize_row,
    rmsnorm: scalar::rmsnorm,
    attention: attention_spec,
    attention_batch: attention::portable,
    attention_queries: attention::per_query,
    exp_sub: scalar::exp_sub,
    sum16: scalar::sum16,
    silu_mul: silu_mul_spec,
    freq_table: freq::fill_spec,
    peak: peak::peak_scalar,
    peak_macs: peak::SCALAR_CHAINS as u64,
};

/// [`scalar::attention`] with the table's signature.
pub(crate) fn attention_spec(
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

/// [`scalar::silu_mul`] with the table's signature.
fn silu_mul_spec(_: &Kernels, g: &mut [f32], u: &[f32], _tmp: &mut Vec<f32>) {
    scalar::silu_mul(g, u)
}
