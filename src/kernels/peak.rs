//! The machine's int8 multiply-add ceiling, measured at run time.
//!
//! Benchmarks report the matrix kernels' multiply-adds per second as a
//! fraction of what the CPU can do at all, and that differs a lot between
//! CPUs (DESIGN.md section 7), so it is measured rather than assumed: every
//! thread runs its variant's own int8 dot-product instruction on
//! independent accumulators held in registers, with no memory traffic
//! (`vpdpbusd` for AVX-512 VNNI, `vpmaddubsw` + `vpmaddwd` for AVX2, `sdot`
//! or `smull` + `sadalp` for NEON, integer multiply-adds for scalar).
//!
//! Each variant's loop (its table's `peak` entry) runs `iters` rounds with
//! every multiply-add `u * s` and returns the wrapping sum of all its
//! accumulator lanes, `iters * peak_macs * u * s` (wrapping i32): the work
//! cannot be optimized away, and a test checks that it was all done.

use std::time::Instant;

use super::Kernels;

/// The CPU's model name (`/proc/cpuinfo`: `model name`, or `CPU part` on
/// aarch64), else the architecture: every benchmark figure names its CPU.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("CPU part"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, n)| n.trim().to_string())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The scalar tables' loop: 8 independent i32 chains (the inputs are made
/// opaque every round, or the compiler would sum the rounds in one step).
pub(crate) fn peak_scalar(iters: u64, u: u8, s: i8) -> i32 {
    let mut acc = [0i32; SCALAR_CHAINS];
    for _ in 0..iters {
        let (u, s) = std::hint::black_box((u as i32, s as i32));
        for a in acc.iter_mut() {
            *a = a.wrapping_add(u * s);
        }
    }
    acc.iter().fold(0i32, |t, &a| t.wrapping_add(a))
}

/// Multiply-adds per round of [`peak_scalar`].
pub(crate) const SCALAR_CHAINS: usize = 8;

impl Kernels {
    /// The wrapping sum of all accumulator lanes after `iters` rounds of
    /// this variant's peak loop with inputs `u` and `s` (`u <= 127` so that
    /// the signed NEON products see the same value).
    pub fn peak_loop(&self, iters: u64, u: u8, s: i8) -> i32 {
        assert!(u <= 127);
        // SAFETY: see the dispatch module.
        unsafe { (self.ops().peak)(iters, u, s) }
    }

    /// Multiply-adds per round of [`Kernels::peak_loop`].
    pub fn peak_macs_per_round(&self) -> u64 {
        self.ops().peak_macs
    }

    /// Int8 multiply-adds per second that `threads` threads reach with this
    /// variant's dot-product instruction on registers alone: the best of
    /// three runs of about 0.2 s each, after calibrating on one thread.
    pub fn int8_peak(&self, threads: usize) -> f64 {
        let threads = threads.max(1);
        let mut iters = 1u64 << 12;
        loop {
            let t = Instant::now();
            std::hint::black_box(self.peak_loop(iters, 1, 1));
            let dt = t.elapsed().as_secs_f64();
            if dt > 0.02 {
                iters = ((iters as f64 * 0.2 / dt) as u64).max(1);
                break;
            }
            iters *= 4;
        }
        let macs = threads as f64 * iters as f64 * self.peak_macs_per_round() as f64;
        (0..3)
            .map(|_| {
                let t = Instant::now();
                std::thread::scope(|sc| {
                    for _ in 0..threads {
                        sc.spawn(|| std::hint::black_box(self.peak_loop(iters, 1, 1)));
                    }
                });
                macs / t.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max)
    }
}
