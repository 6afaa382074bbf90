//! Execution helpers of the forward pass: parallel per-row steps, matmuls
//! split into row-range jobs over the threads, and the activation buffers
//! kept between calls ([`Scratch`]).
//!
//! Threads split matrix rows and tokens, never a reduction, so the results
//! do not depend on the thread count or the job split.

use super::{Config, Model, Slot};
use crate::kernels::{batch, PackedMatrix, QuantPart, QuantizedRows, QK};
use rayon::prelude::*;
use std::ops::Range;

impl Model {
    /// Whether `n` rows of a cheap per-row step are worth spreading over the
    /// threads (below this, the fork/join costs more than the work).
    fn par_rows(&self, n: usize) -> bool {
        self.threads > 1 && n >= PAR_MIN_ROWS
    }

    /// Runs `f(t, row)` for every row `t` of `buf` (rows of `width`).
    pub(super) fn rows<F>(&self, buf: &mut [f32], width: usize, f: F)
    where
        F: Fn(usize, &mut [f32]) + Sync,
    {
        if self.par_rows(buf.len() / width) {
            buf.par_chunks_exact_mut(width)
                .enumerate()
                .for_each(|(t, r)| f(t, r));
        } else {
            buf.chunks_exact_mut(width)
                .enumerate()
                .for_each(|(t, r)| f(t, r));
        }
    }

    /// Runs `f(t, a_row, b_row)` for every row `t` of two buffers with the
    /// same number of rows (of widths `wa` and `wb`).
    pub(super) fn rows2<F>(&self, a: &mut [f32], wa: usize, b: &mut [f32], wb: usize, f: F)
    where
        F: Fn(usize, &mut [f32], &mut [f32]) + Sync,
    {
        debug_assert_eq!(a.len() / wa, b.len() / wb);
        if self.par_rows(a.len() / wa) {
            a.par_chunks_exact_mut(wa)
                .zip(b.par_chunks_exact_mut(wb))
                .enumerate()
                .for_each(|(t, (ra, rb))| f(t, ra, rb));
        } else {
            a.chunks_exact_mut(wa)
                .zip(b.chunks_exact_mut(wb))
                .enumerate()
                .for_each(|(t, (ra, rb))| f(t, ra, rb));
        }
    }

    /// Per token: `x += h` if `add` (the residual add of the previous
    /// block), then `h = rmsnorm(x, w)`, then the activation quantization
    /// of `h` into `qx` (one pass over the rows).
    pub(super) fn add_norm_quantize(
        &self,
        x: &mut [f32],
        h: &mut [f32],
        add: bool,
        w: &[f32],
        qx: &mut QuantizedRows,
    ) {
        let e = self.cfg.n_embd;
        let k = &self.kernels;
        let par = self.par_rows(x.len() / e);
        batch::prep_quantize_rows(k, x, e, h, e, qx, par, |_, xr, hr| {
            if add {
                residual_add(xr, hr);
            }
            k.rmsnorm(xr, w, self.cfg.rms_eps, hr)
        });
    }

    /// Activation quantization of `x` (`[n, k]`).
    pub(super) fn quantize(&self, qx: &mut QuantizedRows, x: &[f32], k: usize) {
        batch::quantize_rows(&self.kernels, x, k, qx, self.par_rows(x.len() / k));
    }

    /// Row ranges (aligned to the kernel's row granularity) of about
    /// `chunk` rows covering `0..rows`.
    fn row_ranges(&self, rows: usize, chunk: usize) -> Vec<Range<usize>> {
        let gran = self.kernels.row_granularity().max(1);
        let chunk = chunk.max(1).div_ceil(gran) * gran;
        (0..rows)
            .step_by(chunk)
            .map(|s| s..(s + chunk).min(rows))
            .collect()
    }

    /// Rows per matmul job for `total_rows` rows of `x.k()` columns times
    /// `x.n()` activation rows: up to [`JOBS_PER_THREAD`] jobs per thread,
    /// fewer when jobs would drop below [`MIN_JOB_MACS`] (a single decoding
    /// sequence: a job per thread, not dozens of microsecond-sized ones),
    /// never fewer than one per thread.
    fn job_rows(&self, total_rows: usize, x: &QuantizedRows) -> usize {
        if self.threads == 1 {
            return usize::MAX / 2;
        }
        let macs = total_rows * x.k() * x.n();
        let jobs = (macs / MIN_JOB_MACS).clamp(self.threads, self.threads * JOBS_PER_THREAD);
        total_rows.div_ceil(jobs)
    }

