//! GGUF models (llama.cpp's `llama` and `qwen2` architectures) as Nano models: the hyper-parameters
//! from `<arch>.*` metadata, the tensors renamed and re-laid, the tokenizer from `tokenizer.ggml.*`.
//! The result is a Nano 2026 file in memory, which the ordinary loader then reads, so a GGUF model
//! runs through exactly the checks and kernels a Nano file does. The mapping is in docs/interop.md.
//!
//! - **Tensor types** F32, F16, BF16, Q8_0 and Q4_0 convert without loss: ggml's Q8_0 / Q4_0 blocks
//!   (an f16 scale, then 32 codes; Q4_0 with value `j` in the low nibble of byte `j` and `j + 16`
//!   in its high nibble, offset by 8) hold exactly Nano's codes, and each f16 scale widens to Nano's
//!   f32 scale exactly. BF16 widens to F32 exactly (Nano has no BF16). Norms and biases become F32.
//!   Q5_0 and the K-quants Q4_K, Q5_K, Q6_K (what Q4_K_M files hold) are dequantized as ggml does and
//!   requantized to q8_0 (see `gguf_quants`); other types are refused naming the type.
//! - **RoPE layout**: llama.cpp rotates adjacent pairs for `llama` (its converter permutes HF's q/k
//!   rows into that order, which is Nano's) and the two halves of each head for `qwen2` (rows
//!   unpermuted, as in HF). So `qwen2` q/k rows (and biases) are reordered as `nano.import_hf` does;
//!   an exact permutation of whole rows, lossless for block types too (blocks lie within rows).
//! - **Tokenizer**: `gpt2` (byte-level BPE) and `llama` (SentencePiece BPE) vocabularies become a
//!   Hugging Face `tokenizer.json` (see `nano_tokenizer::bpe::BpeSpec::to_hf_json`) with the
//!   special tokens and chat template beside it; `rwkv`, the greedy longest-match vocabulary Nano's
//!   own GGUF export writes, becomes Nano's vocabulary again.
use nano_tokenizer::bpe::BpeSpec;

use super::gguf::{self, GgufFile, TensorInfo, Value};
use super::gguf_quants;
use super::v2026::{self, EncodedTensor};
use super::{
    DType, HfTokenizer, ModelConfig, RopeScaling, TokenList, TokenizerData, MAX_DIM, MAX_LAYERS,
};
use crate::error::{format_err, Error, Result};
use crate::kernels::{f16_to_f32, quantize_q8_0, QK};

/// The architectures this reader maps (`general.architecture`).
pub const ARCHITECTURES: [&str; 2] = ["llama", "qwen2"];

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_UNKNOWN: u64 = 2;
const TOKEN_CONTROL: u64 = 3;
const TOKEN_BYTE: u64 = 6;

/// Metadata lookups that name the key in their errors.
struct Meta<'a> {
    f: &'a GgufFile,
    arch: &'a str,
}

impl Meta<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    fn bad<T>(&self, key: &str, msg: impl std::fmt::Display) -> Result<T> {
        format_err(format!("GGUF key {key:?}: {msg}"))
    }
    /// `<arch>.k` as a size in 1..=max.
    fn size(&self, k: &str, default: Option<usize>, max: usize) -> Result<usize> {
        let key = self.key(k);
        let v = match self.f.get(&key) {
            None => match default {
                Some(d) => return Ok(d),
                None => return self.bad(&key, "is missing"),
            },
            Some(v) => v,
        };
        match v.as_u64() {
            Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
            _ => self.bad(&key, format!("{v:?} is not an integer in 1..={max}")),
        }
    }
    /// `<arch>.k` as a positive finite number.
    fn positive(&self, k: &str, default: Option<f64>) -> Result<f32> {
        let key = self.key(k);
        let v = match (self.f.get(&key), default) {
            (None, Some(d)) => return Ok(d as f32),
            (None, None) => return self.bad(&key, "is missing"),
            (Some(v), _) => v,
        };
        match v.as_f64().map(|x| x as f32) {
            Some(x) if x.is_finite() && x > 0.0 => Ok(x),
            _ => self.bad(&key, format!("{v:?} is not a positive number")),
        }
    }
}

fn architecture(f: &GgufFile) -> Result<&str> {
    match f.get("general.architecture") {
        Some(Value::Str(a)) if ARCHITECTURES.contains(&a.as_str()) => Ok(a),
        Some(Value::Str(a)) => format_err(format!(
            "GGUF key \"general.architecture\": architecture {a:?} is not supported (Nano runs {})",
            ARCHITECTURES.join(", ")
        )),
        Some(v) => format_err(format!(
            "GGUF key \"general.architecture\": {v:?} is not a string"
        )),
        None => format_err("GGUF key \"general.architecture\" is missing"),
    }
}

