//! The per-sequence KV cache: keys (after RoPE) and values rounded to IEEE
//! binary16 (NUMERICS.md section 7), in the layout of [`KvView`]. Half the
//! bytes of f32, which is what decoding at long context is bound by: each
//! new token's attention streams the whole cache of its sequence.
//!
//! Each (layer, KV head) has its own contiguous K and V buffers, presented to
//! the kernels as a view with one KV head: the attention of one head then
//! streams one contiguous region (prefetcher- and TLB-friendly) instead of
//! tiles interleaved with the other heads' (which at long context, when the
//! cache comes from DRAM, cost decoding about a third of its speed).

use super::Config;
use crate::kernels::math::f16_from_f32_slice;
use crate::kernels::{KvView, KV_TILE};

/// Keys and values of one sequence for every layer. Capacity grows on demand
/// (amortized doubling) and never beyond the model's context length (rounded
/// up to a whole tile).
#[derive(Debug, Clone)]
pub struct KvCache {
    n_layer: usize,
    n_kv_head: usize,
    head_dim: usize,
    max_len: usize,
    /// Positions holding valid keys/values.
    len: usize,
    /// Positions allocated (a multiple of KV_TILE).
    cap: usize,
    /// Per layer and KV head (`layer * n_kv_head + g`), f16 bits:
    /// `[cap / KV_TILE][head_dim][KV_TILE]`.
    k: Vec<Vec<u16>>,
    /// Per layer and KV head, f16 bits: `[cap][head_dim]`.
    v: Vec<Vec<u16>>,
}

impl KvCache {
    /// An empty cache for a model of this shape (allocates nothing yet).
    pub fn new(cfg: &Config) -> KvCache {
        KvCache {
            n_layer: cfg.n_layer,
            n_kv_head: cfg.n_kv_head,
            head_dim: cfg.head_dim,
            max_len: cfg.context_len,
            len: 0,
            cap: 0,
            k: vec![Vec::new(); cfg.n_layer * cfg.n_kv_head],
            v: vec![Vec::new(); cfg.n_layer * cfg.n_kv_head],
        }
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

    /// Forgets every token, keeping the allocation for reuse.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps only the first `len` tokens (no-op if `len >= self.len()`).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes allocated for keys and values.
    pub fn heap_bytes(&self) -> usize {
        self.k
            .iter()
            .chain(&self.v)
            .map(|b| b.capacity() * std::mem::size_of::<u16>())
            .sum()
    }

    /// Whether this cache has the shape of `cfg`'s model.
    pub(crate) fn fits(&self, cfg: &Config) -> bool {
        self.n_layer == cfg.n_layer
            && self.n_kv_head == cfg.n_kv_head
            && self.head_dim == cfg.head_dim
            && self.max_len == cfg.context_len
    }

    /// Makes room for `new_len <= max_len` positions.
    pub(crate) fn reserve(&mut self, new_len: usize) {
        debug_assert!(new_len <= self.max_len);
        if new_len <= self.cap {
            return;
        }
        let want = new_len.max(self.cap * 2).max(64).min(self.max_len);
        let cap = want.div_ceil(KV_TILE) * KV_TILE;
        let hd = self.head_dim;
        for (k, v) in self.k.iter_mut().zip(&mut self.v) {
            k.reserve_exact(cap * hd - k.len());
            k.resize(cap * hd, 0);
            v.reserve_exact(cap * hd - v.len());
            v.resize(cap * hd, 0);
        }
        self.cap = cap;
    }

    /// Stores position `pos`'s keys and values (`[n_kv_head][head_dim]` each,
    /// f32) for `layer`, rounded to f16 (ties to even). `pos < cap` (after
    /// [`KvCache::reserve`]).
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        debug_assert!(pos < self.cap && k.len() == self.n_kv_head * hd && v.len() == k.len());
        // The layout of a one-head view.
        let view = KvView {
            k: &[],
            v: &[],
            n_kv_head: 1,
            head_dim: hd,
        };
        for (g, (kh, vh)) in k.chunks_exact(hd).zip(v.chunks_exact(hd)).enumerate() {
            let i = layer * self.n_kv_head + g;
            let kl = &mut self.k[i];
            // K is transposed into its tile: convert a piece at a time, then
            // scatter.
            let mut buf = [0u16; 64];
            for (c, piece) in kh.chunks(buf.len()).enumerate() {
                let b = &mut buf[..piece.len()];
                f16_from_f32_slice(piece, b);
                for (j, &x) in b.iter().enumerate() {
                    kl[view.k_index(pos, 0, c * 64 + j)] = x;
                }
            }
            f16_from_f32_slice(vh, &mut self.v[i][pos * hd..(pos + 1) * hd]);
        }
    }

    /// Marks `n` more positions valid (after their keys/values were written
    /// for every layer).
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.cap);
        self.len += n;
    }

    /// The attention view of KV head `g` of `layer`: a view with ONE KV
    /// head (pass head index 0 to the kernels). It covers every allocated
    /// position; the caller passes how many keys to use.
    pub(crate) fn view(&self, layer: usize, g: usize) -> KvView<'_> {
        let i = layer * self.n_kv_head + g;
        KvView {
            k: &self.k[i],
            v: &self.v[i],
            n_kv_head: 1,
            head_dim: self.head_dim,
        }
    }
}
