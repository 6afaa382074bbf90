//! Tests of the tokenizer against the reference ids, an independent
//! regex/string-level implementation, and round trips.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::bpe::{self, Scratch};
use super::pretokenize::PreTokens;
use super::*;
use crate::gguf::{Gguf, Value};
use crate::testing::Rng;

// ---------------------------------------------------------------- fixtures

/// `tests/data`: the repository's copy of the shared corpus and reference
/// figures (`corpus/`, `reference/`).
fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The real model file (`$LLMC_TEST_MODEL` or the registry's cache).
fn model_gguf() -> &'static Gguf {
    static G: OnceLock<Gguf> = OnceLock::new();
    G.get_or_init(|| {
        let path = crate::registry::model_for_tests().expect("locate the test model");
        Gguf::open(&path).expect("open the test model")
    })
}

/// The model's token strings and merges, read directly from the GGUF.
fn vocab_strings() -> (Vec<&'static str>, Vec<&'static str>) {
    let g = model_gguf();
    (
        g.get_str_array("tokenizer.ggml.tokens").unwrap(),
        g.get_str_array("tokenizer.ggml.merges").unwrap(),
    )
}

fn real() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(model_gguf()).expect("model tokenizer builds"))
}

/// Asserts that `got` is exactly the error `expected` (`TokenizerError`
/// wraps the GGUF reader's error, which has no `PartialEq`).
#[track_caller]
fn assert_err<T: std::fmt::Debug>(got: Result<T, TokenizerError>, expected: TokenizerError) {
    let e = got.expect_err("expected an error");
    assert_eq!(format!("{e:?}"), format!("{expected:?}"));
}

/// Characters that exercise every branch of the pattern.
const INTERESTING: &[char] = &[
    ' ', ' ', ' ', '\t', '\n', '\n', '\r', '\u{0b}', '\u{0c}', '\u{85}', '\u{a0}', '\u{1680}',
    '\u{2003}', '\u{2028}', '\u{3000}', '\'', '\'', 's', 't', 'r', 'e', 'v', 'l', 'm', 'd', 'S',
    'T', 'L', 'a', 'z', 'Q', '0', '1', '9', '٣', 'Ⅻ', '½', '²', '①', 'é', 'ß', 'Ж', '中', '語',
    'ǅ', 'ʰ', 'ª', '\u{301}', '\u{200b}', '\u{200d}', '😀', '🏽', '.', ',', '-', '?', '!', '"',
    '#', '<', '|', '>', '_', '\u{0}', '\u{7f}', '\u{1c}', '\u{fffd}', '\u{e000}',
];

fn random_string(rng: &mut Rng, max_chars: usize) -> String {
    let n = rng.index(max_chars + 1);
    let mut s = String::new();
    for _ in 0..n {
        let c = match rng.index(10) {
            0..=6 => INTERESTING[rng.index(INTERESTING.len())],
            7 => char::from_u32(rng.index(128) as u32).unwrap(),
            8 => char::from_u32(rng.index(0x800) as u32).unwrap(),
            _ => loop {
                if let Some(c) = char::from_u32(rng.index(0x11_0000) as u32) {
                    break c;
                }
            },
        };
        s.push(c);
    }
    if rng.index(8) == 0 {
        s.push_str("\r\n");
    }
    s
}

fn random_bytes(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let n = rng.index(max_len + 1);
    (0..n)
        .map(|_| match rng.index(4) {
            // Bias towards bytes that build (or break) UTF-8 sequences.
            0 => 0x80 + rng.index(0x40) as u8,
            1 => 0xC0 + rng.index(0x40) as u8,
            2 => b"ab 1'\n"[rng.index(6)],
            _ => rng.next_u64() as u8,
        })
        .collect()
}

// ---------------------------------------------------- reference pre-split

