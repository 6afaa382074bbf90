//! Forward-pass speed of the model (not a test: run by hand, in release).
//!
//! ```text
//! cargo run --release --example engine_bench -- [threads] [prefill_tokens] [decode_batch] [decode_steps]
//! ```
//!
//! Reports load time, prefill tokens/s (one sequence in one pass), batched
//! decode tokens/s (`decode_batch` sequences, one token each per step, after
//! a 64-token prefix) and the matmul multiply-adds per second achieved.
//! `LLMC_KERNEL` picks the kernel variant; `LLMC_TEST_MODEL` the model file.

use llmc::gguf::Gguf;
use llmc::model::{Model, ModelOptions};
use std::time::Instant;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map_or(default, |s| s.parse().expect("numeric argument"))
}

fn main() {
    let threads = arg(1, 1);
    let prefill = arg(2, 256);
    let batch = arg(3, 8);
    let steps = arg(4, 8);
    let path = llmc::registry::model_for_tests().expect("model");
    let t0 = Instant::now();
    let g = Gguf::open(&path).expect("open");
    let m = Model::load(
        &g,
        &ModelOptions {
            threads,
            variant: None,
        },
    )
    .expect("load");
    let cfg = m.config().clone();
    let v = cfg.vocab;
    println!(
        "model loaded in {:.2}s: variant {}, {} threads",
        t0.elapsed().as_secs_f64(),
        m.kernels().variant(),
        m.threads()
    );
    // Deterministic token ids spread over the vocabulary.
    // Enough for the prefill, and for decoding: step s of sequence b feeds
    // token b + s.
    let n_toks = prefill.max(batch + steps) + 64;
    let toks: Vec<u32> = (0..n_toks as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 8) % v as u32)
        .collect();
    let macs = cfg.matmul_macs_per_token() as f64;

    let mut logits = vec![0f32; prefill * v];
    let mut cache = m.new_cache();
    let t = Instant::now();
    m.forward(&mut [&mut cache], &[&toks[..prefill]], &mut logits)
        .expect("forward");
    let dt = t.elapsed().as_secs_f64();
    println!(
        "prefill {prefill} tokens: {:.2}s, {:.1} tokens/s, {:.1} G matmul MAC/s",
        dt,
        prefill as f64 / dt,
        prefill as f64 * macs / dt / 1e9
    );

    if batch > 0 && steps > 0 {
        let mut caches: Vec<_> = (0..batch).map(|_| m.new_cache()).collect();
        let prefix: Vec<&[u32]> = (0..batch).map(|_| &toks[..64]).collect();
        let mut l = vec![0f32; batch * 64 * v];
        let mut refs: Vec<_> = caches.iter_mut().collect();
        m.forward(&mut refs, &prefix, &mut l).expect("prefix");
        let mut l = vec![0f32; batch * v];
        let t = Instant::now();
        for s in 0..steps {
            let step: Vec<&[u32]> = (0..batch).map(|b| &toks[b + s..b + s + 1]).collect();
            m.forward(&mut refs, &step, &mut l).expect("decode");
        }
        let dt = t.elapsed().as_secs_f64();
        let n = (batch * steps) as f64;
        println!(
            "decode {batch} sequences x {steps} steps: {:.1} tokens/s, {:.1} G matmul MAC/s",
            n / dt,
            n * macs / dt / 1e9
        );
    }
}
