//! Model-file formats: Nano's own format (`v2026`, memory-mappable, checksummed), the original
//! 2024.10 layout (`legacy`, read for published files and written with `--legacy` for old engines),
//! and llama.cpp's GGUF (`gguf`, `gguf_model`: read and converted to Nano's format at load).
//! See docs/format.md for the byte layout. Readers validate everything and never panic on bad bytes.

mod bytes;
mod finite;
pub mod gguf;
pub mod gguf_model;
mod gguf_quants;
pub mod legacy;
pub mod v2026;

use serde::{Deserialize, Serialize};

use crate::error::{format_err, Error, Result};
use crate::kernels::QK;

pub use bytes::{as_slice_of, Pod};

/// The two magic words shared by all Nano model files ("S4DB" "MLRU" as little-endian bytes).
pub const MAGIC: [u32; 2] = [0x4244_3453, 0x5552_4C4D];
/// Model-type word: a base model or a LoRA plug-in.
pub const KIND_BASE: i32 = 0;
pub const KIND_LORA: i32 = 10;

/// Upper bounds that keep a hostile header from requesting absurd allocations.
pub(crate) const MAX_DIM: usize = 1 << 20;
pub(crate) const MAX_LAYERS: usize = 1024;

/// Architecture of a base model: the fields of `nano.model.ModelConfig` less
/// [`TRAINING_ONLY_FIELDS`], plus [`FILE_ONLY_FIELDS`] (a test in tests/test_format.py compares the
/// two field sets through `nano._native`). A key that is not a field is refused, not ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub block_size: usize,
    pub vocab_size: usize,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub n_hidden: usize,
    pub norm_eps: f32,
    pub rope_theta: f32,
    pub use_rope: bool,
    pub is_causal: bool,
    /// The output head is the token embedding (no separate `output.weight`).
    #[serde(default = "yes")]
    pub tied_head: bool,
    /// The q, k and v projections add a bias (Qwen2): 1-D tensors `layers.{i}.attention.w{q,k,v}.bias`.
    /// Only in 2026.2 files; absent means false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub qkv_bias: bool,
    /// Llama 3 RoPE frequency scaling; absent means plain RoPE. Only in 2026.2 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
}

