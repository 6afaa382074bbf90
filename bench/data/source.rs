// ===== src/coder/range.rs =====
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
// ===== src/container/mod.rs =====
//! The `.llmc` file format; docs/FORMAT.md is its prose mirror.
//!
//! A file is one or more frames, back to back (like gzip members). A frame is
//! a header, then records: model-coded chunks, stored chunks, zstd chunks,
//! and one end record carrying the original length and its xxh64 checksum.
//!
//! The reader trusts no length: every field is range-checked against caps
//! before anything is allocated, payloads are read incrementally (a claimed
//! length larger than the remaining input fails as truncation, without
//! allocating the claim), and every failure is a precise [`ContainerError`]
//! with the byte offset where it was detected.

use std::io::{self, Read, Write};

use crate::coder::{CoderKind, MAX_TOTAL_BITS, MIN_TOTAL_BITS};

/// First bytes of every frame.
pub const MAGIC: [u8; 4] = *b"LLMc";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Largest chunk length in tokens a header may declare.
pub const MAX_CHUNK_TOKENS: u32 = 1 << 16;
/// Largest original size of one stored or zstd chunk.
pub const MAX_RAW_CHUNK: u64 = 1 << 26;
/// A model chunk's payload is at most `tokens * this + MODEL_PAYLOAD_SLACK`
/// bytes: neither coder can spend 64 bits on one token.
pub const MAX_PAYLOAD_PER_TOKEN: u64 = 8;
/// See [`MAX_PAYLOAD_PER_TOKEN`].
pub const MODEL_PAYLOAD_SLACK: u64 = 16;

/// Record kind bytes.
const KIND_END: u8 = 0;
const KIND_ARITHMETIC: u8 = 1;
const KIND_RANK: u8 = 2;
const KIND_STORED: u8 = 3;
const KIND_ZSTD: u8 = 4;

/// Everything a decoder needs before the first chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// The model's fingerprint (hash over its tensors and tokenizer).
    pub fingerprint: [u8; 32],
    /// Human-readable model name, at most 255 bytes of UTF-8.
    pub model_name: String,
    /// log2 of the arithmetic coder's frequency total.
    pub total_bits: u32,
    /// Maximum tokens per model-coded chunk.
    pub chunk_tokens: u32,
}

/// One record after the frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Tokens coded with the model.
    Model {
        /// Which coder produced the payload.
        coder: CoderKind,
        /// Number of tokens (1..=chunk_tokens).
        tokens: u32,
        /// Range-coded bytes.
        payload: Vec<u8>,
    },
    /// Original bytes, verbatim.
    Stored(Vec<u8>),
    /// Original bytes as one zstd frame.
    Zstd {
        /// Length after decompression.
        original_len: u64,
        /// The zstd frame.
        payload: Vec<u8>,
    },
    /// End of frame.
    End {
        /// Total original bytes of the frame.
        original_len: u64,
        /// xxh64 (seed 0) of the frame's original bytes.
        checksum: u64,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The input does not start with the llmc magic.
    #[error("not an llmc frame: bad magic at byte {offset}")]
    BadMagic {
        /// Byte offset of the frame start.
        offset: u64,
    },
    /// A frame of a version this build cannot read.
    #[error("unsupported llmc format version {version} at byte {offset} (this build reads version {VERSION})")]
    Version {
        /// The version byte found.
        version: u8,
        /// Its offset.
        offset: u64,
    },
    /// The input ended inside a structure.
    #[error("truncated input: {what} cut off at byte {offset}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Offset where the input ended.
        offset: u64,
    },
    /// The frame header's check value does not match its contents.
    #[error("corrupt frame header at byte {offset} (header check mismatch)")]
    HeaderCheck {
        /// Offset of the frame start.
        offset: u64,
    },
    /// A varint is overlong or exceeds 64 bits.
    #[error("invalid varint for {what} at byte {offset}")]
    Varint {
        /// The field.
        what: &'static str,
        /// Its offset.
        offset: u64,
    },
    /// A field holds a value outside its allowed range.
    #[error("{what} = {value} at byte {offset} is outside {min}..={max}")]
    OutOfRange {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
        /// Offset of the field.
        offset: u64,
    },
    /// An unknown record kind byte.
    #[error("unknown chunk kind {kind} at byte {offset}")]
    ChunkKind {
        /// The byte found.
        kind: u8,
        /// Its offset.
        offset: u64,
    },
    /// The model name is not UTF-8.
    #[error("model name at byte {offset} is not UTF-8")]
    Name {
        /// Its offset.
        offset: u64,
    },
    /// Reading the input failed.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

/// Low 32 bits of xxh64 (seed 0): the frame header's check value.
fn header_check(bytes: &[u8]) -> u32 {
    xxhash_rust::xxh64::xxh64(bytes, 0) as u32
}

