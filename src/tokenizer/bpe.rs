//! Byte-pair encoding of one pre-token.
//!
//! Rule: start from one token per byte; repeatedly merge the adjacent pair
//! with the lowest merge rank, the leftmost such pair if it occurs more
//! than once; stop when no adjacent pair has a merge. (This equals GPT-2's
//! "merge every occurrence of the best pair, left to right" because a merge
//! never creates a new occurrence of a pair of its own rank: the merged
//! token is longer than both of its parts.)
//!
//! Two implementations of that one rule: a quadratic scan over a short
//! `Vec` (fast for the usual pre-token of a few bytes) and a heap over a
//! linked list, O(n log n), for long pre-tokens (runs of one byte in binary
//! files make pre-tokens of megabytes). Tests hold both against each other
//! and against a string-level reference.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// Pre-tokens up to this many bytes use the quadratic scan.
pub(crate) const SMALL: usize = 48;

/// Result of merging a pair: its rank (position in the merge list) and the
/// id of the merged token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Merge {
    pub rank: u32,
    pub id: u32,
}

/// Merge table keyed by `(left_id << 32) | right_id`.
pub(crate) type MergeMap = FxHashMap<u64, Merge>;

#[inline]
pub(crate) fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// Reusable buffers, so that encoding many pre-tokens allocates rarely.
#[derive(Default)]
pub(crate) struct Scratch {
    ids: Vec<u32>,
    syms: Vec<Sym>,
    heap: BinaryHeap<Reverse<u64>>,
}

/// A symbol of the heap variant; `prev`/`next` are indices into the symbol
/// array, `NONE` at the ends. A merged-away symbol has `id == DEAD`.
#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    prev: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;
/// Never a real id: vocabularies are capped far below `u32::MAX`.
const DEAD: u32 = u32::MAX;

/// Appends the BPE encoding of `piece` (non-empty) to `out`.
pub(crate) fn encode_piece(
    piece: &[u8],
    byte_token: &[u32; 256],
    merges: &MergeMap,
    scratch: &mut Scratch,
    out: &mut Vec<u32>,
) {
    if piece.len() <= SMALL {
        encode_small(piece, byte_token, merges, scratch, out)
    } else {
        encode_heap(piece, byte_token, merges, scratch, out)
    }
}

pub(crate) fn encode_small(
    piece: &[u8],
    byte_token: &[u32; 256],
    merges: &MergeMap,
    scratch: &mut Scratch,
    out: &mut Vec<u32>,
) {
    let ids = &mut scratch.ids;
    ids.clear();
    ids.extend(piece.iter().map(|&b| byte_token[usize::from(b)]));
    loop {
        let mut best: Option<(Merge, usize)> = None;
        for (i, w) in ids.windows(2).enumerate() {
            if let Some(&m) = merges.get(&pair_key(w[0], w[1])) {
                // Strictly lower: the leftmost pair wins ties (which only
                // arise for repeats of the same pair).
                if best.is_none_or(|(b, _)| m.rank < b.rank) {
                    best = Some((m, i));
                }
            }
        }
        let Some((m, i)) = best else { break };
        ids[i] = m.id;
        ids.remove(i + 1);
    }
    out.extend_from_slice(ids);
}

pub(crate) fn encode_heap(
    piece: &[u8],
    byte_token: &[u32; 256],
    merges: &MergeMap,
    scratch: &mut Scratch,
    out: &mut Vec<u32>,
) {
    let n = piece.len();
    // Pre-tokens are slices of one input buffer; an input of 4 GiB or more
    // is split by the caller, so positions fit u32.
    debug_assert!(n < NONE as usize);
    let syms = &mut scratch.syms;
    syms.clear();
    syms.extend(piece.iter().enumerate().map(|(i, &b)| Sym {
        id: byte_token[usize::from(b)],
        prev: if i == 0 { NONE } else { i as u32 - 1 },
        next: if i + 1 == n { NONE } else { i as u32 + 1 },
    }));
    // Heap entries: Reverse((rank << 32) | left position): lowest rank
    // first, then leftmost. Entries go stale when either symbol changes;
    // a popped entry is checked against the current pair's rank (each rank
    // belongs to exactly one pair).
    let heap = &mut scratch.heap;
    heap.clear();
    let push = |heap: &mut BinaryHeap<Reverse<u64>>, syms: &[Sym], pos: u32| {
        let s = syms[pos as usize];
        if s.next != NONE {
            let r = syms[s.next as usize];
            if let Some(m) = merges.get(&pair_key(s.id, r.id)) {
                heap.push(Reverse((u64::from(m.rank) << 32) | u64::from(pos)));
            }
        }
    };
    for pos in 0..n as u32 {
        push(heap, syms, pos);
    }
    while let Some(Reverse(entry)) = heap.pop() {
        let rank = (entry >> 32) as u32;
        let pos = entry as u32;
        let left = syms[pos as usize];
        if left.id == DEAD || left.next == NONE {
            continue;
        }
        let right = syms[left.next as usize];
        let Some(&m) = merges.get(&pair_key(left.id, right.id)) else {
            continue;
        };
        if m.rank != rank {
            continue;
        }
        // Merge `right` into `left`.
        syms[pos as usize].id = m.id;
        syms[pos as usize].next = right.next;
        if right.next != NONE {
            syms[right.next as usize].prev = pos;
        }
        syms[left.next as usize].id = DEAD;
        if left.prev != NONE {
            push(heap, syms, left.prev);
        }
        push(heap, syms, pos);
    }
    let mut i = 0u32;
    while i != NONE {
        let s = syms[i as usize];
        out.push(s.id);
        i = s.next;
    }
}