    /// `out = W x` (`out` is `[n, W.rows]`) for several matrices sharing the
    /// activations, as one set of row-range jobs over the threads.
    pub(super) fn matmuls(&self, x: &QuantizedRows, mats: &mut [(&PackedMatrix, &mut [f32])]) {
        let total: usize = mats.iter().map(|(w, _)| w.rows()).sum();
        let chunk = self.job_rows(total, x);
        let mut jobs: Vec<MatmulJob<'_, '_>> = Vec::new();
        for (w, out) in mats.iter_mut() {
            let ranges = self.row_ranges(w.rows(), chunk);
            let parts = split_parts(out, w.rows(), &ranges, x.n());
            jobs.extend(ranges.into_iter().zip(parts).map(|(r, p)| (*w, r, p)));
        }
        let run = |(w, r, p): &mut MatmulJob<'_, '_>| self.kernels.matmul(w, x, r.clone(), p);
        if jobs.len() == 1 {
            jobs.iter_mut().for_each(run);
        } else {
            jobs.par_iter_mut().with_max_len(1).for_each(run);
        }
    }

    /// `gate = act(Wgate x) * Wup x`, `up = Wup x` (both `[n, F]`), and
    /// `gate` quantized into `qg`: each job computes one row range (whole
    /// quantization blocks) of both, applies SwiGLU (llama) or GeGLU
    /// (gemma3) to it and quantizes it right away (element-wise and
    /// block-wise, so the range split cannot change a value).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gate_up(
        &self,
        act: Glu,
        x: &QuantizedRows,
        wg: &PackedMatrix,
        wu: &PackedMatrix,
        gate: &mut [f32],
        up: &mut [f32],
        qg: &mut QuantizedRows,
    ) {
        let rows = wg.rows();
        debug_assert_eq!(rows, wu.rows());
        let chunk = (self.job_rows(2 * rows, x) / 2).div_ceil(QK) * QK;
        let ranges = self.row_ranges(rows, chunk);
        debug_assert!(ranges.iter().all(|r| r.start % QK == 0));
        let gp = split_parts(gate, rows, &ranges, x.n());
        let upp = split_parts(up, rows, &ranges, x.n());
        qg.reshape(x.n(), rows);
        let qp = qg.parts_mut(&ranges);
        let mut jobs: Vec<GateUpJob<'_, '_>> = ranges
            .into_iter()
            .zip(gp)
            .zip(upp)
            .zip(qp)
            .map(|(((r, g), u), q)| (r, g, u, q))
            .collect();
        let run = |(r, g, u, q): &mut GateUpJob<'_, '_>| {
            self.kernels.matmul(wg, x, r.clone(), g);
            self.kernels.matmul(wu, x, r.clone(), u);
            SILU_SCRATCH.with(|tmp| {
                let tmp = &mut tmp.borrow_mut();
                for ((g, u), q) in g.iter_mut().zip(u.iter()).zip(q.iter_mut()) {
                    match act {
                        Glu::Silu => batch::silu_mul(&self.kernels, g, u, tmp),
                        Glu::GeluTanh => batch::gelu_mul(&self.kernels, g, u, tmp),
                    }
                    q.quantize(&self.kernels, g);
                }
            });
        };
        if jobs.len() == 1 {
            jobs.iter_mut().for_each(run);
        } else {
            jobs.par_iter_mut().with_max_len(1).for_each(run);
        }
    }
}

/// The gated activation of the FFN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Glu {
    /// `silu(gate) * up` (llama).
    Silu,
    /// `gelu_tanh(gate) * up` (gemma3).
    GeluTanh,
}

/// A matmul job: matrix, output row range, per token the output slice.
type MatmulJob<'w, 'o> = (&'w PackedMatrix, Range<usize>, Vec<&'o mut [f32]>);

/// A gate/up job: row range, per token the gate and up output slices and
/// the quantized gate's part.
type GateUpJob<'o, 'q> = (
    Range<usize>,
    Vec<&'o mut [f32]>,
    Vec<&'o mut [f32]>,
    Vec<QuantPart<'q>>,
);

/// Below this many rows, cheap per-row steps (norms, RoPE, quantization)
/// run on one thread.
const PAR_MIN_ROWS: usize = 16;

/// Matmul row-range jobs per thread: several, so that work stealing evens out
/// threads that progress unevenly (e.g. one shares its core with another
/// process).
const JOBS_PER_THREAD: usize = 8;

/// Smallest matmul job (multiply-adds) worth its fork/join.
const MIN_JOB_MACS: usize = 1 << 20;

thread_local! {
    /// Per worker thread: SwiGLU temporaries (two rows of a job's range).
    static SILU_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers of a forward call, kept by the model between calls so that big
/// activations are neither allocated nor zeroed per call. They grow to the
/// largest batch seen.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    pub(super) slots: Vec<Slot>,
    pub(super) ids: Vec<usize>,
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    kb: Vec<f32>,
    vb: Vec<f32>,
    att: Vec<f32>,
    att_jobs: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Quantized matmul inputs: the normed residual or the attention
    /// output, and the FFN hidden state.
    qx: QuantizedRows,
    qg: QuantizedRows,
}

