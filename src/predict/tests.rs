//! Coder-level tests: round trips of both coders and the coding overhead of
//! the arithmetic coder against the ideal `sum -log2 softmax(l)[token]`.

use super::*;
use crate::coder::CoderKind;
use crate::kernels::Kernels;

use crate::testing::Rng;

/// LM-like rows: Gumbel noise times a per-position sharpness, with the true
/// token drawn from the row's own softmax (a calibrated model). Returns
/// `(rows, tokens, ideal bits)`.
fn lm_like(n: usize, vocab: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<u32>, f64) {
    let mut rng = Rng(seed);
    let mut rows = Vec::new();
    let mut toks = Vec::new();
    let mut ideal = 0.0;
    for _ in 0..n {
        // Sharpness from 0.5 (flat, ~10+ bits) to 6 (confident, < 0.1 bit).
        let s = 0.5 + 5.5 * rng.unit();
        let row: Vec<f32> = (0..vocab)
            .map(|_| (s * -(-rng.unit().ln()).ln()) as f32)
            .collect();
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = row.iter().map(|&l| (l as f64 - m).exp()).collect();
        let z: f64 = e.iter().sum();
        let mut u = rng.unit() * z;
        let mut t = vocab - 1;
        for (i, &ei) in e.iter().enumerate() {
            if u < ei {
                t = i;
                break;
            }
            u -= ei;
        }
        ideal += -(e[t] / z).log2();
        rows.push(row);
        toks.push(t as u32);
    }
    (rows, toks, ideal)
}

fn code(kind: CoderKind, rows: &[Vec<f32>], toks: &[u32], total_bits: u32) -> Vec<u8> {
    let vocab = rows[0].len();
    let mut enc =
        ChunkEncoder::new(kind, Default::default(), Kernels::best(), vocab, total_bits).unwrap();
    for (r, &t) in rows.iter().zip(toks) {
        enc.encode(r, t);
    }
    let bytes = enc.finish();
    let mut dec = ChunkDecoder::new(
        kind,
        Default::default(),
        Kernels::best(),
        vocab,
        total_bits,
        &bytes[..],
    )
    .unwrap();
    for (r, &t) in rows.iter().zip(toks) {
        assert_eq!(dec.decode(r).unwrap(), t);
    }
    assert!(dec.is_canonical());
    bytes
}

#[test]
fn arithmetic_within_half_percent_of_ideal() {
    let (rows, toks, ideal) = lm_like(1000, 49152, 1);
    for bits in [24, 28, 30] {
        let bytes = code(CoderKind::Arithmetic, &rows, &toks, bits);
        let coded = bytes.len() as f64 * 8.0;
        let table = table_bits(&rows, &toks, bits);
        eprintln!(
            "total_bits {bits}: ideal {ideal:.2} bits; table {table:.2} (+{:.5} bits/token); \
             coded {coded} bits ({:+.3}% vs ideal)",
            (table - ideal) / toks.len() as f64,
            100.0 * (coded / ideal - 1.0)
        );
        assert!(coded <= ideal * 1.005, "{coded} vs {ideal}");
        // The range coder itself adds at most the final partial byte.
        assert!(coded <= table + 8.0 + 1e-6, "{coded} vs table {table}");
    }
}

/// `sum -log2(f_t / T)`: the cost of the integer tables, without the coder.
fn table_bits(rows: &[Vec<f32>], toks: &[u32], total_bits: u32) -> f64 {
    let mut p = Softmax::new(Kernels::best(), rows[0].len(), total_bits).unwrap();
    rows.iter()
        .zip(toks)
        .map(|(r, &tok)| {
            let t = p.predict(r);
            total_bits as f64 - (t.freqs()[tok as usize] as f64).log2()
        })
        .sum()
}

