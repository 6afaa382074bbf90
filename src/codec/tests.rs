//! Driver tests with the synthetic model and tokenizers.

use std::cell::Cell;

use super::decode::batch_for;
use super::segment::cut_point;
use super::stream::{split_streams, windows};
use super::synthetic::{HashModel, PairTokenizer};
use super::*;
use crate::coder::CoderKind;
use crate::container::v2::{self, Block, Body, Custom, Record, Stream};
use crate::container::{FrameReader, Header};
use crate::predict::{AdaptiveConfig, ChunkEncoder};

fn id(name: &str, fp: u8) -> ModelIdentity {
    ModelIdentity {
        name: name.into(),
        fingerprint: [fp; 32],
    }
}

fn rng_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Text the model predicts well: sampled from the model, through the tokenizer.
fn model_text(model: &HashModel, tok: &PairTokenizer, n_tokens: usize, seed: u64) -> Vec<u8> {
    let toks = model.sample(n_tokens, seed, 256);
    tok.decode(&toks).unwrap()
}

/// Custom parameters (level 0): windows of `window` tokens restarting with
/// a quarter of it, up to 8 streams of at least `window` tokens.
fn opts(window: u32, coder: CoderKind) -> CompressOptions {
    CompressOptions {
        level: 0,
        params: Params {
            coder,
            window,
            carry: (window / 4).max(1),
            sinks: 0,
            primer: 0,
            max_streams: 8,
            stream_tokens: window,
            ..Params::default()
        },
        piece_tokens: 37, // odd on purpose: pieces never align with windows
        zstd_level: 3,
        // The synthetic texts are arbitrary bytes: code them with the model.
        skip_binary: false,
        ..CompressOptions::default()
    }
}

fn round_trip(data: &[u8], tok: &PairTokenizer, o: &CompressOptions, batch: usize) -> Vec<u8> {
    let model = HashModel::new(tok.vocab_size(), 1);
    let packed = compress(data, &model, tok, &id("hash", 1), o).unwrap();
    let d = DecompressOptions {
        max_batch: batch,
        ..Default::default()
    };
    let back = decompress(&packed, &model, tok, &id("hash", 1), &d).unwrap();
    assert!(
        back == data,
        "round trip differs ({} vs {} bytes)",
        back.len(),
        data.len()
    );
    packed
}

/// Records of every (version-2) frame of a file.
fn records(file: &[u8]) -> Vec<Record> {
    let mut r = FrameReader::new(file);
    let mut out = Vec::new();
    while let Some(h) = r.read_header().unwrap() {
        assert!(
            matches!(h, Header::V2(_)),
            "the compressor writes version 2"
        );
        loop {
            let rec = r.read_record_v2().unwrap();
            let end = matches!(rec, Record::End { .. });
            out.push(rec);
            if end {
                break;
            }
        }
    }
    out
}

/// The streams of a model block, `None` for other records.
fn streams(r: &Record) -> Option<&[Stream]> {
    match r {
        Record::Block(Block {
            body: Body::Model { streams, .. },
            ..
        }) => Some(streams),
        _ => None,
    }
}

/// Model-coded streams in a file.
fn stream_count(file: &[u8]) -> usize {
    records(file)
        .iter()
        .filter_map(streams)
        .map(|s| s.len())
        .sum()
}

/// Bits of a file's stream payloads.
fn payload_bits(file: &[u8]) -> f64 {
    records(file)
        .iter()
        .filter_map(streams)
        .flatten()
        .map(|s| s.payload.len() as f64 * 8.0)
        .sum()
}

fn is_model(r: &Record) -> bool {
    streams(r).is_some()
}

fn is_raw(r: &Record) -> bool {
    matches!(r, Record::Block(_)) && !is_model(r)
}

#[test]
fn round_trips_small_inputs() {
    let tok = PairTokenizer::english();
    for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
        for data in [
            &b""[..],
            b"a",
            b"th",
            b"\n",
            b"the end\n",
            &[0xff, 0x00, 0xe2, 0x82],
        ] {
            round_trip(data, &tok, &opts(4, coder), 3);
        }
    }
}

#[test]
fn round_trips_random_bytes_and_picks_raw() {
    let tok = PairTokenizer::bytes();
    let data = rng_bytes(20_000, 3);
    let packed = round_trip(&data, &tok, &opts(512, CoderKind::Arithmetic), 8);
    let recs = records(&packed);
    assert!(!recs.iter().any(is_model), "random bytes were model-coded");
    // Never much worse than storing: one raw record, header and end.
    assert!(packed.len() < data.len() + 100, "{} bytes", packed.len());
}

#[test]
fn model_text_is_model_coded_and_beats_zstd() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let data = model_text(&model, &tok, 30_000, 9);
    for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
        let packed = round_trip(&data, &tok, &opts(1000, coder), 16);
        let recs = records(&packed);
        let n_streams: usize = recs.iter().filter_map(streams).map(|s| s.len()).sum();
        let z = zstd::bulk::compress(&data, 19).unwrap().len();
        eprintln!(
            "{coder:?}: {} bytes -> {} ({n_streams} streams); zstd -19: {z}",
            data.len(),
            packed.len()
        );
        assert_eq!(n_streams, 8, "one block in 8 streams");
        assert!(packed.len() < z, "{} vs zstd {z}", packed.len());
    }
}

#[test]
fn many_chunks_many_segments_both_coders() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let mut data = model_text(&model, &tok, 20_000, 4);
    // Newlines for the segment cutter, and a binary island in the middle.
    for i in (0..data.len()).step_by(701) {
        data[i] = b'\n';
    }
    // Longer than a block and without newlines: at least one block is
    // all random bytes.
    let mid = data.len() / 2;
    data.splice(mid..mid, rng_bytes(12_000, 5));
    for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
        let mut o = opts(64, coder);
        o.segment_bytes = 5000;
        let packed = round_trip(&data, &tok, &o, 7);
        let recs = records(&packed);
        assert!(recs.iter().any(is_model));
        assert!(recs.iter().any(is_raw));
    }
}

#[test]
fn large_input_round_trips() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let data = model_text(&model, &tok, 200_000, 11);
    let mut o = opts(2048, CoderKind::Arithmetic);
    o.segment_bytes = 100_000;
    o.piece_tokens = 256;
    let packed = round_trip(&data, &tok, &o, 16);
    eprintln!("large: {} -> {} bytes", data.len(), packed.len());
}

#[test]
fn batch_sizes_give_the_same_output() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let data = model_text(&model, &tok, 3000, 2);
    let packed = compress(
        &data,
        &model,
        &tok,
        &id("hash", 1),
        &opts(100, CoderKind::Arithmetic),
    )
    .unwrap();
    for batch in [1, 2, 5, 64] {
        let d = DecompressOptions {
            max_batch: batch,
            ..Default::default()
        };
        assert!(decompress(&packed, &model, &tok, &id("hash", 1), &d).unwrap() == data);
    }
}

/// Wraps a model and records how it is called.
struct Counting<'a> {
    inner: &'a HashModel,
    calls: Cell<usize>,
    max_batch: Cell<usize>,
}

