//! Nano's own model-file format, versions 2026.1 and 2026.2: a 64-byte preamble, a JSON header (config, tokenizer,
//! tensor table), then 64-byte-aligned tensor data, all covered by an XXH3-64 checksum.
//! The byte layout is specified in docs/format.md.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::bytes::{f32_vec, Reader};
use super::{
    check_tensor_set, expected_lora_tensors, DType, FileVersion, HfTokenizer, LoraBase, LoraConfig,
    ModelConfig, ParsedLora, ParsedModel, Store, Tensor, TokenList, TokenizerData, KIND_BASE,
    KIND_LORA, MAGIC,
};
use crate::error::{format_err, Error, Result};
use crate::kernels::{self, QK};

pub const MAJOR: i32 = 2026;
/// Minor 2 adds q/k/v biases, RoPE scaling and Hugging Face tokenizers; files without them are
/// still written as minor 1, byte for byte as before.
pub const MINOR: i32 = 2;
/// Size of the fixed preamble; the JSON header starts here.
pub const PREAMBLE: usize = 64;
/// Alignment of the data section and of every tensor within it.
pub const ALIGN: usize = 64;
/// A JSON header larger than this is refused (a 65k-token vocabulary takes about 1 MB).
const MAX_HEADER: u64 = 256 << 20;

/// One row of the tensor table. `offset` is relative to the start of the data section.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TensorEntry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    offset: u64,
    nbytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelHeader {
    config: ModelConfig,
    /// Exactly one of `tokenizer` (Nano's vocabulary) and `hf_tokenizer` (2026.2) is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokenizer: Option<TokenList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hf_tokenizer: Option<HfTokenizer>,
    base_hash: Option<String>,
    tensors: Vec<TensorEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoraHeader {
    lora: LoraConfig,
    base: LoraBase,
    tensors: Vec<TensorEntry>,
}

/// The checksum of a file body (everything after the preamble).
pub fn checksum(body: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(body)
}

/// Parsed preamble + JSON header text + where the data section lies.
struct Layout<'a> {
    minor: i32,
    kind: i32,
    header: &'a str,
    data_offset: usize,
    data_len: usize,
}

fn read_layout(bytes: &[u8]) -> Result<Layout<'_>> {
    if bytes.len() < PREAMBLE {
        return format_err(format!(
            "file is truncated: {} bytes, preamble needs {PREAMBLE}",
            bytes.len()
        ));
    }
    let mut r = Reader::new(bytes);
    let _magic = (r.u32()?, r.u32()?);
    let (major, minor) = (r.i32()?, r.i32()?);
    if major != MAJOR || !(1..=MINOR).contains(&minor) {
        return format_err(format!(
            "unsupported version {major}.{minor} (this build reads {MAJOR}.1..={MAJOR}.{MINOR})"
        ));
    }
    let kind = r.i32()?;
    let reserved = r.u32()?;
    let header_len = r.u64()?;
    let data_offset = r.u64()?;
    let data_len = r.u64()?;
    let stored_sum = r.u64()?;
    // The checksum starts after the preamble: its reserved words must be zero, so that no bit of
    // the file can change unnoticed.
    if reserved != 0 || r.u64()? != 0 {
        return format_err("reserved preamble fields (bytes 20..24, 56..64) are not zero");
    }
    let file_len = bytes.len() as u64;
    if header_len > MAX_HEADER || PREAMBLE as u64 + header_len > data_offset {
        return format_err(format!(
            "header length {header_len} does not fit before data offset {data_offset}"
        ));
    }
    if !data_offset.is_multiple_of(ALIGN as u64) {
        return format_err(format!(
            "data offset {data_offset} is not {ALIGN}-byte aligned"
        ));
    }
    match data_offset.checked_add(data_len) {
        Some(end) if end == file_len => {}
        Some(end) if end > file_len => {
            return format_err(format!(
                "file is truncated: {file_len} bytes, the header describes {end}"
            ))
        }
        _ => {
            return format_err(format!(
                "file length {file_len} does not match the header (data {data_offset} + {data_len})"
            ))
        }
    }
    let sum = checksum(&bytes[PREAMBLE..]);
    if sum != stored_sum {
        return format_err(format!(
            "checksum mismatch (stored {stored_sum:016x}, computed {sum:016x}): the file is corrupted"
        ));
    }
    let header_bytes = &bytes[PREAMBLE..PREAMBLE + header_len as usize];
    let header = std::str::from_utf8(header_bytes)
        .map_err(|_| Error::Format("header is not valid UTF-8".into()))?;
    Ok(Layout {
        minor,
        kind,
        header,
        data_offset: data_offset as usize,
        data_len: data_len as usize,
    })
}

