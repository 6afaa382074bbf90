//! The block's shared token n-gram model (docs/NUMERICS.md section 12):
//! counts of which token followed each context of the last 3, 4, 6 or 8
//! tokens, in every stream of a block, mixed into each stream's table.
//!
//! Why shared: a block is cut into up to 16 streams that decode side by
//! side, and each stream's model sees only its own window (2048 tokens at
//! the default level). Structured text repeats across the whole block (a
//! JSON file's user objects and labels, a log's package names): what one
//! stream has seen, the others may use. The state is read by every stream
//! of a step and written only between steps, in stream order, so the
//! decoder (all streams in one batch) and the encoder (stream by stream,
//! then this pass) see the same state at every token.
//!
//! Shapes: `2^bits` buckets of 8 u32 words (a context check and 7 packed
//! `(token, count)` slots), `bits` from the block's token count (12..=22);
//! `KEYS` u16 mixing weights. Everything is integer.

use super::adaptive::log2_q8;
use crate::coder::{FreqTable, Frequencies, Interval};

/// Context lengths, shortest first.
pub const ORDERS: [usize; 4] = [3, 4, 6, 8];
/// Slots per bucket.
const SLOTS: usize = 7;
/// Bits of a slot's count (the token takes the other 18).
const COUNT_BITS: u32 = 14;
const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;
/// Largest vocabulary whose ids fit a slot.
pub const MAX_VOCAB: usize = 1 << (32 - COUNT_BITS);
/// log2 of the weight scale: the mixed table totals `2^(T + MIX_BITS)`.
pub const MIX_BITS: u32 = 4;
/// Largest `total_bits` of the tables the mix takes (the mixed total must
/// fit the range coder's `2^32`).
pub const MAX_TABLE_BITS: u32 = 32 - MIX_BITS;
/// Weight contexts: order x count class x distinct class.
const COUNT_CLASSES: usize = 15;
const DISTINCT_CLASSES: usize = 4;
const KEYS: usize = ORDERS.len() * COUNT_CLASSES * DISTINCT_CLASSES;
/// Initial weight of the n-gram, Q16 (0.3).
const WEIGHT_INIT: u16 = 19661;
/// Weight step, Q16 (0.02).
const WEIGHT_RATE: i64 = 1311;
/// The gate's average: `a += (d - a) >> GATE_RATE`.
const GATE_RATE: u32 = 6;

/// The shared state of one block (see the module doc).
#[derive(Debug, Clone)]
pub struct Ngram {
    bits: u32,
    buckets: Vec<[u32; 1 + SLOTS]>,
    /// Q16 weight of the n-gram per key.
    weight: Vec<u16>,
    /// Per key, a running average of what mixing gained on the coded
    /// tokens (log2 in Q14, > 0: it paid): the mix is used only then.
    gate: Vec<i32>,
    total_bits: u32,
}

/// What the model says for one token: the context found (if any) and how
/// it mixes. Also what the update after the token needs.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Weight key, or `None` when no context of any order was seen.
    key: Option<usize>,
    /// Whether the mixed table codes the token (the key's gate is open).
    used: bool,
    /// Weight of the table, `2^MIX_BITS - m` (m: the n-gram's share in
    /// sixteenths).
    w: u64,
    /// The context's tokens (ascending ids) and their counts; `len` used.
    toks: [u32; SLOTS],
    counts: [u32; SLOTS],
    len: usize,
    /// Sum of the counts.
    n: u64,
    /// The n-gram's share of the mixed total given to each token.
    extra: [u64; SLOTS],
}

