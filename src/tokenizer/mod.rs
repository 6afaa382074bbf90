//! Byte-level BPE tokenizer (GPT-2 style), as used by SmolLM2.
//!
//! # The encoding rule
//!
//! Compressed files store the model's predictions for the token sequence
//! that [`Tokenizer::encode`] produces, so this rule is part of the file
//! format: a compressor must produce exactly these ids. It is fixed as
//! follows.
//!
//! 1. **UTF-8 runs and invalid bytes.** The input is any byte string.
//!    Scanning left to right, a byte that does not start a well-formed UTF-8
//!    sequence (Unicode Table 3-7; the bytes Rust's `str::from_utf8` rejects)
//!    forms a pre-token by itself and is encoded as its single-byte token
//!    (or escaped, rule 6).
//!    The rest is a sequence of maximal well-formed UTF-8 runs; each run is
//!    pre-tokenized on its own, its ends acting as ends of text.
//! 2. **Digits.** Every `\p{N}` character is a pre-token by itself and acts
//!    as an end of text for the characters around it.
//! 3. **GPT-2 split.** The text between is cut by the GPT-2 pattern, matched
//!    leftmost-first as a backtracking regex engine does:
//!    `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
//!    The Unicode classes are those of the `regex-syntax` crate version in
//!    `Cargo.lock` (Unicode 16.0); `\s` is `\p{White_Space}`.
//! 4. **No normalization, no special tokens.** Text such as
//!    `<|endoftext|>` is ordinary text and is never encoded as the special
//!    token's id.
//! 5. **BPE.** Each pre-token starts as one token per byte. Repeatedly, the
//!    adjacent pair with the lowest merge rank (its index in the merge list;
//!    the leftmost occurrence on ties) is replaced by the merged token, until
//!    no adjacent pair has a merge. A pre-token longer than
//!    [`MAX_PIECE_BYTES`] bytes is BPE-encoded in consecutive parts of that
//!    many bytes (no input the compressor chunks reaches that size).
//! 6. **Bytes without a token.** A vocabulary need not have a single-byte
//!    token for every byte (SmolLM2's lacks 21: 0x04 0x06 0x13 0x14 0x16 0x1d
//!    0xc0 0xc1 0xf1 0xf2 0xf5..=0xff, and no token contains them). Such a
//!    byte takes no part in any merge and is written as two tokens: the
//!    *escape token*, then the token whose id is the byte's value (0..=255).
//!    The escape token is the lowest id that encoding can never produce
//!    otherwise: neither the (lowest-id) single-byte token of a byte nor the
//!    result of a merge. For SmolLM2 that is id 0, `<|endoftext|>`. A
//!    vocabulary that has all 256 byte tokens has no escape token.
//!
//! Decoding concatenates the tokens' bytes, reading an escape token and the
//! id after it as one byte, so `decode(encode(x)) == x` for every byte string
//! `x`. Construction fails if a byte has no token and there is no escape
//! token. Consequence for anyone cutting a token sequence into pieces: an
//! escape token and the id after it belong together (see
//! [`Tokenizer::escape_id`]).
//!
//! # Vocabulary format
//!
//! Token strings use GPT-2's byte-to-character mapping (see
//! `byte_level.rs`); every merge is `"left right"`, two token strings
//! separated by one space, in rank order. If a token string occurs twice the
//! lowest id is the one encoding produces; if a pair occurs twice in the
//! merge list its first (lowest) rank counts. This matches llama.cpp.

mod any;
mod bpe;
mod byte_level;
mod pretokenize;
mod spm;

pub use any::ModelTokenizer;
pub use spm::SpmTokenizer;

/// A tokenizer with `decode(encode(x)) == x` for every byte string, and
/// `decode(a ++ b) == decode(a) ++ decode(b)`.
pub trait TextTokenizer {
    /// Failure to decode (e.g. a special token without bytes).
    type Error: std::error::Error + Send + Sync + 'static;
    /// Token ids of `bytes`.
    fn encode(&self, bytes: &[u8]) -> Vec<u32>;
    /// Bytes of `tokens`.
    fn decode(&self, tokens: &[u32]) -> Result<Vec<u8>, Self::Error>;
    /// Number of token ids.
    fn vocab_size(&self) -> usize;
}

impl TextTokenizer for Tokenizer {
    type Error = TokenizerError;

    fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        Tokenizer::encode(self, bytes)
    }

    fn decode(&self, tokens: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        Tokenizer::decode(self, tokens)
    }

    fn vocab_size(&self) -> usize {
        Tokenizer::vocab_size(self)
    }
}

#[cfg(test)]
mod tests;

use rustc_hash::FxHashMap;

use bpe::{pair_key, Merge, MergeMap, Scratch};

