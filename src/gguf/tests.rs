//! Unit tests on synthetic GGUF images built by a small independent writer.

use super::*;
use crate::testing::{put_str, put_value, Rng};

struct TestTensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

fn tt(name: &str, ty: GgmlType, dims: &[u64]) -> TestTensor {
    let n: u64 = dims.iter().product();
    let len = ty.bytes_for(n).unwrap() as usize;
    // Distinct, name-dependent bytes so swapped data would be noticed.
    let seed = name
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    let data = (0..len)
        .map(|i| seed.wrapping_add((i * 13) as u8))
        .collect();
    TestTensor {
        name: name.to_string(),
        ty,
        dims: dims.to_vec(),
        data,
    }
}

/// Builds a GGUF image; tensors are packed in order at `alignment`.
fn build(version: u32, kvs: &[(&str, Value)], tensors: &[TestTensor], alignment: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(version.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        put_str(&mut out, k);
        out.extend(v.type_id().to_le_bytes());
        put_value(&mut out, v);
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ty.id().to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset = (offset + t.data.len() as u64).div_ceil(alignment) * alignment;
    }
    while out.len() as u64 % alignment != 0 {
        out.push(0);
    }
    for t in tensors {
        out.extend(&t.data);
        while out.len() as u64 % alignment != 0 {
            out.push(0);
        }
    }
    out
}

fn sample_kvs() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("tiny test".into())),
        ("llama.block_count", Value::U32(2)),
        ("llama.small", Value::U8(200)),
        ("llama.neg", Value::I8(-3)),
        ("llama.u16", Value::U16(65535)),
        ("llama.i16", Value::I16(-300)),
        ("llama.i32", Value::I32(-7)),
        ("llama.big", Value::U64(1 << 40)),
        ("llama.i64", Value::I64(5)),
        ("llama.eps", Value::F32(1e-5)),
        ("llama.f64_exact", Value::F64(0.5)),
        ("llama.f64_inexact", Value::F64(0.1)),
        ("llama.flag", Value::Bool(true)),
        (
            "tokenizer.ggml.tokens",
            Value::Array(vec![
                Value::String("a".into()),
                Value::String("bé".into()),
                Value::String("".into()),
            ]),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array(vec![Value::F32(0.0), Value::F32(-1.5), Value::F32(2.0)]),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1), Value::I32(3), Value::I32(6)]),
        ),
        (
            "tokenizer.nested",
            Value::Array(vec![
                Value::Array(vec![Value::U16(1), Value::U16(2)]),
                Value::Array(vec![Value::U16(3)]),
            ]),
        ),
        ("tokenizer.empty", Value::Array(vec![])),
    ]
}

fn sample_tensors() -> Vec<TestTensor> {
    vec![
        tt("token_embd.weight", GgmlType::Q8_0, &[64, 3]),
        tt("blk.0.ffn_down.weight", GgmlType::Q4_1, &[32, 2, 1]),
        tt("output_norm.weight", GgmlType::F32, &[5]),
        tt("blk.0.attn_q.weight", GgmlType::F16, &[3, 1, 2, 1]),
    ]
}

fn sample() -> Vec<u8> {
    build(3, &sample_kvs(), &sample_tensors(), 32)
}

fn err(bytes: Vec<u8>) -> GgufError {
    match Gguf::from_bytes(bytes) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn gguf_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Gguf>();
    check::<GgufError>();
}

#[test]
fn parses_what_was_written() {
    let g = Gguf::from_bytes(sample()).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    let kvs = sample_kvs();
    assert_eq!(g.metadata().len(), kvs.len());
    for ((k, v), (gk, gv)) in kvs.iter().zip(g.metadata()) {
        assert_eq!(k, gk);
        assert_eq!(v, gv);
    }
    let ts = sample_tensors();
    assert_eq!(g.tensors().len(), ts.len());
    for t in &ts {
        let got = g.tensor(&t.name).unwrap();
        assert_eq!(got.name, t.name);
        assert_eq!(got.ggml_type, t.ty);
        assert_eq!(got.dims, &t.dims[..]);
        assert_eq!(got.data, &t.data[..]);
    }
    assert_eq!(g.data_start() % 32, 0);
    let t = g.tensor("token_embd.weight").unwrap();
    assert_eq!((t.row_len(), t.n_rows(), t.n_elements()), (64, 3, 192));
}

