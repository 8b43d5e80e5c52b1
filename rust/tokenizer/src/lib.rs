//! Nano's tokenizer: trie-based greedy maximum forward matching over Unicode code points.
//! (Skeleton: filled in by the tokenizer issue.)

/// Crate version, for diagnostics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
