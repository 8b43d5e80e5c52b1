//! `nano-infer serve`: an OpenAI-compatible HTTP server (axum on tokio, HTTP/1.1 by hyper) in
//! front of one model, decoding up to `--parallel` requests together ([`batcher`]). See
//! docs/serve.md.
//!
//! Endpoints: `GET /health`, `GET /v1/models`, `POST /v1/completions`,
//! `POST /v1/chat/completions` (streaming as server-sent events ending in `data: [DONE]`, or not).
mod api;
mod batcher;
mod http;
mod prompt;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::{Engine, Error, KvDtype, Lora, Model};

#[derive(Parser, Debug)]
#[command(
    name = "nano-infer serve",
    version,
    about = "Serve a Nano model over an OpenAI-compatible HTTP API"
)]
struct Args {
    /// Model file (.bin, Nano 2026.1 or 2024.10)
    model: PathBuf,
    /// LoRA plug-in to apply (.bin)
    #[arg(short = 'l', long = "lora")]
    lora: Option<PathBuf>,
    /// Address to listen on (loopback by default: nothing else can connect)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the chosen one is printed)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests decoded together (each holds its own KV cache)
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Context per request in tokens (default and maximum: the model's)
    #[arg(long)]
    ctx: Option<usize>,
    /// Require `Authorization: Bearer KEY` on every endpoint except /health
    #[arg(long = "api-key")]
    api_key: Option<String>,
    /// Worker threads (default: the physical performance cores)
    #[arg(long)]
    threads: Option<usize>,
    /// KV cache element type: f32, or f16 (half the cache memory)
    #[arg(long = "kv-cache", default_value = "f32")]
    kv_cache: KvDtype,
    /// Requests that may wait for a free slot; beyond them the server answers 503
    #[arg(long = "max-queue", default_value_t = 64)]
    max_queue: usize,
    /// Largest max_tokens a request may ask for (default: the context)
    #[arg(long = "max-tokens")]
    max_tokens: Option<usize>,
    /// Largest request body in bytes
    #[arg(long = "max-body-bytes", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Seconds a connection may take to send a request's headers (idle keep-alive connections
    /// included) before it is closed
    #[arg(long = "idle-timeout", default_value_t = 30)]
    idle_timeout: u64,
    /// Name of the model in the API (default: the file name without .bin)
    #[arg(long = "model-name")]
    model_name: Option<String>,
    /// Testing aid: sleep this long before every decode step
    #[arg(long = "step-delay-ms", default_value_t = 0, hide = true)]
    step_delay_ms: u64,
}

/// Most connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;

/// The settings the HTTP layer needs.
pub(crate) struct Settings {
    pub model_id: String,
    /// Memory of every slot's KV cache at the full context (printed at start).
    pub kv_cache_bytes: u64,
    pub api_key: Option<String>,
    pub ctx: usize,
    pub max_tokens: usize,
    pub max_body_bytes: usize,
    pub idle_timeout: Duration,
    pub parallel: usize,
}

/// `nano-infer serve ...` (`argv[0]` is the program, `argv[1]` "serve").
pub fn main(argv: &[OsString]) -> Result<(), Error> {
    let argv: Vec<OsString> = argv
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 1)
        .map(|(_, a)| a.clone())
        .collect();
    let args = match Args::try_parse_from(&argv) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    run(args)
}

/// As [`main`], for callers that must not exit the process (the Python binding): argv without
/// the "serve" word; returns clap's exit code for --help, --version and usage errors after
/// printing them.
pub fn main_returning(argv: &[OsString]) -> Result<i32, Error> {
    match Args::try_parse_from(argv) {
        Ok(a) => run(a).map(|()| 0),
        Err(e) => {
            let _ = e.print();
            Ok(e.exit_code())
        }
    }
}

fn run(args: Args) -> Result<(), Error> {
    let bad = |m: String| Err(Error::InvalidInput(m));
    if args.parallel == 0 || args.parallel > 64 {
        return bad(format!(
            "--parallel must be between 1 and 64, got {}",
            args.parallel
        ));
    }
    let model = Model::open(&args.model)?;
    let block = model.config().block_size;
    let ctx = args.ctx.unwrap_or(block);
    if ctx < 2 || ctx > block {
        return bad(format!(
            "--ctx must be between 2 and the model's context of {block}, got {ctx}"
        ));
    }
    let max_tokens = args.max_tokens.unwrap_or(ctx);
    if max_tokens == 0 {
        return bad("--max-tokens must be at least 1".into());
    }
    if args.max_body_bytes < 64 {
        return bad("--max-body-bytes must be at least 64".into());
    }
    let model_id = match &args.model_name {
        Some(n) => n.clone(),
        None => args
            .model
            .file_stem()
            .map_or("nano".into(), |s| s.to_string_lossy().into_owned()),
    };
    let mut engine = Engine::with_kv_cache(model, args.threads, args.kv_cache)?;
    if let Some(path) = &args.lora {
        engine.load_lora(Lora::open(path)?)?;
    }
    let tokenizer = engine.model().tokenizer().clone();
    let slots = batcher::slots(&engine, args.parallel, ctx)?;
    let kv_cache_bytes =
        args.parallel as u64 * args.kv_cache.cache_bytes(engine.model().config(), ctx);
    let shared = Arc::new(batcher::Shared::new(args.max_queue));
    let settings = Settings {
        model_id,
        kv_cache_bytes,
        api_key: args.api_key.clone(),
        ctx,
        max_tokens,
        max_body_bytes: args.max_body_bytes,
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        parallel: args.parallel,
    };
    {
        let shared = shared.clone();
        let delay = Duration::from_millis(args.step_delay_ms);
        std::thread::Builder::new()
            .name("nano-serve-engine".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| {
                    batcher::run(engine, shared, slots, ctx, delay)
                });
                if std::panic::catch_unwind(run).is_err() {
                    // Without the engine every request would wait for ever: stop loudly instead.
                    eprintln!("nano-infer serve: internal error in the engine thread; exiting");
                    std::process::exit(70);
                }
            })
            .map_err(|e| Error::Unsupported(format!("cannot start the engine thread: {e}")))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Unsupported(format!("cannot start the HTTP runtime: {e}")))?;
    let addr = format!("{}:{}", args.host, args.port);
    runtime.block_on(http::serve(addr, settings, shared, tokenizer))
}
