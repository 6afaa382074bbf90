//! The KV cache as attention reads it ([`KvView`]), the attention kernels'
//! scratch buffers ([`AttnScratch`]).

use super::KV_TILE;

/// One layer of one sequence's KV cache, as attention reads it.
///
/// K and V are int8 rows with one f32 scale per (position, head)
/// (NUMERICS.md section 7: [`super::scalar::quant_head`] applied to the whole head
/// row when the token is cached). About 140 bytes per position and head of
/// 64 dimensions instead of 256 (f16) or 512 (f32): attention at long
/// context is bound by streaming the cache.
///
/// With `d4 = ceil(head_dim / 4)` groups of 4 dimensions (a missing
/// dimension of the last group holds 0):
/// - `k`: tiles of [`KV_TILE`] positions, `[tile][n_kv_head][d4][KV_TILE][4]`:
///   position `t`, head `g`, dim `d` is at
///   `(((t / 16 * n_kv_head + g) * d4 + d / 4) * 16 + t % 16) * 4 + d % 4`.
///   One 64-byte group holds 4 dimensions of 16 keys, the operand of one
///   4-way integer dot instruction (`vpdpbusd`, `sdot`) per query.
/// - `dk`: K scale, `[tile][n_kv_head][KV_TILE]` ([`KvView::dk_index`]).
/// - `v`: `[pos][n_kv_head][head_dim]`.
/// - `dv`: V scale, `[pos][n_kv_head]`.
#[derive(Debug, Clone, Copy)]
pub struct KvView<'a> {
    pub k: &'a [i8],
    pub dk: &'a [f32],
    pub v: &'a [i8],
    pub dv: &'a [f32],
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Sliding-window attention (NUMERICS.md section 7): a query that sees
    /// keys `0..n` attends only to the last `window` of them, `n -
    /// window..n` (the others get weight 0); 0 means no window.
    pub window: usize,
}

impl<'a> KvView<'a> {
    /// The memory an attention over positions `0..keys` of this view reads,
    /// in the order it reads it: K tiles, K scales, V rows, V scales (every
    /// head of the view; for prefetching).
    pub fn read_regions(&self, keys: usize) -> [&'a [u8]; 4] {
        let tiles = keys.div_ceil(KV_TILE) * self.n_kv_head;
        let rows = keys * self.n_kv_head;
        let k = &self.k[..(tiles * self.k_tile_bytes()).min(self.k.len())];
        let dk = &self.dk[..(tiles * KV_TILE).min(self.dk.len())];
        let v = &self.v[..(rows * self.head_dim).min(self.v.len())];
        let dv = &self.dv[..rows.min(self.dv.len())];
        [
            crate::mem::bytes(k),
            crate::mem::bytes(dk),
            crate::mem::bytes(v),
            crate::mem::bytes(dv),
        ]
    }

    /// The memory an attention of queries seeing keys `0..first_n` to
    /// `0..last_n` reads (`first_n <= last_n`): [`KvView::read_regions`]
    /// without the whole tiles a sliding window masks for all of them.
    pub fn attended_regions(&self, first_n: usize, last_n: usize) -> [&'a [u8]; 4] {
        let skip = self.first_key(first_n) / KV_TILE;
        self.skip_tiles(skip)
            .read_regions(last_n.saturating_sub(skip * KV_TILE))
    }

    /// An empty view with this shape (for its index functions).
    pub fn layout(n_kv_head: usize, head_dim: usize) -> KvView<'static> {
        KvView {
            k: &[],
            dk: &[],
            v: &[],
            dv: &[],
            n_kv_head,
            head_dim,
            window: 0,
        }
    }
    /// Groups of 4 dimensions per K row.
    #[inline(always)]
    pub fn d4(&self) -> usize {
        self.head_dim.div_ceil(4)
    }
    /// Bytes of K per tile and head: `d4 * 64`.
    #[inline(always)]
    pub fn k_tile_bytes(&self) -> usize {
        self.d4() * KV_TILE * 4
    }
    /// Index of K element (position `t`, head `g`, dim `d`).
    #[inline(always)]
    pub fn k_index(&self, t: usize, g: usize, d: usize) -> usize {
        (((t / KV_TILE * self.n_kv_head + g) * self.d4() + d / 4) * KV_TILE + t % KV_TILE) * 4
            + d % 4
    }
    /// Index of the K scale of position `t`, head `g`.
    #[inline(always)]
    pub fn dk_index(&self, t: usize, g: usize) -> usize {
        (t / KV_TILE * self.n_kv_head + g) * KV_TILE + t % KV_TILE
    }
    /// Index of V element (position `t`, head `g`, dim `d`).
    #[inline(always)]
    pub fn v_index(&self, t: usize, g: usize, d: usize) -> usize {
        (t * self.n_kv_head + g) * self.head_dim + d
    }
    /// Index of the V scale of position `t`, head `g`.
    #[inline(always)]
    pub fn dv_index(&self, t: usize, g: usize) -> usize {
        t * self.n_kv_head + g
    }
    /// The first key a query that sees keys `0..n_keys` attends to: `n_keys
    /// - window` with a window (saturating), else 0.
    #[inline(always)]
    pub fn first_key(&self, n_keys: usize) -> usize {
        if self.window == 0 {
            0
        } else {
            n_keys.saturating_sub(self.window)
        }
    }

    /// The view without its first `tiles` K tiles (`16 * tiles` positions):
    /// position `t` of the result is position `t + 16 * tiles` of `self`.
    /// Used to skip keys a sliding window masks: a masked key's weight is
    /// exactly 0 and whole tiles of zeros change neither `sum16` (striped
    /// lanes of 16) nor an fma chain, so the result is the same bits.
    pub fn skip_tiles(&self, tiles: usize) -> KvView<'a> {
        let pos = tiles * KV_TILE;
        let nkv = self.n_kv_head;
        KvView {
            k: &self.k[(tiles * nkv * self.k_tile_bytes()).min(self.k.len())..],
            dk: &self.dk[(pos * nkv).min(self.dk.len())..],
            v: &self.v[(pos * nkv * self.head_dim).min(self.v.len())..],
            dv: &self.dv[(pos * nkv).min(self.dv.len())..],
            ..*self
        }
    }

    /// Panics unless the view holds keys `0..n_keys` (whole K tiles) of
    /// every head.
    pub(crate) fn check(&self, n_keys: usize) {
        let tiles = n_keys.div_ceil(KV_TILE);
        let nkv = self.n_kv_head;
        assert!(self.k.len() >= tiles * nkv * self.k_tile_bytes());
        assert!(self.dk.len() >= tiles * nkv * KV_TILE);
        assert!(self.v.len() >= n_keys * nkv * self.head_dim);
        assert!(self.dv.len() >= n_keys * nkv);
    }
}

/// Reusable buffers of the attention kernels (grow to the largest call).
#[derive(Debug, Default, Clone)]
pub struct AttnScratch {
    /// Scores and weights.
    pub(crate) f: Vec<f32>,
    /// Quantized queries.
    pub(crate) q: Vec<i8>,
    /// Quantized queries as 4-byte words.
    pub(crate) w: Vec<u32>,
}

impl AttnScratch {
    pub const fn new() -> AttnScratch {
        AttnScratch {
            f: Vec::new(),
            q: Vec::new(),
            w: Vec::new(),
        }
    }
}
