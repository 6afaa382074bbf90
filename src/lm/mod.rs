//! The language-model seam: token ids in, logits out.
//!
//! [`LanguageModel`] is all the codec knows of a model: how many logits it
//! gives, how long a context it holds, and the state policy (a fresh state
//! per coded unit, kept buffers when a state is reused). It carries no
//! thread pool: the codec runs its own per-row work on the rayon pool it is
//! called in, and a model schedules its forward pass on threads of its own
//! choosing (the engine calls the codec on the model's pool, so both share
//! the same threads).
//!
//! The llama model implements it in `model`; the codec's tests use the tiny
//! synthetic models of `codec::synthetic`. A second architecture plugs in by
//! implementing this trait.

use std::error::Error as StdError;

/// A causal language model that extends many sequences at once.
pub trait LanguageModel {
    /// Per-sequence state (the KV cache).
    type State;
    /// Failure of a forward pass.
    type Error: StdError + Send + Sync + 'static;
    /// Number of logits per token.
    fn vocab_size(&self) -> usize;
    /// Most tokens one state can hold.
    fn max_context(&self) -> usize;
    /// A fresh, empty state.
    fn new_state(&self) -> Self::State;
    /// Bytes a state grows by per token it holds (0 if negligible): the
    /// decoder sizes its batch of sequences in flight by it.
    fn state_bytes_per_token(&self) -> usize {
        0
    }
    /// Empties `state` for reuse by another sequence (a model whose state
    /// owns large buffers should keep them).
    fn reset_state(&self, state: &mut Self::State) {
        *state = self.new_state();
    }
    /// A hint that `state` will hold `tokens` tokens (the decoder knows each
    /// chunk's length): a model may allocate for them at once instead of
    /// growing step by step. Never changes a result.
    fn reserve_state(&self, _state: &mut Self::State, _tokens: usize) {}
    /// Slides `state`'s window (FORMAT.md section 8.4, sliding windows):
    /// keeps the first `sinks` tokens it holds (after any prefix of the
    /// model's own) and its last `keep` tokens, dropping those between, so
    /// that the next token follows the kept ones. A no-op when nothing would
    /// be dropped.
    fn slide_state(&self, state: &mut Self::State, sinks: usize, keep: usize);
    /// Appends `tokens[s]` to `states[s]` for every sequence `s` (one batched
    /// pass) and writes the logits after every appended token, sequence by
    /// sequence, token by token, `vocab_size()` each, into the front of
    /// `logits`. The logits for a token must not depend on the batch.
    fn forward(
        &self,
        states: &mut [&mut Self::State],
        tokens: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), Self::Error>;

    /// An empty state for a new sequence: `old` emptied by
    /// [`LanguageModel::reset_state`] (keeping its buffers) if there is one,
    /// else [`LanguageModel::new_state`].
    fn fresh_state(&self, old: Option<Self::State>) -> Self::State {
        match old {
            Some(mut s) => {
                self.reset_state(&mut s);
                s
            }
            None => self.new_state(),
        }
    }
}

/// Whether per-row work after a forward pass should run in parallel: the
/// rayon pool the caller runs in has more than one thread. Results never
/// depend on it (rows are independent and combined in order).
pub fn parallel_rows() -> bool {
    rayon::current_num_threads() > 1
}