#[test]
fn typed_getters() {
    let g = Gguf::from_bytes(sample()).unwrap();
    assert_eq!(g.get_u32("llama.block_count").unwrap(), 2);
    assert_eq!(g.get_u32("llama.small").unwrap(), 200);
    assert_eq!(g.get_u32("llama.u16").unwrap(), 65535);
    assert_eq!(g.get_u32("llama.i64").unwrap(), 5);
    assert_eq!(g.get_u64("llama.big").unwrap(), 1 << 40);
    assert_eq!(g.get_i32("llama.neg").unwrap(), -3);
    assert_eq!(g.get_i32("llama.i16").unwrap(), -300);
    assert_eq!(g.get_f32("llama.eps").unwrap().to_bits(), 1e-5f32.to_bits());
    assert_eq!(
        g.get_f32("llama.f64_exact").unwrap().to_bits(),
        0.5f32.to_bits()
    );
    assert!(g.get_bool("llama.flag").unwrap());
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(
        g.get_str_array("tokenizer.ggml.tokens").unwrap(),
        vec!["a", "bé", ""]
    );
    assert_eq!(
        g.get_i32_array("tokenizer.ggml.token_type").unwrap(),
        vec![1, 3, 6]
    );
    assert_eq!(
        g.get_u32_array("tokenizer.ggml.token_type").unwrap(),
        vec![1, 3, 6]
    );
    let scores = g.get_f32_array("tokenizer.ggml.scores").unwrap();
    assert_eq!(
        scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        [0.0f32, -1.5, 2.0].map(f32::to_bits)
    );
    assert!(g.get_array("tokenizer.empty").unwrap().is_empty());
    assert!(g.get_str_array("tokenizer.empty").unwrap().is_empty());

    assert!(matches!(g.get_u32("nope"), Err(GgufError::MissingKey(k)) if k == "nope"));
    assert!(matches!(
        g.get_u32("llama.big"),
        Err(GgufError::OutOfRange { key, expected: "u32", .. }) if key == "llama.big"
    ));
    assert!(matches!(
        g.get_u32("llama.neg"),
        Err(GgufError::OutOfRange {
            expected: "u32",
            ..
        })
    ));
    assert!(matches!(
        g.get_u32("general.name"),
        Err(GgufError::WrongType { key, expected: "u32", found: "string" }) if key == "general.name"
    ));
    assert!(matches!(
        g.get_u32("llama.flag"),
        Err(GgufError::WrongType { found: "bool", .. })
    ));
    assert!(matches!(
        g.get_f32("llama.f64_inexact"),
        Err(GgufError::OutOfRange {
            expected: "f32",
            ..
        })
    ));
    assert!(matches!(
        g.get_f32("llama.i32"),
        Err(GgufError::WrongType { found: "i32", .. })
    ));
    assert!(matches!(
        g.get_str("llama.eps"),
        Err(GgufError::WrongType {
            expected: "string",
            found: "f32",
            ..
        })
    ));
    assert!(matches!(
        g.get_str_array("tokenizer.ggml.scores"),
        Err(GgufError::WrongType {
            expected: "array of string",
            found: "array of f32",
            ..
        })
    ));
    assert!(matches!(
        g.get_i32_array("tokenizer.ggml.tokens"),
        Err(GgufError::WrongType {
            expected: "array of i32",
            found: "array of string",
            ..
        })
    ));
    assert!(matches!(
        g.get_u32_array("tokenizer.ggml.scores"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        g.get_str_array("llama.flag"),
        Err(GgufError::WrongType {
            expected: "array",
            found: "bool",
            ..
        })
    ));
    assert!(
        matches!(g.tensor("nope.weight"), Err(GgufError::MissingTensor(n)) if n == "nope.weight")
    );
}

#[test]
fn version_2_and_custom_alignment() {
    let mut kvs = sample_kvs();
    kvs.push(("general.alignment", Value::U32(64)));
    let bytes = build(2, &kvs, &sample_tensors(), 64);
    let g = Gguf::from_bytes(bytes).unwrap();
    assert_eq!(g.version(), 2);
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.data_start() % 64, 0);
    for t in sample_tensors() {
        assert_eq!(g.tensor(&t.name).unwrap().data, &t.data[..]);
    }
}

