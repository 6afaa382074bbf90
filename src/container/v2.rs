//! Format version 2 (FORMAT.md section 8): a 16-byte header naming the
//! model and the level, then blocks of at most 64 MiB of output, each with
//! its own check, then an end record.
//!
//! A model block holds its line-ending exceptions and its streams: per
//! stream a token count and a range-coded payload. Raw blocks hold bytes
//! stored, or one zstd frame, or one raw LZMA2 stream (the classical
//! fallbacks, chosen per block by size).

use std::io::{Read, Write};

use super::{
    put_varint, varint_len, ContainerError, FrameReader, MAX_PAYLOAD_PER_TOKEN, MAX_RAW_CHUNK,
    MODEL_PAYLOAD_SLACK,
};
use crate::coder::{CoderKind, MAX_TOTAL_BITS, MIN_TOTAL_BITS};
use crate::transform::MAX_REFLOW_WIDTH;

/// The version byte of this format.
pub const VERSION_2: u8 = 2;
/// Most streams one block may have.
pub const MAX_STREAMS: u64 = 1024;
/// Largest window (tokens per model state) a custom header may declare.
pub const MAX_WINDOW: u64 = 1 << 16;

const KIND_END: u8 = 0;
const KIND_MODEL: u8 = 1;
const KIND_STORED: u8 = 2;
const KIND_ZSTD: u8 = 3;
const KIND_LZMA2: u8 = 4;

/// Predictor-flags bit of a custom header: varints `sinks` and `primer`
/// follow `carry` (FORMAT.md 8.1).
const FLAG_SLIDE: u8 = 4;
/// Predictor flag of the shared n-gram model (with bits 0 and 1, the
/// predictor's; NUMERICS.md 12).
const FLAG_NGRAM: u8 = 8;

/// Block flag: CRLF pairs were coded as LF (exceptions follow).
const FLAG_CRLF: u8 = 1;
/// Block flag: paragraphs were reflowed (the width follows).
const FLAG_REFLOW: u8 = 2;

/// A version-2 frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// First 8 bytes of the model's fingerprint.
    pub model: [u8; 8],
    /// The level byte: 21..=29 for levels 1..=9 of this version's table,
    /// 11..=19 for those of the second and 1..=9 for those of the first
    /// (FORMAT.md 8.2), or 0 for the custom parameters in `custom`.
    pub level: u8,
    /// The decoding parameters of a level-0 frame.
    pub custom: Option<Custom>,
}

/// Decoding parameters written out (level 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Custom {
    /// Entropy coder of every stream.
    pub coder: CoderKind,
    /// log2 of the arithmetic coder's frequency total.
    pub total_bits: u32,
    /// Most tokens per model state.
    pub window: u32,
    /// Context tokens carried into each later window (1..window).
    pub carry: u32,
    /// Predictor flags (bit 0 bias, bit 1 match and SSE, NUMERICS.md 10;
    /// bit 3 the shared n-gram, NUMERICS.md 12).
    pub predictor: u8,
    /// Attention sinks of sliding windows (`1..window - carry`), or 0: each
    /// window starts from an empty state fed `carry` tokens.
    pub sinks: u32,
    /// Tokens of a block's first stream that prime its later streams
    /// (`0..window`).
    pub primer: u32,
}

/// One stream of a model block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Tokens coded (>= 1).
    pub tokens: u32,
    /// The range coder's bytes.
    pub payload: Vec<u8>,
}

/// What a block holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Tokens coded with the model, in streams.
    Model {
        /// Indices of the LFs to restore as bare LF if the CRLF transform
        /// was used (`None`: no transform).
        bare_lfs: Option<Vec<u64>>,
        /// The width of the reflow transform if it was used (applied after
        /// the CRLF transform, undone before it).
        reflow: Option<u32>,
        /// The streams, in text order.
        streams: Vec<Stream>,
    },
    /// The bytes, verbatim.
    Stored(Vec<u8>),
    /// One zstd frame.
    Zstd(Vec<u8>),
    /// One raw LZMA2 stream (preset 9 dictionary, see FORMAT.md).
    Lzma2(Vec<u8>),
}

