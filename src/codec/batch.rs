//! One batched decoding step, shared by both format versions' decoders:
//! a forward pass of every stream (or chunk) in flight, fed one token each,
//! then each logits row decoded by that stream's own range decoder and
//! predictor.

use rayon::prelude::*;

use super::{CodecError, LanguageModel};
use crate::coder::RangeCorrupt;
use crate::lm::parallel_rows;
use crate::predict::ChunkDecoder;

/// Feeds `inputs[i]` to `states[i]` in one forward pass and decodes row `i`
/// of the logits with `decs[i]`; returns each row's token (or its decoder's
/// complaint). `logits` grows to `n * vocab` and is reused across steps.
pub(super) fn forward_decode<M: LanguageModel>(
    model: &M,
    states: &mut [&mut M::State],
    inputs: &[&[u32]],
    decs: &mut [&mut ChunkDecoder<Vec<u8>>],
    logits: &mut Vec<f32>,
) -> Result<Vec<Result<u32, RangeCorrupt>>, CodecError> {
    let vocab = model.vocab_size();
    let n = states.len();
    let rows = forward_rows(model, states, inputs, logits)?;
    // Rows are independent (own decoder and predictor), so they spread
    // over the threads: a frequency table is about 50 thousand exps.
    Ok(if n > 1 && parallel_rows() {
        decs.par_iter_mut()
            .zip(rows.par_chunks_exact(vocab))
            .map(|(d, row)| d.decode(row))
            .collect()
    } else {
        decs.iter_mut()
            .zip(rows.chunks_exact(vocab))
            .map(|(d, row)| d.decode(row))
            .collect()
    })
}

/// Feeds `inputs[i]` to `states[i]` in one forward pass; returns the
/// `n * vocab` logits rows (`logits` grows to hold them and is reused
/// across steps).
pub(super) fn forward_rows<'l, M: LanguageModel>(
    model: &M,
    states: &mut [&mut M::State],
    inputs: &[&[u32]],
    logits: &'l mut Vec<f32>,
) -> Result<&'l [f32], CodecError> {
    let n = states.len() * model.vocab_size();
    if logits.len() < n {
        logits.resize(n, 0.0);
    }
    model
        .forward(states, inputs, &mut logits[..n])
        .map_err(|e| CodecError::Model(Box::new(e)))?;
    Ok(&logits[..n])
}
