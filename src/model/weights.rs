//! Model weights: GGUF tensors converted to the canonical block form
//! (NUMERICS.md section 3) and packed for the chosen kernel variant.

use super::{Config, ModelError};
use crate::gguf::{bf16_to_f32, f16_to_f32, GgmlType, Gguf, Tensor};
use crate::kernels::{share_matrices, BlockKind, BlockMatrix, Kernels, PackedMatrix, QK};

/// Weights of one transformer block. Matrix shapes are `rows x cols` (GGUF
/// dims are `[cols, rows]`).
#[derive(Debug)]
pub struct LayerWeights {
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    /// `n_embd x n_embd`
    pub wq: PackedMatrix,
    /// `kv_dim x n_embd`
    pub wk: PackedMatrix,
    /// `kv_dim x n_embd`
    pub wv: PackedMatrix,
    /// `n_embd x n_embd`
    pub wo: PackedMatrix,
    /// `[n_embd]`
    pub ffn_norm: Vec<f32>,
    /// `n_ff x n_embd`
    pub w_gate: PackedMatrix,
    /// `n_ff x n_embd`
    pub w_up: PackedMatrix,
    /// `n_embd x n_ff`
    pub w_down: PackedMatrix,
}

/// The token embedding, kept in its stored precision for lookup.
#[derive(Debug)]
pub enum Embedding {
    /// Q8_0 / Q4_0 / Q4_1: dequantized per row on lookup.
    Blocks(BlockMatrix),
    /// F32 / F16 / BF16 widened to f32, `vocab x n_embd`.
    Dense { cols: usize, data: Vec<f32> },
}

impl Embedding {
    /// Writes the embedding of `token` (< vocab) into `out` (len n_embd).
    pub fn lookup(&self, token: usize, out: &mut [f32]) {
        match self {
            Embedding::Blocks(m) => m.dequant_row(token, out),
            Embedding::Dense { cols, data } => {
                out.copy_from_slice(&data[token * cols..(token + 1) * cols])
            }
        }
    }
}

/// All weights of a model.
#[derive(Debug)]
pub struct Weights {
    /// `vocab x n_embd`
    pub token_embd: Embedding,
    /// `[n_embd]`
    pub output_norm: Vec<f32>,
    /// `vocab x n_embd`; the token embedding repacked when tied.
    pub output: PackedMatrix,
    /// Whether `output` is the token embedding (no `output.weight` tensor).
    pub tied: bool,
    pub layers: Vec<LayerWeights>,
}

impl Weights {
    /// Reads, checks and packs every tensor `cfg` calls for.
    pub fn load(g: &Gguf, cfg: &Config, k: &Kernels) -> Result<Weights, ModelError> {
        let (e, f, kv) = (cfg.n_embd, cfg.n_ff, cfg.kv_dim());
        let mat = |name: &str, rows: usize, cols: usize| -> Result<PackedMatrix, ModelError> {
            Ok(k.pack_matrix(block_matrix(&g.tensor(name)?, rows, cols)?))
        };
        let vec = |name: &str, n: usize| vector(&g.tensor(name)?, n);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            layers.push(LayerWeights {
                attn_norm: vec(&n("attn_norm"), e)?,
                wq: mat(&n("attn_q"), e, e)?,
                wk: mat(&n("attn_k"), kv, e)?,
                wv: mat(&n("attn_v"), kv, e)?,
                wo: mat(&n("attn_output"), e, e)?,
                ffn_norm: vec(&n("ffn_norm"), e)?,
                w_gate: mat(&n("ffn_gate"), f, e)?,
                w_up: mat(&n("ffn_up"), f, e)?,
                w_down: mat(&n("ffn_down"), e, f)?,
            });
        }
        let embd = g.tensor("token_embd.weight")?;
        check_dims(&embd, &[e, cfg.vocab])?;
        let token_embd = match embd.ggml_type {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => Embedding::Dense {
                cols: e,
                data: widen(&embd)?,
            },
            _ => Embedding::Blocks(block_matrix(&embd, cfg.vocab, e)?),
        };
        let (output, tied) = match g.tensor_info("output.weight") {
            Some(_) => (mat("output.weight", cfg.vocab, e)?, false),
            None => {
                let m = match &token_embd {
                    Embedding::Blocks(m) => m.clone(),
                    Embedding::Dense { data, .. } => BlockMatrix::quantize_f32(cfg.vocab, e, data)?,
                };
                (k.pack_matrix(m), true)
            }
        };
        let mut w = Weights {
            token_embd,
            output_norm: vec("output_norm.weight", e)?,
            output,
            tied,
            layers,
        };
        w.share_matrices();
        Ok(w)
    }

    /// Puts all matrices into shared large buffers ([`share_matrices`]).
    pub(crate) fn share_matrices(&mut self) {
        let mut mats: Vec<&mut PackedMatrix> = Vec::with_capacity(7 * self.layers.len() + 1);
        for l in &mut self.layers {
            mats.extend([
                &mut l.wq,
                &mut l.wk,
                &mut l.wv,
                &mut l.wo,
                &mut l.w_gate,
                &mut l.w_up,
                &mut l.w_down,
            ]);
        }
        mats.push(&mut self.output);
        share_matrices(&mut mats);
    }
}

/// Checks a tensor's GGUF dims (ggml order: contiguous dimension first).
fn check_dims(t: &Tensor<'_>, expected: &[usize]) -> Result<(), ModelError> {
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
fn widen(t: &Tensor<'_>) -> Result<Vec<f32>, ModelError> {
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
fn vector(t: &Tensor<'_>, n: usize) -> Result<Vec<f32>, ModelError> {
    check_dims(t, &[n])?;
    widen(t)
}

/// A GGUF matrix (`dims = [cols, rows]`) in canonical block form.
/// Q8_0, Q4_0 and Q4_1 map exactly; F32/F16/BF16 are quantized to Q8 by the
/// activation rule (NUMERICS.md section 3).
pub fn block_matrix(t: &Tensor<'_>, rows: usize, cols: usize) -> Result<BlockMatrix, ModelError> {
    check_dims(t, &[cols, rows])?;
    let nb = rows * cols / QK;
    let f16 = |b: &[u8], i: usize| f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]));
    let m = match t.ggml_type {
        GgmlType::Q8_0 => {
            let mut scales = Vec::with_capacity(nb);
            let mut quants = Vec::with_capacity(rows * cols);
            for blk in t.data.chunks_exact(34) {
                scales.push(f16(blk, 0));
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
                let d = f16(blk, 0);
                scales.push(d);
                // Q4_0: w = d * (q - 8) = d * q + (-8 * d), exact.
                mins.push(if q41 { f16(blk, 2) } else { -8.0 * d });
                // Byte i holds element i (low nibble) and i + 16 (high nibble).
                for (i, &b) in blk[size - 16..].iter().enumerate() {
                    q[i] = (b & 0x0f) as i8;
                    q[i + 16] = (b >> 4) as i8;
                }
            }
            BlockMatrix::new(BlockKind::Q4, rows, cols, scales, mins, quants)?
        }
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
