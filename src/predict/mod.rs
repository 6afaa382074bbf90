//! Between the model and the coder: a predictor turns the model's logits
//! for the next token into the coder's integer frequency table, and may
//! learn from every token coded.
//!
//! Calling order, the same in both directions (as in lpaq and paq8):
//! [`Predictor::predict`] with the logits row of the next token, the coder
//! codes (or decodes) the token with the returned table, then
//! [`Predictor::update`] with that token. Every piece of a predictor's state
//! and arithmetic is integer or fixed-point, specified in docs/NUMERICS.md,
//! so the decoder evolves it bit for bit as the encoder did, on any machine.
//!
//! - [`softmax`]: the identity predictor, the model's own distribution
//!   (NUMERICS.md section 9); stateless.
//! - [`rank`]: the rank coder of format version 1 (`--coder rank`): it codes
//!   the rank of the token among the logits with small adaptive tables.
//! - [`adaptive`]: format version 2's learning predictor over [`softmax`]:
//!   an online logit bias, a match model and SSE (NUMERICS.md section 10).
//! - [`ngram`]: the block's shared token n-gram model, mixed into every
//!   stream's table (NUMERICS.md section 12).
//! - [`chunk`]: one stream's tokens through a predictor and the range coder.

pub mod adaptive;
pub mod chunk;
pub mod ngram;
pub mod rank;
pub mod softmax;

pub use adaptive::{Adaptive, AdaptiveConfig};
pub use chunk::{ChunkDecoder, ChunkEncoder};
pub use ngram::{Mix, Ngram};
pub use rank::RankModel;
pub use softmax::Softmax;

use crate::coder::FreqTable;

/// Logits in, the coder's table out; learns from the coded tokens.
pub trait Predictor {
    /// The coder's table for the next token given the model's logits row
    /// (`vocab` long).
    fn predict(&mut self, logits: &[f32]) -> &FreqTable;
    /// Learns from the token just coded with the last table.
    fn update(&mut self, token: u32);
}

#[cfg(test)]
mod tests;
