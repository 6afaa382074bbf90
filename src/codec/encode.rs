//! Compression: blocks -> transform -> tokens -> streams -> windows ->
//! model -> coder -> version-2 records.

use std::io::{Read, Write};

use rayon::prelude::*;
use xxhash_rust::xxh64::Xxh64;

use super::block::BlockText;
use super::fallback::lzma2;
use super::lockstep::{ngram_pass, Coded, Recorded};
use super::segment::{looks_binary, Segmenter};
use super::stream::{primed, primer_len, split_streams, windows, Window};
use super::{
    check_parameters, kernels, no_progress, report, CodecError, CompressOptions, CountingWriter,
    LanguageModel, ModelIdentity, Progress, ProgressFn, TextTokenizer,
};
use crate::coder::Interval;
use crate::container::v2::{self, Block, Body, Custom, Header, Stream, MAX_STREAMS};
use crate::container::MAX_RAW_CHUNK;
use crate::kernels::Kernels;
use crate::lm::parallel_rows;
use crate::predict::{ngram, ChunkEncoder, Softmax};

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
    let p = &opts.params;
    check_parameters(model, tokenizer_vocab, p.window, p.total_bits)?;
    if p.window < 2 || p.carry == 0 || p.carry >= p.window {
        return Err(CodecError::Parameters(format!(
            "window of {} tokens carrying {}: the window must be >= 2 and the carry 1..window",
            p.window, p.carry
        )));
    }
    if p.carry as u64 + p.sinks as u64 >= p.window as u64 || p.primer >= p.window {
        return Err(CodecError::Parameters(format!(
            "window of {} tokens carrying {} with {} sinks and a primer of {}: carry and sinks, \
             and the primer, must be below the window",
            p.window, p.carry, p.sinks, p.primer
        )));
    }
    if p.ngram() && (p.total_bits > ngram::MAX_TABLE_BITS || model.vocab_size() > ngram::MAX_VOCAB)
    {
        return Err(CodecError::Parameters(format!(
            "the shared n-gram model needs total_bits <= {} and at most {} tokens (have {} \
             and {})",
            ngram::MAX_TABLE_BITS,
            ngram::MAX_VOCAB,
            p.total_bits,
            model.vocab_size()
        )));
    }
    if p.max_streams == 0 || p.max_streams as u64 > MAX_STREAMS || p.stream_tokens == 0 {
        return Err(CodecError::Parameters(format!(
            "{} streams (must be 1..={MAX_STREAMS}) of at least {} tokens (must be >= 1)",
            p.max_streams, p.stream_tokens
        )));
    }
    if opts.segment_bytes == 0
        || opts.segment_bytes as u64 > MAX_RAW_CHUNK
        || opts.piece_tokens == 0
    {
        return Err(CodecError::Parameters(format!(
            "block of {} bytes (must be 1..={MAX_RAW_CHUNK}) or piece of {} tokens (must be >= 1)",
            opts.segment_bytes, opts.piece_tokens
        )));
    }
    match (opts.level, super::Params::level(opts.level)) {
        (0, _) => Ok(()),
        (_, Some(lp))
            if lp.coder == p.coder
                && lp.total_bits == p.total_bits
                && lp.window == p.window
                && lp.carry == p.carry
                && lp.sinks == p.sinks
                && lp.primer == p.primer
                && lp.adaptive == p.adaptive =>
        {
            Ok(())
        }
        (l, _) => Err(CodecError::Parameters(format!(
            "level {l} with decoding parameters other than its own (use level 0 for custom ones)"
        ))),
    }
}

/// The stream lengths of a block of `n` tokens (FORMAT.md 8.6). With the
/// shared n-gram a decoder must hold every stream of a block at once, so
/// there are no more streams than the default decoding budget holds
/// (`DecompressOptions::default().state_budget`, by the model's state size
/// at a full window): what llmc writes, llmc decodes without `-M`.
pub(super) fn block_streams<M: LanguageModel>(
    model: &M,
    p: &super::Params,
    n: usize,
) -> Vec<usize> {
    let mut max = p.max_streams as usize;
    if p.ngram() {
        let per_stream = model
            .state_bytes_per_token()
            .saturating_mul(p.window as usize)
            .max(1);
        max = max
            .min(super::DecompressOptions::default().state_budget / per_stream)
            .max(1);
    }
    split_streams(n, max, p.stream_tokens as usize)
}

/// Bytes of the version-2 header for `opts` (whatever the model).
pub(super) fn header_len(opts: &CompressOptions) -> usize {
    let id = ModelIdentity {
        name: String::new(),
        fingerprint: [0; 32],
    };
    v2::encode_header(&frame_header(&id, opts)).len()
}