#[test]
fn empty_file_without_tensors() {
    let g = Gguf::from_bytes(build(3, &[], &[], 32)).unwrap();
    assert!(g.metadata().is_empty() && g.tensors().is_empty());
    // 24-byte header, no padding written: data section past the end is fine
    // when there is no tensor.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend([0u8; 16]);
    assert!(Gguf::from_bytes(bytes).is_ok());
}

#[test]
fn every_truncation_is_an_error() {
    let full = sample();
    assert!(Gguf::from_bytes(full.clone()).is_ok());
    // The last tensor's padding is not part of its data: dropping it is
    // legal. Cut at every length up to the end of the last tensor's data.
    let g = Gguf::from_bytes(full.clone()).unwrap();
    let last = g
        .tensors()
        .iter()
        .map(|t| g.data_start() + t.offset + t.n_bytes())
        .max()
        .unwrap();
    for len in 0..last as usize {
        match Gguf::from_bytes(full[..len].to_vec()) {
            Err(GgufError::Truncated { offset, .. }) => assert!(offset <= len as u64),
            Err(GgufError::TensorOutOfBounds { file_len, .. }) => {
                assert_eq!(file_len, len as u64)
            }
            Err(e) => panic!("length {len}: unexpected error {e}"),
            Ok(_) => panic!("length {len}: truncated file accepted"),
        }
    }
    assert!(Gguf::from_bytes(full[..last as usize].to_vec()).is_ok());
}

#[test]
fn bad_magic_and_version() {
    let mut b = sample();
    b[0] = b'X';
    assert!(matches!(err(b), GgufError::BadMagic { found } if &found == b"XGUF"));
    for v in [0u32, 1, 4, 0x0300_0000] {
        let mut b = sample();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        assert!(matches!(err(b), GgufError::UnsupportedVersion(x) if x == v));
    }
}

#[test]
fn huge_counts() {
    let mut b = sample();
    b[8..16].copy_from_slice(&(MAX_TENSORS + 1).to_le_bytes());
    assert!(matches!(
        err(b),
        GgufError::TooLarge { what: "tensor count", value, max: MAX_TENSORS } if value == MAX_TENSORS + 1
    ));
    let mut b = sample();
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        err(b),
        GgufError::TooLarge {
            what: "metadata key/value count",
            ..
        }
    ));
    // Within the cap but more than the file holds: Truncated, quickly.
    let mut b = sample();
    b.truncate(24);
    b[8..16].copy_from_slice(&MAX_TENSORS.to_le_bytes());
    b[16..24].copy_from_slice(&0u64.to_le_bytes());
    assert!(matches!(
        err(b.clone()),
        GgufError::Truncated {
            what: "tensor info",
            offset: 24
        }
    ));
    b[8..16].copy_from_slice(&0u64.to_le_bytes());
    b[16..24].copy_from_slice(&MAX_KV.to_le_bytes());
    assert!(matches!(
        err(b),
        GgufError::Truncated {
            what: "metadata key",
            offset: 24
        }
    ));
}

#[test]
fn huge_string_length() {
    let mut b = sample();
    // The first key's length field follows the header.
    let at = 24;
    b[at..at + 8].copy_from_slice(&(MAX_STRING_LEN + 1).to_le_bytes());
    assert!(matches!(
        err(b.clone()),
        GgufError::TooLarge {
            what: "string length",
            max: MAX_STRING_LEN,
            ..
        }
    ));
    b[at..at + 8].copy_from_slice(&MAX_STRING_LEN.to_le_bytes());
    assert!(
        matches!(err(b), GgufError::Truncated { what: "metadata key", offset } if offset == 32)
    );
}

fn one_kv(key: &str, ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    put_str(&mut b, key);
    b.extend(ty.to_le_bytes());
    b.extend(payload);
    b
}

