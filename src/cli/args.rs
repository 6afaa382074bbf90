//! Command-line grammar (clap derive). Modelled on zstd: bare `llmc FILE...`
//! compresses, `-d` decompresses, `-t` tests, `-l` lists; the subcommands
//! `compress`/`decompress` are spelled-out aliases of the same operations, and
//! `score`, `bench`, `model` are extra tools.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `llmc --version`: the program, the formats and the default model.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nformat: writes version 2; reads versions 1 and 2",
    "\ndefault model: SmolLM2-135M-Instruct (Q4_1 GGUF, fetched into the cache on first use)"
);

#[derive(Debug, Parser)]
#[command(
    name = "llmc",
    version,
    long_version = LONG_VERSION,
    about = "Lossless compression with a language model as the probability model",
    long_about = "Lossless compression with a language model as the probability model.\n\n\
        llmc FILE...         compress each FILE to FILE.llmc (FILE is kept)\n\
        llmc -d FILE.llmc    decompress to FILE\n\
        With no FILE, or when FILE is -, read standard input and write standard output.",
    after_help = "Exit status: 0 on success, 1 on any error (including usage errors, as zstd and gzip do), \
        130 after SIGINT (Ctrl-C), 143 after SIGTERM, 129 after SIGHUP.\n\
        A file named like a subcommand, or starting with -, can be given as ./NAME or after --.\n\
        Invoked as unllmc, llmc decompresses; as llmccat, it decompresses to standard output.",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub mode: ModeArgs,

    #[command(flatten)]
    pub io: IoArgs,

    #[command(flatten)]
    pub codec: CodecArgs,

    #[command(flatten)]
    pub global: GlobalArgs,

    /// Print a shell completion script for SHELL and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    pub completions: Option<clap_complete::Shell>,

    /// Print the manual page (roff) and exit
    #[arg(long, exclusive = true)]
    pub man: bool,
}

/// What bare `llmc` does with its files (zstd's operation flags).
#[derive(Debug, Args, Default)]
#[group(multiple = false)]
pub struct ModeArgs {
    /// Compress (the default)
    #[arg(short = 'z', long)]
    pub compress: bool,
    /// Decompress
    #[arg(short = 'd', long, visible_alias = "uncompress")]
    pub decompress: bool,
    /// Test the integrity of compressed files (decompress, verify the checksum, write nothing)
    #[arg(short = 't', long)]
    pub test: bool,
    /// Print information about compressed files (reads headers only; no model needed)
    #[arg(short = 'l', long)]
    pub list: bool,
}

