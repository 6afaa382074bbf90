//! The one seam between the command line and the library.
//!
//! Everything the CLI needs from the model, tokenizer, codec and container is
//! behind this small surface, so the file handling can be written (and tested)
//! independently of them.
//!
//! Model loading is lazy (see `ops::LazyEngine`): listing and errors found
//! before coding never load the model.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use llmc::codec::{self as lc, ModelIdentity};
use llmc::coder::CoderKind;
use llmc::container::{FrameReader, Record};
use llmc::gguf::Gguf;
use llmc::model::{Model, ModelOptions};
use llmc::tokenizer::Tokenizer;

use super::progress::{Interrupted, Progress};

/// Progress callback: called by the codec now and then; an `Err` aborts.
pub type Tick<'a> = dyn FnMut(Progress) -> Result<(), Interrupted> + 'a;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coder {
    Arith,
    Rank,
}

impl Coder {
    pub fn name(self) -> &'static str {
        match self {
            Coder::Arith => "arith",
            Coder::Rank => "rank",
        }
    }
}

/// Options that change the compressed bytes.
#[derive(Debug, Clone, Copy)]
pub struct CodecOptions {
    pub coder: Coder,
    /// `None`: the codec's default.
    pub chunk_tokens: Option<u32>,
}

/// How to load the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `--model` / `LLMC_MODEL`; `None`: the registry's default model.
    pub model: Option<PathBuf>,
    pub threads: usize,
    /// No download messages.
    pub quiet: bool,
}

/// Cross-entropy of a file under the model.
#[derive(Debug, Clone, Copy)]
pub struct Score {
    pub tokens: u64,
    /// Sum of -log2 p(token) over all coded tokens.
    pub bits: f64,
}

/// Header information of a compressed file (`-l`), read without the model.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub frames: u64,
    pub chunks: u64,
    pub compressed: u64,
    pub uncompressed: u64,
    pub model: String,
    pub coder: String,
    pub check: String,
}

/// Model, tokenizer and codec, loaded once per process and only when needed.
pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    id: ModelIdentity,
}

/// Find the model file: `--model`, else `$LLMC_MODEL`, else the registry's
/// default model (downloaded into the cache on first use, with a message on
/// stderr unless `quiet`).
pub fn resolve_model(explicit: Option<&Path>, quiet: bool) -> Result<PathBuf> {
    Ok(llmc::registry::resolve_model_quiet(explicit, quiet)?)
}

/// Download the default model into the cache unless it is there, and return its path.
pub fn fetch_default_model(quiet: bool) -> Result<PathBuf> {
    Ok(llmc::registry::fetch(
        &llmc::registry::DEFAULT_MODEL,
        quiet,
    )?)
}

/// Key facts about a model file, as `(name, value)` rows for `llmc model info`.
pub fn model_info(path: &Path) -> Result<Vec<(String, String)>> {
    let g = llmc::gguf::Gguf::open(path)?;
    let mut rows = vec![("path".to_string(), path.display().to_string())];
    rows.push(("size".into(), format!("{} bytes", g.file_len())));
    rows.push(("gguf version".into(), g.version().to_string()));
    let arch = g.get_str("general.architecture").ok().map(str::to_owned);
    if let Ok(name) = g.get_str("general.name") {
        rows.push(("name".into(), name.to_owned()));
    }
    if let Some(arch) = &arch {
        rows.push(("architecture".into(), arch.clone()));
        for (label, key) in [
            ("layers", "block_count"),
            ("width", "embedding_length"),
            ("ffn width", "feed_forward_length"),
            ("heads", "attention.head_count"),
            ("kv heads", "attention.head_count_kv"),
            ("context", "context_length"),
        ] {
            if let Ok(v) = g.get_u32(&format!("{arch}.{key}")) {
                rows.push((label.into(), v.to_string()));
            }
        }
    }
    if let Ok(tokens) = g.get_array("tokenizer.ggml.tokens") {
        rows.push(("vocabulary".into(), tokens.len().to_string()));
    }
    let mut types: Vec<(String, usize)> = Vec::new();
    for t in g.tensors() {
        let n = t.ggml_type.name().to_string();
        match types.iter_mut().find(|(k, _)| *k == n) {
            Some((_, c)) => *c += 1,
            None => types.push((n, 1)),
        }
    }
    let types: Vec<String> = types.iter().map(|(k, c)| format!("{k} x{c}")).collect();
    rows.push((
        "tensors".into(),
        format!("{} ({})", g.tensors().len(), types.join(", ")),
    ));
    let fp: String = g.fingerprint().iter().map(|b| format!("{b:02x}")).collect();
    rows.push(("fingerprint".into(), fp));
    Ok(rows)
}

