//! The one seam between the command line and the library.
//!
//! Everything the CLI needs from the model, tokenizer, codec and container is
//! behind this small surface, so the file handling can be written (and tested)
//! independently of them.
//!
//! STAND-IN: until the library's codec and container land, this module
//! implements compression with a trivial *stored* format (magic `LLMCSTUB`,
//! no model coding). It exists only so that file handling, exit
//! codes and temporary-file discipline can be tested; it is replaced by
//! adapters over `llmc::codec` / `llmc::container` / `llmc::registry`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

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
    model_path: PathBuf,
    #[allow(dead_code)] // used by the real engine
    threads: usize,
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
        let model_path = resolve_model(opts.model.as_deref(), opts.quiet)?;
        std::fs::File::open(&model_path)
            .with_context(|| format!("{}: cannot open model", model_path.display()))?;
        Ok(Engine {
            model_path,
            threads: opts.threads,
        })
    }

    /// Short name of the model for messages.
    pub fn model_label(&self) -> String {
        self.model_path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Compress `input` into `out` as one or more frames.
    pub fn compress(
        &self,
        input: &[u8],
        out: &mut dyn Write,
        opts: &CodecOptions,
        tick: &mut Tick,
    ) -> Result<()> {
        let total = Some(input.len() as u64);
        let mut header = Vec::with_capacity(STUB_HEADER);
        header.extend_from_slice(STUB_MAGIC);
        header.push(opts.coder as u8);
        header.extend_from_slice(&opts.chunk_tokens.unwrap_or(0).to_le_bytes());
        header.extend_from_slice(&(input.len() as u64).to_le_bytes());
        header.extend_from_slice(&Sha256::digest(input)[..8]);
        out.write_all(&header)?;
        for (i, block) in input.chunks(4096).enumerate() {
            let done = (i * 4096 + block.len()) as u64;
            out.write_all(block)?;
            tick(Progress {
                bytes: done,
                total,
                tokens: done,
            })?;
        }
        tick(Progress {
            bytes: input.len() as u64,
            total,
            tokens: input.len() as u64,
        })?;
        Ok(())
    }

    /// Decompress all frames of `input` into `out`, verifying checksums.
    /// Returns the number of bytes written.
    pub fn decompress(&self, input: &[u8], out: &mut dyn Write, tick: &mut Tick) -> Result<u64> {
        let mut rest = input;
        let mut written = 0u64;
        ensure!(!rest.is_empty(), "not an llmc file (empty)");
        while !rest.is_empty() {
            let (len, check) = stub_header(rest)?;
            let body = &rest[STUB_HEADER..];
            ensure!(
                (body.len() as u64) >= len,
                "truncated file ({} bytes of {} present)",
                body.len(),
                len
            );
            let data = &body[..len as usize];
            for (i, block) in data.chunks(4096).enumerate() {
                out.write_all(block)?;
                let done = (i * 4096 + block.len()) as u64;
                tick(Progress {
                    bytes: done,
                    total: Some(len),
                    tokens: done,
                })?;
            }
            ensure!(
                Sha256::digest(data)[..8] == check,
                "checksum mismatch: the file is corrupt"
            );
            written += len;
            rest = &body[len as usize..];
        }
        Ok(written)
    }

    /// Cross-entropy of `input` under the model.
    pub fn score(
        &self,
        _input: &[u8],
        _chunk_tokens: Option<u32>,
        _tick: &mut Tick,
    ) -> Result<Score> {
        bail!("scoring needs the model codec, which is not wired in yet")
    }
}

const STUB_MAGIC: &[u8; 8] = b"LLMCSTUB";
const STUB_HEADER: usize = 8 + 1 + 4 + 8 + 8;

fn stub_header(b: &[u8]) -> Result<(u64, [u8; 8])> {
    ensure!(
        b.len() >= STUB_HEADER && &b[..8] == STUB_MAGIC,
        "not an llmc file (bad magic)"
    );
    let len = u64::from_le_bytes(b[13..21].try_into().expect("8 bytes"));
    let check: [u8; 8] = b[21..29].try_into().expect("8 bytes");
    Ok((len, check))
}

/// Read the headers of a compressed file without the model.
pub fn inspect(input: &[u8]) -> Result<Listing> {
    let mut rest = input;
    let mut l = Listing {
        compressed: input.len() as u64,
        model: "(stand-in)".into(),
        check: "SHA256/64".into(),
        ..Listing::default()
    };
    ensure!(!rest.is_empty(), "not an llmc file (empty)");
    while !rest.is_empty() {
        let (len, _) = stub_header(rest)?;
        l.coder = match rest[8] {
            0 => "arith".into(),
            1 => "rank".into(),
            c => bail!("unknown coder {c}"),
        };
        let body = &rest[STUB_HEADER..];
        ensure!((body.len() as u64) >= len, "truncated file");
        l.frames += 1;
        l.chunks += 1;
        l.uncompressed += len;
        rest = &body[len as usize..];
    }
    Ok(l)
}
