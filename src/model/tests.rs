//! Fast tests on tiny synthetic models: batch invariance, errors, caches.

use super::*;
use crate::kernels::Kernels;
use crate::lm::LanguageModel;
use crate::testing::Rng;

fn tiny_config() -> Config {
    Config {
        arch: "llama".into(),
        gemma3: None,
        n_layer: 2,
        n_embd: 64,
        n_ff: 96,
        n_head: 4,
        n_kv_head: 2,
        head_dim: 16,
        vocab: 50,
        context_len: 80,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
    }
}

/// A tiny gemma3: query width (4 x 32) unlike the embedding (64), one KV
/// head, windows of 20 keys on every other layer, a start token.
fn tiny_gemma_config() -> Config {
    Config {
        arch: "gemma3".into(),
        gemma3: Some(Gemma3 {
            sliding_window: 20,
            swa_period: 2,
            rope_base_local: 10_000.0,
        }),
        n_layer: 3,
        n_kv_head: 1,
        head_dim: 32,
        rope_base: 1e6,
        rms_eps: 1e-6,
        ..tiny_config()
    }
}

fn tiny_model(threads: usize) -> Model {
    let opts = ModelOptions {
        threads,
        variant: Some(Variant::Scalar),
    };
    Model::synthetic(tiny_config(), 42, &opts).unwrap()
}

fn tokens(seed: u64, n: usize) -> Vec<u32> {
    let mut r = Rng(seed);
    (0..n).map(|_| r.below(50) as u32).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Logits of `toks` fed in pieces of the given sizes (cycled).
fn run_pieces(m: &Model, toks: &[u32], sizes: &[usize]) -> Vec<f32> {
    let v = m.config().vocab;
    let mut cache = m.new_cache();
    let mut out = Vec::new();
    let mut i = 0;
    let mut s = 0;
    while i < toks.len() {
        let n = sizes[s % sizes.len()].min(toks.len() - i);
        let mut l = vec![0f32; n * v];
        m.forward(&mut [&mut cache], &[&toks[i..i + n]], &mut l)
            .unwrap();
        out.extend_from_slice(&l);
        i += n;
        s += 1;
    }
    assert_eq!(fed(&cache), toks.len());
    out
}

#[test]
fn logits_are_finite_and_vary() {
    let m = tiny_model(1);
    let l = run_pieces(&m, &tokens(1, 10), &[10]);
    assert!(l.iter().all(|x| x.is_finite()));
    let v = m.config().vocab;
    // Different positions give different distributions.
    assert_ne!(bits(&l[..v]), bits(&l[v..2 * v]));
    let spread = l[..v].iter().cloned().fold(f32::MIN, f32::max)
        - l[..v].iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.1, "spread {spread}");
}

#[test]
fn one_pass_equals_token_by_token_and_pieces() {
    let m = tiny_model(1);
    let toks = tokens(2, 41);
    let whole = bits(&run_pieces(&m, &toks, &[41]));
    assert_eq!(whole, bits(&run_pieces(&m, &toks, &[1])));
    assert_eq!(whole, bits(&run_pieces(&m, &toks, &[1, 3, 7])));
    assert_eq!(whole, bits(&run_pieces(&m, &toks, &[16, 17])));
}

#[test]
fn thread_count_does_not_change_bits() {
    for cfg in [tiny_config(), tiny_gemma_config()] {
        thread_count_does_not_change_bits_for(cfg);
    }
}

fn thread_count_does_not_change_bits_for(cfg: Config) {
    let toks = tokens(3, 37);
    let want = bits(&run_pieces(
        &model_of(cfg.clone(), 1, Variant::Scalar),
        &toks,
        &[37],
    ));
    for threads in [2, 3] {
        let m = model_of(cfg.clone(), threads, Variant::Scalar);
        assert_eq!(
            want,
            bits(&run_pieces(&m, &toks, &[37])),
            "{threads} threads"
        );
        assert_eq!(
            want,
            bits(&run_pieces(&m, &toks, &[5, 1, 9])),
            "{threads} threads"
        );
    }
}

