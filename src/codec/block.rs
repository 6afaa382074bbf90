//! One block's text as the model sees it: the input bytes after the
//! reversible transforms of `crate::transform` (FORMAT.md section 8.3).

use super::TextTokenizer;
use crate::transform::{
    choose_width, count_line_endings, crlf_pays, crlf_to_lf, reflow, LineEndings,
};

/// A block's bytes and the text its tokens code.
pub(super) struct BlockText {
    /// The text the tokenizer sees.
    pub text: Vec<u8>,
    /// `Some` if `text` has CRLF pairs written as LF.
    pub endings: Option<LineEndings>,
    /// `Some(width)` if `text` has paragraphs wrapped at `width` reflowed
    /// (after the CRLF transform).
    pub reflow: Option<u32>,
}

impl BlockText {
    /// The text of `bytes`, with the CRLF transform if `crlf` allows it and
    /// it pays, then the reflow transform if `reflow_allowed` and the
    /// text looks wrapped.
    pub fn new(bytes: &[u8], crlf: bool, reflow_allowed: bool) -> BlockText {
        let pays = crlf && {
            let (pairs, bare) = count_line_endings(bytes);
            crlf_pays(pairs, bare)
        };
        let (text, endings) = if pays {
            let (text, endings) = crlf_to_lf(bytes);
            (text, Some(endings))
        } else {
            (bytes.to_vec(), None)
        };
        let width = reflow_allowed.then(|| choose_width(&text)).flatten();
        BlockText {
            text: match width {
                Some(w) => reflow(&text, w),
                None => text,
            },
            endings,
            reflow: width,
        }
    }

    /// Whether `tokens` decode to exactly the text (a tokenizer that broke
    /// `decode(encode(x)) == x` would make the block undecodable).
    pub fn round_trips<T: TextTokenizer>(&self, tokenizer: &T, tokens: &[u32]) -> bool {
        matches!(tokenizer.decode(tokens), Ok(b) if b == self.text)
    }
}