/// Hash of the `o` tokens before position `at` of `h`, for order index
/// `oi`: `(bucket index, check)`.
fn context_hash(h: &[u32], oi: usize, bits: u32) -> (usize, u32) {
    let mut g = (oi as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for &x in &h[h.len() - ORDERS[oi]..] {
        g = (g ^ x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    ((g >> (64 - bits)) as usize, (g >> 8) as u32)
}

/// Class of a context's total count: itself below 8, then one per octave.
fn count_class(n: u64) -> usize {
    if n < 8 {
        n as usize
    } else {
        (8 + (63 - n.leading_zeros() as usize) - 3).min(COUNT_CLASSES - 1)
    }
}

impl Ngram {
    /// A fresh model for a block of `tokens` tokens whose tables total
    /// `2^total_bits` (at most [`MAX_TABLE_BITS`]).
    pub fn new(tokens: u64, total_bits: u32) -> Ngram {
        debug_assert!(total_bits <= MAX_TABLE_BITS);
        let want = tokens.saturating_mul(ORDERS.len() as u64).max(1);
        let bits = (64 - (want - 1).leading_zeros()).clamp(12, 22);
        Ngram {
            bits,
            buckets: vec![[0; 1 + SLOTS]; 1 << bits],
            weight: vec![WEIGHT_INIT; KEYS],
            gate: vec![0; KEYS],
            total_bits,
        }
    }

    /// The mix for the token after `history` (the stream's tokens so far,
    /// its primer included): the longest order whose context was seen.
    pub fn mix(&self, history: &[u32]) -> Mix {
        let mut mix = Mix {
            key: None,
            used: false,
            w: 1 << MIX_BITS,
            toks: [0; SLOTS],
            counts: [0; SLOTS],
            len: 0,
            n: 0,
            extra: [0; SLOTS],
        };
        for oi in (0..ORDERS.len()).rev() {
            if history.len() < ORDERS[oi] {
                continue;
            }
            let (i, check) = context_hash(history, oi, self.bits);
            let b = &self.buckets[i];
            if b[0] != check || b[1..].iter().all(|&s| s & COUNT_MASK == 0) {
                continue;
            }
            for &s in &b[1..] {
                let c = s & COUNT_MASK;
                if c > 0 {
                    mix.toks[mix.len] = s >> COUNT_BITS;
                    mix.counts[mix.len] = c;
                    mix.n += c as u64;
                    mix.len += 1;
                }
            }
            // Ascending token ids (slots hold distinct tokens).
            let len = mix.len;
            let mut order: [usize; SLOTS] = [0, 1, 2, 3, 4, 5, 6];
            order[..len].sort_unstable_by_key(|&k| mix.toks[k]);
            let (t, c) = (mix.toks, mix.counts);
            for (j, &k) in order[..len].iter().enumerate() {
                mix.toks[j] = t[k];
                mix.counts[j] = c[k];
            }
            let key = (oi * COUNT_CLASSES + count_class(mix.n)) * DISTINCT_CLASSES
                + (len.min(DISTINCT_CLASSES) - 1);
            let m = (self.weight[key] >> 12) as u64;
            mix.key = Some(key);
            mix.used = self.gate[key] > 0;
            mix.w = (1 << MIX_BITS) - m;
            // The n-gram's mass m * 2^T, by counts; the remainder to the
            // most counted token (lowest id among equals).
            let mass = m << self.total_bits;
            let mut top = 0;
            let mut given = 0;
            for j in 0..len {
                mix.extra[j] = mass * mix.counts[j] as u64 / mix.n;
                given += mix.extra[j];
                if mix.counts[j] > mix.counts[top] {
                    top = j;
                }
            }
            mix.extra[top] += mass - given;
            break;
        }
        mix
    }

    /// Learns from `token`, coded after `history` with `mix`, whose
    /// stream's table gave it `g` of `2^total_bits`. Call between steps,
    /// in stream order.
    pub fn update(&mut self, history: &[u32], token: u32, mix: &Mix, g: u64) {
        if let Some(key) = mix.key {
            // What the mixed table gives the token, used or not.
            let (e, _) = mix.extra_of(token);
            let f = mix.w * g + e;
            let c = (0..mix.len)
                .find(|&j| mix.toks[j] == token)
                .map_or(0, |j| mix.counts[j] as u64);
            let pn = ((c << 16) / mix.n) as i64;
            let pm = (g >> (self.total_bits - 16)) as i64;
            let p = ((f >> (self.total_bits + MIX_BITS - 16)) as i64).max(1);
            let w = self.weight[key] as i64 + WEIGHT_RATE * (pn - pm) / p;
            self.weight[key] = w.clamp(0, 65535) as u16;
            // The gain in log2 (Q8, then Q14): lg(f) - MIX_BITS - lg(g).
            let d = ((log2_q8(f) - 256 * MIX_BITS as i64 - log2_q8(g)) << 6) as i32;
            let a = &mut self.gate[key];
            *a += (d - *a) >> GATE_RATE;
        }
        for oi in 0..ORDERS.len() {
            if history.len() < ORDERS[oi] {
                break;
            }
            let (i, check) = context_hash(history, oi, self.bits);
            let b = &mut self.buckets[i];
            if b[0] != check {
                *b = [0; 1 + SLOTS];
                b[0] = check;
            }
            insert(&mut b[1..], token);
        }
    }
}

/// Counts `token` in a bucket's slots: its own slot, else the first empty
/// one, else the first of the least counted; a count reaching the limit
/// halves every count of the bucket.
fn insert(slots: &mut [u32], token: u32) {
    if let Some(s) = slots
        .iter_mut()
        .find(|s| **s & COUNT_MASK > 0 && **s >> COUNT_BITS == token)
    {
        *s += 1;
        if *s & COUNT_MASK == COUNT_MASK {
            for s in slots.iter_mut() {
                let c = (*s & COUNT_MASK) >> 1;
                *s = if c == 0 { 0 } else { (*s & !COUNT_MASK) | c };
            }
        }
        return;
    }
    let mut low = 0;
    for (k, s) in slots.iter().enumerate() {
        if *s & COUNT_MASK < slots[low] & COUNT_MASK {
            low = k;
        }
    }
    slots[low] = (token << COUNT_BITS) | 1;
}

impl Mix {
    /// Whether the mixed table codes the token (a context was found and
    /// its gate is open); else the stream's table alone.
    pub fn used(&self) -> bool {
        self.used
    }

    /// The n-gram's extra frequency of `token`, and the sum of those of the
    /// tokens below it.
    fn extra_of(&self, token: u32) -> (u64, u64) {
        let mut below = 0;
        for j in 0..self.len {
            if self.toks[j] == token {
                return (self.extra[j], below);
            }
            if self.toks[j] > token {
                break;
            }
            below += self.extra[j];
        }
        (0, below)
    }

    /// The mixed interval of `token`, whose interval in the stream's table
    /// (total `2^total_bits`) is `(cum, freq)`; the table's own interval
    /// when no context was found.
    pub fn interval(&self, total_bits: u32, cum: u64, freq: u64, token: u32) -> Interval {
        if !self.used {
            return (cum, freq, 1 << total_bits);
        }
        let (e, below) = self.extra_of(token);
        (
            self.w * cum + below,
            self.w * freq + e,
            1 << (total_bits + MIX_BITS),
        )
    }

    /// The mixed table over the stream's `table`, for decoding.
    pub fn table<'a>(&'a self, table: &'a FreqTable) -> Mixed<'a> {
        Mixed { mix: self, table }
    }
}

/// A stream's table with the n-gram mixed in: `w * F[v] + extra[v]`, total
/// `2^(T + MIX_BITS)`.
#[derive(Debug, Clone, Copy)]
pub struct Mixed<'a> {
    mix: &'a Mix,
    table: &'a FreqTable,
}

impl Frequencies for Mixed<'_> {
    fn total(&self) -> u64 {
        1 << (self.table.total_bits() + MIX_BITS)
    }

    fn cum_freq(&self, s: usize) -> (u64, u64) {
        let (cum, freq) = self.table.cum_freq(s);
        let (c, f, _) = self
            .mix
            .interval(self.table.total_bits(), cum, freq, s as u32);
        (c, f)
    }

    fn find(&self, target: u64) -> (usize, u64, u64) {
        const BLOCK: usize = 256;
        let (w, f) = (self.mix.w, self.table.freqs());
        // Skip whole blocks by their sums, then scan one block.
        let mut cum = 0u64;
        let mut base = 0usize;
        let mut j = 0;
        for block in f.chunks(BLOCK) {
            let end = base + block.len();
            let mut extra = 0;
            let mut k = j;
            while k < self.mix.len && (self.mix.toks[k] as usize) < end {
                extra += self.mix.extra[k];
                k += 1;
            }
            let sum = w * block.iter().map(|&x| x as u64).sum::<u64>() + extra;
            if target < cum + sum {
                break;
            }
            cum += sum;
            base = end;
            j = k;
        }
        for (s, &x) in f.iter().enumerate().skip(base) {
            let mut q = w * x as u64;
            if j < self.mix.len && self.mix.toks[j] as usize == s {
                q += self.mix.extra[j];
                j += 1;
            }
            if target < cum + q {
                return (s, cum, q);
            }
            cum += q;
        }
        // Unreachable for target < total; the last symbol is a safe answer.
        let last = f.len() - 1;
        let (c, q) = self.cum_freq(last);
        (last, c, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    /// A table over `n` symbols with random frequencies totalling `2^T`.
    fn table(n: usize, total_bits: u32, rng: &mut Rng) -> FreqTable {
        let mut t = FreqTable::new(n, total_bits).unwrap();
        let raw: Vec<u64> = (0..n).map(|_| 1 + (rng.unit() * 1000.0) as u64).collect();
        let sum: u64 = raw.iter().sum();
        let total = 1u64 << total_bits;
        let f = t.freqs_mut();
        let mut acc = 0;
        for (o, &r) in f.iter_mut().zip(&raw) {
            *o = ((r * (total - n as u64)) / sum + 1) as u32;
            acc += *o as u64;
        }
        f[0] += (total - acc) as u32;
        t
    }

    #[test]
    fn mixed_table_sums_to_its_total_and_finds_every_symbol() {
        let mut rng = Rng(7);
        let n = 1000;
        let mut ng = Ngram::new(500, 24);
        // A history where the context [1, 2, 3] was followed by several
        // tokens, one of them often (and each longer context was new).
        let mut h = vec![];
        for k in 0..40u32 {
            h.extend_from_slice(&[100 + k, 1, 2, 3]);
            let t = if k % 3 == 0 { 999 } else { 5 + (k % 6) };
            ng.update(&h, t, &ng.mix(&h), 1 << 10);
            h.push(t);
        }
        h.extend_from_slice(&[200, 1, 2, 3]);
        let mix = ng.mix(&h);
        assert!(mix.used() && mix.len > 1, "{mix:?}");
        let t = table(n, 24, &mut rng);
        let m = mix.table(&t);
        let mut cum = 0;
        for s in 0..n {
            let (c, f) = m.cum_freq(s);
            assert_eq!(c, cum, "symbol {s}");
            assert!(f >= 1);
            assert_eq!(m.find(c), (s, c, f));
            assert_eq!(m.find(c + f - 1), (s, c, f));
            cum += f;
        }
        assert_eq!(cum, m.total());
    }

    #[test]
    fn counts_learn_and_the_weight_follows_success() {
        let mut ng = Ngram::new(100, 24);
        let h = [7u32, 8, 9, 10, 11, 12, 13, 14];
        assert!(ng.mix(&h).key.is_none());
        let mut before = 0;
        for _ in 0..30 {
            let mix = ng.mix(&h);
            // The table gives the token 1/1024; the n-gram is right.
            ng.update(&h, 42, &mix, 1 << 14);
            if let Some(k) = mix.key {
                before = before.max(ng.weight[k]);
            }
        }
        let mix = ng.mix(&h);
        assert!(mix.used(), "the gate should have opened: {mix:?}");
        assert_eq!(mix.toks[..mix.len], [42]);
        assert!(
            mix.w < 1 << MIX_BITS,
            "the weight should have grown: {mix:?}"
        );
        assert!(before > WEIGHT_INIT);
    }

    #[test]
    fn a_full_bucket_replaces_its_least_counted_slot() {
        let mut s = [0u32; SLOTS];
        for t in 0..SLOTS as u32 {
            for _ in 0..=t {
                insert(&mut s, t);
            }
        }
        insert(&mut s, 100);
        assert_eq!(s[0], (100 << COUNT_BITS) | 1);
        assert_eq!(s[6], (6 << COUNT_BITS) | 7);
    }
}
