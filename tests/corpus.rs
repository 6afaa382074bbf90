//! Round trips with the real default model: every file of the corpus (tests/data/corpus)
//! (text and binary) and the awkward inputs a compressor must survive.
//!
//! Heavy: run in release (`cargo test --release --test corpus`). Every
//! corpus file goes through the arithmetic coder (text files cut to 200 KB
//! unless `LLMC_FULL_CORPUS=1`); the rank coder gets
//! the small files whole and the first 24 KiB of the large ones (it shares
//! every model computation with the arithmetic coder, so the rest would
//! only cost time).

use llmc::codec::{compress, decompress, CompressOptions, DecompressOptions, Params};
use llmc::coder::CoderKind;
use llmc::container::v2::{Block, Body, Record};
use llmc::container::FrameReader;
mod common;
use common::{corpus_dir, real};
use std::time::Instant;

/// Compresses and decompresses `data`; returns the compressed bytes.
fn round_trip(what: &str, data: &[u8], coder: CoderKind) -> Vec<u8> {
    let r = real();
    // The default level's decoding parameters; streams of 256 tokens
    // (the split is the compressor's choice, not recorded), so that the
    // suite's short inputs decode several streams per forward pass (one
    // stream decodes at about 100 tokens/s on 2 cores, 8 together several
    // times faster). Windows and their carried context are the golden
    // files' and corpus_variants' part.
    let opts = CompressOptions {
        level: if coder == CoderKind::Arithmetic {
            llmc::codec::DEFAULT_LEVEL
        } else {
            0
        },
        params: Params {
            coder,
            stream_tokens: 256,
            ..Params::default()
        },
        ..CompressOptions::default()
    };
    let t0 = Instant::now();
    let packed = compress(data, &r.model, &r.tok, &r.id, &opts)
        .unwrap_or_else(|e| panic!("{what}: compress: {e}"));
    let t1 = Instant::now();
    let back = decompress(
        &packed,
        &r.model,
        &r.tok,
        &r.id,
        &DecompressOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{what}: decompress: {e}"));
    let t2 = Instant::now();
    assert!(back == data, "{what} ({coder:?}): round trip differs");
    eprintln!(
        "{what:>24} {coder:?}: {} -> {} bytes ({:.3} bits/byte), compress {:.1}s, decompress {:.1}s",
        data.len(),
        packed.len(),
        packed.len() as f64 * 8.0 / data.len().max(1) as f64,
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
    packed
}

/// `xz -9e`'s output size (an .xz stream with a CRC64 check, as the tool
/// writes).
fn xz_9e(data: &[u8]) -> usize {
    use liblzma::stream::{Action, Check, Status, Stream, PRESET_EXTREME};
    let mut s = Stream::new_easy_encoder(9 | PRESET_EXTREME, Check::Crc64).unwrap();
    let mut out = Vec::with_capacity(data.len() + 1024);
    loop {
        out.reserve(4096);
        let at = s.total_in() as usize;
        if s.process_vec(&data[at..], &mut out, Action::Finish)
            .unwrap()
            == Status::StreamEnd
        {
            return out.len();
        }
    }
}

fn model_records(packed: &[u8]) -> usize {
    let mut r = FrameReader::new(packed);
    r.read_header().unwrap().unwrap();
    let mut n = 0;
    loop {
        match r.read_record_v2().unwrap() {
            Record::End { .. } => return n,
            Record::Block(Block {
                body: Body::Model { .. },
                ..
            }) => n += 1,
            _ => {}
        }
    }
}

#[test]
fn corpus_round_trips() {
    let dir = corpus_dir();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "README.md" && n != "SHA256SUMS")
        .collect();
    names.sort();
    assert!(names.len() >= 11, "corpus incomplete: {names:?}");
    // The suite's time budget: text files are cut to their first 8 KB
    // unless LLMC_FULL_CORPUS is set (binary files skip the model and stay
    // whole); the full corpus is a benchmark (docs/FORMAT.md 8.7).
    let full = std::env::var_os("LLMC_FULL_CORPUS").is_some();
    for name in names {
        let mut data = std::fs::read(dir.join(&name)).unwrap();
        if !full && !llmc::codec::looks_binary(&data[..data.len().min(4096)]) {
            data.truncate(8 << 10);
        }
        let arith = round_trip(&name, &data, CoderKind::Arithmetic).len();
        // Never larger than zstd -19 or xz -9e plus the frame overhead
        // (binary files go to zstd or LZMA2 blocks).
        let z = zstd::bulk::compress(&data, 19).unwrap().len();
        let x = xz_9e(&data);
        assert!(
            arith <= z.min(x) + 32,
            "{name}: {arith} bytes vs zstd -19 {z}, xz -9e {x}"
        );
        let part = &data[..data.len().min(4 << 10)];
        round_trip(&format!("{name}[..4K]"), part, CoderKind::Rank);
    }
}

#[test]
fn awkward_inputs_round_trip() {
    let specials = "<|endoftext|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n\
<repo_name><file_sep><filename><gh_stars><issue_start><jupyter_code><empty_output>"
        .repeat(3);
    let mut lcg = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..3000)
        .map(|_| {
            lcg = lcg
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (lcg >> 56) as u8
        })
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one byte", b"x".to_vec()),
        ("one invalid byte", vec![0xff]),
        ("random bytes", random),
        (
            "invalid UTF-8 in text",
            b"caf\xe9 au lait, na\xefve \xff\xfe and \xc3\x28 broken, then fine text.\n".to_vec(),
        ),
        ("special-token strings", specials.into_bytes()),
        (
            "CRLF text",
            b"first line\r\nsecond line\r\n\r\nfourth\r\n".repeat(20),
        ),
        ("control bytes", (0u8..=255).collect()),
    ];
    for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
        for (what, data) in &cases {
            round_trip(what, data, coder);
        }
    }
    // Text really goes through the model.
    let r = real();
    let packed = compress(
        b"It was the best of times, it was the worst of times.",
        &r.model,
        &r.tok,
        &r.id,
        &CompressOptions::default(),
    )
    .unwrap();
    assert_eq!(model_records(&packed), 1);
}

/// 5 MB through the whole pipeline with the real model: a text block,
/// then binary blocks of 4 MiB (zstd or LZMA2). The binary part has its
/// newlines replaced, so the first block ends exactly after the text (the
/// block cutter cuts after the last newline of its 4 MiB window).
#[test]
fn five_megabytes_round_trip() {
    let dir = corpus_dir();
    let text = std::fs::read(dir.join("grammar.lsp")).unwrap();
    let xls: Vec<u8> = std::fs::read(dir.join("kennedy.xls"))
        .unwrap()
        .into_iter()
        .map(|b| if b == b'\n' { b'\x0b' } else { b })
        .collect();
    let mut data = text.clone();
    data.push(b'\n');
    while data.len() < 5_000_000 {
        data.extend_from_slice(&xls);
    }
    let packed = round_trip("5 MB mixed", &data, CoderKind::Arithmetic);
    assert_eq!(
        model_records(&packed),
        1,
        "the text block was not model-coded"
    );
    assert!(packed.len() < data.len() / 4);
}
