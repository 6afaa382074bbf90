//! The scalar specification kernels against their formulas.

use super::KvBuf;
use crate::kernels::scalar::*;
use crate::kernels::{AttnScratch, BlockKind, BlockMatrix, Kernels, QuantizedRows, QK};

use crate::testing::Rng;

#[test]
fn sum16_order_is_the_specified_one() {
    // Values chosen so that a different association gives another result:
    // 1e8 + 1 - 1e8 depends on order in f32.
    let mut v = vec![0.0f32; 40];
    v[0] = 1e8;
    v[16] = 1.0; // lane 0: 1e8 + 1 = 1e8
    v[32] = -1e8; // lane 0: 0
    v[5] = 1.0;
    assert_eq!(sum16(&v), 1.0);
    // Left to right, both ones are lost against 1e8.
    let seq = v.iter().fold(0.0f32, |a, &b| a + b);
    assert_eq!(seq, 0.0);
    // The tree: lanes 3 and 11 meet first at w=8.
    let mut w = vec![0.0f32; 16];
    w[3] = 1e8;
    w[11] = -1e8;
    w[1] = 0.5;
    assert_eq!(sum16(&w), 0.5);
    assert_eq!(sum16(&[]), 0.0);
    assert_eq!(sumsq16(&[3.0, 4.0]), 25.0);
}

#[test]
fn quantize_block_rules() {
    let mut x = vec![0.0f32; 64];
    for (i, v) in x.iter_mut().enumerate().take(32) {
        *v = (i as f32 - 15.5) * 0.25;
    }
    // second block stays zero
    let mut q = vec![0i8; 64];
    let mut d = vec![0f32; 2];
    let mut s = vec![0f32; 2];
    quantize_row(&x, &mut q, &mut d, &mut s);
    let amax = 15.5f32 * 0.25;
    assert_eq!(d[0].to_bits(), (amax / 127.0f32).to_bits());
    assert_eq!((q[0], q[31]), (-127, 127)); // the extremes map to -+127 exactly
    let inv = 127.0f32 / amax;
    for i in 0..32 {
        assert_eq!(q[i] as f32, (x[i] * inv).round_ties_even(), "{i}");
    }
    let isum: i32 = q[..32].iter().map(|&v| v as i32).sum();
    assert_eq!(s[0].to_bits(), (d[0] * isum as f32).to_bits());
    assert_eq!((d[1], s[1]), (0.0, 0.0));
    assert!(q[32..].iter().all(|&v| v == 0));
}