#[test]
fn batching_with_other_sequences_does_not_change_bits() {
    let seqs: Vec<Vec<u32>> = [23, 0, 7, 31, 1]
        .iter()
        .enumerate()
        .map(|(i, &n)| tokens(10 + i as u64, n))
        .collect();
    for (threads, cfg) in [
        (1, tiny_config()),
        (2, tiny_config()),
        (2, tiny_gemma_config()),
    ] {
        let m = model_of(cfg, threads, Variant::Scalar);
        let v = m.config().vocab;
        let alone: Vec<Vec<u32>> = seqs
            .iter()
            .map(|s| bits(&run_pieces(&m, s, &[64])))
            .collect();
        // All at once.
        let mut caches: Vec<KvCache> = seqs.iter().map(|_| m.new_cache()).collect();
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let mut l = vec![0f32; total * v];
        {
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            let toks: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
            m.forward(&mut refs, &toks, &mut l).unwrap();
        }
        let mut off = 0;
        for (s, a) in seqs.iter().zip(&alone) {
            assert_eq!(&bits(&l[off..off + s.len() * v]), a);
            off += s.len() * v;
        }
        // Then in ragged steps: each round feeds a different count per sequence.
        let mut caches: Vec<KvCache> = seqs.iter().map(|_| m.new_cache()).collect();
        let mut got: Vec<Vec<u32>> = vec![Vec::new(); seqs.len()];
        let mut round = 0;
        while caches.iter().zip(&seqs).any(|(c, s)| fed(c) < s.len()) {
            let toks: Vec<&[u32]> = caches
                .iter()
                .zip(&seqs)
                .enumerate()
                .map(|(i, (c, s))| {
                    let n = (1 + (i + round) % 4).min(s.len() - fed(c));
                    &s[fed(c)..fed(c) + n]
                })
                .collect();
            let n: usize = toks.iter().map(|t| t.len()).sum();
            let mut l = vec![0f32; n * v];
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            m.forward(&mut refs, &toks, &mut l).unwrap();
            let mut off = 0;
            for (i, t) in toks.iter().enumerate() {
                got[i].extend(bits(&l[off..off + t.len() * v]));
                off += t.len() * v;
            }
            round += 1;
        }
        assert_eq!(got, alone);
    }
}

#[test]
fn forward_errors_leave_caches_untouched() {
    let m = tiny_model(1);
    let v = m.config().vocab;
    let mut c = m.new_cache();
    let mut l = vec![0f32; 2 * v];
    m.forward(&mut [&mut c], &[&[1, 2]], &mut l).unwrap();
    assert_eq!(c.len(), 2);
    let mut l1 = vec![0f32; v];
    assert!(matches!(
        m.forward(&mut [&mut c], &[&[1], &[2]], &mut l1),
        Err(ModelError::BatchMismatch {
            caches: 1,
            tokens: 2
        })
    ));
    assert!(matches!(
        m.forward(&mut [&mut c], &[&[50]], &mut l1),
        Err(ModelError::TokenOutOfRange { token: 50, .. })
    ));
    assert!(matches!(
        m.forward(&mut [&mut c], &[&[1]], &mut l),
        Err(ModelError::LogitsLength { expected, found }) if expected == v && found == 2 * v
    ));
    let long = vec![0u32; 79];
    let mut big = vec![0f32; 79 * v];
    assert!(matches!(
        m.forward(&mut [&mut c], &[&long], &mut big),
        Err(ModelError::ContextFull {
            len: 2,
            adding: 79,
            max: 80,
            ..
        })
    ));
    let other = Model::synthetic(
        Config {
            n_layer: 1,
            ..tiny_config()
        },
        1,
        &ModelOptions::default(),
    )
    .unwrap();
    let mut oc = other.new_cache();
    assert!(matches!(
        m.forward(&mut [&mut oc], &[&[1]], &mut l1),
        Err(ModelError::CacheMismatch { seq: 0 })
    ));
    assert_eq!(c.len(), 2);
    // The cache still continues correctly after the errors.
    m.forward(&mut [&mut c], &[&[3]], &mut l1).unwrap();
    let whole = run_pieces(&m, &[1, 2, 3], &[3]);
    assert_eq!(bits(&l1), bits(&whole[2 * v..]));
    // Empty batches are fine.
    m.forward(&mut [], &[], &mut []).unwrap();
    m.forward(&mut [&mut c], &[&[]], &mut []).unwrap();
    assert_eq!(c.len(), 3);
}