/// Checks one table entry against the data section and returns its absolute byte offset.
fn check_entry(e: &TensorEntry, layout: &Layout) -> Result<usize> {
    let numel = e.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(numel) = numel else {
        return format_err(format!(
            "tensor {:?}: shape {:?} overflows",
            e.name, e.shape
        ));
    };
    if matches!(e.dtype, DType::Q8_0 | DType::Q4_0) {
        let cols = e.shape.last().copied().unwrap_or(0);
        if e.shape.len() != 2 || !cols.is_multiple_of(QK) {
            return format_err(format!(
                "tensor {:?}: {} needs a 2-D shape with columns divisible by {QK}, got {:?}",
                e.name,
                e.dtype.name(),
                e.shape
            ));
        }
    }
    let want = e.dtype.nbytes(numel) as u64;
    if e.nbytes != want {
        return format_err(format!(
            "tensor {:?}: {} bytes stored, {} {:?} needs {want}",
            e.name,
            e.nbytes,
            e.dtype.name(),
            e.shape
        ));
    }
    if !e.offset.is_multiple_of(ALIGN as u64) {
        return format_err(format!(
            "tensor {:?}: offset {} is not {ALIGN}-byte aligned",
            e.name, e.offset
        ));
    }
    match e.offset.checked_add(e.nbytes) {
        Some(end) if end <= layout.data_len as u64 => Ok(layout.data_offset + e.offset as usize),
        _ => format_err(format!(
            "tensor {:?}: bytes {}+{} lie outside the data section",
            e.name, e.offset, e.nbytes
        )),
    }
}

pub fn parse_model(bytes: &[u8]) -> Result<ParsedModel> {
    let layout = read_layout(bytes)?;
    if layout.kind != KIND_BASE {
        return format_err(if layout.kind == KIND_LORA {
            "this is a LoRA plug-in, not a base model".to_string()
        } else {
            format!("unknown model type {}", layout.kind)
        });
    }
    let header: ModelHeader = serde_json::from_str(layout.header)
        .map_err(|e| Error::Format(format!("bad JSON header: {e}")))?;
    let config = header.config;
    config.validate()?;
    let tokenizer = match (header.tokenizer, header.hf_tokenizer) {
        (Some(t), None) => {
            check_tokens(&t, config.vocab_size)?;
            TokenizerData::Vocab(t)
        }
        (None, Some(hf)) => TokenizerData::Hf(hf),
        (Some(_), Some(_)) => {
            return format_err("the header has both a tokenizer and an hf_tokenizer section")
        }
        (None, None) => return format_err("the header has no tokenizer section"),
    };
    if layout.minor < 2 && (config.needs_minor_2() || matches!(tokenizer, TokenizerData::Hf(_))) {
        return format_err(format!(
            "a {MAJOR}.{} file cannot hold q/k/v biases, RoPE scaling or a Hugging Face tokenizer \
             (they need {MAJOR}.2)",
            layout.minor
        ));
    }
    check_tensor_set(
        &config.expected_tensors(),
        header
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice())),
    )?;
    let mut tensors = Vec::with_capacity(header.tensors.len());
    for e in header.tensors {
        let offset = check_entry(&e, &layout)?;
        if e.shape.len() == 1 && e.dtype != DType::F32 {
            return format_err(format!("tensor {:?}: norm weights must be f32", e.name));
        }
        let store = Store::File {
            offset,
            nbytes: e.nbytes as usize,
        };
        tensors.push(Tensor {
            name: e.name,
            dtype: e.dtype,
            shape: e.shape,
            store,
        });
    }
    Ok(ParsedModel {
        version: FileVersion::Nano2026,
        config,
        tokenizer,
        base_hash: header.base_hash,
        tensors,
    })
}

pub(crate) fn check_tokens(t: &TokenList, vocab_size: usize) -> Result<()> {
    if t.tokens.len() != vocab_size || t.special.len() != vocab_size {
        return format_err(format!(
            "tokenizer section has {} tokens / {} flags, config vocab_size is {vocab_size}",
            t.tokens.len(),
            t.special.len()
        ));
    }
    Ok(())
}

