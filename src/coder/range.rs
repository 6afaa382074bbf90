//! A 64-bit range coder with carry propagation into the output buffer.
//!
//! State: `low` (u64) and `range` (u64, kept in `[2^56, 2^64)` after every
//! symbol by shifting out whole bytes). A symbol with cumulative frequency
//! `c`, frequency `f` and total `T <= 2^32` narrows the interval to
//! `low += (range / T) * c; range = (range / T) * f`. With `range >= 2^56`
//! the truncation in `range / T` costs at most `T / range <= 2^-24` of the
//! interval per symbol: far below anything measurable.
//!
//! A carry out of `low` is added into the bytes already written (a run of
//! trailing 0xFF bytes becomes 0x00 and the byte before it is incremented);
//! the final code value never exceeds the initial interval, so the carry
//! always finds a byte below 0xFF.
//!
//! Termination: the encoder writes the shortest byte string whose value, with
//! zero bytes appended forever, lies in the final interval, and then drops
//! trailing zero bytes. The decoder reads zeros past the end of its input. The
//! cost of ending a stream is therefore at most one byte.

/// Bytes are shifted out while `range < TOP`.
const TOP: u64 = 1 << 56;

/// Largest accepted total of a frequency table.
pub const MAX_TOTAL: u64 = 1 << 32;

/// Encodes symbols given as `(cum, freq, total)` into a byte vector.
#[derive(Debug, Clone)]
pub struct RangeEncoder {
    low: u64,
    range: u64,
    out: Vec<u8>,
}

impl Default for RangeEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl RangeEncoder {
    /// A fresh encoder: interval `[0, 2^64 - 1)`.
    pub fn new() -> Self {
        RangeEncoder {
            low: 0,
            range: u64::MAX,
            out: Vec::new(),
        }
    }

    /// [`RangeEncoder::encode`] of a `(cum, freq, total)` triple.
    pub fn encode_interval(&mut self, (cum, freq, total): (u64, u64, u64)) {
        self.encode(cum, freq, total);
    }

    /// Codes the symbol occupying `[cum, cum + freq)` of `total`.
    ///
    /// Requires `freq >= 1`, `cum + freq <= total <= MAX_TOTAL`.
    #[inline]
    pub fn encode(&mut self, cum: u64, freq: u64, total: u64) {
        debug_assert!(freq >= 1 && cum + freq <= total && total <= MAX_TOTAL);
        let r = self.range / total;
        let (low, carry) = self.low.overflowing_add(r * cum);
        if carry {
            self.propagate_carry();
        }
        self.low = low;
        self.range = r * freq;
        self.normalize();
    }

    /// Codes `nbits` (<= 32) raw bits of `value` with a uniform distribution.
    pub fn encode_bits(&mut self, value: u32, nbits: u32) {
        debug_assert!(nbits <= 32 && (nbits == 32 || value >> nbits == 0));
        if nbits > 0 {
            self.encode(value as u64, 1, 1u64 << nbits);
        }
    }

    #[inline]
    fn normalize(&mut self) {
        while self.range < TOP {
            self.out.push((self.low >> 56) as u8);
            self.low <<= 8;
            self.range <<= 8;
        }
    }

    fn propagate_carry(&mut self) {
        for b in self.out.iter_mut().rev() {
            let (v, overflow) = b.overflowing_add(1);
            *b = v;
            if !overflow {
                return;
            }
        }
        // The final value always lies below the initial interval's end.
        debug_assert!(false, "range coder carry out of the first byte");
    }

    /// Bytes written so far (not counting the pending state).
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// True if nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Terminates the stream and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let low = self.low as u128;
        let end = low + self.range as u128;
        // Pick v in [low, end) with the most trailing zero bytes; k = 56
        // always fits because range >= 2^56.
        for k in [64u32, 56] {
            let mask = (1u128 << k) - 1;
            let v = (low + mask) & !mask;
            if v < end {
                if v >> 64 != 0 {
                    self.propagate_carry();
                }
                let v = v as u64;
                for i in 0..(64 - k) / 8 {
                    self.out.push((v >> (56 - 8 * i)) as u8);
                }
                break;
            }
        }
        while self.out.last() == Some(&0) {
            self.out.pop();
        }
        self.out
    }
}