impl<'a> Counting<'a> {
    fn new(inner: &'a HashModel) -> Self {
        Counting {
            inner,
            calls: Cell::new(0),
            max_batch: Cell::new(0),
        }
    }
}

/// A rayon pool of `n` threads: the codec's per-row work after a forward
/// pass runs in parallel in the pool it is called in when it has more than
/// one thread (`lm::parallel_rows`).
fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

impl LanguageModel for Counting<'_> {
    type State = Vec<u32>;
    type Error = super::synthetic::HashModelError;
    fn vocab_size(&self) -> usize {
        self.inner.vocab
    }
    fn max_context(&self) -> usize {
        self.inner.context
    }
    fn new_state(&self) -> Vec<u32> {
        Vec::new()
    }
    fn slide_state(&self, state: &mut Vec<u32>, sinks: usize, keep: usize) {
        self.inner.slide_state(state, sinks, keep)
    }
    fn forward(
        &self,
        s: &mut [&mut Vec<u32>],
        t: &[&[u32]],
        l: &mut [f32],
    ) -> Result<(), Self::Error> {
        self.calls.set(self.calls.get() + 1);
        self.max_batch.set(self.max_batch.get().max(s.len()));
        self.inner.forward(s, t, l)
    }
}

#[test]
fn decompression_batches_streams() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let data = model_text(&model, &tok, 4000, 6);
    let o = opts(200, CoderKind::Arithmetic);
    let packed = compress(&data, &model, &tok, &id("hash", 1), &o).unwrap();
    let n_model = stream_count(&packed);
    assert_eq!(n_model, 8);
    let counting = Counting::new(&model);
    let d = DecompressOptions {
        max_batch: 32,
        ..Default::default()
    };
    assert!(decompress(&packed, &counting, &tok, &id("hash", 1), &d).unwrap() == data);
    // All streams in flight at once: about one call per token of the
    // longest stream (500) plus one context feed per stream and new
    // window, not one per token of the file.
    assert_eq!(counting.max_batch.get(), n_model);
    assert!(
        counting.calls.get() <= 560,
        "{} forward calls",
        counting.calls.get()
    );
}

#[test]
fn every_bit_flip_and_truncation_is_an_error() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let mut data = model_text(&model, &tok, 120, 8);
    // A raw block too: the random bytes are a block of their own.
    let o = CompressOptions {
        segment_bytes: data.len(),
        ..opts(50, CoderKind::Arithmetic)
    };
    data.extend_from_slice(&rng_bytes(40, 1));
    let packed = compress(&data, &model, &tok, &id("hash", 1), &o).unwrap();
    let recs = records(&packed);
    assert!(recs.iter().any(is_model));
    assert!(recs.iter().any(is_raw));
    let d = DecompressOptions {
        max_batch: 4,
        ..Default::default()
    };
    let (one, two) = (pool(1), pool(2));
    let run = |f: &[u8]| one.install(|| decompress(f, &model, &tok, &id("hash", 1), &d));
    // The same with the chunks in flight decoded on several threads.
    let run2 = |f: &[u8]| two.install(|| decompress(f, &model, &tok, &id("hash", 1), &d));
    assert!(run(&packed).unwrap() == data);
    assert!(run2(&packed).unwrap() == data);
    for i in 0..packed.len() {
        for bit in 0..8 {
            let mut f = packed.clone();
            f[i] ^= 1 << bit;
            // A wrong fingerprint is also an error (ModelMismatch).
            assert!(run(&f).is_err(), "flip of byte {i} bit {bit} accepted");
            assert!(
                run2(&f).is_err(),
                "flip of byte {i} bit {bit} accepted (threads)"
            );
        }
    }
    for cut in 0..packed.len() {
        assert!(run(&packed[..cut]).is_err(), "truncation to {cut} accepted");
        assert!(
            run2(&packed[..cut]).is_err(),
            "truncation to {cut} accepted (threads)"
        );
    }
}

#[test]
fn rank_coder_bit_flips_are_errors() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let data = model_text(&model, &tok, 100, 12);
    let packed = compress(
        &data,
        &model,
        &tok,
        &id("hash", 1),
        &opts(40, CoderKind::Rank),
    )
    .unwrap();
    let d = DecompressOptions::default();
    for i in 0..packed.len() {
        for bit in 0..8 {
            let mut f = packed.clone();
            f[i] ^= 1 << bit;
            assert!(
                decompress(&f, &model, &tok, &id("hash", 1), &d).is_err(),
                "byte {i} bit {bit}"
            );
        }
    }
}

#[test]
fn garbage_is_an_error() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let d = DecompressOptions::default();
    assert!(matches!(
        decompress(&[], &model, &tok, &id("hash", 1), &d),
        Err(CodecError::NoFrame)
    ));
    for seed in 0..300 {
        let mut g = rng_bytes((seed * 7 % 400) as usize, seed + 1);
        if seed % 2 == 0 {
            // Plausible header, garbage records.
            let mut f = compress(
                b"x",
                &model,
                &tok,
                &id("hash", 1),
                &opts(8, CoderKind::Arithmetic),
            )
            .unwrap();
            let mut r = FrameReader::new(&f[..]);
            r.read_header().unwrap();
            let hl = r.offset() as usize;
            f.truncate(hl);
            f.extend_from_slice(&g);
            g = f;
        }
        assert!(decompress(&g, &model, &tok, &id("hash", 1), &d).is_err());
    }
}

#[test]
fn wrong_model_is_named() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let packed = compress(
        b"hello",
        &model,
        &tok,
        &id("SmolLM2-135M", 0xab),
        &CompressOptions::default(),
    )
    .unwrap();
    let err = decompress(
        &packed,
        &model,
        &tok,
        &id("gemma-3-270m", 0x12),
        &DecompressOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CodecError::ModelMismatch { .. }));
    for part in ["abababababababab", "gemma-3-270m", "12121212"] {
        assert!(msg.contains(part), "{msg}");
    }
}

#[test]
fn concatenated_frames_decode_in_order() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let a = model_text(&model, &tok, 500, 1);
    let b = rng_bytes(300, 2);
    let o = opts(64, CoderKind::Arithmetic);
    let mut file = compress(&a, &model, &tok, &id("hash", 1), &o).unwrap();
    file.extend(compress(&b, &model, &tok, &id("hash", 1), &opts(64, CoderKind::Rank)).unwrap());
    file.extend(compress(b"", &model, &tok, &id("hash", 1), &o).unwrap());
    let out = decompress(
        &file,
        &model,
        &tok,
        &id("hash", 1),
        &DecompressOptions::default(),
    )
    .unwrap();
    assert!(out == [a, b].concat());
}

#[test]
fn other_model_output_fails_checksum_not_silently() {
    // Same fingerprint claimed, different weights: must not decode silently.
    let tok = PairTokenizer::english();
    let m1 = HashModel::new(tok.vocab_size(), 1);
    let m2 = HashModel::new(tok.vocab_size(), 2);
    let data = model_text(&m1, &tok, 400, 3);
    let packed = compress(
        &data,
        &m1,
        &tok,
        &id("hash", 1),
        &opts(100, CoderKind::Arithmetic),
    )
    .unwrap();
    assert!(decompress(
        &packed,
        &m2,
        &tok,
        &id("hash", 1),
        &DecompressOptions::default()
    )
    .is_err());
}

