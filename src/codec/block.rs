//! One block's text as the model sees it: the input bytes after the
//! reversible transforms of `crate::transform` (FORMAT.md section 8.3).

use super::TextTokenizer;
use crate::transform::{count_line_endings, crlf_pays, crlf_to_lf, LineEndings};

/// A block's bytes and the text its tokens code.
pub(super) struct BlockText {
    /// The text the tokenizer sees.
    pub text: Vec<u8>,
    /// `Some` if `text` has CRLF pairs written as LF.
    pub endings: Option<LineEndings>,
}

impl BlockText {
    /// The text of `bytes`, with the CRLF transform if `crlf` allows it and
    /// it pays.
    pub fn new(bytes: &[u8], crlf: bool) -> BlockText {
        if crlf {
            let (pairs, bare) = count_line_endings(bytes);
            if crlf_pays(pairs, bare) {
                let (text, endings) = crlf_to_lf(bytes);
                return BlockText {
                    text,
                    endings: Some(endings),
                };
            }
        }
        BlockText {
            text: bytes.to_vec(),
            endings: None,
        }
    }

    /// Whether `tokens` decode to exactly the text (a tokenizer that broke
    /// `decode(encode(x)) == x` would make the block undecodable).
    pub fn round_trips<T: TextTokenizer>(&self, tokenizer: &T, tokens: &[u32]) -> bool {
        matches!(tokenizer.decode(tokens), Ok(b) if b == self.text)
    }
}
