//! Tests of the SentencePiece tokenizer: hand-made vocabularies, llama.cpp's
//! reference ids for Gemma 3, an independent naive implementation of the
//! rule (llama.cpp's longest-first partition, quadratic merges), and round
//! trips.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use super::*;
use crate::gguf::{Gguf, Value};
use crate::testing::Rng;

// ---------------------------------------------------------------- fixtures

/// `tests/data` (`corpus/`, `reference/`).
fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The Gemma 3 270M model file: `$LLMC_GEMMA_MODEL`, else the registry's.
fn gemma_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LLMC_GEMMA_MODEL") {
        return p.into();
    }
    crate::registry::fetch(
        crate::registry::known_by_id("gemma3-270m").expect("gemma3-270m is a known model"),
        true,
    )
    .expect("fetch gemma3-270m")
}

fn gemma_gguf() -> &'static Gguf {
    static G: OnceLock<Gguf> = OnceLock::new();
    G.get_or_init(|| Gguf::open(&gemma_path()).expect("open the Gemma model"))
}

fn gemma() -> &'static SpmTokenizer {
    static T: OnceLock<SpmTokenizer> = OnceLock::new();
    T.get_or_init(|| SpmTokenizer::from_gguf(gemma_gguf()).expect("Gemma tokenizer builds"))
}

/// Gemma's vocabulary read directly from the GGUF: texts, scores, types.
struct Vocab {
    tokens: Vec<&'static str>,
    scores: Vec<f32>,
    types: Vec<i32>,
    ids: HashMap<&'static [u8], u32>,
}

fn gemma_vocab() -> &'static Vocab {
    static V: OnceLock<Vocab> = OnceLock::new();
    V.get_or_init(|| {
        let g = gemma_gguf();
        let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_bytes(), i as u32))
            .collect();
        Vocab {
            scores: g.get_f32_array("tokenizer.ggml.scores").unwrap(),
            types: g.get_i32_array("tokenizer.ggml.token_type").unwrap(),
            tokens,
            ids,
        }
    })
}

/// Gemma's byte token of `b`.
fn gemma_byte(b: u8) -> u32 {
    238 + u32::from(b)
}

#[track_caller]
fn assert_err<T: std::fmt::Debug>(got: Result<T, TokenizerError>, expected: TokenizerError) {
    let e = got.expect_err("expected an error");
    assert_eq!(format!("{e:?}"), format!("{expected:?}"));
}

/// Checks `decode(encode(x)) == x`, at most one token per byte, and that
/// every emitted id has text; returns the ids.
#[track_caller]
fn round_trip(tok: &SpmTokenizer, x: &[u8]) -> Vec<u32> {
    let ids = tok.encode(x);
    assert!(ids.len() <= x.len(), "more tokens than bytes for {x:?}");
    let back = tok.decode(&ids).expect("encoded ids decode");
    assert!(
        back == x,
        "round trip failed for {:?}",
        String::from_utf8_lossy(x)
    );
    ids
}

// ------------------------------------------------------ tiny vocabularies

/// A hand-made vocabulary: control `<pad>`, the 256 byte tokens, then the
/// user-defined tokens, then the normal ones with their scores.
struct Tiny {
    tok: SpmTokenizer,
    texts: Vec<String>,
}

fn tiny_parts(normal: &[(&str, f32)], user: &[&str]) -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut texts = vec!["<pad>".to_string()];
    let mut scores = vec![0.0];
    let mut types = vec![TYPE_CONTROL];
    for b in 0..=255u8 {
        texts.push(format!("<0x{b:02X}>"));
        scores.push(0.0);
        types.push(TYPE_BYTE);
    }
    for u in user {
        texts.push(u.to_string());
        scores.push(0.0);
        types.push(TYPE_USER_DEFINED);
    }
    for (t, s) in normal {
        texts.push(t.to_string());
        scores.push(*s);
        types.push(TYPE_NORMAL);
    }
    (texts, scores, types)
}

fn tiny(normal: &[(&str, f32)], user: &[&str]) -> Tiny {
    let (texts, scores, types) = tiny_parts(normal, user);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let tok = SpmTokenizer::from_vocab(&refs, &scores, &types, Some(0)).expect("tiny vocab");
    Tiny { tok, texts }
}