/// A tokenizer whose decode does not invert encode for 'q'.
struct Lying(PairTokenizer);
impl TextTokenizer for Lying {
    type Error = super::synthetic::NoBytes;
    fn encode(&self, b: &[u8]) -> Vec<u32> {
        self.0.encode(b)
    }
    fn decode(&self, t: &[u32]) -> Result<Vec<u8>, Self::Error> {
        let mut v = self.0.decode(t)?;
        for x in &mut v {
            if *x == b'q' {
                *x = b'Q';
            }
        }
        Ok(v)
    }
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
}

#[test]
fn tokenizer_that_does_not_round_trip_falls_back_to_raw() {
    let tok = Lying(PairTokenizer::english());
    let model = HashModel::new(tok.vocab_size(), 1);
    let mut data = model_text(&model, &tok.0, 2000, 3);
    let at = data.len() / 2;
    data.insert(at, b'q');
    let o = opts(64, CoderKind::Arithmetic);
    let packed = compress(&data, &model, &tok, &id("hash", 1), &o).unwrap();
    let out = decompress(
        &packed,
        &model,
        &tok,
        &id("hash", 1),
        &DecompressOptions::default(),
    )
    .unwrap();
    assert!(out == data);
}

#[test]
fn invalid_parameters_are_rejected() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let bad = [
        opts(5000, CoderKind::Arithmetic), // beyond the context of 4096
        opts(1, CoderKind::Arithmetic),
        CompressOptions {
            params: Params {
                carry: 64,
                ..opts(64, CoderKind::Arithmetic).params
            },
            ..opts(64, CoderKind::Arithmetic)
        },
        CompressOptions {
            params: Params {
                max_streams: 0,
                ..Params::default()
            },
            ..Default::default()
        },
        // A level whose decoding parameters were changed.
        CompressOptions {
            params: Params {
                window: 1024,
                ..Params::default()
            },
            ..Default::default()
        },
        CompressOptions {
            piece_tokens: 0,
            ..Default::default()
        },
        CompressOptions {
            params: Params {
                total_bits: 16,
                ..Params::default()
            },
            level: 0,
            ..Default::default()
        },
        CompressOptions {
            segment_bytes: 0,
            ..Default::default()
        },
    ];
    for o in &bad {
        assert!(
            compress(b"abc", &model, &tok, &id("hash", 1), o).is_err(),
            "{o:?}"
        );
    }
}