/// The cache holds each K and V head row as int8 with one scale (section
/// 7: `d = amax / 127`, `q = round_ties_even(x * 127 / amax)`, an all-zero
/// row gives `d = 0`), K scattered into its tile in groups of 4 dimensions.
#[test]
fn kv_cache_stores_int8_rows() {
    for kern in Kernels::available()
        .into_iter()
        .map(|v| Kernels::new(v).unwrap())
    {
        kv_cache_stores_int8_rows_with(&kern);
    }
}

fn kv_cache_stores_int8_rows_with(kern: &Kernels) {
    let cfg = tiny_config();
    let (nkv, hd) = (cfg.n_kv_head, cfg.head_dim);
    assert_eq!((nkv, hd), (2, 16));
    let mut c = KvCache::new(&cfg);
    c.reserve(20);
    // Head 0 of K: amax 63.5, so d = 0.5 and q = 2x; ties to even.
    let k0 = [
        63.5f32, -63.5, 0.25, 0.75, -0.75, 1.25, 10.0, -0.0, 0.0, 3.0, 4.2, -4.3, 1e-20, 5.0, 6.0,
        -7.0,
    ];
    let q0: [i8; 16] = [127, -127, 0, 2, -2, 2, 20, 0, 0, 6, 8, -9, 0, 10, 12, -14];
    // Head 1 of K: one huge value; the rest rounds to 0.
    let mut k1 = [0.5f32; 16];
    k1[9] = -1e30;
    let k: Vec<f32> = k0.iter().chain(&k1).copied().collect();
    // V: head 0 as K's head 0 times -1, head 1 all zeros.
    let v: Vec<f32> = k0.iter().map(|x| -x).chain([0.0; 16]).collect();
    c.write(kern, 1, 17, &k, &v);
    let (v0, v1) = (c.view(1, 0), c.view(1, 1));
    for d in 0..hd {
        // Position 17 is in tile 1, key 1: ((1 * 4 + d / 4) * 16 + 1) * 4 + d % 4.
        let ki = ((4 + d / 4) * 16 + 1) * 4 + d % 4;
        assert_eq!(v0.k_index(17, 0, d), ki);
        assert_eq!(v0.k[ki], q0[d], "k0 d {d}");
        assert_eq!(v0.v[17 * 16 + d], -q0[d], "v0 d {d}");
        assert_eq!(v1.k[ki], if d == 9 { -127 } else { 0 }, "k1 d {d}");
        assert_eq!(v1.v[17 * 16 + d], 0, "v1 d {d}");
    }
    assert_eq!(v0.dk[17].to_bits(), 0.5f32.to_bits());
    assert_eq!(v0.dv[17].to_bits(), 0.5f32.to_bits());
    assert_eq!(v1.dk[17].to_bits(), (1e30f32 / 127.0).to_bits());
    assert_eq!(v1.dv[17].to_bits(), 0.0f32.to_bits());
}

