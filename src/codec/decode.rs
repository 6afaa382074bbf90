//! Decompression: records -> chunks in flight, advanced one token per
//! batched forward pass -> bytes in file order.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use xxhash_rust::xxh64::Xxh64;

use super::batch::forward_decode;
use super::decode_v2::{header_params, FrameDecoderV2};
use super::fallback::unzstd;
use super::{
    check_parameters, kernels, no_progress, report, short_hex, short_hex8, CodecError,
    CountingWriter, DecompressOptions, LanguageModel, ModelIdentity, Progress, ProgressFn,
    TextTokenizer,
};
use crate::coder::CoderKind;
use crate::container::{FrameHeader, FrameReader, Header, Record};
use crate::kernels::Kernels;
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
/// work when it returns `Break`. Returns the bytes written.
///
/// Nothing unverified is written: a version-2 block is written once its
/// check holds (so at most the blocks before a bad one are written, each
/// verified), a version-1 frame once its end check holds.
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
        let h = match h {
            Header::V1(h) => h,
            Header::V2(h) => {
                if h.model != id.fingerprint[..8] {
                    let known = crate::registry::known_by_fingerprint(&h.model);
                    return Err(CodecError::ModelMismatch {
                        frame,
                        file_name: known.map_or("another model", |m| m.name).into(),
                        file_hex: short_hex8(&h.model),
                        model_name: id.name.clone(),
                        model_hex: short_hex(&id.fingerprint),
                        hint: known.map(|m| m.id),
                    });
                }
                let params = header_params(&h).ok_or_else(|| {
                    CodecError::Parameters(match h.custom {
                        Some(c) => format!(
                            "custom parameters with predictor flags {} and total_bits {}: the \
                             shared n-gram needs total_bits <= {}",
                            c.predictor,
                            c.total_bits,
                            crate::predict::ngram::MAX_TABLE_BITS
                        ),
                        None => format!("unknown level {}", h.level),
                    })
                })?;
                check_parameters(
                    model,
                    tokenizer.vocab_size(),
                    params.window,
                    params.total_bits,
                )?;
                let mut fd = FrameDecoderV2 {
                    model,
                    tokenizer,
                    params,
                    frame,
                    max_batch: batch_for(opts, model.state_bytes_per_token(), params.window),
                    state_budget: opts.state_budget,
                    piece_tokens: 256,
                    kernels,
                    tokens: &mut tokens,
                };
                fd.run(&mut r, &mut w, progress)?;
                frame += 1;
                continue;
            }
        };
        if h.fingerprint != id.fingerprint {
            return Err(CodecError::ModelMismatch {
                frame,
                file_name: h.model_name,
                file_hex: short_hex(&h.fingerprint),
                model_name: id.name.clone(),
                model_hex: short_hex(&id.fingerprint),
                hint: None,
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
        // A version-1 frame has one check, at its end: its bytes are held
        // until that check holds, so nothing unverified is released.
        let mut held = CountingWriter {
            inner: Vec::new(),
            count: 0,
        };
        fd.run(&mut r, &mut held, progress)?;
        w.write_all(&held.inner)?;
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
        let mut dec = ChunkDecoder::new(
            coder,
            Default::default(),
            self.kernels,
            vocab,
            self.header.total_bits,
            payload,
        )?;
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
                original: w.count,
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
        let n = active.len();
        let mut states = Vec::with_capacity(n);
        let mut inputs = Vec::with_capacity(n);
        let mut decs = Vec::with_capacity(n);
        for s in active.iter_mut() {
            states.push(&mut s.state);
            inputs.push(&s.input[..]);
            decs.push(&mut s.dec);
        }
        let decoded = forward_decode(self.model, &mut states, &inputs, &mut decs, logits)?;
        for (slot, t) in active.iter_mut().zip(decoded) {
            let t = t.map_err(|_| self.left_interval(slot.entry))?;
            slot.decoded.push(t);
            slot.input = [t];
        }
        *self.tokens += n as u64;
        Ok(())
    }
}
