//! The language model: a llama-architecture transformer (SmolLM2-135M) whose
//! every floating-point operation follows docs/NUMERICS.md, so its logits are
//! the same bits on every machine, for every thread count and batch shape.
//!
//! One forward step for a batch of `n` new tokens (all sequences together),
//! with `E = n_embd`, `F = n_ff`, `KV = n_kv_head * head_dim`:
//!
//! ```text
//! x[n,E]   = embed(tokens)
//! per layer:
//!   h      = rmsnorm(x, attn_norm)                 per token
//!   q[n,E], k[n,KV], v[n,KV] = Wq h, Wk h, Wv h    one quantization of h
//!   rope(q), rope(k) at each token's position; append k, v to its cache
//!   a[n,E] = attention(q, cache) per token and head (keys 0..=pos)
//!   x     += Wo a
//!   h      = rmsnorm(x, ffn_norm)
//!   x     += Wdown (silu(Wgate h) * Wup h)          [n,F] hidden
//! logits[n,vocab] = Wout rmsnorm(x, output_norm)
//! ```
//!
//! Threads split matrix rows, tokens and heads, never a reduction, so the
//! result does not depend on the thread count.

mod cache;
mod config;
mod weights;

pub use cache::KvCache;
pub use config::{Config, MAX_CONTEXT};
pub use weights::{Embedding, LayerWeights, Weights};

use crate::gguf::{GgmlType, Gguf, GgufError};
use crate::kernels::math::{RopeTable, TRIG_ACCURATE_MAX};
use crate::kernels::{
    scalar, BlockKind, BlockMatrix, KernelError, Kernels, KvView, PackedMatrix, QuantizedRows,
    Variant, QK,
};
use rayon::prelude::*;
use std::ops::Range;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("unsupported model architecture {0:?} (supported: llama)")]
    UnsupportedArchitecture(String),
    #[error("model metadata {key} = {value}: {reason}")]
    BadConfig {
        key: String,
        value: String,
        reason: String,
    },
    #[error("tensor {name:?} has dimensions {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor {name:?} has type {ggml_type}, which llmc cannot compute with (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)")]
    UnsupportedTensorType { name: String, ggml_type: GgmlType },
    #[error("tensor {name:?} contains a NaN or infinite value")]
    NonFinite { name: String },
    #[error("cannot start {threads} worker threads: {reason}")]
    ThreadPool { threads: usize, reason: String },
    #[error("forward: {caches} KV caches but {tokens} token sequences")]
    BatchMismatch { caches: usize, tokens: usize },
    #[error("sequence {seq}: KV cache was made for a model of another shape")]
    CacheMismatch { seq: usize },
    #[error("sequence {seq}: token id {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange {
        seq: usize,
        token: u32,
        vocab: usize,
    },
    #[error("sequence {seq}: {len} cached + {adding} new tokens exceed the context length {max}")]
    ContextFull {
        seq: usize,
        len: usize,
        adding: usize,
        max: usize,
    },
    #[error("logits buffer holds {found} values, expected {expected} (new tokens x vocabulary)")]
    LogitsLength { expected: usize, found: usize },
}

/// How to run a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelOptions {
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// Kernel variant; `None` means [`Kernels::detect`] (the `LLMC_KERNEL`
    /// override, else the best this CPU runs).
    pub variant: Option<Variant>,
}

/// A loaded model with its kernels and worker threads.
pub struct Model {
    cfg: Config,
    weights: Weights,
    kernels: Kernels,
    rope: RopeTable,
    pool: rayon::ThreadPool,
    threads: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.cfg)
            .field("variant", &self.kernels.variant())
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// One new token of the batch: which sequence, at which position.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: usize,
    pos: usize,
}

impl Model {
    /// Reads the config and weights of `g` (copied: the model does not borrow
    /// the file), packs them for the kernel variant and starts the threads.
    pub fn load(g: &Gguf, opts: &ModelOptions) -> Result<Model, ModelError> {
        let cfg = Config::from_gguf(g)?;
        let kernels = select_kernels(opts)?;
        let weights = Weights::load(g, &cfg, &kernels)?;
        Model::assemble(cfg, weights, kernels, opts)
    }

