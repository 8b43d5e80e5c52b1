//! A small GGUF written here byte by byte: it loads, and every damaged or unsupported variant is
//! refused with an error naming what is wrong (never a panic).
use super::*;
use crate::format::FileVersion;
use crate::model::Model;

enum V {
    U32(u32),
    F32(f32),
    Str(&'static str),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

struct T {
    name: String,
    dims: Vec<u64>,
    ggml_type: u32,
    data: Vec<u8>,
}

fn write(meta: &[(String, V)], tensors: &[T]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        string(&mut out, k);
        match v {
            V::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            V::F32(x) => {
                out.extend(6u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            V::Str(s) => {
                out.extend(8u32.to_le_bytes());
                string(&mut out, s);
            }
            V::Strs(v) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((v.len() as u64).to_le_bytes());
                for s in v {
                    string(&mut out, s);
                }
            }
            V::I32s(v) => {
                out.extend(9u32.to_le_bytes());
                out.extend(5u32.to_le_bytes());
                out.extend((v.len() as u64).to_le_bytes());
                for x in v {
                    out.extend(x.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    for t in tensors {
        string(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ggml_type.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset += (t.data.len() as u64).next_multiple_of(32);
    }
    out.resize(out.len().next_multiple_of(32), 0);
    for t in tensors {
        out.extend(&t.data);
        out.resize(out.len().next_multiple_of(32), 0);
    }
    out
}

const D: u64 = 32;
const H: u64 = 256;

fn f32s(n: u64, seed: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            (((i as u32).wrapping_mul(2654435761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
                .to_le_bytes()
        })
        .collect()
}

fn tokens() -> Vec<String> {
    let mut t: Vec<String> = nano_tokenizer::special::DEFAULT_SPECIAL_TOKENS
        .iter()
        .map(|s| s.to_string())
        .collect();
    t.extend(["a", "b", "\\\\x", "c"].map(String::from));
    t
}

fn meta(arch: &'static str) -> Vec<(String, V)> {
    let toks = tokens();
    let types: Vec<i32> = (0..toks.len()).map(|i| if i < 7 { 3 } else { 1 }).collect();
    let k = |s: &str| format!("{arch}.{s}");
    vec![
        ("general.architecture".into(), V::Str(arch)),
        (k("context_length"), V::U32(64)),
        (k("embedding_length"), V::U32(D as u32)),
        (k("block_count"), V::U32(1)),
        (k("feed_forward_length"), V::U32(H as u32)),
        (k("attention.head_count"), V::U32(4)),
        (k("attention.head_count_kv"), V::U32(2)),
        (k("attention.layer_norm_rms_epsilon"), V::F32(1e-5)),
        (k("rope.freq_base"), V::F32(10000.0)),
        ("tokenizer.ggml.model".into(), V::Str("rwkv")),
        ("tokenizer.ggml.tokens".into(), V::Strs(toks)),
        ("tokenizer.ggml.token_type".into(), V::I32s(types)),
    ]
}

fn tensors() -> Vec<T> {
    let v = tokens().len() as u64;
    let t = |name: &str, dims: &[u64]| T {
        name: name.into(),
        dims: dims.to_vec(),
        ggml_type: gguf::F32,
        data: f32s(dims.iter().product(), name.len() as u32),
    };
    vec![
        t("token_embd.weight", &[D, v]),
        t("blk.0.attn_norm.weight", &[D]),
        t("blk.0.attn_q.weight", &[D, D]),
        t("blk.0.attn_k.weight", &[D, D / 2]),
        t("blk.0.attn_v.weight", &[D, D / 2]),
        t("blk.0.attn_output.weight", &[D, D]),
        t("blk.0.ffn_norm.weight", &[D]),
        t("blk.0.ffn_gate.weight", &[D, H]),
        t("blk.0.ffn_up.weight", &[D, H]),
        t("blk.0.ffn_down.weight", &[H, D]),
        t("output_norm.weight", &[D]),
    ]
}

fn refused(bytes: Vec<u8>, needles: &[&str]) {
    let err = Model::from_bytes(bytes).unwrap_err().to_string();
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err:?}");
    }
}

#[test]
fn a_small_gguf_loads_with_its_config_and_vocabulary() {
    let model = Model::from_bytes(write(&meta("llama"), &tensors())).unwrap();
    let c = model.config();
    assert_eq!(
        (
            c.n_layer,
            c.n_embd,
            c.n_head,
            c.n_kv_head,
            c.n_hidden,
            c.block_size
        ),
        (1, 32, 4, 2, 256, 64)
    );
    assert!(c.tied_head && !c.qkv_bias);
    assert_eq!(model.version(), FileVersion::Gguf);
    // the escaped backslash is one backslash again
    assert_eq!(model.tokenizer().id_to_token(9), Some("\\x"));
    assert!(model.tokenizer().is_special(0) && !model.tokenizer().is_special(7));
}

#[test]
fn qwen2_q_and_k_rows_are_reordered_into_pairs() {
    let llama = Model::from_bytes(write(&meta("llama"), &tensors())).unwrap();
    let qwen = Model::from_bytes(write(&meta("qwen2"), &tensors())).unwrap();
    let row = |m: &Model, t: usize, r: usize| {
        let mat = m.mat(t);
        let mut out = vec![0f32; mat.cols];
        crate::kernels::dequantize_row(&mat, r, &mut out);
        out
    };
    let (lq, qq) = (llama.layers[0].wq, qwen.layers[0].wq);
    // head 1 (rows 8..16): pair row 8 + 2j + s is the halves row 8 + s * 4 + j
    for (pair, half) in [(8, 8), (9, 12), (10, 9), (11, 13), (15, 15)] {
        assert_eq!(row(&qwen, qq, pair), row(&llama, lq, half));
    }
    let (lv, qv) = (llama.layers[0].wv, qwen.layers[0].wv);
    assert_eq!(row(&qwen, qv, 3), row(&llama, lv, 3));
}

#[test]
fn every_truncation_is_refused() {
    let bytes = write(&meta("llama"), &tensors());
    // (shorter than the magic, a file is not recognised as GGUF and refused as a Nano file)
    let header = bytes.len() - tensors().iter().map(|t| t.data.len()).sum::<usize>();
    let cuts = (4..header + 64).chain((header..bytes.len()).step_by(997));
    for cut in cuts {
        let err = Model::from_bytes(bytes[..cut].to_vec())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("truncated") || err.contains("cannot fit") || err.contains("GGUF"),
            "{cut}: {err}"
        );
    }
}

#[test]
fn unsupported_architectures_types_and_shapes_are_named() {
    refused(
        write(&meta("mixtral"), &tensors()),
        &["mixtral", "general.architecture"],
    );
    for (ty, name, block) in [(3u32, "Q4_1", 20), (9, "Q8_1", 36), (23, "IQ4_XS", 20)] {
        let mut ts = tensors();
        let down = ts
            .iter_mut()
            .find(|t| t.name == "blk.0.ffn_down.weight")
            .unwrap();
        down.ggml_type = ty;
        down.data = vec![0; block * 8 * 32];
        refused(write(&meta("llama"), &ts), &["blk.0.ffn_down.weight", name]);
    }
    // K-quants load (requantized); a norm may not be one
    let mut ts = tensors();
    let down = ts
        .iter_mut()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .unwrap();
    (down.ggml_type, down.data) = (12, vec![0; 144 * 32]);
    let m = Model::from_bytes(write(&meta("llama"), &ts)).unwrap();
    assert_eq!(m.tensors()[m.layers[0].w2].dtype, DType::Q8_0);
    let norm = ts
        .iter_mut()
        .find(|t| t.name == "output_norm.weight")
        .unwrap();
    (norm.ggml_type, norm.data) = (8, vec![0; 34]);
    refused(
        write(&meta("llama"), &ts),
        &["output_norm.weight", "Q8_0", "norm or bias"],
    );
    let mut ts = tensors();
    ts.retain(|t| t.name != "blk.0.ffn_up.weight");
    refused(
        write(&meta("llama"), &ts),
        &["blk.0.ffn_up.weight", "missing"],
    );
    let mut m = meta("llama");
    m[4].1 = V::U32(128);
    refused(write(&m, &tensors()), &["blk.0.ffn_gate.weight", "shape"]);
    let mut m = meta("llama");
    m[9].1 = V::Str("bert");
    refused(write(&m, &tensors()), &["tokenizer.ggml.model", "bert"]);
    let mut m = meta("llama");
    m[5].1 = V::U32(5);
    refused(write(&m, &tensors()), &["llama.attention.head_count"]);
    let mut ts = tensors();
    ts.push(T {
        name: "rope_freqs.weight".into(),
        dims: vec![4],
        ggml_type: gguf::F32,
        data: vec![0; 16],
    });
    refused(write(&meta("llama"), &ts), &["rope_freqs.weight"]);
}

#[test]
fn absurd_counts_and_lengths_are_refused_before_allocating() {
    let good = write(&meta("llama"), &tensors());
    for (at, value, needle) in [
        (8, u64::MAX, "tensor count"),
        (16, u64::MAX / 2, "metadata count"),
        (24, u64::MAX, "string length"),
    ] {
        let mut b = good.clone();
        b[at..at + 8].copy_from_slice(&value.to_le_bytes());
        refused(b, &[needle]);
    }
    let mut b = good.clone();
    b[4..8].copy_from_slice(&9u32.to_le_bytes());
    refused(b, &["version 9"]);
}

#[test]
fn halves_to_pairs_interleaves_each_head() {
    // two heads of 4: rows (0 1 | 2 3) (4 5 | 6 7) -> 0 2 1 3, 4 6 5 7
    assert_eq!(halves_to_pairs(8, 2), [0, 2, 1, 3, 4, 6, 5, 7]);
}
