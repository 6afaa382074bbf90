//! The llama layer order: one forward step of the batch, layer by layer.

use super::exec::{grown, Scratch};
use super::{KvCache, Model, Slot};
use crate::kernels::{scalar, KvView, QK};

impl Model {
    /// The forward pass over the validated batch in `sc.slots` / `sc.ids`
    /// (caches reserved, not yet advanced).
    pub(super) fn run(&self, sc: &mut Scratch, caches: &mut [&mut KvCache], logits: &mut [f32]) {
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
}
