//! The GGUF reader on the real default model, intact and damaged.

use llmc::gguf::{f16_to_f32, GgmlType, Gguf, GgufError, Value};
use std::path::PathBuf;
use std::sync::OnceLock;

fn model_path() -> PathBuf {
    llmc::registry::model_for_tests().expect("locate the test model")
}

/// The real file's bytes, read once for all tests in this binary.
fn model_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(model_path()).expect("read the test model"))
}

fn parse(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
    Gguf::from_bytes(bytes)
}

#[test]
fn real_model_structure() {
    let g = Gguf::open(&model_path()).unwrap();
    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 32);
    assert_eq!(g.file_len(), 98_362_432);
    assert_eq!(g.tensors().len(), 272);

    let e = g.tensor("token_embd.weight").unwrap();
    assert_eq!(e.ggml_type, GgmlType::Q8_0);
    assert_eq!(e.dims, &[576, 49152]);
    assert_eq!(e.data.len(), 576 * 49152 / 32 * 34);
    // First block's scale (f16) is a sane number.
    let d = f16_to_f32(u16::from_le_bytes([e.data[0], e.data[1]]));
    assert!(d.is_finite() && d > 0.0 && d < 1.0, "{d}");

    for i in 0..30 {
        let t = g.tensor(&format!("blk.{i}.ffn_down.weight")).unwrap();
        assert_eq!(t.ggml_type, GgmlType::Q4_1);
        assert_eq!(t.dims, &[1536, 576]);
        assert_eq!(t.data.len(), 1536 * 576 / 32 * 20);
        for (name, dims) in [
            ("ffn_gate", [576, 1536]),
            ("ffn_up", [576, 1536]),
            ("attn_q", [576, 576]),
            ("attn_k", [576, 192]),
            ("attn_v", [576, 192]),
            ("attn_output", [576, 576]),
        ] {
            let t = g.tensor(&format!("blk.{i}.{name}.weight")).unwrap();
            assert_eq!((t.ggml_type, t.dims), (GgmlType::Q4_1, &dims[..]), "{name}");
        }
        for name in ["attn_norm", "ffn_norm"] {
            let t = g.tensor(&format!("blk.{i}.{name}.weight")).unwrap();
            assert_eq!((t.ggml_type, t.dims), (GgmlType::F32, &[576u64][..]));
        }
    }
    let n = g.tensor("output_norm.weight").unwrap();
    assert_eq!((n.ggml_type, n.dims), (GgmlType::F32, &[576u64][..]));
    // Tied embedding: no separate output matrix.
    assert!(matches!(
        g.tensor("output.weight"),
        Err(GgufError::MissingTensor(name)) if name == "output.weight"
    ));

    // Tensor data are packed in file order without overlap.
    let mut end = 0;
    for t in g.tensors() {
        assert!(t.offset >= end, "{}", t.name);
        assert_eq!(t.offset % 32, 0);
        end = t.offset + t.n_bytes();
    }
    assert!(g.data_start() + end <= g.file_len());

    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    for (k, v) in [
        ("llama.block_count", 30),
        ("llama.context_length", 8192),
        ("llama.embedding_length", 576),
        ("llama.feed_forward_length", 1536),
        ("llama.attention.head_count", 9),
        ("llama.attention.head_count_kv", 3),
        ("llama.vocab_size", 49152),
        ("llama.rope.dimension_count", 64),
        ("tokenizer.ggml.bos_token_id", 1),
        ("tokenizer.ggml.eos_token_id", 2),
    ] {
        assert_eq!(g.get_u32(k).unwrap(), v, "{k}");
    }
    assert_eq!(
        g.get_f32("llama.rope.freq_base").unwrap().to_bits(),
        100000.0f32.to_bits()
    );
    assert_eq!(
        g.get_f32("llama.attention.layer_norm_rms_epsilon")
            .unwrap()
            .to_bits(),
        1e-5f32.to_bits()
    );
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[0], "<|endoftext|>");
    let merges = g.get_str_array("tokenizer.ggml.merges").unwrap();
    assert_eq!((merges.len(), merges[0]), (48900, "Ġ t"));
    assert_eq!(
        g.get_i32_array("tokenizer.ggml.token_type").unwrap().len(),
        49152
    );
    assert!(matches!(
        g.get("tokenizer.ggml.add_bos_token"),
        Some(Value::Bool(false))
    ));
}

