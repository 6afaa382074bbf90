//! Decompression of version-2 frames: block by block; a model block's
//! streams are decoded together, one token of every stream in flight per
//! batched forward pass, each stream through its windows (FORMAT.md 8.4).
//! A block's bytes are written only after its check has been verified.

use std::io::{Read, Write};

use xxhash_rust::xxh64::Xxh64;

use rayon::prelude::*;

use super::batch::{forward_decode, forward_rows};
use super::fallback::{unlzma2, unzstd};
use super::stream::{primer_len, windows, Window};
use super::{
    report, CodecError, CountingWriter, LanguageModel, Params, Progress, ProgressFn, TextTokenizer,
};
use crate::container::v2::{check32, Block, Body, Header, Record, Stream};
use crate::container::FrameReader;
use crate::kernels::Kernels;
use crate::lm::parallel_rows;
use crate::predict::{ngram, AdaptiveConfig, ChunkDecoder, Ngram};
use crate::transform::{lf_to_crlf, unreflow, LineEndings};

/// The decoding parameters of a version-2 header (`None`: unknown level).
pub(super) fn header_params(h: &Header) -> Option<Params> {
    match h.custom {
        Some(c) => Some(Params {
            coder: c.coder,
            total_bits: c.total_bits,
            window: c.window,
            carry: c.carry,
            sinks: c.sinks,
            primer: c.primer,
            adaptive: AdaptiveConfig::from_flags(c.predictor)?,
            ..Params::default()
        }),
        None => Params::of_level_byte(h.level),
    }
    .filter(|p| !p.ngram() || p.total_bits <= ngram::MAX_TABLE_BITS)
}

/// A stream's decoder and its tokens so far, for one step.
type Work<'a> = (&'a mut ChunkDecoder<Vec<u8>>, &'a [u32]);

/// A stream being decoded.
struct Slot<S> {
    /// Index of the stream in its block.
    index: usize,
    dec: ChunkDecoder<Vec<u8>>,
    state: S,
    /// The primer (the first `lead` tokens), then the tokens decoded so
    /// far.
    tokens: Vec<u32>,
    lead: usize,
    want: usize,
    /// The window being decoded and the next ones.
    window: Window,
    rest: Box<dyn Iterator<Item = Window> + Send>,
}

/// Decodes the blocks of one version-2 frame.
pub(super) struct FrameDecoderV2<'a, M: LanguageModel, T: TextTokenizer> {
    pub model: &'a M,
    pub tokenizer: &'a T,
    pub params: Params,
    pub frame: u64,
    pub max_batch: usize,
    /// Memory the states in flight may take (a block with the shared
    /// n-gram decodes all its streams at once, or fails within it).
    pub state_budget: usize,
    pub piece_tokens: usize,
    pub kernels: Kernels,
    pub tokens: &'a mut u64,
}

/// Where a block stands, for progress reports: its offset in the input,
/// the bytes written before it and its original length.
#[derive(Debug, Clone, Copy)]
struct BlockAt {
    offset: u64,
    written: u64,
    len: u64,
}