/// The version-2 header for `opts` and the model `id`.
fn frame_header(id: &ModelIdentity, opts: &CompressOptions) -> Header {
    let mut model = [0u8; 8];
    model.copy_from_slice(&id.fingerprint[..8]);
    let p = &opts.params;
    Header {
        model,
        level: super::Params::level_byte(opts.level),
        custom: (opts.level == 0).then_some(Custom {
            coder: p.coder,
            total_bits: p.total_bits,
            window: p.window,
            carry: p.carry,
            predictor: p.adaptive.flags(),
            sinks: p.sinks,
            primer: p.primer,
        }),
    }
}

/// Compresses everything `reader` yields into one frame on `writer`;
/// `progress` is called after every forward pass and every block, and stops
/// the work when it returns `Break`. Each block is written as soon as it is
/// coded. Returns the bytes written.
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
    let mut w = CountingWriter {
        inner: writer,
        count: 0,
    };
    w.write_all(&v2::encode_header(&frame_header(id, opts)))?;
    let mut coder = BlockCoder {
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
    let mut blocks = Segmenter::new(reader, opts.segment_bytes);
    while let Some(bytes) = blocks.next_segment()? {
        hasher.update(bytes);
        let record = coder.code_block(bytes, total, w.count, progress)?;
        total += bytes.len() as u64;
        w.write_all(&record)?;
        w.flush()?;
        report(
            progress,
            Progress {
                bytes_in: total,
                bytes_out: w.count,
                tokens: coder.tokens_done,
                original: total,
            },
        )?;
    }
    v2::write_end(&mut w, total, hasher.digest() as u32)?;
    w.flush()?;
    Ok(w.count)
}

/// Runs the model over one window of a stream (`codec::stream`): feeds
/// `stream[w.start..w.end]` to `state` (fresh or reset by the caller) in
/// pieces of `piece` tokens; for the coded rows calls
/// `rows(logits, next)` with the logits after tokens `j - 1` and the tokens
/// `j` they code (`j` in `w.first..=w.end`, in order); context rows are
/// computed and dropped. After every forward pass `after_pass(coded)`, the
/// window's tokens coded so far.
// Two callbacks and the window's inputs: bundling them into a struct for
// one private function would only move the list.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_window<M: LanguageModel>(
    model: &M,
    state: &mut M::State,
    logits: &mut Vec<f32>,
    piece: usize,
    stream: &[u32],
    w: Window,
    mut rows: impl FnMut(&[f32], &[u32]),
    mut after_pass: impl FnMut(usize) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let vocab = model.vocab_size();
    let fed = &stream[w.fed()];
    let piece = piece.min(fed.len()).max(1);
    if logits.len() < piece * vocab {
        logits.resize(piece * vocab, 0.0);
    }
    let silent = w.silent();
    for (p, input) in fed.chunks(piece).enumerate() {
        let first = p * piece;
        let out = &mut logits[..input.len() * vocab];
        model
            .forward(&mut [&mut *state], &[input], out)
            .map_err(|e| CodecError::Model(Box::new(e)))?;
        // Row r (fed token w.start + first + r) codes the token after it.
        let skip = silent.saturating_sub(first).min(input.len());
        if skip < input.len() {
            let next = &stream[w.start + first + skip + 1..w.start + first + input.len() + 1];
            rows(&out[skip * vocab..], next);
        }
        after_pass((first + input.len()).saturating_sub(silent))?;
    }
    Ok(())
}

struct BlockCoder<'a, M: LanguageModel, T: TextTokenizer> {
    model: &'a M,
    tokenizer: &'a T,
    opts: &'a CompressOptions,
    /// Kernels of the predictor.
    kernels: Kernels,
    /// `piece_tokens * vocab` logits, allocated on first use.
    logits: Vec<f32>,
    /// The model state, reused from window to window.
    state: Option<M::State>,
    tokens_done: u64,
}

