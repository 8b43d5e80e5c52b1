//! Batches across threads, and long byte-level texts cut where every pattern has a boundary
//! that does not depend on the context ([`pretokenize::is_newline_cut`]), so the pieces' ids
//! concatenate to the whole text's.
use rayon::prelude::*;

use super::pretokenize;
use super::BpeTokenizer;
use crate::parallel::{thread_count, with_threads};

/// Texts shorter than this are encoded on one thread.
const MIN_PIECE_BYTES: usize = 64 * 1024;
/// How far past an ideal cut to look for a safe one.
const MAX_CUT_SEARCH_BYTES: usize = 64 * 1024;

impl BpeTokenizer {
    /// Byte offsets cutting `text` into about `pieces` parts (start and end included); a text
    /// that cannot be cut stays whole.
    pub fn safe_cuts(&self, text: &str, pieces: usize) -> Vec<usize> {
        let b = text.as_bytes();
        let mut cuts = vec![0];
        if self.newline_cuts {
            for k in 1..pieces.max(1) {
                let from = (b.len() * k / pieces).max(cuts[cuts.len() - 1] + 1);
                let limit = (from + MAX_CUT_SEARCH_BYTES).min(b.len());
                if let Some(cut) = (from..limit).find(|&p| pretokenize::is_newline_cut(b, p)) {
                    cuts.push(cut);
                }
            }
        }
        cuts.push(b.len());
        cuts.dedup();
        cuts
    }

    fn encode_in_pool(&self, text: &str, allow_special: bool, threads: usize) -> Vec<u32> {
        if threads <= 1 || text.len() < 2 * MIN_PIECE_BYTES {
            return self.encode(text, allow_special);
        }
        let pieces = (text.len() / MIN_PIECE_BYTES).min(threads * 4);
        let parts: Vec<Vec<u32>> = self
            .safe_cuts(text, pieces)
            .par_windows(2)
            .map(|w| self.encode(&text[w[0]..w[1]], allow_special))
            .collect();
        parts.concat()
    }

    /// Encodes one text on `threads` workers (`None`: all cores); the same ids as `encode`.
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

    /// Encodes many texts on `threads` workers (`None`: all cores).
    pub fn encode_batch(
        &self,
        texts: &[&str],
        allow_special: bool,
        threads: Option<usize>,
    ) -> Vec<Vec<u32>> {
        if thread_count(threads) == 1 {
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
}
