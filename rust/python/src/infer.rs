//! Python binding of the `nano-infer` crate: the model-file writer/reader used by `nano.export`, and
//! the class `nano._native.Engine` wrapped by `nano.engine.Engine`. Heavy work runs with the GIL released.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use nano_infer::format::{
    self, legacy, v2026, DType, HfTokenizer, LoraBase, LoraConfig, ModelConfig, TokenList,
};
use nano_infer::kernels;
use nano_infer::sampler::SamplerOptions;
use nano_infer::{Engine, Error, GenerateOptions, KvDtype, Lora, Model};
use nano_tokenizer::Tokenizer;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt};

fn to_py_err(e: Error) -> PyErr {
    match e {
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// Runs native work (with the GIL released by the caller) so that a panic in it reaches Python as
/// a RuntimeError naming it, not as pyo3's PanicException (a BaseException that `except
/// Exception` does not catch). A panic while the engine is locked poisons its lock, so later calls
/// are refused rather than run on a half-updated engine.
fn guarded<R>(f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Err(internal_error(&panic_message(&*panic))))
}

fn internal_error(why: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "internal error in the native engine (a bug; please report it): {why}"
    ))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

fn json_err(what: &str) -> impl Fn(serde_json::Error) -> PyErr + '_ {
    move |e| PyValueError::new_err(format!("{what}: {e}"))
}

/// A named tensor copied out of NumPy: (name, shape, row-major f32 values).
type OwnedTensor = (String, Vec<usize>, Vec<f32>);

/// name -> (shape, f32 values) copied out of NumPy arrays (any layout; must be float32).
fn tensors_from(dict: &Bound<'_, PyDict>) -> PyResult<Vec<OwnedTensor>> {
    let mut out = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let name: String = k.extract()?;
        let arr: PyReadonlyArrayDyn<'_, f32> = v.extract().map_err(|_| {
            PyValueError::new_err(format!("tensor {name:?} must be a float32 NumPy array"))
        })?;
        let view = arr.as_array();
        let shape = view.shape().to_vec();
        let values = view.iter().copied().collect();
        out.push((name, shape, values));
    }
    Ok(out)
}

fn tensor_refs(t: &[OwnedTensor]) -> Vec<v2026::TensorIn<'_>> {
    t.iter()
        .map(|(n, s, v)| v2026::TensorIn {
            name: n.clone(),
            shape: s.clone(),
            data: v,
        })
        .collect()
}

fn token_list(tokenizer_json: &str) -> PyResult<TokenList> {
    let tok = Tokenizer::from_json_str(tokenizer_json)
        .map_err(|e| PyValueError::new_err(format!("tokenizer: {e}")))?;
    let n = tok.vocab_size() as u32;
    Ok(TokenList {
        tokens: tok.tokens().to_vec(),
        special: (0..n).map(|i| tok.is_special(i)).collect(),
    })
}

/// Writes a base model file (Nano 2026.1 in `dtype`, or the 2024.10 fp32 layout when `legacy`).
/// `config_json` holds the `nano.model.ModelConfig` fields (bias must be false).
#[pyfunction]
#[pyo3(signature = (path, config_json, tokenizer_json, tensors, dtype="f32", legacy=false, base_hash=None))]
#[allow(clippy::too_many_arguments)]
fn write_model(
    py: Python<'_>,
    path: PathBuf,
    config_json: &str,
    tokenizer_json: &str,
    tensors: &Bound<'_, PyDict>,
    dtype: &str,
    legacy: bool,
    base_hash: Option<String>,
) -> PyResult<()> {
    let mut raw: serde_json::Value =
        serde_json::from_str(config_json).map_err(json_err("config"))?;
    if raw.get("bias").and_then(|b| b.as_bool()) == Some(true) {
        return Err(PyValueError::new_err(
            "models with bias=True cannot be exported (the engines have no biases)",
        ));
    }
    // Training-only fields are dropped by name; any other key the file cannot store is refused.
    if let Some(fields) = raw.as_object_mut() {
        for name in format::TRAINING_ONLY_FIELDS {
            fields.remove(name);
        }
    }
    let config: ModelConfig = serde_json::from_value(raw).map_err(json_err("config"))?;
    let dtype = DType::parse(dtype).map_err(to_py_err)?;
    if legacy && dtype != DType::F32 {
        return Err(PyValueError::new_err(
            "--legacy writes fp32 only (the 2024.10 int8 layout is read, not written)",
        ));
    }
    let tokens = token_list(tokenizer_json)?;
    let tensors = tensors_from(tensors)?;
    py.detach(|| {
        guarded(|| {
            let refs = tensor_refs(&tensors);
            let bytes = if legacy {
                legacy::encode_model(&config, &tokens, &refs)
            } else {
                v2026::encode_model(&config, &tokens, base_hash.as_deref(), &refs, dtype)
            };
            bytes
                .and_then(|b| format::write_atomic(&path, &b))
                .map_err(to_py_err)
        })
    })
}