#[test]
fn arithmetic_overhead_on_confident_rows() {
    // Very confident rows (~0.05 bit/token) are where the frequency floor
    // and the truncations show most.
    let vocab = 49152;
    let mut rng = Rng(5);
    let mut rows = Vec::new();
    let mut toks = Vec::new();
    let mut ideal = 0.0;
    for _ in 0..400 {
        let mut row: Vec<f32> = (0..vocab).map(|_| (rng.unit() * 4.0) as f32).collect();
        let t = (rng.next_u64() % vocab as u64) as usize;
        row[t] = 18.0;
        let m = 18.0f64;
        let z: f64 = row.iter().map(|&l| (l as f64 - m).exp()).sum();
        ideal += z.log2();
        rows.push(row);
        toks.push(t as u32);
    }
    let bytes = code(CoderKind::Arithmetic, &rows, &toks, 28);
    let coded = bytes.len() as f64 * 8.0;
    let table = table_bits(&rows, &toks, 28);
    eprintln!("confident: ideal {ideal:.3} bits, table {table:.3}, coded {coded} bits");
    // The floor of 1 per symbol bounds the loss: -log2(1 - 49152/2^28) =
    // 2.64e-4 bits per token, plus truncations far below that.
    let per_token = (table - ideal) / toks.len() as f64;
    assert!(per_token < 3.0e-4, "{per_token} bits/token");
    // Ends of stream cost up to 8 bits; per token the loss must be tiny.
    assert!(coded <= ideal * 1.005 + 8.0, "{coded} vs {ideal}");
}

#[test]
fn rank_coder_round_trip_and_size() {
    let (rows, toks, ideal) = lm_like(400, 49152, 2);
    let bytes = code(CoderKind::Rank, &rows, &toks, 28);
    let coded = bytes.len() as f64 * 8.0;
    eprintln!(
        "rank: coded {coded} bits, ideal {ideal:.1}, overhead {:.2}%",
        100.0 * (coded / ideal - 1.0)
    );
    // It cannot beat the ideal code of the same (calibrated) distribution by
    // more than noise, and must stay within a sane factor of it.
    assert!(coded < ideal * 1.6);
}

#[test]
fn small_vocab_both_coders() {
    for kind in [CoderKind::Arithmetic, CoderKind::Rank] {
        for vocab in [1usize, 2, 3, 257] {
            let (rows, toks, _) = lm_like(300, vocab, vocab as u64);
            code(kind, &rows, &toks, 24);
        }
    }
}

#[test]
fn first_token_is_uniform_with_both_coders() {
    let vocab = 49152;
    let (rows, toks, _) = lm_like(50, vocab, 9);
    for kind in [CoderKind::Arithmetic, CoderKind::Rank] {
        for first in [0u32, 1, 12345, vocab as u32 - 1] {
            // Alone: 15.58 bits fit in 2 or 3 bytes (at most one byte of end).
            let mut enc =
                ChunkEncoder::new(kind, Default::default(), Kernels::best(), vocab, 28).unwrap();
            enc.encode_first(vocab, first);
            let alone = enc.finish();
            assert!(alone.len() <= 3, "{}", alone.len());
            let mut dec = ChunkDecoder::new(
                kind,
                Default::default(),
                Kernels::best(),
                vocab,
                28,
                &alone[..],
            )
            .unwrap();
            assert_eq!(dec.decode_first(vocab).unwrap(), first);
            assert!(dec.is_canonical());
            // Followed by model-coded tokens.
            let mut enc =
                ChunkEncoder::new(kind, Default::default(), Kernels::best(), vocab, 28).unwrap();
            enc.encode_first(vocab, first);
            for (r, &t) in rows.iter().zip(&toks) {
                enc.encode(r, t);
            }
            let bytes = enc.finish();
            let mut dec = ChunkDecoder::new(
                kind,
                Default::default(),
                Kernels::best(),
                vocab,
                28,
                &bytes[..],
            )
            .unwrap();
            assert_eq!(dec.decode_first(vocab).unwrap(), first);
            for (r, &t) in rows.iter().zip(&toks) {
                assert_eq!(dec.decode(r).unwrap(), t);
            }
            assert!(dec.is_canonical());
        }
    }
    // Coded as 1 of 3 symbols, token 1 then 2 differ from token 0 in the payload.
    let mut outs = Vec::new();
    for first in 0..3u32 {
        let mut enc = ChunkEncoder::new(
            CoderKind::Arithmetic,
            Default::default(),
            Kernels::best(),
            3,
            28,
        )
        .unwrap();
        enc.encode_first(3, first);
        outs.push(enc.finish());
    }
    assert!(outs[0] != outs[1] && outs[1] != outs[2] && outs[0] != outs[2]);
}

