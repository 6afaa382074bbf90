//! GGUF tensors to the canonical block form (NUMERICS.md section 3): the
//! block types llmc computes with, each mapped exactly where the canonical
//! form can hold it, and float vectors widened to f32.

use super::ModelError;
use crate::gguf::{bf16_to_f32, f16_to_f32, GgmlType, Tensor};
use crate::kernels::{BlockKind, BlockMatrix, QK};

/// Checks a tensor's GGUF dims (ggml order: contiguous dimension first).
pub(super) fn check_dims(t: &Tensor<'_>, expected: &[usize]) -> Result<(), ModelError> {
    let expected: Vec<u64> = expected.iter().map(|&d| d as u64).collect();
    if t.dims != expected.as_slice() {
        return Err(ModelError::TensorShape {
            name: t.name.to_string(),
            expected,
            found: t.dims.to_vec(),
        });
    }
    Ok(())
}

fn non_finite(t: &Tensor<'_>) -> ModelError {
    ModelError::NonFinite {
        name: t.name.to_string(),
    }
}

/// A float tensor widened to f32 (exact), refusing NaN and infinities.
pub(super) fn widen(t: &Tensor<'_>) -> Result<Vec<f32>, ModelError> {
    let v: Vec<f32> = match t.ggml_type {
        GgmlType::F32 => t
            .data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        GgmlType::F16 => t
            .data
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        GgmlType::BF16 => t
            .data
            .chunks_exact(2)
            .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        other => {
            return Err(ModelError::UnsupportedTensorType {
                name: t.name.to_string(),
                ggml_type: other,
            })
        }
    };
    if v.iter().any(|x| !x.is_finite()) {
        return Err(non_finite(t));
    }
    Ok(v)
}

/// A 1-D float tensor of length `n` (norm weights).
pub(super) fn vector(t: &Tensor<'_>, n: usize) -> Result<Vec<f32>, ModelError> {
    check_dims(t, &[n])?;
    widen(t)
}

