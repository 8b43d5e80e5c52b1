//! The one error type of the crate. Its `Display` is a readable reason meant for end users.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The vocabulary text is not the expected JSON document.
    #[error("invalid vocabulary JSON: {0}")]
    Json(String),
    /// The vocabulary parses but is inconsistent (duplicates, gaps, missing `<|unknown|>`, ...).
    #[error("invalid vocabulary: {0}")]
    Invalid(String),
    /// `decode` got an id that names no token.
    #[error("token id {id} out of range (vocabulary size {vocab_size})")]
    IdOutOfRange { id: u64, vocab_size: usize },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is not UTF-8; `offset` is the byte offset of the first invalid byte.
    #[error("{}: not valid UTF-8 at byte offset {offset}", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    /// The vocabulary builder cannot work with what it was given.
    #[error("cannot build vocabulary: {0}")]
    Build(String),
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

impl TokenizerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TokenizerError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Reads a whole file as UTF-8, naming the byte offset of the first invalid sequence.
pub fn read_utf8_file(path: impl AsRef<std::path::Path>) -> Result<String> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| TokenizerError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}