    /// A model with random weights of the given shape (Q4 layer matrices, Q8
    /// tied embedding), for fast tests of code that needs a model but not a
    /// good one. Deterministic in `seed`.
    pub fn synthetic(cfg: Config, seed: u64, opts: &ModelOptions) -> Result<Model, ModelError> {
        cfg.validate()?;
        let kernels = select_kernels(opts)?;
        let weights = synthetic_weights(&cfg, seed, &kernels)?;
        Model::assemble(cfg, weights, kernels, opts)
    }

    fn assemble(
        cfg: Config,
        weights: Weights,
        kernels: Kernels,
        opts: &ModelOptions,
    ) -> Result<Model, ModelError> {
        let threads = match opts.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t.min(1024),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("llmc-model-{i}"))
            .build()
            .map_err(|e| ModelError::ThreadPool {
                threads,
                reason: e.to_string(),
            })?;
        // The largest rotation angle is (context - 1) * theta_0 = context - 1,
        // far inside the accurate range of the f64 sin/cos.
        debug_assert!((cfg.context_len as f64) < TRIG_ACCURATE_MAX);
        let rope = RopeTable::new(cfg.head_dim, cfg.rope_base, cfg.context_len);
        Ok(Model {
            cfg,
            weights,
            kernels,
            rope,
            pool,
            threads,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The kernel implementation in use.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Worker threads in use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether the output projection is the token embedding.
    pub fn tied_output(&self) -> bool {
        self.weights.tied
    }

    /// An empty KV cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.cfg)
    }

    /// Appends `tokens[s]` to `caches[s]` for every sequence `s` (lengths may
    /// differ, may be 0), running them as ONE batch (all new tokens of all
    /// sequences go through each matmul together), and writes the logits of
    /// every appended token, sequence by sequence, into `logits`
    /// (len = total new tokens * vocab).
    ///
    /// The logits of a token depend only on its sequence's tokens up to and
    /// including it: not on the batch, the split into calls, nor the thread
    /// count (bit for bit). On error nothing is appended.
    pub fn forward(
        &self,
        caches: &mut [&mut KvCache],
        tokens: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), ModelError> {
        let cfg = &self.cfg;
        if caches.len() != tokens.len() {
            return Err(ModelError::BatchMismatch {
                caches: caches.len(),
                tokens: tokens.len(),
            });
        }
        let mut slots = Vec::new();
        let mut ids = Vec::new();
        for (seq, (c, t)) in caches.iter().zip(tokens).enumerate() {
            if !c.fits(cfg) {
                return Err(ModelError::CacheMismatch { seq });
            }
            if t.len() > cfg.context_len - c.len() {
                return Err(ModelError::ContextFull {
                    seq,
                    len: c.len(),
                    adding: t.len(),
                    max: cfg.context_len,
                });
            }
            for (i, &token) in t.iter().enumerate() {
                if token as usize >= cfg.vocab {
                    return Err(ModelError::TokenOutOfRange {
                        seq,
                        token,
                        vocab: cfg.vocab,
                    });
                }
                slots.push(Slot {
                    seq,
                    pos: c.len() + i,
                });
                ids.push(token as usize);
            }
        }
        let n = slots.len();
        // n <= sequences * MAX_CONTEXT and vocab <= MAX_VOCAB: no overflow.
        if logits.len() != n * cfg.vocab {
            return Err(ModelError::LogitsLength {
                expected: n * cfg.vocab,
                found: logits.len(),
            });
        }
        if n == 0 {
            return Ok(());
        }
        for (c, t) in caches.iter_mut().zip(tokens) {
            c.reserve(c.len() + t.len());
        }

        let (e, f, kvd, hd) = (cfg.n_embd, cfg.n_ff, cfg.kv_dim(), cfg.head_dim);
        let k = &self.kernels;
        let mut x = vec![0f32; n * e]; // residual stream [n, E]
        let mut xb = vec![0f32; n * e]; // normed input / matmul output [n, E]
        let mut q = vec![0f32; n * e]; // queries [n, E]
        let mut kb = vec![0f32; n * kvd]; // new keys [n, KV]
        let mut vb = vec![0f32; n * kvd]; // new values [n, KV]
        let mut att = vec![0f32; n * e]; // attention output [n, E]
        let mut gate = vec![0f32; n * f]; // FFN hidden [n, F]
        let mut up = vec![0f32; n * f]; // [n, F]
        let mut qx = QuantizedRows::new();

        self.for_rows(&mut x, e, |t, row| {
            self.weights.token_embd.lookup(ids[t], row)
        });

        for (l, lw) in self.weights.layers.iter().enumerate() {
            // Attention block.
            self.for_rows(&mut xb, e, |t, out| {
                k.rmsnorm(&x[t * e..(t + 1) * e], &lw.attn_norm, cfg.rms_eps, out)
            });
            self.quantize(&mut qx, &xb, e);
            self.matmul(&lw.wq, &qx, &mut q);
            self.matmul(&lw.wk, &qx, &mut kb);
            self.matmul(&lw.wv, &qx, &mut vb);
            let rope = |t: usize, row: &mut [f32]| {
                let (cos, sin) = self.rope.at(slots[t].pos);
                for head in row.chunks_exact_mut(hd) {
                    scalar::rope(head, cos, sin);
                }
            };
            self.for_rows(&mut q, e, rope);
            self.for_rows(&mut kb, kvd, rope);
            for (t, s) in slots.iter().enumerate() {
                let range = t * kvd..(t + 1) * kvd;
                caches[s.seq].write(l, s.pos, &kb[range.clone()], &vb[range]);
            }
            let views: Vec<KvView<'_>> = caches.iter().map(|c| c.view(l)).collect();
            self.attention(&q, &slots, &views, &mut att);
            self.quantize(&mut qx, &att, e);
            self.matmul(&lw.wo, &qx, &mut xb);
            add(&mut x, &xb);

            // Feed-forward block.
            self.for_rows(&mut xb, e, |t, out| {
                k.rmsnorm(&x[t * e..(t + 1) * e], &lw.ffn_norm, cfg.rms_eps, out)
            });
            self.quantize(&mut qx, &xb, e);
            self.matmul(&lw.w_gate, &qx, &mut gate);
            self.matmul(&lw.w_up, &qx, &mut up);
            self.for_rows(&mut gate, f, |t, g| {
                scalar::silu_mul(g, &up[t * f..(t + 1) * f])
            });
            self.quantize(&mut qx, &gate, f);
            self.matmul(&lw.w_down, &qx, &mut xb);
            add(&mut x, &xb);
        }

        self.for_rows(&mut xb, e, |t, out| {
            k.rmsnorm(
                &x[t * e..(t + 1) * e],
                &self.weights.output_norm,
                cfg.rms_eps,
                out,
            )
        });
        self.quantize(&mut qx, &xb, e);
        self.matmul(&self.weights.output, &qx, logits);

        for (c, t) in caches.iter_mut().zip(tokens) {
            c.advance(t.len());
        }
        Ok(())
    }

    /// Runs `f(t, row)` for every row `t` of `buf` (rows of `width`), across
    /// the threads when there are enough rows to be worth it.
    fn for_rows<F>(&self, buf: &mut [f32], width: usize, f: F)
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        if self.threads == 1 || buf.len() < 4 * width {
            buf.chunks_exact_mut(width)
                .enumerate()
                .for_each(|(t, r)| f(t, r));
        } else {
            self.pool.install(|| {
                buf.par_chunks_exact_mut(width)
                    .enumerate()
                    .for_each(|(t, r)| f(t, r))
            });
        }
    }

