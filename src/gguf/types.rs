//! ggml tensor types (block layout sizes) and exact half-precision widening.

use std::fmt;

/// A ggml tensor element type as stored in a GGUF tensor info (`u32` id).
///
/// Quantized types store elements in blocks: `block_size()` elements take
/// `type_size()` bytes. A tensor's first dimension (`dims[0]`, the contiguous
/// one) must be a multiple of the block size.
///
/// Every type id that current ggml defines is listed, so that any GGUF file
/// can be parsed and its tensor data ranges checked; whether a type can be
/// *computed with* is the model loader's business. Type ids that ggml never
/// assigned or has since removed (4, 5, 31..=33, 36..=38, >= 40) make
/// [`crate::gguf::Gguf`] refuse the file at open time with
/// [`crate::gguf::GgufError::UnknownTensorType`]: without the block layout the
/// tensor's byte size, and so its bounds, cannot be checked.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// (type, ggml id, name, elements per block, bytes per block)
const TABLE: &[(GgmlType, u32, &str, u32, u32)] = &[
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    // d: f16, 16 bytes of 4-bit quants
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    // d, m: f16, 16 bytes of 4-bit quants
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    // d: f16, 32 x i8
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q8_1, 9, "Q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "Q8_K", 256, 292),
    (GgmlType::IQ2_XXS, 16, "IQ2_XXS", 256, 66),
    (GgmlType::IQ2_XS, 17, "IQ2_XS", 256, 74),
    (GgmlType::IQ3_XXS, 18, "IQ3_XXS", 256, 98),
    (GgmlType::IQ1_S, 19, "IQ1_S", 256, 50),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    (GgmlType::IQ3_S, 21, "IQ3_S", 256, 110),
    (GgmlType::IQ2_S, 22, "IQ2_S", 256, 82),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", 256, 136),
    (GgmlType::I8, 24, "I8", 1, 1),
    (GgmlType::I16, 25, "I16", 1, 2),
    (GgmlType::I32, 26, "I32", 1, 4),
    (GgmlType::I64, 27, "I64", 1, 8),
    (GgmlType::F64, 28, "F64", 1, 8),
    (GgmlType::IQ1_M, 29, "IQ1_M", 256, 56),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::TQ1_0, 34, "TQ1_0", 256, 54),
    (GgmlType::TQ2_0, 35, "TQ2_0", 256, 66),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
];

impl GgmlType {
    fn row(self) -> &'static (GgmlType, u32, &'static str, u32, u32) {
        // The table lists every variant exactly once (checked by a unit test).
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every GgmlType variant is in TABLE")
    }

    /// The type for a ggml type id, or `None` for ids ggml does not (or no
    /// longer) define.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// The ggml type id as stored in GGUF.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// The ggml name, e.g. `"Q4_1"`.
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Elements per block (1 for plain types).
    pub fn block_size(self) -> u32 {
        self.row().3
    }

    /// Bytes per block.
    pub fn type_size(self) -> u32 {
        self.row().4
    }

    /// Byte size of `n_elements` elements, or `None` if `n_elements` is not a
    /// whole number of blocks or the size overflows `u64`.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let bs = u64::from(self.block_size());
        if n_elements % bs != 0 {
            return None;
        }
        (n_elements / bs).checked_mul(u64::from(self.type_size()))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Widen an IEEE-754 binary16 value to binary32. Exact for every input:
