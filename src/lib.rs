//! llmc: lossless compression with a language model as the probability model.
//!
//! Data flow, one module per noun:
//!
//! ```text
//! bytes -> tokenizer -> chunks -> model (kernels) -> probabilities -> coder -> container
//! ```
//!
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
pub mod tokenizer;
