//! The one error type of the crate: every failure carries a readable reason (shown as-is by the CLI,
//! mapped to ValueError / OSError by the Python binding).
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid model / LoRA file (bad magic, version, sizes, checksum, shapes...).
    #[error("invalid model file: {0}")]
    Format(String),
    /// The file is valid but cannot be used this way (unsupported option, LoRA for another base...).
    #[error("{0}")]
    Unsupported(String),
    /// Bad arguments from the caller (empty prompt, prompt longer than the context, bad option values...).
    #[error("{0}")]
    InvalidInput(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn format_err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Format(msg.into()))
}

impl Error {
    // Files are opened only natively (the WASM engine gets bytes).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
