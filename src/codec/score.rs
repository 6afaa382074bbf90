//! Scoring: the model's cross-entropy over the chunks compression would code.

use rayon::prelude::*;

use crate::coder::CoderKind;
use crate::lm::parallel_rows;
use crate::predict::{Adaptive, AdaptiveConfig, Predictor};

use super::block::BlockText;
use super::encode::{check_compress_options, run_window};
use super::lockstep::{ngram_pass, Coded};
use super::segment::Segmenter;
use super::stream::{primed, primer_len, split_streams, windows};
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
    let configs = [opts.params.adaptive];
    let scores = score_predictors(input, model, tokenizer, opts, &configs, progress)?;
    Ok(scores[0])
}

/// [`score`] for several predictor settings at once, from the same forward
/// passes (`opts.params.adaptive` is ignored; one [`Score`] per entry of
/// `configs`, in order): what each part of the adaptive predictor pays on
/// an input, for the price of one model run.
pub fn score_predictors<M: LanguageModel, T: TextTokenizer>(
    input: &[u8],
    model: &M,
    tokenizer: &T,
    opts: &CompressOptions,
    configs: &[AdaptiveConfig],
    progress: &mut ProgressFn,
) -> Result<Vec<Score>, CodecError> {
    check_compress_options(model, tokenizer.vocab_size(), opts)?;
    let vocab = model.vocab_size();
    let p = opts.params;
    let kernels = super::kernels(opts.kernels)?;
    let first_bits = (vocab as f64).log2();
    let mut logits = Vec::new();
    let mut state = model.new_state();
    let mut result = Score::default();
    let mut bits = vec![0f64; configs.len()];
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
        let lens = split_streams(
            tokens.len(),
            p.max_streams as usize,
            p.stream_tokens as usize,
        );
        let primer = primer_len(p.primer as usize, &lens);
        // Per setting with the shared n-gram: each stream's tokens, lead
        // and intervals, for the n-gram pass after the block's streams.
        let ngram_on: Vec<bool> = configs
            .iter()
            .map(|c| c.ngram && p.coder == CoderKind::Arithmetic)
            .collect();
        let mut coded: Vec<Vec<(Vec<u32>, usize, Vec<(u32, u32)>)>> =
            vec![Vec::new(); configs.len()];
        for len in lens {
            let (stream, lead) = primed(&tokens, start, len, primer);
            let stream = &stream[..];
            let mut records: Vec<Vec<(u32, u32)>> = vec![Vec::new(); configs.len()];
            // A learning predictor makes a stream's rows sequential: its
            // tables, the coder's own, give the bits. The settings are
            // independent of each other (run side by side).
            let mut preds = configs
                .iter()
                .map(|&c| match (p.coder, c.any() || c.ngram) {
                    (CoderKind::Arithmetic, true) => {
                        let mut a = Adaptive::new(c, kernels, vocab, p.total_bits)?;
                        for &t in &stream[..lead.max(1)] {
                            a.observe(t);
                        }
                        Ok(Some(a))
                    }
                    _ => Ok(None),
                })
                .collect::<Result<Vec<_>, CodecError>>()?;
            start += len;
            if lead == 0 {
                for b in bits.iter_mut() {
                    *b += first_bits;
                }
                result.tokens += 1;
            }
            let (carry, sinks) = (p.carry as usize, p.sinks as usize);
            for w in windows(stream.len(), lead, p.window as usize, carry, sinks) {
                w.enter(model, &mut state, carry, sinks);
                let done_before = result.tokens;
                run_window(
                    model,
                    &mut state,
                    &mut logits,
                    opts.piece_tokens,
                    stream,
                    w,
                    |rows, next| {
                        let ideal = || -> f64 { ideal_bits(rows, next, vocab) };
                        let one = |((a, rec), &ng): (
                            (&mut Option<Adaptive>, &mut Vec<(u32, u32)>),
                            &bool,
                        )| {
                            match a {
                                Some(a) if ng => {
                                    record_intervals(a, rows, next, vocab, rec);
                                    0.0
                                }
                                Some(a) => table_bits(a, rows, next, vocab),
                                None => ideal(),
                            }
                        };
                        let each: Vec<f64> = if parallel_rows() && preds.len() > 1 {
                            preds
                                .par_iter_mut()
                                .zip(records.par_iter_mut())
                                .zip(ngram_on.par_iter())
                                .map(one)
                                .collect()
                        } else {
                            preds
                                .iter_mut()
                                .zip(records.iter_mut())
                                .zip(ngram_on.iter())
                                .map(one)
                                .collect()
                        };
                        for (b, e) in bits.iter_mut().zip(each) {
                            *b += e;
                        }
                    },
                    |coded| {
                        let tokens = done_before + coded as u64;
                        let done = (tokens - seg_base).min(seg_tokens);
                        let bytes = base_in + seg_len * done / seg_tokens;
                        report(progress, Progress::input(bytes, tokens))
                    },
                )?;
                result.tokens += w.coded().len() as u64;
            }
            for ((c, rec), &ng) in coded.iter_mut().zip(records).zip(&ngram_on) {
                if ng {
                    c.push((stream.to_vec(), lead, rec));
                }
            }
        }
        for ((c, &ng), b) in coded.iter().zip(&ngram_on).zip(bits.iter_mut()) {
            if !ng {
                continue;
            }
            let views: Vec<Coded> = c
                .iter()
                .map(|(tokens, lead, intervals)| Coded {
                    tokens,
                    first: if *lead == 0 { 1 } else { *lead },
                    intervals,
                })
                .collect();
            ngram_pass(&views, seg_tokens, p.total_bits, |_, (_, f, total)| {
                *b += (total as f64).log2() - (f as f64).log2();
            });
        }
        result.bytes += seg_len;
        base_in += seg_len;
        report(progress, Progress::input(base_in, result.tokens))?;
    }
    Ok(bits
        .into_iter()
        .map(|b| Score { bits: b, ..result })
        .collect())
}

/// Bits of `next` under the predictor's tables, row by row in order.
fn table_bits(a: &mut Adaptive, rows: &[f32], next: &[u32], vocab: usize) -> f64 {
    let mut bits = 0.0;
    for (row, &t) in rows.chunks_exact(vocab).zip(next) {
        let table = a.predict(row);
        let f = table.freqs()[t as usize] as f64;
        bits += table.total_bits() as f64 - f.log2();
        a.update(t);
    }
    bits
}

/// The intervals of `next` in the predictor's tables, row by row in order
/// (for the n-gram pass).
fn record_intervals(
    a: &mut Adaptive,
    rows: &[f32],
    next: &[u32],
    vocab: usize,
    out: &mut Vec<(u32, u32)>,
) {
    for (row, &t) in rows.chunks_exact(vocab).zip(next) {
        let (cum, freq) = a.predict(row).cum_freq(t as usize);
        a.update(t);
        out.push((cum as u32, freq as u32));
    }
}

/// `sum -log2 softmax(row)[t]` in f64, rows in parallel, summed in order
/// (the same total whatever the threads).
fn ideal_bits(rows: &[f32], next: &[u32], vocab: usize) -> f64 {
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
    bits.iter().sum()
}

/// `-log2 softmax(row)[target]` in f64 (reporting only, not on the coding
/// path, so it need not be bit-exact across machines).
fn neg_log2_softmax(row: &[f32], target: usize) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    (max + sum.ln() - row[target] as f64) / std::f64::consts::LN_2
}