impl Engine {
    pub fn load(opts: &EngineOptions) -> Result<Engine> {
        let path = resolve_model(opts.model.as_deref(), opts.quiet)?;
        let g = Gguf::open(&path).with_context(|| path.display().to_string())?;
        let tokenizer = Tokenizer::from_gguf(&g).with_context(|| path.display().to_string())?;
        let model = Model::load(
            &g,
            &ModelOptions {
                threads: opts.threads,
                variant: None,
            },
        )
        .with_context(|| path.display().to_string())?;
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
        })
    }

    /// Short name of the model for messages.
    pub fn model_label(&self) -> String {
        format!("{} ({})", self.id.name, lc::short_hex(&self.id.fingerprint))
    }

    /// Compress `input` into `out` as one frame.
    pub fn compress(
        &self,
        input: &[u8],
        out: &mut dyn Write,
        opts: &CodecOptions,
        tick: &mut Tick,
    ) -> Result<()> {
        let mut co = lc::CompressOptions {
            coder: match opts.coder {
                Coder::Arith => CoderKind::Arithmetic,
                Coder::Rank => CoderKind::Rank,
            },
            ..lc::CompressOptions::default()
        };
        if let Some(n) = opts.chunk_tokens {
            co.chunk_tokens = n;
        }
        let total = Some(input.len() as u64);
        // Called after every forward pass: a Ctrl-C stops the codec there
        // (`CodecError::Interrupted`), even in the middle of a chunk.
        let mut progress = |p: lc::Progress| {
            flow(tick(Progress {
                bytes: p.bytes_in,
                total,
                tokens: p.tokens,
            }))
        };
        lc::compress_stream(
            input,
            out,
            &self.model,
            &self.tokenizer,
            &self.id,
            &co,
            &mut progress,
        )?;
        Ok(())
    }

    /// Decompress all frames of `input` into `out`, verifying checksums.
    /// Returns the number of bytes written.
    pub fn decompress(&self, input: &[u8], out: &mut dyn Write, tick: &mut Tick) -> Result<u64> {
        // The end records give the total for the progress bar; a file whose
        // headers do not parse fails in the codec below with the precise error.
        let total = inspect(input).ok().map(|l| l.uncompressed);
        let mut progress = |p: lc::Progress| {
            flow(tick(Progress {
                bytes: p.bytes_out,
                total,
                tokens: p.tokens,
            }))
        };
        Ok(lc::decompress_stream(
            input,
            out,
            &self.model,
            &self.tokenizer,
            &self.id,
            &lc::DecompressOptions::default(),
            &mut progress,
        )?)
    }

    /// Cross-entropy of `input` under the model (`llmc::codec::score`): the
    /// compressor's own segments and chunks of `chunk_tokens` tokens (the
    /// codec's default if `None`), the first token of each chunk at
    /// log2(vocab) bits, the others at -log2 softmax (f64) of the logits.
    pub fn score(&self, input: &[u8], chunk_tokens: Option<u32>, tick: &mut Tick) -> Result<Score> {
        let mut co = lc::CompressOptions::default();
        if let Some(n) = chunk_tokens {
            co.chunk_tokens = n;
        }
        let total = Some(input.len() as u64);
        let mut progress = |p: lc::Progress| {
            flow(tick(Progress {
                bytes: p.bytes_in,
                total,
                tokens: p.tokens,
            }))
        };
        let s = lc::score(input, &self.model, &self.tokenizer, &co, &mut progress)?;
        Ok(Score {
            tokens: s.tokens,
            bits: s.bits,
        })
    }
}

/// The codec's view of a tick: stop on `Interrupted` (Ctrl-C).
fn flow(r: Result<(), Interrupted>) -> ControlFlow<()> {
    match r {
        Ok(()) => ControlFlow::Continue(()),
        Err(Interrupted) => ControlFlow::Break(()),
    }
}

/// Read the headers of a compressed file without the model.
pub fn inspect(input: &[u8]) -> Result<Listing> {
    let mut r = FrameReader::new(input);
    let mut l = Listing {
        compressed: input.len() as u64,
        check: "XXH64".into(),
        ..Listing::default()
    };
    let mut models: Vec<String> = Vec::new();
    // arith, rank, stored, zstd
    let mut kinds = [false; 4];
    while let Some(h) = r.read_header()? {
        l.frames += 1;
        if !models.contains(&h.model_name) {
            models.push(h.model_name.clone());
        }
        loop {
            match r.read_record(&h)? {
                Record::Model { coder, .. } => {
                    l.chunks += 1;
                    kinds[match coder {
                        CoderKind::Arithmetic => 0,
                        CoderKind::Rank => 1,
                    }] = true;
                }
                Record::Stored(_) => {
                    l.chunks += 1;
                    kinds[2] = true;
                }
                Record::Zstd { .. } => {
                    l.chunks += 1;
                    kinds[3] = true;
                }
                Record::End { original_len, .. } => {
                    l.uncompressed += original_len;
                    break;
                }
            }
        }
    }
    if l.frames == 0 {
        bail!("not an llmc file (empty)");
    }
    l.model = models.join(",");
    let names = ["arith", "rank", "stored", "zstd"];
    let used: Vec<&str> = names
        .iter()
        .zip(kinds)
        .filter(|(_, u)| *u)
        .map(|(n, _)| *n)
        .collect();
    l.coder = if used.is_empty() {
        "-".into()
    } else {
        used.join("+")
    };
    Ok(l)
}