impl Tiny {
    /// Ids of token texts (`<0xXX>` for byte tokens).
    fn ids(&self, texts: &[&str]) -> Vec<u32> {
        texts
            .iter()
            .map(|t| {
                self.texts
                    .iter()
                    .position(|x| x == t)
                    .unwrap_or_else(|| panic!("{t:?} not in the vocabulary")) as u32
            })
            .collect()
    }

    #[track_caller]
    fn check(&self, text: &str, expected: &[&str]) {
        assert_eq!(
            self.tok.encode(text.as_bytes()),
            self.ids(expected),
            "text {text:?}"
        );
        round_trip(&self.tok, text.as_bytes());
    }
}

#[test]
fn tiny_merges_highest_score_first() {
    let v = tiny(
        &[
            ("a", -1.0),
            ("b", -1.0),
            ("c", -1.0),
            ("ab", -2.0),
            ("bc", -3.0),
        ],
        &[],
    );
    v.check("abc", &["ab", "c"]);
    let v = tiny(
        &[
            ("a", -1.0),
            ("b", -1.0),
            ("c", -1.0),
            ("ab", -3.0),
            ("bc", -2.0),
        ],
        &[],
    );
    v.check("abc", &["a", "bc"]);
    // Greedy by score, not the fewest tokens: "bc" first blocks "ab"+"cd".
    let v = tiny(
        &[
            ("a", 0.0),
            ("b", 0.0),
            ("c", 0.0),
            ("d", 0.0),
            ("ab", -2.0),
            ("cd", -2.0),
            ("bc", -1.0),
            ("abcd", -5.0),
        ],
        &[],
    );
    v.check("abcd", &["a", "bc", "d"]);
}

#[test]
fn tiny_equal_scores_merge_leftmost() {
    let v = tiny(&[("a", 0.0), ("aa", -1.0)], &[]);
    v.check("aaa", &["aa", "a"]);
    v.check("aaaaa", &["aa", "aa", "a"]);
    let v = tiny(
        &[
            ("a", 0.0),
            ("b", 0.0),
            ("c", 0.0),
            ("ab", -1.0),
            ("bc", -1.0),
        ],
        &[],
    );
    v.check("abc", &["ab", "c"]);
    v.check("cabc", &["c", "ab", "c"]);
    // -0.0 and 0.0 are equal scores.
    let v = tiny(
        &[
            ("a", 1.0),
            ("b", 1.0),
            ("c", 1.0),
            ("ab", -0.0),
            ("bc", 0.0),
        ],
        &[],
    );
    v.check("abc", &["ab", "c"]);
}

#[test]
fn tiny_merge_parts_need_not_be_tokens() {
    let v = tiny(&[("xy", -1.0), ("xyz", -2.0)], &[]);
    v.check("xy", &["xy"]);
    v.check("xyz", &["xyz"]);
    v.check("xyw", &["xy", "<0x77>"]);
}

#[test]
fn tiny_byte_fallback() {
    let v = tiny(&[("a", -1.0)], &[]);
    v.check("z", &["<0x7A>"]);
    v.check("aé", &["a", "<0xC3>", "<0xA9>"]);
    // No "▁" token: a space falls back to its own byte, not U+2581's.
    v.check("a a", &["a", "<0x20>", "a"]);
    assert_eq!(
        v.tok.encode(b"\xffa\x80"),
        v.ids(&["<0xFF>", "a", "<0x80>"])
    );
    round_trip(&v.tok, b"\xffa\x80");
}

#[test]
fn tiny_spaces_and_literal_space_marker() {
    let v = tiny(
        &[
            ("a", -1.0),
            ("b", -1.0),
            ("▁", -1.0),
            ("▁a", -0.5),
            ("a▁", -0.1),
        ],
        &[],
    );
    v.check(" a", &["▁a"]);
    v.check("a ", &["a▁"]);
    // A literal U+2581 is its three bytes and splits the text.
    v.check("a▁b", &["a", "<0xE2>", "<0x96>", "<0x81>", "b"]);
    v.check("▁a", &["<0xE2>", "<0x96>", "<0x81>", "a"]);
    v.check(" ▁ ", &["▁", "<0xE2>", "<0x96>", "<0x81>", "▁"]);
    assert_eq!(v.tok.decode(&v.ids(&["▁a", "a▁"])).unwrap(), b" aa ");
}

