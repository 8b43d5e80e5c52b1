//! The original 2024.10 layout (see docs/format.md): read for the published fp32 / int8 (type 800)
//! models and LoRA plug-ins, written by `--legacy` for old engines.
use super::bytes::{f32_bytes, f32_vec, Reader};
use super::v2026::{check_finite_inputs, check_tokens, TensorIn};
use super::{
    check_tensor_set, expected_lora_tensors, DType, FileVersion, LoraBase, LoraConfig, ModelConfig,
    ParsedLora, ParsedModel, Store, Tensor, TokenList, KIND_BASE, KIND_LORA, MAGIC,
};
use crate::error::{format_err, Error, Result};
use crate::kernels::{self, QK};

pub const MAJOR: i32 = 2024;
pub const MINOR: i32 = 10;
const HEADER: usize = 256;
const QUANT_INT8: i32 = 800;
/// Legacy files fix these hyper-parameters.
const EPS: f32 = 1e-5;
const THETA: f32 = 10000.0;

struct Header {
    kind: i32,
    cfg: [i32; 8],
    quant_type: i32,
    group_size: i32,
}

fn read_header(bytes: &[u8]) -> Result<Header> {
    if bytes.len() < HEADER {
        return format_err(format!(
            "file is truncated: {} bytes, the 2024.10 header needs {HEADER}",
            bytes.len()
        ));
    }
    let mut r = Reader::at(bytes, 8);
    let (major, minor) = (r.i32()?, r.i32()?);
    if (major, minor) != (MAJOR, MINOR) {
        return format_err(format!(
            "unsupported version {major}.{minor} (expected {MAJOR}.{MINOR})"
        ));
    }
    let kind = r.i32()?;
    let cfg_len = r.i32()?;
    if cfg_len != 32 {
        return format_err(format!("config length {cfg_len}, expected 32"));
    }
    let mut cfg = [0i32; 8];
    for c in &mut cfg {
        *c = r.i32()?;
    }
    Ok(Header {
        kind,
        cfg,
        quant_type: r.i32()?,
        group_size: r.i32()?,
    })
}

fn dim(v: i32, name: &str) -> Result<usize> {
    if v <= 0 {
        return format_err(format!("config {name} = {v} must be positive"));
    }
    Ok(v as usize)
}

fn config_of(h: &Header) -> Result<ModelConfig> {
    let c = &h.cfg;
    if !matches!(c[7], 0 | 1) {
        return format_err(format!("is_shared_classifier = {} must be 0 or 1", c[7]));
    }
    let config = ModelConfig {
        block_size: dim(c[0], "block_size")?,
        vocab_size: dim(c[1], "vocab_size")?,
        n_layer: dim(c[2], "n_layer")?,
        n_embd: dim(c[3], "n_embd")?,
        n_head: dim(c[4], "n_head")?,
        n_kv_head: dim(c[5], "n_kv_head")?,
        n_hidden: dim(c[6], "n_hidden")?,
        norm_eps: EPS,
        rope_theta: THETA,
        use_rope: true,
        is_causal: true,
        tied_head: c[7] == 1,
        qkv_bias: false,
        rope_scaling: None,
    };
    config.validate()?;
    Ok(config)
}

