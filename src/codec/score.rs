//! Scoring: the model's cross-entropy over the chunks compression would code.

use rayon::prelude::*;

use crate::coder::CoderKind;
use crate::lm::parallel_rows;
use crate::predict::{Adaptive, Predictor};

use super::block::BlockText;
use super::encode::{check_compress_options, run_window};
use super::segment::Segmenter;
use super::stream::{split_streams, windows};
use super::{
    report, CodecError, CompressOptions, LanguageModel, Progress, ProgressFn, TextTokenizer,
};

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

/// The model's cross-entropy on `input`, over exactly the streams
/// [`super::compress`] with `opts` would model-code if every block won: the
/// same blocks, line-ending transform, tokenization, streams and windows;
/// the first token of each stream at `log2(vocab)` bits and every later one
/// at `-log2 softmax(logits)[token]` (f64) from the same forward passes, or,
/// when the level's adaptive predictor runs, at `-log2 f/2^total_bits` of
/// the predictor's own table (what the coder spends, less its < 0.1%).
/// Blocks the compressor would store or send to a classical coder are
/// scored too, and no coder overhead is included. `opts.params.coder` and
/// `total_bits` do not matter (the latter is checked).
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
    let p = opts.params;
    let kernels = super::kernels(opts.kernels)?;
    let first_bits = (vocab as f64).log2();
    let mut logits = Vec::new();
    let mut state = model.new_state();
    let mut result = Score::default();
    let mut base_in = 0u64;
    let mut segments = Segmenter::new(input, opts.segment_bytes);
    while let Some(seg) = segments.next_segment()? {
        let block = BlockText::new(seg, p.crlf);
        let tokens = tokenizer.encode(&block.text);
        if !block.round_trips(tokenizer, &tokens) {
            base_in += seg.len() as u64;
            continue;
        }
        let (seg_tokens, seg_len) = (tokens.len() as u64, seg.len() as u64);
        let seg_base = result.tokens;
        let mut start = 0usize;
        for len in split_streams(
            tokens.len(),
            p.max_streams as usize,
            p.stream_tokens as usize,
        ) {
            let stream = &tokens[start..start + len];
            // A learning predictor makes the rows sequential: its tables,
            // the coder's own, give the bits.
            let mut adaptive = match (p.coder, p.adaptive.any()) {
                (CoderKind::Arithmetic, true) => {
                    let mut a = Adaptive::new(p.adaptive, kernels, vocab, p.total_bits)?;
                    a.observe(stream[0]);
                    Some(a)
                }
                _ => None,
            };
            start += len;
            result.bits += first_bits;
            result.tokens += 1;
            for w in windows(len, p.window as usize, p.carry as usize) {
                model.reset_state(&mut state);
                let done_before = result.tokens;
                run_window(
                    model,
                    &mut state,
                    &mut logits,
                    opts.piece_tokens,
                    stream,
                    w,
                    |rows, next| {
                        // Per row in parallel, summed in order (the same
                        // total whatever the threads).
                        if let Some(a) = adaptive.as_mut() {
                            for (row, &t) in rows.chunks_exact(vocab).zip(next) {
                                let table = a.predict(row);
                                let f = table.freqs()[t as usize] as f64;
                                result.bits += table.total_bits() as f64 - f.log2();
                                a.update(t);
                            }
                            return;
                        }
                        let bits: Vec<f64> = if parallel_rows() {
                            rows.par_chunks_exact(vocab)
                                .zip(next.par_iter())
                                .map(|(row, &t)| neg_log2_softmax(row, t as usize))
                                .collect()
                        } else {
                            rows.chunks_exact(vocab)
                                .zip(next)
                                .map(|(row, &t)| neg_log2_softmax(row, t as usize))
                                .collect()
                        };
                        result.bits += bits.iter().sum::<f64>();
                    },
                    |coded| {
                        let tokens = done_before + coded as u64;
                        let done = (tokens - seg_base).min(seg_tokens);
                        report(
                            progress,
                            Progress {
                                bytes_in: base_in + seg_len * done / seg_tokens,
                                bytes_out: 0,
                                tokens,
                            },
                        )
                    },
                )?;
                result.tokens += w.coded().len() as u64;
            }
        }
        result.bytes += seg_len;
        base_in += seg_len;
        report(
            progress,
            Progress {
                bytes_in: base_in,
                bytes_out: 0,
                tokens: result.tokens,
            },
        )?;
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
