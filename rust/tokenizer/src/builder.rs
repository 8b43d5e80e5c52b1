//! Vocabulary builder (filled in below the core).
use crate::{Result, Tokenizer, TokenizerError};

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub vocab_size: usize,
    pub special_tokens: Vec<String>,
}

/// What the builder found.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    pub distinct_chars: usize,
    pub kept_chars: usize,
    pub char_coverage: f64,
    pub multi_char_tokens: usize,
}

pub fn build_vocabulary(_texts: &[&str], _opts: &BuildOptions) -> Result<(Tokenizer, BuildReport)> {
    Err(TokenizerError::Build("not implemented yet".into()))
}
