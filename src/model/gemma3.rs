//! The gemma3 layer order (NUMERICS.md section 11): one forward step for a
//! batch of `n` new tokens, with `E = n_embd`, `F = n_ff`, `Q = n_head *
//! head_dim`, `KV = n_kv_head * head_dim`:
//!
//! ```text
//! x[n,E]   = embed(tokens) * sqrt(E)
//! per layer:
//!   h      = rmsnorm(x, attn_norm)                 per token
//!   q[n,Q], k[n,KV], v[n,KV] = Wq h, Wk h, Wv h    one quantization of h
//!   q, k   = rmsnorm(head, q_norm / k_norm)        per head (QK-norm)
//!   rope(q), rope(k) (local or global base); append k, v to the cache
//!   a[n,Q] = attention(q, cache): local layers see the last
//!            `sliding_window` keys, global layers all
//!   h      = rmsnorm(Wo a, post_attn_norm)
//!   x     += h
//!   h      = rmsnorm(x, ffn_norm)
//!   x     += rmsnorm(Wdown (gelu_tanh(Wgate h) * Wup h), post_ffn_norm)
//! logits[n,vocab] = Wembd rmsnorm(x, output_norm)   (tied output)
//! ```
//!
//! The llama machinery does the rest: the same matmul jobs, attention
//! scheduling (Q and K rows permuted so that its RoPE computes Gemma's,
//! see [`super::Gemma3Norms`]) and KV cache. As in `llama.rs`, each
//! residual add is done in the pass of the next norm.

use super::exec::{Glu, Scratch};
use super::{KvCache, Model};

impl Model {
    /// The gemma3 forward pass over the validated batch in `sc.slots` /
    /// `sc.ids` (caches reserved, not yet advanced); `logits`: `[n, vocab]`.
    pub(super) fn run_gemma3(
        &self,
        sc: &mut Scratch,
        caches: &mut [&mut KvCache],
        logits: &mut [f32],
    ) {
        let cfg = &self.cfg;
        let (e, hd) = (cfg.n_embd, cfg.head_dim);
        let mut b = sc.buffers(cfg);
        let plan = self.attention_plan(b.slots);
        // sqrt(E) as one correctly rounded f32 (640: 25.298221).
        let scale = (e as f32).sqrt();

        // x: [n, E] = the tokens' embeddings, scaled.
        let ids = b.ids;
        self.rows(b.x, e, |t, row| {
            self.weights.token_embd.lookup(ids[t], row);
            for v in row.iter_mut() {
                *v *= scale;
            }
        });
        let mut pending = false;
        for (l, lw) in self.weights.layers.iter().enumerate() {
            let gn = lw.gemma3.as_ref().expect("gemma3 weights");
            // x += h (the previous layer's FFN output); h = rmsnorm(x) -> qx.
            self.add_norm_quantize(b.x, b.h, pending, &lw.attn_norm, b.qx);
            // q: [n, Q], k, v: [n, KV].
            self.matmuls(
                b.qx,
                &mut [
                    (&lw.wq, &mut *b.q),
                    (&lw.wk, &mut *b.kb),
                    (&lw.wv, &mut *b.vb),
                ],
            );
            // QK-norm: every head row of q and k normed with its weights.
            self.rows2(b.q, cfg.q_dim(), b.kb, cfg.kv_dim(), |_, qr, kr| {
                for head in qr.chunks_exact_mut(hd) {
                    self.norm_in_place(head, &gn.q_norm);
                }
                for head in kr.chunks_exact_mut(hd) {
                    self.norm_in_place(head, &gn.k_norm);
                }
            });
            // RoPE, cache, attention (windowed on local layers) -> qx.
            self.attention_block(&plan, l, &mut b, caches);
            // h: [n, E] = rmsnorm(Wo att, post_attn_norm).
            self.matmuls(b.qx, &mut [(&lw.wo, &mut *b.h)]);
            self.rows(b.h, e, |_, row| self.norm_in_place(row, &gn.post_attn_norm));
            // x += h; h = rmsnorm(x, ffn_norm) -> qx.
            self.add_norm_quantize(b.x, b.h, true, &lw.ffn_norm, b.qx);
            self.gate_up(
                Glu::GeluTanh,
                b.qx,
                &lw.w_gate,
                &lw.w_up,
                b.gate,
                b.up,
                b.qg,
            );
            // h = rmsnorm(Wdown g, post_ffn_norm), added to x by the next norm.
            self.matmuls(b.qg, &mut [(&lw.w_down, &mut *b.h)]);
            self.rows(b.h, e, |_, row| self.norm_in_place(row, &gn.post_ffn_norm));
            pending = true;
        }
        self.add_norm_quantize(b.x, b.h, pending, &self.weights.output_norm, b.qx);
        self.matmuls(b.qx, &mut [(&self.weights.output, logits)]);
    }

    /// `row = rmsnorm(row, w)` (NUMERICS.md section 4) in place.
    fn norm_in_place(&self, row: &mut [f32], w: &[f32]) {
        NORM_TMP.with(|tmp| {
            let tmp = &mut *tmp.borrow_mut();
            tmp.clear();
            tmp.extend_from_slice(row);
            self.kernels.rmsnorm(tmp, w, self.cfg.rms_eps, row);
        });
    }
}

thread_local! {
    /// Per worker thread: the input copy of an in-place norm.
    static NORM_TMP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