/// Writes a model imported from Hugging Face (Nano 2026.2 in `dtype`): `config_json` holds the
/// file's config fields (qkv_bias, rope_scaling included), `hf_tokenizer_json` the tokenizer
/// section ({json, bos_token, eos_token, pad_token, unk_token, add_bos_token, chat_template,
/// stop_ids}).
#[pyfunction]
#[pyo3(signature = (path, config_json, hf_tokenizer_json, tensors, dtype="f32"))]
fn write_hf_model(
    py: Python<'_>,
    path: PathBuf,
    config_json: &str,
    hf_tokenizer_json: &str,
    tensors: &Bound<'_, PyDict>,
    dtype: &str,
) -> PyResult<()> {
    let config: ModelConfig = serde_json::from_str(config_json).map_err(json_err("config"))?;
    let hf: HfTokenizer =
        serde_json::from_str(hf_tokenizer_json).map_err(json_err("tokenizer section"))?;
    let dtype = DType::parse(dtype).map_err(to_py_err)?;
    let tensors = tensors_from(tensors)?;
    py.detach(|| {
        guarded(|| {
            let refs = tensor_refs(&tensors);
            v2026::encode_hf_model(&config, &hf, &refs, dtype)
                .and_then(|b| format::write_atomic(&path, &b))
                .map_err(to_py_err)
        })
    })
}

/// Converts a GGUF file to a Nano 2026 file, every tensor in its own type (see
/// `nano_infer::format::gguf_model`); the output is written atomically.
#[pyfunction]
fn convert_gguf(py: Python<'_>, src: PathBuf, out: PathBuf) -> PyResult<()> {
    py.detach(|| {
        guarded(|| {
            let bytes = std::fs::read(&src).map_err(|e| Error::Io {
                path: src.display().to_string(),
                source: e,
            });
            bytes
                .and_then(|b| {
                    format::gguf_model::to_nano_file(&b).map_err(|e| match e {
                        Error::Format(m) => Error::Format(format!("{}: {m}", src.display())),
                        e => e,
                    })
                })
                .and_then(|b| format::write_atomic(&out, &b))
                .map_err(to_py_err)
        })
    })
}

/// Writes a LoRA plug-in. `lora_json` = {rank, alpha, targets}; `base_json` = {hash, n_layer, n_embd,
/// n_head, n_kv_head, n_hidden}.
#[pyfunction]
#[pyo3(signature = (path, lora_json, base_json, tensors, legacy=false))]
fn write_lora(
    py: Python<'_>,
    path: PathBuf,
    lora_json: &str,
    base_json: &str,
    tensors: &Bound<'_, PyDict>,
    legacy: bool,
) -> PyResult<()> {
    let config: LoraConfig = serde_json::from_str(lora_json).map_err(json_err("LoRA config"))?;
    let base: LoraBase = serde_json::from_str(base_json).map_err(json_err("LoRA base"))?;
    let tensors = tensors_from(tensors)?;
    py.detach(|| {
        guarded(|| {
            let refs = tensor_refs(&tensors);
            let bytes = if legacy {
                legacy::encode_lora(&config, &base, &refs)
            } else {
                v2026::encode_lora(&config, &base, &refs)
            };
            bytes
                .and_then(|b| format::write_atomic(&path, &b))
                .map_err(to_py_err)
        })
    })
}

