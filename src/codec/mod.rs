//! The driver: bytes -> tokens -> chunks -> model -> coder -> container, and back.
//!
//! Compression reads its input in segments (default 4 MiB, cut after the
//! last newline of the segment when there is one), tokenizes each segment on
//! its own, and cuts the token stream into chunks of `chunk_tokens` tokens
//! (the last chunk of a segment may be shorter). Every chunk is coded
//! independently (FORMAT.md section 5.1): its token 0 has no prediction and
//! is coded as one of `vocab` equally likely ids; a fresh model state is fed
//! the chunk's tokens, and the logits after token j code token j+1. A chunk
//! the model codes no smaller
//! than zstd (level 19) or storing would is kept as zstd/stored bytes
//! instead; consecutive such chunks are merged into one record.
//!
//! Decompression keeps up to `max_batch` model chunks in flight and advances
//! all of them by one token per model call (one batched forward pass), so it
//! is not a token-at-a-time crawl; finished chunks are written in file order.
//!
//! [`score`] runs the model over the same chunks as [`compress`] and sums
//! the ideal code lengths, i.e. the model's cross-entropy on the input.
//!
//! Progress callbacks are called after every forward pass and may stop the
//! work by returning `ControlFlow::Break(())` ([`CodecError::Interrupted`]).
//!
//! The model and the tokenizer are reached through the small traits
//! [`LanguageModel`] and [`TextTokenizer`], so the driver can be tested with
//! the tiny synthetic ones in [`synthetic`].

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::io::{self, Read, Write};
use std::ops::ControlFlow;

use xxhash_rust::xxh64::Xxh64;

use crate::coder::{
    interval, ChunkDecoder, ChunkEncoder, CoderKind, FreqError, FreqTable, Interval, RangeCorrupt,
    DEFAULT_TOTAL_BITS,
};
use crate::container::{
    self, ContainerError, FrameHeader, FrameReader, Record, MAX_CHUNK_TOKENS, MAX_RAW_CHUNK,
};
use rayon::prelude::*;

mod adapters;
pub mod synthetic;

#[cfg(test)]
mod tests;

/// Boxed error of a model or tokenizer.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A causal language model that extends many sequences at once.
pub trait LanguageModel {
    /// Per-sequence state (the KV cache).
    type State;
    /// Failure of a forward pass.
    type Error: StdError + Send + Sync + 'static;
    /// Number of logits per token.
    fn vocab_size(&self) -> usize;
    /// Most tokens one state can hold.
    fn max_context(&self) -> usize;
    /// A fresh, empty state.
    fn new_state(&self) -> Self::State;
    /// Bytes a state grows by per token it holds (0 if negligible): the
    /// decoder sizes its batch of chunks in flight by it.
    fn state_bytes_per_token(&self) -> usize {
        0
    }
    /// Empties `state` for reuse by another chunk (a model whose state owns
    /// large buffers should keep them).
    fn reset_state(&self, state: &mut Self::State) {
        *state = self.new_state();
    }
    /// A hint that `state` will hold `tokens` tokens (the decoder knows each
    /// chunk's length): a model may allocate for them at once instead of
    /// growing step by step. Never changes a result.
    fn reserve_state(&self, _state: &mut Self::State, _tokens: usize) {}
    /// Appends `tokens[s]` to `states[s]` for every sequence `s` (one batched
    /// pass) and writes the logits after every appended token, sequence by
    /// sequence, token by token, `vocab_size()` each, into the front of
    /// `logits`. The logits for a token must not depend on the batch.
    fn forward(
        &self,
        states: &mut [&mut Self::State],
        tokens: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), Self::Error>;
    /// Threads the model computes with. Above 1, the per-row work after a
    /// forward pass (frequency tables and intervals, range decoding,
    /// cross-entropies) runs in parallel through [`LanguageModel::in_pool`].
    fn threads(&self) -> usize {
        1
    }
    /// Runs `f` where rayon's parallel iterators use the model's threads
    /// (default: the caller's thread and rayon's global pool).
    fn in_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        f()
    }
}

