//! The per-sequence KV cache: f32 keys (after RoPE) and values exactly as
//! computed (NUMERICS.md section 7), in the layout of [`KvView`].

use super::Config;
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
    /// Per layer: `[cap / KV_TILE][n_kv_head][head_dim][KV_TILE]`.
    k: Vec<Vec<f32>>,
    /// Per layer: `[cap][n_kv_head][head_dim]`.
    v: Vec<Vec<f32>>,
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
            k: vec![Vec::new(); cfg.n_layer],
            v: vec![Vec::new(); cfg.n_layer],
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
        self.k.iter().chain(&self.v).map(|b| b.capacity() * 4).sum()
    }

    /// Whether this cache has the shape of `cfg`'s model.
    pub(crate) fn fits(&self, cfg: &Config) -> bool {
        self.n_layer == cfg.n_layer
            && self.n_kv_head == cfg.n_kv_head
            && self.head_dim == cfg.head_dim
            && self.max_len == cfg.context_len
    }

    fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Makes room for `new_len <= max_len` positions.
    pub(crate) fn reserve(&mut self, new_len: usize) {
        debug_assert!(new_len <= self.max_len);
        if new_len <= self.cap {
            return;
        }
        let want = new_len.max(self.cap * 2).max(64).min(self.max_len);
        let cap = want.div_ceil(KV_TILE) * KV_TILE;
        let kvd = self.kv_dim();
        for (k, v) in self.k.iter_mut().zip(&mut self.v) {
            k.reserve_exact(cap * kvd - k.len());
            k.resize(cap * kvd, 0.0);
            v.reserve_exact(cap * kvd - v.len());
            v.resize(cap * kvd, 0.0);
        }
        self.cap = cap;
    }

    /// Stores position `pos`'s keys and values (`[n_kv_head][head_dim]` each)
    /// for `layer`. `pos < cap` (after [`KvCache::reserve`]).
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let kvd = self.kv_dim();
        debug_assert!(pos < self.cap && k.len() == kvd && v.len() == kvd);
        let view = KvView {
            k: &[],
            v: &[],
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
        };
        let kl = &mut self.k[layer];
        for g in 0..self.n_kv_head {
            for d in 0..self.head_dim {
                kl[view.k_index(pos, g, d)] = k[g * self.head_dim + d];
            }
        }
        self.v[layer][pos * kvd..(pos + 1) * kvd].copy_from_slice(v);
    }

    /// Marks `n` more positions valid (after their keys/values were written
    /// for every layer).
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.cap);
        self.len += n;
    }

    /// The attention view of `layer` (covers every allocated position; the
    /// caller passes how many keys to use).
    pub(crate) fn view(&self, layer: usize) -> KvView<'_> {
        KvView {
            k: &self.k[layer],
            v: &self.v[layer],
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
        }
    }
}