#[test]
fn context_fills_exactly_and_cache_reuse_works() {
    let m = tiny_model(2);
    let toks = tokens(9, 80);
    let whole = bits(&run_pieces(&m, &toks, &[80]));
    let mut c = m.new_cache();
    let mut l = vec![0f32; 80 * 50];
    m.forward(&mut [&mut c], &[&toks], &mut l).unwrap();
    // 80 positions, 2 layers, 2 KV heads: K, V 16 bytes each + 2 scales.
    assert_eq!(c.heap_bytes(), 80 * 2 * 2 * (16 + 16 + 2 * 4));
    assert_eq!(c.heap_bytes(), 80 * KvCache::bytes_per_token(m.config()));
    let mut one = vec![0f32; 50];
    assert!(m.forward(&mut [&mut c], &[&[1]], &mut one).is_err());
    c.clear();
    assert!(c.is_empty());
    m.forward(&mut [&mut c], &[&toks], &mut l).unwrap();
    assert_eq!(bits(&l), whole);
    c.truncate(40);
    m.forward(&mut [&mut c], &[&toks[40..]], &mut l[40 * 50..])
        .unwrap();
    assert_eq!(bits(&l), whole);
}

#[test]
fn reserved_cache_holds_the_context_without_growing() {
    let m = tiny_model(2);
    let bpt = KvCache::bytes_per_token(m.config());
    let mut c = m.new_cache();
    assert_eq!(c.heap_bytes(), 0);
    // More than the context (80): clamped to it.
    c.reserve_tokens(1000);
    assert_eq!(c.heap_bytes(), 80 * bpt);
    let toks = tokens(9, 80);
    let mut l = vec![0f32; 80 * 50];
    m.forward(&mut [&mut c], &[&toks], &mut l).unwrap();
    assert_eq!(c.heap_bytes(), 80 * bpt);
    assert_eq!(bits(&l), bits(&run_pieces(&m, &toks, &[80])));
}

/// gemma3 shapes: a query width unlike the embedding is fine; a bad key
/// length, window, pattern or local RoPE base is refused by its own key.
#[test]
fn gemma_config_validation_names_the_key() {
    let ok = tiny_gemma_config();
    assert!(ok.validate().is_ok());
    let gm = ok.gemma3.clone().unwrap();
    let key_of = |c: Config| match c.validate() {
        Err(ModelError::BadConfig { key, .. }) => key,
        other => panic!("expected BadConfig, got {other:?}"),
    };
    for (c, key) in [
        (
            Config {
                head_dim: 0,
                ..ok.clone()
            },
            "gemma3.attention.key_length",
        ),
        (
            Config {
                head_dim: 1024,
                ..ok.clone()
            },
            "gemma3.attention.key_length",
        ),
        (
            Config {
                head_dim: 6,
                ..ok.clone()
            },
            "gemma3.attention.key_length",
        ),
        (
            Config {
                gemma3: Some(Gemma3 {
                    sliding_window: 0,
                    ..gm.clone()
                }),
                ..ok.clone()
            },
            "gemma3.attention.sliding_window",
        ),
        (
            Config {
                gemma3: Some(Gemma3 {
                    swa_period: 0,
                    ..gm.clone()
                }),
                ..ok.clone()
            },
            "gemma3.attention.sliding_window_pattern",
        ),
        (
            Config {
                gemma3: Some(Gemma3 {
                    rope_base_local: f32::NAN,
                    ..gm.clone()
                }),
                ..ok.clone()
            },
            "gemma3.rope.freq_base_swa",
        ),
    ] {
        assert_eq!(key_of(c), key);
    }
}