/// A tokenizer with `decode(encode(x)) == x` for every byte string, and
/// `decode(a ++ b) == decode(a) ++ decode(b)`.
pub trait TextTokenizer {
    /// Failure to decode (e.g. a special token without bytes).
    type Error: StdError + Send + Sync + 'static;
    /// Token ids of `bytes`.
    fn encode(&self, bytes: &[u8]) -> Vec<u32>;
    /// Bytes of `tokens`.
    fn decode(&self, tokens: &[u32]) -> Result<Vec<u8>, Self::Error>;
    /// Number of token ids.
    fn vocab_size(&self) -> usize;
}

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
    /// Entropy coder for model-coded chunks.
    pub coder: CoderKind,
    /// Tokens per chunk (each chunk restarts the model: more context per
    /// chunk compresses better, more chunks decode in parallel).
    pub chunk_tokens: u32,
    /// log2 of the frequency total of the arithmetic coder.
    pub total_bits: u32,
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
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            coder: CoderKind::Arithmetic,
            chunk_tokens: 2048,
            total_bits: DEFAULT_TOTAL_BITS,
            segment_bytes: 4 << 20,
            piece_tokens: 256,
            zstd_level: 19,
            skip_binary: true,
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
}

impl Default for DecompressOptions {
    /// 32 chunks, within 1 GiB of states: all 32 for SmolLM2-135M at the
    /// default 2048-token chunks (25 MB each). More chunks per forward pass
    /// spread each pass's weight traffic over more tokens; alice29.txt (21
    /// chunks) decoded at 598 tokens/s with 32 in flight against 521 with
    /// 16 (2 threads, AVX-512, before the decoding pipeline of
    /// docs/NUMERICS.md; now about 690).
    fn default() -> Self {
        DecompressOptions {
            max_batch: 32,
            state_budget: 1 << 30,
        }
    }
}

/// Chunks in flight for a frame of `chunk_tokens`-token chunks.
fn batch_for(opts: &DecompressOptions, per_token: usize, chunk_tokens: u32) -> usize {
    let per_chunk = per_token.saturating_mul(chunk_tokens as usize).max(1);
    opts.max_batch.min(opts.state_budget / per_chunk).max(1)
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
}

/// Why compression or decompression failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The container is malformed (bad magic, truncation, caps...).
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The input holds no frame at all.
    #[error("input is empty: no llmc frame")]
    NoFrame,
    /// The frame was made with another model.
    #[error(
        "model mismatch in frame {frame}: the file was compressed with model '{file_name}' \
         (fingerprint {file_hex}), but the loaded model is '{model_name}' (fingerprint {model_hex})"
    )]
    ModelMismatch {
        /// Frame index.
        frame: u64,
        /// Name stored in the file.
        file_name: String,
        /// Short hex of the file's fingerprint.
        file_hex: String,
        /// Name of the loaded model.
        model_name: String,
        /// Short hex of the loaded model's fingerprint.
        model_hex: String,
    },
    /// Options or frame parameters the model cannot serve.
    #[error("invalid parameters: {0}")]
    Parameters(String),
    /// Frequency table parameters rejected.
    #[error("invalid coder parameters: {0}")]
    Freq(#[from] FreqError),
    /// A model-coded chunk does not decode.
    #[error("corrupt model chunk {chunk} of frame {frame}: {reason}")]
    CorruptChunk {
        /// Frame index.
        frame: u64,
        /// Record index within the frame.
        chunk: u64,
        /// What went wrong.
        reason: &'static str,
    },
    /// A zstd chunk does not decompress to its declared length.
    #[error("corrupt zstd chunk {chunk} of frame {frame}: {reason}")]
    CorruptZstd {
        /// Frame index.
        frame: u64,
        /// Record index within the frame.
        chunk: u64,
        /// zstd's complaint or the length mismatch.
        reason: String,
    },
    /// The end record's length disagrees with the decoded bytes.
    #[error(
        "frame {frame}: end record says {expected} bytes, {actual} were decoded (corrupt file)"
    )]
    Length {
        /// Frame index.
        frame: u64,
        /// Length recorded.
        expected: u64,
        /// Length decoded.
        actual: u64,
    },
    /// The decoded bytes do not hash to the recorded checksum.
    #[error("frame {frame}: checksum mismatch (xxh64 {expected:016x} recorded, {actual:016x} computed): corrupt file")]
    Checksum {
        /// Frame index.
        frame: u64,
        /// Recorded xxh64.
        expected: u64,
        /// Computed xxh64.
        actual: u64,
    },
    /// The model's forward pass failed.
    #[error("model forward pass failed: {0}")]
    Model(#[source] BoxError),
    /// The tokenizer could not decode tokens of a chunk.
    #[error("frame {frame}, chunk {chunk}: tokenizer cannot decode the tokens: {source}")]
    Tokenizer {
        /// Frame index.
        frame: u64,
        /// Record index within the frame.
        chunk: u64,
        /// The tokenizer's error.
        #[source]
        source: BoxError,
    },
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The progress callback returned `ControlFlow::Break`.
    #[error("interrupted")]
    Interrupted,
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

/// The model's cross-entropy on an input, as [`score`] measures it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    /// Input bytes covered by the scored chunks (all of the input unless the
    /// tokenizer fails to round-trip some of it).
    pub bytes: u64,
    /// Tokens scored.
    pub tokens: u64,
    /// Sum over tokens of `-log2 p(token)`: `p` is the softmax (in f64) of
    /// the model's logits for tokens after the first of a chunk, and
    /// `1 / vocab` for the first token of a chunk.
    pub bits: f64,
}

