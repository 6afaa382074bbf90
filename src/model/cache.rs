//! The per-sequence KV cache: keys (after RoPE) and values as int8 rows with
//! one f32 scale per (position, KV head) (NUMERICS.md section 7), in the
//! layout of [`KvView`]. About 140 bytes per position and head of 64
//! dimensions (f16: 256, f32: 512), which is what decoding at long context
//! is bound by: each new token's attention streams the whole cache of its
//! sequence.
//!
//! Each (layer, KV head) has its own contiguous regions, presented to the
//! kernels as a view with one KV head: the attention of one head then
//! streams one contiguous region (prefetcher- and TLB-friendly) instead of
//! tiles interleaved with the other heads' (which at long context, when the
//! cache comes from DRAM, slow decoding down markedly). The
//! regions of all heads share two large buffers ([`LargeBuf`]: huge pages
//! where the system has them), one for the int8 rows and one for the
//! scales.

use super::config::MAX_HEAD_DIM;
use super::Config;
use crate::kernels::{Kernels, KvView, KV_TILE};
use crate::mem::LargeBuf;
use rayon::prelude::*;
use std::ops::Range;

/// Keys and values of one sequence for every layer. Capacity grows on demand
/// (amortized doubling) and never beyond the model's context length (rounded
/// up to a whole tile).
#[derive(Debug, Clone)]
pub struct KvCache {
    n_layer: usize,
    n_kv_head: usize,
    head_dim: usize,
    max_len: usize,
    /// Per layer, the sliding window its attention sees (0: every key),
    /// set on every view of that layer.
    windows: Vec<usize>,
    /// Positions every state of the model starts with (gemma3: its start
    /// token), which [`KvCache::clear`] keeps.
    base: usize,
    /// Positions holding valid keys/values.
    len: usize,
    /// Positions allocated (a multiple of KV_TILE).
    cap: usize,
    /// Per layer and KV head `h = layer * n_kv_head + g`, in the one-head
    /// [`KvView`] layout: at `h * cap * (kd + head_dim)` (`kd` = head_dim
    /// rounded up to a multiple of 4), K `[cap / 16][kd / 4][16][4]`, then
    /// V `[cap][head_dim]`.
    rows: LargeBuf<i8>,
    /// At `h * 2 * cap`: the K scales `[cap]`, then the V scales `[cap]`.
    scales: LargeBuf<f32>,
}

impl KvCache {
    /// Bytes one position takes in a cache of `cfg`'s model (K and V rows
    /// as int8 plus their f32 scales, every layer and KV head): 12600 for
    /// SmolLM2-135M, so a 2048-token chunk's cache is about 25 MB.
    pub fn bytes_per_token(cfg: &Config) -> usize {
        let hd = cfg.head_dim;
        cfg.n_layer * cfg.n_kv_head * (hd.div_ceil(4) * 4 + hd + 8)
    }

    /// An empty cache for a model of this shape (allocates nothing yet).
    pub fn new(cfg: &Config) -> KvCache {
        KvCache {
            n_layer: cfg.n_layer,
            n_kv_head: cfg.n_kv_head,
            head_dim: cfg.head_dim,
            max_len: cfg.context_len,
            windows: (0..cfg.n_layer)
                .map(|l| cfg.window_of(l).unwrap_or(0))
                .collect(),
            base: 0,
            len: 0,
            cap: 0,
            rows: LargeBuf::new(),
            scales: LargeBuf::new(),
        }
    }

    /// Bytes of K (padded to whole groups of 4 dimensions) per position and
    /// head.
    fn kd(&self) -> usize {
        self.head_dim.div_ceil(4) * 4
    }

    /// Where head `h`'s K and V regions start in `rows`, for capacity `cap`.
    fn rows_at(&self, h: usize, cap: usize) -> (usize, usize) {
        let k = h * cap * (self.kd() + self.head_dim);
        (k, k + cap * self.kd())
    }