/// normals, subnormals (renormalized), signed zeros, infinities, and NaNs
/// (sign and payload kept, payload shifted into the top mantissa bits, so a
/// quiet NaN stays quiet and a signalling one stays signalling).
pub fn f16_to_f32(bits: u16) -> f32 {
    let bits = u32::from(bits);
    let sign = (bits & 0x8000) << 16;
    let exp = (bits >> 10) & 0x1f;
    let man = bits & 0x3ff;
    let out = if exp == 0x1f {
        // Inf (man == 0) or NaN.
        sign | 0x7f80_0000 | (man << 13)
    } else if exp == 0 {
        if man == 0 {
            sign
        } else {
            // Subnormal: value = man * 2^-24. With p the index of man's top
            // set bit (0..=9), value = 2^(p-24) * (man / 2^p), a normal f32
            // with biased exponent p - 24 + 127 and the bits below p as the
            // fraction.
            let p = 31 - man.leading_zeros();
            let frac = (man << (23 - p)) & 0x7f_ffff;
            sign | ((p + 103) << 23) | frac
        }
    } else {
        // Normal: rebias the exponent from 15 to 127.
        sign | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(out)
}

/// Widen a bfloat16 value to binary32: bfloat16 is the top half of a
/// binary32, so this is exact for every input (NaN payloads included).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2^e as f64 by repeated exact doubling/halving (no libm).
    fn pow2(e: i32) -> f64 {
        let mut v = 1.0f64;
        if e >= 0 {
            for _ in 0..e {
                v *= 2.0;
            }
        } else {
            for _ in 0..(-e) {
                v *= 0.5;
            }
        }
        v
    }

    /// Textbook decoding of a binary float with `e_bits` exponent and
    /// `m_bits` fraction bits, in f64 (wide enough to be exact), then
    /// narrowed to f32 (exact because every such value is an f32).
    fn reference(bits: u32, e_bits: u32, m_bits: u32) -> f32 {
        let sign = if bits >> (e_bits + m_bits) & 1 == 1 {
            -1.0
        } else {
            1.0
        };
        let e = (bits >> m_bits) & ((1 << e_bits) - 1);
        let m = bits & ((1 << m_bits) - 1);
        let bias = (1i32 << (e_bits - 1)) - 1;
        let mf = f64::from(m);
        let v = if e == (1 << e_bits) - 1 {
            if m == 0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        } else if e == 0 {
            mf * pow2(1 - bias - m_bits as i32)
        } else {
            (1.0 + mf * pow2(-(m_bits as i32))) * pow2(e as i32 - bias)
        };
        (sign * v) as f32
    }

    #[test]
    fn f16_exhaustive() {
        for bits in 0..=u16::MAX {
            let got = f16_to_f32(bits);
            let want = reference(u32::from(bits), 5, 10);
            if want.is_nan() {
                assert!(got.is_nan(), "{bits:#06x}");
                // Sign and payload are carried over bit for bit.
                let expect = ((u32::from(bits) & 0x8000) << 16)
                    | 0x7f80_0000
                    | ((u32::from(bits) & 0x3ff) << 13);
                assert_eq!(got.to_bits(), expect, "{bits:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
    }

    #[test]
    fn f16_known_values() {
        assert_eq!(f16_to_f32(0x3c00).to_bits(), 1.0f32.to_bits());
        assert_eq!(f16_to_f32(0xc000).to_bits(), (-2.0f32).to_bits());
        assert_eq!(f16_to_f32(0x7bff).to_bits(), 65504.0f32.to_bits());
        assert_eq!(
            f16_to_f32(0x0001).to_bits(),
            (1.0f32 / 16_777_216.0).to_bits()
        );
        assert_eq!(
            f16_to_f32(0x03ff).to_bits(),
            (1023.0f32 / 16_777_216.0).to_bits()
        );
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
    }

    #[test]
    fn bf16_exhaustive() {
        for bits in 0..=u16::MAX {
            let got = bf16_to_f32(bits);
            let want = reference(u32::from(bits), 8, 7);
            if want.is_nan() {
                assert!(got.is_nan());
                assert_eq!(got.to_bits(), u32::from(bits) << 16);
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{bits:#06x}");
            }
        }
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
    }

    #[test]
    fn type_table_is_consistent() {
        use std::collections::HashSet;
        let mut ids = HashSet::new();
        let mut types = HashSet::new();
        for r in TABLE {
            assert!(ids.insert(r.1), "duplicate id {}", r.1);
            assert!(types.insert(r.0), "duplicate type {:?}", r.0);
            assert_eq!(GgmlType::from_id(r.1), Some(r.0));
            assert_eq!(r.0.id(), r.1);
            assert_eq!(format!("{:?}", r.0), r.2);
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 40, u32::MAX] {
            assert_eq!(GgmlType::from_id(removed), None);
        }
        assert_eq!(
            GgmlType::Q4_1.bytes_for(576 * 1536),
            Some(576 * 1536 / 32 * 20)
        );
        assert_eq!(GgmlType::Q8_0.bytes_for(33), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    }
}