/// First 4 bytes of a fingerprint in hex, for messages.
pub fn short_hex(fp: &[u8; 32]) -> String {
    fp[..4].iter().map(|b| format!("{b:02x}")).collect()
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

/// Checks parameters shared by both directions; returns the frequency table.
fn check_parameters<M: LanguageModel>(
    model: &M,
    tokenizer_vocab: usize,
    chunk_tokens: u32,
    total_bits: u32,
) -> Result<FreqTable, CodecError> {
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
        return Err(CodecError::Parameters(format!(
            "chunk of {chunk_tokens} tokens: must be 1..={} and within the model context of {}",
            MAX_CHUNK_TOKENS,
            model.max_context()
        )));
    }
    Ok(FreqTable::new(vocab, total_bits)?)
}

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

/// Checks compression options against the model; returns the frequency table.
fn check_compress_options<M: LanguageModel>(
    model: &M,
    tokenizer_vocab: usize,
    opts: &CompressOptions,
) -> Result<FreqTable, CodecError> {
    let table = check_parameters(model, tokenizer_vocab, opts.chunk_tokens, opts.total_bits)?;
    if opts.segment_bytes == 0
        || opts.segment_bytes as u64 > MAX_RAW_CHUNK
        || opts.piece_tokens == 0
    {
        return Err(CodecError::Parameters(format!(
            "segment of {} bytes (must be 1..={MAX_RAW_CHUNK}) or piece of {} tokens (must be >= 1)",
            opts.segment_bytes, opts.piece_tokens
        )));
    }
    Ok(table)
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
    let mut table = check_compress_options(model, tokenizer.vocab_size(), opts)?;
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
        let model_chunks = seg.code_segment(
            bytes,
            total - bytes.len() as u64,
            &mut table,
            &mut out,
            progress,
        )?;
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

/// The model's cross-entropy on `input`, over exactly the chunks
/// [`compress`] with `opts` would model-code if every chunk won: the same
/// segments, tokenization and chunk cuts, the first token of each chunk at
/// `log2(vocab)` bits and every later one at `-log2 softmax(logits)[token]`
/// (f64) from the same forward passes. Chunks the compressor would store or
/// send to zstd are scored too, and no coder overhead is included.
/// `opts.coder` and `opts.total_bits` do not matter (the latter is checked).
/// `progress` is called after every forward pass (`bytes_out` stays 0).
pub fn score<M: LanguageModel, T: TextTokenizer>(
    input: &[u8],
    model: &M,
    tokenizer: &T,
    opts: &CompressOptions,
    progress: &mut ProgressFn,
) -> Result<Score, CodecError> {
    check_compress_options(model, tokenizer.vocab_size(), opts)?;
    let vocab = model.vocab_size();
    let first_bits = (vocab as f64).log2();
    let mut logits = Vec::new();
    let mut state = model.new_state();
    let mut result = Score::default();
    let mut base_in = 0u64;
    let mut segments = Segmenter::new(input, opts.segment_bytes);
    while let Some(seg) = segments.next_segment()? {
        let tokens = tokenizer.encode(seg);
        let (cuts, _) = plan_chunks(tokenizer, &tokens, seg, opts.chunk_tokens as usize, vocab);
        let mut pos = 0u64;
        for (range, bytes) in cuts {
            let chunk = &tokens[range];
            let (tokens_before, at) = (result.tokens, base_in + pos);
            result.bits += first_bits;
            model.reset_state(&mut state);
            run_chunk(
                model,
                &mut state,
                &mut logits,
                opts.piece_tokens,
                chunk,
                |rows, next| {
                    // Per row in parallel, summed in order (the same total
                    // whatever the threads).
                    let bits: Vec<f64> = if model.threads() > 1 {
                        model.in_pool(|| {
                            rows.par_chunks_exact(vocab)
                                .zip(next.par_iter())
                                .map(|(row, &t)| neg_log2_softmax(row, t as usize))
                                .collect()
                        })
                    } else {
                        rows.chunks_exact(vocab)
                            .zip(next)
                            .map(|(row, &t)| neg_log2_softmax(row, t as usize))
                            .collect()
                    };
                    result.bits += bits.iter().sum::<f64>();
                },
                |done| {
                    report(
                        progress,
                        Progress {
                            bytes_in: at + bytes as u64 * done as u64 / chunk.len() as u64,
                            bytes_out: 0,
                            tokens: tokens_before + done as u64,
                        },
                    )
                },
            )?;
            result.tokens += chunk.len() as u64;
            pos += bytes as u64;
            result.bytes += bytes as u64;
            report(
                progress,
                Progress {
                    bytes_in: base_in + pos,
                    bytes_out: 0,
                    tokens: result.tokens,
                },
            )?;
        }
        base_in += seg.len() as u64;
    }
    Ok(result)
}

/// `-log2 softmax(row)[target]` in f64 (reporting only, not on the coding
/// path, so it need not be bit-exact across machines).
fn neg_log2_softmax(row: &[f32], target: usize) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    (max + sum.ln() - row[target] as f64) / std::f64::consts::LN_2
}

