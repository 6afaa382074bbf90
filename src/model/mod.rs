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
//!   rope(q), rope(k) at each token's position; append k, v (int8 rows + scale) to its cache
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
mod exec;
#[cfg(test)]
mod synthetic;
mod weights;

use cache::HeadMut;
pub use cache::KvCache;
pub use config::{Config, MAX_CONTEXT};
use exec::{balanced_runs, grown, Scratch};
pub use weights::{Embedding, LayerWeights, Weights};

use crate::gguf::{GgmlType, Gguf, GgufError};
use crate::kernels::math::{RopeTable, TRIG_ACCURATE_MAX};
use crate::kernels::{
    batch, scalar, AttnScratch, KernelError, Kernels, KvView, QuantPart, QuantizedRows, Variant, QK,
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
    /// Activation buffers reused across [`Model::forward`] calls.
    scratch: std::sync::Mutex<Scratch>,
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
            scratch: Default::default(),
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
        if self.threads == 1 {
            self.run(sc, caches, logits);
        } else {
            // One entry into the pool per call: the steps below fork and join
            // on hot worker threads.
            self.pool.install(|| self.run(sc, caches, logits));
        }
        for (c, t) in caches.iter_mut().zip(tokens) {
            c.advance(t.len());
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

    /// The forward pass over the validated batch in `sc.slots` / `sc.ids`
    /// (caches reserved, not yet advanced).
    fn run(&self, sc: &mut Scratch, caches: &mut [&mut KvCache], logits: &mut [f32]) {
        let cfg = &self.cfg;
        let (e, f, kvd, hd) = (cfg.n_embd, cfg.n_ff, cfg.kv_dim(), cfg.head_dim);
        let n = sc.slots.len();
        let Scratch {
            slots,
            ids,
            x,
            h,
            q,
            kb,
            vb,
            att,
            att_jobs,
            gate,
            up,
            qx,
            qg,
        } = sc;
        let slots: &[Slot] = slots;
        let x = grown(x, n * e); // residual stream [n, E]
        let h = grown(h, n * e); // normed input / matmul output [n, E]
        let q = grown(q, n * e); // queries [n, E]
        let kb = grown(kb, n * kvd); // new keys [n, KV]
        let vb = grown(vb, n * kvd); // new values [n, KV]
        let att = grown(att, n * e); // attention output [n, E]
        let att_jobs = grown(att_jobs, n * e); // the same, in job order
        let gate = grown(gate, n * f); // FFN hidden [n, F]
        let up = grown(up, n * f); // [n, F]
                                   // Decoding (no sequence has more than one new token), with enough
                                   // (token, KV head) pairs to keep every thread busy: one job per pair
                                   // does all of that head's attention block.
        let fused = slots.windows(2).all(|w| w[0].seq != w[1].seq)
            && n * cfg.n_kv_head >= 2 * self.threads
            && (e / cfg.n_kv_head) % QK == 0;
        let jobs = if fused {
            Vec::new()
        } else {
            self.attention_jobs(slots)
        };

        self.rows(x, e, |t, row| self.weights.token_embd.lookup(ids[t], row));
        // `h` holds a matmul result to add to `x` before the next norm.
        let mut pending = false;
        for (l, lw) in self.weights.layers.iter().enumerate() {
            // Attention block: h = rmsnorm(x), q k v = W h, rope, cache, attend.
            self.add_norm_quantize(x, h, pending, &lw.attn_norm, qx);
            self.matmuls(
                qx,
                &mut [(&lw.wq, &mut *q), (&lw.wk, &mut *kb), (&lw.wv, &mut *vb)],
            );
            if fused {
                self.decode_attention(l, slots, q, kb, vb, caches, att, qx);
            } else {
                self.rows2(q, e, kb, kvd, |t, qr, kr| {
                    let (cos, sin) = self.rope.at(slots[t].pos);
                    for head in qr.chunks_exact_mut(hd).chain(kr.chunks_exact_mut(hd)) {
                        scalar::rope(head, cos, sin);
                    }
                });
                self.store_kv(l, slots, kb, vb, caches);
                // views[seq * n_kv_head + g]
                let views: Vec<KvView<'_>> = caches
                    .iter()
                    .flat_map(|c| (0..cfg.n_kv_head).map(move |g| c.view(l, g)))
                    .collect();
                self.attention(q, slots, &jobs, &views, att_jobs, att);
                self.quantize(qx, att, e);
            }
            self.matmuls(qx, &mut [(&lw.wo, &mut *h)]);

            // Feed-forward block: x += Wo a; h = rmsnorm(x); x += Wdown(silu(Wgate h) * Wup h).
            self.add_norm_quantize(x, h, true, &lw.ffn_norm, qx);
            self.gate_up(qx, &lw.w_gate, &lw.w_up, gate, up, qg);
            self.matmuls(qg, &mut [(&lw.w_down, &mut *h)]);
            pending = true;
        }
        self.add_norm_quantize(x, h, pending, &self.weights.output_norm, qx);
        self.matmuls(qx, &mut [(&self.weights.output, logits)]);
    }

    /// The attention block of a decoding step (at most one new token per
    /// sequence) from the projections to the attention output: per token
    /// `t` and KV head `g`, one job applies RoPE to the token's query heads
    /// of that group (`q[t, g * group * hd..]`) and to its key, stores the
    /// key and value in the cache, and attends, writing `att[t, g * group *
    /// hd..]`. The same operations as the general path (RoPE per head, the
    /// cache row rule, the attention kernel), without its separate passes
    /// and copies. Each thread takes a contiguous run of jobs of about
    /// equal keys and, during each job, prefetches the cache the next job
    /// reads (K, V and their scales), so that memory streams while the
    /// current job computes.
    #[allow(clippy::too_many_arguments)]
    fn decode_attention(
        &self,
        l: usize,
        slots: &[Slot],
        q: &mut [f32],
        kb: &mut [f32],
        vb: &[f32],
        caches: &mut [&mut KvCache],
        att: &mut [f32],
        qx: &mut QuantizedRows,
    ) {
        let (hd, nkv) = (self.cfg.head_dim, self.cfg.n_kv_head);
        let gw = self.cfg.n_head / nkv * hd;
        // qparts[t * nkv + g]: the quantized output's blocks of job (t, g).
        qx.reshape(slots.len(), self.cfg.n_embd);
        let ranges: Vec<Range<usize>> = (0..nkv).map(|g| g * gw..(g + 1) * gw).collect();
        let mut by_head: Vec<_> = qx
            .parts_mut(&ranges)
            .into_iter()
            .map(|p| p.into_iter())
            .collect();
        let mut qparts = Vec::with_capacity(slots.len() * nkv);
        for _ in slots {
            qparts.extend(
                by_head
                    .iter_mut()
                    .map(|it| it.next().expect("a part per token")),
            );
        }
        // heads[t * nkv + g]: slots are in sequence order, one per sequence.
        let mut heads = Vec::with_capacity(slots.len() * nkv);
        let mut cs = caches.iter_mut().enumerate();
        for slot in slots {
            let (_, c) = cs
                .find(|(s, _)| *s == slot.seq)
                .expect("one slot per sequence, in order");
            heads.extend(c.layer_heads(l));
        }
        let mut jobs: Vec<DecodeJob<'_, '_>> = q
            .chunks_exact_mut(gw)
            .zip(kb.chunks_exact_mut(hd))
            .zip(vb.chunks_exact(hd))
            .zip(att.chunks_exact_mut(gw))
            .zip(heads)
            .zip(qparts)
            .enumerate()
            .map(|(i, (((((q, k), v), out), head), qout))| DecodeJob {
                pos: slots[i / nkv].pos,
                q,
                k,
                v,
                out,
                head,
                qout,
            })
            .collect();
        let keys: Vec<usize> = jobs.iter().map(|j| j.pos + 1).collect();
        let mut runs: Vec<&mut [DecodeJob<'_, '_>]> = Vec::new();
        let mut rest = &mut jobs[..];
        for len in balanced_runs(&keys, self.threads) {
            let (a, b) = rest.split_at_mut(len);
            runs.push(a);
            rest = b;
        }
        let seq = |run: &mut &mut [DecodeJob<'_, '_>]| {
            for i in 0..run.len() {
                let (cur, next) = run.split_at_mut(i + 1);
                let pf = next
                    .first()
                    .map_or([&[][..]; 4], |j| j.head.view().read_regions(j.pos + 1));
                self.decode_job(&mut cur[i], &pf);
            }
        };
        if self.threads == 1 {
            runs.iter_mut().for_each(seq);
        } else {
            runs.par_iter_mut().with_max_len(1).for_each(seq);
        }
    }

    /// One job of [`Model::decode_attention`].
    fn decode_job(&self, j: &mut DecodeJob<'_, '_>, prefetch: &[&[u8]]) {
        let hd = self.cfg.head_dim;
        let k = &self.kernels;
        let (cos, sin) = self.rope.at(j.pos);
        for head in j.q.chunks_exact_mut(hd) {
            scalar::rope(head, cos, sin);
        }
        scalar::rope(j.k, cos, sin);
        j.head.write(k, j.pos, j.k, j.v);
        let view = j.head.view();
        let qs: Vec<&[f32]> = j.q.chunks_exact(hd).collect();
        let n_keys = vec![j.pos + 1; qs.len()];
        let mut o: Vec<&mut [f32]> = j.out.chunks_exact_mut(hd).collect();
        ATT_SCRATCH.with(|s| {
            let s = &mut s.borrow_mut();
            if k.variant() == Variant::Scalar {
                // The reference path: the specification's kernel per query.
                for (q, o) in qs.iter().zip(o.iter_mut()) {
                    k.attention(q, &view, 0, j.pos + 1, s, o);
                }
            } else {
                batch::attention_batch_prefetch(k, &view, 0, &qs, &n_keys, s, &mut o, prefetch);
            }
        });
        j.qout.quantize(k, j.out);
    }

    /// Writes every new token's keys and values (`kb`, `vb`: `[n, KV]`) of
    /// layer `l` into its sequence's cache; sequences in parallel (the K
    /// tiles are written transposed, one cache line per value, which for a
    /// decoding batch is mostly cache misses: worth spreading).
    fn store_kv(
        &self,
        l: usize,
        slots: &[Slot],
        kb: &[f32],
        vb: &[f32],
        caches: &mut [&mut KvCache],
    ) {
        let kvd = self.cfg.kv_dim();
        // Tokens of sequence s are slots[first[s]..first[s + 1]] (slots are in
        // sequence order).
        let mut first = vec![slots.len(); caches.len() + 1];
        for (t, s) in slots.iter().enumerate().rev() {
            first[s.seq] = t;
        }
        for s in (0..caches.len()).rev() {
            first[s] = first[s].min(first[s + 1]);
        }
        let write = |(s, c): (usize, &mut &mut KvCache)| {
            for (t, slot) in slots.iter().enumerate().take(first[s + 1]).skip(first[s]) {
                let range = t * kvd..(t + 1) * kvd;
                c.write(&self.kernels, l, slot.pos, &kb[range.clone()], &vb[range]);
            }
        };
        if self.threads > 1 && caches.len() > 1 {
            caches.par_iter_mut().enumerate().for_each(write);
        } else {
            caches.iter_mut().enumerate().for_each(write);
        }
    }

    /// Splits the attention of every new token into jobs: per sequence and
    /// KV head, blocks of up to [`ATT_TOKENS`] consecutive tokens with all
    /// the query heads of that KV head (they read the same keys, so the
    /// batched kernel loads each K/V row once for all of them). With fewer
    /// jobs than threads (a single sequence decoding), one job per query
    /// head instead so every thread has work.
    fn attention_jobs(&self, slots: &[Slot]) -> Vec<AttnJob> {
        let (nh, nkv) = (self.cfg.n_head, self.cfg.n_kv_head);
        let group = nh / nkv;
        let mut spans = Vec::new(); // (first token, tokens) per sequence
        let mut t = 0;
        while t < slots.len() {
            let seq = slots[t].seq;
            let len = slots[t..].iter().take_while(|s| s.seq == seq).count();
            spans.push((t, len));
            t += len;
        }
        let blocks: usize = spans.iter().map(|&(_, len)| len.div_ceil(ATT_TOKENS)).sum();
        let split_heads = group > 1 && blocks * nkv < 2 * self.threads;
        let (heads_per_job, jobs_per_group) = if split_heads { (1, group) } else { (group, 1) };
        let mut jobs = Vec::with_capacity(blocks * nkv * jobs_per_group);
        let mut off = 0;
        for &(t0, len) in &spans {
            for g in 0..nkv {
                for b in (0..len).step_by(ATT_TOKENS) {
                    let nt = ATT_TOKENS.min(len - b);
                    for j in 0..jobs_per_group {
                        jobs.push(AttnJob {
                            t0: t0 + b,
                            nt,
                            g,
                            h0: g * group + j * heads_per_job,
                            nh: heads_per_job,
                            off,
                        });
                        off += nt * heads_per_job * self.cfg.head_dim;
                    }
                }
            }
        }
        jobs
    }

    /// Attention for every new token and query head: `att[t, h*hd..]`.
    /// `views[seq * n_kv_head + g]` is KV head `g` of sequence `seq`.
    /// Jobs write into `tmp` in job order, then the results are moved into
    /// place (a copy of `n x n_embd` floats, tiny next to the work).
    fn attention(
        &self,
        q: &[f32],
        slots: &[Slot],
        jobs: &[AttnJob],
        views: &[KvView<'_>],
        tmp: &mut [f32],
        att: &mut [f32],
    ) {
        let (e, hd) = (self.cfg.n_embd, self.cfg.head_dim);
        let k = &self.kernels;
        let mut outs: Vec<&mut [f32]> = Vec::with_capacity(jobs.len());
        let mut rest = &mut *tmp;
        for j in jobs {
            let (a, b) = rest.split_at_mut(j.nt * j.nh * hd);
            outs.push(a);
            rest = b;
        }
        // The cache memory job `j` reads.
        let reads = |j: &AttnJob| -> [&[u8]; 4] {
            let view = &views[slots[j.t0].seq * self.cfg.n_kv_head + j.g];
            view.read_regions(slots[j.t0 + j.nt - 1].pos + 1)
        };

        let run = |(j, out): (&AttnJob, &mut &mut [f32]), prefetch: &[&[u8]]| {
            let view = &views[slots[j.t0].seq * self.cfg.n_kv_head + j.g];
            let mut qs = Vec::with_capacity(j.nt * j.nh);
            let mut n_keys = Vec::with_capacity(j.nt * j.nh);
            for t in j.t0..j.t0 + j.nt {
                for h in j.h0..j.h0 + j.nh {
                    qs.push(&q[t * e + h * hd..][..hd]);
                    n_keys.push(slots[t].pos + 1);
                }
            }
            let mut o: Vec<&mut [f32]> = out.chunks_exact_mut(hd).collect();
            ATT_SCRATCH.with(|s| {
                let s = &mut s.borrow_mut();
                if k.variant() == Variant::Scalar {
                    // The reference path: the specification's kernel per query.
                    for ((q, &nk), o) in qs.iter().zip(&n_keys).zip(o.iter_mut()) {
                        k.attention(q, view, 0, nk, s, o);
                    }
                } else {
                    batch::attention_batch_prefetch(k, view, 0, &qs, &n_keys, s, &mut o, prefetch);
                }
            });
        };
        if jobs.iter().all(|j| j.nt == 1) && jobs.len() > 1 {
            // Decoding: every job is one token's query heads over its whole
            // cache, and its score pass waits on K coming from memory while
            // its output pass is compute-bound. So each thread takes a
            // contiguous run of jobs (about equal keys: the jobs are alike)
            // and, during a job, prefetches the cache the next job reads.
            let keys: Vec<usize> = jobs.iter().map(|j| slots[j.t0].pos + 1).collect();
            let mut runs: Vec<(&[AttnJob], &mut [&mut [f32]])> = Vec::new();
            let (mut js, mut os) = (jobs, &mut outs[..]);
            for len in balanced_runs(&keys, self.threads) {
                let (a, b) = js.split_at(len);
                let (oa, ob) = os.split_at_mut(len);
                runs.push((a, oa));
                (js, os) = (b, ob);
            }
            let seq = |(js, os): &mut (&[AttnJob], &mut [&mut [f32]])| {
                for (i, (j, o)) in js.iter().zip(os.iter_mut()).enumerate() {
                    let next = js.get(i + 1).map(reads).unwrap_or_default();
                    run((j, o), &next);
                }
            };
            if self.threads == 1 {
                runs.iter_mut().for_each(seq);
            } else {
                runs.par_iter_mut().with_max_len(1).for_each(seq);
            }
        } else if self.threads == 1 || jobs.len() == 1 {
            jobs.iter().zip(outs.iter_mut()).for_each(|jo| run(jo, &[]));
        } else {
            jobs.par_iter()
                .zip(outs.par_iter_mut())
                .with_max_len(1)
                .for_each(|jo| run(jo, &[]));
        }
        for j in jobs {
            let src = &tmp[j.off..j.off + j.nt * j.nh * hd];
            for (i, o) in src.chunks_exact(hd).enumerate() {
                let (t, h) = (j.t0 + i / j.nh, j.h0 + i % j.nh);
                att[t * e + h * hd..][..hd].copy_from_slice(o);
            }
        }
    }
}

/// Consecutive tokens of one sequence per attention job: with the 3 query
/// heads of a SmolLM2 KV head, 12 queries share each K/V load.
const ATT_TOKENS: usize = 4;

thread_local! {
    /// Per worker thread: scores and weights of the attention kernels.
    static ATT_SCRATCH: std::cell::RefCell<AttnScratch> = const { std::cell::RefCell::new(AttnScratch::new()) };
}

/// One job of [`Model::decode_attention`]: a token at `pos`, one KV head.
struct DecodeJob<'a, 'c> {
    pos: usize,
    /// The token's query heads of this KV group `[group][head_dim]`.
    q: &'a mut [f32],
    /// Its key and value rows for this head `[head_dim]` (before RoPE).
    k: &'a mut [f32],
    v: &'a [f32],
    /// Its attention output for these query heads `[group][head_dim]`.
    out: &'a mut [f32],
    head: HeadMut<'c>,
    /// `out`'s blocks of the quantized attention output.
    qout: QuantPart<'a>,
}

/// One attention job: tokens `t0..t0 + nt` (indices into the batch), query
/// heads `h0..h0 + nh`, all of KV head `g`; output at `off` in job order
/// (`[nt][nh][head_dim]`).
#[derive(Debug, Clone, Copy)]
struct AttnJob {
    t0: usize,
    nt: usize,
    g: usize,
    h0: usize,
    nh: usize,
    off: usize,
}

fn select_kernels(opts: &ModelOptions) -> Result<Kernels, ModelError> {
    Ok(match opts.variant {
        Some(v) => Kernels::new(v)?,
        None => Kernels::detect()?,
    })
}

#[cfg(test)]
mod tests;