const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The pre-tokenizer written with `fancy-regex` and `str::from_utf8`'s
/// error lengths, independently of the scanner.
fn reference_split(bytes: &[u8]) -> Vec<&[u8]> {
    static RE: OnceLock<(fancy_regex::Regex, fancy_regex::Regex)> = OnceLock::new();
    let (digits, gpt2) = RE.get_or_init(|| {
        (
            fancy_regex::Regex::new(r"\p{N}").unwrap(),
            fancy_regex::Regex::new(GPT2_PATTERN).unwrap(),
        )
    });
    let split_text = |text: &str, base: usize, out: &mut Vec<(usize, usize)>| {
        let mut pos = 0;
        for m in gpt2.find_iter(text) {
            let m = m.unwrap();
            assert_eq!(m.start(), pos, "the pattern leaves no gaps");
            out.push((base + m.start(), base + m.end()));
            pos = m.end();
        }
        assert_eq!(pos, text.len());
    };
    let mut spans = Vec::new();
    let mut rest_start = 0;
    while rest_start < bytes.len() {
        let rest = &bytes[rest_start..];
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(s) => (s, 0),
            Err(e) => (
                std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap(),
                e.error_len().unwrap_or(rest.len() - e.valid_up_to()),
            ),
        };
        // Digits split first (isolated), then the GPT-2 pattern per gap.
        let mut pos = 0;
        for m in digits.find_iter(valid) {
            let m = m.unwrap();
            split_text(&valid[pos..m.start()], rest_start + pos, &mut spans);
            spans.push((rest_start + m.start(), rest_start + m.end()));
            pos = m.end();
        }
        split_text(&valid[pos..], rest_start + pos, &mut spans);
        let bad = rest_start + valid.len();
        for i in bad..bad + invalid {
            spans.push((i, i + 1));
        }
        rest_start = bad + invalid;
    }
    spans.into_iter().map(|(a, b)| &bytes[a..b]).collect()
}

#[test]
fn scanner_equals_fancy_regex_on_random_text() {
    let mut rng = Rng(1);
    for i in 0..20_000 {
        let s = random_string(&mut rng, if i % 10 == 0 { 200 } else { 24 });
        let got: Vec<&[u8]> = PreTokens::new(s.as_bytes()).collect();
        assert_eq!(got, reference_split(s.as_bytes()), "input {s:?}");
    }
}

#[test]
fn scanner_equals_reference_on_random_bytes() {
    let mut rng = Rng(2);
    for _ in 0..20_000 {
        let b = random_bytes(&mut rng, 40);
        let got: Vec<&[u8]> = PreTokens::new(&b).collect();
        assert_eq!(got, reference_split(&b), "input {b:?}");
    }
}

#[test]
fn scanner_equals_reference_on_corpus() {
    for (name, data) in crate::testing::corpus_files() {
        let got: Vec<&[u8]> = PreTokens::new(&data).collect();
        assert!(got == reference_split(&data), "pre-tokens differ on {name}");
    }
}

// ------------------------------------------------------- reference BPE

/// GPT-2's original algorithm on byte strings: merge every occurrence of
/// the best-ranked pair, left to right; then look the parts up (a byte
/// without a token comes out as the encoder's internal `ESCAPED + byte`).
fn reference_bpe(piece: &[u8]) -> Vec<u32> {
    type Ranks = HashMap<(Vec<u8>, Vec<u8>), usize>;
    static R: OnceLock<(Ranks, HashMap<Vec<u8>, u32>)> = OnceLock::new();
    let (ranks, ids) = R.get_or_init(|| {
        let (tokens, merges) = vocab_strings();
        let mut ids = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            ids.entry(byte_level::decode_token_text(t).unwrap())
                .or_insert(i as u32);
        }
        let mut ranks = HashMap::new();
        for (r, m) in merges.iter().enumerate() {
            let (a, b) = m.split_once(' ').unwrap();
            let a = byte_level::decode_token_text(a).unwrap();
            let b = byte_level::decode_token_text(b).unwrap();
            ranks.entry((a, b)).or_insert(r);
        }
        (ranks, ids)
    });
    let mut parts: Vec<Vec<u8>> = piece.iter().map(|&b| vec![b]).collect();
    loop {
        let best = parts
            .windows(2)
            .filter_map(|w| ranks.get(&(w[0].clone(), w[1].clone())).map(|&r| (r, w)))
            .min_by_key(|&(r, _)| r)
            .map(|(_, w)| (w[0].clone(), w[1].clone()));
        let Some((a, b)) = best else { break };
        let mut next = Vec::with_capacity(parts.len());
        let mut i = 0;
        while i < parts.len() {
            if i + 1 < parts.len() && parts[i] == a && parts[i + 1] == b {
                next.push([a.clone(), b.clone()].concat());
                i += 2;
            } else {
                next.push(parts[i].clone());
                i += 1;
            }
        }
        parts = next;
    }
    parts
        .iter()
        .map(|p| match ids.get(p) {
            Some(&id) => id,
            None => {
                assert_eq!(p.len(), 1, "only single bytes can lack a token");
                ESCAPED + u32::from(p[0])
            }
        })
        .collect()
}

