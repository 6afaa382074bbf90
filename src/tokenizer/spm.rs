//! SentencePiece-style BPE tokenizer (llama.cpp's `tokenizer.ggml.model =
//! "llama"`, `llm_tokenizer_spm` in `llama-vocab.cpp`), as used by Gemma 3.
//!
//! # The encoding rule
//!
//! Compressed files store the model's predictions for the token sequence
//! that [`SpmTokenizer::encode`] produces, so this rule is part of the file
//! format. With Gemma 3's vocabulary it gives exactly llama.cpp's ids
//! (`llama_tokenize` with `add_special = false, parse_special = false`) on
//! every valid UTF-8 text without U+2581: rules 2 and 3 depart from
//! llama.cpp only where llama.cpp would not give the input back (and rules
//! 4 and 5 only for vocabularies unlike Gemma's). Token types are those of
//! `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control,
//! 4 user-defined, 5 unused, 6 byte.
//!
//! 1. **User-defined tokens first.** The user-defined tokens are matched in
//!    the input bytes *leftmost-longest*: scanning from the start, at each
//!    position the longest user-defined token that the input continues with
//!    there is emitted (its id) and scanning resumes after it; where none
//!    matches, the byte is kept and scanning moves on by one byte. The kept
//!    bytes between matches form *fragments*, each encoded on its own by
//!    rules 2-5. Control, unknown and unused tokens are never matched
//!    (`<bos>`, `<start_of_turn>` in a text are plain text).
//!    llama.cpp (`tokenizer_st_partition`) instead takes the user-defined
//!    tokens one at a time, longest first, each matched leftmost-first
//!    without overlap in what is left. The two agree whenever two different
//!    user-defined tokens can overlap in a text (one inside the other, or a
//!    suffix of one being a prefix of the other) only if both are runs of
//!    one same byte, like `"\n\n"` and `"\n\n\n"`; construction refuses any
//!    other vocabulary ([`TokenizerError::UserDefinedOverlap`]). Gemma 3's
//!    165 user-defined tokens (runs of 1-31 `\n`, 2-31 spaces and 1-31 tabs,
//!    HTML tags such as `<table>` and `</h1>`, `[multimodal]`,
//!    `<start_of_image>`, `<end_of_image>`) pass.
//! 2. **Literal U+2581.** U+2581 (bytes `E2 96 81`) is SentencePiece's
//!    space marker, so a normal token containing it decodes to a space. Each
//!    occurrence of these three bytes in a fragment is therefore encoded as
//!    the three byte tokens `<0xE2><0x96><0x81>` and cuts the fragment: the
//!    *pieces* before and after are encoded separately by rules 3-5.
//! 3. **Symbols.** A piece is split into symbols: each well-formed UTF-8
//!    sequence (Unicode Table 3-7: what `str::from_utf8` accepts) is one
//!    symbol, and each byte that is not part of one is a symbol by itself.
//!    The text of a space symbol is U+2581 (`add_space_prefix` is false:
//!    nothing is prepended). llama.cpp takes a symbol's length from its
//!    first byte instead (clamped to the end), which on invalid UTF-8 can
//!    swallow the next bytes, even part of an escaped space, and then not
//!    decode back; on valid UTF-8 the two splits are the same. A piece whose
//!    symbol texts would exceed [`MAX_PIECE_BYTES`] bytes is encoded in
//!    consecutive parts cut before the symbol that would exceed it (no
//!    input the compressor chunks reaches that size).
//! 4. **Merges.** Repeatedly, of the adjacent symbol pairs whose
//!    concatenated text is a *normal* token, the pair whose token has the
//!    highest score is merged into one symbol (equal scores: the leftmost
//!    pair), until no pair qualifies (llama.cpp's
//!    `llm_tokenizer_spm_session`, which also accepts tokens of the other
//!    types as merge results; no such token can be formed in a Gemma 3
//!    fragment, so this changes nothing there). Scores compare as IEEE
//!    floats (`-0.0 == 0.0`); a NaN score is refused at construction.
//! 5. **Output.** Each final symbol, left to right: if its text is a normal
//!    token (a merged symbol always is), that token; otherwise one byte
//!    token `<0xXX>` per byte of the input it came from (a space gives
//!    `<0x20>`; llama.cpp would give the bytes of U+2581 there, which only
//!    matters for a vocabulary without a normal `"▁"` token).
//!
//! Decoding is per-token concatenation: a byte token gives its byte, a
//! normal token its text with every U+2581 replaced by a space, a
//! user-defined token its text. Control, unknown and unused tokens (and the
//! types llama.cpp does not know) decode to an error, as do ids out of
//! range; encoding never produces them. So `decode(encode(x)) == x` for every
//! byte string `x`: user-defined tokens and byte tokens give back their
//! bytes, and a normal token comes from a piece that has no U+2581 of its
//! own, where every U+2581 of its text was a space. Encoding emits at most
//! one token per input byte. The BOS token is never emitted; the caller
//! adds it ([`SpmTokenizer::bos_id`]).
//!
//! # Vocabulary requirements
//!
//! Token texts must be non-empty and distinct (llama.cpp also refuses
//! duplicates; it renames empty tokens, which is refused here). Every byte
//! needs a byte-type token `<0xXX>` (upper-case hex), and every byte-type
//! token must be spelt `<0x`, two hex digits, `>`. At most [`MAX_USER_DEFINED`] user-defined tokens of at
//! most [`MAX_USER_DEFINED_LEN`] bytes each, which must not overlap (rule 1).
//! llama.cpp's name-based type overrides (such as `<|im_end|>` forced to
//! control, or gpt-oss's `<|channel|>` forced to user-defined) and its
//! per-model strip flags are not applied: types are read as stored.
//! `tokenizer.ggml.pre` is ignored, as llama.cpp ignores it for this model.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use super::{TextTokenizer, TokenizerError, MAX_VOCAB};

