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
    /// is fed before it codes (`1..window`).
    pub carry: u32,
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
}

impl Params {
    /// The parameters of `level` (`MIN_LEVEL..=MAX_LEVEL`), `None` outside.
    pub fn level(level: u8) -> Option<Params> {
        // (window, carry, max_streams, stream_tokens)
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
        Some(Params {
            coder: CoderKind::Arithmetic,
            total_bits: DEFAULT_TOTAL_BITS,
            window,
            carry,
            // Level 1 is the model alone (the fastest); the match model
            // and SSE from 2, the bias from 3.
            adaptive: AdaptiveConfig {
                bias: level >= 3,
                sse: level >= 2,
            },
            max_streams,
            stream_tokens,
            crlf: true,
        })
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::level(DEFAULT_LEVEL).expect("the default level exists")
    }
}