#[test]
fn matmul_matches_dequantized_reference_closely_and_spec_exactly() {
    let mut rng = Rng(7);
    let (rows, cols, n) = (37, 96, 5);
    for kind in [BlockKind::Q8, BlockKind::Q4] {
        let nb = rows * cols / QK;
        let quants: Vec<i8> = (0..rows * cols)
            .map(|_| match kind {
                BlockKind::Q8 => (rng.next_u64() % 255) as i8,
                BlockKind::Q4 => (rng.next_u64() % 16) as i8,
            })
            .map(|q| if q == -128 { -127 } else { q })
            .collect();
        let scales: Vec<f32> = (0..nb).map(|_| rng.signed() * 0.01).collect();
        let mins: Vec<f32> = match kind {
            BlockKind::Q8 => vec![],
            BlockKind::Q4 => (0..nb).map(|_| rng.signed() * 0.05).collect(),
        };
        let m = BlockMatrix::new(kind, rows, cols, scales, mins, quants).unwrap();
        let x: Vec<f32> = (0..n * cols).map(|_| rng.signed() * 3.0).collect();
        let mut qx = QuantizedRows::new();
        qx.quantize(&x, cols);
        let k = Kernels::scalar();
        let pm = k.pack_matrix(m.clone());
        let mut full = vec![0f32; n * rows];
        {
            let mut outs: Vec<&mut [f32]> = full.chunks_mut(rows).collect();
            k.matmul(&pm, &qx, 0..rows, &mut outs);
        }
        // Split row ranges give the same bits.
        let mut split = vec![0f32; n * rows];
        for r in [0..5, 5..16, 16..37] {
            let mut tmp = vec![0f32; n * r.len()];
            let mut outs: Vec<&mut [f32]> = tmp.chunks_mut(r.len()).collect();
            k.matmul(&pm, &qx, r.clone(), &mut outs);
            for t in 0..n {
                split[t * rows + r.start..t * rows + r.end]
                    .copy_from_slice(&tmp[t * r.len()..(t + 1) * r.len()]);
            }
        }
        assert!(full
            .iter()
            .zip(&split)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // Independent literal evaluation of the spec formula.
        let mut wrow = vec![0f32; cols];
        for t in 0..n {
            let (aq, ad, asum) = qx.row(t);
            for r in 0..rows {
                let mut acc = 0.0f32;
                for b in 0..cols / QK {
                    let mut isum = 0i32;
                    for i in 0..QK {
                        isum += m.quants()[r * cols + b * QK + i] as i32 * aq[b * QK + i] as i32;
                    }
                    let dw = m.scales()[r * cols / QK + b];
                    acc = f32::mul_add(dw * ad[b], isum as f32, acc);
                    if kind == BlockKind::Q4 {
                        acc = f32::mul_add(m.mins()[r * cols / QK + b], asum[b], acc);
                    }
                }
                assert_eq!(acc.to_bits(), full[t * rows + r].to_bits());
                // And it approximates the float product.
                m.dequant_row(r, &mut wrow);
                let exact: f64 = wrow
                    .iter()
                    .zip(&x[t * cols..(t + 1) * cols])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let mag: f64 = wrow.iter().map(|a| a.abs() as f64).sum::<f64>() * 3.0;
                assert!((acc as f64 - exact).abs() <= mag * 0.01, "{acc} vs {exact}");
            }
        }
    }
}

#[test]
fn rmsnorm_formula() {
    let x: Vec<f32> = (0..40).map(|i| i as f32 * 0.37 - 5.0).collect();
    let w: Vec<f32> = (0..40).map(|i| 1.0 + i as f32 * 0.01).collect();
    let mut out = vec![0f32; 40];
    rmsnorm(&x, &w, 1e-5, &mut out);
    let ss = sumsq16(&x);
    let r = 1.0f32 / (ss / 40.0 + 1e-5).sqrt();
    for i in 0..40 {
        assert_eq!(out[i].to_bits(), ((x[i] * r) * w[i]).to_bits());
    }
    let rms = (x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / 40.0).sqrt();
    assert!(((out[3] as f64) - x[3] as f64 / rms * w[3] as f64).abs() < 1e-5);
}

#[test]
fn rope_rotates_pairs() {
    let mut v = [1.0f32, 2.0, 3.0, 4.0];
    rope(&mut v, &[0.0, 1.0], &[1.0, 0.0]);
    assert_eq!(v, [-2.0, 1.0, 3.0, 4.0]);
}

/// The spec against an f64 softmax over the dequantized cache and
/// query (checks the layout and the formula; the int8 rounding itself
/// is the spec).
#[test]
fn attention_matches_f64_softmax_and_layout() {
    let mut rng = Rng(11);
    let (n_kv, hd, n_keys) = (3usize, 64usize, 37usize);
    let mut kv = KvBuf::new(n_kv, hd, n_keys);
    for t in 0..n_keys {
        for g in 0..n_kv {
            let k: Vec<f32> = (0..hd).map(|_| rng.signed()).collect();
            let v: Vec<f32> = (0..hd).map(|_| rng.signed()).collect();
            kv.set(t, g, &k, &v);
        }
    }
    let view = kv.view();
    let q: Vec<f32> = (0..hd).map(|_| rng.signed() * 2.0).collect();
    let qp: Vec<f32> = q.iter().map(|&x| x * 0.125).collect();
    let mut qi = vec![0i8; hd];
    let dq = quant_head(&qp, &mut qi);
    let mut out = vec![0f32; hd];
    let mut scratch = AttnScratch::new();
    for g in 0..n_kv {
        for nk in [1, 16, 17, n_keys] {
            attention(&q, &view, g, nk, &mut scratch, &mut out);
            let s: Vec<f64> = (0..nk)
                .map(|t| {
                    (0..hd)
                        .map(|d| dq as f64 * qi[d] as f64 * kv.kv_f32(t, g, d).0 as f64)
                        .sum::<f64>()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..hd {
                let o: f64 = (0..nk)
                    .map(|t| e[t] * kv.kv_f32(t, g, d).1 as f64)
                    .sum::<f64>()
                    / z;
                assert!((o - out[d] as f64).abs() < 1e-5, "g{g} nk{nk} d{d}");
            }
        }
    }
}

/// quant_head: section 2's rule on the whole row.
#[test]
fn quant_head_rule() {
    let mut q = [1i8; 8];
    assert_eq!(
        quant_head(&[0.0, -0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], &mut q),
        0.0
    );
    assert_eq!(q, [0; 8]);
    let x = [1.0f32, -2.54, 0.5, 127.0, -127.0, 0.25, 1e-9, 63.5];
    let d = quant_head(&x, &mut q);
    assert_eq!(d.to_bits(), (127.0f32 / 127.0).to_bits());
    // 0.5 and 63.5 are ties: to even.
    assert_eq!(q, [1, -3, 0, 127, -127, 0, 0, 64]);
    let x = [1e30f32, 1.0, -3e29, 0.0];
    let mut q = [0i8; 4];
    let d = quant_head(&x, &mut q);
    assert_eq!(d.to_bits(), (1e30f32 / 127.0).to_bits());
    assert_eq!(q, [127, 0, -38, 0]);
}

#[test]
fn silu_mul_values() {
    let mut g = [0.0f32, 1.0, -1.0, -100.0, 100.0];
    let u = [1.0f32, 2.0, 1.0, 1.0, 0.5];
    silu_mul(&mut g, &u);
    let want = [0.0f64, 2.0 * 0.7310585786, -0.2689414214, -3.7e-42, 50.0];
    for i in 0..5 {
        assert!((g[i] as f64 - want[i]).abs() < 1e-6, "{i}: {}", g[i]);
    }
}