#[cfg(test)]
#[path = "spm_tests.rs"]
mod tests;

/// `tokenizer.ggml.token_type` of a normal token.
pub const TYPE_NORMAL: i32 = 1;
/// `tokenizer.ggml.token_type` of an unknown token.
pub const TYPE_UNKNOWN: i32 = 2;
/// `tokenizer.ggml.token_type` of a control token.
pub const TYPE_CONTROL: i32 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token.
pub const TYPE_USER_DEFINED: i32 = 4;
/// `tokenizer.ggml.token_type` of an unused token.
pub const TYPE_UNUSED: i32 = 5;
/// `tokenizer.ggml.token_type` of a byte token `<0xXX>`.
pub const TYPE_BYTE: i32 = 6;

/// Most user-defined tokens accepted (the overlap check of rule 1 is
/// quadratic in their number).
pub const MAX_USER_DEFINED: usize = 1024;
/// Longest user-defined token accepted, in bytes.
pub const MAX_USER_DEFINED_LEN: usize = 64;
/// Longest symbol text BPE-encoded in one part; see rule 3.
pub const MAX_PIECE_BYTES: usize = 1 << 30;

/// The space marker U+2581 in UTF-8.
const MARK: &[u8] = "\u{2581}".as_bytes();
/// "No symbol" / "no token" marker.
const NONE: u32 = u32::MAX;

/// How a token decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Its text, U+2581 read as a space.
    Normal,
    /// One byte.
    Byte,
    /// Its text as is.
    UserDefined,
    /// Nothing: control, unknown and unused tokens, and types llama.cpp
    /// does not know.
    NoText,
}

