//! `nano-wasm`: the browser build of Nano's inference engine. It wraps `nano_infer` (no second
//! implementation) in a small wasm-bindgen API that the page's Web Worker drives:
//! load a model from bytes, load / unload a LoRA plug-in, set sampling options, generate with a
//! per-piece callback (returning false interrupts), chat with the model's chat template, and report
//! tokens/s. Built with WASM threads (shared memory), the engine computes on a team of threads whose
//! workers are Web Workers (see `team`).
use nano_infer::kernels::selftest;
use nano_infer::{parse_messages, Engine, GenerateOptions, GenerateStats, KvDtype, Lora, Model};
use wasm_bindgen::prelude::*;

mod team;
pub use team::{run_team_worker, shared_memory};

#[wasm_bindgen]
extern "C" {
    /// Milliseconds from the page's (or worker's) monotonic clock: wasm32 has no `Instant`.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// The engine's version (`nano_infer::VERSION`), shown by the page once the worker has started.
#[wasm_bindgen]
pub fn version() -> String {
    nano_infer::VERSION.to_string()
}

/// The kernels' golden test on this build (the same fixed inputs as the native kernel tests, in
/// `nano_infer::kernels::selftest`): for every kernel path this build has (scalar, simd128), and for
/// the 16-row panel layout (see [`panel_golden`]), a JSON object `{"path", "q8_0", "q4_0"}` with
/// 16-hex-digit output hashes; each must equal [`kernel_golden_expected`] bit for bit.
#[wasm_bindgen(js_name = kernelGolden)]
pub fn kernel_golden() -> String {
    let paths: Vec<_> = selftest::golden_hashes()
        .into_iter()
        .map(|(path, q8, q4)| (path.to_string(), q8, q4))
        .chain(std::iter::once(panel_golden()))
        .map(|(path, q8, q4)| serde_json::json!({"path": path, "q8_0": hex(q8), "q4_0": hex(q4)}))
        .collect();
    serde_json::Value::Array(paths).to_string()
}

/// q8_0 weights of -128 (never written by the quantizer, but valid in a file) take a slower exact
/// branch in the relaxed-SIMD kernels. A JSON object of output hashes of such a matrix: the scalar
/// reference ("scalar"), this build's fastest row kernels ("rows") and its panel layout ("panels");
/// all three must be equal.
#[wasm_bindgen(js_name = kernelMinus128Check)]
pub fn kernel_minus128_check() -> String {
    use nano_infer::kernels::{panel, Kernels, MatRef, Scratch, Weights, QK};
    let mut rng = selftest::Rng(0x2d31_3238);
    let (rows, cols, n) = (32, 320, 2);
    let mat = selftest::Mat::random(&mut rng, rows, cols);
    let x = rng.vec(n * cols, 4.0);
    let mut qs = mat.q8.0.clone();
    // Every 5th weight -128: in some groups of every row, beside both signs of x.
    qs.iter_mut().step_by(5).for_each(|v| *v = -128);
    let mut packed: Vec<u8> = qs.iter().map(|&v| v as u8).collect();
    panel::pack_q8_values(&mut packed, rows, cols);
    let packed: Vec<i8> = packed.into_iter().map(|v| v as i8).collect();
    let mut scales = mat.q8.1.clone();
    panel::pack_scales(&mut scales, rows, cols / QK);
    let mut scratch = Scratch::default();
    let mut run = |k: Kernels, w| {
        let mut out = vec![0f32; n * rows];
        k.matmul(&mut out, &MatRef { rows, cols, w }, &x, n, &mut scratch);
        hex(selftest::hash(&out))
    };
    let row_layout = Weights::Q8_0 {
        qs: &qs,
        scales: &mat.q8.1,
    };
    let scalar = run(Kernels::available()[0], row_layout);
    let best = run(Kernels::best(), row_layout);
    let panels = run(
        Kernels::best(),
        Weights::Q8_0Panels {
            qs: &packed,
            scales: &scales,
        },
    );
    serde_json::json!({"scalar": scalar, "rows": best, "panels": panels}).to_string()
}

/// The golden product (selftest's seed, matrix and inputs) with the weights rearranged into 16-row
/// panels, as model loading does when the fastest path has panel kernels; run on that path's panel
/// kernels ("simd128-panels") or else the scalar ones ("scalar-panels"). Panels change only the
/// layout, so the hashes are the row layout's.
fn panel_golden() -> (String, u64, u64) {
    use nano_infer::kernels::{panel, Kernels, MatRef, Scratch, Weights, QK};
    let mut rng = selftest::Rng(0x6e61_6e6f);
    let mat = selftest::Mat::random(&mut rng, 96, 1408);
    let n = 3;
    let x = rng.vec(n * 1408, 4.0);
    let (rows, cols) = (mat.rows, mat.cols);
    let mut q8: Vec<u8> = mat.q8.0.iter().map(|&v| v as u8).collect();
    panel::pack_q8_values(&mut q8, rows, cols);
    let q8: Vec<i8> = q8.into_iter().map(|v| v as i8).collect();
    let mut s8 = mat.q8.1.clone();
    panel::pack_scales(&mut s8, rows, cols / QK);
    let mut q4 = mat.q4.0.clone();
    panel::pack_q4_values(&mut q4, rows, cols);
    let mut s4 = mat.q4.1.clone();
    panel::pack_scales(&mut s4, rows, cols / QK);
    let k = Kernels::best();
    let mut scratch = Scratch::default();
    let mut hash_of = |w| {
        let mut out = vec![0f32; n * rows];
        k.matmul(&mut out, &MatRef { rows, cols, w }, &x, n, &mut scratch);
        selftest::hash(&out)
    };
    let h8 = hash_of(Weights::Q8_0Panels {
        qs: &q8,
        scales: &s8,
    });
    let h4 = hash_of(Weights::Q4_0Panels {
        packed: &q4,
        scales: &s4,
    });
    let path = if k.panels().is_some() {
        k.name()
    } else {
        "scalar"
    };
    (format!("{path}-panels"), h8, h4)
}

/// The native kernel tests' golden hashes `[q8_0, q4_0]`.
#[wasm_bindgen(js_name = kernelGoldenExpected)]
pub fn kernel_golden_expected() -> Vec<String> {
    vec![hex(selftest::GOLDEN_Q8), hex(selftest::GOLDEN_Q4)]
}

fn hex(h: u64) -> String {
    format!("{h:016x}")
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Timings and counts of one generation.
#[wasm_bindgen]
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    /// Prompt processing up to the first new token, in seconds.
    pub prefill_secs: f64,
    /// From the first new token to the end (generated_tokens - 1 forward passes), in seconds.
    pub decode_secs: f64,
    /// True when the callback asked to stop.
    pub interrupted: bool,
}

#[wasm_bindgen]
impl Stats {
    /// Decode speed: tokens after the first one per second of decoding (0 when not measurable).
    #[wasm_bindgen(getter)]
    pub fn decode_tokens_per_sec(&self) -> f64 {
        if self.generated_tokens > 1 && self.decode_secs > 0.0 {
            (self.generated_tokens - 1) as f64 / self.decode_secs
        } else {
            0.0
        }
    }
}

/// One loaded model with its engine, the sampling options and an optional LoRA plug-in.
#[wasm_bindgen]
pub struct WasmEngine {
    engine: Engine,
    options: GenerateOptions,
    /// Team workers waiting for a thread ([`WasmEngine::take_team_workers`]).
    workers: Vec<u32>,
}

#[wasm_bindgen]
impl WasmEngine {
    /// Loads a model file (`.bin`) from its bytes for an engine of `threads` threads (default 1;
    /// more only in the build with shared memory, see [`shared_memory`], where the page then starts
    /// the workers that [`WasmEngine::take_team_workers`] lists). A bad file or thread count gives
    /// an error with the reason.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: Vec<u8>, threads: Option<u32>) -> Result<WasmEngine, JsError> {
        let threads = threads.unwrap_or(1);
        team::check_threads(threads).map_err(js_err)?;
        let model = Model::from_bytes(bytes).map_err(js_err)?;
        let (team, workers) = team::start(threads);
        let engine = Engine::with_team(model, team, KvDtype::F32).map_err(|e| {
            team::forget(&workers);
            js_err(e)
        })?;
        Ok(WasmEngine {
            engine,
            options: GenerateOptions::default(),
            workers,
        })
    }

    /// Threads the engine computes on (the calling one included).
    #[wasm_bindgen(getter)]
    pub fn threads(&self) -> u32 {
        self.engine.threads() as u32
    }

    /// The ids of this engine's team workers that no thread runs yet, each to be passed to
    /// [`run_team_worker`] on a Web Worker of its own (listed once: the list is emptied). Until
    /// they run, the calling thread does all the work.
    pub fn take_team_workers(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.workers)
    }

    /// The model's shape and file details as a JSON object text.
    pub fn info(&self) -> String {
        let model = self.engine.model();
        let config = serde_json::to_value(model.config()).unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "config": config,
            "dtype": model.dtype().name(),
            "version": format!("{:?}", model.version()),
            "tokenizer_hash": model.tokenizer().hash_hex(),
            "vocab_size": model.tokenizer().vocab_size(),
            "lora": self.engine.lora().is_some(),
        })
        .to_string()
    }

    /// Plugs in a LoRA plug-in file (replacing any other); it must belong to this base model.
    pub fn load_lora(&mut self, bytes: Vec<u8>) -> Result<(), JsError> {
        let lora = Lora::from_bytes(bytes).map_err(js_err)?;
        self.engine.load_lora(lora).map_err(js_err)
    }

    pub fn unload_lora(&mut self) {
        self.engine.unload_lora();
    }

    #[wasm_bindgen(getter)]
    pub fn has_lora(&self) -> bool {
        self.engine.lora().is_some()
    }

    /// Sampling options for the next generations (docs/sampling.md): temperature 0 = greedy,
    /// top_k 0 = off, top_p 1 = off, repetition_penalty 1 = off; `instruct` wraps the prompt in the
    /// instruction template.
    #[allow(clippy::too_many_arguments)]
    pub fn set_options(
        &mut self,
        max_new_tokens: u32,
        temperature: f32,
        top_k: u32,
        top_p: f32,
        repetition_penalty: f32,
        seed: u64,
        instruct: bool,
    ) -> Result<(), JsError> {
        let options = GenerateOptions {
            max_new_tokens: max_new_tokens as usize,
            temperature,
            top_k: top_k as usize,
            top_p,
            repetition_penalty,
            seed,
            instruct,
        };
        // the engine's own check (the one every Nano engine makes), before the options are kept
        options.validate().map_err(js_err)?;
        self.options = options;
        Ok(())
    }

    /// Generates after `prompt`, calling `on_piece(text)` for each new piece of text; a falsy return
    /// value interrupts. An exception thrown by the callback also stops and is passed on.
    pub fn generate(
        &mut self,
        prompt: &str,
        on_piece: &js_sys::Function,
    ) -> Result<Stats, JsError> {
        let options = self.options.clone();
        stream(on_piece, |callback| {
            self.engine.generate(prompt, &options, callback)
        })
    }

    /// The token ids the answer to a conversation is generated after: `messages_json` is a JSON
    /// list of `{"role": "user" | "assistant", "content": text}` ending with the user's turn,
    /// rendered with the model's chat template (`nano_infer`'s chat API, as `nano.Engine.chat`).
    pub fn chat_prompt_ids(&self, messages_json: &str) -> Result<Vec<u32>, JsError> {
        let messages = parse_messages(messages_json).map_err(js_err)?;
        self.engine.chat_prompt_ids(&messages).map_err(js_err)
    }

    /// Generates the assistant's answer to a conversation (`messages_json` as for
    /// [`WasmEngine::chat_prompt_ids`]), streaming pieces to `on_piece` as [`WasmEngine::generate`]
    /// does; the `instruct` option is not used (the chat template wraps every turn).
    pub fn chat(
        &mut self,
        messages_json: &str,
        on_piece: &js_sys::Function,
    ) -> Result<Stats, JsError> {
        let messages = parse_messages(messages_json).map_err(js_err)?;
        let options = self.options.clone();
        stream(on_piece, |callback| {
            self.engine.chat(&messages, &options, callback)
        })
    }

    /// Greedy continuation as token ids, without text decoding (used by tests and the benchmark).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.engine.model().tokenizer().encode(text, false)
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        // Workers no Web Worker took: nothing will run them.
        team::forget(&self.workers);
    }
}