/// The decoder sees a corrupt stream (its state left the valid interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range coder state left its interval (corrupt payload)")]
pub struct RangeCorrupt;

/// Decodes symbols from a byte slice; reads zeros past its end.
#[derive(Debug, Clone)]
pub struct RangeDecoder<B: AsRef<[u8]>> {
    /// `value - low`: the offset of the code value inside the interval.
    code: u64,
    range: u64,
    /// `range / total` of the symbol being decoded.
    r: u64,
    input: B,
    pos: usize,
    /// Total of the symbol being decoded (for the verifying encoder).
    total: u64,
    /// Re-encodes every decoded symbol, so the end can check that the input
    /// is exactly the canonical encoding (see [`RangeDecoder::is_canonical`]).
    verify: Option<RangeEncoder>,
}

impl<B: AsRef<[u8]>> RangeDecoder<B> {
    /// Starts decoding `input` (a slice or an owned buffer).
    pub fn new(input: B) -> Self {
        let mut d = RangeDecoder {
            code: 0,
            range: u64::MAX,
            r: 1,
            input,
            pos: 0,
            total: 1,
            verify: None,
        };
        for _ in 0..8 {
            d.code = (d.code << 8) | d.next_byte() as u64;
        }
        d
    }

    /// Like [`RangeDecoder::new`], and also re-encodes every decoded symbol
    /// so that [`RangeDecoder::is_canonical`] can be asked at the end.
    pub fn new_verifying(input: B) -> Self {
        let mut d = Self::new(input);
        d.verify = Some(RangeEncoder::new());
        d
    }

    /// True if the input is byte for byte what [`RangeEncoder`] writes for
    /// the symbols decoded so far (requires [`RangeDecoder::new_verifying`]).
    ///
    /// Several byte strings decode to the same symbols (the last bytes have
    /// slack, and zero bytes may be appended); only one is canonical. Asking
    /// for it turns every altered payload into an error instead of a silent
    /// acceptance.
    pub fn is_canonical(&self) -> bool {
        match &self.verify {
            Some(enc) => enc.clone().finish() == self.input.as_ref(),
            None => false,
        }
    }