/// A SentencePiece-style BPE tokenizer with byte fallback (Gemma 3).
/// Immutable after construction; `Send + Sync`. Its encoding rule, part of
/// the file format, is specified in the documentation of
/// `src/tokenizer/spm.rs`; `decode(encode(x)) == x` for every byte string.
pub struct SpmTokenizer {
    /// Decoded bytes of all tokens, concatenated: token `i` decodes to
    /// `data[offsets[i]..offsets[i + 1]]` unless its kind is `NoText`.
    data: Vec<u8>,
    /// `vocab_size + 1` offsets into `data`.
    offsets: Vec<usize>,
    kinds: Vec<Kind>,
    scores: Vec<f32>,
    /// Text (U+2581 for spaces) -> id, normal tokens only.
    pieces: FxHashMap<Box<[u8]>, u32>,
    /// Longest normal token text, in bytes.
    max_piece: usize,
    /// Normal token of each ASCII character (for the space: of "▁"), or
    /// `NONE`.
    ascii: [u32; 128],
    /// Byte token of each byte.
    byte_ids: [u32; 256],
    user: UserDefined,
    bos: Option<u32>,
}

/// Rule 1's matcher: user-defined tokens by first byte.
struct UserDefined {
    /// Per first byte: (text, id), longest first.
    by_first: Vec<Vec<(Box<[u8]>, u32)>>,
    /// Per first byte: bitset of the second bytes of its tokens.
    second: Vec<[u64; 4]>,
    /// Per first byte: the one-byte token, or `NONE`.
    single: [u32; 256],
}

impl std::fmt::Debug for SpmTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpmTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("normal", &self.pieces.len())
            .field("bos", &self.bos)
            .finish()
    }
}

fn bit(set: &[u64; 4], b: u8) -> bool {
    set[usize::from(b >> 6)] >> (b & 63) & 1 == 1
}

fn set_bit(set: &mut [u64; 4], b: u8) {
    set[usize::from(b >> 6)] |= 1 << (b & 63);
}

