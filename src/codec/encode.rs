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
