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
pub mod v2;

/// The first format version (still read; version 2 is written).
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

/// A frame header of any version this build reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    /// Version 1: chunks (sections 1-7 of FORMAT.md).
    V1(FrameHeader),
    /// Version 2: blocks of streams (section 8).
    V2(v2::Header),
}

/// Everything a decoder needs before the first chunk (version 1).
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
    #[error("unsupported llmc format version {version} at byte {offset} (this build reads versions 1 and 2)")]
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

    /// Reads a frame header of either version; `Ok(None)` at a clean end
    /// of input.
    pub fn read_header(&mut self) -> Result<Option<Header>, ContainerError> {
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
        match version {
            VERSION => self.read_header_v1(start, raw).map(|h| Some(Header::V1(h))),
            v2::VERSION_2 => self.read_header_v2(start, raw).map(|h| Some(Header::V2(h))),
            _ => Err(ContainerError::Version {
                version,
                offset: start + 4,
            }),
        }
    }

    /// The rest of a version-1 header after its magic and version byte.
    fn read_header_v1(
        &mut self,
        start: u64,
        mut raw: Vec<u8>,
    ) -> Result<FrameHeader, ContainerError> {
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
        Ok(FrameHeader {
            fingerprint,
            model_name,
            total_bits,
            chunk_tokens: chunk_tokens as u32,
        })
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