/// Appends `v` as LEB128 (7 bits per byte, low first).
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes `put_varint` writes for `v`.
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Serializes a frame header.
pub fn encode_header(h: &FrameHeader) -> Vec<u8> {
    assert!(
        h.model_name.len() <= 255,
        "model name longer than 255 bytes"
    );
    let mut out = Vec::with_capacity(64 + h.model_name.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(h.total_bits as u8);
    out.push(h.model_name.len() as u8);
    out.extend_from_slice(&h.fingerprint);
    out.extend_from_slice(h.model_name.as_bytes());
    put_varint(&mut out, h.chunk_tokens as u64);
    let check = header_check(&out);
    out.extend_from_slice(&check.to_le_bytes());
    out
}

/// Writes a model-coded chunk record.
pub fn write_model_chunk<W: Write>(
    w: &mut W,
    coder: CoderKind,
    tokens: u32,
    payload: &[u8],
) -> io::Result<()> {
    let mut head = Vec::with_capacity(12);
    head.push(match coder {
        CoderKind::Arithmetic => KIND_ARITHMETIC,
        CoderKind::Rank => KIND_RANK,
    });
    put_varint(&mut head, tokens as u64);
    put_varint(&mut head, payload.len() as u64);
    w.write_all(&head)?;
    w.write_all(payload)
}

/// Size of a model chunk record with this payload.
pub fn model_chunk_len(tokens: u32, payload_len: usize) -> usize {
    1 + varint_len(tokens as u64) + varint_len(payload_len as u64) + payload_len
}

/// Writes a stored chunk record (`data` non-empty, <= MAX_RAW_CHUNK).
pub fn write_stored<W: Write>(w: &mut W, data: &[u8]) -> io::Result<()> {
    let mut head = vec![KIND_STORED];
    put_varint(&mut head, data.len() as u64);
    w.write_all(&head)?;
    w.write_all(data)
}

/// Size of a stored record.
pub fn stored_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Writes a zstd chunk record.
pub fn write_zstd<W: Write>(w: &mut W, original_len: u64, payload: &[u8]) -> io::Result<()> {
    let mut head = vec![KIND_ZSTD];
    put_varint(&mut head, original_len);
    put_varint(&mut head, payload.len() as u64);
    w.write_all(&head)?;
    w.write_all(payload)
}

/// Size of a zstd record.
pub fn zstd_len(original_len: u64, payload_len: usize) -> usize {
    1 + varint_len(original_len) + varint_len(payload_len as u64) + payload_len
}

/// Writes the end record.
pub fn write_end<W: Write>(w: &mut W, original_len: u64, checksum: u64) -> io::Result<()> {
    let mut rec = vec![KIND_END];
    put_varint(&mut rec, original_len);
    rec.extend_from_slice(&checksum.to_le_bytes());
    w.write_all(&rec)
}

/// Largest zstd payload accepted for `original_len` bytes (above zstd's own
/// compress bound, so every frame zstd writes fits).
pub fn max_zstd_payload(original_len: u64) -> u64 {
    original_len + original_len / 128 + 1024
}

/// Reads frames and records from a byte stream, counting its offset.
#[derive(Debug)]
pub struct FrameReader<R: Read> {
    inner: R,
    offset: u64,
}

impl<R: Read> FrameReader<R> {
    /// Wraps a reader positioned at the start of a frame.
    pub fn new(inner: R) -> Self {
        FrameReader { inner, offset: 0 }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads up to `buf.len()` bytes; returns how many (short only at EOF).
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.offset += got as u64;
        Ok(got)
    }

    fn exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), ContainerError> {
        if self.fill(buf)? < buf.len() {
            return Err(ContainerError::Truncated {
                what,
                offset: self.offset,
            });
        }
        Ok(())
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, ContainerError> {
        let mut b = [0u8; 1];
        self.exact(&mut b, what)?;
        Ok(b[0])
    }

    /// Reads a varint; `raw` (if given) receives its bytes.
    fn varint(
        &mut self,
        what: &'static str,
        mut raw: Option<&mut Vec<u8>>,
    ) -> Result<u64, ContainerError> {
        let start = self.offset;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte(what)?;
            if let Some(r) = raw.as_deref_mut() {
                r.push(b);
            }
            let bits = (b & 0x7f) as u64;
            // The tenth byte may only hold the top bit of a u64.
            if i == 9 && bits > 1 {
                break;
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                // Reject overlong forms (a final zero byte after the first).
                if i > 0 && b == 0 {
                    break;
                }
                return Ok(v);
            }
        }
        Err(ContainerError::Varint {
            what,
            offset: start,
        })
    }

    fn ranged(
        &mut self,
        what: &'static str,
        min: u64,
        max: u64,
        raw: Option<&mut Vec<u8>>,
    ) -> Result<u64, ContainerError> {
        let offset = self.offset;
        let value = self.varint(what, raw)?;
        if value < min || value > max {
            return Err(ContainerError::OutOfRange {
                what,
                value,
                min,
                max,
                offset,
            });
        }
        Ok(value)
    }

    /// Reads `len` bytes, allocating only as data actually arrives.
    fn payload(&mut self, len: u64, what: &'static str) -> Result<Vec<u8>, ContainerError> {
        let mut v = Vec::with_capacity(len.min(1 << 20) as usize);
        let got = (&mut self.inner).take(len).read_to_end(&mut v)?;
        self.offset += got as u64;
        if (got as u64) < len {
            return Err(ContainerError::Truncated {
                what,
                offset: self.offset,
            });
        }
        Ok(v)
    }

    /// Reads a frame header; `Ok(None)` at a clean end of input.
    pub fn read_header(&mut self) -> Result<Option<FrameHeader>, ContainerError> {
        let start = self.offset;
        let mut raw = Vec::with_capacity(64);
        let mut magic = [0u8; 4];
        let got = self.fill(&mut magic)?;
        if got == 0 {
            return Ok(None);
        }
        if got < 4 || magic != MAGIC {
            // A short tail that is a prefix of the magic is a truncated frame.
            if got < 4 && magic[..got] == MAGIC[..got] {
                return Err(ContainerError::Truncated {
                    what: "frame magic",
                    offset: self.offset,
                });
            }
            return Err(ContainerError::BadMagic { offset: start });
        }
        raw.extend_from_slice(&magic);
        let version = self.byte("frame version")?;
        raw.push(version);
        if version != VERSION {
            return Err(ContainerError::Version {
                version,
                offset: start + 4,
            });
        }
        // total_bits (1), name length (1), fingerprint (32).
        let mut fixed = [0u8; 34];
        self.exact(&mut fixed, "frame header")?;
        raw.extend_from_slice(&fixed);
        let total_bits = fixed[0] as u32;
        let name_len = fixed[1] as usize;
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(&fixed[2..34]);
        let name_offset = self.offset;
        let mut name = vec![0u8; name_len];
        self.exact(&mut name, "model name")?;
        raw.extend_from_slice(&name);
        let chunk_tokens =
            self.ranged("chunk tokens", 1, MAX_CHUNK_TOKENS as u64, Some(&mut raw))?;
        let mut check = [0u8; 4];
        self.exact(&mut check, "frame header check")?;
        if u32::from_le_bytes(check) != header_check(&raw) {
            return Err(ContainerError::HeaderCheck { offset: start });
        }
        // Only now, with the header known to be intact, judge its values.
        if !(MIN_TOTAL_BITS..=MAX_TOTAL_BITS).contains(&total_bits) {
            return Err(ContainerError::OutOfRange {
                what: "total bits",
                value: total_bits as u64,
                min: MIN_TOTAL_BITS as u64,
                max: MAX_TOTAL_BITS as u64,
                offset: start + 5,
            });
        }
        let model_name = String::from_utf8(name).map_err(|_| ContainerError::Name {
            offset: name_offset,
        })?;
        Ok(Some(FrameHeader {
            fingerprint,
            model_name,
            total_bits,
            chunk_tokens: chunk_tokens as u32,
        }))
    }

    /// Reads the next record of a frame with header `h`.
    pub fn read_record(&mut self, h: &FrameHeader) -> Result<Record, ContainerError> {
        let offset = self.offset;
        let kind = self.byte("chunk kind")?;
        match kind {
            KIND_ARITHMETIC | KIND_RANK => {
                let tokens = self.ranged("chunk token count", 1, h.chunk_tokens as u64, None)?;
                let max = tokens * MAX_PAYLOAD_PER_TOKEN + MODEL_PAYLOAD_SLACK;
                let len = self.ranged("chunk payload length", 0, max, None)?;
                let payload = self.payload(len, "model chunk payload")?;
                let coder = if kind == KIND_ARITHMETIC {
                    CoderKind::Arithmetic
                } else {
                    CoderKind::Rank
                };
                Ok(Record::Model {
                    coder,
                    tokens: tokens as u32,
                    payload,
                })
            }
            KIND_STORED => {
                let len = self.ranged("stored chunk length", 1, MAX_RAW_CHUNK, None)?;
                Ok(Record::Stored(self.payload(len, "stored chunk")?))
            }
            KIND_ZSTD => {
                let original_len =
                    self.ranged("zstd chunk original length", 1, MAX_RAW_CHUNK, None)?;
                let max = max_zstd_payload(original_len);
                let len = self.ranged("zstd chunk payload length", 1, max, None)?;
                let payload = self.payload(len, "zstd chunk payload")?;
                Ok(Record::Zstd {
                    original_len,
                    payload,
                })
            }
            KIND_END => {
                let original_len = self.varint("frame original length", None)?;
                let mut c = [0u8; 8];
                self.exact(&mut c, "frame checksum")?;
                Ok(Record::End {
                    original_len,
                    checksum: u64::from_le_bytes(c),
                })
            }
            _ => Err(ContainerError::ChunkKind { kind, offset }),
        }
    }
}