fn find<'a>(f: &'a GgufFile, name: &str) -> Option<&'a TensorInfo> {
    f.tensors.iter().find(|t| t.name == name)
}

/// The model config the metadata and the tensors describe.
fn config(f: &GgufFile, arch: &str) -> Result<ModelConfig> {
    let m = Meta { f, arch };
    let n_embd = m.size("embedding_length", None, MAX_DIM)?;
    let n_head = m.size("attention.head_count", None, MAX_DIM)?;
    let n_kv_head = m.size("attention.head_count_kv", Some(n_head), MAX_DIM)?;
    if !n_embd.is_multiple_of(n_head) {
        return m.bad(
            &m.key("attention.head_count"),
            format!("{n_head} heads do not divide embedding_length {n_embd}"),
        );
    }
    let head_dim = n_embd / n_head;
    for k in [
        "rope.dimension_count",
        "attention.key_length",
        "attention.value_length",
    ] {
        let v = m.size(k, Some(head_dim), MAX_DIM)?;
        if v != head_dim {
            return m.bad(
                &m.key(k),
                format!("{v} differs from the head size {head_dim} (partial RoPE and other head sizes are not supported)"),
            );
        }
    }
    if let Some(v) = f.get(&m.key("rope.scaling.type")) {
        if v.as_str() != Some("none") {
            return m.bad(
                &m.key("rope.scaling.type"),
                format!(
                    "RoPE scaling {v:?} is not supported (Llama 3 scaling comes as rope_freqs)"
                ),
            );
        }
    }
    let embd = find(f, "token_embd.weight")
        .ok_or_else(|| Error::Format("GGUF tensor \"token_embd.weight\" is missing".into()))?;
    let rows = embd.dims.get(1).copied().unwrap_or(1) as usize;
    let vocab_size = m.size("vocab_size", Some(rows), MAX_DIM)?;
    let n_layer = m.size("block_count", None, MAX_LAYERS)?;
    Ok(ModelConfig {
        block_size: m.size("context_length", None, MAX_DIM)?,
        vocab_size,
        n_layer,
        n_embd,
        n_head,
        n_kv_head,
        n_hidden: m.size("feed_forward_length", None, MAX_DIM)?,
        norm_eps: m.positive("attention.layer_norm_rms_epsilon", None)?,
        rope_theta: m.positive("rope.freq_base", Some(10000.0))?,
        use_rope: true,
        is_causal: true,
        tied_head: find(f, "output.weight").is_none(),
        qkv_bias: find(f, "blk.0.attn_q.bias").is_some(),
        rope_scaling: None,
    })
}

/// Llama 3's RoPE scaling recovered from the `rope_freqs` tensor llama.cpp's converter writes in its
/// place (per pair, the divisor of its frequency). The factors depend on `factor`, `low_freq_factor`,
/// `high_freq_factor` and the original context together, so they are matched against the parameters
/// every Llama 3.x release uses (low 1, high 4, original context from
/// `<arch>.rope.scaling.original_context_length` or 8192, `factor` the last pair's divisor); a vector
/// they do not reproduce is refused rather than approximated.
fn rope_scaling(
    f: &GgufFile,
    bytes: &[u8],
    arch: &str,
    config: &ModelConfig,
) -> Result<Option<RopeScaling>> {
    let Some(info) = find(f, "rope_freqs.weight") else {
        return Ok(None);
    };
    let half = config.head_dim() / 2;
    if info.ggml_type != gguf::F32 || info.dims != [half as u64] {
        return format_err(format!(
            "GGUF tensor \"rope_freqs.weight\" must be F32 of {half} values (one per RoPE pair), got {} {:?}",
            gguf::type_name(info.ggml_type),
            info.dims
        ));
    }
    let factors: Vec<f64> = f
        .data(bytes, info)?
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let orig =
        Meta { f, arch }.size("rope.scaling.original_context_length", Some(8192), MAX_DIM)?;
    let s = RopeScaling {
        factor: factors[half - 1] as f32,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: orig,
    };
    let theta = f64::from(config.rope_theta);
    let hd = (2 * half) as f64;
    let matches = s.factor.is_finite()
        && s.factor >= 1.0
        && factors.iter().enumerate().all(|(i, &got)| {
            let inv = 1.0 / theta.powf((2 * i) as f64 / hd);
            let want = inv / s.scale(inv);
            (got - want).abs() <= 1e-4 * want
        });
    if !matches {
        return format_err(
            "GGUF tensor \"rope_freqs.weight\": these RoPE frequency factors are not Llama 3 scaling \
             (low_freq_factor 1, high_freq_factor 4); other scalings are not supported",
        );
    }
    Ok(Some(s))
}