pub fn parse_lora(bytes: &[u8]) -> Result<ParsedLora> {
    let layout = read_layout(bytes)?;
    if layout.kind != KIND_LORA {
        return format_err(format!(
            "model type {} is not a LoRA plug-in ({KIND_LORA})",
            layout.kind
        ));
    }
    let header: LoraHeader = serde_json::from_str(layout.header)
        .map_err(|e| Error::Format(format!("bad JSON header: {e}")))?;
    let expected = expected_lora_tensors(&header.lora, &header.base)?;
    check_tensor_set(
        &expected,
        header
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice())),
    )?;
    let mut tensors = Vec::new();
    for e in &header.tensors {
        let offset = check_entry(e, &layout)?;
        if e.dtype != DType::F32 {
            return format_err(format!("LoRA tensor {:?} must be f32", e.name));
        }
        let values = f32_vec(&bytes[offset..offset + e.nbytes as usize]);
        tensors.push((e.name.clone(), e.shape.clone(), values));
    }
    Ok(ParsedLora {
        version: FileVersion::Nano2026,
        config: header.lora,
        base: header.base,
        tensors,
    })
}

/// A named f32 tensor handed to a writer.
pub struct TensorIn<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// Encodes one tensor in `dtype`. Matrices whose columns are not a multiple of 32 stay f32 when a
/// quantized dtype is asked for; 1-D tensors (norm weights) always stay f32.
fn encode_tensor(t: &TensorIn, dtype: DType) -> (DType, Vec<u8>) {
    let cols = *t.shape.last().unwrap_or(&1);
    let dtype = match dtype {
        _ if t.shape.len() != 2 => DType::F32,
        DType::Q8_0 | DType::Q4_0 if !cols.is_multiple_of(QK) => DType::F32,
        d => d,
    };
    let bytes = match dtype {
        DType::F32 => super::bytes::f32_bytes(t.data),
        DType::F16 => t
            .data
            .iter()
            .flat_map(|&v| kernels::f32_to_f16(v).to_le_bytes())
            .collect(),
        DType::Q8_0 => {
            let (qs, scales) = kernels::quantize_q8_0(t.data, cols);
            let mut b: Vec<u8> = qs.iter().map(|&q| q as u8).collect();
            b.extend(super::bytes::f32_bytes(&scales));
            b
        }
        DType::Q4_0 => {
            let (mut b, scales) = kernels::quantize_q4_0(t.data, cols);
            b.extend(super::bytes::f32_bytes(&scales));
            b
        }
    };
    (dtype, bytes)
}

/// Lays out preamble + JSON header + aligned data, filling in the table offsets and the checksum.
fn assemble(
    kind: i32,
    minor: i32,
    header_json: impl Fn(&[TensorEntry]) -> Result<String>,
    blobs: Vec<(TensorEntry, Vec<u8>)>,
) -> Result<Vec<u8>> {
    let mut entries = Vec::with_capacity(blobs.len());
    let mut data_len = 0usize;
    for (mut e, b) in blobs.iter().map(|(e, b)| (e.clone(), b)) {
        e.offset = data_len as u64;
        e.nbytes = b.len() as u64;
        data_len = (data_len + b.len()).next_multiple_of(ALIGN);
        entries.push(e);
    }
    let header = header_json(&entries)?;
    let data_offset = (PREAMBLE + header.len()).next_multiple_of(ALIGN);
    let mut out = Vec::with_capacity(data_offset + data_len);
    out.resize(PREAMBLE, 0);
    out.extend_from_slice(header.as_bytes());
    out.resize(data_offset, 0);
    // each blob is freed once copied, so the peak is about one file, not two
    for (_, b) in blobs {
        out.extend_from_slice(&b);
        out.resize(out.len().next_multiple_of(ALIGN), 0);
    }
    out.resize(data_offset + data_len, 0);
    let sum = checksum(&out[PREAMBLE..]);
    let mut pre = Vec::with_capacity(PREAMBLE);
    for w in MAGIC {
        pre.extend(w.to_le_bytes());
    }
    pre.extend(MAJOR.to_le_bytes());
    pre.extend(minor.to_le_bytes());
    pre.extend(kind.to_le_bytes());
    pre.extend(0u32.to_le_bytes());
    pre.extend((header.len() as u64).to_le_bytes());
    pre.extend((data_offset as u64).to_le_bytes());
    pre.extend((data_len as u64).to_le_bytes());
    pre.extend(sum.to_le_bytes());
    pre.resize(PREAMBLE, 0);
    out[..PREAMBLE].copy_from_slice(&pre);
    Ok(out)
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::InvalidInput(format!("cannot encode header: {e}")))
}

