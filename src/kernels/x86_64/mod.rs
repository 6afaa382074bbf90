//! x86_64 kernel variants, chosen at run time with `is_x86_feature_detected!`.
//! Each returns the same bits as [`super::scalar`]; the module docs of each
//! say how it keeps the specified operation order.

pub mod avx2;
// The AVX-512 intrinsics are stable since Rust 1.89, above the crate's
// declared rust-version (1.85). Raising rust-version to 1.89 is the real fix
// (left to the crate owner: clippy then asks for `is_multiple_of` elsewhere).
#[allow(clippy::incompatible_msrv)]
pub mod avx512;
