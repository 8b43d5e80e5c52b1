//! `nano-infer`: the command-line front end of the engine.
//!
//!     nano-infer MODEL.bin [-l LORA.bin] [-i] [-n MAX] [-t TEMP] [-k TOPK] [-p TOPP] [-r PENALTY]
//!                [-s SEED] [--threads N] [--kv-cache f32|f16] [--ctx N] [--prompt TEXT]
//!     (MODEL: a Nano .bin or a llama.cpp .gguf, converted at load)
//!     nano-infer bench MODEL.bin ...        (benchmark subcommand; see src/cli/bench.rs)
//!     nano-infer serve MODEL.bin ...        (OpenAI-compatible HTTP server; see src/serve/)
//!
//! Subcommands are recognised by the first argument, so a model path is never mistaken for one.
mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let result = match args.get(1).and_then(|a| a.to_str()) {
        Some("bench") => cli::bench::main(&args),
        #[cfg(feature = "serve")]
        Some("serve") => nano_infer::serve::main(&args),
        _ => cli::run::main(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
