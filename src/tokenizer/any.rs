//! The tokenizer a GGUF declares: byte-level BPE (`tokenizer.ggml.model =
//! "gpt2"`, SmolLM2) or SentencePiece (`"llama"`, Gemma), behind one type
//! for the engine.

use super::{SpmTokenizer, TextTokenizer, Tokenizer, TokenizerError};

/// The tokenizer of a model file, whichever kind it declares.
#[derive(Debug)]
pub enum ModelTokenizer {
    /// Byte-level BPE (SmolLM2). Both are boxed: their lookup tables make
    /// them kilobytes each, of different sizes.
    Bpe(Box<Tokenizer>),
    /// SentencePiece with byte fallback (Gemma).
    Spm(Box<SpmTokenizer>),
}

impl ModelTokenizer {
    /// The tokenizer `tokenizer.ggml.model` names.
    pub fn from_gguf(g: &crate::gguf::Gguf) -> Result<ModelTokenizer, TokenizerError> {
        match g.get_str("tokenizer.ggml.model")? {
            "llama" => Ok(ModelTokenizer::Spm(Box::new(SpmTokenizer::from_gguf(g)?))),
            _ => Ok(ModelTokenizer::Bpe(Box::new(Tokenizer::from_gguf(g)?))),
        }
    }

    /// Token ids of `bytes` (no start token: the model's states hold it).
    pub fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        match self {
            ModelTokenizer::Bpe(t) => t.encode(bytes),
            ModelTokenizer::Spm(t) => t.encode(bytes),
        }
    }

    /// Bytes of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        match self {
            ModelTokenizer::Bpe(t) => t.decode(ids),
            ModelTokenizer::Spm(t) => t.decode(ids),
        }
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        match self {
            ModelTokenizer::Bpe(t) => t.vocab_size(),
            ModelTokenizer::Spm(t) => t.vocab_size(),
        }
    }
}

impl TextTokenizer for ModelTokenizer {
    type Error = TokenizerError;

    fn encode(&self, bytes: &[u8]) -> Vec<u32> {
        ModelTokenizer::encode(self, bytes)
    }

    fn decode(&self, tokens: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        ModelTokenizer::decode(self, tokens)
    }

    fn vocab_size(&self) -> usize {
        ModelTokenizer::vocab_size(self)
    }
}
