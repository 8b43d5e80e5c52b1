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

/// Worker count for a `threads` argument: `None` or 0 means every available core.
pub(crate) fn thread_count(threads: Option<usize>) -> usize {
    match threads {
        Some(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Runs `f(n)` inside a pool of `n = thread_count(threads)` workers, so rayon calls in `f` use it.
///
/// Pools are our own, cached per (process id, size), never rayon's global pool: a process forked
/// after encoding (e.g. a PyTorch DataLoader worker) inherits pools whose threads do not exist in
/// it, and would hang on them; keyed by pid, the child builds fresh ones.
pub(crate) fn with_threads<R: Send>(
    threads: Option<usize>,
    f: impl FnOnce(usize) -> R + Send,
) -> R {
    let n = thread_count(threads);
    type Pools = HashMap<(u32, usize), Arc<rayon::ThreadPool>>;
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    let key = (std::process::id(), n);
    let pool = {
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match pools.get(&key) {
            Some(pool) => Some(Arc::clone(pool)),
            None => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
                Ok(pool) => Some(Arc::clone(pools.entry(key).or_insert(Arc::new(pool)))),
                // Threads unavailable (e.g. wasm32): run on the caller's thread.
                Err(_) => None,
            },
        }
    };
    match pool {
        Some(pool) => pool.install(|| f(n)),
        None => f(1),
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

    /// Cuts of `text` into pieces for `threads` workers (a few per worker, none under
    /// [`MIN_PIECE_BYTES`]); a short text stays whole: `[0, len]`.
    fn piece_cuts(&self, text: &str, allow_special: bool, threads: usize) -> Vec<usize> {
        if threads <= 1 || text.len() < 2 * MIN_PIECE_BYTES {
            return vec![0, text.len()];
        }
        let pieces = (text.len() / MIN_PIECE_BYTES).min(threads * 4);
        self.safe_cuts(text, pieces, allow_special)
    }

    /// Encodes one document on `threads` workers of the current pool, cut into pieces when long.
    pub(crate) fn encode_in_pool(
        &self,
        text: &str,
        allow_special: bool,
        threads: usize,
    ) -> Vec<u32> {
        if threads <= 1 || text.len() < 2 * MIN_PIECE_BYTES {
            return self.encode(text, allow_special);
        }
        let parts: Vec<Vec<u32>> = self
            .piece_cuts(text, allow_special, threads)
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
        if thread_count(threads) == 1 || text.len() < 2 * MIN_PIECE_BYTES {
            return self.encode(text, allow_special);
        }
        with_threads(threads, |n| self.encode_in_pool(text, allow_special, n))
    }

    /// Encodes many documents with `threads` workers (`None`: all cores); long documents are
    /// themselves split, so one huge text among small ones still spreads over the workers.
    pub fn encode_batch(
        &self,
        texts: &[&str],
        allow_special: bool,
        threads: Option<usize>,
    ) -> Vec<Vec<u32>> {
        if thread_count(threads) == 1
            || texts.len() <= 1 && texts.iter().all(|t| t.len() < 2 * MIN_PIECE_BYTES)
        {
            return texts
                .iter()
                .map(|t| self.encode(t, allow_special))
                .collect();
        }
        with_threads(threads, |n| {
            texts
                .par_iter()
                .map(|t| self.encode_in_pool(t, allow_special, n))
                .collect()
        })
    }

    /// Encodes `texts` into one flat id array (with `separator` after each text when given), on
    /// `threads` workers. Long texts are cut at safe positions. A piece yields at most one id per
    /// character (per byte with byte fallback), so every piece writes its ids straight into its own share of one output of that
    /// size (no per-piece vectors, no second copy, pages first touched by the thread that fills
    /// them); the gaps left by multi-character tokens are closed at the end.
    pub fn encode_flat<T: FlatId>(
        &self,
        texts: &[&str],
        allow_special: bool,
        threads: Option<usize>,
        separator: Option<u32>,
    ) -> Vec<T> {
        if thread_count(threads) == 1 {
            let bytes: usize = texts.iter().map(|t| t.len()).sum();
            let mut ids = Vec::with_capacity(bytes / 3 + texts.len());
            for text in texts {
                self.encode_each(text, allow_special, |id| ids.push(T::from_id(id)));
                ids.extend(separator.map(T::from_id));
            }
            return ids;
        }
        with_threads(threads, |n| {
            // (text index, byte range, ends its text)
            let mut pieces: Vec<(usize, usize, usize, bool)> = Vec::with_capacity(texts.len());
            for (i, text) in texts.iter().enumerate() {
                let cuts = self.piece_cuts(text, allow_special, n);
                if cuts.len() < 2 {
                    pieces.push((i, 0, 0, true));
                }
                for w in cuts.windows(2) {
                    pieces.push((i, w[0], w[1], w[1] == text.len()));
                }
            }
            let with_separator = |ends_text: bool| usize::from(ends_text && separator.is_some());
            let caps: Vec<usize> = pieces
                .par_iter()
                .map(|&(i, start, end, last)| {
                    // One id per character at most, or per byte when characters may fall back
                    // to their bytes.
                    let most = if self.has_byte_fallback() {
                        end - start
                    } else {
                        texts[i][start..end].chars().count()
                    };
                    most + with_separator(last)
                })
                .collect();
            let total = caps.iter().sum();
            // Zeroed allocation: untouched pages (the gaps) never get memory.
            let mut out = vec![T::default(); total];
            let mut slots: Vec<&mut [T]> = Vec::with_capacity(pieces.len());
            let mut rest = out.as_mut_slice();
            for &cap in &caps {
                let (slot, tail) = rest.split_at_mut(cap);
                slots.push(slot);
                rest = tail;
            }
            let lens: Vec<usize> = slots
                .into_par_iter()
                .zip(pieces.par_iter())
                .map(|(slot, &(i, start, end, last))| {
                    let mut k = 0;
                    self.encode_each(&texts[i][start..end], allow_special, |id| {
                        slot[k] = T::from_id(id);
                        k += 1;
                    });
                    if let (Some(sep), true) = (separator, last) {
                        slot[k] = T::from_id(sep);
                        k += 1;
                    }
                    k
                })
                .collect();
            let (mut from, mut to) = (0, 0);
            for (&cap, &len) in caps.iter().zip(&lens) {
                if from != to {
                    out.copy_within(from..from + len, to);
                }
                (from, to) = (from + cap, to + len);
            }
            if to < total {
                out.truncate(to);
                out.shrink_to_fit();
            }
            out
        })
    }
}

/// An element type of [`Tokenizer::encode_flat`]'s output: `u32`, or `u16` when the vocabulary fits.
pub trait FlatId: Copy + Default + Send + Sync {
    fn from_id(id: u32) -> Self;
}

impl FlatId for u32 {
    fn from_id(id: u32) -> Self {
        id
    }
}

impl FlatId for u16 {
    /// Callers check that the vocabulary fits in 16 bits.
    fn from_id(id: u32) -> Self {
        id as u16
    }
}
