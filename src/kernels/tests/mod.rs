//! Conformance: every variant this machine runs against the scalar
//! specification, bit for bit, on awkward shapes and values. A new variant
//! only has to become `is_available()` to be held to these.

use super::*;
use std::ops::Range;

mod batched;
mod spec;

use crate::testing::Rng;

/// Test values for the kernels.
trait Values {
    /// Mostly moderate values, sometimes zero, tiny, huge or negative zero.
    fn value(&mut self) -> f32;
}

impl Values for Rng {
    fn value(&mut self) -> f32 {
        let u = self.signed();
        match self.below(40) {
            0 => 0.0,
            1 => -0.0,
            2 => u * 1e-30,
            3 => u * 1e4,
            _ => u * 3.0,
        }
    }
}

/// Bit patterns for exact comparison, with every NaN mapped to one value:
/// Rust (like LLVM, RFC 3514) does not specify the sign, payload or
/// quietness of NaN results (it may fold `x - 0.0` to `x` and keep a
/// signalling NaN, or not), so only "is NaN" is comparable. No NaN reaches
/// the coder from a finite model (NUMERICS.md section 1).
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|&x| bits1(x)).collect()
}

fn bits1(x: f32) -> u32 {
    if x.is_nan() {
        0x7fc0_0000
    } else {
        x.to_bits()
    }
}

fn variants() -> Vec<Kernels> {
    let v: Vec<Kernels> = Kernels::available()
        .into_iter()
        .map(|v| Kernels::new(v).unwrap())
        .collect();
    assert!(v.contains(&Kernels::scalar()));
    v
}

fn random_matrix(rng: &mut Rng, kind: BlockKind, rows: usize, cols: usize) -> BlockMatrix {
    let nb = rows * cols / QK;
    let quants = (0..rows * cols)
        .map(|_| match kind {
            BlockKind::Q8 => rng.next_u64() as i8,
            BlockKind::Q4 => rng.below(16) as i8,
        })
        .collect();
    let scales = (0..nb).map(|_| rng.value() * 0.01).collect();
    let mins = match kind {
        BlockKind::Q8 => Vec::new(),
        BlockKind::Q4 => (0..nb).map(|_| rng.value() * 0.05).collect(),
    };
    BlockMatrix::new(kind, rows, cols, scales, mins, quants).unwrap()
}

fn matmul_all(k: &Kernels, w: &PackedMatrix, x: &QuantizedRows, rows: Range<usize>) -> Vec<f32> {
    let mut out = vec![0f32; x.n() * rows.len()];
    let mut parts: Vec<&mut [f32]> = out.chunks_mut(rows.len()).collect();
    k.matmul(w, x, rows, &mut parts);
    out
}