/// A block: its body, the bytes it restores to, and their check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Original bytes of the block (1..=MAX_RAW_CHUNK).
    pub original_len: u64,
    /// What codes them.
    pub body: Body,
    /// Low 32 bits of xxh64 (seed 0) of the original bytes.
    pub check: u32,
}

/// A version-2 record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A block of output.
    Block(Block),
    /// End of frame: total output length and the low 32 bits of the xxh64
    /// of the whole output.
    End {
        /// Bytes the frame restores to.
        original_len: u64,
        /// Check over all of them.
        check: u32,
    },
}

/// Low 32 bits of xxh64 (seed 0): the check of a block, a frame, a header.
pub fn check32(bytes: &[u8]) -> u32 {
    xxhash_rust::xxh64::xxh64(bytes, 0) as u32
}

/// Serializes a version-2 header: 16 bytes at a level.
pub fn encode_header(h: &Header) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&super::MAGIC);
    out.push(VERSION_2);
    out.push(h.level);
    out.extend_from_slice(&h.model);
    if let (0, Some(c)) = (h.level, h.custom) {
        out.push(coder_byte(c.coder));
        out.push(c.total_bits as u8);
        let ext = c.sinks > 0 || c.primer > 0;
        out.push(c.predictor | if ext { FLAG_SLIDE } else { 0 });
        put_varint(&mut out, c.window as u64);
        put_varint(&mut out, c.carry as u64);
        if ext {
            put_varint(&mut out, c.sinks as u64);
            put_varint(&mut out, c.primer as u64);
        }
    }
    let check = check32(&out) as u16;
    out.extend_from_slice(&check.to_le_bytes());
    out
}

fn coder_byte(c: CoderKind) -> u8 {
    match c {
        CoderKind::Arithmetic => 1,
        CoderKind::Rank => 2,
    }
}

/// Serializes a block record.
pub fn encode_block(b: &Block) -> Vec<u8> {
    let mut out = Vec::new();
    let kind = match &b.body {
        Body::Model { .. } => KIND_MODEL,
        Body::Stored(_) => KIND_STORED,
        Body::Zstd(_) => KIND_ZSTD,
        Body::Lzma2(_) => KIND_LZMA2,
    };
    out.push(kind);
    put_varint(&mut out, b.original_len);
    match &b.body {
        Body::Model {
            bare_lfs,
            reflow,
            streams,
        } => {
            let flags = if bare_lfs.is_some() { FLAG_CRLF } else { 0 }
                | if reflow.is_some() { FLAG_REFLOW } else { 0 };
            out.push(flags);
            if let Some(bare) = bare_lfs {
                put_varint(&mut out, bare.len() as u64);
                let mut next = 0u64;
                for &i in bare {
                    put_varint(&mut out, i - next);
                    next = i + 1;
                }
            }
            if let Some(w) = reflow {
                put_varint(&mut out, *w as u64);
            }
            put_varint(&mut out, streams.len() as u64);
            for s in streams {
                put_varint(&mut out, s.tokens as u64);
                put_varint(&mut out, s.payload.len() as u64);
            }
            for s in streams {
                out.extend_from_slice(&s.payload);
            }
        }
        Body::Stored(bytes) => out.extend_from_slice(bytes),
        Body::Zstd(p) | Body::Lzma2(p) => {
            put_varint(&mut out, p.len() as u64);
            out.extend_from_slice(p);
        }
    }
    out.extend_from_slice(&b.check.to_le_bytes());
    out
}

/// Size of a model block record of `original_len` bytes: the CRLF
/// exceptions `bare_lfs` (if the transform applies), the `reflow` width (if
/// that one does), then streams of `(tokens, payload_len)`; what
/// [`encode_block`] writes for it.
pub fn model_block_len(
    original_len: u64,
    bare_lfs: Option<&[u64]>,
    reflow: Option<u32>,
    streams: &[(u32, usize)],
) -> usize {
    let mut n = 1 + varint_len(original_len) + 1 + varint_len(streams.len() as u64) + 4;
    n += reflow.map_or(0, |w| varint_len(w as u64));
    if let Some(bare) = bare_lfs {
        n += varint_len(bare.len() as u64);
        let mut next = 0u64;
        for &i in bare {
            n += varint_len(i - next);
            next = i + 1;
        }
    }
    for &(tokens, len) in streams {
        n += varint_len(tokens as u64) + varint_len(len as u64) + len;
    }
    n
}