impl<M: LanguageModel, T: TextTokenizer> BlockCoder<'_, M, T> {
    /// Codes one block (`seg`, after `base_in` input bytes; `out` bytes
    /// written before it) and returns its record: the model block if it is
    /// strictly smaller than the best classical one, else that one.
    fn code_block(
        &mut self,
        seg: &[u8],
        base_in: u64,
        out: u64,
        progress: &mut ProgressFn,
    ) -> Result<Vec<u8>, CodecError> {
        let check = v2::check32(seg);
        let raw = v2::encode_block(&self.raw_block(seg, check)?);
        // Binary data is never worth the model's time.
        if self.opts.skip_binary && looks_binary(seg) {
            self.tokens_done += seg.len() as u64 / 4;
            return Ok(raw);
        }
        let p = self.opts.params;
        let text = BlockText::new(seg, p.crlf, p.reflow);
        let tokens = self.tokenizer.encode(&text.text);
        // At most two tokens per byte (the reader's bound), and the tokens
        // must give the text back.
        if tokens.len() > 2 * seg.len() || !text.round_trips(self.tokenizer, &tokens) {
            return Ok(raw);
        }
        let mut streams = Vec::new();
        let mut start = 0;
        let n = tokens.len() as u64;
        let lens = block_streams(self.model, &p, tokens.len());
        let primer = primer_len(p.primer as usize, &lens);
        // With the shared n-gram, each stream's tables are recorded first
        // and coded by the n-gram pass once every stream has run.
        let (mut coded, mut encs) = (Vec::new(), Vec::new());
        for len in lens {
            let (stream, lead) = primed(&tokens, start, len, primer);
            let (before, seg_len) = (self.tokens_done, seg.len() as u64);
            let mut tick = |done: u64| {
                let at = (start as u64 + done).min(n);
                report(
                    progress,
                    Progress {
                        bytes_in: base_in + seg_len * at / n,
                        bytes_out: out,
                        tokens: before + done,
                        original: base_in + seg_len * at / n,
                    },
                )
            };
            let mut intervals = Vec::new();
            let record = p.ngram().then_some(&mut intervals);
            let enc = self.code_stream(&stream, lead, record, &mut tick)?;
            self.tokens_done += len as u64;
            if p.ngram() {
                coded.push(Recorded {
                    tokens: stream.into_owned(),
                    lead,
                    intervals,
                });
                encs.push(enc);
            } else {
                streams.push(Stream {
                    tokens: len as u32,
                    payload: enc.finish(),
                });
            }
            start += len;
        }
        if p.ngram() {
            let views: Vec<Coded> = coded.iter().map(Recorded::view).collect();
            ngram_pass(&views, n, p.total_bits, |i, iv| encs[i].encode_mixed(iv));
            for (r, enc) in coded.iter().zip(encs) {
                streams.push(Stream {
                    tokens: (r.tokens.len() - r.lead) as u32,
                    payload: enc.finish(),
                });
            }
        }
        let model = v2::encode_block(&Block {
            original_len: seg.len() as u64,
            body: Body::Model {
                bare_lfs: text.endings.map(|e| e.bare),
                reflow: text.reflow,
                streams,
            },
            check,
        });
        Ok(if model.len() < raw.len() { model } else { raw })
    }

    /// Model-codes one stream (FORMAT.md section 8.4) whose first `lead`
    /// tokens are a primer (context only): token 0 uniformly if there is
    /// none, then each window's tokens from the logits of the window's
    /// state; `tick(tokens coded)` after every forward pass. With `record`,
    /// the tokens after token 0 are not coded: their intervals in the
    /// stream's tables go there, for the n-gram pass. Returns the encoder,
    /// to be finished.
    fn code_stream(
        &mut self,
        stream: &[u32],
        lead: usize,
        mut record: Option<&mut Vec<(u32, u32)>>,
        tick: &mut dyn FnMut(u64) -> Result<(), CodecError>,
    ) -> Result<ChunkEncoder, CodecError> {
        let vocab = self.model.vocab_size();
        let p = self.opts.params;
        let mut enc = ChunkEncoder::new(p.coder, p.adaptive, self.kernels, vocab, p.total_bits)?;
        let softmax = Softmax::new(self.kernels, vocab, p.total_bits)?;
        if lead == 0 {
            enc.encode_first(vocab, stream[0]);
        }
        for &t in &stream[..lead] {
            enc.observe(t);
        }
        let (carry, sinks) = (p.carry as usize, p.sinks as usize);
        for w in windows(stream.len(), lead, p.window as usize, carry, sinks) {
            let mut state = self.state.take().unwrap_or_else(|| self.model.new_state());
            w.enter(self.model, &mut state, carry, sinks);
            let coded_before = (w.first - lead) as u64;
            run_window(
                self.model,
                &mut state,
                &mut self.logits,
                self.opts.piece_tokens,
                stream,
                w,
                |rows, next| {
                    if let Some(rec) = record.as_deref_mut() {
                        for (row, &t) in rows.chunks_exact(vocab).zip(next) {
                            let (cum, freq) = enc.table_interval(row, t);
                            // Both below the table's total, at most 2^28.
                            rec.push((cum as u32, freq as u32));
                        }
                    } else if enc.codes_intervals() && parallel_rows() {
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
                |coded| tick(coded_before + coded as u64),
            )?;
            self.state = Some(state);
        }
        Ok(enc)
    }

    /// The smallest classical block for `raw`: zstd, raw LZMA2 or stored.
    fn raw_block(&self, raw: &[u8], check: u32) -> Result<Block, CodecError> {
        let z = zstd::bulk::compress(raw, self.opts.zstd_level)?;
        let x = lzma2(raw).map_err(CodecError::Fallback)?;
        let n = raw.len() as u64;
        let zl = v2::raw_block_len(n, false, z.len());
        let xl = v2::raw_block_len(n, false, x.len());
        let sl = v2::raw_block_len(n, true, raw.len());
        let body = if xl < zl && xl < sl {
            Body::Lzma2(x)
        } else if zl < sl {
            Body::Zstd(z)
        } else {
            Body::Stored(raw.to_vec())
        };
        Ok(Block {
            original_len: raw.len() as u64,
            body,
            check,
        })
    }
}