#[test]
fn real_model_fingerprint() {
    let g = Gguf::open(&model_path()).unwrap();
    let t = std::time::Instant::now();
    let f = g.fingerprint();
    eprintln!(
        "fingerprint {} in {:?}",
        f.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        t.elapsed()
    );
    assert_eq!(g.fingerprint(), f);
    assert_eq!(parse(model_bytes().to_vec()).unwrap().fingerprint(), f);

    // One flipped bit in the last tensor's data changes it.
    let mut b = model_bytes().to_vec();
    let last = g.tensors().last().unwrap();
    let at = (g.data_start() + last.offset + last.n_bytes() - 1) as usize;
    b[at] ^= 1;
    assert_ne!(parse(b).unwrap().fingerprint(), f);

    // Renaming the model (non-tokenizer metadata) does not.
    let mut b = model_bytes().to_vec();
    let pos = find(&b, b"Smollm2 135M 8k").unwrap();
    b[pos] = b'X';
    let renamed = parse(b).unwrap();
    assert!(renamed
        .get_str("general.name")
        .unwrap()
        .starts_with("Xmollm2"));
    assert_eq!(renamed.fingerprint(), f);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// File offset of the first tensor info (its name's length field).
fn first_tensor_info() -> usize {
    let b = model_bytes();
    let mut name = 17u64.to_le_bytes().to_vec();
    name.extend(b"token_embd.weight");
    find(b, &name).unwrap()
}

#[test]
fn real_model_truncated() {
    let b = model_bytes();
    let g = parse(b.to_vec()).unwrap();
    let info = first_tensor_info();
    let tokens = find(b, b"tokenizer.ggml.tokens").unwrap();
    let cases: &[(usize, &str)] = &[
        (0, "header"),
        (3, "header"),
        (23, "header"),
        (24, "metadata key"),
        (tokens + 1000, "metadata string"),
        (info + 5, "tensor info"),
        (g.data_start() as usize - 1, "tensor info"),
        (g.data_start() as usize, "data"),
        (g.data_start() as usize + 1_000_000, "data"),
        (b.len() - 1, "data"),
    ];
    for &(len, want) in cases {
        match (parse(b[..len].to_vec()), want) {
            (Err(GgufError::Truncated { what, offset }), _) if what == want => {
                assert!(offset <= len as u64)
            }
            (Err(GgufError::TensorOutOfBounds { file_len, .. }), "data") => {
                assert_eq!(file_len, len as u64)
            }
            (r, _) => panic!("length {len}: want {want}, got {:?}", r.map(|_| ())),
        }
    }
}

#[test]
fn real_model_corrupted() {
    let b = model_bytes();
    let patched = |at: usize, bytes: &[u8]| {
        let mut c = b.to_vec();
        c[at..at + bytes.len()].copy_from_slice(bytes);
        parse(c).map(|_| ())
    };
    assert!(matches!(
        patched(0, b"GGML"),
        Err(GgufError::BadMagic { found }) if &found == b"GGML"
    ));
    assert!(matches!(
        patched(4, &4u32.to_le_bytes()),
        Err(GgufError::UnsupportedVersion(4))
    ));
    assert!(matches!(
        patched(8, &(1u64 << 40).to_le_bytes()),
        Err(GgufError::TooLarge { what: "tensor count", value, .. }) if value == 1 << 40
    ));
    assert!(matches!(
        patched(16, &u64::MAX.to_le_bytes()),
        Err(GgufError::TooLarge {
            what: "metadata key/value count",
            ..
        })
    ));
    assert!(matches!(
        patched(24, &(1u64 << 60).to_le_bytes()),
        Err(GgufError::TooLarge {
            what: "string length",
            ..
        })
    ));
    // First value's type id ("general.architecture" is 20 bytes).
    assert!(matches!(
        patched(24 + 8 + 20, &99u32.to_le_bytes()),
        Err(GgufError::InvalidValueType {
            type_id: 99,
            offset: 52
        })
    ));
    // The token array's length.
    let tokens = find(b, b"tokenizer.ggml.tokens").unwrap();
    let len_at = tokens + 21 + 4 + 4;
    assert_eq!(&b[len_at..len_at + 8], &49152u64.to_le_bytes());
    assert!(matches!(
        patched(len_at, &(1u64 << 33).to_le_bytes()),
        Err(GgufError::TooLarge {
            what: "array length",
            ..
        })
    ));
    // First tensor info: name, n_dims, 2 dims, type, offset.
    let info = first_tensor_info();
    let type_at = info + 8 + 17 + 4 + 16;
    assert_eq!(&b[type_at..type_at + 4], &8u32.to_le_bytes());
    assert!(matches!(
        patched(type_at, &77u32.to_le_bytes()),
        Err(GgufError::UnknownTensorType { tensor, type_id: 77 }) if tensor == "token_embd.weight"
    ));
    let past_end = (b.len() as u64).div_ceil(32) * 32;
    assert!(matches!(
        patched(type_at + 4, &past_end.to_le_bytes()),
        Err(GgufError::TensorOutOfBounds { tensor, .. }) if tensor == "token_embd.weight"
    ));
    assert!(matches!(
        patched(type_at + 4, &1u64.to_le_bytes()),
        Err(GgufError::MisalignedTensor { offset: 1, .. })
    ));
    assert!(matches!(
        patched(info + 8 + 17, &7u32.to_le_bytes()),
        Err(GgufError::BadDimCount { n_dims: 7, .. })
    ));
}

/// A zero head count is reported as itself (it used to surface as a
/// `rope.dimension_count` mismatch, since it makes the head dimension 0).
#[test]
fn zero_head_count_is_named() {
    let b = model_bytes();
    let mut key = b"llama.attention.head_count".to_vec();
    key.extend(4u32.to_le_bytes()); // value type u32, right after the key
    let at = find(b, &key).expect("head_count key") + key.len();
    let mut c = b.to_vec();
    c[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
    let g = parse(c).unwrap();
    let opts = llmc::model::ModelOptions {
        threads: 1,
        variant: None,
    };
    let e = llmc::model::Model::load(&g, &opts).unwrap_err().to_string();
    assert!(e.contains("attention.head_count = 0"), "{e}");
    assert!(!e.contains("rope"), "{e}");
}
