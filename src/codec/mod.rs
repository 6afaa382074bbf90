//! The driver: bytes -> blocks -> transform -> tokens -> streams ->
//! windows -> model -> predictor -> coder -> container, and back; the only
//! module that sees the model, the predictor and the coder together.
//! `segment` cuts the input into blocks, `block` applies the line-ending
//! transform, `stream` splits tokens into streams and windows, `level` holds
//! the level table; `encode`, `decode` (version 1, and the dispatch) /
//! `decode_v2` and `score` are the three directions; `fallback` holds the
//! classical coders.
//!
//! Compression (format version 2, FORMAT.md section 8) reads its input in
//! blocks (default 4 MiB, cut after the last newline when there is one),
//! codes CRLF text as LF text, tokenizes each block on its own and splits its
//! tokens into a few long streams. Each stream is coded by one range coder
//! through the adaptive predictor; its tokens are fed to the model in
//! windows that carry `carry` tokens of context forward. A block the model
//! codes no smaller than zstd, LZMA2 or storing is written that way instead.
//!
//! Decompression decodes a block's streams together, one token of every
//! stream per model call (one batched forward pass), and writes a block's
//! bytes once its check holds. Version-1 frames (independent chunks) still
//! decode.
//!
//! [`score()`] runs the model over the same chunks as [`compress`] and sums
//! the ideal code lengths, i.e. the model's cross-entropy on the input.
//!
//! Progress callbacks are called after every forward pass and may stop the
//! work by returning `ControlFlow::Break(())` ([`CodecError::Interrupted`]).
//!
//! The model and the tokenizer are reached through the small traits
//! [`LanguageModel`] and [`TextTokenizer`], so the driver can be tested with
//! the tiny synthetic ones in [`synthetic`]. The per-row work after a
//! forward pass (tables, range decoding, cross-entropies) runs in parallel
//! on the rayon pool the caller runs in (`crate::engine` calls the codec on
//! the model's threads); the bytes never depend on it.

use std::error::Error as StdError;
use std::io::{self, Write};
use std::ops::ControlFlow;

use crate::coder::FreqTable;
use crate::container::MAX_CHUNK_TOKENS;
use crate::kernels::Kernels;

mod batch;
mod block;
mod decode;
mod decode_v2;
mod encode;
mod error;
mod fallback;
pub mod level;
mod lockstep;
#[cfg(test)]
mod real_tests;
mod score;
mod segment;
mod stream;
pub mod synthetic;

pub use decode::{decompress, decompress_stream};
pub use encode::{compress, compress_stream};
pub use error::CodecError;
pub use level::{
    Params, DEFAULT_LEVEL, LEVEL_BYTE_BASE, LEVEL_PRIMER, LEVEL_SINKS, MAX_LEVEL, MIN_LEVEL,
};
pub use score::{score, score_predictors, Score};
pub use segment::looks_binary;

pub use crate::lm::LanguageModel;
pub use crate::tokenizer::TextTokenizer;

#[cfg(test)]
mod tests;

/// Boxed error of a model or tokenizer.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Who the model is, as written into and checked against frame headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    /// Display name (at most 255 bytes are stored).
    pub name: String,
    /// Hash over the model's tensors and tokenizer.
    pub fingerprint: [u8; 32],
}

/// Compression settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressOptions {
    /// Input is tokenized in segments of at most this many bytes.
    pub segment_bytes: usize,
    /// Tokens per forward pass while compressing one chunk (bounds the
    /// logits buffer: `piece_tokens * vocab` f32).
    pub piece_tokens: usize,
    /// zstd level for chunks the model codes badly.
    pub zstd_level: i32,
    /// Send chunks that [`looks_binary`] straight to zstd/stored without
    /// running the model on them.
    pub skip_binary: bool,
    /// Kernels of the predictor's arithmetic (the same bits with any);
    /// `None`: [`Kernels::detect`] (`LLMC_KERNEL`, else the best).
    pub kernels: Option<Kernels>,
    /// The level recorded in the frame (0: custom parameters).
    pub level: u8,
    /// How blocks are model-coded (those of `level` unless customized).
    pub params: Params,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            segment_bytes: 4 << 20,
            piece_tokens: 256,
            zstd_level: 19,
            skip_binary: true,
            kernels: None,
            level: DEFAULT_LEVEL,
            params: Params::default(),
        }
    }
}

