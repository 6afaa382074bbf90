//! `llmc score`, `llmc bench`, `llmc model`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use super::engine::{self, CodecOptions};
use super::io::Source;
use super::json::{self, Report};
use super::ops::{is_interrupt, render, Ctx};
use super::progress::Bar;
use super::signal;
use super::table::{rate, Table};
use llmc::coder::CoderKind;

/// Per file: bytes, tokens, bits/token, bits/byte, the ideal size (the
/// model's cross-entropy rounded up to whole bytes, i.e. what an ideal entropy
/// coder would need for the tokens the codec codes; container overhead
/// excluded) and the size (with the container: [`engine::Score::size`]).
/// With `levers`, a row per predictor setting ([`engine::LEVERS`]) per file.
pub fn score(ctx: &mut Ctx, files: &[PathBuf], codec: CodecOptions, levers: bool) -> i32 {
    let mut t = Table::new(&[
        "Bytes",
        "Tokens",
        "Bits/token",
        "Bits/byte",
        "Ideal size",
        "Size",
        "File",
    ]);
    let mut status = 0;
    let (mut tb, mut tt, mut tbits, mut tsize, mut ok) = (0u64, 0u64, 0f64, 0u64, 0usize);
    let mut report = ctx.json.map(Report::new);
    let Some(settings) = score_settings(ctx, &codec) else {
        return 1;
    };
    for p in files {
        let src = Source::from_arg(p);
        match score_file(ctx, &src, &codec, levers) {
            Ok(f) if report.is_some() => {
                let r = report.as_mut().expect("checked");
                for (i, s) in f.scores.iter().enumerate() {
                    let mut v = f.json(&src, s, settings);
                    if levers {
                        v["lever"] = json!(engine::LEVERS[i].0);
                    }
                    r.push(v);
                }
            }
            Ok(Scored { bytes, scores, .. }) => {
                for (i, s) in scores.iter().enumerate() {
                    let name = match levers {
                        true => format!("{} [{}]", src.name(), engine::LEVERS[i].0),
                        false => src.name(),
                    };
                    t.row(score_row(bytes, s, name));
                }
                let s = scores.last().copied().unwrap_or_default();
                tb += bytes;
                tt += s.tokens;
                tbits += s.bits;
                tsize += s.size;
                ok += 1;
            }
            Err(e) if is_interrupt(&e) => {
                ctx.error(&e);
                return signal::exit_status();
            }
            Err(e) => {
                ctx.error(&e);
                if let Some(r) = report.as_mut() {
                    r.error(&src.name(), &render(&e));
                }
                status = 1;
                if ctx.engine.failed {
                    break;
                }
            }
        }
    }
    if let Some(r) = report {
        r.finish();
        return status;
    }
    if ok > 1 {
        t.rule();
        let total = engine::Score {
            bytes: tb,
            tokens: tt,
            bits: tbits,
            size: tsize,
        };
        t.row(score_row(tb, &total, format!("{ok} files")));
    }
    if ok > 0 {
        print!(
            "{}",
            t.render(&[false, false, false, false, false, false, true])
        );
    }
    status
}

/// What the JSON objects of `score` say of the settings: the level, and
/// whether options made them custom (level 0 in a file). `None` (the error
/// reported) if the options are invalid.
pub(super) fn score_settings(ctx: &Ctx, codec: &CodecOptions) -> Option<(u8, bool)> {
    match codec.compress_options() {
        Ok(o) => Some((
            codec.level.unwrap_or(llmc::codec::DEFAULT_LEVEL),
            o.level == 0,
        )),
        Err(e) => {
            ctx.error(&e);
            None
        }
    }
}

/// One file scored by the context's engine.
pub(super) struct Scored {
    pub bytes: u64,
    /// One score, or one per lever with `levers`.
    pub scores: Vec<engine::Score>,
    /// The name -l shows for files of this model: a known model's, else
    /// the file's.
    pub model: String,
    /// The known model's short name (`gemma3-270m`), if it is one.
    pub known_id: Option<&'static str>,
    /// The model's fingerprint in hex.
    pub fingerprint: String,
}

impl Scored {
    /// The `score --json` object of score `s` of file `src`.
    pub fn json(&self, src: &Source, s: &engine::Score, (level, custom): (u8, bool)) -> Value {
        json!({
            "file": src.name(),
            "bytes": self.bytes,
            "tokens": s.tokens,
            "bits": s.bits,
            "bits_per_token": json::ratio(s.bits, s.tokens),
            "bits_per_byte": json::ratio(s.bits, self.bytes),
            "ideal_size": (s.bits / 8.0).ceil() as u64,
            "size": s.size,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "level": level,
            "custom": custom,
        })
    }
}