/// Files and where their output goes.
#[derive(Debug, Args, Default, Clone)]
pub struct IoArgs {
    /// Input files (`-` or none: standard input)
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write to standard output (several inputs are concatenated)
    #[arg(short = 'c', long, visible_alias = "to-stdout")]
    pub stdout: bool,
    /// Write the output to NAME (only with a single input)
    #[arg(short = 'o', value_name = "NAME")]
    pub output: Option<PathBuf>,
    /// Keep the source file (the default)
    #[arg(short = 'k', long, overrides_with = "rm")]
    pub keep: bool,
    /// Remove the source file after success
    #[arg(long, overrides_with = "keep")]
    pub rm: bool,
    /// Overwrite existing output; write compressed data to a terminal; read
    /// devices and FIFOs; with --rm, compress through a symbolic link
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Operate on the files under directories (compress: those without
    /// the .llmc suffix; decompress: those with it)
    #[arg(short = 'r', long)]
    pub recursive: bool,
}

impl IoArgs {
    /// These options combined with those given before the subcommand.
    pub fn merged(&self, top: &IoArgs) -> IoArgs {
        IoArgs {
            files: self.files.clone(),
            stdout: self.stdout || top.stdout,
            output: self.output.clone().or_else(|| top.output.clone()),
            keep: self.keep || top.keep,
            rm: (self.rm || top.rm) && !self.keep,
            force: self.force || top.force,
            recursive: self.recursive || top.recursive,
        }
    }
}

/// Options that change the compressed bytes.
#[derive(Debug, Args, Default, Clone)]
pub struct CodecArgs {
    /// Compression level 1 (fastest) ..= 9 (smallest); also written -1 .. -9
    /// [default: 5]
    #[arg(long, value_name = "N", value_parser = parse_level, allow_hyphen_values = true)]
    pub level: Option<u8>,
    /// Level 1
    #[arg(long, conflicts_with_all = ["level", "best"])]
    pub fast: bool,
    /// Level 9
    #[arg(long, conflicts_with_all = ["level", "fast"])]
    pub best: bool,
    /// Entropy coder (a custom setting: recorded in the file)
    #[arg(long, value_enum, value_name = "CODER")]
    pub coder: Option<CoderArg>,
    /// Most tokens the model sees at once, 2..=65536 and within the model's
    /// context (8192 for the default model; a custom setting: recorded in
    /// the file) [default: the level's]
    #[arg(long, visible_alias = "chunk-tokens", value_name = "N",
          value_parser = clap::value_parser!(u32).range(2..=65536))]
    pub window: Option<u32>,
    /// Tokens of context carried into each new window (1..window; a custom
    /// setting) [default: the level's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub carry: Option<u32>,
    /// Attention sinks of sliding windows: each new window keeps the
    /// stream's first N tokens and the last --carry; 0 restarts each window
    /// from an empty state fed --carry tokens again (a custom setting)
    /// [default: the level's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=65535))]
    pub sinks: Option<u32>,
    /// Tokens of a block's first stream fed to each of its later streams as
    /// context before their own (0: none; a custom setting) [default: the
    /// level's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=65535))]
    pub primer: Option<u32>,
    /// Switch off the online logit bias of the adaptive predictor (a custom
    /// setting)
    #[arg(long)]
    pub no_bias: bool,
    /// Switch off the match model and SSE of the adaptive predictor (a
    /// custom setting)
    #[arg(long)]
    pub no_match: bool,
    /// Switch off the block's shared token n-gram model (a custom setting)
    #[arg(long)]
    pub no_ngram: bool,
    /// Code CRLF line endings as they are (the compressor's choice; not
    /// recorded)
    #[arg(long)]
    pub no_crlf: bool,
    /// Code text wrapped at a fixed width as it is, instead of its
    /// paragraphs as one line each (the compressor's choice; not recorded)
    #[arg(long)]
    pub no_reflow: bool,
}

/// `--level` (and `-N`): 1..=9, with a message that gives the range for
/// zstd's larger numbers.
fn parse_level(s: &str) -> Result<u8, String> {
    let s = s.trim_start_matches('-');
    let n: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a level (1..=9)"))?;
    match n {
        1..=9 => Ok(n as u8),
        _ => Err(format!(
            "level {n} is outside llmc's range 1..=9 (zstd's -19 and -22 correspond to \
             llmc -9 or --best; --fast is -1)"
        )),
    }
}

/// `-M` sizes: bytes, or a number with K, M, G (powers of 1024; KB, MB,
/// GB, KiB, MiB, GiB mean the same, as in zstd).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 800M, 2G, 1048576)"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use K, M or G)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// `-N` (N digits) as `--level=N`, zstd style; everything after `--` is left
/// alone.
pub fn expand_level_flags(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut literal = false;
    for a in args {
        if !literal {
            if a == "--" {
                literal = true;
            } else if let Some(d) = a.to_str().and_then(|s| s.strip_prefix('-')) {
                if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) {
                    out.push(format!("--level={d}").into());
                    continue;
                }
            }
        }
        out.push(a);
    }
    out
}