/// Largest vocabulary accepted (ids must stay far below `u32::MAX`, which
/// the encoder uses as a marker).
pub const MAX_VOCAB: usize = 1 << 24;
/// Largest merge list accepted.
pub const MAX_MERGES: usize = 1 << 24;
/// Longest pre-token BPE-encoded in one piece; see rule 5 above.
pub const MAX_PIECE_BYTES: usize = 1 << 30;

/// Pre-tokens up to this length are memoized during one `encode` call.
const CACHE_MAX_PIECE: usize = 64;
/// The memo is cleared when it holds this many pre-tokens, bounding its
/// memory to a few MiB whatever the input.
const CACHE_MAX_ENTRIES: usize = 1 << 16;

/// Marker base in `byte_token` for bytes without a token: `ESCAPED + byte`.
/// Above every valid id (`MAX_VOCAB`) and below the BPE's internal markers.
const ESCAPED: u32 = 0xFFFF_FE00;

/// Errors building or using a [`Tokenizer`].
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer model {0:?} is not supported (only \"gpt2\" byte-level BPE is)")]
    Unsupported(String),
    #[error("pre-tokenizer {0:?} is not supported (only \"smollm\" is: digits split individually, then the GPT-2 pattern)")]
    UnsupportedPreTokenizer(String),
    #[error("reading tokenizer metadata: {0}")]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("vocabulary has {0} tokens, more than the limit of {MAX_VOCAB}")]
    VocabTooLarge(usize),
    #[error("merge list has {0} entries, more than the limit of {MAX_MERGES}")]
    TooManyMerges(usize),
    #[error("token {id} is not a byte-level token string: character {ch:?} is outside GPT-2's byte mapping")]
    InvalidTokenText { id: u32, ch: char },
    #[error("vocabulary has no single-byte token for byte 0x{0:02x} and no token free to serve as the escape token")]
    MissingByteToken(u8),
    #[error("merge {rank} is not two token strings separated by one space")]
    MalformedMerge { rank: u32 },
    #[error("merge {rank} names a token that is not in the vocabulary")]
    MergeUnknownToken { rank: u32 },
    #[error("merge {rank}: the merged token is not in the vocabulary")]
    MergeResultMissing { rank: u32 },
    #[error("token id {id} is out of range (vocabulary size {vocab_size})")]
    IdOutOfRange { id: u32, vocab_size: usize },
    #[error("escape token at position {index} is not followed by a byte id (0..=255)")]
    BadEscape { index: usize },
    #[error(
        "tokenizer model {0:?} is not supported by the SentencePiece tokenizer (only \"llama\" is)"
    )]
    NotSpm(String),
    #[error("tokenizer.ggml.add_space_prefix is true or absent (llama.cpp then prepends a space): not supported, the space would not decode back to the input")]
    SpacePrefix,
    #[error("{what} has {len} entries, but the vocabulary has {tokens} tokens")]
    VocabLengthMismatch {
        what: &'static str,
        len: usize,
        tokens: usize,
    },
    #[error("token {0} has an empty text")]
    EmptyToken(u32),
    #[error("tokens {first} and {second} have the same text")]
    DuplicateToken { first: u32, second: u32 },
    #[error("token {0} has a NaN score")]
    NanScore(u32),
    #[error("token {id} has the byte type but its text is not <0xXX>")]
    BadByteToken { id: u32 },
    #[error("vocabulary has no byte-type token <0x{0:02X}> for byte fallback")]
    MissingByteFallback(u8),
    #[error("vocabulary has {count} user-defined tokens, more than the {max} supported")]
    TooManyUserDefined { count: usize, max: usize },
    #[error("user-defined token {id} is {len} bytes long, more than the {max} supported")]
    UserDefinedTooLong { id: u32, len: usize, max: usize },
    #[error("user-defined tokens {a} and {b} can overlap in a text and are not runs of one byte: llama.cpp's longest-first matching of them is not implemented")]
    UserDefinedOverlap { a: u32, b: u32 },
    #[error("special token id {id} is out of range (vocabulary size {vocab_size})")]
    SpecialIdOutOfRange { id: u32, vocab_size: usize },
    #[error("token {id} is a control, unknown or unused token: it has no text to decode")]
    NoText { id: u32 },
}

/// A byte-level BPE tokenizer. Immutable after construction; `Send + Sync`.
pub struct Tokenizer {
    /// Bytes of all tokens, concatenated: token `i` is
    /// `token_data[token_offsets[i]..token_offsets[i + 1]]`.
    token_data: Vec<u8>,
    /// `vocab_size + 1` offsets into `token_data`.
    token_offsets: Vec<usize>,
    /// Id of the single-byte token of each byte, or `ESCAPED + byte` for a
    /// byte without one (such values match no merge).
    byte_token: [u32; 256],
    /// The escape token (rule 6), if some byte has no token.
    escape: Option<u32>,
    /// Merge rank and result id of each mergeable pair of ids.
    merges: MergeMap,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("merges", &self.merges.len())
            .finish()
    }
}