fn both_bpe(piece: &[u8]) -> (Vec<u32>, Vec<u32>) {
    let t = real();
    let mut scratch = Scratch::default();
    let (mut small, mut heap) = (Vec::new(), Vec::new());
    bpe::encode_small(piece, &t.byte_token, &t.merges, &mut scratch, &mut small);
    bpe::encode_heap(piece, &t.byte_token, &t.merges, &mut scratch, &mut heap);
    (small, heap)
}

#[test]
fn bpe_variants_equal_gpt2_reference() {
    let mut rng = Rng(3);
    let text = std::fs::read(shared_dir().join("corpus/alice29.txt")).unwrap();
    let mut pieces: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        vec![b'a'; 64],
        vec![b'a'; 200],
        vec![b' '; 100],
        vec![0u8; 300],
        b"==================================================".to_vec(),
        "ééééééééé中文字符".as_bytes().to_vec(),
    ];
    // Real words and random slices of real text (any bytes: BPE does not
    // care about pre-token boundaries).
    for _ in 0..3000 {
        let max = if rng.index(10) == 0 { 150 } else { 16 };
        let len = 2 + rng.index(max);
        let start = rng.index(text.len() - len);
        pieces.push(text[start..start + len].to_vec());
    }
    for _ in 0..500 {
        let mut b = random_bytes(&mut rng, 30);
        b.push(b'x');
        pieces.push(b);
    }
    for p in &pieces {
        let (small, heap) = both_bpe(p);
        let expected = reference_bpe(p);
        assert_eq!(small, expected, "small variant on {p:?}");
        assert_eq!(heap, expected, "heap variant on {p:?}");
    }
}

// ------------------------------------------------------ reference ids

#[test]
fn reference_ids_match_for_every_case() {
    let path = shared_dir().join("reference/tokenizer.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = v["cases"].as_array().expect("cases array");
    assert!(cases.len() >= 10, "reference file has too few cases");
    let t = real();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
            .collect();
        let ids = t.encode(text.as_bytes());
        assert_eq!(ids, expected, "text {text:?}");
        assert_eq!(t.decode(&ids).unwrap(), text.as_bytes());
    }
}

#[test]
fn model_vocabulary_shape() {
    let t = real();
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.merges.len(), 48900);
    assert_eq!(t.token_bytes(0), Some(&b"<|endoftext|>"[..]));
    assert_eq!(t.token_bytes(49151).map(<[u8]>::is_empty), Some(false));
    assert_eq!(t.token_bytes(49152), None);
    assert_eq!(t.token_bytes(u32::MAX), None);
}

// ---------------------------------------------------------- round trips

#[test]
fn round_trip_corpus_files() {
    let t = real();
    for (name, data) in crate::testing::corpus_files() {
        let ids = t.encode(&data);
        assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
        assert!(t.decode(&ids).unwrap() == data, "round trip of {name}");
        // The memo must not change results: encoding pieces one at a time
        // (no memo hits) gives the same ids.
        let mut fresh = Vec::new();
        for piece in PreTokens::new(&data) {
            fresh.extend(t.encode(piece));
        }
        assert!(fresh == ids, "memo changed the ids of {name}");
    }
}

#[test]
fn round_trip_random_bytes() {
    let t = real();
    let mut rng = Rng(4);
    for i in 0..5000 {
        let b = random_bytes(&mut rng, if i % 50 == 0 { 5000 } else { 64 });
        assert_eq!(t.decode(&t.encode(&b)).unwrap(), b);
    }
}