/// Size of the end record of a frame of `original_len` bytes.
pub fn end_len(original_len: u64) -> usize {
    1 + varint_len(original_len) + 4
}

/// Size of a raw block (stored, zstd or LZMA2 body of `payload_len` bytes).
pub fn raw_block_len(original_len: u64, stored: bool, payload_len: usize) -> usize {
    let len_field = if stored {
        0
    } else {
        varint_len(payload_len as u64)
    };
    1 + varint_len(original_len) + len_field + payload_len + 4
}

/// Writes the end record.
pub fn write_end<W: Write>(w: &mut W, original_len: u64, check: u32) -> std::io::Result<()> {
    let mut rec = vec![KIND_END];
    put_varint(&mut rec, original_len);
    rec.extend_from_slice(&check.to_le_bytes());
    w.write_all(&rec)
}

impl<R: Read> FrameReader<R> {
    /// The rest of a version-2 header after its magic and version byte
    /// (`raw`: the 5 bytes read; `start`: the frame's offset).
    pub(super) fn read_header_v2(
        &mut self,
        start: u64,
        mut raw: Vec<u8>,
    ) -> Result<Header, ContainerError> {
        let mut fixed = [0u8; 9];
        self.exact(&mut fixed, "frame header")?;
        raw.extend_from_slice(&fixed);
        let level = fixed[0];
        let mut model = [0u8; 8];
        model.copy_from_slice(&fixed[1..]);
        let mut custom = None;
        if level == 0 {
            let coder_at = self.offset;
            let mut three = [0u8; 3];
            self.exact(&mut three, "frame parameters")?;
            raw.extend_from_slice(&three);
            let window = self.ranged("window", 2, MAX_WINDOW, Some(&mut raw))?;
            let carry = self.ranged("carry", 1, window - 1, Some(&mut raw))?;
            if three[2] & !(3 | FLAG_SLIDE | FLAG_NGRAM) != 0 {
                return Err(out_of_range(
                    "predictor flags",
                    three[2] as u64,
                    0,
                    15,
                    coder_at + 2,
                ));
            }
            let (sinks, primer) = if three[2] & FLAG_SLIDE != 0 {
                let sinks = self.ranged("sinks", 0, window - 1 - carry, Some(&mut raw))?;
                (sinks, self.ranged("primer", 0, window - 1, Some(&mut raw))?)
            } else {
                (0, 0)
            };
            let coder = match three[0] {
                1 => CoderKind::Arithmetic,
                2 => CoderKind::Rank,
                v => return Err(out_of_range("coder", v as u64, 1, 2, coder_at)),
            };
            custom = Some(Custom {
                coder,
                total_bits: three[1] as u32,
                window: window as u32,
                carry: carry as u32,
                predictor: three[2] & (3 | FLAG_NGRAM),
                sinks: sinks as u32,
                primer: primer as u32,
            });
        }
        let mut check = [0u8; 2];
        self.exact(&mut check, "frame header check")?;
        if u16::from_le_bytes(check) != check32(&raw) as u16 {
            return Err(ContainerError::HeaderCheck { offset: start });
        }
        if let Some(c) = &custom {
            if !(MIN_TOTAL_BITS..=MAX_TOTAL_BITS).contains(&c.total_bits) {
                return Err(out_of_range(
                    "total bits",
                    c.total_bits as u64,
                    MIN_TOTAL_BITS as u64,
                    MAX_TOTAL_BITS as u64,
                    start + 15,
                ));
            }
        } else if level % 10 == 0 || level > 29 {
            return Err(out_of_range("level", level as u64, 0, 29, start + 5));
        }
        Ok(Header {
            model,
            level,
            custom,
        })
    }

