//! The one seam between the command line and the library.
//!
//! Everything the CLI needs from the model, tokenizer, codec and container is
//! behind this small surface, so the file handling can be written (and tested)
//! independently of them.
//!
//! Model loading is lazy (see `ops::LazyEngine`): listing and errors found
//! before coding never load the model.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use llmc::codec as lc;
use llmc::coder::CoderKind;
use llmc::container::{v2, FrameReader, Header, Record};
use llmc::predict::AdaptiveConfig;

pub use llmc::codec::Score;
pub use llmc::engine::{Engine, EngineOptions};

use super::progress::Progress;
use super::signal::Interrupted;

/// Progress callback: called by the codec now and then; an `Err` aborts.
pub type Tick<'a> = dyn FnMut(Progress) -> Result<(), Interrupted> + Send + 'a;

/// Options that change the compressed bytes (`None`: the level's).
#[derive(Debug, Clone, Copy, Default)]
pub struct CodecOptions {
    pub coder: Option<CoderKind>,
    /// `None`: the default level.
    pub level: Option<u8>,
    pub window: Option<u32>,
    pub carry: Option<u32>,
    pub sinks: Option<u32>,
    pub primer: Option<u32>,
    pub no_bias: bool,
    pub no_match: bool,
    pub no_ngram: bool,
    pub no_crlf: bool,
    pub no_reflow: bool,
}

impl CodecOptions {
    /// The codec's options: the level's parameters, or a custom set (level
    /// 0 in the file) if any setting differs from them.
    pub fn compress_options(&self) -> Result<lc::CompressOptions> {
        let level = self.level.unwrap_or(lc::DEFAULT_LEVEL);
        let Some(mut p) = lc::Params::level(level) else {
            bail!("level {level} is outside 1..={}", lc::MAX_LEVEL);
        };
        let base = p;
        p.coder = self.coder.unwrap_or(p.coder);
        p.window = self.window.unwrap_or(p.window);
        // A window of the user's keeps the level's carry only if it fits
        // in half of it.
        let (carry, primer) = match self.window {
            Some(_) => (p.carry.min(p.window / 2).max(1), p.primer.min(p.window / 4)),
            None => (p.carry, p.primer),
        };
        p.carry = self.carry.unwrap_or(carry);
        p.sinks = self.sinks.unwrap_or(p.sinks);
        p.primer = self.primer.unwrap_or(primer);
        if p.primer >= p.window {
            bail!(
                "--primer {} must be below the window of {} tokens",
                p.primer,
                p.window
            );
        }
        if p.carry >= p.window {
            bail!(
                "--carry {} must be below the window of {} tokens",
                p.carry,
                p.window
            );
        }
        if p.sinks > 0 && p.carry + p.sinks >= p.window {
            bail!(
                "--carry {} and {} attention sinks must be below the window of {} tokens \
                 (--sinks 0 restarts each window instead of sliding it)",
                p.carry,
                p.sinks,
                p.window
            );
        }
        p.adaptive.bias &= !self.no_bias;
        p.adaptive.sse &= !self.no_match;
        p.adaptive.ngram &= !self.no_ngram;
        p.crlf &= !self.no_crlf;
        p.reflow &= !self.no_reflow;
        let custom = (p.coder, p.window, p.carry, p.sinks, p.primer, p.adaptive)
            != (
                base.coder,
                base.window,
                base.carry,
                base.sinks,
                base.primer,
                base.adaptive,
            );
        Ok(lc::CompressOptions {
            level: if custom { 0 } else { level },
            params: p,
            ..lc::CompressOptions::default()
        })
    }
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
    /// Levels of the frames (`-` for version-1 frames, `custom` for level 0).
    pub level: String,
    pub check: String,
}

/// Find the model file: `--model`, else `$LLMC_MODEL`, else the registry's
/// default model (downloaded into the cache on first use, with a message on
/// stderr unless `quiet`).
pub fn resolve_model(explicit: Option<&Path>, quiet: bool) -> Result<PathBuf> {
    Ok(llmc::registry::resolve_model_quiet(explicit, quiet)?)
}