#[cfg(test)]
mod tests;
// ===== src/tokenizer/pretokenize.rs =====
//! The pre-tokenizer: cuts input bytes into pre-tokens, each of which is
//! then BPE-encoded on its own.
//!
//! The rule (part of the file format; see the module documentation of
//! [`crate::tokenizer`]) is, in order:
//!
//! 1. Split the bytes into maximal runs of well-formed UTF-8 and single
//!    bytes that are not part of any well-formed UTF-8 character: scanning
//!    left to right, a byte that does not start a well-formed UTF-8 sequence
//!    (Unicode Table 3-7) is a pre-token of its own. Each valid run is
//!    split by steps 2 and 3 independently (a run's end is an end of text).
//! 2. Every `\p{N}` character is a pre-token of its own and ends the text
//!    around it (the "digits, individually" split).
//! 3. The text between them is split by the GPT-2 pattern, matched
//!    leftmost-first, repeatedly, as a backtracking engine does:
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//!
//! `\p{L}`, `\p{N}` and `\s` (= `\p{White_Space}`) are the Unicode tables of
//! the `regex-syntax` crate (Unicode 16.0 in 0.8.12; `Cargo.lock` pins it).
//! Those three classes are disjoint. The scanner below is a hand-written
//! equivalent of the pattern; the tests hold it against `fancy-regex`.

use std::sync::OnceLock;

/// The class of a character as far as the pattern is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `\s`
    Space,
    /// everything else: `[^\s\p{L}\p{N}]`
    Other,
}

struct ClassTable {
    /// Class of each ASCII character.
    ascii: [Class; 128],
    /// Sorted, disjoint, inclusive code-point ranges of the non-`Other`
    /// classes; a code point in none of them is `Other`.
    ranges: Vec<(u32, u32, Class)>,
}

/// Ranges of a Unicode class expression, read from `regex-syntax`.
fn unicode_class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class as HirClass, HirKind};
    // The patterns are fixed literals; failing to parse them is a bug in
    // this file, not a property of any input.
    let hir = regex_syntax::Parser::new()
        .parse(pattern)
        .expect("fixed class pattern parses");
    match hir.kind() {
        HirKind::Class(HirClass::Unicode(cls)) => cls
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
        other => panic!("{pattern} did not parse to a Unicode class: {other:?}"),
    }
}

fn class_table() -> &'static ClassTable {
    static TABLE: OnceLock<ClassTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut ranges = Vec::new();
        for (pattern, class) in [
            (r"\p{L}", Class::Letter),
            (r"\p{N}", Class::Number),
            (r"\s", Class::Space),
        ] {
            ranges.extend(
                unicode_class_ranges(pattern)
                    .into_iter()
                    .map(|(a, b)| (a, b, class)),
            );
        }
        ranges.sort_unstable_by_key(|r| r.0);
        for w in ranges.windows(2) {
            // General categories L and N are disjoint, and White_Space
            // characters are Zs/Zl/Zp/Cc; an overlap would make the class of
            // a character ambiguous.
            assert!(w[0].1 < w[1].0, "Unicode classes overlap: {w:?}");
        }
        let mut ascii = [Class::Other; 128];
        for (c, slot) in ascii.iter_mut().enumerate() {
            *slot = lookup(&ranges, c as u32);
        }
        ClassTable { ascii, ranges }
    })
}

fn lookup(ranges: &[(u32, u32, Class)], c: u32) -> Class {
    // Index of the first range starting after `c`; the one before it is the
    // only candidate.
    let i = ranges.partition_point(|r| r.0 <= c);
    match i.checked_sub(1).map(|j| ranges[j]) {
        Some((_, end, class)) if c <= end => class,
        _ => Class::Other,
    }
}

/// The pattern class of `c`.
#[cfg(test)]
pub(crate) fn class_of(c: char) -> Class {
    let t = class_table();
    let u = c as u32;
    if u < 128 {
        t.ascii[u as usize]
    } else {
        lookup(&t.ranges, u)
    }
}

/// Iterator over the pre-tokens of arbitrary bytes, in order; the
/// pre-tokens concatenate to the input.
pub(crate) struct PreTokens<'a> {
    bytes: &'a [u8],
    /// Start of the next pre-token.
    pos: usize,
    /// The well-formed UTF-8 run containing `pos` (from its start), valid
    /// while `pos < run_end`.
    run: &'a str,
    run_start: usize,
    run_end: usize,
    table: &'static ClassTable,
}

impl<'a> PreTokens<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        PreTokens {
            bytes,
            pos: 0,
            run: "",
            run_start: 0,
            run_end: 0,
            table: class_table(),
        }
    }

    #[inline]
    fn class(&self, c: char) -> Class {
        let u = c as u32;
        if u < 128 {
            self.table.ascii[u as usize]
        } else {
            lookup(&self.table.ranges, u)
        }
    }
}