#[test]
fn tiny_invalid_utf8_does_not_swallow_spaces() {
    let v = tiny(&[("a", -1.0), ("▁", -1.0), ("▁a", -0.5)], &[]);
    // llama.cpp reads 0xC3 as a two-byte character and takes the first byte
    // of the escaped space with it.
    assert_eq!(v.tok.encode(b"\xc3 a"), v.ids(&["<0xC3>", "▁a"]));
    for x in [
        &b"\xc3 "[..],
        b"\xe2 ",
        b"\xe2\x96 ",
        b"\xf0\x9f ",
        b"\xe2\x96\xe2\x96\x81",
        b"\xe2\x96\x81\x81",
    ] {
        round_trip(&v.tok, x);
    }
}

#[test]
fn tiny_user_defined_partition() {
    let user = ["<a>", "\n", "\n\n", "  ", "   ", "<start>"];
    let v = tiny(
        &[
            ("x", -1.0),
            ("y", -1.0),
            ("▁", -1.0),
            ("<", -1.0),
            ("a", -1.0),
            (">", -1.0),
        ],
        &user,
    );
    v.check("x<a>y", &["x", "<a>", "y"]);
    v.check("<a><a>", &["<a>", "<a>"]);
    v.check("\n\n\n", &["\n\n", "\n"]);
    v.check("\n\n\n\n\n", &["\n\n", "\n\n", "\n"]);
    v.check("x  y", &["x", "  ", "y"]);
    v.check("x   y", &["x", "   ", "y"]);
    v.check("     ", &["   ", "  "]);
    v.check("    ", &["   ", "▁"]);
    v.check("<a", &["<", "a"]);
    v.check("<start><a>\n", &["<start>", "<a>", "\n"]);
}

#[test]
fn tiny_special_tokens_never_produced() {
    let (mut texts, mut scores, mut types) = tiny_parts(
        &[
            ("a", -1.0),
            ("b", -1.0),
            ("<0", -1.0),
            ("<0x", -1.0),
            ("<0x4", -1.0),
            ("1>", -1.0),
        ],
        &[],
    );
    for (t, ty) in [
        ("ab", TYPE_CONTROL),
        ("<ctl>", TYPE_CONTROL),
        ("ba", TYPE_UNUSED),
        ("aa", TYPE_UNKNOWN),
        ("bb", 0),
        ("abab", 7),
    ] {
        texts.push(t.to_string());
        scores.push(100.0);
        types.push(ty);
    }
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let tok = SpmTokenizer::from_vocab(&refs, &scores, &types, None).unwrap();
    let v = Tiny { tok, texts };
    v.check("ab", &["a", "b"]);
    v.check("abab", &["a", "b", "a", "b"]);
    v.check("aabb", &["a", "a", "b", "b"]);
    v.check("<ctl>", &["<0x3C>", "<0x63>", "<0x74>", "<0x6C>", "<0x3E>"]);
    // The byte token's text is not formed by merges either.
    v.check("<0x41>", &["<0x4", "1>"]);
    assert_eq!(v.tok.bos_id(), None);
    for t in ["<pad>", "ab", "<ctl>", "ba", "aa", "bb", "abab"] {
        let id = v.ids(&[t])[0];
        assert_err(v.tok.decode(&[id]), TokenizerError::NoText { id });
        assert_eq!(v.tok.token_bytes(id), None);
    }
    let n = v.tok.vocab_size() as u32;
    for id in [n, u32::MAX] {
        assert_err(
            v.tok.decode(&[id]),
            TokenizerError::IdOutOfRange {
                id,
                vocab_size: n as usize,
            },
        );
    }
}

/// An edit of a tiny vocabulary's texts, scores and types.
type Edit<'a> = &'a dyn Fn(&mut Vec<String>, &mut Vec<f32>, &mut Vec<i32>);

