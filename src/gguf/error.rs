//! Errors of the GGUF reader. Offsets are byte offsets from the start of the
//! file.

use std::path::PathBuf;

/// Everything that can go wrong reading a GGUF file or looking things up in
/// it. Each variant names the problem precisely enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("not a GGUF file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },

    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),

    #[error("GGUF file truncated: {what} at offset {offset} runs past the end of the file")]
    Truncated { what: &'static str, offset: u64 },

    #[error("GGUF {what} is {value}, larger than the limit {max}")]
    TooLarge {
        what: &'static str,
        value: u64,
        max: u64,
    },

    #[error("invalid GGUF metadata value type {type_id} at offset {offset}")]
    InvalidValueType { type_id: u32, offset: u64 },

    #[error("GGUF metadata arrays nested deeper than {max} at offset {offset}")]
    NestingTooDeep { offset: u64, max: u32 },

    #[error("invalid GGUF bool byte {value} at offset {offset} (must be 0 or 1)")]
    InvalidBool { value: u8, offset: u64 },

    #[error("GGUF {what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, offset: u64 },

    #[error("duplicate GGUF metadata key {0:?}")]
    DuplicateKey(String),

    #[error("duplicate GGUF tensor name {0:?}")]
    DuplicateTensor(String),

    #[error("GGUF general.alignment is {0}; it must be a power of two between 1 and 1048576")]
    BadAlignment(u64),

    #[error("tensor {tensor:?} has {n_dims} dimensions; 1 to 4 are supported")]
    BadDimCount { tensor: String, n_dims: u32 },

    #[error("tensor {tensor:?} dimension {index} is {value}; dimensions must be 1 to 2^63-1")]
    BadDim {
        tensor: String,
        index: usize,
        value: u64,
    },

    #[error("tensor {tensor:?}: element count overflows")]
    ElementCountOverflow { tensor: String },

    #[error("tensor {tensor:?} has unknown ggml type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },

    #[error(
        "tensor {tensor:?} of type {ggml_type}: first dimension {dim0} is not a multiple of the block size {block_size}"
    )]
    NotBlockAligned {
        tensor: String,
        ggml_type: super::GgmlType,
        dim0: u64,
        block_size: u32,
    },

    #[error(
        "tensor {tensor:?} data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    #[error(
        "tensor {tensor:?} data (file bytes {start}..{end}) lies outside the file of {file_len} bytes"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },

    #[error("GGUF metadata key {0:?} is missing")]
    MissingKey(String),

    #[error("GGUF metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("GGUF metadata key {key:?} has value {value}, which does not fit in {expected}")]
    OutOfRange {
        key: String,
        value: String,
        expected: &'static str,
    },

    #[error("tensor {0:?} is missing from the GGUF file")]
    MissingTensor(String),
}
