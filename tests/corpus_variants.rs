//! Compressing the corpus gives the same `.llmc` bytes with every kernel
//! variant this machine runs and at every thread count: the bytes are a
//! function of the input alone, not of the CPU or the scheduling.
//!
//! Every text file of the shared corpus contributes its first 2000 bytes
//! (the scalar specification, ~50x slower, its first 600), in chunks of 96
//! tokens so each file holds several chunks and decompression batches them.
//! Run in release: `cargo test --release --test corpus_variants`.

use llmc::codec::{
    compress, decompress, CompressOptions, DecompressOptions, ModelIdentity, Params,
};
use llmc::coder::CoderKind;
use llmc::gguf::Gguf;
use llmc::kernels::{Kernels, Variant};
use llmc::model::{Model, ModelOptions};
use llmc::tokenizer::Tokenizer;
mod common;
use common::corpus_dir;

/// The text files of the corpus, each cut to `limit` bytes.
fn texts(limit: usize) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("read corpus")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n != "README.md" && n != "SHA256SUMS")
        })
        .map(|p| {
            let mut data = std::fs::read(&p).expect("read corpus file");
            data.truncate(limit);
            (p.file_name().unwrap().to_string_lossy().into_owned(), data)
        })
        .filter(|(_, d)| !llmc::codec::looks_binary(d))
        .collect();
    out.sort();
    assert!(
        out.len() >= 8,
        "corpus incomplete: {} text files",
        out.len()
    );
    out
}

#[test]
fn corpus_compresses_to_identical_bytes_with_every_variant() {
    let path = llmc::registry::model_for_tests().expect("locate the model");
    let g = Gguf::open(&path).expect("open the model");
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let id = ModelIdentity {
        name: llmc::registry::DEFAULT_MODEL.name.into(),
        fingerprint: g.fingerprint(),
    };
    // The predictor runs on the model's kernels, the codec on its threads.
    // Small windows and several streams: sliding windows, the primer and
    // stream batches all take part.
    let opts = |coder, m: &Model| CompressOptions {
        level: 0,
        params: Params {
            coder,
            window: 96,
            carry: 24,
            primer: 32,
            max_streams: 4,
            stream_tokens: 64,
            ..Params::default()
        },
        piece_tokens: 40,
        kernels: Some(m.kernels()),
        ..CompressOptions::default()
    };
    let variants = Kernels::available();
    assert!(variants.contains(&Variant::Scalar));
    let best = Kernels::best().variant();
    // Reference bytes: the best variant at 2 threads.
    let reference = |limit: usize| -> Vec<(String, CoderKind, Vec<u8>)> {
        let m = Model::load(
            &g,
            &ModelOptions {
                threads: 2,
                variant: Some(best),
            },
        )
        .expect("load model");
        let mut out = Vec::new();
        for (name, data) in texts(limit) {
            for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
                let packed = m
                    .install(|| compress(&data, &m, &tok, &id, &opts(coder, &m)))
                    .expect("compress");
                let back = decompress(
                    &packed,
                    &m,
                    &tok,
                    &id,
                    &DecompressOptions {
                        max_batch: 4,
                        kernels: Some(m.kernels()),
                        ..Default::default()
                    },
                )
                .expect("decompress");
                assert!(back == data, "{name} {coder:?}: round trip differs");
                out.push((name.clone(), coder, packed));
            }
        }
        out
    };
    let full = reference(2000);
    let short = reference(600);
    for variant in variants {
        let (expected, threads): (&[_], &[usize]) = if variant == Variant::Scalar {
            (&short, &[2])
        } else {
            // 1 and 3 threads: uneven splits of the rows either side of
            // the reference's 2.
            (&full, &[1, 3])
        };
        let limit = if variant == Variant::Scalar {
            600
        } else {
            2000
        };
        for &t in threads {
            let m = Model::load(
                &g,
                &ModelOptions {
                    threads: t,
                    variant: Some(variant),
                },
            )
            .expect("load model");
            let files = texts(limit);
            let mut i = 0;
            for (name, data) in &files {
                for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
                    let (en, ec, eb) = &expected[i];
                    assert!(en == name && *ec == coder);
                    let packed = m
                        .install(|| compress(data, &m, &tok, &id, &opts(coder, &m)))
                        .expect("compress");
                    assert!(
                        packed == *eb,
                        "{name} {coder:?}: {variant} at {t} threads gives other bytes than {best}"
                    );
                    i += 1;
                }
            }
            eprintln!("{variant}, {t} threads: {i} (file, coder) outputs identical");
        }
    }
}