fn array_payload(elem_ty: u32, n: u64, rest: &[u8]) -> Vec<u8> {
    let mut p = elem_ty.to_le_bytes().to_vec();
    p.extend(n.to_le_bytes());
    p.extend(rest);
    p
}

#[test]
fn bad_metadata_values() {
    let kv_type_at = 24 + 8 + 1;
    assert!(matches!(
        err(one_kv("k", 13, &[0; 8])),
        GgufError::InvalidValueType { type_id: 13, offset } if offset == kv_type_at
    ));
    assert!(matches!(
        err(one_kv("k", 9, &array_payload(99, 1, &[0; 8]))),
        GgufError::InvalidValueType { type_id: 99, .. }
    ));
    assert!(matches!(
        err(one_kv("k", 7, &[2])),
        GgufError::InvalidBool { value: 2, .. }
    ));
    let mut s = 2u64.to_le_bytes().to_vec();
    s.extend([0xff, 0xfe]);
    assert!(matches!(
        err(one_kv("k", 8, &s)),
        GgufError::InvalidUtf8 {
            what: "metadata string",
            ..
        }
    ));
    let mut bad_key = b"GGUF".to_vec();
    bad_key.extend(3u32.to_le_bytes());
    bad_key.extend(0u64.to_le_bytes());
    bad_key.extend(1u64.to_le_bytes());
    bad_key.extend(1u64.to_le_bytes());
    bad_key.push(0x80);
    assert!(matches!(
        err(bad_key),
        GgufError::InvalidUtf8 {
            what: "metadata key",
            offset: 32
        }
    ));
    // Array of array of array.
    let inner = array_payload(0, 0, &[]);
    let mid = array_payload(9, 1, &inner);
    let outer = array_payload(9, 1, &mid);
    assert!(matches!(
        err(one_kv("k", 9, &outer)),
        GgufError::NestingTooDeep { max: 2, .. }
    ));
    // Two levels are fine.
    assert!(Gguf::from_bytes(one_kv("k", 9, &mid)).is_ok());
    assert!(matches!(
        err(one_kv("k", 9, &array_payload(0, MAX_ARRAY_LEN + 1, &[]))),
        GgufError::TooLarge {
            what: "array length",
            ..
        }
    ));
    // A long array the file cannot hold fails as truncated without
    // reserving 16M elements up front.
    assert!(matches!(
        err(one_kv("k", 9, &array_payload(8, MAX_ARRAY_LEN, &[]))),
        GgufError::Truncated { .. }
    ));
    // Many small arrays adding up past the total cap.
    // (Counted as declared: 3 outer + MAX - 2 inner.)
    let big = array_payload(9, 3, &array_payload(0, MAX_ARRAY_LEN - 2, &[]));
    assert!(matches!(
        err(one_kv("k", 9, &big)),
        GgufError::TooLarge {
            what: "total number of metadata array elements",
            ..
        }
    ));
}

#[test]
fn duplicates() {
    let kvs = vec![("a", Value::U8(1)), ("a", Value::U8(2))];
    assert!(matches!(err(build(3, &kvs, &[], 32)), GgufError::DuplicateKey(k) if k == "a"));
    let ts = vec![tt("w", GgmlType::F32, &[4]), tt("w", GgmlType::F32, &[4])];
    assert!(matches!(err(build(3, &[], &ts, 32)), GgufError::DuplicateTensor(n) if n == "w"));
}

#[test]
fn bad_alignment() {
    for a in [0u32, 3, 48, 1 << 21] {
        let kvs = vec![("general.alignment", Value::U32(a))];
        assert!(
            matches!(err(build(3, &kvs, &[], 32)), GgufError::BadAlignment(x) if x == u64::from(a))
        );
    }
    let kvs = vec![("general.alignment", Value::I32(-32))];
    assert!(matches!(
        err(build(3, &kvs, &[], 32)),
        GgufError::BadAlignment(_)
    ));
    let kvs = vec![("general.alignment", Value::String("32".into()))];
    assert!(matches!(
        err(build(3, &kvs, &[], 32)),
        GgufError::WrongType {
            found: "string",
            ..
        }
    ));
    // Any integer type holding a valid value is accepted.
    let kvs = vec![("general.alignment", Value::U64(16))];
    let ts = vec![tt("w", GgmlType::F32, &[4])];
    assert_eq!(
        Gguf::from_bytes(build(3, &kvs, &ts, 16))
            .unwrap()
            .alignment(),
        16
    );
}