#[test]
fn round_trip_random_text() {
    let t = real();
    let mut rng = Rng(5);
    for i in 0..5000 {
        let s = random_string(&mut rng, if i % 50 == 0 { 2000 } else { 40 });
        assert_eq!(t.decode(&t.encode(s.as_bytes())).unwrap(), s.as_bytes());
    }
}

#[test]
fn invalid_bytes_are_single_byte_tokens() {
    let t = real();
    // 0x80 is a stray continuation byte, 0xe2 an incomplete sequence; both
    // have tokens in this vocabulary.
    let ids = t.encode(b"\x80\xe2");
    assert_eq!(ids.len(), 2);
    assert_eq!(t.token_bytes(ids[0]), Some(&b"\x80"[..]));
    assert_eq!(t.token_bytes(ids[1]), Some(&b"\xe2"[..]));
    // "é" is one token; a truncated "é" is its lone lead byte.
    let e = t.encode("é".as_bytes());
    assert_eq!(e.len(), 1);
    assert_eq!(t.encode(b"\xc3").len(), 1);
    assert_ne!(t.encode(b"\xc3"), e);
}

/// The bytes SmolLM2's vocabulary has no token for (checked with an
/// independent dump of the GGUF vocabulary).
const MODEL_MISSING_BYTES: [u8; 21] = [
    0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1, 0xf2, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];

#[test]
fn bytes_without_token_are_escaped() {
    let t = real();
    assert_eq!(t.escape_id(), Some(0));
    for b in 0..=255u8 {
        let ids = t.encode(&[b]);
        if MODEL_MISSING_BYTES.contains(&b) {
            assert_eq!(ids, [0, u32::from(b)], "byte {b:#04x}");
        } else {
            assert_eq!(ids.len(), 1, "byte {b:#04x}");
            assert_eq!(t.token_bytes(ids[0]), Some(&[b][..]));
        }
        assert_eq!(t.decode(&ids).unwrap(), [b]);
    }
    // Inside longer pre-tokens (an Other run; a valid 4-byte character led
    // by 0xf1; a Latin-1 word) the byte blocks merges across it.
    for s in [
        &b"--\x04\x04--"[..],
        "\u{40000}x".as_bytes(),
        b"M\xfcller \xff\xfe",
    ] {
        let ids = t.encode(s);
        assert_eq!(t.decode(&ids).unwrap(), s);
        let escapes = ids.iter().filter(|&&i| i == 0).count();
        let missing = s.iter().filter(|b| MODEL_MISSING_BYTES.contains(b)).count();
        assert_eq!(escapes, missing, "{s:?} -> {ids:?}");
    }
}

#[test]
fn decode_rejects_bad_escapes() {
    let t = real();
    assert_eq!(t.decode(&[0, 255]).unwrap(), [0xff]);
    assert_eq!(t.decode(&[0, 65]).unwrap(), b"A");
    assert_err(
        t.decode(&[19556, 0]),
        TokenizerError::BadEscape { index: 1 },
    );
    assert_err(t.decode(&[0, 256]), TokenizerError::BadEscape { index: 0 });
    assert_err(t.decode(&[0, 0, 0]), TokenizerError::BadEscape { index: 2 });
}

#[test]
fn decode_rejects_out_of_range_ids() {
    let t = real();
    assert_err(
        t.decode(&[19556, 49152]),
        TokenizerError::IdOutOfRange {
            id: 49152,
            vocab_size: 49152,
        },
    );
    assert!(t.decode(&[u32::MAX]).is_err());
    assert_eq!(t.decode(&[]).unwrap(), b"");
}

#[test]
fn special_token_text_is_plain_text() {
    let t = real();
    for id in 0..17u32 {
        let text = t.token_bytes(id).unwrap().to_vec();
        let ids = t.encode(&text);
        assert!(!ids.contains(&id), "{:?} encoded to its special id", text);
        assert!(ids.iter().all(|&i| i >= 17), "special id in {ids:?}");
        assert_eq!(t.decode(&ids).unwrap(), text);
    }
    // Decoding a special id other than the escape gives its text.
    assert_eq!(t.decode(&[1]).unwrap(), b"<|im_start|>");
}