    #[inline]
    fn next_byte(&mut self) -> u8 {
        let b = self.input.as_ref().get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The target of the next symbol in `[0, total)`; then call
    /// [`RangeDecoder::consume`] with that symbol's `(cum, freq)`.
    #[inline]
    pub fn target(&mut self, total: u64) -> Result<u64, RangeCorrupt> {
        debug_assert!((1..=MAX_TOTAL).contains(&total));
        self.r = self.range / total;
        self.total = total;
        // A valid stream keeps code < r * total <= range.
        let t = self.code / self.r;
        if t >= total {
            return Err(RangeCorrupt);
        }
        Ok(t)
    }

    /// Removes the symbol `[cum, cum + freq)` chosen from the last target.
    #[inline]
    pub fn consume(&mut self, cum: u64, freq: u64) {
        if let Some(enc) = &mut self.verify {
            enc.encode(cum, freq, self.total);
        }
        // cum <= target = code / r, so this cannot underflow.
        self.code -= self.r * cum;
        self.range = self.r * freq;
        while self.range < TOP {
            self.code = (self.code << 8) | self.next_byte() as u64;
            self.range <<= 8;
        }
    }

    /// Decodes `nbits` (<= 32) raw bits.
    pub fn decode_bits(&mut self, nbits: u32) -> Result<u32, RangeCorrupt> {
        if nbits == 0 {
            return Ok(0);
        }
        let v = self.target(1u64 << nbits)?;
        self.consume(v, 1);
        Ok(v as u32)
    }

    /// Bytes consumed so far, including zeros read past the end.
    pub fn position(&self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::Rng;

    /// Symbols with explicit (cum, freq, total), including extreme ones.
    fn round_trip(symbols: &[(u64, u64, u64)]) -> usize {
        let mut enc = RangeEncoder::new();
        for &(c, f, t) in symbols {
            enc.encode(c, f, t);
        }
        let bytes = enc.finish();
        let mut dec = RangeDecoder::new_verifying(&bytes[..]);
        for &(c, f, t) in symbols {
            let v = dec.target(t).unwrap();
            assert!(v >= c && v < c + f, "target {v} not in [{c}, {})", c + f);
            dec.consume(c, f);
        }
        assert!(dec.is_canonical());
        bytes.len()
    }

    #[test]
    fn empty_stream_is_empty() {
        assert_eq!(RangeEncoder::new().finish(), Vec::<u8>::new());
        assert_eq!(round_trip(&[]), 0);
    }

    #[test]
    fn random_symbols_round_trip() {
        let mut rng = Rng(0x9E3779B97F4A7C15);
        for case in 0..200 {
            let n = (rng.next_u64() % 3000) as usize;
            let bits = [1u32, 8, 16, 24, 28, 30, 32][case % 7];
            let total = 1u64 << bits;
            let syms: Vec<_> = (0..n)
                .map(|_| {
                    let f = match rng.next_u64() % 4 {
                        0 => 1,
                        1 => total,
                        2 => total - (rng.next_u64() % total).min(total - 1),
                        _ => 1 + rng.next_u64() % total,
                    };
                    let c = rng.next_u64() % (total - f + 1);
                    (c, f, total)
                })
                .collect();
            round_trip(&syms);
        }
    }

    #[test]
    fn carries_are_propagated() {
        // Always taking the top of the interval drives low towards all-ones
        // and forces long carry chains.
        let total = 1u64 << 24;
        let mut syms = vec![(total - 1, 1, total); 500];
        syms.extend(vec![(total - 2, 2, total); 500]);
        syms.extend(vec![(0, 1, total); 50]);
        syms.extend(vec![(total - 3, 3, total); 500]);
        round_trip(&syms);
    }

    #[test]
    fn size_matches_information_content() {
        // 10_000 symbols of probability 1/3 -> 10_000 * log2(3) bits.
        let syms = vec![(1u64, 1, 3); 10_000];
        let bytes = round_trip(&syms);
        let ideal = 10_000.0 * 3f64.log2() / 8.0;
        assert!((bytes as f64) < ideal + 2.0, "{bytes} vs {ideal}");
        assert!((bytes as f64) > ideal - 1.0);
    }

    #[test]
    fn raw_bits_round_trip() {
        let mut rng = Rng(7);
        let vals: Vec<(u32, u32)> = (0..1000)
            .map(|_| {
                let n = (rng.next_u64() % 33) as u32;
                let v = if n == 0 {
                    0
                } else {
                    (rng.next_u64() as u32) >> (32 - n)
                };
                (v, n)
            })
            .collect();
        let mut enc = RangeEncoder::new();
        for &(v, n) in &vals {
            enc.encode_bits(v, n);
        }
        let bytes = enc.finish();
        let mut dec = RangeDecoder::new(&bytes[..]);
        for &(v, n) in &vals {
            assert_eq!(dec.decode_bits(n).unwrap(), v);
        }
    }

    #[test]
    fn altered_payloads_are_not_canonical() {
        let total = 1u64 << 24;
        let syms: Vec<(u64, u64, u64)> = (0..200u64)
            .map(|i| ((i * 7919) % (total - 5000), 1 + (i * 104729) % 4000, total))
            .collect();
        let mut enc = RangeEncoder::new();
        for &(c, f, t) in &syms {
            enc.encode(c, f, t);
        }
        let bytes = enc.finish();
        let decodes_same = |b: &[u8]| {
            let mut dec = RangeDecoder::new_verifying(b);
            for &(c, f, t) in &syms {
                match dec.target(t) {
                    Ok(v) if v >= c && v < c + f => dec.consume(c, f),
                    _ => return None,
                }
            }
            Some(dec.is_canonical())
        };
        assert_eq!(decodes_same(&bytes), Some(true));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decodes_same(&longer), Some(false));
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                // Either the symbols change, or the bytes are not canonical.
                assert_ne!(decodes_same(&b), Some(true), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(99);
        for _ in 0..200 {
            let bytes: Vec<u8> = (0..(rng.next_u64() % 64))
                .map(|_| rng.next_u64() as u8)
                .collect();
            let mut dec = RangeDecoder::new(&bytes[..]);
            for _ in 0..200 {
                let total = 1 + rng.next_u64() % MAX_TOTAL;
                match dec.target(total) {
                    Ok(t) => dec.consume(t, 1),
                    Err(RangeCorrupt) => break,
                }
            }
        }
    }
}
