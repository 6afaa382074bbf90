//! aarch64 kernel variants (NEON baseline, NEON + dot product), chosen at
//! run time with `is_aarch64_feature_detected!`.

pub mod attention;
pub mod neon;