fn array<'py>(py: Python<'py>, shape: &[usize], values: Vec<f32>) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, values)
        .reshape(shape.to_vec())?
        .into_any())
}

/// Reads a model file (either format). Returns (config_json, tokenizer_json, {name: float32 array},
/// info dict with "version", "dtype", "base_hash", "tokenizer_kind" and, for models imported from
/// Hugging Face, "hf_tokenizer" (the header section as JSON)); quantized tensors come back dequantized.
#[pyfunction]
fn read_model<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let (model, tensors) = py.detach(|| {
        guarded(|| {
            let model = Model::open(&path).map_err(to_py_err)?;
            let mut out = Vec::new();
            for (i, t) in model.tensors().iter().enumerate() {
                let m = model.mat(i);
                let mut values = vec![0.0f32; m.rows * m.cols];
                for (r, row) in values.chunks_exact_mut(m.cols).enumerate() {
                    kernels::dequantize_row(&m, r, row);
                }
                out.push((t.name.clone(), t.shape.clone(), values));
            }
            Ok((model, out))
        })
    })?;
    let dict = PyDict::new(py);
    for (name, shape, values) in tensors {
        dict.set_item(name, array(py, &shape, values)?)?;
    }
    let info = PyDict::new(py);
    info.set_item("version", format!("{:?}", model.version()))?;
    info.set_item("dtype", model.dtype().name())?;
    info.set_item("base_hash", model.base_hash())?;
    info.set_item("tokenizer_kind", model.tokenizer().kind())?;
    if let Some(hf) = model.tokenizer().hf() {
        let section = serde_json::to_string(hf).map_err(json_err("tokenizer section"))?;
        info.set_item("hf_tokenizer", section)?;
    }
    let config = serde_json::to_string(model.config()).map_err(json_err("config"))?;
    let tok = model.tokenizer().to_json_string();
    Ok((config, tok, dict, info).into_pyobject(py)?.into_any())
}

/// Reads a LoRA plug-in (either format): (lora_json, base_json, {name: float32 array}).
#[pyfunction]
fn read_lora<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let parsed = py.detach(|| {
        guarded(|| {
            let bytes = std::fs::read(&path).map_err(|e| Error::Io {
                path: path.display().to_string(),
                source: e,
            });
            bytes
                .and_then(|b| format::parse_lora(&b))
                .map_err(to_py_err)
        })
    })?;
    let dict = PyDict::new(py);
    for (name, shape, values) in parsed.tensors {
        dict.set_item(name, array(py, &shape, values)?)?;
    }
    let lora = serde_json::to_string(&parsed.config).map_err(json_err("LoRA config"))?;
    let base = serde_json::to_string(&parsed.base).map_err(json_err("LoRA base"))?;
    Ok((lora, base, dict).into_pyobject(py)?.into_any())
}

/// The native engine. Calls lock it; generation runs on a worker thread feeding a [`PyGeneration`].
#[pyclass(name = "Engine", module = "nano._native", frozen)]
struct PyEngine {
    inner: Arc<Mutex<Engine>>,
    config_json: String,
    tokenizer_json: String,
    vocab_size: usize,
    base_hash: Option<String>,
}

