//! Attention scheduling: the attention of a batch split into jobs over the
//! threads, the fused decoding jobs (RoPE, KV store and attention per token
//! and KV head), the prefetch of the next job's cache while the current one
//! computes, and the store of new keys and values into the caches.
//!
//! Jobs split tokens and heads, never a reduction, so the results do not
//! depend on the thread count or the job split.

use super::cache::HeadMut;
use super::exec::{balanced_runs, Buffers};
use super::{KvCache, Model, Slot};
use crate::kernels::{scalar, AttnScratch, Kernels, KvView, QuantPart, QuantizedRows, KV_TILE, QK};
use rayon::prelude::*;
use std::ops::Range;

/// How a forward call runs its attention (the same in every layer).
pub(super) enum AttnPlan {
    /// Decoding (no sequence has more than one new token) with enough
    /// (token, KV head) pairs to keep every thread busy: one job per pair
    /// does all of that head's attention block ([`Model::decode_attention`]).
    Fused,
    /// RoPE and the KV store over the whole batch, then these attention
    /// jobs ([`Model::attention`]).
    Jobs(Vec<AttnJob>),
}

impl Model {
    /// The attention plan for the batch `slots`.
    pub(super) fn attention_plan(&self, slots: &[Slot]) -> AttnPlan {
        let (qd, nkv) = (self.cfg.q_dim(), self.cfg.n_kv_head);
        let fused = slots.windows(2).all(|w| w[0].seq != w[1].seq)
            && slots.len() * nkv >= 2 * self.threads
            && (qd / nkv) % QK == 0;
        if fused {
            AttnPlan::Fused
        } else {
            AttnPlan::Jobs(self.attention_jobs(slots))
        }
    }

    /// The attention block of layer `l` from the projections `b.q`, `b.kb`,
    /// `b.vb` to the quantized attention output in `b.qx`: RoPE on the
    /// queries and keys at each token's position, the new keys and values
    /// appended to their sequences' caches, attention of every query head
    /// over its cache (`b.att`).
    pub(super) fn attention_block(
        &self,
        plan: &AttnPlan,
        l: usize,
        b: &mut Buffers<'_>,
        caches: &mut [&mut KvCache],
    ) {
        let cfg = &self.cfg;
        let (qd, kvd, hd) = (cfg.q_dim(), cfg.kv_dim(), cfg.head_dim);
        let slots = b.slots;
        let jobs = match plan {
            AttnPlan::Fused => {
                self.decode_attention(l, slots, b.q, b.kb, b.vb, caches, b.att, b.qx);
                return;
            }
            AttnPlan::Jobs(jobs) => jobs,
        };
        let rope = self.rope_of(l);
        self.rows2(b.q, qd, b.kb, kvd, |t, qr, kr| {
            let (cos, sin) = rope.at(slots[t].pos);
            for head in qr.chunks_exact_mut(hd).chain(kr.chunks_exact_mut(hd)) {
                scalar::rope(head, cos, sin);
            }
        });
        self.store_kv(l, slots, b.kb, b.vb, caches);
        // views[seq * n_kv_head + g]
        let views: Vec<KvView<'_>> = caches
            .iter()
            .flat_map(|c| (0..cfg.n_kv_head).map(move |g| c.view(l, g)))
            .collect();
        self.attention(b.q, slots, jobs, &views, b.att_jobs, b.att);
        self.quantize(b.qx, b.att, qd);
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
    pub(super) fn decode_attention(
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
        qx.reshape(slots.len(), self.cfg.q_dim());
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
                let pf = next.first().map_or([&[][..]; 4], |j| {
                    j.head.view().attended_regions(j.pos + 1, j.pos + 1)
                });
                self.decode_job(l, &mut cur[i], &pf);
            }
        };
        if self.threads == 1 {
            runs.iter_mut().for_each(seq);
        } else {
            runs.par_iter_mut().with_max_len(1).for_each(seq);
        }
    }

    /// One job of [`Model::decode_attention`].
    fn decode_job(&self, l: usize, j: &mut DecodeJob<'_, '_>, prefetch: &[&[u8]]) {
        let hd = self.cfg.head_dim;
        let k = &self.kernels;
        let (cos, sin) = self.rope_of(l).at(j.pos);
        for head in j.q.chunks_exact_mut(hd) {
            scalar::rope(head, cos, sin);
        }
        scalar::rope(j.k, cos, sin);
        j.head.write(k, j.pos, j.k, j.v);
        let view = j.head.view();
        let qs: Vec<&[f32]> = j.q.chunks_exact(hd).collect();
        let n_keys = vec![j.pos + 1; qs.len()];
        let mut o: Vec<&mut [f32]> = j.out.chunks_exact_mut(hd).collect();
        attend(k, &view, &qs, &n_keys, &mut o, prefetch);
        j.qout.quantize(k, j.out);
    }

    /// Writes every new token's keys and values (`kb`, `vb`: `[n, KV]`) of
    /// layer `l` into its sequence's cache; sequences in parallel (the K
    /// tiles are written transposed, one cache line per value, which for a
    /// decoding batch is mostly cache misses: worth spreading).
    pub(super) fn store_kv(
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
    pub(super) fn attention_jobs(&self, slots: &[Slot]) -> Vec<AttnJob> {
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
    pub(super) fn attention(
        &self,
        q: &[f32],
        slots: &[Slot],
        jobs: &[AttnJob],
        views: &[KvView<'_>],
        tmp: &mut [f32],
        att: &mut [f32],
    ) {
        let (e, hd) = (self.cfg.q_dim(), self.cfg.head_dim);
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
            view.attended_regions(slots[j.t0].pos + 1, slots[j.t0 + j.nt - 1].pos + 1)
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
            attend(k, view, &qs, &n_keys, &mut o, prefetch);
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

/// Attention of each query `qs[i]` over keys `0..n_keys[i]` of `view` (KV
/// head 0 of a one-head view) into `out[i]`, pulling the regions in
/// `prefetch` into cache meanwhile ([`Kernels::attention_queries`]).
///
/// With a sliding window, the whole K tiles that every query's window
/// masks are skipped ([`KvView::skip_tiles`]: the same bits), so a local
/// layer's attention costs its window, not the context.
fn attend(
    k: &Kernels,
    view: &KvView<'_>,
    qs: &[&[f32]],
    n_keys: &[usize],
    out: &mut [&mut [f32]],
    prefetch: &[&[u8]],
) {
    let first = n_keys.iter().map(|&n| view.first_key(n)).min().unwrap_or(0);
    let skip = first / KV_TILE;
    if skip == 0 {
        ATT_SCRATCH
            .with(|s| k.attention_queries(view, 0, qs, n_keys, &mut s.borrow_mut(), out, prefetch));
        return;
    }
    let sub = view.skip_tiles(skip);
    let keys: Vec<usize> = n_keys.iter().map(|&n| n - skip * KV_TILE).collect();
    ATT_SCRATCH
        .with(|s| k.attention_queries(&sub, 0, qs, &keys, &mut s.borrow_mut(), out, prefetch));
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
pub(super) struct AttnJob {
    pub(super) t0: usize,
    pub(super) nt: usize,
    pub(super) g: usize,
    pub(super) h0: usize,
    pub(super) nh: usize,
    pub(super) off: usize,
}
