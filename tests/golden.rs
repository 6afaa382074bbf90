//! The cross-machine check: golden `.llmc` files, made once and committed,
//! must decompress to their source on every machine (x86_64 with each
//! kernel variant, and aarch64 under emulation in CI); the version-2 ones
//! (what this build writes) must also compress back to the identical bytes.
//! Version-1 files are kept as they were written: every version ever
//! written keeps decoding.
//!
//! To make the version-2 files anew after a deliberate format or numerics
//! change (which breaks every existing file, so it needs a new format
//! version): `LLMC_BLESS=1 cargo test --release --test golden`.

use llmc::codec::{
    compress, decompress, CompressOptions, DecompressOptions, ModelIdentity, Params,
};
use llmc::coder::CoderKind;
use llmc::gguf::Gguf;
use llmc::kernels::Kernels;
use llmc::model::{Model, ModelOptions};
use llmc::registry::ModelSpec;
use llmc::tokenizer::ModelTokenizer;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// How a golden file was made.
#[derive(Clone, Copy)]
enum Made {
    /// Written by an earlier build in a form this one no longer writes (a
    /// version-1 file, or a level of the first version-2 table): decoded
    /// only.
    Earlier,
    Level(u8),
    /// Level 0: small windows and several streams, so the file holds
    /// windows with carried context and streams decoded as a batch; the
    /// windows slide with this many sinks (0: they restart), later
    /// streams are primed with this many tokens of the first, and the
    /// block's shared n-gram runs or not.
    Custom(CoderKind, u32, u32, bool),
}

fn options(made: Made) -> Option<CompressOptions> {
    match made {
        Made::Earlier => None,
        Made::Level(l) => Some(CompressOptions {
            level: l,
            params: Params::level(l).expect("a level"),
            ..CompressOptions::default()
        }),
        Made::Custom(coder, sinks, primer, ngram) => {
            let mut params = Params {
                coder,
                window: 24,
                carry: 8,
                sinks,
                primer,
                max_streams: 3,
                stream_tokens: 16,
                ..Params::default()
            };
            params.adaptive.ngram = ngram;
            Some(CompressOptions {
                level: 0,
                params,
                ..CompressOptions::default()
            })
        }
    }
}

fn check(made: Made, source: &str, file: &str) {
    check_with(&llmc::registry::DEFAULT_MODEL, made, source, file)
}

