//! The inference engine: a model, an optional LoRA plug-in, the KV cache, and streaming generation
//! with the sampler of docs/sampling.md.
use nano_tokenizer::special;

use crate::attention::{KvCache, KvDtype};
use crate::error::{Error, Result};
use crate::forward::{Buffers, Forward, Rope};
use crate::kernels::Scratch;
use crate::model::{Lora, Model};
use crate::sampler::{Sampler, SamplerOptions};

/// Options of one generation (the "off" values of docs/sampling.md disable a step).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub top_p: f32,
    /// 1.0 = off.
    pub repetition_penalty: f32,
    pub seed: u64,
    /// Wrap the prompt in the instruction template `<|instruct_mark|>` prompt `<|response_mark|>`
    /// (for a model whose file carries a chat template: one user turn in that template).
    pub instruct: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 256,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            instruct: false,
        }
    }
}

impl GenerateOptions {
    /// The sampling part of the options.
    pub fn sampler_options(&self) -> SamplerOptions {
        SamplerOptions {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
        }
    }

    /// Checks the options: the sampling ones with [`SamplerOptions::validate`], the check every
    /// engine shares (the rest cannot be invalid).
    pub fn validate(&self) -> Result<()> {
        self.sampler_options().validate()
    }
}

/// Most worker threads per logical CPU. The workers spin while a forward pass runs, so threads
/// beyond the CPUs only take turns on them; a small excess is allowed (to measure it), thousands
/// of threads are refused.
pub const MAX_THREADS_PER_CPU: usize = 4;

/// The largest thread count an engine accepts on this machine ([`MAX_THREADS_PER_CPU`] per
/// logical CPU).
pub fn max_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus.saturating_mul(MAX_THREADS_PER_CPU)
}

/// Refuses a thread count of 0 or above [`max_threads`] (checked before any thread starts).
pub fn check_threads(threads: usize) -> Result<()> {
    if threads == 0 || threads > max_threads() {
        return Err(threads_error(threads));
    }
    Ok(())
}

/// The error of a thread count outside 1..=[`max_threads`] (for callers holding a signed or wider
/// count, e.g. the Python binding).
pub fn threads_error(got: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!(
        "threads must be between 1 and {} ({MAX_THREADS_PER_CPU} per logical CPU), got {got}",
        max_threads()
    ))
}

/// Refuses a model that is not causal (before any thread starts).
fn check_causal(model: &Model) -> Result<()> {
    if !model.config().is_causal {
        return Err(Error::Unsupported(
            "this model is not causal (is_causal = false); the engine generates with causal models only".into(),
        ));
    }
    Ok(())
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerateStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
    /// Generation ended because prompt and output filled the context (block_size); with
    /// `generated_tokens == 0` the prompt alone filled it.
    pub context_full: bool,
}

/// Wall-clock timing where the platform has a clock (wasm32-unknown-unknown has none: times are 0).
struct Clock {
    #[cfg(not(target_arch = "wasm32"))]
    start: std::time::Instant,
}

impl Clock {
    fn start() -> Self {
        Clock {
            #[cfg(not(target_arch = "wasm32"))]
            start: std::time::Instant::now(),
        }
    }
    fn secs(&self) -> f64 {
        #[cfg(not(target_arch = "wasm32"))]
        return self.start.elapsed().as_secs_f64();
        #[cfg(target_arch = "wasm32")]
        0.0
    }
}

/// One sequence of a batch ([`Engine::decode_batch`]): its KV cache and how many positions of it
/// are filled.
pub struct Sequence {
    cache: KvCache,
    len: usize,
}

impl Sequence {
    /// Makes room for `positions` positions (at most the context) in the KV cache now, so that
    /// the sequence allocates nothing more up to there (without it the cache grows as used).
    pub fn reserve(&mut self, positions: usize) -> Result<()> {
        self.cache.reserve(positions)
    }

    /// Positions filled (prompt and generated tokens so far).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Sequence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence").field("len", &self.len).finish()
    }
}