impl<'a> Iterator for PreTokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        if self.pos >= self.run_end {
            let rest = &self.bytes[self.pos..];
            let valid = match std::str::from_utf8(rest) {
                Ok(s) => s,
                Err(e) => {
                    let n = e.valid_up_to();
                    if n == 0 {
                        // No well-formed character starts here: this byte
                        // is a pre-token by itself.
                        self.pos += 1;
                        return Some(&rest[..1]);
                    }
                    // The prefix up to `n` was just validated by from_utf8.
                    std::str::from_utf8(&rest[..n]).unwrap_or_default()
                }
            };
            self.run = valid;
            self.run_start = self.pos;
            self.run_end = self.pos + valid.len();
        }
        let start = self.pos - self.run_start;
        let end = piece_end(self, self.run, start);
        self.pos = self.run_start + end;
        Some(&self.bytes[self.run_start + start..self.pos])
    }
}

/// First character of `s[i..]` and its length in bytes.
#[inline]
fn char_at(s: &str, i: usize) -> Option<(char, usize)> {
    s.get(i..)
        .and_then(|t| t.chars().next())
        .map(|c| (c, c.len_utf8()))
}

/// End of the maximal run of characters of class `class` starting at `i`.
#[inline]
fn run_end(p: &PreTokens<'_>, s: &str, mut i: usize, class: Class) -> usize {
    let b = s.as_bytes();
    while i < b.len() {
        if b[i] < 128 {
            if p.table.ascii[b[i] as usize] != class {
                break;
            }
            i += 1;
        } else {
            match char_at(s, i) {
                Some((c, n)) if p.class(c) == class => i += n,
                _ => break,
            }
        }
    }
    i
}

/// Length of a contraction suffix (`s t re ve m ll d`) at the start of `b`.
#[inline]
fn contraction_len(b: &[u8]) -> Option<usize> {
    match b {
        [b's' | b't' | b'm' | b'd', ..] => Some(1),
        [b'r' | b'v', b'e', ..] | [b'l', b'l', ..] => Some(2),
        _ => None,
    }
}

