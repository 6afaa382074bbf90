//! The batched kernels (attention, quantization, SwiGLU) against the
//! scalar specification.

use super::KvBuf;
use crate::kernels::attention::prefetch::Prefetch;
use crate::kernels::attention::Arr;
use crate::kernels::batch::*;
use crate::kernels::{scalar, AttnScratch, Kernels, QuantizedRows, KV_TILE};

use crate::testing::Rng;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A cache of `cap` positions: rows of random values (K times `ks`),
/// every 29th row special when `specials` (all zeros, one huge value
/// among small ones, all negative zeros), quantized as the model does;
/// positions from `valid` on are garbage, which a correct kernel never
/// lets into a result.
fn cache(rng: &mut Rng, n_kv: usize, hd: usize, cap: usize, valid: usize, ks: f32) -> KvBuf {
    cache_with(rng, n_kv, hd, cap, valid, ks, false)
}

fn cache_with(
    rng: &mut Rng,
    n_kv: usize,
    hd: usize,
    cap: usize,
    valid: usize,
    ks: f32,
    specials: bool,
) -> KvBuf {
    let mut kv = KvBuf::new(n_kv, hd, cap);
    let mut i = 0usize;
    let mut row = |rng: &mut Rng, scale: f32| -> Vec<f32> {
        i += 1;
        let mut r: Vec<f32> = (0..hd).map(|_| rng.signed() * scale).collect();
        if specials && i % 29 == 0 {
            match (i / 29) % 3 {
                0 => r.fill(0.0),
                1 => r[i % hd] = 3e4 * scale,
                _ => r.fill(-0.0),
            }
        }
        r
    };
    for t in 0..valid {
        for g in 0..n_kv {
            let k = row(rng, ks);
            let v = row(rng, 1.0);
            kv.set(t, g, &k, &v);
        }
    }
    kv
}

/// Every variant's batched attention equals the scalar kernel query by
/// query: query counts 1..=14 (every register-block split and tail), 24
/// and 64,
/// ragged key counts around tile edges, several head sizes (including
/// one that takes the per-query fallback), small and large scores.
#[test]
fn batched_attention_matches_scalar_per_query() {
    let mut rng = Rng(3);
    for (n_kv, hd, ks) in [
        (3usize, 64usize, 0.5f32),
        (3, 64, 25.0),
        (2, 16, 1.0),
        (1, 48, 2.0),
        (1, 40, 1.0),
        (2, 128, 1.0),
    ] {
        let cap = 70;
        // Large scores with the special values: one key can dominate.
        let kv = cache_with(&mut rng, n_kv, hd, cap, cap, ks, ks < 2.0);
        let view = kv.view();
        for nq in (1..=14usize).chain([24, 64]) {
            for base in [1usize, 13, 16, 17, 40, 64 - nq.min(10)] {
                let g = (nq + base) % n_kv;
                let qv: Vec<Vec<f32>> = (0..nq)
                    .map(|_| (0..hd).map(|_| rng.signed()).collect())
                    .collect();
                // Consecutive tokens (3 heads each) or arbitrary spreads.
                let n_keys: Vec<usize> = (0..nq)
                    .map(|i| {
                        if nq % 2 == 0 {
                            base + i / 3
                        } else {
                            1 + (base * 7 + i * 11) % 64
                        }
                    })
                    .map(|n| n.min(cap))
                    .collect();
                let mut want = vec![vec![0f32; hd]; nq];
                for i in 0..nq {
                    scalar::attention(
                        &qv[i],
                        &view,
                        g,
                        n_keys[i],
                        &mut AttnScratch::new(),
                        &mut want[i],
                    );
                }
                for kern in Kernels::available()
                    .into_iter()
                    .map(|v| Kernels::new(v).unwrap())
                {
                    let qs: Vec<&[f32]> = qv.iter().map(|q| q.as_slice()).collect();
                    let mut got = vec![vec![f32::NAN; hd]; nq];
                    let mut outs: Vec<&mut [f32]> =
                        got.iter_mut().map(|o| o.as_mut_slice()).collect();
                    let mut scratch = AttnScratch::new();
                    scratch.f = vec![f32::NAN; 5];
                    scratch.q = vec![-3; 1000];
                    attention_batch(&kern, &view, g, &qs, &n_keys, &mut scratch, &mut outs);
                    for i in 0..nq {
                        assert_eq!(
                            bits(&got[i]),
                            bits(&want[i]),
                            "{:?} n_kv {n_kv} hd {hd} nq {nq} query {i} keys {}",
                            kern.variant(),
                            n_keys[i]
                        );
                    }
                }
            }
        }
    }
}

