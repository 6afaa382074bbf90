//! The prefetch stream of batched attention: the memory of the caller's
//! next job, pulled into L2 a few lines at a time (timing only: no value
//! depends on it). The hint instruction is the lane type's
//! ([`Lanes::prefetch_l2`]).

use super::Lanes;

// Pacing of the prefetch (lines of 64 bytes of the caller's next job): a
// few lines per K tile of the score pass and per piece of the softmax,
// and the rest spread evenly over the first output pass. Prefetching only
// the next K, during the output pass, left memory idle during the score
// pass and softmax and made the output pass wait on V (measurements:
// docs/NUMERICS.md, "Implementation notes").

/// Lines per K tile (16 keys) of the score pass.
pub(super) const PF_TILE_LINES: usize = 8;
/// Scores per piece of the softmax's `exp`, and lines per piece.
pub(super) const PF_EXP_CHUNK: usize = 256;
pub(super) const PF_EXP_LINES: usize = 8;
/// Keys of an output pass per round of prefetches.
pub(super) const PF_KEYS: usize = 4;

/// The memory a caller's next job reads, prefetched a few 64-byte lines at
/// a time over the whole of the current job, so that the memory system
/// streams it while this job computes instead of in bursts.
pub(in crate::kernels) struct Prefetch<'a> {
    regions: &'a [&'a [u8]],
    /// Current region and byte offset in it.
    pub(in crate::kernels) r: usize,
    pub(in crate::kernels) off: usize,
    left: usize,
}

impl<'a> Prefetch<'a> {
    pub(in crate::kernels) fn new(regions: &'a [&'a [u8]]) -> Self {
        let left = regions.iter().map(|r| r.len().div_ceil(64)).sum();
        let mut p = Prefetch {
            regions,
            r: 0,
            off: 0,
            left,
        };
        p.skip_empty();
        p
    }

    /// Lines not yet prefetched.
    #[inline(always)]
    pub(in crate::kernels) fn left(&self) -> usize {
        self.left
    }

    #[inline(always)]
    fn skip_empty(&mut self) {
        while self.r < self.regions.len() && self.off >= self.regions[self.r].len() {
            self.r += 1;
            self.off = 0;
        }
    }

    /// Prefetches the next `lines` lines (fewer if the regions end).
    #[inline(always)]
    pub(in crate::kernels) fn issue<V: Lanes>(&mut self, lines: usize) {
        for _ in 0..lines.min(self.left) {
            V::prefetch_l2(&self.regions[self.r][self.off..]);
            self.off += 64;
            self.left -= 1;
            self.skip_empty();
        }
    }
}
