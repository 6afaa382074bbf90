//! x86_64 kernel variants, chosen at run time with `is_x86_feature_detected!`.
//! Each returns the same bits as [`super::scalar`]; see the module docs for
//! how each keeps the specified operation order.

pub mod avx2;
pub mod avx512;
