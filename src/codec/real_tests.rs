//! The codec with the real model and tokenizer (fetched like the CLI does).

use std::sync::OnceLock;

use crate::codec::synthetic::HashModel;
use crate::codec::{
    compress, decompress, CompressOptions, DecompressOptions, ModelIdentity, Params,
};
use crate::coder::CoderKind;
use crate::container::v2::{Block, Body, Record};
use crate::container::{FrameReader, Header};
use crate::gguf::Gguf;
use crate::model::Model;
use crate::tokenizer::Tokenizer;

fn gguf() -> &'static Gguf {
    static G: OnceLock<Gguf> = OnceLock::new();
    G.get_or_init(|| {
        let path = crate::registry::model_for_tests().expect("locate the test model");
        Gguf::open(&path).expect("open the test model")
    })
}

fn real() -> &'static (Tokenizer, [u8; 32]) {
    static T: OnceLock<(Tokenizer, [u8; 32])> = OnceLock::new();
    T.get_or_init(|| {
        (
            Tokenizer::from_gguf(gguf()).expect("tokenizer"),
            gguf().fingerprint(),
        )
    })
}

/// The real model end to end: both coders, several chunks decoded in
/// one batch, and far smaller than the input.
#[test]
fn real_model_round_trip() {
    let (tok, fp) = real();
    let model = Model::load(gguf(), &crate::model::ModelOptions::default()).expect("load model");
    let id = ModelIdentity {
        name: "SmolLM2-135M-Instruct".into(),
        fingerprint: *fp,
    };
    let data = b"Alice was beginning to get very tired of sitting by her sister on the bank, \
and of having nothing to do: once or twice she had peeped into the book her sister was reading.\n";
    for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
        let o = CompressOptions {
            level: 0,
            params: Params {
                coder,
                window: 12,
                carry: 4,
                primer: 5,
                stream_tokens: 12,
                ..Params::default()
            },
            ..Default::default()
        };
        let packed = compress(data, &model, tok, &id, &o).unwrap();
        let out = decompress(
            &packed,
            &model,
            tok,
            &id,
            &DecompressOptions {
                max_batch: 8,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(out == data);
        let mut r = FrameReader::new(&packed[..]);
        r.read_header().unwrap().unwrap();
        let (mut n_model, mut payload) = (0, 0);
        loop {
            match r.read_record_v2().unwrap() {
                Record::End { .. } => break,
                Record::Block(Block {
                    body: Body::Model { streams, .. },
                    ..
                }) => {
                    n_model += streams.len();
                    payload += streams.iter().map(|s| s.payload.len()).sum::<usize>();
                }
                _ => {}
            }
        }
        eprintln!(
            "{coder:?}: {} -> {} bytes, {n_model} model chunks, {payload} payload bytes",
            data.len(),
            packed.len()
        );
        assert!(n_model >= 3, "{n_model} streams");
        // Even with 12-token contexts the model needs < 3 bits/byte.
        assert!(payload * 8 < data.len() * 3, "{payload} payload bytes");
    }
}

/// The real tokenizer with a synthetic 49152-logit model: chunk cuts,
/// multi-byte tokens and the fallback on real text, quickly.
#[test]
fn real_tokenizer_round_trips_corpus_text() {
    let (tok, fp) = real();
    let model = HashModel::new(tok.vocab_size(), 3);
    let id = ModelIdentity {
        name: "SmolLM2-135M-Instruct".into(),
        fingerprint: *fp,
    };
    // The corpus copy in the repository (tests/data/corpus).
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus");
    let text = std::fs::read(dir.join("alice29.txt")).expect("corpus alice29.txt");
    let mut data = text[..6000].to_vec();
    // Invalid UTF-8 and control bytes too.
    data.extend_from_slice(&[0xff, 0xfe, 0x00, 0xc3, b'\n', 0xe2, 0x82]);
    for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
        let o = CompressOptions {
            level: 0,
            params: Params {
                coder,
                window: 300,
                carry: 64,
                primer: 100,
                stream_tokens: 200,
                ..Params::default()
            },
            segment_bytes: 2500,
            zstd_level: 3,
            ..Default::default()
        };
        let packed = compress(&data, &model, tok, &id, &o).unwrap();
        let out = decompress(&packed, &model, tok, &id, &DecompressOptions::default()).unwrap();
        assert!(out == data);
        // The synthetic model predicts English badly, so chunks may go
        // raw; but every record must parse.
        let mut r = FrameReader::new(&packed[..]);
        let Some(Header::V2(h)) = r.read_header().unwrap() else {
            panic!("a version-2 frame")
        };
        assert_eq!(h.model, fp[..8]);
        while !matches!(r.read_record_v2().unwrap(), Record::End { .. }) {}
    }
}
