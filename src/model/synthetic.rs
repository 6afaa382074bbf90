//! Synthetic test weights: a model of any shape with random weights, for
//! fast tests of code that needs a model but not a good one. Compiled only
//! for tests.

use super::{
    select_kernels, Config, Embedding, Gemma3Norms, LayerWeights, Model, ModelError, ModelOptions,
    Weights,
};
use crate::kernels::{BlockKind, BlockMatrix, Kernels, PackedMatrix, QK};
use crate::testing::Rng;

impl Model {
    /// A model with random weights of the given shape (Q4 layer matrices, Q8
    /// tied embedding), for fast tests of code that needs a model but not a
    /// good one. Deterministic in `seed`.
    pub fn synthetic(cfg: Config, seed: u64, opts: &ModelOptions) -> Result<Model, ModelError> {
        cfg.validate()?;
        let kernels = select_kernels(opts)?;
        let weights = synthetic_weights(&cfg, seed, &kernels)?;
        let gemma = cfg.gemma3.is_some();
        let mut m = Model::assemble(cfg, weights, kernels, opts)?;
        if gemma {
            // A start token, as a gemma3 GGUF asks for.
            m.set_prefix(&[2])?;
        }
        Ok(m)
    }
}

fn synthetic_weights(cfg: &Config, seed: u64, k: &Kernels) -> Result<Weights, ModelError> {
    let mut rng = Rng(seed);
    // Scales ~ 1/(8 sqrt(cols)) keep activations O(1) like a trained model.
    let mut q4 = |rows: usize, cols: usize| -> Result<PackedMatrix, ModelError> {
        let nb = rows * cols / QK;
        let d = 0.25 / (cols as f32).sqrt();
        let scales: Vec<f32> = (0..nb).map(|_| d * (1.0 + 0.5 * rng.signed())).collect();
        let mins: Vec<f32> = scales.iter().map(|&s| -7.5 * s).collect();
        let quants = (0..rows * cols).map(|_| (rng.below(16)) as i8).collect();
        let m = BlockMatrix::new(BlockKind::Q4, rows, cols, scales, mins, quants)?;
        Ok(k.pack_matrix(m))
    };
    let (e, f, kvd, qd) = (cfg.n_embd, cfg.n_ff, cfg.kv_dim(), cfg.q_dim());
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for _ in 0..cfg.n_layer {
        layers.push(LayerWeights {
            attn_norm: vec![1.0; e],
            wq: q4(qd, e)?,
            wk: q4(kvd, e)?,
            wv: q4(kvd, e)?,
            wo: q4(e, qd)?,
            ffn_norm: vec![1.0; e],
            w_gate: q4(f, e)?,
            w_up: q4(f, e)?,
            w_down: q4(e, f)?,
            gemma3: None,
        });
    }
    if cfg.gemma3.is_some() {
        let hd = cfg.head_dim;
        let mut norm =
            |n: usize| -> Vec<f32> { (0..n).map(|_| 1.0 + 0.25 * rng.signed()).collect() };
        for l in &mut layers {
            l.gemma3 = Some(Gemma3Norms {
                q_norm: norm(hd),
                k_norm: norm(hd),
                post_attn_norm: norm(e),
                post_ffn_norm: norm(e),
            });
        }
    }
    let emb: Vec<f32> = (0..cfg.vocab * e).map(|_| rng.signed()).collect();
    let emb = BlockMatrix::quantize_f32(cfg.vocab, e, &emb)?;
    let output = k.pack_matrix(emb.clone());
    let output_norm = (0..e).map(|_| 1.0 + 0.25 * rng.signed()).collect();
    let mut w = Weights {
        token_embd: Embedding::Blocks(emb),
        output_norm,
        output,
        tied: true,
        layers,
    };
    w.share_matrices();
    Ok(w)
}
