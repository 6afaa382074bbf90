//! The constants of [`super::math::exp`] and [`super::math::round_small`]
//! (NUMERICS.md section 5), in one place: the scalar specification and every
//! SIMD variant (which evaluates the same operation sequence lane-wise) read
//! them from here.
//!
//! They are written as the spec writes them (decimal literals whose f32
//! rounding is the value used), hence more digits than f32 holds.
#![allow(clippy::excessive_precision)]

/// `x >= HI` gives +inf (bits 0x42b17218).
pub const HI: f32 = 88.722_839_355_468_75;
/// `x <= LO` gives 0 (bits 0xc2aeac50).
pub const LO: f32 = -87.336_547_851_562_5;
pub const LOG2E: f32 = 1.442_695_021_629_333_496_093_75;
pub const LN2_HI: f32 = 0.693_145_751_953_125;
pub const LN2_LO: f32 = 1.428_606_765_330_187_045e-6;
pub const C7: f32 = 1.984_126_98e-4;
pub const C6: f32 = 1.388_888_89e-3;
pub const C5: f32 = 8.333_333_33e-3;
pub const C4: f32 = 4.166_666_67e-2;
pub const C3: f32 = 1.666_666_67e-1;
/// `1.5 * 2^23`: `(v + MAGIC) - MAGIC` rounds `|v| < 2^22` to an integer,
/// ties to even ([`super::math::round_small`]).
pub const MAGIC: f32 = 12_582_912.0;
