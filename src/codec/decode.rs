//! Decompression: records -> chunks in flight, advanced one token per
//! batched forward pass -> bytes in file order.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use rayon::prelude::*;
use xxhash_rust::xxh64::Xxh64;

use super::{
    check_parameters, no_progress, report, short_hex, CodecError, CountingWriter,
    DecompressOptions, LanguageModel, ModelIdentity, Progress, ProgressFn, TextTokenizer,
};
use crate::coder::RangeCorrupt;
use crate::container::{FrameHeader, FrameReader, Record};
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
                        let mut dec =
                            ChunkDecoder::new(coder, vocab, self.header.total_bits, payload)?;
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
                                    let mut s = self.model.fresh_state(pool.pop());
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