#[test]
fn tiny_vocabulary_errors() {
    let build = |normal: &[(&str, f32)], user: &[&str], edit: Edit| {
        let (mut texts, mut scores, mut types) = tiny_parts(normal, user);
        edit(&mut texts, &mut scores, &mut types);
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        SpmTokenizer::from_vocab(&refs, &scores, &types, None)
    };
    let none = |_: &mut Vec<String>, _: &mut Vec<f32>, _: &mut Vec<i32>| {};
    assert!(build(&[("a", 0.0)], &["\n", "\n\n", "  ", "<b>"], &none).is_ok());
    // Ids: <pad> 0, bytes 1..=256, then user-defined, then normal.
    assert_err(
        build(&[("a", 0.0), ("a", 1.0)], &[], &none),
        TokenizerError::DuplicateToken {
            first: 257,
            second: 258,
        },
    );
    assert_err(
        build(&[("a", 0.0), ("", 1.0)], &[], &none),
        TokenizerError::EmptyToken(258),
    );
    assert_err(
        build(&[("a", f32::NAN)], &[], &none),
        TokenizerError::NanScore(257),
    );
    assert!(build(&[("a", f32::NEG_INFINITY)], &[], &none).is_ok());
    assert_err(
        build(&[], &[], &|t, _, _| t[1 + 0x41] = "<0x4G>".into()),
        TokenizerError::BadByteToken { id: 0x42 },
    );
    assert_err(
        build(&[], &[], &|_, _, ty| ty[1 + 0x41] = TYPE_NORMAL),
        TokenizerError::MissingByteFallback(0x41),
    );
    assert_err(
        build(&[], &[], &|t, _, ty| {
            t[1 + 0x41] = "<0x41x>".into();
            ty[1 + 0x41] = TYPE_NORMAL;
        }),
        TokenizerError::MissingByteFallback(0x41),
    );
    assert_err(
        build(&[], &[], &|t, _, _| t[1 + 0x4a] = "<0x4a>".into()),
        TokenizerError::MissingByteFallback(0x4a),
    );
    assert_err(
        build(&[], &[], &|_, s, _| s.push(0.0)),
        TokenizerError::VocabLengthMismatch {
            what: "scores",
            len: 258,
            tokens: 257,
        },
    );
    assert_err(
        build(&[], &[], &|_, _, ty| {
            ty.pop();
        }),
        TokenizerError::VocabLengthMismatch {
            what: "token types",
            len: 256,
            tokens: 257,
        },
    );
    for (user, a, b) in [
        (&["ab", "bc"][..], 257, 258),
        (&["ab", "b"], 257, 258),
        (&["x", "<a>", "a"], 258, 259),
        (&["<a>", "<a"], 257, 258),
        (&["aa", "a", "ba"], 257, 259),
        (&[" ", "  ", "\t "], 257, 259),
    ] {
        assert_err(
            build(&[], user, &none),
            TokenizerError::UserDefinedOverlap { a, b },
        );
    }
    let long = "x".repeat(MAX_USER_DEFINED_LEN + 1);
    assert_err(
        build(&[], &[&long], &none),
        TokenizerError::UserDefinedTooLong {
            id: 257,
            len: long.len(),
            max: MAX_USER_DEFINED_LEN,
        },
    );
    let many: Vec<String> = (0..=MAX_USER_DEFINED).map(|i| format!("[{i}]")).collect();
    let many: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
    assert_err(
        build(&[], &many, &none),
        TokenizerError::TooManyUserDefined {
            count: MAX_USER_DEFINED + 1,
            max: MAX_USER_DEFINED,
        },
    );
    let (texts, scores, types) = tiny_parts(&[], &[]);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    assert_err(
        SpmTokenizer::from_vocab(&refs, &scores, &types, Some(257)),
        TokenizerError::SpecialIdOutOfRange {
            id: 257,
            vocab_size: 257,
        },
    );
    assert_eq!(
        SpmTokenizer::from_vocab(&refs, &scores, &types, Some(256))
            .unwrap()
            .bos_id(),
        Some(256)
    );
}

/// A metadata-only GGUF image of `kvs`.
fn gguf_image(kvs: &[(String, Value)]) -> Vec<u8> {
    let kvs: Vec<(&str, Value)> = kvs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    crate::testing::gguf_metadata(&kvs)
}