/// The byte of a byte-token text `<0xXX>` (either case, as llama.cpp reads
/// it), if it is one.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl SpmTokenizer {
    /// Builds a tokenizer from token texts (index = id), their scores and
    /// `tokenizer.ggml.token_type` values; `bos` is what
    /// [`SpmTokenizer::bos_id`] reports (the BOS to prepend, if any). No
    /// space prefix. See the module documentation for what is refused.
    pub fn from_vocab(
        tokens: &[&str],
        scores: &[f32],
        types: &[i32],
        bos: Option<u32>,
    ) -> Result<SpmTokenizer, TokenizerError> {
        let n = tokens.len();
        if n > MAX_VOCAB {
            return Err(TokenizerError::VocabTooLarge(n));
        }
        for (what, len) in [("scores", scores.len()), ("token types", types.len())] {
            if len != n {
                return Err(TokenizerError::VocabLengthMismatch {
                    what,
                    len,
                    tokens: n,
                });
            }
        }
        if let Some(id) = bos.filter(|&id| id as usize >= n) {
            return Err(TokenizerError::SpecialIdOutOfRange { id, vocab_size: n });
        }
        let mut ids: FxHashMap<&str, u32> = FxHashMap::default();
        ids.reserve(n);
        let mut data = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        let mut kinds = Vec::with_capacity(n);
        let mut user = Vec::new();
        for (i, (&text, (&score, &ty))) in tokens.iter().zip(scores.iter().zip(types)).enumerate() {
            let id = i as u32;
            if text.is_empty() {
                return Err(TokenizerError::EmptyToken(id));
            }
            if let Some(&first) = ids.get(text) {
                return Err(TokenizerError::DuplicateToken { first, second: id });
            }
            ids.insert(text, id);
            if score.is_nan() {
                return Err(TokenizerError::NanScore(id));
            }
            let kind = match ty {
                TYPE_NORMAL => {
                    for (k, part) in text.split('\u{2581}').enumerate() {
                        if k > 0 {
                            data.push(b' ');
                        }
                        data.extend_from_slice(part.as_bytes());
                    }
                    Kind::Normal
                }
                TYPE_BYTE => {
                    let b = parse_byte_token(text).ok_or(TokenizerError::BadByteToken { id })?;
                    data.push(b);
                    Kind::Byte
                }
                TYPE_USER_DEFINED => {
                    data.extend_from_slice(text.as_bytes());
                    user.push((text.as_bytes(), id));
                    Kind::UserDefined
                }
                TYPE_UNKNOWN | TYPE_CONTROL | TYPE_UNUSED => Kind::NoText,
                // Types llama.cpp does not know (0 = undefined, others)
                // decode to nothing there too.
                _ => Kind::NoText,
            };
            kinds.push(kind);
            offsets.push(data.len());
        }
        let byte_ids = byte_fallback_ids(&ids, &kinds)?;
        let (pieces, max_piece) = normal_pieces(tokens, &kinds);
        let mut ascii = [NONE; 128];
        for (c, slot) in ascii.iter_mut().enumerate() {
            let text: &[u8] = if c == usize::from(b' ') {
                MARK
            } else {
                &[c as u8]
            };
            *slot = pieces.get(text).copied().unwrap_or(NONE);
        }
        Ok(SpmTokenizer {
            data,
            offsets,
            kinds,
            scores: scores.to_vec(),
            pieces,
            max_piece,
            ascii,
            byte_ids,
            user: UserDefined::new(&user)?,
            bos,
        })
    }

    /// Builds the tokenizer stored in a GGUF file's metadata:
    /// `tokenizer.ggml.model` must be `"llama"`, `tokenizer.ggml.tokens`,
    /// `.scores` (f32, or i32 as llama.cpp also accepts) and `.token_type`
    /// give the vocabulary, `tokenizer.ggml.add_space_prefix` must be false
    /// (absent means true to llama.cpp, so it must be present), and the BOS
    /// is `tokenizer.ggml.bos_token_id` if `tokenizer.ggml.add_bos_token` is
    /// true or absent (llama.cpp's default for this model).
    pub fn from_gguf(g: &crate::gguf::Gguf) -> Result<SpmTokenizer, TokenizerError> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "llama" {
            return Err(TokenizerError::NotSpm(model.to_owned()));
        }
        let flag = |key: &str| match g.get(key) {
            None => Ok(true),
            Some(_) => g.get_bool(key),
        };
        if flag("tokenizer.ggml.add_space_prefix")? {
            return Err(TokenizerError::SpacePrefix);
        }
        let bos = if flag("tokenizer.ggml.add_bos_token")? {
            Some(g.get_u32("tokenizer.ggml.bos_token_id")?)
        } else {
            None
        };
        let tokens = g.get_str_array("tokenizer.ggml.tokens")?;
        let key = "tokenizer.ggml.scores";
        let scores = match g.get_f32_array(key) {
            Ok(s) => s,
            Err(e) => match g.get_i32_array(key) {
                Ok(s) => s.into_iter().map(|x| x as f32).collect(),
                Err(_) => return Err(e.into()),
            },
        };
        let types = g.get_i32_array("tokenizer.ggml.token_type")?;
        SpmTokenizer::from_vocab(&tokens, &scores, &types, bos)
    }

    /// Number of tokens in the vocabulary; valid ids are `0..vocab_size()`.
    pub fn vocab_size(&self) -> usize {
        self.kinds.len()
    }

    /// The token to put before the text (`tokenizer.ggml.bos_token_id`) if
    /// the model wants one (`tokenizer.ggml.add_bos_token`); `encode` never
    /// adds it.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// What token `id` decodes to, or `None` if it is out of range or has no
    /// text (control, unknown, unused).
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = usize::try_from(id).ok()?;
        if *self.kinds.get(i)? == Kind::NoText {
            return None;
        }
        Some(&self.data[self.offsets[i]..self.offsets[i + 1]])
    }

    /// Concatenates what `ids` decode to. An id out of range, or of a token
    /// without text (control, unknown, unused), is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            match self.token_bytes(id) {
                Some(bytes) => out.extend_from_slice(bytes),
                None if (id as usize) < self.vocab_size() => {
                    return Err(TokenizerError::NoText { id })
                }
                None => {
                    return Err(TokenizerError::IdOutOfRange {
                        id,
                        vocab_size: self.vocab_size(),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Encodes any bytes (valid UTF-8 or not) by the rule in the module
    /// documentation, without BOS; [`SpmTokenizer::decode`] gives the bytes
    /// back.
    pub fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        let mut out = Vec::with_capacity(bytes.len() / 3 + 1);
        let mut scratch = Scratch::default();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            match self.user.match_at(&bytes[i..]) {
                Some((id, len)) => {
                    self.encode_fragment(&bytes[start..i], &mut scratch, &mut out);
                    out.push(id);
                    i += len;
                    start = i;
                }
                None => i += 1,
            }
        }
        self.encode_fragment(&bytes[start..], &mut scratch, &mut out);
        out
    }

    /// Rule 2: cuts a fragment at each literal U+2581.
    fn encode_fragment(&self, mut frag: &[u8], scratch: &mut Scratch, out: &mut Vec<u32>) {
        while let Some(at) = find_mark(frag) {
            self.encode_piece(&frag[..at], scratch, out);
            out.extend(MARK.iter().map(|&b| self.byte_ids[usize::from(b)]));
            frag = &frag[at + MARK.len()..];
        }
        self.encode_piece(frag, scratch, out);
    }

    /// Rule 3: the symbols of a piece, BPE-encoded by `merge_and_emit`.
    fn encode_piece(&self, piece: &[u8], s: &mut Scratch, out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        s.text.clear();
        s.syms.clear();
        for chunk in piece.utf8_chunks() {
            let valid = chunk.valid();
            for (at, c) in valid.char_indices() {
                let bytes = &valid.as_bytes()[at..at + c.len_utf8()];
                let (text, id) = match c {
                    ' ' => (MARK, self.ascii[usize::from(b' ')]),
                    c if c.is_ascii() => (bytes, self.ascii[bytes[0] as usize]),
                    _ => (bytes, self.pieces.get(bytes).copied().unwrap_or(NONE)),
                };
                self.push_symbol(text, id, s, out);
            }
            for &b in chunk.invalid() {
                self.push_symbol(&[b], NONE, s, out);
            }
        }
        self.merge_and_emit(s, out);
    }

    /// Appends one symbol (rule 3), first encoding what is there if the
    /// part would exceed `MAX_PIECE_BYTES`.
    fn push_symbol(&self, text: &[u8], id: u32, s: &mut Scratch, out: &mut Vec<u32>) {
        if s.text.len() + text.len() > MAX_PIECE_BYTES {
            self.merge_and_emit(s, out);
        }
        let index = s.syms.len() as u32;
        s.syms.push(Symbol {
            start: s.text.len() as u32,
            len: text.len() as u32,
            prev: index.wrapping_sub(1),
            next: index + 1,
            id,
        });
        s.text.extend_from_slice(text);
    }

    /// The normal token whose text is the two adjacent symbols `left` and
    /// `right`, queued as a merge candidate (rule 4).
    fn try_add_bigram(&self, s: &mut Scratch, left: u32, right: u32) {
        if left == NONE || right == NONE {
            return;
        }
        let (l, r) = (s.syms[left as usize], s.syms[right as usize]);
        let size = (l.len + r.len) as usize;
        if size > self.max_piece {
            return;
        }
        let start = l.start as usize;
        if let Some(&id) = self.pieces.get(&s.text[start..start + size]) {
            s.heap.push(Bigram {
                score: self.scores[id as usize],
                left,
                size: size as u32,
                id,
            });
        }
    }

    /// Rules 4 and 5 on the symbols in `s`, which are then cleared.
    fn merge_and_emit(&self, s: &mut Scratch, out: &mut Vec<u32>) {
        let Some(last) = s.syms.last_mut() else {
            return;
        };
        last.next = NONE;
        s.heap.clear();
        for right in 1..s.syms.len() as u32 {
            self.try_add_bigram(s, right - 1, right);
        }
        while let Some(b) = s.heap.pop() {
            let l = s.syms[b.left as usize];
            if l.len == 0 || l.next == NONE {
                continue;
            }
            let right = l.next;
            let r = s.syms[right as usize];
            // Stale: one side has grown since (a symbol grows only by taking
            // its right neighbour, so a grown `left` makes the sum too big)
            // or `left` has been merged away (`len == 0`).
            if l.len + r.len != b.size {
                continue;
            }
            let left = &mut s.syms[b.left as usize];
            left.len = b.size;
            left.id = b.id;
            left.next = r.next;
            s.syms[right as usize].len = 0;
            if r.next != NONE {
                s.syms[r.next as usize].prev = b.left;
            }
            self.try_add_bigram(s, l.prev, b.left);
            self.try_add_bigram(s, b.left, r.next);
        }
        let mut i = 0;
        while i != NONE {
            let sym = s.syms[i as usize];
            if sym.id != NONE {
                out.push(sym.id);
            } else {
                let text = &s.text[sym.start as usize..(sym.start + sym.len) as usize];
                // Only a space has the text U+2581 here (rule 2).
                let raw: &[u8] = if text == MARK { b" " } else { text };
                out.extend(raw.iter().map(|&b| self.byte_ids[usize::from(b)]));
            }
            i = sym.next;
        }
        s.syms.clear();
        s.text.clear();
    }
}