/// One-tensor image whose tensor info is given raw.
fn raw_tensor(name: &str, dims: &[u64], ty: u32, offset: u64, data_len: usize) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    put_str(&mut b, name);
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(d.to_le_bytes());
    }
    b.extend(ty.to_le_bytes());
    b.extend(offset.to_le_bytes());
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(vec![0u8; data_len]);
    b
}

#[test]
fn bad_tensor_infos() {
    assert!(Gguf::from_bytes(raw_tensor("w", &[8, 2], 0, 0, 64)).is_ok());
    assert!(matches!(
        err(raw_tensor("w", &[], 0, 0, 64)),
        GgufError::BadDimCount { n_dims: 0, .. }
    ));
    assert!(matches!(
        err(raw_tensor("w", &[1, 1, 1, 1, 1], 0, 0, 64)),
        GgufError::BadDimCount { n_dims: 5, .. }
    ));
    assert!(matches!(
        err(raw_tensor("w", &[8, 0], 0, 0, 64)),
        GgufError::BadDim {
            index: 1,
            value: 0,
            ..
        }
    ));
    assert!(matches!(
        err(raw_tensor("w", &[1 << 63], 0, 0, 64)),
        GgufError::BadDim { index: 0, .. }
    ));
    assert!(matches!(
        err(raw_tensor("w", &[1 << 32, 1 << 32], 0, 0, 64)),
        GgufError::ElementCountOverflow { .. }
    ));
    for bad in [4u32, 5, 31, 40, u32::MAX] {
        assert!(matches!(
            err(raw_tensor("w", &[8, 2], bad, 0, 64)),
            GgufError::UnknownTensorType { tensor, type_id } if tensor == "w" && type_id == bad
        ));
    }
    assert!(matches!(
        err(raw_tensor("w", &[16, 2], GgmlType::Q4_1.id(), 0, 64)),
        GgufError::NotBlockAligned {
            block_size: 32,
            dim0: 16,
            ..
        }
    ));
    assert!(matches!(
        err(raw_tensor("w", &[8, 2], 0, 8, 64)),
        GgufError::MisalignedTensor {
            offset: 8,
            alignment: 32,
            ..
        }
    ));
    assert!(matches!(
        err(raw_tensor("w", &[8, 2], 0, 32, 64)),
        GgufError::TensorOutOfBounds { start, end, .. } if end == start + 64
    ));
    assert!(matches!(
        err(raw_tensor("w", &[8, 2], 0, u64::MAX - 31, 64)),
        GgufError::TensorOutOfBounds { .. }
    ));
    // Byte size overflow of a huge (but element-count-valid) tensor.
    assert!(matches!(
        err(raw_tensor("w", &[1 << 62], 0, 0, 64)),
        GgufError::TensorOutOfBounds { .. }
    ));
    // Dims that are fine but data past the end.
    assert!(matches!(
        err(raw_tensor("w", &[8, 2], 0, 0, 63)),
        GgufError::TensorOutOfBounds { file_len, .. } if file_len % 32 == 31
    ));
    assert!(matches!(
        err(raw_tensor("w", &[8, 2], 0, 0, 0)),
        GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. }
    ));
}

/// The documented fingerprint layout, written out independently.
fn expected_fingerprint(
    tensors: &[TestTensor],
    tokenizer_kvs_sorted: &[(&str, Value)],
) -> [u8; 32] {
    fn val(out: &mut Vec<u8>, v: &Value) {
        out.extend(v.type_id().to_le_bytes());
        match v {
            Value::Array(a) => {
                out.extend((a.len() as u64).to_le_bytes());
                for e in a {
                    val(out, e);
                }
            }
            other => put_value(out, other),
        }
    }
    let mut s = b"llmc-gguf-fingerprint-v1\n".to_vec();
    s.extend((tensors.len() as u64).to_le_bytes());
    for t in tensors {
        put_str(&mut s, &t.name);
        s.extend(t.ty.id().to_le_bytes());
        s.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            s.extend(d.to_le_bytes());
        }
        s.extend((t.data.len() as u64).to_le_bytes());
        s.extend(&t.data);
    }
    s.extend((tokenizer_kvs_sorted.len() as u64).to_le_bytes());
    for (k, v) in tokenizer_kvs_sorted {
        put_str(&mut s, k);
        val(&mut s, v);
    }
    Sha256::digest(&s).into()
}