/// Reads the tokenizer section at byte 256; returns the tokens and where the parameters start.
fn read_tokens(bytes: &[u8], vocab_size: usize) -> Result<(TokenList, usize)> {
    let mut r = Reader::at(bytes, HEADER);
    let section_len = r.u32()? as usize;
    let n = r.u32()? as usize;
    if n != vocab_size {
        return format_err(format!(
            "tokenizer section has {n} tokens, config vocab_size is {vocab_size}"
        ));
    }
    let end = HEADER
        .checked_add(section_len)
        .filter(|&e| e <= bytes.len());
    let Some(end) = end else {
        return format_err(format!(
            "tokenizer section length {section_len} runs past the end of the file"
        ));
    };
    let mut r = Reader::at(&bytes[..end], r.pos());
    // every entry takes at least 8 bytes: a forged count reserves no more than the section holds
    let cap = n.min(section_len / 8);
    let (mut tokens, mut special) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
    for id in 0..n {
        let info = r.u32()?;
        let tid = r.u32()? as usize;
        if tid != id {
            return format_err(format!("tokenizer entry {id} carries id {tid}"));
        }
        let len = (info & 0xFF) as usize;
        let is_special = match (info >> 8) & 0xFF {
            0 => false,
            1 => true,
            f => return format_err(format!("token {id}: special flag {f} is not 0 or 1")),
        };
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            let cp = r.u32()?;
            let Some(ch) = char::from_u32(cp) else {
                return format_err(format!("token {id}: {cp:#x} is not a Unicode code point"));
            };
            s.push(ch);
        }
        tokens.push(s);
        special.push(is_special);
    }
    if r.pos() != end {
        return format_err(format!(
            "tokenizer section length {section_len} disagrees with its {} bytes of entries",
            r.pos() - HEADER
        ));
    }
    Ok((TokenList { tokens, special }, end))
}

/// The legacy parameter order: (name, shape) per tensor, as the original exporter wrote them.
fn order(c: &ModelConfig) -> Vec<Vec<(String, Vec<usize>)>> {
    let exp = c.expected_tensors();
    let find = |n: &str| {
        exp.iter()
            .find(|(name, _)| name == n)
            .cloned()
            .expect("expected tensor")
    };
    let per_layer = |suffix: &str| {
        (0..c.n_layer)
            .map(|i| find(&format!("layers.{i}.{suffix}")))
            .collect::<Vec<_>>()
    };
    vec![
        vec![find("tok_embeddings.weight")],
        per_layer("attention_norm.weight"),
        per_layer("attention.wq.weight"),
        per_layer("attention.wk.weight"),
        per_layer("attention.wv.weight"),
        per_layer("attention.wo.weight"),
        per_layer("ffn_norm.weight"),
        per_layer("feed_forward.w1.weight"),
        per_layer("feed_forward.w2.weight"),
        per_layer("feed_forward.w3.weight"),
        vec![find("norm.weight")],
    ]
}

fn rope_len(c: &ModelConfig) -> usize {
    c.block_size * (c.head_dim() / 2)
}

pub fn parse_model(bytes: &[u8]) -> Result<ParsedModel> {
    let h = read_header(bytes)?;
    if h.kind != KIND_BASE {
        return format_err(if h.kind == KIND_LORA {
            "this is a LoRA plug-in, not a base model".to_string()
        } else {
            format!("unknown model type {}", h.kind)
        });
    }
    let config = config_of(&h)?;
    let (tokens, start) = read_tokens(bytes, config.vocab_size)?;
    let mut tensors = match (h.quant_type, h.group_size) {
        (0, _) => read_fp32(bytes, &config, start)?,
        (QUANT_INT8, g) if g > 0 => read_int8(bytes, &config, start, g as usize)?,
        (QUANT_INT8, g) => return format_err(format!("int8 group size {g} must be positive")),
        (q, _) => {
            return format_err(format!(
                "unknown quantization type {q} (expected 800 = int8)"
            ))
        }
    };
    tensors.sort_by_key(|t| t.name.clone());
    Ok(ParsedModel {
        version: FileVersion::Legacy2024,
        config,
        tokenizer: super::TokenizerData::Vocab(tokens),
        base_hash: None,
        tensors,
    })
}

fn expect_len(bytes: &[u8], want: usize) -> Result<()> {
    if bytes.len() != want {
        let what = if bytes.len() < want {
            "truncated"
        } else {
            "longer than its config describes"
        };
        return format_err(format!(
            "file is {what}: {} bytes, expected {want}",
            bytes.len()
        ));
    }
    Ok(())
}

