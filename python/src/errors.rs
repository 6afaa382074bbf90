//! llmc's errors as Python exceptions of precise types, each carrying
//! llmc's message (the whole chain of causes, as the command line prints it).
//!
//! ```text
//! LlmcError                 every llmc failure
//! ├── CorruptError          not an llmc file, truncated, damaged, checksum
//! ├── ModelMismatchError    the file was made with another model
//! └── ModelError            the model cannot be found, fetched or loaded
//! ```
//! An `OSError` of a wrapped file object and `KeyboardInterrupt` pass
//! through as themselves.

use std::error::Error as StdError;

use llmc::codec::CodecError;
use llmc::engine::EngineError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::PyErr;

create_exception!(
    llmc,
    LlmcError,
    PyException,
    "Every error llmc raises derives from this."
);
create_exception!(
    llmc,
    CorruptError,
    LlmcError,
    "The input is not a valid llmc file: not one at all, truncated, or damaged."
);
create_exception!(
    llmc,
    ModelMismatchError,
    LlmcError,
    "The file was compressed with another model than the one loaded; the message names it."
);
create_exception!(
    llmc,
    ModelError,
    LlmcError,
    "The model cannot be located, fetched or loaded."
);

/// `a: b: c` from an error and its sources, leaving out a cause whose text
/// its parent already quotes.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !parts.last().is_some_and(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// The exception for a codec error.
pub fn codec(e: CodecError) -> PyErr {
    let msg = chain(&e);
    match e {
        CodecError::ModelMismatch { .. } => ModelMismatchError::new_err(msg),
        CodecError::Io(_) => PyOSError::new_err(msg),
        CodecError::Parameters(_) | CodecError::Freq(_) => PyValueError::new_err(msg),
        CodecError::Kernel(_)
        | CodecError::Model(_)
        | CodecError::Interrupted
        | CodecError::StreamsOverBudget { .. } => LlmcError::new_err(msg),
        CodecError::Container(_)
        | CodecError::NoFrame
        | CodecError::CorruptChunk { .. }
        | CodecError::CorruptZstd { .. }
        | CodecError::Length { .. }
        | CodecError::Checksum { .. }
        | CodecError::Tokenizer { .. }
        | CodecError::CorruptBlock { .. }
        | CodecError::BlockCheck { .. }
        | CodecError::Fallback(_) => CorruptError::new_err(msg),
    }
}

/// The exception for a model that cannot be loaded.
pub fn engine(e: EngineError) -> PyErr {
    ModelError::new_err(chain(&e))
}