#[test]
fn gguf_metadata_is_read_and_checked() {
    let (texts, scores, types) = tiny_parts(&[("a", -1.0), ("▁", -2.0), ("▁a", -3.0)], &["\n"]);
    let base: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        ("tokenizer.ggml.pre".into(), Value::String("default".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(texts.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array(scores.iter().map(|&s| Value::F32(s)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.iter().map(|&t| Value::I32(t)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
        ("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false)),
    ];
    let build = |key: &str, v: Option<Value>| {
        let mut md = base.clone();
        md.retain(|(k, _)| k != key);
        md.extend(v.map(|v| (key.to_string(), v)));
        SpmTokenizer::from_gguf(&Gguf::from_bytes(gguf_image(&md)).unwrap())
    };
    let tok = build("none", None).unwrap();
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(tok.vocab_size(), texts.len());
    let (a, space_a, nl) = (258, 260, 257);
    assert_eq!(tok.encode(b"a a\n"), [a, space_a, nl]);
    // Integer scores, as llama.cpp also reads them.
    let int_scores = Value::Array(scores.iter().map(|&s| Value::I32(s as i32)).collect());
    assert_eq!(
        build("tokenizer.ggml.scores", Some(int_scores))
            .unwrap()
            .encode(b"a a"),
        [a, space_a]
    );
    // Ignored, as by llama.cpp for this model.
    assert!(build("tokenizer.ggml.pre", None).is_ok());
    assert_err(
        build("tokenizer.ggml.model", Some(Value::String("gpt2".into()))),
        TokenizerError::NotSpm("gpt2".into()),
    );
    assert_err(
        build("tokenizer.ggml.add_space_prefix", None),
        TokenizerError::SpacePrefix,
    );
    assert_err(
        build("tokenizer.ggml.add_space_prefix", Some(Value::Bool(true))),
        TokenizerError::SpacePrefix,
    );
    assert_eq!(
        build("tokenizer.ggml.add_bos_token", Some(Value::Bool(false)))
            .unwrap()
            .bos_id(),
        None
    );
    assert_eq!(
        build("tokenizer.ggml.add_bos_token", None)
            .unwrap()
            .bos_id(),
        Some(0)
    );
    assert_err(
        build("tokenizer.ggml.bos_token_id", Some(Value::U32(9999))),
        TokenizerError::SpecialIdOutOfRange {
            id: 9999,
            vocab_size: texts.len(),
        },
    );
    for key in [
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.tokens",
    ] {
        assert!(
            matches!(build(key, None), Err(TokenizerError::Gguf(_))),
            "{key}"
        );
    }
    assert!(matches!(
        build("tokenizer.ggml.add_bos_token", Some(Value::U32(1))),
        Err(TokenizerError::Gguf(_))
    ));
    let short = Value::Array(types[1..].iter().map(|&t| Value::I32(t)).collect());
    assert_err(
        build("tokenizer.ggml.token_type", Some(short)),
        TokenizerError::VocabLengthMismatch {
            what: "token types",
            len: texts.len() - 1,
            tokens: texts.len(),
        },
    );
}

// ------------------------------------------------------ Gemma 3 (real GGUF)

#[test]
fn gemma_reference_ids_from_llama_cpp() {
    let path = data_dir().join("reference/gemma3-270m.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = v["tokenizer_cases"].as_array().expect("tokenizer_cases");
    assert!(cases.len() >= 15);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(gemma().encode(text.as_bytes()), expected, "text {text:?}");
        round_trip(gemma(), text.as_bytes());
    }
}

#[test]
fn gemma_vocabulary_facts() {
    let tok = gemma();
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!(tok.bos_id(), Some(2));
    assert_eq!(tok.decode(&[236743]).unwrap(), b" ");
    assert_eq!(tok.decode(&[gemma_byte(0xE2)]).unwrap(), [0xE2]);
    assert_eq!(tok.decode(&[168, 138, 107]).unwrap(), b"<table>  \n");
    // <pad> <eos> <bos> <unk> <mask> <start_of_turn> <end_of_turn> <unused0>
    for id in [0, 1, 2, 3, 4, 105, 106, 6, 262_143] {
        assert_err(tok.decode(&[id]), TokenizerError::NoText { id });
    }
    assert_err(
        tok.decode(&[262_144]),
        TokenizerError::IdOutOfRange {
            id: 262_144,
            vocab_size: 262_144,
        },
    );
    let v = gemma_vocab();
    let user = (0..v.tokens.len())
        .filter(|&i| v.types[i] == TYPE_USER_DEFINED)
        .count();
    assert_eq!(user, 165);
}

#[test]
fn gemma_whitespace_runs_and_tags() {
    let tok = gemma();
    assert_eq!(tok.encode(b" "), [236743]);
    assert_eq!(tok.encode(&[b' '; 40]), [167, 145]); // 31 + 9 spaces
    assert_eq!(tok.encode(&[b'\n'; 70]), [137, 137, 114]); // 31 + 31 + 8
    assert_eq!(tok.encode(b"\t\t\t"), [255970]);
    assert_eq!(tok.encode(b"<table><tr><td>"), [168, 173, 175]);
    assert_eq!(tok.encode(b"[multimodal]<start_of_image>"), [5, 255999]);
    for x in [
        &b"  \n \t\t  \n\n "[..],
        b"a  b   c\t\td",
        b"</td></tr>\n</table>",
    ] {
        assert_eq!(tok.encode(x), naive_encode(x), "{x:?}");
    }
}

#[test]
fn gemma_special_looking_text_is_plain_text() {
    let tok = gemma();
    let v = gemma_vocab();
    let text = "<start_of_turn>user\nhi<end_of_turn>\n<bos><eos><pad><unk><mask><unused0>\
                <|endoftext|><|im_start|><s></s><0x41><0xE2><start_of_image>[multimodal]";
    let ids = round_trip(tok, text.as_bytes());
    for &id in &ids {
        let ty = v.types[id as usize];
        assert!(
            matches!(ty, TYPE_NORMAL | TYPE_BYTE | TYPE_USER_DEFINED),
            "id {id} type {ty}"
        );
    }
    assert!(ids.contains(&255999) && ids.contains(&5) && ids.contains(&203) && ids.contains(&212));
    assert_eq!(ids, naive_encode(text.as_bytes()));
}

#[test]
fn gemma_literal_space_marker_round_trips() {
    let tok = gemma();
    let mark = [gemma_byte(0xE2), gemma_byte(0x96), gemma_byte(0x81)];
    assert_eq!(tok.encode("▁".as_bytes()), mark);
    let ids = round_trip(tok, "a▁b".as_bytes());
    assert_eq!(ids[1..4], mark);
    for x in [
        "▁▁",
        " ▁ ",
        "▁the",
        "the▁",
        "▁\n▁",
        "\u{2581}\u{2582}",
        "x ▁ y  ▁▁  z",
    ] {
        let ids = round_trip(tok, x.as_bytes());
        assert_eq!(ids, naive_encode(x.as_bytes()), "{x:?}");
    }
}

#[test]
fn gemma_invalid_utf8_round_trips() {
    let tok = gemma();
    let cases: &[&[u8]] = &[
        b"\xff",
        b"\x80",
        b"\xc3",
        b"\xc3 a",
        b"\xe2 the",
        b"\xe2\x96 x",
        b"\xe2\x96\xe2\x96\x81",
        b"\xf0\x9f\x98 end",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        b"\xf4\x90\x80\x80",
        b"a\x00b\r\r\n\x00",
        b"caf\xc3\xa9 \xc3\x28 \xa0\xa1",
        b"\xef\xbb\xbfBOM",
        b"\x00",
        b"\r",
        b"\n\r",
    ];
    for &x in cases {
        let ids = round_trip(tok, x);
        assert_eq!(ids, naive_encode(x), "{x:?}");
    }
}

/// Characters that exercise the partition, the space marker and fallback.
const INTERESTING: &[&str] = &[
    " ",
    " ",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "\r",
    "\r\n",
    "▁",
    "a",
    "e",
    "t",
    "the",
    "The",
    "ing",
    "é",
    "中",
    "😀",
    "<",
    ">",
    "</",
    "<b>",
    "<td>",
    "<bos>",
    "[multimodal]",
    "<start_of_image>",
    "0",
    "1",
    ".",
    ",",
    "'",
    "\"",
    "\u{0}",
    "\u{1}",
    "\u{7f}",
    "\u{a0}",
    "\u{200b}",
    "\u{fffd}",
    "ab",
    "ß",
    "Ж",
];

fn random_text(rng: &mut Rng, max_parts: usize) -> Vec<u8> {
    let n = rng.index(max_parts + 1);
    let mut out = Vec::new();
    for _ in 0..n {
        match rng.index(12) {
            0 => out.push(rng.index(256) as u8),
            1 => out.extend((0..rng.index(40)).map(|_| b' ')),
            2 => out.extend((0..rng.index(40)).map(|_| b'\n')),
            _ => out.extend_from_slice(INTERESTING[rng.index(INTERESTING.len())].as_bytes()),
        }
    }
    out
}

#[test]
fn gemma_random_texts_match_naive_reference_and_round_trip() {
    let tok = gemma();
    let mut rng = Rng(0x5eed_5ba7);
    for _ in 0..1500 {
        let x = random_text(&mut rng, 24);
        let ids = round_trip(tok, &x);
        assert_eq!(ids, naive_encode(&x), "input {x:?}");
    }
}

#[test]
fn gemma_random_bytes_round_trip() {
    let tok = gemma();
    let mut rng = Rng(7);
    for len in [0, 1, 2, 3, 5, 17, 100, 1000, 20_000] {
        for _ in 0..4 {
            let x: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            round_trip(tok, &x);
        }
    }
    // Mostly ASCII with some high bytes: partial UTF-8 sequences everywhere.
    for _ in 0..200 {
        let x: Vec<u8> = (0..rng.index(200))
            .map(|_| match rng.index(4) {
                0 => 0x80 | rng.index(0x80) as u8,
                1 => 0xc0 | rng.index(0x40) as u8,
                _ => b" a\n\te<"[rng.index(6)],
            })
            .collect();
        round_trip(tok, &x);
        assert_eq!(tok.encode(&x), naive_encode(&x), "{x:?}");
    }
}

#[test]
fn gemma_decode_is_per_token_concatenation() {
    let tok = gemma();
    let mut rng = Rng(99);
    let mut texted = || loop {
        let id = rng.index(tok.vocab_size()) as u32;
        if tok.token_bytes(id).is_some() {
            return id;
        }
    };
    for _ in 0..300 {
        let a: Vec<u32> = (0..5).map(|_| texted()).collect();
        let b: Vec<u32> = (0..7).map(|_| texted()).collect();
        let mut ab = tok.decode(&a).unwrap();
        ab.extend(tok.decode(&b).unwrap());
        assert_eq!(tok.decode(&[a, b].concat()).unwrap(), ab);
    }
}

#[test]
fn gemma_corpus_round_trips() {
    let tok = gemma();
    for (name, data) in crate::testing::corpus_files() {
        let t = Instant::now();
        let ids = round_trip(tok, &data);
        eprintln!(
            "{name}: {} bytes, {} tokens ({:.2} bytes/token), {:.0} ms",
            data.len(),
            ids.len(),
            data.len() as f64 / ids.len().max(1) as f64,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}

#[test]
fn gemma_corpus_prefixes_match_naive_reference() {
    let tok = gemma();
    for (name, data) in crate::testing::corpus_files() {
        if ![
            "alice29.txt",
            "cp.html",
            "fields.c",
            "xargs.1",
            "grammar.lsp",
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        let x = &data[..data.len().min(20_000)];
        assert!(
            tok.encode(x) == naive_encode(x),
            "{name}: ids differ from the naive reference"
        );
    }
}

#[test]
fn gemma_encode_speed() {
    let tok = gemma();
    let mut text = Vec::new();
    for (name, data) in crate::testing::corpus_files() {
        if ["alice29.txt", "asyoulik.txt", "lcet10.txt", "plrabn12.txt"].contains(&name.as_str()) {
            text.extend_from_slice(&data);
        }
    }
    text.truncate(1 << 20);
    let t = Instant::now();
    let ids = tok.encode(&text);
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "encoded 1 MiB of English into {} tokens in {:.0} ms ({:.1} MB/s)",
        ids.len(),
        secs * 1e3,
        1.048576 / secs
    );
    assert!(secs < 3.0, "1 MiB took {secs:.2} s");
    let t = Instant::now();
    SpmTokenizer::from_gguf(gemma_gguf()).unwrap();
    eprintln!(
        "built from the GGUF metadata in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}

#[test]
fn gemma_pathological_inputs() {
    let tok = gemma();
    let mut rng = Rng(3);
    let letters: Vec<u8> = (0..1 << 18).map(|_| b'a' + rng.index(26) as u8).collect();
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("spaces", vec![b' '; 1 << 18]),
        ("newlines", vec![b'\n'; 1 << 18]),
        ("a", vec![b'a'; 1 << 18]),
        ("letters", letters),
        ("marks", "▁".repeat(1 << 16).into_bytes()),
        ("space-a", " a".repeat(1 << 17).into_bytes()),
        ("0xff", vec![0xff; 1 << 18]),
    ];
    for (name, x) in inputs {
        let t = Instant::now();
        let ids = round_trip(tok, &x);
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {} bytes -> {} tokens in {:.0} ms",
            x.len(),
            ids.len(),
            secs * 1e3
        );
        assert!(secs < 3.0, "{name} took {secs:.2} s");
    }
}

// --------------------------------------------------- naive reference rule

/// llama.cpp's partition (`tokenizer_st_partition`, parse_special = false):
/// user-defined tokens longest first, each matched leftmost-first in the
/// remaining raw fragments. `Err(id)` is a matched token.
fn naive_partition(x: &[u8]) -> Vec<Result<&[u8], u32>> {
    let v = gemma_vocab();
    let mut user: Vec<u32> = (0..v.tokens.len() as u32)
        .filter(|&i| v.types[i as usize] == TYPE_USER_DEFINED)
        .collect();
    user.sort_by_key(|&i| std::cmp::Reverse(v.tokens[i as usize].len()));
    let mut frags = vec![Ok(x)];
    for id in user {
        let t = v.tokens[id as usize].as_bytes();
        let mut next = Vec::new();
        for f in frags {
            let Ok(mut raw) = f else {
                next.push(f);
                continue;
            };
            while let Some(at) = raw.windows(t.len()).position(|w| w == t) {
                if at > 0 {
                    next.push(Ok(&raw[..at]));
                }
                next.push(Err(id));
                raw = &raw[at + t.len()..];
            }
            if !raw.is_empty() {
                next.push(Ok(raw));
            }
        }
        frags = next;
    }
    frags
}

/// The whole rule with a quadratic merge loop: at each step every adjacent
/// pair is looked at and the best normal token (leftmost on ties) merged.
fn naive_encode(x: &[u8]) -> Vec<u32> {
    let v = gemma_vocab();
    let normal = |t: &[u8]| {
        v.ids
            .get(t)
            .copied()
            .filter(|&id| v.types[id as usize] == TYPE_NORMAL)
    };
    let byte = |b: u8| v.ids[format!("<0x{b:02X}>").as_bytes()];
    let mark = "▁".as_bytes();
    let mut out = Vec::new();
    for frag in naive_partition(x) {
        let raw = match frag {
            Err(id) => {
                out.push(id);
                continue;
            }
            Ok(raw) => raw,
        };
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut rest = raw;
        while let Some(at) = rest.windows(3).position(|w| w == mark) {
            pieces.push(&rest[..at]);
            pieces.push(mark);
            rest = &rest[at + 3..];
        }
        pieces.push(rest);
        for piece in pieces {
            if piece == mark {
                out.extend(mark.iter().map(|&b| byte(b)));
                continue;
            }
            let mut syms: Vec<Vec<u8>> = Vec::new();
            for chunk in piece.utf8_chunks() {
                for c in chunk.valid().chars() {
                    let s = if c == ' ' {
                        "▁".to_string()
                    } else {
                        c.to_string()
                    };
                    syms.push(s.into_bytes());
                }
                syms.extend(chunk.invalid().iter().map(|&b| vec![b]));
            }
            loop {
                let mut best: Option<(usize, f32)> = None;
                for i in 0..syms.len().saturating_sub(1) {
                    if let Some(id) = normal(&[&syms[i][..], &syms[i + 1][..]].concat()) {
                        let score = v.scores[id as usize];
                        if best.is_none_or(|(_, s)| score > s) {
                            best = Some((i, score));
                        }
                    }
                }
                let Some((i, _)) = best else { break };
                let right = syms.remove(i + 1);
                syms[i].extend(right);
            }
            for s in syms {
                match normal(&s) {
                    Some(id) => out.push(id),
                    None if s == mark => out.push(byte(b' ')),
                    None => out.extend(s.iter().map(|&b| byte(b))),
                }
            }
        }
    }
    out
}
