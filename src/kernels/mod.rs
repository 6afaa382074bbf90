//! Numeric kernels: every floating-point operation between the tokens and
//! the coder, the forward pass and the coder's frequency rule (`freq`)
//! (docs/NUMERICS.md), behind one dispatch point per instruction set
//! (`dispatch`: a table of functions per [`Variant`], chosen once).
//! `peak` measures the machine's int8 ceiling for the benchmarks.
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

mod activ;
mod attention;
mod consts;
mod dispatch;
mod ffn;
mod freq;
mod kv;
pub mod math;
mod matrix;
mod peak;
mod portable;
mod quant;
pub mod scalar;
mod variant;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use activ::{QuantPart, QuantizedRows};
pub use dispatch::Kernels;
pub use freq::FIX_BITS;
pub use kv::{AttnScratch, KvView};
pub use matrix::{share_matrices, BlockKind, BlockMatrix, PackedMatrix};
pub use peak::cpu_name;
pub use variant::{KernelError, Variant};

/// The batched kernels (several rows or queries per call), under the path
/// they always had.
pub mod batch {
    pub use super::attention::{attention_batch, attention_batch_prefetch};
    pub use super::ffn::{gelu_mul, silu_mul, GELU_A, GELU_K2};
    pub use super::quant::{prep_quantize_rows, quantize_rows};
}

/// Weights and activations are quantized in blocks of this many values.
pub const QK: usize = 32;

/// The K cache is stored in tiles of this many positions (see [`KvView`]).
pub const KV_TILE: usize = 16;

/// Environment variable that forces a kernel variant (`scalar`, `avx2`,
/// `avx512`, `neon`, `neon-dot`).
pub const KERNEL_ENV: &str = "LLMC_KERNEL";

/// The function table of `v` if this build has the variant and this CPU
/// runs it: the one place where CPU features are checked, which is what
/// makes every call through a [`Kernels`]' table sound (see the `dispatch`
/// module).
fn ops_for(v: Variant) -> Option<&'static dispatch::Ops> {
    match v {
        #[cfg(target_arch = "x86_64")]
        Variant::Scalar if x86_64::fma_available() => Some(&x86_64::SCALAR_FMA),
        Variant::Scalar => Some(&portable::SCALAR),
        #[cfg(target_arch = "x86_64")]
        Variant::Avx2 => x86_64::avx2::available().then_some(&x86_64::AVX2),
        #[cfg(target_arch = "x86_64")]
        Variant::Avx512 => x86_64::avx512::available().then_some(&x86_64::AVX512),
        #[cfg(target_arch = "aarch64")]
        Variant::Neon => aarch64::neon::available().then_some(&aarch64::NEON),
        #[cfg(target_arch = "aarch64")]
        Variant::NeonDot => aarch64::neon::dot_available().then_some(&aarch64::NEON_DOT),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(test)]
mod tests;
