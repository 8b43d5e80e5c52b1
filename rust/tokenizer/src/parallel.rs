//! Parallel encoding: batches across threads, and long documents cut at "safe" positions —
//! places no vocabulary entry occurring in the text crosses, so greedy matching of the pieces
//! gives exactly the tokens of the whole.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::Tokenizer;

/// Documents shorter than this are encoded on one thread.
const MIN_PIECE_BYTES: usize = 64 * 1024;
/// How far past an ideal cut to look for a safe one before giving up on that cut.
const MAX_CUT_SEARCH_BYTES: usize = 16 * 1024;

/// Runs `f` on a pool of `threads` workers (`None` or 0: rayon's global pool, all cores).
/// Pools are cached per size: building one costs about a millisecond per thread.
pub(crate) fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    let n = match threads {
        None | Some(0) => return f(),
        Some(n) => n,
    };
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pool = {
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match pools.get(&n) {
            Some(pool) => Some(Arc::clone(pool)),
            None => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
                Ok(pool) => Some(Arc::clone(pools.entry(n).or_insert(Arc::new(pool)))),
                // Threads unavailable (e.g. wasm32): run on the caller's thread.
                Err(_) => None,
            },
        }
    };
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

impl Tokenizer {
    /// Byte offsets that split `text` into about `pieces` parts at safe cuts (start and end included).
    pub fn safe_cuts(&self, text: &str, pieces: usize, allow_special: bool) -> Vec<usize> {
        let b = text.as_bytes();
        let mut cuts = vec![0];
        for k in 1..pieces.max(1) {
            let ideal = b.len() * k / pieces;
            let from = ideal.max(*cuts.last().unwrap_or(&0) + 1);
            if let Some(cut) = self.next_safe_cut(text, from, allow_special) {
                if cut < b.len() && cut > *cuts.last().unwrap_or(&0) {
                    cuts.push(cut);
                }
            }
        }
        cuts.push(b.len());
        cuts.dedup();
        cuts
    }

    /// First safe cut at or after byte `from`, searching a bounded window.
    fn next_safe_cut(&self, text: &str, from: usize, allow_special: bool) -> Option<usize> {
        let b = text.as_bytes();
        let mut cut = from;
        let limit = (from + MAX_CUT_SEARCH_BYTES).min(b.len());
        while cut < limit {
            if text.is_char_boundary(cut) && self.is_safe_cut(text, cut, allow_special) {
                return Some(cut);
            }
            cut += 1;
        }
        None
    }

    /// No token occurrence starting within `max_token_chars - 1` characters before `cut` ends after it.
    pub fn is_safe_cut(&self, text: &str, cut: usize, allow_special: bool) -> bool {
        let b = text.as_bytes();
        let mut start = cut;
        for _ in 1..self.max_token_chars.max(1) {
            if start == 0 {
                break;
            }
            start -= 1;
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            if self.trie.token_crosses(b, start, cut, allow_special) {
                return false;
            }
        }
        true
    }

    /// Encodes one document, cutting it into pieces for the current rayon pool when it is long.
    pub(crate) fn encode_in_pool(&self, text: &str, allow_special: bool) -> Vec<u32> {
        let threads = rayon::current_num_threads();
        if threads <= 1 || text.len() < 2 * MIN_PIECE_BYTES {
            return self.encode(text, allow_special);
        }
        let pieces = (text.len() / MIN_PIECE_BYTES).min(threads * 4);
        let cuts = self.safe_cuts(text, pieces, allow_special);
        let parts: Vec<Vec<u32>> = cuts
            .par_windows(2)
            .map(|w| self.encode(&text[w[0]..w[1]], allow_special))
            .collect();
        parts.concat()
    }

    /// Encodes one document using `threads` workers (`None`: all cores), identical to `encode`.
    pub fn encode_parallel(
        &self,
        text: &str,
        allow_special: bool,
        threads: Option<usize>,
    ) -> Vec<u32> {
        if threads == Some(1) {
            return self.encode(text, allow_special);
        }
        with_threads(threads, || self.encode_in_pool(text, allow_special))
    }

    /// Encodes many documents with `threads` workers (`None`: all cores); long documents are
    /// themselves split, so one huge text among small ones still spreads over the workers.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        allow_special: bool,
        threads: Option<usize>,
    ) -> Vec<Vec<u32>> {
        if threads == Some(1) {
            return texts
                .iter()
                .map(|t| self.encode(t, allow_special))
                .collect();
        }
        with_threads(threads, || {
            texts
                .par_iter()
                .map(|t| self.encode_in_pool(t, allow_special))
                .collect()
        })
    }
}