// -------------------------------------------------- construction errors

/// The 256 byte tokens in byte order, as GPT-2 strings.
fn byte_tokens() -> Vec<String> {
    (0..=255u8)
        .map(|b| {
            (0..0x144u32)
                .filter_map(char::from_u32)
                .find(|&c| byte_level::char_to_byte(c) == Some(b))
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn small_vocabulary_by_hand() {
    let mut tokens = byte_tokens();
    // ids 256.. : "ab", "bc", "abc", "Ġa"
    tokens.extend(["ab", "bc", "abc", "Ġa"].map(String::from));
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let merges = ["b c", "a b", "a bc", "Ġ a"];
    let t = Tokenizer::from_vocab(&tokens, &merges).unwrap();
    // "b c" outranks "a b": abc -> a|bc -> abc.
    assert_eq!(t.encode(b"abc"), [258]);
    // "abab": ab|ab.
    assert_eq!(t.encode(b"abab"), [256, 256]);
    // "ab abc" pre-tokens "ab", " abc": " abc" -> Ġ|a|bc -> Ġa|bc (rank 3
    // is beaten by "a bc" at rank 2): Ġ|abc.
    assert_eq!(t.encode(b"ab abc"), [256, 32, 258]);
    assert_eq!(t.encode(b"c"), [99]);
    assert_eq!(t.vocab_size(), 260);
}

#[test]
fn construction_errors() {
    let bytes = byte_tokens();
    let mut tokens: Vec<&str> = bytes.iter().map(String::as_str).collect();
    assert!(Tokenizer::from_vocab(&tokens, &[]).is_ok());

    assert_err(
        Tokenizer::from_vocab(&tokens[1..], &[]),
        TokenizerError::MissingByteToken(0),
    );
    assert_err(
        Tokenizer::from_vocab(&tokens, &["a"]),
        TokenizerError::MalformedMerge { rank: 0 },
    );
    assert_err(
        Tokenizer::from_vocab(&tokens, &["a b c"]),
        TokenizerError::MalformedMerge { rank: 0 },
    );
    assert_err(
        Tokenizer::from_vocab(&tokens, &["a b"]),
        TokenizerError::MergeResultMissing { rank: 0 },
    );
    assert_err(
        Tokenizer::from_vocab(&tokens, &["xyz a"]),
        TokenizerError::MergeUnknownToken { rank: 0 },
    );
    assert_err(
        Tokenizer::from_vocab(&tokens, &["中 a"]),
        TokenizerError::MergeUnknownToken { rank: 0 },
    );
    tokens.push("a b");
    assert_err(
        Tokenizer::from_vocab(&tokens, &[]),
        TokenizerError::InvalidTokenText { id: 256, ch: ' ' },
    );
}

#[test]
fn escape_token_is_lowest_unreachable_id() {
    let bytes = byte_tokens();
    // Byte 0x05 has no token; "<s>" (id 0) is the result of a merge...
    let mut tokens: Vec<&str> = vec!["<s>", "<", "s>", "<pad>"];
    tokens.extend(bytes.iter().map(String::as_str).filter(|t| *t != bytes[5]));
    let merges = ["s >", "< s>"];
    let t = Tokenizer::from_vocab(&tokens, &merges).unwrap();
    // ...and "<" (1) is the byte token of '<' (lower than the byte-order
    // duplicate); "s>" (2) is a merge result: so "<pad>" (3) escapes.
    assert_eq!(t.escape_id(), Some(3));
    // 'a' (0x61) is id 3 + 0x61 (ids 4.. are bytes 0..=255 without 5).
    assert_eq!(t.encode(b"a\x05"), [100, 3, 5]);
    assert_eq!(t.encode(b"<\x05<"), [1, 3, 5, 1]);
    assert_eq!(t.decode(&[3, 5]).unwrap(), [5]);
    // Without a free id the missing byte is an error.
    let tokens: Vec<&str> = bytes
        .iter()
        .map(String::as_str)
        .filter(|t| *t != bytes[5])
        .collect();
    assert_err(
        Tokenizer::from_vocab(&tokens, &[]),
        TokenizerError::MissingByteToken(5),
    );
    // A complete byte vocabulary has no escape.
    let tokens: Vec<&str> = bytes.iter().map(String::as_str).collect();
    assert_eq!(
        Tokenizer::from_vocab(&tokens, &[]).unwrap().escape_id(),
        None
    );
}

#[test]
fn duplicate_tokens_and_merges_lowest_wins() {
    let mut tokens = byte_tokens();
    tokens.push("ab".into()); // 256
    tokens.push("ab".into()); // 257, never produced
    tokens.push("a".into()); // 258, duplicate of byte token 97
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let t = Tokenizer::from_vocab(&tokens, &["a b", "a b"]).unwrap();
    assert_eq!(t.encode(b"ab a"), [256, 32, 97]);
    assert_eq!(t.decode(&[257, 258]).unwrap(), b"aba");
}

/// Throughput report (not a timed test: it asserts nothing about time).
/// `cargo test --release --lib encode_throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn encode_throughput() {
    let t = real();
    let text = std::fs::read(shared_dir().join("corpus/lcet10.txt")).unwrap();
    let mut best = f64::INFINITY;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let start = std::time::Instant::now();
        ids = t.encode(&text);
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "lcet10.txt: {} bytes -> {} tokens, {:.1} MB/s",
        text.len(),
        ids.len(),
        text.len() as f64 / best / 1e6
    );
    let all: Vec<u8> = crate::testing::corpus_files()
        .into_iter()
        .flat_map(|(_, d)| d)
        .collect();
    let start = std::time::Instant::now();
    let ids = t.encode(&all);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "whole corpus: {} bytes -> {} tokens, {:.1} MB/s",
        all.len(),
        ids.len(),
        all.len() as f64 / secs / 1e6
    );
    let big: Vec<u8> = (0..12).flat_map(|_| text.iter().copied()).collect();
    let start = std::time::Instant::now();
    let n = t.encode(&big).len();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "lcet10 x12 ({} bytes) -> {n} tokens in {secs:.3} s",
        big.len()
    );
}