#[test]
fn matmul_variants_match_scalar() {
    let mut rng = Rng(1);
    let scalar = Kernels::scalar();
    for (rows, cols) in [(1, 32), (16, 64), (37, 96), (48, 576), (200, 1536)] {
        for kind in [BlockKind::Q8, BlockKind::Q4] {
            let m = random_matrix(&mut rng, kind, rows, cols);
            let want_w = scalar.pack_matrix(m.clone());
            for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 21] {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.value()).collect();
                let mut qx = QuantizedRows::new();
                qx.quantize(&x, cols);
                let want = matmul_all(&scalar, &want_w, &qx, 0..rows);
                for k in variants() {
                    let w = k.pack_matrix(m.clone());
                    assert_eq!(
                        bits(&matmul_all(&k, &w, &qx, 0..rows)),
                        bits(&want),
                        "{k:?}"
                    );
                    // Unaligned sub-ranges.
                    let a = rows / 3;
                    let b = (rows * 2 / 3 + 1).min(rows);
                    let sub = matmul_all(&k, &w, &qx, a..b);
                    for t in 0..n {
                        assert_eq!(
                            bits(&sub[t * (b - a)..(t + 1) * (b - a)]),
                            bits(&want[t * rows + a..t * rows + b]),
                            "{k:?} rows {a}..{b}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn rmsnorm_exp_sum_variants_match_scalar() {
    let mut rng = Rng(2);
    let scalar = Kernels::scalar();
    for n in [1usize, 15, 16, 17, 64, 576, 1000] {
        let x: Vec<f32> = (0..n).map(|_| rng.value()).collect();
        let w: Vec<f32> = (0..n).map(|_| rng.value()).collect();
        let mut want = vec![0f32; n];
        scalar.rmsnorm(&x, &w, 1e-5, &mut want);
        let want_sum = scalar.sum16(&x);
        let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut want_exp = vec![0f32; n];
        scalar.exp_sub(&x, m, &mut want_exp);
        for k in variants() {
            let mut got = vec![0f32; n];
            k.rmsnorm(&x, &w, 1e-5, &mut got);
            assert_eq!(bits(&got), bits(&want), "{k:?} rmsnorm n={n}");
            assert_eq!(
                k.sum16(&x).to_bits(),
                want_sum.to_bits(),
                "{k:?} sum16 n={n}"
            );
            k.exp_sub(&x, m, &mut got);
            assert_eq!(bits(&got), bits(&want_exp), "{k:?} exp n={n}");
        }
    }
    // exp over its whole range, cut-offs and infinities included.
    let mut x: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.0447).collect();
    x.extend([
        f32::INFINITY,
        f32::NEG_INFINITY,
        88.72283,
        -87.33654,
        0.0,
        -0.0,
    ]);
    let mut want = vec![0f32; x.len()];
    scalar.exp_sub(&x, 0.0, &mut want);
    for (a, &b) in want.iter().zip(&x) {
        assert_eq!(a.to_bits(), math::exp(b).to_bits());
    }
    for k in variants() {
        let mut got = vec![0f32; x.len()];
        k.exp_sub(&x, 0.0, &mut got);
        assert_eq!(bits(&got), bits(&want), "{k:?}");
    }
}

#[test]
fn attention_variants_match_scalar() {
    let mut rng = Rng(3);
    let scalar = Kernels::scalar();
    for (n_kv, hd) in [(1usize, 2usize), (3, 64), (2, 128)] {
        let cap = 80;
        let mut kv = KvBuf::new(n_kv, hd, cap);
        for t in 0..cap {
            for g in 0..n_kv {
                let k: Vec<f32> = (0..hd).map(|_| rng.value() * 0.3).collect();
                let v: Vec<f32> = (0..hd).map(|_| rng.value()).collect();
                kv.set(t, g, &k, &v);
            }
        }
        let view = kv.view();
        for n_keys in [1, 2, 15, 16, 17, 33, 80] {
            let q: Vec<f32> = (0..hd).map(|_| rng.value()).collect();
            for g in 0..n_kv {
                let mut want = vec![0f32; hd];
                scalar.attention(&q, &view, g, n_keys, &mut AttnScratch::new(), &mut want);
                assert!(want.iter().all(|x| x.is_finite()));
                for kern in variants() {
                    let mut got = vec![0f32; hd];
                    // A dirty scratch must not matter.
                    let mut scratch = AttnScratch::new();
                    scratch.f = vec![f32::NAN; 7];
                    scratch.q = vec![99; 5];
                    scratch.w = vec![7; 3];
                    kern.attention(&q, &view, g, n_keys, &mut scratch, &mut got);
                    assert_eq!(bits(&got), bits(&want), "{kern:?} keys {n_keys} g {g}");
                }
            }
        }
    }
}

#[test]
fn variant_names_round_trip() {
    for v in Variant::ALL {
        assert_eq!(v.name().parse::<Variant>().unwrap(), v);
        assert_eq!(v.to_string(), v.name());
    }
    assert_eq!(" AVX2 ".parse::<Variant>().unwrap(), Variant::Avx2);
    assert!(matches!(
        "sse9".parse::<Variant>(),
        Err(KernelError::UnknownVariant(_))
    ));
    assert_eq!(
        Kernels::new(Variant::Scalar).unwrap().variant(),
        Variant::Scalar
    );
    for v in Variant::ALL {
        assert_eq!(Kernels::new(v).is_ok(), v.is_available());
    }
    assert!(Kernels::best().variant().is_available());
}

#[test]
fn block_matrix_rejects_bad_shapes() {
    let shape = |r: Result<BlockMatrix, KernelError>| matches!(r, Err(KernelError::Shape { .. }));
    assert!(shape(BlockMatrix::new(
        BlockKind::Q8,
        1,
        31,
        vec![0.0],
        vec![],
        vec![0; 31]
    )));
    assert!(shape(BlockMatrix::new(
        BlockKind::Q8,
        1,
        32,
        vec![],
        vec![],
        vec![0; 32]
    )));
    assert!(shape(BlockMatrix::new(
        BlockKind::Q8,
        1,
        32,
        vec![1.0],
        vec![1.0],
        vec![0; 32]
    )));
    assert!(shape(BlockMatrix::new(
        BlockKind::Q4,
        1,
        32,
        vec![1.0],
        vec![],
        vec![0; 32]
    )));
    assert!(shape(BlockMatrix::new(
        BlockKind::Q4,
        1,
        32,
        vec![1.0],
        vec![0.0],
        vec![16; 32]
    )));
    assert!(shape(BlockMatrix::new(
        BlockKind::Q8,
        usize::MAX,
        64,
        vec![],
        vec![],
        vec![]
    )));
    assert!(shape(BlockMatrix::quantize_f32(2, 32, &[0.0; 63])));
    let m = BlockMatrix::quantize_f32(1, 32, &[0.5; 32]).unwrap();
    let mut row = [0f32; 32];
    m.dequant_row(0, &mut row);
    assert!(row.iter().all(|&x| (x - 0.5).abs() < 1e-6));
}

// ---------------------------------------------------------------------------
// Extended conformance: batch sizes, unaligned ranges, real shapes, special
// values, every attention length, a dense exp sweep.
// ---------------------------------------------------------------------------

/// The SIMD variants the CPU supports are reported available, so the
/// conformance tests cannot silently skip one.
#[test]
fn simd_variants_available_where_the_cpu_has_them() {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        assert_eq!(Variant::Avx2.is_available(), avx2);
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("fma");
        assert_eq!(Variant::Avx512.is_available(), avx512);
        assert!(!Variant::Neon.is_available() && !Variant::NeonDot.is_available());
    }
    #[cfg(target_arch = "aarch64")]
    {
        assert!(Variant::Neon.is_available());
        assert_eq!(
            Variant::NeonDot.is_available(),
            std::arch::is_aarch64_feature_detected!("dotprod")
        );
        assert!(!Variant::Avx2.is_available() && !Variant::Avx512.is_available());
    }
    eprintln!("kernel variants available: {:?}", Kernels::available());
}

/// A matrix with awkward rows mixed in: extreme quants (-128 and 127 for
/// Q8, 0 and 15 for Q4), zero, subnormal and negative scales and mins.
fn special_matrix(rng: &mut Rng, kind: BlockKind, rows: usize, cols: usize) -> BlockMatrix {
    let m = random_matrix(rng, kind, rows, cols);
    let nb = cols / QK;
    let (mut scales, mut mins, mut quants) =
        (m.scales().to_vec(), m.mins().to_vec(), m.quants().to_vec());
    let (qmin, qmax) = match kind {
        BlockKind::Q8 => (-128i8, 127i8),
        BlockKind::Q4 => (0, 15),
    };
    for r in 0..rows {
        match r % 7 {
            0 => quants[r * cols..(r + 1) * cols].fill(qmin),
            1 => quants[r * cols..(r + 1) * cols].fill(qmax),
            2 => scales[r * nb..(r + 1) * nb].fill(0.0),
            3 => {
                for (i, s) in scales[r * nb..(r + 1) * nb].iter_mut().enumerate() {
                    *s = if i % 2 == 0 { 1e-40 } else { -3.5e-3 };
                }
            }
            4 if kind == BlockKind::Q4 => mins[r * nb..(r + 1) * nb].fill(-1e-41),
            _ => {}
        }
    }
    BlockMatrix::new(kind, rows, cols, scales, mins, quants).unwrap()
}

/// `n` activation rows of `cols` values with special blocks mixed in: all
/// zero (d = 0), one non-zero value, +-equal magnitudes (quants +-127),
/// huge and tiny magnitudes.
fn special_activations(rng: &mut Rng, n: usize, cols: usize) -> QuantizedRows {
    let mut x: Vec<f32> = (0..n * cols).map(|_| rng.value()).collect();
    for (bi, b) in x.chunks_exact_mut(QK).enumerate() {
        match bi % 11 {
            0 => b.fill(0.0),
            1 => {
                b.fill(0.0);
                b[bi % QK] = -2.5;
            }
            2 => {
                for (i, v) in b.iter_mut().enumerate() {
                    *v = if i % 3 == 0 { 7.0 } else { -7.0 };
                }
            }
            3 => b.iter_mut().for_each(|v| *v *= 1e25),
            4 => b.iter_mut().for_each(|v| *v *= 1e-35),
            _ => {}
        }
    }
    let mut qx = QuantizedRows::new();
    qx.quantize(&x, cols);
    qx
}

#[test]
fn matmul_variants_match_scalar_on_real_shapes_batches_and_ranges() {
    let mut rng = Rng(4);
    let scalar = Kernels::scalar();
    for cols in [576usize, 1536] {
        for kind in [BlockKind::Q8, BlockKind::Q4] {
            let rows = 53; // not a multiple of any group size
            let m = special_matrix(&mut rng, kind, rows, cols);
            let want_w = scalar.pack_matrix(m.clone());
            let packed: Vec<(Kernels, PackedMatrix)> = variants()
                .into_iter()
                .map(|k| (k, k.pack_matrix(m.clone())))
                .collect();
            for n in [1usize, 3, 8, 13, 64] {
                let qx = special_activations(&mut rng, n, cols);
                let want = matmul_all(&scalar, &want_w, &qx, 0..rows);
                for (k, w) in &packed {
                    for r in [0..rows, 0..1, 5..6, 3..29, 16..48, 17..rows, rows - 1..rows] {
                        let got = matmul_all(k, w, &qx, r.clone());
                        for t in 0..n {
                            assert_eq!(
                                bits(&got[t * r.len()..(t + 1) * r.len()]),
                                bits(&want[t * rows + r.start..t * rows + r.end]),
                                "{k:?} {kind:?} k={cols} n={n} rows {r:?} t={t}"
                            );
                        }
                    }
                    // An empty range writes nothing.
                    let mut empty: Vec<&mut [f32]> = (0..n).map(|_| &mut [][..]).collect();
                    k.matmul(w, &qx, 7..7, &mut empty);
                }
            }
        }
    }
}

/// A K/V cache of `cap` positions (rows of [`Rng::value`], K times
/// `kscale`, quantized as the model does), special rows mixed in: all
/// zeros, one huge value among small ones, negative zeros; the last K
/// tile's positions past `cap` are garbage (attention must ignore keys
/// past `n_keys`).
fn kv_cache(rng: &mut Rng, n_kv: usize, hd: usize, cap: usize, kscale: f32) -> KvBuf {
    let mut kv = KvBuf::new(n_kv, hd, cap);
    let row = |rng: &mut Rng, i: usize, scale: f32| -> Vec<f32> {
        let mut r: Vec<f32> = (0..hd).map(|_| rng.value() * scale).collect();
        match i % 23 {
            5 => r.fill(0.0),
            11 => r[i % hd] = 1e6 * scale,
            17 => r.fill(-0.0),
            _ => {}
        }
        r
    };
    for t in 0..cap {
        for g in 0..n_kv {
            let i = t * n_kv + g;
            let k = row(rng, i, kscale);
            let v = row(rng, i + 3, 1.0);
            kv.set(t, g, &k, &v);
        }
    }
    kv
}

#[test]
fn attention_variants_match_scalar_every_length() {
    let mut rng = Rng(5);
    let scalar = Kernels::scalar();
    // (n_kv, head_dim): the real shape, and dims that are not multiples of
    // 4, 8 or 16 (SIMD tails, padded K groups).
    for (n_kv, hd, kscale) in [
        (3usize, 64usize, 0.3f32),
        (3, 64, 30.0),
        (1, 72, 1.0),
        (2, 8, 1.0),
        (1, 3, 5.0),
    ] {
        let cap = 75;
        let kv = kv_cache(&mut rng, n_kv, hd, cap, kscale);
        let view = kv.view();
        for n_keys in 1..=cap {
            let mut q: Vec<f32> = (0..hd).map(|_| rng.value()).collect();
            match n_keys % 13 {
                3 => q.fill(0.0),
                7 => q[n_keys % hd] = -1e5,
                _ => {}
            }
            let g = n_keys % n_kv;
            let mut want = vec![0f32; hd];
            scalar.attention(&q, &view, g, n_keys, &mut AttnScratch::new(), &mut want);
            assert!(want.iter().all(|x| x.is_finite()));
            for kern in variants() {
                let mut got = vec![0f32; hd];
                kern.attention(&q, &view, g, n_keys, &mut AttnScratch::new(), &mut got);
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{kern:?} n_kv {n_kv} hd {hd} keys {n_keys}"
                );
            }
        }
    }
    // Long contexts, with large scores so that many e_t underflow to 0.
    for kscale in [0.3f32, 6.0] {
        let (n_kv, hd, cap) = (3, 64, 2050);
        let kv = kv_cache(&mut rng, n_kv, hd, cap, kscale);
        let view = kv.view();
        for n_keys in [2047, 2048, 2050] {
            for g in 0..n_kv {
                let q: Vec<f32> = (0..hd).map(|_| rng.value()).collect();
                let mut want = vec![0f32; hd];
                scalar.attention(&q, &view, g, n_keys, &mut AttnScratch::new(), &mut want);
                assert!(want.iter().all(|x| x.is_finite()));
                for kern in variants() {
                    let mut got = vec![0f32; hd];
                    kern.attention(&q, &view, g, n_keys, &mut AttnScratch::new(), &mut got);
                    assert_eq!(bits(&got), bits(&want), "{kern:?} keys {n_keys} g {g}");
                }
            }
        }
    }
}

/// The vector values the reductions and norms are tested on: random, with
/// zeros of both signs, subnormals, huge values and infinities mixed in.
fn special_values(rng: &mut Rng, n: usize, with_inf: bool) -> Vec<f32> {
    (0..n)
        .map(|i| match rng.below(60) {
            0 => -0.0,
            1 => 1e-42,
            2 => -3e-39,
            3 => 1e30,
            4 if with_inf => f32::INFINITY,
            5 if with_inf => f32::NEG_INFINITY,
            _ => rng.value() * (1 + i % 3) as f32,
        })
        .collect()
}

#[test]
fn sum16_rmsnorm_exp_sub_variants_match_scalar_every_length() {
    let mut rng = Rng(6);
    let scalar = Kernels::scalar();
    let lens: Vec<usize> = (0..=70).chain([576, 1536, 49152, 49153]).collect();
    for &n in &lens {
        for with_inf in [false, true] {
            let x = special_values(&mut rng, n, with_inf);
            let w = special_values(&mut rng, n, false);
            let want_sum = scalar.sum16(&x);
            let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut want_exp = vec![0f32; n];
            let mut want_exp3 = vec![0f32; n];
            scalar.exp_sub(&x, m, &mut want_exp);
            scalar.exp_sub(&x, -3.25, &mut want_exp3);
            let mut want_norm = vec![0f32; n];
            if n > 0 {
                scalar.rmsnorm(&x, &w, 1e-5, &mut want_norm);
            }
            for k in variants() {
                assert_eq!(bits1(k.sum16(&x)), bits1(want_sum), "{k:?} sum16 n={n}");
                let mut got = vec![f32::NAN; n];
                k.exp_sub(&x, m, &mut got);
                assert_eq!(bits(&got), bits(&want_exp), "{k:?} exp_sub n={n}");
                k.exp_sub(&x, -3.25, &mut got);
                assert_eq!(bits(&got), bits(&want_exp3), "{k:?} exp_sub n={n}");
                if n > 0 {
                    let mut got = vec![f32::NAN; n];
                    k.rmsnorm(&x, &w, 1e-5, &mut got);
                    assert_eq!(bits(&got), bits(&want_norm), "{k:?} rmsnorm n={n}");
                }
            }
        }
    }
    // RMSNorm of an all-zero row (r = 1/sqrt(eps)) and with eps = 0.
    for eps in [1e-5f32, 0.0] {
        let x = vec![0.0f32; 37];
        let w = vec![1.5f32; 37];
        let mut want = vec![0f32; 37];
        scalar.rmsnorm(&x, &w, eps, &mut want);
        for k in variants() {
            let mut got = vec![0f32; 37];
            k.rmsnorm(&x, &w, eps, &mut got);
            assert_eq!(bits(&got), bits(&want), "{k:?} eps {eps}");
        }
    }
}

/// Compares every variant's `exp_sub(xs, 0)` with the scalar one.
fn check_exp(xs: &[f32], what: &str) {
    let scalar = Kernels::scalar();
    let mut want = vec![0f32; xs.len()];
    scalar.exp_sub(xs, 0.0, &mut want);
    for k in variants() {
        let mut got = vec![0f32; xs.len()];
        k.exp_sub(xs, 0.0, &mut got);
        if let Some(i) = (0..xs.len()).find(|&i| bits1(got[i]) != bits1(want[i])) {
            panic!(
                "{k:?} exp({:e} = {:#010x}) = {:#010x}, spec {:#010x} ({what})",
                xs[i],
                xs[i].to_bits(),
                got[i].to_bits(),
                want[i].to_bits()
            );
        }
    }
}

/// Stride for the dense sweeps: every f32 on x86_64; off x86_64 (aarch64
/// runs under qemu, 10-50x slower) a sample.
const DENSE: usize = if cfg!(target_arch = "x86_64") { 1 } else { 97 };

/// The f32 from `a` to `b` (same sign, by bit pattern), every `DENSE`th.
fn f32_range(a: f32, b: f32) -> Vec<f32> {
    let (lo, hi) = if a.to_bits() <= b.to_bits() {
        (a.to_bits(), b.to_bits())
    } else {
        (b.to_bits(), a.to_bits())
    };
    (lo..=hi).step_by(DENSE).map(f32::from_bits).collect()
}

#[test]
fn exp_variants_match_spec_dense_sweep() {
    // Every 61st bit pattern: both signs, all exponents, subnormals,
    // infinities, NaNs with many payloads.
    let step = 61 * DENSE as u64;
    let mut start = 0u64;
    while start < 1 << 32 {
        let end = (start + step * 65536).min(1 << 32);
        let xs: Vec<f32> = (start..end)
            .step_by(step as usize)
            .map(|b| f32::from_bits(b as u32))
            .collect();
        check_exp(&xs, "bit-pattern sweep");
        start = end;
    }
    // Every f32 near the cut-offs (results near f32::MAX, subnormal results
    // just above the lower cut-off) and the cut-offs themselves.
    let hi = f32::from_bits(0x42b1_7218);
    let lo = f32::from_bits(0xc2ae_ac50);
    check_exp(&f32_range(88.0, 89.0), "upper cut-off");
    check_exp(&f32_range(-87.0, -88.0), "lower cut-off");
    check_exp(&[hi, lo, -hi, -lo], "cut-offs exactly");
    // Every f32 in [-1, 1] with |x| >= 2^-8, and all tiny magnitudes by a
    // coarser step.
    check_exp(&f32_range(2f32.powi(-8), 1.0), "(0, 1]");
    check_exp(&f32_range(-(2f32.powi(-8)), -1.0), "[-1, 0)");
    let tiny: Vec<f32> = (0..0x3b80_0000u32)
        .step_by(7 * DENSE)
        .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
        .collect();
    check_exp(&tiny, "tiny");
    // Around every switch of k, x = (k + 1/2) ln 2: the rounding of
    // x * log2e decides k there.
    let mut xs = Vec::new();
    for k in -127..=128 {
        let c = ((k as f64 + 0.5) * std::f64::consts::LN_2) as f32;
        for d in -2000i32..=2000 {
            xs.push(f32::from_bits((c.to_bits() as i32 + d) as u32));
        }
    }
    check_exp(&xs, "k switches");
    // Integers and half-integers of k: r near 0.
    let xs: Vec<f32> = (-130 * 64..=130 * 64)
        .map(|i| (i as f64 / 64.0 * std::f64::consts::LN_2) as f32)
        .collect();
    check_exp(&xs, "multiples of ln2/64");
}

/// Rows quantized part by part (column ranges of whole blocks, as threads
/// producing some blocks of every row write them) equal the whole-row
/// quantization bit for bit, on every variant.
#[test]
fn quantized_parts_match_whole_rows() {
    let mut rng = Rng(77);
    let (n, cols) = (3, 160);
    let x: Vec<f32> = (0..n * cols).map(|_| rng.value()).collect();
    for k in variants() {
        let mut want = QuantizedRows::new();
        batch::quantize_rows(&k, &x, cols, &mut want, false);
        let mut got = QuantizedRows::new();
        // Stale contents from an earlier, larger shape must not matter.
        got.quantize(&vec![9.0; 2 * n * cols], cols);
        got.reshape(n, cols);
        let ranges = [0..64, 64..96, 96..160];
        let mut parts = got.parts_mut(&ranges);
        for (r, ps) in ranges.iter().zip(parts.iter_mut()) {
            for (t, p) in ps.iter_mut().enumerate() {
                p.quantize(&k, &x[t * cols + r.start..t * cols + r.end]);
            }
        }
        drop(parts);
        assert_eq!((got.n(), got.k()), (n, cols));
        for t in 0..n {
            let ((wq, wd, ws), (gq, gd, gs)) = (want.row(t), got.row(t));
            assert_eq!(wq, gq, "{} row {t}", k.variant());
            assert_eq!(bits(wd), bits(gd), "{} row {t}", k.variant());
            assert_eq!(bits(ws), bits(gs), "{} row {t}", k.variant());
        }
    }
}

/// An owned KV cache in the [`KvView`] layout, for tests: every position
/// starts as garbage (random K/V bytes including -128, NaN K scales,
/// infinite V scales), which attention must never let into a result for
/// positions it does not see.
pub(crate) struct KvBuf {
    pub k: Vec<i8>,
    pub dk: Vec<f32>,
    pub v: Vec<i8>,
    pub dv: Vec<f32>,
    pub n_kv: usize,
    pub hd: usize,
}

impl KvBuf {
    pub fn new(n_kv: usize, hd: usize, cap: usize) -> KvBuf {
        let tiles = cap.div_ceil(KV_TILE);
        let layout = KvView::layout(n_kv, hd);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut byte = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as i8
        };
        KvBuf {
            k: (0..tiles * n_kv * layout.k_tile_bytes())
                .map(|_| byte())
                .collect(),
            dk: vec![f32::NAN; tiles * n_kv * KV_TILE],
            v: (0..cap * n_kv * hd).map(|_| byte()).collect(),
            dv: vec![f32::INFINITY; cap * n_kv],
            n_kv,
            hd,
        }
    }

    /// Caches position `t` of head `g` as the model does: each row
    /// quantized by [`scalar::quant_head`].
    pub fn set(&mut self, t: usize, g: usize, k: &[f32], v: &[f32]) {
        let l = KvView::layout(self.n_kv, self.hd);
        let mut q = vec![0i8; self.hd];
        self.dk[l.dk_index(t, g)] = scalar::quant_head(k, &mut q);
        for (d, &x) in q.iter().enumerate() {
            self.k[l.k_index(t, g, d)] = x;
        }
        self.dv[l.dv_index(t, g)] = scalar::quant_head(v, &mut q);
        let i = l.v_index(t, g, 0);
        self.v[i..i + self.hd].copy_from_slice(&q);
    }

    /// Dequantized K and V values of position `t`, head `g`, dim `d`.
    pub fn kv_f32(&self, t: usize, g: usize, d: usize) -> (f32, f32) {
        let l = KvView::layout(self.n_kv, self.hd);
        (
            self.dk[l.dk_index(t, g)] * self.k[l.k_index(t, g, d)] as f32,
            self.dv[l.dv_index(t, g)] * self.v[l.v_index(t, g, d)] as f32,
        )
    }

    pub fn view(&self) -> KvView<'_> {
        KvView {
            k: &self.k,
            dk: &self.dk,
            v: &self.v,
            dv: &self.dv,
            n_kv_head: self.n_kv,
            head_dim: self.hd,
            window: 0,
        }
    }
}

