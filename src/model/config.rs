//! Model hyper-parameters read from GGUF metadata and validated.

use super::ModelError;
use crate::gguf::{Gguf, GgufError};
use crate::kernels::QK;

/// Caps on every dimension: a GGUF file is untrusted input, and these bound
/// what [`super::Model::load`] and the KV cache may allocate.
pub const MAX_LAYERS: usize = 512;
pub const MAX_EMBD: usize = 16_384;
pub const MAX_FF: usize = 131_072;
pub const MAX_HEADS: usize = 512;
pub const MAX_HEAD_DIM: usize = 512;
pub const MAX_VOCAB: usize = 1 << 20;
/// The usable context is `min(context_length, MAX_CONTEXT)`; models declaring
/// more are accepted and capped (the RoPE table and KV caches are sized by it).
pub const MAX_CONTEXT: usize = 65_536;

/// What a gemma3 model adds to the llama shape (llama.cpp's reading of the
/// architecture; NUMERICS.md section 11).
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3 {
    /// Keys a local layer attends to, the query's own included
    /// (`gemma3.attention.sliding_window`, 512).
    pub sliding_window: usize,
    /// Every `swa_period`-th layer (`l % period == period - 1`) is global,
    /// the others local: `attention.sliding_window_pattern` if the GGUF has
    /// it, else 6 (llama.cpp's value for gemma3, which its GGUFs omit).
    pub swa_period: usize,
    /// RoPE base of the local layers: `rope.freq_base_swa` if present, else
    /// 10000 (llama.cpp's gemma3 value); `rope_base` is the global layers'.
    pub rope_base_local: f32,
}

/// Hyper-parameters of a llama- or gemma3-architecture model.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `general.architecture` (the metadata key prefix): `"llama"` or
    /// `"gemma3"`.
    pub arch: String,
    /// The gemma3 additions; `None` for llama.
    pub gemma3: Option<Gemma3>,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Residual stream width (SmolLM2-135M: 576).
    pub n_embd: usize,
    /// FFN hidden width (1536).
    pub n_ff: usize,
    /// Query heads (9).
    pub n_head: usize,
    /// Key/value heads (3); divides `n_head`.
    pub n_kv_head: usize,
    /// Width of one attention head (SmolLM2: `n_embd / n_head` = 64; gemma3:
    /// `attention.key_length` = 256), even.
    pub head_dim: usize,
    /// Vocabulary size = rows of the token embedding (49152).
    pub vocab: usize,
    /// Usable context: `min({arch}.context_length, MAX_CONTEXT)` (8192).
    pub context_len: usize,
    /// RoPE base (100000).
    pub rope_base: f32,
    /// RMSNorm epsilon (1e-5).
    pub rms_eps: f32,
}

fn get_usize(g: &Gguf, key: &str) -> Result<usize, ModelError> {
    Ok(g.get_u32(key)? as usize)
}