impl Tokenizer {
    /// Builds a tokenizer from GPT-2 byte-level token strings (index = id)
    /// and merges (`"left right"`, index = rank).
    pub fn from_vocab(tokens: &[&str], merges: &[&str]) -> Result<Tokenizer, TokenizerError> {
        if tokens.len() > MAX_VOCAB {
            return Err(TokenizerError::VocabTooLarge(tokens.len()));
        }
        if merges.len() > MAX_MERGES {
            return Err(TokenizerError::TooManyMerges(merges.len()));
        }
        let mut token_data = Vec::new();
        let mut token_offsets = Vec::with_capacity(tokens.len() + 1);
        token_offsets.push(0);
        for (id, text) in tokens.iter().enumerate() {
            for c in text.chars() {
                let b = byte_level::char_to_byte(c).ok_or(TokenizerError::InvalidTokenText {
                    id: id as u32,
                    ch: c,
                })?;
                token_data.push(b);
            }
            token_offsets.push(token_data.len());
        }
        let token = |id: usize| &token_data[token_offsets[id]..token_offsets[id + 1]];
        // Bytes -> id, lowest id first.
        let mut ids: FxHashMap<&[u8], u32> = FxHashMap::default();
        ids.reserve(tokens.len());
        for id in 0..tokens.len() {
            ids.entry(token(id)).or_insert(id as u32);
        }
        let mut byte_token = [0u32; 256];
        for (b, slot) in byte_token.iter_mut().enumerate() {
            *slot = ids
                .get(&[b as u8][..])
                .copied()
                .unwrap_or(ESCAPED + b as u32);
        }
        let mut merge_map = MergeMap::default();
        merge_map.reserve(merges.len());
        let mut joined = Vec::new();
        for (rank, text) in merges.iter().enumerate() {
            let rank = rank as u32;
            let (l, r) = text
                .split_once(' ')
                .filter(|(_, r)| !r.contains(' '))
                .ok_or(TokenizerError::MalformedMerge { rank })?;
            let l = byte_level::decode_token_text(l)
                .map_err(|_| TokenizerError::MergeUnknownToken { rank })?;
            let r = byte_level::decode_token_text(r)
                .map_err(|_| TokenizerError::MergeUnknownToken { rank })?;
            let (Some(&lid), Some(&rid)) = (ids.get(&l[..]), ids.get(&r[..])) else {
                return Err(TokenizerError::MergeUnknownToken { rank });
            };
            joined.clear();
            joined.extend_from_slice(&l);
            joined.extend_from_slice(&r);
            let &id = ids
                .get(&joined[..])
                .ok_or(TokenizerError::MergeResultMissing { rank })?;
            merge_map
                .entry(pair_key(lid, rid))
                .or_insert(Merge { rank, id });
        }
        // Rule 6: the escape token, needed only if a byte has no token.
        let escape = match byte_token.iter().position(|&id| id >= ESCAPED) {
            None => None,
            Some(missing) => {
                let mut reachable = vec![false; tokens.len()];
                for &id in byte_token.iter().filter(|&&id| id < ESCAPED) {
                    reachable[id as usize] = true;
                }
                for m in merge_map.values() {
                    reachable[m.id as usize] = true;
                }
                // The second token of an escape is an id 0..=255.
                if tokens.len() < 256 {
                    return Err(TokenizerError::MissingByteToken(missing as u8));
                }
                let e = reachable
                    .iter()
                    .position(|&r| !r)
                    .ok_or(TokenizerError::MissingByteToken(missing as u8))?;
                Some(e as u32)
            }
        };
        Ok(Tokenizer {
            token_data,
            token_offsets,
            byte_token,
            escape,
            merges: merge_map,
        })
    }