#[test]
fn stream_progress_is_reported() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let data = model_text(&model, &tok, 3000, 5);
    let mut o = opts(100, CoderKind::Arithmetic);
    o.segment_bytes = 1000;
    let mut reports = Vec::new();
    let mut out = Vec::new();
    let n = compress_stream(
        &data[..],
        &mut out,
        &model,
        &tok,
        &id("hash", 1),
        &o,
        &mut |p| {
            reports.push(p);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(n as usize, out.len());
    assert!(reports.len() >= data.len() / 1000);
    assert_eq!(reports.last().unwrap().bytes_in, data.len() as u64);
    assert!(reports
        .windows(2)
        .all(|w| w[0].bytes_in <= w[1].bytes_in && w[0].tokens <= w[1].tokens));
    let mut back = Vec::new();
    let mut dreports = Vec::new();
    decompress_stream(
        &out[..],
        &mut back,
        &model,
        &tok,
        &id("hash", 1),
        &DecompressOptions::default(),
        &mut |p| {
            dreports.push(p);
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert!(back == data);
    assert!(!dreports.is_empty());
}

#[test]
fn cut_points() {
    assert_eq!(cut_point(b"abc\ndef", false), 4);
    assert_eq!(cut_point(b"abc\ndef", true), 7);
    assert_eq!(cut_point(b"abcdef", false), 6);
    // "a€" = 61 e2 82 ac: a cut inside the euro sign backs up before it.
    assert_eq!(cut_point(&[0x61, 0xe2, 0x82], false), 1);
    assert_eq!(cut_point(&[0x61, 0xe2, 0x82, 0xac], false), 4);
    assert_eq!(cut_point(&[0xe2, 0x82], false), 2);
    assert_eq!(cut_point(&[0x80, 0x80, 0x80, 0x80, 0x80], false), 5);
}

/// Bytes below 0x80 are tokens; a byte >= 0x80 is the escape token 257
/// followed by the byte's own id: a two-token unit that only decodes whole.
struct Escaping;
impl TextTokenizer for Escaping {
    type Error = super::synthetic::NoBytes;
    fn encode(&self, b: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        for &x in b {
            if x >= 0x80 {
                out.push(257);
            }
            out.push(x as u32);
        }
        out
    }
    fn decode(&self, t: &[u32]) -> Result<Vec<u8>, Self::Error> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < t.len() {
            match t[i] {
                257 => match t.get(i + 1) {
                    Some(&b) if (0x80..=0xff).contains(&b) => {
                        out.push(b as u8);
                        i += 2;
                        continue;
                    }
                    _ => return Err(super::synthetic::NoBytes(257)),
                },
                b @ 0..=0x7f => out.push(b as u8),
                other => return Err(super::synthetic::NoBytes(other)),
            }
            i += 1;
        }
        Ok(out)
    }
    fn vocab_size(&self) -> usize {
        258
    }
}

#[test]
fn streams_may_split_a_multi_token_unit() {
    // Streams cut the token sequence anywhere, inside an escape unit too:
    // the block's tokens are decoded as a whole.
    let tok = Escaping;
    let model = HashModel::new(258, 1);
    // Text the model predicts (ASCII tokens sampled from it), with one byte
    // in forty replaced by an escaped one.
    let mut data = tok.decode(&model.sample(6000, 3, 128)).unwrap();
    for i in (5..data.len()).step_by(40) {
        data[i] = 0x80 + (i % 100) as u8;
    }
    let o = CompressOptions {
        params: Params {
            max_streams: 64,
            stream_tokens: 7,
            ..opts(16, CoderKind::Arithmetic).params
        },
        ..opts(16, CoderKind::Arithmetic)
    };
    let packed = compress(&data, &model, &tok, &id("hash", 1), &o).unwrap();
    let recs = records(&packed);
    let lens: Vec<u32> = recs
        .iter()
        .filter_map(streams)
        .flatten()
        .map(|s| s.tokens)
        .collect();
    assert_eq!(lens.len(), 64);
    // Some stream ends right after an escape token (257).
    let toks = tok.encode(&data);
    let mut end = 0;
    let mut split = false;
    for l in &lens {
        end += *l as usize;
        split |= toks[end - 1] == 257;
    }
    assert!(split, "no stream ends inside a unit");
    let out = decompress(
        &packed,
        &model,
        &tok,
        &id("hash", 1),
        &DecompressOptions::default(),
    )
    .unwrap();
    assert!(out == data);
}

#[test]
fn text_the_model_codes_badly_goes_raw_by_size() {
    // Random lowercase letters are text (not `looks_binary`), so the model
    // codes them; the hash model knows nothing of them and loses to zstd,
    // so the size comparison must pick a raw record.
    let tok = PairTokenizer::bytes();
    let data: Vec<u8> = rng_bytes(8_000, 5).iter().map(|b| b'a' + b % 26).collect();
    assert!(!looks_binary(&data));
    let packed = round_trip(&data, &tok, &opts(512, CoderKind::Arithmetic), 8);
    assert!(!records(&packed).iter().any(is_model));
}

#[test]
fn binary_detection() {
    assert!(!looks_binary(b""));
    assert!(!looks_binary(
        "plain text\twith tabs\r\nand \u{e9}t\u{e9} \u{1F600}\n".as_bytes()
    ));
    assert!(looks_binary(&[0u8; 64]));
    assert!(looks_binary(&rng_bytes(4096, 1)));
    // Latin-1 text: every accented byte is invalid UTF-8.
    let latin1: Vec<u8> = b"caf\xe9 na\xefve \xfcber \xe9t\xe9 \xe0 \xe7a".to_vec();
    assert!(looks_binary(&latin1));
    // One stray control byte in a line of text is still text.
    let mut t = b"an ordinary line of English text with a stray byte".to_vec();
    t[10] = 0x01;
    assert!(!looks_binary(&t));
}

#[test]
fn binary_chunks_skip_the_model() {
    // A model that fails on every call: with skip_binary, binary input never
    // reaches it, and the file still round-trips.
    let tok = PairTokenizer::bytes();
    let data = rng_bytes(10_000, 7);
    let o = CompressOptions {
        skip_binary: true,
        ..opts(512, CoderKind::Arithmetic)
    };
    let packed = compress(&data, &FailingModel, &tok, &id("hash", 1), &o).unwrap();
    let model = HashModel::new(tok.vocab_size(), 1);
    let d = DecompressOptions {
        max_batch: 4,
        ..Default::default()
    };
    assert_eq!(
        decompress(&packed, &model, &tok, &id("hash", 1), &d).unwrap(),
        data
    );
    // Without skip_binary the model is asked, and its failure surfaces.
    let o = CompressOptions {
        skip_binary: false,
        ..o
    };
    assert!(compress(&data, &FailingModel, &tok, &id("hash", 1), &o).is_err());
}

/// A model whose every forward pass fails.
struct FailingModel;

#[derive(Debug, thiserror::Error)]
#[error("this model always fails")]
struct Fails;

impl LanguageModel for FailingModel {
    type State = ();
    type Error = Fails;
    fn vocab_size(&self) -> usize {
        257
    }
    fn max_context(&self) -> usize {
        1 << 16
    }
    fn new_state(&self) {}
    fn slide_state(&self, _: &mut (), _: usize, _: usize) {}
    fn forward(&self, _: &mut [&mut ()], _: &[&[u32]], _: &mut [f32]) -> Result<(), Fails> {
        Err(Fails)
    }
}

#[test]
fn one_token_streams_never_touch_the_model() {
    // Compression: a block of one token makes no model call at all.
    let tok = PairTokenizer::english();
    let vocab = tok.vocab_size();
    let failing = FailingVocab(vocab);
    let d = DecompressOptions::default();
    let model = HashModel::new(vocab, 1);
    for data in [&b"t"[..], b"th"] {
        let o = opts(4, CoderKind::Arithmetic);
        let packed = compress(data, &failing, &tok, &id("f", 1), &o).unwrap();
        assert!(decompress(&packed, &model, &tok, &id("f", 1), &d).unwrap() == data);
    }
    // Decompression: a hand-made block of 1-token streams (both coders)
    // decodes with a model that fails on every call.
    let toks = tok.encode(b"the cat");
    let text = tok.decode(&toks).unwrap();
    for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
        let header = v2::Header {
            model: [1; 8],
            level: 0,
            custom: Some(Custom {
                coder,
                total_bits: 24,
                window: 4,
                carry: 1,
                predictor: 0,
                sinks: 0,
                primer: 0,
            }),
        };
        let payloads: Vec<Vec<u8>> = toks
            .iter()
            .map(|&t| {
                let mut enc =
                    ChunkEncoder::new(coder, Default::default(), Kernels::best(), vocab, 24)
                        .unwrap();
                enc.encode_first(vocab, t);
                enc.finish()
            })
            .collect();
        let frame = |payloads: &[Vec<u8>]| {
            let mut file = v2::encode_header(&header);
            file.extend(v2::encode_block(&Block {
                original_len: text.len() as u64,
                body: Body::Model {
                    bare_lfs: None,
                    reflow: None,
                    streams: payloads
                        .iter()
                        .map(|p| Stream {
                            tokens: 1,
                            payload: p.clone(),
                        })
                        .collect(),
                },
                check: v2::check32(&text),
            }));
            v2::write_end(&mut file, text.len() as u64, v2::check32(&text)).unwrap();
            file
        };
        let file = frame(&payloads);
        assert!(decompress(&file, &failing, &tok, &id("f", 1), &d).unwrap() == text);
        // A non-canonical payload (a zero byte appended) is still rejected.
        let mut bad = payloads.clone();
        bad[1].push(0);
        assert!(matches!(
            decompress(&frame(&bad), &failing, &tok, &id("f", 1), &d),
            Err(CodecError::CorruptBlock { .. })
        ));
    }
}

/// [`FailingModel`] with a chosen vocabulary.
struct FailingVocab(usize);

impl LanguageModel for FailingVocab {
    type State = ();
    type Error = Fails;
    fn vocab_size(&self) -> usize {
        self.0
    }
    fn max_context(&self) -> usize {
        1 << 16
    }
    fn new_state(&self) {}
    fn slide_state(&self, _: &mut (), _: usize, _: usize) {}
    fn forward(&self, _: &mut [&mut ()], _: &[&[u32]], _: &mut [f32]) -> Result<(), Fails> {
        Err(Fails)
    }
}

#[test]
fn progress_after_every_forward_pass_and_break_interrupts() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let data = model_text(&model, &tok, 1500, 11);
    // One chunk, pieces of 37 tokens: ~40 passes within the one chunk.
    let o = opts(2048, CoderKind::Arithmetic);
    let counting = Counting::new(&model);
    let mut reports = Vec::new();
    let mut packed = Vec::new();
    compress_stream(
        &data[..],
        &mut packed,
        &counting,
        &tok,
        &id("hash", 1),
        &o,
        &mut |p| {
            reports.push((counting.calls.get(), p));
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    let calls = counting.calls.get();
    assert!(calls >= 30, "{calls}");
    // A report after each pass, with growing counts inside the chunk.
    for k in 1..=calls {
        assert!(
            reports.iter().any(|(c, _)| *c == k),
            "no report after pass {k}"
        );
    }
    assert!(reports
        .windows(2)
        .all(|w| w[0].1.bytes_in <= w[1].1.bytes_in && w[0].1.tokens <= w[1].1.tokens));
    assert!(reports[0].1.bytes_in > 0 && reports[0].1.bytes_in < data.len() as u64 / 10);

    // Break stops compression at once.
    counting.calls.set(0);
    let mut n = 0;
    let r = compress_stream(
        &data[..],
        &mut Vec::new(),
        &counting,
        &tok,
        &id("hash", 1),
        &o,
        &mut |_| {
            n += 1;
            if n == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert!(matches!(r, Err(CodecError::Interrupted)), "{r:?}");
    assert_eq!(counting.calls.get(), 3);

    // Decompression reports every batched step, and stops on Break too.
    counting.calls.set(0);
    let mut steps = 0;
    let mut back = Vec::new();
    decompress_stream(
        &packed[..],
        &mut back,
        &counting,
        &tok,
        &id("hash", 1),
        &DecompressOptions::default(),
        &mut |_| {
            steps += 1;
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert!(back == data);
    assert!(steps >= counting.calls.get() && counting.calls.get() > 1000);
    counting.calls.set(0);
    let mut n = 0;
    let r = decompress_stream(
        &packed[..],
        &mut Vec::new(),
        &counting,
        &tok,
        &id("hash", 1),
        &DecompressOptions::default(),
        &mut |_| {
            n += 1;
            if n == 5 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    assert!(matches!(r, Err(CodecError::Interrupted)), "{r:?}");
    assert!(counting.calls.get() <= 5);
    // And score.
    let mut n = 0;
    let r = score(&data, &model, &tok, &o, &mut |_| {
        n += 1;
        ControlFlow::Break(())
    });
    assert!(matches!(r, Err(CodecError::Interrupted)));
    assert_eq!(n, 1);
}

/// `score` recomputed from the rule: tokenize, split into streams (primed
/// after the first), each window one forward pass over its whole fed range
/// from a state built from the stream's tokens (empty, or a slid window's
/// sinks and carry), context rows dropped, f64 softmax.
fn score_by_hand<M: LanguageModel<State = Vec<u32>>>(
    data: &[u8],
    model: &M,
    tok: &PairTokenizer,
    p: &Params,
) -> (u64, f64) {
    let toks = tok.encode(data);
    let vocab = model.vocab_size();
    let (carry, sinks, primer) = (p.carry as usize, p.sinks as usize, p.primer as usize);
    let lens = split_streams(toks.len(), p.max_streams as usize, p.stream_tokens as usize);
    let primer = if lens.len() > 1 {
        primer.min(lens[0])
    } else {
        0
    };
    let mut bits = 0.0;
    let mut start = 0;
    for len in lens {
        // Every stream after the first is the block's first `primer`
        // tokens (context only), then its own.
        let lead = if start > 0 { primer } else { 0 };
        let s = [&toks[..lead], &toks[start..start + len]].concat();
        start += len;
        if lead == 0 {
            bits += (vocab as f64).log2();
        }
        for w in windows(s.len(), lead, p.window as usize, carry, sinks) {
            // A slid window's state is the stream's first `sinks` tokens
            // and the `carry` before the window's first fed one.
            let mut state = if w.slide {
                [&s[..sinks], &s[w.start - carry..w.start]].concat()
            } else {
                Vec::new()
            };
            let fed = &s[w.fed()];
            let mut logits = vec![0f32; fed.len() * vocab];
            model
                .forward(&mut [&mut state], &[fed], &mut logits)
                .unwrap();
            for (row, &t) in logits
                .chunks_exact(vocab)
                .skip(w.silent())
                .zip(&s[w.coded()])
            {
                let p: Vec<f64> = row.iter().map(|&x| (x as f64).exp()).collect();
                bits -= (p[t as usize] / p.iter().sum::<f64>()).log2();
            }
        }
    }
    (toks.len() as u64, bits)
}

#[test]
fn score_is_the_cross_entropy_of_the_compressed_streams() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let data = model_text(&model, &tok, 3000, 12);
    for window in [2u32, 7, 500] {
        let mut o = opts(window, CoderKind::Arithmetic);
        o.params.adaptive = AdaptiveConfig::default();
        let s = score(&data, &model, &tok, &o, &mut no_progress).unwrap();
        let (tokens, bits) = score_by_hand(&data, &model, &tok, &o.params);
        assert_eq!(s.bytes, data.len() as u64);
        assert_eq!(s.tokens, tokens);
        assert!((s.bits - bits).abs() < 1e-6 * bits, "{} vs {bits}", s.bits);
        if window == 500 {
            // The block is model-coded; the payloads are the score plus
            // the coder's tiny overhead (< 8 bits per stream end).
            let packed = compress(&data, &model, &tok, &id("hash", 1), &o).unwrap();
            let mut payload_bits = 0.0;
            for r in records(&packed) {
                match streams(&r) {
                    Some(st) => {
                        payload_bits += st.iter().map(|s| s.payload.len() as f64 * 8.0).sum::<f64>()
                    }
                    None => assert!(matches!(r, Record::End { .. }), "not model-coded: {r:?}"),
                }
            }
            eprintln!("score {:.1} bits, payloads {payload_bits} bits", s.bits);
            assert!((payload_bits / s.bits - 1.0).abs() < 0.005);
        }
    }
    // With the adaptive predictor the score is what its tables cost: the
    // payloads agree within the coder's overhead.
    let o = opts(500, CoderKind::Arithmetic);
    assert!(o.params.adaptive.bias && o.params.adaptive.sse);
    let s = score(&data, &model, &tok, &o, &mut no_progress).unwrap();
    let packed = compress(&data, &model, &tok, &id("hash", 1), &o).unwrap();
    let payload = payload_bits(&packed);
    eprintln!(
        "adaptive: score {:.1} bits, payloads {payload} bits",
        s.bits
    );
    assert!((payload / s.bits - 1.0).abs() < 0.005);
    // Blocks are cut like the compressor's: at 1000-byte blocks the
    // streams restart at every block, and the score changes accordingly.
    let mut o = CompressOptions {
        segment_bytes: 1000,
        ..opts(500, CoderKind::Arithmetic)
    };
    o.params.adaptive = AdaptiveConfig::default();
    let s = score(&data, &model, &tok, &o, &mut no_progress).unwrap();
    let mut by_hand = (0, 0.0);
    let mut rest = &data[..];
    while !rest.is_empty() {
        let cut = cut_point(&rest[..rest.len().min(1000)], rest.len() <= 1000);
        let (t, b) = score_by_hand(&rest[..cut], &model, &tok, &o.params);
        by_hand = (by_hand.0 + t, by_hand.1 + b);
        rest = &rest[cut..];
    }
    assert_eq!(s.tokens, by_hand.0);
    assert!((s.bits - by_hand.1).abs() < 1e-6 * by_hand.1);
}

#[test]
fn repeated_text_falls_back_to_one_raw_record_for_the_segment() {
    // Each chunk alone is model text the model codes better than zstd does,
    // but the text is one block repeated: zstd over the whole segment sees
    // the repeats, chunk-by-chunk choices cannot.
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let block = model_text(&model, &tok, 600, 5);
    let data = block.repeat(40);
    let o = opts(500, CoderKind::Arithmetic);
    let packed = round_trip(&data, &tok, &o, 16);
    let recs = records(&packed);
    assert!(
        !recs.iter().any(is_model),
        "model block kept although the block is smaller raw"
    );
    assert_eq!(recs.len(), 2, "one raw block and the end record");
    let z = zstd::bulk::compress(&data, o.zstd_level).unwrap().len();
    assert!(packed.len() <= z + 128, "{} vs zstd {z}", packed.len());
    // Each block alone is still model-coded (the fallback is not blanket).
    let single = round_trip(&block, &tok, &o, 16);
    assert!(records(&single).iter().any(is_model));
}

#[test]
fn chunks_in_flight_follow_the_state_budget() {
    let o = DecompressOptions {
        max_batch: 32,
        state_budget: 1000,
        ..Default::default()
    };
    // 10 bytes per token, 24-token chunks: 240 bytes each, 4 fit.
    assert_eq!(batch_for(&o, 10, 24), 4);
    // A model whose states cost nothing: the cap.
    assert_eq!(batch_for(&o, 0, 24), 32);
    // Larger than the budget: still one chunk at a time.
    assert_eq!(batch_for(&o, usize::MAX, 65536), 1);
    let d = DecompressOptions::default();
    // SmolLM2-135M (12600 bytes per token) at 2048 and 8192 tokens.
    assert_eq!(batch_for(&d, 12600, 2048), 32);
    assert_eq!(batch_for(&d, 12600, 8192), 10);
}

/// A model whose logits depend on the whole state (its length and first
/// token) as well as the last two tokens: any disagreement about what a
/// slid state holds changes the probabilities.
struct HistoryModel(HashModel);

impl LanguageModel for HistoryModel {
    type State = Vec<u32>;
    type Error = super::synthetic::HashModelError;
    fn vocab_size(&self) -> usize {
        self.0.vocab
    }
    fn max_context(&self) -> usize {
        self.0.context
    }
    fn new_state(&self) -> Vec<u32> {
        Vec::new()
    }
    fn slide_state(&self, state: &mut Vec<u32>, sinks: usize, keep: usize) {
        self.0.slide_state(state, sinks, keep)
    }
    fn forward(
        &self,
        states: &mut [&mut Vec<u32>],
        tokens: &[&[u32]],
        logits: &mut [f32],
    ) -> Result<(), Self::Error> {
        let vocab = self.0.vocab;
        let mut rows = logits.chunks_exact_mut(vocab);
        for (state, toks) in states.iter_mut().zip(tokens) {
            for &t in toks.iter() {
                let a = state.last().copied().unwrap_or(u32::MAX);
                state.push(t);
                let row = rows.next().expect("room for the logits");
                self.0.row(a, t, row);
                row[(state.len() * 7 + state[0] as usize) % vocab] += 4.0;
            }
        }
        Ok(())
    }
}

/// Level-0 options with sliding windows.
fn slide_opts(window: u32, carry: u32, sinks: u32, coder: CoderKind) -> CompressOptions {
    let mut o = opts(window, coder);
    (o.params.carry, o.params.sinks) = (carry, sinks);
    o
}

#[test]
fn sliding_windows_round_trip_at_every_batch() {
    let tok = PairTokenizer::english();
    let model = HistoryModel(HashModel::new(tok.vocab_size(), 1));
    let data = model_text(&model.0, &tok, 2500, 21);
    for (window, carry, sinks, primer) in [
        (7, 2, 3, 0),
        (24, 8, 4, 0),
        (24, 19, 4, 23),
        (200, 150, 1, 60),
        (40, 10, 0, 30),
    ] {
        for coder in [CoderKind::Arithmetic, CoderKind::Rank] {
            let mut o = slide_opts(window, carry, sinks, coder);
            o.params.primer = primer;
            let packed = compress(&data, &model, &tok, &id("h", 1), &o).unwrap();
            assert!(records(&packed).iter().any(is_model), "not model-coded");
            for batch in [1, 3, 8] {
                let d = DecompressOptions {
                    max_batch: batch,
                    ..Default::default()
                };
                let back = decompress(&packed, &model, &tok, &id("h", 1), &d).unwrap();
                assert!(back == data, "window {window} carry {carry} sinks {sinks}");
            }
            // Restarting windows are another format: the same text codes
            // to other bytes.
            let restart = compress(
                &data,
                &model,
                &tok,
                &id("h", 1),
                &slide_opts(window, carry, 0, coder),
            )
            .unwrap();
            assert_ne!(restart, packed);
        }
    }
}

#[test]
fn sliding_score_is_the_cross_entropy_of_states_built_by_hand() {
    let tok = PairTokenizer::english();
    let model = HistoryModel(HashModel::new(tok.vocab_size(), 1));
    let data = model_text(&model.0, &tok, 3000, 13);
    for (window, carry, sinks, primer) in
        [(9, 3, 2, 0), (64, 40, 4, 0), (64, 40, 4, 20), (30, 8, 0, 5)]
    {
        let mut o = slide_opts(window, carry, sinks, CoderKind::Arithmetic);
        o.params.primer = primer;
        o.params.adaptive = AdaptiveConfig::default();
        let p = &o.params;
        assert!(
            split_streams(
                tok.encode(&data).len(),
                p.max_streams as usize,
                p.stream_tokens as usize
            )
            .len()
                > 2
        );
        let s = score(&data, &model, &tok, &o, &mut no_progress).unwrap();
        let (tokens, bits) = score_by_hand(&data, &model, &tok, p);
        assert_eq!(s.tokens, tokens);
        assert!((s.bits - bits).abs() < 1e-6 * bits, "{} vs {bits}", s.bits);
    }
}

#[test]
fn sliding_parameters_are_checked() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    for (window, carry, sinks) in [(8, 4, 4), (8, 7, 1), (3, 2, 1)] {
        let o = slide_opts(window, carry, sinks, CoderKind::Arithmetic);
        let r = compress(b"the cat sat", &model, &tok, &id("h", 1), &o);
        assert!(
            matches!(r, Err(CodecError::Parameters(_))),
            "{window} {carry} {sinks}: {r:?}"
        );
    }
}

/// Version-2 headers: sliding-window parameters round-trip; level bytes
/// outside both tables and sinks that do not fit are errors.
#[test]
fn header_levels_and_sinks() {
    let read = |h: &v2::Header| FrameReader::new(&v2::encode_header(h)[..]).read_header();
    let custom = |window, carry, sinks, primer| v2::Header {
        model: [3; 8],
        level: 0,
        custom: Some(Custom {
            coder: CoderKind::Arithmetic,
            total_bits: 28,
            window,
            carry,
            predictor: 3,
            sinks,
            primer,
        }),
    };
    for (w, c, s, p) in [
        (24, 8, 4, 0),
        (24, 8, 0, 0),
        (24, 8, 0, 23),
        (5, 3, 1, 2),
        (65536, 1, 65534, 65535),
    ] {
        let h = custom(w, c, s, p);
        assert!(
            matches!(read(&h), Ok(Some(Header::V2(ref g))) if *g == h),
            "{w} {c} {s} {p}"
        );
    }
    for (w, c, s, p) in [(24, 8, 16, 0), (5, 4, 1, 0), (24, 8, 4, 24)] {
        let r = read(&custom(w, c, s, p));
        assert!(r.is_err(), "{w} {c} {s} {p}: {r:?}");
    }
    for level in 0..=255u8 {
        let h = v2::Header {
            model: [3; 8],
            level,
            custom: None,
        };
        let known = Params::of_level_byte(level);
        assert_eq!(
            known.is_some(),
            matches!(level, 1..=9 | 11..=19 | 21..=29),
            "{level}"
        );
        if level != 0 {
            assert_eq!(read(&h).is_ok(), known.is_some(), "level byte {level}");
        }
    }
    // What this build writes for each level, and what it decodes it as.
    for l in MIN_LEVEL..=MAX_LEVEL {
        let p = Params::of_level_byte(Params::level_byte(l)).unwrap();
        assert_eq!((p, p.sinks), (Params::level(l).unwrap(), LEVEL_SINKS));
        assert_eq!(p.primer, LEVEL_PRIMER);
        let first = Params::first_table(l).unwrap();
        assert_eq!((first.sinks, first.primer), (0, 0));
        let second = Params::of_level_byte(10 + l).unwrap();
        assert_eq!(second, Params::second_table(l).unwrap());
        assert!(!second.adaptive.ngram && !first.adaptive.ngram);
        assert_eq!(p.adaptive.ngram, l >= 2);
        // The same decoding parameters; only the compressor's split
        // (streams of at least `stream_tokens`) may differ.
        assert_eq!(
            Params {
                adaptive: second.adaptive,
                stream_tokens: second.stream_tokens,
                ..p
            },
            second
        );
        let longer = match l {
            5 => Some(7168),
            6 => Some(8192),
            _ => None,
        };
        assert_eq!(p.stream_tokens, longer.unwrap_or(second.stream_tokens));
    }
    // A higher level never splits a block into more or shorter streams.
    for l in MIN_LEVEL..MAX_LEVEL {
        let (a, b) = (Params::level(l).unwrap(), Params::level(l + 1).unwrap());
        assert!(
            a.stream_tokens <= b.stream_tokens && a.max_streams >= b.max_streams,
            "{l}"
        );
    }
}

/// Text the model predicts (its own samples) in which pieces recur, as
/// in structured text: each of `n` pieces is one of 9 samples or a new
/// one.
fn repetitive_text(model: &HashModel, tok: &PairTokenizer, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 0..n {
        let seed = if k % 4 == 3 {
            1000 + k
        } else {
            (k * 7 + k / 5) % 9
        };
        out.extend(model_text(model, tok, 24, seed as u64));
    }
    out
}

#[test]
fn shared_ngram_round_trips_at_every_batch_and_thread_count() {
    let tok = PairTokenizer::english();
    let model = HistoryModel(HashModel::new(tok.vocab_size(), 1));
    let data = repetitive_text(&model.0, &tok, 120);
    let mut o = slide_opts(60, 20, 2, CoderKind::Arithmetic);
    o.params.primer = 30;
    assert!(o.params.ngram());
    let packed = compress(&data, &model, &tok, &id("h", 1), &o).unwrap();
    let n_streams = stream_count(&packed);
    assert!(n_streams > 2, "{n_streams} streams");
    eprintln!("{n_streams} streams, {} bytes", packed.len());
    // The n-gram pays on repeated text: the same settings without it give
    // a larger file.
    let mut off = o.clone();
    off.params.adaptive.ngram = false;
    let without = compress(&data, &model, &tok, &id("h", 1), &off).unwrap();
    assert!(
        packed.len() < without.len(),
        "{} bytes with the n-gram, {} without",
        packed.len(),
        without.len()
    );
    for threads in [1, 3] {
        pool(threads).install(|| {
            let again = compress(&data, &model, &tok, &id("h", 1), &o).unwrap();
            assert!(again == packed, "{threads} threads: other bytes");
            for batch in [1, 3, 64] {
                let d = DecompressOptions {
                    max_batch: batch,
                    ..Default::default()
                };
                let back = decompress(&packed, &model, &tok, &id("h", 1), &d).unwrap();
                assert!(back == data, "{threads} threads, batch {batch}");
            }
        });
    }
    // The score is what the mixed tables cost: the payloads agree within
    // the coder's overhead.
    let s = score(&data, &model, &tok, &o, &mut no_progress).unwrap();
    let payload = payload_bits(&packed);
    eprintln!("n-gram: score {:.1} bits, payloads {payload} bits", s.bits);
    assert!((payload / s.bits - 1.0).abs() < 0.01);
    // Every bit flip of a payload is an error, never a panic or a wrong
    // output.
    for (i, b) in packed.clone().iter().enumerate().step_by(7) {
        let mut bad = packed.clone();
        bad[i] = b ^ 0x10;
        let r = decompress(&bad, &model, &tok, &id("h", 1), &Default::default());
        assert!(!matches!(r, Ok(ref out) if *out != data), "flip at {i}");
    }
}

/// [`HistoryModel`] whose states cost this many bytes per token.
struct Heavy(HistoryModel, usize);

impl LanguageModel for Heavy {
    type State = Vec<u32>;
    type Error = super::synthetic::HashModelError;
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn max_context(&self) -> usize {
        self.0.max_context()
    }
    fn new_state(&self) -> Vec<u32> {
        Vec::new()
    }
    fn state_bytes_per_token(&self) -> usize {
        self.1
    }
    fn slide_state(&self, state: &mut Vec<u32>, sinks: usize, keep: usize) {
        self.0.slide_state(state, sinks, keep)
    }
    fn forward(
        &self,
        s: &mut [&mut Vec<u32>],
        t: &[&[u32]],
        l: &mut [f32],
    ) -> Result<(), Self::Error> {
        self.0.forward(s, t, l)
    }
}

#[test]
fn shared_ngram_blocks_decode_all_streams_or_name_the_memory_they_need() {
    let tok = PairTokenizer::english();
    let model = Heavy(HistoryModel(HashModel::new(tok.vocab_size(), 1)), 100);
    let data = repetitive_text(&model.0 .0, &tok, 120);
    let mut o = slide_opts(60, 20, 2, CoderKind::Arithmetic);
    o.params.primer = 30;
    let packed = compress(&data, &model, &tok, &id("h", 1), &o).unwrap();
    let n = stream_count(&packed);
    assert!(n > 2, "{n} streams");
    // 6000 bytes per stream (60 tokens): room for all but one.
    let d = |budget| DecompressOptions {
        max_batch: 2,
        state_budget: budget,
        ..Default::default()
    };
    let err = decompress(&packed, &model, &tok, &id("h", 1), &d(6000 * n - 1)).unwrap_err();
    assert!(
        matches!(err, CodecError::StreamsOverBudget { streams, allowed, .. }
            if streams == n && allowed == n - 1),
        "{err}"
    );
    assert!(err.to_string().contains("-M"), "{err}");
    // Room for all: decoded together although max_batch is 2.
    let back = decompress(&packed, &model, &tok, &id("h", 1), &d(6000 * n)).unwrap();
    assert!(back == data);
}

#[test]
fn shared_ngram_blocks_have_no_more_streams_than_a_default_decoder_holds() {
    let tok = PairTokenizer::english();
    let mut o = slide_opts(60, 20, 2, CoderKind::Arithmetic);
    o.params.primer = 30;
    let budget = DecompressOptions::default().state_budget;
    // States so large that three streams at a full window fill the budget.
    let model = Heavy(
        HistoryModel(HashModel::new(tok.vocab_size(), 1)),
        budget / 180,
    );
    let data = repetitive_text(&model.0 .0, &tok, 120);
    let packed = compress(&data, &model, &tok, &id("h", 1), &o).unwrap();
    let n = stream_count(&packed);
    assert_eq!(n, 3);
    let back = decompress(&packed, &model, &tok, &id("h", 1), &Default::default()).unwrap();
    assert!(back == data);
    // Without the n-gram the streams may be decoded in turns: not capped.
    let tokens = tok.encode(&data).len();
    assert_eq!(
        super::encode::block_streams(&model, &o.params, tokens).len(),
        3
    );
    o.params.adaptive.ngram = false;
    assert_eq!(
        super::encode::block_streams(&model, &o.params, tokens).len(),
        8
    );
}

#[test]
fn custom_headers_carry_the_ngram_flag_and_refuse_it_above_28_bits() {
    let tok = PairTokenizer::english();
    let model = HashModel::new(tok.vocab_size(), 1);
    let header = |predictor, total_bits| v2::Header {
        model: [0; 8],
        level: 0,
        custom: Some(Custom {
            coder: CoderKind::Arithmetic,
            total_bits,
            window: 24,
            carry: 8,
            predictor,
            sinks: 4,
            primer: 0,
        }),
    };
    // Bit 3 (the n-gram) reads back with the others; bit 4 is refused.
    for p in [8, 11, 3] {
        let h = header(p, 28);
        let r = FrameReader::new(&v2::encode_header(&h)[..]).read_header();
        assert!(
            matches!(r, Ok(Some(Header::V2(ref g))) if *g == h),
            "{p}: {r:?}"
        );
    }
    let r = FrameReader::new(&v2::encode_header(&header(16, 28))[..]).read_header();
    assert!(r.is_err(), "{r:?}");
    // An empty frame with the n-gram at total_bits 30: a clear error.
    let mut file = v2::encode_header(&header(11, 30));
    v2::write_end(&mut file, 0, v2::check32(&[])).unwrap();
    let id = ModelIdentity {
        name: "h".into(),
        fingerprint: [0; 32],
    };
    let err = decompress(&file, &model, &tok, &id, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("total_bits <= 28"), "{err}");
    let mut file = v2::encode_header(&header(11, 28));
    v2::write_end(&mut file, 0, v2::check32(&[])).unwrap();
    assert_eq!(
        decompress(&file, &model, &tok, &id, &Default::default()).unwrap(),
        b""
    );
}

/// Paragraphs of `n` greedily wrapped at `width` columns with CRLF line
/// endings, one bare LF (a CRLF exception) and a short line after each.
fn wrapped_crlf_text(n: usize, width: usize) -> Vec<u8> {
    let words = [
        "the", "end", "of", "it", "then", "there", "was", "more", "here", "and", "so",
    ];
    let mut text = String::new();
    let mut k = 7usize;
    for para in 0..n {
        let para_words: Vec<&str> = (0..50)
            .map(|_| {
                k = (k * 31 + 17) % 1009;
                words[k % words.len()]
            })
            .collect();
        text += &crate::testing::wrap(&para_words, width, "\r\n");
        text += if para == 3 {
            "\n\r\n"
        } else {
            "\r\nshort\r\n\r\n"
        };
    }
    text.into_bytes()
}

#[test]
fn wrapped_text_is_reflowed_after_crlf_and_restored() {
    use super::block::BlockText;
    use crate::transform::{lf_to_crlf, unreflow};
    let data = wrapped_crlf_text(30, 48);
    let t = BlockText::new(&data, true, true);
    assert_eq!(t.reflow, Some(48));
    assert_eq!(t.endings.as_ref().map(|e| e.bare.len()), Some(1));
    // Each paragraph is one line: its LFs are the short line's and the
    // blank line's (and the bare LF).
    assert_eq!(t.text.iter().filter(|&&b| b == b'\n').count(), 30 * 3 - 1);
    let back = lf_to_crlf(&unreflow(&t.text, 48), t.endings.as_ref().unwrap()).unwrap();
    assert_eq!(back, data);
    assert_eq!(BlockText::new(&data, true, false).reflow, None);
    // Without the CRLF transform the lines still end in CRLF: reflow is
    // not chosen either (joined lines would keep a stray CR).
    let raw = BlockText::new(&data, false, true);
    assert!(raw.reflow.is_none() && raw.text == data);
}

#[test]
fn reflow_width_and_flags_are_checked() {
    let block = |reflow: Option<u32>| {
        v2::encode_block(&Block {
            original_len: 3,
            body: Body::Model {
                bare_lfs: None,
                reflow,
                streams: vec![Stream {
                    tokens: 1,
                    payload: vec![0],
                }],
            },
            check: v2::check32(b"abc"),
        })
    };
    let read = |bytes: &[u8]| {
        let mut file = v2::encode_header(&v2::Header {
            level: 25,
            model: [1; 8],
            custom: None,
        });
        file.extend_from_slice(bytes);
        let mut r = FrameReader::new(&file[..]);
        r.read_header().unwrap().unwrap();
        r.read_record_v2().map(|rec| match rec {
            Record::Block(Block {
                body: Body::Model { reflow, .. },
                ..
            }) => reflow,
            _ => panic!("not a model block"),
        })
    };
    for w in [1, 65, crate::transform::MAX_REFLOW_WIDTH] {
        let b = block(Some(w));
        assert_eq!(b.len(), v2::model_block_len(3, None, Some(w), &[(1, 1)]));
        assert_eq!(read(&b).unwrap(), Some(w));
    }
    assert_eq!(read(&block(None)).unwrap(), None);
    // The record: kind, original_len (one byte), flags, then the width.
    const FLAGS: usize = 2;
    for bad in [0, crate::transform::MAX_REFLOW_WIDTH + 1] {
        let mut b = block(Some(1));
        assert_eq!(b[FLAGS], 2);
        let mut width = Vec::new();
        crate::container::put_varint(&mut width, bad as u64);
        b.splice(FLAGS + 1..FLAGS + 2, width);
        let e = read(&b).unwrap_err().to_string();
        assert!(e.contains("reflow width"), "{e}");
    }
    // Flag bits other than 0 and 1.
    let mut b = block(None);
    b[FLAGS] = 4;
    let e = read(&b).unwrap_err().to_string();
    assert!(e.contains("block flags"), "{e}");
}