/// Refuses weights that are not finite: a file holding them could not be loaded again (the
/// readers refuse them), and they are what a diverged training run leaves.
pub(crate) fn check_finite_inputs(tensors: &[TensorIn]) -> Result<()> {
    for t in tensors {
        if let Some(i) = super::finite::first_bad_f32(t.data) {
            return Err(Error::InvalidInput(format!(
                "tensor {:?} holds a non-finite value (NaN or infinity) at element {i}; \
                 such weights cannot be written to a model file",
                t.name
            )));
        }
    }
    Ok(())
}

fn check_inputs(expected: &[(String, Vec<usize>)], tensors: &[TensorIn]) -> Result<()> {
    for t in tensors {
        if t.shape.iter().product::<usize>() != t.data.len() {
            return Err(Error::InvalidInput(format!(
                "tensor {:?}: {} values do not fill shape {:?}",
                t.name,
                t.data.len(),
                t.shape
            )));
        }
    }
    check_finite_inputs(tensors)?;
    check_tensor_set(
        expected,
        tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice())),
    )
    .map_err(|e| Error::InvalidInput(e.to_string().replace("invalid model file: ", "")))
}

/// Encodes a base model: every matrix in `dtype` (see [`encode_tensor`]), norms and biases in f32.
/// The file is 2026.1 unless the config needs 2026.2 ([`ModelConfig::needs_minor_2`]).
pub fn encode_model(
    config: &ModelConfig,
    tokens: &TokenList,
    base_hash: Option<&str>,
    tensors: &[TensorIn],
    dtype: DType,
) -> Result<Vec<u8>> {
    check_tokens(tokens, config.vocab_size).map_err(|e| Error::InvalidInput(e.to_string()))?;
    encode_base(config, Some(tokens), None, base_hash, tensors, dtype)
}

/// Encodes a base model carrying a Hugging Face tokenizer (always 2026.2). The tokenizer is
/// checked the way the engine loads it ([`crate::tokenizer::ModelTokenizer::from_hf`]).
pub fn encode_hf_model(
    config: &ModelConfig,
    tokenizer: &HfTokenizer,
    tensors: &[TensorIn],
    dtype: DType,
) -> Result<Vec<u8>> {
    crate::tokenizer::ModelTokenizer::from_hf(tokenizer.clone(), config.vocab_size)
        .map_err(|e| Error::InvalidInput(e.to_string().replace("invalid model file: ", "")))?;
    encode_base(config, None, Some(tokenizer), None, tensors, dtype)
}

fn encode_base(
    config: &ModelConfig,
    tokens: Option<&TokenList>,
    hf: Option<&HfTokenizer>,
    base_hash: Option<&str>,
    tensors: &[TensorIn],
    dtype: DType,
) -> Result<Vec<u8>> {
    config
        .validate()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let minor = if config.needs_minor_2() || hf.is_some() {
        2
    } else {
        1
    };
    let expected = config.expected_tensors();
    check_inputs(&expected, tensors)?;
    // canonical order (the model's), so equal inputs give byte-identical files whatever their order
    let rank = |t: &TensorIn| expected.iter().position(|(n, _)| *n == t.name);
    let mut ordered: Vec<&TensorIn> = tensors.iter().collect();
    ordered.sort_by_key(|t| rank(t));
    let blobs = encode_all(&ordered, dtype);
    assemble(
        KIND_BASE,
        minor,
        |entries| {
            to_json(&ModelHeader {
                config: config.clone(),
                tokenizer: tokens.cloned(),
                hf_tokenizer: hf.cloned(),
                base_hash: base_hash.map(str::to_string),
                tensors: entries.to_vec(),
            })
        },
        blobs,
    )
}

