//! The cross-machine check: golden `.llmc` files, made once and committed,
//! must decompress to their source and the source must compress back to the
//! identical bytes, on every machine (x86_64 with each kernel variant, and
//! aarch64 under emulation in CI).
//!
//! To make them anew after a deliberate format or numerics change (which
//! breaks every existing file, so it needs a new format version):
//! `LLMC_BLESS=1 cargo test --release --test golden`.

use llmc::codec::{compress, decompress, CompressOptions, DecompressOptions, ModelIdentity};
use llmc::coder::CoderKind;
use llmc::container::FrameReader;
use llmc::gguf::Gguf;
use llmc::kernels::Kernels;
use llmc::model::{Model, ModelOptions};
use llmc::tokenizer::Tokenizer;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Small chunks so the golden files hold several chunks, decoded as a batch.
fn options(coder: CoderKind) -> CompressOptions {
    CompressOptions {
        coder,
        chunk_tokens: 24,
        ..CompressOptions::default()
    }
}

fn check(coder: CoderKind, file: &str) {
    let path = llmc::registry::model_for_tests().expect("locate the model");
    let g = Gguf::open(&path).expect("open the model");
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let source = std::fs::read(data("golden.txt")).expect("read golden.txt");
    let golden_path = data(file);
    let bless = std::env::var_os("LLMC_BLESS").is_some();
    let golden = match std::fs::read(&golden_path) {
        Ok(bytes) if !bless => bytes,
        _ => {
            assert!(bless, "{file} is missing: run with LLMC_BLESS=1 once");
            let model = Model::load(&g, &ModelOptions::default()).expect("load");
            let id = ModelIdentity {
                name: llmc::registry::DEFAULT_MODEL.name.to_string(),
                fingerprint: g.fingerprint(),
            };
            let bytes = compress(&source, &model, &tok, &id, &options(coder)).expect("compress");
            std::fs::write(&golden_path, &bytes).expect("write golden file");
            bytes
        }
    };
    // The name is for messages only: take it from the file, so the check is
    // about the bytes the model and coder produce.
    let header = FrameReader::new(&golden[..])
        .read_header()
        .expect("golden header")
        .expect("a frame");
    let id = ModelIdentity {
        name: header.model_name.clone(),
        fingerprint: g.fingerprint(),
    };
    assert_eq!(
        header.fingerprint, id.fingerprint,
        "golden file made with another model"
    );
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
                    max_batch: 3,
                    ..Default::default()
                },
            )
            .unwrap_or_else(|e| panic!("{file} with {variant}, {threads} threads: {e}"));
            assert!(
                out == source,
                "{file} with {variant}: decompressed bytes differ"
            );
            let again = compress(&source, &model, &tok, &id, &options(coder)).expect("compress");
            assert!(
                again == golden,
                "{file} with {variant}, {threads} threads: compressing again gives other bytes"
            );
        }
    }
}

#[test]
fn golden_arithmetic() {
    check(CoderKind::Arithmetic, "golden.arith.llmc");
}

#[test]
fn golden_rank() {
    check(CoderKind::Rank, "golden.rank.llmc");
}
