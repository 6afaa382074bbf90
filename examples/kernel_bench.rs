//! Single-thread kernel throughput per variant (not a test: run by hand, in
//! release).
//!
//! ```text
//! cargo run --release --example kernel_bench -- [matmul|attention|exp|all] [millis per case]
//! ```
//!
//! matmul: G int8 multiply-adds per second for the SmolLM2-135M shapes
//! (rows x cols = 576x576, 1536x576 (gate/up), 576x1536 (down), 49152x576
//! (output, Q8)) at batch 1, 8, 64 and 256, Q4 weights except the output
//! matrix. attention: one query head over 64 / 512 / 2048 keys (head_dim 64).
//! exp: `exp_sub` over 49152 logits (the coder's per-token softmax).
//! Times are on-CPU time of the benchmark thread (Linux), so other load on
//! the machine inflates them only through shared caches and frequency.

use llmc::kernels::scalar::quant_head;
use llmc::kernels::{
    batch, AttnScratch, BlockKind, BlockMatrix, Kernels, KvView, QuantizedRows, KV_TILE, QK,
};
use std::time::{Duration, Instant};

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn matrix(rng: &mut Rng, kind: BlockKind, rows: usize, cols: usize) -> BlockMatrix {
    let nb = rows * cols / QK;
    let quants = (0..rows * cols)
        .map(|_| match kind {
            BlockKind::Q8 => rng.next() as i8,
            BlockKind::Q4 => (rng.next() % 16) as i8,
        })
        .collect();
    let scales = (0..nb).map(|_| rng.f32() * 0.01).collect();
    let mins = match kind {
        BlockKind::Q8 => Vec::new(),
        BlockKind::Q4 => (0..nb).map(|_| rng.f32() * 0.01).collect(),
    };
    BlockMatrix::new(kind, rows, cols, scales, mins, quants).unwrap()
}

/// On-CPU time of this thread in nanoseconds (Linux: the first field of
/// /proc/thread-self/schedstat), so that other processes sharing the cores
/// do not distort the figures; `None` elsewhere.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `f` repeatedly for about `budget` of CPU time; returns seconds per
/// call (on-CPU time where available, else wall time).
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let t = Instant::now();
    let c0 = cpu_ns();
    let mut n = 0u32;
    let spent = |t: Instant| match (c0, cpu_ns()) {
        (Some(a), Some(b)) => Duration::from_nanos(b - a),
        _ => t.elapsed(),
    };
    // Reading the clock costs microseconds: check it after batches of
    // calls, doubling the batch while one takes under a millisecond.
    let mut batch = 1u32;
    loop {
        let before = spent(t);
        for _ in 0..batch {
            f();
        }
        n += batch;
        let after = spent(t);
        if after >= budget && n >= 2 {
            return after.as_secs_f64() / n as f64;
        }
        if after - before < Duration::from_millis(1) {
            batch *= 2;
        }
    }
}

fn bench_matmul(kernels: &[Kernels], budget: Duration) {
    let mut rng = Rng(1);
    let shapes = [
        (576, 576, BlockKind::Q4),
        (1536, 576, BlockKind::Q4),
        (576, 1536, BlockKind::Q4),
        (49152, 576, BlockKind::Q8),
    ];
    println!("matmul, 1 thread, G int8 MAC/s");
    print!("{:<22}", "rows x cols  batch");
    for k in kernels {
        print!("{:>10}", k.variant().name());
    }
    println!();
    for (rows, cols, kind) in shapes {
        let m = matrix(&mut rng, kind, rows, cols);
        let packed: Vec<_> = kernels.iter().map(|k| k.pack_matrix(m.clone())).collect();
        for n in [1usize, 8, 64, 256] {
            let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
            let mut qx = QuantizedRows::new();
            qx.quantize(&x, cols);
            let mut out = vec![0f32; n * rows];
            print!("{:<22}", format!("{rows}x{cols} {kind:?}  {n}"));
            for (k, w) in kernels.iter().zip(&packed) {
                // The scalar variant on the big shapes takes long: a
                // shorter budget is still many calls.
                let s = time(budget, || {
                    let mut parts: Vec<&mut [f32]> = out.chunks_mut(rows).collect();
                    k.matmul(w, &qx, 0..rows, &mut parts);
                });
                print!("{:>10.1}", (rows * cols * n) as f64 / s / 1e9);
            }
            println!();
        }
    }
}

