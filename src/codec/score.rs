//! Scoring: the model's cross-entropy over the chunks compression would code.

use rayon::prelude::*;

use crate::coder::CoderKind;
use crate::lm::parallel_rows;
use crate::predict::{Adaptive, AdaptiveConfig, Predictor};

use super::block::BlockText;
use super::encode::{block_streams, check_compress_options, header_len, run_window};
use super::lockstep::{ngram_pass, Coded, Recorded};
use super::segment::Segmenter;
use super::stream::{primed, primer_len, windows};
use super::{
    report, CodecError, CompressOptions, LanguageModel, Progress, ProgressFn, TextTokenizer,
};
use crate::container::v2;
use crate::kernels::Kernels;

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
    /// Bytes of the frame compression would write if every block were
    /// model-coded (a block the tokenizer cannot round-trip counted as
    /// stored): the header, each block's record with `ceil(bits / 8)`
    /// payload bytes per stream, and the end record. The coder's end adds
    /// up to one byte per stream more. At high ratios or on small inputs
    /// this, not `bits / 8`, is what to compare with a real file.
    pub size: u64,
}

/// The model's cross-entropy on `input`, over exactly the streams
/// [`super::compress`] with `opts` would model-code if every block won: the
/// same blocks, line-ending transform, tokenization, streams and windows;
/// the first token of each stream at `log2(vocab)` bits and every later one
/// at `-log2 softmax(logits)[token]` (f64) from the same forward passes, or,
/// when the level's adaptive predictor runs, at `-log2 f/total` of the
/// table that codes it: the predictor's own, or the mixed one of the
/// block's shared n-gram (in the decoder's step order, as
/// `codec::lockstep` codes it); what the coder spends, less its < 0.1%.
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
    let (carry, sinks, first_bits) = (p.carry as usize, p.sinks as usize, (vocab as f64).log2());
    let mut logits = Vec::new();
    let mut state = model.new_state();
    let mut result = Score::default();
    let mut bits = vec![0f64; configs.len()];
    let mut sizes = vec![header_len(opts) as u64; configs.len()];
    let mut base_in = 0u64;
    let mut segments = Segmenter::new(input, opts.segment_bytes);
    while let Some(seg) = segments.next_segment()? {
        let block = BlockText::new(seg, p.crlf, p.reflow);
        let tokens = tokenizer.encode(&block.text);
        if !block.round_trips(tokenizer, &tokens) {
            base_in += seg.len() as u64;
            for z in sizes.iter_mut() {
                *z += v2::raw_block_len(seg.len() as u64, true, seg.len()) as u64;
            }
            continue;
        }
        let (seg_tokens, seg_len, seg_base) =
            (tokens.len() as u64, seg.len() as u64, result.tokens);
        let mut start = 0usize;
        let lens = block_streams(model, &p, tokens.len());
        let primer = primer_len(p.primer as usize, &lens);
        // Per setting with the shared n-gram: each stream's tokens, lead
        // and intervals, for the n-gram pass after the block's streams;
        // and per setting, the bits of each stream.
        let mut coded: Vec<Vec<Recorded>> = vec![Vec::new(); configs.len()];
        let mut stream_bits = vec![vec![0f64; lens.len()]; configs.len()];
        for (k, &len) in lens.iter().enumerate() {
            let (stream, lead) = primed(&tokens, start, len, primer);
            let stream: &[u32] = &stream;
            let mut records: Vec<Vec<(u32, u32)>> = vec![Vec::new(); configs.len()];
            let mut preds = stream_predictors(configs, &opts.params, kernels, vocab, stream, lead)?;
            start += len;
            if lead == 0 {
                stream_bits.iter_mut().for_each(|sb| sb[k] += first_bits);
                result.tokens += 1;
            }
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
                        let each = rows_bits(&mut preds, &mut records, rows, next, vocab);
                        for (sb, e) in stream_bits.iter_mut().zip(each) {
                            sb[k] += e;
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
            for ((c, intervals), a) in coded.iter_mut().zip(records).zip(&preds) {
                if matches!(a, Some(a) if a.config().ngram) {
                    let tokens = stream.to_vec();
                    c.push(Recorded {
                        tokens,
                        lead,
                        intervals,
                    });
                }
            }
        }
        let bare = block.endings.as_ref().map(|e| &e.bare[..]);
        for (((b, z), sb), c) in bits
            .iter_mut()
            .zip(sizes.iter_mut())
            .zip(&mut stream_bits)
            .zip(&coded)
        {
            if !c.is_empty() {
                let views: Vec<Coded> = c.iter().map(Recorded::view).collect();
                ngram_pass(&views, seg_tokens, p.total_bits, |i, (_, f, total)| {
                    sb[i] += (total as f64).log2() - (f as f64).log2();
                });
            }
            *z += block_len(seg_len, bare, block.reflow, &lens, sb) as u64;
            *b += sb.iter().sum::<f64>();
        }
        result.bytes += seg_len;
        base_in += seg_len;
        report(progress, Progress::input(base_in, result.tokens))?;
    }
    Ok(bits
        .into_iter()
        .zip(sizes)
        .map(|(b, z)| Score {
            bits: b,
            size: z + v2::end_len(base_in) as u64,
            ..result
        })
        .collect())
}

/// Each setting's predictor for a stream (`None`: the model's own
/// softmax), having seen the stream's primer or token 0.
fn stream_predictors(
    configs: &[AdaptiveConfig],
    p: &super::Params,
    kernels: Kernels,
    vocab: usize,
    stream: &[u32],
    lead: usize,
) -> Result<Vec<Option<Adaptive>>, CodecError> {
    configs
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
        .collect()
}

/// Each setting's bits for the `rows` coding `next` (0 for an n-gram
/// setting, whose intervals go to its `records` for the block's pass).
/// A learning predictor makes a stream's rows sequential; the settings are
/// independent of each other (run side by side).
fn rows_bits(
    preds: &mut [Option<Adaptive>],
    records: &mut [Vec<(u32, u32)>],
    rows: &[f32],
    next: &[u32],
    vocab: usize,
) -> Vec<f64> {
    let one = |(a, rec): (&mut Option<Adaptive>, &mut Vec<(u32, u32)>)| match a {
        Some(a) if a.config().ngram => {
            record_intervals(a, rows, next, vocab, rec);
            0.0
        }
        Some(a) => table_bits(a, rows, next, vocab),
        None => ideal_bits(rows, next, vocab),
    };
    if parallel_rows() && preds.len() > 1 {
        preds
            .par_iter_mut()
            .zip(records.par_iter_mut())
            .map(one)
            .collect()
    } else {
        preds.iter_mut().zip(records.iter_mut()).map(one).collect()
    }
}

/// The record of a model block of `len` bytes (CRLF exceptions `bare`,
/// reflow width `reflow`)
/// whose streams of `lens` tokens cost `bits` each, in whole bytes.
fn block_len(
    len: u64,
    bare: Option<&[u64]>,
    reflow: Option<u32>,
    lens: &[usize],
    bits: &[f64],
) -> usize {
    let streams: Vec<(u32, usize)> = lens
        .iter()
        .zip(bits)
        .map(|(&n, &x)| (n as u32, (x / 8.0).ceil() as usize))
        .collect();
    v2::model_block_len(len, bare, reflow, &streams)
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
