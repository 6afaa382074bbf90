//! The real SmolLM2-135M model against an independent reference
//! (shared/reference/logits.json: a float32 numpy forward pass over the
//! dequantized weights). Run in release: `cargo test --release --test model_reference`.

use llmc::gguf::Gguf;
use llmc::model::{Model, ModelOptions};
use std::path::PathBuf;

/// LLMC_TEST_MODEL, else the development copy.
fn model_path() -> PathBuf {
    std::env::var_os("LLMC_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/model/SmolLM2-135M-Instruct.Q4_1.gguf"))
}

/// shared/reference relative to the repository (CI clones main with shared/ beside it).
fn reference_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for cand in [
        here.join("../shared/reference"),
        here.join("../../shared/reference"),
        PathBuf::from("/work/shared/reference"),
    ] {
        if cand.join("logits.json").exists() {
            return cand;
        }
    }
    panic!("shared/reference/logits.json not found");
}

fn load(threads: usize) -> Model {
    let g = Gguf::open(&model_path()).expect("open model (set LLMC_TEST_MODEL)");
    Model::load(
        &g,
        &ModelOptions {
            threads,
            variant: None,
        },
    )
    .expect("load model")
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[test]
fn prompts_match_reference_logits() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(reference_dir().join("logits.json")).unwrap(),
    )
    .unwrap();
    let m = load(2);
    let vocab = m.config().vocab;
    assert_eq!(vocab, 49152);
    for p in reference["prompts"].as_array().unwrap() {
        let ids: Vec<u32> = p["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let mut cache = m.new_cache();
        let mut logits = vec![0f32; ids.len() * vocab];
        m.forward(&mut [&mut cache], &[&ids], &mut logits).unwrap();
        let want_argmax: Vec<usize> = p["argmax_each_position"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let got_argmax: Vec<usize> = logits.chunks_exact(vocab).map(argmax).collect();
        assert_eq!(got_argmax, want_argmax, "prompt {:?}", p["prompt"]);
        let last = &logits[(ids.len() - 1) * vocab..];
        let top10 = p["top10_last"].as_array().unwrap();
        let mut want3: Vec<usize> = top10[..3]
            .iter()
            .map(|e| e[0].as_u64().unwrap() as usize)
            .collect();
        let mut got3 = top_k(last, 3);
        want3.sort();
        got3.sort();
        assert_eq!(got3, want3, "top-3 of prompt {:?}", p["prompt"]);
        let mut worst = 0f64;
        for e in top10 {
            let id = e[0].as_u64().unwrap() as usize;
            let want = e[2].as_f64().unwrap();
            let d = (last[id] as f64 - want).abs();
            worst = worst.max(d);
            assert!(
                d <= 0.6,
                "prompt {:?} token {id}: {} vs {want}",
                p["prompt"],
                last[id]
            );
        }
        eprintln!(
            "prompt {:?}: worst top-10 logit difference {worst:.4}",
            p["prompt"]
        );
    }
}
