//! `nano-infer MODEL.bin ...`: generate from a prompt, or chat in a read-eval-print loop.
use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Parser;
use nano_infer::{
    ChatMessage, Engine, Error, GenerateOptions, GenerateStats, KvDtype, Lora, Model,
};

#[derive(Parser, Debug)]
#[command(
    name = "nano-infer",
    version,
    about = "Run a Nano model file (.bin) on the CPU"
)]
struct Args {
    /// Model file: Nano's .bin (2026.x or 2024.10) or a llama.cpp GGUF (llama, qwen2)
    model: PathBuf,
    /// LoRA plug-in to apply (.bin)
    #[arg(short = 'l', long = "lora")]
    lora: Option<PathBuf>,
    /// Instruction mode: wrap each prompt in <|instruct_mark|> ... <|response_mark|>; without
    /// --prompt, the lines of stdin are the turns of one chat (the history kept across turns)
    #[arg(short = 'i', long = "instruct")]
    instruct: bool,
    /// Maximum number of new tokens
    #[arg(short = 'n', long = "max-new-tokens", default_value_t = 256)]
    max_new_tokens: usize,
    /// Temperature (0 = greedy)
    #[arg(short = 't', long = "temperature", default_value_t = 1.0)]
    temperature: f32,
    /// Keep the k most likely tokens (0 = off)
    #[arg(short = 'k', long = "top-k", default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass (1.0 = off)
    #[arg(short = 'p', long = "top-p", default_value_t = 1.0)]
    top_p: f32,
    /// Repetition penalty (1.0 = off)
    #[arg(short = 'r', long = "repetition-penalty", default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Random seed (same seed, same text)
    #[arg(short = 's', long = "seed", default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: the physical performance cores)
    #[arg(long)]
    threads: Option<usize>,
    /// KV cache element type: f32, or f16 (half the cache memory)
    #[arg(long = "kv-cache", default_value = "f32")]
    kv_cache: KvDtype,
    /// Context limit in tokens (prompt and output together), below the model's maximum: bounds
    /// the KV cache memory
    #[arg(long = "ctx")]
    ctx: Option<usize>,
    /// Generate once from this prompt and exit (without it: interactive loop reading stdin)
    #[arg(long)]
    prompt: Option<String>,
    /// Print no statistics at the end
    #[arg(short = 'q', long)]
    quiet: bool,
}

pub fn main(argv: &[std::ffi::OsString]) -> Result<(), Error> {
    let args = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => e.exit(), // --help / --version / usage errors, with clap's own exit codes
    };
    let mut model = Model::open(&args.model)?;
    if let Some(n) = args.ctx {
        model.limit_context(n)?;
    }
    if !args.quiet {
        eprintln!("{}", context_line(&model, args.kv_cache));
    }
    let mut engine = Engine::with_kv_cache(model, args.threads, args.kv_cache)?;
    if let Some(path) = &args.lora {
        engine.load_lora(Lora::open(path)?)?;
    }
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        instruct: args.instruct,
    };
    match &args.prompt {
        Some(prompt) => {
            let stats = generate(&mut engine, prompt, &opts)?;
            report(&stats, engine.model().config().block_size, args.quiet);
        }
        None => repl(&mut engine, &opts, args.quiet)?,
    }
    Ok(())
}

/// The context and what its KV cache takes at most, printed at load.
pub(crate) fn context_line(model: &Model, kv: KvDtype) -> String {
    let ctx = model.config().block_size;
    let bytes = kv.cache_bytes(model.config(), ctx);
    format!(
        "context {ctx} tokens; KV cache up to {:.1} MiB ({})",
        bytes as f64 / (1 << 20) as f64,
        kv.name()
    )
}

/// Streams the generated text to stdout as it is produced.
fn generate(
    engine: &mut Engine,
    prompt: &str,
    opts: &GenerateOptions,
) -> Result<GenerateStats, Error> {
    to_stdout(|on_piece| engine.generate(prompt, opts, on_piece)).map(|(stats, _)| stats)
}