/// The coder's frequency tables (section 9): every variant's compilation of
/// the rule gives the portable specification's table, on rows with ties,
/// NaNs, infinities, a single symbol and the real vocabulary's width, at
/// the smallest, default and largest totals.
#[test]
fn freq_table_variants_match_the_spec() {
    let mut rng = Rng(17);
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for n in [1usize, 3, 17, 257, 1000, 49152] {
        rows.push((0..n).map(|_| rng.value() * 8.0).collect());
        rows.push(special_values(&mut rng, n, true));
        rows.push((0..n).map(|i| (i % 5) as f32).collect());
    }
    rows.push(vec![f32::NAN; 64]);
    rows.push(vec![f32::NEG_INFINITY; 64]);
    rows.push({
        let mut v = vec![f32::NAN; 64];
        v[9] = -1e30;
        v
    });
    for total_bits in [24u32, 28, 30] {
        for row in &rows {
            let n = row.len();
            let (mut q, mut want) = (vec![0u32; n], vec![0u32; n]);
            super::freq::fill_spec(row, &mut q, &mut want, total_bits);
            let sum: u64 = want.iter().map(|&f| f as u64).sum();
            assert_eq!(sum, 1u64 << total_bits);
            assert!(want.iter().all(|&f| f >= 1));
            for k in variants() {
                let mut got = vec![0u32; n];
                k.freq_table(row, &mut q, &mut got, total_bits);
                assert!(
                    got == want,
                    "{}: {n} symbols, total 2^{total_bits}",
                    k.variant()
                );
            }
        }
    }
}

/// Every variant's int8 peak loop does all its multiply-adds: the sum of its
/// accumulators is `rounds * macs_per_round * u * s` (wrapping), and the
/// measured ceiling is a positive rate.
#[test]
fn peak_loops_do_all_their_work() {
    for k in variants() {
        let macs = k.peak_macs_per_round();
        assert!(macs >= 8, "{}", k.variant());
        for (rounds, u, s) in [
            (0u64, 3u8, -2i8),
            (1, 3, -2),
            (1000, 127, 127),
            (777, 5, -128),
        ] {
            let want = (rounds as i64 * macs as i64 * u as i64 * s as i64) as i32;
            assert_eq!(
                k.peak_loop(rounds, u, s),
                want,
                "{}: {rounds} rounds of {u} * {s}",
                k.variant()
            );
        }
    }
    let k = Kernels::best();
    let rate = k.int8_peak(1);
    assert!(rate.is_finite() && rate > 1e6, "{}: {rate}", k.variant());
}