impl PyEngine {
    /// Runs `f` on the engine with the GIL released (a running generation finishes first).
    fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Engine) -> Result<R, Error> + Send,
    ) -> PyResult<R> {
        let inner = self.inner.clone();
        py.detach(|| {
            guarded(|| {
                let mut engine = inner.lock().map_err(|_| {
                    PyRuntimeError::new_err("the engine failed during an earlier call")
                })?;
                f(&mut engine).map_err(to_py_err)
            })
        })
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (path, threads=None, kv_cache="f32", ctx=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        threads: Option<&Bound<'_, PyAny>>,
        kv_cache: &str,
        ctx: Option<usize>,
    ) -> PyResult<Self> {
        let kv: KvDtype = kv_cache.parse().map_err(to_py_err)?;
        let threads = threads.map(thread_count).transpose()?;
        let engine = py.detach(|| {
            guarded(|| {
                Model::open(&path)
                    .and_then(|mut model| {
                        if let Some(n) = ctx {
                            model.limit_context(n)?;
                        }
                        Engine::with_kv_cache(model, threads, kv)
                    })
                    .map_err(to_py_err)
            })
        })?;
        let config_json =
            serde_json::to_string(engine.model().config()).map_err(json_err("config"))?;
        let tokenizer_json = engine.model().tokenizer().to_json_string();
        let vocab_size = engine.model().config().vocab_size;
        let base_hash = engine.model().base_hash().map(str::to_string);
        Ok(PyEngine {
            inner: Arc::new(Mutex::new(engine)),
            config_json,
            tokenizer_json,
            vocab_size,
            base_hash,
        })
    }

    #[getter]
    fn config_json(&self) -> &str {
        &self.config_json
    }

    #[getter]
    fn tokenizer_json(&self) -> &str {
        &self.tokenizer_json
    }

    #[getter]
    fn base_hash(&self) -> Option<&str> {
        self.base_hash.as_deref()
    }

    /// Bytes the KV cache takes at the full context (after any `ctx` limit).
    #[getter]
    fn kv_cache_bytes(&self, py: Python<'_>) -> PyResult<u64> {
        self.with(py, |e| {
            Ok(e.kv_cache()
                .cache_bytes(e.model().config(), e.model().config().block_size))
        })
    }

    /// "Nano2026", "Legacy2024" or "Gguf": the format the model file was read from.
    #[getter]
    fn file_format(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |e| Ok(format!("{:?}", e.model().version())))
    }

    /// "nano" (Nano's vocabulary JSON in `tokenizer_json`) or "hf" (a `tokenizer.json` text).
    #[getter]
    fn tokenizer_kind(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.with(py, |e| Ok(e.model().tokenizer().kind()))
    }

    /// The prompt the model's chat template makes of `messages_json` (a JSON list of
    /// {"role", "content"} objects).
    #[pyo3(signature = (messages_json, add_generation_prompt=true))]
    fn render_chat(
        &self,
        py: Python<'_>,
        messages_json: &str,
        add_generation_prompt: bool,
    ) -> PyResult<String> {
        self.with(py, |e| {
            e.model()
                .tokenizer()
                .render_chat(messages_json, add_generation_prompt)
        })
    }

    fn load_lora(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        self.with(py, |e| e.load_lora(Lora::open(&path)?))
    }

    fn unload_lora(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |e| {
            e.unload_lora();
            Ok(())
        })
    }

    /// The token ids a prompt becomes (with the instruction template when `instruct`).
    #[pyo3(signature = (prompt, instruct=false))]
    fn prompt_ids(&self, py: Python<'_>, prompt: &str, instruct: bool) -> PyResult<Vec<u32>> {
        self.with(py, |e| e.prompt_ids(prompt, instruct))
    }

    /// The token ids the answer to a conversation is generated after: `messages_json` is a JSON
    /// list of `{"role", "content"}` objects (user and assistant turns, ending with the user's),
    /// rendered with the model's chat template and encoded with the special tokens matched.
    fn chat_prompt_ids(&self, py: Python<'_>, messages_json: &str) -> PyResult<Vec<u32>> {
        let messages = nano_infer::parse_messages(messages_json).map_err(to_py_err)?;
        self.with(py, move |e| e.chat_prompt_ids(&messages))
    }

    /// The Jinja source of the model's chat template.
    #[getter]
    fn chat_template(&self, py: Python<'_>) -> PyResult<String> {
        self.with(py, |e| Ok(e.chat_template()))
    }

    /// f32 logits [len(ids), vocab] at every position.
    fn logits<'py>(&self, py: Python<'py>, ids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        refuse_bytes(ids, "token_ids")?;
        let ids: Vec<i64> = ids.extract()?;
        let ids: Vec<u32> = ids
            .into_iter()
            .map(|i| {
                u32::try_from(i)
                    .map_err(|_| PyValueError::new_err(format!("token id {i} is out of range")))
            })
            .collect::<PyResult<_>>()?;
        let values = self.with(py, |e| e.logits(&ids))?;
        array(py, &[ids.len(), self.vocab_size], values)
    }

    /// Starts generating on a worker thread; returns an iterator of text pieces. `prompt` is text, or
    /// a list of token ids (used as-is).
    #[pyo3(signature = (prompt, max_new_tokens=256, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0, seed=0, instruct=false))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        prompt: &Bound<'_, PyAny>,
        max_new_tokens: usize,
        temperature: f32,
        top_k: i64,
        top_p: f32,
        repetition_penalty: f32,
        seed: u64,
        instruct: bool,
    ) -> PyResult<PyGeneration> {
        let opts = GenerateOptions {
            max_new_tokens,
            temperature,
            top_k: SamplerOptions::top_k_from(top_k).map_err(to_py_err)?,
            top_p,
            repetition_penalty,
            seed,
            instruct,
        };
        // bad prompts and options fail here, at the call, not at the first next()
        opts.validate().map_err(to_py_err)?;
        refuse_bytes(prompt, "prompt")?;
        let ids = if let Ok(text) = prompt.extract::<String>() {
            let (o, t) = (opts.clone(), text);
            self.with(py, move |e| e.prepare(&t, &o))?
        } else {
            let ids = prompt.extract::<Vec<u32>>().map_err(|_| {
                PyValueError::new_err("prompt must be a str or a list of token ids")
            })?;
            self.with(py, |e| e.check_prompt_ids(&ids))?;
            ids
        };
        let (tx, rx) = mpsc::channel::<Msg>();
        let stop = Arc::new(AtomicBool::new(false));
        let (inner, stop2) = (self.inner.clone(), stop.clone());
        std::thread::spawn(move || {
            // A panic unwinds through the lock (poisoning it) and is caught here, so the reader
            // gets an error rather than a silently ended stream.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let Ok(mut engine) = inner.lock() else {
                    return Err(Error::Unsupported(
                        "the engine failed during an earlier call".into(),
                    ));
                };
                let mut send = |piece: &str| -> bool {
                    !stop2.load(Ordering::Relaxed) && tx.send(Msg::Piece(piece.to_string())).is_ok()
                };
                engine.generate_ids(ids, &opts, &mut send)
            })); // the engine is unlocked before the reader learns the generation is done
            let _ = tx.send(match result {
                Ok(Ok(s)) => Msg::Done(vec![
                    ("prompt_tokens", s.prompt_tokens as f64),
                    ("generated_tokens", s.generated_tokens as f64),
                    ("prefill_secs", s.prefill_secs),
                    ("decode_secs", s.decode_secs),
                ]),
                Ok(Err(e)) => Msg::Failed(e),
                Err(panic) => Msg::Panicked(panic_message(&*panic)),
            });
        });
        Ok(PyGeneration {
            rx: Mutex::new(Some(rx)),
            stop,
            stats: Mutex::new(None),
        })
    }
}

