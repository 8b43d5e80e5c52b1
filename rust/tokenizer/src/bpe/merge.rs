//! Applying BPE merges to a sequence of ids, with HF `tokenizers`' order: repeatedly merge the
//! adjacent pair of lowest rank, the leftmost one among equals.
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// Sequences up to this long are merged by rescanning a pair array; longer ones through a heap.
const SCAN_MAX: usize = 48;

/// The merge table: (left id, right id) → (rank, merged id).
#[derive(Default)]
pub(crate) struct Merges {
    map: FxHashMap<u64, (u32, u32)>,
}

#[inline(always)]
fn key(a: u32, b: u32) -> u64 {
    u64::from(a) << 32 | u64::from(b)
}

impl Merges {
    pub(crate) fn with_capacity(n: usize) -> Merges {
        Merges {
            map: FxHashMap::with_capacity_and_hasher(n, Default::default()),
        }
    }

    /// Adds a merge; `false` when the pair already has one (the first one stays, as in HF).
    pub(crate) fn insert(&mut self, a: u32, b: u32, rank: u32, merged: u32) -> bool {
        match self.map.entry(key(a, b)) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((rank, merged));
                true
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[inline(always)]
    pub(crate) fn get(&self, a: u32, b: u32) -> Option<(u32, u32)> {
        self.map.get(&key(a, b)).copied()
    }

    /// Rank of the pair, `u32::MAX` when it has no merge.
    #[inline(always)]
    fn rank(&self, a: u32, b: u32) -> (u32, u32) {
        self.get(a, b).unwrap_or((u32::MAX, 0))
    }

    /// Merges `ids[from..]` in place.
    #[inline]
    pub(crate) fn apply(&self, ids: &mut Vec<u32>, from: usize) {
        let n = ids.len() - from;
        if n < 2 {
            return;
        }
        if n <= SCAN_MAX {
            self.apply_scan(ids, from);
        } else {
            self.apply_heap(ids, from);
        }
    }

    fn apply_scan(&self, ids: &mut Vec<u32>, from: usize) {
        let w = &mut ids[from..];
        let mut n = w.len();
        // pairs[i]: (rank, merged id) of (w[i], w[i + 1]).
        let mut pairs = [(u32::MAX, 0u32); SCAN_MAX];
        for i in 0..n - 1 {
            pairs[i] = self.rank(w[i], w[i + 1]);
        }
        loop {
            let mut best = u32::MAX;
            let mut at = 0;
            for (i, &(rank, _)) in pairs[..n - 1].iter().enumerate() {
                if rank < best {
                    best = rank;
                    at = i;
                }
            }
            if best == u32::MAX {
                break;
            }
            w[at] = pairs[at].1;
            w.copy_within(at + 2..n, at + 1);
            if at + 2 < n {
                pairs.copy_within(at + 2..n - 1, at + 1);
            }
            n -= 1;
            if at + 1 < n {
                pairs[at] = self.rank(w[at], w[at + 1]);
            }
            if at > 0 {
                pairs[at - 1] = self.rank(w[at - 1], w[at]);
            }
            if n == 1 {
                break;
            }
        }
        ids.truncate(from + n);
    }

    fn apply_heap(&self, ids: &mut Vec<u32>, from: usize) {
        const NONE: u32 = u32::MAX;
        let w = &ids[from..];
        let n = w.len();
        // Doubly linked symbols: (id, prev, next); a merged-away symbol gets id NONE.
        let mut sym: Vec<(u32, u32, u32)> = (0..n)
            .map(|i| {
                let prev = if i == 0 { NONE } else { i as u32 - 1 };
                let next = if i + 1 == n { NONE } else { i as u32 + 1 };
                (w[i], prev, next)
            })
            .collect();
        let mut heap: BinaryHeap<Reverse<(u32, u32)>> = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            if let Some((rank, _)) = self.get(w[i], w[i + 1]) {
                heap.push(Reverse((rank, i as u32)));
            }
        }
        while let Some(Reverse((rank, pos))) = heap.pop() {
            let (left, prev, next) = sym[pos as usize];
            if left == NONE || next == NONE {
                continue;
            }
            let right = sym[next as usize].0;
            // Stale entry: the pair at `pos` changed since it was queued (a rank names one pair).
            let Some((r, merged)) = self.get(left, right) else {
                continue;
            };
            if r != rank {
                continue;
            }
            let after = sym[next as usize].2;
            sym[pos as usize] = (merged, prev, after);
            sym[next as usize].0 = NONE;
            if after != NONE {
                sym[after as usize].1 = pos;
                if let Some((r, _)) = self.get(merged, sym[after as usize].0) {
                    heap.push(Reverse((r, pos)));
                }
            }
            if prev != NONE {
                if let Some((r, _)) = self.get(sym[prev as usize].0, merged) {
                    heap.push(Reverse((r, prev)));
                }
            }
        }
        ids.truncate(from);
        let mut i = 0u32;
        while i != NONE {
            ids.push(sym[i as usize].0);
            i = sym[i as usize].2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: rescan the whole sequence for the lowest-rank leftmost pair each step.
    fn naive(m: &Merges, mut ids: Vec<u32>) -> Vec<u32> {
        loop {
            let best = (0..ids.len().saturating_sub(1))
                .filter_map(|i| m.get(ids[i], ids[i + 1]).map(|(r, id)| (r, i, id)))
                .min();
            let Some((_, i, id)) = best else { return ids };
            ids[i] = id;
            ids.remove(i + 1);
        }
    }

    #[test]
    fn scan_and_heap_agree_with_the_naive_rule() {
        // Alphabet 0..4; merges over a pseudo-random set of pairs, merged ids from 10 on.
        let mut m = Merges::default();
        let mut state = 12345u64;
        let mut rnd = |k: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % k
        };
        let mut next = 10u32;
        for rank in 0..200 {
            let (a, b) = (rnd(u64::from(next)) as u32, rnd(u64::from(next)) as u32);
            if m.insert(a, b, rank, next) {
                next += 1;
            }
        }
        for len in [2usize, 3, 7, 30, 48, 49, 200, 1000] {
            for _ in 0..20 {
                let ids: Vec<u32> = (0..len).map(|_| rnd(4) as u32).collect();
                let want = naive(&m, ids.clone());
                let mut got = vec![99, 98];
                got.extend(&ids);
                m.apply(&mut got, 2);
                assert_eq!(&got[2..], want, "len {len}");
                assert_eq!(&got[..2], [99, 98]);
                let mut heap = ids.clone();
                m.apply_heap(&mut heap, 0);
                assert_eq!(heap, want);
            }
        }
    }
}