impl<M: LanguageModel, T: TextTokenizer> FrameDecoderV2<'_, M, T> {
    /// Decodes blocks up to and including the end record; each block is
    /// written once its check holds; the end record's length and check
    /// are verified last.
    pub fn run<R: Read, W: Write>(
        &mut self,
        r: &mut FrameReader<R>,
        w: &mut CountingWriter<W>,
        progress: &mut ProgressFn,
    ) -> Result<(), CodecError> {
        let mut hasher = Xxh64::new(0);
        let mut written = 0u64;
        let mut block = 0u64;
        let mut logits = Vec::new();
        let mut pool = Vec::new();
        loop {
            let b = match r.read_record_v2()? {
                Record::End {
                    original_len,
                    check,
                } => {
                    if written != original_len {
                        return Err(CodecError::Length {
                            frame: self.frame,
                            expected: original_len,
                            actual: written,
                        });
                    }
                    let actual = hasher.digest() as u32;
                    if actual != check {
                        return Err(CodecError::Checksum {
                            frame: self.frame,
                            expected: check as u64,
                            actual: actual as u64,
                        });
                    }
                    return Ok(());
                }
                Record::Block(b) => b,
            };
            let at = BlockAt {
                offset: r.offset(),
                written: w.count,
                len: b.original_len,
            };
            let bytes = self.block_bytes(b, block, &mut logits, &mut pool, at, progress)?;
            hasher.update(&bytes);
            written += bytes.len() as u64;
            w.write_all(&bytes)?;
            block += 1;
            report(
                progress,
                Progress {
                    bytes_in: r.offset(),
                    bytes_out: w.count,
                    tokens: *self.tokens,
                    original: w.count,
                },
            )?;
        }
    }

    /// The verified original bytes of block `index`.
    fn block_bytes(
        &mut self,
        b: Block,
        index: u64,
        logits: &mut Vec<f32>,
        pool: &mut Vec<M::State>,
        at: BlockAt,
        progress: &mut ProgressFn,
    ) -> Result<Vec<u8>, CodecError> {
        let frame = self.frame;
        let corrupt = |reason: String| CodecError::CorruptBlock {
            frame,
            block: index,
            reason,
        };
        let bytes = match b.body {
            Body::Stored(bytes) => bytes,
            Body::Zstd(p) => unzstd(&p, b.original_len).map_err(corrupt)?,
            Body::Lzma2(p) => unlzma2(&p, b.original_len).map_err(corrupt)?,
            Body::Model {
                bare_lfs,
                reflow,
                streams,
            } => {
                let tokens = self.decode_streams(streams, index, logits, pool, at, progress)?;
                let text = self
                    .tokenizer
                    .decode(&tokens)
                    .map_err(|e| CodecError::Tokenizer {
                        frame: self.frame,
                        chunk: index,
                        source: Box::new(e),
                    })?;
                let text = match reflow {
                    None => text,
                    Some(w) => unreflow(&text, w),
                };
                match bare_lfs {
                    None => text,
                    Some(bare) => lf_to_crlf(&text, &LineEndings { bare })
                        .map_err(|e| corrupt(e.to_string()))?,
                }
            }
        };
        if bytes.len() as u64 != b.original_len {
            return Err(corrupt(format!(
                "{} bytes decoded, {} declared",
                bytes.len(),
                b.original_len
            )));
        }
        let actual = check32(&bytes);
        if actual != b.check {
            return Err(CodecError::BlockCheck {
                frame: self.frame,
                block: index,
                expected: b.check,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Decodes every stream of a model block; returns their tokens, in
    /// stream order. At most `max_batch` streams are in flight; a finished
    /// one makes room for the next.
    fn decode_streams(
        &mut self,
        streams: Vec<Stream>,
        block: u64,
        logits: &mut Vec<f32>,
        pool: &mut Vec<M::State>,
        at: BlockAt,
        progress: &mut ProgressFn,
    ) -> Result<Vec<u32>, CodecError> {
        let n = streams.len();
        // Tokens of the block (at least 1): the n-gram's size and progress.
        let want: u64 = streams
            .iter()
            .map(|s| u64::from(s.tokens))
            .sum::<u64>()
            .max(1);
        let start = *self.tokens;
        let lens: Vec<usize> = streams.iter().map(|s| s.tokens as usize).collect();
        let primer_want = primer_len(self.params.primer as usize, &lens);
        let mut primer: Option<Vec<u32>> = None;
        let mut done: Vec<Option<Vec<u32>>> = vec![None; n];
        // The shared n-gram needs every stream in the same step as the
        // encoder's pass had them (codec::lockstep): all in one batch.
        let mut ngram = self
            .params
            .ngram()
            .then(|| Ngram::new(want, self.params.total_bits));
        let max_batch = if ngram.is_some() {
            let per_stream = (self.model.state_bytes_per_token() as u64)
                .saturating_mul(u64::from(self.params.window))
                .max(1);
            let allowed = (self.state_budget as u64 / per_stream) as usize;
            if n > allowed {
                return Err(CodecError::StreamsOverBudget {
                    frame: self.frame,
                    block,
                    streams: n,
                    need_mb: per_stream.saturating_mul(n as u64).div_ceil(1 << 20),
                    allowed,
                });
            }
            n
        } else {
            self.max_batch
        };
        let mut waiting = streams.into_iter().enumerate().peekable();
        let mut active: Vec<Slot<M::State>> = Vec::new();
        loop {
            while active.len() < max_batch {
                // Streams after the first wait until the first has decoded
                // the primer.
                let Some(&(i, _)) = waiting.peek() else { break };
                if i > 0 && primer_want > 0 && primer.is_none() {
                    let first = active.iter().find(|s| s.index == 0).map(|s| &s.tokens);
                    match first.or(done[0].as_ref()) {
                        Some(t) if t.len() >= primer_want => {
                            primer = Some(t[..primer_want].to_vec());
                        }
                        _ => break,
                    }
                }
                let Some((i, s)) = waiting.next() else { break };
                let lead = if i > 0 { primer.as_deref() } else { None };
                if let Some(slot) = self.start_stream(i, s, lead, block, pool, &mut done)? {
                    active.push(slot);
                }
            }
            if active.is_empty() {
                break;
            }
            self.step(&mut active, block, logits, ngram.as_mut())?;
            let mut i = 0;
            while i < active.len() {
                if active[i].tokens.len() < active[i].want {
                    self.next_window(&mut active[i])?;
                    i += 1;
                    continue;
                }
                let slot = active.swap_remove(i);
                if !slot.dec.is_canonical() {
                    return Err(self.corrupt_stream(block, slot.index, "payload is not canonical"));
                }
                pool.push(slot.state);
                let mut tokens = slot.tokens;
                tokens.drain(..slot.lead);
                done[slot.index] = Some(tokens);
            }
            report(
                progress,
                Progress {
                    bytes_in: at.offset,
                    bytes_out: at.written,
                    tokens: *self.tokens,
                    original: at.written
                        + (u128::from(at.len) * u128::from((*self.tokens - start).min(want))
                            / u128::from(want)) as u64,
                },
            )?;
        }
        Ok(done.into_iter().flatten().flatten().collect())
    }

    fn corrupt_stream(&self, block: u64, stream: usize, why: &str) -> CodecError {
        CodecError::CorruptBlock {
            frame: self.frame,
            block,
            reason: format!("stream {stream}: {why}"),
        }
    }

    /// Starts decoding stream `i`: with no primer its token 0 needs no
    /// model, and a one-token stream is finished at once (into `done`);
    /// otherwise it gets a state, fed its first window's context (the
    /// primer), and its first window.
    fn start_stream(
        &mut self,
        i: usize,
        s: Stream,
        primer: Option<&[u32]>,
        block: u64,
        pool: &mut Vec<M::State>,
        done: &mut [Option<Vec<u32>>],
    ) -> Result<Option<Slot<M::State>>, CodecError> {
        let vocab = self.model.vocab_size();
        let p = self.params;
        let mut dec = ChunkDecoder::new(
            p.coder,
            p.adaptive,
            self.kernels,
            vocab,
            p.total_bits,
            s.payload,
        )?;
        let lead = primer.map_or(0, |t| t.len());
        let want = lead + s.tokens as usize;
        let mut tokens = Vec::with_capacity(want);
        match primer {
            Some(t) => {
                for &x in t {
                    dec.observe(x);
                }
                tokens.extend_from_slice(t);
            }
            None => {
                let first = dec.decode_first(vocab).map_err(|_| {
                    self.corrupt_stream(block, i, "range decoder left its interval")
                })?;
                *self.tokens += 1;
                tokens.push(first);
            }
        }
        let (window, carry, sinks) = (p.window as usize, p.carry as usize, p.sinks as usize);
        let mut rest = windows(want, lead, window, carry, sinks);
        let Some(window) = rest.next() else {
            if !dec.is_canonical() {
                return Err(self.corrupt_stream(block, i, "payload is not canonical"));
            }
            done[i] = Some(tokens);
            return Ok(None);
        };
        let mut state = self.model.fresh_state(pool.pop());
        self.model
            .reserve_state(&mut state, p.window.min(want as u32) as usize);
        let mut slot = Slot {
            index: i,
            dec,
            state,
            tokens,
            lead,
            want,
            window,
            rest: Box::new(rest),
        };
        self.feed_context(&mut slot)?;
        Ok(Some(slot))
    }

    /// Feeds a window's context rows (all but the last, which the next
    /// step feeds) to the slot's state.
    fn feed_context(&self, slot: &mut Slot<M::State>) -> Result<(), CodecError> {
        let w = slot.window;
        let context = &slot.tokens[w.start..w.first - 1];
        if context.is_empty() {
            return Ok(());
        }
        let vocab = self.model.vocab_size();
        let mut scratch = vec![0f32; self.piece_tokens.min(context.len()).max(1) * vocab];
        for piece in context.chunks(self.piece_tokens.max(1)) {
            self.model
                .forward(
                    &mut [&mut slot.state],
                    &[piece],
                    &mut scratch[..piece.len() * vocab],
                )
                .map_err(|e| CodecError::Model(Box::new(e)))?;
        }
        Ok(())
    }

    /// After a step: if the slot's window is fully decoded, move to the
    /// next one: slide the state, or empty it and feed it the carried
    /// context (all but the last context token, which the next step feeds).
    fn next_window(&self, slot: &mut Slot<M::State>) -> Result<(), CodecError> {
        if slot.tokens.len() <= slot.window.end {
            return Ok(());
        }
        let Some(w) = slot.rest.next() else {
            return Ok(());
        };
        slot.window = w;
        let p = self.params;
        w.enter(
            self.model,
            &mut slot.state,
            p.carry as usize,
            p.sinks as usize,
        );
        self.feed_context(slot)
    }

    /// One batched forward pass: every active stream is fed its last
    /// decoded token and decodes the next (with the block's n-gram mixed
    /// in, which then learns the step's tokens in stream order).
    fn step(
        &mut self,
        active: &mut [Slot<M::State>],
        block: u64,
        logits: &mut Vec<f32>,
        ngram: Option<&mut Ngram>,
    ) -> Result<(), CodecError> {
        let inputs: Vec<[u32; 1]> = active
            .iter()
            .map(|s| [*s.tokens.last().unwrap_or(&0)])
            .collect();
        let refs: Vec<&[u32]> = inputs.iter().map(|t| &t[..]).collect();
        let Some(ngram) = ngram else {
            let (mut states, mut decs): (Vec<_>, Vec<_>) = active
                .iter_mut()
                .map(|s| (&mut s.state, &mut s.dec))
                .unzip();
            let decoded = forward_decode(self.model, &mut states, &refs, &mut decs, logits)?;
            for (slot, t) in active.iter_mut().zip(decoded) {
                let t = t.map_err(|_| {
                    self.corrupt_stream(block, slot.index, "range decoder left its interval")
                })?;
                slot.tokens.push(t);
            }
            *self.tokens += active.len() as u64;
            return Ok(());
        };
        let mut states: Vec<_> = active.iter_mut().map(|s| &mut s.state).collect();
        let rows = forward_rows(self.model, &mut states, &refs, logits)?;
        let vocab = self.model.vocab_size();
        let shared = &*ngram;
        let mut work: Vec<Work> = active
            .iter_mut()
            .map(|s| (&mut s.dec, &s.tokens[..]))
            .collect();
        let decode =
            |((dec, history), row): (&mut Work, &[f32])| dec.decode_mixed(row, shared, history);
        let decoded: Vec<_> = if work.len() > 1 && parallel_rows() {
            work.par_iter_mut()
                .zip(rows.par_chunks_exact(vocab))
                .map(decode)
                .collect()
        } else {
            work.iter_mut()
                .zip(rows.chunks_exact(vocab))
                .map(decode)
                .collect()
        };
        drop(work);
        let mut order: Vec<usize> = (0..active.len()).collect();
        order.sort_unstable_by_key(|&k| active[k].index);
        for k in order {
            let slot = &mut active[k];
            let (t, mix, g) = decoded[k].map_err(|_| {
                self.corrupt_stream(block, slot.index, "range decoder left its interval")
            })?;
            ngram.update(&slot.tokens, t, &mix, g);
            slot.tokens.push(t);
        }
        *self.tokens += active.len() as u64;
        Ok(())
    }
}
