//! x86_64 kernel variants, chosen at run time with `is_x86_feature_detected!`.
//! Each returns the same bits as [`super::scalar`]; the module docs of each
//! say how it keeps the specified operation order.

pub mod attention;
pub mod avx2;
pub mod quant;
// The AVX-512 intrinsics need Rust 1.89 (the crate's rust-version).
pub mod avx512;