/// Options every operation understands; accepted before or after a subcommand.
#[derive(Debug, Args, Default, Clone)]
pub struct GlobalArgs {
    /// Print less (-q: errors only, -qq: nothing)
    #[arg(short = 'q', long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
    /// Print more (-v: a summary line per file)
    #[arg(short = 'v', long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Worker threads for the model (0: one per available core; more
    /// than the cores available are reduced to them) [default: 0]
    #[arg(short = 'T', long, value_name = "N", global = true,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub threads: Option<u32>,
    /// Most memory decompression may use (e.g. 800M, 2G): fewer streams
    /// are decoded at once to stay within it; an error if the model alone
    /// needs more [default: no limit beyond 1 GiB of decoding states]
    #[arg(short = 'M', long, value_name = "SIZE", global = true, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Print the results of -l, score and bench as one JSON array
    #[arg(long, global = true, conflicts_with = "jsonl")]
    pub json: bool,
    /// Print the results of -l, score and bench as JSON lines, one object
    /// per file as soon as it is done
    #[arg(long, global = true)]
    pub jsonl: bool,
    /// Draw no progress bar (it is drawn only when stderr is a terminal)
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Model file (GGUF), or a known model's name (smollm2-135m,
    /// gemma3-270m: `llmc model list`), fetched into the cache ($LLMC_HOME)
    /// on first use; `score` takes several to compare them [env:
    /// LLMC_MODEL; default: smollm2-135m, SmolLM2-135M-Instruct Q4_1]
    #[arg(long, value_name = "PATH|NAME", global = true, action = clap::ArgAction::Append)]
    pub model: Vec<PathBuf>,
}

impl CodecArgs {
    /// These options, or those given before the subcommand.
    pub fn merged(&self, top: &CodecArgs) -> CodecArgs {
        CodecArgs {
            level: self.level.or(top.level),
            fast: self.fast || top.fast,
            best: self.best || top.best,
            coder: self.coder.or(top.coder),
            window: self.window.or(top.window),
            carry: self.carry.or(top.carry),
            sinks: self.sinks.or(top.sinks),
            primer: self.primer.or(top.primer),
            no_bias: self.no_bias || top.no_bias,
            no_match: self.no_match || top.no_match,
            no_ngram: self.no_ngram || top.no_ngram,
            no_crlf: self.no_crlf || top.no_crlf,
            no_reflow: self.no_reflow || top.no_reflow,
        }
    }

    /// Whether any option is given.
    pub fn any(&self) -> bool {
        self.level.is_some()
            || self.fast
            || self.best
            || self.coder.is_some()
            || self.window.is_some()
            || self.carry.is_some()
            || self.no_bias
            || self.no_match
            || self.no_ngram
            || self.no_crlf
            || self.no_reflow
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoderArg {
    /// Arithmetic (range) coding of the model's probabilities: smallest output
    Arith,
    /// Rank of each token under the model, then a generic back end
    Rank,
}

impl From<CoderArg> for llmc::coder::CoderKind {
    fn from(c: CoderArg) -> Self {
        match c {
            CoderArg::Arith => llmc::coder::CoderKind::Arithmetic,
            CoderArg::Rank => llmc::coder::CoderKind::Rank,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compress files (same as bare `llmc FILE...`)
    Compress {
        #[command(flatten)]
        io: IoArgs,
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Decompress files (same as `llmc -d FILE...`)
    Decompress {
        #[command(flatten)]
        io: IoArgs,
    },
    /// Measure how well the model predicts files, without writing anything
    Score {
        /// Files to score (`-`: standard input)
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// A row per setting of the adaptive predictor (none, bias, match
        /// and SSE, all), from one model run
        #[arg(long)]
        levers: bool,
        /// Level and settings, as for compression
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Compare llmc with zstd -19, xz -9 and gzip -9 on files
    Bench {
        /// Files to measure
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Level and settings, as for compression
        #[command(flatten)]
        codec: CodecArgs,
    },
    /// Manage the model
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download a known model (default: smollm2-135m) into the cache (if not there yet)
    /// and print its path
    Fetch {
        /// A known model's name (`llmc model list`)
        #[arg(value_name = "NAME")]
        name: Option<String>,
    },
    /// List the models llmc knows by name, and whether each is in the cache
    List,
    /// Print the path of the model llmc would use (--model, LLMC_MODEL, else the default,
    /// fetched if needed)
    Path,
    /// Print the model's path, architecture and fingerprint
    Info,
}