    /// Builds the tokenizer stored in a GGUF file's metadata:
    /// `tokenizer.ggml.model` must be `"gpt2"` and `tokenizer.ggml.pre`
    /// `"smollm"` (the only pre-tokenizer implemented: the encoding rule in
    /// the module documentation); the vocabulary is
    /// `tokenizer.ggml.tokens` (index = id) and `tokenizer.ggml.merges`
    /// (index = rank). `tokenizer.ggml.token_type` is not needed: special
    /// tokens are never matched in text.
    pub fn from_gguf(g: &crate::gguf::Gguf) -> Result<Tokenizer, TokenizerError> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::Unsupported(model.to_owned()));
        }
        let pre = g.get_str("tokenizer.ggml.pre")?;
        if pre != "smollm" {
            return Err(TokenizerError::UnsupportedPreTokenizer(pre.to_owned()));
        }
        let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
        let merges = g.get_str_array("tokenizer.ggml.merges")?;
        Tokenizer::from_vocab(&tokens, &merges)
    }

    /// Number of tokens in the vocabulary; valid ids are `0..vocab_size()`.
    pub fn vocab_size(&self) -> usize {
        self.token_offsets.len() - 1
    }

    /// The escape token of rule 6 (module documentation), if this
    /// vocabulary lacks some single-byte token. In a token sequence from
    /// [`Tokenizer::encode`] it is always followed by an id `0..=255`, the
    /// value of one byte; [`Tokenizer::decode`] reads the pair as that byte.
    pub fn escape_id(&self) -> Option<u32> {
        self.escape
    }

    /// The vocabulary bytes of token `id`, or `None` if `id` is out of
    /// range. (For the escape token this is its vocabulary text, not what
    /// it decodes to.)
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = usize::try_from(id).ok()?;
        if i >= self.vocab_size() {
            return None;
        }
        Some(&self.token_data[self.token_offsets[i]..self.token_offsets[i + 1]])
    }

    /// Encodes any bytes (valid UTF-8 or not) by the rule in the module
    /// documentation; [`Tokenizer::decode`] gives the bytes back.
    /// Special-token text is plain text; the only id emitted that is not a
    /// byte token or a merge result is the escape token (rule 6), always
    /// followed by a byte value.
    ///
    /// ```
    /// use llmc::engine::{Engine, EngineOptions};
    ///
    /// let engine = Engine::load(&EngineOptions { quiet: true, ..Default::default() })?;
    /// let tok = engine.tokenizer();
    /// let bytes = b"Hello\r\n\xff world";
    /// let ids = tok.encode(bytes);
    /// assert_eq!(tok.decode(&ids)?, bytes);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        // English averages 4+ bytes per token.
        let mut out = Vec::with_capacity(bytes.len() / 3 + 1);
        let mut scratch = Scratch::default();
        // Memo of pre-token -> ids, keyed by slices of `bytes`; the ids live
        // in `arena`.
        let mut cache: FxHashMap<&[u8], (usize, usize)> = FxHashMap::default();
        let mut arena: Vec<u32> = Vec::new();
        for piece in pretokenize::PreTokens::new(bytes) {
            if let [b] = piece {
                self.push_byte(*b, &mut out);
                continue;
            }
            if piece.len() > CACHE_MAX_PIECE {
                for part in piece.chunks(MAX_PIECE_BYTES) {
                    self.encode_piece(part, &mut scratch, &mut out);
                }
                continue;
            }
            if let Some(&(start, len)) = cache.get(piece) {
                out.extend_from_slice(&arena[start..start + len]);
                continue;
            }
            let first = out.len();
            self.encode_piece(piece, &mut scratch, &mut out);
            if cache.len() >= CACHE_MAX_ENTRIES {
                cache.clear();
                arena.clear();
            }
            cache.insert(piece, (arena.len(), out.len() - first));
            arena.extend_from_slice(&out[first..]);
        }
        out
    }

    /// Appends the token(s) of one byte that is a pre-token by itself.
    #[inline]
    fn push_byte(&self, b: u8, out: &mut Vec<u32>) {
        let id = self.byte_token[usize::from(b)];
        match self.escape {
            Some(e) if id >= ESCAPED => out.extend([e, u32::from(b)]),
            _ => out.push(id),
        }
    }

    /// Appends the BPE encoding of `piece`, escapes expanded (rule 6).
    fn encode_piece(&self, piece: &[u8], scratch: &mut Scratch, out: &mut Vec<u32>) {
        let first = out.len();
        bpe::encode_piece(piece, &self.byte_token, &self.merges, scratch, out);
        if let Some(e) = self.escape {
            if out[first..].iter().any(|&id| id >= ESCAPED) {
                let raw = out.split_off(first);
                for id in raw {
                    match id.checked_sub(ESCAPED) {
                        Some(b) => out.extend([e, b]),
                        None => out.push(id),
                    }
                }
            }
        }
    }

    /// Concatenates the bytes of `ids`, reading an escape token and the id
    /// after it as one byte (rule 6). An id outside the vocabulary, or an
    /// escape token not followed by an id `0..=255`, is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        let mut iter = ids.iter().enumerate();
        while let Some((index, &id)) = iter.next() {
            if Some(id) == self.escape {
                let b = iter
                    .next()
                    .and_then(|(_, &b)| u8::try_from(b).ok())
                    .ok_or(TokenizerError::BadEscape { index })?;
                out.push(b);
                continue;
            }
            let bytes = self.token_bytes(id).ok_or(TokenizerError::IdOutOfRange {
                id,
                vocab_size: self.vocab_size(),
            })?;
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }
}
