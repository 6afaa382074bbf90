//! The real SmolLM2-135M model gives the same logits, bit for bit, with every
//! kernel variant this machine runs (scalar is the specification): for a
//! 40-token prompt in one pass, token by token with the KV cache, and in a
//! batch with a second sequence.
//!
//! Run in release: `cargo test --release --test kernel_variants`.

use llmc::gguf::Gguf;
use llmc::kernels::{Kernels, Variant};
use llmc::model::{Model, ModelOptions};

fn load(g: &Gguf, variant: Variant) -> Model {
    Model::load(
        g,
        &ModelOptions {
            threads: 2,
            variant: Some(variant),
        },
    )
    .expect("load model")
}

/// The first tokens of apache-2.0-first4000.txt (llama.cpp's tokenizer).
/// Under emulation (aarch64 tests run in qemu) a shorter prompt.
fn prompt() -> Vec<u32> {
    let n = if cfg!(target_arch = "x86_64") { 40 } else { 6 };
    include_str!("data/apache-2.0-first4000.ids")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().parse().unwrap())
        .take(n)
        .collect()
}

/// Logits bits of `ids` in one pass, token by token, and (for `ids`) in a
/// batch of two sequences stepped together: `(one_pass, steps, batched)`.
fn run(m: &Model, ids: &[u32]) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let v = m.config().vocab;
    let bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut one = vec![0f32; ids.len() * v];
    m.forward(&mut [&mut m.new_cache()], &[ids], &mut one)
        .unwrap();

    let mut steps = Vec::with_capacity(ids.len() * v);
    let mut cache = m.new_cache();
    let mut l = vec![0f32; v];
    for t in ids {
        m.forward(&mut [&mut cache], &[std::slice::from_ref(t)], &mut l)
            .unwrap();
        steps.extend_from_slice(&l);
    }

    // Two sequences: `ids` token by token beside another sequence that is
    // fed in pieces of 3, so batch rows and positions mix.
    let other: Vec<u32> = ids.iter().rev().cloned().collect();
    let (mut ca, mut cb) = (m.new_cache(), m.new_cache());
    let mut batched = Vec::with_capacity(ids.len() * v);
    for (i, t) in ids.iter().enumerate() {
        let piece: &[u32] = if i * 3 < other.len() {
            &other[i * 3..(i * 3 + 3).min(other.len())]
        } else {
            &[]
        };
        let mut l = vec![0f32; (1 + piece.len()) * v];
        m.forward(
            &mut [&mut ca, &mut cb],
            &[std::slice::from_ref(t), piece],
            &mut l,
        )
        .unwrap();
        batched.extend_from_slice(&l[..v]);
    }
    (bits(&one), bits(&steps), bits(&batched))
}

#[test]
fn real_model_logits_are_identical_for_every_variant() {
    let path = llmc::registry::model_for_tests().expect("locate the test model");
    let g = Gguf::open(&path).expect("open model");
    let ids = prompt();
    let want = {
        let m = load(&g, Variant::Scalar);
        let (one, steps, batched) = run(&m, &ids);
        assert!(
            one == steps && one == batched,
            "scalar is not batch invariant"
        );
        one
    };
    let variants = Kernels::available();
    eprintln!("checking variants {variants:?} on {} tokens", ids.len());
    for v in variants.into_iter().filter(|&v| v != Variant::Scalar) {
        let m = load(&g, v);
        assert_eq!(m.kernels().variant(), v);
        let (one, steps, batched) = run(&m, &ids);
        let first_diff = |got: &[u32]| got.iter().zip(&want).position(|(a, b)| a != b);
        let vocab = m.config().vocab;
        for (what, got) in [
            ("one pass", &one),
            ("token by token", &steps),
            ("batched", &batched),
        ] {
            if let Some(i) = first_diff(got) {
                panic!(
                    "{v}: {what} logits differ from scalar at token {} id {}: {:#010x} vs {:#010x}",
                    i / vocab,
                    i % vocab,
                    got[i],
                    want[i]
                );
            }
        }
    }
}