/// The buffers of one forward call over `n` new tokens, cut from a
/// [`Scratch`] (`E = n_embd`, `F = n_ff`, `KV = n_kv_head * head_dim`).
pub(super) struct Buffers<'a> {
    /// Which sequence and position each new token is `[n]`.
    pub(super) slots: &'a [Slot],
    /// Token ids `[n]`.
    pub(super) ids: &'a [usize],
    /// Residual stream `[n, E]`.
    pub(super) x: &'a mut [f32],
    /// Normed input / matmul output `[n, E]`.
    pub(super) h: &'a mut [f32],
    /// Queries `[n, Q]` (`Q = n_head * head_dim`).
    pub(super) q: &'a mut [f32],
    /// New keys `[n, KV]`.
    pub(super) kb: &'a mut [f32],
    /// New values `[n, KV]`.
    pub(super) vb: &'a mut [f32],
    /// Attention output `[n, Q]`.
    pub(super) att: &'a mut [f32],
    /// The same, in attention job order `[n, Q]`.
    pub(super) att_jobs: &'a mut [f32],
    /// FFN hidden state `[n, F]`.
    pub(super) gate: &'a mut [f32],
    /// `[n, F]`.
    pub(super) up: &'a mut [f32],
    /// Quantized matmul input: the normed residual or the attention output.
    pub(super) qx: &'a mut QuantizedRows,
    /// Quantized FFN hidden state.
    pub(super) qg: &'a mut QuantizedRows,
}

impl Scratch {
    /// The buffers for the batch in `slots` / `ids`, grown if needed.
    pub(super) fn buffers(&mut self, cfg: &Config) -> Buffers<'_> {
        let (e, f, kvd, qd) = (cfg.n_embd, cfg.n_ff, cfg.kv_dim(), cfg.q_dim());
        let n = self.slots.len();
        let Scratch {
            slots,
            ids,
            x,
            h,
            q,
            kb,
            vb,
            att,
            att_jobs,
            gate,
            up,
            qx,
            qg,
        } = self;
        Buffers {
            slots,
            ids,
            x: grown(x, n * e),
            h: grown(h, n * e),
            q: grown(q, n * qd),
            kb: grown(kb, n * kvd),
            vb: grown(vb, n * kvd),
            att: grown(att, n * qd),
            att_jobs: grown(att_jobs, n * qd),
            gate: grown(gate, n * f),
            up: grown(up, n * f),
            qx,
            qg,
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        let f = [
            &self.x,
            &self.h,
            &self.q,
            &self.kb,
            &self.vb,
            &self.att,
            &self.att_jobs,
            &self.gate,
            &self.up,
        ];
        f.iter().map(|v| v.capacity() * 4).sum::<usize>()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.ids.capacity() * 8
            // The quantized rows of the last call: q (1 byte) + d, s (4 bytes
            // per 32) per value; earlier, wider calls may have left more.
            + (self.qx.n() * self.qx.k() + self.qg.n() * self.qg.k()) * 5 / 4
    }
}

/// The first `n` values of `v`, growing it (zero-filled once) if needed.
fn grown(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Cuts `out` (`[n][rows]`) into, per range, the `n` slices of that range's
/// columns: `parts[c][t] = out[t * rows + ranges[c]]`.
fn split_parts<'a>(
    out: &'a mut [f32],
    rows: usize,
    ranges: &[Range<usize>],
    n: usize,
) -> Vec<Vec<&'a mut [f32]>> {
    debug_assert_eq!(out.len(), n * rows);
    let mut parts: Vec<Vec<&mut [f32]>> = ranges.iter().map(|_| Vec::with_capacity(n)).collect();
    for orow in out.chunks_exact_mut(rows) {
        let mut rest = orow;
        for (p, r) in parts.iter_mut().zip(ranges) {
            let (a, b) = rest.split_at_mut(r.len());
            p.push(a);
            rest = b;
        }
    }
    parts
}

/// Cuts the items of weights `w` into `parts` contiguous runs of about
/// equal total weight; returns the runs' lengths (they sum to `w.len()`; a
/// run may be empty when the weights are very uneven).
pub(super) fn balanced_runs(w: &[usize], parts: usize) -> Vec<usize> {
    let total: usize = w.iter().sum();
    let parts = parts.clamp(1, w.len().max(1));
    let mut lens = Vec::with_capacity(parts);
    let (mut start, mut acc) = (0, 0);
    for p in 1..parts {
        let goal = total * p / parts;
        let mut n = start;
        while n < w.len() - 1 && (n == start || acc < goal) {
            acc += w[n];
            n += 1;
        }
        lens.push(n - start);
        start = n;
    }
    lens.push(w.len() - start);
    lens
}

/// `x += y` element-wise (the residual adds).
fn residual_add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