pub struct Engine {
    model: Model,
    lora: Option<Lora>,
    cache: KvCache,
    rope: Rope,
    scratch: Scratch,
    buffers: Buffers,
    team: std::sync::Arc<crate::sched::Team>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.model)
            .field("lora", &self.lora.is_some())
            .finish()
    }
}

impl Engine {
    /// `threads`: worker threads for the kernels (None = the physical performance cores, see
    /// [`crate::sched::performance_cores`]; ignored without the "threads" feature).
    pub fn new(model: Model, threads: Option<usize>) -> Result<Engine> {
        Engine::with_kv_cache(model, threads, KvDtype::F32)
    }

    /// [`Engine::new`] with the KV cache kept in `kv` (f16 halves its memory and what each decode
    /// step reads of it, for a small loss of precision in attention).
    pub fn with_kv_cache(model: Model, threads: Option<usize>, kv: KvDtype) -> Result<Engine> {
        check_causal(&model)?;
        if let Some(n) = threads {
            check_threads(n)?;
        }
        // Without the "threads" feature the engine computes on the calling thread alone.
        let n = match cfg!(feature = "threads") {
            true => threads.unwrap_or_else(crate::sched::performance_cores),
            false => 1,
        };
        let team = crate::sched::Team::new(n)
            .map_err(|e| Error::Unsupported(format!("cannot start {n} threads: {e}")))?;
        Engine::with_team(model, team, kv)
    }

    /// [`Engine::with_kv_cache`] computing on `team` (for threads that the platform starts itself:
    /// the browser build's Web Workers, see [`crate::sched::Team::start`]).
    pub fn with_team(model: Model, team: crate::sched::Team, kv: KvDtype) -> Result<Engine> {
        check_causal(&model)?;
        Ok(Engine {
            cache: KvCache::new(&model, kv)?,
            rope: Rope::new(&model),
            model,
            lora: None,
            scratch: Scratch::default(),
            buffers: Buffers::default(),
            team: std::sync::Arc::new(team),
        })
    }

    /// Threads the engine computes on (its team's, the calling thread included).
    pub fn threads(&self) -> usize {
        self.team.threads()
    }

    /// Makes room for `positions` positions (at most the context) in the KV cache and the RoPE
    /// tables now, so that generating that far allocates nothing more. Without it they grow as
    /// positions are used.
    pub fn reserve(&mut self, positions: usize) -> Result<()> {
        self.cache.reserve(positions)?;
        self.rope.extend(positions)
    }

    /// Positions the KV cache has room for now.
    pub fn reserved(&self) -> usize {
        self.cache.capacity()
    }

    pub fn kv_cache(&self) -> KvDtype {
        self.cache.dtype()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }
    pub fn lora(&self) -> Option<&Lora> {
        self.lora.as_ref()
    }

    /// Plugs in a LoRA adapter (replacing any other) after checking it belongs to this base.
    pub fn load_lora(&mut self, lora: Lora) -> Result<()> {
        lora.check_base(&self.model)?;
        self.lora = Some(lora);
        Ok(())
    }

    /// Unplugs the adapter, handing it back (to plug in again later without re-reading its file).
    pub fn unload_lora(&mut self) -> Option<Lora> {
        self.lora.take()
    }

    /// Runs one forward pass inside this engine's thread team (entered once per pass), first making
    /// room for its positions in the KV cache and the RoPE tables (both grow as positions are used).
    fn forward(&mut self, tokens: &[u32], start: usize, all: bool) -> Result<Vec<f32>> {
        let end = start + tokens.len();
        self.cache.reserve(end)?;
        self.rope.extend(end)?;
        Ok(self.pass(|f, cache| f.run(cache, tokens, start, all)))
    }

    /// An empty sequence for [`Engine::prefill`] / [`Engine::decode_batch`], with its own KV cache
    /// (of this engine's element type; it grows as positions are used).
    pub fn new_sequence(&self) -> Result<Sequence> {
        Ok(Sequence {
            cache: KvCache::new(&self.model, self.cache.dtype())?,
            len: 0,
        })
    }

