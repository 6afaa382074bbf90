//! [`Kernels`]: the run-time chosen implementation the model calls.

#[cfg(target_arch = "aarch64")]
use super::aarch64;
use super::matrix::{pack_interleaved, Store};
#[cfg(target_arch = "x86_64")]
use super::x86_64;
use super::{
    attention, scalar, AttnScratch, BlockMatrix, KernelError, KvView, PackedMatrix, QuantizedRows,
    Variant, KERNEL_ENV,
};
use crate::mem::LargeBuf;
use std::ops::Range;

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
            Variant::Avx512 => unsafe { x86_64::quant::quant_head_avx512(x, q) },
            #[cfg(target_arch = "x86_64")]
            Variant::Avx2 => unsafe { x86_64::quant::quant_head_avx2(x, q) },
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
    /// kernel ([`attention::attention_batch`]) with this one query, so there is
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
            _ => {
                attention::attention_batch(self, kv, kv_head, &[q], &[n_keys], scratch, &mut [out])
            }
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
