//! compress / decompress / test / list over a list of inputs, zstd-style:
//! each input is handled on its own, an error is reported as
//! `llmc: NAME: why` and the next input is tried; the exit status is 1 if any
//! failed.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use super::engine::{self, CodecOptions, Engine, EngineOptions};
use super::io::{check_dest, compressed_name, decompressed_name, io_err, Dest, Output, Source};
use super::json::{self, Report};
use super::progress::Bar;
use super::signal::{self, Interrupted};
use super::table::{human, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Compress,
    Decompress,
    Test,
    List,
}

/// Verbosity levels (zstd's scheme): 0 nothing, 1 errors, 2 + warnings and
/// progress (default), 3 + a summary line per file, 4 + details.
pub struct Ctx {
    pub level: i32,
    /// Draw progress bars (stderr is a terminal and level >= 2).
    pub progress: bool,
    pub engine: LazyEngine,
    /// `--json` / `--jsonl`: results as JSON on stdout instead of tables.
    pub json: Option<super::json::Format>,
}

impl Ctx {
    pub fn new(level: i32, engine: EngineOptions) -> Ctx {
        Ctx {
            level,
            progress: level >= 2 && io::stderr().is_terminal(),
            engine: LazyEngine {
                opts: engine,
                slot: None,
                failed: false,
            },
            json: None,
        }
    }

    /// `llmc: <message chain>` on stderr, unless -qq.
    pub fn error(&self, e: &anyhow::Error) {
        if self.level >= 1 {
            eprintln!("llmc: {}", render(e));
        }
    }

    pub fn warn(&self, msg: &str) {
        if self.level >= 2 {
            eprintln!("llmc: {msg}");
        }
    }
}

/// The model is loaded on first use only: listing, and errors found before
/// any coding (missing file, existing output), never load it.
pub struct LazyEngine {
    opts: EngineOptions,
    slot: Option<Engine>,
    /// Loading failed: no later input can succeed either.
    pub failed: bool,
}

impl LazyEngine {
    /// A lazy engine with these options but another model.
    pub fn with_model(&self, model: PathBuf) -> LazyEngine {
        LazyEngine {
            opts: EngineOptions {
                model: Some(model),
                ..self.opts.clone()
            },
            slot: None,
            failed: false,
        }
    }

    pub fn get(&mut self, level: i32) -> Result<&Engine> {
        if self.slot.is_none() {
            if level >= 4 {
                eprintln!("llmc: loading model ({} threads)", self.opts.threads);
            }
            match Engine::load(&self.opts) {
                Ok(e) => {
                    if level >= 4 {
                        eprintln!("llmc: model: {}", e.label());
                    }
                    self.slot = Some(e)
                }
                Err(e) => {
                    self.failed = true;
                    return Err(anyhow::Error::from(e).context("model"));
                }
            }
        }
        Ok(self.slot.as_ref().expect("loaded above"))
    }
}

/// One line from an error chain: `a: b: c`, leaving out a cause that its
/// parent's message already quotes (library errors often include their source
/// in their own text) and std's `(os error N)` tails.
pub fn render(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let msg = super::io::strip_os_error(&cause.to_string());
        if parts.last().is_some_and(|p| p.contains(&msg)) {
            continue;
        }
        parts.push(msg);
    }
    parts.join(": ")
}

/// An error caused by Ctrl-C: our own `Interrupted`, the codec's (its
/// progress callback returned `Break`), or whatever error the library made
/// of the aborted write after the flag was set.
pub fn is_interrupt(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<Interrupted>()
            || matches!(
                c.downcast_ref::<llmc::codec::CodecError>(),
                Some(llmc::codec::CodecError::Interrupted)
            )
    }) || signal::check().is_err()
}

/// What to do with the inputs and their outputs.
pub struct Job<'a> {
    pub mode: Mode,
    pub files: &'a [std::path::PathBuf],
    pub stdout: bool,
    pub output: Option<&'a std::path::Path>,
    pub rm: bool,
    pub force: bool,
    /// `-r`: directories stand for the files under them.
    pub recursive: bool,
    /// `-M`: the most memory decoding may use, in bytes.
    pub memory: Option<u64>,
    pub codec: CodecOptions,
}