/// Runs one generation, passing each piece to the JS callback `on_piece` (a falsy return interrupts,
/// an exception stops and is reported) and timing it with the page's clock.
fn stream(
    on_piece: &js_sys::Function,
    run: impl FnOnce(&mut dyn FnMut(&str) -> bool) -> nano_infer::Result<GenerateStats>,
) -> Result<Stats, JsError> {
    let start = performance_now();
    let mut first_piece_at: Option<f64> = None;
    let mut interrupted = false;
    let mut thrown: Option<JsValue> = None;
    let mut callback = |piece: &str| -> bool {
        first_piece_at.get_or_insert_with(performance_now);
        match on_piece.call1(&JsValue::NULL, &JsValue::from_str(piece)) {
            Ok(more) if more.is_truthy() => true,
            Ok(_) => {
                interrupted = true;
                false
            }
            Err(e) => {
                thrown = Some(e);
                false
            }
        }
    };
    let result = run(&mut callback);
    let end = performance_now();
    if let Some(e) = thrown {
        return Err(JsError::new(&format!(
            "the piece callback failed: {}",
            describe(&e)
        )));
    }
    let stats = result.map_err(js_err)?;
    let first = first_piece_at.unwrap_or(end);
    Ok(Stats {
        prompt_tokens: stats.prompt_tokens as u32,
        generated_tokens: stats.generated_tokens as u32,
        prefill_secs: (first - start) / 1e3,
        decode_secs: (end - first) / 1e3,
        interrupted,
    })
}

fn describe(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| {
            js_sys::Reflect::get(e, &JsValue::from_str("message"))
                .ok()?
                .as_string()
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_kernel_paths_match_the_golden_hashes() {
        let expected = kernel_golden_expected();
        let paths: serde_json::Value = serde_json::from_str(&kernel_golden()).unwrap();
        let paths = paths.as_array().unwrap();
        assert!(paths.iter().any(|p| p["path"] == "scalar"));
        for p in paths {
            assert_eq!(
                [&p["q8_0"], &p["q4_0"]],
                [&expected[0], &expected[1]],
                "{p}"
            );
        }
    }
}