/// A thread count from any Python int: one outside 1..=max (negative or beyond 64 bits included)
/// gets the engine's own message.
fn thread_count(t: &Bound<'_, PyAny>) -> PyResult<usize> {
    if !t.is_instance_of::<PyInt>() || t.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "threads must be an int or None, not {}",
            t.get_type().name()?
        )));
    }
    match t.extract::<usize>() {
        Ok(n) => nano_infer::check_threads(n).map(|()| n),
        Err(_) => Err(nano_infer::threads_error(t.str()?)),
    }
    .map_err(to_py_err)
}

/// Bytes are neither text nor token ids: they would otherwise be read as a list of small ints.
fn refuse_bytes(value: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    if value.is_instance_of::<PyBytes>() || value.is_instance_of::<PyByteArray>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a str or a list of token ids, not {}; decode bytes to str first",
            value.get_type().name()?
        )));
    }
    Ok(())
}

/// The sampling-option check every Nano engine makes ([`SamplerOptions::validate`]), for the
/// PyTorch engine (`nano.sampling`): raises ValueError with the native engine's message.
#[pyfunction]
fn check_sampling_options(
    temperature: f32,
    top_k: i64,
    top_p: f32,
    repetition_penalty: f32,
) -> PyResult<()> {
    let opts = SamplerOptions {
        temperature,
        top_k: SamplerOptions::top_k_from(top_k).map_err(to_py_err)?,
        top_p,
        repetition_penalty,
    };
    opts.validate().map_err(to_py_err)
}