#[test]
fn fingerprint_layout() {
    let g = Gguf::from_bytes(sample()).unwrap();
    let mut tok: Vec<(&str, Value)> = sample_kvs()
        .into_iter()
        .filter(|(k, _)| fingerprint_covers(k))
        .collect();
    tok.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(tok.len(), 17);
    assert_eq!(
        g.fingerprint(),
        expected_fingerprint(&sample_tensors(), &tok)
    );
    assert_eq!(g.fingerprint(), g.fingerprint());
}

#[test]
fn fingerprint_sensitivity() {
    let base = Gguf::from_bytes(sample()).unwrap().fingerprint();
    // Layout and non-tokenizer metadata do not matter.
    let mut kvs = sample_kvs();
    kvs.reverse();
    kvs.retain(|(k, _)| *k != "general.name");
    kvs.push(("general.alignment", Value::U32(128)));
    let g = Gguf::from_bytes(build(3, &kvs, &sample_tensors(), 128)).unwrap();
    assert_eq!(g.fingerprint(), base);
    // Tensor bytes, tensor order, and tokenizer values do.
    let mut ts = sample_tensors();
    ts[2].data[3] ^= 1;
    assert_ne!(
        Gguf::from_bytes(build(3, &sample_kvs(), &ts, 32))
            .unwrap()
            .fingerprint(),
        base
    );
    let mut ts = sample_tensors();
    ts.swap(0, 1);
    assert_ne!(
        Gguf::from_bytes(build(3, &sample_kvs(), &ts, 32))
            .unwrap()
            .fingerprint(),
        base
    );
    let mut kvs = sample_kvs();
    kvs[16].1 = Value::Array(vec![Value::I32(1), Value::I32(3), Value::I32(5)]);
    assert_ne!(
        Gguf::from_bytes(build(3, &kvs, &sample_tensors(), 32))
            .unwrap()
            .fingerprint(),
        base
    );
    // Hyperparameters change the probabilities, so they count too.
    let mut kvs = sample_kvs();
    let eps = kvs.iter().position(|(k, _)| *k == "llama.eps").unwrap();
    kvs[eps].1 = Value::F32(1e-6);
    assert_ne!(
        Gguf::from_bytes(build(3, &kvs, &sample_tensors(), 32))
            .unwrap()
            .fingerprint(),
        base
    );
}

/// Touches everything a user of a successfully parsed file could touch.
fn exercise(g: &Gguf) {
    for (k, _) in g.metadata() {
        let _ = g.get_u32(k);
        let _ = g.get_f32(k);
        let _ = g.get_str_array(k);
        let _ = g.get_i32_array(k);
    }
    for t in g.tensors() {
        let x = g.tensor(&t.name).unwrap();
        assert_eq!(x.data.len() as u64, t.n_bytes());
    }
    let _ = g.fingerprint();
}

#[test]
fn random_mutations_never_panic() {
    let base = sample();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..1 + rng.index(4) {
            let at = rng.index(b.len());
            match rng.index(4) {
                0 => b[at] = rng.next_u64() as u8,
                1 => b[at] ^= 1 << rng.index(8),
                // Interesting integers into a (possibly) length field.
                2 => {
                    let v: u64 =
                        [0, 1, 2, 0xff, 0xffff_ffff, u64::MAX, 1 << 24, 1 << 32][rng.index(8)];
                    let end = (at + 8).min(b.len());
                    b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                }
                _ => b.truncate(at),
            }
            if b.is_empty() {
                break;
            }
        }
        if let Ok(g) = Gguf::from_bytes(b) {
            accepted += 1;
            exercise(&g);
        }
    }
    // Most mutations of data bytes are harmless: the loop must have seen
    // both outcomes to mean anything.
    assert!(accepted > 1000, "accepted {accepted}");
}