#[test]
fn config_validation_rejects_bad_shapes() {
    let ok = tiny_config();
    assert!(ok.validate().is_ok());
    let bad = [
        Config {
            n_head: 5,
            ..ok.clone()
        }, // 64 % 5 != 0
        Config {
            n_kv_head: 3,
            ..ok.clone()
        }, // 4 % 3 != 0
        Config {
            n_embd: 48,
            head_dim: 12,
            ..ok.clone()
        }, // not a multiple of 32
        Config {
            n_layer: 0,
            ..ok.clone()
        },
        Config {
            vocab: 0,
            ..ok.clone()
        },
        Config {
            rms_eps: f32::NAN,
            ..ok.clone()
        },
        Config {
            rope_base: 0.5,
            ..ok.clone()
        },
        Config {
            context_len: MAX_CONTEXT + 1,
            ..ok.clone()
        },
        Config {
            n_embd: 96,
            n_head: 32,
            head_dim: 3,
            ..ok.clone()
        }, // odd head dim
    ];
    for c in bad {
        assert!(
            matches!(c.validate(), Err(ModelError::BadConfig { .. })),
            "{c:?}"
        );
    }
}

#[test]
fn model_and_cache_can_be_shared_across_threads() {
    fn check<T: Send + Sync>() {}
    check::<Model>();
    check::<KvCache>();
    // Two threads using one model at once get the single-thread result.
    let m = tiny_model(2);
    let toks = tokens(4, 30);
    let want = bits(&run_pieces(&m, &toks, &[30]));
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| bits(&run_pieces(&m, &toks, &[4, 11]))))
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), want);
        }
    });
}

fn tiny_model_with(threads: usize, variant: Variant) -> Model {
    model_of(tiny_config(), threads, variant)
}

fn model_of(cfg: Config, threads: usize, variant: Variant) -> Model {
    let opts = ModelOptions {
        threads,
        variant: Some(variant),
    };
    Model::synthetic(cfg, 42, &opts).unwrap()
}

/// Tokens of a sequence already fed (the cache less the model's prefix).
fn fed(c: &KvCache) -> usize {
    c.len() - c.prefix_len()
}

/// Every kernel variant (with the batched attention of the SIMD ones) gives
/// the scalar model's bits, alone and in ragged multi-sequence batches, for
/// llama and for gemma3 (sliding windows, a start token).
#[test]
fn every_variant_gives_the_scalar_bits() {
    every_variant_gives_the_scalar_bits_for(tiny_config());
    every_variant_gives_the_scalar_bits_for(tiny_gemma_config());
}

fn every_variant_gives_the_scalar_bits_for(cfg: Config) {
    let seqs: Vec<Vec<u32>> = [33, 1, 18, 6, 60]
        .iter()
        .enumerate()
        .map(|(i, &n)| tokens(20 + i as u64, n))
        .collect();
    let reference = model_of(cfg.clone(), 1, Variant::Scalar);
    let want: Vec<Vec<u32>> = seqs
        .iter()
        .map(|s| bits(&run_pieces(&reference, s, &[64])))
        .collect();
    for variant in Kernels::available() {
        for threads in [1, 2, 3] {
            let m = model_of(cfg.clone(), threads, variant);
            for (s, w) in seqs.iter().zip(&want) {
                assert_eq!(&bits(&run_pieces(&m, s, &[64])), w, "{variant} {threads}");
                assert_eq!(&bits(&run_pieces(&m, s, &[1, 5])), w, "{variant} {threads}");
            }
            // All four at once, then token by token together (the fused
            // decoding path while there are at least `threads` tokens, the
            // general one as the sequences run out).
            let v = m.config().vocab;
            let mut caches: Vec<KvCache> = seqs.iter().map(|_| m.new_cache()).collect();
            let half: Vec<&[u32]> = seqs.iter().map(|s| &s[..s.len() / 2]).collect();
            let n: usize = half.iter().map(|t| t.len()).sum();
            let mut l = vec![0f32; n * v];
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            m.forward(&mut refs, &half, &mut l).unwrap();
            let mut off = 0;
            for (h, w) in half.iter().zip(&want) {
                assert_eq!(bits(&l[off..off + h.len() * v]), w[..h.len() * v]);
                off += h.len() * v;
            }
            loop {
                let step: Vec<&[u32]> = refs
                    .iter()
                    .zip(&seqs)
                    .map(|(c, s)| &s[fed(c)..(fed(c) + 1).min(s.len())])
                    .collect();
                let n: usize = step.iter().map(|t| t.len()).sum();
                if n == 0 {
                    break;
                }
                let pos: Vec<usize> = refs.iter().map(|c| fed(c)).collect();
                let mut l = vec![0f32; n * v];
                m.forward(&mut refs, &step, &mut l).unwrap();
                let mut off = 0;
                for ((t, w), p) in step.iter().zip(&want).zip(&pos) {
                    if !t.is_empty() {
                        assert_eq!(bits(&l[off..off + v]), w[p * v..(p + 1) * v], "{variant}");
                        off += v;
                    }
                }
            }
        }
    }
}