// ------------------------------------------------------------- from_gguf

/// A GGUF v3 image with `kvs` and no tensors.
fn gguf_with(kvs: &[(&str, Value)]) -> Gguf {
    Gguf::from_bytes(crate::testing::gguf_metadata(kvs)).unwrap()
}

fn str_array(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

#[test]
fn from_gguf_checks_model_and_pre_tokenizer() {
    let bytes = byte_tokens();
    let mut tokens: Vec<&str> = bytes.iter().map(String::as_str).collect();
    tokens.push("ab");
    let kvs = |model: &str, pre: &str| {
        vec![
            ("tokenizer.ggml.model", Value::String(model.into())),
            ("tokenizer.ggml.pre", Value::String(pre.into())),
            ("tokenizer.ggml.tokens", str_array(&tokens)),
            ("tokenizer.ggml.merges", str_array(&["a b"])),
        ]
    };
    let t = Tokenizer::from_gguf(&gguf_with(&kvs("gpt2", "smollm"))).unwrap();
    assert_eq!(t.vocab_size(), 257);
    assert_eq!(t.encode(b"abab ab"), [256, 256, 32, 256]);
    assert_err(
        Tokenizer::from_gguf(&gguf_with(&kvs("llama", "smollm"))),
        TokenizerError::Unsupported("llama".into()),
    );
    assert_err(
        Tokenizer::from_gguf(&gguf_with(&kvs("gpt2", "qwen2"))),
        TokenizerError::UnsupportedPreTokenizer("qwen2".into()),
    );
    let mut no_merges = kvs("gpt2", "smollm");
    no_merges.pop();
    let e = Tokenizer::from_gguf(&gguf_with(&no_merges)).unwrap_err();
    assert!(matches!(e, TokenizerError::Gguf(_)), "{e:?}");
    assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");
    assert!(matches!(
        Tokenizer::from_gguf(&gguf_with(&[])),
        Err(TokenizerError::Gguf(_))
    ));
}