/// A GGUF matrix (`dims = [cols, rows]`) in canonical block form
/// (NUMERICS.md section 3). Q8_0, Q4_0, Q4_1, Q5_0 and Q4_K map exactly;
/// Q6_K (scales per 16 weights) is dequantized exactly and, like
/// F32/F16/BF16, quantized to Q8 by the activation rule.
pub fn block_matrix(t: &Tensor<'_>, rows: usize, cols: usize) -> Result<BlockMatrix, ModelError> {
    check_dims(t, &[cols, rows])?;
    let nb = rows * cols / QK;
    let m = match t.ggml_type {
        GgmlType::Q8_0 => {
            let mut scales = Vec::with_capacity(nb);
            let mut quants = Vec::with_capacity(rows * cols);
            for blk in t.data.chunks_exact(34) {
                scales.push(f16_at(blk, 0));
                quants.extend(blk[2..].iter().map(|&b| b as i8));
            }
            BlockMatrix::new(BlockKind::Q8, rows, cols, scales, Vec::new(), quants)?
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let q41 = t.ggml_type == GgmlType::Q4_1;
            let size = if q41 { 20 } else { 18 };
            let mut scales = Vec::with_capacity(nb);
            let mut mins = Vec::with_capacity(nb);
            let mut quants = vec![0i8; rows * cols];
            for (blk, q) in t.data.chunks_exact(size).zip(quants.chunks_exact_mut(QK)) {
                let d = f16_at(blk, 0);
                scales.push(d);
                // Q4_0: w = d * (q - 8) = d * q + (-8 * d), exact.
                mins.push(if q41 { f16_at(blk, 2) } else { -8.0 * d });
                // Byte i holds element i (low nibble) and i + 16 (high nibble).
                for (i, &b) in blk[size - 16..].iter().enumerate() {
                    q[i] = (b & 0x0f) as i8;
                    q[i + 16] = (b >> 4) as i8;
                }
            }
            BlockMatrix::new(BlockKind::Q4, rows, cols, scales, mins, quants)?
        }
        GgmlType::Q5_0 => q5_0(t.data, rows, cols)?,
        GgmlType::Q4_K => q4_k(t.data, rows, cols)?,
        GgmlType::Q6_K => BlockMatrix::quantize_f32(rows, cols, &q6_k(t.data))?,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            BlockMatrix::quantize_f32(rows, cols, &widen(t)?)?
        }
        other => {
            return Err(ModelError::UnsupportedTensorType {
                name: t.name.to_string(),
                ggml_type: other,
            })
        }
    };
    if m.scales().iter().chain(m.mins()).any(|x| !x.is_finite()) {
        return Err(non_finite(t));
    }
    Ok(m)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Q5_0 (22 bytes per 32 weights: f16 `d`, 32 high bits, 16 bytes of low
/// nibbles): `w = d * (q - 16)`, `q` in 0..=31, so Q8 with scale `d` and
/// quant `q - 16` (exact).
fn q5_0(data: &[u8], rows: usize, cols: usize) -> Result<BlockMatrix, ModelError> {
    let mut scales = Vec::with_capacity(rows * cols / QK);
    let mut quants = vec![0i8; rows * cols];
    for (blk, q) in data.chunks_exact(22).zip(quants.chunks_exact_mut(QK)) {
        scales.push(f16_at(blk, 0));
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        // Byte j holds element j (low nibble) and j + 16 (high nibble);
        // bit j of qh is element j's fifth bit.
        for (j, &b) in blk[6..22].iter().enumerate() {
            let lo = (b & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
            let hi = (b >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            q[j] = lo as i8 - 16;
            q[j + 16] = hi as i8 - 16;
        }
    }
    Ok(BlockMatrix::new(
        BlockKind::Q8,
        rows,
        cols,
        scales,
        Vec::new(),
        quants,
    )?)
}

/// Scale and min (6 bits each) of sub-block `j` (0..8) of a K-quant
/// super-block's 12 packed scale bytes (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Q4_K (144 bytes per 256 weights: f16 `d` and `dmin`, 8 six-bit scales
/// and mins, 128 bytes of nibbles): sub-block `j` of 32 weights is `w =
/// (d * sc_j) * q - dmin * m_j`, so Q4 with scale `d * sc_j` and min `-(dmin
/// * m_j)` (both exact in f32: an 11-bit significand times a 6-bit integer).
fn q4_k(data: &[u8], rows: usize, cols: usize) -> Result<BlockMatrix, ModelError> {
    let nb = rows * cols / QK;
    let (mut scales, mut mins) = (Vec::with_capacity(nb), Vec::with_capacity(nb));
    let mut quants = vec![0i8; rows * cols];
    for (blk, q) in data.chunks_exact(144).zip(quants.chunks_exact_mut(256)) {
        let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        let sc = &blk[4..16];
        // 64 weights per 32 bytes: the low nibbles are sub-block 2i, the
        // high nibbles sub-block 2i + 1.
        for (i, (qs, q)) in blk[16..]
            .chunks_exact(32)
            .zip(q.chunks_exact_mut(64))
            .enumerate()
        {
            for half in 0..2 {
                let (s, m) = scale_min_k4(2 * i + half, sc);
                scales.push(d * s as f32);
                mins.push(-(dmin * m as f32));
            }
            for (l, &b) in qs.iter().enumerate() {
                q[l] = (b & 0x0f) as i8;
                q[l + 32] = (b >> 4) as i8;
            }
        }
    }
    Ok(BlockMatrix::new(
        BlockKind::Q4,
        rows,
        cols,
        scales,
        mins,
        quants,
    )?)
}

/// Q6_K (210 bytes per 256 weights: 128 bytes of low nibbles, 64 of high
/// bit pairs, 16 int8 scales, f16 `d`) dequantized: `w = (d * sc) * (q -
/// 32)` per 16 weights, exact in f32 (11 + 7 + 5 significant bits).
fn q6_k(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / 210 * 256);
    for blk in data.chunks_exact(210) {
        let (ql, qh, sc) = (&blk[..128], &blk[128..192], &blk[192..208]);
        let d = f16_at(blk, 208);
        let mut y = [0f32; 256];
        for n in 0..2 {
            let (ql, qh, sc) = (&ql[64 * n..], &qh[32 * n..], &sc[8 * n..]);
            let y = &mut y[128 * n..];
            for l in 0..32 {
                let is = l / 16;
                let q1 = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
                let q2 = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
                let q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                let q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                for (k, q) in [q1, q2, q3, q4].into_iter().enumerate() {
                    let s = sc[is + 2 * k] as i8 as f32;
                    y[l + 32 * k] = (d * s) * (q as i32 - 32) as f32;
                }
            }
        }
        out.extend_from_slice(&y);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of Gemma-3-270M's tensors as stored and as gguf-py (llama.cpp's
    /// Python package) dequantizes them (tests/data/kquants/make.py).
    /// (type, rows, cols, stored bytes, llama.cpp's weights)
    type Case = (GgmlType, usize, usize, Vec<u8>, Vec<f32>);

    fn fixture() -> Vec<Case> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/kquants/kquants.json"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
        v.as_array()
            .expect("cases")
            .iter()
            .map(|c| {
                let ty = match c["type"].as_str().unwrap() {
                    "Q5_0" => GgmlType::Q5_0,
                    "Q4_K" => GgmlType::Q4_K,
                    "Q6_K" => GgmlType::Q6_K,
                    t => panic!("type {t}"),
                };
                let hex = c["raw"].as_str().unwrap().as_bytes();
                let raw = hex
                    .chunks_exact(2)
                    .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
                    .collect();
                let values = c["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                let n = |k: &str| c[k].as_u64().unwrap() as usize;
                (ty, n("rows"), n("cols"), raw, values)
            })
            .collect()
    }

    /// [`block_matrix`] of a fixture's rows.
    fn convert(ty: GgmlType, rows: usize, cols: usize, raw: &[u8]) -> BlockMatrix {
        let dims = [cols as u64, rows as u64];
        let t = Tensor {
            name: "fixture",
            ggml_type: ty,
            dims: &dims,
            data: raw,
        };
        block_matrix(&t, rows, cols).expect("convert")
    }

    /// Q5_0 and Q4_K map exactly: every weight of the canonical block form
    /// equals llama.cpp's dequantization (the fixture's floats are exact
    /// f32 values, printed in full). Q6_K's exact dequantization equals it
    /// too, and its Q8 requantization stays within half a step of it.
    #[test]
    fn k_quants_match_llama_cpp_dequantization() {
        let cases = fixture();
        assert_eq!(cases.len(), 3);
        for (ty, rows, cols, raw, want) in cases {
            let m = convert(ty, rows, cols, &raw);
            let mut got = vec![0f32; rows * cols];
            for (r, out) in got.chunks_exact_mut(cols).enumerate() {
                m.dequant_row(r, out);
            }
            if ty == GgmlType::Q6_K {
                let exact = q6_k(&raw);
                assert_eq!(exact, want, "Q6_K dequantization");
                for (b, (g, w)) in got.chunks(QK).zip(want.chunks(QK)).enumerate() {
                    let amax = w.iter().fold(0f32, |a, &x| a.max(x.abs()));
                    for (&g, &w) in g.iter().zip(w) {
                        assert!(
                            (g - w).abs() <= amax / 127.0 * 0.5001,
                            "block {b}: {g} vs {w}"
                        );
                    }
                }
            } else {
                assert_eq!(got, want, "{ty}");
            }
        }
    }

    /// Q5_0's quants lie in -16..=15 and Q4_K's in 0..=15 (the kinds' ranges).
    #[test]
    fn k_quant_ranges() {
        for (ty, rows, cols, raw, _) in fixture() {
            let m = convert(ty, rows, cols, &raw);
            let (lo, hi) = match ty {
                GgmlType::Q5_0 => (-16, 15),
                GgmlType::Q4_K => (0, 15),
                _ => (-127, 127),
            };
            assert!(m.quants().iter().all(|&q| (lo..=hi).contains(&q)), "{ty}");
        }
    }
}