    /// Activation quantization of `x` (`[n, k]`), across the threads when
    /// there are enough rows.
    fn quantize(&self, qx: &mut QuantizedRows, x: &[f32], k: usize) {
        if self.threads == 1 || x.len() < 8 * k {
            qx.quantize(x, k);
        } else {
            self.pool.install(|| qx.quantize_par(x, k));
        }
    }

    /// Row ranges of a `rows`-row matrix for the threads: about four per
    /// thread, aligned to the kernel's row granularity.
    fn row_ranges(&self, rows: usize) -> Vec<Range<usize>> {
        if self.threads == 1 {
            return std::iter::once(0..rows).collect();
        }
        let gran = self.kernels.row_granularity().max(1);
        let chunk = rows.div_ceil(self.threads * 4).div_ceil(gran) * gran;
        (0..rows)
            .step_by(chunk)
            .map(|s| s..(s + chunk).min(rows))
            .collect()
    }

    /// `out[t] = W x_t` for every activation row (`out` is `[n, rows]`).
    fn matmul(&self, w: &PackedMatrix, x: &QuantizedRows, out: &mut [f32]) {
        let rows = w.rows();
        debug_assert_eq!(out.len(), x.n() * rows);
        let ranges = self.row_ranges(rows);
        // parts[c][t]: the slice of token t's output row for range c.
        let mut parts: Vec<Vec<&mut [f32]>> =
            ranges.iter().map(|_| Vec::with_capacity(x.n())).collect();
        for orow in out.chunks_exact_mut(rows) {
            let mut rest = orow;
            for (p, r) in parts.iter_mut().zip(&ranges) {
                let (a, b) = rest.split_at_mut(r.len());
                p.push(a);
                rest = b;
            }
        }
        if parts.len() == 1 {
            self.kernels.matmul(w, x, 0..rows, &mut parts[0]);
        } else {
            self.pool.install(|| {
                parts
                    .par_iter_mut()
                    .zip(ranges.par_iter())
                    .for_each(|(p, r)| self.kernels.matmul(w, x, r.clone(), p))
            });
        }
    }