/// Reads and scores `src` with the context's engine (loaded on first use),
/// with a progress bar; every predictor setting with `levers`.
pub(super) fn score_file(
    ctx: &mut Ctx,
    src: &Source,
    codec: &CodecOptions,
    levers: bool,
) -> Result<Scored> {
    src.check(true)?;
    let input = src.read_all()?;
    let (level, show) = (ctx.level, ctx.progress);
    let e = ctx.engine.get(level)?;
    let bar = Bar::new(show, &src.name(), Some(input.len() as u64));
    let scores = if levers {
        engine::score_levers(e, &input, codec, &mut |p| bar.tick(p))
    } else {
        engine::score(e, &input, codec, &mut |p| bar.tick(p)).map(|s| vec![s])
    }
    .with_context(|| src.name())?;
    let id = e.identity();
    let prefix: [u8; 8] = id.fingerprint[..8].try_into().expect("8 bytes");
    let known = llmc::registry::known_by_fingerprint(&prefix);
    Ok(Scored {
        bytes: input.len() as u64,
        scores,
        model: known.map_or_else(|| id.name.clone(), |m| m.name.to_string()),
        known_id: known.map(|m| m.id),
        fingerprint: id.fingerprint.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

fn score_row(bytes: u64, s: &engine::Score, name: String) -> Vec<String> {
    let (tokens, bits) = (s.tokens, s.bits);
    let per = |d: u64| {
        if d == 0 {
            "-".to_string()
        } else {
            format!("{:.4}", bits / d as f64)
        }
    };
    vec![
        bytes.to_string(),
        tokens.to_string(),
        per(tokens),
        per(bytes),
        ((bits / 8.0).ceil() as u64).to_string(),
        s.size.to_string(),
        name,
    ]
}

type Codec = Box<dyn Fn(&[u8]) -> Result<Vec<u8>>>;

/// A table per file: size, bits/byte, compression and decompression speed of
/// llmc (both coders), zstd -19, xz -9 and gzip -9. Every method's output is
/// decompressed and compared with the input.
pub fn bench(ctx: &mut Ctx, files: &[PathBuf], codec: CodecOptions) -> i32 {
    let mut status = 0;
    let mut report = ctx.json.map(Report::new);
    for p in files {
        match bench_one(ctx, p, codec) {
            Ok(b) => match report.as_mut() {
                Some(r) => r.push(b.json()),
                None => b.print(),
            },
            Err(e) if is_interrupt(&e) => {
                ctx.error(&e);
                return signal::exit_status();
            }
            Err(e) => {
                ctx.error(&e);
                if let Some(r) = report.as_mut() {
                    r.error(&p.display().to_string(), &render(&e));
                }
                status = 1;
                if ctx.engine.failed {
                    break;
                }
            }
        }
    }
    if let Some(r) = report {
        r.finish();
    }
    status
}

/// One method's figures on one file: (name, compressed size, seconds to
/// compress, seconds to decompress).
type Row = (String, u64, f64, f64);

/// `llmc bench`'s figures for one file.
struct Bench {
    file: String,
    bytes: u64,
    threads: usize,
    model: String,
    rows: Vec<Row>,
}

impl Bench {
    fn print(&self) {
        let mut t = Table::new(&["Method", "Size", "Bits/byte", "Compress", "Decompress"]);
        for (name, size, tc, td) in &self.rows {
            t.row(bench_row(name, self.bytes, *size, *tc, *td));
        }
        println!("{}: {} bytes", self.file, self.bytes);
        print!("{}", t.render(&[true, false, false, false, false]));
        let _ = std::io::stdout().flush();
    }

    /// `bench --json`: sizes in bytes, times in seconds, speeds in input
    /// bytes per second.
    fn json(&self) -> serde_json::Value {
        let n = self.bytes;
        let methods: Vec<_> = self
            .rows
            .iter()
            .map(|(name, size, tc, td)| {
                json!({
                    "method": name,
                    "size": size,
                    "bits_per_byte": json::ratio(8.0 * *size as f64, n),
                    "compress_seconds": tc,
                    "decompress_seconds": td,
                    "compress_bytes_per_second": n as f64 / tc.max(1e-9),
                    "decompress_bytes_per_second": n as f64 / td.max(1e-9),
                })
            })
            .collect();
        json!({
            "file": self.file,
            "bytes": n,
            "cpu": llmc::kernels::cpu_name(),
            "threads": self.threads,
            "model": self.model,
            "methods": methods,
        })
    }
}

fn bench_one(ctx: &mut Ctx, p: &std::path::Path, codec: CodecOptions) -> Result<Bench> {
    let src = Source::from_arg(p);
    src.check(true)?;
    let input = src.read_all()?;
    let mut rows: Vec<Row> = Vec::new();
    let n = input.len() as u64;

    let level = ctx.level;
    let show = ctx.progress;
    let engine = ctx.engine.get(level)?;
    for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
        let opts = CodecOptions {
            coder: Some(coder),
            ..codec
        };
        let label = format!("{} llmc {}", src.name(), coder.name());
        let t0 = Instant::now();
        let mut packed = Vec::new();
        {
            let bar = Bar::new(show, &label, Some(n));
            engine::compress(
                engine,
                &mut &input[..],
                Some(n),
                &mut packed,
                &opts,
                &mut |p| bar.tick(p),
            )
            .with_context(|| format!("{}: llmc {}", src.name(), coder.name()))?;
        }
        let tc = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut back = Vec::with_capacity(input.len());
        {
            let bar = Bar::new(show, &label, Some(n));
            engine::decompress(
                engine,
                &mut &packed[..],
                Some(n),
                &mut back,
                None,
                &mut |p| bar.tick(p),
            )
            .with_context(|| format!("{}: llmc {}", src.name(), coder.name()))?;
        }
        let td = t1.elapsed().as_secs_f64();
        ensure!(
            back == input,
            "{}: llmc {}: round trip differs",
            src.name(),
            coder.name()
        );
        rows.push((
            format!("llmc {}", coder.name()),
            packed.len() as u64,
            tc,
            td,
        ));
    }

    let others: [(&str, Codec, Codec); 3] = [
        (
            "zstd -19",
            Box::new(|d| Ok(zstd::bulk::compress(d, 19)?)),
            Box::new(|d| Ok(zstd::stream::decode_all(d)?)),
        ),
        (
            "xz -9",
            Box::new(|d| {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 9);
                e.write_all(d)?;
                Ok(e.finish()?)
            }),
            Box::new(|d| {
                let mut out = Vec::new();
                liblzma::read::XzDecoder::new(d).read_to_end(&mut out)?;
                Ok(out)
            }),
        ),
        (
            "gzip -9",
            Box::new(|d| {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                e.write_all(d)?;
                Ok(e.finish()?)
            }),
            Box::new(|d| {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(d).read_to_end(&mut out)?;
                Ok(out)
            }),
        ),
    ];
    for (name, comp, decomp) in &others {
        let t0 = Instant::now();
        let packed = comp(&input).with_context(|| format!("{}: {name}", src.name()))?;
        let tc = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let back = decomp(&packed).with_context(|| format!("{}: {name}", src.name()))?;
        let td = t1.elapsed().as_secs_f64();
        ensure!(back == input, "{}: {name}: round trip differs", src.name());
        rows.push((name.to_string(), packed.len() as u64, tc, td));
    }
    Ok(Bench {
        file: src.name(),
        bytes: n,
        threads: engine.model().threads(),
        model: engine.label(),
        rows,
    })
}

fn bench_row(name: &str, n: u64, size: u64, tc: f64, td: f64) -> Vec<String> {
    vec![
        name.to_string(),
        size.to_string(),
        if n == 0 {
            "-".into()
        } else {
            format!("{:.3}", 8.0 * size as f64 / n as f64)
        },
        rate(n, tc),
        rate(n, td),
    ]
}

/// `llmc model fetch`: make sure the default model is in the cache
/// (downloading and verifying it if not) and print its path.
pub fn model_fetch(ctx: &Ctx, name: Option<&str>) -> i32 {
    match engine::fetch_model(name, ctx.level < 2) {
        Ok(p) => {
            println!("{}", p.display());
            0
        }
        Err(e) => {
            ctx.error(&e.context("model"));
            1
        }
    }
}

/// `llmc model list`: the known models, their sizes, and where each is
/// cached (or that it is not yet).
pub fn model_list(ctx: &Ctx) -> i32 {
    let mut t = Table::new(&["Name", "Model", "Size", "Cached"]);
    for m in llmc::registry::KNOWN_MODELS {
        let cached = match llmc::registry::cached_path(m) {
            Ok(Some(p)) => p.display().to_string(),
            Ok(None) => "no (fetched on first use)".into(),
            Err(e) => {
                ctx.error(&anyhow::Error::from(e).context("model cache"));
                return 1;
            }
        };
        let size = format!("{} MB", (m.file_size + 500_000) / 1_000_000);
        t.row(vec![m.id.into(), m.name.into(), size, cached]);
    }
    print!("{}", t.render(&[true, true, false, true]));
    0
}

/// `llmc model path`: the model a run would use.
pub fn model_path(ctx: &Ctx, explicit: Option<&std::path::Path>) -> i32 {
    match engine::resolve_model(explicit, ctx.level < 2) {
        Ok(p) => {
            println!("{}", p.display());
            0
        }
        Err(e) => {
            ctx.error(&e.context("model"));
            1
        }
    }
}

/// `llmc model info`: facts about the model file.
pub fn model_info(ctx: &Ctx, explicit: Option<&std::path::Path>) -> i32 {
    match engine::resolve_model(explicit, ctx.level < 2).and_then(|p| engine::model_info(&p)) {
        Ok(rows) => {
            let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (k, v) in rows {
                println!("{k:<w$}  {v}");
            }
            0
        }
        Err(e) => {
            ctx.error(&e.context("model"));
            1
        }
    }
}