    /// Tokens in the cache (the position the next token gets).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most tokens this cache can hold (the model's context length).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Forgets every token after the model's prefix (none for llama; the
    /// start token for gemma3), keeping the allocation for reuse.
    pub fn clear(&mut self) {
        self.len = self.base;
    }

    /// Keeps only the first `len` tokens (no-op if `len >= self.len()`),
    /// never fewer than the model's prefix.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len.max(self.base));
    }

    /// Positions of the model's prefix, which every fresh state holds.
    pub fn prefix_len(&self) -> usize {
        self.base
    }

    /// Makes the tokens now in the cache its prefix ([`KvCache::clear`]
    /// keeps them).
    pub(crate) fn freeze_prefix(&mut self) {
        self.base = self.len;
    }

    /// Slides the window (NUMERICS.md section 7.3): keeps positions
    /// `0..front` and the last `keep` positions, which move down to
    /// `front..front + keep`; the positions between are dropped. Each moved
    /// key is rotated back by the distance `d` it moves and quantized again
    /// (`back[layer]`: the cos and sin rows of that layer's RoPE table at
    /// `d`); values move as they are. No-op unless `front + keep < len`.
    /// With `par`, the (layer, KV head) regions go to the current rayon
    /// pool (the model's, under [`super::Model::in_pool`]).
    pub(crate) fn slide(
        &mut self,
        kern: &Kernels,
        front: usize,
        keep: usize,
        back: &[(&[f32], &[f32])],
        par: bool,
    ) {
        if front + keep >= self.len || keep == 0 {
            self.len = self.len.min(front + keep).max(self.base);
            return;
        }
        debug_assert!(front >= self.base && back.len() == self.n_layer);
        let d = self.len - keep - front;
        // Every (layer, KV head) region is moved on its own and the same
        // way whichever thread takes it, so the bits do not depend on the
        // threads.
        let nkv = self.n_kv_head;
        let heads: Vec<_> = (0..self.n_layer)
            .flat_map(|l| std::iter::repeat_n(l, nkv))
            .zip(self.heads(0..self.n_layer))
            .collect();
        let job = |(layer, mut head): (usize, HeadMut<'_>)| {
            let (cos, sin) = back[layer];
            slide_head(kern, &mut head, front, d, keep, cos, sin);
        };
        if par {
            heads.into_par_iter().for_each(job);
        } else {
            heads.into_iter().for_each(job);
        }
        self.len = front + keep;
    }

    /// Bytes allocated for keys and values.
    pub fn heap_bytes(&self) -> usize {
        self.rows.heap_bytes() + self.scales.heap_bytes()
    }

    /// Whether this cache has the shape of `cfg`'s model.
    pub(crate) fn fits(&self, cfg: &Config) -> bool {
        self.n_layer == cfg.n_layer
            && self.n_kv_head == cfg.n_kv_head
            && self.head_dim == cfg.head_dim
            && self.max_len == cfg.context_len
            && self
                .windows
                .iter()
                .enumerate()
                .all(|(l, &w)| w == cfg.window_of(l).unwrap_or(0))
    }

    /// Makes room for `tokens` positions after the prefix (at most the
    /// context length), so that appending up to that many allocates nothing
    /// more.
    pub fn reserve_tokens(&mut self, tokens: usize) {
        self.reserve(tokens.saturating_add(self.base).min(self.max_len));
    }

    /// Makes room for `new_len <= max_len` positions.
    pub(crate) fn reserve(&mut self, new_len: usize) {
        debug_assert!(new_len <= self.max_len);
        if new_len <= self.cap {
            return;
        }
        let want = new_len.max(self.cap * 2).max(64).min(self.max_len);
        let cap = want.div_ceil(KV_TILE) * KV_TILE;
        let (old, hd, kd) = (self.cap, self.head_dim, self.kd());
        let heads = self.n_layer * self.n_kv_head;
        let mut rows = LargeBuf::zeroed(heads * cap * (kd + hd));
        let mut scales = LargeBuf::zeroed(heads * 2 * cap);
        // Each region keeps its layout with a larger capacity (K tiles and
        // V rows are position-major), so the old contents are a prefix.
        for h in 0..heads {
            let ((ko, vo), (kn, vn)) = (self.rows_at(h, old), self.rows_at(h, cap));
            rows[kn..kn + old * kd].copy_from_slice(&self.rows[ko..ko + old * kd]);
            rows[vn..vn + old * hd].copy_from_slice(&self.rows[vo..vo + old * hd]);
            for part in 0..2 {
                let (so, sn) = ((2 * h + part) * old, (2 * h + part) * cap);
                scales[sn..sn + old].copy_from_slice(&self.scales[so..so + old]);
            }
        }
        (self.rows, self.scales, self.cap) = (rows, scales, cap);
    }

    /// Stores position `pos`'s keys and values (`[n_kv_head][head_dim]` each,
    /// f32) for `layer`, each head row quantized to int8 with its scale
    /// ([`Kernels::quant_head`]). `pos < cap` (after [`KvCache::reserve`]).
    pub(crate) fn write(&mut self, kern: &Kernels, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        debug_assert!(k.len() == self.n_kv_head * hd && v.len() == k.len());
        let rows = k.chunks_exact(hd).zip(v.chunks_exact(hd));
        for (mut head, (kh, vh)) in self.layer_heads(layer).into_iter().zip(rows) {
            head.write(kern, pos, kh, vh);
        }
    }

    /// The KV heads of `layer`, each writable on its own: their regions are
    /// disjoint, so the heads of a layer can go to different threads.
    pub(crate) fn layer_heads(&mut self, layer: usize) -> Vec<HeadMut<'_>> {
        self.heads(layer..layer + 1)
    }

    /// The (layer, KV head) regions of `layers`, in order `layer *
    /// n_kv_head + g`, each writable on its own.
    fn heads(&mut self, layers: Range<usize>) -> Vec<HeadMut<'_>> {
        let (cap, hd, kd, nkv) = (self.cap, self.head_dim, self.kd(), self.n_kv_head);
        let hs = layers.start * nkv..layers.end * nkv;
        let windows = &self.windows;
        let rows = self.rows[hs.start * cap * (kd + hd)..hs.end * cap * (kd + hd)]
            .chunks_mut(cap * (kd + hd));
        let scales = self.scales[2 * hs.start * cap..2 * hs.end * cap].chunks_mut(2 * cap);
        hs.zip(rows.zip(scales))
            .map(|(h, (r, sc))| {
                let (k, v) = r.split_at_mut(cap * kd);
                let (dk, dv) = sc.split_at_mut(cap);
                HeadMut {
                    k,
                    v,
                    dk,
                    dv,
                    head_dim: hd,
                    window: windows[h / nkv],
                }
            })
            .collect()
    }

    /// Marks `n` more positions valid (after their keys/values were written
    /// for every layer).
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.cap);
        self.len += n;
    }

    /// The attention view of KV head `g` of `layer`: a view with ONE KV
    /// head (pass head index 0 to the kernels), with the layer's sliding
    /// window. It covers every allocated position; the caller passes how
    /// many keys to use.
    pub(crate) fn view(&self, layer: usize, g: usize) -> KvView<'_> {
        let (cap, h) = (self.cap, layer * self.n_kv_head + g);
        let (ko, vo) = self.rows_at(h, cap);
        let so = 2 * h * cap;
        KvView {
            k: &self.rows[ko..vo],
            dk: &self.scales[so..so + cap],
            v: &self.rows[vo..vo + cap * self.head_dim],
            dv: &self.scales[so + cap..so + 2 * cap],
            n_kv_head: 1,
            head_dim: self.head_dim,
            window: self.windows[layer],
        }
    }
}

