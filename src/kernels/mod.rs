//! Numeric kernels (docs/NUMERICS.md).
pub mod math;
