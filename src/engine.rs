//! The engine: a model, its tokenizer and its identity, assembled once and
//! shared by the command line and any other front end (a Python binding).
//!
//! It owns the only policy the codec leaves open: where work runs. Every
//! codec call runs on the model's thread pool, so the forward pass and the
//! codec's per-row work (frequency tables, range decoding, cross-entropies)
//! share the threads the user asked for (`-T`).

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::codec::{
    self, CodecError, CompressOptions, DecompressOptions, ModelIdentity, ProgressFn, Score,
};
use crate::gguf::{Gguf, GgufError};
use crate::kernels::Variant;
use crate::model::{Model, ModelError, ModelOptions};
use crate::registry::{self, RegistryError};
use crate::tokenizer::{ModelTokenizer, TokenizerError};

/// A progress callback that may move to the model's threads (see
/// [`codec::ProgressFn`]).
pub type SendProgressFn<'a> = dyn FnMut(codec::Progress) -> ControlFlow<()> + Send + 'a;

/// How to load an [`Engine`].
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// A GGUF file; `None`: `$LLMC_MODEL`, else the registry's default model
    /// (fetched into the cache on first use).
    pub model: Option<PathBuf>,
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// Kernel variant; `None`: `LLMC_KERNEL`, else the best this CPU runs.
    pub variant: Option<Variant>,
    /// No download messages on stderr.
    pub quiet: bool,
}

/// Why an engine could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file could not be located or fetched.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The model file is not a valid GGUF.
    #[error("{path}: {source}")]
    Gguf {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: GgufError,
    },
    /// The GGUF's tokenizer is missing or malformed.
    #[error("{path}: {source}")]
    Tokenizer {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: TokenizerError,
    },
    /// The GGUF's model is unsupported or malformed.
    #[error("{path}: {source}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ModelError,
    },
}

/// A loaded model with its tokenizer and identity.
#[derive(Debug)]
pub struct Engine {
    model: Model,
    tokenizer: ModelTokenizer,
    id: ModelIdentity,
    path: PathBuf,
}

impl Engine {
    /// Locates (fetching the default model if needed), reads and loads the
    /// model of `opts`.
    ///
    /// ```
    /// use llmc::engine::{Engine, EngineOptions};
    ///
    /// let opts = EngineOptions { threads: 2, quiet: true, ..Default::default() };
    /// let engine = Engine::load(&opts)?;
    /// println!("{}", engine.label()); // SmolLM2-135M-Instruct (f4574e70)
    /// # Ok::<(), llmc::engine::EngineError>(())
    /// ```
    pub fn load(opts: &EngineOptions) -> Result<Engine, EngineError> {
        let path = registry::resolve_model_quiet(opts.model.as_deref(), opts.quiet)?;
        Engine::open(&path, opts)
    }