/// A tensor already in Nano's byte layout for its dtype (see [`DType::nbytes`]), for writers that
/// convert other formats without a round trip through f32 (GGUF's Q8_0 / Q4_0 blocks).
#[derive(Debug)]
pub struct EncodedTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Encodes a base model from tensors already encoded (checked: names and shapes against the
/// config, byte counts against the dtypes, norms and biases f32). The tokenizer is Nano's
/// vocabulary or a Hugging Face one, checked as [`encode_model`] / [`encode_hf_model`] do.
pub fn encode_encoded(
    config: &ModelConfig,
    tokenizer: &TokenizerData,
    tensors: Vec<EncodedTensor>,
) -> Result<Vec<u8>> {
    config
        .validate()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    let (tokens, hf) = match tokenizer {
        TokenizerData::Vocab(t) => {
            check_tokens(t, config.vocab_size).map_err(|e| Error::InvalidInput(e.to_string()))?;
            (Some(t), None)
        }
        TokenizerData::Hf(h) => {
            crate::tokenizer::ModelTokenizer::from_hf(h.clone(), config.vocab_size).map_err(
                |e| Error::InvalidInput(e.to_string().replace("invalid model file: ", "")),
            )?;
            (None, Some(h))
        }
    };
    let expected = config.expected_tensors();
    check_tensor_set(
        &expected,
        tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice())),
    )
    .map_err(|e| Error::InvalidInput(e.to_string().replace("invalid model file: ", "")))?;
    for t in &tensors {
        let numel = t.shape.iter().product::<usize>();
        let cols = *t.shape.last().unwrap_or(&1);
        let quantized = matches!(t.dtype, DType::Q8_0 | DType::Q4_0);
        if (t.shape.len() == 1 && t.dtype != DType::F32)
            || (quantized && !cols.is_multiple_of(QK))
            || t.bytes.len() != t.dtype.nbytes(numel)
        {
            return Err(Error::InvalidInput(format!(
                "tensor {:?}: {} bytes of {} do not encode shape {:?}",
                t.name,
                t.bytes.len(),
                t.dtype.name(),
                t.shape
            )));
        }
    }
    let minor = if config.needs_minor_2() || hf.is_some() {
        2
    } else {
        1
    };
    let rank = |t: &EncodedTensor| expected.iter().position(|(n, _)| *n == t.name);
    let mut ordered = tensors;
    ordered.sort_by_key(|t| rank(t));
    let blobs = ordered
        .into_iter()
        .map(|t| {
            let e = TensorEntry {
                name: t.name,
                dtype: t.dtype,
                shape: t.shape,
                offset: 0,
                nbytes: 0,
            };
            (e, t.bytes)
        })
        .collect();
    assemble(
        KIND_BASE,
        minor,
        |entries| {
            to_json(&ModelHeader {
                config: config.clone(),
                tokenizer: tokens.cloned(),
                hf_tokenizer: hf.cloned(),
                base_hash: None,
                tensors: entries.to_vec(),
            })
        },
        blobs,
    )
}

fn encode_all(tensors: &[&TensorIn], dtype: DType) -> Vec<(TensorEntry, Vec<u8>)> {
    let encode = |t: &&TensorIn| {
        let (dt, b) = encode_tensor(t, dtype);
        let e = TensorEntry {
            name: t.name.clone(),
            dtype: dt,
            shape: t.shape.clone(),
            offset: 0,
            nbytes: 0,
        };
        (e, b)
    };
    #[cfg(feature = "threads")]
    {
        use rayon::prelude::*;
        tensors.par_iter().map(encode).collect()
    }
    #[cfg(not(feature = "threads"))]
    tensors.iter().map(encode).collect()
}

/// Encodes a LoRA plug-in (f32 tensors `layers.{i}.{module}.lora_A` / `lora_B`).
pub fn encode_lora(config: &LoraConfig, base: &LoraBase, tensors: &[TensorIn]) -> Result<Vec<u8>> {
    let expected =
        expected_lora_tensors(config, base).map_err(|e| Error::InvalidInput(e.to_string()))?;
    check_inputs(&expected, tensors)?;
    let rank = |t: &TensorIn| expected.iter().position(|(n, _)| *n == t.name);
    let mut ordered: Vec<&TensorIn> = tensors.iter().collect();
    ordered.sort_by_key(|t| rank(t));
    let blobs = encode_all(&ordered, DType::F32);
    assemble(
        KIND_LORA,
        1,
        |entries| {
            to_json(&LoraHeader {
                lora: config.clone(),
                base: base.clone(),
                tensors: entries.to_vec(),
            })
        },
        blobs,
    )
}

/// Tensor names by position, for callers that want a lookup table.
pub fn index_by_name(tensors: &[Tensor]) -> HashMap<&str, usize> {
    tensors
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect()
}
