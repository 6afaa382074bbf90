//! Fast tests on tiny synthetic models: batch invariance, errors, caches.

use super::*;

fn tiny_config() -> Config {
    Config {
        arch: "llama".into(),
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

fn tiny_model(threads: usize) -> Model {
    let opts = ModelOptions {
        threads,
        variant: Some(Variant::Scalar),
    };
    Model::synthetic(tiny_config(), 42, &opts).unwrap()
}

fn tokens(seed: u64, n: usize) -> Vec<u32> {
    let mut r = SplitMix(seed);
    (0..n).map(|_| (r.next() % 50) as u32).collect()
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
    assert_eq!(cache.len(), toks.len());
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
    let toks = tokens(3, 37);
    let want = bits(&run_pieces(&tiny_model(1), &toks, &[37]));
    for threads in [2, 3] {
        let m = tiny_model(threads);
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
    for threads in [1, 2] {
        let m = tiny_model(threads);
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
        while caches.iter().zip(&seqs).any(|(c, s)| c.len() < s.len()) {
            let toks: Vec<&[u32]> = caches
                .iter()
                .zip(&seqs)
                .enumerate()
                .map(|(i, (c, s))| {
                    let n = (1 + (i + round) % 4).min(s.len() - c.len());
                    &s[c.len()..c.len() + n]
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

#[test]
fn context_fills_exactly_and_cache_reuse_works() {
    let m = tiny_model(2);
    let toks = tokens(9, 80);
    let whole = bits(&run_pieces(&m, &toks, &[80]));
    let mut c = m.new_cache();
    let mut l = vec![0f32; 80 * 50];
    m.forward(&mut [&mut c], &[&toks], &mut l).unwrap();
    assert!(c.heap_bytes() <= 80 * 2 * 2 * 32 * 4); // 80 positions, 2 layers, K+V, kv_dim 32
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