/// The activation buffers kept between calls: a large batch, then smaller
/// ones, then a large one again (stale values in the kept buffers must not
/// leak into results), on one model, equal a fresh model's bits for each.
#[test]
fn scratch_reuse_across_batch_shapes_keeps_bits() {
    for variant in Kernels::available() {
        let m = tiny_model_with(2, variant);
        let long = tokens(31, 60);
        let short = tokens(32, 3);
        let fresh = |toks: &[u32]| bits(&run_pieces(&tiny_model_with(2, variant), toks, &[64]));
        let want_long = fresh(&long);
        let want_short = fresh(&short);
        assert_eq!(bits(&run_pieces(&m, &long, &[60])), want_long);
        let held = m.scratch_bytes();
        assert!(held > 0, "buffers are kept");
        assert_eq!(bits(&run_pieces(&m, &short, &[3])), want_short);
        assert_eq!(bits(&run_pieces(&m, &short, &[1])), want_short);
        assert!(m.scratch_bytes() <= held, "no regrowth for smaller batches");
        assert_eq!(bits(&run_pieces(&m, &long, &[7, 25, 1])), want_long);
        m.release_scratch();
        assert_eq!(m.scratch_bytes(), 0);
        assert_eq!(bits(&run_pieces(&m, &short, &[2])), want_short);
    }
}

/// One sequence decoding alone is split over query heads (every thread busy);
/// the result is the same as with all heads of a group in one job.
#[test]
fn attention_job_splits_cover_every_head_once() {
    let m = tiny_model_with(2, Variant::Scalar);
    let cfg = m.config().clone();
    let check = |slots: &[Slot]| {
        let jobs = m.attention_jobs(slots);
        let mut seen = vec![0u32; slots.len() * cfg.n_head];
        let mut off = 0;
        for j in &jobs {
            assert_eq!(j.off, off);
            assert!(j.h0 / (cfg.n_head / cfg.n_kv_head) == j.g);
            for t in j.t0..j.t0 + j.nt {
                assert_eq!(slots[t].seq, slots[j.t0].seq, "a job stays in one sequence");
                for h in j.h0..j.h0 + j.nh {
                    seen[t * cfg.n_head + h] += 1;
                }
            }
            off += j.nt * j.nh * cfg.head_dim;
        }
        assert!(seen.iter().all(|&c| c == 1), "{seen:?}");
        jobs
    };
    let one = check(&[Slot { seq: 0, pos: 9 }]);
    assert!(
        one.len() >= 2 * m.threads(),
        "single decode uses every thread"
    );
    let many: Vec<Slot> = (0..11)
        .map(|i| Slot {
            seq: i / 5,
            pos: 3 + i,
        })
        .collect();
    let jobs = check(&many);
    assert!(jobs.iter().all(|j| j.nh == cfg.n_head / cfg.n_kv_head));
}

