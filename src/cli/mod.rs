//! The `llmc` command line: argument parsing, file handling, progress and
//! exit codes. Everything that is not specific to a command line lives in
//! the library; `engine` is the single seam to it.

mod args;
mod compare;
mod engine;
mod io;
mod json;
mod ops;
mod progress;
mod signal;
mod table;
mod tools;

use clap::Parser;

use args::{Cli, Command, ModelCommand};
use engine::{CodecOptions, EngineOptions};
use llmc::coder::CoderKind;
use ops::{Ctx, Job, Mode};

/// Parse the arguments, run, and return the exit status:
/// 0 success, 1 any error (usage errors included, like zstd and gzip),
/// 128 + the signal's number when interrupted (130 SIGINT, 143 SIGTERM).
pub fn main() -> i32 {
    // First, so that a signal at any later point takes the clean path.
    signal::install();
    let cli = match Cli::try_parse_from(args::expand_level_flags(by_name(std::env::args_os()))) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
        }
    };

    if let Some(status) = print_generated(&cli) {
        return status;
    }

    let g = &cli.global;
    let level = 2 + i32::from(g.verbose) - i32::from(g.quiet);
    let threads = threads_for(g.threads, level);
    let mut ctx = Ctx::new(
        level,
        EngineOptions {
            model: g.model.last().cloned(),
            threads,
            quiet: level < 2,
            variant: None,
        },
    );
    ctx.progress &= !g.no_progress;
    ctx.json = match (g.json, g.jsonl) {
        (true, _) => Some(json::Format::Document),
        (_, true) => Some(json::Format::Lines),
        _ => None,
    };

    if let Err(msg) = check_top_level(&cli) {
        eprintln!("error: {msg}\n\nFor more information, try '--help'.");
        return 1;
    }

    match &cli.command {
        None => {
            let m = &cli.mode;
            let mode = if m.decompress {
                Mode::Decompress
            } else if m.test {
                Mode::Test
            } else if m.list {
                Mode::List
            } else {
                Mode::Compress
            };
            run_job(&mut ctx, mode, &cli.io, g.memory, codec_opts(&cli.codec))
        }
        Some(Command::Compress { io, codec }) => {
            let io = io.merged(&cli.io);
            let codec = codec.merged(&cli.codec);
            run_job(&mut ctx, Mode::Compress, &io, g.memory, codec_opts(&codec))
        }
        Some(Command::Decompress { io }) => {
            let io = io.merged(&cli.io);
            run_job(
                &mut ctx,
                Mode::Decompress,
                &io,
                g.memory,
                codec_opts(&cli.codec),
            )
        }
        Some(Command::Score {
            files,
            levers: false,
            codec,
        }) if g.model.len() > 1 => compare::score_models(
            &mut ctx,
            &g.model,
            files,
            codec_opts(&codec.merged(&cli.codec)),
        ),
        Some(Command::Score {
            files,
            levers,
            codec,
        }) => tools::score(
            &mut ctx,
            files,
            codec_opts(&codec.merged(&cli.codec)),
            *levers,
        ),
        Some(Command::Bench { files, codec }) => {
            tools::bench(&mut ctx, files, codec_opts(&codec.merged(&cli.codec)))
        }
        Some(Command::Model(ModelCommand::Fetch { name })) => {
            tools::model_fetch(&ctx, name.as_deref())
        }
        Some(Command::Model(ModelCommand::List)) => tools::model_list(&ctx),
        Some(Command::Model(ModelCommand::Path)) => {
            tools::model_path(&ctx, g.model.last().map(|p| p.as_path()))
        }
        Some(Command::Model(ModelCommand::Info)) => {
            tools::model_info(&ctx, g.model.last().map(|p| p.as_path()))
        }
    }
}