fn read_fp32(bytes: &[u8], c: &ModelConfig, start: usize) -> Result<Vec<Tensor>> {
    let mut groups = order(c);
    let numel = |g: &Vec<(String, Vec<usize>)>| {
        g.iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum::<usize>()
    };
    let head = if c.tied_head {
        0
    } else {
        c.vocab_size * c.n_embd
    };
    let total: usize = groups.iter().map(numel).sum::<usize>() + 2 * rope_len(c) + head;
    expect_len(bytes, start + total * 4)?;
    let mut offset = start;
    let mut out = Vec::new();
    let mut push = |(name, shape): (String, Vec<usize>), offset: &mut usize| {
        let nbytes = shape.iter().product::<usize>() * 4;
        out.push(Tensor {
            name,
            dtype: DType::F32,
            shape,
            store: Store::File {
                offset: *offset,
                nbytes,
            },
        });
        *offset += nbytes;
    };
    for g in groups.drain(..) {
        for t in g {
            push(t, &mut offset);
        }
    }
    offset += 2 * rope_len(c) * 4; // cos/sin tables: recomputed from theta at load
    if !c.tied_head {
        push(
            ("output.weight".into(), vec![c.vocab_size, c.n_embd]),
            &mut offset,
        );
    }
    Ok(out)
}

/// Int8 groups run over each flattened tensor (possibly straddling rows): dequantize with the file's
/// own grouping, then re-quantize per row to q8_0 when the rows allow it (else keep f32).
fn read_int8(bytes: &[u8], c: &ModelConfig, start: usize, gs: usize) -> Result<Vec<Tensor>> {
    let groups = order(c);
    let mut r = Reader::at(bytes, start);
    let mut out = Vec::new();
    // fp32 norms first: attention norms, FFN norms, final norm.
    for g in [&groups[1], &groups[6], &groups[10]] {
        for (name, shape) in g {
            let n = shape[0];
            let store = Store::F32(f32_vec(r.take(n * 4)?));
            out.push(Tensor {
                name: name.clone(),
                dtype: DType::F32,
                shape: shape.clone(),
                store,
            });
        }
    }
    let mut mats: Vec<(String, Vec<usize>)> = [0, 2, 3, 4, 5, 7, 8, 9]
        .iter()
        .flat_map(|&i| groups[i].clone())
        .collect();
    if !c.tied_head {
        mats.push(("output.weight".into(), vec![c.vocab_size, c.n_embd]));
    }
    for (name, shape) in mats {
        let numel: usize = shape.iter().product();
        if !numel.is_multiple_of(gs) {
            return format_err(format!(
                "tensor {name}: {numel} values are not a multiple of group size {gs}"
            ));
        }
        let qs = r.take(numel)?;
        let scales = f32_vec(r.take(numel / gs * 4)?);
        if let Some(g) = super::finite::first_bad_f32(&scales) {
            return format_err(format!(
                "tensor {name:?} holds a non-finite int8 scale (NaN or infinity) for group {g}"
            ));
        }
        let w: Vec<f32> = qs
            .iter()
            .enumerate()
            .map(|(i, &q)| q as i8 as f32 * scales[i / gs])
            .collect();
        out.push(requantized(name, shape, w));
    }
    r.take(2 * rope_len(c) * 4)?;
    expect_len(bytes, r.pos())?;
    Ok(out)
}

fn requantized(name: String, shape: Vec<usize>, w: Vec<f32>) -> Tensor {
    let cols = shape[1];
    if !cols.is_multiple_of(QK) {
        return Tensor {
            name,
            dtype: DType::F32,
            shape,
            store: Store::F32(w),
        };
    }
    let (qs, scales) = kernels::quantize_q8_0(&w, cols);
    Tensor {
        name,
        dtype: DType::Q8_0,
        shape,
        store: Store::Q8_0 { qs, scales },
    }
}