/// End of the pre-token that starts at byte `i` (< `s.len()`, on a char
/// boundary) of the valid run `s`.
fn piece_end(p: &PreTokens<'_>, s: &str, i: usize) -> usize {
    let Some((c, n)) = char_at(s, i) else {
        return s.len();
    };
    match p.class(c) {
        // Step 2: a number character stands alone.
        Class::Number => i + n,
        Class::Letter => run_end(p, s, i, Class::Letter),
        Class::Other => {
            // `'s|'t|'re|'ve|'m|'ll|'d` come first in the alternation.
            if c == '\'' {
                if let Some(k) = contraction_len(&s.as_bytes()[i + 1..]) {
                    return i + 1 + k;
                }
            }
            run_end(p, s, i, Class::Other)
        }
        Class::Space => {
            // ` ?\p{L}+` and ` ?[^\s\p{L}\p{N}]+` with the optional space.
            // (` ?\p{N}+` cannot take the space: numbers end the text.)
            if c == ' ' {
                if let Some((c2, _)) = char_at(s, i + 1) {
                    match p.class(c2) {
                        Class::Letter => return run_end(p, s, i + 1, Class::Letter),
                        Class::Other => return run_end(p, s, i + 1, Class::Other),
                        Class::Number | Class::Space => {}
                    }
                }
            }
            let j = run_end(p, s, i, Class::Space);
            match char_at(s, j) {
                // `\s+(?!\S)` at the end of the text (a number character
                // or the end of the run ends the text).
                None => j,
                Some((c2, _)) if p.class(c2) == Class::Number => j,
                // Followed by a non-space: `\s+(?!\S)` backtracks by one
                // character if that leaves at least one; else `\s+`.
                Some(_) => {
                    let last = s[..j].chars().next_back().map_or(0, char::len_utf8);
                    if j - last > i {
                        j - last
                    } else {
                        j
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(b: &[u8]) -> Vec<&[u8]> {
        PreTokens::new(b).collect()
    }

    fn split_str(s: &str) -> Vec<&str> {
        PreTokens::new(s.as_bytes())
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect()
    }

    #[test]
    fn classes() {
        assert_eq!(class_of('a'), Class::Letter);
        assert_eq!(class_of('中'), Class::Letter);
        assert_eq!(class_of('ǅ'), Class::Letter); // Lt
        assert_eq!(class_of('7'), Class::Number);
        assert_eq!(class_of('½'), Class::Number); // No
        assert_eq!(class_of('Ⅻ'), Class::Number); // Nl
        assert_eq!(class_of('٣'), Class::Number); // Nd
        assert_eq!(class_of('\u{0b}'), Class::Space);
        assert_eq!(class_of('\u{85}'), Class::Space);
        assert_eq!(class_of('\u{a0}'), Class::Space);
        assert_eq!(class_of('\u{3000}'), Class::Space);
        assert_eq!(class_of('\u{200b}'), Class::Other); // Cf, not White_Space
        assert_eq!(class_of('\u{1c}'), Class::Other);
        assert_eq!(class_of('\u{301}'), Class::Other); // combining mark
        assert_eq!(class_of('\''), Class::Other);
        assert_eq!(class_of('😀'), Class::Other);
    }

    #[test]
    fn examples() {
        assert_eq!(split_str(""), Vec::<&str>::new());
        assert_eq!(
            split_str("Hello  world's 123 x\n\n y"),
            ["Hello", " ", " world", "'s", " ", "1", "2", "3", " x", "\n\n", " y"]
        );
        assert_eq!(split_str("a  \t1"), ["a", "  \t", "1"]);
        assert_eq!(split_str("  \na"), ["  ", "\n", "a"]);
        assert_eq!(split_str(" 'steve IT'S"), [" '", "steve", " IT", "'", "S"]);
        assert_eq!(split_str("?'s x"), ["?'", "s", " x"]);
        assert_eq!(split_str("   "), ["   "]);
        assert_eq!(split_str("a\r\nb"), ["a", "\r", "\n", "b"]);
        assert_eq!(split_str("x '"), ["x", " '"]);
    }

    #[test]
    fn invalid_bytes_stand_alone() {
        // E2 82 is an incomplete 3-byte sequence, FF never occurs, 80 is a
        // stray continuation byte; "ab" runs are split on their own.
        let input = b"ab\xe2\x82cd\xff\x80 e\xf0\x9f\x98\x80";
        assert_eq!(
            split(input),
            [
                &b"ab"[..],
                b"\xe2",
                b"\x82",
                b"cd",
                b"\xff",
                b"\x80",
                b" e",
                "😀".as_bytes()
            ]
        );
        // A run boundary ends the text for the lookahead: the two spaces
        // before the invalid byte form one pre-token.
        assert_eq!(split(b"a  \xffb"), [&b"a"[..], b"  ", b"\xff", b"b"]);
    }
}
// ===== src/codec/encode.rs =====
//! Compression: segments -> chunks -> model -> coder -> records.

use std::io::{Read, Write};

use rayon::prelude::*;
use xxhash_rust::xxh64::Xxh64;

use super::segment::{looks_binary, plan_chunks, Segmenter};
use super::{
    check_parameters, kernels, no_progress, report, CodecError, CompressOptions, CountingWriter,
    LanguageModel, ModelIdentity, Progress, ProgressFn, TextTokenizer,
};
use crate::coder::Interval;
use crate::container::{self, FrameHeader, MAX_RAW_CHUNK};
use crate::kernels::Kernels;
use crate::lm::parallel_rows;
use crate::predict::{ChunkEncoder, Softmax};

/// Compresses `input` into one frame.
pub fn compress<M: LanguageModel, T: TextTokenizer>(
    input: &[u8],
    model: &M,
    tokenizer: &T,
    id: &ModelIdentity,
    opts: &CompressOptions,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    compress_stream(
        input,
        &mut out,
        model,
        tokenizer,
        id,
        opts,
        &mut no_progress,
    )?;
    Ok(out)
}

/// Checks compression options against the model.
pub(super) fn check_compress_options<M: LanguageModel>(
    model: &M,
    tokenizer_vocab: usize,
    opts: &CompressOptions,
) -> Result<(), CodecError> {
    check_parameters(model, tokenizer_vocab, opts.chunk_tokens, opts.total_bits)?;
    if opts.segment_bytes == 0
        || opts.segment_bytes as u64 > MAX_RAW_CHUNK
        || opts.piece_tokens == 0
    {
        return Err(CodecError::Parameters(format!(
            "segment of {} bytes (must be 1..={MAX_RAW_CHUNK}) or piece of {} tokens (must be >= 1)",
            opts.segment_bytes, opts.piece_tokens
        )));
    }
    Ok(())
}

/// Compresses everything `reader` yields into one frame on `writer`;
/// `progress` is called after every forward pass and every chunk, and stops
/// the work when it returns `Break`. Returns the bytes written.
pub fn compress_stream<R: Read, W: Write, M: LanguageModel, T: TextTokenizer>(
    reader: R,
    writer: W,
    model: &M,
    tokenizer: &T,
    id: &ModelIdentity,
    opts: &CompressOptions,
    progress: &mut ProgressFn,
) -> Result<u64, CodecError> {
    check_compress_options(model, tokenizer.vocab_size(), opts)?;
    if id.name.len() > 255 {
        return Err(CodecError::Parameters(
            "model name longer than 255 bytes".into(),
        ));
    }
    let mut w = CountingWriter {
        inner: writer,
        count: 0,
    };
    let header = FrameHeader {
        fingerprint: id.fingerprint,
        model_name: id.name.clone(),
        total_bits: opts.total_bits,
        chunk_tokens: opts.chunk_tokens,
    };
    w.write_all(&container::encode_header(&header))?;

    let mut seg = SegmentCoder {
        model,
        tokenizer,
        opts,
        kernels: kernels(opts.kernels)?,
        logits: Vec::new(),
        state: None,
        tokens_done: 0,
    };
    let mut hasher = Xxh64::new(0);
    let mut total = 0u64;
    let mut segments = Segmenter::new(reader, opts.segment_bytes);
    while let Some(bytes) = segments.next_segment()? {
        hasher.update(bytes);
        total += bytes.len() as u64;
        // The segment's records are built in memory (at most about the
        // segment's size) so that the whole segment can fall back to one raw
        // record when that is smaller: chunk-by-chunk choices cannot see
        // redundancy across chunks (a text repeated, a binary file with
        // text-like stretches), which zstd over the whole segment does.
        let mut out = CountingWriter {
            inner: Vec::new(),
            count: w.count,
        };
        let model_chunks =
            seg.code_segment(bytes, total - bytes.len() as u64, &mut out, progress)?;
        let coded = out.inner;
        match model_chunks {
            // Already one raw run: nothing to compare.
            0 => w.write_all(&coded)?,
            _ => {
                let raw = seg.raw_record(bytes)?;
                w.write_all(if raw.len() < coded.len() {
                    &raw
                } else {
                    &coded
                })?;
            }
        }
        report(
            progress,
            Progress {
                bytes_in: total,
                bytes_out: w.count,
                tokens: seg.tokens_done,
            },
        )?;
    }
    container::write_end(&mut w, total, hasher.digest())?;
    w.flush()?;
    Ok(w.count)
}

/// Runs the model over one chunk as FORMAT.md section 5.1 prescribes:
/// feeds `chunk[..n-1]` to `state` (fresh or reset by the caller) in pieces
/// of `piece` tokens; for every token `j >= 1` calls `row(logits, chunk[j])`
/// with the `vocab` logits after token `j-1`, and after every forward pass
/// `after_pass(done)`, `done` = tokens of the chunk whose code is known
/// (the first token's included). Token 0 is the caller's business. A chunk
/// of one token makes no model call.
pub(super) fn run_chunk<M: LanguageModel>(
    model: &M,
    state: &mut M::State,
    logits: &mut Vec<f32>,
    piece: usize,
    chunk: &[u32],
    mut rows: impl FnMut(&[f32], &[u32]),
    mut after_pass: impl FnMut(usize) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let vocab = model.vocab_size();
    let fed = &chunk[..chunk.len().saturating_sub(1)];
    let piece = piece.min(fed.len()).max(1);
    if logits.len() < piece * vocab {
        logits.resize(piece * vocab, 0.0);
    }
    for (p, input) in fed.chunks(piece).enumerate() {
        // Logits after chunk[first + i] code chunk[first + i + 1].
        let first = p * piece;
        let out = &mut logits[..input.len() * vocab];
        model
            .forward(&mut [&mut *state], &[input], out)
            .map_err(|e| CodecError::Model(Box::new(e)))?;
        rows(out, &chunk[first + 1..first + 1 + input.len()]);
        after_pass(first + input.len() + 1)?;
    }
    Ok(())
}

struct SegmentCoder<'a, M: LanguageModel, T: TextTokenizer> {
    model: &'a M,
    tokenizer: &'a T,
    opts: &'a CompressOptions,
    /// Kernels of the predictor.
    kernels: Kernels,
    /// `piece_tokens * vocab` logits, allocated on first use.
    logits: Vec<f32>,
    /// The model state, reused from chunk to chunk.
    state: Option<M::State>,
    tokens_done: u64,
}

impl<M: LanguageModel, T: TextTokenizer> SegmentCoder<'_, M, T> {
    /// Codes one segment: model chunks are written as soon as they win;
    /// losing chunks accumulate into one raw run, written when a model chunk
    /// follows or the segment ends. `base_in`: input bytes before `seg`.
    /// Returns how many model chunks were written.
    fn code_segment<W: Write>(
        &mut self,
        seg: &[u8],
        base_in: u64,
        w: &mut CountingWriter<W>,
        progress: &mut ProgressFn,
    ) -> Result<usize, CodecError> {
        let mut model_chunks = 0;
        let vocab = self.model.vocab_size();
        let tokens = self.tokenizer.encode(seg);
        let n_chunk = self.opts.chunk_tokens as usize;
        let (cuts, _) = plan_chunks(self.tokenizer, &tokens, seg, n_chunk, vocab);
        let mut pos = 0usize;
        // Start of the pending raw run (bytes seg[raw_start..pos]).
        let mut raw_start = 0usize;
        for (range, bytes) in cuts {
            let chunk = &tokens[range];
            let raw = &seg[pos..pos + bytes];
            // Binary data is never worth the model's time: it goes straight
            // to the raw run (zstd or stored).
            let payload = if self.opts.skip_binary && looks_binary(raw) {
                None
            } else {
                // Progress within the chunk: bytes pro rata of tokens.
                let (at, tokens_before, out) = (base_in + pos as u64, self.tokens_done, w.count);
                let mut tick = |done: usize| {
                    report(
                        progress,
                        Progress {
                            bytes_in: at + bytes as u64 * done as u64 / chunk.len() as u64,
                            bytes_out: out,
                            tokens: tokens_before + done as u64,
                        },
                    )
                };
                Some(self.code_chunk(chunk, &mut tick)?)
            };
            self.tokens_done += chunk.len() as u64;
            // Model-coded only if strictly smaller than zstd and stored.
            let wins = match &payload {
                Some(p) => {
                    container::model_chunk_len(chunk.len() as u32, p.len()) < self.raw_len(raw)?
                }
                None => false,
            };
            if let (true, Some(payload)) = (wins, payload) {
                if raw_start < pos {
                    self.write_raw(&seg[raw_start..pos], w)?;
                }
                container::write_model_chunk(w, self.opts.coder, chunk.len() as u32, &payload)?;
                model_chunks += 1;
                raw_start = pos + bytes;
            }
            pos += bytes;
            report(
                progress,
                Progress {
                    bytes_in: base_in + pos as u64,
                    bytes_out: w.count,
                    tokens: self.tokens_done,
                },
            )?;
        }
        // Unplanned rest (only if the tokenizer misbehaved) joins the run.
        if raw_start < seg.len() {
            self.write_raw(&seg[raw_start..], w)?;
        }
        Ok(model_chunks)
    }

    /// Model-codes one chunk (FORMAT.md section 5.1): token 0 uniformly,
    /// then `c1..` from the logits after feeding `c0, .., c(n-2)` in pieces;
    /// `tick` after every forward pass.
    fn code_chunk(
        &mut self,
        chunk: &[u32],
        tick: &mut dyn FnMut(usize) -> Result<(), CodecError>,
    ) -> Result<Vec<u8>, CodecError> {
        let vocab = self.model.vocab_size();
        let mut state = self.model.fresh_state(self.state.take());
        let mut enc =
            ChunkEncoder::new(self.opts.coder, self.kernels, vocab, self.opts.total_bits)?;
        let softmax = Softmax::new(self.kernels, vocab, self.opts.total_bits)?;
        enc.encode_first(vocab, chunk[0]);
        run_chunk(
            self.model,
            &mut state,
            &mut self.logits,
            self.opts.piece_tokens,
            chunk,
            |rows, next| {
                if enc.codes_intervals() && parallel_rows() {
                    // The intervals are pure functions of (row, token):
                    // computed in parallel (a predictor per rayon job),
                    // coded in order.
                    let ivs: Vec<Interval> = rows
                        .par_chunks_exact(vocab)
                        .zip(next.par_iter())
                        .map_init(|| softmax.clone(), |p, (row, &t)| p.interval(row, t))
                        .collect();
                    for iv in ivs {
                        enc.encode_interval(iv);
                    }
                } else {
                    for (row, &t) in rows.chunks_exact(vocab).zip(next) {
                        enc.encode(row, t);
                    }
                }
            },
            tick,
        )?;
        self.state = Some(state);
        Ok(enc.finish())
    }

    fn zstd(&self, raw: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(zstd::bulk::compress(raw, self.opts.zstd_level)?)
    }

    /// Record size of the better of zstd and stored for `raw`.
    fn raw_len(&self, raw: &[u8]) -> Result<usize, CodecError> {
        let z = container::zstd_len(raw.len() as u64, self.zstd(raw)?.len());
        Ok(z.min(container::stored_len(raw.len())))
    }

    /// The better of a zstd and a stored record for `raw`, as bytes.
    fn raw_record(&self, raw: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut rec = Vec::new();
        self.write_raw(raw, &mut rec)?;
        Ok(rec)
    }

    fn write_raw<W: Write>(&self, raw: &[u8], w: &mut W) -> Result<(), CodecError> {
        let z = self.zstd(raw)?;
        if container::zstd_len(raw.len() as u64, z.len()) < container::stored_len(raw.len()) {
            container::write_zstd(w, raw.len() as u64, &z)?;
        } else {
            container::write_stored(w, raw)?;
        }
        Ok(())
    }
}
// ===== src/codec/decode.rs =====
//! Decompression: records -> chunks in flight, advanced one token per
//! batched forward pass -> bytes in file order.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use rayon::prelude::*;
use xxhash_rust::xxh64::Xxh64;

use super::{
    check_parameters, kernels, no_progress, report, short_hex, CodecError, CountingWriter,
    DecompressOptions, LanguageModel, ModelIdentity, Progress, ProgressFn, TextTokenizer,
};
use crate::coder::{CoderKind, RangeCorrupt};
use crate::container::{FrameHeader, FrameReader, Record};
use crate::kernels::Kernels;
use crate::lm::parallel_rows;
use crate::predict::ChunkDecoder;

/// Chunks in flight for a frame of `chunk_tokens`-token chunks.
pub(super) fn batch_for(opts: &DecompressOptions, per_token: usize, chunk_tokens: u32) -> usize {
    let per_chunk = per_token.saturating_mul(chunk_tokens as usize).max(1);
    opts.max_batch.min(opts.state_budget / per_chunk).max(1)
}

/// Decompresses every frame in `input`.
pub fn decompress<M: LanguageModel, T: TextTokenizer>(
    input: &[u8],
    model: &M,
    tokenizer: &T,
    id: &ModelIdentity,
    opts: &DecompressOptions,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    decompress_stream(
        input,
        &mut out,
        model,
        tokenizer,
        id,
        opts,
        &mut no_progress,
    )?;
    Ok(out)
}

/// Decompresses every frame `reader` yields onto `writer` (frames are
/// concatenated like gzip members); `progress` is called after every raw
/// record and every batched model step (one forward pass), and stops the
/// work when it returns `Break`. Returns the bytes
/// written. Output is written as it is decoded; on an error, what was
/// written may be incomplete or (checksum errors) wrong.
pub fn decompress_stream<R: Read, W: Write, M: LanguageModel, T: TextTokenizer>(
    reader: R,
    writer: W,
    model: &M,
    tokenizer: &T,
    id: &ModelIdentity,
    opts: &DecompressOptions,
    progress: &mut ProgressFn,
) -> Result<u64, CodecError> {
    let mut r = FrameReader::new(reader);
    let mut w = CountingWriter {
        inner: writer,
        count: 0,
    };
    let kernels = kernels(opts.kernels)?;
    let mut frame = 0u64;
    let mut tokens = 0u64;
    while let Some(h) = r.read_header()? {
        if h.fingerprint != id.fingerprint {
            return Err(CodecError::ModelMismatch {
                frame,
                file_name: h.model_name,
                file_hex: short_hex(&h.fingerprint),
                model_name: id.name.clone(),
                model_hex: short_hex(&id.fingerprint),
            });
        }
        check_parameters(model, tokenizer.vocab_size(), h.chunk_tokens, h.total_bits)?;
        let mut fd = FrameDecoder {
            model,
            tokenizer,
            header: &h,
            frame,
            max_batch: batch_for(opts, model.state_bytes_per_token(), h.chunk_tokens),
            kernels,
            hasher: Xxh64::new(0),
            written: 0,
            tokens: &mut tokens,
        };
        fd.run(&mut r, &mut w, progress)?;
        frame += 1;
    }
    if frame == 0 {
        return Err(CodecError::NoFrame);
    }
    w.flush()?;
    Ok(w.count)
}

/// A model chunk being decoded.
struct Slot<S> {
    /// Index of its output entry in the frame.
    entry: u64,
    dec: ChunkDecoder<Vec<u8>>,
    state: S,
    /// The next token to feed: the last one decoded.
    input: [u32; 1],
    decoded: Vec<u32>,
    want: usize,
}

/// The decoder's work in flight within one frame.
struct Flight<S> {
    /// Output entries in file order; `None` until the chunk is decoded.
    queue: VecDeque<Option<Vec<u8>>>,
    /// Entry index of `queue[0]`.
    queue_base: u64,
    /// Bytes held in `queue`.
    pending_bytes: usize,
    /// Model chunks being decoded, one token per batched step.
    active: Vec<Slot<S>>,
    /// States of finished chunks, reused by later ones.
    pool: Vec<S>,
    /// The end record's `(original_len, checksum)` once read.
    end: Option<(u64, u64)>,
    /// Records read so far (for messages).
    record: u64,
}

impl<S> Default for Flight<S> {
    fn default() -> Self {
        Flight {
            queue: VecDeque::new(),
            queue_base: 0,
            pending_bytes: 0,
            active: Vec::new(),
            pool: Vec::new(),
            end: None,
            record: 0,
        }
    }
}

/// Raw bytes buffered ahead of unfinished model chunks are capped at this.
const MAX_PENDING_BYTES: usize = 64 << 20;

struct FrameDecoder<'a, M: LanguageModel, T: TextTokenizer> {
    model: &'a M,
    tokenizer: &'a T,
    header: &'a FrameHeader,
    frame: u64,
    max_batch: usize,
    /// Kernels of the predictors.
    kernels: Kernels,
    hasher: Xxh64,
    written: u64,
    tokens: &'a mut u64,
}

impl<M: LanguageModel, T: TextTokenizer> FrameDecoder<'_, M, T> {
    fn emit<W: Write>(&mut self, w: &mut CountingWriter<W>, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        w.write_all(bytes)
    }

    /// Decodes the frame's records up to and including its end record, and
    /// checks the decoded length and checksum.
    fn run<R: Read, W: Write>(
        &mut self,
        r: &mut FrameReader<R>,
        w: &mut CountingWriter<W>,
        progress: &mut ProgressFn,
    ) -> Result<(), CodecError> {
        let mut fl = Flight::default();
        let mut logits: Vec<f32> = Vec::new();
        loop {
            self.read_ahead(r, w, &mut fl, progress)?;
            self.write_ready(w, &mut fl)?;
            if fl.active.is_empty() {
                if fl.end.is_some() {
                    break;
                }
                continue;
            }
            self.step(&mut fl.active, &mut logits)?;
            self.retire_finished(&mut fl)?;
            self.report(r, w, progress)?;
        }
        self.verify(fl.end.unwrap_or_default())
    }

    /// Reads records while there is room in the batch and the queue: model
    /// chunks join the batch in flight, raw records are decoded at once
    /// (written out if nothing is pending before them, else queued).
    fn read_ahead<R: Read, W: Write>(
        &mut self,
        r: &mut FrameReader<R>,
        w: &mut CountingWriter<W>,
        fl: &mut Flight<M::State>,
        progress: &mut ProgressFn,
    ) -> Result<(), CodecError> {
        while fl.end.is_none()
            && fl.active.len() < self.max_batch
            && fl.queue.len() < 4 * self.max_batch
            && fl.pending_bytes < MAX_PENDING_BYTES
        {
            let entry = fl.queue_base + fl.queue.len() as u64;
            let raw = match r.read_record(self.header)? {
                Record::End {
                    original_len,
                    checksum,
                } => {
                    fl.end = Some((original_len, checksum));
                    continue;
                }
                Record::Model {
                    coder,
                    tokens,
                    payload,
                } => match self.start_chunk(fl, entry, coder, tokens, payload)? {
                    // Done without the model: output like a raw record.
                    Some(bytes) => bytes,
                    None => {
                        fl.queue.push_back(None);
                        fl.record += 1;
                        continue;
                    }
                },
                Record::Stored(b) => b,
                Record::Zstd {
                    original_len,
                    payload,
                } => unzstd(&payload, original_len).map_err(|reason| CodecError::CorruptZstd {
                    frame: self.frame,
                    chunk: fl.record,
                    reason,
                })?,
            };
            fl.record += 1;
            if fl.queue.is_empty() {
                self.emit(w, &raw)?;
                fl.queue_base += 1;
            } else {
                fl.pending_bytes += raw.len();
                fl.queue.push_back(Some(raw));
            }
            self.report(r, w, progress)?;
        }
        Ok(())
    }

    /// Starts a model chunk: decodes its token 0 (which needs no model,
    /// FORMAT.md section 5.1). A one-token chunk is finished at once and
    /// its bytes returned; a longer one joins the batch in flight.
    fn start_chunk(
        &mut self,
        fl: &mut Flight<M::State>,
        entry: u64,
        coder: CoderKind,
        tokens: u32,
        payload: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, CodecError> {
        let vocab = self.model.vocab_size();
        let mut dec =
            ChunkDecoder::new(coder, self.kernels, vocab, self.header.total_bits, payload)?;
        let first = dec
            .decode_first(vocab)
            .map_err(|_| self.left_interval(entry))?;
        *self.tokens += 1;
        let mut decoded = Vec::with_capacity(tokens as usize);
        decoded.push(first);
        if tokens == 1 {
            return self.finish_chunk(entry, &dec, &decoded).map(Some);
        }
        let mut state = self.model.fresh_state(fl.pool.pop());
        self.model.reserve_state(&mut state, tokens as usize);
        fl.active.push(Slot {
            entry,
            dec,
            state,
            input: [first],
            decoded,
            want: tokens as usize,
        });
        Ok(None)
    }

    /// Writes the finished prefix of the queue.
    fn write_ready<W: Write>(
        &mut self,
        w: &mut CountingWriter<W>,
        fl: &mut Flight<M::State>,
    ) -> io::Result<()> {
        while let Some(Some(_)) = fl.queue.front() {
            let bytes = fl.queue.pop_front().flatten().unwrap_or_default();
            fl.pending_bytes = fl.pending_bytes.saturating_sub(bytes.len());
            self.emit(w, &bytes)?;
            fl.queue_base += 1;
        }
        Ok(())
    }

    /// Moves every chunk that has all its tokens out of the batch: its bytes
    /// into its queue entry, its state into the pool for a later chunk.
    fn retire_finished(&mut self, fl: &mut Flight<M::State>) -> Result<(), CodecError> {
        let mut i = 0;
        while i < fl.active.len() {
            if fl.active[i].decoded.len() < fl.active[i].want {
                i += 1;
                continue;
            }
            let slot = fl.active.swap_remove(i);
            let bytes = self.finish_chunk(slot.entry, &slot.dec, &slot.decoded)?;
            fl.pool.push(slot.state);
            let idx = (slot.entry - fl.queue_base) as usize;
            fl.pending_bytes += bytes.len();
            fl.queue[idx] = Some(bytes);
        }
        Ok(())
    }

    fn report<R: Read, W: Write>(
        &self,
        r: &FrameReader<R>,
        w: &CountingWriter<W>,
        progress: &mut ProgressFn,
    ) -> Result<(), CodecError> {
        report(
            progress,
            Progress {
                bytes_in: r.offset(),
                bytes_out: w.count,
                tokens: *self.tokens,
            },
        )
    }

    /// Checks the decoded length and checksum against the end record's.
    fn verify(&self, (expected_len, expected_sum): (u64, u64)) -> Result<(), CodecError> {
        if self.written != expected_len {
            return Err(CodecError::Length {
                frame: self.frame,
                expected: expected_len,
                actual: self.written,
            });
        }
        let actual = self.hasher.digest();
        if actual != expected_sum {
            return Err(CodecError::Checksum {
                frame: self.frame,
                expected: expected_sum,
                actual,
            });
        }
        Ok(())
    }

    /// The error of a payload whose range decoder left its interval.
    fn left_interval(&self, entry: u64) -> CodecError {
        CodecError::CorruptChunk {
            frame: self.frame,
            chunk: entry,
            reason: "range decoder left its interval",
        }
    }

    /// The bytes of a fully decoded chunk, once its payload is known to be
    /// the canonical encoding of its tokens.
    fn finish_chunk(
        &self,
        entry: u64,
        dec: &ChunkDecoder<Vec<u8>>,
        decoded: &[u32],
    ) -> Result<Vec<u8>, CodecError> {
        if !dec.is_canonical() {
            return Err(CodecError::CorruptChunk {
                frame: self.frame,
                chunk: entry,
                reason: "payload is not the canonical encoding of its tokens",
            });
        }
        self.tokenizer
            .decode(decoded)
            .map_err(|e| CodecError::Tokenizer {
                frame: self.frame,
                chunk: entry,
                source: Box::new(e),
            })
    }

    /// One batched forward pass: every active chunk advances one token.
    fn step(
        &mut self,
        active: &mut [Slot<M::State>],
        logits: &mut Vec<f32>,
    ) -> Result<(), CodecError> {
        let vocab = self.model.vocab_size();
        let n = active.len();
        if logits.len() < n * vocab {
            logits.resize(n * vocab, 0.0);
        }
        let (mut states, inputs): (Vec<&mut M::State>, Vec<&[u32]>) = active
            .iter_mut()
            .map(|s| (&mut s.state, &s.input[..]))
            .unzip();
        self.model
            .forward(&mut states, &inputs, &mut logits[..n * vocab])
            .map_err(|e| CodecError::Model(Box::new(e)))?;
        // Each chunk's next token from its logits row: independent per
        // chunk (own decoder and predictor), so spread over the threads
        // (a frequency table is about 50 thousand exps).
        let rows = &logits[..n * vocab];
        let decoded: Vec<Result<u32, RangeCorrupt>> = if n > 1 && parallel_rows() {
            let mut decs: Vec<&mut ChunkDecoder<Vec<u8>>> =
                active.iter_mut().map(|s| &mut s.dec).collect();
            decs.par_iter_mut()
                .zip(rows.par_chunks_exact(vocab))
                .map(|(d, row)| d.decode(row))
                .collect()
        } else {
            active
                .iter_mut()
                .zip(rows.chunks_exact(vocab))
                .map(|(slot, row)| slot.dec.decode(row))
                .collect()
        };
        for (slot, t) in active.iter_mut().zip(decoded) {
            let t = t.map_err(|_| self.left_interval(slot.entry))?;
            slot.decoded.push(t);
            slot.input = [t];
        }
        *self.tokens += n as u64;
        Ok(())
    }
}

/// Decompresses one zstd frame of exactly `original_len` bytes.
fn unzstd(payload: &[u8], original_len: u64) -> Result<Vec<u8>, String> {
    // original_len <= MAX_RAW_CHUNK (checked by the reader): bounded.
    let out = zstd::bulk::decompress(payload, original_len as usize).map_err(|e| e.to_string())?;
    if out.len() as u64 != original_len {
        return Err(format!(
            "{} bytes decompressed, {original_len} declared",
            out.len()
        ));
    }
    Ok(out)
}
