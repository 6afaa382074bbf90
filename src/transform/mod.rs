//! Reversible transforms applied to a block's bytes before tokenizing
//! (FORMAT.md section 8.3): the model sees the transformed text, the
//! decoder restores the original bytes exactly.
//!
//! Line endings: CRLF text tokenizes badly ("\r\n" costs the model far more
//! than "\n"; about 4% of alice29.txt's size), so a block whose lines mostly
//! end in CRLF is coded with every CRLF pair written as a bare LF, and the
//! LFs that were bare in the original are listed as exceptions. Every other
//! byte, a lone CR included, passes through untouched, so any input
//! round-trips: mixed endings, "\r\r\n", a final CR, binary data.
//!
//! Reflow (`reflow.rs`): paragraphs wrapped at a fixed width become one
//! line each, applied after the CRLF transform.

/// Why a transformed block cannot be restored (a corrupt file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// An exception names an LF that the text does not have.
    #[error("line-ending exception {index} is beyond the block's {lfs} line feeds")]
    ExceptionRange {
        /// The LF index named.
        index: u64,
        /// LFs in the block's text.
        lfs: u64,
    },
}

/// The inverse data of the CRLF transform: which LFs of the transformed text
/// were bare LFs in the original (indices among the text's LFs, counted
/// from 0, strictly increasing). Every other LF was a CRLF pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineEndings {
    /// Indices of the LFs to restore as a bare LF.
    pub bare: Vec<u64>,
}

/// Counts of line endings in `bytes`: `(crlf pairs, bare LFs)`.
pub fn count_line_endings(bytes: &[u8]) -> (u64, u64) {
    let mut crlf = 0u64;
    let mut bare = 0u64;
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' {
            if prev == b'\r' {
                crlf += 1;
            } else {
                bare += 1;
            }
        }
        prev = b;
    }
    (crlf, bare)
}

/// Whether the CRLF transform pays on a block with these counts: each
/// exception costs a byte or two in the header, each converted pair saves
/// a fraction of a byte of model code (compressor policy, not format).
pub fn crlf_pays(crlf: u64, bare: u64) -> bool {
    crlf >= 4 && crlf >= 8 * bare
}

/// Writes every CRLF pair of `bytes` as LF; returns the text and the bare
/// LFs to restore.
pub fn crlf_to_lf(bytes: &[u8]) -> (Vec<u8>, LineEndings) {
    let mut text = Vec::with_capacity(bytes.len());
    let mut bare = Vec::new();
    let mut lf = 0u64;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            text.push(b'\n');
            lf += 1;
            i += 2;
            continue;
        }
        if b == b'\n' {
            bare.push(lf);
            lf += 1;
        }
        text.push(b);
        i += 1;
    }
    (text, LineEndings { bare })
}

/// Restores the original of a [`crlf_to_lf`] text: every LF becomes CRLF
/// except those `endings` lists. Errors if an exception names an LF the
/// text does not have (the indices are checked increasing when read).
pub fn lf_to_crlf(text: &[u8], endings: &LineEndings) -> Result<Vec<u8>, TransformError> {
    let lfs = text.iter().filter(|&&b| b == b'\n').count() as u64;
    if let Some(&last) = endings.bare.last() {
        if last >= lfs {
            return Err(TransformError::ExceptionRange { index: last, lfs });
        }
    }
    let mut out = Vec::with_capacity(text.len() + (lfs - endings.bare.len() as u64) as usize);
    let mut next = endings.bare.iter().copied().peekable();
    let mut lf = 0u64;
    for &b in text {
        if b == b'\n' {
            if next.peek() == Some(&lf) {
                next.next();
            } else {
                out.push(b'\r');
            }
            lf += 1;
        }
        out.push(b);
    }
    Ok(out)
}

mod reflow;
pub use reflow::{choose_width, reflow, unreflow, MAX_WIDTH as MAX_REFLOW_WIDTH};

#[cfg(test)]
mod tests;