/// Decompression settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecompressOptions {
    /// Most model chunks decoded together, one token each per forward pass
    /// (memory: one model state, i.e. KV cache, per chunk in flight).
    pub max_batch: usize,
    /// Memory the states of the chunks in flight may take together, by
    /// [`LanguageModel::state_bytes_per_token`] and the frame's chunk
    /// length: fewer than `max_batch` chunks are decoded together when
    /// they would exceed it (never fewer than one).
    pub state_budget: usize,
    /// As [`CompressOptions::kernels`].
    pub kernels: Option<Kernels>,
}

impl Default for DecompressOptions {
    /// 32 chunks, within 1 GiB of states: all 32 for SmolLM2-135M at the
    /// default 2048-token chunks (25 MB each). More chunks per forward pass
    /// spread each pass's weight traffic over more tokens (figures in
    /// docs/FORMAT.md, "Chunk length").
    fn default() -> Self {
        DecompressOptions {
            max_batch: 32,
            state_budget: 1 << 30,
            kernels: None,
        }
    }
}

/// Progress report for a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes read from the input so far.
    pub bytes_in: u64,
    /// Bytes written to the output so far.
    pub bytes_out: u64,
    /// Tokens coded or decoded by the model so far.
    pub tokens: u64,
    /// Original bytes done, for a progress bar: compressing, `bytes_in`;
    /// decompressing, the bytes written plus, inside a model block, the
    /// block's length times the share of its tokens decoded (decoded bytes
    /// are written only once their block's check holds).
    pub original: u64,
}

impl Progress {
    /// `bytes` of input done (and no output yet): scoring's reports.
    fn input(bytes: u64, tokens: u64) -> Progress {
        Progress {
            bytes_in: bytes,
            bytes_out: 0,
            tokens,
            original: bytes,
        }
    }
}

/// Progress callback: called after every forward pass (and every raw
/// record); `ControlFlow::Break(())` stops the work with
/// [`CodecError::Interrupted`].
pub type ProgressFn<'a> = dyn FnMut(Progress) -> ControlFlow<()> + 'a;

/// Reports `p`; `Err(Interrupted)` if the callback asks to stop.
fn report(progress: &mut ProgressFn, p: Progress) -> Result<(), CodecError> {
    match progress(p) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(CodecError::Interrupted),
    }
}

/// A callback that never stops.
fn no_progress(_: Progress) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

/// First 4 bytes of a fingerprint in hex, for messages.
pub fn short_hex(fp: &[u8; 32]) -> String {
    fp[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The 8 fingerprint bytes a version-2 frame records, in hex.
pub fn short_hex8(fp: &[u8; 8]) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts bytes written.
struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The kernels of `choice`, else those `LLMC_KERNEL` names (or the best).
fn kernels(choice: Option<Kernels>) -> Result<Kernels, CodecError> {
    match choice {
        Some(k) => Ok(k),
        None => Ok(Kernels::detect()?),
    }
}

/// Checks parameters shared by both directions (`chunk_tokens`: v1's
/// chunk length or v2's window).
fn check_parameters<M: LanguageModel>(
    model: &M,
    tokenizer_vocab: usize,
    chunk_tokens: u32,
    total_bits: u32,
) -> Result<(), CodecError> {
    let vocab = model.vocab_size();
    if tokenizer_vocab > vocab {
        return Err(CodecError::Parameters(format!(
            "tokenizer has {tokenizer_vocab} tokens but the model only {vocab} logits"
        )));
    }
    if chunk_tokens == 0
        || chunk_tokens > MAX_CHUNK_TOKENS
        || chunk_tokens as usize > model.max_context()
    {
        // One range, the same as the command line's --window states: the
        // format's cap or the model's context, whichever is smaller.
        let most = (MAX_CHUNK_TOKENS as usize).min(model.max_context());
        return Err(CodecError::Parameters(format!(
            "window of {chunk_tokens} tokens: at most {most} (the model's context is {} tokens)",
            model.max_context()
        )));
    }
    FreqTable::new(vocab, total_bits)?;
    Ok(())
}