    /// Reads the next record of a version-2 frame.
    pub fn read_record_v2(&mut self) -> Result<Record, ContainerError> {
        let offset = self.offset;
        let kind = self.byte("block kind")?;
        if kind == KIND_END {
            let original_len = self.varint("frame original length", None)?;
            let check = self.check("frame check")?;
            return Ok(Record::End {
                original_len,
                check,
            });
        }
        if kind > KIND_LZMA2 {
            return Err(ContainerError::ChunkKind { kind, offset });
        }
        let original_len = self.ranged("block length", 1, MAX_RAW_CHUNK, None)?;
        let body = match kind {
            KIND_MODEL => self.model_body(original_len)?,
            KIND_STORED => Body::Stored(self.payload(original_len, "stored block")?),
            _ => {
                let max = super::max_zstd_payload(original_len);
                let len = self.ranged("block payload length", 1, max, None)?;
                let p = self.payload(len, "block payload")?;
                if kind == KIND_ZSTD {
                    Body::Zstd(p)
                } else {
                    Body::Lzma2(p)
                }
            }
        };
        let check = self.check("block check")?;
        Ok(Record::Block(Block {
            original_len,
            body,
            check,
        }))
    }

    fn check(&mut self, what: &'static str) -> Result<u32, ContainerError> {
        let mut c = [0u8; 4];
        self.exact(&mut c, what)?;
        Ok(u32::from_le_bytes(c))
    }

    /// A model block's body after its length: flags, exceptions, stream
    /// table, payloads. Every count is bounded by the block's length (an
    /// LF is one byte, a token at least half of one), so nothing hostile
    /// allocates more than the input holds.
    fn model_body(&mut self, original_len: u64) -> Result<Body, ContainerError> {
        let flags_at = self.offset;
        let flags = self.byte("block flags")?;
        if flags & !(FLAG_CRLF | FLAG_REFLOW) != 0 {
            return Err(out_of_range("block flags", flags as u64, 0, 3, flags_at));
        }
        let mut bare_lfs = None;
        if flags & FLAG_CRLF != 0 {
            let n = self.ranged("line-ending exceptions", 0, original_len, None)?;
            let mut bare = Vec::with_capacity(n.min(1 << 16) as usize);
            let mut next = 0u64;
            for _ in 0..n {
                let gap = self.ranged("line-ending exception", 0, original_len, None)?;
                let i = next + gap;
                if i >= original_len {
                    return Err(out_of_range(
                        "line-ending exception",
                        i,
                        0,
                        original_len - 1,
                        self.offset,
                    ));
                }
                bare.push(i);
                next = i + 1;
            }
            bare_lfs = Some(bare);
        }
        let reflow = if flags & FLAG_REFLOW != 0 {
            Some(self.ranged("reflow width", 1, MAX_REFLOW_WIDTH as u64, None)? as u32)
        } else {
            None
        };
        let n = self.ranged("stream count", 1, MAX_STREAMS, None)?;
        let mut table = Vec::with_capacity(n as usize);
        // A token codes at least half a byte (a real tokenizer's at least
        // one byte; an escape unit of two tokens at least one).
        let mut tokens_left = 2 * original_len;
        for _ in 0..n {
            let tokens = self.ranged("stream token count", 1, tokens_left, None)?;
            tokens_left -= tokens;
            let max = tokens * MAX_PAYLOAD_PER_TOKEN + MODEL_PAYLOAD_SLACK;
            let len = self.ranged("stream payload length", 0, max, None)?;
            table.push((tokens as u32, len));
        }
        let mut streams = Vec::with_capacity(n as usize);
        for (tokens, len) in table {
            let payload = self.payload(len, "stream payload")?;
            streams.push(Stream { tokens, payload });
        }
        Ok(Body::Model {
            bare_lfs,
            reflow,
            streams,
        })
    }
}

fn out_of_range(what: &'static str, value: u64, min: u64, max: u64, offset: u64) -> ContainerError {
    ContainerError::OutOfRange {
        what,
        value,
        min,
        max,
        offset,
    }
}