/// Sliding-window attention (section 7): every variant's batched kernel
/// equals the specification query by query; the specification equals an
/// attention over only the window's keys up to the masked zeros (checked
/// against f64); and a view that skips whole tiles below the window gives
/// the same bits (how the model skips masked keys).
#[test]
fn windowed_attention_matches_scalar_and_skips_tiles() {
    let mut rng = Rng(21);
    let (n_kv, hd, cap) = (1usize, 64usize, 200usize);
    let kv = cache_with(&mut rng, n_kv, hd, cap, cap, 1.0, true);
    for window in [1usize, 15, 16, 17, 48, 100] {
        let mut view = kv.view();
        view.window = window;
        let nq = 7;
        let qv: Vec<Vec<f32>> = (0..nq)
            .map(|_| (0..hd).map(|_| rng.signed() * 3.0).collect())
            .collect();
        let n_keys: Vec<usize> = (0..nq).map(|i| 90 + 17 * i).collect();
        let mut want = vec![vec![0f32; hd]; nq];
        for i in 0..nq {
            let mut s = AttnScratch::new();
            scalar::attention(&qv[i], &view, 0, n_keys[i], &mut s, &mut want[i]);
            // Without the window over keys k0..n the result differs only by
            // rounding.
            let k0 = n_keys[i] - window.min(n_keys[i]);
            assert_eq!(view.first_key(n_keys[i]), k0);
            let mut plain = view;
            plain.window = 0;
            let skip = k0 / KV_TILE;
            let sub = plain.skip_tiles(skip);
            let mut alone = vec![0f32; hd];
            let n_sub = n_keys[i] - skip * KV_TILE;
            let mut sub_w = sub;
            sub_w.window = window;
            scalar::attention(&qv[i], &sub_w, 0, n_sub, &mut s, &mut alone);
            assert_eq!(bits(&alone), bits(&want[i]), "window {window} skip {skip}");
            if k0 % KV_TILE == 0 {
                // The window starts on a tile: exactly the unmasked attention
                // over the window's keys.
                let mut ref_ = vec![0f32; hd];
                scalar::attention(&qv[i], &sub, 0, n_sub, &mut s, &mut ref_);
                assert_eq!(bits(&ref_), bits(&want[i]), "window {window}");
            }
        }
        for kern in Kernels::available()
            .into_iter()
            .map(|v| Kernels::new(v).unwrap())
        {
            let qs: Vec<&[f32]> = qv.iter().map(|q| q.as_slice()).collect();
            let mut got = vec![vec![f32::NAN; hd]; nq];
            let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|o| o.as_mut_slice()).collect();
            let mut scratch = AttnScratch::new();
            attention_batch(&kern, &view, 0, &qs, &n_keys, &mut scratch, &mut outs);
            for i in 0..nq {
                assert_eq!(
                    bits(&got[i]),
                    bits(&want[i]),
                    "{:?} window {window} query {i}",
                    kern.variant()
                );
            }
        }
    }
}

/// Every variant's head-row quantization (K/V cache rows, queries)
/// equals the scalar rule: lengths with and without a vector tail,
/// random rows with special values mixed in, all-zero rows, rows whose
/// only non-zero values are NaN or a lone huge value.
#[test]
fn quant_head_variants_match_scalar() {
    let mut rng = Rng(11);
    let specials = [
        0.0f32,
        -0.0,
        1e-42,
        3e38,
        -3e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.5,
        -1.5,
    ];
    for n in [1usize, 3, 8, 15, 16, 17, 40, 48, 64, 100, 128] {
        for case in 0..8 {
            let x: Vec<f32> = (0..n)
                .map(|i| match case {
                    0 => 0.0,
                    1 => [f32::NAN, 0.0, -0.0][i % 3],
                    2 if i == n / 2 => -1e30,
                    2 => 0.5,
                    3 | 4 if i % 5 == 0 => specials[(i / 5 + case) % specials.len()],
                    _ => rng.signed() * [1.0f32, 1e-3, 50.0][case % 3],
                })
                .collect();
            let mut want = vec![0i8; n];
            let dw = scalar::quant_head(&x, &mut want);
            for kern in Kernels::available()
                .into_iter()
                .map(|v| Kernels::new(v).unwrap())
            {
                let mut got = vec![1i8; n];
                let d = kern.quant_head(&x, &mut got);
                assert_eq!(got, want, "{:?} n {n} case {case}", kern.variant());
                assert_eq!(
                    d.to_bits(),
                    dw.to_bits(),
                    "{:?} n {n} case {case}",
                    kern.variant()
                );
            }
        }
    }
}