/// The GGUF name of a Nano tensor.
fn gguf_name(nano: &str) -> String {
    let simple = [
        ("tok_embeddings.weight", "token_embd.weight"),
        ("norm.weight", "output_norm.weight"),
        ("output.weight", "output.weight"),
    ];
    if let Some((_, g)) = simple.iter().find(|(n, _)| *n == nano) {
        return g.to_string();
    }
    let layer = [
        ("attention_norm.weight", "attn_norm.weight"),
        ("attention.wq.weight", "attn_q.weight"),
        ("attention.wk.weight", "attn_k.weight"),
        ("attention.wv.weight", "attn_v.weight"),
        ("attention.wq.bias", "attn_q.bias"),
        ("attention.wk.bias", "attn_k.bias"),
        ("attention.wv.bias", "attn_v.bias"),
        ("attention.wo.weight", "attn_output.weight"),
        ("ffn_norm.weight", "ffn_norm.weight"),
        ("feed_forward.w1.weight", "ffn_gate.weight"),
        ("feed_forward.w2.weight", "ffn_down.weight"),
        ("feed_forward.w3.weight", "ffn_up.weight"),
    ];
    if let Some(rest) = nano.strip_prefix("layers.") {
        if let Some((i, part)) = rest.split_once('.') {
            if let Some((_, g)) = layer.iter().find(|(n, _)| *n == part) {
                return format!("blk.{i}.{g}");
            }
        }
    }
    unreachable!("every Nano base tensor has a GGUF name: {nano}")
}

/// Which source row each row of a q/k projection of `heads` heads takes to turn the halves layout
/// into adjacent pairs: row `2j + s` of a head is its row `s * hd/2 + j`.
fn halves_to_pairs(rows: usize, heads: usize) -> Vec<usize> {
    let hd = rows / heads;
    (0..rows)
        .map(|r| {
            let (h, i) = (r / hd, r % hd);
            h * hd + (i % 2) * (hd / 2) + i / 2
        })
        .collect()
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[2 * i], b[2 * i + 1]]))
}

/// One tensor in Nano's layout: rows taken in the order of `order` (identity when `None`).
fn convert_tensor(
    name: &str,
    info: &TensorInfo,
    data: &[u8],
    shape: &[usize],
    order: Option<&[usize]>,
) -> Result<EncodedTensor> {
    // a vector is permuted element by element: rows of one value
    let (rows, cols) = match *shape {
        [r, c] => (r, c),
        _ => (shape[0], 1),
    };
    let src = |r: usize| order.map_or(r, |o| o[r]);
    let (dtype, bytes) = match info.ggml_type {
        gguf::F32 | gguf::F16 | gguf::BF16 if shape.len() == 1 || info.ggml_type != gguf::F16 => {
            // to f32: exact for all three (f16 and bf16 widen)
            let width = if info.ggml_type == gguf::F32 { 4 } else { 2 };
            let mut out = Vec::with_capacity(rows * cols * 4);
            for r in 0..rows {
                let row = &data[src(r) * cols * width..(src(r) + 1) * cols * width];
                match info.ggml_type {
                    gguf::F32 => out.extend_from_slice(row),
                    gguf::F16 => {
                        for i in 0..cols {
                            out.extend(f16_at(row, i).to_le_bytes());
                        }
                    }
                    _ => {
                        for c in row.chunks_exact(2) {
                            out.extend([0, 0, c[0], c[1]]);
                        }
                    }
                }
            }
            (DType::F32, out)
        }
        gguf::F16 => {
            let mut out = Vec::with_capacity(rows * cols * 2);
            for r in 0..rows {
                out.extend_from_slice(&data[src(r) * cols * 2..(src(r) + 1) * cols * 2]);
            }
            (DType::F16, out)
        }
        gguf::Q8_0 | gguf::Q4_0 if shape.len() == 2 => {
            let q4 = info.ggml_type == gguf::Q4_0;
            let code_bytes = if q4 { QK / 2 } else { QK };
            let block = 2 + code_bytes;
            let groups = cols / QK;
            let mut codes = Vec::with_capacity(rows * groups * code_bytes);
            let mut scales = Vec::with_capacity(rows * groups * 4);
            for r in 0..rows {
                let row = &data[src(r) * groups * block..(src(r) + 1) * groups * block];
                for b in row.chunks_exact(block) {
                    scales.extend(f16_at(b, 0).to_le_bytes());
                    codes.extend_from_slice(&b[2..]);
                }
            }
            codes.extend(scales);
            (if q4 { DType::Q4_0 } else { DType::Q8_0 }, codes)
        }
        t if shape.len() == 2 && gguf_quants::layout(t).is_some() => {
            // no Nano kernel for these blocks: dequantized row by row, requantized to q8_0
            let (size, per_block) = gguf_quants::layout(t).unwrap_or((1, 1));
            let row_bytes = cols / per_block * size;
            let mut codes = Vec::with_capacity(rows * cols);
            let mut scales = Vec::with_capacity(rows * cols / QK * 4);
            let mut values = Vec::with_capacity(cols);
            for r in 0..rows {
                values.clear();
                gguf_quants::dequantize(
                    t,
                    &data[src(r) * row_bytes..(src(r) + 1) * row_bytes],
                    &mut values,
                );
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return format_err(format!(
                        "GGUF tensor {:?}: row {r} holds a non-finite value at column {i}",
                        info.name
                    ));
                }
                let (q, sc) = quantize_q8_0(&values, cols);
                codes.extend(q.iter().map(|&c| c as u8));
                scales.extend(sc.iter().flat_map(|v| v.to_le_bytes()));
            }
            codes.extend(scales);
            (DType::Q8_0, codes)
        }
        t => {
            let what = if shape.len() == 1 {
                "a norm or bias vector must be F32, F16 or BF16"
            } else {
                "supported matrix types: F32, F16, BF16, Q8_0, Q4_0 without loss; Q5_0, Q4_K, \
                 Q5_K, Q6_K requantized to q8_0"
            };
            return format_err(format!(
                "GGUF tensor {:?} has type {}, which Nano does not load ({what})",
                info.name,
                gguf::type_name(t)
            ));
        }
    };
    Ok(EncodedTensor {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        bytes,
    })
}

