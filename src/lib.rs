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
//!
//! # Quick start
//!
//! Load the default model once ([`engine::Engine::load`] fetches it into
//! the cache on first use), then compress and decompress any bytes:
//!
//! ```
//! use std::ops::ControlFlow;
//! use llmc::codec::{CompressOptions, DecompressOptions};
//! use llmc::engine::{Engine, EngineOptions};
//!
//! let engine = Engine::load(&EngineOptions { quiet: true, ..Default::default() })?;
//! let text = b"The quick brown fox jumps over the lazy dog.\n";
//! let mut packed = Vec::new();
//! engine.compress(&text[..], &mut packed, &CompressOptions::default(), &mut |_| {
//!     ControlFlow::Continue(())
//! })?;
//! let mut back = Vec::new();
//! engine.decompress(&packed[..], &mut back, &DecompressOptions::default(), &mut |_| {
//!     ControlFlow::Continue(())
//! })?;
//! assert_eq!(back, text);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`engine::Engine::score`] measures the bits the compressor would spend
//! (for ranking data or models), [`codec::Params::level`] gives a level's
//! settings, [`registry`] locates and fetches models, [`gguf::Gguf`] reads
//! model files and [`tokenizer::Tokenizer`] turns bytes into tokens.

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
