//! Model weights: GGUF tensors converted to the canonical block form
//! (NUMERICS.md section 3) and packed for the chosen kernel variant.

use super::convert::{block_matrix, check_dims, vector, widen};
use super::{Config, ModelError};
use crate::gguf::{GgmlType, Gguf};
use crate::kernels::{share_matrices, BlockMatrix, Kernels, PackedMatrix};

/// Weights of one transformer block. Matrix shapes are `rows x cols` (GGUF
/// dims are `[cols, rows]`); `Q = n_head * head_dim` (`n_embd` for llama).
#[derive(Debug)]
pub struct LayerWeights {
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    /// `Q x n_embd` (gemma3: rows permuted, see [`Gemma3Norms`])
    pub wq: PackedMatrix,
    /// `kv_dim x n_embd`
    pub wk: PackedMatrix,
    /// `kv_dim x n_embd`
    pub wv: PackedMatrix,
    /// `n_embd x Q`
    pub wo: PackedMatrix,
    /// `[n_embd]`
    pub ffn_norm: Vec<f32>,
    /// `n_ff x n_embd`
    pub w_gate: PackedMatrix,
    /// `n_ff x n_embd`
    pub w_up: PackedMatrix,
    /// `n_embd x n_ff`
    pub w_down: PackedMatrix,
    /// The gemma3 norms; `None` for llama.
    pub gemma3: Option<Gemma3Norms>,
}

/// The norms a gemma3 block adds (the GGUF stores them in the `1 + w` form
/// the model multiplies by).
///
/// Gemma rotates dimension pairs `(i, i + head_dim/2)` (NeoX style), llama
/// `(2i, 2i + 1)`. The rows of `wq` and `wk` are permuted within each head
/// when loading, dimension `2i` taking row `i` and `2i + 1` row `i +
/// head_dim/2`, and so are `q_norm` and `k_norm`: the one RoPE kernel then
/// computes Gemma's rotation, and the attention scores (sums over all
/// dimensions) are those of the unpermuted heads.
#[derive(Debug)]
pub struct Gemma3Norms {
    /// `[head_dim]`, permuted
    pub q_norm: Vec<f32>,
    /// `[head_dim]`, permuted
    pub k_norm: Vec<f32>,
    /// `[n_embd]`: applied to the attention block's output before the
    /// residual add.
    pub post_attn_norm: Vec<f32>,
    /// `[n_embd]`: applied to the FFN's output before the residual add.
    pub post_ffn_norm: Vec<f32>,
}

/// Row order that turns NeoX-style rotation pairs into adjacent pairs, for
/// `heads` heads of `hd` rows: `perm[h * hd + 2i] = h * hd + i`,
/// `perm[h * hd + 2i + 1] = h * hd + i + hd/2`.
pub(super) fn neox_perm(heads: usize, hd: usize) -> Vec<usize> {
    (0..heads * hd)
        .map(|r| {
            let (h, j) = (r / hd, r % hd);
            h * hd + j / 2 + (j % 2) * (hd / 2)
        })
        .collect()
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
        let (e, f, kv, q) = (cfg.n_embd, cfg.n_ff, cfg.kv_dim(), cfg.q_dim());
        let (hd, gemma) = (cfg.head_dim, cfg.gemma3.is_some());
        let mat = |name: &str, rows: usize, cols: usize| -> Result<PackedMatrix, ModelError> {
            Ok(k.pack_matrix(block_matrix(&g.tensor(name)?, rows, cols)?))
        };
        // Gemma's Q and K rows in adjacent-pair order (Gemma3Norms).
        let rotated = |name: &str, heads: usize| -> Result<PackedMatrix, ModelError> {
            let m = block_matrix(&g.tensor(name)?, heads * hd, e)?;
            Ok(k.pack_matrix(if gemma {
                m.permute_rows(&neox_perm(heads, hd))
            } else {
                m
            }))
        };
        let vec = |name: &str, n: usize| vector(&g.tensor(name)?, n);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let gemma3 = if gemma {
                let perm = neox_perm(1, hd);
                let head_norm = |s: &str| -> Result<Vec<f32>, ModelError> {
                    let w = vec(&n(s), hd)?;
                    Ok(perm.iter().map(|&i| w[i]).collect())
                };
                Some(Gemma3Norms {
                    q_norm: head_norm("attn_q_norm")?,
                    k_norm: head_norm("attn_k_norm")?,
                    post_attn_norm: vec(&n("post_attention_norm"), e)?,
                    post_ffn_norm: vec(&n("post_ffw_norm"), e)?,
                })
            } else {
                None
            };
            layers.push(LayerWeights {
                attn_norm: vec(&n("attn_norm"), e)?,
                wq: rotated(&n("attn_q"), cfg.n_head)?,
                wk: rotated(&n("attn_k"), cfg.n_kv_head)?,
                wv: mat(&n("attn_v"), kv, e)?,
                wo: mat(&n("attn_output"), e, q)?,
                ffn_norm: vec(&n("ffn_norm"), e)?,
                w_gate: mat(&n("ffn_gate"), f, e)?,
                w_up: mat(&n("ffn_up"), f, e)?,
                w_down: mat(&n("ffn_down"), e, f)?,
                gemma3,
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