fn bench_attention(kernels: &[Kernels], budget: Duration) {
    let mut rng = Rng(2);
    // One KV head per view, as the model's cache presents it.
    let (n_kv, hd) = (1, 64);
    println!(
        "attention over an int8 KV cache (head_dim 64), 1 thread, microseconds per query: \
         one query alone, and 3 query heads of one KV head together (batch::attention_batch)"
    );
    print!("{:<22}", "keys");
    for k in kernels {
        print!("{:>10}{:>10}", k.variant().name(), "x3");
    }
    println!();
    for n_keys in [64usize, 512, 2048] {
        // Rows quantized as the model caches them.
        let l = KvView::layout(n_kv, hd);
        let tiles = n_keys.div_ceil(KV_TILE);
        let mut kc = vec![0i8; tiles * n_kv * l.k_tile_bytes()];
        let mut dk = vec![0f32; tiles * KV_TILE * n_kv];
        let mut vc = vec![0i8; n_keys * n_kv * hd];
        let mut dv = vec![0f32; n_keys * n_kv];
        let mut row = vec![0i8; hd];
        for t in 0..n_keys {
            for g in 0..n_kv {
                let x: Vec<f32> = (0..hd).map(|_| rng.f32()).collect();
                dk[l.dk_index(t, g)] = quant_head(&x, &mut row);
                for (d, &b) in row.iter().enumerate() {
                    kc[l.k_index(t, g, d)] = b;
                }
                let x: Vec<f32> = (0..hd).map(|_| rng.f32()).collect();
                let i = l.v_index(t, g, 0);
                dv[l.dv_index(t, g)] = quant_head(&x, &mut vc[i..i + hd]);
            }
        }
        let view = KvView {
            k: &kc,
            dk: &dk,
            v: &vc,
            dv: &dv,
            n_kv_head: n_kv,
            head_dim: hd,
            window: 0,
        };
        let q: Vec<f32> = (0..3 * hd).map(|_| rng.f32()).collect();
        print!("{:<22}", n_keys);
        for k in kernels {
            let mut scratch = AttnScratch::new();
            let mut out = vec![0f32; 3 * hd];
            let s = time(budget, || {
                k.attention(&q[..hd], &view, 0, n_keys, &mut scratch, &mut out[..hd])
            });
            let qs: Vec<&[f32]> = q.chunks_exact(hd).collect();
            let s3 = time(budget, || {
                let mut outs: Vec<&mut [f32]> = out.chunks_exact_mut(hd).collect();
                batch::attention_batch(k, &view, 0, &qs, &[n_keys; 3], &mut scratch, &mut outs)
            });
            print!("{:>10.2}{:>10.2}", s * 1e6, s3 * 1e6 / 3.0);
        }
        println!();
    }
}

fn bench_exp(kernels: &[Kernels], budget: Duration) {
    let mut rng = Rng(3);
    let x: Vec<f32> = (0..49152).map(|_| rng.f32() * 20.0).collect();
    let mut out = vec![0f32; x.len()];
    println!("exp_sub over 49152 logits + sum16, 1 thread, microseconds");
    print!("{:<22}", "");
    for k in kernels {
        print!("{:>10}", k.variant().name());
    }
    println!();
    print!("{:<22}", "49152");
    for k in kernels {
        let s = time(budget, || {
            k.exp_sub(&x, 20.0, &mut out);
            std::hint::black_box(k.sum16(&out));
        });
        print!("{:>10.1}", s * 1e6);
    }
    println!();
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let ms: u64 = std::env::args()
        .nth(2)
        .map_or(300, |s| s.parse().expect("milliseconds"));
    let budget = Duration::from_millis(ms);
    let kernels: Vec<Kernels> = Kernels::available()
        .into_iter()
        .rev() // scalar first
        .map(|v| Kernels::new(v).unwrap())
        .collect();
    if what == "matmul" || what == "all" {
        bench_matmul(&kernels, budget);
    }
    if what == "attention" || what == "all" {
        bench_attention(&kernels, budget);
    }
    if what == "exp" || what == "all" {
        bench_exp(&kernels, budget);
    }
}