/// The tensors of the model `config` describes, in Nano's names and layout.
fn tensors(
    f: &GgufFile,
    bytes: &[u8],
    arch: &str,
    config: &ModelConfig,
) -> Result<Vec<EncodedTensor>> {
    let expected = config.expected_tensors();
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(expected.len());
    for (nano, shape) in &expected {
        let name = gguf_name(nano);
        let info = find(f, &name)
            .ok_or_else(|| Error::Format(format!("GGUF tensor {name:?} is missing")))?;
        if info.shape() != *shape {
            return format_err(format!(
                "GGUF tensor {name:?} has shape {:?} (ggml dims {:?}), the metadata implies {shape:?}",
                info.shape(),
                info.dims
            ));
        }
        used.insert(name.as_str().to_owned());
        let data = f.data(bytes, info)?;
        let heads = if nano.contains(".attention.wq.") {
            Some(config.n_head)
        } else if nano.contains(".attention.wk.") {
            Some(config.n_kv_head)
        } else {
            None
        };
        let order = match heads {
            Some(h) if arch == "qwen2" => Some(halves_to_pairs(shape[0], h)),
            _ => None,
        };
        out.push(convert_tensor(nano, info, data, shape, order.as_deref())?);
    }
    if config.rope_scaling.is_some() {
        used.insert("rope_freqs.weight".to_string());
    }
    if let Some(extra) = f.tensors.iter().find(|t| !used.contains(&t.name)) {
        return format_err(format!(
            "GGUF tensor {:?}: it is not part of a {}-layer {arch} model as Nano runs it (unsupported feature?)",
            extra.name, config.n_layer
        ));
    }
    Ok(out)
}

/// An integer-array key of the tokenizer, as many entries as there are tokens.
fn token_types(f: &GgufFile, n: usize) -> Result<Vec<u64>> {
    let key = "tokenizer.ggml.token_type";
    match f.get(key).and_then(Value::as_array) {
        None => Ok(vec![1; n]),
        Some(v) if v.len() == n => v
            .iter()
            .map(|x| {
                x.as_u64().ok_or_else(|| {
                    Error::Format(format!("GGUF key {key:?}: {x:?} is not a token type"))
                })
            })
            .collect(),
        Some(v) => format_err(format!(
            "GGUF key {key:?}: {} types for {n} tokens",
            v.len()
        )),
    }
}