/// Run a job over all its inputs; returns the exit status.
pub fn run(ctx: &mut Ctx, job: &Job) -> i32 {
    if job.stdout && job.output.is_some() {
        ctx.error(&anyhow!(
            "-c and -o cannot be used together (-o - writes to standard output)"
        ));
        return 1;
    }
    let sources: Vec<Source> = if job.files.is_empty() {
        vec![Source::Stdin]
    } else if job.recursive {
        let mut out = Vec::new();
        for p in job.files {
            expand(ctx, job.mode, p, &mut out);
        }
        out
    } else {
        job.files.iter().map(|p| Source::from_arg(p)).collect()
    };
    if sources.iter().filter(|s| **s == Source::Stdin).count() > 1 {
        ctx.error(&anyhow!("standard input (-) can be given only once"));
        return 1;
    }
    if job.output.is_some() && sources.len() > 1 {
        ctx.error(&anyhow!("-o can only be used with a single input file"));
        return 1;
    }
    if job.mode == Mode::List {
        return list(ctx, &sources);
    }

    let dests: Vec<Result<Dest>> = sources.iter().map(|s| dest_for(job, s)).collect();
    let to_stdout = dests.iter().any(|d| matches!(d, Ok(Dest::Stdout)));
    // zstd's console rules: no compressed bytes on, nor from, a terminal unless -f.
    if !job.force {
        if job.mode == Mode::Compress && to_stdout && io::stdout().is_terminal() {
            ctx.error(&anyhow!(
                "stdout is a terminal; not writing compressed data to it (use -f to force)"
            ));
            return 1;
        }
        if sources.contains(&Source::Stdin) && io::stdin().is_terminal() {
            ctx.error(&anyhow!("stdin is a terminal; aborting (use -f to force)"));
            return 1;
        }
    }
    if job.rm && to_stdout {
        ctx.warn("--rm is ignored for output to stdout");
    }

    let mut status = 0;
    for (src, dest) in sources.iter().zip(dests) {
        let r = dest
            .map_err(|e| e.context(src.name()))
            .and_then(|dest| one(ctx, job, src, &dest));
        if let Err(e) = r {
            if is_interrupt(&e) {
                ctx.error(&anyhow!("interrupted").context(src.name()));
                return signal::exit_status();
            }
            ctx.error(&e);
            status = 1;
            if ctx.engine.failed {
                break;
            }
        }
        if signal::check().is_err() {
            return signal::exit_status();
        }
    }
    status
}

fn dest_for(job: &Job, src: &Source) -> Result<Dest> {
    if job.mode == Mode::Test {
        return Ok(Dest::Null);
    }
    if let Some(o) = job.output {
        return Ok(if o.as_os_str() == "-" {
            Dest::Stdout
        } else {
            Dest::File(o.to_path_buf())
        });
    }
    match src {
        _ if job.stdout => Ok(Dest::Stdout),
        Source::Stdin => Ok(Dest::Stdout),
        Source::File(p) => Ok(Dest::File(match job.mode {
            Mode::Compress => compressed_name(p)?,
            _ => decompressed_name(p)?,
        })),
    }
}

