//! The kernel variants ([`Variant`]) and the errors of kernel selection and
//! weight conversion ([`KernelError`]).

use std::fmt;
use std::str::FromStr;

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
    /// All variants, in order of preference (best first) for [`super::Kernels::detect`].
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
        super::ops_for(self).is_some()
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