/// Quantization and SwiGLU equal the scalar kernels on random rows mixed
/// with zeros, signed zeros, subnormals, huge values, infinities, NaN and
/// all-zero blocks.
#[test]
fn quantize_and_silu_match_scalar() {
    let mut rng = Rng(17);
    let specials = [
        0.0f32,
        -0.0,
        1e-40,
        -1e-42,
        3e38,
        -3e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        127.0,
        0.5,
        -0.5,
        1.5,
    ];
    for cols in [32usize, 64, 576, 1536] {
        for n in [1usize, 3, 17] {
            let mut x: Vec<f32> = (0..n * cols)
                .map(|i| match i % 7 {
                    0 => specials[(i / 7) % specials.len()],
                    _ => rng.signed() * [1.0f32, 1e-3, 50.0][i % 3],
                })
                .collect();
            x[cols - 32..cols].fill(0.0); // an all-zero block
            let mut want = QuantizedRows::new();
            want.quantize(&x, cols);
            for kern in Kernels::available()
                .into_iter()
                .map(|v| Kernels::new(v).unwrap())
            {
                for par in [false, true] {
                    let mut got = QuantizedRows::new();
                    quantize_rows(&kern, &x, cols, &mut got, par);
                    assert_eq!(got.q, want.q, "{:?}", kern.variant());
                    assert_eq!(bits(&got.d), bits(&want.d), "{:?}", kern.variant());
                    assert_eq!(bits(&got.s), bits(&want.s), "{:?}", kern.variant());
                    assert_eq!((got.n(), got.k()), (n, cols));
                    // The fused pass: `prep` writes row t of `b` from
                    // row t of `a` (here: a copy of x's row, and a
                    // mark in `a` to show it ran once per row), then
                    // quantizes it: the same as quantizing x.
                    let mut a: Vec<f32> = vec![0.0; n * 3];
                    let mut b = vec![f32::NAN; n * cols];
                    let mut got = QuantizedRows::new();
                    prep_quantize_rows(
                        &kern,
                        &mut a,
                        3,
                        &mut b,
                        cols,
                        &mut got,
                        par,
                        |t, ar, br| {
                            br.copy_from_slice(&x[t * cols..(t + 1) * cols]);
                            ar[t % 3] += 1.0;
                        },
                    );
                    assert_eq!(bits(&b), bits(&x));
                    assert_eq!(got.q, want.q, "{:?}", kern.variant());
                    assert_eq!(bits(&got.d), bits(&want.d), "{:?}", kern.variant());
                    assert_eq!(bits(&got.s), bits(&want.s), "{:?}", kern.variant());
                    assert_eq!((got.n(), got.k()), (n, cols));
                    for (t, ar) in a.chunks_exact(3).enumerate() {
                        assert_eq!(ar.iter().sum::<f32>(), 1.0);
                        assert_eq!(ar[t % 3], 1.0);
                    }
                }
                let u: Vec<f32> = (0..x.len()).map(|_| rng.signed() * 4.0).collect();
                // SiLU sees pre-activations: finite, some large.
                let gx: Vec<f32> = x
                    .iter()
                    .map(|&v| {
                        if v.is_finite() {
                            v.clamp(-200.0, 200.0)
                        } else {
                            v
                        }
                    })
                    .collect();
                let mut want_g = gx.clone();
                scalar::silu_mul(&mut want_g, &u);
                let mut got_g = gx.clone();
                silu_mul(&kern, &mut got_g, &u, &mut vec![1.0; 3]);
                assert_eq!(bits(&got_g), bits(&want_g), "{:?}", kern.variant());
            }
        }
    }
}

