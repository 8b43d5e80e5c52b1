//! `nano-infer bench MODEL.bin --threads 1,2,...`: the performance ladder. For each thread count it
//! prints one line
//!
//!     threads=N prefill=X tok/s decode=Y tok/s bytes/token=B GB/s=G limit=P%
//!
//! where bytes/token is the weight bytes one decode step reads, GB/s = bytes/token × decode tok/s, and
//! P is GB/s as a share of the machine's copy bandwidth with N threads, measured here (STREAM-style:
//! bytes read + bytes written per second, buffers far larger than the caches). With `--lora` the
//! ladder decodes with the adapter plugged in, and a second line per thread count gives its decode
//! overhead:
//!
//!     threads=N lora_overhead=X% pairs=K (...)
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use nano_infer::format::DType;
use nano_infer::{check_threads, Engine, Error, GenerateOptions, KvDtype, Lora, Model};

#[derive(Parser, Debug)]
#[command(
    name = "nano-infer bench",
    about = "Prefill / decode speed per thread count"
)]
struct Args {
    /// Model file (.bin or .gguf)
    model: PathBuf,
    /// Thread counts, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1")]
    threads: Vec<usize>,
    /// Prompt length for the prefill measurement (capped at half the context)
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens generated for the decode measurement (capped by the context)
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
    /// Repetitions; the best (fastest) of them is reported
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// LoRA plug-in applied (unmerged) during the measurement
    #[arg(short = 'l', long)]
    lora: Option<PathBuf>,
    /// With --lora: pairs of decode runs without / with the adapter in this process, whose median
    /// slowdown is the overhead line (0: no overhead line)
    #[arg(long, default_value_t = 8)]
    lora_pairs: usize,
    /// KV cache element type: f32, or f16 (half the cache memory)
    #[arg(long = "kv-cache", default_value = "f32")]
    kv_cache: KvDtype,
    /// Context limit in tokens, below the model's maximum (caps prompt and decode lengths)
    #[arg(long = "ctx")]
    ctx: Option<usize>,
}

/// The model with the context limit applied.
fn open(args: &Args) -> Result<Model, Error> {
    let mut model = Model::open(&args.model)?;
    if let Some(n) = args.ctx {
        model.limit_context(n)?;
    }
    Ok(model)
}

pub fn main(args: &[std::ffi::OsString]) -> Result<(), Error> {
    let args = match Args::try_parse_from(&args[1..]) {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            print!("{e}");
            return Ok(());
        }
        Err(e) => return Err(Error::InvalidInput(e.to_string())),
    };
    if args.repeat == 0 {
        return Err(Error::InvalidInput("--repeat must be at least 1".into()));
    }
    for &t in &args.threads {
        check_threads(t)?;
    }
    let model = open(&args)?;
    eprintln!("{}", super::run::context_line(&model, args.kv_cache));
    let bytes = decode_bytes_per_token(&model);
    let c = model.config();
    let (prompt_len, decode) = lengths(c.block_size, args.prompt_tokens, args.decode_tokens)?;
    let tok = model.tokenizer();
    if (0..tok.vocab_size() as u32).all(|id| tok.is_special(id)) {
        return Err(Error::Unsupported(
            "bench draws its prompts from ordinary tokens, and this vocabulary has only special ones"
                .into(),
        ));
    }
    if prompt_len != args.prompt_tokens || decode != args.decode_tokens {
        eprintln!(
            "note: measuring a {prompt_len}-token prompt and {decode} decoded tokens (asked for {} and {}; \
             the prompt is capped at half the context of {})",
            args.prompt_tokens, args.decode_tokens, c.block_size
        );
    }
    eprintln!(
        "model {} ({:?}, dim {}, {} layers, vocab {}); kernels: {}; prompt {prompt_len}, decode {decode}",
        args.model.display(),
        model.dtype(),
        c.n_embd,
        c.n_layer,
        c.vocab_size,
        nano_infer::kernels::Kernels::best().name(),
    );
    drop(model);
    for &t in &args.threads {
        let mut engine = Engine::with_kv_cache(open(&args)?, Some(t), args.kv_cache)?;
        if let Some(path) = &args.lora {
            engine.load_lora(Lora::open(path)?)?;
        }
        let (mut prefill, mut dec) = (0f64, 0f64);
        for rep in 0..args.repeat {
            let (p, d) = measure(&mut engine, prompt_len, decode, rep as u64)?;
            prefill = prefill.max(p);
            dec = dec.max(d);
        }
        let gbs = bytes as f64 * dec / 1e9;
        let copy = copy_bandwidth(t);
        println!(
            "threads={t} prefill={prefill:.1} tok/s decode={dec:.1} tok/s bytes/token={bytes} GB/s={gbs:.2} limit={:.0}%",
            100.0 * gbs / copy
        );
        if args.lora.is_some() && args.lora_pairs > 0 {
            let slowdowns = lora_overhead(&mut engine, prompt_len, decode, args.lora_pairs)?;
            let each: Vec<String> = slowdowns
                .iter()
                .map(|v| format!("{:.1}", 100.0 * v))
                .collect();
            println!(
                "threads={t} lora_overhead={:.1}% pairs={} ({})",
                100.0 * median(&slowdowns),
                slowdowns.len(),
                each.join(", ")
            );
        }
    }
    Ok(())
}

