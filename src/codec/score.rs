//! Scoring: the model's cross-entropy over the chunks compression would code.

use rayon::prelude::*;

use crate::lm::parallel_rows;

use super::encode::{check_compress_options, run_chunk};
use super::segment::{plan_chunks, Segmenter};
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

/// The model's cross-entropy on `input`, over exactly the chunks
/// [`super::compress`] with `opts` would model-code if every chunk won: the same
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
