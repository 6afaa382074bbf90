//! The model's own distribution as the coder's table: logits -> integer
//! frequencies (docs/NUMERICS.md section 9). This is the identity predictor:
//! it adds nothing to the model and keeps no state between tokens.
//!
//! The encoder and the decoder must build the same table bit for bit from the
//! same logits. After one `exp` per symbol (the pinned `exp` of NUMERICS.md
//! section 5) everything is integer arithmetic with one fixed rule:
//!
//! ```text
//! m    = max of the non-NaN logits                      (exact, order-free)
//! q_i  = trunc(exp(l_i - m) * 2^30) as u32              (0 for NaN logits)
//!        (if m is not finite: q_i = 1 for every i, a uniform table)
//! S    = sum q_i                                        (u64, exact)
//! R    = 2^total_bits - n                               (mass above the floor)
//! mult = floor(R * 2^32 / S)                            (u64)
//! f_i  = 1 + ((q_i * mult) >> 32)                       (u64 product, < 2^62)
//! f_a += 2^total_bits - sum f_i   where a = lowest index with maximal q
//! ```
//!
//! Every symbol gets at least 1, the total is exactly `2^total_bits`, and
//! `sum f_i <= n + R` because `q_i * mult / 2^32 <= q_i * R / S`. The
//! truncations lose less than `n + R/mult` counts, which all go to the most
//! probable symbol.

//!
//! The rule is computed by the kernels (`Kernels::freq_table`, one body
//! compiled per variant), so `LLMC_KERNEL` governs it like the model.

use super::Predictor;
use crate::coder::{FreqError, FreqTable, Interval};
use crate::kernels::Kernels;

/// The identity predictor: the coder's table is the softmax of the logits.
#[derive(Debug, Clone)]
pub struct Softmax {
    kernels: Kernels,
    table: FreqTable,
    /// Scratch: fixed-point `exp(l_i - m)` per symbol.
    q: Vec<u32>,
}

impl Softmax {
    /// A predictor over `vocab` symbols with tables of total `2^total_bits`,
    /// computed with `kernels`.
    pub fn new(kernels: Kernels, vocab: usize, total_bits: u32) -> Result<Softmax, FreqError> {
        Ok(Softmax {
            kernels,
            table: FreqTable::new(vocab, total_bits)?,
            q: vec![0; vocab],
        })
    }

    /// The table of the last [`Predictor::predict`].
    pub fn table(&self) -> &FreqTable {
        &self.table
    }

    /// `token`'s interval in the table of one row of `logits`: a pure
    /// function of the row and the token (so rows may be done in parallel).
    pub fn interval(&mut self, logits: &[f32], token: u32) -> Interval {
        let t = self.predict(logits);
        let (c, f) = t.cum_freq(token as usize);
        (c, f, t.total())
    }
}

impl Predictor for Softmax {
    /// Rebuilds the table from one row of logits (`logits.len() == vocab`).
    fn predict(&mut self, logits: &[f32]) -> &FreqTable {
        let total_bits = self.table.total_bits();
        self.kernels
            .freq_table(logits, &mut self.q, self.table.freqs_mut(), total_bits);
        &self.table
    }

    /// Nothing to learn: the table depends on the row alone.
    fn update(&mut self, _token: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax64(l: &[f32]) -> Vec<f64> {
        let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = l.iter().map(|&x| (x as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    }

    fn check_invariants(tab: &FreqTable) {
        let sum: u64 = tab.freqs().iter().map(|&f| f as u64).sum();
        assert_eq!(sum, tab.total());
        assert!(tab.freqs().iter().all(|&f| f >= 1));
    }

    #[test]
    fn total_and_floor_hold() {
        let mut t = Softmax::new(Kernels::best(), 1000, 24).unwrap();
        let mut x = 12345u32;
        for _ in 0..20 {
            let logits: Vec<f32> = (0..1000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x % 4000) as f32 / 100.0 - 20.0
                })
                .collect();
            let tab = t.predict(&logits);
            check_invariants(tab);
        }
    }

    #[test]
    fn close_to_softmax() {
        let n = 4096;
        let logits: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 50.0).collect();
        let mut t = Softmax::new(Kernels::best(), n, 28).unwrap();
        let tab = t.predict(&logits);
        check_invariants(tab);
        let p = softmax64(&logits);
        // KL(p || f/T) in bits must be tiny.
        let kl: f64 = p
            .iter()
            .zip(tab.freqs())
            .map(|(&pi, &f)| pi * (pi / (f as f64 / tab.total() as f64)).log2())
            .sum();
        assert!(kl < 1e-4, "kl {kl}");
    }

    #[test]
    fn degenerate_rows() {
        let mut t = Softmax::new(Kernels::best(), 10, 24).unwrap();
        for row in [
            vec![f32::NAN; 10],
            vec![f32::NEG_INFINITY; 10],
            {
                let mut v = vec![0.0; 10];
                v[3] = f32::INFINITY;
                v
            },
            {
                let mut v = vec![f32::NAN; 10];
                v[7] = -1.0e30;
                v
            },
            vec![f32::MAX; 10],
            vec![-f32::MAX; 10],
        ] {
            let tab = t.predict(&row);
            check_invariants(tab);
        }
        // Uniform fallback: the leftover goes to symbol 0.
        let tab = t.predict(&[f32::NAN; 10]);
        assert!(tab.freqs()[1..].iter().all(|&f| f == tab.freqs()[1]));
        assert!(tab.freqs()[0] >= tab.freqs()[1]);
        // One dominant symbol gets almost everything.
        let mut v = vec![-100.0; 10];
        v[7] = 0.0;
        let tab = t.predict(&v);
        assert_eq!(tab.freqs()[7] as u64, tab.total() - 9);
    }

    #[test]
    fn ties_give_leftover_to_lowest_index() {
        let mut t = Softmax::new(Kernels::best(), 3, 24).unwrap();
        let tab = t.predict(&[1.0, 2.0, 2.0]);
        check_invariants(tab);
        assert!(tab.freqs()[1] >= tab.freqs()[2]);
    }

    #[test]
    fn find_inverts_cum_freq() {
        let mut t = Softmax::new(Kernels::best(), 300, 24).unwrap();
        let logits: Vec<f32> = (0..300).map(|i| ((i * 31) % 17) as f32 * 0.7).collect();
        let tab = t.predict(&logits);
        for s in 0..300 {
            let (c, f) = tab.cum_freq(s);
            assert_eq!(tab.find(c), (s, c, f));
            assert_eq!(tab.find(c + f - 1), (s, c, f));
        }
    }
}
