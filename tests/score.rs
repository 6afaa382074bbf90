//! `llmc::codec::score` with the real default model: the model's
//! cross-entropy on the reference text (tests/data/reference/logits.json,
//! computed independently with numpy), and agreement with what the
//! arithmetic coder actually spends.
//!
//! Run in release: `cargo test --release --test score`.

mod common;
use common::{real, shared};
use std::ops::ControlFlow;

use llmc::codec::{compress, score, CompressOptions, Params, Progress};
use llmc::container::v2::{Block, Body, Record};
use llmc::container::FrameReader;

fn go(_: Progress) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

#[test]
fn reference_cross_entropy() {
    let r = real();
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(shared("reference", "logits.json")).expect("read logits.json"),
    )
    .expect("parse logits.json");
    let ce = &json["cross_entropy"];
    let expected = ce["total_bits"].as_f64().expect("total_bits");
    let expected_tokens = ce["tokens"].as_u64().expect("tokens");
    let text = std::fs::read(shared("reference", "apache-2.0-first4000.txt")).expect("text");
    let s = score(
        &text,
        &r.model,
        &r.tok,
        &CompressOptions::default(),
        &mut go,
    )
    .unwrap();
    eprintln!(
        "reference text: {} bytes, {} tokens, {:.1} bits ({:.4} bits/byte); reference {expected} bits",
        s.bytes,
        s.tokens,
        s.bits,
        s.bits / s.bytes as f64
    );
    assert_eq!(s.bytes, text.len() as u64);
    assert_eq!(s.tokens, expected_tokens);
    assert!(
        (s.bits / expected - 1.0).abs() < 0.01,
        "{} bits vs reference {expected}",
        s.bits
    );
}

#[test]
fn score_matches_the_arithmetic_payloads() {
    let r = real();
    let text = std::fs::read(shared("corpus", "alice29.txt")).expect("alice29.txt");
    let data = &text[..3000];
    // Several streams and windows, so stream starts (uniform first tokens)
    // and carried context count too.
    let opts = CompressOptions {
        level: 0,
        params: Params {
            window: 300,
            carry: 64,
            stream_tokens: 300,
            ..Params::default()
        },
        ..CompressOptions::default()
    };
    let s = score(data, &r.model, &r.tok, &opts, &mut go).unwrap();
    let packed = compress(data, &r.model, &r.tok, &r.id, &opts).unwrap();
    let mut reader = FrameReader::new(&packed[..]);
    reader.read_header().unwrap().unwrap();
    let (mut chunks, mut tokens, mut payload_bits) = (0, 0u64, 0.0);
    loop {
        match reader.read_record_v2().unwrap() {
            Record::Block(Block {
                body: Body::Model { streams, .. },
                ..
            }) => {
                for s in streams {
                    chunks += 1;
                    tokens += s.tokens as u64;
                    payload_bits += s.payload.len() as f64 * 8.0;
                }
            }
            Record::End { .. } => break,
            other => panic!("a block was not model-coded: {other:?}"),
        }
    }
    eprintln!(
        "alice 3000 bytes: {chunks} chunks, {tokens} tokens, score {:.1} bits, payloads {payload_bits} bits ({:+.3}%)",
        s.bits,
        100.0 * (payload_bits / s.bits - 1.0)
    );
    assert!(chunks >= 2);
    assert_eq!(tokens, s.tokens);
    assert!(
        (payload_bits / s.bits - 1.0).abs() < 0.005,
        "{payload_bits} vs {}",
        s.bits
    );
}