/// The real model: every variant's logits (batched attention, threads,
/// prefill then decoding two sequences together) equal the scalar
/// reference's bits.
#[test]
fn real_model_every_variant_gives_the_scalar_bits() {
    let path = crate::registry::model_for_tests().expect("locate the test model");
    let g = crate::gguf::Gguf::open(&path).unwrap();
    let ids: Vec<u32> = include_str!("../../tests/data/apache-2.0-first4000.ids")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let (a, b) = (&ids[..37], &ids[100..120]);
    let load = |threads, variant| {
        Model::load(
            &g,
            &ModelOptions {
                threads,
                variant: Some(variant),
            },
        )
        .unwrap()
    };
    let reference = load(1, Variant::Scalar);
    let want_a = bits(&run_pieces(&reference, a, &[64]));
    let want_b = bits(&run_pieces(&reference, b, &[64]));
    let v = reference.config().vocab;
    for variant in Kernels::available() {
        let m = load(2, variant);
        // Prefill most of each, then decode both together one token a step.
        let (mut ca, mut cb) = (m.new_cache(), m.new_cache());
        let mut l = vec![0f32; (30 + 13) * v];
        m.forward(&mut [&mut ca, &mut cb], &[&a[..30], &b[..13]], &mut l)
            .unwrap();
        assert_eq!(bits(&l[..30 * v]), want_a[..30 * v], "{variant}");
        assert_eq!(bits(&l[30 * v..]), want_b[..13 * v], "{variant}");
        for i in 0..7 {
            let mut l = vec![0f32; 2 * v];
            m.forward(
                &mut [&mut ca, &mut cb],
                &[&a[30 + i..31 + i], &b[13 + i..14 + i]],
                &mut l,
            )
            .unwrap();
            assert_eq!(
                bits(&l[..v]),
                want_a[(30 + i) * v..(31 + i) * v],
                "{variant} step {i}"
            );
            assert_eq!(
                bits(&l[v..]),
                want_b[(13 + i) * v..(14 + i) * v],
                "{variant} step {i}"
            );
        }
    }
}

