//! llmc: lossless compression with a language model as the probability model.
//!
//! Data flow, one module per noun (docs/ARCHITECTURE.md):
//!
//! ```text
//! bytes -> tokenizer -> chunks -> model (kernels) -> logits -> predict -> table -> coder -> container
//! ```
//!
//! [`lm`] is the seam between the codec and a model, [`predict`] the one
//! between the logits and the [`coder`], and [`engine`] assembles a model,
//! its tokenizer and identity for the command line (and any other front end).
//! Every floating-point operation between token ids and the coder's integer
//! frequency table follows `docs/NUMERICS.md`, so a file compressed on one
//! machine decompresses on any other.

pub mod codec;
pub mod coder;
pub mod container;
pub mod engine;
pub mod gguf;
pub mod kernels;
pub mod lm;
pub mod mem;
pub mod model;
pub mod predict;
pub mod registry;
#[cfg(test)]
pub(crate) mod testing;
pub mod tokenizer;
pub mod transform;