/// [`check`] with a known model ([`open`]).
fn check_with(spec: &ModelSpec, made: Made, source: &str, file: &str) {
    let (g, tok, id) = open(spec);
    let source = std::fs::read(data(source)).expect("read the source text");
    let golden_path = data(file);
    let bless = std::env::var_os("LLMC_BLESS").is_some();
    let opts = options(made);
    let golden = match (std::fs::read(&golden_path), &opts) {
        (Ok(bytes), _) if !bless => bytes,
        (Ok(bytes), None) => bytes,
        (_, Some(o)) => {
            assert!(bless, "{file} is missing: run with LLMC_BLESS=1 once");
            let model = Model::load(&g, &ModelOptions::default()).expect("load");
            let bytes = compress(&source, &model, &tok, &id, o).expect("compress");
            std::fs::write(&golden_path, &bytes).expect("write golden file");
            bytes
        }
        (Err(e), None) => panic!("{file}: {e}"),
    };
    // Every variant at 1 and 2 threads; under emulation (LLMC_GOLDEN_QUICK,
    // set by CI for aarch64 under qemu, where a forward pass is ~50x slower)
    // the best variant at 2 threads: the kernel conformance tests hold every
    // variant to the scalar bits there.
    let quick = std::env::var_os("LLMC_GOLDEN_QUICK").is_some();
    let variants = if quick {
        vec![Kernels::best().variant()]
    } else {
        Kernels::available()
    };
    let thread_counts: &[usize] = if quick { &[2] } else { &[1, 2] };
    for variant in variants {
        for &threads in thread_counts {
            let model = Model::load(
                &g,
                &ModelOptions {
                    threads,
                    variant: Some(variant),
                },
            )
            .expect("load model");
            let out = decompress(
                &golden,
                &model,
                &tok,
                &id,
                &DecompressOptions {
                    max_batch: 2,
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{file} with {variant}, {threads} threads: {e}"));
            assert!(
                out == source,
                "{file} with {variant}: decompressed bytes differ"
            );
            if let Some(o) = &opts {
                let again = compress(&source, &model, &tok, &id, o).expect("compress");
                assert!(
                    again == golden,
                    "{file} with {variant}, {threads} threads: compressing again gives other bytes"
                );
            }
        }
    }
}

#[test]
fn golden_v1_arithmetic() {
    check(Made::Earlier, "golden.txt", "golden-v1.arith.llmc");
}

#[test]
fn golden_v1_rank() {
    check(Made::Earlier, "golden.txt", "golden-v1.rank.llmc");
}

/// Levels 5, 9 and 1 of the first version-2 table (level bytes 5, 9, 1).
#[test]
fn golden_v2_first_table_levels() {
    for l in [5, 9, 1] {
        check(
            Made::Earlier,
            "golden-crlf.txt",
            &format!("golden-v2.level{l}.llmc"),
        );
    }
}

/// Levels 5 and 9 of the second version-2 table (level bytes 15, 19:
/// sliding windows and the primer, no shared n-gram).
#[test]
fn golden_v2_second_table_levels() {
    for l in [5, 9] {
        check(
            Made::Earlier,
            "golden-crlf.txt",
            &format!("golden-v2.slide.level{l}.llmc"),
        );
    }
}

#[test]
fn golden_v2_default_level() {
    check(
        Made::Level(llmc::codec::DEFAULT_LEVEL),
        "golden-ngram.txt",
        "golden-v2.ngram.level5.llmc",
    );
}

#[test]
fn golden_v2_highest_level() {
    check(
        Made::Level(llmc::codec::MAX_LEVEL),
        "golden-ngram.txt",
        "golden-v2.ngram.level9.llmc",
    );
}

/// The block's shared n-gram (NUMERICS.md 12) over three streams decoded
/// in one batch, the later two primed: its state at every step must be the
/// compressor's on every machine. golden-ngram.txt repeats itself, so the
/// mixed tables code many of its tokens (the test checks that the n-gram
/// changed the payload).
#[test]
fn golden_v2_shared_ngram() {
    check(
        Made::Custom(CoderKind::Arithmetic, 4, 12, true),
        "golden-ngram.txt",
        "golden-v2.ngram.windows.arith.llmc",
    );
    // What the n-gram changes is integer arithmetic, the same on every
    // machine: checked once, not again under emulation.
    if std::env::var_os("LLMC_GOLDEN_QUICK").is_some() {
        return;
    }
    let golden = std::fs::read(data("golden-v2.ngram.windows.arith.llmc")).unwrap();
    let without = compressed(
        Made::Custom(CoderKind::Arithmetic, 4, 12, false),
        "golden-ngram.txt",
    );
    eprintln!(
        "{} bytes, {} without the n-gram",
        golden.len(),
        without.len()
    );
    assert!(
        golden.len() < without.len(),
        "the n-gram should pay here: {} bytes, {} without",
        golden.len(),
        without.len()
    );
}

/// `source` compressed as `made` says, with the default model.
fn compressed(made: Made, source: &str) -> Vec<u8> {
    let (g, tok, id) = open(&llmc::registry::DEFAULT_MODEL);
    let model = Model::load(&g, &ModelOptions::default()).expect("load");
    let source = std::fs::read(data(source)).expect("read the source text");
    let o = options(made).expect("made here");
    compress(&source, &model, &tok, &id, &o).expect("compress")
}

/// A known model's file, tokenizer and identity: the default one located
/// like every test (`LLMC_TEST_MODEL` or the registry), others fetched by
/// the registry as users fetch them.
fn open(spec: &ModelSpec) -> (Gguf, ModelTokenizer, ModelIdentity) {
    let path = if *spec == llmc::registry::DEFAULT_MODEL {
        llmc::registry::model_for_tests().expect("locate the model")
    } else {
        llmc::registry::fetch(spec, true).expect("fetch the model")
    };
    let g = Gguf::open(&path).expect("open the model");
    let tok = ModelTokenizer::from_gguf(&g).expect("tokenizer");
    let id = ModelIdentity {
        name: spec.name.to_string(),
        fingerprint: g.fingerprint(),
    };
    (g, tok, id)
}

#[test]
fn golden_v2_windows_arithmetic() {
    check(
        Made::Custom(CoderKind::Arithmetic, 0, 0, false),
        "golden-crlf.txt",
        "golden-v2.windows.arith.llmc",
    );
}

#[test]
fn golden_v2_windows_rank() {
    check(
        Made::Custom(CoderKind::Rank, 0, 0, false),
        "golden-crlf.txt",
        "golden-v2.windows.rank.llmc",
    );
}

/// Sliding windows (kept keys rotated back and requantized, NUMERICS.md
/// 7.3) and later streams primed with the first's tokens, on every machine.
#[test]
fn golden_v2_sliding_windows() {
    check(
        Made::Custom(CoderKind::Arithmetic, 4, 12, false),
        "golden-crlf.txt",
        "golden-v2.slide.windows.arith.llmc",
    );
}

/// Gemma-3-270M (a second architecture, K-quants, the SentencePiece
/// tokenizer, a start token in every state): the fastest level of the first
/// table, small restarting windows, and small sliding windows (the local
/// layers' own RoPE table), each with several streams decoded as a batch.
#[test]
fn golden_v2_gemma_fastest_level() {
    check_with(
        &llmc::registry::GEMMA3_270M,
        Made::Earlier,
        "golden.txt",
        "golden-v2.gemma.level1.llmc",
    );
}

#[test]
fn golden_v2_gemma_windows() {
    check_with(
        &llmc::registry::GEMMA3_270M,
        Made::Custom(CoderKind::Arithmetic, 0, 0, false),
        "golden.txt",
        "golden-v2.gemma.windows.arith.llmc",
    );
}

#[test]
fn golden_v2_gemma_sliding_windows() {
    check_with(
        &llmc::registry::GEMMA3_270M,
        Made::Custom(CoderKind::Arithmetic, 4, 12, false),
        "golden.txt",
        "golden-v2.gemma.slide.windows.arith.llmc",
    );
}

/// The shared n-gram with Gemma's 262144 token ids (18 bits in a slot).
#[test]
fn golden_v2_gemma_shared_ngram() {
    check_with(
        &llmc::registry::GEMMA3_270M,
        Made::Custom(CoderKind::Arithmetic, 4, 12, true),
        "golden-ngram.txt",
        "golden-v2.gemma.ngram.windows.arith.llmc",
    );
}

/// Wrapped CRLF prose at the default level: the block records both
/// transforms (CRLF to LF, then the reflow at width 34), which the decoder
/// undoes in the other order on every machine.
#[test]
fn golden_v2_reflow() {
    use llmc::container::v2::{Block, Body, Record};
    use llmc::container::FrameReader;
    check(
        Made::Level(llmc::codec::DEFAULT_LEVEL),
        "golden-reflow.txt",
        "golden-v2.reflow.level5.llmc",
    );
    let golden = std::fs::read(data("golden-v2.reflow.level5.llmc")).unwrap();
    let mut r = FrameReader::new(&golden[..]);
    r.read_header().unwrap().unwrap();
    match r.read_record_v2().unwrap() {
        Record::Block(Block {
            body: Body::Model {
                bare_lfs, reflow, ..
            },
            ..
        }) => assert_eq!((bare_lfs, reflow), (Some(vec![]), Some(34))),
        other => panic!("not a model block: {other:?}"),
    }
}