/// Runs one generation printing each piece to stdout; returns its statistics and the text printed.
/// A closed stdout (e.g. a pipe to `head`) stops the generation quietly.
fn to_stdout(
    run: impl FnOnce(&mut dyn FnMut(&str) -> bool) -> Result<GenerateStats, Error>,
) -> Result<(GenerateStats, String), Error> {
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    let mut text = String::new();
    let stats = run(&mut |piece| {
        text.push_str(piece);
        match out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e); // e.g. a closed pipe: stop generating
                false
            }
        }
    })?;
    let _ = writeln!(out);
    if let Some(e) = failed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(Error::Io {
                path: "stdout".into(),
                source: e,
            });
        }
    }
    Ok((stats, text))
}

/// The statistics line (unless `quiet`), and a note whenever the context cut generation short:
/// a prompt that fills the context otherwise prints nothing at all.
fn report(s: &GenerateStats, context: usize, quiet: bool) {
    if s.context_full && s.generated_tokens == 0 {
        eprintln!(
            "note: the prompt ({} tokens) fills the model's context of {context} tokens: nothing was generated",
            s.prompt_tokens
        );
    } else if s.context_full {
        eprintln!("note: generation stopped at the end of the model's context of {context} tokens");
    }
    if quiet {
        return;
    }
    let rate = |n: usize, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    eprintln!(
        "[{} prompt tokens at {:.1} tokens/s; {} new tokens at {:.2} tokens/s]",
        s.prompt_tokens,
        rate(s.prompt_tokens, s.prefill_secs),
        s.generated_tokens,
        rate(s.generated_tokens, s.decode_secs)
    );
}

/// One prompt per line from stdin until end of input; errors of one prompt (a line that is not
/// UTF-8 included) are reported and do not end the loop. In instruction mode the lines are the
/// user's turns of one conversation: each answer is generated after the whole history (the oldest
/// exchanges dropped, with a note, when it no longer fits the context).
fn repl(engine: &mut Engine, opts: &GenerateOptions, quiet: bool) -> Result<(), Error> {
    let stdin = std::io::stdin();
    let interactive = std::io::IsTerminal::is_terminal(&stdin);
    let context = engine.model().config().block_size;
    let mut history: Vec<ChatMessage> = Vec::new();
    let mut line = Vec::new();
    for number in 1.. {
        if interactive {
            eprint!("> ");
        }
        line.clear();
        let n = stdin
            .lock()
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::Io {
                path: "stdin".into(),
                source: e,
            })?;
        if n == 0 {
            break;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            eprintln!("error: input line {number} is not valid UTF-8; skipped");
            continue;
        };
        let prompt = text.trim_end_matches(['\n', '\r']);
        if prompt.is_empty() {
            continue;
        }
        let result = if opts.instruct {
            chat_turn(engine, &mut history, prompt, opts)
        } else {
            generate(engine, prompt, opts)
        };
        match result {
            Ok(stats) => report(&stats, context, quiet),
            Err(e) => eprintln!("error: {e}"),
        }
    }
    Ok(())
}

/// Answers `prompt` after the conversation so far and adds both turns to it; a failed turn leaves
/// the history as it was.
fn chat_turn(
    engine: &mut Engine,
    history: &mut Vec<ChatMessage>,
    prompt: &str,
    opts: &GenerateOptions,
) -> Result<GenerateStats, Error> {
    let mut turn = history.clone();
    turn.push(ChatMessage::user(prompt));
    let dropped = engine.fit_chat(&mut turn)?;
    if dropped > 0 {
        eprintln!(
            "note: the {} oldest exchange(s) were dropped to fit the model's context",
            dropped / 2
        );
    }
    let (stats, answer) = to_stdout(|on_piece| engine.chat(&turn, opts, on_piece))?;
    turn.push(ChatMessage::assistant(answer));
    *history = turn;
    Ok(stats)
}