/// Slides one (layer, KV head) region (NUMERICS.md 7.3): the `keep`
/// positions from `front + d` move to `front`, each key dequantized, rotated
/// by `-d` (`cos`, `sin`: that layer's RoPE rows at `d`, `head_dim / 2`
/// each) and quantized again; each value row and its scale moved as is.
fn slide_head(
    kern: &Kernels,
    head: &mut HeadMut<'_>,
    front: usize,
    d: usize,
    keep: usize,
    cos: &[f32],
    sin: &[f32],
) {
    let hd = head.head_dim;
    debug_assert!(cos.len() == hd / 2 && sin.len() == hd / 2);
    let layout = KvView::layout(1, hd);
    let mut x = [0f32; MAX_HEAD_DIM];
    let mut q = [0i8; MAX_HEAD_DIM];
    // Rotating by -d: (x0, x1) -> (x0 c + x1 s, -x0 s + x1 c), the RoPE
    // formula with sin negated.
    let mut nsin = [0f32; MAX_HEAD_DIM / 2];
    for (n, &s) in nsin.iter_mut().zip(sin) {
        *n = -s;
    }
    let (x, q, nsin) = (&mut x[..hd], &mut q[..hd], &nsin[..hd / 2]);
    for j in 0..keep {
        let (src, dst) = (front + d + j, front + j);
        let dk = head.dk[layout.dk_index(src, 0)];
        for c in 0..hd.div_ceil(4) {
            let at = layout.k_index(src, 0, 4 * c);
            let n = (hd - 4 * c).min(4);
            for (xi, &qi) in x[4 * c..4 * c + n].iter_mut().zip(&head.k[at..at + n]) {
                *xi = qi as f32 * dk;
            }
        }
        crate::kernels::scalar::rope(x, cos, nsin);
        head.dk[layout.dk_index(dst, 0)] = kern.quant_head(x, q);
        for (c, x4) in q.chunks(4).enumerate() {
            let at = layout.k_index(dst, 0, 4 * c);
            head.k[at..at + x4.len()].copy_from_slice(x4);
        }
        head.v.copy_within(src * hd..(src + 1) * hd, dst * hd);
        head.dv[layout.dv_index(dst, 0)] = head.dv[layout.dv_index(src, 0)];
    }
}