/// `-r`: `p` itself if it is not a directory, else the files under it, in
/// name order: when compressing those without the `.llmc` suffix, when
/// decompressing those with it. Symbolic links met inside are skipped.
fn expand(ctx: &Ctx, mode: Mode, p: &Path, out: &mut Vec<Source>) {
    if p.as_os_str() == "-" || !p.is_dir() {
        out.push(Source::from_arg(p));
        return;
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(p) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(e) => {
            ctx.error(&io_err(p.display(), e));
            return;
        }
    };
    entries.sort();
    for e in entries {
        let Ok(m) = std::fs::symlink_metadata(&e) else {
            continue;
        };
        if m.is_dir() {
            expand(ctx, mode, &e, out);
        } else if m.is_file() {
            let has_suffix = e
                .as_os_str()
                .as_encoded_bytes()
                .ends_with(super::io::SUFFIX.as_bytes());
            if has_suffix == (mode == Mode::Compress) {
                if ctx.level >= 3 {
                    eprintln!("llmc: {}: skipped", e.display());
                }
                continue;
            }
            out.push(Source::File(e));
        } else if ctx.level >= 3 {
            eprintln!("llmc: {}: not a regular file; skipped", e.display());
        }
    }
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Memory left for decoding states under `-M limit`, after the model.
fn state_budget(limit: u64) -> Result<usize> {
    // Headroom for the logits, the block in flight and the allocator.
    const HEADROOM: u64 = 64 << 20;
    let resident = resident_bytes().unwrap_or(0);
    let need = resident + HEADROOM;
    if limit < need {
        return Err(anyhow!(
            "-M {}: the model alone needs about {} (raise the limit)",
            human(limit),
            human(need)
        ));
    }
    Ok(usize::try_from(limit - need).unwrap_or(usize::MAX))
}

/// This process's resident memory (Linux: /proc/self/statm).
fn resident_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// One input to one output, streamed: the input is read block by block
/// and each block's output written as soon as it is ready (decompressed
/// bytes only once their block's check holds).
fn one(ctx: &mut Ctx, job: &Job, src: &Source, dest: &Dest) -> Result<()> {
    // Cheap checks first: none of them needs the model.
    let meta = src.check(job.force)?;
    if job.rm && !job.force && src.is_symlink() && matches!(dest, Dest::File(_)) {
        return Err(anyhow!(
            "is a symbolic link; --rm would leave the link -- ignored (use -f to compress \
             what it points to and keep the link)"
        )
        .context(src.name()));
    }
    check_dest(dest, src, job.force)?;
    let regular = meta.as_ref().is_some_and(|m| m.is_file());
    let mut input = src.open()?;
    let total = match job.mode {
        Mode::Compress => meta.as_ref().filter(|_| regular).map(|m| m.len()),
        _ => {
            // The start is checked before the model is loaded.
            let mut head = Vec::with_capacity(64);
            (&mut input)
                .take(64)
                .read_to_end(&mut head)
                .map_err(|e| io_err(src.name(), e))?;
            engine::check_start(&head).with_context(|| src.name())?;
            input = Box::new(io::Cursor::new(head).chain(input));
            // A file's end records give the total for the progress bar.
            match src {
                Source::File(p) if regular && ctx.progress => File::open(p)
                    .ok()
                    .and_then(|f| engine::inspect(BufReader::new(f)).ok())
                    .map(|l| l.uncompressed),
                _ => None,
            }
        }
    };
    signal::check()?;
    let level = ctx.level;
    let show = ctx.progress;
    let engine = ctx.engine.get(level)?;
    signal::check()?;
    let budget = match job.memory {
        Some(m) if job.mode != Mode::Compress => Some(state_budget(m)?),
        _ => None,
    };

    let bar = Bar::new(show, &src.name(), total);
    let mut tick = |p| bar.tick(p);
    let mut out = Output::open(dest)?;
    let mut input = Counted {
        inner: input,
        count: 0,
    };
    let (result, failed) = {
        let mut sink = out.sink();
        let r = match job.mode {
            Mode::Compress => {
                engine::compress(engine, &mut input, total, &mut sink, &job.codec, &mut tick)
            }
            _ => engine::decompress(engine, &mut input, total, &mut sink, budget, &mut tick),
        };
        (r, sink.failed.take())
    };
    let n_out = match (result, failed) {
        (Ok(n), _) => n,
        // The output's own failure (a full disk): named after the output.
        (Err(_), Some(e)) => return Err(io_err(dest.name(), e)),
        (Err(e), None) => return Err(e.context(src.name())),
    };
    let n_in = input.count;
    drop(bar);
    let sync = job.rm && matches!(dest, Dest::File(_));
    out.commit(dest, meta.as_ref(), job.force, sync)?;

    if sync {
        if let Some(why) = src.remove()? {
            ctx.warn(&why);
        }
    }
    if level >= 3 {
        summary(job.mode, src, dest, n_in, n_out);
    }
    Ok(())
}

/// `-v`: a line per file.
fn summary(mode: Mode, src: &Source, dest: &Dest, n_in: u64, n_out: u64) {
    match mode {
        Mode::Compress => {
            let pct = if n_in == 0 {
                0.0
            } else {
                100.0 * n_out as f64 / n_in as f64
            };
            eprintln!(
                "{} : {:.2}%   ({} => {} bytes, {})",
                src.name(),
                pct,
                n_in,
                n_out,
                dest.name()
            );
        }
        Mode::Decompress => eprintln!("{}: {} bytes", src.name(), n_out),
        Mode::Test => eprintln!("{}: OK ({} bytes)", src.name(), n_out),
        Mode::List => {}
    }
}

/// `-l`: a table of header facts per file (no model needed).
fn list(ctx: &Ctx, sources: &[Source]) -> i32 {
    let exact = ctx.level >= 3;
    let size = |n: u64| if exact { n.to_string() } else { human(n) };
    let mut t = Table::new(&[
        "Frames",
        "Blocks",
        "Compressed",
        "Uncompressed",
        "Ratio",
        "Bits/byte",
        "Model",
        "Coder",
        "Level",
        "Check",
        "Filename",
    ]);
    let mut status = 0;
    let (mut tc, mut tu, mut tf, mut tk, mut ok) = (0u64, 0u64, 0u64, 0u64, 0usize);
    let mut report = ctx.json.map(Report::new);
    for src in sources {
        let r = (|| -> Result<engine::Listing> {
            if *src == Source::Stdin {
                return Err(anyhow!(
                    "--list does not support reading from standard input"
                ));
            }
            src.check(true)?;
            engine::inspect(BufReader::new(src.open()?)).with_context(|| src.name())
        })();
        match r {
            Ok(l) if report.is_some() => {
                let r = report.as_mut().expect("checked");
                r.push(listing_json(&src.name(), &l));
            }
            Ok(l) => {
                t.row(vec![
                    l.frames.to_string(),
                    l.chunks.to_string(),
                    size(l.compressed),
                    size(l.uncompressed),
                    ratio(l.uncompressed, l.compressed),
                    bits_per_byte(l.compressed, l.uncompressed),
                    l.model,
                    l.coder,
                    l.level,
                    l.check,
                    src.name(),
                ]);
                tc += l.compressed;
                tu += l.uncompressed;
                tf += l.frames;
                tk += l.chunks;
                ok += 1;
            }
            Err(e) => {
                ctx.error(&e);
                if let Some(r) = report.as_mut() {
                    r.error(&src.name(), &render(&e));
                }
                status = 1;
            }
        }
    }
    if let Some(r) = report {
        r.finish();
        return status;
    }
    if ok > 1 {
        t.rule();
        t.row(vec![
            tf.to_string(),
            tk.to_string(),
            size(tc),
            size(tu),
            ratio(tu, tc),
            bits_per_byte(tc, tu),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            format!("{ok} files"),
        ]);
    }
    if ok > 0 && ctx.level >= 1 {
        print!(
            "{}",
            t.render(&[false, false, false, false, false, false, true, true, false, true, true,])
        );
    }
    status
}

/// `-l --json`: one file's header facts (sizes in bytes; `level` as the
/// table shows it: a level, `custom`, `-` for version 1, comma-separated
/// when the frames differ).
fn listing_json(name: &str, l: &engine::Listing) -> serde_json::Value {
    serde_json::json!({
        "file": name,
        "frames": l.frames,
        "blocks": l.chunks,
        "compressed": l.compressed,
        "uncompressed": l.uncompressed,
        "ratio": json::ratio(l.uncompressed as f64, l.compressed),
        "bits_per_byte": json::ratio(8.0 * l.compressed as f64, l.uncompressed),
        "model": l.model,
        "coder": l.coder,
        "level": l.level,
        "check": l.check,
    })
}

fn ratio(uncompressed: u64, compressed: u64) -> String {
    if compressed == 0 {
        "-".into()
    } else {
        format!("{:.3}", uncompressed as f64 / compressed as f64)
    }
}

fn bits_per_byte(compressed: u64, uncompressed: u64) -> String {
    if uncompressed == 0 {
        "-".into()
    } else {
        format!("{:.3}", 8.0 * compressed as f64 / uncompressed as f64)
    }
}