pub fn parse_lora(bytes: &[u8]) -> Result<ParsedLora> {
    let h = read_header(bytes)?;
    if h.kind != KIND_LORA {
        return format_err(format!(
            "model type {} is not a LoRA plug-in ({KIND_LORA})",
            h.kind
        ));
    }
    let c = &h.cfg;
    let config = LoraConfig {
        rank: dim(c[0], "lora_rank")?,
        alpha: c[1] as f32,
        targets: targets(),
    };
    let base = LoraBase {
        hash: None,
        n_layer: dim(c[2], "n_layer")?,
        n_embd: dim(c[3], "n_embd")?,
        n_head: dim(c[4], "n_head")?,
        n_kv_head: dim(c[5], "n_kv_head")?,
        n_hidden: dim(c[6], "n_hidden")?,
    };
    let names = lora_order(&config, &base)?;
    let total: usize = names.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    expect_len(bytes, HEADER + total * 4)?;
    let mut r = Reader::at(bytes, HEADER);
    let mut tensors = Vec::new();
    for (name, shape) in names {
        let n = shape.iter().product::<usize>();
        tensors.push((name, shape, f32_vec(r.take(n * 4)?)));
    }
    Ok(ParsedLora {
        version: FileVersion::Legacy2024,
        config,
        base,
        tensors,
    })
}

fn targets() -> Vec<String> {
    ["wq", "wk", "wv", "wo"].map(String::from).to_vec()
}

/// Legacy LoRA order: for each of wq, wk, wv, wo: every layer's A, then every layer's B.
fn lora_order(config: &LoraConfig, base: &LoraBase) -> Result<Vec<(String, Vec<usize>)>> {
    let exp = expected_lora_tensors(config, base)?;
    let mut out = Vec::new();
    for t in ["wq", "wk", "wv", "wo"] {
        for ab in ["lora_A", "lora_B"] {
            for i in 0..base.n_layer {
                let name = format!("layers.{i}.attention.{t}.{ab}");
                out.push(
                    exp.iter()
                        .find(|(n, _)| *n == name)
                        .cloned()
                        .expect("expected LoRA tensor"),
                );
            }
        }
    }
    Ok(out)
}

fn header_bytes(kind: i32, cfg: [i32; 8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER);
    for w in MAGIC {
        out.extend(w.to_le_bytes());
    }
    for v in [MAJOR, MINOR, kind, 32].into_iter().chain(cfg) {
        out.extend(v.to_le_bytes());
    }
    out.resize(HEADER, 0);
    out
}

fn to_i32(v: usize, name: &str) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::Unsupported(format!("{name} = {v} does not fit the 2024.10 header")))
}

/// Encodes a base model in the 2024.10 fp32 layout. Refuses what that layout cannot express.
pub fn encode_model(
    config: &ModelConfig,
    tokens: &TokenList,
    tensors: &[TensorIn],
) -> Result<Vec<u8>> {
    config
        .validate()
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    check_tokens(tokens, config.vocab_size).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let refuse = |why: &str| {
        Err(Error::Unsupported(format!(
            "the 2024.10 format cannot store {why}"
        )))
    };
    if !config.use_rope {
        return refuse("learned position embeddings (use_rope = false)");
    }
    if !config.is_causal {
        return refuse("a non-causal model");
    }
    if config.qkv_bias {
        return refuse("q/k/v biases");
    }
    if config.rope_scaling.is_some() {
        return refuse("RoPE frequency scaling");
    }
    if config.rope_theta != THETA {
        return refuse(&format!(
            "rope_theta {} (it fixes 10000)",
            config.rope_theta
        ));
    }
    if config.norm_eps != EPS {
        return refuse(&format!("norm_eps {} (it fixes 1e-5)", config.norm_eps));
    }
    let expected = config.expected_tensors();
    check_tensor_set(
        &expected,
        tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice())),
    )
    .map_err(|e| Error::InvalidInput(e.to_string()))?;
    check_finite_inputs(tensors)?;
    let c = config;
    let cfg = [
        to_i32(c.block_size, "block_size")?,
        to_i32(c.vocab_size, "vocab_size")?,
        to_i32(c.n_layer, "n_layer")?,
        to_i32(c.n_embd, "n_embd")?,
        to_i32(c.n_head, "n_head")?,
        to_i32(c.n_kv_head, "n_kv_head")?,
        to_i32(c.n_hidden, "n_hidden")?,
        c.tied_head as i32,
    ];
    let mut out = header_bytes(KIND_BASE, cfg);
    out.extend(token_section(tokens)?);
    let get = |name: &str| -> &[f32] {
        tensors
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.data)
            .unwrap_or(&[])
    };
    for g in order(c) {
        for (name, _) in g {
            out.extend(f32_bytes(get(&name)));
        }
    }
    let (cos, sin) = rope_tables(c);
    out.extend(f32_bytes(&cos));
    out.extend(f32_bytes(&sin));
    if !c.tied_head {
        out.extend(f32_bytes(get("output.weight")));
    }
    Ok(out)
}