    /// Loads the GGUF at `path` (threads and variant from `opts`).
    pub fn open(path: &Path, opts: &EngineOptions) -> Result<Engine, EngineError> {
        let at = || path.to_path_buf();
        let g = Gguf::open(path).map_err(|source| EngineError::Gguf { path: at(), source })?;
        let tokenizer = ModelTokenizer::from_gguf(&g)
            .map_err(|source| EngineError::Tokenizer { path: at(), source })?;
        let model_opts = ModelOptions {
            threads: opts.threads,
            variant: opts.variant,
        };
        let model = Model::load(&g, &model_opts)
            .map_err(|source| EngineError::Model { path: at(), source })?;
        // The name is for messages only; the fingerprint is what must match.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let name = name.strip_suffix(".gguf").unwrap_or(&name).to_string();
        Ok(Engine {
            id: ModelIdentity {
                name,
                fingerprint: g.fingerprint(),
            },
            model,
            tokenizer,
            path: at(),
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &ModelTokenizer {
        &self.tokenizer
    }

    /// Who the model is, as frame headers record it.
    pub fn identity(&self) -> &ModelIdentity {
        &self.id
    }

    /// The GGUF file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Short name of the model for messages: `name (fingerprint prefix)`.
    pub fn label(&self) -> String {
        format!(
            "{} ({})",
            self.id.name,
            codec::short_hex(&self.id.fingerprint)
        )
    }

    /// Compresses everything `input` yields into one frame on `output`
    /// ([`codec::compress_stream`]; the predictor on the model's kernels
    /// unless `opts` names others); returns the bytes written. Each block
    /// (at most 4 MiB of input) is written as soon as it is coded;
    /// `progress` is called after every forward pass and stops the work
    /// when it returns `Break`.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use llmc::codec::{CompressOptions, Params};
    /// use llmc::engine::{Engine, EngineOptions};
    ///
    /// let engine = Engine::load(&EngineOptions { quiet: true, ..Default::default() })?;
    /// // Level 1, the fastest (levels 1..=9; the default is 5).
    /// let opts = CompressOptions {
    ///     level: 1,
    ///     params: Params::level(1).expect("a level"),
    ///     ..CompressOptions::default()
    /// };
    /// let mut packed = Vec::new();
    /// let n = engine.compress(&b"Hello, world.\n"[..], &mut packed, &opts, &mut |p| {
    ///     eprintln!("{} tokens", p.tokens);
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!(n as usize, packed.len());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compress<R: Read + Send, W: Write + Send>(
        &self,
        input: R,
        output: W,
        opts: &CompressOptions,
        progress: &mut SendProgressFn,
    ) -> Result<u64, CodecError> {
        let opts = &CompressOptions {
            kernels: opts.kernels.or(Some(self.model.kernels())),
            ..opts.clone()
        };
        self.model.install(|| {
            codec::compress_stream(
                input,
                output,
                &self.model,
                &self.tokenizer,
                &self.id,
                opts,
                progress as &mut ProgressFn,
            )
        })
    }

    /// Decompresses every frame `input` yields onto `output`
    /// ([`codec::decompress_stream`]); returns the bytes written. Nothing
    /// unverified is written: each block once its check holds.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use llmc::codec::{CodecError, DecompressOptions};
    /// use llmc::engine::{Engine, EngineOptions};
    ///
    /// let engine = Engine::load(&EngineOptions { quiet: true, ..Default::default() })?;
    /// let mut out = Vec::new();
    /// let err = engine
    ///     .decompress(&b"not compressed"[..], &mut out, &DecompressOptions::default(), &mut |_| {
    ///         ControlFlow::Continue(())
    ///     })
    ///     .unwrap_err();
    /// assert!(matches!(err, CodecError::Container(_)));
    /// assert!(out.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decompress<R: Read + Send, W: Write + Send>(
        &self,
        input: R,
        output: W,
        opts: &DecompressOptions,
        progress: &mut SendProgressFn,
    ) -> Result<u64, CodecError> {
        let opts = &DecompressOptions {
            kernels: opts.kernels.or(Some(self.model.kernels())),
            ..opts.clone()
        };
        self.model.install(|| {
            codec::decompress_stream(
                input,
                output,
                &self.model,
                &self.tokenizer,
                &self.id,
                opts,
                progress as &mut ProgressFn,
            )
        })
    }

    /// The model's cross-entropy on `input` over the chunks compression
    /// would code ([`codec::score`]): what ranks data and models by how
    /// well they compress.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use llmc::codec::CompressOptions;
    /// use llmc::engine::{Engine, EngineOptions};
    ///
    /// let engine = Engine::load(&EngineOptions { quiet: true, ..Default::default() })?;
    /// let text = b"It was the best of times, it was the worst of times.\n";
    /// let s = engine.score(text, &CompressOptions::default(), &mut |_| ControlFlow::Continue(()))?;
    /// println!("{} tokens, {:.3} bits/byte", s.tokens, s.bits / s.bytes as f64);
    /// assert!(s.bits > 0.0 && s.bytes == text.len() as u64);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn score(
        &self,
        input: &[u8],
        opts: &CompressOptions,
        progress: &mut SendProgressFn,
    ) -> Result<Score, CodecError> {
        self.model.install(|| {
            codec::score(
                input,
                &self.model,
                &self.tokenizer,
                opts,
                progress as &mut ProgressFn,
            )
        })
    }

    /// [`codec::score_predictors`]: one score per predictor setting, from
    /// one model run.
    pub fn score_predictors(
        &self,
        input: &[u8],
        opts: &CompressOptions,
        configs: &[crate::predict::AdaptiveConfig],
        progress: &mut SendProgressFn,
    ) -> Result<Vec<Score>, CodecError> {
        self.model.install(|| {
            codec::score_predictors(
                input,
                &self.model,
                &self.tokenizer,
                opts,
                configs,
                progress as &mut ProgressFn,
            )
        })
    }
}