enum Msg {
    Piece(String),
    Done(Vec<(&'static str, f64)>),
    Failed(Error),
    Panicked(String),
}

/// Iterator of generated text pieces; dropping it (or `close()`) stops the generation.
#[pyclass(name = "Generation", module = "nano._native", frozen)]
struct PyGeneration {
    rx: Mutex<Option<mpsc::Receiver<Msg>>>,
    stop: Arc<AtomicBool>,
    stats: Mutex<Option<Vec<(&'static str, f64)>>>,
}

#[pymethods]
impl PyGeneration {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let poisoned = || PyRuntimeError::new_err("generation state poisoned");
        // take the receiver out so no lock is held while waiting without the GIL
        let Some(rx) = self.rx.lock().map_err(|_| poisoned())?.take() else {
            return Ok(None);
        };
        let (rx, msg) = py.detach(move || {
            let msg = rx.recv();
            (rx, msg)
        });
        match msg {
            Ok(Msg::Piece(p)) => {
                *self.rx.lock().map_err(|_| poisoned())? = Some(rx);
                Ok(Some(p))
            }
            Ok(Msg::Done(stats)) => {
                *self.stats.lock().map_err(|_| poisoned())? = Some(stats);
                Ok(None)
            }
            Ok(Msg::Failed(e)) => Err(to_py_err(e)),
            Ok(Msg::Panicked(why)) => Err(internal_error(&why)),
            Err(_) => Err(PyRuntimeError::new_err(
                "the generation thread ended unexpectedly",
            )),
        }
    }

    /// Stops the generation early (the worker stops after its current token).
    fn close(&self) -> PyResult<()> {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut g) = self.rx.lock() {
            *g = None; // dropping the receiver also unblocks a worker waiting to send
        }
        Ok(())
    }

    /// Statistics once the iterator is exhausted: prompt_tokens, generated_tokens, prefill_secs, decode_secs.
    #[getter]
    fn stats(&self) -> PyResult<Option<HashMap<&'static str, f64>>> {
        let g = self
            .stats
            .lock()
            .map_err(|_| PyRuntimeError::new_err("poisoned"))?;
        Ok(g.as_ref().map(|v| v.iter().copied().collect()))
    }
}

impl Drop for PyGeneration {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The first `n` outputs of the sampler's SplitMix64 seeded with `seed`: the reference other copies
/// (`nano.sampling.SplitMix64`) are tested against.
#[pyfunction]
fn splitmix64(seed: u64, n: usize) -> Vec<u64> {
    let mut rng = nano_infer::sampler::SplitMix64::new(seed);
    (0..n).map(|_| rng.next_u64()).collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(splitmix64, m)?)?;
    m.add_function(wrap_pyfunction!(write_model, m)?)?;
    m.add_function(wrap_pyfunction!(write_lora, m)?)?;
    m.add_function(wrap_pyfunction!(read_model, m)?)?;
    m.add_function(wrap_pyfunction!(read_lora, m)?)?;
    m.add_function(wrap_pyfunction!(check_sampling_options, m)?)?;
    m.add_class::<PyEngine>()?;
    m.add_class::<PyGeneration>()?;
    m.add("INFER_VERSION", nano_infer::VERSION)?;
    m.add("MODEL_CONFIG_FIELDS", ModelConfig::field_names())?;
    m.add(
        "MODEL_CONFIG_TRAINING_ONLY",
        format::TRAINING_ONLY_FIELDS.to_vec(),
    )?;
    m.add_function(wrap_pyfunction!(write_hf_model, m)?)?;
    m.add_function(wrap_pyfunction!(convert_gguf, m)?)?;
    m.add("MODEL_CONFIG_FILE_ONLY", format::FILE_ONLY_FIELDS.to_vec())?;
    Ok(())
}
