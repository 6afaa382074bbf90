//! Quantized activations (NUMERICS.md section 2): [`QuantizedRows`] and its
//! writable parts ([`QuantPart`]).

use super::QK;
use std::ops::Range;

/// `n` activation rows of `k` values quantized per NUMERICS.md section 2:
/// `q[t * k + i]` (i8), per block `d[t * k/32 + b]` and `s[t * k/32 + b]`
/// (`s = d * sum(q)`, used by Q4 weights).
#[derive(Debug, Clone, Default)]
pub struct QuantizedRows {
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) q: Vec<i8>,
    pub(super) d: Vec<f32>,
    pub(super) s: Vec<f32>,
}

impl QuantizedRows {
    pub fn new() -> QuantizedRows {
        QuantizedRows::default()
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Values per row.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Shapes the rows for `n` rows of `k` values (`k % 32 == 0`) to be
    /// written part by part ([`QuantizedRows::parts_mut`]); values not yet
    /// written are stale.
    pub fn reshape(&mut self, n: usize, k: usize) {
        assert!(k > 0 && k % QK == 0);
        self.n = n;
        self.k = k;
        self.q.resize(n * k, 0);
        self.d.resize(n * k / QK, 0.0);
        self.s.resize(n * k / QK, 0.0);
    }

    /// Disjoint writable parts: `parts[c][t]` is row `t`'s columns
    /// `ranges[c]` (increasing, non-overlapping, bounds multiples of 32),
    /// which [`QuantPart::quantize`] fills exactly as
    /// [`crate::kernels::batch::quantize_rows`] would fill them. For
    /// threads that each produce some blocks of every row.
    pub fn parts_mut(&mut self, ranges: &[Range<usize>]) -> Vec<Vec<QuantPart<'_>>> {
        let (k, nb) = (self.k, self.k / QK);
        let mut parts: Vec<Vec<QuantPart<'_>>> =
            ranges.iter().map(|_| Vec::with_capacity(self.n)).collect();
        let rows = self
            .q
            .chunks_exact_mut(k)
            .zip(self.d.chunks_exact_mut(nb))
            .zip(self.s.chunks_exact_mut(nb));
        for ((mut q, mut d), mut s) in rows.take(self.n) {
            let mut at = 0;
            for (p, r) in parts.iter_mut().zip(ranges) {
                assert!(r.start >= at && r.start % QK == 0 && r.end % QK == 0 && r.end <= k);
                let (skip, len) = (r.start - at, r.end - r.start);
                let (qa, qb) = std::mem::take(&mut q)[skip..].split_at_mut(len);
                let (da, db) = std::mem::take(&mut d)[skip / QK..].split_at_mut(len / QK);
                let (sa, sb) = std::mem::take(&mut s)[skip / QK..].split_at_mut(len / QK);
                p.push(QuantPart {
                    q: qa,
                    d: da,
                    s: sa,
                });
                (q, d, s, at) = (qb, db, sb, r.end);
            }
        }
        parts
    }

    /// Row `t`: `(q[k], d[k/32], s[k/32])`.
    pub fn row(&self, t: usize) -> (&[i8], &[f32], &[f32]) {
        let nb = self.k / QK;
        (
            &self.q[t * self.k..(t + 1) * self.k],
            &self.d[t * nb..(t + 1) * nb],
            &self.s[t * nb..(t + 1) * nb],
        )
    }
}

/// Some columns (whole blocks) of one row of a [`QuantizedRows`]
/// ([`QuantizedRows::parts_mut`]).
#[derive(Debug)]
pub struct QuantPart<'a> {
    pub(super) q: &'a mut [i8],
    pub(super) d: &'a mut [f32],
    pub(super) s: &'a mut [f32],
}
