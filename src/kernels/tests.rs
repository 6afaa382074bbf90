//! Conformance: every variant this machine runs against the scalar
//! specification, bit for bit, on awkward shapes and values. A new variant
//! only has to become `is_available()` to be held to these.

use super::*;

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
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Mostly moderate values, sometimes zero, tiny, huge or negative zero.
    fn value(&mut self) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        match self.below(40) {
            0 => 0.0,
            1 => -0.0,
            2 => u * 1e-30,
            3 => u * 1e4,
            _ => u * 3.0,
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
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
            BlockKind::Q8 => rng.next() as i8,
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
            for n in [1, 2, 5, 9] {
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
        let k: Vec<f32> = (0..cap * n_kv * hd).map(|_| rng.value() * 0.3).collect();
        let v: Vec<f32> = (0..cap * n_kv * hd).map(|_| rng.value()).collect();
        let view = KvView {
            k: &k,
            v: &v,
            n_kv_head: n_kv,
            head_dim: hd,
        };
        for n_keys in [1, 2, 15, 16, 17, 33, 80] {
            let q: Vec<f32> = (0..hd).map(|_| rng.value()).collect();
            for g in 0..n_kv {
                let mut want = vec![0f32; hd];
                scalar.attention(&q, &view, g, n_keys, &mut Vec::new(), &mut want);
                assert!(want.iter().all(|x| x.is_finite()));
                for kern in variants() {
                    let mut got = vec![0f32; hd];
                    // A dirty scratch must not matter.
                    let mut scratch = vec![f32::NAN; 7];
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
