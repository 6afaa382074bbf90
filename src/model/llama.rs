//! The llama layer order: one forward step for a batch of `n` new tokens
//! (all sequences together), with `E = n_embd`, `F = n_ff`,
//! `KV = n_kv_head * head_dim`:
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
//! Each residual add is done in the pass of the next norm (`x += h`, then
//! `h = rmsnorm(x)`), so `h` holds a matmul result that `x` has not had yet.

use super::exec::{Glu, Scratch};
use super::{KvCache, Model};

impl Model {
    /// The forward pass over the validated batch in `sc.slots` / `sc.ids`
    /// (caches reserved, not yet advanced); `logits`: `[n, vocab]`.
    pub(super) fn run(&self, sc: &mut Scratch, caches: &mut [&mut KvCache], logits: &mut [f32]) {
        if self.cfg.gemma3.is_some() {
            return self.run_gemma3(sc, caches, logits);
        }
        let e = self.cfg.n_embd;
        let mut b = sc.buffers(&self.cfg);
        let plan = self.attention_plan(b.slots);

        // x: [n, E] = the tokens' embeddings.
        let ids = b.ids;
        self.rows(b.x, e, |t, row| self.weights.token_embd.lookup(ids[t], row));
        // Whether `h` holds a matmul result still to be added to `x`.
        let mut pending = false;
        for (l, lw) in self.weights.layers.iter().enumerate() {
            // x += h (the previous layer's down projection);
            // h: [n, E] = rmsnorm(x), quantized into qx.
            self.add_norm_quantize(b.x, b.h, pending, &lw.attn_norm, b.qx);
            // q: [n, E], k, v: [n, KV] = Wq h, Wk h, Wv h.
            self.matmuls(
                b.qx,
                &mut [
                    (&lw.wq, &mut *b.q),
                    (&lw.wk, &mut *b.kb),
                    (&lw.wv, &mut *b.vb),
                ],
            );
            // RoPE on q and k, k and v appended to the caches;
            // att: [n, E] = attention(q, cache), quantized into qx.
            self.attention_block(&plan, l, &mut b, caches);
            // h: [n, E] = Wo att.
            self.matmuls(b.qx, &mut [(&lw.wo, &mut *b.h)]);

            // x += h (residual); h: [n, E] = rmsnorm(x), quantized into qx.
            self.add_norm_quantize(b.x, b.h, true, &lw.ffn_norm, b.qx);
            // gate, up: [n, F] = Wgate h, Wup h; gate = silu(gate) * up
            // (SwiGLU), quantized into qg.
            self.gate_up(Glu::Silu, b.qx, &lw.w_gate, &lw.w_up, b.gate, b.up, b.qg);
            // h: [n, E] = Wdown gate (added to x by the next norm).
            self.matmuls(b.qg, &mut [(&lw.w_down, &mut *b.h)]);
            pending = true;
        }
        // x += h; logits: [n, vocab] = Wout rmsnorm(x).
        self.add_norm_quantize(b.x, b.h, pending, &self.weights.output_norm, b.qx);
        self.matmuls(b.qx, &mut [(&self.weights.output, logits)]);
    }
}
