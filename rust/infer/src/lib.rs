//! Nano's model-file format and inference engine.
//!
//! * [`format`]: the file formats (Nano 2026.1 and the original 2024.10), readers and writers.
//! * [`Model`] / [`Lora`]: validated, loaded files (memory-mapped where possible).
//! * [`Engine`]: the forward pass, KV cache, sampler and streaming generation; chat prompts from
//!   OpenAI-style messages and the model's chat template ([`ChatMessage`]).
//! * `kernels`: the matrix kernels the engine calls for all matrix products, one folder per
//!   instruction set; [`sched`]: the threads they run on.

mod attention;
mod chat;
mod engine;
pub mod error;
pub mod format;
mod forward;
pub mod kernels;
mod model;
pub mod sampler;
pub mod sched;
pub mod tokenizer;

pub use attention::KvDtype;
pub use chat::{parse_messages, ChatMessage};
pub use engine::{
    check_threads, max_threads, threads_error, Engine, GenerateOptions, GenerateStats, Sequence,
    MAX_THREADS_PER_CPU,
};
pub use model::{Lora, Model};
pub use tokenizer::{ModelTokenizer, TextStream};

pub use error::{Error, Result};

/// Crate version, for diagnostics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `nano-infer serve`, the OpenAI-compatible HTTP server (feature "serve").
#[cfg(feature = "serve")]
pub mod serve;