fn yes() -> bool {
    true
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Llama 3's RoPE frequency scaling (HF `rope_scaling` with `rope_type: "llama3"`): frequencies
/// whose wavelength exceeds `original_max_position_embeddings / low_freq_factor` are divided by
/// `factor`, those below `original_max_position_embeddings / high_freq_factor` kept, and the ones
/// between blended linearly in `original_max_position_embeddings / wavelength`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

impl RopeScaling {
    fn validate(&self) -> Result<()> {
        let ok = |v: f32| v.is_finite() && v > 0.0;
        if !(ok(self.factor)
            && ok(self.low_freq_factor)
            && ok(self.high_freq_factor)
            && self.high_freq_factor > self.low_freq_factor
            && self.original_max_position_embeddings > 0)
        {
            return format_err(format!(
                "config rope_scaling {self:?} is invalid (factors must be positive and \
                 high_freq_factor > low_freq_factor)"
            ));
        }
        Ok(())
    }

    /// The scaled inverse frequency of one RoPE pair whose plain inverse frequency is `inv_freq`.
    pub fn scale(&self, inv_freq: f64) -> f64 {
        let old = self.original_max_position_embeddings as f64;
        let (low, high) = (self.low_freq_factor as f64, self.high_freq_factor as f64);
        let factor = self.factor as f64;
        let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
        if wavelen < old / high {
            inv_freq
        } else if wavelen > old / low {
            inv_freq / factor
        } else {
            let smooth = (old / wavelen - low) / (high - low);
            (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
        }
    }
}

/// Fields of `nano.model.ModelConfig` that only training uses; model files do not store them.
pub const TRAINING_ONLY_FIELDS: [&str; 2] = ["dropout", "bias"];
/// Fields of [`ModelConfig`] that `nano.model.ModelConfig` lacks (PyTorch models always tie the
/// head; 2024.10 files may not).
pub const FILE_ONLY_FIELDS: [&str; 1] = ["tied_head"];

impl ModelConfig {
    /// The names of the fields, sorted (taken from the serialized struct, so the list cannot drift
    /// from it).
    pub fn field_names() -> Vec<String> {
        let example = ModelConfig {
            block_size: 1,
            vocab_size: 1,
            n_layer: 1,
            n_embd: 2,
            n_head: 1,
            n_kv_head: 1,
            n_hidden: 1,
            norm_eps: 1e-5,
            rope_theta: 1e4,
            use_rope: true,
            is_causal: true,
            tied_head: true,
            qkv_bias: true,
            rope_scaling: Some(RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
        };
        match serde_json::to_value(example) {
            Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
            _ => unreachable!("a struct serializes to a JSON object"),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim()
    }

    /// Checks that the numbers describe a buildable model.
    pub fn validate(&self) -> Result<()> {
        let dims = [
            ("block_size", self.block_size),
            ("vocab_size", self.vocab_size),
            ("n_layer", self.n_layer),
            ("n_embd", self.n_embd),
            ("n_head", self.n_head),
            ("n_kv_head", self.n_kv_head),
            ("n_hidden", self.n_hidden),
        ];
        for (name, v) in dims {
            if v == 0 || v > MAX_DIM {
                return format_err(format!(
                    "config {name} = {v} is out of range (1..={MAX_DIM})"
                ));
            }
        }
        if self.n_layer > MAX_LAYERS {
            return format_err(format!(
                "config n_layer = {} exceeds {MAX_LAYERS}",
                self.n_layer
            ));
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return format_err(format!(
                "config n_embd {} is not a multiple of n_head {}",
                self.n_embd, self.n_head
            ));
        }
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return format_err(format!(
                "config n_head {} is not a multiple of n_kv_head {}",
                self.n_head, self.n_kv_head
            ));
        }
        if self.use_rope && !self.head_dim().is_multiple_of(2) {
            return format_err(format!(
                "RoPE needs an even head_dim, got {}",
                self.head_dim()
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return format_err(format!(
                "config norm_eps {} must be positive",
                self.norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return format_err(format!(
                "config rope_theta {} must be positive",
                self.rope_theta
            ));
        }
        if let Some(s) = &self.rope_scaling {
            if !self.use_rope {
                return format_err("config rope_scaling needs use_rope");
            }
            s.validate()?;
        }
        Ok(())
    }

    /// Whether the file needs format 2026.2 (fields that 2026.1 readers do not know).
    pub fn needs_minor_2(&self) -> bool {
        self.qkv_bias || self.rope_scaling.is_some()
    }

    /// The tensors a base model of this shape consists of, with their shapes (PyTorch state_dict names).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (d, hd, kv, h) = (self.n_embd, self.head_dim(), self.kv_dim(), self.n_hidden);
        let q = self.n_head * hd;
        let mut t = vec![(
            "tok_embeddings.weight".to_string(),
            vec![self.vocab_size, d],
        )];
        if !self.use_rope {
            t.push(("pos_embeddings.weight".into(), vec![self.block_size, d]));
        }
        for i in 0..self.n_layer {
            let p = format!("layers.{i}.");
            t.push((format!("{p}attention_norm.weight"), vec![d]));
            t.push((format!("{p}attention.wq.weight"), vec![q, d]));
            t.push((format!("{p}attention.wk.weight"), vec![kv, d]));
            t.push((format!("{p}attention.wv.weight"), vec![kv, d]));
            if self.qkv_bias {
                t.push((format!("{p}attention.wq.bias"), vec![q]));
                t.push((format!("{p}attention.wk.bias"), vec![kv]));
                t.push((format!("{p}attention.wv.bias"), vec![kv]));
            }
            t.push((format!("{p}attention.wo.weight"), vec![d, q]));
            t.push((format!("{p}ffn_norm.weight"), vec![d]));
            t.push((format!("{p}feed_forward.w1.weight"), vec![h, d]));
            t.push((format!("{p}feed_forward.w2.weight"), vec![d, h]));
            t.push((format!("{p}feed_forward.w3.weight"), vec![h, d]));
        }
        t.push(("norm.weight".into(), vec![d]));
        if !self.tied_head {
            t.push(("output.weight".into(), vec![self.vocab_size, d]));
        }
        t
    }
}

/// The vocabulary as stored in a model file: token strings by id, and which ids are special.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<String>,
    pub special: Vec<bool>,
}

/// A Hugging Face tokenizer carried inside a model file (format 2026.2): the `tokenizer.json` text
/// and what `tokenizer_config.json` / `generation_config.json` add to it. The engine builds a
/// [`nano_tokenizer::BpeTokenizer`] from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfTokenizer {
    /// The text of `tokenizer.json`.
    pub json: String,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
    /// Prompts start with `bos_token` (resolved at import from `tokenizer_config.json` or the
    /// post-processor of `tokenizer.json`).
    pub add_bos_token: bool,
    /// The Jinja chat template, when the model has one.
    pub chat_template: Option<String>,
    /// Ids that end a generation (the model's `eos_token_id`s and the eos token's id).
    pub stop_ids: Vec<u32>,
}

/// The tokenizer a model file carries.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenizerData {
    /// Nano's maximum-forward-match vocabulary (every Nano-trained model, and 2024.10 files).
    Vocab(TokenList),
    /// A Hugging Face BPE tokenizer (imported models).
    Hf(HfTokenizer),
}

/// Element type of a stored tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

impl DType {
    pub fn parse(s: &str) -> Result<DType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(DType::F32),
            "f16" | "fp16" | "float16" => Ok(DType::F16),
            "q8_0" | "q8" | "int8" => Ok(DType::Q8_0),
            "q4_0" | "q4" => Ok(DType::Q4_0),
            _ => Err(Error::InvalidInput(format!(
                "unknown dtype {s:?} (expected f32, f16, q8_0 or q4_0)"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
        }
    }
    /// Bytes a tensor of `numel` elements takes: quantized types store the codes of the whole tensor,
    /// then one f32 scale per group of 32 (groups lie within rows).
    pub fn nbytes(self, numel: usize) -> usize {
        match self {
            DType::F32 => numel * 4,
            DType::F16 => numel * 2,
            DType::Q8_0 => numel + numel / QK * 4,
            DType::Q4_0 => numel / 2 + numel / QK * 4,
        }
    }
}

/// Where a tensor's elements are: in the file bytes (used in place) or converted into owned memory.
#[derive(Clone, Debug)]
pub enum Store {
    /// Byte range within the loaded file (memory map or byte buffer).
    File {
        offset: usize,
        nbytes: usize,
    },
    F32(Vec<f32>),
    F16(Vec<u16>),
    Q8_0 {
        qs: Vec<i8>,
        scales: Vec<f32>,
    },
    Q4_0 {
        packed: Vec<u8>,
        scales: Vec<f32>,
    },
}

#[derive(Clone, Debug)]
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub store: Store,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Which layout a file was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileVersion {
    Legacy2024,
    Nano2026,
    /// A llama.cpp GGUF file, converted at load (see `gguf_model`).
    Gguf,
}

/// A parsed and validated base-model file (tensor data still referenced by offset where possible).
#[derive(Clone, Debug)]
pub struct ParsedModel {
    pub version: FileVersion,
    pub config: ModelConfig,
    pub tokenizer: TokenizerData,
    /// `nano.model.base_hash` of the weights, when the exporter recorded it (not in legacy files).
    pub base_hash: Option<String>,
    pub tensors: Vec<Tensor>,
}

/// Hyper-parameters of a LoRA plug-in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f32,
    /// Projection names the adapter touches: any of wq, wk, wv, wo, w1, w2, w3.
    pub targets: Vec<String>,
}

/// The base model a LoRA plug-in was trained on: its shape, and its hash when known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraBase {
    pub hash: Option<String>,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub n_hidden: usize,
}

impl LoraBase {
    pub fn of(config: &ModelConfig, hash: Option<String>) -> Self {
        LoraBase {
            hash,
            n_layer: config.n_layer,
            n_embd: config.n_embd,
            n_head: config.n_head,
            n_kv_head: config.n_kv_head,
            n_hidden: config.n_hidden,
        }
    }
    pub fn same_shape(&self, other: &LoraBase) -> bool {
        (
            self.n_layer,
            self.n_embd,
            self.n_head,
            self.n_kv_head,
            self.n_hidden,
        ) == (
            other.n_layer,
            other.n_embd,
            other.n_head,
            other.n_kv_head,
            other.n_hidden,
        )
    }
}

/// A parsed LoRA plug-in; tensors are f32 and owned (they are small).
#[derive(Clone, Debug)]
pub struct ParsedLora {
    pub version: FileVersion,
    pub config: LoraConfig,
    pub base: LoraBase,
    /// (name, shape, values), names like `layers.0.attention.wq.lora_A`.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// Full module path of a LoRA target inside a layer (`wq` -> `attention.wq`).
pub fn lora_module(target: &str) -> Option<&'static str> {
    Some(match target {
        "wq" => "attention.wq",
        "wk" => "attention.wk",
        "wv" => "attention.wv",
        "wo" => "attention.wo",
        "w1" => "feed_forward.w1",
        "w2" => "feed_forward.w2",
        "w3" => "feed_forward.w3",
        _ => return None,
    })
}

/// [out, in] of a target projection for a base of this shape.
pub fn projection_shape(base: &LoraBase, target: &str) -> Option<(usize, usize)> {
    let hd = base.n_embd / base.n_head.max(1);
    let (d, q, kv, h) = (
        base.n_embd,
        base.n_head * hd,
        base.n_kv_head * hd,
        base.n_hidden,
    );
    Some(match target {
        "wq" => (q, d),
        "wk" | "wv" => (kv, d),
        "wo" => (d, q),
        "w1" | "w3" => (h, d),
        "w2" => (d, h),
        _ => return None,
    })
}

/// The tensors a LoRA plug-in of this config must contain, with shapes: A [rank, in], B [out, rank].
pub fn expected_lora_tensors(
    cfg: &LoraConfig,
    base: &LoraBase,
) -> Result<Vec<(String, Vec<usize>)>> {
    if cfg.rank == 0 || cfg.rank > MAX_DIM {
        return format_err(format!("LoRA rank {} is out of range", cfg.rank));
    }
    if !cfg.alpha.is_finite() {
        return format_err("LoRA alpha is not finite");
    }
    if base.n_layer == 0
        || base.n_layer > MAX_LAYERS
        || base.n_head == 0
        || !base.n_embd.is_multiple_of(base.n_head)
    {
        return format_err("LoRA base shape is inconsistent");
    }
    let mut out = Vec::new();
    for i in 0..base.n_layer {
        for t in &cfg.targets {
            let (Some(module), Some((o, inp))) = (lora_module(t), projection_shape(base, t)) else {
                return format_err(format!("unknown LoRA target {t:?}"));
            };
            out.push((format!("layers.{i}.{module}.lora_A"), vec![cfg.rank, inp]));
            out.push((format!("layers.{i}.{module}.lora_B"), vec![o, cfg.rank]));
        }
    }
    Ok(out)
}

/// Reads either format from the whole file's bytes (dispatching on the version word). Weights that
/// are not finite (NaN, infinity) are refused, naming the tensor.
pub fn parse_model(bytes: &[u8]) -> Result<ParsedModel> {
    let parsed = match peek_version(bytes)? {
        (2024, _) => legacy::parse_model(bytes),
        (v2026::MAJOR, _) => v2026::parse_model(bytes),
        (major, minor) => format_err(format!(
            "unsupported version {major}.{minor} (this build reads 2024.10 and {}.x)",
            v2026::MAJOR
        )),
    }?;
    for t in &parsed.tensors {
        finite::check_tensor(t, bytes)?;
    }
    Ok(parsed)
}

/// Reads a LoRA plug-in in either format (non-finite values refused, as in [`parse_model`]).
pub fn parse_lora(bytes: &[u8]) -> Result<ParsedLora> {
    let parsed = match peek_version(bytes)? {
        (2024, _) => legacy::parse_lora(bytes),
        (v2026::MAJOR, _) => v2026::parse_lora(bytes),
        (major, minor) => format_err(format!(
            "unsupported version {major}.{minor} (this build reads 2024.10 and {}.x)",
            v2026::MAJOR
        )),
    }?;
    for (name, _, values) in &parsed.tensors {
        if let Some(i) = finite::first_bad_f32(values) {
            return format_err(format!(
                "LoRA tensor {name:?} holds a non-finite value (NaN or infinity) at element {i}"
            ));
        }
    }
    Ok(parsed)
}

/// Checks the magic words and returns (major, minor).
fn peek_version(bytes: &[u8]) -> Result<(i32, i32)> {
    if bytes.len() < 16 {
        return format_err(format!(
            "file is too short ({} bytes) to hold a header",
            bytes.len()
        ));
    }
    let mut r = bytes::Reader::new(bytes);
    let m0 = r.u32()?;
    let m1 = r.u32()?;
    if [m0, m1] != MAGIC {
        return format_err(format!(
            "wrong magic {m0:#010x} {m1:#010x}: not a Nano model file"
        ));
    }
    Ok((r.i32()?, r.i32()?))
}

/// Checks that a list of tensors matches the expected names and shapes exactly (any order).
pub(crate) fn check_tensor_set<'a>(
    expected: &[(String, Vec<usize>)],
    actual: impl Iterator<Item = (&'a str, &'a [usize])>,
) -> Result<()> {
    let mut want: std::collections::HashMap<&str, &[usize]> = expected
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    for (name, shape) in actual {
        match want.remove(name) {
            None => return format_err(format!("unexpected or duplicate tensor {name:?}")),
            Some(s) if s != shape => {
                return format_err(format!(
                    "tensor {name:?} has shape {shape:?}, expected {s:?}"
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(missing) = expected.iter().find(|(n, _)| want.contains_key(n.as_str())) {
        return format_err(format!("tensor {:?} is missing", missing.0));
    }
    Ok(())
}

/// Writes `bytes` to `path` without ever leaving a half-written file there: a temporary file in the
/// same directory (`.NAME.tmp-PID-...`) is written, flushed, then renamed over `path`. Temporaries
/// of earlier writers of `path` that were killed before renaming are removed first (see
/// `nano_tmpfiles`).
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = nano_tmpfiles::temp_path(path)
        .ok_or_else(|| Error::InvalidInput(format!("{} is not a file path", path.display())))?;
    nano_tmpfiles::clean_stale_temps(path);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}