/// Runs the model over one chunk as FORMAT.md section 5.1 prescribes:
/// feeds `chunk[..n-1]` to `state` (fresh or reset by the caller) in pieces
/// of `piece` tokens; for every token `j >= 1` calls `row(logits, chunk[j])`
/// with the `vocab` logits after token `j-1`, and after every forward pass
/// `after_pass(done)`, `done` = tokens of the chunk whose code is known
/// (the first token's included). Token 0 is the caller's business. A chunk
/// of one token makes no model call.
fn run_chunk<M: LanguageModel>(
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

/// Reads input in segments of at most `segment_bytes`, each cut by
/// [`cut_point`]. The cuts depend only on the bytes (a reader's short reads
/// are filled up), so [`compress_stream`] and [`score`] cut alike.
struct Segmenter<R: Read> {
    reader: R,
    segment_bytes: usize,
    buf: Vec<u8>,
    /// Length of the segment last returned (still at the front of `buf`).
    cut: usize,
    eof: bool,
}

impl<R: Read> Segmenter<R> {
    fn new(reader: R, segment_bytes: usize) -> Self {
        Segmenter {
            reader,
            segment_bytes,
            buf: Vec::new(),
            cut: 0,
            eof: false,
        }
    }

    /// The next segment, `None` at the end of the input.
    fn next_segment(&mut self) -> io::Result<Option<&[u8]>> {
        self.buf.drain(..self.cut);
        self.cut = 0;
        // Fill the buffer up to one segment.
        while !self.eof && self.buf.len() < self.segment_bytes {
            let old = self.buf.len();
            self.buf.resize(self.segment_bytes, 0);
            match self.reader.read(&mut self.buf[old..]) {
                Ok(0) => {
                    self.buf.truncate(old);
                    self.eof = true;
                }
                Ok(n) => self.buf.truncate(old + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(old),
                Err(e) => return Err(e),
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        self.cut = cut_point(&self.buf, self.eof);
        Ok(Some(&self.buf[..self.cut]))
    }
}

/// Where to end the segment in `buf`: all of it at end of input, else after
/// its last newline, else at the last UTF-8 character boundary, else all.
///
/// Any cut decodes correctly (segments are tokenized independently and the
/// tokenizer round-trips any bytes); cutting at a newline merely keeps words
/// and characters whole, which the model predicts better.
fn cut_point(buf: &[u8], eof: bool) -> usize {
    if eof {
        return buf.len();
    }
    if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
        return i + 1;
    }
    // Back up over at most 3 UTF-8 continuation bytes to a leading byte.
    let n = buf.len();
    for back in 0..4.min(n) {
        let b = buf[n - 1 - back];
        if b & 0xC0 != 0x80 {
            let need = match b {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            return if back + 1 >= need || n - 1 - back == 0 {
                n
            } else {
                n - 1 - back
            };
        }
    }
    n
}

/// Whether `raw` is binary data rather than text: more than 1 byte in 8 is a
/// control character (other than tab, line feed, form feed, carriage return)
/// or part of an invalid UTF-8 sequence. A language model codes such bytes
/// far worse than zstd, so the compressor does not spend model time on them
/// (a compressor choice, not part of the format: FORMAT.md section 6).
pub fn looks_binary(raw: &[u8]) -> bool {
    let mut bad = raw
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | 0x0c | b'\r')) || b == 0x7f)
        .count();
    let mut rest = raw;
    while let Err(e) = std::str::from_utf8(rest) {
        let skip = e.error_len().unwrap_or(rest.len() - e.valid_up_to());
        bad += skip;
        rest = &rest[e.valid_up_to() + skip..];
    }
    bad * 8 > raw.len()
}

/// How many tokens a chunk may be shortened by to find a cut where it
/// decodes on its own.
const MAX_SHRINK: usize = 8;

/// Cuts a segment's tokens into chunks of at most `n_chunk` tokens whose
/// bytes are the segment's bytes in order; returns each chunk's token range
/// and byte length, and how many bytes of `seg` they cover.
///
/// A chunk must decode on its own to the next bytes of the segment. A cut
/// inside a multi-token unit (e.g. an escape token and its byte) breaks
/// that; a few tokens earlier it holds again. If a tokenizer breaks it
/// anyway (or emits ids outside the model's vocabulary), planning stops and
/// the rest of the segment is left for raw coding, rather than undecodable.
fn plan_chunks<T: TextTokenizer>(
    tokenizer: &T,
    tokens: &[u32],
    seg: &[u8],
    n_chunk: usize,
    vocab: usize,
) -> (Vec<(std::ops::Range<usize>, usize)>, usize) {
    let chunk_bytes = |chunk: &[u32], rest: &[u8]| -> Option<usize> {
        if chunk.iter().any(|&t| t as usize >= vocab) {
            return None;
        }
        match tokenizer.decode(chunk) {
            Ok(b) if !b.is_empty() && rest.starts_with(&b) => Some(b.len()),
            _ => None,
        }
    };
    let mut cuts = Vec::new();
    let mut pos = 0usize;
    let mut start = 0usize;
    while start < tokens.len() {
        let end = (start + n_chunk).min(tokens.len());
        let cut = (0..=MAX_SHRINK)
            .take_while(|&k| end - k > start)
            .find_map(|k| chunk_bytes(&tokens[start..end - k], &seg[pos..]).map(|n| (end - k, n)));
        let Some((end, bytes)) = cut else { break };
        cuts.push((start..end, bytes));
        pos += bytes;
        start = end;
    }
    (cuts, pos)
}

struct SegmentCoder<'a, M: LanguageModel, T: TextTokenizer> {
    model: &'a M,
    tokenizer: &'a T,
    opts: &'a CompressOptions,
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
        table: &mut FreqTable,
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
                Some(self.code_chunk(chunk, table, &mut tick)?)
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
        table: &mut FreqTable,
        tick: &mut dyn FnMut(usize) -> Result<(), CodecError>,
    ) -> Result<Vec<u8>, CodecError> {
        let vocab = self.model.vocab_size();
        let mut state = match self.state.take() {
            Some(mut s) => {
                self.model.reset_state(&mut s);
                s
            }
            None => self.model.new_state(),
        };
        let mut enc = ChunkEncoder::new(self.opts.coder, vocab);
        enc.encode_first(vocab, chunk[0]);
        run_chunk(
            self.model,
            &mut state,
            &mut self.logits,
            self.opts.piece_tokens,
            chunk,
            |rows, next| {
                if enc.codes_intervals() && self.model.threads() > 1 {
                    // The intervals are pure functions of (row, token):
                    // computed in parallel (a table per rayon job), coded
                    // in order.
                    let ivs: Vec<Interval> = self.model.in_pool(|| {
                        rows.par_chunks_exact(vocab)
                            .zip(next.par_iter())
                            .map_init(|| table.clone(), |tab, (row, &t)| interval(tab, row, t))
                            .collect()
                    });
                    for iv in ivs {
                        enc.encode_interval(iv);
                    }
                } else {
                    for (row, &t) in rows.chunks_exact(vocab).zip(next) {
                        enc.encode(table, row, t);
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
        let table = check_parameters(model, tokenizer.vocab_size(), h.chunk_tokens, h.total_bits)?;
        let mut fd = FrameDecoder {
            model,
            tokenizer,
            header: &h,
            frame,
            table,
            tables: Vec::new(),
            max_batch: batch_for(opts, model.state_bytes_per_token(), h.chunk_tokens),
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

/// Raw bytes buffered ahead of unfinished model chunks are capped at this.
const MAX_PENDING_BYTES: usize = 64 << 20;

struct FrameDecoder<'a, M: LanguageModel, T: TextTokenizer> {
    model: &'a M,
    tokenizer: &'a T,
    header: &'a FrameHeader,
    frame: u64,
    table: FreqTable,
    /// One table per chunk in flight, for decoding them in parallel.
    tables: Vec<FreqTable>,
    max_batch: usize,
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

    fn run<R: Read, W: Write>(
        &mut self,
        r: &mut FrameReader<R>,
        w: &mut CountingWriter<W>,
        progress: &mut ProgressFn,
    ) -> Result<(), CodecError> {
        let vocab = self.model.vocab_size();
        // Output entries in file order; `None` until the chunk is decoded.
        let mut queue: VecDeque<Option<Vec<u8>>> = VecDeque::new();
        let mut queue_base = 0u64; // entry index of queue[0]
        let mut pending_bytes = 0usize;
        let mut active: Vec<Slot<M::State>> = Vec::new();
        let mut end: Option<(u64, u64)> = None;
        let mut record = 0u64;
        let mut logits: Vec<f32> = Vec::new();
        // States of finished chunks, reused by later ones.
        let mut pool: Vec<M::State> = Vec::new();
        loop {
            // Read ahead while there is room in the batch and the queue.
            while end.is_none()
                && active.len() < self.max_batch
                && queue.len() < 4 * self.max_batch
                && pending_bytes < MAX_PENDING_BYTES
            {
                let entry = queue_base + queue.len() as u64;
                let rec = r.read_record(self.header)?;
                let raw = match rec {
                    Record::End {
                        original_len,
                        checksum,
                    } => {
                        end = Some((original_len, checksum));
                        continue;
                    }
                    Record::Model {
                        coder,
                        tokens,
                        payload,
                    } => {
                        // Token 0 needs no model (FORMAT.md section 5.1).
                        let mut dec = ChunkDecoder::new(coder, vocab, payload);
                        let first = dec
                            .decode_first(vocab)
                            .map_err(|_| self.left_interval(entry))?;
                        *self.tokens += 1;
                        let mut decoded = Vec::with_capacity(tokens as usize);
                        decoded.push(first);
                        if tokens == 1 {
                            // Done without the model: output like a raw record.
                            self.finish_chunk(entry, &dec, &decoded)?
                        } else {
                            active.push(Slot {
                                entry,
                                dec,
                                state: {
                                    let mut s = match pool.pop() {
                                        Some(mut s) => {
                                            self.model.reset_state(&mut s);
                                            s
                                        }
                                        None => self.model.new_state(),
                                    };
                                    self.model.reserve_state(&mut s, tokens as usize);
                                    s
                                },
                                input: [first],
                                decoded,
                                want: tokens as usize,
                            });
                            queue.push_back(None);
                            record += 1;
                            continue;
                        }
                    }
                    Record::Stored(b) => b,
                    Record::Zstd {
                        original_len,
                        payload,
                    } => unzstd(&payload, original_len).map_err(|reason| {
                        CodecError::CorruptZstd {
                            frame: self.frame,
                            chunk: record,
                            reason,
                        }
                    })?,
                };
                record += 1;
                if queue.is_empty() {
                    self.emit(w, &raw)?;
                    queue_base += 1;
                } else {
                    pending_bytes += raw.len();
                    queue.push_back(Some(raw));
                }
                report(
                    progress,
                    Progress {
                        bytes_in: r.offset(),
                        bytes_out: w.count,
                        tokens: *self.tokens,
                    },
                )?;
            }
            // Write the finished prefix.
            while let Some(Some(_)) = queue.front() {
                let bytes = queue.pop_front().flatten().unwrap_or_default();
                pending_bytes = pending_bytes.saturating_sub(bytes.len());
                self.emit(w, &bytes)?;
                queue_base += 1;
            }
            if active.is_empty() {
                if end.is_some() {
                    break;
                }
                continue;
            }
            self.step(&mut active, &mut logits)?;
            let mut i = 0;
            while i < active.len() {
                if active[i].decoded.len() < active[i].want {
                    i += 1;
                    continue;
                }
                let slot = active.swap_remove(i);
                let bytes = self.finish_chunk(slot.entry, &slot.dec, &slot.decoded)?;
                pool.push(slot.state);
                let idx = (slot.entry - queue_base) as usize;
                pending_bytes += bytes.len();
                queue[idx] = Some(bytes);
            }
            report(
                progress,
                Progress {
                    bytes_in: r.offset(),
                    bytes_out: w.count,
                    tokens: *self.tokens,
                },
            )?;
        }
        let (expected_len, expected_sum) = end.unwrap_or_default();
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
        // chunk (own decoder, own table), so spread over the model's threads
        // (a frequency table is about 50 thousand exps).
        let rows = &logits[..n * vocab];
        let decoded: Vec<Result<u32, RangeCorrupt>> = if n > 1 && self.model.threads() > 1 {
            if self.tables.len() < n {
                self.tables.resize(n, self.table.clone());
            }
            let mut decs: Vec<&mut ChunkDecoder<Vec<u8>>> =
                active.iter_mut().map(|s| &mut s.dec).collect();
            let tables = &mut self.tables[..n];
            self.model.in_pool(|| {
                decs.par_iter_mut()
                    .zip(rows.par_chunks_exact(vocab))
                    .zip(tables.par_iter_mut())
                    .map(|((d, row), table)| d.decode(table, row))
                    .collect()
            })
        } else {
            active
                .iter_mut()
                .zip(rows.chunks_exact(vocab))
                .map(|(slot, row)| slot.dec.decode(&mut self.table, row))
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