/// A token of an `rwkv` vocabulary (Nano's GGUF export writes one) in Nano's spelling: llama.cpp's
/// escapes undone (`\t`, `\n`, `\r`, `\xhh`, and `\` before any other character standing for
/// it), a byte token (type 6) as `<0xHH>`.
fn rwkv_token(i: usize, text: &str, ty: u64) -> Result<String> {
    let bad = |why: &str| {
        Error::Format(format!(
            "GGUF key \"tokenizer.ggml.tokens\": token {i} {text:?}: {why}"
        ))
    };
    let raw = text.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut k = 0;
    while k < raw.len() {
        if raw[k] == b'\\' && k + 1 < raw.len() {
            let e = raw[k + 1];
            if e == b'x' {
                let hex = raw
                    .get(k + 2..k + 4)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad("\\x is not followed by two hex digits"))?;
                out.push(hex);
                k += 4;
                continue;
            }
            out.push(match e {
                b't' => b'\t',
                b'n' => b'\n',
                b'r' => b'\r',
                other => other,
            });
            k += 2;
        } else {
            out.push(raw[k]);
            k += 1;
        }
    }
    if ty == TOKEN_BYTE {
        return match out[..] {
            [b] => Ok(nano_tokenizer::byte_token(b)),
            _ => Err(bad("a byte token must stand for one byte")),
        };
    }
    String::from_utf8(out).map_err(|_| bad("its bytes are not UTF-8"))
}

fn tokens(f: &GgufFile) -> Result<&[Value]> {
    f.get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Format("GGUF key \"tokenizer.ggml.tokens\" is missing".into()))
}

fn token_id(f: &GgufFile, key: &str) -> Option<u32> {
    f.get(key)
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
}

/// The tokenizer the metadata describes (see the module comment).
fn tokenizer(f: &GgufFile, bytes: &[u8]) -> Result<TokenizerData> {
    let model = f
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::Format("GGUF key \"tokenizer.ggml.model\" is missing (no tokenizer)".into())
        })?;
    match model {
        "rwkv" => {
            let list = tokens(f)?;
            let types = token_types(f, list.len())?;
            let mut toks = Vec::with_capacity(list.len());
            for (i, (t, &ty)) in list.iter().zip(&types).enumerate() {
                let text = t.as_str().ok_or_else(|| {
                    Error::Format(format!(
                        "GGUF key \"tokenizer.ggml.tokens\": entry {i} is not a string"
                    ))
                })?;
                toks.push(rwkv_token(i, text, ty)?);
            }
            let special = types
                .iter()
                .map(|&t| t == TOKEN_CONTROL || t == TOKEN_UNKNOWN)
                .collect();
            Ok(TokenizerData::Vocab(TokenList {
                tokens: toks,
                special,
            }))
        }
        "gpt2" | "llama" => {
            let spec = BpeSpec::from_gguf_bytes(bytes)
                .map_err(|e| Error::Format(format!("GGUF tokenizer: {e}")))?;
            let pre = f.get("tokenizer.ggml.pre").and_then(Value::as_str);
            // llama.cpp's defaults when the file does not say: SentencePiece vocabularies and
            // Llama 3's start prompts with BOS, other byte-level ones do not
            let add_bos_default = model == "llama" || matches!(pre, Some("llama-bpe" | "llama3"));
            let mut stop_ids: Vec<u32> = Vec::new();
            for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
                if let Some(id) = token_id(f, key).filter(|i| !stop_ids.contains(i)) {
                    stop_ids.push(id);
                }
            }
            let c = &spec.config;
            Ok(TokenizerData::Hf(HfTokenizer {
                json: spec.to_hf_json(),
                bos_token: c.bos_token.clone(),
                eos_token: c.eos_token.clone(),
                pad_token: c.pad_token.clone(),
                unk_token: c.unk_token.clone(),
                add_bos_token: c.add_bos_token.unwrap_or(add_bos_default),
                chat_template: c.chat_template.clone(),
                stop_ids,
            }))
        }
        other => format_err(format!(
            "GGUF key \"tokenizer.ggml.model\": tokenizer {other:?} is not supported (gpt2, llama, or rwkv as Nano writes it)"
        )),
    }
}

/// A whole GGUF file (its bytes) as the bytes of the equivalent Nano 2026 file.
pub fn to_nano_file(bytes: &[u8]) -> Result<Vec<u8>> {
    let f = gguf::read(bytes)?;
    let arch = architecture(&f)?;
    let mut config = config(&f, arch)?;
    config.rope_scaling = rope_scaling(&f, bytes, arch, &config)?;
    let tokenizer = tokenizer(&f, bytes)?;
    let tensors = tensors(&f, bytes, arch, &config)?;
    v2026::encode_encoded(&config, &tokenizer, tensors).map_err(|e| match e {
        Error::InvalidInput(m) => Error::Format(format!("GGUF model: {m}")),
        other => other,
    })
}

#[cfg(test)]
mod tests;