/// The byte-type token `<0xXX>` of each byte.
fn byte_fallback_ids(
    ids: &FxHashMap<&str, u32>,
    kinds: &[Kind],
) -> Result<[u32; 256], TokenizerError> {
    let mut byte_ids = [0u32; 256];
    for (b, slot) in byte_ids.iter_mut().enumerate() {
        *slot = ids
            .get(format!("<0x{b:02X}>").as_str())
            .copied()
            .filter(|&id| kinds[id as usize] == Kind::Byte)
            .ok_or(TokenizerError::MissingByteFallback(b as u8))?;
    }
    Ok(byte_ids)
}

/// Text -> id of the normal tokens, and the longest text's length.
fn normal_pieces(tokens: &[&str], kinds: &[Kind]) -> (FxHashMap<Box<[u8]>, u32>, usize) {
    let mut pieces: FxHashMap<Box<[u8]>, u32> = FxHashMap::default();
    pieces.reserve(tokens.len());
    let mut max_piece = 0;
    for (id, _) in kinds.iter().enumerate().filter(|(_, &k)| k == Kind::Normal) {
        let text = tokens[id].as_bytes();
        max_piece = max_piece.max(text.len());
        pieces.insert(text.into(), id as u32);
    }
    (pieces, max_piece)
}

/// Offset of the first U+2581 in `bytes`.
fn find_mark(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = bytes[from..].iter().position(|&b| b == MARK[0]) {
        let at = from + p;
        if bytes[at..].starts_with(MARK) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

impl UserDefined {
    /// The matcher for `tokens` (text, id), after checking rule 1's
    /// condition and the limits.
    fn new(tokens: &[(&[u8], u32)]) -> Result<UserDefined, TokenizerError> {
        if tokens.len() > MAX_USER_DEFINED {
            return Err(TokenizerError::TooManyUserDefined {
                count: tokens.len(),
                max: MAX_USER_DEFINED,
            });
        }
        if let Some(&(t, id)) = tokens.iter().find(|(t, _)| t.len() > MAX_USER_DEFINED_LEN) {
            return Err(TokenizerError::UserDefinedTooLong {
                id,
                len: t.len(),
                max: MAX_USER_DEFINED_LEN,
            });
        }
        check_overlaps(tokens)?;
        let mut by_first: Vec<Vec<(Box<[u8]>, u32)>> = vec![Vec::new(); 256];
        let mut second = vec![[0u64; 4]; 256];
        let mut single = [NONE; 256];
        for &(text, id) in tokens {
            let first = usize::from(text[0]);
            by_first[first].push((text.into(), id));
            match text.get(1) {
                Some(&b) => set_bit(&mut second[first], b),
                None => single[first] = id,
            }
        }
        for list in &mut by_first {
            list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        }
        Ok(UserDefined {
            by_first,
            second,
            single,
        })
    }

    /// The longest user-defined token `rest` starts with: (id, length).
    #[inline]
    fn match_at(&self, rest: &[u8]) -> Option<(u32, usize)> {
        let first = usize::from(rest[0]);
        let list = &self.by_first[first];
        if list.is_empty() {
            return None;
        }
        if rest.len() > 1 && bit(&self.second[first], rest[1]) {
            for (text, id) in list {
                if rest.starts_with(text) {
                    return Some((*id, text.len()));
                }
            }
            return None;
        }
        let id = self.single[first];
        (id != NONE).then_some((id, 1))
    }
}

/// Rule 1's condition: two different user-defined tokens may overlap in a
/// text only if both are runs of one same byte.
fn check_overlaps(tokens: &[(&[u8], u32)]) -> Result<(), TokenizerError> {
    let sets: Vec<[u64; 4]> = tokens
        .iter()
        .map(|(t, _)| {
            let mut set = [0u64; 4];
            t.iter().for_each(|&b| set_bit(&mut set, b));
            set
        })
        .collect();
    let run = |t: &[u8]| t.iter().all(|&b| b == t[0]);
    for (i, &(a, ida)) in tokens.iter().enumerate() {
        for (j, &(b, idb)) in tokens.iter().enumerate().skip(i + 1) {
            // Cheap filter: an occurrence of `b` starting inside one of `a`
            // starts with a byte of `a`, and vice versa.
            if !bit(&sets[i], b[0]) && !bit(&sets[j], a[0]) {
                continue;
            }
            if run(a) && run(b) && a[0] == b[0] {
                continue;
            }
            if starts_inside(a, b) || starts_inside(b, a) {
                return Err(TokenizerError::UserDefinedOverlap { a: ida, b: idb });
            }
        }
    }
    Ok(())
}

/// Whether an occurrence of `b` can start inside (or at the start of) an
/// occurrence of `a`: some suffix of `a` and `b` agree on their overlap.
fn starts_inside(a: &[u8], b: &[u8]) -> bool {
    (0..a.len()).any(|k| {
        let m = (a.len() - k).min(b.len());
        a[k..k + m] == b[..m]
    })
}

/// One symbol of a piece (rule 3).
#[derive(Debug, Clone, Copy)]
struct Symbol {
    /// Offset of its text in `Scratch::text`.
    start: u32,
    /// Length of its text; 0 once merged into its left neighbour.
    len: u32,
    prev: u32,
    next: u32,
    /// Its normal token, or `NONE` (single symbols only).
    id: u32,
}

/// A merge candidate: adjacent symbols whose text is normal token `id`.
#[derive(Debug, Clone, Copy)]
struct Bigram {
    score: f32,
    /// The left symbol; the right one is its `next`.
    left: u32,
    /// Text length when queued; a mismatch marks the entry stale.
    size: u32,
    id: u32,
}

impl Ord for Bigram {
    /// Higher score first, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// Buffers reused across the pieces of one `encode` call.
#[derive(Default)]
struct Scratch {
    /// Symbol texts of the current part, concatenated.
    text: Vec<u8>,
    syms: Vec<Symbol>,
    heap: BinaryHeap<Bigram>,
}

impl TextTokenizer for SpmTokenizer {
    type Error = TokenizerError;

    fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        SpmTokenizer::encode(self, bytes)
    }

    fn decode(&self, tokens: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        SpmTokenizer::decode(self, tokens)
    }

    fn vocab_size(&self) -> usize {
        SpmTokenizer::vocab_size(self)
    }
}