/// RoPE tables [block_size, head_dim/2] as the original exporter stored them (unused by this engine).
fn rope_tables(c: &ModelConfig) -> (Vec<f32>, Vec<f32>) {
    let half = c.head_dim() / 2;
    let (mut cos, mut sin) = (
        Vec::with_capacity(rope_len(c)),
        Vec::with_capacity(rope_len(c)),
    );
    for t in 0..c.block_size {
        for i in 0..half {
            let freq = 1.0 / (c.rope_theta as f64).powf(2.0 * i as f64 / c.head_dim() as f64);
            let a = t as f64 * freq;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

fn token_section(tokens: &TokenList) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    for (id, (tok, &special)) in tokens.tokens.iter().zip(&tokens.special).enumerate() {
        let cps: Vec<u32> = tok.chars().map(u32::from).collect();
        if cps.len() > 255 {
            return Err(Error::Unsupported(format!(
                "token {id} has {} code points; the 2024.10 format stores at most 255",
                cps.len()
            )));
        }
        let info = cps.len() as u32 | (special as u32) << 8 | 0xFFFF_0000;
        body.extend(info.to_le_bytes());
        body.extend((id as u32).to_le_bytes());
        for cp in cps {
            body.extend(cp.to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend(((body.len() + 8) as u32).to_le_bytes());
    out.extend((tokens.tokens.len() as u32).to_le_bytes());
    out.extend(body);
    Ok(out)
}

/// Encodes a LoRA plug-in in the 2024.10 layout (targets wq, wk, wv, wo only; integer alpha).
pub fn encode_lora(config: &LoraConfig, base: &LoraBase, tensors: &[TensorIn]) -> Result<Vec<u8>> {
    let mut sorted = config.targets.clone();
    sorted.sort();
    if sorted != ["wk", "wo", "wq", "wv"] {
        return Err(Error::Unsupported(format!(
            "the 2024.10 LoRA format stores exactly wq, wk, wv, wo adapters, not {:?}",
            config.targets
        )));
    }
    if config.alpha.fract() != 0.0 {
        return Err(Error::Unsupported(format!(
            "the 2024.10 LoRA format stores an integer alpha, not {}",
            config.alpha
        )));
    }
    let names = lora_order(config, base).map_err(|e| Error::InvalidInput(e.to_string()))?;
    check_tensor_set(
        &names,
        tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice())),
    )
    .map_err(|e| Error::InvalidInput(e.to_string()))?;
    check_finite_inputs(tensors)?;
    let cfg = [
        to_i32(config.rank, "rank")?,
        config.alpha as i32,
        to_i32(base.n_layer, "n_layer")?,
        to_i32(base.n_embd, "n_embd")?,
        to_i32(base.n_head, "n_head")?,
        to_i32(base.n_kv_head, "n_kv_head")?,
        to_i32(base.n_hidden, "n_hidden")?,
        0,
    ];
    let mut out = header_bytes(KIND_LORA, cfg);
    for (name, _) in names {
        let t = tensors
            .iter()
            .find(|t| t.name == name)
            .expect("checked above");
        out.extend(f32_bytes(t.data));
    }
    Ok(out)
}