fn optional<T>(r: Result<T, GgufError>) -> Result<Option<T>, ModelError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(GgufError::MissingKey(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Config {
    /// Reads `{arch}.*` keys. The vocabulary size comes from the token
    /// embedding's shape (checked against `{arch}.vocab_size` when present).
    pub fn from_gguf(g: &Gguf) -> Result<Config, ModelError> {
        let arch = g.get_str("general.architecture")?.to_string();
        if arch != "llama" && arch != "gemma3" {
            return Err(ModelError::UnsupportedArchitecture(arch));
        }
        let k = |s: &str| format!("{arch}.{s}");
        let n_embd = get_usize(g, &k("embedding_length"))?;
        let n_head = get_usize(g, &k("attention.head_count"))?;
        let n_kv_head =
            optional(g.get_u32(&k("attention.head_count_kv")))?.map_or(n_head, |v| v as usize);
        let embd = g.tensor("token_embd.weight")?;
        if embd.dims.len() != 2 {
            return Err(ModelError::TensorShape {
                name: "token_embd.weight".into(),
                expected: vec![n_embd as u64, 0],
                found: embd.dims.to_vec(),
            });
        }
        let vocab = usize::try_from(embd.dims[1]).unwrap_or(usize::MAX);
        if let Some(v) = optional(g.get_u32(&k("vocab_size")))? {
            if v as usize != vocab {
                return Err(ModelError::BadConfig {
                    key: k("vocab_size"),
                    value: v.to_string(),
                    reason: format!("differs from the token embedding's {vocab} rows"),
                });
            }
        }
        let gemma3 = if arch == "gemma3" {
            // Softcapped logits (Gemma 2) are not implemented: refuse them.
            for key in ["attn_logit_softcapping", "final_logit_softcapping"] {
                if let Some(v) = optional(g.get_f32(&k(key)))? {
                    return Err(ModelError::BadConfig {
                        key: k(key),
                        value: v.to_string(),
                        reason: "logit softcapping is not supported".into(),
                    });
                }
            }
            Some(Gemma3 {
                sliding_window: get_usize(g, &k("attention.sliding_window"))?,
                swa_period: optional(g.get_u32(&k("attention.sliding_window_pattern")))?
                    .map_or(6, |v| v as usize),
                rope_base_local: optional(g.get_f32(&k("rope.freq_base_swa")))?.unwrap_or(10_000.0),
            })
        } else {
            None
        };
        let head_dim = match gemma3 {
            Some(_) => get_usize(g, &k("attention.key_length"))?,
            None => n_embd.checked_div(n_head).unwrap_or(0),
        };
        let cfg = Config {
            gemma3,
            n_layer: get_usize(g, &k("block_count"))?,
            n_embd,
            n_ff: get_usize(g, &k("feed_forward_length"))?,
            n_head,
            n_kv_head,
            head_dim,
            vocab,
            context_len: get_usize(g, &k("context_length"))?.min(MAX_CONTEXT),
            rope_base: optional(g.get_f32(&k("rope.freq_base")))?.unwrap_or(10_000.0),
            rms_eps: g.get_f32(&k("attention.layer_norm_rms_epsilon"))?,
            arch: arch.clone(),
        };
        // Ranges first: a zero head count must be reported as itself, not
        // as the head dimension (0) it makes.
        cfg.validate()?;
        // Keys that, if present, must agree with what this implementation does.
        if let Some(v) = optional(g.get_str(&k("rope.scaling.type")))? {
            if v != "none" {
                return Err(ModelError::BadConfig {
                    key: k("rope.scaling.type"),
                    value: v.to_string(),
                    reason: "RoPE scaling is not supported".into(),
                });
            }
        }
        for key in [
            "rope.dimension_count",
            "attention.key_length",
            "attention.value_length",
        ] {
            if let Some(v) = optional(g.get_u32(&k(key)))? {
                if v as usize != cfg.head_dim {
                    return Err(ModelError::BadConfig {
                        key: k(key),
                        value: v.to_string(),
                        reason: format!(
                            "only the full head dimension {} is supported",
                            cfg.head_dim
                        ),
                    });
                }
            }
        }
        Ok(cfg)
    }

    /// Checks consistency and caps (also used for hand-built configs).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |key: &str, value: String, reason: &str| {
            Err(ModelError::BadConfig {
                key: format!("{}.{key}", self.arch),
                value,
                reason: reason.to_string(),
            })
        };
        let range = |key: &str, v: usize, max: usize| {
            if v == 0 || v > max {
                bad(key, v.to_string(), &format!("must be between 1 and {max}"))
            } else {
                Ok(())
            }
        };
        range("block_count", self.n_layer, MAX_LAYERS)?;
        range("embedding_length", self.n_embd, MAX_EMBD)?;
        range("feed_forward_length", self.n_ff, MAX_FF)?;
        range("attention.head_count", self.n_head, MAX_HEADS)?;
        range("attention.head_count_kv", self.n_kv_head, MAX_HEADS)?;
        range("vocab_size", self.vocab, MAX_VOCAB)?;
        range("context_length", self.context_len, MAX_CONTEXT)?;
        if self.n_embd % QK != 0 || self.n_ff % QK != 0 {
            return bad(
                "embedding_length",
                format!("{} (ffn {})", self.n_embd, self.n_ff),
                "widths must be multiples of 32 (quantization blocks)",
            );
        }
        if self.gemma3.is_none()
            && (self.n_embd % self.n_head != 0 || self.head_dim * self.n_head != self.n_embd)
        {
            return bad(
                "attention.head_count",
                self.n_head.to_string(),
                "must divide embedding_length",
            );
        }
        if let Some(gm) = &self.gemma3 {
            if self.q_dim() % QK != 0 {
                return bad(
                    "attention.key_length",
                    self.head_dim.to_string(),
                    "query width (heads x key length) must be a multiple of 32",
                );
            }
            if gm.swa_period == 0 || gm.swa_period > MAX_LAYERS {
                return bad(
                    "attention.sliding_window_pattern",
                    gm.swa_period.to_string(),
                    &format!("must be between 1 and {MAX_LAYERS}"),
                );
            }
            if !(gm.rope_base_local.is_finite()
                && gm.rope_base_local > 1.0
                && gm.rope_base_local <= 1e12)
            {
                return bad(
                    "rope.freq_base_swa",
                    gm.rope_base_local.to_string(),
                    "must be finite, above 1 and at most 1e12",
                );
            }
            if gm.sliding_window == 0 || gm.sliding_window > MAX_CONTEXT {
                return bad(
                    "attention.sliding_window",
                    gm.sliding_window.to_string(),
                    &format!("must be between 1 and {MAX_CONTEXT}"),
                );
            }
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 || self.head_dim > MAX_HEAD_DIM {
            // llama derives the head dimension from the head count; gemma3
            // reads it.
            let (key, value) = match self.gemma3 {
                Some(_) => ("attention.key_length", self.head_dim),
                None => ("attention.head_count", self.n_head),
            };
            return bad(
                key,
                value.to_string(),
                "head dimension must be even, non-zero and at most 512",
            );
        }
        if self.n_head % self.n_kv_head != 0 {
            return bad(
                "attention.head_count_kv",
                self.n_kv_head.to_string(),
                "must divide attention.head_count",
            );
        }
        if !(self.rope_base.is_finite() && self.rope_base > 1.0 && self.rope_base <= 1e12) {
            return bad(
                "rope.freq_base",
                self.rope_base.to_string(),
                "must be finite, above 1 and at most 1e12",
            );
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0 && self.rms_eps < 1.0) {
            return bad(
                "attention.layer_norm_rms_epsilon",
                self.rms_eps.to_string(),
                "must be finite and in (0, 1)",
            );
        }
        Ok(())
    }

    /// Width of the queries and the attention output: `n_head * head_dim`
    /// (`n_embd` for llama).
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// The sliding window of layer `l`: `Some(keys)` for a gemma3 local
    /// layer, `None` for a global one (every llama layer).
    pub fn window_of(&self, l: usize) -> Option<usize> {
        let gm = self.gemma3.as_ref()?;
        (l % gm.swa_period != gm.swa_period - 1).then_some(gm.sliding_window)
    }

    /// Width of one position's keys (or values): `n_kv_head * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Multiply-adds of the matrix products per token (for speed reports).
    pub fn matmul_macs_per_token(&self) -> u64 {
        let e = self.n_embd as u64;
        let q = self.q_dim() as u64;
        let layer = e * q * 2 + e * self.kv_dim() as u64 * 2 + e * self.n_ff as u64 * 3;
        layer * self.n_layer as u64 + e * self.vocab as u64
    }
}
