//! The llama model behind the codec's [`LanguageModel`] seam.

use super::{KvCache, Model, ModelError};
use crate::lm::LanguageModel;

impl LanguageModel for Model {
    type State = KvCache;
    type Error = ModelError;

    fn vocab_size(&self) -> usize {
        self.config().vocab
    }

    /// The context length less the prefix every state holds.
    fn max_context(&self) -> usize {
        self.config().context_len - self.prefix_len()
    }

    fn new_state(&self) -> KvCache {
        self.new_cache()
    }

    fn state_bytes_per_token(&self) -> usize {
        KvCache::bytes_per_token(self.config())
    }

    /// Keeps the cache's allocation (about 26 MB at 2048 tokens for SmolLM2).
    fn reset_state(&self, state: &mut KvCache) {
        state.clear();
    }

    /// Allocates the chunk's whole cache at once: growing it by doubling
    /// would copy it and fault in about twice its size.
    fn reserve_state(&self, state: &mut KvCache, tokens: usize) {
        state.reserve_tokens(tokens);
    }

    /// Moves the kept keys down with `KvCache::slide`, rotating each back
    /// by the distance it moves with the RoPE table of its layer.
    fn slide_state(&self, state: &mut KvCache, sinks: usize, keep: usize) {
        let front = state.prefix_len() + sinks;
        let len = state.len();
        if front + keep >= len {
            return;
        }
        let d = len - keep - front;
        let back: Vec<_> = (0..self.config().n_layer)
            .map(|l| self.rope_of(l).at(d))
            .collect();
        let par = self.threads() > 1;
        self.in_pool(|| state.slide(&self.kernels(), front, keep, &back, par));
    }

    fn forward(
        &self,
        states: &mut [&mut KvCache],
        tokens: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), ModelError> {
        Model::forward(self, states, tokens, logits)
    }
}