/// The codec options of the command line's codec arguments.
fn codec_opts(c: &args::CodecArgs) -> CodecOptions {
    CodecOptions {
        coder: c.coder.map(CoderKind::from),
        level: if c.fast {
            Some(1)
        } else if c.best {
            Some(9)
        } else {
            c.level
        },
        window: c.window,
        carry: c.carry,
        sinks: c.sinks,
        primer: c.primer,
        no_bias: c.no_bias,
        no_match: c.no_match,
        no_ngram: c.no_ngram,
        no_crlf: c.no_crlf,
        no_reflow: c.no_reflow,
    }
}

/// `--completions SHELL` and `--man`: print and return the exit status.
fn print_generated(cli: &Cli) -> Option<i32> {
    if let Some(shell) = cli.completions {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        clap_complete::generate(shell, &mut cmd, "llmc", &mut std::io::stdout());
        return Some(0);
    }
    if cli.man {
        use clap::CommandFactory;
        let man = clap_mangen::Man::new(Cli::command());
        return Some(match man.render(&mut std::io::stdout()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("llmc: stdout: {e}");
                1
            }
        });
    }
    None
}

/// `-T`: 0 or none is one thread per available core; more than the cores
/// available are reduced to them, with a warning.
fn threads_for(asked: Option<u32>, level: i32) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match asked {
        None | Some(0) => cores,
        Some(t) if t as usize > cores => {
            if level >= 2 {
                eprintln!(
                    "llmc: -T {t}: using {cores} threads, one per available core (more would \
                     only slow the work down)"
                );
            }
            cores
        }
        Some(t) => t as usize,
    }
}

/// Options given before a subcommand: file options carry over to
/// `compress`/`decompress` (`llmc -f compress x`); mode flags never combine
/// with a subcommand, and file options mean nothing to the other subcommands.
fn check_top_level(cli: &Cli) -> Result<(), String> {
    let m = &cli.mode;
    let json = cli.global.json || cli.global.jsonl;
    let reports = match &cli.command {
        None => m.list,
        Some(c) => matches!(c, Command::Score { .. } | Command::Bench { .. }),
    };
    if json && !reports {
        return Err("--json and --jsonl go with -l, score and bench".into());
    }
    if cli.global.model.len() > 1
        && !matches!(cli.command, Some(Command::Score { levers: false, .. }))
    {
        return Err(
            "only score takes --model more than once (to compare models; not with --levers)".into(),
        );
    }
    let Some(cmd) = &cli.command else {
        return Ok(());
    };
    if m.compress || m.decompress || m.test || m.list {
        return Err("-z/-d/-t/-l cannot be combined with a subcommand".into());
    }
    let io_set = {
        let io = &cli.io;
        !io.files.is_empty()
            || io.stdout
            || io.output.is_some()
            || io.keep
            || io.rm
            || io.force
            || io.recursive
    };
    let codec_set = cli.codec.any();
    match cmd {
        Command::Compress { .. } | Command::Score { .. } | Command::Bench { .. } if !io_set => {
            Ok(())
        }
        Command::Compress { .. } => Ok(()),
        Command::Decompress { .. } if !codec_set => Ok(()),
        _ if io_set || codec_set => Err(
            "file and coder options go with compression (put options after the subcommand)".into(),
        ),
        _ => Ok(()),
    }
}

fn run_job(
    ctx: &mut Ctx,
    mode: Mode,
    io: &args::IoArgs,
    memory: Option<u64>,
    codec: CodecOptions,
) -> i32 {
    ops::run(
        ctx,
        &Job {
            mode,
            files: &io.files,
            stdout: io.stdout,
            output: io.output.as_deref(),
            rm: io.rm,
            force: io.force,
            recursive: io.recursive,
            memory,
            codec,
        },
    )
}

/// zstd's aliases by program name: invoked as `unllmc`, llmc decompresses
/// (`-d`); as `llmccat`, it decompresses to standard output (`-dc`).
fn by_name(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.collect();
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_stem())
        .and_then(|n| n.to_str())
        .unwrap_or("llmc")
        .to_owned();
    let extra = match name.as_str() {
        "unllmc" => Some("-d"),
        "llmccat" => Some("-dc"),
        _ => None,
    };
    if let Some(flag) = extra {
        args.insert(1.min(args.len()), flag.into());
    }
    args
}