    /// Attention for every new token and query head: `att[t, h*hd..]`.
    fn attention(&self, q: &[f32], slots: &[Slot], views: &[KvView<'_>], att: &mut [f32]) {
        let (nh, hd) = (self.cfg.n_head, self.cfg.head_dim);
        let group = nh / self.cfg.n_kv_head;
        let job = |i: usize, out: &mut [f32], scratch: &mut Vec<f32>| {
            let (t, h) = (i / nh, i % nh);
            let s = slots[t];
            let qh = &q[t * nh * hd + h * hd..][..hd];
            self.kernels
                .attention(qh, &views[s.seq], h / group, s.pos + 1, scratch, out);
        };
        if self.threads == 1 {
            let mut scratch = Vec::new();
            for (i, out) in att.chunks_exact_mut(hd).enumerate() {
                job(i, out, &mut scratch);
            }
        } else {
            self.pool.install(|| {
                att.par_chunks_exact_mut(hd)
                    .enumerate()
                    .for_each_init(Vec::new, |scratch, (i, out)| job(i, out, scratch))
            });
        }
    }
}

/// `x += y` element-wise (the residual adds).
fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn select_kernels(opts: &ModelOptions) -> Result<Kernels, ModelError> {
    Ok(match opts.variant {
        Some(v) => Kernels::new(v)?,
        None => Kernels::detect()?,
    })
}

/// SplitMix64, for synthetic weights.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn synthetic_weights(cfg: &Config, seed: u64, k: &Kernels) -> Result<Weights, ModelError> {
    let mut rng = SplitMix(seed);
    // Scales ~ 1/(8 sqrt(cols)) keep activations O(1) like a trained model.
    let mut q4 = |rows: usize, cols: usize| -> Result<PackedMatrix, ModelError> {
        let nb = rows * cols / QK;
        let d = 0.25 / (cols as f32).sqrt();
        let scales: Vec<f32> = (0..nb).map(|_| d * (1.0 + 0.5 * rng.unit())).collect();
        let mins: Vec<f32> = scales.iter().map(|&s| -7.5 * s).collect();
        let quants = (0..rows * cols).map(|_| (rng.next() % 16) as i8).collect();
        let m = BlockMatrix::new(BlockKind::Q4, rows, cols, scales, mins, quants)?;
        Ok(k.pack_matrix(m))
    };
    let (e, f, kvd) = (cfg.n_embd, cfg.n_ff, cfg.kv_dim());
    let mut layers = Vec::with_capacity(cfg.n_layer);
    for _ in 0..cfg.n_layer {
        layers.push(LayerWeights {
            attn_norm: vec![1.0; e],
            wq: q4(e, e)?,
            wk: q4(kvd, e)?,
            wv: q4(kvd, e)?,
            wo: q4(e, e)?,
            ffn_norm: vec![1.0; e],
            w_gate: q4(f, e)?,
            w_up: q4(f, e)?,
            w_down: q4(e, f)?,
        });
    }
    let emb: Vec<f32> = (0..cfg.vocab * e).map(|_| rng.unit()).collect();
    let emb = BlockMatrix::quantize_f32(cfg.vocab, e, &emb)?;
    let output = k.pack_matrix(emb.clone());
    let output_norm = (0..e).map(|_| 1.0 + 0.25 * rng.unit()).collect();
    Ok(Weights {
        token_embd: Embedding::Blocks(emb),
        output_norm,
        output,
        tied: true,
        layers,
    })
}

#[cfg(test)]
mod tests;
