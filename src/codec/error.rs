//! Why compression or decompression failed.

use std::io;

use super::BoxError;
use crate::coder::FreqError;
use crate::container::ContainerError;
use crate::kernels::KernelError;

/// Why compression or decompression failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The container is malformed (bad magic, truncation, caps...).
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The input holds no frame at all.
    #[error("input is empty: no llmc frame")]
    NoFrame,
    /// The frame was made with another model.
    #[error(
        "model mismatch in frame {frame}: the file was compressed with model '{file_name}' \
         (fingerprint {file_hex}), but the loaded model is '{model_name}' (fingerprint {model_hex}){}",
        mismatch_hint(.hint)
    )]
    ModelMismatch {
        /// Frame index.
        frame: u64,
        /// Name stored in the file.
        file_name: String,
        /// Short hex of the file's fingerprint.
        file_hex: String,
        /// Name of the loaded model.
        model_name: String,
        /// Short hex of the loaded model's fingerprint.
        model_hex: String,
        /// The file's model's short name when it is a known one (the
        /// message then says to decompress with `--model <name>`).
        hint: Option<&'static str>,
    },
    /// Options or frame parameters the model cannot serve.
    #[error("invalid parameters: {0}")]
    Parameters(String),
    /// `LLMC_KERNEL` names an unknown or unavailable kernel variant.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Frequency table parameters rejected.
    #[error("invalid coder parameters: {0}")]
    Freq(#[from] FreqError),
    /// A model-coded chunk does not decode.
    #[error("corrupt model chunk {chunk} of frame {frame}: {reason}")]
    CorruptChunk {
        /// Frame index.
        frame: u64,
        /// Record index within the frame.
        chunk: u64,
        /// What went wrong.
        reason: &'static str,
    },
    /// A zstd chunk does not decompress to its declared length.
    #[error("corrupt zstd chunk {chunk} of frame {frame}: {reason}")]
    CorruptZstd {
        /// Frame index.
        frame: u64,
        /// Record index within the frame.
        chunk: u64,
        /// zstd's complaint or the length mismatch.
        reason: String,
    },
    /// The end record's length disagrees with the decoded bytes.
    #[error(
        "frame {frame}: end record says {expected} bytes, {actual} were decoded (corrupt file)"
    )]
    Length {
        /// Frame index.
        frame: u64,
        /// Length recorded.
        expected: u64,
        /// Length decoded.
        actual: u64,
    },
    /// The decoded bytes do not hash to the recorded checksum.
    #[error("frame {frame}: checksum mismatch (xxh64 {expected:016x} recorded, {actual:016x} computed): corrupt file")]
    Checksum {
        /// Frame index.
        frame: u64,
        /// Recorded xxh64.
        expected: u64,
        /// Computed xxh64.
        actual: u64,
    },
    /// The model's forward pass failed.
    #[error("model forward pass failed: {0}")]
    Model(#[source] BoxError),
    /// The tokenizer could not decode tokens of a chunk.
    #[error("frame {frame}, chunk {chunk}: tokenizer cannot decode the tokens: {source}")]
    Tokenizer {
        /// Frame index.
        frame: u64,
        /// Record index within the frame.
        chunk: u64,
        /// The tokenizer's error.
        #[source]
        source: BoxError,
    },
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The progress callback returned `ControlFlow::Break`.
    #[error("interrupted")]
    Interrupted,
    /// A version-2 block does not decode.
    #[error("corrupt block {block} of frame {frame}: {reason}")]
    CorruptBlock {
        /// Frame index.
        frame: u64,
        /// Block index within the frame.
        block: u64,
        /// What is wrong.
        reason: String,
    },
    /// A version-2 block decoded to bytes whose check differs from the
    /// stored one.
    #[error("checksum mismatch in block {block} of frame {frame}: stored {expected:08x}, computed {actual:08x}")]
    BlockCheck {
        /// Frame index.
        frame: u64,
        /// Block index within the frame.
        block: u64,
        /// Stored check.
        expected: u32,
        /// Check of the decoded bytes.
        actual: u32,
    },
    /// The classical fallback coder failed.
    #[error(
        "block {block} of frame {frame}: its {streams} streams share an n-gram model and must \
         be decoded together, which needs about {need_mb} MB of model states; the memory limit \
         allows {allowed} at once (raise -M)"
    )]
    StreamsOverBudget {
        frame: u64,
        block: u64,
        streams: usize,
        need_mb: u64,
        allowed: usize,
    },

    #[error("fallback coder failed: {0}")]
    Fallback(String),
}

/// The end of a [`CodecError::ModelMismatch`] message.
fn mismatch_hint(id: &Option<&'static str>) -> String {
    match id {
        Some(id) => format!("; decompress it with --model {id} (fetched on first use)"),
        None => String::new(),
    }
}