/// Download the default model into the cache unless it is there, and return its path.
pub fn fetch_model(name: Option<&str>, quiet: bool) -> Result<PathBuf> {
    let spec = match name {
        None => &llmc::registry::DEFAULT_MODEL,
        Some(n) => llmc::registry::known_by_id(n).ok_or_else(|| {
            let known: Vec<&str> = llmc::registry::KNOWN_MODELS.iter().map(|m| m.id).collect();
            anyhow::anyhow!("unknown model {n:?} (known: {})", known.join(", "))
        })?,
    };
    Ok(llmc::registry::fetch(spec, quiet)?)
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

/// Compress what `input` yields into `out` as one frame, block by block
/// (each written as soon as it is coded); `total` is the input's size when
/// known (for the progress bar).
pub fn compress(
    engine: &Engine,
    input: &mut (dyn Read + Send),
    total: Option<u64>,
    out: &mut (dyn Write + Send),
    opts: &CodecOptions,
    tick: &mut Tick,
) -> Result<u64> {
    let mut progress = reporter(tick, total, |p| p.original);
    Ok(engine.compress(input, out, &opts.compress_options()?, &mut progress)?)
}

/// Decompress all frames `input` yields into `out`, writing each block
/// once its check holds; `total` is the original length when known (for
/// the progress bar), `state_budget` caps the decoding states' memory.
/// Returns the bytes written.
pub fn decompress(
    engine: &Engine,
    input: &mut (dyn Read + Send),
    total: Option<u64>,
    out: &mut (dyn Write + Send),
    state_budget: Option<usize>,
    tick: &mut Tick,
) -> Result<u64> {
    let mut progress = reporter(tick, total, |p| p.original);
    let mut opts = lc::DecompressOptions::default();
    if let Some(b) = state_budget {
        opts.state_budget = b;
    }
    Ok(engine.decompress(input, out, &opts, &mut progress)?)
}

/// Checks the start of a compressed input before the model is loaded: an
/// empty input, a wrong magic or an unknown version fails here, at once.
/// `head` is the input's first bytes (at most its first 64).
pub fn check_start(head: &[u8]) -> Result<()> {
    match FrameReader::new(head).read_header() {
        Ok(None) => Err(lc::CodecError::NoFrame.into()),
        Err(
            e @ (llmc::container::ContainerError::BadMagic { .. }
            | llmc::container::ContainerError::Version { .. }),
        ) => Err(lc::CodecError::from(e).into()),
        // A header longer than `head`, or one that the decoder will
        // report precisely.
        _ => Ok(()),
    }
}

/// Cross-entropy of `input` under the model (`llmc::codec::score`): the
/// compressor's own blocks, streams and windows for `opts`, the first token
/// of each stream at log2(vocab) bits, the others at -log2 softmax (f64) of
/// the logits.
pub fn score(engine: &Engine, input: &[u8], opts: &CodecOptions, tick: &mut Tick) -> Result<Score> {
    let total = Some(input.len() as u64);
    let mut progress = reporter(tick, total, |p| p.bytes_in);
    Ok(engine.score(input, &opts.compress_options()?, &mut progress)?)
}

/// The predictor settings `llmc score --levers` compares, with their names.
pub const LEVERS: [(&str, AdaptiveConfig); 5] = [
    (
        "none",
        AdaptiveConfig {
            bias: false,
            sse: false,
            ngram: false,
        },
    ),
    (
        "bias",
        AdaptiveConfig {
            bias: true,
            sse: false,
            ngram: false,
        },
    ),
    (
        "match",
        AdaptiveConfig {
            bias: false,
            sse: true,
            ngram: false,
        },
    ),
    (
        "all",
        AdaptiveConfig {
            bias: true,
            sse: true,
            ngram: false,
        },
    ),
    (
        "ngram",
        AdaptiveConfig {
            bias: true,
            sse: true,
            ngram: true,
        },
    ),
];

/// [`score`] for each of [`LEVERS`], from one model run.
pub fn score_levers(
    engine: &Engine,
    input: &[u8],
    opts: &CodecOptions,
    tick: &mut Tick,
) -> Result<Vec<Score>> {
    let total = Some(input.len() as u64);
    let mut progress = reporter(tick, total, |p| p.bytes_in);
    let configs = LEVERS.map(|(_, c)| c);
    Ok(engine.score_predictors(input, &opts.compress_options()?, &configs, &mut progress)?)
}

/// The codec's progress callback over a tick: the bar shows `bytes(p)` of
/// `total`. Called after every forward pass, so a Ctrl-C (`Interrupted`)
/// stops the codec there (`CodecError::Interrupted`), even mid-chunk.
fn reporter<'a, 'b>(
    tick: &'a mut Tick<'b>,
    total: Option<u64>,
    bytes: fn(&lc::Progress) -> u64,
) -> impl FnMut(lc::Progress) -> ControlFlow<()> + Send + use<'a, 'b> {
    move |p| match tick(Progress {
        bytes: bytes(&p),
        total,
        tokens: p.tokens,
    }) {
        Ok(()) => ControlFlow::Continue(()),
        Err(Interrupted) => ControlFlow::Break(()),
    }
}

/// Read the headers of a compressed file without the model (the file is
/// read once, front to back, one record at a time).
pub fn inspect(input: impl Read) -> Result<Listing> {
    let mut r = FrameReader::new(input);
    let mut l = Listing {
        check: "XXH64".into(),
        ..Listing::default()
    };
    let mut models: Vec<String> = Vec::new();
    // Record kinds seen, in the order `-l` names them.
    let names = [
        CoderKind::Arithmetic.name(),
        CoderKind::Rank.name(),
        "stored",
        "zstd",
        "lzma2",
    ];
    let mut kinds = [false; 5];
    let mut levels: Vec<String> = Vec::new();
    let note = |list: &mut Vec<String>, s: String| {
        if !list.contains(&s) {
            list.push(s);
        }
    };
    while let Some(h) = r.read_header()? {
        l.frames += 1;
        let h = match h {
            Header::V1(h) => h,
            Header::V2(h) => {
                note(
                    &mut models,
                    match llmc::registry::known_by_fingerprint(&h.model) {
                        Some(m) => m.name.to_string(),
                        None => lc::short_hex8(&h.model),
                    },
                );
                let coder = match h.custom {
                    Some(c) => c.coder,
                    None => CoderKind::Arithmetic,
                };
                note(
                    &mut levels,
                    match h.level {
                        0 => "custom".into(),
                        // Each table's bytes are its levels plus a multiple of 10.
                        n => (n % 10).to_string(),
                    },
                );
                l.check = "XXH64/32".into();
                loop {
                    match r.read_record_v2()? {
                        v2::Record::Block(b) => {
                            l.chunks += 1;
                            kinds[match b.body {
                                v2::Body::Model { .. } => usize::from(coder == CoderKind::Rank),
                                v2::Body::Stored(_) => 2,
                                v2::Body::Zstd(_) => 3,
                                v2::Body::Lzma2(_) => 4,
                            }] = true;
                        }
                        v2::Record::End { original_len, .. } => {
                            l.uncompressed += original_len;
                            break;
                        }
                    }
                }
                continue;
            }
        };
        note(&mut models, h.model_name.clone());
        note(&mut levels, "-".into());
        loop {
            match r.read_record(&h)? {
                Record::Model { coder, .. } => {
                    l.chunks += 1;
                    kinds[usize::from(coder == CoderKind::Rank)] = true;
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
    l.compressed = r.offset();
    l.model = models.join(",");
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
    l.level = levels.join(",");
    Ok(l)
}