    /// Starts `seq` over from `ids` (checked as a prompt; what it held before is dropped) and
    /// returns the logits after its last token.
    pub fn prefill(&mut self, seq: &mut Sequence, ids: &[u32]) -> Result<Vec<f32>> {
        self.check_prompt_ids(ids)?;
        seq.len = 0;
        seq.cache.reserve(ids.len())?;
        self.rope.extend(ids.len())?;
        let logits = self.pass(|f, _| f.run(&mut seq.cache, ids, 0, false));
        seq.len = ids.len();
        Ok(logits)
    }

    /// One decode step of several sequences in one forward pass (every weight read once for all
    /// of them): `tokens[i]` is appended to `seqs[i]`. Returns [n, vocab] logits, row `i` the next
    /// token's logits of `seqs[i]`: the same bits as a one-sequence step of that sequence alone
    /// (the matrix kernels give each input the result it gets alone for fewer inputs than the
    /// float token-lane threshold, so larger batches run in passes of fewer rows).
    pub fn decode_batch(&mut self, seqs: &mut [&mut Sequence], tokens: &[u32]) -> Result<Vec<f32>> {
        if seqs.len() != tokens.len() {
            return Err(Error::InvalidInput(format!(
                "{} sequences but {} tokens",
                seqs.len(),
                tokens.len()
            )));
        }
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.model.config();
        if let Some(&bad) = tokens.iter().find(|&&i| i as usize >= c.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        let mut end = 0;
        for s in seqs.iter_mut() {
            if s.len == 0 {
                return Err(Error::InvalidInput(
                    "decode_batch needs prefilled sequences".into(),
                ));
            }
            s.cache.reserve(s.len + 1)?; // refuses a sequence at the end of the context
            end = end.max(s.len + 1);
        }
        self.rope.extend(end)?;
        let mut logits = Vec::with_capacity(tokens.len() * c.vocab_size);
        // Passes of fewer rows than float weights' token-lane kernels take (those sum in their
        // own order), so that every row's result is its one-input result on every path.
        let rows = crate::kernels::TOKEN_LANES_MIN - 1;
        for (seqs, tokens) in seqs.chunks_mut(rows).zip(tokens.chunks(rows)) {
            let positions: Vec<usize> = seqs.iter().map(|s| s.len).collect();
            let mut caches: Vec<&mut KvCache> = seqs.iter_mut().map(|s| &mut s.cache).collect();
            logits.extend(self.pass(|f, _| f.run_batch(&mut caches, &positions, tokens)));
            for s in seqs.iter_mut() {
                s.len += 1;
            }
        }
        Ok(logits)
    }

    /// Runs `f` on every item over this engine's thread team (in order on this thread when the team
    /// has one thread or the "threads" feature is off): for independent work between forward
    /// passes, such as sampling each sequence's next token. Items may run in any order.
    pub fn for_each_in_team<T: Send>(&self, items: Vec<T>, f: impl Fn(T) + Sync) {
        self.team
            .enter(|| crate::sched::spread(items.into_iter(), f))
    }

    /// Runs `body` on a [`Forward`] of this engine (and the engine's own KV cache) inside its
    /// thread team.
    fn pass<T>(&mut self, body: impl FnOnce(&mut Forward, &mut KvCache) -> T) -> T {
        let mut f = Forward {
            model: &self.model,
            lora: self.lora.as_ref(),
            rope: &self.rope,
            scratch: &mut self.scratch,
            buffers: &mut self.buffers,
        };
        let cache = &mut self.cache;
        self.team.enter(|| body(&mut f, cache))
    }

    /// Refuses empty prompts, prompts longer than the context and ids outside the vocabulary.
    pub fn check_prompt_ids(&self, ids: &[u32]) -> Result<()> {
        let c = self.model.config();
        if ids.is_empty() {
            return Err(Error::InvalidInput(
                "empty prompt: at least one token is needed".into(),
            ));
        }
        if ids.len() > c.block_size {
            return Err(Error::InvalidInput(format!(
                "prompt of {} tokens is longer than the context of {} tokens",
                ids.len(),
                c.block_size
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= c.vocab_size) {
            return Err(Error::InvalidInput(format!(
                "token id {bad} is outside the vocabulary of {}",
                c.vocab_size
            )));
        }
        Ok(())
    }

    /// Logits at every position of `ids` (len * vocab values, row-major), from an empty cache.
    pub fn logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.check_prompt_ids(ids)?;
        self.forward(ids, 0, true)
    }

    /// The token ids generation starts from: the encoded prompt, wrapped in the template if `instruct`.
    pub fn prompt_ids(&self, prompt: &str, instruct: bool) -> Result<Vec<u32>> {
        let tok = self.model.tokenizer();
        if !instruct {
            return Ok(tok.prompt_ids(prompt));
        }
        if tok.chat_template().is_some() {
            // an imported model: one user turn in the model's own chat template
            let messages = serde_json::json!([{"role": "user", "content": prompt}]).to_string();
            return tok.chat_ids(&messages, true);
        }
        let ids = tok.prompt_ids(prompt);
        let mark = |name: &str| {
            tok.token_to_id(name).ok_or_else(|| {
                Error::Unsupported(format!(
                    "instruction mode needs the token {name}, which this vocabulary lacks"
                ))
            })
        };
        Ok(special::instruction_ids(
            mark(special::INSTRUCT_MARK)?,
            &ids,
            mark(special::RESPONSE_MARK)?,
        ))
    }

    /// Generates text after `prompt`, handing each new piece to `on_piece` (return false to stop).
    /// Stops at `<|eos|>` (not printed), after `max_new_tokens`, or when the context is full.
    pub fn generate(
        &mut self,
        prompt: &str,
        opts: &GenerateOptions,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerateStats> {
        let ids = self.prepare(prompt, opts)?;
        self.generate_ids(ids, opts, on_piece)
    }

    /// Checks the options and turns the prompt into checked token ids (what [`Engine::generate`] starts from).
    pub fn prepare(&self, prompt: &str, opts: &GenerateOptions) -> Result<Vec<u32>> {
        opts.validate()?;
        if prompt.is_empty() {
            return Err(Error::InvalidInput("empty prompt".into()));
        }
        let ids = self.prompt_ids(prompt, opts.instruct)?;
        self.check_prompt_ids(&ids)?;
        Ok(ids)
    }

    /// As [`Engine::generate`], from token ids.
    pub fn generate_ids(
        &mut self,
        mut ids: Vec<u32>,
        opts: &GenerateOptions,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenerateStats> {
        opts.validate()?;
        self.check_prompt_ids(&ids)?;
        let block = self.model.config().block_size;
        let tokenizer = self.model.tokenizer().clone();
        let stop = tokenizer.stop_ids();
        let mut stats = GenerateStats {
            prompt_tokens: ids.len(),
            ..Default::default()
        };
        let mut sampler = Sampler::new(opts.sampler_options(), opts.seed);
        // special tokens print nothing (as in the PyTorch path); a stop token (<|eos|>, or the eos
        // ids of an imported model) ends the generation before printing
        let mut decoder = tokenizer.stream_decoder();
        if ids.len() >= block {
            stats.context_full = true;
            return Ok(stats);
        }
        if opts.max_new_tokens == 0 {
            return Ok(stats);
        }
        let clock = Clock::start();
        let mut logits = self.forward(&ids, 0, false)?;
        stats.prefill_secs = clock.secs();
        let clock = Clock::start();
        loop {
            let next = sampler.sample(&mut logits, &ids);
            if stop.contains(&next) {
                break;
            }
            ids.push(next);
            stats.generated_tokens += 1;
            let piece = decoder.push(next)?;
            let more = on_piece(piece);
            decoder.take();
            if !more || stats.generated_tokens >= opts.max_new_tokens {
                break;
            }
            if ids.len() >= block {
                stats.context_full = true;
                break;
            }
            logits = self.forward(&[next], ids.len() - 1, false)?;
        }
        // Byte tokens of a character the generation left unfinished come out as U+FFFD.
        let tail = decoder.finish();
        if !tail.is_empty() {
            on_piece(tail);
        }
        stats.decode_secs = clock.secs();
        Ok(stats)
    }
}