/// [`KvCache::slide`]: the front positions and every value row stay as they
/// were (bit for bit); each kept key moves down by `d` and is its RoPE
/// rotation back by `d` (within the two int8 roundings).
#[test]
fn kv_cache_slide_moves_and_rotates_back() {
    use crate::kernels::{math::RopeTable, scalar};
    let cfg = tiny_config();
    let (nkv, hd) = (cfg.n_kv_head, cfg.head_dim);
    let kern = Kernels::new(Variant::Scalar).unwrap();
    let rope = RopeTable::new(hd, cfg.rope_base, cfg.context_len);
    let mut c = KvCache::new(&cfg);
    c.reserve(40);
    let mut r = Rng(7);
    // Unrotated keys per (position, layer), stored rotated to their position.
    let mut raw = Vec::new();
    for pos in 0..37 {
        for layer in 0..cfg.n_layer {
            let k0: Vec<f32> = (0..nkv * hd)
                .map(|_| r.below(2001) as f32 / 100.0 - 10.0)
                .collect();
            let v: Vec<f32> = (0..nkv * hd)
                .map(|_| r.below(2001) as f32 / 100.0 - 10.0)
                .collect();
            let mut k = k0.clone();
            let (cos, sin) = rope.at(pos);
            for head in k.chunks_exact_mut(hd) {
                scalar::rope(head, cos, sin);
            }
            c.write(&kern, layer, pos, &k, &v);
            raw.push(k0);
        }
        c.advance(1);
    }
    let before = c.clone();
    let (front, keep) = (3, 9);
    let d = 37 - keep - front;
    let back: Vec<_> = (0..cfg.n_layer).map(|_| rope.at(d)).collect();
    // Threads take whole (layer, head) regions: one thread and a pool of
    // three give the same bytes.
    let mut c3 = c.clone();
    c.slide(&kern, front, keep, &back, false);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    pool.install(|| c3.slide(&kern, front, keep, &back, true));
    assert_eq!(c.len(), front + keep);
    assert_eq!(c3.len(), front + keep);
    for layer in 0..cfg.n_layer {
        for g in 0..nkv {
            let (a, b) = (c.view(layer, g), c3.view(layer, g));
            let n = front + keep;
            for t in 0..n {
                for d in 0..a.head_dim {
                    assert_eq!(a.k[a.k_index(t, 0, d)], b.k[b.k_index(t, 0, d)]);
                    assert_eq!(a.v[a.v_index(t, 0, d)], b.v[b.v_index(t, 0, d)]);
                }
            }
            let bits = |x: &[f32]| x[..n].iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a.dk), bits(b.dk));
            assert_eq!(bits(a.dv), bits(b.dv));
        }
    }
    for layer in 0..cfg.n_layer {
        for g in 0..nkv {
            let (old, new) = (before.view(layer, g), c.view(layer, g));
            let key = |v: &crate::kernels::KvView<'_>, p: usize| -> Vec<f32> {
                let dk = v.dk[v.dk_index(p, 0)];
                (0..hd)
                    .map(|i| v.k[v.k_index(p, 0, i)] as f32 * dk)
                    .collect()
            };
            for p in 0..front + keep {
                let src = if p < front { p } else { p + d };
                // Values: the same bytes and scale.
                assert_eq!(new.v[p * hd..(p + 1) * hd], old.v[src * hd..(src + 1) * hd]);
                assert_eq!(new.dv[p].to_bits(), old.dv[src].to_bits());
                if p < front {
                    assert_eq!(key(&new, p), key(&old, p));
                    continue;
                }
                // The raw key rotated to its new position.
                let mut want = raw[src * cfg.n_layer + layer][g * hd..(g + 1) * hd].to_vec();
                let (cos, sin) = rope.at(p);
                scalar::rope(&mut want, cos, sin);
                let got = key(&new, p);
                let amax = want.iter().fold(0f32, |m, x| m.max(x.abs()));
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - b).abs() <= 2.0 * amax / 127.0,
                        "layer {layer} pos {p}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

/// Sliding a state gives the same bits on every variant and thread count,
/// whether the tokens after it are fed at once or one by one, for llama and
/// for gemma3 (whose start token stays in front of the sinks).
#[test]
fn slid_states_give_the_scalar_bits() {
    for cfg in [tiny_config(), tiny_gemma_config()] {
        let toks = tokens(5, 70);
        let run = |m: &Model, pieces: usize| -> Vec<u32> {
            let v = m.config().vocab;
            let mut c = m.new_cache();
            let mut out = Vec::new();
            // Feed 40, slide to 4 sinks + 12, feed 20 more, slide again.
            for (range, slide) in [(0..40, true), (40..60, true), (60..70, false)] {
                for piece in toks[range].chunks(pieces) {
                    let mut l = vec![0f32; piece.len() * v];
                    m.forward(&mut [&mut c], &[piece], &mut l).unwrap();
                    out.extend(bits(&l));
                }
                if slide {
                    let before = fed(&c);
                    m.slide_state(&mut c, 4, 12);
                    assert_eq!((fed(&c), before > 16), (16, true));
                }
            }
            out
        };
        let want = run(&model_of(cfg.clone(), 1, Variant::Scalar), 64);
        for variant in Kernels::available() {
            for threads in [1, 2] {
                let m = model_of(cfg.clone(), threads, variant);
                assert_eq!(run(&m, 64), want, "{variant} {threads}");
                assert_eq!(run(&m, 1), want, "{variant} {threads} one by one");
            }
        }
        // The slide changes what follows (the dropped tokens are gone).
        let m = model_of(cfg.clone(), 1, Variant::Scalar);
        let v = m.config().vocab;
        let mut c = m.new_cache();
        let mut l = vec![0f32; 60 * v];
        m.forward(&mut [&mut c], &[&toks[..60]], &mut l).unwrap();
        assert_ne!(bits(&l[40 * v..]), want[40 * v..60 * v]);
    }
}