/// The prompt length (at most half the context) and decoded tokens (the rest of the context at
/// most) to measure; a context of one token leaves nothing to decode after a prompt.
fn lengths(block_size: usize, prompt: usize, decode: usize) -> Result<(usize, usize), Error> {
    if block_size < 2 {
        return Err(Error::Unsupported(format!(
            "bench needs a context of at least 2 tokens (a prompt and one decoded token); this model's is {block_size}"
        )));
    }
    let prompt = prompt.clamp(1, block_size / 2);
    Ok((prompt, decode.clamp(1, block_size - prompt)))
}

/// Decode slowdowns (sorted) from the LoRA plug-in the engine has loaded, one per pair of decode
/// runs on this engine without and with it (the same adapter unplugged and plugged back), the order
/// flipping every pair. A shared machine's speed drifts between separate processes by more than the
/// overhead itself; runs a second apart on one engine, with the same prompts, see the same machine.
fn lora_overhead(
    engine: &mut Engine,
    prompt_len: usize,
    decode: usize,
    pairs: usize,
) -> Result<Vec<f64>, Error> {
    let mut lora = engine.unload_lora();
    let mut slowdowns = Vec::with_capacity(pairs);
    for pair in 0..pairs {
        let mut decode_with = |with: bool| -> Result<f64, Error> {
            if with {
                engine.load_lora(lora.take().expect("the engine had a LoRA loaded"))?;
            }
            let tps = measure(engine, prompt_len, decode, 1000 + pair as u64)?.1;
            if with {
                lora = engine.unload_lora();
            }
            Ok(tps)
        };
        let (base, with) = if pair % 2 == 0 {
            let base = decode_with(false)?;
            (base, decode_with(true)?)
        } else {
            let with = decode_with(true)?;
            (decode_with(false)?, with)
        };
        slowdowns.push(base / with - 1.0);
    }
    slowdowns.sort_by(f64::total_cmp);
    Ok(slowdowns)
}

/// The median of sorted values (at least one).
fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Prefill and decode tokens/s of one run: greedy (no sorting in the sampler), random non-special
/// prompt ids; a run that meets <|eos|> early is continued with another prompt.
fn measure(
    engine: &mut Engine,
    prompt_len: usize,
    decode: usize,
    seed: u64,
) -> Result<(f64, f64), Error> {
    let tok = engine.model().tokenizer().clone();
    let vocab = tok.vocab_size() as u64;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x6e61_6e6f;
    let mut next_id = || loop {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let id = ((z ^ (z >> 31)) % vocab) as u32;
        if !tok.is_special(id) {
            return id;
        }
    };
    let opts = GenerateOptions {
        max_new_tokens: decode,
        temperature: 0.0,
        ..Default::default()
    };
    let (mut prefill_tps, mut gen, mut secs) = (0f64, 0usize, 0f64);
    for _ in 0..8 {
        let ids: Vec<u32> = (0..prompt_len).map(|_| next_id()).collect();
        let stats = engine.generate_ids(ids, &opts, &mut |_| true)?;
        if stats.prefill_secs > 0.0 {
            prefill_tps = prefill_tps.max(prompt_len as f64 / stats.prefill_secs);
        }
        gen += stats.generated_tokens;
        secs += stats.decode_secs;
        if gen >= decode {
            break;
        }
    }
    // The first decode step follows prefill's sampling: tokens after it are what decode_secs times.
    let decode_tps = if secs > 0.0 { gen as f64 / secs } else { 0.0 };
    Ok((prefill_tps, decode_tps))
}

/// Weight bytes one decode step reads: every matrix, the tied classifier included; of an untied
/// token embedding and of position embeddings only one row (ignored).
fn decode_bytes_per_token(model: &Model) -> u64 {
    let tensors = model.tensors();
    let untied = tensors.iter().any(|t| t.name == "output.weight");
    tensors
        .iter()
        .filter(|t| {
            t.name != "pos_embeddings.weight" && !(untied && t.name == "tok_embeddings.weight")
        })
        .map(|t| {
            let n = t.numel() as u64;
            match t.dtype {
                DType::F32 => 4 * n,
                DType::F16 => 2 * n,
                DType::Q8_0 => n + 4 * n / 32,
                DType::Q4_0 => n / 2 + 4 * n / 32,
            }
        })
        .sum()
}

/// STREAM-style copy bandwidth (bytes read + written per second) with `threads` threads, best of 5,
/// over 2 × 256 MiB buffers.
fn copy_bandwidth(threads: usize) -> f64 {
    const LEN: usize = 256 << 20;
    let src = vec![1u8; LEN];
    let mut dst = vec![0u8; LEN];
    let chunk = LEN.div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for (d, c) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                s.spawn(move || d.copy_from_slice(c));
            }
        });
        best = best.min(t0.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * LEN as f64 / best / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_fit_every_context() {
        assert!(lengths(0, 128, 64).is_err());
        let err = lengths(1, 128, 64).unwrap_err().to_string();
        assert!(err.contains("at least 2 tokens"), "{err}");
        for block in 2..40 {
            for (p, d) in [(0, 0), (1, 1), (128, 64), (usize::MAX, usize::MAX)] {
                let (prompt, decode) = lengths(block, p, d).unwrap();
                assert!(prompt >= 1 && decode >= 1, "block {block}");
                assert!(
                    prompt <= block / 2 && prompt + decode <= block,
                    "block {block}"
                );
            }
        }
        assert_eq!(lengths(512, 128, 64).unwrap(), (128, 64));
    }
}