/// One KV head of one layer of a [`KvCache`] ([`KvCache::layer_heads`]):
/// its regions, in the one-head [`KvView`] layout.
pub(crate) struct HeadMut<'a> {
    k: &'a mut [i8],
    v: &'a mut [i8],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
    head_dim: usize,
    /// The layer's sliding window (0: none).
    window: usize,
}

impl HeadMut<'_> {
    /// Stores position `pos`'s key and value rows (`head_dim` f32 each),
    /// each quantized to int8 with its scale ([`Kernels::quant_head`]).
    pub(crate) fn write(&mut self, kern: &Kernels, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        debug_assert!(k.len() == hd && v.len() == hd && pos < self.dk.len());
        let view = KvView::layout(1, hd);
        // head_dim <= MAX_HEAD_DIM (checked with the config).
        let mut buf = [0i8; MAX_HEAD_DIM];
        let kq = &mut buf[..hd];
        // K: quantize the row, then scatter its groups of 4 into the tile.
        self.dk[view.dk_index(pos, 0)] = kern.quant_head(k, kq);
        // (Dimensions 4c..4c+4 are adjacent bytes in the tile.)
        for (c, x4) in kq.chunks(4).enumerate() {
            let at = view.k_index(pos, 0, 4 * c);
            self.k[at..at + x4.len()].copy_from_slice(x4);
        }
        let vrow = &mut self.v[pos * hd..(pos + 1) * hd];
        self.dv[view.dv_index(pos, 0)] = kern.quant_head(v, vrow);
    }

    /// The attention view of this head (a view with ONE KV head).
    pub(crate) fn view(&self) -> KvView<'_> {
        KvView {
            k: self.k,
            dk: self.dk,
            v: self.v,
            dv: self.dv,
            n_kv_head: 1,
            head_dim: self.head_dim,
            window: self.window,
        }
    }
}
