//! The language model: a llama-architecture transformer (SmolLM2-135M) whose
//! every floating-point operation follows docs/NUMERICS.md, so its logits are
//! the same bits on every machine, for every thread count and batch shape.
//!
//! Layout: `llama.rs` holds the layer order of one forward step,
//! `attention.rs` the scheduling of the attention block over the threads,
//! `exec.rs` the parallel row steps, matmul jobs and activation buffers;
//! `cache.rs` the KV cache, `weights.rs` and `config.rs` what is loaded.
//!
//! Threads split matrix rows, tokens and heads, never a reduction, so the
//! result does not depend on the thread count.

mod attention;
mod cache;
mod config;
mod convert;
mod exec;
mod gemma3;
mod llama;
mod lm;
#[cfg(test)]
mod synthetic;
mod weights;

pub use cache::KvCache;
pub use config::{Config, Gemma3, MAX_CONTEXT};
use exec::Scratch;
pub use weights::{Embedding, Gemma3Norms, LayerWeights, Weights};

use crate::gguf::{GgmlType, Gguf, GgufError};
use crate::kernels::math::{RopeTable, TRIG_ACCURATE_MAX};
use crate::kernels::{KernelError, Kernels, Variant};

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("unsupported model architecture {0:?} (supported: llama, gemma3)")]
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
    #[error("tensor {name:?} has type {ggml_type}, which llmc cannot compute with (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K)")]
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
    /// RoPE of the global layers (every llama layer).
    rope: RopeTable,
    /// RoPE of gemma3's local (sliding-window) layers.
    rope_local: Option<RopeTable>,
    pool: rayon::ThreadPool,
    threads: usize,
    /// Activation buffers reused across [`Model::forward`] calls.
    scratch: std::sync::Mutex<Scratch>,
    /// What every new state holds: gemma3's start token, computed once at
    /// load (`None`: states start empty, as llama's do).
    prefix: Option<KvCache>,
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
        let mut model = Model::assemble(cfg, weights, kernels, opts)?;
        if let Some(bos) = start_token(g, &model.cfg)? {
            model.set_prefix(&[bos])?;
        }
        Ok(model)
    }

    /// Makes `tokens` the context every new state starts with: run once,
    /// their keys and values are copied into each new cache (the same bits
    /// as feeding them: a token's values depend only on its sequence).
    pub fn set_prefix(&mut self, tokens: &[u32]) -> Result<(), ModelError> {
        self.prefix = None;
        let mut c = self.new_cache();
        let mut logits = vec![0f32; tokens.len() * self.cfg.vocab];
        self.forward(&mut [&mut c], &[tokens], &mut logits)?;
        c.freeze_prefix();
        self.prefix = Some(c);
        Ok(())
    }

    /// Tokens every new state starts with (see [`Model::set_prefix`]).
    pub fn prefix_len(&self) -> usize {
        self.prefix.as_ref().map_or(0, |c| c.len())
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
        let rope_local = cfg
            .gemma3
            .as_ref()
            .map(|gm| RopeTable::new(cfg.head_dim, gm.rope_base_local, cfg.context_len));
        Ok(Model {
            cfg,
            weights,
            kernels,
            rope,
            rope_local,
            pool,
            threads,
            scratch: Default::default(),
            prefix: None,
        })
    }

    /// The RoPE table of layer `l`.
    pub(crate) fn rope_of(&self, l: usize) -> &RopeTable {
        match (&self.rope_local, self.cfg.window_of(l)) {
            (Some(local), Some(_)) => local,
            _ => &self.rope,
        }
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

    /// Runs `f` on the model's worker pool, so that rayon's parallel
    /// iterators inside it use the model's threads (with one thread: on the
    /// caller's thread).
    pub fn in_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        if self.threads == 1 {
            f()
        } else {
            self.pool.install(f)
        }
    }

    /// Runs `f` on one of the model's worker threads, even with one thread,
    /// so that everything `f` runs with rayon (the codec's per-row work
    /// included) stays on the model's threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Whether the output projection is the token embedding.
    pub fn tied_output(&self) -> bool {
        self.weights.tied
    }

    /// A KV cache for one sequence, holding the model's prefix (if any).
    pub fn new_cache(&self) -> KvCache {
        match &self.prefix {
            Some(p) => p.clone(),
            None => KvCache::new(&self.cfg),
        }
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
    ///
    /// Activation buffers are kept by the model between calls (they grow to
    /// the largest batch seen, about 30 KB per new token for SmolLM2; see
    /// [`Model::scratch_bytes`]). Calls from several threads at once are
    /// fine: one of them uses the kept buffers, the others temporary ones.
    pub fn forward(
        &self,
        caches: &mut [&mut KvCache],
        tokens: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), ModelError> {
        let mut guard = self.scratch.try_lock().ok();
        let mut own = Scratch::default();
        let sc: &mut Scratch = match guard.as_deref_mut() {
            Some(s) => s,
            None => &mut own,
        };
        self.batch_slots(caches, tokens, sc)?;
        let cfg = &self.cfg;
        let n = sc.slots.len();
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
        // One entry into the pool per call: the steps below fork and join on
        // hot worker threads.
        self.in_pool(|| self.run(sc, caches, logits));
        for (c, t) in caches.iter_mut().zip(tokens) {
            c.advance(t.len());
        }
        Ok(())
    }

    /// Checks the caches and tokens of a [`Model::forward`] call and lists
    /// its new tokens, sequence by sequence, in `sc.slots` / `sc.ids`.
    fn batch_slots(
        &self,
        caches: &[&mut KvCache],
        tokens: &[&[u32]],
        sc: &mut Scratch,
    ) -> Result<(), ModelError> {
        let cfg = &self.cfg;
        if caches.len() != tokens.len() {
            return Err(ModelError::BatchMismatch {
                caches: caches.len(),
                tokens: tokens.len(),
            });
        }
        sc.slots.clear();
        sc.ids.clear();
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
                sc.slots.push(Slot {
                    seq,
                    pos: c.len() + i,
                });
                sc.ids.push(token as usize);
            }
        }
        Ok(())
    }

    /// Bytes held by the activation buffers kept between [`Model::forward`]
    /// calls (0 while another thread's call holds them).
    pub fn scratch_bytes(&self) -> usize {
        self.scratch.try_lock().map_or(0, |s| s.heap_bytes())
    }

    /// Frees the activation buffers kept between calls (e.g. after one large
    /// batch, before many small ones).
    pub fn release_scratch(&self) {
        if let Ok(mut s) = self.scratch.lock() {
            *s = Scratch::default();
        }
    }
}

/// The start token a gemma3 model's states begin with: the GGUF's
/// `tokenizer.ggml.bos_token_id` when `tokenizer.ggml.add_bos_token` is
/// true (Gemma predicts far worse without it). llama models get none: the
/// files SmolLM2 wrote were defined without one.
fn start_token(g: &Gguf, cfg: &Config) -> Result<Option<u32>, ModelError> {
    if cfg.gemma3.is_none() {
        return Ok(None);
    }
    match g.get_bool("tokenizer.ggml.add_bos_token") {
        Ok(true) => {}
        Ok(false) | Err(crate::gguf::GgufError::MissingKey(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let bos = g.get_u32("tokenizer.ggml.bos_token_id")?;
    if bos as usize >= cfg.vocab {
        return Err(ModelError::BadConfig {
            key: "tokenizer.ggml.bos_token_id".into(),
            value: bos.to_string(),
            reason: format!("outside the vocabulary of {}", cfg.vocab),
        });
    }
    Ok(Some(bos))
}

fn select_kernels(opts: &ModelOptions) -> Result<Kernels, ModelError> {
    Ok(match opts.variant {
        Some(v) => Kernels::new(v)?,
        None => Kernels::detect()?,
    })
}

#[cfg(test)]
mod tests;
