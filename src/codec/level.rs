//! Levels: named bundles of coding parameters, as zstd has them
//! (FORMAT.md section 8.2 lists the table; a frame records its level, and
//! the decoder takes the parameters from this same table).

use crate::coder::{CoderKind, DEFAULT_TOTAL_BITS};
use crate::predict::AdaptiveConfig;

/// Lowest level.
pub const MIN_LEVEL: u8 = 1;
/// Highest level.
pub const MAX_LEVEL: u8 = 9;
/// The level used when none is asked for.
pub const DEFAULT_LEVEL: u8 = 5;

/// Everything that decides how a block's tokens are model-coded. The first
/// five fields are what a decoder needs (recorded by level, or explicitly
/// for a custom set); the rest only steer the compressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Entropy coder.
    pub coder: CoderKind,
    /// log2 of the arithmetic coder's frequency total.
    pub total_bits: u32,
    /// Most tokens a model state holds (one window, FORMAT.md 8.4).
    pub window: u32,
    /// Tokens of already-coded context each window after a stream's first
    /// starts with (`1..window`): fed again, or kept when windows slide.
    pub carry: u32,
    /// 0: each window after a stream's first starts from an empty state fed
    /// `carry` tokens again; `>= 1`: it slides the previous state instead,
    /// keeping the stream's first `sinks` tokens and the last `carry`.
    pub sinks: u32,
    /// Tokens of a block's first stream that every later stream of the
    /// block is fed first, as context (FORMAT.md 8.4; 0: none).
    pub primer: u32,
    /// Which parts of the adaptive predictor run (arithmetic coder only).
    pub adaptive: AdaptiveConfig,
    /// Most streams a block is split into (decoding runs one token of every
    /// stream per forward pass: more streams decode faster).
    pub max_streams: u32,
    /// Fewest tokens per stream when a block is split (longer streams carry
    /// more context).
    pub stream_tokens: u32,
    /// Code CRLF text as LF text (restored exactly) when it pays.
    pub crlf: bool,
    /// Code paragraphs wrapped at a fixed width as one line each (restored
    /// exactly) when the text looks wrapped.
    pub reflow: bool,
}

/// Attention sinks of every level of this version's table.
pub const LEVEL_SINKS: u32 = 4;

/// Primer tokens of every level of this version's table.
pub const LEVEL_PRIMER: u32 = 256;

/// The header byte of level `n` of this version's table is
/// `LEVEL_BYTE_BASE + n` (FORMAT.md 8.2); bytes `1..=9` name the levels of
/// the first version-2 table and `11..=19` those of the second, which every
/// later version still decodes.
pub const LEVEL_BYTE_BASE: u8 = 20;

impl Params {
    /// The parameters of `level` (`MIN_LEVEL..=MAX_LEVEL`) as this version
    /// writes it (header bytes `21..=29`): the second table's, with the
    /// block's shared n-gram model from level 2. `None` outside.
    pub fn level(level: u8) -> Option<Params> {
        let mut p = Params::second_table(level)?;
        p.adaptive.ngram = level >= 2;
        // Longer streams than the second table's at levels 5 and 6: a
        // compressor choice (a block records its streams' lengths). At
        // level 5 alice29.txt becomes 5 streams instead of 9: 0.8% smaller,
        // decoding at 592 instead of 645 tokens/s (FORMAT.md 8.7); level 6
        // stays at least as long as level 5.
        p.stream_tokens = match level {
            5 => 7168,
            6 => 8192,
            _ => p.stream_tokens,
        };
        Some(p)
    }

    /// The parameters of the second version-2 table (header bytes
    /// `11..=19`): sliding windows and the primer. `None` outside `1..=9`.
    pub fn second_table(level: u8) -> Option<Params> {
        // (window, carry, max_streams, stream_tokens)
        let (window, carry, max_streams, stream_tokens) = match level {
            1 => (1024, 512, 32, 1024),
            2 => (1536, 768, 32, 1536),
            3 => (2048, 1024, 32, 2048),
            4 => (2048, 1024, 24, 3072),
            5 => (2048, 1536, 16, 4096),
            6 => (3072, 2048, 16, 6144),
            7 => (4096, 3072, 12, 8192),
            8 => (4096, 3072, 8, 16384),
            9 => (8192, 6144, 4, 32768),
            _ => return None,
        };
        Some(Params {
            sinks: LEVEL_SINKS,
            primer: LEVEL_PRIMER,
            ..Params::table(level, window, carry, max_streams, stream_tokens)
        })
    }

    /// The parameters of the first version-2 table (header bytes `1..=9`):
    /// windows restart from an empty state. `None` outside `1..=9`.
    pub fn first_table(level: u8) -> Option<Params> {
        let (window, carry, max_streams, stream_tokens) = match level {
            1 => (1024, 128, 32, 1024),
            2 => (1536, 256, 32, 1536),
            3 => (2048, 256, 32, 2048),
            4 => (2048, 512, 24, 3072),
            5 => (2048, 512, 16, 4096),
            6 => (3072, 1024, 16, 6144),
            7 => (4096, 1024, 12, 8192),
            8 => (4096, 2048, 8, 12288),
            9 => (8192, 4096, 8, 16384),
            _ => return None,
        };
        Some(Params::table(
            level,
            window,
            carry,
            max_streams,
            stream_tokens,
        ))
    }

    /// The parameters a version-2 header's level byte names (not 0).
    pub fn of_level_byte(byte: u8) -> Option<Params> {
        match byte {
            1..=9 => Params::first_table(byte),
            11..=19 => Params::second_table(byte - 10),
            b if b > LEVEL_BYTE_BASE => Params::level(b - LEVEL_BYTE_BASE),
            _ => None,
        }
    }

    /// Whether the block's shared n-gram model runs: asked for, with the
    /// arithmetic coder (like every adaptive part; the rank coder has its
    /// own tables).
    pub fn ngram(&self) -> bool {
        self.adaptive.ngram && self.coder == CoderKind::Arithmetic
    }

    /// The header byte this version writes for `level` (0: custom).
    pub fn level_byte(level: u8) -> u8 {
        if level == 0 {
            0
        } else {
            LEVEL_BYTE_BASE + level
        }
    }

    /// A level's row: the coder, total and predictor every level shares.
    fn table(level: u8, window: u32, carry: u32, max_streams: u32, stream_tokens: u32) -> Params {
        Params {
            coder: CoderKind::Arithmetic,
            total_bits: DEFAULT_TOTAL_BITS,
            window,
            carry,
            sinks: 0,
            primer: 0,
            // Level 1 is the model alone (the fastest); the match model
            // and SSE from 2, the bias from 3.
            adaptive: AdaptiveConfig {
                bias: level >= 3,
                sse: level >= 2,
                ngram: false,
            },
            max_streams,
            stream_tokens,
            crlf: true,
            reflow: true,
        }
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::level(DEFAULT_LEVEL).expect("the default level exists")
    }
}
