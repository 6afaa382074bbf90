//! The coder's integer frequency table: `n` symbols, each with frequency
//! `>= 1`, summing to exactly `2^total_bits`. A predictor fills it
//! (`predict::softmax` builds it from the model's logits by NUMERICS.md
//! section 9); the range coder only reads it.

/// Smallest and largest accepted `total_bits`.
pub const MIN_TOTAL_BITS: u32 = 24;
/// See [`MIN_TOTAL_BITS`]. Above 30, `q * mult` could overflow u64 for
/// small vocabularies, and the range coder loses precision.
pub const MAX_TOTAL_BITS: u32 = 30;
/// Default: the floor of 1 per symbol then costs at most
/// `-log2(1 - 49152 / 2^28)` = 0.00026 bits per token for a 49152 vocabulary.
pub const DEFAULT_TOTAL_BITS: u32 = 28;

/// An integer frequency table over `n` symbols with total `2^total_bits`.
#[derive(Debug, Clone)]
pub struct FreqTable {
    /// One frequency per symbol, each >= 1.
    freq: Vec<u32>,
    total_bits: u32,
}

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreqError {
    /// `total_bits` outside `MIN_TOTAL_BITS..=MAX_TOTAL_BITS`.
    #[error("total_bits {0} outside {MIN_TOTAL_BITS}..={MAX_TOTAL_BITS}")]
    TotalBits(u32),
    /// The vocabulary is empty or leaves less than half the total above the floor.
    #[error("vocabulary of {n} symbols does not fit a total of 2^{total_bits}")]
    Vocab { n: usize, total_bits: u32 },
}

impl FreqTable {
    /// A table for `n` symbols, all of frequency 1 until a predictor fills it.
    pub fn new(n: usize, total_bits: u32) -> Result<Self, FreqError> {
        if !(MIN_TOTAL_BITS..=MAX_TOTAL_BITS).contains(&total_bits) {
            return Err(FreqError::TotalBits(total_bits));
        }
        // Require n <= 2^(total_bits-1) so at least half the mass is shaped
        // by the model.
        if n == 0 || n as u64 > 1u64 << (total_bits - 1) {
            return Err(FreqError::Vocab { n, total_bits });
        }
        Ok(FreqTable {
            freq: vec![1; n],
            total_bits,
        })
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.freq.len()
    }

    /// Never true (a table has at least one symbol); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.freq.is_empty()
    }

    /// log2 of the total.
    pub fn total_bits(&self) -> u32 {
        self.total_bits
    }

    /// The total, `2^total_bits`.
    pub fn total(&self) -> u64 {
        1u64 << self.total_bits
    }

    /// The frequencies.
    pub fn freqs(&self) -> &[u32] {
        &self.freq
    }

    /// The frequencies, for a predictor to write (it must keep every one
    /// `>= 1` and their sum at [`FreqTable::total`]).
    pub fn freqs_mut(&mut self) -> &mut [u32] {
        &mut self.freq
    }

    /// `(cumulative frequency below s, frequency of s)`.
    pub fn cum_freq(&self, s: usize) -> (u64, u64) {
        // The total fits u32, so every prefix sum does.
        let cum: u32 = self.freq[..s].iter().sum();
        (cum as u64, self.freq[s] as u64)
    }

    /// The symbol whose interval holds `target` (< total), with its cum and freq.
    pub fn find(&self, target: u64) -> (usize, u64, u64) {
        // Skip whole blocks by their (vectorized) sums, then scan one block.
        const BLOCK: usize = 256;
        let mut cum = 0u64;
        let mut base = 0usize;
        for block in self.freq.chunks(BLOCK) {
            let sum: u32 = block.iter().sum();
            if target < cum + sum as u64 {
                break;
            }
            cum += sum as u64;
            base += block.len();
        }
        for (s, &f) in self.freq.iter().enumerate().skip(base) {
            let next = cum + f as u64;
            if target < next {
                return (s, cum, f as u64);
            }
            cum = next;
        }
        // Unreachable for target < total; the last symbol is a safe answer.
        let last = self.freq.len() - 1;
        (last, cum - self.freq[last] as u64, self.freq[last] as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_parameters() {
        assert!(FreqTable::new(10, 23).is_err());
        assert!(FreqTable::new(10, 31).is_err());
        assert!(FreqTable::new(0, 24).is_err());
        assert!(FreqTable::new((1 << 23) + 1, 24).is_err());
        assert!(FreqTable::new(1 << 23, 24).is_ok());
    }
}