/// Codes `toks` (rows from `rows`) with the adaptive predictor `cfg` and
/// `kernels`, decodes them back; returns the payload.
fn code_adaptive(
    cfg: AdaptiveConfig,
    kernels: Kernels,
    rows: &[Vec<f32>],
    toks: &[u32],
) -> Vec<u8> {
    let vocab = rows[0].len();
    let kind = CoderKind::Arithmetic;
    let mut enc = ChunkEncoder::new(kind, cfg, kernels, vocab, 28).unwrap();
    enc.encode_first(vocab, toks[0]);
    for (r, &t) in rows.iter().zip(&toks[1..]) {
        enc.encode(r, t);
    }
    let bytes = enc.finish();
    let mut dec = ChunkDecoder::new(kind, cfg, kernels, vocab, 28, &bytes[..]).unwrap();
    assert_eq!(dec.decode_first(vocab).unwrap(), toks[0]);
    for (r, &t) in rows.iter().zip(&toks[1..]) {
        assert_eq!(dec.decode(r).unwrap(), t);
    }
    assert!(dec.is_canonical());
    bytes
}

#[test]
fn adaptive_round_trips_with_every_part_and_variant() {
    let (rows, mut toks, _) = lm_like(600, 4096, 7);
    toks.insert(0, 17);
    // A repeated passage for the match model.
    let (first, second) = (toks[50..150].to_vec(), 300..400);
    toks.splice(second, first);
    for flags in 0..4 {
        let cfg = AdaptiveConfig::from_flags(flags).unwrap();
        let reference = code_adaptive(cfg, Kernels::best(), &rows, &toks);
        for v in Kernels::available() {
            let k = Kernels::new(v).unwrap();
            assert!(
                code_adaptive(cfg, k, &rows, &toks) == reference,
                "flags {flags}: {v} gives other bytes"
            );
        }
    }
    assert!(AdaptiveConfig::from_flags(4).is_none());
}

#[test]
fn match_and_sse_learn_a_repeated_stream() {
    // Flat rows: the model knows nothing; a stream that repeats a
    // 200-token passage five times costs far less with the match model.
    let vocab = 1000;
    let rows = vec![vec![0f32; vocab]; 999];
    let mut rng = Rng(3);
    let passage: Vec<u32> = (0..200).map(|_| rng.below(vocab as u64) as u32).collect();
    let toks: Vec<u32> = passage.iter().cycle().take(1000).copied().collect();
    let plain = code_adaptive(AdaptiveConfig::default(), Kernels::best(), &rows, &toks).len();
    let sse = code_adaptive(
        AdaptiveConfig {
            bias: false,
            sse: true,
            ngram: false,
        },
        Kernels::best(),
        &rows,
        &toks,
    )
    .len();
    eprintln!("flat model: {plain} bytes; with match and SSE: {sse} bytes");
    // Plain: ~10 bits per token. With the match model, only the first
    // pass (and the learning) costs.
    assert!(sse * 3 < plain, "{sse} vs {plain}");
}

#[test]
fn bias_learns_frequent_tokens() {
    // Flat rows and a stream over 8 tokens of 1000: the bias learns them.
    let vocab = 1000;
    let rows = vec![vec![0f32; vocab]; 1999];
    let mut rng = Rng(5);
    let toks: Vec<u32> = (0..2000).map(|_| 100 + rng.below(8) as u32).collect();
    let plain = code_adaptive(AdaptiveConfig::default(), Kernels::best(), &rows, &toks).len();
    let bias = code_adaptive(
        AdaptiveConfig {
            bias: true,
            sse: false,
            ngram: false,
        },
        Kernels::best(),
        &rows,
        &toks,
    )
    .len();
    eprintln!("flat model: {plain} bytes; with the bias: {bias} bytes");
    assert!(bias * 2 < plain, "{bias} vs {plain}");
}