/// The prefetch stream walks every line of its regions once, skips
/// empty regions and stops at the end however much is asked; the
/// regions of a view are what an attention over its first keys reads.
#[test]
fn prefetch_walks_every_region_line_once() {
    let buf = vec![0u8; 300];
    let regions: [&[u8]; 7] = [
        &[],
        &buf[..1],
        &buf[..64],
        &[],
        &buf[..65],
        &buf[10..140],
        &[],
    ];
    let mut pf = Prefetch::new(&regions);
    assert_eq!(pf.left(), 1 + 1 + 2 + 3);
    pf.issue::<Arr>(2);
    assert_eq!(pf.left(), 5);
    assert_eq!((pf.r, pf.off), (4, 0), "at the third non-empty region");
    pf.issue::<Arr>(4);
    assert_eq!((pf.left(), pf.r, pf.off), (1, 5, 128));
    pf.issue::<Arr>(1000);
    assert_eq!((pf.left(), pf.r), (0, regions.len()));
    pf.issue::<Arr>(1);
    assert_eq!(pf.left(), 0);
    assert_eq!(Prefetch::new(&[]).left(), 0);

    let mut rng = Rng(5);
    let kv = cache(&mut rng, 1, 64, 64, 64, 1.0);
    let view = kv.view();
    let [k, dk, v, dv] = view.read_regions(17);
    assert_eq!(
        [k.len(), dk.len(), v.len(), dv.len()],
        [2 * view.k_tile_bytes(), 2 * KV_TILE * 4, 17 * 64, 17 * 4]
    );
    assert_eq!(k.as_ptr(), view.k.as_ptr().cast());
    assert_eq!(v.as_ptr(), view.v.as_ptr().cast());
    let all = view.read_regions(1000);
    assert_eq!(all[2].len(), view.v.len(), "clamped to the view");
}

/// Long context with the scores of a real model's scale, and a cache
/// only partly written (the rest must be ignored); with and without
/// prefetching.
#[test]
fn batched_attention_matches_scalar_at_long_context() {
    let mut rng = Rng(9);
    let (hd, cap, valid) = (64, 2064, 2050);
    for ks in [0.3f32, 8.0] {
        let kv = cache(&mut rng, 1, hd, cap, valid, ks);
        let view = kv.view();
        let nq = 12;
        let qv: Vec<Vec<f32>> = (0..nq)
            .map(|_| (0..hd).map(|_| rng.signed()).collect())
            .collect();
        let n_keys: Vec<usize> = (0..nq).map(|i| 2047 + i / 3).collect();
        for kern in Kernels::available()
            .into_iter()
            .map(|v| Kernels::new(v).unwrap())
        {
            let qs: Vec<&[f32]> = qv.iter().map(|q| q.as_slice()).collect();
            // Without a prefetch, prefetching another cache, and
            // prefetching this one: the same bits.
            let other = cache(&mut rng, 1, hd, cap, valid, ks);
            let prefetches = [
                [&[][..]; 4],
                other.view().read_regions(valid),
                view.read_regions(2049),
            ];
            let got: Vec<Vec<Vec<f32>>> = prefetches
                .iter()
                .map(|regions| {
                    let mut got = vec![vec![0f32; hd]; nq];
                    let mut outs: Vec<&mut [f32]> =
                        got.iter_mut().map(|o| o.as_mut_slice()).collect();
                    attention_batch_prefetch(
                        &kern,
                        &view,
                        0,
                        &qs,
                        &n_keys,
                        &mut AttnScratch::new(),
                        &mut outs,
                        regions,
                    );
                    got
                })
                .collect();
            for i in 0..nq {
                let mut want = vec![0f32; hd];
                scalar::attention(
                    &qv[i],
                    &view,
                    0,
                    n_keys[i],
                    &mut AttnScratch::new(),
                    &mut want,
                );
                assert!(want.iter().all(|x| x.is_finite()));
                for (p, got) in got.iter().enumerate() {
                    assert_eq!(
                        bits(&got[i]),
                        bits(&want),
                        "{:?} ks {ks} query {i} prefetch {p}",
                        kern.variant()
                    );
                }
            }
        }
    }
}
